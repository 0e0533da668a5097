//! KV-cache quantization kernels (`llmbench::quant::kv_int`) at SmolLM2-135M's shapes (30 layers,
//! 3 kv heads, head dim 64), fast path next to the scalar reference:
//! - append: quantize one decode step's keys and values for every layer (2 x 30 x 3 x 64 values);
//! - read: dequantize a 4096-token cache of one layer's keys (3 x 4096 x 64 values).
//!
//! sym8 quantizes rows of one head's 64 values; asym4 and asym2 groups of 32. Single thread.
//! Prints a markdown table of medians. Run: `cargo bench --bench kv_quant` (LLMBENCH_BENCH_REPS
//! to change the number of measured calls, default 50, after 5 warm-up calls).

use llmbench::quant::kv_int::{self, reference, Bits};
use std::hint::black_box;
use std::time::Instant;

const LAYERS: usize = 30;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;
const CACHE_TOKENS: usize = 4096;
const GROUP: usize = 32;
const WARMUP: usize = 5;

#[derive(Clone, Copy)]
enum Format {
    Sym8,
    Asym(Bits),
}

impl Format {
    fn name(self) -> String {
        match self {
            Format::Sym8 => format!("sym8 (row {HEAD_DIM})"),
            Format::Asym(bits) => format!("asym{} (group {GROUP})", bits.bits()),
        }
    }

    /// Bytes of codes, scales and zero points for `n` values.
    fn quantized_bytes(self, n: usize) -> usize {
        match self {
            Format::Sym8 => n + 4 * n / HEAD_DIM,
            Format::Asym(bits) => n * bits.bits() as usize / 8 + 8 * n / GROUP,
        }
    }
}

/// Codes (sym8 codes stored as their bytes), scales and zeros of one quantized buffer.
#[derive(Default, PartialEq)]
struct Quantized {
    sym: Vec<i8>,
    asym: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<f32>,
}

impl Quantized {
    fn clear(&mut self) {
        self.sym.clear();
        self.asym.clear();
        self.scales.clear();
        self.zeros.clear();
    }
}

fn quantize(format: Format, fast: bool, x: &[f32], q: &mut Quantized) {
    match (format, fast) {
        (Format::Sym8, true) => kv_int::quantize_sym8(x, HEAD_DIM, &mut q.sym, &mut q.scales),
        (Format::Sym8, false) => reference::quantize_sym8(x, HEAD_DIM, &mut q.sym, &mut q.scales),
        (Format::Asym(b), true) => kv_int::quantize_asym(x, GROUP, b, &mut q.asym, &mut q.scales, &mut q.zeros),
        (Format::Asym(b), false) => reference::quantize_asym(x, GROUP, b, &mut q.asym, &mut q.scales, &mut q.zeros),
    }
}

fn dequantize(format: Format, fast: bool, q: &Quantized, out: &mut [f32]) {
    match (format, fast) {
        (Format::Sym8, true) => kv_int::dequantize_sym8(&q.sym, &q.scales, HEAD_DIM, out),
        (Format::Sym8, false) => reference::dequantize_sym8(&q.sym, &q.scales, HEAD_DIM, out),
        (Format::Asym(b), true) => kv_int::dequantize_asym(&q.asym, &q.scales, &q.zeros, GROUP, b, out),
        (Format::Asym(b), false) => reference::dequantize_asym(&q.asym, &q.scales, &q.zeros, GROUP, b, out),
    }
}

/// Deterministic values in [-2, 2) from a 64-bit LCG (Knuth's MMIX constants): the kernels'
/// speed does not depend on the distribution, and the bench needs no rand.
fn values(n: usize, mut state: u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// Median seconds of one call of `f`, over `reps` calls after `WARMUP` unmeasured ones.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..WARMUP {
        f();
    }
    let mut samples: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

fn main() {
    let reps: usize = std::env::var("LLMBENCH_BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(50).max(1);
    let step = values(2 * LAYERS * KV_HEADS * HEAD_DIM, 1);
    let cache = values(KV_HEADS * CACHE_TOKENS * HEAD_DIM, 2);
    let mut out = vec![0f32; cache.len()];

    println!("KV quantization kernels, SmolLM2-135M shapes, 1 thread, median of {reps} calls.");
    println!("append = quantize {} values (keys + values of one decode step, all layers);", step.len());
    println!("read = dequantize {} values (one layer's keys, {CACHE_TOKENS} tokens).", cache.len());
    println!("GB/s = (4 bytes per f32 value + bytes of codes, scales and zero points) / median time:");
    println!("read and written together; append reads the f32 and writes the rest, read the reverse.\n");
    println!("| format | kernel | append µs | append GB/s | read µs | read GB/s |");
    println!("|---|---|---:|---:|---:|---:|");
    for format in [Format::Sym8, Format::Asym(Bits::Four), Format::Asym(Bits::Two)] {
        // The cache to read is made once by the fast path; the bench checks both paths agree on it.
        let mut cached = Quantized::default();
        quantize(format, true, &cache, &mut cached);
        let mut check = Quantized::default();
        quantize(format, false, &cache, &mut check);
        assert!(cached == check, "{}: fast path and reference disagree", format.name());

        for fast in [true, false] {
            let mut q = Quantized::default();
            let append = median_secs(reps, || {
                q.clear();
                quantize(format, fast, black_box(&step), &mut q);
                black_box(&q);
            });
            let read = median_secs(reps, || {
                dequantize(format, fast, black_box(&cached), &mut out);
                black_box(&out);
            });
            let append_bytes = (4 * step.len() + format.quantized_bytes(step.len())) as f64;
            let read_bytes = (4 * cache.len() + format.quantized_bytes(cache.len())) as f64;
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.1} | {:.2} |",
                format.name(),
                if fast { "fast" } else { "reference" },
                append * 1e6,
                append_bytes / append / 1e9,
                read * 1e6,
                read_bytes / read / 1e9,
            );
        }
    }
}
