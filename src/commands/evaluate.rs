//! `llmbench evaluate`: dispatches to its actions (`score`: text against references, no model;
//! `perplexity`: a text file under a model).

use super::Outcome;
use crate::cli::evaluate::{EvaluateAction, EvaluateArgs};
use anyhow::Result;

pub fn run(args: &EvaluateArgs) -> Result<Outcome> {
    match &args.action {
        EvaluateAction::Score(score) => super::evaluate_score::run(score),
        EvaluateAction::Perplexity(ppl) => super::evaluate_perplexity::run(ppl),
    }
}
