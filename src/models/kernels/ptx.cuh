// Every inline-PTX instruction of the decode-step kernels (included first by llama_decode.cu),
// one wrapper each, so that the rest is plain CUDA C++. The CPU emulator of these kernels
// (tests/cuda_host/) defines LLMBENCH_HOST_EMULATION and supplies host versions of the same
// functions; nothing else of the kernels differs between the two builds.
#pragma once
#include <stdint.h>

#ifndef LLMBENCH_HOST_EMULATION

// Programmatic dependent launch (every kernel after the first is launched with it): a kernel
// may start while the one before it finishes, does what reads no earlier output (a gemv issues
// its weight loads), then waits for the previous grid's completion and memory. Each block lets the
// next kernel launch once it is past its wait, so the next grid's blocks arrive with this grid's
// last wave, never ahead of it.
__device__ __forceinline__ void wait_for_previous() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void release_next() { asm volatile("griddepcontrol.launch_dependents;" :::); }

// A plain (L1-cached) 16-byte load of data another launch may write: a function of its own so
// that the CPU emulator can model L1, where a line loaded before a wait may serve its old bytes
// after it (decode_attention.cuh's cache loads; __ldcg reads L2).
__device__ __forceinline__ uint4 ld_cached(const uint4* p) { return *p; }

// The GPU's nanosecond clock (trace.cuh's stamps).
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// acc[0..4) += v[0..4): one 16-byte reduction in L2 (sm_90; mlp_fused.cuh).
__device__ __forceinline__ void red_add_v4(float* acc, const float* v) {
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(acc), "f"(v[0]), "f"(v[1]), "f"(v[2]), "f"(v[3]) : "memory");
}

// The streaming gemv's stages (gemv_stream.cuh): mbarriers in shared memory, completed by the
// bulk copy engine's byte counts.
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// Makes the initialised barriers visible to the copy engine.
__device__ __forceinline__ void fence_mbar_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
// One arrival that also expects `bytes` from the copies that complete on this barrier.
__device__ __forceinline__ void mbar_expect(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}
// `bytes` global -> shared by the bulk copy engine (sm_90), completing on `bar`.
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(bar))
               : "memory");
}

// Global -> shared without registers (sm_80's cp.async; the O projection's staged split-combine,
// gemv_input.cuh): 16 bytes through L2, or 8; a thread's copies land by its copy_async_wait.
__device__ __forceinline__ void copy_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void copy_async8(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void copy_async_wait() { asm volatile("cp.async.wait_all;" ::: "memory"); }

#endif  // LLMBENCH_HOST_EMULATION
