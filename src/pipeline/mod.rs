//! The synchronous heart of ingest: bytes in, Arrow batches of enriched
//! actions out.
//!
//! ```text
//! line ─▶ decode ─▶ RequestEvent ─┬─▶ sessionize ─▶ Action ─▶ enrich ─▶ batch ─▶ (table writer)
//!           │                     └─▶ counted: blob / non-2xx / not a pull
//!           └─▶ dead letter (reason, position)
//! ```
//!
//! Every stage here is a plain `&mut self` call with no I/O but the dead
//! letter sink, so the whole path is testable without tokio and runs on one
//! thread while the async writer encodes Parquet on another.
//!
//! Sessions are kept per *lane*: a file is one lane, each Kafka partition is
//! its own. A lane's sessionizer state can be snapshot and restored on its
//! own, so a partition can move between daemons and resume exactly where its
//! last commit left it, while enrichment caches and batch builders are shared.

pub mod dead_letter;
pub mod decode;
pub mod dedup;
pub mod enrich;
pub mod future;
#[cfg(feature = "engine")]
pub mod kafka;
pub mod sessionize;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::mem;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::error::ArrowError;
use serde::Serialize;

use crate::event::{Action, ActionKind, RequestEvent, RequestKind};
use crate::schema::{day_of, rejected_schema, ActionBatchBuilder};
use dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, Position};
use decode::Decoder;
use enrich::ActionEnricher;
use sessionize::{SessionConfig, Sessionizer, SessionizerState};

/// A stream with its own sessions: a Kafka partition, or 0 for a file.
pub type Lane = i32;

/// Actions per record batch handed to the writer.
pub const BATCH_ROWS: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    #[error("cannot build a record batch: {0}")]
    Batch(#[from] ArrowError),
}

/// What ingest saw and did, for the summary line and the commit metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestStats {
    pub lines: u64,
    /// Requests decoded (every kind).
    pub requests: u64,
    pub actions: u64,
    pub pull_by_tag: u64,
    pub pull_by_digest: u64,
    pub version_check: u64,
    pub skipped_blob: u64,
    pub skipped_not_pull: u64,
    /// Manifest requests with a non-2xx status, in total and per status.
    pub rejected: u64,
    pub rejected_by_status: BTreeMap<u16, u64>,
    pub bad: u64,
    pub late: u64,
    pub evicted_sessions: u64,
    /// Events dropped because their id was seen already (a resent notification).
    pub duplicates: u64,
}

impl IngestStats {
    pub fn skipped(&self) -> u64 {
        self.skipped_blob + self.skipped_not_pull + self.rejected
    }

    /// The one-line summary printed at the end of an ingest.
    pub fn summary_line(&self) -> String {
        let statuses: Vec<String> = self
            .rejected_by_status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        format!(
            "lines read {}, requests {}, actions written {} (pull_by_tag {}, pull_by_digest {}, \
             version_check {}), skipped {} (blob {}, non-2xx {}{}, not a pull {}), bad {}, late {}",
            self.lines,
            self.requests,
            self.actions,
            self.pull_by_tag,
            self.pull_by_digest,
            self.version_check,
            self.skipped(),
            self.skipped_blob,
            self.rejected,
            if statuses.is_empty() {
                String::new()
            } else {
                format!(" [{}]", statuses.join(", "))
            },
            self.skipped_not_pull,
            self.bad,
            self.late,
        ) + &if self.duplicates > 0 {
            format!(", repeated event ids {}", self.duplicates)
        } else {
            String::new()
        }
    }
}

/// Distinct (day, repository, status, reason) counts held before they are
/// written out as a batch (bounded memory against hostile input).
const MAX_REJECTED_KEYS: usize = 100_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RejectedKey {
    day: i64,
    namespace: Arc<str>,
    repository: Arc<str>,
    status: u16,
    reason: &'static str,
}

/// Decode → sessionize → enrich → batch, for one input stream.
pub struct Pipeline {
    decoder: Decoder,
    session: SessionConfig,
    lanes: BTreeMap<Lane, Sessionizer>,
    /// Whether requests that form no action are counted (off while a Kafka
    /// partition replays offsets whose counts were already committed).
    count_rejected: bool,
    enricher: ActionEnricher,
    builder: ActionBatchBuilder,
    events: Vec<RequestEvent>,
    actions: Vec<Action>,
    ready: Vec<RecordBatch>,
    rejected: HashMap<RejectedKey, u64>,
    rejected_ready: Vec<RecordBatch>,
    stats: IngestStats,
    /// How many bad lines have been logged; the rest go to the sink only.
    logged_bad: u64,
}

/// Bad lines logged one by one before the log falls silent (they all still
/// go to the dead-letter sink and the count).
const MAX_LOGGED_BAD: u64 = 10;

impl Pipeline {
    pub fn new(max_line_bytes: usize, session: SessionConfig, enricher: ActionEnricher) -> Self {
        Self {
            decoder: Decoder::new(max_line_bytes),
            session,
            lanes: BTreeMap::new(),
            count_rejected: true,
            enricher,
            builder: ActionBatchBuilder::new(),
            events: Vec::new(),
            actions: Vec::new(),
            ready: Vec::new(),
            rejected: HashMap::new(),
            rejected_ready: Vec::new(),
            stats: IngestStats::default(),
            logged_bad: 0,
        }
    }

