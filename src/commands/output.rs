//! The run directory every benchmark command writes through, so none has its own: open it
//! (new, or `--resume`), record how a case that did not run ended, and finish it (charts,
//! table.md, the report on stdout in the `-o` format).

use crate::charts::{self, ImageFormat};
use crate::cli::args::OutputArgs;
use crate::error::LlmbenchError;
use crate::results::export::{exporter, OutputFormat};
use crate::results::schema::{CaseParams, CaseResult, CaseStatus, Report, Settings};
use crate::results::sink::Sink;
use anyhow::Result;
use std::collections::HashSet;
use std::io::Write;

/// The Markdown table beside results.json, rewritten by `plot`.
pub const TABLE_MD: &str = "table.md";

/// A new run directory (`--out`, or results/<command>-<timestamp>), or the one `--resume`
/// names with the ids of the cases it already finished.
pub fn open(args: &OutputArgs, report: Report) -> Result<(Sink, HashSet<String>)> {
    match &args.resume {
        Some(dir) => Sink::resume(dir, report),
        None => {
            let dir = args.out.clone().unwrap_or_else(|| super::default_out_dir(report.command.name()));
            Ok((Sink::create(&dir, report)?, HashSet::new()))
        }
    }
}

/// A case that errored is skipped when the combination is unsupported (a sweep goes on),
/// failed otherwise.
pub fn status_of_error(err: &anyhow::Error) -> CaseStatus {
    let unsupported = err.chain().any(|c| matches!(c.downcast_ref::<LlmbenchError>(), Some(LlmbenchError::Unsupported(_))));
    if unsupported {
        CaseStatus::Skipped
    } else {
        CaseStatus::Failed
    }
}

/// Records a case that errored, as skipped (unsupported) or failed, and says whether it failed.
pub fn record_not_run(sink: &mut Sink, params: CaseParams, settings: &Settings, err: &anyhow::Error) -> Result<bool> {
    tracing::warn!("{}: {err:#}", params.label());
    let status = status_of_error(err);
    sink.record(CaseResult::not_run(params, settings, status, crate::error::first_line(&format!("{err:#}"))))?;
    Ok(status == CaseStatus::Failed)
}

/// Whether a case's error is recorded and the run goes on (or the run stops with it).
pub fn goes_on_after(args: &OutputArgs, err: &anyhow::Error) -> bool {
    args.continue_on_error || status_of_error(err) == CaseStatus::Skipped
}

/// Charts and table.md into the run directory, then the report on stdout.
pub fn finish(sink: &mut Sink, args: &OutputArgs) -> Result<()> {
    sink.keep();
    let report = sink.report();
    write_views(sink, report, !args.no_charts)?;
    let rendered = exporter(args.output).render(report)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&rendered)?;
    stdout.flush()?;
    eprintln!("results: {}", sink.dir().display());
    Ok(())
}

/// Every chart the report supports (PNG and SVG) and table.md.
fn write_views(sink: &Sink, report: &Report, with_charts: bool) -> Result<()> {
    if with_charts {
        for kind in charts::available(report) {
            for format in [ImageFormat::Png, ImageFormat::Svg] {
                sink.write_file(&kind.file_name(format), &charts::render(kind, report, format)?)?;
            }
        }
    }
    sink.write_file(TABLE_MD, &exporter(OutputFormat::Md).render(report)?)
}

/// After Ctrl-C: clears the progress bar and says where the finished cases are and how to go on.
pub fn interrupted(sink: &Sink, progress: &indicatif::ProgressBar) -> super::Outcome {
    progress.finish_and_clear();
    eprintln!("stopped: finished cases are in {}; continue with --resume {}", sink.dir().display(), sink.dir().display());
    super::Outcome::Interrupted
}
