//! Newline framing of the stdio byte stream, sans-io.
//!
//! MCP's stdio transport carries one JSON-RPC message per line. [`LineFramer`] turns raw
//! bytes, pushed in whatever chunks the pipe delivers, into complete lines:
//!
//! * lines are split on `\n` over **bytes**; an optional trailing `\r` is stripped; UTF-8
//!   decoding happens later, per complete line, so a multi-byte character split across two
//!   reads is never corrupted;
//! * lines made only of ASCII whitespace are skipped;
//! * a line longer than `max_line` bytes (counted before the `\n`, `\r` included) is not
//!   buffered: once the limit is crossed the framer drops bytes until the next `\n` and then
//!   yields [`Frame::Oversized`]. Memory stays O(`max_line`) even for a 100 MB line with no
//!   newline at all;
//! * [`LineFramer::finish`] (end of input) releases a final unterminated line, which the
//!   original silently dropped.
//!
//! Frames are produced eagerly by [`LineFramer::push`] and pulled with
//! [`LineFramer::next_frame`]; the queue never holds more than the bytes of the last push
//! plus one partial line.

use std::collections::VecDeque;

/// Default upper bound for one line: 8 MiB.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024 * 1024;

/// One unit of input for the protocol layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete, non-blank line without its `\n` / `\r\n` terminator (still raw bytes).
    Line(Vec<u8>),
    /// A line longer than the limit; its `discarded` bytes (before the `\n`) were dropped.
    Oversized {
        /// How many bytes the line had (terminator excluded).
        discarded: usize,
    },
}

/// Splits a byte stream into [`Frame`]s. See the module docs for the contract.
#[derive(Debug)]
pub struct LineFramer {
    max_line: usize,
    /// The partial line so far; never longer than `max_line`.
    partial: Vec<u8>,
    /// `Some(n)` while dropping an oversized line of which `n` bytes have been seen.
    discarding: Option<usize>,
    ready: VecDeque<Frame>,
}

impl Default for LineFramer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE)
    }
}

