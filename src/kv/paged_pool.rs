//! The paged block pool with its tensors, shared by any number of sequences (PagedAttention,
//! Kwon et al. 2023; vLLM's KV cache manager): per layer one key and one value buffer
//! `[1, kv_heads, blocks * block_size, head_dim]`, and a `BlockPool` handing out blocks to
//! per-sequence `BlockTable`s. The single-sequence `PagedCache` is this pool with one table;
//! batched decoding (`Model::forward_batch`) holds one table per running sequence, so sequences
//! of different lengths share the pool without padding and a finished one frees its blocks at once.
//!
//! Reading a sequence's keys and values gathers its slots in position order (vLLM's kernel reads
//! them in place; the gather is a copy, which keeps every attention kernel unchanged and a
//! sequence's logits bit for bit those of a contiguous cache).

use super::block_pool::{BlockPool, BlockTable};
use super::tensor_bytes;
use candle_core::{Result, Tensor};

const SEQ_DIM: usize = 2;

/// Block tensors for every layer and the free list they are handed out from.
pub struct PagedKvPool {
    blocks: BlockPool,
    /// Per-layer key and value storage, allocated on the first write (shape and dtype come
    /// from the model's keys, so the pool knows no architecture).
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl PagedKvPool {
    /// A pool of `n_blocks` blocks of `block_size` slots for `n_layers` layers.
    pub fn new(n_layers: usize, block_size: usize, n_blocks: usize) -> Self {
        Self { blocks: BlockPool::new(block_size.max(1), n_blocks.max(1)), layers: vec![None; n_layers] }
    }

    pub fn block_size(&self) -> usize {
        self.blocks.block_size()
    }

    pub fn total_blocks(&self) -> usize {
        self.blocks.total()
    }

    pub fn free_blocks(&self) -> usize {
        self.blocks.free()
    }

    /// Blocks a sequence of `len` positions occupies.
    pub fn blocks_for(&self, len: usize) -> usize {
        len.div_ceil(self.block_size())
    }

    /// Grows `table` to cover `len` positions; false (and the table unchanged) when the pool
    /// has too few free blocks.
    pub fn reserve(&mut self, table: &mut BlockTable, len: usize) -> bool {
        table.reserve(&mut self.blocks, len).is_some()
    }

    /// Keeps the first `len` positions of `table`, returning whole unused blocks to the pool.
    pub fn truncate(&mut self, table: &mut BlockTable, len: usize) {
        table.truncate(&mut self.blocks, len);
    }

    /// Gives all of a sequence's blocks back (it finished, was cancelled or preempted).
    pub fn release(&mut self, table: &mut BlockTable) {
        self.truncate(table, 0);
    }

    /// Writes keys and values `[1, kv_heads, t, head_dim]` of positions `start..start + t` into
    /// `layer`'s slots of `table` (which must already cover them).
    pub fn write(&mut self, layer: usize, table: &mut BlockTable, start: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let (b, _, t, _) = k.dims4()?;
        if b != 1 {
            candle_core::bail!("the paged pool stores one sequence per table: got keys for a batch of {b}");
        }
        let bs = self.block_size();
        let end = start + t;
        if table.blocks.len() * bs < end {
            candle_core::bail!("block table covers {} positions, the step writes up to {end}: reserve first", table.blocks.len() * bs);
        }
        let (kb, vb) = self.storage(layer, k)?;
        let (k, v) = (k.contiguous()?, v.contiguous()?);
        // Block by block: each run of positions stays inside one block, so it is one slice.
        let mut pos = start;
        while pos < end {
            let (block, offset) = (table.blocks[pos / bs], pos % bs);
            let run = (bs - offset).min(end - pos);
            let slot = block * bs + offset;
            kb.slice_set(&k.narrow(SEQ_DIM, pos - start, run)?.contiguous()?, SEQ_DIM, slot)?;
            vb.slice_set(&v.narrow(SEQ_DIM, pos - start, run)?.contiguous()?, SEQ_DIM, slot)?;
            pos += run;
        }
        table.len = table.len.max(end);
        Ok(())
    }

    /// `layer`'s buffers, allocated (zeros, shaped and typed like `k: [1, kv_heads, _, head_dim]`)
    /// on its first write.
    fn storage(&mut self, layer: usize, k: &Tensor) -> Result<&(Tensor, Tensor)> {
        let (_, h, _, d) = k.dims4()?;
        let total_slots = self.total_blocks() * self.block_size();
        let storage = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv pool has no layer {layer}")))?;
        if storage.is_none() {
            let zeros = || Tensor::zeros((1, h, total_slots, d), k.dtype(), k.device());
            *storage = Some((zeros()?, zeros()?));
        }
        Ok(storage.as_ref().expect("allocated above"))
    }

    /// Writes `k, v: [1, kv_heads, n, head_dim]` into `layer` in one scatter along the slot axis:
    /// `index` has their shape and holds each value's slot (a step of decodes builds it once
    /// for all layers: `models::batch::DecodePlan`; the caller's tables already cover the slots).
    pub fn write_indexed(&mut self, layer: usize, index: &Tensor, k: &Tensor, v: &Tensor) -> Result<()> {
        if k.dim(0)? != 1 || index.dims() != k.dims() {
            candle_core::bail!("write_indexed: an index of {:?} for keys of {:?}", index.dims(), k.dims());
        }
        let (kb, vb) = self.storage(layer, k)?;
        kb.scatter_set(index, &k.contiguous()?, SEQ_DIM)?;
        vb.scatter_set(index, &v.contiguous()?, SEQ_DIM)?;
        Ok(())
    }

    /// `layer`'s whole key and value buffers `[1, kv_heads, slots, head_dim]`, once written:
    /// attention that reads through a block table in place (`cpu_attention::KeyRows::Slots`).
    pub fn buffers(&self, layer: usize) -> Option<&(Tensor, Tensor)> {
        self.layers.get(layer)?.as_ref()
    }

    /// `write`, then the sequence's keys and values of positions `0..start + t` gathered in
    /// order (a copy: for attention kernels that want a sequence contiguous).
    pub fn append(&mut self, layer: usize, table: &mut BlockTable, start: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let end = start + k.dim(2)?;
        if table.blocks.len() * self.block_size() < end {
            candle_core::bail!("block table covers {} positions, the step writes up to {end}: reserve first", table.blocks.len() * self.block_size());
        }
        let slots = Tensor::new(table.slots(self.block_size(), end), k.device())?;
        self.append_at(layer, table, start, k, v, &slots)
    }

    /// `append` with the slots of positions `0..start + t` made by the caller: a batched step
    /// makes every part's before its first kernel (`models::batch::FlatBatch` says why).
    pub fn append_at(&mut self, layer: usize, table: &mut BlockTable, start: usize, k: &Tensor, v: &Tensor, slots: &Tensor) -> Result<(Tensor, Tensor)> {
        self.write(layer, table, start, k, v)?;
        let (kb, vb) = self.buffers(layer).expect("written above");
        Ok((kb.index_select(slots, SEQ_DIM)?, vb.index_select(slots, SEQ_DIM)?))
    }

    /// Bytes of one slot across all layers (keys and values), once the layers are allocated.
    pub fn bytes_per_slot(&self) -> u64 {
        let slots = (self.total_blocks() * self.block_size()) as u64;
        self.layers.iter().flatten().map(|(k, v)| (tensor_bytes(k) + tensor_bytes(v)) / slots).sum()
    }

    /// Bytes the pool's tensors hold (every block, used or not).
    pub fn allocated_bytes(&self) -> u64 {
        self.layers.iter().flatten().map(|(k, v)| tensor_bytes(k) + tensor_bytes(v)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::test_util::ramp as kv;
    use crate::kv::{FullCache, KvCache};

    /// Two sequences interleaved in one pool each read back exactly what a contiguous cache of
    /// their own holds, and a released sequence's blocks serve the next one.
    #[test]
    fn sequences_sharing_the_pool_read_back_their_own_keys() {
        let mut pool = PagedKvPool::new(1, 3, 6);
        let (mut a, mut b) = (BlockTable::default(), BlockTable::default());
        let (mut full_a, mut full_b) = (FullCache::new(1), FullCache::new(1));
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let step = |pool: &mut PagedKvPool, table: &mut BlockTable, full: &mut FullCache, t: usize, seed: f32| {
            let start = table.len;
            assert!(pool.reserve(table, start + t));
            let got = pool.append(0, table, start, &kv(t, seed), &kv(t, -seed)).unwrap();
            let want = full.append(0, &kv(t, seed), &kv(t, -seed)).unwrap();
            assert_eq!((flat(&got.0), flat(&got.1)), (flat(&want.0), flat(&want.1)));
        };
        step(&mut pool, &mut a, &mut full_a, 4, 1.0);
        step(&mut pool, &mut b, &mut full_b, 2, 2.0);
        step(&mut pool, &mut a, &mut full_a, 1, 3.0);
        step(&mut pool, &mut b, &mut full_b, 2, 4.0);
        assert_eq!((a.blocks.as_slice(), b.blocks.as_slice()), (&[0, 1][..], &[2, 3][..]));
        assert_eq!(pool.free_blocks(), 2);
        pool.release(&mut a);
        assert_eq!(pool.free_blocks(), 4);
        let mut c = BlockTable::default();
        assert!(pool.reserve(&mut c, 12), "a's two blocks and the two never used");
        assert!(!pool.reserve(&mut a, 1), "the pool is empty");
        assert!(pool.append(0, &mut a, 0, &kv(1, 1.0), &kv(1, 1.0)).is_err(), "writing past the table is refused");
    }
}
