//! `pullstats ingest --brokers … --topic …`: the streaming ingest daemon.
//!
//! ```text
//!  Kafka ─poll─▶ consumer thread: decode ─▶ sessionize (one lane per partition) ─▶ enrich ─▶ batches
//!                     │  bad messages ─▶ <topic>.dlq (reason + position headers)        │
//!                     │  every flush: state files, then Commit{txns} ───────────────────▶ writer task
//!                     ◀────────────── committed version / conflict ─────────────────────┘
//! ```
//!
//! Exactly-once: work is done in *epochs*. An epoch ends (by rows, bytes or
//! time) with one Delta commit per table that carries, as application
//! transactions, each partition's next offset and the generation of its
//! saved sessionizer state (open sessions at the cut). The rejected-requests
//! table commits first, the pulls table second; on a restart the pulls
//! table's offsets say where to resume, and the rejected table's offsets say
//! which replayed messages were already counted there (and dead-lettered).
//! A daemon that lost a partition in a rebalance is fenced by Delta's
//! conflict check on those transactions; any failed commit drops the
//! epoch's work and redoes it from the table. Kafka's own committed offsets
//! follow the table's, for lag monitoring only.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use arrow::array::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::DeltaTable;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::cli::{IngestArgs, KafkaArgs, StartOffset};
use crate::metrics::{self, Metrics};
use crate::pipeline::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, Position};
use crate::pipeline::kafka::{self, GroupContext, GroupEvent, KafkaDeadLetters, Resumer};
use crate::pipeline::Pipeline;
use crate::table::maintenance::{self, CompactOptions, CompactReport, DaySelection};
use crate::table::sessions::SessionStore;
use crate::table::{self, TableError, TableKind, TableWriter};

/// How long one poll waits for a message.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often quiet partitions are checked for idle closing.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Bound on broker round trips made by the loop itself (watermarks).
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often consumer lag is measured (a broker round trip per partition;
/// against tansu each one also stalls fetching for a while).
const LAG_INTERVAL: Duration = Duration::from_secs(15);
/// Attempts at re-reading the table after a failed commit before giving up.
const MAX_REWIND_ATTEMPTS: u32 = 8;

pub use crate::table::{offset_app_id, state_app_id};

/// Kafka's topic name rule (it also keeps state paths safe).
fn check_topic(topic: &str) -> anyhow::Result<()> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        bail!("`{topic}` is not a valid Kafka topic name (letters, digits, `.`, `_`, `-`)")
    }
}

/// What a partition resumes from, read from both tables.
#[derive(Debug, Clone, Copy)]
struct PartitionResume {
    partition: i32,
    offset: Option<i64>,
    generation: Option<i64>,
    rejected_offset: Option<i64>,
}

/// The tables as read for an assignment, and what they say per partition.
struct ResumeSet {
    pulls: DeltaTable,
    rejected: DeltaTable,
    parts: Vec<PartitionResume>,
}

/// Reads resume points from the tables (runs inside librdkafka's rebalance
/// callback on the consumer thread, hence `block_on`).
struct TableResumer {
    runtime: tokio::runtime::Handle,
    pulls_path: std::path::PathBuf,
    topic: String,
}

impl TableResumer {
    async fn read(&self, partitions: &[i32]) -> anyhow::Result<ResumeSet> {
        let pulls = table::open(&self.pulls_path, TableKind::Pulls).await?;
        let rejected_path = table::rejected_path(&self.pulls_path);
        let rejected = table::open(&rejected_path, TableKind::Rejected).await?;
        let mut parts = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let offset_id = offset_app_id(&self.topic, partition);
            parts.push(PartitionResume {
                partition,
                offset: table::txn_version(&pulls, offset_id.clone()).await?,
                generation: table::txn_version(&pulls, state_app_id(&self.topic, partition))
                    .await?,
                rejected_offset: table::txn_version(&rejected, offset_id).await?,
            });
        }
        Ok(ResumeSet {
            pulls,
            rejected,
            parts,
        })
    }
}

impl Resumer for TableResumer {
    type Resume = ResumeSet;

