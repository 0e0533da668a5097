//! The OpenAI API as the server reads and writes it: `/v1/completions` and
//! `/v1/chat/completions` request bodies checked field by field (an unknown type or value is a
//! 400 with OpenAI's error object naming the field), and the response objects, whole or as
//! stream chunks with the usage trailer. vLLM's and llama-server's `ignore_eos` and `top_k` are
//! taken too, since benchmark clients send them.

use crate::models::chat_template::Message;
use serde_json::{json, Map, Value};

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Prompt(String),
    Messages(Vec<Message>),
}

/// A generation request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateBody {
    pub input: Input,
    /// `max_tokens` (or chat's `max_completion_tokens`); absent: completions make 16 (OpenAI's
    /// default), chat fills the context.
    pub max_tokens: Option<usize>,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
    pub stream: bool,
    pub include_usage: bool,
    pub ignore_eos: bool,
    pub stop: Vec<String>,
}

/// A 4xx/5xx answer in OpenAI's error shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        Self { status: 400, message: message.into(), param: Some(param.into()) }
    }

    pub fn status(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), param: None }
    }

    /// `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> String {
        let kind = match self.status {
            400 | 404 | 405 | 413 | 417 | 431 => "invalid_request_error",
            429 => "rate_limit_error",
            503 => "service_unavailable",
            _ => "server_error",
        };
        json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": self.status}}).to_string()
    }
}

/// Parses and checks a request body for `endpoint`.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<GenerateBody, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::status(400, format!("the body is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::status(400, "the body must be a JSON object"));
    };
    let input = match endpoint {
        Endpoint::Completions => Input::Prompt(prompt(&map)?),
        Endpoint::Chat => Input::Messages(messages(&map)?),
    };
    if let Some(n) = map.get("n") {
        if n.as_u64() != Some(1) {
            return Err(ApiError::bad("n", "only n = 1 is supported"));
        }
    }
    for unsupported in ["logprobs", "top_logprobs", "tools", "functions", "suffix", "echo", "best_of"] {
        if map.get(unsupported).is_some_and(|v| !v.is_null() && *v != Value::Bool(false)) {
            return Err(ApiError::bad(unsupported, format!("`{unsupported}` is not supported by this server")));
        }
    }
    let max_tokens = match endpoint {
        Endpoint::Chat => uint(&map, "max_completion_tokens")?.or(uint(&map, "max_tokens")?),
        Endpoint::Completions => Some(uint(&map, "max_tokens")?.unwrap_or(16)),
    };
    if max_tokens == Some(0) {
        return Err(ApiError::bad("max_tokens", "max_tokens must be at least 1"));
    }
    let temperature = number(&map, "temperature")?.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad("temperature", format!("temperature {temperature} is outside [0, 2]")));
    }
    let top_p = number(&map, "top_p")?;
    if top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(ApiError::bad("top_p", "top_p must be in (0, 1]"));
    }
    let top_k = match map.get("top_k") {
        // vLLM and llama-server take -1 and 0 as "no limit".
        Some(v) if v.as_i64().is_some_and(|k| k <= 0) => None,
        _ => uint(&map, "top_k")?,
    };
    let stream = boolean(&map, "stream")?;
    let include_usage = match map.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => boolean(o, "include_usage")?,
        Some(_) => return Err(ApiError::bad("stream_options", "stream_options must be an object")),
    };
    let stop = match map.get("stop") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.len() <= 4 => items
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(|| ApiError::bad("stop", "stop must be a string or a list of up to 4 strings")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::bad("stop", "stop must be a string or a list of up to 4 strings")),
    };
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::bad("stop", "a stop string is empty"));
    }
    let seed = match map.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().or_else(|| v.as_i64().map(|s| s as u64)).ok_or_else(|| ApiError::bad("seed", "seed must be an integer"))?),
    };
    Ok(GenerateBody { input, max_tokens, temperature, top_p, top_k, seed, stream, include_usage, ignore_eos: boolean(&map, "ignore_eos")?, stop })
}

fn prompt(map: &Map<String, Value>) -> Result<String, ApiError> {
    match map.get("prompt") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => Ok(items[0].as_str().unwrap_or_default().to_string()),
        Some(Value::Array(_)) => Err(ApiError::bad("prompt", "give one prompt string (batches of prompts are not supported)")),
        Some(_) => Err(ApiError::bad("prompt", "prompt must be a string")),
        None => Err(ApiError::bad("prompt", "`prompt` is required")),
    }
}

