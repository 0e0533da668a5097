//! The multi-query comparison's charts (issue 16, seed 002's figures): time, token, memory and
//! efficiency metrics per case; a 9-panel comprehensive dashboard; quality by query and case;
//! the input/output pairs laid out per query and case; a performance dashboard. Drawn for a
//! compare run with input-side methods or the built-in queries, from the results alone.

use super::data::{ok_cases, Bar};
use super::style::{BAR_LABEL_SIZE, FONT, LABEL_SIZE, TITLE_SIZE};
use super::{draw, render_figure, ChartKind, Figure, ImageFormat, GIB, MIB};
use crate::measure::stats::Summary;
use crate::results::schema::{CaseResult, CommandSettings, CompareQuality, Report, RunRecord};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

type DrawResult<B> = Result<(), DrawingAreaErrorKind<<B as DrawingBackend>::ErrorType>>;

/// Whether a report is a multi-query comparison: input-side methods ran, or the prompts are
/// the built-in queries.
pub fn applies(report: &Report) -> bool {
    let queries = matches!(&report.settings.command_settings, CommandSettings::Compare(s) if !s.query_types.is_empty());
    queries || ok_cases(report).any(|c| c.params.as_compare().is_some_and(|p| p.input.is_some()))
}

/// Cases are named by what differs: an all_combined study's parts by name; the input method
/// (and sparsity, where cases differ in it) where every case decodes the same way; else
/// compare's full label.
fn label(report: &Report, case: &CaseResult) -> String {
    let methods: std::collections::BTreeSet<&str> = ok_cases(report)
        .filter_map(|c| c.params.as_compare())
        .map(|p| p.method.as_str())
        .collect();
    let sparsities: std::collections::BTreeSet<Option<&str>> = ok_cases(report)
        .filter_map(|c| c.params.as_compare())
        .map(|p| p.sparsity.as_deref())
        .collect();
    match case.params.as_compare() {
        // An all_combined study: its parts by name (`sparsity teal:0.25`, `kv hybrid:48`).
        Some(p) if p.part.is_some() => match p.part.as_deref() {
            Some("input") => p.input.clone().unwrap_or_default(),
            Some("sparsity") => p.sparsity.clone().unwrap_or_default(),
            Some("kv") => p.kv_cache.clone(),
            other => other.unwrap_or_default().to_string(),
        },
        Some(p) if methods.len() == 1 && p.window.is_none() && p.k.is_none() => {
            let mut input = p.input.clone().unwrap_or_else(|| "as written".into());
            if sparsities.len() > 1 {
                input += &format!(" {}", p.sparsity.as_deref().unwrap_or("dense"));
            }
            if ok_cases(report)
                .map(|c| c.params.max_new_tokens())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1
            {
                format!("{input} n={}", p.max_new_tokens)
            } else {
                input
            }
        }
        _ => super::data::case_label(report, case),
    }
}

fn quality(case: &CaseResult) -> Option<&CompareQuality> {
    case.quality.as_ref()?.as_compare()
}

/// A bar per case of a per-run metric (mean and sample std).
fn run_bars(report: &Report, metric: fn(&RunRecord) -> f64) -> Vec<Bar> {
    ok_cases(report)
        .filter_map(|c| {
            let s = Summary::of(&c.runs.iter().map(metric).collect::<Vec<_>>())?;
            Some(Bar {
                label: label(report, c),
                value: s.mean,
                spread: s.std,
            })
        })
        .collect()
}

/// A bar per case of a per-case value (no spread); cases without it are left out.
fn case_bars(report: &Report, metric: impl Fn(&CaseResult) -> Option<f64>) -> Vec<Bar> {
    ok_cases(report)
        .filter_map(|c| {
            Some(Bar {
                label: label(report, c),
                value: metric(c).filter(|v| v.is_finite())?,
                spread: 0.0,
            })
        })
        .collect()
}

