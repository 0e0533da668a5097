//! KV-cache strategies behind one small trait. A cache stores key/value tensors per layer and
//! knows no architecture: the model hands it rotated keys and values and attends over what
//! `append` returns. One factory (`build`) turns a `KvKind` into a boxed strategy.

pub mod block_pool;
mod cake;
mod chunked;
mod codes;
mod full;
mod h2o;
mod kivi;
mod none;
mod paged;
mod paged_pool;
mod quantized;
mod scored;
mod sinks;
mod static_cache;
mod window;

pub use cake::{CakeCache, CAKE_WINDOW};
pub use chunked::ChunkedCache;
pub use full::FullCache;
pub use h2o::H2oCache;
pub use kivi::KiviCache;
pub use none::NoCache;
pub use paged::{PagedCache, PagedUsage};
pub use paged_pool::PagedKvPool;
pub use quantized::{QuantizedCache, INT4_GROUP};
pub use sinks::SinksCache;
pub use static_cache::StaticCache;
pub use window::WindowCache;
pub use crate::quant::kv_int::Bits;

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// The model's positional rotation (RoPE), applied by caches that re-position keys:
/// `rotate(x, first)` rotates `x: [b, h, t, d]` as positions `first..first + t`.
pub type Rotate<'a> = &'a dyn Fn(&Tensor, usize) -> Result<Tensor>;

/// What a cache holds right now, measured from its tensors, with the strategy's own details
/// (one struct for every strategy, so callers never ask a cache what kind it is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KvStats {
    /// Bytes held by key and value tensors (and any scales) across all layers.
    pub kv_cache_bytes: u64,
    /// Tokens whose keys/values are held (per layer; the mean over layers where they differ).
    pub tokens_held: usize,
    /// Tokens dropped by an eviction policy since the last reset.
    pub evictions: u64,
    /// Bytes of the slots actually written, where a strategy reserves more than it uses (the
    /// static cache's preallocation); absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Bytes allocated ahead of use by a cache that grows with spare capacity (full);
    /// `kv_cache_bytes` counts only the tokens held. Absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_bytes: Option<u64>,
    /// Block-pool usage of the paged strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged: Option<PagedUsage>,
}

/// A KV-cache strategy. Tensors are `[batch, kv_heads, seq, head_dim]`.
///
/// Six methods every strategy has, and three optional capabilities a caller asks for (each
/// `None` unless the strategy offers it): nothing downcasts a cache to its concrete type.
pub trait KvCache: Send {
    /// Adds this step's keys and values for `layer`; returns the keys and values attention
    /// must read (everything the strategy keeps, this step's included), in position order.
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)>;
    /// Tokens the cache holds for past positions. The engine feeds the model every token
    /// from this position on, so a cache that keeps nothing makes it recompute the prefix.
    fn seq_len(&self) -> usize;
    /// Drops everything after the first `len` tokens (speculative decoding rolls back here).
    fn truncate(&mut self, len: usize) -> Result<()>;
    /// Empties the cache for a new sequence.
    fn reset(&mut self);
    /// Exact bytes held, from the tensors themselves, and the strategy's details.
    fn stats(&self) -> KvStats;
    /// Which strategy this is, for results.
    fn kind(&self) -> KvKind;
    /// Score-based eviction (h2o, cake): the model computes attention weights only for a
    /// cache that returns an observer here.
    fn attention_observer(&mut self) -> Option<&mut dyn ObservesAttention> {
        None
    }
    /// A cache that positions keys itself (StreamingLLM's sinks): a RoPE model hands it keys
    /// before rotation. Models with absolute positions (GPT-2) ignore this and call `append`.
    fn key_positions(&mut self) -> Option<&mut dyn PositionsKeys> {
        None
    }
    /// Fixed per-layer buffers that code outside the cache writes directly (the CUDA graph
    /// decode step writes the static cache's slots).
    fn in_place(&mut self) -> Option<&mut dyn InPlaceBuffers> {
        None
    }
}

