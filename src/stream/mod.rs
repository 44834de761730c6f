//! The streaming engine: numbered messages from a [`Source`] into the pulls
//! table, exactly once, for as long as the process runs.
//!
//! ```text
//!  Source ─poll─▶ engine thread: decode ─▶ sessionize (one lane per partition) ─▶ enrich ─▶ batches
//!  (Kafka)            │  bad messages ─▶ dead-letter sink (reason + position)             │
//!                     │  every flush: state files, then Commit{txns} ─────────────────────▶ writer task
//!                     ◀─────────────── committed version / conflict ───────────────────────┘
//!  reload task ──(new enrichment data, swapped in between two messages)──▶ engine thread
//! ```
//!
//! Exactly-once: work is done in *epochs*. An epoch ends (by rows, bytes or
//! time) with one Delta commit per table that carries, as application
//! transactions, each lane's next offset and the generation of its saved
//! sessionizer state (open sessions at the cut). The rejected-requests table
//! commits first, the pulls table second; on a restart the pulls table's
//! offsets say where to resume, and the rejected table's offsets say which
//! replayed messages were already counted there (and dead-lettered). An
//! engine that lost a lane to another writer is fenced by Delta's conflict
//! check on those transactions; any failed commit drops the epoch's work and
//! redoes it from the table.
//!
//! The engine knows its input only through [`Source`]: Kafka
//! ([`kafka::KafkaSource`]) today; anything that numbers its messages per
//! lane, can be positioned, and takes work away in whole assignments can
//! drive the same epochs, commits and saved state.

pub mod compact;
mod engine;
mod epoch;
pub mod kafka;
pub mod queue;
pub mod reload;
mod resume;
pub mod source;
pub mod wal;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use tokio::sync::{oneshot, Notify};

use crate::metrics::Metrics;
use crate::pipeline::dead_letter::DeadLetterSink;
use crate::pipeline::enrich::EnrichData;
use crate::pipeline::kafka::KafkaSourceError;
use crate::pipeline::{Lane, Pipeline, PipelineError};
use crate::table::sessions::{SessionStore, SessionStoreError};
use crate::table::{self, TableError, TableKind, TableWriter};

pub use resume::{PartitionResume, ResumeSet, TableResumer};
pub use source::{Source, SourceEvent};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("`{0}` is not a valid Kafka topic name (letters, digits, `.`, `_`, `-`)")]
    TopicName(String),
    #[error(transparent)]
    Kafka(#[from] KafkaSourceError),
    #[error("Kafka {action} on topic {topic}: {source}")]
    Broker {
        topic: String,
        action: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error(
        "cannot read the table's offsets for partitions {partitions:?} of topic {topic}: {source}"
    )]
    Resume {
        topic: String,
        partitions: Vec<Lane>,
        #[source]
        source: Box<TableError>,
    },
    #[error("session state of topic {topic} partition {partition}: {source}")]
    SessionState {
        topic: String,
        partition: Lane,
        #[source]
        source: SessionStoreError,
    },
    #[error("topic {topic} partition {partition} offset {offset}: {source}")]
    Pipeline {
        topic: String,
        partition: Lane,
        offset: i64,
        #[source]
        source: PipelineError,
    },
    #[error("cannot seal the epoch's batches: {0}")]
    Seal(#[source] PipelineError),
    #[error("writing the {table} table failed: {source}")]
    Write {
        table: &'static str,
        #[source]
        source: Box<TableError>,
    },
    #[error("commit of the {table} table (read at version {read_version:?}) failed: {source}")]
    Commit {
        table: &'static str,
        read_version: Option<u64>,
        #[source]
        source: Box<TableError>,
    },
    #[error("cannot continue from the table after {attempts} attempts: {source}")]
    Rewind {
        attempts: u32,
        #[source]
        source: Box<StreamError>,
    },
    #[error("the table writer stopped")]
    WriterStopped,
    #[error(
        "the write-ahead log was opened at the table's offset {wal} but the table is now at \
         {table}: another process writes the direct stream of this table"
    )]
    WalMoved { wal: i64, table: i64 },
    #[error("the final commit failed; the uncommitted work will be redone on restart")]
    FinalCommit,
    #[error("stopped before the brokers answered")]
    StoppedBeforeReady,
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, #[source] std::io::Error),
    #[error("the engine thread died")]
    ThreadDied,
    #[error("shutdown took longer than {0:?}; the uncommitted work will be redone on restart")]
    ShutdownTimeout(Duration),
}

/// When an epoch ends, and how a lane goes quiet.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Commit at least this often.
    pub flush_interval: Duration,
    /// Commit once this many actions wait.
    pub flush_rows: u64,
    /// Commit once this many message bytes were read.
    pub flush_bytes: u64,
    /// Close the sessions of a caught-up lane silent this long (wall clock).
    pub idle_close: Duration,
    /// Longer messages are dead-lettered.
    pub max_message_bytes: usize,
    /// Bound on the final commit after a stop signal.
    pub shutdown_timeout: Duration,
}

/// Everything an engine runs with, built by the command that starts it.
pub struct EngineParts<S> {
    pub source: S,
    pub pipeline: Pipeline,
    pub dead_letters: Box<dyn DeadLetterSink + Send>,
    /// Where lanes resume from after a failed commit (the same tables).
    pub resumer: TableResumer,
    pub store: SessionStore,
    pub metrics: Arc<Metrics>,
    pub config: StreamConfig,
    /// Reloaded enrichment data, swapped in between two messages.
    pub reloads: Option<std::sync::mpsc::Receiver<EnrichData>>,
}

