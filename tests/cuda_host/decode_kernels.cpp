// The graph decode step's kernels (src/models/kernels/llama_decode.cu), run on the CPU emulator
// (cuda_host.h) for a two-layer Llama of random weights, two steps at a time, every way the host
// can wire them (src/models/cuda_graph/cuda.rs): the default launches (the fused MLP over the
// transposed down matrix), the fused MLP over the stored one, the split MLP, the streaming
// gemv, and GGUF Q8_0, Q4_0 and Q4_1 and our int8 and int4 (groups of 32 and 128) weights in an
// f32 graph, and the greedy token's kernel (also alone, on ties). After each
// launch that completes a stage, its
// outputs are compared with a double-precision reference computed from the device's inputs to
// that stage (the reference rounds to T where candle and the kernels store T, so the
// tolerance is a few units of T's rounding, and a wrong row or index is off by the values'
// whole scale).
//
// The launch shapes (blocks, threads, shared memory, warps a row pair, loads a lane) follow the
// host's rules in cuda.rs, launches.rs, projection.rs and gemv_choice.rs; a change there that a kernel
// depends on is to be made here too. Run by tests/cuda_kernels_on_cpu.rs; prints one line per
// check and "checks: N, failed: F", exit status 1 if any failed.
#include "cuda_host.h"

#include "llama_decode.cu"

alignas(16) unsigned char smem[EMU_SHARED_BYTES];

#include <string>

// ---- the kernels of one dtype ----
template <typename T> struct Kernels;
#define KERNELS(T, S)                                        \
  template <> struct Kernels<T> {                            \
    static constexpr const char* name = #S;                  \
    static constexpr auto embed = embed_##S;                 \
    static constexpr auto attn = attn_split_##S;             \
    static constexpr auto gemv_c4 = gemv_dense_##S##_c4;     \
    static constexpr auto gemv_c8 = gemv_dense_##S##_c8;     \
    static constexpr auto stream = gemv_stream_##S;          \
    static constexpr auto mlp = mlp_fused_##S;               \
    static constexpr auto mlp_t = mlp_fused_t_##S;           \
  };
KERNELS(float, f32)
KERNELS(__half, f16)
KERNELS(__nv_bfloat16, bf16)

// ---- shapes and wirings ----
struct Shape {
  const char* name;
  int hidden, n_head, n_kv, head_dim, inter, vocab, capacity;
  bool interleaved;
  unsigned sms;  // multiprocessors the host would see (sets the fused MLP's grid)
  int positions[2];  // first positions of the two-step runs (-1: none)
  // A shape too slow to emulate everywhere: bf16 only, and only the wirings named
  // (space-separated), or all where null.
  bool bf16_only;
  const char* wirings;
};
// narrow: one warp a row pair everywhere but the down projection (f32: two warps, 8 loads a
// lane), 8-16 row lanes a chunk in the transposed down product, two attention splits from 256
// (steps at 255 and 256: the newest position the last of split 0, then the first of split 1;
// in f32, past the 128 positions whose values the attention loads before its wait).
// wide: GQA 4:1, interleaved RoPE, three splits of capacity.
// tall: TinyLlama's hidden size and MLP layout: 2-3 groups of 8 intermediate values a block,
// spread unevenly (264 groups over 96 blocks; TinyLlama: 704 over 264), QKV 8 loads a lane.
// The fused MLP also runs where the host would split it (GemvChoice::mlp_blocks' sector rule:
// wide in bf16/f16, one 16-byte group a block): the kernels are checked beyond what the host
// launches.
const Shape SHAPES[] = {
    {"narrow", 128, 2, 1, 64, 1152, 96, 512, false, 8, {5, 255}, false, nullptr},
    {"wide", 1024, 8, 2, 128, 768, 160, 600, true, 48, {259, 7}, false, nullptr},
    {"tall", 2048, 16, 4, 128, 2112, 64, 300, false, 48, {260, -1}, true, " default fused down-early down-part-staged "},
};

enum class Mlp { Transposed, Fused, Split, Stream };
struct Wiring {
  const char* name;
  Mlp mlp;
  int fmt = FMT_DENSE;  // the projections' weights: quantized ones run in f32 graphs only
  int group = 0;        // int4's group
  bool attn_early = true;  // the attention's cache loads before its wait (LLMBENCH_CUDA_ATTN_LOADS)
  bool down_early = false;  // the transposed MLP's first down loads as phase 1 ends (LLMBENCH_CUDA_MLP_DOWN)
  int combine_early = 2;  // the dense O projection's combine: 0 after-wait, 1 early, 2 staged, the default (LLMBENCH_CUDA_COMBINE)
  // The transposed MLP's down rows staged in shared memory (LLMBENCH_CUDA_MLP_DOWN=staged, the
  // default: all of the widest block's, as the host stages every shape here; 0: none).
  int down_stage_rows = 1 << 20;
};
const Wiring WIRINGS[] = {
    {"default", Mlp::Transposed},
    {"fused", Mlp::Fused},
    {"split", Mlp::Split},
    {"stream", Mlp::Stream},
    {"q8_0", Mlp::Split, FMT_Q8_0},
    {"q4_0", Mlp::Split, FMT_Q4_0},
    {"q4_1", Mlp::Split, FMT_Q4_1},
    {"int8", Mlp::Split, FMT_INT8},
    {"int4-g32", Mlp::Split, FMT_INT4, 32},
    {"int4-g128", Mlp::Split, FMT_INT4, 128},
    {"after-wait", Mlp::Transposed, FMT_DENSE, 0, false},
    {"down-early", Mlp::Transposed, FMT_DENSE, 0, true, true, 2, 0},
    {"down-after-sync", Mlp::Transposed, FMT_DENSE, 0, true, false, 2, 0},
    {"combine-after-wait", Mlp::Transposed, FMT_DENSE, 0, true, false, 0},
    {"combine-early", Mlp::Transposed, FMT_DENSE, 0, true, false, 1},
    // 20 rows: part of narrow's 72-row slices, all of wide's 8, all or part of tall's 16-24.
    {"down-part-staged", Mlp::Transposed, FMT_DENSE, 0, true, false, 2, 20},
};

