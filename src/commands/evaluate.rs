//! `llmbench evaluate`: dispatches to its actions (`score`: text against references, no model;
//! `perplexity`: a text file under a model) or, without one, runs the pipeline (`evaluate_run`).

use super::Outcome;
use crate::cli::evaluate::{EvaluateAction, EvaluateArgs};
use anyhow::Result;

pub fn run(args: &EvaluateArgs) -> Result<Outcome> {
    match &args.action {
        Some(EvaluateAction::Score(score)) => super::evaluate_score::run(score),
        Some(EvaluateAction::Perplexity(ppl)) => super::evaluate_perplexity::run(ppl),
        None => super::evaluate_run::run(&args.run),
    }
}
