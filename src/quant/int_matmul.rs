//! Fused dequantize + matrix product for our int8 and int4 formats (`int_weights`) on the CPU:
//! `y = x W^T` for a few activation rows, the weights unpacked in registers and never written
//! out. The scheme is llama.cpp's for its block formats: each activation row is quantized to
//! 8 bits per block at run time (d = max|x| / 127), the weight codes meet the activation codes
//! in integer dot products (AVX2 `maddubs` / `madd`), and the scales enter once per block:
//!
//! - int8 (per-row scale): activation blocks of 32, `d_b * (q . qa)` summed, times the row scale.
//! - int4 (per-group scale s and zero z): activation blocks of the group size, so a whole
//!   group's codes accumulate in integers: `s d (q . qa - z sum(qa))`, the zero point's term
//!   from the block's integer sum. The 16 bytes of four GPTQ-packed words split into low and
//!   high nibbles give the group's even- and odd-indexed codes, and the activation block is
//!   stored in that even / odd order (`QuantizedRows::fill_blocks`), so no shuffle is needed.
//!
//! Quantizing the activations is what makes these as cheap as the GGUF kernels (weight-only
//! f32 arithmetic took 2-3x the instructions: 0.79x candle's q4_0, benches/int_matmul.rs), and
//! it is what candle and llama.cpp do for every GGUF format at decode time. Its error (half a
//! step of max|x| / 127 per block) is in decoding (greedy agreement), not in the perplexity / KLD
//! that `quantize` reports: prefills of 32 rows or more use the exact weights through a dense
//! GEMM, as for the GGUF formats (`models::layers::Linear`). `matmul_reference`
//! is the scalar reference of exactly this arithmetic; four weight rows share every activation
//! load, rows are split over candle's thread pool like the GGUF kernels, and a row's result
//! is the same whatever the number of rows in the call.

use super::cpu_matmul::{available, fill_by_quads, QuantizedRows, BLOCK};
use super::int_weights::{int4_param, IntWeights, INT4_PER_WORD};

thread_local! {
    static SCRATCH: std::cell::RefCell<QuantizedRows> = const { std::cell::RefCell::new(QuantizedRows::new()) };
}

/// Values int4's kernel unpacks per step: 64 (one 32-byte load) where the group allows it.
fn int4_chunk(group: usize) -> usize {
    if group.is_multiple_of(64) {
        64
    } else {
        BLOCK
    }
}

/// The activation block size and even / odd interleave for `w`'s format.
fn activation_blocks(w: &IntWeights) -> (usize, usize) {
    match w {
        IntWeights::Int8 { .. } => (BLOCK, 0),
        IntWeights::Int4 { group, .. } => (*group, int4_chunk(*group)),
    }
}

/// `dst[r * n + c] = x[r] . W[c]` for `m` rows of `x` (`m * k` values). Returns false,
/// touching nothing, where the kernels do not run (no AVX2, sizes that disagree).
pub fn matmul(w: &IntWeights, m: usize, x: &[f32], dst: &mut [f32]) -> bool {
    let (n, k) = w.dims();
    if !available() || k % BLOCK != 0 || x.len() != m * k || dst.len() != m * n {
        return false;
    }
    SCRATCH.with(|cell| {
        let mut act = cell.borrow_mut();
        let (block, interleave) = activation_blocks(w);
        act.fill_blocks(x, block, interleave);
        let act = &*act;
        fill_by_quads(n, m, dst, |first, rows, r, out| {
            // SAFETY: `available()` checked the CPU features; the sizes were checked above.
            unsafe { dot_rows(w, first, rows, act, r, out) }
        });
    });
    true
}

/// The scalar reference of `matmul`: the same activation quantization, integer dot products
/// per block, and the scales applied per block, in f64.
pub fn matmul_reference(w: &IntWeights, m: usize, x: &[f32]) -> Vec<f64> {
    let (n, k) = w.dims();
    let (block, _) = activation_blocks(w);
    let mut act = QuantizedRows::new();
    act.fill_blocks(x, block, 0);
    let blocks = k / block;
    let mut dst = vec![0f64; m * n];
    for c in 0..n {
        for r in 0..m {
            let qa = &act.qs[r * k..(r + 1) * k];
            let mut total = 0f64;
            for b in 0..blocks {
                let (d, sum) = (act.d[r * blocks + b] as f64, act.sums[r * blocks + b] as i64);
                let dot: i64 = (b * block..(b + 1) * block).map(|j| code(w, c, j) as i64 * qa[j] as i64).sum();
                total += match w {
                    IntWeights::Int8 { scales, .. } => scales[c] as f64 * d * dot as f64,
                    IntWeights::Int4 { scales, zeros, .. } => {
                        let g = int4_param(c, b, blocks);
                        scales[g].to_f64() * d * (dot - zeros[g] as i64 * sum) as f64
                    }
                };
            }
            dst[r * n + c] = total;
        }
    }
    dst
}

