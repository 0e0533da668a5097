//! The full cache: one contiguous key and value tensor per layer, grown by concatenation
//! along the sequence axis (what Hugging Face's DynamicCache and candle's llama do).

use super::{grow, tensor_bytes, KvCache, KvKind, KvStats};
use candle_core::{Result, Tensor};

/// Contiguous, growing per-layer keys and values.
pub struct FullCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl FullCache {
    pub fn new(n_layers: usize) -> Self {
        Self { layers: vec![None; n_layers] }
    }
}

const SEQ_DIM: usize = 2;

impl KvCache for FullCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        let (k, v) = grow(slot.take(), k, v)?;
        *slot = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    fn seq_len(&self) -> usize {
        match self.layers.first() {
            Some(Some((k, _))) => k.dim(SEQ_DIM).unwrap_or(0),
            _ => 0,
        }
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        for slot in self.layers.iter_mut() {
            if let Some((k, v)) = slot.take() {
                let keep = len.min(k.dim(SEQ_DIM)?);
                if keep > 0 {
                    *slot = Some((k.narrow(SEQ_DIM, 0, keep)?.contiguous()?, v.narrow(SEQ_DIM, 0, keep)?.contiguous()?));
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(|slot| *slot = None);
    }

    fn stats(&self) -> KvStats {
        let kv_cache_bytes = self.layers.iter().flatten().map(|(k, v)| tensor_bytes(k) + tensor_bytes(v)).sum();
        KvStats { kv_cache_bytes, tokens_held: self.seq_len(), evictions: 0, ..KvStats::default() }
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
        }
        assert_eq!(cache.seq_len(), 6);
        // 3 layers x (k + v) x 2 heads x 6 tokens x 4 dims x 4 bytes
        assert_eq!(cache.stats().kv_cache_bytes, 3 * 2 * 2 * 6 * 4 * 4);
        cache.truncate(4).unwrap();
        assert_eq!(cache.seq_len(), 4);
        assert_eq!(cache.stats().kv_cache_bytes, 3 * 2 * 2 * 4 * 4 * 4);
        cache.reset();
        assert_eq!(cache.seq_len(), 0);
        assert_eq!(cache.stats().kv_cache_bytes, 0);
    }
}
