//! The periods table (`<table>.periods`): every complete ISO week and
//! calendar month pre-aggregated at the summary exports' three levels
//! (namespace, repository, reference), so that a series over months reads a
//! few rows per period instead of scanning each period again, and other
//! readers (Spark, DuckDB, …) can use the same numbers.
//!
//! A period is computed from one scan with grouping sets (counts and
//! `exact_distinct_count(ip_hash)` per level) and one of the distinct
//! (namespace, repository, ip_hash) triples, kept on the repository rows as
//! sorted sets: the unique IPs of any set of repositories (a token granted
//! single repositories of a namespace) is the size of the union of theirs,
//! exact, with no scan of the pulls table.
//!
//! Rows stay current while the pulls table's rows of each day of their
//! period (the `fingerprint`, read from the Delta log's file statistics, no
//! scan) are as recorded: late data changes them, and the period is
//! computed again; compaction, which moves rows without changing them, does
//! not. Periods are stored by first day (`action_day`, the partition), and
//! computing a day's periods replaces its whole partition in one commit
//! with an application transaction named for that day: two writers
//! computing the same periods at once conflict instead of both adding rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, Int64Array, Int64Builder, ListArray, ListBuilder,
    RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::Int64Type;
use chrono::{Datelike, NaiveDate};
use datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
use deltalake::DeltaTable;
use futures::TryStreamExt;

use super::export::{rows_per_day, Granularity, Span};
use super::{QueryError, TableKind};
use crate::schema::{ip_hashes_item, periods_schema};
use crate::table::{self, maintenance, Location, TableError, TableWriter};

/// What computing, storing or reading periods can run into.
#[derive(Debug, thiserror::Error)]
pub enum PeriodsError {
    #[error(transparent)]
    Query(Box<QueryError>),
    #[error("unexpected result shape: {0}")]
    Shape(String),
    /// The task of a scan failed (it panicked, or the runtime is stopping).
    #[error("the scan's task failed: {0}")]
    Task(String),
}

impl From<tokio::task::JoinError> for PeriodsError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Task(e.to_string())
    }
}

impl From<QueryError> for PeriodsError {
    fn from(e: QueryError) -> Self {
        Self::Query(Box::new(e))
    }
}

impl From<PeriodsError> for QueryError {
    fn from(e: PeriodsError) -> Self {
        match e {
            PeriodsError::Query(e) => *e,
            PeriodsError::Shape(s) => QueryError::Output(format!("the periods table: {s}")),
            PeriodsError::Task(s) => QueryError::Output(format!("the periods: {s}")),
        }
    }
}

impl From<datafusion::error::DataFusionError> for PeriodsError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        QueryError::Sql(e).into()
    }
}

impl From<TableError> for PeriodsError {
    fn from(e: TableError) -> Self {
        QueryError::Table(e).into()
    }
}

/// Attempts at replacing a partition that other writers keep changing.
const MAX_ATTEMPTS: u32 = 3;

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
    pub fn from_row(b: &RecordBatch, first: usize, i: usize) -> Result<Self, PeriodsError> {
        let n = |c: usize| -> Result<u64, PeriodsError> {
            Ok(u64::try_from(ints(b, first + c)?.value(i)).unwrap_or(0))
        };
        Ok(Self {
            pull_by_tag: n(0)?,
            pull_by_digest: n(1)?,
            version_check: n(2)?,
            unique_ips: n(3)?,
        })
    }

    fn add(&mut self, other: &Counts) {
        self.pull_by_tag += other.pull_by_tag;
        self.pull_by_digest += other.pull_by_digest;
        self.version_check += other.version_check;
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
        Self::whole(self.granularity, self.span.from) == Some(*self)
    }

    /// The whole week or month of `granularity` that starts on `day`, if
    /// one does.
    pub fn whole(granularity: Granularity, day: NaiveDate) -> Option<Period> {
        let starts = match granularity {
            Granularity::Week => day.weekday() == chrono::Weekday::Mon,
            Granularity::Month => day.day() == 1,
        };
        // A month is at most 31 days: the first period of 32 days from
        // `day` is the whole week or month that starts there.
        let ahead = Span {
            from: day,
            to: day.checked_add_days(chrono::Days::new(32))?,
        };
        let span = *ahead.periods(granularity).first()?;
        starts.then_some(Period { granularity, span })
    }

    /// The whole periods that start on `day`: its week if it is a Monday,
    /// its month if it is the 1st (one partition of the periods table).
    pub fn starting(day: NaiveDate) -> Vec<Period> {
        [Granularity::Week, Granularity::Month]
            .into_iter()
            .filter_map(|g| Self::whole(g, day))
            .collect()
    }

    /// The complete period `span` is, if it is one (a whole week or month).
    pub fn of_span(span: &Span) -> Option<Period> {
        [Granularity::Week, Granularity::Month]
            .into_iter()
            .filter_map(|g| Self::whole(g, span.from))
            .find(|p| p.span == *span)
    }

    /// The SQL predicate selecting this period's rows of the periods table.
    pub fn predicate(&self) -> String {
        format!(
            "action_day = '{}' AND granularity = '{}'",
            self.span.from.format("%Y-%m-%d"),
            self.granularity_name()
        )
    }

    fn granularity_name(&self) -> &'static str {
        match self.granularity {
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }

    fn last_day(&self) -> NaiveDate {
        self.span.to.pred_opt().unwrap_or(self.span.to)
    }
}

