//! Scaled dot-product attention shared by the architectures. The masked path follows the op
//! order of candle-transformers' `quantized_llama` (divide by sqrt(d), masked fill with -inf,
//! softmax on the last dim) so greedy decoding on the same GGUF matches it token for token;
//! grouped-query attention shares key/value heads without copying them. Fused kernels take over
//! where they apply: `cpu_attention` on the CPU, `cuda_attention` for CUDA prompts.

use candle_core::{DType, Device, Result, Tensor};

/// A `[q_len, kv_len]` mask, 1 where query i (the last q_len positions) may not see key j.
pub fn causal_mask(q_len: usize, kv_len: usize, device: &Device) -> Result<Tensor> {
    let offset = kv_len - q_len;
    let mask: Vec<u8> = (0..q_len).flat_map(|i| (0..kv_len).map(move |j| u8::from(j > offset + i))).collect();
    Tensor::from_slice(&mask, (q_len, kv_len), device)
}

/// Attention over `q: [b, h, q_len, d]`, `k, v: [b, h_kv, kv_len, d]`; returns the output
/// `[b, h, q_len, d]` and, when asked, the attention weights `[b, h, q_len, kv_len]`.
///
/// Grouped-query attention folds the `h / h_kv` query heads that share a key/value head into
/// the query-length axis (`[b, h_kv, rep * q_len, d]`) instead of copying keys and values
/// `rep` times (transformers' and candle's `repeat_kv`): the same dot products, without
/// moving the whole cache through memory again at every step.
///
/// On the CPU (f32) the kernels of `cpu_attention` compute the output instead, and on CUDA
/// the kernel of `cuda_attention`: the same attention without the `[q, kv]` score matrix, the
/// mask or the copies.
pub fn attention(q: &Tensor, k: Tensor, v: Tensor, want_weights: bool) -> Result<(Tensor, Option<Tensor>)> {
    let fused = if q.device().is_cuda() {
        super::cuda_attention::causal_attention(q, &k, &v)?
    } else if crate::quant::cpu_matmul::enabled() {
        super::cpu_attention::causal_attention(q, &k, &v)?
    } else {
        None
    };
    if let Some(out) = fused {
        // A cache that scores tokens (h2o, cake) gets the weights from the masked path,
        // while the output stays the kernel's, so a strategy that keeps everything stays
        // bitwise equal to the full cache (the weights cost a second pass; they only rank).
        let weights = if want_weights { masked_attention(q, k, v, true)?.1 } else { None };
        return Ok((out, weights));
    }
    masked_attention(q, k, v, want_weights)
}

/// `attention` through candle ops: scores, a causal mask, softmax, `att @ v`. Any device and
/// dtype, and the only path that returns the weights (score-based eviction observes them).
pub fn masked_attention(q: &Tensor, k: Tensor, v: Tensor, want_weights: bool) -> Result<(Tensor, Option<Tensor>)> {
    let (b, n_head, q_len, head_dim) = q.dims4()?;
    let n_kv = k.dim(1)?;
    let rep = n_head / n_kv;
    let kv_len = k.dim(2)?;
    let in_dtype = q.dtype();
    let q = q.reshape((b, n_kv, rep * q_len, head_dim))?;
    let att = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?;
    // Softmax in f32 whatever the weights' dtype, as transformers does for half precision.
    let att = att.to_dtype(DType::F32)?;
    let att = if q_len > 1 {
        let mask = causal_mask(q_len, kv_len, q.device())?;
        let mask = if rep > 1 { mask.repeat((rep, 1))? } else { mask }.broadcast_as(att.shape())?;
        let neg_inf = Tensor::new(f32::NEG_INFINITY, q.device())?.broadcast_as(att.shape())?;
        mask.where_cond(&neg_inf, &att)?
    } else {
        att
    };
    let att = candle_nn::ops::softmax_last_dim(&att)?;
    // `v` may be a view of a larger preallocated cache: matmul reads it through its strides.
    let out = att.to_dtype(in_dtype)?.matmul(&v)?.reshape((b, n_head, q_len, head_dim))?;
    let weights = if want_weights { Some(att.reshape((b, n_head, q_len, kv_len))?) } else { None };
    Ok((out, weights))
}

