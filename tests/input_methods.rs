//! The input-side methods on the real SmolLM2 GGUF: what they keep, checked against
//! independent computations of the same quantities.

use crate::common::{fixture, load, smollm2_gguf};
use candle_core::Device;
use llmbench::engine::Engine;
use llmbench::input::lingua;
use llmbench::kv::{self, KvKind};

/// lingua keeps round(rate x n) tokens of every segment (within one token, as the issue asks),
/// exactly those of highest loss, and each loss is the model's surprisal of the token given
/// what was kept of the earlier segments, recomputed here token by token through the decode
/// path (a different code path from the one-pass scoring).
#[test]
fn lingua_meets_its_rate_per_segment_and_keeps_the_most_surprising_tokens() {
    let loaded = load(&smollm2_gguf());
    let engine = Engine::new(loaded.model.as_ref(), &Device::Cpu);
    let text = std::fs::read_to_string(fixture("wiki-excerpt.txt")).unwrap();
    let ids: Vec<u32> = loaded
        .tokenizer
        .encode(&text)
        .unwrap()
        .into_iter()
        .take(300)
        .collect();
    let segment = 64;
    for rate in [0.3, 0.5] {
        let c = lingua::compress(&engine, &ids, rate, segment).unwrap();
        assert_eq!(c.segments.len(), ids.len().div_ceil(segment));
        for (i, &(n, kept)) in c.segments.iter().enumerate() {
            assert!(
                (kept as f64 - rate * n as f64).abs() <= 1.0,
                "rate {rate} segment {i}: kept {kept} of {n}"
            );
            let range = i * segment..i * segment + n;
            let kept_min = range
                .clone()
                .filter(|&j| c.kept[j])
                .map(|j| c.losses[j])
                .fold(f64::INFINITY, f64::min);
            let dropped_max = range
                .clone()
                .filter(|&j| !c.kept[j])
                .map(|j| c.losses[j])
                .fold(f64::NEG_INFINITY, f64::max);
            assert!(
                kept_min >= dropped_max,
                "rate {rate} segment {i}: kept {kept_min} < dropped {dropped_max}"
            );
        }
        assert_eq!(c.ids.len(), c.kept.iter().filter(|&&k| k).count());
        assert!(
            c.losses[0].is_infinite(),
            "the first token has no context and is always kept"
        );

        // The second segment's losses, conditioned on the first segment's kept tokens: the
        // log-softmax rows of one teacher-forced pass, indexed here independently.
        let context: Vec<u32> = (0..segment)
            .filter(|&j| c.kept[j])
            .map(|j| ids[j])
            .collect();
        let continuation = &ids[segment..2 * segment];
        let fed: Vec<u32> = context.iter().chain(continuation).copied().collect();
        let expected = surprisals(&engine, &loaded, &fed, context.len());
        for (j, e) in expected.iter().enumerate() {
            assert!(
                (c.losses[segment + j] - e).abs() < 1e-4,
                "rate {rate} token {j}: {} vs {e}",
                c.losses[segment + j]
            );
        }
        // Conditioning on the kept prefix is not a detail: against the uncompressed prefix the
        // same tokens' losses move.
        let full = surprisals(&engine, &loaded, &ids[..2 * segment], segment);
        let moved = full
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / segment as f64;
        assert!(moved > 0.1, "rate {rate}: mean |loss change| {moved}");
    }
}

/// -log p(fed[i] | fed[..i]) for i in from..fed.len(), from one teacher-forced pass.
fn surprisals(
    engine: &Engine,
    loaded: &llmbench::models::LoadedModel,
    fed: &[u32],
    from: usize,
) -> Vec<f64> {
    let mut cache = kv::build(KvKind::Full, loaded.model.config().n_layers(), fed.len());
    let logits = engine.teacher_force(cache.as_mut(), fed).unwrap();
    let rows: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)
        .unwrap()
        .to_vec2()
        .unwrap();
    (from..fed.len())
        .map(|i| -(rows[i - 1][fed[i] as usize] as f64))
        .collect()
}
