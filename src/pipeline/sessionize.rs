//! Sessionize stage: 2xx manifest [`RequestEvent`]s → [`Action`]s (spec §2).
//!
//! Requests are grouped by client (IP, user agent) and repository, in event
//! time order. A session starts with any request and takes follow-up GETs by
//! digest that arrive within `gap` of the previous request: the first GET
//! after a HEAD whatever its digest, afterwards only digests the session has
//! not fetched yet. Everything else starts a new action.
//!
//! Input may be shuffled by up to `max_lateness`: events wait in a min-heap
//! until the watermark (highest event time seen − `max_lateness`) passes
//! them, then are decided in a canonical order, so the actions do not depend
//! on arrival order or on how the input was split into batches. An event
//! older than the watermark is *late*: it becomes an action of its own and is
//! counted, never dropped.
//!
//! State is bounded: pending events span at most `max_lateness` of event
//! time, a session closes once the watermark passes `last request + gap`,
//! and at most `max_open_sessions` stay open (beyond that the least recently
//! active one is closed early and counted as `evicted`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::dedup::{SeenId, SeenIds};
use crate::event::{Action, ActionKind, Method, Micros, RequestEvent};

/// Default gap between the requests of one pull. Real clients send the
/// follow-ups of one pull milliseconds apart (HEAD → GET index → GET
/// platform manifest on one connection); a slow link or a registry under load
/// stretches that to a second or two. 5 s keeps those together while two
/// deliberate pulls by one client (a CI job re-running) stay separate.
pub const DEFAULT_SESSION_GAP: Duration = Duration::from_secs(5);
/// Default bound on how shuffled input may be. Registries log in order per
/// instance; several instances behind a load balancer, or Kafka partitions
/// read unevenly, shuffle by seconds.
pub const DEFAULT_MAX_LATENESS: Duration = Duration::from_secs(30);
/// Default cap on open sessions (~300 bytes each: well under 1 GiB).
pub const DEFAULT_MAX_OPEN_SESSIONS: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    pub gap: Duration,
    pub max_lateness: Duration,
    pub max_open_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            gap: DEFAULT_SESSION_GAP,
            max_lateness: DEFAULT_MAX_LATENESS,
            max_open_sessions: DEFAULT_MAX_OPEN_SESSIONS,
        }
    }
}

/// Running counts of what the sessionizer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStats {
    /// Requests that formed or joined an action.
    pub requests: u64,
    pub actions: u64,
    /// Requests older than the watermark, counted as actions of their own.
    pub late: u64,
    /// Sessions closed early because `max_open_sessions` was reached.
    pub evicted: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SessionKey {
    ip: IpAddr,
    user_agent: Arc<str>,
    namespace: Arc<str>,
    repository: Arc<str>,
}

