//! Quantization kernels that know no architecture: plain slices in, plain slices out. Caches and
//! models wrap them in tensors; nothing here imports models, the engine or kv.

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
