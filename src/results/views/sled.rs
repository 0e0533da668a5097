//! sled's tables: TruthfulQA MC1, MC2 and MC3 with their 95% bootstrap intervals per decoding,
//! two rows per case (the raw-value score the SLED authors report, then log-probabilities), the
//! paired difference from standard decoding on the same questions with its own interval (a
//! star where it excludes 0), and the wall time per question.

use super::{not_run, opt, Table};
use crate::metrics::truthfulqa::{bootstrap_mean_ci, AnswerScore};
use crate::results::schema::{CaseResult, Interval, McScores, Report, SledQuality};

fn quality(case: &CaseResult) -> Option<&SledQuality> {
    case.quality.as_ref().and_then(|q| q.as_sled())
}

fn cell(i: &Interval) -> String {
    format!("{:.4} [{:.3}, {:.3}]", i.mean, i.ci95[0], i.ci95[1])
}

/// The answer score a label names.
fn getter(kind: &str) -> fn(&AnswerScore) -> f64 {
    if kind == "raw" {
        AnswerScore::raw
    } else {
        AnswerScore::log_prob
    }
}

/// The two scores of a case, labelled as the CSV and the charts label them.
fn scores(q: &SledQuality) -> [(&'static str, &McScores); 2] {
    [
        ("raw", &q.truthfulqa.raw),
        ("log_prob", &q.truthfulqa.log_prob),
    ]
}

/// Per MC score, the paired difference from standard decoding's on the same questions: the
/// mean of the per-question differences and its 95% bootstrap interval (the report's
/// resamples, seed 0). A difference is only called one when that interval excludes 0.
fn against_standard(
    report: &Report,
    case: &CaseResult,
    get: fn(&AnswerScore) -> f64,
) -> Option<[Interval; 3]> {
    let p = case.params.as_sled()?;
    if p.method == "standard" {
        return None;
    }
    let standard = report
        .cases
        .iter()
        .find(|c| {
            c.params
                .as_sled()
                .is_some_and(|s| s.method == "standard" && s.model == p.model)
        })
        .and_then(quality)?;
    let ours = quality(case)?;
    if standard.questions.len() != ours.questions.len() {
        return None;
    }
    let resamples = report
        .sled_settings()
        .map_or(1000, |s| s.bootstrap_resamples);
    let pairs: Vec<((f64, f64, f64), (f64, f64, f64))> = ours
        .questions
        .iter()
        .zip(&standard.questions)
        .map(|(a, b)| (a.mc(get), b.mc(get)))
        .collect();
    let delta = |f: fn(&(f64, f64, f64)) -> f64| {
        let d: Vec<f64> = pairs.iter().map(|(a, b)| f(a) - f(b)).collect();
        let (lo, hi) = bootstrap_mean_ci(&d, resamples, 0);
        Interval {
            mean: d.iter().sum::<f64>() / d.len().max(1) as f64,
            ci95: [lo, hi],
        }
    };
    Some([delta(|x| x.0), delta(|x| x.1), delta(|x| x.2)])
}

/// "+0.0346 [+0.011, +0.058] *": the star when the interval excludes 0.
fn delta_cell(i: &Interval) -> String {
    let star = if i.ci95[0] > 0.0 || i.ci95[1] < 0.0 {
        " *"
    } else {
        ""
    };
    format!(
        "{:+.4} [{:+.3}, {:+.3}]{star}",
        i.mean, i.ci95[0], i.ci95[1]
    )
}

pub fn human(report: &Report) -> Table {
    let mut table = Table::new(&[
        "decoding",
        "score",
        "MC1 [95% CI]",
        "MC2 [95% CI]",
        "MC3 [95% CI]",
        "ΔMC1 vs standard",
        "ΔMC2 vs standard",
        "ΔMC3 vs standard",
        "questions",
        "s/question",
    ]);
    for case in &report.cases {
        let label = case.params.label();
        let Some(q) = quality(case) else {
            table.push(vec![
                label,
                not_run(case).unwrap_or_else(|| "no scores".into()),
            ]);
            continue;
        };
        for (kind, m) in scores(q) {
            let deltas = against_standard(report, case, getter(kind));
            let delta = |i: usize| {
                deltas
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |d| delta_cell(&d[i]))
            };
            table.push(vec![
                label.clone(),
                kind.into(),
                cell(&m.mc1),
                cell(&m.mc2),
                cell(&m.mc3),
                delta(0),
                delta(1),
                delta(2),
                q.truthfulqa.questions.to_string(),
                format!("{:.3}", q.truthfulqa.seconds_per_question),
            ]);
        }
    }
    table
}

pub fn csv(report: &Report) -> Table {
    let mut table = Table::new(&[
        "model",
        "method",
        "contrast",
        "status",
        "score",
        "questions",
        "mc1",
        "mc1_ci95_low",
        "mc1_ci95_high",
        "mc2",
        "mc2_ci95_low",
        "mc2_ci95_high",
        "mc3",
        "mc3_ci95_low",
        "mc3_ci95_high",
        "d_mc1_vs_standard",
        "d_mc1_ci95_low",
        "d_mc1_ci95_high",
        "d_mc2_vs_standard",
        "d_mc2_ci95_low",
        "d_mc2_ci95_high",
        "d_mc3_vs_standard",
        "d_mc3_ci95_low",
        "d_mc3_ci95_high",
        "seconds_per_question",
    ]);
    for case in &report.cases {
        let Some(p) = case.params.as_sled() else {
            continue;
        };
        let base = || {
            vec![
                p.model.clone(),
                p.method.clone(),
                p.contrast.clone().unwrap_or_default(),
                format!("{:?}", case.status).to_lowercase(),
            ]
        };
        let Some(q) = quality(case) else {
            table.push(base());
            continue;
        };
        for (kind, m) in scores(q) {
            let mut row = base();
            row.extend([kind.to_string(), q.truthfulqa.questions.to_string()]);
            for i in [m.mc1, m.mc2, m.mc3] {
                row.extend([
                    opt(Some(i.mean)),
                    opt(Some(i.ci95[0])),
                    opt(Some(i.ci95[1])),
                ]);
            }
            let deltas = against_standard(report, case, getter(kind));
            for i in 0..3 {
                let d = deltas.as_ref().map(|d| d[i]);
                row.extend([
                    opt(d.map(|d| d.mean)),
                    opt(d.map(|d| d.ci95[0])),
                    opt(d.map(|d| d.ci95[1])),
                ]);
            }
            row.push(opt(Some(q.truthfulqa.seconds_per_question)));
            table.push(row);
        }
    }
    table
}
