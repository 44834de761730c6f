//! The Delta table: open or create it, and write actions into it with one
//! atomic commit per write session.
//!
//! A [`TableWriter`] streams record batches into Parquet files (one open
//! file per `action_day`, the partition) as it goes, and commits every file
//! in one Delta commit at the end: a reader sees all of an ingest or none of
//! it, and a failed ingest leaves no partial data behind. Memory stays
//! bounded whatever the input size: a file's row groups go out to storage
//! as they fill, a day's file is sealed at [`MAX_FILE_ROWS`], and the files
//! of the days written to least recently are sealed when more than
//! [`MAX_OPEN_FILES`] are open or the open files but the latest hold more
//! than [`OPEN_ROWS_BUDGET`] rows in unfinished row groups (input in time
//! order finishes its days one after the other, so each still gets about
//! one file).
//!
//! A commit may carry Delta application transactions (`txn` actions): the
//! daemon records each Kafka partition's next offset there, so the offsets
//! land atomically with the data, and Delta's conflict check fences a
//! writer that lost a partition (see [`TableError::is_conflict`]).

pub mod dead_letters;
mod info;
mod local_store;
pub mod location;
pub mod maintenance;
pub mod sessions;
mod snapshot;

use std::collections::HashMap;

use arrow::array::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Remove, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::{TablePropertiesExt, TableProperty};
use deltalake::table::state::DeltaTableState;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::ObjectStore;
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStoreExt as _;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use url::Url;

pub use location::Location;
pub use snapshot::Snapshot;

use crate::schema::{periods_schema, rejected_schema, table_schema, PARTITION_COLUMN};

/// Rows of a day's file before it is sealed and the day's next rows start
/// another.
pub const MAX_FILE_ROWS: usize = 2_000_000;
/// Rows per Parquet row group: large enough for good compression and
/// statistics, small enough that pruning by row group still helps.
const ROW_GROUP_ROWS: usize = 256 * 1024;
/// Days with an open file at most: each holds encoders and compression
/// contexts for every column, a few MiB whatever its rows.
pub const MAX_OPEN_FILES: usize = 4;
/// Rows the open files other than the latest written may hold in row groups
/// not yet written out (about 150 bytes a row in the Parquet encoders,
/// measured with heaptrack); the latest holds up to a row group.
pub const OPEN_ROWS_BUDGET: usize = 128 * 1024;

/// The order of pulls in a compacted file and in a raw export: by time, so a
/// page's statistics span a short stretch of time and the raw export's
/// slices of time prune by them.
pub const PULLS_ORDER: &[&str] = &["timestamp", "namespace", "repository"];

/// The tables pullstats keeps: the pulls table at `DIR`, and beside it
/// the counts of requests that formed no action (`DIR.rejected`) and the
/// pre-aggregated complete periods (`DIR.periods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Pulls,
    Rejected,
    Periods,
}

impl TableKind {
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Pulls => "pulls",
            TableKind::Rejected => "rejected",
            TableKind::Periods => "periods",
        }
    }

    fn schema(self) -> arrow::datatypes::SchemaRef {
        match self {
            TableKind::Pulls => table_schema(),
            TableKind::Rejected => rejected_schema(),
            TableKind::Periods => periods_schema(),
        }
    }

    /// The order compaction sorts a day's rows in. Pulls: the raw export's
    /// order, so page statistics prune the raw view's slices of time (see
    /// `query::export`); the summaries, which read whole days, gain little
    /// from another order (measured: README, Performance).
    fn sort_columns(self) -> &'static [&'static str] {
        match self {
            TableKind::Pulls => PULLS_ORDER,
            TableKind::Rejected => &["namespace", "repository", "status", "reason"],
            TableKind::Periods => &[
                "granularity",
                "level",
                "namespace",
                "repository",
                "reference",
            ],
        }
    }

    /// Whether every row is derived from the pulls table, so that a table
    /// of an older schema (written by an older pullstats) may be replaced
    /// and computed again rather than refused.
    fn derived(self) -> bool {
        self == TableKind::Periods
    }

    fn comment(self) -> &'static str {
        match self {
            TableKind::Pulls => "pullstats: one row per pull action (see schemas/table.json)",
            TableKind::Rejected => {
                "pullstats: counts of requests that formed no action, per day, repository, status and reason"
            }
            TableKind::Periods => {
                "pullstats: complete weeks and months pre-aggregated per namespace, repository and reference (see schemas/periods.json)"
            }
        }
    }
}

/// Where the rejected-requests table of the pulls table at `table` lives.
pub fn rejected_path(table: &Location) -> Location {
    table.beside(".rejected")
}