fn ttft(r: &RunRecord) -> f64 {
    r.ttft_ms
}
fn tpot(r: &RunRecord) -> f64 {
    r.tpot_ms
}
fn decode(r: &RunRecord) -> f64 {
    r.decode_tokens_per_s
}
fn e2e_s(r: &RunRecord) -> f64 {
    r.e2e_ms / 1e3
}
fn prompt_tokens(r: &RunRecord) -> f64 {
    r.prompt_tokens as f64
}
fn generated_tokens(r: &RunRecord) -> f64 {
    r.generated_tokens as f64
}
fn rss_mib(r: &RunRecord) -> f64 {
    r.peak_rss_bytes as f64 / MIB
}
fn kv_mib(r: &RunRecord) -> f64 {
    r.kv_cache_bytes as f64 / MIB
}
fn prefill(r: &RunRecord) -> f64 {
    r.prefill_tokens_per_s
}
fn per_gib(r: &RunRecord) -> f64 {
    if r.peak_rss_bytes > 0 {
        r.decode_tokens_per_s / (r.peak_rss_bytes as f64 / GIB)
    } else {
        0.0
    }
}

/// One panel: a title, a y-axis name and its bars.
type Panel = (&'static str, &'static str, Vec<Bar>);

fn panels(report: &Report, which: ChartKind) -> Vec<Panel> {
    let reduction = |c: &CaseResult| Some(quality(c)?.input_reduction.unwrap_or(0.0) * 100.0);
    let keywords = |c: &CaseResult| quality(c)?.keyword_hit_rate.map(|k| k * 100.0);
    let rouge = |c: &CaseResult| quality(c)?.rouge_l_vs_standard;
    let weights = |c: &CaseResult| quality(c)?.weight_bytes.map(|b| b as f64 / MIB);
    match which {
        ChartKind::TimeMetrics => vec![
            (
                "Time to first token (mean ± std)",
                "ms",
                run_bars(report, ttft),
            ),
            ("Time per output token", "ms", run_bars(report, tpot)),
            ("End-to-end latency", "s", run_bars(report, e2e_s)),
        ],
        ChartKind::TokenMetrics => vec![
            (
                "Prompt tokens the model read (per prompt)",
                "tokens",
                run_bars(report, prompt_tokens),
            ),
            (
                "Input tokens saved against the prompts as written",
                "%",
                case_bars(report, reduction),
            ),
            (
                "Generated tokens (per prompt)",
                "tokens",
                run_bars(report, generated_tokens),
            ),
        ],
        ChartKind::MemoryMetrics => vec![
            (
                "Peak resident memory (process)",
                "MiB",
                run_bars(report, rss_mib),
            ),
            (
                "KV cache at the end of a run",
                "MiB",
                run_bars(report, kv_mib),
            ),
            ("Weights the case ran on", "MiB", case_bars(report, weights)),
        ],
        ChartKind::EfficiencyMetrics => vec![
            ("Decode throughput", "tokens/s", run_bars(report, decode)),
            ("Prefill throughput", "tokens/s", run_bars(report, prefill)),
            (
                "Decode tokens/s per GiB of peak RSS",
                "tokens/s per GiB",
                run_bars(report, per_gib),
            ),
        ],
        _ => vec![
            ("Time to first token", "ms", run_bars(report, ttft)),
            ("Time per output token", "ms", run_bars(report, tpot)),
            ("Decode throughput", "tokens/s", run_bars(report, decode)),
            ("End-to-end latency", "s", run_bars(report, e2e_s)),
            (
                "Prompt tokens (per prompt)",
                "tokens",
                run_bars(report, prompt_tokens),
            ),
            (
                "Peak resident memory (process)",
                "MiB",
                run_bars(report, rss_mib),
            ),
            ("KV cache at the end", "MiB", run_bars(report, kv_mib)),
            (
                "Expected keywords in the output",
                "%",
                case_bars(report, keywords),
            ),
            (
                "ROUGE-L F1 against standard",
                "F1",
                case_bars(report, rouge),
            ),
        ],
    }
}

/// The built-in queries' names ("1 definition", ...), else the prompts' numbers.
fn query_names(report: &Report) -> Vec<String> {
    let CommandSettings::Compare(s) = &report.settings.command_settings else {
        return vec![];
    };
    (0..s.prompts.len())
        .map(|i| {
            s.query_types
                .get(i)
                .map_or_else(|| format!("prompt {}", i + 1), |t| format!("{} {t}", i + 1))
        })
        .collect()
}

