//! quantize's parts of the results schema (see `schema`): its settings, case parameters and
//! per-format measurements (size, time to quantize and load, and the distribution shift
//! against the source in llama-perplexity's conventions).

use crate::metrics::quantization::DistributionShift;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QuantizeSettings {
    /// The text quality is measured on, and the sha256 of what was read.
    pub eval_file: String,
    pub eval_file_sha256: String,
    /// llama-perplexity's `-c`: tokens per window; the second half of each is scored.
    pub context_tokens: usize,
    /// Windows evaluated (llama-perplexity's `--chunks`).
    pub chunks: usize,
    /// Whether each window's first token was replaced by BOS (llama-perplexity does where the
    /// vocabulary adds one).
    pub bos_first: bool,
    /// Format names in the order they ran (`f32` first: the reference).
    pub formats: Vec<String>,
    /// int4's group size (inputs per scale and zero point).
    pub group_size: usize,
    /// What the reference is: the source's weights in f32 ("gguf Q4_1 dequantized to f32").
    pub reference: String,
    pub prompts: Vec<String>,
    /// Whether the quality pass was skipped (`--skip-evaluate`: speed and size only, for
    /// random weights); the eval fields then describe nothing that ran.
    #[serde(default)]
    pub skip_evaluate: bool,
    /// Where `--save` wrote the quantized models, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_dir: Option<String>,
    /// Activation sparsity run on every format (`--sparsity`), and its calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<SparsitySettings>,
}

/// The text `--sparsity`'s thresholds and rotations came from (the methods are in each case's
/// params, so adding one on `--resume` keeps the other cases' ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SparsitySettings {
    pub calibration_file: String,
    pub calibration_file_sha256: String,
    /// Tokens the calibration pass ran (windows of `calibration_window_tokens`).
    pub calibration_tokens: usize,
    pub calibration_window_tokens: usize,
}

/// What activation sparsity did in one case: the share of projection inputs really zeroed
/// (TEAL's thresholds come from other text, so it drifts from the target; LaRoSA's top-k is
/// exact), counted over every token the case ran, and the bytes of the sparse weight copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SparsityRecord {
    pub method: String,
    /// The target share S.
    pub target_share: f64,
    /// Share zeroed per projection input: `qkv`, `o`, `gate_up`, `down`.
    pub zeroed_share: BTreeMap<String, f64>,
    /// Over all four inputs' entries (each weighted by its width).
    pub zeroed_share_overall: f64,
    /// Column-major weights (and LaRoSA's rotations) held beside the model's own.
    pub sparse_weight_bytes: u64,
    /// Seconds spent on calibration (0 when it came from the cache) and building the copies.
    pub calibration_s: f64,
    pub calibration_cached: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QuantizeParams {
    pub model: String,
    /// f32, f16, bf16, a GGUF type (q4_0, q6_k) or int8 / int4:gG.
    pub format: String,
    pub max_new_tokens: usize,
    /// The activation sparsity method on top of the format (`teal:0.4`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<String>,
}

impl QuantizeParams {
    /// The case's label: the format, and its sparsity method after a `+` (`f32+teal:0.4`).
    pub fn variant(&self) -> String {
        match &self.sparsity {
            Some(s) => format!("{}+{s}", self.format),
            None => self.format.clone(),
        }
    }
}

/// One format's measurements next to its speed runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QuantizeQuality {
    /// Parameters and bytes of every weight the model holds (a tied table once), and
    /// 8 x bytes / parameters.
    pub weight_params: u64,
    pub weight_bytes: u64,
    pub bits_per_weight: f64,
    /// Linear weights per format they became (k-quants fall back where rows do not divide 256).
    pub tensors: BTreeMap<String, usize>,
    /// Time converting the weights, and loading the model (reading and dequantizing the
    /// source included).
    pub quantize_s: f64,
    pub load_s: f64,
    /// Against the reference's distributions on the eval text; absent with `--skip-evaluate`.
    pub shift: Option<DistributionShift>,
    /// Greedy tokens equal to the reference's on the prompts, position by position.
    pub greedy_agreement: Option<f64>,
    pub first_divergence: Vec<Option<usize>>,
    /// The file `--save` wrote for this format, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<String>,
    /// Activation sparsity's measured effect, for a `--sparsity` case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<SparsityRecord>,
}
