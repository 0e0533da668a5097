//! Device selection (`--device cpu|cuda[:N]|metal[:N]|auto`) and synchronisation. Asking for a
//! backend this binary lacks fails with the feature to rebuild with; it never falls back, and
//! `auto` fails when a compiled-in GPU backend cannot open its device.

use crate::error::LlmbenchError;
use anyhow::Result;
use candle_core::Device;
use serde::Serialize;
use std::str::FromStr;

/// A parsed `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
    Metal(usize),
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let (name, ordinal) = match s.split_once(':') {
            Some((n, i)) => (n, Some(i.parse::<usize>().map_err(|_| format!("`{i}` is not a device number"))?)),
            None => (s.as_str(), None),
        };
        match (name, ordinal) {
            ("cpu", None) => Ok(Self::Cpu),
            ("auto", None) => Ok(Self::Auto),
            ("cuda", i) => Ok(Self::Cuda(i.unwrap_or(0))),
            ("metal", i) => Ok(Self::Metal(i.unwrap_or(0))),
            _ => Err(format!("`{s}` is not a device: use cpu, cuda, cuda:N, metal or auto")),
        }
    }
}

/// What ran the model, for results.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    /// cpu, cuda:0, metal:0.
    pub name: String,
    /// How it was chosen: the flag as given.
    pub requested: String,
}

impl DeviceChoice {
    /// Opens the device. `auto` prefers CUDA, then Metal, then the CPU, and says which it took.
    pub fn open(self) -> Result<(Device, DeviceInfo)> {
        let requested = format!("{self:?}").to_lowercase();
        let device = match self {
            Self::Cpu => Device::Cpu,
            Self::Cuda(i) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(anyhow::Error::new(LlmbenchError::FeatureMissing {
                        what: "--device cuda".into(),
                        feature: "cuda",
                    }));
                }
                crate::models::check_graph_settings()?;
                let device = Device::new_cuda(i).map_err(|e| {
                    LlmbenchError::invalid(format!("--device cuda:{i}: cannot open the GPU ({e}); check nvidia-smi and the device number"))
                })?;
                without_event_tracking(&device);
                device
            }
            Self::Metal(i) => {
                if !candle_core::utils::metal_is_available() {
                    return Err(anyhow::Error::new(LlmbenchError::FeatureMissing {
                        what: "--device metal".into(),
                        feature: "metal",
                    }));
                }
                Device::new_metal(i).map_err(|e| LlmbenchError::invalid(format!("--device metal:{i}: {e}")))?
            }
            // A build with a GPU backend whose GPU cannot be opened fails: silently running on
            // the CPU would label a CPU benchmark as the GPU run the user meant.
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    crate::models::check_graph_settings()?;
                    let device = Device::new_cuda(0).map_err(|e| {
                        LlmbenchError::invalid(format!(
                            "--device auto: this build has CUDA but GPU 0 cannot be opened ({}); check nvidia-smi, or pass --device cpu",
                            crate::error::first_line(&e)
                        ))
                    })?;
                    without_event_tracking(&device);
                    device
                } else if candle_core::utils::metal_is_available() {
                    Device::new_metal(0).map_err(|e| {
                        LlmbenchError::invalid(format!(
                            "--device auto: this build has Metal but device 0 cannot be opened ({}); pass --device cpu",
                            crate::error::first_line(&e)
                        ))
                    })?
                } else {
                    Device::Cpu
                }
            }
        };
        let name = device_name(&device);
        tracing::info!("device: {name} (requested {requested})");
        Ok((device, DeviceInfo { name, requested }))
    }
}

/// cudarc records two CUDA events per allocation and per kernel argument so that tensors
/// can cross streams safely; candle runs everything on one stream from one thread here, so
/// that bookkeeping is pure per-op overhead (and events recorded outside a graph capture
/// break the capture). Applies to tensors created afterwards, i.e. all of them.
fn without_event_tracking(device: &Device) {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = device {
        // SAFETY: one stream, one thread: no tensor is used on another stream.
        unsafe { dev.disable_event_tracking() }
        // Diagnostic: candle's plain dequantize-mul-mat-vec kernels for GGUF weights instead
        // of its fast MMVQ/MMQ ones (which round activations to 8 bits); see results/gpu/NOTES.md.
        if std::env::var_os("LLMBENCH_CUDA_DMMV").is_some() {
            candle_core::quantized::cuda::set_force_dmmv(true);
        }
    }
    #[cfg(not(feature = "cuda"))]
    let _ = device;
}

pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Waits for queued device work, so a clock read afterwards measures finished work.
pub fn synchronize(device: &Device) -> candle_core::Result<()> {
    device.synchronize()
}

/// Sets the CPU thread count for candle's matmuls and rayon. Must run before any tensor work.
pub fn set_cpu_threads(threads: Option<usize>) -> Result<usize> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if n == 0 {
        crate::bail_input!("--threads 0: give at least 1");
    }
    // candle's gemm reads RAYON_NUM_THREADS through `get_num_threads`; the quantized kernels use rayon's pool.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_flags() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        assert_eq!("CUDA:1".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(1));
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }
}
