//! TruthfulQA's multiple choice under standard decoding, SLED's logits evolution or DoLa, as
//! the SLED paper's code scores it (`sled --task truthfulqa`, and `evaluate --task truthfulqa`
//! for standard decoding). Each
//! answer is one teacher-forced pass over its tokens with the question's prompt cached (the
//! prompt but its last token is fed once; per answer the cache is rolled back to it and the
//! last prompt token and the answer are fed), the decoding's transform applied at every answer
//! position. Two scores per answer, labelled: the sum of the transform's raw values at the
//! answer's tokens (what the authors' TruthfulQA script sums: their `post_softmax` is off), and
//! the sum of log-probabilities (log_softmax of the transform). DoLa scores without its
//! relative-top filter (their script's `relative_top` 0: the filter's -inf would make every
//! filtered answer -inf).

use crate::decode::dola;
use crate::decode::layer_contrast::{contrast_rows, layer_logits_rows, Contrast, ContrastConfig};
use crate::kv::{self, KvKind};
use crate::metrics::truthfulqa::{self, AnswerScore, Question, QuestionScores};
use crate::models::tokenizer::TextTokenizer;
use crate::models::Model;
use crate::results::schema::{Interval, McScores, TruthfulqaScores};
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::path::Path;
use std::time::Instant;

fn log_softmax_at(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if max == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row[target] as f64 - max - sum.ln()
}

/// Scores answers of one prompt, the prompt's prefix cached once.
struct QuestionScorer<'a> {
    model: &'a dyn Model,
    tokenizer: &'a TextTokenizer,
    device: &'a Device,
    /// None: standard decoding.
    contrast: Option<&'a ContrastConfig>,
    layers: Vec<usize>,
}

impl QuestionScorer<'_> {
    fn score(&self, prompt: &str, answers: &[&String]) -> Result<Vec<AnswerScore>> {
        let prompt_ids = self.tokenizer.encode_with_special_tokens(prompt)?;
        let n_layers = self.model.config().n_layers();
        let p = prompt_ids.len();
        let mut cache = kv::build(KvKind::Full, n_layers, p + 256);
        let prefix = Tensor::new(&prompt_ids[..p - 1], self.device)?.unsqueeze(0)?;
        self.model.forward(&prefix, 0, cache.as_mut())?;
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            let full = self.tokenizer.encode_with_special_tokens(&format!(
                "{prompt}{}",
                truthfulqa::continuation(answer)
            ))?;
            // Their code takes the tokens past the prompt's length as the answer's.
            if full.len() <= p || full[..p - 1] != prompt_ids[..p - 1] {
                anyhow::bail!("the answer {answer:?} changes how the prompt tokenizes; it cannot be scored after the cached prompt");
            }
            cache.truncate(p - 1)?;
            let fed = Tensor::new(&full[p - 1..full.len() - 1], self.device)?.unsqueeze(0)?;
            let targets = &full[p..];
            let (mut raw, mut log_prob) = (0f64, 0f64);
            match self.contrast {
                None => {
                    let rows: Vec<Vec<f32>> = self
                        .model
                        .forward_all(&fed, p - 1, cache.as_mut())?
                        .squeeze(0)?
                        .to_vec2()?;
                    for (row, &t) in rows.iter().zip(targets) {
                        raw += row[t as usize] as f64;
                        log_prob += log_softmax_at(row, t as usize);
                    }
                }
                Some(c) => {
                    // Positions are independent: DoLa's contrasts and the log-softmaxes run
                    // in parallel, and the sums are taken in order (thread-independent).
                    use rayon::prelude::*;
                    let rows: Vec<Vec<f32>> = match &c.contrast {
                        Contrast::Sled(_) => contrast_rows(
                            self.model,
                            &fed,
                            p - 1,
                            cache.as_mut(),
                            c,
                            &self.layers,
                            0,
                        )?,
                        Contrast::Dola(_) => {
                            let layers = &self.layers;
                            layer_logits_rows(
                                self.model,
                                &fed,
                                p - 1,
                                cache.as_mut(),
                                layers,
                                c.premature_norm,
                                0,
                            )?
                            .par_iter()
                            .map(|(final_logits, premature)| {
                                dola::contrast_unfiltered(final_logits, premature)
                            })
                            .collect()
                        }
                    };
                    let per_position: Vec<(f64, f64)> = rows
                        .par_iter()
                        .zip(targets.par_iter())
                        .map(|(row, &t)| (row[t as usize] as f64, log_softmax_at(row, t as usize)))
                        .collect();
                    for (r, l) in per_position {
                        raw += r;
                        log_prob += l;
                    }
                }
            }
            out.push(AnswerScore { raw, log_prob });
        }
        Ok(out)
    }
}

