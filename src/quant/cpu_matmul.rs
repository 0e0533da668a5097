//! Quantized matrix products on the CPU for the GGUF block formats Q4_0, Q4_1 and Q8_0, the
//! decode-time hot loop: `y = x W^T` for a few activation rows `x` against weight rows stored
//! as 32-value blocks, read in place from the GGUF bytes. The scheme is llama.cpp's
//! (`ggml_vec_dot_q4_1_q8_1` and friends, ggml-cpu/arch/x86/quants.c): each activation row is
//! quantized to 8 bits per 32-block (scale d, and for Q4_1 also d * sum(q)), each block's
//! integer dot product runs in AVX2 (`maddubs` u8 x i8 -> i16, `madd` -> i32), and the block
//! scales enter through one FMA per block. Four weight rows share every activation load.
//!
//! candle 0.11 has AVX2 only for Q4_0 and Q8_0; its Q4_1 (the default model's format) is a
//! scalar loop, which made decoding run at 0.6x llama.cpp's speed. Activation scales are kept
//! in f32 (llama.cpp and candle round them to f16), so results differ from candle's in the
//! last bits; each output element's arithmetic is the same whatever the number of rows, so a
//! row of a multi-row call equals a one-row call bit for bit (speculative verification relies
//! on it). Work is split by weight rows over candle's thread pool (the one its quantized
//! kernels use, sized by `--threads`), so no second pool competes for the cores.

/// Values per quantization block (every format here).
pub const BLOCK: usize = 32;

/// The block formats these kernels read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// f16 scale d, 32 4-bit values q: x = d (q - 8).
    Q4_0,
    /// f16 scale d and minimum m, 32 4-bit values: x = d q + m.
    Q4_1,
    /// f16 scale d, 32 signed 8-bit values: x = d q.
    Q8_0,
}

impl BlockFormat {
    /// Bytes per 32-value block in the GGUF layout.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }
}

/// Set to 0 to run candle's kernels and ops instead of ours (A/B timing and numerics checks).
pub const ENV_SWITCH: &str = "LLMBENCH_CPU_KERNELS";

/// Whether our CPU kernels run: unless `LLMBENCH_CPU_KERNELS=0`, and here only where the CPU
/// has AVX2, FMA and F16C (checked at run time, once).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var(ENV_SWITCH).map_or(true, |v| v != "0"))
}

/// Whether this CPU runs the kernels (AVX2, FMA and F16C) and they are enabled.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        enabled()
            && *CPU.get_or_init(|| {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c")
            })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which kernels a CPU run uses, for results: "avx2" (ours) or "candle".
pub fn kernels_label() -> &'static str {
    if available() {
        "avx2"
    } else {
        "candle"
    }
}

/// Activation rows quantized to 8 bits per block: values, scale, the integer sum of the
/// values and scale x that sum. Shared by every kernel of `quant` (the integer formats use
/// blocks of their group size, `int_matmul`).
pub(crate) struct QuantizedRows {
    pub(crate) qs: Vec<i8>,
    pub(crate) d: Vec<f32>,
    pub(crate) s: Vec<f32>,
    pub(crate) sums: Vec<i32>,
}

impl QuantizedRows {
    pub(crate) const fn new() -> Self {
        Self { qs: Vec::new(), d: Vec::new(), s: Vec::new(), sums: Vec::new() }
    }

    /// llama.cpp's `quantize_row_q8_1`: d = max|x| / 127, q = round(x / d), s = d * sum(q).
    fn fill(&mut self, x: &[f32]) {
        self.fill_blocks(x, BLOCK, 0);
    }

