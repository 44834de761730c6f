//! Direct mode's write-ahead log: an envelope's messages are appended to a
//! local file and synced, the sender is answered, and the engine commits
//! them to the table behind it. A registry sends one envelope at a time per
//! endpoint, so answering after the Delta commit holds it to a commit's
//! latency per envelope; answering after a sync holds it to milliseconds.
//!
//! Messages are numbered on from the table's offset of the direct stream, as
//! the queue hands them to the engine: message `n` of the log is offset `n`
//! of lane 0. The log is a directory of segments named by their first offset
//! (`00000000000000001234.wal`), each a header and records:
//!
//! ```text
//!  "pullstats-wal-1\n" │ len u32 LE │ crc32 u32 LE │ payload │ len │ crc32 │ payload │ …
//! ```
//!
//! At start, records from the table's offset on are handed to the engine
//! again (the table does not hold them yet); a record cut short by a crash
//! (never synced, so never answered) is cut off; a segment wholly below the
//! table's offset is deleted, as is every such segment once a commit covers
//! it. A `lock` file keeps a second process out.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::oneshot;

use super::queue::{Message, QueueHandle, SubmitError};
use crate::metrics::Histogram;

const MAGIC: &[u8] = b"pullstats-wal-1\n";
const RECORD_HEADER: usize = 8;
/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// How often committed segments are looked for while nothing arrives.
const IDLE: Duration = Duration::from_secs(1);
/// Appends taken into one sync at most.
const GROUP: usize = 1024;
/// Messages the log may hold beyond the table's commits (the engine keeps
/// them in memory too); past it envelopes are answered 503 until the table
/// catches up (a store that is down, a commit that keeps failing).
pub const MAX_AHEAD: i64 = 200_000;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write-ahead log {0} is in use by another process (its `lock` file is held)")]
    Locked(PathBuf),
    #[error(
        "write-ahead log {path}: a damaged record at byte {at} of a segment that is not the \
         last; the records after it were answered and are not in the table. Move the directory \
         away to start without them"
    )]
    Damaged { path: PathBuf, at: u64 },
    #[error(
        "write-ahead log {dir}: messages {from} to {to} are missing (a segment was deleted); \
         they were answered and are not in the table. Move the directory away to start \
         without them"
    )]
    Missing { dir: PathBuf, from: i64, to: i64 },
    #[error(
        "write-ahead log {dir} starts at message {first} but the table's next is {table}: the \
         messages between are in neither (a log of another table, or a table restored from a \
         backup). Move the directory away to start without them"
    )]
    Gap {
        dir: PathBuf,
        first: i64,
        table: i64,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The messages of the log the table does not hold yet.
#[derive(Debug, Default)]
pub struct Pending {
    /// Offset of the first (the table's next offset).
    pub first: i64,
    pub messages: Vec<Vec<u8>>,
}

/// An open log, appending to its last segment.
pub struct Wal {
    dir: PathBuf,
    _lock: File,
    /// First offset and path of each segment, oldest first; the last is open.
    segments: Vec<(i64, PathBuf)>,
    file: File,
    size: u64,
    /// Offset of the next record.
    next: i64,
}

fn segment_name(first: i64) -> String {
    format!("{first:020}.wal")
}

fn segment_first(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".wal")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The records of a segment's bytes, and where its valid part ends (short
/// of `bytes.len()` when a record is cut short or damaged).
fn records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    if !bytes.starts_with(MAGIC) {
        return (out, 0);
    }
    let mut at = MAGIC.len();
    while bytes.len() - at >= RECORD_HEADER {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[at + i..at + i + 4]);
            u32::from_le_bytes(w)
        };
        let (len, crc) = (word(0) as usize, word(4));
        let start = at + RECORD_HEADER;
        let Some(payload) = bytes.get(start..start.saturating_add(len)) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        out.push(payload);
        at = start + len;
    }
    (out, at)
}

/// Syncs a directory, so that files created or removed in it stay so.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

