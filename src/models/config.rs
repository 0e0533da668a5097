//! Architecture configurations: parsed from a Hugging Face `config.json`, read from GGUF
//! metadata (see `gguf.rs`), or built in for `--no-weights` speed runs. Field names follow
//! transformers so a config.json maps one to one.

use crate::error::LlmbenchError;
use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// Bounds no real checkpoint comes near (Llama 3.1 405B: 126 layers, hidden 16384, the largest
/// vocabularies ~256k tokens): past them a config is corrupt, and random weights for it could
/// not be allocated anyway.
const MAX_LAYERS: usize = 4096;
const MAX_VOCAB: usize = 1 << 24;
const MAX_HIDDEN: usize = 1 << 20;
/// Elements in one weight matrix (2^40 f32 = 4 TiB).
const MAX_TENSOR_ELEMENTS: usize = 1 << 40;

/// Every architecture the engine implements.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum ModelConfig {
    Gpt2(Gpt2Config),
    Llama(LlamaConfig),
}

/// GPT-2: learned absolute positions, LayerNorm, Conv1D weight layout, tied head.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_inner: usize,
    pub layer_norm_epsilon: f64,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    /// A transformers-style config.json that `ModelConfig::from_json` reads back to this
    /// config, plus `rope_interleaved` where the rows are GGUF's and `extra` merged in.
    pub fn to_hf_json(&self, extra: serde_json::Map<String, Value>) -> Value {
        let mut json = serde_json::json!({
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "rope_interleaved": self.rope_interleaved,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_ids,
        });
        if let Some(r) = &self.rope_scaling {
            json["rope_scaling"] = serde_json::json!({
                "rope_type": "llama3",
                "factor": r.factor,
                "low_freq_factor": r.low_freq_factor,
                "high_freq_factor": r.high_freq_factor,
                "original_max_position_embeddings": r.original_max_position_embeddings,
            });
        }
        if let Value::Object(map) = &mut json {
            map.extend(extra);
        }
        json
    }
}