/// Attention weights for eviction by score.
pub trait ObservesAttention {
    /// Attention weights of `layer` (`[batch, heads, q, kv]`) after its `append`.
    fn observe(&mut self, layer: usize, attn: &Tensor) -> Result<()>;
}

/// Keys positioned by the cache instead of by their absolute position.
pub trait PositionsKeys {
    /// The position at which this step's first query of `layer` is rotated.
    fn query_position(&self, layer: usize) -> usize;
    /// Appends keys before rotation; the cache rotates what it returns with `rotate` at the
    /// positions it chooses.
    fn append_unrotated(&mut self, layer: usize, k: &Tensor, v: &Tensor, rotate: Rotate) -> Result<(Tensor, Tensor)>;
}

/// Per-layer key and value buffers at fixed addresses, `[batch, kv_heads, capacity, head_dim]`.
pub trait InPlaceBuffers {
    /// Slots per layer.
    fn capacity(&self) -> usize;
    /// The whole buffers of `layer` (all `capacity` slots), once allocated.
    fn buffers(&self, layer: usize) -> Option<&(Tensor, Tensor)>;
    /// Records that `tokens` more positions were written into every layer's buffers.
    fn advance(&mut self, tokens: usize) -> Result<()>;
}

/// The KV-cache strategies this build offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KvKind {
    /// Contiguous per-layer tensors that grow by concatenation.
    Full,
    /// Keep nothing: the whole prefix is recomputed at every step.
    None,
    /// One buffer per layer preallocated for the whole run, written in place (the CUDA graph
    /// decode step runs on it).
    Static,
    /// Only the last `--kv-window` positions.
    Window,
    /// Blocks of `--kv-block-size` slots from a pool, through a block table (PagedAttention).
    Paged,
    /// Keys and values as 8-bit integers with a scale per token and head.
    Int8,
    /// Keys and values as 4-bit integers, scale and zero point per group of 32 channels.
    Int4,
    /// 8-bit keys, 4-bit values.
    Mixed,
    /// The first `--kv-sinks` tokens plus the last `--kv-window` (StreamingLLM), keys
    /// re-positioned inside the cache for RoPE models.
    Sinks,
    /// The last `--kv-keep-last` tokens exact, each older chunk of `--kv-chunk` tokens
    /// replaced by its mean key and value.
    Chunked,
    /// KIVI: keys quantized per channel over groups of `--kv-group` tokens, values per token,
    /// the last `--kv-residual` tokens in full precision; `--kv-bits` 2, 4 or 8.
    Kivi,
    /// Heavy hitters (cumulative attention) plus recent tokens within `--budget` per layer.
    H2o,
    /// CAKE: per-layer budgets from attention entropy and variance (average `--budget`),
    /// eviction by the mean plus variance of attention.
    Cake,
    /// CAKE's budgets and evictions with the kept tokens compacted in place into one
    /// preallocated buffer per layer, sized to its budget plus the recent window (vAttention's
    /// contiguous layout).
    Hybrid,
}

impl KvKind {
    /// The name in results, with the option that changes what it does (`window:256`, `paged:16`).
    pub fn label(self, options: &KvOptions) -> String {
        match self {
            Self::Full => "full".into(),
            Self::None => "none".into(),
            Self::Static => "static".into(),
            Self::Window => format!("window:{}", options.window),
            Self::Paged => format!("paged:{}", options.block_size),
            Self::Int8 => "int8".into(),
            Self::Int4 => "int4".into(),
            Self::Mixed => "mixed".into(),
            Self::Sinks => format!("sinks:{}+{}", options.sinks, options.window),
            Self::Chunked => format!("chunked:{}/{}", options.keep_last, options.chunk),
            Self::Kivi => format!("kivi:{}", options.bits.bits()),
            Self::H2o => format!("h2o:{}", options.budget),
            Self::Cake => format!("cake:{}", options.budget),
            Self::Hybrid => format!("hybrid:{}", options.budget),
        }
    }

