//! Tokenizers: a `tokenizer.json`, or a byte-level BPE rebuilt from GGUF metadata (vocabulary,
//! merges, token types and the `tokenizer.ggml.pre` pre-tokenizer name, following llama.cpp's
//! `llama-vocab.cpp` regexes), or raw bytes when `--no-weights` has no tokenizer at all.

use super::gguf::GgufFile;
use crate::error::LlmbenchError;
use anyhow::{Context, Result};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// GGUF token types (llama.cpp `llama_token_type`): 3 = control, 4 = user defined.
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Llama 3's pre-tokenizer split ("llama-bpe" in llama.cpp, the `Split` in its tokenizer.json).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Text <-> token ids.
pub enum TextTokenizer {
    Hf { tokenizer: Box<Tokenizer>, origin: String },
    /// One token per UTF-8 byte: for random-weight speed runs that have no vocabulary.
    Bytes,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path).map_err(|e| {
            LlmbenchError::invalid(format!("{}: not a valid tokenizer.json ({e})", path.display()))
        })?;
        Ok(Self::Hf { tokenizer: Box::new(tokenizer), origin: "tokenizer.json".into() })
    }

    /// Rebuilds the tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model = file.metadata_str("tokenizer.ggml.model").unwrap_or("");
        if model != "gpt2" {
            return Err(anyhow::Error::new(LlmbenchError::Unsupported(format!(
                "{}: tokenizer.ggml.model `{model}`; llmbench rebuilds byte-level BPE (\"gpt2\") tokenizers from GGUF",
                file.path.display()
            ))));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            let values = file.metadata(key).with_context(|| format!("{}: metadata {key} missing", file.path.display()))?;
            values
                .to_vec()?
                .iter()
                .map(|v| v.to_string().cloned().map_err(anyhow::Error::from))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("{}: metadata {key}", file.path.display()))
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .with_context(|| format!("{}: merge `{m}` has no space", file.path.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let types: Vec<i32> = match file.metadata("tokenizer.ggml.token_type") {
            Some(v) => v.to_vec()?.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
            None => vec![],
        };
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| anyhow::anyhow!("{}: building BPE: {e}", file.path.display()))?;
        let mut tokenizer = Tokenizer::new(bpe);
        let pre = file.metadata_str("tokenizer.ggml.pre").unwrap_or("default");
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter())
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .map(|(tok, &t)| AddedToken::from(tok.clone(), t == TOKEN_TYPE_CONTROL))
            .collect();
        tokenizer.add_special_tokens(&special);
        Ok(Self::Hf { tokenizer: Box::new(tokenizer), origin: format!("gguf (pre: {pre})") })
    }

    /// Token ids of `text`, without BOS/EOS (prompts are used as given).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Hf { tokenizer, .. } => Ok(tokenizer
                .encode(text, false)
                .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?
                .get_ids()
                .to_vec()),
            Self::Bytes => Ok(text.bytes().map(u32::from).collect()),
        }
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Self::Hf { tokenizer, .. } => tokenizer.decode(ids, false).map_err(|e| anyhow::anyhow!("decoding: {e}")),
            Self::Bytes => Ok(String::from_utf8_lossy(&ids.iter().map(|&i| (i % 256) as u8).collect::<Vec<_>>()).into_owned()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Hf { origin, .. } => origin.clone(),
            Self::Bytes => "bytes (no tokenizer: one id per UTF-8 byte)".into(),
        }
    }
}

/// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` name.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level = |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    Ok(match pre {
        "llama-bpe" | "llama3" => {
            let split = Split::new(SplitPattern::Regex(LLAMA3_SPLIT.into()), SplitDelimiterBehavior::Isolated, false)
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
