//! Table maintenance end to end: compaction beside a concurrent writer,
//! retention, vacuum and time travel, and `info`.

use std::path::{Path, PathBuf};

use crate::helpers::*;

/// A "today" after every generated day: all of them are closed.
const TODAY: &str = "2030-01-01";

/// Splits the lines of `input` into `n` files of consecutive lines.
fn split(input: &Path, dir: &Path, n: usize) -> Vec<PathBuf> {
    // Bad lines may be invalid UTF-8: bytes, not strings.
    let data = std::fs::read(input).expect("read");
    let lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
    lines
        .chunks(lines.len().div_ceil(n))
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.join(format!("chunk-{i:03}.jsonl"));
            std::fs::write(&path, chunk.concat()).expect("write");
            path
        })
        .collect()
}

/// `pullstats info --format json` of the pulls table (first) and the
/// rejected table.
pub fn info(table: &Path) -> serde_json::Value {
    let out = run_ok(
        pullstats()
            .args(["info", "--format", "json", "--table"])
            .arg(table),
    );
    serde_json::from_str(&out).expect("info json")
}

/// Data files of the pulls and rejected tables (the periods table, which
/// `compact` also fills, is checked on its own).
fn file_count(table: &Path) -> u64 {
    let info = info(table);
    info.as_array()
        .expect("tables")
        .iter()
        .filter(|t| t["kind"] != "periods")
        .map(|t| t["files"].as_u64().expect("files"))
        .sum()
}

fn compact(table: &Path) -> String {
    run_ok(
        pullstats()
            .args(["compact", "--today", TODAY, "--table"])
            .arg(table),
    )
}

/// Every export view over the generated span; raw rows as a sorted
/// multiset (rows with equal timestamps have no defined order).
fn exports(table: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for view in ["summary", "repo-summary", "namespace-summary"] {
        out.push(export(table, &["--view", view, "--month", "2026-11"]));
        out.push(export(table, &["--view", view, "--week", "2026-W45"]));
    }
    let raw = export(table, &["--view", "raw", "--week", "2026-W45"]);
    let mut lines: Vec<&str> = raw.lines().collect();
    lines.sort_unstable();
    out.push(lines.join("\n"));
    out
}

#[test]
fn compaction_beside_a_writer_changes_no_row_and_no_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, _) = generate(
        dir.path(),
        "events.jsonl",
        &[
            "--events",
            "20000",
            "--seed",
            "21",
            "--days",
            "5",
            "--bad-ratio",
            "0.01",
        ],
    );
    let chunks = split(&events, dir.path(), 40);
    let (table, reference) = (dir.path().join("pulls"), dir.path().join("reference"));
    for chunk in &chunks {
        ingest(chunk, &reference);
    }
    for chunk in &chunks[..28] {
        ingest(chunk, &table);
    }
    let before = file_count(&table);
    let small = info(&table)[0]["small_files"].as_u64();
    assert!(
        small.is_some_and(|n| n > 0),
        "small files to compact: {small:?}"
    );
    // Another writer appends (to the days being compacted) meanwhile.
    let writer = {
        let (table, rest) = (table.clone(), chunks[28..].to_vec());
        std::thread::spawn(move || {
            for chunk in &rest {
                ingest(chunk, &table);
            }
        })
    };
    let out = compact(&table);
    writer.join().expect("the concurrent writer");
    assert!(out.contains("2026-11-02 "), "days compacted:\n{out}");
    // The appended files are small too: a second run takes them.
    compact(&table);
    // Every day of both tables fits in one file of the target size.
    let after = file_count(&table);
    assert_eq!(after, 2 * 5, "one file per day and table");
    assert!(
        after * 4 <= before,
        "far fewer files: {before} before, {after} after"
    );
    assert_same_tables(&table, &reference);
    assert_eq!(exports(&table), exports(&reference));
    assert!(
        compact(&table).contains("nothing to compact"),
        "compaction is idempotent"
    );
    // One small file per day is as compact as a day of this size gets: none
    // is left to compact.
    let pulls = &info(&table)[0];
    assert_eq!(pulls["files"], 5);
    assert_eq!(pulls["small_files"], 0);
    assert_eq!(pulls["last_operation"], "OPTIMIZE");
    // Compaction commits once per day, then checkpoints, so the next open
    // replays none of those commits.
    assert_eq!(pulls["last_checkpoint"], pulls["version"]);
    // Log entries are kept as long as vacuum keeps files, set by the table.
    assert_eq!(pulls["log_retention_hours"], 7 * 24);
    assert_eq!(pulls["log_retention_set"], true);

    // Compacted days are in the raw view's order, and a raw export cut into
    // small slices of time (about 1,700 actions a day, slices of 100) gives
    // the same rows, sorted by time.
    let raw = export(&table, &["--view", "raw", "--week", "2026-W45"]);
    let sliced = export(
        &table,
        &[
            "--view",
            "raw",
            "--week",
            "2026-W45",
            "--raw-slice-rows",
            "100",
        ],
    );
    let (mut a, mut b): (Vec<&str>, Vec<&str>) = (raw.lines().collect(), sliced.lines().collect());
    assert!(a.len() > 5_000, "{} rows", a.len());
    let time = b[0]
        .split(',')
        .position(|c| c == "timestamp")
        .expect("timestamp column");
    let times: Vec<&str> = b[1..]
        .iter()
        .map(|l| l.split(',').nth(time).unwrap_or(""))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "sliced raw export sorted by time"
    );
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "sliced and whole-day raw exports hold the same rows");
}

