//! Where the graph's greedy steps leave their tokens for the host, and the step queued ahead
//! of the call that wants it (`cuda.rs`'s `step_greedy`, LLMBENCH_CUDA_AHEAD): two page-locked
//! words, mapped into the device's address space, word `pos & 1` for the step at `pos`, so
//! that a step queued ahead (at `pos + 1`) never writes the word whose token the host is about
//! to read. Each has an event, recorded after the step's token is in it: after a device-to-host
//! copy into it, or, where the argmax kernel writes the word itself (LLMBENCH_CUDA_REPLAY=direct),
//! right after the step, with no copy queued between two steps.

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
    /// Its word in `GreedyPicks` (`pos & 1`).
    pub pick: usize,
}

pub(super) struct GreedyPicks {
    words: *mut u32,
    /// The words' address on the device (the argmax kernel's `host_picks`).
    device_words: u64,
    done: [CudaEvent; 2],
}

impl GreedyPicks {
    pub fn new(ctx: &Arc<CudaContext>) -> Result<Self> {
        let no_timing = Some(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING);
        let done = [ctx.new_event(no_timing).map_err(wrap)?, ctx.new_event(no_timing).map_err(wrap)?];
        let mut words = std::ptr::null_mut();
        let mut device_words = 0;
        unsafe {
            sys::cuMemHostAlloc(&mut words, 2 * 4, sys::CU_MEMHOSTALLOC_DEVICEMAP).result().map_err(wrap)?;
            let mapped = sys::cuMemHostGetDevicePointer_v2(&mut device_words, words, 0).result();
            if let Err(e) = mapped {
                let _ = sys::cuMemFreeHost(words);
                return Err(wrap(e));
            }
        }
        Ok(Self { words: words as *mut u32, device_words, done })
    }

    /// The words' device address, for the argmax kernel.
    pub fn device_words(&self) -> u64 {
        self.device_words
    }

    /// Queues on `stream`, after the step at `pos`, its token's way to the host: the copy of the
    /// 4-byte token at `copy_from` (a device address) into word `pos & 1`, or none where the
    /// step's argmax kernel wrote that word itself, then the word's event. Returns the word.
    pub fn after_step(&mut self, pos: usize, copy_from: Option<u64>, stream: &CudaStream) -> Result<usize> {
        let pick = pos & 1;
        if let Some(token) = copy_from {
            unsafe {
                sys::cuMemcpyDtoHAsync_v2(self.words.add(pick) as *mut std::ffi::c_void, token, 4, stream.cu_stream())
                    .result()
                    .map_err(wrap)?;
            }
        }
        self.done[pick].record(stream).map_err(wrap)?;
        Ok(pick)
    }

    /// The token in word `pick`, once the step (or copy) its event follows has ended.
    pub fn read(&self, pick: usize) -> Result<u32> {
        self.done[pick].synchronize().map_err(wrap)?;
        // Written by the kernel or copy the event follows, which has ended (a kernel's writes
        // to mapped host memory are visible to the host once its completion is).
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
