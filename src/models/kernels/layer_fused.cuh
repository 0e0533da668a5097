// Included by llama_decode.cu after gemv, decode_attention.cuh, mlp_fused.cuh and
// grid_arrivals.cuh.

// A whole decoder layer in one launch (LLMBENCH_CUDA_LAYER=fused; an experiment not yet
// measured, NOTES 2026-12-05 session 6): the QKV projection, the attention, the O projection and
// the fused MLP, as phases of one grid that wait for each other through arrival counters
// (grid_arrivals.cuh), instead of the 2-4 launches of the other settings. Why: each kernel
// boundary removed so far was worth more than its launch (the fused MLP: +9-11% with a slower
// kernel; NOTES session 4), and the boundaries left with QKV-with-attention and O-in-MLP are
// one a layer; this removes it, leaving one launch a layer.
//
// The grid is the fused MLP's (one wave, every block resident: the host checks). Phases, each
// block in turn:
//   QKV        every block (its warps' row pairs; blocks past QKV's rows only build the input
//              and write their share of the residual stream), then counts itself on done[0]
//   attention  blocks 0 .. n_head x splits - 1: wait for every block on done[0], one (head,
//              split) each, count on done[1]
//   O          blocks 0 .. o_blocks - 1: issue their first weight loads, wait for the
//              attention on done[1], the warp gemv (split-combine in, residual add out), count
//              on done[2]
//   MLP        every block: issue its first gate/up loads, wait for O on done[2], the fused MLP
// A block's next phase starts its weight loads before it waits, so the waits overlap DRAM
// round trips as the programmatic launch does between kernels.
// `q`: the QKV projection's arguments (its trace slot is the launch's, its arrivals the
// layer's three counters), CPL its loads a lane in flight; `o`: O's (warps a pair chosen by the
// host; 4 loads a lane in flight whatever its rows: with QKV's 8, the c8 variants spilled, and the
// host spreads O's rows over as many warps as the grid holds); ptxas: the bf16 kernels without
// spills, the transposed ones 180-240 bytes (down_transposed's 8 rows in flight);
// `m`: the MLP's.
static_assert(MLP_THREADS == SPLIT, "the attention phase takes a block of SPLIT threads");
template <typename T, int CPL, bool DOWN_T>
__device__ void layer_fused(const GemvArgs& q, const GemvArgs& o, const GemvArgs& m) {
  int warps = blockDim.x >> 5;
  int* done = q.arrivals;
  gemv<T, FMT_DENSE, CPL, Dense<T>, true>(q);
  arrive(done);
  int attn_blocks = q.n_head * ((q.params[1] + SPLIT) / SPLIT);  // splits over positions 0 .. params[1]
  if ((int)blockIdx.x < attn_blocks) {
    wait_for_arrivals(done, gridDim.x);
    attn_split_at<T>(static_cast<const T*>(q.out), static_cast<const T*>(q.k_cache), static_cast<const T*>(q.v_cache), q.params,
                     q.attn_out, q.n_head, q.n_kv, q.head_dim, q.capacity, q.inv_sqrt_d, q.attn_splits, blockIdx.x % q.n_head,
                     blockIdx.x / q.n_head);
    arrive(done + 1);
  }
  int o_blocks = (((o.n + 1) / 2) * o.warps_per_pair + warps - 1) / warps;
  if ((int)blockIdx.x < o_blocks) {
    gemv<T, FMT_DENSE, 4, Dense<T>, true>(o, [&] { wait_for_arrivals(done + 1, attn_blocks); });
    arrive(done + 2);
  }
  mlp_fused<T, DOWN_T>(m, nullptr, [&] { wait_for_arrivals(done + 2, o_blocks); });
  trace_end(q.trace);
}

#define LAYER_KERNEL(T, NAME, CPL, DOWN_T)                                                                    \
  extern "C" __global__ void __launch_bounds__(MLP_THREADS, MLP_BLOCKS_PER_SM) NAME(                         \
      const GemvArgs q, const GemvArgs o, const GemvArgs m) {                                              \
    layer_fused<T, CPL, DOWN_T>(q, o, m);                                                                 \
  }
#define LAYER_KERNELS(T, S)                   \
  LAYER_KERNEL(T, layer_##S##_c4, 4, false)   \
  LAYER_KERNEL(T, layer_##S##_c8, 8, false)   \
  LAYER_KERNEL(T, layer_t_##S##_c4, 4, true)  \
  LAYER_KERNEL(T, layer_t_##S##_c8, 8, true)
