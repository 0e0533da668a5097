// An optional timeline of the graph decode step (LLMBENCH_CUDA_TRACE, ../cuda_graph/trace.rs), for
// the launch gaps inside a replayed graph, where nsys cannot look: each launch gets four
// %globaltimer nanosecond stamps in its slot, the first block's start, the first and the last
// block's release from the wait on the previous kernel, and the last block's end (a block that
// leaves before its wait, as the attention's splits past the length do, stamps only its end,
// so the start is the first among the blocks that waited). A null slot
// (the default) records nothing; thread 0 of a block writes, through 64-bit atomics.
#pragma once

// The block's start, kept in shared memory (not a register held through the kernel).
__device__ __forceinline__ unsigned long long& trace_t0() {
  static __shared__ unsigned long long t0;
  return t0;
}

__device__ __forceinline__ void trace_start(unsigned long long* slot) {
  if (slot != nullptr && threadIdx.x == 0) trace_t0() = global_ns();
}

// Right after wait_for_previous().
__device__ __forceinline__ void trace_released(unsigned long long* slot) {
  if (slot != nullptr && threadIdx.x == 0) {
    unsigned long long t = global_ns();
    atomicMin(slot, trace_t0());
    atomicMin(slot + 1, t);
    atomicMax(slot + 2, t);
  }
}

// The block's last instruction; every thread of the block must reach it.
__device__ __forceinline__ void trace_end(unsigned long long* slot) {
  if (slot == nullptr) return;
  __syncthreads();
  if (threadIdx.x == 0) atomicMax(slot + 3, global_ns());
}
