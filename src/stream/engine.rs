//! The engine thread: polls the source, feeds the pipeline lane by lane,
//! follows assignments, and drops and redoes work from the table when a
//! commit fails. Epoch commits and quiet lanes are in `epoch.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::writer::WriterCmd;
use super::{EngineParts, ResumeSet, Source, SourceEvent, StreamConfig, StreamError, TableResumer};
use crate::event::RequestEvent;
use crate::metrics::Metrics;
use crate::pipeline::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, Position};
use crate::pipeline::enrich::EnrichData;
use crate::pipeline::{Lane, Pipeline, PipelineError};
use crate::table::sessions::SessionStore;

/// How long one poll waits for a message.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often quiet lanes are checked for idle closing.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often consumer lag is measured (a broker round trip per lane;
/// against tansu each one also stalls fetching for a while).
const LAG_INTERVAL: Duration = Duration::from_secs(15);
/// Attempts at re-reading the table after a failed commit before giving up.
const MAX_REWIND_ATTEMPTS: u32 = 8;

/// A lane this engine holds.
#[derive(Debug)]
pub(super) struct Held {
    /// Next offset according to the table.
    pub committed: Option<i64>,
    /// Next offset expected from the source.
    pub next: Option<i64>,
    /// Committed session state generation.
    pub generation: Option<i64>,
    /// Messages below this offset were already counted in the rejected
    /// table and dead-lettered: replays skip both.
    pub counted_from: i64,
    pub last_message: Instant,
    /// Sessions were closed for quiet since the last commit.
    pub closed_idle: bool,
    /// How many messages in a row came past `next`.
    pub jumps: u32,
}

impl Held {
    fn from_resume(r: &super::PartitionResume) -> Self {
        Self {
            committed: r.offset,
            next: r.offset,
            generation: r.generation,
            counted_from: r.rejected_offset.unwrap_or(i64::MIN),
            last_message: Instant::now(),
            closed_idle: false,
            jumps: 0,
        }
    }

