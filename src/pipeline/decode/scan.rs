//! The fast path of [`super::Decoder::decode`] for flat lines: one pass over
//! the bytes straight into [`Line`], without serde's per-field machinery.
//!
//! It takes only what it is sure of: an object of the flat event's own keys,
//! each once, whose values are strings (with the short escapes), `null`, or a
//! plain integer `status`. Anything else (an envelope, a key it does not
//! know, a `\u` escape, a number of another form, a syntax error) is `None`,
//! and the line goes to serde, which decodes it or names what is wrong. So
//! for any line this returns `Some` for, serde returns the same fields
//! (checked by `fast_path_agrees_with_serde` below and by the `decode_line`
//! fuzz target): the errors and the dead letters stay serde's.

use std::borrow::Cow;

use super::Line;

pub(super) fn flat(text: &str) -> Option<Line<'_>> {
    let mut s = Scanner { text, at: 0 };
    let mut line = Line::default();
    // Which keys were seen: serde refuses a repeated field, even after `null`.
    let mut seen = 0u16;
    s.whitespace();
    s.expect(b'{')?;
    s.whitespace();
    if s.peek()? == b'}' {
        s.at += 1;
    } else {
        loop {
            let key = s.key()?;
            s.whitespace();
            s.expect(b':')?;
            s.whitespace();
            if key == "status" {
                first(&mut seen, 11)?;
                line.status = s.status()?;
            } else {
                let (bit, slot) = match key {
                    "timestamp" => (0, &mut line.timestamp),
                    "method" => (1, &mut line.method),
                    "namespace" => (2, &mut line.namespace),
                    "repository" => (3, &mut line.repository),
                    "reference" => (4, &mut line.reference),
                    "digest" => (5, &mut line.digest),
                    "remote_addr" => (6, &mut line.remote_addr),
                    "user_agent" => (7, &mut line.user_agent),
                    "owner" => (8, &mut line.owner),
                    "media_type" => (9, &mut line.media_type),
                    "id" => (10, &mut line.id),
                    _ => return None,
                };
                first(&mut seen, bit)?;
                *slot = s.string()?;
            }
            s.whitespace();
            match s.next()? {
                b',' => s.whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.whitespace();
    (s.at == text.len()).then_some(line)
}

/// Marks key `bit` seen; `None` when it was already.
fn first(seen: &mut u16, bit: u16) -> Option<()> {
    let mask = 1 << bit;
    if *seen & mask != 0 {
        return None;
    }
    *seen |= mask;
    Some(())
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// JSON's whitespace: space, tab, LF, CR.
    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// `null`, consumed; false (nothing consumed) otherwise.
    fn null(&mut self) -> bool {
        let null = self.bytes()[self.at..].starts_with(b"null");
        if null {
            self.at += 4;
        }
        null
    }

    /// A key: a string without escapes.
    fn key(&mut self) -> Option<&'a str> {
        match self.string()? {
            Some(Cow::Borrowed(key)) => Some(key),
            _ => None,
        }
    }

    /// A string value (`Some`) or `null` (`None`); the string borrows from
    /// the line unless it holds escapes.
    fn string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null() {
            return Some(None);
        }
        self.expect(b'"')?;
        let start = self.at;
        let end = start + special(&self.bytes()[start..])?;
        match self.bytes()[end] {
            b'"' => {
                self.at = end + 1;
                Some(Some(Cow::Borrowed(&self.text[start..end])))
            }
            b'\\' => self.escaped(start, end).map(|s| Some(Cow::Owned(s))),
            _ => None,
        }
    }

    /// The rest of a string whose first escape is at `escape`: the short
    /// escapes are decoded; `\u` goes to serde (surrogates are its business).
    fn escaped(&mut self, start: usize, mut escape: usize) -> Option<String> {
        let mut out = String::with_capacity(escape - start + 16);
        out.push_str(&self.text[start..escape]);
        loop {
            let decoded = match *self.bytes().get(escape + 1)? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                _ => return None,
            };
            out.push(decoded);
            let from = escape + 2;
            let end = from + special(&self.bytes()[from..])?;
            out.push_str(&self.text[from..end]);
            match self.bytes()[end] {
                b'"' => {
                    self.at = end + 1;
                    return Some(out);
                }
                b'\\' => escape = end,
                _ => return None,
            }
        }
    }

    /// `status`: `null`, or an integer as JSON writes one (no sign, no
    /// leading zero, no fraction or exponent, which the caller's next-byte
    /// check refuses) that fits a `u16`.
    fn status(&mut self) -> Option<Option<u16>> {
        if self.null() {
            return Some(None);
        }
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let digits = &self.bytes()[start..self.at];
        if digits.is_empty() || digits.len() > 5 || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        let value = digits
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        u16::try_from(value).ok().map(Some)
    }
}

