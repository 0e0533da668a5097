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
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// torch's `cosine_similarity` eps: the product of the norms is clamped below at it.
const COSINE_EPS: f64 = 1e-8;

/// The evolved logits of one position: `final_logits` the model's own (after the final norm),
/// `premature` the head's logits of each premature layer.
pub fn evolve(final_logits: &[f32], premature: &[Vec<f32>], e: &Evolution) -> Vec<f32> {
    let vocab = final_logits.len();
    let top = top_k(&softmax(final_logits), e.scale.min(vocab));
    // P over the top-k (indexed like `top`).
    let mut latent = vec![0f64; top.len()];
    for layer in premature {
        let q = softmax(layer);
        // d = l_n - l_N; cos(q - e_j, d) = (q.d - d_j) / (|q - e_j| |d|), |q - e_j|^2 = |q|^2 - 2 q_j + 1.
        let (mut q_dot_d, mut d_norm2, mut q_norm2) = (0f64, 0f64, 0f64);
        for ((&ln, &lf), &qv) in layer.iter().zip(final_logits).zip(&q) {
            let d = ln as f64 - lf as f64;
            q_dot_d += qv * d;
            d_norm2 += d * d;
            q_norm2 += qv * qv;
        }
        for (slot, &j) in latent.iter_mut().zip(&top) {
            let d_j = layer[j] as f64 - final_logits[j] as f64;
            let grad_norm2 = (q_norm2 - 2.0 * q[j] + 1.0).max(0.0);
            let cos = (q_dot_d - d_j) / (grad_norm2 * d_norm2).sqrt().max(COSINE_EPS);
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
        let s = softmax(&z);
        let mut grad: Vec<f64> = s;
        for (&j, &p) in top.iter().zip(&latent) {
            grad[j] -= p;
        }
        for (zi, g) in z.iter_mut().zip(&grad) {
            *zi = (*zi as f64 - rate * g) as f32;
        }
    }
    let mut out = vec![e.lower_bound; vocab];
    for &j in &top {
        out[j] = z[j];
    }
    out
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
}
