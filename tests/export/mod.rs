//! The export views, saved queries and spans end to end: hand-computed
//! snapshots, unique IPs across boundaries, partition pruning, formats,
//! trends and breakdowns.

use crate::helpers::*;

/// The hand-computed fixture (`testdata/export-fixture.jsonl`) in a table.
pub fn fixture_table(dir: &std::path::Path) -> std::path::PathBuf {
    let table = dir.join("fixture");
    let input =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/export-fixture.jsonl");
    // Its events are weeks to a year apart, the last alone in 2028: sparse
    // input, none of it refused by --max-future (nothing after an event is
    // made late by it).
    ingest(&input, &table);
    table
}

#[test]
fn exports_match_the_hand_computed_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = fixture_table(dir.path());
    let snapshots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/exports");
    for (file, args) in [
        (
            "week-2026-W45.summary.csv",
            vec!["--week", "2026-W45", "--view", "summary"],
        ),
        (
            "week-2026-W45.repo-summary.csv",
            vec!["--week", "2026-W45", "--view", "repo-summary"],
        ),
        (
            "days-2026-11-01_2026-11-10.namespace-summary.csv",
            vec![
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-10",
                "--view",
                "namespace-summary",
            ],
        ),
        (
            "month-2028-02.raw.csv",
            vec!["--month", "2028-02", "--view", "raw"],
        ),
    ] {
        let want = std::fs::read_to_string(snapshots.join(file)).expect("snapshot");
        assert_eq!(export(&table, &args), want, "{file}");
    }
}

#[test]
fn unique_ips_span_week_boundaries_and_edges_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = fixture_table(dir.path());
    let uniques = |args: &[&str]| -> u64 {
        let out = export(
            &table,
            &[
                &["--view", "namespace-summary", "--namespace", "library"],
                args,
            ]
            .concat(),
        );
        out.lines().nth(1).map_or(0, |l| {
            l.split(',').nth(1).expect("column").parse().expect("count")
        })
    };
    let weekly: u64 = ["2026-W44", "2026-W45", "2026-W46"]
        .iter()
        .map(|w| uniques(&["--week", w]))
        .sum();
    let span = uniques(&["--from", "2026-10-26", "--to", "2026-11-16"]);
    assert_eq!(
        (weekly, span),
        (4, 3),
        "the span counts distinct IPs, not a sum of weeks"
    );
    // Sunday 23:59:59.999 belongs to its week; Monday 00:00 to the next.
    let raw_days = |args: &[&str]| -> Vec<String> {
        export(&table, &[&["--view", "raw"], args].concat())
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).expect("day").to_owned())
            .collect()
    };
    assert_eq!(raw_days(&["--week", "2026-W44"]), ["2026-11-01"]);
    assert_eq!(raw_days(&["--week", "2026-W46"]), ["2026-11-09"]);
    // ISO week 53 of 2026 crosses the year change.
    assert_eq!(
        raw_days(&["--week", "2026-W53"]),
        ["2026-12-31", "2027-01-01"]
    );
    assert_eq!(raw_days(&["--month", "2026-12"]), ["2026-12-31"]);
    let out = run(pullstats()
        .args(["export", "--week", "2025-W53", "--table"])
        .arg(&table));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("week 53 does not exist"));
}

#[test]
fn span_filters_prune_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = fixture_table(dir.path());
    let plan = run_ok(
        pullstats()
            .args(["sql", "--format", "csv", "--table"])
            .arg(&table)
            .arg("EXPLAIN SELECT namespace FROM pulls WHERE action_day >= '2026-11-02' AND action_day < '2026-11-09'"),
    );
    let files: Vec<&str> = plan
        .split("action_day=")
        .skip(1)
        .map(|s| &s[..10])
        .collect();
    assert_eq!(files.len(), 5, "{plan}");
    assert!(
        files
            .iter()
            .all(|d| ("2026-11-02".."2026-11-09").contains(d)),
        "{files:?}"
    );
}

