//! `llmbench diff`: compare two runs case by case.

use clap::Args;
use std::path::PathBuf;

/// Relative change of each headline metric from run A to run B, with 95% intervals.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// Baseline run (directory or results.json).
    pub a: PathBuf,
    /// New run (directory or results.json).
    pub b: PathBuf,
    /// Exit with code 1 if a significant slowdown exceeds PCT percent.
    #[arg(long, value_name = "PCT")]
    pub fail_on_regression: Option<f64>,
}
