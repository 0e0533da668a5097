//! The Llama family's batched step (`Model::forward_batch`, see `models::batch`): the rows of
//! every sequence through each projection at once, RoPE at each row's own position, attention per
//! sequence over the shared paged pool.
//!
//! Two paths, as for one sequence. Quantized weights on the CPU take the rows path (`rows.rs`)
//! when the step is all decoding or small: our kernels compute each row exactly as a one-row
//! call does, so a batched sequence gets bit for bit the logits it gets alone, and they read the
//! 4-bit weights once per step for every row instead of a dequantized f32 copy. A step carrying
//! a prompt chunk of `BATCHED_DEQUANT_MIN_ROWS` rows or more, and every other model and device,
//! take the candle path (dense GEMMs; a quantized weight is dequantized for the step, as a long
//! prefill alone does).

use super::rows::KvRead;
use super::Llama;
use crate::kv::PagedKvPool;
use crate::models::batch::{BatchPart, FlatBatch};
use crate::models::layers::BATCHED_DEQUANT_MIN_ROWS;
use candle_core::{DType, Tensor};

impl Llama {
    pub(super) fn forward_batch_impl(&self, parts: &mut [BatchPart], pool: &mut PagedKvPool) -> candle_core::Result<Tensor> {
        if self.sparse_now().is_some() {
            candle_core::bail!("activation sparsity is not implemented for batched steps: run without --sparsity");
        }
        let device = self.norm.weight.device().clone();
        let flat = FlatBatch::new(parts, self.rope.positions(), (self.cfg.num_key_value_heads, self.cfg.head_dim), pool, &device)?;
        // Decodes and draft verifications (a few rows a sequence) take the kernels at any B;
        // a step with a prompt chunk only while it is small.
        let no_prompt_chunk = parts.iter().all(|p| p.is_decode_or_verify());
        if self.rows_path_available(&device) && (no_prompt_chunk || flat.rows() < BATCHED_DEQUANT_MIN_ROWS) {
            return self.forward_batch_rows(parts, pool, &flat);
        }
        self.forward_batch_generic(parts, pool, &flat)
    }

    fn forward_batch_rows(&self, parts: &mut [BatchPart], pool: &mut PagedKvPool, flat: &FlatBatch) -> candle_core::Result<Tensor> {
        let h = self.cfg.hidden_size;
        let ids: Vec<u32> = parts.iter().flat_map(|p| p.ids.iter().copied()).collect();
        let spans: Vec<(usize, usize)> = parts.iter().map(|p| (p.start, p.ids.len())).collect();
        // Attention reads each sequence's keys in place through its block table (no gather);
        // the tables cover the step already, so each sequence's slots hold for every layer.
        let slots: Vec<std::sync::Arc<[u32]>> = parts.iter().map(|p| p.table.slots(pool.block_size(), p.start + p.ids.len()).into()).collect();
        let hidden = self.forward_rows_cpu(&ids, &spans, self.blocks.len(), &mut |span, layer, k, v| {
            let part = &mut parts[span];
            pool.write(layer, part.table, part.start, k, v)?;
            let (kb, vb) = pool.buffers(layer).expect("written above");
            Ok(KvRead::Paged(kb.clone(), vb.clone(), slots[span].clone()))
        })?;
        let last: Vec<f32> = flat.logit_rows.iter().flat_map(|&r| hidden[r as usize * h..][..h].iter().copied()).collect();
        // The head through the kernels whatever the number of rows (as each row alone).
        let mut logits = Vec::new();
        self.head.forward_rows(&last, h, &mut logits)?;
        let n = flat.logit_rows.len();
        Tensor::from_vec(logits, (n, self.cfg.vocab_size), &candle_core::Device::Cpu)
    }

    fn forward_batch_generic(&self, parts: &mut [BatchPart], pool: &mut PagedKvPool, flat: &FlatBatch) -> candle_core::Result<Tensor> {
        let (n_head, n_kv, d) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim);
        let rows = flat.rows();
        let tables = self.rope.rows(&flat.position_ids)?;
        let mut x = self.embed.forward(&flat.ids)?;
        for (layer, blk) in self.blocks.iter().enumerate() {
            let hs = blk.input_norm.forward(&x)?;
            let qkv = blk.qkv.forward(&hs)?;
            let q = self.rope.apply_rows(&qkv[0].reshape((1, rows, n_head, d))?.transpose(1, 2)?, &tables)?;
            let k = self.rope.apply_rows(&qkv[1].reshape((1, rows, n_kv, d))?.transpose(1, 2)?, &tables)?;
            let v = qkv[2].reshape((1, rows, n_kv, d))?.transpose(1, 2)?.contiguous()?;
            let y = flat.attention(layer, parts, &q, &k, &v, pool)?;
            let x1 = (blk.o.forward(&y)? + &x)?;
            let hs = blk.post_norm.forward(&x1)?;
            let gate_up = blk.gate_up.forward(&hs)?;
            let mlp = (candle_nn::ops::silu(&gate_up[0])? * &gate_up[1])?;
            x = (blk.down.forward(&mlp)? + x1)?;
        }
        let last = flat.logit_rows_of(&self.norm.forward(&x)?)?;
        self.head.forward(&last)?.to_dtype(DType::F32)
    }
}
