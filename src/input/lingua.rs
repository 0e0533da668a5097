//! `lingua:RATE`: loss-based prompt compression in the manner of LLMLingua (v1, Jiang et al.
//! 2023, token-level iterative compression). A small causal LM (the compressor: the target
//! model itself by default) scores every prompt token by its self-information
//! `-log p(x_i | kept prefix)`; tokens the model finds predictable carry little information
//! and are dropped. The prompt is cut into segments of `SEGMENT_TOKENS`; each segment is
//! scored conditioned on what was kept of the earlier segments (LLMLingua's iterative step,
//! which stops a dropped token's context from vouching for its neighbours), and in each
//! segment the `round(RATE x n)` tokens of highest loss are kept (at least one), ties going to
//! the earlier token. RATE is the share kept, as LLMLingua's `rate`: lingua:0.5 keeps half.
//!
//! Left out: LLMLingua's coarse demonstration-level budget controller (a prompt here is one
//! instruction, not a list of demonstrations) and LongLLMLingua's question-aware scoring.

use crate::engine::Engine;
use anyhow::Result;

/// LLMLingua's default `iterative_size`.
pub const SEGMENT_TOKENS: usize = 200;

/// What compression did to one prompt, in the compressor's tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Compression {
    /// The kept tokens, in order.
    pub ids: Vec<u32>,
    /// Every token's loss (nats; +inf for the first token, which has no context) and whether
    /// it was kept.
    pub losses: Vec<f64>,
    pub kept: Vec<bool>,
    /// (tokens, kept) per segment.
    pub segments: Vec<(usize, usize)>,
}

/// Compresses `ids` keeping the share `rate` of each segment of `segment` tokens.
pub fn compress(engine: &Engine, ids: &[u32], rate: f64, segment: usize) -> Result<Compression> {
    let mut out = Compression {
        ids: vec![],
        losses: vec![],
        kept: vec![],
        segments: vec![],
    };
    for chunk in ids.chunks(segment.max(1)) {
        let context = out.ids.len();
        let sequence: Vec<u32> = out.ids.iter().chain(chunk).copied().collect();
        // log_probs[i - 1] scores sequence[i].
        let log_probs = engine.token_log_probs(&sequence)?;
        let losses: Vec<f64> = (context..sequence.len())
            .map(|i| {
                if i == 0 {
                    f64::INFINITY
                } else {
                    -log_probs[i - 1]
                }
            })
            .collect();
        let kept = select(&losses, rate);
        out.ids.extend(
            chunk
                .iter()
                .zip(&kept)
                .filter(|(_, &k)| k)
                .map(|(&id, _)| id),
        );
        out.segments
            .push((chunk.len(), kept.iter().filter(|&&k| k).count()));
        out.losses.extend(losses);
        out.kept.extend(kept);
    }
    Ok(out)
}

/// Which tokens to keep: the `round(rate x n)` (at least one) of highest loss. Equal losses
/// go to the earlier token, so the choice is deterministic.
pub fn select(losses: &[f64], rate: f64) -> Vec<bool> {
    let n = losses.len();
    let keep = ((rate * n as f64).round() as usize).clamp(n.min(1), n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| losses[b].total_cmp(&losses[a]).then(a.cmp(&b)));
    let mut kept = vec![false; n];
    for &i in &order[..keep] {
        kept[i] = true;
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_keeps_the_highest_losses_and_the_rounded_count() {
        assert_eq!(
            select(&[1.0, 5.0, 2.0, 4.0], 0.5),
            vec![false, true, false, true]
        );
        // Ties go to the earlier token; at least one token is kept.
        assert_eq!(select(&[3.0, 3.0, 3.0], 0.34), vec![true, false, false]);
        assert_eq!(select(&[1.0, 2.0], 0.01), vec![false, true]);
        assert_eq!(select(&[], 0.5), Vec::<bool>::new());
        for n in 1..40 {
            let losses: Vec<f64> = (0..n).map(|i| ((i * 7919) % 13) as f64).collect();
            for rate in [0.1, 0.33, 0.5, 0.9] {
                let kept = select(&losses, rate).iter().filter(|&&k| k).count();
                assert!(
                    (kept as f64 - rate * n as f64).abs() <= 1.0,
                    "n {n} rate {rate}: kept {kept}"
                );
            }
        }
    }
}
