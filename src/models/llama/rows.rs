//! The Llama forward pass on plain CPU buffers (`models::cpu_rows`) for quantized weights: our
//! kernels and one-pass attention, one buffer set for all layers, no candle op per step but the
//! cache's append. It carries one sequence (decoding, short prompts) or the parts of a batched
//! step (`batch.rs`): rows of several sequences, each attending over its own keys and values.

use super::Llama;
use crate::kv::KvCache;
use crate::models::layers::BATCHED_DEQUANT_MIN_ROWS;
use crate::models::sparse_projection::project_rows;
use crate::sparse::calibration::Site;
use super::sparsity::sparse_site;
use candle_core::{DType, Tensor};

/// Where a forward pass's keys and values go: `(span, layer, k, v)` with k, v `[1, kv_heads, t,
/// d]` for the span's new rows; returns the span's keys and values to attend over.
pub(super) type AppendKv<'a> = dyn FnMut(usize, usize, &Tensor, &Tensor) -> candle_core::Result<KvRead> + 'a;

/// A span's keys and values for attention.
pub(super) enum KvRead {
    /// The sequence's own keys and values `[1, kv_heads, len, d]`, in order (a cache's append).
    InOrder(Tensor, Tensor),
    /// A paged pool's whole buffers and the slots of the sequence's positions, read in place
    /// (the same slots for every layer of a step, so shared).
    Paged(Tensor, Tensor, std::sync::Arc<[u32]>),
}

impl Llama {
    /// Whether the rows path can run this model here at all: quantized weights and our kernels
    /// on the CPU in f32, with a head size the attention kernel takes.
    pub(super) fn rows_path_available(&self, device: &candle_core::Device) -> bool {
        let d = self.cfg.head_dim;
        device.is_cpu()
            && self.cpu_rows
            && crate::quant::cpu_matmul::enabled()
            && self.embed.dtype() == DType::F32
            && d.is_multiple_of(8)
            && d <= 256
    }

    /// Whether `forward_rows_cpu` takes this pass: one sequence of fewer rows than a batched
    /// prefill, with a cache that neither observes attention nor positions keys itself (those
    /// need the generic path's weights and rotation hooks).
    pub(super) fn takes_cpu_rows(&self, ids: &Tensor, cache: &mut dyn KvCache) -> candle_core::Result<bool> {
        let (b, t) = ids.dims2()?;
        Ok(self.rows_path_available(ids.device())
            && b == 1
            && t < BATCHED_DEQUANT_MIN_ROWS
            && cache.attention_observer().is_none()
            && cache.key_positions().is_none())
    }