    /// Refuses input events more than `bound` µs ahead of the wall clock
    /// (live input; files use [`future::DataBound`] on their own decoder).
    pub fn with_clock_bound(mut self, bound: Option<crate::event::Micros>) -> Self {
        self.decoder = std::mem::take(&mut self.decoder).with_clock_bound(bound);
        self
    }

    /// Swaps in reloaded enrichment data: actions decided from now on use it.
    pub fn replace_enrichment(&mut self, data: enrich::EnrichData) {
        self.enricher.replace_data(data);
    }

    pub fn stats(&self) -> IngestStats {
        let mut s = self.stats.clone();
        let (late, evicted) = self
            .lanes
            .values()
            .map(|l| l.stats())
            .fold((0, 0), |(l, e), st| (l + st.late, e + st.evicted));
        s.late = late;
        s.evicted_sessions = evicted;
        s
    }

    /// Actions built so far (cheap: for checks on every message).
    pub fn actions(&self) -> u64 {
        self.stats.actions
    }

    /// Sessions open over all lanes (a gauge for metrics).
    pub fn open_sessions(&self) -> usize {
        self.lanes.values().map(|l| l.open_sessions()).sum()
    }

    /// Feeds one input line of a file (lane 0).
    pub fn push_line(
        &mut self,
        line: &[u8],
        source: &str,
        position: Position,
        dead: &mut dyn DeadLetterSink,
    ) -> Result<(), PipelineError> {
        self.push_line_in(0, line, source, position, dead)
    }

    /// Feeds one input line (or Kafka message) of `lane`.
    pub fn push_line_in(
        &mut self,
        lane: Lane,
        line: &[u8],
        source: &str,
        position: Position,
        dead: &mut dyn DeadLetterSink,
    ) -> Result<(), PipelineError> {
        self.stats.lines += 1;
        let result = self.decoder.decode(line, &mut self.events);
        if let Err(e) = result {
            self.reject(&e.to_string(), line, source, position, dead)?;
        }
        self.feed_events(lane)
    }

    /// Feeds requests of `lane` that were decoded elsewhere (the file ingest
    /// decodes on a thread of its own), from `lines` input lines. Bad lines
    /// among them go to [`Self::reject`] separately.
    pub fn push_decoded(
        &mut self,
        lane: Lane,
        lines: u64,
        events: Vec<RequestEvent>,
    ) -> Result<(), PipelineError> {
        self.stats.lines += lines;
        if self.events.is_empty() {
            self.events = events;
        } else {
            self.events.extend(events);
        }
        self.feed_events(lane)
    }

    /// Whether non-action requests are counted from now on (see the field).
    pub fn set_count_rejected(&mut self, on: bool) {
        self.count_rejected = on;
    }

    /// Starts `lane` from a saved state (a fresh lane when `None`),
    /// replacing any sessions it had.
    pub fn restore_lane(&mut self, lane: Lane, state: Option<SessionizerState>) {
        let sessionizer = match state {
            Some(state) => Sessionizer::restore(self.session, state),
            None => Sessionizer::new(self.session),
        };
        self.lanes.insert(lane, sessionizer);
    }

    /// Whether `lane` has open sessions or undecided requests.
    pub fn lane_has_sessions(&self, lane: Lane) -> bool {
        self.lanes
            .get(&lane)
            .is_some_and(|s| s.open_sessions() + s.pending_events() > 0)
    }

    /// The state to save for `lane` at a commit (`None`: no such lane).
    pub fn snapshot_lane(&self, lane: Lane) -> Option<SessionizerState> {
        self.lanes.get(&lane).map(Sessionizer::snapshot)
    }

    /// Closes every session of `lane` (the partition has gone quiet); the
    /// lane stays, empty, with its watermark.
    pub fn close_lane(&mut self, lane: Lane) -> Result<(), PipelineError> {
        if let Some(sessionizer) = self.lanes.get_mut(&lane) {
            sessionizer.finish(&mut self.actions);
        }
        self.drain_actions()
    }

    /// Forgets everything not yet handed out: every lane, pending batches and
    /// counts. Used when uncommitted work is abandoned (a rebalance, a lost
    /// commit) and will be redone from the table's last commit.
    pub fn discard(&mut self) {
        self.lanes.clear();
        self.actions.clear();
        self.ready.clear();
        self.rejected.clear();
        self.rejected_ready.clear();
        self.builder = ActionBatchBuilder::new();
    }

    /// Seals what has been built so far into batches (closed actions and
    /// rejected counts), without closing any session: the cut before a commit.
    pub fn flush_batches(&mut self) -> Result<(), PipelineError> {
        if !self.builder.is_empty() {
            self.ready.push(self.builder.finish()?);
        }
        self.seal_rejected()
    }

    /// Counts a line that was rejected before decoding (see [`Self::reject`]).
    pub fn count_line(&mut self) {
        self.stats.lines += 1;
    }

