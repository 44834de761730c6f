//! Enrichment data that reloads while the process runs.
//!
//! Operators replace their MaxMind databases weekly and the cloud range
//! files daily, in place. A task checks the files every `--reload-interval`
//! (and at once on SIGHUP); when their fingerprint (path, modification
//! time, size, inode) changed, it loads the whole new set on a blocking
//! thread and hands it to the engine, which swaps it in between two
//! messages: no action is ever decided with a half-loaded set. A set that
//! fails to load (a database caught mid-copy, an unknown range file) leaves
//! the data in use; the failure is logged and counted once per state of the
//! files, and the load is tried again at every check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::pipeline::enrich::{EnrichData, EnrichSources, Fingerprint};

/// Decides when the files changed and loads them.
pub struct Reloader {
    sources: EnrichSources,
    /// The files as they were when the data in use was loaded.
    loaded: Fingerprint,
    /// The files as they were at the last failed load (counted once).
    failed: Option<Fingerprint>,
    metrics: Arc<Metrics>,
}

impl Reloader {
    /// `loaded`: the fingerprint taken just before the data in use was loaded.
    pub fn new(sources: EnrichSources, loaded: Fingerprint, metrics: Arc<Metrics>) -> Self {
        Self {
            sources,
            loaded,
            failed: None,
            metrics,
        }
    }

    /// A load that did not finish: logged and counted, the data in use kept.
    fn count_failure(&mut self, reason: &str) {
        tracing::error!("enrichment reload failed, keeping the data in use: {reason}");
        self.metrics
            .enrichment_reload_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Whether there are files to watch at all.
    pub fn watches_files(&self) -> bool {
        !self.sources.geoip.is_empty() || self.sources.cloud_ranges.is_some()
    }

    /// One check (blocking file I/O): the new data when the files changed
    /// and the whole set loaded.
    pub fn check(&mut self) -> Option<EnrichData> {
        // Taken before loading: a change during the load is seen next time.
        let now = self.sources.fingerprint();
        if now == self.loaded {
            return None;
        }
        match self.sources.load() {
            Ok(data) => {
                tracing::info!(
                    "enrichment data reloaded: {}",
                    describe_change(&self.loaded, &now)
                );
                self.metrics
                    .enrichment_reloads
                    .fetch_add(1, Ordering::Relaxed);
                self.loaded = now;
                self.failed = None;
                Some(data)
            }
            Err(e) if self.failed.as_ref() != Some(&now) => {
                self.count_failure(&e.to_string());
                self.failed = Some(now);
                None
            }
            Err(e) => {
                tracing::debug!("enrichment reload still failing: {e}");
                None
            }
        }
    }
}

/// Which files were added, replaced or removed between two fingerprints.
pub fn describe_change(before: &Fingerprint, after: &Fingerprint) -> String {
    let index = |f: &Fingerprint| -> BTreeMap<PathBuf, (Option<std::time::SystemTime>, u64, u64)> {
        f.iter()
            .map(|(p, m, len, ino)| (p.clone(), (*m, *len, *ino)))
            .collect()
    };
    let (old, new) = (index(before), index(after));
    let mut parts = Vec::new();
    for (path, state) in &new {
        match old.get(path) {
            None => parts.push(format!("added {}", path.display())),
            Some(s) if s != state => parts.push(format!("replaced {}", path.display())),
            Some(_) => {}
        }
    }
    for path in old.keys().filter(|p| !new.contains_key(*p)) {
        parts.push(format!("removed {}", path.display()));
    }
    parts.join(", ")
}

/// Starts the checks on the current runtime: every `interval` (never when
/// zero) and on each `hangup` notification. Reloaded data arrives on the
/// returned channel.
pub fn spawn(
    reloader: Reloader,
    interval: Duration,
    hangup: Arc<Notify>,
) -> (JoinHandle<()>, mpsc::Receiver<EnrichData>) {
    let (tx, rx) = mpsc::channel();
    let task = tokio::spawn(async move {
        let mut reloader = reloader;
        let mut tick = (!interval.is_zero()).then(|| {
            let mut t = tokio::time::interval(interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        if let Some(t) = &mut tick {
            t.tick().await; // the first tick is immediate
        }
        loop {
            tokio::select! {
                () = hangup.notified() => tracing::info!("SIGHUP: checking the enrichment files now"),
                () = next_tick(&mut tick) => {}
            }
            let checked = tokio::task::spawn_blocking(move || {
                let data =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reloader.check()));
                (reloader, data)
            })
            .await;
            let Ok((back, data)) = checked else {
                tracing::error!("the enrichment reload task was lost; reloads stop");
                return;
            };
            reloader = back;
            match data {
                Ok(Some(data)) => {
                    if tx.send(data).is_err() {
                        return; // the engine is gone
                    }
                }
                Ok(None) => {}
                Err(_) => reloader.count_failure("a reader failed on the new files"),
            }
        }
    });
    (task, rx)
}

async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reloader of a directory holding one valid range file.
    fn reloader(dir: &std::path::Path) -> (Reloader, Arc<Metrics>) {
        std::fs::write(dir.join("a.txt"), "# provider: acme\n203.0.113.0/24\n").expect("write");
        let sources = EnrichSources {
            geoip: vec![],
            cloud_ranges: Some(dir.to_owned()),
        };
        let metrics = Arc::new(Metrics::default());
        let fingerprint = sources.fingerprint();
        sources.load().expect("initial load");
        (
            Reloader::new(sources, fingerprint, metrics.clone()),
            metrics,
        )
    }

    fn count(m: &std::sync::atomic::AtomicU64) -> u64 {
        m.load(Ordering::Relaxed)
    }

    #[test]
    fn unchanged_files_are_not_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut r, metrics) = reloader(dir.path());
        assert!(r.check().is_none());
        assert_eq!(count(&metrics.enrichment_reloads), 0);
    }

    #[test]
    fn a_failed_load_is_counted_once_and_retried_until_it_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut r, metrics) = reloader(dir.path());
        std::fs::write(dir.path().join("b.txt"), "not a range file\n").expect("write");
        assert!(r.check().is_none(), "a bad set is not swapped in");
        assert!(r.check().is_none(), "and is tried again");
        assert_eq!(
            count(&metrics.enrichment_reload_failures),
            1,
            "counted once"
        );
        std::fs::write(
            dir.path().join("b.txt"),
            "# provider: other\n198.51.100.0/24\n",
        )
        .expect("write");
        let data = r.check().expect("the fixed set loads");
        assert_eq!(
            data.cloud
                .lookup("198.51.100.9".parse().expect("ip"))
                .map(|p| p.host.to_string()),
            Some("other".to_owned())
        );
        assert_eq!(count(&metrics.enrichment_reloads), 1);
        assert!(r.check().is_none(), "loaded once");
    }

    #[test]
    fn changes_are_described_by_file() {
        let f = |p: &str, len| (PathBuf::from(p), None, len, 1);
        let before = vec![f("/r/a", 1), f("/r/b", 1)];
        let after = vec![f("/r/a", 2), f("/r/c", 1)];
        assert_eq!(
            describe_change(&before, &after),
            "replaced /r/a, added /r/c, removed /r/b"
        );
    }
}
