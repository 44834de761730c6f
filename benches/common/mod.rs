//! Shared bench data: generated with `pullstats gen`'s library API, so every
//! bench measures the same realistic traffic.

#![allow(dead_code)]

use pullstats::event::RequestEvent;
use pullstats::gen::{generate, Format, GenConfig};
use pullstats::pipeline::decode::{Decoder, DEFAULT_MAX_LINE_BYTES};

/// `n` generated lines in `format` (no bad lines), as one buffer.
pub fn lines(n: u64, format: Format) -> Vec<u8> {
    let cfg = GenConfig {
        events: n,
        seed: 2026,
        start: chrono::NaiveDate::from_ymd_opt(2026, 11, 2).expect("date"),
        days: 7,
        format,
        bad_ratio: 0.0,
    };
    let mut out = Vec::new();
    generate(cfg, &mut out).expect("generate");
    out
}

/// The decoded 2xx manifest requests of `n` generated lines.
pub fn manifest_events(n: u64) -> Vec<RequestEvent> {
    let data = lines(n, Format::Flat);
    let mut decoder = Decoder::new(DEFAULT_MAX_LINE_BYTES);
    let mut events = Vec::new();
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        decoder
            .decode(line, &mut events)
            .expect("generated lines decode");
    }
    events.retain(RequestEvent::forms_action);
    events
}
