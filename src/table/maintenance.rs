//! Table maintenance: compaction, retention, vacuum, time-travel checks and
//! the facts `pullstats info` prints.
//!
//! Compaction rewrites the *small* files of a day (smaller than half the
//! target size) into files of about the target size, sorted in the raw
//! export's order (time, namespace, repository: each page then spans a short
//! stretch of time, which a raw export's slices of time prune by), in one
//! commit per day whose adds and removes are
//! all `dataChange: false`. Delta then treats it as OPTIMIZE: the daemon's
//! appends never conflict with it, and it conflicts only with another commit
//! that removed the same files (a second compaction, or retention), after
//! which it re-plans the day and tries again. Large files are left alone, so
//! a day is not rewritten again and again.
//!
//! Retention removes whole `action_day` partitions (metadata only, no
//! rewrite); vacuum deletes the files no version within the retention period
//! needs, orphans of killed writers included.

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use chrono::NaiveDate;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{col, ParquetReadOptions, SessionConfig, SessionContext};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Remove};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::DeltaOperation;
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;
use object_store::ObjectStoreExt as _;
use serde::Serialize;
use serde_json::json;
use url::Url;

use super::{delta, table_url};
use super::{Location, TableError, TableKind, TableWriter};
use crate::schema::PARTITION_COLUMN;

pub use super::info::{info, DayInfo, PartitionProgress, TableInfo};

/// Default size of compacted files: large enough for few files per day and
/// good compression, small enough that a day's summary reads in parallel.
pub const DEFAULT_TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;
/// Attempts at one day's compaction or a retention cut when concurrent
/// commits conflict.
const MAX_ATTEMPTS: u32 = 5;
/// Memory DataFusion may use to sort a day before it spills to disk.
const SORT_MEMORY_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("cannot rewrite {day} of {path}: {source}")]
    Rewrite {
        day: String,
        path: Location,
        #[source]
        source: DataFusionError,
    },
    #[error("compacting {day} of {path} would change its row count ({before} rows read, {after} written); nothing was committed")]
    RowCount {
        day: String,
        path: Location,
        before: u64,
        after: u64,
    },
    #[error(
        "{what} of {path} still conflicted with concurrent commits after {MAX_ATTEMPTS} attempts"
    )]
    Contended { what: String, path: Location },
    #[error("{path} has versions 0 to {latest}; there is no version {version}")]
    NoSuchVersion {
        path: Location,
        version: u64,
        latest: u64,
    },
    #[error("version {version} of {path} can no longer be read: {missing} of its {files} data files were removed by `pullstats vacuum` (first: {first}); vacuum keeps only what versions within its retention period need")]
    Vacuumed {
        path: Location,
        version: u64,
        missing: usize,
        files: usize,
        first: String,
    },
    #[error("version {version} of {path} can no longer be read (its log entries were cleaned up after the log retention period): {source}")]
    LogGone {
        path: Location,
        version: u64,
        #[source]
        source: DeltaTableError,
    },
    #[error("vacuum of {path}: {source}")]
    Vacuum {
        path: Location,
        #[source]
        source: DeltaTableError,
    },
}

impl MaintenanceError {
    fn is_conflict(&self) -> bool {
        matches!(self, MaintenanceError::Table(e) if e.is_conflict())
    }
}

/// A data file of the table's current version.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Path relative to the table root.
    pub path: String,
    pub day: String,
    pub bytes: u64,
    /// Rows, from the file's statistics.
    pub rows: Option<u64>,
    /// When it was written (ms since the epoch).
    pub modified_ms: i64,
    remove: Remove,
}

impl DataFile {
    /// The action that deletes this file's rows from the table (a change
    /// of data, unlike compaction's removals).
    pub fn deletion(&self) -> Remove {
        Remove {
            data_change: true,
            deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
            ..self.remove.clone()
        }
    }
}

/// The data files of `table`'s loaded version.
pub fn data_files(path: &Location, table: &DeltaTable) -> Result<Vec<DataFile>, TableError> {
    let snapshot = table.snapshot().map_err(delta(path))?;
    let log = snapshot.log_data();
    Ok(log
        .iter()
        .map(|f| DataFile {
            path: f.path().into_owned(),
            day: f
                .partition_values_map()
                .get(PARTITION_COLUMN)
                .cloned()
                .flatten()
                .unwrap_or_default(),
            bytes: u64::try_from(f.size()).unwrap_or(0),
            rows: f.num_records().map(|n| n as u64),
            modified_ms: f.modification_time(),
            remove: f.remove_action(false),
        })
        .collect())
}

