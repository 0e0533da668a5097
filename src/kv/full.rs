//! The full cache: every key and value, one contiguous buffer per layer, written in place.
//! The buffers grow with amortised capacity (doubling, capped at `MAX_HEADROOM` spare slots)
//! instead of being concatenated on every token as Hugging Face's DynamicCache and candle's
//! llama do: a `Tensor::cat` copies the whole cache per token per layer (189 MB per token at
//! 4,096 tokens of SmolLM2), which made TPOT grow tenfold from 512 to 4,096 tokens. Attention
//! reads a view of the filled prefix, as it does for the static cache.

use super::{tensor_bytes, KvCache, KvKind, KvStats};
use candle_core::{Result, Tensor};

const SEQ_DIM: usize = 2;

/// The most slots a growth step adds beyond what is needed: doubling bounds the copies to
/// O(T) per token amortised, the cap bounds the spare memory (1,024 slots of SmolLM2 are
/// 47 MB) where a long prompt would otherwise double it just before a short decode.
pub const MAX_HEADROOM: usize = 1024;

/// Contiguous, growing per-layer keys and values `[batch, kv_heads, capacity, head_dim]`.
pub struct FullCache {
    /// Allocated on the first append, when shapes, dtype and device are known; kept across
    /// `reset` and `truncate`, so a new sequence or a rollback writes over it.
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Tokens written per layer (layers fill one after another within a forward pass).
    lens: Vec<usize>,
    /// Tokens the first allocation holds (at least what the first append brings).
    expected: usize,
}

impl FullCache {
    pub fn new(n_layers: usize) -> Self {
        Self::with_capacity(n_layers, 0)
    }

    /// A cache whose first allocation holds `expected` tokens (the prompt plus the tokens to
    /// generate, where the caller knows them), so a run never grows it: growing copies the
    /// cache and holds old and new buffers at once (a 4,096-token prompt's first decode step
    /// peaked at 418 MB of SmolLM2 cache for 191 MB held). Untouched slots cost no resident
    /// memory (zeroed pages are mapped on first write).
    pub fn with_capacity(n_layers: usize, expected: usize) -> Self {
        Self { layers: vec![None; n_layers], lens: vec![0; n_layers], expected }
    }

    fn capacity(&self, layer: usize) -> usize {
        self.layers[layer].as_ref().map_or(0, |(k, _)| k.dim(SEQ_DIM).unwrap_or(0))
    }

    /// Slots to allocate for `needed` tokens when `capacity` no longer holds them.
    fn grown_capacity(capacity: usize, needed: usize) -> usize {
        needed.max((capacity * 2).min(needed + MAX_HEADROOM))
    }

    /// Bytes per held token across keys and values of one layer.
    fn bytes_per_slot(kv: &(Tensor, Tensor)) -> u64 {
        let slots = kv.0.dim(SEQ_DIM).unwrap_or(1).max(1) as u64;
        (tensor_bytes(&kv.0) + tensor_bytes(&kv.1)) / slots
    }
}

