//! Drawing on any plotters backend: bars with error bars (mean ± sample std) and line charts.

use super::data::{Bar, Series};
use super::style::{color, BAR_LABEL_SIZE, FONT, LABEL_SIZE, TITLE_SIZE};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Half the width of a bar, in slots (a slot is 1).
const BAR_HALF_WIDTH: f64 = 0.36;

/// Points above which a series is drawn with a 1-pixel line.
const DENSE_SERIES: usize = 100;

type DrawResult<B> = Result<(), DrawingAreaErrorKind<<B as DrawingBackend>::ErrorType>>;

/// A chart context over f64 x f64 axes.
type SlotChart<'a, B> = ChartContext<'a, B, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// A chart with one slot per case on a numeric x axis (bars centred on 0..n, integer ticks
/// carrying the case names) and `0..y_top` (padded above) on the y axis.
fn case_slots<'a, B: DrawingBackend>(
    area: &'a DrawingArea<B, Shift>,
    title: &str,
    y_desc: &str,
    labels: &[String],
    y_top: f64,
) -> Result<SlotChart<'a, B>, DrawingAreaErrorKind<B::ErrorType>> {
    let n = labels.len().max(1);
    let y_max = if y_top > 0.0 { y_top * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, TITLE_SIZE))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_style((FONT, BAR_LABEL_SIZE))
        .y_label_style((FONT, LABEL_SIZE))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .draw()?;
    Ok(chart)
}

/// Vertical bars, one per case, with error bars of one sample std.
pub fn bar_chart<B: DrawingBackend>(area: &DrawingArea<B, Shift>, title: &str, y_desc: &str, bars: &[Bar]) -> DrawResult<B> {
    let top = bars.iter().map(|b| b.value + b.spread).fold(0.0f64, f64::max);
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let mut chart = case_slots(area, title, y_desc, &labels, top)?;
    chart.draw_series(
        bars.iter().enumerate().map(|(i, b)| Rectangle::new([(i as f64 - BAR_HALF_WIDTH, 0.0), (i as f64 + BAR_HALF_WIDTH, b.value)], color(i).filled())),
    )?;
    for (i, b) in bars.iter().enumerate() {
        let (lo, hi, x) = ((b.value - b.spread).max(0.0), b.value + b.spread, i as f64);
        chart.draw_series(std::iter::once(PathElement::new(vec![(x, lo), (x, hi)], BLACK.stroke_width(2))))?;
        for y in [lo, hi] {
            chart.draw_series(std::iter::once(
                EmptyElement::at((x, y)) + PathElement::new(vec![(-6, 0), (6, 0)], BLACK.stroke_width(2)),
            ))?;
        }
    }
    Ok(())
}

/// Grouped bars, one group per case and one bar per `groups` entry (with a legend), each with
/// its own interval: `bars[i].1[j]` is (value, low, high) of bar j of case i.
pub fn grouped_interval_chart<B: DrawingBackend>(
    area: &DrawingArea<B, Shift>,
    title: &str,
    y_desc: &str,
    groups: &[&str],
    bars: &[(String, Vec<(f64, f64, f64)>)],
) -> DrawResult<B> {
    let top = bars.iter().flat_map(|(_, v)| v.iter().map(|b| b.2.max(b.0))).fold(0.0f64, f64::max);
    let labels: Vec<String> = bars.iter().map(|(l, _)| l.clone()).collect();
    let mut chart = case_slots(area, title, y_desc, &labels, top)?;
    let width = 2.0 * BAR_HALF_WIDTH / groups.len().max(1) as f64;
    for (j, name) in groups.iter().enumerate() {
        let style = color(j).filled();
        let left = |i: usize| i as f64 - BAR_HALF_WIDTH + j as f64 * width;
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, (_, v))| {
                v.get(j).map(|b| Rectangle::new([(left(i), 0.0), (left(i) + width * 0.9, b.0)], style))
            }))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], style));
        for (i, (_, v)) in bars.iter().enumerate() {
            let Some(&(_, lo, hi)) = v.get(j) else { continue };
            let x = left(i) + width * 0.45;
            chart.draw_series(std::iter::once(PathElement::new(vec![(x, lo), (x, hi)], BLACK.stroke_width(2))))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, LABEL_SIZE))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

