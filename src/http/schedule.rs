//! When each request is due: the arrival schedule of an open-loop load, as `vllm bench serve`
//! draws it (gamma inter-arrival times with shape = burstiness and mean 1 / rate; burstiness 1
//! is a Poisson process, below 1 burstier, above 1 more even), from a seed so that a run can be
//! repeated exactly. Latency is measured from these instants, not from when a request could be
//! sent: a client that waits for a free slot before it starts the clock hides the queueing it
//! causes (coordinated omission).

use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Offered load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Requests a second, on average.
    PerSecond(f64),
    /// Every request due at once (closed loop under `--max-concurrency`).
    Unlimited,
}

/// Send offsets from the start of the run for `n` requests, non-decreasing; the first is 0.
pub fn arrivals(n: usize, rate: Rate, burstiness: f64, seed: u64) -> Vec<Duration> {
    let Rate::PerSecond(rate) = rate else {
        return vec![Duration::ZERO; n];
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let scale = 1.0 / (rate * burstiness);
    let mut t = 0.0f64;
    (0..n)
        .map(|i| {
            if i > 0 {
                t += gamma(&mut rng, burstiness) * scale;
            }
            Duration::from_secs_f64(t)
        })
        .collect()
}

/// The schedule with its rate ramped up linearly from 0 over `ramp` (`--ramp-up`), as vLLM's
/// linear ramp-up: the offered intensity R t / ramp until `ramp`, then R. The same draws, with
/// time warped so that the cumulative intensity matches: an arrival due at t under the full rate
/// comes at sqrt(2 ramp t) while t < ramp / 2, and at t + ramp / 2 after.
pub fn ramped(arrivals: &[Duration], ramp: Duration) -> Vec<Duration> {
    let r = ramp.as_secs_f64();
    arrivals
        .iter()
        .map(|a| {
            let t = a.as_secs_f64();
            Duration::from_secs_f64(if t < r / 2.0 {
                (2.0 * r * t).sqrt()
            } else {
                t + r / 2.0
            })
        })
        .collect()
}

/// A Gamma(shape, 1) sample: Marsaglia and Tsang's method (ACM TOMS 26(3), 2000), with
/// Gamma(a) = Gamma(a + 1) * U^(1/a) for shapes below 1.
fn gamma(rng: &mut impl Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random();
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// Box-Muller.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(rate: f64, burstiness: f64) -> Vec<f64> {
        let t = arrivals(40_001, Rate::PerSecond(rate), burstiness, 7);
        t.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect()
    }

    fn mean_cv(x: &[f64]) -> (f64, f64) {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len() as f64;
        (m, var.sqrt() / m)
    }

    #[test]
    fn gaps_have_the_rate_and_the_burstiness_asked_for() {
        // Gamma(k, 1 / (k r)): mean 1 / r, coefficient of variation 1 / sqrt(k).
        for (rate, k) in [(10.0, 1.0), (250.0, 0.25), (4.0, 4.0)] {
            let (m, cv) = mean_cv(&gaps(rate, k));
            assert!(
                (m * rate - 1.0).abs() < 0.03,
                "rate {rate} k {k}: mean gap {m}"
            );
            assert!(
                (cv * k.sqrt() - 1.0).abs() < 0.05,
                "rate {rate} k {k}: cv {cv}"
            );
        }
    }

    #[test]
    fn a_ramp_offers_the_rate_linearly_then_in_full() {
        // 20 requests/s over 10 s ramped over 4 s: 20 * 4 / 2 = 40 requests in the ramp, the
        // first half of them in its first 2.83 s (sqrt(1/2) of it), full rate after.
        let plain = arrivals(200_001, Rate::PerSecond(20.0), 1.0, 3);
        let ramp = ramped(&plain, Duration::from_secs(4));
        let count = |a: &[Duration], from: f64, to: f64| {
            a.iter()
                .filter(|d| (from..to).contains(&d.as_secs_f64()))
                .count() as f64
        };
        assert!((count(&ramp, 0.0, 4.0) - 40.0).abs() < 15.0);
        assert!(ramp.windows(2).all(|w| w[0] <= w[1]));
        // After the ramp, the same gaps as the plain schedule.
        let (i, j) = (1_000, 1_001);
        assert!(
            ((ramp[j] - ramp[i]).as_secs_f64() - (plain[j] - plain[i]).as_secs_f64()).abs() < 1e-9
        );
        assert_eq!(ramped(&plain[..3], Duration::ZERO), plain[..3].to_vec());
    }

    #[test]
    fn a_seed_repeats_the_schedule_and_unlimited_sends_at_once() {
        let a = arrivals(100, Rate::PerSecond(5.0), 1.0, 1);
        assert_eq!(a, arrivals(100, Rate::PerSecond(5.0), 1.0, 1));
        assert_ne!(a, arrivals(100, Rate::PerSecond(5.0), 1.0, 2));
        assert_eq!(a[0], Duration::ZERO);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            arrivals(3, Rate::Unlimited, 1.0, 1),
            vec![Duration::ZERO; 3]
        );
    }
}
