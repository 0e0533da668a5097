//! Our own weight-only integer formats, the ones bitsandbytes / optimum / GPTQ users know, with
//! their reference (scalar) quantizers, dequantizers and matrix-vector product:
//!
//! - `int8`: per-output-channel symmetric absmax (LLM.int8()'s vector-wise weight scaling
//!   without the outlier split): `scale[c] = max_j |W[c, j]| / 127`, `q = round(W / scale)` in
//!   [-127, 127], f32 scales. 8 + 32 / k bits per weight.
//! - `int4`: group-wise asymmetric round-to-nearest (GPTQ / AWQ's storage without their
//!   calibration): per `group` consecutive inputs of a row, `scale = (max - min) / 15` rounded to
//!   f16, `zero = clamp(round(-min / scale), 0, 15)` as u8, `q = clamp(round(W / scale) + zero,
//!   0, 15)`, and `W ~ (q - zero) * scale`. Eight values per little-endian u32, value `8w + j`
//!   in bits `4j..4j + 4` of word `w` (GPTQ's packing along the input dimension). Scales and
//!   zero points are stored four rows at a time (`int4_param`), so a kernel working on four
//!   rows reads their four scales in one load. 4 + 24 / group bits per weight.
//!
//! The kernels (`int_matmul`) quantize the activations to 8 bits per block at run time, as
//! llama.cpp does for its block formats; `dequantize` is what the weights mean.

use half::f16;

/// Largest |q| of int8 (symmetric: -128 is never used, so negation is exact).
pub const INT8_MAX: f32 = 127.0;
/// Largest code of int4.
pub const INT4_MAX: u8 = 15;
/// Values per packed int4 word.
pub const INT4_PER_WORD: usize = 8;
/// The group sizes `--group-size` takes: multiples of the packed word that divide the common
/// hidden sizes (576, 960, 2048, 4096 ...).
pub const GROUP_SIZES: [usize; 3] = [32, 64, 128];

/// Where int4's scale and zero point of row `r`, group `g` (of `groups` per row) are stored:
/// rows in fours, then groups, then the row within its four (`[n / 4][groups][4]`, the last
/// four padded with zeros).
pub fn int4_param(r: usize, g: usize, groups: usize) -> usize {
    ((r / 4) * groups + g) * 4 + r % 4
}

/// Which integer format, with int4's group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntFormat {
    Int8,
    Int4 { group: usize },
}

impl IntFormat {
    /// Bits per weight by the format's definition for rows of `k` inputs (scales and zero
    /// points included).
    pub fn bits_per_weight(self, k: usize) -> f64 {
        match self {
            Self::Int8 => 8.0 + 32.0 / k as f64,
            Self::Int4 { group } => 4.0 + 24.0 / group as f64,
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::Int8 => "int8".into(),
            Self::Int4 { group } => format!("int4:g{group}"),
        }
    }
}

/// A `[n, k]` weight matrix in one of the integer formats.
#[derive(Debug, Clone, PartialEq)]
pub enum IntWeights {
    Int8 { n: usize, k: usize, q: Vec<i8>, scales: Vec<f32> },
    Int4 { n: usize, k: usize, group: usize, packed: Vec<u32>, scales: Vec<f16>, zeros: Vec<u8> },
}

impl IntWeights {
    /// Quantizes `w` (`n * k` values, row-major `[out, in]`). Errors name what does not fit.
    pub fn quantize(format: IntFormat, w: &[f32], n: usize, k: usize) -> Result<Self, String> {
        if w.len() != n * k {
            return Err(format!("{} values for a {n} x {k} matrix", w.len()));
        }
        match format {
            IntFormat::Int8 => Ok(quantize_int8(w, n, k)),
            IntFormat::Int4 { group } => {
                if group == 0 || !group.is_multiple_of(INT4_PER_WORD) || !k.is_multiple_of(group) {
                    return Err(format!("group size {group} does not divide rows of {k} inputs into whole groups of a multiple of 8"));
                }
                Ok(quantize_int4(w, n, k, group))
            }
        }
    }

