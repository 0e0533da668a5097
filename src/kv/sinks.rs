//! StreamingLLM's attention sinks: the first `sinks` tokens plus the last `window`.
//!
//! For RoPE models the cache keeps keys before rotation and rotates them by their position in
//! the cache (sinks at 0..S, the window right after), as the paper does: the model rotates
//! each query at the cache length (`query_position`), so relative distances inside the cache
//! stay those the model was trained on even after millions of tokens. Re-rotating the held
//! keys costs one RoPE over at most S + W + 1 keys a step, flat in the context.
//!
//! GPT-2 has learned absolute position embeddings added to the input, so its keys carry their
//! positions from the start and cannot be re-positioned: with GPT-2 this cache keeps the sinks
//! and the window as they were computed (`append`), positions keep growing, and the sequence
//! stays bounded by GPT-2's 1,024 positions. As with `window`, a multi-token append (the
//! prefill) attends over everything it brings before the middle is dropped.

use super::{grow, tensor_bytes, KvCache, KvKind, KvStats, PositionsKeys, Rotate};
use candle_core::{Result, Tensor};

const SEQ_DIM: usize = 2;

pub struct SinksCache {
    sinks: usize,
    window: usize,
    /// Per layer: keys (un-rotated when the model positions through the cache) and values.
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Positions consumed (the next absolute position).
    positions: Vec<usize>,
    evictions: u64,
}

impl SinksCache {
    pub fn new(n_layers: usize, sinks: usize, window: usize) -> Self {
        Self { sinks, window, layers: vec![None; n_layers], positions: vec![0; n_layers], evictions: 0 }
    }

    fn held(&self, layer: usize) -> usize {
        self.layers.get(layer).and_then(Option::as_ref).map_or(0, |(k, _)| k.dim(SEQ_DIM).unwrap_or(0))
    }

    /// Adds `k`, `v` after what the layer holds; returns everything (for this step's
    /// attention) and keeps the sinks plus the last `window`.
    fn push(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(SEQ_DIM)?;
        let slot = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        let (k, v) = grow(slot.take(), k, v)?;
        let len = k.dim(SEQ_DIM)?;
        let limit = self.sinks + self.window;
        let kept = if len > limit {
            if layer == 0 {
                self.evictions += (len - limit) as u64;
            }
            let keep = |x: &Tensor| -> Result<Tensor> {
                let head = x.narrow(SEQ_DIM, 0, self.sinks)?;
                let tail = x.narrow(SEQ_DIM, len - self.window, self.window)?;
                Tensor::cat(&[&head, &tail], SEQ_DIM)
            };
            (keep(&k)?, keep(&v)?)
        } else {
            (k.clone(), v.clone())
        };
        *slot = Some(kept);
        self.positions[layer] += t;
        Ok((k, v))
    }
}

impl KvCache for SinksCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        self.push(layer, k, v)
    }

    /// Queries sit right after what the cache holds.
    fn seq_len(&self) -> usize {
        self.positions.first().copied().unwrap_or(0)
    }

    /// Rolls back only while the dropped positions are still held after the sinks.
    fn truncate(&mut self, len: usize) -> Result<()> {
        for layer in 0..self.layers.len() {
            let drop = self.positions[layer].saturating_sub(len);
            if drop == 0 {
                continue;
            }
            let held = self.held(layer);
            // Once anything was evicted, the window's start is the earliest position to return to.
            let evicted = self.positions[layer] - held;
            let removable = if evicted > 0 { held - self.sinks.min(held) } else { held };
            if drop > removable {
                candle_core::bail!("sinks kv cache cannot roll back to {len}: positions before it were evicted");
            }
            if let Some((k, v)) = self.layers[layer].take() {
                if held > drop {
                    self.layers[layer] = Some((k.narrow(SEQ_DIM, 0, held - drop)?, v.narrow(SEQ_DIM, 0, held - drop)?));
                }
            }
            self.positions[layer] = len;
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
        KvStats { kv_cache_bytes, tokens_held: self.held(0), evictions: self.evictions, ..KvStats::default() }
    }

    fn key_positions(&mut self) -> Option<&mut dyn PositionsKeys> {
        Some(self)
    }

    fn kind(&self) -> KvKind {
        KvKind::Sinks
    }
}

impl PositionsKeys for SinksCache {
    fn query_position(&self, layer: usize) -> usize {
        self.held(layer)
    }

    fn append_unrotated(&mut self, layer: usize, k: &Tensor, v: &Tensor, rotate: Rotate) -> Result<(Tensor, Tensor)> {
        let (k, v) = self.push(layer, k, v)?;
        Ok((rotate(&k, 0)?, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kv::test_util::positions as kv;

    use crate::kv::test_util::values;

    #[test]
    fn keeps_sinks_and_window_and_repositions_keys() {
        let mut cache = SinksCache::new(1, 2, 3);
        let (k, _) = cache.append(0, &kv(7, 0.0), &kv(7, 0.0)).unwrap();
        assert_eq!(values(&k), [0., 1., 2., 3., 4., 5., 6.], "the prefill attends over all it brings");
        assert_eq!(cache.query_position(0), 5, "the next query sits after 2 sinks + 3 window");
        // A "rotation" that adds the position, to see where the cache places each key.
        let rotate = |x: &Tensor, first: usize| -> Result<Tensor> {
            let t = x.dim(SEQ_DIM)?;
            let pos = Tensor::arange(first as f32, (first + t) as f32, x.device())?.reshape((1, 1, t, 1))?;
            x.broadcast_add(&(pos * 100.0)?)
        };
        let (k, v) = cache.append_unrotated(0, &kv(1, 7.0), &kv(1, 7.0), &rotate).unwrap();
        assert_eq!(values(&v), [0., 1., 4., 5., 6., 7.]);
        assert_eq!(values(&k), [0., 101., 204., 305., 406., 507.], "positions 0..6 inside the cache");
        assert_eq!(cache.seq_len(), 8);
        let stats = cache.stats();
        assert_eq!((stats.tokens_held, stats.evictions, stats.kv_cache_bytes), (5, 3, 2 * 5 * 4));
    }
}
