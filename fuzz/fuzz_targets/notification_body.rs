//! One HTTP body POSTed to `/notifications`. Holds: every event of an
//! envelope is kept, counted (blob, not a pull) or dead-lettered with a
//! reason; each kept event's forward-mode message decodes alone to the
//! manifest request the door decoded, and direct mode's envelope of every
//! kept event decodes to those requests in order (what a rewind or a
//! restart hands the engine instead of the door's requests); and the
//! decoder's fast path sorts the body as serde alone does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pullstats::event::{RequestEvent, RequestKind};
use pullstats::pipeline::decode::Decoder;
use pullstats::serve::receive::{envelope, sort, Sorted};

/// What `sort` made of a body, comparable.
type Outcome = Result<
    (
        Vec<(String, RequestEvent)>,
        u64,
        u64,
        Vec<(String, Vec<u8>)>,
    ),
    String,
>;

fn outcome(sorted: &Result<Sorted<'_>, String>) -> Outcome {
    let sorted = sorted.as_ref().map_err(Clone::clone)?;
    let kept = sorted
        .kept
        .iter()
        .map(|k| (k.raw.to_owned(), k.event.clone()));
    let bad = sorted
        .bad
        .iter()
        .map(|b| (b.reason.clone(), b.payload.clone()));
    Ok((kept.collect(), sorted.blob, sorted.not_pull, bad.collect()))
}

fuzz_target!(|body: &[u8]| {
    let mut decoder = Decoder::new(1 << 20);
    let sorted = sort(body, &mut decoder);
    // The decoder's fast path sorts the body exactly as serde alone does.
    let by_serde = sort(body, &mut Decoder::new(1 << 20).without_fast_path());
    assert_eq!(outcome(&sorted), outcome(&by_serde));
    let Ok(sorted) = sorted else {
        return; // the whole body is one dead letter with that reason
    };
    let total = sorted.kept.len() as u64 + sorted.blob + sorted.not_pull + sorted.bad.len() as u64;
    assert!(total > 0, "an envelope with events accounts for each");
    for bad in &sorted.bad {
        assert!(!bad.reason.is_empty());
        assert!(!bad.payload.is_empty());
    }
    for kept in &sorted.kept {
        let mut events = Vec::new();
        decoder
            .decode(&envelope(std::slice::from_ref(kept)), &mut events)
            .expect("a kept message decodes");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, RequestKind::Manifest);
        assert_eq!(events[0], kept.event);
    }
    if !sorted.kept.is_empty() {
        let mut events = Vec::new();
        decoder
            .decode(&envelope(&sorted.kept), &mut events)
            .expect("the kept events' envelope decodes");
        let door: Vec<_> = sorted.kept.iter().map(|k| k.event.clone()).collect();
        assert_eq!(events, door);
    }
});
