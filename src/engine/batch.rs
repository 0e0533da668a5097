//! Continuous batching (Orca, Yu et al. 2022; vLLM, Kwon et al. 2023): many sequences decode
//! together, one forward pass per step (`Model::forward_batch`), their keys and values in one
//! shared paged pool. Each step the scheduler gives every running sequence its next tokens (one
//! while decoding, a prompt chunk while prefilling) within a token budget, then admits waiting
//! sequences first come first served while blocks and batch slots last. When the pool cannot
//! hold the next token of a running sequence, the latest admitted one is preempted: its blocks
//! are freed and it waits at the head of the queue to be recomputed from its prompt and the
//! tokens it already has (vLLM's recompute preemption), so its output is unchanged.
//!
//! The engine owns the clock, as the one-sequence engine does: every step ends with a device
//! synchronisation, and its events carry that instant.

use super::batch_spec::{verify_draft, BatchSpeculation, SpecCounters};
use super::device::synchronize;
use super::generate::{Engine, GenerateRequest, StopReason};
use crate::decode::sampling::{descending_ranks, first_max_rows, Sampler, SamplingConfig};
use crate::decode::speculative::KController;
use crate::kv::block_pool::BlockTable;
use crate::kv::PagedKvPool;
use crate::models::batch::BatchPart;
use crate::models::Model;
use anyhow::{Context, Result};
use candle_core::Device;
use std::collections::VecDeque;
use std::time::Instant;

/// How big a step may get and how much KV memory the pool has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Sequences decoding at once (`--max-batch`).
    pub max_batch: usize,
    /// Tokens one step feeds at most, decodes and prompt chunks together (vLLM's
    /// `max_num_batched_tokens`): bounds a step's time, so decodes keep flowing while a long
    /// prompt is prefilled chunk by chunk.
    pub max_step_tokens: usize,
    /// Token slots per KV block.
    pub block_size: usize,
    /// Blocks in the pool (`--kv-blocks`).
    pub kv_blocks: usize,
}

/// One sequence to generate.
#[derive(Debug, Clone)]
pub struct SeqRequest {
    pub prompt_ids: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    pub stop_at_eos: bool,
}

/// A sequence's handle, unique within an engine.
pub type SeqId = u64;

/// What a step did to a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// The sequence's next token was sampled; `kv_bytes` is what its blocks hold then.
    Token { seq: SeqId, token: u32, kv_bytes: u64 },
    /// The sequence ended (after its last `Token`); its blocks are free.
    Finished { seq: SeqId, reason: StopReason },
    /// The sequence lost its blocks to make room and waits to be recomputed.
    Preempted { seq: SeqId },
}

/// One step: what happened, and when its results were ready (after a device sync).
#[derive(Debug, Clone)]
pub struct StepReport {
    pub events: Vec<SeqEvent>,
    pub started: Instant,
    pub finished: Instant,
    /// Prompt tokens fed this step (prefill chunks, recomputation after preemption included).
    pub prefill_tokens: usize,
    /// Sequences that fed one generated token.
    pub decode_tokens: usize,
}

/// The pool and queue right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchUsage {
    pub running: usize,
    pub waiting: usize,
    pub blocks_used: usize,
    pub blocks_free: usize,
    /// Bytes of the pool's key and value tensors (all blocks; allocated at the first step).
    pub kv_pool_bytes: u64,
    /// Bytes of the blocks in use.
    pub kv_used_bytes: u64,
    pub preemptions: u64,
    /// Speculation's counters; `None` when the engine does not speculate.
    pub spec: Option<SpecCounters>,
}

struct Seq {
    id: SeqId,
    req: SeqRequest,
    /// Prompt and generated tokens.
    tokens: Vec<u32>,
    generated: usize,
    /// Positions whose keys and values are in the pool.
    computed: usize,
    table: BlockTable,
    sampler: Sampler,
    /// Tokens drafted for this step, fed after the last sampled one (speculation only).
    draft: Vec<u32>,
    /// How many tokens the sequence drafts next (speculation only).
    draft_k: Option<KController>,
}

