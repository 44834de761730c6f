//! What the API reads: the pulls table's days (which namespaces and
//! repositories have data, all-time pulls for badges) and the
//! pre-aggregated complete weeks and months behind the series endpoints.
//!
//! Both are kept in memory and follow the table: every refresh reads the
//! Delta log (cheap when nothing was committed), and a day or a period is
//! (re)computed only when the rows of one of its days changed — a commit
//! that adds late actions to a closed week changes that week's row counts
//! and so its fingerprint; compaction, which moves rows without changing
//! them, does not. A period's aggregates are exact: counts and
//! `exact_distinct_count(ip_hash)` per namespace and per repository, from
//! one scan of the period with grouping sets, so a namespace's unique IPs
//! are those of the union of its repositories, never a sum.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::{Arc, RwLock};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use chrono::{Datelike, NaiveDate};
use deltalake::DeltaTable;
use futures::TryStreamExt;

use crate::query::export::{day_rows, Granularity, Span};
use crate::query::{self, QueryError};
use crate::table::{self, Location, TableKind};

/// The counts of one period and group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pull_by_tag: u64,
    pub pull_by_digest: u64,
    pub version_check: u64,
    pub unique_ips: u64,
}

impl Counts {
    pub fn pulls(&self) -> u64 {
        self.pull_by_tag + self.pull_by_digest
    }

    /// The four columns of [`COUNTS_SQL`], from column `first` of row `i`.
    pub fn from_row(b: &RecordBatch, first: usize, i: usize) -> Result<Self, DataError> {
        let n = |c: usize| -> Result<u64, DataError> {
            Ok(u64::try_from(ints(b, first + c)?.value(i)).unwrap_or(0))
        };
        Ok(Self {
            pull_by_tag: n(0)?,
            pull_by_digest: n(1)?,
            version_check: n(2)?,
            unique_ips: n(3)?,
        })
    }
}

/// The select list of [`Counts`] (read back by [`Counts::from_row`]):
/// pulls by tag, by digest, version checks, exact unique IPs.
pub const COUNTS_SQL: &str = "\
    CAST(count(*) FILTER (WHERE action = 'pull_by_tag') AS BIGINT) AS pull_by_tag, \
    CAST(count(*) FILTER (WHERE action = 'pull_by_digest') AS BIGINT) AS pull_by_digest, \
    CAST(count(*) FILTER (WHERE action = 'version_check') AS BIGINT) AS version_check, \
    CAST(exact_distinct_count(ip_hash) AS BIGINT) AS unique_ip_count";

/// One namespace in one period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespacePeriod {
    pub total: Counts,
    pub repos: BTreeMap<String, Counts>,
}

/// One complete week or month.
#[derive(Debug, Default)]
pub struct PeriodData {
    /// Rows of each of its days when computed.
    fingerprint: Vec<u64>,
    pub namespaces: BTreeMap<String, NamespacePeriod>,
}

/// A week (from its Monday) or a calendar month (from its 1st).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    pub granularity: Granularity,
    pub span: Span,
}

impl Period {
    /// A whole week (Monday to Sunday) or calendar month, not a part of one
    /// cut by a custom range.
    pub fn is_complete(&self) -> bool {
        // A month is at most 31 days: the first period of 32 days from
        // `from` is the whole week or month that starts there.
        let whole = Span {
            from: self.span.from,
            to: self.span.from + chrono::Days::new(32),
        };
        let starts = match self.granularity {
            Granularity::Week => self.span.from.weekday() == chrono::Weekday::Mon,
            Granularity::Month => self.span.from.day() == 1,
        };
        starts && whole.periods(self.granularity).first() == Some(&self.span)
    }
}

type PartialKey = (Period, String, Vec<String>);

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
        span.from
            .iter_days()
            .take_while(|d| *d < span.to)
            .map(|d| self.rows.get(&d).copied().unwrap_or(0))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Query(Box<QueryError>),
    #[error("unexpected result shape: {0}")]
    Shape(String),
}

