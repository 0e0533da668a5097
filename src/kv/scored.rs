//! What the score-based evictions (H2O, CAKE) share: attention weights folded per key/value
//! head, and a per-head selection that keeps the best-scored old tokens plus the recent ones.
//!
//! Selection is per key/value head, as in both papers (each head keeps its own heavy
//! hitters); every head keeps the same number of tokens, so the cache stays one tensor.

use candle_core::{Result, Tensor};

pub const SEQ_DIM: usize = 2;

/// Appends to what a layer holds and keeps all of it until `observe` decides what to evict
/// (H2O and CAKE score this step's attention over everything first).
pub fn grow_held(held: &mut Option<(Tensor, Tensor)>, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
    let (k, v) = super::grow(held.take(), k, v)?;
    *held = Some((k.clone(), v.clone()));
    Ok((k, v))
}

/// `attn: [1, heads, q, kv]` -> `[n_kv][kv]`: the weights summed over queries (`sum`) or
/// averaged (`!sum`), then averaged over the query heads that share each key/value head
/// (GQA puts them next to each other: head = kv_head * rep + r).
pub fn per_kv_head(attn: &Tensor, n_kv: usize, sum: bool) -> Result<Vec<Vec<f32>>> {
    let (_, heads, _, kv) = attn.dims4()?;
    let folded = if sum { attn.sum(2)? } else { attn.mean(2)? };
    folded.reshape((n_kv, heads / n_kv, kv))?.mean(1)?.to_vec2::<f32>()
}

/// Indices (ascending) of the `n` largest of `scores[..candidates]`, then `candidates..len`.
pub fn keep_indices(scores: &[f32], candidates: usize, n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..candidates as u32).collect();
    let n = n.min(candidates);
    if n < candidates {
        // Largest first; ties go to the earlier token so results are deterministic.
        order.select_nth_unstable_by(n, |&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
        order.truncate(n);
    }
    order.sort_unstable();
    order.extend(candidates as u32..scores.len() as u32);
    order
}

/// `x: [1, n_kv, len, d]` keeping, for each head, the tokens `keep[head]` (same length each).
pub fn gather_per_head(x: &Tensor, keep: &[Vec<u32>]) -> Result<Tensor> {
    let parts = keep
        .iter()
        .enumerate()
        .map(|(h, idx)| {
            let idx = Tensor::new(idx.as_slice(), x.device())?;
            x.narrow(1, h, 1)?.index_select(&idx, SEQ_DIM)
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 1)?.contiguous()
}

/// Applies a per-head selection to per-head scores.
pub fn keep_scores(scores: &mut [Vec<f32>], keep: &[Vec<u32>]) {
    for (s, idx) in scores.iter_mut().zip(keep) {
        *s = idx.iter().map(|&i| s[i as usize]).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn keeps_the_best_old_tokens_in_order_plus_the_recent_ones() {
        let scores = [0.1, 0.9, 0.3, 0.8, 0.0, 0.5];
        assert_eq!(keep_indices(&scores, 4, 2), [1, 3, 4, 5]);
        assert_eq!(keep_indices(&scores, 4, 9), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn folds_query_heads_onto_their_kv_head_and_gathers_per_head() {
        // 4 query heads on 2 kv heads, 1 query, 3 keys.
        let attn = Tensor::new(&[[[[1f32, 0., 0.]], [[0., 1., 0.]], [[0., 0., 1.]], [[0., 0., 1.]]]], &Device::Cpu).unwrap();
        let folded = per_kv_head(&attn, 2, true).unwrap();
        assert_eq!(folded, vec![vec![0.5, 0.5, 0.0], vec![0.0, 0.0, 1.0]]);
        let x = Tensor::arange(0f32, 6., &Device::Cpu).unwrap().reshape((1, 2, 3, 1)).unwrap();
        let kept = gather_per_head(&x, &[vec![0, 2], vec![1, 2]]).unwrap();
        assert_eq!(kept.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0., 2., 4., 5.]);
    }
}
