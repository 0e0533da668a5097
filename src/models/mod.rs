//! Models: where weights come from (`source`), what architecture they describe (`config`,
//! `gguf`), how they are loaded (`weights`), the architectures themselves (`gpt2`, `llama`)
//! and their tokenizers. Everything above this module sees a `Model` trait object.

pub mod attention;
pub mod batch;
pub mod chat_template;
pub mod config;
mod cpu_attention;
mod cpu_prefill_attention;
mod cpu_rows;
#[cfg(feature = "cuda")]
mod cuda_attention;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_attention_disabled.rs"]
mod cuda_attention;
mod cuda_graph;
pub use cuda_graph::check_settings as check_graph_settings;
pub mod gguf;
pub mod gguf_reader;
pub mod gguf_writer;
pub mod int_writer;
pub mod gpt2;
pub mod layers;
pub mod llama;
pub mod requantize;
pub mod sentence_encoder;
pub mod source;
pub mod sparse_projection;
pub mod tokenizer;
pub mod vocab_extension;
mod safetensors_header;
pub mod weights;

use crate::kv::KvCache;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use config::ModelConfig;
use serde::{Deserialize, Serialize};
use source::{ModelFiles, ResolvedModel};
use tokenizer::TextTokenizer;
use weights::Weights;

/// Compute dtype for dense weights (`--dtype`). GGUF weights stay quantized and compute in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum DTypeArg {
    #[default]
    F32,
    F16,
    Bf16,
}

