//! The record of one step of a batched run (`engine::batch_run`), kept raw in results.

use serde::{Deserialize, Serialize};

/// One step of a batch run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepRecord {
    /// When the step's results were ready, since the run started.
    pub end_ns: u64,
    pub duration_ns: u64,
    /// Prompt tokens fed (prefill chunks, recomputation included).
    pub prefill_tokens: usize,
    /// Generated tokens fed, one per decoding sequence.
    pub decode_tokens: usize,
    /// Blocks in use after the step.
    pub blocks_used: usize,
}
