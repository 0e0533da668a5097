//! The static cache: one preallocated contiguous key and value buffer per layer, sized for the
//! longest sequence the run can reach and written in place (the layout vAttention keeps and
//! what Hugging Face's StaticCache does). Attention reads a view of the filled prefix, so no
//! step copies the cache; the fixed addresses are also what a captured CUDA graph needs.

use super::{tensor_bytes, InPlaceBuffers, KvCache, KvKind, KvStats};
use candle_core::{Result, Tensor};

const SEQ_DIM: usize = 2;

/// Preallocated per-layer keys and values `[batch, kv_heads, capacity, head_dim]`.
pub struct StaticCache {
    capacity: usize,
    /// Allocated on the first append, when the shapes, dtype and device are known.
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Tokens written per layer (layers fill one after another within a forward pass).
    lens: Vec<usize>,
}

impl StaticCache {
    pub fn new(n_layers: usize, capacity: usize) -> Self {
        Self { capacity, layers: vec![None; n_layers], lens: vec![0; n_layers] }
    }

    /// Bytes that hold tokens (the reserved buffers are larger until the sequence fills them).
    fn used_bytes(&self) -> u64 {
        let per_slot = |(k, v): &(Tensor, Tensor)| (tensor_bytes(k) + tensor_bytes(v)) / self.capacity as u64;
        self.lens.iter().zip(&self.layers).map(|(&len, l)| l.as_ref().map_or(0, |kv| per_slot(kv) * len as u64)).sum()
    }
}

impl KvCache for StaticCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, h, t, d) = k.dims4()?;
        let len = *self.lens.get(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        if len + t > self.capacity {
            candle_core::bail!(
                "static kv cache full: {} tokens for a capacity of {} (the capacity is the prompt plus --max-new-tokens)",
                len + t,
                self.capacity
            );
        }
        if self.layers[layer].is_none() {
            let zeros = || Tensor::zeros((b, h, self.capacity, d), k.dtype(), k.device());
            self.layers[layer] = Some((zeros()?, zeros()?));
        }
        let (kb, vb) = self.layers[layer].as_ref().expect("allocated above");
        kb.slice_set(&k.contiguous()?, SEQ_DIM, len)?;
        vb.slice_set(&v.contiguous()?, SEQ_DIM, len)?;
        self.lens[layer] = len + t;
        Ok((kb.narrow(SEQ_DIM, 0, len + t)?, vb.narrow(SEQ_DIM, 0, len + t)?))
    }

    fn seq_len(&self) -> usize {
        self.lens.first().copied().unwrap_or(0)
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        self.lens.iter_mut().for_each(|l| *l = (*l).min(len));
        Ok(())
    }

    /// Keeps the buffers: a new sequence overwrites them in place.
    fn reset(&mut self) {
        self.lens.iter_mut().for_each(|l| *l = 0);
    }

    /// Bytes held are the reserved buffers, whatever part of them is filled.
    fn stats(&self) -> KvStats {
        let kv_cache_bytes = self.layers.iter().flatten().map(|(k, v)| tensor_bytes(k) + tensor_bytes(v)).sum();
        KvStats { kv_cache_bytes, tokens_held: self.seq_len(), used_bytes: Some(self.used_bytes()), ..KvStats::default() }
    }

    fn kind(&self) -> KvKind {
        KvKind::Static
    }

    fn in_place(&mut self) -> Option<&mut dyn InPlaceBuffers> {
        Some(self)
    }
}

/// The buffers the CUDA graph decode step writes directly.
impl InPlaceBuffers for StaticCache {
    fn capacity(&self) -> usize {
        self.capacity
    }

    fn buffers(&self, layer: usize) -> Option<&(Tensor, Tensor)> {
        self.layers.get(layer).and_then(Option::as_ref)
    }

    fn advance(&mut self, tokens: usize) -> Result<()> {
        let len = self.seq_len() + tokens;
        if len > self.capacity {
            candle_core::bail!("static kv cache full: {len} tokens for a capacity of {}", self.capacity);
        }
        self.lens.iter_mut().for_each(|l| *l = len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::test_util::ramp as kv;
    use crate::kv::FullCache;

    #[test]
    fn returns_what_the_full_cache_returns_and_holds_its_reservation() {
        let (mut full, mut fixed) = (FullCache::new(2), StaticCache::new(2, 10));
        for (step, t) in [3usize, 1, 1, 2].into_iter().enumerate() {
            for layer in 0..2 {
                let (k, v) = (kv(t, step as f32 + layer as f32), kv(t, 0.5 * step as f32));
                let (fk, fv) = full.append(layer, &k, &v).unwrap();
                let (sk, sv) = fixed.append(layer, &k, &v).unwrap();
                for (a, b) in [(fk, sk), (fv, sv)] {
                    assert_eq!(a.dims(), b.dims());
                    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
                    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
                    assert_eq!(a, b);
                }
            }
        }
        assert_eq!(fixed.seq_len(), 7);
        // 2 layers x (k + v) x 2 heads x 10 slots x 4 dims x 4 bytes, whatever is filled.
        assert_eq!(fixed.stats().kv_cache_bytes, 2 * 2 * 2 * 10 * 4 * 4);
        assert_eq!(fixed.stats().used_bytes, Some(2 * 2 * 2 * 7 * 4 * 4));
        fixed.truncate(5).unwrap();
        assert_eq!(fixed.seq_len(), 5);
        fixed.reset();
        assert_eq!(fixed.seq_len(), 0);
        assert_eq!(fixed.stats().kv_cache_bytes, 2 * 2 * 2 * 10 * 4 * 4);
    }

    #[test]
    fn refuses_to_overflow_its_capacity() {
        let mut cache = StaticCache::new(1, 4);
        cache.append(0, &kv(3, 1.0), &kv(3, 1.0)).unwrap();
        let err = cache.append(0, &kv(2, 1.0), &kv(2, 1.0)).unwrap_err().to_string();
        assert!(err.contains("capacity of 4"), "{err}");
        assert!(cache.advance(2).is_err());
    }
}
