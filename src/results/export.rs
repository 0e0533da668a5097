//! Exporters: views over a `Report` that return bytes and do no I/O (the sink writes). The
//! human table and Markdown share one set of rows; CSV has one row per case with units in
//! the column names; JSON is the report itself; JSONL a line per case.

use super::relative::relative;
use super::schema::{CaseResult, CaseStatus, Report};
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// `-o` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Table,
    Md,
    Csv,
    Json,
    Jsonl,
}

pub trait Exporter {
    fn render(&self, report: &Report) -> Result<Vec<u8>>;
}

/// The one factory from format to exporter.
pub fn exporter(format: OutputFormat) -> Box<dyn Exporter> {
    match format {
        OutputFormat::Table => Box::new(TextTable { markdown: false }),
        OutputFormat::Md => Box::new(TextTable { markdown: true }),
        OutputFormat::Csv => Box::new(Csv),
        OutputFormat::Json => Box::new(Json),
        OutputFormat::Jsonl => Box::new(Jsonl),
    }
}

const HEADERS: [&str; 11] = [
    "model",
    "method",
    "new tokens",
    "TTFT ms",
    "TPOT ms",
    "decode tok/s",
    "speed vs standard",
    "KV",
    "KV saved",
    "peak RSS MiB",
    "agreement",
];

/// Bytes in the largest binary unit that keeps the number at or above 1.
fn bytes(b: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// One row of the human table: medians and means with spread, relative columns vs standard.
fn row(report: &Report, case: &CaseResult) -> Vec<String> {
    let p = &case.params;
    let mut cells = vec![p.model.clone(), p.label(), p.max_new_tokens.to_string()];
    match (&case.status, &case.summary) {
        (CaseStatus::Ok, Some(s)) => {
            let rel = relative(report, case);
            cells.push(format!("{:.1}", s.ttft_ms.median));
            cells.push(format!("{:.2} ± {:.2}", s.tpot_ms.median, s.tpot_ms.std));
            cells.push(format!("{:.1} ± {:.1}", s.decode_tokens_per_s.mean, s.decode_tokens_per_s.std));
            let is_standard = p.method == "standard";
            cells.push(match rel.and_then(|r| r.speed) {
                _ if is_standard => "1.00x".into(),
                Some(r) => format!("{:.2}x [{:.2}, {:.2}]", r.ratio, r.low, r.high),
                None => "-".into(),
            });
            cells.push(bytes(s.kv_cache_bytes.mean));
            cells.push(match rel {
                Some(r) if p.method != "standard" => format!("{:.1}%", r.kv_reduction_pct),
                _ => "-".into(),
            });
            cells.push(format!("{:.0}", s.peak_rss_bytes.max / (1u64 << 20) as f64));
            cells.push(
                case.quality
                    .as_ref()
                    .and_then(|q| q.agreement_with_standard)
                    .map_or("-".into(), |a| format!("{:.1}%", a * 100.0)),
            );
        }
        _ => {
            cells.push(format!("failed: {}", case.error.as_deref().unwrap_or("unknown")));
            cells.extend(std::iter::repeat_n(String::new(), HEADERS.len() - 4));
        }
    }
    cells
}

struct TextTable {
    markdown: bool,
}

impl Exporter for TextTable {
    fn render(&self, report: &Report) -> Result<Vec<u8>> {
        let mut headers: Vec<String> = HEADERS.iter().map(|s| s.to_string()).collect();
        let with_ppl = report.cases.iter().any(|c| c.quality.as_ref().is_some_and(|q| q.perplexity.is_some()));
        let mut rows: Vec<Vec<String>> = report.cases.iter().map(|c| row(report, c)).collect();
        if with_ppl {
            headers.push("perplexity".into());
            for (r, c) in rows.iter_mut().zip(&report.cases) {
                r.push(c.quality.as_ref().and_then(|q| q.perplexity).map_or("-".into(), |p| format!("{p:.2}")));
            }
        }
        let widths: Vec<usize> = (0..headers.len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| -> String {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            if self.markdown {
                format!("| {} |\n", padded.join(" | "))
            } else {
                format!("{}\n", padded.join("  ").trim_end())
            }
        };
        let mut out = line(&headers);
        if self.markdown {
            out += &format!("|{}|\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
        } else {
            out += &format!("{}\n", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        }
        for r in &rows {
            out += &line(r);
        }
        Ok(out.into_bytes())
    }
}

struct Csv;

const CSV_HEADERS: [&str; 22] = [
    "case_id",
    "model",
    "method",
    "window",
    "stride",
    "max_new_tokens",
    "kv_cache",
    "status",
    "runs",
    "median_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "p99_itl_ms",
    "avg_ts",
    "stddev_ts",
    "mean_prefill_tokens_per_s",
    "mean_kv_cache_bytes",
    "max_peak_rss_bytes",
    "speed_ratio_vs_standard",
    "kv_reduction_pct",
    "agreement_with_standard",
    "perplexity",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Exporter for Csv {
    fn render(&self, report: &Report) -> Result<Vec<u8>> {
        let mut out = CSV_HEADERS.join(",") + "\n";
        let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
        for case in &report.cases {
            let p = &case.params;
            let s = case.summary.as_ref();
            let rel = relative(report, case);
            let q = case.quality.as_ref();
            let fields = [
                case.case_id.clone(),
                p.model.clone(),
                p.method.clone(),
                p.window.map_or(String::new(), |w| w.to_string()),
                p.stride.map_or(String::new(), |w| w.to_string()),
                p.max_new_tokens.to_string(),
                p.kv_cache.clone(),
                format!("{:?}", case.status).to_lowercase(),
                case.runs.len().to_string(),
                opt(s.map(|s| s.median_ttft_ms)),
                opt(s.map(|s| s.mean_tpot_ms)),
                opt(s.map(|s| s.median_tpot_ms)),
                opt(s.map(|s| s.p99_itl_ms)),
                opt(s.map(|s| s.avg_ts)),
                opt(s.map(|s| s.stddev_ts)),
                opt(s.map(|s| s.prefill_tokens_per_s.mean)),
                opt(s.map(|s| s.kv_cache_bytes.mean)),
                opt(s.map(|s| s.peak_rss_bytes.max)),
                opt(rel.and_then(|r| r.speed).map(|r| r.ratio)),
                opt(rel.map(|r| r.kv_reduction_pct)),
                opt(q.and_then(|q| q.agreement_with_standard)),
                opt(q.and_then(|q| q.perplexity)),
            ];
            out += &fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
            out += "\n";
        }
        Ok(out.into_bytes())
    }
}

struct Json;

impl Exporter for Json {
    fn render(&self, report: &Report) -> Result<Vec<u8>> {
        let mut out = serde_json::to_vec_pretty(report)?;
        out.push(b'\n');
        Ok(out)
    }
}

struct Jsonl;

impl Exporter for Jsonl {
    fn render(&self, report: &Report) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for case in &report.cases {
            out.extend(serde_json::to_vec(case)?);
            out.push(b'\n');
        }
        Ok(out)
    }
}