// ---- random data ----
struct Rng {
  uint64_t s;
  float uniform() {  // [-1, 1)
    s += 0x9e3779b97f4a7c15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
  }
};

// A device array of T and the same values as floats (what the reference reads). A weight may be
// a quantized matrix instead (fmt, codes and scales in the device layout of
// src/quant/block_layout.rs; `host` its dequantized values, `dev` null).
template <typename T> struct Tensor {
  T* dev = nullptr;
  std::vector<float> host;
  int fmt = FMT_DENSE;
  const uint4* codes = nullptr;
  const void* scales = nullptr;
  const uint8_t* zeros = nullptr;  // int4
  int group = 0;                   // int4: values a scale and zero point
};
template <typename T> Tensor<T> upload(std::vector<float> v) {
  Tensor<T> t;
  t.dev = emu::device_alloc<T>(v.size());
  t.codes = reinterpret_cast<const uint4*>(t.dev);
  for (size_t i = 0; i < v.size(); ++i) {
    t.dev[i] = from_f<T>(v[i]);
    v[i] = to_f(t.dev[i]);
  }
  t.host = std::move(v);
  return t;
}
template <typename T> Tensor<T> random(Rng& rng, size_t n, float scale, float offset = 0.f) {
  std::vector<float> v(n);
  for (auto& x : v) x = offset + scale * rng.uniform();
  return upload<T>(std::move(v));
}
template <typename T> std::vector<float> download(const T* p, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = to_f(p[i]);
  return v;
}

// A GGUF matrix of random codes and f16 scales (Q8_0: x = d q, q in [-127, 127]; Q4_0:
// x = d (q - 8); Q4_1: x = d q + m; q in [0, 15]), about the scale of `random`'s dense weights.
// Device layout: codes [n][k] bytes (Q8_0) or [n][k / 2] with byte j of a 32-value block holding
// value j in its low nibble and j + 16 in its high one; scales [n][k / 32] f16, (d, m) pairs
// for Q4_1.
template <typename T> Tensor<T> quantized(Rng& rng, int n, int k, int fmt) {
  static_assert(std::is_same_v<T, float>, "quantized weights run in an f32 graph");
  Tensor<T> t;
  t.fmt = fmt;
  t.host.resize((size_t)n * k);
  int blocks = k / 32, row_bytes = fmt == FMT_Q8_0 ? k : k / 2;
  uint8_t* codes = emu::device_alloc<uint8_t>((size_t)n * row_bytes);
  __half* scales = emu::device_alloc<__half>((size_t)n * blocks * (fmt == FMT_Q4_1 ? 2 : 1));
  float unit = std::sqrt(3.f / k);
  for (int r = 0; r < n; ++r)
    for (int b = 0; b < blocks; ++b) {
      size_t block = (size_t)r * blocks + b;
      float d = __half2float(__float2half(unit * (0.6f + 0.4f * rng.uniform()) / (fmt == FMT_Q8_0 ? 127.f : 7.5f)));
      float mn = __half2float(__float2half(-7.5f * d * (1.f + 0.1f * rng.uniform())));
      if (fmt == FMT_Q4_1) {
        scales[2 * block] = __float2half(d);
        scales[2 * block + 1] = __float2half(mn);
      } else {
        scales[block] = __float2half(d);
      }
      for (int j = 0; j < 32; ++j) {
        float* x = &t.host[(size_t)r * k + b * 32 + j];
        if (fmt == FMT_Q8_0) {
          int q = (int)std::lround(127.f * rng.uniform());
          codes[(size_t)r * row_bytes + b * 32 + j] = (uint8_t)(int8_t)q;
          *x = d * q;
        } else {
          int q = (int)((rng.uniform() + 1.f) * 8.f) & 15;
          uint8_t& byte = codes[(size_t)r * row_bytes + b * 16 + (j & 15)];
          byte = j < 16 ? (uint8_t)((byte & 0xf0) | q) : (uint8_t)((byte & 0x0f) | (q << 4));
          *x = fmt == FMT_Q4_0 ? d * (q - 8) : d * q + mn;
        }
      }
    }
  t.codes = reinterpret_cast<const uint4*>(codes);
  t.scales = scales;
  return t;
}

// Our int8 (codes [n][k] i8, an f32 scale a row: x = s q) or int4 (GPTQ-packed: value i of a
// row at bits 4 (i % 8) of word i / 8, [n][k / 8] u32; f16 scales and u8 zero points
// [n / 4][k / group][4]: x = s (q - z)) matrix of random codes (src/quant/int_weights.rs, as
// src/quant/int_cuda.rs uploads it).
template <typename T> Tensor<T> int_quantized(Rng& rng, int n, int k, int fmt, int group) {
  static_assert(std::is_same_v<T, float>, "quantized weights run in an f32 graph");
  Tensor<T> t;
  t.fmt = fmt;
  t.group = group;
  t.host.resize((size_t)n * k);
  float unit = std::sqrt(3.f / k);
  if (fmt == FMT_INT8) {
    int8_t* codes = emu::device_alloc<int8_t>((size_t)n * k);
    float* scales = emu::device_alloc<float>(n);
    for (int r = 0; r < n; ++r) {
      scales[r] = unit * (0.6f + 0.4f * rng.uniform()) / 127.f;
      for (int i = 0; i < k; ++i) {
        int q = (int)std::lround(127.f * rng.uniform());
        codes[(size_t)r * k + i] = (int8_t)q;
        t.host[(size_t)r * k + i] = scales[r] * q;
      }
    }
    t.codes = reinterpret_cast<const uint4*>(codes);
    t.scales = scales;
    return t;
  }
  int groups = k / group;
  uint32_t* packed = emu::device_alloc<uint32_t>((size_t)n * k / 8);
  __half* scales = emu::device_alloc<__half>((size_t)n * groups);
  uint8_t* zeros = emu::device_alloc<uint8_t>((size_t)n * groups);
  for (int r = 0; r < n; ++r)
    for (int g = 0; g < groups; ++g) {
      size_t p = ((size_t)(r / 4) * groups + g) * 4 + (r % 4);
      float sc = __half2float(__float2half(unit * (0.6f + 0.4f * rng.uniform()) / 7.5f));
      int z = 6 + (int)((rng.uniform() + 1.f) * 2.f);  // 6 .. 9
      scales[p] = __float2half(sc);
      zeros[p] = (uint8_t)z;
      for (int i = g * group; i < (g + 1) * group; ++i) {
        uint32_t q = (uint32_t)((rng.uniform() + 1.f) * 8.f) & 15;
        packed[((size_t)r * k + i) / 8] |= q << (4 * (i % 8));
        t.host[(size_t)r * k + i] = sc * ((int)q - z);
      }
    }
  t.codes = reinterpret_cast<const uint4*>(packed);
  t.scales = scales;
  t.zeros = zeros;
  return t;
}

