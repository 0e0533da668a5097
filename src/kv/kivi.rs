//! KIVI: keys quantized per channel, values per token, the most recent tokens in full
//! precision (Liu et al., 2024). Key outliers sit in fixed channels, so a key's scale and zero
//! point run along the channel over a group of `group` tokens; values have no such channels
//! and are quantized per token (groups of `VALUE_GROUP` channels, or the whole head where it is
//! narrower, as in small test models). New tokens wait in a
//! full-precision residual; once it holds `residual + group` tokens, its oldest `group` are
//! quantized (so the last `residual` to `residual + group - 1` tokens are always exact).
//!
//! Codes, scales and zero points live in plain byte and f32 buffers per head, written and read
//! by our kernels (`quant::kv_int`); every step dequantizes the quantized part for attention.
//! Bytes: per head, each key group `d · group · bits / 8` + 8 per channel, each value
//! `d · bits / 8` + 8 per `VALUE_GROUP` channels; the residual at its dtype.

use super::codes::{AsymCodes, Codes};
use super::{grow, tensor_bytes, KvCache, KvKind, KvStats};
use crate::quant::kv_int::Bits;
use candle_core::{DType, Result, Tensor};

const SEQ_DIM: usize = 2;
/// Channels per value group (KIVI's value group size); 8-bit values are symmetric per token.
pub const VALUE_GROUP: usize = 32;

#[derive(Clone, Default)]
struct Layer {
    /// Per head: key groups, each stored channel-major (`[d][group]`, one scale per channel).
    keys: Vec<AsymCodes>,
    /// Per head: values token-major (`[n][d]`).
    values: Vec<Codes>,
    /// Tokens quantized so far.
    quantized: usize,
    /// The full-precision recent tokens.
    residual: Option<(Tensor, Tensor)>,
}

impl Layer {
    fn residual_len(&self) -> usize {
        self.residual.as_ref().map_or(0, |(k, _)| k.dim(SEQ_DIM).unwrap_or(0))
    }

    fn bytes(&self) -> u64 {
        let codes: u64 = self.keys.iter().map(AsymCodes::bytes).sum::<u64>() + self.values.iter().map(Codes::bytes).sum::<u64>();
        codes + self.residual.as_ref().map_or(0, |(k, v)| tensor_bytes(k) + tensor_bytes(v))
    }
}

pub struct KiviCache {
    bits: Bits,
    group: usize,
    residual: usize,
    layers: Vec<Layer>,
}

impl KiviCache {
    pub fn new(n_layers: usize, bits: Bits, group: usize, residual: usize) -> Self {
        Self { bits, group, residual, layers: vec![Layer::default(); n_layers] }
    }

    /// Quantizes `k`, `v: [1, h, group, d]` onto the layer's codes.
    fn quantize_group(&self, layer: &mut Layer, k: &Tensor, v: &Tensor) -> Result<()> {
        let (_, h, g, d) = k.dims4()?;
        // Values in groups of 32 channels, or the whole head where it is narrower (small test models).
        let value_group = if d % VALUE_GROUP == 0 {
            VALUE_GROUP
        } else if VALUE_GROUP % d == 0 {
            d
        } else {
            candle_core::bail!("kivi kv cache: head dim {d} is neither a multiple nor a divisor of the value group size {VALUE_GROUP}");
        };
        // Keys channel-major per head, so each channel's `group` tokens are one quantization group.
        let kt: Vec<f32> = k.to_dtype(DType::F32)?.transpose(2, 3)?.contiguous()?.flatten_all()?.to_vec1()?;
        let vt: Vec<f32> = v.to_dtype(DType::F32)?.contiguous()?.flatten_all()?.to_vec1()?;
        if layer.keys.len() != h {
            layer.keys = vec![AsymCodes::new(self.bits, g); h];
            layer.values = vec![Codes::new(self.bits, d, value_group); h];
        }
        let per_head = g * d;
        for head in 0..h {
            layer.keys[head].push(&kt[head * per_head..(head + 1) * per_head]);
            layer.values[head].push(&vt[head * per_head..(head + 1) * per_head]);
        }
        layer.quantized += g;
        Ok(())
    }

    /// The quantized part as `[1, h, n, d]` keys and values (f32).
    fn dequantize(&self, layer: &Layer, h: usize, d: usize, device: &candle_core::Device) -> Result<(Tensor, Tensor)> {
        let (n, g) = (layer.quantized, self.group);
        let mut keys = vec![0f32; h * n * d];
        let mut values = vec![0f32; h * n * d];
        let mut group_buf = vec![0f32; g * d];
        for head in 0..h {
            let out = &mut keys[head * n * d..(head + 1) * n * d];
            for grp in 0..n / g {
                // A token group is `d` quantization groups, one per channel.
                layer.keys[head].read_groups(grp * d, &mut group_buf);
                // Back from channel-major [d][g] to token-major [g][d].
                for c in 0..d {
                    for t in 0..g {
                        out[(grp * g + t) * d + c] = group_buf[c * g + t];
                    }
                }
            }
            layer.values[head].read(&mut values[head * n * d..(head + 1) * n * d]);
        }
        Ok((Tensor::from_vec(keys, (1, h, n, d), device)?, Tensor::from_vec(values, (1, h, n, d), device)?))
    }
}

