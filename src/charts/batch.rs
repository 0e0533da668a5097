//! Charts of a batch run, from its report alone: aggregate decode tokens/s (S_TG) and each
//! sequence's own decode tokens/s against the batch size (throughput rises while the weights'
//! reads are shared, until compute binds; each sequence slows as the step grows), and TTFT and
//! TPOT percentiles against the batch size (two charts: they differ by orders of magnitude).

use super::data::{ok_cases, Series};
use super::style::{HEIGHT, WIDTH};
use super::{draw, render_figure, ChartKind, Figure, ImageFormat};
use crate::measure::stats::Summary;
use crate::results::schema::{CaseResult, CaseSummary, Report};
use anyhow::Result;
use plotters::prelude::*;

/// Points `(B, y)` in batch-size order for the cases where `y` has a value.
fn by_batch_size(report: &Report, y: impl Fn(&CaseResult) -> Option<f64>) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = ok_cases(report).filter_map(|c| Some((c.params.as_batch()?.batch_size as f64, y(c)?))).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

fn percentiles(report: &Report, name: &str, summary: fn(&CaseSummary) -> &Summary) -> Vec<Series> {
    let picks: [(&str, fn(&Summary) -> f64); 2] = [("p50", |s| s.p50), ("p99", |s| s.p99)];
    picks
        .iter()
        .map(|(label, pick)| Series { label: format!("{name} {label}"), points: by_batch_size(report, |c| Some(pick(summary(c.summary.as_ref()?)))) })
        .filter(|s| !s.points.is_empty())
        .collect()
}

struct BatchFigure<'a> {
    chart: ChartKind,
    report: &'a Report,
}

impl Figure for BatchFigure<'_> {
    fn draw<B: DrawingBackend>(&self, root: &DrawingArea<B, plotters::coord::Shift>) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
        root.fill(&WHITE)?;
        let report = self.report;
        let model = report.cases.first().map_or("", |c| c.params.model());
        let device = &report.provenance.device;
        match self.chart {
            ChartKind::ThroughputVsBatch => {
                let quality = |c: &CaseResult| c.quality.as_ref().and_then(|q| q.as_batch()).cloned();
                let series = [
                    Series { label: "aggregate decode tokens/s (S_TG)".into(), points: by_batch_size(report, |c| Some(quality(c)?.s_tg.median)) },
                    Series {
                        label: "per-sequence decode tokens/s".into(),
                        points: by_batch_size(report, |c| Some(quality(c)?.per_sequence_decode_tokens_per_s?.median)),
                    },
                ];
                draw::line_chart(root, &format!("Decode throughput against batch size ({model}, {device})"), "batch size B", "tokens/s", &series)
            }
            ChartKind::TtftVsBatch => {
                let series = percentiles(report, "TTFT", |s| &s.ttft_ms);
                draw::line_chart(root, &format!("Time to first token against batch size ({model}, {device})"), "batch size B", "ms", &series)
            }
            _ => {
                let series = percentiles(report, "TPOT", |s| &s.tpot_ms);
                draw::line_chart(root, &format!("Time per output token against batch size ({model}, {device})"), "batch size B", "ms", &series)
            }
        }
    }
}

pub fn render(kind: ChartKind, report: &Report, format: ImageFormat) -> Result<Vec<u8>> {
    render_figure(&BatchFigure { chart: kind, report }, (WIDTH, HEIGHT), kind.name(), format)
}
