//! Charts of an http run, from its report alone: TTFT and TPOT percentiles against the load
//! (offered request rate, or concurrency when every level sends at once), output throughput
//! against the load, and each level's TTFT and TPOT distributions (empirical CDFs).

use super::data::{ok_cases, Series};
use super::style::{HEIGHT, WIDTH};
use super::{draw, render_figure, ChartKind, Figure, ImageFormat};
use crate::http::metrics::LevelMetrics;
use crate::measure::stats::Summary;
use crate::results::schema::{CaseResult, Report, RunRecord};
use anyhow::Result;
use plotters::prelude::*;

/// The load axis: concurrency when every level's rate is unlimited, else the offered rate.
fn load_axis(report: &Report) -> (&'static str, impl Fn(&CaseResult) -> Option<f64>) {
    let by_concurrency =
        ok_cases(report).all(|c| c.params.as_http().is_some_and(|p| p.request_rate == "inf"));
    let x = move |c: &CaseResult| {
        let p = c.params.as_http()?;
        if by_concurrency {
            p.max_concurrency.map(|m| m as f64)
        } else {
            p.request_rate.parse::<f64>().ok()
        }
    };
    (
        if by_concurrency {
            "max concurrency"
        } else {
            "offered requests/s"
        },
        x,
    )
}

fn metrics(c: &CaseResult) -> Option<&LevelMetrics> {
    Some(&c.quality.as_ref()?.as_http()?.metrics)
}

/// The servers a report holds, in first-seen order (several when `plot` overlays runs).
fn servers(report: &Report) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for c in ok_cases(report) {
        let name = c.params.model();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// One line per percentile of `summary` over the load, per server (p50 and p99 only when
/// several servers share the chart, so it stays readable).
fn percentile_series(
    report: &Report,
    name: &str,
    summary: fn(&LevelMetrics) -> Option<&Summary>,
) -> (Vec<Series>, &'static str) {
    let (axis, x) = load_axis(report);
    let servers = servers(report);
    let all: [(&str, fn(&Summary) -> f64); 3] =
        [("p50", |s| s.p50), ("p90", |s| s.p90), ("p99", |s| s.p99)];
    let picks: Vec<_> = all.iter().filter(|(l, _)| servers.len() == 1 || *l != "p90").collect();
    let mut series = Vec::new();
    for server in &servers {
        for (label, pick) in &picks {
            let mut points: Vec<(f64, f64)> = ok_cases(report)
                .filter(|c| c.params.model() == *server)
                .filter_map(|c| Some((x(c)?, pick(summary(metrics(c)?)?))))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let label = if servers.len() > 1 { format!("{server} {name} {label}") } else { format!("{name} {label}") };
            series.push(Series { label, points });
        }
    }
    (series.into_iter().filter(|s| !s.points.is_empty()).collect(), axis)
}

struct HttpFigure<'a> {
    chart: ChartKind,
    report: &'a Report,
}

impl Figure for HttpFigure<'_> {
    fn draw<B: DrawingBackend>(
        &self,
        root: &DrawingArea<B, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
        root.fill(&WHITE)?;
        let report = self.report;
        let names = servers(report);
        let server = names.join(" vs ");
        match self.chart {
            ChartKind::TtftVsLoad => {
                let (series, axis) = percentile_series(report, "TTFT", |m| m.ttft_ms.as_ref());
                draw::line_chart(
                    root,
                    &format!("Time to first token against load ({server})"),
                    axis,
                    "ms",
                    &series,
                )
            }
            ChartKind::TpotVsLoad => {
                let (series, axis) = percentile_series(report, "TPOT", |m| m.tpot_ms.as_ref());
                draw::line_chart(
                    root,
                    &format!("Time per output token against load ({server})"),
                    axis,
                    "ms",
                    &series,
                )
            }
            ChartKind::ThroughputVsLoad => {
                let (axis, x) = load_axis(report);
                let series: Vec<Series> = names
                    .iter()
                    .map(|name| {
                        let mut points: Vec<(f64, f64)> = ok_cases(report)
                            .filter(|c| c.params.model() == *name)
                            .filter_map(|c| Some((x(c)?, metrics(c)?.output_throughput)))
                            .collect();
                        points.sort_by(|a, b| a.0.total_cmp(&b.0));
                        let label = if names.len() > 1 { format!("{name} output tokens/s") } else { "output tokens/s".into() };
                        Series { label, points }
                    })
                    .collect();
                draw::line_chart(
                    root,
                    &format!("Output throughput against load ({server})"),
                    axis,
                    "tokens/s",
                    &series,
                )
            }
            ChartKind::TpotDistribution => draw::line_chart(
                root,
                &format!("TPOT distribution per load level ({server})"),
                "TPOT ms",
                "fraction of requests",
                &cdf(report, |r| (r.generated_tokens > 1).then_some(r.tpot_ms)),
            ),
            _ => draw::line_chart(
                root,
                &format!("TTFT distribution per load level ({server})"),
                "TTFT ms",
                "fraction of requests",
                &cdf(report, |r| Some(r.ttft_ms)),
            ),
        }
    }
}

/// Each level's empirical CDF of a per-request value (requests with one token have no TPOT).
fn cdf(report: &Report, value: fn(&RunRecord) -> Option<f64>) -> Vec<Series> {
    ok_cases(report)
        .map(|c| {
            let mut v: Vec<f64> = c
                .runs
                .iter()
                .filter_map(value)
                .filter(|t| t.is_finite())
                .collect();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            Series {
                label: super::data::case_label(report, c),
                points: v
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (*t, (i + 1) as f64 / n))
                    .collect(),
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

pub fn render(kind: ChartKind, report: &Report, format: ImageFormat) -> Result<Vec<u8>> {
    render_figure(
        &HttpFigure {
            chart: kind,
            report,
        },
        (WIDTH, HEIGHT),
        kind.name(),
        format,
    )
}
