//! Subcommands: each turns validated arguments into engine runs and a report.

pub mod compare;
mod compare_inputs;
mod compare_plan;
pub mod diff;
pub mod docs;
pub mod evaluate;
mod evaluate_inputs;
mod evaluate_perplexity;
mod evaluate_run;
mod evaluate_score;
pub mod chat;
pub mod generate;
mod harness;
pub mod batch;
pub mod http;
mod model_list;
mod output;
pub mod kvcache;
pub mod plot;
mod progress;
pub mod prompts;
pub mod quantize;
mod quantize_list;
mod quantize_reference;
pub mod serve;
mod setup;
pub mod sled;
mod sparsity;
mod speculative;
pub mod specdec;
mod truthfulqa;

pub use setup::{load_model, Loaded};

/// How a command ended, for the exit code (0, 1, 130).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// At least one case failed (recorded) or a regression limit was exceeded.
    CasesFailed,
    /// Stopped by Ctrl-C after saving what finished.
    Interrupted,
}

/// `results/<command>-<UTC timestamp>`, where a run goes without `--out`.
fn default_out_dir(command: &str) -> std::path::PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let stamp: String = crate::measure::system::format_utc(secs).chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    std::path::PathBuf::from("results").join(format!("{command}-{stamp}"))
}