template <typename T> struct Layer {
  Tensor<T> input_norm, post_norm, qkv, o, gate_up, down, down_t;
};
template <typename T> struct Model {
  Shape s;
  int q_dim, kv_dim, qkv_dim, max_splits;
  Tensor<T> embed, final_norm, head, cos, sin;
  std::vector<Layer<T>> layers;
  // Device buffers of a step (cuda.rs's Buffers and AttentionScratch).
  int* params;
  T* xs[2];
  T* q;
  T* act;
  float* zeroed;  // the fused MLPs' sums
  int zeroed_len, sums_len;
  float* logits;
  unsigned* token;  // the greedy token (argmax_f32)
  unsigned* host_picks;  // its two page-locked host words (LLMBENCH_CUDA_REPLAY=direct)
  float* partial;
  unsigned long long* trace;  // 64 launches' timeline slots (trace.cuh), 4 stamps each
  std::vector<Tensor<T>> k_cache, v_cache;  // per layer, [n_kv][capacity][head_dim]
};

// `fmt`: the projections' format (the embedding and norms stay dense); `group`: int4's.
template <typename T> Model<T> build(const Shape& s, uint64_t seed, int fmt = FMT_DENSE, int group = 0) {
  Rng rng{seed};
  Model<T> m;
  m.s = s;
  m.q_dim = s.n_head * s.head_dim;
  m.kv_dim = s.n_kv * s.head_dim;
  m.qkv_dim = m.q_dim + 2 * m.kv_dim;
  m.max_splits = (s.capacity + SPLIT - 1) / SPLIT;
  auto w = [&](int n, int k) {
    if constexpr (std::is_same_v<T, float>) {
      if (fmt == FMT_INT8 || fmt == FMT_INT4) return int_quantized<T>(rng, n, k, fmt, group);
      if (fmt != FMT_DENSE) return quantized<T>(rng, n, k, fmt);
    }
    return random<T>(rng, (size_t)n * k, std::sqrt(3.f / k));
  };
  m.embed = random<T>(rng, (size_t)s.vocab * s.hidden, 1.f);
  for (int l = 0; l < 2; ++l) {
    Layer<T> L;
    L.input_norm = random<T>(rng, s.hidden, 0.2f, 1.f);
    L.post_norm = random<T>(rng, s.hidden, 0.2f, 1.f);
    L.qkv = w(m.qkv_dim, s.hidden);
    L.o = w(s.hidden, m.q_dim);
    L.gate_up = w(2 * s.inter, s.hidden);
    L.down = w(s.hidden, s.inter);
    std::vector<float> t((size_t)s.inter * s.hidden);
    for (int r = 0; r < s.hidden; ++r)
      for (int c = 0; c < s.inter; ++c) t[(size_t)c * s.hidden + r] = L.down.host[(size_t)r * s.inter + c];
    L.down_t = upload<T>(std::move(t));
    m.layers.push_back(std::move(L));
  }
  m.final_norm = random<T>(rng, s.hidden, 0.2f, 1.f);
  m.head = w(s.vocab, s.hidden);
  std::vector<float> c((size_t)s.capacity * s.head_dim / 2), sn(c.size());
  for (int p = 0; p < s.capacity; ++p)
    for (int i = 0; i < s.head_dim / 2; ++i) {
      double angle = p * std::pow(10000.0, -2.0 * i / s.head_dim);
      c[(size_t)p * s.head_dim / 2 + i] = (float)std::cos(angle);
      sn[(size_t)p * s.head_dim / 2 + i] = (float)std::sin(angle);
    }
  m.cos = upload<T>(std::move(c));
  m.sin = upload<T>(std::move(sn));
  m.params = emu::device_alloc<int>(2);
  m.xs[0] = emu::device_alloc<T>(s.hidden);
  m.xs[1] = emu::device_alloc<T>(s.hidden);
  m.q = emu::device_alloc<T>(m.q_dim);
  m.act = emu::device_alloc<T>(s.inter);
  m.sums_len = (2 * s.hidden + 3) / 4 * 4;  // cuda.rs's mlp_sums_len: whole float4s
  m.zeroed_len = m.sums_len;
  m.zeroed = emu::device_alloc<float>(m.zeroed_len);
  m.logits = emu::device_alloc<float>(s.vocab);
  m.token = emu::device_alloc<unsigned>(1);
  m.host_picks = emu::device_alloc<unsigned>(2);
  m.partial = emu::device_alloc<float>((size_t)m.max_splits * s.n_head * (s.head_dim + 2));
  m.trace = emu::device_alloc<unsigned long long>(64 * 4);
  return m;
}

// Caches of random history before `pos` (the prefill's), the same for every wiring; NaN from
// `pos` on, where nothing is written yet: attn_split's split 0 loads positions past the length
// and must drop them (a NaN weighted by a zero probability would still reach the output).
template <typename T> void reset_caches(Model<T>& m, int pos, uint64_t seed) {
  Rng rng{seed};
  m.k_cache.clear();
  m.v_cache.clear();
  for (int l = 0; l < 2; ++l) {
    size_t n = (size_t)m.s.n_kv * m.s.capacity * m.s.head_dim;
    std::vector<float> k(n, NAN), v(n, NAN);
    for (int h = 0; h < m.s.n_kv; ++h)
      for (int p = 0; p < pos; ++p)
        for (int j = 0; j < m.s.head_dim; ++j) {
          size_t at = ((size_t)h * m.s.capacity + p) * m.s.head_dim + j;
          k[at] = rng.uniform();
          v[at] = rng.uniform();
        }
    m.k_cache.push_back(upload<T>(std::move(k)));
    m.v_cache.push_back(upload<T>(std::move(v)));
  }
}

