//! Charts of a specdec run, from its report alone: measured and predicted speedup against K
//! (one pair of lines per draft source and policy), acceptance by draft position (one line per
//! case), and where each case's time goes (stacked bars: draft, verify, bookkeeping).

use super::data::{ok_cases, Series};
use super::style::{HEIGHT, WIDTH};
use super::{draw, render_figure, ChartKind, Figure, ImageFormat};
use crate::results::schema::{CaseResult, Report, SpecdecQuality};
use anyhow::Result;
use plotters::prelude::*;

fn parts(case: &CaseResult) -> Option<(String, usize, &SpecdecQuality)> {
    let p = case.params.as_specdec()?;
    let draft = p.draft.clone()?;
    let family = match p.policy.as_deref() {
        Some("greedy") | None => draft,
        Some(policy) => format!("{draft} {policy}"),
    };
    Some((family, p.k?, case.quality.as_ref()?.as_specdec()?))
}

/// Measured and predicted speedup lines per (draft, policy), over K.
fn speedup_series(report: &Report) -> Vec<Series> {
    let mut families: Vec<String> = Vec::new();
    for (family, _, _) in ok_cases(report).filter_map(parts) {
        if !families.contains(&family) {
            families.push(family);
        }
    }
    let mut out = Vec::new();
    for family in families {
        let line = |label: &str, value: fn(&SpecdecQuality) -> Option<f64>| {
            let mut points: Vec<(f64, f64)> = ok_cases(report)
                .filter_map(parts)
                .filter(|(f, _, _)| *f == family)
                .filter_map(|(_, k, q)| Some((k as f64, value(q)?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { label: format!("{family} {label}"), points }
        };
        out.push(line("measured", |q| q.speedup.map(|r| r.ratio)));
        out.push(line("predicted", |q| q.predicted_speedup));
    }
    out.into_iter().filter(|s| !s.points.is_empty()).collect()
}

fn acceptance_series(report: &Report) -> Vec<Series> {
    ok_cases(report)
        .filter_map(|c| {
            let (_, _, q) = parts(c)?;
            let points = q.per_position_acceptance_rate.iter().enumerate().map(|(i, &r)| ((i + 1) as f64, r)).collect();
            Some(Series { label: c.params.label(), points })
        })
        .filter(|s: &Series| !s.points.is_empty())
        .collect()
}

/// Mean ms per run in each phase, one stacked bar per speculative case.
fn time_breakdown(report: &Report) -> Vec<(String, Vec<f64>)> {
    ok_cases(report)
        .filter_map(|c| {
            let q = c.quality.as_ref()?.as_specdec()?;
            (q.spec_decode_num_drafts > 0).then(|| (c.params.label(), vec![q.prefill_ms, q.draft_ms, q.verify_ms, q.bookkeeping_ms]))
        })
        .collect()
}

struct SpecFigure<'a> {
    chart: ChartKind,
    report: &'a Report,
}

impl Figure for SpecFigure<'_> {
    fn draw<B: DrawingBackend>(&self, root: &DrawingArea<B, plotters::coord::Shift>) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
        root.fill(&WHITE)?;
        let model = self.report.cases.first().map_or("", |c| c.params.model());
        match self.chart {
            ChartKind::SpeedupVsK => draw::line_chart(
                root,
                &format!("Speedup over standard decoding against K ({model})"),
                "K (tokens drafted per step)",
                "speedup (decode tok/s ratio)",
                &speedup_series(self.report),
            ),
            ChartKind::AcceptanceByPosition => draw::line_chart(
                root,
                "Acceptance by draft position (drafts whose i-th token was accepted)",
                "draft position",
                "acceptance rate",
                &acceptance_series(self.report),
            ),
            _ => draw::stacked_bar_chart(
                root,
                "Where a run's time goes (mean ms per run)",
                "ms",
                &["prefill", "draft", "verify", "bookkeeping"],
                &time_breakdown(self.report),
            ),
        }
    }
}

/// Renders one of `ChartKind::SPECDEC`.
pub fn render(chart: ChartKind, report: &Report, format: ImageFormat) -> Result<Vec<u8>> {
    render_figure(&SpecFigure { chart, report }, (WIDTH, HEIGHT), chart.name(), format)
}
