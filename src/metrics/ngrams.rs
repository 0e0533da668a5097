//! n-gram counting shared by the text metrics: an n-gram is a slice of the token sequence, so
//! tokens of any type (words, characters, model ids) count alike and nothing is copied.

use std::collections::HashMap;
use std::hash::Hash;

/// Adds the n-grams of `seq` to `counts`; returns how many it added (none for n = 0 or a
/// sequence shorter than n).
pub fn add_ngrams<'a, T: Hash + Eq>(counts: &mut HashMap<&'a [T], usize>, seq: &'a [T], n: usize) -> usize {
    if n == 0 || seq.len() < n {
        return 0;
    }
    for gram in seq.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    seq.len() - n + 1
}

/// The counts of the n-grams of `seq`.
pub fn ngram_counts<T: Hash + Eq>(seq: &[T], n: usize) -> HashMap<&[T], usize> {
    let mut counts = HashMap::new();
    add_ngrams(&mut counts, seq, n);
    counts
}
