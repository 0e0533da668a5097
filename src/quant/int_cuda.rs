//! Our int8 / int4 weights on a CUDA device, multiplied by our own kernels
//! (`kernels/int_matvec.cu`): the activation rows are quantized to 8 bits per block and meet the
//! weight codes in integer dot products, the arithmetic of the AVX2 kernels (`int_matmul`), so
//! `int_matmul::matmul_reference` is the reference of both (checked on the device by
//! benches/int_matvec_cuda.rs, log in results/quantize-h200/).
//!
//! `forward` runs the fused matrix-vector kernel for any number of activation rows (one grid
//! row each; decoding has one, speculative verification a few). Prefills are the caller's to
//! route through `dequantize` and a dense GEMM (`models::layers::Linear` does from
//! BATCHED_DEQUANT_MIN_ROWS rows on, on both devices, as for the GGUF formats).

use super::int_weights::{IntFormat, IntWeights};
use super::{KernelFormat, KernelOperands};
use candle_core::cuda_backend::cudarc::driver::{CudaFunction, CudaSlice, CudaStream, CudaView, DevicePtr, LaunchConfig, PushKernelArg};
use std::sync::Arc;
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{DType, Device, Result, Shape, Storage, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/int_matvec.ptx"));
const MODULE: &str = "llmbench_int_matvec";
/// Weight rows per warp in the fused kernel: 1, 2 or 4 (the kernels compiled). One row a warp
/// was fastest or within 5% on every TinyLlama shape but the 32,000-row head (four rows share
/// an activation load there, 5% faster): more warps hide more latency, and a matrix-vector
/// product of a few MB is bound by latency (benches/int_matvec_cuda.rs times all three;
/// results/quantize-h200/NOTES.md).
pub const ROWS_PER_WARP: usize = 1;
/// Most weight loads a lane keeps in flight (rows a warp x chunks a lane), as compiled.
const LOADS_IN_FLIGHT: usize = 8;
const THREADS: u32 = 128;
const QUANTIZE_WARPS: u32 = 4;

enum Codes {
    Int8 { q: CudaSlice<i8>, scales: CudaSlice<f32> },
    Int4 { packed: CudaSlice<u32>, scales: CudaSlice<half::f16>, zeros: CudaSlice<u8>, group: usize },
}

/// The kernels one matrix launches, looked up once (a lookup per launch is a driver call).
struct Kernels {
    quantize: CudaFunction,
    /// `(rows a warp, chunks a lane)` -> the matvec variant.
    matvec: Vec<((usize, usize), CudaFunction)>,
    dequantize: CudaFunction,
}

/// A `[n, k]` int8 / int4 weight matrix in device memory.
pub struct DeviceIntWeights {
    n: usize,
    k: usize,
    codes: Codes,
    device: CudaDevice,
    kernels: Kernels,
    /// The last call's quantized activations, reused by the next call of as many rows: decoding
    /// then allocates only its output. Safe because every launch is on the device's one stream,
    /// so the next quantization runs after the last matvec has read these.
    scratch: std::sync::Mutex<Option<DeviceActivations>>,
}

impl std::fmt::Debug for DeviceIntWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceIntWeights({} x {}, {})", self.n, self.k, self.format().name())
    }
}

/// One call's activation rows quantized on the device (codes, block scales, 32-value code sums).
pub struct DeviceActivations {
    qs: CudaSlice<i8>,
    d: CudaSlice<f32>,
    sums32: CudaSlice<i32>,
    m: usize,
}

/// A kernel's vector argument: a candle-owned slice or view.
enum Arg<'a, T> {
    Slice(&'a mut CudaSlice<T>),
    View(&'a CudaView<'a, T>),
}

fn wrap(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("int kernels (CUDA): {e}"))
}

