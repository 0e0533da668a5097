//! `llmbench kvcache`: for each context length, the same real text through every strategy.
//! Each case (strategy x context) is timed greedy generations through the shared harness
//! (warm-up, repetitions, every raw sample: prefill, decode speed, inter-token gaps, exact
//! bytes, evictions, peak RSS, paged blocks), then one step-by-step teacher-forced pass over
//! the text's real continuation (quality against the full cache, deterministic, untimed).
//! `full` runs first at each context: it is the reference. Cases go through the one sink as
//! they finish, so `--resume`, `plot`, `diff` and every `-o` format work as for `compare`.

use super::harness::{self, CaseSpec};
use super::{load_model, output, Outcome};
use crate::cli::args::KvArgs;
use crate::cli::kvcache::KvcacheArgs;
use crate::decode::sampling::{argmax, SamplingConfig};
use crate::decode::Standard;
use crate::engine::{Engine, GenerateRequest};
use crate::kv::{self, KvKind, KvOptions, CAKE_WINDOW};
use crate::measure::system::Provenance;
use crate::metrics::distribution::{agreement, first_divergence, mean_kl, perplexity};
use crate::results::schema::{
    CaseParams, CaseResult, CaseStatus, CommandName, CommandSettings, KvcacheParams, KvcacheQuality, KvcacheSettings,
    Quality, Report, Settings,
};
use anyhow::{Context, Result};
use sha2::Digest;
use std::path::Path;

/// One strategy to run: its kind and options (the global ones, with its inline value applied).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StrategySpec {
    pub kind: KvKind,
    pub options: KvOptions,
}

impl StrategySpec {
    pub fn label(&self) -> String {
        self.kind.label(&self.options)
    }
}

/// Parses `--strategies`: names, each with an optional `:value` for its main option, checked
/// with the same rules as the `--kv-*` flags. `full` is put first (added if absent).
pub fn parse_strategies(list: &str, base: &KvArgs) -> Result<Vec<StrategySpec>> {
    let mut specs: Vec<StrategySpec> = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            crate::bail_input!("--strategies {list}: empty entry in the list");
        }
        let (name, value) = match item.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (item, None),
        };
        let Some(kind) = KvKind::ALL.into_iter().find(|k| k.name() == name) else {
            let names: Vec<&str> = KvKind::ALL.iter().map(|k| k.name()).collect();
            crate::bail_input!("--strategies: unknown strategy `{name}`; use one of {}", names.join(", "));
        };
        let mut args = base.clone();
        if let Some(value) = value {
            let n: usize = value.parse().map_err(|_| {
                crate::error::LlmbenchError::invalid(format!("--strategies {item}: `{value}` is not a whole number"))
            })?;
            match kind {
                KvKind::Window | KvKind::Sinks => args.kv_window = n,
                KvKind::Paged => args.kv_block_size = n,
                KvKind::Chunked => args.kv_keep_last = n,
                KvKind::Kivi => args.kv_bits = n as u32,
                KvKind::H2o | KvKind::Cake | KvKind::Hybrid => args.budget = n,
                _ => crate::bail_input!("--strategies {item}: {name} takes no option; write `{name}`"),
            }
        }
        if matches!(kind, KvKind::Cake | KvKind::Hybrid) && args.budget <= CAKE_WINDOW {
            crate::bail_input!(
                "--strategies {item}: {name}'s budget {} must exceed its recent window of {CAKE_WINDOW} tokens: raise --budget",
                args.budget
            );
        }
        let options = args.options().map_err(|e| crate::error::LlmbenchError::invalid(format!("--strategies {item}: {e}")))?;
        let spec = StrategySpec { kind, options };
        if !specs.iter().any(|s| s.label() == spec.label()) {
            specs.push(spec);
        }
    }
    let full = StrategySpec { kind: KvKind::Full, options: base.options()? };
    specs.retain(|s| s.kind != KvKind::Full);
    specs.insert(0, full);
    Ok(specs)
}

