//! What the architectures share for a batched forward pass (continuous batching, as vLLM and
//! llama.cpp's server run it): the step's sequences are flattened into one row per token, so
//! every projection is one GEMM over all of them, and attention runs per sequence over its own
//! keys and values in the shared paged pool. A part is a sequence's new tokens this step: one
//! for a decoding sequence, a chunk of its prompt for one prefilling (chunked prefill), so
//! prefills and decodes share a step and no row is padding. A part that verifies a speculative
//! draft (its last token and the drafted ones) asks for the logits of all its rows.

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
    /// How many of the part's last rows to return logits for: 1 (the next token), or every
    /// row of a speculative verification (the last token plus each drafted one).
    pub logit_rows: usize,
}

impl BatchPart<'_> {
    /// Whether every row of the part needs its logits (a decode, or a draft to verify), as
    /// opposed to a prompt chunk whose rows only fill the cache.
    pub fn is_decode_or_verify(&self) -> bool {
        self.logit_rows == self.ids.len()
    }
}

/// The flat layout of a step: where each part's rows start, and every row's position.
///
/// Every tensor built from host data is made here, before the step's first kernel: on CUDA a
/// copy from pageable host memory synchronises the stream, so one made between layers would
/// stall the host until the GPU caught up, layer after layer, and launches would stop
/// overlapping the GPU's work.
pub struct FlatBatch {
    /// `[1, rows]` token ids, parts one after another.
    pub ids: Tensor,
    /// `[rows]` each row's position, on the device.
    pub position_ids: Tensor,
    /// `[logit rows]` the indexes of `logit_rows`, on the device.
    logit_index: Tensor,
    /// Each part's slots in position order, on the device (sequence-by-sequence attention).
    part_slots: Vec<Tensor>,
    /// Each part's first row.
    pub offsets: Vec<usize>,
    /// The rows whose logits the step returns, part by part (each part's last `logit_rows`).
    pub logit_rows: Vec<u32>,
    /// A step of decodes' indexes for the padded decode attention (when it runs), reused by
    /// every layer.
    decode_plan: Option<DecodePlan>,
}

