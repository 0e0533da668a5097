//! `LLMBENCH_CUDA_TRACE=FILE`: the timeline of the replayed graph decode step, launch by launch.
//! nsys cannot see inside a CUDA graph and ncu runs each kernel alone, so neither says how long
//! a kernel waits for the one before it or how early programmatic dependent launch starts it.
//! Here every kernel stamps its slot (`../kernels/trace.cuh`: first block's start, first and
//! last block's release from the wait, last block's end, %globaltimer ns) and, after each
//! replay, the decoder adds the stamps to running sums and rewrites FILE as CSV: per launch, the
//! mean times in microseconds from the step's first start. The stamps cost four 64-bit atomics a
//! block and one stream synchronisation a step, so a traced run's tok/s is not the untraced one.

use super::launch::{ptr, wrap};
use super::timeline::{Timeline, STAMPS};
use candle_core::cuda_backend::cudarc::driver::{sys, CudaStream};
use candle_core::{DType, Device, Result, Tensor};
use std::path::PathBuf;
use std::sync::Arc;

pub(super) struct StepTrace {
    path: PathBuf,
    device: Device,
    /// `[launches][STAMPS]` nanoseconds, as i64 (the kernels treat them as u64).
    stamps: Tensor,
    timeline: Timeline,
    names: Vec<String>,
}

impl StepTrace {
    /// From LLMBENCH_CUDA_TRACE; `None` where it is not set.
    pub(super) fn from_env(device: &Device) -> Result<Option<Self>> {
        let Some(path) = std::env::var_os("LLMBENCH_CUDA_TRACE").filter(|p| !p.is_empty()) else { return Ok(None) };
        let stamps = Tensor::zeros(STAMPS, DType::I64, device)?;
        Ok(Some(Self { path: PathBuf::from(path), device: device.clone(), stamps, timeline: Timeline::new(vec![]), names: vec![] }))
    }

    /// Before a capture: the step's launches in order. A step of other launches (another cache
    /// capacity can change them) starts a new timeline.
    pub(super) fn prepare(&mut self, names: Vec<String>) -> Result<()> {
        if names != self.names {
            self.stamps = Tensor::zeros(names.len() * STAMPS, DType::I64, &self.device)?;
            self.timeline = Timeline::new(names.clone());
            self.names = names;
        }
        Ok(())
    }

    /// The device address of launch `i`'s slot.
    pub(super) fn slot(&self, i: usize, stream: &Arc<CudaStream>) -> Result<u64> {
        if i >= self.timeline.launches() {
            candle_core::bail!("cuda graph trace: launch {i} has no slot ({} launches)", self.timeline.launches());
        }
        Ok(ptr(&self.stamps, stream)? + (i * STAMPS * 8) as u64)
    }

    /// Queues the slots' reset (minima to u64::MAX, maxima to 0) before a replay.
    pub(super) fn reset(&self, stream: &Arc<CudaStream>) -> Result<()> {
        let init: Vec<i64> = (0..self.timeline.launches()).flat_map(|_| [-1i64, -1, 0, 0]).collect();
        let dst = ptr(&self.stamps, stream)?;
        // SAFETY: `init` covers the whole tensor; a pageable source is staged before the call returns.
        unsafe { sys::cuMemcpyHtoDAsync_v2(dst, init.as_ptr().cast(), init.len() * 8, stream.cu_stream()).result() }.map_err(wrap)
    }

    /// Waits for the replay, adds its stamps to the timeline and rewrites the file.
    pub(super) fn collect(&mut self, stream: &Arc<CudaStream>) -> Result<()> {
        stream.synchronize().map_err(wrap)?;
        let mut host = vec![0u64; self.timeline.launches() * STAMPS];
        let src = ptr(&self.stamps, stream)?;
        // SAFETY: `host` has the tensor's size; the stream is idle.
        unsafe { sys::cuMemcpyDtoH_v2(host.as_mut_ptr().cast(), src, host.len() * 8).result() }.map_err(wrap)?;
        self.timeline.add(&host);
        std::fs::write(&self.path, self.timeline.csv()).map_err(|e| wrap(format!("LLMBENCH_CUDA_TRACE={}: {e}", self.path.display())))
    }
}
