//! Decode stage: one input line (bytes) → zero or more [`RequestEvent`]s.
//!
//! Two encodings are accepted and auto-detected per line (spec §1): flat JSON
//! with the fields of the spec, and the CNCF distribution registry's
//! notification envelope (`{"events":[…]}`). Both are read in one pass into
//! [`Line`], whose fields are the union of the two shapes, so detection
//! costs nothing extra: by [`scan`] when the text is in the plain shape
//! registries and producers write, by serde otherwise (with the same result;
//! serde names what is wrong). Strings borrow from the input unless they
//! carry escapes. Each string is interned per field, and checked once.
//!
//! Anything wrong with a line is a [`DecodeError`] that names the field; the
//! error text never echoes the client IP (privacy, spec §3).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use chrono::DateTime;
use serde::Deserialize;

use super::future;
use crate::event::{is_digest, Method, Micros, RequestEvent, RequestKind};

mod scan;

/// Lines longer than this are rejected before parsing.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

const MAX_NAME_BYTES: usize = 255;
const MAX_TAG_BYTES: usize = 128;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    #[error("line is longer than {limit} bytes ({len} bytes)")]
    TooLong { len: usize, limit: usize },
    #[error("empty line")]
    Empty,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("envelope event {index}: {source}")]
    InEnvelope {
        index: usize,
        #[source]
        source: Box<DecodeError>,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Union of the flat event and the notification envelope.
#[derive(Debug, Default, PartialEq, Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    events: Option<Vec<EnvelopeEvent<'a>>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    repository: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reference: Option<Cow<'a, str>>,
    #[serde(borrow)]
    digest: Option<Cow<'a, str>>,
    status: Option<u16>,
    #[serde(borrow)]
    remote_addr: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    owner: Option<Cow<'a, str>>,
    #[serde(borrow)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
}

/// A notification body as serde splits it: each event's text.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    events: Vec<&'a serde_json::value::RawValue>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct EnvelopeEvent<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    target: Option<Target<'a>>,
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct Target<'a> {
    #[serde(borrow, rename = "mediaType")]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    digest: Option<Cow<'a, str>>,
    #[serde(borrow)]
    repository: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tag: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    addr: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    useragent: Option<Cow<'a, str>>,
}

/// Decodes lines; interns the strings that repeat across events so a batch
/// of actions shares one allocation per distinct namespace, repository and
/// user agent.
#[derive(Debug)]
pub struct Decoder {
    max_line_bytes: usize,
    interned: Interned,
    /// `--max-future` against the wall clock (live input), and the clock read
    /// once per line.
    max_future: Option<Micros>,
    now: Micros,
    /// Lines, bodies and single events go through [`scan`] first; off only to
    /// compare it with serde.
    fast_path: bool,
}

/// Strings seen before, per field, each kept only once it passed that
/// field's check: a hit skips the check and the allocation.
#[derive(Debug, Default)]
struct Interned {
    /// Namespaces and repositories (one rule, [`check_name`]).
    names: Cache<()>,
    /// References, and whether each is a digest.
    references: Cache<bool>,
    digests: Cache<()>,
    /// User agents and owners: nothing to check.
    others: Cache<()>,
}

type Cache<T> = foldhash::HashMap<Arc<str>, T>;

/// Each cache stops growing past this many distinct strings; beyond it
/// strings are checked and allocated per event (bounded memory over
/// unbounded input).
const MAX_INTERNED: usize = 200_000;

/// `s` from `cache`, or checked by `check` and added.
fn cached<T: Copy>(
    cache: &mut Cache<T>,
    s: &str,
    check: impl FnOnce(&str) -> Result<T, DecodeError>,
) -> Result<(Arc<str>, T), DecodeError> {
    if let Some((interned, value)) = cache.get_key_value(s) {
        return Ok((interned.clone(), *value));
    }
    let value = check(s)?;
    let interned: Arc<str> = Arc::from(s);
    if cache.len() < MAX_INTERNED {
        cache.insert(interned.clone(), value);
    }
    Ok((interned, value))
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE_BYTES)
    }
}

