//! CPU kernels for integer KV caches: quantize on append, dequantize on read.
//! - sym8: one f32 scale per row (max |x| / 127), codes in [-127, 127]; the int8 baseline of KIVI
//!   and KVQuant (a row is one token of one head).
//! - asym 2/4/8: one f32 scale and zero point per group of consecutive values ((max - min) /
//!   (2^b - 1) and min), codes packed 8/b to a byte, first value in the lowest bits: the group-wise
//!   format of KIVI (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV
//!   Cache").
//!
//! The fast paths are safe Rust (one `to_int_unchecked`) shaped so that LLVM vectorizes them with
//! AVX2 for the x86-64-v3 target of .cargo/config.toml; each shape is explained where it is used.
//! They divide, round and multiply-then-add exactly as the scalar `reference` does (no reciprocal,
//! no FMA, no fast-math), so their results are bitwise equal to it, which the tests check.
//! NaN is not valid input: it is skipped by the min/max and quantizes to an end of the code range.

/// Floor of a scale, so a constant row or group divides by a number and not by zero.
pub const MIN_SCALE: f32 = 1e-12;
/// Largest sym8 code; -128 is left out so the code range is symmetric around zero.
const QMAX8: f32 = 127.0;
/// Values quantized together before packing: four AVX2 registers of f32, whole bytes at any width.
const BLOCK: usize = 32;
/// Lanes of the min/max accumulators: one AVX2 register of f32.
const LANES: usize = 8;

/// Bits per asymmetric code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    Two = 2,
    Four = 4,
    Eight = 8,
}

impl Bits {
    pub fn bits(self) -> u32 {
        self as u32
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
    debug_assert!(row_len > 0 && x.len().is_multiple_of(row_len), "{} values are not rows of {row_len}", x.len());
    let Some(rows) = x.len().checked_div(row_len) else { return };
    // Grow once, then write in place: no capacity check per value or per row.
    let (c0, s0) = (codes.len(), scales.len());
    codes.resize(c0 + rows * row_len, 0);
    scales.resize(s0 + rows, 0.0);
    // Every scale first, then every code: a row's codes wait on the division that makes its
    // scale, and in passes of their own the divisions of many rows overlap (and vectorize).
    for (row, s) in x.chunks_exact(row_len).zip(&mut scales[s0..]) {
        *s = fold_lanes(row, 0.0, |m, v| if v.abs() > m { v.abs() } else { m });
    }
    for s in &mut scales[s0..] {
        *s = (*s / QMAX8).max(MIN_SCALE);
    }
    let rows_in = x.chunks_exact(row_len).zip(&scales[s0..]);
    for (out, (row, &scale)) in codes[c0..].chunks_exact_mut(row_len).zip(rows_in) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o = to_code(v / scale, -QMAX8, QMAX8) as i8;
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
    debug_assert!(group > 0 && group.is_multiple_of(per_byte), "group {group} is not whole bytes of {per_byte} codes");
    debug_assert!(x.len().is_multiple_of(group), "{} values are not groups of {group}", x.len());
    let Some(groups) = x.len().checked_div(group) else { return };
    let group_bytes = group / per_byte;
    let (c0, s0, z0) = (codes.len(), scales.len(), zeros.len());
    codes.resize(c0 + groups * group_bytes, 0);
    scales.resize(s0 + groups, 0.0);
    zeros.resize(z0 + groups, 0.0);
    // Parameters first, then codes, as in `quantize_sym8`.
    for (g, (s, z)) in x.chunks_exact(group).zip(scales[s0..].iter_mut().zip(&mut zeros[z0..])) {
        // Two passes over the group (it is in L1): with both selects in one loop LLVM packs and
        // blends compare masks instead of emitting `vminps` and `vmaxps`.
        let lo = fold_lanes(g, f32::INFINITY, |m, v| if v < m { v } else { m });
        let hi = fold_lanes(g, f32::NEG_INFINITY, |m, v| if v > m { v } else { m });
        // min(-0.0, 0.0) may be either zero depending on the order of the reduction; adding +0.0
        // makes it +0.0 either way, so the stored zero point is the reference's bit for bit.
        *z = lo + 0.0;
        *s = hi - lo;
    }
    let levels = bits.levels() as f32;
    for s in &mut scales[s0..] {
        *s = (*s / levels).max(MIN_SCALE);
    }
    let groups_in = x.chunks_exact(group).zip(scales[s0..].iter().zip(&zeros[z0..]));
    for (out, (g, (&scale, &zero))) in codes[c0..].chunks_exact_mut(group_bytes).zip(groups_in) {
        // One monomorphized loop per width, so shifts and masks are constants.
        match bits {
            Bits::Two => quantize_group::<2>(g, scale, zero, out),
            Bits::Four => quantize_group::<4>(g, scale, zero, out),
            Bits::Eight => quantize_group::<8>(g, scale, zero, out),
        }
    }
}

/// `out[i] = code * scale + zero` of its group.
///
/// Preconditions (`debug_assert!`): those of `quantize_asym`, `out.len() == codes.len() * 8 / b`
/// and one scale and one zero per group. A release build writes the groups all four cover.
pub fn dequantize_asym(codes: &[u8], scales: &[f32], zeros: &[f32], group: usize, bits: Bits, out: &mut [f32]) {
    let per_byte = bits.codes_per_byte();
    debug_assert!(group > 0 && group.is_multiple_of(per_byte), "group {group} is not whole bytes of {per_byte} codes");
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

/// round(v) clamped to [lo, hi], as an integer; `lo` and `hi` must be integers in i32's range.
///
/// `f32::max`/`min` give the bound for a NaN (where `clamp` would keep it), so the value is always
/// in range and the plain conversion is defined. A saturating `as` cast instead is scalarized lane
/// by lane (LLVM has no AVX2 lowering for it): sym8 append ran 2.5x slower.
#[inline(always)]
fn to_code(v: f32, lo: f32, hi: f32) -> i32 {
    // SAFETY: the value lies in [lo, hi], whose ends are integers that fit in i32, and is not NaN.
    unsafe { v.round().max(lo).min(hi).to_int_unchecked() }
}

/// `f` over `x` with one accumulator per lane (a vector loop), then over the lanes as a tree, then
/// over the remainder. Used for min and max only, which are exact, so the result does not depend
/// on the order (up to the sign of a zero, see `quantize_asym`). Callers pass the select form
/// `if v > m { v } else { m }`: one `vmaxps`, where `f32::max` adds a compare and a blend in case
/// the accumulator is NaN. A NaN `v` is skipped either way, as `f32::max` skips it in `reference`.
#[inline(always)]
fn fold_lanes(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; LANES];
    let (chunks, rest) = x.as_chunks::<LANES>();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = f(*a, v);
        }
    }
    // Halves, quarters, eighths: three dependent steps instead of seven.
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            acc[i] = f(acc[i], acc[i + n]);
        }
    }
    rest.iter().fold(acc[0], |m, &v| f(m, v))
}

