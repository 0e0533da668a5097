//! Speculative decoding: a proposer drafts up to K tokens, the target scores all of them plus
//! one in a single forward pass through its cache, a verification rule keeps a prefix, and
//! both caches roll back through `truncate` (Leviathan et al. 2023; Chen et al. 2023). The
//! proposers are prompt lookup and draft networks; the rules live in `verify` (pure); K comes
//! from `schedule`. The engine owns the clocks: the strategy only says where each phase ends.

mod draft_model;
mod lookup;
mod schedule;
mod source;
pub mod verify;

pub use draft_model::{DraftNet, ModelDraft, SharedModel};
pub use lookup::{propose as propose_by_lookup, Lookup, MAX_NGRAM};
pub use schedule::{KController, Schedule, ScheduleKind};
pub use source::DraftSource;
pub use verify::{Policy, PolicyKind, TYPICAL_DELTA, TYPICAL_EPS};

use super::sampling::Sampler;
use super::{DecodeStrategy, DraftOutcome, Phase, Step, StepContext};
use crate::models::layers::VerifyAttention;
use anyhow::Result;
use candle_core::Tensor;
use verify::{verify, Rows};

/// Drafted tokens and, for a sampling draft network, its distribution at each.
pub struct Draft {
    pub tokens: Vec<u32>,
    pub probs: Option<Vec<Vec<f32>>>,
    /// Forward passes the draft network ran (0 for prompt lookup).
    pub forwards: usize,
}

/// Where draft tokens come from.
pub trait Proposer: Send {
    /// A new sequence starts.
    fn reset(&mut self) {}
    /// Reads the prompt (`ctx.tokens`) before the first proposal.
    fn prefill(&mut self, _ctx: &mut StepContext<'_>) -> Result<()> {
        Ok(())
    }
    /// Up to `k` tokens to follow `ctx.tokens`.
    fn propose(&mut self, ctx: &mut StepContext<'_>, k: usize) -> Result<Draft>;
    /// Only the first `len` tokens of the sequence stand: forget anything drafted past them.
    fn rollback(&mut self, _len: usize) -> Result<()> {
        Ok(())
    }
}

/// Everything a speculative strategy is built from besides its draft.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpecConfig {
    pub policy: Policy,
    pub schedule: Schedule,
    pub lookup_max_ngram: usize,
    /// The target's cache strategy, which the draft network's cache copies.
    pub cache: crate::kv::KvKind,
    pub kv_options: crate::kv::KvOptions,
    /// How the verify pass attends: row by row (greedy output exactly the target's) or batched.
    pub verify: VerifyAttention,
}

/// What drafts: prompt lookup or a network.
#[derive(Clone)]
pub enum Drafter {
    Lookup,
    Net(DraftNet),
}

/// The one factory for speculative strategies.
pub fn build(drafter: &Drafter, cfg: &SpecConfig) -> Box<dyn DecodeStrategy> {
    let proposer: Box<dyn Proposer> = match drafter {
        Drafter::Lookup => Box::new(Lookup::new(cfg.lookup_max_ngram)),
        Drafter::Net(net) => {
            Box::new(ModelDraft::new(net.clone(), cfg.cache, cfg.kv_options, cfg.policy.kind() == PolicyKind::Rejection, cfg.verify))
        }
    };
    Box::new(Speculative::new(proposer, cfg.policy, cfg.schedule, cfg.verify))
}

pub struct Speculative {
    proposer: Box<dyn Proposer>,
    policy: Policy,
    k: KController,
    verify: VerifyAttention,
    started: bool,
}

impl Speculative {
    pub fn new(proposer: Box<dyn Proposer>, policy: Policy, schedule: Schedule, verify: VerifyAttention) -> Self {
        Self { proposer, policy, k: KController::new(schedule), verify, started: false }
    }
}

impl DecodeStrategy for Speculative {
    fn start(&mut self) {
        self.started = false;
        self.proposer.reset();
        self.k.reset();
    }

