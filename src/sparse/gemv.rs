//! Sparse matrix-vector products for activation sparsity (TEAL, LaRoSA): `y = W x` where most
//! of `x` is zero, reading only the weight columns of the nonzero entries. The weights are
//! stored column-major (`W^T`: each input channel's `out` weights contiguous), so a zero
//! activation skips one contiguous stretch of memory; decoding is bound by reading weights,
//! so the work saved is the bytes not read.
//!
//! Formats: f32, f16, bf16 (widened to f32 8 at a time), and Q8_0 blocks along the output dimension (32 outputs of one column share an
//! f16 scale: 34 bytes, as GGUF's Q8_0 but transposed). The output is split into contiguous
//! stretches, one per thread of candle's pool; each thread walks the nonzero columns four at a
//! time, accumulating into its stretch of `y` (which stays in L1).

use anyhow::Result;

/// Outputs per Q8_0 block.
pub const BLOCK: usize = 32;
/// Bytes of one Q8_0 block: an f16 scale and 32 signed codes.
const Q8_0_BYTES: usize = 2 + BLOCK;

/// How the columns are stored (the CUDA kernels, `gemv_cuda`, take the same four).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnFormat {
    F32,
    F16,
    Bf16,
    Q8_0,
}

impl ColumnFormat {
    pub const ALL: [Self; 4] = [Self::F32, Self::F16, Self::Bf16, Self::Q8_0];
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Q8_0 => "q8_0",
        }
    }
}

/// One Q8_0 block of 32 values: scale = max |w| / 127 (stored as f16), codes rounded to
/// nearest with the f32 scale, as GGUF's Q8_0.
fn quantize_q8_0_block(values: &[f32]) -> (half::f16, [i8; BLOCK]) {
    let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut codes = [0i8; BLOCK];
    for (c, v) in codes.iter_mut().zip(values) {
        *c = (v * inv).round() as i8;
    }
    (half::f16::from_f32(d), codes)
}

/// `ColumnMajor::data`: the stored columns by format.
pub enum ColumnData<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    Bf16(&'a [half::bf16]),
    Q8_0 { codes: Vec<i8>, scales: Vec<half::f16> },
}

/// A float column kernel: `(columns, out_dim, x, nonzero, lo, y)` (`avx2::*_columns`).
type ColumnKernel<T> = unsafe fn(&[T], usize, &[f32], &[usize], usize, &mut [f32]);

/// The AVX2 float kernels, where the target has them (none off x86-64: scalar there).
mod kernels {
    use super::ColumnKernel;
    #[cfg(target_arch = "x86_64")]
    pub const F32: Option<ColumnKernel<f32>> = Some(super::avx2::f32_columns);
    #[cfg(target_arch = "x86_64")]
    pub const F16: Option<ColumnKernel<half::f16>> = Some(super::avx2::f16_columns);
    #[cfg(target_arch = "x86_64")]
    pub const BF16: Option<ColumnKernel<half::bf16>> = Some(super::avx2::bf16_columns);
    #[cfg(not(target_arch = "x86_64"))]
    pub const F32: Option<ColumnKernel<f32>> = None;
    #[cfg(not(target_arch = "x86_64"))]
    pub const F16: Option<ColumnKernel<half::f16>> = None;
    #[cfg(not(target_arch = "x86_64"))]
    pub const BF16: Option<ColumnKernel<half::bf16>> = None;
}

/// A matrix `[out, in]` stored by columns, for sparse products.
#[derive(Debug, Clone)]
pub struct ColumnMajor {
    pub out_dim: usize,
    pub in_dim: usize,
    data: Columns,
}

#[derive(Debug, Clone)]
enum Columns {
    /// `in_dim` columns of `out_dim` values.
    F32(Vec<f32>),
    /// The same in f16 / bf16.
    F16(Vec<half::f16>),
    Bf16(Vec<half::bf16>),
    /// `in_dim` columns of `out_dim / 32` blocks.
    Q8_0(Vec<u8>),
}

