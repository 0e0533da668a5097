//! Fuzz target: what `llmbench serve` does with the bytes a client sends, over arbitrary input:
//! the request head parser (`serve::http1::parse_head`), then the body as either endpoint's
//! JSON (`serve::api::parse`), then the response builders over what was accepted. A panic here
//! is a request that could take the server's connection task down.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmbench::serve::api::{self, Endpoint, Envelope, Input, Usage};
use llmbench::serve::http1;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((head, len))) = http1::parse_head(data, 1 << 20) else { return };
    let body = &data[len..data.len().min(len + head.content_length)];
    for endpoint in [Endpoint::Completions, Endpoint::Chat] {
        match api::parse(endpoint, body) {
            Ok(req) => {
                let text = match &req.input {
                    Input::Prompt(p) => p.clone(),
                    Input::Messages(m) => m.iter().map(|m| m.content.clone()).collect(),
                };
                let envelope = Envelope { endpoint, id: "x", created: 0, model: &head.path };
                let usage = Usage { prompt_tokens: text.len(), completion_tokens: req.max_tokens.unwrap_or(0) };
                let _ = http1::event_chunk(&envelope.chunk(&text, true, None));
                let _ = http1::response(200, "application/json", envelope.response(&text, "stop", usage).as_bytes(), head.keep_alive);
                let _ = envelope.usage_chunk(usage);
            }
            Err(e) => {
                let _ = http1::response(e.status, "application/json", e.body().as_bytes(), false);
            }
        }
    }
});