    /// The same per `block` values (a multiple of 32). With `interleave` C (32 or 64; 0 for
    /// none), each C values are stored as the C/2 even-indexed then the C/2 odd-indexed ones:
    /// the order in which a low / high nibble split of C/2 bytes of GPTQ-packed int4 words
    /// yields its codes (`int_matmul`). The sums do not depend on the order.
    pub(crate) fn fill_blocks(&mut self, x: &[f32], block: usize, interleave: usize) {
        let blocks = x.len() / block;
        self.qs.resize(x.len(), 0);
        self.d.resize(blocks, 0.0);
        self.s.resize(blocks, 0.0);
        self.sums.resize(blocks, 0);
        for (b, values) in x.chunks_exact(block).enumerate() {
            let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            let out = &mut self.qs[b * block..(b + 1) * block];
            let mut put = |at: usize, v: f32| {
                let q = (v * id).round() as i8;
                out[at] = q;
                sum += q as i32;
            };
            if interleave == 0 {
                values.iter().enumerate().for_each(|(i, &v)| put(i, v));
            } else {
                // No division per value: this runs once per activation row and call, and
                // the divisions cost more than the rounding (measured on 1,536 values).
                let half = interleave / 2;
                for (c, chunk) in values.chunks_exact(interleave).enumerate() {
                    for (i, pair) in chunk.chunks_exact(2).enumerate() {
                        put(c * interleave + i, pair[0]);
                        put(c * interleave + half + i, pair[1]);
                    }
                }
            }
            self.d[b] = d;
            self.sums[b] = sum;
            self.s[b] = d * sum as f32;
        }
    }
}

