//! Which gemv kernel a dense projection of the graph step launches, and the streaming kernel's
//! launch shape. The warp gemv (`llama_decode.cu`: a warp a row pair, its loads in registers)
//! runs every projection by default, quantized formats always. `LLMBENCH_CUDA_GEMV=stream`
//! runs dense projections through the streaming gemv instead (`../kernels/gemv_stream.cuh`:
//! rows through a ring of shared-memory stages filled by the bulk copy engine, a block or two a
//! multiprocessor), an experiment that measured slower on the H200 (TinyLlama bf16 774 against
//! 830 tok/s at its best shape; results/gpu/NOTES.md, v8, says why and what to try next);
//! `LLMBENCH_CUDA_GEMV_STAGE_BYTES`, `_RING_BYTES` and `_BLOCKS_PER_SM` set its shape.
//!
//! A layer's MLP runs as one fused launch (`../kernels/mlp_fused.cuh`) over a transposed copy
//! of its down matrix (a block's slice whole contiguous rows) where its weights are dense and
//! each block's slice of a stored down row would fill a 32-byte sector, else as the two
//! warp-gemv launches (gate_up, then down), whose f32 sums are deterministic. Measured on the
//! H100 (NOTES, 2026-12-05 session 8, two rounds round-robin): TinyLlama bf16 fused over the
//! copy 1-3% faster than fused over the stored matrix at 128 new tokens and 7% at 1,024; SmolLM2
//! bf16 (16-byte slices) keeps two launches, since fusing it over the copy measured 32% slower.
//! The copy costs the down matrices' memory again (TinyLlama bf16: 0.5 GB beside 2.2 GB), kept
//! because the prefill reads the stored matrix. `LLMBENCH_CUDA_MLP=fused` fuses over the stored
//! matrix (no copy; 1-7% slower), `LLMBENCH_CUDA_MLP=split` runs every MLP as two launches.
//! Measured and removed (NOTES, session 8): the attention as the QKV launch's tail, the O
//! projection in the MLP's launch, and the whole layer in one launch (blocks waiting for each
//! other through grid-wide counters): each slower on TinyLlama (1-9%), since programmatic
//! dependent launch had already left ~0.5 us a kernel boundary to remove.
//!
//! Orders of loads and of the host's turn, chosen here because they are measured A/B in one device call:
//! `LLMBENCH_CUDA_ATTN_LOADS=after-wait` has the attention load its cache after its wait on the
//! QKV launch (the default loads it before: +6-8% on the H200, NOTES session 10),
//! `LLMBENCH_CUDA_MLP_DOWN` orders the fused MLP's down loads (over the transposed copy):
//! `staged` (the default since session 14) has each block's down rows, up to 96 KiB, copied
//! into shared memory by the bulk copy engine from the kernel's start, before its wait, so that
//! they stream in during phase 1 (H100, two rounds round-robin: TinyLlama +9.8% / +10.4% at 128
//! / 1,024 new tokens, its MLP 31.3 -> 27.8 us after its release; NOTES session 14);
//! `after-sync` loads them after the barrier between the phases, as through session 13; `early`
//! issues the first of them as each warp's gate/up rows end (measured no faster on the H100:
//! TinyLlama 0.998x; NOTES session 12), and
//! `LLMBENCH_CUDA_COMBINE` picks how the O projection reads the position and combines the
//! attention's splits: `staged` (the default since session 14) reads the position before its
//! wait and takes any number of splits in one round trip, two or more staged in shared memory by
//! the async copy (combine_staged) where the stage is at most 16 KiB (cuda.rs's
//! STAGED_COMBINE_BYTES), else as `early`; `early` takes one split in one round trip
//! (gemv_input.cuh's combine_one_split: H100, TinyLlama +3.7% at 128 new tokens, SmolLM2 +10.8%;
//! NOTES session 12) and more in two; `after-wait` reads the position after its wait, as through
//! session 11. `LLMBENCH_CUDA_AHEAD=on` (the default since session 14; `off` turns it off) has a
//! greedy step queue the next one before its token reaches the host (cuda.rs's `step_greedy`).
//! The two together against `early` and `off`, H100, two rounds round-robin (NOTES session 14,
//! where the GPU checks passed with them): TinyLlama +1.0% / +1.5% (128 / 1,024 new tokens),
//! SmolLM2 +3.1% / +8.0%. `LLMBENCH_CUDA_REPLAY=direct` (the default since session 14; `joined`
//! is the earlier way) replays the step on candle's own stream, with no event between two
//! streams, and has the argmax kernel write the greedy token into page-locked host memory, with
//! no copy queued between two steps (cuda.rs's `launch`, greedy_picks.rs): H100, TinyLlama +1.0%
//! / +0.8%, SmolLM2 +2.2% / +2.0%.
//!
//! `LLMBENCH_CUDA_CARVEOUT` sets how each multiprocessor splits its L1 and shared memory:
//! `max-shared` has every kernel of the step prefer the largest carveout, one split for the whole
//! step, at the price of L1 (28 KiB left) for the kernels that use it; `driver` lets the driver
//! pick one per kernel. The staged MLP takes 200 KiB of a multiprocessor's shared memory, the
//! launches around it little. H100, two rounds round-robin (NOTES session 15,
//! results/gpu-h100-session15/call2/): `max-shared` TinyLlama +3.1% / +1.5% (128 / 1,024 new
//! tokens), SmolLM2 -3.2% / -3.5% (its MLP is two launches, nothing staged: only the L1 lost).
//! So `auto`, the default, takes `max-shared` where a layer's MLP stages its down rows and
//! `driver` elsewhere. Not the reason guessed beforehand (the QKV after the MLP released
//! sooner: it is still 1.3 us after the MLP's end); the trace has the QKV and the MLP each
//! ~1.8 us shorter a layer, the O projection before the MLP 1.7 us longer (call4/).

