//! `llmbench sled`: the two SLEDs' studies. `--task window` (the default) is the sliding-window
//! study: standard decoding against sled:recompute and sled:stride over a window sweep, on
//! compare's machinery. `--task truthfulqa` scores TruthfulQA's multiple choice (MC1, MC2, MC3)
//! under standard decoding, Self Logits Evolution Decoding and DoLa on one model.

use super::args::{
    DeviceArgs, GenerationArgs, LayerContrastArgs, ModelArgs, NumList, OutputArgs, RunArgs,
};
use clap::{Args, Parser, ValueEnum};
use std::path::PathBuf;

/// The TruthfulQA file of the shared data directory (the authors' CSV).
pub const DEFAULT_TRUTHFULQA: &str = "../shared/data/truthfulqa/TruthfulQA.csv";

/// The window study's windows (seed 000's custom window configurations).
pub const DEFAULT_WINDOWS: [usize; 4] = [25, 50, 100, 200];

/// Bootstrap resamples of the TruthfulQA intervals.
pub const DEFAULT_BOOTSTRAP: usize = 1000;

/// The SLED studies: sliding-window decoding across window sizes, or Self Logits Evolution
/// Decoding and DoLa scored on TruthfulQA.
///
/// The window study's defaults (256 new tokens, windows 25-200, stride W/2, 1 warm-up and 2
/// measured runs of the 5 built-in prompts) take over an hour on 2 CPU cores with SmolLM2,
/// nearly all of it sled:recompute re-encoding up to 200 tokens per token; one prompt (`-p`)
/// takes about 20 minutes, as the committed study (`--plan configs/sled-window-smollm2.toml`).
#[derive(Debug, Clone, Args)]
#[command(mut_arg("max_new_tokens", |a| a.default_value("256")))]
pub struct SledArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The study: window (sliding-window decoding against the window size) or truthfulqa
    /// (multiple choice as the SLED and DoLa papers score it).
    #[arg(long, value_enum, default_value_t = SledTask::Window)]
    pub task: SledTask,
    #[command(flatten)]
    pub generation: GenerationArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// window: the windows swept (list or range).
    #[arg(long, default_value = "25,50,100,200")]
    pub window: NumList,
    /// window: sled:stride's stride (list or range; default half of each window, as the seed's
    /// study ran it).
    #[arg(long)]
    pub stride: Option<NumList>,
    /// window: also compute each output's perplexity under the full model.
    #[arg(long)]
    pub quality: bool,
    /// truthfulqa: TruthfulQA.csv in the authors' layout (Question, Best Answer, Correct
    /// Answers, Incorrect Answers columns).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_TRUTHFULQA)]
    pub data: PathBuf,
    /// truthfulqa: score only the first N questions (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Decodings, comma-separated. window: standard, sled:recompute, sled:stride (default all
    /// three); truthfulqa: standard, sled-evolution, dola (default all three with the
    /// --evolution-* and --dola-layers flags; standard alone when --variant is given).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Vec<crate::decode::Method>,
    /// truthfulqa: one more decoding with its own settings, in generate's flags, e.g.
    /// "sled-evolution --evolution-rate 2.5 --evolution-scale 75" or "dola --dola-layers low";
    /// repeat it for several.
    #[arg(long, value_name = "METHOD [FLAGS]")]
    pub variant: Vec<String>,
    #[command(flatten)]
    pub contrast: LayerContrastArgs,
    /// truthfulqa: resamples of the bootstrap over questions for the 95% intervals.
    #[arg(long, default_value_t = DEFAULT_BOOTSTRAP)]
    pub bootstrap: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SledTask {
    Window,
    Truthfulqa,
}

/// A `--variant`: a method and its layer-contrast flags.
#[derive(Debug, Parser)]
#[command(name = "--variant", no_binary_name = true, disable_help_flag = true)]
pub struct VariantArgs {
    /// sled-evolution or dola (standard takes no flags: it is in --methods).
    #[arg(value_enum)]
    pub method: crate::decode::Method,
    #[command(flatten)]
    pub contrast: LayerContrastArgs,
}

impl VariantArgs {
    /// Parses one `--variant` value (words split on whitespace).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Self::try_parse_from(text.split_whitespace()).map_err(|e| {
            let first = e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
            crate::error::LlmbenchError::invalid(format!("--variant {text:?}: {first}; write a method and its flags, e.g. \"sled-evolution --evolution-rate 2.5\"")).into()
        })
    }
}
