//! Self Logits Evolution Decoding (Zhang et al., NeurIPS 2024; the authors' code is
//! JayZhang42/SLED: `sled_decoding.py` and `sled_greedy_decode` in their generation utils),
//! step by step as that code computes it for one position:
//!
//! 1. the top-k tokens of the final distribution softmax(l_N), k = `scale`;
//! 2. for each premature layer n and each top-k token j, the cosine between the "gradient"
//!    softmax(l_n) - e_j and the logit difference l_n - l_N, both over the whole vocabulary;
//! 3. m_nj = max(cos, 0)^2, and the latent distribution P_j = sum_n m_nj / sum_nj m_nj on the
//!    top-k (their per-layer normalisation and layer weights cancel to this);
//! 4. z = l_N, then `steps` updates z <- z - a_t (softmax(z) - P), a_t = rate (1 - t / steps)
//!    (1 step for generation, 10 for their TruthfulQA scoring), softmax over the vocabulary;
//! 5. tokens outside the top-k set to `lower_bound`.
//!
//! Premature logits are the LM head applied to the layer's hidden state without the final
//! norm, as their code does (an option adds the norm). Where every cosine is at most 0 their
//! code divides 0 by 0 and yields NaN; here P is then 0 (the update only lowers softmax(z)).

use candle_core::{DType, Tensor, D};

/// SLED's knobs (`--evolution-*`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evolution {
    /// alpha: the step size (their `evolution_rate`, default 2).
    pub rate: f64,
    /// k: how many of the final layer's top tokens evolve (their `evolution_scale`).
    pub scale: usize,
    /// The logit every other token gets (their `evolution_lower_bound`; -1000 for generation).
    pub lower_bound: f32,
    /// Update steps (their `op_T`: 1 for generation, 10 for TruthfulQA scoring).
    pub steps: usize,
}

