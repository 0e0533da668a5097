//! Quantized caches: keys and values stored as integers and dequantized on read.
//! - int8: symmetric per token and head (one f32 scale: max |x| / 127), the 8-bit baseline of
//!   KIVI and KVQuant. Bytes: 1 per element + 4 per (token, head).
//! - int4: asymmetric per group of `INT4_GROUP` channels of a token and head (f32 scale and zero
//!   point: the group's min and (max - min) / 15), two codes per byte (KIVI's value format).
//!   Bytes: 1/2 per element + 8 per group.
//! - mixed: int8 keys, int4 values (keys carry the outliers that 4 bits lose most on).
//! Everything attention reads, this step's tokens included, went through the rounding, so a
//! teacher-forced pass measures what the quantization costs. Dequantization runs as candle ops
//! here; dedicated kernels are the kvcache issue's next step.

use super::{tensor_bytes, KvCache, KvKind, KvStats};
use candle_core::{DType, Result, Tensor, D};

const SEQ_DIM: usize = 2;
/// int8 codes are stored as value + 128 in a u8 (candle has no i8 dtype): 1..=255.
const OFFSET: f64 = 128.0;
const QMAX8: f64 = 127.0;
const QMAX4: f64 = 15.0;
/// Channels per int4 group (KIVI's default group size).
pub const INT4_GROUP: usize = 32;
/// Floor of a scale, so a constant row or group does not divide by zero.
const MIN_SCALE: f64 = 1e-12;

/// Bits of a quantized tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    Eight,
    Four,
}

/// One quantized tensor `[b, h, n, d]`: codes (u8; int4 packs two per byte), per-token or
/// per-group scales and, for int4, zero points (f32), each `[b, h, n, groups]`.
#[derive(Clone)]
struct Quantized {
    bits: Bits,
    codes: Tensor,
    scales: Tensor,
    zeros: Option<Tensor>,
}

impl Quantized {
    fn new(x: &Tensor, bits: Bits) -> Result<Self> {
        let x = x.to_dtype(DType::F32)?;
        match bits {
            Bits::Eight => {
                let scales = x.abs()?.max_keepdim(D::Minus1)?.affine(1.0 / QMAX8, 0.0)?.maximum(MIN_SCALE)?;
                let codes = x.broadcast_div(&scales)?.round()?.clamp(-QMAX8, QMAX8)?.affine(1.0, OFFSET)?.to_dtype(DType::U8)?;
                Ok(Self { bits, codes, scales, zeros: None })
            }
            Bits::Four => {
                let (b, h, n, d) = x.dims4()?;
                if d % INT4_GROUP != 0 {
                    candle_core::bail!("int4 kv cache: head dim {d} is not a multiple of the group size {INT4_GROUP}");
                }
                let g = x.reshape((b, h, n, d / INT4_GROUP, INT4_GROUP))?;
                let min = g.min_keepdim(D::Minus1)?;
                let scales = g.max_keepdim(D::Minus1)?.sub(&min)?.affine(1.0 / QMAX4, 0.0)?.maximum(MIN_SCALE)?;
                let codes = g.broadcast_sub(&min)?.broadcast_div(&scales)?.round()?.clamp(0.0, QMAX4)?.reshape((b, h, n, d / 2, 2))?;
                let packed = (codes.narrow(4, 0, 1)? + codes.narrow(4, 1, 1)?.affine(16.0, 0.0)?)?.squeeze(4)?.to_dtype(DType::U8)?;
                Ok(Self { bits, codes: packed, scales: scales.squeeze(4)?, zeros: Some(min.squeeze(4)?) })
            }
        }
    }

    fn dequantize(&self, dtype: DType) -> Result<Tensor> {
        let codes = self.codes.to_dtype(DType::F32)?;
        let x = match (&self.zeros, self.bits) {
            (None, _) | (_, Bits::Eight) => codes.affine(1.0, -OFFSET)?.broadcast_mul(&self.scales)?,
            (Some(zeros), Bits::Four) => {
                let (b, h, n, half) = codes.dims4()?;
                let hi = codes.affine(1.0 / 16.0, 0.0)?.floor()?;
                let lo = (&codes - hi.affine(16.0, 0.0)?)?;
                let groups = half * 2 / INT4_GROUP;
                let codes = Tensor::stack(&[&lo, &hi], 4)?.reshape((b, h, n, groups, INT4_GROUP))?;
                codes.broadcast_mul(&self.scales.unsqueeze(4)?)?.broadcast_add(&zeros.unsqueeze(4)?)?.reshape((b, h, n, half * 2))?
            }
        };
        x.to_dtype(dtype)
    }

