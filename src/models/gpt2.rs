//! GPT-2 (gpt2, -medium, -large, -xl) written on candle-nn: learned absolute positions,
//! pre-LayerNorm blocks, fused QKV in Conv1D layout (`[in, out]`, transposed at load), the
//! tanh GELU ("gelu_new") and an LM head tied to the token embedding. Follows transformers'
//! `modeling_gpt2.py`; the KV cache is passed in.

use super::config::Gpt2Config;
use super::layers::{attention, attention_row_by_row, Footprint, LayerNorm, Linear, VerifyAttention};
use super::weights::Weights;
use super::config::ModelConfig;
use super::{LayerStates, Model};
use super::batch::{BatchPart, FlatBatch};
use crate::kv::{KvCache, PagedKvPool};
use anyhow::Result;
use candle_core::{DType, Module, Tensor};
use candle_nn::Embedding;

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

pub struct Gpt2 {
    wte: Embedding,
    head: candle_nn::Linear,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    cfg: Gpt2Config,
    model_config: ModelConfig,
}

impl Gpt2 {
    pub fn load(cfg: &Gpt2Config, w: &Weights) -> Result<Self> {
        // GPT2LMHeadModel checkpoints prefix names with `transformer.`; GPT2Model ones (the Hub's gpt2) do not.
        let p = if w.contains("transformer.wte.weight") { "transformer." } else { "" };
        let e = cfg.n_embd;
        let eps = cfg.layer_norm_epsilon as f32;
        let ln = |name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm { weight: w.tensor(&format!("{name}.weight"), e)?, bias: w.tensor(&format!("{name}.bias"), e)?, eps })
        };
        let blocks = (0..cfg.n_layer)
            .map(|i| -> Result<Block> {
                let b = format!("{p}h.{i}");
                Ok(Block {
                    ln_1: ln(&format!("{b}.ln_1"))?,
                    c_attn: w.conv1d(&format!("{b}.attn.c_attn"), e, 3 * e)?,
                    attn_proj: w.conv1d(&format!("{b}.attn.c_proj"), e, e)?,
                    ln_2: ln(&format!("{b}.ln_2"))?,
                    c_fc: w.conv1d(&format!("{b}.mlp.c_fc"), e, cfg.n_inner)?,
                    mlp_proj: w.conv1d(&format!("{b}.mlp.c_proj"), cfg.n_inner, e)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let wte_weight = w.tensor(&format!("{p}wte.weight"), (cfg.vocab_size, e))?;
        let wpe = w.tensor(&format!("{p}wpe.weight"), (cfg.n_positions, e))?;
        Ok(Self {
            wte: Embedding::new(wte_weight.clone(), e),
            head: candle_nn::Linear::new(wte_weight, None),
            wpe: Embedding::new(wpe, e),
            blocks,
            ln_f: ln(&format!("{p}ln_f"))?,
            cfg: cfg.clone(),
            model_config: ModelConfig::Gpt2(cfg.clone()),
        })
    }

    /// The forward pass; with `states`, the hidden state entering each block is appended to
    /// it (transformers' `hidden_states[i]`: the embedding output first).
    fn forward_hidden_impl(
        &self,
        ids: &Tensor,
        start: usize,
        n_blocks: usize,
        mode: VerifyAttention,
        cache: &mut dyn KvCache,
        mut states: Option<&mut Vec<Tensor>>,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if start + t > self.cfg.n_positions {
            candle_core::bail!("position {} is past GPT-2's {} learned positions", start + t, self.cfg.n_positions);
        }
        let (n_head, e) = (self.cfg.n_head, self.cfg.n_embd);
        let d = e / n_head;
        let positions = Tensor::arange(start as u32, (start + t) as u32, ids.device())?;
        let mut x = self.wte.forward(ids)?.broadcast_add(&self.wpe.forward(&positions)?)?;
        let wants_attention = cache.attention_observer().is_some();
        for (layer, blk) in self.blocks.iter().take(n_blocks).enumerate() {
            if let Some(states) = states.as_deref_mut() {
                states.push(x.clone());
            }
            let hs = blk.ln_1.forward(&x)?;
            let qkv = blk.c_attn.forward(&hs)?;
            let split = |i: usize| -> candle_core::Result<Tensor> {
                qkv.narrow(2, i * e, e)?.reshape((b, t, n_head, d))?.transpose(1, 2)?.contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let (k, v) = cache.append(layer, &k, &v)?;
            let (y, weights) = match mode {
                VerifyAttention::RowByRow if t > 1 && !wants_attention && k.dim(2)? > t => (attention_row_by_row(&q, k, v)?, None),
                _ => attention(&q, k, v, wants_attention)?,
            };
            if let (Some(weights), Some(observer)) = (weights, cache.attention_observer()) {
                observer.observe(layer, &weights)?;
            }
            let y = y.transpose(1, 2)?.reshape((b, t, e))?;
            x = (blk.attn_proj.forward(&y)? + x)?;
            let hs = blk.ln_2.forward(&x)?;
            let mlp = blk.mlp_proj.forward(&blk.c_fc.forward(&hs)?.gelu()?)?;
            x = (mlp + x)?;
        }
        self.ln_f.forward(&x)
    }

    /// One batched step (`Model::forward_batch`): all parts' rows through each projection,
    /// learned positions per row, attention per sequence over the shared pool.
    fn forward_batch_impl(&self, parts: &mut [BatchPart], pool: &mut PagedKvPool) -> candle_core::Result<Tensor> {
        let (n_head, e) = (self.cfg.n_head, self.cfg.n_embd);
        let d = e / n_head;
        let device = self.ln_f.weight.device().clone();
        let flat = FlatBatch::new(parts, self.cfg.n_positions, (n_head, d), pool, &device)?;
        let rows = flat.rows();
        let mut x = self.wte.forward(&flat.ids)?.broadcast_add(&self.wpe.forward(&flat.position_ids)?)?;
        for (layer, blk) in self.blocks.iter().enumerate() {
            let qkv = blk.c_attn.forward(&blk.ln_1.forward(&x)?)?;
            let split = |i: usize| -> candle_core::Result<Tensor> { qkv.narrow(2, i * e, e)?.reshape((1, rows, n_head, d))?.transpose(1, 2)?.contiguous() };
            let y = flat.attention(layer, parts, &split(0)?, &split(1)?, &split(2)?, pool)?;
            x = (blk.attn_proj.forward(&y)? + x)?;
            let mlp = blk.mlp_proj.forward(&blk.c_fc.forward(&blk.ln_2.forward(&x)?)?.gelu()?)?;
            x = (mlp + x)?;
        }
        self.lm_head_impl(&flat.logit_rows_of(&self.ln_f.forward(&x)?)?)
    }

    fn lm_head_impl(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.head.forward(hidden)?.to_dtype(DType::F32)
    }
}

impl Model for Gpt2 {
    fn forward_blocks(&self, ids: &Tensor, start: usize, blocks: usize, mode: VerifyAttention, cache: &mut dyn KvCache) -> candle_core::Result<Tensor> {
        self.forward_hidden_impl(ids, start, blocks, mode, cache, None)
    }
    fn has_batch(&self) -> bool {
        true
    }
    fn forward_batch(&self, parts: &mut [BatchPart], pool: &mut PagedKvPool) -> candle_core::Result<Tensor> {
        self.forward_batch_impl(parts, pool)
    }
    fn has_layer_states(&self) -> bool {
        true
    }
    fn forward_layer_states(&self, ids: &Tensor, start_pos: usize, cache: &mut dyn KvCache) -> candle_core::Result<LayerStates> {
        let mut states = Vec::with_capacity(self.blocks.len());
        let last = self.forward_hidden_impl(ids, start_pos, self.blocks.len(), VerifyAttention::Batched, cache, Some(&mut states))?;
        Ok(LayerStates { states, last })
    }
    fn final_norm(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.ln_f.forward(hidden)
    }
    fn lm_head(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.lm_head_impl(hidden)
    }
    fn config(&self) -> &ModelConfig {
        &self.model_config
    }
    /// The head is the token table (tied), counted once.
    fn weight_footprint(&self) -> Footprint {
        let ln = |n: &LayerNorm| Footprint::of_tensor(&n.weight) + Footprint::of_tensor(&n.bias);
        let blocks: Footprint = self
            .blocks
            .iter()
            .map(|b| ln(&b.ln_1) + b.c_attn.footprint() + b.attn_proj.footprint() + ln(&b.ln_2) + b.c_fc.footprint() + b.mlp_proj.footprint())
            .sum();
        Footprint::of_tensor(self.wte.embeddings()) + Footprint::of_tensor(self.wpe.embeddings()) + blocks + ln(&self.ln_f)
    }
}
