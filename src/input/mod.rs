//! Input-side methods: what a prompt becomes before the model sees it (issue 16: word removal
//! first; loss-based compression and phrase-merging vocabularies follow). Each method is a pure
//! transform of the prompt text, so any decoding method and cache run on its output, and the
//! quality cost is measured against the uncompressed prompt's run.

pub mod word_removal;

use std::str::FromStr;

/// An input-side method (`compare --input`), parsed from its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMethod {
    /// The prompt as written.
    None,
    /// `word_removal:N`: every Nth word dropped (`word_removal`).
    WordRemoval { every: usize },
}

impl InputMethod {
    pub fn label(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::WordRemoval { every } => format!("word_removal:{every}"),
        }
    }

    /// The prompt this method makes of `text`.
    pub fn apply(&self, text: &str) -> String {
        match self {
            Self::None => text.to_string(),
            Self::WordRemoval { every } => word_removal::remove_every_nth_word(text, *every).text,
        }
    }
}

impl FromStr for InputMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "none" => Ok(Self::None),
            Some(("word_removal", n)) => match n.parse::<usize>() {
                Ok(every) if every >= 2 => Ok(Self::WordRemoval { every }),
                Ok(every) => Err(format!("word_removal:{every}: N must be at least 2 (every Nth word is dropped; 1 would drop them all)")),
                Err(_) => Err(format!("word_removal:{n}: N is a whole number of words, e.g. word_removal:3")),
            },
            None if s == "word_removal" => Err("word_removal needs N: word_removal:3 drops every third word".into()),
            _ => Err(format!("{s}: unknown input method; use none or word_removal:N")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_back_and_bad_ones_say_why() {
        for label in ["none", "word_removal:2", "word_removal:5"] {
            assert_eq!(label.parse::<InputMethod>().unwrap().label(), label);
        }
        assert!("word_removal:1"
            .parse::<InputMethod>()
            .unwrap_err()
            .contains("at least 2"));
        assert!("word_removal:x"
            .parse::<InputMethod>()
            .unwrap_err()
            .contains("whole number"));
        assert!("word_removal"
            .parse::<InputMethod>()
            .unwrap_err()
            .contains("needs N"));
        assert!("zip"
            .parse::<InputMethod>()
            .unwrap_err()
            .contains("unknown input method"));
        assert_eq!(
            InputMethod::WordRemoval { every: 3 }.apply("a b c d e f"),
            "a b d e"
        );
    }
}
