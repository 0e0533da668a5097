// A layer's whole MLP in one launch of the graph decode step (included by llama_decode.cu):
// x_norm = rms_norm(x), act = SiLU(gate x_norm) * (up x_norm), acc += down act.
//
// Why: as two launches (gate_up, then down) the down kernel could start only once every gate/up
// row was done, and each of its ~1,000 blocks rebuilt the 5,632-value activation vector from L2
// before its first product (ncu: down at 39% of the DRAM peak; NOTES, 2026-12-05). Here block b
// owns a run of intermediate indices [i0, i0 + width): it computes those gate and up rows (a
// warp a pair, as the warp gemv does), keeps their activations in shared memory, then multiplies
// the matching rows of the down matrix's transposed copy (by default; stored, the matching
// column slice of every output row) ("split-K" over the intermediate dimension) and adds the
// partial sums into an f32 accumulator with vector reductions. Nothing
// waits for another block; the next kernel's prologue (PRO_NORM_PENDING) adds the accumulator
// to the residual stream, rounded as candle rounds the down output and the residual add.
//
// Cost of that: the sum over blocks happens in L2 atomics, in no fixed order, so the down
// output's f32 sum can differ in its last bits from run to run (bf16 rounding hides most of it;
// `LLMBENCH_CUDA_MLP=split` keeps the two deterministic launches).
//
// Runs are in whole groups of 8 indices (a 16-byte chunk of a 16-bit row slice), spread evenly
// over the grid (blocks differ by at most one group). Measured and dropped: asking L2 for the
// down slice at the start (prefetch.global.L2::evict_last, first and last byte of each row's
// slice) made the step 15% slower on the H200 (NOTES, 2026-12-05, session 4).
#define MLP_THREADS 256
// Two blocks a multiprocessor, asked of the compiler (at most 128 registers a thread): the grid
// is one wave of them, and the driver's JIT of the PTX must not give a kernel more registers
// than that (a second wave would wait for the first's slowest block).
#define MLP_BLOCKS_PER_SM 2

// DOWN_T: `a.down` holds the down matrix transposed, [n / 2][k] (the default; a copy made when
// the graph is built): a block's slice is then `width` whole contiguous rows instead of `width`
// values of each of k rows, so phase 2 streams as phase 1 does (TinyLlama bf16 on the H100:
// the kernel 34.9 -> 32.2 us, +1-3% tok/s at 128 new tokens, +7% at 1,024; NOTES session 8).
// `LLMBENCH_CUDA_MLP=fused` reads the stored matrix instead (no copy).
// Phase 2 over the transposed down matrix: acc[j] += sum over the block's rows i of act[i] *
// down_t[i0 + i][j]. Thread t owns output chunk t % chunks (V values) and the block's rows
// t / chunks + R * m (R = blockDim.x / chunks row lanes, so a narrow model's threads all work:
// SmolLM2's 72 chunks a row take 216 of 256); a warp reads 512 contiguous bytes a load, 8 rows'
// loads in flight before any is used. The R partial sums of an output chunk meet in the
// reductions; a lane with no rows adds nothing.
#define DOWN_ROWS 8

// The first round of a thread's phase-2 loads (its first output chunk, first DOWN_ROWS rows),
// issued as soon as the thread's warp has finished its gate/up rows (GemvArgs::down_early,
// LLMBENCH_CUDA_MLP_DOWN=early): they need no activation, and issued there they are in flight
// while the other warps finish phase 1 and through the barrier between the phases, where the
// after-sync order leaves the block with no loads in flight for a round trip. The registers are
// phase 1's, dead by then. Measured no faster (H100, TinyLlama 0.998x of the default; NOTES
// session 12): the blocks reach the barrier together, so the loads save little of that trip, and
// not the default.
template <typename T>
__device__ __forceinline__ void down_first_round(const GemvArgs& a, int i0, int width, uint4 (&w)[DOWN_ROWS]) {
  constexpr int V = Vec<T>::N;
  int chunks = a.k / V, lanes = max(1, (int)blockDim.x / chunks);
  int t = threadIdx.x, c = t % chunks, r0 = t / chunks;
  const uint4* down_t = a.down + (size_t)i0 * chunks;
#pragma unroll
  for (int j = 0; j < DOWN_ROWS; ++j)
    if (t < chunks * lanes && r0 + lanes * j < width) w[j] = load_streaming(down_t + (size_t)(r0 + lanes * j) * chunks + c);
}

