//! End-to-end tests of the `pullstats` binary: gen → ingest → Delta → sql.

mod export;
mod helpers;
mod kafka;
mod maintenance;
mod packaging;
mod s3;
mod serve;

use std::collections::HashMap;

use export::fixture_table;
use helpers::*;

#[test]
fn gen_is_byte_identical_for_a_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--events", "5000", "--seed", "42", "--bad-ratio", "0.05"];
    let (a, sa) = generate(dir.path(), "a.jsonl", &args);
    let (b, sb) = generate(dir.path(), "b.jsonl", &args);
    let (c, _) = generate(dir.path(), "c.jsonl", &["--events", "5000", "--seed", "43"]);
    let read = |p| std::fs::read(p).expect("read");
    assert_eq!(read(&a), read(&b));
    assert_ne!(read(&a), read(&c));
    assert_eq!(sa, sb);
    assert_eq!(sa.lines, 5000);
    assert_eq!(read(&a).iter().filter(|&&c| c == b'\n').count(), 5000);
}

#[test]
fn gen_writes_to_stdout_by_default() {
    let out = run_ok(pullstats().args(["gen", "--events", "10", "--seed", "1"]));
    assert_eq!(out.lines().count(), 10);
    assert!(out.lines().all(|l| l.starts_with('{')));
}

/// The product's central promise: as many actions as the generator meant,
/// per kind, with every bad line reported and no good one lost.
fn check_counts_match_generator(format: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, stats) = generate(
        dir.path(),
        "events.jsonl",
        &[
            "--events",
            "20000",
            "--seed",
            "9",
            "--days",
            "3",
            "--bad-ratio",
            "0.05",
            "--format",
            format,
        ],
    );
    assert!(stats.bad_lines > 500, "{stats:?}");
    let table = dir.path().join("pulls");
    let summary = ingest(&input, &table);

    let total = sql_count(&table, "SELECT count(*) FROM pulls");
    assert_eq!(total, stats.actions(), "{format}: {summary}");
    let by_kind: HashMap<String, u64> =
        sql_rows(&table, "SELECT action, count(*) FROM pulls GROUP BY action")
            .into_iter()
            .skip(1)
            .map(|r| (r[0].clone(), r[1].parse().expect("count")))
            .collect();
    assert_eq!(
        by_kind.get("pull_by_tag").copied().unwrap_or(0),
        stats.pull_by_tag
    );
    assert_eq!(
        by_kind.get("pull_by_digest").copied().unwrap_or(0),
        stats.pull_by_digest
    );
    assert_eq!(
        by_kind.get("version_check").copied().unwrap_or(0),
        stats.version_check
    );
    let requests = sql_count(&table, "SELECT sum(requests) FROM pulls");
    assert_eq!(
        requests, stats.manifest_requests,
        "every 2xx manifest request is in one action"
    );

    assert!(
        summary.contains(&format!("bad {}", stats.bad_lines)),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("blob {}", stats.blob_requests)),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("non-2xx {}", stats.rejected_requests)),
        "{summary}"
    );
    let dead =
        std::fs::read_to_string(dir.path().join("pulls.dead-letter.jsonl")).expect("dead letters");
    let letters: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letter json"))
        .collect();
    assert_eq!(letters.len() as u64, stats.bad_lines);
    assert!(letters
        .iter()
        .all(|l| l["line"].as_u64().is_some() && l["reason"].is_string()));
}

#[test]
fn flat_ingest_gives_the_intended_actions() {
    check_counts_match_generator("flat");
}

#[test]
fn distribution_ingest_gives_the_intended_actions() {
    check_counts_match_generator("distribution");
}

