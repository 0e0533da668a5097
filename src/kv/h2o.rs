//! H2O (Heavy-Hitter Oracle): each key's cumulative attention score (summed over every query
//! that has seen it, averaged over the query heads of its key/value head) decides who stays.
//! A layer keeps `budget` tokens per head: the `budget / 2` most recent (the paper's equal
//! split between recent and heavy) and the `budget - budget / 2` old tokens with the highest
//! cumulative score. The model's attention layer hands the weights over through `observe`
//! after each step, so this step attended over everything it held before eviction; the
//! prefill's own weights score the prompt, as in the paper.

use super::scored::{gather_per_head, grow_held, keep_indices, keep_scores, per_kv_head, SEQ_DIM};
use super::{tensor_bytes, KvCache, KvKind, KvStats, ObservesAttention};
use candle_core::{Result, Tensor};

#[derive(Clone, Default)]
struct Layer {
    kv: Option<(Tensor, Tensor)>,
    /// `[n_kv][held]` cumulative attention per key.
    scores: Vec<Vec<f32>>,
}

pub struct H2oCache {
    budget: usize,
    layers: Vec<Layer>,
    positions: usize,
    evictions: u64,
}

impl H2oCache {
    pub fn new(n_layers: usize, budget: usize) -> Self {
        Self { budget, layers: vec![Layer::default(); n_layers], positions: 0, evictions: 0 }
    }
}

impl KvCache for H2oCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        if layer == 0 {
            self.positions += k.dim(SEQ_DIM)?;
        }
        let slot = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        grow_held(&mut slot.kv, k, v)
    }

    fn seq_len(&self) -> usize {
        self.positions
    }

    /// Scores are cumulative, so a rollback cannot undo what evictions decided: refused once
    /// anything was evicted; before that it drops the last tokens and their scores.
    fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.positions {
            return Ok(());
        }
        if self.evictions > 0 {
            candle_core::bail!("h2o kv cache cannot roll back after evicting (cumulative scores)");
        }
        for slot in self.layers.iter_mut() {
            if let Some((k, v)) = slot.kv.take() {
                if len > 0 {
                    slot.kv = Some((k.narrow(SEQ_DIM, 0, len)?, v.narrow(SEQ_DIM, 0, len)?));
                }
            }
            slot.scores.iter_mut().for_each(|s| s.truncate(len));
        }
        self.positions = len;
        Ok(())
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = Layer::default());
        self.positions = 0;
        self.evictions = 0;
    }

    fn stats(&self) -> KvStats {
        let kv_cache_bytes = self.layers.iter().filter_map(|l| l.kv.as_ref()).map(|(k, v)| tensor_bytes(k) + tensor_bytes(v)).sum();
        let tokens_held = self.layers.first().and_then(|l| l.kv.as_ref()).map_or(0, |(k, _)| k.dim(SEQ_DIM).unwrap_or(0));
        KvStats { kv_cache_bytes, tokens_held, evictions: self.evictions, ..KvStats::default() }
    }

    fn attention_observer(&mut self) -> Option<&mut dyn ObservesAttention> {
        Some(self)
    }

    fn kind(&self) -> KvKind {
        KvKind::H2o
    }
}

impl ObservesAttention for H2oCache {
    fn observe(&mut self, layer: usize, attn: &Tensor) -> Result<()> {
        let budget = self.budget;
        let slot = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        let Some((k, v)) = slot.kv.take() else { return Ok(()) };
        let (n_kv, len) = (k.dim(1)?, k.dim(SEQ_DIM)?);
        let step = per_kv_head(attn, n_kv, true)?;
        slot.scores.resize(n_kv, Vec::new());
        for (acc, new) in slot.scores.iter_mut().zip(&step) {
            acc.resize(len, 0.0);
            acc.iter_mut().zip(new).for_each(|(a, n)| *a += n);
        }
        if len <= budget {
            slot.kv = Some((k, v));
            return Ok(());
        }
        let recent = budget / 2;
        let keep: Vec<Vec<u32>> = slot.scores.iter().map(|s| keep_indices(s, len - recent, budget - recent)).collect();
        slot.kv = Some((gather_per_head(&k, &keep)?, gather_per_head(&v, &keep)?));
        keep_scores(&mut slot.scores, &keep);
        if layer == 0 {
            self.evictions += (len - budget) as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    use crate::kv::test_util::positions as kv;

    fn attn(row: &[f32]) -> Tensor {
        Tensor::new(row, &Device::Cpu).unwrap().reshape((1, 1, 1, row.len())).unwrap()
    }

    #[test]
    fn keeps_the_heavy_hitters_and_the_recent_half() {
        let mut cache = H2oCache::new(1, 4);
        cache.append(0, &kv(4, 0.0), &kv(4, 0.0)).unwrap();
        cache.observe(0, &attn(&[0.1, 0.6, 0.1, 0.2])).unwrap();
        assert_eq!(cache.stats().evictions, 0, "within budget");
        let (k, _) = cache.append(0, &kv(1, 4.0), &kv(1, 4.0)).unwrap();
        assert_eq!(k.dim(2).unwrap(), 5);
        // Cumulative: [0.2, 0.7, 0.2, 0.3, 0.1]; recent 2 = tokens 3, 4; heavy 2 of 0..3 = 1 and
        // 0 (tie with 2 goes to the earlier token).
        cache.observe(0, &attn(&[0.1, 0.1, 0.1, 0.1, 0.1])).unwrap();
        let (k, _) = cache.append(0, &kv(1, 5.0), &kv(1, 5.0)).unwrap();
        assert_eq!(k.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0., 1., 3., 4., 5.]);
        let stats = cache.stats();
        assert_eq!((cache.seq_len(), stats.evictions, stats.kv_cache_bytes), (6, 1, 2 * 5 * 4));
        assert!(cache.truncate(2).is_err());
    }
}
