// The streaming gemv of the graph decode step, for dense weights (included by llama_decode.cu,
// whose GemvArgs, rows_of, build_input, load_aux, epilogue and Dense it uses).
//
// Why a second gemv: the warp gemv (llama_decode.cu) holds its weight loads in registers, one
// round of them a warp, so a block has bytes in flight only between its start and its dot
// products; its prologue, reduction and epilogue run with nothing in flight, and its 116-128
// registers a thread leave 16 warps a multiprocessor. ncu put TinyLlama's gate/up projection at
// 53% of the DRAM peak and the down projection at 39% (results/gpu/NOTES.md, v7). Here a block
// streams its rows through a ring of STREAM_STAGES shared-memory stages filled with cp.async
// (the copies are held by shared memory, not registers): while it computes one stage the next
// ones are on their way, and the first STREAM_STAGES - 1 are issued before the block waits for
// the previous kernel, so they overlap its tail. The grid is about one block a multiprocessor,
// each with a contiguous run of row pairs (its `items` of stage_rows / 2 pairs), so the input
// vector (norm, split-combine) is built once a multiprocessor rather than once per 8 rows.
// Every block computes its rows in a fixed order: results do not depend on timing.

#define STREAM_THREADS 256
#define STREAM_STAGES 4

__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}
// 16 bytes global -> shared, asynchronously (sm_80+); weights are read once a step, so they are
// marked first to leave L2 (the cache and the activations stay).
__device__ __forceinline__ void copy_async16(void* dst, const void* src, uint64_t policy) {
  unsigned s = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(s), "l"(src), "l"(policy) : "memory");
}
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void copy_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// Row pairs of a projection (rows_of): n / 2 where an epilogue combines two rows, else ceil(n / 2).
__device__ __forceinline__ int pairs_of(const GemvArgs& a) {
  return a.epilogue == EPI_SILU || a.epilogue == EPI_ROPE ? a.n >> 1 : (a.n + 1) >> 1;
}

// Dynamic shared memory: STREAM_STAGES stages of stage_rows x k values of T, the input vector
// T[k], then the split-combine's factors (O projection). Stage rows are ordered pair by pair
// (r0, r1); warp w computes stage row w / wpr, its lanes striding over the row's 16-byte chunks
// with wpr - 1 sibling warps (wpr = 8 / stage_rows).
template <typename T>
__device__ void gemv_stream(const GemvArgs& a) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ float part[STREAM_THREADS / 32];
  constexpr int V = Vec<T>::N, WARPS = STREAM_THREADS / 32;
  const int chunks = a.k / V, R = a.stage_rows, G = R >> 1, wpr = WARPS / R;
  const int stage_chunks = R * chunks;
  uint4* stages = reinterpret_cast<uint4*>(smem);
  T* xs = reinterpret_cast<T*>(stages + STREAM_STAGES * stage_chunks);
  float* combine = reinterpret_cast<float*>(xs + a.k);
  // The block's items (groups of G pairs): an even share of them, contiguous.
  const int items = (pairs_of(a) + G - 1) / G;
  const int first = (int)((long long)blockIdx.x * items / gridDim.x);
  const int count = (int)((long long)(blockIdx.x + 1) * items / gridDim.x) - first;
  const uint64_t policy = evict_first_policy();
  const uint4* codes = a.codes;
  // Item `it`'s rows into its stage; every thread commits a group per call, empty or not, so
  // that wait_group counts the same items in every thread.
  auto issue = [&](int it) {
    if (it < count) {
      uint4* dst = stages + (it % STREAM_STAGES) * stage_chunks;
      int pair0 = (first + it) * G;
      for (int f = threadIdx.x; f < stage_chunks; f += STREAM_THREADS) {
        int rr = f / chunks, c = f - rr * chunks, r0, r1, aux;
        rows_of(a, pair0 + (rr >> 1), r0, r1, aux);
        int row = rr & 1 ? r1 : r0;
        if (row >= 0) copy_async16(dst + f, codes + (size_t)row * chunks + c, policy);
      }
    }
    copy_async_commit();
  };
#pragma unroll
  for (int s = 0; s < STREAM_STAGES - 1; ++s) issue(s);
  wait_for_previous();
  release_next();
  // Thread t applies the epilogue of the block's pair t (and t + 256, ...); its aux values for
  // the first of them are read now.
  EpiAux<T> e{};
  if (threadIdx.x < count * G) {
    int r0, r1, aux;
    rows_of(a, first * G + threadIdx.x, r0, r1, aux);
    e = load_aux<T>(a, r0, r1, aux);
  }
  build_input<T>(a, xs, combine);  // published by the loop's first barrier
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int stage_row = warp / wpr, sub = warp - stage_row * wpr;
  for (int it = 0; it < count; ++it) {
    issue(it + STREAM_STAGES - 1);
    copy_async_wait<STREAM_STAGES - 1>();
    __syncthreads();  // every thread's copies of item `it` have landed
    const uint4* w = stages + (it % STREAM_STAGES) * stage_chunks + stage_row * chunks;
    float acc = 0.f;
    for (int c = sub * 32 + lane; c < chunks; c += 32 * wpr) acc += Dense<T>::dot(typename Dense<T>::Chunk{w[c]}, xs, c);
    acc = warp_sum(acc);
    if (lane == 0) part[warp] = acc;
    __syncthreads();  // also frees the stage for the copies issued at the next iteration
    // 256 % G == 0, so the item's G pairs sit on threads base .. base + G - 1 without wrapping.
    int j = threadIdx.x - (it * G) % STREAM_THREADS;
    if (j >= 0 && j < G) {
      int r0, r1, aux;
      rows_of(a, (first + it) * G + j, r0, r1, aux);
      if (r0 >= 0) {
        float v0 = 0.f, v1 = 0.f;
        for (int s = 0; s < wpr; ++s) v0 += part[(2 * j) * wpr + s], v1 += part[(2 * j + 1) * wpr + s];
        EpiAux<T> ej = it * G + j < STREAM_THREADS ? e : load_aux<T>(a, r0, r1, aux);
        epilogue<T>(a, r0, r1, aux, v0, r1 >= 0 ? v1 : 0.f, ej);
      }
    }
  }
}