fn keywords(report: &Report) -> Vec<Vec<String>> {
    match &report.settings.command_settings {
        CommandSettings::Compare(s) => s.keywords.clone(),
        _ => vec![],
    }
}

fn first_text(case: &CaseResult, prompt: usize) -> Option<&str> {
    case.runs
        .iter()
        .find(|r| r.prompt_index == prompt && r.repetition == 0)
        .map(|r| r.text.as_str())
}

/// The reference case: the run's baseline (`relative::baseline`), same model and length.
fn reference<'a>(report: &'a Report, case: &CaseResult) -> Option<&'a CaseResult> {
    crate::results::relative::baseline(report, case)
}

/// Per query, per case: (keyword hit %, ROUGE-L F1 against standard's output to that query).
fn per_query(report: &Report) -> (Vec<String>, Vec<(String, Vec<(f64, f64)>)>) {
    let names = query_names(report);
    let keywords = keywords(report);
    let rouge = crate::metrics::rouge::Rouge::default();
    let cases: Vec<(String, Vec<(f64, f64)>)> = ok_cases(report)
        .map(|c| {
            let values = (0..names.len())
                .map(|i| {
                    let text = first_text(c, i).unwrap_or("");
                    let hit = keywords.get(i).map_or(f64::NAN, |k| {
                        crate::metrics::diversity::keyword_coverage(text, k) * 100.0
                    });
                    let r = reference(report, c)
                        .and_then(|s| first_text(s, i))
                        .map_or(f64::NAN, |std| rouge.score(std, text).rouge_l.fmeasure);
                    (hit, r)
                })
                .collect();
            (label(report, c), values)
        })
        .collect();
    (names, cases)
}

struct QueriesFigure<'a> {
    chart: ChartKind,
    report: &'a Report,
}

impl Figure for QueriesFigure<'_> {
    fn draw<B: DrawingBackend>(&self, root: &DrawingArea<B, Shift>) -> DrawResult<B> {
        root.fill(&WHITE)?;
        match self.chart {
            ChartKind::QualityByQuery => quality_by_query(self.report, root),
            ChartKind::InputOutput => input_output(self.report, root),
            ChartKind::PerformanceDashboard => performance(self.report, root),
            kind => {
                let list = panels(self.report, kind);
                let grid = if list.len() == 9 {
                    (3, 3)
                } else {
                    (1, list.len())
                };
                for (area, (title, y, bars)) in root.split_evenly(grid).iter().zip(&list) {
                    draw::bar_chart(area, title, y, bars)?;
                }
                Ok(())
            }
        }
    }
}

fn quality_by_query<B: DrawingBackend>(
    report: &Report,
    root: &DrawingArea<B, Shift>,
) -> DrawResult<B> {
    let (names, cases) = per_query(report);
    let groups: Vec<&str> = cases.iter().map(|(l, _)| l.as_str()).collect();
    let halves = root.split_evenly((2, 1));
    for (area, (title, y, pick)) in halves.iter().zip([
        (
            "Expected keywords in the output, by query",
            "% of keywords",
            0usize,
        ),
        (
            "ROUGE-L F1 against standard decoding's output, by query",
            "F1",
            1,
        ),
    ]) {
        let bars: Vec<(String, Vec<(f64, f64, f64)>)> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let values = cases
                    .iter()
                    .map(|(_, v)| {
                        let x = if pick == 0 { v[i].0 } else { v[i].1 };
                        let x = if x.is_finite() { x } else { 0.0 };
                        (x, x, x)
                    })
                    .collect();
                (name.clone(), values)
            })
            .collect();
        draw::grouped_interval_chart(area, title, y, &groups, &bars)?;
    }
    Ok(())
}

