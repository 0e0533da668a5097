//! Prefill and decode loop with device-synchronised timestamps per token, peak RSS sampled
//! while running, and exact KV bytes read from the cache at the end.

use super::device::synchronize;
use super::device_memory::{self, DeviceMemory};
use crate::decode::sampling::{Sampler, SamplingConfig};
use crate::decode::{DecodeStrategy, DraftOutcome, Phase, PhaseClock, Standard, StepContext};
use crate::kv::{KvCache, KvStats};
use crate::measure::memory::RssSampler;
use crate::models::Model;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::time::Instant;

/// One generation's inputs.
#[derive(Debug, Clone)]
pub struct GenerateRequest<'a> {
    pub prompt_ids: &'a [u32],
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    /// Stop when the model emits an end-of-sequence token.
    pub stop_at_eos: bool,
}

/// A token, when it was ready (ns since the run started, after a device sync) and the KV
/// cache's exact size at that moment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TokenEvent {
    pub token_id: u32,
    pub t_ns: u64,
    pub kv_cache_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    MaxNewTokens,
}

/// One generation's outputs and raw timings.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    /// One event per generated token; the first one ends the prefill.
    pub events: Vec<TokenEvent>,
    pub stop_reason: StopReason,
    /// Every speculative step's draft, in order (empty for other strategies).
    pub drafts: Vec<DraftOutcome>,
    /// Time per phase, where the strategy marks phases (speculative decoding).
    pub phases: PhaseTimes,
    /// Cache contents when generation ended.
    pub kv: KvStats,
    pub peak_rss_bytes: u64,
    /// Peak bytes this process held on the GPU during the run (CUDA; `None` elsewhere).
    pub peak_device_memory_bytes: Option<u64>,
    /// The GPU's free and total memory when the run ended (CUDA; `None` elsewhere).
    #[serde(skip)]
    pub device_memory: Option<DeviceMemory>,
    /// Logits of every sampled position, when `Engine::keep_logits` asked for them.
    #[serde(skip)]
    pub logits: Vec<Vec<f32>>,
}

/// Nanoseconds charged to each phase of the steps, device-synchronised at every mark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PhaseTimes {
    pub prefill_ns: u64,
    pub draft_ns: u64,
    pub verify_ns: u64,
    pub bookkeeping_ns: u64,
}

/// The engine's `PhaseClock`: syncs the device, then charges the time since the last mark.
struct PhaseTimer<'d> {
    device: &'d Device,
    last: Instant,
    times: PhaseTimes,
}

impl PhaseClock for PhaseTimer<'_> {
    fn end(&mut self, phase: Phase) -> Result<()> {
        synchronize(self.device)?;
        let now = Instant::now();
        let ns = (now - self.last).as_nanos() as u64;
        self.last = now;
        let slot = match phase {
            Phase::Prefill => &mut self.times.prefill_ns,
            Phase::Draft => &mut self.times.draft_ns,
            Phase::Verify => &mut self.times.verify_ns,
            Phase::Bookkeeping => &mut self.times.bookkeeping_ns,
        };
        *slot += ns;
        Ok(())
    }
}

/// Summary timings of one generation (vLLM's names where the quantity is the same).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Timings {
    pub ttft_ms: f64,
    /// Mean gap between generated tokens after the first.
    pub tpot_ms: f64,
    /// Every inter-token gap.
    pub itl_ms: Vec<f64>,
    pub e2e_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
}

impl Generation {
    pub fn timings(&self) -> Timings {
        let ms = |ns: u64| ns as f64 / 1e6;
        let ttft_ms = self.events.first().map_or(0.0, |e| ms(e.t_ns));
        let e2e_ms = self.events.last().map_or(0.0, |e| ms(e.t_ns));
        let itl_ms: Vec<f64> = self.events.windows(2).map(|w| ms(w[1].t_ns - w[0].t_ns)).collect();
        let decode_ms: f64 = itl_ms.iter().sum();
        let tpot_ms = if itl_ms.is_empty() { 0.0 } else { decode_ms / itl_ms.len() as f64 };
        Timings {
            ttft_ms,
            tpot_ms,
            e2e_ms,
            prefill_tokens_per_s: if ttft_ms > 0.0 { self.prompt_ids.len() as f64 / (ttft_ms / 1e3) } else { 0.0 },
            decode_tokens_per_s: if decode_ms > 0.0 { itl_ms.len() as f64 / (decode_ms / 1e3) } else { 0.0 },
            itl_ms,
        }
    }
}

