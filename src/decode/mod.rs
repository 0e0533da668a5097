//! Decoding strategies: what the model is fed at each step and which tokens come out. The
//! engine owns the loop and the clocks; a strategy only plans one step. One factory (`build`)
//! turns a `Method` into a boxed strategy.

pub mod dola;
pub mod layer_contrast;
pub mod sampling;
mod sled;
pub mod sled_evolution;
pub mod speculative;
mod standard;

pub use sled::{SledRecompute, SledStride};
pub use standard::Standard;

use sampling::Sampler;
use crate::kv::{KvCache, KvKind};
use crate::models::Model;
use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// What one step produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Tokens emitted this step, in order (several for a speculative step).
    pub emitted: Vec<u32>,
    /// A speculative step's draft and what the target kept of it.
    pub draft: Option<DraftOutcome>,
    /// The model queued the next step on the device before this one's token reached the host
    /// (`Model::greedy_token`'s `ahead`): the engine stamps the token without waiting for the
    /// device, which is busy with the next token's step, not this one's.
    pub next_queued: bool,
}

/// One speculative step: the K asked for, tokens drafted (fewer when lookup finds less or the
/// run ends), tokens accepted, and the draft network's forward passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DraftOutcome {
    pub k: usize,
    pub drafted: usize,
    pub accepted: usize,
    pub draft_forwards: usize,
}

/// The parts a step's time is split into (speculative decoding's breakdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The first step: the target's (and the draft's) prompt.
    Prefill,
    Draft,
    /// The target's forward pass over the draft.
    Verify,
    /// Distributions, the acceptance rule, cache rollback, the next K.
    Bookkeeping,
}

/// The engine's clock, lent to a step: `end(phase)` synchronises the device and charges the
/// time since the previous mark to `phase`. Strategies never read a clock themselves.
pub trait PhaseClock {
    fn end(&mut self, phase: Phase) -> Result<()>;
}

/// A decoding strategy.
pub trait DecodeStrategy: Send {
    /// The KV cache this strategy runs with, given the one the user asked for.
    fn cache_kind(&self, requested: KvKind) -> KvKind {
        requested
    }
    /// A new generation starts (strategies with state of their own reset it here).
    fn start(&mut self) {}
    /// Runs the model for one step over `tokens` (prompt and everything emitted so far).
    fn step(&mut self, ctx: &mut StepContext<'_>) -> Result<Step>;
}

/// What a step may use.
pub struct StepContext<'a> {
    pub model: &'a dyn Model,
    pub cache: &'a mut dyn KvCache,
    pub tokens: &'a [u32],
    pub sampler: &'a mut Sampler,
    pub device: &'a Device,
    /// When set, the logits of every sampled position are appended here (before penalties).
    pub logits_log: Option<&'a mut Vec<Vec<f32>>>,
    /// Tokens the engine still wants, this step's included.
    pub remaining: usize,
    pub phases: &'a mut dyn PhaseClock,
}

impl StepContext<'_> {
    /// Feeds `tokens[from..]` at positions `start_pos..` and samples one token from the last logits.
    pub fn feed_and_sample(&mut self, from: usize, start_pos: usize) -> Result<u32> {
        Ok(self.feed_and_sample_ahead(from, start_pos, false)?.0)
    }

    /// As `feed_and_sample`; with `ahead` (the caller feeds the token it returns next, at the
    /// next position), a model picking greedily on its device may queue that step before
    /// returning, which the `bool` says (`Step::next_queued`).
    pub fn feed_and_sample_ahead(&mut self, from: usize, start_pos: usize, ahead: bool) -> Result<(u32, bool)> {
        // A plain argmax with no logits to keep: where the model can pick it on its device (a
        // first-maximum kernel in Llama's CUDA graph), one id crosses to the host instead of the
        // logits, and no host loop scans them.
        if let ([token], None, true) = (&self.tokens[from..], &self.logits_log, self.sampler.is_plain_argmax()) {
            if let Some(next) = self.model.greedy_token(*token, start_pos, self.cache, ahead) {
                return Ok(next?);
            }
        }
        let logits = match &self.tokens[from..] {
            [token] => self.model.forward_token(*token, start_pos, self.device, self.cache)?,
            fed => self.model.forward(&Tensor::new(fed, self.device)?.unsqueeze(0)?, start_pos, self.cache)?,
        };
        let mut logits: Vec<f32> = logits.squeeze(0)?.to_vec1()?;
        if let Some(log) = self.logits_log.as_deref_mut() {
            log.push(logits.clone());
        }
        Ok((self.sampler.next(&mut logits, self.tokens), false))
    }
}

