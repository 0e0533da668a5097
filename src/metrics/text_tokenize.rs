//! Tokenizers of the reference text metrics, reproduced exactly: sacrebleu's `13a` (mteval-v13a,
//! the WMT default; sacrebleu/tokenizers/tokenizer_13a.py and tokenizer_re.py) and rouge-score's
//! default tokenizer (lowercase, runs of anything but [a-z0-9] as spaces, Porter stems of tokens
//! longer than 3; rouge_score/tokenize.py). Both lean on Python's `str.split()`, whose whitespace
//! is `str.isspace()`: Unicode White_Space plus the ASCII separators U+001C..U+001F.

use super::porter;

/// Python's `str.isspace()` for one character.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` (no argument): runs of whitespace separate, none at either end.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|w| !w.is_empty())
}

/// Python's `str.rstrip()`.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// sacrebleu's `13a` tokenization of one segment, as words.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let padded = format!(" {line} ");
    let mut out = String::with_capacity(padded.len() * 2);
    // Rule 1: every ASCII symbol in {-~ [-` space-& (-+ :-@ / gets spaces around it.
    for c in padded.chars() {
        if is_13a_symbol(c) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    let out = split_period_comma(&out);
    let out = split_digit_dash(&out);
    py_split(&out).map(str::to_string).collect()
}

/// The first rule's class `[\{-\~\[-\` -\&\(-\+\:-\@\/]`.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// Rules 2 and 3, applied in turn as Python's `re.sub` does (left to right, matches do not
/// overlap): `([^0-9])([\.,])` -> `\1 \2 `, then `([\.,])([^0-9])` -> ` \1 \2`.
fn split_period_comma(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut first = String::with_capacity(s.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && !chars[i].is_ascii_digit() && matches!(chars[i + 1], '.' | ',') {
            first.push(chars[i]);
            first.push(' ');
            first.push(chars[i + 1]);
            first.push(' ');
            i += 2;
        } else {
            first.push(chars[i]);
            i += 1;
        }
    }
    let chars: Vec<char> = first.chars().collect();
    let mut second = String::with_capacity(first.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches!(chars[i], '.' | ',') && !chars[i + 1].is_ascii_digit() {
            second.push(' ');
            second.push(chars[i]);
            second.push(' ');
            second.push(chars[i + 1]);
            i += 2;
        } else {
            second.push(chars[i]);
            i += 1;
        }
    }
    second
}

/// Rule 4: `([0-9])(-)` -> `\1 \2 `.
fn split_digit_dash(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && chars[i].is_ascii_digit() && chars[i + 1] == '-' {
            out.push(chars[i]);
            out.push(' ');
            out.push('-');
            out.push(' ');
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// rouge-score's tokens of `text`: lowercased, every run of characters outside [a-z0-9] a
/// separator, tokens longer than 3 Porter-stemmed when `stem`.
pub fn tokenize_rouge(text: &str, stem: bool) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(|t| {
            if stem && t.len() > 3 {
                porter::stem(t)
            } else {
                t.to_string()
            }
        })
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirteen_a_splits_punctuation_but_not_numbers() {
        // Worked through sacrebleu's four rules by hand.
        assert_eq!(
            tokenize_13a("Hello, world. It costs 3.50 (or 1,000)!"),
            ["Hello", ",", "world", ".", "It", "costs", "3.50", "(", "or", "1,000", ")", "!"]
        );
        assert_eq!(
            tokenize_13a("pre-war 1990-2000 &amp; x"),
            ["pre-war", "1990", "-", "2000", "&", "x"]
        );
        assert_eq!(tokenize_13a("end.\nnext"), ["end", ".", "next"]);
        assert!(tokenize_13a("   ").is_empty());
    }

    #[test]
    fn python_whitespace_includes_the_ascii_separators() {
        assert_eq!(
            py_split("a\u{1f}b\u{a0}c  d").collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(py_rstrip("x \u{1c}\n"), "x");
    }

    #[test]
    fn rouge_tokens_are_lowercase_alphanumeric_runs() {
        assert_eq!(
            tokenize_rouge("The U.S.-based café's 2nd!", false),
            ["the", "u", "s", "based", "caf", "s", "2nd"]
        );
        assert_eq!(tokenize_rouge("running cats", true), ["run", "cat"]);
    }
}
