//! The Llama decode step as one captured CUDA graph (batch 1, static KV cache; dense f32/f16/bf16
//! weights, or an f32 graph over our int8/int4 or GGUF Q8_0/Q4_0/Q4_1 weights). Small-model
//! decoding on a GPU is bound by launches and latency, not by bytes: candle's generic path issues
//! ~25 kernels per layer, each with a host-side allocation. Here every buffer is allocated once,
//! a layer is four launches of our kernels (`../kernels/llama_decode.cu`: the QKV and O
//! projections with the norms, RoPE, the cache store, the residual adds and the attention
//! split-combine fused into their prologues and epilogues, a split-K attention, and the whole MLP
//! in one kernel), each launched to overlap the tail of the one before (programmatic dependent
//! launch), and the whole step is captured once and replayed: the token and position live in
//! device memory, so the same graph serves every step (what vLLM and llama.cpp do for CUDA
//! graphs). The weights and cache stay
//! candle tensors (or our quantized device matrices); this file only takes their addresses.

use super::gemv_choice::{CombineChoice, GemvChoice};
use super::greedy_picks::{GreedyPicks, QueuedStep};
use super::launch::{arg, launch_after_previous, ptr, wrap};
use super::launches::{combine_shared_bytes, Launcher, EPI_LOGITS, EPI_RESIDUAL, EPI_ROPE, EPI_SILU, PRO_COMBINE, PRO_NORM, PRO_NORM_PENDING, PRO_PLAIN};
use super::projection::{GemvArgs, Kernels, Projection};
use super::trace::StepTrace;
use super::{DecodeShape, DecodeWeights, GraphWeight};
use crate::kv::InPlaceBuffers;
use candle_core::cuda_backend::cudarc::driver::{
    sys, CudaFunction, CudaGraph, CudaModule, CudaStream, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::CudaDevice;
use candle_core::{DType, Device, Result, Tensor};
use std::sync::{Arc, Mutex};

#[path = "step_enqueue.rs"]
mod step_enqueue;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/llama_decode.ptx"));
/// Positions per attention split (SPLIT in the .cu file): one per thread of the split kernels.
const SPLIT: usize = 256;
const EMBED_THREADS: u32 = 512;
/// Threads of the greedy token's kernel (ARGMAX_THREADS in the .cu file): one block.
const ARGMAX_THREADS: u32 = 1024;
/// Most dynamic shared memory a gemv block may take (its input vector and, quantized, the codes:
/// 5.25 bytes a value, so rows of up to ~30,000 inputs). Hopper allows 227 KiB per block.
pub(super) const MAX_GEMV_SHARED_BYTES: usize = 160 * 1024;
/// Room beside it for the O projection's split-combine: its factors (one f32 per split and
/// head: 32 heads x 512 splits of 256 positions) and, where they fit with them, the staged
/// combine's partials and stats (launches.rs's combine_shared_bytes: TinyLlama at 1,152
/// positions 42 KB). 160 + 64 KiB stays under the 227 KiB a Hopper block may take.
pub(super) const COMBINE_SHARED_BYTES: usize = 64 * 1024;
/// Largest stage the staged combine takes (LLMBENCH_CUDA_COMBINE=staged); above it the O
/// projection combines as `Early` does. Measured on the H200 (NOTES, session 13, two rounds
/// against `Early`): SmolLM2 at 1,024 new tokens (stages up to 12 KB) +5.1%, TinyLlama (up to
/// 42 KB) -3.4%. Why TinyLlama loses is not isolated (a guess: 42 KB a block halves the O
/// blocks a multiprocessor holds, early-launched beside the attention's); the cut sits between
/// the two measured sizes: SmolLM2 (9 heads) staged to 1,536 positions, TinyLlama never.
const STAGED_COMBINE_BYTES: usize = 16 * 1024;

/// A graph-captured decode step; `None` from `new` where the weights or shapes do not qualify.
pub struct GraphDecoder {
    inner: Mutex<Inner>,
}

struct LayerOps {
    input_norm: u64,
    post_norm: u64,
    qkv: Projection,
    o: Projection,
    mlp: Mlp,
}

/// A layer's MLP: one fused launch that leaves its down product in an f32 accumulator for the
/// next kernel's prologue, or gate_up then down (quantized weights, `LLMBENCH_CUDA_MLP=split`).
enum Mlp {
    Fused(Projection),
    Split { gate_up: Projection, down: Projection },
}

struct Buffers {
    params: Tensor,
    /// The residual stream, in two buffers: a layer after a fused MLP writes `x + pending` into
    /// the other one (its blocks still read the one they started from).
    x: [Tensor; 2],
    q: Tensor,
    act: Tensor,
    /// The greedy token (u32, one), the first maximum of `logits`, written by each step.
    token: Tensor,
    /// Zeroed by the embedding kernel at each step: the fused MLPs' down products, f32
    /// `[layers][hidden]` (rounded up to a multiple of 4).
    zeroed: Tensor,
    logits: Tensor,
}

/// The split-K attention's partial results for one cache capacity, f32: outputs
/// `[splits][n_head * d]`, then each split's (max, sum) `[splits][n_head][2]`.
struct AttentionScratch {
    capacity: usize,
    partial: Tensor,
}

struct Inner {
    device: CudaDevice,
    stream: Arc<CudaStream>,
    embed: CudaFunction,
    attention: CudaFunction,
    argmax: CudaFunction,
    _module: Arc<CudaModule>,
    /// Holds the tensors (and quantized matrices) whose addresses the projections keep.
    weights: DecodeWeights,
    layers: Vec<LayerOps>,
    head: Projection,
    choice: GemvChoice,
    buffers: Buffers,
    scratch: Option<AttentionScratch>,
    shape: DecodeShape,
    dtype: DType,
    /// The captured step and the cache addresses and capacity it was captured for.
    graph: Option<(CudaGraph, Vec<u64>)>,
    /// LLMBENCH_CUDA_TRACE: the replayed step's timeline, launch by launch (`trace.rs`).
    trace: Option<StepTrace>,
    /// Where greedy steps leave their tokens for the host (`greedy_picks.rs`).
    picks: GreedyPicks,
    /// The greedy step queued ahead of the call that wants it (`step_greedy`), unclaimed.
    queued: Option<QueuedStep>,
}

impl Drop for Inner {
    /// Any step may still be writing its token into `picks` (under LLMBENCH_CUDA_REPLAY=direct
    /// every step's argmax writes them, a sampled `step` too, on candle's stream: the calling
    /// thread's, which need not be the dropping one): the whole context ends its work before
    /// they go.
    fn drop(&mut self) {
        let _ = self.stream.context().synchronize();
    }
}

// The graph, stream and handles are only touched through the Mutex, one thread at a time;
// CUDA allows that from any thread.
unsafe impl Send for Inner {}

impl GraphDecoder {
    /// Prepares the decoder: loads the kernels, checks every shape, allocates every buffer.
    /// Returns `None` on a device other than CUDA or where a kernel does not take the weights
    /// (the reason is logged at debug level; the generic path then decodes).
    pub fn new(weights: DecodeWeights, shape: DecodeShape, device: &Device) -> Result<Option<Self>> {
        let Device::Cuda(dev) = device else { return Ok(None) };
        let dtype = weights.embed.dtype();
        let suffix = match dtype {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            _ => return Ok(None),
        };
        let per_load = 16 / dtype.size_in_bytes();
        let d = shape.head_dim;
        let head_ok = d % per_load == 0 && d % 2 == 0 && d <= 256 && SPLIT % (d / per_load) == 0;
        if !head_ok || shape.n_head % shape.n_kv != 0 || shape.hidden % per_load != 0 {
            tracing::debug!("CUDA graph: head size {d} or hidden size {} not taken by the kernels", shape.hidden);
            return Ok(None);
        }
        let ctx = dev.cuda_stream().context().clone();
        let stream = ctx.new_stream().map_err(wrap)?;
        let module = ctx.load_module(PTX.into()).map_err(wrap)?;
        let sms = ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(wrap)?;
        let choice = GemvChoice::from_env(sms as u32)?;
        // Every kernel the step launches, for the carveout set once the MLP's staging is known.
        let loaded = std::cell::RefCell::new(Vec::new());
        let f = |name: &str| -> Result<CudaFunction> {
            let kernel = module.load_function(name).map_err(wrap)?;
            loaded.borrow_mut().push(kernel.clone());
            Ok(kernel)
        };
        let q_dim = shape.n_head * d;
        let qkv_dim = q_dim + 2 * shape.n_kv * d;
        // Only the O projection's prologue keeps split-combine factors in shared memory.
        let kernels = Kernels { dtype, suffix, stream: &stream, load: &f, choice: &choice };
        let project = |w: &GraphWeight, n: usize, k: usize, reserved: usize| kernels.projection(w, n, k, reserved);
        let mut layers = Vec::with_capacity(weights.layers.len());
        for lw in &weights.layers {
            let (Some(qkv), Some(o)) = (project(&lw.qkv, qkv_dim, shape.hidden, 0)?, project(&lw.o, shape.hidden, q_dim, COMBINE_SHARED_BYTES)?) else {
                return Ok(None);
            };
            let fused = kernels.fused_mlp(&lw.gate_up, &lw.down, shape.hidden, shape.intermediate)?;
            let mlp = match fused {
                Some(p) => Mlp::Fused(p),
                None => {
                    let (Some(gate_up), Some(down)) = (
                        project(&lw.gate_up, 2 * shape.intermediate, shape.hidden, 0)?,
                        project(&lw.down, shape.hidden, shape.intermediate, 0)?,
                    ) else {
                        return Ok(None);
                    };
                    Mlp::Split { gate_up, down }
                }
            };
            let (input_norm, post_norm) = (ptr(&lw.input_norm, &stream)?, ptr(&lw.post_norm, &stream)?);
            layers.push(LayerOps { input_norm, post_norm, qkv, o, mlp });
        }
        let Some(head) = project(&weights.head, shape.vocab, shape.hidden, 0)? else { return Ok(None) };
        let zeros = |n: usize, dt: DType| Tensor::zeros(n, dt, device);
        let buffers = Buffers {
            params: zeros(2, DType::U32)?,
            x: [zeros(shape.hidden, dtype)?, zeros(shape.hidden, dtype)?],
            q: zeros(q_dim, dtype)?,
            act: zeros(shape.intermediate, dtype)?,
            token: zeros(1, DType::U32)?,
            zeroed: zeros(mlp_sums_len(layers.len(), shape.hidden), DType::F32)?,
            logits: Tensor::zeros((1, shape.vocab), DType::F32, device)?,
        };
        let (embed, attention, argmax) = (f(&format!("embed_{suffix}"))?, f(&format!("attn_split_{suffix}"))?, f("argmax_f32")?);
        let mlp_staged = layers.iter().any(|l| matches!(&l.mlp, Mlp::Fused(p) if p.args.down_stage_rows > 0));
        if choice.carveout.max_shared(mlp_staged) {
            tracing::debug!("CUDA graph: every kernel prefers the largest shared-memory carveout");
            for kernel in loaded.borrow().iter() {
                // Percent of the unified L1/shared memory: 100, the largest carveout.
                kernel.set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, 100).map_err(wrap)?;
            }
        }
        let trace = StepTrace::from_env(device)?;
        let picks = GreedyPicks::new(&ctx)?;
        let inner = Inner {
            device: dev.clone(),
            embed,
            attention,
            argmax,
            _module: module.clone(),
            stream,
            weights,
            layers,
            head,
            choice,
            buffers,
            scratch: None,
            shape,
            dtype,
            graph: None,
            trace,
            picks,
            queued: None,
        };
        Ok(Some(Self { inner: Mutex::new(inner) }))
    }

    /// Decodes `token` at `pos` into the static cache and returns the logits `[1, vocab]`
    /// (f32). The first step at a new cache runs eagerly and then captures the graph; every
    /// later step replays it.
    pub fn step(&self, token: u32, pos: usize, cache: &mut dyn InPlaceBuffers) -> Result<Tensor> {
        let mut inner = self.inner.lock().map_err(|_| candle_core::Error::Msg("graph decoder poisoned".into()))?;
        // A step queued ahead is left unclaimed: it ends before this one starts (one stream).
        inner.queued = None;
        inner.launch(Some((token, pos)), cache)?;
        cache.advance(1)?;
        inner.buffers.logits.copy()
    }

    /// As `step`, but returns the greedy next token (the logits' first maximum, picked on the
    /// device: 4 bytes cross to the host instead of the logits). With `ahead` (the caller wants
    /// the token after this one too, greedily), the step at `pos + 1` is queued before this
    /// one's token is read: the device has it waiting when this one ends, and the host's turn
    /// between steps (the copy back, the caller's bookkeeping, the next launch: ~18 us a token
    /// on the H200, 2% of TinyLlama's) leaves no gap. The next call claims it where it asks for
    /// that position with this token; anything else leaves it unclaimed, a step's work wasted
    /// (and the cache slot past the length written, which the next step there rewrites), since
    /// it runs before whatever is queued after it. Its token is then on the host while that
    /// step still runs: a caller timing this call must not wait for the device.
    pub fn step_greedy(&self, token: u32, pos: usize, cache: &mut dyn InPlaceBuffers, ahead: bool) -> Result<(u32, bool)> {
        let mut inner = self.inner.lock().map_err(|_| candle_core::Error::Msg("graph decoder poisoned".into()))?;
        let id = cache_id(cache, &inner.stream)?;
        let current = match inner.queued.take() {
            Some(queued) if queued.cache == id && queued.pos == pos && queued.fed == token => queued,
            _ => inner.launch_greedy(Some(token), pos, id, cache)?,
        };
        cache.advance(1)?;
        let captured = inner.graph.is_some();
        let next = if ahead && inner.choice.ahead && captured && inner.trace.is_none() && pos + 1 < cache.capacity() {
            Some(inner.launch_greedy(None, pos + 1, id, cache)?)
        } else {
            None
        };
        let pick = inner.picks.read(current.pick)?;
        let queued_ahead = next.is_some();
        inner.queued = next.map(|q| QueuedStep { fed: pick, ..q });
        Ok((pick, queued_ahead))
    }

    /// Whether a cache can be decoded by this graph (allocated on this device, of its dtype,
    /// batch 1, its splits' combine factors within the shared memory set aside for them).
    pub fn supports(&self, cache: &dyn InPlaceBuffers) -> bool {
        let Ok(inner) = self.inner.lock() else { return false };
        let (splits, s) = (cache.capacity().div_ceil(SPLIT) as i32, inner.shape);
        let factors = combine_shared_bytes(splits, s.n_head as i32, (s.n_head * s.head_dim) as i32, false) as usize;
        factors <= COMBINE_SHARED_BYTES
            && cache.buffers(0).is_some_and(|(k, _)| k.dtype() == inner.dtype && k.device().is_cuda() && k.dim(0).ok() == Some(1))
    }
}

