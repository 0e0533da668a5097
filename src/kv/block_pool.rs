//! Bookkeeping of a paged KV cache, without tensors (vLLM's block manager, PagedAttention,
//! Kwon et al. 2023): a fixed pool of blocks of `block_size` token slots, a free list, and one
//! block table per sequence mapping its positions to (block, slot). `paged.rs` stores the
//! tensors and reads attention's keys and values through the table.

/// A pool of `total` blocks; the free list is a stack, so released blocks are reused first.
#[derive(Debug, Clone)]
pub struct BlockPool {
    block_size: usize,
    total: usize,
    free: Vec<usize>,
}

impl BlockPool {
    pub fn new(block_size: usize, total: usize) -> Self {
        // Reversed so that the first allocations get blocks 0, 1, 2, ...
        Self { block_size, total, free: (0..total).rev().collect() }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn free(&self) -> usize {
        self.free.len()
    }

    pub fn allocate(&mut self) -> Option<usize> {
        self.free.pop()
    }

    pub fn release(&mut self, block: usize) {
        debug_assert!(block < self.total && !self.free.contains(&block), "block {block} released twice");
        self.free.push(block);
    }
}

/// One sequence's blocks in position order and how many positions it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockTable {
    pub blocks: Vec<usize>,
    pub len: usize,
}

impl BlockTable {
    /// Grows the table so that it covers `len` positions, taking blocks from the pool; `None`
    /// when the pool runs dry (the table is left as it was).
    pub fn reserve(&mut self, pool: &mut BlockPool, len: usize) -> Option<()> {
        let needed = len.div_ceil(pool.block_size()).saturating_sub(self.blocks.len());
        if needed > pool.free() {
            return None;
        }
        for _ in 0..needed {
            self.blocks.push(pool.allocate()?);
        }
        Some(())
    }

    /// Keeps the first `len` positions and gives whole unused blocks back to the pool.
    pub fn truncate(&mut self, pool: &mut BlockPool, len: usize) {
        self.len = self.len.min(len);
        let keep = self.len.div_ceil(pool.block_size());
        for block in self.blocks.drain(keep..).rev() {
            pool.release(block);
        }
    }

    /// The physical slot (block * block_size + offset) of every position `0..len` (`len` up to
    /// what the table covers: one layer may read before the others have written).
    pub fn slots(&self, block_size: usize, len: usize) -> Vec<u32> {
        (0..len).map(|p| (self.blocks[p / block_size] * block_size + p % block_size) as u32).collect()
    }

    /// Slots reserved but not holding a token (the last block's tail).
    pub fn wasted_slots(&self, block_size: usize) -> usize {
        self.blocks.len() * block_size - self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_take_and_return_blocks() {
        let mut pool = BlockPool::new(4, 5);
        let mut table = BlockTable::default();
        table.reserve(&mut pool, 6).unwrap();
        table.len = 6;
        assert_eq!(table.blocks, [0, 1]);
        assert_eq!((pool.free(), table.wasted_slots(4)), (3, 2));
        assert_eq!(table.slots(4, 6), [0, 1, 2, 3, 4, 5]);
        table.truncate(&mut pool, 3);
        assert_eq!((table.blocks.as_slice(), pool.free()), (&[0][..], 4));
        // The released block comes back first, so the table is no longer in physical order.
        let mut other = BlockTable::default();
        other.reserve(&mut pool, 1).unwrap();
        assert_eq!(other.blocks, [1]);
        table.reserve(&mut pool, 9).unwrap();
        table.len = 9;
        assert_eq!(table.blocks, [0, 2, 3]);
        assert_eq!(table.slots(4, 9)[4..], [8, 9, 10, 11, 12]);
        assert!(table.reserve(&mut pool, 17).is_none(), "two more blocks needed, one free");
        assert_eq!(table.blocks.len(), 3);
    }
}
