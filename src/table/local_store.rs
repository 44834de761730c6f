//! The object store of a local table: object_store's `LocalFileSystem`,
//! with a faster listing of a directory from an offset.
//!
//! deltalake finds a table's new versions by listing `_delta_log` from its
//! newest checkpoint (at every open and update, and twice in every commit).
//! `LocalFileSystem` answers that by walking the whole directory and
//! turning every entry's name into an object path (a URL round trip)
//! before it compares it with the offset: about 1.3 µs an entry on the
//! benchmark machine. A `serve` committing every second keeps 86,400
//! entries there a day of log retention, so the listings grow to seconds a
//! commit (Performance, "Long runs"). Here a listing of a directory of
//! plain files compares the names themselves and reads the metadata of the
//! entries past the offset only: about 0.3–0.5 µs an entry, most of it the
//! kernel's `readdir`. Anything else (a subdirectory, a symbolic link, a
//! name that would need escaping in an object path, an error) is left to
//! `LocalFileSystem`, as is every other call.

use std::fmt;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// See the module docs. Rooted at `/`, as deltalake roots the local store
/// it would build itself.
#[derive(Debug)]
pub struct LocalStore {
    inner: Arc<LocalFileSystem>,
}

impl LocalStore {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(LocalFileSystem::new()),
        }
    }
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// A file name that is its own object-path segment: nothing to escape,
/// not `.` or `..`.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The files of the directory `prefix` whose paths sort after `offset`,
/// or `None` when the directory holds anything but plain files with plain
/// names, or cannot be read (then `LocalFileSystem` answers instead).
fn list_plain_files_after(prefix: &Path, offset: &Path) -> Option<Vec<ObjectMeta>> {
    let rest = offset
        .as_ref()
        .strip_prefix(prefix.as_ref())?
        .strip_prefix('/')?;
    // Without escapes the directory is the path's text under `/`.
    if !prefix.parts().all(|part| plain(part.as_ref())) {
        return None;
    }
    let dir = std::path::Path::new("/").join(prefix.as_ref());
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        // As `LocalFileSystem`: nothing there, nothing listed.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
        Err(_) => return None,
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry.ok()?;
        let name = entry.file_name();
        let name = name.to_str().filter(|n| plain(n))?;
        if !entry.file_type().ok()?.is_file() {
            return None;
        }
        // A path's order is its text's; the prefix is common.
        if name <= rest {
            continue;
        }
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            // Deleted since the directory was read: not listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        listed.push(object_meta(prefix.clone().join(name), &metadata));
    }
    Some(listed)
}

