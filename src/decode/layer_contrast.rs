//! Decoding that contrasts the final layer with earlier ("premature") layers: SLED's logits
//! evolution (`sled_evolution`) and DoLa (`dola`). Each step runs the model once, keeping the
//! hidden state entering every block (`Model::forward_layer_states`); the premature layers'
//! last-position states go through the LM head together (one `[layers, hidden]` matmul), the
//! method turns them and the final logits into the logits the sampler sees.

use super::dola::{self, DolaLayers};
use super::sled_evolution::{self, Evolution};
use super::{DecodeStrategy, Step, StepContext};
use crate::models::Model;
use anyhow::Result;
use candle_core::Tensor;

/// Why a model without `Model::forward_layer_states` cannot run a layer contrast.
const NO_LAYER_STATES: &str = "layer-contrast decoding (sled-evolution, dola) needs per-layer hidden states, and this model does not expose per-layer hidden states; use standard decoding with it";

/// Which contrast, and over which layers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Contrast {
    /// SLED: evolve the final logits towards what the premature layers point at.
    Sled(Evolution),
    /// DoLa: subtract the most divergent candidate layer's log-probabilities.
    Dola(DolaLayers),
}

/// A contrast method's settings (`--evolution-*`, `--dola-layers`, `--premature-*`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContrastConfig {
    pub contrast: Contrast,
    /// SLED's premature layers (transformers' `hidden_states` numbering, 0 the embeddings);
    /// `None`: every layer before the last (0..n_layers), as the authors' scripts use.
    pub premature_layers: Option<Vec<usize>>,
    /// Apply the final norm before the head on premature layers (the reference code does not).
    pub premature_norm: bool,
}

impl ContrastConfig {
    /// The premature layers for a model of `n_layers` blocks (DoLa: its candidates).
    pub fn layers(&self, n_layers: usize, tied_embeddings: bool) -> Vec<usize> {
        match (&self.contrast, &self.premature_layers) {
            (Contrast::Dola(which), _) => which.candidates(n_layers, tied_embeddings),
            (Contrast::Sled(_), Some(layers)) => layers.clone(),
            (Contrast::Sled(_), None) => (0..n_layers).collect(),
        }
    }

    /// "rate=2 k=10 steps=1 floor=-1000" or "dola:high", with the layer choice where it is not
    /// the default: what results and tables show.
    pub fn label(&self) -> String {
        let mut s = match &self.contrast {
            Contrast::Sled(e) => format!(
                "rate={} k={} steps={} floor={}",
                e.rate, e.scale, e.steps, e.lower_bound
            ),
            Contrast::Dola(which) => format!("layers={}", which.name()),
        };
        if let (Contrast::Sled(_), Some(l)) = (&self.contrast, &self.premature_layers) {
            s += &format!(
                " layers={}",
                l.iter().map(usize::to_string).collect::<Vec<_>>().join("+")
            );
        }
        if self.premature_norm {
            s += " norm";
        }
        s
    }

    /// Checks the settings against a loaded model: per-layer hidden states (`Unsupported`
    /// without them), then `validate` (input errors).
    pub fn check(&self, model: &dyn Model) -> Result<()> {
        if !model.has_layer_states() {
            return Err(crate::error::LlmbenchError::Unsupported(NO_LAYER_STATES.into()).into());
        }
        let cfg = model.config();
        self.validate(cfg.n_layers(), cfg.vocab_size(), cfg.tied_embeddings())
            .map_err(crate::error::LlmbenchError::invalid)
    }

    /// Checks the settings against a model: layers in range, k within the vocabulary.
    pub fn validate(
        &self,
        n_layers: usize,
        vocab: usize,
        tied_embeddings: bool,
    ) -> std::result::Result<(), String> {
        let layers = self.layers(n_layers, tied_embeddings);
        if let Some(&bad) = layers.iter().find(|&&l| l >= n_layers) {
            return Err(format!(
                "--premature-layers {bad}: the model has {n_layers} layers, so premature layers are 0 (the embeddings) to {}",
                n_layers - 1
            ));
        }
        if layers.is_empty() {
            return Err(format!("no premature layers for a model of {n_layers} layers: give --premature-layers or --dola-layers as a list"));
        }
        if let Contrast::Sled(e) = &self.contrast {
            if e.scale == 0 || e.scale > vocab {
                return Err(format!(
                    "--evolution-scale {}: use 1 to the vocabulary's {vocab} tokens",
                    e.scale
                ));
            }
            if e.steps == 0 {
                return Err("--evolution-steps 0: evolve at least one step".into());
            }
        }
        Ok(())
    }
}

/// The decode strategy: standard decoding whose next-token logits come from the contrast.
pub struct LayerContrast {
    config: ContrastConfig,
}

impl LayerContrast {
    pub fn new(config: ContrastConfig) -> Self {
        Self { config }
    }
}

/// One position's final logits and each premature layer's.
pub type PositionLogits = (Vec<f32>, Vec<Vec<f32>>);

