// Blocks of one grid waiting for other blocks of the same grid (included by llama_decode.cu): the
// fused launches that run a second kernel's work as their tail (qkv_attention.cuh, o_mlp.cuh).
// A block counts itself done once its stores are made: a barrier, then thread 0 fences and adds
// one (cooperative groups' grid-sync pattern: one fence a block, cumulative over the block's
// stores through the barrier). A waiting block polls with relaxed loads (an acquire load on every
// poll compiles to an L1 invalidation each time, wiping the lines the multiprocessor's other
// blocks hold) and fences once after the loop, which invalidates its L1 before it reads the
// others' stores. A waiting block must never hold the place of one it waits for: the host
// launches these kernels only where the whole grid is resident at once. Should it not be after
// all (another process on the GPU, MPS limits), the wait gives up after ARRIVAL_SPIN_NS and
// traps: the step fails with a launch error instead of hanging.
#pragma once

#define ARRIVAL_SPIN_NS 200000000ull

// Every thread of the block calls it, after its last store that other blocks will read.
__device__ __forceinline__ void arrive(int* counter) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(counter, 1);
  }
}

// Every thread of the block calls it; returns once `expected` blocks have arrived, their stores
// visible to the whole block.
__device__ __forceinline__ void wait_for_arrivals(const int* counter, int expected) {
  if (threadIdx.x == 0) {
    unsigned long long deadline = global_ns() + ARRIVAL_SPIN_NS;
    while (load_relaxed(counter) < expected) {
      if (global_ns() > deadline) __trap();
      __nanosleep(64);
    }
    fence_acq_rel_gpu();
  }
  __syncthreads();
}