    /// Every strategy, in the order results list them.
    pub const ALL: [KvKind; 14] = [
        KvKind::None,
        KvKind::Full,
        KvKind::Static,
        KvKind::Paged,
        KvKind::Window,
        KvKind::Sinks,
        KvKind::Chunked,
        KvKind::Int8,
        KvKind::Int4,
        KvKind::Mixed,
        KvKind::Kivi,
        KvKind::H2o,
        KvKind::Cake,
        KvKind::Hybrid,
    ];

    /// Whether the strategy keeps a `--budget` of tokens chosen by attention scores.
    pub fn evicts_by_budget(self) -> bool {
        matches!(self, Self::H2o | Self::Cake | Self::Hybrid)
    }

    /// The name `--strategies` and `--kv-cache` take.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::None => "none",
            Self::Static => "static",
            Self::Window => "window",
            Self::Paged => "paged",
            Self::Int8 => "int8",
            Self::Int4 => "int4",
            Self::Mixed => "mixed",
            Self::Sinks => "sinks",
            Self::Chunked => "chunked",
            Self::Kivi => "kivi",
            Self::H2o => "h2o",
            Self::Cake => "cake",
            Self::Hybrid => "hybrid",
        }
    }
}

/// Settings of the strategies that take any (validated by `cli::args::KvArgs::options`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KvOptions {
    /// Positions the window and sinks strategies keep after the sinks.
    pub window: usize,
    /// Token slots per block of the paged strategy.
    pub block_size: usize,
    /// Attention sinks: the first tokens `sinks` always keeps.
    pub sinks: usize,
    /// Tokens per chunk summary of `chunked`.
    pub chunk: usize,
    /// Tokens `chunked` keeps exact.
    pub keep_last: usize,
    /// Bits of `kivi`.
    #[serde(with = "bits_as_number")]
    #[schemars(with = "u32")]
    pub bits: Bits,
    /// Tokens per KIVI key group (keys are quantized per channel over them).
    pub group: usize,
    /// Recent tokens KIVI keeps in full precision.
    pub residual: usize,
    /// Tokens per layer (on average for `cake`) that `h2o` and `cake` keep.
    pub budget: usize,
}

impl Default for KvOptions {
    /// The papers' defaults where they give one: StreamingLLM's 4 sinks, KIVI's G = 32 and
    /// R = 128; window and budget 256 so that the windowed strategies hold the same bytes.
    fn default() -> Self {
        Self {
            window: 256,
            block_size: 16,
            sinks: 4,
            chunk: 64,
            keep_last: 256,
            bits: Bits::Two,
            group: 32,
            residual: 128,
            budget: 256,
        }
    }
}

