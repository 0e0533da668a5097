//! The real SmolLM2-135M-Instruct GGUF (Q4_1) against outside references: Hugging Face
//! transformers (the same GGUF dequantized to f32; tests/fixtures/make_fixtures.py) for
//! teacher-forced predictions, perplexity and tokenization, and candle-transformers'
//! `quantized_llama` (the same quantized kernels) for greedy continuations.

use crate::common::{fixture, load, smollm2_gguf};
use candle_core::{Device, Tensor, D};
use candle_transformers::models::quantized_llama::ModelWeights;
use llmbench::decode::sampling::{argmax, SamplingConfig};
use llmbench::engine::{Engine, GenerateRequest};
use llmbench::kv::{self, KvKind};
use serde_json::Value;

/// Positions (of 251) whose top-1 must agree with transformers. The teacher-forced pass
/// dequantizes every weight to f32 (as transformers does), and measures 251/251; one
/// disagreement is allowed for a near-tie moving with summation order on another CPU.
/// llama.cpp and candle's Q4_1 x Q8_1 integer path differ at 5-7 of 255 on such a passage,
/// so a regression to rounded activations breaks this.
const MIN_TOP1_AGREE: usize = 250;
/// Where transformers' top-1 leads its top-2 by more than this many logits, we must agree.
const DECISIVE_MARGIN: f64 = 0.2;
/// Relative perplexity tolerance: measured 27.5956 against 27.5957 (3.6e-6 relative); f32
/// accumulation in another order moves it by about 1e-6; the Q8_1 path moves it by ~1e-3.
const PERPLEXITY_TOLERANCE: f64 = 1e-4;

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("smollm2/reference.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn teacher_forced_predictions_and_perplexity_match_transformers() {
    let reference = reference();
    let input_ids = ids(&reference["input_ids"]);
    let ref_argmax = ids(&reference["argmax"]);
    let margins: Vec<f64> = reference["top1_top2_margin"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let ref_ppl = reference["perplexity"].as_f64().unwrap();

    let loaded = load(&smollm2_gguf());
    // Our tokenizer gives the same ids for the passage.
    let passage = std::fs::read_to_string(fixture("smollm2/passage.txt")).unwrap();
    assert_eq!(loaded.tokenizer.encode(&passage).unwrap(), input_ids);

    let engine = Engine::new(loaded.model.as_ref(), &Device::Cpu);
    let mut cache = kv::build(KvKind::Full, loaded.model.config().n_layers(), 4096);
    let logits = engine.teacher_force(cache.as_mut(), &input_ids).unwrap();
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
    let rows: Vec<Vec<f32>> = log_probs.to_vec2().unwrap();

    let positions = input_ids.len() - 1;
    let mut agree = 0;
    let mut nll_sum = 0.0f64;
    let mut decisive_misses = vec![];
    for pos in 0..positions {
        let ours = argmax(&rows[pos]);
        if ours == ref_argmax[pos] {
            agree += 1;
        } else if margins[pos] > DECISIVE_MARGIN {
            decisive_misses.push((pos, ours, ref_argmax[pos], margins[pos]));
        }
        nll_sum -= rows[pos][input_ids[pos + 1] as usize] as f64;
    }
    let agreement = agree as f64 / positions as f64;
    let ppl = (nll_sum / positions as f64).exp();
    eprintln!("top-1 agreement {agree}/{positions} = {agreement:.4}; perplexity {ppl:.4} vs transformers {ref_ppl:.4}");
    assert!(decisive_misses.is_empty(), "disagreements where transformers' margin > {DECISIVE_MARGIN}: {decisive_misses:?}");
    assert!(agree >= MIN_TOP1_AGREE, "top-1 agreement {agree}/{positions}");
    assert!(((ppl - ref_ppl) / ref_ppl).abs() <= PERPLEXITY_TOLERANCE, "perplexity {ppl} vs {ref_ppl}");
}

#[test]
fn tokenizer_from_gguf_matches_transformers() {
    let loaded = load(&smollm2_gguf());
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(fixture("smollm2/tokenizer_cases.json")).unwrap()).unwrap();
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected = ids(&case["ids"]);
        let got = loaded.tokenizer.encode(text).unwrap();
        assert_eq!(got, expected, "ids of {text:?}");
        assert_eq!(loaded.tokenizer.decode(&got).unwrap(), case["decoded"].as_str().unwrap(), "decode of {text:?}");
    }
}