/// Per day: the number of actions.
fn per_day(table: &Path) -> Vec<Vec<String>> {
    sql_rows(
        table,
        "SELECT action_day, count(*) AS n FROM pulls GROUP BY 1 ORDER BY 1",
    )
}

/// Parquet files under the partitions of days before `day`, both tables.
fn files_before_day(table: &Path, day: &str) -> usize {
    let rejected = table.with_file_name("pulls.rejected");
    [table.to_owned(), rejected]
        .iter()
        .flat_map(|t| std::fs::read_dir(t).into_iter().flatten().flatten())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("action_day=").is_some_and(|d| d < day)
        })
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".parquet"))
        .count()
}

#[test]
fn retention_removes_old_days_and_vacuum_their_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, _) = generate(
        dir.path(),
        "events.jsonl",
        &[
            "--events",
            "20000",
            "--seed",
            "22",
            "--start",
            "2026-08-01",
            "--days",
            "61",
            "--bad-ratio",
            "0.01",
        ],
    );
    let table = dir.path().join("pulls");
    ingest(&events, &table);
    let before = per_day(&table);
    let total = sql_count(&table, "SELECT count(*) FROM pulls");
    let version_before = info(&table)[0]["version"].as_u64().expect("version");
    let retain = |extra: &[&str]| {
        run_ok(
            pullstats()
                .args(["retain", "--keep", "1m", "--today", "2026-10-01", "--table"])
                .arg(&table)
                .args(extra),
        )
    };

    let dry = retain(&["--dry-run"]);
    assert!(
        dry.contains("would remove 2026-08-01 .. 2026-08-31 (31 days"),
        "{dry}"
    );
    assert_eq!(per_day(&table), before, "a dry run changes nothing");
    retain(&[]);
    let kept: Vec<Vec<String>> = before
        .iter()
        .filter(|row| row[0].as_str() >= "2026-09-01" || row[0] == "action_day")
        .cloned()
        .collect();
    assert_eq!(kept.len(), 31, "header + September");
    assert_eq!(per_day(&table), kept, "exactly the old days went");
    let rejected_min = sql_rows(&table, "SELECT min(action_day) FROM rejected");
    assert!(
        rejected_min[1][0].as_str() >= "2026-09-01",
        "{rejected_min:?}"
    );

    // Until vacuum, time travel still reads the removed days.
    let at_version = |sql: &str| {
        run(pullstats()
            .args(["sql", "--format", "csv", "--as-of-version"])
            .arg(version_before.to_string())
            .arg("--table")
            .arg(&table)
            .arg(sql))
    };
    let old = at_version("SELECT count(*) AS n FROM pulls");
    assert!(old.status.success());
    assert_eq!(
        String::from_utf8_lossy(&old.stdout).lines().nth(1),
        Some(total.to_string().as_str())
    );

    let vacuum = |extra: &[&str]| {
        run(pullstats()
            .args(["vacuum", "--retention", "0s", "--table"])
            .arg(&table)
            .args(extra))
    };
    let refused = vacuum(&[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let old_files = files_before_day(&table, "2026-09-01");
    assert!(old_files >= 31, "{old_files} files of August on disk");
    let listed = String::from_utf8(vacuum(&["--force", "--dry-run"]).stdout).expect("utf-8");
    let counts = |out: &str, verb: &str| -> usize {
        out.lines()
            .filter_map(|l| l.split_once(verb))
            .map(|(_, rest)| {
                rest.trim()
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .expect("a count")
            })
            .sum()
    };
    assert_eq!(counts(&listed, "would delete"), old_files, "{listed}");
    assert_eq!(
        files_before_day(&table, "2026-09-01"),
        old_files,
        "a dry run deletes nothing"
    );
    let done = vacuum(&["--force"]);
    assert!(done.status.success());
    assert_eq!(
        counts(&String::from_utf8_lossy(&done.stdout), "deleted"),
        old_files
    );
    assert_eq!(files_before_day(&table, "2026-09-01"), 0);
    assert_eq!(per_day(&table), kept, "the current version is intact");

    let gone = at_version("SELECT count(*) AS n FROM pulls");
    assert_eq!(gone.status.code(), Some(1));
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(
        err.contains(&format!("version {version_before} of"))
            && err.contains("can no longer be read")
            && err.contains("vacuum"),
        "{err}"
    );
    let future = run(pullstats()
        .args(["sql", "--as-of-version", "999", "--table"])
        .arg(&table)
        .arg("SELECT 1"));
    assert!(String::from_utf8_lossy(&future.stderr).contains("there is no version 999"));
}

/// The summary export's rows of `args` (a week or month, a view), without
/// its owner column, sorted.
fn export_rows(table: &Path, args: &[&str]) -> Vec<String> {
    let csv = export(table, args);
    let mut rows: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| {
            l.rsplit_once(',')
                .map_or(l, |(counts, _owner)| counts)
                .to_owned()
        })
        .collect();
    rows.sort_unstable();
    rows
}