/// What `LocalFileSystem` reports for a file, e-tag included.
fn object_meta(location: Path, metadata: &std::fs::Metadata) -> ObjectMeta {
    let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let micros = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    ObjectMeta {
        location,
        last_modified: modified.into(),
        size: metadata.len(),
        e_tag: Some(format!(
            "{:x}-{micros:x}-{:x}",
            metadata.ino(),
            metadata.len()
        )),
        version: None,
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let Some(prefix) = prefix.cloned() else {
            return self.inner.list_with_offset(None, offset);
        };
        let inner = Arc::clone(&self.inner);
        let offset = offset.clone();
        stream::once(async move {
            let (prefix, offset, listed) = if tokio::runtime::Handle::try_current().is_ok() {
                tokio::task::spawn_blocking(move || {
                    let listed = list_plain_files_after(&prefix, &offset);
                    (prefix, offset, listed)
                })
                .await
                .map_err(|source| object_store::Error::JoinError { source })?
            } else {
                let listed = list_plain_files_after(&prefix, &offset);
                (prefix, offset, listed)
            };
            Ok(match listed {
                Some(listed) => stream::iter(listed.into_iter().map(Ok)).boxed(),
                None => inner.list_with_offset(Some(&prefix), &offset),
            })
        })
        .flat_map(|listing: Result<BoxStream<'static, Result<ObjectMeta>>>| {
            listing.unwrap_or_else(|e| stream::once(async { Err(e) }).boxed())
        })
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use proptest::prelude::*;

    fn path_of(dir: &std::path::Path) -> Path {
        Path::from(
            dir.to_str()
                .expect("UTF-8 temp dir")
                .trim_start_matches('/'),
        )
    }

    /// `(location, size, e-tag, modified)` of each listed file, sorted.
    async fn listed(
        store: &dyn ObjectStore,
        prefix: &Path,
        offset: &Path,
    ) -> Vec<(String, u64, Option<String>, i64)> {
        let mut files: Vec<_> = store
            .list_with_offset(Some(prefix), offset)
            .map_ok(|m| {
                let modified = m.last_modified.timestamp_micros();
                (m.location.to_string(), m.size, m.e_tag, modified)
            })
            .try_collect()
            .await
            .expect("listing");
        files.sort();
        files
    }

    #[tokio::test]
    async fn a_log_is_listed_from_its_offset_as_the_local_store_lists_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("_delta_log");
        std::fs::create_dir(&log).expect("mkdir");
        for version in 0..120u64 {
            std::fs::write(
                log.join(format!("{version:020}.json")),
                "x".repeat(version as usize),
            )
            .expect("write");
        }
        std::fs::write(log.join("00000000000000000100.checkpoint.parquet"), "p").expect("write");
        std::fs::write(log.join("_last_checkpoint"), "{}").expect("write");
        let prefix = path_of(&log);
        // The fast path lists `files` entries, as `LocalFileSystem` does.
        async fn assert_listed(prefix: &Path, from: &str, files: usize, which: &str) {
            let offset = prefix.clone().join(from);
            let plain = list_plain_files_after(prefix, &offset).expect("a plain directory");
            assert_eq!(plain.len(), files, "{which}");
            let ours = listed(&LocalStore::new(), prefix, &offset).await;
            let theirs = listed(&LocalFileSystem::new(), prefix, &offset).await;
            assert_eq!(ours, theirs);
            assert!(ours.iter().all(|(l, ..)| l.as_str() > offset.as_ref()));
        }
        assert_listed(
            &prefix,
            "00000000000000000100",
            22,
            "100 and its checkpoint, 101..119, _last_checkpoint",
        )
        .await;
        // From a file's own name: not that file.
        assert_listed(
            &prefix,
            "00000000000000000100.json",
            20,
            "100's checkpoint, 101..119, _last_checkpoint",
        )
        .await;

        // A directory that is not there lists nothing, as theirs does.
        let missing = path_of(&dir.path().join("missing"));
        let offset = missing.clone().join("0");
        assert_eq!(list_plain_files_after(&missing, &offset), Some(Vec::new()));
        assert!(listed(&LocalStore::new(), &missing, &offset)
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn anything_but_plain_files_is_left_to_the_local_store() {
        // What each adds to the one commit (`a#1` is a temporary file of
        // the local store's own writes: never listed).
        for (odd, listed_too) in [
            ("subdirectory", 1),
            ("link", 1),
            ("a#1", 0),
            ("b c", 1),
            ("é", 1),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("_delta_log");
            std::fs::create_dir(&log).expect("mkdir");
            std::fs::write(log.join("00000000000000000001.json"), "{}").expect("write");
            match odd {
                "subdirectory" => {
                    std::fs::create_dir(log.join("_commits")).expect("mkdir");
                    std::fs::write(log.join("_commits").join("x.json"), "{}").expect("write");
                }
                "link" => std::os::unix::fs::symlink(
                    log.join("00000000000000000001.json"),
                    log.join("00000000000000000002.json"),
                )
                .expect("symlink"),
                name => std::fs::write(log.join(name), "{}").expect("write"),
            }
            let prefix = path_of(&log);
            let offset = prefix.clone().join("00000000000000000000");
            assert_eq!(list_plain_files_after(&prefix, &offset), None, "{odd}");
            let ours = listed(&LocalStore::new(), &prefix, &offset).await;
            let theirs = listed(&LocalFileSystem::new(), &prefix, &offset).await;
            assert_eq!(ours, theirs, "{odd}");
            assert_eq!(ours.len(), 1 + listed_too, "{odd}: {ours:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_names_and_offset_list_as_the_local_store_lists_them(
            names in proptest::collection::btree_set("[0-9a-c._#-]{1,6}", 0..12),
            offset in "[0-9a-c._#-]{0,6}",
            // Often one of the names: it is not listed itself.
            named in proptest::option::of(any::<proptest::sample::Index>()),
        ) {
            let names: Vec<String> = names.into_iter().collect();
            let offset = match named {
                Some(i) if !names.is_empty() => i.get(&names).clone(),
                _ => offset,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("log");
            std::fs::create_dir(&log).expect("mkdir");
            for name in names.iter().filter(|n| !matches!(n.as_str(), "." | "..")) {
                std::fs::write(log.join(name), name).expect("write");
            }
            let prefix = path_of(&log);
            let offset = Path::from(format!("{prefix}/{offset}"));
            let (ours, theirs) = runtime.block_on(async {
                (
                    listed(&LocalStore::new(), &prefix, &offset).await,
                    listed(&LocalFileSystem::new(), &prefix, &offset).await,
                )
            });
            prop_assert_eq!(ours, theirs);
        }
    }
}