/// Where the pre-aggregated periods of the pulls table at `table` live.
pub fn periods_path(table: &Location) -> Location {
    table.beside(".periods")
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot use {path} as a table location: {reason}")]
    Location { path: Location, reason: String },
    #[error("no {kind} table at {path} (run `pullstats ingest` first)")]
    NotATable { path: Location, kind: &'static str },
    #[error("table at {path}: {source}")]
    Delta {
        path: Location,
        #[source]
        source: DeltaTableError,
    },
    #[error("table at {path} does not have the {kind} schema: {reason}")]
    Schema {
        path: Location,
        kind: &'static str,
        reason: String,
    },
}

impl TableError {
    /// Whether the error is a lost race for a Kafka partition: another
    /// writer committed an offset for one of the partitions this commit
    /// covers since this writer read it.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            TableError::Delta {
                source: DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(_)
                },
                ..
            }
        )
    }

    /// Whether the error is the store not answering (refused connection,
    /// timeout): worth waiting for, unlike a missing bucket or refused
    /// credentials, which are answers.
    pub fn is_unreachable(&self) -> bool {
        use object_store::client::{HttpError, HttpErrorKind};
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = source {
            if let Some(http) = e.downcast_ref::<HttpError>() {
                return matches!(
                    http.kind(),
                    HttpErrorKind::Connect
                        | HttpErrorKind::Request
                        | HttpErrorKind::Timeout
                        | HttpErrorKind::Interrupted
                );
            }
            source = e.source();
        }
        false
    }
}

fn delta(path: &Location) -> impl FnOnce(DeltaTableError) -> TableError + '_ {
    move |source| TableError::Delta {
        path: path.clone(),
        source,
    }
}

/// The location as deltalake takes it (see [`Location::url`]).
pub fn table_url(path: &Location, create: bool) -> Result<Url, TableError> {
    path.url(create).map_err(|reason| TableError::Location {
        path: path.clone(),
        reason,
    })
}

/// Whether there is a Delta table at `path`: its `_delta_log` holds an
/// entry. On an object store this is the first request, so a missing
/// bucket, refused credentials or an unreachable endpoint surface here.
pub async fn exists(path: &Location) -> Result<bool, TableError> {
    if let Location::Local(dir) = path {
        return Ok(dir.join("_delta_log").is_dir());
    }
    let store = object_store(path)?;
    let prefix = deltalake::Path::from("_delta_log");
    let first = store
        .list(Some(&prefix))
        .try_next()
        .await
        .map_err(|e| delta(path)(DeltaTableError::from(e)))?;
    Ok(first.is_some())
}

/// The object store rooted at the table's location (local or remote):
/// what the files pullstats keeps beside Delta's (`_pullstats/…`) are read
/// and written through.
pub fn object_store(path: &Location) -> Result<std::sync::Arc<dyn ObjectStore>, TableError> {
    let url = table_url(path, false)?;
    let store = location::builder(url)
        .and_then(|b| b.build_storage())
        .map_err(delta(path))?;
    Ok(store.object_store(None))
}

/// Copies the local `file` to `<dir>/<name>` in `dir`'s store (local or
/// remote) and returns where it went.
pub async fn upload(
    dir: &Location,
    name: &str,
    file: &std::path::Path,
) -> Result<String, TableError> {
    let failed = |reason: String| TableError::Location {
        path: dir.clone(),
        reason,
    };
    if let Location::Local(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| failed(e.to_string()))?;
    }
    let store = object_store(dir)?;
    let target = deltalake::Path::from(name);
    let mut source = tokio::fs::File::open(file)
        .await
        .map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?;
    let mut sink = object_store::buffered::BufWriter::new(store, target);
    let copied = async {
        tokio::io::copy(&mut source, &mut sink).await?;
        tokio::io::AsyncWriteExt::shutdown(&mut sink).await
    };
    copied
        .await
        .map_err(|e| failed(format!("cannot upload {name}: {e}")))?;
    Ok(format!("{dir}/{name}"))
}

/// The Delta application id holding a Kafka partition's next offset.
pub fn offset_app_id(topic: &str, partition: i32) -> String {
    format!("pullstats/kafka/{topic}/{partition}/offset")
}

/// The Delta application id holding a Kafka partition's session state
/// generation (see [`sessions`]).
pub fn state_app_id(topic: &str, partition: i32) -> String {
    format!("pullstats/kafka/{topic}/{partition}/sessions")
}

/// The version a writer recorded under `app_id` in a Delta application
/// transaction (`txn`), as of `table`'s snapshot; `None` if never.
pub async fn txn_version(
    table: &DeltaTable,
    app_id: String,
) -> Result<Option<i64>, DeltaTableError> {
    table
        .snapshot()?
        .transaction_version(&*table.log_store(), app_id)
        .await
}

/// Opens the table of `kind` at `path`; an error when there is none.
pub async fn open(path: &Location, kind: TableKind) -> Result<DeltaTable, TableError> {
    must_exist(path, kind).await?;
    load(path, kind).await
}

/// An error unless there is a table at `path`.
async fn must_exist(path: &Location, kind: TableKind) -> Result<(), TableError> {
    if exists(path).await? {
        return Ok(());
    }
    Err(TableError::NotATable {
        path: path.clone(),
        kind: kind.name(),
    })
}

/// Loads the table of `kind` known to be at `path` and checks its schema.
async fn load(path: &Location, kind: TableKind) -> Result<DeltaTable, TableError> {
    let url = table_url(path, false)?;
    let table = location::builder(url)
        .map_err(delta(path))?
        .load()
        .await
        .map_err(delta(path))?;
    check_schema(path, kind, &table.snapshot().map_err(delta(path))?.schema())?;
    Ok(table)
}

