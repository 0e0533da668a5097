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
// attn_split_at is the work of one (head, split) block of SPLIT threads. Every load that does
// not depend on another goes out before any is used: the position, the query, the thread's key
// row and the first values, in one round trip where the chain position -> query -> keys took
// three. Where `early` (the default; LLMBENCH_CUDA_ATTN_LOADS=after-wait turns it off), the
// cache's loads go out before the wait on the QKV launch: only the newest position and the
// query are that launch's, every older position was written by earlier steps, and the position
// is the host's (copied before the replay). After the wait: the query (a plain load: no block
// reads it before its wait), and the newest position's rows and every other cache load from L2
// (__ldcg: a line loaded before the wait may hold the old bytes of the newest row, rows of under
// 128 bytes sharing a line). Why: the trace showed TinyLlama's
// attention at 6.2 us after its release against SmolLM2's 3.65 for the same work a block, and
// the O launch that follows issues its first loads (most of its 8.4 MB) the moment the
// attention is released, so cache loads issued after the wait queue behind them; issued
// before it, they are in flight while the QKV launch still runs.
// With `early` off (the session-9 order): split 0 always has positions (the length is at least
// 1), so its block loads all of them without waiting for the length, up to the split's end or
// the capacity, and drops what lies past the length (the cache may hold any bits there, NaN
// included: a score past the length is -inf, a value past it is skipped, not weighted by 0); a
// later split first reads the length, so that the splits past it (most of a long capacity's at
// the start) return without loading anything. Measured (H100, NOTES session 9): no gain at 128
// new tokens, TinyLlama's 1,024 row +3.7% together with the combine's shorter chain.
template <typename T>
__device__ void attn_split_at(const T* q, const T* k_cache, const T* v_cache, const int* params, float* acc_out, int n_head,
                              int n_kv, int d, int capacity, float inv_sqrt_d, int max_splits, int head, int split, bool early,
                              unsigned long long* trace) {
  constexpr int V = Vec<T>::N, KPRE = 8, PRE = 8;
  static_assert(SPLIT >= 256, "one query value a thread: head_dim <= 256 (cuda.rs) <= SPLIT");
  static __shared__ float qs[256];
  static __shared__ float probs[SPLIT];
  static __shared__ float red[SPLIT * 8];
  static __shared__ float scratch[32];
  auto pass_wait = [&] {
    wait_for_previous();
    release_next();
    trace_released(trace);
  };
  if (!early) pass_wait();
  int start = split * SPLIT;
  // Positions this block may load: all of the split below the capacity (split 0, after the
  // wait), or those below the length (early, and later splits, which read it first).
  int len = 0, loadable = min(SPLIT, capacity);
  if (early || split > 0) {
    len = params[1] + 1;
    if (start >= len) return;  // early: before the wait (a block's exit lets the next launch go too)
    loadable = min(SPLIT, len - start);
  }
  float qv = !early && threadIdx.x < d ? to_f(q[head * d + threadIdx.x]) : 0.f;  // first: its address needs no division
  int kvh = head / (n_head / n_kv);
  int p = start + threadIdx.x;
  int chunks = d / V;
  const uint4* row = reinterpret_cast<const uint4*>(k_cache + ((size_t)kvh * capacity + p) * d);
  uint4 kpre[KPRE];
#pragma unroll
  for (int c = 0; c < KPRE; ++c) kpre[c] = threadIdx.x < loadable && c < chunks ? ld_cached(row + c) : make_uint4(0, 0, 0, 0);
  const T* vals = v_cache + ((size_t)kvh * capacity + start) * d;
  int groups = blockDim.x / chunks;
  int c = threadIdx.x % chunks, g = threadIdx.x / chunks;
  uint4 vpre[PRE];
#pragma unroll
  for (int j = 0; j < PRE; ++j) {
    int pp = g + j * groups;
    vpre[j] = pp < loadable ? ld_cached(reinterpret_cast<const uint4*>(vals + (size_t)pp * d) + c) : make_uint4(0, 0, 0, 0);
  }
  // Loads after this point may meet the newest row's old bytes in L1 (early): from L2.
  auto load = [&](const uint4* at) { return early ? __ldcg(at) : ld_cached(at); };
  if (early) {
    pass_wait();
    if (threadIdx.x < d) qv = to_f(q[head * d + threadIdx.x]);
    int newest = len - 1 - start;  // below loadable where this split holds the newest position, else >= SPLIT: no thread
    if (threadIdx.x == newest) {
#pragma unroll
      for (int cc = 0; cc < KPRE; ++cc) kpre[cc] = cc < chunks ? __ldcg(row + cc) : kpre[cc];
    }
#pragma unroll
    for (int j = 0; j < PRE; ++j) {
      if (g + j * groups == newest) vpre[j] = __ldcg(reinterpret_cast<const uint4*>(vals + (size_t)newest * d) + c);
    }
  } else if (split == 0) {
    len = params[1] + 1;  // in flight with the loads above
  }
  if (threadIdx.x < d) qs[threadIdx.x] = qv;
  __syncthreads();
  float s = -INFINITY;
  if (p < len) {
    float acc = 0.f;
    for (int c0 = 0; c0 < chunks; c0 += KPRE) {
      uint4 raw[KPRE];
#pragma unroll
      for (int cc = 0; cc < KPRE; ++cc) raw[cc] = c0 == 0 ? kpre[cc] : c0 + cc < chunks ? load(row + c0 + cc) : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int cc = 0; cc < KPRE; ++cc) {
        const T* kv = reinterpret_cast<const T*>(&raw[cc]);
        if (c0 + cc < chunks) {
#pragma unroll
          for (int i = 0; i < V; ++i) acc += qs[(c0 + cc) * V + i] * to_f(kv[i]);
        }
      }
    }
    s = round_t<T>(round_t<T>(acc) * inv_sqrt_d);
  }
  int count = min(SPLIT, len - start);
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
    if (pp < count) {
      const T* vv = reinterpret_cast<const T*>(&vpre[j]);
      float w = probs[pp];
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] += w * to_f(vv[i]);
    }
  }
#pragma unroll 4
  for (int pp = g + PRE * groups; pp < count; pp += groups) {
    uint4 raw = load(reinterpret_cast<const uint4*>(vals + (size_t)pp * d) + c);
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
                           int n_kv, int d, int capacity, float inv_sqrt_d, int max_splits, int early, unsigned long long* trace) {
  trace_start(trace);
  // A split past the current length returns at once (early: before its wait, so it stamps no
  // release); its end is stamped all the same (after-wait: without one, the launch's last
  // release would follow its last end).
  attn_split_at<T>(q, k_cache, v_cache, params, acc_out, n_head, n_kv, d, capacity, inv_sqrt_d, max_splits, blockIdx.x,
                   blockIdx.y, early != 0, trace);
  trace_end(trace);
}
