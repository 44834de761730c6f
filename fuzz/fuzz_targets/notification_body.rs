//! One HTTP body POSTed to `/notifications`. Holds: every event of an
//! envelope is kept, counted (blob, not a pull) or dead-lettered with a
//! reason; each kept message decodes alone to one manifest request keyed by
//! its client IP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pullstats::event::RequestKind;
use pullstats::pipeline::decode::Decoder;
use pullstats::serve::receive::sort;

fuzz_target!(|body: &[u8]| {
    let mut decoder = Decoder::new(1 << 20);
    let Ok(sorted) = sort(body, &mut decoder) else {
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
            .decode(&kept.message, &mut events)
            .expect("a kept message decodes");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, RequestKind::Manifest);
        assert_eq!(events[0].ip.to_string(), kept.key);
    }
});
