//! A whole batch run to completion, as llama.cpp's `llama-batched-bench` measures one: every
//! sequence submitted at once, steps until all finish, each sequence's tokens timestamped at the
//! end of the step that sampled them (after a device sync), plus a record per step. Each
//! sequence becomes a `Generation`, so the harness turns it into a run like any other.

use super::batch::{BatchEngine, SeqEvent, SeqId, SeqRequest};
use super::device_memory;
use super::generate::{Generation, PhaseTimes, StopReason, TokenEvent};
use crate::kv::KvStats;
use crate::measure::memory::RssSampler;
pub use crate::measure::steps::StepRecord;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::time::Instant;

/// What a batch run did, per sequence and per step.
#[derive(Debug, Clone)]
pub struct BatchRun {
    /// One per request, in submission order.
    pub generations: Vec<Generation>,
    pub steps: Vec<StepRecord>,
    pub preemptions: u64,
    /// Bytes of the pool's tensors, and the most bytes in use at the end of any step.
    pub kv_pool_bytes: u64,
    pub peak_kv_used_bytes: u64,
    pub peak_rss_bytes: u64,
    pub peak_device_memory_bytes: Option<u64>,
}

impl BatchRun {
    /// Time from the start until every sequence had its first token (the prefill phase; with
    /// chunked prefill it holds some early sequences' decodes too).
    pub fn prefill_phase_ns(&self) -> u64 {
        self.generations.iter().filter_map(|g| g.events.first()).map(|e| e.t_ns).max().unwrap_or(0)
    }

    /// Time from the start until the last token.
    pub fn total_ns(&self) -> u64 {
        self.steps.last().map_or(0, |s| s.end_ns)
    }

    /// Generated tokens fed by steps after the prefill phase (llama-batched-bench's B x TG).
    pub fn decode_phase_tokens(&self) -> usize {
        let end = self.prefill_phase_ns();
        self.steps.iter().filter(|s| s.end_ns > end).map(|s| s.decode_tokens).sum()
    }
}

/// Submits every request to an idle engine and steps until all are done.
pub fn run_to_completion(engine: &mut BatchEngine, requests: &[SeqRequest]) -> Result<BatchRun> {
    if !engine.is_idle() {
        anyhow::bail!("a batch run needs an idle engine");
    }
    let device = engine.device().clone();
    let ids: Vec<SeqId> = requests.iter().map(|r| engine.submit(r.clone())).collect::<Result<_>>()?;
    let index: HashMap<SeqId, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut events: Vec<Vec<TokenEvent>> = vec![Vec::new(); requests.len()];
    let mut stops = vec![StopReason::MaxNewTokens; requests.len()];
    let mut steps = Vec::new();
    let mut peak_kv_used_bytes = 0;
    device_memory::reset_peak(&device)?;
    let rss = RssSampler::start();
    super::device::synchronize(&device)?;
    let start = Instant::now();
    while !engine.is_idle() {
        let step = engine.step().with_context(|| format!("step {}", steps.len()))?;
        let end_ns = (step.finished - start).as_nanos() as u64;
        for event in &step.events {
            match *event {
                SeqEvent::Token { seq, token, kv_bytes } => events[index[&seq]].push(TokenEvent { token_id: token, t_ns: end_ns, kv_cache_bytes: kv_bytes }),
                SeqEvent::Finished { seq, reason } => stops[index[&seq]] = reason,
                SeqEvent::Preempted { .. } => {}
            }
        }
        let usage = engine.usage();
        peak_kv_used_bytes = peak_kv_used_bytes.max(usage.kv_used_bytes);
        steps.push(StepRecord {
            end_ns,
            duration_ns: (step.finished - step.started).as_nanos() as u64,
            prefill_tokens: step.prefill_tokens,
            decode_tokens: step.decode_tokens,
            blocks_used: usage.blocks_used,
        });
    }
    let peak_rss_bytes = rss.finish();
    let peak_device_memory_bytes = device_memory::peak_bytes(&device)?;
    let device_memory = device_memory::snapshot(&device)?;
    let usage = engine.usage();
    let generations = requests
        .iter()
        .zip(events)
        .zip(stops)
        .map(|((req, events), stop_reason)| {
            let held = events.last().map_or(0, |e| e.kv_cache_bytes);
            let tokens_held = (req.prompt_ids.len() + events.len()).saturating_sub(1);
            Generation {
                prompt_ids: req.prompt_ids.clone(),
                generated_ids: events.iter().map(|e| e.token_id).collect(),
                events,
                stop_reason,
                drafts: vec![],
                phases: PhaseTimes::default(),
                kv: KvStats { kv_cache_bytes: held, tokens_held, ..KvStats::default() },
                peak_rss_bytes,
                peak_device_memory_bytes,
                device_memory,
                logits: vec![],
            }
        })
        .collect();
    Ok(BatchRun { generations, steps, preemptions: usage.preemptions, kv_pool_bytes: usage.kv_pool_bytes, peak_kv_used_bytes, peak_rss_bytes, peak_device_memory_bytes })
}
