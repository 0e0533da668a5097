//! Causal attention on CUDA without a `[q, kv]` score matrix (kernels/causal_attention.cu): the
//! prefill's attention, one launch a layer instead of the masked path's matmul, mask, softmax,
//! casts and second matmul, with memory linear in the context. `layers::attention` takes it for
//! every CUDA call of at least MIN_ROWS query rows that does not ask for the attention weights
//! (score-based cache eviction still needs the masked path).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{sys, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{DType, Layout, Result, Storage, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/causal_attention.ptx"));
const MODULE: &str = "llmbench_causal_attention";
/// Query rows a block (ROWS in the .cu file) and its threads.
const ROWS: usize = 32;
const THREADS: u32 = 128;
/// Keys a shared-memory tile (TILE in the .cu file).
const TILE: usize = 32;
/// Fewest query rows the kernel takes. A block is one head and 32 rows, so a decode step (one
/// row) is one block a head, each walking the whole context alone: on the H200 that made the
/// per-op decode path 35-40% slower at 1,152 positions than candle's masked ops (SmolLM2 115
/// against 178 tok/s), whose `[h, q, kv]` scores are small for few rows anyway. Below this, the
/// masked path attends.
const MIN_ROWS: usize = 64;
/// Set to 0 to attend through candle's masked ops instead (A/B timing and numerics checks).
pub const ENV_SWITCH: &str = "LLMBENCH_CUDA_ATTENTION";

fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var(ENV_SWITCH).map_or(true, |v| v != "0"))
}

/// Causal scaled dot-product attention of `q: [b, h, q_len, d]` over `k, v: [b, h_kv, kv_len, d]`
/// on CUDA (query row i sees keys `0..=kv_len - q_len + i`). `None` where the kernel does not
/// apply (not CUDA, `LLMBENCH_CUDA_ATTENTION=0`, fewer than MIN_ROWS query rows, a head size
/// other than 64, 128 or 256, a last dim with a stride), so the caller takes the masked path.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    if !q.device().is_cuda() || !enabled() || k.dtype() != q.dtype() || v.dtype() != q.dtype() {
        return Ok(None);
    }
    let (b, n_head, q_len, d) = q.dims4()?;
    let (kb, n_kv, kv_len, kd) = k.dims4()?;
    if v.dims4()? != (kb, n_kv, kv_len, kd)
        || kb != b
        || kd != d
        || n_kv == 0
        || n_head % n_kv != 0
        || q_len > kv_len
    {
        return Ok(None);
    }
    let dpl = match d {
        64 => 2,
        128 => 4,
        256 => 8,
        _ => return Ok(None),
    };
    if q_len < MIN_ROWS || b > 65_535 || n_head > 65_535 {
        return Ok(None);
    }
    let suffix = match q.dtype() {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => return Ok(None),
    };
    let q = q.contiguous()?;
    let (qg, ql) = q.storage_and_layout();
    let (kg, kl) = k.storage_and_layout();
    let (vg, vl) = v.storage_and_layout();
    let (Storage::Cuda(qs), Storage::Cuda(ks), Storage::Cuda(vs)) = (&*qg, &*kg, &*vg) else {
        return Ok(None);
    };
    let (Some(k_strides), Some(v_strides)) = (strides(kl), strides(vl)) else {
        return Ok(None);
    };
    let dev = qs.device().clone();
    let func = dev
        .get_or_load_custom_func(&format!("causal_attention_{suffix}_d{dpl}"), MODULE, PTX)?
        .into_cuda_function();
    let shared = 4 * (ROWS * d + TILE * (d + 4) + TILE * d);
    if shared > 48 * 1024 {
        func.set_attribute(
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            shared as i32,
        )
        .w()?;
    }
    let cfg = LaunchConfig {
        grid_dim: (q_len.div_ceil(ROWS) as u32, n_head as u32, b as u32),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: shared as u32,
    };
    let dims = Dims {
        n_head: n_head as i32,
        n_kv: n_kv as i32,
        q_len: q_len as i32,
        kv_len: kv_len as i32,
        k: k_strides,
        v: v_strides,
        inv_sqrt_d: 1f32 / (d as f32).sqrt(),
    };
    let n = b * n_head * q_len * d;
    let out = match q.dtype() {
        DType::F32 => launch::<f32>(&func, cfg, (qs, ql), (ks, kl), (vs, vl), n, &dims)?,
        DType::F16 => launch::<half::f16>(&func, cfg, (qs, ql), (ks, kl), (vs, vl), n, &dims)?,
        _ => launch::<half::bf16>(&func, cfg, (qs, ql), (ks, kl), (vs, vl), n, &dims)?,
    };
    drop((qg, kg, vg));
    Ok(Some(Tensor::from_storage(
        Storage::Cuda(out),
        (b, n_head, q_len, d),
        BackpropOp::none(),
        false,
    )))
}

/// The kernel's shape arguments; strides in elements `(batch, head, row)`.
struct Dims {
    n_head: i32,
    n_kv: i32,
    q_len: i32,
    kv_len: i32,
    k: [i64; 3],
    v: [i64; 3],
    inv_sqrt_d: f32,
}

/// A key or value tensor's `(batch, head, row)` strides, if its last dim is contiguous.
fn strides(l: &Layout) -> Option<[i64; 3]> {
    let s = l.stride();
    (s.len() == 4 && s[3] == 1).then(|| [s[0] as i64, s[1] as i64, s[2] as i64])
}

fn launch<T: candle_core::cuda_backend::CudaDType + DeviceRepr>(
    func: &candle_core::cuda_backend::cudarc::driver::CudaFunction,
    cfg: LaunchConfig,
    (qs, ql): (&CudaStorage, &Layout),
    (ks, kl): (&CudaStorage, &Layout),
    (vs, vl): (&CudaStorage, &Layout),
    n: usize,
    dims: &Dims,
) -> Result<CudaStorage> {
    let dev = qs.device();
    let q = qs.as_cuda_slice::<T>()?.slice(ql.start_offset()..);
    let k = ks.as_cuda_slice::<T>()?.slice(kl.start_offset()..);
    let v = vs.as_cuda_slice::<T>()?.slice(vl.start_offset()..);
    // SAFETY: the kernel writes every one of the n outputs (every row below q_len, all d values).
    let out = unsafe { dev.alloc::<T>(n)? };
    let stream = dev.cuda_stream();
    let mut launch = stream.launch_builder(func);
    launch.arg(&q).arg(&k).arg(&v).arg(&out);
    launch
        .arg(&dims.n_head)
        .arg(&dims.n_kv)
        .arg(&dims.q_len)
        .arg(&dims.kv_len);
    launch
        .arg(&dims.k[0])
        .arg(&dims.k[1])
        .arg(&dims.k[2])
        .arg(&dims.v[0])
        .arg(&dims.v[1])
        .arg(&dims.v[2]);
    launch.arg(&dims.inv_sqrt_d);
    // SAFETY: the arguments are the kernel's, in order and of its types; q, k and v hold
    // every element the strides address (candle's layouts of these tensors).
    unsafe { launch.launch(cfg) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}