impl Default for Evolution {
    /// Their generation defaults (`generate` in sled_decoding.py and the GSM8K/StrategyQA runs).
    fn default() -> Self {
        Self {
            rate: 2.0,
            scale: 10,
            lower_bound: -1000.0,
            steps: 1,
        }
    }
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The indices of the `k` largest values (ties: the lower index first).
fn top_k(values: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    let by_value = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    // Select the k first under the total order, then sort only them (a full sort of the
    // vocabulary cost as much as the evolution itself).
    if k < order.len() {
        if k == 0 {
            return vec![];
        }
        order.select_nth_unstable_by(k - 1, by_value);
        order.truncate(k);
    }
    order.sort_by(by_value);
    order
}

/// torch's `cosine_similarity` eps: the product of the norms is clamped below at it.
const COSINE_EPS: f64 = 1e-8;

/// What the cosines of one premature layer n need at one position, with d = l_n - l_N and
/// q = softmax(l_n): q.d, |d|^2, |q|^2, and q_j, d_j at each top-k token j.
struct LayerMoments {
    q_dot_d: f64,
    d_norm2: f64,
    q_norm2: f64,
    q_top: Vec<f64>,
    d_top: Vec<f64>,
}

fn moments(final_logits: &[f32], layer: &[f32], top: &[usize]) -> LayerMoments {
    let q = softmax(layer);
    let (mut q_dot_d, mut d_norm2, mut q_norm2) = (0f64, 0f64, 0f64);
    for ((&ln, &lf), &qv) in layer.iter().zip(final_logits).zip(&q) {
        let d = ln as f64 - lf as f64;
        q_dot_d += qv * d;
        d_norm2 += d * d;
        q_norm2 += qv * qv;
    }
    LayerMoments {
        q_dot_d,
        d_norm2,
        q_norm2,
        q_top: top.iter().map(|&j| q[j]).collect(),
        d_top: top.iter().map(|&j| layer[j] as f64 - final_logits[j] as f64).collect(),
    }
}

/// Steps 3-5 from the layers' moments: the latent distribution, the updates, the floor.
fn evolve_from(final_logits: &[f32], top: &[usize], layers: &[LayerMoments], e: &Evolution) -> Vec<f32> {
    // P over the top-k (indexed like `top`).
    let mut latent = vec![0f64; top.len()];
    for m in layers {
        // cos(q - e_j, d) = (q.d - d_j) / (|q - e_j| |d|), |q - e_j|^2 = |q|^2 - 2 q_j + 1.
        for (i, slot) in latent.iter_mut().enumerate() {
            let grad_norm2 = (m.q_norm2 - 2.0 * m.q_top[i] + 1.0).max(0.0);
            let cos = (m.q_dot_d - m.d_top[i]) / (grad_norm2 * m.d_norm2).sqrt().max(COSINE_EPS);
            *slot += cos.max(0.0).powi(2);
        }
    }
    let total: f64 = latent.iter().sum();
    if total > 0.0 {
        latent.iter_mut().for_each(|p| *p /= total);
    }
    let mut z: Vec<f32> = final_logits.to_vec();
    for t in 0..e.steps {
        let rate = e.rate * (1.0 - t as f64 / e.steps as f64);
        let mut grad = softmax(&z);
        for (&j, &p) in top.iter().zip(&latent) {
            grad[j] -= p;
        }
        for (zi, g) in z.iter_mut().zip(&grad) {
            *zi = (*zi as f64 - rate * g) as f32;
        }
    }
    let mut out = vec![e.lower_bound; final_logits.len()];
    for &j in top {
        out[j] = z[j];
    }
    out
}

/// The evolved logits of one position: `final_logits` the model's own (after the final norm),
/// `premature` the head's logits of each premature layer.
pub fn evolve(final_logits: &[f32], premature: &[Vec<f32>], e: &Evolution) -> Vec<f32> {
    let top = top_k(&softmax(final_logits), e.scale.min(final_logits.len()));
    let layers: Vec<LayerMoments> = premature.iter().map(|l| moments(final_logits, l, &top)).collect();
    evolve_from(final_logits, &top, &layers, e)
}

/// `evolve` for every position at once: `final_logits` is `[n, vocab]`, `premature`
/// `[layers, n, vocab]`. On a GPU the sums over the vocabulary run there (`evolve_on_device`);
/// on the CPU the one-position loop, positions in parallel, is faster than tensor ops with their
/// temporaries (11 against 20 tok/s for SmolLM2 on 2 cores).
pub fn evolve_rows(final_logits: &Tensor, premature: &Tensor, e: &Evolution) -> candle_core::Result<Vec<Vec<f32>>> {
    use rayon::prelude::*;
    if !premature.device().is_cpu() {
        return evolve_on_device(final_logits, premature, e);
    }
    let final_rows: Vec<Vec<f32>> = final_logits.to_dtype(DType::F32)?.to_vec2()?;
    let layers: Vec<Vec<Vec<f32>>> = premature.to_dtype(DType::F32)?.to_vec3()?;
    Ok(final_rows
        .par_iter()
        .enumerate()
        .map(|(i, f)| evolve(f, &layers.iter().map(|l| l[i].clone()).collect::<Vec<_>>(), e))
        .collect())
}

/// `evolve_rows` with the per-layer sums over the vocabulary computed where the logits are (on
/// the GPU they never cross to the host: only `[layers, n]` sums and the top-k values do), in
/// f64 as `evolve` computes them.
pub fn evolve_on_device(final_logits: &Tensor, premature: &Tensor, e: &Evolution) -> candle_core::Result<Vec<Vec<f32>>> {
    use rayon::prelude::*;
    let final_rows: Vec<Vec<f32>> = final_logits.to_dtype(DType::F32)?.to_vec2()?;
    let (layers, n, vocab) = premature.dims3()?;
    let k = e.scale.min(vocab);
    let tops: Vec<Vec<usize>> = final_rows.par_iter().map(|f| top_k(&softmax(f), k)).collect();
    let p = premature.to_dtype(DType::F64)?;
    let d = p.broadcast_sub(&final_logits.to_dtype(DType::F64)?.unsqueeze(0)?)?;
    let exp = p.broadcast_sub(&p.max_keepdim(D::Minus1)?)?.exp()?;
    let q = exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)?;
    let q_dot_d: Vec<Vec<f64>> = (&q * &d)?.sum(D::Minus1)?.to_vec2()?;
    let d_norm2: Vec<Vec<f64>> = d.sqr()?.sum(D::Minus1)?.to_vec2()?;
    let q_norm2: Vec<Vec<f64>> = q.sqr()?.sum(D::Minus1)?.to_vec2()?;
    let ids: Vec<u32> = tops.iter().flatten().map(|&j| j as u32).collect();
    let ids = Tensor::from_vec(ids, (1, n, k), p.device())?.broadcast_as((layers, n, k))?.contiguous()?;
    let q_top: Vec<Vec<Vec<f64>>> = q.gather(&ids, D::Minus1)?.to_vec3()?;
    let d_top: Vec<Vec<Vec<f64>>> = d.gather(&ids, D::Minus1)?.to_vec3()?;
    Ok((0..n)
        .into_par_iter()
        .map(|i| {
            let moments: Vec<LayerMoments> = (0..layers)
                .map(|l| LayerMoments {
                    q_dot_d: q_dot_d[l][i],
                    d_norm2: d_norm2[l][i],
                    q_norm2: q_norm2[l][i],
                    q_top: q_top[l][i].clone(),
                    d_top: d_top[l][i].clone(),
                })
                .collect();
            evolve_from(&final_rows[i], &tops[i], &moments, e)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_zero_keeps_the_final_logits_on_the_top_k() {
        let final_logits = [0.5f32, 3.0, -1.0, 2.0, 0.0];
        let premature = vec![vec![1.0f32, 0.0, 0.0, 4.0, 0.0]];
        let e = Evolution {
            rate: 0.0,
            scale: 2,
            lower_bound: -1000.0,
            steps: 1,
        };
        assert_eq!(
            evolve(&final_logits, &premature, &e),
            [-1000.0, 3.0, -1000.0, 2.0, -1000.0]
        );
    }

    /// One premature layer that favours token 3 where the final layer favours 1: the layers
    /// moved towards 1 on the way to the final one (l_n - l_N lines up with softmax(l_n) - e_1,
    /// the gradient that training towards token 1 follows), so the latent distribution puts its
    /// weight on 1; by hand.
    #[test]
    fn one_step_moves_towards_the_layer_that_disagrees() {
        let final_logits = [0.0f32, 2.0, 0.0, 1.5];
        let premature = vec![vec![0.0f32, 0.0, 0.0, 3.0]];
        let e = Evolution {
            rate: 1.0,
            scale: 2,
            lower_bound: -50.0,
            steps: 1,
        };
        let out = evolve(&final_logits, &premature, &e);
        // By hand: cosines for j = 1 and j = 3 with d = (0, -2, 0, 1.5), q = softmax(l_n).
        let q = softmax(&premature[0]);
        let d = [0.0, -2.0, 0.0, 1.5];
        let cos = |j: usize| {
            let g: Vec<f64> = (0..4)
                .map(|i| q[i] - if i == j { 1.0 } else { 0.0 })
                .collect();
            let dot: f64 = g.iter().zip(&d).map(|(a, b)| a * b).sum();
            dot / (g.iter().map(|x| x * x).sum::<f64>().sqrt()
                * d.iter().map(|x: &f64| x * x).sum::<f64>().sqrt())
        };
        let (m1, m3) = (cos(1).max(0.0).powi(2), cos(3).max(0.0).powi(2));
        let p = [0.0, m1 / (m1 + m3), 0.0, m3 / (m1 + m3)];
        let s = softmax(&final_logits);
        for j in [1usize, 3] {
            let expected = final_logits[j] as f64 - (s[j] - p[j]);
            assert!(
                (out[j] as f64 - expected).abs() < 1e-6,
                "{j}: {} vs {expected}",
                out[j]
            );
        }
        assert!(
            m1 > 0.0 && m3 == 0.0,
            "the layers moved towards token 1: {m1} {m3}"
        );
        assert_eq!((out[0], out[2]), (-50.0, -50.0));
    }

    /// The device path (sums over the vocabulary as tensor ops, run here on CPU tensors) gives
    /// what the one-position reference gives, position by position.
    #[test]
    fn rows_at_once_equal_one_position_at_a_time() {
        let (layers, n, vocab) = (3, 4, 50);
        let value = |i: usize| ((i * 7919 % 113) as f32 / 113.0 - 0.5) * 6.0;
        let final_rows: Vec<Vec<f32>> = (0..n).map(|r| (0..vocab).map(|v| value(r * vocab + v + 5)).collect()).collect();
        let premature: Vec<Vec<Vec<f32>>> =
            (0..layers).map(|l| (0..n).map(|r| (0..vocab).map(|v| value((l + 1) * 1000 + r * vocab + v)).collect()).collect()).collect();
        let e = Evolution { rate: 2.5, scale: 7, lower_bound: -100.0, steps: 3 };
        let device = candle_core::Device::Cpu;
        let f = Tensor::new(final_rows.clone(), &device).unwrap();
        let p = Tensor::new(premature.clone(), &device).unwrap();
        let batched = evolve_on_device(&f, &p, &e).unwrap();
        for r in 0..n {
            let one = evolve(&final_rows[r], &premature.iter().map(|l| l[r].clone()).collect::<Vec<_>>(), &e);
            for (a, b) in batched[r].iter().zip(&one) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "row {r}: {a} vs {b}");
            }
        }
    }
}
