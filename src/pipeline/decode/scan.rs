//! The fast path of [`super::Decoder`]: one pass over the bytes straight
//! into [`Line`] (a flat event or an envelope), the events of a body
//! `serve` received (each with its text), or [`EnvelopeEvent`] (one event
//! given alone), without serde's per-field machinery.
//!
//! It takes only what it is sure of: objects whose known keys come once,
//! with strings (with the short escapes) or `null` for values, a plain
//! integer `status`; other keys' values are skipped when they are strings,
//! literals, integers, or objects and arrays of them a few levels deep.
//! Anything else (a `\u` escape, a number of another form, deeper nesting,
//! a syntax error) is `None`, and the text goes to serde, which decodes it
//! or names what is wrong. So for any text this returns `Some` for, serde
//! returns the same fields (checked by the tests below, the decoder's, and
//! the `decode_line` and `notification_body` fuzz targets): the errors and
//! the dead letters stay serde's.

use std::borrow::Cow;

use super::{EnvelopeEvent, Line, Request, Target};

/// A whole line: a flat event, an envelope, or (as serde allows) both.
pub(super) fn line(text: &str) -> Option<Line<'_>> {
    let mut s = Scanner { text, at: 0 };
    let mut line = Line::default();
    // Which keys were seen: serde refuses a repeated field, even after `null`.
    let mut seen = 0u16;
    s.whitespace();
    s.object(|s, key| {
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
            "status" => {
                first(&mut seen, 11)?;
                line.status = s.status()?;
                return Some(());
            }
            "events" => {
                first(&mut seen, 12)?;
                line.events = s.nullable(Scanner::events)?;
                return Some(());
            }
            _ => return s.skip(0),
        };
        first(&mut seen, bit)?;
        *slot = s.string()?;
        Some(())
    })?;
    s.end().then_some(line)
}

/// One event of an envelope, given as its own text (what `serve` splits).
pub(super) fn event(text: &str) -> Option<EnvelopeEvent<'_>> {
    let mut s = Scanner { text, at: 0 };
    s.whitespace();
    let event = s.event()?;
    s.end().then_some(event)
}

