//! The benchmark harness every subcommand reuses: warm-up, repetitions over prompts, raw run
//! records, summaries with variation and outlier warnings, Ctrl-C between runs.

use crate::decode::sampling::SamplingConfig;
use crate::decode::DecodeStrategy;
use crate::engine::{Engine, GenerateRequest, Generation};
use crate::kv::{self, KvKind};
use crate::measure::stats::outliers;
use crate::models::{LoadedModel, ModelSpec};
use crate::results::schema::{CaseSummary, CommandSettings, ModelRecord, RunRecord, Settings, SpeculativeRun};
use anyhow::{Context, Result};
use sha2::Digest;
use std::sync::atomic::{AtomicBool, Ordering};

/// Coefficient of variation above which a case's decode speed is reported as noisy.
pub const HIGH_CV: f64 = 0.10;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler: the first press stops after the run in flight (finished cases
/// are already on disk); a second one exits at once.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping after the run in flight (Ctrl-C again to quit now)");
    });
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The settings a run records: its sampling, warm-up, repetitions and its command's own part.
pub fn settings(
    sampling: &SamplingConfig,
    warmup: usize,
    repetitions: usize,
    stop_at_eos: bool,
    dtype: String,
    cuda_graph: Option<bool>,
    command_settings: CommandSettings,
) -> Settings {
    Settings {
        warmup,
        repetitions,
        seed: sampling.seed,
        temperature: sampling.temperature,
        top_k: sampling.top_k,
        top_p: sampling.top_p,
        repetition_penalty: sampling.repetition_penalty,
        stop_at_eos,
        dtype,
        cuda_graph,
        command_settings,
    }
}

/// What a case runs.
pub struct CaseSpec<'a> {
    pub prompts: &'a [Vec<u32>],
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    pub stop_at_eos: bool,
    pub warmup: usize,
    pub repetitions: usize,
    pub kv: KvKind,
    pub kv_options: kv::KvOptions,
}

/// Runs a case: warm-up on the first prompt, then every prompt `repetitions` times. `tick`
/// is called after every run (progress). Returns `None` when interrupted.
pub fn run_case(
    loaded: &LoadedModel,
    engine: &Engine,
    strategy: &mut dyn DecodeStrategy,
    spec: &CaseSpec,
    tick: &mut dyn FnMut(),
) -> Result<Option<Vec<RunRecord>>> {
    let n_layers = loaded.model.config().n_layers();
    let kind = strategy.cache_kind(spec.kv);
    if let Some(reason) = kv::unsupported(kind, loaded.model.config().kv_shape().1) {
        return Err(anyhow::Error::new(crate::error::LlmbenchError::Unsupported(reason)));
    }
    let longest_prompt = spec.prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut cache = kv::build_with(kind, spec.kv_options, n_layers, longest_prompt + spec.max_new_tokens);
    fn request<'p>(spec: &CaseSpec, prompt: &'p [u32]) -> GenerateRequest<'p> {
        GenerateRequest {
            prompt_ids: prompt,
            max_new_tokens: spec.max_new_tokens,
            sampling: spec.sampling,
            stop_at_eos: spec.stop_at_eos,
        }
    }
    for prompt in spec.prompts {
        engine.validate(&request(spec, prompt))?;
    }
    for _ in 0..spec.warmup {
        engine.generate_with(strategy, cache.as_mut(), &request(spec, &spec.prompts[0]), &mut |_| {}).context("warm-up run")?;
        tick();
        if interrupted() {
            return Ok(None);
        }
    }
    let mut runs = Vec::with_capacity(spec.repetitions * spec.prompts.len());
    for repetition in 0..spec.repetitions {
        for (prompt_index, prompt) in spec.prompts.iter().enumerate() {
            let generation = engine.generate_with(strategy, cache.as_mut(), &request(spec, prompt), &mut |_| {})?;
            runs.push(run_record(loaded, prompt_index, repetition, &generation)?);
            tick();
            if interrupted() {
                return Ok(None);
            }
        }
    }
    Ok(Some(runs))
}

