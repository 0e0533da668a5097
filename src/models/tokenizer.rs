//! Tokenizers: a `tokenizer.json`, or a byte-level BPE rebuilt from GGUF metadata (vocabulary,
//! merges, token types and the `tokenizer.ggml.pre` pre-tokenizer name, following llama.cpp's
//! `llama-vocab.cpp` regexes), or raw bytes when `--no-weights` has no tokenizer at all.

use super::gguf::{shown, GgufFile};
use crate::error::LlmbenchError;
use anyhow::Result;
use candle_core::quantized::gguf_file::{Content, Value};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// GGUF token types (llama.cpp `llama_token_type`): 3 = control, 4 = user defined.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Llama 3's pre-tokenizer split ("llama-bpe" in llama.cpp, the `Split` in its tokenizer.json).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Text <-> token ids.
pub enum TextTokenizer {
    /// `ids`: one more than the largest id it can produce.
    Hf { tokenizer: Box<Tokenizer>, origin: String, ids: usize },
    /// One token per UTF-8 byte: for random-weight speed runs that have no vocabulary.
    Bytes,
    /// A base tokenizer plus phrase tokens (adaptivocab): the base encodes, then every run of
    /// base ids that spells a phrase becomes the phrase's id (`PhraseMerges`); decoding
    /// expands phrase ids back, so decode(encode(x)) is the base tokenizer's round trip.
    Merged { base: Box<TextTokenizer>, merges: PhraseMerges },
}

/// Phrase tokens over a base vocabulary: phrase k is `first_id + k` and stands for
/// `constituents[k]`.
#[derive(Debug, Clone)]
pub struct PhraseMerges {
    pub first_id: u32,
    pub constituents: Vec<Vec<u32>>,
    /// Phrase indices by first constituent, longest first.
    by_first: std::collections::HashMap<u32, Vec<usize>>,
}

impl PhraseMerges {
    pub fn new(first_id: u32, constituents: Vec<Vec<u32>>) -> Self {
        let mut by_first: std::collections::HashMap<u32, Vec<usize>> = std::collections::HashMap::new();
        for (k, ids) in constituents.iter().enumerate() {
            by_first.entry(ids[0]).or_default().push(k);
        }
        for list in by_first.values_mut() {
            list.sort_by_key(|&k| std::cmp::Reverse(constituents[k].len()));
        }
        Self { first_id, constituents, by_first }
    }

