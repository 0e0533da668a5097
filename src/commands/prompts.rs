//! Prompts for benchmark runs: `--prompt` (repeatable), `--prompts-file` (plain lines, or JSONL
//! with a "prompt" field), or a built-in set of five varied prompts.

use crate::error::LlmbenchError;
use anyhow::Result;
use std::path::Path;

/// Definition, explanation, how-it-works, and two ~150-word passages to summarise.
pub const BUILT_IN: [&str; 5] = [
    "Define the term \"photosynthesis\" in one precise sentence, then give one example of an organism that performs it.",
    "Explain why the sky appears blue during the day and red or orange at sunset.",
    "How does a refrigerator keep food cold? Describe the refrigeration cycle step by step.",
    "Summarize the following passage in two sentences.\n\nThe printing press, developed by Johannes Gutenberg around 1440, \
     transformed the way information spread across Europe. Before its invention, books were copied by hand, a slow and \
     expensive process that kept literacy confined to clergy and the wealthy. Gutenberg combined movable metal type, an \
     oil-based ink and a screw press adapted from wine making, which together allowed pages to be produced quickly and \
     consistently. Within fifty years, printing shops had opened in more than two hundred cities, and millions of books \
     were in circulation. The lower cost of printed material helped spread new scientific ideas, supported the \
     Protestant Reformation by distributing pamphlets and translated Bibles, and standardized spelling and grammar in \
     many languages. Historians often credit the press with laying the groundwork for the Renaissance, the Scientific \
     Revolution and, eventually, mass education, because knowledge could now be preserved and shared far beyond a \
     single library.\n\nSummary:",
    "Summarize the following passage in two sentences.\n\nCoral reefs cover less than one percent of the ocean floor, yet \
     they support roughly a quarter of all marine species. Reefs are built over thousands of years by tiny animals \
     called polyps, which secrete calcium carbonate skeletons and live in partnership with algae that provide them with \
     food through photosynthesis. This partnership is sensitive to temperature: when the water becomes too warm for \
     several weeks, the polyps expel their algae and turn white, a process known as bleaching. Bleached corals can \
     recover if conditions improve, but repeated or prolonged heat waves often kill them. Besides warming, reefs face \
     pollution, overfishing and ocean acidification, which makes it harder for corals to build their skeletons. \
     Scientists are testing ways to help, from breeding heat-tolerant corals to restoring damaged areas with nursery \
     fragments, while stressing that cutting greenhouse gas emissions remains essential.\n\nSummary:",
];

/// Each built-in prompt's query type and the keywords a good answer mentions (seed 002's query
/// set: definition, explanation, how-it-works and two summarisations), in `BUILT_IN`'s order.
pub const BUILT_IN_QUERIES: [(&str, &[&str]); 5] = [
    ("definition", &["light", "energy", "carbon dioxide", "oxygen", "glucose"]),
    ("explanation", &["scattering", "wavelength", "blue", "sunlight", "atmosphere"]),
    ("how-it-works", &["refrigerant", "compressor", "evaporator", "condenser", "heat"]),
    ("summarisation", &["Gutenberg", "printing", "books", "Europe", "1440"]),
    ("summarisation", &["coral", "reef", "bleaching", "algae", "species"]),
];

/// The query types and keywords of `texts` when they are the built-in set; empty otherwise.
pub fn built_in_queries(texts: &[String]) -> (Vec<String>, Vec<Vec<String>>) {
    if texts.len() != BUILT_IN.len() || texts.iter().zip(BUILT_IN).any(|(t, b)| t != b) {
        return (vec![], vec![]);
    }
    BUILT_IN_QUERIES
        .iter()
        .map(|(kind, keywords)| (kind.to_string(), keywords.iter().map(|k| k.to_string()).collect()))
        .unzip()
}

/// The prompts a run uses, from flags or the built-in set.
pub fn load(prompts: &[String], file: Option<&Path>) -> Result<Vec<String>> {
    let mut out: Vec<String> = prompts.to_vec();
    if let Some(path) = file {
        out.extend(read_file(path)?);
    }
    if out.is_empty() {
        return Ok(BUILT_IN.iter().map(|s| s.to_string()).collect());
    }
    if let Some(i) = out.iter().position(|p| p.trim().is_empty()) {
        crate::bail_input!("prompt {} is empty: every --prompt needs text", i + 1);
    }
    Ok(out)
}

