//! `adaptivocab`: multi-word phrases become single tokens without retraining (seed 002's
//! SimpleAdaptiVocab, with AdaptiVocab's initialisation in `models::vocab_extension`).
//!
//! Which phrases: seed 002's defaults, or `--phrases FILE` (one per line), or the phrases a
//! corpus file repeats most, scored by frequency x tokens saved (AdaptiVocab's savings score)
//! with `--phrase-corpus FILE`. Each phrase becomes a token per surface form that matters in
//! running text: with and without a leading space, lower case and capitalised. A form the base
//! tokenizer already spells in one token saves nothing and is skipped.
//!
//! Merging works on the base tokenizer's ids (`PhraseMerges`): a run of ids that spells a
//! phrase form becomes its token. Byte-level BPE pre-tokenizes at word boundaries, so a phrase
//! inside a sentence gives the same ids as the phrase alone, and merges only ever shorten.

use crate::error::LlmbenchError;
use crate::models::tokenizer::TextTokenizer;
use crate::models::vocab_extension::VocabExtension;
use anyhow::Result;
use std::collections::HashMap;
use std::path::Path;

/// Seed 002's SimpleAdaptiVocab phrases.
pub const DEFAULT_PHRASES: [&str; 12] = [
    "artificial intelligence",
    "machine learning",
    "deep learning",
    "natural language processing",
    "quantum mechanics",
    "neural network",
    "neural networks",
    "data science",
    "computer vision",
    "reinforcement learning",
    "large language model",
    "language models",
];

/// How many phrases `--phrase-corpus` keeps.
pub const MINED_PHRASES: usize = 100;
/// Word n-grams considered when mining (AdaptiVocab's n-tokens are short).
const MINED_WORDS: std::ops::RangeInclusive<usize> = 2..=4;
/// A phrase must occur this often in the corpus to be worth a token.
const MIN_OCCURRENCES: usize = 3;

/// Where the phrases come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhraseSource {
    Defaults,
    File(std::path::PathBuf),
    Corpus(std::path::PathBuf),
}

impl PhraseSource {
    pub fn describe(&self) -> String {
        match self {
            Self::Defaults => format!("seed 002's {} default phrases", DEFAULT_PHRASES.len()),
            Self::File(p) => format!("phrases from {}", p.display()),
            Self::Corpus(p) => format!(
                "the {MINED_PHRASES} phrases of {} with the most tokens saved",
                p.display()
            ),
        }
    }
}

/// The phrases, each once, in the source's order (mined ones by score).
pub fn phrases(source: &PhraseSource, tokenizer: &TextTokenizer) -> Result<Vec<String>> {
    let list = match source {
        PhraseSource::Defaults => DEFAULT_PHRASES.iter().map(|p| p.to_string()).collect(),
        PhraseSource::File(path) => {
            let text = read(path, "--phrases")?;
            let list: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            if list.is_empty() {
                crate::bail_input!("--phrases {}: the file has no phrases; write one phrase per line (e.g. machine learning)", path.display());
            }
            list
        }
        PhraseSource::Corpus(path) => {
            let text = read(path, "--phrase-corpus")?;
            let mined = mine(&text, tokenizer, MINED_PHRASES)?;
            if mined.is_empty() {
                crate::bail_input!(
                    "--phrase-corpus {}: no phrase of {}-{} words occurs {MIN_OCCURRENCES} times or more; give a larger corpus",
                    path.display(),
                    MINED_WORDS.start(),
                    MINED_WORDS.end()
                );
            }
            mined
        }
    };
    let mut seen = std::collections::HashSet::new();
    Ok(list
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .collect())
}

fn read(path: &Path, flag: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        LlmbenchError::invalid(format!("{flag} {}: cannot read ({e})", path.display())).into()
    })
}

/// The phrase tokens: every surface form of every phrase that the base tokenizer spells in two
/// or more tokens, once each; an input error when there are none.
pub fn extension(phrases: &[String], tokenizer: &TextTokenizer) -> Result<VocabExtension> {
    let mut constituents: Vec<Vec<u32>> = vec![];
    for phrase in phrases {
        for form in surface_forms(phrase) {
            let ids = tokenizer.encode(&form)?;
            if ids.len() >= 2 && !constituents.contains(&ids) {
                constituents.push(ids);
            }
        }
    }
    if constituents.is_empty() {
        crate::bail_input!(
            "adaptivocab: none of the {} phrases spans two or more tokens of this model's tokenizer, so none would merge; give multi-word phrases (--phrases FILE)",
            phrases.len()
        );
    }
    Ok(VocabExtension { constituents })
}

/// " phrase", "phrase", " Phrase", "Phrase" (fewer when capitalising changes nothing).
fn surface_forms(phrase: &str) -> Vec<String> {
    let mut chars = phrase.chars();
    let capitalised: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    let mut forms = vec![format!(" {phrase}"), phrase.to_string()];
    if capitalised != phrase {
        forms.extend([format!(" {capitalised}"), capitalised]);
    }
    forms
}

/// The `count` word n-grams of `text` with the highest frequency x tokens saved (tokens of the
/// space-prefixed phrase minus one), n-grams never crossing punctuation or a line break.
pub fn mine(text: &str, tokenizer: &TextTokenizer, count: usize) -> Result<Vec<String>> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for run in text.split(|c: char| !(c.is_alphanumeric() || c == ' ' || c == '\'' || c == '-')) {
        let words: Vec<&str> = run.split(' ').filter(|w| !w.is_empty()).collect();
        for n in MINED_WORDS {
            for gram in words.windows(n) {
                *counts.entry(gram.join(" ")).or_default() += 1;
            }
        }
    }
    let mut scored: Vec<(usize, String)> = vec![];
    for (phrase, occurrences) in counts.into_iter().filter(|(_, c)| *c >= MIN_OCCURRENCES) {
        let saved = tokenizer
            .encode(&format!(" {phrase}"))?
            .len()
            .saturating_sub(1);
        scored.push((occurrences * saved, phrase));
    }
    scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    Ok(scored.into_iter().take(count).map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_cover_spacing_and_capitals() {
        assert_eq!(
            surface_forms("machine learning"),
            [
                " machine learning",
                "machine learning",
                " Machine learning",
                "Machine learning"
            ]
        );
        assert_eq!(surface_forms("3D printing").len(), 2);
    }

    #[test]
    fn mining_scores_frequency_times_tokens_saved_within_punctuation() {
        // Bytes: one token per byte, so a phrase saves its length minus one.
        let text = "big red dog. big red dog, big red dog! a cat a cat a cat";
        let mined = mine(text, &TextTokenizer::Bytes, 3).unwrap();
        // " big red dog" (12 bytes, 3 times: 33) beats " big red" and " red dog" (8 and 8:
        // 21 each); "dog a" never forms across the comma.
        assert_eq!(mined, ["big red dog", "big red", "red dog"]);
        assert!(
            mine("dog a cat, dog a cat", &TextTokenizer::Bytes, 5)
                .unwrap()
                .is_empty(),
            "fewer than 3 occurrences"
        );
    }
}
