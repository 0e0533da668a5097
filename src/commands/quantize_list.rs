//! `llmbench quantize --models FILE.toml`: each `[[model]]` of a model list (`model_list`) one
//! ordinary quantize run in its own directory under `--out`, so `plot` and `diff` read each.

use super::Outcome;
use crate::cli::quantize::QuantizeArgs;
use anyhow::{Context, Result};
use std::path::Path;

/// Each model of the list as its own run (its own report, so `plot` and `diff` read it as
/// any other) in `--out/<name>`, every flag of the command line applying to all of them
/// and the entry's own keys on top.
pub fn run(args: &QuantizeArgs, path: &Path, run_one: fn(&QuantizeArgs) -> Result<Outcome>) -> Result<Outcome> {
    let entries = super::model_list::read(path)?;
    let root = args.output.out.clone().unwrap_or_else(|| super::default_out_dir("quantize"));
    let mut outcome = Outcome::Success;
    for entry in &entries {
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
        one.output.out = Some(root.join(super::model_list::dir_name(&entry.id)));
        eprintln!("quantize: {} -> {}", entry.id, one.output.out.as_ref().map_or(String::new(), |o| o.display().to_string()));
        match run_one(&one).with_context(|| format!("--models {}: {}", path.display(), entry.id))? {
            Outcome::Interrupted => return Ok(Outcome::Interrupted),
            Outcome::CasesFailed => outcome = Outcome::CasesFailed,
            Outcome::Success => {}
        }
    }
    Ok(outcome)
}