    pub fn format(&self) -> IntFormat {
        match self {
            Self::Int8 { .. } => IntFormat::Int8,
            Self::Int4 { group, .. } => IntFormat::Int4 { group: *group },
        }
    }

    /// `(n, k)`: output rows, inputs per row.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Self::Int8 { n, k, .. } | Self::Int4 { n, k, .. } => (*n, *k),
        }
    }

    /// Bytes held: codes, scales and zero points.
    pub fn bytes(&self) -> usize {
        match self {
            Self::Int8 { q, scales, .. } => q.len() + scales.len() * 4,
            Self::Int4 { packed, scales, zeros, .. } => packed.len() * 4 + scales.len() * 2 + zeros.len(),
        }
    }

    /// The values of row `r` as f32 (what the formats mean; the kernels compute with these).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        match self {
            Self::Int8 { k, q, scales, .. } => {
                let s = scales[r];
                out.iter_mut().zip(&q[r * k..(r + 1) * k]).for_each(|(o, &v)| *o = v as f32 * s);
            }
            Self::Int4 { k, group, packed, scales, zeros, .. } => {
                let groups = k / group;
                let words = &packed[r * k / INT4_PER_WORD..(r + 1) * k / INT4_PER_WORD];
                for (j, o) in out.iter_mut().enumerate().take(*k) {
                    let g = int4_param(r, j / group, groups);
                    let code = (words[j / INT4_PER_WORD] >> (4 * (j % INT4_PER_WORD))) & 0xf;
                    *o = (code as i32 - zeros[g] as i32) as f32 * scales[g].to_f32();
                }
            }
        }
    }

    /// Rebuilds int4 weights from the file layout: `packed` `[n, k / 8]` words, `scales` and
    /// `zeros` `[n, k / group]` row-major (the order `parts` writes).
    pub fn int4_from_parts(n: usize, k: usize, group: usize, packed: Vec<u32>, scales: &[f16], zeros: &[u8]) -> Result<Self, String> {
        let groups = k.checked_div(group).filter(|_| group > 0 && k.is_multiple_of(group)).ok_or_else(|| format!("group {group} does not divide {k}"))?;
        if packed.len() != n * k / INT4_PER_WORD || scales.len() != n * groups || zeros.len() != n * groups {
            return Err(format!("int4 parts of {} words, {} scales and {} zeros do not make a {n} x {k} matrix in groups of {group}", packed.len(), scales.len(), zeros.len()));
        }
        let slots = n.div_ceil(4) * 4 * groups;
        let (mut s, mut z) = (vec![f16::ZERO; slots], vec![0u8; slots]);
        for r in 0..n {
            for g in 0..groups {
                s[int4_param(r, g, groups)] = scales[r * groups + g];
                z[int4_param(r, g, groups)] = zeros[r * groups + g];
            }
        }
        Ok(Self::Int4 { n, k, group, packed, scales: s, zeros: z })
    }

    /// int4's scales and zero points in the file layout, `[n, k / group]` row-major.
    pub fn int4_params_by_row(&self) -> Option<(Vec<f16>, Vec<u8>)> {
        let Self::Int4 { n, k, group, scales, zeros, .. } = self else { return None };
        let groups = k / group;
        let at = |r: usize, g: usize| int4_param(r, g, groups);
        Some((
            (0..n * groups).map(|i| scales[at(i / groups, i % groups)]).collect(),
            (0..n * groups).map(|i| zeros[at(i / groups, i % groups)]).collect(),
        ))
    }

    /// Matrices of one format and width stacked row-wise (fused projections), as if quantized
    /// together: every row is quantized on its own.
    pub fn concat_rows(parts: &[IntWeights]) -> Result<Self, String> {
        let first = parts.first().ok_or("nothing to concatenate")?;
        let (_, k) = first.dims();
        if parts.iter().any(|p| p.dims().1 != k || p.format() != first.format()) {
            return Err("parts of different widths or formats".into());
        }
        let n: usize = parts.iter().map(|p| p.dims().0).sum();
        match first {
            Self::Int8 { .. } => {
                let (mut q, mut scales) = (Vec::new(), Vec::new());
                for p in parts {
                    if let Self::Int8 { q: pq, scales: ps, .. } = p {
                        q.extend_from_slice(pq);
                        scales.extend_from_slice(ps);
                    }
                }
                Ok(Self::Int8 { n, k, q, scales })
            }
            Self::Int4 { group, .. } => {
                let (mut packed, mut scales, mut zeros) = (Vec::new(), Vec::new(), Vec::new());
                for p in parts {
                    if let (Self::Int4 { packed: pp, .. }, Some((s, z))) = (p, p.int4_params_by_row()) {
                        packed.extend_from_slice(pp);
                        scales.extend(s);
                        zeros.extend(z);
                    }
                }
                Self::int4_from_parts(n, k, *group, packed, &scales, &zeros)
            }
        }
    }

    /// All values, `[n, k]` row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let (n, k) = self.dims();
        let mut out = vec![0f32; n * k];
        out.chunks_exact_mut(k).enumerate().for_each(|(r, row)| self.dequantize_row(r, row));
        out
    }
}

