//! Charts of an evaluate run, from its report alone: end-to-end latency against decode
//! throughput (one point per model and format), and ROUGE-L and BLEU per model and format
//! (against the references where the data has them, else fidelity to the baseline's output),
//! with the spread over samples.

use super::data::{case_label, ok_cases, Bar};
use super::style::{HEIGHT, WIDTH};
use super::{draw, render_figure, ChartKind, Figure, ImageFormat};
use crate::measure::stats::Summary;
use crate::results::schema::{CaseResult, Report, TextScores};
use anyhow::Result;
use plotters::prelude::*;

struct EvaluateFigure<'a> {
    chart: ChartKind,
    report: &'a Report,
}

/// The scores a quality bar shows for a case, and what they were measured against.
fn scored(case: &CaseResult) -> Option<(&TextScores, &'static str)> {
    let q = case.quality.as_ref()?.as_evaluate()?;
    q.references
        .as_ref()
        .map(|t| (t, "against the references"))
        .or_else(|| {
            q.fidelity
                .as_ref()
                .map(|t| (t, "fidelity to the baseline's output"))
        })
}

/// Per case, the corpus score of `metric` with the sample std as its spread.
fn metric_bars(report: &Report, metric: &str) -> (Vec<Bar>, &'static str) {
    let mut against = "";
    let bars = report
        .cases
        .iter()
        .filter_map(|c| {
            let (scores, what) = scored(c)?;
            against = what;
            let value = *scores.corpus.get(metric)?;
            let samples: Vec<f64> = scores
                .samples
                .iter()
                .filter_map(|s| s.get(metric).copied())
                .collect();
            let spread = Summary::of(&samples).map_or(0.0, |s| s.std);
            Some(Bar {
                label: case_label(report, c),
                value,
                spread,
            })
        })
        .collect();
    (bars, against)
}

impl Figure for EvaluateFigure<'_> {
    fn draw<B: DrawingBackend>(
        &self,
        root: &DrawingArea<B, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
        root.fill(&WHITE)?;
        let report = self.report;
        match self.chart {
            ChartKind::LatencyVsThroughput => {
                let points: Vec<(String, f64, f64)> = ok_cases(report)
                    .filter_map(|c| {
                        let s = c.summary.as_ref()?;
                        Some((
                            case_label(report, c),
                            s.decode_tokens_per_s.median,
                            s.e2e_ms.median / 1e3,
                        ))
                    })
                    .collect();
                draw::points_chart(
                    root,
                    "Latency against throughput (medians)",
                    "decode tokens/s",
                    "end-to-end latency per request (s)",
                    &points,
                    false,
                )
            }
            _ => {
                let (metric, name) = if self.chart == ChartKind::RougeLByFormat {
                    ("rougeL", "ROUGE-L F1")
                } else {
                    ("bleu", "BLEU")
                };
                let (bars, against) = metric_bars(report, metric);
                draw::bar_chart(
                    root,
                    &format!("{name} {against} (corpus; ± std over samples)"),
                    name,
                    &bars,
                )
            }
        }
    }
}

/// Renders one of `ChartKind::EVALUATE`.
pub fn render(chart: ChartKind, report: &Report, format: ImageFormat) -> Result<Vec<u8>> {
    render_figure(
        &EvaluateFigure { chart, report },
        (WIDTH, HEIGHT),
        chart.name(),
        format,
    )
}

/// Whether the report has a score `metric` to draw.
pub fn has_metric(report: &Report, metric: &str) -> bool {
    report
        .cases
        .iter()
        .filter_map(scored)
        .any(|(t, _)| t.corpus.contains_key(metric))
}
