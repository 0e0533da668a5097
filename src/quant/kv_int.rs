//! CPU kernels for integer KV caches: quantize on append, dequantize on read.
//! - sym8: one f32 scale per row (max |x| / 127), codes in [-127, 127]; the int8 baseline of KIVI
//!   and KVQuant (one row = one token of one head).
//! - asym 2/4/8: one f32 scale and zero point per group of consecutive values (min and
//!   (max - min) / (2^b - 1)), codes packed 8/b to a byte, first value in the lowest bits; the
//!   group-wise format of KIVI (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization
//!   for KV Cache").
//!
//! The fast paths are safe Rust shaped so that LLVM vectorizes them for the x86-64-v3 target
//! (.cargo/config.toml): fixed `BLOCK`s of values, `chunks_exact` so inner loops carry no bounds
//! checks, lane-wise min/max accumulators. Division, `f32::round` and the order of every
//! multiply/add are the same as in `reference`, so the results are bitwise equal to it (the
//! tests check this); no fast-math, no reciprocal, no FMA.

/// Floor of a scale, so a constant row or group divides by a number and not by zero.
pub const MIN_SCALE: f32 = 1e-12;
/// Largest sym8 code; -128 is left out so the code range is symmetric around zero.
const QMAX8: f32 = 127.0;
/// Values per inner block: four AVX2 registers of f32, and a whole number of bytes at every width.
const BLOCK: usize = 32;
/// Lanes of the min/max accumulators: one AVX2 register of f32.
const LANES: usize = 8;

/// Bits per asymmetric code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    Two,
    Four,
    Eight,
}

impl Bits {
    pub fn bits(self) -> u32 {
        match self {
            Bits::Two => 2,
            Bits::Four => 4,
            Bits::Eight => 8,
        }
    }

    pub fn codes_per_byte(self) -> usize {
        (8 / self.bits()) as usize
    }

    /// Largest code, 2^b - 1: the number of steps between a group's min and max.
    pub fn levels(self) -> u32 {
        (1 << self.bits()) - 1
    }
}

impl TryFrom<u32> for Bits {
    type Error = String;

    fn try_from(bits: u32) -> Result<Self, String> {
        match bits {
            2 => Ok(Bits::Two),
            4 => Ok(Bits::Four),
            8 => Ok(Bits::Eight),
            _ => Err(format!("unsupported code width {bits} bits: use 2, 4 or 8")),
        }
    }
}

/// Symmetric 8-bit rows: for each row of `row_len` values, scale = max|x| / 127 (floored at
/// `MIN_SCALE`), code = round(x / scale) clamped to [-127, 127]. Appends `x.len()` codes and
/// `x.len() / row_len` scales.
///
/// Preconditions (`debug_assert!`): `row_len > 0` and `x.len() % row_len == 0`. A release build
/// quantizes the whole rows and ignores the rest.
pub fn quantize_sym8(x: &[f32], row_len: usize, codes: &mut Vec<i8>, scales: &mut Vec<f32>) {
    debug_assert!(row_len > 0 && x.len() % row_len == 0, "{} values are not rows of {row_len}", x.len());
    if row_len == 0 {
        return;
    }
    let rows = x.len() / row_len;
    // Grow once, then write in place: no capacity check per value or per row.
    let (c0, s0) = (codes.len(), scales.len());
    codes.resize(c0 + rows * row_len, 0);
    scales.resize(s0 + rows, 0.0);
    let rows_out = codes[c0..].chunks_exact_mut(row_len).zip(&mut scales[s0..]);
    for (row, (out, s)) in x.chunks_exact(row_len).zip(rows_out) {
        let scale = (max_abs(row) / QMAX8).max(MIN_SCALE);
        *s = scale;
        for (o, &v) in out.iter_mut().zip(row) {
            *o = (v / scale).round().clamp(-QMAX8, QMAX8) as i8;
        }
    }
}

