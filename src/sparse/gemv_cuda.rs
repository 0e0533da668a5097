//! The sparse matrix-vector product on CUDA (`kernels/sparse_gemv.cu`): column-major weights
//! in f32, f16, bf16 or Q8_0 (codes `[in][out]` and one f16 scale per 32 outputs of a column,
//! the blocks of `gemv::ColumnMajor` split into two arrays so every load is 16-byte aligned),
//! an activation vector thresholded on the device (one ballot per 32 inputs, no compaction
//! pass), and only the kept columns read. `stored_rows` gives the values the kernel multiplies, for references. Checked against
//! the host and timed against cuBLAS by benches/sparse_gemv_cuda.rs on the lent GPU.

use super::gemv::{ColumnData, ColumnFormat, ColumnMajor, BLOCK};
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::CudaDevice;
use candle_core::{Device, Result};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/sparse_gemv.ptx"));
const MODULE: &str = "llmbench_sparse_gemv";
/// Warps per block: each takes 8 inputs of the block's 64, all over the same tile of 32 lanes x
/// 16 bytes of outputs; their sums meet in shared memory (one atomic per output and block).
const WARPS: u32 = 8;
/// Inputs per block (as compiled: 8 per warp).
const INPUTS_PER_BLOCK: usize = 8 * WARPS as usize;

fn wrap(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("sparse gemv (CUDA): {e}"))
}

enum Columns {
    F32(CudaSlice<f32>),
    F16(CudaSlice<half::f16>),
    Bf16(CudaSlice<half::bf16>),
    Q8_0 {
        codes: CudaSlice<i8>,
        scales: CudaSlice<half::f16>,
    },
}

/// A `[n, k]` matrix on the device for sparse products, with the compaction scratch.
pub struct DeviceSparseGemv {
    n: usize,
    k: usize,
    format: ColumnFormat,
    columns: Columns,
    device: CudaDevice,
    gemv: CudaFunction,
    /// Kept-input counter for `forward_counted`.
    kept: CudaSlice<i32>,
}

/// Values per thread (16 bytes of the format).
fn per_thread(format: ColumnFormat) -> usize {
    match format {
        ColumnFormat::F32 => 4,
        ColumnFormat::F16 | ColumnFormat::Bf16 => 8,
        ColumnFormat::Q8_0 => 16,
    }
}

impl DeviceSparseGemv {
    /// Copies row-major `[n, k]` f32 weights to `device` as `format` columns. `n` must fill
    /// whole 16-byte loads (and Q8_0 blocks of 32).
    pub fn upload(
        rows: &[f32],
        n: usize,
        k: usize,
        format: ColumnFormat,
        device: &Device,
    ) -> Result<Self> {
        let Device::Cuda(dev) = device else {
            candle_core::bail!("sparse gemv (CUDA): {device:?} is not a CUDA device")
        };
        if rows.len() != n * k
            || n % per_thread(format) != 0
            || (format == ColumnFormat::Q8_0 && n % BLOCK != 0)
        {
            candle_core::bail!("sparse gemv (CUDA): a {n} x {k} {} matrix from {} values (outputs must be a multiple of {})", format.name(), rows.len(), per_thread(format).max(if format == ColumnFormat::Q8_0 { BLOCK } else { 1 }));
        }
        let stream = dev.cuda_stream();
        // The CPU kernels' columns, copied as they are (one quantizer, one layout definition).
        let host = ColumnMajor::from_rows(rows, n, k, format).map_err(|e| candle_core::Error::Msg(format!("sparse gemv (CUDA): {e}")))?;
        let columns = match host.data() {
            ColumnData::F32(c) => Columns::F32(stream.clone_htod(c).map_err(wrap)?),
            ColumnData::F16(c) => Columns::F16(stream.clone_htod(c).map_err(wrap)?),
            ColumnData::Bf16(c) => Columns::Bf16(stream.clone_htod(c).map_err(wrap)?),
            ColumnData::Q8_0 { codes, scales } => Columns::Q8_0 { codes: stream.clone_htod(&codes).map_err(wrap)?, scales: stream.clone_htod(&scales).map_err(wrap)? },
        };
        let load = |name: &str| -> Result<CudaFunction> {
            Ok(dev
                .get_or_load_custom_func(name, MODULE, PTX)?
                .into_cuda_function())
        };
        Ok(Self {
            n,
            k,
            format,
            columns,
            device: dev.clone(),
            gemv: load(&format!("sparse_gemv_{}", format.name()))?,
            kept: stream.alloc_zeros::<i32>(1).map_err(wrap)?,
        })
    }

