//! `pullstats serve` as a registry's notification endpoint, in both modes:
//! envelopes POSTed over HTTP must give the same table as `ingest
//! --from-file` of the same events, a resent envelope counts once, and
//! a kill at any moment loses nothing. `registry` drives the real CNCF
//! registry against it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod api;
mod attack;
mod registry;
mod web;

use crate::helpers::*;
use crate::kafka::harness::*;
use pullstats::gen::GenStats;
use pullstats::table::TableKind;

/// Direct mode's stream name in the table's application ids.
const DIRECT: &str = "notifications";
/// A resent event is recognised while it is within twice the lateness
/// bound of the newest event (README, "Resent notifications"). Generated
/// traffic packs a day into seconds, so a resent envelope of 20 events
/// spans minutes of event time: these tests widen the bound (for serve,
/// the daemon and the reference alike).
const LATENESS: [&str; 2] = ["--max-lateness", "1h"];

/// A running `pullstats serve`, killed on drop.
pub struct Serve {
    child: Child,
    pub port: u16,
    args: Vec<String>,
    log: PathBuf,
}

impl Serve {
    /// Starts `serve` with `--table table --tokens tokens` and `extra`, and
    /// waits until it answers `/healthz`. Sessions close after 1 s without
    /// a notification unless `extra` says `--idle-close`, and the lateness
    /// bound is the tests' hour unless it says `--max-lateness`.
    pub fn start(table: &Path, tokens: &Path, extra: &[&str]) -> Self {
        Self::start_at(
            &table.display().to_string(),
            &table.with_extension("serve.log"),
            tokens,
            extra,
        )
    }

    /// [`Self::start`] with the table at `table` (a path or a URL),
    /// logging to `log`.
    pub fn start_at(table: &str, log: &Path, tokens: &Path, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--table".into(),
            table.to_owned(),
            "--tokens".into(),
            tokens.display().to_string(),
        ];
        if !extra.contains(&LATENESS[0]) {
            args.extend(LATENESS.map(String::from));
        }
        if !extra.contains(&"--flush-interval") {
            args.extend(["--flush-interval".into(), "200ms".into()]);
        }
        if !extra.contains(&"--idle-close") {
            args.extend(["--idle-close".into(), "1s".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = log.to_owned();
        let port = free_port();
        let s = Self {
            child: spawn(&args, &log, port),
            port,
            args,
            log,
        };
        s.wait_healthy();
        s
    }

    /// The server's process id (for its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_healthy(&self) {
        wait_until(Duration::from_secs(60), "serve to answer /healthz", || {
            get(self.port, "/healthz").is_some_and(|(status, _)| status == 200)
        });
    }

    /// SIGKILL, then the same command again on the same port.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    pub fn restart(&mut self) {
        self.child = spawn(&self.args, &self.log, self.port);
        self.wait_healthy();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; serve must exit 0 within 30 s.
    pub fn terminate_cleanly(&mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "exit 0 after SIGTERM, got {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn post(&self, token: Option<&str>, body: &[u8]) -> (u16, String) {
        post(self.port, token, body).expect("serve answers")
    }

    pub fn metrics(&self) -> String {
        get(self.port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(args: &[String], log: &Path, port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("serve log");
    let mut cmd = pullstats();
    cmd.env("RUST_LOG", "warn,pullstats=debug").args(args);
    cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
    cmd.stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start serve")
}

/// One HTTP/1.1 exchange on its own connection; None when nothing listens.
fn exchange(port: u16, head: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let request = format!(
        "{head}Host: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(request.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    Some((status, body.unwrap_or_default()))
}

pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    exchange(port, &format!("GET {path} HTTP/1.1\r\n"), b"")
}

pub fn post(port: u16, token: Option<&str>, body: &[u8]) -> Option<(u16, String)> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /notifications HTTP/1.1\r\n{auth}\
         Content-Type: application/vnd.docker.distribution.events.v1+json\r\n"
    );
    exchange(port, &head, body)
}

/// A new token of `role` in `tokens`; returns its secret.
pub fn token(tokens: &Path, name: &str, role: &str, namespaces: &[&str]) -> String {
    let mut cmd = pullstats();
    cmd.args(["token", "create", "--tokens"])
        .arg(tokens)
        .args(["--name", name, "--role", role]);
    for ns in namespaces {
        cmd.args(["--namespace", ns]);
    }
    let secret = run_ok(&mut cmd).trim().to_owned();
    assert!(secret.len() >= 32, "a long random secret: {secret}");
    secret
}

/// The bodies a registry would send for a generated file of envelopes,
/// in order: runs of good lines joined into envelopes of up to `per`
/// events; a line that is not an envelope sent alone, as it is.
fn bodies(file: &Path, per: usize) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(file).expect("events");
    let mut out = Vec::new();
    let mut batch: Vec<serde_json::Value> = Vec::new();
    let flush = |batch: &mut Vec<serde_json::Value>, out: &mut Vec<Vec<u8>>| {
        if !batch.is_empty() {
            let envelope = serde_json::json!({ "events": std::mem::take(batch) });
            out.push(serde_json::to_vec(&envelope).expect("json"));
        }
    };
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let events = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("events")?.as_array().cloned());
        match events.filter(|e| !e.is_empty()) {
            Some(events) => {
                batch.extend(events);
                if batch.len() >= per {
                    flush(&mut batch, &mut out);
                }
            }
            None => {
                flush(&mut batch, &mut out);
                out.push(line.to_vec());
            }
        }
    }
    flush(&mut batch, &mut out);
    out
}

