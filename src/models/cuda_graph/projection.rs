//! One projection of the graph decode step, ready to launch: the gemv kernel chosen for its
//! weight's format and dtype (warp or streaming, `gemv_choice.rs`), and the weight's fields of
//! the kernel arguments, mirrored field for field from `GemvArgs` in
//! `../kernels/llama_decode.cu`.

use super::cuda::{COMBINE_SHARED_BYTES, MAX_GEMV_SHARED_BYTES};
use super::launch::{ptr, wrap};
use super::gemv_choice::{GemvChoice, MlpChoice};
use super::GraphWeight;
use crate::quant::KernelOperands;
use candle_core::cuda_backend::cudarc::driver::{sys, CudaFunction, CudaStream};
use candle_core::{DType, Result, Tensor};
use std::sync::Arc;

/// One gemv launch's parameters, field for field the `GemvArgs` struct of the .cu file
/// (pointers first, then 32-bit fields; passed by value through `cuLaunchKernelEx`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct GemvArgs {
    pub(super) codes: u64,
    pub(super) scales: u64,
    pub(super) zeros: u64,
    pub(super) input: u64,
    pub(super) norm_w: u64,
    pub(super) out: u64,
    pub(super) params: u64,
    pub(super) cos: u64,
    pub(super) sin: u64,
    pub(super) k_cache: u64,
    pub(super) v_cache: u64,
    pub(super) down: u64,
    pub(super) acc: u64,
    pub(super) pending: u64,
    pub(super) resid_out: u64,
    pub(super) trace: u64,
    pub(super) n: i32,
    pub(super) k: i32,
    pub(super) prologue: i32,
    pub(super) epilogue: i32,
    pub(super) groups: i32,
    pub(super) group_shift: i32,
    pub(super) act_block_shift: i32,
    pub(super) act_il: i32,
    pub(super) n_head: i32,
    pub(super) n_kv: i32,
    pub(super) head_dim: i32,
    pub(super) capacity: i32,
    pub(super) interleaved: i32,
    pub(super) attn_splits: i32,
    pub(super) warps_per_pair: i32,
    pub(super) stage_rows: i32,
    pub(super) stages: i32,
    pub(super) down_early: i32,
    pub(super) down_stage_rows: i32,
    pub(super) combine_early: i32,
    pub(super) eps: f32,
}

/// A projection ready to launch: its kernel (format, dtype and loads in flight chosen once) and
/// the weight fields of its arguments.
pub(super) struct Projection {
    pub(super) kernel: CudaFunction,
    pub(super) args: GemvArgs,
    pub(super) shared_bytes: u32,
    pub(super) kind: GemvKind,
    /// A weight copy made for this launch (the fused MLP's transposed down matrix): never read,
    /// held so that it lives as long as `args` holds its address.
    #[allow(dead_code)]
    pub(super) owned: Option<Tensor>,
}

/// Which gemv kernel a projection launches (gemv_stream.cuh says why there are two).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum GemvKind {
    /// `gemv_*_c4/_c8`: a warp a row pair, its loads in registers; a block per 4 pairs.
    Warp,
    /// `gemv_stream_*`: rows streamed through shared memory, about one block a multiprocessor.
    Stream,
    /// `mlp_fused_*`: gate_up, SiLU and the down product in one launch of `blocks` blocks.
    FusedMlp { blocks: u32 },
}

/// Threads of a fused-MLP block (MLP_THREADS in mlp_fused.cuh).
pub(super) const MLP_THREADS: u32 = 256;

/// What every projection of one decoder is built from: the graph's dtype and kernel-name suffix,
/// its stream, the module's kernels by name, and the kernel choices read from the environment.
pub(super) struct Kernels<'a> {
    pub(super) dtype: DType,
    pub(super) suffix: &'a str,
    pub(super) stream: &'a Arc<CudaStream>,
    pub(super) load: &'a dyn Fn(&str) -> Result<CudaFunction>,
    pub(super) choice: &'a GemvChoice,
}

