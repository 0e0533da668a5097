//! New tokens made of existing ones (adaptivocab's phrase tokens), added to a Llama-family
//! model without retraining, as AdaptiVocab (Nakash et al., 2025) initialises them before its
//! fine-tuning step:
//!
//! - input embedding: an exponentially weighted mean of the constituents' input rows, weights
//!   proportional to e^(2i) for the i-th constituent, so the last token dominates (the model
//!   reads a multi-token word's meaning at its last piece);
//! - output-head row: the same mean with weights e^(-2i), so the first token dominates (the
//!   head must score the phrase where its first piece is the likely next token).
//!
//! A tied model (SmolLM2) has one matrix for both, and one row cannot follow both rules, so the
//! extended model is untied: the base rows stay exactly as stored (both copies hold the same
//! quantized bytes), the new rows differ per side. That costs one extra copy of the table
//! (reported as weight bytes); no base token's embedding or logit changes, only the new
//! tokens' rows join the softmax.
//!
//! New token k gets id `vocab_size + k`, past every row of the base model.

use super::config::{LlamaConfig, ModelConfig};
use super::weights::Weights;
use anyhow::Result;
use candle_core::{DType, Tensor};

/// The constituents (base token ids, two or more each) of every new token, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabExtension {
    pub constituents: Vec<Vec<u32>>,
}

/// AdaptiVocab's weights over `n` constituents, normalised: rising towards the last for input
/// embeddings, falling from the first for the output head.
pub fn exponential_weights(n: usize, towards_last: bool) -> Vec<f64> {
    let raw: Vec<f64> = (0..n)
        .map(|i| (if towards_last { 2.0 } else { -2.0 } * i as f64).exp())
        .collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|w| w / sum).collect()
}

/// The rows `[new tokens, hidden]` for `table` (`[vocab, hidden]`).
fn new_rows(table: &Tensor, extension: &VocabExtension, towards_last: bool) -> Result<Tensor> {
    let table = table.to_dtype(DType::F32)?;
    let rows = extension
        .constituents
        .iter()
        .map(|ids| -> Result<Tensor> {
            let weights: Vec<f32> = exponential_weights(ids.len(), towards_last)
                .into_iter()
                .map(|w| w as f32)
                .collect();
            let parts = table.index_select(&Tensor::new(ids.as_slice(), table.device())?, 0)?;
            let weights = Tensor::new(weights.as_slice(), table.device())?.unsqueeze(1)?;
            Ok(parts.broadcast_mul(&weights)?.sum(0)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&rows, 0)?)
}

/// Phrase tokens are added to Llama-family models; an error naming the flag otherwise.
pub fn llama_config(config: &ModelConfig) -> Result<&LlamaConfig> {
    match config {
        ModelConfig::Llama(c) => Ok(c),
        other => crate::bail_input!(
            "--input adaptivocab: phrase tokens are added to Llama-family models (SmolLM2, TinyLlama, Llama); this model is {}",
            other.family()
        ),
    }
}

/// The config and weights of the model with `extension`'s tokens added (Llama family).
pub fn extend(
    config: &ModelConfig,
    weights: Weights,
    extension: &VocabExtension,
) -> Result<(ModelConfig, Weights)> {
    let c = llama_config(config)?;
    let vocab = c.vocab_size;
    let hidden = c.hidden_size;
    if let Some(bad) = extension
        .constituents
        .iter()
        .flatten()
        .find(|&&id| id as usize >= vocab)
    {
        anyhow::bail!(
            "phrase token constituent {bad} is outside the model's vocabulary of {vocab}"
        );
    }
    let input_table = weights.tensor("model.embed_tokens.weight", (vocab, hidden))?;
    let untied_head = !c.tie_word_embeddings && weights.contains("lm_head.weight");
    let head_source = if untied_head {
        "lm_head.weight"
    } else {
        "model.embed_tokens.weight"
    };
    let head_table = if untied_head {
        weights.tensor(head_source, (vocab, hidden))?
    } else {
        input_table.clone()
    };
    let input_rows = new_rows(&input_table, extension, true)?;
    let head_rows = new_rows(&head_table, extension, false)?;
    drop((input_table, head_table));
    let weights = weights
        .with_extra_rows(
            "model.embed_tokens.weight",
            "model.embed_tokens.weight",
            input_rows,
        )
        .with_extra_rows("lm_head.weight", head_source, head_rows);
    let mut c = c.clone();
    c.vocab_size = vocab + extension.constituents.len();
    c.tie_word_embeddings = false;
    Ok((ModelConfig::Llama(c), weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_favour_the_last_token_for_input_and_the_first_for_output() {
        let input = exponential_weights(3, true);
        let output = exponential_weights(3, false);
        assert!(
            (input.iter().sum::<f64>() - 1.0).abs() < 1e-12
                && (output.iter().sum::<f64>() - 1.0).abs() < 1e-12
        );
        assert!(input[0] < input[1] && input[1] < input[2]);
        assert!(input.iter().rev().zip(&output).all(|(a, b)| (a - b).abs() < 1e-12), "mirror images");
        // e^2 : 1 between neighbours.
        assert!((input[2] / input[1] - 2f64.exp()).abs() < 1e-9);
    }

    #[test]
    fn new_rows_are_the_weighted_means_of_their_constituents() {
        let table = Tensor::new(
            &[[1f32, 0.0], [0.0, 1.0], [2.0, 2.0]],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let ext = VocabExtension {
            constituents: vec![vec![0, 1], vec![2, 0, 1]],
        };
        let rows: Vec<Vec<f32>> = new_rows(&table, &ext, true).unwrap().to_vec2().unwrap();
        let w = exponential_weights(2, true);
        assert!((rows[0][0] as f64 - w[0]).abs() < 1e-6 && (rows[0][1] as f64 - w[1]).abs() < 1e-6);
        let w = exponential_weights(3, true);
        assert!((rows[1][0] as f64 - (2.0 * w[0] + w[1])).abs() < 1e-6);
    }
}
