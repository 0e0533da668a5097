//! `llmbench evaluate perplexity`: a text file tokenized whole, scored through the model in the
//! windows of `metrics::perplexity` (each window one teacher-forced pass with a fresh full cache),
//! and reported as lm-evaluation-harness names the scores. Prints a table or JSON; the pipeline
//! (`evaluate --text`) records the same scores per model and format in its results.

use super::setup::load_model;
use super::Outcome;
use crate::cli::evaluate::{PerplexityArgs, PerplexityMethod, ScoreFormat};
use crate::engine::Engine;
use crate::kv::{self, KvKind};
use crate::metrics::perplexity::{rolling_windows, strided_windows, PerplexityScores, Window};
use anyhow::Result;
use candle_core::{DType, Tensor, D};
use serde_json::json;
use std::io::Write;

/// Largest default window: longer contexts cost quadratic attention for little change in the
/// score, and HF's guide and lm-eval runs commonly use 1,024 to 2,048.
const DEFAULT_MAX_WINDOW: usize = 1024;

pub fn run(args: &PerplexityArgs) -> Result<Outcome> {
    let text = read_text(&args.text)?;
    let loaded = load_model(&args.model, &args.device, args.seed)?;
    let model = &loaded.model;
    let context = model.model.config().context_window();
    let window = args.window.unwrap_or(context.min(DEFAULT_MAX_WINDOW));
    if window < 2 || window > context {
        crate::bail_input!("--window {window}: use 2 to {context} tokens (the model's context window)");
    }
    let stride = args.stride.unwrap_or((window / 2).max(1));
    if stride == 0 || stride > window {
        crate::bail_input!("--stride {stride}: use 1 to --window ({window}) tokens");
    }
    let ids = model.tokenizer.encode(&text)?;
    if ids.len() < 2 {
        crate::bail_input!("--text {}: {} token(s); perplexity needs at least 2", args.text, ids.len());
    }
    let engine = Engine::new(model.model.as_ref(), &loaded.device);
    let mut results = serde_json::Map::new();
    for &method in &args.methods {
        let (windows, scores) = score_text(&engine, model.model.config(), &ids, &text, method, window, stride)?;
        let name = if method == PerplexityMethod::Strided { "strided" } else { "rolling" };
        results.insert(name.into(), json!({"windows": windows, "scores": scores}));
    }
    let report = json!({
        "model": model.spec.id, "text": args.text, "tokens": ids.len(),
        "window": window, "stride": stride, "results": results,
    });
    let mut out = std::io::stdout().lock();
    match args.output {
        ScoreFormat::Table => {
            writeln!(out, "{}: {} tokens, window {window}, stride {stride}\n", model.spec.id, ids.len())?;
            writeln!(out, "method | windows | scored tokens | token ppl | word_perplexity | byte_perplexity | bits_per_byte")?;
            for (name, r) in &results {
                let s = &r["scores"];
                writeln!(
                    out,
                    "{name} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4}",
                    r["windows"], s["scored_tokens"], s["token_perplexity"].as_f64().unwrap_or(f64::NAN),
                    s["word_perplexity"].as_f64().unwrap_or(f64::NAN), s["byte_perplexity"].as_f64().unwrap_or(f64::NAN),
                    s["bits_per_byte"].as_f64().unwrap_or(f64::NAN)
                )?;
            }
        }
        ScoreFormat::Json | ScoreFormat::Jsonl => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
    }
    Ok(Outcome::Success)
}

/// The text of `--text` (a path or a pip: data file); unreadable or blank is an input error.
pub(super) fn read_text(spec: &str) -> Result<String> {
    let path = crate::models::source::data_file(spec, "--text")?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| crate::error::LlmbenchError::invalid(format!("--text {}: cannot read it ({e})", path.display())))?;
    if text.trim().is_empty() {
        crate::bail_input!("--text {}: the file has no text to score", path.display());
    }
    Ok(text)
}

/// The perplexity scores of `text` (tokenized to `ids`) in `method`'s windows, and how many
/// windows that took.
pub(super) fn score_text(
    engine: &Engine,
    config: &crate::models::config::ModelConfig,
    ids: &[u32],
    text: &str,
    method: PerplexityMethod,
    window: usize,
    stride: usize,
) -> Result<(usize, PerplexityScores)> {
    let (seq, windows) = match method {
        PerplexityMethod::Strided => (ids.to_vec(), strided_windows(ids.len(), window, stride)),
        PerplexityMethod::Rolling => {
            let Some(prefix) = config.bos_token_id().or_else(|| config.eos_token_ids().first().copied()) else {
                crate::bail_input!("--methods rolling needs a BOS or end-of-text token and this model has neither: use --methods strided");
            };
            (std::iter::once(prefix).chain(ids.iter().copied()).collect(), rolling_windows(ids.len(), window))
        }
    };
    let mut log_likelihood = 0.0;
    let mut scored = 0;
    for w in &windows {
        log_likelihood += window_log_likelihood(engine, config.n_layers(), &seq, w)?;
        scored += w.end - w.first_target;
    }
    Ok((windows.len(), PerplexityScores::new(text, log_likelihood, scored)))
}

/// The summed log-probability (nats) of `seq[w.first_target..w.end]`, one teacher-forced pass
/// over `seq[w.begin..w.end - 1]` with a fresh full cache.
fn window_log_likelihood(engine: &Engine, n_layers: usize, seq: &[u32], w: &Window) -> Result<f64> {
    let fed = &seq[w.begin..w.end - 1];
    let mut cache = kv::build(KvKind::Full, n_layers, fed.len());
    let logits = engine.teacher_force(cache.as_mut(), fed)?.to_dtype(DType::F32)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = &seq[w.first_target..w.end];
    let rows = log_probs.narrow(0, w.first_target - 1 - w.begin, targets.len())?;
    let index = Tensor::new(targets, rows.device())?.unsqueeze(1)?;
    let picked: Vec<f32> = rows.gather(&index, 1)?.squeeze(1)?.to_vec1()?;
    Ok(picked.iter().map(|&p| p as f64).sum())
}
