//! `llmbench sled --task truthfulqa`: TruthfulQA's multiple choice under standard decoding,
//! SLED's logits evolution and DoLa on one model, as the SLED paper's code scores it. Each
//! answer is one teacher-forced pass over its tokens with the question's prompt cached (the
//! prompt but its last token is fed once; per answer the cache is rolled back to it and the
//! last prompt token and the answer are fed), the decoding's transform applied at every answer
//! position. Two scores per answer, labelled: the sum of the transform's raw values at the
//! answer's tokens (what the authors' TruthfulQA script sums: their `post_softmax` is off), and
//! the sum of log-probabilities (log_softmax of the transform). DoLa scores without its
//! relative-top filter (their script's `relative_top` 0: the filter's -inf would make every
//! filtered answer -inf).

use super::setup::load_model;
use super::Outcome;
use crate::cli::evaluate::ScoreFormat;
use crate::cli::sled::SledArgs;
use crate::decode::layer_contrast::{layer_logits_rows, Contrast, ContrastConfig};
use crate::decode::{dola, sled_evolution, Method};
use crate::kv::{self, KvKind};
use crate::metrics::truthfulqa::{self, Question};
use crate::models::tokenizer::TextTokenizer;
use crate::models::Model;
use crate::results::schema::{Interval, McScores, TruthfulqaScores};
use anyhow::Result;
use candle_core::{Device, Tensor};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// An answer's two scores.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct AnswerScore {
    /// Sum of the transform's raw values at the answer's tokens (the authors' TruthfulQA score).
    pub raw: f64,
    /// Sum of log-probabilities (log_softmax of the transform).
    pub log_prob: f64,
}

fn log_softmax_at(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if max == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row[target] as f64 - max - sum.ln()
}

/// DoLa's contrast without relative-top filtering, as the SLED authors' TruthfulQA scoring
/// runs it: log_softmax(final) - log_softmax(the most divergent candidate).
fn dola_unfiltered(final_logits: &[f32], premature: &[Vec<f32>], candidates: &[usize]) -> Vec<f32> {
    let (_, layer) = dola::contrast(final_logits, premature, candidates);
    let chosen = candidates.iter().position(|&l| l == layer).unwrap_or(0);
    let lsm = |x: &[f32]| {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = x.iter().map(|&v| (v - max).exp()).sum::<f32>().ln() + max;
        x.iter().map(|&v| v - log_sum).collect::<Vec<f32>>()
    };
    let (f, b) = (lsm(final_logits), lsm(&premature[chosen]));
    f.iter().zip(&b).map(|(a, b)| a - b).collect()
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
                    let rows = layer_logits_rows(
                        self.model,
                        &fed,
                        p - 1,
                        cache.as_mut(),
                        &self.layers,
                        c.premature_norm,
                        0,
                    )?;
                    for ((final_logits, premature), &t) in rows.iter().zip(targets) {
                        let row = match &c.contrast {
                            Contrast::Sled(e) => sled_evolution::evolve(final_logits, premature, e),
                            Contrast::Dola(_) => {
                                dola_unfiltered(final_logits, premature, &self.layers)
                            }
                        };
                        raw += row[t as usize] as f64;
                        log_prob += log_softmax_at(&row, t as usize);
                    }
                }
            }
            out.push(AnswerScore { raw, log_prob });
        }
        Ok(out)
    }
}

/// One question's scores: the best answer's, the correct and the incorrect ones'.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Scored {
    best: AnswerScore,
    correct: Vec<AnswerScore>,
    incorrect: Vec<AnswerScore>,
}

fn score_question(scorer: &QuestionScorer, q: &Question) -> Result<Scored> {
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
    Ok(Scored {
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
/// a question took.
pub(super) fn score_questions(
    loaded: &crate::models::LoadedModel,
    device: &Device,
    contrast: Option<&ContrastConfig>,
    questions: &[Question],
) -> Result<(Vec<Scored>, f64)> {
    let cfg = loaded.model.config();
    if let Some(c) = contrast {
        c.validate(cfg.n_layers(), cfg.vocab_size(), cfg.tied_embeddings())
            .map_err(crate::error::LlmbenchError::invalid)?;
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
    let scored: Vec<Scored> = questions
        .iter()
        .map(|q| score_question(&scorer, q))
        .collect::<Result<_>>()?;
    Ok((
        scored,
        started.elapsed().as_secs_f64() / questions.len().max(1) as f64,
    ))
}

/// MC1, MC2, MC3 over the questions from one of the two scores, with 95% bootstrap intervals.
fn mc(scored: &[Scored], get: fn(&AnswerScore) -> f64, resamples: usize) -> McScores {
    let per_question: Vec<(f64, f64, f64)> = scored
        .iter()
        .map(|s| {
            truthfulqa::mc_scores(
                get(&s.best),
                &s.correct.iter().map(get).collect::<Vec<_>>(),
                &s.incorrect.iter().map(get).collect::<Vec<_>>(),
            )
        })
        .collect();
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
    scored: &[Scored],
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

pub fn run(args: &SledArgs) -> Result<Outcome> {
    let questions = load_questions(&args.data, "--data", args.limit)?;
    if let Some(m) = args
        .methods
        .iter()
        .find(|m| !matches!(m, Method::Standard | Method::SledEvolution | Method::Dola))
    {
        crate::bail_input!(
            "--methods {}: the SLED study scores standard, sled-evolution and dola",
            m.name()
        );
    }
    let loaded = load_model(&args.model, &args.device, 42)?;
    let mut results = serde_json::Map::new();
    let mut table = format!(
        "{}: {} questions, SLED/DoLa paper scoring (6-shot prompt, answer log-likelihoods)\n\nmethod | score | MC1 [95% CI] | MC2 [95% CI] | MC3 [95% CI] | s/question\n",
        loaded.model.spec.id,
        questions.len()
    );
    for &method in &args.methods {
        let config = if method == Method::Standard {
            None
        } else {
            Some(args.contrast.config(method)?)
        };
        let (scored, seconds) =
            score_questions(&loaded.model, &loaded.device, config.as_ref(), &questions)?;
        let label = match &config {
            None => "standard".to_string(),
            Some(c) => format!("{} {}", method.name(), c.label()),
        };
        let summary = summarize(&scored, seconds, args.bootstrap);
        let cell = |i: &Interval| format!("{:.4} [{:.3}, {:.3}]", i.mean, i.ci95[0], i.ci95[1]);
        for (kind, m) in [("raw", &summary.raw), ("log_prob", &summary.log_prob)] {
            table += &format!(
                "{label} | {kind} | {} | {} | {} | {seconds:.3}\n",
                cell(&m.mc1),
                cell(&m.mc2),
                cell(&m.mc3)
            );
        }
        results.insert(
            label,
            json!({"seconds_per_question": seconds, "questions": scored, "raw": summary.raw, "log_prob": summary.log_prob}),
        );
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        ScoreFormat::Table => out.write_all(table.as_bytes())?,
        ScoreFormat::Json | ScoreFormat::Jsonl => {
            let report = json!({"model": loaded.model.spec.id, "data": args.data.display().to_string(), "questions": questions.len(), "methods": results});
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?
        }
    }
    Ok(Outcome::Success)
}
