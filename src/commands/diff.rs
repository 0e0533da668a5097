//! `llmbench diff A B`: two runs of the same command (any command); for each case present in both, the relative change of each
//! headline metric with a 95% Welch interval from the raw per-run samples, marked significant
//! when the interval excludes zero. `--fail-on-regression PCT` turns a significant slowdown
//! beyond PCT percent into exit code 1.

use super::Outcome;
use crate::cli::diff::DiffArgs;
use crate::measure::stats::welch_change;
use crate::metrics::truthfulqa::{AnswerScore, QuestionScores};
use crate::results::schema::{CaseResult, CaseStatus, RunRecord};
use crate::results::sink::load_report;
use anyhow::Result;
use std::io::Write;

struct Metric {
    name: &'static str,
    /// Whether a larger value is better (throughput) or worse (latency, memory).
    higher_is_better: bool,
    value: fn(&RunRecord) -> f64,
}

const METRICS: [Metric; 5] = [
    Metric { name: "decode tok/s", higher_is_better: true, value: |r| r.decode_tokens_per_s },
    Metric { name: "prefill tok/s", higher_is_better: true, value: |r| r.prefill_tokens_per_s },
    Metric { name: "TTFT ms", higher_is_better: false, value: |r| r.ttft_ms },
    Metric { name: "TPOT ms", higher_is_better: false, value: |r| r.tpot_ms },
    Metric { name: "peak RSS", higher_is_better: false, value: |r| r.peak_rss_bytes as f64 },
];

/// sled's TruthfulQA cases time no runs: their metrics are per question (higher is better),
/// compared like runs (Welch over questions; the pairing by question is not used, so the
/// interval is conservative). Quality, not speed: `--fail-on-regression` ignores them.
const TRUTHFULQA_METRICS: [(&str, fn(&QuestionScores) -> f64); 6] = [
    ("TQA MC1 log-prob", |q| q.mc(AnswerScore::log_prob).0),
    ("TQA MC2 log-prob", |q| q.mc(AnswerScore::log_prob).1),
    ("TQA MC3 log-prob", |q| q.mc(AnswerScore::log_prob).2),
    ("TQA MC1 raw", |q| q.mc(AnswerScore::raw).0),
    ("TQA MC2 raw", |q| q.mc(AnswerScore::raw).1),
    ("TQA MC3 raw", |q| q.mc(AnswerScore::raw).2),
];

/// A case's samples of each metric: its runs', or its questions' for sled's cases.
fn samples(case: &CaseResult) -> Vec<(&'static str, bool, bool, Vec<f64>)> {
    if let Some(q) = case.quality.as_ref().and_then(|q| q.as_sled()) {
        return TRUTHFULQA_METRICS.iter().map(|(name, f)| (*name, true, false, q.questions.iter().map(f).collect())).collect();
    }
    METRICS
        .iter()
        .map(|m| (m.name, m.higher_is_better, m.name != "peak RSS", case.runs.iter().map(m.value).collect()))
        .collect()
}

pub fn run(args: &DiffArgs) -> Result<Outcome> {
    let a = load_report(&args.a)?;
    let b = load_report(&args.b)?;
    if a.command != b.command {
        crate::bail_input!(
            "{} holds {} results and {} holds {} results: diff compares two runs of the same command",
            args.a.display(),
            a.command.name(),
            args.b.display(),
            b.command.name()
        );
    }
    if let (Some(sa), Some(sb)) = (a.sled_settings(), b.sled_settings()) {
        if (&sa.data_sha256, sa.questions) != (&sb.data_sha256, sb.questions) {
            crate::bail_input!(
                "{} scored {} questions of {} and {} scored {} of {}: diff compares runs over the same questions",
                args.a.display(),
                sa.questions,
                sa.data,
                args.b.display(),
                sb.questions,
                sb.data
            );
        }
    }
    let ok = |c: &&CaseResult| c.status == CaseStatus::Ok;
    let pairs: Vec<(&CaseResult, &CaseResult)> = a
        .cases
        .iter()
        .filter(ok)
        .filter_map(|ca| b.cases.iter().filter(ok).find(|cb| ca.params == cb.params).map(|cb| (ca, cb)))
        .collect();
    if pairs.is_empty() {
        crate::bail_input!(
            "{} and {} have no finished case in common (the same parameters: model, method or strategy, lengths, cache): nothing to compare",
            args.a.display(),
            args.b.display()
        );
    }
    let mut out = String::from("case | metric | A mean | B mean | change | 95% interval | significant\n");
    let mut worst_slowdown: f64 = 0.0;
    for (ca, cb) in pairs {
        for ((name, higher_is_better, speed, sa), (_, _, _, sb)) in samples(ca).into_iter().zip(samples(cb)) {
            if sa.is_empty() || sb.is_empty() {
                continue;
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (ma, mb) = (mean(&sa), mean(&sb));
            let (relative, interval, verdict) = match welch_change(&sa, &sb) {
                Some(change) => {
                    let slowdown = if higher_is_better { -change.relative } else { change.relative };
                    if change.significant && speed {
                        worst_slowdown = worst_slowdown.max(slowdown * 100.0);
                    }
                    let verdict = match (change.significant, slowdown > 0.0) {
                        (false, _) => "no".to_string(),
                        (true, true) => "yes (worse)".into(),
                        (true, false) => "yes (better)".into(),
                    };
                    (change.relative, format!("[{:+.2}%, {:+.2}%]", change.ci_low * 100.0, change.ci_high * 100.0), verdict)
                }
                // No spread to test (a constant metric, such as an MC score of 0 on every
                // question): equal samples are no change.
                None if sa == sb => (0.0, "-".into(), "no".into()),
                // One run a side (kvcache's default): the change, without an interval or a verdict.
                None if ma != 0.0 => {
                    (mb / ma - 1.0, "-".into(), format!("n/a ({} and {} runs: repeat with -r 2 or more)", sa.len(), sb.len()))
                }
                None => continue,
            };
            out += &format!(
                "{} {} | {} | {ma:.4} | {mb:.4} | {:+.2}% | {interval} | {verdict}\n",
                ca.params.model(),
                ca.params.label(),
                name,
                relative * 100.0,
            );
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    if let Some(limit) = args.fail_on_regression {
        if worst_slowdown > limit {
            eprintln!("regression: a significant slowdown of {worst_slowdown:.1}% exceeds --fail-on-regression {limit}%");
            return Ok(Outcome::CasesFailed);
        }
    }
    Ok(Outcome::Success)
}