impl ColumnMajor {
    /// From a row-major `[out, in]` f32 matrix (nn.Linear's layout).
    pub fn f32_from_rows(rows: &[f32], out_dim: usize, in_dim: usize) -> Result<Self> {
        anyhow::ensure!(
            rows.len() == out_dim * in_dim,
            "{} values for a {out_dim} x {in_dim} matrix",
            rows.len()
        );
        let mut columns = vec![0f32; rows.len()];
        for o in 0..out_dim {
            for i in 0..in_dim {
                columns[i * out_dim + o] = rows[o * in_dim + i];
            }
        }
        Ok(Self {
            out_dim,
            in_dim,
            data: Columns::F32(columns),
        })
    }

    /// From a row-major `[out, in]` f32 matrix in `format`.
    pub fn from_rows(rows: &[f32], out_dim: usize, in_dim: usize, format: ColumnFormat) -> Result<Self> {
        let f32_columns = || -> Result<Vec<f32>> {
            let ColumnMajor { data: Columns::F32(c), .. } = Self::f32_from_rows(rows, out_dim, in_dim)? else { unreachable!("f32 columns") };
            Ok(c)
        };
        let data = match format {
            ColumnFormat::F32 => return Self::f32_from_rows(rows, out_dim, in_dim),
            ColumnFormat::Q8_0 => return Self::q8_0_from_rows(rows, out_dim, in_dim),
            ColumnFormat::F16 => Columns::F16(f32_columns()?.into_iter().map(half::f16::from_f32).collect()),
            ColumnFormat::Bf16 => Columns::Bf16(f32_columns()?.into_iter().map(half::bf16::from_f32).collect()),
        };
        Ok(Self { out_dim, in_dim, data })
    }

    /// From a row-major `[out, in]` f32 matrix, each column quantized to Q8_0 blocks of 32
    /// outputs (scale = max |w| / 127, codes rounded to nearest, as GGUF's Q8_0).
    pub fn q8_0_from_rows(rows: &[f32], out_dim: usize, in_dim: usize) -> Result<Self> {
        anyhow::ensure!(
            rows.len() == out_dim * in_dim,
            "{} values for a {out_dim} x {in_dim} matrix",
            rows.len()
        );
        anyhow::ensure!(
            out_dim.is_multiple_of(BLOCK),
            "Q8_0 columns need a multiple of {BLOCK} outputs, not {out_dim}"
        );
        let blocks = out_dim / BLOCK;
        let mut data = vec![0u8; in_dim * blocks * Q8_0_BYTES];
        for i in 0..in_dim {
            for b in 0..blocks {
                let values: Vec<f32> = (0..BLOCK)
                    .map(|r| rows[(b * BLOCK + r) * in_dim + i])
                    .collect();
                let (d, codes) = quantize_q8_0_block(&values);
                let at = (i * blocks + b) * Q8_0_BYTES;
                data[at..at + 2].copy_from_slice(&d.to_le_bytes());
                for (r, c) in codes.iter().enumerate() {
                    data[at + 2 + r] = *c as u8;
                }
            }
        }
        Ok(Self {
            out_dim,
            in_dim,
            data: Columns::Q8_0(data),
        })
    }