impl KvCache for KiviCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, h, _, d) = k.dims4()?;
        let mut slot =
            std::mem::take(self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?);
        let (rk, rv) = grow(slot.residual.take(), k, v)?;
        // Everything attention reads went through the quantizer where it will be stored
        // quantized: flush full groups first, then read.
        let len = rk.dim(SEQ_DIM)?;
        let flush = if len >= self.residual + self.group { (len - self.residual) / self.group * self.group } else { 0 };
        for start in (0..flush).step_by(self.group) {
            self.quantize_group(&mut slot, &rk.narrow(SEQ_DIM, start, self.group)?, &rv.narrow(SEQ_DIM, start, self.group)?)?;
        }
        let (rk, rv) = (rk.narrow(SEQ_DIM, flush, len - flush)?.contiguous()?, rv.narrow(SEQ_DIM, flush, len - flush)?.contiguous()?);
        let out = if slot.quantized == 0 {
            (rk.clone(), rv.clone())
        } else {
            let (qk, qv) = self.dequantize(&slot, h, d, k.device())?;
            (Tensor::cat(&[&qk.to_dtype(k.dtype())?, &rk], SEQ_DIM)?, Tensor::cat(&[&qv.to_dtype(v.dtype())?, &rv], SEQ_DIM)?)
        };
        slot.residual = Some((rk, rv));
        self.layers[layer] = slot;
        Ok(out)
    }

    fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.quantized + l.residual_len())
    }

    /// Rolls back only within the full-precision residual.
    fn truncate(&mut self, len: usize) -> Result<()> {
        for layer in self.layers.iter_mut() {
            let total = layer.quantized + layer.residual_len();
            let drop = total.saturating_sub(len);
            if drop == 0 {
                continue;
            }
            if len < layer.quantized {
                candle_core::bail!("kivi kv cache cannot roll back to {len}: the first {} tokens are quantized", layer.quantized);
            }
            if let Some((k, v)) = layer.residual.take() {
                let keep = len - layer.quantized;
                if keep > 0 {
                    layer.residual = Some((k.narrow(SEQ_DIM, 0, keep)?, v.narrow(SEQ_DIM, 0, keep)?));
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = Layer::default());
    }

    fn stats(&self) -> KvStats {
        KvStats { kv_cache_bytes: self.layers.iter().map(Layer::bytes).sum(), tokens_held: self.seq_len(), evictions: 0, ..KvStats::default() }
    }

    fn kind(&self) -> KvKind {
        KvKind::Kivi
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn keeps_the_residual_exact_quantizes_groups_and_counts_bytes() {
        let (h, d, g, r) = (2, 64, 4, 3);
        let x = Tensor::randn(0f32, 1.0, (1, h, 9, d), &Device::Cpu).unwrap();
        let mut cache = KiviCache::new(1, Bits::Four, g, r);
        let xv = (Tensor::randn(0f32, 1.0, (1, h, 9, d), &Device::Cpu).unwrap() * 3.0).unwrap();
        let (k, v) = cache.append(0, &x, &xv).unwrap();
        // 9 tokens >= r + g: one group of 4 quantized, 5 exact (keys and values alike).
        let max_diff = |a: Tensor, b: Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(max_diff(k.narrow(2, 4, 5).unwrap(), x.narrow(2, 4, 5).unwrap()), 0.0, "the key residual is exact");
        assert_eq!(max_diff(v.narrow(2, 4, 5).unwrap(), xv.narrow(2, 4, 5).unwrap()), 0.0, "the value residual is exact");
        // Values: per token over groups of 32 channels; the error is at most half a step.
        let (xs, vs): (Vec<f32>, Vec<f32>) =
            (xv.narrow(2, 0, 4).unwrap().flatten_all().unwrap().to_vec1().unwrap(), v.narrow(2, 0, 4).unwrap().flatten_all().unwrap().to_vec1().unwrap());
        assert_ne!(xs, vs, "the old values went through the rounding");
        for (group_x, group_v) in xs.chunks(VALUE_GROUP).zip(vs.chunks(VALUE_GROUP)) {
            let (lo, hi) = group_x.iter().fold((f32::MAX, f32::MIN), |(l, u), &v| (l.min(v), u.max(v)));
            let step = (hi - lo) / 15.0;
            for (a, b) in group_x.iter().zip(group_v) {
                assert!((a - b).abs() <= step * 0.5 + 1e-5, "value {a} -> {b}, step {step}");
            }
        }
        // Keys: per channel over the group's 4 tokens; the error is at most half a step.
        let (xs, ks): (Vec<f32>, Vec<f32>) =
            (x.narrow(2, 0, 4).unwrap().flatten_all().unwrap().to_vec1().unwrap(), k.narrow(2, 0, 4).unwrap().flatten_all().unwrap().to_vec1().unwrap());
        for head in 0..h {
            for c in 0..d {
                let at = |t: usize| head * 4 * d + t * d + c;
                let (lo, hi) = (0..4).map(|t| xs[at(t)]).fold((f32::MAX, f32::MIN), |(l, u), v| (l.min(v), u.max(v)));
                let step = (hi - lo) / 15.0;
                for t in 0..4 {
                    assert!((xs[at(t)] - ks[at(t)]).abs() <= step * 0.5 + 1e-5);
                }
            }
        }
        assert_eq!(cache.seq_len(), 9);
        // Per head: key group 64 x 4 x 4 bits = 128 bytes + 64 channels x 8; values 4 tokens x
        // (32 bytes + 2 groups x 8); residual 5 tokens x 64 x 4 bytes x 2 (k, v).
        let per_head = (128 + 64 * 8) + 4 * (32 + 2 * 8) + 5 * 64 * 4 * 2;
        assert_eq!(cache.stats().kv_cache_bytes, (h * per_head) as u64);
        assert!(cache.truncate(3).is_err(), "quantized tokens cannot be rolled back");
        cache.truncate(6).unwrap();
        assert_eq!(cache.seq_len(), 6);
    }
}
