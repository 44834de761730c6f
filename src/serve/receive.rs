//! What `POST /notifications` does with a body, before either mode sends
//! anything on: split the envelope into its events, decode each, keep the
//! manifest pulls, count the rest by outcome, and set aside what does not
//! decode for the dead-letter sink.
//!
//! Decoding here first means nothing that reaches the daemon or the engine is
//! bad, and blobs (most of a registry's notifications) are not shipped.
//! Direct mode hands the decoded requests to the engine along with the bytes
//! (which the write-ahead log keeps), so an event is decoded once.

use crate::event::{RequestEvent, RequestKind};
use crate::pipeline::decode::Decoder;

/// A kept event: its text as received, and what it decodes to.
#[derive(Debug, Clone)]
pub struct Kept<'a> {
    pub raw: &'a str,
    pub event: RequestEvent,
}

/// Something to dead-letter: why, and the bytes concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub reason: String,
    pub payload: Vec<u8>,
}

/// An envelope, sorted.
#[derive(Debug, Default)]
pub struct Sorted<'a> {
    pub kept: Vec<Kept<'a>>,
    pub blob: u64,
    pub not_pull: u64,
    /// Events that do not decode (one letter each).
    pub bad: Vec<Bad>,
}

const OPEN: &[u8] = b"{\"events\":[";
const CLOSE: &[u8] = b"]}";

/// One envelope of every kept event, in order (direct mode's message: the
/// engine takes an envelope's events in order, as the daemon does; forward
/// mode's is one event's).
pub fn envelope(kept: &[Kept<'_>]) -> Vec<u8> {
    let mut m = Vec::new();
    envelope_into(kept, &mut m);
    m
}

/// [`envelope`], appended to `m`.
pub fn envelope_into(kept: &[Kept<'_>], m: &mut Vec<u8>) {
    let len = kept.iter().map(|k| k.raw.len() + 1).sum::<usize>();
    m.reserve(len + OPEN.len() + CLOSE.len());
    m.extend_from_slice(OPEN);
    for (i, k) in kept.iter().enumerate() {
        if i > 0 {
            m.push(b',');
        }
        m.extend_from_slice(k.raw.as_bytes());
    }
    m.extend_from_slice(CLOSE);
}

/// Sorts a body; `Err` when it is not an envelope at all (the whole body is
/// then one dead letter with that reason).
pub fn sort<'a>(body: &'a [u8], decoder: &mut Decoder) -> Result<Sorted<'a>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not valid UTF-8".to_owned())?;
    let events = decoder
        .decode_body(text)
        .map_err(|e| format!("body is not a notification envelope ({{\"events\":[…]}}): {e}"))?;
    if events.is_empty() {
        // As the file and Kafka decoders say of it.
        return Err("envelope holds no events".to_owned());
    }
    let mut sorted = Sorted {
        kept: Vec::with_capacity(events.len()),
        ..Sorted::default()
    };
    for (raw, event) in events {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                sorted.bad.push(Bad {
                    reason: format!("event does not decode: {e}"),
                    payload: raw.as_bytes().to_vec(),
                });
                continue;
            }
        };
        match event.kind {
            RequestKind::Blob => sorted.blob += 1,
            RequestKind::NotPull => sorted.not_pull += 1,
            RequestKind::Manifest => sorted.kept.push(Kept { raw, event }),
        }
    }
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    fn event(media: &str, action: &str, addr: &str) -> String {
        format!(
            r#"{{"id":"e1","timestamp":"2026-11-02T10:00:00Z","action":"{action}","target":{{"mediaType":"{media}","digest":"{D}","repository":"acme/api","tag":"v1"}},"request":{{"addr":"{addr}","method":"GET","useragent":"docker/27.0"}}}}"#
        )
    }

    #[test]
    fn pulls_are_kept_keyed_by_ip_and_the_rest_counted() {
        let manifest = "application/vnd.oci.image.manifest.v1+json";
        let body = format!(
            r#"{{"events":[{},{},{},{{"action":"pull"}}]}}"#,
            event(manifest, "pull", "[2001:db8::1]:4000"),
            event("application/octet-stream", "pull", "10.0.0.1:1"),
            event(manifest, "push", "10.0.0.1:1"),
        );
        let sorted = sort(body.as_bytes(), &mut Decoder::new(1 << 20)).expect("envelope");
        assert_eq!(sorted.kept.len(), 1);
        assert_eq!(sorted.kept[0].event.ip.to_string(), "2001:db8::1");
        // Forward mode's message (one event's envelope; the only kept
        // event here), appended after what the buffer holds.
        let mut buffer = b"held".to_vec();
        envelope_into(std::slice::from_ref(&sorted.kept[0]), &mut buffer);
        let message = buffer.split_off(4);
        assert_eq!(
            (buffer.as_slice(), &message),
            (&b"held"[..], &envelope(&sorted.kept))
        );
        let back: serde_json::Value = serde_json::from_slice(&message).expect("json");
        assert_eq!(back["events"][0]["id"], "e1");
        assert_eq!((sorted.blob, sorted.not_pull), (1, 1));
        assert_eq!(sorted.bad.len(), 1);
        assert_eq!(sorted.bad[0].payload, br#"{"action":"pull"}"#);
        assert!(
            sorted.bad[0].reason.contains("timestamp"),
            "{:?}",
            sorted.bad
        );
    }

    #[test]
    fn kept_events_make_one_envelope_in_order() {
        let manifest = "application/vnd.oci.image.manifest.v1+json";
        let (a, b) = (
            event(manifest, "pull", "10.0.0.1:1"),
            event(manifest, "pull", "10.0.0.2:1"),
        );
        let blob = event("application/octet-stream", "pull", "10.0.0.3:1");
        let body = format!(r#"{{"events":[{a},{blob},{b}]}}"#);
        let sorted = sort(body.as_bytes(), &mut Decoder::new(1 << 20)).expect("envelope");
        let one = envelope(&sorted.kept);
        assert_eq!(one, format!(r#"{{"events":[{a},{b}]}}"#).into_bytes());
        // The engine is handed the door's decode of the kept events: what it
        // would decode from the bytes itself (a rewind, a restart).
        let mut events = Vec::new();
        Decoder::new(1 << 20)
            .decode(&one, &mut events)
            .expect("decodes");
        let kept: Vec<_> = sorted.kept.iter().map(|k| k.event.clone()).collect();
        assert_eq!(events, kept);
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn bodies_that_are_not_envelopes_say_why() {
        let mut d = Decoder::new(1 << 20);
        for body in [
            &b"\xff"[..],
            b"{}",
            b"[1]",
            b"{\"events\":3}",
            b"",
            b"{\"events\":[]}",
        ] {
            assert!(sort(body, &mut d).is_err(), "{body:?}");
        }
    }
}
