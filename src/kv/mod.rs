//! KV-cache strategies behind one small trait. A cache stores key/value tensors per layer and
//! knows no architecture: the model hands it rotated keys and values and attends over what
//! `append` returns. One factory (`build`) turns a `KvKind` into a boxed strategy.

pub mod block_pool;
mod full;
mod none;
mod paged;
mod quantized;
mod static_cache;
mod window;

pub use full::FullCache;
pub use none::NoCache;
pub use paged::{PagedCache, PagedUsage};
pub use quantized::{Bits, QuantizedCache, INT4_GROUP};
pub use static_cache::StaticCache;
pub use window::WindowCache;

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// What a cache holds right now, measured from its tensors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStats {
    /// Bytes held by key and value tensors (and any scales) across all layers.
    pub kv_cache_bytes: u64,
    /// Tokens whose keys/values are held (per layer).
    pub tokens_held: usize,
    /// Tokens dropped by an eviction policy since the last reset.
    pub evictions: u64,
}

/// A KV-cache strategy. Tensors are `[batch, kv_heads, seq, head_dim]`.
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
    /// Exact bytes held, from the tensors themselves.
    fn stats(&self) -> KvStats;
    /// Attention weights of `layer` (`[batch, heads, q, kv]`) for score-based eviction.
    /// Strategies that do not evict by score ignore them; the model only computes the
    /// argument when `wants_attention` says so.
    fn observe(&mut self, _layer: usize, _attn: &Tensor) -> Result<()> {
        Ok(())
    }
    /// Whether `observe` needs the attention weights.
    fn wants_attention(&self) -> bool {
        false
    }
    /// Which strategy this is, for results.
    fn kind(&self) -> KvKind;
    /// The static cache, for code that writes its fixed buffers directly (the CUDA graph
    /// decode step); every other strategy says no.
    fn as_static(&mut self) -> Option<&mut StaticCache> {
        None
    }
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
        }
    }
}

/// Settings of the strategies that take any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvOptions {
    /// Positions the window strategy keeps.
    pub window: usize,
    /// Token slots per block of the paged strategy.
    pub block_size: usize,
}

impl Default for KvOptions {
    fn default() -> Self {
        Self { window: 256, block_size: 16 }
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
        KvKind::Full => Box::new(FullCache::new(n_layers)),
        KvKind::None => Box::new(NoCache),
        KvKind::Static => Box::new(StaticCache::new(n_layers, max_tokens)),
        KvKind::Window => Box::new(WindowCache::new(n_layers, options.window)),
        KvKind::Paged => Box::new(PagedCache::new(n_layers, options.block_size, max_tokens)),
        KvKind::Int8 => Box::new(QuantizedCache::new(n_layers, kind, Bits::Eight, Bits::Eight)),
        KvKind::Int4 => Box::new(QuantizedCache::new(n_layers, kind, Bits::Four, Bits::Four)),
        KvKind::Mixed => Box::new(QuantizedCache::new(n_layers, kind, Bits::Eight, Bits::Four)),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::{Device, Tensor};

    /// Distinct values `[1, 2 heads, t, 4]` that depend on `seed`, for cache tests.
    pub fn ramp(t: usize, seed: f32) -> Tensor {
        let n = (2 * t * 4) as f32;
        Tensor::arange(0f32, n, &Device::Cpu).unwrap().affine(seed as f64, 0.5).unwrap().reshape((1, 2, t, 4)).unwrap()
    }
}

/// Bytes of one tensor's storage.
pub(crate) fn tensor_bytes(t: &Tensor) -> u64 {
    (t.elem_count() * t.dtype().size_in_bytes()) as u64
}
