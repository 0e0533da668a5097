//! What `http` sends: `--dataset random:IN:OUT` (IN token ids drawn from the model's vocabulary
//! with the seed, decoded to text through our tokenizer; OUT tokens asked for), `prompts` (the
//! built-in prompts), `jsonl:PATH` (a `prompt` or `text` field a line, optional `max_tokens`)
//! or `sharegpt:PATH` (the first human turn of each conversation; the first reply's length in
//! tokens is its max_tokens, as `vllm bench serve` does). Requests cycle through the items
//! in a seeded order when `--num-prompts` asks for more than there are.

use crate::error::LlmbenchError;
use crate::models::tokenizer::TextTokenizer;
use anyhow::Result;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A parsed `--dataset`.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    Random { input: usize, output: usize },
    Prompts,
    Jsonl(PathBuf),
    ShareGpt(PathBuf),
}

impl std::str::FromStr for Dataset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let form = "expected random:IN:OUT, prompts, jsonl:PATH or sharegpt:PATH";
        if s == "prompts" {
            return Ok(Self::Prompts);
        }
        if let Some(rest) = s.strip_prefix("random:") {
            let (i, o) = rest
                .split_once(':')
                .ok_or_else(|| format!("--dataset {s}: {form}"))?;
            let num = |t: &str| {
                t.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--dataset {s}: lengths must be whole numbers above 0"))
            };
            return Ok(Self::Random {
                input: num(i)?,
                output: num(o)?,
            });
        }
        if let Some(p) = s.strip_prefix("jsonl:").filter(|p| !p.is_empty()) {
            return Ok(Self::Jsonl(p.into()));
        }
        if let Some(p) = s.strip_prefix("sharegpt:").filter(|p| !p.is_empty()) {
            return Ok(Self::ShareGpt(p.into()));
        }
        Err(format!("--dataset {s}: {form}"))
    }
}

/// One request's prompt and, where the dataset says, its output length.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub prompt: String,
    pub max_tokens: Option<usize>,
}

/// The items of a dataset (before cycling to `--num-prompts`), and the sha256 of its file.
pub fn load(
    dataset: &Dataset,
    tokenizer: &TextTokenizer,
    builtin: &[&str],
    seed: u64,
    count: usize,
) -> Result<(Vec<Item>, Option<String>)> {
    Ok(match dataset {
        Dataset::Random { input, output } => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let bound = tokenizer.id_bound().max(2) as u32;
            let items = (0..count)
                .map(|_| {
                    let ids: Vec<u32> = (0..*input).map(|_| rng.random_range(0..bound)).collect();
                    Ok(Item {
                        prompt: tokenizer.decode(&ids)?,
                        max_tokens: Some(*output),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            (items, None)
        }
        Dataset::Prompts => (
            builtin
                .iter()
                .map(|p| Item {
                    prompt: p.to_string(),
                    max_tokens: None,
                })
                .collect(),
            None,
        ),
        Dataset::Jsonl(path) => {
            let text = read(path)?;
            let mut items = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| bad(path, &format!("line {} is not JSON ({e})", i + 1)))?;
                let prompt = v
                    .get("prompt")
                    .or_else(|| v.get("text"))
                    .and_then(Value::as_str);
                let prompt = prompt.ok_or_else(|| {
                    bad(
                        path,
                        &format!("line {} has no \"prompt\" (or \"text\") string", i + 1),
                    )
                })?;
                let max_tokens = v
                    .get("max_tokens")
                    .or_else(|| v.get("output_len"))
                    .and_then(Value::as_u64)
                    .map(|n| n as usize);
                items.push(Item {
                    prompt: prompt.to_string(),
                    max_tokens,
                });
            }
            if items.is_empty() {
                return Err(bad(path, "holds no prompts").into());
            }
            (items, Some(sha256(&text)))
        }
        Dataset::ShareGpt(path) => {
            let text = read(path)?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| bad(path, &format!("is not JSON ({e})")))?;
            let entries = v
                .as_array()
                .ok_or_else(|| bad(path, "is not a JSON array of conversations"))?;
            let mut items = Vec::new();
            for entry in entries {
                let Some(turns) = entry.get("conversations").and_then(Value::as_array) else {
                    continue;
                };
                let text_of =
                    |t: &Value| t.get("value").and_then(Value::as_str).map(str::to_string);
                let role = |t: &Value| {
                    t.get("from")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let Some(first) = turns.iter().position(|t| role(t) == "human") else {
                    continue;
                };
                let Some(prompt) = text_of(&turns[first]) else {
                    continue;
                };
                let reply = turns[first + 1..]
                    .iter()
                    .find(|t| role(t) == "gpt")
                    .and_then(text_of);
                let max_tokens = match reply {
                    Some(r) => Some(tokenizer.encode(&r)?.len().max(1)),
                    None => None,
                };
                items.push(Item { prompt, max_tokens });
            }
            if items.is_empty() {
                return Err(bad(path, "has no conversations with a human turn (ShareGPT: [{\"conversations\": [{\"from\": \"human\", \"value\": ...}]}])").into());
            }
            (items, Some(sha256(&text)))
        }
    })
}

/// `n` requests from `items`: all of them in a seeded order, cycled (reshuffled each pass).
pub fn sample(items: &[Item], n: usize, seed: u64) -> Vec<Item> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n && !items.is_empty() {
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.shuffle(&mut rng);
        out.extend(
            order
                .into_iter()
                .take(n - out.len())
                .map(|i| items[i].clone()),
        );
    }
    out
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        LlmbenchError::invalid(format!("--dataset {}: cannot read ({e})", path.display()))
    })
}

