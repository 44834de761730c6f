//! What the API reads: the pulls table's days (which namespaces and
//! repositories have data, all-time pulls for badges) and the
//! pre-aggregated complete weeks and months behind the series endpoints.
//!
//! Both are kept in memory and follow the table: every refresh reads the
//! Delta log (cheap when nothing was committed), and a day or a period is
//! (re)computed only when the rows of one of its days changed — a commit
//! that adds late actions to a closed week changes that week's row counts
//! and so its fingerprint; compaction, which moves rows without changing
//! them, does not. Complete periods are also kept in the periods table
//! beside the pulls table (`query::periods`): a start, or another `serve`,
//! reads them from there instead of scanning again. A period's aggregates
//! are exact: counts and `exact_distinct_count(ip_hash)` per namespace and
//! per repository, so a namespace's unique IPs are those of the union of
//! its repositories, never a sum.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use deltalake::DeltaTable;
use futures::TryStreamExt;

use super::cache::{Source, SpanCache};
use crate::query::export::{day_rows, Granularity, Span};
use crate::query::{self, periods};
use crate::serve::ServeMetrics;
use crate::table::{self, Location, TableKind};

pub use crate::query::periods::{
    ints, strings, Aggregates as PeriodData, Counts, NamespacePeriod, Period, COUNTS_SQL,
};

/// The fields of a JSON answer that a scan makes (breakdowns, references).
pub type Answer = serde_json::Map<String, serde_json::Value>;

/// What one refresh saw.
#[derive(Debug, Default)]
pub struct Days {
    /// The table version read; `None` while there is no table.
    pub version: Option<u64>,
    /// Rows per day, from the files' statistics.
    pub rows: BTreeMap<NaiveDate, u64>,
    /// Per day: `(namespace, repository)` → pulls (tag + digest).
    pub repos: BTreeMap<NaiveDate, BTreeMap<(String, String), u64>>,
    /// Namespace → its repositories with data (on any day).
    pub namespaces: BTreeMap<String, BTreeSet<String>>,
}

impl Days {
    fn new(
        version: Option<u64>,
        rows: BTreeMap<NaiveDate, u64>,
        repos: BTreeMap<NaiveDate, BTreeMap<(String, String), u64>>,
    ) -> Self {
        let mut namespaces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for day in repos.values() {
            for (ns, repo) in day.keys() {
                if !namespaces.get(ns).is_some_and(|r| r.contains(repo)) {
                    namespaces
                        .entry(ns.clone())
                        .or_default()
                        .insert(repo.clone());
                }
            }
        }
        Self {
            version,
            rows,
            repos,
            namespaces,
        }
    }

    /// All-time pulls of one repository.
    pub fn pulls(&self, namespace: &str, repository: &str) -> u64 {
        let key = (namespace.to_owned(), repository.to_owned());
        self.repos.values().filter_map(|d| d.get(&key)).sum::<u64>()
    }

    /// The rows of each day of `span`: what a period's aggregates (and an
    /// export's cache key) were computed from.
    pub fn fingerprint(&self, span: &Span) -> Vec<u64> {
        periods::fingerprint(&self.rows, span)
    }
}

/// What reading the table for the API can run into: the periods module's
/// errors (a query, the table, or an unexpected result shape).
pub use crate::query::periods::PeriodsError as DataError;

/// The table as the API sees it.
pub struct Catalog {
    path: Location,
    /// The table as last refreshed (computations run over this snapshot),
    /// and the versions it replayed since it was loaded whole.
    table: tokio::sync::Mutex<Option<(DeltaTable, table::Replayed)>>,
    days: RwLock<Arc<Days>>,
    periods: RwLock<HashMap<Period, Arc<PeriodData>>>,
    /// Namespace totals over some of its repositories (tokens granted
    /// single repositories), per period.
    partials: SpanCache<Counts>,
    /// One period computation at a time (a burst of requests for a period
    /// not yet computed runs one scan, not one each).
    computing: tokio::sync::Mutex<()>,
    /// Spans that are not complete periods (a custom range's cut ends, a
    /// period not over yet), aggregated like the periods.
    open_spans: SpanCache<PeriodData>,
    /// The dashboard's answers from a scan (breakdowns, references).
    answers: SpanCache<Answer>,
    metrics: Arc<ServeMetrics>,
}

