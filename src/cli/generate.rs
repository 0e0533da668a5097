//! `llmbench generate`: one prompt, streamed continuation, timing summary.

use super::args::{DeviceArgs, GenerationArgs, ModelArgs};
use clap::Args;

/// Generate a continuation of one prompt and report its timings.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub generation: GenerationArgs,
    /// The prompt text (used as given: no chat template, no BOS).
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON record (ids, text, timings, device, model) instead of streamed text.
    #[arg(long)]
    pub json: bool,
    /// Also write the logits of every generated position as a NumPy .npy file (f32,
    /// `[new tokens, vocab]`), for numerics checks across devices and dtypes. The copy to the
    /// host is inside the timed loop, so timings with this flag are not benchmark numbers.
    #[arg(long, value_name = "FILE.npy")]
    pub logits_out: Option<std::path::PathBuf>,
    /// Decode speculatively with this draft: lookup[:N], layers[:L], quant:FORMAT, self or a
    /// second model (see `llmbench specdec --help`). The output is the target's own (greedy:
    /// token for token) under the lossless policies.
    #[arg(long)]
    pub draft: Option<crate::decode::speculative::DraftSource>,
    /// Tokens drafted per step with --draft (the start of an adaptive --k-schedule).
    #[arg(long, default_value_t = 4)]
    pub k: usize,
    /// Acceptance rule with --draft (default greedy, rejection with --temperature > 0).
    #[arg(long, value_enum)]
    pub policy: Option<crate::decode::speculative::PolicyKind>,
    #[command(flatten)]
    pub spec: super::specdec::SpecOptions,
    /// Decode with a layer-contrast method instead of standard decoding: sled-evolution (Self
    /// Logits Evolution Decoding) or dola, with their --evolution-* / --dola-layers settings.
    #[arg(long, value_enum, conflicts_with = "draft")]
    pub decoding: Option<crate::decode::Method>,
    #[command(flatten)]
    pub contrast: super::args::LayerContrastArgs,
    /// A run file (TOML) whose keys are these long flags; flags on the command line override it.
    #[arg(long, value_name = "FILE.toml")]
    pub plan: Option<std::path::PathBuf>,
}
