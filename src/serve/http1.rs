//! The server's side of HTTP/1.1 (RFC 9112), as much as an OpenAI-compatible API needs: request
//! heads parsed from bytes (a pure function, fuzzed), bodies by Content-Length only, keep-alive,
//! and responses either whole (Content-Length) or streamed as server-sent events in chunked
//! transfer encoding. Anything outside that is answered with the status that names it (400,
//! 413, 431, 501, 505), never a panic.

/// Longest request head accepted (request line and headers); larger gets 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// What a request head says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The target without its query string.
    pub path: String,
    pub content_length: usize,
    /// Whether the connection stays open after the response (HTTP/1.1 unless `Connection:
    /// close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client (curl, for bodies over 1 KiB) waits for a 100 before
    /// sending the body.
    pub expect_continue: bool,
}

/// A request refused before it reaches the API: the status and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
}

impl HttpError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete, else the head and
/// its length in bytes (the body starts there). A body over `max_body` bytes is refused (413).
pub fn parse_head(buf: &[u8], max_body: usize) -> Result<Option<(Head, usize)>, HttpError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(HttpError::new(431, format!("the request head is over {MAX_HEAD_BYTES} bytes")));
        }
        return Ok(None);
    };
    if end > MAX_HEAD_BYTES {
        return Err(HttpError::new(431, format!("the request head is over {MAX_HEAD_BYTES} bytes")));
    }
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::new(400, "the request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(HttpError::new(400, format!("malformed request line `{}`", truncate(request_line))));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::new(400, format!("malformed method `{}`", truncate(method))));
    }
    if !target.starts_with('/') {
        return Err(HttpError::new(400, format!("the request target `{}` is not a path", truncate(target))));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(HttpError::new(505, format!("`{}` is not HTTP/1.0 or HTTP/1.1", truncate(version)))),
    };
    let mut content_length: Option<usize> = None;
    let mut keep_alive = !http10;
    let mut expect_continue = false;
    for (i, line) in lines.enumerate() {
        if i >= MAX_HEADERS {
            return Err(HttpError::new(431, format!("more than {MAX_HEADERS} headers")));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::new(400, format!("malformed header line `{}`", truncate(line))));
        };
        // RFC 9112: no whitespace before the colon, and no obsolete line folding.
        if name.is_empty() || name.ends_with([' ', '\t']) || name.starts_with([' ', '\t']) {
            return Err(HttpError::new(400, format!("malformed header name `{}`", truncate(name))));
        }
        let value = value.trim_matches([' ', '\t']);
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = value.parse::<usize>().map_err(|_| HttpError::new(400, format!("Content-Length `{}` is not a number", truncate(value))))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(HttpError::new(400, "two different Content-Length headers"));
                }
                content_length = Some(n);
            }
            "expect" => {
                if !value.eq_ignore_ascii_case("100-continue") {
                    return Err(HttpError::new(417, format!("Expect `{}` is not 100-continue", truncate(value))));
                }
                expect_continue = !http10;
            }
            "transfer-encoding" => {
                return Err(HttpError::new(501, "chunked request bodies are not supported: send the body with Content-Length"));
            }
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.split(',').any(|t| t.trim() == "close") {
                    keep_alive = false;
                } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                    keep_alive = true;
                }
            }
            _ => {}
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > max_body {
        return Err(HttpError::new(413, format!("the request body is {content_length} bytes, over the server's limit of {max_body} (--max-body-bytes)")));
    }
    let path = target.split('?').next().unwrap_or(target).to_string();
    Ok(Some((Head { method: method.to_string(), path, content_length, keep_alive, expect_continue }, end + 4)))
}

/// At most 64 characters of untrusted text for an error message.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// A whole response with its body.
pub fn response(status: u16, content_type: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The head of a server-sent event stream (chunked, so the connection can be kept).
pub fn event_stream_head(keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: {connection}\r\n\r\n").into_bytes()
}

/// One server-sent event `data: ...` as a chunk.
pub fn event_chunk(data: &str) -> Vec<u8> {
    let event = format!("data: {data}\n\n");
    format!("{:x}\r\n{event}\r\n", event.len()).into_bytes()
}

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<(Head, usize)>, HttpError> {
        parse_head(raw.as_bytes(), 1024)
    }

    #[test]
    fn parses_a_post_with_a_body_length() {
        let raw = "POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length: 12\r\n\r\n{\"prompt\":1}";
        let (h, n) = head(raw).unwrap().unwrap();
        assert_eq!(h, Head { method: "POST".into(), path: "/v1/completions".into(), content_length: 12, keep_alive: true, expect_continue: false });
        assert!(head("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n").unwrap().unwrap().0.expect_continue);
        assert_eq!(head("POST / HTTP/1.1\r\nExpect: tea\r\n\r\n").unwrap_err().status, 417);
        assert_eq!(&raw[n..], "{\"prompt\":1}");
        assert_eq!(head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().0.keep_alive, false);
        assert_eq!(head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().unwrap().0.keep_alive, false);
    }

    #[test]
    fn waits_for_the_whole_head() {
        assert_eq!(head("POST / HTTP/1.1\r\nContent-Len"), Ok(None));
        assert_eq!(parse_head(&vec![b'a'; MAX_HEAD_BYTES + 1], 10).unwrap_err().status, 431);
    }

    #[test]
    fn refuses_what_it_does_not_speak() {
        let status = |raw: &str| head(raw).unwrap_err().status;
        assert_eq!(status("GARBAGE\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status("get / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET x HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"), 413);
        assert_eq!(status("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
        assert_eq!(status("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
        assert_eq!(status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 501);
        assert_eq!(status("POST / HTTP/1.1\r\nBad Header : 1\r\n\r\n"), 400);
        assert_eq!(status("POST / HTTP/1.1\r\n folded\r\n\r\n"), 400);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n", 10).unwrap_err().status, 400);
    }

    #[test]
    fn frames_events_as_chunks() {
        assert_eq!(event_chunk("[DONE]"), b"e\r\ndata: [DONE]\n\n\r\n");
        let r = String::from_utf8(response(429, "application/json", b"{}", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 429 Too Many Requests\r\n") && r.contains("Content-Length: 2\r\n") && r.ends_with("\r\n\r\n{}"));
    }
}