/// Llama 3 style RoPE frequency scaling (`rope_type: "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// The Llama family: RoPE, RMSNorm, grouped-query attention, SwiGLU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    /// GGUF files store Q and K rows permuted for interleaved (GPT-J style) rotation;
    /// Hugging Face checkpoints rotate halves (GPT-NeoX style).
    pub rope_interleaved: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    pub fn n_layers(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_layer,
            Self::Llama(c) => c.num_hidden_layers,
        }
    }
    /// Width of the residual stream.
    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_embd,
            Self::Llama(c) => c.hidden_size,
        }
    }
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.vocab_size,
            Self::Llama(c) => c.vocab_size,
        }
    }
    /// The longest sequence the model's positions cover.
    pub fn context_window(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_positions,
            Self::Llama(c) => c.max_position_embeddings,
        }
    }
    /// Whether the LM head is the token embedding table (GPT-2 always; Llama per config).
    pub fn tied_embeddings(&self) -> bool {
        match self {
            Self::Gpt2(_) => true,
            Self::Llama(c) => c.tie_word_embeddings,
        }
    }
    pub fn eos_token_ids(&self) -> &[u32] {
        match self {
            Self::Gpt2(c) => &c.eos_token_ids,
            Self::Llama(c) => &c.eos_token_ids,
        }
    }
    pub fn bos_token_id(&self) -> Option<u32> {
        match self {
            Self::Gpt2(c) => c.bos_token_id,
            Self::Llama(c) => c.bos_token_id,
        }
    }
    pub fn family(&self) -> &'static str {
        match self {
            Self::Gpt2(_) => "gpt2",
            Self::Llama(_) => "llama",
        }
    }
    /// The input widths of the linear layers (hidden and MLP sizes): a group-wise format's
    /// group must divide each.
    pub fn linear_input_sizes(&self) -> Vec<usize> {
        match self {
            Self::Gpt2(c) => vec![c.n_embd, c.n_inner],
            Self::Llama(c) => vec![c.hidden_size, c.intermediate_size, c.num_attention_heads * c.head_dim],
        }
    }

    /// (kv heads, head dim): what one cached token costs per layer, per K or V.
    pub fn kv_shape(&self) -> (usize, usize) {
        match self {
            Self::Gpt2(c) => (c.n_head, c.n_embd / c.n_head),
            Self::Llama(c) => (c.num_key_value_heads, c.head_dim),
        }
    }

    /// Reads a Hugging Face config.json.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            LlmbenchError::invalid(format!("{}: cannot read ({e}); it must be a UTF-8 config.json", path.display()))
        })?;
        Self::from_json_text(&text, path)
    }

    /// Parses the text of a config.json; errors are input errors naming `path`.
    pub fn from_json_text(text: &str, path: &Path) -> Result<Self> {
        let json: Value = serde_json::from_str(text).map_err(|e| {
            LlmbenchError::invalid(format!("{}: not valid JSON ({e}); re-download the model", path.display()))
        })?;
        Self::from_json(&json)
            .map_err(|e| LlmbenchError::invalid(format!("{}: {e:#}; fix the file or download the model again", path.display())))
    }

    /// Parses a config.json value; errors name the missing or unsupported field.
    pub fn from_json(json: &Value) -> Result<Self> {
        let model_type = json.get("model_type").and_then(Value::as_str).unwrap_or("");
        let arch = json
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("");
        let f = Fields(json);
        match (model_type, arch) {
            ("gpt2", _) | (_, "GPT2LMHeadModel") => {
                let n_embd = f.usize("n_embd")?;
                Ok(Self::Gpt2(Gpt2Config {
                    vocab_size: f.usize("vocab_size")?,
                    n_positions: f.usize("n_positions")?,
                    n_embd,
                    n_layer: f.usize("n_layer")?,
                    n_head: f.usize("n_head")?,
                    // Saturating: a corrupt n_embd must reach `validated`, not overflow here.
                    n_inner: f.opt_usize("n_inner")?.unwrap_or(n_embd.saturating_mul(4)),
                    layer_norm_epsilon: f.opt_f64("layer_norm_epsilon")?.unwrap_or(1e-5),
                    bos_token_id: f.token_id("bos_token_id")?,
                    eos_token_ids: f.token_ids("eos_token_id")?,
                }))
            }
            ("llama", _) | (_, "LlamaForCausalLM") => {
                let hidden_size = f.usize("hidden_size")?;
                let heads = f.usize("num_attention_heads")?;
                // transformers 5 moved rope_theta and rope_scaling into `rope_parameters`.
                let rope = json.get("rope_parameters").or_else(|| json.get("rope_scaling"));
                let rope_theta = match f.opt_f64("rope_theta")? {
                    Some(t) => t,
                    None => rope.and_then(|r| r.get("rope_theta")).and_then(Value::as_f64).unwrap_or(10_000.0),
                };
                Ok(Self::Llama(LlamaConfig {
                    vocab_size: f.usize("vocab_size")?,
                    hidden_size,
                    intermediate_size: f.usize("intermediate_size")?,
                    num_hidden_layers: f.usize("num_hidden_layers")?,
                    num_attention_heads: heads,
                    num_key_value_heads: f.opt_usize("num_key_value_heads")?.unwrap_or(heads),
                    head_dim: match f.opt_usize("head_dim")? {
                        Some(d) => d,
                        None if heads > 0 && hidden_size % heads == 0 => hidden_size / heads,
                        None => anyhow::bail!(
                            "hidden_size {hidden_size} is not a multiple of num_attention_heads {heads} (and no head_dim is given)"
                        ),
                    },
                    rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
                    rope_theta,
                    rope_scaling: parse_rope_scaling(rope)?,
                    max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(2048),
                    tie_word_embeddings: json.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
                    attention_bias: json.get("attention_bias").and_then(Value::as_bool).unwrap_or(false),
                    // Not a transformers key: files llmbench writes from a GGUF source keep
                    // its permuted Q/K rows and say so (`LlamaConfig::to_hf_json`).
                    rope_interleaved: json.get("rope_interleaved").and_then(Value::as_bool).unwrap_or(false),
                    bos_token_id: f.token_id("bos_token_id")?,
                    eos_token_ids: f.token_ids("eos_token_id")?,
                }))
            }
            _ => {
                let shown = if arch.is_empty() { model_type } else { arch };
                anyhow::bail!(
                    "unknown architecture `{shown}`: llmbench implements GPT-2 (model_type \"gpt2\") and the Llama \
                     family (model_type \"llama\")"
                )
            }
        }
        .and_then(|cfg| cfg.validated())
    }

    /// Rejects shapes the layers cannot be built from, before any allocation: zero or
    /// non-dividing sizes, sizes whose products overflow, non-finite scalars, and BOS/EOS ids
    /// outside the vocabulary.
    pub fn validated(self) -> Result<Self> {
        let bad = |what: String| Err(anyhow::anyhow!("invalid config: {what}"));
        let positive = |pairs: &[(&str, usize)]| pairs.iter().find(|(_, v)| *v == 0).map(|(k, _)| format!("{k} must be positive"));
        let (hidden, tensors) = match &self {
            Self::Gpt2(c) => {
                if let Some(why) = positive(&[("n_head", c.n_head), ("n_embd", c.n_embd), ("n_positions", c.n_positions), ("n_inner", c.n_inner)]) {
                    return bad(why);
                }
                if c.n_embd % c.n_head != 0 {
                    return bad(format!("n_embd {} must be a multiple of n_head {}", c.n_embd, c.n_head));
                }
                if !(c.layer_norm_epsilon.is_finite() && c.layer_norm_epsilon >= 0.0) {
                    return bad(format!("layer_norm_epsilon {} must be a finite non-negative number", c.layer_norm_epsilon));
                }
                (c.n_embd, vec![("vocab_size x n_embd", c.vocab_size, c.n_embd), ("n_positions x n_embd", c.n_positions, c.n_embd), ("n_inner x n_embd", c.n_inner, c.n_embd), ("3 x n_embd", 3, c.n_embd)])
            }
            Self::Llama(c) => {
                if let Some(why) = positive(&[
                    ("num_attention_heads", c.num_attention_heads),
                    ("num_key_value_heads", c.num_key_value_heads),
                    ("head_dim", c.head_dim),
                    ("hidden_size", c.hidden_size),
                    ("intermediate_size", c.intermediate_size),
                    ("max_position_embeddings", c.max_position_embeddings),
                ]) {
                    return bad(why);
                }
                if c.num_attention_heads % c.num_key_value_heads != 0 {
                    return bad("num_attention_heads must be a multiple of num_key_value_heads".into());
                }
                if c.head_dim % 2 != 0 {
                    return bad("head_dim must be even for RoPE".into());
                }
                if !(c.rms_norm_eps.is_finite() && c.rms_norm_eps >= 0.0) {
                    return bad(format!("rms_norm_eps {} must be a finite non-negative number", c.rms_norm_eps));
                }
                if !(c.rope_theta.is_finite() && c.rope_theta > 0.0) {
                    return bad(format!("rope_theta {} must be a finite positive number", c.rope_theta));
                }
                if let Some(r) = &c.rope_scaling {
                    let ok = [r.factor, r.low_freq_factor, r.high_freq_factor].iter().all(|f| f.is_finite() && *f > 0.0);
                    if !ok || r.original_max_position_embeddings == 0 || r.low_freq_factor >= r.high_freq_factor {
                        return bad("rope_scaling needs positive factors, low_freq_factor < high_freq_factor and a positive original_max_position_embeddings".into());
                    }
                }
                let q = c.num_attention_heads.saturating_mul(c.head_dim);
                (c.hidden_size, vec![("vocab_size x hidden_size", c.vocab_size, c.hidden_size), ("num_attention_heads x head_dim x hidden_size", q, c.hidden_size), ("intermediate_size x hidden_size", c.intermediate_size, c.hidden_size)])
            }
        };
        if self.n_layers() == 0 || self.vocab_size() == 0 {
            return bad("num layers and vocab_size must be positive".into());
        }
        if self.n_layers() > MAX_LAYERS || self.vocab_size() > MAX_VOCAB || hidden > MAX_HIDDEN {
            return bad(format!(
                "{} layers, vocab_size {} and hidden size {hidden}: llmbench takes at most {MAX_LAYERS} layers, a vocabulary of {MAX_VOCAB} and a hidden size of {MAX_HIDDEN}",
                self.n_layers(),
                self.vocab_size()
            ));
        }
        for (what, a, b) in tensors {
            if a.checked_mul(b).is_none_or(|n| n > MAX_TENSOR_ELEMENTS) {
                return bad(format!("{what} is more than {MAX_TENSOR_ELEMENTS} elements in one weight"));
            }
        }
        let vocab = self.vocab_size();
        let outside = self.bos_token_id().into_iter().chain(self.eos_token_ids().iter().copied()).find(|&id| id as usize >= vocab);
        if let Some(id) = outside {
            return bad(format!("BOS/EOS token id {id} is outside the vocabulary of {vocab} tokens"));
        }
        Ok(self)
    }

    /// Built-in architectures for `--no-weights` (values copied from the models' config.json).
    pub fn preset(name: &str) -> Option<Self> {
        let gpt2 = |n_embd, n_layer, n_head| {
            Self::Gpt2(Gpt2Config {
                vocab_size: 50257,
                n_positions: 1024,
                n_embd,
                n_layer,
                n_head,
                n_inner: 4 * n_embd,
                layer_norm_epsilon: 1e-5,
                bos_token_id: Some(50256),
                eos_token_ids: vec![50256],
            })
        };
        #[allow(clippy::too_many_arguments)]
        let llama = |vocab, hidden, inter, layers, heads, kv, theta, max_pos, tie, eos: Vec<u32>| LlamaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim: hidden / heads,
            rms_norm_eps: 1e-5,
            rope_theta: theta,
            rope_scaling: None,
            max_position_embeddings: max_pos,
            tie_word_embeddings: tie,
            attention_bias: false,
            rope_interleaved: false,
            bos_token_id: Some(1),
            eos_token_ids: eos,
        };
        let key = name.to_ascii_lowercase();
        let key = key.rsplit('/').next().unwrap_or(&key).trim_end_matches("-instruct").to_string();
        Some(match key.as_str() {
            "gpt2" => gpt2(768, 12, 12),
            "gpt2-medium" => gpt2(1024, 24, 16),
            "gpt2-large" => gpt2(1280, 36, 20),
            "gpt2-xl" => gpt2(1600, 48, 25),
            "smollm2-135m" => Self::Llama(llama(49152, 576, 1536, 30, 9, 3, 100_000.0, 8192, true, vec![2])),
            "smollm2-360m" => Self::Llama(llama(49152, 960, 2560, 32, 15, 5, 100_000.0, 8192, true, vec![2])),
            "tinyllama-1.1b" | "tinyllama-1.1b-chat-v1.0" => {
                Self::Llama(llama(32000, 2048, 5632, 22, 32, 4, 10_000.0, 2048, false, vec![2]))
            }
            "llama-3.2-1b" => {
                let mut c = llama(128256, 2048, 8192, 16, 32, 8, 500_000.0, 131072, true, vec![128001, 128008, 128009]);
                c.head_dim = 64;
                c.bos_token_id = Some(128000);
                c.rope_scaling = Some(Llama3RopeScaling {
                    factor: 32.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 8192,
                });
                Self::Llama(c)
            }
            _ => return None,
        })
    }

    pub const PRESETS: &'static [&'static str] = &[
        "gpt2",
        "gpt2-medium",
        "gpt2-large",
        "gpt2-xl",
        "smollm2-135m",
        "smollm2-360m",
        "tinyllama-1.1b",
        "llama-3.2-1b",
    ];
}

