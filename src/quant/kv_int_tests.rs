//! Tests of `kv_int`: the fast kernels bit for bit against the scalar reference, round-trip
//! error bounds, the scales against their formulas, and edge cases (constant groups, zeros).

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
    let mut draw = |_| match rng.random_range(0..100) {
        0 => 0.0,
        1 => -0.0,
        2..=4 => rng.random_range(-40.0f32..40.0),
        _ => rng.random_range(-2.0f32..2.0),
    };
    (0..n).map(&mut draw).collect()
}

/// Bit patterns, so -0.0 differs from 0.0; every NaN reads as one pattern (payloads are not
/// compared: they are whatever the CPU makes of 0 * inf).
fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() }).collect()
}

#[derive(Default, Debug, PartialEq)]
struct Sym {
    codes: Vec<i8>,
    scales: Vec<f32>,
}

#[derive(Default, Debug, PartialEq)]
struct Asym {
    codes: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<f32>,
}

fn sym(x: &[f32], row_len: usize) -> (Sym, Vec<f32>) {
    let mut q = Sym::default();
    quantize_sym8(x, row_len, &mut q.codes, &mut q.scales);
    let mut out = vec![f32::NAN; x.len()];
    dequantize_sym8(&q.codes, &q.scales, row_len, &mut out);
    (q, out)
}

fn asym(x: &[f32], group: usize, bits: Bits) -> (Asym, Vec<f32>) {
    let mut q = Asym::default();
    quantize_asym(x, group, bits, &mut q.codes, &mut q.scales, &mut q.zeros);
    let mut out = vec![f32::NAN; x.len()];
    dequantize_asym(&q.codes, &q.scales, &q.zeros, group, bits, &mut out);
    (q, out)
}

/// Fast path and reference agree bit for bit on `x`: codes, scales, zeros and what comes back.
fn assert_fast_equals_reference(x: &[f32], len: usize) {
    let (q, out) = sym(x, len);
    let (mut r, mut r_out) = (Sym::default(), vec![0.0; x.len()]);
    reference::quantize_sym8(x, len, &mut r.codes, &mut r.scales);
    reference::dequantize_sym8(&q.codes, &q.scales, len, &mut r_out);
    assert_eq!((&q.codes, bits_of(&q.scales)), (&r.codes, bits_of(&r.scales)), "sym8 row {len}");
    assert_eq!(bits_of(&out), bits_of(&r_out), "sym8 row {len}");
    for bits in ALL_BITS.into_iter().filter(|b| len.is_multiple_of(b.codes_per_byte())) {
        let (q, out) = asym(x, len, bits);
        let (mut r, mut r_out) = (Asym::default(), vec![0.0; x.len()]);
        reference::quantize_asym(x, len, bits, &mut r.codes, &mut r.scales, &mut r.zeros);
        reference::dequantize_asym(&q.codes, &q.scales, &q.zeros, len, bits, &mut r_out);
        assert_eq!(q.codes, r.codes, "{bits:?} group {len}");
        assert_eq!((bits_of(&q.scales), bits_of(&q.zeros)), (bits_of(&r.scales), bits_of(&r.zeros)));
        assert_eq!(bits_of(&out), bits_of(&r_out), "{bits:?} group {len}");
    }
}

#[test]
fn fast_paths_equal_the_reference_bitwise() {
    // 32, 64 and 128 are whole blocks and words; 40, 12 and 4 end in partial ones (and 12
    // leaves a remainder after the 8 min/max lanes). 64 is SmolLM2's head dim (sym8 rows).
    for (i, len) in [32, 64, 128, 40, 12, 4].into_iter().enumerate() {
        assert_fast_equals_reference(&random_values(len * 37, i as u64), len);
    }
}

#[test]
fn non_finite_input_and_zero_minima_match_the_reference() {
    let mut x = random_values(256, 7);
    (x[3], x[70], x[100]) = (f32::NAN, f32::INFINITY, f32::NEG_INFINITY);
    x[192..].fill(f32::NAN);
    // Groups whose minimum is a zero of either sign, in lanes that the fast path reduces in
    // another order than the reference: the stored zero point must still be +0.0 in both.
    for (i, v) in x[128..192].iter_mut().enumerate() {
        *v = [0.0, -0.0, 1.5][i % 3] * (i % 8 + 1) as f32;
    }
    assert_fast_equals_reference(&x, 32);
    assert_fast_equals_reference(&x, 64);
}