/// The rows of each day of `span` in `rows` (rows per day of the pulls
/// table): what a period's aggregates were computed from.
pub fn fingerprint(rows: &BTreeMap<NaiveDate, u64>, span: &Span) -> Vec<u64> {
    span.from
        .iter_days()
        .take_while(|d| *d < span.to)
        .map(|d| rows.get(&d).copied().unwrap_or(0))
        .collect()
}

fn fingerprint_text(f: &[u64]) -> String {
    f.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// The namespace and repository levels of one complete period, and the
/// fingerprint they were computed at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregates {
    pub fingerprint: Vec<u64>,
    pub namespaces: BTreeMap<String, NamespacePeriod>,
}

/// A text column as plain UTF-8 (partition columns come dictionary-encoded).
pub fn strings(b: &RecordBatch, i: usize) -> Result<StringArray, PeriodsError> {
    let column = arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
        .map_err(|e| PeriodsError::Shape(format!("column {i} is not text: {e}")))?;
    Ok(column.as_string::<i32>().clone())
}

/// A BIGINT column.
pub fn ints(b: &RecordBatch, i: usize) -> Result<&Int64Array, PeriodsError> {
    b.column(i)
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| PeriodsError::Shape(format!("column {i} is not BIGINT")))
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, PeriodsError> {
    Ok(super::execute(ctx, sql).await?.try_collect().await?)
}

