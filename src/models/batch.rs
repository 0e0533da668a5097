//! What the architectures share for a batched forward pass (continuous batching, as vLLM and
//! llama.cpp's server run it): the step's sequences are flattened into one row per token, so
//! every projection is one GEMM over all of them, and attention runs per sequence over its own
//! keys and values in the shared paged pool. A part is a sequence's new tokens this step: one
//! for a decoding sequence, a chunk of its prompt for one prefilling (chunked prefill), so
//! prefills and decodes share a step and no row is padding.

use crate::kv::block_pool::BlockTable;
use crate::kv::PagedKvPool;
use candle_core::{Device, Result, Tensor};

/// One sequence's share of a batched step.
pub struct BatchPart<'a> {
    /// This step's tokens of the sequence (at least one).
    pub ids: &'a [u32],
    /// The position of `ids[0]`: the positions before it are in the pool through `table`.
    pub start: usize,
    /// The sequence's blocks, already reserved to cover `start + ids.len()` positions.
    pub table: &'a mut BlockTable,
}

/// The flat layout of a step: where each part's rows start, and every row's position.
pub struct FlatBatch {
    /// `[1, rows]` token ids, parts one after another.
    pub ids: Tensor,
    /// Each part's first row.
    pub offsets: Vec<usize>,
    /// Each row's absolute position in its sequence.
    pub positions: Vec<u32>,
    /// Each part's last row (where its next-token logits come from).
    pub last_rows: Vec<u32>,
}

impl FlatBatch {
    /// Checks the parts against the positions the model covers and the pool, and lays them out.
    pub fn new(parts: &[BatchPart], max_positions: usize, pool: &PagedKvPool, device: &Device) -> Result<Self> {
        if parts.is_empty() {
            candle_core::bail!("a batched step needs at least one sequence");
        }
        let (mut ids, mut offsets, mut positions, mut last_rows) = (vec![], vec![], vec![], vec![]);
        for part in parts {
            let end = part.start + part.ids.len();
            if part.ids.is_empty() {
                candle_core::bail!("a sequence in the batch has no tokens this step");
            }
            if end > max_positions {
                candle_core::bail!("position {end} is past the {max_positions} positions this model covers");
            }
            if part.table.blocks.len() * pool.block_size() < end {
                candle_core::bail!("a sequence's block table covers fewer than its {end} positions: reserve blocks before the step");
            }
            offsets.push(ids.len());
            positions.extend((part.start..end).map(|p| p as u32));
            ids.extend_from_slice(part.ids);
            last_rows.push(ids.len() as u32 - 1);
        }
        let rows = ids.len();
        Ok(Self { ids: Tensor::from_vec(ids, (1, rows), device)?, offsets, positions, last_rows })
    }

    pub fn rows(&self) -> usize {
        self.positions.len()
    }

    /// The rows of `x: [1, rows, width]` that end each part: `[parts, width]`.
    pub fn last_of_each(&self, x: &Tensor) -> Result<Tensor> {
        let idx = Tensor::new(self.last_rows.as_slice(), x.device())?;
        x.squeeze(0)?.index_select(&idx, 0)
    }

    /// Causal attention of every part: `q: [1, heads, rows, d]` (rotated), this step's keys
    /// and values `[1, kv_heads, rows, d]` are written to `layer` of the pool through each part's
    /// table, and each part's queries attend over its whole sequence. Returns `[1, rows, heads * d]`.
    pub fn attention(&self, layer: usize, parts: &mut [BatchPart], q: &Tensor, k: &Tensor, v: &Tensor, pool: &mut PagedKvPool) -> Result<Tensor> {
        let (_, n_head, rows, d) = q.dims4()?;
        let outputs = parts
            .iter_mut()
            .zip(&self.offsets)
            .map(|(part, &offset)| {
                let t = part.ids.len();
                let (keys, values) = pool.append(layer, part.table, part.start, &k.narrow(2, offset, t)?, &v.narrow(2, offset, t)?)?;
                let (y, _) = super::attention::attention(&q.narrow(2, offset, t)?.contiguous()?, keys, values, false)?;
                Ok(y)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&outputs, 2)?.transpose(1, 2)?.reshape((1, rows, n_head * d))
    }
}
