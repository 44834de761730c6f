//! The Delta table: open or create it, and write actions into it with one
//! atomic commit per write session.
//!
//! A [`TableWriter`] streams record batches into Parquet files (partitioned
//! by `action_day`) as it goes, sealing the open files every
//! [`MAX_WINDOW_ROWS`] so memory stays bounded whatever the input size, and
//! commits every file in one Delta commit at the end: a reader sees all of an
//! ingest or none of it, and a failed ingest leaves no partial data behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use url::Url;

use crate::schema::{rejected_schema, table_schema, PARTITION_COLUMN};

/// Rows written before the open Parquet files are sealed (bounded memory).
pub const MAX_WINDOW_ROWS: usize = 2_000_000;
/// Rows per Parquet row group: large enough for good compression and
/// statistics, small enough that pruning by row group still helps.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// The tables pullstats keeps: the pulls table at `DIR`, and beside it
/// (`DIR.rejected`) the counts of requests that formed no action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Pulls,
    Rejected,
}

impl TableKind {
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Pulls => "pulls",
            TableKind::Rejected => "rejected",
        }
    }

    fn schema(self) -> arrow::datatypes::SchemaRef {
        match self {
            TableKind::Pulls => table_schema(),
            TableKind::Rejected => rejected_schema(),
        }
    }

    fn comment(self) -> &'static str {
        match self {
            TableKind::Pulls => "pullstats: one row per pull action (see schemas/table.json)",
            TableKind::Rejected => {
                "pullstats: counts of requests that formed no action, per day, repository, status and reason"
            }
        }
    }
}

/// A path beside the table directory: `<table><suffix>` (dead letters, the
/// rejected table).
pub fn beside(table: &Path, suffix: &str) -> PathBuf {
    let mut name = table
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "pulls".into());
    name.push(suffix);
    table.with_file_name(name)
}

/// Where the rejected-requests table of the pulls table at `table` lives.
pub fn rejected_path(table: &Path) -> PathBuf {
    beside(table, ".rejected")
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot use {path} as a table location: {reason}")]
    Location { path: PathBuf, reason: String },
    #[error("no {kind} table at {path} (run `pullstats ingest` first)")]
    NotATable { path: PathBuf, kind: &'static str },
    #[error("table at {path}: {source}")]
    Delta {
        path: PathBuf,
        #[source]
        source: DeltaTableError,
    },
    #[error("table at {path} does not have the {kind} schema: {reason}")]
    Schema {
        path: PathBuf,
        kind: &'static str,
        reason: String,
    },
}

fn delta(path: &Path) -> impl FnOnce(DeltaTableError) -> TableError + '_ {
    move |source| TableError::Delta {
        path: path.to_owned(),
        source,
    }
}

/// The directory as a `file://` URL, creating it when `create` is set.
pub fn table_url(path: &Path, create: bool) -> Result<Url, TableError> {
    let location = |reason: String| TableError::Location {
        path: path.to_owned(),
        reason,
    };
    if create {
        std::fs::create_dir_all(path).map_err(|e| location(e.to_string()))?;
    }
    let abs = std::fs::canonicalize(path).map_err(|e| location(e.to_string()))?;
    if !abs.is_dir() {
        return Err(location("not a directory".into()));
    }
    Url::from_directory_path(&abs).map_err(|()| location("not an absolute path".into()))
}

/// Opens the table of `kind` at `path`; an error when there is none.
pub async fn open(path: &Path, kind: TableKind) -> Result<DeltaTable, TableError> {
    if !path.join("_delta_log").is_dir() {
        return Err(TableError::NotATable {
            path: path.to_owned(),
            kind: kind.name(),
        });
    }
    let url = table_url(path, false)?;
    let table = deltalake::open_table(url).await.map_err(delta(path))?;
    check_schema(path, kind, &table)?;
    Ok(table)
}

/// Opens the table of `kind` at `path`, creating an empty one when missing.
pub async fn open_or_create(path: &Path, kind: TableKind) -> Result<DeltaTable, TableError> {
    if path.join("_delta_log").is_dir() {
        return open(path, kind).await;
    }
    let url = table_url(path, true)?;
    // Built without loading: loading an empty location makes deltalake log
    // a misleading ERROR ("No files in log segment") before we create it.
    let table = deltalake::DeltaTableBuilder::from_url(url)
        .and_then(|b| b.build())
        .map_err(delta(path))?;
    let schema: StructType = kind
        .schema()
        .as_ref()
        .try_into_kernel()
        .map_err(|e| delta(path)(DeltaTableError::from(e)))?;
    table
        .create()
        .with_table_name(kind.name())
        .with_comment(kind.comment())
        .with_columns(schema.fields().cloned())
        .with_partition_columns([PARTITION_COLUMN])
        .with_save_mode(SaveMode::ErrorIfExists)
        .await
        .map_err(delta(path))
}

fn check_schema(path: &Path, kind: TableKind, table: &DeltaTable) -> Result<(), TableError> {
    let snapshot = table.snapshot().map_err(delta(path))?;
    let names: Vec<String> = snapshot
        .schema()
        .fields()
        .map(|f| f.name().clone())
        .collect();
    let want: Vec<String> = kind
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    if names != want {
        return Err(TableError::Schema {
            path: path.to_owned(),
            kind: kind.name(),
            reason: format!("columns are {names:?}"),
        });
    }
    Ok(())
}

/// Streams batches into a table; see the module docs.
pub struct TableWriter {
    path: PathBuf,
    table: DeltaTable,
    writer: RecordBatchWriter,
    window_rows: usize,
    adds: Vec<Action>,
}

impl TableWriter {
    pub fn new(path: &Path, table: DeltaTable) -> Result<Self, TableError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer = RecordBatchWriter::for_table(&table)
            .map_err(delta(path))?
            .with_writer_properties(props);
        Ok(Self {
            path: path.to_owned(),
            table,
            writer,
            window_rows: 0,
            adds: Vec::new(),
        })
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), TableError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        self.writer.write(batch).await.map_err(delta(&self.path))?;
        self.window_rows += n;
        if self.window_rows >= MAX_WINDOW_ROWS {
            self.seal().await?;
        }
        Ok(())
    }

    async fn seal(&mut self) -> Result<(), TableError> {
        let adds = self.writer.flush().await.map_err(delta(&self.path))?;
        self.adds.extend(adds.into_iter().map(Action::Add));
        self.window_rows = 0;
        Ok(())
    }

    /// Commits every file written, with `metadata` recorded in the commit
    /// info. Returns the new table version, or `None` when nothing was
    /// written.
    pub async fn commit(
        mut self,
        metadata: HashMap<String, Value>,
    ) -> Result<Option<u64>, TableError> {
        self.seal().await?;
        if self.adds.is_empty() {
            return Ok(None);
        }
        let path = self.path.clone();
        let snapshot = self.table.snapshot().map_err(delta(&path))?;
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(vec![PARTITION_COLUMN.to_owned()]),
            predicate: None,
        };
        let finalized = CommitBuilder::from(CommitProperties::default().with_metadata(metadata))
            .with_actions(std::mem::take(&mut self.adds))
            .build(Some(snapshot), self.table.log_store(), operation)
            .await
            .map_err(delta(&path))?;
        Ok(Some(finalized.version()))
    }
}