/// Which cache a queued step writes: its first layer's key buffer's address.
fn cache_id(cache: &dyn InPlaceBuffers, stream: &Arc<CudaStream>) -> Result<u64> {
    let (k, _) = cache.buffers(0).ok_or_else(|| wrap("the static cache is not allocated (prefill first)"))?;
    ptr(k, stream)
}

/// Floats of the fused MLPs' sums in `Buffers::zeroed` (whole float4s, for the zeroing).
fn mlp_sums_len(layers: usize, hidden: usize) -> usize {
    (layers * hidden).next_multiple_of(4)
}

impl Inner {
    /// `launch` at `pos` on the cache `id` names, then a copy of the greedy token for the host.
    /// With no `token`, the step after the last one launched, fed what that one picked (its
    /// argmax left the token and `pos` in `params`); `fed` is then the caller's to fill in.
    fn launch_greedy(&mut self, token: Option<u32>, pos: usize, id: u64, cache: &mut dyn InPlaceBuffers) -> Result<QueuedStep> {
        let stream = self.launch(token.map(|t| (t, pos)), cache)?;
        // Under LLMBENCH_CUDA_REPLAY=direct the argmax kernel writes the host's word itself, in
        // every launch of the step (eager and replayed alike: enqueue passes it the words).
        let copy_from = if self.choice.replay_direct { None } else { Some(ptr(&self.buffers.token, &stream)?) };
        let pick = self.picks.after_step(pos, copy_from, &stream)?;
        Ok(QueuedStep { cache: id, pos, fed: token.unwrap_or(0), pick })
    }