// ---- the reference, in double, rounding to T where the kernels store T ----
template <typename T> float rt(double x) { return round_t<T>((float)x); }

template <typename T> std::vector<float> rms_norm(const std::vector<float>& x, const std::vector<float>& w, float eps) {
  double ss = 0;
  for (float v : x) ss += (double)v * v;
  double scale = 1.0 / std::sqrt(ss / x.size() + eps);
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = rt<T>(scale * x[i] * w[i]);
  return out;
}
template <typename X> std::vector<double> matvec(const std::vector<float>& w, int n, int k, const std::vector<X>& x) {
  std::vector<double> y(n);
  for (int r = 0; r < n; ++r) {
    double acc = 0;
    for (int c = 0; c < k; ++c) acc += (double)w[(size_t)r * k + c] * x[c];
    y[r] = acc;
  }
  return y;
}
// W x as the kernel computes it: for a quantized W, against x quantized to 8 bits a block (32
// values; int4: its group) as quantize_input does (d = amax / 127, q = round(x (1 / d)), in f32).
template <typename T> std::vector<double> project(const Tensor<T>& w, int n, int k, const std::vector<float>& x) {
  if (w.fmt == FMT_DENSE) return matvec(w.host, n, k, x);
  std::vector<double> xq(k);
  int block = w.fmt == FMT_INT4 ? w.group : 32;
  for (int b = 0; b < k; b += block) {
    float amax = 0.f;
    for (int i = b; i < b + block; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    float dd = amax / 127.0f, id = dd > 0.f ? 1.0f / dd : 0.f;
    for (int i = b; i < b + block; ++i) xq[i] = (double)std::round(x[i] * id) * dd;
  }
  return matvec(w.host, n, k, xq);
}

// x + round(pending) rounded to T: the residual add of a fused MLP's sum (PRO_NORM_PENDING).
template <typename T> std::vector<float> add_pending(const std::vector<float>& x, const float* pending) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = rt<T>(x[i] + round_t<T>(pending[i]));
  return out;
}

// ---- checks ----
struct Tally {
  int checks = 0, failed = 0;
} tally;

