//! Our int8 / int4 CUDA kernels (`llmbench::quant::int_cuda`, `src/quant/kernels/int_matvec.cu`)
//! checked against the scalar reference and timed next to candle's q8_0 / q4_0 kernels and a
//! dense bf16 product (cuBLAS), on TinyLlama-1.1B's shapes, beside the device-to-device copy
//! bandwidth measured in the same run. Built by `.ci/build-cuda --bench`, run on the lent GPU
//! (`.ci/gpu-bench kernels`); results/quantize-h200/ holds a run.
//!
//! Check: for every format, shape, activation-row count and rows-per-warp variant, fresh
//! pseudo-random weights and activations, the output poisoned with NaN before the launch, then
//! compared with `int_matmul::matmul_reference` (f64, the same activation quantization) by
//! ‖y − ref‖ / ‖ref‖ and the largest |y − ref| / max|ref|; the prefill path (dequantize +
//! cuBLAS) against the f64 product of the dequantized weights; the device dequantization
//! against the host's bit for bit. Any miss prints FAIL and the process exits 1.
//!
//! Timing: each matrix is repeated over enough distinct device copies to read at least 5x the
//! L2 cache per pass (one matrix alone would be served from L2), every kernel's pass is captured
//! in one CUDA graph (so host launch cost is out: the number is the GPU's), replayed REPS times;
//! median per matrix. candle's kernels are captured the same way (its quantize-activation and
//! matvec kernels are both inside). GB/s counts the weight bytes read (codes, scales, zeros).

use candle_core::cuda_backend::CudaDevice;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use llmbench::models::layers::{Linear, BATCHED_DEQUANT_MIN_ROWS};
use llmbench::quant::int_cuda::{DeviceIntWeights, ROWS_PER_WARP};
use llmbench::quant::int_matmul::matmul_reference;
use llmbench::quant::int_weights::{IntFormat, IntWeights};

#[path = "cuda_timing.rs"]
mod cuda_timing;
use cuda_timing::*;

/// f32 rounding over a few thousand terms stays far under this (METHOD.md: "float32 lands far
/// under 1e-3"); a wrong activation code moves a row by ~1e-4 of its norm, so this still fails it.
const TOLERANCE: f64 = 2e-6;
/// Against cuBLAS's f32 product (which may reassociate; no TF32: candle leaves it off).
const PREFILL_TOLERANCE: f64 = 1e-5;

fn check(dev: &CudaDevice, device: &Device, checks: &mut Checks) -> candle_core::Result<()> {
    let stream = dev.cuda_stream();
    let formats = [IntFormat::Int8, IntFormat::Int4 { group: 32 }, IntFormat::Int4 { group: 64 }, IntFormat::Int4 { group: 128 }];
    // TinyLlama's gate/up and down, a row count no warp size divides, a 64-wide-group row.
    let shapes = [(5632, 2048), (2048, 5632), (203, 640), (6, 128)];
    let mut seed = 1u64;
    for format in formats {
        for &(n, k) in &shapes {
            if let IntFormat::Int4 { group } = format {
                if k % group != 0 {
                    continue;
                }
            }
            seed += 1;
            let w = IntWeights::quantize(format, &values(n * k, seed), n, k).map_err(candle_core::Error::Msg)?;
            let on_device = DeviceIntWeights::upload(&w, device)?;
            let host = w.dequantize();
            let deq = on_device.dequantize()?.flatten_all()?.to_vec1::<f32>()?;
            let same = host.iter().zip(&deq).all(|(a, b)| a.to_bits() == b.to_bits());
            checks.run += 1;
            checks.failed += usize::from(!same);
            println!("check {} {n}x{k} dequantize: {}", format.name(), if same { "bitwise equal" } else { "FAIL (differs)" });
            for m in [1, 3, 8] {
                seed += 1;
                let x = values(m * k, seed);
                let reference = matmul_reference(&w, m, &x);
                let xd = stream.clone_htod(&x).map_err(candle_core::Error::wrap)?;
                let act = on_device.quantize_activations(&xd.slice(..), m)?;
                for rows in [1, 2, 4] {
                    let mut y = stream.clone_htod(&vec![f32::NAN; m * n]).map_err(candle_core::Error::wrap)?;
                    on_device.matvec(&act, &mut y, rows)?;
                    let y = stream.clone_dtoh(&y).map_err(candle_core::Error::wrap)?;
                    checks.record(&format!("{} {n}x{k} m={m} rows/warp={rows}", format.name()), errors(&y, &reference), TOLERANCE);
                }
            }
            // A model's layer: a prefill (BATCHED_DEQUANT_MIN_ROWS rows or more) multiplies the exact
            // weights through cuBLAS; fewer rows go through the kernel (checked above).
            let m = BATCHED_DEQUANT_MIN_ROWS + 8;
            seed += 1;
            let x = values(m * k, seed);
            let layer = Linear::int(w.clone(), None, device)?;
            let y = layer.forward(&Tensor::from_slice(&x, (2, m / 2, k), device)?)?.flatten_all()?.to_vec1::<f32>()?;
            let reference: Vec<f64> =
                (0..m * n).map(|i| (0..k).map(|j| x[(i / n) * k + j] as f64 * host[(i % n) * k + j] as f64).sum()).collect();
            checks.record(&format!("{} {n}x{k} m={m} layer prefill (dequantize + cuBLAS)", format.name()), errors(&y, &reference), PREFILL_TOLERANCE);
            if n * k <= 1 << 20 {
                // The kernel's grid over many activation rows.
                let reference = matmul_reference(&w, m, &x);
                let xd = stream.clone_htod(&x).map_err(candle_core::Error::wrap)?;
                let act = on_device.quantize_activations(&xd.slice(..), m)?;
                let mut y = stream.clone_htod(&vec![f32::NAN; m * n]).map_err(candle_core::Error::wrap)?;
                on_device.matvec(&act, &mut y, ROWS_PER_WARP)?;
                let y = stream.clone_dtoh(&y).map_err(candle_core::Error::wrap)?;
                checks.record(&format!("{} {n}x{k} m={m} kernel", format.name()), errors(&y, &reference), TOLERANCE);
            }
        }
    }
    Ok(())
}