fn performance<B: DrawingBackend>(report: &Report, root: &DrawingArea<B, Shift>) -> DrawResult<B> {
    let areas = root.split_evenly((2, 2));
    let decode_mean = |c: &CaseResult| {
        Summary::of(&c.runs.iter().map(decode).collect::<Vec<_>>()).map(|s| s.mean)
    };
    let speedup = |c: &CaseResult| Some(decode_mean(c)? / decode_mean(reference(report, c)?)?);
    draw::bar_chart(
        &areas[0],
        "Decode speed against standard on the written prompts",
        "x",
        &case_bars(report, speedup),
    )?;
    let ttft_mean =
        |c: &CaseResult| Summary::of(&c.runs.iter().map(ttft).collect::<Vec<_>>()).map(|s| s.mean);
    let prefill_saving =
        |c: &CaseResult| Some(100.0 * (1.0 - ttft_mean(c)? / ttft_mean(reference(report, c)?)?));
    draw::bar_chart(
        &areas[1],
        "Time to first token saved against the written prompts",
        "%",
        &case_bars(report, prefill_saving),
    )?;
    let points = |x: &dyn Fn(&CaseResult) -> Option<f64>,
                  y: &dyn Fn(&CaseResult) -> Option<f64>|
     -> Vec<(String, f64, f64)> {
        ok_cases(report)
            .filter_map(|c| Some((label(report, c), x(c)?, y(c)?)))
            .collect()
    };
    let rouge = |c: &CaseResult| quality(c)?.rouge_l_vs_standard;
    draw::points_chart(
        &areas[2],
        "Fidelity against speed",
        "decode tokens/s",
        "ROUGE-L F1 vs standard",
        &points(&decode_mean, &rouge),
        false,
    )?;
    let saved = |c: &CaseResult| Some(quality(c)?.input_reduction.unwrap_or(0.0) * 100.0);
    let hits = |c: &CaseResult| quality(c)?.keyword_hit_rate.map(|k| k * 100.0);
    draw::points_chart(
        &areas[3],
        "Keywords kept against input tokens saved",
        "input tokens saved (%)",
        "keywords in output (%)",
        &points(&saved, &hits),
        false,
    )
}