    fn resume(&self, partitions: &[i32]) -> anyhow::Result<(Vec<Option<i64>>, ResumeSet)> {
        let set = self.runtime.block_on(self.read(partitions))?;
        Ok((set.parts.iter().map(|p| p.offset).collect(), set))
    }
}

/// Requests to the writer task.
enum WriterCmd {
    Pulls(RecordBatch),
    Rejected(RecordBatch),
    Commit {
        pulls_txns: Vec<Transaction>,
        rejected_txns: Vec<Transaction>,
        metadata: HashMap<String, Value>,
        reply: oneshot::Sender<Result<Option<u64>, CommitFailure>>,
    },
    /// Drop uncommitted files and continue from these tables.
    Rebase {
        pulls: Box<DeltaTable>,
        rejected: Box<DeltaTable>,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
}

#[derive(Debug)]
enum CommitFailure {
    /// Another writer committed one of our partitions: we no longer own it.
    Conflict(TableError),
    Other(anyhow::Error),
}

/// The writer task: Parquet encoding and Delta commits, off the consumer thread.
async fn writer_task(
    mut pulls: TableWriter,
    mut rejected: TableWriter,
    mut rx: mpsc::Receiver<WriterCmd>,
) {
    let mut failed: Option<anyhow::Error> = None;
    while let Some(cmd) = rx.recv().await {
        match cmd {
            WriterCmd::Pulls(batch) if failed.is_none() => {
                failed = pulls.write(batch).await.err().map(anyhow::Error::from);
            }
            WriterCmd::Rejected(batch) if failed.is_none() => {
                failed = rejected.write(batch).await.err().map(anyhow::Error::from);
            }
            WriterCmd::Pulls(_) | WriterCmd::Rejected(_) => {}
            WriterCmd::Commit {
                pulls_txns,
                rejected_txns,
                metadata,
                reply,
            } => {
                let result = match failed.take() {
                    Some(e) => Err(CommitFailure::Other(e.context("writing Parquet failed"))),
                    None => {
                        commit_both(
                            &mut pulls,
                            &mut rejected,
                            pulls_txns,
                            rejected_txns,
                            metadata,
                        )
                        .await
                    }
                };
                if result.is_err() {
                    let _ = pulls.abort().await;
                    let _ = rejected.abort().await;
                }
                let _ = reply.send(result);
            }
            WriterCmd::Rebase {
                pulls: p,
                rejected: r,
                reply,
            } => {
                failed = None;
                let result = async {
                    pulls.rebase(*p).await?;
                    rejected.rebase(*r).await?;
                    Ok(())
                }
                .await;
                let _ = reply.send(result);
            }
        }
    }
}

async fn commit_both(
    pulls: &mut TableWriter,
    rejected: &mut TableWriter,
    pulls_txns: Vec<Transaction>,
    rejected_txns: Vec<Transaction>,
    metadata: HashMap<String, Value>,
) -> Result<Option<u64>, CommitFailure> {
    let classify = |e: TableError| {
        if e.is_conflict() {
            CommitFailure::Conflict(e)
        } else {
            CommitFailure::Other(e.into())
        }
    };
    rejected
        .commit(metadata.clone(), rejected_txns)
        .await
        .map_err(classify)?;
    pulls.commit(metadata, pulls_txns).await.map_err(classify)
}

/// A partition this daemon holds.
#[derive(Debug)]
struct Held {
    /// Next offset according to the table.
    committed: Option<i64>,
    /// Next offset expected from Kafka.
    next: Option<i64>,
    /// Committed session state generation.
    generation: Option<i64>,
    /// Messages below this offset were already counted in the rejected
    /// table and dead-lettered: replays skip both.
    counted_from: i64,
    last_message: Instant,
    /// Sessions were closed for quiet since the last commit.
    closed_idle: bool,
    /// How many times the consumer was sent back after a jump past `next`.
    gap_step: u32,
}

impl Held {
    fn from_resume(r: &PartitionResume) -> Self {
        Self {
            committed: r.offset,
            next: r.offset,
            generation: r.generation,
            counted_from: r.rejected_offset.unwrap_or(i64::MIN),
            last_message: Instant::now(),
            closed_idle: false,
            gap_step: 0,
        }
    }