/// Which days compaction considers. Today (UTC) is never closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaySelection {
    /// Every day before today.
    Closed,
    /// This day only (even today, on request).
    Day(NaiveDate),
    /// This day and later ones, before today.
    Since(NaiveDate),
}

#[derive(Debug, Clone)]
pub struct CompactOptions {
    pub days: DaySelection,
    pub target_bytes: u64,
    pub today: NaiveDate,
    /// Skip days that received a file within this long (the daemon's
    /// `--auto-compact` waits for days to go quiet).
    pub quiet_for: Option<Duration>,
    /// The clock for `quiet_for` (ms since the epoch).
    pub now_ms: i64,
    /// Also the days from `today` on, quiet or not (`--auto-compact`): a
    /// day being written gets a file per commit, and each commit costs
    /// more the more files the table has live.
    pub open_days: bool,
}

/// A day is worth compacting once it has this many small files; a lone
/// small file is as compact as its day gets.
pub const MIN_SMALL_FILES: usize = 2;

/// A file is small, and worth rewriting, below half the target size.
pub fn is_small(bytes: u64, target_bytes: u64) -> bool {
    bytes < target_bytes / 2
}

/// The small files of one day, rewritten together.
#[derive(Debug, Clone)]
pub struct DayPlan {
    pub day: String,
    pub files: Vec<DataFile>,
}

