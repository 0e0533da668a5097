//! `word_removal:N`: drops every Nth word of a prompt (the N-th, 2N-th, ... removable word),
//! keeping what carries structure: punctuation (so sentence boundaries stay), numbers and any
//! word with a digit, and the whitespace layout around what is kept. A removed word takes one
//! adjacent whitespace run with it (the one before it, or after it at the start of a line), so
//! no double spaces are left behind. Words are maximal runs of letters and digits joined by
//! inner apostrophes or hyphens ("don't", "state-of-the-art" are one word each).

/// What a removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub text: String,
    /// Words that could be removed, and how many were.
    pub removable_words: usize,
    pub removed_words: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Space,
    Other,
}

/// The text split into words, whitespace runs and single other characters, in order.
fn segments(text: &str) -> Vec<(Kind, &str)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        let mut j = i + 1;
        let kind = if c.is_alphanumeric() {
            // Letters and digits, with an apostrophe or hyphen only between two of them.
            while j < chars.len() {
                let d = chars[j].1;
                let joined = matches!(d, '\'' | '\u{2019}' | '-')
                    && chars.get(j + 1).is_some_and(|&(_, e)| e.is_alphanumeric());
                if d.is_alphanumeric() {
                    j += 1;
                } else if joined {
                    j += 2;
                } else {
                    break;
                }
            }
            Kind::Word
        } else if c.is_whitespace() {
            while j < chars.len() && chars[j].1.is_whitespace() {
                j += 1;
            }
            Kind::Space
        } else {
            Kind::Other
        };
        out.push((kind, &text[start..end_of(j)]));
        i = j;
    }
    out
}

/// A word that may go: it has a letter and no digit (numbers and codes such as "B12" stay).
fn removable(word: &str) -> bool {
    word.chars().any(char::is_alphabetic) && !word.chars().any(|c| c.is_ascii_digit())
}

/// Drops every `n`th removable word of `text` (`n` >= 2, checked by the caller's parser).
pub fn remove_every_nth_word(text: &str, n: usize) -> Removal {
    let segs = segments(text);
    let mut keep = vec![true; segs.len()];
    let mut count = 0;
    let mut removed = 0;
    for i in 0..segs.len() {
        if segs[i].0 != Kind::Word || !removable(segs[i].1) {
            continue;
        }
        count += 1;
        if count % n != 0 {
            continue;
        }
        keep[i] = false;
        removed += 1;
        // Take the whitespace before it, or else the one after it (start of the text or of a
        // line: a line break is layout, never taken).
        let space = |j: usize| segs[j].0 == Kind::Space && !segs[j].1.contains('\n');
        if i > 0 && space(i - 1) && keep[i - 1] {
            keep[i - 1] = false;
        } else if i + 1 < segs.len() && space(i + 1) {
            keep[i + 1] = false;
        }
    }
    let text = segs
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|((_, s), _)| *s)
        .collect();
    Removal {
        text,
        removable_words: count,
        removed_words: removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_third_word_goes_and_punctuation_stays() {
        let r = remove_every_nth_word("The quick brown fox jumps over the lazy dog.", 3);
        assert_eq!(r.text, "The quick fox jumps the lazy.");
        assert_eq!((r.removable_words, r.removed_words), (9, 3));
    }

    #[test]
    fn numbers_and_codes_are_kept_and_not_counted() {
        let r = remove_every_nth_word("In 1440 Gutenberg built 2 presses for B12 vitamins.", 2);
        // In(1) Gutenberg(2) built(3) presses(4) for(5) vitamins(6): the even ones go.
        assert_eq!(r.text, "In 1440 built 2 for B12.");
        assert_eq!((r.removable_words, r.removed_words), (6, 3));
    }

    #[test]
    fn sentence_boundaries_contractions_and_lines_survive() {
        let text = "Don't stop. State-of-the-art models help!\nNew line starts here; really?";
        let r = remove_every_nth_word(text, 2);
        // Words: Don't(1) stop(2) State-of-the-art(3) models(4) help(5) New(6) line(7)
        // starts(8) here(9) really(10): 2, 4, 6, 8, 10 go.
        assert_eq!(r.text, "Don't. State-of-the-art help!\nline here;?");
        assert_eq!(
            r.text.matches(['.', '!', '?', ';']).count(),
            text.matches(['.', '!', '?', ';']).count()
        );
        assert_eq!(r.removed_words, 5);
    }

    #[test]
    fn a_first_word_takes_the_space_after_it() {
        assert_eq!(remove_every_nth_word("one two", 1).text, "");
        assert_eq!(
            remove_every_nth_word("alpha beta gamma", 2).text,
            "alpha gamma"
        );
        assert_eq!(
            remove_every_nth_word("", 2),
            Removal {
                text: String::new(),
                removable_words: 0,
                removed_words: 0
            }
        );
    }
}