impl DeviceIntWeights {
    /// Copies `w` to `device`. Errors where the device is not CUDA or the kernels do not take
    /// the shape (rows a multiple of 32; int4 groups of 32, 64 or 128).
    pub fn upload(w: &IntWeights, device: &Device) -> Result<Self> {
        let Device::Cuda(dev) = device else { candle_core::bail!("int kernels (CUDA): {device:?} is not a CUDA device") };
        let (n, k) = w.dims();
        if k % 32 != 0 {
            candle_core::bail!("int kernels (CUDA): rows of {k} inputs are not a multiple of 32");
        }
        let stream = dev.cuda_stream();
        let codes = match w {
            IntWeights::Int8 { q, scales, .. } => Codes::Int8 { q: stream.clone_htod(q).map_err(wrap)?, scales: stream.clone_htod(scales).map_err(wrap)? },
            IntWeights::Int4 { packed, scales, zeros, group, .. } => {
                if ![32, 64, 128].contains(group) {
                    candle_core::bail!("int kernels (CUDA): int4 groups of {group}; they take 32, 64 or 128");
                }
                Codes::Int4 {
                    packed: stream.clone_htod(packed).map_err(wrap)?,
                    scales: stream.clone_htod(scales).map_err(wrap)?,
                    zeros: stream.clone_htod(zeros).map_err(wrap)?,
                    group: *group,
                }
            }
        };
        let load = |name: &str| -> Result<CudaFunction> { Ok(dev.get_or_load_custom_func(name, MODULE, PTX)?.into_cuda_function()) };
        let prefix = if matches!(codes, Codes::Int8 { .. }) { "int8" } else { "int4" };
        let matvec = [(1, 1), (1, 2), (1, 4), (1, 8), (2, 1), (2, 2), (2, 4), (4, 1), (4, 2)]
            .into_iter()
            .map(|(r, c)| Ok(((r, c), load(&format!("{prefix}_matvec_r{r}_c{c}"))?)))
            .collect::<Result<Vec<_>>>()?;
        let kernels = Kernels { quantize: load("quantize_q8")?, matvec, dequantize: load(&format!("{prefix}_dequantize"))? };
        Ok(Self { n, k, codes, device: dev.clone(), kernels, scratch: std::sync::Mutex::new(None) })
    }

    pub fn format(&self) -> IntFormat {
        match &self.codes {
            Codes::Int8 { .. } => IntFormat::Int8,
            Codes::Int4 { group, .. } => IntFormat::Int4 { group: *group },
        }
    }

    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// Bytes of codes, scales and zero points in device memory.
    pub fn bytes(&self) -> usize {
        match &self.codes {
            Codes::Int8 { q, scales } => q.len() + 4 * scales.len(),
            Codes::Int4 { packed, scales, zeros, .. } => 4 * packed.len() + 2 * scales.len() + zeros.len(),
        }
    }

    /// Activation block size and int4's even / odd interleave (int_matmul's `activation_blocks`).
    fn activation_layout(&self) -> (usize, usize) {
        match &self.codes {
            Codes::Int8 { .. } => (32, 0),
            Codes::Int4 { group, .. } => (*group, if group % 64 == 0 { 64 } else { 32 }),
        }
    }

    /// Quantizes `m` rows of `k` f32 values (`x`, contiguous) for this matrix's format.
    pub fn quantize_activations(&self, x: &CudaView<'_, f32>, m: usize) -> Result<DeviceActivations> {
        let (block, _) = self.activation_layout();
        let k = self.k;
        // SAFETY: every element is written by `quantize_into` before anything reads it.
        let mut act = unsafe {
            DeviceActivations { qs: self.device.alloc::<i8>(m * k)?, d: self.device.alloc::<f32>(m * k / block)?, sums32: self.device.alloc::<i32>(m * k / 32)?, m }
        };
        self.quantize_into(x, &mut act)?;
        Ok(act)
    }

    /// `quantize_activations` into buffers of as many rows.
    fn quantize_into(&self, x: &CudaView<'_, f32>, act: &mut DeviceActivations) -> Result<()> {
        if x.len() != act.m * self.k {
            candle_core::bail!("int kernels (CUDA): {} activation values for {} rows of {}", x.len(), act.m, self.k);
        }
        let stream = self.device.cuda_stream();
        self.launch_quantize(&stream, Arg::View(x), act)
    }

