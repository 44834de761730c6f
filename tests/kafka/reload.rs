//! Enrichment data replaced under a running daemon: later actions use the
//! new data, earlier ones keep the old, nothing is lost or doubled; a
//! corrupt replacement is refused and ingest goes on with the old data.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::harness::*;
use crate::helpers::*;

const EVENTS: usize = 3_000;

/// Per action kind: actions and requests, as `(action, count, requests)`.
const BY_ACTION: &str =
    "SELECT action, count(*), sum(requests) FROM pulls {where} GROUP BY 1 ORDER BY 1";

fn by_action(table: &Path, filter: &str) -> Vec<Vec<String>> {
    sql_rows(table, &BY_ACTION.replace("{where}", filter))
}

/// A day of events starting at `start`, as the file ingest counts them.
fn batch(
    dir: &Path,
    name: &str,
    seed: &str,
    start: &str,
) -> (std::path::PathBuf, Vec<Vec<String>>) {
    let (events, _) = generate(
        dir,
        &format!("{name}.jsonl"),
        &[
            "--events",
            &EVENTS.to_string(),
            "--seed",
            seed,
            "--start",
            start,
            "--days",
            "1",
        ],
    );
    let reference = dir.join(format!("{name}-reference"));
    ingest(&events, &reference);
    (events, by_action(&reference, ""))
}

/// Writes a new database the way geoipupdate does: a temporary name, then
/// a rename over the file in use.
fn replace(path: &Path, write: impl FnOnce(&Path)) {
    let tmp = path.with_extension("mmdb.tmp");
    write(&tmp);
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// A daemon with a country database placing everything in DE, which has
/// ingested a first day of events (every session closed and committed).
struct Running {
    _dir: tempfile::TempDir,
    broker: Broker,
    daemon: Daemon,
    table: PathBuf,
    geo: PathBuf,
    dir: PathBuf,
    want_first: Vec<Vec<String>>,
}

fn running(group: &str, reload_interval: &str, seed: &str) -> Running {
    let dir = test_dir();
    let broker = Broker::memory(dir.path());
    broker.create_topic_with_dlq("events", 2);
    let geo = dir.path().join("country.mmdb");
    country_mmdb(&geo, "DE");
    let table = dir.path().join("pulls");
    let geo_arg = geo.to_str().expect("utf-8 path");
    let daemon = daemon(
        &broker,
        "events",
        group,
        &table,
        &["--geoip", geo_arg, "--reload-interval", reload_interval],
    );
    let (first, want_first) = batch(dir.path(), "first", seed, "2026-11-02");
    produce(&broker, "events", &first);
    let ends = broker.end_offsets("events", 2, EVENTS);
    wait_done(&table, "events", &ends, Duration::from_secs(120));
    Running {
        dir: dir.path().to_owned(),
        _dir: dir,
        broker,
        daemon,
        table,
        geo,
        want_first,
    }
}

impl Running {
    /// A second day of events, produced and ingested; its reference counts.
    fn second_batch(&self, seed: &str) -> Vec<Vec<String>> {
        let (second, want) = batch(&self.dir, "second", seed, "2026-11-04");
        produce(&self.broker, "events", &second);
        let ends = self.broker.end_offsets("events", 2, 2 * EVENTS);
        wait_done(&self.table, "events", &ends, Duration::from_secs(120));
        want
    }
}

#[test]
fn a_replaced_country_database_applies_to_later_actions_only() {
    // Interval 0: only SIGHUP triggers the check.
    let mut r = running("g-reload", "0", "21");
    replace(&r.geo, |p| country_mmdb(p, "FR"));
    r.daemon.hangup();
    wait_until(Duration::from_secs(30), "the reload", || {
        counter(&r.daemon.metrics(), "pullstats_enrichment_reloads_total") == Some(1)
    });
    let want_second = r.second_batch("22");
    let metrics = r.daemon.metrics();
    assert_eq!(
        counter(&metrics, "pullstats_enrichment_reload_failures_total"),
        Some(0)
    );
    r.daemon.terminate_cleanly();

    let t = &r.table;
    assert!(
        r.want_first.len() >= 4 && want_second.len() >= 4,
        "a header and every kind of action"
    );
    assert_eq!(
        by_action(t, "WHERE country = 'DE'"),
        r.want_first,
        "before the reload: old data"
    );
    assert_eq!(
        by_action(t, "WHERE country = 'FR'"),
        want_second,
        "after: new data"
    );
    assert_eq!(
        sql_count(
            t,
            "SELECT count(*) FROM pulls WHERE country IS NULL OR country NOT IN ('DE', 'FR')"
        ),
        0,
        "no action lost its country or was decided in between"
    );
}

#[test]
fn a_corrupt_replacement_keeps_the_data_in_use() {
    let mut r = running("g-corrupt", "200ms", "31");
    // A database cut off mid-copy: the first half of a valid one.
    replace(&r.geo, |p| {
        country_mmdb(p, "FR");
        let bytes = std::fs::read(p).expect("read");
        std::fs::write(p, &bytes[..bytes.len() / 2]).expect("truncate");
    });
    wait_until(Duration::from_secs(30), "the failed reload", || {
        counter(
            &r.daemon.metrics(),
            "pullstats_enrichment_reload_failures_total",
        ) == Some(1)
    });
    let want_second = r.second_batch("32");
    let metrics = r.daemon.metrics();
    assert_eq!(
        counter(&metrics, "pullstats_enrichment_reload_failures_total"),
        Some(1),
        "one failure for one bad file, however many checks saw it: {metrics}"
    );
    assert_eq!(
        counter(&metrics, "pullstats_enrichment_reloads_total"),
        Some(0)
    );
    r.daemon.terminate_cleanly();

    let t = &r.table;
    assert_eq!(
        by_action(t, "WHERE action_day = '2026-11-02' AND country = 'DE'"),
        r.want_first
    );
    assert_eq!(
        by_action(t, "WHERE action_day = '2026-11-04' AND country = 'DE'"),
        want_second
    );
    assert_eq!(
        sql_count(
            t,
            "SELECT count(*) FROM pulls WHERE country IS DISTINCT FROM 'DE'"
        ),
        0
    );
}
