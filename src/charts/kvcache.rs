//! Charts of a kvcache run, from kvcache.json alone: cache bytes and TPOT against context
//! (one line per strategy), and perplexity delta against bytes at the longest context (the
//! Pareto chart: lower left is better).

use super::data::Series;
use super::style::{HEIGHT, WIDTH};
use super::{draw, render_figure, Figure, ImageFormat};
use crate::results::kvcache::KvcacheReport;
use anyhow::Result;
use plotters::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvChart {
    BytesVsContext,
    TpotVsContext,
    PerplexityVsBytes,
}

impl KvChart {
    pub const ALL: [KvChart; 3] = [KvChart::BytesVsContext, KvChart::TpotVsContext, KvChart::PerplexityVsBytes];

    pub fn name(self) -> &'static str {
        match self {
            Self::BytesVsContext => "kv-bytes-vs-context",
            Self::TpotVsContext => "tpot-vs-context",
            Self::PerplexityVsBytes => "ppl-delta-vs-bytes",
        }
    }

    pub fn file_name(self, format: ImageFormat) -> String {
        format!("{}.{}", self.name(), format.extension())
    }
}

const MIB: f64 = (1u64 << 20) as f64;

/// One line per strategy, in the order the run listed them.
fn per_strategy(report: &KvcacheReport, value: impl Fn(&crate::results::kvcache::KvcacheRow) -> f64) -> Vec<Series> {
    report
        .settings
        .strategies
        .iter()
        .map(|name| Series {
            label: name.clone(),
            points: report.rows.iter().filter(|r| &r.strategy == name).map(|r| (r.context_tokens as f64, value(r))).collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

struct KvFigure<'a> {
    chart: KvChart,
    report: &'a KvcacheReport,
}

impl Figure for KvFigure<'_> {
    fn draw<B: DrawingBackend>(&self, root: &DrawingArea<B, plotters::coord::Shift>) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
        root.fill(&WHITE)?;
        let model = &self.report.model.id;
        match self.chart {
            KvChart::BytesVsContext => draw::line_chart(
                root,
                &format!("KV-cache bytes held after decoding ({model})"),
                "context tokens",
                "MiB",
                &per_strategy(self.report, |r| r.kv_cache_bytes as f64 / MIB),
            ),
            // The median gap, not the mean: one run per point on a shared machine, and a few
            // preempted steps would otherwise draw the noise instead of the growth.
            KvChart::TpotVsContext => draw::line_chart(
                root,
                &format!("Median time per output token against context ({model})"),
                "context tokens",
                "median TPOT ms",
                &per_strategy(self.report, |r| r.median_itl_ms),
            ),
            KvChart::PerplexityVsBytes => {
                let longest = self.report.rows.iter().map(|r| r.context_tokens).max().unwrap_or(0);
                let points: Vec<(String, f64, f64)> = self
                    .report
                    .rows
                    .iter()
                    .filter(|r| r.context_tokens == longest)
                    .map(|r| (r.strategy.clone(), r.kv_cache_bytes as f64 / MIB, r.quality.perplexity_delta_pct))
                    .collect();
                draw::pareto_chart(
                    root,
                    &format!("Perplexity cost against KV bytes at context {longest} (lower left is better)"),
                    "KV-cache MiB",
                    "perplexity vs full, %",
                    &points,
                )
            }
        }
    }
}

pub fn render(chart: KvChart, report: &KvcacheReport, format: ImageFormat) -> Result<Vec<u8>> {
    render_figure(&KvFigure { chart, report }, (WIDTH, HEIGHT), chart.name(), format)
}
