//! One decode step's projections at SmolLM2-135M's shapes (30 layers of `[960 | 576 | 3072] x
//! 576` and `576 x 1536`) with activation sparsity S: the sparse column-major products
//! (`llmbench::sparse::gemv`) at S = 0, 0.25, 0.4, 0.5 against the dense products the engine
//! runs today on the same weights (our row-major Q8_0 kernel with 8-bit activations, candle's
//! f32 matmul). Activations are zeroed by magnitude, TEAL's rule. Reports the median step time
//! and the speedup over dense in the same run.
//! Run: `cargo bench --bench sparse_gemv` (LLMBENCH_BENCH_REPS measured steps, default 20, after
//! 3 warm-up steps).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use llmbench::quant::cpu_matmul::{self, BlockFormat};
use llmbench::sparse::gemv::ColumnMajor;
use std::time::Instant;

const HIDDEN: usize = 576;
const LAYERS: usize = 30;
const SHAPES: [(usize, usize); 4] = [
    (960, HIDDEN),
    (HIDDEN, HIDDEN),
    (3072, HIDDEN),
    (HIDDEN, 1536),
];
const WARMUP: usize = 3;

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 2654435761 + seed * 97) % 1000) as f32 / 500.0 - 1.0) * 0.05)
        .collect()
}

/// `k` activations with the `sparsity` share of smallest magnitudes zeroed.
fn activations(k: usize, sparsity: f64) -> Vec<f32> {
    let x: Vec<f32> = (0..k)
        .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 50.0 + ((i * 31 % 7) as f32 - 3.0) * 0.01)
        .collect();
    let mut mags: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    mags.sort_by(f32::total_cmp);
    let cut = (sparsity * k as f64) as usize;
    x.iter()
        .map(|&v| {
            if cut > 0 && v.abs() <= mags[cut - 1] {
                0.0
            } else {
                v
            }
        })
        .collect()
}

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn time(reps: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..WARMUP {
        step();
    }
    median_ms(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                step();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn main() {
    let reps: usize = std::env::var("LLMBENCH_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rows: Vec<(usize, usize, Vec<f32>)> = (0..LAYERS)
        .flat_map(|l| {
            SHAPES
                .iter()
                .map(move |&(n, k)| (n, k, values(n * k, l * 13 + n)))
        })
        .collect();
    let q8_rows: Vec<(usize, usize, Vec<u8>)> = rows
        .iter()
        .map(|(n, k, w)| {
            let q = QTensor::quantize(
                &Tensor::from_slice(w, (*n, *k), &Device::Cpu).unwrap(),
                GgmlDType::Q8_0,
            )
            .unwrap();
            (*n, *k, q.data().unwrap().to_vec())
        })
        .collect();
    let f32_dense: Vec<(Tensor, usize)> = rows
        .iter()
        .map(|(n, k, w)| {
            (
                Tensor::from_slice(w, (*n, *k), &Device::Cpu)
                    .unwrap()
                    .t()
                    .unwrap(),
                *k,
            )
        })
        .collect();
    let q8_columns: Vec<ColumnMajor> = rows
        .iter()
        .map(|(n, k, w)| ColumnMajor::q8_0_from_rows(w, *n, *k).unwrap())
        .collect();
    let f32_columns: Vec<ColumnMajor> = rows
        .iter()
        .map(|(n, k, w)| ColumnMajor::f32_from_rows(w, *n, *k).unwrap())
        .collect();
    let mut y = vec![0f32; 3072];

    let x_full = activations(1536, 0.0);
    let dense_q8 = time(reps, || {
        for (n, k, w) in &q8_rows {
            assert!(cpu_matmul::matmul(
                BlockFormat::Q8_0,
                w,
                (1, *k, *n),
                &x_full[..*k],
                &mut y[..*n]
            ));
        }
    });
    let inputs: Vec<Tensor> = [HIDDEN, 1536]
        .iter()
        .map(|&k| Tensor::from_slice(&x_full[..k], (1, k), &Device::Cpu).unwrap())
        .collect();
    let dense_f32 = time(reps, || {
        for (w, k) in &f32_dense {
            let x = if *k == HIDDEN { &inputs[0] } else { &inputs[1] };
            std::hint::black_box(x.matmul(w).unwrap());
        }
    });
    println!("dense Q8_0 (row-major, 8-bit activations): {dense_q8:.2} ms/step; dense f32 (candle): {dense_f32:.2} ms/step");
    println!("| S | sparse Q8_0 ms | vs dense Q8_0 | sparse f32 ms | vs dense f32 |");
    println!("|---|---:|---:|---:|---:|");
    for sparsity in [0.0, 0.25, 0.4, 0.5] {
        let xs: Vec<Vec<f32>> = [HIDDEN, 1536]
            .iter()
            .map(|&k| activations(k, sparsity))
            .collect();
        let x_for = |k: usize| if k == HIDDEN { &xs[0] } else { &xs[1] };
        let q8 = time(reps, || {
            for w in &q8_columns {
                w.gemv(x_for(w.in_dim), &mut y[..w.out_dim]).unwrap();
            }
        });
        let f32_ms = time(reps, || {
            for w in &f32_columns {
                w.gemv(x_for(w.in_dim), &mut y[..w.out_dim]).unwrap();
            }
        });
        println!(
            "| {sparsity} | {q8:.2} | {:.2}x | {f32_ms:.2} | {:.2}x |",
            dense_q8 / q8,
            dense_f32 / f32_ms
        );
    }
}
