//! Enrich stage alone: actions/s with cold caches (every IP and user agent
//! looked up for the first time) and warm ones (a steady-state daemon).
//! Uses the bundled cloud-range excerpts and, when `../shared/data/mmdb` is
//! beside the checkout, MaxMind's City and ASN test databases.

mod common;

use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pullstats::pipeline::enrich::{ActionEnricher, EnrichSources, IpHasher};
use pullstats::pipeline::sessionize::{SessionConfig, Sessionizer};

fn enrich(c: &mut Criterion) {
    let mut sessionizer = Sessionizer::new(SessionConfig::default());
    let mut actions = Vec::new();
    for e in common::manifest_events(200_000) {
        sessionizer.push(e, &mut actions);
    }
    sessionizer.finish(&mut actions);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mmdb = root.join("../shared/data/mmdb");
    let geoip: Vec<_> = ["GeoIP2-City-Test.mmdb", "GeoLite2-ASN-Test.mmdb"]
        .iter()
        .map(|n| mmdb.join(n))
        .filter(|p| p.is_file())
        .collect();
    let sources = EnrichSources {
        geoip,
        cloud_ranges: Some(root.join("testdata/cloud-ranges")),
    };
    let hasher = IpHasher::new("bench").expect("key");
    let enricher = || ActionEnricher::new(hasher.clone(), sources.load().expect("load"));

    let mut group = c.benchmark_group("enrich");
    group.throughput(Throughput::Elements(actions.len() as u64));
    group.sample_size(10);
    group.bench_function("cold_cache", |b| {
        b.iter_batched(
            || (enricher(), actions.clone()),
            |(mut e, actions)| {
                actions
                    .into_iter()
                    .map(|a| e.enrich(a).ip_hash)
                    .fold(0i64, i64::wrapping_add)
            },
            BatchSize::LargeInput,
        )
    });
    let mut warm = enricher();
    for a in actions.iter().cloned() {
        warm.enrich(a);
    }
    group.bench_function("warm_cache", |b| {
        b.iter_batched(
            || actions.clone(),
            |actions| {
                actions
                    .into_iter()
                    .map(|a| warm.enrich(a).ip_hash)
                    .fold(0i64, i64::wrapping_add)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, enrich);
criterion_main!(benches);
