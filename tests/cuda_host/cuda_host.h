// The CUDA of the decode-step kernels (src/models/kernels/llama_decode.cu and what it includes),
// emulated on the CPU, so that CI, which has no GPU, runs the kernels themselves: their indexing,
// blocking, barriers and warp shuffles, against a reference (decode_kernels.cpp).
// GPU time is scarce (one device call is worth a session), and a kernel that indexes one row
// wrong is found here in seconds.
//
// The model: blocks run one after another (no kernel's blocks wait for each other: the
// experiments whose blocks did, through grid-wide counters, ran each block in a forked process
// here until they were measured slower and removed, results/gpu/NOTES.md session 8). A block's threads are fibers run one at a time by a scheduler: a fiber runs until
// it reaches a barrier (__syncthreads, __syncwarp, each warp shuffle's exchange); the scheduler
// releases a warp once all its threads are at the warp barrier and the block once all live
// threads are at __syncthreads, and stops the block with a message where a barrier can never
// complete (threads of one warp at different barriers) or a warp barrier is reached with some
// of its lanes exited, instead of hanging. So that code relying on one warp order (a read that
// a missing barrier lets race with another warp's write) fails here as on a GPU, the scheduler
// runs each pass's warps in a random order, holds a ready warp back at random, and between two
// block barriers keeps one warp (at random) back until no other can go on, so that the others
// run ahead through their warp-level steps (seeded: a run is reproducible).
//
// What it cannot show: timing, the GPU's weak memory ordering (x86 stores are seen in order; a
// missing fence is not caught here), the streaming loads' cache behaviour, a bulk copy still in
// flight (copies complete at once here), and a read of a static shared array before its first
// write in a block (it sees the last block's values, not garbage; the dynamic shared memory is
// refilled with garbage for each block). rsqrtf is exact here and approximate on the GPU:
// results agree to f32 rounding, not bit for bit.
#pragma once
#define LLMBENCH_HOST_EMULATION 1

#include <setjmp.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <unordered_set>
#include <vector>

// ---- CUDA's declaration specifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Block-scope shared arrays are declared `static __shared__` in the kernels: a static local here,
// shared by the blocks, which run one after another.
#define __shared__

// ---- vector types ----
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
using std::max;
using std::min;
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline int __dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i) c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
  return c;
}

// ---- 16-bit floats: the bits of CUDA's types, arithmetic rounded once per operation as sm_90's
// bf16/f16 instructions round ----
struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  uint32_t u = (uint32_t)h.bits << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return {0x7fc0};
  u += 0x7fff + ((u >> 16) & 1);
  return {(uint16_t)(u >> 16)};
}
inline __nv_bfloat16 operator*(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16(__bfloat162float(a) * __bfloat162float(b)); }
inline __nv_bfloat16 operator+(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16(__bfloat162float(a) + __bfloat162float(b)); }
inline __nv_bfloat16 operator-(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16(__bfloat162float(a) - __bfloat162float(b)); }

struct __half {
  uint16_t bits;
};
struct __half2 {
  __half x, y;
};
inline float __half2float(__half h) {
  _Float16 f;
  std::memcpy(&f, &h.bits, 2);
  return (float)f;
}
inline __half __float2half(float f) {
  _Float16 h = (_Float16)f;
  __half r;
  std::memcpy(&r.bits, &h, 2);
  return r;
}
inline float2 __half22float2(__half2 h) { return {__half2float(h.x), __half2float(h.y)}; }
inline __half operator*(__half a, __half b) { return __float2half(__half2float(a) * __half2float(b)); }
inline __half operator+(__half a, __half b) { return __float2half(__half2float(a) + __half2float(b)); }
inline __half operator-(__half a, __half b) { return __float2half(__half2float(a) - __half2float(b)); }

