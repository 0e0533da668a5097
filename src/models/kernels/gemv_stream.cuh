// The streaming gemv of the graph decode step, for dense weights (included by llama_decode.cu,
// whose GemvArgs, rows_of, build_input, load_aux, epilogue and Dense it uses).
//
// Why a second gemv: the warp gemv (llama_decode.cu) holds its weight loads in registers, one
// round of them a warp, so a block has bytes in flight only between its start and its dot
// products; its prologue, reduction and epilogue run with nothing in flight, and its 116-128
// registers a thread leave 16 warps a multiprocessor. ncu put TinyLlama's gate/up projection at
// 53% of the DRAM peak and the down projection at 39% (results/gpu/NOTES.md, v7). Here a block
// streams its rows through a ring of `stages` shared-memory stages, each filled by the bulk copy
// engine (one `cp.async.bulk` a row, issued by one thread, completing on the stage's mbarrier):
// the bytes in flight are held by shared memory, not registers, and cost no instructions per 16
// bytes (a first version with per-thread 16-byte cp.async copies spent more issuing them than
// the loads took: NOTES, v8). While the block computes one stage the others are on their way,
// and the first stages - 1 are issued before the block waits for the previous kernel, so they
// overlap its tail. The grid is about one block a multiprocessor, each with a contiguous run of
// row pairs (its `items` of stage_rows / 2 pairs), so the input vector (norm, split-combine) is
// built once a block rather than once per 8 rows. Every block computes its rows in a fixed
// order: results do not depend on timing.

#define STREAM_THREADS 256
#define STREAM_MAX_STAGES 16

// Row pairs of a projection (rows_of): n / 2 where an epilogue combines two rows, else ceil(n / 2).
__device__ __forceinline__ int pairs_of(const GemvArgs& a) {
  return a.epilogue == EPI_SILU || a.epilogue == EPI_ROPE ? a.n >> 1 : (a.n + 1) >> 1;
}

// Dynamic shared memory: `stages` stages of stage_rows x k values of T, the input vector T[k],
// then the split-combine's factors (O projection). Stage rows are ordered pair by pair (r0, r1);
// warp w computes stage row w / wpr, its lanes striding over the row's 16-byte chunks with
// wpr - 1 sibling warps (wpr = 8 / stage_rows).
template <typename T>
__device__ void gemv_stream(const GemvArgs& a) {
  extern __shared__ __align__(16) unsigned char smem[];
  static __shared__ float part[2][STREAM_THREADS / 32];
  static __shared__ __align__(8) uint64_t full[STREAM_MAX_STAGES];
  constexpr int V = Vec<T>::N, WARPS = STREAM_THREADS / 32;
  const int chunks = a.k / V, R = a.stage_rows, G = R >> 1, wpr = WARPS / R, S = a.stages;
  const int stage_chunks = R * chunks;
  const uint32_t row_bytes = (uint32_t)chunks * 16;
  uint4* stages = reinterpret_cast<uint4*>(smem);
  T* xs = reinterpret_cast<T*>(stages + S * stage_chunks);
  float* combine = reinterpret_cast<float*>(xs + a.k);
  // The block's items (groups of G pairs): an even share of them, contiguous.
  const int items = (pairs_of(a) + G - 1) / G;
  const int first = (int)((long long)blockIdx.x * items / gridDim.x);
  const int count = (int)((long long)(blockIdx.x + 1) * items / gridDim.x) - first;
  // Thread 0 fills item `it`'s stage: one bulk copy a row.
  auto issue = [&](int it) {
    if (threadIdx.x != 0 || it >= count) return;
    int slot = it % S, pair0 = (first + it) * G;
    uint32_t bytes = 0;
    for (int rr = 0; rr < R; rr += 2) {
      int r0, r1, aux;
      rows_of(a, pair0 + (rr >> 1), r0, r1, aux);
      bytes += (r0 >= 0 ? row_bytes : 0) + (r1 >= 0 ? row_bytes : 0);
    }
    mbar_expect(&full[slot], bytes);
    uint4* dst = stages + slot * stage_chunks;
    for (int rr = 0; rr < R; rr += 2) {
      int r0, r1, aux;
      rows_of(a, pair0 + (rr >> 1), r0, r1, aux);
      if (r0 >= 0) bulk_copy(dst + rr * chunks, a.codes + (size_t)r0 * chunks, row_bytes, &full[slot]);
      if (r1 >= 0) bulk_copy(dst + (rr + 1) * chunks, a.codes + (size_t)r1 * chunks, row_bytes, &full[slot]);
    }
  };
  if (threadIdx.x == 0) {
    for (int s = 0; s < S; ++s) mbar_init(&full[s], 1);
    fence_mbar_init();
  }
  trace_start(a.trace);
  __syncthreads();
  for (int s = 0; s < S - 1; ++s) issue(s);
  wait_for_previous();
  release_next();
  trace_released(a.trace);
  // Thread t applies the epilogue of the block's pair t (and t + 256, ...); its aux values for
  // the first of them are read now.
  EpiAux<T> e{};
  if (threadIdx.x < count * G) {
    int r0, r1, aux;
    rows_of(a, first * G + threadIdx.x, r0, r1, aux);
    e = load_aux<T>(a, r0, r1, aux);
  }
  build_input<T>(a, xs, combine);
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int stage_row = warp / wpr, sub = warp - stage_row * wpr;
  for (int it = 0; it < count; ++it) {
    // The stage refilled here was last read at it - 1, before that iteration's barrier.
    issue(it + S - 1);
    mbar_wait(&full[it % S], (it / S) & 1);
    const uint4* w = stages + (it % S) * stage_chunks + stage_row * chunks;
    float acc = 0.f;
    for (int c = sub * 32 + lane; c < chunks; c += 32 * wpr) acc += Dense<T>::dot(typename Dense<T>::Chunk{w[c]}, xs, c);
    acc = warp_sum(acc);
    // Two sets of partial sums: a warp may write the next item's while the epilogue threads
    // still read this one's.
    if (lane == 0) part[it & 1][warp] = acc;
    __syncthreads();  // the partial sums are in, and every warp is done with this stage
    // 256 % G == 0, so the item's G pairs sit on threads base .. base + G - 1 without wrapping.
    int j = threadIdx.x - (it * G) % STREAM_THREADS;
    if (j >= 0 && j < G) {
      int r0, r1, aux;
      rows_of(a, (first + it) * G + j, r0, r1, aux);
      if (r0 >= 0) {
        float v0 = 0.f, v1 = 0.f;
        for (int s = 0; s < wpr; ++s) v0 += part[it & 1][(2 * j) * wpr + s], v1 += part[it & 1][(2 * j + 1) * wpr + s];
        EpiAux<T> ej = it * G + j < STREAM_THREADS ? e : load_aux<T>(a, r0, r1, aux);
        epilogue<T>(a, r0, r1, aux, v0, r1 >= 0 ? v1 : 0.f, ej);
      }
    }
  }
  trace_end(a.trace);
}
