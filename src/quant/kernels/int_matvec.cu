// Our int8 / int4 weight formats on CUDA (src/quant/int_cuda.rs launches these): the same
// arithmetic as the AVX2 kernels in ../int_matmul.rs, so one scalar reference
// (int_matmul::matmul_reference) checks both. Each activation row is first quantized to 8 bits
// per block (d = max|x| / 127, q = round(x / d), llama.cpp's q8 scheme), then every weight row
// meets it in integer dot products (dp4a: four byte products a cycle) and the scales enter once
// per 32 values. Weight-only f32 arithmetic would spend ~4 instructions a weight (unpack, convert,
// subtract the zero point, FMA): about as long as reading the int4 weights at 4 TB/s takes; dp4a
// needs about 0.7, so the kernel stays bound by memory.
//
// Layouts (../int_weights.rs): int8 codes [n][k] i8 with f32 scales [n]; int4 codes GPTQ-packed
// along k (value 8w+j in bits 4j..4j+4 of word w), f16 scales and u8 zero points stored four rows
// at a time ([n/4][groups][4], so four rows' parameters are one load). Activation codes of int4
// are stored per `il` values (32 or 64) with the even-indexed ones first, so the low nibbles of
// a 16-byte weight load (even values) and its high nibbles (odd values) each meet 16 contiguous
// activation bytes: no shuffles.

#include <cuda_fp16.h>
#include <stdint.h>

#include "block_dot.cuh"

__device__ __forceinline__ float warp_max(float v) {
  for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, m));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffff, v, m);
  return v;
}
__device__ __forceinline__ int warp_sum_i(int v) {
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffff, v, m);
  return v;
}

// One warp per activation block of `block` values (32, 64 or 128) of row blockIdx.y:
// qs[row][k] (interleaved per `il` values when il > 0), d[row][k / block] and the code sums of
// every 32 consecutive inputs, sums32[row][k / 32] (an int4 chunk's zero-point term). The
// f32 operations are the CPU's (QuantizedRows::fill_blocks), so the codes are equal bit for bit.
extern "C" __global__ void quantize_q8(const float* x, int8_t* qs, float* d, int* sums32, int k, int block, int il) {
  int row = blockIdx.y, b = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (b * block >= k) return;
  const float* xb = x + (size_t)row * k + (size_t)b * block;
  int per = block >> 5;
  float v[4];
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[i] = i < per ? xb[lane + 32 * i] : 0.f;
    amax = fmaxf(amax, fabsf(v[i]));
  }
  amax = warp_max(amax);
  float dd = amax / 127.0f;
  float id = dd > 0.f ? 1.0f / dd : 0.f;
  int8_t* out = qs + (size_t)row * k + (size_t)b * block;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (i >= per) break;
    int j = lane + 32 * i;
    int q = (int)roundf(__fmul_rn(v[i], id));
    int at = j;
    if (il > 0) {
      int p = j % il;
      at = (j - p) + ((p & 1) ? (il >> 1) : 0) + (p >> 1);
    }
    out[at] = (int8_t)q;
    int s = warp_sum_i(q);
    if (lane == 0) sums32[(size_t)row * (k >> 5) + b * per + i] = s;
  }
  if (lane == 0) d[(size_t)row * (k / block) + b] = dd;
}

