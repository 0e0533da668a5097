//! Next-token selection: greedy, or sampled with temperature, top-k, top-p (nucleus) and a
//! repetition penalty (CTRL's, as transformers applies it), from a seeded generator so a
//! fixed `--seed` gives the same tokens run to run.

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Sampling settings; `temperature == 0` means greedy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: None, top_p: None, repetition_penalty: 1.0, seed: 42 }
    }
}

impl SamplingConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            crate::bail_input!("--temperature {}: must be 0 (greedy) or positive", self.temperature);
        }
        if self.top_k == Some(0) {
            crate::bail_input!("--top-k 0: must be at least 1 (omit it to disable)");
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                crate::bail_input!("--top-p {p}: must be in (0, 1]");
            }
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            crate::bail_input!("--repetition-penalty {}: must be positive (1 disables it)", self.repetition_penalty);
        }
        Ok(())
    }
}

/// Picks tokens from logits according to a `SamplingConfig`.
pub struct Sampler {
    cfg: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    pub fn new(cfg: SamplingConfig) -> Self {
        Self { cfg, rng: StdRng::seed_from_u64(cfg.seed) }
    }

    /// The next token given the last position's logits and the tokens seen so far.
    pub fn next(&mut self, logits: &mut [f32], context: &[u32]) -> u32 {
        if self.cfg.repetition_penalty != 1.0 {
            apply_repetition_penalty(logits, context, self.cfg.repetition_penalty);
        }
        if self.cfg.temperature == 0.0 {
            return argmax(logits);
        }
        let (candidates, probs) = self.nucleus(logits);
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, p) in probs.iter().enumerate() {
            r -= p;
            if r <= 0.0 {
                return candidates[i];
            }
        }
        candidates[probs.len() - 1]
    }

    /// Whether tokens are chosen by argmax (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.cfg.temperature == 0.0
    }

    /// Whether `next` is the argmax of the logits as they come (greedy, no repetition
    /// penalty): a device can pick the token without the logits leaving it.
    pub fn is_plain_argmax(&self) -> bool {
        self.is_greedy() && self.cfg.repetition_penalty == 1.0
    }

    /// The distribution `next` samples from, over the whole vocabulary (zero outside top-k /
    /// top-p; one-hot at the argmax when greedy): what speculative rejection sampling compares.
    pub fn distribution(&self, logits: &mut [f32], context: &[u32]) -> Vec<f32> {
        if self.cfg.repetition_penalty != 1.0 {
            apply_repetition_penalty(logits, context, self.cfg.repetition_penalty);
        }
        let mut out = vec![0f32; logits.len()];
        if self.cfg.temperature == 0.0 {
            out[argmax(logits) as usize] = 1.0;
            return out;
        }
        let (candidates, probs) = self.nucleus(logits);
        let total: f32 = probs.iter().sum();
        for (&id, &p) in candidates.iter().zip(&probs) {
            out[id as usize] = p / total;
        }
        out
    }

    /// A uniform draw in [0, 1) from this sampler's seeded generator.
    pub fn uniform(&mut self) -> f32 {
        self.rng.random::<f32>()
    }

    /// Token ids by decreasing tempered logit, cut to top-k and top-p, with their (not yet
    /// renormalised after the top-p cut) probabilities.
    fn nucleus(&self, logits: &[f32]) -> (Vec<u32>, Vec<f32>) {
        let inv_t = (1.0 / self.cfg.temperature) as f32;
        let mut candidates: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l * inv_t)).collect();
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = self.cfg.top_k {
            candidates.truncate(k.max(1));
        }
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|&(_, l)| (l - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(top_p) = self.cfg.top_p {
            // Keep the smallest prefix whose mass reaches top_p (always at least one token).
            let mut mass = 0.0;
            let keep = probs.iter().position(|&p| {
                mass += p;
                mass as f64 >= top_p
            });
            let keep = keep.map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            candidates.truncate(keep);
        }
        (candidates.into_iter().map(|(id, _)| id).collect(), probs)
    }
}

/// Draws an index from a distribution (weights need not sum to 1) with a uniform draw `u`.
pub fn sample_index(weights: &[f32], u: f32) -> u32 {
    let total: f32 = weights.iter().sum();
    let mut r = u * total;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            last = i;
            r -= w;
            if r < 0.0 {
                return i as u32;
            }
        }
    }
    last as u32
}

