//! Prefill attention on the CPU through GEMMs: from `GEMM_PREFILL_MIN_ROWS` query rows on (a
//! prompt, not a decode or verify step) `cpu_attention` hands the rows here, in blocks of
//! `QUERY_BLOCK` rows, each two GEMMs (`q k^T`, then `p v`) around a causal softmax whose
//! bound is a loop limit. The same result as the one-pass kernel to rounding, at GEMM speed.

use super::cpu_attention::{exp, reduce, LANES};
use candle_core::{DType, Device, Result, Tensor};

/// From this many query rows on (a prompt, not a decode or verify step), attention runs as
/// blocks of `QUERY_BLOCK` rows through two GEMMs each instead of the one-pass kernel: the
/// same result to rounding, at GEMM speed (the one-pass kernel's dot products ran at ~20
/// GFLOP/s, which made a 4,096-token prefill spend 28 of its 40 s in attention).
pub const GEMM_PREFILL_MIN_ROWS: usize = 32;
/// Query rows per GEMM block: the scores `[heads x QUERY_BLOCK x keys]` (38 MB for SmolLM2 at
/// 4,096 keys) are the largest buffer, never the `[T x T]` matrix of the masked path.
const QUERY_BLOCK: usize = 256;

/// Prefill attention by query blocks: `scores = q_blk k^T` over the keys the block's last row
/// sees, a causal softmax with the bound as a loop limit (no mask tensor), `p v`.
pub(super) fn blocked_prefill(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    let (b, n_head, q_len, d) = q.dims4()?;
    let (_, n_kv, kv_len, kd) = k.dims4()?;
    if [k.dtype(), v.dtype()].iter().any(|&t| t != DType::F32) || kd != d || n_kv == 0 || !n_head.is_multiple_of(n_kv) || q_len > kv_len {
        return Ok(None);
    }
    let rep = n_head / n_kv;
    let offset = kv_len - q_len;
    let scale = 1.0 / (d as f32).sqrt();
    let q5 = q.reshape((b, n_kv, rep, q_len, d))?;
    let mut blocks = Vec::with_capacity(q_len.div_ceil(QUERY_BLOCK));
    for i0 in (0..q_len).step_by(QUERY_BLOCK) {
        let rows = QUERY_BLOCK.min(q_len - i0);
        let seen = offset + i0 + rows;
        let qb = q5.narrow(3, i0, rows)?.contiguous()?.reshape((b, n_kv, rep * rows, d))?;
        let (kb, vb) = (k.narrow(2, 0, seen)?, v.narrow(2, 0, seen)?);
        let scores = qb.matmul(&kb.t()?)?;
        let probs = causal_softmax(&scores, rows, offset + i0, scale)?;
        blocks.push(probs.matmul(&vb)?.reshape((b, n_kv, rep, rows, d))?);
    }
    Ok(Some(Tensor::cat(&blocks, 3)?.reshape((b, n_head, q_len, d))?))
}

/// Softmax of `scale * scores` over each row's first `first_bound + (row % rows) + 1` keys
/// (row i of every head group sees keys `0..=first_bound + i`), exact zeros after.
fn causal_softmax(scores: &Tensor, rows: usize, first_bound: usize, scale: f32) -> Result<Tensor> {
    let width = scores.dim(candle_core::D::Minus1)?;
    let mut out = vec![0f32; scores.elem_count()];
    let out_addr = out.as_mut_ptr() as usize;
    super::cpu_rows::with_slice(scores, |s| {
        candle_core::utils::barrier_pool().execute_chunked(s.len() / width, |range| {
            for row in range {
                let seen = (first_bound + row % rows + 1).min(width);
                let src = &s[row * width..row * width + seen];
                // SAFETY: each row of `out` is written by one work item; `out` outlives the call.
                let dst = unsafe { std::slice::from_raw_parts_mut((out_addr as *mut f32).add(row * width), seen) };
                let max = src.iter().copied().fold(f32::NEG_INFINITY, f32::max) * scale;
                dst.iter_mut().zip(src).for_each(|(o, &x)| *o = exp(x.mul_add(scale, -max)));
                // In 8 lanes, so the exponentials above vectorise (a running scalar sum would not).
                let mut lanes = [0f32; LANES];
                let mut chunks = dst.chunks_exact(LANES);
                for c in &mut chunks {
                    (0..LANES).for_each(|l| lanes[l] += c[l]);
                }
                let inv = 1.0 / (reduce(lanes) + chunks.remainder().iter().sum::<f32>());
                dst.iter_mut().for_each(|o| *o *= inv);
            }
        })
    })?;
    Tensor::from_vec(out, scores.shape(), &Device::Cpu)
}
