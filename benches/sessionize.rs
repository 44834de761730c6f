//! Sessionize stage alone: 2xx manifest requests/s into actions.

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pullstats::pipeline::sessionize::{SessionConfig, Sessionizer};

fn sessionize(c: &mut Criterion) {
    let events = common::manifest_events(200_000);
    let mut group = c.benchmark_group("sessionize");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    group.bench_function("generated_week", |b| {
        b.iter_batched(
            || events.clone(),
            |events| {
                let mut s = Sessionizer::new(SessionConfig::default());
                let mut out = Vec::with_capacity(events.len());
                for e in events {
                    s.push(e, &mut out);
                }
                s.finish(&mut out);
                out.len()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, sessionize);
criterion_main!(benches);
