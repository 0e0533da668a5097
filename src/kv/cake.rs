//! CAKE (Cascading and Adaptive KV cache Eviction, ICLR 2025): layers get different budgets
//! from how their attention behaves, and tokens are kept by the mean plus variance of the
//! attention they receive.
//!
//! At the prefill, for each layer, over the last `CAKE_WINDOW` queries and the keys before
//! them:
//! - spatial dispersion H = the entropy of those attention weights (summed over heads, queries
//!   and keys), temporal shift V = their variance across the window's queries (summed);
//!   the layer's preference is H^(1/τ1) · V^(1/τ2) (τ1 = τ2 = 1 here);
//! - each key's eviction indicator = mean + γ · variance of its attention over the window's
//!   queries, smoothed over 5 neighbouring keys and averaged over the query heads of its
//!   key/value head.
//!
//! Once every layer has reported (the end of the prefill), the total `(budget - window) ·
//! layers` is split across layers in proportion to their preference (capped at what a layer
//! holds, the excess handed to the others), and each layer keeps per head its best-scored
//! old tokens plus the last `CAKE_WINDOW`. That is the reference implementation's
//! non-cascading mode: the same final allocation, evicted after the prefill instead of layer by
//! layer during it (our cache sees a layer's weights only after its attention ran). While
//! decoding, a layer over its budget drops the old token the current query attends to least
//! (smoothed), as the reference's decoding step does.

//!
//! `hybrid:BUDGET` is the same policy in vAttention's layout (the `static` cache's): once the
//! budgets are set, each layer's kept tokens are compacted into one preallocated contiguous
//! buffer sized to its budget plus the recent window (plus the one token a decode step appends
//! before it evicts), written in place from then on, so attention reads one contiguous view and
//! no step allocates. The prefill is held as CAKE holds it (every layer must report before any
//! budget is known), then compacted.

use super::scored::{gather_per_head, keep_indices, per_kv_head, SEQ_DIM};
use super::{grow, tensor_bytes, KvCache, KvKind, KvStats, ObservesAttention};
use candle_core::{Result, Tensor};

/// Queries whose attention decides (CAKE's observation window), always kept.
pub const CAKE_WINDOW: usize = 32;
/// Weight of the variance in the eviction indicator (CAKE's γ). The paper tunes it per model;
/// we fix one value, large because attention variances are orders of magnitude below means.
const GAMMA: f32 = 200.0;
/// Width of the smoothing over neighbouring keys (the reference's avg_pool1d, zero-padded).
const POOL: usize = 5;

/// Where a layer's kept keys and values live.
#[derive(Clone, Default)]
enum Store {
    #[default]
    Empty,
    /// Tensors that grow by concatenation and are re-gathered on eviction (cake; hybrid's
    /// prefill).
    Growing(Tensor, Tensor),
    /// One preallocated `[1, n_kv, capacity, d]` buffer per side, the first `len` slots filled.
    Buffer { k: Tensor, v: Tensor, len: usize },
}

