//! Provenance: what ran, where and when, recorded in every result (DESIGN.md's list): argv,
//! llmbench version and git commit, candle version and features, device, CPU model and cores,
//! RAM, OS, hostname, UTC timestamp. Read from /proc and /etc where present; "unknown" elsewhere.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Provenance {
    pub argv: Vec<String>,
    pub llmbench_version: String,
    pub git_commit: String,
    pub candle_version: String,
    /// Backends compiled in: cpu always, cuda and metal with their features.
    pub candle_features: Vec<String>,
    /// The device that ran the models (cpu, cuda:0) and its name.
    pub device: String,
    pub device_name: String,
    /// GPU driver and CUDA versions where a GPU ran; absent on the CPU.
    pub driver: Option<String>,
    pub cpu_model: String,
    pub cpu_cores: usize,
    pub threads: usize,
    pub ram_bytes: u64,
    pub os: String,
    pub hostname: String,
    /// RFC 3339, UTC.
    pub timestamp_utc: String,
}

impl Provenance {
    pub fn collect(device: &str, threads: usize) -> Self {
        let cpu_model = read_key("/proc/cpuinfo", "model name", ':').unwrap_or_else(|| "unknown".into());
        let (device_name, driver) = match device.strip_prefix("cuda:") {
            Some(ordinal) => nvidia_smi(ordinal).unwrap_or_else(|| (device.to_string(), None)),
            None if device == "cpu" => (cpu_model.clone(), None),
            None => (device.to_string(), None),
        };
        Self {
            argv: std::env::args().collect(),
            llmbench_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("LLMBENCH_GIT_COMMIT").into(),
            candle_version: env!("LLMBENCH_CANDLE_VERSION").into(),
            candle_features: compiled_backends(),
            device: device.into(),
            device_name,
            driver,
            cpu_model,
            cpu_cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            threads,
            ram_bytes: read_key("/proc/meminfo", "MemTotal", ':')
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024),
            os: os_name(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            timestamp_utc: utc_now_rfc3339(),
        }
    }
}

/// GPU name and "driver X, CUDA Y" from nvidia-smi, when it is there.
fn nvidia_smi(ordinal: &str) -> Option<(String, Option<String>)> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader", "-i", ordinal])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (name, driver) = text.lines().next()?.split_once(',')?;
    // The CUDA version the driver supports appears only in the plain report's header.
    let header = std::process::Command::new("nvidia-smi").output().ok()?;
    let cuda = String::from_utf8_lossy(&header.stdout)
        .split("CUDA Version:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next().map(String::from));
    let driver = match cuda {
        Some(c) => format!("driver {}, CUDA {c}", driver.trim()),
        None => format!("driver {}", driver.trim()),
    };
    Some((name.trim().to_string(), Some(driver)))
}

pub fn compiled_backends() -> Vec<String> {
    let mut out = vec!["cpu".to_string()];
    if cfg!(feature = "cuda") {
        out.push("cuda".into());
    }
    if cfg!(feature = "metal") {
        out.push("metal".into());
    }
    out
}

fn read_key(path: &str, key: &str, sep: char) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(sep)?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn os_name() -> String {
    let pretty = read_key("/etc/os-release", "PRETTY_NAME", '=').unwrap_or_else(|| std::env::consts::OS.into());
    match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(kernel) => format!("{pretty} (kernel {})", kernel.trim()),
        Err(_) => pretty,
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format_utc(secs)
}

/// Seconds since the epoch as RFC 3339 UTC (Howard Hinnant's days-to-civil algorithm).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_435_200), "2026-11-23T12:00:00Z");
    }

    #[test]
    fn collects_this_machine() {
        let p = Provenance::collect("cpu", 2);
        assert!(p.cpu_cores >= 1);
        assert!(p.timestamp_utc.ends_with('Z'));
        assert_eq!(p.candle_features[0], "cpu");
        assert_ne!(p.candle_version, "unknown");
    }
}
