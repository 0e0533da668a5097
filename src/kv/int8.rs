//! The int8 cache: keys and values quantized symmetrically per token (one f32 scale per
//! position and head: max |x| / 127), stored as bytes, dequantized on read (KIVI and KVQuant
//! use this as their 8-bit baseline). Everything attention reads, this step's tokens included,
//! went through the rounding, so a teacher-forced pass measures what the quantization costs.
//! Bytes held: one per element plus 4 per (position, head) for each of keys and values.

use super::{tensor_bytes, KvCache, KvKind, KvStats};
use candle_core::{DType, Result, Tensor, D};

const SEQ_DIM: usize = 2;
/// Stored as value + 128 in a u8 (candle has no i8 dtype), so the codes span 1..=255.
const OFFSET: f64 = 128.0;
const QMAX: f64 = 127.0;
/// Floor of a scale, so an all-zero row does not divide by zero.
const MIN_SCALE: f64 = 1e-12;

/// One quantized tensor: codes `[b, h, n, d]` (u8) and scales `[b, h, n, 1]` (f32).
#[derive(Clone)]
struct Quantized {
    codes: Tensor,
    scales: Tensor,
}

impl Quantized {
    fn new(x: &Tensor) -> Result<Self> {
        let x = x.to_dtype(DType::F32)?;
        let scales = x.abs()?.max_keepdim(D::Minus1)?.affine(1.0 / QMAX, 0.0)?.maximum(MIN_SCALE)?;
        let codes = x.broadcast_div(&scales)?.round()?.clamp(-QMAX, QMAX)?.affine(1.0, OFFSET)?.to_dtype(DType::U8)?;
        Ok(Self { codes, scales })
    }

    fn dequantize(&self, dtype: DType) -> Result<Tensor> {
        self.codes.to_dtype(DType::F32)?.affine(1.0, -OFFSET)?.broadcast_mul(&self.scales)?.to_dtype(dtype)
    }

    fn cat(&self, other: &Self) -> Result<Self> {
        Ok(Self {
            codes: Tensor::cat(&[&self.codes, &other.codes], SEQ_DIM)?,
            scales: Tensor::cat(&[&self.scales, &other.scales], SEQ_DIM)?,
        })
    }

    fn narrow(&self, len: usize) -> Result<Self> {
        Ok(Self { codes: self.codes.narrow(SEQ_DIM, 0, len)?, scales: self.scales.narrow(SEQ_DIM, 0, len)? })
    }

    fn bytes(&self) -> u64 {
        tensor_bytes(&self.codes) + tensor_bytes(&self.scales)
    }
}

pub struct Int8Cache {
    layers: Vec<Option<(Quantized, Quantized)>>,
}

impl Int8Cache {
    pub fn new(n_layers: usize) -> Self {
        Self { layers: vec![None; n_layers] }
    }
}

impl KvCache for Int8Cache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let slot = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        let (qk, qv) = (Quantized::new(k)?, Quantized::new(v)?);
        let (qk, qv) = match slot.take() {
            None => (qk, qv),
            Some((pk, pv)) => (pk.cat(&qk)?, pv.cat(&qv)?),
        };
        let out = (qk.dequantize(k.dtype())?, qv.dequantize(v.dtype())?);
        *slot = Some((qk, qv));
        Ok(out)
    }

    fn seq_len(&self) -> usize {
        match self.layers.first() {
            Some(Some((k, _))) => k.codes.dim(SEQ_DIM).unwrap_or(0),
            _ => 0,
        }
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        for slot in self.layers.iter_mut() {
            if let Some((k, v)) = slot.take() {
                let keep = len.min(k.codes.dim(SEQ_DIM)?);
                if keep > 0 {
                    *slot = Some((k.narrow(keep)?, v.narrow(keep)?));
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(|slot| *slot = None);
    }

    fn stats(&self) -> KvStats {
        let kv_cache_bytes = self.layers.iter().flatten().map(|(k, v)| k.bytes() + v.bytes()).sum();
        KvStats { kv_cache_bytes, tokens_held: self.seq_len(), evictions: 0 }
    }

    fn kind(&self) -> KvKind {
        KvKind::Int8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::test_util::ramp;

    #[test]
    fn round_trip_error_is_within_half_a_step_and_bytes_count_scales() {
        let mut cache = Int8Cache::new(1);
        let x = (ramp(3, 1.0) - 20.0).unwrap();
        let (k, _) = cache.append(0, &x, &x).unwrap();
        let (x, k): (Vec<f32>, Vec<f32>) =
            (x.flatten_all().unwrap().to_vec1().unwrap(), k.flatten_all().unwrap().to_vec1().unwrap());
        // Per row of 4 the scale is max|x| / 127; the error is at most half of it.
        for (row_x, row_k) in x.chunks(4).zip(k.chunks(4)) {
            let scale = row_x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in row_x.iter().zip(row_k) {
                assert!((a - b).abs() <= scale * 0.5 + 1e-6, "{a} vs {b}");
            }
        }
        // 2 (k, v) x 2 heads x 3 tokens x (4 one-byte codes + one 4-byte scale)
        assert_eq!(cache.stats().kv_cache_bytes, 2 * 2 * 3 * (4 + 4));
        cache.truncate(1).unwrap();
        assert_eq!(cache.seq_len(), 1);
    }
}
