//! chrF (Popović 2015) and chrF++ (Popović 2017) exactly as sacrebleu 2.x computes them
//! (sacrebleu/metrics/chrf.py): character n-grams of order 1-6 over the text with its whitespace
//! removed, plus (chrF++) word n-grams of order 1-2 over words with a leading or trailing ASCII
//! punctuation mark split off; per order the hypothesis, reference and clipped match counts; the
//! F-beta (beta 2) of the precisions and recalls averaged over the orders both sides have
//! ("effective order"). Corpus scores sum the statistics of all segments first. Characters are
//! Unicode scalar values, as Python's are code points.

use super::bleu::SACREBLEU_VERSION;
use super::ngrams::ngram_counts;
use super::text_tokenize::py_split;
use std::hash::Hash;

const CHAR_ORDER: usize = 6;
const BETA: f64 = 2.0;
/// The punctuation chrF++ splits off words (Python's `string.punctuation`).
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// A chrF score on sacrebleu's 0-100 scale.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ChrfScore {
    pub score: f64,
}

/// sacrebleu's CHRF: `word_order` 0 is chrF, 2 is chrF++.
#[derive(Debug, Clone, Copy)]
pub struct Chrf {
    pub word_order: usize,
    pub lowercase: bool,
}

impl Chrf {
    pub const CHRF: Self = Self {
        word_order: 0,
        lowercase: false,
    };
    pub const CHRF_PLUS_PLUS: Self = Self {
        word_order: 2,
        lowercase: false,
    };

    pub fn corpus(&self, hypotheses: &[&str], references: &[&str]) -> ChrfScore {
        let mut sum = vec![[0usize; 3]; CHAR_ORDER + self.word_order];
        for (h, r) in hypotheses.iter().zip(references) {
            for (total, s) in sum.iter_mut().zip(self.segment(h, r)) {
                for i in 0..3 {
                    total[i] += s[i];
                }
            }
        }
        ChrfScore {
            score: f_score(&sum),
        }
    }

    pub fn sentence(&self, hypothesis: &str, reference: &str) -> ChrfScore {
        ChrfScore {
            score: f_score(&self.segment(hypothesis, reference)),
        }
    }

    /// sacrebleu's signature of this configuration.
    pub fn signature(&self, nrefs: usize) -> String {
        let case = if self.lowercase { "lc" } else { "mixed" };
        format!("nrefs:{nrefs}|case:{case}|eff:yes|nc:{CHAR_ORDER}|nw:{}|space:no|version:{SACREBLEU_VERSION}", self.word_order)
    }

    /// Per order (characters 1-6, then words 1-word_order): hypothesis n-grams (0 where the
    /// reference has none of that order), reference n-grams, clipped matches.
    fn segment(&self, hypothesis: &str, reference: &str) -> Vec<[usize; 3]> {
        let (h, r) = if self.lowercase {
            (hypothesis.to_lowercase(), reference.to_lowercase())
        } else {
            (hypothesis.to_string(), reference.to_string())
        };
        let chars = |s: &str| -> Vec<char> { py_split(s).flat_map(str::chars).collect() };
        let (hc, rc) = (chars(&h), chars(&r));
        let mut stats: Vec<[usize; 3]> =
            (1..=CHAR_ORDER).map(|n| match_stats(&hc, &rc, n)).collect();
        if self.word_order > 0 {
            let (hw, rw) = (split_punctuation(&h), split_punctuation(&r));
            stats.extend((1..=self.word_order).map(|n| match_stats(&hw, &rw, n)));
        }
        stats
    }
}

fn match_stats<T: Hash + Eq>(hyp: &[T], reference: &[T], n: usize) -> [usize; 3] {
    let (h, r) = (ngram_counts(hyp, n), ngram_counts(reference, n));
    let ref_total: usize = r.values().sum();
    let hyp_total: usize = h.values().sum();
    let matches: usize = h
        .iter()
        .map(|(g, &c)| c.min(r.get(g).copied().unwrap_or(0)))
        .sum();
    [if r.is_empty() { 0 } else { hyp_total }, ref_total, matches]
}

/// chrF++'s words: a word of more than one character loses a trailing punctuation mark, or
/// else a leading one, as a separate word (sacrebleu's `_remove_punctuation`).
fn split_punctuation(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in py_split(s) {
        let chars: Vec<char> = w.chars().collect();
        let (first, last) = (chars[0], chars[chars.len() - 1]);
        if chars.len() == 1 {
            out.push(w.to_string());
        } else if PUNCTUATION.contains(last) {
            out.push(chars[..chars.len() - 1].iter().collect());
            out.push(last.to_string());
        } else if PUNCTUATION.contains(first) {
            out.push(first.to_string());
            out.push(chars[1..].iter().collect());
        } else {
            out.push(w.to_string());
        }
    }
    out
}

/// sacrebleu's `_compute_f_score` without eps smoothing (its default).
fn f_score(stats: &[[usize; 3]]) -> f64 {
    let factor = BETA * BETA;
    let (mut prec, mut rec, mut orders) = (0.0, 0.0, 0usize);
    for &[n_hyp, n_ref, n_match] in stats {
        if n_hyp > 0 && n_ref > 0 {
            prec += n_match as f64 / n_hyp as f64;
            rec += n_match as f64 / n_ref as f64;
            orders += 1;
        }
    }
    if orders == 0 {
        return 0.0;
    }
    let (p, r) = (prec / orders as f64, rec / orders as f64);
    if p + r > 0.0 {
        100.0 * (1.0 + factor) * p * r / (factor * p + r)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_text_scores_100_and_empty_0() {
        assert!((Chrf::CHRF.sentence("a cat", "a cat").score - 100.0).abs() < 1e-9);
        assert!((Chrf::CHRF_PLUS_PLUS.sentence("a cat.", "a cat.").score - 100.0).abs() < 1e-9);
        assert_eq!(Chrf::CHRF.sentence("", "a cat").score, 0.0);
    }

    #[test]
    fn chrf_plus_plus_splits_edge_punctuation() {
        assert_eq!(
            split_punctuation("(hi) end. a ,x"),
            ["(hi", ")", "end", ".", "a", ",", "x"]
        );
    }

    #[test]
    fn signature_names_the_orders() {
        assert_eq!(
            Chrf::CHRF_PLUS_PLUS.signature(1),
            "nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0"
        );
    }
}