fn quantize_int8(w: &[f32], n: usize, k: usize) -> IntWeights {
    let mut q = Vec::with_capacity(n * k);
    let mut scales = Vec::with_capacity(n);
    for row in w.chunks_exact(k) {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / INT8_MAX;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        q.extend(row.iter().map(|&v| (v * inv).round().clamp(-INT8_MAX, INT8_MAX) as i8));
        scales.push(scale);
    }
    IntWeights::Int8 { n, k, q, scales }
}

fn quantize_int4(w: &[f32], n: usize, k: usize, group: usize) -> IntWeights {
    let groups = k / group;
    let slots = n.div_ceil(4) * 4 * groups;
    let mut scales = vec![f16::ZERO; slots];
    let mut zeros = vec![0u8; slots];
    let mut packed = vec![0u32; n * k / INT4_PER_WORD];
    for (g, values) in w.chunks_exact(group).enumerate() {
        let (lo, hi) = values.iter().fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        // The range always holds 0 (lo <= 0 <= hi), so zero lands in [0, 15] and an all-zero
        // group stays exactly zero. The scale is rounded to f16 first: codes are chosen
        // against the scale that is stored.
        let scale = f16::from_f32((hi - lo) / INT4_MAX as f32);
        let s = scale.to_f32();
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        let zero = (-lo * inv).round().clamp(0.0, INT4_MAX as f32);
        for (j, &v) in values.iter().enumerate() {
            let code = ((v * inv).round() + zero).clamp(0.0, INT4_MAX as f32) as u32;
            let index = g * group + j;
            packed[index / INT4_PER_WORD] |= code << (4 * (index % INT4_PER_WORD));
        }
        let at = int4_param(g / groups, g % groups, groups);
        scales[at] = scale;
        zeros[at] = zero as u8;
    }
    IntWeights::Int4 { n, k, group, packed, scales, zeros }
}

#[cfg(test)]
mod tests {
    use super::super::test_values::pseudo;
    use super::*;

    /// Worked by hand: row [-1, 0.5, 2, 0, ...] in int8 has scale 2/127, so 0.5 -> round(31.75) = 32.
    #[test]
    fn int8_is_per_row_absmax() {
        let mut w = vec![0f32; 2 * 8];
        w[..3].copy_from_slice(&[-1.0, 0.5, 2.0]);
        w[8] = -0.25;
        let q = IntWeights::quantize(IntFormat::Int8, &w, 2, 8).unwrap();
        let IntWeights::Int8 { q: codes, scales, .. } = &q else { panic!() };
        assert_eq!(scales[0], 2.0 / 127.0);
        assert_eq!(&codes[..3], &[-64, 32, 127]);
        assert_eq!(codes[8], -127);
        assert_eq!(q.bytes(), 16 + 8);
    }