impl Wal {
    /// Opens (creating) the log in `dir` for a table whose next offset is
    /// `table_next`, and returns the messages the table does not hold.
    pub fn open(dir: &Path, table_next: i64) -> Result<(Self, Pending), WalError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(WalError::Locked(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
        }
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            if let Some(first) = entry.file_name().to_str().and_then(segment_first) {
                segments.push((first, entry.path()));
            }
        }
        segments.sort();

        let mut pending = Pending {
            first: table_next,
            messages: Vec::new(),
        };
        let last = segments.len().saturating_sub(1);
        let mut expected = segments.first().map(|(first, _)| *first);
        for (i, (first, path)) in segments.iter().enumerate() {
            if expected != Some(*first) {
                return Err(WalError::Missing {
                    dir: dir.to_owned(),
                    from: expected.unwrap_or(*first),
                    to: *first,
                });
            }
            let bytes = fs::read(path).map_err(io_error(path))?;
            let (found, valid) = records(&bytes);
            if valid < bytes.len() {
                if i != last {
                    return Err(WalError::Damaged {
                        path: path.clone(),
                        at: valid as u64,
                    });
                }
                // Cut short by a crash before its sync: never answered.
                tracing::warn!(path = %path.display(), at = valid, "cutting off an unfinished record");
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_error(path))?;
                f.set_len(valid as u64)
                    .and_then(|()| f.sync_all())
                    .map_err(io_error(path))?;
            }
            expected = Some(first + found.len() as i64);
            for (offset, record) in (*first..).zip(found) {
                if offset < table_next {
                    continue;
                }
                if pending.messages.is_empty() && offset != table_next {
                    return Err(WalError::Gap {
                        dir: dir.to_owned(),
                        first: offset,
                        table: table_next,
                    });
                }
                pending.messages.push(record.to_vec());
            }
        }
        // Numbering goes on after what the table lacks. Only segments with
        // messages the table lacks are kept (the last of them is appended
        // to); with none, a new segment starts at the table's offset.
        let next = table_next + pending.messages.len() as i64;
        let ends: Vec<i64> = segments
            .iter()
            .skip(1)
            .map(|(first, _)| *first)
            .chain(expected)
            .collect();
        let mut kept = Vec::new();
        for ((first, path), end) in segments.into_iter().zip(ends) {
            if end > table_next && end > first {
                kept.push((first, path));
            } else {
                fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        sync_dir(dir)?;
        let (file, size) = match kept.last() {
            Some((_, path)) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(io_error(path))?;
                let size = file.metadata().map_err(io_error(path))?.len();
                (file, size)
            }
            None => {
                let path = dir.join(segment_name(next));
                let file = Self::create_segment(dir, &path)?;
                kept.push((next, path));
                (file, MAGIC.len() as u64)
            }
        };
        if !pending.messages.is_empty() {
            tracing::info!(
                messages = pending.messages.len(),
                from = pending.first,
                "the write-ahead log holds messages the table does not; committing them first"
            );
        }
        let wal = Self {
            dir: dir.to_owned(),
            _lock: lock,
            segments: kept,
            file,
            size,
            next,
        };
        Ok((wal, pending))
    }

    fn create_segment(dir: &Path, path: &Path) -> Result<File, WalError> {
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
            .map_err(io_error(path))?;
        file.write_all(MAGIC)
            .and_then(|()| file.sync_all())
            .map_err(io_error(path))?;
        sync_dir(dir)?;
        Ok(file)
    }

    /// Offset the next record gets.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// Appends `messages` (not yet synced).
    fn append(&mut self, messages: &[impl AsRef<[u8]>]) -> Result<(), WalError> {
        if self.size >= SEGMENT_BYTES {
            self.sync()?;
            let path = self.dir.join(segment_name(self.next));
            self.file = Self::create_segment(&self.dir, &path)?;
            self.segments.push((self.next, path));
            self.size = MAGIC.len() as u64;
        }
        let mut buf = Vec::with_capacity(
            messages
                .iter()
                .map(|m| m.as_ref().len() + RECORD_HEADER)
                .sum(),
        );
        for m in messages.iter().map(AsRef::as_ref) {
            let len = u32::try_from(m.len()).map_err(|_| WalError::Io {
                path: self.dir.clone(),
                source: io::Error::other("a message over 4 GiB"),
            })?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(m).to_le_bytes());
            buf.extend_from_slice(m);
        }
        let path = &self.segments[self.segments.len() - 1].1;
        self.file.write_all(&buf).map_err(io_error(path))?;
        self.size += buf.len() as u64;
        self.next += messages.len() as i64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        let path = &self.segments[self.segments.len() - 1].1;
        self.file.sync_data().map_err(io_error(path))
    }

    /// After the table's commits reached `table_next`: how far ahead the
    /// log is, and the segments it no longer needs.
    fn follow(&mut self, table_next: i64, stats: &WalStats) -> Result<(), WalError> {
        stats.ahead.store(self.next - table_next, Ordering::Relaxed);
        self.forget_below(table_next)
    }

    /// Deletes the closed segments the table holds wholly (every offset
    /// below `table_next`).
    fn forget_below(&mut self, table_next: i64) -> Result<(), WalError> {
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[1].0 <= table_next {
            let (_, path) = self.segments.remove(0);
            fs::remove_file(&path).map_err(io_error(&path))?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// One envelope's messages and who waits for their sync.
struct Append {
    messages: Vec<Message>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Sync buckets (seconds): a local disk's fdatasync takes milliseconds.
const SYNC_BUCKETS_S: [f64; 9] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0];

/// What `/metrics` shows of the log.
pub struct WalStats {
    syncs: Mutex<Histogram>,
    /// Messages synced into the log and not yet committed to the table.
    ahead: AtomicI64,
}

impl WalStats {
    fn new() -> Self {
        Self {
            syncs: Mutex::new(Histogram::new(&SYNC_BUCKETS_S)),
            ahead: AtomicI64::new(0),
        }
    }

    /// Appends the log's series to a Prometheus text exposition.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP pullstats_wal_sync_seconds Time to write and sync a group of envelopes into the write-ahead log\n\
             # TYPE pullstats_wal_sync_seconds histogram"
        );
        if let Ok(h) = self.syncs.lock() {
            h.render(out, "pullstats_wal_sync_seconds", "");
        }
        let _ = writeln!(
            out,
            "# HELP pullstats_wal_ahead_messages Messages in the write-ahead log the table has not committed yet\n\
             # TYPE pullstats_wal_ahead_messages gauge\n\
             pullstats_wal_ahead_messages {}",
            self.ahead.load(Ordering::Relaxed)
        );
    }
}

