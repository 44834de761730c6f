//! One input line (a file line or a Kafka message), flat or envelope.
//! Holds: a line decodes to events that re-encode to the same fields, or it
//! is one dead letter with a reason and the line as its payload; and the
//! decoder's fast path for flat lines gives what serde alone gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pullstats::event::{Method, RequestKind};
use pullstats::pipeline::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, Position};
use pullstats::pipeline::decode::Decoder;
use pullstats::pipeline::enrich::{ActionEnricher, EnrichData, IpHasher};
use pullstats::pipeline::sessionize::SessionConfig;
use pullstats::pipeline::Pipeline;

#[derive(Default)]
struct Letters(Vec<(String, Vec<u8>)>);

impl DeadLetterSink for Letters {
    fn send(&mut self, letter: DeadLetter<'_>) -> Result<(), DeadLetterError> {
        self.0
            .push((letter.reason.to_owned(), letter.payload.to_vec()));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DeadLetterError> {
        Ok(())
    }
    fn count(&self) -> u64 {
        self.0.len() as u64
    }
}

const MAX_LINE: usize = 64 << 10;

fuzz_target!(|line: &[u8]| {
    let mut events = Vec::new();
    let decoded = Decoder::new(MAX_LINE).decode(line, &mut events);
    // The fast path for flat lines decodes exactly as serde alone does.
    let mut by_serde = Vec::new();
    let serde = Decoder::new(MAX_LINE)
        .without_fast_path()
        .decode(line, &mut by_serde);
    assert_eq!(decoded, serde);
    assert_eq!(events, by_serde);
    if let Err(e) = &decoded {
        assert!(!e.to_string().is_empty());
    }
    for event in &events {
        if event.method == Method::Other || event.kind == RequestKind::NotPull {
            continue; // no flat spelling (see RequestEvent::to_flat_json)
        }
        let flat = event.to_flat_json();
        let mut again = Vec::new();
        Decoder::new(MAX_LINE)
            .decode(flat.as_bytes(), &mut again)
            .unwrap_or_else(|e| panic!("{flat} does not decode: {e}"));
        assert_eq!(again.as_slice(), std::slice::from_ref(event), "{flat}");
    }

    // Through the pipeline: a bad line is one dead letter, never lost.
    let hasher = IpHasher::new("fuzz-key-fuzz-key").expect("key");
    let enricher = ActionEnricher::new(hasher, EnrichData::default());
    let mut pipeline = Pipeline::new(MAX_LINE, SessionConfig::default(), enricher);
    let mut letters = Letters::default();
    pipeline
        .push_line(line, "fuzz", Position::Line { line: 1 }, &mut letters)
        .expect("the in-memory sink never fails");
    pipeline.finish().expect("finish");
    let stats = pipeline.stats();
    match decoded {
        Ok(()) => assert!(letters.0.is_empty()),
        Err(e) => {
            assert_eq!(letters.0.len(), 1);
            assert_eq!(letters.0[0].0, e.to_string());
            assert_eq!(letters.0[0].1, line);
            assert_eq!(stats.bad, 1);
        }
    }
    assert_eq!(stats.lines, 1);
});