fn bench(dev: &CudaDevice, device: &Device) -> candle_core::Result<()> {
    let stream = dev.cuda_stream();
    let bandwidth = copy_bandwidth_gb_s(dev, 1 << 30, 1)?;
    println!("\ndevice-to-device copy: {bandwidth:.0} GB/s (1 GiB by an SM copy kernel, read + write, graph-timed)");
    println!("'% of copy' is against that; '% of same-size copy' against a copy kernel that moves as many bytes");
    println!("(read + write) as the matvec reads, timed the same way (launch and ramp-up cost in both).\n");
    println!("| shape [n x k] | kernel | weight MB | us / matvec | weight GB/s | % of copy | % of same-size copy | vs candle q4_0 |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    // TinyLlama-1.1B: fused QKV, O, fused gate/up, down, the LM head; the 5632 x 2048 (gate or up alone).
    let shapes = [(2560, 2048), (2048, 2048), (5632, 2048), (11264, 2048), (2048, 5632), (32000, 2048)];
    for (si, &(n, k)) in shapes.iter().enumerate() {
        let dense = values(n * k, 1000 + si as u64);
        let x = Tensor::from_slice(&values(k, 2000 + si as u64), (1, k), device)?;
        let cpu = Tensor::from_slice(&dense, (n, k), &Device::Cpu)?;
        let mut rows: Vec<(String, usize, f64)> = Vec::new();
        for (name, dtype) in [("candle q4_0", GgmlDType::Q4_0), ("candle q8_0", GgmlDType::Q8_0)] {
            let q = QTensor::quantize(&cpu, dtype)?;
            let data = q.data()?.to_vec();
            let bytes = data.len();
            let mats = (0..copies_for(bytes))
                .map(|_| QMatMul::from_qtensor(candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &data, vec![n, k], device)?))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let s = time_pass(&stream, &mut || mats.iter().try_for_each(|m| m.forward(&x).map(drop)))?;
            rows.push((name.into(), bytes, s / mats.len() as f64));
        }
        let bf16 = cpu.to_dtype(DType::BF16)?;
        let xb = x.to_dtype(DType::BF16)?;
        let mats = (0..copies_for(n * k * 2)).map(|_| bf16.to_device(device)).collect::<candle_core::Result<Vec<_>>>()?;
        let s = time_pass(&stream, &mut || mats.iter().try_for_each(|m| xb.matmul(&m.t()?).map(drop)))?;
        rows.push(("bf16 (cuBLAS)".into(), n * k * 2, s / mats.len() as f64));
        let group = 128;
        for format in [IntFormat::Int8, IntFormat::Int4 { group }] {
            let w = IntWeights::quantize(format, &dense, n, k).map_err(candle_core::Error::Msg)?;
            let bytes = w.bytes();
            let mats = (0..copies_for(bytes)).map(|_| DeviceIntWeights::upload(&w, device)).collect::<candle_core::Result<Vec<_>>>()?;
            // The whole call as the model makes it (quantize the activation, matvec, allocations).
            let s = time_pass(&stream, &mut || mats.iter().try_for_each(|m| m.forward(&x).map(drop)))?;
            rows.push((format!("llmbench {} (forward)", format.name()), bytes, s / mats.len() as f64));
            // The matvec kernel alone, per rows-per-warp variant.
            let act = {
                let (storage, layout) = x.storage_and_layout();
                let candle_core::Storage::Cuda(cs) = &*storage else { unreachable!("x is on the CUDA device") };
                let (start, end) = layout.contiguous_offsets().expect("contiguous");
                mats[0].quantize_activations(&cs.as_cuda_slice::<f32>()?.slice(start..end), 1)?
            };
            let mut y = stream.alloc_zeros::<f32>(n).map_err(candle_core::Error::wrap)?;
            for r in [1, 2, 4] {
                let s = time_pass(&stream, &mut || mats.iter().try_for_each(|m| m.matvec(&act, &mut y, r)))?;
                let default = if r == ROWS_PER_WARP { " (default)" } else { "" };
                rows.push((format!("llmbench {} kernel, {r} rows/warp{default}", format.name()), bytes, s / mats.len() as f64));
            }
        }
        let candle_q4 = rows[0].2;
        for (name, bytes, s) in &rows {
            let gb_s = *bytes as f64 / s / 1e9;
            // A copy of half the bytes moves as many through memory (read + write) as the matvec reads.
            let same_size = copy_bandwidth_gb_s(dev, bytes / 2, copies_for(*bytes))?;
            println!(
                "| {n} x {k} | {name} | {:.2} | {:.2} | {gb_s:.0} | {:.0}% | {:.0}% | {:.2}x |",
                *bytes as f64 / 1e6,
                s * 1e6,
                100.0 * gb_s / bandwidth,
                100.0 * gb_s / same_size,
                candle_q4 / s
            );
        }
    }
    Ok(())
}

fn main() -> candle_core::Result<()> {
    run_checks_then_bench(check, bench)
}