impl DTypeArg {
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// Hidden states of every layer for one forward pass (`Model::forward_layer_states`).
pub struct LayerStates {
    /// `[b, t, hidden]` entering block i, for i in 0..n_layers (index 0: the embeddings).
    pub states: Vec<Tensor>,
    /// The final-norm output `[b, t, hidden]` (what `lm_head` turns into the model's logits).
    pub last: Tensor,
}

/// A causal language model. The cache is passed in, so any strategy works with any model.
pub trait Model: Send {
    /// Final-norm hidden states `[b, t, hidden]` for `ids: [b, t]` at positions `start_pos..`
    /// after the first `blocks` blocks (all of them but for an early-exit draft), attending as
    /// `mode` says when `t > 1` over a cached prefix; `cache` holds those blocks.
    fn forward_blocks(
        &self,
        ids: &Tensor,
        start_pos: usize,
        blocks: usize,
        mode: layers::VerifyAttention,
        cache: &mut dyn KvCache,
    ) -> candle_core::Result<Tensor>;
    /// Logits (f32) for hidden states.
    fn lm_head(&self, hidden: &Tensor) -> candle_core::Result<Tensor>;
    /// Whether `forward_layer_states` is implemented (callers check before a run: a candle
    /// error cannot carry the `Unsupported` kind to the exit code).
    fn has_layer_states(&self) -> bool {
        false
    }
    /// The hidden states entering every block (transformers' `hidden_states[0..n_layers]`:
    /// the embedding output first, no final norm) and the final-norm output, for layer-contrast
    /// decoding (SLED's evolution, DoLa). Models without it refuse with `Unsupported`.
    fn forward_layer_states(&self, _ids: &Tensor, _start_pos: usize, _cache: &mut dyn KvCache) -> candle_core::Result<LayerStates> {
        Err(candle_core::Error::wrap(crate::error::LlmbenchError::Unsupported("this model does not expose per-layer hidden states".into())))
    }
    /// The model's final norm (premature layers' logits with it, as an option).
    fn final_norm(&self, _hidden: &Tensor) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::wrap(crate::error::LlmbenchError::Unsupported("this model does not expose its final norm".into())))
    }
    fn config(&self) -> &ModelConfig;
    /// Runs `windows` (one full pass each, from position 0) recording every projection input
    /// into `stats` (activation sparsity's calibration). Models without it refuse.
    fn calibrate_activations(&self, _windows: &[Vec<u32>], _stats: &mut crate::sparse::calibration::ActivationStats) -> candle_core::Result<()> {
        Err(candle_core::Error::wrap(crate::error::LlmbenchError::Unsupported("activation sparsity is implemented for the Llama family".into())))
    }
    /// Turns activation sparsity on (`Some`, from a calibration) or off (`None`; a share of 0
    /// is off too, so the model is the dense one bit for bit).
    fn set_sparsity(&self, sparsity: Option<(crate::sparse::SparsityMethod, &crate::sparse::calibration::Calibration)>) -> anyhow::Result<()> {
        match sparsity {
            Some((m, _)) if m.share() > 0.0 => crate::bail_input!("--sparsity {m}: activation sparsity is implemented for the Llama family, not this model"),
            _ => Ok(()),
        }
    }
    /// Input entries kept and seen per projection site since sparsity was set, and the bytes
    /// of the sparse weight copies; `None` when sparsity is off.
    fn sparsity_counts(&self) -> Option<SparsityCounts> {
        None
    }
    /// Whether `forward_batch` is implemented.
    fn has_batch(&self) -> bool {
        false
    }
    /// One step of batched decoding: every part's tokens in one forward pass, keys and values
    /// written to and read from `pool` through each part's block table (see `batch.rs`).
    /// Returns the logits of each part's last `logit_rows` rows, part by part:
    /// `[sum of logit_rows, vocab]` in f32 (one row a part unless a part verifies a draft).
    fn forward_batch(&self, _parts: &mut [batch::BatchPart], _pool: &mut crate::kv::PagedKvPool) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::wrap(crate::error::LlmbenchError::Unsupported("this model has no batched forward pass".into())))
    }
    /// Turns the CUDA graph decode step on or off (`--no-cuda-graph`); models without one ignore it.
    fn set_cuda_graph(&mut self, _enabled: bool) {}
    /// Whether single-token steps on a static cache will run as a captured CUDA graph.
    fn cuda_graph_available(&self) -> bool {
        false
    }

    /// Parameters and bytes of the weights held (a tied table counted once).
    fn weight_footprint(&self) -> layers::Footprint {
        layers::Footprint::default()
    }

    /// Final-norm hidden states `[b, t, hidden]` of the whole model.
    fn forward_hidden(&self, ids: &Tensor, start_pos: usize, cache: &mut dyn KvCache) -> candle_core::Result<Tensor> {
        self.forward_blocks(ids, start_pos, self.config().n_layers(), layers::VerifyAttention::Batched, cache)
    }
    /// Logits of the last position, `[b, vocab]` in f32.
    fn forward(&self, ids: &Tensor, start_pos: usize, cache: &mut dyn KvCache) -> candle_core::Result<Tensor> {
        let hidden = self.forward_hidden(ids, start_pos, cache)?;
        self.lm_head(&layers::last_position(&hidden)?)
    }
    /// Logits `[1, vocab]` (f32) of one token, `token` at `start_pos`, on `device`: `forward`
    /// over a one-token batch. A model whose fast path takes the id from the host (Llama's
    /// CUDA graph writes it into the step's parameters) overrides it, sparing the step an
    /// upload of the id and its read back.
    fn forward_token(&self, token: u32, start_pos: usize, device: &candle_core::Device, cache: &mut dyn KvCache) -> candle_core::Result<Tensor> {
        self.forward(&Tensor::new(&[[token]], device)?, start_pos, cache)
    }
    /// The greedy next token (the logits' first maximum) after `token` at `start_pos`, where the
    /// model picks it without the logits leaving its device (Llama's CUDA graph); `None`, with
    /// nothing done, elsewhere (the caller then runs `forward_token` and picks on the host).
    /// With `ahead` (the caller will feed this token next, greedily), the model may queue that
    /// step before returning; the `bool` says it did, and then the device is still busy with
    /// it: a caller timing this token must not wait for the device (the token is on the host).
    fn greedy_token(&self, _token: u32, _start_pos: usize, _cache: &mut dyn KvCache, _ahead: bool) -> Option<candle_core::Result<(u32, bool)>> {
        None
    }
    /// Logits of the last `n` positions, `[b, n, vocab]` in f32, attending as `mode` says
    /// (speculative verification: the head runs only where a draft is judged).
    fn forward_verify(
        &self,
        ids: &Tensor,
        start_pos: usize,
        n: usize,
        mode: layers::VerifyAttention,
        cache: &mut dyn KvCache,
    ) -> candle_core::Result<Tensor> {
        let hidden = self.forward_blocks(ids, start_pos, self.config().n_layers(), mode, cache)?;
        let t = hidden.dim(1)?;
        self.lm_head(&hidden.narrow(1, t - n.min(t), n.min(t))?)
    }
    /// Logits of the last position after only the first `layers` blocks, then the final norm
    /// and the head (self-speculation's early-exit draft; `cache` holds those layers only).
    fn forward_first_layers(
        &self,
        ids: &Tensor,
        start_pos: usize,
        layers: usize,
        mode: layers::VerifyAttention,
        cache: &mut dyn KvCache,
    ) -> candle_core::Result<Tensor> {
        let all = self.config().n_layers();
        if layers == 0 || layers > all {
            candle_core::bail!("an early exit after {layers} layers: the model has {all}");
        }
        let hidden = self.forward_blocks(ids, start_pos, layers, mode, cache)?;
        self.lm_head(&layers::last_position(&hidden)?)
    }
    /// Logits of every position, `[b, t, vocab]` in f32 (teacher forcing, perplexity).
    fn forward_all(&self, ids: &Tensor, start_pos: usize, cache: &mut dyn KvCache) -> candle_core::Result<Tensor> {
        let hidden = self.forward_hidden(ids, start_pos, cache)?;
        self.lm_head(&hidden)
    }
}

