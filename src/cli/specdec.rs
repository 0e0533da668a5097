//! `llmbench specdec`: speculative decoding against standard decoding on the same engine.

use super::args::{DeviceArgs, GenerationArgs, ModelArgs, NumList, OutputArgs, RunArgs};
use crate::decode::speculative::{DraftSource, PolicyKind, ScheduleKind, MAX_NGRAM, TYPICAL_DELTA, TYPICAL_EPS};
use clap::Args;
use serde::{Deserialize, Serialize};

/// Measure speculative decoding: speedup over standard decoding in the same run (95% interval),
/// acceptance, cost ratio and the speedup the acceptance predicts, for each draft source,
/// policy and K.
///
/// The default is a K sweep of prompt lookup, the first quarter of the layers and the q4_0-requantized
/// target as drafts, greedy (lossless), 5 built-in prompts x 2 runs of 64 tokens.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("max_new_tokens", |a| a.default_value("64")))]
pub struct SpecdecArgs {
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
    /// Draft sources, comma-separated: lookup[:N] (prompt lookup, N tokens; K by default),
    /// layers[:L] (the target's first L layers, head shared), quant:FORMAT (the target
    /// re-quantized: q4_0, q2_k...), self (the ceiling), or a second model (any --model form).
    #[arg(long, default_value = "lookup,layers,quant:q4_0", value_delimiter = ',')]
    pub draft: Vec<DraftSource>,
    /// Tokens drafted per step (list or range sweeps; the start of an adaptive schedule).
    #[arg(long, default_value = "1,2,4,8")]
    pub k: NumList,
    /// Acceptance rules, comma-separated: greedy and rejection are lossless; conf_threshold,
    /// topk_agree and typical are lossy. Default: greedy, or rejection with --temperature > 0.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub policy: Vec<PolicyKind>,
    #[command(flatten)]
    pub options: SpecOptions,
}

/// Options of the policies, the K schedule and the proposers (specdec and generate --draft).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct SpecOptions {
    /// conf_threshold: accept a draft token the target gives at least this probability, in (0, 1].
    #[arg(long, default_value_t = SpecOptions::default().tau)]
    pub tau: f32,
    /// topk_agree: accept a draft token among the target's N most likely.
    #[arg(long, default_value_t = SpecOptions::default().agree_k)]
    pub agree_k: usize,
    /// typical: epsilon of Medusa's rule p(x) > min(eps, delta * exp(-H)), in (0, 1].
    #[arg(long, default_value_t = SpecOptions::default().typical_eps)]
    pub typical_eps: f32,
    /// typical: delta of Medusa's rule, in (0, 1].
    #[arg(long, default_value_t = SpecOptions::default().typical_delta)]
    pub typical_delta: f32,
    /// How K moves: fixed, heuristic (transformers': +2 after a fully accepted draft, -1
    /// otherwise) or target (steer the acceptance rate to --target-acceptance).
    #[arg(long, value_enum, default_value_t = SpecOptions::default().k_schedule)]
    pub k_schedule: ScheduleKind,
    /// Smallest K an adaptive schedule goes to.
    #[arg(long, default_value_t = SpecOptions::default().min_k)]
    pub min_k: usize,
    /// Largest K an adaptive schedule goes to.
    #[arg(long, default_value_t = SpecOptions::default().max_k)]
    pub max_k: usize,
    /// The acceptance rate the `target` schedule steers towards, in (0, 1).
    #[arg(long, default_value_t = SpecOptions::default().target_acceptance)]
    pub target_acceptance: f64,
    /// Largest n-gram prompt lookup matches (it tries n, n-1, ..., 1).
    #[arg(long, default_value_t = SpecOptions::default().lookup_ngram)]
    pub lookup_ngram: usize,
    /// Where the draft runs; it must be the target's device (drafts and target share caches'
    /// device and the verify pass), so this only exists to refuse a split clearly.
    #[arg(long)]
    pub draft_device: Option<String>,
    /// Verify all drafted positions in one masked attention pass instead of row by row. Fewer
    /// kernel launches (GPUs), but the rows' softmax and attention sums run over padded rows,
    /// so greedy output may differ from standard decoding at near-ties (it is no longer
    /// token for token).
    #[arg(long)]
    #[serde(default)]
    pub batched_verify: bool,
}

impl SpecOptions {
    pub fn verify_attention(&self) -> crate::models::layers::VerifyAttention {
        if self.batched_verify {
            crate::models::layers::VerifyAttention::Batched
        } else {
            crate::models::layers::VerifyAttention::RowByRow
        }
    }
}

impl Default for SpecOptions {
    /// The flags' defaults (the one place they are written; compare's specdec: methods use them).
    fn default() -> Self {
        Self {
            tau: 0.3,
            agree_k: 5,
            typical_eps: TYPICAL_EPS,
            typical_delta: TYPICAL_DELTA,
            k_schedule: ScheduleKind::Fixed,
            min_k: 1,
            max_k: 16,
            target_acceptance: 0.7,
            lookup_ngram: MAX_NGRAM,
            draft_device: None,
            batched_verify: false,
        }
    }
}
