//! The sparse matrix-vector product on CUDA (`llmbench::sparse::gemv_cuda`,
//! `src/sparse/kernels/sparse_gemv.cu`): checked against an f64 product over the kept entries
//! of the weights as stored, then timed against the dense product of the same format (cuBLAS
//! for f32 / f16 / bf16, candle's q8_0 kernel) on TinyLlama-1.1B's four decode projections,
//! at sparsity 0, 0.25, 0.4 and 0.5. Built by `.ci/build-cuda --bench`, run on the lent GPU
//! (`.ci/gpu-bench sparse`); results/sparsity-h200/ holds a run.
//!
//! Check: per format, shape and sparsity, fresh pseudo-random weights and activations, the
//! threshold at that quantile of |x|, the output poisoned with NaN; the kept count must equal
//! the host's and the output the reference within f32 rounding (atomics add the splits in any
//! order). Timing as benches/int_matvec_cuda.rs (cuda_timing.rs): distinct copies per pass,
//! one CUDA graph per pass, median of 30 replays; the sparse time includes zeroing y.

use candle_core::cuda_backend::CudaDevice;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use llmbench::sparse::gemv::ColumnFormat;
use llmbench::sparse::gemv_cuda::DeviceSparseGemv;

#[path = "cuda_timing.rs"]
mod cuda_timing;
use cuda_timing::*;

/// Summing a few thousand f32 products in another order stays far under this (METHOD.md).
const TOLERANCE: f64 = 1e-5;
const SPARSITIES: [f64; 4] = [0.0, 0.25, 0.4, 0.5];

/// The magnitude at quantile `s` of `x`: entries under it are the share `s` (0 keeps all).
fn threshold(x: &[f32], s: f64) -> f32 {
    if s == 0.0 {
        return 0.0;
    }
    let mut m: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    m.sort_by(f32::total_cmp);
    m[((s * x.len() as f64) as usize).min(x.len() - 1)]
}

fn check(dev: &CudaDevice, device: &Device, checks: &mut Checks) -> candle_core::Result<()> {
    let stream = dev.cuda_stream();
    let w = candle_core::Error::wrap;
    let mut seed = 1u64;
    for format in ColumnFormat::ALL {
        // TinyLlama's fused QKV and down, and a small matrix of a few tiles.
        for &(n, k) in &[(2560, 2048), (2048, 5632), (96, 200)] {
            seed += 1;
            let rows = values(n * k, seed);
            let stored = DeviceSparseGemv::stored_rows(&rows, n, k, format).map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
            let mut gemv = DeviceSparseGemv::upload(&rows, n, k, format, device)?;
            for s in [0.0, 0.25, 0.5, 0.9, 1.0] {
                seed += 1;
                let x = values(k, seed);
                let t = if s >= 1.0 {
                    f32::INFINITY
                } else {
                    threshold(&x, s)
                };
                let kept: Vec<usize> = (0..k).filter(|&i| x[i] != 0.0 && x[i].abs() >= t).collect();
                let reference: Vec<f64> = (0..n)
                    .map(|o| {
                        kept.iter()
                            .map(|&i| x[i] as f64 * stored[o * k + i] as f64)
                            .sum()
                    })
                    .collect();
                let xd = stream.clone_htod(&x).map_err(w)?;
                let mut y = stream.clone_htod(&vec![f32::NAN; n]).map_err(w)?;
                let device_kept = gemv.forward_counted(&xd, t, &mut y)?;
                let y = stream.clone_dtoh(&y).map_err(w)?;
                let count_ok = device_kept == kept.len();
                let what = format!(
                    "{} {n}x{k} s={s} (kept {} of {k})",
                    format.name(),
                    kept.len()
                );
                if kept.is_empty() {
                    checks.run += 1;
                    let zero = y.iter().all(|v| *v == 0.0) && count_ok;
                    checks.failed += usize::from(!zero);
                    println!(
                        "check {what}: {}",
                        if zero {
                            "all zero, ok"
                        } else {
                            "FAIL (not zero)"
                        }
                    );
                    continue;
                }
                if !count_ok {
                    checks.run += 1;
                    checks.failed += 1;
                    println!("check {what}: FAIL (device kept {device_kept})");
                    continue;
                }
                checks.record(&what, errors(&y, &reference), TOLERANCE);
            }
        }
    }
    Ok(())
}

