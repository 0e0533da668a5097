//! Stand-in for `block_cuda.rs` in builds without the `cuda` feature: the same entry points,
//! each answering that the build has no CUDA, so call sites carry no `#[cfg]`.

use candle_core::quantized::QTensor;
use candle_core::{Device, Result};

#[derive(Debug)]
pub struct DeviceBlockWeights;

impl DeviceBlockWeights {
    pub fn upload(_q: &QTensor, _device: &Device) -> Result<Self> {
        candle_core::bail!("the GGUF CUDA kernels need a build with --features cuda")
    }
}
