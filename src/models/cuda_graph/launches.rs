//! The launch of each kind of kernel of the graph decode step (`cuda.rs`'s `enqueue` queues
//! them): grid, block and shared memory from the projection's kind, and the arguments from its
//! weight's fields and the step's prologue and epilogue.

use super::gemv_choice::{GemvChoice, STREAM_THREADS};
use super::launch::{arg, launch_after_previous};
use super::projection::{GemvArgs, GemvKind, Projection, MLP_THREADS};
use candle_core::cuda_backend::cudarc::driver::{CudaStream, LaunchConfig};
use candle_core::Result;

/// Threads of a gemv block: four warps, each on a pair of rows (or a share of one). Small blocks
/// spread a projection of a few hundred rows over all 132 SMs; each block rebuilds the input
/// vector (a few KB from L2).
const GEMV_THREADS: u32 = 128;
const WARPS_PER_BLOCK: usize = GEMV_THREADS as usize / 32;

// Prologues and epilogues of the gemv kernel (PRO_* and EPI_* in the .cu file).
pub(super) const PRO_PLAIN: i32 = 0;
pub(super) const PRO_NORM: i32 = 1;
pub(super) const PRO_COMBINE: i32 = 2;
pub(super) const PRO_NORM_PENDING: i32 = 3;
pub(super) const EPI_LOGITS: i32 = 0;
pub(super) const EPI_RESIDUAL: i32 = 1;
pub(super) const EPI_SILU: i32 = 2;
pub(super) const EPI_ROPE: i32 = 3;

/// Launches onto the decoder's stream with its kernel choices.
pub(super) struct Launcher<'a> {
    pub(super) stream: &'a CudaStream,
    pub(super) choice: &'a GemvChoice,
}

impl Launcher<'_> {
    /// Launches `p` with a prologue `(kind, input, norm weight)` and an epilogue `(kind, output)`
    /// over `base`'s shape fields.
    pub(super) fn gemv(&self, p: &Projection, base: GemvArgs, prologue: (i32, u64, u64), epilogue: (i32, u64)) -> Result<()> {
        let mut args = launch_args(p, base, prologue, epilogue);
        let a = &p.args;
        let (prologue, epilogue) = (prologue.0, epilogue.0);
        // Two rows a pair: adjacent ones, or the pairs an epilogue combines (n / 2 pairs); each
        // pair on `warps_per_pair` warps.
        let pairs = if epilogue == EPI_SILU || epilogue == EPI_ROPE { a.n as usize / 2 } else { (a.n as usize).div_ceil(2) };
        let (blocks, threads) = match p.kind {
            GemvKind::Warp => ((pairs * a.warps_per_pair as usize).div_ceil(WARPS_PER_BLOCK) as u32, GEMV_THREADS),
            GemvKind::Stream => (self.choice.blocks(pairs, a.stage_rows as usize), STREAM_THREADS),
            GemvKind::FusedMlp { blocks } => (blocks, MLP_THREADS),
        };
        // The split-combine's shared memory after the input vector. Only the warp kernel over
        // dense weights (no scales: a quantized weight's are a device pointer) reads the
        // position early (gemv in llama_decode.cu).
        let dense_warp = p.kind == GemvKind::Warp && a.scales == 0;
        args.combine_early = if dense_warp { base.combine_early } else { 0 };
        let staged = args.combine_early == 2;
        let combine = if prologue == PRO_COMBINE { combine_shared_bytes(base.attn_splits, base.n_head, a.k, staged) } else { 0 };
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: p.shared_bytes + combine };
        launch_after_previous(self.stream, &p.kernel, cfg, &mut [arg(&args)])
    }
}

/// Bytes of the O projection's split-combine in shared memory for `splits` splits of `n_head`
/// heads over `k` inputs: the factors (one f32 per split and head), and with `staged` (the early
/// combine, gemv_input.cuh's combine_staged) after them, padded to 16 bytes, every split's
/// partials (f32[k]) and (max, sum) stats.
pub(super) fn combine_shared_bytes(splits: i32, n_head: i32, k: i32, staged: bool) -> u32 {
    let factors = 4 * (splits * n_head) as u32;
    if !staged {
        return factors;
    }
    factors.next_multiple_of(16) + splits as u32 * (4 * k as u32 + 8 * n_head as u32)
}

/// The arguments of one launch of `p`: its weight's fields, a prologue `(kind, input, norm
/// weight)` and an epilogue `(kind, output)`, over `base`'s shape fields.
fn launch_args(p: &Projection, base: GemvArgs, (prologue, input, norm_w): (i32, u64, u64), (epilogue, out): (i32, u64)) -> GemvArgs {
    let a = &p.args;
    GemvArgs {
        codes: a.codes,
        scales: a.scales,
        zeros: a.zeros,
        n: a.n,
        k: a.k,
        groups: a.groups,
        group_shift: a.group_shift,
        act_block_shift: a.act_block_shift,
        act_il: a.act_il,
        warps_per_pair: a.warps_per_pair,
        stage_rows: a.stage_rows,
        stages: a.stages,
        down: a.down,
        down_early: a.down_early,
        down_stage_rows: a.down_stage_rows,
        input,
        norm_w,
        out,
        prologue,
        epilogue,
        ..base
    }
}