/// Stacked bars, one per case: `bars[i].1[j]` is segment `segments[j]` of case i, with a legend.
pub fn stacked_bar_chart<B: DrawingBackend>(
    area: &DrawingArea<B, Shift>,
    title: &str,
    y_desc: &str,
    segments: &[&str],
    bars: &[(String, Vec<f64>)],
) -> DrawResult<B> {
    let top = bars.iter().map(|(_, v)| v.iter().sum::<f64>()).fold(0.0, f64::max);
    let labels: Vec<String> = bars.iter().map(|(l, _)| l.clone()).collect();
    let mut chart = case_slots(area, title, y_desc, &labels, top)?;
    for (j, name) in segments.iter().enumerate() {
        let style = color(j).filled();
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let below: f64 = v[..j].iter().sum();
                let x = i as f64;
                Rectangle::new([(x - BAR_HALF_WIDTH, below), (x + BAR_HALF_WIDTH, below + v.get(j).copied().unwrap_or(0.0))], style)
            }))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, LABEL_SIZE)).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()
}

/// Lines over a numeric x axis, one per series, with a legend.
pub fn line_chart<B: DrawingBackend>(
    area: &DrawingArea<B, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> DrawResult<B> {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x_min, x_max) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (x_min, x_max) = if x_min.is_finite() && x_max > x_min { (x_min, x_max) } else { (0.0, 1.0) };
    let y_top = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0f64, f64::max);
    let y_max = if y_top > 0.0 { y_top * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, TITLE_SIZE))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_min..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_style((FONT, LABEL_SIZE))
        .y_label_style((FONT, LABEL_SIZE))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
        // plotters draws thick polylines with sharp turns as long spikes: dense series get 1 px.
        let width = if s.points.len() > DENSE_SERIES { 1 } else { 2 };
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(width)))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        if s.points.len() <= 12 {
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, LABEL_SIZE))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Labelled points over numeric axes (the y axis may go below zero), with the Pareto frontier
/// (points no other point beats on both axes, lower being better) joined by a dashed line.
pub fn pareto_chart<B: DrawingBackend>(
    area: &DrawingArea<B, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    points: &[(String, f64, f64)],
) -> DrawResult<B> {
    points_chart(area, title, x_desc, y_desc, points, true)
}

/// Labelled points over numeric axes, with the Pareto frontier where lower is better on both
/// (`frontier`), or without it (latency against throughput, where it is not).
pub fn points_chart<B: DrawingBackend>(
    area: &DrawingArea<B, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    points: &[(String, f64, f64)],
    frontier: bool,
) -> DrawResult<B> {
    let finite: Vec<&(String, f64, f64)> = points.iter().filter(|p| p.1.is_finite() && p.2.is_finite()).collect();
    let x_max = finite.iter().map(|p| p.1).fold(0.0f64, f64::max) * 1.15 + 1e-9;
    let (y_lo, y_hi) = finite.iter().fold((0.0f64, 0.0f64), |(lo, hi), p| (lo.min(p.2), hi.max(p.2)));
    let pad = ((y_hi - y_lo) * 0.1).max(0.1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, TITLE_SIZE))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_lo - pad)..(y_hi + pad))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_style((FONT, LABEL_SIZE))
        .y_label_style((FONT, LABEL_SIZE))
        .draw()?;
    if frontier {
        let mut line: Vec<(f64, f64)> = finite
            .iter()
            .filter(|p| !finite.iter().any(|q| q.1 <= p.1 && q.2 <= p.2 && (q.1 < p.1 || q.2 < p.2)))
            .map(|p| (p.1, p.2))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart.draw_series(DashedLineSeries::new(line, 6, 4, BLACK.stroke_width(1)))?;
    }
    for (i, p) in finite.iter().enumerate() {
        let c = color(i);
        chart.draw_series(std::iter::once(
            EmptyElement::at((p.1, p.2))
                + Circle::new((0, 0), 5, c.filled())
                + Text::new(p.0.clone(), (7, -7), (FONT, BAR_LABEL_SIZE).into_font().color(&c)),
        ))?;
    }
    Ok(())
}
