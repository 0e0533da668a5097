//! What each command's tables show: one `Table` (headers and cells) per command for people
//! (the text and Markdown exporters) and one for machines (CSV, units in column names).
//! Exporters own the formats; views own the columns, so a new command adds one file here and
//! gets every format.

mod batch;
mod compare;
mod evaluate;
mod http;
mod kvcache;
mod quantize;
mod sled;
mod specdec;

use super::schema::{CaseResult, CaseStatus, CommandName, Report};

/// Headers and rows of cells, all rows as long as the headers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self { headers: headers.iter().map(|h| h.to_string()).collect(), rows: vec![] }
    }

    /// Adds a row, padding a short one (a case that did not run) with empty cells.
    pub fn push(&mut self, mut cells: Vec<String>) {
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Adds a column computed per row index, when any row has a value for it.
    pub fn push_column_if_any(&mut self, header: &str, cells: Vec<Option<String>>) {
        if cells.iter().any(Option::is_some) {
            self.headers.push(header.into());
            for (row, cell) in self.rows.iter_mut().zip(cells) {
                row.push(cell.unwrap_or_else(|| "-".into()));
            }
        }
    }
}

/// The human table (text and Markdown).
pub fn human(report: &Report) -> Table {
    match report.command {
        CommandName::Compare => compare::human(report),
        CommandName::Kvcache => kvcache::human(report),
        CommandName::Specdec => specdec::human(report),
        CommandName::Quantize => quantize::human(report),
        CommandName::Evaluate => evaluate::human(report),
        CommandName::Sled => sled::human(report),
        CommandName::Http => http::human(report),
        CommandName::Batch => batch::human(report),
    }
}

/// The CSV table: one row per case, raw numbers, units in the column names.
pub fn csv(report: &Report) -> Table {
    match report.command {
        CommandName::Compare => compare::csv(report),
        CommandName::Kvcache => kvcache::csv(report),
        CommandName::Specdec => specdec::csv(report),
        CommandName::Quantize => quantize::csv(report),
        CommandName::Evaluate => evaluate::csv(report),
        CommandName::Sled => sled::csv(report),
        CommandName::Http => http::csv(report),
        CommandName::Batch => batch::csv(report),
    }
}

/// "failed: why" or "skipped: why" for a case that did not run; `None` for one that did.
pub fn not_run(case: &CaseResult) -> Option<String> {
    let what = match case.status {
        CaseStatus::Ok if case.summary.is_some() => return None,
        CaseStatus::Ok => "no runs",
        CaseStatus::Failed => "failed",
        CaseStatus::Skipped => "skipped",
    };
    Some(format!("{what}: {}", case.reason.as_deref().unwrap_or("no reason recorded")))
}

/// Bytes in the largest binary unit that keeps the number at or above 1.
pub fn bytes(b: f64) -> String {
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

/// A CSV cell for an optional number (empty when absent).
pub fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| format!("{x}"))
}

pub const MIB: f64 = (1u64 << 20) as f64;
