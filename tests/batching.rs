//! Batched decoding (continuous batching over the shared paged pool) gives every sequence the
//! tokens it gets decoded alone: exactly on the random-weight fixtures and on the real GGUF where
//! every step runs the per-row kernels; within the near-tie rule where a step mixes a long
//! prompt chunk into the batch (the dequantized GEMM rounds differently from the kernels).

use crate::common::{fixture, load, smollm2_gguf};
use candle_core::Device;
use llmbench::decode::sampling::SamplingConfig;
use llmbench::engine::batch::{BatchEngine, BatchLimits, BatchUsage, SeqEvent, SeqId, SeqRequest};
use llmbench::engine::batch_spec::BatchSpeculation;
use llmbench::engine::{Engine, GenerateRequest};
use llmbench::kv::{self, KvKind};
use llmbench::models::LoadedModel;
use std::collections::BTreeMap;

/// Logits by which the alone run's top-1 must lead its top-2 wherever the batched sequence
/// first differs: the 8-bit activation rounding of the kernels moves logits by up to ~0.7
/// (tests/smollm2.rs, `DECODE_MARGIN`), so only a near-tie of that order may flip.
const NEAR_TIE_LOGITS: f32 = 1.0;

fn prompts(lengths: &[usize], vocab: usize) -> Vec<Vec<u32>> {
    lengths.iter().enumerate().map(|(i, &n)| (0..n).map(|j| ((i * 7919 + j * 104_729 + 13) % (vocab - 1)) as u32).collect()).collect()
}

/// Each prompt decoded alone (full cache, greedy): tokens and every step's logits.
fn alone(loaded: &LoadedModel, prompt: &[u32], max_new: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let model = loaded.model.as_ref();
    let mut engine = Engine::new(model, &Device::Cpu);
    engine.keep_logits = true;
    let mut cache = kv::build(KvKind::Full, model.config().n_layers(), prompt.len() + max_new);
    let req = GenerateRequest { prompt_ids: prompt, max_new_tokens: max_new, sampling: SamplingConfig::default(), stop_at_eos: false };
    let g = engine.generate(cache.as_mut(), &req, &mut |_| {}).unwrap();
    (g.generated_ids, g.logits)
}

/// All prompts submitted at once and stepped to the end; tokens per sequence and preemptions.
fn batched(loaded: &LoadedModel, prompts: &[Vec<u32>], max_new: usize, limits: BatchLimits) -> (Vec<Vec<u32>>, u64) {
    let (tokens, usage) = batched_with(loaded, prompts, max_new, limits, None);
    (tokens, usage.preemptions)
}

/// `batched`, speculating when asked; tokens per sequence and the engine's usage at the end.
fn batched_with(loaded: &LoadedModel, prompts: &[Vec<u32>], max_new: usize, limits: BatchLimits, spec: Option<BatchSpeculation>) -> (Vec<Vec<u32>>, BatchUsage) {
    let mut engine = BatchEngine::new(loaded.model.as_ref(), &Device::Cpu, limits).unwrap();
    if let Some(spec) = spec {
        engine = engine.with_speculation(spec);
    }
    let ids: Vec<SeqId> = prompts
        .iter()
        .map(|p| engine.submit(SeqRequest { prompt_ids: p.clone(), max_new_tokens: max_new, sampling: SamplingConfig::default(), stop_at_eos: false }).unwrap())
        .collect();
    let mut out: BTreeMap<SeqId, Vec<u32>> = BTreeMap::new();
    let mut finished = 0;
    while !engine.is_idle() {
        for event in engine.step().unwrap().events {
            match event {
                SeqEvent::Token { seq, token, .. } => out.entry(seq).or_default().push(token),
                SeqEvent::Finished { .. } => finished += 1,
                SeqEvent::Preempted { .. } => {}
            }
        }
    }
    assert_eq!(finished, prompts.len());
    let usage = engine.usage();
    assert_eq!((usage.blocks_used, usage.blocks_free), (0, limits.kv_blocks), "finished sequences give every block back");
    (ids.iter().map(|id| out.remove(id).unwrap_or_default()).collect(), usage)
}

