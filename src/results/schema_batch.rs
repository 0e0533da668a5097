//! `batch`'s part of the results schema: one case per batch size, with llama.cpp's
//! `llama-batched-bench` table per repetition (PP, TG, B, N_KV, T_PP, S_PP, T_TG, S_TG, T, S)
//! beside the per-sequence runs (TTFT, TPOT, every token's time) the other commands keep.

use crate::measure::steps::StepRecord;
use crate::measure::stats::Summary;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchSettings {
    /// How the prompts were made ("random token ids (seed 42)").
    pub prompts: String,
    pub kv_block_size: usize,
    /// Blocks in the pool; absent: sized per case for every sequence at full length.
    pub kv_blocks: Option<usize>,
    /// Tokens one step may feed; absent: B x PP, so every prompt is prefilled in one step.
    pub max_step_tokens: Option<usize>,
}

/// One batch size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchParams {
    pub model: String,
    /// Sequences decoded together (B).
    pub batch_size: usize,
    /// Prompt tokens per sequence (PP).
    pub prompt_tokens: usize,
    /// Tokens generated per sequence (TG).
    pub max_new_tokens: usize,
}

impl BatchParams {
    pub fn label(&self) -> String {
        format!("B={}", self.batch_size)
    }
}

/// One repetition of a batch size: llama-batched-bench's row, and the steps behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchRepetition {
    /// Total positions held by the B sequences at the end (B x (PP + TG - 1): the last token
    /// is never fed).
    pub n_kv: usize,
    /// Until every sequence had its first token.
    pub t_pp_s: f64,
    /// Prompt tokens per second: B x PP / T_PP.
    pub s_pp: f64,
    /// From then to the last token.
    pub t_tg_s: f64,
    /// Generated tokens fed by those steps per second (aggregate decode tokens/s).
    pub s_tg: f64,
    pub t_s: f64,
    /// All tokens processed (prompt and generated) per second.
    pub s: f64,
    pub preemptions: u64,
    pub kv_pool_bytes: u64,
    pub peak_kv_used_bytes: u64,
    pub peak_rss_bytes: u64,
    pub peak_device_memory_bytes: Option<u64>,
    pub steps: Vec<StepRecord>,
}

/// A batch size's numbers over its repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchQuality {
    pub repetitions: Vec<BatchRepetition>,
    /// Over the repetitions: S_PP, S_TG (aggregate decode tokens/s) and S.
    pub s_pp: Summary,
    pub s_tg: Summary,
    pub s: Summary,
    /// Each sequence's own decode tokens/s (1 / TPOT), over every sequence of every repetition
    /// (absent when TG is 1: no sequence decoded after its first token).
    pub per_sequence_decode_tokens_per_s: Option<Summary>,
    /// Blocks of the pool and the most in use at the end of a step.
    pub kv_blocks: usize,
    pub peak_kv_blocks_used: usize,
}
