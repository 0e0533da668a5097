//! `llmbench kvcache`: for each context length, the same real text through every strategy:
//! a greedy generation (prefill time, decode speed, exact bytes, evictions, peak RSS, paged
//! blocks) and a step-by-step teacher-forced pass over the text's real continuation (quality
//! against the full cache). `full` runs first at each context: it is the reference. Each row
//! is written to kvcache.json (atomically) as soon as it is measured.

use super::{harness, load_model, Outcome};
use crate::charts::kvcache::{self as kv_charts, KvChart};
use crate::charts::ImageFormat;
use crate::cli::args::KvArgs;
use crate::cli::kvcache::KvcacheArgs;
use crate::decode::sampling::SamplingConfig;
use crate::engine::{Engine, GenerateRequest};
use crate::kv::{self, KvKind, KvOptions, CAKE_WINDOW};
use crate::measure::stats::percentile_sorted;
use crate::measure::system::Provenance;
use crate::decode::sampling::argmax;
use crate::metrics::distribution::{agreement, first_divergence, mean_kl, perplexity};
use crate::results::kvcache::{KvcacheReport, KvcacheRow, KvcacheSettings, RowQuality, KVCACHE_JSON};
use crate::results::sink::write_atomic;
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
                KvKind::H2o | KvKind::Cake => args.budget = n,
                _ => crate::bail_input!("--strategies {item}: {name} takes no option; write `{name}`"),
            }
        }
        let options = args.options().map_err(|e| crate::error::LlmbenchError::invalid(format!("--strategies {item}: {e}")))?;
        if kind == KvKind::Cake && options.budget <= CAKE_WINDOW {
            crate::bail_input!(
                "--strategies {item}: cake's budget {} must exceed its recent window of {CAKE_WINDOW} tokens: raise --budget",
                options.budget
            );
        }
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
    if args.eval_tokens < 2 {
        crate::bail_input!("--eval-tokens {}: teacher-force at least 2 tokens of the continuation", args.eval_tokens);
    }
    let smallest = args.context.values.iter().copied().min().unwrap_or(0);
    for s in specs.iter().filter(|s| matches!(s.kind, KvKind::H2o | KvKind::Cake)) {
        if s.options.budget > smallest {
            crate::bail_input!(
                "--budget {} is larger than the context {smallest} ({}): it would evict nothing there; lower --budget or raise --context",
                s.options.budget,
                s.label()
            );
        }
    }
    Ok(())
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

pub fn run(args: &KvcacheArgs) -> Result<Outcome> {
    let specs = parse_strategies(&args.strategies, &args.kv)?;
    validate(args, &specs)?;
    let text = read_prompt_file(&args.prompt_file)?;
    let out_dir = args.out.clone().unwrap_or_else(|| super::default_out_dir("kvcache"));
    if out_dir.join(KVCACHE_JSON).exists() {
        crate::bail_input!("--out {}: already holds kvcache results; choose another --out", out_dir.display());
    }

    let loaded = load_model(&args.model, &args.device, SamplingConfig::default().seed)?;
    let longest = args.context.values.iter().copied().max().unwrap_or(0);
    let ids = tokens_of_prefix(&loaded.model.tokenizer, &text, longest + args.eval_tokens)?;
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
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let settings = KvcacheSettings {
        prompt_file: args.prompt_file.display().to_string(),
        prompt_file_sha256: format!("{:x}", sha2::Sha256::digest(text.as_bytes())),
        contexts: args.context.values.clone(),
        strategies: specs.iter().map(StrategySpec::label).collect(),
        max_new_tokens: args.max_new_tokens,
        eval_tokens: args.eval_tokens,
        options: args.kv.options()?,
    };
    let mut report = KvcacheReport::new(
        Provenance::collect(&loaded.device_info.name, loaded.threads),
        harness::model_record(&loaded.model.spec)?,
        settings,
    );
    let engine = Engine::new(loaded.model.model.as_ref(), &loaded.device);
    let n_layers = loaded.model.model.config().n_layers();

    // One short untimed generation so the first measured case does not pay for first touches.
    let mut warm = kv::build(KvKind::Full, n_layers, 64);
    engine.generate(warm.as_mut(), &request(&ids[..32.min(ids.len())], 4), &mut |_| {})?;

    for &context in &args.context.values {
        let (prompt, continuation) = (&ids[..context], &ids[context..context + args.eval_tokens]);
        let mut reference: Option<(Vec<u32>, Vec<Vec<f32>>, f64)> = None;
        for spec in &specs {
            let row = measure(&engine, n_layers, spec, prompt, continuation, args.max_new_tokens, &mut reference)
                .with_context(|| format!("{} at context {context}", spec.label()))?;
            eprintln!(
                "context {context:>5} {:<14} prefill {:>8.0} ms  TPOT {:>7.2} ms  KV {:>8.2} MiB  ppl {:>8.3} ({:+.2}%)",
                row.strategy,
                row.prefill_ms,
                row.tpot_ms,
                row.kv_cache_bytes as f64 / (1u64 << 20) as f64,
                row.quality.perplexity,
                row.quality.perplexity_delta_pct
            );
            report.rows.push(row);
            write_atomic(&out_dir.join(KVCACHE_JSON), &serde_json::to_vec_pretty(&report)?)?;
        }
    }

    let table = report.table();
    write_atomic(&out_dir.join("table.md"), table.as_bytes())?;
    if !args.no_charts {
        for chart in KvChart::ALL {
            for format in [ImageFormat::Png, ImageFormat::Svg] {
                write_atomic(&out_dir.join(chart.file_name(format)), &kv_charts::render(chart, &report, format)?)?;
            }
        }
    }
    print!("{table}");
    eprintln!("results: {}", out_dir.display());
    Ok(Outcome::Success)
}

