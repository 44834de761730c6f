//! Source stage for files: a line reader with a hard bound on line length.
//!
//! `BufRead::read_until` would buffer a 10 GiB line whole; this reader keeps
//! at most `max` bytes of a line and skips the rest, so one bad line cannot
//! exhaust memory. Lines are bytes: invalid UTF-8 is the decoder's to report.

use std::io::{self, BufRead};

/// One line read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The line (without its `\n` / `\r\n`) is in the buffer.
    Complete,
    /// The line was longer than the bound; the buffer holds its first bytes.
    TooLong { len: usize },
}

pub struct LineReader<R> {
    inner: R,
    max: usize,
    bytes_read: u64,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            bytes_read: 0,
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Reads the next line into `buf` (cleared first); `None` at the end.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Line>> {
        buf.clear();
        let mut len = 0usize;
        let mut saw_any = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            saw_any = true;
            let (part, used, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            let room = self.max.saturating_sub(buf.len());
            buf.extend_from_slice(&part[..part.len().min(room)]);
            len += part.len();
            self.inner.consume(used);
            self.bytes_read += used as u64;
            if done {
                break;
            }
        }
        if !saw_any {
            return Ok(None);
        }
        if buf.last() == Some(&b'\r') && len <= self.max {
            buf.pop();
            len -= 1;
        }
        Ok(Some(if len > self.max {
            Line::TooLong { len }
        } else {
            Line::Complete
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max: usize) -> Vec<(Vec<u8>, Line)> {
        let mut r = LineReader::new(io::BufReader::with_capacity(4, input), max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(l) = r.next_line(&mut buf).expect("read") {
            out.push((buf.clone(), l));
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        let got = read_all(b"ab\r\ncd\n\nlast", 100);
        let lines: Vec<_> = got.iter().map(|(b, _)| b.as_slice()).collect();
        assert_eq!(lines, vec![&b"ab"[..], b"cd", b"", b"last"]);
        assert!(got.iter().all(|(_, l)| *l == Line::Complete));
    }

    #[test]
    fn long_lines_are_cut_and_flagged_without_losing_the_next() {
        let got = read_all(b"0123456789abcdef\nok\n", 5);
        assert_eq!(got[0], (b"01234".to_vec(), Line::TooLong { len: 16 }));
        assert_eq!(got[1], (b"ok".to_vec(), Line::Complete));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn empty_input_has_no_lines() {
        assert!(read_all(b"", 10).is_empty());
    }
}
