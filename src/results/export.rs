//! Exporters: views over a `Report` that return bytes and do no I/O (the sink writes). The
//! formats are the same for every command; the columns come from the command's view
//! (`views`): the human table and Markdown share one, CSV has its own with units in the
//! column names; JSON is the report itself; JSONL a line per case.

use super::schema::Report;
use super::views::{self, Table};
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

struct TextTable {
    markdown: bool,
}

impl TextTable {
    fn render_table(&self, table: &Table) -> String {
        let widths: Vec<usize> = (0..table.headers.len())
            .map(|i| table.rows.iter().map(|r| r[i].chars().count()).chain([table.headers[i].chars().count()]).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| -> String {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            if self.markdown {
                format!("| {} |\n", padded.join(" | "))
            } else {
                format!("{}\n", padded.join("  ").trim_end())
            }
        };
        let mut out = line(&table.headers);
        if self.markdown {
            out += &format!("|{}|\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
        } else {
            out += &format!("{}\n", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        }
        for r in &table.rows {
            out += &line(r);
        }
        out
    }
}

impl Exporter for TextTable {
    fn render(&self, report: &Report) -> Result<Vec<u8>> {
        Ok(self.render_table(&views::human(report)).into_bytes())
    }
}

struct Csv;

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Exporter for Csv {
    fn render(&self, report: &Report) -> Result<Vec<u8>> {
        let table = views::csv(report);
        let mut out = table.headers.join(",") + "\n";
        for row in &table.rows {
            out += &row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
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