/// Runs one model on one device.
pub struct Engine<'a> {
    pub model: &'a dyn Model,
    pub device: Device,
    /// Keep every step's logits in the `Generation` (numerics checks; the copy is timed too).
    pub keep_logits: bool,
}

impl<'a> Engine<'a> {
    pub fn new(model: &'a dyn Model, device: &Device) -> Self {
        Self { model, device: device.clone(), keep_logits: false }
    }

    /// Checks a request against the model before any work: non-empty prompt, at least one new
    /// token, and everything inside the context window.
    pub fn validate(&self, req: &GenerateRequest) -> Result<()> {
        let window = self.model.config().context_window();
        if req.prompt_ids.is_empty() {
            crate::bail_input!("the prompt is empty: pass some text with --prompt");
        }
        if req.max_new_tokens == 0 {
            crate::bail_input!("--max-new-tokens 0: generate at least 1 token");
        }
        let vocab = self.model.config().vocab_size();
        if let Some(bad) = req.prompt_ids.iter().find(|&&id| id as usize >= vocab) {
            crate::bail_input!(
                "token id {bad} is outside the model's vocabulary of {vocab}: the ids come from another tokenizer or a corrupt file"
            );
        }
        if req.prompt_ids.len() >= window {
            crate::bail_input!(
                "the prompt is {} tokens, longer than the model's context window of {window}: shorten the prompt",
                req.prompt_ids.len()
            );
        }
        if req.prompt_ids.len() + req.max_new_tokens > window {
            crate::bail_input!(
                "prompt ({}) + --max-new-tokens ({}) exceeds the context window of {window}: lower --max-new-tokens to {}",
                req.prompt_ids.len(),
                req.max_new_tokens,
                window - req.prompt_ids.len()
            );
        }
        let vocab = self.model.config().vocab_size() as u32;
        if let Some(bad) = req.prompt_ids.iter().find(|&&t| t >= vocab) {
            crate::bail_input!("prompt token id {bad} is outside the vocabulary of {vocab}");
        }
        req.sampling.validate()
    }

    /// Generates from a prompt with standard decoding. `on_token` sees each token after its
    /// timestamp is taken.
    pub fn generate(&self, cache: &mut dyn KvCache, req: &GenerateRequest, on_token: &mut dyn FnMut(u32)) -> Result<Generation> {
        self.generate_with(&mut Standard, cache, req, on_token)
    }