fn bad(path: &Path, why: &str) -> anyhow::Error {
    LlmbenchError::invalid(format!("--dataset {}: {why}", path.display()))
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_forms_or_says_them() {
        assert_eq!(
            "random:32:8".parse::<Dataset>().unwrap(),
            Dataset::Random {
                input: 32,
                output: 8
            }
        );
        assert_eq!("prompts".parse::<Dataset>().unwrap(), Dataset::Prompts);
        assert_eq!(
            "sharegpt:a.json".parse::<Dataset>().unwrap(),
            Dataset::ShareGpt("a.json".into())
        );
        for bad in ["random:0:8", "random:8", "jsonl:", "x"] {
            assert!(
                bad.parse::<Dataset>().unwrap_err().contains("--dataset"),
                "{bad}"
            );
        }
    }

    #[test]
    fn random_prompts_are_seeded_and_sampling_cycles() {
        let t = TextTokenizer::Bytes;
        let d = Dataset::Random {
            input: 16,
            output: 4,
        };
        let (a, _) = load(&d, &t, &[], 1, 3).unwrap();
        assert_eq!(a, load(&d, &t, &[], 1, 3).unwrap().0);
        assert_ne!(a, load(&d, &t, &[], 2, 3).unwrap().0);
        assert_eq!(a[0].max_tokens, Some(4));
        let s = sample(&a, 7, 0);
        assert_eq!(s.len(), 7);
        assert!(
            a.iter().all(|i| s[..3].contains(i)),
            "each pass takes every item once"
        );
    }

    #[test]
    fn sharegpt_takes_the_first_human_turn_and_refuses_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, r#"[{"conversations":[{"from":"system","value":"x"},{"from":"human","value":"hi"},{"from":"gpt","value":"hello there"}]},{"id":1}]"#).unwrap();
        let (items, sha) = load(
            &Dataset::ShareGpt(path.clone()),
            &TextTokenizer::Bytes,
            &[],
            0,
            0,
        )
        .unwrap();
        assert_eq!(
            items,
            vec![Item {
                prompt: "hi".into(),
                max_tokens: Some(11)
            }]
        );
        assert!(sha.is_some());
        std::fs::write(&path, r#"[{"id":1}]"#).unwrap();
        let err = load(&Dataset::ShareGpt(path), &TextTokenizer::Bytes, &[], 0, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no conversations"), "{err}");
    }
}
