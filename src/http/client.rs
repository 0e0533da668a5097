//! A small HTTP/1.1 client for streamed OpenAI requests, on tokio's TCP streams: the request
//! written in one piece, the response's status and headers parsed, the body de-chunked as it
//! arrives and fed to the event-stream parser with the instant of each read. Hand-written
//! rather than through a general client so that nothing sits between the socket read and the
//! timestamp (no buffering layer that delays or merges chunks), and so that keep-alive
//! connections are reused explicitly (a run at 1,000 requests a second would otherwise leave
//! tens of thousands of sockets in TIME_WAIT).

use super::sse::{SseEvent, SseParser};
use std::time::{Duration, Instant};
use super::body::Body;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Where requests go: `http://host:port[/prefix]` (no TLS: benchmarks talk to local servers
/// or through a tunnel).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Prepended to the API paths (`http://h:8000/proxy` -> `/proxy/v1/completions`).
    pub prefix: String,
}

impl Endpoint {
    /// Parses `--endpoint`; the error says what form is expected.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("--endpoint {url}: https is not supported; use http:// (a local server or a tunnel)")
            } else {
                format!("--endpoint {url}: expected http://HOST:PORT, e.g. http://127.0.0.1:8080")
            }
        })?;
        let (authority, path) = rest
            .split_once('/')
            .map(|(a, p)| (a, format!("/{p}")))
            .unwrap_or((rest, String::new()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>().map_err(|_| {
                    format!("--endpoint {url}: port {p:?} is not a number from 1 to 65535")
                })?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() || port == 0 {
            return Err(format!(
                "--endpoint {url}: expected http://HOST:PORT, e.g. http://127.0.0.1:8080"
            ));
        }
        let prefix = path.trim_end_matches('/').to_string();
        // A URL given with the API path already on it is a common slip: keep the base.
        let prefix = ["/v1/completions", "/v1/chat/completions", "/v1"]
            .iter()
            .find_map(|p| prefix.strip_suffix(p))
            .map(str::to_string)
            .unwrap_or(prefix);
        Ok(Self {
            host: host.to_string(),
            port,
            prefix,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{}{}", self.host, self.port, self.prefix, path)
    }
}

/// Why a request failed, for the report's count by cause.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// No connection (refused, unreachable, or not within the connect timeout).
    Connect(String),
    /// Connected, but nothing arrived within the read timeout.
    Stalled,
    /// A status other than 200, with the start of the body.
    Status(u16, String),
    /// The connection closed before the stream ended.
    Dropped,
    /// Not HTTP, or not an OpenAI event stream.
    Protocol(String),
    /// An `error` object in the stream.
    Server(String),
}

impl Failure {
    /// The cause's name in reports.
    pub fn cause(&self) -> String {
        match self {
            Failure::Connect(_) => "connect".into(),
            Failure::Stalled => "stalled".into(),
            Failure::Status(code, _) => format!("http_{code}"),
            Failure::Dropped => "dropped".into(),
            Failure::Protocol(_) => "protocol".into(),
            Failure::Server(_) => "server_error".into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(why) => write!(f, "cannot connect: {why}"),
            Failure::Stalled => write!(f, "no bytes within the read timeout"),
            Failure::Status(code, body) => write!(f, "HTTP {code}: {body}"),
            Failure::Dropped => write!(f, "the connection closed before the stream ended"),
            Failure::Protocol(why) | Failure::Server(why) => f.write_str(why),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Longest wait for the next bytes of a response.
    pub read: Duration,
}

/// Idle keep-alive connections, reused last-in first-out.
#[derive(Default)]
pub struct Pool {
    idle: std::sync::Mutex<Vec<TcpStream>>,
}

impl Pool {
    fn take(&self) -> Option<TcpStream> {
        self.idle.lock().ok()?.pop()
    }
    fn give(&self, s: TcpStream) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(s);
        }
    }
}

/// Opens a connection (for the endpoint check before a run, and for new requests).
pub async fn connect(ep: &Endpoint, timeout: Duration) -> Result<TcpStream, Failure> {
    match tokio::time::timeout(timeout, TcpStream::connect((ep.host.as_str(), ep.port))).await {
        Err(_) => Err(Failure::Connect(format!(
            "no answer from {}:{} within {:.1} s",
            ep.host,
            ep.port,
            timeout.as_secs_f64()
        ))),
        Ok(Err(e)) => Err(Failure::Connect(format!("{}:{}: {e}", ep.host, ep.port))),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// POSTs `body` to `path` and calls `on_event` with every server-sent event as it arrives,
/// until the stream ends (`on_event` returns `false` after `[DONE]`) or the server closes it.
/// Returns `Ok` when the stream ended cleanly.
pub async fn post_stream(
    pool: &Pool,
    ep: &Endpoint,
    path: &str,
    body: &[u8],
    timeouts: Timeouts,
    mut on_event: impl FnMut(&SseEvent) -> bool,
) -> Result<(), Failure> {
    let head = format!(
        "POST {}{path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {}\r\n\r\n",
        ep.prefix,
        ep.host,
        ep.port,
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    // A pooled connection the server has closed since fails at once: retry once on a new one.
    let (mut stream, reused) = match pool.take() {
        Some(s) => (s, true),
        None => (connect(ep, timeouts.connect).await?, false),
    };
    let mut reader = match send_and_read_head(&mut stream, &request, timeouts).await {
        Ok(r) => r,
        Err(_) if reused => {
            stream = connect(ep, timeouts.connect).await?;
            send_and_read_head(&mut stream, &request, timeouts).await?
        }
        Err(e) => return Err(e),
    };
    if reader.status != 200 {
        let text = reader.body_excerpt(&mut stream, timeouts).await;
        return Err(Failure::Status(reader.status, text));
    }
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut ended = false;
    while !ended {
        let Some((bytes, at)) = reader.next_body(&mut stream, timeouts).await? else {
            break;
        };
        parser.feed(&bytes, at, &mut events);
        for e in events.drain(..) {
            if !on_event(&e) {
                ended = true;
            }
        }
    }
    if !ended {
        parser.finish(Instant::now(), &mut events);
        for e in events.drain(..) {
            if !on_event(&e) {
                ended = true;
            }
        }
    }
    if !ended {
        return Err(Failure::Dropped);
    }
    // Drain what is left of the response so that the connection can carry the next request.
    if reader.keep_alive && reader.drain(&mut stream, timeouts).await {
        pool.give(stream);
    }
    Ok(())
}

async fn send_and_read_head(
    stream: &mut TcpStream,
    request: &[u8],
    timeouts: Timeouts,
) -> Result<Body, Failure> {
    stream
        .write_all(request)
        .await
        .map_err(|_| Failure::Dropped)?;
    Body::read_head(stream, timeouts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_say_the_form() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str()),
            ("127.0.0.1", 8080, "")
        );
        assert_eq!(Endpoint::parse("http://h:1/v1").unwrap().prefix, "");
        assert_eq!(
            Endpoint::parse("http://h:1/proxy/v1/chat/completions")
                .unwrap()
                .prefix,
            "/proxy"
        );
        assert_eq!(Endpoint::parse("http://h").unwrap().port, 80);
        assert!(Endpoint::parse("https://h:1")
            .unwrap_err()
            .contains("https is not supported"));
        assert!(Endpoint::parse("h:1")
            .unwrap_err()
            .contains("expected http://HOST:PORT"));
        assert!(Endpoint::parse("http://h:99999")
            .unwrap_err()
            .contains("port"));
    }
}
