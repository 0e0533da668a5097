// Kernels of the graph-captured Llama decode step (src/models/cuda_graph/cuda.rs): one token, batch
// 1, every buffer preallocated, the position read from device memory so that one captured CUDA
// graph replays at every step. Four launches a layer (results/gpu/NOTES.md says why each):
//
//   gemv (norm prologue, RoPE + cache-store epilogue)      x (+ pending) -> q, and k, v into the cache
//   attn_split (split-K, flash-decoding)                   q, cache -> per-split partial outputs
//   gemv (split-combine prologue, residual epilogue)       partials -> x += o
//   mlp_fused (norm prologue; gate/up, SiLU, down slice)   x -> pending += down(act)  (mlp_fused.cuh)
//
// where the MLP's weights are dense; quantized ones (and LLMBENCH_CUDA_MLP=split) run it as two
// gemvs, (norm prologue, SiLU(gate) * up epilogue) x -> act and (plain, residual) act -> x += down.
// plus the token's embedding row first and the head (norm prologue, logits epilogue) last. Each
// gemv block first issues its weight loads, then builds its input vector in shared memory while
// they are in flight (the normalisation, or the sum over attention splits, recomputed by every
// block: a few KB from L2, against a launch and a round trip through memory per separate kernel),
// quantizing it to 8 bits per block for the quantized formats (../../quant/kernels/block_dot.cuh).
//
// Rounding follows candle's generic path op by op (values are rounded to the weights' dtype T
// wherever candle's ops store T; accumulations in f32), so tokens match it except at near-ties.
// params[0] = token id, params[1] = position (written by the host before each replay).

#include <stdint.h>

#include "ptx.cuh"
#include "block_dot.cuh"
#include "float_ops.cuh"
#include "trace.cuh"

// Elements of T in one 16-byte load.
template <typename T> struct Vec { static constexpr int N = 16 / sizeof(T); };