/// The sending side, cloned into every request handler.
#[derive(Clone)]
pub struct WalHandle {
    tx: SyncSender<Append>,
    pub stats: Arc<WalStats>,
}

impl WalHandle {
    /// Queues `messages`; the receiver resolves once they are synced and
    /// handed to the engine (or with why not).
    pub fn submit(
        &self,
        messages: Vec<Message>,
    ) -> Result<oneshot::Receiver<Result<(), String>>, SubmitError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .try_send(Append { messages, done })
            .map_err(|e| match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Disconnected(_) => SubmitError::Stopped,
            })?;
        Ok(rx)
    }
}

/// Starts the log's thread: it appends what handlers submit, syncs once per
/// group, hands the messages to the engine through `queue`, and answers.
/// `table_next` is the table's next offset as the engine commits it; `stop`
/// is set when the log fails (the process then stops, as when the engine
/// does). At most `capacity` appends wait, and the log runs at most
/// `max_ahead` messages ahead of the table.
pub fn spawn(
    wal: Wal,
    queue: QueueHandle,
    table_next: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    (capacity, max_ahead): (usize, i64),
) -> io::Result<WalHandle> {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
    let stats = Arc::new(WalStats::new());
    let shared = stats.clone();
    std::thread::Builder::new()
        .name("pullstats-wal".into())
        .spawn(move || {
            if let Err(e) = run(wal, &rx, &queue, &table_next, (max_ahead, &shared)) {
                tracing::error!("{e}; shutting down");
                stop.store(true, Ordering::SeqCst);
            }
        })?;
    Ok(WalHandle { tx, stats })
}