impl Kernels<'_> {
    /// The launch of `y[n] = W[n, k] x[k]` for `w`, or `None` (logged) where no kernel takes it;
    /// `reserved`: shared memory its prologue needs beside the input (the split-combine's).
    pub(super) fn projection(&self, w: &GraphWeight, n: usize, k: usize, reserved: usize) -> Result<Option<Projection>> {
        let Self { dtype, suffix, stream, load, choice } = *self;
        let refuse = |why: String| {
            tracing::debug!("CUDA graph: a {n} x {k} projection is not taken: {why}");
            Ok(None)
        };
        let mut args = GemvArgs { n: n as i32, k: k as i32, ..GemvArgs::default() };
        let (name, chunks, shared) = match w {
            GraphWeight::Dense(t) => {
                if t.dtype() != dtype || t.dims() != [n, k] || !t.is_contiguous() {
                    return refuse(format!("dense weight {:?} {:?}", t.dims(), t.dtype()));
                }
                args.codes = ptr(t, stream)?;
                let per_load = 16 / dtype.size_in_bytes();
                if k % per_load != 0 || args.codes % 16 != 0 {
                    return refuse("rows are not whole 16-byte chunks".into());
                }
                let row_bytes = k * dtype.size_in_bytes();
                if let Some(shape) = choice.stream(row_bytes, reserved) {
                    let kernel = load(&format!("gemv_stream_{suffix}"))?;
                    let most = shape.shared_bytes + reserved;
                    kernel.set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, most as i32).map_err(wrap)?;
                    args.stage_rows = shape.stage_rows as i32;
                    args.stages = shape.stages as i32;
                    return Ok(Some(Projection { kernel, args, shared_bytes: shape.shared_bytes as u32, kind: GemvKind::Stream, owned: None }));
                }
                (format!("gemv_dense_{suffix}"), k / per_load, row_bytes)
            }
            GraphWeight::Int(m) => match quantized(&mut args, m.operands(stream), n, k, dtype) {
                Ok(found) => found,
                Err(why) => return refuse(why),
            },
            GraphWeight::Blocks(m) => match quantized(&mut args, m.operands(stream), n, k, dtype) {
                Ok(found) => found,
                Err(why) => return refuse(why),
            },
        };
        if shared > MAX_GEMV_SHARED_BYTES {
            return refuse(format!("{shared} bytes of shared memory"));
        }
        // One round of loads for a row where registers allow: up to 8 chunks a lane in flight,
        // and rows longer than 32 x 8 chunks split over 2 or 4 warps.
        let warps = chunks.div_ceil(32 * 8).next_power_of_two().min(4);
        args.warps_per_pair = warps as i32;
        let per_lane = chunks.div_ceil(32 * warps);
        let kernel = load(&format!("{name}_{}", loads_variant(per_lane)))?;
        kernel
            .set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (MAX_GEMV_SHARED_BYTES + COMBINE_SHARED_BYTES) as i32)
            .map_err(wrap)?;
        Ok(Some(Projection { kernel, args, shared_bytes: shared as u32, kind: GemvKind::Warp, owned: None }))
    }

    /// The fused launch of a layer's MLP (`../kernels/mlp_fused.cuh`), or `None` (logged) where
    /// it does not apply: weights not dense in the graph's dtype, shapes its blocking cannot
    /// take (intermediate size a multiple of 8, hidden size of 4), slices under a sector.
    pub(super) fn fused_mlp(&self, gate_up: &GraphWeight, down: &GraphWeight, hidden: usize, inter: usize) -> Result<Option<Projection>> {
        let Self { dtype, suffix, stream, load, choice } = *self;
        let (GraphWeight::Dense(gu), GraphWeight::Dense(dn)) = (gate_up, down) else { return Ok(None) };
        let dense_ok = |t: &candle_core::Tensor, dims: [usize; 2]| t.dtype() == dtype && t.dims() == dims && t.is_contiguous();
        if !dense_ok(gu, [2 * inter, hidden]) || !dense_ok(dn, [hidden, inter]) || inter % 8 != 0 || hidden % 4 != 0 {
            tracing::debug!("CUDA graph: the MLP ({hidden} x {inter}) runs as two launches");
            return Ok(None);
        }
        let size = dtype.size_in_bytes();
        let codes = ptr(gu, stream)?;
        if codes % 16 != 0 || ptr(dn, stream)? % 16 != 0 || (hidden * size) % 16 != 0 {
            return Ok(None);
        }
        let transposed = choice.mlp == MlpChoice::Transposed;
        let kernel = load(&format!("mlp_fused_{}{suffix}", if transposed { "t_" } else { "" }))?;
        // Shared memory: the normalised input, then a block's activations (its widest run).
        let groups = inter / 8;
        let shared_for = |blocks: usize| hidden * size + 8 * groups.div_ceil(blocks) * size;
        let fit = allow_shared(&kernel, MLP_THREADS, shared_for(1))?;
        let Some(blocks) = choice.mlp_blocks(groups, fit, size) else {
            tracing::debug!("CUDA graph: the MLP ({hidden} x {inter}) runs as two launches (slices under a sector, or LLMBENCH_CUDA_MLP=split)");
            return Ok(None);
        };
        // [inter][hidden], made only once the launch is decided: each block's slice is then
        // whole contiguous rows (mlp_fused.cuh).
        let owned = if transposed { Some(dn.t()?.contiguous()?) } else { None };
        let down = ptr(owned.as_ref().unwrap_or(dn), stream)?;
        if down % 16 != 0 {
            return Ok(None);
        }
        let down_early = (transposed && choice.mlp_down_early) as i32;
        // LLMBENCH_CUDA_MLP_DOWN=staged: the widest block's down rows after its activations,
        // only where the grid stays one wave with them (else none, said).
        let row_bytes = hidden * size;
        let mut stage_rows = choice.mlp_stage_rows(8 * groups.div_ceil(blocks as usize), row_bytes);
        let mut shared = shared_for(blocks as usize) + stage_rows * row_bytes;
        // A size over the block's limit is refused by the attribute: not staged either.
        if stage_rows > 0 && allow_shared(&kernel, MLP_THREADS, shared).map_or(true, |fit| fit * choice.sms() < blocks) {
            tracing::warn!("LLMBENCH_CUDA_MLP_DOWN=staged: {stage_rows} rows of {row_bytes} bytes would leave {blocks} MLP blocks more than one wave, or exceed a block's shared memory: not staged");
            stage_rows = 0;
            shared = shared_for(blocks as usize);
            allow_shared(&kernel, MLP_THREADS, shared)?;
        }
        let args = GemvArgs { codes, down, down_early, down_stage_rows: stage_rows as i32, n: 2 * inter as i32, k: hidden as i32, ..GemvArgs::default() };
        tracing::debug!("CUDA graph: fused MLP {hidden} x {inter}, {blocks} blocks ({fit} fit a multiprocessor), down transposed: {transposed}, {stage_rows} down rows staged");
        Ok(Some(Projection { kernel, args, shared_bytes: shared as u32, kind: GemvKind::FusedMlp { blocks }, owned }))
    }
}