/// Generated envelopes with bad lines mixed in: the file and its bodies.
pub(crate) fn generated_envelopes(
    dir: &Path,
    count: usize,
    seed: u64,
) -> (PathBuf, GenStats, Vec<Vec<u8>>) {
    let (file, stats) = generate(
        dir,
        "envelopes.jsonl",
        &[
            "--events",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "--format",
            "distribution",
            "--bad-ratio",
            "0.02",
            "--days",
            "1",
        ],
    );
    let bodies = bodies(&file, 20);
    (file, stats, bodies)
}

pub(crate) fn post_all(serve: &Serve, token: &str, bodies: &[Vec<u8>]) {
    for body in bodies {
        let (status, answer) = serve.post(Some(token), body);
        assert!(
            status == 200 || status == 202,
            "a 2xx for every envelope, got {status}: {answer}"
        );
    }
}

/// Direct mode's table holds every offset and every session is closed.
pub(crate) fn wait_direct_done(table: impl Into<pullstats::table::Location>) {
    let table = table.into();
    wait_until(
        Duration::from_secs(60),
        "the direct-mode sessions to close",
        || {
            table_progress(&table, DIRECT, 1)
                .get(&0)
                .is_some_and(|(offset, closed)| offset.is_some() && *closed)
        },
    );
}

/// The same actions, and the same rejected requests other than blobs and
/// non-pull events (serve drops those at the door and only counts them in
/// its metrics; `ingest --from-file` records them in the rejected table).
pub(crate) fn assert_same(got: &Path, want: &Path) {
    assert_same_actions(got, want);
    let rejected = "SELECT action_day, namespace, repository, status, reason, SUM(requests) \
        FROM rejected WHERE reason NOT IN ('blob', 'not_pull') GROUP BY 1, 2, 3, 4, 5 \
        ORDER BY 1, 2, 3, 4, 5";
    assert_eq!(sql_rows(got, rejected), sql_rows(want, rejected));
}

/// `ingest --from-file` of `events` with the tests' lateness bound.
pub(crate) fn late_reference(dir: &Path, events: &Path) -> PathBuf {
    reference_with(dir, events, &LATENESS)
}

/// `ingest --from-file` of `events` with `args` (a lateness bound).
fn reference_with(dir: &Path, events: &Path, args: &[&str]) -> PathBuf {
    let table = dir.join("reference");
    run_ok(
        pullstats()
            .args(["ingest", "--from-file"])
            .arg(events)
            .arg("--table")
            .arg(&table)
            .args(args),
    );
    table
}