/// Where the first byte that ends a plain run of string bytes is: `"`, `\`,
/// or a control character (which serde refuses in a string). Eight bytes at
/// a time: for each test, the lowest byte flagged is a true hit (a false one
/// only ever sits above a true one), so the lowest of all three is the first.
fn special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let mut at = 0;
    while let Some(word) = bytes.get(at..at + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let hits = zero_in(w ^ (ONES * u64::from(b'"')))
            | zero_in(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let rest = bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some(at + rest)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn serde(text: &str) -> Option<Line<'_>> {
        serde_json::from_str(text).ok()
    }

    const LINE: &str = r#"{"timestamp":"2026-11-02T00:00:00.000000Z","method":"HEAD","namespace":"apache","repository":"api","reference":"9","digest":"sha256:e5ea6b10cd78d029aec29ed10f10742d3eb825cdea216ff592dac30c517c8570","status":200,"remote_addr":"149.101.100.10","user_agent":"docker/27.3.1 UpstreamClient(Docker-Client/27.3.1 \\(linux\\))","owner":"Apache Org","media_type":"application/vnd.docker.distribution.manifest.v2+json"}"#;

    #[test]
    fn a_generated_line_takes_the_fast_path() {
        let line = flat(LINE).expect("fast path");
        assert_eq!(Some(line), serde(LINE));
    }

    #[test]
    fn the_first_special_byte_is_found_in_any_position() {
        for len in 0..20 {
            for at in 0..len {
                for special_byte in [b'"', b'\\', 0, 0x1f] {
                    for filler in [b'a', b'~', 0x80, 0xff, b'!', b'#', b' ', b'[', b']'] {
                        let mut bytes = vec![filler; len];
                        bytes[at] = special_byte;
                        // A second one later must not win.
                        if at + 1 < len {
                            bytes[len - 1] = b'"';
                        }
                        assert_eq!(special(&bytes), Some(at), "{bytes:?}");
                    }
                }
            }
            assert_eq!(special(&vec![b'a'; len]), None);
            assert_eq!(special(&vec![0x80; len]), None);
        }
    }

    #[test]
    fn what_the_fast_path_leaves_to_serde() {
        for text in [
            r#"{"events":[]}"#,
            r#"{"status":200,"unknown":1}"#,
            r#"{"user_agent":"\u0041"}"#,
            r#"{"status":2e2}"#,
            r#"{"status":200.0}"#,
            r#"{"status":-1}"#,
            r#"{"status":0200}"#,
            r#"{"status":70000}"#,
            r#"{"method":"GET","method":"HEAD"}"#,
            r#"{"method":null,"method":"HEAD"}"#,
            r#"{"method":"G	ET"}"#,
            r#"{"method":"GET",}"#,
            r#"{"method":"GET"} x"#,
            r#"{"method":1}"#,
            r#"{"method":"GET""#,
            r#"{"meth\"od":"GET"}"#,
        ] {
            assert_eq!(flat(text), None, "{text}");
        }
    }

    /// Pieces of flat lines, good and bad, that the strategy strings together.
    fn piece() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "timestamp",
            "method",
            "namespace",
            "repository",
            "reference",
            "digest",
            "remote_addr",
            "user_agent",
            "owner",
            "media_type",
            "id",
            "status",
            "events",
            "other",
            "Status",
        ]);
        let value = prop_oneof![
            "\"[ -~]{0,12}\"",
            "\"([a-z]|\\\\[\"\\\\/bfnrtu0x]|[\\x00-\\x1f]|é){0,6}\"",
            Just("null".to_owned()),
            "-?[0-9]{0,6}(\\.[0-9])?([eE][0-9])?",
            Just("true".to_owned()),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
        ];
        let space = "[ \t\r\n]{0,2}";
        (key, value, space, space, space)
            .prop_map(|(k, v, a, b, c)| format!("{a}\"{k}\"{b}:{c}{v}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever the fast path accepts, serde decodes to the same fields.
        #[test]
        fn fast_path_agrees_with_serde(
            pieces in prop::collection::vec(piece(), 0..8),
            tail in prop::sample::select(vec!["}", " } ", "", ",}", "}}", "} x"]),
            cut in any::<prop::sample::Index>(),
        ) {
            let whole = format!("{{{}{tail}", pieces.join(","));
            // Also every prefix cut at a char boundary: truncated lines.
            let mut at = cut.index(whole.len() + 1);
            while !whole.is_char_boundary(at) {
                at -= 1;
            }
            for text in [whole.as_str(), &whole[..at]] {
                if let Some(line) = flat(text) {
                    prop_assert_eq!(Some(line), serde(text), "{}", text);
                }
            }
        }
    }
}
