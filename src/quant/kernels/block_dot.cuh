// Per-format dot products of one 16-byte weight chunk against 8-bit activations: the inner loop of
// every quantized matrix-vector kernel on CUDA (int_matvec.cu, and the fused decode step in
// src/models/kernels/llama_decode.cu, which includes this file). Knows no architecture.
//
// The arithmetic is the CPU kernels' (../cpu_matmul.rs for the GGUF formats, llama.cpp's
// vec_dot_q4_0_q8_0 / q4_1_q8_1 / q8_0_q8_0 scheme; ../int_matmul.rs for ours): the activation
// vector is quantized to 8 bits per block (d = max|x| / 127, q = round(x / d)), integer dot
// products run in dp4a, and the scales enter once per block. Sums run in another order than on
// the CPU, so results agree to f32 rounding, not bit for bit.
//
// Weight layouts on the device (16-byte rows of chunks, so a lane reads a chunk in one load):
//   GGUF Q8_0: codes [n][k] i8, scales [n][k/32] f16    (chunk: 16 values, half a block)
//   GGUF Q4_0: codes [n][k/2], scales [n][k/32] f16     (chunk: one block; byte j holds value j in
//   GGUF Q4_1: codes [n][k/2], scales [n][k/32] (d, m) f16 pairs   its low nibble, j+16 in its high)
//   int8:      codes [n][k] i8, scales [n] f32 (one per row, applied after the sum)
//   int4:      GPTQ-packed codes [n][k/8] u32, f16 scales and u8 zeros [n/4][groups][4]
// The GGUF blocks are split into codes and scales when uploaded (../block_layout.rs).
#pragma once
#include <cuda_fp16.h>
#include <stdint.h>

#define FMT_DENSE 0
#define FMT_Q8_0 1
#define FMT_Q4_0 2
#define FMT_Q4_1 3
#define FMT_INT8 4
#define FMT_INT4 5

// Weights are read once per token: stream them past L1 (the activations, read by every warp,
// stay cached). The CPU emulator of the decode kernels (tests/cuda_host/) supplies its own.
#ifndef LLMBENCH_HOST_EMULATION
__device__ __forceinline__ uint4 load_streaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
#endif

// A matrix's device operands.
struct QMatrix {
  const uint4* codes;
  const void* scales;
  const uint8_t* zeros;  // int4 only
  int chunks;            // 16-byte chunks per row
  int groups;            // int4: groups per row
  int group_shift;       // int4: log2(chunks per group)
};

// One activation vector quantized to 8 bits per block of `block` values (32 for every format but
// int4, whose blocks are its groups), int4's codes interleaved per `il` values (even-indexed first).
struct QAct {
  const int8_t* qs;
  const float* d;
  const int* sums32;  // code sums of every 32 consecutive values
  int il;
  int block_shift;    // log2(block / 32): int4's activation block (its group) in 32-value chunks
};

template <int FMT> struct Format;

// 16 signed 8-bit codes (one chunk) against their 16 activation codes: Q8_0 and int8.
__device__ __forceinline__ int byte_dot(const uint4& v, const int8_t* qs) {
  int4 x = *reinterpret_cast<const int4*>(qs);
  int dot = __dp4a((int)v.x, x.x, 0);
  dot = __dp4a((int)v.y, x.y, dot);
  dot = __dp4a((int)v.z, x.z, dot);
  return __dp4a((int)v.w, x.w, dot);
}

// GGUF Q8_0: 16 signed codes a chunk; chunk c is half of block c / 2.
template <> struct Format<FMT_Q8_0> {
  struct Chunk { uint4 v; float dw; };
  static __device__ __forceinline__ int chunks(int k) { return k >> 4; }
  static __device__ __forceinline__ Chunk load(const QMatrix& m, int row, int c) {
    const __half* s = static_cast<const __half*>(m.scales);
    return {load_streaming(m.codes + (size_t)row * m.chunks + c), __half2float(s[(size_t)row * (m.chunks >> 1) + (c >> 1)])};
  }
  static __device__ __forceinline__ float dot(const Chunk& w, const QAct& a, int c) {
    return (float)byte_dot(w.v, a.qs + 16 * c) * (w.dw * a.d[c >> 1]);
  }
  static __device__ __forceinline__ float finish(const QMatrix&, int, float v) { return v; }
};

// The unsigned 4-bit codes of a Q4 block (one chunk) against its 32 activation codes.
__device__ __forceinline__ int nibble_dot(const uint4& v, const int8_t* qs) {
  const uint32_t M = 0x0F0F0F0Fu;
  int4 lo = *reinterpret_cast<const int4*>(qs);
  int4 hi = *reinterpret_cast<const int4*>(qs + 16);
  int dot = __dp4a((int)(v.x & M), lo.x, 0);
  dot = __dp4a((int)((v.x >> 4) & M), hi.x, dot);
  dot = __dp4a((int)(v.y & M), lo.y, dot);
  dot = __dp4a((int)((v.y >> 4) & M), hi.y, dot);
  dot = __dp4a((int)(v.z & M), lo.z, dot);
  dot = __dp4a((int)((v.z >> 4) & M), hi.z, dot);
  dot = __dp4a((int)(v.w & M), lo.w, dot);
  dot = __dp4a((int)((v.w >> 4) & M), hi.w, dot);
  return dot;
}

