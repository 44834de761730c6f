//! Decode stage alone: lines/s for both encodings, next to the raw limit on
//! the same lines: serde_json parsing each line into `IgnoredAny` (checks
//! the whole syntax, builds nothing).

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pullstats::gen::Format;
use pullstats::pipeline::decode::{Decoder, DEFAULT_MAX_LINE_BYTES};
use pullstats::serve::receive;

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

/// `serve`'s first step on a body of 50 events (as a registry batches
/// them): split and decode (`receive::sort`), next to the same events split
/// by serde into raw values and each decoded on its own (how `sort` read a
/// body before its one-pass scan, and still does when the scan declines).
fn notification_body(c: &mut Criterion) {
    const PER: usize = 50;
    let data = common::lines(LINES, Format::Distribution);
    let events: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| &l[br#"{"events":["#.len()..l.len() - b"]}".len()])
        .collect();
    let bodies: Vec<Vec<u8>> = events
        .chunks(PER)
        .map(|c| [&br#"{"events":["#[..], &c.join(&b',')[..], b"]}"].concat())
        .collect();
    let mut group = c.benchmark_group("notification_body");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    group.bench_function("sort", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new(DEFAULT_MAX_LINE_BYTES);
            for body in &bodies {
                receive::sort(body, &mut decoder).expect("an envelope");
            }
        })
    });
    group.bench_function("serde_split_then_each_event", |b| {
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            events: Vec<&'a serde_json::value::RawValue>,
        }
        b.iter(|| {
            let mut decoder = Decoder::new(DEFAULT_MAX_LINE_BYTES);
            for body in &bodies {
                let envelope: Envelope<'_> = serde_json::from_slice(body).expect("an envelope");
                for raw in envelope.events {
                    decoder.decode_event(raw.get()).expect("decodes");
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decode, notification_body);
criterion_main!(benches);
