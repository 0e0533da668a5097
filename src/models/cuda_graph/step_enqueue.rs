//! One decode step's launches, in order (`Inner::enqueue`, captured into `cuda.rs`'s graph), and
//! their names for the trace: a child module of `cuda.rs`, which owns the decoder's state.

use super::*;

impl Inner {
    /// Queues one decode step on the decoder's stream.
    pub(super) fn enqueue(&self, cache: &[u64], capacity: usize) -> Result<()> {
        let s = self.shape;
        let st = &self.stream;
        let b = &self.buffers;
        let scratch = self.scratch.as_ref().ok_or_else(|| wrap("no attention scratch"))?;
        let run = Launcher { stream: st, choice: &self.choice };
        let (params, q, act, logits) = (ptr(&b.params, st)?, ptr(&b.q, st)?, ptr(&b.act, st)?, ptr(&b.logits, st)?);
        let xs = [ptr(&b.x[0], st)?, ptr(&b.x[1], st)?];
        let mlp_acc = ptr(&b.zeroed, st)?;
        let partial = ptr(&scratch.partial, st)?;
        let w = &self.weights;
        let (cos, sin) = (ptr(&w.cos, st)?, ptr(&w.sin, st)?);
        let (hidden, n_head, n_kv, d) = (s.hidden as i32, s.n_head as i32, s.n_kv as i32, s.head_dim as i32);
        let (capacity_i, max_splits) = (capacity as i32, capacity.div_ceil(SPLIT) as i32);
        let attention_early = self.choice.attention_loads_early as i32;
        // GemvArgs::combine_early: 0 after the wait, 1 early, 2 early and staged, where the stage
        // for every split count this cache can reach is small enough (STAGED_COMBINE_BYTES).
        let combine_early = match self.choice.combine {
            CombineChoice::AfterWait => 0,
            CombineChoice::Early => 1,
            CombineChoice::Staged if combine_shared_bytes(max_splits, n_head, n_head * d, true) as usize <= STAGED_COMBINE_BYTES => 2,
            CombineChoice::Staged => 1,
        };
        let inv_sqrt_d = 1f32 / (s.head_dim as f32).sqrt();
        let shape_args = GemvArgs {
            params,
            cos,
            sin,
            n_head,
            n_kv,
            head_dim: d,
            capacity: capacity_i,
            interleaved: i32::from(s.interleaved),
            attn_splits: max_splits,
            combine_early,
            eps: s.eps,
            ..GemvArgs::default()
        };
        // Each launch's trace slot in launch order (0, recording nothing, when not tracing).
        let mut launches = 0;
        let mut slot = || -> Result<u64> {
            launches += 1;
            self.trace.as_ref().map_or(Ok(0), |t| t.slot(launches - 1, st))
        };
        let embed = ptr(&w.embed, st)?;
        // The embedding row into x[0] (block 0); every block zeroes its share of the MLP sums.
        let acc4 = (b.zeroed.elem_count() / 4) as i32;
        let embed_blocks = (acc4 as u32).div_ceil(EMBED_THREADS).clamp(1, 64);
        let embed_cfg = LaunchConfig { grid_dim: (embed_blocks, 1, 1), block_dim: (EMBED_THREADS, 1, 1), shared_mem_bytes: 0 };
        let embed_slot = slot()?;
        unsafe { st.launch_builder(&self.embed).arg(&embed).arg(&params).arg(&xs[0]).arg(&hidden).arg(&mlp_acc).arg(&acc4).arg(&embed_slot).launch(embed_cfg) }
            .map_err(wrap)?;
        let heads = LaunchConfig { grid_dim: (s.n_head as u32, max_splits as u32, 1), block_dim: (SPLIT as u32, 1, 1), shared_mem_bytes: 0 };
        // The residual stream's buffer (index into xs), and the fused MLP sum not yet added to it.
        let mut x = 0;
        let mut pending = None;
        for (l, ops) in self.layers.iter().enumerate() {
            let (kc, vc) = (cache[2 * l], cache[2 * l + 1]);
            let acc = mlp_acc + (4 * l * s.hidden) as u64;
            let rope = GemvArgs { k_cache: kc, v_cache: vc, trace: slot()?, ..shape_args };
            match pending.take() {
                None => run.gemv(&ops.qkv, rope, (PRO_NORM, xs[x], ops.input_norm), (EPI_ROPE, q))?,
                Some(acc) => {
                    let with_pending = GemvArgs { pending: acc, resid_out: xs[1 - x], ..rope };
                    run.gemv(&ops.qkv, with_pending, (PRO_NORM_PENDING, xs[x], ops.input_norm), (EPI_ROPE, q))?;
                    x = 1 - x;
                }
            }
            let attention_slot = slot()?;
            let mut attention_args = [
                arg(&q), arg(&kc), arg(&vc), arg(&params), arg(&partial),
                arg(&n_head), arg(&n_kv), arg(&d), arg(&capacity_i), arg(&inv_sqrt_d), arg(&max_splits), arg(&attention_early),
                arg(&attention_slot),
            ];
            launch_after_previous(&self.stream, &self.attention, heads, &mut attention_args)?;
            let o = (PRO_COMBINE, partial, 0);
            let mlp_in = (PRO_NORM, xs[x], ops.post_norm);
            match &ops.mlp {
                Mlp::Fused(p) => {
                    run.gemv(&ops.o, GemvArgs { trace: slot()?, ..shape_args }, o, (EPI_RESIDUAL, xs[x]))?;
                    run.gemv(p, GemvArgs { acc, trace: slot()?, ..shape_args }, mlp_in, (EPI_SILU, 0))?;
                    pending = Some(acc);
                }
                Mlp::Split { gate_up, down } => {
                    run.gemv(&ops.o, GemvArgs { trace: slot()?, ..shape_args }, o, (EPI_RESIDUAL, xs[x]))?;
                    run.gemv(gate_up, GemvArgs { trace: slot()?, ..shape_args }, mlp_in, (EPI_SILU, act))?;
                    run.gemv(down, GemvArgs { trace: slot()?, ..shape_args }, (PRO_PLAIN, act, 0), (EPI_RESIDUAL, xs[x]))?;
                }
            }
        }
        let final_norm = ptr(&w.final_norm, st)?;
        let head = GemvArgs { trace: slot()?, ..shape_args };
        match pending {
            None => run.gemv(&self.head, head, (PRO_NORM, xs[x], final_norm), (EPI_LOGITS, logits))?,
            Some(acc) => run.gemv(&self.head, GemvArgs { pending: acc, ..head }, (PRO_NORM_PENDING, xs[x], final_norm), (EPI_LOGITS, logits))?,
        }
        // The greedy token, in every step (a few microseconds), so that one graph serves
        // greedy and sampled decoding alike.
        let (token, vocab, argmax_slot) = (ptr(&b.token, st)?, s.vocab as i32, slot()?);
        let one_block = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (ARGMAX_THREADS, 1, 1), shared_mem_bytes: 0 };
        let host_picks = if self.choice.replay_direct { self.picks.device_words() } else { 0 };
        launch_after_previous(
            &self.stream,
            &self.argmax,
            one_block,
            &mut [arg(&logits), arg(&vocab), arg(&token), arg(&params), arg(&host_picks), arg(&argmax_slot)],
        )
    }

    /// One step's launches in `enqueue`'s order, named for the trace: embed, then per layer qkv,
    /// attention, o and the MLP's one or two launches, then head and the greedy token.
    pub(super) fn launch_names(&self) -> Vec<String> {
        let mut names = vec!["embed".to_string()];
        for (l, ops) in self.layers.iter().enumerate() {
            names.extend(["qkv", "attention", "o"].map(|k| format!("{l}.{k}")));
            match &ops.mlp {
                Mlp::Fused(_) => names.push(format!("{l}.mlp")),
                Mlp::Split { .. } => names.extend(["gate_up", "down"].map(|k| format!("{l}.{k}"))),
            }
        }
        names.extend(["head".into(), "argmax".into()]);
        names
    }
}
