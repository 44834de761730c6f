//! Shared helpers of the integration tests: run the real binary, generate
//! inputs, query tables. Outputs go to temp dirs, never into testdata/.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pullstats::gen::GenStats;

pub const BIN: &str = env!("CARGO_BIN_EXE_pullstats");

/// Every column of the pulls table, for comparing two tables row by row.
pub const ALL_ROWS: &str =
    "SELECT action, action_day, timestamp, namespace, repository, reference, tag, \
    digest, http_method, country, host, type, domain, user_agent_tool, user_agent_version, owner, \
    ip_hash, os, arch, user_agent_product, requests, late FROM pulls \
    ORDER BY timestamp, ip_hash, namespace, repository, reference, action, requests, http_method";
pub const REJECTED_ROWS: &str =
    "SELECT action_day, namespace, repository, status, reason, SUM(requests) AS n \
    FROM rejected GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5";

/// `PULLSTATS_STORAGE_OPTIONS` for every command, once the tests' S3
/// server runs (see `s3`): the settings of its endpoint. Local tables
/// ignore them, as they would a user's.
pub static STORAGE_OPTIONS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A `pullstats` command with a test IP hash key and quiet logs.
pub fn pullstats() -> Command {
    let mut c = Command::new(BIN);
    c.env("PULLSTATS_IP_HASH_KEY", "integration-test-key")
        .env_remove("PULLSTATS_INSECURE_DEFAULT_KEY")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null());
    match STORAGE_OPTIONS.get() {
        Some(options) => c.env("PULLSTATS_STORAGE_OPTIONS", options),
        None => c.env_remove("PULLSTATS_STORAGE_OPTIONS"),
    };
    c
}

/// Runs and asserts success; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn pullstats");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn pullstats")
}

/// Runs with `input` on stdin; returns the output.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Generates events into `dir/name` and returns the path and the stats.
pub fn generate(dir: &Path, name: &str, args: &[&str]) -> (PathBuf, GenStats) {
    let path = dir.join(name);
    let stats_path = dir.join(format!("{name}.stats.json"));
    run_ok(
        pullstats()
            .arg("gen")
            .args(args)
            .arg("--output")
            .arg(&path)
            .arg("--stats")
            .arg(&stats_path),
    );
    let stats = serde_json::from_str(&std::fs::read_to_string(&stats_path).expect("stats file"))
        .expect("stats json");
    (path, stats)
}

/// Ingests `input` into `table`; returns stdout (the summary).
pub fn ingest(input: &Path, table: &Path) -> String {
    run_ok(
        pullstats()
            .arg("ingest")
            .arg("--from-file")
            .arg(input)
            .arg("--table")
            .arg(table),
    )
}

/// A table `DIR/t` of `events` generated events (`DIR/e.jsonl`).
pub fn generated_table(dir: &Path, events: &str) -> PathBuf {
    let (input, _) = generate(dir, "e.jsonl", &["--events", events]);
    let table = dir.join("t");
    ingest(&input, &table);
    table
}