/// Bad lines keep their line numbers and reasons wherever they fall relative
/// to the chunks the decode thread hands on (4,096 lines each), and every
/// good line around them is still ingested.
#[test]
fn dead_letters_keep_their_line_numbers_across_decode_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, _) = generate(dir.path(), "e.jsonl", &["--events", "9000", "--seed", "5"]);
    let text = std::fs::read_to_string(&input).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let good = lines.len();
    let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    // Good events dated years ahead of the rest, one at the end of the
    // first decode chunk (judged with the next chunk as lookahead).
    let future = |i: usize| lines[i].replacen("\"timestamp\":\"2026-", "\"timestamp\":\"2031-", 1);
    let far_future = "invalid `timestamp`: 2031-";
    // (line number once inserted, content, expected reason)
    let bad = [
        (1, "not json".to_owned(), "invalid JSON"),
        (2000, future(3000), far_future),
        (4095, future(10), far_future),
        (4096, long, "longer than 4096 bytes"),
        (4097, "{}".to_owned(), "missing field `timestamp`"),
        (good + 6, "\u{7f}".to_owned(), "invalid JSON"),
    ];
    for (at, content, _) in &bad {
        lines.insert(at - 1, content.clone());
    }
    std::fs::write(&input, lines.join("\n") + "\n").expect("write");
    let table = dir.path().join("t");
    let summary = run_ok(
        pullstats()
            .args(["ingest", "--max-line-bytes", "4096", "--from-file"])
            .arg(&input)
            .arg("--table")
            .arg(&table),
    );
    assert!(
        summary.contains(&format!("lines read {}", good + bad.len())),
        "{summary}"
    );
    assert!(summary.contains(&format!("bad {}", bad.len())), "{summary}");
    let dead = std::fs::read_to_string(dir.path().join("t.dead-letter.jsonl")).expect("dead");
    let letters: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letter json"))
        .collect();
    assert_eq!(letters.len(), bad.len());
    for ((at, _, reason), letter) in bad.iter().zip(&letters) {
        assert_eq!(letter["line"].as_u64(), Some(*at as u64), "{letter}");
        let got = letter["reason"].as_str().expect("reason");
        assert!(got.contains(reason), "line {at}: {got}");
    }

    // The good lines alone give the same table.
    let clean = dir.path().join("clean.jsonl");
    std::fs::write(&clean, text).expect("write");
    let reference = dir.path().join("r");
    ingest(&clean, &reference);
    assert_same_tables(&table, &reference);
}

#[test]
fn a_far_future_event_is_dead_lettered_instead_of_making_later_events_late() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, _) = generate(dir.path(), "e.jsonl", &["--events", "3000", "--seed", "8"]);
    let text = std::fs::read_to_string(&input).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let stray = lines[0].replacen("\"timestamp\":\"2026-", "\"timestamp\":\"2029-", 1);
    assert_ne!(stray, lines[0]);
    lines.insert(100, stray);
    std::fs::write(&input, lines.join("\n") + "\n").expect("write");

    let ingest_with =
        |table: &str, extra: &[&str]| ingest_with_file(&input, &dir.path().join(table), extra);
    let summary = ingest_with("bounded", &[]);
    assert!(summary.contains("bad 1, late 0"), "{summary}");
    let dead = std::fs::read_to_string(dir.path().join("bounded.dead-letter.jsonl")).expect("dead");
    let letter: serde_json::Value = serde_json::from_str(dead.trim()).expect("one letter");
    assert_eq!(letter["line"].as_u64(), Some(101), "{letter}");
    let reason = letter["reason"].as_str().expect("reason");
    assert!(reason.contains("more than 1d ahead of"), "{reason}");
    // The payload is the event, re-encoded as a flat line that decodes.
    let payload = letter["raw"].as_str().expect("raw");
    assert!(payload.contains("\"timestamp\":\"2029-"), "{payload}");
    let again = dir.path().join("again.jsonl");
    std::fs::write(&again, payload).expect("write");
    let summary = ingest_with_file(&again, &dir.path().join("again"), &["--max-future", "0"]);
    assert!(summary.contains("lines read 1, requests 1"), "{summary}");

    // Without the bound, the stray event moves the watermark: the rest is late.
    let summary = ingest_with("unbounded", &["--max-future", "0"]);
    assert!(summary.contains("bad 0, late "), "{summary}");
    assert!(!summary.contains("bad 0, late 0"), "{summary}");
}