impl From<QueryError> for DataError {
    fn from(e: QueryError) -> Self {
        Self::Query(Box::new(e))
    }
}

impl From<datafusion::error::DataFusionError> for DataError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        QueryError::Sql(e).into()
    }
}

impl From<table::TableError> for DataError {
    fn from(e: table::TableError) -> Self {
        QueryError::Table(e).into()
    }
}

/// The table as the API sees it.
pub struct Catalog {
    path: Location,
    /// The table as last refreshed (computations run over this snapshot).
    table: tokio::sync::Mutex<Option<DeltaTable>>,
    days: RwLock<Arc<Days>>,
    periods: RwLock<HashMap<Period, Arc<PeriodData>>>,
    /// Namespace totals over some of its repositories (tokens granted
    /// single repositories), with the fingerprint they were computed at.
    partials: RwLock<HashMap<PartialKey, (Vec<u64>, Counts)>>,
    /// One period computation at a time (a burst of requests for a period
    /// not yet computed runs one scan, not one each).
    computing: tokio::sync::Mutex<()>,
}

impl Catalog {
    pub fn new(path: &Location) -> Self {
        Self {
            path: path.clone(),
            table: tokio::sync::Mutex::new(None),
            days: RwLock::new(Arc::new(Days::default())),
            periods: RwLock::new(HashMap::new()),
            partials: RwLock::new(HashMap::new()),
            computing: tokio::sync::Mutex::new(()),
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
        self.table.lock().await.clone()
    }

    /// Reads the table's newest version and recomputes the days whose rows
    /// changed. Returns whether anything changed.
    pub async fn refresh(&self) -> Result<bool, DataError> {
        let mut guard = self.table.lock().await;
        match guard.as_mut() {
            Some(t) => t
                .update_incremental(None)
                .await
                .map_err(|e| table::TableError::Delta {
                    path: self.path.clone(),
                    source: e,
                })?,
            None => {
                if !table::exists(&self.path).await? {
                    return Ok(false);
                }
                *guard = Some(table::open(&self.path, TableKind::Pulls).await?);
            }
        }
        let Some(t) = guard.clone() else {
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
        let ctx = query::session_over(&self.path, t.clone(), false).await?;
        let stream = query::execute(&ctx, sql).await?;
        Ok(stream.try_collect().await?)
    }

    /// The aggregates of a period, computed when missing or stale. Only
    /// complete periods are kept (a custom range's partial ends are computed
    /// at each request, so what is kept is bounded by the table's history).
    pub async fn period(&self, period: Period) -> Result<Arc<PeriodData>, DataError> {
        if !period.is_complete() {
            let Some(t) = self.table().await else {
                return Ok(Arc::default());
            };
            return Ok(Arc::new(PeriodData {
                fingerprint: Vec::new(),
                namespaces: self.aggregate(&t, &period.span, None).await?,
            }));
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
        let data = if fingerprint.iter().all(|n| *n == 0) {
            PeriodData {
                fingerprint,
                namespaces: BTreeMap::new(),
            }
        } else {
            let Some(t) = self.table().await else {
                return Err(DataError::Shape("the table is not loaded".into()));
            };
            PeriodData {
                fingerprint,
                namespaces: self.aggregate(&t, &period.span, None).await?,
            }
        };
        let data = Arc::new(data);
        // Stored only if the table did not move on meanwhile.
        if self.days().fingerprint(&period.span) == data.fingerprint {
            if let Ok(mut p) = self.periods.write() {
                p.insert(period, data.clone());
            }
        }
        Ok(data)
    }

    /// The total of `namespace` over `repos` only in a complete period:
    /// exact unique IPs of their union need a scan of the period, done once
    /// per period and set of repositories while its days do not change.
    pub async fn partial_total(
        &self,
        period: Period,
        namespace: &str,
        repos: &[String],
    ) -> Result<Counts, DataError> {
        let key = (period, namespace.to_owned(), repos.to_vec());
        let fingerprint = self.days().fingerprint(&period.span);
        let cached = self.partials.read().ok().and_then(|p| p.get(&key).cloned());
        if let Some((f, counts)) = cached {
            if f == fingerprint {
                return Ok(counts);
            }
        }
        let Some(t) = self.table().await else {
            return Ok(Counts::default());
        };
        let counts = self
            .aggregate(&t, &period.span, Some((namespace, repos)))
            .await?
            .remove(namespace)
            .map(|n| n.total)
            .unwrap_or_default();
        if period.is_complete() {
            if let Ok(mut p) = self.partials.write() {
                p.insert(key, (fingerprint, counts));
            }
        }
        Ok(counts)
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
        let sql = format!(
            "SELECT namespace, repository, CAST(grouping(repository) AS BIGINT) AS whole, \
               {COUNTS_SQL} FROM pulls WHERE {}{filter} \
             GROUP BY GROUPING SETS ((namespace), (namespace, repository))",
            span.predicate()
        );
        let mut out: BTreeMap<String, NamespacePeriod> = BTreeMap::new();
        for b in self.run(t, &sql).await? {
            let ns = strings(&b, 0)?;
            let repo = strings(&b, 1)?;
            let whole = ints(&b, 2)?;
            for i in 0..b.num_rows() {
                let counts = Counts::from_row(&b, 3, i)?;
                let entry = out.entry(ns.value(i).to_owned()).or_default();
                if whole.value(i) == 1 {
                    entry.total = counts;
                } else if !repo.is_null(i) {
                    entry.repos.insert(repo.value(i).to_owned(), counts);
                }
            }
        }
        Ok(out)
    }

    /// Computes the complete periods of the last 12 months (weeks and
    /// months) that are not cached, newest first, so the first requests
    /// after a start or a late commit find them ready.
    pub async fn warm(&self, today: NaiveDate) -> Result<usize, DataError> {
        let mut computed = 0;
        for granularity in [Granularity::Week, Granularity::Month] {
            let mut spans = Span::trailing(granularity, 12, today).periods(granularity);
            spans.reverse();
            for span in spans {
                let period = Period { granularity, span };
                if self.cached(&period).is_none() {
                    self.period(period).await?;
                    computed += 1;
                }
            }
        }
        Ok(computed)
    }
}

/// A text column as plain UTF-8 (partition columns come dictionary-encoded).
pub(super) fn strings(b: &RecordBatch, i: usize) -> Result<arrow::array::StringArray, DataError> {
    let column = arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
        .map_err(|e| DataError::Shape(format!("column {i} is not text: {e}")))?;
    Ok(column.as_string::<i32>().clone())
}

pub(super) fn ints(b: &RecordBatch, i: usize) -> Result<&arrow::array::Int64Array, DataError> {
    b.column(i)
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| DataError::Shape(format!("column {i} is not BIGINT")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(granularity: Granularity, from: &str, to: &str) -> Period {
        Period {
            granularity,
            span: Span::days(from, to).expect("span"),
        }
    }

    #[test]
    fn only_whole_weeks_and_months_are_complete() {
        use Granularity::{Month, Week};
        assert!(period(Week, "2026-11-30", "2026-12-07").is_complete());
        assert!(period(Month, "2026-02-01", "2026-03-01").is_complete());
        assert!(period(Month, "2026-12-01", "2027-01-01").is_complete());
        // A custom range's cut ends.
        assert!(!period(Week, "2026-12-01", "2026-12-07").is_complete());
        assert!(!period(Week, "2026-11-30", "2026-12-03").is_complete());
        assert!(!period(Month, "2026-11-15", "2026-12-01").is_complete());
        assert!(!period(Month, "2026-11-01", "2026-11-20").is_complete());
    }
}
