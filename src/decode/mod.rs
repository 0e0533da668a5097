//! Decoding strategies: what the model is fed at each step and which tokens come out. The
//! engine owns the loop and the clocks; a strategy only plans one step. One factory (`build`)
//! turns a `Method` into a boxed strategy.

pub mod sampling;
mod sled;
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
    /// Tokens emitted this step, in order (one for every strategy here).
    pub emitted: Vec<u32>,
    /// Draft tokens proposed and accepted (speculative strategies; 0 otherwise).
    pub drafted: usize,
    pub accepted: usize,
}

/// A decoding strategy.
pub trait DecodeStrategy: Send {
    /// The KV cache this strategy runs with, given the one the user asked for.
    fn cache_kind(&self, requested: KvKind) -> KvKind {
        requested
    }
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
}

impl StepContext<'_> {
    /// Feeds `tokens[from..]` at positions `start_pos..` and samples one token from the last logits.
    pub fn feed_and_sample(&mut self, from: usize, start_pos: usize) -> Result<u32> {
        let input = Tensor::new(&self.tokens[from..], self.device)?.unsqueeze(0)?;
        let logits = self.model.forward(&input, start_pos, self.cache)?;
        let mut logits: Vec<f32> = logits.squeeze(0)?.to_vec1()?;
        if let Some(log) = self.logits_log.as_deref_mut() {
            log.push(logits.clone());
        }
        Ok(self.sampler.next(&mut logits, self.tokens))
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
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Standard, Method::SledRecompute, Method::SledStride];

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::SledRecompute => "sled:recompute",
            Self::SledStride => "sled:stride",
        }
    }

    /// Whether `window` and `stride` change what this method does.
    pub fn uses_window(self) -> bool {
        !matches!(self, Self::Standard)
    }
    pub fn uses_stride(self) -> bool {
        matches!(self, Self::SledStride)
    }
}

/// Settings a method may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodParams {
    pub window: usize,
    pub stride: usize,
}

/// The one factory from method to strategy. Parameters are validated by the caller.
pub fn build(method: Method, params: MethodParams) -> Box<dyn DecodeStrategy> {
    match method {
        Method::Standard => Box::new(Standard),
        Method::SledRecompute => Box::new(SledRecompute::new(params.window)),
        Method::SledStride => Box::new(SledStride::new(params.window, params.stride)),
    }
}