/// A notification body, `{"events":[…]}`: each event with its own text
/// (the value's bytes, as serde's `RawValue` gives them). Keys other than
/// `events` are skipped; an event that is not an object, or anything else
/// serde would have to judge, is `None` for the whole body.
pub(super) fn body(text: &str) -> Option<Vec<(&str, EnvelopeEvent<'_>)>> {
    let mut s = Scanner { text, at: 0 };
    let mut events = None;
    s.whitespace();
    s.object(|s, key| match key {
        "events" if events.is_none() => {
            events = Some(s.elements(Scanner::event_with_text)?);
            Some(())
        }
        "events" => None,
        _ => s.skip(0),
    })?;
    s.end().then_some(())?;
    events
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

    /// Only whitespace is left.
    fn end(&mut self) -> bool {
        self.whitespace();
        self.at == self.text.len()
    }

    /// An object: `field` reads the value of each key (the scanner stands
    /// at it); `None` from it, or a syntax error, is `None`.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.key()?;
            self.whitespace();
            self.expect(b':')?;
            self.whitespace();
            field(self, key)?;
            self.whitespace();
            match self.next()? {
                b',' => self.whitespace(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// `null` (`None`), or what `value` reads.
    fn nullable<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() {
            return Some(None);
        }
        value(self).map(Some)
    }

    /// A value nobody reads, checked as serde would: strings, literals,
    /// integers, and objects and arrays of them a few levels deep (serde's
    /// own limit is far deeper). Fractions and exponents go to serde.
    fn skip(&mut self, depth: u8) -> Option<()> {
        const DEEPEST: u8 = 8;
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' if depth < DEEPEST => self.object(|s, _| s.skip(depth + 1)),
            b'[' if depth < DEEPEST => {
                self.at += 1;
                self.whitespace();
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    self.whitespace();
                    match self.next()? {
                        b',' => self.whitespace(),
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => {
                if self.peek()? == b'-' {
                    self.at += 1;
                }
                self.integer().map(drop)
            }
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes()[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// `[event, …]`.
    fn events(&mut self) -> Option<Vec<EnvelopeEvent<'a>>> {
        self.elements(Scanner::event)
    }

    /// An event and its text.
    fn event_with_text(&mut self) -> Option<(&'a str, EnvelopeEvent<'a>)> {
        let start = self.at;
        let event = self.event()?;
        Some((&self.text[start..self.at], event))
    }

    /// An array, each element read by `element`.
    fn elements<T>(&mut self, mut element: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.expect(b'[')?;
        self.whitespace();
        // Room for an element per 512 bytes left (a registry's event is
        // 600-900 bytes), so a body of 50 events is not copied as it grows.
        let mut out = Vec::with_capacity(((self.text.len() - self.at) / 512).min(4096));
        if self.peek()? == b']' {
            self.at += 1;
            return Some(out);
        }
        loop {
            out.push(element(self)?);
            self.whitespace();
            match self.next()? {
                b',' => self.whitespace(),
                b']' => return Some(out),
                _ => return None,
            }
        }
    }

    fn event(&mut self) -> Option<EnvelopeEvent<'a>> {
        let mut event = EnvelopeEvent::default();
        let mut seen = 0u16;
        self.object(|s, key| {
            let (bit, slot) = match key {
                "id" => (0, &mut event.id),
                "timestamp" => (1, &mut event.timestamp),
                "action" => (2, &mut event.action),
                "target" => {
                    first(&mut seen, 3)?;
                    event.target = s.nullable(Scanner::target)?;
                    return Some(());
                }
                "request" => {
                    first(&mut seen, 4)?;
                    event.request = s.nullable(Scanner::request)?;
                    return Some(());
                }
                _ => return s.skip(1),
            };
            first(&mut seen, bit)?;
            *slot = s.string()?;
            Some(())
        })?;
        Some(event)
    }

    fn target(&mut self) -> Option<Target<'a>> {
        let [media_type, digest, repository, tag] =
            self.strings(["mediaType", "digest", "repository", "tag"])?;
        Some(Target {
            media_type,
            digest,
            repository,
            tag,
        })
    }

    fn request(&mut self) -> Option<Request<'a>> {
        let [addr, method, useragent] = self.strings(["addr", "method", "useragent"])?;
        Some(Request {
            addr,
            method,
            useragent,
        })
    }

    /// An object inside an event whose keys `names` hold strings (each
    /// once), the others skipped: their values, in the order of `names`.
    fn strings<const N: usize>(&mut self, names: [&str; N]) -> Option<[Option<Cow<'a, str>>; N]> {
        let mut values = [const { None }; N];
        let mut seen = 0u16;
        self.object(|s, key| match names.iter().position(|name| *name == key) {
            Some(i) => {
                first(&mut seen, i as u16)?;
                values[i] = s.string()?;
                Some(())
            }
            None => s.skip(2),
        })?;
        Some(values)
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

    /// `status`: `null`, or an integer that fits a `u16`.
    fn status(&mut self) -> Option<Option<u16>> {
        if self.null() {
            return Some(None);
        }
        u16::try_from(self.integer()?).ok().map(Some)
    }

    /// An integer as JSON writes one: no sign (the caller reads a `-`), no
    /// leading zero, at most 9 digits; a fraction or exponent after it is
    /// refused by the caller's next-byte check.
    fn integer(&mut self) -> Option<u32> {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let digits = &self.bytes()[start..self.at];
        if digits.is_empty() || digits.len() > 9 || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0')),
        )
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

    /// A body as `serve` reads it without the fast path: serde splits it
    /// into raw values, and each is decoded on its own.
    fn serde_body(text: &str) -> Option<Vec<(&str, Option<EnvelopeEvent<'_>>)>> {
        let split: super::super::Body<'_> = serde_json::from_str(text).ok()?;
        let events = split.events.into_iter().map(|raw| raw.get());
        Some(events.map(|e| (e, serde_json::from_str(e).ok())).collect())
    }

    /// [`body`], in the shape of [`serde_body`].
    fn fast_body(text: &str) -> Option<Vec<(&str, Option<EnvelopeEvent<'_>>)>> {
        let events = body(text)?;
        Some(events.into_iter().map(|(t, e)| (t, Some(e))).collect())
    }

    const LINE: &str = r#"{"timestamp":"2026-11-02T00:00:00.000000Z","method":"HEAD","namespace":"apache","repository":"api","reference":"9","digest":"sha256:e5ea6b10cd78d029aec29ed10f10742d3eb825cdea216ff592dac30c517c8570","status":200,"remote_addr":"149.101.100.10","user_agent":"docker/27.3.1 UpstreamClient(Docker-Client/27.3.1 \\(linux\\))","owner":"Apache Org","media_type":"application/vnd.docker.distribution.manifest.v2+json"}"#;

    const EVENT: &str = r#"{"action":"pull","actor":{},"id":"7be9aec55ae592d8-00000001","request":{"addr":"149.101.100.10:9532","host":"registry.example.test","id":"15251cd23c63a8b5","method":"GET","useragent":"containerd/1.7.22"},"source":{"addr":"registry-0:5000","instanceID":"6c2a9b1e-0f0d-4e59-9d4f-2b1c1a7e5d3c"},"target":{"digest":"sha256:e5ea6b10cd78d029aec29ed10f10742d3eb825cdea216ff592dac30c517c8570","length":1752,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"apache/api","size":1752,"tag":"9","url":"https://registry.example.test/v2/apache/api/manifests/9"},"timestamp":"2026-11-02T00:00:00.000000088Z"}"#;

    #[test]
    fn generated_lines_and_events_take_the_fast_path() {
        assert_eq!(Some(line(LINE).expect("flat")), serde(LINE));
        let envelope = format!(r#"{{"events":[{EVENT}, {EVENT}]}}"#);
        let fast = line(&envelope).expect("envelope");
        assert_eq!(fast.events.as_ref().map(Vec::len), Some(2));
        assert_eq!(Some(fast), serde(&envelope));
        let fast = event(EVENT).expect("event");
        assert_eq!(Some(fast), serde_json::from_str(EVENT).ok());
        let body_text =
            format!("\n{{ \"other\": [1, {{}}], \"events\" : [ {EVENT} ,\t{EVENT}] }} ");
        let fast = fast_body(&body_text).expect("a body");
        assert_eq!(
            fast.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [EVENT, EVENT]
        );
        assert_eq!(Some(fast), serde_body(&body_text));
        assert_eq!(body(r#"{"events":[]}"#).map(|e| e.len()), Some(0));
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
            r#"{"other":1.5}"#,
            r#"{"other":-}"#,
            r#"{"other":tru}"#,
            r#"{"other":[[[[[[[[[1]]]]]]]]]}"#,
            r#"{"events":[{"target":{"tag":"a","tag":"b"}}]}"#,
            r#"{"events":[{"request":"GET"}]}"#,
            r#"{"events":[{}],}"#,
            r#"{"events":{}}"#,
        ] {
            assert_eq!(line(text), None, "{text}");
        }
        for text in [
            r#"{"events":null}"#,
            r#"{"events":[1]}"#,
            r#"{"events":["{}"]}"#,
            r#"{"events":[{}],"events":[{}]}"#,
            r#"{"events":[{"id":"\u0041"}]}"#,
            r#"{"events":[{}]"#,
            r#"{"events":[{}]} ]"#,
            r#"{"other":1}"#,
            r#"[{"events":[{}]}]"#,
        ] {
            assert!(body(text).is_none(), "{text}");
        }
    }

    /// Keys of every level, and some nobody reads.
    const KEYS: [&str; 27] = [
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
        "action",
        "target",
        "request",
        "mediaType",
        "tag",
        "addr",
        "useragent",
        "actor",
        "source",
        "size",
        "url",
        "other",
        "Status",
        "events",
    ];

    /// JSON text, good and bad, nested a few levels, as `{"events":[…]}`
    /// and events are made of.
    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "\"[ -~]{0,12}\"",
            "\"([a-z]|\\\\[\"\\\\/bfnrtu0x]|[\\x00-\\x1f]|é){0,6}\"",
            Just("null".to_owned()),
            "-?[0-9]{0,6}(\\.[0-9])?([eE][0-9])?",
            prop::sample::select(vec!["true", "false", "nul", "[]", "{}", "[", "}"])
                .prop_map(str::to_owned),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            let space = "[ \t\r\n]{0,2}";
            prop_oneof![
                prop::collection::vec(
                    (prop::sample::select(KEYS.to_vec()), inner.clone(), space),
                    0..5
                )
                .prop_map(|fields| {
                    let fields: Vec<_> = fields
                        .into_iter()
                        .map(|(k, v, w)| format!("{w}\"{k}\":{w}{v}"))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
                prop::collection::vec(inner, 0..4)
                    .prop_map(|items| format!("[{}]", items.join(", "))),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever the fast path accepts, serde decodes to the same fields:
        /// as a line, as one event, and as a body split into events.
        #[test]
        fn fast_path_agrees_with_serde(
            fields in prop::collection::vec((prop::sample::select(KEYS.to_vec()), value()), 0..8),
            tail in prop::sample::select(vec!["}", " } ", "", ",}", "}}", "} x"]),
            cut in any::<prop::sample::Index>(),
        ) {
            let fields: Vec<_> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let whole = format!("{{{}{tail}", fields.join(","));
            // Also every prefix cut at a char boundary: truncated lines.
            let mut at = cut.index(whole.len() + 1);
            while !whole.is_char_boundary(at) {
                at -= 1;
            }
            for text in [whole.as_str(), &whole[..at]] {
                if let Some(fast) = line(text) {
                    prop_assert_eq!(Some(fast), serde(text), "{}", text);
                }
                if let Some(fast) = event(text) {
                    prop_assert_eq!(Some(fast), serde_json::from_str(text).ok(), "{}", text);
                }
                if let Some(fast) = fast_body(text) {
                    prop_assert_eq!(Some(fast), serde_body(text), "{}", text);
                }
            }
        }
    }
}
