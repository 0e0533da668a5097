//! Chat templates: the Jinja template a model ships (GGUF metadata `tokenizer.chat_template`,
//! or `chat_template` in a Hugging Face directory's tokenizer_config.json, or its
//! chat_template.jinja), rendered with minijinja the way transformers' `apply_chat_template`
//! renders it: `messages`, `add_generation_prompt`, `bos_token` and `eos_token` in scope,
//! `raise_exception` callable, Python string methods available (pycompat), blocks trimmed as
//! transformers sets `trim_blocks` and `lstrip_blocks`.

use super::gguf::GgufFile;
use super::source::{ModelFiles, ResolvedModel};
use crate::error::LlmbenchError;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A loaded template and where it came from.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    pub source: String,
    template: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// A template from its text (`source` says where it came from, for messages).
    pub fn new(source: &str, template: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let t = Self {
            source: source.into(),
            template: template.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        };
        // Parse once now, so a broken template is reported before a conversation starts.
        environment().template_from_str(&t.template).map_err(|e| {
            LlmbenchError::invalid(format!("{source}: not a valid Jinja chat template ({e:#})"))
        })?;
        Ok(t)
    }

    /// The model's own template, or the file `--chat-template` names; the special-token
    /// strings come from the model's BOS and first EOS ids. A model without one is an input
    /// error naming `--chat-template FILE`.
    pub fn load(
        resolved: &ResolvedModel,
        file: Option<&Path>,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Self> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                LlmbenchError::invalid(format!(
                    "--chat-template {}: cannot read ({e})",
                    path.display()
                ))
            })?;
            if text.trim().is_empty() {
                crate::bail_input!(
                    "--chat-template {}: the file is empty; give a Jinja chat template",
                    path.display()
                );
            }
            return Self::new(
                &format!("--chat-template {}", path.display()),
                &text,
                bos_token,
                eos_token,
            );
        }
        let found = match &resolved.files {
            ModelFiles::Gguf(path) => GgufFile::open(path)?
                .metadata_str("tokenizer.chat_template")
                .map(|t| {
                    (
                        format!("{} (tokenizer.chat_template)", path.display()),
                        t.to_string(),
                    )
                }),
            ModelFiles::Dense { tokenizer, .. } => tokenizer.parent().and_then(from_hf_dir),
            ModelFiles::NoWeights { .. } => None,
        };
        match found {
            Some((source, text)) => Self::new(&source, &text, bos_token, eos_token),
            None => crate::bail_input!(
                "{}: the model has no chat template (no tokenizer.chat_template in its GGUF, none in tokenizer_config.json); pass one with --chat-template FILE",
                resolved.id
            ),
        }
    }

    /// `load` with the special-token strings of the model itself: its BOS and first EOS ids
    /// decoded by its tokenizer (what `chat` and `serve` render with).
    pub fn for_model(
        resolved: &ResolvedModel,
        file: Option<&Path>,
        tokenizer: &super::tokenizer::TextTokenizer,
        config: &super::config::ModelConfig,
    ) -> Result<Self> {
        let special = |id: Option<u32>| -> Result<String> {
            Ok(id.map(|i| tokenizer.decode(&[i])).transpose()?.unwrap_or_default())
        };
        Self::load(
            resolved,
            file,
            &special(config.bos_token_id())?,
            &special(config.eos_token_ids().first().copied())?,
        )
    }

    /// The conversation as the model reads it.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let env = environment();
        let template = env.template_from_str(&self.template)?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| {
                LlmbenchError::invalid(format!(
                    "{}: rendering the conversation failed ({e:#})",
                    self.source
                ))
                .into()
            })
    }
}

/// transformers' Jinja settings.
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                message,
            ))
        },
    );
    env
}

/// A Hugging Face directory's template: chat_template.jinja, else tokenizer_config.json's
/// `chat_template` (a string, or a list of named templates: the one named "default").
fn from_hf_dir(dir: &Path) -> Option<(String, String)> {
    let jinja = dir.join("chat_template.jinja");
    if let Ok(text) = std::fs::read_to_string(&jinja) {
        return Some((jinja.display().to_string(), text));
    }
    let config_path = dir.join("tokenizer_config.json");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).ok()?).ok()?;
    let text = match config.get("chat_template")? {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))?
            .get("template")?
            .as_str()?
            .to_string(),
        _ => return None,
    };
    Some((format!("{} (chat_template)", config_path.display()), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_messages_and_the_generation_prompt() {
        let t = ChatTemplate::new(
            "test",
            "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content.strip() }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
            "<s>",
            "</s>",
        )
        .unwrap();
        let text = t
            .render(
                &[
                    Message::new("user", "  hi  "),
                    Message::new("assistant", "hello"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(text, "<s>[user] hi\n[assistant] hello\n[assistant]");
    }

    #[test]
    fn raise_exception_and_bad_templates_are_errors() {
        let t = ChatTemplate::new(
            "test",
            "{% if messages[0].role != 'user' %}{{ raise_exception('user first') }}{% endif %}",
            "",
            "",
        )
        .unwrap();
        assert!(format!(
            "{:#}",
            t.render(&[Message::new("assistant", "x")], false)
                .unwrap_err()
        )
        .contains("user first"));
        assert!(ChatTemplate::new("bad", "{% for %}", "", "")
            .unwrap_err()
            .to_string()
            .contains("not a valid Jinja chat template"));
    }
}