/// Per namespace and repository over `span`, from one scan of the pulls
/// table registered in `ctx`; `filter` (SQL, starting with ` AND`) narrows
/// the rows. A namespace's unique IPs are those of the union of its
/// repositories, never a sum.
pub async fn aggregate(
    ctx: &SessionContext,
    span: &Span,
    filter: &str,
) -> Result<BTreeMap<String, NamespacePeriod>, PeriodsError> {
    let sql = format!(
        "SELECT namespace, repository, CAST(grouping(repository) AS BIGINT) AS whole, \
           {COUNTS_SQL} FROM pulls WHERE {}{filter} \
         GROUP BY GROUPING SETS ((namespace), (namespace, repository))",
        span.predicate()
    );
    let mut out: BTreeMap<String, NamespacePeriod> = BTreeMap::new();
    for b in collect(ctx, &sql).await? {
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

/// The rows of the periods table for `period`, from scans of the pulls
/// table registered in `ctx`, and its namespace and repository levels.
async fn compute(
    ctx: &SessionContext,
    period: &Period,
    fingerprint: Vec<u64>,
) -> Result<(RecordBatch, Aggregates), PeriodsError> {
    let levels = format!(
        "SELECT namespace, repository, reference, \
           CAST(grouping(repository) AS BIGINT) AS no_repository, \
           CAST(grouping(reference) AS BIGINT) AS no_reference, {COUNTS_SQL}, \
           max(owner) AS owner \
         FROM pulls WHERE {} \
         GROUP BY GROUPING SETS ((namespace), (namespace, repository), \
           (namespace, repository, reference)) \
         ORDER BY namespace, repository NULLS FIRST, reference NULLS FIRST",
        period.span.predicate()
    );
    let triples = format!(
        "SELECT namespace, repository, ip_hash FROM pulls WHERE {} \
         GROUP BY namespace, repository, ip_hash",
        period.span.predicate()
    );
    let mut sets: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for b in collect(ctx, &triples).await? {
        let (ns, repo, ip) = (strings(&b, 0)?, strings(&b, 1)?, ints(&b, 2)?);
        for i in 0..b.num_rows() {
            sets.entry((ns.value(i).to_owned(), repo.value(i).to_owned()))
                .or_default()
                .push(ip.value(i));
        }
    }
    let mut rows = RowsBuilder::new(period, &fingerprint);
    let mut aggregates = Aggregates {
        fingerprint,
        namespaces: BTreeMap::new(),
    };
    for b in collect(ctx, &levels).await? {
        let (ns, repo, reference) = (strings(&b, 0)?, strings(&b, 1)?, strings(&b, 2)?);
        let (no_repo, no_ref) = (ints(&b, 3)?, ints(&b, 4)?);
        let owners = strings(&b, 9)?;
        for i in 0..b.num_rows() {
            let counts = Counts::from_row(&b, 5, i)?;
            let owner = (!owners.is_null(i)).then(|| owners.value(i));
            let namespace = ns.value(i);
            let entry = aggregates
                .namespaces
                .entry(namespace.to_owned())
                .or_default();
            if no_repo.value(i) == 1 {
                entry.total = counts;
                rows.push("namespace", namespace, None, None, owner, &counts, None);
            } else if no_ref.value(i) == 1 {
                let r = repo.value(i);
                entry.repos.insert(r.to_owned(), counts);
                let mut set = sets
                    .remove(&(namespace.to_owned(), r.to_owned()))
                    .unwrap_or_default();
                set.sort_unstable();
                rows.push(
                    "repository",
                    namespace,
                    Some(r),
                    None,
                    owner,
                    &counts,
                    Some(&set),
                );
            } else {
                let (r, t) = (repo.value(i), reference.value(i));
                rows.push(
                    "reference",
                    namespace,
                    Some(r),
                    Some(t),
                    owner,
                    &counts,
                    None,
                );
            }
        }
    }
    Ok((rows.finish()?, aggregates))
}

/// Rows of the periods table, column by column.
struct RowsBuilder {
    day: String,
    granularity: &'static str,
    last_day: String,
    fingerprint: String,
    level: StringBuilder,
    namespace: StringBuilder,
    repository: StringBuilder,
    reference: StringBuilder,
    counts: [Int64Builder; 4],
    owner: StringBuilder,
    ip_hashes: ListBuilder<Int64Builder>,
}

impl RowsBuilder {
    fn new(period: &Period, fingerprint: &[u64]) -> Self {
        Self {
            day: period.span.from.format("%Y-%m-%d").to_string(),
            granularity: period.granularity_name(),
            last_day: period.last_day().format("%Y-%m-%d").to_string(),
            fingerprint: fingerprint_text(fingerprint),
            level: StringBuilder::new(),
            namespace: StringBuilder::new(),
            repository: StringBuilder::new(),
            reference: StringBuilder::new(),
            counts: Default::default(),
            owner: StringBuilder::new(),
            ip_hashes: ListBuilder::new(Int64Builder::new()).with_field(ip_hashes_item()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        level: &str,
        namespace: &str,
        repository: Option<&str>,
        reference: Option<&str>,
        owner: Option<&str>,
        c: &Counts,
        ip_hashes: Option<&[i64]>,
    ) {
        self.level.append_value(level);
        self.namespace.append_value(namespace);
        self.repository.append_option(repository);
        self.reference.append_option(reference);
        self.owner.append_option(owner);
        let values = [
            c.pull_by_tag,
            c.pull_by_digest,
            c.version_check,
            c.unique_ips,
        ];
        for (builder, v) in self.counts.iter_mut().zip(values) {
            builder.append_value(i64::try_from(v).unwrap_or(i64::MAX));
        }
        match ip_hashes {
            Some(set) => {
                self.ip_hashes.values().append_slice(set);
                self.ip_hashes.append(true);
            }
            None => self.ip_hashes.append(false),
        }
    }

    fn finish(mut self) -> Result<RecordBatch, PeriodsError> {
        let n = self.level.len();
        let same = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
        let mut columns: Vec<ArrayRef> = vec![
            same(&self.day),
            same(self.granularity),
            same(&self.last_day),
            same(&self.fingerprint),
            Arc::new(self.level.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.repository.finish()),
            Arc::new(self.reference.finish()),
        ];
        for c in &mut self.counts {
            columns.push(Arc::new(c.finish()));
        }
        columns.push(Arc::new(self.owner.finish()));
        columns.push(Arc::new(self.ip_hashes.finish()));
        RecordBatch::try_new(periods_schema(), columns)
            .map_err(|e| PeriodsError::Shape(format!("periods rows: {e}")))
    }
}

/// Computes the whole periods that start on `day` and have ended by
/// `today` from `pulls` (the pulls table at `path`, as of the snapshot whose
/// per-day `rows` are given) and replaces the periods table's partition of
/// `day` with them. Periods with no rows are not stored. Returns what was
/// computed; when storing fails (a read-only store, a writer that keeps
/// winning) the error is logged and the aggregates are returned all the
/// same, since they are right.
pub async fn compute_day(
    path: &Location,
    pulls: &DeltaTable,
    rows: &BTreeMap<NaiveDate, u64>,
    day: NaiveDate,
    today: NaiveDate,
) -> Result<Vec<(Period, Aggregates)>, PeriodsError> {
    let ctx = super::session_over(path, pulls.clone().into(), false).await?;
    let mut batches = Vec::new();
    let mut out = Vec::new();
    let ended = Period::starting(day)
        .into_iter()
        .filter(|p| p.span.to <= today);
    for period in ended {
        let f = fingerprint(rows, &period.span);
        if f.iter().all(|n| *n == 0) {
            out.push((
                period,
                Aggregates {
                    fingerprint: f,
                    namespaces: BTreeMap::new(),
                },
            ));
            continue;
        }
        let (batch, aggregates) = compute(&ctx, &period, f).await?;
        batches.push(batch);
        out.push((period, aggregates));
    }
    let version = pulls
        .version()
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(0);
    if let Err(e) = store(path, day, &batches, version).await {
        tracing::warn!("the periods starting {day} were computed but not stored: {e}");
    }
    Ok(out)
}

/// Replaces the partition `day` of the periods table beside `path` with
/// `batches`, recording `version` (of the pulls table) under the day's
/// application id.
async fn store(
    path: &Location,
    day: NaiveDate,
    batches: &[RecordBatch],
    version: i64,
) -> Result<(), TableError> {
    let at = table::periods_path(path);
    let day_text = day.format("%Y-%m-%d").to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let periods = table::open_or_create(&at, TableKind::Periods).await?;
        let removed: Vec<_> = maintenance::data_files(&at, &periods)?
            .iter()
            .filter(|f| f.day == day_text)
            .map(|f| f.deletion())
            .collect();
        if batches.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let mut writer = TableWriter::new(&at, periods)?;
        for b in batches {
            writer.write(b.clone()).await?;
        }
        let txn = Transaction::new(format!("pullstats/periods/{day_text}"), version);
        let predicate = format!("action_day = '{day_text}'");
        match writer.commit_replace(removed, predicate, vec![txn]).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() && attempt < MAX_ATTEMPTS => {
                tracing::debug!("periods of {day_text}: {e}; again");
            }
            Err(e) => return Err(e),
        }
    }
}

/// A session with the periods table beside the pulls table at `path`
/// registered as `periods`; `None` while there is none.
async fn stored_session(path: &Location) -> Result<Option<SessionContext>, PeriodsError> {
    let ctx = SessionContext::new();
    let at = table::periods_path(path);
    Ok(super::register_if_present(&ctx, &at, TableKind::Periods)
        .await?
        .then_some(ctx))
}

/// The namespace and repository levels of the stored periods (all of them,
/// or those of `only`), each with the fingerprint it was computed at.
/// Empty when there is no periods table yet.
pub async fn load(
    path: &Location,
    only: Option<&Period>,
) -> Result<HashMap<Period, Aggregates>, PeriodsError> {
    let Some(ctx) = stored_session(path).await? else {
        return Ok(HashMap::new());
    };
    let filter = only.map_or(String::new(), |p| format!(" AND {}", p.predicate()));
    let sql = format!(
        "SELECT action_day, granularity, fingerprint, level, namespace, repository, \
           pull_by_tag, pull_by_digest, version_check, unique_ip_count \
         FROM periods WHERE level <> 'reference'{filter}"
    );
    let mut out: HashMap<Period, Aggregates> = HashMap::new();
    for b in collect(&ctx, &sql).await? {
        let (day, granularity, f) = (strings(&b, 0)?, strings(&b, 1)?, strings(&b, 2)?);
        let (level, ns, repo) = (strings(&b, 3)?, strings(&b, 4)?, strings(&b, 5)?);
        for i in 0..b.num_rows() {
            let Some(period) = parse_period(day.value(i), granularity.value(i)) else {
                continue;
            };
            let counts = Counts::from_row(&b, 6, i)?;
            let entry = out.entry(period).or_default();
            entry.fingerprint = parse_fingerprint(f.value(i));
            let n = entry.namespaces.entry(ns.value(i).to_owned()).or_default();
            if level.value(i) == "namespace" {
                n.total = counts;
            } else if !repo.is_null(i) {
                n.repos.insert(repo.value(i).to_owned(), counts);
            }
        }
    }
    Ok(out)
}

fn parse_period(day: &str, granularity: &str) -> Option<Period> {
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let g = match granularity {
        "week" => Granularity::Week,
        "month" => Granularity::Month,
        _ => return None,
    };
    Period::whole(g, day)
}

fn parse_fingerprint(text: &str) -> Vec<u64> {
    text.split(',').filter_map(|n| n.parse().ok()).collect()
}

/// The total of `namespace` over `repos` only in the stored `period`, if
/// it is stored at `fingerprint`: counts summed, unique IPs the size of the
/// union of the repositories' sets.
pub async fn union(
    path: &Location,
    period: &Period,
    fingerprint: &[u64],
    namespace: &str,
    repos: &[String],
) -> Result<Option<Counts>, PeriodsError> {
    let Some(ctx) = stored_session(path).await? else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT fingerprint, repository, pull_by_tag, pull_by_digest, version_check, \
           unique_ip_count, ip_hashes FROM periods \
         WHERE {} AND level = 'repository' AND namespace = '{}'",
        period.predicate(),
        namespace.replace('\'', "''")
    );
    let want = fingerprint_text(fingerprint);
    let mut total = Counts::default();
    let mut ips: Vec<i64> = Vec::new();
    let mut stored = false;
    for b in collect(&ctx, &sql).await? {
        let (f, repo) = (strings(&b, 0)?, strings(&b, 1)?);
        let sets: &ListArray = b
            .column(6)
            .as_list_opt()
            .ok_or_else(|| PeriodsError::Shape("ip_hashes is not a list".into()))?;
        for i in 0..b.num_rows() {
            if f.value(i) != want {
                return Ok(None);
            }
            stored = true;
            if !repos.iter().any(|r| r == repo.value(i)) {
                continue;
            }
            total.add(&Counts::from_row(&b, 2, i)?);
            let set = sets.value(i);
            let values = set
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| PeriodsError::Shape("ip_hashes items are not BIGINT".into()))?;
            ips.extend(values.values().iter().copied());
        }
    }
    if !stored {
        return Ok(None);
    }
    ips.sort_unstable();
    ips.dedup();
    total.unique_ips = ips.len() as u64;
    Ok(Some(total))
}