/// The two tables an engine appends to, opened (and created) beforehand.
pub struct Tables {
    pub pulls: TableWriter,
    pub rejected: TableWriter,
}

impl Tables {
    /// The pulls table at `path` and its rejected table beside it, each
    /// created when missing.
    pub async fn open(path: &table::Location) -> Result<Self, TableError> {
        let pulls = table::open_or_create(path, TableKind::Pulls).await?;
        let rejected_path = table::rejected_path(path);
        let rejected = table::open_or_create(&rejected_path, TableKind::Rejected).await?;
        Ok(Self {
            pulls: TableWriter::new(path, pulls)?,
            rejected: TableWriter::new(&rejected_path, rejected)?,
        })
    }

    /// [`Tables::open`], waiting while the store does not answer (an object
    /// store's endpoint down or unreachable): says so once, then retries
    /// every 5 s until it answers or `signals` ask to stop. Any other error
    /// (no bucket, refused credentials) is returned at once.
    pub async fn open_waiting(
        path: &table::Location,
        signals: &Signals,
    ) -> Result<Self, TableError> {
        let mut said = false;
        loop {
            match Self::open(path).await {
                Err(e) if e.is_unreachable() && !signals.stop.load(Ordering::SeqCst) => {
                    if !said {
                        tracing::error!(
                            "{e}; waiting for the store, retrying every {}s",
                            UNREACHABLE_RETRY.as_secs()
                        );
                        said = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(UNREACHABLE_RETRY) => {}
                        _ = signals.stopped.notified() => {}
                    }
                }
                Ok(tables) => {
                    if said {
                        tracing::info!(table = %path, "the store answers again");
                    }
                    return Ok(tables);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// How often a long-running command retries a store that does not answer.
const UNREACHABLE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Process signals: SIGTERM / Ctrl-C stop the engine, SIGHUP asks for an
/// enrichment reload check.
#[derive(Clone)]
pub struct Signals {
    pub stop: Arc<AtomicBool>,
    pub stopped: Arc<Notify>,
    pub hangup: Arc<Notify>,
}

impl Signals {
    /// Installs the handlers (on the current runtime).
    pub fn install() -> Self {
        let signals = Self {
            stop: Arc::new(AtomicBool::new(false)),
            stopped: Arc::new(Notify::new()),
            hangup: Arc::new(Notify::new()),
        };
        let s = signals.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = terminated() => {}
            }
            tracing::info!("shutting down: no more fetching; committing what was consumed");
            s.stop.store(true, Ordering::SeqCst);
            s.stopped.notify_one();
        });
        #[cfg(unix)]
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            let hangup = signals.hangup.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    hangup.notify_one();
                }
            });
        }
        signals
    }
}

/// Resolves at SIGTERM (never where there is none).
async fn terminated() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        term.recv().await;
        return;
    }
    std::future::pending::<()>().await
}

/// Runs the engine on a thread of its own until it fails or a stop signal
/// is handled; after the signal it has `shutdown_timeout` to commit.
pub async fn run<S: Source + Send + 'static>(
    parts: EngineParts<S>,
    tables: Tables,
    signals: &Signals,
) -> Result<(), StreamError> {
    let timeout = parts.config.shutdown_timeout;
    let (writer, writer_task) = writer::spawn(tables.pulls, tables.rejected);
    let engine = engine::Engine::new(parts, writer, signals.stop.clone());
    let (done_tx, done_rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("pullstats-engine".into())
        .spawn(move || {
            let _ = done_tx.send(engine.run());
        });
    if let Err(e) = spawned {
        writer_task.abort();
        return Err(StreamError::Thread("engine", e));
    }
    let result = wait(done_rx, signals.stopped.clone(), timeout).await;
    writer_task.abort();
    result
}

/// Waits for the engine thread; after a signal, at most `timeout`.
async fn wait(
    mut done: oneshot::Receiver<Result<(), StreamError>>,
    stopped: Arc<Notify>,
    timeout: Duration,
) -> Result<(), StreamError> {
    tokio::select! {
        r = &mut done => return r.unwrap_or(Err(StreamError::ThreadDied)),
        () = stopped.notified() => {}
    }
    match tokio::time::timeout(timeout, done).await {
        Ok(r) => r.unwrap_or(Err(StreamError::ThreadDied)),
        Err(_) => Err(StreamError::ShutdownTimeout(timeout)),
    }
}

/// Kafka's topic name rule (it also keeps state paths safe).
fn check_topic(topic: &str) -> Result<(), StreamError> {
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
        Err(StreamError::TopicName(topic.to_owned()))
    }
}

/// The dead-letter topic of `topic`: `dlq` or `<topic>.dlq`, both names
/// checked.
pub fn dead_letter_topic(topic: &str, dlq: Option<&str>) -> Result<String, StreamError> {
    check_topic(topic)?;
    let dlq = dlq.map_or_else(|| format!("{topic}.dlq"), str::to_owned);
    check_topic(&dlq)?;
    Ok(dlq)
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
        use crate::table::{offset_app_id, state_app_id};
        assert_eq!(offset_app_id("t", 3), "pullstats/kafka/t/3/offset");
        assert_eq!(state_app_id("t", 3), "pullstats/kafka/t/3/sessions");
    }
}
