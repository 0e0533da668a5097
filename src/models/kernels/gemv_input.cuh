// The gemv's input vector, built by every block in shared memory before its products (included
// by llama_decode.cu after GemvArgs): the RMSNorm prologues (with or without the fused MLP's
// pending residual add), the attention split-combine, a plain copy, and the 8-bit quantization
// of that vector for the quantized formats.

// Calls f(c, src[c]) for the block's chunks c = threadIdx.x + blockDim.x * i of src[0..n), the
// loads of a thread issued LOAD_BATCH at a time before any is used: a use waits for its load, so
// a loop that loads and stores chunk by chunk pays one round trip to L2 a chunk (ncu: the down
// projection's 704-chunk input made every block wait 6 trips; results/gpu/NOTES.md v7).
#define LOAD_BATCH 4
#define COMBINE_BATCH 2  // the split-combine's float4s a thread in flight (build_input says why 2)
template <typename F>
__device__ __forceinline__ void for_chunks(const uint4* src, int n, F f) {
  for (int base = threadIdx.x; base < n; base += LOAD_BATCH * blockDim.x) {
    uint4 v[LOAD_BATCH];
#pragma unroll
    for (int i = 0; i < LOAD_BATCH; ++i) {
      int c = base + i * blockDim.x;
      if (c < n) v[i] = src[c];
    }
#pragma unroll
    for (int i = 0; i < LOAD_BATCH; ++i) {
      int c = base + i * blockDim.x;
      if (c < n) f(c, v[i]);
    }
  }
}

// NORM_PENDING's first pass: x + round(pending) rounded to T (candle's residual add of the
// previous layer's MLP output, which the fused MLP left as an f32 sum, mlp_fused.cuh) into
// shared memory, its squares into `ss`; each chunk also written to `resid_out` by exactly one
// block (chunk c by block c % gridDim.x) for the residual adds that follow.
template <typename T>
__device__ void pending_residual(const GemvArgs& a, T* xs, float& ss) {
  // One chunk a thread in flight, not LOAD_BATCH: this runs while a gemv's first round of
  // weights sits in registers, and four chunks with their f32 sums took the c8 kernel from 128
  // to 162 registers, two from 80 to 96 in c4 (fewer warps a multiprocessor); one keeps both.
  constexpr int V = Vec<T>::N, F4 = V / 4, BATCH = 1;  // F4: float4s of pending a chunk of T
  const uint4* x = static_cast<const uint4*>(a.in);
  const float4* p = reinterpret_cast<const float4*>(a.pending);
  int chunks = a.k / V;
  for (int base = threadIdx.x; base < chunks; base += BATCH * blockDim.x) {
    uint4 v[BATCH];
    float4 y[BATCH][F4];
#pragma unroll
    for (int i = 0; i < BATCH; ++i) {
      int c = base + i * blockDim.x;
      if (c < chunks) {
        v[i] = x[c];
#pragma unroll
        for (int f = 0; f < F4; ++f) y[i][f] = p[c * F4 + f];
      }
    }
#pragma unroll
    for (int i = 0; i < BATCH; ++i) {
      int c = base + i * blockDim.x;
      if (c >= chunks) continue;
      T* xv = reinterpret_cast<T*>(&v[i]);
      const float* yv = reinterpret_cast<const float*>(y[i]);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        xv[e] = from_f<T>(to_f(xv[e]) + round_t<T>(yv[e]));
        ss += to_f(xv[e]) * to_f(xv[e]);
      }
      reinterpret_cast<uint4*>(xs)[c] = v[i];
      if (a.resid_out != nullptr && c % gridDim.x == blockIdx.x) static_cast<uint4*>(a.resid_out)[c] = v[i];
    }
  }
}