impl FlatBatch {
    /// Checks the parts against the positions the model covers and the pool, and lays them out;
    /// `kv_shape` is the model's (key heads, head size).
    pub fn new(parts: &[BatchPart], max_positions: usize, kv_shape: (usize, usize), pool: &PagedKvPool, device: &Device) -> Result<Self> {
        if parts.is_empty() {
            candle_core::bail!("a batched step needs at least one sequence");
        }
        let (mut ids, mut offsets, mut positions, mut logit_rows) = (vec![], vec![], vec![], vec![]);
        for part in parts {
            let end = part.start + part.ids.len();
            if part.ids.is_empty() {
                candle_core::bail!("a sequence in the batch has no tokens this step");
            }
            if part.logit_rows == 0 || part.logit_rows > part.ids.len() {
                candle_core::bail!("a part of {} tokens asks for the logits of {} rows", part.ids.len(), part.logit_rows);
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
            logit_rows.extend((ids.len() - part.logit_rows..ids.len()).map(|r| r as u32));
        }
        let rows = ids.len();
        // On a GPU a step of decodes attends in one set of launches for all sequences; one
        // sequence at a time would cost B launches of each op per layer.
        let decode_only = parts.iter().all(|p| p.ids.len() == 1);
        let decode_plan = (decode_only && padded_decode(device)).then(|| DecodePlan::new(parts, kv_shape, pool.block_size(), device)).transpose()?;
        let part_slots = match decode_plan {
            Some(_) => Vec::new(),
            None => parts.iter().map(|p| Tensor::new(p.table.slots(pool.block_size(), p.start + p.ids.len()), device)).collect::<Result<_>>()?,
        };
        Ok(Self {
            ids: Tensor::from_vec(ids, (1, rows), device)?,
            position_ids: Tensor::new(positions.as_slice(), device)?,
            logit_index: Tensor::new(logit_rows.as_slice(), device)?,
            part_slots,
            offsets,
            logit_rows,
            decode_plan,
        })
    }

    pub fn rows(&self) -> usize {
        self.ids.dims()[1]
    }

    /// The rows of `x: [1, rows, width]` whose logits the step returns: `[logit rows, width]`.
    pub fn logit_rows_of(&self, x: &Tensor) -> Result<Tensor> {
        x.squeeze(0)?.index_select(&self.logit_index, 0)
    }

    /// Causal attention of every part: `q: [1, heads, rows, d]` (rotated), this step's keys
    /// and values `[1, kv_heads, rows, d]` are written to `layer` of the pool through each part's
    /// table, and each part's queries attend over its whole sequence. Returns `[1, rows, heads * d]`.
    pub fn attention(&self, layer: usize, parts: &mut [BatchPart], q: &Tensor, k: &Tensor, v: &Tensor, pool: &mut PagedKvPool) -> Result<Tensor> {
        if let Some(plan) = &self.decode_plan {
            return plan.attend(layer, parts, q, k, v, pool);
        }
        let (_, n_head, rows, d) = q.dims4()?;
        let outputs = parts
            .iter_mut()
            .zip(self.offsets.iter().zip(&self.part_slots))
            .map(|(part, (&offset, slots))| {
                let t = part.ids.len();
                let (keys, values) = pool.append_at(layer, part.table, part.start, &k.narrow(2, offset, t)?, &v.narrow(2, offset, t)?, slots)?;
                let (y, _) = super::attention::attention(&q.narrow(2, offset, t)?.contiguous()?, keys, values, false)?;
                Ok(y)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&outputs, 2)?.transpose(1, 2)?.reshape((1, rows, n_head * d))
    }
}

/// `LLMBENCH_BATCH_ATTENTION=padded|per-sequence` picks how a step of decodes attends on the
/// candle path (A/B timing on a GPU; the GPU's path run on the CPU in tests). Unset: padded on
/// CUDA, per sequence elsewhere (the CPU kernel is bitwise what decoding alone computes).
pub const ATTENTION_SWITCH: &str = "LLMBENCH_BATCH_ATTENTION";

fn padded_decode(device: &Device) -> bool {
    static CHOICE: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    let choice = CHOICE.get_or_init(|| match std::env::var(ATTENTION_SWITCH).as_deref() {
        Ok("padded") => Some(true),
        Ok("per-sequence") => Some(false),
        Ok(other) => {
            tracing::warn!("{ATTENTION_SWITCH}={other}: not padded or per-sequence; using the device's default");
            None
        }
        Err(_) => None,
    });
    choice.unwrap_or(device.is_cuda())
}

/// Attention of a step where every part decodes one token, for all parts at once: this step's
/// keys and values scattered into the pool in one write per layer, every sequence's keys
/// gathered into `[B, kv_heads, longest, d]` (shorter ones padded with their own first slot and
/// masked out by a -inf bias: exact zeros after the softmax), then two batched matmuls. The pool stores no
/// padding; only this step's scores do. `q, k, v: [1, heads, B, d]`; returns `[1, B, heads * d]`.
///
/// The plan holds a step of decodes' indexes, the same for every layer: built once per step
/// (on a GPU each is a host-to-device copy) and reused by every layer's attention.
pub struct DecodePlan {
    /// `[1, kv_heads, B, d]`: every value of row i goes to slot i's position (scatter).
    write_index: Tensor,
    /// `[B * longest]`: sequence i's slots in position order, padded with its first slot.
    gather_index: Tensor,
    /// `[B, 1, 1, longest]` f32, added to the scores: -inf where position j is padding for
    /// sequence i, 0 elsewhere.
    bias: Tensor,
    longest: usize,
}

impl DecodePlan {
    /// For `parts` that each decode one token, with `(kv_heads, head size)` keys.
    pub fn new(parts: &[BatchPart], (n_kv, d): (usize, usize), block_size: usize, device: &Device) -> Result<Self> {
        let b = parts.len();
        if parts.iter().any(|p| p.ids.len() != 1) {
            candle_core::bail!("padded decode attention takes one token per sequence");
        }
        let slots: Vec<Vec<u32>> = parts.iter().map(|p| p.table.slots(block_size, p.start + 1)).collect();
        let new_slots: Vec<u32> = parts.iter().zip(&slots).map(|(p, s)| s[p.start]).collect();
        let write: Vec<u32> = (0..n_kv).flat_map(|_| new_slots.iter().flat_map(|&s| std::iter::repeat_n(s, d))).collect();
        let longest = parts.iter().map(|p| p.start + 1).max().unwrap_or(1);
        let (mut gather, mut mask) = (Vec::with_capacity(b * longest), Vec::with_capacity(b * longest));
        for (p, s) in parts.iter().zip(&slots) {
            gather.extend((0..longest).map(|j| s.get(j).copied().unwrap_or(s[0])));
            mask.extend((0..longest).map(|j| if j > p.start { f32::NEG_INFINITY } else { 0.0 }));
        }
        Ok(Self {
            write_index: Tensor::from_vec(write, (1, n_kv, b, d), device)?,
            gather_index: Tensor::from_vec(gather, b * longest, device)?,
            bias: Tensor::from_vec(mask, (b, 1, 1, longest), device)?,
            longest,
        })
    }

    /// One layer: this step's keys and values scattered into the pool, then attention of every
    /// sequence over its gathered keys. `q: [1, heads, B, d]`; returns `[1, B, heads * d]`.
    pub fn attend(&self, layer: usize, parts: &mut [BatchPart], q: &Tensor, k: &Tensor, v: &Tensor, pool: &mut PagedKvPool) -> Result<Tensor> {
        let (_, n_head, b, d) = q.dims4()?;
        let n_kv = k.dim(1)?;
        if b != parts.len() || self.gather_index.dim(0)? != b * self.longest {
            candle_core::bail!("a decode plan for other sequences than this step's");
        }
        pool.write_indexed(layer, &self.write_index, k, v)?;
        for p in parts.iter_mut() {
            p.table.len = p.table.len.max(p.start + 1);
        }
        let (kb, vb) = pool.buffers(layer).ok_or_else(|| candle_core::Error::Msg("the pool has no buffers for this layer".into()))?;
        let longest = self.longest;
        let gather = |t: &Tensor| -> Result<Tensor> { t.index_select(&self.gather_index, 2)?.reshape((n_kv, b, longest, d))?.transpose(0, 1)?.contiguous() };
        let (keys, values) = (gather(kb)?, gather(vb)?);
        let rep = n_head / n_kv;
        // Query heads that share a key head side by side: [B, n_kv, rep, d].
        let q = q.squeeze(0)?.reshape((n_kv, rep, b, d))?.permute((2, 0, 1, 3))?.contiguous()?;
        let scores = (q.matmul(&keys.t()?)? / (d as f64).sqrt())?.to_dtype(candle_core::DType::F32)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&self.bias)?)?;
        let out = probs.to_dtype(values.dtype())?.matmul(&values)?;
        out.reshape((1, b, n_head * d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The one-launch-set decode attention equals attending sequence by sequence (to f32
    /// summation order), for sequences of different lengths sharing the pool.
    #[test]
    fn padded_decode_attention_equals_per_sequence() {
        let (n_head, n_kv, d, lens) = (4, 2, 16, [5usize, 1, 9]);
        let dev = Device::Cpu;
        let mut pool_a = PagedKvPool::new(1, 4, 16);
        let mut pool_b = PagedKvPool::new(1, 4, 16);
        let mut tables_a: Vec<BlockTable> = vec![BlockTable::default(); 3];
        let mut tables_b: Vec<BlockTable> = vec![BlockTable::default(); 3];
        // History: each sequence's first len - 1 positions, written the same into both pools.
        for (i, &len) in lens.iter().enumerate() {
            for (pool, table) in [(&mut pool_a, &mut tables_a[i]), (&mut pool_b, &mut tables_b[i])] {
                assert!(pool.reserve(table, len));
                if len > 1 {
                    let hist_k = Tensor::arange(0f32, (n_kv * (len - 1) * d) as f32, &dev).unwrap().affine(0.01 * (i + 1) as f64, -0.3).unwrap().sin().unwrap().reshape((1, n_kv, len - 1, d)).unwrap();
                    let hist_v = hist_k.cos().unwrap();
                    pool.write(0, table, 0, &hist_k, &hist_v).unwrap();
                }
            }
        }
        let ids = [[1u32], [2], [3]];
        let step = |seed: f32, heads: usize| Tensor::arange(0f32, (heads * 3 * d) as f32, &dev).unwrap().affine(0.037, seed as f64).unwrap().sin().unwrap().reshape((1, heads, 3, d)).unwrap();
        let (q, k, v) = (step(0.1, n_head), step(0.7, n_kv), step(1.3, n_kv));
        let mut parts_a: Vec<BatchPart> = tables_a.iter_mut().zip(&lens).zip(&ids).map(|((t, &len), id)| BatchPart { ids: id, start: len - 1, table: t, logit_rows: 1 }).collect();
        let flat = FlatBatch::new(&parts_a, 64, (n_kv, d), &pool_a, &dev).unwrap();
        let per_sequence = flat.attention(0, &mut parts_a, &q, &k, &v, &mut pool_a).unwrap();
        let mut parts_b: Vec<BatchPart> = tables_b.iter_mut().zip(&lens).zip(&ids).map(|((t, &len), id)| BatchPart { ids: id, start: len - 1, table: t, logit_rows: 1 }).collect();
        let padded = DecodePlan::new(&parts_b, (n_kv, d), pool_b.block_size(), &dev).unwrap().attend(0, &mut parts_b, &q, &k, &v, &mut pool_b).unwrap();
        let (a, b): (Vec<f32>, Vec<f32>) = (per_sequence.flatten_all().unwrap().to_vec1().unwrap(), padded.flatten_all().unwrap().to_vec1().unwrap());
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "padded decode attention differs by {worst}");
        assert_eq!(tables_b.iter().map(|t| t.len).collect::<Vec<_>>(), lens.to_vec());
    }
}
