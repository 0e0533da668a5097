//! Diversity and repetition of generated text, over any token type (words or model ids):
//! - distinct-n (Li et al. 2016): distinct n-grams / all n-grams, over every sequence given
//!   together (so a set of outputs that repeat each other scores low);
//! - n-gram entropy (Zhang et al. 2018, "Ent-n"): Shannon entropy in bits of the n-gram
//!   frequency distribution over the sequences;
//! - repetition rate, seq-rep-n (Welleck et al. 2019): within one sequence, the share of its
//!   n-grams that repeat an n-gram it already had, 1 - distinct / all;
//! - cosine similarity (coherence: of the prompt's and the output's sentence embeddings);
//! - self-BLEU (Zhu et al. 2018, Texygen): the mean sentence BLEU of each output against all the
//!   others as references (sacrebleu's arithmetic, `bleu`): high when outputs resemble each other.
//!
//! A sequence shorter than n has no n-grams; a ratio over no n-grams is 0.

use super::bleu::Bleu;
use super::ngrams::add_ngrams;
use std::collections::HashMap;
use std::hash::Hash;

/// The n-gram counts of `seqs` together, and how many n-grams they have.
fn counts<'a, T: Hash + Eq + 'a>(seqs: impl IntoIterator<Item = &'a [T]>, n: usize) -> (HashMap<&'a [T], usize>, usize) {
    let mut m = HashMap::new();
    let total = seqs.into_iter().map(|s| add_ngrams(&mut m, s, n)).sum();
    (m, total)
}

/// Distinct n-grams over all n-grams of `seqs` taken together.
pub fn distinct_n<T: Hash + Eq>(seqs: &[&[T]], n: usize) -> f64 {
    let (m, total) = counts(seqs.iter().copied(), n);
    if total == 0 {
        0.0
    } else {
        m.len() as f64 / total as f64
    }
}

/// Entropy in bits of the n-gram distribution of `seqs` taken together.
pub fn ngram_entropy<T: Hash + Eq>(seqs: &[&[T]], n: usize) -> f64 {
    let (m, total) = counts(seqs.iter().copied(), n);
    let total = total as f64;
    // + 0.0: a single n-gram's -1 * log2(1) is -0.0, printed as such.
    m.values()
        .map(|&c| c as f64 / total)
        .map(|p| -p * p.log2())
        .sum::<f64>()
        + 0.0
}

/// seq-rep-n of one sequence: 1 - distinct n-grams / n-grams.
pub fn repetition_rate<T: Hash + Eq>(seq: &[T], n: usize) -> f64 {
    let (m, total) = counts([seq], n);
    if total == 0 {
        0.0
    } else {
        1.0 - m.len() as f64 / total as f64
    }
}

/// Cosine similarity of two vectors (0 when either is zero), accumulated in f64: coherence of
/// a prompt and an output is the cosine of their sentence embeddings.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Self-BLEU of `outputs` on sacrebleu's 0-100 scale; 0 for fewer than two outputs.
pub fn self_bleu(outputs: &[&str]) -> f64 {
    if outputs.len() < 2 {
        return 0.0;
    }
    let bleu = Bleu::default();
    let total: f64 = (0..outputs.len())
        .map(|i| {
            let others: Vec<&str> = outputs
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, s)| *s)
                .collect();
            bleu.sentence(outputs[i], &others).score
        })
        .sum();
    total / outputs.len() as f64
}

/// The share of `keywords` that occur in `text`, case-insensitively (a keyword of several
/// words counts as one); 1 when there are none to find.
pub fn keyword_coverage(text: &str, keywords: &[String]) -> f64 {
    if keywords.is_empty() {
        return 1.0;
    }
    let text = text.to_lowercase();
    keywords.iter().filter(|k| text.contains(&k.to_lowercase())).count() as f64 / keywords.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_coverage_ignores_case() {
        let k = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(keyword_coverage("Rayleigh scattering of SUNLIGHT", &k(&["rayleigh", "sunlight", "ozone", "blue sky"])), 0.5);
        assert_eq!(keyword_coverage("anything", &[]), 1.0);
    }

    #[test]
    fn distinct_and_repetition_by_hand() {
        let a: &[u32] = &[1, 2, 1, 2, 3];
        // Bigrams 12, 21, 12, 23: 3 distinct of 4.
        assert_eq!(distinct_n(&[a], 2), 0.75);
        assert_eq!(repetition_rate(a, 2), 0.25);
        // Two copies of a sequence halve distinct-n across them.
        assert_eq!(distinct_n(&[a, a], 2), 0.375);
        assert_eq!(distinct_n::<u32>(&[&[1]], 2), 0.0);
    }

    #[test]
    fn entropy_of_uniform_ngrams_is_log2_of_their_count() {
        let a: &[u32] = &[1, 2, 3, 4];
        assert!((ngram_entropy(&[a], 1) - 2.0).abs() < 1e-12);
        assert_eq!(ngram_entropy(&[&[7u32, 7, 7][..]], 1), 0.0);
    }

    #[test]
    fn self_bleu_is_100_for_copies_and_0_for_disjoint_outputs() {
        assert!(
            (self_bleu(&["the cat sat on the mat", "the cat sat on the mat"]) - 100.0).abs() < 1e-9
        );
        assert_eq!(self_bleu(&["alpha beta", "gamma delta"]), 0.0);
    }
}
