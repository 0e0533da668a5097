//! The window study's charts (a compare run that sweeps `--window`, as `llmbench sled` does):
//! KV-cache bytes, peak memory, decode tokens/s, agreement with standard decoding and
//! perplexity against the window, one line per sliding-window method. A method without a
//! window (standard decoding) is drawn flat across the swept range, so each line reads against
//! it. The growth curves over generated length are compare's `kv-bytes` chart.

use super::data::{ok_cases, Series};
use super::style::{HEIGHT, WIDTH};
use super::{draw, render_figure, ChartKind, Figure, ImageFormat, MIB};
use crate::measure::stats::Summary;
use crate::results::schema::{CaseResult, Report};
use anyhow::Result;
use plotters::prelude::*;

/// The windows of a report's finished cases, in order.
pub fn windows(report: &Report) -> Vec<usize> {
    let set: std::collections::BTreeSet<usize> = ok_cases(report)
        .filter_map(|c| c.params.as_compare()?.window)
        .collect();
    set.into_iter().collect()
}

fn mean(case: &CaseResult, f: fn(&crate::results::schema::RunRecord) -> f64) -> Option<f64> {
    Summary::of(&case.runs.iter().map(f).collect::<Vec<_>>()).map(|s| s.mean)
}

/// Peak device memory where the runs recorded it (CUDA), else peak resident memory.
fn peak_memory(case: &CaseResult) -> Option<f64> {
    let device: Vec<f64> = case
        .runs
        .iter()
        .filter_map(|r| r.peak_device_memory_bytes)
        .map(|b| b as f64)
        .collect();
    if device.len() == case.runs.len() && !device.is_empty() {
        return Summary::of(&device).map(|s| s.mean / MIB);
    }
    mean(case, |r| r.peak_rss_bytes as f64 / MIB)
}

/// One series per method, x the window; a windowless method is flat across the swept windows.
/// A series also names its model and length where a report holds several, and its stride where
/// it is not half the window (the study's rule), so different sweeps never share a line.
fn window_series(report: &Report, metric: fn(&CaseResult) -> Option<f64>) -> Vec<Series> {
    let swept = windows(report);
    let (lo, hi) = (
        swept.first().copied().unwrap_or(0) as f64,
        swept.last().copied().unwrap_or(0) as f64,
    );
    let distinct = |f: fn(&CaseResult) -> String| {
        ok_cases(report)
            .map(f)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1
    };
    let (models, lengths) = (
        distinct(|c| c.params.model().to_string()),
        distinct(|c| c.params.max_new_tokens().to_string()),
    );
    let mut series: Vec<Series> = Vec::new();
    for case in ok_cases(report) {
        let Some(p) = case.params.as_compare() else {
            continue;
        };
        let Some(y) = metric(case) else { continue };
        let mut label = match p.window {
            Some(_) => p.method.clone(),
            None => format!("{} (no window)", p.method),
        };
        if let (Some(w), Some(st)) = (p.window, p.stride) {
            if st != (w / 2).max(1) {
                label += &format!(" s={st}");
            }
        }
        if lengths {
            label += &format!(" n={}", p.max_new_tokens);
        }
        if models {
            label = format!("{} {label}", p.model.rsplit('/').next().unwrap_or(&p.model));
        }
        let points = match p.window {
            Some(w) => vec![(w as f64, y)],
            None => vec![(lo, y), (hi, y)],
        };
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.extend(points),
            None => series.push(Series { label, points }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}

struct WindowFigure<'a> {
    chart: ChartKind,
    report: &'a Report,
}

impl Figure for WindowFigure<'_> {
    fn draw<B: DrawingBackend>(
        &self,
        root: &DrawingArea<B, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
        root.fill(&WHITE)?;
        let (title, y_desc, metric): (&str, &str, fn(&CaseResult) -> Option<f64>) = match self.chart
        {
            ChartKind::KvBytesVsWindow => (
                "KV-cache bytes at the end of a run against the window",
                "MiB",
                |c| mean(c, |r| r.kv_cache_bytes as f64 / MIB),
            ),
            ChartKind::PeakMemoryVsWindow => (
                "Peak memory against the window (device where measured, else RSS)",
                "MiB",
                peak_memory,
            ),
            ChartKind::ThroughputVsWindow => {
                ("Decode throughput against the window", "tokens/s", |c| {
                    mean(c, |r| r.decode_tokens_per_s)
                })
            }
            ChartKind::AgreementVsWindow => (
                "Tokens equal to standard decoding's against the window",
                "agreement",
                |c| c.quality.as_ref()?.as_compare()?.agreement_with_standard,
            ),
            _ => (
                "Perplexity of the output under the full model against the window",
                "perplexity",
                |c| c.quality.as_ref()?.as_compare()?.perplexity,
            ),
        };
        draw::line_chart(
            root,
            title,
            "window (tokens)",
            y_desc,
            &window_series(self.report, metric),
        )
    }
}

/// Renders one of `ChartKind::WINDOW`.
pub fn render(chart: ChartKind, report: &Report, format: ImageFormat) -> Result<Vec<u8>> {
    render_figure(
        &WindowFigure { chart, report },
        (WIDTH, HEIGHT),
        chart.name(),
        format,
    )
}

/// Whether any finished case has a perplexity to draw (compare's `--quality`).
pub fn has_perplexity(report: &Report) -> bool {
    ok_cases(report).any(|c| {
        c.quality
            .as_ref()
            .and_then(|q| q.as_compare())
            .is_some_and(|q| q.perplexity.is_some())
    })
}
