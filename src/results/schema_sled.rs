//! sled's parts of the results schema (see `schema`): `sled --task truthfulqa` scores
//! TruthfulQA's multiple choice under one decoding per case (standard, SLED's logits evolution,
//! DoLa). Its cases time no generation, so they hold no runs: the wall time per question is in
//! the quality, and every question's answer scores are kept so a reader can recompute MC1-3 or
//! compare two runs question by question (`diff` does).
//!
//! The window study (`sled --task window`) is compare's cases on compare's machinery, so it
//! writes compare's schema (command `compare`), not this one.

use super::schema_evaluate::TruthfulqaScores;
use crate::metrics::truthfulqa::QuestionScores;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SledSettings {
    /// `truthfulqa`.
    pub task: String,
    /// The TruthfulQA file and the sha256 of what was read.
    pub data: String,
    pub data_sha256: String,
    /// Questions scored (the first N of the file with `--limit`).
    pub questions: usize,
    /// Bootstrap resamples of the 95% intervals (seeded: the same scores give the same interval).
    pub bootstrap_resamples: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SledParams {
    pub model: String,
    /// `standard`, `sled-evolution` or `dola`.
    pub method: String,
    /// The layer contrast's settings as a label (SLED's rate, scale, floor, steps and premature
    /// layers; DoLa's buckets); absent for standard decoding.
    pub contrast: Option<String>,
}

impl SledParams {
    pub fn label(&self) -> String {
        match &self.contrast {
            Some(c) => format!("{} {c}", self.method),
            None => self.method.clone(),
        }
    }
}

/// One decoding's TruthfulQA scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SledQuality {
    pub truthfulqa: TruthfulqaScores,
    /// Every question's answer scores, in the file's order.
    pub questions: Vec<QuestionScores>,
}