/// `out[i] = codes[i] as f32 * scale` of its row.
///
/// Preconditions (`debug_assert!`): `row_len > 0`, `out.len() == codes.len()` and
/// `codes.len() == scales.len() * row_len`. A release build writes the rows all three cover.
pub fn dequantize_sym8(codes: &[i8], scales: &[f32], row_len: usize, out: &mut [f32]) {
    debug_assert!(row_len > 0 && out.len() == codes.len(), "{} codes into {} values", codes.len(), out.len());
    debug_assert!(codes.len() == scales.len() * row_len, "{} codes, {} scales", codes.len(), scales.len());
    if row_len == 0 {
        return;
    }
    let rows = codes.chunks_exact(row_len).zip(scales);
    for (o, (c, &scale)) in out.chunks_exact_mut(row_len).zip(rows) {
        for (o, &c) in o.iter_mut().zip(c) {
            *o = c as f32 * scale;
        }
    }
}

/// Asymmetric groups: for each group of `group` consecutive values, zero = min, scale =
/// (max - min) / (2^b - 1) floored at `MIN_SCALE`, code = round((x - min) / scale) clamped to
/// [0, 2^b - 1]. Codes are packed first value in the lowest bits of its byte, 8/b to a byte.
/// Appends `x.len() * b / 8` bytes and one scale and one zero per group.
///
/// Preconditions (`debug_assert!`): `group > 0`, `group % bits.codes_per_byte() == 0` and
/// `x.len() % group == 0`. A release build quantizes the whole groups and ignores the rest.
pub fn quantize_asym(
    x: &[f32],
    group: usize,
    bits: Bits,
    codes: &mut Vec<u8>,
    scales: &mut Vec<f32>,
    zeros: &mut Vec<f32>,
) {
    let per_byte = bits.codes_per_byte();
    debug_assert!(group > 0 && group % per_byte == 0, "group {group} is not a multiple of {per_byte} codes a byte");
    debug_assert!(x.len() % group.max(1) == 0, "{} values are not groups of {group}", x.len());
    if group == 0 {
        return;
    }
    let (groups, group_bytes) = (x.len() / group, group / per_byte);
    let (c0, s0, z0) = (codes.len(), scales.len(), zeros.len());
    codes.resize(c0 + groups * group_bytes, 0);
    scales.resize(s0 + groups, 0.0);
    zeros.resize(z0 + groups, 0.0);
    let params = scales[s0..].iter_mut().zip(&mut zeros[z0..]);
    let groups_out = codes[c0..].chunks_exact_mut(group_bytes).zip(params);
    for (g, (out, (s, z))) in x.chunks_exact(group).zip(groups_out) {
        // One monomorphized loop per width, so shifts and masks are constants.
        (*s, *z) = match bits {
            Bits::Two => quantize_group::<2>(g, out),
            Bits::Four => quantize_group::<4>(g, out),
            Bits::Eight => quantize_group::<8>(g, out),
        };
    }
}

/// `out[i] = code * scale + zero` of its group.
///
/// Preconditions (`debug_assert!`): those of `quantize_asym`, `out.len() == codes.len() * 8 / b`
/// and one scale and one zero per group. A release build writes the groups all four cover.
pub fn dequantize_asym(codes: &[u8], scales: &[f32], zeros: &[f32], group: usize, bits: Bits, out: &mut [f32]) {
    let per_byte = bits.codes_per_byte();
    debug_assert!(group > 0 && group % per_byte == 0, "group {group} is not a multiple of {per_byte} codes a byte");
    debug_assert!(out.len() == codes.len() * per_byte, "{} bytes into {} values", codes.len(), out.len());
    debug_assert!(out.len() == scales.len() * group && scales.len() == zeros.len(), "scales or zeros per group");
    if group == 0 {
        return;
    }
    let params = scales.iter().zip(zeros);
    let groups_in = codes.chunks_exact(group / per_byte).zip(params);
    for (o, (c, (&scale, &zero))) in out.chunks_exact_mut(group).zip(groups_in) {
        match bits {
            Bits::Two => dequantize_group::<2>(c, scale, zero, o),
            Bits::Four => dequantize_group::<4>(c, scale, zero, o),
            Bits::Eight => dequantize_group::<8>(c, scale, zero, o),
        }
    }
}