// Sum (max) over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v, float* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.f;
  return warp_sum(v);
}
__device__ float block_max(float v, float* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

// x = table[token] (block 0), and every layer's MLP accumulator zeroed (all blocks: the fused
// MLP adds its down products into them, mlp_fused.cuh).
template <typename T>
__device__ void embed(const T* table, const int* params, T* x, int h, float4* accs, int acc4, unsigned long long* trace) {
  trace_start(trace);
  wait_for_previous();
  release_next();
  trace_released(trace);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < acc4; i += gridDim.x * blockDim.x) accs[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  if (blockIdx.x == 0) {
    const T* row = table + (size_t)params[0] * h;
    for (int i = threadIdx.x; i < h; i += blockDim.x) x[i] = row[i];
  }
  trace_end(trace);
}

#define PRO_PLAIN 0
#define PRO_NORM 1
#define PRO_COMBINE 2
#define PRO_NORM_PENDING 3
#define EPI_LOGITS 0
#define EPI_RESIDUAL 1
#define EPI_SILU 2
#define EPI_ROPE 3
// Positions per attention split: one per thread of the split kernels.
#define SPLIT 256

// One gemv launch (mirrored by GemvArgs in cuda.rs; pointers first, then 32-bit fields).
struct GemvArgs {
  const uint4* codes;   // weight rows (dense T, or a quantized format's codes)
  const void* scales;   // quantized formats: see block_dot.cuh
  const uint8_t* zeros;  // int4
  const void* in;       // PLAIN: T[k]; NORM: the residual stream T[k]; COMBINE: attn_split's partials
  const void* norm_w;   // NORM: T[k]
  void* out;            // LOGITS: f32[n]; RESIDUAL: the residual stream T[n], added to; SILU: T[n/2]; ROPE: q T
  const int* params;
  const void* cos;      // ROPE: T [positions][head_dim / 2]
  const void* sin;
  void* k_cache;        // ROPE: T [n_kv][capacity][head_dim]
  void* v_cache;
  const uint4* down;    // MLP: the down projection T [k][n / 2], or transposed [n / 2][k] (mlp_fused_t)
  float* acc;           // MLP: f32 [k], its down products added to (zeroed by embed each step)
  const float* pending; // NORM_PENDING: the previous layer's MLP accumulator, f32 [k]
  void* resid_out;      // NORM_PENDING: the residual stream x + pending, T [k], written (or null)
  unsigned long long* trace;  // this launch's timeline slot (trace.cuh), or null
  int n, k, prologue, epilogue;
  int groups, group_shift;        // int4
  int act_block_shift, act_il;    // activation quantization: block = 32 << shift; int4's interleave
  int n_head, n_kv, head_dim, capacity, interleaved;
  int attn_splits;                // COMBINE: splits the partials are laid out for
  int warps_per_pair;             // 1, 2 or 4 warps share a row pair's chunks (long rows)
  int stage_rows;                 // gemv_stream: rows a shared-memory stage holds (2, 4 or 8)
  int stages;                     // gemv_stream: stages of its ring (2 to 16)
  int down_early;                 // mlp_fused_t: phase 2's first loads as phase 1 ends (mlp_fused.cuh)
  int down_stage_rows;            // mlp_fused_t: at most this many of a block's down rows staged in shared memory
  int combine_early;              // COMBINE: 0 after the wait, 1 before it, 2 before it and staged (combine_position)
  float eps;
};

// COMBINE's position, read before the launch's wait where combine_early is set (-1 otherwise: the
// prologue reads it after). It is the host's, copied before the replay, never written by a
// launch of the step (the attention reads it before its wait too), so no wait guards it. Where
// it is 2, the launch's shared memory also holds the staged combine's partials and stats after
// the factors (launches.rs's combine_shared_bytes).
__device__ __forceinline__ int combine_position(const GemvArgs& a) {
  return a.prologue == PRO_COMBINE && a.combine_early ? a.params[1] : -1;
}
// Floats of the split-combine's factors (one per split and head), rounded up to whole 16-byte
// chunks so that the stage after them is aligned for the async copy.
__device__ __forceinline__ int combine_factors_padded(const GemvArgs& a) {
  return (a.attn_splits * (a.k / a.head_dim) + 3) & ~3;
}

// The two output rows of warp `pair`: adjacent rows, or the pairs an epilogue combines (gate row
// i with up row i; the two halves of a RoPE rotation). -1 past the matrix.
__device__ __forceinline__ void rows_of(const GemvArgs& a, int pair, int& r0, int& r1, int& aux) {
  r0 = r1 = -1;
  aux = 0;
  if (a.epilogue == EPI_SILU) {
    int inter = a.n >> 1;
    if (pair < inter) r0 = pair, r1 = inter + pair;
  } else if (a.epilogue == EPI_ROPE) {
    int half = a.head_dim >> 1;
    if (pair < (a.n >> 1)) {
      int head = pair / half, i = pair - head * half;
      r0 = head * a.head_dim + (a.interleaved ? 2 * i : i);
      r1 = head * a.head_dim + (a.interleaved ? 2 * i + 1 : i + half);
      aux = i;
    }
  } else {
    if (2 * pair < a.n) r0 = 2 * pair;
    if (2 * pair + 1 < a.n) r1 = 2 * pair + 1;
  }
}

#include "gemv_input.cuh"

// Dense rows of T against the T input vector in shared memory.
template <typename T> struct Dense {
  struct Chunk { uint4 v; };
  static __device__ __forceinline__ int chunks(int k) { return k / Vec<T>::N; }
  static __device__ __forceinline__ Chunk load(const QMatrix& m, int row, int c) {
    return {load_streaming(m.codes + (size_t)row * m.chunks + c)};
  }
  static __device__ __forceinline__ float dot(const Chunk& w, const T* xs, int c) {
    uint4 xraw = reinterpret_cast<const uint4*>(xs)[c];
    const T* x = reinterpret_cast<const T*>(&xraw);
    const T* wv = reinterpret_cast<const T*>(&w.v);
    float acc = 0.f;
#pragma unroll
    for (int i = 0; i < Vec<T>::N; ++i) acc += to_f(wv[i]) * to_f(x[i]);
    return acc;
  }
  static __device__ __forceinline__ float finish(const QMatrix&, int, float v) { return v; }
};

// What an epilogue reads besides the two rows' values: the residual stream at r0, r1
// (EPI_RESIDUAL) or the position's cos and sin (EPI_ROPE). Loaded by the thread that applies the
// epilogue as soon as the previous kernel is done, so that the epilogue does not wait for them.
template <typename T> struct EpiAux {
  float res0, res1;
  T c, s;
};
template <typename T>
__device__ __forceinline__ EpiAux<T> load_aux(const GemvArgs& a, int r0, int r1, int aux) {
  EpiAux<T> e{0.f, 0.f, from_f<T>(0.f), from_f<T>(0.f)};
  if (r0 < 0) return e;
  if (a.epilogue == EPI_RESIDUAL) {
    const T* x = static_cast<const T*>(a.out);
    e.res0 = to_f(x[r0]);
    if (r1 >= 0) e.res1 = to_f(x[r1]);
  } else if (a.epilogue == EPI_ROPE) {
    size_t at = (size_t)a.params[1] * (a.head_dim >> 1) + aux;
    e.c = static_cast<const T*>(a.cos)[at];
    e.s = static_cast<const T*>(a.sin)[at];
  }
  return e;
}

// The epilogue of two rows (one thread), with their aux values from load_aux.
template <typename T>
__device__ void epilogue(const GemvArgs& a, int r0, int r1, int aux, float v0, float v1, const EpiAux<T>& e) {
  float res0 = e.res0, res1 = e.res1;
  switch (a.epilogue) {
    case EPI_LOGITS: {  // candle: logits stored in T, then cast to f32
      float* out = static_cast<float*>(a.out);
      if (r0 >= 0) out[r0] = round_t<T>(v0);
      if (r1 >= 0) out[r1] = round_t<T>(v1);
      break;
    }
    case EPI_RESIDUAL: {  // x = round(x + round(y))
      T* x = static_cast<T*>(a.out);
      if (r0 >= 0) x[r0] = from_f<T>(res0 + round_t<T>(v0));
      if (r1 >= 0) x[r1] = from_f<T>(res1 + round_t<T>(v1));
      break;
    }
    case EPI_SILU: {  // candle: silu kernel on the stored gate, then mul by the stored up
      float g = round_t<T>(v0), u = round_t<T>(v1);
      float s = round_t<T>(g / (1.f + expf(-g)));
      static_cast<T*>(a.out)[r0] = from_f<T>(s * u);
      break;
    }
    case EPI_ROPE: {  // candle's rope / rope_i arithmetic in T; k rotated and v stored into the cache
      int pos = a.params[1];
      int head = r0 / a.head_dim, i1 = r0 - head * a.head_dim, i2 = r1 - head * a.head_dim;
      T x1 = from_f<T>(v0), x2 = from_f<T>(v1);
      T c = e.c, s = e.s;
      if (head < a.n_head) {
        T* q = static_cast<T*>(a.out) + head * a.head_dim;
        q[i1] = x1 * c - x2 * s;
        q[i2] = x1 * s + x2 * c;
      } else if (head < a.n_head + a.n_kv) {
        size_t at = ((size_t)(head - a.n_head) * a.capacity + pos) * a.head_dim;
        T* kc = static_cast<T*>(a.k_cache) + at;
        kc[i1] = x1 * c - x2 * s;
        kc[i2] = x1 * s + x2 * c;
      } else {
        size_t at = ((size_t)(head - a.n_head - a.n_kv) * a.capacity + pos) * a.head_dim;
        T* vc = static_cast<T*>(a.v_cache) + at;
        vc[i1] = x1;
        vc[i2] = x2;
      }
      break;
    }
  }
}

// y = W x with a prologue and an epilogue. A row pair (rows_of) is computed by W = 1, 2 or 4
// warps (warps_per_pair: long rows are split over more warps, so that one round of loads
// covers them; ncu showed 5,632-value rows at 36% of the DRAM peak with one warp a pair); lane
// L of sub-warp w reads the 16-byte chunks (w * 32 + L) + 32 * W * i, CPL of them at a time, all
// issued before any is used, the first round before the prologue so that it overlaps the
// weights' round trip. Shared memory: the input vector T[k], then (quantized formats, T = f32)
// its codes i8[k], block scales f32[k / 32] and code sums i32[k / 32], then the split-combine's
// factors (O projection).
template <typename T, int FMT, int CPL, typename F>
__device__ void gemv(const GemvArgs& a) {
  extern __shared__ __align__(16) unsigned char smem[];
  static __shared__ float partial[2][8];
  T* xs = reinterpret_cast<T*>(smem);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int W = a.warps_per_pair, sub = warp % W;
  int pair = (blockIdx.x * (blockDim.x >> 5) + warp) / W;
  int r0, r1, aux;
  rows_of(a, pair, r0, r1, aux);
  QMatrix m{a.codes, a.scales, a.zeros, F::chunks(a.k), a.groups, a.group_shift};
  int first = sub * 32 + lane, stride = 32 * W;
  typename F::Chunk w[CPL][2];
  auto issue = [&](int c0) {
#pragma unroll
    for (int i = 0; i < CPL; ++i) {
      int c = c0 + first + stride * i;
      w[i][0] = c < m.chunks && r0 >= 0 ? F::load(m, r0, c) : typename F::Chunk{};
      w[i][1] = c < m.chunks && r1 >= 0 ? F::load(m, r1, c) : typename F::Chunk{};
    }
  };
  trace_start(a.trace);
  issue(0);
  // Dense weights only: compiled into the quantized kernels, the early combine spilled (int4 c4)
  // or took more registers (c8: 160 -> 162), and their O projections are not where a token's
  // time goes (ptxas -v; the dense kernels stayed at 128 and 80).
  const int pos = FMT == FMT_DENSE ? combine_position(a) : -1;
  wait_for_previous();
  release_next();
  trace_released(a.trace);
  EpiAux<T> e{};
  if (lane == 0 && sub == 0) e = load_aux<T>(a, r0, r1, aux);
  size_t layout = (size_t)a.k * sizeof(T) + (FMT != FMT_DENSE ? (size_t)a.k + 8 * (size_t)(a.k >> 5) : 0);
  build_input<T>(a, xs, reinterpret_cast<float*>(smem + layout), pos);
  __syncthreads();
  QAct act{};
  if constexpr (FMT != FMT_DENSE) {
    int8_t* qs = reinterpret_cast<int8_t*>(smem + (size_t)a.k * sizeof(T));
    float* d = reinterpret_cast<float*>(qs + a.k);
    int* sums = reinterpret_cast<int*>(d + (a.k >> 5));
    quantize_input(reinterpret_cast<const float*>(xs), qs, d, sums, a.k, a.act_block_shift, a.act_il);
    __syncthreads();
    act = QAct{qs, d, sums, a.act_il, a.act_block_shift};
  }
  float acc0 = 0.f, acc1 = 0.f;
  for (int c0 = 0; c0 < m.chunks; c0 += stride * CPL) {
    if (c0 > 0) issue(c0);
#pragma unroll
    for (int i = 0; i < CPL; ++i) {
      int c = c0 + first + stride * i;
      if (c < m.chunks) {
        if constexpr (FMT == FMT_DENSE) {
          acc0 += F::dot(w[i][0], xs, c);
          acc1 += F::dot(w[i][1], xs, c);
        } else {
          acc0 += F::dot(w[i][0], act, c);
          acc1 += F::dot(w[i][1], act, c);
        }
      }
    }
  }
  acc0 = warp_sum(acc0);
  acc1 = warp_sum(acc1);
  if (W > 1) {
    if (lane == 0) partial[0][warp] = acc0, partial[1][warp] = acc1;
    __syncthreads();
    if (lane == 0 && sub == 0) {
      for (int j = 1; j < W; ++j) acc0 += partial[0][warp + j], acc1 += partial[1][warp + j];
    }
  }
  if (lane == 0 && sub == 0 && r0 >= 0) {
    float v0 = F::finish(m, r0, acc0);
    float v1 = r1 >= 0 ? F::finish(m, r1, acc1) : 0.f;
    epilogue<T>(a, r0, r1, aux, v0, v1, e);
  }
  trace_end(a.trace);
}

#include "decode_attention.cuh"
#include "gemv_stream.cuh"
#include "mlp_fused.cuh"

// The greedy next token, captured after the head so that a greedy step reads 4 bytes instead
// of the logits: the first index of the largest logit (torch.argmax's rule, and the host
// sampler's; candle's CUDA argmax breaks ties by thread, not by index). One block: each thread
// keeps its first largest over its 4-value runs, then (value, index) pairs meet, the larger value or,
// at equal values, the smaller index winning. NaN logits are never picked (nor by the host's
// loop, unless the first logit is NaN); where every logit is NaN or -inf, index 0.
// `params` (or null): the step's own, rewritten for the next step, the pick fed at the next
// position, so that a step can be queued before this one's token reaches the host (cuda.rs's
// lookahead). Safe here: every earlier launch of the step has ended before this one's wait
// returns (each waited on the one before), so none still reads them.
// `host_picks` (or null): two page-locked host words; the pick also goes to word `pos & 1`
// (pos: this step's, from `params`), where the host reads it once the step's event has passed,
// with no copy queued between two steps (LLMBENCH_CUDA_REPLAY=direct, cuda.rs). A step queued
// ahead writes the other word.
#define ARGMAX_THREADS 1024
#define ARGMAX_BATCH 8
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS) argmax_f32(const float* logits, int n, unsigned* token,
                                                                          int* params, unsigned* host_picks,
                                                                          unsigned long long* trace) {
  static __shared__ float best_of[ARGMAX_THREADS / 32];
  static __shared__ int at_of[ARGMAX_THREADS / 32];
  trace_start(trace);
  wait_for_previous();
  release_next();
  trace_released(trace);
  float best = -INFINITY;
  int at = n;  // none yet
  // 16-byte loads, ARGMAX_BATCH of them a thread in flight before any is compared: a loop of
  // one 4-byte load at a time paid a round trip to L2 per 1,024 logits (the trace: 10 us for
  // TinyLlama's 32,000, 16 us for SmolLM2's 49,152). A thread's indices only grow, so a strict
  // `>` keeps its first maximum; the merges below break ties by index.
  auto take = [&](float v, int i) {
    if (v > best) best = v, at = i;
  };
  const float4* quads = reinterpret_cast<const float4*>(logits);  // logits: a device allocation, 16-byte aligned
  int n4 = n / 4;
  for (int base = threadIdx.x; base < n4; base += ARGMAX_BATCH * blockDim.x) {
    float4 v[ARGMAX_BATCH];
#pragma unroll
    for (int j = 0; j < ARGMAX_BATCH; ++j) {
      int c = base + j * blockDim.x;
      v[j] = c < n4 ? quads[c] : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
    }
#pragma unroll
    for (int j = 0; j < ARGMAX_BATCH; ++j) {
      int i = 4 * (base + j * blockDim.x);
      take(v[j].x, i), take(v[j].y, i + 1), take(v[j].z, i + 2), take(v[j].w, i + 3);
    }
  }
  for (int i = 4 * n4 + threadIdx.x; i < n; i += blockDim.x) take(logits[i], i);  // the last n % 4
  auto merge = [&](float v, int i) {
    if (v > best || (v == best && i < at)) best = v, at = i;
  };
  for (int off = 16; off > 0; off >>= 1) {
    float v = __shfl_xor_sync(0xffffffffu, best, off);
    int i = __shfl_xor_sync(0xffffffffu, at, off);
    merge(v, i);
  }
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) best_of[warp] = best, at_of[warp] = at;
  __syncthreads();
  if (warp == 0) {
    int warps = blockDim.x >> 5;
    best = lane < warps ? best_of[lane] : -INFINITY;
    at = lane < warps ? at_of[lane] : n;
    for (int off = 16; off > 0; off >>= 1) {
      float v = __shfl_xor_sync(0xffffffffu, best, off);
      int i = __shfl_xor_sync(0xffffffffu, at, off);
      merge(v, i);
    }
    if (lane == 0) {
      unsigned pick = at < n ? (unsigned)at : 0u;
      *token = pick;
      if (params != nullptr) {
        if (host_picks != nullptr) host_picks[params[1] & 1] = pick;
        params[0] = (int)pick, params[1] += 1;
      }
    }
  }
  trace_end(trace);
}