/// Values of one weight row (`k` values, `k / 32` blocks of `format`) as f32, with ggml's
/// formulas (the values candle's `dequantize` gives, bit for bit).
pub fn dequantize_row(format: BlockFormat, row: &[u8], out: &mut [f32]) {
    let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    for (block, dst) in row.chunks_exact(format.block_bytes()).zip(out.chunks_exact_mut(BLOCK)) {
        let d = f16(&block[0..2]);
        match format {
            BlockFormat::Q8_0 => dst.iter_mut().zip(&block[2..34]).for_each(|(o, &q)| *o = (q as i8) as f32 * d),
            BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
                let (qs, min) = if format == BlockFormat::Q4_1 { (&block[4..20], Some(f16(&block[2..4]))) } else { (&block[2..18], None) };
                for (j, &byte) in qs.iter().enumerate() {
                    let (lo, hi) = ((byte & 0x0f) as i32, (byte >> 4) as i32);
                    match min {
                        Some(m) => {
                            dst[j] = lo as f32 * d + m;
                            dst[j + 16] = hi as f32 * d + m;
                        }
                        None => {
                            dst[j] = (lo - 8) as f32 * d;
                            dst[j + 16] = (hi - 8) as f32 * d;
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    /// Reused across calls: a decode step quantizes ~150 activation rows.
    static SCRATCH: std::cell::RefCell<QuantizedRows> = const { std::cell::RefCell::new(QuantizedRows::new()) };
}

/// `dst[r * n + c] = x[r] . W[c]` for `m` rows of `x` (`m * k` values) against the `n` weight
/// rows of `weights` (`n * k / 32` blocks of `format`). Returns false, touching nothing, where
/// the kernels do not apply (no AVX2, `k` not a multiple of 32, sizes that disagree).
pub fn matmul(format: BlockFormat, weights: &[u8], (m, k, n): (usize, usize, usize), x: &[f32], dst: &mut [f32]) -> bool {
    let row_bytes = k / BLOCK * format.block_bytes();
    if !available() || k % BLOCK != 0 || weights.len() != n * row_bytes || x.len() != m * k || dst.len() != m * n {
        return false;
    }
    SCRATCH.with(|cell| {
        let mut act = cell.borrow_mut();
        act.fill(x);
        let act = &*act;
        fill_by_quads(n, m, dst, |first, rows, r, out| {
            // SAFETY: `available()` checked the CPU features; the sizes were checked above.
            unsafe { dot_rows(format, &weights[first * row_bytes..(first + rows) * row_bytes], row_bytes, rows, act, r, k, out) }
        });
    });
    true
}

/// `dst[r * n + c]` for every activation row `r < m` and weight row `c < n`, four weight rows
/// at a time: `dots(first, rows, r, out)` fills `out[..rows]` for weight rows `first..` and
/// activation row `r`. Work is split by `for_row_quads`.
pub(crate) fn fill_by_quads(n: usize, m: usize, dst: &mut [f32], dots: impl Fn(usize, usize, usize, &mut [f32; 4]) + Sync) {
    assert!(dst.len() >= m * n, "dst holds {} of {m} x {n} values", dst.len());
    let dst_addr = dst.as_mut_ptr() as usize;
    for_row_quads(n, |range| {
        for quad in range {
            let first = quad * 4;
            let rows = (n - first).min(4);
            for r in 0..m {
                let mut out = [0f32; 4];
                dots(first, rows, r, &mut out);
                // SAFETY: in bounds (checked above); each (row, quad) element of dst is
                // written by one work item only.
                let dst_row = unsafe { std::slice::from_raw_parts_mut((dst_addr as *mut f32).add(r * n + first), rows) };
                dst_row.copy_from_slice(&out[..rows]);
            }
        }
    });
}

/// Runs `work` over the groups of four weight rows of an `n`-row matrix (group `q` is rows
/// `4q..4q + 4`), one contiguous range of groups per thread of candle's pool: each thread
/// streams its part of the weights front to back, which the hardware prefetchers follow
/// (measured 7.6 against 9.1 ms per step for a shared cursor handing out chunks,
/// benches/cpu_matmul.rs). Every kernel of `quant` splits its work this way, through `fill_by_quads`.
fn for_row_quads(n: usize, work: impl Fn(std::ops::Range<usize>) + Sync) {
    let quads = n.div_ceil(4);
    let pool = candle_core::utils::barrier_pool();
    let per_thread = quads.div_ceil(pool.n_workers() + 1);
    pool.execute(|tid| {
        let start = tid * per_thread;
        if start < quads {
            work(start..quads.min(start + per_thread));
        }
    });
}

/// Dot products of activation row `r` with `rows` (1 to 4) consecutive weight rows.
#[allow(clippy::too_many_arguments)]
unsafe fn dot_rows(format: BlockFormat, w: &[u8], row_bytes: usize, rows: usize, act: &QuantizedRows, r: usize, k: usize, out: &mut [f32; 4]) {
    #[cfg(target_arch = "x86_64")]
    {
        let blocks = k / BLOCK;
        let qs = act.qs[r * k..].as_ptr();
        let d = act.d[r * blocks..].as_ptr();
        let s = act.s[r * blocks..].as_ptr();
        let w = w.as_ptr();
        match rows {
            4 => *out = avx2::dots::<4>(format, w, row_bytes, blocks, qs, d, s),
            3 => out[..3].copy_from_slice(&avx2::dots::<3>(format, w, row_bytes, blocks, qs, d, s)),
            2 => out[..2].copy_from_slice(&avx2::dots::<2>(format, w, row_bytes, blocks, qs, d, s)),
            _ => out[..1].copy_from_slice(&avx2::dots::<1>(format, w, row_bytes, blocks, qs, d, s)),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (format, w, row_bytes, rows, act, r, k, out);
        unreachable!("available() is false off x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::{BlockFormat, BLOCK};
    use std::arch::x86_64::*;

    /// The 32 4-bit values of a block as bytes: low nibbles are values 0..16, high nibbles 16..32.
    #[inline(always)]
    pub(crate) unsafe fn nibbles(qs: *const u8) -> __m256i {
        let packed = _mm_loadu_si128(qs as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    /// Eight i32 partial sums of a signed x signed byte dot product (llama.cpp's `mul_sum_i8_pairs`).
    #[inline(always)]
    pub(crate) unsafe fn signed_dot(x: __m256i, y: __m256i) -> __m256i {
        let ax = _mm256_sign_epi8(x, x);
        let sy = _mm256_sign_epi8(y, x);
        _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
    }

    #[inline(always)]
    unsafe fn half(p: *const u8) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p as *const u16) as i32)))
    }

    #[inline(always)]
    pub(crate) unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// `R` dot products of one quantized activation row (values `qs`, scales `d`, scaled sums
    /// `s`, `blocks` blocks) against `R` weight rows starting at `w`, `row_bytes` apart.
    /// Software prefetch of each weight row this many bytes ahead (25 Q4_1 blocks), once per
    /// cache line or so: 7.2 against 7.8 ms per decode step's matmuls (benches/cpu_matmul.rs).
    const PREFETCH: bool = true;
    const PREFETCH_BYTES: usize = 512;

    #[inline(always)]
    pub(super) unsafe fn dots<const R: usize>(
        format: BlockFormat,
        w: *const u8,
        row_bytes: usize,
        blocks: usize,
        qs: *const i8,
        d: *const f32,
        s: *const f32,
    ) -> [f32; R] {
        // One monomorphised loop per format: no branch on the format inside the hot loop.
        match format {
            BlockFormat::Q4_1 => dots_q4_1::<R>(w, row_bytes, blocks, qs, d, s),
            BlockFormat::Q4_0 => dots_signed::<R, 18>(w, row_bytes, blocks, qs, d),
            BlockFormat::Q8_0 => dots_signed::<R, 34>(w, row_bytes, blocks, qs, d),
        }
    }


    /// Q4_1 blocks `[d: f16, m: f16, qs: 16 bytes]`: `sum_i (d q_i + m) a_i` with the activation
    /// `a = da * qa`, i.e. `d da (q . qa) + m (da sum qa)`, the last factor precomputed as `s`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dots_q4_1<const R: usize>(w: *const u8, row_bytes: usize, blocks: usize, qs: *const i8, d: *const f32, s: *const f32) -> [f32; R] {
        let mut acc = [_mm256_setzero_ps(); R];
        let mut mins = [_mm_setzero_ps(); R];
        let ones = _mm256_set1_epi16(1);
        for b in 0..blocks {
            let y = _mm256_loadu_si256(qs.add(b * BLOCK) as *const __m256i);
            // [da, sa] once per block for all rows.
            let ds = _mm_set_ps(0.0, 0.0, *s.add(b), *d.add(b));
            for r in 0..R {
                let block = w.add(r * row_bytes + b * 20);
                if PREFETCH && b % 2 == 0 {
                    _mm_prefetch(block.add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
                }
                // d and m of the weight block in one conversion: lanes [d, m].
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(block as *const i32)));
                // [d da, m sa]: lane 1 accumulates the minimum's term.
                let scaled = _mm_mul_ps(dm, ds);
                mins[r] = _mm_add_ps(mins[r], scaled);
                let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles(block.add(4)), y), ones);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_broadcastss_ps(scaled), acc[r]);
            }
        }
        std::array::from_fn(|r| hsum(acc[r]) + _mm_cvtss_f32(_mm_movehdup_ps(mins[r])))
    }

    /// Q4_0 (`BB` = 18: `[d: f16, qs: 16 bytes]`, values q - 8) and Q8_0 (`BB` = 34:
    /// `[d: f16, qs: 32 i8]`): `d da (q . qa)`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dots_signed<const R: usize, const BB: usize>(w: *const u8, row_bytes: usize, blocks: usize, qs: *const i8, d: *const f32) -> [f32; R] {
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..blocks {
            let y = _mm256_loadu_si256(qs.add(b * BLOCK) as *const __m256i);
            let da = _mm256_set1_ps(*d.add(b));
            for r in 0..R {
                let block = w.add(r * row_bytes + b * BB);
                if PREFETCH && (BB == 34 || b % 2 == 0) {
                    _mm_prefetch(block.add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
                }
                let x = if BB == 18 {
                    _mm256_sub_epi8(nibbles(block.add(2)), _mm256_set1_epi8(8))
                } else {
                    _mm256_loadu_si256(block.add(2) as *const __m256i)
                };
                let dw = _mm256_set1_ps(half(block));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(signed_dot(x, y)), _mm256_mul_ps(dw, da), acc[r]);
            }
        }
        std::array::from_fn(|r| hsum(acc[r]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_values::pseudo;
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn format_of(dtype: GgmlDType) -> BlockFormat {
        match dtype {
            GgmlDType::Q4_0 => BlockFormat::Q4_0,
            GgmlDType::Q4_1 => BlockFormat::Q4_1,
            _ => BlockFormat::Q8_0,
        }
    }

    /// Against the dequantized weights in f64: the only error is the activations' 8-bit
    /// rounding, at most half a step (d / 2) per value, so |err| <= sum |w| * d / 2 per block.
    #[test]
    fn matches_dequantized_weights_within_the_activation_rounding() {
        if !available() {
            return;
        }
        let (m, k, n) = (3, 256, 37);
        let dev = Device::Cpu;
        let w = Tensor::from_vec(pseudo(n * k, 1), (n, k), &dev).unwrap();
        let x = pseudo(m * k, 2);
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let wd: Vec<f32> = q.dequantize(&dev).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let mut dst = vec![0f32; m * n];
            assert!(matmul(format_of(dtype), &q.data().unwrap(), (m, k, n), &x, &mut dst));
            for r in 0..m {
                for c in 0..n {
                    let (xr, wc) = (&x[r * k..(r + 1) * k], &wd[c * k..(c + 1) * k]);
                    let exact: f64 = xr.iter().zip(wc).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let bound: f64 = xr
                        .chunks(BLOCK)
                        .zip(wc.chunks(BLOCK))
                        .map(|(xb, wb)| {
                            let step = xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 127.0;
                            wb.iter().map(|v| v.abs() as f64).sum::<f64>() * step / 2.0
                        })
                        .sum();
                    let err = (dst[r * n + c] as f64 - exact).abs();
                    assert!(err <= bound * 1.01 + 1e-4, "{dtype:?} ({r},{c}): {} vs {exact}, bound {bound}", dst[r * n + c]);
                }
            }
        }
    }

    /// A row of a multi-row call equals the one-row call bit for bit, for every weight row
    /// position within a group of four (n = 7 has a 3-row tail).
    #[test]
    fn rows_are_computed_independently() {
        if !available() {
            return;
        }
        let (m, k, n) = (5, 64, 7);
        let w = QTensor::quantize(&Tensor::from_vec(pseudo(n * k, 3), (n, k), &Device::Cpu).unwrap(), GgmlDType::Q4_1).unwrap();
        let x = pseudo(m * k, 4);
        let mut all = vec![0f32; m * n];
        assert!(matmul(BlockFormat::Q4_1, &w.data().unwrap(), (m, k, n), &x, &mut all));
        for r in 0..m {
            let mut one = vec![0f32; n];
            assert!(matmul(BlockFormat::Q4_1, &w.data().unwrap(), (1, k, n), &x[r * k..(r + 1) * k], &mut one));
            assert_eq!(one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), all[r * n..(r + 1) * n].iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn dequantized_rows_equal_candles() {
        let (n, k) = (3, 64);
        let w = Tensor::from_vec(pseudo(n * k, 5), (n, k), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let want: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let data = q.data().unwrap();
            let row_bytes = data.len() / n;
            for r in 0..n {
                let mut got = vec![0f32; k];
                dequantize_row(format_of(dtype), &data[r * row_bytes..(r + 1) * row_bytes], &mut got);
                assert_eq!(got, want[r * k..(r + 1) * k], "{dtype:?} row {r}");
            }
        }
    }

    #[test]
    fn declines_sizes_that_disagree() {
        let mut dst = vec![0f32; 2];
        assert!(!matmul(BlockFormat::Q4_1, &[0u8; 40], (1, 48, 2), &[0f32; 48], &mut dst), "k not a multiple of 32");
        assert!(!matmul(BlockFormat::Q4_1, &[0u8; 39], (1, 32, 2), &[0f32; 32], &mut dst), "short weights");
    }
}