/// The events a serve process accepted (confirmed by Kafka in forward mode).
fn accepted(metrics: &str) -> usize {
    counter(
        metrics,
        "pullstats_notifications_total{outcome=\"accepted\"}",
    )
    .map_or(0, |n| n as usize)
}

fn dead_letters(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn direct_mode_equals_file_ingest_through_resends_and_kills() {
    let dir = test_dir();
    let (file, stats, bodies) = generated_envelopes(dir.path(), 4_000, 21);
    assert!(stats.bad_lines > 20, "{stats:?}");
    let tokens = dir.path().join("tokens.toml");
    let secret = token(&tokens, "registry", "receive", &[]);
    let table = dir.path().join("pulls");
    // The idle close is wall-clock: on a loaded machine a commit can keep
    // the next envelope back for over a second, and a 1 s idle close would
    // split a pull in two (an action more than the file ingest).
    let mut serve = Serve::start(&table, &tokens, &["--idle-close", "10s"]);

    let (third, two_thirds) = (bodies.len() / 3, 2 * bodies.len() / 3);
    post_all(&serve, &secret, &bodies[..third]);
    // A registry resends what it got no answer for: the last few again.
    post_all(&serve, &secret, &bodies[third - 5..third]);
    serve.kill_and_restart();
    post_all(&serve, &secret, &bodies[third - 3..two_thirds]);
    serve.terminate_cleanly();
    serve.restart();
    post_all(&serve, &secret, &bodies[two_thirds..]);
    wait_direct_done(&table);
    let metrics = serve.metrics();
    assert!(
        metrics.contains("pullstats_notifications_total{outcome=\"accepted\"}"),
        "{metrics}"
    );
    serve.terminate_cleanly();

    assert_same(&table, &late_reference(dir.path(), &file));
    // Every bad line became a dead letter (those resent, again: a
    // resent bad event is not recognised, it never reached the table).
    let dead = dead_letters(&table.with_extension("dead-letter.jsonl"));
    assert!(
        dead >= stats.bad_lines as usize,
        "{dead} dead letters, {stats:?}"
    );
}

/// `--auto-compact` merges the files of the day being written: without it
/// a day keeps one file per commit until it is over, and each commit costs
/// more the more files are live. `--no-wal` makes every envelope a commit.
#[test]
fn auto_compact_merges_the_files_of_the_day_being_written() {
    let dir = test_dir();
    let today = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    let (events, _) = generate(
        dir.path(),
        "events.jsonl",
        &[
            "--events",
            "2000",
            "--seed",
            "31",
            "--format",
            "distribution",
            "--days",
            "1",
            "--start",
            &today,
        ],
    );
    let tokens = dir.path().join("tokens.toml");
    let secret = token(&tokens, "registry", "receive", &[]);
    let table = dir.path().join("pulls");
    let compaction = ["--auto-compact", "--auto-compact-interval", "1s"];
    let mut serve = Serve::start(&table, &tokens, &[&compaction[..], &["--no-wal"]].concat());
    let bodies = bodies(&events, 100);
    post_all(&serve, &secret, &bodies);
    wait_direct_done(&table);
    let files_today = || {
        runtime().block_on(async {
            let info = pullstats::table::maintenance::info(
                &table.as_path().into(),
                TableKind::Pulls,
                128 << 20,
            )
            .await
            .expect("info");
            info.days.get(&today).map_or(0, |d| d.files)
        })
    };
    wait_until(
        Duration::from_secs(60),
        "the day's files merged into one",
        || files_today() == 1,
    );
    let metrics = serve.metrics();
    let compacted = counter(&metrics, "pullstats_compacted_days_total");
    assert!(compacted.is_some_and(|n| n > 0), "{metrics}");
    serve.terminate_cleanly();
    assert_same(&table, &late_reference(dir.path(), &events));
    // In forward mode the daemon writes (and compacts) the table.
    let refused = run(pullstats()
        .args(["serve", "--table"])
        .arg(&table)
        .arg("--tokens")
        .arg(&tokens)
        .args([
            "--brokers",
            "127.0.0.1:1",
            "--topic",
            "events",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(compaction));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("--auto-compact is for direct mode"),
        "{stderr}"
    );
}

/// Direct mode answers once an envelope is synced into its write-ahead
/// log, not once committed: with commits an hour apart every envelope is
/// still answered and the table holds none of them. SIGKILLed then, it
/// loses none: `--no-wal` refuses to start past messages the table lacks,
/// and the restarted serve commits them exactly once.
#[test]
fn answered_envelopes_survive_a_kill_before_any_commit() {
    let dir = test_dir();
    let (file, _, bodies) = generated_envelopes(dir.path(), 2_000, 23);
    let tokens = dir.path().join("tokens.toml");
    let secret = token(&tokens, "registry", "receive", &[]);
    let table = dir.path().join("pulls");
    let mut serve = Serve::start(
        &table,
        &tokens,
        &["--flush-interval", "1h", "--idle-close", "10s"],
    );
    let half = bodies.len() / 2;
    post_all(&serve, &secret, &bodies[..half]);
    let progress = table_progress(&table, DIRECT, 1);
    assert!(
        progress.get(&0).is_none_or(|(offset, _)| offset.is_none()),
        "answered before any commit: {progress:?}"
    );
    let metrics = serve.metrics();
    assert!(
        metrics.contains("pullstats_wal_sync_seconds_count ")
            && !metrics.contains("pullstats_wal_sync_seconds_count 0\n"),
        "{metrics}"
    );
    serve.kill();
    assert!(table.join("_pullstats/wal").is_dir());

    let refused = run(pullstats()
        .args(["serve", "--no-wal", "--listen", "127.0.0.1:0", "--table"])
        .arg(&table)
        .arg("--tokens")
        .arg(&tokens));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("start once without --no-wal"),
        "{stderr}"
    );

    let mut serve = Serve::start(&table, &tokens, &["--idle-close", "10s"]);
    post_all(&serve, &secret, &bodies[half..]);
    wait_direct_done(&table);
    serve.terminate_cleanly();
    assert_same(&table, &late_reference(dir.path(), &file));
}

#[test]
fn forward_mode_then_the_daemon_equals_file_ingest() {
    let dir = test_dir();
    let broker = Broker::memory(dir.path());
    broker.create_topic_with_dlq("registry-events", 3);
    let (file, stats, bodies) = generated_envelopes(dir.path(), 3_000, 22);
    let tokens = dir.path().join("tokens.toml");
    let secret = token(&tokens, "registry", "receive", &[]);
    let serve_table = dir.path().join("unused");
    let mut serve = Serve::start(
        &serve_table,
        &tokens,
        &["--brokers", &broker.addr(), "--topic", "registry-events"],
    );
    wait_until(
        Duration::from_secs(30),
        "/readyz with the brokers up",
        || get(serve.port, "/readyz").is_some_and(|(s, _)| s == 200),
    );
    let half = bodies.len() / 2;
    post_all(&serve, &secret, &bodies[..half]);
    // A resent envelope: its events reach Kafka twice, the daemon drops
    // the repeated ids.
    post_all(&serve, &secret, &bodies[half - 4..half]);
    let mut forwarded = accepted(&serve.metrics());
    serve.kill_and_restart();
    post_all(&serve, &secret, &bodies[half..]);
    forwarded += accepted(&serve.metrics());
    serve.terminate_cleanly();

    let table = dir.path().join("pulls");
    let mut d = daemon(&broker, "registry-events", "g-serve", &table, &LATENESS);
    // Every bad line is in the dead-letter topic (waits until it is).
    broker.end_offsets("registry-events.dlq", 1, stats.bad_lines as usize);
    let ends = broker.end_offsets("registry-events", 3, forwarded);
    wait_done(&table, "registry-events", &ends, Duration::from_secs(120));
    d.terminate_cleanly();
    assert_same(&table, &late_reference(dir.path(), &file));
}

/// With the brokers unreachable, forward mode answers envelopes 503 (the
/// registry retries them) and `/readyz` 503, and its log says so once,
/// not at each of librdkafka's errors (a few a second while the brokers
/// are down, more while `/readyz` asks for them).
#[test]
fn unreachable_brokers_are_answered_503_and_logged_once() {
    let dir = test_dir();
    let (_, _, bodies) = generated_envelopes(dir.path(), 400, 24);
    let tokens = dir.path().join("tokens.toml");
    let secret = token(&tokens, "registry", "receive", &[]);
    let table = dir.path().join("unused");
    let mut serve = Serve::start(
        &table,
        &tokens,
        &[
            "--brokers",
            "127.0.0.1:1",
            "--topic",
            "registry-events",
            "--forward-timeout",
            "2s",
        ],
    );
    for body in bodies.iter().take(3) {
        let (status, answer) = serve.post(Some(&secret), body);
        assert_eq!(status, 503, "{answer}");
        assert!(answer.contains("did not confirm within 2s"), "{answer}");
    }
    for _ in 0..2 {
        let (status, answer) = get(serve.port, "/readyz").expect("readyz");
        assert_eq!(status, 503, "{answer}");
    }
    serve.terminate_cleanly();
    let log = std::fs::read_to_string(table.with_extension("serve.log")).expect("log");
    assert_eq!(log.matches("Kafka unreachable").count(), 1, "{log}");
    // No librdkafka error event at error level (the dead-letter producer
    // logs them at debug). librdkafka's own `FAIL` lines, which it
    // rate-limits itself, are not counted here.
    let errors = log
        .lines()
        .filter(|l| l.contains("Global error") && !l.contains(" DEBUG "));
    assert_eq!(errors.count(), 0, "{log}");
}

/// `send-notifications` replays a file of envelopes as a registry would,
/// bad ones included (answered 202), over several connections: direct
/// mode's table then equals the file ingest of the same events. A token
/// of the wrong role stops it at once with the reason.
#[test]
fn send_notifications_replays_a_file_into_serve() {
    let dir = test_dir();
    let (file, stats, bodies) = generated_envelopes(dir.path(), 3_000, 23);
    let invalid = bodies
        .iter()
        .filter(|b| serde_json::from_slice::<serde_json::Value>(b).is_err())
        .count();
    assert!(invalid > 0, "{stats:?}");
    let envelopes = dir.path().join("bodies.jsonl");
    let mut lines = Vec::new();
    for body in &bodies {
        lines.extend_from_slice(body);
        lines.extend_from_slice(b"\n\n");
    }
    std::fs::write(&envelopes, lines).expect("write bodies");
    let tokens = dir.path().join("tokens.toml");
    let secret = dir.path().join("registry.token");
    std::fs::write(&secret, token(&tokens, "registry", "receive", &[])).expect("token");
    let reader = dir.path().join("publisher.token");
    std::fs::write(&reader, token(&tokens, "publisher", "read", &["*"])).expect("token");
    let table = dir.path().join("pulls");
    // Four connections interleave the envelopes, so events arrive out of
    // time order by however far one connection falls behind the others
    // (once in about eight runs past the tests' hour: 17 late requests,
    // each its own action). The events span one day: a day's lateness
    // bound makes none late, so the table must equal the file's ingest.
    let lateness = ["--max-lateness", "24h"];
    let mut serve = Serve::start(
        &table,
        &tokens,
        &[&lateness[..], &["--idle-close", "10s"]].concat(),
    );
    let url = format!("http://127.0.0.1:{}/notifications", serve.port);
    let send = |token: &Path| {
        let mut cmd = pullstats();
        cmd.args([
            "send-notifications",
            "--url",
            &url,
            "--connections",
            "4",
            "--json",
        ])
        .arg("--token-file")
        .arg(token)
        .arg("--from-file")
        .arg(&envelopes);
        cmd
    };

    let refused = run(&mut send(&reader));
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("403 Forbidden: the token is not a `receive` token"),
        "{stderr}"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&run_ok(&mut send(&secret))).expect("a JSON summary");
    assert_eq!(summary["envelopes"], bodies.len(), "{summary}");
    assert_eq!(summary["sent_again"], 0, "{summary}");
    // 202: a body or some of its events dead-lettered.
    let statuses = &summary["statuses"];
    let count = |status: &str| statuses[status].as_u64().unwrap_or(0) as usize;
    assert_eq!(count("200") + count("202"), bodies.len(), "{summary}");
    assert!(count("202") >= invalid, "{summary}");
    wait_direct_done(&table);
    serve.terminate_cleanly();
    assert_same(&table, &reference_with(dir.path(), &file, &lateness));
    let dead = dead_letters(&table.with_extension("dead-letter.jsonl"));
    assert_eq!(dead, stats.bad_lines as usize, "{stats:?}");
}

