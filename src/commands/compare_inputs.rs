//! compare's input side: the prompts each input-side method makes for one model, what making
//! them took, and the model's bits per byte on them; where adaptivocab's phrases come from.

use super::prompts;
use crate::cli::compare::CompareArgs;
use crate::engine::Engine;
use crate::input::adaptivocab::PhraseSource;
use crate::input::{Compressor, InputMethod};
use anyhow::Result;

/// Where adaptivocab's phrases come from (a pip: corpus is fetched here, once).
pub(super) fn phrase_source(args: &CompareArgs) -> Result<PhraseSource> {
    Ok(match (&args.phrases, &args.phrase_corpus) {
        (Some(file), _) => PhraseSource::File(file.clone()),
        (None, Some(corpus)) => {
            PhraseSource::Corpus(crate::models::source::data_file(corpus, "--phrase-corpus")?)
        }
        (None, None) => PhraseSource::Defaults,
    })
}

/// The prompts one input-side method makes for one model.
pub(super) struct PreparedInput {
    pub(super) texts: Vec<String>,
    pub(super) ids: Vec<Vec<u32>>,
    /// Mean seconds per prompt the method took.
    pub(super) seconds_per_prompt: f64,
    /// The model's bits per byte on these prompts (None with --prompt-tokens, whose cut and
    /// repeated prompts are not the texts, and when a prompt does not fit the context).
    pub(super) bits_per_byte: Option<f64>,
}

pub(super) fn prepare(
    input: &InputMethod,
    written: &[String],
    written_ids: &[Vec<u32>],
    compressor: &Compressor,
    engine: &Engine,
    tokenizer: &crate::models::tokenizer::TextTokenizer,
    prompt_tokens: Option<usize>,
) -> Result<PreparedInput> {
    let started = std::time::Instant::now();
    let texts = written
        .iter()
        .map(|t| input.apply(t, Some(compressor)))
        .collect::<Result<Vec<String>>>()?;
    let ids = match input {
        InputMethod::None => written_ids.to_vec(),
        _ => prompts::token_ids(tokenizer, &texts, prompt_tokens)?,
    };
    let seconds_per_prompt = started.elapsed().as_secs_f64() / written.len().max(1) as f64;
    // Only over prompts the model can read in one pass (a longer one fails its own case later).
    let fits = ids
        .iter()
        .all(|p| p.len() < engine.model.config().context_window());
    let bits_per_byte = match prompt_tokens {
        None if fits => Some(bits_per_byte(engine, tokenizer, &ids)?),
        _ => None,
    };
    Ok(PreparedInput {
        texts,
        ids,
        seconds_per_prompt,
        bits_per_byte,
    })
}

/// Bits per UTF-8 byte of `prompts` under the model: the surprisal of every token after each
/// prompt's first, over the bytes those tokens decode to.
fn bits_per_byte(
    engine: &Engine,
    tokenizer: &crate::models::tokenizer::TextTokenizer,
    prompts: &[Vec<u32>],
) -> Result<f64> {
    let (mut nats, mut bytes) = (0.0, 0usize);
    for ids in prompts.iter().filter(|ids| ids.len() > 1) {
        nats -= engine.token_log_probs(ids)?.iter().sum::<f64>();
        let whole = tokenizer.decode(ids)?.len();
        let first = tokenizer.decode(&ids[..1])?.len();
        bytes += whole.saturating_sub(first);
    }
    Ok(nats / std::f64::consts::LN_2 / bytes.max(1) as f64)
}
