//! A GGUF writer for tests: a tiny but complete llama model (F32 weights, a byte-level BPE
//! vocabulary of 8 tokens) that llmbench loads and runs, and raw access to every field so a
//! test can break exactly one thing. Follows the GGUF v3 layout (ggml docs/gguf.md).

use candle_core::quantized::gguf_file::Value;

/// GGUF value type ids (the spec's `gguf_metadata_value_type`).
fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.extend(x.to_le_bytes()),
        Value::U16(x) => b.extend(x.to_le_bytes()),
        Value::I16(x) => b.extend(x.to_le_bytes()),
        Value::U32(x) => b.extend(x.to_le_bytes()),
        Value::I32(x) => b.extend(x.to_le_bytes()),
        Value::F32(x) => b.extend(x.to_le_bytes()),
        Value::Bool(x) => b.push(u8::from(*x)),
        Value::String(s) => put_str(b, s),
        Value::Array(items) => {
            b.extend(items.first().map_or(4, type_id).to_le_bytes());
            b.extend((items.len() as u64).to_le_bytes());
            items.iter().for_each(|i| put_value(b, i));
        }
        Value::U64(x) => b.extend(x.to_le_bytes()),
        Value::I64(x) => b.extend(x.to_le_bytes()),
        Value::F64(x) => b.extend(x.to_le_bytes()),
    }
}

pub struct TensorSpec {
    pub name: String,
    /// GGUF order: innermost (row length) first.
    pub ne: Vec<u64>,
    pub dtype: u32,
    pub data: Vec<u8>,
    /// Replaces the computed data offset.
    pub offset: Option<u64>,
}

pub struct Gguf {
    pub kvs: Vec<(String, Value)>,
    pub tensors: Vec<TensorSpec>,
    /// Replaces the real tensor count in the header.
    pub tensor_count: Option<u64>,
}

pub const VOCAB: [&str; 8] = ["<|endoftext|>", "<|im_end|>", "h", "i", "Ġ", "hi", "a", "Ġa"];
const HIDDEN: u64 = 8;
const KV_DIM: u64 = 4;
const FFN: u64 = 16;

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

/// Deterministic small weights (norm scales 1): enough for a forward pass that runs.
fn f32_tensor(name: &str, ne: &[u64]) -> TensorSpec {
    let n: u64 = ne.iter().product();
    let norm = name.contains("norm");
    let data = (0..n).flat_map(|i| if norm { 1.0f32 } else { ((i * 37 % 17) as f32 - 8.0) / 50.0 }.to_le_bytes()).collect();
    TensorSpec { name: name.into(), ne: ne.to_vec(), dtype: 0, data, offset: None }
}

impl Gguf {
    /// One block, hidden 8, 2 heads of 4 sharing 1 KV head, FFN 16, vocabulary 8.
    pub fn tiny_llama() -> Self {
        let kv = |k: &str, v: Value| (k.to_string(), v);
        let kvs = vec![
            kv("general.architecture", Value::String("llama".into())),
            kv("llama.embedding_length", Value::U32(HIDDEN as u32)),
            kv("llama.attention.head_count", Value::U32(2)),
            kv("llama.attention.head_count_kv", Value::U32(1)),
            kv("llama.feed_forward_length", Value::U32(FFN as u32)),
            kv("llama.block_count", Value::U32(1)),
            kv("llama.context_length", Value::U32(64)),
            kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
            kv("llama.rope.freq_base", Value::F32(10_000.0)),
            kv("tokenizer.ggml.model", Value::String("gpt2".into())),
            kv("tokenizer.ggml.tokens", strings(&VOCAB)),
            kv("tokenizer.ggml.merges", strings(&["h i", "Ġ a"])),
            kv("tokenizer.ggml.token_type", Value::Array([3, 3, 1, 1, 1, 1, 1, 1].map(Value::I32).to_vec())),
            kv("tokenizer.ggml.bos_token_id", Value::U32(0)),
            kv("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ];
        let v = VOCAB.len() as u64;
        let tensors = vec![
            f32_tensor("token_embd.weight", &[HIDDEN, v]),
            f32_tensor("blk.0.attn_norm.weight", &[HIDDEN]),
            f32_tensor("blk.0.attn_q.weight", &[HIDDEN, HIDDEN]),
            f32_tensor("blk.0.attn_k.weight", &[HIDDEN, KV_DIM]),
            f32_tensor("blk.0.attn_v.weight", &[HIDDEN, KV_DIM]),
            f32_tensor("blk.0.attn_output.weight", &[HIDDEN, HIDDEN]),
            f32_tensor("blk.0.ffn_norm.weight", &[HIDDEN]),
            f32_tensor("blk.0.ffn_gate.weight", &[HIDDEN, FFN]),
            f32_tensor("blk.0.ffn_up.weight", &[HIDDEN, FFN]),
            f32_tensor("blk.0.ffn_down.weight", &[FFN, HIDDEN]),
            f32_tensor("output_norm.weight", &[HIDDEN]),
        ];
        Self { kvs, tensors, tensor_count: None }
    }

    /// Sets (or adds) a metadata value.
    pub fn set(&mut self, key: &str, v: Value) -> &mut Self {
        match self.kvs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.kvs.push((key.into(), v)),
        }
        self
    }

    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.kvs.retain(|(k, _)| k != key);
        self
    }

    pub fn tensor(&mut self, name: &str) -> &mut TensorSpec {
        self.tensors.iter_mut().find(|t| t.name == name).expect("no such tensor")
    }

    /// The file's bytes; data aligned to 32 as the spec's default alignment.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(self.tensor_count.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        b.extend((self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut b, k);
            b.extend(type_id(v).to_le_bytes());
            put_value(&mut b, v);
        }
        let mut offset = 0u64;
        let mut data = Vec::new();
        for t in &self.tensors {
            put_str(&mut b, &t.name);
            b.extend((t.ne.len() as u32).to_le_bytes());
            t.ne.iter().for_each(|d| b.extend(d.to_le_bytes()));
            b.extend(t.dtype.to_le_bytes());
            b.extend(t.offset.unwrap_or(offset).to_le_bytes());
            data.extend(&t.data);
            data.resize(data.len().next_multiple_of(32), 0);
            offset = data.len() as u64;
        }
        b.resize(b.len().next_multiple_of(32), 0);
        b.extend(data);
        b
    }

    pub fn write(&self, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.bytes()).unwrap();
        path
    }
}