fn ingest_with_file(input: &std::path::Path, table: &std::path::Path, extra: &[&str]) -> String {
    run_ok(
        pullstats()
            .arg("ingest")
            .args(extra)
            .arg("--from-file")
            .arg(input)
            .arg("--table")
            .arg(table),
    )
}

#[test]
fn ingest_reads_stdin_and_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, stats) = generate(dir.path(), "e.jsonl", &["--events", "3000", "--seed", "3"]);
    let table = dir.path().join("t");
    let out = run_with_stdin(
        pullstats()
            .args(["ingest", "--from-file", "-", "--table"])
            .arg(&table),
        &std::fs::read(&input).expect("read"),
    );
    assert!(out.status.success());
    assert_eq!(
        sql_count(&table, "SELECT count(*) FROM pulls"),
        stats.actions()
    );
    ingest(&input, &table);
    assert_eq!(
        sql_count(&table, "SELECT count(*) FROM pulls"),
        2 * stats.actions()
    );
}

#[test]
fn rows_carry_the_spec_fields_and_no_ip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("one.jsonl");
    let digest = format!("sha256:{}", "ab".repeat(32));
    let platform = format!("sha256:{}", "cd".repeat(32));
    std::fs::write(
        &input,
        format!(
            "{{\"timestamp\":\"2026-11-08T23:59:59.999Z\",\"method\":\"HEAD\",\"repository\":\"acme/api\",\"reference\":\"1.2\",\"digest\":\"{digest}\",\"status\":200,\"remote_addr\":\"198.51.100.77:5123\",\"user_agent\":\"containerd/1.7.22\",\"owner\":\"Acme\"}}\n\
             {{\"timestamp\":\"2026-11-09T00:00:00.050Z\",\"method\":\"GET\",\"repository\":\"acme/api\",\"reference\":\"{platform}\",\"status\":200,\"remote_addr\":\"198.51.100.77:6001\",\"user_agent\":\"containerd/1.7.22\"}}\n"
        ),
    )
    .expect("write");
    let table = dir.path().join("t");
    ingest(&input, &table);
    let rows = sql_rows(
        &table,
        "SELECT action, action_day, http_method, namespace, repository, reference, tag, digest, \
         user_agent_tool, user_agent_version, owner, requests FROM pulls",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[1],
        [
            "pull_by_tag",
            "2026-11-08",
            "HEAD",
            "acme",
            "api",
            "1.2",
            "1.2",
            digest.as_str(),
            "containerd",
            "1.7.22",
            "Acme",
            "2"
        ]
    );
    let csv = run_ok(
        pullstats()
            .args(["sql", "--format", "csv", "--table"])
            .arg(&table)
            .arg("SELECT * FROM pulls"),
    );
    assert!(
        !csv.contains("198.51.100.77"),
        "the raw IP must never be stored"
    );
}

#[test]
fn sql_output_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = generated_table(dir.path(), "500");
    let q = "SELECT action, count(*) AS n FROM pulls GROUP BY action ORDER BY action";
    let text = run_ok(pullstats().args(["sql", "--table"]).arg(&table).arg(q));
    assert!(
        text.contains("| action") && text.contains("pull_by_tag"),
        "{text}"
    );
    let json = run_ok(
        pullstats()
            .args(["sql", "--format", "json", "--table"])
            .arg(&table)
            .arg(q),
    );
    let first: serde_json::Value =
        serde_json::from_str(json.lines().next().expect("a row")).expect("json line");
    assert_eq!(first["action"], "pull_by_digest");
    assert!(first["n"].as_u64().is_some());
}