fn run(
    mut wal: Wal,
    rx: &Receiver<Append>,
    queue: &QueueHandle,
    table_next: &AtomicI64,
    (max_ahead, stats): (i64, &WalStats),
) -> Result<(), WalError> {
    loop {
        let first = match rx.recv_timeout(IDLE) {
            Ok(a) => a,
            Err(RecvTimeoutError::Timeout) => {
                wal.follow(table_next.load(Ordering::SeqCst), stats)?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let mut group = vec![first];
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(a) => group.push(a),
                Err(_) => break,
            }
        }
        let ahead = wal.next() - table_next.load(Ordering::SeqCst);
        if ahead >= max_ahead {
            for a in group {
                let _ = a.done.send(Err(format!(
                    "the table is {ahead} messages behind the write-ahead log"
                )));
            }
            continue;
        }
        let started = Instant::now();
        let written = group
            .iter()
            .try_for_each(|a| wal.append(&a.messages))
            .and_then(|()| wal.sync());
        if let Ok(mut h) = stats.syncs.lock() {
            h.observe(started.elapsed());
        }
        if let Err(e) = written {
            for a in group {
                let _ = a
                    .done
                    .send(Err("the write-ahead log cannot be written".into()));
            }
            return Err(e);
        }
        // The gauge counts the group before anyone hears it was synced.
        wal.follow(table_next.load(Ordering::SeqCst), stats)?;
        for a in group {
            // Once synced the messages are safe: if the engine has stopped
            // they are committed at the next start (and the sender, told
            // 503, resends them: their event ids are recognised then).
            let answer = queue
                .push(a.messages)
                .map_err(|_| "the table writer has stopped".to_owned());
            let _ = a.done.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(range: std::ops::Range<i64>) -> Vec<Vec<u8>> {
        range.map(|i| format!("message {i}").into_bytes()).collect()
    }

    #[test]
    fn messages_the_table_lacks_come_back_after_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut wal, pending) = Wal::open(dir.path(), 10).expect("open");
        assert!(pending.messages.is_empty());
        wal.append(&msgs(10..15)).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        // The table committed up to 12 meanwhile.
        let (wal, pending) = Wal::open(dir.path(), 12).expect("reopen");
        assert_eq!(pending.first, 12);
        assert_eq!(pending.messages, msgs(12..15));
        assert_eq!(wal.next(), 15);
    }

    #[test]
    fn a_record_cut_short_is_cut_off_and_appending_goes_on() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&msgs(0..3)).expect("append");
        wal.sync().expect("sync");
        let path = wal.segments[0].1.clone();
        drop(wal);
        // A crash in the middle of the fourth record's write.
        let mut f = OpenOptions::new().append(true).open(&path).expect("seg");
        f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, b'x']).expect("torn");
        drop(f);
        let (mut wal, pending) = Wal::open(dir.path(), 0).expect("reopen");
        assert_eq!(pending.messages, msgs(0..3));
        wal.append(&msgs(3..4)).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let (_, pending) = Wal::open(dir.path(), 1).expect("again");
        assert_eq!(pending.messages, msgs(1..4));
    }

    #[test]
    fn damage_before_the_last_segment_stops_the_open() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&msgs(0..2)).expect("append");
        wal.size = SEGMENT_BYTES; // the next append starts a segment
        wal.append(&msgs(2..4)).expect("append");
        wal.sync().expect("sync");
        let first = wal.segments[0].1.clone();
        drop(wal);
        let mut bytes = fs::read(&first).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&first, bytes).expect("write");
        assert!(matches!(
            Wal::open(dir.path(), 0),
            Err(WalError::Damaged { .. })
        ));
    }

    #[test]
    fn committed_segments_are_deleted_and_a_gap_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&msgs(0..2)).expect("append");
        wal.size = SEGMENT_BYTES;
        wal.append(&msgs(2..4)).expect("append");
        wal.sync().expect("sync");
        assert_eq!(wal.segments.len(), 2);
        wal.forget_below(1).expect("forget");
        assert_eq!(wal.segments.len(), 2, "offset 1 is not in the table");
        wal.forget_below(2).expect("forget");
        assert_eq!(wal.segments.len(), 1);
        drop(wal);
        let (_, pending) = Wal::open(dir.path(), 3).expect("reopen");
        assert_eq!(pending.messages, msgs(3..4));
        // A table that never got offsets 0..2 cannot use this log.
        drop(pending);
        assert!(matches!(
            Wal::open(dir.path(), 0),
            Err(WalError::Gap { first: 2, .. })
        ));
    }

    #[test]
    fn a_log_the_table_holds_wholly_starts_over_at_the_tables_offset() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut wal, _) = Wal::open(dir.path(), 0).expect("open");
        wal.append(&msgs(0..3)).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let (wal, pending) = Wal::open(dir.path(), 7).expect("reopen");
        assert!(pending.messages.is_empty());
        assert_eq!(wal.next(), 7);
        assert_eq!(wal.segments.len(), 1);
        assert_eq!(wal.segments[0].0, 7);
    }

    #[test]
    fn an_empty_segment_ahead_of_the_table_starts_over_at_its_offset() {
        let dir = tempfile::tempdir().expect("dir");
        drop(Wal::open(dir.path(), 7).expect("open"));
        // The table is restored to an earlier version: nothing is lost.
        let (mut wal, pending) = Wal::open(dir.path(), 3).expect("reopen");
        assert!(pending.messages.is_empty());
        assert_eq!((wal.next(), wal.segments.len()), (3, 1));
        wal.append(&msgs(3..5)).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let (_, pending) = Wal::open(dir.path(), 4).expect("again");
        assert_eq!(pending.messages, msgs(4..5));
    }

    #[test]
    fn the_log_stops_taking_envelopes_once_too_far_ahead_of_the_table() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let resumer = crate::stream::TableResumer::new(
            runtime.handle().clone(),
            crate::table::Location::parse(&dir.path().join("t").display().to_string())
                .expect("location"),
            "s".into(),
        );
        let (_source, queue) = crate::stream::queue::queue("s", resumer, 8, None);
        let (wal, _) = Wal::open(&dir.path().join("wal"), 0).expect("open");
        let table_next = Arc::new(AtomicI64::new(0));
        let handle = spawn(
            wal,
            queue,
            table_next.clone(),
            Arc::new(AtomicBool::new(false)),
            (8, 3),
        )
        .expect("thread");
        let send = |n| {
            let messages = msgs(0..n)
                .into_iter()
                .map(|bytes| Message {
                    bytes,
                    decoded: None,
                })
                .collect();
            let rx = handle.submit(messages).expect("queued");
            rx.blocking_recv().expect("answered")
        };
        assert_eq!(send(3), Ok(()));
        let refused = send(1).expect_err("3 messages ahead");
        assert!(refused.contains("3 messages behind"), "{refused}");
        table_next.store(2, Ordering::SeqCst);
        assert_eq!(send(1), Ok(()));
        let mut text = String::new();
        handle.stats.render(&mut text);
        assert!(
            text.contains("pullstats_wal_sync_seconds_count 2"),
            "{text}"
        );
        assert!(text.contains("pullstats_wal_ahead_messages 2"), "{text}");
    }

    #[test]
    fn a_second_process_is_kept_out() {
        let dir = tempfile::tempdir().expect("dir");
        let _held = Wal::open(dir.path(), 0).expect("open");
        assert!(matches!(Wal::open(dir.path(), 0), Err(WalError::Locked(_))));
    }
}
