//! DoLa (Chuang et al. 2024, "Decoding by Contrasting Layers") as transformers 4.55 implements
//! it (`_dola_decoding`, `_dola_select_contrast`, `_relative_top_filter` in
//! generation/utils.py; since 4.56 it lives in the Hub repo transformers-community/dola with
//! the same code): among candidate premature layers, the one whose next-token distribution is
//! furthest from the final layer's (Jensen-Shannon, as transformers computes it) is contrasted
//! with the final layer: log p_final - log p_premature over the tokens the final layer gives at
//! least a tenth of its top probability, minus infinity elsewhere. Premature logits are the LM
//! head applied to the layer's hidden state without the final norm, as transformers does.

/// Which layers DoLa may contrast with (`dola_layers`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DolaLayers {
    /// The lower half of the layers (every second one).
    Low,
    /// The upper half (every second one).
    High,
    /// Given layer indices (transformers' `hidden_states` numbering: 0 is the embeddings).
    List(Vec<usize>),
}

impl DolaLayers {
    pub fn name(&self) -> String {
        match self {
            Self::Low => "low".into(),
            Self::High => "high".into(),
            Self::List(l) => l.iter().map(usize::to_string).collect::<Vec<_>>().join("+"),
        }
    }

    /// transformers' candidate premature layers for a model of `n_layers` blocks: the
    /// embedding output (0) only when the head is not tied to it; beyond 40 layers, 20 layers
    /// at the bottom or top. A list keeps the indices below `n_layers`.
    pub fn candidates(&self, n_layers: usize, tied_embeddings: bool) -> Vec<usize> {
        let start = match (tied_embeddings, n_layers) {
            (false, _) => 0,
            (true, n) if n > 2 => 2,
            (true, 2) => 1,
            (true, _) => 0,
        };
        let half = n_layers / 2;
        match self {
            Self::Low if start == half => vec![start],
            Self::Low if n_layers <= 40 => (start..half).step_by(2).collect(),
            Self::Low => (start..20).step_by(2).collect(),
            Self::High if n_layers <= 40 => (half..n_layers).step_by(2).collect(),
            Self::High => (n_layers - 20..n_layers).step_by(2).collect(),
            Self::List(l) => l.iter().copied().filter(|&i| i < n_layers).collect(),
        }
    }
}

/// Relative-top filtering's ratio and the value filtered premature entries get (transformers'
/// defaults: 0.1 and -1e-3, i.e. minus one thousandth; filtered final entries get -inf).
const RELATIVE_TOP: f64 = 0.1;
const BASE_FILTER_VALUE: f32 = -1e-3;

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&x| (x - max).exp()).sum();
    let log_sum = sum.ln() + max;
    logits.iter().map(|&x| x - log_sum).collect()
}

/// transformers' per-layer "JS divergence": 0.5 (KL(M || p) + KL(M || q)) with M = (p + q) / 2,
/// each KL averaged (not summed) over the vocabulary, as `F.kl_div(log p, M).mean(-1)` is.
fn js_divergence(final_log: &[f32], premature_log: &[f32]) -> f64 {
    let n = final_log.len() as f64;
    let (mut kl1, mut kl2) = (0.0f64, 0.0f64);
    for (&lp, &lq) in final_log.iter().zip(premature_log) {
        let m = 0.5 * (lp.exp() as f64 + lq.exp() as f64);
        if m > 0.0 {
            kl1 += m * (m.ln() - lp as f64);
            kl2 += m * (m.ln() - lq as f64);
        }
    }
    0.5 * (kl1 / n + kl2 / n)
}

/// The index in `premature` of the candidate with the largest divergence from the final
/// distribution (`final_log` its log-softmax); with one candidate it is taken without it.
fn select(final_log: &[f32], premature: &[Vec<f32>]) -> usize {
    if premature.len() == 1 {
        return 0;
    }
    let js: Vec<f64> = premature
        .iter()
        .map(|q| js_divergence(final_log, &log_softmax(q)))
        .collect();
    // torch.argmax: the first of equal maxima.
    (0..js.len()).fold(0, |best, i| if js[i] > js[best] { i } else { best })
}

