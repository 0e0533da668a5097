//! ROUGE (Lin 2004) exactly as Google's rouge-score computes it (rouge_score/rouge_scorer.py):
//! ROUGE-1 and ROUGE-2 from clipped n-gram overlaps, ROUGE-L from the longest common
//! subsequence of the two token lists, ROUGE-Lsum from the union LCS of each reference sentence
//! against every candidate sentence (sentences are the text's newline-separated lines, as
//! rouge-score splits them without `split_summaries`). Tokens: `text_tokenize::tokenize_rouge`.
//! A corpus score is the mean of the pairs' scores (what rouge-score's BootstrapAggregator
//! estimates by resampling; here exact).

use super::ngrams::ngram_counts;
use super::text_tokenize::tokenize_rouge;
use std::collections::HashMap;

/// Precision, recall and F1 of one ROUGE type.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RougeScore {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl RougeScore {
    fn new(precision: f64, recall: f64) -> Self {
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Self {
            precision,
            recall,
            fmeasure,
        }
    }

    /// The mean of each field over `scores` (zero for none).
    pub fn mean(scores: impl Iterator<Item = Self>) -> Self {
        let (mut sum, mut n) = (Self::default(), 0usize);
        for s in scores {
            sum.precision += s.precision;
            sum.recall += s.recall;
            sum.fmeasure += s.fmeasure;
            n += 1;
        }
        if n == 0 {
            return sum;
        }
        let n = n as f64;
        Self {
            precision: sum.precision / n,
            recall: sum.recall / n,
            fmeasure: sum.fmeasure / n,
        }
    }
}

/// The four ROUGE types of one (prediction, target) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RougeScores {
    pub rouge1: RougeScore,
    pub rouge2: RougeScore,
    #[serde(rename = "rougeL")]
    pub rouge_l: RougeScore,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: RougeScore,
}

/// rouge-score's `RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=stem)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rouge {
    pub stem: bool,
}

impl Rouge {
    /// Scores `prediction` against `target` (rouge-score's argument order is target first).
    pub fn score(&self, target: &str, prediction: &str) -> RougeScores {
        let t = tokenize_rouge(target, self.stem);
        let p = tokenize_rouge(prediction, self.stem);
        let sentences = |text: &str| -> Vec<Vec<String>> {
            text.split('\n')
                .filter(|s| !s.is_empty())
                .map(|s| tokenize_rouge(s, self.stem))
                .collect()
        };
        RougeScores {
            rouge1: ngram_score(&t, &p, 1),
            rouge2: ngram_score(&t, &p, 2),
            rouge_l: lcs_score(&t, &p),
            rouge_lsum: summary_lcs_score(&sentences(target), &sentences(prediction)),
        }
    }

    /// The mean of each type over the pairs.
    pub fn corpus(&self, targets: &[&str], predictions: &[&str]) -> RougeScores {
        let all: Vec<RougeScores> = targets
            .iter()
            .zip(predictions)
            .map(|(t, p)| self.score(t, p))
            .collect();
        RougeScores {
            rouge1: RougeScore::mean(all.iter().map(|s| s.rouge1)),
            rouge2: RougeScore::mean(all.iter().map(|s| s.rouge2)),
            rouge_l: RougeScore::mean(all.iter().map(|s| s.rouge_l)),
            rouge_lsum: RougeScore::mean(all.iter().map(|s| s.rouge_lsum)),
        }
    }
}

fn ngram_score(target: &[String], prediction: &[String], n: usize) -> RougeScore {
    let (t, p) = (ngram_counts(target, n), ngram_counts(prediction, n));
    let overlap: usize = t
        .iter()
        .map(|(g, &c)| c.min(p.get(g).copied().unwrap_or(0)))
        .sum();
    let (t_total, p_total): (usize, usize) = (t.values().sum(), p.values().sum());
    RougeScore::new(
        overlap as f64 / p_total.max(1) as f64,
        overlap as f64 / t_total.max(1) as f64,
    )
}

/// The LCS length table of `a` (rows) and `b` (columns).
fn lcs_table(a: &[String], b: &[String]) -> Vec<Vec<usize>> {
    let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i][j] = if a[i - 1] == b[j - 1] {
                t[i - 1][j - 1] + 1
            } else {
                t[i - 1][j].max(t[i][j - 1])
            };
        }
    }
    t
}

fn lcs_score(target: &[String], prediction: &[String]) -> RougeScore {
    if target.is_empty() || prediction.is_empty() {
        return RougeScore::default();
    }
    let lcs = lcs_table(target, prediction)[target.len()][prediction.len()];
    RougeScore::new(
        lcs as f64 / prediction.len() as f64,
        lcs as f64 / target.len() as f64,
    )
}

/// Indices into `a` of one LCS with `b`, read back as rouge-score's `_backtrack_norec` does (the
/// tie-break decides which tokens count in the union).
fn lcs_indices(a: &[String], b: &[String]) -> Vec<usize> {
    let t = lcs_table(a, b);
    let (mut i, mut j) = (a.len(), b.len());
    let mut out = Vec::new();
    while i > 0 && j > 0 {
        if a[i - 1] == b[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i][j - 1] > t[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

/// rouge-score's `_summary_level_lcs`: hits are the union-LCS tokens of each reference sentence,
/// each counted while both sides still have that token left.
fn summary_lcs_score(target: &[Vec<String>], prediction: &[Vec<String>]) -> RougeScore {
    let m: usize = target.iter().map(Vec::len).sum();
    let n: usize = prediction.iter().map(Vec::len).sum();
    if target.is_empty() || prediction.is_empty() || m == 0 || n == 0 {
        return RougeScore::default();
    }
    let mut left_t: HashMap<&str, usize> = HashMap::new();
    let mut left_p: HashMap<&str, usize> = HashMap::new();
    for tok in target.iter().flatten() {
        *left_t.entry(tok).or_insert(0) += 1;
    }
    for tok in prediction.iter().flatten() {
        *left_p.entry(tok).or_insert(0) += 1;
    }
    let mut hits = 0usize;
    for r in target {
        let mut union: Vec<usize> = prediction.iter().flat_map(|c| lcs_indices(r, c)).collect();
        union.sort_unstable();
        union.dedup();
        for i in union {
            let tok = r[i].as_str();
            let (ct, cp) = (
                left_t.get(tok).copied().unwrap_or(0),
                left_p.get(tok).copied().unwrap_or(0),
            );
            if ct > 0 && cp > 0 {
                hits += 1;
                left_t.insert(tok, ct - 1);
                left_p.insert(tok, cp - 1);
            }
        }
    }
    RougeScore::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand: target "the cat sat on the mat", prediction "the cat lay on a mat": unigram
    /// overlap the, cat, on, mat = 4 of 6 both ways; bigrams "the cat" only: 1 of 5; LCS
    /// "the cat on mat" = 4.
    #[test]
    fn worked_example() {
        let s = Rouge::default().score("the cat sat on the mat", "the cat lay on a mat");
        assert!((s.rouge1.fmeasure - 4.0 / 6.0).abs() < 1e-12);
        assert!((s.rouge2.precision - 0.2).abs() < 1e-12);
        assert!((s.rouge_l.recall - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(s.rouge_lsum, s.rouge_l);
    }

    #[test]
    fn empty_sides_score_zero() {
        let s = Rouge::default().score("", "some text");
        assert_eq!(s, RougeScores::default());
    }
}
