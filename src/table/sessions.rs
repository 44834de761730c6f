//! Saved sessionizer state of each Kafka partition, kept inside the table
//! directory: `_pullstats/sessions/<topic>/<partition>/<generation>.json.gz`.
//!
//! The open sessions at a commit's cut can be large (up to
//! `--max-open-sessions`), so they do not go into the Delta log itself. The
//! commit instead records the state's *generation* in an application
//! transaction next to the partition's offset; the file is written before
//! the commit, and only a committed generation is ever read back.
//!
//! Files are created exclusively (write to a temporary name, then
//! hard-link, which fails if the name exists): a writer that lost its
//! partition can never replace a file that a commit names. Delta readers and
//! `VACUUM` ignore paths that start with `_`, so this directory is ours.

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::pipeline::sessionize::SessionizerState;

/// Directory of the saved states, inside the table directory.
pub const SESSIONS_DIR: &str = "_pullstats/sessions";

#[derive(Debug, thiserror::Error)]
pub enum SessionStoreError {
    #[error("cannot write session state {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read session state {path} (named by the table's last commit): {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The saved states of one topic's partitions.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
}

impl SessionStore {
    pub fn new(table: &Path, topic: &str) -> Self {
        Self {
            dir: table.join(SESSIONS_DIR).join(topic),
        }
    }

    fn file(&self, partition: i32, generation: i64) -> PathBuf {
        self.dir
            .join(partition.to_string())
            .join(format!("{generation}.json.gz"))
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
        let dir = self.dir.join(partition.to_string());
        let write = |path: &Path, source| SessionStoreError::Write {
            path: path.to_owned(),
            source,
        };
        fs::create_dir_all(&dir).map_err(|e| write(&dir, e))?;
        let tmp = dir.join(format!(".{generation}.{}.tmp", std::process::id()));
        let encoded = encode(state).map_err(|e| write(&tmp, e))?;
        write_synced(&tmp, &encoded).map_err(|e| write(&tmp, e))?;
        let result = loop {
            let target = self.file(partition, generation);
            match fs::hard_link(&tmp, &target) {
                Ok(()) => break Ok(generation),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => generation += 1,
                Err(e) => break Err(write(&target, e)),
            }
        };
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Reads the state saved under `generation`.
    pub fn load(
        &self,
        partition: i32,
        generation: i64,
    ) -> Result<SessionizerState, SessionStoreError> {
        let path = self.file(partition, generation);
        let read = |source| SessionStoreError::Read {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(read)?;
        serde_json::from_reader(BufReader::new(GzDecoder::new(file)))
            .map_err(|e| read(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    /// Deletes the states of `partition` older than `keep_from` (they can no
    /// longer be named by the table's latest commit) and stale temporaries.
    pub fn prune(&self, partition: i32, keep_from: i64) {
        let dir = self.dir.join(partition.to_string());
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let generation = name
                .trim_start_matches('.')
                .split('.')
                .next()
                .and_then(|g| g.parse::<i64>().ok());
            if generation.is_some_and(|g| g < keep_from) {
                if let Err(e) = fs::remove_file(entry.path()) {
                    tracing::debug!(file = %entry.path().display(), "cannot prune a session state: {e}");
                }
            }
        }
    }
}

fn encode(state: &SessionizerState) -> io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    serde_json::to_writer(&mut gz, state)?;
    gz.finish()
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::sessionize::{SessionConfig, Sessionizer};

    #[test]
    fn saves_exclusively_and_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SessionStore::new(dir.path(), "registry-events");
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
    }
}
