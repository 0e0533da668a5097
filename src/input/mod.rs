//! Input-side methods: what a prompt becomes before the model sees it (issue 16). Word removal
//! and loss-based compression transform the prompt text, so any decoding method and cache run
//! on their output, and the quality cost is measured against the uncompressed prompt's run.

pub mod adaptivocab;
pub mod lingua;
pub mod word_removal;

use crate::engine::Engine;
use crate::models::tokenizer::TextTokenizer;
use anyhow::Result;
use std::str::FromStr;

/// An input-side method (`compare --input`), parsed from its label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputMethod {
    /// The prompt as written.
    None,
    /// `word_removal:N`: every Nth word dropped (`word_removal`).
    WordRemoval { every: usize },
    /// `lingua:RATE`: the share `rate` of each segment's tokens kept, those the compressor
    /// finds least predictable (`lingua`).
    Lingua { rate: f64 },
    /// `adaptivocab`: the prompt as written, read through a vocabulary with phrase tokens
    /// (`adaptivocab`); the model gains the phrases' rows, so it runs as its own model.
    AdaptiVocab,
}

/// The model that scores tokens for `lingua` (the target itself unless `--compressor`).
pub struct Compressor<'a> {
    pub engine: &'a Engine<'a>,
    pub tokenizer: &'a TextTokenizer,
}

impl InputMethod {
    pub fn label(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::WordRemoval { every } => format!("word_removal:{every}"),
            Self::Lingua { rate } => format!("lingua:{rate}"),
            Self::AdaptiVocab => "adaptivocab".into(),
        }
    }

    /// Whether `apply` runs a model over the prompt.
    pub fn needs_compressor(&self) -> bool {
        matches!(self, Self::Lingua { .. })
    }

    /// The prompt this method makes of `text` (`compressor` is needed where
    /// `needs_compressor` says so).
    pub fn apply(&self, text: &str, compressor: Option<&Compressor>) -> Result<String> {
        Ok(match self {
            Self::None | Self::AdaptiVocab => text.to_string(),
            Self::WordRemoval { every } => word_removal::remove_every_nth_word(text, *every).text,
            Self::Lingua { rate } => {
                let c = compressor.ok_or_else(|| anyhow::anyhow!("lingua needs a compressor model"))?;
                let ids = c.tokenizer.encode(text)?;
                let kept = lingua::compress(c.engine, &ids, *rate, lingua::SEGMENT_TOKENS)?.ids;
                c.tokenizer.decode(&kept)?
            }
        })
    }
}

impl FromStr for InputMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "none" => Ok(Self::None),
            None if s == "adaptivocab" => Ok(Self::AdaptiVocab),
            Some(("word_removal", n)) => match n.parse::<usize>() {
                Ok(every) if every >= 2 => Ok(Self::WordRemoval { every }),
                Ok(every) => Err(format!("word_removal:{every}: N must be at least 2 (every Nth word is dropped; 1 would drop them all)")),
                Err(_) => Err(format!("word_removal:{n}: N is a whole number of words, e.g. word_removal:3")),
            },
            None if s == "word_removal" => Err("word_removal needs N: word_removal:3 drops every third word".into()),
            Some(("lingua", r)) => match r.parse::<f64>() {
                Ok(rate) if rate > 0.0 && rate < 1.0 => Ok(Self::Lingua { rate }),
                _ => Err(format!("lingua:{r}: RATE is the share of tokens kept, strictly between 0 and 1, e.g. lingua:0.5")),
            },
            None if s == "lingua" => Err("lingua needs RATE: lingua:0.5 keeps half of the prompt's tokens".into()),
            _ => Err(format!("{s}: unknown input method; use none, word_removal:N, lingua:RATE or adaptivocab")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_back_and_bad_ones_say_why() {
        for label in ["none", "word_removal:2", "word_removal:5", "lingua:0.5", "lingua:0.33", "adaptivocab"] {
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
        for bad in ["lingua:0", "lingua:1", "lingua:1.5", "lingua:-0.2", "lingua:half", "lingua:NaN"] {
            assert!(bad.parse::<InputMethod>().unwrap_err().contains("strictly between 0 and 1"), "{bad}");
        }
        assert!("lingua".parse::<InputMethod>().unwrap_err().contains("needs RATE"));
        assert_eq!(
            InputMethod::WordRemoval { every: 3 }.apply("a b c d e f", None).unwrap(),
            "a b d e"
        );
    }
}
