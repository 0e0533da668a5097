//! `llmbench chat`: an interactive conversation over the engine.

use super::args::{DeviceArgs, GenerationArgs, ModelArgs};
use clap::Args;

/// Chat with a model: its chat template, history reused through the KV cache, streamed replies
/// and a metrics line after each (stderr). Type /reset, /stats or /quit; end of input quits.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("max_new_tokens", |a| a.default_value("256").help("Most tokens per reply")))]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub generation: GenerationArgs,
    /// One non-interactive turn: send this message, print the reply and its metrics, exit.
    #[arg(long)]
    pub message: Option<String>,
    /// A system message opening the conversation (the template's default otherwise).
    #[arg(long)]
    pub system: Option<String>,
    /// A Jinja chat template file, for models that ship none or to override theirs.
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<std::path::PathBuf>,
    /// Decode with a layer-contrast method: sled-evolution or dola (standard by default).
    #[arg(long, value_enum)]
    pub decoding: Option<crate::decode::Method>,
    #[command(flatten)]
    pub contrast: super::args::LayerContrastArgs,
    /// An input-side method applied to each message before the template: none,
    /// word_removal:N, lingua:RATE (scored by the model itself) or adaptivocab.
    #[arg(long, default_value = "none")]
    pub input: crate::input::InputMethod,
    /// adaptivocab's phrases, one per line, instead of seed 002's defaults.
    #[arg(long, value_name = "FILE")]
    pub phrases: Option<std::path::PathBuf>,
    /// One JSON record per turn on stdout (reply text, token counts, timings) instead of
    /// streamed text and metrics lines.
    #[arg(long)]
    pub json: bool,
}
