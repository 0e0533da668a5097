//! compare's parts of the results schema (see `schema`): its settings, case parameters and
//! per-case quality (agreement with standard decoding, text similarity, what the input-side
//! method did to the prompts, what activation sparsity zeroed).

use super::schema_quantize::{SparsityRecord, SparsitySettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CompareSettings {
    pub prompts: Vec<String>,
    /// The built-in prompts' query types and expected keywords (empty for other prompts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<Vec<String>>,
    /// Whether the perplexity of each output under the full model was computed.
    pub quality: bool,
    /// The model that scored tokens for `lingua` when it was not the target (`--compressor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressor: Option<String>,
    /// The text `--sparsity` was calibrated on, when a case ran with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<SparsitySettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CompareParams {
    pub model: String,
    pub method: String,
    /// Sliding window (tokens) for SLED methods; absent for standard.
    pub window: Option<usize>,
    /// Stride (tokens) for sled:stride.
    pub stride: Option<usize>,
    /// Tokens drafted per step for specdec: methods (absent otherwise, and from older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Layer-contrast methods' settings (sled-evolution: rate, k, steps, floor; dola: its
    /// candidate layers); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrast: Option<String>,
    /// The input-side method that rewrote the prompts (`word_removal:3`); absent for the
    /// prompts as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    pub max_new_tokens: usize,
    pub kv_cache: String,
    /// The activation-sparsity method the model ran with (`larosa:0.4`); absent for dense.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<String>,
    /// With `--combine`: which part of the all_combined study this case is (`baseline`,
    /// `input`, `sparsity`, `kv`, `all_combined`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
}

impl CompareParams {
    /// Whether this case is its run's baseline: standard decoding on the prompts as written,
    /// dense (in an all_combined study, the `baseline` part on the full cache). Speed ratios,
    /// KV savings and agreement are measured against it.
    pub fn is_baseline(&self) -> bool {
        self.method == "standard" && self.input.is_none() && self.sparsity.is_none() && self.part.as_deref().is_none_or(|p| p == "baseline")
    }
}

/// compare: each method's tokens against standard decoding's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CompareQuality {
    /// Fraction of generated tokens equal to standard decoding's, position by position
    /// (first repetition of each prompt); 1 for standard itself.
    pub agreement_with_standard: Option<f64>,
    /// Per prompt: index of the first generated token that differs from standard's (absent
    /// when none does).
    pub first_divergence: Vec<Option<usize>>,
    /// Perplexity of the generated tokens under the full model with a full cache (`--quality`).
    pub perplexity: Option<f64>,
    /// Input-side methods only: the prompts' tokens after the method (summed over prompts),
    /// their reduction against the prompts as written (1 - ours / theirs), and the prompts as
    /// the model saw them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_reduction: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// Input-side methods only: the mean seconds per prompt the method took (lingua's scoring
    /// pass, adaptivocab's merging), a cost the decode timings do not include.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_seconds: Option<f64>,
    /// The model's bits per UTF-8 byte on the prompts as it saw them (summed surprisal of every
    /// token after the first, in bits, over the bytes those tokens spell): comparable across
    /// vocabularies where per-token perplexity is not, so it shows what merged tokens cost the
    /// model's reading of the same text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_bits_per_byte: Option<f64>,
    /// Bytes of the weights the case ran on (adaptivocab's model holds its untied table twice
    /// plus the phrase rows). Peak RSS is the process's: an adaptivocab case's includes the
    /// base model, still loaded for the other inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_bytes: Option<u64>,
    /// adaptivocab only: the phrases merged and how many tokens they added (surface forms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phrases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phrase_tokens: Option<usize>,
    /// The mean over prompts of the share of each prompt's expected keywords in its output
    /// (first repetition, case-insensitive); absent when the prompts have no keywords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword_hit_rate: Option<f64>,
    /// ROUGE-L F1 (0-1, mean over prompts) and corpus BLEU (0-100, sacrebleu's defaults) of the
    /// outputs against standard decoding's on the prompts as written (first repetitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rouge_l_vs_standard: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu_vs_standard: Option<f64>,
    /// Activation sparsity's measured effect, for a case that ran with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<SparsityRecord>,
}