impl Store {
    fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        match self {
            Self::Buffer { k: kb, v: vb, len } => {
                let t = k.dim(SEQ_DIM)?;
                let capacity = kb.dim(SEQ_DIM)?;
                if *len + t > capacity {
                    candle_core::bail!("hybrid kv cache buffer full: {} tokens for {capacity} slots (one step appends at most one token)", *len + t);
                }
                kb.slice_set(&k.contiguous()?, SEQ_DIM, *len)?;
                vb.slice_set(&v.contiguous()?, SEQ_DIM, *len)?;
                *len += t;
                Ok((kb.narrow(SEQ_DIM, 0, *len)?, vb.narrow(SEQ_DIM, 0, *len)?))
            }
            Self::Growing(hk, hv) => {
                let (k, v) = grow(Some((hk.clone(), hv.clone())), k, v)?;
                *self = Self::Growing(k.clone(), v.clone());
                Ok((k, v))
            }
            Self::Empty => {
                let (k, v) = grow(None, k, v)?;
                *self = Self::Growing(k.clone(), v.clone());
                Ok((k, v))
            }
        }
    }

    /// The kept keys and values (a view of the filled part of a buffer).
    fn held(&self) -> Result<Option<(Tensor, Tensor)>> {
        Ok(match self {
            Self::Empty => None,
            Self::Growing(k, v) => Some((k.clone(), v.clone())),
            Self::Buffer { k, v, len } => Some((k.narrow(SEQ_DIM, 0, *len)?, v.narrow(SEQ_DIM, 0, *len)?)),
        })
    }

    /// Keeps only `keep[head]` of each head's tokens, in order: re-gathered tensors, or
    /// compacted to the front of the buffer in place.
    fn keep(&mut self, keep: &[Vec<u32>]) -> Result<()> {
        if let Self::Buffer { k, v, len } = self {
            if keep.iter().all(|idx| idx.len() + 1 == *len) {
                // A decode step's eviction: one token per head. Shift each head's tail over it
                // in place (copying only the tail) instead of gathering every kept token.
                for (h, idx) in keep.iter().enumerate() {
                    let evicted = idx.iter().enumerate().position(|(i, &j)| i as u32 != j).unwrap_or(idx.len());
                    let moved = *len - evicted - 1;
                    if moved == 0 {
                        continue;
                    }
                    for buffer in [&*k, &*v] {
                        let head = buffer.narrow(1, h, 1)?;
                        // A copy: slice_set refuses a source in the same storage.
                        let tail = head.narrow(SEQ_DIM, evicted + 1, moved)?.copy()?;
                        head.slice_set(&tail, SEQ_DIM, evicted)?;
                    }
                }
                *len -= 1;
                return Ok(());
            }
        }
        let Some((k, v)) = self.held()? else { return Ok(()) };
        let (k, v) = (gather_per_head(&k, keep)?, gather_per_head(&v, keep)?);
        match self {
            Self::Buffer { k: kb, v: vb, len } => {
                kb.slice_set(&k, SEQ_DIM, 0)?;
                vb.slice_set(&v, SEQ_DIM, 0)?;
                *len = k.dim(SEQ_DIM)?;
            }
            _ => *self = Self::Growing(k, v),
        }
        Ok(())
    }

    /// Moves growing tensors into a buffer of `capacity` slots.
    fn into_buffer(&mut self, capacity: usize) -> Result<()> {
        if let Self::Growing(k, v) = self {
            let (b, h, len, d) = k.dims4()?;
            let zeros = || Tensor::zeros((b, h, capacity.max(len), d), k.dtype(), k.device());
            let (kb, vb) = (zeros()?, zeros()?);
            kb.slice_set(&k.contiguous()?, SEQ_DIM, 0)?;
            vb.slice_set(&v.contiguous()?, SEQ_DIM, 0)?;
            *self = Self::Buffer { k: kb, v: vb, len };
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Growing(k, _) => k.dim(SEQ_DIM).unwrap_or(0),
            Self::Buffer { len, .. } => *len,
        }
    }

    /// (bytes reserved, bytes filled).
    fn bytes(&self) -> (u64, u64) {
        match self {
            Self::Empty => (0, 0),
            Self::Growing(k, v) => (tensor_bytes(k) + tensor_bytes(v), tensor_bytes(k) + tensor_bytes(v)),
            Self::Buffer { k, v, len } => {
                let reserved = tensor_bytes(k) + tensor_bytes(v);
                (reserved, reserved / k.dim(SEQ_DIM).unwrap_or(1).max(1) as u64 * *len as u64)
            }
        }
    }
}

#[derive(Clone, Default)]
struct Layer {
    kv: Store,
    /// The layer's preference score, once its prefill was observed.
    preference: Option<f64>,
    /// `[n_kv][held - window]` prefill indicators of the old tokens, until budgets are set.
    indicator: Vec<Vec<f32>>,
    /// Old tokens (outside the recent window) this layer may keep.
    budget: Option<usize>,
}

pub struct CakeCache {
    budget: usize,
    layers: Vec<Layer>,
    positions: usize,
    /// Tokens evicted, summed over layers (layers evict different numbers).
    evicted_slots: u64,
    /// hybrid: kept tokens live in preallocated buffers once the budgets are set.
    compacted: bool,
}

impl CakeCache {
    /// `budget` is the average number of tokens a layer keeps, the recent window included.
    pub fn new(n_layers: usize, budget: usize) -> Self {
        Self { budget, layers: vec![Layer::default(); n_layers], positions: 0, evicted_slots: 0, compacted: false }
    }

