//! The real SmolLM2-135M-Instruct GGUF (Q4_1) against outside references: Hugging Face
//! transformers (the same GGUF dequantized to f32; tests/fixtures/make_fixtures.py) for
//! teacher-forced predictions, perplexity and tokenization, through the prefill path and
//! through the decode path, where candle-transformers' `quantized_llama` (8-bit activations
//! too) sets how far the activation rounding may move predictions.

use crate::common::{fixture, load, smollm2_gguf};
use candle_core::{Device, Tensor, D};
use candle_transformers::models::quantized_llama::ModelWeights;
use llmbench::decode::sampling::argmax;
use llmbench::engine::Engine;
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

/// Rows per forward pass below `BATCHED_DEQUANT_MIN_ROWS`: the decode path (8-bit activations
/// against the quantized weights, our AVX2 kernels), whose rows equal one-token steps bit
/// for bit, so 9 passes stand for 251 decode steps.
const DECODE_CHUNK: usize = 31;

/// Top-1 predictions of the passage through the decode path, against transformers. The
/// decode path rounds activations to 8 bits per 32-block, as llama.cpp and candle's
/// `quantized_llama` do, so it cannot match the f32 reference exactly: the bound is
/// candle's own count on the same passage (measured below) plus `EXTRA_DECODE_MISSES`, and
/// every miss must sit where transformers' margin is under `DECODE_MARGIN`.
const EXTRA_DECODE_MISSES: usize = 2;
/// Logits: an 8-bit activation rounding moves logits by up to ~0.7 (measured), so a top-1
/// flip needs a near-tie of that order; a real bug flips decisive positions.
const DECODE_MARGIN: f64 = 1.0;

fn decode_path_argmax(loaded: &llmbench::models::LoadedModel, ids: &[u32]) -> Vec<u32> {
    use llmbench::models::layers::VerifyAttention;
    let model = loaded.model.as_ref();
    let mut cache = kv::build(KvKind::Full, model.config().n_layers(), ids.len());
    let mut out = vec![];
    for (i, chunk) in ids.chunks(DECODE_CHUNK).enumerate() {
        let x = Tensor::new(chunk, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let hidden = model.forward_blocks(&x, i * DECODE_CHUNK, model.config().n_layers(), VerifyAttention::Batched, cache.as_mut()).unwrap();
        let logits: Vec<Vec<f32>> = model.lm_head(&hidden).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        out.extend(logits.iter().map(|row| argmax(row)));
    }
    out
}

/// candle-transformers' quantized_llama on the same file, one token per step (its Q8_1 path).
fn quantized_llama_argmax(ids: &[u32]) -> Vec<u32> {
    let path = smollm2_gguf();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    ids.iter()
        .enumerate()
        .map(|(pos, &id)| {
            let x = Tensor::new(&[id], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            // candle's own argmax: the reference shares no code with what it checks.
            model.forward(&x, pos).unwrap().squeeze(0).unwrap().argmax(D::Minus1).unwrap().to_scalar::<u32>().unwrap()
        })
        .collect()
}

#[test]
fn decode_steps_match_transformers_to_the_activation_rounding() {
    let reference = reference();
    let input_ids = ids(&reference["input_ids"]);
    let ref_argmax = ids(&reference["argmax"]);
    let margins: Vec<f64> = reference["top1_top2_margin"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let loaded = load(&smollm2_gguf());
    let positions = input_ids.len() - 1;
    let misses = |pred: &[u32]| -> Vec<(usize, f64)> { (0..positions).filter(|&p| pred[p] != ref_argmax[p]).map(|p| (p, margins[p])).collect() };
    let ours = misses(&decode_path_argmax(&loaded, &input_ids));
    let candle = misses(&quantized_llama_argmax(&input_ids));
    eprintln!("decode-path misses against transformers: ours {} {ours:?}, candle quantized_llama {} {candle:?}", ours.len(), candle.len());
    assert!(ours.len() <= candle.len() + EXTRA_DECODE_MISSES, "ours {ours:?} vs candle {candle:?}");
    assert!(ours.iter().all(|&(_, m)| m < DECODE_MARGIN), "a miss at a decisive position: {ours:?}");
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