impl Seq {
    /// Tokens not yet fed: the prompt (or its rest) while prefilling, the last sampled one after.
    fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }

    /// Whether the sequence's only pending token is one it generated.
    fn decoding(&self) -> bool {
        self.generated > 0 && self.pending() == 1
    }
}

/// A part's share of a step's output: its logits, or its token already picked on the device.
enum Picked {
    Row(Vec<f32>),
    Token(u32),
}

/// Runs many sequences through one model at once.
pub struct BatchEngine<'m> {
    model: &'m dyn Model,
    device: Device,
    pool: PagedKvPool,
    limits: BatchLimits,
    waiting: VecDeque<Seq>,
    /// In admission order (the last one is preempted first).
    running: Vec<Seq>,
    next_id: SeqId,
    eos: Vec<u32>,
    preemptions: u64,
    speculation: Option<BatchSpeculation>,
    spec: SpecCounters,
    /// `descending_ranks` over the logits' width, for greedy steps' picks on the device (made
    /// at the first such step).
    ranks: Option<candle_core::Tensor>,
}

impl<'m> BatchEngine<'m> {
    pub fn new(model: &'m dyn Model, device: &Device, limits: BatchLimits) -> Result<Self> {
        if !model.has_batch() {
            crate::bail_input!("this model has no batched forward pass (GPT-2 and the Llama family have)");
        }
        if limits.max_batch == 0 || limits.max_step_tokens == 0 || limits.block_size == 0 || limits.kv_blocks == 0 {
            crate::bail_input!("--max-batch, --max-step-tokens, --kv-block-size and --kv-blocks must be at least 1 (got {limits:?})");
        }
        Ok(Self {
            model,
            device: device.clone(),
            pool: PagedKvPool::new(model.config().n_layers(), limits.block_size, limits.kv_blocks),
            limits,
            waiting: VecDeque::new(),
            running: Vec::new(),
            next_id: 0,
            eos: model.config().eos_token_ids().to_vec(),
            preemptions: 0,
            speculation: None,
            spec: SpecCounters::default(),
            ranks: None,
        })
    }

