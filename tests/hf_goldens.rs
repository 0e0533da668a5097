//! Logits of the GPT-2 and Llama implementations against Hugging Face transformers on small
//! random-weight checkpoints (tests/fixtures/make_fixtures.py), at every position, with the
//! full cache (one pass and token by token) and with no cache.

use crate::common::{fixture, load, max_abs_diff, to_rows};
use candle_core::{Device, Tensor};
use llmbench::kv::{self, KvKind};

/// f32 on both sides; differences come from summation order only (seen: ~1e-6).
const F32_TOLERANCE: f32 = 1e-4;

fn golden(name: &str) -> (Vec<u32>, Vec<Vec<f32>>) {
    let tensors = candle_core::safetensors::load(fixture(name).join("golden.safetensors"), &Device::Cpu).unwrap();
    let ids: Vec<i64> = tensors["input_ids"].squeeze(0).unwrap().to_vec1().unwrap();
    (ids.into_iter().map(|i| i as u32).collect(), to_rows(&tensors["logits"]))
}

fn check(name: &str) {
    let (ids, expected) = golden(name);
    let loaded = load(&fixture(name));
    let model = loaded.model.as_ref();
    let n_layers = model.config().n_layers();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();

    for kind in [KvKind::Full, KvKind::None] {
        let mut cache = kv::build(kind, n_layers);
        let all = to_rows(&model.forward_all(&input, 0, cache.as_mut()).unwrap().squeeze(0).unwrap());
        for (pos, (got, want)) in all.iter().zip(&expected).enumerate() {
            let d = max_abs_diff(got, want);
            assert!(d <= F32_TOLERANCE, "{name} {kind:?} one pass: position {pos} differs by {d}");
        }
    }

    // Token by token through the full cache.
    let mut cache = kv::build(KvKind::Full, n_layers);
    for (pos, want) in expected.iter().enumerate() {
        let step = Tensor::new(&ids[pos..pos + 1], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let got: Vec<f32> = model.forward(&step, pos, cache.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let d = max_abs_diff(&got, want);
        assert!(d <= F32_TOLERANCE, "{name} incremental: position {pos} differs by {d}");
    }
    // Token by token without a cache: every step recomputes the prefix.
    let mut cache = kv::build(KvKind::None, n_layers);
    for (pos, want) in expected.iter().enumerate().skip(ids.len() - 4) {
        let prefix = Tensor::new(&ids[..=pos], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let got: Vec<f32> = model.forward(&prefix, 0, cache.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let d = max_abs_diff(&got, want);
        assert!(d <= F32_TOLERANCE, "{name} no cache: position {pos} differs by {d}");
    }
}

#[test]
fn gpt2_matches_transformers() {
    check("tiny-gpt2");
}

#[test]
fn llama_gqa_matches_transformers() {
    check("tiny-llama");
}

#[test]
fn llama3_rope_scaling_and_tied_head_match_transformers() {
    check("tiny-llama3");
}

/// The goldens are not trivially matched: a wrong model (another fixture's weights) is far off.
#[test]
fn goldens_discriminate_between_models() {
    let (ids, expected) = golden("tiny-llama");
    let other = load(&fixture("tiny-llama3"));
    let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mut cache = kv::build(KvKind::Full, other.model.config().n_layers());
    let got = to_rows(&other.model.forward_all(&input, 0, cache.as_mut()).unwrap().squeeze(0).unwrap());
    assert!(max_abs_diff(&got[3], &expected[3]) > 100.0 * F32_TOLERANCE);
}