    /// `ids` with every phrase merged, left to right, the longest phrase first at each
    /// position. Phrases have two or more constituents, so a merge always shortens.
    pub fn merge(&self, ids: &[u32]) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len());
        let mut i = 0;
        while i < ids.len() {
            let found = self.by_first.get(&ids[i]).and_then(|list| list.iter().find(|&&k| ids[i..].starts_with(&self.constituents[k])));
            match found {
                Some(&k) => {
                    out.push(self.first_id + k as u32);
                    i += self.constituents[k].len();
                }
                None => {
                    out.push(ids[i]);
                    i += 1;
                }
            }
        }
        out
    }

    /// `ids` with every phrase id replaced by its constituents.
    pub fn expand(&self, ids: &[u32]) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            match id.checked_sub(self.first_id).and_then(|k| self.constituents.get(k as usize)) {
                Some(parts) => out.extend_from_slice(parts),
                None => out.push(id),
            }
        }
        out
    }
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path).map_err(|e| {
            LlmbenchError::invalid(format!("{}: not a valid tokenizer.json ({e})", path.display()))
        })?;
        let ids = tokenizer.get_vocab(true).values().max().map_or(0, |&m| m as usize + 1);
        Ok(Self::Hf { tokenizer: Box::new(tokenizer), origin: "tokenizer.json".into(), ids })
    }

    /// Rebuilds the tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        Self::from_gguf_content(&file.content, &file.path)
    }

    /// Rebuilds a byte-level BPE from GGUF metadata (`tokenizer.ggml.*`). Every malformed
    /// field is an input error naming `path`. Public for the fuzz targets, which hold a
    /// `Content` but no file.
    pub fn from_gguf_content(content: &Content, path: &Path) -> Result<Self> {
        let fail = |why: String| {
            LlmbenchError::invalid(format!(
                "{}: {why}; the GGUF tokenizer is malformed: re-export the model with llama.cpp's convert_hf_to_gguf.py",
                path.display()
            ))
        };
        let meta = |key: &str| content.metadata.get(key);
        match meta("tokenizer.ggml.model") {
            Some(Value::String(m)) if m == "gpt2" => {}
            Some(Value::String(m)) => crate::bail_input!(
                "{}: GGUF tokenizer.ggml.model `{m}` is not supported: llmbench rebuilds byte-level BPE (\"gpt2\") \
                 tokenizers from GGUF; pass the model's Hugging Face id (its tokenizer.json) instead",
                path.display()
            ),
            Some(v) => return Err(fail(format!("tokenizer.ggml.model is {}, not a string", shown(v)))),
            None => return Err(fail("tokenizer.ggml.model is missing".into())),
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            let items = match meta(key) {
                Some(Value::Array(items)) => items,
                Some(v) => return Err(fail(format!("{key} is {}, not an array of strings", shown(v)))),
                None => return Err(fail(format!("{key} is missing"))),
            };
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(fail(format!("{key}[{i}] is {}, not a string", shown(other)))),
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(fail("tokenizer.ggml.tokens is empty".into()));
        }
        let merges = strings("tokenizer.ggml.merges")?
            .into_iter()
            .enumerate()
            .map(|(i, m)| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(fail(format!("tokenizer.ggml.merges[{i}] `{m}` has no space"))),
            })
            .collect::<Result<Vec<_>>>()?;
        let types: Vec<i64> = match meta("tokenizer.ggml.token_type") {
            None => vec![],
            Some(Value::Array(items)) => {
                if items.len() != tokens.len() {
                    return Err(fail(format!(
                        "tokenizer.ggml.token_type has {} entries for {} tokens",
                        items.len(),
                        tokens.len()
                    )));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| as_int(v).ok_or_else(|| fail(format!("tokenizer.ggml.token_type[{i}] is {}, not an integer", shown(v)))))
                    .collect::<Result<_>>()?
            }
            Some(v) => return Err(fail(format!("tokenizer.ggml.token_type is {}, not an array of integers", shown(v)))),
        };
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| fail(format!("building the BPE: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        let pre = match meta("tokenizer.ggml.pre") {
            None => "default",
            Some(Value::String(p)) => p.as_str(),
            Some(v) => return Err(fail(format!("tokenizer.ggml.pre is {}, not a string", shown(v)))),
        };
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        // An empty special token can match nothing; tokenizers' added-vocabulary matcher is
        // not built for it.
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter())
            .filter(|(tok, &t)| !tok.is_empty() && (t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED))
            .map(|(tok, &t)| AddedToken::from(tok.clone(), t == TOKEN_TYPE_CONTROL))
            .collect();
        tokenizer.add_special_tokens(&special);
        Ok(Self::Hf { tokenizer: Box::new(tokenizer), origin: format!("gguf (pre: {pre})"), ids: tokens.len() })
    }

    /// The tokenizer as a tokenizer.json (what `quantize --save` writes beside a model).
    pub fn to_json(&self) -> Result<String> {
        match self {
            Self::Hf { tokenizer, .. } => tokenizer.to_string(false).map_err(|e| anyhow::anyhow!("serializing the tokenizer: {e}")),
            Self::Bytes => anyhow::bail!("a byte tokenizer (random weights without a vocabulary) has no tokenizer.json"),
            Self::Merged { .. } => anyhow::bail!("a tokenizer with phrase tokens (adaptivocab) has no tokenizer.json"),
        }
    }

    /// One more than the largest id the tokenizer can produce (None for raw bytes: 256).
    pub fn id_bound(&self) -> usize {
        match self {
            Self::Hf { ids, .. } => *ids,
            Self::Bytes => 256,
            Self::Merged { merges, .. } => merges.first_id as usize + merges.constituents.len(),
        }
    }

    /// Token ids of `text`, without BOS/EOS (prompts are used as given).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_ids(text, false)
    }

    /// Ids of `text` with the tokenizer's special tokens added as its post-processor says
    /// (BOS for Llama-2's tokenizer, nothing for GPT-2's): what `tokenizer(text)` gives in
    /// transformers, which TruthfulQA scoring follows.
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_ids(text, true)
    }

    fn encode_ids(&self, text: &str, special_tokens: bool) -> Result<Vec<u32>> {
        match self {
            Self::Hf { tokenizer, .. } => Ok(tokenizer
                .encode(text, special_tokens)
                .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?
                .get_ids()
                .to_vec()),
            Self::Bytes => Ok(text.bytes().map(u32::from).collect()),
            Self::Merged { base, merges } => Ok(merges.merge(&base.encode_ids(text, special_tokens)?)),
        }
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Self::Hf { tokenizer, .. } => tokenizer.decode(ids, false).map_err(|e| anyhow::anyhow!("decoding: {e}")),
            Self::Bytes => Ok(String::from_utf8_lossy(&ids.iter().map(|&i| (i % 256) as u8).collect::<Vec<_>>()).into_owned()),
            Self::Merged { base, merges } => base.decode(&merges.expand(ids)),
        }
    }

    /// `ids` in the base vocabulary: phrase tokens expanded to their constituents (the ids
    /// unchanged for every other tokenizer), so outputs compare position by position with a
    /// base model's.
    pub fn base_ids(&self, ids: &[u32]) -> Vec<u32> {
        match self {
            Self::Merged { merges, .. } => merges.expand(ids),
            _ => ids.to_vec(),
        }
    }

    /// Whether both map the same token strings to the same ids (speculative decoding's draft
    /// must share the target's vocabulary; raw bytes match raw bytes).
    pub fn same_vocabulary(&self, other: &TextTokenizer) -> bool {
        match (self, other) {
            (Self::Hf { tokenizer: a, .. }, Self::Hf { tokenizer: b, .. }) => a.get_vocab(true) == b.get_vocab(true),
            (Self::Bytes, Self::Bytes) => true,
            (Self::Merged { base: a, merges: m }, Self::Merged { base: b, merges: n }) => {
                a.same_vocabulary(b) && m.first_id == n.first_id && m.constituents == n.constituents
            }
            _ => false,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Hf { origin, .. } => origin.clone(),
            Self::Bytes => "bytes (no tokenizer: one id per UTF-8 byte)".into(),
            Self::Merged { base, merges } => format!("{} + {} phrase tokens (adaptivocab)", base.describe(), merges.constituents.len()),
        }
    }
}

