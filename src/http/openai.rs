//! The OpenAI-compatible wire format, both ways: the streamed request body for
//! `/v1/completions` and `/v1/chat/completions`, and what one streamed chunk says (content,
//! reasoning, a role-only delta, the usage trailer, llama-server's `timings`, an error).

use serde_json::{json, Value};

/// Which endpoint a run talks to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `/v1/completions`: a prompt string, `choices[0].text` deltas.
    Completions,
    /// `/v1/chat/completions`: one user message, `choices[0].delta.content` deltas.
    Chat,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Completions => "/v1/completions",
            Api::Chat => "/v1/chat/completions",
        }
    }
}

/// What a request asks for, besides the prompt.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    pub api: Api,
    /// `model` field; servers that serve one model (llama-server) ignore it.
    pub served_model: Option<String>,
    pub max_tokens: usize,
    /// Ask the server to keep generating past end-of-sequence (vLLM, llama-server, SGLang take
    /// `ignore_eos`), so output lengths are what was asked for.
    pub ignore_eos: bool,
    pub temperature: f32,
    pub seed: Option<u64>,
}

/// The JSON body of one streamed request.
pub fn request_body(opts: &RequestOptions, prompt: &str) -> Value {
    let mut body = json!({
        "stream": true,
        // The last chunk then carries the token counts (vLLM, llama-server, OpenAI).
        "stream_options": {"include_usage": true},
        "max_tokens": opts.max_tokens,
        "temperature": opts.temperature,
    });
    let map = body.as_object_mut().expect("a JSON object");
    match opts.api {
        Api::Completions => map.insert("prompt".into(), json!(prompt)),
        Api::Chat => map.insert(
            "messages".into(),
            json!([{"role": "user", "content": prompt}]),
        ),
    };
    if let Some(model) = &opts.served_model {
        map.insert("model".into(), json!(model));
    }
    if opts.ignore_eos {
        map.insert("ignore_eos".into(), json!(true));
    }
    if let Some(seed) = opts.seed {
        map.insert("seed".into(), json!(seed));
    }
    body
}

/// Token counts a server reports (`usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// llama-server's own timings of a request (its `timings` object), for comparison with ours.
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct ServerTimings {
    pub prompt_n: Option<u64>,
    pub prompt_ms: Option<f64>,
    pub predicted_n: Option<u64>,
    pub predicted_ms: Option<f64>,
    pub predicted_per_token_ms: Option<f64>,
}

/// What one `data:` payload of a stream says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chunk {
    /// Generated text in this chunk (`text`, or `delta.content`); empty for a role-only delta.
    pub content: String,
    /// Reasoning text (`delta.reasoning_content` or `delta.reasoning`), counted as output and
    /// reported apart.
    pub reasoning: String,
    pub usage: Option<Usage>,
    pub timings: Option<ServerTimings>,
    /// `data: [DONE]`.
    pub done: bool,
    /// A `finish_reason` was given.
    pub finished: bool,
}

impl Chunk {
    /// Whether this chunk carries generated tokens (TTFT is the first such chunk).
    pub fn has_output(&self) -> bool {
        !self.content.is_empty() || !self.reasoning.is_empty()
    }
}

/// Parses one event's data; `Err` with the server's message for an error object or what is
/// wrong for a payload that is not an OpenAI chunk.
pub fn parse_chunk(data: &str) -> Result<Chunk, String> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Chunk {
            done: true,
            ..Chunk::default()
        });
    }
    let v: Value = serde_json::from_str(data)
        .map_err(|e| format!("a stream event that is not JSON ({e}): {}", excerpt(data)))?;
    if let Some(err) = v.get("error") {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        return Err(format!("the server sent an error: {message}"));
    }
    let choices = v.get("choices").and_then(Value::as_array);
    let usage = v.get("usage").filter(|u| !u.is_null()).map(|u| Usage {
        prompt_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        completion_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    });
    if choices.is_none() && usage.is_none() {
        return Err(format!(
            "a stream event with neither choices nor usage: {}",
            excerpt(data)
        ));
    }
    let mut chunk = Chunk {
        usage,
        timings: v
            .get("timings")
            .and_then(|t| serde_json::from_value(t.clone()).ok()),
        ..Chunk::default()
    };
    for choice in choices.into_iter().flatten() {
        if let Some(text) = choice.get("text").and_then(Value::as_str) {
            chunk.content.push_str(text);
        }
        if let Some(delta) = choice.get("delta") {
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                chunk.content.push_str(text);
            }
            for key in ["reasoning_content", "reasoning"] {
                if let Some(text) = delta.get(key).and_then(Value::as_str) {
                    chunk.reasoning.push_str(text);
                }
            }
        }
        chunk.finished |= choice.get("finish_reason").is_some_and(|f| !f.is_null());
    }
    Ok(chunk)
}

fn excerpt(s: &str) -> String {
    let cut: String = s.chars().take(120).collect();
    if cut.len() < s.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_deltas_role_only_reasoning_and_usage() {
        let role = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#,
        )
        .unwrap();
        assert!(!role.has_output() && !role.finished);
        let content = parse_chunk(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#).unwrap();
        assert_eq!(content.content, "Hi");
        let thought =
            parse_chunk(r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#).unwrap();
        assert!(thought.has_output() && thought.content.is_empty() && thought.reasoning == "hmm");
        let last = parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7},"timings":{"prompt_n":5,"prompt_ms":1.5,"predicted_n":7,"predicted_ms":70.0,"predicted_per_token_ms":10.0}}"#).unwrap();
        assert_eq!(
            last.usage,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 7
            })
        );
        assert_eq!(
            last.timings.and_then(|t| t.predicted_per_token_ms),
            Some(10.0)
        );
        assert!(parse_chunk("[DONE]").unwrap().done);
    }

    #[test]
    fn completions_text_and_finish() {
        let c =
            parse_chunk(r#"{"choices":[{"text":" world","finish_reason":"length"}],"usage":null}"#)
                .unwrap();
        assert_eq!(
            (c.content.as_str(), c.finished, c.usage),
            (" world", true, None)
        );
    }

    #[test]
    fn errors_and_foreign_payloads_are_refused_with_what_was_sent() {
        assert_eq!(
            parse_chunk(r#"{"error":{"message":"context full","code":400}}"#).unwrap_err(),
            "the server sent an error: context full"
        );
        assert!(parse_chunk("<html>").unwrap_err().contains("not JSON"));
        assert!(parse_chunk(r#"{"ok":true}"#)
            .unwrap_err()
            .contains("neither choices nor usage"));
    }

    #[test]
    fn request_bodies_ask_for_a_stream_with_usage() {
        let opts = RequestOptions {
            api: Api::Chat,
            served_model: Some("m".into()),
            max_tokens: 16,
            ignore_eos: true,
            temperature: 0.0,
            seed: Some(3),
        };
        let body = request_body(&opts, "hello");
        assert_eq!(body["messages"][0]["content"], "hello");
        assert_eq!(
            (
                body["stream"].clone(),
                body["stream_options"]["include_usage"].clone()
            ),
            (json!(true), json!(true))
        );
        assert_eq!(
            (
                body["model"].clone(),
                body["ignore_eos"].clone(),
                body["seed"].clone()
            ),
            (json!("m"), json!(true), json!(3))
        );
        let plain = request_body(
            &RequestOptions {
                api: Api::Completions,
                served_model: None,
                ignore_eos: false,
                seed: None,
                ..opts
            },
            "x",
        );
        assert_eq!(plain["prompt"], "x");
        assert!(plain.get("model").is_none() && plain.get("ignore_eos").is_none());
    }
}
