// Included by llama_decode.cu after gemv, mlp_fused.cuh and grid_arrivals.cuh.

// The O projection with the layer's MLP after it, one launch instead of two (LLMBENCH_CUDA_O=mlp;
// an experiment not yet measured, NOTES 2026-12-05 session 5). Why: the fused MLP's launch, which
// removed one kernel boundary a layer, gained 9-11% on TinyLlama although the kernel alone was
// slower than the two it replaced: boundaries (the last wave's tail, the next grid's ramp) cost
// more than their launches. Here the MLP's grid also runs the O projection: blocks 0 .. o_blocks
// - 1 first compute its row pairs (the warp gemv, 8 warps a block: the split-combine of the
// attention's partials in, the residual add out) and count themselves done; then every block
// issues its first gate/up loads, waits for all O blocks (grid_arrivals.cuh), and runs the
// fused MLP, whose norm reads the residual stream the O blocks completed. The host launches it
// only where the whole grid is resident at once and has at least o_blocks blocks.
// `o`: the O projection's arguments (its trace slot is the launch's); `m`: the MLP's. O's row
// pairs may be split over o.warps_per_pair warps (the host picks the most its grid holds, so
// that O's work spreads over as many of the grid's blocks as it can).
template <typename T, int CPL, bool DOWN_T>
__device__ void o_mlp(const GemvArgs& o, const GemvArgs& m) {
  int warps = blockDim.x >> 5;
  int o_blocks = (((o.n + 1) / 2) * o.warps_per_pair + warps - 1) / warps;
  bool o_block = (int)blockIdx.x < o_blocks;
  if (o_block) {
    gemv<T, FMT_DENSE, CPL, Dense<T>, true>(o);
    arrive(o.arrivals);
  }
  // The other blocks go straight to the MLP: their first gate/up loads are issued before they
  // wait for the previous kernel, and they stamp the launch's trace slot there.
  mlp_fused<T, DOWN_T>(m, o_block ? nullptr : o.trace, [&] { wait_for_arrivals(o.arrivals, o_blocks); });
  trace_end(o.trace);
}

#define O_MLP_KERNEL(T, NAME, CPL, DOWN_T)                                                                   \
  extern "C" __global__ void __launch_bounds__(MLP_THREADS, MLP_BLOCKS_PER_SM) NAME(const GemvArgs o,  \
                                                                                    const GemvArgs m) { \
    o_mlp<T, CPL, DOWN_T>(o, m);                                                                       \
  }
#define O_MLP_KERNELS(T, S)                  \
  O_MLP_KERNEL(T, o_mlp_##S##_c4, 4, false)  \
  O_MLP_KERNEL(T, o_mlp_##S##_c8, 8, false)  \
  O_MLP_KERNEL(T, o_mlp_t_##S##_c4, 4, true) \
  O_MLP_KERNEL(T, o_mlp_t_##S##_c8, 8, true)