impl SessionKey {
    fn of(e: &RequestEvent) -> Self {
        Self {
            ip: e.ip,
            user_agent: e.user_agent.clone(),
            namespace: e.namespace.clone(),
            repository: e.repository.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenSession {
    action: Action,
    last_ts: Micros,
    /// Whether a GET has joined (or started) the session. Until then (a
    /// session started by HEAD) the first GET by digest continues it.
    got_get: bool,
    /// Digests fetched by the session's GETs; a follow-up must fetch a new one.
    fetched: Vec<Arc<str>>,
}

impl OpenSession {
    fn start(e: RequestEvent, late: bool) -> Self {
        let by_digest = e.by_digest();
        let kind = match (by_digest, e.method) {
            (true, _) => ActionKind::PullByDigest,
            (false, Method::Head) => ActionKind::VersionCheck,
            (false, _) => ActionKind::PullByTag,
        };
        let got_get = e.method == Method::Get;
        let fetched = if got_get {
            vec![e.digest.clone()]
        } else {
            Vec::new()
        };
        Self {
            last_ts: e.timestamp,
            got_get,
            fetched,
            action: Action {
                kind,
                timestamp: e.timestamp,
                method: e.method,
                tag: (!by_digest).then(|| e.reference.clone()),
                namespace: e.namespace,
                repository: e.repository,
                reference: e.reference,
                digest: e.digest,
                owner: e.owner,
                ip: e.ip,
                user_agent: e.user_agent,
                requests: 1,
                late,
            },
        }
    }

    fn continues_with(&self, e: &RequestEvent, gap: Micros) -> bool {
        e.method == Method::Get
            && e.by_digest()
            && e.timestamp - self.last_ts <= gap
            && (!self.got_get || !self.fetched.contains(&e.digest))
    }

    fn take(&mut self, e: &RequestEvent) {
        self.last_ts = e.timestamp;
        self.got_get = true;
        self.fetched.push(e.digest.clone());
        self.action.requests += 1;
        if self.action.kind == ActionKind::VersionCheck {
            self.action.kind = ActionKind::PullByTag;
        }
        if self.action.owner.is_none() {
            self.action.owner = e.owner.clone();
        }
    }
}

/// An event waiting for the watermark, in canonical decision order: time,
/// then HEAD before GET, tag before digest, then content, then arrival.
/// The heap moves these on every push and pop, so the event is boxed and
/// what the usual comparison needs sits beside the box.
#[derive(Debug)]
struct Pending {
    timestamp: Micros,
    seq: u64,
    method: Method,
    /// `event.by_digest()`, computed once.
    by_digest: bool,
    event: Box<RequestEvent>,
}

impl Pending {
    fn new(seq: u64, event: RequestEvent) -> Self {
        Self {
            timestamp: event.timestamp,
            seq,
            method: event.method,
            by_digest: event.by_digest(),
            event: Box::new(event),
        }
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Field by field, so the usual case (different times) costs one
        // integer comparison; interned strings compare by pointer first.
        let (a, b) = (&self.event, &other.event);
        let same = |x: &Arc<str>, y: &Arc<str>| {
            if Arc::ptr_eq(x, y) {
                std::cmp::Ordering::Equal
            } else {
                x.cmp(y)
            }
        };
        self.timestamp
            .cmp(&other.timestamp)
            .then(self.method.cmp(&other.method))
            .then(self.by_digest.cmp(&other.by_digest))
            .then_with(|| same(&a.reference, &b.reference))
            .then_with(|| same(&a.digest, &b.digest))
            .then(self.seq.cmp(&other.seq))
    }
}

/// Everything a [`Sessionizer`] needs to resume exactly where another one
/// stopped: stored with each table commit so that a restarted daemon decides
/// the same actions as an uninterrupted one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionizerState {
    max_seen: Option<Micros>,
    seq: u64,
    pending: Vec<(u64, RequestEvent)>,
    open: Vec<OpenSession>,
    stats: SessionStats,
    /// Event ids recently seen (absent from states saved before 0.2).
    #[serde(default)]
    seen: Vec<SeenId>,
}

impl SessionizerState {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.open.is_empty()
    }
}

/// Groups requests into actions; see the module docs for the rules.
#[derive(Debug)]
pub struct Sessionizer {
    gap: Micros,
    max_lateness: Micros,
    max_open: usize,
    seq: u64,
    max_seen: Option<Micros>,
    pending: BinaryHeap<Reverse<Pending>>,
    open: foldhash::HashMap<SessionKey, OpenSession>,
    /// (last_ts, key) per session update; entries whose session has moved on
    /// are stale and skipped when popped.
    by_activity: BinaryHeap<Reverse<(Micros, SessionKey)>>,
    stats: SessionStats,
    seen: SeenIds,
}

fn micros(d: Duration) -> Micros {
    Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
}

impl Sessionizer {
    pub fn new(config: SessionConfig) -> Self {
        Self {
            gap: micros(config.gap),
            max_lateness: micros(config.max_lateness),
            max_open: config.max_open_sessions.max(1),
            seq: 0,
            max_seen: None,
            pending: BinaryHeap::new(),
            open: foldhash::HashMap::default(),
            by_activity: BinaryHeap::new(),
            stats: SessionStats::default(),
            seen: SeenIds::default(),
        }
    }

    /// Resumes from a state taken by [`Sessionizer::snapshot`].
    pub fn restore(config: SessionConfig, state: SessionizerState) -> Self {
        let mut s = Self::new(config);
        s.max_seen = state.max_seen;
        s.seq = state.seq;
        s.stats = state.stats;
        s.seen = SeenIds::restore(state.seen);
        s.pending = state
            .pending
            .into_iter()
            .map(|(seq, event)| Reverse(Pending::new(seq, event)))
            .collect();
        for session in state.open {
            let key = SessionKey {
                ip: session.action.ip,
                user_agent: session.action.user_agent.clone(),
                namespace: session.action.namespace.clone(),
                repository: session.action.repository.clone(),
            };
            s.by_activity.push(Reverse((session.last_ts, key.clone())));
            s.open.insert(key, session);
        }
        s
    }

