//! The inputs of the evaluate pipeline: the data (`--data` JSONL or lines, `--prompt`, or the
//! built-in prompts, with references and keywords) and the models to run (`--model A,B` or a
//! `--models` list), and the checks of its flags.

use super::evaluate_score;
use super::model_list;
use crate::cli::evaluate::{EvaluateTask, PipelineArgs, TextMetric};
use anyhow::Result;
use serde_json::Value;
use sha2::Digest;

/// The prompts and what the data says about each.
pub(super) struct Data {
    pub(super) prompts: Vec<String>,
    pub(super) references: Vec<Option<String>>,
    pub(super) keywords: Vec<Vec<String>>,
    pub(super) sha256: Option<String>,
}

impl Data {
    /// References for every prompt, or none (a data set with some is refused earlier).
    pub(super) fn references(&self) -> Option<Vec<&str>> {
        self.references.iter().map(|r| r.as_deref()).collect()
    }
}

/// One line of `--data` JSONL (other fields, such as an id, are allowed and ignored).
#[derive(serde::Deserialize)]
struct DataLine {
    prompt: String,
    reference: Option<String>,
    keywords: Option<Vec<String>>,
}

/// `--data` (JSONL, or a prompt a line), `--prompt`, or the built-in prompts.
pub(super) fn read_data(args: &PipelineArgs) -> Result<Data> {
    let Some(path) = &args.data else {
        let prompts = super::prompts::load(&args.prompts, None)?;
        let n = prompts.len();
        return Ok(Data {
            prompts,
            references: vec![None; n],
            keywords: vec![vec![]; n],
            sha256: None,
        });
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::error::LlmbenchError::invalid(format!(
            "--data {}: cannot read it ({e})",
            path.display()
        ))
    })?;
    let sha256 = Some(format!("{:x}", sha2::Sha256::digest(text.as_bytes())));
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        crate::bail_input!("--data {}: no prompts in the file", path.display());
    }
    let mut data = Data {
        prompts: vec![],
        references: vec![],
        keywords: vec![],
        sha256,
    };
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    for (i, line) in lines {
        let fail = |why: String| {
            crate::error::LlmbenchError::invalid(format!(
                "--data {} line {}: {why}",
                path.display(),
                i + 1
            ))
        };
        let entry = if jsonl {
            let value: Value =
                serde_json::from_str(line).map_err(|e| fail(format!("not JSON ({e})")))?;
            if !value.is_object() {
                return Err(fail("not a JSON object".into()));
            }
            serde_json::from_value::<DataLine>(value).map_err(|e| fail(format!("{e} (each line needs a string `prompt`; `reference` a string and `keywords` a list of strings where given)")))?
        } else {
            DataLine {
                prompt: line.to_string(),
                reference: None,
                keywords: None,
            }
        };
        if entry.prompt.trim().is_empty() {
            return Err(fail("the prompt is empty".into()));
        }
        data.prompts.push(entry.prompt);
        data.references.push(entry.reference);
        data.keywords.push(entry.keywords.unwrap_or_default());
    }
    let with = data.references.iter().filter(|r| r.is_some()).count();
    if with > 0 && with < data.prompts.len() {
        let missing = data
            .references
            .iter()
            .position(Option::is_none)
            .unwrap_or(0);
        crate::bail_input!(
            "--data {}: {with} of {} prompts have a `reference` but prompt {} does not; give every prompt one, or none (outputs are then scored against the baseline's)",
            path.display(),
            data.prompts.len(),
            missing + 1
        );
    }
    Ok(data)
}

/// A model to run and how.
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) no_weights: bool,
    pub(super) formats: String,
    pub(super) skip_evaluate: bool,
}

pub(super) fn entries(args: &PipelineArgs) -> Result<Vec<Entry>> {
    if let Some(path) = &args.models {
        return Ok(model_list::read(path)?
            .into_iter()
            .map(|e| Entry {
                formats: if e.skip_quantize {
                    "f32".into()
                } else {
                    e.formats.unwrap_or_else(|| args.formats.clone())
                },
                id: e.id,
                no_weights: e.no_weights,
                skip_evaluate: e.skip_evaluate,
            })
            .collect());
    }
    let ids: Vec<&str> = args.model.model.split(',').map(str::trim).collect();
    if ids.iter().any(|m| m.is_empty()) {
        crate::bail_input!("--model {}: empty entry in the list", args.model.model);
    }
    Ok(ids
        .into_iter()
        .map(|id| Entry {
            id: id.into(),
            no_weights: args.model.no_weights,
            formats: args.formats.clone(),
            skip_evaluate: false,
        })
        .collect())
}

/// The metrics asked, or all of them (coherence included: the pipeline is the full study).
pub(super) fn metrics(asked: &[TextMetric]) -> Vec<TextMetric> {
    let mut all = evaluate_score::chosen_metrics(asked, true);
    if asked.is_empty() {
        all.push(TextMetric::Coherence);
    }
    all
}

pub(super) fn validate(args: &PipelineArgs) -> Result<()> {
    if args.max_new_tokens == 0 {
        crate::bail_input!("--max-new-tokens 0: generate at least 1 token");
    }
    if args.repetitions == 0 {
        crate::bail_input!("--repetitions 0: measure at least one run");
    }
    if args.task == EvaluateTask::Perplexity && args.text.is_none() {
        crate::bail_input!(
            "--task perplexity needs --text FILE: the text each model and format scores"
        );
    }
    if args.window.is_some_and(|w| w < 2) {
        crate::bail_input!(
            "--window {}: use at least 2 tokens",
            args.window.unwrap_or(0)
        );
    }
    Ok(())
}
