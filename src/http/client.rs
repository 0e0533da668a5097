//! A small HTTP/1.1 client for streamed OpenAI requests, on tokio's TCP streams: the request
//! written in one piece, the response's status and headers parsed, the body de-chunked as it
//! arrives and fed to the event-stream parser with the instant of each read. Hand-written
//! rather than through a general client so that nothing sits between the socket read and the
//! timestamp (no buffering layer that delays or merges chunks), and so that keep-alive
//! connections are reused explicitly (a run at 1,000 requests a second would otherwise leave
//! tens of thousands of sockets in TIME_WAIT).

use super::sse::{SseEvent, SseParser};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// A response after its head: how its body is framed, and bytes read past the head.
struct Body {
    status: u16,
    keep_alive: bool,
    framing: Framing,
    buf: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Length(usize),
    /// Chunked: bytes left in the current chunk, or None between chunks.
    Chunked {
        left: Option<usize>,
    },
    UntilClose,
    Done,
}

const MAX_HEAD_BYTES: usize = 64 * 1024;

impl Body {
    async fn read_head(stream: &mut TcpStream, timeouts: Timeouts) -> Result<Self, Failure> {
        let mut buf = Vec::with_capacity(4096);
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let rest = buf[end + 4..].to_vec();
                return Self::from_head(&head, rest);
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Err(Failure::Protocol(
                    "a response head over 64 KiB: not an HTTP server?".into(),
                ));
            }
            let (n, _) = read_some(stream, &mut buf, timeouts).await?;
            if n == 0 {
                return Err(if buf.is_empty() {
                    Failure::Dropped
                } else {
                    Failure::Protocol("the connection closed inside the response head".into())
                });
            }
        }
    }

    fn from_head(head: &str, rest: Vec<u8>) -> Result<Self, Failure> {
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.split(' ');
        let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let status = match (version.starts_with("HTTP/1."), code.parse::<u16>()) {
            (true, Ok(c)) => c,
            _ => {
                return Err(Failure::Protocol(format!(
                    "not an HTTP/1.x response: {:?}",
                    status_line.chars().take(80).collect::<String>()
                )))
            }
        };
        let mut keep_alive = version == "HTTP/1.1";
        let mut framing = Framing::UntilClose;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    let n = value
                        .parse()
                        .map_err(|_| Failure::Protocol(format!("Content-Length {value:?}")))?;
                    if framing == Framing::UntilClose {
                        framing = Framing::Length(n);
                    }
                }
                "transfer-encoding" if value.to_ascii_lowercase().contains("chunked") => {
                    framing = Framing::Chunked { left: None }
                }
                "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        if framing == Framing::UntilClose {
            keep_alive = false;
        }
        Ok(Self {
            status,
            keep_alive,
            framing,
            buf: rest,
        })
    }

    /// The next piece of body payload and when it was read; `None` at the body's end.
    async fn next_body(
        &mut self,
        stream: &mut TcpStream,
        timeouts: Timeouts,
    ) -> Result<Option<(Vec<u8>, Instant)>, Failure> {
        let mut at = Instant::now();
        loop {
            if let Some(payload) = self.take_payload()? {
                if !payload.is_empty() {
                    return Ok(Some((payload, at)));
                }
            }
            if self.framing == Framing::Done {
                return Ok(None);
            }
            let (n, t) = read_some(stream, &mut self.buf, timeouts).await?;
            at = t;
            if n == 0 {
                return match self.framing {
                    Framing::UntilClose => {
                        self.framing = Framing::Done;
                        Ok(None)
                    }
                    _ => Err(Failure::Dropped),
                };
            }
        }
    }

    /// Payload bytes available in `buf` under the framing (empty when more must be read).
    fn take_payload(&mut self) -> Result<Option<Vec<u8>>, Failure> {
        let mut out = Vec::new();
        loop {
            match self.framing {
                Framing::Done => break,
                Framing::UntilClose => {
                    out.append(&mut self.buf);
                    break;
                }
                Framing::Length(left) => {
                    let n = left.min(self.buf.len());
                    out.extend(self.buf.drain(..n));
                    self.framing = if left == n {
                        Framing::Done
                    } else {
                        Framing::Length(left - n)
                    };
                    break;
                }
                Framing::Chunked { left: Some(0) } => {
                    // The CRLF after a chunk's data.
                    if self.buf.len() < 2 {
                        break;
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(Failure::Protocol("a chunk not followed by CRLF".into()));
                    }
                    self.buf.drain(..2);
                    self.framing = Framing::Chunked { left: None };
                }
                Framing::Chunked { left: Some(left) } => {
                    if self.buf.is_empty() {
                        break;
                    }
                    let n = left.min(self.buf.len());
                    out.extend(self.buf.drain(..n));
                    self.framing = Framing::Chunked {
                        left: Some(left - n),
                    };
                }
                Framing::Chunked { left: None } => {
                    let Some(end) = find(&self.buf, b"\r\n") else {
                        if self.buf.len() > 1024 {
                            return Err(Failure::Protocol("a chunk-size line over 1 KiB".into()));
                        }
                        break;
                    };
                    let line = String::from_utf8_lossy(&self.buf[..end]).to_string();
                    let size_text = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_text, 16)
                        .map_err(|_| Failure::Protocol(format!("chunk size {size_text:?}")))?;
                    if size == 0 {
                        // Last chunk; trailers end with an empty line.
                        let Some(trailer_end) = find(&self.buf[end..], b"\r\n\r\n") else {
                            break;
                        };
                        self.buf.drain(..end + trailer_end + 4);
                        self.framing = Framing::Done;
                        break;
                    }
                    self.buf.drain(..end + 2);
                    self.framing = Framing::Chunked { left: Some(size) };
                }
            }
        }
        Ok(Some(out))
    }

    /// Reads the rest of the body; whether the connection is reusable.
    async fn drain(&mut self, stream: &mut TcpStream, timeouts: Timeouts) -> bool {
        loop {
            match self.next_body(stream, timeouts).await {
                Ok(Some(_)) => continue,
                Ok(None) => return self.buf.is_empty(),
                Err(_) => return false,
            }
        }
    }

    /// Up to 200 characters of an error response's body.
    async fn body_excerpt(&mut self, stream: &mut TcpStream, timeouts: Timeouts) -> String {
        let mut text = Vec::new();
        while text.len() < 4096 {
            match self.next_body(stream, timeouts).await {
                Ok(Some((b, _))) => text.extend(b),
                _ => break,
            }
        }
        String::from_utf8_lossy(&text)
            .chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string()
    }
}