/// Quantizes one group into B-bit codes.
#[inline(always)]
fn quantize_group<const B: u32>(g: &[f32], scale: f32, zero: f32, out: &mut [u8]) {
    let levels = ((1u32 << B) - 1) as f32;
    let code = |v: f32| to_code((v - zero) / scale, 0.0, levels) as u8;
    // A block's codes first, one per byte (a vector loop), then packed with shifts and ors (which
    // LLVM turns into byte shuffles; at 8 bits, a copy). Packing 8 codes into a u32 per step
    // instead made LLVM vectorize across steps with transposes: 2x slower.
    let per_byte = (8 / B) as usize;
    let (blocks, rest) = g.as_chunks::<BLOCK>();
    let mut out_blocks = out.chunks_exact_mut(BLOCK / per_byte);
    for (xb, ob) in blocks.iter().zip(&mut out_blocks) {
        let mut q = [0u8; BLOCK];
        for (q, &v) in q.iter_mut().zip(xb) {
            *q = code(v);
        }
        for (o, q) in ob.iter_mut().zip(q.chunks_exact(per_byte)) {
            *o = q.iter().enumerate().fold(0, |byte, (i, &c)| byte | c << (i as u32 * B));
        }
    }
    // A group that is not a multiple of BLOCK ends in whole bytes (group % codes per byte == 0).
    for (o, xs) in out_blocks.into_remainder().iter_mut().zip(rest.chunks_exact(per_byte)) {
        *o = xs.iter().enumerate().fold(0, |byte, (i, &v)| byte | code(v) << (i as u32 * B));
    }
}

/// Dequantizes one group of B-bit codes.
#[inline(always)]
fn dequantize_group<const B: u32>(codes: &[u8], scale: f32, zero: f32, out: &mut [f32]) {
    if B == 8 {
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = c as f32 * scale + zero;
        }
        return;
    }
    // Four bytes hold 32 / B codes: one u32 load, broadcast and shifted per lane (`vpsrlvd`),
    // masked, converted. Unpacking to one code a byte first made LLVM insert bytes one by one.
    let mask = (1u32 << B) - 1;
    let (words, rest) = codes.as_chunks::<4>();
    let mut out_words = out.chunks_exact_mut((32 / B) as usize);
    for (&w, o) in words.iter().zip(&mut out_words) {
        let word = u32::from_le_bytes(w);
        for (j, o) in o.iter_mut().enumerate() {
            *o = ((word >> (j as u32 * B)) & mask) as f32 * scale + zero;
        }
    }
    let tail = out_words.into_remainder().chunks_exact_mut((8 / B) as usize);
    for (o, &byte) in tail.zip(rest) {
        for (i, o) in o.iter_mut().enumerate() {
            *o = ((byte as u32 >> (i as u32 * B)) & mask) as f32 * scale + zero;
        }
    }
}

/// Straightforward scalar versions of the four kernels: what the fast paths must equal bit for
/// bit, and the baseline the `kv_quant` bench compares them with. They index without checking
/// the preconditions, so they panic on buffers shorter than those say. Not for the engine.
#[doc(hidden)]
pub mod reference {
    use super::{Bits, MIN_SCALE};

    pub fn quantize_sym8(x: &[f32], row_len: usize, codes: &mut Vec<i8>, scales: &mut Vec<f32>) {
        for row in x.chunks(row_len) {
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = (amax / 127.0).max(MIN_SCALE);
            scales.push(scale);
            for &v in row {
                // max then min rather than clamp: the same for numbers, and NaN lands where the
                // fast path puts it.
                #[allow(clippy::manual_clamp)]
                let code = (v / scale).round().max(-127.0).min(127.0) as i8;
                codes.push(code);
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
                let code = ((v - zero) / scale).round().max(0.0).min(levels) as u8;
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
#[path = "kv_int_tests.rs"]
mod tests;