fn validate(args: &KvcacheArgs, specs: &[StrategySpec]) -> Result<()> {
    if args.context.values.contains(&0) {
        crate::bail_input!("--context 0: a context must hold at least 1 token");
    }
    if args.max_new_tokens == 0 {
        crate::bail_input!("--max-new-tokens 0: generate at least 1 token");
    }
    if args.repetitions == 0 {
        crate::bail_input!("--repetitions 0: measure at least one run");
    }
    if args.eval_tokens < 2 {
        crate::bail_input!("--eval-tokens {}: teacher-force at least 2 tokens of the continuation", args.eval_tokens);
    }
    let longest = args.context.values.iter().copied().max().unwrap_or(0);
    for s in specs.iter().filter(|s| s.kind.evicts_by_budget()) {
        if s.options.budget >= longest {
            crate::bail_input!(
                "--budget {} is larger than every --context ({}): {} would evict nothing; lower --budget or raise --context",
                s.options.budget,
                args.context.values.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
                s.label()
            );
        }
    }
    Ok(())
}

/// Why a strategy is skipped at a context, if it is: a budget that covers the whole context
/// would only measure `full` again under another name.
fn skip_reason(spec: &StrategySpec, context: usize) -> Option<String> {
    let evicts_by_budget = spec.kind.evicts_by_budget();
    (evicts_by_budget && spec.options.budget >= context).then(|| {
        format!("budget {} covers the context of {context} tokens: {} would evict nothing", spec.options.budget, spec.label())
    })
}

fn read_prompt_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::error::LlmbenchError::invalid(format!("--prompt-file {}: cannot read it as UTF-8 text ({e})", path.display()))
    })?;
    if text.trim().is_empty() {
        crate::bail_input!("--prompt-file {}: the file is empty; give it real text", path.display());
    }
    Ok(text)
}

/// Full's teacher-forced log-probabilities, greedy tokens and perplexity at one context: what
/// every other strategy is measured against.
struct Reference {
    greedy: Vec<u32>,
    log_probs: Vec<Vec<f32>>,
    perplexity: f64,
}