pub(super) fn run_record(loaded: &LoadedModel, prompt_index: usize, repetition: usize, g: &Generation) -> Result<RunRecord> {
    let t = g.timings();
    Ok(RunRecord {
        prompt_index,
        repetition,
        prompt_tokens: g.prompt_ids.len(),
        generated_tokens: g.generated_ids.len(),
        ttft_ms: t.ttft_ms,
        tpot_ms: t.tpot_ms,
        e2e_ms: t.e2e_ms,
        prefill_tokens_per_s: t.prefill_tokens_per_s,
        decode_tokens_per_s: t.decode_tokens_per_s,
        itl_ms: t.itl_ms,
        samples_ns: g.events.iter().map(|e| e.t_ns).collect(),
        kv_cache_bytes_per_token: g.events.iter().map(|e| e.kv_cache_bytes).collect(),
        kv_cache_bytes: g.kv.kv_cache_bytes,
        kv_stats: Some(g.kv),
        peak_rss_bytes: g.peak_rss_bytes,
        peak_device_memory_bytes: g.peak_device_memory_bytes,
        device_memory_free_bytes: g.device_memory.map(|m| m.free_bytes),
        device_memory_total_bytes: g.device_memory.map(|m| m.total_bytes),
        stop_reason: serde_json::to_value(g.stop_reason)?.as_str().unwrap_or("").to_string(),
        text: loaded.tokenizer.decode(&g.generated_ids)?,
        generated_ids: g.generated_ids.clone(),
        speculative: (!g.drafts.is_empty()).then(|| SpeculativeRun {
            step_k: g.drafts.iter().map(|d| d.k).collect(),
            step_drafted: g.drafts.iter().map(|d| d.drafted).collect(),
            step_accepted: g.drafts.iter().map(|d| d.accepted).collect(),
            draft_forwards: g.drafts.iter().map(|d| d.draft_forwards).sum(),
            prefill_ns: g.phases.prefill_ns,
            draft_ns: g.phases.draft_ns,
            verify_ns: g.phases.verify_ns,
            bookkeeping_ns: g.phases.bookkeeping_ns,
        }),
    })
}

/// Summaries of a case's runs; warnings on stderr for noisy speed and outliers (hyperfine's).
pub fn summarize(label: &str, runs: &[RunRecord]) -> Option<CaseSummary> {
    let summary = CaseSummary::from_runs(runs)?;
    let decode = &summary.decode_tokens_per_s;
    if decode.cv() > HIGH_CV {
        tracing::warn!(
            "{label}: decode speed varies by {:.0}% (coefficient of variation) across runs: the machine may be busy; \
             more --repetitions or a quieter machine give steadier numbers",
            decode.cv() * 100.0
        );
    }
    let decode_samples: Vec<f64> = runs.iter().map(|r| r.decode_tokens_per_s).collect();
    let out = outliers(&decode_samples);
    if !out.is_empty() {
        tracing::warn!("{label}: {} of {} runs are statistical outliers in decode speed (modified z-score > 3.5)", out.len(), runs.len());
    }
    Some(summary)
}

/// A loaded model for results, with the weights file's sha256 (cached beside large files).
pub fn model_record(spec: &ModelSpec) -> Result<ModelRecord> {
    let file_sha256 = match spec.weight_files.as_slice() {
        [single] => Some(file_sha256(single)?),
        _ => None,
    };
    Ok(ModelRecord {
        id: spec.id.clone(),
        source: spec.source.clone(),
        revision: spec.revision.clone(),
        file_sha256,
        weights_format: spec.weights_format.clone(),
        dtype: spec.dtype.clone(),
        tokenizer: spec.tokenizer.clone(),
        family: spec.architecture.family().into(),
        n_layers: spec.architecture.n_layers(),
        context_window: spec.architecture.context_window(),
    })
}

/// The sha256 of a file, streamed (weights are large).
pub(super) fn file_sha256(path: &std::path::Path) -> Result<String> {
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path).with_context(|| format!("hashing {}", path.display()))?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// The first repetition's generated tokens, one list per prompt in prompt order.
pub fn first_repetition(runs: &[RunRecord]) -> Vec<Vec<u32>> {
    let mut first: Vec<&RunRecord> = runs.iter().filter(|r| r.repetition == 0).collect();
    first.sort_by_key(|r| r.prompt_index);
    first.into_iter().map(|r| r.generated_ids.clone()).collect()
}

/// Fraction of tokens equal to `reference`'s, position by position over every prompt, and per
/// prompt the first position that differs (`None` where none does).
pub fn agreement(ours: &[Vec<u32>], reference: &[Vec<u32>]) -> (Option<f64>, Vec<Option<usize>>) {
    let (mut equal, mut total) = (0usize, 0usize);
    let mut first_divergence = Vec::new();
    for (a, b) in ours.iter().zip(reference) {
        let n = a.len().max(b.len());
        equal += a.iter().zip(b).filter(|(x, y)| x == y).count();
        total += n;
        first_divergence.push((0..n).find(|&i| a.get(i) != b.get(i)));
    }
    ((total > 0).then(|| equal as f64 / total as f64), first_divergence)
}

/// Perplexity of `generated` after `prompt` under the model with a full cache.
pub fn perplexity(engine: &Engine, prompt: &[u32], generated: &[u32]) -> Result<f64> {
    if generated.is_empty() {
        return Ok(f64::NAN);
    }
    let ids: Vec<u32> = prompt.iter().chain(generated).copied().collect();
    let log_probs = engine.token_log_probs(&ids)?;
    // Row i - 1 scores token i: the generated tokens are the last `generated.len()` rows.
    let nll: f64 = -log_probs[log_probs.len() - generated.len()..].iter().sum::<f64>();
    Ok((nll / generated.len() as f64).exp())
}
