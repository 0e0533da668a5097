//! Magnitude histograms of activations, from which TEAL takes its thresholds: the inputs of
//! one projection, collected over a calibration text, binned by |x| on a log scale; the
//! threshold for sparsity S is the magnitude below which the share S of the inputs falls, so
//! zeroing everything under it makes that projection's input S sparse on text like the
//! calibration's. Log-spaced bins keep the relative error of a threshold below one bin's width
//! (2^(32 / 4096) - 1 = 0.54%) for any scale from 2^-24 to 2^8, in 32 KiB per histogram.

use anyhow::Result;

const BINS: usize = 4096;
const MIN_LOG2: f64 = -24.0;
const MAX_LOG2: f64 = 8.0;

/// Observations a histogram needs before its thresholds mean anything: with fewer, one token's
/// activations decide them.
pub const MIN_OBSERVATIONS: u64 = 65_536;

#[derive(Debug, Clone, PartialEq)]
pub struct MagnitudeHistogram {
    /// Counts per log-spaced bin of |x|; magnitudes under 2^-24 (zeros included) go to bin 0,
    /// over 2^8 to the last.
    counts: Vec<u64>,
    total: u64,
}

impl Default for MagnitudeHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BINS],
            total: 0,
        }
    }
}

fn bin(v: f32) -> usize {
    let m = v.abs() as f64;
    // Zeros and NaNs alike go to the first bin.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(m > 0.0) {
        return 0;
    }
    let at = (m.log2() - MIN_LOG2) / (MAX_LOG2 - MIN_LOG2) * BINS as f64;
    (at.floor().max(0.0) as usize).min(BINS - 1)
}

/// The magnitude where bin `i` ends.
fn upper_edge(i: usize) -> f32 {
    (MIN_LOG2 + (i + 1) as f64 / BINS as f64 * (MAX_LOG2 - MIN_LOG2)).exp2() as f32
}

impl MagnitudeHistogram {
    pub fn add(&mut self, values: &[f32]) {
        for &v in values {
            self.counts[bin(v)] += 1;
        }
        self.total += values.len() as u64;
    }

    pub fn observations(&self) -> u64 {
        self.total
    }

    /// Counts per bin (for saving a calibration).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// A histogram from saved counts.
    pub fn from_counts(counts: Vec<u64>) -> Result<Self> {
        anyhow::ensure!(
            counts.len() == BINS,
            "a histogram has {BINS} bins, not {}",
            counts.len()
        );
        let total = counts.iter().sum();
        Ok(Self { counts, total })
    }

    /// The magnitude under which the share `sparsity` of the observations falls (the upper
    /// edge of the bin where the cumulative share reaches it); 0 for sparsity 0, so nothing is
    /// zeroed.
    pub fn threshold(&self, sparsity: f64) -> Result<f32> {
        if !(0.0..1.0).contains(&sparsity) {
            crate::bail_input!("sparsity {sparsity}: use a share in [0, 1), e.g. 0.4");
        }
        if self.total < MIN_OBSERVATIONS {
            crate::bail_input!(
                "the calibration text filled a histogram with {} activations, fewer than the {MIN_OBSERVATIONS} thresholds need: give a longer --calibration file",
                self.total
            );
        }
        if sparsity == 0.0 {
            return Ok(0.0);
        }
        let wanted = (sparsity * self.total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= wanted {
                return Ok(upper_edge(i));
            }
        }
        Ok(upper_edge(BINS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spread of magnitudes over four decades, signs alternating.
    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i * 7919 % 10007) as f32 / 10007.0 * 9.2 - 6.9).exp()
                    * if i % 2 == 0 { 1.0 } else { -1.0 }
            })
            .collect()
    }

    #[test]
    fn thresholds_make_the_asked_share_sparse() {
        let x = values(200_000);
        let mut h = MagnitudeHistogram::default();
        h.add(&x);
        let mut sorted: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        sorted.sort_by(f32::total_cmp);
        for s in [0.25, 0.4, 0.5, 0.9] {
            let t = h.threshold(s).unwrap();
            let below = x.iter().filter(|v| v.abs() < t).count() as f64 / x.len() as f64;
            // One bin holds at most a few hundredths of a percent of these values.
            assert!(
                (below - s).abs() < 0.002,
                "sparsity {s}: threshold {t} zeroes {below}"
            );
            let exact = sorted[(s * x.len() as f64) as usize];
            assert!(
                (t / exact - 1.0).abs() < 0.006,
                "sparsity {s}: {t} vs the exact quantile {exact}"
            );
        }
        assert_eq!(h.threshold(0.0).unwrap(), 0.0);
    }

    #[test]
    fn refuses_bad_shares_and_too_little_calibration() {
        let mut h = MagnitudeHistogram::default();
        h.add(&values(1000));
        assert!(h
            .threshold(0.5)
            .unwrap_err()
            .to_string()
            .contains("longer --calibration file"));
        h.add(&values(MIN_OBSERVATIONS as usize));
        for bad in [1.0, -0.1, 1.5, f64::NAN] {
            assert!(
                h.threshold(bad).unwrap_err().to_string().contains("[0, 1)"),
                "{bad}"
            );
        }
        assert!(h.threshold(0.5).is_ok());
        // Zeros and huge values land in the end bins.
        assert_eq!((bin(0.0), bin(1e-30), bin(1e30)), (0, 0, BINS - 1));
    }
}
