//! Standard decoding: feed every token the cache does not hold yet (the prompt first, then one
//! per step; the whole sequence again when the cache keeps nothing) at its true position.

use super::{DecodeStrategy, Step, StepContext};
use anyhow::Result;

pub struct Standard;

impl DecodeStrategy for Standard {
    fn step(&mut self, ctx: &mut StepContext<'_>) -> Result<Step> {
        let pos = ctx.cache.seq_len();
        // Where the engine wants another token after this one (and stops only at EOS then),
        // the next step may start on the device before this token reaches the host.
        let (next, next_queued) = ctx.feed_and_sample_ahead(pos, pos, ctx.remaining > 1)?;
        Ok(Step { emitted: vec![next], next_queued, ..Default::default() })
    }
}
