//! A scripted OpenAI-compatible streaming server on 127.0.0.1, for the `http` tests and the
//! client-overhead benchmark: every request is answered by a `Script` (chosen from the
//! request's JSON body), with known delays before each event, so that measured TTFT, ITL, TPOT
//! and E2E can be checked against their definitions. Keep-alive HTTP/1.1, chunked bodies (one
//! HTTP chunk per event), a thread per connection. A script with no delays is written in one
//! piece, as fast as the socket takes it (the benchmark's instant server).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a scripted response ends.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// `data: [DONE]`, then the last chunk of the body.
    Done,
    /// Close the connection with no `[DONE]` and no finish reason.
    Drop,
    /// Send nothing more and keep the connection open.
    Stall,
}

#[derive(Debug, Clone)]
pub struct Script {
    pub status: u16,
    /// Each event's data (JSON or `[DONE]`) with the delay before it is sent.
    pub events: Vec<(Duration, String)>,
    pub end: End,
}

impl Script {
    /// A chat stream: a role-only first delta at once, then `pieces` (each a delta's content) at
    /// `gap` apart after `ttft`, then a usage trailer with `usage` tokens when given.
    pub fn chat(ttft: Duration, gap: Duration, pieces: &[&str], usage: Option<u64>) -> Self {
        let mut events = vec![(
            Duration::ZERO,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#
                .to_string(),
        )];
        for (i, p) in pieces.iter().enumerate() {
            let delay = if i == 0 { ttft } else { gap };
            let finish = if i + 1 == pieces.len() {
                r#""stop""#
            } else {
                "null"
            };
            events.push((delay, format!(r#"{{"choices":[{{"index":0,"delta":{{"content":{}}},"finish_reason":{finish}}}]}}"#, Value::from(*p))));
        }
        if let Some(n) = usage {
            events.push((Duration::ZERO, format!(r#"{{"choices":[],"usage":{{"prompt_tokens":4,"completion_tokens":{n},"total_tokens":{}}}}}"#, n + 4)));
        }
        events.push((Duration::ZERO, "[DONE]".into()));
        Self {
            status: 200,
            events,
            end: End::Done,
        }
    }

    /// This stream with an OpenAI error object sent before its `[DONE]`.
    pub fn with_error(mut self) -> Self {
        let at = self.events.len() - 1;
        self.events.insert(
            at,
            (
                Duration::ZERO,
                r#"{"error":{"message":"overloaded","code":503}}"#.into(),
            ),
        );
        self
    }

    pub fn status(code: u16, body: &str) -> Self {
        Self {
            status: code,
            events: vec![(Duration::ZERO, body.to_string())],
            end: End::Done,
        }
    }
}

pub struct Server {
    pub port: u16,
    /// Requests answered so far.
    pub requests: Arc<AtomicUsize>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Starts the server on a free port; it lives until the process ends.
pub fn serve(script: impl Fn(&Value) -> Script + Send + Sync + 'static) -> std::io::Result<Server> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let requests = Arc::new(AtomicUsize::new(0));
    let (script, count) = (Arc::new(script), requests.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (script, count) = (script.clone(), count.clone());
            std::thread::spawn(move || {
                let _ = handle(conn, &*script, &count);
            });
        }
    });
    Ok(Server { port, requests })
}

fn handle(
    conn: TcpStream,
    script: &dyn Fn(&Value) -> Script,
    count: &AtomicUsize,
) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        count.fetch_add(1, Ordering::SeqCst);
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let s = script(&request);
        if s.status != 200 {
            let text = s.events.first().map(|e| e.1.clone()).unwrap_or_default();
            write!(out, "HTTP/1.1 {} Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}", s.status, text.len())?;
            continue;
        }
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let instant = s.events.iter().all(|(d, _)| d.is_zero());
        if !instant {
            out.write_all(&head)?;
            out.flush()?;
            head.clear();
        }
        for (delay, data) in &s.events {
            if !delay.is_zero() {
                std::thread::sleep(*delay);
            }
            let event = format!("data: {data}\n\n");
            head.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
            if !instant {
                out.write_all(&head)?;
                out.flush()?;
                head.clear();
            }
        }
        if s.end == End::Done {
            head.extend_from_slice(b"0\r\n\r\n");
        }
        out.write_all(&head)?;
        out.flush()?;
        match s.end {
            End::Done => {}
            End::Drop => return Ok(()),
            End::Stall => {
                std::thread::sleep(Duration::from_secs(30));
                return Ok(());
            }
        }
    }
}