fn parse_rope_scaling(rope: Option<&Value>) -> Result<Option<Llama3RopeScaling>> {
    let Some(rope) = rope.filter(|r| !r.is_null()) else { return Ok(None) };
    let kind = rope.get("rope_type").or_else(|| rope.get("type")).and_then(Value::as_str).unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let f = Fields(rope);
            Ok(Some(Llama3RopeScaling {
                factor: f.f64("factor")?,
                low_freq_factor: f.f64("low_freq_factor")?,
                high_freq_factor: f.f64("high_freq_factor")?,
                original_max_position_embeddings: f.usize("original_max_position_embeddings")?,
            }))
        }
        other => anyhow::bail!("rope scaling `{other}` is not implemented (supported: default, llama3)"),
    }
}

/// Typed field access on a JSON object with errors that name the field.
struct Fields<'a>(&'a Value);

impl Fields<'_> {
    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| anyhow::anyhow!("field `{key}` must be a non-negative integer, found {v}")),
        }
    }
    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| anyhow::anyhow!("missing field `{key}`"))
    }
    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| anyhow::anyhow!("field `{key}` must be a number, found {v}")),
        }
    }
    fn f64(&self, key: &str) -> Result<f64> {
        self.opt_f64(key)?.ok_or_else(|| anyhow::anyhow!("missing field `{key}`"))
    }
    /// `eos_token_id` is an integer or a list of integers.
    fn token_ids(&self, key: &str) -> Result<Vec<u32>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(items)) => items.iter().map(|v| as_token_id(key, v)).collect(),
            Some(v) => Ok(vec![as_token_id(key, v)?]),
        }
    }
    fn token_id(&self, key: &str) -> Result<Option<u32>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => as_token_id(key, v).map(Some),
        }
    }
}