/// The periods table's rows of one level of the period starting `day`, in
/// the columns of the export view of that level, sorted.
fn stored_rows(table: &Path, granularity: &str, day: &str, level: &str) -> Vec<String> {
    let keys = match level {
        "namespace" => "namespace",
        "repository" => "namespace, repository",
        _ => "namespace, repository, reference",
    };
    let sql = format!(
        "SELECT {keys}, unique_ip_count, pull_by_tag, pull_by_digest, version_check \
         FROM periods WHERE granularity = '{granularity}' AND action_day = '{day}' \
           AND level = '{level}'"
    );
    let mut rows: Vec<String> = sql_rows(table, &sql)
        .into_iter()
        .skip(1)
        .map(|r| r.join(","))
        .collect();
    rows.sort_unstable();
    rows
}

/// Every level of every stored period equals `pullstats export` of it, and
/// the repositories' IP sets hold what their counts say, their union what
/// the namespace's count says.
fn assert_periods_equal_exports(table: &Path, periods: &[(&str, &str, &str)]) {
    for (granularity, day, span) in periods {
        let flag = if *granularity == "week" {
            "--week"
        } else {
            "--month"
        };
        for (level, view) in [
            ("reference", "summary"),
            ("repository", "repo-summary"),
            ("namespace", "namespace-summary"),
        ] {
            let want = export_rows(table, &[flag, span, "--view", view, "--no-periods"]);
            assert!(!want.is_empty(), "{span} has data");
            assert_eq!(
                stored_rows(table, granularity, day, level),
                want,
                "{span} {level}"
            );
        }
    }
    let last = periods.last().expect("periods").2;
    let flag = if periods.last().expect("periods").0 == "week" {
        "--week"
    } else {
        "--month"
    };
    for view in ["summary", "repo-summary", "namespace-summary"] {
        for format in ["csv", "json"] {
            let args = [flag, last, "--view", view, "--format", format];
            assert_reads_periods(table, &args, true);
        }
    }
    // The weeks of 2026-08-24 .. 11-22: the stored ones read, the empty ones scanned.
    for group in ["repository", "namespace"] {
        let args = [
            "--view",
            "trend",
            "--granularity",
            "week",
            "--group",
            group,
            "--last",
            "3m",
            "--until",
            "2026-11-25",
        ];
        assert_reads_periods(table, &args, true);
    }
    let wrong_sets = sql_count(
        table,
        "SELECT count(*) FROM periods WHERE level = 'repository' \
           AND unique_ip_count <> cardinality(ip_hashes)",
    );
    assert_eq!(wrong_sets, 0, "repository sets hold their unique IPs");
    let unions = sql_rows(
        table,
        "SELECT n.action_day, n.granularity, n.namespace, n.unique_ip_count, u.ips \
         FROM periods n JOIN ( \
           SELECT action_day, granularity, namespace, count(DISTINCT ip) AS ips FROM ( \
             SELECT action_day, granularity, namespace, unnest(ip_hashes) AS ip \
             FROM periods WHERE level = 'repository') \
           GROUP BY 1, 2, 3) u \
         USING (action_day, granularity, namespace) WHERE n.level = 'namespace'",
    );
    assert!(unions.len() > 1, "namespace rows: {unions:?}");
    for r in &unions[1..] {
        assert_eq!(
            r[3], r[4],
            "a namespace's unique IPs are its repositories' union: {r:?}"
        );
    }
}