    fn launch_quantize(&self, stream: &Arc<CudaStream>, x: Arg<'_, f32>, act: &mut DeviceActivations) -> Result<()> {
        let (block, il) = self.activation_layout();
        let (k, m) = (self.k, act.m);
        let blocks = (k / block) as u32;
        let cfg = LaunchConfig { grid_dim: (blocks.div_ceil(QUANTIZE_WARPS), m as u32, 1), block_dim: (32 * QUANTIZE_WARPS, 1, 1), shared_mem_bytes: 0 };
        let (k_i, block_i, il_i) = (k as i32, block as i32, il as i32);
        let mut b = stream.launch_builder(&self.kernels.quantize);
        match &x {
            Arg::Slice(s) => b.arg(&**s),
            Arg::View(v) => b.arg(*v),
        };
        b.arg(&mut act.qs).arg(&mut act.d).arg(&mut act.sums32).arg(&k_i).arg(&block_i).arg(&il_i);
        unsafe { b.launch(cfg) }.map_err(wrap)?;
        Ok(())
    }

    /// The device addresses a kernel on `stream` reads (the graph-captured decode step's fused
    /// kernels, through `kernels/block_dot.cuh`, which the kernels here share).
    pub fn operands(&self, stream: &Arc<CudaStream>) -> KernelOperands {
        let (act_block, act_il) = self.activation_layout();
        let (n, k) = (self.n, self.k);
        match &self.codes {
            Codes::Int8 { q, scales } => KernelOperands {
                format: KernelFormat::Int8,
                n,
                k,
                codes: q.device_ptr(stream).0,
                scales: scales.device_ptr(stream).0,
                zeros: 0,
                group: 0,
                act_block,
                act_il,
            },
            Codes::Int4 { packed, scales, zeros, group } => KernelOperands {
                format: KernelFormat::Int4,
                n,
                k,
                codes: packed.device_ptr(stream).0,
                scales: scales.device_ptr(stream).0,
                zeros: zeros.device_ptr(stream).0,
                group: *group,
                act_block,
                act_il,
            },
        }
    }

    /// `y[r][c] = x[r] . W[c]` for the quantized rows `act` (`y`: `act.m * n` values), with
    /// `rows_per_warp` weight rows per warp (1, 2 or 4).
    pub fn matvec(&self, act: &DeviceActivations, y: &mut CudaSlice<f32>, rows_per_warp: usize) -> Result<()> {
        if y.len() < act.m * self.n {
            candle_core::bail!("int kernels (CUDA): matvec of {} rows into {} outputs", act.m, y.len());
        }
        let stream = self.device.cuda_stream();
        self.launch_matvec(&stream, act, Arg::Slice(y), rows_per_warp)
    }

    fn launch_matvec(&self, stream: &Arc<CudaStream>, act: &DeviceActivations, y: Arg<'_, f32>, rows_per_warp: usize) -> Result<()> {
        if ![1, 2, 4].contains(&rows_per_warp) || act.qs.len() != act.m * self.k {
            candle_core::bail!("int kernels (CUDA): matvec of {} rows with {rows_per_warp} rows a warp", act.m);
        }
        let warps = self.n.div_ceil(rows_per_warp) as u32;
        let cfg = LaunchConfig { grid_dim: ((warps * 32).div_ceil(THREADS), act.m as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        let (n, k) = (self.n as i32, self.k as i32);
        // Chunks a lane: enough to issue the whole row's loads at once where registers allow.
        let chunk = if matches!(self.codes, Codes::Int8 { .. }) { 16 } else { 32 };
        let per_lane = (self.k / chunk).div_ceil(32).next_power_of_two().min(LOADS_IN_FLIGHT / rows_per_warp);
        let f = self.kernels.matvec.iter().find(|(v, _)| *v == (rows_per_warp, per_lane)).map(|(_, f)| f).ok_or_else(|| wrap("no such kernel variant"))?;
        let mut b = stream.launch_builder(f);
        match &self.codes {
            Codes::Int8 { q, scales } => {
                b.arg(q).arg(scales).arg(&act.qs).arg(&act.d);
            }
            Codes::Int4 { packed, scales, zeros, .. } => {
                b.arg(packed).arg(scales).arg(zeros).arg(&act.qs).arg(&act.d).arg(&act.sums32);
            }
        }
        match &y {
            Arg::Slice(s) => b.arg(&**s),
            Arg::View(v) => b.arg(*v),
        };
        b.arg(&n).arg(&k);
        let (group, il) = match &self.codes {
            Codes::Int4 { group, .. } => (*group as i32, self.activation_layout().1 as i32),
            Codes::Int8 { .. } => (0, 0),
        };
        if matches!(self.codes, Codes::Int4 { .. }) {
            b.arg(&group).arg(&il);
        }
        unsafe { b.launch(cfg) }.map_err(wrap)?;
        Ok(())
    }

    /// The weights as a dense f32 `[n, k]` tensor on the device (the values the format means).
    pub fn dequantize(&self) -> Result<Tensor> {
        let (n, k) = (self.n, self.k);
        // SAFETY: the kernel writes all n * k values.
        let mut out = unsafe { self.device.alloc::<f32>(n * k)? };
        let (n_i, k_i) = (n as i32, k as i32);
        let stream = self.device.cuda_stream();
        let mut b = stream.launch_builder(&self.kernels.dequantize);
        match &self.codes {
            Codes::Int8 { q, scales } => {
                b.arg(q).arg(scales).arg(&mut out).arg(&n_i).arg(&k_i);
                unsafe { b.launch(LaunchConfig::for_num_elems((n * k) as u32)) }.map_err(wrap)?;
            }
            Codes::Int4 { packed, scales, zeros, group } => {
                let group = *group as i32;
                b.arg(packed).arg(scales).arg(zeros).arg(&mut out).arg(&n_i).arg(&k_i).arg(&group);
                unsafe { b.launch(LaunchConfig::for_num_elems((n * k / 8) as u32)) }.map_err(wrap)?;
            }
        }
        Ok(self.tensor(out, (n, k)))
    }

    fn tensor(&self, slice: CudaSlice<f32>, shape: impl Into<Shape>) -> Tensor {
        Tensor::from_storage(Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, self.device.clone())), shape, BackpropOp::none(), false)
    }

