// Sparse matrix-vector products for activation sparsity (TEAL, LaRoSA) on CUDA: y = W x where
// most of x is zero, reading only the weight columns of the kept entries. Weights are stored
// column-major (each input channel's n outputs contiguous), so a kept entry is one contiguous,
// coalesced stretch and a dropped one is bytes never read.
//
// One kernel per product (after the caller zeroes y). A block owns a tile of 32 x N outputs
// (N = 16 bytes of the format: 4 f32, 8 f16/bf16, 16 Q8_0 codes per lane) and 8 inputs per
// warp (64 per block of 8 warps). Each warp reads its 8 activations, keeps those with
// |x| >= threshold and x != 0 (one ballot: the kept set is the same in every lane, so nothing
// diverges), and loads the kept columns' stretch of the tile, all at once (up to eight 16-byte
// loads in flight per lane, 512 contiguous bytes per warp and column). The warps' partial sums
// meet in shared memory and the block adds them into y with one atomicAdd per output (a
// fire-and-forget RED; y is a few KB in L2). Few inputs per thread is what fills the GPU: a
// matrix-vector product is bound by the loads in flight, and a 2048 x 2048 matrix has only
// 2048 x 2048 / (8 x N) lanes' worth of work. No compaction pass: a dropped input costs one
// bit of a ballot. With `kept` set, each input group's first tile adds its count there.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

// 16 bytes of weights as floats.
__device__ __forceinline__ void unpack(const uint4 r, float *f, const float *) {
    f[0] = __uint_as_float(r.x);
    f[1] = __uint_as_float(r.y);
    f[2] = __uint_as_float(r.z);
    f[3] = __uint_as_float(r.w);
}
__device__ __forceinline__ void unpack(const uint4 r, float *f, const __half *) {
    const __half2 *h = reinterpret_cast<const __half2 *>(&r);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 p = __half22float2(h[j]);
        f[2 * j] = p.x;
        f[2 * j + 1] = p.y;
    }
}
__device__ __forceinline__ void unpack(const uint4 r, float *f, const __nv_bfloat16 *) {
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        f[2 * j] = __uint_as_float(w[j] << 16);
        f[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
    }
}

constexpr int INPUTS_PER_WARP = 8;

// This warp's kept inputs as a bit mask (the same in every lane), counted into `kept` once.
__device__ __forceinline__ unsigned kept_mask(const float *__restrict__ x, int c0, int k, float threshold, int *kept) {
    const int lane = threadIdx.x & 31, i = c0 + lane;
    const float v = lane < INPUTS_PER_WARP && i < k ? x[i] : 0.0f;
    const unsigned mask = __ballot_sync(0xffffffffu, v != 0.0f && fabsf(v) >= threshold);
    if (kept != nullptr && blockIdx.x == 0 && lane == 0) atomicAdd(kept, __popc(mask));
    return mask;
}

// The kept inputs off the mask, in order: `idx[j]` for j below the count returned (static
// indices, so they stay in registers).
__device__ __forceinline__ int take(unsigned mask, int *idx) {
    int m = 0;
#pragma unroll
    for (int j = 0; j < INPUTS_PER_WARP; ++j) {
        idx[j] = __ffs(mask) - 1;
        m += mask != 0u;
        mask &= mask - 1u;
    }
    return m;
}