/// Activation sparsity's measured effect: per site (`sparse::calibration::SITES` order) the
/// input entries kept and seen, and the bytes of the column-major weight copies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparsityCounts {
    pub kept: [u64; 4],
    pub seen: [u64; 4],
    pub bytes: u64,
}

/// What was loaded, for results and provenance.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSpec {
    /// The `--model` value.
    pub id: String,
    /// hub, local, gguf, pip or no-weights.
    pub source: String,
    /// Hub revision or pip package version.
    pub revision: Option<String>,
    pub weight_files: Vec<std::path::PathBuf>,
    /// e.g. "safetensors", "gguf Q4_1", "random (seed 0)".
    pub weights_format: String,
    pub dtype: String,
    pub tokenizer: String,
    pub architecture: ModelConfig,
}

/// A model ready to run, with its tokenizer.
pub struct LoadedModel {
    pub model: Box<dyn Model>,
    pub tokenizer: TextTokenizer,
    pub spec: ModelSpec,
    /// What a format conversion at load made of the weights (`load_converted`).
    pub conversion: Option<ConversionSummary>,
}

/// The weights after a conversion: tensors per format they became, and the time quantizing took.
#[derive(Debug, Clone)]
pub struct ConversionSummary {
    pub tensors: std::collections::BTreeMap<String, usize>,
    pub quantize_seconds: f64,
}

/// Builds the architecture a config names from the given weights.
pub fn build(cfg: &ModelConfig, weights: &Weights) -> Result<Box<dyn Model>> {
    Ok(match cfg {
        ModelConfig::Gpt2(c) => Box::new(gpt2::Gpt2::load(c, weights)?),
        ModelConfig::Llama(c) => Box::new(llama::Llama::load(c, weights)?),
    })
}

/// Only a resolved model's tokenizer (`http` counts and builds prompts with it; no weights).
pub fn load_tokenizer(resolved: &ResolvedModel) -> Result<TextTokenizer> {
    match &resolved.files {
        ModelFiles::Gguf(path) => TextTokenizer::from_gguf(&gguf::GgufFile::open(path)?),
        ModelFiles::Dense { tokenizer, .. } => TextTokenizer::from_file(tokenizer),
        ModelFiles::NoWeights { tokenizer: Some(path), .. } => TextTokenizer::from_file(path),
        ModelFiles::NoWeights { tokenizer: None, .. } => Ok(TextTokenizer::Bytes),
    }
}

/// Loads a resolved model onto `device`.
pub fn load(resolved: &ResolvedModel, dtype: DTypeArg, seed: u64, device: &Device) -> Result<LoadedModel> {
    load_with(resolved, dtype, seed, device, None, None)
}

/// Loads a resolved model with new tokens added to its vocabulary (`vocab_extension`), and a
/// tokenizer that merges them.
pub fn load_extended(
    resolved: &ResolvedModel,
    dtype: DTypeArg,
    seed: u64,
    device: &Device,
    extension: &vocab_extension::VocabExtension,
) -> Result<LoadedModel> {
    load_with(resolved, dtype, seed, device, None, Some(extension))
}