/// Weight code `j` of row `c` (int8's signed value, int4's unsigned code).
fn code(w: &IntWeights, c: usize, j: usize) -> i32 {
    match w {
        IntWeights::Int8 { k, q, .. } => q[c * k + j] as i32,
        IntWeights::Int4 { k, packed, .. } => {
            let index = c * k + j;
            ((packed[index / INT4_PER_WORD] >> (4 * (index % INT4_PER_WORD))) & 0xf) as i32
        }
    }
}

unsafe fn dot_rows(w: &IntWeights, first: usize, rows: usize, act: &QuantizedRows, r: usize, out: &mut [f32; 4]) {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! by_rows {
            ($f:ident, $($arg:expr),*) => {
                match rows {
                    4 => *out = avx2::$f::<4>($($arg),*),
                    3 => out[..3].copy_from_slice(&avx2::$f::<3>($($arg),*)),
                    2 => out[..2].copy_from_slice(&avx2::$f::<2>($($arg),*)),
                    _ => out[..1].copy_from_slice(&avx2::$f::<1>($($arg),*)),
                }
            };
        }
        let (n_blocks, k) = match w {
            IntWeights::Int8 { k, .. } => (k / BLOCK, *k),
            IntWeights::Int4 { k, group, .. } => (k / group, *k),
        };
        let qs = act.qs[r * k..].as_ptr();
        let d = act.d[r * n_blocks..].as_ptr();
        let sums = act.sums[r * n_blocks..].as_ptr();
        match w {
            IntWeights::Int8 { q, scales, .. } => by_rows!(dots_int8, q[first * k..].as_ptr(), k, qs, d, scales[first..].as_ptr()),
            IntWeights::Int4 { packed, group, scales, zeros, .. } if int4_chunk(*group) == 64 => by_rows!(
                dots_int4_64,
                packed[first * k / INT4_PER_WORD..].as_ptr() as *const u8,
                k,
                *group,
                qs,
                d,
                sums,
                scales[first * n_blocks..].as_ptr() as *const u16,
                zeros[first * n_blocks..].as_ptr()
            ),
            IntWeights::Int4 { packed, group, scales, zeros, .. } => by_rows!(
                dots_int4,
                packed[first * k / INT4_PER_WORD..].as_ptr() as *const u8,
                k,
                *group,
                qs,
                d,
                sums,
                scales[first * n_blocks..].as_ptr() as *const u16,
                zeros[first * n_blocks..].as_ptr()
            ),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, first, rows, act, r, out);
        unreachable!("available() is false off x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::cpu_matmul::avx2::{hsum, nibbles, signed_dot};
    use super::BLOCK;
    use std::arch::x86_64::*;

    /// Bytes ahead each weight row is prefetched, about once per cache line. Rows here are
    /// read four at a time, so the stream to keep ahead of is the quad's (4 x k / 2 bytes for
    /// int4): 2,048 bytes ran int4 at 1.97x / 2.98x candle's q4_0 on 576 x 1536 / 1536 x 576
    /// against 1.47x / 2.38x at 512 (benches/int_matmul.rs, 2026-12-03; 4,096 no better).
    const PREFETCH_BYTES: usize = 2048;

    /// `R` rows of `k` i8 codes (rows `k` bytes apart, f32 scales) against one activation row
    /// in 32-value blocks (codes `qs`, scales `d`).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots_int8<const R: usize>(q: *const i8, k: usize, qs: *const i8, d: *const f32, scales: *const f32) -> [f32; R] {
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..k / BLOCK {
            let y = _mm256_loadu_si256(qs.add(b * BLOCK) as *const __m256i);
            let da = _mm256_set1_ps(*d.add(b));
            for (r, acc) in acc.iter_mut().enumerate() {
                let row = q.add(r * k + b * BLOCK);
                if b % 2 == 0 {
                    _mm_prefetch(row.add(PREFETCH_BYTES), _MM_HINT_T0);
                }
                let x = _mm256_loadu_si256(row as *const __m256i);
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(signed_dot(x, y)), da, *acc);
            }
        }
        std::array::from_fn(|r| hsum(acc[r]) * *scales.add(r))
    }

    /// `R` rows of GPTQ-packed int4 (`k / 2` bytes each; f16 scale and u8 zero per `group`)
    /// against one activation row in blocks of `group` (codes in even / odd order `qs`,
    /// scales `d`, integer sums `sums`).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dots_int4<const R: usize>(
        packed: *const u8,
        k: usize,
        group: usize,
        qs: *const i8,
        d: *const f32,
        sums: *const i32,
        scales: *const u16,
        zeros: *const u8,
    ) -> [f32; R] {
        let groups = k / group;
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut zero_terms = [0f32; R];
        for g in 0..groups {
            let mut dots = [_mm256_setzero_si256(); R];
            for sub in (g * group..(g + 1) * group).step_by(BLOCK) {
                let y = _mm256_loadu_si256(qs.add(sub) as *const __m256i);
                for (r, dot) in dots.iter_mut().enumerate() {
                    let bytes = packed.add((r * k + sub) / 2);
                    if sub % 64 == 0 {
                        _mm_prefetch(bytes.add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
                    }
                    // Codes 0..15 (unsigned) x activations (signed): pairs sum to at most
                    // 2 x 15 x 127, far from i16's limit.
                    *dot = _mm256_add_epi32(*dot, _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles(bytes), y), ones));
                }
            }
            let (da, sum) = (*d.add(g), *sums.add(g) as f32);
            for r in 0..R {
                let at = g * 4 + r;
                let scale = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(*scales.add(at) as i32))) * da;
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[r]), _mm256_set1_ps(scale), acc[r]);
                zero_terms[r] += scale * (*zeros.add(at) as f32 * sum);
            }
        }
        std::array::from_fn(|r| hsum(acc[r]) - zero_terms[r])
    }

    /// `dots_int4` for groups of a multiple of 64: one 32-byte load gives 64 codes (low
    /// nibbles the even-indexed, high the odd), and each group's products add up in i16
    /// (at most 2 x 2 x 15 x 127 = 7,620 per 64 values, 15,240 for a group of 128) before one
    /// widening `madd` per group. The zero point's term is taken off in integers; with four
    /// rows (every group of four but a matrix's tail) the group's end works on all four at once.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dots_int4_64<const R: usize>(
        packed: *const u8,
        k: usize,
        group: usize,
        qs: *const i8,
        d: *const f32,
        sums: *const i32,
        scales: *const u16,
        zeros: *const u8,
    ) -> [f32; R] {
        let groups = k / group;
        let ones = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(0x0f);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc4 = _mm_setzero_ps();
        for g in 0..groups {
            let mut dots = [_mm256_setzero_si256(); R];
            for chunk in (g * group..(g + 1) * group).step_by(64) {
                let even = _mm256_loadu_si256(qs.add(chunk) as *const __m256i);
                let odd = _mm256_loadu_si256(qs.add(chunk + 32) as *const __m256i);
                for (r, dot) in dots.iter_mut().enumerate() {
                    let bytes = packed.add((r * k + chunk) / 2);
                    if chunk % 128 == 0 {
                        _mm_prefetch(bytes.add(PREFETCH_BYTES) as *const i8, _MM_HINT_T0);
                    }
                    let v = _mm256_loadu_si256(bytes as *const __m256i);
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    *dot = _mm256_add_epi16(*dot, _mm256_add_epi16(_mm256_maddubs_epi16(lo, even), _mm256_maddubs_epi16(hi, odd)));
                }
            }
            let (da, sum) = (*d.add(g), *sums.add(g));
            if R == 4 {
                // Four rows at once: their integer dot products reduced to one [r0..r3]
                // vector, the four zero points and scales read together (`int4_param`).
                let w: [__m256i; R] = std::array::from_fn(|r| _mm256_madd_epi16(dots[r], ones));
                let h = _mm256_hadd_epi32(_mm256_hadd_epi32(w[0], w[1]), _mm256_hadd_epi32(w[2], w[3]));
                let totals = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
                let z = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(std::ptr::read_unaligned(zeros.add(g * 4) as *const i32)));
                let totals = _mm_sub_epi32(totals, _mm_mullo_epi32(z, _mm_set1_epi32(sum)));
                let scale = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64(scales.add(g * 4) as *const __m128i)), _mm_set1_ps(da));
                acc4 = _mm_fmadd_ps(_mm_cvtepi32_ps(totals), scale, acc4);
                continue;
            }
            for r in 0..R {
                let at = g * 4 + r;
                let wide = _mm256_madd_epi16(dots[r], ones);
                let dot = _mm256_sub_epi32(wide, _mm256_setr_epi32(*zeros.add(at) as i32 * sum, 0, 0, 0, 0, 0, 0, 0));
                let scale = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(*scales.add(at) as i32))) * da;
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(scale), acc[r]);
            }
        }
        if R == 4 {
            let mut four = [0f32; 4];
            _mm_storeu_ps(four.as_mut_ptr(), acc4);
            return std::array::from_fn(|r| four[r]);
        }
        std::array::from_fn(|r| hsum(acc[r]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::int_weights::{IntFormat, IntWeights};
    use super::super::test_values::pseudo;
    use super::*;

    /// Magnitude of the terms the kernel sums in f32 for row `r`, column `c`: per block
    /// |scale d (q . qa)| (+ the zero point's term): the f32 rounding of their sum is at most
    /// blocks x 2^-24 x that, plus 2^-24 per product of scales; a factor 4 covers both.
    fn term_magnitude(w: &IntWeights, act: &QuantizedRows, r: usize, c: usize) -> f64 {
        let (_, k) = w.dims();
        let (block, _) = activation_blocks(w);
        let blocks = k / block;
        (0..blocks)
            .map(|b| {
                let d = act.d[r * blocks + b] as f64;
                let abs_dot: f64 = (b * block..(b + 1) * block).map(|j| (code(w, c, j) as f64 * act.qs[r * k + j] as f64).abs()).sum();
                match w {
                    IntWeights::Int8 { scales, .. } => scales[c] as f64 * d * abs_dot,
                    IntWeights::Int4 { scales, zeros, .. } => {
                        let g = c * blocks + b;
                        scales[g].to_f64() * d * (abs_dot + (zeros[g] as f64 * act.sums[r * blocks + b] as f64).abs())
                    }
                }
            })
            .sum::<f64>()
            * (blocks as f64 + 2.0)
    }

    /// Against the scalar reference of the same arithmetic: integer dot products are exact, so
    /// the only difference is the f32 rounding of the scaled block sums.
    #[test]
    fn equals_the_scalar_reference_within_f32_rounding() {
        if !available() {
            return;
        }
        // n = 37: a 1-row tail after nine groups of four; SmolLM2's 576 and 1536 inputs.
        for (m, k, n) in [(3, 576, 37), (1, 1536, 9), (2, 256, 4)] {
            let w = pseudo(n * k, 11);
            let x = pseudo(m * k, 12);
            for format in [IntFormat::Int8, IntFormat::Int4 { group: 32 }, IntFormat::Int4 { group: 64 }, IntFormat::Int4 { group: 128 }] {
                let Ok(q) = IntWeights::quantize(format, &w, n, k) else { continue };
                let want = matmul_reference(&q, m, &x);
                let mut act = QuantizedRows::new();
                act.fill_blocks(&x, activation_blocks(&q).0, 0);
                let mut got = vec![0f32; m * n];
                assert!(matmul(&q, m, &x, &mut got));
                for r in 0..m {
                    for c in 0..n {
                        let bound = term_magnitude(&q, &act, r, c) * f32::EPSILON as f64;
                        let (g, e) = (got[r * n + c] as f64, want[r * n + c]);
                        assert!((g - e).abs() <= bound, "{format:?} {m}x{k}x{n} ({r},{c}): {g} vs {e}, bound {bound}");
                    }
                }
            }
        }
    }

    /// The reference itself against the dequantized weights in f64: the activations' 8-bit
    /// rounding (half a step of max|x| / 127 per block) is the only error.
    #[test]
    fn reference_is_the_dequantized_product_up_to_the_activation_rounding() {
        let (m, k, n) = (2, 256, 5);
        let (w, x) = (pseudo(n * k, 5), pseudo(m * k, 6));
        for format in [IntFormat::Int8, IntFormat::Int4 { group: 64 }] {
            let q = IntWeights::quantize(format, &w, n, k).unwrap();
            let deq = q.dequantize();
            let got = matmul_reference(&q, m, &x);
            let block = activation_blocks(&q).0;
            for r in 0..m {
                for c in 0..n {
                    let (xr, wc) = (&x[r * k..(r + 1) * k], &deq[c * k..(c + 1) * k]);
                    let exact: f64 = xr.iter().zip(wc).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let bound: f64 = xr
                        .chunks(block)
                        .zip(wc.chunks(block))
                        .map(|(xb, wb)| xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 127.0 / 2.0 * wb.iter().map(|v| v.abs() as f64).sum::<f64>())
                        .sum();
                    assert!((got[r * n + c] - exact).abs() <= bound * 1.001 + 1e-9, "{format:?} ({r},{c}): {} vs {exact}", got[r * n + c]);
                }
            }
        }
    }

    #[test]
    fn rows_are_computed_independently() {
        if !available() {
            return;
        }
        let (m, k, n) = (5, 128, 7);
        for format in [IntFormat::Int8, IntFormat::Int4 { group: 64 }] {
            let q = IntWeights::quantize(format, &pseudo(n * k, 3), n, k).unwrap();
            let x = pseudo(m * k, 4);
            let mut all = vec![0f32; m * n];
            assert!(matmul(&q, m, &x, &mut all));
            for r in 0..m {
                let mut one = vec![0f32; n];
                assert!(matmul(&q, 1, &x[r * k..(r + 1) * k], &mut one));
                assert_eq!(one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), all[r * n..(r + 1) * n].iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            }
        }
    }
}