// The warps' partial sums of the tile (N per lane) added up in shared memory, then into y.
template <int N>
__device__ __forceinline__ void reduce_into(const float *acc, int tile0, int n, float *__restrict__ y) {
    extern __shared__ float part[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
#pragma unroll
    for (int e = 0; e < N; ++e) part[warp * 32 * N + lane * N + e] = acc[e];
    __syncthreads();
    for (int t = threadIdx.x; t < 32 * N; t += blockDim.x) {
        float sum = 0.0f;
        for (int w = 0; w < warps; ++w) sum += part[w * 32 * N + t];
        if (tile0 + t < n && sum != 0.0f) atomicAdd(y + tile0 + t, sum);
    }
}

template <typename T>
__device__ __forceinline__ void sparse_gemv_float(const T *__restrict__ w, const float *__restrict__ x, float threshold,
                                                  int k, int n, float *__restrict__ y, int *kept) {
    constexpr int N = 16 / sizeof(T);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int c0 = (blockIdx.y * (blockDim.x >> 5) + warp) * INPUTS_PER_WARP;
    const int tile0 = blockIdx.x * 32 * N, o = tile0 + lane * N;
    int idx[INPUTS_PER_WARP];
    const int m = take(kept_mask(x, c0, k, threshold, kept), idx);
    float acc[N];
#pragma unroll
    for (int e = 0; e < N; ++e) acc[e] = 0.0f;
    if (o < n) {
        uint4 r[INPUTS_PER_WARP];
#pragma unroll
        for (int j = 0; j < INPUTS_PER_WARP; ++j)
            if (j < m) r[j] = __ldg(reinterpret_cast<const uint4 *>(w + (size_t)(c0 + idx[j]) * n + o));
#pragma unroll
        for (int j = 0; j < INPUTS_PER_WARP; ++j) {
            if (j < m) {
                const float xv = x[c0 + idx[j]];
                float f[N];
                unpack(r[j], f, w);
#pragma unroll
                for (int e = 0; e < N; ++e) acc[e] = fmaf(xv, f[e], acc[e]);
            }
        }
    }
    reduce_into<N>(acc, tile0, n, y);
}

extern "C" __global__ void sparse_gemv_f32(const float *w, const float *x, float threshold, int k, int n, float *y, int *kept) {
    sparse_gemv_float(w, x, threshold, k, n, y, kept);
}
extern "C" __global__ void sparse_gemv_f16(const __half *w, const float *x, float threshold, int k, int n, float *y, int *kept) {
    sparse_gemv_float(w, x, threshold, k, n, y, kept);
}
extern "C" __global__ void sparse_gemv_bf16(const __nv_bfloat16 *w, const float *x, float threshold, int k, int n, float *y,
                                            int *kept) {
    sparse_gemv_float(w, x, threshold, k, n, y, kept);
}

// Q8_0 along the outputs: codes [k][n] (int8), one f16 scale per 32 outputs of a column
// (scales [k][n / 32]); a thread's 16 outputs share one scale.
__device__ __forceinline__ void q8_accumulate(const uint4 r, float s, float *acc) {
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int b = 0; b < 4; ++b) acc[4 * j + b] = fmaf(s, (float)(int8_t)(w[j] >> (8 * b)), acc[4 * j + b]);
    }
}

extern "C" __global__ void sparse_gemv_q8_0(const int8_t *__restrict__ codes, const __half *__restrict__ scales,
                                            const float *__restrict__ x, float threshold, int k, int n,
                                            float *__restrict__ y, int *kept) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int c0 = (blockIdx.y * (blockDim.x >> 5) + warp) * INPUTS_PER_WARP;
    const int tile0 = blockIdx.x * 32 * 16, o = tile0 + lane * 16, blocks = n / 32;
    int idx[INPUTS_PER_WARP];
    const int m = take(kept_mask(x, c0, k, threshold, kept), idx);
    float acc[16];
#pragma unroll
    for (int e = 0; e < 16; ++e) acc[e] = 0.0f;
    if (o < n) {
        uint4 r[INPUTS_PER_WARP];
        float s[INPUTS_PER_WARP];
#pragma unroll
        for (int j = 0; j < INPUTS_PER_WARP; ++j) {
            if (j < m) {
                const size_t i = c0 + idx[j];
                r[j] = __ldg(reinterpret_cast<const uint4 *>(codes + i * n + o));
                s[j] = x[i] * __half2float(scales[i * blocks + o / 32]);
            }
        }
#pragma unroll
        for (int j = 0; j < INPUTS_PER_WARP; ++j)
            if (j < m) q8_accumulate(r[j], s[j], acc);
    }
    reduce_into<16>(acc, tile0, n, y);
}
