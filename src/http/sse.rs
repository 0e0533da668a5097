//! Server-sent events, parsed incrementally as the bytes arrive (the WHATWG event-stream rules
//! that OpenAI-compatible servers rely on): lines end in `\n`, `\r\n` or `\r`, even when the
//! two bytes of a `\r\n` arrive in different reads; `data:` lines of one event are joined with
//! `\n`; one space after the colon is dropped; `:` lines are comments; an empty line ends the
//! event. Every event carries the instant of the read that completed it, which is what TTFT
//! and the inter-chunk gaps are measured from.

use std::time::Instant;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event:` field, when one was sent (OpenAI streams send none).
    pub event: Option<String>,
    pub data: String,
    /// When the bytes that ended this event were read.
    pub at: Instant,
}

/// The parser's state between reads.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last byte seen was `\r`: a `\n` first in the next read belongs to that line ending.
    after_cr: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    /// Longest line seen, for a bound on memory (see `MAX_LINE_BYTES`).
    overflowed: bool,
}

/// A line longer than this is a server error (no OpenAI chunk comes near it); the parser
/// stops buffering it and reports it instead of growing without bound.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `bytes` (read at `at`), appending every event they complete to `out`.
    pub fn feed(&mut self, bytes: &[u8], at: Instant, out: &mut Vec<SseEvent>) {
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(at, out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(at, out);
                }
                _ if self.line.len() < MAX_LINE_BYTES => self.line.push(b),
                _ => self.overflowed = true,
            }
        }
    }

    /// The end of the stream: a last event not followed by an empty line is dispatched (the
    /// standard drops it; servers that close right after their last `data:` line expect it).
    pub fn finish(&mut self, at: Instant, out: &mut Vec<SseEvent>) {
        if !self.line.is_empty() {
            self.end_line(at, out);
        }
        self.dispatch(at, out);
    }

    /// Whether a line past `MAX_LINE_BYTES` was cut.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    fn end_line(&mut self, at: Instant, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(at, out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let (field, value) = match text.find(':') {
            Some(i) => (
                &text[..i],
                text[i + 1..].strip_prefix(' ').unwrap_or(&text[i + 1..]),
            ),
            None => (&text[..], ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            _ => {} // id, retry and unknown fields do not matter to a benchmark
        }
    }

    fn dispatch(&mut self, at: Instant, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if self.has_data {
            self.has_data = false;
            out.push(SseEvent {
                event,
                data: std::mem::take(&mut self.data),
                at,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pieces: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let t = Instant::now();
        for piece in pieces {
            p.feed(piece, t, &mut out);
        }
        p.finish(t, &mut out);
        out.into_iter().map(|e| (e.event, e.data)).collect()
    }

    fn data(items: &[&str]) -> Vec<(Option<String>, String)> {
        items.iter().map(|d| (None, d.to_string())).collect()
    }

    #[test]
    fn events_split_anywhere_parse_the_same() {
        let stream = b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n";
        let whole = parse(&[stream]);
        assert_eq!(whole, data(&["{\"a\":1}", "{\"b\":2}", "[DONE]"]));
        for cut in 0..stream.len() {
            assert_eq!(
                parse(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&bytes), whole);
    }

    #[test]
    fn line_endings_fields_and_multi_line_data() {
        assert_eq!(parse(&[b"data:x\rdata:  y\r\n\r"]), data(&["x\n y"]));
        assert_eq!(
            parse(&[b"event: error\ndata: {}\n\n"]),
            vec![(Some("error".into()), "{}".into())]
        );
        assert_eq!(parse(&[b"id: 3\nretry: 10\n\n"]), vec![]);
        assert_eq!(parse(&[b"data\n\n"]), data(&[""]));
    }

    #[test]
    fn a_last_event_without_its_blank_line_is_kept() {
        assert_eq!(parse(&[b"data: a\n\ndata: b"]), data(&["a", "b"]));
    }

    #[test]
    fn each_event_has_the_instant_of_the_read_that_ended_it() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_millis(5);
        p.feed(b"data: a\n", t0, &mut out);
        p.feed(b"\ndata: b\n\n", t1, &mut out);
        assert_eq!(out.iter().map(|e| e.at).collect::<Vec<_>>(), vec![t1, t1]);
    }
}
