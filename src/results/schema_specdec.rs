//! specdec's parts of the results schema (see `schema`): its settings, case parameters, raw
//! per-run samples and quality. Kept apart so the shared schema stays one screenful per concern.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpecdecSettings {
    pub prompts: Vec<String>,
    /// How K moves during a generation: fixed, heuristic (transformers') or target.
    pub k_schedule: String,
    pub min_k: usize,
    pub max_k: usize,
    /// The acceptance rate the `target` schedule steers towards.
    pub target_acceptance: f64,
    /// Largest n-gram prompt lookup matches.
    pub lookup_max_ngram: usize,
    /// Whether the verify pass attended in one batched pass (`--batched-verify`) instead of row
    /// by row (exact: greedy output is standard decoding's token for token).
    #[serde(default)]
    pub batched_verify: bool,
    /// Draft models loaded for the run (second models, quant: drafts) and their weights.
    pub draft_models: Vec<String>,
}

/// A specdec case: standard decoding (the baseline, `draft` absent) or one draft source,
/// policy and K.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpecdecParams {
    pub model: String,
    /// lookup, lookup:N, layers:L, quant:FORMAT, self, or a second model; absent for the baseline.
    pub draft: Option<String>,
    /// The acceptance rule with its options (`greedy`, `typical:0.09/0.3`).
    pub policy: Option<String>,
    /// Whether the policy may change the output (conf_threshold, topk_agree, typical).
    pub lossy: bool,
    /// Tokens drafted per step (the starting K of an adaptive schedule).
    pub k: Option<usize>,
    pub max_new_tokens: usize,
    pub kv_cache: String,
}

/// One speculative run's raw samples: every step's draft, and the time split by phase (each
/// mark device-synchronised).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpeculativeRun {
    /// Per decode step: the K asked for, tokens drafted (fewer when lookup finds fewer or the
    /// run ends; 0 is a plain decode step) and tokens accepted.
    pub step_k: Vec<usize>,
    pub step_drafted: Vec<usize>,
    pub step_accepted: Vec<usize>,
    /// Forward passes of the draft network (0 for prompt lookup).
    pub draft_forwards: usize,
    pub prefill_ns: u64,
    pub draft_ns: u64,
    /// The target's forward passes over the drafts.
    pub verify_ns: u64,
    /// Distributions, the acceptance rule, cache rollback and the next K.
    pub bookkeeping_ns: u64,
}

/// A ratio with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Ratio {
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
}

/// specdec: acceptance (vLLM's names), the cost ratio, speedup measured against the baseline in
/// the same run and predicted from acceptance and cost, and the output's quality. Computed
/// from the runs by `results::speculative`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpecdecQuality {
    /// Whether the policy keeps the target's output distribution (greedy, rejection).
    pub lossless: bool,
    /// Steps that drafted at least one token.
    pub spec_decode_num_drafts: u64,
    pub spec_decode_num_draft_tokens: u64,
    pub spec_decode_num_accepted_tokens: u64,
    /// accepted / drafted tokens.
    pub spec_decode_acceptance_rate: Option<f64>,
    /// 1 + accepted / drafts: tokens per target pass, the bonus token included.
    pub spec_decode_acceptance_length: Option<f64>,
    /// vLLM's per-position rate: drafts whose i-th token was accepted / drafts.
    pub per_position_acceptance_rate: Vec<f64>,
    /// Per-token acceptance probability a of the speedup formula, estimated as accepted /
    /// (accepted + rejections) (the geometric model's maximum likelihood).
    pub alpha: Option<f64>,
    /// Mean K asked for per step.
    pub mean_k: Option<f64>,
    /// Per run (means): the time in each phase.
    pub prefill_ms: f64,
    pub draft_ms: f64,
    pub verify_ms: f64,
    pub bookkeeping_ms: f64,
    /// Baseline's median TPOT: the cost of one target decode step.
    pub target_step_ms: Option<f64>,
    /// c: draft time per drafted token / target step.
    pub cost_ratio: Option<f64>,
    /// Verify pass (K + 1 tokens) / target step.
    pub verify_cost_ratio: Option<f64>,
    /// Bookkeeping per step / target step.
    pub bookkeeping_cost_ratio: Option<f64>,
    /// Mean decode tok/s / the baseline's, 95% interval (Welch over runs).
    pub speedup: Option<Ratio>,
    /// Per prompt: mean decode tok/s / the baseline's on the same prompt.
    pub per_prompt_speedup: Vec<Option<f64>>,
    /// Leviathan et al.'s (1 - a^(K+1)) / ((1 - a)(K c + 1)), from the measured a and c.
    pub predicted_speedup: Option<f64>,
    /// The same with the measured verify and bookkeeping costs in place of 1:
    /// (1 - a^(K+1)) / ((1 - a)(K c + v + b)).
    pub predicted_speedup_measured_costs: Option<f64>,
    /// Fraction of tokens equal to the baseline's, position by position (greedy runs).
    pub agreement_with_target: Option<f64>,
    /// Per prompt: first token that differs from the baseline's (greedy runs).
    pub first_divergence: Vec<Option<usize>>,
    /// Perplexity of the output under the target (full cache), mean over prompts.
    pub perplexity: Option<f64>,
}
