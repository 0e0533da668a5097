//! Drafting with a network: a second model sharing the target's vocabulary (its own weights,
//! for example the target re-quantized), the target itself (`self`), or the target's first L
//! layers with its final norm and head (`layers:L`, self-speculation without training, as in
//! LayerSkip's early-exit draft, Elhoushi et al. 2024). Each keeps its own KV cache, rolled
//! back with `truncate` after every verification.

use super::{Draft, Proposer};
use crate::decode::sampling::{argmax, sample_index};
use crate::decode::StepContext;
use crate::kv::{self, KvCache, KvKind, KvOptions};
use crate::models::layers::VerifyAttention;
use crate::models::Model;
use anyhow::Result;
use candle_core::Tensor;

/// A loaded draft model, shared by the cases of a sweep (one at a time: the lock is taken per
/// forward pass, uncontended).
pub type SharedModel = std::sync::Arc<std::sync::Mutex<Box<dyn Model>>>;

/// Which network drafts.
#[derive(Clone)]
pub enum DraftNet {
    /// A model of its own.
    Own(SharedModel),
    /// The target (`layers: None`) or its first `layers` layers.
    Target { layers: Option<usize> },
}

pub struct ModelDraft {
    net: DraftNet,
    /// The draft's own cache, built at the first prefill (its layer count and length come
    /// from the model and the run), with the target's strategy and options.
    cache: Option<Box<dyn KvCache>>,
    cache_kind: KvKind,
    kv_options: KvOptions,
    /// Tokens the current cache was sized for.
    capacity: usize,
    /// Whether the verifier needs the draft's distributions (rejection sampling).
    keep_probs: bool,
    /// How multi-token feeds attend (the target's verify mode).
    verify: VerifyAttention,
}

impl ModelDraft {
    pub fn new(net: DraftNet, cache_kind: KvKind, kv_options: KvOptions, keep_probs: bool, verify: VerifyAttention) -> Self {
        Self { net, cache: None, cache_kind, kv_options, capacity: 0, keep_probs, verify }
    }

    fn cache(&mut self) -> Result<&mut Box<dyn KvCache>> {
        self.cache.as_mut().ok_or_else(|| anyhow::anyhow!("the draft proposed before its prefill"))
    }

    /// Last-position logits of `ids` fed at `start` through the draft's cache.
    fn logits(&mut self, target: &dyn Model, ids: &[u32], start: usize, device: &candle_core::Device) -> Result<Vec<f32>> {
        let input = Tensor::new(ids, device)?.unsqueeze(0)?;
        let net = self.net.clone();
        let mode = self.verify;
        let cache = self.cache()?.as_mut();
        // One token goes through `forward` (the CUDA graph's path on a static cache); more
        // (after a rollback: the last accepted draft and the correction) attend as the
        // target's verify pass does, so a `self` draft's cache stays bitwise the target's.
        let run = |model: &dyn Model, cache: &mut dyn KvCache| -> candle_core::Result<Tensor> {
            if ids.len() == 1 {
                model.forward(&input, start, cache)
            } else {
                model.forward_verify(&input, start, 1, mode, cache)?.squeeze(1)
            }
        };
        let logits = match &net {
            DraftNet::Own(model) => {
                let model = model.lock().map_err(|_| anyhow::anyhow!("the draft model's lock is poisoned"))?;
                run(model.as_ref(), cache)?
            }
            DraftNet::Target { layers: None } => run(target, cache)?,
            DraftNet::Target { layers: Some(l) } => target.forward_first_layers(&input, start, *l, mode, cache)?,
        };
        Ok(logits.squeeze(0)?.to_vec1()?)
    }
}

impl Proposer for ModelDraft {
    fn reset(&mut self) {
        if let Some(cache) = self.cache.as_mut() {
            cache.reset();
        }
    }

    fn prefill(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let longest = ctx.tokens.len() + ctx.remaining;
        let layers = match &self.net {
            DraftNet::Own(model) => model.lock().map_err(|_| anyhow::anyhow!("the draft model's lock is poisoned"))?.config().n_layers(),
            DraftNet::Target { layers } => layers.unwrap_or(ctx.model.config().n_layers()),
        };
        // Built once per sweep case; rebuilt only if a longer run needs more preallocated slots.
        if self.cache.is_none() || longest > self.capacity {
            self.cache = Some(kv::build_with(self.cache_kind, self.kv_options, layers, longest));
            self.capacity = longest;
        }
        // The whole prompt in one pass, as the target read it (the same numerics, so a `self`
        // draft's cache equals the target's); the first proposal feeds the first new token.
        self.logits(ctx.model, ctx.tokens, 0, ctx.device)?;
        Ok(())
    }

    fn propose(&mut self, ctx: &mut StepContext<'_>, k: usize) -> Result<Draft> {
        let mut seq = ctx.tokens.to_vec();
        let first = seq.len();
        let mut probs = Vec::new();
        for _ in 0..k {
            // A cache that keeps nothing (none) recomputes from its seq_len, 0.
            let start = self.cache()?.seq_len().min(seq.len() - 1);
            let mut logits = self.logits(ctx.model, &seq[start..], start, ctx.device)?;
            let token = if ctx.sampler.is_greedy() {
                argmax(&logits)
            } else {
                let q = ctx.sampler.distribution(&mut logits, &seq);
                let token = sample_index(&q, ctx.sampler.uniform());
                if self.keep_probs {
                    probs.push(q);
                }
                token
            };
            seq.push(token);
        }
        let keep_probs = self.keep_probs && !ctx.sampler.is_greedy();
        Ok(Draft { tokens: seq.split_off(first), probs: keep_probs.then_some(probs), forwards: k })
    }

    fn rollback(&mut self, len: usize) -> Result<()> {
        let cache = self.cache()?;
        if cache.seq_len() > len {
            cache.truncate(len)?;
        }
        Ok(())
    }
}
