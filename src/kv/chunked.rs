//! Chunk summaries: the last `keep_last` tokens stay exact; each older chunk of `chunk` tokens
//! is replaced by one summary token, its mean key and mean value. Attention then gives a
//! summary the weight of one token (not of the `chunk` it stands for): the seed's
//! chunk-summary, kept as simple as it was proposed, so the quality cost measured is its own.
//!
//! Keys are summarised after RoPE (their rotations averaged), the only form a cache that
//! knows no architecture sees. The exact tail holds between `keep_last` and
//! `keep_last + chunk - 1` tokens; summaries grow by one per `chunk` tokens, so bytes grow
//! `chunk` times slower than the full cache's. A multi-token append (the prefill) attends over
//! everything it brings before it is summarised, as the window strategies do.

use super::{tensor_bytes, KvCache, KvKind, KvStats};
use candle_core::{Result, Tensor};

const SEQ_DIM: usize = 2;

#[derive(Clone, Default)]
struct Layer {
    /// `[b, h, n_summaries, d]` mean keys and values of the summarised chunks.
    summaries: Option<(Tensor, Tensor)>,
    /// The exact recent keys and values.
    tail: Option<(Tensor, Tensor)>,
}

impl Layer {
    fn tokens(&self) -> usize {
        let len = |p: &Option<(Tensor, Tensor)>| p.as_ref().map_or(0, |(k, _)| k.dim(SEQ_DIM).unwrap_or(0));
        len(&self.summaries) + len(&self.tail)
    }

    fn bytes(&self) -> u64 {
        [&self.summaries, &self.tail].into_iter().flatten().map(|(k, v)| tensor_bytes(k) + tensor_bytes(v)).sum()
    }
}

pub struct ChunkedCache {
    keep_last: usize,
    chunk: usize,
    layers: Vec<Layer>,
    positions: usize,
}

impl ChunkedCache {
    pub fn new(n_layers: usize, keep_last: usize, chunk: usize) -> Self {
        Self { keep_last, chunk, layers: vec![Layer::default(); n_layers], positions: 0 }
    }
}

fn cat_seq(a: Option<&Tensor>, b: &Tensor) -> Result<Tensor> {
    match a {
        None => b.contiguous(),
        Some(a) => Tensor::cat(&[a, b], SEQ_DIM),
    }
}

/// `[b, h, n * chunk, d]` -> `[b, h, n, d]`, the mean of each run of `chunk` tokens.
fn chunk_means(x: &Tensor, n: usize, chunk: usize) -> Result<Tensor> {
    let (b, h, _, d) = x.dims4()?;
    x.contiguous()?.reshape((b, h, n, chunk, d))?.mean(3)
}

impl KvCache for ChunkedCache {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (keep_last, chunk) = (self.keep_last, self.chunk);
        let slot = self.layers.get_mut(layer).ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        let tail = slot.tail.take();
        let (tk, tv) = (cat_seq(tail.as_ref().map(|p| &p.0), k)?, cat_seq(tail.as_ref().map(|p| &p.1), v)?);
        let out = match &slot.summaries {
            None => (tk.clone(), tv.clone()),
            Some((sk, sv)) => (Tensor::cat(&[sk, &tk], SEQ_DIM)?, Tensor::cat(&[sv, &tv], SEQ_DIM)?),
        };
        let len = tk.dim(SEQ_DIM)?;
        let n = len.saturating_sub(keep_last) / chunk;
        if n == 0 {
            slot.tail = Some((tk, tv));
        } else {
            let merged = n * chunk;
            let (mk, mv) = (chunk_means(&tk.narrow(SEQ_DIM, 0, merged)?, n, chunk)?, chunk_means(&tv.narrow(SEQ_DIM, 0, merged)?, n, chunk)?);
            slot.summaries = Some(match slot.summaries.take() {
                None => (mk, mv),
                Some((sk, sv)) => (Tensor::cat(&[&sk, &mk], SEQ_DIM)?, Tensor::cat(&[&sv, &mv], SEQ_DIM)?),
            });
            let rest = len - merged;
            slot.tail = Some((tk.narrow(SEQ_DIM, merged, rest)?.contiguous()?, tv.narrow(SEQ_DIM, merged, rest)?.contiguous()?));
        }
        if layer == 0 {
            self.positions += k.dim(SEQ_DIM)?;
        }
        Ok(out)
    }

    fn seq_len(&self) -> usize {
        self.positions
    }

    /// Rolls back only within the exact tail.
    fn truncate(&mut self, len: usize) -> Result<()> {
        let drop = self.positions.saturating_sub(len);
        if drop == 0 {
            return Ok(());
        }
        for layer in self.layers.iter_mut() {
            let Some((k, v)) = layer.tail.take() else { continue };
            let held = k.dim(SEQ_DIM)?;
            if drop > held {
                candle_core::bail!("chunked kv cache cannot roll back {drop} positions: only the last {held} are exact");
            }
            if held > drop {
                layer.tail = Some((k.narrow(SEQ_DIM, 0, held - drop)?, v.narrow(SEQ_DIM, 0, held - drop)?));
            }
        }
        self.positions = len;
        Ok(())
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = Layer::default());
        self.positions = 0;
    }

    /// Evictions count the tokens no longer held one by one (merged into summaries).
    fn stats(&self) -> KvStats {
        let tokens_held = self.layers.first().map_or(0, Layer::tokens);
        KvStats {
            kv_cache_bytes: self.layers.iter().map(Layer::bytes).sum(),
            tokens_held,
            evictions: self.positions.saturating_sub(tokens_held) as u64,
            ..KvStats::default()
        }
    }

    fn kind(&self) -> KvKind {
        KvKind::Chunked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kv::test_util::positions as kv;

    use crate::kv::test_util::values;

    #[test]
    fn summarises_old_chunks_by_their_mean_and_keeps_the_tail_exact() {
        let mut cache = ChunkedCache::new(1, 3, 2);
        let (k, _) = cache.append(0, &kv(8, 0.0), &kv(8, 0.0)).unwrap();
        assert_eq!(values(&k), [0., 1., 2., 3., 4., 5., 6., 7.], "the prefill attends over all it brings");
        // 8 tokens, keep 3 exact: 2 chunks of 2 merged (0,1 -> 0.5; 2,3 -> 2.5), tail 4..7.
        let (k, v) = cache.append(0, &kv(1, 8.0), &kv(1, 8.0)).unwrap();
        assert_eq!(values(&k), [0.5, 2.5, 4., 5., 6., 7., 8.]);
        assert_eq!(values(&v), values(&k));
        // Tail 4..8 is 5 >= 3 + 2: one more chunk (4,5) merged.
        let (k, _) = cache.append(0, &kv(1, 9.0), &kv(1, 9.0)).unwrap();
        assert_eq!(values(&k), [0.5, 2.5, 4.5, 6., 7., 8., 9.]);
        let stats = cache.stats();
        assert_eq!(cache.seq_len(), 10);
        assert_eq!((stats.tokens_held, stats.evictions, stats.kv_cache_bytes), (7, 3, 2 * 7 * 4));
    }
}
