//! SLED decoding: with a window that covers the whole sequence both variants are standard
//! decoding; with a smaller one the cache stays bounded by window + stride.

use crate::common::{fixture, load};
use candle_core::Device;
use llmbench::decode::sampling::SamplingConfig;
use llmbench::decode::{self, Method, MethodParams};
use llmbench::engine::{Engine, GenerateRequest, Generation};
use llmbench::kv::{self, KvKind};

const NEW_TOKENS: usize = 40;

fn run(name: &str, method: Method, params: &MethodParams) -> Generation {
    let loaded = load(&fixture(name));
    let engine = Engine::new(loaded.model.as_ref(), &Device::Cpu);
    let prompt = [11, 22, 33, 44, 55];
    let mut strategy = decode::build(method, params).unwrap();
    let mut cache = kv::build(strategy.cache_kind(KvKind::Full), loaded.model.config().n_layers(), 4096);
    let request =
        GenerateRequest { prompt_ids: &prompt, max_new_tokens: NEW_TOKENS, sampling: SamplingConfig::default(), stop_at_eos: false };
    engine.generate_with(strategy.as_mut(), cache.as_mut(), &request, &mut |_| {}).unwrap()
}

#[test]
fn sled_with_a_covering_window_is_standard_decoding() {
    for name in ["tiny-gpt2", "tiny-llama"] {
        let covering = MethodParams::sled(100, 10);
        let standard = run(name, Method::Standard, &covering).generated_ids;
        assert_eq!(run(name, Method::SledRecompute, &covering).generated_ids, standard, "{name} sled:recompute");
        assert_eq!(run(name, Method::SledStride, &covering).generated_ids, standard, "{name} sled:stride");
    }
}

#[test]
fn sled_with_a_short_window_forgets_and_stays_bounded() {
    let params = MethodParams::sled(8, 4);
    let standard = run("tiny-llama", Method::Standard, &params);
    let stride = run("tiny-llama", Method::SledStride, &params);
    let recompute = run("tiny-llama", Method::SledRecompute, &params);
    // 2 layers x K and V x 2 kv heads x 16 dims x 4 bytes per token.
    let per_token = 2 * 2 * 2 * 16 * 4;
    let max_kv = |g: &Generation| g.events.iter().map(|e| e.kv_cache_bytes).max().unwrap();
    // The cache fills to window + stride tokens before the window is re-encoded.
    assert_eq!(max_kv(&stride), 12 * per_token, "{}", max_kv(&stride));
    assert_eq!(max_kv(&standard), (5 + NEW_TOKENS - 1) as u64 * per_token);
    assert_eq!(max_kv(&recompute), 0);
    assert_ne!(recompute.generated_ids, standard.generated_ids, "a short window changes the output");
}
