//! Perplexity of a long text under a model with a bounded context: which tokens each forward
//! pass reads and scores (pure index arithmetic, so it is tested without a model), and the
//! scores lm-evaluation-harness reports from the summed log-likelihood.
//!
//! Two ways to cut a text longer than the window:
//! - strided sliding windows, Hugging Face's guide "Perplexity of fixed-length models": windows
//!   of `max_length` tokens starting every `stride` tokens, each scoring only the tokens the
//!   previous window did not (so every scored token but the first windows' sees at least
//!   `max_length - stride` tokens of context); the text's first token is never scored;
//! - lm-evaluation-harness's rolling disjoint windows (`loglikelihood_rolling`:
//!   `get_rolling_token_windows` with context length 1, then `make_disjoint_window`): the text
//!   after a prefix token (BOS, else end-of-text), every token scored exactly once, in chunks of
//!   `max_length` whose only context is the token before them; the last chunk is given the
//!   window's remaining room as context.

/// One forward pass over `seq[begin..end - 1]` (the sequence being scored), scoring the tokens
/// `seq[first_target..end]`, each from the logits of the position before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub begin: usize,
    pub first_target: usize,
    pub end: usize,
}

impl Window {
    /// Tokens fed to the model.
    pub fn fed(&self) -> usize {
        self.end - 1 - self.begin
    }
}

/// The HF guide's windows over `n` tokens (`stride <= max_length`, both at least 1).
pub fn strided_windows(n: usize, max_length: usize, stride: usize) -> Vec<Window> {
    let mut out = Vec::new();
    let mut prev_end = 0;
    let mut begin = 0;
    while begin < n {
        let end = (begin + max_length).min(n);
        // The guide masks all but the last end - prev_end labels, and the model's shift drops
        // the window's first position (nothing predicts it).
        let first_target = prev_end.max(begin + 1);
        if first_target < end {
            out.push(Window { begin, first_target, end });
        }
        prev_end = end;
        if end == n {
            break;
        }
        begin += stride;
    }
    out
}

/// lm-evaluation-harness's rolling disjoint windows over `[prefix] + tokens`, `n` tokens after the
/// prefix: indices are into that sequence (index 0 the prefix).
pub fn rolling_windows(n: usize, max_length: usize) -> Vec<Window> {
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    let first = max_length.min(n);
    out.push(Window { begin: 0, first_target: 1, end: first + 1 });
    let mut predicted = first;
    while predicted < n {
        let pred = (n - predicted).min(max_length);
        let window_end = predicted + pred;
        // In prefixed indices: targets window_end - pred + 1 ..= window_end, fed the max_length
        // tokens before the last target.
        out.push(Window { begin: window_end - max_length, first_target: window_end - pred + 1, end: window_end + 1 });
        predicted = window_end;
    }
    out
}

/// lm-evaluation-harness's perplexity scores of one text from the summed log-likelihood of its
/// scored tokens (nats).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct PerplexityScores {
    pub scored_tokens: usize,
    pub log_likelihood: f64,
    /// exp(-log-likelihood / scored tokens).
    pub token_perplexity: f64,
    /// lm-eval's `word_perplexity`: per whitespace-separated word of the text.
    pub word_perplexity: f64,
    /// lm-eval's `byte_perplexity`: per UTF-8 byte.
    pub byte_perplexity: f64,
    /// lm-eval's `bits_per_byte`: -log-likelihood / (bytes ln 2).
    pub bits_per_byte: f64,
    pub words: usize,
    pub bytes: usize,
}

impl PerplexityScores {
    pub fn new(text: &str, log_likelihood: f64, scored_tokens: usize) -> Self {
        let (words, bytes) = (word_count(text), text.len());
        let per = |count: usize| (-log_likelihood / count as f64).exp();
        Self {
            scored_tokens,
            log_likelihood,
            token_perplexity: per(scored_tokens),
            word_perplexity: per(words),
            byte_perplexity: per(bytes),
            bits_per_byte: -log_likelihood / (bytes as f64 * std::f64::consts::LN_2),
            words,
            bytes,
        }
    }
}

/// lm-eval's word count, `len(re.split(r"\s+", text))`: the pieces between runs of whitespace,
/// an empty piece at either end included.
pub fn word_count(text: &str) -> usize {
    let mut pieces = 1;
    let mut in_space = false;
    for c in text.chars() {
        let space = super::text_tokenize::is_py_space(c);
        if space && !in_space {
            pieces += 1;
        }
        in_space = space;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every token but the first scored exactly once, and no pass longer than the window.
    fn covers_once(windows: &[Window], first: usize, last: usize, max_length: usize) {
        let mut next = first;
        for w in windows {
            assert_eq!(w.first_target, next, "{windows:?}");
            assert!(w.begin < w.first_target && w.first_target < w.end && w.fed() <= max_length, "{w:?}");
            next = w.end;
        }
        assert_eq!(next, last, "{windows:?}");
    }

    #[test]
    fn strided_windows_follow_the_hf_guide() {
        // 10 tokens, windows of 4 every 2: [0,4) scores 1..4, [2,6) scores 4..6, [4,8) 6..8, [6,10) 8..10.
        let w = strided_windows(10, 4, 2);
        assert_eq!(w.iter().map(|w| (w.begin, w.first_target, w.end)).collect::<Vec<_>>(), [(0, 1, 4), (2, 4, 6), (4, 6, 8), (6, 8, 10)]);
        for (n, len, stride) in [(1, 4, 2), (7, 4, 3), (100, 16, 5), (5, 64, 32)] {
            covers_once(&strided_windows(n, len, stride), 1, n.max(1), len);
        }
        // stride == length: disjoint windows, each window's first token unscored (the guide's loss).
        assert_eq!(strided_windows(8, 4, 4), [Window { begin: 0, first_target: 1, end: 4 }, Window { begin: 4, first_target: 5, end: 8 }]);
    }

    #[test]
    fn rolling_windows_follow_lm_evaluation_harness() {
        // 10 tokens after the prefix, windows of 4: lm-eval's pairs are ([p,t0,t1,t2], t0..t3),
        // ([t3], t4..t7) and, the last with context to fill the window, ([t5,t6,t7], t8,t9).
        let w = rolling_windows(10, 4);
        assert_eq!(w.iter().map(|w| (w.begin, w.first_target, w.end)).collect::<Vec<_>>(), [(0, 1, 5), (4, 5, 9), (6, 9, 11)]);
        for (n, len) in [(1, 4), (4, 4), (5, 4), (100, 7)] {
            covers_once(&rolling_windows(n, len), 1, n + 1, len);
        }
    }

    #[test]
    fn scores_use_lm_evals_counts() {
        assert_eq!(word_count("a b  c"), 3);
        assert_eq!(word_count(" a\tb\n"), 4);
        let s = PerplexityScores::new("ab cd", -(5f64.ln()) * 2.0, 2);
        assert!((s.token_perplexity - 5.0).abs() < 1e-12);
        assert!((s.word_perplexity - 5.0).abs() < 1e-12);
        assert!((s.bits_per_byte - 2.0 * 5f64.ln() / (5.0 * std::f64::consts::LN_2)).abs() < 1e-12);
    }
}
