//! One streamed request, timed: what was scheduled, sent and received, as a `RequestRecord`.
//! Times are offsets in seconds from the run's start instant; latencies count from the
//! request's scheduled send time (schedule.rs says why).

use super::client::{post_stream, Endpoint, Failure, Pool, Timeouts};
use super::openai::{parse_chunk, request_body, RequestOptions, ServerTimings, Usage};
use std::time::Instant;

/// Where a request's output token count came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's `usage.completion_tokens` (the last usage object of the stream).
    Usage,
    /// The server sent no usage: our tokenizer counted the streamed text.
    Tokenizer,
}

/// What happened to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub index: usize,
    pub scheduled_s: f64,
    /// Sent minus scheduled: time in the client's own queue (a concurrency slot, the runtime).
    pub queue_s: f64,
    /// The arrival of each chunk that carried output (content or reasoning), from scheduled.
    pub chunk_s: Vec<f64>,
    /// Output text of each such chunk (content and reasoning), for token counts per chunk.
    pub chunk_text: Vec<String>,
    /// Chunks that carried reasoning.
    pub reasoning_chunks: usize,
    /// End of the stream, from scheduled.
    pub e2e_s: f64,
    pub usage: Option<Usage>,
    pub server_timings: Option<ServerTimings>,
    pub failure: Option<Failure>,
}

impl RequestRecord {
    /// TTFT: the first chunk that carried output (a role-only first chunk is not a token).
    pub fn ttft_s(&self) -> Option<f64> {
        self.chunk_s.first().copied()
    }
}

/// Sends request `index` (due at `scheduled`, sent now) and records it.
pub async fn run_one(
    pool: &Pool,
    ep: &Endpoint,
    opts: &RequestOptions,
    prompt: &str,
    timeouts: Timeouts,
    index: usize,
    start: Instant,
    scheduled: Instant,
) -> RequestRecord {
    let sent = Instant::now();
    let since = |t: Instant| t.saturating_duration_since(scheduled).as_secs_f64();
    let mut rec = RequestRecord {
        index,
        scheduled_s: scheduled.saturating_duration_since(start).as_secs_f64(),
        queue_s: since(sent),
        chunk_s: Vec::new(),
        chunk_text: Vec::new(),
        reasoning_chunks: 0,
        e2e_s: 0.0,
        usage: None,
        server_timings: None,
        failure: None,
    };
    let body = serde_json::to_vec(&request_body(opts, prompt)).unwrap_or_default();
    let mut stream_error = None;
    let mut finished = false;
    let result = post_stream(pool, ep, opts.api.path(), &body, timeouts, |event| {
        if event.event.as_deref() == Some("error") {
            stream_error = Some(Failure::Server(format!(
                "the server sent an error event: {}",
                event.data
            )));
            return false;
        }
        match parse_chunk(&event.data) {
            Err(why) => {
                stream_error = Some(if why.starts_with("the server sent an error") {
                    Failure::Server(why)
                } else {
                    Failure::Protocol(why)
                });
                false
            }
            Ok(chunk) => {
                if chunk.has_output() {
                    rec.chunk_s.push(since(event.at));
                    rec.chunk_text
                        .push(format!("{}{}", chunk.reasoning, chunk.content));
                    rec.reasoning_chunks += usize::from(!chunk.reasoning.is_empty());
                }
                // The last usage object counts (some servers send running totals).
                if chunk.usage.is_some() {
                    rec.usage = chunk.usage;
                }
                if chunk.timings.is_some() {
                    rec.server_timings = chunk.timings;
                }
                finished |= chunk.finished;
                !chunk.done
            }
        }
    })
    .await;
    rec.e2e_s = since(Instant::now());
    rec.failure = match (stream_error, result) {
        (Some(f), _) => Some(f),
        (None, Err(f)) => Some(f),
        // A stream that closed without [DONE] but with its finish reason is complete (some
        // servers end that way); without either it was cut.
        (None, Ok(())) => None,
    };
    if rec.failure == Some(Failure::Dropped) && finished {
        rec.failure = None;
    }
    rec
}
