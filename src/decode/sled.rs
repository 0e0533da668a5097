//! Sliding-window decoding ("SLED" in the seed project): the model only ever sees the last
//! `window` tokens, placed at positions 0..window-1, so cost and memory stay flat in the
//! generated length at the price of forgetting older context.
//!
//! - `SledRecompute` re-encodes the window without a cache at every step (the seed's exact
//!   behaviour: quadratic in the window, constant in the length).
//! - `SledStride` re-encodes the window once, then decodes `stride` tokens with the cache;
//!   when the cache holds `window + stride` tokens it is dropped and the last `window` tokens
//!   are re-encoded. Memory is bounded by `window + stride` tokens.

use super::{DecodeStrategy, Step, StepContext};
use crate::kv::KvKind;
use anyhow::Result;

pub struct SledRecompute {
    window: usize,
}

impl SledRecompute {
    pub fn new(window: usize) -> Self {
        Self { window }
    }
}

impl DecodeStrategy for SledRecompute {
    fn cache_kind(&self, _requested: KvKind) -> KvKind {
        KvKind::None
    }

    fn step(&mut self, ctx: &mut StepContext<'_>) -> Result<Step> {
        ctx.cache.reset();
        let from = ctx.tokens.len().saturating_sub(self.window);
        let next = ctx.feed_and_sample(from, 0)?;
        Ok(Step { emitted: vec![next], ..Default::default() })
    }
}

pub struct SledStride {
    window: usize,
    stride: usize,
    /// Index in the token sequence of the token the cache holds at position 0.
    base: usize,
}

impl SledStride {
    pub fn new(window: usize, stride: usize) -> Self {
        Self { window, stride, base: 0 }
    }
}

impl DecodeStrategy for SledStride {
    fn cache_kind(&self, _requested: KvKind) -> KvKind {
        KvKind::Full
    }

    fn step(&mut self, ctx: &mut StepContext<'_>) -> Result<Step> {
        let held = ctx.cache.seq_len();
        // A fresh cache (a new sequence) or one that would pass window + stride: re-encode the window.
        let reencode = held == 0 || ctx.tokens.len() - self.base > self.window + self.stride;
        let next = if reencode {
            ctx.cache.reset();
            self.base = ctx.tokens.len().saturating_sub(self.window);
            ctx.feed_and_sample(self.base, 0)?
        } else {
            ctx.feed_and_sample(self.base + held, held)?
        };
        Ok(Step { emitted: vec![next], ..Default::default() })
    }
}