/// max |x| with one accumulator per lane, so the loop is a vector max; max is exact, so the lane
/// order does not change the result.
fn max_abs(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v.abs());
        }
    }
    chunks.remainder().iter().chain(&acc).fold(0f32, |m, &v| m.max(v.abs()))
}

/// (min, max) with lane accumulators, as `max_abs`.
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for ((l, h), &v) in lo.iter_mut().zip(&mut hi).zip(c) {
            *l = l.min(v);
            *h = h.max(v);
        }
    }
    let lo = chunks.remainder().iter().chain(&lo).fold(f32::INFINITY, |m, &v| m.min(v));
    let hi = chunks.remainder().iter().chain(&hi).fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    (lo, hi)
}

/// Quantizes one group of B-bit codes into `out` and returns its (scale, zero).
#[inline(always)]
fn quantize_group<const B: u32>(g: &[f32], out: &mut [u8]) -> (f32, f32) {
    let per_byte = (8 / B) as usize;
    let levels = ((1u32 << B) - 1) as f32;
    let (lo, hi) = min_max(g);
    // min(-0.0, 0.0) may be either zero depending on the order of the reduction; adding +0.0
    // makes it +0.0 either way, so the stored zero point is the reference's bit for bit.
    let zero = lo + 0.0;
    let scale = ((hi - lo) / levels).max(MIN_SCALE);
    let code = |v: f32| ((v - zero) / scale).round().clamp(0.0, levels) as u8;
    let mut x_blocks = g.chunks_exact(BLOCK);
    let mut out_blocks = out.chunks_exact_mut(BLOCK / per_byte);
    for (xb, ob) in (&mut x_blocks).zip(&mut out_blocks) {
        // Codes of the whole block first (a vector loop), then packing (shifts and ors).
        let mut q = [0u8; BLOCK];
        for (q, &v) in q.iter_mut().zip(xb) {
            *q = code(v);
        }
        for (o, q) in ob.iter_mut().zip(q.chunks_exact(per_byte)) {
            *o = q.iter().enumerate().fold(0, |byte, (i, &c)| byte | c << (i as u32 * B));
        }
    }
    // A group that is not a multiple of BLOCK ends with whole bytes (group % per_byte == 0).
    for (o, xs) in out_blocks.into_remainder().iter_mut().zip(x_blocks.remainder().chunks_exact(per_byte)) {
        *o = xs.iter().enumerate().fold(0, |byte, (i, &v)| byte | code(v) << (i as u32 * B));
    }
    (scale, zero)
}

/// Dequantizes one group of B-bit codes into `out`.
#[inline(always)]
fn dequantize_group<const B: u32>(codes: &[u8], scale: f32, zero: f32, out: &mut [f32]) {
    let per_byte = (8 / B) as usize;
    let mask = ((1u32 << B) - 1) as u8;
    let mut code_blocks = codes.chunks_exact(BLOCK / per_byte);
    let mut out_blocks = out.chunks_exact_mut(BLOCK);
    for (cb, ob) in (&mut code_blocks).zip(&mut out_blocks) {
        // Unpack to one code a byte first, then one vector multiply-add loop over the block.
        let mut q = [0u8; BLOCK];
        for (q, &byte) in q.chunks_exact_mut(per_byte).zip(cb) {
            for (i, q) in q.iter_mut().enumerate() {
                *q = (byte >> (i as u32 * B)) & mask;
            }
        }
        for (o, &q) in ob.iter_mut().zip(&q) {
            *o = q as f32 * scale + zero;
        }
    }
    for (o, &byte) in out_blocks.into_remainder().chunks_exact_mut(per_byte).zip(code_blocks.remainder()) {
        for (i, o) in o.iter_mut().enumerate() {
            *o = ((byte >> (i as u32 * B)) & mask) as f32 * scale + zero;
        }
    }
}