// The split-combine at one attention split (positions < SPLIT), where the caller read the
// position before its wait (the default; combine_position in llama_decode.cu): one round trip
// after the wait, the partials loaded with their heads' sums l, where build_input's combine
// takes two (the position with split 0's stats, then the partials, whose loop bound depends on
// the position) and a barrier for the factors in shared memory. Its arithmetic at one split,
// m = max(-inf, m0) = m0, e = exp(0) = 1, den = 0 + l * 1 = l, w = 1 * (1 / l), t = 0 + p * w,
// is this, so the two give the same bits (NOTES session 12: TinyLlama +3.7%, SmolLM2 +10.8% on
// the H100 at 128 new tokens).
template <typename T>
__device__ void combine_one_split(const GemvArgs& a, T* xs) {
  const float* acc = static_cast<const float*>(a.in);
  const float4* acc4 = reinterpret_cast<const float4*>(acc);
  const float2* stats = reinterpret_cast<const float2*>(acc + (size_t)a.attn_splits * a.k);  // (m, l) [split][head]
  int k4 = a.k / 4;
  for (int base = threadIdx.x; base < k4; base += COMBINE_BATCH * blockDim.x) {
    float4 v[COMBINE_BATCH];
    float l[COMBINE_BATCH];
#pragma unroll
    for (int i = 0; i < COMBINE_BATCH; ++i) {
      int c = base + i * blockDim.x;
      if (c < k4) v[i] = acc4[c], l[i] = stats[4 * c / a.head_dim].y;
    }
#pragma unroll
    for (int i = 0; i < COMBINE_BATCH; ++i) {
      int c = base + i * blockDim.x;
      if (c >= k4) continue;
      float w = 1.f / l[i];
      xs[4 * c] = from_f<T>(v[i].x * w), xs[4 * c + 1] = from_f<T>(v[i].y * w), xs[4 * c + 2] = from_f<T>(v[i].z * w), xs[4 * c + 3] = from_f<T>(v[i].w * w);
    }
  }
}

// The split-combine at two or more splits, where the caller read the position before its wait
// and the launch gave the block `stage` (combine_early 2, LLMBENCH_CUDA_COMBINE=staged: every
// split's partials and stats; checked on the CPU emulator only, so not yet the default):
// all of them go to shared memory through the async copy in one round trip, registers holding
// none, where build_input's combine takes the position with split 0's stats, then the other
// splits' stats, then the partials split by split. Each thread then works out its heads' factors
// from the staged stats (the 16 threads of a head of 64 repeat a few exps), with build_input's
// arithmetic operation for operation (the same max, the same sum in the same order, the same
// products), so the two give the same bits.
template <typename T>
__device__ void combine_staged(const GemvArgs& a, T* xs, float* stage, int pos) {
  const float* acc = static_cast<const float*>(a.in);
  int heads = a.k / a.head_dim, k4 = a.k / 4, splits = (pos + SPLIT) / SPLIT;
  float4* part = reinterpret_cast<float4*>(stage);                    // [split][k]
  float2* st = reinterpret_cast<float2*>(stage + (size_t)splits * a.k);  // (m, l) [split][head]
  const float4* part_src = reinterpret_cast<const float4*>(acc);
  const float2* st_src = reinterpret_cast<const float2*>(acc + (size_t)a.attn_splits * a.k);
  for (int i = threadIdx.x; i < splits * k4; i += blockDim.x) copy_async16(part + i, part_src + i);
  for (int i = threadIdx.x; i < splits * heads; i += blockDim.x) copy_async8(st + i, st_src + i);
  copy_async_wait();
  __syncthreads();
  for (int c = threadIdx.x; c < k4; c += blockDim.x) {
    int h = 4 * c / a.head_dim;
    float m = fmaxf(-INFINITY, st[h].x), den = 0.f;
    for (int s = 1; s < splits; ++s) m = fmaxf(m, st[s * heads + h].x);
    for (int s = 0; s < splits; ++s) {
      float2 q = st[s * heads + h];
      float e = expf(q.x - m);
      den += q.y * e;
    }
    float inv = 1.f / den;
    float4 t = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int s = 0; s < splits; ++s) {
      float w = expf(st[s * heads + h].x - m) * inv;
      float4 v = part[s * k4 + c];
      t.x += v.x * w, t.y += v.y * w, t.z += v.z * w, t.w += v.w * w;
    }
    xs[4 * c] = from_f<T>(t.x), xs[4 * c + 1] = from_f<T>(t.y), xs[4 * c + 2] = from_f<T>(t.z), xs[4 * c + 3] = from_f<T>(t.w);
  }
}