impl LineFramer {
    /// A framer accepting lines of at most `max_line` bytes (a `max_line` of 0 is treated as 1).
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line: max_line.max(1),
            partial: Vec::new(),
            discarding: None,
            ready: VecDeque::new(),
        }
    }

    /// The configured line limit.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes currently held for the unfinished line (always `<= max_line`).
    pub fn buffered_len(&self) -> usize {
        self.partial.len()
    }

    /// Capacity of the unfinished-line buffer (always `<= max_line`): what the framer really
    /// holds on to, whatever the input.
    pub fn buffered_capacity(&self) -> usize {
        self.partial.capacity()
    }

    /// Feeds bytes read from the stream.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (body, rest) = match newline {
                Some(at) => (bytes.get(..at).unwrap_or_default(), bytes.get(at + 1..)),
                None => (bytes, None),
            };
            match rest {
                Some(rest) => {
                    self.end_line(body);
                    bytes = rest;
                }
                None => {
                    self.extend_partial(body);
                    return;
                }
            }
        }
    }

    /// Signals end of input: a final line without `\n` becomes a frame. The framer is empty
    /// (and reusable) afterwards.
    pub fn finish(&mut self) {
        if self.discarding.is_some() || !self.partial.is_empty() {
            self.end_line(&[]);
        }
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.ready.pop_front()
    }

    /// `body` is the tail of the current line, up to (not including) its terminator.
    fn end_line(&mut self, body: &[u8]) {
        if let Some(seen) = self.discarding.take() {
            self.ready.push_back(Frame::Oversized {
                discarded: seen.saturating_add(body.len()),
            });
            return;
        }
        let total = self.partial.len().saturating_add(body.len());
        if total > self.max_line {
            self.partial = Vec::new();
            self.ready.push_back(Frame::Oversized { discarded: total });
            return;
        }
        let mut line = if self.partial.is_empty() {
            body.to_vec()
        } else {
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(body);
            line
        };
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            self.ready.push_back(Frame::Line(line));
        }
    }

    /// Adds bytes of a line whose terminator has not arrived yet.
    fn extend_partial(&mut self, body: &[u8]) {
        if let Some(seen) = self.discarding.as_mut() {
            *seen = seen.saturating_add(body.len());
            return;
        }
        let total = self.partial.len().saturating_add(body.len());
        if total > self.max_line {
            // Too long already: forget what we have and only count from now on.
            self.partial = Vec::new();
            self.discarding = Some(total);
            return;
        }
        if total > self.partial.capacity() {
            // Grow geometrically, but never past the limit, so capacity stays <= max_line.
            let target = total
                .max(self.partial.capacity().saturating_mul(2))
                .min(self.max_line);
            self.partial.reserve_exact(target - self.partial.len());
        }
        self.partial.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut LineFramer) -> Vec<Frame> {
        std::iter::from_fn(|| framer.next_frame()).collect()
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_lines_strips_cr_and_skips_blank_lines() {
        let mut f = LineFramer::default();
        f.push(b"a\r\n\n  \r\n\tb\nc");
        assert_eq!(frames(&mut f), vec![line("a"), line("\tb")]);
        f.push(b"d\n");
        assert_eq!(frames(&mut f), vec![line("cd")]);
    }

    #[test]
    fn only_the_last_cr_is_stripped() {
        let mut f = LineFramer::default();
        f.push(b"x\r\r\n");
        assert_eq!(frames(&mut f), vec![line("x\r")]);
    }

    #[test]
    fn multibyte_utf8_split_across_pushes_is_intact() {
        let text = "{\"k\":\"é🦀\"}\n";
        let bytes = text.as_bytes();
        // Split inside the 4-byte crab.
        let cut = text.find('🦀').map(|i| i + 2).unwrap_or(0);
        let mut f = LineFramer::default();
        f.push(&bytes[..cut]);
        assert_eq!(frames(&mut f), vec![]);
        f.push(&bytes[cut..]);
        let got = frames(&mut f);
        assert_eq!(got, vec![line("{\"k\":\"é🦀\"}")]);
    }

    #[test]
    fn final_unterminated_line_is_released_by_finish() {
        let mut f = LineFramer::default();
        f.push(b"one\ntwo");
        assert_eq!(frames(&mut f), vec![line("one")]);
        f.finish();
        assert_eq!(frames(&mut f), vec![line("two")]);
        f.finish();
        assert_eq!(frames(&mut f), vec![]);
    }

    #[test]
    fn line_at_the_limit_passes_and_one_more_byte_is_oversized() {
        let mut f = LineFramer::new(4);
        f.push(b"abcd\nabcde\nok\n");
        assert_eq!(
            frames(&mut f),
            vec![line("abcd"), Frame::Oversized { discarded: 5 }, line("ok")]
        );
        // Same when the long line arrives byte by byte.
        for b in b"abcdef\nok\n" {
            f.push(std::slice::from_ref(b));
        }
        assert_eq!(
            frames(&mut f),
            vec![Frame::Oversized { discarded: 6 }, line("ok")]
        );
    }

    #[test]
    fn oversized_line_at_eof_is_reported() {
        let mut f = LineFramer::new(3);
        f.push(b"abcdefgh");
        f.finish();
        assert_eq!(frames(&mut f), vec![Frame::Oversized { discarded: 8 }]);
    }

    #[test]
    fn a_100_mb_line_is_never_buffered() {
        let max = 64 * 1024;
        let mut f = LineFramer::new(max);
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..100 {
            f.push(&chunk);
            assert!(f.buffered_len() <= max);
            assert!(
                f.buffered_capacity() <= max,
                "capacity {}",
                f.buffered_capacity()
            );
            assert_eq!(f.next_frame(), None);
        }
        f.push(b"\n{}\n");
        assert_eq!(
            frames(&mut f),
            vec![
                Frame::Oversized {
                    discarded: 100 * 1024 * 1024
                },
                line("{}")
            ]
        );
        assert_eq!(f.buffered_len(), 0);
    }

    #[test]
    fn capacity_stays_within_the_limit_for_a_legal_long_line() {
        let max = 1000;
        let mut f = LineFramer::new(max);
        for _ in 0..10 {
            f.push(&[b'y'; 99]);
            assert!(f.buffered_capacity() <= max);
        }
        f.push(b"\n");
        assert_eq!(frames(&mut f), vec![Frame::Line(vec![b'y'; 990])]);
    }
}