/// Straightforward scalar versions of the four kernels: what the fast paths must equal bit for
/// bit, and the baseline the `kv_quant` bench compares them with. Not for use in the engine.
#[doc(hidden)]
pub mod reference {
    use super::{Bits, MIN_SCALE};

    pub fn quantize_sym8(x: &[f32], row_len: usize, codes: &mut Vec<i8>, scales: &mut Vec<f32>) {
        for row in x.chunks(row_len) {
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = (amax / 127.0).max(MIN_SCALE);
            scales.push(scale);
            for &v in row {
                codes.push((v / scale).round().clamp(-127.0, 127.0) as i8);
            }
        }
    }

    pub fn dequantize_sym8(codes: &[i8], scales: &[f32], row_len: usize, out: &mut [f32]) {
        for i in 0..codes.len() {
            out[i] = codes[i] as f32 * scales[i / row_len];
        }
    }

    pub fn quantize_asym(
        x: &[f32],
        group: usize,
        bits: Bits,
        codes: &mut Vec<u8>,
        scales: &mut Vec<f32>,
        zeros: &mut Vec<f32>,
    ) {
        let (b, levels) = (bits.bits(), bits.levels() as f32);
        for g in x.chunks(group) {
            let min = g.iter().fold(f32::INFINITY, |m, &v| m.min(v));
            let max = g.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            // +0.0 turns a -0.0 minimum into +0.0, as the fast path does (see there).
            let zero = min + 0.0;
            let scale = ((max - min) / levels).max(MIN_SCALE);
            scales.push(scale);
            zeros.push(zero);
            for (i, &v) in g.iter().enumerate() {
                let code = ((v - zero) / scale).round().clamp(0.0, levels) as u8;
                let shift = (i as u32 % (8 / b)) * b;
                if shift == 0 {
                    codes.push(0);
                }
                if let Some(byte) = codes.last_mut() {
                    *byte |= code << shift;
                }
            }
        }
    }

    pub fn dequantize_asym(codes: &[u8], scales: &[f32], zeros: &[f32], group: usize, bits: Bits, out: &mut [f32]) {
        let (b, per_byte) = (bits.bits() as usize, bits.codes_per_byte());
        for i in 0..out.len() {
            let code = (codes[i / per_byte] >> ((i % per_byte) * b)) & bits.levels() as u8;
            out[i] = code as f32 * scales[i / group] + zeros[i / group];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const ALL_BITS: [Bits; 3] = [Bits::Two, Bits::Four, Bits::Eight];
    /// Relative slack on the half-step bound: a few f32 ulps of the largest magnitude, for the
    /// rounding of (x - zero) / scale and of code * scale + zero.
    const REL_SLACK: f32 = 1e-6;

    /// KV-like data: mostly small values, some outliers (the channels keys are known for), and
    /// exact zeros of both signs so the signed-zero handling is exercised.
    fn random_values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| match rng.random_range(0..100) {
                0 => 0.0,
                1 => -0.0,
                2..=4 => rng.random_range(-40.0f32..40.0),
                _ => rng.random_range(-2.0f32..2.0),
            })
            .collect()
    }

