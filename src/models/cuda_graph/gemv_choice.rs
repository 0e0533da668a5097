//! Which gemv kernel a dense projection of the graph step launches, and its launch shape: the
//! streaming gemv (`../kernels/gemv_stream.cuh`: rows through a ring of shared-memory stages,
//! about one block a multiprocessor) where its stages fit in shared memory, else the warp gemv
//! (`llama_decode.cu`: a warp a row pair, loads in registers), which also takes every quantized
//! format. `LLMBENCH_CUDA_GEMV=warp` or `=stream` forces one kernel, for comparing them on the
//! same build (results/gpu/NOTES.md); `LLMBENCH_CUDA_GEMV_STAGE_BYTES` and
//! `LLMBENCH_CUDA_GEMV_BLOCKS_PER_SM` override the stream's shape for tuning.

use candle_core::{Error, Result};

/// Threads of a streaming block (STREAM_THREADS in gemv_stream.cuh): 8 warps.
pub const STREAM_THREADS: u32 = 256;
/// Stages of the ring (STREAM_STAGES in gemv_stream.cuh): three in flight while one is read.
const STREAM_STAGES: usize = 4;
/// Bytes a stage holds by default: 3 x 16 KiB in flight a block, ~6 MB over 132 blocks, above
/// what the H200's bandwidth-latency product asks (~4 TB/s x ~1 us); small enough that a block
/// of the next kernel fits beside it (programmatic dependent launch starts it early).
const STAGE_BYTES: usize = 16 * 1024;
/// Dynamic shared memory a block may take on Hopper, less the kernel's static arrays.
const MAX_BLOCK_SHARED: usize = 227 * 1024 - 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Auto,
    Warp,
    Stream,
}

/// How the graph step's dense projections are launched (read once, when the decoder is built).
#[derive(Debug, Clone, Copy)]
pub struct GemvChoice {
    mode: Mode,
    stage_bytes: usize,
    blocks_per_sm: u32,
    sms: u32,
}

/// A streaming projection's shape: rows a stage (2, 4 or 8: whole pairs, and 8 warps split
/// evenly over them) and dynamic shared memory (the stages and the input vector).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamShape {
    pub stage_rows: usize,
    pub shared_bytes: usize,
}

impl GemvChoice {
    /// From the environment, for a device of `sms` multiprocessors.
    pub fn from_env(sms: u32) -> Result<Self> {
        let mode = match std::env::var("LLMBENCH_CUDA_GEMV").ok().as_deref() {
            None | Some("") | Some("auto") => Mode::Auto,
            Some("warp") => Mode::Warp,
            Some("stream") => Mode::Stream,
            Some(other) => return Err(Error::Msg(format!("LLMBENCH_CUDA_GEMV={other}: expected auto, warp or stream"))),
        };
        let number = |name: &str, default: usize, range: std::ops::RangeInclusive<usize>| -> Result<usize> {
            match std::env::var(name) {
                Err(_) => Ok(default),
                Ok(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| Error::Msg(format!("{name}={v}: expected a whole number in {}..={}", range.start(), range.end()))),
            }
        };
        let stage_bytes = number("LLMBENCH_CUDA_GEMV_STAGE_BYTES", STAGE_BYTES, 1024..=64 * 1024)?;
        let blocks_per_sm = number("LLMBENCH_CUDA_GEMV_BLOCKS_PER_SM", 1, 1..=4)? as u32;
        Ok(Self { mode, stage_bytes, blocks_per_sm, sms: sms.max(1) })
    }

    /// The streaming shape of a dense `[n, k]` projection with `row_bytes` a row, or `None`
    /// where the warp gemv takes it (forced, or the stages and input would not fit beside
    /// `reserved` bytes of the split-combine's factors).
    pub fn stream(&self, row_bytes: usize, reserved: usize) -> Option<StreamShape> {
        if self.mode == Mode::Warp {
            return None;
        }
        let stage_rows = [8, 4, 2].into_iter().find(|r| r * row_bytes <= self.stage_bytes).unwrap_or(2);
        let shared_bytes = STREAM_STAGES * stage_rows * row_bytes + row_bytes;
        (shared_bytes + reserved <= MAX_BLOCK_SHARED).then_some(StreamShape { stage_rows, shared_bytes })
    }

    /// Blocks of a streaming launch over `pairs` row pairs: about `blocks_per_sm` a
    /// multiprocessor, never more than there are stages' worth of pairs.
    pub fn blocks(&self, pairs: usize, stage_rows: usize) -> u32 {
        let items = pairs.div_ceil(stage_rows / 2) as u32;
        items.min(self.sms * self.blocks_per_sm).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> GemvChoice {
        GemvChoice { mode: Mode::Auto, stage_bytes: STAGE_BYTES, blocks_per_sm: 1, sms: 132 }
    }

    #[test]
    fn stage_rows_follow_the_row_size() {
        // TinyLlama bf16: 2,048 inputs (4 KiB rows) and 5,632 (11 KiB rows); SmolLM2's 576.
        assert_eq!(auto().stream(4096, 0), Some(StreamShape { stage_rows: 4, shared_bytes: 4 * 4 * 4096 + 4096 }));
        assert_eq!(auto().stream(11264, 0).map(|s| s.stage_rows), Some(2));
        assert_eq!(auto().stream(1152, 0).map(|s| s.stage_rows), Some(8));
    }

    #[test]
    fn too_long_rows_and_forced_warp_go_to_the_warp_gemv() {
        assert_eq!(auto().stream(44 * 1024, 0), None);
        assert_eq!(auto().stream(4096, MAX_BLOCK_SHARED), None);
        assert_eq!(GemvChoice { mode: Mode::Warp, ..auto() }.stream(4096, 0), None);
    }

    #[test]
    fn blocks_cover_the_pairs_once() {
        assert_eq!(auto().blocks(5632, 4), 132);
        assert_eq!(auto().blocks(100, 8), 25);
        assert_eq!(auto().blocks(0, 2), 1);
    }
}