/// The final logits `[vocab]` and each of `layers`' logits at the last position of `ids`
/// (fed at `start_pos`), from one forward pass.
pub fn layer_logits(
    model: &dyn Model,
    ids: &Tensor,
    start_pos: usize,
    cache: &mut dyn crate::kv::KvCache,
    layers: &[usize],
    premature_norm: bool,
) -> Result<PositionLogits> {
    let t = ids.dim(1)?;
    let mut rows = layer_logits_rows(model, ids, start_pos, cache, layers, premature_norm, t - 1)?;
    Ok(rows.pop().expect("one row"))
}

/// The final logits `[n, vocab]` and each of `layers`' logits `[layers, n, vocab]` (f32, where
/// the model runs) at positions `first..` of `ids`, from one forward pass.
pub fn layer_logits_tensors(
    model: &dyn Model,
    ids: &Tensor,
    start_pos: usize,
    cache: &mut dyn crate::kv::KvCache,
    layers: &[usize],
    premature_norm: bool,
    first: usize,
) -> Result<(Tensor, Tensor)> {
    if !model.has_layer_states() {
        return Err(crate::error::LlmbenchError::Unsupported(NO_LAYER_STATES.into()).into());
    }
    let states = model.forward_layer_states(ids, start_pos, cache)?;
    let t = states.last.dim(1)?;
    let n = t - first;
    let final_logits = model
        .lm_head(&states.last.narrow(1, first, n)?.squeeze(0)?)?
        .to_dtype(candle_core::DType::F32)?;
    // [layers, n, hidden] -> one head matmul.
    let stacked = layers
        .iter()
        .map(|&l| states.states[l].narrow(1, first, n)?.squeeze(0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut stacked = Tensor::cat(&stacked, 0)?;
    if premature_norm {
        stacked = model.final_norm(&stacked)?;
    }
    let premature = model.lm_head(&stacked)?.to_dtype(candle_core::DType::F32)?;
    let vocab = premature.dim(1)?;
    Ok((final_logits, premature.reshape((layers.len(), n, vocab))?))
}

/// Per position from `first` to the last of `ids`: the final logits and each of `layers'`
/// logits on the host (teacher forcing: scoring a continuation).
pub fn layer_logits_rows(
    model: &dyn Model,
    ids: &Tensor,
    start_pos: usize,
    cache: &mut dyn crate::kv::KvCache,
    layers: &[usize],
    premature_norm: bool,
    first: usize,
) -> Result<Vec<PositionLogits>> {
    let (final_logits, premature) = layer_logits_tensors(model, ids, start_pos, cache, layers, premature_norm, first)?;
    let final_rows: Vec<Vec<f32>> = final_logits.to_vec2()?;
    let premature: Vec<Vec<Vec<f32>>> = premature.to_vec3()?;
    Ok(final_rows
        .into_iter()
        .enumerate()
        .map(|(i, f)| (f, premature.iter().map(|layer| layer[i].clone()).collect()))
        .collect())
}

/// Per position from `first` on, the contrast's logits: SLED's evolution from the tensors
/// where they are (`sled_evolution::evolve_rows`), DoLa's on the host.
pub fn contrast_rows(
    model: &dyn Model,
    ids: &Tensor,
    start_pos: usize,
    cache: &mut dyn crate::kv::KvCache,
    config: &ContrastConfig,
    layers: &[usize],
    first: usize,
) -> Result<Vec<Vec<f32>>> {
    match &config.contrast {
        Contrast::Sled(e) => {
            let (final_logits, premature) = layer_logits_tensors(model, ids, start_pos, cache, layers, config.premature_norm, first)?;
            Ok(sled_evolution::evolve_rows(&final_logits, &premature, e)?)
        }
        Contrast::Dola(_) => Ok(layer_logits_rows(model, ids, start_pos, cache, layers, config.premature_norm, first)?
            .into_iter()
            .map(|(f, p)| contrast_logits(&config.contrast, &f, &p, layers))
            .collect()),
    }
}

/// The contrast's next-token logits from the final and premature logits of one position.
pub fn contrast_logits(
    contrast: &Contrast,
    final_logits: &[f32],
    premature: &[Vec<f32>],
    layers: &[usize],
) -> Vec<f32> {
    match contrast {
        Contrast::Sled(e) => sled_evolution::evolve(final_logits, premature, e),
        Contrast::Dola(_) => dola::contrast(final_logits, premature, layers).0,
    }
}

impl DecodeStrategy for LayerContrast {
    fn step(&mut self, ctx: &mut StepContext<'_>) -> Result<Step> {
        let pos = ctx.cache.seq_len();
        let input = Tensor::new(&ctx.tokens[pos..], ctx.device)?.unsqueeze(0)?;
        let cfg = ctx.model.config();
        let layers = self.config.layers(cfg.n_layers(), cfg.tied_embeddings());
        let t = input.dim(1)?;
        let mut logits = contrast_rows(ctx.model, &input, pos, ctx.cache, &self.config, &layers, t - 1)?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no position to decode from"))?;
        if let Some(log) = ctx.logits_log.as_deref_mut() {
            log.push(logits.clone());
        }
        let next = ctx.sampler.next(&mut logits, ctx.tokens);
        Ok(Step {
            emitted: vec![next],
            ..Default::default()
        })
    }
}