/// The decoding methods `compare` runs side by side (`--methods`, parsed by clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Method {
    /// Every token, with the requested KV cache (full by default).
    #[value(name = "standard")]
    #[serde(rename = "standard")]
    Standard,
    /// SLED as the seed defines it: the model sees only the last `window` tokens, re-encoded
    /// from position 0 without a cache at every step (`sled` is this one).
    #[value(name = "sled:recompute", alias = "sled")]
    #[serde(rename = "sled:recompute", alias = "sled")]
    SledRecompute,
    /// SLED with a cache: re-encode the last `window` tokens, decode `stride` tokens with the
    /// cache, repeat.
    #[value(name = "sled:stride")]
    #[serde(rename = "sled:stride")]
    SledStride,
    /// Speculative decoding with prompt lookup drafting up to `--k` tokens (lossless).
    #[value(name = "specdec:lookup")]
    #[serde(rename = "specdec:lookup")]
    SpecdecLookup,
    /// Speculative decoding with the model's first quarter of layers as the draft (lossless).
    #[value(name = "specdec:layers")]
    #[serde(rename = "specdec:layers")]
    SpecdecLayers,
    /// Speculative decoding with the model drafting for itself: the machinery's ceiling.
    #[value(name = "specdec:self")]
    #[serde(rename = "specdec:self")]
    SpecdecSelf,
    /// Self Logits Evolution Decoding (Zhang et al. 2024): the final logits evolved towards
    /// what the premature layers point at (`--evolution-*`).
    #[value(name = "sled-evolution")]
    #[serde(rename = "sled-evolution")]
    SledEvolution,
    /// DoLa (Chuang et al. 2024): the final layer contrasted with the most divergent premature
    /// layer (`--dola-layers`).
    #[value(name = "dola")]
    #[serde(rename = "dola")]
    Dola,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::Standard,
        Method::SledRecompute,
        Method::SledStride,
        Method::SpecdecLookup,
        Method::SpecdecLayers,
        Method::SpecdecSelf,
        Method::SledEvolution,
        Method::Dola,
    ];

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::SledRecompute => "sled:recompute",
            Self::SledStride => "sled:stride",
            Self::SpecdecLookup => "specdec:lookup",
            Self::SpecdecLayers => "specdec:layers",
            Self::SpecdecSelf => "specdec:self",
            Self::SledEvolution => "sled-evolution",
            Self::Dola => "dola",
        }
    }

    /// Whether `window` and `stride` change what this method does.
    pub fn uses_window(self) -> bool {
        matches!(self, Self::SledRecompute | Self::SledStride)
    }
    /// Whether `k` (tokens drafted per step) does.
    pub fn uses_k(self) -> bool {
        matches!(self, Self::SpecdecLookup | Self::SpecdecLayers | Self::SpecdecSelf)
    }
    pub fn uses_stride(self) -> bool {
        matches!(self, Self::SledStride)
    }
    /// Whether it contrasts layers (`--evolution-*`, `--dola-layers`, `--premature-*`).
    pub fn uses_layers(self) -> bool {
        matches!(self, Self::SledEvolution | Self::Dola)
    }
}

/// Settings a method may take.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodParams {
    pub window: usize,
    pub stride: usize,
    /// Speculative methods: what they run with (their K, policy and caches).
    pub speculative: Option<SpecMethodParams>,
    /// Layer-contrast methods: their settings (the method picks SLED's or DoLa's part).
    pub contrast: Option<layer_contrast::ContrastConfig>,
}

impl MethodParams {
    /// SLED's window and stride, no speculative settings.
    pub fn sled(window: usize, stride: usize) -> Self {
        Self { window, stride, speculative: None, contrast: None }
    }
}

/// A speculative method's K, policy and cache, and the model's layer count (`specdec:layers`
/// drafts with a quarter of them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpecMethodParams {
    pub k: usize,
    pub config: speculative::SpecConfig,
    pub n_layers: usize,
}

/// The one factory from method to strategy. Parameters are validated by the caller.
pub fn build(method: Method, params: &MethodParams) -> Result<Box<dyn DecodeStrategy>> {
    use speculative::{DraftNet, DraftSource, Drafter};
    let spec = |drafter: Drafter| match params.speculative {
        Some(s) => Ok(speculative::build(&drafter, &s.config)),
        None => anyhow::bail!("{}: a speculative method needs its K, policy and cache settings", method.name()),
    };
    Ok(match method {
        Method::Standard => Box::new(Standard),
        Method::SledRecompute => Box::new(SledRecompute::new(params.window)),
        Method::SledStride => Box::new(SledStride::new(params.window, params.stride)),
        Method::SpecdecLookup => spec(Drafter::Lookup)?,
        Method::SpecdecSelf => spec(Drafter::Net(DraftNet::Target { layers: None }))?,
        Method::SpecdecLayers => {
            let layers = params.speculative.and_then(|s| DraftSource::Layers(None).draft_layers(s.n_layers));
            spec(Drafter::Net(DraftNet::Target { layers }))?
        }
        Method::SledEvolution | Method::Dola => match &params.contrast {
            Some(c) => Box::new(layer_contrast::LayerContrast::new(c.clone())),
            None => anyhow::bail!("{}: a layer-contrast method needs its settings", method.name()),
        },
    })
}
