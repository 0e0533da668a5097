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

/// adaptivocab's tokenizer round-trips text exactly and never lengthens a sequence (the real
/// SmolLM2 tokenizer, seed 002's phrases plus phrases mined from a real passage), and merges
/// where a phrase occurs.
#[test]
fn adaptivocab_round_trips_text_and_never_lengthens() {
    use llmbench::input::adaptivocab;
    use llmbench::models::tokenizer::{PhraseMerges, TextTokenizer};
    let loaded = load(&smollm2_gguf());
    let base = &loaded.tokenizer;
    let wiki = std::fs::read_to_string(fixture("wiki-excerpt.txt")).unwrap();
    let mut phrases: Vec<String> = adaptivocab::DEFAULT_PHRASES
        .iter()
        .map(|p| p.to_string())
        .collect();
    let mined = adaptivocab::mine(&wiki, base, 40).unwrap();
    assert!(!mined.is_empty());
    phrases.extend(mined);
    let extension = adaptivocab::extension(&phrases, base).unwrap();
    assert!(extension.constituents.iter().all(|c| c.len() >= 2));
    let vocab = loaded.model.config().vocab_size() as u32;
    let merged = TextTokenizer::Merged {
        base: Box::new(
            TextTokenizer::from_gguf(
                &llmbench::models::gguf::GgufFile::open(&smollm2_gguf()).unwrap(),
            )
            .unwrap(),
        ),
        merges: PhraseMerges::new(vocab, extension.constituents.clone()),
    };
    let mut texts: Vec<String> = llmbench::commands::prompts::BUILT_IN
        .iter()
        .map(|s| s.to_string())
        .collect();
    texts.push(wiki.clone());
    texts.push("Machine learning and deep learning: machine learning, Machine Learning, deep learningdeep learning.".into());
    texts.push("  artificial intelligence\n\nartificial intelligence — naïve Bayes ≠ neural networks 🤖 neural network".into());
    texts.push(String::new());
    let mut merges_seen = 0;
    for text in &texts {
        let ours = merged.encode(text).unwrap();
        let theirs = base.encode(text).unwrap();
        assert_eq!(
            merged.decode(&ours).unwrap(),
            base.decode(&theirs).unwrap(),
            "round trip of {text:?}"
        );
        assert_eq!(
            merged.decode(&ours).unwrap(),
            *text,
            "decode(encode(x)) == x for {text:?}"
        );
        assert!(
            ours.len() <= theirs.len(),
            "{} > {} for {text:?}",
            ours.len(),
            theirs.len()
        );
        assert_eq!(merged.base_ids(&ours), theirs, "expanding the phrase tokens gives the base ids");
        let phrase_ids = ours.iter().filter(|&&id| id >= vocab).count();
        assert_eq!(
            theirs.len() - ours.len(),
            ours.iter()
                .filter(|&&id| id >= vocab)
                .map(|&id| extension.constituents[(id - vocab) as usize].len() - 1)
                .sum::<usize>()
        );
        merges_seen += phrase_ids;
    }
    let demo = merged
        .encode("Machine learning and deep learning: machine learning")
        .unwrap();
    assert_eq!(
        demo.iter().filter(|&&id| id >= vocab).count(),
        3,
        "all three phrase occurrences merge: {demo:?}"
    );
    assert!(
        merges_seen > 10,
        "mined phrases merge in the passage they came from ({merges_seen})"
    );
}

/// The extended model keeps every base token's logits (same stored rows, same arithmetic) and
/// adds one row per phrase form: its input embedding and head row are AdaptiVocab's weighted
/// means of the constituents' rows (to the table's Q4_1 rounding), so a phrase token's logit
/// is close to the weighted mean of its constituents' logits.
#[test]
fn adaptivocab_model_keeps_base_logits_and_scores_phrase_tokens_from_their_parts() {
    use llmbench::input::adaptivocab;
    use llmbench::models::vocab_extension::exponential_weights;
    let resolved =
        llmbench::models::source::resolve(smollm2_gguf().to_str().unwrap(), &Default::default())
            .unwrap();
    let base = llmbench::models::load(&resolved, llmbench::models::DTypeArg::F32, 0, &Device::Cpu)
        .unwrap();
    let phrases: Vec<String> = adaptivocab::DEFAULT_PHRASES
        .iter()
        .map(|p| p.to_string())
        .collect();
    let extension = adaptivocab::extension(&phrases, &base.tokenizer).unwrap();
    let extended = llmbench::models::load_extended(
        &resolved,
        llmbench::models::DTypeArg::F32,
        0,
        &Device::Cpu,
        &extension,
    )
    .unwrap();
    let vocab = base.model.config().vocab_size();
    assert_eq!(
        extended.model.config().vocab_size(),
        vocab + extension.constituents.len()
    );
    assert!(extended.spec.weights_format.contains("phrase tokens"));

    let ids = base
        .tokenizer
        .encode("Researchers in artificial intelligence study how")
        .unwrap();
    let logits = |m: &llmbench::models::LoadedModel| -> Vec<f32> {
        let engine = Engine::new(m.model.as_ref(), &Device::Cpu);
        let mut cache = kv::build(KvKind::Full, m.model.config().n_layers(), 64);
        let all = engine.teacher_force(cache.as_mut(), &ids).unwrap();
        all.get(ids.len() - 1).unwrap().to_vec1().unwrap()
    };
    let (theirs, ours) = (logits(&base), logits(&extended));
    assert_eq!(ours.len(), vocab + extension.constituents.len());
    let max_diff = theirs
        .iter()
        .zip(&ours)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max_diff < 1e-4, "base logits moved by {max_diff}");
    // Head row = sum_i w_i row_i (then Q4_1-rounded), so logit ~ sum_i w_i logit_i.
    for (k, parts) in extension.constituents.iter().enumerate() {
        let w = exponential_weights(parts.len(), false);
        let expected: f64 = parts
            .iter()
            .zip(&w)
            .map(|(&id, w)| w * theirs[id as usize] as f64)
            .sum();
        let got = ours[vocab + k] as f64;
        assert!(
            (got - expected).abs() < 0.05 * expected.abs().max(1.0),
            "phrase {k}: logit {got} vs weighted mean {expected}"
        );
    }
}
