//! Our int8 / int4 fused dequantize + matrix-vector kernels (`llmbench::quant::int_matmul`)
//! next to candle's q8_0 / q4_0 `QMatMul` and our own GGUF kernels, on SmolLM2's MLP shapes
//! (`[576 x 1536]` down and `[1536 x 576]` up), in GB/s of weight bytes read, beside the
//! memory bandwidth of this machine measured in the same run (a 512 MiB copy).
//!
//! Each shape is repeated over COPIES distinct matrices, visited in turn, so the weights come
//! from memory as in decoding (one matrix alone would sit in the cache and flatter every
//! kernel). Run: `cargo bench --bench int_matmul` (LLMBENCH_BENCH_REPS passes, default 20;
//! RAYON_NUM_THREADS / candle's pool use all cores).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use llmbench::quant::cpu_matmul::{self, BlockFormat};
use llmbench::quant::int_matmul;
use llmbench::quant::int_weights::{IntFormat, IntWeights};
use std::time::Instant;

const COPIES: usize = 96;
/// int4's group on SmolLM2: 128 does not divide its 576-wide rows (see `quantize --group-size`).
const GROUP: usize = 64;

fn values(n: usize, k: usize, seed: usize) -> Vec<f32> {
    (0..n * k).map(|i| (((i * 2654435761 + seed * 97) % 1000) as f32 / 500.0 - 1.0) * 0.05).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per pass of `f` over all copies (median of `reps` after 2 warm-up passes).
fn time(reps: usize, f: &mut dyn FnMut()) -> f64 {
    f();
    f();
    median((0..reps).map(|_| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    }).collect())
}

fn copy_bandwidth_gb_s() -> f64 {
    let n = 512 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let s = time(5, &mut || {
        dst.copy_from_slice(&src);
        std::hint::black_box(&dst);
    });
    // A copy reads and writes every byte.
    2.0 * n as f64 / s / 1e9
}

fn main() {
    let reps: usize = std::env::var("LLMBENCH_BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let bandwidth = copy_bandwidth_gb_s();
    println!("memory: {bandwidth:.1} GB/s (512 MiB copy, read + write)\n");
    println!("| shape [n x k] | kernel | weight bytes | us / matvec | weight GB/s | vs candle q4_0 |");
    println!("|---|---|---:|---:|---:|---:|");
    for (n, k) in [(576, 1536), (1536, 576)] {
        let dense: Vec<Vec<f32>> = (0..COPIES).map(|c| values(n, k, c)).collect();
        let x: Vec<f32> = (0..k).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
        let xt = Tensor::from_slice(&x, (1, k), &Device::Cpu).unwrap();
        let mut dst = vec![0f32; n];
        let gguf = |dtype| -> Vec<std::sync::Arc<QTensor>> {
            dense.iter().map(|v| std::sync::Arc::new(QTensor::quantize(&Tensor::from_slice(v, (n, k), &Device::Cpu).unwrap(), dtype).unwrap())).collect()
        };
        let (q4, q8) = (gguf(GgmlDType::Q4_0), gguf(GgmlDType::Q8_0));
        let ints = |format| -> Vec<IntWeights> { dense.iter().map(|v| IntWeights::quantize(format, v, n, k).unwrap()).collect() };
        let i8w = ints(IntFormat::Int8);
        let i4w: Vec<(usize, Vec<IntWeights>)> =
            [GROUP, 128].into_iter().filter(|g| k % g == 0).map(|group| (group, ints(IntFormat::Int4 { group }))).collect();
        let candle = |qs: &[std::sync::Arc<QTensor>]| -> Vec<QMatMul> { qs.iter().map(|q| QMatMul::from_arc(q.clone()).unwrap()).collect() };
        let (c4, c8) = (candle(&q4), candle(&q8));

        let mut rows: Vec<(String, usize, f64)> = Vec::new();
        let mut measure = |name: &str, bytes: usize, f: &mut dyn FnMut()| rows.push((name.to_string(), bytes, time(reps, f) / COPIES as f64));
        measure("candle q4_0", q4[0].storage_size_in_bytes(), &mut || c4.iter().for_each(|m| drop(std::hint::black_box(m.forward(&xt).unwrap()))));
        measure("candle q8_0", q8[0].storage_size_in_bytes(), &mut || c8.iter().for_each(|m| drop(std::hint::black_box(m.forward(&xt).unwrap()))));
        let q4_data: Vec<Vec<u8>> = q4.iter().map(|q| q.data().unwrap().to_vec()).collect();
        let q8_data: Vec<Vec<u8>> = q8.iter().map(|q| q.data().unwrap().to_vec()).collect();
        measure("llmbench q4_0", q4[0].storage_size_in_bytes(), &mut || {
            q4_data.iter().for_each(|w| assert!(cpu_matmul::matmul(BlockFormat::Q4_0, w, (1, k, n), &x, &mut dst)))
        });
        measure("llmbench q8_0", q8[0].storage_size_in_bytes(), &mut || {
            q8_data.iter().for_each(|w| assert!(cpu_matmul::matmul(BlockFormat::Q8_0, w, (1, k, n), &x, &mut dst)))
        });
        measure("llmbench int8", i8w[0].bytes(), &mut || i8w.iter().for_each(|w| assert!(int_matmul::matmul(w, 1, &x, &mut dst))));
        for (group, ws) in &i4w {
            measure(&format!("llmbench int4 g{group}"), ws[0].bytes(), &mut || ws.iter().for_each(|w| assert!(int_matmul::matmul(w, 1, &x, &mut dst))));
        }
        let candle_q4 = rows[0].2;
        for (name, bytes, s) in &rows {
            println!("| {n} x {k} | {name} | {bytes} | {:.1} | {:.1} | {:.2}x |", s * 1e6, *bytes as f64 / s / 1e9, candle_q4 / s);
        }
    }
}
