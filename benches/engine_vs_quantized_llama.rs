//! llmbench's engine next to candle-transformers' `quantized_llama` on the same GGUF, in the
//! same process, alternating runs so drift hits both: SmolLM2-135M Q4_1, CPU, 2 threads,
//! 128-token prompt (real text), 128 new tokens, greedy. Prints medians and ratios.
//!
//! Run: `cargo bench --bench engine_vs_quantized_llama` (LLMBENCH_BENCH_REPS to change the
//! number of measured runs, default 5, after one warm-up run of each).

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use llmbench::engine::device::set_cpu_threads;
use llmbench::decode::sampling::{argmax, SamplingConfig};
use llmbench::engine::{Engine, GenerateRequest};
use llmbench::kv::{self, KvKind};
use llmbench::models::source::{self, SourceOptions};
use llmbench::models::{self, DTypeArg};
use std::time::Instant;

const THREADS: usize = 2;
const PROMPT_TOKENS: usize = 128;
const NEW_TOKENS: usize = 128;

struct Run {
    prefill_tps: f64,
    decode_tps: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn reference_run(path: &std::path::Path, prompt: &[u32]) -> Run {
    let mut file = std::fs::File::open(path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    let start = Instant::now();
    let mut input = prompt.to_vec();
    let mut pos = 0;
    let mut first = 0.0;
    for i in 0..NEW_TOKENS {
        let x = Tensor::new(input.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let logits: Vec<f32> = model.forward(&x, pos).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        pos += input.len();
        input = vec![argmax(&logits)];
        if i == 0 {
            first = start.elapsed().as_secs_f64();
        }
    }
    let total = start.elapsed().as_secs_f64();
    Run { prefill_tps: prompt.len() as f64 / first, decode_tps: (NEW_TOKENS - 1) as f64 / (total - first) }
}

fn main() {
    set_cpu_threads(Some(THREADS)).unwrap();
    let reps: usize = std::env::var("LLMBENCH_BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let resolved = source::resolve(source::DEFAULT_MODEL, &SourceOptions::default()).unwrap();
    let path = resolved.files.weight_paths().remove(0);
    let loaded = models::load(&resolved, DTypeArg::F32, 0, &Device::Cpu).unwrap();
    let passage = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2/passage.txt")).unwrap();
    let prompt: Vec<u32> = loaded.tokenizer.encode(&passage).unwrap().into_iter().take(PROMPT_TOKENS).collect();
    assert_eq!(prompt.len(), PROMPT_TOKENS);

    let engine = Engine::new(loaded.model.as_ref(), &Device::Cpu);
    let mut cache = kv::build(KvKind::Full, loaded.model.config().n_layers(), PROMPT_TOKENS + NEW_TOKENS);
    let request = GenerateRequest {
        prompt_ids: &prompt,
        max_new_tokens: NEW_TOKENS,
        sampling: SamplingConfig::default(),
        stop_at_eos: false,
    };
    let mut ours = vec![];
    let mut theirs = vec![];
    for rep in 0..=reps {
        let t = engine.generate(cache.as_mut(), &request, &mut |_| {}).unwrap().timings();
        let r = reference_run(&path, &prompt);
        if rep > 0 {
            ours.push(Run { prefill_tps: t.prefill_tokens_per_s, decode_tps: t.decode_tokens_per_s });
            theirs.push(r);
        }
    }
    let med = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let (op, od) = (med(&ours, |r| r.prefill_tps), med(&ours, |r| r.decode_tps));
    let (tp, td) = (med(&theirs, |r| r.prefill_tps), med(&theirs, |r| r.decode_tps));
    println!("SmolLM2-135M-Instruct Q4_1, CPU, {THREADS} threads, prompt {PROMPT_TOKENS}, new {NEW_TOKENS}, greedy; median of {reps} alternating runs after 1 warm-up");
    println!("| engine | prefill tok/s | decode tok/s |");
    println!("|---|---:|---:|");
    println!("| llmbench | {op:.1} | {od:.2} |");
    println!("| candle-transformers quantized_llama | {tp:.1} | {td:.2} |");
    println!("| ratio llmbench / quantized_llama | {:.3} | {:.3} |", op / tp, od / td);
    println!("raw decode tok/s llmbench: {:?}", ours.iter().map(|r| (r.decode_tps * 100.0).round() / 100.0).collect::<Vec<_>>());
    println!("raw decode tok/s quantized_llama: {:?}", theirs.iter().map(|r| (r.decode_tps * 100.0).round() / 100.0).collect::<Vec<_>>());
}