/// How many aggregates of open spans are kept: each holds every
/// namespace's and repository's counts over its span (about 100 bytes a
/// repository: 10 MB for 100,000 repositories).
const OPEN_SPANS_KEPT: usize = 16;
/// How many namespace totals over some of its repositories are kept (a
/// few dozen bytes each, and the key).
const PARTIALS_KEPT: usize = 4096;
/// How many breakdown and reference answers are kept (each at most a few
/// tens of KiB: 5 × 100 breakdown rows, or 1,000 references).
const ANSWERS_KEPT: usize = 256;

impl Catalog {
    /// `metrics` counts the answers from a scan and from the cache.
    pub fn new(path: &Location, metrics: Arc<ServeMetrics>) -> Self {
        Self {
            path: path.clone(),
            table: tokio::sync::Mutex::new(None),
            days: RwLock::new(Arc::new(Days::default())),
            periods: RwLock::new(HashMap::new()),
            partials: SpanCache::new(PARTIALS_KEPT),
            computing: tokio::sync::Mutex::new(()),
            open_spans: SpanCache::new(OPEN_SPANS_KEPT),
            answers: SpanCache::new(ANSWERS_KEPT),
            metrics,
        }
    }

    pub fn path(&self) -> &Location {
        &self.path
    }

    pub fn days(&self) -> Arc<Days> {
        self.days.read().map(|d| d.clone()).unwrap_or_default()
    }

    /// A copy of the table as last refreshed (cheap: the snapshot is shared).
    pub async fn table(&self) -> Option<DeltaTable> {
        self.table.lock().await.as_ref().map(|(t, _)| t.clone())
    }

    /// Reads the table's newest version and recomputes the days whose rows
    /// changed. Returns whether anything changed.
    pub async fn refresh(&self) -> Result<bool, DataError> {
        let mut guard = self.table.lock().await;
        match guard.as_mut() {
            Some((t, replayed)) => {
                let from = t.version();
                t.update_incremental(None)
                    .await
                    .map_err(|e| table::TableError::Delta {
                        path: self.path.clone(),
                        source: e,
                    })?;
                replayed.follow(&self.path, t, from, false).await;
            }
            None => {
                if !table::exists(&self.path).await? {
                    return Ok(false);
                }
                let t = table::open(&self.path, TableKind::Pulls).await?;
                *guard = Some((t, table::Replayed::default()));
            }
        }
        let Some(t) = guard.as_ref().map(|(t, _)| t.clone()) else {
            return Ok(false);
        };
        drop(guard);
        let before = self.days();
        let version = t.version();
        if version == before.version {
            return Ok(false);
        }
        let rows = day_rows(&self.path, &t)?;
        let changed: Vec<NaiveDate> = rows
            .iter()
            .filter(|(d, n)| before.rows.get(d) != Some(n))
            .map(|(d, _)| *d)
            .collect();
        let mut repos: BTreeMap<NaiveDate, BTreeMap<(String, String), u64>> = before
            .repos
            .iter()
            .filter(|(d, _)| rows.contains_key(d) && !changed.contains(d))
            .map(|(d, r)| (*d, r.clone()))
            .collect();
        if !changed.is_empty() {
            repos.extend(self.day_repos(&t, &changed).await?);
        }
        let days = Days::new(version, rows, repos);
        tracing::debug!(version = ?days.version, changed_days = changed.len(), "API data refreshed");
        if let Ok(mut d) = self.days.write() {
            *d = Arc::new(days);
        }
        // Periods whose days changed are dropped; the next request (or the
        // warm-up) computes them again.
        let days = self.days();
        if let Ok(mut p) = self.periods.write() {
            p.retain(|period, data| days.fingerprint(&period.span) == data.fingerprint);
        }
        Ok(true)
    }