const GREEDY_PROMPTS: [&str; 3] = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
];
const GREEDY_TOKENS: usize = 32;

/// candle-transformers' quantized_llama, greedy, on the same file and ids.
fn quantized_llama_greedy(prompt: &[u32], n: usize) -> Vec<u32> {
    let path = smollm2_gguf();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    let mut out = vec![];
    let mut input = prompt.to_vec();
    let mut pos = 0;
    for _ in 0..n {
        let x = Tensor::new(input.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        // candle's own argmax: the reference shares no code with what it checks.
        let next = model.forward(&x, pos).unwrap().squeeze(0).unwrap().argmax(D::Minus1).unwrap().to_scalar::<u32>().unwrap();
        pos += input.len();
        out.push(next);
        input = vec![next];
    }
    out
}

#[test]
fn greedy_continuations_equal_candle_quantized_llama() {
    let loaded = load(&smollm2_gguf());
    let engine = Engine::new(loaded.model.as_ref(), &Device::Cpu);
    let mut cache = kv::build(KvKind::Full, loaded.model.config().n_layers(), 4096);
    for prompt in GREEDY_PROMPTS {
        let prompt_ids = loaded.tokenizer.encode(prompt).unwrap();
        let request = GenerateRequest {
            prompt_ids: &prompt_ids,
            max_new_tokens: GREEDY_TOKENS,
            sampling: SamplingConfig::default(),
            stop_at_eos: false,
        };
        let ours = engine.generate(cache.as_mut(), &request, &mut |_| {}).unwrap().generated_ids;
        let theirs = quantized_llama_greedy(&prompt_ids, GREEDY_TOKENS);
        assert_eq!(ours, theirs, "prompt {prompt:?}: ours {:?} vs quantized_llama {:?}",
            loaded.tokenizer.decode(&ours).unwrap(), loaded.tokenizer.decode(&theirs).unwrap());
    }
}

/// Perplexity of the real passage teacher-forced through `kind`'s cache.
fn passage_perplexity(loaded: &llmbench::models::LoadedModel, kind: KvKind) -> f64 {
    let input_ids = ids(&reference()["input_ids"]);
    let engine = Engine::new(loaded.model.as_ref(), &Device::Cpu);
    let mut cache = kv::build(kind, loaded.model.config().n_layers(), input_ids.len());
    let logits = engine.teacher_force(cache.as_mut(), &input_ids).unwrap();
    let rows: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().to_vec2().unwrap();
    let nll: f64 = (0..input_ids.len() - 1).map(|p| -rows[p][input_ids[p + 1] as usize] as f64).sum();
    (nll / (input_ids.len() - 1) as f64).exp()
}

/// Perplexity increase each quantized cache may cost on the real passage. int8: the issue's
/// 1% (measured +0.41% on both machines below). int4 and mixed: bitwise stable on one machine,
/// but candle's matmuls pick SIMD kernels by CPU and the summation order flips codes near
/// rounding boundaries: measured int4 +3.56% and mixed +0.71% on 2026-11-23 (another CPU),
/// +5.14% and +1.09% on 2026-12-02 (AVX-512). Bound: the larger plus the spread between them
/// (1.6 and 0.4 points).
const QUANTIZED_PPL_BOUNDS: [(KvKind, f64); 3] = [(KvKind::Int8, 0.01), (KvKind::Int4, INT4_BOUND), (KvKind::Mixed, MIXED_BOUND)];
const INT4_BOUND: f64 = 0.068;
const MIXED_BOUND: f64 = 0.015;

#[test]
fn quantized_cache_perplexity_stays_within_its_bound() {
    let loaded = load(&smollm2_gguf());
    let full = passage_perplexity(&loaded, KvKind::Full);
    let measured: Vec<(KvKind, f64, f64)> =
        QUANTIZED_PPL_BOUNDS.iter().map(|&(kind, bound)| (kind, bound, passage_perplexity(&loaded, kind))).collect();
    for &(kind, _, ppl) in &measured {
        eprintln!("perplexity: full {full:.4}, {kind:?} {ppl:.4} ({:+.3}%)", (ppl / full - 1.0) * 100.0);
    }
    for (kind, bound, ppl) in measured {
        assert!((ppl / full - 1.0).abs() <= bound, "{kind:?} {ppl} vs full {full}");
        assert!(ppl != full, "{kind:?} rounding changed nothing");
    }
}
