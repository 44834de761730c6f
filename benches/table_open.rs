//! Opening the pulls table after many commits. The daemon commits every
//! `--flush-interval` (30 s): 10,000 commits is about 3.5 days of them. Delta
//! checkpoints every 100 commits keep opening flat: the reader loads the
//! newest checkpoint and at most 99 commit files after it.
//!
//! The table (10,000 commits of 10 actions each, with the daemon's offset
//! transaction on each) is built once and kept under
//! `target/bench-data/`; building it takes a few minutes. Under `cargo test`
//! (criterion's test mode) a 120-commit table (one checkpoint and 20 commits
//! after it) stands in.

mod common;

use std::path::Path;

use arrow::array::RecordBatch;
use criterion::{criterion_group, criterion_main, Criterion};
use deltalake::kernel::Transaction;
use pullstats::gen::Format;
use pullstats::pipeline::dead_letter::{FileDeadLetters, Position};
use pullstats::pipeline::decode::DEFAULT_MAX_LINE_BYTES;
use pullstats::pipeline::enrich::{ActionEnricher, EnrichSources, IpHasher};
use pullstats::pipeline::sessionize::SessionConfig;
use pullstats::pipeline::Pipeline;
use pullstats::table::{self, Location, TableKind, TableWriter};

const ROWS_PER_COMMIT: usize = 10;

/// 10,000 under `cargo bench`; 120 when the bench runs as a test.
fn commits() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        10_000
    } else {
        120
    }
}

/// Real action rows: generated lines through the pipeline.
fn actions(dead_letters: &Path) -> RecordBatch {
    let enricher = ActionEnricher::new(
        IpHasher::new("bench").expect("key"),
        EnrichSources::default().load().expect("no sources"),
    );
    let mut pipeline = Pipeline::new(DEFAULT_MAX_LINE_BYTES, SessionConfig::default(), enricher);
    let mut dead = FileDeadLetters::new(dead_letters, "bench");
    let lines = common::lines(2_000, Format::Flat);
    for (i, line) in lines.split(|&b| b == b'\n').enumerate() {
        if !line.is_empty() {
            let position = Position::Line { line: i as u64 + 1 };
            pipeline
                .push_line(line, "bench", position, &mut dead)
                .expect("push");
        }
    }
    pipeline.close_lane(0).expect("close");
    pipeline.flush_batches().expect("flush");
    let batches = pipeline.take_ready();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

/// The table, built unless a complete one is already there.
async fn table_with_commits(dir: &Path, commits: u64) -> Location {
    let dir_path = dir.join(format!("table-{commits}-commits"));
    let path = Location::Local(dir_path.clone());
    if let Ok(t) = table::open(&path, TableKind::Pulls).await {
        if t.version() == Some(commits) {
            return path;
        }
    }
    let _ = std::fs::remove_dir_all(&dir_path);
    let rows = actions(&dir.join("dead-letters.jsonl"));
    let created = table::open_or_create(&path, TableKind::Pulls)
        .await
        .expect("create");
    let mut writer = TableWriter::new(&path, created).expect("writer");
    for i in 0..commits {
        let start = (i as usize * ROWS_PER_COMMIT) % (rows.num_rows() - ROWS_PER_COMMIT);
        writer
            .write(rows.slice(start, ROWS_PER_COMMIT))
            .await
            .expect("write");
        let offset = Transaction::new(table::offset_app_id("events", 0), i as i64 * 100);
        writer
            .commit(Default::default(), vec![offset])
            .await
            .expect("commit");
    }
    path
}

fn open(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let commits = commits();
    let path = runtime.block_on(table_with_commits(&dir, commits));
    // Checkpoints keep the open flat: the newest is at most 100 commits old.
    let info = runtime
        .block_on(pullstats::table::maintenance::info(
            &path,
            TableKind::Pulls,
            128 << 20,
        ))
        .expect("info");
    let checkpoint = info.last_checkpoint.expect("a checkpoint");
    assert!(
        info.version - checkpoint < 100,
        "version {}, newest checkpoint {checkpoint}",
        info.version
    );
    let mut group = c.benchmark_group("table_open");
    group.sample_size(20);
    group.bench_function(format!("{commits}_commits"), |b| {
        b.iter(|| {
            runtime.block_on(async {
                let t = table::open(&path, TableKind::Pulls).await.expect("open");
                let offset = table::txn_version(&t, table::offset_app_id("events", 0))
                    .await
                    .expect("txn");
                (t.version(), offset)
            })
        })
    });
    group.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