    fn bits_of(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    struct Asym {
        codes: Vec<u8>,
        scales: Vec<f32>,
        zeros: Vec<f32>,
    }

    fn asym(x: &[f32], group: usize, bits: Bits) -> Asym {
        let mut q = Asym { codes: Vec::new(), scales: Vec::new(), zeros: Vec::new() };
        quantize_asym(x, group, bits, &mut q.codes, &mut q.scales, &mut q.zeros);
        q
    }

    fn dequant(q: &Asym, group: usize, bits: Bits) -> Vec<f32> {
        let mut out = vec![f32::NAN; q.codes.len() * bits.codes_per_byte()];
        dequantize_asym(&q.codes, &q.scales, &q.zeros, group, bits, &mut out);
        out
    }

    #[test]
    fn sym8_fast_path_equals_the_reference_bitwise() {
        // 64 is SmolLM2's head dim; 12 leaves a remainder after the 8-lane max.
        for (row_len, seed) in [(64, 1), (12, 2)] {
            let x = random_values(row_len * 50, seed);
            let (mut codes, mut scales, mut ref_codes, mut ref_scales) = (vec![], vec![], vec![], vec![]);
            quantize_sym8(&x, row_len, &mut codes, &mut scales);
            reference::quantize_sym8(&x, row_len, &mut ref_codes, &mut ref_scales);
            assert_eq!(codes, ref_codes, "row_len {row_len}");
            assert_eq!(bits_of(&scales), bits_of(&ref_scales), "row_len {row_len}");
            let (mut out, mut ref_out) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            dequantize_sym8(&codes, &scales, row_len, &mut out);
            reference::dequantize_sym8(&codes, &scales, row_len, &mut ref_out);
            assert_eq!(bits_of(&out), bits_of(&ref_out), "row_len {row_len}");
        }
    }

    #[test]
    fn asym_fast_path_equals_the_reference_bitwise() {
        // 32, 64, 128 are whole blocks; 40 and 4 end in a partial block.
        for bits in ALL_BITS {
            for group in [32, 64, 128, 40, 4] {
                let x = random_values(group * 37, group as u64);
                let q = asym(&x, group, bits);
                let mut r = Asym { codes: Vec::new(), scales: Vec::new(), zeros: Vec::new() };
                reference::quantize_asym(&x, group, bits, &mut r.codes, &mut r.scales, &mut r.zeros);
                assert_eq!(q.codes, r.codes, "{bits:?} group {group}");
                assert_eq!(bits_of(&q.scales), bits_of(&r.scales), "{bits:?} group {group}");
                assert_eq!(bits_of(&q.zeros), bits_of(&r.zeros), "{bits:?} group {group}");
                let mut ref_out = vec![0.0; x.len()];
                reference::dequantize_asym(&q.codes, &q.scales, &q.zeros, group, bits, &mut ref_out);
                assert_eq!(bits_of(&dequant(&q, group, bits)), bits_of(&ref_out), "{bits:?} group {group}");
            }
        }
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let row_len = 64;
        let x = random_values(row_len * 40, 3);
        let (mut codes, mut scales) = (vec![], vec![]);
        quantize_sym8(&x, row_len, &mut codes, &mut scales);
        let mut out = vec![0.0; x.len()];
        dequantize_sym8(&codes, &scales, row_len, &mut out);
        for ((xr, or), &scale) in x.chunks(row_len).zip(out.chunks(row_len)).zip(&scales) {
            let amax = xr.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in xr.iter().zip(or) {
                assert!((a - b).abs() <= 0.5 * scale + REL_SLACK * amax, "sym8: {a} -> {b}, scale {scale}");
            }
        }
        for bits in ALL_BITS {
            for group in [32, 64, 128] {
                let x = random_values(group * 20, 4);
                let q = asym(&x, group, bits);
                let out = dequant(&q, group, bits);
                for ((xg, og), &scale) in x.chunks(group).zip(out.chunks(group)).zip(&q.scales) {
                    let amax = xg.iter().fold(0f32, |m, v| m.max(v.abs()));
                    for (a, b) in xg.iter().zip(og) {
                        let bound = 0.5 * scale + REL_SLACK * amax;
                        assert!((a - b).abs() <= bound, "{bits:?} group {group}: {a} -> {b}, scale {scale}");
                    }
                }
            }
        }
    }

    #[test]
    fn constant_groups_round_trip_exactly_without_nan() {
        for bits in ALL_BITS {
            for c in [0.0f32, -0.0, 1.0, -3.25, 1e30, -1e-30] {
                let x = vec![c; 64];
                let q = asym(&x, 32, bits);
                assert!(q.scales.iter().all(|&s| s == MIN_SCALE), "{bits:?} {c}: {:?}", q.scales);
                let out = dequant(&q, 32, bits);
                assert!(out.iter().all(|&v| v == c), "{bits:?} {c}: {out:?}");
            }
        }
        // An all-zero sym8 row (a masked or padded token) divides by MIN_SCALE, not by zero.
        let (mut codes, mut scales) = (vec![], vec![]);
        quantize_sym8(&[0.0; 64], 64, &mut codes, &mut scales);
        let mut out = vec![f32::NAN; 64];
        dequantize_sym8(&codes, &scales, 64, &mut out);
        assert_eq!(scales, [MIN_SCALE]);
        assert!(codes.iter().all(|&c| c == 0) && out.iter().all(|&v| v == 0.0), "{out:?}");
    }

    #[test]
    fn packing_puts_the_first_value_in_the_lowest_bits() {
        // 2 bits, min 0 and max 3 so code == value: [0, 1, 2, 3] -> 0b11_10_01_00, reversed -> 0b00_01_10_11.
        let x: Vec<f32> = (0..32).map(|i| if i % 8 < 4 { i % 4 } else { 3 - i % 4 } as f32).collect();
        assert_eq!(asym(&x, 32, Bits::Two).codes, [0xE4, 0x1B].repeat(4));
        // The same bytes from a group shorter than a block (the scalar tail).
        assert_eq!(asym(&x[..8], 8, Bits::Two).codes, [0xE4, 0x1B]);
        // 4 bits, min 0 and max 15: value pairs (0, 1), (2, 3), ... -> 0x10, 0x32, ...
        let x: Vec<f32> = (0..32).map(|i| (i % 16) as f32).collect();
        let bytes = [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE];
        let q = asym(&x, 32, Bits::Four);
        assert_eq!(q.codes, [bytes, bytes].concat());
        assert_eq!((q.scales, q.zeros), (vec![1.0], vec![0.0]));
        // And back: unpacking reads the low bits first.
        assert_eq!(dequant(&asym(&x, 32, Bits::Four), 32, Bits::Four), x);
    }

    #[test]
    fn byte_counts_and_appending() {
        let x = random_values(3 * 4 * 128, 5);
        for bits in ALL_BITS {
            for group in [32, 64, 128] {
                let mut q = asym(&x, group, bits);
                assert_eq!(q.codes.len(), x.len() * bits.bits() as usize / 8, "{bits:?} group {group}");
                assert_eq!((q.scales.len(), q.zeros.len()), (x.len() / group, x.len() / group));
                // A second append leaves the first untouched and lands after it.
                let first = asym(&x, group, bits);
                quantize_asym(&x[..group], group, bits, &mut q.codes, &mut q.scales, &mut q.zeros);
                assert_eq!(q.codes.len(), first.codes.len() + group * bits.bits() as usize / 8);
                assert_eq!(q.codes[..first.codes.len()], first.codes[..]);
                assert_eq!(q.codes[first.codes.len()..], first.codes[..group / bits.codes_per_byte()]);
                assert_eq!(q.scales.len(), first.scales.len() + 1);
            }
        }
        let (mut codes, mut scales) = (vec![7i8], vec![]);
        quantize_sym8(&x, 64, &mut codes, &mut scales);
        assert_eq!((codes.len(), scales.len(), codes[0]), (1 + x.len(), x.len() / 64, 7));
    }

    #[test]
    fn bits_accessors_and_conversion() {
        let table: Vec<_> = ALL_BITS.iter().map(|b| (b.bits(), b.codes_per_byte(), b.levels())).collect();
        assert_eq!(table, [(2, 4, 3), (4, 2, 15), (8, 1, 255)]);
        for b in ALL_BITS {
            assert_eq!(Bits::try_from(b.bits()), Ok(b));
        }
        let err = Bits::try_from(3).unwrap_err();
        assert!(err.contains('3') && err.contains("2, 4 or 8"), "{err}");
    }
}
