//! Process memory: resident set size through `sysinfo` on every platform. On Linux the peak of
//! a run is the kernel's own high-water mark (VmHWM, reset through /proc/self/clear_refs at the
//! start of the run), which misses no spike; elsewhere a sampler thread keeps the peak while a
//! run is in flight (every `RSS_SAMPLE_INTERVAL`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the sampler reads RSS. Sampling every 5 ms cost 2-3% of decode speed on 2 busy
/// cores (it preempts a matmul worker the others then wait for); the high-water mark makes a
/// faster rate unnecessary for the peak.
pub const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(20);

/// Reads this process's resident set size through `sysinfo` (Linux, macOS, Windows), keeping
/// its process table between readings so a sample costs one refresh of one process.
pub struct RssReader {
    /// `None` where sysinfo cannot read processes on this platform: readings are then 0.
    system: Option<(sysinfo::System, sysinfo::Pid)>,
}

impl RssReader {
    pub fn new() -> Self {
        let system = sysinfo::System::new().ok().zip(sysinfo::get_current_pid().ok());
        Self { system }
    }

    /// Resident bytes now, or 0 where the platform does not say.
    pub fn read(&mut self) -> u64 {
        let Some((system, pid)) = self.system.as_mut() else { return 0 };
        let kind = sysinfo::ProcessRefreshKind::nothing().with_memory();
        system.refresh_processes_specifics(sysinfo::ProcessesToUpdate::Some(&[*pid]), false, kind);
        system.process(*pid).map_or(0, |p| p.memory())
    }
}

impl Default for RssReader {
    fn default() -> Self {
        Self::new()
    }
}

/// Resident set size of this process in bytes, or 0 where the platform does not say.
pub fn current_rss_bytes() -> u64 {
    RssReader::new().read()
}

/// Resets the kernel's peak-RSS mark for this process; false where that is not possible.
fn reset_high_water_mark() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The kernel's peak RSS (VmHWM) in bytes since the last reset, or 0.
fn high_water_mark_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Samples RSS on a background thread until stopped; reports the maximum seen.
pub struct RssSampler {
    high_water_mark_reset: bool,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start() -> Self {
        let high_water_mark_reset = reset_high_water_mark();
        let peak = Arc::new(AtomicU64::new(current_rss_bytes()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        // With the kernel's high-water mark there is nothing a sampler could add, and on 2
        // vCPUs its wake-ups preempt a matmul worker the other threads then wait for.
        let handle = (!high_water_mark_reset).then(|| std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut reader = RssReader::new();
                while !s.load(Ordering::Relaxed) {
                    p.fetch_max(reader.read(), Ordering::Relaxed);
                    std::thread::sleep(RSS_SAMPLE_INTERVAL);
                }
            })
            .ok()).flatten();
        Self { high_water_mark_reset, peak, stop, handle }
    }

    /// Stops sampling and returns the peak RSS in bytes (including a final reading).
    pub fn finish(mut self) -> u64 {
        self.peak.fetch_max(current_rss_bytes(), Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let sampled = self.peak.load(Ordering::Relaxed);
        if self.high_water_mark_reset {
            sampled.max(high_water_mark_bytes())
        } else {
            sampled
        }
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
        // Touched and freed between two samples: only the high-water mark can see it.
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        drop(big);
        let peak = sampler.finish();
        assert!(peak >= before + (60 << 20), "peak {peak} before {before}");
    }
}
