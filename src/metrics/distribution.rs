//! Comparing a strategy's next-token distributions and tokens with a reference's: perplexity
//! of a teacher-forced continuation, mean KL divergence, and token agreement.

/// exp(mean negative log-likelihood) of `targets` under per-step log-probabilities.
pub fn perplexity(log_probs: &[Vec<f32>], targets: &[u32]) -> f64 {
    let n = log_probs.len().min(targets.len());
    if n == 0 {
        return f64::NAN;
    }
    let nll: f64 = log_probs.iter().zip(targets).map(|(row, &t)| -(row[t as usize] as f64)).sum();
    (nll / n as f64).exp()
}

/// KL(reference || other) summed over the vocabulary, averaged over steps (nats). The
/// reference's distribution weighs the difference, as in the KV-cache quantization papers.
pub fn mean_kl(reference: &[Vec<f32>], other: &[Vec<f32>]) -> f64 {
    let n = reference.len().min(other.len());
    if n == 0 {
        return f64::NAN;
    }
    let total: f64 = reference
        .iter()
        .zip(other)
        .map(|(p, q)| p.iter().zip(q).map(|(&lp, &lq)| (lp as f64).exp() * (lp as f64 - lq as f64)).sum::<f64>())
        .sum();
    total / n as f64
}

/// Fraction of positions where two token sequences agree (over the shorter length).
pub fn agreement(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return f64::NAN;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n as f64
}

/// The first position where two sequences differ; `None` when they agree on the shorter length.
pub fn first_divergence(a: &[u32], b: &[u32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(p: &[f32]) -> Vec<f32> {
        p.iter().map(|x| x.ln()).collect()
    }

    #[test]
    fn perplexity_and_kl_on_hand_made_distributions() {
        let uniform = log(&[0.25; 4]);
        assert!((perplexity(&[uniform.clone(), uniform.clone()], &[0, 3]) - 4.0).abs() < 1e-6);
        // Unequal rows: reading the wrong target (or position) gives another number.
        let skewed = log(&[0.5, 0.25, 0.125, 0.125]);
        let rows = [skewed.clone(), skewed.clone()];
        assert!((perplexity(&rows, &[0, 1]) - 8f64.sqrt()).abs() < 1e-5, "{}", perplexity(&rows, &[0, 1]));
        assert!((perplexity(&rows, &[2, 3]) - 8.0).abs() < 1e-5);
        assert!(mean_kl(&[uniform.clone()], &[uniform.clone()]).abs() < 1e-12);
        // KL([0.5, 0.5] || [0.25, 0.75]) = 0.5 ln 2 + 0.5 ln(2/3)
        let kl = mean_kl(&[log(&[0.5, 0.5])], &[log(&[0.25, 0.75])]);
        assert!((kl - (0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln())).abs() < 1e-6, "{kl}");
    }

    #[test]
    fn agreement_and_first_divergence() {
        assert_eq!(agreement(&[1, 2, 3, 4], &[1, 2, 9, 4]), 0.75);
        assert_eq!(first_divergence(&[1, 2, 3], &[1, 2, 9]), Some(2));
        assert_eq!(first_divergence(&[1, 2], &[1, 2, 3]), None);
    }
}
