//! An HTTP/1.1 response as the client reads it: the status line and headers, then the body
//! under its framing (Content-Length, chunked transfer encoding, or until the connection
//! closes), de-chunked incrementally as the bytes arrive, each piece with the instant of the
//! read that brought it.

use super::client::{Failure, Timeouts};
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A response after its head: how its body is framed, and bytes read past the head.
pub(super) struct Body {
    pub(super) status: u16,
    pub(super) keep_alive: bool,
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
    pub(super) async fn read_head(stream: &mut TcpStream, timeouts: Timeouts) -> Result<Self, Failure> {
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
    pub(super) async fn next_body(
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
    pub(super) async fn drain(&mut self, stream: &mut TcpStream, timeouts: Timeouts) -> bool {
        loop {
            match self.next_body(stream, timeouts).await {
                Ok(Some(_)) => continue,
                Ok(None) => return self.buf.is_empty(),
                Err(_) => return false,
            }
        }
    }

    /// Up to 200 characters of an error response's body.
    pub(super) async fn body_excerpt(&mut self, stream: &mut TcpStream, timeouts: Timeouts) -> String {
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
