//! GGUF files (llama.cpp's format): the header read and validated at open by the bounded
//! reader (`gguf_reader`), tensors read on demand and kept quantized, Llama hyper-parameters
//! read from the metadata, and the Hugging Face tensor names the architectures use translated
//! to GGUF's (`model.layers.3.self_attn.q_proj` -> `blk.3.attn_q`).

use super::config::{LlamaConfig, ModelConfig};
use super::gguf_reader::read_content;
use crate::error::LlmbenchError;
use anyhow::{Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An open, validated GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
    reader: Mutex<File>,
}

impl GgufFile {
    /// Opens the file and reads its header with the bounded reader (`gguf_reader`), which also
    /// checks that every tensor's data lies inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| {
            LlmbenchError::invalid(format!("{}: cannot open ({e}); check the path given to --model", path.display()))
        })?;
        let len = file.metadata().with_context(|| format!("reading {}", path.display()))?.len();
        // Buffered: the header is read a few bytes at a time. Tensor reads later seek absolutely.
        let content = read_content(&mut std::io::BufReader::new(&file), len).map_err(|e| {
            LlmbenchError::invalid(format!(
                "{}: not a complete GGUF file ({e}); download it again, or pass a .gguf produced by llama.cpp",
                path.display()
            ))
        })?;
        Ok(Self { path: path.to_path_buf(), content, reader: Mutex::new(file) })
    }

    pub fn contains(&self, hf_name: &str) -> bool {
        self.content.tensor_infos.contains_key(&gguf_name(hf_name))
    }

    /// Reads one tensor, still quantized, onto `device`.
    pub fn qtensor(&self, hf_name: &str, device: &Device) -> Result<QTensor> {
        let name = gguf_name(hf_name);
        if !self.content.tensor_infos.contains_key(&name) {
            crate::bail_input!(
                "{}: GGUF has no tensor `{name}` (`{hf_name}`), which its llama metadata requires; the file is incomplete or \
                 not a llama model: re-export it with llama.cpp's convert_hf_to_gguf.py",
                self.path.display()
            );
        }
        let mut reader = self.reader.lock().map_err(|_| anyhow::anyhow!("GGUF reader poisoned"))?;
        self.content
            .tensor(&mut *reader, &name, device)
            .with_context(|| format!("{}: reading tensor `{name}`", self.path.display()))
    }

    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata(key).and_then(|v| v.to_string().ok()).map(String::as_str)
    }

    /// The quantization of the attention weights of the first block, e.g. "Q4_1".
    pub fn weight_format(&self) -> String {
        self.content
            .tensor_infos
            .get("blk.0.attn_q.weight")
            .map(|t| format!("{:?}", t.ggml_dtype))
            .unwrap_or_else(|| "unknown".into())
    }

    /// The architecture described by the metadata (llama.cpp's key names).
    pub fn config(&self) -> Result<ModelConfig> {
        config_of(&self.content, &self.path)
    }
}