impl KvCache for FullCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let len = *self.lens.get(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        let (b, h, t, d) = k.dims4()?;
        let needed = len + t;
        let capacity = self.capacity(layer);
        if needed > capacity {
            let grown = if capacity == 0 { needed.max(self.expected) } else { Self::grown_capacity(capacity, needed) };
            let zeros = || Tensor::zeros((b, h, grown, d), k.dtype(), k.device());
            let (nk, nv) = (zeros()?, zeros()?);
            if let Some((ok, ov)) = &self.layers[layer] {
                if len > 0 {
                    nk.slice_set(&ok.narrow(SEQ_DIM, 0, len)?.contiguous()?, SEQ_DIM, 0)?;
                    nv.slice_set(&ov.narrow(SEQ_DIM, 0, len)?.contiguous()?, SEQ_DIM, 0)?;
                }
            }
            self.layers[layer] = Some((nk, nv));
        }
        let (kb, vb) = self.layers[layer].as_ref().expect("allocated above");
        kb.slice_set(&k.contiguous()?, SEQ_DIM, len)?;
        vb.slice_set(&v.contiguous()?, SEQ_DIM, len)?;
        self.lens[layer] = needed;
        Ok((kb.narrow(SEQ_DIM, 0, needed)?, vb.narrow(SEQ_DIM, 0, needed)?))
    }

    fn seq_len(&self) -> usize {
        self.lens.first().copied().unwrap_or(0)
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        self.lens.iter_mut().for_each(|l| *l = (*l).min(len));
        Ok(())
    }

    fn reset(&mut self) {
        self.lens.iter_mut().for_each(|l| *l = 0);
    }

    /// `kv_cache_bytes` counts the tokens held (as every growing strategy does, so strategies
    /// compare like for like); `reserved_bytes` the buffers allocated, spare slots included.
    fn stats(&self) -> KvStats {
        let held = self.layers.iter().zip(&self.lens).map(|(kv, &len)| kv.as_ref().map_or(0, |kv| Self::bytes_per_slot(kv) * len as u64));
        let reserved = self.layers.iter().flatten().map(|(k, v)| tensor_bytes(k) + tensor_bytes(v)).sum();
        KvStats { kv_cache_bytes: held.sum(), tokens_held: self.seq_len(), reserved_bytes: Some(reserved), ..KvStats::default() }
    }

    fn kind(&self) -> KvKind {
        KvKind::Full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn kv(t: usize, fill: f32) -> Tensor {
        (Tensor::ones((1, 2, t, 4), DType::F32, &Device::Cpu).unwrap() * fill as f64).unwrap()
    }

    #[test]
    fn grows_truncates_and_counts_bytes_exactly() {
        let mut cache = FullCache::new(3);
        for layer in 0..3 {
            let (k, _) = cache.append(layer, &kv(5, 1.0), &kv(5, 1.0)).unwrap();
            assert_eq!(k.dims(), &[1, 2, 5, 4]);
        }
        for layer in 0..3 {
            let (k, v) = cache.append(layer, &kv(1, 2.0), &kv(1, 3.0)).unwrap();
            assert_eq!(k.dims(), &[1, 2, 6, 4]);
            let last: Vec<f32> = v.narrow(2, 5, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert!(last.iter().all(|&x| x == 3.0));
            let first: Vec<f32> = k.narrow(2, 0, 5).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert!(first.iter().all(|&x| x == 1.0), "the copy on growth keeps the prefix");
        }
        assert_eq!(cache.seq_len(), 6);
        // 3 layers x (k + v) x 2 heads x 6 tokens x 4 dims x 4 bytes
        assert_eq!(cache.stats().kv_cache_bytes, 3 * 2 * 2 * 6 * 4 * 4);
        // 5 slots, then doubled to 10 when the sixth token came.
        assert_eq!(cache.stats().reserved_bytes, Some(3 * 2 * 2 * 10 * 4 * 4));
        cache.truncate(4).unwrap();
        assert_eq!(cache.seq_len(), 4);
        assert_eq!(cache.stats().kv_cache_bytes, 3 * 2 * 2 * 4 * 4 * 4);
        // A rollback overwrites the dropped slots.
        let (_, v) = cache.append(0, &kv(1, 7.0), &kv(1, 7.0)).unwrap();
        assert_eq!(v.dims(), &[1, 2, 5, 4]);
        let last: Vec<f32> = v.narrow(2, 4, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(last.iter().all(|&x| x == 7.0));
        cache.reset();
        assert_eq!(cache.seq_len(), 0);
        assert_eq!(cache.stats().kv_cache_bytes, 0);
    }

    #[test]
    fn an_expected_length_is_allocated_once() {
        let mut cache = FullCache::with_capacity(1, 9);
        for _ in 0..9 {
            cache.append(0, &kv(1, 1.0), &kv(1, 1.0)).unwrap();
            assert_eq!(cache.stats().reserved_bytes, Some(2 * 2 * 9 * 4 * 4));
        }
        cache.append(0, &kv(1, 1.0), &kv(1, 1.0)).unwrap();
        assert_eq!(cache.stats().reserved_bytes, Some(2 * 2 * 18 * 4 * 4), "past the expected length it grows");
    }

    #[test]
    fn growth_doubles_then_caps_the_spare_slots() {
        assert_eq!(FullCache::grown_capacity(0, 7), 7);
        assert_eq!(FullCache::grown_capacity(7, 8), 14);
        assert_eq!(FullCache::grown_capacity(4096, 4097), 4097 + MAX_HEADROOM);
        // A prompt longer than double the capacity is allocated as asked.
        assert_eq!(FullCache::grown_capacity(10, 100), 100);
    }

    /// Per token, appending copies only the new slots: the buffer is reallocated O(log T)
    /// times, not T times (the old cache reallocated on every token).
    #[test]
    fn decoding_reallocates_rarely() {
        let mut cache = FullCache::new(1);
        let mut reallocations = 0;
        let mut reserved = 0;
        for _ in 0..2000 {
            cache.append(0, &kv(1, 1.0), &kv(1, 1.0)).unwrap();
            let now = cache.stats().reserved_bytes.unwrap();
            reallocations += usize::from(now != reserved);
            reserved = now;
        }
        assert!(reallocations <= 12, "{reallocations} reallocations for 2,000 tokens");
    }
}