/// Which of `periods` the periods table registered in `ctx` (as
/// `periods`, if it is) holds current: stored at the fingerprint of `rows`,
/// the pulls table's rows per day now. A partition is replaced whole, so
/// one row's fingerprint is every row's of its period.
pub async fn current(
    ctx: &SessionContext,
    periods: &[Period],
    rows: &BTreeMap<NaiveDate, u64>,
) -> Result<BTreeSet<Period>, PeriodsError> {
    if periods.is_empty() || !ctx.table_exist("periods")? {
        return Ok(BTreeSet::new());
    }
    let which: Vec<String> = periods
        .iter()
        .map(|p| format!("({})", p.predicate()))
        .collect();
    let sql = format!(
        "SELECT DISTINCT action_day, granularity, fingerprint FROM periods WHERE {}",
        which.join(" OR ")
    );
    let mut out = BTreeSet::new();
    for b in collect(ctx, &sql).await? {
        let (day, granularity, f) = (strings(&b, 0)?, strings(&b, 1)?, strings(&b, 2)?);
        for i in 0..b.num_rows() {
            let Some(period) = parse_period(day.value(i), granularity.value(i)) else {
                continue;
            };
            if f.value(i) == fingerprint_text(&fingerprint(rows, &period.span)) {
                out.insert(period);
            }
        }
    }
    Ok(out)
}