/// Lines of `text` no wider than `width` pixels in `style`, at most `max_lines`; the last
/// line ends in an ellipsis where text was cut.
fn wrap<B: DrawingBackend>(
    area: &DrawingArea<B, Shift>,
    text: &str,
    style: &TextStyle,
    width: u32,
    max_lines: usize,
) -> Vec<String> {
    let fits = |s: &str| {
        area.estimate_text_size(s, style)
            .map_or(true, |(w, _)| w <= width)
    };
    let mut lines: Vec<String> = vec![];
    let mut line = String::new();
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut cut = false;
    for (i, word) in words.iter().enumerate() {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if fits(&candidate) {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // A word wider than the cell is cut by characters.
        line = word.to_string();
        while !fits(&line) && line.chars().count() > 1 {
            line.pop();
        }
        if lines.len() == max_lines {
            cut = i < words.len();
            break;
        }
    }
    if !line.is_empty() && lines.len() < max_lines {
        lines.push(line);
    } else if !line.is_empty() {
        cut = true;
    }
    if cut {
        if let Some(last) = lines.last_mut() {
            while !fits(&format!("{last}…")) && !last.is_empty() {
                last.pop();
            }
            last.push('…');
        }
    }
    lines
}

/// Rows per query, columns per case: the prompt each case gave the model and what it wrote.
fn input_output<B: DrawingBackend>(report: &Report, root: &DrawingArea<B, Shift>) -> DrawResult<B> {
    let names = query_names(report);
    let cases: Vec<&CaseResult> = ok_cases(report).collect();
    let CommandSettings::Compare(settings) = &report.settings.command_settings else {
        return Ok(());
    };
    let (w, h) = root.dim_in_pixel();
    let (left, top, caption) = (150i32, 70i32, 34i32);
    let col_w = (w as i32 - left - 10) / cases.len().max(1) as i32;
    let row_h = (h as i32 - top - 10) / names.len().max(1) as i32;
    let title = TextStyle::from((FONT, TITLE_SIZE).into_font());
    let head = TextStyle::from((FONT, LABEL_SIZE).into_font().style(FontStyle::Bold));
    let body = TextStyle::from((FONT, BAR_LABEL_SIZE).into_font());
    let input_style = TextStyle::from(
        (FONT, BAR_LABEL_SIZE)
            .into_font()
            .color(&RGBColor(90, 90, 90)),
    );
    root.draw_text(
        "Input and output per query (first repetition; grey: the prompt as the model saw it)",
        &title,
        (10, 8),
    )?;
    let line_h = BAR_LABEL_SIZE as i32 + 3;
    for (j, case) in cases.iter().enumerate() {
        let x = left + j as i32 * col_w;
        for (k, line) in wrap(root, &label(report, case), &head, (col_w - 10) as u32, 2)
            .iter()
            .enumerate()
        {
            root.draw_text(
                line,
                &head,
                (x + 5, caption + k as i32 * (LABEL_SIZE as i32 + 2)),
            )?;
        }
    }
    let lines_per_cell = ((row_h - 8) / line_h).max(2) as usize;
    let input_lines = (lines_per_cell / 3).max(1);
    for (i, name) in names.iter().enumerate() {
        let y = top + i as i32 * row_h;
        root.draw(&Rectangle::new(
            [(5, y), (w as i32 - 5, y + row_h)],
            BLACK.stroke_width(1),
        ))?;
        for (k, line) in wrap(root, name, &head, (left - 15) as u32, 3)
            .iter()
            .enumerate()
        {
            root.draw_text(
                line,
                &head,
                (10, y + 6 + k as i32 * (LABEL_SIZE as i32 + 2)),
            )?;
        }
        for (j, case) in cases.iter().enumerate() {
            let x = left + j as i32 * col_w;
            root.draw(&PathElement::new(
                vec![(x, y), (x, y + row_h)],
                BLACK.mix(0.4).stroke_width(1),
            ))?;
            let input = quality(case)
                .and_then(|q| q.inputs.get(i))
                .or(settings.prompts.get(i))
                .map_or("", String::as_str);
            let output = first_text(case, i).unwrap_or("");
            let mut yy = y + 5;
            for line in wrap(root, input, &input_style, (col_w - 12) as u32, input_lines) {
                root.draw_text(&line, &input_style, (x + 6, yy))?;
                yy += line_h;
            }
            yy += 3;
            let room = ((y + row_h - yy - 4) / line_h).max(1) as usize;
            for line in wrap(root, output, &body, (col_w - 12) as u32, room) {
                root.draw_text(&line, &body, (x + 6, yy))?;
                yy += line_h;
            }
        }
    }
    Ok(())
}

/// Renders one of `ChartKind::QUERIES`.
pub fn render(chart: ChartKind, report: &Report, format: ImageFormat) -> Result<Vec<u8>> {
    let size = match chart {
        ChartKind::ComprehensiveDashboard => (1800, 1300),
        ChartKind::PerformanceDashboard => (1600, 1100),
        ChartKind::QualityByQuery => (1400, 1000),
        ChartKind::InputOutput => (1900, (70 + 240 * query_names(report).len() as u32).max(560)),
        _ => (1800, 560),
    };
    render_figure(&QueriesFigure { chart, report }, size, chart.name(), format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_fits_the_width_and_marks_cuts() {
        super::super::style::register_font();
        let mut svg = String::new();
        let root = SVGBackend::with_string(&mut svg, (400, 200)).into_drawing_area();
        let style = TextStyle::from((FONT, 12).into_font());
        let text =
            "one two three four five six seven eight nine ten eleven twelve thirteen fourteen";
        let all = wrap(&root, text, &style, 120, 20);
        assert!(all.len() > 2 && !all.iter().any(|l| l.ends_with('…')));
        assert_eq!(all.join(" "), text, "nothing lost when it fits");
        for line in &all {
            assert!(
                root.estimate_text_size(line, &style).unwrap().0 <= 120,
                "{line}"
            );
        }
        let cut = wrap(&root, text, &style, 120, 2);
        assert_eq!(cut.len(), 2);
        assert!(cut[1].ends_with('…'), "{cut:?}");
        assert!(wrap(&root, "", &style, 120, 2).is_empty());
    }
}
