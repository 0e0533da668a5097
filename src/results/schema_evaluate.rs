//! evaluate's parts of the results schema (see `schema`): its settings, case parameters (a
//! model in a weight format) and per-case quality: text metrics against the references and
//! against the baseline's output (fidelity), keyword coverage, and optionally perplexity.

use crate::metrics::perplexity::PerplexityScores;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EvaluateSettings {
    /// `generate` (outputs scored) or `perplexity` (--text only, nothing generated).
    pub task: String,
    /// The `--data` file and the sha256 of what was read; absent for the built-in prompts.
    pub data: Option<String>,
    pub data_sha256: Option<String>,
    pub prompts: Vec<String>,
    /// Per prompt, its reference and keywords where the data gives them.
    pub references: Vec<Option<String>>,
    pub keywords: Vec<Vec<String>>,
    /// Metric names asked (`bleu`, `rougeL`, `coherence`, ...).
    pub metrics: Vec<String>,
    /// The case whose outputs fidelity is measured against: the first model in f32.
    pub baseline: EvaluateParams,
    /// Porter-stemmed ROUGE tokens (rouge-score's use_stemmer).
    pub stem: bool,
    /// The sentence encoder of `coherence`, when asked.
    pub encoder: Option<String>,
    /// `--text` scored for perplexity (lm-eval's rolling windows of `perplexity_window`
    /// tokens; absent: each model's context window, at most 1,024), and the sha256 of what
    /// was read.
    pub text: Option<String>,
    pub text_sha256: Option<String>,
    pub perplexity_window: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EvaluateParams {
    pub model: String,
    /// f32, f16, bf16, a GGUF type (q4_0) or int8 / int4:gG (see quantize).
    pub format: String,
    pub max_new_tokens: usize,
}

/// Text metrics of one case's outputs (the first repetition of each prompt) against one kind
/// of reference: the corpus score of each metric, each sample's, and the signatures that say
/// how they were computed (sacrebleu's for BLEU and chrF). Names: `bleu`, `chrf`, `chrf++`,
/// `rouge1` .. `rougeLsum` (F1), `distinct-1` .. `distinct-4`, `entropy-1` .. `entropy-4`,
/// `seq-rep-4`, `self-bleu`, `coherence`, `keywords`. Scores are 0-100 for BLEU and chrF, 0-1
/// otherwise, as their reference implementations print them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TextScores {
    pub corpus: BTreeMap<String, f64>,
    pub samples: Vec<BTreeMap<String, f64>>,
    pub signatures: BTreeMap<String, String>,
}

/// One model in one format: size and load time, and the quality of what it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EvaluateQuality {
    pub weight_bytes: u64,
    pub bits_per_weight: f64,
    /// Loading (and quantizing) the model.
    pub load_s: f64,
    /// The metrics that need no reference: diversity, repetition, self-BLEU, coherence with
    /// the prompt, keyword coverage. Absent with `skip_evaluate` (speed only).
    pub reference_free: Option<TextScores>,
    /// The reference metrics (BLEU, chrF, ROUGE) against the data's references; absent when
    /// the data has none.
    pub references: Option<TextScores>,
    /// The same metrics against the baseline case's outputs (fidelity: how far compression
    /// moved what the model writes); absent for the baseline itself.
    pub fidelity: Option<TextScores>,
    /// Greedy tokens equal to the baseline's, position by position (same model only: other
    /// models have other tokenizers).
    pub token_agreement: Option<f64>,
    /// Perplexity of `--text` (lm-eval's rolling windows).
    pub perplexity: Option<PerplexityScores>,
    /// TruthfulQA multiple choice (`--task truthfulqa`), scored as `sled --task truthfulqa`
    /// scores standard decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truthfulqa: Option<TruthfulqaScores>,
    /// The texts scored, per prompt: the first repetition's tokens up to the first
    /// end-of-sequence token, decoded and trimmed (rescore them with sacrebleu or
    /// `evaluate score`).
    pub outputs: Vec<String>,
}

/// A mean over questions with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Interval {
    pub mean: f64,
    pub ci95: [f64; 2],
}

/// MC1, MC2 and MC3 (the SLED and DoLa papers' `MC_calcs`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct McScores {
    pub mc1: Interval,
    pub mc2: Interval,
    pub mc3: Interval,
}

/// TruthfulQA multiple choice for one decoding: from the answers' summed raw values (the SLED
/// authors' score) and from their summed log-probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TruthfulqaScores {
    pub questions: usize,
    pub raw: McScores,
    pub log_prob: McScores,
    pub seconds_per_question: f64,
}