    /// Generates with a decoding strategy. The loop is the timed path: it only runs steps,
    /// synchronises, reads the clock and the cache size, and records.
    pub fn generate_with(
        &self,
        strategy: &mut dyn DecodeStrategy,
        cache: &mut dyn KvCache,
        req: &GenerateRequest,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generation> {
        cache.reset();
        self.run(strategy, cache, req, on_token)
    }

    /// `generate_with` on a cache that already holds the keys and values of the prompt's
    /// first `cache.seq_len()` tokens (a chat's earlier turns): only the rest is prefilled.
    /// The caller keeps at least one prompt token out of the cache, so the first step has
    /// something to feed.
    pub fn generate_continuing(
        &self,
        strategy: &mut dyn DecodeStrategy,
        cache: &mut dyn KvCache,
        req: &GenerateRequest,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generation> {
        if cache.seq_len() >= req.prompt_ids.len() {
            anyhow::bail!("the cache holds {} tokens of a {}-token prompt: keep at least one to feed", cache.seq_len(), req.prompt_ids.len());
        }
        self.run(strategy, cache, req, on_token)
    }

    fn run(
        &self,
        strategy: &mut dyn DecodeStrategy,
        cache: &mut dyn KvCache,
        req: &GenerateRequest,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generation> {
        self.validate(req)?;
        let eos = self.model.config().eos_token_ids().to_vec();
        let mut sampler = Sampler::new(req.sampling);
        let mut tokens = req.prompt_ids.to_vec();
        let mut events = Vec::with_capacity(req.max_new_tokens);
        let mut drafts = Vec::new();
        let mut stop_reason = StopReason::MaxNewTokens;
        let mut logits = Vec::new();
        strategy.start();
        device_memory::reset_peak(&self.device)?;
        let rss = RssSampler::start();
        synchronize(&self.device)?;
        let start = Instant::now();
        let mut phases = PhaseTimer { device: &self.device, last: start, times: PhaseTimes::default() };
        'decode: while events.len() < req.max_new_tokens {
            phases.last = Instant::now();
            let step = strategy
                .step(&mut StepContext {
                    model: self.model,
                    cache: &mut *cache,
                    tokens: &tokens,
                    sampler: &mut sampler,
                    device: &self.device,
                    logits_log: self.keep_logits.then_some(&mut logits),
                    remaining: req.max_new_tokens - events.len(),
                    phases: &mut phases,
                })
                .context("decode step")?;
            if !step.next_queued {
                synchronize(&self.device)?;
            }
            let t_ns = start.elapsed().as_nanos() as u64;
            let kv_cache_bytes = cache.stats().kv_cache_bytes;
            drafts.extend(step.draft);
            for token_id in step.emitted {
                events.push(TokenEvent { token_id, t_ns, kv_cache_bytes });
                tokens.push(token_id);
                on_token(token_id);
                if req.stop_at_eos && eos.contains(&token_id) {
                    stop_reason = StopReason::Eos;
                    break 'decode;
                }
                if events.len() == req.max_new_tokens {
                    break 'decode;
                }
            }
        }
        let peak_rss_bytes = rss.finish();
        let peak_device_memory_bytes = device_memory::peak_bytes(&self.device)?;
        let device_memory = device_memory::snapshot(&self.device)?;
        Ok(Generation {
            prompt_ids: req.prompt_ids.to_vec(),
            generated_ids: tokens[req.prompt_ids.len()..].to_vec(),
            events,
            stop_reason,
            drafts,
            phases: phases.times,
            kv: cache.stats(),
            peak_rss_bytes,
            peak_device_memory_bytes,
            device_memory,
            logits,
        })
    }

    /// Log-probabilities of the next token after `context`, then after each token of
    /// `continuation` fed one at a time through `cache` (teacher forcing step by step, so
    /// evicting and quantizing caches act as they do while decoding). Row `i` predicts
    /// `continuation[i]`; the last token of the continuation is not fed.
    pub fn teacher_force_steps(&self, cache: &mut dyn KvCache, context: &[u32], continuation: &[u32]) -> Result<Vec<Vec<f32>>> {
        cache.reset();
        let mut tokens = context.to_vec();
        let mut rows = Vec::with_capacity(continuation.len());
        for i in 0..continuation.len() {
            if i > 0 {
                tokens.push(continuation[i - 1]);
            }
            // A cache that keeps nothing (none) makes the model recompute from its seq_len.
            let start = cache.seq_len();
            let input = Tensor::new(&tokens[start..], &self.device)?.unsqueeze(0)?;
            let logits = self.model.forward(&input, start, cache)?.squeeze(0)?.to_dtype(candle_core::DType::F32)?;
            rows.push(crate::models::layers::log_softmax(&logits)?.to_vec1::<f32>()?);
        }
        Ok(rows)
    }

    /// Logits `[t, vocab]` for every position of `ids`, fed in one pass (teacher forcing).
    pub fn teacher_force(&self, cache: &mut dyn KvCache, ids: &[u32]) -> Result<Tensor> {
        cache.reset();
        let input = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        Ok(self.model.forward_all(&input, 0, cache)?.squeeze(0)?)
    }

    /// `log p(ids[i] | ids[..i])` for i in 1..len, in one pass over a full cache: the gather
    /// runs where the logits are, so only one value per position crosses to the host.
    pub fn token_log_probs(&self, ids: &[u32]) -> Result<Vec<f64>> {
        if ids.len() < 2 {
            return Ok(vec![]);
        }
        let mut cache = crate::kv::build(crate::kv::KvKind::Full, self.model.config().n_layers(), ids.len());
        let logits = self.teacher_force(cache.as_mut(), &ids[..ids.len() - 1])?.to_dtype(candle_core::DType::F32)?;
        let log_probs = crate::models::layers::log_softmax(&logits)?;
        let next = Tensor::new(&ids[1..], &self.device)?.unsqueeze(1)?;
        let picked: Vec<f32> = log_probs.gather(&next, 1)?.squeeze(1)?.to_vec1()?;
        Ok(picked.into_iter().map(f64::from).collect())
    }
}
