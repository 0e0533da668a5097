// Causal scaled dot-product attention on CUDA in one pass over the keys and values, with no
// [q, kv] score matrix in memory: FlashAttention's online softmax (Dao et al. 2022) on CUDA
// cores, for prompts of 64 rows or more (src/models/cuda_attention.rs says why not fewer).
//
// q: [b, h, q_len, d] contiguous; k, v: [b, h_kv, kv_len, d] with any strides but the last
// (a view of a larger preallocated cache); out: [b, h, q_len, d]. Query row i sees keys
// 0..=kv_len - q_len + i; query head h reads key/value head h / (h / h_kv).
//
// A block is one head and ROWS query rows (4 warps, 8 rows a warp). Each tile of 32 keys
// and values is loaded once into shared memory (as f32) for all the block's rows; lane j of a
// warp scores key j of the tile against each of its rows (a whole dot product a lane: no
// reduction per key), the warp then updates each row's running max, sum and output (lane l
// owning output values l, l + 32, ...). Scores are rounded as the decode step's (q.k rounded
// to T, times 1/sqrt(d) rounded to T; llama_decode.cu's attn_split) and the probabilities stay
// f32, so a prefill row and a graph decode step at the same position compute the same scores.

#include <stdint.h>

#include "float_ops.cuh"

#define WARPS 4
#define ROWS_PER_WARP 8
#define ROWS (WARPS * ROWS_PER_WARP)
#define TILE 32