    /// Group [-1, ..., 2]: scale 3/15 = 0.2, zero round(1 / 0.2) = 5, and 2 -> 10 + 5 = 15.
    #[test]
    fn int4_is_groupwise_asymmetric_with_f16_scales() {
        let mut w = vec![0f32; 16];
        w[0] = -1.0;
        w[1] = 2.0;
        w[2] = 0.3;
        let q = IntWeights::quantize(IntFormat::Int4 { group: 8 }, &w, 1, 16).unwrap();
        let IntWeights::Int4 { packed, scales, zeros, .. } = &q else { panic!() };
        assert_eq!(scales[0], f16::from_f32(0.2));
        assert_eq!(zeros[0], 5);
        assert_eq!(packed[0] & 0xf, 0);
        assert_eq!((packed[0] >> 4) & 0xf, 15);
        // An all-zero group: scale 0, codes equal to the zero point, values exactly 0.
        assert_eq!(scales[int4_param(0, 1, 2)].to_f32(), 0.0);
        let d = q.dequantize();
        assert!(d[8..].iter().all(|&v| v == 0.0));
        assert!((d[2] - 0.4).abs() < 1e-3, "0.3 rounds to the nearest multiple of 0.2: {}", d[2]);
    }

    /// Round-to-nearest: every value within half a step of its original (plus the f16
    /// rounding of int4's scale, up to 2^-11 x 15 steps = 0.0073 of a step at the range's ends).
    #[test]
    fn reconstruction_error_is_at_most_half_a_step() {
        let (n, k) = (5, 256);
        let w = pseudo(n * k, 9);
        for format in [IntFormat::Int8, IntFormat::Int4 { group: 32 }, IntFormat::Int4 { group: 128 }] {
            let q = IntWeights::quantize(format, &w, n, k).unwrap();
            let d = q.dequantize();
            for (i, (a, b)) in w.iter().zip(&d).enumerate() {
                let step = match &q {
                    IntWeights::Int8 { scales, .. } => scales[i / k],
                    IntWeights::Int4 { scales, group, .. } => scales[int4_param(i / k, (i % k) / group, k / group)].to_f32(),
                };
                assert!((a - b).abs() <= step * 0.508 + 1e-6, "{format:?} {i}: {a} -> {b}, step {step}");
            }
        }
    }

    /// The file layout round-trips, and stacking rows equals quantizing the stacked matrix.
    #[test]
    fn parts_round_trip_and_concatenation_equals_quantizing_together() {
        let (k, group) = (128, 32);
        let (a, b) = (pseudo(5 * k, 1), pseudo(3 * k, 2));
        for format in [IntFormat::Int8, IntFormat::Int4 { group }] {
            let qa = IntWeights::quantize(format, &a, 5, k).unwrap();
            let qb = IntWeights::quantize(format, &b, 3, k).unwrap();
            let both: Vec<f32> = a.iter().chain(&b).copied().collect();
            let together = IntWeights::quantize(format, &both, 8, k).unwrap();
            assert_eq!(IntWeights::concat_rows(&[qa.clone(), qb]).unwrap(), together, "{format:?}");
            if let IntWeights::Int4 { packed, .. } = &qa {
                let (s, z) = qa.int4_params_by_row().unwrap();
                assert_eq!(IntWeights::int4_from_parts(5, k, group, packed.clone(), &s, &z).unwrap(), qa);
                assert!(IntWeights::int4_from_parts(5, k, group, packed.clone(), &s[1..], &z).is_err());
            }
        }
    }

    #[test]
    fn rejects_groups_that_do_not_divide_the_rows() {
        let w = vec![0f32; 2 * 96];
        assert!(IntWeights::quantize(IntFormat::Int4 { group: 64 }, &w, 2, 96).is_err());
        assert!(IntWeights::quantize(IntFormat::Int4 { group: 12 }, &w, 2, 96).is_err());
        assert!(IntWeights::quantize(IntFormat::Int4 { group: 32 }, &w, 2, 96).is_ok());
        assert!(IntWeights::quantize(IntFormat::Int8, &w[1..], 2, 96).is_err());
    }

    #[test]
    fn bits_per_weight_by_definition() {
        assert_eq!(IntFormat::Int8.bits_per_weight(576), 8.0 + 32.0 / 576.0);
        assert_eq!(IntFormat::Int4 { group: 128 }.bits_per_weight(576), 4.1875);
        assert_eq!(IntFormat::Int4 { group: 32 }.bits_per_weight(576), 4.75);
    }
}