    fn dirty(&self) -> bool {
        self.next != self.committed || self.closed_idle
    }
}

/// A dead-letter sink for replayed messages whose letters were already sent.
struct AlreadySent;

impl DeadLetterSink for AlreadySent {
    fn send(&mut self, _: DeadLetter<'_>) -> Result<(), DeadLetterError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DeadLetterError> {
        Ok(())
    }
    fn count(&self) -> u64 {
        0
    }
}

/// Everything the consumer thread owns.
struct Daemon {
    topic: String,
    settings: KafkaArgs,
    max_message_bytes: usize,
    consumer: BaseConsumer<GroupContext<TableResumer>>,
    pipeline: Pipeline,
    dlq: KafkaDeadLetters,
    store: SessionStore,
    writer: mpsc::Sender<WriterCmd>,
    held: BTreeMap<i32, Held>,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
    epoch_started: Instant,
    epoch_bytes: u64,
    epoch_actions_base: u64,
    last_idle_check: Instant,
    last_lag_update: Instant,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let kafka_args = args.kafka.clone();
    let (Some(brokers), Some(topic)) = (kafka_args.brokers.clone(), kafka_args.topic.clone())
    else {
        bail!("the daemon needs --brokers and --topic");
    };
    check_topic(&topic)?;
    let dlq_topic = kafka_args
        .dlq_topic
        .clone()
        .unwrap_or_else(|| format!("{topic}.dlq"));
    check_topic(&dlq_topic)?;
    let pipeline = crate::cmd::ingest::build_pipeline(&args)?;

    // Both tables exist before any partition is assigned.
    let pulls_table = table::open_or_create(&args.table, TableKind::Pulls).await?;
    let rejected_path = table::rejected_path(&args.table);
    let rejected_table = table::open_or_create(&rejected_path, TableKind::Rejected).await?;
    let writer = TableWriter::new(&args.table, pulls_table)?;
    let rejected_writer = TableWriter::new(&rejected_path, rejected_table)?;

