//! Answers computed from a scan of a span, kept while the span's days keep
//! their rows (the catalog's fingerprint of the span), so a dashboard
//! reloaded or opened by many people scans once: the breakdowns and
//! references of a span, the cut ends of a custom range or a period not
//! over yet, and a namespace's total over the repositories a token was
//! granted.
//!
//! - A request for an answer being computed waits for that computation
//!   instead of starting its own scan of the same span.
//! - A scan runs in a task of its own: a client that gives up, or a
//!   request past its deadline, does not stop it, and the next request
//!   finds its answer kept (as the API's exports are made).
//! - A failed computation is not kept: the next request tries again.
//! - At most `capacity` answers are kept; the one asked for least recently
//!   goes first.
//! - An answer for a span whose rows changed (late data, today's new
//!   commits once the catalog refreshed) is computed again; compaction
//!   moves rows without changing them, so it keeps what is cached.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;
use tokio::task::JoinError;

/// Whether an answer came from the cache or from its own scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Scan,
}

pub struct SpanCache<V> {
    capacity: usize,
    slots: Mutex<Slots<V>>,
}

struct Slots<V> {
    map: HashMap<String, Slot<V>>,
    /// Counts lookups: a slot's `used` is the count at its last one.
    clock: u64,
}

struct Slot<V> {
    fingerprint: Vec<u64>,
    answer: Arc<OnceCell<Arc<V>>>,
    used: u64,
}

impl<V: Send + Sync + 'static> SpanCache<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            slots: Mutex::new(Slots {
                map: HashMap::new(),
                clock: 0,
            }),
        }
    }

    /// The answer kept under `key` at `fingerprint`, else the one `compute`
    /// makes (kept for the next request while the fingerprint holds).
    /// `fingerprint` must be read before the data `compute` reads, so an
    /// answer is never kept under a fingerprint newer than its data.
    pub async fn get_or_compute<E, F, Fut>(
        &self,
        key: String,
        fingerprint: Vec<u64>,
        compute: F,
    ) -> Result<(Arc<V>, Source), E>
    where
        E: From<JoinError> + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let answer = self.slot(key, fingerprint);
        if let Some(value) = answer.get() {
            return Ok((value.clone(), Source::Cache));
        }
        let task = tokio::spawn(async move {
            let mut source = Source::Cache;
            let value = answer
                .get_or_try_init(|| {
                    source = Source::Scan;
                    let scan = compute();
                    async move { scan.await.map(Arc::new) }
                })
                .await?;
            Ok((value.clone(), source))
        });
        task.await?
    }

    fn slot(&self, key: String, fingerprint: Vec<u64>) -> Arc<OnceCell<Arc<V>>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.clock += 1;
        let now = slots.clock;
        if let Some(slot) = slots.map.get_mut(&key) {
            if slot.fingerprint == fingerprint {
                slot.used = now;
                return slot.answer.clone();
            }
        } else if slots.map.len() >= self.capacity {
            let oldest = slots
                .map
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                slots.map.remove(&k);
            }
        }
        let answer = Arc::new(OnceCell::new());
        slots.map.insert(
            key,
            Slot {
                fingerprint,
                answer: answer.clone(),
                used: now,
            },
        );
        answer
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().map(|s| s.map.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[derive(Debug, PartialEq)]
    enum Failed {
        Scan(&'static str),
        Task,
    }

    impl From<JoinError> for Failed {
        fn from(_: JoinError) -> Self {
            Failed::Task
        }
    }

    async fn get(
        cache: &SpanCache<String>,
        key: &str,
        fingerprint: &[u64],
        scans: &Arc<AtomicUsize>,
        answer: &str,
    ) -> (String, Source) {
        let (scans, answer) = (scans.clone(), answer.to_owned());
        let (v, source) = cache
            .get_or_compute(key.to_owned(), fingerprint.to_vec(), || async move {
                scans.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, Failed>(answer)
            })
            .await
            .expect("computed");
        (v.as_ref().clone(), source)
    }

    #[tokio::test]
    async fn an_answer_is_kept_while_its_fingerprint_holds() {
        let cache = SpanCache::new(8);
        let scans = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            get(&cache, "a", &[1, 2], &scans, "first").await,
            ("first".into(), Source::Scan)
        );
        assert_eq!(
            get(&cache, "a", &[1, 2], &scans, "second").await,
            ("first".into(), Source::Cache)
        );
        // The span's rows changed: scanned again, and that answer is kept.
        assert_eq!(
            get(&cache, "a", &[1, 3], &scans, "third").await,
            ("third".into(), Source::Scan)
        );
        assert_eq!(
            get(&cache, "a", &[1, 3], &scans, "fourth").await,
            ("third".into(), Source::Cache)
        );
        assert_eq!(
            get(&cache, "b", &[1, 3], &scans, "other").await,
            ("other".into(), Source::Scan)
        );
        assert_eq!(scans.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn requests_for_an_answer_being_computed_wait_for_that_scan() {
        let cache = SpanCache::new(8);
        let scans = Arc::new(AtomicUsize::new(0));
        let answers = futures::future::join_all(
            (0..10).map(|i| get(&cache, "a", &[5], &scans, if i == 0 { "x" } else { "y" })),
        )
        .await;
        assert_eq!(scans.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|(v, _)| v == "x"), "{answers:?}");
        assert_eq!(
            answers.iter().filter(|(_, s)| *s == Source::Scan).count(),
            1
        );
    }

    #[tokio::test]
    async fn a_failed_scan_is_not_kept() {
        let cache: SpanCache<String> = SpanCache::new(8);
        let failed = cache
            .get_or_compute("a".into(), vec![1], || async {
                Err::<String, _>(Failed::Scan("broken"))
            })
            .await;
        assert_eq!(failed.err(), Some(Failed::Scan("broken")));
        let failed = cache
            .get_or_compute("b".into(), vec![1], || async { panic!("a scan panicked") })
            .await;
        assert_eq!(failed.err(), Some(Failed::Task));
        let scans = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            get(&cache, "a", &[1], &scans, "ok").await,
            ("ok".into(), Source::Scan)
        );
    }

    #[tokio::test]
    async fn a_scan_whose_request_gave_up_is_finished_and_kept() {
        let cache = SpanCache::new(8);
        let scans = Arc::new(AtomicUsize::new(0));
        let gave_up = tokio::time::timeout(
            Duration::from_millis(5),
            get(&cache, "a", &[1], &scans, "slow"),
        )
        .await;
        assert!(gave_up.is_err(), "the scan takes 20 ms");
        // Asked again: the first scan's answer, whether it has finished by
        // now or is waited for.
        assert_eq!(
            get(&cache, "a", &[1], &scans, "again").await,
            ("slow".into(), Source::Cache)
        );
        assert_eq!(scans.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_answer_asked_for_least_recently_goes_first() {
        let cache = SpanCache::new(2);
        let scans = Arc::new(AtomicUsize::new(0));
        get(&cache, "a", &[1], &scans, "a").await;
        get(&cache, "b", &[1], &scans, "b").await;
        // `a` is asked for again, so `b` is the least recent when `c` comes.
        assert_eq!(get(&cache, "a", &[1], &scans, "a").await.1, Source::Cache);
        get(&cache, "c", &[1], &scans, "c").await;
        assert_eq!(cache.len(), 2);
        assert_eq!(get(&cache, "a", &[1], &scans, "a").await.1, Source::Cache);
        assert_eq!(get(&cache, "b", &[1], &scans, "b").await.1, Source::Scan);
        assert_eq!(scans.load(Ordering::SeqCst), 4);
    }
}
