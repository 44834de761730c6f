//! A source fed by this process: `pullstats serve` in direct mode hands
//! each received envelope's messages to the engine and waits for the commit
//! that covers them. One lane (0), numbered on from the table's offset.
//!
//! Messages stay in memory until a commit covers them, so a rewind (a failed
//! commit) is redone from here. Two ways to answer the sender:
//! - after the commit ([`QueueHandle::submit`]): after a crash nothing is
//!   kept; the sender was never answered 2xx for an uncommitted message, so
//!   it sends it again (a registry retries until it gets one), and what the
//!   table already holds is recognised by its event ids. Group commit: the
//!   engine asks [`Source::commit_now`] between messages; it is true once
//!   every queued message was handed out and someone waits, so a commit
//!   takes in every envelope that arrived while the last one ran.
//! - after the write-ahead log's sync ([`super::wal`], which then calls
//!   [`QueueHandle::push`]): the log gives back what the table lacks at the
//!   next start ([`Durable`]), under the same offsets, and commits follow
//!   the epoch bounds (`--flush-interval`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{ResumeSet, Source, SourceEvent, StreamError, TableResumer};
use crate::event::RequestEvent;
use crate::pipeline::Lane;

const LANE: Lane = 0;

/// A message for the engine: its bytes, and the requests they decode to
/// when the sender decoded them already (the engine then skips its own
/// decode; a rewind or a restart decodes the bytes).
#[derive(Debug, Clone)]
pub struct Message {
    pub bytes: Vec<u8>,
    pub decoded: Option<Vec<RequestEvent>>,
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// One sender's messages and who to tell once they are committed.
struct Submission {
    messages: Vec<Message>,
    done: Option<oneshot::Sender<()>>,
}

/// Why a submission was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue to the table writer is full")]
    Full,
    #[error("the engine has stopped")]
    Stopped,
}

/// The sending side, cloned into every request handler.
#[derive(Clone)]
pub struct QueueHandle {
    tx: SyncSender<Submission>,
}

impl QueueHandle {
    /// Queues `messages`; the receiver resolves once a commit covers them
    /// (it fails if the engine stops first).
    pub fn submit(&self, messages: Vec<Message>) -> Result<oneshot::Receiver<()>, SubmitError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .try_send(Submission {
                messages,
                done: Some(done),
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Disconnected(_) => SubmitError::Stopped,
            })?;
        Ok(rx)
    }

    /// Hands on `messages` already made durable elsewhere (the write-ahead
    /// log), waiting while the queue is full; nobody waits for their commit.
    pub fn push(&self, messages: Vec<Message>) -> Result<(), SubmitError> {
        self.tx
            .send(Submission {
                messages,
                done: None,
            })
            .map_err(|_| SubmitError::Stopped)
    }
}

/// What the write-ahead log gives a queue: the messages the table lacks, from
/// the table's next offset, and where to publish each commit's next offset.
pub struct Durable {
    pub pending: super::wal::Pending,
    pub committed: Arc<AtomicI64>,
}

pub struct QueueSource {
    name: String,
    rx: Receiver<Submission>,
    resumer: TableResumer,
    assigned: Option<ResumeSet>,
    /// Messages not yet committed, from offset `front`.
    log: VecDeque<Message>,
    front: i64,
    /// Next offset to hand to the engine.
    cursor: i64,
    /// (one past the last offset of a submission, its waiter), in order.
    waiters: VecDeque<(i64, oneshot::Sender<()>)>,
    /// Set when a write-ahead log feeds the queue.
    durable: Option<Durable>,
}

/// A source named `name` (its lane's application ids and state paths) and
/// its handle; at most `capacity` submissions wait. `durable`: a write-ahead
/// log feeds it.
pub fn queue(
    name: &str,
    resumer: TableResumer,
    capacity: usize,
    durable: Option<Durable>,
) -> (QueueSource, QueueHandle) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
    let source = QueueSource {
        name: name.to_owned(),
        rx,
        resumer,
        assigned: None,
        log: VecDeque::new(),
        front: 0,
        cursor: 0,
        waiters: VecDeque::new(),
        durable,
    };
    (source, QueueHandle { tx })
}

impl QueueSource {
    fn end(&self) -> i64 {
        self.front + self.log.len() as i64
    }

    fn take(&mut self, s: Submission) {
        self.log.extend(s.messages);
        if let Some(done) = s.done {
            self.waiters.push_back((self.end(), done));
        }
    }

    fn next_message(&mut self) -> Option<SourceEvent> {
        let index = usize::try_from(self.cursor - self.front).ok()?;
        let message = self.log.get_mut(index)?;
        let offset = self.cursor;
        self.cursor += 1;
        Some(SourceEvent::Message {
            lane: LANE,
            offset,
            payload: Some(message.bytes.clone()),
            // Handed out once: after a rewind the bytes are decoded again.
            decoded: message.decoded.take(),
        })
    }
}

