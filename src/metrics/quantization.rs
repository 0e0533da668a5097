//! How far a quantized model's next-token distributions are from the source's on the same
//! text, in llama-perplexity's conventions (`--kl-divergence`, tools/perplexity/perplexity.cpp)
//! so its users read our numbers beside theirs: per scored token the negative log-likelihood
//! of the correct token under both, KL(base || quantized) over the vocabulary, the change in
//! the correct token's probability (Δp), and whether the top-1 tokens agree; then perplexity,
//! the mean of ln(PPL(Q) / PPL(base)) with its standard error, KLD mean / median / p99 / max,
//! mean and RMS of Δp, and the same-top-1 fraction.

use crate::measure::stats::Summary;

/// One scored token compared: `base` and `other` are log-probabilities over the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenComparison {
    pub nll_base: f64,
    pub nll: f64,
    pub kld: f64,
    /// p_other(correct) - p_base(correct).
    pub delta_p: f64,
    pub same_top1: bool,
}

/// Compares one position's distributions for the correct next token `target`.
pub fn compare_token(base: &[f32], other: &[f32], target: u32) -> TokenComparison {
    let t = target as usize;
    // f32 exp per term, f64 sums: the per-term error (~1e-7 relative) is far below any KLD a
    // quantized format reaches (q8_0 on SmolLM2: ~1e-3).
    let kld: f64 = base.iter().zip(other).map(|(&lp, &lq)| (lp.exp() * (lp - lq)) as f64).sum();
    let argmax = |row: &[f32]| row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0;
    TokenComparison {
        nll_base: -(base[t] as f64),
        nll: -(other[t] as f64),
        // Rounding can make a tiny KL negative; it is a divergence, so clamp at zero as llama.cpp does.
        kld: kld.max(0.0),
        delta_p: (other[t] as f64).exp() - (base[t] as f64).exp(),
        same_top1: argmax(base) == argmax(other),
    }
}

/// The statistics over every scored token.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct DistributionShift {
    pub scored_tokens: usize,
    pub perplexity: f64,
    pub perplexity_base: f64,
    /// Mean of ln p_base(correct) - ln p(correct) = ln(PPL / PPL_base), and its standard error.
    pub ln_ppl_ratio: f64,
    pub ln_ppl_ratio_stderr: f64,
    pub kld_mean: f64,
    pub kld_stderr: f64,
    pub kld_median: f64,
    pub kld_p99: f64,
    pub kld_max: f64,
    /// Mean and root mean square of Δp (fractions; llama-perplexity prints them in %).
    pub delta_p_mean: f64,
    pub delta_p_rms: f64,
    /// Fraction of scored tokens whose top-1 token is the base's.
    pub same_top1: f64,
}

impl DistributionShift {
    /// `None` for no tokens.
    pub fn of(tokens: &[TokenComparison]) -> Option<Self> {
        let n = tokens.len();
        let stderr = |values: &[f64]| Summary::of(values).map_or(f64::NAN, |s| s.std / (n as f64).sqrt());
        let mean = |f: fn(&TokenComparison) -> f64| tokens.iter().map(f).sum::<f64>() / n as f64;
        let kld: Vec<f64> = tokens.iter().map(|t| t.kld).collect();
        let ratio: Vec<f64> = tokens.iter().map(|t| t.nll - t.nll_base).collect();
        let k = Summary::of(&kld)?;
        Some(Self {
            scored_tokens: n,
            perplexity: mean(|t| t.nll).exp(),
            perplexity_base: mean(|t| t.nll_base).exp(),
            ln_ppl_ratio: ratio.iter().sum::<f64>() / n as f64,
            ln_ppl_ratio_stderr: stderr(&ratio),
            kld_mean: k.mean,
            kld_stderr: stderr(&kld),
            kld_median: k.median,
            kld_p99: k.p99,
            kld_max: k.max,
            delta_p_mean: mean(|t| t.delta_p),
            delta_p_rms: mean(|t| t.delta_p * t.delta_p).sqrt(),
            same_top1: tokens.iter().filter(|t| t.same_top1).count() as f64 / n as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(p: &[f32]) -> Vec<f32> {
        p.iter().map(|x| x.ln()).collect()
    }

    #[test]
    fn one_token_by_hand() {
        let base = log(&[0.5, 0.25, 0.25]);
        let other = log(&[0.25, 0.5, 0.25]);
        let t = compare_token(&base, &other, 0);
        // KL = 0.5 ln 2 + 0.25 ln 0.5 = 0.25 ln 2
        assert!((t.kld - 0.25 * 2f64.ln()).abs() < 1e-6, "{}", t.kld);
        assert!((t.nll - 4f64.ln()).abs() < 1e-6 && (t.nll_base - 2f64.ln()).abs() < 1e-6);
        assert!((t.delta_p + 0.25).abs() < 1e-6);
        assert!(!t.same_top1);
        assert_eq!(compare_token(&base, &base, 1).kld, 0.0);
    }

    #[test]
    fn statistics_follow_llama_perplexitys_definitions() {
        let base = log(&[0.5, 0.25, 0.25]);
        let other = log(&[0.25, 0.5, 0.25]);
        let tokens = [compare_token(&base, &other, 0), compare_token(&base, &base, 1)];
        let s = DistributionShift::of(&tokens).unwrap();
        assert_eq!(s.scored_tokens, 2);
        // nll: other (ln 4, ln 4) -> PPL 4; base (ln 2, ln 4) -> PPL sqrt(8).
        assert!((s.perplexity - 4.0).abs() < 1e-6 && (s.perplexity_base - 8f64.sqrt()).abs() < 1e-6);
        assert!((s.ln_ppl_ratio - (4.0f64 / 8f64.sqrt()).ln()).abs() < 1e-6);
        assert!((s.kld_mean - 0.125 * 2f64.ln()).abs() < 1e-6 && (s.kld_max - 0.25 * 2f64.ln()).abs() < 1e-6);
        assert!((s.delta_p_mean + 0.125).abs() < 1e-6 && (s.delta_p_rms - (0.0625f64 / 2.0).sqrt()).abs() < 1e-6);
        assert_eq!(s.same_top1, 0.5);
        assert!(DistributionShift::of(&[]).is_none());
    }
}
