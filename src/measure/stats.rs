//! Summary statistics over raw samples: mean, median, sample standard deviation, min, max and
//! percentiles (linear interpolation between order statistics, numpy's default), outliers by
//! the modified z-score on the median absolute deviation (Iglewicz and Hoaglin, as hyperfine
//! warns), and Welch's t interval for the difference of two means.

use serde::{Deserialize, Serialize};

/// Summary of one metric over a case's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    /// Sample standard deviation (n - 1); 0 for a single sample.
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Summary {
    /// Summarises finite samples; `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        let q = |p| percentile_sorted(&sorted, p);
        Some(Self {
            n,
            mean,
            median: q(50.0),
            std: var.sqrt(),
            min: sorted[0],
            max: sorted[n - 1],
            p50: q(50.0),
            p90: q(90.0),
            p95: q(95.0),
            p99: q(99.0),
        })
    }

    /// Coefficient of variation (std / mean), 0 when the mean is 0.
    pub fn cv(&self) -> f64 {
        if self.mean == 0.0 {
            0.0
        } else {
            self.std / self.mean.abs()
        }
    }
}

/// The `p`-th percentile (0..=100) of sorted samples, interpolating linearly.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 1 {
        return sorted[0];
    }
    let rank = p / 100.0 * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Modified z-score above which a sample is an outlier (Iglewicz and Hoaglin's 3.5).
pub const OUTLIER_Z: f64 = 3.5;

/// Indices of samples whose modified z-score, 0.6745 (x - median) / MAD, exceeds `OUTLIER_Z`.
pub fn outliers(samples: &[f64]) -> Vec<usize> {
    let Some(s) = Summary::of(samples) else { return vec![] };
    let mut deviations: Vec<f64> = samples.iter().map(|x| (x - s.median).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = percentile_sorted(&deviations, 50.0);
    if mad == 0.0 {
        return vec![];
    }
    samples.iter().enumerate().filter(|(_, x)| (0.6745 * (*x - s.median) / mad).abs() > OUTLIER_Z).map(|(i, _)| i).collect()
}

/// The relative change of mean(b) against mean(a) with a 95% interval (Welch's t, the interval
/// on the difference divided by mean(a)). `significant` when the interval excludes 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub relative: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub significant: bool,
}

pub fn welch_change(a: &[f64], b: &[f64]) -> Option<Change> {
    let (sa, sb) = (Summary::of(a)?, Summary::of(b)?);
    if sa.n < 2 || sb.n < 2 || sa.mean == 0.0 {
        return None;
    }
    let (va, vb) = (sa.std.powi(2) / sa.n as f64, sb.std.powi(2) / sb.n as f64);
    let se = (va + vb).sqrt();
    let diff = sb.mean - sa.mean;
    let half = if se == 0.0 {
        0.0
    } else {
        let df = (va + vb).powi(2) / (va.powi(2) / (sa.n - 1) as f64 + vb.powi(2) / (sb.n - 1) as f64);
        t_quantile_975(df) * se
    };
    let (lo, hi) = ((diff - half) / sa.mean.abs(), (diff + half) / sa.mean.abs());
    Some(Change { relative: diff / sa.mean.abs(), ci_low: lo, ci_high: hi, significant: lo > 0.0 || hi < 0.0 || (half == 0.0 && diff != 0.0) })
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (two-sided 95%): a table for
/// small df, then the Cornish-Fisher expansion around the normal quantile (error < 1e-3).
fn t_quantile_975(df: f64) -> f64 {
    const TABLE: [f64; 10] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];
    if df < 1.0 {
        return TABLE[0];
    }
    if df <= 10.0 {
        let i = df.floor() as usize;
        let frac = df - df.floor();
        let lo = TABLE[i - 1];
        let hi = if i < 10 { TABLE[i] } else { cornish_fisher(11.0) };
        return lo + (hi - lo) * frac;
    }
    cornish_fisher(df)
}

fn cornish_fisher(df: f64) -> f64 {
    let z: f64 = 1.959_963_985;
    let g1 = (z.powi(3) + z) / 4.0;
    let g2 = (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / 96.0;
    let g3 = (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / 384.0;
    z + g1 / df + g2 / df.powi(2) + g3 / df.powi(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_numpy() {
        // numpy: mean 3.0, median 3.0, std(ddof=1) 1.5811388, percentile(90) 4.6, (99) 4.96
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.mean, s.median, s.min, s.max), (3.0, 3.0, 1.0, 5.0));
        assert!((s.std - 1.581_138_8).abs() < 1e-6);
        assert!((s.p90 - 4.6).abs() < 1e-12 && (s.p99 - 4.96).abs() < 1e-12);
        assert!(Summary::of(&[]).is_none());
        assert_eq!(Summary::of(&[2.0]).unwrap().std, 0.0);
    }

    #[test]
    fn finds_the_outlier() {
        assert_eq!(outliers(&[10.0, 10.2, 9.9, 10.1, 10.0, 25.0]), vec![5]);
        assert!(outliers(&[1.0, 1.0, 1.0]).is_empty());
    }

    #[test]
    fn welch_interval_matches_scipy() {
        // Equal variances 0.625, n = 5 each: se 0.5, Welch df 8, t(0.975, 8) = 2.306, so the
        // difference 2.0 has the interval 2.0 +- 1.153 (scipy's ttest_ind(equal_var=False) agrees).
        let a = [10.0, 11.0, 9.0, 10.5, 9.5];
        let b = [12.0, 13.0, 11.0, 12.5, 11.5];
        let c = welch_change(&a, &b).unwrap();
        assert!((c.relative - 0.2).abs() < 1e-12);
        assert!(c.significant);
        assert!((c.ci_low - 0.0847).abs() < 1e-4 && (c.ci_high - 0.3153).abs() < 1e-4, "{c:?}");
        let same = welch_change(&a, &a).unwrap();
        assert!(!same.significant && same.relative == 0.0);
    }

    #[test]
    fn t_quantiles() {
        assert!((t_quantile_975(5.0) - 2.571).abs() < 1e-9);
        assert!((t_quantile_975(30.0) - 2.042).abs() < 2e-3);
        assert!((t_quantile_975(1e6) - 1.96).abs() < 1e-3);
    }
}
