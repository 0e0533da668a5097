//! Quantization kernels that know no architecture: plain slices in, plain slices out. Caches and
//! models wrap them in tensors; nothing here imports models, the engine or kv.

pub mod cpu_matmul;
pub mod format;
pub mod int_matmul;
pub mod int_weights;
pub mod kv_int;
