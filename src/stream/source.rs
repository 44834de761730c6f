//! The engine's input: numbered messages on lanes, and the assignments
//! that give lanes to this process and take them away.
//!
//! A source numbers the messages of each lane (a Kafka partition's offsets)
//! and can be sent back to any number it has not lost, so that work dropped
//! after a failed commit is redone from the table's offsets. The engine owns
//! everything else: epochs, commits, saved sessions, dead letters.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{ResumeSet, StreamError};
use crate::event::RequestEvent;
use crate::pipeline::Lane;

/// What a poll brings.
pub enum SourceEvent {
    /// The message at `offset` of `lane`; `None` for a message without a value.
    /// `decoded`: the requests it holds, when the source decoded it already.
    Message {
        lane: Lane,
        offset: i64,
        payload: Option<Vec<u8>>,
        decoded: Option<Vec<RequestEvent>>,
    },
    /// Every lane was taken away: the uncommitted work is dropped.
    Revoked,
    /// These lanes now belong to this engine, resuming where the tables say
    /// (read while the source positioned them).
    Assigned(ResumeSet),
}

pub trait Source {
    /// The stream's name in the table's application ids and state paths
    /// (the Kafka topic).
    fn name(&self) -> &str;

    /// Before the first poll: waits until the source can take work, giving
    /// up when `stop` is set.
    fn prepare(&mut self, stop: &AtomicBool) -> Result<(), StreamError>;

    /// Waits at most `timeout` for the next event.
    fn poll(&mut self, timeout: Duration) -> Result<Option<SourceEvent>, StreamError>;

    /// A message of `lane` came at `got` while `expected` was next, for the
    /// `jumps`-th time in a row. Returns whether to take it (a real gap)
    /// rather than drop it while the source fetches from `expected` again.
    fn jumped(&mut self, lane: Lane, expected: i64, got: i64, jumps: u32) -> bool;

    /// Positions lanes after a rewind; `None`: where a lane the table has
    /// never seen starts.
    fn seek(&mut self, positions: &[(Lane, Option<i64>)]) -> Result<(), StreamError>;

    /// The first and one-past-the-last offsets `lane` holds now, when the
    /// source can tell (for lag, and to know a quiet lane is caught up).
    fn bounds(&mut self, lane: Lane) -> Option<(i64, i64)>;

    /// Whether the source cannot be reached (quiet lanes are not closed
    /// while it is down: silence is then no sign of being caught up).
    fn is_down(&self) -> bool;

    /// The tables committed these next offsets; `last`: the final commit
    /// before exit (wait until the source has recorded them).
    fn committed(&mut self, next: &BTreeMap<Lane, i64>, last: bool);

    /// Whether to end the epoch now rather than at the configured bounds
    /// (someone waits for a commit and nothing more is queued).
    fn commit_now(&self) -> bool {
        false
    }

    /// Whether `lane` was read to its end: nothing came since the source
    /// last found no more (false when the source cannot tell).
    fn at_end(&self, _lane: Lane) -> bool {
        false
    }
}