/// The architecture a GGUF header describes; every error is an input error naming `path`.
/// Public for the fuzz targets, which hold a `Content` but no file.
pub fn config_of(content: &Content, path: &Path) -> Result<ModelConfig> {
    let fail = |why: String| LlmbenchError::invalid(format!("{}: {why}", path.display()));
    let reexport = "re-export the model with llama.cpp's convert_hf_to_gguf.py";
    let arch = match content.metadata.get("general.architecture") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(fail(format!("GGUF metadata general.architecture is not a string; {reexport}"))),
        None => return Err(fail(format!("GGUF metadata general.architecture is missing; {reexport}"))),
    };
    if arch != "llama" {
        return Err(fail(format!(
            "GGUF architecture `{arch}` is not supported: llmbench runs GGUF files of the llama architecture; pass a llama-family \
             GGUF, or the model's Hugging Face id"
        )));
    }
    let meta = |key: &str| content.metadata.get(&format!("llama.{key}"));
    let int = |key: &str| -> Result<Option<usize>> {
        let Some(v) = meta(key) else { return Ok(None) };
        let n = as_u64(v).and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
            fail(format!("GGUF metadata llama.{key} must be a non-negative integer, found {}; {reexport}", shown(v)))
        })?;
        Ok(Some(n))
    };
    let float = |key: &str| -> Result<Option<f64>> {
        let Some(v) = meta(key) else { return Ok(None) };
        let n = as_f64(v).ok_or_else(|| fail(format!("GGUF metadata llama.{key} must be a number, found {}; {reexport}", shown(v))))?;
        Ok(Some(n))
    };
    let need = |key: &str| -> Result<usize> {
        int(key)?.ok_or_else(|| fail(format!("GGUF metadata llama.{key} is missing; the file is incomplete: {reexport}")))
    };
    let hidden_size = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    let embd = content.tensor_infos.get("token_embd.weight");
    let vocab_size = match int("vocab_size")? {
        Some(n) => n,
        None => match embd.map(|t| t.shape.dims()) {
            Some(&[vocab, _]) => vocab,
            Some(dims) => {
                return Err(fail(format!("GGUF tensor token_embd.weight has shape {dims:?}, expected [vocab, {hidden_size}]; {reexport}")))
            }
            None => return Err(fail(format!("GGUF has no token_embd.weight and no llama.vocab_size; {reexport}"))),
        },
    };
    let head_dim = match int("attention.key_length")? {
        Some(d) => d,
        None if heads > 0 && hidden_size % heads == 0 => hidden_size / heads,
        None => {
            return Err(fail(format!(
                "GGUF metadata llama.embedding_length {hidden_size} is not a multiple of llama.attention.head_count {heads}; {reexport}"
            )))
        }
    };
    let token_id = |key: &str| -> Result<Option<u32>> {
        let Some(v) = content.metadata.get(key) else { return Ok(None) };
        let id = as_u64(v).and_then(|n| u32::try_from(n).ok());
        id.map(Some).ok_or_else(|| fail(format!("GGUF metadata {key} must be a token id (a u32), found {}; {reexport}", shown(v))))
    };
    let cfg = LlamaConfig {
        vocab_size,
        hidden_size,
        intermediate_size: need("feed_forward_length")?,
        num_hidden_layers: need("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: int("attention.head_count_kv")?.unwrap_or(heads),
        head_dim,
        rms_norm_eps: float("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        rope_theta: float("rope.freq_base")?.unwrap_or(10_000.0),
        rope_scaling: None,
        max_position_embeddings: int("context_length")?.unwrap_or(2048),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
        rope_interleaved: true,
        bos_token_id: token_id("tokenizer.ggml.bos_token_id")?,
        eos_token_ids: token_id("tokenizer.ggml.eos_token_id")?.into_iter().collect(),
    };
    ModelConfig::Llama(cfg).validated().map_err(|e| fail(format!("{e:#}; {reexport}")))
}

/// An integer metadata value that is not negative, whatever its width.
fn as_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(n) => Some(n.into()),
        Value::U16(n) => Some(n.into()),
        Value::U32(n) => Some(n.into()),
        Value::U64(n) => Some(n),
        Value::I8(n) => u64::try_from(n).ok(),
        Value::I16(n) => u64::try_from(n).ok(),
        Value::I32(n) => u64::try_from(n).ok(),
        Value::I64(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

/// A numeric metadata value (llama.cpp writes floats as f32, counts as u32).
fn as_f64(v: &Value) -> Option<f64> {
    match *v {
        Value::F32(x) => Some(x.into()),
        Value::F64(x) => Some(x),
        Value::I8(n) => Some(n.into()),
        Value::I16(n) => Some(n.into()),
        Value::I32(n) => Some(n.into()),
        Value::I64(n) => Some(n as f64),
        _ => as_u64(v).map(|n| n as f64),
    }
}

/// A metadata value for an error message: its type, and the value when short.
pub(crate) fn shown(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() <= 40 => format!("the string {s:?}"),
        Value::String(_) => "a long string".into(),
        Value::Array(items) => format!("an array of {} values", items.len()),
        other => format!("{other:?}"),
    }
}

/// Hugging Face tensor name -> GGUF tensor name (llama.cpp's convert_hf_to_gguf mapping).
pub fn gguf_name(hf: &str) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else { return hf.to_string() };
    let Some((layer, rest)) = rest.split_once('.') else { return hf.to_string() };
    let (module, suffix) = rest.rsplit_once('.').unwrap_or((rest, ""));
    let mapped = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        other => other,
    };
    format!("blk.{layer}.{mapped}.{suffix}")
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn maps_hf_names_to_gguf() {
        assert_eq!(gguf_name("model.layers.12.self_attn.o_proj.weight"), "blk.12.attn_output.weight");
        assert_eq!(gguf_name("model.layers.0.post_attention_layernorm.weight"), "blk.0.ffn_norm.weight");
        assert_eq!(gguf_name("model.embed_tokens.weight"), "token_embd.weight");
        assert_eq!(gguf_name("rope_freqs.weight"), "rope_freqs.weight");
    }
}
