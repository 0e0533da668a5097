//! `llmbench compare`: decoding methods side by side on the same engine.

use super::args::{DeviceArgs, GenerationArgs, ModelArgs, NumList, OutputArgs, RunArgs};
use clap::Args;

/// Run decoding methods side by side and compare speed, memory and output quality.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub generation: GenerationArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Methods, comma-separated: standard, sled (= sled:recompute), sled:recompute, sled:stride.
    #[arg(long, default_value = "standard,sled", value_delimiter = ',')]
    pub methods: Vec<String>,
    /// SLED window in tokens: the model sees only the last N tokens (list or range sweeps).
    #[arg(long, default_value = "50")]
    pub window: NumList,
    /// Tokens sled:stride decodes with its cache before re-encoding the window (list or range).
    #[arg(long, default_value = "25")]
    pub stride: NumList,
    /// Also compute the perplexity of each method's output under the full model.
    #[arg(long)]
    pub quality: bool,
}