    /// The state to persist at a cut: pending events and open sessions.
    pub fn snapshot(&self) -> SessionizerState {
        let mut pending: Vec<_> = self
            .pending
            .iter()
            .map(|Reverse(p)| (p.seq, (*p.event).clone()))
            .collect();
        pending.sort_by_key(|(seq, _)| *seq);
        let mut open: Vec<_> = self.open.values().cloned().collect();
        open.sort_by_key(|s| s.action.timestamp);
        SessionizerState {
            max_seen: self.max_seen,
            seq: self.seq,
            pending,
            open,
            stats: self.stats,
            seen: self.seen.snapshot(),
        }
    }

    /// Whether `event` is new: false for a repeated event id within the
    /// dedup window (see [`super::dedup`]). Events without an id are new.
    pub fn first_time(&mut self, event: &RequestEvent) -> bool {
        let Some(id) = event.id.as_deref() else {
            return true;
        };
        let forget_before = self
            .watermark()
            .map(|w| w.saturating_sub(self.max_lateness));
        self.seen.first_time(id, event.timestamp, forget_before)
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Sessions currently open (a gauge for metrics).
    pub fn open_sessions(&self) -> usize {
        self.open.len()
    }

    /// Events waiting for the watermark.
    pub fn pending_events(&self) -> usize {
        self.pending.len()
    }

    /// Event time before which every decision is final.
    pub fn watermark(&self) -> Option<Micros> {
        self.max_seen.map(|m| m.saturating_sub(self.max_lateness))
    }

    /// Feeds one request; actions that became final are appended to `out`.
    /// Requests that cannot form actions (blobs, non-2xx) must be filtered
    /// out before: they are ignored here.
    pub fn push(&mut self, event: RequestEvent, out: &mut Vec<Action>) {
        if !event.forms_action() {
            return;
        }
        self.stats.requests += 1;
        if self.watermark().is_some_and(|w| event.timestamp < w) {
            self.stats.late += 1;
            self.emit(OpenSession::start(event, true).action, out);
            return;
        }
        let ts = event.timestamp;
        self.seq += 1;
        self.pending.push(Reverse(Pending::new(self.seq, event)));
        if self.max_seen.is_none_or(|m| ts > m) {
            self.max_seen = Some(ts);
            self.advance(out);
        }
    }

    /// Decides everything still pending and closes every session: the end of
    /// a finite input.
    pub fn finish(&mut self, out: &mut Vec<Action>) {
        while let Some(Reverse(p)) = self.pending.pop() {
            self.decide(*p.event, out);
        }
        let mut rest: Vec<_> = self.open.drain().map(|(_, s)| s.action).collect();
        rest.sort_by_key(|a| a.timestamp);
        for a in rest {
            self.emit(a, out);
        }
        self.by_activity.clear();
    }

    fn advance(&mut self, out: &mut Vec<Action>) {
        let Some(w) = self.watermark() else { return };
        while self
            .pending
            .peek()
            .is_some_and(|Reverse(p)| p.timestamp < w)
        {
            if let Some(Reverse(p)) = self.pending.pop() {
                self.decide(*p.event, out);
            }
        }
        // No event at or after `w` can continue a session idle since before
        // `w - gap`.
        while let Some(Reverse((last, _))) = self.by_activity.peek() {
            if last.saturating_add(self.gap) >= w {
                break;
            }
            self.close_oldest(out);
        }
    }

    fn decide(&mut self, e: RequestEvent, out: &mut Vec<Action>) {
        let key = SessionKey::of(&e);
        if let Some(session) = self.open.get_mut(&key) {
            if session.continues_with(&e, self.gap) {
                session.take(&e);
                self.by_activity.push(Reverse((e.timestamp, key)));
                return;
            }
            if let Some(done) = self.open.remove(&key) {
                self.emit(done.action, out);
            }
        }
        self.by_activity.push(Reverse((e.timestamp, key.clone())));
        self.open.insert(key, OpenSession::start(e, false));
        while self.open.len() > self.max_open {
            if self.close_oldest(out) {
                self.stats.evicted += 1;
            }
        }
    }

    /// Pops the least recently active entry; closes its session unless the
    /// entry is stale. Returns whether a session was closed.
    fn close_oldest(&mut self, out: &mut Vec<Action>) -> bool {
        let Some(Reverse((last, key))) = self.by_activity.pop() else {
            return false;
        };
        if self.open.get(&key).is_some_and(|s| s.last_ts == last) {
            if let Some(s) = self.open.remove(&key) {
                self.emit(s.action, out);
                return true;
            }
        }
        false
    }

    fn emit(&mut self, action: Action, out: &mut Vec<Action>) {
        self.stats.actions += 1;
        out.push(action);
    }
}

#[cfg(test)]
#[path = "sessionize_tests.rs"]
mod tests;
