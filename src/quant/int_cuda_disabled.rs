//! Stand-in for `int_cuda.rs` in builds without the `cuda` feature: the same entry points the
//! rest of the crate calls, each answering that the build has no CUDA (nothing calls them off a
//! CUDA device), so call sites carry no `#[cfg]`.

use super::int_weights::{IntFormat, IntWeights};
use candle_core::{Device, Result, Tensor};

#[derive(Debug)]
pub struct DeviceIntWeights {
    format: IntFormat,
    n: usize,
    k: usize,
}

impl DeviceIntWeights {
    pub fn upload(_w: &IntWeights, _device: &Device) -> Result<Self> {
        candle_core::bail!("our int8/int4 CUDA kernels need a build with --features cuda")
    }
    pub fn format(&self) -> IntFormat {
        self.format
    }
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }
    pub fn bytes(&self) -> usize {
        0
    }
    pub fn forward(&self, _x: &Tensor) -> Result<Tensor> {
        candle_core::bail!("our int8/int4 CUDA kernels need a build with --features cuda")
    }
    pub fn dequantize(&self) -> Result<Tensor> {
        candle_core::bail!("our int8/int4 CUDA kernels need a build with --features cuda")
    }
}
