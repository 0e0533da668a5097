//! Prompt-lookup decoding (Saxena 2023; transformers' `prompt_lookup_num_tokens`, vLLM's ngram
//! proposer): find the most recent earlier occurrence of the last n tokens (n from the largest
//! size down to 1) in the prompt and the text so far, and propose the tokens that followed it.
//! No second model: the draft costs a scan of the token list.

use super::{Draft, Proposer};
use crate::decode::StepContext;
use anyhow::Result;

/// The largest n-gram matched (vLLM's `prompt_lookup_max`; transformers uses 2 by default).
pub const MAX_NGRAM: usize = 3;

pub struct Lookup {
    max_ngram: usize,
}

impl Lookup {
    pub fn new(max_ngram: usize) -> Self {
        Self { max_ngram }
    }
}

/// Up to `k` tokens that followed the latest earlier match of the longest suffix n-gram.
pub fn propose(tokens: &[u32], k: usize, max_ngram: usize) -> Vec<u32> {
    for n in (1..=max_ngram.min(tokens.len().saturating_sub(1))).rev() {
        let suffix = &tokens[tokens.len() - n..];
        // Latest match first: recent text predicts the continuation best.
        for start in (0..tokens.len() - n).rev() {
            if &tokens[start..start + n] == suffix {
                let from = start + n;
                let to = (from + k).min(tokens.len());
                if to > from {
                    return tokens[from..to].to_vec();
                }
            }
        }
    }
    Vec::new()
}

impl Proposer for Lookup {
    fn propose(&mut self, ctx: &mut StepContext<'_>, k: usize) -> Result<Draft> {
        Ok(Draft { tokens: propose(ctx.tokens, k, self.max_ngram), probs: None, forwards: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::propose;

    #[test]
    fn proposes_what_followed_the_latest_longest_match() {
        // The trigram [1, 2, 3] appeared at 0 (then 4, 5) and at 5 (then 9): the latest wins.
        let tokens = [1, 2, 3, 4, 5, 1, 2, 3, 9, 7, 1, 2, 3];
        assert_eq!(propose(&tokens, 2, 3), vec![9, 7]);
        // Capped by k and by the end of the text.
        assert_eq!(propose(&tokens, 10, 3), vec![9, 7, 1, 2, 3]);
        // Only the unigram [5] has an earlier occurrence (at 0, followed by 6, 7).
        assert_eq!(propose(&[5, 6, 7, 5], 2, 3), vec![6, 7]);
        assert!(propose(&[1, 2, 3], 4, 3).is_empty(), "no earlier occurrence: no proposal");
        assert!(propose(&[4], 4, 3).is_empty());
    }
}