/// A token type: llama.cpp writes i32, other writers any integer width.
fn as_int(v: &Value) -> Option<i64> {
    match *v {
        Value::I8(n) => Some(n.into()),
        Value::I16(n) => Some(n.into()),
        Value::I32(n) => Some(n.into()),
        Value::I64(n) => Some(n),
        Value::U8(n) => Some(n.into()),
        Value::U16(n) => Some(n.into()),
        Value::U32(n) => Some(n.into()),
        Value::U64(n) => i64::try_from(n).ok(),
        _ => None,
    }
}

/// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` name.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level = |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    Ok(match pre {
        "llama-bpe" | "llama3" => {
            // Compiled once per process: the regex's Unicode classes take milliseconds to build.
            static SPLIT: std::sync::OnceLock<std::result::Result<Split, String>> = std::sync::OnceLock::new();
            let split = SPLIT
                .get_or_init(|| {
                    Split::new(SplitPattern::Regex(LLAMA3_SPLIT.into()), SplitDelimiterBehavior::Isolated, false)
                        .map_err(|e| e.to_string())
                })
                .clone()
                .map_err(|e| anyhow::anyhow!("llama3 pre-tokenizer regex: {e}"))?;
            PreTokenizerWrapper::Sequence(Sequence::new(vec![split.into(), byte_level(false)]))
        }
        // GPT-2's regex. For "smollm" and "starcoder", llama.cpp and SmolLM2's own tokenizer.json
        // first split every numeric character apart; transformers' GGUF loader does not, and it is
        // our reference. The two differ only for a non-ASCII numeral after a space (" ½"): the
        // vocabulary has no token that joins ASCII digits to anything.
        _ => byte_level(true),
    })
}
