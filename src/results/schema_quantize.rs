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
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QuantizeParams {
    pub model: String,
    /// f32, f16, bf16, a GGUF type (q4_0, q6_k) or int8 / int4:gG.
    pub format: String,
    pub max_new_tokens: usize,
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
}