fn limits(max_batch: usize, max_step_tokens: usize, kv_blocks: usize) -> BatchLimits {
    BatchLimits { max_batch, max_step_tokens, block_size: 4, kv_blocks }
}

fn assert_exact(name: &str, lengths: &[usize], max_new: usize, limits: BatchLimits) -> u64 {
    let loaded = load(&fixture(name));
    let prompts = prompts(lengths, loaded.model.config().vocab_size());
    let (got, preemptions) = batched(&loaded, &prompts, max_new, limits);
    for (i, (prompt, tokens)) in prompts.iter().zip(&got).enumerate() {
        assert_eq!(tokens, &alone(&loaded, prompt, max_new).0, "{name}: sequence {i} (prompt of {} tokens)", prompt.len());
    }
    preemptions
}

/// Prompts of different lengths, a step budget that splits the long ones into chunks beside
/// other sequences' decodes, and a batch cap that makes later sequences wait.
#[test]
fn gpt2_batched_equals_alone() {
    assert_exact("tiny-gpt2", &[3, 9, 17, 40, 1, 5], 20, limits(4, 16, 256));
}

#[test]
fn llama_batched_equals_alone() {
    assert_exact("tiny-llama3", &[3, 9, 17, 40, 1, 5], 20, limits(4, 16, 256));
    assert_exact("tiny-llama", &[2, 33, 8], 12, limits(8, 64, 256));
}

/// A pool too small for every sequence at full length: the scheduler preempts and recomputes,
/// and the tokens are still each sequence's own.
#[test]
fn preemption_recomputes_without_changing_tokens() {
    let preemptions = assert_exact("tiny-llama3", &[6, 6, 6, 6], 24, limits(4, 64, 16));
    assert!(preemptions > 0, "16 blocks of 4 cannot hold 4 x 29 positions: someone must be preempted");
}

/// The real GGUF with short prompts: every step takes the per-row kernels, so batching changes
/// no bit and the tokens are exactly those decoded alone.
#[test]
fn smollm2_batched_equals_alone_exactly_on_the_kernels() {
    let loaded = load(&smollm2_gguf());
    let prompts = prompts(&[3, 5, 7, 2, 6, 4], loaded.model.config().vocab_size());
    let (got, _) = batched(&loaded, &prompts, 16, limits(8, 64, 64));
    for (i, (prompt, tokens)) in prompts.iter().zip(&got).enumerate() {
        assert_eq!(tokens, &alone(&loaded, prompt, 16).0, "sequence {i}");
    }
}

/// The real GGUF with prompt chunks of 32 rows or more beside decodes: those steps dequantize
/// the weights for a dense GEMM, which rounds differently from the kernels. Each sequence must
/// equal its alone run up to its first difference, and there the alone run's top two logits
/// must be within `NEAR_TIE_LOGITS` (printed).
#[test]
fn smollm2_batched_with_long_chunks_differs_only_at_near_ties() {
    let loaded = load(&smollm2_gguf());
    let max_new = 24;
    let prompts = prompts(&[40, 3, 70, 12, 5, 33], loaded.model.config().vocab_size());
    let (got, _) = batched(&loaded, &prompts, max_new, limits(6, 48, 128));
    let mut exact = 0;
    for (i, (prompt, tokens)) in prompts.iter().zip(&got).enumerate() {
        let (want, logits) = alone(&loaded, prompt, max_new);
        match tokens.iter().zip(&want).position(|(a, b)| a != b) {
            None => exact += 1,
            Some(at) => {
                let mut row = logits[at].clone();
                row.sort_by(|a, b| b.total_cmp(a));
                let margin = row[0] - row[1];
                eprintln!("sequence {i}: first differs at token {at}, alone top-1 margin {margin:.3} logits");
                assert!(margin < NEAR_TIE_LOGITS, "sequence {i} differs at token {at} where the alone run leads by {margin}");
            }
        }
    }
    eprintln!("{exact}/{} sequences equal their alone run token for token", prompts.len());
}

