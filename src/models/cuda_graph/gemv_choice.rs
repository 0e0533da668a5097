//! Which gemv kernel a dense projection of the graph step launches, and its launch shape: the
//! streaming gemv (`../kernels/gemv_stream.cuh`: rows through a ring of shared-memory stages
//! filled by the bulk copy engine, about one block a multiprocessor) for matrices of
//! `MIN_STREAM_BYTES` or more whose stages fit in shared memory, else the warp gemv
//! (`llama_decode.cu`: a warp a row pair, loads in registers), which also takes every quantized
//! format and wins on small matrices (results/gpu/NOTES.md, v8). `LLMBENCH_CUDA_GEMV=warp` or
//! `=stream` forces one kernel (stream: every dense projection it fits), for comparing them on
//! the same build; `LLMBENCH_CUDA_GEMV_STAGE_BYTES`, `_RING_BYTES`, `_MIN_BYTES` and
//! `_BLOCKS_PER_SM` override the defaults for tuning.

use candle_core::{Error, Result};

/// Threads of a streaming block (STREAM_THREADS in gemv_stream.cuh): 8 warps.
pub const STREAM_THREADS: u32 = 256;
/// Most stages a ring may have (STREAM_MAX_STAGES in gemv_stream.cuh).
const MAX_STAGES: usize = 16;
/// Bytes a stage holds by default (whole rows: 2, 4 or 8 of them).
const STAGE_BYTES: usize = 16 * 1024;
/// Bytes of a block's ring by default: all but one stage in flight.
const RING_BYTES: usize = 192 * 1024;
/// Matrices below this many bytes take the warp gemv by default.
const MIN_STREAM_BYTES: usize = 16 << 20;
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
    ring_bytes: usize,
    min_bytes: usize,
    blocks_per_sm: u32,
    sms: u32,
}

/// A streaming projection's shape: rows a stage (2, 4 or 8: whole pairs, and 8 warps split
/// evenly over them) and dynamic shared memory (the stages and the input vector).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamShape {
    pub stage_rows: usize,
    pub stages: usize,
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
        let ring_bytes = number("LLMBENCH_CUDA_GEMV_RING_BYTES", RING_BYTES, 8 * 1024..=224 * 1024)?;
        let min_bytes = number("LLMBENCH_CUDA_GEMV_MIN_BYTES", MIN_STREAM_BYTES, 0..=usize::MAX)?;
        let blocks_per_sm = number("LLMBENCH_CUDA_GEMV_BLOCKS_PER_SM", 1, 1..=4)? as u32;
        Ok(Self { mode, stage_bytes, ring_bytes, min_bytes, blocks_per_sm, sms: sms.max(1) })
    }

    /// The streaming shape of a dense projection of `rows` rows of `row_bytes`, or `None` where
    /// the warp gemv takes it (forced, a matrix under `min_bytes` by default, or stages and
    /// input that would not fit beside `reserved` bytes of the split-combine's factors). The
    /// ring holds at most a block's whole share of the rows.
    pub fn stream(&self, rows: usize, row_bytes: usize, reserved: usize) -> Option<StreamShape> {
        if self.mode == Mode::Warp || (self.mode == Mode::Auto && rows * row_bytes < self.min_bytes) {
            return None;
        }
        let stage_rows = [8, 4, 2].into_iter().find(|r| r * row_bytes <= self.stage_bytes).unwrap_or(2);
        let share = rows.div_ceil(self.sms as usize * self.blocks_per_sm as usize).div_ceil(stage_rows);
        let stages = (self.ring_bytes / (stage_rows * row_bytes)).min(share).clamp(2, MAX_STAGES);
        let shared_bytes = stages * stage_rows * row_bytes + row_bytes;
        (shared_bytes + reserved <= MAX_BLOCK_SHARED).then_some(StreamShape { stage_rows, stages, shared_bytes })
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
        GemvChoice { mode: Mode::Auto, stage_bytes: STAGE_BYTES, ring_bytes: RING_BYTES, min_bytes: 0, blocks_per_sm: 1, sms: 132 }
    }

    #[test]
    fn stage_rows_follow_the_row_size() {
        // TinyLlama bf16: 2,048 inputs (4 KiB rows) and 5,632 (11 KiB rows); SmolLM2's 576.
        // TinyLlama's gate/up: 11,264 rows, 86 a block: the ring holds 12 of its 22 stages.
        assert_eq!(auto().stream(11264, 4096, 0), Some(StreamShape { stage_rows: 4, stages: 12, shared_bytes: 12 * 4 * 4096 + 4096 }));
        // Its O projection: 2,048 rows, 16 a block, 4 stages: the whole share at once.
        assert_eq!(auto().stream(2048, 4096, 0).map(|s| s.stages), Some(4));
        assert_eq!(auto().stream(2048, 11264, 0).map(|s| (s.stage_rows, s.stages)), Some((2, 8)));
        assert_eq!(auto().stream(49152, 1152, 0).map(|s| (s.stage_rows, s.stages)), Some((8, 16)));
        let small_by_default = GemvChoice { min_bytes: MIN_STREAM_BYTES, ..auto() };
        assert_eq!(small_by_default.stream(2048, 4096, 0), None);
        assert!(small_by_default.stream(11264, 4096, 0).is_some());
    }

    #[test]
    fn too_long_rows_and_forced_warp_go_to_the_warp_gemv() {
        assert_eq!(auto().stream(4096, 60 * 1024, 0), None);
        assert_eq!(auto().stream(4096, 4096, MAX_BLOCK_SHARED), None);
        assert_eq!(GemvChoice { mode: Mode::Warp, ..auto() }.stream(4096, 4096, 0), None);
    }

    #[test]
    fn blocks_cover_the_pairs_once() {
        assert_eq!(auto().blocks(5632, 4), 132);
        assert_eq!(auto().blocks(100, 8), 25);
        assert_eq!(auto().blocks(0, 2), 1);
    }
}