/// Seconds of one dense product of the format on `device` (per matrix, graph-timed).
fn dense_seconds(
    dev: &CudaDevice,
    device: &Device,
    rows: &[f32],
    n: usize,
    k: usize,
    x: &[f32],
    format: ColumnFormat,
) -> candle_core::Result<f64> {
    let stream = dev.cuda_stream();
    let cpu = Tensor::from_slice(rows, (n, k), &Device::Cpu)?;
    let xt = Tensor::from_slice(x, (1, k), device)?;
    if format == ColumnFormat::Q8_0 {
        let q = QTensor::quantize(&cpu, GgmlDType::Q8_0)?;
        let data = q.data()?.to_vec();
        let mats = (0..copies_for(data.len()))
            .map(|_| {
                QMatMul::from_qtensor(candle_core::quantized::ggml_file::qtensor_from_ggml(
                    GgmlDType::Q8_0,
                    &data,
                    vec![n, k],
                    device,
                )?)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let s = time_pass(&stream, &mut || {
            mats.iter().try_for_each(|m| m.forward(&xt).map(drop))
        })?;
        return Ok(s / mats.len() as f64);
    }
    let dtype = match format {
        ColumnFormat::F16 => DType::F16,
        ColumnFormat::Bf16 => DType::BF16,
        _ => DType::F32,
    };
    let weights = cpu.to_dtype(dtype)?;
    let xd = xt.to_dtype(dtype)?;
    let mats = (0..copies_for(n * k * dtype.size_in_bytes()))
        .map(|_| weights.to_device(device))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let s = time_pass(&stream, &mut || {
        mats.iter().try_for_each(|m| xd.matmul(&m.t()?).map(drop))
    })?;
    Ok(s / mats.len() as f64)
}

fn bench(dev: &CudaDevice, device: &Device) -> candle_core::Result<()> {
    let stream = dev.cuda_stream();
    let w = candle_core::Error::wrap;
    let bandwidth = copy_bandwidth_gb_s(dev, 1 << 30, 1)?;
    println!("\ndevice-to-device copy: {bandwidth:.0} GB/s (1 GiB by an SM copy kernel, read + write, graph-timed)\n");
    println!("| shape [n x k] | format | dense us | sparse us at S=0 / 0.25 / 0.4 / 0.5 | speedup vs dense at S=0 / 0.25 / 0.4 / 0.5 | sparse GB/s of kept columns at S=0 |");
    println!("|---|---|---:|---|---|---:|");
    // TinyLlama-1.1B's decode projections: fused QKV, O, fused gate/up, down.
    let shapes = [(2560, 2048), (2048, 2048), (11264, 2048), (2048, 5632)];
    for format in [
        ColumnFormat::Bf16,
        ColumnFormat::F16,
        ColumnFormat::F32,
        ColumnFormat::Q8_0,
    ] {
        let mut layer_dense = 0.0;
        let mut layer_sparse = [0.0f64; 4];
        for (si, &(n, k)) in shapes.iter().enumerate() {
            let rows = values(n * k, 1000 + si as u64);
            let x = values(k, 2000 + si as u64);
            let dense = dense_seconds(dev, device, &rows, n, k, &x, format)?;
            let first = DeviceSparseGemv::upload(&rows, n, k, format, device)?;
            let bytes = first.bytes();
            let mut mats = vec![first];
            for _ in 1..copies_for(bytes) {
                mats.push(DeviceSparseGemv::upload(&rows, n, k, format, device)?);
            }
            let xd = stream.clone_htod(&x).map_err(w)?;
            let mut y = stream.alloc_zeros::<f32>(n).map_err(w)?;
            let mut sparse = [0.0f64; 4];
            for (j, s) in SPARSITIES.iter().enumerate() {
                let t = threshold(&x, *s);
                sparse[j] = time_pass(&stream, &mut || {
                    mats.iter().try_for_each(|m| m.forward(&xd, t, &mut y))
                })? / mats.len() as f64;
            }
            layer_dense += dense;
            layer_sparse
                .iter_mut()
                .zip(&sparse)
                .for_each(|(a, b)| *a += b);
            let us = |v: &[f64; 4]| {
                v.iter()
                    .map(|s| format!("{:.2}", s * 1e6))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            let speedups = sparse
                .iter()
                .map(|s| format!("{:.2}x", dense / s))
                .collect::<Vec<_>>()
                .join(" / ");
            println!(
                "| {n} x {k} | {} | {:.2} | {} | {speedups} | {:.0} |",
                format.name(),
                dense * 1e6,
                us(&sparse),
                bytes as f64 / sparse[0] / 1e9
            );
        }
        let speedups = layer_sparse
            .iter()
            .map(|s| format!("{:.2}x", layer_dense / s))
            .collect::<Vec<_>>()
            .join(" / ");
        println!(
            "| one TinyLlama layer (4 products) | {} | {:.2} | {} | {speedups} | |",
            format.name(),
            layer_dense * 1e6,
            layer_sparse
                .iter()
                .map(|s| format!("{:.2}", s * 1e6))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    Ok(())
}

fn main() -> candle_core::Result<()> {
    run_checks_then_bench(check, bench)
}
