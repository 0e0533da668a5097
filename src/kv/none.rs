//! No cache: attention reads only the keys and values of the current forward pass, and since
//! `seq_len` stays 0 the engine re-feeds the whole sequence every step (the cost baseline).

use super::{KvCache, KvKind, KvStats};
use candle_core::{Result, Tensor};

/// Keeps nothing between steps.
pub struct NoCache;

impl KvCache for NoCache {
    fn append(&mut self, _layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((k.clone(), v.clone()))
    }
    fn seq_len(&self) -> usize {
        0
    }
    fn truncate(&mut self, _len: usize) -> Result<()> {
        Ok(())
    }
    fn reset(&mut self) {}
    fn stats(&self) -> KvStats {
        KvStats::default()
    }
    fn kind(&self) -> KvKind {
        KvKind::None
    }
}
