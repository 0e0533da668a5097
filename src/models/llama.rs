//! The Llama family (SmolLM2, TinyLlama, Llama 2/3.x) written on candle-nn: RMSNorm,
//! RoPE (half-split for Hugging Face checkpoints, interleaved for GGUF, llama3 frequency
//! scaling), grouped-query attention and a SwiGLU MLP. Follows transformers'
//! `modeling_llama.py`; the KV cache is passed in, never stored in the layers.

use super::config::{Llama3RopeScaling, LlamaConfig};
use super::cuda_graph::{DecodeShape, DecodeWeights, GraphDecoder, GraphWeight, LayerWeights};
use super::layers::{split_last, attention, attention_row_by_row, Footprint, FusedLinear, Linear, RmsNorm, Rope, TokenEmbedding, VerifyAttention};
use candle_core::quantized::QMatMul;
use crate::quant::block_cuda::DeviceBlockWeights;
use super::weights::Weights;
use super::config::ModelConfig;
use super::{LayerStates, Model, SparsityCounts};
use crate::kv::KvCache;
use anyhow::Result;
use candle_core::{DType, Tensor};
use candle_nn::Embedding;
use super::sparse_projection::project_tensor;
use sparsity::{observe, sparse_site, SparseBlocks};
use crate::sparse::calibration::{ActivationStats, Calibration, Site, SITES};

mod batch;
mod rows;
mod sparsity;
use crate::sparse::SparsityMethod;

/// Positions beyond this are not tabulated even if the config allows more (Llama 3.2 says
/// 131,072): the tables would cost memory for contexts no benchmark here reaches.
const MAX_ROPE_POSITIONS: usize = 32_768;

struct Block {
    input_norm: RmsNorm,
    /// Q, K and V projections, fused.
    qkv: FusedLinear,
    o: Linear,
    post_norm: RmsNorm,
    /// Gate and up projections of the SwiGLU MLP, fused.
    gate_up: FusedLinear,
    down: Linear,
}

pub struct Llama {
    embed: TokenEmbedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    head: Linear,
    rope: Rope,
    cfg: LlamaConfig,
    model_config: ModelConfig,
    /// The graph-captured decode step on CUDA (see `cuda_graph/`).
    graph: Option<GraphDecoder>,
    graph_enabled: bool,
    /// `all_quantized()`, computed once at load.
    cpu_rows: bool,
    /// Activation sparsity (`set_sparsity`): per block, the four projections' sparse forms.
    /// Behind a lock so a run can switch it between cases while engines borrow the model; each
    /// forward pass takes one `Arc` of it.
    sparse: std::sync::Mutex<Option<SparseBlocks>>,
}