impl Decoder {
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            interned: Interned::default(),
            max_future: None,
            now: 0,
            fast_path: true,
        }
    }

    /// Decodes every line and event with serde alone, for the tests (and
    /// fuzz targets) that require the fast path to decode exactly as serde
    /// does.
    pub fn without_fast_path(mut self) -> Self {
        self.fast_path = false;
        self
    }

    /// Refuses events more than `bound` µs ahead of the wall clock (`None`:
    /// no bound), as `invalid timestamp` (see [`crate::pipeline::future`]).
    pub fn with_clock_bound(mut self, bound: Option<Micros>) -> Self {
        self.max_future = bound;
        self
    }

    /// Decodes one line, appending its events to `out`. For an envelope some
    /// of whose events are bad, the good ones are still appended and the
    /// error names the first bad one.
    pub fn decode(&mut self, line: &[u8], out: &mut Vec<RequestEvent>) -> Result<(), DecodeError> {
        if line.len() > self.max_line_bytes {
            return Err(DecodeError::TooLong {
                len: line.len(),
                limit: self.max_line_bytes,
            });
        }
        let text = std::str::from_utf8(line).map_err(|_| DecodeError::InvalidUtf8)?;
        self.read_clock();
        let text = text.trim();
        if text.is_empty() {
            return Err(DecodeError::Empty);
        }
        let parsed = match self.fast_path.then(|| scan::line(text)).flatten() {
            Some(line) => line,
            None => serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?,
        };
        match parsed.events {
            Some(events) => self.decode_envelope(events, out),
            None => {
                out.push(self.decode_flat(parsed)?);
                Ok(())
            }
        }
    }

    /// Reads the wall clock for `--max-future`, once per input.
    fn read_clock(&mut self) {
        if self.max_future.is_some() {
            self.now = chrono::Utc::now().timestamp_micros();
        }
    }

    /// Decodes one event of a notification envelope, given as its own JSON
    /// text (an element of `{"events":[…]}`): what `pullstats serve` does
    /// with each event of a body it has split.
    pub fn decode_event(&mut self, event: &str) -> Result<RequestEvent, DecodeError> {
        self.read_clock();
        let parsed = match self.fast_path.then(|| scan::event(event)).flatten() {
            Some(parsed) => parsed,
            None => serde_json::from_str(event).map_err(|e| DecodeError::Json(e.to_string()))?,
        };
        self.decode_envelope_event(parsed)
    }

    /// The events of a notification body (`{"events":[…]}`), each with its
    /// own text and what [`Decoder::decode_event`] makes of it; serde's
    /// error when the body is not an envelope. The fast path reads the body
    /// in one pass when it can; serde splits the rest into events, each
    /// then decoded on its own, to the same result.
    #[allow(clippy::type_complexity)]
    pub fn decode_body<'a>(
        &mut self,
        body: &'a str,
    ) -> Result<Vec<(&'a str, Result<RequestEvent, DecodeError>)>, serde_json::Error> {
        if let Some(events) = self.fast_path.then(|| scan::body(body)).flatten() {
            // One reading of the clock for the body's events.
            self.read_clock();
            let decoded = events
                .into_iter()
                .map(|(text, parsed)| (text, self.decode_envelope_event(parsed)));
            return Ok(decoded.collect());
        }
        let split: Body<'a> = serde_json::from_str(body)?;
        let events = split.events.into_iter().map(|raw| raw.get());
        Ok(events.map(|e| (e, self.decode_event(e))).collect())
    }

    fn decode_flat(&mut self, l: Line<'_>) -> Result<RequestEvent, DecodeError> {
        let timestamp = parse_timestamp(&l.timestamp.ok_or(DecodeError::Missing("timestamp"))?)?;
        let method = parse_method(&l.method.ok_or(DecodeError::Missing("method"))?)?;
        let repository = l.repository.ok_or(DecodeError::Missing("repository"))?;
        let (namespace, repository) = match l.namespace {
            Some(ns) => (ns, repository),
            None => {
                let (ns, repo) = split_repository(&repository);
                (Cow::Owned(ns.to_owned()), Cow::Owned(repo.to_owned()))
            }
        };
        let status = l.status.ok_or(DecodeError::Missing("status"))?;
        if !(100..=599).contains(&status) {
            return Err(invalid("status", format!("{status} is not an HTTP status")));
        }
        let kind = match l.media_type.as_deref() {
            Some(mt) if !is_manifest_media_type(mt) => RequestKind::Blob,
            _ if method == Method::Other => RequestKind::NotPull,
            _ => RequestKind::Manifest,
        };
        self.build(Fields {
            timestamp,
            method,
            namespace: &namespace,
            repository: &repository,
            reference: &l.reference.ok_or(DecodeError::Missing("reference"))?,
            digest: l.digest.as_deref(),
            status,
            addr: &l.remote_addr.ok_or(DecodeError::Missing("remote_addr"))?,
            user_agent: l.user_agent.as_deref().unwrap_or(""),
            owner: l.owner.as_deref(),
            kind,
            id: l.id.as_deref(),
        })
    }

    fn decode_envelope(
        &mut self,
        events: Vec<EnvelopeEvent<'_>>,
        out: &mut Vec<RequestEvent>,
    ) -> Result<(), DecodeError> {
        if events.is_empty() {
            return Err(invalid("events", "envelope holds no events"));
        }
        let mut first_error = None;
        for (index, ev) in events.into_iter().enumerate() {
            match self.decode_envelope_event(ev) {
                Ok(event) => out.push(event),
                Err(e) => {
                    first_error.get_or_insert(DecodeError::InEnvelope {
                        index,
                        source: Box::new(e),
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn decode_envelope_event(
        &mut self,
        ev: EnvelopeEvent<'_>,
    ) -> Result<RequestEvent, DecodeError> {
        let timestamp = parse_timestamp(&ev.timestamp.ok_or(DecodeError::Missing("timestamp"))?)?;
        let action = ev.action.ok_or(DecodeError::Missing("action"))?;
        let target = ev.target.ok_or(DecodeError::Missing("target"))?;
        let request = ev.request.ok_or(DecodeError::Missing("request"))?;
        let method = parse_method(
            &request
                .method
                .ok_or(DecodeError::Missing("request.method"))?,
        )?;
        let repo_path = target
            .repository
            .ok_or(DecodeError::Missing("target.repository"))?;
        let (namespace, repository) = split_repository(&repo_path);
        let digest = target.digest;
        let reference = match (&target.tag, &digest) {
            (Some(tag), _) if !tag.is_empty() => tag.clone(),
            (_, Some(d)) => d.clone(),
            _ => return Err(DecodeError::Missing("target.tag or target.digest")),
        };
        let kind = if action != "pull" {
            RequestKind::NotPull
        } else if target
            .media_type
            .as_deref()
            .is_some_and(|mt| !is_manifest_media_type(mt))
        {
            RequestKind::Blob
        } else {
            RequestKind::Manifest
        };
        self.build(Fields {
            timestamp,
            method,
            namespace,
            repository,
            reference: &reference,
            digest: digest.as_deref(),
            // Notifications are only sent for requests the registry served.
            status: 200,
            addr: &request.addr.ok_or(DecodeError::Missing("request.addr"))?,
            user_agent: request.useragent.as_deref().unwrap_or(""),
            owner: None,
            kind,
            id: ev.id.as_deref(),
        })
    }

    fn build(&mut self, f: Fields<'_>) -> Result<RequestEvent, DecodeError> {
        if let Some(bound) = self.max_future {
            if f.timestamp > self.now.saturating_add(bound) {
                return Err(invalid(
                    "timestamp",
                    future::clock_reason(f.timestamp, self.now, bound),
                ));
            }
        }
        let names = &mut self.interned.names;
        let (namespace, ()) = cached(names, f.namespace, |s| check_name("namespace", s))?;
        let (repository, ()) = cached(names, f.repository, |s| check_name("repository", s))?;
        let (reference, by_digest) = cached(&mut self.interned.references, f.reference, |r| {
            check_reference(r).map(|()| is_digest(r))
        })?;
        let ip = parse_addr(f.addr)?;
        let digest = match f.digest {
            // A pull by digest names it twice: one lookup.
            Some(d) if by_digest && d == f.reference => reference.clone(),
            Some(d) if !d.is_empty() => {
                cached(&mut self.interned.digests, d, |d| {
                    if is_digest(d) {
                        Ok(())
                    } else {
                        Err(invalid("digest", "not an algorithm:hex digest"))
                    }
                })?
                .0
            }
            _ if by_digest => reference.clone(),
            // A 2xx manifest response always carries Docker-Content-Digest;
            // without it the action's digest could not be filled (spec §2).
            _ if (200..300).contains(&f.status) && f.kind == RequestKind::Manifest => {
                return Err(DecodeError::Missing("digest"));
            }
            _ => Arc::from(""),
        };
        let others = &mut self.interned.others;
        let mut other = |s: &str| cached(others, s, |_| Ok(())).map(|(s, ())| s);
        Ok(RequestEvent {
            timestamp: f.timestamp,
            method: f.method,
            namespace,
            repository,
            reference,
            digest,
            status: f.status,
            ip,
            user_agent: other(f.user_agent)?,
            owner: match f.owner.filter(|o| !o.is_empty()) {
                Some(o) => Some(other(o)?),
                None => None,
            },
            kind: f.kind,
            id: f.id.filter(|i| !i.is_empty()).map(Box::from),
        })
    }
}

struct Fields<'a> {
    timestamp: Micros,
    method: Method,
    namespace: &'a str,
    repository: &'a str,
    reference: &'a str,
    digest: Option<&'a str>,
    status: u16,
    addr: &'a str,
    user_agent: &'a str,
    owner: Option<&'a str>,
    kind: RequestKind,
    id: Option<&'a str>,
}

/// `ns/repo` → (`ns`, `repo`), split on the first `/` (spec §1). A path
/// without a namespace belongs to `library`, as official images do.
pub fn split_repository(path: &str) -> (&str, &str) {
    match path.split_once('/') {
        Some((ns, repo)) => (ns, repo),
        None => ("library", path),
    }
}

/// Manifests (image, index, list; Docker and OCI) form pulls; layers,
/// configs and `application/octet-stream` (how the distribution registry
/// labels blobs) do not.
pub fn is_manifest_media_type(media_type: &str) -> bool {
    let mt = media_type.trim();
    mt.is_empty()
        || mt.contains("manifest")
        || mt.ends_with("image.index.v1+json")
        || mt.contains("manifest.list")
}

fn parse_method(m: &str) -> Result<Method, DecodeError> {
    if m.eq_ignore_ascii_case("GET") {
        Ok(Method::Get)
    } else if m.eq_ignore_ascii_case("HEAD") {
        Ok(Method::Head)
    } else if ["PUT", "POST", "PATCH", "DELETE", "OPTIONS"]
        .iter()
        .any(|k| m.eq_ignore_ascii_case(k))
    {
        Ok(Method::Other)
    } else {
        Err(invalid("method", "not an HTTP method"))
    }
}

/// RFC 3339 → microseconds since the epoch (UTC). Sub-microsecond digits are
/// truncated.
pub fn parse_timestamp(s: &str) -> Result<Micros, DecodeError> {
    if let Some(micros) = plain_utc(s.as_bytes()) {
        return Ok(micros);
    }
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_micros())
        .map_err(|e| invalid("timestamp", format!("not RFC 3339 ({e})")))
}

/// The common case of [`parse_timestamp`] in one pass:
/// `YYYY-MM-DDTHH:MM:SS[.f…]Z` with 1 to 9 fraction digits, a real date and
/// no leap second. `None` leaves anything else to chrono, which accepts all
/// this does, to the same instant.
fn plain_utc(s: &[u8]) -> Option<Micros> {
    let [y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b'T', h0, h1, b':', mi0, mi1, b':', s0, s1, rest @ ..] =
        s
    else {
        return None;
    };
    let num = |digits: &[u8]| {
        digits.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let year = num(&[*y0, *y1, *y2, *y3])?;
    let month = num(&[*mo0, *mo1])?;
    let day = num(&[*d0, *d1])?;
    let (hour, minute, second) = (num(&[*h0, *h1])?, num(&[*mi0, *mi1])?, num(&[*s0, *s1])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let fraction = match rest {
        [b'Z'] => 0,
        [b'.', digits @ .., b'Z'] if (1..=9).contains(&digits.len()) => {
            let six = &digits[..digits.len().min(6)];
            num(six)? * 10i64.pow(6 - six.len() as u32) + num(&digits[six.len()..]).map(|_| 0)?
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    // days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + fraction)
}

/// `ip`, `ip:port`, `[v6]:port` → the IP. IPv4-mapped IPv6 addresses are the
/// IPv4 client they wrap, so one client is one key whichever way it came.
pub fn parse_addr(addr: &str) -> Result<IpAddr, DecodeError> {
    let addr = addr.trim();
    if let Some(ip) = plain_v4(addr.as_bytes()) {
        return Ok(IpAddr::V4(ip));
    }
    let bad = || invalid("remote_addr", "not an IP address (optionally with port)");
    let ip = if let Ok(ip) = addr.parse::<IpAddr>() {
        ip
    } else if let Some(rest) = addr.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return Err(bad());
        }
        inside.parse::<IpAddr>().map_err(|_| bad())?
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if !is_port(port) {
            return Err(bad());
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().map_err(|_| bad())?)
    };
    Ok(ip.to_canonical())
}

/// The common case of [`parse_addr`] in one pass: `a.b.c.d` or
/// `a.b.c.d:port`, in digits only, no octet with a leading zero. `None`
/// leaves anything else (and anything wrong) to the full parse, which
/// accepts all this does, with the same result.
fn plain_v4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (i, octet) in octets.iter_mut().enumerate() {
        if i > 0 {
            (*s.get(at)? == b'.').then_some(())?;
            at += 1;
        }
        let digits = s[at..]
            .iter()
            .take(4)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > 3 || (digits > 1 && s[at] == b'0') {
            return None;
        }
        let value = s[at..at + digits]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        *octet = u8::try_from(value).ok()?;
        at += digits;
    }
    match &s[at..] {
        [] => {}
        [b':', port @ ..] => {
            if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let value = port.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            u16::try_from(value).ok()?;
        }
        _ => return None,
    }
    Some(Ipv4Addr::from(octets))
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok()
}

fn check_name(field: &'static str, s: &str) -> Result<(), DecodeError> {
    if s.is_empty() {
        return Err(invalid(field, "empty"));
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(invalid(
            field,
            format!("longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    if s.bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(invalid(field, "contains whitespace or control characters"));
    }
    Ok(())
}

/// A tag per the OCI distribution spec (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`)
/// or a digest.
fn check_reference(r: &str) -> Result<(), DecodeError> {
    if r.is_empty() {
        return Err(invalid("reference", "empty"));
    }
    if r.contains(':') {
        return if is_digest(r) {
            Ok(())
        } else {
            Err(invalid(
                "reference",
                "neither a tag nor an algorithm:hex digest",
            ))
        };
    }
    let ok_first = r.as_bytes()[0].is_ascii_alphanumeric() || r.as_bytes()[0] == b'_';
    let ok_rest = r
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if r.len() > MAX_TAG_BYTES || !ok_first || !ok_rest {
        return Err(invalid("reference", "not a valid tag"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(line: &str) -> Result<Vec<RequestEvent>, DecodeError> {
        let mut out = Vec::new();
        Decoder::new(DEFAULT_MAX_LINE_BYTES)
            .decode(line.as_bytes(), &mut out)
            .map(|()| out)
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn flat(extra: &str) -> String {
        format!(
            r#"{{"timestamp":"2026-11-02T10:00:00.123456789Z","method":"GET","repository":"library/nginx","reference":"1.27","digest":"{D1}","status":200,"remote_addr":"203.0.113.9:41234","user_agent":"docker/27.3.1"{extra}}}"#
        )
    }

    #[test]
    fn flat_event_decodes_and_splits_repository() {
        let evs = decode(&flat("")).expect("decodes");
        let ev = &evs[0];
        assert_eq!(&*ev.namespace, "library");
        assert_eq!(&*ev.repository, "nginx");
        assert_eq!(ev.method, Method::Get);
        assert_eq!(ev.timestamp % 1_000_000, 123_456);
        assert_eq!(ev.ip.to_string(), "203.0.113.9");
        assert_eq!(ev.kind, RequestKind::Manifest);
        assert!(ev.forms_action());
    }

    #[test]
    fn envelope_decodes_every_event() {
        let line = format!(
            r#"{{"events":[{{"id":"a","timestamp":"2026-11-02T10:00:00.000000001Z","action":"pull","target":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{D1}","repository":"acme/api","tag":"v1"}},"request":{{"addr":"[2001:db8::7]:5000","method":"HEAD","useragent":"containerd/1.7.22"}}}},{{"timestamp":"2026-11-02T10:00:00.2Z","action":"pull","target":{{"mediaType":"application/octet-stream","digest":"{D1}","repository":"acme/api"}},"request":{{"addr":"10.0.0.1:1","method":"GET","useragent":"x"}}}},{{"timestamp":"2026-11-02T10:00:01Z","action":"push","target":{{"digest":"{D1}","repository":"acme/api"}},"request":{{"addr":"10.0.0.1","method":"PUT"}}}}]}}"#
        );
        let evs = decode(&line).expect("decodes");
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].method, Method::Head);
        assert_eq!(&*evs[0].reference, "v1");
        assert_eq!(evs[0].ip.to_string(), "2001:db8::7");
        assert_eq!(evs[1].kind, RequestKind::Blob);
        assert_eq!(&*evs[1].reference, D1);
        assert_eq!(evs[2].kind, RequestKind::NotPull);
    }

    #[test]
    fn addresses_with_ports_and_mapped_v4() {
        for (input, want) in [
            ("1.2.3.4", "1.2.3.4"),
            ("1.2.3.4:80", "1.2.3.4"),
            ("[::1]:443", "::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("[2001:db8::1]", "2001:db8::1"),
        ] {
            assert_eq!(parse_addr(input).expect(input).to_string(), want);
        }
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4:99999",
            "[::1",
            "host:80",
            "1.2.3.4:",
            "[::1]x",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_lines_are_errors_naming_the_problem() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "invalid JSON"),
            (vec![0xff, 0xfe, b'{', b'}'], "UTF-8"),
            (b"   ".to_vec(), "empty"),
            (
                flat("")
                    .replace(r#""status":200"#, r#""status":"ok""#)
                    .into(),
                "invalid JSON",
            ),
            (
                flat("").replace(r#""method":"GET","#, "").into(),
                "`method`",
            ),
            (
                flat("").replace("203.0.113.9:41234", "not-an-ip").into(),
                "remote_addr",
            ),
            (
                flat("").replace("2026-11-02T10", "yesterday").into(),
                "timestamp",
            ),
            (
                flat("").replace(r#""1.27""#, r#""bad tag!""#).into(),
                "reference",
            ),
            (flat("").replace(D1, "sha256:zz").into(), "digest"),
            (
                flat("")
                    .replace(r#""status":200"#, r#""status":999"#)
                    .into(),
                "status",
            ),
            (
                flat("")
                    .replace(r#""method":"GET""#, r#""method":"FETCH""#)
                    .into(),
                "method",
            ),
            (b"{\"events\":[]}".to_vec(), "no events"),
        ];
        for (line, want) in cases {
            let mut out = Vec::new();
            let err = Decoder::new(DEFAULT_MAX_LINE_BYTES)
                .decode(&line, &mut out)
                .expect_err(want);
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want}"
            );
        }
        let err = Decoder::new(10).decode(flat("").as_bytes(), &mut Vec::new());
        assert!(matches!(err, Err(DecodeError::TooLong { .. })));
    }

    #[test]
    fn errors_never_echo_the_ip() {
        let line = flat("").replace("203.0.113.9:41234", "203.0.113.9:notaport");
        let err = decode(&line).expect_err("bad port");
        assert!(!err.to_string().contains("203.0.113.9"));
    }

    #[test]
    fn tag_request_without_digest_is_rejected_only_when_successful() {
        let no_digest = flat("").replace(&format!(r#""digest":"{D1}","#), "");
        assert_eq!(decode(&no_digest), Err(DecodeError::Missing("digest")));
        let not_found = no_digest.replace(r#""status":200"#, r#""status":404"#);
        assert_eq!(decode(&not_found).expect("404 decodes")[0].status, 404);
    }

    #[test]
    fn media_types_classify_blobs() {
        assert!(is_manifest_media_type(
            "application/vnd.docker.distribution.manifest.v2+json"
        ));
        assert!(is_manifest_media_type(
            "application/vnd.docker.distribution.manifest.list.v2+json"
        ));
        assert!(is_manifest_media_type(
            "application/vnd.oci.image.index.v1+json"
        ));
        assert!(is_manifest_media_type(
            "application/vnd.oci.image.manifest.v1+json"
        ));
        assert!(!is_manifest_media_type("application/octet-stream"));
        assert!(!is_manifest_media_type(
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ));
        assert!(!is_manifest_media_type(
            "application/vnd.oci.image.config.v1+json"
        ));
    }

    /// `plain_v4` takes only what the full parse takes, to the same address,
    /// and takes the usual forms.
    #[test]
    fn the_quick_ipv4_parse_agrees_with_the_full_one() {
        for (s, quick) in [
            ("1.2.3.4", true),
            ("0.0.0.0:0", true),
            ("255.255.255.255:65535", true),
            ("10.0.0.1:080", true),
            ("1.2.3.4:65536", false),
            ("1.2.3.4:+80", false),
            ("1.2.3.4:", false),
            ("256.1.1.1", false),
            ("01.2.3.4", false),
            ("1.2.3", false),
            ("1.2.3.4.5", false),
            ("1.2.3.4 ", false),
            ("1.2.3.4:1:2", false),
            ("1234.1.1.1", false),
            ("::ffff:1.2.3.4", false),
        ] {
            let got = plain_v4(s.as_bytes());
            assert_eq!(got.is_some(), quick, "{s}");
            if let Some(ip) = got {
                assert_eq!(parse_addr(s), Ok(IpAddr::V4(ip)), "{s}");
            }
        }
    }

    #[test]
    fn the_quick_timestamp_parse_knows_the_calendar() {
        for (s, quick) in [
            ("2026-11-02T00:00:00.000000Z", true),
            ("2024-02-29T23:59:59.999999999Z", true),
            ("2000-02-29T00:00:00Z", true),
            ("1900-02-29T00:00:00Z", false),
            ("2100-02-29T00:00:00Z", false),
            ("2026-02-29T00:00:00Z", false),
            ("2026-04-31T00:00:00Z", false),
            ("1969-12-31T23:59:59.5Z", true),
            ("0000-01-01T00:00:00Z", true),
            ("2026-12-31T23:59:60Z", false),
            ("2026-11-02t00:00:00Z", false),
            ("2026-11-02T00:00:00+00:00", false),
        ] {
            let got = plain_utc(s.as_bytes());
            assert_eq!(got.is_some(), quick, "{s}");
            if let Some(micros) = got {
                let chrono = DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_micros());
                assert_eq!(chrono, Ok(micros), "{s}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// `plain_utc` takes only what chrono takes, to the same instant.
        #[test]
        fn the_quick_timestamp_parse_agrees_with_chrono(
            year in 0u32..10_000,
            month in 0u32..14,
            day in 0u32..33,
            hour in 0u32..25,
            minute in 0u32..61,
            second in 0u32..62,
            fraction in "(\\.[0-9]{0,11})?",
            zone in proptest::sample::select(vec!["Z", "z", "+00:00", "", "Z "]),
        ) {
            let s = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{zone}");
            let chrono = DateTime::parse_from_rfc3339(&s).ok().map(|t| t.timestamp_micros());
            match plain_utc(s.as_bytes()) {
                Some(micros) => proptest::prop_assert_eq!(Some(micros), chrono, "{}", s),
                None => proptest::prop_assert!(
                    zone != "Z" || chrono.is_none() || second == 60 || fraction.len() > 10,
                    "{} is left to chrono", s
                ),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Lines of the generator (flat and envelopes), each cut, spliced or
        /// given a stray byte, and an envelope's event on its own: the fast
        /// path decodes (or refuses) every one exactly as serde alone does,
        /// error text included.
        #[test]
        fn the_fast_path_decodes_as_serde_does(
            seed in 0u64..1000,
            edit in 0usize..4,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            len in 0usize..40,
            byte in proptest::sample::select(b"\"\\ ,:{}[]0-.eu\t\x01nx".to_vec()),
            envelopes in proptest::prelude::any::<bool>(),
        ) {
            let cfg = crate::gen::GenConfig {
                events: 4,
                seed,
                start: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
                days: 1,
                format: if envelopes {
                    crate::gen::Format::Distribution
                } else {
                    crate::gen::Format::Flat
                },
                bad_ratio: 0.2,
            };
            let mut lines = Vec::new();
            crate::gen::generate(cfg, &mut lines).expect("generate");
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let mut line = line.to_vec();
                let i = at.index(line.len());
                match edit {
                    0 => {}
                    1 => line.truncate(i),
                    2 => {
                        line.drain(i..(i + len).min(line.len()));
                    }
                    _ => line.insert(i, byte),
                }
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                let a = Decoder::new(DEFAULT_MAX_LINE_BYTES).decode(&line, &mut fast);
                let b = Decoder::new(DEFAULT_MAX_LINE_BYTES)
                    .without_fast_path()
                    .decode(&line, &mut slow);
                let text = String::from_utf8_lossy(&line);
                proptest::prop_assert_eq!(a, b, "{}", text);
                proptest::prop_assert_eq!(fast, slow, "{}", text);
                // What `serve` decodes: the envelope's one event on its own.
                let event = text.strip_prefix("{\"events\":[").and_then(|t| t.strip_suffix("]}"));
                if let Some(event) = event {
                    let a = Decoder::new(DEFAULT_MAX_LINE_BYTES).decode_event(event);
                    let b = Decoder::new(DEFAULT_MAX_LINE_BYTES)
                        .without_fast_path()
                        .decode_event(event);
                    proptest::prop_assert_eq!(a, b, "{}", event);
                }
                // What `serve` decodes: the line as a body.
                if let Ok(body) = std::str::from_utf8(&line) {
                    let a = Decoder::new(DEFAULT_MAX_LINE_BYTES).decode_body(body);
                    let b = Decoder::new(DEFAULT_MAX_LINE_BYTES)
                        .without_fast_path()
                        .decode_body(body);
                    let text = |r: Result<_, serde_json::Error>| r.map_err(|e| e.to_string());
                    proptest::prop_assert_eq!(text(a), text(b), "{}", body);
                }
            }
        }
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use crate::gen::{generate, Format, GenConfig};

    /// `schemas/request-event.schema.json` documents what `decode` accepts:
    /// its required fields are exactly the ones whose absence is an error,
    /// its example decodes, and every field the generator writes is in it.
    #[test]
    fn json_schema_matches_the_decoder() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/request-event.schema.json"))
                .expect("schema parses");
        let props = schema["properties"].as_object().expect("properties");
        // Always required, plus `digest`, required for the example's kind of
        // request (2xx by tag) by the schema's `allOf` condition.
        let required: Vec<&str> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .chain(
                schema["allOf"][0]["then"]["required"]
                    .as_array()
                    .expect("conditional"),
            )
            .filter_map(|v| v.as_str())
            .collect();
        let example = serde_json::to_string(&schema["examples"][0]).expect("example");
        let mut out = Vec::new();
        let mut decoder = Decoder::new(DEFAULT_MAX_LINE_BYTES);
        decoder
            .decode(example.as_bytes(), &mut out)
            .expect("the example decodes");
        let full: serde_json::Value = serde_json::from_str(&example).expect("json");
        for field in props.keys() {
            let mut without = full.clone();
            without.as_object_mut().expect("object").remove(field);
            let result = decoder.decode(without.to_string().as_bytes(), &mut Vec::new());
            // Without namespace the repository is a path; `nginx` alone is library/nginx.
            assert_eq!(
                result.is_err(),
                required.contains(&field.as_str()),
                "dropping `{field}`"
            );
        }
        let cfg = GenConfig {
            events: 2000,
            seed: 3,
            start: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
            days: 1,
            format: Format::Flat,
            bad_ratio: 0.0,
        };
        let mut lines = Vec::new();
        generate(cfg, &mut lines).expect("generate");
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).expect("json");
            for key in v.as_object().expect("object").keys() {
                assert!(
                    props.contains_key(key),
                    "generated field `{key}` is not in the schema"
                );
            }
        }
    }
}
