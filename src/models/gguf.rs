//! GGUF files (llama.cpp's format): validated at open, tensors read on demand and kept
//! quantized, Llama hyper-parameters read from the metadata, and the Hugging Face tensor
//! names the architectures use translated to GGUF's (`model.layers.3.self_attn.q_proj` ->
//! `blk.3.attn_q`).

use super::config::{LlamaConfig, ModelConfig};
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
    /// Opens and checks that the file holds every byte its tensor table promises.
    pub fn open(path: &Path) -> Result<Self> {
        let corrupt = |why: String| {
            LlmbenchError::invalid(format!(
                "{}: {why}; it is not a complete GGUF file: download it again, or pass a .gguf produced by llama.cpp",
                path.display()
            ))
        };
        let mut reader = File::open(path).map_err(|e| {
            LlmbenchError::invalid(format!("{}: cannot open ({e}); check the path given to --model", path.display()))
        })?;
        let content = Content::read(&mut reader).map_err(|e| corrupt(format!("unreadable header ({})", crate::error::first_line(&e))))?;
        let len = reader.metadata().with_context(|| format!("reading {}", path.display()))?.len();
        let needed = content
            .tensor_infos
            .values()
            .map(|t| {
                let bytes = t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size();
                content.tensor_data_offset + t.offset + bytes as u64
            })
            .max()
            .unwrap_or(content.tensor_data_offset);
        if needed > len {
            return Err(corrupt(format!("holds {len} bytes but its tensors need {needed} (truncated)")));
        }
        Ok(Self { path: path.to_path_buf(), content, reader: Mutex::new(reader) })
    }

    pub fn contains(&self, hf_name: &str) -> bool {
        self.content.tensor_infos.contains_key(&gguf_name(hf_name))
    }

    /// Reads one tensor, still quantized, onto `device`.
    pub fn qtensor(&self, hf_name: &str, device: &Device) -> Result<QTensor> {
        let name = gguf_name(hf_name);
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
        let arch = self.metadata_str("general.architecture").unwrap_or("");
        if arch != "llama" {
            return Err(anyhow::Error::new(LlmbenchError::Unsupported(format!(
                "{}: GGUF architecture `{arch}`; llmbench runs GGUF files of the llama architecture",
                self.path.display()
            ))));
        }
        let num = |key: &str| -> Result<Option<f64>> {
            let Some(v) = self.metadata(&format!("llama.{key}")) else { return Ok(None) };
            let n = v
                .to_u32()
                .map(f64::from)
                .or_else(|_| v.to_u64().map(|n| n as f64))
                .or_else(|_| v.to_f32().map(f64::from))
                .map_err(|_| anyhow::anyhow!("{}: metadata llama.{key} is not a number", self.path.display()))?;
            Ok(Some(n))
        };
        let need = |key: &str| -> Result<usize> {
            num(key)?
                .map(|n| n as usize)
                .ok_or_else(|| anyhow::anyhow!("{}: metadata llama.{key} is missing", self.path.display()))
        };
        let hidden_size = need("embedding_length")?;
        let heads = need("attention.head_count")?;
        let vocab_size = match num("vocab_size")? {
            Some(n) => n as usize,
            None => self
                .content
                .tensor_infos
                .get("token_embd.weight")
                .map(|t| t.shape.dims()[0])
                .context("GGUF has no token_embd.weight")?,
        };
        let token_id = |key: &str| self.metadata(key).and_then(|v| v.to_u32().ok());
        let cfg = LlamaConfig {
            vocab_size,
            hidden_size,
            intermediate_size: need("feed_forward_length")?,
            num_hidden_layers: need("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: num("attention.head_count_kv")?.map(|n| n as usize).unwrap_or(heads),
            head_dim: num("attention.key_length")?.map(|n| n as usize).unwrap_or(hidden_size / heads.max(1)),
            rms_norm_eps: num("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
            rope_theta: num("rope.freq_base")?.unwrap_or(10_000.0),
            rope_scaling: None,
            max_position_embeddings: num("context_length")?.map(|n| n as usize).unwrap_or(2048),
            tie_word_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            attention_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            rope_interleaved: true,
            bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
            eos_token_ids: token_id("tokenizer.ggml.eos_token_id").into_iter().collect(),
        };
        ModelConfig::Llama(cfg).validated()
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