#[test]
fn sql_errors_are_one_line_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = generated_table(dir.path(), "100");
    for (sql, want) in [
        ("SELEC nonsense", "SQL"),
        ("SELECT nope FROM pulls", "nope"),
    ] {
        let out = run(pullstats().args(["sql", "--table"]).arg(&table).arg(sql));
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(want), "{err}");
    }
    let out = run(pullstats()
        .args(["sql", "--table"])
        .arg(dir.path().join("missing"))
        .arg("SELECT 1"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pulls table"));
}

/// DATAFUSION_* variables reach the query engine: a valid one is applied
/// (visible in SHOW), a bad one is a one-line error naming it. The same for
/// PULLSTATS_QUERY_MEMORY.
#[test]
fn datafusion_settings_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = generated_table(dir.path(), "100");
    let out = run_ok(
        pullstats()
            .env("DATAFUSION_EXECUTION_BATCH_SIZE", "1234")
            .args(["sql", "--format", "csv", "--table"])
            .arg(&table)
            .arg("SHOW datafusion.execution.batch_size"),
    );
    assert!(out.contains("1234"), "{out}");
    let out = run(pullstats()
        .env("DATAFUSION_EXECUTION_BATCH_SIZE", "many")
        .args(["sql", "--table"])
        .arg(&table)
        .arg("SELECT 1"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("batch_size"),
        "{err}"
    );

    // The query memory cap: a bad value and a cap too small to run in are
    // one-line errors; a sufficient one gives the uncapped result.
    let summary = |memory: &str| {
        run(pullstats()
            .env("PULLSTATS_QUERY_MEMORY", memory)
            .args([
                "export", "--view", "summary", "--month", "2026-11", "--table",
            ])
            .arg(&table))
    };
    let out = summary("lots");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PULLSTATS_QUERY_MEMORY: `lots`"), "{err}");
    let out = summary("1KiB");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Resources exhausted"), "{err}");
    // A failed export to a file leaves an earlier file as it was, and no
    // partial file; a successful one replaces it.
    let out_dir = dir.path().join("exports");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let file = out_dir.join("summary.csv");
    std::fs::write(&file, "earlier\n").expect("write");
    let to_file = |memory: &str| {
        run(pullstats()
            .env("PULLSTATS_QUERY_MEMORY", memory)
            .args(["export", "--month", "2026-11", "--output"])
            .arg(&file)
            .arg("--table")
            .arg(&table))
    };
    assert_eq!(to_file("1KiB").status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "earlier\n");
    let names = || -> Vec<String> {
        std::fs::read_dir(&out_dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(), ["summary.csv"]);
    assert!(to_file("1GiB").status.success());
    assert!(std::fs::read_to_string(&file)
        .expect("read")
        .starts_with("namespace,repository,reference,"));
    assert_eq!(names(), ["summary.csv"]);
    // A destination that is not a regular file (a FIFO here; /dev/null
    // alike) is written to as it is, never replaced by a renamed file.
    let fifo = out_dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).expect("read the FIFO"))
    };
    assert!(run(pullstats()
        .args(["export", "--month", "2026-11", "--output"])
        .arg(&fifo)
        .arg("--table")
        .arg(&table))
    .status
    .success());
    use std::os::unix::fs::FileTypeExt as _;
    let kind = std::fs::symlink_metadata(&fifo).expect("stat").file_type();
    assert!(kind.is_fifo(), "the FIFO is still one: {kind:?}");
    let through = reader.join().expect("reader");
    assert!(
        through.starts_with("namespace,repository,reference,"),
        "{through}"
    );
    std::fs::remove_file(&fifo).expect("rm fifo");
    let (capped, uncapped) = (summary("64MiB"), summary("1GiB"));
    assert!(capped.status.success() && !capped.stdout.is_empty());
    assert_eq!(capped.stdout, uncapped.stdout);
}