    pub fn dirty(&self) -> bool {
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

/// Everything the engine thread owns.
pub(super) struct Engine<S> {
    pub source: S,
    pub config: StreamConfig,
    pub pipeline: Pipeline,
    pub dead: Box<dyn DeadLetterSink + Send>,
    pub resumer: TableResumer,
    pub store: SessionStore,
    pub writer: mpsc::Sender<WriterCmd>,
    pub held: BTreeMap<Lane, Held>,
    pub metrics: Arc<Metrics>,
    reloads: Option<std::sync::mpsc::Receiver<EnrichData>>,
    stop: Arc<AtomicBool>,
    pub epoch_started: Instant,
    pub epoch_bytes: u64,
    pub epoch_actions_base: u64,
    last_idle_check: Instant,
    last_lag_update: Instant,
}

impl<S: Source> Engine<S> {
    pub fn new(
        parts: EngineParts<S>,
        writer: mpsc::Sender<WriterCmd>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            source: parts.source,
            config: parts.config,
            pipeline: parts.pipeline,
            dead: parts.dead_letters,
            resumer: parts.resumer,
            store: parts.store,
            writer,
            held: BTreeMap::new(),
            metrics: parts.metrics,
            reloads: parts.reloads,
            stop,
            epoch_started: Instant::now(),
            epoch_bytes: 0,
            epoch_actions_base: 0,
            last_idle_check: Instant::now(),
            last_lag_update: Instant::now(),
        }
    }

    pub fn run(mut self) -> Result<(), StreamError> {
        self.source.prepare(&self.stop)?;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return self.stop();
            }
            self.swap_in_reloaded_data();
            match self.source.poll(POLL_TIMEOUT)? {
                Some(SourceEvent::Message {
                    lane,
                    offset,
                    payload,
                    decoded,
                }) => self.on_message(lane, offset, payload.as_deref(), decoded)?,
                Some(SourceEvent::Revoked) => {
                    self.metrics.rebalances.fetch_add(1, Ordering::Relaxed);
                    self.pipeline.discard();
                    self.held.clear();
                    self.metrics.assigned_partitions.store(0, Ordering::Relaxed);
                }
                Some(SourceEvent::Assigned(set)) => {
                    self.metrics.rebalances.fetch_add(1, Ordering::Relaxed);
                    self.apply_resume(set)?;
                }
                None => {}
            }
            if self.last_idle_check.elapsed() >= IDLE_CHECK_INTERVAL {
                self.last_idle_check = Instant::now();
                self.close_quiet_lanes()?;
                self.update_gauges();
                if self.last_lag_update.elapsed() >= LAG_INTERVAL {
                    self.last_lag_update = Instant::now();
                    self.update_lag();
                }
            }
            if self.epoch_due() || self.source.commit_now() || self.drained() {
                self.commit_epoch()?;
            }
        }
    }

    /// Between two messages: actions decided from here on use the new data.
    fn swap_in_reloaded_data(&mut self) {
        let Some(reloads) = &self.reloads else {
            return;
        };
        if let Some(data) = reloads.try_iter().last() {
            self.pipeline.replace_enrichment(data);
        }
    }

    fn stop(mut self) -> Result<(), StreamError> {
        self.commit_epoch()?;
        if self.held.values().any(Held::dirty) {
            return Err(StreamError::FinalCommit);
        }
        tracing::info!("committed; leaving");
        let next = self.committed_offsets();
        self.source.committed(&next, true);
        Ok(())
    }

    /// Each held lane's next offset according to the table.
    pub fn committed_offsets(&self) -> BTreeMap<Lane, i64> {
        self.held
            .iter()
            .filter_map(|(p, h)| h.committed.map(|o| (*p, o)))
            .collect()
    }

    fn on_message(
        &mut self,
        lane: Lane,
        offset: i64,
        payload: Option<&[u8]>,
        decoded: Option<Vec<RequestEvent>>,
    ) -> Result<(), StreamError> {
        let Some(held) = self.held.get_mut(&lane) else {
            return Ok(()); // fetched before a revocation
        };
        match held.next {
            Some(next) if offset < next => return Ok(()), // already in the table
            Some(next) if offset > next => {
                held.jumps += 1;
                if !self.source.jumped(lane, next, offset, held.jumps) {
                    return Ok(());
                }
            }
            _ => {}
        }
        held.jumps = 0;
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
        match self.push(lane, offset, payload, decoded, replay) {
            Ok(()) => self.send_batches(),
            // A dead letter that cannot be queued must not be skipped: redo
            // the epoch (it will be retried) instead of committing past it.
            Err(PipelineError::DeadLetter(e)) => {
                tracing::warn!("{e}; redoing the uncommitted work");
                self.rewind()
            }
            Err(source) => Err(StreamError::Pipeline {
                topic: self.source.name().to_owned(),
                partition: lane,
                offset,
                source,
            }),
        }
    }

    /// One message into the pipeline (or the dead-letter sink); `decoded`:
    /// its requests, when the source decoded them already.
    fn push(
        &mut self,
        lane: Lane,
        offset: i64,
        payload: Option<&[u8]>,
        decoded: Option<Vec<RequestEvent>>,
        replay: bool,
    ) -> Result<(), PipelineError> {
        let position = Position::Kafka {
            partition: lane,
            offset,
        };
        let mut already_sent = AlreadySent;
        let dead: &mut dyn DeadLetterSink = if replay {
            &mut already_sent
        } else {
            self.dead.as_mut()
        };
        let name = self.source.name();
        let max = self.config.max_message_bytes;
        match (payload, decoded) {
            (None, _) => {
                self.pipeline.count_line();
                self.pipeline
                    .reject("message has no value", b"", name, position, dead)
            }
            (Some(value), _) if value.len() > max => {
                self.pipeline.count_line();
                let reason = format!(
                    "message is longer than {max} bytes ({} bytes; the first {max} are kept)",
                    value.len()
                );
                self.pipeline
                    .reject(&reason, &value[..max], name, position, dead)
            }
            (Some(_), Some(events)) => self.pipeline.push_decoded(lane, 1, events),
            (Some(value), None) => self
                .pipeline
                .push_line_in(lane, value, name, position, dead),
        }
    }

    pub fn send_batches(&mut self) -> Result<(), StreamError> {
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

    fn send(&self, cmd: WriterCmd) -> Result<(), StreamError> {
        self.writer
            .blocking_send(cmd)
            .map_err(|_| StreamError::WriterStopped)
    }

    /// Sends a request made with a reply channel and waits for the reply.
    pub fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> WriterCmd,
    ) -> Result<T, StreamError> {
        let (reply, rx) = oneshot::channel();
        self.send(request(reply))?;
        rx.blocking_recv().map_err(|_| StreamError::WriterStopped)
    }

    /// Continues from what the tables say: writer rebased, lanes restored.
    fn apply_resume(&mut self, set: ResumeSet) -> Result<(), StreamError> {
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
                Some(g) => Some(self.store.load(part.partition, g).map_err(|source| {
                    StreamError::SessionState {
                        topic: self.source.name().to_owned(),
                        partition: part.partition,
                        source,
                    }
                })?),
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
    pub fn rewind(&mut self) -> Result<(), StreamError> {
        self.metrics.aborted_epochs.fetch_add(1, Ordering::Relaxed);
        let lanes: Vec<Lane> = self.held.keys().copied().collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resumed = self.resumer.read(&lanes).and_then(|set| {
                let positions: Vec<(Lane, Option<i64>)> =
                    set.parts.iter().map(|p| (p.partition, p.offset)).collect();
                self.apply_resume(set)?;
                Ok(positions)
            });
            match resumed {
                Ok(positions) => return self.source.seek(&positions),
                Err(e) if attempt < MAX_REWIND_ATTEMPTS => {
                    let wait = Duration::from_millis(200 << attempt.min(6));
                    tracing::warn!("cannot re-read the table ({e}); retrying in {wait:?}");
                    std::thread::sleep(wait);
                }
                Err(e) => {
                    return Err(StreamError::Rewind {
                        attempts: attempt,
                        source: Box::new(e),
                    })
                }
            }
        }
    }

    /// Actions the epoch has made so far.
    fn epoch_actions(&self) -> u64 {
        self.pipeline.actions() - self.epoch_actions_base
    }

    fn epoch_due(&self) -> bool {
        self.epoch_started.elapsed() >= self.config.flush_interval
            || self.epoch_actions() >= self.config.flush_rows
            || self.epoch_bytes >= self.config.flush_bytes
    }

    /// A backlog was read to its end: every lane is at its end and the epoch
    /// holds a quarter of its bounds (rows or bytes). Committing it now lands
    /// it without waiting out the interval; a stream that keeps up with its
    /// input, at its end after every fetch, still commits by the bounds
    /// unless it brings a quarter of them within one interval.
    fn drained(&self) -> bool {
        let filled = self.epoch_actions() >= self.config.flush_rows / 4
            || self.epoch_bytes >= self.config.flush_bytes / 4;
        filled && !self.held.is_empty() && self.held.keys().all(|&l| self.source.at_end(l))
    }

    pub fn reset_epoch(&mut self) {
        self.epoch_started = Instant::now();
        self.epoch_bytes = 0;
        self.epoch_actions_base = self.pipeline.actions();
    }
}