fn as_token_id(key: &str, v: &Value) -> Result<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| anyhow::anyhow!("field `{key}`: {v} is not a token id (an integer below 2^32)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_transformers5_rope_parameters() {
        let cfg = ModelConfig::from_json(&json!({
            "model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
              "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
            "eos_token_id": [1, 2]
        }))
        .unwrap();
        let ModelConfig::Llama(c) = cfg else { panic!("not llama") };
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_scaling.unwrap().original_max_position_embeddings, 32);
        assert_eq!(c.eos_token_ids, vec![1, 2]);
        assert_eq!(c.head_dim, 4);
    }

    #[test]
    fn errors_name_the_field_or_architecture() {
        let err = ModelConfig::from_json(&json!({"model_type": "gpt2", "n_embd": 8})).unwrap_err();
        assert!(format!("{err:#}").contains("`vocab_size`"), "{err:#}");
        let err = ModelConfig::from_json(&json!({"model_type": "mamba", "architectures": ["MambaForCausalLM"]})).unwrap_err();
        assert!(format!("{err:#}").contains("MambaForCausalLM"), "{err:#}");
    }

    #[test]
    fn corrupt_sizes_are_refused_without_overflow() {
        let gpt2 = |n_embd: u64| json!({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": n_embd, "n_layer": 1, "n_head": 1});
        let err = ModelConfig::from_json(&gpt2(u64::MAX)).unwrap_err();
        assert!(format!("{err:#}").contains("hidden size 18446744073709551615"), "{err:#}");
        let llama = json!({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "head_dim": u64::MAX - 1});
        let err = ModelConfig::from_json(&llama).unwrap_err();
        assert!(format!("{err:#}").contains("num_attention_heads x head_dim x hidden_size is more than"), "{err:#}");
    }

    #[test]
    fn presets_are_valid() {
        for name in ModelConfig::PRESETS {
            let cfg = ModelConfig::preset(name).unwrap().validated().unwrap();
            assert!(cfg.n_layers() > 0);
        }
        assert!(ModelConfig::preset("HuggingFaceTB/SmolLM2-135M-Instruct").is_some());
    }
}