use candle_core::{Error, Result};

/// Threads of a streaming block (STREAM_THREADS in gemv_stream.cuh): 8 warps.
pub const STREAM_THREADS: u32 = 256;
/// Most stages a ring may have (STREAM_MAX_STAGES in gemv_stream.cuh).
const MAX_STAGES: usize = 16;
/// The best streaming shape measured (NOTES, v8): 16 KiB stages in a 96 KiB ring, two blocks
/// a multiprocessor (deeper rings leave no room for the next kernel's block).
const STAGE_BYTES: usize = 16 * 1024;
const RING_BYTES: usize = 96 * 1024;
const BLOCKS_PER_SM: usize = 2;
/// Most bytes of down rows a fused-MLP block stages (LLMBENCH_CUDA_MLP_DOWN=staged) by default:
/// TinyLlama's widest bf16 slice (24 rows of 4 KiB), and two such blocks with their inputs fit a
/// Hopper multiprocessor's 228 KiB. LLMBENCH_CUDA_MLP_STAGE_BYTES sets it (0 to 110 KiB), for
/// a sweep: a smaller stage leaves room for the next launch's blocks to become resident sooner
/// (the trace: the QKV after a staged MLP released 1.3 us after its end, 0.4 unstaged; NOTES
/// session 14), at the price of the rows it no longer stages.
const MLP_STAGE_BYTES: usize = 96 * 1024;
/// Dynamic shared memory a block may take on Hopper, less the kernel's static arrays.
const MAX_BLOCK_SHARED: usize = 227 * 1024 - 1024;

