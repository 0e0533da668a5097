//! BLEU (Papineni et al. 2002) exactly as sacrebleu 2.x computes it (sacrebleu/metrics/bleu.py):
//! `13a` tokens, n-grams of order 1-4 clipped by the reference counts (the largest count over
//! the references), the closest reference length, brevity penalty, and the `exp` smoothing of
//! mteval-v13a (Chen and Cherry 2014, method 3). Corpus BLEU sums the statistics of all segments
//! first (sacrebleu's `corpus_score`); sentence BLEU scores one segment with the effective order
//! (orders the hypothesis has no n-gram of left out), as `sacrebleu.sentence_bleu` does.

use super::ngrams::add_ngrams;
use super::text_tokenize::{py_rstrip, tokenize_13a};
use std::collections::HashMap;

const MAX_ORDER: usize = 4;
/// The sacrebleu release whose arithmetic this reproduces (its signature's `version`).
pub const SACREBLEU_VERSION: &str = "2.6.0";

/// A BLEU score on sacrebleu's 0-100 scale, with its statistics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BleuScore {
    pub score: f64,
    /// Clipped n-gram matches and hypothesis n-grams, orders 1-4.
    pub counts: [usize; MAX_ORDER],
    pub totals: [usize; MAX_ORDER],
    /// Percent precisions after smoothing.
    pub precisions: [f64; MAX_ORDER],
    pub brevity_penalty: f64,
    pub sys_len: usize,
    pub ref_len: usize,
}

/// One segment's sufficient statistics.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    sys_len: usize,
    ref_len: usize,
    correct: [usize; MAX_ORDER],
    total: [usize; MAX_ORDER],
}

/// sacrebleu's BLEU with its defaults (`tok:13a`, `smooth:exp`), optionally lowercased.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bleu {
    pub lowercase: bool,
}

impl Bleu {
    /// Corpus BLEU of `hypotheses` against one reference each.
    pub fn corpus(&self, hypotheses: &[&str], references: &[&str]) -> BleuScore {
        let mut sum = Stats::default();
        for (h, r) in hypotheses.iter().zip(references) {
            let s = self.segment(h, std::slice::from_ref(r));
            sum.sys_len += s.sys_len;
            sum.ref_len += s.ref_len;
            for n in 0..MAX_ORDER {
                sum.correct[n] += s.correct[n];
                sum.total[n] += s.total[n];
            }
        }
        compute(sum, false)
    }

    /// Sentence BLEU of one hypothesis against its references (effective order).
    pub fn sentence(&self, hypothesis: &str, references: &[&str]) -> BleuScore {
        compute(self.segment(hypothesis, references), true)
    }

    /// sacrebleu's signature of this configuration (`effective` for sentence scores).
    pub fn signature(&self, effective: bool, nrefs: usize) -> String {
        let case = if self.lowercase { "lc" } else { "mixed" };
        let eff = if effective { "yes" } else { "no" };
        format!(
            "nrefs:{nrefs}|case:{case}|eff:{eff}|tok:13a|smooth:exp|version:{SACREBLEU_VERSION}"
        )
    }

    fn tokens(&self, text: &str) -> Vec<String> {
        let text = py_rstrip(text);
        if self.lowercase {
            tokenize_13a(&text.to_lowercase())
        } else {
            tokenize_13a(text)
        }
    }

    fn segment(&self, hypothesis: &str, references: &[&str]) -> Stats {
        let hyp = self.tokens(hypothesis);
        let mut ref_counts: HashMap<&[String], usize> = HashMap::new();
        let refs: Vec<Vec<String>> = references.iter().map(|r| self.tokens(r)).collect();
        for r in &refs {
            for (gram, count) in ngram_counts(r) {
                let max = ref_counts.entry(gram).or_insert(0);
                *max = (*max).max(count);
            }
        }
        let mut stats = Stats {
            sys_len: hyp.len(),
            ref_len: closest_ref_len(hyp.len(), refs.iter().map(Vec::len)),
            ..Stats::default()
        };
        for (gram, count) in ngram_counts(&hyp) {
            let n = gram.len() - 1;
            stats.total[n] += count;
            stats.correct[n] += count.min(ref_counts.get(gram).copied().unwrap_or(0));
        }
        stats
    }
}

/// Counts of every n-gram of order 1-4.
fn ngram_counts(tokens: &[String]) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        add_ngrams(&mut counts, tokens, n);
    }
    counts
}

/// The reference length closest to the hypothesis's; the shorter one on a tie.
fn closest_ref_len(hyp_len: usize, ref_lens: impl Iterator<Item = usize>) -> usize {
    ref_lens
        .min_by_key(|&r| (r.abs_diff(hyp_len), r))
        .unwrap_or(0)
}

/// sacrebleu's `compute_bleu` with `smooth_method='exp'`.
fn compute(s: Stats, effective_order: bool) -> BleuScore {
    let bp = if s.sys_len < s.ref_len {
        if s.sys_len > 0 {
            (1.0 - s.ref_len as f64 / s.sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0; MAX_ORDER];
    let mut score = 0.0;
    if s.correct.iter().any(|&c| c > 0) {
        let mut smooth = 1.0;
        let mut eff_order = MAX_ORDER;
        for n in 0..MAX_ORDER {
            if s.total[n] == 0 {
                break;
            }
            if effective_order {
                eff_order = n + 1;
            }
            precisions[n] = if s.correct[n] == 0 {
                smooth *= 2.0;
                100.0 / (smooth * s.total[n] as f64)
            } else {
                100.0 * s.correct[n] as f64 / s.total[n] as f64
            };
        }
        // sacrebleu's my_log: log(0) floored at -9999999999.
        let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
        score = bp
            * (precisions[..eff_order].iter().map(|&p| log(p)).sum::<f64>() / eff_order as f64)
                .exp();
    }
    BleuScore {
        score,
        counts: s.correct,
        totals: s.total,
        precisions,
        brevity_penalty: bp,
        sys_len: s.sys_len,
        ref_len: s.ref_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_text_scores_100_and_disjoint_text_0() {
        let b = Bleu::default();
        let s = b.sentence("the cat sat on the mat", &["the cat sat on the mat"]);
        assert!((s.score - 100.0).abs() < 1e-9, "{s:?}");
        assert_eq!(b.sentence("dogs bark", &["the cat sat"]).score, 0.0);
        assert_eq!(b.corpus(&[""], &["a b"]).score, 0.0);
    }

    /// By hand: "the cat sat" against "the cat sat on the mat": precisions 3/3, 2/2, 1/1 (order
    /// 4 has no n-gram: effective order 3), brevity penalty exp(1 - 6/3) = e^-1: 36.79.
    #[test]
    fn short_hypothesis_pays_the_brevity_penalty() {
        let s = Bleu::default().sentence("the cat sat", &["the cat sat on the mat"]);
        assert!((s.score - 100.0 * (-1f64).exp()).abs() < 1e-9, "{s:?}");
        assert_eq!((s.sys_len, s.ref_len), (3, 6));
    }

    #[test]
    fn signature_names_the_configuration() {
        assert_eq!(
            Bleu::default().signature(false, 1),
            "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
        );
        assert_eq!(
            Bleu { lowercase: true }.signature(true, 1),
            "nrefs:1|case:lc|eff:yes|tok:13a|smooth:exp|version:2.6.0"
        );
    }
}