// ---- threads: fibers of one block ----
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
// Held: past a barrier, not yet let run again (the scheduler lets warps go in a random order).
enum class At { Running, Warp, Block, Held, Done };
// A fiber starts through makecontext/setcontext on its own stack and then switches with
// _setjmp/_longjmp, which, unlike swapcontext, make no system call (swapcontext saves the
// signal mask on every switch: most of the emulator's time went there).
struct Fiber {
  jmp_buf buf;
  ucontext_t start;
  At at = At::Running;
  bool started = false;
};
constexpr size_t STACK_BYTES = 64 * 1024;
inline jmp_buf scheduler;
inline std::vector<Fiber> fibers;
inline char* stacks = nullptr;  // 1,024 stacks with a guard page each, mapped once a process
inline uint64_t order_state = 0;  // the scheduler's random order (seeded per block)
inline int current = 0;
inline std::function<void()> kernel_body;
// A warp shuffle's exchange slots, one per thread.
inline uint64_t exchange[1024];

inline void yield_at(At at) {
  fibers[current].at = at;
  if (_setjmp(fibers[current].buf) == 0) _longjmp(scheduler, 1);
}

inline void fiber_main() {
  kernel_body();
  fibers[current].at = At::Done;
  _longjmp(scheduler, 1);
}

[[noreturn]] inline void stop(const char* why) {
  std::fprintf(stderr, "block (%u, %u) thread %u: %s\n", blockIdx.x, blockIdx.y, threadIdx.x, why);
  std::fflush(stderr);
  _exit(3);
}

inline uint32_t random_below(uint32_t n) {
  order_state = order_state * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)((order_state >> 33) % n);
}

inline void resume(unsigned t) {
  current = (int)t;
  threadIdx = dim3{t, 0, 0};
  if (_setjmp(scheduler) != 0) return;
  Fiber& f = fibers[t];
  if (f.started) _longjmp(f.buf, 1);
  f.started = true;
  setcontext(&f.start);
}

// Runs one block's threads to completion (see the file's head for the barrier rules).
inline void run_block(unsigned threads) {
  if (stacks == nullptr) {
    void* p = mmap(nullptr, 1024 * STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) stop("cannot map fiber stacks");
    stacks = static_cast<char*>(p);
    // The lowest page of each stack faults: an overflow stops the block instead of writing
    // into the next fiber's stack.
    for (int t = 0; t < 1024; ++t) mprotect(stacks + t * STACK_BYTES, 4096, PROT_NONE);
  }
  const unsigned warps = (threads + 31) / 32;
  int laggard = (int)random_below(warps);
  std::vector<unsigned> order(warps);
  for (unsigned w = 0; w < warps; ++w) order[w] = w;
  fibers.assign(threads, Fiber{});
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = fibers[t];
    getcontext(&f.start);
    f.start.uc_stack.ss_sp = stacks + t * STACK_BYTES + 4096;
    f.start.uc_stack.ss_size = STACK_BYTES - 4096;
    f.start.uc_link = nullptr;
    makecontext(&f.start, fiber_main, 0);
  }
  for (;;) {
    bool ran = true;
    while (ran) {
      ran = false;
      // Warps in a random order (lanes in order: a warp's lanes run together on the GPU).
      for (unsigned i = warps; i > 1; --i) std::swap(order[i - 1], order[random_below(i)]);
      for (unsigned w : order)
        for (unsigned t = 32 * w; t < std::min(threads, 32 * w + 32); ++t) {
          if (fibers[t].at != At::Running) continue;
          resume(t);
          ran = true;
        }
    }
    // Warps free to go on: every lane at the warp barrier, or every live lane held past the
    // block barrier. Each goes now or (at random, while another goes) waits another round.
    std::vector<unsigned> ready;
    for (unsigned w = 0; w * 32 < threads; ++w) {
      int waiting = 0, held = 0, done = 0, lanes = (int)std::min(32u, threads - 32 * w);
      for (unsigned t = 32 * w; t < std::min(threads, 32 * w + 32); ++t) {
        waiting += fibers[t].at == At::Warp;
        held += fibers[t].at == At::Held;
        done += fibers[t].at == At::Done;
      }
      if (waiting > 0 && done > 0 && waiting + done == lanes) {
        std::fprintf(stderr, "block (%u, %u): warp %u reaches a warp barrier with %d of its lanes exited\n", blockIdx.x, blockIdx.y, w, done);
        _exit(4);
      }
      if (waiting == lanes || (held > 0 && held + done == lanes)) ready.push_back(w);
    }
    // The laggard (a warp picked at each block barrier) goes only when no other warp can: every
    // other warp runs ahead to the next block barrier first, as far as a missing barrier lets it.
    if (ready.size() > 1) ready.erase(std::remove(ready.begin(), ready.end(), (unsigned)laggard), ready.end());
    if (!ready.empty()) {
      unsigned keep = ready.size() > 1 ? random_below((uint32_t)ready.size()) : 0;  // at least one goes
      for (unsigned i = 0; i < ready.size(); ++i) {
        if (i != keep && random_below(2) == 0) continue;
        for (unsigned t = 32 * ready[i]; t < std::min(threads, 32 * ready[i] + 32); ++t)
          if (fibers[t].at != At::Done) fibers[t].at = At::Running;
      }
      continue;
    }
    bool live = false, block = true;
    for (auto& f : fibers) {
      if (f.at == At::Done) continue;
      live = true;
      block = block && f.at == At::Block;
    }
    if (!live) return;
    if (!block) {
      std::fprintf(stderr, "block (%u, %u): threads wait at barriers that cannot complete:", blockIdx.x, blockIdx.y);
      for (unsigned t = 0; t < threads; ++t) std::fprintf(stderr, " %u:%d", t, (int)fibers[t].at);
      std::fprintf(stderr, "\n");
      _exit(4);
    }
    for (auto& f : fibers)
      if (f.at == At::Block) f.at = At::Held;
    laggard = (int)random_below(warps);
  }
}
}  // namespace emu

