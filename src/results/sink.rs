//! Writing and reading results, for every command. One directory per run: `results.jsonl`
//! gets a line per case as it finishes, `results.json` is rewritten (temp file + rename) after
//! every case, so a crash or Ctrl-C loses only the case in flight and never leaves a
//! half-written file. Reading converts older schema versions (`convert`).

use super::schema::{CaseResult, CaseStatus, Report, SCHEMA_VERSION};
use crate::error::LlmbenchError;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const RESULTS_JSON: &str = "results.json";
pub const RESULTS_JSONL: &str = "results.jsonl";

/// Writes `bytes` to `path` atomically: a temp file in the same directory, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file().sync_all().ok();
    // Temp files are private (0600); results are ordinary files others may read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).ok();
    }
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// A run directory being written. A directory this run created is removed again when the
/// sink is dropped before any case was recorded and before `keep` (bad input found after
/// the directory was made leaves nothing behind).
pub struct Sink {
    dir: PathBuf,
    report: Report,
    /// Created by this run (not resumed) and not yet holding a case or marked to keep.
    discard_if_empty: bool,
}

impl Sink {
    /// Starts a new run directory. Refuses one that already holds results (use --resume).
    pub fn create(dir: &Path, report: Report) -> Result<Self> {
        if dir.join(RESULTS_JSON).exists() || dir.join(RESULTS_JSONL).exists() {
            crate::bail_input!(
                "--out {}: already holds results; pass --resume {} to continue it, or another --out",
                dir.display(),
                dir.display()
            );
        }
        let existed = dir.exists();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let sink = Self { dir: dir.to_path_buf(), report, discard_if_empty: !existed };
        sink.write_report()?;
        Ok(sink)
    }

    /// Reopens a run directory: cases that finished ok are kept and reported as done; failed
    /// or unfinished ones will run again.
    pub fn resume(dir: &Path, mut report: Report) -> Result<(Self, HashSet<String>)> {
        let previous = load_report(dir).map_err(|e| e.context(format!("--resume {}", dir.display())))?;
        if previous.command != report.command {
            crate::bail_input!(
                "--resume {}: holds {} results, not {}: resume it with `llmbench {}`",
                dir.display(),
                previous.command.name(),
                report.command.name(),
                previous.command.name()
            );
        }
        let jsonl = dir.join(RESULTS_JSONL);
        let text = std::fs::read_to_string(&jsonl).map_err(|e| {
            LlmbenchError::invalid(format!("--resume {}: cannot read {} ({e})", dir.display(), jsonl.display()))
        })?;
        let mut done = HashSet::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            match serde_json::from_str::<CaseResult>(line) {
                Ok(case) if case.status == CaseStatus::Ok && case.params.command() == report.command => {
                    done.insert(case.case_id.clone());
                    report.cases.retain(|c| c.case_id != case.case_id);
                    report.cases.push(case);
                }
                Ok(_) => {}
                // The last line of an interrupted write is incomplete: that case simply runs again.
                Err(e) => tracing::warn!("{}:{}: skipping an unreadable line ({e})", jsonl.display(), i + 1),
            }
        }
        let sink = Self { dir: dir.to_path_buf(), report, discard_if_empty: false };
        sink.write_report()?;
        Ok((sink, done))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Keeps the directory even if no case was recorded (a finished run with an empty plan).
    pub fn keep(&mut self) {
        self.discard_if_empty = false;
    }

    /// Records a finished case: one JSONL line, then the whole report, atomically.
    pub fn record(&mut self, case: CaseResult) -> Result<()> {
        let mut line = serde_json::to_vec(&case)?;
        line.push(b'\n');
        let path = self.dir.join(RESULTS_JSONL);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(&line).with_context(|| format!("appending to {}", path.display()))?;
        file.sync_data().ok();
        self.discard_if_empty = false;
        self.report.cases.retain(|c| c.case_id != case.case_id);
        self.report.cases.push(case);
        self.write_report()
    }

    /// Writes a file into the run directory atomically.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join(name), bytes)
    }

    fn write_report(&self) -> Result<()> {
        self.write_file(RESULTS_JSON, &serde_json::to_vec_pretty(&self.report)?)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.discard_if_empty {
            let _ = std::fs::remove_file(self.dir.join(RESULTS_JSON));
            let _ = std::fs::remove_file(self.dir.join(RESULTS_JSONL));
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// The file `plot`, `diff` and `--resume` read in a run directory: results.json, or the
/// kvcache.json an older kvcache run wrote.
pub fn report_file(path: &Path) -> PathBuf {
    if !path.is_dir() {
        return path.to_path_buf();
    }
    let current = path.join(RESULTS_JSON);
    let kvcache_v1 = path.join("kvcache.json");
    if !current.exists() && kvcache_v1.exists() {
        kvcache_v1
    } else {
        current
    }
}

/// Reads a results file (or the one inside a run directory), converting older schema versions.
pub fn load_report(path: &Path) -> Result<Report> {
    let file = report_file(path);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| LlmbenchError::invalid(format!("{}: cannot read ({e})", file.display())))?;
    parse_report(&text, &file)
}

/// Parses the text of a results file; `file` names it in errors. Every failure is an input
/// error (exit 2), never a panic: `plot` and `diff` read files a user hands them (fuzzed).
pub fn parse_report(text: &str, file: &Path) -> Result<Report> {
    let corrupt = |e: String| {
        LlmbenchError::invalid(format!("{}: does not match the results schema ({e}); the file is corrupt", file.display()))
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        LlmbenchError::invalid(format!("{}: not valid JSON ({e}); the file is corrupt", file.display()))
    })?;
    let report: Report = match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == SCHEMA_VERSION as u64 => serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?,
        Some(1) => super::convert::from_v1(value).map_err(corrupt)?,
        Some(v) => crate::bail_input!(
            "{}: schema_version {v}, but this llmbench reads versions 1 to {SCHEMA_VERSION}; use the llmbench that wrote it",
            file.display()
        ),
        None => crate::bail_input!("{}: no schema_version: not an llmbench results file", file.display()),
    };
    report.check_consistent().map_err(corrupt)?;
    Ok(report)
}