/// How the graph step's dense projections are launched (read once, when the decoder is built).
#[derive(Debug, Clone, Copy)]
pub struct GemvChoice {
    stream: bool,
    stage_bytes: usize,
    /// Most bytes of down rows a fused-MLP block stages (MLP_STAGE_BYTES by default).
    mlp_stage_bytes: usize,
    ring_bytes: usize,
    blocks_per_sm: u32,
    sms: u32,
    /// How a layer's MLP is launched.
    pub mlp: MlpChoice,
    /// Whether the fused MLP over the transposed down matrix issues its first down loads as each
    /// warp's gate/up rows end (LLMBENCH_CUDA_MLP_DOWN=early; no faster on the H100: NOTES
    /// session 12) rather than after the barrier between its phases.
    pub mlp_down_early: bool,
    /// Whether the fused MLP over the transposed down matrix stages its block's down rows in
    /// shared memory through the bulk copy engine from its start (LLMBENCH_CUDA_MLP_DOWN=staged,
    /// the default; mlp_fused.cuh's down_transposed).
    pub mlp_down_staged: bool,
    /// Whether the attention issues its cache loads before its wait on the QKV launch (the
    /// default; LLMBENCH_CUDA_ATTN_LOADS=after-wait: after it, as through session 9).
    pub attention_loads_early: bool,
    /// How the dense O projection combines the attention's splits (LLMBENCH_CUDA_COMBINE).
    pub combine: CombineChoice,
    /// Whether a greedy step queues the next one before its token reaches the host
    /// (LLMBENCH_CUDA_AHEAD; cuda.rs's `step_greedy`).
    pub ahead: bool,
    /// Whether a replay goes straight onto candle's stream, its greedy token written by the
    /// argmax kernel into page-locked host memory (LLMBENCH_CUDA_REPLAY=direct), or onto the
    /// decoder's own stream joined to candle's both ways, the token copied back (`joined`).
    pub replay_direct: bool,
    /// How the step's kernels split L1 and shared memory (LLMBENCH_CUDA_CARVEOUT).
    pub carveout: CarveoutChoice,
}

/// Whether every kernel of the step asks for the largest shared-memory carveout, so that a
/// multiprocessor keeps one split of its L1 and shared memory through the step
/// (LLMBENCH_CUDA_CARVEOUT; `CarveoutChoice::max_shared`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CarveoutChoice {
    /// `MaxShared` where a layer's MLP stages its down rows in shared memory, else `Driver`.
    Auto,
    /// The driver picks a split per kernel.
    Driver,
    /// Every kernel prefers the largest carveout.
    MaxShared,
}

impl CarveoutChoice {
    /// Whether the step's kernels take the largest carveout, given whether its MLP stages rows.
    pub fn max_shared(self, mlp_staged: bool) -> bool {
        match self {
            Self::Auto => mlp_staged,
            Self::Driver => false,
            Self::MaxShared => true,
        }
    }
}

/// How the dense O projection's prologue combines the attention's splits (LLMBENCH_CUDA_COMBINE;
/// GemvArgs::combine_early carries it as 0, 1 or 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CombineChoice {
    /// The position read after the wait, then the stats, then the partials (through session 11).
    AfterWait,
    /// The position read before the wait; one split in one round trip, more as `AfterWait`.
    Early,
    /// As `Early`, and two or more splits in one round trip through shared memory, where the
    /// cache's splits fit the room set aside (else `Early`): the default.
    Staged,
}

/// How a layer's MLP is launched (LLMBENCH_CUDA_MLP).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MlpChoice {
    /// One launch over a transposed copy of the down matrix where the stored slices would fill
    /// whole sectors (else `Split`): the default.
    Transposed,
    /// One launch over the stored down matrix where its slices fill whole sectors (else `Split`).
    Fused,
    /// gate_up then down, two warp-gemv launches with deterministic sums.
    Split,
}

/// A streaming projection's shape: rows a stage (2, 4 or 8: whole pairs, and 8 warps split
/// evenly over them), stages of the ring, and dynamic shared memory (the stages and the input).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamShape {
    pub stage_rows: usize,
    pub stages: usize,
    pub shared_bytes: usize,
}

impl GemvChoice {
    /// From the environment, for a device of `sms` multiprocessors.
    pub fn from_env(sms: u32) -> Result<Self> {
        Self::from_vars(sms, &|name| std::env::var(name).ok())
    }