#[test]
fn tokens_statuses_and_bad_bodies() {
    let dir = test_dir();
    let tokens = dir.path().join("tokens.toml");
    let receive = token(&tokens, "registry", "receive", &[]);
    let read = token(&tokens, "publisher", "read", &["demo"]);
    let stored = std::fs::read_to_string(&tokens).expect("tokens");
    assert!(!stored.contains(&receive), "secrets are never stored");
    let table = dir.path().join("pulls");
    let serve = Serve::start(&table, &tokens, &["--max-body-bytes", "4KiB"]);
    let envelope = run_ok(pullstats().args(["gen", "--events", "1", "--format", "distribution"]));
    let envelope = envelope.as_bytes();

    assert_eq!(serve.post(None, envelope).0, 401);
    assert_eq!(serve.post(Some("pst_wrong"), envelope).0, 401);
    assert_eq!(serve.post(Some(&read), envelope).0, 403);
    assert_eq!(serve.post(Some(&receive), envelope).0, 200);

    // Bad bodies are dead-lettered and answered 202, never retried forever.
    let dead = table.with_extension("dead-letter.jsonl");
    assert_eq!(serve.post(Some(&receive), b"not json").0, 202);
    assert_eq!(serve.post(Some(&receive), b"{}").0, 202);
    assert_eq!(serve.post(Some(&receive), br#"{"events":[]}"#).0, 202);
    let big = format!(r#"{{"events":[{{"pad":"{}"}}]}}"#, "x".repeat(8192));
    assert_eq!(serve.post(Some(&receive), big.as_bytes()).0, 202);
    let bad_event = br#"{"events":[{"action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json"}}]}"#;
    assert_eq!(serve.post(Some(&receive), bad_event).0, 202);
    // An event dated years ahead of the clock would make later ones late.
    let text = std::str::from_utf8(envelope).expect("utf-8");
    let far_future = text.replacen("\"timestamp\":\"2026-", "\"timestamp\":\"2031-", 1);
    assert_ne!(far_future, text);
    assert_eq!(serve.post(Some(&receive), far_future.as_bytes()).0, 202);
    assert_eq!(dead_letters(&dead), 6);
    let letters = std::fs::read_to_string(&dead).expect("dead letters");
    assert!(letters.contains("--max-body-bytes"), "{letters}");
    assert!(letters.contains("ahead of the clock"), "{letters}");

    assert_eq!(get(serve.port, "/readyz").map(|a| a.0), Some(200));
    let metrics = serve.metrics();
    for series in [
        "pullstats_notifications_total{outcome=\"too_large\"} 1",
        "pullstats_notifications_total{outcome=\"invalid\"} 3",
        "pullstats_notifications_total{outcome=\"accepted\"} 1",
        "pullstats_notifications_total{outcome=\"bad\"} 2",
        "pullstats_http_requests_total{route=\"/notifications\",status=\"401\"} 2",
        "pullstats_http_requests_total{route=\"/notifications\",status=\"403\"} 1",
        "pullstats_http_request_duration_seconds_bucket{route=\"/notifications\"",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }

    // The alert rules query only series serve exports.
    let packaging = crate::packaging::SERVE_QUERIES;
    crate::packaging::assert_exported(&packaging, &metrics, "serve");

    // Revoking a token is an edit of the file, no restart.
    let kept: String = stored
        .split("[[token]]")
        .filter(|entry| !entry.contains("\"registry\""))
        .collect::<Vec<_>>()
        .join("[[token]]");
    std::fs::write(&tokens, kept).expect("rewrite tokens");
    wait_until(
        Duration::from_secs(20),
        "the revoked token to get 401",
        || serve.post(Some(&receive), envelope).0 == 401,
    );
}