// LLMBENCH_CUDA_MLP_DOWN=staged (the default since session 14: H100, TinyLlama +9.8%, its MLP
// 31.3 -> 27.8 us after its release): the block's first `staged` down rows (at most
// a.down_stage_rows: all of TinyLlama's 16-24, 96 KiB in bf16) are copied into shared memory by
// the bulk copy engine, issued at the kernel's start, before its wait on the previous launch
// (weights depend on nothing): those bytes are then on their way through phase 1 and the
// barrier after it, where otherwise a block has no down loads in flight until phase 2 starts and
// pays one round trip per DOWN_ROWS rows (the trace: TinyLlama's MLP reads its 69 MB at 3.2
// TB/s on the H200, 4.1 the copy). Phase 2 then reads those rows from shared memory.
template <typename T>
__device__ void down_transposed(const GemvArgs& a, const T* act, int i0, int width, bool have_first,
                                const uint4 (&first)[DOWN_ROWS], const uint4* stage, int staged) {
  constexpr int V = Vec<T>::N, ROWS = DOWN_ROWS;
  int chunks = a.k / V, lanes = max(1, (int)blockDim.x / chunks);
  const uint4* down_t = a.down + (size_t)i0 * chunks;
  for (int t = threadIdx.x; t < chunks * lanes; t += blockDim.x) {
    int c = t % chunks, r0 = t / chunks;
    if (r0 >= width) continue;
    float s[V];
#pragma unroll
    for (int e = 0; e < V; ++e) s[e] = 0.f;
    for (int p0 = r0; p0 < width; p0 += lanes * ROWS) {
      uint4 w[ROWS];
      bool pre = have_first && t == threadIdx.x && p0 == r0;  // down_first_round's loads
#pragma unroll
      for (int j = 0; j < ROWS; ++j)
        if (p0 + lanes * j < width) {
          int p = p0 + lanes * j;
          w[j] = pre ? first[j] : p < staged ? stage[(size_t)p * chunks + c] : load_streaming(down_t + (size_t)p * chunks + c);
        }
#pragma unroll
      for (int j = 0; j < ROWS; ++j) {
        if (p0 + lanes * j >= width) continue;
        float x = to_f(act[p0 + lanes * j]);
        const T* wv = reinterpret_cast<const T*>(&w[j]);
#pragma unroll
        for (int e = 0; e < V; ++e) s[e] += x * to_f(wv[e]);
      }
    }
#pragma unroll
    for (int e = 0; e < V; e += 4) red_add_v4(a.acc + (size_t)c * V + e, s + e);
  }
}