/// Fills the quantized weight's fields of `args`; the kernel name, 16-byte chunks a row and the
/// shared memory it needs, or why the graph cannot take it.
fn quantized(args: &mut GemvArgs, m: KernelOperands, n: usize, k: usize, dtype: DType) -> std::result::Result<(String, usize, usize), String> {
    if dtype != DType::F32 {
        return Err(format!("quantized weights in a {dtype:?} graph (they take f32 activations)"));
    }
    if (m.n, m.k) != (n, k) || k % 32 != 0 || ![32, 64, 128].contains(&m.act_block) {
        return Err(format!("{:?} matrix {} x {} (activation blocks of {})", m.format, m.n, m.k, m.act_block));
    }
    args.codes = m.codes;
    args.scales = m.scales;
    args.zeros = m.zeros;
    args.act_block_shift = (m.act_block / 32).trailing_zeros() as i32;
    args.act_il = m.act_il as i32;
    if m.group > 0 {
        args.groups = (k / m.group) as i32;
        args.group_shift = (m.group / 32).trailing_zeros() as i32;
    }
    let chunks = match m.format {
        crate::quant::KernelFormat::Q8_0 | crate::quant::KernelFormat::Int8 => k / 16,
        _ => k / 32,
    };
    // The f32 input vector, its codes, block scales and 32-value code sums.
    let shared = 4 * k + k + 8 * (k / 32);
    Ok((format!("gemv_{}_f32", m.format.kernel_name()), chunks, shared))
}

/// The gemv kernel variant for `per_lane` 16-byte chunks a lane: `_c8` (8 loads a lane in flight)
/// where more than 4 are needed, else `_c4` (fewer registers).
fn loads_variant(per_lane: usize) -> &'static str {
    if per_lane > 4 {
        "c8"
    } else {
        "c4"
    }
}

/// Lets `kernel` take `shared` bytes of dynamic shared memory and returns how many of its
/// blocks of `threads` a multiprocessor holds at once with that much.
fn allow_shared(kernel: &CudaFunction, threads: u32, shared: usize) -> Result<u32> {
    kernel.set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared as i32).map_err(wrap)?;
    kernel.occupancy_max_active_blocks_per_multiprocessor(threads, shared, None).map_err(wrap)
}