// The block's input vector, T[k] in shared memory (16-byte chunks: k * sizeof(T) % 16 == 0).
// `weights`: shared scratch of n_head * attn_splits floats for the split-combine. Every load
// that does not depend on another is issued before any is used: each dependent round trip
// here is paid by every block of every projection (ncu: a two-pass norm and a combine with a
// serial loop per element made the O projection 2x slower than the QKV one of the same size).
// `pos`: COMBINE's position where the caller read it before its wait (combine_one_split,
// combine_staged: the factors' `weights` then the stage), else -1 (read here, after the wait).
template <typename T>
__device__ void build_input(const GemvArgs& a, T* xs, float* weights, int pos = -1) {
  constexpr int V = Vec<T>::N;
  static __shared__ float scratch[32];
  int chunks = a.k / V;
  if (a.prologue == PRO_NORM || a.prologue == PRO_NORM_PENDING) {
    // candle's rms_norm: f32 sum of squares, out = (scale * x) * w rounded once to T. x goes to
    // shared memory on the first pass; the first two norm-weight chunks a thread needs are
    // loaded with it.
    const uint4* x = static_cast<const uint4*>(a.in);
    const uint4* w = static_cast<const uint4*>(a.norm_w);
    uint4 wpre[2];
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      int c = threadIdx.x + j * blockDim.x;
      if (c < chunks) wpre[j] = w[c];
    }
    if (a.prologue == PRO_NORM) {
      for_chunks(x, chunks, [&](int c, uint4 raw) {
        reinterpret_cast<uint4*>(xs)[c] = raw;
        const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int i = 0; i < V; ++i) ss += to_f(v[i]) * to_f(v[i]);
      });
    } else {
      pending_residual<T>(a, xs, ss);
    }
    ss = block_sum(ss, scratch);
    float scale = rsqrtf(ss / a.k + a.eps);
    for (int j = 0, c = threadIdx.x; c < chunks; ++j, c += blockDim.x) {
      uint4 raw = reinterpret_cast<const uint4*>(xs)[c], wraw = j == 0 ? wpre[0] : j == 1 ? wpre[1] : w[c], o;
      const T* v = reinterpret_cast<const T*>(&raw);
      const T* wv = reinterpret_cast<const T*>(&wraw);
      T* ov = reinterpret_cast<T*>(&o);
#pragma unroll
      for (int i = 0; i < V; ++i) ov[i] = from_f<T>(scale * to_f(v[i]) * to_f(wv[i]));
      reinterpret_cast<uint4*>(xs)[c] = o;
    }
  } else if (a.prologue == PRO_COMBINE && pos >= 0 && pos < SPLIT) {
    combine_one_split<T>(a, xs);
  } else if (a.prologue == PRO_COMBINE && pos >= 0 && a.combine_early == 2) {
    combine_staged<T>(a, xs, weights + combine_factors_padded(a), pos);
  } else if (a.prologue == PRO_COMBINE) {
    // The attention output from the splits' partial sums (attn_split): with M the largest split
    // max of a head, out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M), rounded to T. The
    // per-(split, head) factors e^(m_s - M) / L first, one thread a head, split 0's stats (it
    // always holds positions) loaded with the position in one round trip; then COMBINE_BATCH
    // float4s a thread at a time, all splits' loads independent. TinyLlama's O projection: three
    // dependent round trips where the chain position -> stats -> one float4 at a time took six.
    // Not LOAD_BATCH (4): that took the c4 kernels from 80 to 96 registers and the quantized c8
    // ones from 128 to 155 (ptxas -v), fewer blocks a multiprocessor for every projection.
    const float* acc = static_cast<const float*>(a.in);
    const float4* acc4 = reinterpret_cast<const float4*>(acc);
    const float2* stats = reinterpret_cast<const float2*>(acc + (size_t)a.attn_splits * a.k);  // (m, l) [split][head]
    int heads = a.k / a.head_dim, k4 = a.k / 4;
    int pos = a.params[1];
    float2 stat0 = threadIdx.x < heads ? stats[threadIdx.x] : make_float2(0.f, 0.f);
    int splits = (pos + SPLIT) / SPLIT;
    for (int h = threadIdx.x; h < heads; h += blockDim.x) {
      float2 st = h == threadIdx.x ? stat0 : stats[h];
      float m = fmaxf(-INFINITY, st.x), den = 0.f;
      for (int s = 1; s < splits; ++s) m = fmaxf(m, stats[(size_t)s * heads + h].x);
      for (int s = 0; s < splits; ++s) {
        if (s > 0) st = stats[(size_t)s * heads + h];
        float e = expf(st.x - m);
        weights[s * heads + h] = e;
        den += st.y * e;
      }
      float inv = 1.f / den;
      for (int s = 0; s < splits; ++s) weights[s * heads + h] *= inv;
    }
    __syncthreads();
    for (int base = threadIdx.x; base < k4; base += COMBINE_BATCH * blockDim.x) {
      float4 t[COMBINE_BATCH];
#pragma unroll
      for (int i = 0; i < COMBINE_BATCH; ++i) t[i] = make_float4(0.f, 0.f, 0.f, 0.f);
      for (int s = 0; s < splits; ++s) {
        float4 v[COMBINE_BATCH];
#pragma unroll
        for (int i = 0; i < COMBINE_BATCH; ++i) {
          int c = base + i * blockDim.x;
          if (c < k4) v[i] = acc4[(size_t)s * k4 + c];
        }
#pragma unroll
        for (int i = 0; i < COMBINE_BATCH; ++i) {
          int c = base + i * blockDim.x;
          if (c >= k4) continue;
          float w = weights[s * heads + 4 * c / a.head_dim];
          t[i].x += v[i].x * w, t[i].y += v[i].y * w, t[i].z += v[i].z * w, t[i].w += v[i].w * w;
        }
      }
#pragma unroll
      for (int i = 0; i < COMBINE_BATCH; ++i) {
        int c = base + i * blockDim.x;
        if (c >= k4) continue;
        xs[4 * c] = from_f<T>(t[i].x), xs[4 * c + 1] = from_f<T>(t[i].y), xs[4 * c + 2] = from_f<T>(t[i].z), xs[4 * c + 3] = from_f<T>(t[i].w);
      }
    }
  } else {
    for_chunks(static_cast<const uint4*>(a.in), chunks, [&](int c, uint4 raw) { reinterpret_cast<uint4*>(xs)[c] = raw; });
  }
}

