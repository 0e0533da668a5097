//! Incremental decoding through the full cache equals recomputing without a cache.

use crate::common::{fixture, load, max_abs_diff};
use candle_core::{Device, Tensor};
use llmbench::decode::sampling::argmax;
use llmbench::kv::{self, KvKind};

const F32_TOLERANCE: f32 = 1e-4;
const STEPS: usize = 64;

fn check(name: &str) {
    let loaded = load(&fixture(name));
    let model = loaded.model.as_ref();
    let n_layers = model.config().n_layers();
    let mut full = kv::build(KvKind::Full, n_layers, 4096);
    let mut none = kv::build(KvKind::None, n_layers, 4096);
    let mut tokens: Vec<u32> = vec![5, 17, 42, 7];
    let prompt = Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mut logits: Vec<f32> = model.forward(&prompt, 0, full.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
    for step in 0..STEPS {
        let all = Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let recomputed: Vec<f32> = model.forward(&all, 0, none.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let d = max_abs_diff(&logits, &recomputed);
        assert!(d <= F32_TOLERANCE, "{name}: step {step} differs by {d}");
        let next = argmax(&logits);
        tokens.push(next);
        let pos = full.seq_len();
        assert_eq!(pos, tokens.len() - 1);
        let input = Tensor::new(&[next], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        logits = model.forward(&input, pos, full.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
    }
    assert_eq!(full.seq_len(), 4 + STEPS);
    let (kv_heads, head_dim) = model.config().kv_shape();
    let expected_bytes = n_layers * 2 * kv_heads * head_dim * (4 + STEPS) * 4;
    assert_eq!(full.stats().kv_cache_bytes, expected_bytes as u64);
}

#[test]
fn gpt2_incremental_equals_recompute() {
    check("tiny-gpt2");
}

#[test]
fn llama_incremental_equals_recompute() {
    check("tiny-llama3");
}

/// The static cache (preallocated, written in place, attention over a strided view) gives
/// logits bit for bit equal to the full cache's at every step, prefill and decode, and holds
/// exactly its reservation.
fn static_equals_full(name: &str) {
    let loaded = load(&fixture(name));
    let model = loaded.model.as_ref();
    let n_layers = model.config().n_layers();
    let capacity = 4 + STEPS;
    let mut full = kv::build(KvKind::Full, n_layers, capacity);
    let mut fixed = kv::build(KvKind::Static, n_layers, capacity);
    let mut tokens: Vec<u32> = vec![5, 17, 42, 7];
    let mut pos = 0;
    for step in 0..STEPS {
        let input = Tensor::new(&tokens[pos..], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let a: Vec<f32> = model.forward(&input, pos, full.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let b: Vec<f32> = model.forward(&input, pos, fixed.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{name}: step {step} is not bitwise equal");
        pos = tokens.len();
        tokens.push(argmax(&a));
    }
    assert_eq!(fixed.seq_len(), full.seq_len());
    let (kv_heads, head_dim) = model.config().kv_shape();
    assert_eq!(fixed.stats().kv_cache_bytes, (n_layers * 2 * kv_heads * head_dim * capacity * 4) as u64);
}

#[test]
fn gpt2_static_cache_is_bitwise_full() {
    static_equals_full("tiny-gpt2");
}

#[test]
fn llama_static_cache_is_bitwise_full() {
    static_equals_full("tiny-llama");
}
