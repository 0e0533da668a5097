//! One client connection: requests read one after another (keep-alive), routed to the health,
//! models, metrics and generation endpoints. A generation is tokenized here, checked against the
//! context and the pool, admitted or refused (429) by the in-flight bound, and submitted to the
//! engine thread; its tokens come back over a channel and go out whole or as server-sent
//! events. While it waits, the connection watches its socket: a client that hangs up is
//! cancelled at once, which frees its KV blocks.

use super::api::{self, ApiError, Endpoint, Envelope, Input, Usage};
use super::engine_thread::{Command, Update};
use super::http1::{self, event_chunk, event_stream_head, parse_head, LAST_CHUNK};
use super::text::TextStream;
use super::ServerState;
use crate::decode::sampling::SamplingConfig;
use crate::engine::batch::SeqRequest;
use crate::engine::StopReason;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long an idle keep-alive connection stays open.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);
/// How long a started request head or body may take to arrive.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

type Io = std::io::Result<()>;

/// Serves requests on `stream` until the client closes it, asks to, or misbehaves.
pub async fn handle(mut stream: TcpStream, state: Arc<ServerState>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let (head, head_len) = loop {
            match parse_head(&buf, state.max_body) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(e) => {
                    let _ = write_error(&mut stream, &ApiError::status(e.status, e.message), false).await;
                    return;
                }
            }
            let wait = if buf.is_empty() { KEEP_ALIVE_IDLE } else { REQUEST_READ_TIMEOUT };
            match tokio::time::timeout(wait, read_more(&mut stream, &mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => {
                    if !buf.is_empty() {
                        let _ = write_error(&mut stream, &ApiError::status(408, "the request head took too long"), false).await;
                    }
                    return;
                }
            }
        };
        buf.drain(..head_len);
        if head.expect_continue && buf.len() < head.content_length && stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
            return;
        }
        while buf.len() < head.content_length {
            match tokio::time::timeout(REQUEST_READ_TIMEOUT, read_more(&mut stream, &mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => {
                    let _ = write_error(&mut stream, &ApiError::status(408, "the request body took too long"), false).await;
                    return;
                }
            }
        }
        let body: Vec<u8> = buf.drain(..head.content_length).collect();
        let keep_alive = head.keep_alive && !state.shutting_down.load(Ordering::SeqCst);
        if route(&head, &body, &state, &mut stream, &mut buf, keep_alive).await.is_err() || !keep_alive {
            return;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn write_json(stream: &mut TcpStream, status: u16, body: &str, keep_alive: bool) -> Io {
    stream.write_all(&http1::response(status, "application/json", body.as_bytes(), keep_alive)).await
}

async fn write_error(stream: &mut TcpStream, e: &ApiError, keep_alive: bool) -> Io {
    write_json(stream, e.status, &e.body(), keep_alive).await
}

async fn route(head: &http1::Head, body: &[u8], state: &Arc<ServerState>, stream: &mut TcpStream, leftover: &mut Vec<u8>, keep_alive: bool) -> Io {
    let endpoint = match head.path.as_str() {
        "/v1/completions" => Some(Endpoint::Completions),
        "/v1/chat/completions" => Some(Endpoint::Chat),
        _ => None,
    };
    match (head.method.as_str(), head.path.as_str(), endpoint) {
        ("POST", _, Some(endpoint)) => generate(endpoint, body, state, stream, leftover, keep_alive).await,
        ("GET", "/health", _) => {
            if state.shutting_down.load(Ordering::SeqCst) {
                write_json(stream, 503, r#"{"status":"shutting down"}"#, keep_alive).await
            } else {
                write_json(stream, 200, r#"{"status":"ok"}"#, keep_alive).await
            }
        }
        ("GET", "/v1/models", _) => {
            let models = json!({"object": "list", "data": [{"id": state.model_name, "object": "model", "created": state.started_unix, "owned_by": "llmbench", "max_model_len": state.context_window}]});
            write_json(stream, 200, &models.to_string(), keep_alive).await
        }
        ("GET", "/metrics", _) => stream.write_all(&http1::response(200, "text/plain; version=0.0.4", state.metrics.render().as_bytes(), keep_alive)).await,
        (_, "/health" | "/v1/models" | "/metrics", _) | (_, _, Some(_)) => {
            write_error(stream, &ApiError::status(405, format!("{} is not allowed on {}", head.method, head.path)), keep_alive).await
        }
        _ => write_error(stream, &ApiError::status(404, format!("no route {} {}", head.method, head.path)), keep_alive).await,
    }
}

/// Gives the in-flight slot back however the request ends.
struct InFlight<'a>(&'a ServerState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The prompt's ids and the tokens to generate, or the 400 that says why not.
fn prepare(state: &ServerState, endpoint: Endpoint, req: &api::GenerateBody) -> Result<(Vec<u32>, usize), ApiError> {
    let text = match &req.input {
        Input::Prompt(p) => p.clone(),
        Input::Messages(messages) => match &state.template {
            Ok(t) => t.render(messages, true).map_err(|e| ApiError::bad("messages", format!("the chat template failed: {e:#}")))?,
            Err(why) => return Err(ApiError::status(400, format!("{why}: start the server with --chat-template FILE"))),
        },
    };
    let ids = state.tokenizer.encode(&text).map_err(|e| ApiError::bad("prompt", format!("{e:#}")))?;
    let param = if endpoint == Endpoint::Chat { "messages" } else { "prompt" };
    if ids.is_empty() {
        return Err(ApiError::bad(param, "the prompt is empty"));
    }
    let window = state.context_window;
    if ids.len() >= window {
        return Err(ApiError::bad(param, format!("the prompt is {} tokens; this model's context is {window}", ids.len())));
    }
    let max_tokens = req.max_tokens.unwrap_or(window - ids.len());
    if ids.len() + max_tokens > window {
        return Err(ApiError::bad(
            "max_tokens",
            format!("this model's maximum context length is {window} tokens; you asked for {} ({} in the prompt, {max_tokens} to generate)", ids.len() + max_tokens, ids.len()),
        ));
    }
    if ids.len() + max_tokens - 1 > state.pool_positions {
        return Err(ApiError::bad("max_tokens", format!("{} tokens do not fit the KV pool of {} positions (--kv-blocks)", ids.len() + max_tokens, state.pool_positions)));
    }
    Ok((ids, max_tokens))
}

async fn generate(endpoint: Endpoint, body: &[u8], state: &Arc<ServerState>, stream: &mut TcpStream, leftover: &mut Vec<u8>, keep_alive: bool) -> Io {
    let arrival = Instant::now();
    if state.shutting_down.load(Ordering::SeqCst) {
        return write_error(stream, &ApiError::status(503, "the server is shutting down"), false).await;
    }
    let prepared = api::parse(endpoint, body).and_then(|req| Ok((prepare(state, endpoint, &req)?, req)));
    let ((prompt_ids, max_tokens), req) = match prepared {
        Ok(p) => p,
        Err(e) => {
            state.metrics.refused("invalid");
            return write_error(stream, &e, keep_alive).await;
        }
    };
    if state.in_flight.fetch_add(1, Ordering::SeqCst) >= state.max_in_flight {
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        state.metrics.refused("rejected");
        let e = ApiError::status(429, format!("the server is at capacity ({} requests running or queued: --max-batch + --max-queue); retry later", state.max_in_flight));
        return write_error(stream, &e, keep_alive).await;
    }
    let _slot = InFlight(state);
    let request = state.next_request.fetch_add(1, Ordering::SeqCst);
    let sampling = SamplingConfig { temperature: req.temperature, top_k: req.top_k, top_p: req.top_p, repetition_penalty: 1.0, seed: req.seed.unwrap_or(state.seed.wrapping_add(request)) };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let seq = SeqRequest { prompt_ids: prompt_ids.clone(), max_new_tokens: max_tokens, sampling, stop_at_eos: !req.ignore_eos };
    if state.commands.send(Command::Submit { request, seq, updates: tx }).is_err() {
        return write_error(stream, &ApiError::status(503, "the engine has stopped"), false).await;
    }
    let id = format!("{}-{request}", if endpoint == Endpoint::Chat { "chatcmpl" } else { "cmpl" });
    let envelope = Envelope { endpoint, id: &id, created: unix_now(), model: &state.model_name };
    let mut text = TextStream::new(&state.tokenizer, req.stop.clone());
    let (mut first_at, mut last_at) = (None, None);
    if req.stream {
        stream.write_all(&event_stream_head(keep_alive)).await?;
    }
    let outcome = loop {
        let mut probe = [0u8; 1024];
        let update = tokio::select! {
            u = rx.recv() => u,
            read = stream.read(&mut probe) => match read {
                Ok(n) if n > 0 => { leftover.extend_from_slice(&probe[..n]); continue; }
                // The client hung up: cancel now, so the blocks free before the next step.
                _ => {
                    let _ = state.commands.send(Command::Cancel { request });
                    state.metrics.finished("cancelled", prompt_ids.len(), text.tokens(), None, None, arrival.elapsed().as_secs_f64());
                    return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "client disconnected"));
                }
            },
        };
        match update {
            Some(Update::Token { token, at }) => {
                first_at.get_or_insert(at);
                last_at = Some(at);
                let (delta, stopped) = text.push(token);
                if req.stream && !delta.is_empty() {
                    stream.write_all(&event_chunk(&envelope.chunk(&delta, text.first_chunk(), None))).await?;
                }
                if stopped {
                    let _ = state.commands.send(Command::Cancel { request });
                    break Ok("stop");
                }
            }
            Some(Update::Finished { reason }) => break Ok(if reason == StopReason::Eos { "stop" } else { "length" }),
            Some(Update::Failed(why)) => break Err(why),
            None => break Err("the engine dropped the request".into()),
        }
    };
    let usage = Usage { prompt_tokens: prompt_ids.len(), completion_tokens: text.tokens() };
    let ttft = first_at.map(|t| (t - arrival).as_secs_f64());
    let tpot = match (first_at, last_at) {
        (Some(a), Some(b)) if usage.completion_tokens > 1 => Some((b - a).as_secs_f64() / (usage.completion_tokens - 1) as f64),
        _ => None,
    };
    match outcome {
        Ok(finish) => {
            state.metrics.finished(finish, usage.prompt_tokens, usage.completion_tokens, ttft, tpot, arrival.elapsed().as_secs_f64());
            let rest = text.finish();
            if req.stream {
                let mut out = Vec::new();
                if !rest.is_empty() {
                    out.extend(event_chunk(&envelope.chunk(&rest, text.first_chunk(), None)));
                }
                out.extend(event_chunk(&envelope.chunk("", text.first_chunk(), Some(finish))));
                if req.include_usage {
                    out.extend(event_chunk(&envelope.usage_chunk(usage)));
                }
                out.extend(event_chunk("[DONE]"));
                out.extend_from_slice(LAST_CHUNK);
                stream.write_all(&out).await
            } else {
                write_json(stream, 200, &envelope.response(text.text(), finish, usage), keep_alive).await
            }
        }
        Err(why) => {
            state.metrics.finished("error", usage.prompt_tokens, usage.completion_tokens, ttft, tpot, arrival.elapsed().as_secs_f64());
            let e = ApiError::status(if why.contains("shutting down") { 503 } else { 500 }, why);
            if req.stream {
                let mut out = event_chunk(&e.body());
                out.extend(event_chunk("[DONE]"));
                out.extend_from_slice(LAST_CHUNK);
                stream.write_all(&out).await
            } else {
                write_error(stream, &e, keep_alive).await
            }
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