    /// Bytes of weights held.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Columns::F32(c) => c.len() * 4,
            Columns::F16(c) => c.len() * 2,
            Columns::Bf16(c) => c.len() * 2,
            Columns::Q8_0(c) => c.len(),
        }
    }

    /// The stored columns as flat arrays, for copying to a device: f32 values, f16 / bf16 bits,
    /// or Q8_0's blocks split into codes `[in][out]` and scales `[in][out / 32]` (so a device
    /// load of 16 codes is aligned).
    pub fn data(&self) -> ColumnData<'_> {
        match &self.data {
            Columns::F32(c) => ColumnData::F32(c),
            Columns::F16(c) => ColumnData::F16(c),
            Columns::Bf16(c) => ColumnData::Bf16(c),
            Columns::Q8_0(c) => {
                let blocks = c.chunks_exact(Q8_0_BYTES);
                let scales = blocks.clone().map(|b| half::f16::from_le_bytes([b[0], b[1]])).collect();
                let codes = blocks.flat_map(|b| b[2..].iter().map(|&q| q as i8)).collect();
                ColumnData::Q8_0 { codes, scales }
            }
        }
    }

    /// Column `i` as f32 values (dequantized): the reference the kernels are tested against.
    pub fn column(&self, i: usize) -> Vec<f32> {
        match &self.data {
            Columns::F32(c) => c[i * self.out_dim..(i + 1) * self.out_dim].to_vec(),
            Columns::F16(c) => c[i * self.out_dim..(i + 1) * self.out_dim].iter().map(|v| v.to_f32()).collect(),
            Columns::Bf16(c) => c[i * self.out_dim..(i + 1) * self.out_dim].iter().map(|v| v.to_f32()).collect(),
            Columns::Q8_0(c) => {
                let blocks = self.out_dim / BLOCK;
                (0..self.out_dim)
                    .map(|o| {
                        let at = (i * blocks + o / BLOCK) * Q8_0_BYTES;
                        let d = half::f16::from_le_bytes([c[at], c[at + 1]]).to_f32();
                        d * (c[at + 2 + o % BLOCK] as i8) as f32
                    })
                    .collect()
            }
        }
    }

    /// `y = W x`, reading only the columns where `x` is not zero. Sums run column by column in
    /// the order of `x` (four at a time), so the result differs from a dense product only by
    /// f32 rounding.
    pub fn gemv(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        anyhow::ensure!(
            x.len() == self.in_dim && y.len() == self.out_dim,
            "gemv: x {} (want {}), y {} (want {})",
            x.len(),
            self.in_dim,
            y.len(),
            self.out_dim
        );
        let nonzero: Vec<usize> = (0..self.in_dim).filter(|&i| x[i] != 0.0).collect();
        y.iter_mut().for_each(|v| *v = 0.0);
        if nonzero.is_empty() {
            return Ok(());
        }
        // Stretches of whole blocks, one per thread.
        let pool = candle_core::utils::barrier_pool();
        let threads = pool.n_workers() + 1;
        let blocks = self.out_dim.div_ceil(BLOCK);
        let per_thread = blocks.div_ceil(threads) * BLOCK;
        let y_addr = y.as_mut_ptr() as usize;
        let out_dim = self.out_dim;
        pool.execute(|tid| {
            let lo = tid * per_thread;
            if lo >= out_dim {
                return;
            }
            let hi = (lo + per_thread).min(out_dim);
            // SAFETY: threads write disjoint stretches [lo, hi) of y, which outlives execute.
            let y =
                unsafe { std::slice::from_raw_parts_mut((y_addr as *mut f32).add(lo), hi - lo) };
            self.accumulate(x, &nonzero, lo, y);
        });
        Ok(())
    }

    /// f32 / f16 / bf16 columns into one stretch: the AVX2 kernel where the CPU has it, else
    /// scalar (`widen` each weight to f32).
    #[allow(clippy::too_many_arguments)]
    fn float_columns<T: Copy>(&self, c: &[T], kernel: Option<ColumnKernel<T>>, widen: fn(T) -> f32, x: &[f32], nonzero: &[usize], lo: usize, y: &mut [f32]) {
        if let Some(kernel) = kernel.filter(|_| crate::quant::cpu_matmul::available()) {
            // SAFETY: AVX2, FMA and F16C are present (checked); every column slice is in bounds.
            unsafe { kernel(c, self.out_dim, x, nonzero, lo, y) };
            return;
        }
        for &i in nonzero {
            let col = &c[i * self.out_dim + lo..i * self.out_dim + lo + y.len()];
            y.iter_mut().zip(col).for_each(|(acc, &w)| *acc += x[i] * widen(w));
        }
    }

    /// `y[..] += sum over nonzero i of x[i] * W[lo.., i]` for one stretch.
    fn accumulate(&self, x: &[f32], nonzero: &[usize], lo: usize, y: &mut [f32]) {
        match &self.data {
            Columns::F32(c) => self.float_columns(c, kernels::F32, |w| w, x, nonzero, lo, y),
            Columns::F16(c) => self.float_columns(c, kernels::F16, half::f16::to_f32, x, nonzero, lo, y),
            Columns::Bf16(c) => self.float_columns(c, kernels::BF16, half::bf16::to_f32, x, nonzero, lo, y),
            Columns::Q8_0(c) => {
                let blocks = self.out_dim / BLOCK;
                #[cfg(target_arch = "x86_64")]
                if crate::quant::cpu_matmul::available() {
                    // SAFETY: as above; lo and y.len() are whole blocks.
                    unsafe { avx2::q8_0_columns(c, blocks, x, nonzero, lo / BLOCK, y) };
                    return;
                }
                for &i in nonzero {
                    for (b, out) in y.chunks_mut(BLOCK).enumerate() {
                        let at = (i * blocks + lo / BLOCK + b) * Q8_0_BYTES;
                        let scale = x[i] * half::f16::from_le_bytes([c[at], c[at + 1]]).to_f32();
                        out.iter_mut()
                            .zip(&c[at + 2..at + 2 + BLOCK])
                            .for_each(|(acc, &q)| *acc += scale * (q as i8) as f32);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BLOCK, Q8_0_BYTES};
    use std::arch::x86_64::*;

    /// Four nonzero columns at a time into 8-wide stretches of `y` (scalar tail), each 8 weights
    /// loaded as f32 by `$load` (f16 through F16C's conversion; bf16 is the top half of an f32,
    /// so a 16-bit shift).
    macro_rules! column_kernel {
        ($name:ident, $t:ty, |$p:ident| $load:expr, |$w:ident| $widen:expr) => {
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(super) unsafe fn $name(c: &[$t], out_dim: usize, x: &[f32], nonzero: &[usize], lo: usize, y: &mut [f32]) {
                let n = y.len();
                let vec_end = n / 8 * 8;
                let yp = y.as_mut_ptr();
                for group in nonzero.chunks(4) {
                    let k = group.len();
                    let mut cols = [std::ptr::null::<$t>(); 4];
                    let mut xs = [0f32; 4];
                    for (j, &i) in group.iter().enumerate() {
                        cols[j] = c.as_ptr().add(i * out_dim + lo);
                        xs[j] = x[i];
                    }
                    let mut o = 0;
                    while o < vec_end {
                        let mut acc = _mm256_loadu_ps(yp.add(o));
                        for j in 0..k {
                            let $p = cols[j].add(o);
                            acc = _mm256_fmadd_ps(_mm256_set1_ps(xs[j]), $load, acc);
                        }
                        _mm256_storeu_ps(yp.add(o), acc);
                        o += 8;
                    }
                    for o in vec_end..n {
                        for j in 0..k {
                            let $w = *cols[j].add(o);
                            *yp.add(o) += xs[j] * $widen;
                        }
                    }
                }
            }
        };
    }
    column_kernel!(f32_columns, f32, |p| _mm256_loadu_ps(p), |w| w);
    column_kernel!(f16_columns, half::f16, |p| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)), |w| w.to_f32());
    column_kernel!(bf16_columns, half::bf16, |p| _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)), 16)), |w| w.to_f32());

    /// Q8_0 columns: per block, the scale times x in one broadcast, codes widened 8 at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn q8_0_columns(
        c: &[u8],
        blocks: usize,
        x: &[f32],
        nonzero: &[usize],
        first_block: usize,
        y: &mut [f32],
    ) {
        let yp = y.as_mut_ptr();
        for group in nonzero.chunks(4) {
            for b in 0..y.len() / BLOCK {
                let out = yp.add(b * BLOCK);
                let mut acc = [
                    _mm256_loadu_ps(out),
                    _mm256_loadu_ps(out.add(8)),
                    _mm256_loadu_ps(out.add(16)),
                    _mm256_loadu_ps(out.add(24)),
                ];
                for &i in group {
                    let block = c.as_ptr().add((i * blocks + first_block + b) * Q8_0_BYTES);
                    let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                        std::ptr::read_unaligned(block as *const u16) as i32,
                    )));
                    let scale = _mm256_set1_ps(d * x[i]);
                    for (k, a) in acc.iter_mut().enumerate() {
                        let codes = _mm_loadl_epi64(block.add(2 + 8 * k) as *const __m128i);
                        let w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
                        *a = _mm256_fmadd_ps(scale, w, *a);
                    }
                }
                for (k, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(out.add(8 * k), *a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(out_dim: usize, in_dim: usize) -> Vec<f32> {
        (0..out_dim * in_dim)
            .map(|i| ((i * 2654435761 % 1000) as f32 / 500.0 - 1.0) * 0.1)
            .collect()
    }

    /// x with the `sparsity` share of its smallest-magnitude entries zeroed (TEAL's rule).
    fn sparse_input(n: usize, sparsity: f64) -> Vec<f32> {
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 50.0)
            .collect();
        let mut mags: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        mags.sort_by(f32::total_cmp);
        let cut = (sparsity * n as f64) as usize;
        let threshold = if cut == 0 { -1.0 } else { mags[cut - 1] };
        x.iter()
            .map(|&v| if v.abs() <= threshold { 0.0 } else { v })
            .collect()
    }

    /// The product over the kept entries, in f64, from the stored (dequantized) columns.
    fn reference(w: &ColumnMajor, x: &[f32]) -> Vec<f64> {
        let mut y = vec![0f64; w.out_dim];
        for (i, &xv) in x.iter().enumerate().filter(|(_, v)| **v != 0.0) {
            for (acc, c) in y.iter_mut().zip(w.column(i)) {
                *acc += xv as f64 * c as f64;
            }
        }
        y
    }

    #[test]
    fn sparse_products_equal_the_dense_product_on_the_kept_entries() {
        for (out_dim, in_dim) in [(64, 48), (96, 577), (576, 1536)] {
            let rows = matrix(out_dim, in_dim);
            for w in ColumnFormat::ALL.map(|f| ColumnMajor::from_rows(&rows, out_dim, in_dim, f).unwrap()) {
                for sparsity in [0.0, 0.25, 0.5, 0.9, 1.0] {
                    let x = sparse_input(in_dim, sparsity);
                    let mut y = vec![f32::NAN; out_dim];
                    w.gemv(&x, &mut y).unwrap();
                    let expected = reference(&w, &x);
                    for (o, (a, b)) in y.iter().zip(&expected).enumerate() {
                        assert!(
                            (*a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()),
                            "{out_dim}x{in_dim} s={sparsity} y[{o}]: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn f32_columns_hold_the_matrix_and_q8_0_rounds_it_to_its_scale() {
        let (out_dim, in_dim) = (64, 3);
        let rows = matrix(out_dim, in_dim);
        let f = ColumnMajor::f32_from_rows(&rows, out_dim, in_dim).unwrap();
        let q = ColumnMajor::q8_0_from_rows(&rows, out_dim, in_dim).unwrap();
        for i in 0..in_dim {
            let exact: Vec<f32> = (0..out_dim).map(|o| rows[o * in_dim + i]).collect();
            assert_eq!(f.column(i), exact);
            for (a, b) in q.column(i).iter().zip(&exact) {
                // Half a step of the block's scale (max |w| / 127 <= 0.1 / 127), plus f16 rounding.
                assert!((a - b).abs() <= 0.1 / 127.0 * 0.5 + 1e-4, "{a} vs {b}");
            }
        }
        assert_eq!(q.bytes(), in_dim * 2 * Q8_0_BYTES);
        // The device copy's split arrays hold the same values.
        let ColumnData::Q8_0 { codes, scales } = q.data() else { panic!("q8_0 columns") };
        for i in 0..in_dim {
            let split: Vec<f32> = (0..out_dim).map(|o| scales[(i * out_dim + o) / BLOCK].to_f32() * codes[i * out_dim + o] as f32).collect();
            assert_eq!(split, q.column(i));
        }
        assert!(ColumnMajor::q8_0_from_rows(&rows[..60], 20, 3).is_err());
    }
}
