//! The sliding-window cache: keeps the keys and values of the last `window` positions and
//! drops older ones (Longformer/Mistral-style local attention at decode time). A multi-token
//! append (the prefill) attends over everything it brings, then only the last `window` are
//! kept, so with `window` >= the sequence length it is exactly the full cache. Keys are stored
//! after RoPE, at their true positions, so positions keep growing past the window (for GPT-2's
//! learned absolute positions this is the same: each token keeps its own position embedding).

use super::{grow, tensor_bytes, KvCache, KvKind, KvStats};
use candle_core::{Result, Tensor};

const SEQ_DIM: usize = 2;

pub struct WindowCache {
    window: usize,
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Positions consumed per layer (the next position), not tokens kept.
    positions: Vec<usize>,
    evictions: u64,
}

impl WindowCache {
    pub fn new(n_layers: usize, window: usize) -> Self {
        Self { window, layers: vec![None; n_layers], positions: vec![0; n_layers], evictions: 0 }
    }
}

impl KvCache for WindowCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(SEQ_DIM)?;
        let slot = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        let (k, v) = grow(slot.take(), k, v)?;
        let len = k.dim(SEQ_DIM)?;
        let kept = if len > self.window {
            if layer == 0 {
                self.evictions += (len - self.window) as u64;
            }
            let from = len - self.window;
            (k.narrow(SEQ_DIM, from, self.window)?.contiguous()?, v.narrow(SEQ_DIM, from, self.window)?.contiguous()?)
        } else {
            (k.clone(), v.clone())
        };
        *slot = Some(kept);
        self.positions[layer] += t;
        Ok((k, v))
    }

    fn seq_len(&self) -> usize {
        self.positions.first().copied().unwrap_or(0)
    }

    /// Rolls back to `len` positions while the dropped ones are still in the window.
    fn truncate(&mut self, len: usize) -> Result<()> {
        for (slot, pos) in self.layers.iter_mut().zip(self.positions.iter_mut()) {
            let drop = pos.saturating_sub(len);
            if drop == 0 {
                continue;
            }
            let Some((k, v)) = slot.take() else { continue };
            let held = k.dim(SEQ_DIM)?;
            if drop > held {
                candle_core::bail!("window kv cache cannot roll back {drop} positions: only the last {held} are kept");
            }
            if held > drop {
                *slot = Some((k.narrow(SEQ_DIM, 0, held - drop)?, v.narrow(SEQ_DIM, 0, held - drop)?));
            }
            *pos = len;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(|slot| *slot = None);
        self.positions.iter_mut().for_each(|p| *p = 0);
        self.evictions = 0;
    }

    fn stats(&self) -> KvStats {
        let kv_cache_bytes = self.layers.iter().flatten().map(|(k, v)| tensor_bytes(k) + tensor_bytes(v)).sum();
        let tokens_held = self.layers.first().and_then(Option::as_ref).map_or(0, |(k, _)| k.dim(SEQ_DIM).unwrap_or(0));
        KvStats { kv_cache_bytes, tokens_held, evictions: self.evictions, ..KvStats::default() }
    }

    fn kind(&self) -> KvKind {
        KvKind::Window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kv::test_util::positions as kv;

    use crate::kv::test_util::values;

    #[test]
    fn keeps_the_last_window_and_counts_positions_and_bytes() {
        let mut cache = WindowCache::new(1, 4);
        let (k, _) = cache.append(0, &kv(6, 0.0), &kv(6, 0.0)).unwrap();
        assert_eq!(values(&k), [0., 1., 2., 3., 4., 5.], "the prefill attends over all it brings");
        let (k, _) = cache.append(0, &kv(1, 6.0), &kv(1, 6.0)).unwrap();
        assert_eq!(values(&k), [2., 3., 4., 5., 6.], "then the window plus the new token");
        assert_eq!(cache.seq_len(), 7);
        let stats = cache.stats();
        assert_eq!((stats.tokens_held, stats.evictions, stats.kv_cache_bytes), (4, 3, 2 * 4 * 4));
        cache.truncate(5).unwrap();
        let (k, _) = cache.append(0, &kv(1, 9.0), &kv(1, 9.0)).unwrap();
        assert_eq!(values(&k), [3., 4., 9.]);
        assert!(cache.truncate(0).is_err(), "positions 0-2 are gone");
    }
}
