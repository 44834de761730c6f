//! The table in an object store: every command against a real S3 server
//! (moto's, from the venv `.ci/test` makes, on a free loopback port), the
//! same results as a local table, the daemon killed mid-stream, and the
//! errors a user meets (no bucket, refused credentials, no endpoint).
//!
//! One server serves every test of the process (a bucket each); it stops
//! when the test process ends (see `s3_server.py`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::helpers::*;
use crate::kafka::harness::*;
use pullstats::table::Location;

mod seaweed;

/// A moto S3 server; stops when `_stdin` closes (this process ends).
struct S3Server {
    port: u16,
    _child: Child,
    _stdin: ChildStdin,
}

fn start_server(auth_after: Option<u32>) -> S3Server {
    let port = free_port();
    let mut cmd = Command::new(venv_python());
    cmd.arg("tests/s3/s3_server.py")
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(n) = auth_after {
        cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
    }
    let mut child = cmd.spawn().expect("start moto");
    let stdin = child.stdin.take().expect("stdin");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("moto output");
    assert_eq!(line.trim(), "ready", "moto did not start");
    S3Server {
        port,
        _child: child,
        _stdin: stdin,
    }
}

/// The storage options of a moto server at `port` (any credentials do).
fn options(port: u16) -> String {
    format!(
        "AWS_ENDPOINT_URL=http://127.0.0.1:{port},AWS_ALLOW_HTTP=true,AWS_REGION=us-east-1,\
         AWS_ACCESS_KEY_ID=testing,AWS_SECRET_ACCESS_KEY=testing"
    )
}

/// The shared server; every `pullstats` command of the tests, and this
/// process's own table reads, get its endpoint.
fn server() -> u16 {
    static SERVER: OnceLock<Mutex<S3Server>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        let server = start_server(None);
        let text = options(server.port);
        STORAGE_OPTIONS.set(text.clone()).expect("set once");
        let parsed: Vec<_> = text
            .split(',')
            .map(|o| pullstats::table::location::parse_storage_option(o).expect("option"))
            .collect();
        pullstats::table::location::set_storage_options(&parsed);
        Mutex::new(server)
    });
    server
        .lock()
        .map(|s| s.port)
        .unwrap_or_else(|e| e.into_inner().port)
}

