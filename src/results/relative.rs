//! Each compare case against its baseline (`CompareParams::is_baseline`: standard decoding, same
//! model and length, the prompts as written, dense): decode speed
//! ratio with a 95% interval (Welch, from the raw per-run samples) and memory reductions.

use super::schema::{CaseResult, CaseStatus, Report};
use crate::measure::stats::{welch_change, Summary};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Relative {
    /// mean decode tok/s of this case / of standard, with its 95% interval (absent when
    /// either side has fewer than 2 runs or no speed).
    pub speed: Option<SpeedRatio>,
    /// 1 - mean KV bytes / standard's, in percent.
    pub kv_reduction_pct: f64,
    /// 1 - mean peak RSS / standard's, in percent.
    pub rss_reduction_pct: f64,
}

/// The standard case a case is compared with.
pub fn baseline<'a>(report: &'a Report, case: &CaseResult) -> Option<&'a CaseResult> {
    let this = case.params.as_compare()?;
    report.cases.iter().find(|c| {
        c.status == CaseStatus::Ok
            && c.params.as_compare().is_some_and(|p| {
                p.is_baseline() && p.model == this.model && p.max_new_tokens == this.max_new_tokens
            })
    })
}

pub fn decode_samples(case: &CaseResult) -> Vec<f64> {
    case.runs.iter().map(|r| r.decode_tokens_per_s).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SpeedRatio {
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
}

pub fn relative(report: &Report, case: &CaseResult) -> Option<Relative> {
    let base = baseline(report, case)?;
    let speed = welch_change(&decode_samples(base), &decode_samples(case))
        .map(|c| SpeedRatio { ratio: 1.0 + c.relative, low: 1.0 + c.ci_low, high: 1.0 + c.ci_high });
    let mean = |c: &CaseResult, f: fn(&super::schema::RunRecord) -> f64| {
        Summary::of(&c.runs.iter().map(f).collect::<Vec<_>>()).map(|s| s.mean)
    };
    let reduction = |f: fn(&super::schema::RunRecord) -> f64| -> f64 {
        match (mean(base, f), mean(case, f)) {
            (Some(b), Some(c)) if b > 0.0 => (1.0 - c / b) * 100.0,
            _ => 0.0,
        }
    };
    Some(Relative {
        speed,
        kv_reduction_pct: reduction(|r| r.kv_cache_bytes as f64),
        rss_reduction_pct: reduction(|r| r.peak_rss_bytes as f64),
    })
}