    /// The weights as the kernel multiplies them (rounded to the format), row-major `[n, k]`.
    pub fn stored_rows(rows: &[f32], n: usize, k: usize, format: ColumnFormat) -> anyhow::Result<Vec<f32>> {
        let host = ColumnMajor::from_rows(rows, n, k, format)?;
        let mut stored = vec![0f32; n * k];
        for i in 0..k {
            for (o, v) in host.column(i).into_iter().enumerate() {
                stored[o * k + i] = v;
            }
        }
        Ok(stored)
    }

    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }
    pub fn format(&self) -> ColumnFormat {
        self.format
    }
    /// Bytes of weights on the device.
    pub fn bytes(&self) -> usize {
        match &self.columns {
            Columns::F32(c) => 4 * c.len(),
            Columns::F16(c) => 2 * c.len(),
            Columns::Bf16(c) => 2 * c.len(),
            Columns::Q8_0 { codes, scales } => codes.len() + 2 * scales.len(),
        }
    }

    /// `y = W x` over the entries of `x` with |x| >= `threshold` (and x != 0); `y` is
    /// overwritten. A memset and one kernel on the device's stream, no host synchronization
    /// (so the call can be captured in a CUDA graph).
    pub fn forward(
        &self,
        x: &CudaSlice<f32>,
        threshold: f32,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.launch(x, threshold, y, false)
    }

    /// `forward`, also counting the entries kept (synchronizes to read the count).
    pub fn forward_counted(
        &mut self,
        x: &CudaSlice<f32>,
        threshold: f32,
        y: &mut CudaSlice<f32>,
    ) -> Result<usize> {
        self.device
            .cuda_stream()
            .memset_zeros(&mut self.kept)
            .map_err(wrap)?;
        self.launch(x, threshold, y, true)?;
        let v = self
            .device
            .cuda_stream()
            .clone_dtoh(&self.kept)
            .map_err(wrap)?;
        Ok(v[0] as usize)
    }

    fn launch(
        &self,
        x: &CudaSlice<f32>,
        threshold: f32,
        y: &mut CudaSlice<f32>,
        count: bool,
    ) -> Result<()> {
        if x.len() != self.k || y.len() != self.n {
            candle_core::bail!(
                "sparse gemv (CUDA): x of {} (want {}), y of {} (want {})",
                x.len(),
                self.k,
                y.len(),
                self.n
            );
        }
        let stream = self.device.cuda_stream();
        stream.memset_zeros(y).map_err(wrap)?;
        let tile = 32 * per_thread(self.format);
        let tiles = self.n.div_ceil(tile) as u32;
        let groups = self.k.div_ceil(INPUTS_PER_BLOCK) as u32;
        let shared = (WARPS as usize * tile * 4) as u32;
        let cfg = LaunchConfig {
            grid_dim: (tiles, groups, 1),
            block_dim: (32 * WARPS, 1, 1),
            shared_mem_bytes: shared,
        };
        let (k, n) = (self.k as i32, self.n as i32);
        let null = 0u64;
        let mut b = stream.launch_builder(&self.gemv);
        match &self.columns {
            Columns::F32(w) => b.arg(w),
            Columns::F16(w) => b.arg(w),
            Columns::Bf16(w) => b.arg(w),
            Columns::Q8_0 { codes, scales } => b.arg(codes).arg(scales),
        };
        b.arg(x).arg(&threshold).arg(&k).arg(&n).arg(y);
        if count {
            b.arg(&self.kept);
        } else {
            b.arg(&null);
        }
        unsafe { b.launch(cfg) }.map_err(wrap)?;
        Ok(())
    }
}
