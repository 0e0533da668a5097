//! Standard decoding: feed every token the cache does not hold yet (the prompt first, then one
//! per step; the whole sequence again when the cache keeps nothing) at its true position.

use super::{DecodeStrategy, Step, StepContext};
use anyhow::Result;

pub struct Standard;

impl DecodeStrategy for Standard {
    fn step(&mut self, ctx: &mut StepContext<'_>) -> Result<Step> {
        let pos = ctx.cache.seq_len();
        let next = ctx.feed_and_sample(pos, pos)?;
        Ok(Step { emitted: vec![next], ..Default::default() })
    }
}