/// `export ARGS` gives the bytes of `export ARGS --no-periods` (a scan of
/// the pulls table), and reads the periods table if and only if `stored`.
fn assert_reads_periods(table: &Path, args: &[&str], stored: bool) {
    let traced = run(pullstats()
        .env("RUST_LOG", "pullstats::query::export=debug")
        .arg("export")
        .arg("--table")
        .arg(table)
        .args(args));
    assert!(traced.status.success(), "{traced:?}");
    let log = String::from_utf8_lossy(&traced.stderr);
    assert_eq!(log.contains("FROM periods"), stored, "{args:?}: {log}");
    let scan = export(table, &[args, &["--no-periods"]].concat());
    assert!(scan.lines().count() > 1, "{args:?} has rows");
    assert_eq!(String::from_utf8_lossy(&traced.stdout), scan, "{args:?}");
}

#[test]
fn compact_keeps_the_periods_table_equal_to_a_scan_even_after_late_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, _) = generate(
        dir.path(),
        "events.jsonl",
        &[
            "--events",
            "6000",
            "--seed",
            "5",
            "--start",
            "2026-11-02",
            "--days",
            "20",
        ],
    );
    let table = dir.path().join("pulls");
    ingest(&events, &table);
    // Three whole weeks (2026-11-02 .. 11-22) and the month of November.
    let periods = [
        ("week", "2026-11-02", "2026-W45"),
        ("week", "2026-11-09", "2026-W46"),
        ("week", "2026-11-16", "2026-W47"),
        ("month", "2026-11-01", "2026-11"),
    ];
    // A periods table of an older schema (as an older pullstats wrote it):
    // readers do without it, and the first compact replaces it.
    let old = dir.path().join("pulls.periods/_delta_log");
    std::fs::create_dir_all(&old).expect("old periods table");
    let schema = r#"{\"type\":\"struct\",\"fields\":[{\"name\":\"action_day\",\"type\":\"string\",\"nullable\":false,\"metadata\":{}}]}"#;
    std::fs::write(
        old.join("00000000000000000000.json"),
        format!(
            "{{\"protocol\":{{\"minReaderVersion\":1,\"minWriterVersion\":2}}}}\n\
             {{\"metaData\":{{\"id\":\"0b0b0b0b-0000-4000-8000-000000000000\",\
             \"format\":{{\"provider\":\"parquet\",\"options\":{{}}}},\
             \"schemaString\":\"{schema}\",\"partitionColumns\":[\"action_day\"],\
             \"configuration\":{{}},\"createdTime\":1700000000000}}}}\n"
        ),
    )
    .expect("old periods log");
    assert!(sql_count(&table, "SELECT count(*) FROM pulls") > 0);
    assert_reads_periods(&table, &["--month", "2026-11"], false);
    let out = compact(&table);
    assert!(
        out.contains("4 complete periods, 4 first days computed again"),
        "{out}"
    );
    assert_periods_equal_exports(&table, &periods);
    assert!(
        compact(&table).contains("4 complete periods, 0 first days computed again"),
        "nothing is computed twice"
    );

    // A late pull in week 45 (by an IP the generator never uses): that
    // week and its month are computed again, and still equal a scan.
    let late = dir.path().join("late.jsonl");
    std::fs::write(
        &late,
        r#"{"timestamp":"2026-11-04T10:00:00Z","method":"GET","repository":"library/nginx","reference":"1.27","digest":"sha256:d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1","status":200,"remote_addr":"203.0.113.250","user_agent":"containerd/1.7.22"}
"#,
    )
    .expect("late event");
    ingest(&late, &table);
    // Until the periods are computed again, exports of them scan.
    assert_reads_periods(&table, &["--week", "2026-W45"], false);
    assert_reads_periods(&table, &["--month", "2026-11"], false);
    assert_reads_periods(&table, &["--week", "2026-W46"], true);
    let out = compact(&table);
    assert!(out.contains("periods from 2026-11-01 computed"), "{out}");
    assert!(out.contains("periods from 2026-11-02 computed"), "{out}");
    assert!(out.contains("2 first days computed again"), "{out}");
    assert_periods_equal_exports(&table, &periods);
}

#[test]
fn maintenance_reports_into_a_closed_pipe_fail_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = generated_table(dir.path(), "2000");
    for args in [
        &["info", "--format", "json"][..],
        &["info"],
        &["vacuum", "--dry-run", "--retention", "0h", "--force"],
        // The work goes on: the periods table is made.
        &["compact", "--today", TODAY],
        &["retain", "--keep", "1y", "--today", TODAY, "--dry-run"],
    ] {
        // A reader gone before the first write: every write fails.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = run(pullstats()
            .args(args)
            .arg("--table")
            .arg(&table)
            .stdout(writer));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            "error: cannot write to stdout: Broken pipe (os error 32)",
            "{args:?}"
        );
    }
    let kinds: Vec<String> = info(&table)
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t["kind"].as_str().expect("kind").to_owned())
        .collect();
    assert!(kinds.contains(&"periods".to_owned()), "{kinds:?}");
}
