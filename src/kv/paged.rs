//! The paged cache (PagedAttention, Kwon et al. 2023) of one sequence: blocks of a
//! `PagedKvPool` (`paged_pool.rs`) through one block table instead of one contiguous region.
//! Attention reads keys and values through the table, so the logits are bit for bit those of
//! the full cache.

use super::block_pool::BlockTable;
use super::paged_pool::PagedKvPool;
use super::{KvCache, KvKind, KvStats};
use candle_core::{Result, Tensor};

/// Block usage of a paged cache, for results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct PagedUsage {
    pub blocks_used: usize,
    pub blocks_free: usize,
    pub wasted_slots: usize,
}

/// One sequence's paged cache: the shared pool (`paged_pool.rs`) with a single block table.
pub struct PagedCache {
    pool: PagedKvPool,
    table: BlockTable,
    lens: Vec<usize>,
}

impl PagedCache {
    /// A pool with enough blocks of `block_size` for `max_tokens` positions.
    pub fn new(n_layers: usize, block_size: usize, max_tokens: usize) -> Self {
        Self { pool: PagedKvPool::new(n_layers, block_size, max_tokens.div_ceil(block_size).max(1)), table: BlockTable::default(), lens: vec![0; n_layers] }
    }

    pub fn usage(&self) -> PagedUsage {
        PagedUsage {
            blocks_used: self.table.blocks.len(),
            blocks_free: self.pool.free_blocks(),
            wasted_slots: self.table.wasted_slots(self.pool.block_size()),
        }
    }
}

impl KvCache for PagedCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let len = *self.lens.get(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        if !self.pool.reserve(&mut self.table, len + t) {
            let bs = self.pool.block_size();
            candle_core::bail!(
                "paged kv cache out of blocks: {} tokens need {} blocks of {bs}, the pool has {}",
                len + t,
                (len + t).div_ceil(bs),
                self.pool.total_blocks()
            );
        }
        let out = self.pool.append(layer, &mut self.table, len, k, v)?;
        self.lens[layer] = len + t;
        Ok(out)
    }

    fn seq_len(&self) -> usize {
        self.lens.first().copied().unwrap_or(0)
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        self.lens.iter_mut().for_each(|l| *l = (*l).min(len));
        self.pool.truncate(&mut self.table, len);
        Ok(())
    }

    fn reset(&mut self) {
        self.truncate(0).unwrap_or(());
    }

    /// Bytes of the blocks this sequence holds (whole blocks, the last one's tail included).
    fn stats(&self) -> KvStats {
        let held = (self.table.blocks.len() * self.pool.block_size()) as u64 * self.pool.bytes_per_slot();
        KvStats { kv_cache_bytes: held, tokens_held: self.seq_len(), paged: Some(self.usage()), ..KvStats::default() }
    }

    fn kind(&self) -> KvKind {
        KvKind::Paged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::test_util::ramp as kv;
    use crate::kv::FullCache;

    #[test]
    fn reads_back_what_the_full_cache_holds_across_blocks_and_truncation() {
        let (mut full, mut paged) = (FullCache::new(2), PagedCache::new(2, 3, 12));
        let check = |full: &mut FullCache, paged: &mut PagedCache, t: usize, seed: f32| {
            for layer in 0..2 {
                let (a, b) = (full.append(layer, &kv(t, seed), &kv(t, -seed)).unwrap(), paged.append(layer, &kv(t, seed), &kv(t, -seed)).unwrap());
                for (x, y) in [(a.0, b.0), (a.1, b.1)] {
                    let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
                    let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
                    assert_eq!(x, y);
                }
            }
        };
        check(&mut full, &mut paged, 5, 1.0);
        check(&mut full, &mut paged, 1, 2.0);
        assert_eq!(paged.usage(), PagedUsage { blocks_used: 2, blocks_free: 2, wasted_slots: 0 });
        // 2 layers x (k + v) x 2 blocks x 3 slots x 2 heads x 4 dims x 4 bytes
        assert_eq!(paged.stats().kv_cache_bytes, 2 * 2 * 2 * 3 * 2 * 4 * 4);
        full.truncate(4).unwrap();
        paged.truncate(4).unwrap();
        assert_eq!(paged.usage(), PagedUsage { blocks_used: 2, blocks_free: 2, wasted_slots: 2 });
        check(&mut full, &mut paged, 4, 3.0);
        assert_eq!(paged.seq_len(), 8);
        paged.reset();
        assert_eq!(paged.usage().blocks_free, 4);
        assert!(paged.append(0, &kv(13, 1.0), &kv(13, 1.0)).is_err(), "13 tokens exceed 4 blocks of 3");
    }
}