#[test]
fn round_trip_error_is_within_half_a_step() {
    let x = random_values(64 * 40, 3);
    let check = |what: &str, len: usize, out: &[f32], scales: &[f32]| {
        for ((xs, os), &scale) in x.chunks(len).zip(out.chunks(len)).zip(scales) {
            let bound = 0.5 * scale + REL_SLACK * xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in xs.iter().zip(os) {
                assert!((a - b).abs() <= bound, "{what} {len}: {a} -> {b}, scale {scale}");
            }
        }
    };
    // The half-step bound uses the stored scale, so the scales themselves are checked
    // against the formulas computed here from the data (an inflated scale would pass above).
    let same = |got: f32, want: f32| (got - want).abs() <= want * f32::EPSILON;
    let (q, out) = sym(&x, 64);
    check("sym8 row", 64, &out, &q.scales);
    for (xs, &scale) in x.chunks(64).zip(&q.scales) {
        let want = (xs.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0).max(MIN_SCALE);
        assert!(same(scale, want), "sym8 scale {scale} vs max|x| / 127 = {want}");
    }
    for bits in ALL_BITS {
        for group in [32, 64, 128] {
            let (q, out) = asym(&x, group, bits);
            check(&format!("{bits:?} group"), group, &out, &q.scales);
            for (xs, &scale) in x.chunks(group).zip(&q.scales) {
                let (lo, hi) = xs.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
                let want = ((hi - lo) / bits.levels() as f32).max(MIN_SCALE);
                assert!(same(scale, want), "{bits:?} group {group}: scale {scale} vs (max - min) / levels = {want}");
            }
        }
    }
}

#[test]
fn constant_groups_round_trip_exactly_without_nan() {
    for bits in ALL_BITS {
        for c in [0.0f32, -0.0, 1.0, -3.25, 1e30, -1e-30] {
            let (q, out) = asym(&[c; 64], 32, bits);
            assert_eq!(q.scales, [MIN_SCALE; 2], "{bits:?} {c}");
            assert!(out.iter().all(|&v| v == c), "{bits:?} {c}: {out:?}");
        }
    }
    // An all-zero sym8 row (a masked or padded token) divides by MIN_SCALE, not by zero.
    let (q, out) = sym(&[0.0; 64], 64);
    assert_eq!((q.codes, q.scales, out), (vec![0; 64], vec![MIN_SCALE], vec![0.0; 64]));
}

#[test]
fn packing_puts_the_first_value_in_the_lowest_bits() {
    // 2 bits, min 0 and max 3 so code == value: [0, 1, 2, 3] -> 0b11_10_01_00 and reversed.
    let x: Vec<f32> = (0..32).map(|i| if i % 8 < 4 { i % 4 } else { 3 - i % 4 } as f32).collect();
    assert_eq!(asym(&x, 32, Bits::Two).0.codes, [0xE4, 0x1B].repeat(4));
    // The same bytes from a group shorter than a block (the scalar tail).
    assert_eq!(asym(&x[..8], 8, Bits::Two).0.codes, [0xE4, 0x1B]);
    // 4 bits, min 0 and max 15: value pairs (0, 1), (2, 3), ... -> 0x10, 0x32, ...
    let x: Vec<f32> = (0..32).map(|i| (i % 16) as f32).collect();
    let (q, out) = asym(&x, 32, Bits::Four);
    assert_eq!(q.codes, [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE].repeat(2));
    assert_eq!((q.scales, q.zeros), (vec![1.0], vec![0.0]));
    // And back: unpacking reads the low bits first.
    assert_eq!(out, x);
}

#[test]
fn byte_counts_and_appending() {
    let x = random_values(3 * 4 * 128, 5);
    for bits in ALL_BITS {
        for group in [32, 64, 128] {
            let (mut q, _) = asym(&x, group, bits);
            let (n, groups) = (x.len() * bits.bits() as usize / 8, x.len() / group);
            assert_eq!((q.codes.len(), q.scales.len(), q.zeros.len()), (n, groups, groups), "{bits:?} {group}");
            // Appending the first group again leaves what was there and adds the same bytes after it.
            let before = q.codes.clone();
            quantize_asym(&x[..group], group, bits, &mut q.codes, &mut q.scales, &mut q.zeros);
            assert_eq!((&q.codes[..n], &q.codes[n..]), (&before[..], &before[..group * bits.bits() as usize / 8]));
            assert_eq!((q.scales.len(), q.scales[groups]), (groups + 1, q.scales[0]));
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
