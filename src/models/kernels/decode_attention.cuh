// The graph decode step's attention (included by llama_decode.cu, whose helpers it uses: Vec,
// block_max, block_sum, wait_for_previous, release_next, SPLIT).
#pragma once

// Attention over the static cache, split-K (flash-decoding): block (head, split) takes positions
// [split * SPLIT, (split + 1) * SPLIT) of the current length, so a long context spreads over
// many blocks (one block per head left the 1,024-token rows 10-20% slower than the 128-token
// ones), and writes its partial result: acc[split][head * d + j] = sum_p e^(s_p - m) v_p[j] with
// m its largest score, and stats[split][head] = (m, sum_p e^(s_p - m)). The O projection's
// prologue combines the splits. Scores are candle's (q.k rounded to T, times 1/sqrt(d) in T);
// the probabilities stay f32 (candle rounds the softmax output to T: closer to an f32
// reference, and one kernel instead of two). Grouped-query: query head h reads kv head
// h / (n_head / n_kv). Scores: one position per thread, 16-byte key loads; values: thread
// (position group, 16-byte chunk), groups summed at the end.
//
// attn_split_at is the work of one (head, split) block of SPLIT threads, once q and the cache
// are in memory.
template <typename T>
__device__ void attn_split_at(const T* q, const T* k_cache, const T* v_cache, const int* params, float* acc_out, int n_head,
                              int n_kv, int d, int capacity, float inv_sqrt_d, int max_splits, int head, int split) {
  constexpr int V = Vec<T>::N;
  static __shared__ float qs[256];
  static __shared__ float probs[SPLIT];
  static __shared__ float red[SPLIT * 8];
  static __shared__ float scratch[32];
  int len = params[1] + 1;
  int start = split * SPLIT;
  if (start >= len) return;
  int kvh = head / (n_head / n_kv);
  for (int j = threadIdx.x; j < d; j += blockDim.x) qs[j] = to_f(q[head * d + j]);
  __syncthreads();
  int p = start + threadIdx.x;
  float s = -INFINITY;
  if (p < len) {
    const uint4* row = reinterpret_cast<const uint4*>(k_cache + ((size_t)kvh * capacity + p) * d);
    int chunks = d / V;
    float acc = 0.f;
    for (int c0 = 0; c0 < chunks; c0 += 8) {
      uint4 raw[8];
#pragma unroll
      for (int c = 0; c < 8; ++c) raw[c] = c0 + c < chunks ? row[c0 + c] : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        const T* kv = reinterpret_cast<const T*>(&raw[c]);
        if (c0 + c < chunks) {
#pragma unroll
          for (int i = 0; i < V; ++i) acc += qs[(c0 + c) * V + i] * to_f(kv[i]);
        }
      }
    }
    s = round_t<T>(round_t<T>(acc) * inv_sqrt_d);
  }
  // The split's values do not depend on the scores: their first loads go out now, in the
  // same round trip as the keys'.
  int count = min(SPLIT, len - start);
  const T* vals = v_cache + ((size_t)kvh * capacity + start) * d;
  int chunks = d / V, groups = blockDim.x / chunks;
  int c = threadIdx.x % chunks, g = threadIdx.x / chunks;
  constexpr int PRE = 8;
  uint4 vpre[PRE];
#pragma unroll
  for (int j = 0; j < PRE; ++j) {
    int pp = g + j * groups;
    vpre[j] = pp < count ? reinterpret_cast<const uint4*>(vals + (size_t)pp * d)[c] : make_uint4(0, 0, 0, 0);
  }
  float m = block_max(s, scratch);
  float e = p < len ? expf(s - m) : 0.f;
  probs[threadIdx.x] = e;
  float l = block_sum(e, scratch);  // its barriers also publish probs
  float acc[V];
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = 0.f;
#pragma unroll
  for (int j = 0; j < PRE; ++j) {
    int pp = g + j * groups;
    const T* vv = reinterpret_cast<const T*>(&vpre[j]);
    float w = pp < count ? probs[pp] : 0.f;
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] += w * to_f(vv[i]);
  }
#pragma unroll 4
  for (int pp = g + PRE * groups; pp < count; pp += groups) {
    uint4 raw = reinterpret_cast<const uint4*>(vals + (size_t)pp * d)[c];
    const T* vv = reinterpret_cast<const T*>(&raw);
    float w = probs[pp];
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] += w * to_f(vv[i]);
  }
#pragma unroll
  for (int i = 0; i < V; ++i) red[g * d + c * V + i] = acc[i];
  __syncthreads();
  int k = n_head * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float total = 0.f;
    for (int gg = 0; gg < groups; ++gg) total += red[gg * d + j];
    acc_out[(size_t)split * k + head * d + j] = total;
  }
  if (threadIdx.x == 0) {
    float* stats = acc_out + (size_t)max_splits * k + ((size_t)split * n_head + head) * 2;
    stats[0] = m;
    stats[1] = l;
  }
}

template <typename T>
__device__ void attn_split(const T* q, const T* k_cache, const T* v_cache, const int* params, float* acc_out, int n_head,
                           int n_kv, int d, int capacity, float inv_sqrt_d, int max_splits, unsigned long long* trace) {
  trace_start(trace);
  wait_for_previous();
  release_next();
  trace_released(trace);
  int len = params[1] + 1;
  if ((int)blockIdx.y * SPLIT >= len) {  // a split past the current length: nothing to do
    trace_end(trace);  // its release is stamped: without an end, the launch's last release would follow its last end
    return;
  }
  attn_split_at<T>(q, k_cache, v_cache, params, acc_out, n_head, n_kv, d, capacity, inv_sqrt_d, max_splits, blockIdx.x, blockIdx.y);
  trace_end(trace);
}