// y[row][c] for R consecutive weight rows per warp, activation row blockIdx.y; lane L takes the
// 16-byte chunks L, L + 32, ... of the rows, CPL of them at a time, with their scales: all CPL x R
// loads are issued before any is used. A matrix-vector product this small is bound by how many
// bytes are in flight, not by the bus: one load per lane at a time left 2048 x 5632 at 40% of the
// bandwidth that 5632 x 2048 reached (results/quantize-h200/NOTES.md). The per-chunk arithmetic is
// block_dot.cuh's, shared with the fused decode step.
template <int FMT, int R, int CPL>
__device__ void int_rows(const uint4* __restrict__ w, const void* __restrict__ scales, const uint8_t* __restrict__ zeros,
                         const int8_t* __restrict__ qs, const float* __restrict__ d, const int* __restrict__ sums32,
                         float* __restrict__ y, int n, int k, int group, int il) {
  using F = Format<FMT>;
  int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
  int row0 = warp * R;
  if (row0 >= n) return;
  int block = FMT == FMT_INT4 ? group : 32;
  int block_shift = __ffs(block >> 5) - 1;
  size_t row = blockIdx.y;
  QMatrix m{w, scales, zeros, F::chunks(k), FMT == FMT_INT4 ? k / group : 0, block_shift};
  QAct act{qs + row * k, d + row * (k / block), sums32 + row * (k >> 5), il, block_shift};
  y += row * n;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  for (int c0 = 0; c0 < m.chunks; c0 += 32 * CPL) {
    typename F::Chunk wv[CPL][R];
#pragma unroll
    for (int i = 0; i < CPL; ++i) {
      int c = c0 + lane + 32 * i;
#pragma unroll
      for (int r = 0; r < R; ++r) wv[i][r] = c < m.chunks && row0 + r < n ? F::load(m, row0 + r, c) : typename F::Chunk{};
    }
#pragma unroll
    for (int i = 0; i < CPL; ++i) {
      int c = c0 + lane + 32 * i;
      if (c >= m.chunks) break;
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] += F::dot(wv[i][r], act, c);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float v = warp_sum(acc[r]);
    if (lane == 0 && row0 + r < n) y[row0 + r] = F::finish(m, row0 + r, v);
  }
}

// Variants: R rows a warp times CPL chunks a lane in flight, R x CPL <= 8 (registers); the host
// picks CPL from the row length (int_cuda.rs).
#define INT_KERNELS(R, CPL)                                                                                              \
  extern "C" __global__ void int4_matvec_r##R##_c##CPL(const uint4* w, const __half* scales, const uint8_t* zeros,       \
                                                       const int8_t* qs, const float* d, const int* sums32, float* y,    \
                                                       int n, int k, int group, int il) {                                \
    int_rows<FMT_INT4, R, CPL>(w, scales, zeros, qs, d, sums32, y, n, k, group, il);                                              \
  }                                                                                                                       \
  extern "C" __global__ void int8_matvec_r##R##_c##CPL(const uint4* w, const float* scales, const int8_t* qs,            \
                                                       const float* d, float* y, int n, int k) {                          \
    int_rows<FMT_INT8, R, CPL>(w, scales, nullptr, qs, d, nullptr, y, n, k, 32, 0);                                                                        \
  }

INT_KERNELS(1, 1)
INT_KERNELS(1, 2)
INT_KERNELS(1, 4)
INT_KERNELS(1, 8)
INT_KERNELS(2, 1)
INT_KERNELS(2, 2)
INT_KERNELS(2, 4)
INT_KERNELS(4, 1)
INT_KERNELS(4, 2)

// The weights as f32 [n][k] (prefill: cuBLAS then multiplies), one thread per 8 values.
extern "C" __global__ void int4_dequantize(const uint32_t* w, const __half* scales, const uint8_t* zeros, float* out, int n,
                                           int k, int group) {
  size_t word = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  size_t words = (size_t)n * (k >> 3);
  if (word >= words) return;
  int r = (int)(word / (k >> 3)), j0 = (int)(word % (k >> 3)) * 8;
  int groups = k / group, g = j0 / group;
  int p = ((r >> 2) * groups + g) * 4 + (r & 3);
  float s = __half2float(scales[p]);
  int z = zeros[p];
  uint32_t v = w[word];
  float* o = out + (size_t)r * k + j0;
#pragma unroll
  for (int j = 0; j < 8; ++j) o[j] = (float)((int)((v >> (4 * j)) & 15u) - z) * s;
}

extern "C" __global__ void int8_dequantize(const int8_t* w, const float* scales, float* out, int n, int k) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)n * k) return;
  out[i] = (float)w[i] * scales[i / k];
}

// The benchmark's bandwidth reference (benches/int_matvec_cuda.rs): an SM copy, 16 bytes a
// thread per step, the way the matvec kernels read (a memcpy node in a graph ran on the copy
// engines at 2.7 TB/s, well under what kernels reach).
extern "C" __global__ void copy_u4(const uint4* src, uint4* dst, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) dst[i] = src[i];
}