impl Llama {
    pub fn load(cfg: &LlamaConfig, w: &Weights) -> Result<Self> {
        let (h, kv_dim, q_dim) = (cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim, cfg.num_attention_heads * cfg.head_dim);
        let eps = cfg.rms_norm_eps as f32;
        let norm = |name: &str| -> Result<RmsNorm> { Ok(RmsNorm { weight: w.tensor(name, h)?, eps }) };
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| -> Result<Block> {
                let p = format!("model.layers.{i}");
                let bias = cfg.attention_bias;
                Ok(Block {
                    input_norm: norm(&format!("{p}.input_layernorm.weight"))?,
                    qkv: w.fused_linear(
                        &[&format!("{p}.self_attn.q_proj"), &format!("{p}.self_attn.k_proj"), &format!("{p}.self_attn.v_proj")],
                        h,
                        &[q_dim, kv_dim, kv_dim],
                        bias,
                    )?,
                    o: w.linear(&format!("{p}.self_attn.o_proj"), q_dim, h, false)?,
                    post_norm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                    gate_up: w.fused_linear(
                        &[&format!("{p}.mlp.gate_proj"), &format!("{p}.mlp.up_proj")],
                        h,
                        &[cfg.intermediate_size, cfg.intermediate_size],
                        false,
                    )?,
                    down: w.linear(&format!("{p}.mlp.down_proj"), cfg.intermediate_size, h, false)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tied = cfg.tie_word_embeddings || !w.contains("lm_head.weight");
        let head = if tied {
            w.linear("model.embed_tokens", h, cfg.vocab_size, false)?
        } else {
            w.linear("lm_head", h, cfg.vocab_size, false)?
        };
        // Tied: the table is the head's weight as stored (a converted model looks tokens up in
        // its converted table, as llama.cpp does, and a saved file reloads to the same model).
        let quantized_table = match (&head, tied) {
            (Linear::Quantized { weight: QMatMul::QTensor(q), bias: None }, true) => TokenEmbedding::quantized(q)
                .or(Some(TokenEmbedding::Dense(Embedding::new(q.dequantize(w.device())?, h)))),
            (Linear::Int { weights, bias: None, .. }, true) => Some(TokenEmbedding::Int(weights.clone())),
            _ => None,
        };
        // An untied GGUF table is looked up quantized too (rows dequantized per token), rather
        // than held dequantized in f32.
        let embed = match quantized_table {
            Some(table) => table,
            None => match w.qtensor("model.embed_tokens.weight", (cfg.vocab_size, h))? {
                Some(q) => {
                    let q = std::sync::Arc::new(q);
                    TokenEmbedding::quantized(&q).map_or_else(|| Ok::<_, anyhow::Error>(TokenEmbedding::Dense(Embedding::new(q.dequantize(w.device())?, h))), Ok)?
                }
                None => TokenEmbedding::Dense(Embedding::new(w.tensor("model.embed_tokens.weight", (cfg.vocab_size, h))?, h)),
            },
        };
        let mut inv_freq = inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling.as_ref());
        // Llama 3.1+ GGUF files carry the llama3 scaling as per-frequency divisors.
        if w.is_quantized() && w.contains("rope_freqs.weight") {
            let factors: Vec<f32> = w.tensor("rope_freqs.weight", inv_freq.len())?.to_dtype(DType::F32)?.to_vec1()?;
            inv_freq.iter_mut().zip(factors).for_each(|(f, d)| *f /= d);
        }
        let positions = cfg.max_position_embeddings.min(MAX_ROPE_POSITIONS);
        let rope = Rope::new(&inv_freq, positions, cfg.rope_interleaved, w.dtype(), w.device())?;
        let mut model = Self {
            embed,
            blocks,
            norm: norm("model.norm.weight")?,
            head,
            rope,
            cfg: cfg.clone(),
            model_config: ModelConfig::Llama(cfg.clone()),
            graph: None,
            graph_enabled: true,
            cpu_rows: false,
            sparse: std::sync::Mutex::new(None),
        };
        model.cpu_rows = model.all_quantized();
        if let Some(weights) = model.graph_weights() {
            // An optimisation, not a different computation: if it cannot start, say so and
            // decode on the generic path (results record whether the graph ran).
            model.graph = GraphDecoder::new(weights, model.graph_shape(), w.device()).unwrap_or_else(|e| {
                tracing::warn!("CUDA graph decode step unavailable, using the generic path: {e}");
                None
            });
        }
        Ok(model)
    }

    /// The tensors the CUDA graph decoder reads, when every projection is dense, our int8 /
    /// int4 or GGUF Q8_0 / Q4_0 / Q4_1 on the device, fused and without bias.
    fn graph_weights(&self) -> Option<DecodeWeights> {
        let embed = self.embed.dense_table()?;
        if !embed.device().is_cuda() || self.cfg.attention_bias {
            return None;
        }
        // Quantized weights join where the graph computes in f32 (their kernels quantize f32
        // activations). GGUF blocks are copied into the kernels' layout (candle keeps its copy
        // for prefills and the per-op path); a type the kernels lack leaves the generic path.
        let f32_graph = embed.dtype() == DType::F32;
        let dense = |l: &Linear| match l {
            Linear::Dense(d) if d.bias().is_none() => Some(GraphWeight::Dense(d.weight().clone())),
            Linear::Int { bias: None, on_device: Some(w), .. } if f32_graph => Some(GraphWeight::Int(w.clone())),
            Linear::Quantized { weight: QMatMul::QTensor(q), bias: None } if f32_graph => match DeviceBlockWeights::upload(q, embed.device()) {
                Ok(w) => Some(GraphWeight::Blocks(std::sync::Arc::new(w))),
                Err(e) => {
                    tracing::debug!("CUDA graph: {e}");
                    None
                }
            },
            _ => None,
        };
        let fused = |f: &FusedLinear| match f {
            FusedLinear::Fused { linear, .. } => dense(linear),
            FusedLinear::Separate(_) => None,
        };
        let layers = self
            .blocks
            .iter()
            .map(|b| {
                Some(LayerWeights {
                    input_norm: b.input_norm.weight.clone(),
                    qkv: fused(&b.qkv)?,
                    o: dense(&b.o)?,
                    post_norm: b.post_norm.weight.clone(),
                    gate_up: fused(&b.gate_up)?,
                    down: dense(&b.down)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let (cos, sin) = self.rope.tables();
        Some(DecodeWeights {
            embed: embed.clone(),
            layers,
            final_norm: self.norm.weight.clone(),
            head: dense(&self.head)?,
            cos: cos.clone(),
            sin: sin.clone(),
        })
    }

    fn graph_shape(&self) -> DecodeShape {
        DecodeShape {
            hidden: self.cfg.hidden_size,
            n_head: self.cfg.num_attention_heads,
            n_kv: self.cfg.num_key_value_heads,
            head_dim: self.cfg.head_dim,
            intermediate: self.cfg.intermediate_size,
            vocab: self.cfg.vocab_size,
            eps: self.cfg.rms_norm_eps as f32,
            interleaved: self.cfg.rope_interleaved,
        }
    }

    /// Whether every projection and the head are GGUF-quantized or in our integer formats: the
    /// buffer path's kernels are for those; dense weights run candle's GEMMs either way, and keep the generic path (so
    /// the dense random-weight checks against transformers see one code path).
    fn all_quantized(&self) -> bool {
        let quantized = |l: &Linear| matches!(l, Linear::Quantized { weight: QMatMul::QTensor(_), .. } | Linear::Int { .. });
        let fused = |f: &FusedLinear| match f {
            FusedLinear::Fused { linear, .. } => quantized(linear),
            FusedLinear::Separate(parts) => parts.iter().all(quantized),
        };
        quantized(&self.head) && self.blocks.iter().all(|b| fused(&b.qkv) && quantized(&b.o) && fused(&b.gate_up) && quantized(&b.down))
    }

    /// Final-norm hidden states `[b, t, hidden]` for `ids` at positions `start..`.
    fn forward_hidden_impl(&self, ids: &Tensor, start: usize, n_blocks: usize, mode: VerifyAttention, cache: &mut dyn KvCache) -> candle_core::Result<Tensor> {
        let (_, t) = ids.dims2()?;
        if self.takes_cpu_rows(ids, cache)? {
            let last = query_position(cache, 0, start) + t;
            if last > self.rope.positions() {
                candle_core::bail!("position {last} is past the {} positions this model covers", self.rope.positions());
            }
            let ids = ids.flatten_all()?.to_vec1::<u32>()?;
            let x = self.forward_rows_cpu(&ids, &[(start, t)], n_blocks, &mut |_, layer, k, v| {
                let (k, v) = cache.append(layer, k, v)?;
                Ok(rows::KvRead::InOrder(k, v))
            })?;
            return Tensor::from_vec(x, (1, t, self.cfg.hidden_size), &candle_core::Device::Cpu);
        }
        self.forward_generic(ids, start, n_blocks, mode, cache, None, None)
    }

    /// The forward pass on candle tensors (every device, batch and cache). With `states`, the
    /// hidden state entering each block is appended to it (transformers' `hidden_states[i]`:
    /// the embedding output first), for logits of premature layers. With `calibration`, every
    /// projection input is recorded into it (activation sparsity's calibration pass).
    #[allow(clippy::too_many_arguments)]
    fn forward_generic(
        &self,
        ids: &Tensor,
        start: usize,
        n_blocks: usize,
        mode: VerifyAttention,
        cache: &mut dyn KvCache,
        mut states: Option<&mut Vec<Tensor>>,
        mut calibration: Option<&mut ActivationStats>,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        // A cache that positions keys itself (sinks) rotates queries at its own positions.
        let last = query_position(cache, 0, start) + t;
        if last > self.rope.positions() {
            candle_core::bail!("position {last} is past the {} positions this model covers", self.rope.positions());
        }
        let (n_head, n_kv, d) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim);
        let wants_attention = cache.attention_observer().is_some();
        let sparse = self.sparse_now();
        let mut x = self.embed.forward(ids)?;
        for (layer, blk) in self.blocks.iter().take(n_blocks).enumerate() {
            if let Some(states) = states.as_deref_mut() {
                states.push(x.clone());
            }
            let residual = &x;
            let hs = blk.input_norm.forward(&x)?;
            observe(calibration.as_deref_mut(), layer, Site::AttentionInput, &hs)?;
            let qkv = match sparse_site(&sparse, layer, Site::AttentionInput) {
                None => blk.qkv.forward(&hs)?,
                Some(s) => split_last(&project_tensor(Some(s), &hs, |x| Tensor::cat(&blk.qkv.forward(x)?, candle_core::D::Minus1))?, &[n_head * d, n_kv * d, n_kv * d])?,
            };
            let q = qkv[0].reshape((b, t, n_head, d))?.transpose(1, 2)?;
            let k = qkv[1].reshape((b, t, n_kv, d))?.transpose(1, 2)?;
            let v = qkv[2].reshape((b, t, n_kv, d))?.transpose(1, 2)?.contiguous()?;
            let q = self.rope.apply(&q, query_position(cache, layer, start))?;
            let (k, v) = match cache.key_positions() {
                Some(positions) => {
                    positions.append_unrotated(layer, &k, &v, &|x: &Tensor, first: usize| self.rope.apply(x, first))?
                }
                None => cache.append(layer, &self.rope.apply(&k, start)?, &v)?,
            };
            let (y, weights) = match mode {
                VerifyAttention::RowByRow if t > 1 && !wants_attention && k.dim(2)? > t => (attention_row_by_row(&q, k, v)?, None),
                _ => attention(&q, k, v, wants_attention)?,
            };
            if let (Some(weights), Some(observer)) = (weights, cache.attention_observer()) {
                observer.observe(layer, &weights)?;
            }
            let y = y.transpose(1, 2)?.reshape((b, t, n_head * d))?;
            observe(calibration.as_deref_mut(), layer, Site::AttentionOutput, &y)?;
            let x1 = (project_tensor(sparse_site(&sparse, layer, Site::AttentionOutput), &y, |x| blk.o.forward(x))? + residual)?;
            let hs = blk.post_norm.forward(&x1)?;
            observe(calibration.as_deref_mut(), layer, Site::MlpInput, &hs)?;
            let inter = self.cfg.intermediate_size;
            let gate_up = match sparse_site(&sparse, layer, Site::MlpInput) {
                None => blk.gate_up.forward(&hs)?,
                Some(s) => split_last(&project_tensor(Some(s), &hs, |x| Tensor::cat(&blk.gate_up.forward(x)?, candle_core::D::Minus1))?, &[inter, inter])?,
            };
            let mlp = (candle_nn::ops::silu(&gate_up[0])? * &gate_up[1])?;
            observe(calibration.as_deref_mut(), layer, Site::MlpHidden, &mlp)?;
            x = (project_tensor(sparse_site(&sparse, layer, Site::MlpHidden), &mlp, |x| blk.down.forward(x))? + x1)?;
        }
        self.norm.forward(&x)
    }

    fn lm_head_impl(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.head.forward(hidden)?.to_dtype(DType::F32)
    }

}

/// Where `layer`'s queries are rotated: their absolute position `start`, unless the cache
/// positions keys itself.
fn query_position(cache: &mut dyn KvCache, layer: usize, start: usize) -> usize {
    cache.key_positions().map_or(start, |p| p.query_position(layer))
}

/// Per-pair RoPE inverse frequencies `theta^(-2i/d)`, with llama3 scaling when configured
/// (transformers' `_compute_llama3_parameters`).
pub fn inverse_frequencies(head_dim: usize, theta: f64, scaling: Option<&Llama3RopeScaling>) -> Vec<f32> {
    let base: Vec<f32> =
        (0..head_dim).step_by(2).map(|i| 1f32 / (theta as f32).powf(i as f32 / head_dim as f32)).collect();
    let Some(s) = scaling else { return base };
    let old = s.original_max_position_embeddings as f32;
    let (factor, low, high) = (s.factor as f32, s.low_freq_factor as f32, s.high_freq_factor as f32);
    let low_freq_wavelen = old / low;
    let high_freq_wavelen = old / high;
    base.into_iter()
        .map(|freq| {
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_freq_wavelen {
                freq
            } else if wavelen > low_freq_wavelen {
                freq / factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                (1.0 - smooth) * freq / factor + smooth * freq
            }
        })
        .collect()
}

impl Llama {
    /// The CUDA graph and the static cache it decodes into, where the graph takes a one-token
    /// step at `start_pos` (a graph, enabled, the step at the end of a static cache on this
    /// device, within the RoPE table); `None` elsewhere.
    fn graph_for<'c>(&self, start_pos: usize, cache: &'c mut dyn KvCache) -> Option<(&GraphDecoder, &'c mut dyn crate::kv::InPlaceBuffers)> {
        let graph = self.graph.as_ref().filter(|_| self.graph_enabled)?;
        if cache.seq_len() != start_pos || start_pos >= self.rope.positions() {
            return None;
        }
        let fixed = cache.in_place()?;
        graph.supports(&*fixed).then_some((graph, fixed))
    }
}

impl Model for Llama {
    /// One token at the end of a static cache on CUDA goes through the captured graph; all
    /// else (prefill, other caches, CPU) through the generic path.
    fn forward(&self, ids: &Tensor, start_pos: usize, cache: &mut dyn KvCache) -> candle_core::Result<Tensor> {
        if ids.dims2()? == (1, 1) {
            if let Some((graph, fixed)) = self.graph_for(start_pos, cache) {
                let token = ids.flatten_all()?.to_vec1::<u32>()?[0];
                return graph.step(token, start_pos, fixed);
            }
        }
        let hidden = self.forward_hidden_impl(ids, start_pos, self.blocks.len(), VerifyAttention::Batched, cache)?;
        self.lm_head_impl(&super::layers::last_position(&hidden)?)
    }
    /// The graph path without the id's round trip through the device (`forward` has it there).
    fn forward_token(&self, token: u32, start_pos: usize, device: &candle_core::Device, cache: &mut dyn KvCache) -> candle_core::Result<Tensor> {
        if let Some((graph, fixed)) = self.graph_for(start_pos, cache) {
            return graph.step(token, start_pos, fixed);
        }
        self.forward(&Tensor::new(&[[token]], device)?, start_pos, cache)
    }
    /// The graph's step with its greedy token, picked on the device (and the next step
    /// queued, where `ahead` and the positions allow).
    fn greedy_token(&self, token: u32, start_pos: usize, cache: &mut dyn KvCache, ahead: bool) -> Option<candle_core::Result<(u32, bool)>> {
        let ahead = ahead && start_pos + 1 < self.rope.positions();
        let (graph, fixed) = self.graph_for(start_pos, cache)?;
        Some(graph.step_greedy(token, start_pos, fixed, ahead))
    }
    fn has_batch(&self) -> bool {
        true
    }
    fn forward_batch(&self, parts: &mut [super::batch::BatchPart], pool: &mut crate::kv::PagedKvPool) -> candle_core::Result<Tensor> {
        self.forward_batch_impl(parts, pool)
    }
    fn set_cuda_graph(&mut self, enabled: bool) {
        self.graph_enabled = enabled;
    }
    fn cuda_graph_available(&self) -> bool {
        self.graph.is_some() && self.graph_enabled
    }
    fn forward_blocks(&self, ids: &Tensor, start: usize, blocks: usize, mode: VerifyAttention, cache: &mut dyn KvCache) -> candle_core::Result<Tensor> {
        self.forward_hidden_impl(ids, start, blocks, mode, cache)
    }
    fn has_layer_states(&self) -> bool {
        true
    }
    fn forward_layer_states(&self, ids: &Tensor, start_pos: usize, cache: &mut dyn KvCache) -> candle_core::Result<LayerStates> {
        let mut states = Vec::with_capacity(self.blocks.len());
        let last = self.forward_generic(ids, start_pos, self.blocks.len(), VerifyAttention::Batched, cache, Some(&mut states), None)?;
        Ok(LayerStates { states, last })
    }
    fn final_norm(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.norm.forward(hidden)
    }
    fn calibrate_activations(&self, windows: &[Vec<u32>], stats: &mut ActivationStats) -> candle_core::Result<()> {
        self.calibrate(windows, stats)
    }
    fn set_sparsity(&self, sparsity: Option<(SparsityMethod, &Calibration)>) -> anyhow::Result<()> {
        self.set_sparse(sparsity)
    }
    fn sparsity_counts(&self) -> Option<SparsityCounts> {
        self.sparse_counts()
    }
    fn lm_head(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.lm_head_impl(hidden)
    }
    fn config(&self) -> &ModelConfig {
        &self.model_config
    }
    fn weight_footprint(&self) -> Footprint {
        let norm = |n: &RmsNorm| Footprint::of_tensor(&n.weight);
        let blocks: Footprint = self
            .blocks
            .iter()
            .map(|b| norm(&b.input_norm) + b.qkv.footprint() + b.o.footprint() + norm(&b.post_norm) + b.gate_up.footprint() + b.down.footprint())
            .sum();
        self.embed.footprint(&self.head) + blocks + norm(&self.norm) + self.head.footprint()
    }
}
