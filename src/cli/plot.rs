//! `llmbench plot`: redraw charts from a saved results.json.

use crate::charts::{ChartKind, ImageFormat};
use clap::Args;
use std::path::PathBuf;

/// Redraw charts from results.json alone (byte-identical for the same input).
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// A run directory or its results.json; several runs of one command are drawn together
    /// (e.g. `llmbench http` against two servers: one line per server), which needs --out.
    #[arg(required = true, num_args = 1..)]
    pub results: Vec<PathBuf>,
    /// One chart (default: every chart the results support).
    #[arg(long, value_enum)]
    pub chart: Option<ChartKind>,
    /// One format (default: png and svg).
    #[arg(long, value_enum)]
    pub format: Option<ImageFormat>,
    /// Where to write the charts (default: the run directory; required for several runs).
    #[arg(long)]
    pub out: Option<PathBuf>,
}