    /// `x W^T` for f32 `x` `[.., k]` on this device through the fused kernel.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let k = x.dim(candle_core::D::Minus1)?;
        if k != self.k || x.dtype() != DType::F32 {
            candle_core::bail!("int kernels (CUDA): input {:?} {:?} for a {} x {} matrix", x.dims(), x.dtype(), self.n, self.k);
        }
        let m = x.elem_count() / k;
        if m == 0 || m > 65_535 {
            candle_core::bail!("int kernels (CUDA): {m} activation rows (the grid takes 1 to 65,535)");
        }
        let x = x.contiguous()?;
        let mut scratch = self.scratch.lock().map_err(|_| wrap("scratch poisoned"))?;
        {
            let (storage, layout) = x.storage_and_layout();
            let Storage::Cuda(cs) = &*storage else { candle_core::bail!("int kernels (CUDA): the input is not on the CUDA device") };
            let (start, end) = layout.contiguous_offsets().ok_or_else(|| wrap("input not contiguous"))?;
            let xs = cs.as_cuda_slice::<f32>()?.slice(start..end);
            match scratch.as_mut().filter(|a| a.m == m) {
                Some(act) => self.quantize_into(&xs, act)?,
                None => *scratch = Some(self.quantize_activations(&xs, m)?),
            }
        }
        let act = scratch.as_ref().ok_or_else(|| wrap("no activations"))?;
        // SAFETY: the kernel writes all m * n outputs.
        let mut y = unsafe { self.device.alloc::<f32>(m * self.n)? };
        self.matvec(act, &mut y, ROWS_PER_WARP)?;
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("x has a last dim") = self.n;
        Ok(self.tensor(y, dims))
    }
}

/// Copies `src` to `dst` (16-byte multiples) with an SM kernel: the bandwidth reference of
/// benches/int_matvec_cuda.rs, read the way the matvec kernels read.
pub fn copy_with_kernel(device: &CudaDevice, src: &CudaSlice<u8>, dst: &mut CudaSlice<u8>) -> Result<()> {
    if src.len() != dst.len() || src.len() % 16 != 0 {
        candle_core::bail!("int kernels (CUDA): copy of {} bytes into {}", src.len(), dst.len());
    }
    let f = device.get_or_load_custom_func("copy_u4", MODULE, PTX)?.into_cuda_function();
    let n = src.len() / 16;
    // Four blocks of 256 threads per SM on a 132-SM H200, looping over the rest.
    let cfg = LaunchConfig { grid_dim: (528, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let stream = device.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(src).arg(dst).arg(&n);
    unsafe { b.launch(cfg) }.map_err(wrap)?;
    Ok(())
}