    /// Records a line that never reached the decoder (e.g. over-long).
    pub fn reject(
        &mut self,
        reason: &str,
        payload: &[u8],
        source: &str,
        position: Position,
        dead: &mut dyn DeadLetterSink,
    ) -> Result<(), PipelineError> {
        self.stats.bad += 1;
        if self.logged_bad < MAX_LOGGED_BAD {
            tracing::warn!("bad input at {source} {position}: {reason}");
            self.logged_bad += 1;
            if self.logged_bad == MAX_LOGGED_BAD {
                tracing::warn!("further bad input is not logged; see the dead-letter sink");
            }
        }
        dead.send(DeadLetter {
            source,
            position,
            reason,
            payload,
        })?;
        Ok(())
    }

    fn feed_events(&mut self, lane: Lane) -> Result<(), PipelineError> {
        let mut events = mem::take(&mut self.events);
        let session = self.session;
        let sessionizer = self
            .lanes
            .entry(lane)
            .or_insert_with(|| Sessionizer::new(session));
        for event in events.drain(..) {
            if !sessionizer.first_time(&event) {
                self.stats.duplicates += 1;
                continue;
            }
            self.stats.requests += 1;
            let reason = match event.kind {
                RequestKind::Blob => {
                    self.stats.skipped_blob += 1;
                    "blob"
                }
                RequestKind::NotPull => {
                    self.stats.skipped_not_pull += 1;
                    "not_pull"
                }
                RequestKind::Manifest if !event.forms_action() => {
                    self.stats.rejected += 1;
                    *self
                        .stats
                        .rejected_by_status
                        .entry(event.status)
                        .or_default() += 1;
                    "non_2xx"
                }
                RequestKind::Manifest => {
                    sessionizer.push(event, &mut self.actions);
                    continue;
                }
            };
            if self.count_rejected {
                Self::count_rejected(&mut self.rejected, &event, reason);
            }
        }
        if self.rejected.len() >= MAX_REJECTED_KEYS {
            self.seal_rejected()?;
        }
        self.events = events;
        self.drain_actions()
    }

    fn count_rejected(
        rejected: &mut HashMap<RejectedKey, u64>,
        e: &RequestEvent,
        reason: &'static str,
    ) {
        let key = RejectedKey {
            day: e.timestamp.div_euclid(MICROS_PER_DAY),
            namespace: e.namespace.clone(),
            repository: e.repository.clone(),
            status: e.status,
            reason,
        };
        *rejected.entry(key).or_default() += 1;
    }

    fn seal_rejected(&mut self) -> Result<(), PipelineError> {
        if self.rejected.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<_> = self.rejected.drain().collect();
        rows.sort_by(|(a, _), (b, _)| {
            (a.day, &a.namespace, &a.repository, a.status, a.reason).cmp(&(
                b.day,
                &b.namespace,
                &b.repository,
                b.status,
                b.reason,
            ))
        });
        let (mut day, mut ns, mut repo, mut reason) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let (mut status, mut requests) = (Int32Builder::new(), Int64Builder::new());
        for (k, n) in rows {
            day.append_value(day_of(k.day * MICROS_PER_DAY));
            ns.append_value(&k.namespace);
            repo.append_value(&k.repository);
            status.append_value(i32::from(k.status));
            reason.append_value(k.reason);
            requests.append_value(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(day.finish()),
            Arc::new(ns.finish()),
            Arc::new(repo.finish()),
            Arc::new(status.finish()),
            Arc::new(reason.finish()),
            Arc::new(requests.finish()),
        ];
        self.rejected_ready
            .push(RecordBatch::try_new(rejected_schema(), columns)?);
        Ok(())
    }

    /// Batches of the `rejected` table completed so far.
    pub fn take_rejected(&mut self) -> Vec<RecordBatch> {
        mem::take(&mut self.rejected_ready)
    }

    fn drain_actions(&mut self) -> Result<(), PipelineError> {
        for action in self.actions.drain(..) {
            match action.kind {
                ActionKind::PullByTag => self.stats.pull_by_tag += 1,
                ActionKind::PullByDigest => self.stats.pull_by_digest += 1,
                ActionKind::VersionCheck => self.stats.version_check += 1,
            }
            self.stats.actions += 1;
            let row = self.enricher.enrich(action);
            self.builder.push(&row);
            if self.builder.len() >= BATCH_ROWS {
                self.ready.push(self.builder.finish()?);
            }
        }
        Ok(())
    }

    /// Batches completed so far.
    pub fn take_ready(&mut self) -> Vec<RecordBatch> {
        mem::take(&mut self.ready)
    }

    /// Ends the input: decides every pending request, closes every session
    /// and seals the rejected counts; the remaining batches are then in
    /// [`Self::take_ready`] and [`Self::take_rejected`].
    pub fn finish(&mut self) -> Result<(), PipelineError> {
        for sessionizer in self.lanes.values_mut() {
            sessionizer.finish(&mut self.actions);
        }
        self.drain_actions()?;
        self.flush_batches()
    }
}