/// Loads a resolved model with every linear weight converted to `format` as it loads (the
/// model computes in the format's dtype: f32 for the quantized ones).
pub fn load_converted(resolved: &ResolvedModel, format: crate::quant::format::WeightFormat, seed: u64, device: &Device) -> Result<LoadedModel> {
    let dtype = match format.compute_dtype() {
        DType::F16 => DTypeArg::F16,
        DType::BF16 => DTypeArg::Bf16,
        _ => DTypeArg::F32,
    };
    // A GGUF source is dequantized in f32 and converted from there (Weights::converted).
    let load_dtype = if matches!(resolved.files, ModelFiles::Gguf(_)) { DTypeArg::F32 } else { dtype };
    load_with(resolved, load_dtype, seed, device, Some(format), None)
}

fn load_with(
    resolved: &ResolvedModel,
    dtype: DTypeArg,
    seed: u64,
    device: &Device,
    conversion: Option<crate::quant::format::WeightFormat>,
    extension: Option<&vocab_extension::VocabExtension>,
) -> Result<LoadedModel> {
    let (config, weights, tokenizer, weights_format, dtype_name) = match &resolved.files {
        ModelFiles::Gguf(path) => {
            if dtype != DTypeArg::F32 {
                crate::bail_input!(
                    "--dtype {dtype:?}: GGUF weights stay quantized and compute in f32; drop --dtype for a .gguf model"
                );
            }
            let file = gguf::GgufFile::open(path)?;
            let config = file.config()?;
            let tokenizer = TextTokenizer::from_gguf(&file)?;
            // Ids past the embedding would fail (or index out of bounds) at the first forward pass.
            if tokenizer.id_bound() > config.vocab_size() {
                crate::bail_input!(
                    "{}: the GGUF tokenizer has {} tokens but the model's vocabulary holds {}; the file is inconsistent: \
                     re-export it with llama.cpp's convert_hf_to_gguf.py",
                    path.display(),
                    tokenizer.id_bound(),
                    config.vocab_size()
                );
            }
            let format = format!("gguf {}", file.weight_format());
            (config, Weights::from_gguf(file, device), tokenizer, format, "f32".to_string())
        }
        ModelFiles::Dense { config, tokenizer, weights } => {
            let config = ModelConfig::from_json_file(config)?;
            let tokenizer = TextTokenizer::from_file(tokenizer)?;
            let w = Weights::from_safetensors(weights, dtype.dtype(), device)?;
            (config, w, tokenizer, "safetensors".to_string(), format!("{dtype:?}").to_lowercase())
        }
        ModelFiles::NoWeights { config, tokenizer } => {
            let tokenizer = match tokenizer {
                Some(path) => TextTokenizer::from_file(path)?,
                None => TextTokenizer::Bytes,
            };
            let w = Weights::random(seed, dtype.dtype(), device);
            (config.clone(), w, tokenizer, format!("random (seed {seed})"), format!("{dtype:?}").to_lowercase())
        }
    };
    let weights = match conversion {
        Some(format) => weights.converted(format),
        None => weights,
    };
    let (config, weights, tokenizer, weights_format) = match extension {
        Some(extension) => {
            let (config, weights) = vocab_extension::extend(&config, weights, extension)?;
            let first_id = (config.vocab_size() - extension.constituents.len()) as u32;
            let merges = tokenizer::PhraseMerges::new(first_id, extension.constituents.clone());
            let format = format!("{weights_format} + {} phrase tokens", extension.constituents.len());
            (config, weights, TextTokenizer::Merged { base: Box::new(tokenizer), merges }, format)
        }
        None => (config, weights, tokenizer, weights_format),
    };
    let model = build(&config, &weights).with_context(|| format!("building {} from {}", config.family(), resolved.id))?;
    let weights_format = match weights.conversion() {
        Some(c) => format!("{weights_format}, {}", c.describe()),
        None => weights_format,
    };
    let conversion = weights.conversion().map(|c| ConversionSummary { tensors: c.tensors(), quantize_seconds: c.quantize_seconds() });
    let spec = ModelSpec {
        id: resolved.id.clone(),
        source: resolved.source.to_string(),
        revision: resolved.revision.clone(),
        weight_files: resolved.files.weight_paths(),
        weights_format,
        dtype: match weights.conversion() {
            Some(c) => format!("{:?}", c.format.compute_dtype()).to_lowercase(),
            None => dtype_name,
        },
        tokenizer: tokenizer.describe(),
        architecture: config,
    };
    Ok(LoadedModel { model, tokenizer, spec, conversion })
}