#define GEMV_KERNEL(NAME, T, FMT, F)                                                                              \
  extern "C" __global__ void __launch_bounds__(128) NAME##_c4(const GemvArgs a) { gemv<T, FMT, 4, F>(a); }       \
  extern "C" __global__ void __launch_bounds__(128) NAME##_c8(const GemvArgs a) { gemv<T, FMT, 8, F>(a); }

#define DECODE_KERNELS(T, S)                                                                                   \
  extern "C" __global__ void embed_##S(const T* table, const int* params, T* x, int h, float4* accs, int acc4, \
                                       unsigned long long* trace) {                                            \
    embed<T>(table, params, x, h, accs, acc4, trace);                                                          \
  }                                                                                                            \
  extern "C" __global__ void attn_split_##S(const T* q, const T* k_cache, const T* v_cache, const int* params, \
                                            float* acc, int n_head, int n_kv, int d, int capacity,             \
                                            float inv_sqrt_d, int max_splits, int early,                       \
                                            unsigned long long* trace) {                                       \
    attn_split<T>(q, k_cache, v_cache, params, acc, n_head, n_kv, d, capacity, inv_sqrt_d, max_splits, early,  \
                  trace);                                                                                      \
  }                                                                                                            \
  GEMV_KERNEL(gemv_dense_##S, T, FMT_DENSE, Dense<T>)                                                          \
  extern "C" __global__ void __launch_bounds__(STREAM_THREADS) gemv_stream_##S(const GemvArgs a) {             \
    gemv_stream<T>(a);                                                                                         \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(MLP_THREADS, MLP_BLOCKS_PER_SM) mlp_fused_##S(const GemvArgs a) {   \
    mlp_fused<T, false>(a);                                                                                   \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(MLP_THREADS, MLP_BLOCKS_PER_SM) mlp_fused_t_##S(const GemvArgs a) { \
    mlp_fused<T, true>(a);                                                                                    \
  }

DECODE_KERNELS(float, f32)
DECODE_KERNELS(__half, f16)
DECODE_KERNELS(__nv_bfloat16, bf16)

// Quantized weights: the graph computes in f32 (their activations are quantized from f32).
GEMV_KERNEL(gemv_q8_0_f32, float, FMT_Q8_0, Format<FMT_Q8_0>)
GEMV_KERNEL(gemv_q4_0_f32, float, FMT_Q4_0, Format<FMT_Q4_0>)
GEMV_KERNEL(gemv_q4_1_f32, float, FMT_Q4_1, Format<FMT_Q4_1>)
GEMV_KERNEL(gemv_int8_f32, float, FMT_INT8, Format<FMT_INT8>)
GEMV_KERNEL(gemv_int4_f32, float, FMT_INT4, Format<FMT_INT4>)
