//! Decode stage alone: lines/s for both encodings, next to the raw limit on
//! the same lines: serde_json parsing each line into `IgnoredAny` (checks
//! the whole syntax, builds nothing).

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pullstats::gen::Format;
use pullstats::pipeline::decode::{Decoder, DEFAULT_MAX_LINE_BYTES};

const LINES: u64 = 100_000;

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(LINES));
    group.sample_size(10);
    for (name, format) in [
        ("flat", Format::Flat),
        ("distribution", Format::Distribution),
    ] {
        let data = common::lines(LINES, format);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut decoder = Decoder::new(DEFAULT_MAX_LINE_BYTES);
                let mut events = Vec::with_capacity(1024);
                for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    decoder.decode(line, &mut events).expect("decodes");
                    events.clear();
                }
            })
        });
        group.bench_function(format!("{name}_bare_parse"), |b| {
            b.iter(|| {
                for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    serde_json::from_slice::<serde::de::IgnoredAny>(line).expect("parses");
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
