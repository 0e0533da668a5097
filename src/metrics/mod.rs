//! Quality metrics as pure functions of text, ids and distributions (no engine, no model): the
//! reference text metrics reproduced exactly (BLEU and chrF as sacrebleu, ROUGE as rouge-score),
//! diversity and repetition, and the distribution metrics of the quantize command.

pub mod bleu;
pub mod chrf;
pub mod distribution;
pub mod diversity;
pub mod ngrams;
pub mod perplexity;
pub mod porter;
pub mod quantization;
pub mod rouge;
pub mod text_tokenize;
pub mod truthfulqa;