    /// The hybrid cache: CAKE's budgets and evictions in preallocated per-layer buffers.
    pub fn hybrid(n_layers: usize, budget: usize) -> Self {
        Self { compacted: true, ..Self::new(n_layers, budget) }
    }

    /// The slots hybrid reserves for a layer of `budget` old tokens: the budget, the recent
    /// window, and the token a decode step appends before its eviction.
    pub fn buffer_slots(budget: usize) -> usize {
        budget + CAKE_WINDOW + 1
    }

    /// Splits `(budget - window) · layers` old-token slots by preference, then evicts. A
    /// prompt that fits the total keeps everything with equal budgets, as the reference does.
    fn allocate_and_evict(&mut self) -> Result<()> {
        let held: Vec<usize> = self.layers.iter().map(|l| l.kv.len()).collect();
        let caps: Vec<usize> = held.iter().map(|h| h.saturating_sub(CAKE_WINDOW)).collect();
        let per_layer = self.budget.saturating_sub(CAKE_WINDOW);
        let total = per_layer * self.layers.len();
        let budgets = if caps.iter().sum::<usize>() <= total {
            vec![per_layer; self.layers.len()]
        } else {
            let prefs: Vec<f64> = self.layers.iter().map(|l| l.preference.unwrap_or(0.0)).collect();
            split_budget(&prefs, total, &caps)
        };
        for (slot, b) in self.layers.iter_mut().zip(budgets) {
            slot.budget = Some(b);
            let indicator = std::mem::take(&mut slot.indicator);
            let len = slot.kv.len();
            let old = len.saturating_sub(CAKE_WINDOW);
            if b < old {
                let keep: Vec<Vec<u32>> = indicator.iter().map(|s| keep_indices_padded(s, len, old, b)).collect();
                self.evicted_slots += (old - b) as u64;
                slot.kv.keep(&keep)?;
            }
            if self.compacted {
                slot.kv.into_buffer(Self::buffer_slots(b))?;
            }
        }
        Ok(())
    }
}

/// `scores` covers the first `old` tokens of `len`; keeps `n` of them and every later token.
fn keep_indices_padded(scores: &[f32], len: usize, old: usize, n: usize) -> Vec<u32> {
    let mut padded = scores.to_vec();
    padded.resize(len, f32::INFINITY);
    keep_indices(&padded, old, n)
}

/// `total` slots in proportion to `prefs`, each capped at `caps`; what a cap refuses goes to
/// the layers below theirs, one slot at a time in layer order. Equal shares when no layer
/// has a positive finite preference (prompts shorter than the window).
pub(crate) fn split_budget(prefs: &[f64], total: usize, caps: &[usize]) -> Vec<usize> {
    let sum: f64 = prefs.iter().filter(|p| p.is_finite() && **p > 0.0).sum();
    let share = |p: f64| if sum > 0.0 && p.is_finite() && p > 0.0 { p / sum } else if sum > 0.0 { 0.0 } else { 1.0 / prefs.len() as f64 };
    let mut budgets: Vec<usize> = prefs.iter().zip(caps).map(|(&p, &c)| ((share(p) * total as f64).floor() as usize).min(c)).collect();
    let mut left = total.saturating_sub(budgets.iter().sum());
    while left > 0 {
        let before = left;
        for (b, &c) in budgets.iter_mut().zip(caps) {
            if left > 0 && *b < c {
                *b += 1;
                left -= 1;
            }
        }
        if left == before {
            break;
        }
    }
    budgets
}

/// Mean over 5 neighbours with zero padding (avg_pool1d(kernel 5, padding 2)).
fn smooth(x: &[f32]) -> Vec<f32> {
    let half = POOL / 2;
    (0..x.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(x.len());
            x[lo..hi].iter().sum::<f32>() / POOL as f32
        })
        .collect()
}

