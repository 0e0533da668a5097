//! A sentence-transformers BERT encoder (all-MiniLM-L6-v2 and its kind) on candle: the
//! tokenizer truncated to the model's `max_seq_length`, candle-transformers' `BertModel`, then
//! the modules sentence-transformers lists in modules.json: mean pooling over the tokens
//! (1_Pooling/config.json must ask for it) and, when listed, L2 normalisation. One text a pass,
//! so no padding enters the mean. Used for coherence (cosine of prompt and output embeddings).

use crate::error::LlmbenchError;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;

pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: tokenizers::Tokenizer,
    normalize: bool,
    device: Device,
}

impl SentenceEncoder {
    /// Loads the model directory `dir` (given to `flag`), refusing what is not a mean-pooling
    /// sentence-transformers BERT encoder with a message naming the flag.
    pub fn load(dir: &Path, flag: &str, device: &Device) -> Result<Self> {
        let not_encoder = |why: String| LlmbenchError::invalid(format!("{flag} {}: not a sentence encoder: {why}", dir.display()));
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| not_encoder(format!("{name}: {e}")));
        let modules: serde_json::Value = serde_json::from_str(&read("modules.json")?).map_err(|e| not_encoder(format!("modules.json: {e}")))?;
        let types: Vec<&str> = modules.as_array().into_iter().flatten().filter_map(|m| m["type"].as_str()).collect();
        if !types.iter().any(|t| t.ends_with("models.Pooling")) {
            return Err(not_encoder("modules.json lists no Pooling module".into()));
        }
        let pooling: serde_json::Value =
            serde_json::from_str(&read("1_Pooling/config.json")?).map_err(|e| not_encoder(format!("1_Pooling/config.json: {e}")))?;
        if pooling["pooling_mode_mean_tokens"].as_bool() != Some(true) {
            return Err(not_encoder("its pooling is not the mean of the tokens".into()));
        }
        let normalize = types.iter().any(|t| t.ends_with("models.Normalize"));
        let config_text = read("config.json")?;
        let config_json: serde_json::Value = serde_json::from_str(&config_text).map_err(|e| not_encoder(format!("config.json: {e}")))?;
        if config_json["model_type"].as_str() != Some("bert") {
            return Err(not_encoder(format!("model_type {} (only BERT encoders are supported)", config_json["model_type"])));
        }
        let config: Config = serde_json::from_str(&config_text).map_err(|e| not_encoder(format!("config.json: {e}")))?;
        let max_len = std::fs::read_to_string(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["max_seq_length"].as_u64())
            .map_or(config.max_position_embeddings, |m| m as usize);
        let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| not_encoder(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| not_encoder(format!("tokenizer truncation: {e}")))?;
        let weights = dir.join("model.safetensors");
        // SAFETY: the file is memory-mapped read-only and not modified while the model lives.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .with_context(|| format!("{flag} {}: reading model.safetensors", dir.display()))?;
        let model = BertModel::load(vb, &config).map_err(|e| not_encoder(format!("model.safetensors: {e}")))?;
        Ok(Self { model, tokenizer, normalize, device: device.clone() })
    }

    /// The embedding of each text (f32, normalised when the model says so).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        texts.iter().map(|t| self.embed_one(t)).collect()
    }

    fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        let encoding = self.tokenizer.encode(text, true).map_err(|e| anyhow::anyhow!("tokenizing for the sentence encoder: {e}"))?;
        let ids = Tensor::new(encoding.get_ids(), &self.device)?.unsqueeze(0)?;
        let type_ids = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &type_ids, None)?;
        let mut pooled = hidden.mean(1)?.squeeze(0)?;
        if self.normalize {
            let norm = pooled.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
            // sentence-transformers' Normalize is torch.nn.functional.normalize (eps 1e-12).
            pooled = pooled.broadcast_div(&norm.maximum(1e-12)?)?;
        }
        Ok(pooled.to_vec1::<f32>()?)
    }
}