/// Each prompt's token ids, cut or cycled to exactly `tokens` when given (`--prompt-tokens`).
pub fn token_ids(tokenizer: &crate::models::tokenizer::TextTokenizer, texts: &[String], tokens: Option<usize>) -> Result<Vec<Vec<u32>>> {
    if tokens == Some(0) {
        crate::bail_input!("--prompt-tokens 0: a prompt needs at least 1 token");
    }
    texts
        .iter()
        .map(|text| {
            let ids = tokenizer.encode(text)?;
            Ok(match tokens {
                Some(n) => sized(&ids, n),
                None => ids,
            })
        })
        .collect()
}

/// `ids` repeated as often as needed and cut to `n` (empty stays empty).
fn sized(ids: &[u32], n: usize) -> Vec<u32> {
    ids.iter().copied().cycle().take(if ids.is_empty() { 0 } else { n }).collect()
}

fn read_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LlmbenchError::invalid(format!("--prompts-file {}: cannot read ({e})", path.display())))?;
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        crate::bail_input!("--prompts-file {}: no prompts in the file", path.display());
    }
    let jsonl = path.extension().is_some_and(|e| e == "jsonl") || lines[0].1.trim_start().starts_with('{');
    if !jsonl {
        return Ok(lines.into_iter().map(|(_, l)| l.to_string()).collect());
    }
    lines
        .into_iter()
        .map(|(i, line)| {
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                LlmbenchError::invalid(format!("--prompts-file {}:{}: not valid JSON ({e})", path.display(), i + 1))
            })?;
            match value.get("prompt").and_then(|p| p.as_str()) {
                Some(p) if !p.trim().is_empty() => Ok(p.to_string()),
                _ => Err(LlmbenchError::invalid(format!(
                    "--prompts-file {}:{}: needs a non-empty string field \"prompt\"",
                    path.display(),
                    i + 1
                ))),
            }
        })
        .collect()
}

/// Tokens of the text's beginning, at least `needed` of them where the text has them.
/// Tokenizing a whole multi-megabyte corpus costs seconds for nothing, so the prefix doubles
/// until it holds more than `needed` tokens (the last one may be cut mid-word and is not used).
pub fn tokens_of_prefix(tokenizer: &crate::models::tokenizer::TextTokenizer, text: &str, needed: usize) -> Result<Vec<u32>> {
    let mut chars = needed * 8;
    loop {
        let end = text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i);
        let ids = tokenizer.encode(&text[..end])?;
        if ids.len() > needed || end == text.len() {
            return Ok(ids);
        }
        chars *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in set carries its query types and keywords; any other prompt set carries none,
    /// and every keyword of a summarisation occurs in the passage it summarises.
    #[test]
    fn built_in_queries_come_with_types_and_keywords() {
        let built_in: Vec<String> = BUILT_IN.iter().map(|s| s.to_string()).collect();
        let (types, keywords) = built_in_queries(&built_in);
        assert_eq!(types, ["definition", "explanation", "how-it-works", "summarisation", "summarisation"]);
        assert!(keywords.iter().all(|k| k.len() == 5));
        for i in [3, 4] {
            let coverage = crate::metrics::diversity::keyword_coverage(BUILT_IN[i], &keywords[i]);
            assert_eq!(coverage, 1.0, "{:?}", keywords[i]);
        }
        assert_eq!(built_in_queries(&built_in[..4]), (vec![], vec![]));
        assert_eq!(built_in_queries(&["hi".to_string()]), (vec![], vec![]));
    }

    #[test]
    fn sizes_prompts_by_cutting_or_cycling() {
        assert_eq!(sized(&[1, 2, 3], 2), [1, 2]);
        assert_eq!(sized(&[1, 2, 3], 7), [1, 2, 3, 1, 2, 3, 1]);
        assert!(sized(&[], 4).is_empty());
    }

    #[test]
    fn reads_lines_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("p.txt");
        std::fs::write(&plain, "first\n\nsecond\n").unwrap();
        assert_eq!(load(&[], Some(&plain)).unwrap(), vec!["first", "second"]);
        let jsonl = dir.path().join("p.jsonl");
        std::fs::write(&jsonl, "{\"prompt\": \"a\", \"id\": 1}\n{\"prompt\": \"b\"}\n").unwrap();
        assert_eq!(load(&["x".into()], Some(&jsonl)).unwrap(), vec!["x", "a", "b"]);
        std::fs::write(&jsonl, "{\"text\": \"a\"}\n").unwrap();
        assert!(load(&[], Some(&jsonl)).is_err());
        assert_eq!(load(&[], None).unwrap().len(), 5);
    }
}
