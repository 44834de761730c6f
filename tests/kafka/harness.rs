//! The harness of the daemon tests: a tansu broker on a free loopback port,
//! daemons started and stopped as processes, and what the table says about
//! their progress.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::helpers::*;
use pullstats::table::sessions::{SessionStore, SessionStoreError};
use pullstats::table::{offset_app_id, state_app_id, Location};

pub fn tansu() -> PathBuf {
    let path = match std::env::var_os("TANSU") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".cargo/bin/tansu"),
    };
    if !path.exists() {
        missing_tool(&format!(
            "the Kafka tests need the tansu broker at {}: `bash .ci/test` installs it \
             (cargo install tansu --locked --features dynostore,libsql), or set TANSU",
            path.display()
        ));
    }
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A tansu broker on a loopback port, stopped on drop.
pub struct Broker {
    pub port: u16,
    storage: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// In memory (fast; lost when stopped).
    pub fn memory(dir: &Path) -> Self {
        Self::start(dir, "memory://tansu/".into())
    }

    /// In SQLite under `dir` (survives a restart).
    pub fn sqlite(dir: &Path) -> Self {
        Self::start(dir, "sqlite://broker.db".into())
    }

    fn start(dir: &Path, storage: String) -> Self {
        let mut b = Self {
            port: free_port(),
            storage,
            dir: dir.to_owned(),
            child: None,
        };
        b.restart();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let url = format!("tcp://{}", self.addr());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("broker log");
        let child = Command::new(tansu())
            .current_dir(&self.dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.storage])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        wait_until(Duration::from_secs(30), "the broker to listen", || {
            std::net::TcpStream::connect(self.addr()).is_ok()
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `topic` and its dead-letter topic `<topic>.dlq` (one partition),
    /// which the daemon requires.
    pub fn create_topic_with_dlq(&self, topic: &str, partitions: u32) {
        self.create_topic(topic, partitions);
        self.create_topic(&format!("{topic}.dlq"), 1);
    }

    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://{}", self.addr()),
            ])
            .args(["--partitions", &partitions.to_string(), topic])
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success(),
            "topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The end offset (last offset + 1) of each partition, found by reading
    /// the topic until `total` messages were seen. Not from ListOffsets:
    /// tansu 0.6 answers it with the last *batch's* base offset + 1 (see
    /// README, "Streaming ingest", for the reproduction).
    pub fn end_offsets(&self, topic: &str, partitions: u32, total: usize) -> BTreeMap<i32, i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("group.id", "pullstats-test-end-offsets")
            .set("fetch.wait.max.ms", "20")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        let mut ends = BTreeMap::new();
        let mut seen = 0;
        wait_until(
            Duration::from_secs(60),
            "every produced message to be readable",
            || {
                while let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    seen += 1;
                    let end = ends.entry(m.partition()).or_insert(0);
                    *end = (*end).max(m.offset() + 1);
                }
                seen >= total
            },
        );
        for p in 0..partitions as i32 {
            ends.entry(p).or_insert(0);
        }
        ends
    }

    /// Raw messages, as they are (for malformed input).
    pub fn produce_raw(&self, topic: &str, messages: &[(Option<&str>, Vec<u8>)]) {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("message.max.bytes", "10000000")
            .create()
            .expect("producer");
        for (key, payload) in messages {
            let mut record = BaseRecord::<str, [u8]>::to(topic).payload(payload);
            if let Some(k) = key {
                record = record.key(*k);
            }
            producer.send(record).map_err(|(e, _)| e).expect("send");
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn wait_until(timeout: Duration, what: impl std::fmt::Display, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the series `name` (with its labels, if any) in a
/// Prometheus text exposition.
pub fn counter(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `pullstats produce` of a file.
pub fn produce(broker: &Broker, topic: &str, file: &Path) {
    run_ok(
        pullstats()
            .args([
                "produce",
                "--brokers",
                &broker.addr(),
                "--topic",
                topic,
                "--from-file",
            ])
            .arg(file),
    );
}

/// A running daemon, killed on drop.
pub struct Daemon {
    child: Child,
    pub metrics_port: u16,
}

pub fn daemon(broker: &Broker, topic: &str, group: &str, table: &Path, extra: &[&str]) -> Daemon {
    daemon_at(
        broker,
        topic,
        group,
        table.as_os_str(),
        &table.with_extension("daemon.log"),
        None,
        extra,
    )
}

/// [`daemon`] into the table at `table` (a path or a URL), logging to `log`,
/// in the working directory `cwd` when given.
pub fn daemon_at(
    broker: &Broker,
    topic: &str,
    group: &str,
    table: &std::ffi::OsStr,
    log: &Path,
    cwd: Option<&Path>,
    extra: &[&str],
) -> Daemon {
    let metrics_port = free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("daemon log");
    let mut cmd = pullstats();
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let child = cmd
        .env("RUST_LOG", "warn,pullstats=debug")
        .args([
            "ingest",
            "--brokers",
            &broker.addr(),
            "--topic",
            topic,
            "--group",
            group,
            "--table",
        ])
        .arg(table)
        .args(if extra.contains(&"--flush-interval") {
            &[][..]
        } else {
            &["--flush-interval", "300ms"][..]
        })
        .args(["--idle-close", "2s"])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args([
            "-X",
            "session.timeout.ms=3000",
            "-X",
            "heartbeat.interval.ms=300",
        ])
        .args(extra)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    Daemon {
        child,
        metrics_port,
    }
}

impl Daemon {
    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM, and the daemon must exit 0.
    pub fn terminate_cleanly(&mut self) {
        let status = self.terminate(Duration::from_secs(30));
        assert!(status.success(), "exit 0 after SIGTERM, got {status}");
    }

    /// SIGHUP: the daemon checks its enrichment files at once.
    pub fn hangup(&self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill -HUP");
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop within {timeout:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)) else {
            return String::new();
        };
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temporary directory; kept (and printed) when PULLSTATS_KEEP_TEST_DIRS
/// is set, to read the broker and daemon logs after a failure.
pub fn test_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("PULLSTATS_KEEP_TEST_DIRS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("test dir: {}", dir.path().display());
    }
    dir
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

/// Per partition: (next offset, session state generation) that the table's
/// latest commit records; empty while there is no table.
pub fn committed_txns(
    table: impl Into<Location>,
    topic: &str,
    partitions: u32,
) -> BTreeMap<i32, (Option<i64>, Option<i64>)> {
    let table = table.into();
    runtime().block_on(async {
        if !pullstats::table::exists(&table).await.expect("table store") {
            return BTreeMap::new();
        }
        let t = pullstats::table::open(&table, pullstats::table::TableKind::Pulls)
            .await
            .expect("open");
        let mut out = BTreeMap::new();
        for p in 0..partitions as i32 {
            let txn = |id| pullstats::table::txn_version(&t, id);
            let offset = txn(offset_app_id(topic, p)).await.expect("txn");
            let generation = txn(state_app_id(topic, p)).await.expect("txn");
            out.insert(p, (offset, generation));
        }
        out
    })
}

/// Per partition: (next offset, whether its saved sessions are all closed),
/// as the table says.
pub fn table_progress(
    table: impl Into<Location>,
    topic: &str,
    partitions: u32,
) -> BTreeMap<i32, (Option<i64>, bool)> {
    let table = table.into();
    let committed = committed_txns(&table, topic, partitions);
    if committed.is_empty() {
        return BTreeMap::new();
    }
    let runtime = runtime();
    let t = runtime
        .block_on(pullstats::table::open(
            &table,
            pullstats::table::TableKind::Pulls,
        ))
        .expect("open");
    let store = SessionStore::new(runtime.handle().clone(), &t, topic);
    // The store blocks on the runtime: off its threads.
    std::thread::scope(|s| {
        s.spawn(|| {
            committed
                .into_iter()
                .map(|(p, (offset, generation))| {
                    let closed = generation.is_some_and(|g| match store.load(p, g) {
                        Ok(state) => state.is_empty(),
                        // The daemon committed a newer state since
                        // `committed` was read, and pruned this one: this
                        // poll does not know, the next reads the newer one.
                        // A state the latest commit still names must exist.
                        Err(SessionStoreError::Read { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound
                                && committed_txns(&table, topic, partitions)
                                    .get(&p)
                                    .map(|c| c.1)
                                    != Some(Some(g)) =>
                        {
                            false
                        }
                        Err(e) => panic!("state of partition {p}: {e}"),
                    });
                    (p, (offset, closed))
                })
                .collect()
        })
        .join()
        .expect("state reader")
    })
}

/// Waits until the table holds every offset and every session is closed.
pub fn wait_done(
    table: impl Into<Location>,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    timeout: Duration,
) {
    let table = table.into();
    let last = std::cell::RefCell::new(BTreeMap::new());
    wait_until(timeout, Behind { ends, last: &last }, || {
        let progress = table_progress(&table, topic, ends.len() as u32);
        let done = ends.iter().all(|(p, end)| {
            *end == 0
                || progress
                    .get(p)
                    .is_some_and(|(o, closed)| *o == Some(*end) && *closed)
        });
        *last.borrow_mut() = progress;
        done
    });
}

/// What [`wait_done`] waited for, and where the table last stood.
struct Behind<'a> {
    ends: &'a BTreeMap<i32, i64>,
    last: &'a std::cell::RefCell<BTreeMap<i32, (Option<i64>, bool)>>,
}

impl std::fmt::Display for Behind<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the daemon to ingest everything: each partition's end {:?}; \
             the table's next offset and whether its sessions are closed {:?}",
            self.ends,
            self.last.borrow()
        )
    }
}

/// The file-ingest reference table of `events`.
/// Generates `count` events with `seed`, produces them to a new topic
/// `events` of `partitions` (and its dead-letter topic); returns the file
/// and each partition's end offset.
pub fn generated_topic(
    dir: &Path,
    broker: &Broker,
    partitions: u32,
    count: usize,
    seed: u64,
) -> (PathBuf, BTreeMap<i32, i64>) {
    broker.create_topic_with_dlq("events", partitions);
    let (events, _) = generate(
        dir,
        "events.jsonl",
        &["--events", &count.to_string(), "--seed", &seed.to_string()],
    );
    produce(broker, "events", &events);
    let ends = broker.end_offsets("events", partitions, count);
    (events, ends)
}

pub fn reference(dir: &Path, events: &Path) -> PathBuf {
    let table = dir.join("reference");
    ingest(events, &table);
    table
}
