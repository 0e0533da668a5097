//! The Llama decode step as one captured CUDA graph (batch 1, dense f32/f16/bf16 weights or our
//! int8/int4 in an f32 graph, static KV cache). Small-model decoding on a GPU is bound by kernel launches, not by bytes:
//! candle's generic path issues ~25 kernels per layer, each with a host-side allocation, so
//! SmolLM2-135M decodes at ~100 tok/s on an H100 that could read its weights 10,000 times a
//! second. Here every buffer is allocated once, the step is 9 launches per layer (fused
//! add+RMSNorm, RoPE+cache store, attention and SwiGLU kernels from `../kernels/llama_decode.cu`
//! plus 4 cuBLAS GEMMs) and the whole sequence is captured once and replayed: the token and
//! position live in device memory, so the same graph serves every step (what vLLM and
//! llama.cpp do for CUDA graphs). The weights and cache stay candle tensors; this file only
//! takes their device addresses.

use super::{DecodeShape, DecodeWeights, GraphWeight};
use crate::kv::InPlaceBuffers;
use candle_core::cuda_backend::cudarc::cublas::{result as blas_result, sys as blas_sys, CudaBlas};
use candle_core::cuda_backend::cudarc::driver::{
    sys, CudaFunction, CudaGraph, CudaModule, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice};
use candle_core::{DType, Device, Result, Storage, Tensor};
use std::sync::{Arc, Mutex};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/llama_decode.ptx"));
/// Threads of the attention kernel: with one block per query head (9 for SmolLM2), the
/// latency of the loads over a long cache is hidden only by many threads per block (256
/// threads decoded 1,024 tokens 19% slower than 128; see results/gpu/NOTES.md).
const ATTENTION_THREADS: u32 = 1024;
/// Threads of the norm kernel; it keeps 16 values per thread in registers (hidden <= 8192).
const NORM_THREADS: u32 = 512;
const NORM_MAX_HIDDEN: usize = 16 * NORM_THREADS as usize;
/// Rows per warp in the GEMV kernel (GEMV_ROWS in the .cu file).
const GEMV_ROWS: usize = 2;
const GEMV_THREADS: u32 = 256;
const ELEMENTWISE_THREADS: u32 = 256;
/// cuBLAS workspace set explicitly, so that nothing is allocated while a graph is captured.
const CUBLAS_WORKSPACE_BYTES: usize = 32 << 20;
/// Dynamic shared memory the attention kernel may use for its scores (f32 per position):
/// 51,200 positions. Hopper allows 227 KiB per block including the kernel's static shared
/// memory; asking for all 227 KiB is rejected (CUDA_ERROR_INVALID_VALUE), so leave room.
const MAX_SHARED_BYTES: usize = 200 * 1024;

/// A graph-captured decode step; `None` from `new` where the weights do not qualify.
pub struct GraphDecoder {
    inner: Mutex<Inner>,
}

struct Kernels {
    embed: CudaFunction,
    add_rmsnorm: CudaFunction,
    rope_store: CudaFunction,
    attention: CudaFunction,
    silu_mul: CudaFunction,
    to_f32: CudaFunction,
    gemv: CudaFunction,
    _module: Arc<CudaModule>,
}

struct Buffers {
    params: Tensor,
    x: Tensor,
    hs: Tensor,
    qkv: Tensor,
    q: Tensor,
    attn: Tensor,
    o: Tensor,
    gate_up: Tensor,
    act: Tensor,
    down: Tensor,
    logits_t: Tensor,
    logits: Tensor,
    _workspace: Tensor,
}

struct Inner {
    device: CudaDevice,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: Kernels,
    weights: DecodeWeights,
    buffers: Buffers,
    shape: DecodeShape,
    dtype: DType,
    /// The captured step and the cache addresses and capacity it was captured for.
    graph: Option<(CudaGraph, Vec<u64>)>,
}