    let metrics = Arc::new(Metrics::default());
    let _server = match kafka_args.metrics_addr {
        Some(addr) => Some(
            metrics::serve(addr, metrics.clone())
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?,
        ),
        None => None,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let signalled = Arc::new(tokio::sync::Notify::new());
    spawn_signal_handler(shutdown.clone(), signalled.clone());

    let config = kafka::client_config(
        &brokers,
        &consumer_defaults(&kafka_args),
        &kafka_args.settings,
    )?;
    let producer_settings = kafka::producer_settings(&kafka_args.settings);
    let producer_config = kafka::client_config(
        &brokers,
        &[("client.id", format!("pullstats-dlq-{}", std::process::id()))],
        &producer_settings,
    )?;
    let start = start_offset(kafka_args.start_offset);
    let resumer = TableResumer {
        runtime: tokio::runtime::Handle::current(),
        pulls_path: args.table.clone(),
        topic: topic.clone(),
    };
    let consumer = kafka::subscribe(&config, GroupContext::new(&topic, start, resumer), &topic)?;
    let dlq = KafkaDeadLetters::new(&producer_config, &dlq_topic, kafka_args.shutdown_timeout)?;

    let (tx, rx) = mpsc::channel(4);
    let writer_task = tokio::spawn(writer_task(writer, rejected_writer, rx));
    let compactor = kafka_args.auto_compact.then(|| {
        tokio::spawn(auto_compact(
            args.table.clone(),
            kafka_args.auto_compact_interval,
            kafka_args.target_file_size,
            metrics.clone(),
        ))
    });
    let daemon = Daemon {
        store: SessionStore::new(&args.table, &topic),
        topic: topic.clone(),
        settings: kafka_args.clone(),
        max_message_bytes: args.max_line_bytes,
        consumer,
        pipeline,
        dlq,
        writer: tx,
        held: BTreeMap::new(),
        metrics,
        shutdown,
        epoch_started: Instant::now(),
        epoch_bytes: 0,
        epoch_actions_base: 0,
        last_idle_check: Instant::now(),
        last_lag_update: Instant::now(),
    };
    tracing::info!(%brokers, %topic, group = %kafka_args.group, dlq = %dlq_topic, table = %args.table.display(), "daemon started");
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("pullstats-consumer".into())
        .spawn(move || {
            let _ = done_tx.send(daemon.run());
        })
        .context("cannot start the consumer thread")?;
    let result = wait_for_daemon(done_rx, signalled, kafka_args.shutdown_timeout).await;
    writer_task.abort();
    if let Some(c) = compactor {
        // A compaction cut short commits nothing; its files are orphans
        // that `pullstats vacuum` deletes.
        c.abort();
    }
    result
}

/// `--auto-compact`: every `interval`, compacts the closed days that no file
/// reached for `interval` (both tables). Compaction commits change no data,
/// so they never conflict with the epochs' appends.
async fn auto_compact(
    table: PathBuf,
    interval: Duration,
    target_bytes: u64,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let now = chrono::Utc::now();
        let options = CompactOptions {
            days: DaySelection::Closed,
            target_bytes,
            today: now.date_naive(),
            quiet_for: Some(interval),
            now_ms: now.timestamp_millis(),
        };
        let tables = match crate::cmd::maintenance_tables(&table) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("auto-compaction skipped: {e:#}");
                continue;
            }
        };
        for (path, kind) in tables {
            let mut done = |r: &CompactReport| {
                metrics.compacted_days.fetch_add(1, Ordering::Relaxed);
                tracing::info!(table = %path.display(), "compacted {}", crate::cmd::compact::describe(r));
            };
            if let Err(e) = maintenance::compact(&path, kind, &options, &mut done).await {
                tracing::warn!(table = %path.display(), "auto-compaction failed: {e:#}; trying again in {interval:?}");
            }
        }
    }
}

/// Waits for the consumer thread; after a signal, at most `timeout`.
async fn wait_for_daemon(
    mut done: oneshot::Receiver<anyhow::Result<()>>,
    signalled: Arc<tokio::sync::Notify>,
    timeout: Duration,
) -> anyhow::Result<()> {
    tokio::select! {
        r = &mut done => return r.unwrap_or_else(|_| Err(anyhow!("the consumer thread died"))),
        () = signalled.notified() => {}
    }
    match tokio::time::timeout(timeout, done).await {
        Ok(r) => r.unwrap_or_else(|_| Err(anyhow!("the consumer thread died"))),
        Err(_) => bail!(
            "shutdown took longer than {timeout:?}; the uncommitted work will be redone on restart"
        ),
    }
}

fn spawn_signal_handler(flag: Arc<AtomicBool>, signalled: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        tracing::info!("shutting down: no more fetching; committing what was consumed");
        flag.store(true, Ordering::SeqCst);
        signalled.notify_one();
    });
}

/// librdkafka consumer settings the daemon picks (each can be changed with
/// -X), the fetch settings included.
fn consumer_defaults(args: &KafkaArgs) -> Vec<(&'static str, String)> {
    vec![
        ("group.id", args.group.clone()),
        ("client.id", format!("pullstats-{}", std::process::id())),
        ("session.timeout.ms", "10000".into()),
        ("heartbeat.interval.ms", "1000".into()),
        ("reconnect.backoff.ms", "100".into()),
        ("reconnect.backoff.max.ms", "5000".into()),
    ]
    .into_iter()
    .chain(kafka::fetch_defaults())
    .collect()
}

impl Daemon {
    fn run(mut self) -> anyhow::Result<()> {
        self.require_dlq_topic()?;
        loop {
            self.handle_group_events()?;
            if self.shutdown.load(Ordering::SeqCst) {
                return self.stop();
            }
            self.poll_once()?;
            if self.last_idle_check.elapsed() >= IDLE_CHECK_INTERVAL {
                self.last_idle_check = Instant::now();
                self.close_quiet_partitions()?;
                self.update_gauges();
                if self.last_lag_update.elapsed() >= LAG_INTERVAL {
                    self.last_lag_update = Instant::now();
                    self.update_lag();
                }
            }
            if self.epoch_due() {
                self.commit_epoch()?;
            }
        }
    }