/// Runs SQL and returns the CSV rows (header first).
pub fn sql_rows(table: &Path, sql: &str) -> Vec<Vec<String>> {
    let out = run_ok(
        pullstats()
            .args(["sql", "--format", "csv", "--table"])
            .arg(table)
            .arg(sql),
    );
    out.lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

/// `pullstats export --table TABLE ARGS…`; returns stdout.
pub fn export(table: &Path, args: &[&str]) -> String {
    run_ok(
        pullstats()
            .arg("export")
            .arg("--table")
            .arg(table)
            .args(args),
    )
}

/// A single integer from SQL.
pub fn sql_count(table: &Path, sql: &str) -> u64 {
    let rows = sql_rows(table, sql);
    rows[1][0].parse().expect("integer result")
}

/// A GeoIP2-Enterprise-schema MaxMind DB over networks the generator uses
/// (MaxMind's test networks), built with the writer crate.
pub fn enterprise_mmdb(path: &Path) {
    use maxminddb_writer::{metadata::IpVersion, paths::IpAddrWithMask, Database};
    #[derive(serde::Serialize)]
    struct Iso {
        iso_code: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Traits {
        user_type: &'static str,
        domain: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Record {
        country: Iso,
        traits: Traits,
    }
    let mut db = Database::default();
    db.metadata.ip_version = IpVersion::V6;
    db.metadata.database_type = "GeoIP2-Enterprise".into();
    db.metadata.binary_format_major_version = 2;
    for (net, len, country, user_type, domain) in [
        ("::81.2.69.142", 127u8, "GB", "business", "acme.example"),
        (
            "::89.160.20.112",
            124,
            "SE",
            "residential",
            "bredband.example",
        ),
        ("2001:218::", 32, "JP", "college", "uni.example"),
    ] {
        let data = db
            .insert_value(Record {
                country: Iso { iso_code: country },
                traits: Traits { user_type, domain },
            })
            .expect("value");
        db.insert_node(IpAddrWithMask::new(net.parse().expect("ip"), len), data);
    }
    db.write_to(std::fs::File::create(path).expect("create"))
        .expect("write");
}

/// Both tables hold the same actions and the same rejected-request counts.
pub fn assert_same_tables(got: &Path, want: &Path) {
    assert_same_actions(got, want);
    let (a, b) = (sql_rows(got, REJECTED_ROWS), sql_rows(want, REJECTED_ROWS));
    assert!(a.len() > 10, "the reference has rejected requests");
    assert!(
        a == b,
        "{} and {} hold different rejected-request counts",
        got.display(),
        want.display()
    );
}

/// Both tables hold the same actions (for input that has no rejected
/// requests, such as a registry's notifications of served requests).
pub fn assert_same_actions(got: &Path, want: &Path) {
    let (a, b) = (sql_rows(got, ALL_ROWS), sql_rows(want, ALL_ROWS));
    assert!(a.len() > 100, "the reference has actions");
    assert_eq!(a.len(), b.len(), "same number of actions");
    assert!(
        a == b,
        "{} and {} hold different actions",
        got.display(),
        want.display()
    );
}

/// A GeoIP2-Country-schema MaxMind DB that places every IPv4 and IPv6
/// address in `country`.
pub fn country_mmdb(path: &Path, country: &'static str) {
    use maxminddb_writer::{metadata::IpVersion, paths::IpAddrWithMask, Database};
    #[derive(serde::Serialize)]
    struct Iso {
        iso_code: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Record {
        country: Iso,
    }
    let mut db = Database::default();
    db.metadata.ip_version = IpVersion::V6;
    db.metadata.database_type = "GeoIP2-Country".into();
    db.metadata.binary_format_major_version = 2;
    let data = db
        .insert_value(Record {
            country: Iso { iso_code: country },
        })
        .expect("value");
    for half in ["::", "8000::"] {
        db.insert_node(IpAddrWithMask::new(half.parse().expect("ip"), 1), data);
    }
    db.write_to(std::fs::File::create(path).expect("create"))
        .expect("write");
}

/// Fails the calling test with one line saying which tool is missing and
/// how README's test command installs it (no panic message, no backtrace).
pub fn missing_tool(line: &str) -> ! {
    eprintln!("{line}");
    std::panic::resume_unwind(Box::new(line.to_owned()))
}

/// `tool` on the PATH, or a one-line failure naming what installs it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            missing_tool(&format!(
                "this test needs `{name}` (Debian package {package}); `bash .ci/test` installs it"
            ))
        })
}

/// The Python of the venv `.ci/test` makes (`PULLSTATS_VENV`), with the
/// `deltalake` package.
pub fn venv_python() -> PathBuf {
    let Some(venv) = std::env::var_os("PULLSTATS_VENV") else {
        missing_tool(
            "this test needs the Python venv with deltalake that `bash .ci/test` makes (or set PULLSTATS_VENV)",
        )
    };
    let python = PathBuf::from(venv).join("bin/python");
    if !python.is_file() {
        missing_tool(&format!(
            "no Python at {}: run `bash .ci/test`, which makes the venv",
            python.display()
        ));
    }
    python
}

/// The independent Delta reader (`tests/delta_reader.py`, the `deltalake`
/// Python package) opens `table` (a path or a URL, with `env` for its
/// store) and counts `rows` rows with the documented schema.
pub fn assert_delta_reader_agrees(table: &Path, rows: u64, env: &[(&str, &str)]) {
    let out = Command::new(venv_python())
        .envs(env.iter().copied())
        .arg("tests/delta_reader.py")
        .arg(table)
        .arg(rows.to_string())
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "the deltalake reader disagrees about {}: {}{}",
        table.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