// The graph, stream and handles are only touched through the Mutex, one thread at a time;
// CUDA allows that from any thread.
unsafe impl Send for Inner {}

impl GraphDecoder {
    /// Prepares the decoder: loads the kernels, allocates every buffer. Returns `None` on a
    /// device other than CUDA or for a dtype the kernels lack.
    pub fn new(weights: DecodeWeights, shape: DecodeShape, device: &Device) -> Result<Option<Self>> {
        let Device::Cuda(dev) = device else { return Ok(None) };
        let dtype = weights.embed.dtype();
        let suffix = match dtype {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            _ => return Ok(None),
        };
        let per_load = 16 / dtype.size_in_bytes();
        let chunks = shape.head_dim / per_load;
        let head_ok = shape.head_dim % per_load == 0 && shape.head_dim <= 256 && ATTENTION_THREADS as usize % chunks == 0;
        if !head_ok || shape.n_head % shape.n_kv != 0 || shape.hidden > NORM_MAX_HIDDEN {
            return Ok(None);
        }
        let ctx = dev.cuda_stream().context().clone();
        let stream = ctx.new_stream().map_err(wrap)?;
        let module = ctx.load_module(PTX.into()).map_err(wrap)?;
        let f = |name: &str| module.load_function(&format!("{name}_{suffix}")).map_err(wrap);
        let kernels = Kernels {
            embed: f("embed")?,
            add_rmsnorm: f("add_rmsnorm")?,
            rope_store: f("rope_store")?,
            attention: f("attention")?,
            silu_mul: f("silu_mul")?,
            to_f32: f("to_f32")?,
            gemv: f("gemv")?,
            _module: module.clone(),
        };
        kernels
            .attention
            .set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, MAX_SHARED_BYTES as i32)
            .map_err(wrap)?;
        let blas = CudaBlas::new(stream.clone()).map_err(wrap)?;
        let zeros = |n: usize, dt: DType| Tensor::zeros(n, dt, device);
        let q_dim = shape.n_head * shape.head_dim;
        let qkv_dim = q_dim + 2 * shape.n_kv * shape.head_dim;
        let buffers = Buffers {
            params: zeros(2, DType::U32)?,
            x: zeros(shape.hidden, dtype)?,
            hs: zeros(shape.hidden, dtype)?,
            qkv: zeros(qkv_dim, dtype)?,
            q: zeros(q_dim, dtype)?,
            attn: zeros(q_dim, dtype)?,
            o: zeros(shape.hidden, dtype)?,
            gate_up: zeros(2 * shape.intermediate, dtype)?,
            act: zeros(shape.intermediate, dtype)?,
            down: zeros(shape.hidden, dtype)?,
            logits_t: zeros(shape.vocab, dtype)?,
            logits: Tensor::zeros((1, shape.vocab), DType::F32, device)?,
            _workspace: zeros(CUBLAS_WORKSPACE_BYTES, DType::U8)?,
        };
        let workspace = ptr(&buffers._workspace, &stream)?;
        let status = unsafe {
            blas_sys::cublasSetWorkspace_v2(*blas.handle(), workspace as *mut std::ffi::c_void, CUBLAS_WORKSPACE_BYTES)
        };
        if status != blas_sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            candle_core::bail!("cublasSetWorkspace failed: {status:?}");
        }
        let inner = Inner {
            device: dev.clone(),
            stream,
            blas,
            kernels,
            weights,
            buffers,
            shape,
            dtype,
            graph: None,
        };
        Ok(Some(Self { inner: Mutex::new(inner) }))
    }

    /// Decodes `token` at `pos` into the static cache and returns the logits `[1, vocab]`
    /// (f32). The first step at a new cache runs eagerly and then captures the graph; every
    /// later step replays it.
    pub fn step(&self, token: u32, pos: usize, cache: &mut dyn InPlaceBuffers) -> Result<Tensor> {
        let mut inner = self.inner.lock().map_err(|_| candle_core::Error::Msg("graph decoder poisoned".into()))?;
        inner.step(token, pos, cache)
    }

    /// Whether a cache can be decoded by this graph (allocated, right dtype, fits in shared memory).
    pub fn supports(&self, cache: &dyn InPlaceBuffers) -> bool {
        let Ok(inner) = self.inner.lock() else { return false };
        let fits = attention_shared_bytes(cache.capacity(), inner.dtype) <= MAX_SHARED_BYTES;
        fits && cache.buffers(0).is_some_and(|(k, _)| k.dtype() == inner.dtype && k.device().is_cuda() && k.dim(0).ok() == Some(1))
    }
}

