//! Quantized caches: keys and values stored as integers and dequantized on read.
//! - int8: symmetric per token and head (one f32 scale: max |x| / 127), the 8-bit baseline of
//!   KIVI and KVQuant. Bytes: 1 per element + 4 per (token, head).
//! - int4: asymmetric per group of `INT4_GROUP` channels of a token and head (f32 scale and zero
//!   point: the group's min and (max - min) / 15), two codes per byte (KIVI's value format).
//!   Bytes: 1/2 per element + 8 per group.
//! - mixed: int8 keys, int4 values (keys carry the outliers that 4 bits lose most on).
//! Everything attention reads, this step's tokens included, went through the rounding, so a
//! teacher-forced pass measures what the quantization costs. Quantize-on-append and
//! dequantize-on-read run through our kernels (`quant::kv_int`, benches/kv_quant.rs); codes
//! grow in place per head, so an append costs only the new token's quantization.

use super::codes::Codes;
use super::{KvCache, KvKind, KvStats};
use crate::quant::kv_int::Bits;
use candle_core::{DType, Result, Tensor};

/// Channels per int4 group (KIVI's default group size).
pub const INT4_GROUP: usize = 32;

#[derive(Clone)]
struct Layer {
    /// Per head, token-major `[n][d]`.
    keys: Vec<Codes>,
    values: Vec<Codes>,
    tokens: usize,
    head_dim: usize,
}

pub struct QuantizedCache {
    key_bits: Bits,
    value_bits: Bits,
    kind: KvKind,
    layers: Vec<Option<Layer>>,
}

impl QuantizedCache {
    pub fn new(n_layers: usize, kind: KvKind, key_bits: Bits, value_bits: Bits) -> Self {
        Self { key_bits, value_bits, kind, layers: vec![None; n_layers] }
    }
}

/// `[1, h, t, d]` as f32 values, head-major.
fn host_values(x: &Tensor) -> Result<Vec<f32>> {
    x.to_dtype(DType::F32)?.contiguous()?.flatten_all()?.to_vec1()
}

/// Every head's codes dequantized into one `[1, h, n, d]` tensor.
fn read(heads: &[Codes], n: usize, d: usize, like: &Tensor) -> Result<Tensor> {
    let mut out = vec![0f32; heads.len() * n * d];
    for (codes, chunk) in heads.iter().zip(out.chunks_exact_mut(n * d)) {
        codes.read(chunk);
    }
    Tensor::from_vec(out, (1, heads.len(), n, d), like.device())?.to_dtype(like.dtype())
}

impl KvCache for QuantizedCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, h, t, d) = k.dims4()?;
        if b != 1 {
            candle_core::bail!("quantized kv cache: batch {b}, only batch 1 is supported");
        }
        let group_fits = |bits: Bits| bits == Bits::Eight || d % INT4_GROUP == 0;
        if !group_fits(self.key_bits) || !group_fits(self.value_bits) {
            candle_core::bail!("int4 kv cache: head dim {d} is not a multiple of the group size {INT4_GROUP}");
        }
        let (key_bits, value_bits) = (self.key_bits, self.value_bits);
        let slot = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        let state = slot.get_or_insert_with(|| Layer {
            keys: vec![Codes::new(key_bits, d, INT4_GROUP); h],
            values: vec![Codes::new(value_bits, d, INT4_GROUP); h],
            tokens: 0,
            head_dim: d,
        });
        let (kx, vx) = (host_values(k)?, host_values(v)?);
        for head in 0..h {
            let span = head * t * d..(head + 1) * t * d;
            state.keys[head].push(&kx[span.clone()]);
            state.values[head].push(&vx[span]);
        }
        state.tokens += t;
        Ok((read(&state.keys, state.tokens, d, k)?, read(&state.values, state.tokens, d, v)?))
    }

    fn seq_len(&self) -> usize {
        self.layers.first().and_then(Option::as_ref).map_or(0, |l| l.tokens)
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        for slot in self.layers.iter_mut().flatten() {
            if len < slot.tokens {
                let values = len * slot.head_dim;
                slot.keys.iter_mut().chain(slot.values.iter_mut()).for_each(|c| c.truncate(values));
                slot.tokens = len;
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(|slot| *slot = None);
    }

    fn stats(&self) -> KvStats {
        let kv_cache_bytes = self.layers.iter().flatten().flat_map(|l| l.keys.iter().chain(&l.values)).map(Codes::bytes).sum();
        KvStats { kv_cache_bytes, tokens_held: self.seq_len(), evictions: 0, ..KvStats::default() }
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
        // Distinct keys and values, so a swap or an unquantized value shows.
        let (xk, xv) = ((ramp(3, 1.0) - 20.0).unwrap(), ramp(3, -0.5));
        let (k, v) = cache.append(0, &xk, &xv).unwrap();
        let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
        for (what, x, q) in [("keys", flat(&xk), flat(&k)), ("values", flat(&xv), flat(&v))] {
            assert_ne!(x, q, "{what} went through the rounding");
            // Per row of 4 the scale is max|x| / 127; the error is at most half of it.
            for (row_x, row_q) in x.chunks(4).zip(q.chunks(4)) {
                let scale = row_x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                for (a, b) in row_x.iter().zip(row_q) {
                    assert!((a - b).abs() <= scale * 0.5 + 1e-6, "{what}: {a} vs {b}");
                }
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
