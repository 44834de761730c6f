//! Dead letters beside a table in an object store, where there is no local
//! file to append to: each flush writes the letters sent since the last one
//! as one JSON Lines object, `<table>.dead-letter/<run>-<part>.jsonl`, in the
//! same records as the file sink (`pipeline::dead_letter`). Objects cannot
//! be appended to, hence one per flush; callers flush once per bad HTTP body
//! and once per epoch, so parts stay few.
//!
//! The sink is synchronous, as the pipeline is; it is called from the
//! engine's thread and from blocking tasks, never from an async task, and
//! waits on the runtime `handle` for each upload.

use std::sync::Arc;

use deltalake::ObjectStore;
use object_store::ObjectStoreExt as _;

use super::{object_store, Location, TableError};
use crate::pipeline::dead_letter::{json_line, DeadLetter, DeadLetterError, DeadLetterSink};

pub struct StoreDeadLetters {
    handle: tokio::runtime::Handle,
    dir: Location,
    store: Arc<dyn ObjectStore>,
    run: String,
    pending: Vec<u8>,
    parts: u64,
    count: u64,
}

impl StoreDeadLetters {
    /// Letters of the run `run` (it names the objects: make it unique, e.g.
    /// with a random part) under the directory `dir` of a store.
    pub fn new(
        handle: tokio::runtime::Handle,
        dir: &Location,
        run: impl Into<String>,
    ) -> Result<Self, TableError> {
        Ok(Self {
            handle,
            dir: dir.clone(),
            store: object_store(dir)?,
            run: run.into(),
            pending: Vec::new(),
            parts: 0,
            count: 0,
        })
    }

    fn err(&self, name: &str, source: std::io::Error) -> DeadLetterError {
        DeadLetterError {
            sink: format!("{}/{name}", self.dir),
            source,
        }
    }
}

impl DeadLetterSink for StoreDeadLetters {
    fn send(&mut self, letter: DeadLetter<'_>) -> Result<(), DeadLetterError> {
        let line = json_line(&self.run, &letter).map_err(|e| self.err("", e.into()))?;
        self.pending.extend_from_slice(&line);
        self.count += 1;
        Ok(())
    }

    /// Uploads what was sent since the last flush. On failure those letters
    /// are dropped from the sink: the caller does not count them as kept
    /// and sends them again (the engine redoes its epoch; `serve` answers
    /// 503 and the registry resends).
    fn flush(&mut self) -> Result<(), DeadLetterError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let name = format!("{}-{:06}.jsonl", self.run, self.parts);
        let body = std::mem::take(&mut self.pending);
        let path = deltalake::Path::from(name.as_str());
        let store = self.store.clone();
        self.handle
            .block_on(async move { store.put(&path, body.into()).await })
            .map_err(|e| self.err(&name, std::io::Error::other(e)))?;
        self.parts += 1;
        Ok(())
    }

    fn count(&self) -> u64 {
        self.count
    }
}