    /// Final-norm hidden states `[rows, hidden]` for `ids`, the rows of `spans` one after
    /// another (each `(first position, rows)`, one per sequence). The same function as
    /// `forward_generic`, to rounding; each row's arithmetic is independent of the other rows.
    pub(super) fn forward_rows_cpu(&self, ids: &[u32], spans: &[(usize, usize)], n_blocks: usize, append: &mut AppendKv) -> candle_core::Result<Vec<f32>> {
        use crate::models::cpu_attention::{attend_all, AttendJob, KeyRows, Strides};
        use crate::models::cpu_rows::{add, rms_norm, rope, silu_mul, values, with_slice};
        let (h, n_head, n_kv, d) = (self.cfg.hidden_size, self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim);
        let (rows, eps, inter) = (ids.len(), self.cfg.rms_norm_eps as f32, self.cfg.intermediate_size);
        if spans.iter().map(|s| s.1).sum::<usize>() != rows {
            candle_core::bail!("the spans cover a different number of rows than the {rows} ids");
        }
        let (q_w, kv_w) = (n_head * d, n_kv * d);
        let qkv_w = q_w + 2 * kv_w;
        let mut x = Vec::with_capacity(rows * h);
        self.embed.rows_into(ids, &mut x)?;
        // Each row's rows of the rotation tables, so row r rotates at its own position.
        let (cos, sin) = self.rope.tables();
        let (mut row_cos, mut row_sin) = (Vec::new(), Vec::new());
        for &(start, t) in spans {
            row_cos.extend(values(&cos.narrow(0, start, t)?)?);
            row_sin.extend(values(&sin.narrow(0, start, t)?)?);
        }
        let tables = (row_cos.as_slice(), row_sin.as_slice());
        let interleaved = self.cfg.rope_interleaved;
        let (mut hs, mut qkv, mut att, mut o, mut gate_up, mut mlp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let sparse = self.sparse_now();
        for (layer, blk) in self.blocks.iter().take(n_blocks).enumerate() {
            with_slice(&blk.input_norm.weight, |w| rms_norm(&x, w, eps, &mut hs))?;
            project_rows(sparse_site(&sparse, layer, Site::AttentionInput), &hs, &mut qkv, |x, out| blk.qkv.forward_rows(x, h, out))?;
            rope(&mut qkv, qkv_w, 0, n_head, d, 0, tables, interleaved);
            rope(&mut qkv, qkv_w, n_head, n_kv, d, 0, tables, interleaved);
            att.resize(rows * q_w, 0.0);
            // Every span's keys and values into its cache first, then one attention call for
            // all spans (one thread-pool dispatch per layer, not one per sequence).
            let mut reads = Vec::with_capacity(spans.len());
            let mut first = 0;
            for (span, &(_, t)) in spans.iter().enumerate() {
                // Keys and values `[1, n_kv, t, d]` for the cache, from the span's rows `[q | k | v]`.
                let span_rows = &qkv[first * qkv_w..(first + t) * qkv_w];
                let heads_of = |offset: usize| -> Vec<f32> {
                    (0..n_kv).flat_map(|g| (0..t).flat_map(move |r| span_rows[r * qkv_w + offset + g * d..][..d].iter().copied())).collect()
                };
                let k = Tensor::from_vec(heads_of(q_w), (1, n_kv, t, d), &candle_core::Device::Cpu)?;
                let v = Tensor::from_vec(heads_of(q_w + kv_w), (1, n_kv, t, d), &candle_core::Device::Cpu)?;
                reads.push((first, t, append(span, layer, &k, &v)?));
                first += t;
            }
            let jobs: Vec<AttendJob> = reads
                .iter()
                .map(|(first, t, read)| {
                    let (k, v, rows) = match read {
                        KvRead::InOrder(k, v) => (k, v, KeyRows::InOrder),
                        KvRead::Paged(k, v, slots) => (k, v, KeyRows::Slots(slots)),
                    };
                    AttendJob { q_offset: first * qkv_w, out_offset: first * q_w, q_len: *t, k, v, rows }
                })
                .collect();
            if !attend_all(&qkv, Strides { head: d, row: qkv_w }, n_head, &jobs, &mut att, Strides { head: d, row: q_w })? {
                candle_core::bail!("the CPU attention kernel refused this layer's keys");
            }
            project_rows(sparse_site(&sparse, layer, Site::AttentionOutput), &att, &mut o, |x, out| blk.o.forward_rows(x, q_w, out))?;
            add(&mut x, &o);
            with_slice(&blk.post_norm.weight, |w| rms_norm(&x, w, eps, &mut hs))?;
            project_rows(sparse_site(&sparse, layer, Site::MlpInput), &hs, &mut gate_up, |x, out| blk.gate_up.forward_rows(x, h, out))?;
            silu_mul(&gate_up, inter, &mut mlp);
            project_rows(sparse_site(&sparse, layer, Site::MlpHidden), &mlp, &mut o, |x, out| blk.down.forward_rows(x, inter, out))?;
            add(&mut x, &o);
        }
        with_slice(&self.norm.weight, |w| rms_norm(&x, w, eps, &mut hs))?;
        Ok(hs)
    }
}
