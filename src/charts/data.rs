//! What charts plot, extracted from a report alone: per-case bar values with spread, mean
//! curves over token position, and sweep series.

use crate::measure::stats::Summary;
use crate::results::schema::{CaseResult, CaseStatus, CompareParams, Report, RunRecord};

/// A bar: label, mean and sample std.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub spread: f64,
}

/// A named curve.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

pub fn ok_cases(report: &Report) -> impl Iterator<Item = &CaseResult> {
    report.cases.iter().filter(|c| c.status == CaseStatus::Ok && !c.runs.is_empty())
}

/// Case labels name the model only when a report holds several.
pub fn case_label(report: &Report, case: &CaseResult) -> String {
    let models: std::collections::BTreeSet<&str> = report.cases.iter().map(|c| c.params.model()).collect();
    let lengths: std::collections::BTreeSet<usize> = report.cases.iter().map(|c| c.params.max_new_tokens()).collect();
    let mut label = case.params.label();
    if lengths.len() > 1 {
        label += &format!(" n={}", case.params.max_new_tokens());
    }
    if models.len() > 1 {
        label = format!("{} {label}", short_model(case.params.model()));
    }
    label
}

fn short_model(model: &str) -> &str {
    let model = model.rsplit('/').next().unwrap_or(model);
    model.strip_prefix("pip:").unwrap_or(model)
}

/// One bar per ok case for a per-run metric.
pub fn bars(report: &Report, metric: fn(&RunRecord) -> f64) -> Vec<Bar> {
    ok_cases(report)
        .filter_map(|c| {
            let s = Summary::of(&c.runs.iter().map(metric).collect::<Vec<_>>())?;
            Some(Bar { label: case_label(report, c), value: s.mean, spread: s.std })
        })
        .collect()
}

/// Per case, the mean over runs of a per-token series, against token position (1-based).
pub fn position_series(report: &Report, per_token: fn(&RunRecord) -> Vec<f64>) -> Vec<Series> {
    ok_cases(report)
        .map(|c| {
            let runs: Vec<Vec<f64>> = c.runs.iter().map(per_token).collect();
            let len = runs.iter().map(Vec::len).max().unwrap_or(0);
            let points = (0..len)
                .filter_map(|i| {
                    let vals: Vec<f64> = runs.iter().filter_map(|r| r.get(i).copied()).collect();
                    (!vals.is_empty()).then(|| ((i + 1) as f64, vals.iter().sum::<f64>() / vals.len() as f64))
                })
                .collect();
            Series { label: case_label(report, c), points }
        })
        .collect()
}

/// The parameter that varies across cases (max_new_tokens, window or stride), if any.
pub fn swept_parameter(report: &Report) -> Option<&'static str> {
    let distinct = |f: fn(&CompareParams) -> Option<usize>| {
        ok_cases(report).filter_map(|c| c.params.as_compare().and_then(f)).collect::<std::collections::BTreeSet<_>>().len() > 1
    };
    if distinct(|p| Some(p.max_new_tokens)) {
        Some("max_new_tokens")
    } else if distinct(|p| p.window) {
        Some("window")
    } else if distinct(|p| p.stride) {
        Some("stride")
    } else {
        None
    }
}

/// Mean decode tokens/s against the swept parameter, one series per method (and model).
pub fn sweep_series(report: &Report, parameter: &str) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for c in ok_cases(report) {
        let Some(p) = c.params.as_compare() else { continue };
        let x = match parameter {
            "max_new_tokens" => Some(p.max_new_tokens),
            "window" => p.window,
            _ => p.stride,
        };
        let Some(x) = x else { continue };
        let Some(s) = Summary::of(&c.runs.iter().map(|r| r.decode_tokens_per_s).collect::<Vec<_>>()) else { continue };
        let mut label = p.method.clone();
        if parameter != "window" {
            if let Some(w) = p.window {
                label += &format!(" w={w}");
            }
        }
        if parameter != "stride" {
            if let Some(st) = p.stride {
                label += &format!(" s={st}");
            }
        }
        if report.cases.iter().any(|o| o.params.model() != p.model) {
            label = format!("{} {label}", short_model(&p.model));
        }
        match series.iter_mut().find(|s| s.label == label) {
            Some(existing) => existing.points.push((x as f64, s.mean)),
            None => series.push(Series { label, points: vec![(x as f64, s.mean)] }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}