impl DayPlan {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Rows, when every file has statistics.
    pub fn rows(&self) -> Option<u64> {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// The days worth compacting ([`MIN_SMALL_FILES`] or more), oldest first.
pub fn plan(files: &[DataFile], options: &CompactOptions) -> Vec<DayPlan> {
    let today = options.today.format("%Y-%m-%d").to_string();
    let selected = |day: &str| match options.days {
        DaySelection::Closed => day < today.as_str(),
        DaySelection::Day(d) => day == d.format("%Y-%m-%d").to_string(),
        DaySelection::Since(d) => {
            day >= d.format("%Y-%m-%d").to_string().as_str() && day < today.as_str()
        }
    };
    let open = |day: &str| options.open_days && day >= today.as_str();
    let mut days: BTreeMap<&str, (Vec<DataFile>, i64)> = BTreeMap::new();
    for f in files.iter().filter(|f| open(&f.day) || selected(&f.day)) {
        let entry = days.entry(&f.day).or_default();
        entry.1 = entry.1.max(f.modified_ms);
        if is_small(f.bytes, options.target_bytes) {
            entry.0.push(f.clone());
        }
    }
    let quiet = |newest_ms: i64| {
        options
            .quiet_for
            .is_none_or(|q| options.now_ms - newest_ms >= q.as_millis() as i64)
    };
    days.into_iter()
        .filter(|(day, (small, newest))| {
            small.len() >= MIN_SMALL_FILES && (open(day) || quiet(*newest))
        })
        .map(|(day, (files, _))| DayPlan {
            day: day.to_owned(),
            files,
        })
        .collect()
}

/// What one day's compaction did.
#[derive(Debug, Clone, Serialize)]
pub struct CompactReport {
    pub day: String,
    pub files_before: usize,
    pub bytes_before: u64,
    pub files_after: usize,
    pub bytes_after: u64,
    pub rows: u64,
    pub version: Option<u64>,
    pub attempts: u32,
}

impl std::fmt::Display for CompactReport {
    /// One line per compacted day.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} files ({}) -> {} files ({}), {} rows, version {}",
            self.day,
            self.files_before,
            mib(self.bytes_before),
            self.files_after,
            mib(self.bytes_after),
            self.rows,
            self.version.map_or("-".to_owned(), |v| v.to_string()),
        )?;
        if self.attempts > 1 {
            write!(f, " ({} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

/// Bytes as MiB with one decimal, for reports.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The tables maintenance works on: the pulls table at `path`, and its
/// rejected and periods tables when there are.
pub async fn tables(path: &Location) -> Result<Vec<(Location, TableKind)>, Box<TableError>> {
    if !super::exists(path).await? {
        return Err(Box::new(TableError::NotATable {
            path: path.clone(),
            kind: TableKind::Pulls.name(),
        }));
    }
    let mut tables = vec![(path.clone(), TableKind::Pulls)];
    for (beside, kind) in [
        (super::rejected_path(path), TableKind::Rejected),
        (super::periods_path(path), TableKind::Periods),
    ] {
        if super::open_current(&beside, kind).await?.is_some() {
            tables.push((beside, kind));
        }
    }
    Ok(tables)
}

/// The table's root URL with a trailing `/`, to join data file paths to.
fn root_url(path: &Location) -> Result<Url, TableError> {
    let mut root = table_url(path, false)?;
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    Ok(root)
}

/// Compacts the planned days of the table at `path`, one commit per day;
/// `progress` sees each day as it is done.
pub async fn compact(
    path: &Location,
    kind: TableKind,
    options: &CompactOptions,
    progress: &mut (dyn FnMut(&CompactReport) + Send),
) -> Result<Vec<CompactReport>, MaintenanceError> {
    let table = super::open(path, kind).await?;
    let days: Vec<String> = plan(&data_files(path, &table)?, options)
        .into_iter()
        .map(|p| p.day)
        .collect();
    let mut reports = Vec::with_capacity(days.len());
    for day in days {
        if let Some(report) = compact_day(path, kind, options, &day).await? {
            progress(&report);
            reports.push(report);
        }
    }
    checkpoint(path, kind).await?;
    Ok(reports)
}

/// Writes a checkpoint of the latest version of the table of `kind` at
/// `path` unless it has one. Compaction commits once per day, the periods
/// table once per first day, and an ingest of a long history is one commit
/// of a file per day with statistics: without a checkpoint every later open
/// replays those JSON commits (measured: tens of ms per open at a year of
/// days; README, Performance, "Second round"). The table is fine either
/// way, so a failed checkpoint only warns.
pub async fn checkpoint(path: &Location, kind: TableKind) -> Result<(), TableError> {
    let table = super::open(path, kind).await?;
    let store = super::object_store(path)?;
    let checkpointed = super::info::last_checkpoint(&*store).await.unwrap_or(0);
    if table.version().unwrap_or(0) > checkpointed {
        if let Err(e) = deltalake::checkpoints::create_checkpoint(&table, None).await {
            tracing::warn!("{}: the checkpoint failed: {e}", path);
        }
    }
    Ok(())
}

/// One day, re-planned from a fresh snapshot on every attempt; `None` when
/// there is nothing left to do (another compaction got there first).
async fn compact_day(
    path: &Location,
    kind: TableKind,
    options: &CompactOptions,
    day: &str,
) -> Result<Option<CompactReport>, MaintenanceError> {
    let day_date = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok();
    let options = CompactOptions {
        days: day_date.map_or(options.days, DaySelection::Day),
        ..options.clone()
    };
    for attempt in 1..=MAX_ATTEMPTS {
        let table = super::open(path, kind).await?;
        let planned = plan(&data_files(path, &table)?, &options);
        let Some(plan) = planned.into_iter().find(|p| p.day == day) else {
            return Ok(None);
        };
        match rewrite(path, kind, table, &plan, options.target_bytes).await {
            Ok(mut report) => {
                report.attempts = attempt;
                return Ok(Some(report));
            }
            Err(e) if e.is_conflict() => {
                tracing::info!(
                    day,
                    attempt,
                    "a concurrent commit removed files of this day; re-planning ({e})"
                );
            }
            Err(e) => return Err(e),
        }
    }
    Err(MaintenanceError::Contended {
        what: format!("compacting {day}"),
        path: path.clone(),
    })
}

/// Reads the plan's files sorted, writes them anew, and commits the swap.
async fn rewrite(
    path: &Location,
    kind: TableKind,
    table: DeltaTable,
    plan: &DayPlan,
    target_bytes: u64,
) -> Result<CompactReport, MaintenanceError> {
    let failed = |source: DataFusionError| MaintenanceError::Rewrite {
        day: plan.day.clone(),
        path: path.clone(),
        source,
    };
    let root = root_url(path)?;
    let files: Vec<String> = plan
        .files
        .iter()
        .filter_map(|f| root.join(&f.path).ok())
        .map(String::from)
        .collect();
    let rows_known = plan.rows();
    let bytes_per_row = (plan.bytes() / rows_known.unwrap_or(1).max(1)).max(1);
    let file_rows = usize::try_from(target_bytes / bytes_per_row).unwrap_or(usize::MAX);

    let ctx = sort_session().map_err(failed)?;
    if !path.is_local() {
        // The files are read by URL: the store's bucket must be known.
        let bucket = Url::parse(&root[..url::Position::BeforePath])
            .map_err(|e| failed(DataFusionError::Configuration(format!("table URL: {e}"))))?;
        ctx.register_object_store(&bucket, table.log_store().root_object_store(None));
    }
    let sort = kind
        .sort_columns()
        .iter()
        .map(|c| col(*c).sort(true, true))
        .collect();
    let mut stream = ctx
        .read_parquet(files, ParquetReadOptions::default())
        .await
        .and_then(|df| df.sort(sort))
        .map_err(failed)?
        .execute_stream()
        .await
        .map_err(failed)?;
    let mut writer = TableWriter::new(path, table)?.with_file_rows(file_rows);
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = with_day(kind, &batch.map_err(failed)?, &plan.day).map_err(failed)?;
        rows += batch.num_rows() as u64;
        writer.write(batch).await?;
    }
    if rows_known.is_some_and(|r| r != rows) {
        writer.abort().await?;
        return Err(MaintenanceError::RowCount {
            day: plan.day.clone(),
            path: path.clone(),
            before: rows_known.unwrap_or(0),
            after: rows,
        });
    }
    let removed = plan.files.iter().map(|f| f.remove.clone()).collect();
    let operation = DeltaOperation::Optimize {
        predicate: Some(format!("{PARTITION_COLUMN} = '{}'", plan.day)),
        target_size: i64::try_from(target_bytes).unwrap_or(i64::MAX),
    };
    let metadata = HashMap::from([(
        "pullstats".to_owned(),
        json!({"compact": {"day": plan.day, "files": plan.files.len(), "rows": rows}}),
    )]);
    let (version, written) = writer.commit_rewrite(removed, operation, metadata).await?;
    Ok(CompactReport {
        day: plan.day.clone(),
        files_before: plan.files.len(),
        bytes_before: plan.bytes(),
        files_after: written.len(),
        bytes_after: written.iter().sum(),
        rows,
        version,
        attempts: 1,
    })
}

/// A session that sorts within a memory budget, spilling beyond it.
fn sort_session() -> Result<SessionContext, DataFusionError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(SORT_MEMORY_BYTES, 1.0)
        .build_arc()?;
    let mut config = SessionConfig::new().with_target_partitions(2);
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// A batch read from a data file (which has no partition column) in the
/// table's schema, with the partition column set to `day`.
fn with_day(
    kind: TableKind,
    batch: &RecordBatch,
    day: &str,
) -> Result<RecordBatch, DataFusionError> {
    let schema = kind.schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if field.name() == PARTITION_COLUMN {
            columns.push(Arc::new(StringArray::from(vec![day; batch.num_rows()])));
            continue;
        }
        let column = batch.column_by_name(field.name()).ok_or_else(|| {
            DataFusionError::Plan(format!("a data file has no column {}", field.name()))
        })?;
        columns.push(arrow::compute::cast(column, field.data_type())?);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

pub use crate::query::span::{parse_keep, Keep};

/// What retention removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Serialize)]
pub struct RetainReport {
    pub table: String,
    pub first_kept_day: String,
    pub days: Vec<String>,
    pub files: usize,
    pub rows: u64,
    pub version: Option<u64>,
}

/// Removes every `action_day` before `first_kept` from the table at `path`.
pub async fn retain(
    path: &Location,
    kind: TableKind,
    first_kept: NaiveDate,
    dry_run: bool,
) -> Result<RetainReport, MaintenanceError> {
    let cutoff = first_kept.format("%Y-%m-%d").to_string();
    for _ in 0..MAX_ATTEMPTS {
        let table = super::open(path, kind).await?;
        let doomed: Vec<DataFile> = data_files(path, &table)?
            .into_iter()
            .filter(|f| f.day < cutoff)
            .collect();
        let mut days: Vec<String> = doomed.iter().map(|f| f.day.clone()).collect();
        days.sort();
        days.dedup();
        let mut report = RetainReport {
            table: path.to_string(),
            first_kept_day: cutoff.clone(),
            days,
            files: doomed.len(),
            rows: doomed.iter().filter_map(|f| f.rows).sum(),
            version: None,
        };
        if dry_run || doomed.is_empty() {
            return Ok(report);
        }
        let predicate = format!("{PARTITION_COLUMN} < '{cutoff}'");
        let actions = doomed
            .iter()
            .map(|f| Action::Remove(f.deletion()))
            .collect();
        let properties = CommitProperties::default().with_metadata([(
            "pullstats".to_owned(),
            json!({"retain": {"first_kept_day": cutoff}}),
        )]);
        let snapshot = table.snapshot().map_err(delta(path))?;
        let result = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(
                Some(snapshot),
                table.log_store(),
                DeltaOperation::Delete {
                    predicate: Some(predicate),
                },
            )
            .await
            .map_err(|e| delta(path)(e));
        match result {
            Ok(finalized) => {
                report.version = Some(finalized.version());
                return Ok(report);
            }
            Err(e) if e.is_conflict() => {
                tracing::info!("a concurrent commit touched the days to remove; re-planning ({e})");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(MaintenanceError::Contended {
        what: "retention".into(),
        path: path.clone(),
    })
}

/// What vacuum deleted (or, in a dry run, would delete).
#[derive(Debug, Clone, Serialize)]
pub struct VacuumReport {
    pub table: String,
    pub dry_run: bool,
    pub files: Vec<String>,
}

/// Deletes files that no version within `retention` needs (the table's
/// `delta.deletedFileRetentionDuration`, 7 days, when `None`), and files no
/// version ever referenced (writers killed before their commit) once they
/// are older than that. A retention below the table's needs `force`.
pub async fn vacuum(
    path: &Location,
    kind: TableKind,
    retention: Option<Duration>,
    force: bool,
    dry_run: bool,
) -> Result<VacuumReport, MaintenanceError> {
    let table = super::open(path, kind).await?;
    let mut builder = table
        .vacuum()
        .with_mode(VacuumMode::Full)
        .with_dry_run(dry_run)
        .with_enforce_retention_duration(!force);
    if let Some(r) = retention {
        let r = chrono::Duration::from_std(r).unwrap_or(chrono::Duration::MAX);
        builder = builder.with_retention_period(r);
    }
    let (_, metrics) = builder.await.map_err(|source| MaintenanceError::Vacuum {
        path: path.clone(),
        source,
    })?;
    Ok(VacuumReport {
        table: path.to_string(),
        dry_run,
        files: metrics.files_deleted,
    })
}

/// The table at `version`, checked readable: its log is still there and
/// vacuum has not deleted any of its files.
pub async fn open_version(
    path: &Location,
    kind: TableKind,
    version: u64,
) -> Result<DeltaTable, MaintenanceError> {
    let mut table = super::open(path, kind).await?;
    let latest = table.version().unwrap_or(0);
    if version > latest {
        return Err(MaintenanceError::NoSuchVersion {
            path: path.clone(),
            version,
            latest,
        });
    }
    table
        .load_version(version)
        .await
        .map_err(|source| MaintenanceError::LogGone {
            path: path.clone(),
            version,
            source,
        })?;
    let files = data_files(path, &table)?;
    let store = table.log_store().object_store(None);
    let missing: Vec<&DataFile> = futures::stream::iter(&files)
        .map(|f| {
            let store = store.clone();
            async move {
                let file = deltalake::Path::from_url_path(&f.path).ok()?;
                match store.head(&file).await {
                    Err(object_store::Error::NotFound { .. }) => Some(f),
                    _ => None,
                }
            }
        })
        .buffered(16)
        .filter_map(std::future::ready)
        .collect()
        .await;
    if let Some(first) = missing.first() {
        return Err(MaintenanceError::Vacuumed {
            path: path.clone(),
            version,
            missing: missing.len(),
            files: files.len(),
            first: first.path.clone(),
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn file(day: &str, bytes: u64, modified_ms: i64) -> DataFile {
        DataFile {
            path: format!("{PARTITION_COLUMN}={day}/{bytes}-{modified_ms}.parquet"),
            day: day.into(),
            bytes,
            rows: Some(bytes / 10),
            modified_ms,
            remove: Remove::default(),
        }
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day")
    }

    fn options(days: DaySelection) -> CompactOptions {
        CompactOptions {
            days,
            target_bytes: 1000,
            today: day("2026-11-24"),
            quiet_for: None,
            now_ms: 10_000,
            open_days: false,
        }
    }

    fn files() -> Vec<DataFile> {
        vec![
            // Two small files: compacted.
            file("2026-11-01", 100, 1),
            file("2026-11-01", 200, 2),
            // A large one beside them is left alone.
            file("2026-11-01", 900, 3),
            // One small file alone: nothing to merge.
            file("2026-11-02", 100, 4),
            // Small files, but the day is recent (written at 9,500 ms).
            file("2026-11-20", 100, 5),
            file("2026-11-20", 100, 9_500),
            // Today: never closed.
            file("2026-11-24", 100, 7),
            file("2026-11-24", 100, 8),
        ]
    }

    #[rstest]
    #[case::closed(DaySelection::Closed, None, &["2026-11-01", "2026-11-20"])]
    #[case::quiet(DaySelection::Closed, Some(Duration::from_secs(1)), &["2026-11-01"])]
    #[case::one_day(DaySelection::Day(day("2026-11-24")), None, &["2026-11-24"])]
    #[case::since(DaySelection::Since(day("2026-11-02")), None, &["2026-11-20"])]
    fn plans_days_with_two_small_files(
        #[case] days: DaySelection,
        #[case] quiet_for: Option<Duration>,
        #[case] want: &[&str],
    ) {
        let plans = plan(
            &files(),
            &CompactOptions {
                quiet_for,
                ..options(days)
            },
        );
        let got: Vec<&str> = plans.iter().map(|p| p.day.as_str()).collect();
        assert_eq!(got, want);
    }

    /// `--auto-compact`: closed days once quiet, the open ones whenever
    /// they have small files (today's last was written 100 ms ago).
    #[test]
    fn open_days_are_planned_quiet_or_not() {
        let mut files = files();
        files.push(file("2026-11-24", 100, 9_900));
        files.push(file("2026-11-25", 100, 9_900));
        files.push(file("2026-11-25", 100, 9_950));
        let options = CompactOptions {
            quiet_for: Some(Duration::from_secs(1)),
            open_days: true,
            ..options(DaySelection::Closed)
        };
        let plans = plan(&files, &options);
        let got: Vec<(&str, usize)> = plans
            .iter()
            .map(|p| (p.day.as_str(), p.files.len()))
            .collect();
        assert_eq!(
            got,
            [("2026-11-01", 2), ("2026-11-24", 3), ("2026-11-25", 2)]
        );
    }

    #[test]
    fn a_plan_takes_only_the_small_files() {
        let plans = plan(&files(), &options(DaySelection::Day(day("2026-11-01"))));
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].files.len(), 2);
        assert_eq!(plans[0].bytes(), 300);
        assert_eq!(plans[0].rows(), Some(30));
    }

    #[rstest]
    #[case("13m", "2026-11-24", "2025-10-24")]
    #[case("1m", "2026-03-31", "2026-02-28")]
    #[case("90d", "2026-11-24", "2026-08-26")]
    #[case("2w", "2026-11-24", "2026-11-10")]
    #[case("1y", "2024-02-29", "2023-02-28")]
    fn retention_windows(#[case] keep: &str, #[case] today: &str, #[case] first: &str) {
        let keep = parse_keep(keep).expect("window");
        assert_eq!(keep.first_kept_day(day(today)), day(first));
    }

    #[rstest]
    #[case("")]
    #[case("0d")]
    #[case("13")]
    #[case("5h")]
    #[case("m")]
    fn bad_retention_windows_are_refused(#[case] keep: &str) {
        assert!(parse_keep(keep).is_err(), "{keep}");
    }
}