/// Bits in results and configs as the plain number (2, 4, 8).
mod bits_as_number {
    use super::Bits;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bits: &Bits, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(bits.bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bits, D::Error> {
        Bits::try_from(u32::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Whether `truncate` restores exactly the state of a cache that never held the dropped
/// tokens (speculative decoding rolls rejected drafts back through it). Evicting, summarising
/// and group-quantized (KIVI) caches cannot: what they dropped or merged is gone.
pub fn rolls_back_exactly(kind: KvKind) -> bool {
    matches!(kind, KvKind::Full | KvKind::None | KvKind::Static | KvKind::Paged | KvKind::Int8 | KvKind::Int4 | KvKind::Mixed)
}

/// Why `kind` cannot store keys and values of `head_dim` channels, if it cannot: a sweep
/// records such a case as skipped instead of failing on the first append.
pub fn unsupported(kind: KvKind, head_dim: usize) -> Option<String> {
    match kind {
        KvKind::Int4 | KvKind::Mixed if head_dim % INT4_GROUP != 0 => Some(format!(
            "{}: the model's head dim {head_dim} is not a multiple of the {INT4_GROUP}-channel int4 groups",
            kind.name()
        )),
        KvKind::Kivi if head_dim % kivi::VALUE_GROUP != 0 && kivi::VALUE_GROUP % head_dim != 0 => Some(format!(
            "kivi: the model's head dim {head_dim} is neither a multiple nor a divisor of the {}-channel value groups",
            kivi::VALUE_GROUP
        )),
        _ => None,
    }
}

/// A strategy with default options (see `build_with`).
pub fn build(kind: KvKind, n_layers: usize, max_tokens: usize) -> Box<dyn KvCache> {
    build_with(kind, KvOptions::default(), n_layers, max_tokens)
}

/// The one factory from kind to strategy. `max_tokens` is the longest sequence the run can
/// reach (prompt plus new tokens); preallocating strategies size themselves by it. Options
/// are validated by the caller (`GenerationArgs::kv_options`).
pub fn build_with(kind: KvKind, options: KvOptions, n_layers: usize, max_tokens: usize) -> Box<dyn KvCache> {
    match kind {
        KvKind::Full => Box::new(FullCache::with_capacity(n_layers, max_tokens)),
        KvKind::None => Box::new(NoCache),
        KvKind::Static => Box::new(StaticCache::new(n_layers, max_tokens)),
        KvKind::Window => Box::new(WindowCache::new(n_layers, options.window)),
        KvKind::Paged => Box::new(PagedCache::new(n_layers, options.block_size, max_tokens)),
        KvKind::Int8 => Box::new(QuantizedCache::new(n_layers, kind, Bits::Eight, Bits::Eight)),
        KvKind::Int4 => Box::new(QuantizedCache::new(n_layers, kind, Bits::Four, Bits::Four)),
        KvKind::Mixed => Box::new(QuantizedCache::new(n_layers, kind, Bits::Eight, Bits::Four)),
        KvKind::Sinks => Box::new(SinksCache::new(n_layers, options.sinks, options.window)),
        KvKind::Chunked => Box::new(ChunkedCache::new(n_layers, options.keep_last, options.chunk)),
        KvKind::Kivi => Box::new(KiviCache::new(n_layers, options.bits, options.group, options.residual)),
        KvKind::H2o => Box::new(H2oCache::new(n_layers, options.budget)),
        KvKind::Cake => Box::new(CakeCache::new(n_layers, options.budget)),
        KvKind::Hybrid => Box::new(CakeCache::hybrid(n_layers, options.budget)),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::{Device, Tensor};

    /// `[1, 1, t, 1]` holding `first, first + 1, ...`: a token's value is its position.
    pub fn positions(t: usize, first: f32) -> Tensor {
        Tensor::arange(first, first + t as f32, &Device::Cpu).unwrap().reshape((1, 1, t, 1)).unwrap()
    }

    /// All values of a tensor, flattened.
    pub fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Distinct values `[1, 2 heads, t, 4]` that depend on `seed`, for cache tests.
    pub fn ramp(t: usize, seed: f32) -> Tensor {
        let n = (2 * t * 4) as f32;
        Tensor::arange(0f32, n, &Device::Cpu).unwrap().affine(seed as f64, 0.5).unwrap().reshape((1, 2, t, 4)).unwrap()
    }
}

/// Appends `k`, `v` to what a layer holds along the sequence axis (the first append only
/// makes them contiguous): the growing step every concatenating strategy shares.
pub(crate) fn grow(held: Option<(Tensor, Tensor)>, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
    const SEQ_DIM: usize = 2;
    match held {
        None => Ok((k.contiguous()?, v.contiguous()?)),
        Some((pk, pv)) => Ok((Tensor::cat(&[&pk, k], SEQ_DIM)?, Tensor::cat(&[&pv, v], SEQ_DIM)?)),
    }
}

/// Bytes of one tensor's storage.
pub(crate) fn tensor_bytes(t: &Tensor) -> u64 {
    (t.elem_count() * t.dtype().size_in_bytes()) as u64
}