/// Creates `bucket` on the server at `port` (a plain-HTTP PUT; moto takes
/// it unsigned).
fn create_bucket(port: u16, bucket: &str) {
    let out = Command::new(tool("curl", "curl"))
        .args(["-sS", "-f", "-X", "PUT"])
        .arg(format!("http://127.0.0.1:{port}/{bucket}"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "create bucket {bucket}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new bucket on the shared server and the table URL `s3://BUCKET/pulls`.
fn s3_table(bucket: &str) -> String {
    create_bucket(server(), bucket);
    format!("s3://{bucket}/pulls")
}

/// The URL as the helpers take a table (they pass it to the binary as it is).
fn arg(url: &str) -> &Path {
    Path::new(url)
}

fn delta_reader_rows(table: &str, rows: u64) {
    let options = options(server());
    let env: Vec<(&str, &str)> = options
        .split(',')
        .map(|o| o.split_once('=').expect("k=v"))
        .collect();
    assert_delta_reader_agrees(arg(table), rows, &env);
}

/// What `info --format json` says of each table that does not depend on
/// where or when: kind, version, rows, and files and rows per day.
fn info_summary(table: &Path) -> Vec<serde_json::Value> {
    let out = run_ok(
        pullstats()
            .args(["info", "--format", "json", "--table"])
            .arg(table),
    );
    let infos: serde_json::Value = serde_json::from_str(&out).expect("info json");
    infos
        .as_array()
        .expect("array")
        .iter()
        .map(|i| {
            let days: serde_json::Map<_, _> = i["days"]
                .as_object()
                .expect("days")
                .iter()
                .map(|(d, v)| (d.clone(), serde_json::json!([v["files"], v["rows"]])))
                .collect();
            serde_json::json!({"kind": i["kind"], "version": i["version"], "rows": i["rows"], "last_checkpoint": i["last_checkpoint"], "days": days})
        })
        .collect()
}

#[test]
fn every_command_on_s3_gives_what_it_gives_locally() {
    let dir = test_dir();
    let (input, _) = generate(
        dir.path(),
        "e.jsonl",
        &["--events", "20000", "--seed", "21", "--bad-ratio", "0.005"],
    );
    let local = dir.path().join("pulls");
    let s3 = s3_table("same-results");
    let local_out = ingest(&input, &local);
    let s3_out = ingest(&input, arg(&s3));
    assert_eq!(
        local_out.lines().next(),
        s3_out.lines().next(),
        "the same summary"
    );
    // The bad lines went beside the table, into the bucket.
    assert!(
        s3_out.contains(&format!("{s3}.dead-letter/ingest-")),
        "{s3_out}"
    );

    assert_same_tables(arg(&s3), &local);
    assert_eq!(info_summary(arg(&s3)), info_summary(&local));
    for view in [
        &["--view", "repo-summary", "--week", "2026-W45"][..],
        &["--view", "summary", "--month", "2026-11"],
        &["--view", "raw", "--week", "2026-W45"],
    ] {
        assert_eq!(export(arg(&s3), view), export(&local, view), "{view:?}");
    }
    let rows = sql_count(arg(&s3), "SELECT count(*) FROM pulls");
    delta_reader_rows(&s3, rows);
    // A span of days reads only its days' files from the bucket (one file
    // a day before compaction).
    let plan = run_ok(
        pullstats()
            .args(["sql", "--format", "csv", "--table", &s3])
            .arg("EXPLAIN ANALYZE SELECT namespace, count(*) FROM pulls WHERE action_day BETWEEN '2026-11-03' AND '2026-11-04' GROUP BY 1"),
    );
    assert!(plan.contains("count_files_scanned=2"), "{plan}");

    // Maintenance on the store: the same rows after it.
    let before = sql_rows(arg(&s3), ALL_ROWS);
    run_ok(
        pullstats()
            .args(["compact", "--since", "2026-11-01", "--table"])
            .arg(&s3),
    );
    run_ok(
        pullstats()
            .args(["retain", "--keep", "3650d", "--table"])
            .arg(&s3),
    );
    run_ok(
        pullstats()
            .args(["vacuum", "--dry-run", "--table"])
            .arg(&s3),
    );
    assert_eq!(sql_rows(arg(&s3), ALL_ROWS), before);
    // `compact` filled the periods table in the bucket, as it does beside a
    // local table.
    run_ok(
        pullstats()
            .args(["compact", "--since", "2026-11-01", "--table"])
            .arg(&local),
    );
    let periods = "SELECT granularity, action_day, level, namespace, repository, reference, \
        pull_by_tag, pull_by_digest, version_check, unique_ip_count, cardinality(ip_hashes) \
        FROM periods ORDER BY 1, 2, 3, 4, 5, 6";
    let stored = sql_rows(arg(&s3), periods);
    assert!(stored.len() > 10, "{stored:?}");
    assert_eq!(stored, sql_rows(&local, periods));
    let version = run_ok(
        pullstats()
            .args(["sql", "--format", "csv", "--as-of-version", "1", "--table"])
            .arg(&s3)
            .arg("SELECT count(*) FROM pulls"),
    );
    assert_eq!(version.lines().nth(1), Some(rows.to_string().as_str()));
    // Saved queries read it too.
    let listed = run_ok(pullstats().args(["query", "top-tags", "--table"]).arg(&s3));
    assert!(listed.lines().count() > 2, "{listed}");
}

#[test]
fn a_url_we_cannot_serve_is_an_error_never_a_directory() {
    let dir = test_dir();
    for (table, message) in [
        ("ftp://host/pulls", "unsupported table URL scheme"),
        ("s3://lake", "needs a prefix"),
        ("s3://AKIA:secret@lake/pulls", "credentials do not belong"),
    ] {
        let out = run(pullstats()
            .current_dir(dir.path())
            .args(["sql", "--table", table, "SELECT 1"]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{table}: {stderr}");
        assert!(stderr.contains(message), "{table}: {stderr}");
        assert!(!stderr.contains("secret"), "{stderr}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "nothing was created"
    );
}

/// The last line of a failed command's stderr, checked to be its only
/// error line.
fn one_error_line(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "{cmd:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "nothing but the error: {stderr}");
    errors[0].to_owned()
}

#[test]
fn store_errors_are_one_clear_line() {
    let port = server();
    let dir = test_dir();
    let (input, _) = generate(dir.path(), "e.jsonl", &["--events", "200"]);

    // A bucket that does not exist.
    for cmd in [
        pullstats().args(["sql", "--table", "s3://no-such-bucket/pulls", "SELECT 1"]),
        pullstats()
            .args([
                "ingest",
                "--table",
                "s3://no-such-bucket/pulls",
                "--from-file",
            ])
            .arg(&input),
    ] {
        let line = one_error_line(cmd);
        assert!(line.contains("no-such-bucket"), "{line}");
        assert!(
            line.contains("NoSuchBucket") || line.contains("does not exist"),
            "{line}"
        );
    }

    // Refused credentials: a server that checks them (after the bucket's
    // creation).
    let strict = start_server(Some(1));
    create_bucket(strict.port, "strict");
    let line = one_error_line(
        pullstats()
            .env("PULLSTATS_STORAGE_OPTIONS", options(strict.port))
            .args(["sql", "--table", "s3://strict/pulls", "SELECT 1"]),
    );
    assert!(
        line.contains("InvalidAccessKeyId") || line.contains("403"),
        "{line}"
    );
    assert!(!line.contains("testing"), "no secret in errors: {line}");

    // No endpoint at all (a port nothing listens on), with few retries.
    let closed = free_port();
    let line = one_error_line(
        pullstats()
            .env(
                "PULLSTATS_STORAGE_OPTIONS",
                format!("{},max_retries=1,retry_timeout=5s", options(closed)),
            )
            .args(["sql", "--table", "s3://lake/pulls", "SELECT 1"]),
    );
    assert!(
        line.contains(&format!("127.0.0.1:{closed}")) || line.contains("connect"),
        "{line}"
    );

    // No secret in any log, even at trace level.
    let out = run(pullstats()
        .env("RUST_LOG", "trace")
        .env(
            "PULLSTATS_STORAGE_OPTIONS",
            options(port).replace(
                "AWS_SECRET_ACCESS_KEY=testing",
                "AWS_SECRET_ACCESS_KEY=sekrit-4711",
            ),
        )
        .args(["info", "--table", "s3://no-such-bucket/pulls"]));
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.lines().count() > 5, "trace logs: {logs}");
    assert!(!logs.contains("sekrit-4711"), "a secret in the logs");
}

#[test]
fn daemons_on_s3_killed_and_sharing_one_group_end_exact() {
    let dir = test_dir();
    let broker = Broker::memory(dir.path());
    broker.create_topic_with_dlq("events", 4);
    let (events, _) = generate(
        dir.path(),
        "events.jsonl",
        &["--events", "24000", "--seed", "22", "--bad-ratio", "0.01"],
    );
    let bytes = std::fs::read(&events).expect("events");
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let chunks: Vec<&[&[u8]]> = lines.chunks(lines.len().div_ceil(3)).collect();
    let url = s3_table("daemons");
    let table = Location::parse(&url).expect("url");
    // Each daemon in a working directory of its own, as on its own machine:
    // what they share is the bucket.
    let start = |name: &str, group: &str, extra: &[&str]| {
        let own = dir.path().join(name);
        std::fs::create_dir_all(&own).expect("working directory");
        daemon_at(
            &broker,
            "events",
            group,
            std::ffi::OsStr::new(&url),
            &own.join("daemon.log"),
            Some(&own),
            extra,
        )
    };
    let produce_chunk = |i: usize| {
        let path = dir.path().join(format!("chunk-{i}.jsonl"));
        std::fs::write(&path, chunks[i].concat()).expect("chunk");
        produce(&broker, "events", &path);
    };
    let offsets = || -> i64 {
        table_progress(&table, "events", 4)
            .values()
            .filter_map(|(o, _)| *o)
            .sum()
    };
    // SIGKILL in the middle of the stream, twice; each restart in a fresh
    // group (the table, not the group, says where to resume).
    for i in 0..2 {
        produce_chunk(i);
        let before = offsets();
        let mut d = start(&format!("killed-{i}"), &format!("g-kill-{i}"), &[]);
        wait_until(Duration::from_secs(60), "a commit to S3", || {
            offsets() > before
        });
        std::thread::sleep(Duration::from_millis(300));
        d.kill();
    }
    // Then two daemons in one group (one compacting beside the writers),
    // one killed; a replacement joins as a supervisor would start one
    // (tansu may keep a killed member in the group: README, quirk 5). The
    // pair keeps librdkafka's default session timeout: with the harness's
    // 3 s, tansu rebalances a two-member group every few seconds (quirk 6).
    produce_chunk(2);
    let ends = broker.end_offsets("events", 4, lines.len());
    let session = [
        "-X",
        "session.timeout.ms=10000",
        "-X",
        "heartbeat.interval.ms=1000",
    ];
    let mut a = start("a", "g-pair", &session);
    let b = start(
        "b",
        "g-pair",
        &[
            &session[..],
            &["--auto-compact", "--auto-compact-interval", "2s"],
        ]
        .concat(),
    );
    let before = offsets();
    wait_until(Duration::from_secs(60), "the pair to commit", || {
        offsets() > before
    });
    a.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let all = "pullstats_assigned_partitions 4";
    while std::time::Instant::now() < deadline && !b.metrics().contains(all) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _c = (!b.metrics().contains(all)).then(|| start("c", "g-pair", &session));
    wait_done(&table, "events", &ends, Duration::from_secs(180));
    let reference = reference(dir.path(), &events);
    assert_same_tables(arg(&url), &reference);
    // What the daemons resume from is in the bucket: `info` reads it there.
    let info = run_ok(pullstats().args(["info", "--table", &url]));
    assert!(info.contains("events"), "{info}");
    for name in ["killed-0", "killed-1", "a", "b"] {
        let left: Vec<_> = std::fs::read_dir(dir.path().join(name))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "daemon.log")
            .collect();
        assert!(left.is_empty(), "{name} left {left:?} on its disk");
    }
    delta_reader_rows(&url, sql_count(&reference, "SELECT count(*) FROM pulls"));
}

#[test]
fn the_daemon_waits_for_a_store_that_does_not_answer() {
    let dir = test_dir();
    let log = dir.path().join("daemon.log");
    let closed = free_port();
    let mut child = pullstats()
        .env("RUST_LOG", "info")
        .env(
            "PULLSTATS_STORAGE_OPTIONS",
            format!("{},max_retries=0", options(closed)),
        )
        .args(["ingest", "--brokers", "127.0.0.1:1", "--topic", "events"])
        .args(["--table", "s3://lake/pulls"])
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("daemon");
    let waiting = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("waiting for the store")
            .count()
    };
    wait_until(
        Duration::from_secs(30),
        "the daemon to say it waits",
        || waiting() > 0,
    );
    // It keeps trying (every 5 s) without exiting or repeating itself.
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the daemon exited"
    );
    assert_eq!(waiting(), 1, "said once");
    // And stops on SIGTERM while it waits.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(1),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn serve_direct_mode_into_s3_equals_file_ingest() {
    use crate::serve::*;
    let dir = test_dir();
    let (file, _, bodies) = generated_envelopes(dir.path(), 1_000, 23);
    let tokens = dir.path().join("tokens.toml");
    let secret = token(&tokens, "registry", "receive", &[]);
    let url = s3_table("serve");
    let key = "an-s3-test-signing-key-of-32-characters-at-least";
    let args = ["--idle-close", "10s", "--signing-key", key];
    let mut serve = Serve::start_at(&url, &dir.path().join("serve.log"), &tokens, &args);
    let half = bodies.len() / 2;
    // A body that is not an envelope: dead-lettered into the bucket, beside
    // the table (no local file), before the 202.
    let (status, _) = serve.post(Some(&secret), b"{not an envelope");
    assert_eq!(status, 202);
    let letters = dead_letter_objects(&url);
    assert_eq!(letters.len(), 1, "one object per bad body: {letters:?}");
    let letter: serde_json::Value =
        serde_json::from_str(letters[0].1.trim()).expect("a JSON Lines record");
    assert_eq!(letter["raw"], "{not an envelope");
    assert!(letters[0].0.starts_with("serve-"), "{letters:?}");
    assert!(
        !letter["reason"].as_str().unwrap_or("").is_empty(),
        "{letter}"
    );
    post_all(&serve, &secret, &bodies[..half]);
    // Its session state is in the bucket: a restart resumes from there.
    serve.kill_and_restart();
    post_all(&serve, &secret, &bodies[half..]);
    wait_direct_done(Location::parse(&url).expect("url"));
    assert_eq!(
        get(serve.port, "/readyz").map(|(status, _)| status),
        Some(200)
    );
    serve.terminate_cleanly();
    assert_same(arg(&url), &late_reference(dir.path(), &file));

    // Without a signing key: one clear error.
    let mut cmd = pullstats();
    cmd.args(["serve", "--table", &url, "--tokens"])
        .arg(&tokens)
        .args(["--idle-close", "10s", "--listen", "127.0.0.1:0"]);
    let line = one_error_line(&mut cmd);
    assert!(line.contains("needs --signing-key"), "{line}");
}

/// A table in S3 with the write-ahead log in a local directory (`--wal`):
/// envelopes answered before any commit survive a SIGKILL.
#[test]
fn serve_direct_mode_into_s3_through_a_local_write_ahead_log() {
    use crate::serve::*;
    let dir = test_dir();
    let (file, _, bodies) = generated_envelopes(dir.path(), 1_000, 24);
    let tokens = dir.path().join("tokens.toml");
    let secret = token(&tokens, "registry", "receive", &[]);
    let url = s3_table("serve-wal");
    let wal = dir.path().join("wal").display().to_string();
    let key = "an-s3-test-signing-key-of-32-characters-at-least";
    let log = dir.path().join("serve.log");
    let common = ["--idle-close", "10s", "--signing-key", key, "--wal", &wal];
    let waiting: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--flush-interval", "1h"])
        .collect();
    let mut serve = Serve::start_at(&url, &log, &tokens, &waiting);
    let half = bodies.len() / 2;
    post_all(&serve, &secret, &bodies[..half]);
    let table = Location::parse(&url).expect("url");
    assert!(
        crate::kafka::harness::table_progress(table.clone(), "notifications", 1)
            .get(&0)
            .is_none_or(|(offset, _)| offset.is_none()),
        "answered before any commit"
    );
    serve.kill();
    let mut serve = Serve::start_at(&url, &log, &tokens, &common);
    post_all(&serve, &secret, &bodies[half..]);
    wait_direct_done(table);
    serve.terminate_cleanly();
    assert_same(arg(&url), &late_reference(dir.path(), &file));
}

/// `(name, text)` of each object under `<url>.dead-letter/`.
fn dead_letter_objects(url: &str) -> Vec<(String, String)> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt as _;
    let dir = Location::parse(&format!("{url}.dead-letter")).expect("url");
    runtime().block_on(async {
        let store = pullstats::table::object_store(&dir).expect("store");
        let listed: Vec<_> = store.list(None).try_collect().await.expect("list");
        let mut out = Vec::new();
        for meta in listed {
            let bytes = store
                .get(&meta.location)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("read");
            let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
            out.push((meta.location.to_string(), text));
        }
        out
    })
}