/// Opens the table of `kind` at `path` for reading: `None` when there is
/// none, or when a derived table (the periods) still has an older schema
/// (the next writer replaces it; until then readers do without).
pub async fn open_current(
    path: &Location,
    kind: TableKind,
) -> Result<Option<DeltaTable>, TableError> {
    if_current(path, kind, load(path, kind)).await
}

/// What a reader of a table that may be missing or have an older schema
/// gets from `load` (the table of `kind` at `path` loaded one way or
/// another): `None` when there is no table, or for a derived table of an
/// older schema.
async fn if_current<T>(
    path: &Location,
    kind: TableKind,
    load: impl std::future::Future<Output = Result<T, TableError>>,
) -> Result<Option<T>, TableError> {
    if !exists(path).await? {
        return Ok(None);
    }
    match load.await {
        Err(e @ TableError::Schema { .. }) if kind.derived() => {
            tracing::warn!("{e}; it is computed again at the next `compact` (or by `serve`)");
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// Opens the table of `kind` at `path`, creating an empty one when missing.
/// A derived table of an older schema is replaced by an empty one (one
/// commit that removes its files), since its rows can be computed again.
pub async fn open_or_create(path: &Location, kind: TableKind) -> Result<DeltaTable, TableError> {
    if exists(path).await? {
        return match load(path, kind).await {
            Err(e @ TableError::Schema { .. }) if kind.derived() => {
                tracing::info!("{e}; replacing it with an empty one of the current schema");
                create(path, kind, SaveMode::Overwrite).await
            }
            other => other,
        };
    }
    create(path, kind, SaveMode::ErrorIfExists).await
}

/// How long the tables pullstats creates keep their log entries
/// (`delta.logRetentionDuration`): as long as `vacuum` keeps the files a
/// version needs (`delta.deletedFileRetentionDuration`, 7 days), since an
/// older version cannot be read once vacuum ran. Delta's default, 30 days,
/// would keep up to 2.6 million entries in `_delta_log` for a `serve`
/// committing every second, and every open, update and commit lists them
/// (Performance, "Long runs").
const LOG_RETENTION: &str = "interval 7 days";

/// Creates the table of `kind` at `path`: `mode` `ErrorIfExists` for a new
/// table, `Overwrite` to replace one (its files are removed in the same
/// commit).
async fn create(
    path: &Location,
    kind: TableKind,
    mode: SaveMode,
) -> Result<DeltaTable, TableError> {
    let url = table_url(path, true)?;
    // Built without loading: loading an empty location makes deltalake log
    // a misleading ERROR ("No files in log segment") before we create it.
    let table = location::builder(url)
        .and_then(|b| b.build())
        .map_err(delta(path))?;
    let schema: StructType = kind
        .schema()
        .as_ref()
        .try_into_kernel()
        .map_err(|e| delta(path)(DeltaTableError::from(e)))?;
    let created = table
        .create()
        .with_table_name(kind.name())
        .with_comment(kind.comment())
        .with_columns(schema.fields().cloned())
        .with_partition_columns([PARTITION_COLUMN])
        .with_configuration_property(TableProperty::LogRetentionDuration, Some(LOG_RETENTION))
        .with_save_mode(mode)
        .await;
    match created {
        Ok(table) => Ok(table),
        // Another process (a second daemon starting at the same moment)
        // created it first: use theirs.
        Err(e) => match exists(path).await {
            Ok(true) => load(path, kind).await,
            _ => Err(delta(path)(e)),
        },
    }
}

fn check_schema(path: &Location, kind: TableKind, schema: &StructType) -> Result<(), TableError> {
    let names: Vec<String> = schema.fields().map(|f| f.name().clone()).collect();
    let want: Vec<String> = kind
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    if names != want {
        return Err(TableError::Schema {
            path: path.clone(),
            kind: kind.name(),
            reason: format!("columns are {names:?}"),
        });
    }
    Ok(())
}

/// Versions a long-lived handle on a table replays one by one before it is
/// loaded whole again: the tables' checkpoint interval
/// (`delta.checkpointInterval`, 100).
pub const RELOAD_AFTER_VERSIONS: u64 = 100;

/// Follows a table across versions without the cost of an update growing
/// with the handle's age.
///
/// deltalake 1.1 keeps the metadata of a table's files as one Arrow batch
/// per commit it replayed since the handle was loaded, and passes every
/// batch through the log replay again at each update (its snapshots always
/// hold every file; delta-rs issue 4584). A handle that follows a table for
/// hours (the daemon's and `serve`'s writers, the API's catalog) would pay,
/// at each commit, for every commit since it started: half a second per
/// commit after a thousand on the benchmark machine (Performance, "Long
/// runs"). So once it has replayed
/// [`RELOAD_AFTER_VERSIONS`] versions, or its own commit wrote a checkpoint,
/// the handle is loaded whole again, from the newest checkpoint: a few
/// batches however many files.
#[derive(Debug, Default)]
pub struct Replayed(u64);

impl Replayed {
    /// Notes that `table` went from version `from` to its version now (by
    /// an update or a commit of its own, `checkpointed` when that commit
    /// wrote a checkpoint), and loads it whole again when that is due. A
    /// failed load leaves the handle as it was (still right, only slower
    /// to update) and is tried again next time.
    pub async fn follow(
        &mut self,
        path: &Location,
        table: &mut DeltaTable,
        from: Option<u64>,
        checkpointed: bool,
    ) {
        let Some(now) = table.version() else {
            return;
        };
        self.0 += now.saturating_sub(from.unwrap_or(now));
        if !checkpointed && self.0 < RELOAD_AFTER_VERSIONS {
            return;
        }
        match DeltaTableState::try_new(table.log_store().as_ref(), Some(now)).await {
            Ok(state) => {
                table.state = Some(state);
                self.0 = 0;
            }
            Err(e) => tracing::warn!(table = %path, version = now,
                "cannot load the table whole again; updating it one version at a time: {e}"),
        }
    }
}

/// Streams batches into a table; see the module docs.
pub struct TableWriter {
    path: Location,
    table: DeltaTable,
    /// The open file of each day written to since its last seal.
    open: HashMap<String, OpenFile>,
    /// Rows after which a day's file is sealed.
    file_rows: usize,
    /// Rows the open files but the latest may hold in unfinished row groups.
    open_rows_budget: usize,
    /// Writes so far: when each open file was last written to.
    writes: u64,
    adds: Vec<Action>,
    /// Versions `table` replayed since it was loaded whole.
    replayed: Replayed,
}

/// One day's file being written.
struct OpenFile {
    writer: RecordBatchWriter,
    rows: usize,
    last_write: u64,
}

impl OpenFile {
    /// Rows in the row group not yet written out.
    fn unfinished_rows(&self) -> usize {
        self.rows % ROW_GROUP_ROWS
    }
}

fn batch_writer(path: &Location, table: &DeltaTable) -> Result<RecordBatchWriter, TableError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    Ok(RecordBatchWriter::for_table(table)
        .map_err(delta(path))?
        .with_writer_properties(props))
}

/// `batch` cut by the value of its partition column, in the order the
/// values first appear; one piece, the batch itself, when it holds one day.
/// Rows in time order hold each day in one run: those pieces are slices of
/// the batch, not copies.
fn by_day(batch: RecordBatch) -> Result<Vec<(String, RecordBatch)>, arrow::error::ArrowError> {
    use arrow::array::{Array, AsArray, BooleanArray};
    let Ok(i) = batch.schema().index_of(PARTITION_COLUMN) else {
        return Ok(vec![(String::new(), batch)]);
    };
    let column = arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Utf8)?;
    let days = column.as_string::<i32>();
    let day = |r: usize| (!days.is_null(r)).then(|| days.value(r));
    // (day, first row, rows) of each run of equal days.
    let mut runs: Vec<(Option<&str>, usize, usize)> = Vec::new();
    for r in 0..days.len() {
        match runs.last_mut() {
            Some((d, _, rows)) if *d == day(r) => *rows += 1,
            _ => runs.push((day(r), r, 1)),
        }
    }
    let name = |d: Option<&str>| d.unwrap_or_default().to_owned();
    if let [(d, _, _)] = runs[..] {
        return Ok(vec![(name(d), batch)]);
    }
    let mut seen: Vec<Option<&str>> = Vec::new();
    for &(d, _, _) in &runs {
        if !seen.contains(&d) {
            seen.push(d);
        }
    }
    if seen.len() == runs.len() {
        return Ok(runs
            .into_iter()
            .map(|(d, first, rows)| (name(d), batch.slice(first, rows)))
            .collect());
    }
    seen.into_iter()
        .map(|d| {
            let mask: BooleanArray = (0..days.len()).map(|r| Some(day(r) == d)).collect();
            let piece = arrow::compute::filter_record_batch(&batch, &mask)?;
            Ok((d.unwrap_or_default().to_owned(), piece))
        })
        .collect()
}

impl TableWriter {
    pub fn new(path: &Location, table: DeltaTable) -> Result<Self, TableError> {
        // Checks now that the table can be written to, rather than at the
        // first row.
        batch_writer(path, &table)?;
        Ok(Self {
            path: path.clone(),
            table,
            open: HashMap::new(),
            file_rows: MAX_FILE_ROWS,
            open_rows_budget: OPEN_ROWS_BUDGET,
            writes: 0,
            adds: Vec::new(),
            replayed: Replayed::default(),
        })
    }

    /// Seals a day's file at about `rows` rows (at most [`MAX_FILE_ROWS`]):
    /// compaction uses it to cut files at a target size.
    pub fn with_file_rows(mut self, rows: usize) -> Self {
        self.file_rows = rows.clamp(1, MAX_FILE_ROWS);
        self
    }

    /// The table as of the last commit (or as given to [`Self::rebase`]).
    pub fn table(&self) -> &DeltaTable {
        &self.table
    }

    /// Drops whatever was written and not committed (deleting its files) and
    /// continues from `table`: the snapshot whose offsets the caller read, so
    /// the next commit is checked for conflicts against exactly that.
    pub async fn rebase(&mut self, table: DeltaTable) -> Result<(), TableError> {
        self.abort().await?;
        batch_writer(&self.path, &table)?;
        self.table = table;
        self.replayed = Replayed::default();
        Ok(())
    }

    /// Deletes the files written since the last commit and forgets the
    /// rows still buffered. Nothing references those files, so a crash
    /// before this runs leaves only unreferenced files for `vacuum`.
    pub async fn abort(&mut self) -> Result<(), TableError> {
        // Sealing writes the buffered rows out so that they can be deleted
        // with the rest: one path for both.
        self.seal_all().await?;
        let adds = std::mem::take(&mut self.adds);
        let store = self.table.log_store().object_store(None);
        for action in adds {
            if let Action::Add(add) = action {
                let file = deltalake::Path::from_url_path(&add.path);
                let removed = match file {
                    Ok(f) => store.delete(&f).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = removed {
                    tracing::warn!(file = %add.path, "cannot delete an uncommitted file: {e}");
                }
            }
        }
        Ok(())
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), TableError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let pieces = by_day(batch).map_err(|e| delta(&self.path)(DeltaTableError::from(e)))?;
        for (day, piece) in pieces {
            self.writes += 1;
            let file = match self.open.entry(day.clone()) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(OpenFile {
                    writer: batch_writer(&self.path, &self.table)?,
                    rows: 0,
                    last_write: 0,
                }),
            };
            let n = piece.num_rows();
            file.writer.write(piece).await.map_err(delta(&self.path))?;
            file.rows += n;
            file.last_write = self.writes;
            if file.rows >= self.file_rows {
                self.seal(&day).await?;
            }
        }
        self.seal_beyond_budget().await
    }

    /// Seals the files of the days written to least recently (never the
    /// latest, which is sealed at `file_rows`) while more than
    /// [`MAX_OPEN_FILES`] are open or the others hold more than the budget
    /// of rows in unfinished row groups.
    async fn seal_beyond_budget(&mut self) -> Result<(), TableError> {
        loop {
            let mut by_age: Vec<(u64, usize, &String)> = self
                .open
                .iter()
                .map(|(d, f)| (f.last_write, f.unfinished_rows(), d))
                .collect();
            by_age.sort_unstable();
            by_age.pop();
            let others: usize = by_age.iter().map(|(_, rows, _)| rows).sum();
            let over = by_age.len() >= MAX_OPEN_FILES || others > self.open_rows_budget;
            let Some(day) = by_age
                .first()
                .filter(|_| over)
                .map(|(_, _, d)| (*d).clone())
            else {
                return Ok(());
            };
            self.seal(&day).await?;
        }
    }

    /// Finishes the open file of `day`; its next rows start another.
    async fn seal(&mut self, day: &str) -> Result<(), TableError> {
        if let Some(mut file) = self.open.remove(day) {
            let adds = file.writer.flush().await.map_err(delta(&self.path))?;
            self.adds.extend(adds.into_iter().map(Action::Add));
        }
        Ok(())
    }

    /// Finishes every open file. Each is encoded and written on a task of
    /// its own (the days are independent), so their last row groups are
    /// encoded on every core at once. Files that were written are kept for
    /// the commit (or [`Self::abort`]) even when another failed.
    pub async fn seal_all(&mut self) -> Result<(), TableError> {
        let mut open: Vec<(String, OpenFile)> = self.open.drain().collect();
        open.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let tasks: Vec<_> = open
            .into_iter()
            .map(|(_, mut file)| tokio::spawn(async move { file.writer.flush().await }))
            .collect();
        let mut first_error = None;
        for task in tasks {
            let sealed = match task.await {
                Ok(sealed) => sealed,
                Err(e) => Err(DeltaTableError::generic(format!(
                    "sealing a file stopped: {e}"
                ))),
            };
            match sealed {
                Ok(adds) => self.adds.extend(adds.into_iter().map(Action::Add)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), |e| Err(delta(&self.path)(e)))
    }

    /// Commits every file written, with `metadata` recorded in the commit
    /// info and `txns` as application transactions. Returns the new table
    /// version, or `None` when there was nothing to commit. The writer then
    /// continues from the new version.
    pub async fn commit(
        &mut self,
        metadata: HashMap<String, Value>,
        txns: Vec<Transaction>,
    ) -> Result<Option<u64>, TableError> {
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(vec![PARTITION_COLUMN.to_owned()]),
            predicate: None,
        };
        let properties = CommitProperties::default()
            .with_metadata(metadata)
            .with_application_transactions(txns.clone());
        let allow_empty = !txns.is_empty();
        self.commit_actions(operation, properties, Vec::new(), allow_empty)
            .await
    }

    /// Commits the files written as a replacement of `removed` that changes
    /// no data (compaction): both sides are marked `dataChange: false`, so
    /// concurrent appends and readers do not conflict with it. Returns the
    /// version and the sizes of the files written.
    pub async fn commit_rewrite(
        &mut self,
        removed: Vec<Remove>,
        operation: DeltaOperation,
        metadata: HashMap<String, Value>,
    ) -> Result<(Option<u64>, Vec<u64>), TableError> {
        self.seal_all().await?;
        let mut sizes = Vec::with_capacity(self.adds.len());
        for action in &mut self.adds {
            if let Action::Add(add) = action {
                add.data_change = false;
                sizes.push(u64::try_from(add.size).unwrap_or(0));
            }
        }
        let properties = CommitProperties::default().with_metadata(metadata);
        let removes = removed.into_iter().map(Action::Remove).collect();
        let version = self
            .commit_actions(operation, properties, removes, false)
            .await?;
        Ok((version, sizes))
    }

    /// Commits the files written in place of `removed` (their data is
    /// replaced: both sides change data), as an overwrite of the rows
    /// matching `predicate`, with `txns` as application transactions: a
    /// concurrent commit carrying the same application id makes this one a
    /// conflict ([`TableError::is_conflict`]), which is how two writers
    /// replacing the same rows are kept from both adding theirs.
    pub async fn commit_replace(
        &mut self,
        removed: Vec<Remove>,
        predicate: String,
        txns: Vec<Transaction>,
    ) -> Result<Option<u64>, TableError> {
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(vec![PARTITION_COLUMN.to_owned()]),
            predicate: Some(predicate),
        };
        let properties = CommitProperties::default().with_application_transactions(txns);
        let removes = removed.into_iter().map(Action::Remove).collect();
        self.commit_actions(operation, properties, removes, false)
            .await
    }

    /// One commit of the written files plus `extra` actions; without
    /// `allow_empty`, nothing is committed when there are no such actions
    /// (a commit of application transactions alone is allowed).
    async fn commit_actions(
        &mut self,
        operation: DeltaOperation,
        properties: CommitProperties,
        extra: Vec<Action>,
        allow_empty: bool,
    ) -> Result<Option<u64>, TableError> {
        self.seal_all().await?;
        if self.adds.is_empty() && extra.is_empty() && !allow_empty {
            return Ok(None);
        }
        let path = self.path.clone();
        let snapshot = self.table.snapshot().map_err(delta(&path))?;
        let mut actions = self.adds.clone();
        actions.extend(extra);
        // deltalake's post-commit step would list the whole `_delta_log`
        // at every commit to find expired log files: a cost that grows
        // with every version (a quarter of a busy `serve`'s CPU at 4,000
        // versions; Performance, "Long runs"). Done below, only by the
        // commits that write a checkpoint.
        let properties = properties.with_cleanup_expired_logs(Some(false));
        let result = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(snapshot), self.table.log_store(), operation)
            .await;
        let finalized = match result {
            Ok(finalized) => finalized,
            Err(e) => {
                let error = delta(&path)(e);
                if error.is_conflict() {
                    // Nobody will ever reference these files.
                    let _ = self.abort().await;
                }
                return Err(error);
            }
        };
        self.adds.clear();
        // The commit's post-commit step already read the new version.
        let from = self.table.version();
        self.table.state = Some(finalized.snapshot);
        let checkpointed = finalized.metrics.new_checkpoint_created;
        if checkpointed {
            clean_up_expired_logs(&path, &self.table).await;
        }
        self.replayed
            .follow(&path, &mut self.table, from, checkpointed)
            .await;
        Ok(Some(finalized.version))
    }
}