/// One read into `buf`: bytes read (0 at end of stream) and when.
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeouts: Timeouts,
) -> Result<(usize, Instant), Failure> {
    let mut tmp = [0u8; 16 * 1024];
    match tokio::time::timeout(timeouts.read, stream.read(&mut tmp)).await {
        Err(_) => Err(Failure::Stalled),
        Ok(Err(_)) => Err(Failure::Dropped),
        Ok(Ok(n)) => {
            let at = Instant::now();
            buf.extend_from_slice(&tmp[..n]);
            Ok((n, at))
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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

    fn body(head: &str, rest: &[u8]) -> Body {
        Body::from_head(head, rest.to_vec()).unwrap()
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            let mut b = body(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
                &wire[..cut],
            );
            let mut got = b.take_payload().unwrap().unwrap();
            b.buf.extend_from_slice(&wire[cut..]);
            got.extend(b.take_payload().unwrap().unwrap());
            assert_eq!(got, b"hello world", "cut at {cut}");
            assert_eq!(b.framing, Framing::Done);
            assert!(b.buf.is_empty());
        }
    }

    #[test]
    fn heads_give_status_framing_and_keep_alive() {
        let b = body(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 3",
            b"",
        );
        assert_eq!(
            (b.status, b.framing, b.keep_alive),
            (500, Framing::Length(3), true)
        );
        let b = body("HTTP/1.0 200 OK\r\nContent-Type: text/event-stream", b"");
        assert_eq!((b.framing, b.keep_alive), (Framing::UntilClose, false));
        assert!(
            body(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0",
                b""
            )
            .keep_alive
                == false
        );
        assert!(matches!(
            Body::from_head("SSH-2.0-OpenSSH", vec![]),
            Err(Failure::Protocol(_))
        ));
    }
}