inline void __syncthreads() { emu::yield_at(emu::At::Block); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::yield_at(emu::At::Warp); }
template <typename V>
inline V __shfl_xor_sync(unsigned, V v, int mask) {
  static_assert(sizeof(V) <= 8, "one exchange slot a thread");
  std::memcpy(&emu::exchange[threadIdx.x], &v, sizeof v);
  __syncwarp();
  V r;
  std::memcpy(&r, &emu::exchange[(threadIdx.x & ~31u) | ((threadIdx.x & 31u) ^ (unsigned)mask)], sizeof r);
  __syncwarp();  // nobody overwrites a slot before its reader is done
  return r;
}

// ---- atomics on device memory ----
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  unsigned long long old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) {
  unsigned long long old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (v > old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
inline void atomic_add_float(float* p, float v) {
  float old, sum;
  __atomic_load(p, &old, __ATOMIC_SEQ_CST);
  do {
    sum = old + v;
  } while (!__atomic_compare_exchange(p, &old, &sum, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
}

// ---- src/models/kernels/ptx.cuh and block_dot.cuh's load_streaming, for the host ----
// Launches run one after another here, so a load before the wait would always see the previous
// launch's writes, which on the GPU it may not (programmatic dependent launch). A test names
// what the previous launch wrote (emu::Unpublished): every block of the next launch starts with
// those bytes set to NaN, and they come back once all its threads are at the wait, so a kernel
// that reads them before its wait and does not read them again after it computes with NaN.
// L1, for the loads that name it (ld_cached): a 128-byte line that any block of the launch
// loaded before its wait may still be in an L1 after it, with the old bytes, so a later
// ld_cached of that line returns them (NaN where they were hidden); __ldcg reads memory (L2).
// Strict: on the GPU only blocks of the same multiprocessor share an L1.
namespace emu {
struct Unpublished {
  std::vector<std::pair<unsigned char*, std::vector<unsigned char>>> ranges;  // where, the real bytes
  void add(void* at, size_t bytes) {
    unsigned char* p = static_cast<unsigned char*>(at);
    ranges.emplace_back(p, std::vector<unsigned char>(p, p + bytes));
  }
  void hide() const {
    for (auto& [p, real] : ranges) std::memset(p, 0xff, real.size());  // NaN in f32, f16 and bf16
  }
  void show() const {
    for (auto& [p, real] : ranges) std::memcpy(p, real.data(), real.size());
  }
};
inline const Unpublished* unpublished = nullptr;
inline bool block_waited = false;                  // the running block is past its wait
inline std::unordered_set<uintptr_t> lines_before_wait;  // 128-byte lines ld_cached read before a wait, this launch
}  // namespace emu
inline void wait_for_previous() {
  if (emu::unpublished == nullptr) return;
  __syncthreads();
  if (threadIdx.x == 0) {
    emu::unpublished->show();
    emu::block_waited = true;
  }
  __syncthreads();
}
inline uint4 ld_cached(const uint4* p) {
  uint4 v = *p;
  if (emu::unpublished == nullptr) return v;
  uintptr_t line = reinterpret_cast<uintptr_t>(p) / 128;  // 16-byte aligned: one line
  auto& lines = emu::lines_before_wait;
  if (!emu::block_waited) {
    lines.insert(line);
    return v;
  }
  if (!lines.count(line)) return v;
  // The line as L1 may hold it: the hidden bytes still NaN.
  const unsigned char* from = reinterpret_cast<const unsigned char*>(p);
  unsigned char* bytes = reinterpret_cast<unsigned char*>(&v);
  for (auto& [at, real] : emu::unpublished->ranges)
    for (int i = 0; i < 16; ++i)
      if (from + i >= at && from + i < at + real.size()) bytes[i] = 0xff;
  return v;
}
inline void release_next() {}
inline unsigned long long global_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}
inline void red_add_v4(float* acc, const float* v) {
  for (int i = 0; i < 4; ++i) atomic_add_float(acc + i, v[i]);
}
inline uint4 load_streaming(const uint4* p) { return *p; }
inline uint4 __ldcg(const uint4* p) { return *p; }
// mbarriers: pending arrivals in bits 0-15, the arrival count in 16-31, pending bytes in 32-62,
// the phase in bit 63. Bulk copies count at once here, so a barrier's phase ends as soon as its
// expected arrival and bytes are in; their bytes (read from the source when issued) land in
// shared memory only when a thread waits on their barrier, so a kernel that reads a stage
// without waiting reads the garbage each block starts with. A copy past the launch's dynamic
// shared memory, or a barrier expecting more than the hardware's 2^20 - 1 bytes, stops the run.
inline void mbar_complete_if_done(uint64_t* bar) {
  uint64_t b = *bar;
  if ((b & 0xffff) == 0 && ((b >> 32) & 0x7fffffff) == 0) {
    uint64_t count = (b >> 16) & 0xffff;
    *bar = ((b ^ (1ull << 63)) & (1ull << 63)) | (count << 16) | count;
  }
}
inline void mbar_init(uint64_t* bar, int count) { *bar = ((uint64_t)count << 16) | (uint64_t)count; }
inline void fence_mbar_init() {}
namespace emu {
struct PendingBulk {
  uint64_t* bar;
  void* dst;
  std::vector<unsigned char> bytes;
};
inline std::vector<PendingBulk> pending_bulk;  // this block's, cleared as each block starts
inline size_t launch_shared = 0;                // the running launch's dynamic shared bytes
}  // namespace emu
extern unsigned char smem[];  // the dynamic shared memory (below)
inline void mbar_expect(uint64_t* bar, uint32_t bytes) {
  *bar = *bar - 1 + ((uint64_t)bytes << 32);
  if (((*bar >> 32) & 0x7fffffff) > 0xfffff) emu::stop("an mbarrier expects more than 2^20 - 1 bytes");
  mbar_complete_if_done(bar);
}
inline void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  unsigned char* d = static_cast<unsigned char*>(dst);
  if (d < smem || d + bytes > smem + emu::launch_shared) emu::stop("a bulk copy past the launch's dynamic shared memory");
  const unsigned char* s = static_cast<const unsigned char*>(src);
  emu::pending_bulk.push_back({bar, dst, std::vector<unsigned char>(s, s + bytes)});
  *bar -= (uint64_t)bytes << 32;
  mbar_complete_if_done(bar);
}
// cp.async: the source is read when a copy is issued (so one issued before the wait copies the
// hidden NaN) and lands in shared memory at the thread's copy_async_wait, so a kernel that reads
// the shared bytes before its wait (or, through a barrier, before every thread's) reads the
// garbage each block starts with.
namespace emu {
struct PendingCopy {
  void* dst;
  unsigned char bytes[16];
  size_t size;
};
inline std::vector<PendingCopy> pending_copies[1024];  // by threadIdx.x
inline void copy_async(void* dst, const void* src, size_t size) {
  PendingCopy c{dst, {}, size};
  std::memcpy(c.bytes, src, size);
  pending_copies[threadIdx.x].push_back(c);
}
}  // namespace emu
inline void copy_async16(void* dst, const void* src) { emu::copy_async(dst, src, 16); }
inline void copy_async8(void* dst, const void* src) { emu::copy_async(dst, src, 8); }
inline void copy_async_wait() {
  for (auto& c : emu::pending_copies[threadIdx.x]) std::memcpy(c.dst, c.bytes, c.size);
  emu::pending_copies[threadIdx.x].clear();
}
// try_wait.parity P succeeds once the phase of parity P has completed: the current phase bit
// differs from P.
inline void mbar_wait(uint64_t* bar, uint32_t parity) {
  auto& pending = emu::pending_bulk;
  for (auto it = pending.begin(); it != pending.end();) {
    if (it->bar != bar) {
      ++it;
      continue;
    }
    std::memcpy(it->dst, it->bytes.data(), it->bytes.size());
    it = pending.erase(it);
  }
  for (long spins = 0; (*bar >> 63) == parity; ++spins) {
    if (spins > 1000000) emu::stop("mbarrier wait never completed");
    emu::yield_at(emu::At::Running);
  }
}

// ---- device memory and launches ----
// CUDA's dynamic shared memory: every `extern __shared__ unsigned char smem[]` of the kernels is
// this array (defined by the including program), refilled with garbage for each block.
extern unsigned char smem[];
#define EMU_SHARED_BYTES (227 * 1024)

namespace emu {
// Device memory: one arena, zeroed as it is handed out.
struct Arena {
  unsigned char* base = nullptr;
  size_t used = 0, size = 0;
};
inline Arena arena;
// The scheduler's seed (EMU_SEED in decode_kernels.cpp; a run with one seed is reproducible).
inline uint64_t seed = 1;

template <typename T>
T* device_alloc(size_t n) {
  if (arena.base == nullptr) {
    arena.size = size_t(1) << 30;
    void* p = mmap(nullptr, arena.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("mmap");
      std::exit(2);
    }
    arena.base = static_cast<unsigned char*>(p);
  }
  size_t bytes = (n * sizeof(T) + 255) & ~size_t(255);
  if (arena.used + bytes > arena.size) {
    std::fprintf(stderr, "device arena exhausted\n");
    std::exit(2);
  }
  T* p = reinterpret_cast<T*>(arena.base + arena.used);
  arena.used += bytes;
  std::memset(p, 0, bytes);
  return p;
}
inline void device_reset() { arena.used = 0; }

// Launches `body` (one call of the kernel, run by every thread) over `grid` x `block` threads
// with `shared` bytes of dynamic shared memory: the blocks one after another, shared memory
// refilled with garbage for each. False, with a message, if the launch is not valid; a block
// stopped at a barrier that cannot complete ends the program with its message.
inline bool launch(const char* name, dim3 grid, dim3 block, size_t shared, std::function<void()> body) {
  if (shared > EMU_SHARED_BYTES || block.x > 1024 || block.x % 32 != 0) {
    std::fprintf(stderr, "%s: launch of %u threads, %zu shared bytes is not valid\n", name, block.x, shared);
    return false;
  }
  unsigned blocks = grid.x * grid.y;
  lines_before_wait.clear();
  kernel_body = std::move(body);
  blockDim = block;
  gridDim = grid;
  static uint64_t launches = 0;
  ++launches;
  auto enter = [&](unsigned b) {
    blockIdx = dim3{b % grid.x, b / grid.x, 0};
    order_state = seed ^ (launches << 20) ^ b;
    std::memset(smem, 0xcd, shared);
    launch_shared = shared;
    pending_bulk.clear();
    if (unpublished != nullptr) {
      unpublished->hide();
      block_waited = false;
    }
    run_block(block.x);
  };
  for (unsigned b = 0; b < blocks; ++b) enter(b);
  return true;
}
}  // namespace emu