    /// Decoding sequences draft by prompt lookup and verify their drafts in the step
    /// (`batch_spec`).
    pub fn with_speculation(mut self, speculation: BatchSpeculation) -> Self {
        self.speculation = Some(speculation);
        self
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Queues a sequence after checking it against the model and the pool: a sequence whose
    /// whole length could never fit the pool is refused here rather than preempted forever.
    pub fn submit(&mut self, req: SeqRequest) -> Result<SeqId> {
        let check = GenerateRequest { prompt_ids: &req.prompt_ids, max_new_tokens: req.max_new_tokens, sampling: req.sampling, stop_at_eos: req.stop_at_eos };
        Engine::new(self.model, &self.device).validate(&check)?;
        // The last generated token is never fed, so its position needs no slot.
        let positions = req.prompt_ids.len() + req.max_new_tokens - 1;
        if self.pool.blocks_for(positions) > self.pool.total_blocks() {
            crate::bail_input!(
                "a sequence of {positions} positions needs {} KV blocks of {}, the pool has {}: raise --kv-blocks or lower the tokens asked for",
                self.pool.blocks_for(positions),
                self.pool.block_size(),
                self.pool.total_blocks()
            );
        }
        let id = self.next_id;
        self.next_id += 1;
        let sampler = Sampler::new(req.sampling);
        let draft_k = self.speculation.map(|s| s.controller());
        self.waiting.push_back(Seq { id, tokens: req.prompt_ids.clone(), req, generated: 0, computed: 0, table: BlockTable::default(), sampler, draft: Vec::new(), draft_k });
        Ok(id)
    }

    /// Drops a sequence wherever it is and frees its blocks; false if it is unknown (finished).
    pub fn cancel(&mut self, id: SeqId) -> bool {
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let mut seq = self.running.remove(i);
            self.pool.release(&mut seq.table);
            return true;
        }
        if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
            self.waiting.remove(i);
            return true;
        }
        false
    }

    /// Whether nothing is running or waiting.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    pub fn usage(&self) -> BatchUsage {
        let blocks_used = self.pool.total_blocks() - self.pool.free_blocks();
        BatchUsage {
            running: self.running.len(),
            waiting: self.waiting.len(),
            blocks_used,
            blocks_free: self.pool.free_blocks(),
            kv_pool_bytes: self.pool.allocated_bytes(),
            kv_used_bytes: (blocks_used * self.pool.block_size()) as u64 * self.pool.bytes_per_slot(),
            preemptions: self.preemptions,
            spec: self.speculation.map(|_| self.spec),
        }
    }

    /// Frees the last running sequence's blocks and puts it at the head of the queue.
    fn preempt_last(&mut self, events: &mut Vec<SeqEvent>) {
        if let Some(mut seq) = self.running.pop() {
            self.pool.release(&mut seq.table);
            seq.computed = 0;
            seq.draft.clear();
            self.preemptions += 1;
            events.push(SeqEvent::Preempted { seq: seq.id });
            self.waiting.push_front(seq);
        }
    }

    /// Decides this step's tokens per running sequence (index-aligned with `running`).
    fn schedule(&mut self, events: &mut Vec<SeqEvent>) -> Vec<usize> {
        let mut budget = self.limits.max_step_tokens;
        let mut counts = Vec::with_capacity(self.running.len());
        let mut i = 0;
        while i < self.running.len() {
            let mut n = self.running[i].pending().min(budget);
            if n == 0 {
                counts.push(0);
                i += 1;
                continue;
            }
            let seq = &mut self.running[i];
            if let (Some(spec), Some(k), true) = (self.speculation, seq.draft_k.as_ref(), seq.decoding()) {
                seq.draft = spec.propose(&seq.tokens, k.k(), seq.req.max_new_tokens - seq.generated, budget - 1);
                n += seq.draft.len();
            }
            // Make room by giving up the draft, then by preempting from the back; the
            // sequence itself goes last.
            loop {
                let seq = &mut self.running[i];
                if self.pool.reserve(&mut seq.table, seq.computed + n) {
                    counts.push(n);
                    budget -= n;
                    i += 1;
                    break;
                }
                if !seq.draft.is_empty() {
                    n -= seq.draft.len();
                    seq.draft.clear();
                    continue;
                }
                self.preempt_last(events);
                if i == self.running.len() {
                    break;
                }
            }
        }
        // Admit waiting sequences while blocks, batch slots and budget last.
        while budget > 0 && self.running.len() < self.limits.max_batch {
            let Some(seq) = self.waiting.front_mut() else { break };
            let n = seq.pending().min(budget);
            if !self.pool.reserve(&mut seq.table, seq.computed + n) {
                break;
            }
            let seq = self.waiting.pop_front().expect("front exists");
            self.running.push(seq);
            counts.push(n);
            budget -= n;
        }
        counts
    }

    /// Runs one step; an idle engine returns an empty report at once.
    pub fn step(&mut self) -> Result<StepReport> {
        let started = Instant::now();
        let mut events = Vec::new();
        let counts = self.schedule(&mut events);
        let (mut prefill_tokens, mut decode_tokens) = (0, 0);
        // Each part's tokens: what the sequence has not fed yet, then its draft.
        let inputs: Vec<Vec<u32>> = self
            .running
            .iter()
            .zip(&counts)
            .map(|(seq, &n)| match n {
                0 => Vec::new(),
                _ => seq.tokens[seq.computed..seq.computed + n - seq.draft.len()].iter().chain(&seq.draft).copied().collect(),
            })
            .collect();
        let mut parts = Vec::new();
        for ((seq, &n), ids) in self.running.iter_mut().zip(&counts).zip(&inputs) {
            if n == 0 {
                continue;
            }
            if seq.decoding() {
                decode_tokens += 1;
            } else {
                prefill_tokens += n;
            }
            parts.push(BatchPart { ids, start: seq.computed, table: &mut seq.table, logit_rows: 1 + seq.draft.len() });
        }
        if parts.is_empty() {
            return Ok(StepReport { events, started, finished: Instant::now(), prefill_tokens, decode_tokens });
        }
        let logits = self.model.forward_batch(&mut parts, &mut self.pool).context("batched step")?;
        drop(parts);
        // A step whose every token is a plain argmax picks them where the logits are: on a GPU
        // B token ids cross to the host instead of B x vocab logits (`first_max_rows`, the
        // sampler's first-maximum rule). The CPU takes the same path, so the batched-equals-alone
        // tests run it.
        let on_device_argmax = self.running.iter().zip(&counts).all(|(s, &n)| n == 0 || (s.draft.is_empty() && s.sampler.is_plain_argmax()));
        let (mut rows, mut picks) = (Vec::new().into_iter(), Vec::new().into_iter());
        if on_device_argmax {
            let vocab = logits.dim(candle_core::D::Minus1)?;
            if self.ranks.as_ref().map(|r| r.elem_count()) != Some(vocab) {
                self.ranks = Some(descending_ranks(vocab, &self.device)?);
            }
            let ranks = self.ranks.as_ref().context("ranks made above")?;
            picks = first_max_rows(&logits, ranks).context("reading the step's tokens")?.into_iter();
        } else {
            rows = logits.to_vec2::<f32>().context("reading the step's logits")?.into_iter();
        }
        synchronize(&self.device)?;
        let finished = Instant::now();
        let mut done = Vec::new();
        let block_bytes = self.pool.block_size() as u64 * self.pool.bytes_per_slot();
        for (index, (seq, &n)) in self.running.iter_mut().zip(&counts).enumerate() {
            if n == 0 {
                continue;
            }
            let emitted = if seq.draft.is_empty() {
                let picked = match on_device_argmax {
                    true => Picked::Token(picks.next().context("a step returned fewer tokens than sequences")?),
                    false => Picked::Row(rows.next().context("a step returned fewer logit rows than sequences")?),
                };
                seq.computed += n;
                if seq.pending() > 0 {
                    continue; // a prompt chunk that does not reach the end samples nothing
                }
                vec![match picked {
                    Picked::Token(token) => token,
                    Picked::Row(mut row) => seq.sampler.next(&mut row, &seq.tokens),
                }]
            } else {
                let draft = std::mem::take(&mut seq.draft);
                let mut verified: Vec<Vec<f32>> = rows.by_ref().take(draft.len() + 1).collect();
                if verified.len() != draft.len() + 1 {
                    anyhow::bail!("a step returned fewer logit rows than its drafts need");
                }
                let (emitted, accepted) = verify_draft(&mut seq.sampler, &seq.tokens, &draft, &mut verified);
                if let Some(k) = seq.draft_k.as_mut() {
                    k.update(draft.len(), accepted);
                }
                // The last token and the accepted drafts stay in the pool; the rest is given back.
                seq.computed += 1 + accepted;
                self.pool.truncate(&mut seq.table, seq.computed);
                self.spec.drafts += 1;
                self.spec.draft_tokens += draft.len() as u64;
                self.spec.accepted_tokens += accepted as u64;
                emitted
            };
            for token in emitted {
                seq.tokens.push(token);
                seq.generated += 1;
                events.push(SeqEvent::Token { seq: seq.id, token, kv_bytes: seq.table.blocks.len() as u64 * block_bytes });
                let reason = if seq.req.stop_at_eos && self.eos.contains(&token) {
                    Some(StopReason::Eos)
                } else if seq.generated == seq.req.max_new_tokens {
                    Some(StopReason::MaxNewTokens)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    events.push(SeqEvent::Finished { seq: seq.id, reason });
                    done.push(index);
                    break;
                }
            }
        }
        for index in done.into_iter().rev() {
            let mut seq = self.running.remove(index);
            self.pool.release(&mut seq.table);
        }
        Ok(StepReport { events, started, finished, prefill_tokens, decode_tokens })
    }
}
