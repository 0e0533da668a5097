//! Charts of a quantize run, from its report alone: the distribution shift (mean KL
//! divergence, log scale) against bits per weight with the Pareto frontier (lower left is
//! better), and decode speed per format.

use super::data::{bars, ok_cases};
use super::style::{HEIGHT, WIDTH};
use super::{draw, render_figure, ChartKind, Figure, ImageFormat};
use crate::results::schema::Report;
use anyhow::Result;
use plotters::prelude::*;

struct QuantizeFigure<'a> {
    chart: ChartKind,
    report: &'a Report,
}

impl Figure for QuantizeFigure<'_> {
    fn draw<B: DrawingBackend>(&self, root: &DrawingArea<B, plotters::coord::Shift>) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
        root.fill(&WHITE)?;
        let report = self.report;
        let model = report.cases.first().map_or("", |c| c.params.model());
        match self.chart {
            ChartKind::KldVsBits => {
                // The reference itself (KL 0) has no place on a log axis; every other format does.
                let points: Vec<(String, f64, f64)> = ok_cases(report)
                    .filter_map(|c| {
                        let q = c.quality.as_ref()?.as_quantize()?;
                        let kld = q.shift.as_ref()?.kld_mean;
                        (kld > 0.0).then(|| (c.params.label(), q.bits_per_weight, kld.log10()))
                    })
                    .collect();
                draw::pareto_chart(
                    root,
                    &format!("Distribution shift against size ({model}; lower left is better)"),
                    "bits per weight",
                    "log10 mean KL divergence from the source (nats)",
                    &points,
                )
            }
            _ => draw::bar_chart(
                root,
                &format!("Decode throughput per weight format ({model}, mean ± std)"),
                "tokens/s",
                &bars(report, |r| r.decode_tokens_per_s),
            ),
        }
    }
}

/// Renders one of `ChartKind::QUANTIZE`.
pub fn render(chart: ChartKind, report: &Report, format: ImageFormat) -> Result<Vec<u8>> {
    render_figure(&QuantizeFigure { chart, report }, (WIDTH, HEIGHT), chart.name(), format)
}