    async fn day_repos(
        &self,
        t: &DeltaTable,
        days: &[NaiveDate],
    ) -> Result<BTreeMap<NaiveDate, BTreeMap<(String, String), u64>>, DataError> {
        let list: Vec<String> = days
            .iter()
            .map(|d| format!("'{}'", d.format("%Y-%m-%d")))
            .collect();
        let sql = format!(
            "SELECT action_day, namespace, repository, \
               CAST(count(*) FILTER (WHERE action <> 'version_check') AS BIGINT) AS pulls \
             FROM pulls WHERE action_day IN ({}) GROUP BY 1, 2, 3",
            list.join(", ")
        );
        let mut out: BTreeMap<NaiveDate, BTreeMap<(String, String), u64>> = BTreeMap::new();
        for d in days {
            out.insert(*d, BTreeMap::new());
        }
        for b in self.run(t, &sql).await? {
            let day = strings(&b, 0)?;
            let ns = strings(&b, 1)?;
            let repo = strings(&b, 2)?;
            let pulls = ints(&b, 3)?;
            for i in 0..b.num_rows() {
                let Ok(d) = NaiveDate::parse_from_str(day.value(i), "%Y-%m-%d") else {
                    continue;
                };
                out.entry(d).or_default().insert(
                    (ns.value(i).to_owned(), repo.value(i).to_owned()),
                    u64::try_from(pulls.value(i)).unwrap_or(0),
                );
            }
        }
        Ok(out)
    }

