//! The graph-captured CUDA decode step for the Llama family: the weights and shapes it reads
//! (here, shared by both builds), the decoder itself in `cuda.rs`, and its stand-in for builds
//! without the `cuda` feature in `disabled.rs` (same signatures; `new` never returns a decoder).

mod args_mirror;
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
mod greedy_picks;
#[cfg(feature = "cuda")]
mod launch;
#[cfg(feature = "cuda")]
mod launches;
#[cfg(feature = "cuda")]
mod projection;
#[cfg(feature = "cuda")]
mod trace;
// Plain arithmetic, built (and unit-tested) without the cuda feature too.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod gemv_choice;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod timeline;
#[cfg(not(feature = "cuda"))]
mod disabled;

#[cfg(feature = "cuda")]
pub use cuda::GraphDecoder;
#[cfg(not(feature = "cuda"))]
pub use disabled::GraphDecoder;

use crate::quant::block_cuda::DeviceBlockWeights;
use crate::quant::int_cuda::DeviceIntWeights;
use candle_core::Tensor;
use std::sync::Arc;

/// A projection's weight `[out, in]`: dense in the model's dtype, or quantized (our int8 / int4,
/// or GGUF Q8_0 / Q4_0 / Q4_1 blocks), whose kernels quantize the f32 input vector to 8 bits.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub enum GraphWeight {
    Dense(Tensor),
    Int(Arc<DeviceIntWeights>),
    Blocks(Arc<DeviceBlockWeights>),
}

/// One layer's weights as the generic path holds them (`[out, in]`, fused where fused).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub struct LayerWeights {
    pub input_norm: Tensor,
    pub qkv: GraphWeight,
    pub o: GraphWeight,
    pub post_norm: Tensor,
    pub gate_up: GraphWeight,
    pub down: GraphWeight,
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub struct DecodeWeights {
    pub embed: Tensor,
    pub layers: Vec<LayerWeights>,
    pub final_norm: Tensor,
    pub head: GraphWeight,
    /// RoPE tables `[positions, head_dim / 2]`.
    pub cos: Tensor,
    pub sin: Tensor,
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
pub struct DecodeShape {
    pub hidden: usize,
    pub n_head: usize,
    pub n_kv: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub eps: f32,
    pub interleaved: bool,
}

/// The LLMBENCH_CUDA_* kernel settings the graph decoder reads (`gemv_choice.rs`), checked when
/// a GPU is opened: a misspelt value is an input error (exit 2) naming the variable and its
/// values, not a failure deep in model loading.
pub fn check_settings() -> anyhow::Result<()> {
    gemv_choice::GemvChoice::from_env(1).map(|_| ()).map_err(|e| crate::error::LlmbenchError::invalid(e.to_string()))
}