fn wrap(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("cuda graph decoder: {e}"))
}

/// The device address of a contiguous CUDA tensor's first element.
fn ptr(t: &Tensor, stream: &Arc<CudaStream>) -> Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*storage else { candle_core::bail!("cuda graph decoder: tensor is not on a CUDA device") };
    if !layout.is_contiguous() {
        candle_core::bail!("cuda graph decoder: tensor is not contiguous");
    }
    let base = match &cs.slice {
        CudaStorageSlice::F32(s) => s.device_ptr(stream).0,
        CudaStorageSlice::F16(s) => s.device_ptr(stream).0,
        CudaStorageSlice::BF16(s) => s.device_ptr(stream).0,
        CudaStorageSlice::U32(s) => s.device_ptr(stream).0,
        CudaStorageSlice::U8(s) => s.device_ptr(stream).0,
        _ => candle_core::bail!("cuda graph decoder: unsupported storage dtype {:?}", t.dtype()),
    };
    Ok(base + (layout.start_offset() * t.dtype().size_in_bytes()) as u64)
}

/// Shared memory of the attention kernel: f32 scores for every slot, or the partial sums of
/// the value pass (threads x 16-byte chunk), whichever is larger.
fn attention_shared_bytes(capacity: usize, dtype: DType) -> usize {
    capacity.max(ATTENTION_THREADS as usize * (16 / dtype.size_in_bytes())) * 4
}

