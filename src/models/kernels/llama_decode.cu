// Kernels of the graph-captured Llama decode step (src/models/cuda_graph/cuda.rs): one token, batch
// 1, every buffer preallocated, the position read from device memory so that one captured CUDA
// graph replays at every step. Rounding follows candle's generic path op by op (values are
// rounded to the weights' dtype T wherever candle's ops store T), so greedy tokens match it
// except at near-ties; accumulations are in f32 as in candle's and cuBLAS's kernels.
//
// params[0] = token id, params[1] = position (written by the host before each replay).

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
// Rounds an f32 value to T and back: where candle stores an intermediate in T.
template <typename T> __device__ __forceinline__ float round_t(float x) { return to_f(from_f<T>(x)); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffff, v, m);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, m));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// block_max below is the same with max: kept as two plain functions, as run on the H100.
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

// x = table[token]
template <typename T>
__device__ void embed(const T* table, const int* params, T* x, int h) {
  const T* row = table + (size_t)params[0] * h;
  for (int i = threadIdx.x; i < h; i += blockDim.x) x[i] = row[i];
}

// If delta: x = round(x + delta) (candle's residual add in T). Then out = rmsnorm(x) * w, as
// candle's rms_norm kernel: f32 sum of squares, one rounding at the end. Each thread keeps its
// NORM_MAX_PER_THREAD values in registers between the two passes (h <= that * blockDim).
#define NORM_MAX_PER_THREAD 16
template <typename T>
__device__ void add_rmsnorm(T* x, const T* delta, const T* w, T* out, int h, float eps) {
  __shared__ float scratch[32];
  float vals[NORM_MAX_PER_THREAD];
  float ss = 0.f;
#pragma unroll
  for (int r = 0; r < NORM_MAX_PER_THREAD; ++r) {
    int i = threadIdx.x + r * blockDim.x;
    float v = 0.f;
    if (i < h) {
      v = to_f(x[i]);
      if (delta) {
        v = round_t<T>(v + to_f(delta[i]));
        x[i] = from_f<T>(v);
      }
    }
    vals[r] = v;
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  float scale = rsqrtf(ss / h + eps);
#pragma unroll
  for (int r = 0; r < NORM_MAX_PER_THREAD; ++r) {
    int i = threadIdx.x + r * blockDim.x;
    if (i < h) out[i] = from_f<T>(scale * vals[r] * to_f(w[i]));
  }
}

// Rotates q and k of this position (candle's rope / rope_i arithmetic, in T) and stores k and v
// into the preallocated cache `[kv_heads, capacity, d]` at the position. Grid: one block per
// head (query heads first, then key/value heads); d/2 threads.
template <typename T>
__device__ void rope_store(const T* qkv, const T* cos, const T* sin, const int* params, T* q_out, T* k_cache,
                           T* v_cache, int n_head, int n_kv, int d, int capacity, int interleaved) {
  int pos = params[1];
  int head = blockIdx.x;
  int pairs = d / 2;
  const T* cs = cos + (size_t)pos * pairs;
  const T* sn = sin + (size_t)pos * pairs;
  for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
    int i1 = interleaved ? 2 * i : i;
    int i2 = interleaved ? 2 * i + 1 : i + pairs;
    T c = cs[i], s = sn[i];
    if (head < n_head) {
      const T* src = qkv + head * d;
      T* dst = q_out + head * d;
      T a = src[i1], b = src[i2];
      dst[i1] = a * c - b * s;
      dst[i2] = a * s + b * c;
    } else {
      int kvh = head - n_head;
      const T* k = qkv + n_head * d + kvh * d;
      const T* v = qkv + (n_head + n_kv) * d + kvh * d;
      size_t at = ((size_t)kvh * capacity + pos) * d;
      T a = k[i1], b = k[i2];
      k_cache[at + i1] = a * c - b * s;
      k_cache[at + i2] = a * s + b * c;
      v_cache[at + i1] = v[i1];
      v_cache[at + i2] = v[i2];
    }
  }
}

// Elements of T in one 16-byte load.
template <typename T> struct Vec { static constexpr int N = 16 / sizeof(T); };

// One query head per block over positions 0..=pos of its key/value head (grouped-query:
// query head h reads kv head h / (n_head / n_kv)). Loads are 16 bytes wide and independent so
// that many are in flight: scores with one position per thread, values with (position group,
// 16-byte chunk) per thread and a sum over groups at the end. Dynamic shared memory holds
// max(capacity, blockDim * Vec<T>::N) floats (scores, then partial sums). Rounding as
// candle's path: q.k rounded to T, times 1/sqrt(d) in T, softmax in f32, probabilities
// rounded to T, f32 accumulation over values, output in T.
template <typename T>
__device__ void attention(const T* q, const T* k_cache, const T* v_cache, const int* params, T* out, int n_head,
                          int n_kv, int d, int capacity, float inv_sqrt_d) {
  constexpr int V = Vec<T>::N;
  extern __shared__ float smem[];
  __shared__ float scratch[32];
  __shared__ float qs[256];
  int len = params[1] + 1;
  int head = blockIdx.x;
  int kvh = head / (n_head / n_kv);
  const T* K = k_cache + (size_t)kvh * capacity * d;
  const T* Vals = v_cache + (size_t)kvh * capacity * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) qs[j] = to_f(q[head * d + j]);
  __syncthreads();
  int chunks = d / V;