    fn map(&self, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(Self { bits: self.bits, codes: f(&self.codes)?, scales: f(&self.scales)?, zeros: self.zeros.as_ref().map(&f).transpose()? })
    }

    fn cat(&self, other: &Self) -> Result<Self> {
        let cat = |a: &Tensor, b: &Tensor| Tensor::cat(&[a, b], SEQ_DIM);
        Ok(Self {
            bits: self.bits,
            codes: cat(&self.codes, &other.codes)?,
            scales: cat(&self.scales, &other.scales)?,
            zeros: match (&self.zeros, &other.zeros) {
                (Some(a), Some(b)) => Some(cat(a, b)?),
                _ => None,
            },
        })
    }

    fn bytes(&self) -> u64 {
        tensor_bytes(&self.codes) + tensor_bytes(&self.scales) + self.zeros.as_ref().map_or(0, tensor_bytes)
    }
}

pub struct QuantizedCache {
    key_bits: Bits,
    value_bits: Bits,
    kind: KvKind,
    layers: Vec<Option<(Quantized, Quantized)>>,
}

impl QuantizedCache {
    pub fn new(n_layers: usize, kind: KvKind, key_bits: Bits, value_bits: Bits) -> Self {
        Self { key_bits, value_bits, kind, layers: vec![None; n_layers] }
    }
}

impl KvCache for QuantizedCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let slot = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        let (qk, qv) = (Quantized::new(k, self.key_bits)?, Quantized::new(v, self.value_bits)?);
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
                    let narrow = |t: &Tensor| t.narrow(SEQ_DIM, 0, keep);
                    *slot = Some((k.map(narrow)?, v.map(narrow)?));
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
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::test_util::ramp;

    #[test]
    fn round_trip_error_is_within_half_a_step_and_bytes_count_scales() {
        let mut cache = QuantizedCache::new(1, KvKind::Int8, Bits::Eight, Bits::Eight);
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

#[cfg(test)]
mod int4_tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn int4_round_trip_is_within_half_a_step_per_group_and_packs_two_codes_a_byte() {
        let x = Tensor::randn(0f32, 1.0, (1, 2, 3, 64), &Device::Cpu).unwrap();
        let mut cache = QuantizedCache::new(1, KvKind::Int4, Bits::Four, Bits::Four);
        let (k, _) = cache.append(0, &x, &x).unwrap();
        let (x, k): (Vec<f32>, Vec<f32>) = (x.flatten_all().unwrap().to_vec1().unwrap(), k.flatten_all().unwrap().to_vec1().unwrap());
        for (gx, gk) in x.chunks(INT4_GROUP).zip(k.chunks(INT4_GROUP)) {
            let (lo, hi) = gx.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let step = (hi - lo) / 15.0;
            for (a, b) in gx.iter().zip(gk) {
                assert!((a - b).abs() <= step * 0.5 + 1e-5, "{a} vs {b} (step {step})");
            }
        }
        // 2 (k, v) x 2 heads x 3 tokens x (32 bytes of codes + 2 groups x (scale + zero) x 4 bytes)
        assert_eq!(cache.stats().kv_cache_bytes, 2 * 2 * 3 * (32 + 2 * 2 * 4));
        // mixed: int8 keys (64 codes + a scale) and int4 values, per head and token.
        let mut mixed = QuantizedCache::new(1, KvKind::Mixed, Bits::Eight, Bits::Four);
        let x = Tensor::randn(0f32, 1.0, (1, 2, 3, 64), &Device::Cpu).unwrap();
        mixed.append(0, &x, &x).unwrap();
        assert_eq!(mixed.stats().kv_cache_bytes, 2 * 3 * ((64 + 4) + (32 + 2 * 2 * 4)));
    }
}