/// The index of the largest logit (the first one on ties, as torch.argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// `[vocab, vocab - 1, ..., 1]` (u32) on `device`: the weights `first_max_rows` ranks a row's
/// maxima by, built once per engine (BatchEngine: at its first greedy step, then reused).
pub fn descending_ranks(vocab: usize, device: &candle_core::Device) -> candle_core::Result<candle_core::Tensor> {
    let ranks: Vec<u32> = (1..=vocab as u32).rev().collect();
    candle_core::Tensor::new(ranks, device)
}

/// The first maximum of each row of `logits` `[rows, vocab]` (`argmax`'s rule), taken on their
/// device, so that on a GPU `rows` ids cross to the host instead of rows x vocab floats. A row's
/// maxima are weighted by `ranks` (`descending_ranks`: the smaller the index, the larger the
/// weight) and the largest weight wins; candle's own CUDA argmax breaks ties by thread (index
/// modulo its block size), not by index. A row with no maximum found (all NaN) picks 0.
pub fn first_max_rows(logits: &candle_core::Tensor, ranks: &candle_core::Tensor) -> candle_core::Result<Vec<u32>> {
    use candle_core::{DType, D};
    let vocab = ranks.dim(0)? as u32;
    let is_max = logits.broadcast_eq(&logits.max_keepdim(D::Minus1)?)?.to_dtype(DType::U32)?;
    let best = is_max.broadcast_mul(ranks)?.max(D::Minus1)?.to_vec1::<u32>()?;
    Ok(best.into_iter().map(|rank| if rank == 0 { 0 } else { vocab - rank }).collect())
}

/// Divides positive logits and multiplies negative ones of every token already seen.
fn apply_repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    let mut seen = std::collections::HashSet::new();
    for &t in context {
        if seen.insert(t) {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f64, top_k: Option<usize>, top_p: Option<f64>, seed: u64) -> Sampler {
        Sampler::new(SamplingConfig { temperature, top_k, top_p, repetition_penalty: 1.0, seed })
    }

    #[test]
    fn first_max_rows_keeps_each_rows_first_maximum() {
        let dev = candle_core::Device::Cpu;
        let ranks = descending_ranks(4, &dev).unwrap();
        let unique = candle_core::Tensor::new(&[[1f32, 3.0, 2.0, 0.0], [5.0, -1.0, 0.0, 4.0]], &dev).unwrap();
        assert_eq!(first_max_rows(&unique, &ranks).unwrap(), vec![1, 0]);
        // Ties: the smaller index, wherever the maxima sit; a row like the host's `argmax` sees it.
        let tied = candle_core::Tensor::new(&[[1f32, 4.0, 2.0, 4.0], [7.0, 0.0, 7.0, 7.0], [2.0, 2.0, 2.0, 3.0]], &dev).unwrap();
        assert_eq!(first_max_rows(&tied, &ranks).unwrap(), vec![1, 0, 3]);
        for row in tied.to_vec2::<f32>().unwrap().iter().chain(unique.to_vec2::<f32>().unwrap().iter()) {
            let picks = first_max_rows(&candle_core::Tensor::new(&row[..], &dev).unwrap().unsqueeze(0).unwrap(), &ranks).unwrap();
            assert_eq!(picks, vec![argmax(row)]);
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = sampler(0.0, None, None, 0);
        assert_eq!(s.next(&mut [1.0, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_nucleus() {
        let mut s = sampler(1.0, Some(1), None, 3);
        for _ in 0..20 {
            assert_eq!(s.next(&mut [0.0, 2.0, 1.9, 1.8], &[]), 1);
        }
        // p = softmax([2, 2, 0, 0]) = 0.44, 0.44, 0.06, 0.06: top-p 0.7 keeps the first two.
        // Without the filter 200 draws miss the tail with probability 0.88^200 ~ 1e-11.
        let mut s = sampler(1.0, None, Some(0.7), 4);
        let draws: Vec<u32> = (0..200).map(|_| s.next(&mut [2.0, 2.0, 0.0, 0.0], &[])).collect();
        assert!(draws.iter().all(|&t| t < 2), "{draws:?}");
        assert!(draws.contains(&0) && draws.contains(&1), "both nucleus tokens are drawn");
    }

    #[test]
    fn same_seed_same_tokens_other_seed_differs() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |seed| {
            let mut s = sampler(1.0, None, None, seed);
            (0..30).map(|_| s.next(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn repetition_penalty_pushes_seen_tokens_down() {
        let mut logits = [2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut logits, &[0, 1, 0], 2.0);
        assert_eq!(logits, [1.0, -4.0, 1.0]);
    }
}