impl Source for QueueSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self, _stop: &AtomicBool) -> Result<(), StreamError> {
        let mut set = self.resumer.read(&[LANE])?;
        let next = set.parts.first().and_then(|p| p.offset).unwrap_or(0);
        match &mut self.durable {
            // The log's messages keep their offsets: those the rejected
            // table counted before a crash are replays.
            Some(durable) => {
                if durable.pending.first != next {
                    return Err(StreamError::WalMoved {
                        wal: durable.pending.first,
                        table: next,
                    });
                }
                let pending = std::mem::take(&mut durable.pending.messages);
                self.log.extend(pending.into_iter().map(|bytes| Message {
                    bytes,
                    decoded: None,
                }));
            }
            // Offsets past the table's are new messages here, never a replay
            // of ones the rejected table counted before a crash (those were
            // not answered and come again under new offsets): count them all.
            None => {
                for part in &mut set.parts {
                    part.rejected_offset = None;
                }
            }
        }
        self.front = next;
        self.cursor = next;
        self.assigned = Some(set);
        Ok(())
    }

    fn poll(&mut self, timeout: Duration) -> Result<Option<SourceEvent>, StreamError> {
        if let Some(set) = self.assigned.take() {
            return Ok(Some(SourceEvent::Assigned(set)));
        }
        while let Ok(s) = self.rx.try_recv() {
            self.take(s);
        }
        if let Some(m) = self.next_message() {
            return Ok(Some(m));
        }
        match self.rx.recv_timeout(timeout) {
            Ok(s) => {
                self.take(s);
                Ok(self.next_message())
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Ok(None),
        }
    }

    fn jumped(&mut self, _: Lane, _: i64, _: i64, _: u32) -> bool {
        // Offsets are handed out one after another: a jump cannot happen.
        true
    }

    fn seek(&mut self, positions: &[(Lane, Option<i64>)]) -> Result<(), StreamError> {
        for &(lane, offset) in positions {
            if lane == LANE {
                self.cursor = offset.unwrap_or(self.front).clamp(self.front, self.end());
            }
        }
        Ok(())
    }

    fn bounds(&mut self, _: Lane) -> Option<(i64, i64)> {
        Some((self.front, self.end()))
    }

    fn is_down(&self) -> bool {
        false
    }

    fn committed(&mut self, next: &BTreeMap<Lane, i64>, _last: bool) {
        let Some(&next) = next.get(&LANE) else {
            return;
        };
        while self.front < next && self.log.pop_front().is_some() {
            self.front += 1;
        }
        if let Some(durable) = &self.durable {
            durable.committed.store(next, Ordering::SeqCst);
        }
        while self.waiters.front().is_some_and(|(end, _)| *end <= next) {
            if let Some((_, done)) = self.waiters.pop_front() {
                let _ = done.send(());
            }
        }
    }

    fn commit_now(&self) -> bool {
        !self.waiters.is_empty() && self.cursor >= self.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(bytes: &[u8], decoded: Option<Vec<RequestEvent>>) -> Message {
        Message {
            bytes: bytes.to_vec(),
            decoded,
        }
    }

    fn next(source: &mut QueueSource) -> (i64, Vec<u8>, Option<Vec<RequestEvent>>) {
        match source.poll(Duration::from_millis(10)) {
            Ok(Some(SourceEvent::Message {
                offset,
                payload,
                decoded,
                ..
            })) => (offset, payload.unwrap_or_default(), decoded),
            _ => panic!("expected a message"),
        }
    }

    #[test]
    fn decoded_requests_are_handed_out_once_and_a_rewind_gets_the_bytes() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let location = crate::table::Location::parse(&dir.path().join("t").display().to_string())
            .expect("location");
        runtime
            .block_on(super::super::Tables::open(&location))
            .expect("tables");
        let resumer = TableResumer::new(runtime.handle().clone(), location, "s".into());
        let (mut source, handle) = queue("s", resumer, 8, None);
        source.prepare(&AtomicBool::new(false)).expect("prepare");
        assert!(matches!(
            source.poll(Duration::from_millis(10)),
            Ok(Some(SourceEvent::Assigned(_)))
        ));
        let line = br#"{"timestamp":"2026-11-02T10:00:00Z","method":"GET","repository":"acme/api","reference":"v1","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","status":200,"remote_addr":"10.0.0.1","user_agent":"docker/27.0"}"#;
        let mut events = Vec::new();
        crate::pipeline::decode::Decoder::new(1 << 20)
            .decode(line, &mut events)
            .expect("decodes");
        let _committed = handle
            .submit(vec![
                message(line, Some(events.clone())),
                message(b"second", None),
            ])
            .expect("queued");
        assert_eq!(next(&mut source), (0, line.to_vec(), Some(events)));
        assert_eq!(next(&mut source), (1, b"second".to_vec(), None));
        // A failed commit sends the engine back: it decodes the bytes then.
        source.seek(&[(LANE, Some(0))]).expect("seek");
        assert_eq!(next(&mut source), (0, line.to_vec(), None));
    }
}
