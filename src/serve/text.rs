//! A response's text as its tokens arrive: the ids decoded together (a token alone can be half
//! a UTF-8 character or lose its leading space), only whole characters sent, and OpenAI's
//! `stop` strings honoured: the text ends before the first one, which is never sent, so text
//! that could still grow into a stop string is held back until it cannot.

use crate::models::tokenizer::TextTokenizer;

pub struct TextStream<'t> {
    tokenizer: &'t TextTokenizer,
    stops: Vec<String>,
    ids: Vec<u32>,
    text: String,
    /// Bytes of `text` already handed out.
    sent: usize,
    stopped: bool,
    chunks: usize,
}

impl<'t> TextStream<'t> {
    pub fn new(tokenizer: &'t TextTokenizer, stops: Vec<String>) -> Self {
        Self { tokenizer, stops, ids: vec![], text: String::new(), sent: 0, stopped: false, chunks: 0 }
    }

    /// Tokens received.
    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// True for the first chunk of the stream only (chat's first delta carries the role).
    pub fn first_chunk(&mut self) -> bool {
        self.chunks += 1;
        self.chunks == 1
    }

    /// Adds a token: the new text that can be sent, and whether a stop string ended the text.
    pub fn push(&mut self, token: u32) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.ids.push(token);
        let Ok(text) = self.tokenizer.decode(&self.ids) else { return (String::new(), false) };
        // A decode that rewrites what was sent (rare, tokenizer clean-ups) waits for the end.
        if !text.starts_with(&self.text[..self.sent]) {
            self.text = text;
            return (String::new(), false);
        }
        self.text = text;
        if let Some(at) = self.first_stop() {
            self.text.truncate(at);
            self.stopped = true;
            return (self.take(self.text.len()), true);
        }
        // Hold back a trailing replacement character (half a character so far) and anything
        // that could be the start of a stop string.
        let mut end = self.text.len();
        if self.text.ends_with('\u{FFFD}') {
            end -= '\u{FFFD}'.len_utf8();
        }
        let hold = self.stops.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
        end = end.saturating_sub(hold).max(self.sent);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        (self.take(end), false)
    }

    fn first_stop(&self) -> Option<usize> {
        let longest = self.stops.iter().map(String::len).max()?;
        let mut from = self.sent.saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        self.stops.iter().filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i)).min()
    }

    fn take(&mut self, end: usize) -> String {
        let end = end.max(self.sent);
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        out
    }

    /// What is left to send when the generation ends.
    pub fn finish(&mut self) -> String {
        if !self.stopped {
            if let Some(at) = self.first_stop() {
                self.text.truncate(at.max(self.sent));
            }
        }
        self.take(self.text.len())
    }

    /// The whole text (after `finish`).
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte tokens: a multi-byte character arrives over several tokens.
    #[test]
    fn sends_whole_characters_and_stops_before_the_stop_string() {
        let tok = TextTokenizer::Bytes;
        let mut s = TextStream::new(&tok, vec![]);
        let sent: Vec<String> = "hé!".bytes().map(|b| s.push(b as u32).0).collect();
        assert_eq!(sent, ["h", "", "é", "!"]);
        let mut s = TextStream::new(&tok, vec!["END".into()]);
        let mut out = String::new();
        let mut stopped = false;
        for b in "abcENDxyz".bytes() {
            let (d, stop) = s.push(b as u32);
            out += &d;
            if stop {
                stopped = true;
                break;
            }
        }
        out += &s.finish();
        assert!(stopped);
        assert_eq!((out.as_str(), s.text()), ("abc", "abc"));
        let mut s = TextStream::new(&tok, vec!["END".into()]);
        let held: String = "abEN".bytes().map(|b| s.push(b as u32).0).collect();
        assert_eq!(held, "ab", "\"EN\" could still become END");
        assert_eq!(s.finish(), "EN");
    }
}