template <typename T, bool DOWN_T>
__device__ void mlp_fused(const GemvArgs& a) {
  constexpr int V = Vec<T>::N, CPL = 8;
  extern __shared__ __align__(16) unsigned char smem[];
  T* xs = reinterpret_cast<T*>(smem);
  T* act = xs + a.k;  // k * sizeof(T) is a multiple of 16
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  int inter = a.n >> 1, groups = inter >> 3;
  int g0 = (int)((long long)blockIdx.x * groups / gridDim.x), g1 = (int)((long long)(blockIdx.x + 1) * groups / gridDim.x);
  int i0 = 8 * g0, width = 8 * (g1 - g0);
  int chunks = a.k / V, down_chunks = inter / V, slice_chunks = width / V;
  // The staged down rows after the activations of the grid's widest block (launches size the
  // shared memory so; the activations are whole 16-byte groups).
  static __shared__ __align__(8) uint64_t down_full;
  uint4* stage = reinterpret_cast<uint4*>(act + 8 * ((groups + gridDim.x - 1) / gridDim.x));
  const int staged = DOWN_T ? min(width, a.down_stage_rows) : 0;

  // Phase 1: gate row i0 + p and up row inter + i0 + p by warp p % warps; lane L reads chunks
  // L + 32 i, CPL a round, the next pair's first round issued before this pair's reduction.
  QMatrix m{a.codes, nullptr, nullptr, chunks, 0, 0};
  typename Dense<T>::Chunk w[CPL][2];
  auto issue = [&](int p, int c0) {
#pragma unroll
    for (int i = 0; i < CPL; ++i) {
      int c = c0 + lane + 32 * i;
      bool in = p < width && c < chunks;
      w[i][0] = in ? Dense<T>::load(m, i0 + p, c) : typename Dense<T>::Chunk{};
      w[i][1] = in ? Dense<T>::load(m, inter + i0 + p, c) : typename Dense<T>::Chunk{};
    }
  };
  trace_start(a.trace);
  issue(warp, 0);
  if (staged > 0 && threadIdx.x == 0) {
    mbar_init(&down_full, 1);
    fence_mbar_init();
    const uint32_t row_bytes = (uint32_t)chunks * 16;
    mbar_expect(&down_full, staged * row_bytes);
    const uint4* from = a.down + (size_t)i0 * chunks;
    for (int r = 0; r < staged; ++r) bulk_copy(stage + (size_t)r * chunks, from + (size_t)r * chunks, row_bytes, &down_full);
  }
  wait_for_previous();
  release_next();
  trace_released(a.trace);
  build_input<T>(a, xs, nullptr);
  __syncthreads();
  const bool down_early = DOWN_T && a.down_early != 0;
  uint4 first[DOWN_ROWS];
  for (int p = warp; p < width; p += warps) {
    float g = 0.f, u = 0.f;
    for (int c0 = 0; c0 < chunks; c0 += 32 * CPL) {
      if (c0 > 0) issue(p, c0);
#pragma unroll
      for (int i = 0; i < CPL; ++i) {
        int c = c0 + lane + 32 * i;
        if (c < chunks) {
          g += Dense<T>::dot(w[i][0], xs, c);
          u += Dense<T>::dot(w[i][1], xs, c);
        }
      }
    }
    issue(p + warps, 0);
    g = warp_sum(g);
    u = warp_sum(u);
    if (lane == 0) {  // candle: silu on the stored gate, times the stored up (EPI_SILU)
      g = round_t<T>(g);
      float s = round_t<T>(g / (1.f + expf(-g)));
      act[p] = from_f<T>(s * round_t<T>(u));
    }
  }
  if (down_early) down_first_round<T>(a, i0, width, first);  // this warp's pairs are done
  __syncthreads();

  if constexpr (DOWN_T) {
    if (staged > 0) mbar_wait(&down_full, 0);  // its init is visible: the barriers above came after it
    down_transposed<T>(a, act, i0, width, down_early, first, stage, staged);
    trace_end(a.trace);
    return;
  }
  // Phase 2: rows 4q .. 4q + 3 of the down matrix by thread q % blockDim.x, each row's slice
  // (slice_chunks chunks) against the activations, then one 4-wide reduction into acc.
  const uint4* down = a.down + i0 / V;
  for (int q = threadIdx.x; q < a.k / 4; q += blockDim.x) {
    float s[4] = {0.f, 0.f, 0.f, 0.f};
    for (int c0 = 0; c0 < slice_chunks; c0 += 4) {
      uint4 wv[4][4];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (c0 + j < slice_chunks) wv[r][j] = load_streaming(down + (size_t)(4 * q + r) * down_chunks + c0 + j);
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (c0 + j < slice_chunks) s[r] += Dense<T>::dot({wv[r][j]}, act, c0 + j);
    }
    red_add_v4(a.acc + 4 * q, s);
  }
  trace_end(a.trace);
}