/// Deletes the log entries older than the table's log retention
/// (`delta.logRetentionDuration`, 30 days) that the newest checkpoint
/// makes unnecessary, unless the table turns it off
/// (`delta.enableExpiredLogCleanup`). A failure only warns: the next
/// checkpoint's commit tries again.
async fn clean_up_expired_logs(path: &Location, table: &DeltaTable) {
    let Some((version, cutoff)) = table.snapshot().ok().and_then(|snapshot| {
        let config = snapshot.table_config();
        let retention = TablePropertiesExt::log_retention_duration(config);
        let cutoff = chrono::Utc::now().timestamp_millis()
            - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        TablePropertiesExt::enable_expired_log_cleanup(config)
            .then_some((snapshot.version(), cutoff))
    }) else {
        return;
    };
    let log_store = table.log_store();
    let cleaned =
        deltalake::checkpoints::cleanup_expired_logs_for(version, &*log_store, cutoff, None).await;
    match cleaned {
        Ok(0) => {}
        Ok(n) => tracing::debug!(table = %path, "deleted {n} expired log entries"),
        Err(e) => tracing::warn!(table = %path, "cannot delete expired log entries: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray};
    use chrono::NaiveDate;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn rejected(days: &[&str]) -> RecordBatch {
        let text = |v: &str| Arc::new(StringArray::from(vec![v; days.len()])) as ArrayRef;
        RecordBatch::try_new(
            rejected_schema(),
            vec![
                Arc::new(StringArray::from(days.to_vec())),
                text("library"),
                text("nginx"),
                Arc::new(Int32Array::from(vec![404; days.len()])),
                text("non_2xx"),
                Arc::new(Int64Array::from(vec![1; days.len()])),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn a_batch_is_cut_by_day_in_the_order_days_first_appear() {
        let pieces = |days: &[&str]| -> Vec<(String, Vec<String>)> {
            by_day(rejected(days))
                .expect("cut")
                .into_iter()
                .map(|(day, piece)| {
                    let column = piece.column(0).as_any().downcast_ref::<StringArray>();
                    let rows = column
                        .expect("days")
                        .iter()
                        .map(|d| d.unwrap_or("").to_owned());
                    (day, rows.collect())
                })
                .collect()
        };
        let d = |day: &str, rows: usize| (day.to_owned(), vec![day.to_owned(); rows]);
        // One day: the batch itself.
        assert_eq!(pieces(&["2026-11-02"; 3]), [d("2026-11-02", 3)]);
        // Runs in time order: slices.
        assert_eq!(
            pieces(&[
                "2026-11-02",
                "2026-11-02",
                "2026-11-03",
                "2026-11-04",
                "2026-11-04"
            ]),
            [d("2026-11-02", 2), d("2026-11-03", 1), d("2026-11-04", 2)]
        );
        // A day that comes back: gathered.
        assert_eq!(
            pieces(&["2026-11-03", "2026-11-02", "2026-11-03", "2026-11-02"]),
            [d("2026-11-03", 2), d("2026-11-02", 2)]
        );
    }

    /// (day, rows) of every data file of `table`, sorted.
    fn files_by_day(path: &Location, table: &DeltaTable) -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = maintenance::data_files(path, table)
            .expect("files")
            .into_iter()
            .map(|f| (f.day, f.rows.unwrap_or(0)))
            .collect();
        files.sort();
        files
    }

    /// A new rejected table in `dir`, and a writer to it.
    async fn rejected_writer(dir: &std::path::Path) -> (Location, TableWriter) {
        let path = Location::Local(dir.join("t"));
        let table = open_or_create(&path, TableKind::Rejected)
            .await
            .expect("table");
        let writer = TableWriter::new(&path, table).expect("writer");
        (path, writer)
    }

    #[tokio::test]
    async fn days_written_to_least_recently_are_sealed_past_the_budgets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, mut w) = rejected_writer(dir.path()).await;
        w.open_rows_budget = 50;
        let day = |d: &str, n: usize| rejected(&vec![d; n]);
        w.write(day("2026-11-01", 60)).await.expect("write");
        // The 1st holds 60 rows beside the latest: sealed.
        w.write(day("2026-11-02", 60)).await.expect("write");
        w.write(day("2026-11-02", 30)).await.expect("write");
        // One batch of two days is cut in two; beside the latest (the 1st),
        // the 2nd and 3rd hold 100 rows: the 2nd, written to longest ago,
        // is sealed.
        let mixed = ["2026-11-03", "2026-11-01"].repeat(10);
        w.write(rejected(&mixed)).await.expect("write");
        // A 5th open file seals the one written to longest ago (the 3rd),
        // whose next rows go to a file of their own.
        for d in ["2026-11-04", "2026-11-05", "2026-11-06", "2026-11-03"] {
            w.write(day(d, 1)).await.expect("write");
        }
        w.commit(HashMap::new(), Vec::new()).await.expect("commit");
        let files = files_by_day(&path, w.table());
        let want = [
            ("2026-11-01", 10),
            ("2026-11-01", 60),
            ("2026-11-02", 90),
            ("2026-11-03", 1),
            ("2026-11-03", 10),
            ("2026-11-04", 1),
            ("2026-11-05", 1),
            ("2026-11-06", 1),
        ];
        let want: Vec<(String, u64)> = want.iter().map(|(d, n)| (d.to_string(), *n)).collect();
        assert_eq!(files, want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_files_are_sealed_together_in_day_order_and_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, mut w) = rejected_writer(dir.path()).await;
        let days = ["2026-11-04", "2026-11-02", "2026-11-03", "2026-11-01"];
        for (n, d) in days.iter().enumerate() {
            w.write(rejected(&vec![*d; n + 1])).await.expect("write");
        }
        assert_eq!(w.open.len(), days.len());
        w.seal_all().await.expect("seal");
        assert!(w.open.is_empty());
        let sealed: Vec<&str> = w
            .adds
            .iter()
            .map(|a| match a {
                Action::Add(add) => add.path.split('/').next().unwrap_or_default(),
                _ => "",
            })
            .collect();
        let want: Vec<String> = ["01", "02", "03", "04"]
            .iter()
            .map(|d| format!("{PARTITION_COLUMN}=2026-11-{d}"))
            .collect();
        assert_eq!(sealed, want);
        let version = w.commit(HashMap::new(), Vec::new()).await.expect("commit");
        assert_eq!(version, Some(1));
        // The writer continues from the version it committed.
        assert_eq!(w.table().version(), Some(1));
        let files = files_by_day(&path, w.table());
        let want: Vec<(String, u64)> = [("01", 4), ("02", 2), ("03", 3), ("04", 1)]
            .iter()
            .map(|(d, n)| (format!("2026-11-{d}"), *n))
            .collect();
        assert_eq!(files, want);
    }

    #[tokio::test]
    async fn a_writer_loads_its_table_whole_again_once_its_commit_wrote_a_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, mut w) = rejected_writer(dir.path()).await;
        let log = dir.path().join("t").join("_delta_log");
        let checkpoints = || {
            std::fs::read_dir(&log)
                .expect("log")
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .ends_with(".checkpoint.parquet")
                })
                .count()
        };
        let mut commits = 0;
        while checkpoints() == 0 {
            assert!(commits < 2 * RELOAD_AFTER_VERSIONS, "no checkpoint");
            w.write(rejected(&["2026-11-01"])).await.expect("write");
            w.commit(HashMap::new(), Vec::new()).await.expect("commit");
            commits += 1;
            // Until the checkpoint, each commit is replayed onto the handle.
            if checkpoints() == 0 {
                assert_eq!(w.replayed.0, commits);
            }
        }
        // The commit that wrote it loaded the handle whole.
        assert_eq!(w.replayed.0, 0);
        w.write(rejected(&["2026-11-02"])).await.expect("write");
        w.commit(HashMap::new(), Vec::new()).await.expect("commit");
        assert_eq!(w.replayed.0, 1);
        assert_eq!(w.table().version(), Some(commits + 1));
        let files = files_by_day(&path, w.table());
        let want = [
            ("2026-11-01".to_owned(), commits),
            ("2026-11-02".to_owned(), 1),
        ];
        let days: std::collections::BTreeMap<String, u64> =
            files.into_iter().fold(Default::default(), |mut m, (d, n)| {
                *m.entry(d).or_default() += n;
                m
            });
        assert_eq!(days, want.into_iter().collect());
    }

    /// Expired log entries are deleted by the commit that writes a
    /// checkpoint, not listed for by every commit (deltalake's default).
    #[tokio::test]
    async fn expired_log_entries_go_at_checkpoint_commits_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, mut w) = rejected_writer(dir.path()).await;
        let log = dir.path().join("t").join("_delta_log");
        let entry = |v: u64| log.join(format!("{v:020}.json"));
        async fn commit(w: &mut TableWriter) -> Option<u64> {
            w.write(rejected(&["2026-11-01"])).await.expect("write");
            w.commit(HashMap::new(), Vec::new()).await.expect("commit")
        }
        while w.table().version() < Some(10) {
            commit(&mut w).await;
        }
        // A checkpoint the cleanup may keep the table readable from, and
        // the entries before it 8 days old: past the 7 days the tables
        // keep theirs (Delta's default, 30 days, would keep them).
        deltalake::checkpoints::create_checkpoint(w.table(), None)
            .await
            .expect("checkpoint");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 24 * 3600);
        for v in 0..=10 {
            let file = std::fs::File::options()
                .write(true)
                .open(entry(v))
                .expect("entry");
            file.set_modified(old).expect("mtime");
        }
        commit(&mut w).await;
        assert!(
            entry(0).exists(),
            "an ordinary commit deleted expired entries"
        );
        let mut version = 0;
        while version % 100 != 99 {
            version = commit(&mut w).await.expect("version");
        }
        assert!(log
            .join(format!("{version:020}.checkpoint.parquet"))
            .exists());
        assert!(
            !entry(0).exists() && !entry(9).exists(),
            "the checkpoint's commit left them"
        );
        assert!(entry(10).exists(), "the checkpoint's own entry is kept");
    }

    #[tokio::test]
    async fn a_handle_updated_one_version_at_a_time_is_loaded_whole_past_the_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, mut w) = rejected_writer(dir.path()).await;
        w.write(rejected(&["2026-11-01"])).await.expect("write");
        w.commit(HashMap::new(), Vec::new()).await.expect("commit");
        let mut table = open(&path, TableKind::Rejected).await.expect("open");
        let mut replayed = Replayed::default();
        // Version 0 to 1, again and again: one version replayed each time.
        for n in 1..RELOAD_AFTER_VERSIONS {
            replayed.follow(&path, &mut table, Some(0), false).await;
            assert_eq!(replayed.0, n);
        }
        replayed.follow(&path, &mut table, Some(0), false).await;
        assert_eq!(replayed.0, 0);
        assert_eq!(table.version(), Some(1));
        assert_eq!(files_by_day(&path, &table).len(), 1);
        // No version replayed: nothing to count.
        replayed.follow(&path, &mut table, Some(1), false).await;
        assert_eq!(replayed.0, 0);
    }

    #[tokio::test]
    async fn a_snapshot_lists_the_rows_of_the_days_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, mut w) = rejected_writer(dir.path()).await;
        w.write(rejected(&["2026-10-31", "2026-11-01", "2026-11-01"]))
            .await
            .expect("write");
        w.commit(HashMap::new(), Vec::new()).await.expect("commit");
        // A second commit adds a file to a day that has one.
        w.write(rejected(&["2026-11-01", "2026-11-03", "2026-11-04"]))
            .await
            .expect("write");
        w.commit(HashMap::new(), Vec::new()).await.expect("commit");
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("day");
        let want: BTreeMap<NaiveDate, u64> =
            [(day("2026-11-01"), 3), (day("2026-11-03"), 1)].into();
        let lazy = Snapshot::open(&path, TableKind::Rejected)
            .await
            .expect("open");
        let loaded = Snapshot::from(open(&path, TableKind::Rejected).await.expect("open"));
        for s in [&lazy, &loaded] {
            assert_eq!(s.version(), Some(2));
            let rows = s.day_rows(&path, day("2026-11-01"), day("2026-11-04"));
            assert_eq!(rows.await.expect("rows"), want);
        }
        // A query over the lazy snapshot lists its own files.
        let ctx = datafusion::prelude::SessionContext::new();
        lazy.register(&ctx, "rejected").await.expect("register");
        let sql = "SELECT count(*) FROM rejected WHERE action_day >= '2026-11-01'";
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let count = batches[0].column(0).as_any().downcast_ref::<Int64Array>();
        assert_eq!(count.expect("count").value(0), 5);
        let missing = Location::Local(dir.path().join("none"));
        assert!(matches!(
            Snapshot::open(&missing, TableKind::Pulls).await,
            Err(TableError::NotATable { .. })
        ));
        assert!(Snapshot::open_current(&missing, TableKind::Periods)
            .await
            .expect("none")
            .is_none());
    }
}