/// The contrast logits of one position and the premature layer chosen: `final_logits` are the
/// model's own (after the final norm), `premature[i]` the head's logits of `candidates[i]`.
pub fn contrast(
    final_logits: &[f32],
    premature: &[Vec<f32>],
    candidates: &[usize],
) -> (Vec<f32>, usize) {
    let final_log = log_softmax(final_logits);
    let chosen = select(&final_log, premature);
    let base_log = log_softmax(&premature[chosen]);
    let top = final_log.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let threshold = (top as f64 + RELATIVE_TOP.ln()) as f32;
    let out = final_log
        .iter()
        .zip(&base_log)
        .map(|(&f, &b)| {
            if f < threshold {
                f32::NEG_INFINITY - BASE_FILTER_VALUE
            } else {
                f - b
            }
        })
        .collect();
    (out, candidates[chosen])
}

/// The contrast without the relative-top filter (the SLED authors' TruthfulQA scoring runs DoLa
/// with `relative_top` 0: the filter's -inf would make every filtered answer -inf):
/// log_softmax(final) - log_softmax(the most divergent candidate).
pub fn contrast_unfiltered(final_logits: &[f32], premature: &[Vec<f32>]) -> Vec<f32> {
    let final_log = log_softmax(final_logits);
    let base_log = log_softmax(&premature[select(&final_log, premature)]);
    final_log.iter().zip(&base_log).map(|(f, b)| f - b).collect()
}

/// transformers warns (at info level, as an invalid-flag note) when DoLa runs with a
/// repetition penalty below 1.2; the paper and the docs recommend 1.2.
pub const RECOMMENDED_REPETITION_PENALTY: f32 = 1.2;

/// The warning transformers gives DoLa with a repetition penalty below the recommended one.
pub fn warn_if_low_penalty(repetition_penalty: f32) {
    if repetition_penalty < RECOMMENDED_REPETITION_PENALTY {
        tracing::warn!(
            "dola with --repetition-penalty {repetition_penalty}: DoLa's authors and transformers recommend 1.2, below it DoLa tends to repeat itself"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_transformers_buckets() {
        assert_eq!(
            DolaLayers::Low.candidates(32, false),
            (0..16).step_by(2).collect::<Vec<_>>()
        );
        assert_eq!(
            DolaLayers::High.candidates(32, false),
            (16..32).step_by(2).collect::<Vec<_>>()
        );
        assert_eq!(DolaLayers::Low.candidates(24, true), [2, 4, 6, 8, 10]);
        assert_eq!(
            DolaLayers::High.candidates(30, true),
            [15, 17, 19, 21, 23, 25, 27, 29]
        );
        assert_eq!(
            DolaLayers::High.candidates(80, false),
            (60..80).step_by(2).collect::<Vec<_>>()
        );
        assert_eq!(
            DolaLayers::Low.candidates(80, false),
            (0..20).step_by(2).collect::<Vec<_>>()
        );
        assert_eq!(DolaLayers::Low.candidates(4, true), [2]);
        assert_eq!(DolaLayers::List(vec![1, 3, 9]).candidates(4, true), [1, 3]);
    }

    #[test]
    fn contrast_keeps_the_relative_top_and_subtracts_the_chosen_layer() {
        let final_logits = [2.0f32, 1.0, -3.0, 0.0];
        // Layer 5 equals the final layer (divergence 0); layer 7 differs: it is chosen.
        let premature = vec![final_logits.to_vec(), vec![0.0, 2.0, 0.0, 0.0]];
        let (out, layer) = contrast(&final_logits, &premature, &[5, 7]);
        assert_eq!(layer, 7);
        let lf = log_softmax(&final_logits);
        let lb = log_softmax(&premature[1]);
        // p(2) = e^-5 p(0) is below a tenth of p(0): filtered; p(3) = e^-2 p(0) = 0.135 p(0) is kept.
        for i in [0, 1, 3] {
            assert!((out[i] - (lf[i] - lb[i])).abs() < 1e-6, "{i}");
        }
        assert_eq!(out[2], f32::NEG_INFINITY);
    }
}
