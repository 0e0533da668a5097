//! Speculative decoding inside continuous batching (vLLM's n-gram proposer in its scheduler): a
//! decoding sequence drafts up to K tokens by prompt lookup, and its part of the step feeds its
//! last token plus the draft, asking for the logits of every row; the step verifies each
//! sequence's draft with the same rule as the one-sequence strategy (`speculative::judge`:
//! greedy keeps the longest prefix of argmaxes, sampling keeps it by rejection sampling, so the
//! output distribution is the target's), keeps the accepted tokens' keys and values and gives
//! back the blocks past them. Sequences without a proposal decode as usual in the same step.
//! Each sequence's K adapts (transformers' heuristic: +2 after a fully accepted draft, -1
//! otherwise, between 1 and `--draft lookup:K`): a verified row costs compute even where it
//! is rejected, and a sequence whose drafts keep failing should draft little.
//!
//! Only prompt lookup drafts here: a draft network would need its own paged pool, block tables
//! and catch-up steps per sequence (not built; `serve --draft` refuses other sources).

use crate::decode::sampling::Sampler;
use crate::decode::speculative::{judge, propose_by_lookup, KController, Policy, Schedule, ScheduleKind, MAX_NGRAM};

/// How sequences draft (`--draft lookup[:K]`); made by `lookup`, which checks K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpeculation {
    /// Tokens drafted at most per sequence and step (each sequence's K starts there).
    k: usize,
    /// The longest n-gram prompt lookup matches.
    max_ngram: usize,
}

/// The most tokens a sequence may draft per step: its verification part stays a few rows, so
/// a step of verifications still takes the per-row kernels on the CPU.
pub const MAX_DRAFT_TOKENS: usize = 16;

/// Speculation counters since the engine started (vLLM's `spec_decode_num_*` counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecCounters {
    /// Verifications of a non-empty draft.
    pub drafts: u64,
    pub draft_tokens: u64,
    pub accepted_tokens: u64,
}

impl BatchSpeculation {
    /// Prompt lookup drafting up to `k` tokens (1 to `MAX_DRAFT_TOKENS`) from n-grams of up to
    /// `MAX_NGRAM` tokens.
    pub fn lookup(k: usize) -> anyhow::Result<Self> {
        if k == 0 || k > MAX_DRAFT_TOKENS {
            crate::bail_input!("--draft lookup:{k}: K must be from 1 to {MAX_DRAFT_TOKENS}");
        }
        Ok(Self { k, max_ngram: MAX_NGRAM })
    }

    /// A new sequence's K controller.
    pub fn controller(&self) -> KController {
        KController::new(Schedule { kind: ScheduleKind::Heuristic, start: self.k, min: 1, max: self.k, target_acceptance: 0.0 })
    }

    /// The draft for a decoding sequence: up to `k` tokens (its controller's), never more than
    /// `room` (the step's token budget left beside its last token) nor past its last wanted
    /// token (the target always adds one: the correction or the bonus).
    pub fn propose(&self, tokens: &[u32], k: usize, still_wanted: usize, room: usize) -> Vec<u32> {
        let k = k.min(still_wanted.saturating_sub(1)).min(room);
        if k == 0 {
            return Vec::new();
        }
        propose_by_lookup(tokens, k, self.max_ngram)
    }
}

/// Verifies `draft` against the target's `rows` (its last token's and each drafted token's
/// logits) for a sequence holding `tokens`: the tokens to emit (the accepted drafts, then the
/// target's own) and how many drafts were accepted.
pub fn verify_draft(sampler: &mut Sampler, tokens: &[u32], draft: &[u32], rows: &mut [Vec<f32>]) -> (Vec<u32>, usize) {
    let policy = if sampler.is_greedy() { Policy::Greedy } else { Policy::Rejection };
    let verdict = judge(policy, sampler, tokens, draft, None, rows);
    let mut emitted = draft[..verdict.accepted].to_vec();
    emitted.push(verdict.next);
    (emitted, verdict.accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::sampling::SamplingConfig;

    #[test]
    fn drafts_stay_within_k_the_budget_and_the_tokens_still_wanted() {
        let spec = BatchSpeculation::lookup(4).unwrap();
        let tokens = [5, 6, 7, 8, 9, 10, 5, 6];
        assert_eq!(spec.propose(&tokens, 4, 100, 100), vec![7, 8, 9, 10]);
        assert_eq!(spec.propose(&tokens, 3, 100, 100), vec![7, 8, 9]);
        assert_eq!(spec.propose(&tokens, 4, 100, 2), vec![7, 8]);
        assert_eq!(spec.propose(&tokens, 4, 3, 100), vec![7, 8], "two wanted tokens beside the target's own");
        assert!(spec.propose(&tokens, 4, 1, 100).is_empty());
        assert!(spec.propose(&[1, 2, 3], 4, 100, 100).is_empty(), "no earlier match");
    }

    #[test]
    fn a_sequences_k_shrinks_after_rejections_and_regrows_within_the_flag() {
        let mut k = BatchSpeculation::lookup(4).unwrap().controller();
        assert_eq!(k.k(), 4);
        k.update(4, 1);
        k.update(3, 0);
        assert_eq!(k.k(), 2);
        k.update(2, 2);
        k.update(4, 4);
        assert_eq!(k.k(), 4, "never past --draft lookup:K");
        for _ in 0..6 {
            k.update(1, 0);
        }
        assert_eq!(k.k(), 1, "at least one");
    }

    #[test]
    fn greedy_verification_keeps_the_argmax_prefix_and_adds_the_target_token() {
        let row = |top: usize| {
            let mut r = vec![0f32; 8];
            r[top] = 5.0;
            r
        };
        let mut sampler = Sampler::new(SamplingConfig::default());
        let mut rows = vec![row(3), row(4), row(6), row(1)];
        assert_eq!(verify_draft(&mut sampler, &[0], &[3, 4, 5], &mut rows), (vec![3, 4, 6], 2));
        let mut rows = vec![row(3), row(4), row(5), row(1)];
        assert_eq!(verify_draft(&mut sampler, &[0], &[3, 4, 5], &mut rows), (vec![3, 4, 5, 1], 3));
    }
}