// Largest difference relative to the reference's largest magnitude.
void check(const std::string& where, const char* what, const std::vector<float>& got, const std::vector<double>& want, double tol) {
  double scale = 1e-3, worst = 0;
  size_t at = 0;
  const bool is_cache = std::strcmp(what, "cache") == 0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < want.size(); ++i) {
    if (is_cache && std::isnan(want[i]) && std::isnan(got[i])) continue;  // unwritten positions
    double d = std::fabs((double)got[i] - want[i]);
    if (!(d <= worst)) worst = d, at = i;  // NaN counts as worst
  }
  double rel = worst / scale;
  bool ok = rel <= tol;
  tally.checks++;
  if (!ok) tally.failed++;
  std::printf("%s %-8s rel %.2e (tol %.0e)%s\n", where.c_str(), what, rel, tol,
              ok ? "" : (" FAILED at " + std::to_string(at) + ": got " + std::to_string(got[at]) + ", want " + std::to_string(want[at])).c_str());
}
// Measured worst cases over every check (2026-12-05): f32 5.2e-7, f16 7.1e-4, bf16 5.6e-3 (a
// stored value one unit of T off where a sum lands near a rounding boundary). A wrong row,
// split or block is off by about the values' scale (0.02-1.6 in the mutations tried).
template <typename T> double tolerance() {
  if constexpr (std::is_same_v<T, float>) return 1e-5;
  if constexpr (std::is_same_v<T, __half>) return 4e-3;
  return 2e-2;
}
std::vector<double> widen(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// ---- launches, shaped as the host shapes them ----
constexpr unsigned GEMV_THREADS = 128, WARPS_PER_BLOCK = 4, EMBED_THREADS = 512;
int next_pow2(int v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}
int pairs_for(const GemvArgs& a) { return a.epilogue == EPI_SILU || a.epilogue == EPI_ROPE ? a.n / 2 : (a.n + 1) / 2; }
// launches.rs's combine_shared_bytes: the factors, and with the early combine its stage.
int combine_bytes(const GemvArgs& a) {
  if (a.prologue != PRO_COMBINE) return 0;
  int factors = 4 * a.attn_splits * a.n_head;
  return a.combine_early == 2 ? (factors + 15) / 16 * 16 + a.attn_splits * (4 * a.k + 8 * a.n_head) : factors;
}

// The warp gemv or (stream) the streaming gemv: projection.rs's choice of warps a pair and
// loads a lane, gemv_choice.rs's stream shape, cuda.rs's grid.
// The quantized formats' gemv kernels (f32 graphs only).
using GemvKernel = void (*)(const GemvArgs);
GemvKernel quantized_gemv(int fmt, bool c8) {
  switch (fmt) {
    case FMT_Q8_0: return c8 ? gemv_q8_0_f32_c8 : gemv_q8_0_f32_c4;
    case FMT_Q4_0: return c8 ? gemv_q4_0_f32_c8 : gemv_q4_0_f32_c4;
    case FMT_Q4_1: return c8 ? gemv_q4_1_f32_c8 : gemv_q4_1_f32_c4;
    case FMT_INT8: return c8 ? gemv_int8_f32_c8 : gemv_int8_f32_c4;
    default: return c8 ? gemv_int4_f32_c8 : gemv_int4_f32_c4;
  }
}

// `w`: the weight (dense, or quantized: projection.rs's `quantized` fields and shared memory).
template <typename T> bool gemv(const char* name, GemvArgs a, const Tensor<T>& w, bool stream, unsigned sms) {
  using K = Kernels<T>;
  a.codes = w.codes;
  a.scales = w.scales;
  if (w.fmt != FMT_DENSE || stream) a.combine_early = 0;  // launches.rs: the dense warp kernel only
  int size = sizeof(T), chunks = a.k / (16 / size), pairs = pairs_for(a), combine = combine_bytes(a);
  if (w.fmt != FMT_DENSE) {
    chunks = w.fmt == FMT_Q8_0 || w.fmt == FMT_INT8 ? a.k / 16 : a.k / 32;
    if (w.fmt == FMT_INT4) {  // projection.rs's quantized(): groups, activation blocks, interleave
      a.zeros = w.zeros;
      a.groups = a.k / w.group;
      a.group_shift = a.act_block_shift = __builtin_ctz(w.group / 32);
      a.act_il = w.group % 64 == 0 ? 64 : 32;
    }
    int W = std::min(4, next_pow2((chunks + 255) / 256));
    a.warps_per_pair = W;
    GemvKernel kernel = quantized_gemv(w.fmt, (chunks + 32 * W - 1) / (32 * W) > 4);
    unsigned blocks = (unsigned)((pairs * W + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    size_t shared = 4 * (size_t)a.k + a.k + 8 * (size_t)(a.k / 32) + combine;
    return emu::launch(name, dim3{blocks}, dim3{GEMV_THREADS}, shared, [a, kernel] { kernel(a); });
  }
  if (stream) {
    int row_bytes = a.k * size, rows = 2;
    for (int r : {8, 4, 2})
      if (r * row_bytes <= 16 * 1024) {
        rows = r;
        break;
      }
    int stages = std::clamp(96 * 1024 / (rows * row_bytes), 2, 16);
    a.stage_rows = rows;
    a.stages = stages;
    unsigned blocks = std::max(1u, std::min((unsigned)((pairs + rows / 2 - 1) / (rows / 2)), sms * 2));
    size_t shared = (size_t)stages * rows * row_bytes + row_bytes + combine;
    return emu::launch(name, dim3{blocks}, dim3{256}, shared, [a] { K::stream(a); });
  }
  int W = std::min(4, next_pow2((chunks + 255) / 256));
  a.warps_per_pair = W;
  int per_lane = (chunks + 32 * W - 1) / (32 * W);
  unsigned blocks = (unsigned)((pairs * W + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
  size_t shared = (size_t)a.k * size + combine;
  if (per_lane > 4) return emu::launch(name, dim3{blocks}, dim3{GEMV_THREADS}, shared, [a] { K::gemv_c8(a); });
  return emu::launch(name, dim3{blocks}, dim3{GEMV_THREADS}, shared, [a] { K::gemv_c4(a); });
}

// The fused MLP's grid (GemvChoice::mlp_blocks: one wave of two blocks a multiprocessor, at most
// one block a group of 8 intermediate indices) and its shared memory.
unsigned mlp_blocks(int inter, unsigned sms) { return std::max(1u, std::min(sms * 2, (unsigned)(inter / 8))); }
size_t mlp_shared(int hidden, int inter, unsigned blocks, int size) {
  int groups = inter / 8;
  return (size_t)hidden * size + 8 * (size_t)((groups + blocks - 1) / blocks) * size;
}

// A launch's arguments over `base`'s (cuda.rs's launch_args): its shape, input, output,
// prologue and epilogue; the weight's fields are gemv's (or set by the caller).
GemvArgs with_io(GemvArgs base, int n, int k, const void* in, void* out, int prologue, int epilogue) {
  base.n = n;
  base.k = k;
  base.in = in;
  base.out = out;
  base.prologue = prologue;
  base.epilogue = epilogue;
  return base;
}

// The first index of the largest of `n` values (the host sampler's argmax, NaN never larger).
int first_max(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

// argmax_f32 on ties: within a 16-byte load, across threads where the later index sits on the
// lower thread (candle's CUDA argmax would take the lower thread, not the lower index), across
// warps and across a thread's load rounds; on -inf and NaN; on a length that is not a multiple
// of 4 (the last values read one at a time) and one shorter than the block. Thread t reads the
// 4-value runs t + 1024 j, so index 4t + 4096 j + r is its; a round covers 8 runs (32,768 values).
void argmax_cases() {
  emu::device_reset();
  const int n = 40003;  // two rounds and a 3-value tail
  float* v = emu::device_alloc<float>(n);
  unsigned* token = emu::device_alloc<unsigned>(1);
  Rng rng{7};
  auto run = [&](int len, const char* what, int expected) {
    *token = 12345;
    bool ok = emu::launch("argmax", dim3{1}, dim3{ARGMAX_THREADS}, 0, [=] { argmax_f32(v, len, token, nullptr, nullptr, nullptr); });
    check(std::string("argmax ") + what, "token", {ok ? (float)*token : -1.f}, {(double)expected}, 0.0);
  };
  for (int i = 0; i < n; ++i) v[i] = rng.uniform();
  run(n, "random", first_max(v, n));
  v[4096] = v[20] = 2.f;  // thread 0 (round 1's second run) and thread 5, one warp
  run(n, "tie within a warp", 20);
  v[101] = v[103] = 2.25f;  // one load of thread 25
  run(n, "tie within a load", 101);
  v[4096 + 4] = v[160] = 2.5f;  // thread 1 and thread 40 (warp 1)
  run(n, "tie across warps", 160);
  v[32768 + 8] = v[8 + 4096] = 2.75f;  // thread 2, rounds 2 and 1
  run(n, "tie across a thread's rounds", 8 + 4096);
  v[32768 + 12] = 2.8f;  // only in round 2
  run(n, "largest in the second round", 32768 + 12);
  v[n - 2] = 3.f;
  run(n, "largest in the tail", n - 2);
  v[n - 1] = v[n - 2];
  run(n, "tie within the tail", n - 2);
  v[30] = v[n - 2];
  run(n, "tie between a load and the tail", 30);
  v[4] = v[n - 2] = 3.25f;  // both thread 1's: its 4-value run, then its tail value
  run(n, "tie between a thread's load and its tail value", 4);
  v[4000] = 3.5f;
  v[3000] = NAN;
  run(n, "with a NaN", 4000);
  run(3, "shorter than a load", first_max(v, 3));
  run(4001, "shorter than a round", first_max(v, 4001));
  for (int i = 0; i < n; ++i) v[i] = -INFINITY;
  run(n, "all -inf", 0);
}

// ---- one decode step, as cuda.rs's enqueue queues it, with the checks between launches ----
template <typename T> bool step(Model<T>& m, const Wiring& wiring, int token, int pos) {
  using K = Kernels<T>;
  const Shape& s = m.s;
  const int size = sizeof(T), d = s.head_dim, half = d / 2;
  // Quantized weights: the kernel quantizes the input vector it built (norm, split-combine) to 8
  // bits, and a last-bit difference from the reference's vector can flip one code, ~1e-3 of
  // the output's scale (measured worst without a flip: 3.6e-7).
  const double tol = wiring.fmt != FMT_DENSE ? 2e-3 : tolerance<T>();
  const bool stream = wiring.mlp == Mlp::Stream, fused = wiring.mlp == Mlp::Fused || wiring.mlp == Mlp::Transposed;
  const bool transposed = wiring.mlp == Mlp::Transposed;
  std::string where = std::string(K::name) + " " + s.name + " " + wiring.name + " pos " + std::to_string(pos);
  m.params[0] = token;
  m.params[1] = pos;
  // Every launch stamps a trace slot, as under LLMBENCH_CUDA_TRACE (trace.rs's reset values);
  // checked at the end: each slot stamped, in order.
  int slots = 0;
  for (int i = 0; i < 64 * 4; ++i) m.trace[i] = i % 4 < 2 ? ~0ull : 0ull;
  auto slot = [&] { return m.trace + 4 * slots++; };
  float inv_sqrt_d = 1.f / std::sqrt((float)d);
  GemvArgs shape{};
  shape.params = m.params;
  shape.cos = m.cos.dev;
  shape.sin = m.sin.dev;
  shape.n_head = s.n_head;
  shape.n_kv = s.n_kv;
  shape.head_dim = d;
  shape.capacity = s.capacity;
  shape.interleaved = s.interleaved;
  shape.attn_splits = m.max_splits;
  shape.combine_early = wiring.combine_early;
  shape.eps = 1e-5f;
  int acc4 = m.zeroed_len / 4;
  unsigned embed_blocks = std::clamp((unsigned)((acc4 + EMBED_THREADS - 1) / EMBED_THREADS), 1u, 64u);
  float4* accs = reinterpret_cast<float4*>(m.zeroed);
  T* table = m.embed.dev;
  T* x0 = m.xs[0];
  int hidden = s.hidden;
  int* params = m.params;
  unsigned long long* embed_slot = slot();
  if (!emu::launch("embed", dim3{embed_blocks}, dim3{EMBED_THREADS}, 0,
                   [=] { K::embed(table, params, x0, hidden, accs, acc4, embed_slot); }))
    return false;
  int x = 0;
  float* pending = nullptr;
  for (int l = 0; l < 2; ++l) {
    Layer<T>& L = m.layers[l];
    std::string at = where + " layer " + std::to_string(l);
    T* kc = m.k_cache[l].dev;
    T* vc = m.v_cache[l].dev;
    float* acc = m.zeroed + (size_t)l * s.hidden;
    // The layer's input: the residual stream, with the previous fused MLP's sum added.
    std::vector<float> x_in = download(m.xs[x], s.hidden);
    if (pending != nullptr) x_in = add_pending<T>(x_in, pending);
    const int x_out = pending != nullptr ? 1 - x : x;  // where the QKV prologue leaves the stream

    // The launches' arguments, as enqueue builds them.
    GemvArgs qa = with_io(shape, m.qkv_dim, s.hidden, m.xs[x], m.q, PRO_NORM, EPI_ROPE);
    qa.codes = L.qkv.codes;
    qa.norm_w = L.input_norm.dev;
    qa.k_cache = kc;
    qa.v_cache = vc;
    qa.trace = slot();
    if (pending != nullptr) {
      qa.prologue = PRO_NORM_PENDING;
      qa.pending = pending;
      qa.resid_out = m.xs[x_out];
    }
    GemvArgs oa = with_io(shape, s.hidden, m.q_dim, m.partial, m.xs[x_out], PRO_COMBINE, EPI_RESIDUAL);
    oa.codes = L.o.codes;
    GemvArgs ma = with_io(shape, 2 * s.inter, s.hidden, m.xs[x_out], nullptr, PRO_NORM, EPI_SILU);
    ma.codes = L.gate_up.codes;
    ma.norm_w = L.post_norm.dev;
    ma.down = reinterpret_cast<const uint4*>(transposed ? L.down_t.dev : L.down.dev);
    ma.acc = acc;
    ma.down_early = wiring.down_early;
    ma.down_stage_rows = transposed ? wiring.down_stage_rows : 0;
    const unsigned blocks = mlp_blocks(s.inter, s.sms);
    // projection.rs's fused_mlp: the staged rows of the widest block after its activations.
    const size_t widest = 8 * (size_t)((s.inter / 8 + blocks - 1) / blocks);
    const size_t shared = mlp_shared(s.hidden, s.inter, blocks, size) + std::min<size_t>(ma.down_stage_rows, widest) * s.hidden * size;

    // QKV and the attention.
    if (!gemv<T>("qkv", qa, L.qkv, stream, s.sms)) return false;
    {
      const T *qp = m.q, *kcp = kc, *vcp = vc;
      float* part = m.partial;
      int n_head = s.n_head, n_kv = s.n_kv, capacity = s.capacity, max_splits = m.max_splits;
      unsigned long long* attention_slot = slot();
      int early = wiring.attn_early;
      // What the QKV launch wrote: the query and the newest position's cache rows.
      emu::Unpublished qkv_out;
      qkv_out.add(m.q, (size_t)n_head * d * size);
      for (int h = 0; h < n_kv; ++h) {
        qkv_out.add(kc + ((size_t)h * capacity + pos) * d, (size_t)d * size);
        qkv_out.add(vc + ((size_t)h * capacity + pos) * d, (size_t)d * size);
      }
      emu::unpublished = &qkv_out;
      bool launched = emu::launch("attention", dim3{(unsigned)s.n_head, (unsigned)m.max_splits}, dim3{SPLIT}, 0, [=] {
        K::attn(qp, kcp, vcp, params, part, n_head, n_kv, d, capacity, inv_sqrt_d, max_splits, early, attention_slot);
      });
      qkv_out.show();
      emu::unpublished = nullptr;
      if (!launched) return false;
    }
    // The stream O adds to: the QKV prologue's copy (checked exactly).
    std::vector<float> x_before_o = download(m.xs[x_out], s.hidden);
    if (pending != nullptr) check(at, "resid", x_before_o, widen(x_in), 0.0);
    x = x_out;
    {
      std::vector<float> xn = rms_norm<T>(x_in, L.input_norm.host, shape.eps);
      std::vector<double> y = project(L.qkv, m.qkv_dim, s.hidden, xn);
      std::vector<double> q(m.q_dim), k(m.kv_dim), v(m.kv_dim);
      const float* cs = &m.cos.host[(size_t)pos * half];
      const float* sn = &m.sin.host[(size_t)pos * half];
      for (int h = 0; h < s.n_head + 2 * s.n_kv; ++h)
        for (int i = 0; i < half; ++i) {
          int i1 = s.interleaved ? 2 * i : i, i2 = s.interleaved ? 2 * i + 1 : i + half;
          double x1 = rt<T>(y[h * d + i1]), x2 = rt<T>(y[h * d + i2]);
          double o1 = x1 * cs[i] - x2 * sn[i], o2 = x1 * sn[i] + x2 * cs[i];
          if (h >= s.n_head + s.n_kv) o1 = x1, o2 = x2;
          std::vector<double>& out = h < s.n_head ? q : h < s.n_head + s.n_kv ? k : v;
          int base = (h < s.n_head ? h : h < s.n_head + s.n_kv ? h - s.n_head : h - s.n_head - s.n_kv) * d;
          out[base + i1] = o1;
          out[base + i2] = o2;
        }
      std::vector<float> kd(m.kv_dim), vd(m.kv_dim);
      for (int h = 0; h < s.n_kv; ++h)
        for (int j = 0; j < d; ++j) {
          kd[h * d + j] = to_f(kc[((size_t)h * s.capacity + pos) * d + j]);
          vd[h * d + j] = to_f(vc[((size_t)h * s.capacity + pos) * d + j]);
        }
      check(at, "q", download(m.q, m.q_dim), q, tol);
      check(at, "k", kd, k, tol);
      check(at, "v", vd, v, tol);
      // The new rows join the host's copy of the cache; then the whole device cache must equal
      // it: a store anywhere else (another position, another head) is a bug the k/v checks miss.
      std::vector<float>& kh = m.k_cache[l].host;
      std::vector<float>& vh = m.v_cache[l].host;
      for (int h = 0; h < s.n_kv; ++h)
        for (int j = 0; j < d; ++j) {
          size_t i = ((size_t)h * s.capacity + pos) * d + j;
          kh[i] = kd[h * d + j];
          vh[i] = vd[h * d + j];
        }
      check(at, "cache", download(kc, kh.size()), widen(kh), 0.0);
      check(at, "cache", download(vc, vh.size()), widen(vh), 0.0);
    }

    // The reference attention and O from the device's q and cache: x1 = x + O attn.
    std::vector<double> x1(s.hidden);
    {
      std::vector<float> qd = download(m.q, m.q_dim), attn(m.q_dim);
      int len = pos + 1, group = s.n_head / s.n_kv;
      for (int h = 0; h < s.n_head; ++h) {
        int kvh = h / group;
        std::vector<double> score(len);
        double top = -INFINITY;
        for (int p = 0; p < len; ++p) {
          double dot = 0;
          for (int j = 0; j < d; ++j) dot += (double)qd[h * d + j] * m.k_cache[l].host[((size_t)kvh * s.capacity + p) * d + j];
          score[p] = rt<T>(rt<T>(dot) * inv_sqrt_d);
          top = std::max(top, score[p]);
        }
        double den = 0;
        for (double& e : score) den += (e = std::exp(e - top));
        for (int j = 0; j < d; ++j) {
          double o = 0;
          for (int p = 0; p < len; ++p) o += score[p] * m.v_cache[l].host[((size_t)kvh * s.capacity + p) * d + j];
          attn[h * d + j] = rt<T>(o / den);
        }
      }
      std::vector<double> o = project(L.o, s.hidden, m.q_dim, attn);
      for (int i = 0; i < s.hidden; ++i) x1[i] = rt<T>(x_before_o[i] + rt<T>(o[i]));
    }
    oa.trace = slot();
    {
      // What the attention wrote: every split's partial outputs and (max, sum) stats.
      emu::Unpublished attention_out;
      attention_out.add(m.partial, (size_t)m.max_splits * s.n_head * (d + 2) * sizeof(float));
      emu::unpublished = &attention_out;
      bool launched = gemv<T>("o", oa, L.o, stream, s.sms);
      attention_out.show();
      emu::unpublished = nullptr;
      if (!launched) return false;
    }
    std::vector<float> x1_dev = download(m.xs[x], s.hidden);
    check(at, "x+o", x1_dev, x1, tol);

    // The MLP from the device's x1: fused into acc, or split into x.
    std::vector<float> xn = rms_norm<T>(x1_dev, L.post_norm.host, shape.eps);
    std::vector<double> gu = project(L.gate_up, 2 * s.inter, s.hidden, xn);
    std::vector<float> act(s.inter);
    for (int i = 0; i < s.inter; ++i) {
      float g = rt<T>(gu[i]), u = rt<T>(gu[s.inter + i]);
      act[i] = rt<T>(rt<T>(g / (1.0 + std::exp(-(double)g))) * u);
    }
    std::vector<double> down = project(L.down, s.hidden, s.inter, act);
    if (fused) {
      auto kernel = transposed ? K::mlp_t : K::mlp;
      GemvArgs mt = ma;
      mt.trace = slot();
      if (!emu::launch("mlp", dim3{blocks}, dim3{256}, shared, [=] { kernel(mt); })) return false;
      check(at, "mlp-sum", std::vector<float>(acc, acc + s.hidden), down, tol);
      pending = acc;
    } else {
      GemvArgs ga = ma;
      ga.down = nullptr;
      ga.acc = nullptr;
      ga.out = m.act;
      ga.trace = slot();
      if (!gemv<T>("gate_up", ga, L.gate_up, stream, s.sms)) return false;
      GemvArgs da = with_io(shape, s.hidden, s.inter, m.act, m.xs[x], PRO_PLAIN, EPI_RESIDUAL);
      da.trace = slot();
      std::vector<float> act_dev = download(m.act, s.inter);
      check(at, "act", act_dev, widen(act), tol);
      if (!gemv<T>("down", da, L.down, stream, s.sms)) return false;
      // From the device's activations, as every stage's reference: a quantized down projection
      // quantizes them again, and one code flipped by a last-bit difference is not a bug.
      down = project(L.down, s.hidden, s.inter, act_dev);
      std::vector<double> x2(s.hidden);
      for (int i = 0; i < s.hidden; ++i) x2[i] = rt<T>(x1_dev[i] + rt<T>(down[i]));
      check(at, "x+mlp", download(m.xs[x], s.hidden), x2, tol);
    }
  }

  // The head: norm (with the last fused MLP's sum added) and logits.
  std::vector<float> x_last = download(m.xs[x], s.hidden);
  if (pending != nullptr) x_last = add_pending<T>(x_last, pending);
  GemvArgs ha = with_io(shape, s.vocab, s.hidden, m.xs[x], m.logits, pending != nullptr ? PRO_NORM_PENDING : PRO_NORM, EPI_LOGITS);
  ha.norm_w = m.final_norm.dev;
  ha.pending = pending;
  ha.trace = slot();
  if (!gemv<T>("head", ha, m.head, stream, s.sms)) return false;
  std::vector<double> logits = project(m.head, s.vocab, s.hidden, rms_norm<T>(x_last, m.final_norm.host, shape.eps));
  for (double& v : logits) v = rt<T>(v);
  check(where, "logits", std::vector<float>(m.logits, m.logits + s.vocab), logits, tol);
  // The greedy token, from the device's logits: their first maximum.
  {
    float* lg = m.logits;
    unsigned* token = m.token;
    int vocab = s.vocab;
    int* next = m.params;
    unsigned* host_picks = m.host_picks;
    const unsigned untouched = 77777;  // the word of the step after this one keeps it
    host_picks[0] = host_picks[1] = untouched;
    unsigned long long* argmax_slot = slot();
    if (!emu::launch("argmax", dim3{1}, dim3{ARGMAX_THREADS}, 0, [=] { argmax_f32(lg, vocab, token, next, host_picks, argmax_slot); })) return false;
    int pick = first_max(m.logits, s.vocab);
    check(where, "argmax", {(float)*m.token}, {(double)pick}, 0.0);
    // The next step's parameters, as the host would write them (cuda.rs's lookahead queues
    // that step with these), and the pick in the host's word for this position, not the next's.
    check(where, "next params",
          {(float)m.params[0], (float)m.params[1], (float)host_picks[pos & 1], (float)host_picks[(pos + 1) & 1]},
          {(double)pick, (double)(pos + 1), (double)pick, (double)untouched}, 0.0);
  }
  // Each launch's stamps: its first block's start <= first release <= last release <= last
  // block's end, none left at its reset value (a block that returned before trace_end would).
  std::vector<float> unstamped(1, 0.f);
  for (int i = 0; i < slots; ++i) {
    const unsigned long long* t = m.trace + 4 * i;
    if (t[0] == ~0ull || t[1] == ~0ull || t[3] == 0 || t[0] > t[1] || t[1] > t[2] || t[2] > t[3]) unstamped[0] += 1.f;
  }
  check(where, "trace", unstamped, {0.0}, 0.0);
  return true;
}

template <typename T> void run_all(const char* only) {
  for (const Shape& s : SHAPES) {
    if (s.bf16_only && !std::is_same_v<T, __nv_bfloat16>) continue;
    emu::device_reset();
    Model<T> dense = build<T>(s, 1);
    for (const Wiring& w : WIRINGS) {
      if (only != nullptr && std::string(only) != w.name) continue;
      if (w.fmt != FMT_DENSE && !std::is_same_v<T, float>) continue;
      if (s.wirings != nullptr && !std::strstr(s.wirings, (" " + std::string(w.name) + " ").c_str())) continue;
      Model<T> quantized_model = w.fmt != FMT_DENSE ? build<T>(s, 1, w.fmt, w.group) : Model<T>{};
      Model<T>& m = w.fmt != FMT_DENSE ? quantized_model : dense;
      for (int first : s.positions) {
        if (first < 0) continue;
        reset_caches(m, first, 2);
        for (int i = 0; i < 2; ++i) {
          if (!step(m, w, 3 + 5 * i, first + i)) {
            tally.checks++;
            tally.failed++;
            std::printf("%s %s %s pos %d: a launch failed\n", Kernels<T>::name, s.name, w.name, first + i);
          }
        }
      }
    }
  }
}

// Usage: [EMU_SEED=N] decode_kernels [wiring]   (every wiring by default; the quantized ones in
// f32 only; EMU_SEED sets the scheduler's thread order, 1 by default)
int main(int argc, char** argv) {
  const char* only = argc > 1 ? argv[1] : nullptr;
  if (const char* seed = std::getenv("EMU_SEED")) emu::seed = std::strtoull(seed, nullptr, 10);
  if (only == nullptr) argmax_cases();
  run_all<float>(only);
  run_all<__nv_bfloat16>(only);
  run_all<__half>(only);
  std::printf("checks: %d, failed: %d\n", tally.checks, tally.failed);
  return tally.failed == 0 ? 0 : 1;
}