    pub(super) async fn run(
        &self,
        t: &DeltaTable,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, DataError> {
        let ctx = query::session_over(&self.path, t.clone().into(), false).await?;
        let stream = query::execute(&ctx, sql).await?;
        Ok(stream.try_collect().await?)
    }

    /// The aggregates of a period. A complete one that has ended comes from
    /// memory, else from the periods table beside the pulls table when
    /// stored at the current fingerprint, else from a scan, which is stored
    /// there for the next reader (see `query::periods`). A custom range's
    /// cut ends, and a period not over yet, are scanned and kept in memory
    /// only, while their days keep their rows ([`OPEN_SPANS_KEPT`] at
    /// most), so what is kept is bounded by the table's history.
    pub async fn period(self: &Arc<Self>, period: Period) -> Result<Arc<PeriodData>, DataError> {
        let today = chrono::Utc::now().date_naive();
        if !period.is_complete() || period.span.to > today {
            let span = period.span;
            let key = format!("{}..{}", span.from, span.to);
            let fingerprint = self.days().fingerprint(&span);
            let catalog = self.clone();
            let (data, source) = self
                .open_spans
                .get_or_compute(key, fingerprint.clone(), move || async move {
                    let namespaces = match catalog.table().await {
                        Some(t) => catalog.aggregate(&t, &span, None).await?,
                        None => BTreeMap::new(),
                    };
                    Ok::<_, DataError>(PeriodData {
                        fingerprint,
                        namespaces,
                    })
                })
                .await?;
            self.metrics.answer("open_span", source == Source::Scan);
            return Ok(data);
        }
        if let Some(p) = self.cached(&period) {
            return Ok(p);
        }
        let _one = self.computing.lock().await;
        if let Some(p) = self.cached(&period) {
            return Ok(p);
        }
        let days = self.days();
        let fingerprint = days.fingerprint(&period.span);
        if fingerprint.iter().all(|n| *n == 0) {
            return Ok(self.keep(
                period,
                PeriodData {
                    fingerprint,
                    namespaces: BTreeMap::new(),
                },
            ));
        }
        let mut stored = periods::load(&self.path, Some(&period)).await?;
        if let Some(data) = stored
            .remove(&period)
            .filter(|d| d.fingerprint == fingerprint)
        {
            return Ok(self.keep(period, data));
        }
        let Some(t) = self.table().await else {
            return Err(DataError::Shape("the table is not loaded".into()));
        };
        let mut wanted = None;
        let start = period.span.from;
        for (p, data) in periods::compute_day(&self.path, &t, &days.rows, start, today).await? {
            let data = self.keep(p, data);
            if p == period {
                wanted = Some(data);
            }
        }
        wanted.ok_or_else(|| DataError::Shape(format!("{period:?} was not computed")))
    }

    /// Keeps `data` of a complete period in memory, unless the table moved
    /// on while it was computed.
    fn keep(&self, period: Period, data: PeriodData) -> Arc<PeriodData> {
        let data = Arc::new(data);
        if self.days().fingerprint(&period.span) == data.fingerprint {
            if let Ok(mut p) = self.periods.write() {
                p.insert(period, data.clone());
            }
        }
        data
    }

    /// The total of `namespace` over `repos` only in a period. For a
    /// complete one, the union of the repositories' IP sets stored in the
    /// periods table; else (or while it is not stored) a scan of the
    /// period. Kept per period and set of repositories while the period's
    /// days do not change.
    pub async fn partial_total(
        self: &Arc<Self>,
        period: Period,
        namespace: &str,
        repos: &[String],
    ) -> Result<Counts, DataError> {
        let fingerprint = self.days().fingerprint(&period.span);
        if fingerprint.iter().all(|n| *n == 0) {
            return Ok(Counts::default());
        }
        let key = format!("{period:?} {namespace:?} {repos:?}");
        let (catalog, namespace, repos) = (self.clone(), namespace.to_owned(), repos.to_vec());
        let (counts, source) = self
            .partials
            .get_or_compute(key, fingerprint.clone(), move || async move {
                let ended = period.span.to <= chrono::Utc::now().date_naive();
                let stored = if period.is_complete() && ended {
                    // Computes and stores the period when it is not yet.
                    catalog.period(period).await?;
                    periods::union(&catalog.path, &period, &fingerprint, &namespace, &repos).await?
                } else {
                    None
                };
                if let Some(counts) = stored {
                    return Ok::<_, DataError>(counts);
                }
                let Some(t) = catalog.table().await else {
                    return Ok(Counts::default());
                };
                Ok(catalog
                    .aggregate(&t, &period.span, Some((&namespace, &repos)))
                    .await?
                    .remove(&namespace)
                    .map(|n| n.total)
                    .unwrap_or_default())
            })
            .await?;
        self.metrics.answer("partial_total", source == Source::Scan);
        Ok(*counts)
    }

    /// The answer `scan` makes from the table over `span`, kept under
    /// `what` and `key` while the span's days keep their rows; `None`
    /// while there is no table.
    pub async fn answer<E, F, Fut>(
        &self,
        what: &'static str,
        key: String,
        span: &Span,
        scan: F,
    ) -> Result<Option<Arc<Answer>>, E>
    where
        E: From<tokio::task::JoinError> + Send + 'static,
        F: FnOnce(DeltaTable) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Answer, E>> + Send + 'static,
    {
        // Read before the table: the table is refreshed before the days,
        // so the answer is never older than the fingerprint it is kept at.
        let fingerprint = self.days().fingerprint(span);
        let Some(t) = self.table().await else {
            return Ok(None);
        };
        let (answer, source) = self
            .answers
            .get_or_compute(format!("{what}\n{key}"), fingerprint, move || scan(t))
            .await?;
        self.metrics.answer(what, source == Source::Scan);
        Ok(Some(answer))
    }

    fn cached(&self, period: &Period) -> Option<Arc<PeriodData>> {
        self.periods.read().ok()?.get(period).cloned()
    }

    /// Per namespace and repository over `span`, from one scan; with
    /// `only`, just those repositories of one namespace (a token granted
    /// single repositories: its namespace total is theirs alone).
    pub async fn aggregate(
        &self,
        t: &DeltaTable,
        span: &Span,
        only: Option<(&str, &[String])>,
    ) -> Result<BTreeMap<String, NamespacePeriod>, DataError> {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let filter = match only {
            None => String::new(),
            Some((ns, repos)) => format!(
                " AND namespace = {} AND repository IN ({})",
                quote(ns),
                repos
                    .iter()
                    .map(|r| quote(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let ctx = query::session_over(&self.path, t.clone().into(), false).await?;
        periods::aggregate(&ctx, span, &filter).await
    }

    /// Computes the complete periods of the last 12 months (weeks and
    /// months) that are not cached, newest first, so the first requests
    /// after a start or a late commit find them ready.
    pub async fn warm(self: &Arc<Self>, today: NaiveDate) -> Result<usize, DataError> {
        let mut missing = Vec::new();
        for granularity in [Granularity::Week, Granularity::Month] {
            let mut spans = Span::trailing(granularity, 12, today).periods(granularity);
            spans.reverse();
            missing.extend(
                spans
                    .into_iter()
                    .map(|span| Period { granularity, span })
                    .filter(|p| self.cached(p).is_none()),
            );
        }
        if missing.len() > 1 {
            // One read of the periods table for all those stored (after a
            // start, or what `compact` or another `serve` stored).
            let days = self.days();
            for (period, data) in periods::load(&self.path, None).await? {
                if data.fingerprint == days.fingerprint(&period.span) {
                    self.keep(period, data);
                }
            }
        }
        for period in &missing {
            self.period(*period).await?;
        }
        Ok(missing.len())
    }
}