fn score_question(scorer: &QuestionScorer, q: &Question) -> Result<QuestionScores> {
    let prompt = truthfulqa::prompt(&q.question);
    let mut answers: Vec<&String> = q.correct.iter().chain(&q.incorrect).collect();
    // Their MC1 reads the best answer's score from the correct list; where the data does not
    // list it there, it is scored on its own.
    let best_at = q.correct.iter().position(|a| a == &q.best);
    if best_at.is_none() {
        answers.push(&q.best);
    }
    let scores = scorer.score(&prompt, &answers)?;
    let (correct, rest) = scores.split_at(q.correct.len());
    let (incorrect, extra) = rest.split_at(q.incorrect.len());
    Ok(QuestionScores {
        best: best_at.map_or_else(|| extra[0], |i| correct[i]),
        correct: correct.to_vec(),
        incorrect: incorrect.to_vec(),
    })
}

/// The questions of `path` (flag `flag`), the first `limit` of them where given.
pub(super) fn load_questions(
    path: &Path,
    flag: &str,
    limit: Option<usize>,
) -> Result<Vec<Question>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::error::LlmbenchError::invalid(format!(
            "{flag} {}: cannot read it ({e}); TruthfulQA.csv is in ../shared/data/truthfulqa",
            path.display()
        ))
    })?;
    let mut questions = truthfulqa::parse_csv(&text).map_err(|e| {
        crate::error::LlmbenchError::invalid(format!("{flag} {}: {e}", path.display()))
    })?;
    if let Some(n) = limit {
        if n == 0 {
            crate::bail_input!("--limit 0: score at least one question");
        }
        questions.truncate(n);
    }
    Ok(questions)
}

/// Every question's answer scores under a decoding (`None`: standard) and the mean wall time
/// a question took. `after_each` is called after every question and stops the scoring (None)
/// when it returns false (Ctrl-C).
pub(super) fn score_questions(
    loaded: &crate::models::LoadedModel,
    device: &Device,
    contrast: Option<&ContrastConfig>,
    questions: &[Question],
    after_each: &mut dyn FnMut() -> bool,
) -> Result<Option<(Vec<QuestionScores>, f64)>> {
    let cfg = loaded.model.config();
    if let Some(c) = contrast {
        c.check(loaded.model.as_ref())?;
    }
    let layers = contrast.map_or(vec![], |c| c.layers(cfg.n_layers(), cfg.tied_embeddings()));
    let scorer = QuestionScorer {
        model: loaded.model.as_ref(),
        tokenizer: &loaded.tokenizer,
        device,
        contrast,
        layers,
    };
    let started = Instant::now();
    let mut scored = Vec::with_capacity(questions.len());
    for q in questions {
        scored.push(score_question(&scorer, q)?);
        if !after_each() {
            return Ok(None);
        }
    }
    let seconds = started.elapsed().as_secs_f64() / questions.len().max(1) as f64;
    Ok(Some((scored, seconds)))
}

/// MC1, MC2, MC3 over the questions from one of the two scores, with 95% bootstrap intervals.
fn mc(scored: &[QuestionScores], get: fn(&AnswerScore) -> f64, resamples: usize) -> McScores {
    let per_question: Vec<(f64, f64, f64)> = scored.iter().map(|s| s.mc(get)).collect();
    let interval = |f: fn(&(f64, f64, f64)) -> f64| {
        let v: Vec<f64> = per_question.iter().map(f).collect();
        let (lo, hi) = truthfulqa::bootstrap_mean_ci(&v, resamples, 0);
        Interval {
            mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
            ci95: [lo, hi],
        }
    };
    McScores {
        mc1: interval(|x| x.0),
        mc2: interval(|x| x.1),
        mc3: interval(|x| x.2),
    }
}

/// The summary of scored questions: MC scores from raw and from log-probability sums.
pub(super) fn summarize(
    scored: &[QuestionScores],
    seconds_per_question: f64,
    resamples: usize,
) -> TruthfulqaScores {
    TruthfulqaScores {
        questions: scored.len(),
        raw: mc(scored, |a| a.raw, resamples),
        log_prob: mc(scored, |a| a.log_prob, resamples),
        seconds_per_question,
    }
}
