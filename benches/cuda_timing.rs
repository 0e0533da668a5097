//! What the CUDA kernel benchmarks share (benches/int_matvec_cuda.rs, sparse_gemv_cuda.rs):
//! pseudo-random inputs, error norms and the pass/fail tally, and the timing rule: each
//! matrix repeated over enough distinct device copies to read at least 5x the L2 cache per
//! pass, the pass captured in one CUDA graph (host launch cost out), replayed REPS times,
//! median.

use candle_core::cuda_backend::cudarc::driver::{sys, CudaGraph, CudaStream};
use candle_core::cuda_backend::CudaDevice;
use candle_core::Device;
use llmbench::quant::int_cuda::copy_with_kernel;
use std::sync::Arc;
use std::time::Instant;

/// Bytes each timed pass reads at least: 5x the H200's 50 MB L2.
pub const PASS_BYTES: usize = 256 << 20;
pub const REPS: usize = 30;
/// Pseudo-random values in [-1, 1) (xorshift), a different stream per seed.
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn errors(y: &[f32], reference: &[f64]) -> (f64, f64) {
    let diff: f64 = y
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (a as f64 - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = reference.iter().map(|b| b * b).sum::<f64>().sqrt();
    let max_diff = y
        .iter()
        .zip(reference)
        .map(|(&a, &b)| {
            if a.is_finite() {
                (a as f64 - b).abs()
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max);
    let max_ref = reference.iter().map(|b| b.abs()).fold(0.0, f64::max);
    (diff / norm, max_diff / max_ref)
}

pub struct Checks {
    pub failed: usize,
    pub run: usize,
}

impl Checks {
    pub fn record(&mut self, what: &str, (norm, max): (f64, f64), tolerance: f64) {
        self.run += 1;
        let ok = norm < tolerance && max < tolerance;
        if !ok {
            self.failed += 1;
        }
        println!(
            "check {what}: rel {norm:.2e}, max {max:.2e} (< {tolerance:.0e}) {}",
            if ok { "ok" } else { "FAIL" }
        );
    }
}

/// Seconds per replay of `graph` (median of REPS after 3 warm-up replays).
pub fn time_graph(graph: &CudaGraph, stream: &Arc<CudaStream>) -> candle_core::Result<f64> {
    let w = candle_core::Error::wrap;
    for _ in 0..3 {
        graph.launch().map_err(w)?;
    }
    stream.synchronize().map_err(w)?;
    let mut samples = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let t = Instant::now();
        graph.launch().map_err(w)?;
        stream.synchronize().map_err(w)?;
        samples.push(t.elapsed().as_secs_f64());
    }
    Ok(median(samples))
}

/// Captures `pass` (once run eagerly first: modules and cuBLAS load lazily, which a capture
/// forbids) into a graph and times it. Where the capture fails, says so and times eager passes
/// (host launch cost then included).
pub fn time_pass(
    stream: &Arc<CudaStream>,
    pass: &mut dyn FnMut() -> candle_core::Result<()>,
) -> candle_core::Result<f64> {
    let w = candle_core::Error::wrap;
    pass()?;
    stream.synchronize().map_err(w)?;
    stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .map_err(w)?;
    let ran = pass();
    let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0));
    match (ran, graph) {
        (Ok(()), Ok(Some(graph))) => time_graph(&graph, stream),
        (ran, graph) => {
            println!(
                "(capture failed: {:?} / {:?}; timing eager passes)",
                ran.err(),
                graph.err()
            );
            let mut samples = Vec::with_capacity(REPS);
            for _ in 0..REPS {
                let t = Instant::now();
                pass()?;
                stream.synchronize().map_err(w)?;
                samples.push(t.elapsed().as_secs_f64());
            }
            Ok(median(samples))
        }
    }
}

/// Device-to-device copy bandwidth (bytes read + written per second) of `bytes` at a time,
/// through an SM copy kernel, timed like the kernels: `copies` distinct buffers a pass.
pub fn copy_bandwidth_gb_s(
    dev: &CudaDevice,
    bytes: usize,
    copies: usize,
) -> candle_core::Result<f64> {
    let stream = dev.cuda_stream();
    let bytes = bytes.div_ceil(16) * 16;
    let w = candle_core::Error::wrap;
    let src = (0..copies)
        .map(|_| stream.alloc_zeros::<u8>(bytes).map_err(w))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut dst = (0..copies)
        .map(|_| stream.alloc_zeros::<u8>(bytes).map_err(w))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let s = time_pass(&stream, &mut || {
        src.iter()
            .zip(dst.iter_mut())
            .try_for_each(|(a, b)| copy_with_kernel(dev, a, b))
    })?;
    Ok(2.0 * (bytes * copies) as f64 / s / 1e9)
}

pub fn copies_for(bytes: usize) -> usize {
    PASS_BYTES.div_ceil(bytes).clamp(2, 256)
}

/// A benchmark's main: the device as the engine opens it (one stream, no per-tensor events),
/// every check, then (unless `--check`) the timings; exit 1 if any check failed.
pub fn run_checks_then_bench(
    check: fn(&CudaDevice, &Device, &mut Checks) -> candle_core::Result<()>,
    bench: fn(&CudaDevice, &Device) -> candle_core::Result<()>,
) -> candle_core::Result<()> {
    let dev = CudaDevice::new_with_stream(0)?;
    // As the engine does (engine/device.rs).
    unsafe { dev.disable_event_tracking() };
    let device = Device::Cuda(dev.clone());
    let mut checks = Checks { failed: 0, run: 0 };
    check(&dev, &device, &mut checks)?;
    println!("{} of {} checks passed", checks.run - checks.failed, checks.run);
    if !std::env::args().any(|a| a == "--check") {
        bench(&dev, &device)?;
    }
    if checks.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