    fn step(&mut self, ctx: &mut StepContext<'_>) -> Result<Step> {
        if !self.started {
            // Prefill both: the target emits the first token, the draft reads the prompt.
            self.started = true;
            let pos = ctx.cache.seq_len();
            let first = ctx.feed_and_sample(pos, pos)?;
            self.proposer.prefill(ctx)?;
            ctx.phases.end(Phase::Prefill)?;
            return Ok(Step { emitted: vec![first], ..Default::default() });
        }
        // Never draft past what the engine still wants: the last token comes from the target.
        let k_asked = self.k.k();
        let k = k_asked.min(ctx.remaining.saturating_sub(1));
        let draft = if k > 0 { self.proposer.propose(ctx, k)? } else { Draft { tokens: vec![], probs: None, forwards: 0 } };
        ctx.phases.end(Phase::Draft)?;

        // The target scores the tokens it has not seen (the last emitted one) plus the draft.
        let start = ctx.cache.seq_len();
        let mut input: Vec<u32> = ctx.tokens[start..].to_vec();
        let fed_before_draft = input.len();
        input.extend_from_slice(&draft.tokens);
        let ids = Tensor::new(input.as_slice(), ctx.device)?.unsqueeze(0)?;
        let mut rows: Vec<Vec<f32>> = if draft.tokens.is_empty() {
            // A plain decode step (the CUDA graph's path on a static cache).
            vec![ctx.model.forward(&ids, start, ctx.cache)?.squeeze(0)?.to_vec1()?]
        } else {
            ctx.model.forward_verify(&ids, start, draft.tokens.len() + 1, self.verify, ctx.cache)?.squeeze(0)?.to_vec2()?
        };
        ctx.phases.end(Phase::Verify)?;

        if let Some(log) = ctx.logits_log.as_deref_mut() {
            log.extend(rows.iter().cloned());
        }
        let verdict = self.judge(ctx, &draft, &mut rows)?;
        let accepted = verdict.accepted;
        // Keep the accepted drafts in the target's cache; the correction token is fed next step.
        ctx.cache.truncate(start + fed_before_draft + accepted)?;
        self.proposer.rollback(ctx.tokens.len() + accepted)?;
        self.k.update(draft.tokens.len(), accepted);
        if let Some(log) = ctx.logits_log.as_deref_mut() {
            // Only the rows of emitted positions stay.
            let keep = log.len() - (rows.len() - accepted - 1);
            log.truncate(keep);
        }
        ctx.phases.end(Phase::Bookkeeping)?;
        let mut emitted = draft.tokens[..accepted].to_vec();
        emitted.push(verdict.next);
        Ok(Step {
            emitted,
            draft: Some(DraftOutcome { k: k_asked, drafted: draft.tokens.len(), accepted, draft_forwards: draft.forwards }),
            next_queued: false,
        })
    }
}

impl Speculative {
    fn judge(&self, ctx: &mut StepContext<'_>, draft: &Draft, rows: &mut [Vec<f32>]) -> Result<verify::Verdict> {
        Ok(judge(self.policy, ctx.sampler, ctx.tokens, &draft.tokens, draft.probs.as_deref(), rows))
    }
}

/// Turns the target's logits at the drafted positions (`drafts.len() + 1` rows after `tokens`)
/// into what `policy` needs and applies it, drawing from the sequence's own sampler: the one
/// verification of the single-sequence strategy and of the batch engine's speculation.
pub fn judge(policy: Policy, sampler: &mut Sampler, tokens: &[u32], drafts: &[u32], draft_probs: Option<&[Vec<f32>]>, rows: &mut [Vec<f32>]) -> verify::Verdict {
    let greedy = sampler.is_greedy();
    let lossy = !policy.kind().is_lossless();
    // Lossy rules judge with real probabilities, at temperature 1 when decoding greedily.
    let judged: Option<Vec<Vec<f32>>> = (lossy && greedy).then(|| rows.iter().map(|r| softmax(r)).collect());
    let mut context = tokens.to_vec();
    let mut target = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter_mut().enumerate() {
        // One-hot at the argmax when greedy (after the repetition penalty, as `next` picks).
        target.push(sampler.distribution(row, &context));
        if let Some(&t) = drafts.get(i) {
            context.push(t);
        }
    }
    let rows = Rows { target: &target, draft: draft_probs, judge: judged.as_deref(), greedy };
    verify(policy, drafts, &rows, &mut || sampler.uniform())
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}