    /// Dead letters are confirmed before each commit, so a missing
    /// dead-letter topic would stall every commit: refuse to start instead.
    /// Waits (logging once) while the brokers cannot be reached.
    fn require_dlq_topic(&self) -> anyhow::Result<()> {
        let mut wait = Duration::from_millis(200);
        loop {
            let found = kafka::topic_exists(
                &self.consumer,
                self.dlq.topic(),
                "dead-letter",
                BROKER_CALL_TIMEOUT,
            )?;
            if found.is_some() {
                self.consumer.context().connectivity().ok();
                return Ok(());
            }
            if self.shutdown.load(Ordering::SeqCst) {
                bail!("stopped before the brokers answered");
            }
            self.consumer
                .context()
                .connectivity()
                .unreachable("checking the dead-letter topic");
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    fn stop(mut self) -> anyhow::Result<()> {
        self.commit_epoch()?;
        if self.held.values().any(Held::dirty) {
            bail!("the final commit failed; the uncommitted work will be redone on restart");
        }
        tracing::info!("committed; leaving the group");
        self.commit_kafka_offsets(CommitMode::Sync);
        Ok(())
    }

    fn poll_once(&mut self) -> anyhow::Result<()> {
        let Some(result) = self.consumer.poll(POLL_TIMEOUT) else {
            return Ok(());
        };
        let message = match result {
            Ok(m) => m,
            Err(e) => {
                self.consumer.context().connectivity().failed(&e, "fetch");
                return Ok(());
            }
        };
        self.consumer.context().connectivity().ok();
        let (partition, offset) = (message.partition(), message.offset());
        let payload = message.payload().map(<[u8]>::to_vec);
        drop(message);
        self.on_message(partition, offset, payload.as_deref())
    }

    fn on_message(
        &mut self,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
    ) -> anyhow::Result<()> {
        let Some(next) = self.held.get(&partition).map(|h| h.next) else {
            return Ok(()); // fetched before a revocation
        };
        match next {
            Some(next) if offset < next => return Ok(()), // already in the table
            Some(next) if offset > next && !self.resolve_gap(partition, next, offset) => {
                return Ok(());
            }
            _ => {}
        }
        let Some(held) = self.held.get_mut(&partition) else {
            return Ok(());
        };
        held.gap_step = 0;
        held.next = Some(offset + 1);
        held.last_message = Instant::now();
        held.closed_idle = false;
        let replay = offset < held.counted_from;
        let len = payload.map_or(0, <[u8]>::len);
        self.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .bytes_in
            .fetch_add(len as u64, Ordering::Relaxed);
        self.epoch_bytes += len as u64;
        self.pipeline.set_count_rejected(!replay);
        let position = Position::Kafka { partition, offset };
        let mut already_sent = AlreadySent;
        let dead: &mut dyn DeadLetterSink = if replay {
            &mut already_sent
        } else {
            &mut self.dlq
        };
        let max = self.max_message_bytes;
        let result = match payload {
            None => {
                self.pipeline.count_line();
                self.pipeline
                    .reject("message has no value", b"", &self.topic, position, dead)
            }
            Some(value) if value.len() > max => {
                self.pipeline.count_line();
                let reason = format!(
                    "message is longer than {max} bytes ({} bytes; the first {max} are kept)",
                    value.len()
                );
                self.pipeline
                    .reject(&reason, &value[..max], &self.topic, position, dead)
            }
            Some(value) => {
                self.pipeline
                    .push_line_in(partition, value, &self.topic, position, dead)
            }
        };
        // A dead letter that cannot be queued must not be skipped: redo the
        // epoch (it will be retried) instead of committing past it.
        if let Err(e) = result {
            tracing::warn!("{e}; redoing the uncommitted work");
            return self.rewind();
        }
        self.send_batches()
    }

    /// A message past `next` arrived. It may have been fetched for an
    /// earlier assignment, or the broker cannot start a fetch inside a record
    /// batch (tansu 0.6 answers from the next batch): seek back, further each
    /// time, and skip what the table already has. Only when that keeps
    /// jumping is it a real gap (retention, compaction, transaction markers),
    /// accepted with a warning. Returns whether to take the message.
    fn resolve_gap(&mut self, partition: i32, next: i64, offset: i64) -> bool {
        const SEEK_BACK: [i64; 4] = [0, 1_000, 10_000, 100_000];
        let Some(held) = self.held.get_mut(&partition) else {
            return false;
        };
        let Some(&back) = SEEK_BACK.get(held.gap_step as usize) else {
            tracing::warn!(partition, "offsets {next}..{offset} are not in the topic (retention, compaction or transaction markers)");
            return true;
        };
        held.gap_step += 1;
        let at = Offset::Offset((next - back).max(0));
        tracing::debug!(
            partition,
            next,
            got = offset,
            "jumped past the next offset; seeking back to {at:?}"
        );
        if let Err(e) = self
            .consumer
            .seek(&self.topic, partition, at, BROKER_CALL_TIMEOUT)
        {
            tracing::debug!(partition, "cannot seek: {e}");
        }
        false
    }

    fn send_batches(&mut self) -> anyhow::Result<()> {
        let pulls = self.pipeline.take_ready().into_iter().map(WriterCmd::Pulls);
        let rejected = self
            .pipeline
            .take_rejected()
            .into_iter()
            .map(WriterCmd::Rejected);
        for cmd in pulls.chain(rejected) {
            self.send(cmd)?;
        }
        Ok(())
    }

    fn send(&self, cmd: WriterCmd) -> anyhow::Result<()> {
        self.writer
            .blocking_send(cmd)
            .map_err(|_| anyhow!("the table writer stopped"))
    }

    /// Sends a request made with a reply channel and waits for the reply.
    fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> WriterCmd) -> anyhow::Result<T> {
        let (reply, rx) = oneshot::channel();
        self.send(request(reply))?;
        rx.blocking_recv()
            .map_err(|_| anyhow!("the table writer stopped"))
    }

    fn epoch_due(&self) -> bool {
        let actions = self.pipeline.actions() - self.epoch_actions_base;
        self.epoch_started.elapsed() >= self.settings.flush_interval
            || actions >= self.settings.flush_rows
            || self.epoch_bytes >= self.settings.flush_bytes
    }

    fn reset_epoch(&mut self) {
        self.epoch_started = Instant::now();
        self.epoch_bytes = 0;
        self.epoch_actions_base = self.pipeline.actions();
    }

    fn handle_group_events(&mut self) -> anyhow::Result<()> {
        for event in self.consumer.context().take_events() {
            self.metrics.rebalances.fetch_add(1, Ordering::Relaxed);
            match event {
                GroupEvent::Revoked => {
                    self.pipeline.discard();
                    self.held.clear();
                    self.metrics.assigned_partitions.store(0, Ordering::Relaxed);
                }
                GroupEvent::Assigned { resume, .. } => self.apply_resume(resume)?,
                GroupEvent::Failed(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Continues from what the tables say: writer rebased, lanes restored.
    fn apply_resume(&mut self, set: ResumeSet) -> anyhow::Result<()> {
        let (pulls, rejected) = (Box::new(set.pulls), Box::new(set.rejected));
        self.ask(|reply| WriterCmd::Rebase {
            pulls,
            rejected,
            reply,
        })??;
        self.pipeline.discard();
        self.held.clear();
        for part in &set.parts {
            let state = match part.generation {
                Some(g) => Some(self.store.load(part.partition, g)?),
                None => None,
            };
            self.pipeline.restore_lane(part.partition, state);
            self.held.insert(part.partition, Held::from_resume(part));
        }
        self.reset_epoch();
        self.metrics
            .assigned_partitions
            .store(self.held.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Drops the epoch's work and continues from the tables' last commit.
    fn rewind(&mut self) -> anyhow::Result<()> {
        self.metrics.aborted_epochs.fetch_add(1, Ordering::Relaxed);
        let partitions: Vec<i32> = self.held.keys().copied().collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resumed = self
                .consumer
                .context()
                .resumer()
                .resume(&partitions)
                .and_then(|(_, set)| {
                    let parts = set.parts.clone();
                    self.apply_resume(set)?;
                    Ok(parts)
                });
            match resumed {
                Ok(parts) => return self.seek(&parts),
                Err(e) if attempt < MAX_REWIND_ATTEMPTS => {
                    let wait = Duration::from_millis(200 << attempt.min(6));
                    tracing::warn!("cannot re-read the table ({e:#}); retrying in {wait:?}");
                    std::thread::sleep(wait);
                }
                Err(e) => return Err(e.context("cannot continue from the table")),
            }
        }
    }

    fn seek(&mut self, parts: &[PartitionResume]) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            let at = p
                .offset
                .map_or(start_offset(self.settings.start_offset), Offset::Offset);
            tpl.add_partition_offset(&self.topic, p.partition, at)?;
        }
        if tpl.count() > 0 {
            self.consumer
                .seek_partitions(tpl, BROKER_CALL_TIMEOUT)
                .context("cannot rewind the consumer")?;
        }
        Ok(())
    }
}

/// Where a partition the table has never seen starts.
fn start_offset(start: StartOffset) -> Offset {
    match start {
        StartOffset::Earliest => Offset::Beginning,
        StartOffset::Latest => Offset::End,
    }
}

/// Epoch commits, quiet partitions and gauges.
impl Daemon {
    /// Ends the epoch: seals batches, confirms dead letters, saves session
    /// states, commits both tables with the offsets; on failure, redoes the
    /// epoch from the table.
    fn commit_epoch(&mut self) -> anyhow::Result<()> {
        let dirty: Vec<i32> = self
            .held
            .iter()
            .filter(|(_, h)| h.dirty())
            .map(|(p, _)| *p)
            .collect();
        if dirty.is_empty() {
            self.reset_epoch();
            return Ok(());
        }
        self.pipeline.flush_batches()?;
        self.send_batches()?;
        if let Err(e) = self.dlq.flush() {
            tracing::warn!("{e}; redoing the uncommitted work");
            return self.rewind();
        }
        let mut pulls_txns = Vec::new();
        let mut rejected_txns = Vec::new();
        let mut cut = BTreeMap::new();
        let now_ms = chrono::Utc::now().timestamp_millis();
        for &p in &dirty {
            let held = &self.held[&p];
            let Some(next) = held.next else { continue };
            let state = self.pipeline.snapshot_lane(p).unwrap_or_default();
            let generation = self.store.save(p, held.generation, &state)?;
            pulls_txns.push(Transaction::new_with_last_update(
                offset_app_id(&self.topic, p),
                next,
                Some(now_ms),
            ));
            pulls_txns.push(Transaction::new_with_last_update(
                state_app_id(&self.topic, p),
                generation,
                Some(now_ms),
            ));
            rejected_txns.push(Transaction::new_with_last_update(
                offset_app_id(&self.topic, p),
                next,
                Some(now_ms),
            ));
            cut.insert(p, (next, generation));
        }
        let metadata = HashMap::from([(
            "pullstats".to_owned(),
            json!({ "daemon": format!("pid {}", std::process::id()), "topic": self.topic, "stats": self.pipeline.stats(),
                    "partitions": cut.iter().map(|(p, (o, g))| (p.to_string(), json!({"next_offset": o, "sessions": g}))).collect::<serde_json::Map<_, _>>() }),
        )]);
        let started = Instant::now();
        let outcome = self.ask(|reply| WriterCmd::Commit {
            pulls_txns,
            rejected_txns,
            metadata,
            reply,
        })?;
        self.metrics.observe_commit(started.elapsed());
        match outcome {
            Ok(version) => {
                self.committed(&cut, version);
                Ok(())
            }
            Err(CommitFailure::Conflict(e)) => {
                self.metrics
                    .commit_conflicts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("another writer committed one of this daemon's partitions ({e}); redoing from the table");
                self.rewind()
            }
            Err(CommitFailure::Other(e)) => {
                tracing::error!("commit failed: {e:#}; redoing from the table");
                self.rewind()
            }
        }
    }

    fn committed(&mut self, cut: &BTreeMap<i32, (i64, i64)>, version: Option<u64>) {
        for (p, &(next, generation)) in cut {
            if let Some(held) = self.held.get_mut(p) {
                // Keep the previous state too: a daemon taking the partition
                // over may have just read it.
                if let Some(previous) = held.generation {
                    self.store.prune(*p, previous);
                }
                held.committed = Some(next);
                held.generation = Some(generation);
                held.counted_from = held.counted_from.max(next);
                held.closed_idle = false;
            }
        }
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        let stats = self.pipeline.stats();
        self.metrics
            .requests
            .store(stats.requests, Ordering::Relaxed);
        self.metrics
            .actions_out
            .store(stats.actions, Ordering::Relaxed);
        self.metrics.bad.store(stats.bad, Ordering::Relaxed);
        self.metrics
            .dead_lettered
            .store(self.dlq.count(), Ordering::Relaxed);
        tracing::debug!(version = ?version, partitions = ?cut, "committed");
        self.reset_epoch();
        self.commit_kafka_offsets(CommitMode::Async);
    }

    /// Mirrors the table's offsets into Kafka (for lag monitoring tools).
    fn commit_kafka_offsets(&self, mode: CommitMode) {
        let mut tpl = TopicPartitionList::new();
        for (p, held) in &self.held {
            if let Some(offset) = held.committed {
                let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(offset));
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, mode) {
                tracing::debug!("cannot commit offsets to Kafka (monitoring only): {e}");
            }
        }
    }

    fn update_lag(&self) {
        if self.consumer.context().connectivity().is_down() {
            return;
        }
        let mut lag = BTreeMap::new();
        for (p, held) in &self.held {
            if let Ok((low, high)) =
                self.consumer
                    .fetch_watermarks(&self.topic, *p, BROKER_CALL_TIMEOUT)
            {
                lag.insert(*p, (high - held.next.unwrap_or(low)).max(0));
            }
        }
        self.metrics.set_lag(lag);
    }

    fn update_gauges(&self) {
        self.metrics
            .open_sessions
            .store(self.pipeline.open_sessions() as u64, Ordering::Relaxed);
        self.metrics
            .late
            .store(self.pipeline.stats().late, Ordering::Relaxed);
    }

    /// Closes the sessions of partitions that are caught up and have been
    /// silent for `--idle-close`, so that their last pulls land.
    fn close_quiet_partitions(&mut self) -> anyhow::Result<()> {
        if self.consumer.context().connectivity().is_down() {
            return Ok(());
        }
        let quiet: Vec<i32> = self
            .held
            .iter()
            .filter(|(p, h)| {
                !h.closed_idle
                    && h.last_message.elapsed() >= self.settings.idle_close
                    && self.pipeline.lane_has_sessions(**p)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in quiet {
            let Ok((_, high)) = self
                .consumer
                .fetch_watermarks(&self.topic, p, BROKER_CALL_TIMEOUT)
            else {
                continue;
            };
            let Some(held) = self.held.get_mut(&p) else {
                continue;
            };
            if held.next.is_some_and(|n| n >= high) {
                tracing::debug!(partition = p, "partition quiet: closing its sessions");
                self.pipeline.close_lane(p)?;
                held.closed_idle = true;
            }
        }
        self.send_batches()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(check_topic("registry.events-v1_x").is_ok());
        assert!(check_topic("").is_err());
        assert!(check_topic("..").is_err());
        assert!(check_topic("a/b").is_err());
        assert!(check_topic(&"x".repeat(250)).is_err());
    }

    #[test]
    fn app_ids_name_topic_and_partition() {
        assert_eq!(offset_app_id("t", 3), "pullstats/kafka/t/3/offset");
        assert_eq!(state_app_id("t", 3), "pullstats/kafka/t/3/sessions");
    }
}
