//! Fuzz target: the GGUF tokenizer builder (`TextTokenizer::from_gguf_content`), then encode
//! and decode. Structure-aware: an input that starts with "GGUF" goes through the bounded
//! reader as a file (the seeds are real headers); any other input is decoded by `arbitrary`
//! into tokenizer metadata (model, pre-tokenizer, tokens, merges mostly built from the
//! tokens, token types of the right or wrong length and type, BOS/EOS ids), so mutations
//! reach the builder instead of dying in the header.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};
use libfuzzer_sys::fuzz_target;
use llmbench::models::tokenizer::TextTokenizer;
use llmbench::models::{gguf, gguf_reader};
use std::collections::HashMap;
use std::path::Path;

/// Texts every accepted tokenizer encodes: ASCII, digits, whitespace runs, non-ASCII.
const TEXTS: [&str; 3] = ["Hello world 123", "  a\n\nb\t½ 😀", "<|im_start|>user"];

#[derive(Arbitrary, Debug)]
struct Meta<'a> {
    /// 0 -> an arbitrary model name, otherwise "gpt2".
    model: (u8, &'a str),
    /// 0 -> absent, 1 -> "llama-bpe", 2 -> "smollm", 3 -> arbitrary.
    pre: (u8, &'a str),
    tokens: Vec<&'a str>,
    /// Pairs of token indices, joined with a space; a few raw strings on top.
    merges: Vec<(u16, u16)>,
    raw_merges: Vec<&'a str>,
    /// None -> no token types; Some((as_u8, extra, types)): types per token, as i32 or u8,
    /// with `extra` more or fewer entries than tokens when nonzero.
    types: Option<(bool, i8, Vec<i32>)>,
    bos: Option<u32>,
    eos: Option<u32>,
    text: &'a str,
    ids: Vec<u32>,
}

fn strings(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

fn content_of(m: &Meta) -> Content {
    let mut md = HashMap::new();
    let model = if m.model.0 == 0 { m.model.1 } else { "gpt2" };
    md.insert("tokenizer.ggml.model".to_string(), Value::String(model.into()));
    match m.pre.0 % 4 {
        1 => drop(md.insert("tokenizer.ggml.pre".into(), Value::String("llama-bpe".into()))),
        2 => drop(md.insert("tokenizer.ggml.pre".into(), Value::String("smollm".into()))),
        3 => drop(md.insert("tokenizer.ggml.pre".into(), Value::String(m.pre.1.into()))),
        _ => {}
    }
    md.insert("tokenizer.ggml.tokens".into(), strings(m.tokens.iter().map(|t| t.to_string())));
    let n = m.tokens.len().max(1);
    let token = |i: u16| m.tokens.get(i as usize % n).copied().unwrap_or("");
    let merges = m.merges.iter().map(|&(a, b)| format!("{} {}", token(a), token(b)));
    md.insert("tokenizer.ggml.merges".into(), strings(merges.chain(m.raw_merges.iter().map(|s| s.to_string()))));
    if let Some((as_u8, extra, types)) = &m.types {
        let len = (m.tokens.len() as i64 + i64::from(*extra)).max(0) as usize;
        let ty = |i: usize| types.get(i % types.len().max(1)).copied().unwrap_or(1);
        let values = (0..len).map(|i| if *as_u8 { Value::U8(ty(i) as u8) } else { Value::I32(ty(i)) }).collect();
        md.insert("tokenizer.ggml.token_type".into(), Value::Array(values));
    }
    if let Some(id) = m.bos {
        md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(id));
    }
    if let Some(id) = m.eos {
        md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(id));
    }
    Content { magic: VersionedMagic::GgufV3, metadata: md, tensor_infos: HashMap::new(), tensor_data_offset: 0 }
}

fn exercise(content: &Content, text: &str, ids: &[u32]) {
    let path = Path::new("fuzz.gguf");
    let _ = gguf::config_of(content, path);
    let Ok(tok) = TextTokenizer::from_gguf_content(content, path) else { return };
    for t in TEXTS.iter().copied().chain([text]) {
        if let Ok(encoded) = tok.encode(t) {
            assert!(encoded.iter().all(|&id| (id as usize) < tok.id_bound()), "id past the vocabulary");
            let _ = tok.decode(&encoded);
        }
    }
    let _ = tok.decode(ids);
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"GGUF") {
        if let Ok(content) = gguf_reader::parse_header(data) {
            exercise(&content, "hello", &[0, 1, 2, u32::MAX]);
        }
        return;
    }
    let Ok(meta) = Meta::arbitrary_take_rest(Unstructured::new(data)) else { return };
    // Keep each run short: a tokenizer of thousands of tokens adds time, not new paths.
    if meta.tokens.len() > 512 || meta.merges.len() > 1024 || meta.text.len() > 256 {
        return;
    }
    exercise(&content_of(&meta), meta.text, &meta.ids);
});