#[test]
fn usage_errors_exit_2_and_missing_key_exits_1() {
    let out = run(pullstats().args(["gen", "--bad-ratio", "2"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bad-ratio"));
    let out = run(pullstats().args([
        "ingest",
        "--from-file",
        "x",
        "--table",
        "y",
        "--session-gap",
        "soon",
    ]));
    assert_eq!(out.status.code(), Some(2));

    let dir = tempfile::tempdir().expect("tempdir");
    let (input, _) = generate(dir.path(), "e.jsonl", &["--events", "10"]);
    let out = run(pullstats()
        .env_remove("PULLSTATS_IP_HASH_KEY")
        .args(["ingest", "--from-file"])
        .arg(&input)
        .arg("--table")
        .arg(dir.path().join("t")));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PULLSTATS_IP_HASH_KEY"));
    assert!(
        !dir.path().join("t").exists(),
        "nothing is created without a key"
    );
}

#[test]
fn a_table_that_cannot_be_opened_fails_the_ingest_before_any_dead_letter() {
    // Lines are decoded while the tables are opened; none may be
    // dead-lettered by a run that cannot write, or a retry would add them
    // again.
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, _) = generate(dir.path(), "e.jsonl", &["--events", "20", "--seed", "3"]);
    let text = std::fs::read_to_string(&input).expect("read");
    std::fs::write(&input, format!("not json\n{text}")).expect("write");
    let table = dir.path().join("t");
    let log = table.join("_delta_log");
    std::fs::create_dir_all(&log).expect("mkdir");
    std::fs::write(log.join("00000000000000000000.json"), "garbage\n").expect("write");
    // RUST_BACKTRACE=1 (panics' backtraces) must not put the Delta
    // kernel's backtraces into the error or the logs.
    let out = run(pullstats()
        .args(["ingest", "--from-file"])
        .arg(&input)
        .arg("--table")
        .arg(&table)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LIB_BACKTRACE"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(error[0].starts_with("error: table at "), "{stderr}");
    assert!(!stderr.contains("with_backtrace"), "{stderr}");
    assert!(!dir.path().join("t.dead-letter.jsonl").exists());
    assert!(!dir.path().join("t.rejected").exists());

    // Once the table is readable, the same run dead-letters the line once.
    std::fs::remove_dir_all(&table).expect("rm");
    let summary = ingest(&input, &table);
    assert!(summary.contains("bad 1"), "{summary}");
    let dead = std::fs::read_to_string(dir.path().join("t.dead-letter.jsonl")).expect("dead");
    assert_eq!(dead.lines().count(), 1, "{dead}");
}

#[test]
fn empty_input_creates_an_empty_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("empty.jsonl");
    std::fs::write(&input, "").expect("write");
    let table = dir.path().join("t");
    let summary = ingest(&input, &table);
    assert!(summary.contains("lines read 0"), "{summary}");
    assert_eq!(sql_count(&table, "SELECT count(*) FROM pulls"), 0);
}

#[test]
fn demo_runs_and_summarises() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let out = run_ok(
        pullstats()
            .env_remove("PULLSTATS_IP_HASH_KEY")
            .args(["demo", "--events", "4000", "--dir"])
            .arg(&demo),
    );
    assert!(
        out.contains("Actions by kind:") && out.contains("pull_by_tag"),
        "{out}"
    );
    // A second run replaces its own directory…
    run_ok(
        pullstats()
            .args(["demo", "--events", "1000", "--dir"])
            .arg(&demo),
    );
    // …but never someone else's.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("precious.txt"), "keep").expect("write");
    let out = run(pullstats().args(["demo", "--dir"]).arg(&other));
    assert_eq!(out.status.code(), Some(1));
    assert!(other.join("precious.txt").exists());
}

#[test]
fn an_independent_delta_reader_opens_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = generated_table(dir.path(), "5000");
    let rows = sql_count(&table, "SELECT count(*) FROM pulls");
    assert_delta_reader_agrees(&table, rows, &[]);
}

#[test]
fn demo_prints_commands_that_run_as_printed() {
    // As a newcomer after `cargo run`: no `pullstats` on the PATH, the
    // binary named by its path, run from the directory the demo ran in.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = "/usr/local/bin:/usr/bin:/bin";
    let out = run_ok(
        pullstats()
            .current_dir(dir.path())
            .env("PATH", path)
            .args(["demo", "--events", "2000", "--dir", "my demo"]),
    );
    let (_, tail) = out
        .split_once("Try:\n")
        .expect("the demo suggests commands");
    // The commands to try, up to the dashboard's (a server: run by the
    // serve tests, see `the_demo_prints_a_serve_command_that_shows_its_week`).
    let commands: Vec<&str> = tail
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix("  "))
        .collect();
    assert!(commands.len() >= 3, "{out}");
    for command in commands {
        assert!(
            !command.starts_with("pullstats "),
            "not on the PATH: {command}"
        );
        let ran = std::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(dir.path())
            .env("PATH", path)
            .output()
            .expect("sh");
        assert!(
            ran.status.success() && !ran.stdout.is_empty(),
            "`{command}` failed as printed: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
    }
}