/// Tokens of the text's beginning, at least `needed` of them where the text has them.
/// Tokenizing a whole multi-megabyte corpus costs seconds for nothing, so the prefix doubles
/// until it holds more than `needed` tokens (the last one may be cut mid-word and is not used).
fn tokens_of_prefix(tokenizer: &crate::models::tokenizer::TextTokenizer, text: &str, needed: usize) -> Result<Vec<u32>> {
    let mut chars = needed * 8;
    loop {
        let end = text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i);
        let ids = tokenizer.encode(&text[..end])?;
        if ids.len() > needed || end == text.len() {
            return Ok(ids);
        }
        chars *= 2;
    }
}

fn request(prompt: &[u32], max_new_tokens: usize) -> GenerateRequest<'_> {
    GenerateRequest { prompt_ids: prompt, max_new_tokens, sampling: SamplingConfig::default(), stop_at_eos: false }
}

/// One strategy at one context: a timed greedy generation, then the teacher-forced pass.
/// `reference` holds full's greedy tokens, log-probabilities and perplexity once full ran.
fn measure(
    engine: &Engine,
    n_layers: usize,
    spec: &StrategySpec,
    prompt: &[u32],
    continuation: &[u32],
    max_new_tokens: usize,
    reference: &mut Option<(Vec<u32>, Vec<Vec<f32>>, f64)>,
) -> Result<KvcacheRow> {
    let capacity = prompt.len() + max_new_tokens.max(continuation.len());
    let mut cache = kv::build_with(spec.kind, spec.options, n_layers, capacity);
    let generation = engine.generate(cache.as_mut(), &request(prompt, max_new_tokens), &mut |_| {})?;
    let (paged, kv_used_bytes) = (cache.paged_usage(), cache.used_bytes());
    let timings = generation.timings();
    let mut itl = timings.itl_ms.clone();
    itl.sort_by(f64::total_cmp);
    let (median_itl_ms, p90_itl_ms) =
        if itl.is_empty() { (0.0, 0.0) } else { (percentile_sorted(&itl, 50.0), percentile_sorted(&itl, 90.0)) };

    let log_probs = engine.teacher_force_steps(cache.as_mut(), prompt, continuation)?;
    let ppl = perplexity(&log_probs, continuation);
    let greedy = generation.generated_ids.clone();
    let quality = match reference {
        None => {
            *reference = Some((greedy.clone(), log_probs, ppl));
            RowQuality {
                perplexity: ppl,
                perplexity_delta_pct: 0.0,
                mean_kl: 0.0,
                teacher_forced_agreement: 1.0,
                greedy_agreement: 1.0,
                first_divergence: None,
            }
        }
        Some((ref_greedy, ref_log_probs, ref_ppl)) => {
            let argmaxes = |rows: &[Vec<f32>]| rows.iter().map(|r| argmax(r)).collect::<Vec<u32>>();
            RowQuality {
                perplexity: ppl,
                perplexity_delta_pct: (ppl / *ref_ppl - 1.0) * 100.0,
                mean_kl: mean_kl(ref_log_probs, &log_probs),
                teacher_forced_agreement: agreement(&argmaxes(ref_log_probs), &argmaxes(&log_probs)),
                greedy_agreement: agreement(ref_greedy, &greedy),
                first_divergence: first_divergence(ref_greedy, &greedy),
            }
        }
    };
    let positions = prompt.len() + greedy.len() - 1;
    Ok(KvcacheRow {
        strategy: spec.label(),
        context_tokens: prompt.len(),
        new_tokens: greedy.len(),
        prefill_ms: timings.ttft_ms,
        prefill_tokens_per_s: timings.prefill_tokens_per_s,
        tpot_ms: timings.tpot_ms,
        median_itl_ms,
        p90_itl_ms,
        decode_tokens_per_s: timings.decode_tokens_per_s,
        kv_cache_bytes: generation.kv.kv_cache_bytes,
        kv_bytes_per_token: generation.kv.kv_cache_bytes as f64 / positions.max(1) as f64,
        kv_used_bytes,
        tokens_held: generation.kv.tokens_held,
        evictions: generation.kv.evictions,
        peak_rss_bytes: generation.peak_rss_bytes,
        paged,
        quality,
    })
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