impl KvCache for CakeCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        if layer == 0 {
            self.positions += k.dim(SEQ_DIM)?;
        }
        let slot = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        slot.kv.append(k, v)
    }

    fn seq_len(&self) -> usize {
        self.positions
    }

    /// Budgets and evictions depend on the whole history: a rollback is refused once the
    /// prefill has set the budgets.
    fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.positions {
            return Ok(());
        }
        candle_core::bail!("{} kv cache cannot roll back (budgets and evictions depend on the whole history)", self.kind().name())
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = Layer::default());
        self.positions = 0;
        self.evicted_slots = 0;
    }

    /// Layers hold different numbers of tokens: `tokens_held` and `evictions` are means over
    /// layers, rounded. hybrid's bytes are its reserved buffers, `used_bytes` the filled part.
    fn stats(&self) -> KvStats {
        let tokens: usize = self.layers.iter().map(|l| l.kv.len()).sum();
        let (reserved, used) = self.layers.iter().map(|l| l.kv.bytes()).fold((0, 0), |(r, u), (a, b)| (r + a, u + b));
        let layers = self.layers.len().max(1) as f64;
        KvStats {
            kv_cache_bytes: reserved,
            used_bytes: self.compacted.then_some(used),
            tokens_held: (tokens as f64 / layers).round() as usize,
            evictions: (self.evicted_slots as f64 / layers).round() as u64,
            ..KvStats::default()
        }
    }

    fn attention_observer(&mut self) -> Option<&mut dyn ObservesAttention> {
        Some(self)
    }

    fn kind(&self) -> KvKind {
        if self.compacted {
            KvKind::Hybrid
        } else {
            KvKind::Cake
        }
    }
}

impl ObservesAttention for CakeCache {
    fn observe(&mut self, layer: usize, attn: &Tensor) -> Result<()> {
        let n_layers = self.layers.len();
        let slot = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        let Some((k, _)) = slot.kv.held()? else { return Ok(()) };
        let (n_kv, len) = (k.dim(1)?, k.dim(SEQ_DIM)?);
        let (_, _, q, _) = attn.dims4()?;
        let window = CAKE_WINDOW.min(len);
        let old = len - window;
        match slot.budget {
            None => {
                // The prefill: preference and indicators from the last `window` queries.
                let rows = CAKE_WINDOW.min(q);
                let w = attn.narrow(2, q - rows, rows)?;
                let past = w.narrow(3, 0, old)?;
                let entropy = if old > 0 {
                    let p = past.clamp(1e-10f32, 1f32)?;
                    (p.log()? * &past)?.sum_all()?.to_scalar::<f32>()? as f64 * -1.0
                } else {
                    0.0
                };
                let mean = w.mean_keepdim(2)?;
                let var = w.broadcast_sub(&mean)?.sqr()?.mean_keepdim(2)?;
                // Unbiased, as torch.var: n / (n - 1).
                let var = if rows > 1 { (var * (rows as f64 / (rows - 1) as f64))? } else { var };
                let variance = if old > 0 { var.narrow(3, 0, old)?.sum_all()?.to_scalar::<f32>()? as f64 } else { 0.0 };
                slot.preference = Some(entropy * variance);
                let indicator = (mean + (var * GAMMA as f64)?)?;
                slot.indicator = per_kv_head(&indicator, n_kv, true)?.iter().map(|s| smooth(&s[..old])).collect();
                if layer + 1 == n_layers {
                    self.allocate_and_evict()?;
                }
            }
            Some(budget) if old > budget => {
                let scores: Vec<Vec<f32>> = per_kv_head(attn, n_kv, false)?.iter().map(|s| smooth(&s[..old])).collect();
                let keep: Vec<Vec<u32>> = scores.iter().map(|s| keep_indices_padded(s, len, old, budget)).collect();
                slot.kv.keep(&keep)?;
                self.evicted_slots += (old - budget) as u64;
            }
            Some(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_budget_by_preference_and_hands_capped_excess_on() {
        assert_eq!(split_budget(&[1.0, 3.0], 8, &[10, 10]), [2, 6]);
        assert_eq!(split_budget(&[1.0, 3.0], 8, &[10, 4]), [4, 4], "layer 1 capped at 4, 2 slots go to layer 0");
        assert_eq!(split_budget(&[0.0, 0.0], 8, &[10, 10]), [4, 4], "no preference: equal shares");
        assert_eq!(split_budget(&[1.0, 1.0], 30, &[10, 10]), [10, 10], "more than fits: every layer keeps all");
    }

    #[test]
    fn smooths_over_five_neighbours_with_zero_padding() {
        assert_eq!(smooth(&[5.0, 0.0, 0.0, 0.0, 0.0, 0.0]), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    }
}