    /// Queues one decode step (eagerly and captured, or replayed) with `input` (token,
    /// position) written to `params` first, or, with none, with what the previous step's argmax
    /// left there (a replay only); its logits and greedy token are then in `buffers`, ordered
    /// before candle's stream's next work. Returns the stream it is on: candle's for a replay
    /// under LLMBENCH_CUDA_REPLAY=direct (no event between the two streams: ~2 a step, each a
    /// wait on the device between two replays), else the decoder's own, joined to candle's
    /// both ways.
    fn launch(&mut self, input: Option<(u32, usize)>, cache: &mut dyn InPlaceBuffers) -> Result<Arc<CudaStream>> {
        let candle_stream = self.device.cuda_stream();
        let cache_ptrs = (0..self.layers.len())
            .map(|l| {
                let (k, v) = cache.buffers(l).ok_or_else(|| wrap("the static cache is not allocated (prefill first)"))?;
                Ok([ptr(k, &self.stream)?, ptr(v, &self.stream)?])
            })
            .collect::<Result<Vec<_>>>()?
            .concat();
        let capacity = cache.capacity();
        let mut key = cache_ptrs.clone();
        key.push(capacity as u64);
        if self.scratch.as_ref().map(|a| a.capacity) != Some(capacity) {
            // Allocated before any capture (a captured graph keeps these addresses).
            self.graph = None;
            let s = self.shape;
            let splits = capacity.div_ceil(SPLIT);
            let dev = Device::Cuda(self.device.clone());
            let partial = Tensor::zeros(splits * s.n_head * (s.head_dim + 2), DType::F32, &dev)?;
            self.scratch = Some(AttentionScratch { capacity, partial });
        }
        let replay = matches!(&self.graph, Some((_, captured_for)) if *captured_for == key);
        let direct = replay && self.choice.replay_direct && self.trace.is_none();
        let stream = if direct { candle_stream.clone() } else { self.stream.clone() };
        if !direct {
            // Work already queued on candle's stream (the prefill's cache writes) comes first.
            self.stream.join(&candle_stream).map_err(wrap)?;
        }
        if let Some((token, pos)) = input {
            let params_ptr = ptr(&self.buffers.params, &stream)?;
            let params = [token, pos as u32];
            unsafe {
                sys::cuMemcpyHtoDAsync_v2(params_ptr, params.as_ptr() as *const std::ffi::c_void, 8, stream.cu_stream())
                    .result()
                    .map_err(wrap)?;
            }
        }
        match &self.graph {
            Some((graph, _)) if direct => {
                // The graph was captured on the decoder's stream; a launch may name any stream.
                unsafe { sys::cuGraphLaunch(graph.cu_graph_exec(), stream.cu_stream()).result().map_err(wrap)? };
                return Ok(stream);
            }
            Some((graph, captured_for)) if *captured_for == key => {
                if let Some(trace) = &self.trace {
                    trace.reset(&self.stream)?;
                }
                graph.launch().map_err(wrap)?;
                if let Some(trace) = &mut self.trace {
                    trace.collect(&self.stream)?;
                }
            }
            // Only a replay finds the previous step's token and position in `params`.
            _ if input.is_none() => return Err(wrap("a step queued ahead replays the graph captured for its cache")),
            _ => {
                self.graph = None;
                let names = self.launch_names();
                if let Some(trace) = &mut self.trace {
                    trace.prepare(names)?;
                }
                // Eagerly first: modules load lazily, which a capture forbids.
                self.enqueue(&cache_ptrs, capacity)?;
                self.stream.synchronize().map_err(wrap)?;
                self.stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).map_err(wrap)?;
                let enqueued = self.enqueue(&cache_ptrs, capacity);
                let graph = self.stream.end_capture(sys::CUgraphInstantiate_flags(0)).map_err(wrap)?;
                enqueued?;
                let graph = graph.ok_or_else(|| wrap("the capture recorded nothing"))?;
                self.graph = Some((graph, key));
            }
        }
        candle_stream.join(&self.stream).map_err(wrap)?;
        Ok(stream)
    }
}