#[test]
fn export_formats_parquet_json_gzip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = fixture_table(dir.path());
    let pq = dir.path().join("raw.parquet");
    let args = [
        "--from",
        "2026-01-01",
        "--to",
        "2029-01-01",
        "--view",
        "raw",
    ];
    run_ok(
        pullstats()
            .arg("export")
            .arg("--table")
            .arg(&table)
            .args(args)
            .args(["--format", "parquet", "--output"])
            .arg(&pq),
    );
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&pq).expect("open"))
            .expect("parquet");
    use parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows(), 10);

    let json = export(
        &table,
        &[
            "--week",
            "2026-W45",
            "--view",
            "repo-summary",
            "--format",
            "json",
        ],
    );
    let first: serde_json::Value =
        serde_json::from_str(json.lines().next().expect("row")).expect("json");
    assert_eq!(first["namespace"], "acme");
    assert_eq!(first["unique_ip_count"], 1);

    let gz = dir.path().join("raw.csv.gz");
    run_ok(
        pullstats()
            .arg("export")
            .arg("--table")
            .arg(&table)
            .args(args)
            .args(["--gzip", "--output"])
            .arg(&gz),
    );
    let mut text = String::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).expect("open"))
        .read_to_string(&mut text)
        .expect("gunzip");
    assert_eq!(text.lines().count(), 11);

    let out = run(pullstats()
        .arg("export")
        .arg("--table")
        .arg(&table)
        .args(["--week", "2026-W45", "--format", "parquet"]));
    assert_eq!(out.status.code(), Some(1), "parquet needs --output");
    let out = run(pullstats().arg("export").arg("--table").arg(&table));
    assert_eq!(out.status.code(), Some(1), "a span is required");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--week"));
    let out = run(pullstats()
        .arg("export")
        .arg("--table")
        .arg(&table)
        .args(["--week", "2026-W45", "--month", "2026-11"]));
    assert_eq!(out.status.code(), Some(2), "one span only");
}

#[test]
fn trends_and_breakdowns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = fixture_table(dir.path());
    let weekly = export(
        &table,
        &[
            "--view",
            "trend",
            "--granularity",
            "week",
            "--last",
            "3m",
            "--until",
            "2026-11-18",
        ],
    );
    assert_eq!(
        weekly,
        "period,namespace,repository,pulls,pull_by_tag,pull_by_digest,version_check,unique_ip_count\n\
         2026-10-26,library,nginx,1,1,0,0,1\n\
         2026-11-02,acme,api,1,1,0,0,1\n\
         2026-11-02,library,nginx,3,2,1,1,2\n\
         2026-11-09,library,nginx,1,1,0,0,1\n"
    );
    let monthly = export(
        &table,
        &[
            "--view",
            "trend",
            "--granularity",
            "month",
            "--last",
            "3m",
            "--until",
            "2027-02-10",
            "--group",
            "namespace",
        ],
    );
    assert_eq!(
        monthly,
        "period,namespace,pulls,pull_by_tag,pull_by_digest,version_check,unique_ip_count\n\
         2026-11-01,acme,1,1,0,0,1\n\
         2026-11-01,library,5,4,1,1,3\n\
         2026-12-01,library,1,1,0,0,1\n\
         2027-01-01,library,1,1,0,0,1\n"
    );
    let by_tool = export(
        &table,
        &[
            "--week",
            "2026-W45",
            "--view",
            "repo-summary",
            "--by",
            "user-agent-tool",
        ],
    );
    assert_eq!(
        by_tool,
        "namespace,repository,user_agent_tool,unique_ip_count,pull_by_tag,pull_by_digest,version_check,owner\n\
         acme,api,containers-image,1,1,0,0,Acme\n\
         library,nginx,containerd,1,1,1,0,\n\
         library,nginx,docker,1,1,0,1,\n"
    );
}

#[test]
fn saved_queries_list_and_run_with_parameters() {
    let list = run_ok(pullstats().args(["query", "--list"]));
    for name in [
        "top-tags",
        "pulls-by-country",
        "cloud-share",
        "client-versions",
        "version-check-ratio",
        "daily-pulls",
    ] {
        assert!(list.contains(name), "{list}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let table = fixture_table(dir.path());
    let top = run_ok(
        pullstats()
            .args([
                "query",
                "top-tags",
                "--format",
                "csv",
                "--param",
                "from=2026-11-02",
                "--param",
                "to=2026-11-09",
                "--table",
            ])
            .arg(&table),
    );
    assert_eq!(
        top,
        "namespace,repository,tag,pulls,unique_ips\nlibrary,nginx,1.27,2,2\nacme,api,v1,1,1\n"
    );
    let daily = run_ok(
        pullstats()
            .args([
                "query",
                "daily-pulls",
                "--format",
                "csv",
                "--param",
                "from=2026-11-01",
                "--param",
                "to=2026-11-03",
                "--table",
            ])
            .arg(&table),
    );
    assert_eq!(
        daily,
        "action_day,pulls,version_checks,unique_ips\n2026-11-01,1,0,1\n2026-11-02,0,1,1\n"
    );
    let out = run(pullstats()
        .args(["query", "top-tags", "--param", "limit=x", "--table"])
        .arg(&table));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("whole number"));
}
