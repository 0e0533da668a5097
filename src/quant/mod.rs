//! Quantization kernels that know no architecture: plain slices in, plain slices out. Caches and
//! models wrap them in tensors; nothing here imports models, the engine or kv.

pub mod block_layout;
/// GGUF Q8_0 / Q4_0 / Q4_1 weights on CUDA in the layout of `kernels/block_dot.cuh`; a twin
/// that refuses in CPU builds.
#[cfg(feature = "cuda")]
pub mod block_cuda;
#[cfg(not(feature = "cuda"))]
#[path = "block_cuda_disabled.rs"]
pub mod block_cuda;
pub mod cpu_matmul;
pub mod format;
pub mod int_matmul;
/// Our int8/int4 kernels on CUDA (`kernels/int_matvec.cu`); a twin that refuses in CPU builds.
#[cfg(feature = "cuda")]
pub mod int_cuda;
#[cfg(not(feature = "cuda"))]
#[path = "int_cuda_disabled.rs"]
pub mod int_cuda;
pub mod int_weights;
pub mod kv_int;

/// The quantized formats that CUDA kernels read through `kernels/block_dot.cuh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    Q8_0,
    Q4_0,
    Q4_1,
    Int8,
    Int4,
}

impl KernelFormat {
    /// The name kernels are compiled under (`gemv_{name}_f32_c4`, ...).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Int8 => "int8",
            Self::Int4 => "int4",
        }
    }
}

/// A quantized `[n, k]` matrix in device memory as a kernel takes it: addresses of its codes,
/// scales and (int4) zero points, and how its activation vector must be quantized.
#[derive(Debug, Clone, Copy)]
pub struct KernelOperands {
    pub format: KernelFormat,
    pub n: usize,
    pub k: usize,
    pub codes: u64,
    pub scales: u64,
    pub zeros: u64,
    /// int4's group (scales per row = k / group); 0 for the others.
    pub group: usize,
    /// Values per activation block (32, or int4's group) and int4's even/odd interleave (0: none).
    pub act_block: usize,
    pub act_il: usize,
}

/// Deterministic test values in [-2, 2) (candle's CPU generator cannot be seeded).
#[cfg(test)]
mod test_values {
    pub fn pseudo(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }
}
