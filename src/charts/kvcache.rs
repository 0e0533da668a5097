//! Charts of a kvcache run, from its report alone: cache bytes and per-token latency against
//! context (one line per strategy), and perplexity change against bytes at the longest
//! context (the Pareto chart: lower left is better).

use super::data::{ok_cases, Series};
use super::style::{HEIGHT, WIDTH};
use super::{draw, render_figure, ChartKind, Figure, ImageFormat};
use crate::results::schema::{CaseResult, Report};
use anyhow::Result;
use plotters::prelude::*;

const MIB: f64 = (1u64 << 20) as f64;

/// Ok cases of one strategy with their context, in context order.
fn of_strategy<'a>(report: &'a Report, strategy: &'a str) -> impl Iterator<Item = (usize, &'a CaseResult)> + 'a {
    ok_cases(report).filter_map(move |c| c.params.as_kvcache().filter(|p| p.strategy == strategy).map(|p| (p.context_tokens, c)))
}

/// One line per strategy, in the order the run listed them.
fn per_strategy(report: &Report, value: impl Fn(&CaseResult) -> Option<f64>) -> Vec<Series> {
    let strategies = report.kvcache_settings().map(|s| s.strategies.clone()).unwrap_or_default();
    strategies
        .iter()
        .map(|name| {
            let mut points: Vec<(f64, f64)> =
                of_strategy(report, name).filter_map(|(context, c)| Some((context as f64, value(c)?))).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { label: name.clone(), points }
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// The median inter-token gap where runs recorded gaps; files converted from schema 1 kept
/// only the mean TPOT, which the axis then names.
fn latency(report: &Report) -> (Vec<Series>, &'static str) {
    let all_have_gaps = ok_cases(report).all(|c| c.summary.as_ref().is_some_and(|s| s.median_itl_ms.is_some()));
    if all_have_gaps {
        (per_strategy(report, |c| c.summary.as_ref()?.median_itl_ms), "median inter-token ms")
    } else {
        (per_strategy(report, |c| Some(c.summary.as_ref()?.mean_tpot_ms)), "mean TPOT ms")
    }
}

struct KvFigure<'a> {
    chart: ChartKind,
    report: &'a Report,
}

impl Figure for KvFigure<'_> {
    fn draw<B: DrawingBackend>(&self, root: &DrawingArea<B, plotters::coord::Shift>) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
        root.fill(&WHITE)?;
        let report = self.report;
        let model = report.cases.first().map_or("", |c| c.params.model());
        match self.chart {
            ChartKind::KvBytesVsContext => draw::line_chart(
                root,
                &format!("KV-cache bytes held after decoding ({model})"),
                "context tokens",
                "MiB",
                &per_strategy(report, |c| Some(c.runs.last()?.kv_cache_bytes as f64 / MIB)),
            ),
            // The median gap, not the mean: few runs per point on a shared machine, and a few
            // preempted steps would otherwise draw the noise instead of the growth.
            ChartKind::TpotVsContext => {
                let (series, axis) = latency(report);
                draw::line_chart(root, &format!("Time per output token against context ({model})"), "context tokens", axis, &series)
            }
            _ => {
                let longest = ok_cases(report).filter_map(|c| c.params.as_kvcache()).map(|p| p.context_tokens).max().unwrap_or(0);
                let points: Vec<(String, f64, f64)> = ok_cases(report)
                    .filter_map(|c| {
                        let p = c.params.as_kvcache().filter(|p| p.context_tokens == longest)?;
                        let q = c.quality.as_ref()?.as_kvcache()?;
                        Some((p.strategy.clone(), c.runs.last()?.kv_cache_bytes as f64 / MIB, q.perplexity_delta_pct))
                    })
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

/// Renders one of `ChartKind::KVCACHE`.
pub fn render(chart: ChartKind, report: &Report, format: ImageFormat) -> Result<Vec<u8>> {
    render_figure(&KvFigure { chart, report }, (WIDTH, HEIGHT), chart.name(), format)
}