// GGUF Q4_0: x = d (q - 8); the -8 enters through the activation block's code sum.
template <> struct Format<FMT_Q4_0> {
  struct Chunk { uint4 v; float dw; };
  static __device__ __forceinline__ int chunks(int k) { return k >> 5; }
  static __device__ __forceinline__ Chunk load(const QMatrix& m, int row, int c) {
    const __half* s = static_cast<const __half*>(m.scales);
    return {load_streaming(m.codes + (size_t)row * m.chunks + c), __half2float(s[(size_t)row * m.chunks + c])};
  }
  static __device__ __forceinline__ float dot(const Chunk& w, const QAct& a, int c) {
    int dot = nibble_dot(w.v, a.qs + 32 * c) - 8 * a.sums32[c];
    return (float)dot * (w.dw * a.d[c]);
  }
  static __device__ __forceinline__ float finish(const QMatrix&, int, float v) { return v; }
};

// GGUF Q4_1: x = d q + m, so w . a = d da (q . qa) + m (da sum qa).
template <> struct Format<FMT_Q4_1> {
  struct Chunk { uint4 v; float2 dm; };
  static __device__ __forceinline__ int chunks(int k) { return k >> 5; }
  static __device__ __forceinline__ Chunk load(const QMatrix& m, int row, int c) {
    const __half2* s = static_cast<const __half2*>(m.scales);
    return {load_streaming(m.codes + (size_t)row * m.chunks + c), __half22float2(s[(size_t)row * m.chunks + c])};
  }
  static __device__ __forceinline__ float dot(const Chunk& w, const QAct& a, int c) {
    float da = a.d[c];
    return (float)nibble_dot(w.v, a.qs + 32 * c) * (w.dm.x * da) + w.dm.y * (da * (float)a.sums32[c]);
  }
  static __device__ __forceinline__ float finish(const QMatrix&, int, float v) { return v; }
};

// int8: per-row absmax scale, applied once after the sum.
template <> struct Format<FMT_INT8> {
  struct Chunk { uint4 v; };
  static __device__ __forceinline__ int chunks(int k) { return k >> 4; }
  static __device__ __forceinline__ Chunk load(const QMatrix& m, int row, int c) {
    return {load_streaming(m.codes + (size_t)row * m.chunks + c)};
  }
  static __device__ __forceinline__ float dot(const Chunk& w, const QAct& a, int c) {
    return a.d[c >> 1] * (float)byte_dot(w.v, a.qs + 16 * c);
  }
  static __device__ __forceinline__ float finish(const QMatrix& m, int row, float v) {
    return static_cast<const float*>(m.scales)[row] * v;
  }
};

// int4: x = s (q - z) per group; activation codes interleaved per `il` values so that the low
// nibbles (even values) and high nibbles (odd values) of a chunk each meet 16 contiguous codes.
template <> struct Format<FMT_INT4> {
  struct Chunk { uint4 v; float scale; int zero; };
  static __device__ __forceinline__ int chunks(int k) { return k >> 5; }
  static __device__ __forceinline__ Chunk load(const QMatrix& m, int row, int c) {
    int p = ((row >> 2) * m.groups + (c >> m.group_shift)) * 4 + (row & 3);
    return {load_streaming(m.codes + (size_t)row * m.chunks + c), __half2float(static_cast<const __half*>(m.scales)[p]), (int)m.zeros[p]};
  }
  static __device__ __forceinline__ float dot(const Chunk& w, const QAct& a, int c) {
    const uint32_t M = 0x0F0F0F0Fu;
    int il_shift = a.il == 64 ? 1 : 0;  // chunks per interleave unit, minus one
    int base = (c >> il_shift) * a.il + (c & il_shift) * 16;
    int4 ev = *reinterpret_cast<const int4*>(a.qs + base);
    int4 od = *reinterpret_cast<const int4*>(a.qs + base + (a.il >> 1));
    int dot = __dp4a((int)(w.v.x & M), ev.x, 0);
    dot = __dp4a((int)((w.v.x >> 4) & M), od.x, dot);
    dot = __dp4a((int)(w.v.y & M), ev.y, dot);
    dot = __dp4a((int)((w.v.y >> 4) & M), od.y, dot);
    dot = __dp4a((int)(w.v.z & M), ev.z, dot);
    dot = __dp4a((int)((w.v.z >> 4) & M), od.z, dot);
    dot = __dp4a((int)(w.v.w & M), ev.w, dot);
    dot = __dp4a((int)((w.v.w >> 4) & M), od.w, dot);
    return w.scale * a.d[c >> a.block_shift] * (float)(dot - w.zero * a.sums32[c]);
  }
  static __device__ __forceinline__ float finish(const QMatrix&, int, float v) { return v; }
};