fn messages(map: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let Some(Value::Array(items)) = map.get("messages") else {
        return Err(ApiError::bad("messages", "`messages` is required: a list of {role, content}"));
    };
    if items.is_empty() {
        return Err(ApiError::bad("messages", "`messages` is empty"));
    }
    items
        .iter()
        .map(|m| {
            let role = m.get("role").and_then(Value::as_str).ok_or_else(|| ApiError::bad("messages", "each message needs a string `role`"))?;
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                // The content-parts form: text parts joined (images and audio are refused).
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => Ok(t.to_string()),
                        _ => Err(ApiError::bad("messages", "only text content parts are supported")),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(""),
                _ => return Err(ApiError::bad("messages", "each message needs a string `content`")),
            };
            if !["system", "user", "assistant", "developer"].contains(&role) {
                return Err(ApiError::bad("messages", format!("role `{role}` is not system, user or assistant")));
            }
            Ok(Message::new(if role == "developer" { "system" } else { role }, &content))
        })
        .collect()
}

fn uint(map: &Map<String, Value>, key: &str) -> Result<Option<usize>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| ApiError::bad(key, format!("{key} must be a non-negative integer"))),
    }
}

fn number(map: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| ApiError::bad(key, format!("{key} must be a number"))),
    }
}

fn boolean(map: &Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad(key, format!("{key} must be true or false"))),
    }
}

/// Fields every response and chunk of one request shares.
pub struct Envelope<'a> {
    pub endpoint: Endpoint,
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
}

impl Envelope<'_> {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }

    fn wrap(&self, chunk: bool, choices: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(self.object(chunk)));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        m.insert("choices".into(), choices);
        m
    }

    /// The whole response of a request that did not stream.
    pub fn response(&self, text: &str, finish_reason: &str, usage: Usage) -> String {
        let choice = match self.endpoint {
            Endpoint::Completions => json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason}),
            Endpoint::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish_reason}),
        };
        let mut m = self.wrap(false, json!([choice]));
        m.insert("usage".into(), usage.json());
        Value::Object(m).to_string()
    }

    /// A stream chunk carrying `text` (chat's first chunk also carries the role), or the last
    /// one with its finish reason.
    pub fn chunk(&self, text: &str, first: bool, finish_reason: Option<&str>) -> String {
        let choice = match self.endpoint {
            Endpoint::Completions => json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason}),
            Endpoint::Chat => {
                let delta = match (first, finish_reason) {
                    (_, Some(_)) if text.is_empty() => json!({}),
                    (true, _) => json!({"role": "assistant", "content": text}),
                    _ => json!({"content": text}),
                };
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason})
            }
        };
        Value::Object(self.wrap(true, json!([choice]))).to_string()
    }

    /// The usage trailer (`stream_options.include_usage`): no choices, the counts.
    pub fn usage_chunk(&self, usage: Usage) -> String {
        let mut m = self.wrap(true, json!([]));
        m.insert("usage".into(), usage.json());
        Value::Object(m).to_string()
    }
}

/// Token counts, from the ids the engine took and made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    fn json(self) -> Value {
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": self.prompt_tokens + self.completion_tokens})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_endpoints_with_their_defaults() {
        let b = parse(Endpoint::Completions, br#"{"prompt": "hi", "stream": true, "stream_options": {"include_usage": true}, "ignore_eos": true, "top_k": -1}"#).unwrap();
        assert_eq!((b.max_tokens, b.temperature, b.stream, b.include_usage, b.ignore_eos, b.top_k), (Some(16), 1.0, true, true, true, None));
        let c = parse(Endpoint::Chat, br#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "max_completion_tokens": 5, "stop": "x"}"#).unwrap();
        assert_eq!(c.input, Input::Messages(vec![Message::new("user", "ab")]));
        assert_eq!((c.max_tokens, c.stop.as_slice()), (Some(5), &["x".to_string()][..]));
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let param = |endpoint, body: &str| parse(endpoint, body.as_bytes()).unwrap_err().param;
        assert_eq!(parse(Endpoint::Completions, b"{nope").unwrap_err().status, 400);
        assert_eq!(param(Endpoint::Completions, "{}"), Some("prompt".into()));
        assert_eq!(param(Endpoint::Completions, r#"{"prompt": "a", "max_tokens": -3}"#), Some("max_tokens".into()));
        assert_eq!(param(Endpoint::Completions, r#"{"prompt": "a", "temperature": "hot"}"#), Some("temperature".into()));
        assert_eq!(param(Endpoint::Completions, r#"{"prompt": "a", "n": 2}"#), Some("n".into()));
        assert_eq!(param(Endpoint::Completions, r#"{"prompt": "a", "logprobs": 3}"#), Some("logprobs".into()));
        assert_eq!(param(Endpoint::Chat, r#"{"messages": []}"#), Some("messages".into()));
        assert_eq!(param(Endpoint::Chat, r#"{"messages": [{"role": "robot", "content": "a"}]}"#), Some("messages".into()));
        assert_eq!(param(Endpoint::Chat, r#"{"messages": [{"role": "user", "content": "a"}], "stop": [1]}"#), Some("stop".into()));
        let e = ApiError::bad("prompt", "x");
        let v: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!((v["error"]["type"].as_str(), v["error"]["param"].as_str()), (Some("invalid_request_error"), Some("prompt")));
    }
}
