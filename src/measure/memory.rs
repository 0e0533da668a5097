//! Process memory: resident set size read from /proc (Linux), and a sampler thread that keeps
//! the peak while a run is in flight (llama-bench and optimum-benchmark report the same peak).
//! Elsewhere the readings are 0, which results record as "not measured".

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the sampler reads RSS. Each read is ~10 us; 5 ms keeps the cost under 0.2% of a core.
pub const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(5);

/// Resident set size of this process in bytes (VmRSS), or 0 where /proc is absent.
pub fn current_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Samples RSS on a background thread until stopped; reports the maximum seen.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(current_rss_bytes()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    p.fetch_max(current_rss_bytes(), Ordering::Relaxed);
                    std::thread::sleep(RSS_SAMPLE_INTERVAL);
                }
            })
            .ok();
        Self { peak, stop, handle }
    }

    /// Stops sampling and returns the peak RSS in bytes (including a final reading).
    pub fn finish(mut self) -> u64 {
        self.peak.fetch_max(current_rss_bytes(), Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn sampler_sees_a_transient_allocation() {
        let sampler = RssSampler::start();
        let before = current_rss_bytes();
        let big = vec![1u8; 64 << 20];
        std::thread::sleep(RSS_SAMPLE_INTERVAL * 4);
        std::hint::black_box(&big);
        drop(big);
        let peak = sampler.finish();
        assert!(peak >= before + (60 << 20), "peak {peak} before {before}");
    }
}
