//! GGUF Q8_0 / Q4_0 / Q4_1 matrices in device memory in the layout of `kernels/block_dot.cuh`
//! (codes and scales split, `block_layout`), for the graph-captured decode step's kernels.
//! candle keeps its own copy of a GGUF tensor on the device (its per-op kernels and the
//! prefill's dequantization read it); this one is what the captured step reads.

use super::block_layout::split_blocks;
use super::cpu_matmul::BlockFormat;
use super::{KernelFormat, KernelOperands};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result};
use std::sync::Arc;

/// A GGUF `[n, k]` matrix split into codes and scales on a CUDA device.
pub struct DeviceBlockWeights {
    format: KernelFormat,
    n: usize,
    k: usize,
    codes: CudaSlice<u8>,
    scales: CudaSlice<u8>,
}

impl std::fmt::Debug for DeviceBlockWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBlockWeights({} x {}, {:?})", self.n, self.k, self.format)
    }
}

impl DeviceBlockWeights {
    /// Copies `q` (any device) to the CUDA `device` in the kernels' layout. Errors name the
    /// GGUF type where the kernels do not read it.
    pub fn upload(q: &QTensor, device: &Device) -> Result<Self> {
        let Device::Cuda(dev) = device else { candle_core::bail!("GGUF kernels (CUDA): {device:?} is not a CUDA device") };
        let (format, block) = match q.dtype() {
            GgmlDType::Q8_0 => (KernelFormat::Q8_0, BlockFormat::Q8_0),
            GgmlDType::Q4_0 => (KernelFormat::Q4_0, BlockFormat::Q4_0),
            GgmlDType::Q4_1 => (KernelFormat::Q4_1, BlockFormat::Q4_1),
            other => candle_core::bail!("GGUF kernels (CUDA): {other:?} weights are not among Q8_0, Q4_0 and Q4_1"),
        };
        let (n, k) = q.shape().dims2()?;
        let split = split_blocks(block, &q.data()?, n, k).map_err(|why| candle_core::Error::Msg(format!("GGUF kernels (CUDA): {why}")))?;
        let stream = dev.cuda_stream();
        let wrap = |e: candle_core::cuda_backend::cudarc::driver::DriverError| candle_core::Error::Msg(format!("GGUF kernels (CUDA): {e}"));
        Ok(Self { format, n, k, codes: stream.clone_htod(&split.codes).map_err(wrap)?, scales: stream.clone_htod(&split.scales).map_err(wrap)? })
    }

    /// The device addresses a kernel on `stream` reads.
    pub fn operands(&self, stream: &Arc<CudaStream>) -> KernelOperands {
        KernelOperands {
            format: self.format,
            n: self.n,
            k: self.k,
            codes: self.codes.device_ptr(stream).0,
            scales: self.scales.device_ptr(stream).0,
            zeros: 0,
            group: 0,
            act_block: 32,
            act_il: 0,
        }
    }
}
