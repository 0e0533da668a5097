//! `llmbench plot`: redraw charts from a saved results.json.

use crate::charts::{ChartKind, ImageFormat};
use clap::Args;
use std::path::PathBuf;

/// Redraw charts from results.json alone (byte-identical for the same input).
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// A run directory or its results.json.
    pub results: PathBuf,
    /// One chart (default: every chart the results support).
    #[arg(long, value_enum)]
    pub chart: Option<ChartKind>,
    /// One format (default: png and svg).
    #[arg(long, value_enum)]
    pub format: Option<ImageFormat>,
    /// Where to write the charts (default: the run directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
}