pub fn run(args: &KvcacheArgs) -> Result<Outcome> {
    let specs = parse_strategies(&args.strategies, &args.kv)?;
    validate(args, &specs)?;
    let text = read_prompt_file(&args.prompt_file)?;

    let loaded = load_model(&args.model, &args.device, SamplingConfig::default().seed)?;
    let longest = args.context.values.iter().copied().max().unwrap_or(0);
    let ids = super::prompts::tokens_of_prefix(&loaded.model.tokenizer, &text, longest + args.eval_tokens)?;
    let follow = args.max_new_tokens.max(args.eval_tokens);
    if ids.len() < longest + args.eval_tokens {
        crate::bail_input!(
            "--prompt-file {}: {} tokens, but --context {longest} plus --eval-tokens {} needs {}: give a longer file or lower --context",
            args.prompt_file.display(),
            ids.len(),
            args.eval_tokens,
            longest + args.eval_tokens
        );
    }
    let window = loaded.model.model.config().context_window();
    if longest + follow > window {
        crate::bail_input!(
            "--context {longest} plus {follow} new tokens exceeds {}'s context window of {window}: lower --context",
            loaded.model.spec.id
        );
    }

    let sampling = SamplingConfig::default();
    let settings = Settings {
        warmup: args.warmup,
        repetitions: args.repetitions,
        seed: sampling.seed,
        temperature: sampling.temperature,
        top_k: None,
        top_p: None,
        repetition_penalty: sampling.repetition_penalty,
        stop_at_eos: false,
        dtype: loaded.model.spec.dtype.clone(),
        cuda_graph: loaded.device_info.name.starts_with("cuda").then_some(!args.device.no_cuda_graph),
        command_settings: CommandSettings::Kvcache(KvcacheSettings {
            prompt_file: args.prompt_file.display().to_string(),
            prompt_file_sha256: format!("{:x}", sha2::Sha256::digest(text.as_bytes())),
            contexts: args.context.values.clone(),
            strategies: specs.iter().map(StrategySpec::label).collect(),
            eval_tokens: args.eval_tokens,
            options: args.kv.options()?,
        }),
    };
    let provenance = Provenance::collect(&loaded.device_info.name, loaded.threads);
    let (mut sink, done) = output::open(&args.output, Report::new(CommandName::Kvcache, provenance, settings.clone()))?;
    harness::install_interrupt_handler();
    let model_record = harness::model_record(&loaded.model.spec)?;
    let engine = Engine::new(loaded.model.model.as_ref(), &loaded.device);
    let n_layers = loaded.model.model.config().n_layers();
    let runs_per_case = args.warmup + args.repetitions;
    let progress = super::progress::bar((args.context.values.len() * specs.len() * runs_per_case) as u64);

    // One short untimed generation so the first measured case does not pay for first touches.
    let mut warm = kv::build(KvKind::Full, n_layers, 64);
    engine.generate(warm.as_mut(), &request(&ids[..32.min(ids.len())], 4), &mut |_| {})?;

    let mut any_failed = false;
    for &context in &args.context.values {
        let (prompt, continuation) = (&ids[..context], &ids[context..context + args.eval_tokens]);
        let prompts = vec![prompt.to_vec()];
        let mut reference: Option<Reference> = None;
        for spec in &specs {
            let params = CaseParams::Kvcache(KvcacheParams {
                model: args.model.model.clone(),
                strategy: spec.label(),
                context_tokens: context,
                max_new_tokens: args.max_new_tokens,
            });
            let case_id = params.id(&settings);
            if done.contains(&case_id) {
                progress.inc(runs_per_case as u64);
                continue;
            }
            if let Some(reason) = skip_reason(spec, context) {
                progress.inc(runs_per_case as u64);
                sink.record(CaseResult::not_run(params, &settings, CaseStatus::Skipped, reason))?;
                continue;
            }
            progress.set_message(params.label());
            // Resumed after full finished: its tokens are in the file, its distributions are recomputed.
            if reference.is_none() && spec.kind != KvKind::Full {
                let full = sink.report().cases.iter().find(|c| {
                    c.status == CaseStatus::Ok
                        && c.params.as_kvcache().is_some_and(|p| p.context_tokens == context && p.strategy == specs[0].label())
                });
                if let Some(greedy) = full.and_then(|c| c.runs.first()).map(|r| r.generated_ids.clone()) {
                    let log_probs = engine.teacher_force_steps(kv::build(KvKind::Full, n_layers, context + args.eval_tokens).as_mut(), prompt, continuation)?;
                    let perplexity = perplexity(&log_probs, continuation);
                    reference = Some(Reference { greedy, log_probs, perplexity });
                }
            }
            let case_spec = CaseSpec {
                prompts: &prompts,
                max_new_tokens: args.max_new_tokens,
                sampling,
                stop_at_eos: false,
                warmup: args.warmup,
                repetitions: args.repetitions,
                kv: spec.kind,
                kv_options: spec.options,
            };
            let measured = harness::run_case(&loaded.model, &engine, &mut Standard, &case_spec, &mut || progress.inc(1))
                .and_then(|runs| {
                    let Some(runs) = runs else { return Ok(None) };
                    let greedy = runs.first().map(|r| r.generated_ids.clone()).unwrap_or_default();
                    let capacity = prompt.len() + args.max_new_tokens.max(continuation.len());
                    let mut cache = kv::build_with(spec.kind, spec.options, n_layers, capacity);
                    let log_probs = engine.teacher_force_steps(cache.as_mut(), prompt, continuation)?;
                    Ok(Some((runs, quality(&mut reference, greedy, log_probs, continuation))))
                })
                .with_context(|| format!("{} at context {context}", spec.label()));
            let (runs, quality) = match measured {
                Ok(Some(measured)) => measured,
                Ok(None) => return Ok(output::interrupted(&sink, &progress)),
                Err(e) if output::goes_on_after(&args.output, &e) => {
                    any_failed |= output::record_not_run(&mut sink, params, &settings, &e)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let summary = harness::summarize(&params.label(), &runs);
            if let Some(s) = &summary {
                super::progress::note(&progress, &format!(
                    "context {context:>5} {:<14} prefill {:>8.0} ms  TPOT {:>7.2} ms  KV {:>8.2} MiB  ppl {:>8.3} ({:+.2}%)",
                    spec.label(),
                    s.ttft_ms.median,
                    s.tpot_ms.median,
                    s.kv_cache_bytes.median / (1u64 << 20) as f64,
                    quality.perplexity,
                    quality.perplexity_delta_pct
                ));
            }
            sink.record(CaseResult::ran(params, &settings, model_record.clone(), runs, summary, Some(Quality::Kvcache(quality))))?;
        }
    }
    progress.finish_and_clear();
    output::finish(&mut sink, &args.output)?;
    Ok(if any_failed { Outcome::CasesFailed } else { Outcome::Success })
}

fn request(prompt: &[u32], max_new_tokens: usize) -> GenerateRequest<'_> {
    GenerateRequest { prompt_ids: prompt, max_new_tokens, sampling: SamplingConfig::default(), stop_at_eos: false }
}

/// Quality of one strategy's greedy tokens and teacher-forced distributions against full's;
/// the first strategy at a context (full) becomes the reference.
fn quality(reference: &mut Option<Reference>, greedy: Vec<u32>, log_probs: Vec<Vec<f32>>, continuation: &[u32]) -> KvcacheQuality {
    let ppl = perplexity(&log_probs, continuation);
    match reference {
        None => {
            *reference = Some(Reference { greedy, log_probs, perplexity: ppl });
            KvcacheQuality {
                perplexity: ppl,
                perplexity_delta_pct: 0.0,
                mean_kl: 0.0,
                teacher_forced_agreement: 1.0,
                greedy_agreement: 1.0,
                first_divergence: None,
            }
        }
        Some(r) => {
            let argmaxes = |rows: &[Vec<f32>]| rows.iter().map(|row| argmax(row)).collect::<Vec<u32>>();
            KvcacheQuality {
                perplexity: ppl,
                perplexity_delta_pct: (ppl / r.perplexity - 1.0) * 100.0,
                mean_kl: mean_kl(&r.log_probs, &log_probs),
                teacher_forced_agreement: agreement(&argmaxes(&r.log_probs), &argmaxes(&log_probs)),
                greedy_agreement: agreement(&r.greedy, &greedy),
                first_divergence: first_divergence(&r.greedy, &greedy),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        kv: KvArgs,
    }

    fn base() -> KvArgs {
        Flags::parse_from(["x"]).kv
    }

    #[test]
    fn parses_strategies_with_inline_options_and_puts_full_first() {
        let specs = parse_strategies("window:64,kivi:4, h2o,full,window:64", &base()).unwrap();
        let labels: Vec<String> = specs.iter().map(StrategySpec::label).collect();
        assert_eq!(labels, ["full", "window:64", "kivi:4", "h2o:256"]);
    }

    #[test]
    fn rejects_unknown_names_bad_bits_and_options_on_plain_strategies() {
        for (list, needle) in [
            ("fast", "unknown strategy `fast`"),
            ("kivi:3", "kivi:3"),
            ("int8:4", "takes no option"),
            ("window:0", "window:0"),
            ("window:x", "not a whole number"),
            ("cake:16", "recent window"),
        ] {
            let err = parse_strategies(list, &base()).unwrap_err().to_string();
            assert!(err.contains(needle), "{list}: {err}");
        }
    }
}