/// Attention for the last `q_len` positions one query row at a time, each over exactly the keys
/// it may see: the shapes (and so the floating-point summation order) of `q_len` one-token
/// decode steps. Speculative verification uses it so that greedy output is token for token
/// the target's own: one masked pass over all rows sums softmax and `att @ v` over a longer,
/// zero-padded row and differs in the last bits, which flips near-tie argmaxes (measured on
/// SmolLM2: 75% agreement over 64 tokens). The projections stay batched (their rows are
/// computed independently, bitwise equal to one-row matmuls).
pub fn attention_row_by_row(q: &Tensor, k: Tensor, v: Tensor) -> Result<Tensor> {
    let q_len = q.dim(2)?;
    if q_len == 1 {
        return Ok(attention(q, k, v, false)?.0);
    }
    let kv_len = k.dim(2)?;
    let rows = (0..q_len)
        .map(|i| {
            let seen = kv_len - q_len + i + 1;
            let (k, v) = (k.narrow(2, 0, seen)?, v.narrow(2, 0, seen)?);
            Ok(attention(&q.narrow(2, i, 1)?.contiguous()?, k, v, false)?.0)
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&rows, 2)
}

/// How a multi-token forward pass over a cached prefix attends (speculative verification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyAttention {
    /// Each row as a one-token decode step would: greedy output equals standard decoding's.
    #[default]
    RowByRow,
    /// One masked pass over all rows: fewer kernel launches (GPUs), equal up to summation order.
    Batched,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_offsets_for_cached_prefix() {
        let m: Vec<u8> = causal_mask(2, 4, &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(m, [0, 0, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn attention_with_one_key_returns_its_value() {
        let q = Tensor::randn(0f32, 1., (1, 4, 1, 8), &Device::Cpu).unwrap();
        let k = Tensor::randn(0f32, 1., (1, 2, 1, 8), &Device::Cpu).unwrap();
        let v = Tensor::randn(0f32, 1., (1, 2, 1, 8), &Device::Cpu).unwrap();
        let (out, w) = attention(&q, k, v.clone(), true).unwrap();
        let expect = Tensor::cat(&[&v, &v], 2).unwrap().reshape((1, 4, 1, 8)).unwrap();
        let diff = (out - expect).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6);
        assert_eq!(w.unwrap().dims(), &[1, 4, 1, 1]);
    }

    /// Two keys, worked by hand: scores q.k / sqrt(2) = [0.7071, 0], softmax [0.6698, 0.3302],
    /// so the output mixes the values 0.6698 : 0.3302 (without the 1/sqrt(d) scale it would be
    /// 0.7311 : 0.2689).
    #[test]
    fn attention_over_two_keys_is_the_scaled_softmax_mix() {
        let q = Tensor::new(&[1f32, 0.], &Device::Cpu).unwrap().reshape((1, 1, 1, 2)).unwrap();
        let k = Tensor::new(&[1f32, 0., 0., 0.], &Device::Cpu).unwrap().reshape((1, 1, 2, 2)).unwrap();
        let v = Tensor::new(&[1f32, 0., 0., 1.], &Device::Cpu).unwrap().reshape((1, 1, 2, 2)).unwrap();
        let (out, _) = attention(&q, k, v, false).unwrap();
        let out: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        let w = 1.0 / (1.0 + (-(0.5f32).sqrt()).exp());
        assert!((out[0] - w).abs() < 1e-6 && (out[1] - (1.0 - w)).abs() < 1e-6, "{out:?} vs {w}");
        assert!((w - 0.6698).abs() < 1e-4);
    }
}