    /// From the variables `var` returns (the environment's, or a test's).
    fn from_vars(sms: u32, var: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let stream = env_choice(var, "LLMBENCH_CUDA_GEMV", &[("warp", false), ("stream", true)])?;
        let number =
            |name: &str, default: usize, range: std::ops::RangeInclusive<usize>| -> Result<usize> {
                // Set but empty is unset, as for every setting (a sweep's baseline sets it so).
                match var(name).filter(|v| !v.is_empty()) {
                    None => Ok(default),
                    Some(v) => v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| range.contains(n))
                        .ok_or_else(|| {
                            Error::Msg(format!(
                                "{name}={v}: expected a whole number in {}..={}",
                                range.start(),
                                range.end()
                            ))
                        }),
                }
            };
        let mlp_stage_bytes = number("LLMBENCH_CUDA_MLP_STAGE_BYTES", MLP_STAGE_BYTES, 0..=110 * 1024)?;
        let stage_bytes = number(
            "LLMBENCH_CUDA_GEMV_STAGE_BYTES",
            STAGE_BYTES,
            1024..=64 * 1024,
        )?;
        let ring_bytes = number(
            "LLMBENCH_CUDA_GEMV_RING_BYTES",
            RING_BYTES,
            8 * 1024..=224 * 1024,
        )?;
        let blocks_per_sm =
            number("LLMBENCH_CUDA_GEMV_BLOCKS_PER_SM", BLOCKS_PER_SM, 1..=4)? as u32;
        // Settings of experiments measured slower and removed (NOTES, session 8): an error, so
        // that a sweep still naming one does not time the default under its label.
        for removed in ["LLMBENCH_CUDA_QKV", "LLMBENCH_CUDA_O", "LLMBENCH_CUDA_LAYER"] {
            if var(removed).is_some_and(|v| !v.is_empty()) {
                return Err(Error::Msg(format!(
                    "{removed}: this experiment was measured slower and removed (results/gpu/NOTES.md, session 8); unset it"
                )));
            }
        }
        let mlp = env_choice(
            var,
            "LLMBENCH_CUDA_MLP",
            &[
                ("transposed", MlpChoice::Transposed),
                ("fused", MlpChoice::Fused),
                ("split", MlpChoice::Split),
            ],
        )?;
        let (mlp_down_early, mlp_down_staged) = env_choice(
            var,
            "LLMBENCH_CUDA_MLP_DOWN",
            &[("staged", (false, true)), ("after-sync", (false, false)), ("early", (true, false))],
        )?;
        let attention_loads_early = env_choice(var, "LLMBENCH_CUDA_ATTN_LOADS", &[("early", true), ("after-wait", false)])?;
        let combine = env_choice(
            var,
            "LLMBENCH_CUDA_COMBINE",
            &[("staged", CombineChoice::Staged), ("early", CombineChoice::Early), ("after-wait", CombineChoice::AfterWait)],
        )?;
        let ahead = env_choice(var, "LLMBENCH_CUDA_AHEAD", &[("on", true), ("off", false)])?;
        let replay_direct = env_choice(var, "LLMBENCH_CUDA_REPLAY", &[("direct", true), ("joined", false)])?;
        let carveout = env_choice(
            var,
            "LLMBENCH_CUDA_CARVEOUT",
            &[("auto", CarveoutChoice::Auto), ("driver", CarveoutChoice::Driver), ("max-shared", CarveoutChoice::MaxShared)],
        )?;
        Ok(Self {
            stream,
            stage_bytes,
            mlp_stage_bytes,
            ring_bytes,
            blocks_per_sm,
            sms: sms.max(1),
            mlp,
            mlp_down_early,
            mlp_down_staged,
            attention_loads_early,
            combine,
            ahead,
            replay_direct,
            carveout,
        })
    }

    /// Blocks of a fused-MLP launch over `groups` runs of 8 intermediate indices of
    /// `value_bytes` each, where `fit` blocks fit a multiprocessor at once: one wave at most
    /// (every block's loads in flight together, none waiting for another to leave). `None`
    /// (two launches) when fusing is off, or where the narrowest block's slice of a stored down
    /// row would be under a 32-byte sector: the small model where that happens (SmolLM2 bf16,
    /// 16 bytes) measured slower fused, over the stored matrix (two blocks a sector) and over the
    /// transposed copy alike (32%, NOTES session 8), so the rule holds for both.
    pub fn mlp_blocks(&self, groups: usize, fit: u32, value_bytes: usize) -> Option<u32> {
        let blocks = (self.sms * fit.max(1)).min(groups as u32).max(1);
        let narrowest = 8 * (groups / blocks as usize) * value_bytes;
        match self.mlp {
            MlpChoice::Split => None,
            MlpChoice::Fused | MlpChoice::Transposed => (narrowest >= 32).then_some(blocks),
        }
    }

    /// The device's multiprocessors.
    pub fn sms(&self) -> u32 {
        self.sms
    }

    /// Down rows a fused-MLP block over the transposed matrix stages in shared memory
    /// (LLMBENCH_CUDA_MLP_DOWN=staged): its widest slice, `widest` rows of `row_bytes`, up to
    /// `mlp_stage_bytes` (two blocks a multiprocessor must still fit: the grid is one wave of
    /// them); 0 when off.
    pub fn mlp_stage_rows(&self, widest: usize, row_bytes: usize) -> usize {
        if !self.mlp_down_staged || self.mlp != MlpChoice::Transposed {
            return 0;
        }
        widest.min(self.mlp_stage_bytes / row_bytes.max(1))
    }

    /// The streaming shape of a dense projection with `row_bytes` a row, or `None` where the
    /// warp gemv runs it: by default, and where the ring and input would not fit beside
    /// `reserved` bytes (the O projection's split-combine factors), which is said, since a
    /// silent fallback once passed the warp gemv's timings off as the stream's (NOTES, v8).
    pub fn stream(&self, row_bytes: usize, reserved: usize) -> Option<StreamShape> {
        if !self.stream {
            return None;
        }
        let stage_rows = [8, 4, 2]
            .into_iter()
            .find(|r| r * row_bytes <= self.stage_bytes)
            .unwrap_or(2);
        let stages = (self.ring_bytes / (stage_rows * row_bytes)).clamp(2, MAX_STAGES);
        let shared_bytes = stages * stage_rows * row_bytes + row_bytes;
        if shared_bytes + reserved > MAX_BLOCK_SHARED {
            tracing::warn!(
                "LLMBENCH_CUDA_GEMV=stream: {stages} stages of {stage_rows} rows of {row_bytes} bytes and the input                  ({shared_bytes} bytes, with {reserved} reserved) exceed {MAX_BLOCK_SHARED} bytes of shared memory:                  this projection runs the warp gemv"
            );
            return None;
        }
        Some(StreamShape {
            stage_rows,
            stages,
            shared_bytes,
        })
    }

    /// Blocks of a streaming launch over `pairs` row pairs: about `blocks_per_sm` a
    /// multiprocessor, never more than there are stages' worth of pairs.
    pub fn blocks(&self, pairs: usize, stage_rows: usize) -> u32 {
        let items = pairs.div_ceil(stage_rows / 2) as u32;
        items.min(self.sms * self.blocks_per_sm).max(1)
    }
}

/// The value of the environment variable `name` among `options` (name, value), the first being
/// the default (also for an unset or empty variable); anything else is an error naming them all.
fn env_choice<T: Copy>(var: &dyn Fn(&str) -> Option<String>, name: &str, options: &[(&str, T)]) -> Result<T> {
    let set = var(name).unwrap_or_default();
    if set.is_empty() {
        return Ok(options[0].1);
    }
    options
        .iter()
        .find(|(option, _)| *option == set)
        .map(|&(_, value)| value)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(option, _)| *option).collect();
            Error::Msg(format!(
                "{name}={set}: expected one of {} ({} is the default)",
                names.join(", "),
                names[0]
            ))
        })
}

#[cfg(test)]
#[path = "gemv_choice_tests.rs"]
mod tests;
