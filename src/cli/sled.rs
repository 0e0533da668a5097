//! `llmbench sled`: the SLED studies. `--task truthfulqa` scores TruthfulQA's multiple choice
//! (MC1, MC2, MC3) under standard decoding, SLED's logits evolution and DoLa on one model.

use super::args::{DeviceArgs, LayerContrastArgs, ModelArgs};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// The TruthfulQA file of the shared data directory (the authors' CSV).
pub const DEFAULT_TRUTHFULQA: &str = "../shared/data/truthfulqa/TruthfulQA.csv";

#[derive(Debug, Clone, Args)]
pub struct SledArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The study: truthfulqa (multiple choice as the SLED and DoLa papers score it).
    #[arg(long, value_enum)]
    pub task: SledTask,
    /// TruthfulQA.csv in the authors' layout (Question, Best Answer, Correct Answers, Incorrect
    /// Answers columns).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_TRUTHFULQA)]
    pub data: PathBuf,
    /// Score only the first N questions (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Decodings scored, comma-separated: standard, sled-evolution, dola.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "standard,sled-evolution,dola"
    )]
    pub methods: Vec<crate::decode::Method>,
    #[command(flatten)]
    pub contrast: LayerContrastArgs,
    /// Resamples of the bootstrap over questions for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// A table, or JSON with every question's answer scores.
    #[arg(long, short = 'o', value_enum, default_value_t = super::evaluate::ScoreFormat::Table)]
    pub output: super::evaluate::ScoreFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SledTask {
    Truthfulqa,
}