#pragma unroll 2
  for (int p = threadIdx.x; p < len; p += blockDim.x) {
    const uint4* row = reinterpret_cast<const uint4*>(K + (size_t)p * d);
    float acc = 0.f;
    for (int c = 0; c < chunks; ++c) {
      uint4 raw = row[c];
      const T* kv = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int i = 0; i < V; ++i) acc += qs[c * V + i] * to_f(kv[i]);
    }
    smem[p] = round_t<T>(round_t<T>(acc) * inv_sqrt_d);
  }
  __syncthreads();
  float m = -INFINITY;
  for (int p = threadIdx.x; p < len; p += blockDim.x) m = fmaxf(m, smem[p]);
  m = block_max(m, scratch);
  float sum = 0.f;
  for (int p = threadIdx.x; p < len; p += blockDim.x) {
    float e = expf(smem[p] - m);
    smem[p] = e;
    sum += e;
  }
  sum = block_sum(sum, scratch);
  float inv = 1.f / sum;
  for (int p = threadIdx.x; p < len; p += blockDim.x) smem[p] = round_t<T>(smem[p] * inv);
  __syncthreads();
  int groups = blockDim.x / chunks;
  int c = threadIdx.x % chunks, g = threadIdx.x / chunks;
  float acc[V];
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = 0.f;
#pragma unroll 4
  for (int p = g; p < len; p += groups) {
    uint4 raw = reinterpret_cast<const uint4*>(Vals + (size_t)p * d)[c];
    const T* vv = reinterpret_cast<const T*>(&raw);
    float w = smem[p];
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] += w * to_f(vv[i]);
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < V; ++i) smem[g * d + c * V + i] = acc[i];
  __syncthreads();
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float total = 0.f;
    for (int gg = 0; gg < groups; ++gg) total += smem[gg * d + j];
    out[head * d + j] = from_f<T>(total);
  }
}

// y[n] = W[n, k] x[k] for a row-major W, batch 1: each warp computes GEMV_ROWS rows with
// 16-byte loads (k a multiple of Vec<T>::N, rows 16-byte aligned: the host checks), f32
// accumulation, one rounding to T. cuBLAS's kernels for one column ran at a fraction of the
// bandwidth on these shapes (see results/gpu/NOTES.md).
#define GEMV_ROWS 2
template <typename T>
__device__ void gemv(const T* W, const T* x, T* y, int n, int k) {
  constexpr int V = Vec<T>::N;
  int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
  int row0 = warp * GEMV_ROWS;
  if (row0 >= n) return;
  float acc[GEMV_ROWS];
#pragma unroll
  for (int r = 0; r < GEMV_ROWS; ++r) acc[r] = 0.f;
  int chunks = k / V;
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  for (int c = lane; c < chunks; c += 32) {
    uint4 xraw = xv[c];
    const T* xs = reinterpret_cast<const T*>(&xraw);
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; ++r) {
      if (row0 + r < n) {
        uint4 wraw = reinterpret_cast<const uint4*>(W + (size_t)(row0 + r) * k)[c];
        const T* ws = reinterpret_cast<const T*>(&wraw);
#pragma unroll
        for (int i = 0; i < V; ++i) acc[r] += to_f(ws[i]) * to_f(xs[i]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < GEMV_ROWS; ++r) {
    float v = warp_sum(acc[r]);
    if (lane == 0 && row0 + r < n) y[row0 + r] = from_f<T>(v);
  }
}

// out = round(round(silu(gate)) * up), gate_up = [gate | up] (candle: silu kernel, then mul).
template <typename T>
__device__ void silu_mul(const T* gate_up, T* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float g = to_f(gate_up[i]);
  float s = round_t<T>(g / (1.f + expf(-g)));
  out[i] = from_f<T>(s * to_f(gate_up[n + i]));
}

template <typename T>
__device__ void to_f32(const T* in, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = to_f(in[i]);
}

#define DECODE_KERNELS(T, S)                                                                                   \
  extern "C" __global__ void embed_##S(const T* table, const int* params, T* x, int h) {                       \
    embed<T>(table, params, x, h);                                                                             \
  }                                                                                                            \
  extern "C" __global__ void add_rmsnorm_##S(T* x, const T* delta, const T* w, T* out, int h, float eps) {     \
    add_rmsnorm<T>(x, delta, w, out, h, eps);                                                                  \
  }                                                                                                            \
  extern "C" __global__ void rope_store_##S(const T* qkv, const T* cos, const T* sin, const int* params,       \
                                            T* q_out, T* k_cache, T* v_cache, int n_head, int n_kv, int d,     \
                                            int capacity, int interleaved) {                                   \
    rope_store<T>(qkv, cos, sin, params, q_out, k_cache, v_cache, n_head, n_kv, d, capacity, interleaved);     \
  }                                                                                                            \
  extern "C" __global__ void attention_##S(const T* q, const T* k_cache, const T* v_cache, const int* params,  \
                                           T* out, int n_head, int n_kv, int d, int capacity, float inv_sqrt_d) { \
    attention<T>(q, k_cache, v_cache, params, out, n_head, n_kv, d, capacity, inv_sqrt_d);                     \
  }                                                                                                            \
  extern "C" __global__ void gemv_##S(const T* W, const T* x, T* y, int n, int k) { gemv<T>(W, x, y, n, k); }      \
  extern "C" __global__ void silu_mul_##S(const T* gate_up, T* out, int n) { silu_mul<T>(gate_up, out, n); }    \
  extern "C" __global__ void to_f32_##S(const T* in, float* out, int n) { to_f32<T>(in, out, n); }

DECODE_KERNELS(float, f32)
DECODE_KERNELS(__half, f16)
DECODE_KERNELS(__nv_bfloat16, bf16)
