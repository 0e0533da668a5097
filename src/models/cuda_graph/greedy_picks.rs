//! Where the graph's greedy steps leave their tokens for the host, and the step queued ahead
//! of the call that wants it (`cuda.rs`'s `step_greedy`, LLMBENCH_CUDA_AHEAD): two page-locked
//! words, each with an event recorded after the device-to-host copy into it, used in turn, so
//! that a step queued ahead never writes the word whose token the host is about to read.

use super::launch::wrap;
use candle_core::cuda_backend::cudarc::driver::{sys, CudaContext, CudaEvent, CudaStream};
use candle_core::Result;
use std::sync::Arc;

/// A greedy step on the decoder's stream whose token the host has not read yet.
pub(super) struct QueuedStep {
    /// The cache it writes (its first key buffer's address), the position it decodes and the
    /// token it was fed (the one before it picked, on the device).
    pub cache: u64,
    pub pos: usize,
    pub fed: u32,
    /// Its word in `GreedyPicks`.
    pub pick: usize,
}

pub(super) struct GreedyPicks {
    words: *mut u32,
    done: [CudaEvent; 2],
    next: usize,
}

impl GreedyPicks {
    pub fn new(ctx: &Arc<CudaContext>) -> Result<Self> {
        let no_timing = Some(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING);
        let done = [ctx.new_event(no_timing).map_err(wrap)?, ctx.new_event(no_timing).map_err(wrap)?];
        let mut words = std::ptr::null_mut();
        unsafe { sys::cuMemAllocHost_v2(&mut words, 2 * 4).result().map_err(wrap)? };
        Ok(Self { words: words as *mut u32, done, next: 0 })
    }

    /// Queues on `stream` the copy of the 4-byte token at `token` (a device address) into the
    /// next word and its event; returns the word.
    pub fn copy(&mut self, token: u64, stream: &CudaStream) -> Result<usize> {
        let pick = self.next;
        self.next ^= 1;
        unsafe {
            sys::cuMemcpyDtoHAsync_v2(self.words.add(pick) as *mut std::ffi::c_void, token, 4, stream.cu_stream())
                .result()
                .map_err(wrap)?;
        }
        self.done[pick].record(stream).map_err(wrap)?;
        Ok(pick)
    }

    /// The token in word `pick`, once the copy into it has ended.
    pub fn read(&self, pick: usize) -> Result<u32> {
        self.done[pick].synchronize().map_err(wrap)?;
        // Written by the copy the event follows, which has ended.
        Ok(unsafe { std::ptr::read_volatile(self.words.add(pick)) })
    }
}

impl Drop for GreedyPicks {
    /// The decoder (`cuda.rs`'s `Inner`) waits for a step still queued before this goes.
    fn drop(&mut self) {
        unsafe {
            let _ = sys::cuMemFreeHost(self.words as *mut std::ffi::c_void);
        }
    }
}
