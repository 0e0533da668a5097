//! Charts of a `sled --task truthfulqa` run, from its report alone: MC1, MC2 and MC3 per
//! decoding with their 95% bootstrap intervals (from log-probabilities, and from the raw
//! values the SLED authors sum), and the wall time per question.

use super::data::Bar;
use super::style::{HEIGHT, WIDTH};
use super::{draw, render_figure, ChartKind, Figure, ImageFormat};
use crate::results::schema::{McScores, Report, SledQuality};
use anyhow::Result;
use plotters::prelude::*;

struct SledFigure<'a> {
    chart: ChartKind,
    report: &'a Report,
}

fn scored(report: &Report) -> impl Iterator<Item = (String, &SledQuality)> {
    report
        .cases
        .iter()
        .filter_map(|c| Some((c.params.label(), c.quality.as_ref()?.as_sled()?)))
}

fn mc_bars(
    report: &Report,
    pick: fn(&SledQuality) -> &McScores,
) -> Vec<(String, Vec<(f64, f64, f64)>)> {
    scored(report)
        .map(|(label, q)| {
            let m = pick(q);
            (
                label,
                [m.mc1, m.mc2, m.mc3]
                    .iter()
                    .map(|i| (i.mean, i.ci95[0], i.ci95[1]))
                    .collect(),
            )
        })
        .collect()
}

impl Figure for SledFigure<'_> {
    fn draw<B: DrawingBackend>(
        &self,
        root: &DrawingArea<B, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
        root.fill(&WHITE)?;
        let report = self.report;
        let questions = scored(report)
            .map(|(_, q)| q.truthfulqa.questions)
            .max()
            .unwrap_or(0);
        match self.chart {
            ChartKind::TruthfulqaMc => draw::grouped_interval_chart(
                root,
                &format!("TruthfulQA MC from log-probabilities ({questions} questions, 95% bootstrap CI)"),
                "score",
                &["MC1", "MC2", "MC3"],
                &mc_bars(report, |q| &q.truthfulqa.log_prob),
            ),
            ChartKind::TruthfulqaMcRaw => draw::grouped_interval_chart(
                root,
                &format!("TruthfulQA MC from raw values, the SLED authors' score ({questions} questions, 95% CI)"),
                "score",
                &["MC1", "MC2", "MC3"],
                &mc_bars(report, |q| &q.truthfulqa.raw),
            ),
            _ => {
                let bars: Vec<Bar> = scored(report)
                    .map(|(label, q)| Bar { label, value: q.truthfulqa.seconds_per_question, spread: 0.0 })
                    .collect();
                draw::bar_chart(root, "Wall time per question (all its answers scored)", "s", &bars)
            }
        }
    }
}

/// Renders one of `ChartKind::SLED`.
pub fn render(chart: ChartKind, report: &Report, format: ImageFormat) -> Result<Vec<u8>> {
    render_figure(
        &SledFigure { chart, report },
        (WIDTH, HEIGHT),
        chart.name(),
        format,
    )
}
