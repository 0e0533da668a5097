//! One decode step's quantized matrix-vector products at SmolLM2-135M's shapes, our AVX2
//! kernels (`llmbench::quant::cpu_matmul`) next to candle's `QMatMul` on the same weights:
//! 30 layers of Q4_1 `[960 | 576 | 3072 | 576] x 576` and `576 x 1536`, then the tied Q8_0
//! head `49152 x 576` (96 MB of weights, more than any cache, read once per step as in
//! decoding). Reports the median step time and the weight bytes read per second.
//! Run: `cargo bench --bench cpu_matmul` (LLMBENCH_BENCH_REPS measured steps, default 30,
//! after 3 warm-up steps; RAYON_NUM_THREADS sets the threads, default all cores).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use llmbench::quant::cpu_matmul::{self, BlockFormat};
use std::time::Instant;

const HIDDEN: usize = 576;
const LAYERS: usize = 30;
const VOCAB: usize = 49152;
const WARMUP: usize = 3;

struct Weight {
    q: std::sync::Arc<QTensor>,
    format: BlockFormat,
    n: usize,
    k: usize,
}

fn weight(n: usize, k: usize, dtype: GgmlDType, seed: usize) -> Weight {
    let values: Vec<f32> = (0..n * k).map(|i| (((i * 2654435761 + seed * 97) % 1000) as f32 / 500.0 - 1.0) * 0.05).collect();
    let q = QTensor::quantize(&Tensor::from_vec(values, (n, k), &Device::Cpu).unwrap(), dtype).unwrap();
    let format = if dtype == GgmlDType::Q8_0 { BlockFormat::Q8_0 } else { BlockFormat::Q4_1 };
    Weight { q: std::sync::Arc::new(q), format, n, k }
}

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let reps: usize = std::env::var("LLMBENCH_BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let mut weights = Vec::new();
    for layer in 0..LAYERS {
        for (n, k) in [(960, HIDDEN), (HIDDEN, HIDDEN), (3072, HIDDEN), (HIDDEN, 1536)] {
            weights.push(weight(n, k, GgmlDType::Q4_1, layer * 7 + n));
        }
    }
    weights.push(weight(VOCAB, HIDDEN, GgmlDType::Q8_0, 1));
    let bytes: usize = weights.iter().map(|w| w.q.storage_size_in_bytes()).sum();
    let x: Vec<f32> = (0..1536).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
    let candle: Vec<QMatMul> = weights.iter().map(|w| QMatMul::from_arc(w.q.clone()).unwrap()).collect();
    let inputs: Vec<Tensor> = weights.iter().map(|w| Tensor::from_slice(&x[..w.k], (1, w.k), &Device::Cpu).unwrap()).collect();
    let mut dst = vec![0f32; VOCAB];

    let ours = |dst: &mut Vec<f32>| {
        for w in &weights {
            let out = &mut dst[..w.n];
            assert!(cpu_matmul::matmul(w.format, &w.q.data().unwrap(), (1, w.k, w.n), &x[..w.k], out));
        }
    };
    let theirs = || {
        for (m, x) in candle.iter().zip(&inputs) {
            std::hint::black_box(m.forward(x).unwrap());
        }
    };
    let time = |f: &mut dyn FnMut()| -> f64 {
        (0..WARMUP).for_each(|_| f());
        median_ms((0..reps).map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        }).collect())
    };
    // Alternate so that machine noise hits both alike.
    let (mut a, mut b) = (vec![], vec![]);
    for _ in 0..3 {
        a.push(time(&mut || ours(&mut dst)));
        b.push(time(&mut || theirs()));
    }
    let (a, b) = (median_ms(a), median_ms(b));
    let mb = bytes as f64 / 1e6;
    println!("| kernels | step ms (median) | weight GB/s |");
    println!("|---|---:|---:|");
    println!("| llmbench AVX2 (Q4_1 + Q8_0) | {a:.2} | {:.1} |", mb / a);
    println!("| candle QMatMul | {b:.2} | {:.1} |", mb / b);
    println!("\n{mb:.1} MB of weights per step; ours {:.2}x candle's speed", b / a);
}
