//! Writing a model in our int8 / int4 formats (`quant::int_weights`) as a directory llmbench
//! loads like any local checkpoint: `model.safetensors` with every linear weight as
//! `{name}.qweight` + `.scales` (+ `.zeros` for int4) and the other tensors in f32,
//! `config.json` (transformers' Llama keys, `rope_interleaved` where the rows are GGUF's, and a
//! `quantization_config` that says what the tensors hold) and `tokenizer.json`. The layouts:
//! int8 qweight I8 `[n, k]`, scales F32 `[n]`; int4 qweight U32 `[n, k / 8]` (value `8w + j`
//! in bits `4j..4j + 4` of word `w`, GPTQ's packing), scales F16 and zeros U8 `[n, k / group]`,
//! weight = (code - zero) x scale. Written to a temporary directory and renamed into place.

use super::config::ModelConfig;
use super::gguf::{gguf_name, GgufFile};
use super::tokenizer::TextTokenizer;
use crate::quant::int_weights::{IntFormat, IntWeights};
use anyhow::{Context, Result};
use candle_core::Device;
use std::path::Path;

/// One tensor to write: safetensors dtype, shape, little-endian bytes.
struct Entry {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// The safetensors format: an 8-byte header length, the JSON header (padded with spaces to a
/// multiple of 8), then the tensors' bytes back to back.
fn safetensors_bytes(entries: &[Entry], metadata: serde_json::Value) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), metadata);
    let mut offset = 0usize;
    for e in entries {
        header.insert(e.name.clone(), serde_json::json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, offset + e.bytes.len()]}));
        offset += e.bytes.len();
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + offset);
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text.as_bytes());
    for e in entries {
        out.extend(&e.bytes);
    }
    out
}

fn int_entries(name: &str, w: &IntWeights) -> Vec<Entry> {
    let prefix = name.strip_suffix(".weight").unwrap_or(name);
    let entry = |suffix: &str, dtype, shape, bytes| Entry { name: format!("{prefix}.{suffix}"), dtype, shape, bytes };
    match w {
        IntWeights::Int8 { n, k, q, scales } => vec![
            entry("qweight", "I8", vec![*n, *k], q.iter().map(|&v| v as u8).collect()),
            entry("scales", "F32", vec![*n], scales.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ],
        IntWeights::Int4 { n, k, group, packed, .. } => {
            let (scales, zeros) = w.int4_params_by_row().expect("int4");
            vec![
                entry("qweight", "U32", vec![*n, k / 8], packed.iter().flat_map(|v| v.to_le_bytes()).collect()),
                entry("scales", "F16", vec![*n, k / group], scales.iter().flat_map(|v| v.to_le_bytes()).collect()),
                entry("zeros", "U8", vec![*n, k / group], zeros),
            ]
        }
    }
}

/// The Hugging Face names of a Llama model's tensors, in load order.
fn llama_tensor_names(n_layers: usize) -> Vec<String> {
    let mut names = vec!["model.embed_tokens.weight".to_string()];
    for i in 0..n_layers {
        for part in [
            "input_layernorm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "post_attention_layernorm",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            names.push(format!("model.layers.{i}.{part}.weight"));
        }
    }
    names.extend(["model.norm.weight".to_string(), "lm_head.weight".to_string()]);
    names
}

/// Writes `source` (a Llama GGUF) with every linear weight in `format` as the directory `dir`.
pub fn write(source: &GgufFile, tokenizer: &TextTokenizer, format: IntFormat, dir: &Path) -> Result<()> {
    let ModelConfig::Llama(mut config) = source.config()? else {
        crate::bail_input!("--save: {} in {} is written for Llama-family GGUF sources only", format.name(), dir.display());
    };
    let names = llama_tensor_names(config.num_hidden_layers);
    let covered: std::collections::BTreeSet<String> = names.iter().map(|n| gguf_name(n)).collect();
    if let Some(other) = source.content.tensor_infos.keys().find(|k| !covered.contains(*k)) {
        crate::bail_input!("--save: {} cannot be written from {}: its tensor `{other}` has no place in the int layout", format.name(), source.path.display());
    }
    let mut entries = Vec::new();
    for name in &names {
        if !source.contains(name) {
            continue;
        }
        let q = source.qtensor(name, &Device::Cpu)?;
        let values = q.dequantize(&Device::Cpu)?.to_dtype(candle_core::DType::F32)?;
        let dims = values.dims().to_vec();
        let is_linear = dims.len() == 2 && !name.ends_with("norm.weight");
        if is_linear {
            let (n, k) = (dims[0], dims[1]);
            let w = IntWeights::quantize(format, &values.flatten_all()?.to_vec1::<f32>()?, n, k)
                .map_err(|why| crate::error::LlmbenchError::invalid(format!("--save {}: `{name}`: {why}", format.name())))?;
            entries.extend(int_entries(name, &w));
        } else {
            let bytes = values.flatten_all()?.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect();
            entries.push(Entry { name: name.clone(), dtype: "F32", shape: dims, bytes });
        }
    }
    config.tie_word_embeddings = config.tie_word_embeddings || !source.contains("lm_head.weight");
    let quantization = match format {
        IntFormat::Int8 => serde_json::json!({"quant_method": "llmbench", "format": "int8", "bits": 8, "scheme": "per-output-channel symmetric absmax, f32 scales"}),
        IntFormat::Int4 { group } => serde_json::json!({"quant_method": "llmbench", "format": "int4", "bits": 4, "group_size": group,
            "scheme": "group-wise asymmetric round-to-nearest, f16 scales, u8 zero points, GPTQ packing along the input dimension"}),
    };
    let mut extra = serde_json::Map::new();
    extra.insert("quantization_config".into(), quantization.clone());
    let config_json = serde_json::to_string_pretty(&config.to_hf_json(extra))?;
    let tokenizer_json = tokenizer.to_json()?;
    let metadata = serde_json::json!({"format": "pt", "quantization": quantization.to_string()});

    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new().prefix(".llmbench-save-").tempdir_in(parent).with_context(|| format!("--save: cannot write in {}", parent.display()))?;
    std::fs::write(staging.path().join("model.safetensors"), safetensors_bytes(&entries, metadata))?;
    std::fs::write(staging.path().join("config.json"), config_json)?;
    std::fs::write(staging.path().join("tokenizer.json"), tokenizer_json)?;
    let _ = std::fs::remove_dir_all(dir);
    let kept = staging.keep();
    std::fs::rename(&kept, dir).with_context(|| format!("--save: moving the model to {}", dir.display()))?;
    Ok(())
}
