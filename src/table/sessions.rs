//! Saved sessionizer state of each Kafka partition, kept inside the table
//! directory: `_pullstats/sessions/<topic>/<partition>/<generation>.json.gz`.
//!
//! The open sessions at a commit's cut can be large (up to
//! `--max-open-sessions`), so they do not go into the Delta log itself. The
//! commit instead records the state's *generation* in an application
//! transaction next to the partition's offset; the file is written before
//! the commit, and only a committed generation is ever read back.
//!
//! Files are created exclusively (a conditional PUT: `If-None-Match: *` on
//! S3, an exclusive create on a local disk): a writer that lost its
//! partition can never replace a file that a commit names. Delta readers and
//! `VACUUM` ignore paths that start with `_`, so this directory is ours. It
//! lives in the table's own store, local or remote, through the table's
//! object store: nothing a daemon resumes from stays on a machine's disk.
//!
//! The engine is synchronous (it runs on its own thread), so the store's
//! calls block on the runtime they were given.

use std::io::{self, Read};
use std::sync::Arc;

use deltalake::{DeltaTable, ObjectStore, Path};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures::StreamExt;
use object_store::{ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use crate::pipeline::sessionize::SessionizerState;

/// Directory of the saved states, inside the table directory.
pub const SESSIONS_DIR: &str = "_pullstats/sessions";

#[derive(Debug, thiserror::Error)]
pub enum SessionStoreError {
    #[error("cannot write session state {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read session state {path} (named by the table's last commit): {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(e: object_store::Error) -> io::Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

/// The saved states of one topic's partitions.
#[derive(Debug, Clone)]
pub struct SessionStore {
    runtime: tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    topic: String,
}

impl SessionStore {
    /// The states of `topic` in the store of `table` (rooted at it).
    pub fn new(runtime: tokio::runtime::Handle, table: &DeltaTable, topic: &str) -> Self {
        Self {
            runtime,
            store: table.log_store().object_store(None),
            topic: topic.to_owned(),
        }
    }

    /// The directory of one partition's states (the topic is one path
    /// segment, escaped by `object_store` should it hold a `/`).
    fn dir(&self, partition: i32) -> Path {
        Path::from_iter(
            SESSIONS_DIR
                .split('/')
                .chain([self.topic.as_str(), &partition.to_string()]),
        )
    }

    fn file(&self, partition: i32, generation: i64) -> Path {
        self.dir(partition).join(format!("{generation}.json.gz"))
    }

    /// Saves `state` under a new generation greater than `after` and returns
    /// the generation. Generations follow the wall clock in microseconds so
    /// that two writers racing for one partition do not pick the same one;
    /// when they do anyway, the second picks the next free one.
    pub fn save(
        &self,
        partition: i32,
        after: Option<i64>,
        state: &SessionizerState,
    ) -> Result<i64, SessionStoreError> {
        let now = chrono::Utc::now().timestamp_micros();
        let mut generation = after.map_or(now, |a| now.max(a.saturating_add(1)));
        let encoded =
            PutPayload::from(encode(state).map_err(|source| SessionStoreError::Write {
                path: self.dir(partition).to_string(),
                source,
            })?);
        loop {
            let target = self.file(partition, generation);
            let put =
                self.store
                    .put_opts(&target, encoded.clone(), PutOptions::from(PutMode::Create));
            match self.runtime.block_on(put) {
                Ok(_) => return Ok(generation),
                Err(object_store::Error::AlreadyExists { .. }) => generation += 1,
                Err(e) => {
                    return Err(SessionStoreError::Write {
                        path: target.to_string(),
                        source: io_error(e),
                    })
                }
            }
        }
    }

    /// Reads the state saved under `generation`.
    pub fn load(
        &self,
        partition: i32,
        generation: i64,
    ) -> Result<SessionizerState, SessionStoreError> {
        let path = self.file(partition, generation);
        let read = |source| SessionStoreError::Read {
            path: path.to_string(),
            source,
        };
        let bytes = self
            .runtime
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .map_err(|e| read(io_error(e)))?;
        let mut json = Vec::new();
        GzDecoder::new(&bytes[..])
            .read_to_end(&mut json)
            .map_err(read)?;
        serde_json::from_slice(&json)
            .map_err(|e| read(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    /// Deletes the states of `partition` older than `keep_from` (they can no
    /// longer be named by the table's latest commit), and temporaries an
    /// earlier version left.
    pub fn prune(&self, partition: i32, keep_from: i64) {
        let dir = self.dir(partition);
        self.runtime.block_on(async {
            let mut entries = self.store.list(Some(&dir));
            while let Some(entry) = entries.next().await {
                let Ok(entry) = entry else { continue };
                let generation = entry
                    .location
                    .filename()
                    .map(|n| n.trim_start_matches('.'))
                    .and_then(|n| n.split('.').next())
                    .and_then(|g| g.parse::<i64>().ok());
                if generation.is_some_and(|g| g < keep_from) {
                    if let Err(e) = self.store.delete(&entry.location).await {
                        tracing::debug!(file = %entry.location, "cannot prune a session state: {e}");
                    }
                }
            }
        });
    }

    /// The partitions of every topic that have saved states: what `info`
    /// reports progress for.
    pub async fn partitions(
        store: &dyn ObjectStore,
    ) -> Result<Vec<(String, i32)>, object_store::Error> {
        let root = Path::from(SESSIONS_DIR);
        let mut pairs = Vec::new();
        for topic in store
            .list_with_delimiter(Some(&root))
            .await?
            .common_prefixes
        {
            let Some(name) = topic.filename().map(str::to_owned) else {
                continue;
            };
            for part in store
                .list_with_delimiter(Some(&topic))
                .await?
                .common_prefixes
            {
                if let Some(p) = part.filename().and_then(|p| p.parse::<i32>().ok()) {
                    pairs.push((name.clone(), p));
                }
            }
        }
        pairs.sort();
        Ok(pairs)
    }
}

fn encode(state: &SessionizerState) -> io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    serde_json::to_writer(&mut gz, state)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::sessionize::{SessionConfig, Sessionizer};

    #[test]
    fn saves_exclusively_and_loads_back() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let location = crate::table::Location::Local(dir.path().join("pulls"));
        let table = runtime
            .block_on(crate::table::open_or_create(
                &location,
                crate::table::TableKind::Pulls,
            ))
            .expect("table");
        let store = SessionStore::new(runtime.handle().clone(), &table, "registry-events");
        let state = Sessionizer::new(SessionConfig::default()).snapshot();
        let g1 = store.save(3, None, &state).expect("save");
        let g2 = store.save(3, Some(g1), &state).expect("save");
        assert!(g2 > g1, "generations increase");
        // A racing writer that asks for a generation below an existing one
        // never replaces it.
        let g3 = store.save(3, Some(g2 - 1), &state).expect("save");
        assert_ne!(g3, g2);
        assert!(store.load(3, g1).expect("load").is_empty());
        store.prune(3, g2);
        assert!(store.load(3, g1).is_err(), "pruned");
        assert!(store.load(3, g2).is_ok());
        let err = store.load(4, g2).expect_err("missing");
        assert!(
            err.to_string().contains("cannot read session state"),
            "{err}"
        );
        let parts = runtime
            .block_on(SessionStore::partitions(
                &*table.log_store().object_store(None),
            ))
            .expect("list");
        assert_eq!(parts, vec![("registry-events".to_owned(), 3)]);
        assert!(
            dir.path()
                .join("pulls/_pullstats/sessions/registry-events/3")
                .is_dir(),
            "kept inside the table directory"
        );
    }
}