/// What [`update`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateReport {
    /// Complete periods with data in the pulls table.
    pub periods: usize,
    /// Partitions (first days) computed again because they were missing or
    /// stale.
    pub computed_days: Vec<NaiveDate>,
}

/// Brings the periods table beside the pulls table at `path` up to date:
/// every whole week and month before `today` with rows in the pulls table
/// whose stored rows are missing or stale is computed again; `progress`
/// sees each first day as it is done. With `quiet_since_ms`, a period a
/// commit wrote to after then (ms since the epoch) is left for later: a
/// daemon catching up on old data would otherwise recompute the periods it
/// is still filling at every pass.
pub async fn update(
    path: &Location,
    today: NaiveDate,
    quiet_since_ms: Option<i64>,
    progress: &mut (dyn FnMut(NaiveDate) + Send),
) -> Result<UpdateReport, PeriodsError> {
    let pulls = table::open(path, TableKind::Pulls).await?;
    let files = maintenance::data_files(path, &pulls)?;
    let rows = rows_per_day(&files);
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
    for f in &files {
        let n = newest.entry(&f.day).or_insert(f.modified_ms);
        *n = (*n).max(f.modified_ms);
    }
    let busy = |span: &Span| {
        quiet_since_ms.is_some_and(|since| {
            span.from.iter_days().take_while(|d| *d < span.to).any(|d| {
                newest
                    .get(d.format("%Y-%m-%d").to_string().as_str())
                    .is_some_and(|m| *m > since)
            })
        })
    };
    let stored = load(path, None).await?;
    let mut report = UpdateReport::default();
    let (Some(first), Some(last)) = (rows.keys().next(), rows.keys().next_back()) else {
        return Ok(report);
    };
    // The first periods with rows start on or before the first day: on its
    // week's Monday or its month's 1st, whichever is earlier.
    let monday = *first - chrono::Days::new(u64::from(first.weekday().num_days_from_monday()));
    let start = monday.min(first.with_day(1).unwrap_or(*first));
    let mut stale: Vec<NaiveDate> = Vec::new();
    for day in start.iter_days().take_while(|d| d <= last) {
        for period in Period::starting(day) {
            let f = fingerprint(&rows, &period.span);
            if period.span.to > today || f.iter().all(|n| *n == 0) {
                continue;
            }
            report.periods += 1;
            let current = stored.get(&period).map(|a| &a.fingerprint) == Some(&f);
            if !current && !busy(&period.span) && stale.last() != Some(&day) {
                stale.push(day);
            }
        }
    }
    for day in stale {
        compute_day(path, &pulls, &rows, day, today).await?;
        progress(day);
        report.computed_days.push(day);
    }
    if !report.computed_days.is_empty() {
        maintenance::checkpoint(&table::periods_path(path), TableKind::Periods).await?;
    }
    Ok(report)
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
        // Near the end of the calendar: no panic, nothing complete.
        assert!(Period::whole(Month, NaiveDate::MAX).is_none());
    }

    #[test]
    fn a_day_starts_its_week_its_month_both_or_neither() {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day");
        let g = |s: &str| -> Vec<Granularity> {
            Period::starting(day(s))
                .iter()
                .map(|p| p.granularity)
                .collect()
        };
        // 2026-06-01 is a Monday and a 1st.
        assert_eq!(g("2026-06-01"), vec![Granularity::Week, Granularity::Month]);
        assert_eq!(g("2026-06-08"), vec![Granularity::Week]);
        assert_eq!(g("2026-07-01"), vec![Granularity::Month]);
        assert!(g("2026-07-02").is_empty());
    }

    #[test]
    fn fingerprints_round_trip_and_count_missing_days_as_zero() {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day");
        let rows = BTreeMap::from([(day("2026-11-30"), 5), (day("2026-12-02"), 7)]);
        let week = period(Granularity::Week, "2026-11-30", "2026-12-07");
        let f = fingerprint(&rows, &week.span);
        assert_eq!(f, vec![5, 0, 7, 0, 0, 0, 0]);
        assert_eq!(parse_fingerprint(&fingerprint_text(&f)), f);
    }
}