/// The decode attention a GPU runs (all sequences padded into one set of matmuls), run on the
/// CPU through `LLMBENCH_BATCH_ATTENTION`: the same greedy tokens as the per-sequence kernel.
#[test]
fn the_gpus_all_sequences_decode_attention_gives_the_same_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let run = |mode: &str| -> Vec<Vec<u64>> {
        let out = crate::common::llmbench()
            .env("LLMBENCH_BATCH_ATTENTION", mode)
            .args(["batch", "--device", "cpu", "-b", "4", "--prompt-tokens", "6", "-n", "20", "-r", "1", "--warmup", "0", "-o", "json", "--no-charts", "--model"])
            .arg(fixture("tiny-llama3"))
            .arg("--out")
            .arg(dir.path().join(mode))
            .assert()
            .success();
        let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        report["cases"][0]["runs"].as_array().unwrap().iter().map(|r| r["generated_ids"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect()).collect()
    };
    let (padded, per_sequence) = (run("padded"), run("per-sequence"));
    assert_eq!(padded.len(), 4);
    assert_eq!(padded, per_sequence);
}

/// Prompts that repeat a short pattern, so that prompt lookup has something to propose.
fn repeating_prompts(lengths: &[usize], vocab: usize) -> Vec<Vec<u32>> {
    lengths.iter().enumerate().map(|(i, &n)| (0..n).map(|j| ((i * 31 + (j % (3 + i % 3)) * 977 + 5) % (vocab - 1)) as u32).collect()).collect()
}

/// Prompt-lookup speculation inside the batch: greedy verification keeps each sequence's tokens
/// exactly those decoded alone, on the fixtures (with chunked prefill, a batch cap and, in the
/// last case, a pool small enough to preempt), and drafts are both accepted and rejected, so
/// the rollback of rejected drafts' blocks runs too.
#[test]
fn speculation_in_the_batch_keeps_every_sequence_its_greedy_tokens() {
    let spec = Some(BatchSpeculation::lookup(4).unwrap());
    for (name, lengths, max_new, limits) in [
        ("tiny-llama3", vec![12, 7, 30, 9], 24, limits(3, 24, 256)),
        ("tiny-gpt2", vec![10, 20, 6], 20, limits(4, 64, 256)),
        ("tiny-llama3", vec![8, 8, 8, 8], 24, limits(4, 64, 20)),
    ] {
        let loaded = load(&fixture(name));
        let prompts = repeating_prompts(&lengths, loaded.model.config().vocab_size());
        let (got, usage) = batched_with(&loaded, &prompts, max_new, limits, spec);
        for (i, (prompt, tokens)) in prompts.iter().zip(&got).enumerate() {
            assert_eq!(tokens, &alone(&loaded, prompt, max_new).0, "{name}: sequence {i} with speculation");
        }
        let counters = usage.spec.expect("a speculating engine reports its counters");
        eprintln!("{name} {lengths:?}: {counters:?}, {} preemptions", usage.preemptions);
        assert!(counters.accepted_tokens > 0, "{name}: no drafted token was accepted: {counters:?}");
        assert!(counters.accepted_tokens < counters.draft_tokens, "{name}: no draft was rejected: {counters:?}");
    }
}

/// The real GGUF: verification parts take the per-row kernels, so speculation changes no bit
/// and every sequence gets exactly its tokens decoded alone (a step budget of 24 tokens keeps
/// the prompt chunks' steps under the 32 rows from which a step dequantizes).
#[test]
fn smollm2_speculation_in_the_batch_equals_alone_exactly() {
    let loaded = load(&smollm2_gguf());
    let prompts = repeating_prompts(&[9, 12, 6, 15], loaded.model.config().vocab_size());
    let (got, usage) = batched_with(&loaded, &prompts, 24, limits(4, 24, 64), Some(BatchSpeculation::lookup(4).unwrap()));
    for (i, (prompt, tokens)) in prompts.iter().zip(&got).enumerate() {
        assert_eq!(tokens, &alone(&loaded, prompt, 24).0, "sequence {i}");
    }
    let counters = usage.spec.unwrap();
    eprintln!("smollm2: {counters:?}");
    assert!(counters.accepted_tokens > 0, "{counters:?}");
}