fn blocks(n: usize, threads: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: ((n as u32).div_ceil(threads), 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

impl Inner {
    fn step(&mut self, token: u32, pos: usize, cache: &mut dyn InPlaceBuffers) -> Result<Tensor> {
        let candle_stream = self.device.cuda_stream();
        let cache_ptrs = (0..self.weights.layers.len())
            .map(|l| {
                let (k, v) = cache.buffers(l).ok_or_else(|| wrap("the static cache is not allocated (prefill first)"))?;
                Ok([ptr(k, &self.stream)?, ptr(v, &self.stream)?])
            })
            .collect::<Result<Vec<_>>>()?
            .concat();
        let mut key = cache_ptrs.clone();
        key.push(cache.capacity() as u64);
        // Work already queued on candle's stream (the prefill's cache writes) comes first.
        self.stream.join(&candle_stream).map_err(wrap)?;
        let params_ptr = ptr(&self.buffers.params, &self.stream)?;
        let params = [token, pos as u32];
        unsafe {
            sys::cuMemcpyHtoDAsync_v2(params_ptr, params.as_ptr() as *const std::ffi::c_void, 8, self.stream.cu_stream())
                .result()
                .map_err(wrap)?;
        }
        match &self.graph {
            Some((graph, captured_for)) if *captured_for == key => {
                graph.launch().map_err(wrap)?;
            }
            _ => {
                self.graph = None;
                // Eagerly first: cuBLAS and the module load lazily, which a capture forbids.
                self.enqueue(&cache_ptrs, cache.capacity())?;
                self.stream.synchronize().map_err(wrap)?;
                self.stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).map_err(wrap)?;
                let enqueued = self.enqueue(&cache_ptrs, cache.capacity());
                let graph = self.stream.end_capture(sys::CUgraphInstantiate_flags(0)).map_err(wrap)?;
                enqueued?;
                let graph = graph.ok_or_else(|| wrap("the capture recorded nothing"))?;
                self.graph = Some((graph, key));
            }
        }
        candle_stream.join(&self.stream).map_err(wrap)?;
        cache.advance(1)?;
        self.buffers.logits.copy()
    }

    /// Queues one decode step on the decoder's stream.
    fn enqueue(&self, cache: &[u64], capacity: usize) -> Result<()> {
        let s = self.shape;
        let st = &self.stream;
        let b = &self.buffers;
        let (params, x, hs, qkv, q) = (ptr(&b.params, st)?, ptr(&b.x, st)?, ptr(&b.hs, st)?, ptr(&b.qkv, st)?, ptr(&b.q, st)?);
        let (attn, o, gate_up, act, down) = (ptr(&b.attn, st)?, ptr(&b.o, st)?, ptr(&b.gate_up, st)?, ptr(&b.act, st)?, ptr(&b.down, st)?);
        let (logits_t, logits) = (ptr(&b.logits_t, st)?, ptr(&b.logits, st)?);
        let w = &self.weights;
        let (cos, sin) = (ptr(&w.cos, st)?, ptr(&w.sin, st)?);
        let (hidden, n_head, n_kv, d) = (s.hidden as i32, s.n_head as i32, s.n_kv as i32, s.head_dim as i32);
        let (capacity_i, interleaved, eps) = (capacity as i32, i32::from(s.interleaved), s.eps);
        let inv_sqrt_d = 1f32 / (s.head_dim as f32).sqrt();
        let qkv_dim = (s.n_head + 2 * s.n_kv) * s.head_dim;
        let k = &self.kernels;
        let one_block = |threads: u32| LaunchConfig { grid_dim: (1, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };

        let embed = ptr(&w.embed, st)?;
        unsafe { st.launch_builder(&k.embed).arg(&embed).arg(&params).arg(&x).arg(&hidden).launch(one_block(NORM_THREADS)) }
            .map_err(wrap)?;
        // The residual added before each norm: nothing before the first layer, then the MLP output.
        let mut delta = 0u64;
        for (l, lw) in w.layers.iter().enumerate() {
            let norm_w = ptr(&lw.input_norm, st)?;
            unsafe {
                st.launch_builder(&k.add_rmsnorm).arg(&x).arg(&delta).arg(&norm_w).arg(&hs).arg(&hidden).arg(&eps).launch(one_block(NORM_THREADS))
            }
            .map_err(wrap)?;
            self.gemv(&lw.qkv, hs, qkv, qkv_dim, s.hidden)?;
            let (kc, vc) = (cache[2 * l], cache[2 * l + 1]);
            let heads = LaunchConfig { grid_dim: ((s.n_head + s.n_kv) as u32, 1, 1), block_dim: ((s.head_dim / 2) as u32, 1, 1), shared_mem_bytes: 0 };
            unsafe {
                st.launch_builder(&k.rope_store)
                    .arg(&qkv).arg(&cos).arg(&sin).arg(&params).arg(&q).arg(&kc).arg(&vc)
                    .arg(&n_head).arg(&n_kv).arg(&d).arg(&capacity_i).arg(&interleaved)
                    .launch(heads)
            }
            .map_err(wrap)?;
            let shared = attention_shared_bytes(capacity, self.dtype) as u32;
            let attention = LaunchConfig { grid_dim: (s.n_head as u32, 1, 1), block_dim: (ATTENTION_THREADS, 1, 1), shared_mem_bytes: shared };
            unsafe {
                st.launch_builder(&k.attention)
                    .arg(&q).arg(&kc).arg(&vc).arg(&params).arg(&attn)
                    .arg(&n_head).arg(&n_kv).arg(&d).arg(&capacity_i).arg(&inv_sqrt_d)
                    .launch(attention)
            }
            .map_err(wrap)?;
            self.gemv(&lw.o, attn, o, s.hidden, s.n_head * s.head_dim)?;
            let post_w = ptr(&lw.post_norm, st)?;
            unsafe {
                st.launch_builder(&k.add_rmsnorm).arg(&x).arg(&o).arg(&post_w).arg(&hs).arg(&hidden).arg(&eps).launch(one_block(NORM_THREADS))
            }
            .map_err(wrap)?;
            self.gemv(&lw.gate_up, hs, gate_up, 2 * s.intermediate, s.hidden)?;
            let inter = s.intermediate as i32;
            unsafe { st.launch_builder(&k.silu_mul).arg(&gate_up).arg(&act).arg(&inter).launch(blocks(s.intermediate, ELEMENTWISE_THREADS)) }
                .map_err(wrap)?;
            self.gemv(&lw.down, act, down, s.hidden, s.intermediate)?;
            delta = down;
        }
        let final_w = ptr(&w.final_norm, st)?;
        unsafe {
            st.launch_builder(&k.add_rmsnorm).arg(&x).arg(&delta).arg(&final_w).arg(&hs).arg(&hidden).arg(&eps).launch(one_block(NORM_THREADS))
        }
        .map_err(wrap)?;
        self.gemv(&w.head, hs, logits_t, s.vocab, s.hidden)?;
        let vocab = s.vocab as i32;
        unsafe { st.launch_builder(&k.to_f32).arg(&logits_t).arg(&logits).arg(&vocab).launch(blocks(s.vocab, ELEMENTWISE_THREADS)) }
            .map_err(wrap)?;
        Ok(())
    }

    /// `y[n] = W[n, k] x[k]`: our int kernels for int weights (f32 activations), our GEMV
    /// kernel where dense rows can be read 16 bytes at a time, cuBLAS otherwise.
    fn gemv(&self, w: &GraphWeight, x: u64, y: u64, n: usize, k: usize) -> Result<()> {
        let w = match w {
            GraphWeight::Int(int) => return int.graph_step(&self.stream, x, y),
            GraphWeight::Dense(t) => ptr(t, &self.stream)?,
        };
        let per_load = 16 / self.dtype.size_in_bytes();
        if k % per_load == 0 && w % 16 == 0 && x % 16 == 0 {
            let warps = n.div_ceil(GEMV_ROWS);
            let cfg = blocks(warps * 32, GEMV_THREADS);
            let (n, k) = (n as i32, k as i32);
            return unsafe { self.stream.launch_builder(&self.kernels.gemv).arg(&w).arg(&x).arg(&y).arg(&n).arg(&k).launch(cfg) }
                .map(|_| ())
                .map_err(wrap);
        }
        self.cublas_gemv(w, x, y, n, k)
    }

    /// `y = W x` through cuBLAS (column-major: y = op(A) x with A = W^T stored `[k, n]`, so
    /// op = T), f32 accumulation as candle's matmul.
    fn cublas_gemv(&self, w: u64, x: u64, y: u64, n: usize, k: usize) -> Result<()> {
        let data_type = match self.dtype {
            DType::BF16 => blas_sys::cudaDataType::CUDA_R_16BF,
            DType::F16 => blas_sys::cudaDataType::CUDA_R_16F,
            _ => blas_sys::cudaDataType::CUDA_R_32F,
        };
        let (alpha, beta) = (1f32, 0f32);
        unsafe {
            blas_result::gemm_ex(
                *self.blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                n as i32,
                1,
                k as i32,
                &alpha as *const f32 as *const std::ffi::c_void,
                w as *const std::ffi::c_void,
                data_type,
                k as i32,
                x as *const std::ffi::c_void,
                data_type,
                k as i32,
                &beta as *const f32 as *const std::ffi::c_void,
                y as *mut std::ffi::c_void,
                data_type,
                n as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(wrap)
    }
}
