//! Provenance: what ran, where and when, recorded in every result (DESIGN.md's list): argv,
//! llmbench version and git commit, candle version and features, device, CPU model and cores,
//! RAM, OS, hostname, UTC timestamp: through `sysinfo` on every platform (Linux, macOS,
//! Windows), GPU name and driver through NVML where an NVIDIA driver is installed.

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
    /// The GPU's total memory, from NVML; absent on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_total_bytes: Option<u64>,
    /// Which CPU kernels ran the quantized matmuls and attention on a CPU device: "avx2"
    /// (llmbench's, `quant::cpu_matmul`) or "candle" (LLMBENCH_CPU_KERNELS=0, or a CPU
    /// without AVX2/FMA/F16C). Absent on GPUs and in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_kernels: Option<String>,
    pub cpu_model: String,
    pub cpu_cores: usize,
    pub threads: usize,
    pub ram_bytes: u64,
    pub os: String,
    pub hostname: String,
    /// RFC 3339, UTC.
    pub timestamp_utc: String,
    /// Every LLMBENCH_* environment variable set for the run: the kernel switches
    /// (LLMBENCH_CUDA_MLP, LLMBENCH_CPU_KERNELS, ...) change what ran and how fast, so a result
    /// says which were on. Absent when none was set, and in older results.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub llmbench_env: std::collections::BTreeMap<String, String>,
}

impl Provenance {
    pub fn collect(device: &str, threads: usize) -> Self {
        use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
        let system = System::new_with_specifics(
            RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()).with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .ok();
        let cpu_model = system
            .as_ref()
            .and_then(|s| s.cpus().first().map(|c| c.brand().trim().to_string()))
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let gpu = device.strip_prefix("cuda:").and_then(|o| o.parse::<u32>().ok()).and_then(gpu_from_nvml);
        let (device_name, driver, gpu_memory_total_bytes) = match gpu {
            Some(gpu) => (gpu.name, gpu.driver, gpu.memory_total_bytes),
            None if device == "cpu" => (cpu_model.clone(), None, None),
            None => (device.to_string(), None, None),
        };
        let os = System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into());
        Self {
            argv: std::env::args().collect(),
            llmbench_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("LLMBENCH_GIT_COMMIT").into(),
            candle_version: env!("LLMBENCH_CANDLE_VERSION").into(),
            candle_features: compiled_backends(),
            device: device.into(),
            device_name,
            driver,
            gpu_memory_total_bytes,
            cpu_kernels: (device == "cpu").then(|| crate::quant::cpu_matmul::kernels_label().to_string()),
            cpu_model,
            cpu_cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            threads,
            ram_bytes: system.as_ref().map_or(0, System::total_memory),
            os: match System::kernel_version() {
                Ok(kernel) => format!("{os} (kernel {kernel})"),
                Err(_) => os,
            },
            hostname: System::host_name().unwrap_or_else(|_| "unknown".into()),
            timestamp_utc: utc_now_rfc3339(),
            llmbench_env: llmbench_env(std::env::vars()),
        }
    }
}

/// The LLMBENCH_* variables among `vars`, sorted.
fn llmbench_env(vars: impl Iterator<Item = (String, String)>) -> std::collections::BTreeMap<String, String> {
    vars.filter(|(name, _)| name.starts_with("LLMBENCH_")).collect()
}

/// A GPU as NVML (the library nvidia-smi reads) describes it.
struct Gpu {
    name: String,
    /// "driver X, CUDA Y.Z".
    driver: Option<String>,
    memory_total_bytes: Option<u64>,
}

/// The GPU from NVML where an NVIDIA driver is installed; `None` elsewhere.
fn gpu_from_nvml(ordinal: u32) -> Option<Gpu> {
    let nvml = nvml_wrapper::Nvml::init().ok()?;
    let device = nvml.device_by_index(ordinal).ok()?;
    let name = device.name().ok()?;
    let memory_total_bytes = device.memory_info().ok().map(|m| m.total);
    let driver = nvml.sys_driver_version().ok();
    let cuda = nvml.sys_cuda_driver_version().ok().map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10));
    let driver = match (driver, cuda) {
        (Some(d), Some(c)) => Some(format!("driver {d}, CUDA {c}")),
        (Some(d), None) => Some(format!("driver {d}")),
        _ => None,
    };
    Some(Gpu { name, driver, memory_total_bytes })
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
    fn records_only_llmbench_variables() {
        let vars = [("PATH", "/bin"), ("LLMBENCH_CUDA_MLP", "split"), ("LLMBENCH_CPU_KERNELS", "0"), ("XLLMBENCH_NO", "1")];
        let env = llmbench_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(env.into_iter().collect::<Vec<_>>(), [("LLMBENCH_CPU_KERNELS".into(), "0".into()), ("LLMBENCH_CUDA_MLP".into(), "split".into())]);
    }

    #[test]
    fn collects_this_machine() {
        let p = Provenance::collect("cpu", 2);
        assert!(p.cpu_cores >= 1);
        assert!(p.timestamp_utc.ends_with('Z'));
        assert_eq!(p.candle_features[0], "cpu");
        assert_eq!(p.candle_version, "0.11.1");
        assert_eq!(p.threads, 2);
        // Read through sysinfo: the machine's real CPU, memory and OS, never the fallbacks.
        assert_ne!(p.cpu_model, "unknown");
        assert_eq!(p.device_name, p.cpu_model);
        assert!(p.ram_bytes > 1 << 30, "{}", p.ram_bytes);
        assert!(p.os.contains("kernel") && p.hostname != "unknown", "{} {}", p.os, p.hostname);
    }
}