// Strides in elements of T. DPL = d / 32 output values a lane (2, 4 or 8), held as VW-wide
// vectors at VW * lane + 32 * VW * t (VW = min(DPL, 4)): vector loads from shared memory, with
// the lanes of each quarter-warp on distinct banks.
template <typename T, int DPL>
__device__ void causal_attention(const T* q, const T* k, const T* v, T* out, int n_head, int n_kv, int q_len, int kv_len,
                                 long long k_batch, long long k_head, long long k_row, long long v_batch, long long v_head,
                                 long long v_row, float inv_sqrt_d) {
  constexpr int D = DPL * 32;
  constexpr int VW = DPL < 4 ? DPL : 4;
  // Key rows padded by 4 floats: lane j reads row j of the tile 16 bytes at a time, and rows of
  // a multiple of 32 floats would put every lane of a quarter-warp on the same banks.
  constexpr int KS = D + 4;
  extern __shared__ __align__(16) float smem[];
  float* qs = smem;                 // [ROWS][D]
  float* ks = qs + ROWS * D;        // [TILE][KS]
  float* vs = ks + TILE * KS;       // [TILE][D]
  // Each warp's probabilities, key-major: the 8 rows' values of one key in two 16-byte loads.
  __shared__ __align__(16) float ps[WARPS][TILE][ROWS_PER_WARP];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int head = blockIdx.y, batch = blockIdx.z, row0 = blockIdx.x * ROWS;
  int kvh = head / (n_head / n_kv);
  int offset = kv_len - q_len;
  const T* qh = q + ((size_t)batch * n_head + head) * q_len * D;
  for (int i = threadIdx.x; i < ROWS * D; i += blockDim.x) {
    int r = row0 + i / D;
    qs[i] = r < q_len ? to_f(qh[(size_t)r * D + i % D]) : 0.f;
  }
  const T* kh = k + batch * k_batch + kvh * k_head;
  const T* vh = v + batch * v_batch + kvh * v_head;
  // Keys the block's last row sees (rows past q_len see none).
  int last_row = min(row0 + ROWS, q_len) - 1;
  int keys = offset + last_row + 1;
  const float* qw = qs + warp * ROWS_PER_WARP * D;
  float m[ROWS_PER_WARP], l[ROWS_PER_WARP], acc[ROWS_PER_WARP][DPL];
#pragma unroll
  for (int r = 0; r < ROWS_PER_WARP; ++r) {
    m[r] = -INFINITY, l[r] = 0.f;
#pragma unroll
    for (int j = 0; j < DPL; ++j) acc[r][j] = 0.f;
  }
  for (int t0 = 0; t0 < keys; t0 += TILE) {
    __syncthreads();  // the previous tile is read by every warp (and qs written, the first time)
    for (int i = threadIdx.x; i < TILE * D; i += blockDim.x) {
      int j = i / D, c = i % D, key = t0 + j;
      bool in = key < keys;
      ks[j * KS + c] = in ? to_f(kh[key * k_row + c]) : 0.f;
      vs[j * D + c] = in ? to_f(vh[key * v_row + c]) : 0.f;
    }
    __syncthreads();
    int key = t0 + lane;
    float s[ROWS_PER_WARP];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) s[r] = 0.f;
    const float* kr = ks + lane * KS;
#pragma unroll 4
    for (int c = 0; c < D; c += 4) {
      float4 kc = *reinterpret_cast<const float4*>(kr + c);
#pragma unroll
      for (int r = 0; r < ROWS_PER_WARP; ++r) {
        float4 qc = *reinterpret_cast<const float4*>(qw + r * D + c);
        s[r] += qc.x * kc.x + qc.y * kc.y + qc.z * kc.z + qc.w * kc.w;
      }
    }
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
      int row = row0 + warp * ROWS_PER_WARP + r;
      bool seen = row < q_len && key <= offset + row;
      float sc = seen ? round_t<T>(round_t<T>(s[r]) * inv_sqrt_d) : -INFINITY;
      float mt = fmaxf(m[r], warp_max(sc));
      // A row's first tile always holds key 0, so mt is finite from then on; rows past
      // q_len stay at -inf and are never written.
      float p = seen ? expf(sc - mt) : 0.f;
      float corr = m[r] == -INFINITY ? 0.f : expf(m[r] - mt);
      l[r] = l[r] * corr + warp_sum(p);
      m[r] = mt;
#pragma unroll
      for (int j = 0; j < DPL; ++j) acc[r][j] *= corr;
      ps[warp][lane][r] = p;
    }
    __syncwarp();
    int tile_keys = min(TILE, keys - t0);
    for (int j = 0; j < tile_keys; ++j) {
      const float* vr = vs + j * D;
      float vv[DPL];
#pragma unroll
      for (int t = 0; t < DPL / VW; ++t) {
        if constexpr (VW == 4) {
          float4 x = *reinterpret_cast<const float4*>(vr + 4 * lane + 128 * t);
          vv[4 * t] = x.x, vv[4 * t + 1] = x.y, vv[4 * t + 2] = x.z, vv[4 * t + 3] = x.w;
        } else {
          float2 x = *reinterpret_cast<const float2*>(vr + 2 * lane);
          vv[0] = x.x, vv[1] = x.y;
        }
      }
      float4 p0 = *reinterpret_cast<const float4*>(&ps[warp][j][0]);
      float4 p1 = *reinterpret_cast<const float4*>(&ps[warp][j][4]);
      float p[8] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
#pragma unroll
      for (int r = 0; r < ROWS_PER_WARP; ++r) {
#pragma unroll
        for (int c = 0; c < DPL; ++c) acc[r][c] += p[r] * vv[c];
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < ROWS_PER_WARP; ++r) {
    int row = row0 + warp * ROWS_PER_WARP + r;
    if (row >= q_len) continue;
    T* o = out + (((size_t)batch * n_head + head) * q_len + row) * D;
    float inv = 1.f / l[r];
#pragma unroll
    for (int c = 0; c < DPL; ++c) o[VW * lane + 32 * VW * (c / VW) + c % VW] = from_f<T>(acc[r][c] * inv);
  }
}

#define ATTENTION_KERNEL(T, S, DPL)                                                                                   \
  extern "C" __global__ void __launch_bounds__(WARPS * 32) causal_attention_##S##_d##DPL(                          \
      const T* q, const T* k, const T* v, T* out, int n_head, int n_kv, int q_len, int kv_len, long long k_batch,    \
      long long k_head, long long k_row, long long v_batch, long long v_head, long long v_row, float inv_sqrt_d) {   \
    causal_attention<T, DPL>(q, k, v, out, n_head, n_kv, q_len, kv_len, k_batch, k_head, k_row, v_batch, v_head,    \
                             v_row, inv_sqrt_d);                                                                      \
  }

#define ATTENTION_KERNELS(T, S) \
  ATTENTION_KERNEL(T, S, 2)     \
  ATTENTION_KERNEL(T, S, 4)     \
  ATTENTION_KERNEL(T, S, 8)

ATTENTION_KERNELS(float, f32)
ATTENTION_KERNELS(__half, f16)
ATTENTION_KERNELS(__nv_bfloat16, bf16)