// Quantizes the f32 vector xs[0..k) to 8 bits per block of 32 << block_shift values, the CPU's
// QuantizedRows::fill_blocks arithmetic (d = amax / 127, q = round(x * (1 / d))), 8 values a lane
// and block / 8 lanes a block; codes interleaved per `il` values (0: none) as int4 reads them.
__device__ void quantize_input(const float* xs, int8_t* qs, float* d, int* sums32, int k, int block_shift, int il) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  int lanes = 4 << block_shift;  // lanes a block
  for (int base = warp * 256; base < k; base += warps * 256) {
    int i0 = base + lane * 8;
    bool in = i0 < k;  // k is a multiple of the block: a block is all in or all out
    float v[8];
    float4 lo = in ? *reinterpret_cast<const float4*>(xs + i0) : make_float4(0.f, 0.f, 0.f, 0.f);
    float4 hi = in ? *reinterpret_cast<const float4*>(xs + i0 + 4) : make_float4(0.f, 0.f, 0.f, 0.f);
    v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
    float amax = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(v[i]));
    for (int m = 1; m < lanes; m <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffff, amax, m));
    float dd = amax / 127.0f;
    float id = dd > 0.f ? 1.0f / dd : 0.f;
    int q[8], sum = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      q[i] = (int)roundf(__fmul_rn(v[i], id));
      sum += q[i];
    }
    sum += __shfl_xor_sync(0xffffffff, sum, 1);
    sum += __shfl_xor_sync(0xffffffff, sum, 2);
    if (!in) continue;
    auto pack = [](int a, int b, int c, int e) {
      return (uint32_t)(a & 255) | ((uint32_t)(b & 255) << 8) | ((uint32_t)(c & 255) << 16) | ((uint32_t)(e & 255) << 24);
    };
    if (il == 0) {
      *reinterpret_cast<uint2*>(qs + i0) = make_uint2(pack(q[0], q[1], q[2], q[3]), pack(q[4], q[5], q[6], q[7]));
    } else {
      // Within an interleave unit, value p goes to (p odd ? il/2 : 0) + p/2: a lane's 8 values
      // land as 4 contiguous even codes and 4 contiguous odd ones.
      int p0 = i0 % il, unit = i0 - p0;
      *reinterpret_cast<uint32_t*>(qs + unit + (p0 >> 1)) = pack(q[0], q[2], q[4], q[6]);
      *reinterpret_cast<uint32_t*>(qs + unit + (il >> 1) + (p0 >> 1)) = pack(q[1], q[3], q[5], q[7]);
    }
    if ((lane & 3) == 0) sums32[i0 >> 5] = sum;
    if ((lane & (lanes - 1)) == 0) d[i0 >> (5 + block_shift)] = dd;
  }
}
