//! Incremental decoding through the full cache equals recomputing without a cache.

use crate::common::{fixture, load, max_abs_diff};
use candle_core::{Device, Tensor};
use llmbench::decode::sampling::argmax;
use llmbench::kv::{self, KvKind};

/// Summation order only: measured 1.9e-6 (GPT-2) and 2.9e-6 (Llama) on 2026-12-02 (printed);
/// 1e-5 leaves room for other SIMD widths, not for a wrong position or mask.
const F32_TOLERANCE: f32 = 1e-5;
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
    let mut worst = 0f32;
    for step in 0..STEPS {
        let all = Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let recomputed: Vec<f32> = model.forward(&all, 0, none.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let d = max_abs_diff(&logits, &recomputed);
        worst = worst.max(d);
        assert!(d <= F32_TOLERANCE, "{name}: step {step} differs by {d}");
        let next = argmax(&logits);
        tokens.push(next);
        let pos = full.seq_len();
        assert_eq!(pos, tokens.len() - 1);
        let input = Tensor::new(&[next], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        logits = model.forward(&input, pos, full.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
    }
    eprintln!("{name}: worst |incremental - recomputed| {worst:e}");
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

/// Runs `STEPS` greedy steps through `cache` and through a full cache side by side; returns
/// whether every step's logits were bitwise equal.
fn bitwise_equal_to_full(name: &str, kind: KvKind, options: kv::KvOptions) -> bool {
    first_difference(name, kind, options).logits.is_none()
}

/// The first step at which a strategy's logits differ from full's, and the first step after
/// which it holds something other than full does (fewer tokens, or other bytes: evicted,
/// merged or quantized).
#[derive(Debug, PartialEq)]
struct FirstDifference {
    logits: Option<usize>,
    held: Option<usize>,
}

fn first_difference(name: &str, kind: KvKind, options: kv::KvOptions) -> FirstDifference {
    let loaded = load(&fixture(name));
    let model = loaded.model.as_ref();
    let n_layers = model.config().n_layers();
    let mut full = kv::build(KvKind::Full, n_layers, 4 + STEPS);
    let mut other = kv::build_with(kind, options, n_layers, 4 + STEPS);
    let mut tokens: Vec<u32> = vec![5, 17, 42, 7];
    let mut pos = 0;
    let mut first = FirstDifference { logits: None, held: None };
    for step in 0..STEPS {
        let input = Tensor::new(&tokens[pos..], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let a: Vec<f32> = model.forward(&input, pos, full.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let b: Vec<f32> = model.forward(&input, pos, other.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        if first.logits.is_none() && !a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()) {
            first.logits = Some(step);
        }
        let (f, o) = (full.stats(), other.stats());
        if first.held.is_none() && (o.tokens_held != f.tokens_held || o.kv_cache_bytes != f.kv_cache_bytes) {
            first.held = Some(step);
        }
        pos = tokens.len();
        tokens.push(argmax(&a));
    }
    first
}

#[test]
fn paged_cache_is_bitwise_full_with_blocks_that_do_not_divide_the_length() {
    for name in ["tiny-gpt2", "tiny-llama"] {
        assert!(bitwise_equal_to_full(name, KvKind::Paged, kv::KvOptions { block_size: 5, ..Default::default() }), "{name}");
    }
}

#[test]
fn window_covering_the_sequence_is_bitwise_full_and_a_short_one_is_not() {
    let covering = kv::KvOptions { window: 4 + STEPS, ..Default::default() };
    assert!(bitwise_equal_to_full("tiny-llama", KvKind::Window, covering));
    let short = kv::KvOptions { window: 8, ..Default::default() };
    // 4 + s tokens exceed 8 at step 5; the window drops them after that step's attention.
    assert_eq!(first_difference("tiny-llama", KvKind::Window, short), FirstDifference { logits: Some(6), held: Some(5) });
}

/// Strategies that would keep everything (window, budget or residual covering the sequence)
/// give logits bitwise equal to the full cache's, for GPT-2 and Llama; short settings that must
/// evict, summarise or quantize do not. The exactness makes the quality deltas the kvcache
/// command reports the strategies' own, not an artefact of the plumbing.
#[test]
fn strategies_covering_the_sequence_are_bitwise_full_and_short_ones_are_not() {
    let n = 4 + STEPS;
    let d = kv::KvOptions::default();
    let covering = [
        (KvKind::Sinks, kv::KvOptions { window: n, ..d }),
        (KvKind::Chunked, kv::KvOptions { keep_last: n, ..d }),
        (KvKind::H2o, kv::KvOptions { budget: n, ..d }),
        (KvKind::Cake, kv::KvOptions { budget: n + kv::CAKE_WINDOW, ..d }),
        (KvKind::Hybrid, kv::KvOptions { budget: n + kv::CAKE_WINDOW, ..d }),
        (KvKind::Kivi, kv::KvOptions { residual: n, ..d }),
    ];
    for name in ["tiny-gpt2", "tiny-llama"] {
        for (kind, options) in covering {
            assert!(bitwise_equal_to_full(name, kind, options), "{name} {kind:?}");
        }
    }
    // After step s the cache has seen 4 + s tokens. Each short setting first holds something
    // else than full at the step its rule predicts: sinks 2 + 8 and h2o 8 keep at most 10 and 8
    // tokens (steps 7, 5), chunked merges a chunk of 4 once 8 + 4 are exact (step 8), cake's
    // average budget 40 (step 37), KIVI quantizes a group of 4 once 4 + 4 tokens wait (step 4).
    // Evicting strategies drop tokens after the step's attention, so their logits first differ
    // one step later; KIVI quantizes on append, so the same step. Before that, bitwise full's.
    let short = [
        (KvKind::Sinks, kv::KvOptions { sinks: 2, window: 8, ..d }, 7, 1),
        (KvKind::Chunked, kv::KvOptions { keep_last: 8, chunk: 4, ..d }, 8, 1),
        (KvKind::H2o, kv::KvOptions { budget: 8, ..d }, 5, 1),
        (KvKind::Cake, kv::KvOptions { budget: kv::CAKE_WINDOW + 8, ..d }, 37, 1),
        (KvKind::Hybrid, kv::KvOptions { budget: kv::CAKE_WINDOW + 8, ..d }, 0, 38),
        // A residual shorter than the sequence: the older tokens are quantized (8 bits too).
        (KvKind::Kivi, kv::KvOptions { residual: 4, group: 4, bits: kv::Bits::Eight, ..d }, 4, 0),
        (KvKind::Kivi, kv::KvOptions { residual: 4, group: 4, bits: kv::Bits::Two, ..d }, 4, 0),
    ];
    for (kind, options, held, later) in short {
        let first = first_difference("tiny-llama", kind, options);
        assert_eq!(first, FirstDifference { logits: Some(held + later), held: Some(held) }, "{kind:?}");
    }
}

/// hybrid is CAKE in preallocated buffers: with a budget that must evict, every step's logits
/// are bitwise cake's (the compaction keeps exactly CAKE's chosen tokens, in order: any other
/// token would change the attention), it fills exactly the bytes cake holds, and it reserves
/// the analytic count: layers x 2 x kv_heads x head_dim x 4 bytes x (budget + 1) slots (the
/// old-token budget, the recent window and the one token a step appends before evicting; a
/// short prompt gives every layer the average budget).
#[test]
fn hybrid_is_cake_compacted_into_buffers_of_the_analytic_size() {
    let loaded = load(&fixture("tiny-llama"));
    let model = loaded.model.as_ref();
    let n_layers = model.config().n_layers();
    let (kv_heads, head_dim) = model.config().kv_shape();
    let per_slot = (n_layers * 2 * kv_heads * head_dim * 4) as u64;
    let options = kv::KvOptions { budget: kv::CAKE_WINDOW + 8, ..Default::default() };
    let mut cake = kv::build_with(KvKind::Cake, options, n_layers, 4 + STEPS);
    let mut hybrid = kv::build_with(KvKind::Hybrid, options, n_layers, 4 + STEPS);
    let mut tokens: Vec<u32> = vec![5, 17, 42, 7];
    let mut pos = 0;
    let mut evicted = false;
    for step in 0..STEPS {
        let input = Tensor::new(&tokens[pos..], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let a: Vec<f32> = model.forward(&input, pos, cake.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let b: Vec<f32> = model.forward(&input, pos, hybrid.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "step {step}: logits differ from cake's");
        let (c, h) = (cake.stats(), hybrid.stats());
        assert_eq!((h.tokens_held, h.evictions), (c.tokens_held, c.evictions), "step {step}");
        assert_eq!(h.used_bytes, Some(c.kv_cache_bytes), "step {step}: filled bytes");
        assert_eq!(h.kv_cache_bytes, per_slot * (options.budget as u64 + 1), "step {step}: reserved bytes");
        evicted |= c.evictions > 0;
        pos = tokens.len();
        tokens.push(argmax(&a));
    }
    assert!(evicted, "the budget must have evicted within {STEPS} steps");
    assert!(hybrid.truncate(1).is_err(), "evictions cannot be rolled back");
}

/// Bytes each strategy reports equal the analytic count: layers x 2 x kv_heads x head_dim x
/// tokens x 4 bytes (f32), tokens being what it holds (whole blocks for paged, the reservation
/// for static, the window for window); int8 holds 1 byte an element plus a 4-byte scale per
/// token and head.
#[test]
fn reported_bytes_equal_the_analytic_count() {
    let loaded = load(&fixture("tiny-llama"));
    let model = loaded.model.as_ref();
    let n_layers = model.config().n_layers();
    let (kv_heads, head_dim) = model.config().kv_shape();
    let per_token = (n_layers * 2 * kv_heads * head_dim * 4) as u64;
    let options = kv::KvOptions { window: 16, block_size: 7, keep_last: 16, chunk: 4, budget: 16, ..Default::default() };
    let max_tokens = 40;
    let prompt: Vec<u32> = (0..30).map(|i| (i * 7 % 50) as u32).collect();
    let int8_per_token = (n_layers * 2 * kv_heads * (head_dim + 4)) as u64;
    let cases = [
        (KvKind::Full, per_token * 30),
        (KvKind::Static, per_token * 40),
        (KvKind::Window, per_token * 16),
        (KvKind::Paged, per_token * 35),
        (KvKind::None, 0),
        (KvKind::Int8, int8_per_token * 30),
        // 4 sinks + the last 16.
        (KvKind::Sinks, per_token * 20),
        // 30 = 3 chunks of 4 summarised (3 tokens) + 18 exact (16 <= tail < 16 + 4).
        (KvKind::Chunked, per_token * 21),
        (KvKind::H2o, per_token * 16),
    ];
    for (kind, bytes) in cases {
        let mut cache = kv::build_with(kind, options, n_layers, max_tokens);
        let input = Tensor::new(prompt.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        model.forward(&input, 0, cache.as_mut()).unwrap();
        assert_eq!(cache.stats().kv_cache_bytes, bytes, "{kind:?}");
    }
}