#[test]
fn ingest_fills_enrichment_from_files_and_leaves_it_empty_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, stats) = generate(dir.path(), "e.jsonl", &["--events", "20000", "--seed", "5"]);
    let mmdb = dir.path().join("enterprise.mmdb");
    enterprise_mmdb(&mmdb);
    let ranges = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cloud-ranges");
    let with = dir.path().join("with");
    run_ok(
        pullstats()
            .args(["ingest", "--from-file"])
            .arg(&input)
            .arg("--table")
            .arg(&with)
            .arg("--geoip")
            .arg(&mmdb)
            .arg("--cloud-ranges")
            .arg(&ranges),
    );
    let values = |sql: &str| -> Vec<String> {
        sql_rows(&with, sql)
            .into_iter()
            .skip(1)
            .map(|r| r.join(","))
            .collect()
    };
    assert_eq!(
        values("SELECT DISTINCT country FROM pulls WHERE country IS NOT NULL ORDER BY 1"),
        ["GB", "JP", "SE"]
    );
    assert_eq!(
        values(
            "SELECT DISTINCT country, type, domain FROM pulls WHERE country IS NOT NULL ORDER BY 1"
        ),
        [
            "GB,business,acme.example",
            "JP,education,uni.example",
            "SE,isp,bredband.example"
        ]
    );
    let hosts = values("SELECT DISTINCT host FROM pulls WHERE host IS NOT NULL ORDER BY 1");
    for h in [
        "aws",
        "azure",
        "cloudflare",
        "digitalocean",
        "gcp",
        "linode",
        "oracle",
    ] {
        assert!(hosts.contains(&h.to_owned()), "{h} missing from {hosts:?}");
    }
    assert_eq!(
        sql_count(
            &with,
            "SELECT count(*) FROM pulls WHERE host IS NOT NULL AND type <> 'hosting'"
        ),
        0
    );
    assert_eq!(
        sql_count(
            &with,
            "SELECT count(*) FROM pulls WHERE user_agent_tool IS NULL"
        ),
        0
    );
    assert!(
        sql_count(
            &with,
            "SELECT count(*) FROM pulls WHERE user_agent_version IS NOT NULL"
        ) > stats.actions() / 2
    );

    let without = dir.path().join("without");
    ingest(&input, &without);
    assert_eq!(
        sql_count(&without, "SELECT count(*) FROM pulls WHERE country IS NOT NULL OR host IS NOT NULL OR type IS NOT NULL OR domain IS NOT NULL"),
        0
    );
    assert_eq!(
        sql_count(&without, "SELECT count(*) FROM pulls"),
        stats.actions()
    );

    let bad = dir.path().join("bad.mmdb");
    std::fs::write(&bad, "not a database").expect("write");
    let out = run(pullstats()
        .args(["ingest", "--from-file"])
        .arg(&input)
        .arg("--table")
        .arg(dir.path().join("t3"))
        .arg("--geoip")
        .arg(&bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.mmdb"));
    assert!(
        !dir.path().join("t3").exists(),
        "a bad data file is caught before anything is written"
    );
}

#[test]
fn sql_without_a_statement_reads_a_script_from_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = fixture_table(dir.path());
    let out = run_with_stdin(
        pullstats().args(["sql", "--table"]).arg(&table),
        b"SELECT count(*) AS n\n  FROM pulls;\n\\d\nSELECT nope FROM pulls;\nSELECT 41 + 1 AS answer\n",
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("| 10 |"), "multi-line statement: {text}");
    assert!(
        text.contains("user_agent_product"),
        "\\d describes pulls: {text}"
    );
    assert!(
        text.contains("error: Schema error"),
        "errors are printed and the shell goes on: {text}"
    );
    assert!(
        text.contains("| 42     |"),
        "a last statement without `;` runs: {text}"
    );
}
