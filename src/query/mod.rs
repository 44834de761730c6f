//! DataFusion over the pulls table: a session with the table registered as
//! `pulls`, result writers for the output formats, and the export views
//! ([`export`]).
//!
//! The table is registered through deltalake's own provider, so DataFusion
//! sees the Delta log's file list and per-file statistics and prunes
//! `action_day` partitions and files from filters.

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;

use crate::table::{self, Location, TableError, TableKind};

mod csv;
pub mod distinct;
pub mod export;
pub mod periods;
pub mod saved;
pub mod span;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("cannot register the table at {path}: {source}")]
    Register {
        path: crate::table::Location,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Sql(#[from] DataFusionError),
    #[error("cannot write results: {0}")]
    Output(String),
    #[error(transparent)]
    Version(#[from] crate::table::maintenance::MaintenanceError),
}

/// Output formats of query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row (JSON Lines).
    Json,
    /// A Parquet file (not for terminals).
    Parquet,
}

/// A DataFusion session with the table at `path` registered as `pulls`,
/// and its rejected-requests table (when there is one) as `rejected`.
pub async fn session(path: &Location) -> Result<SessionContext, QueryError> {
    session_at(path, None).await
}

/// [`session`] with the pulls table as of `version` (time travel); the
/// rejected table, versioned apart, is left out then.
pub async fn session_at(
    path: &Location,
    version: Option<u64>,
) -> Result<SessionContext, QueryError> {
    let pulls = match version {
        Some(v) => table::maintenance::open_version(path, TableKind::Pulls, v).await?,
        None => table::open(path, TableKind::Pulls).await?,
    };
    session_over(path, pulls.into(), version.is_none()).await
}

/// [`session`] over the pulls table already opened (`pulls`, the table at
/// `path`); `beside` registers the tables beside it too (`rejected` and
/// `periods`), when there are.
pub async fn session_over(
    path: &Location,
    pulls: table::Snapshot,
    beside: bool,
) -> Result<SessionContext, QueryError> {
    // DATAFUSION_* environment variables tune the engine, e.g.
    // DATAFUSION_EXECUTION_TARGET_PARTITIONS=8 (see README, `sql`).
    let config = SessionConfig::from_env()?.with_information_schema(true);
    let ctx = SessionContext::new_with_config_rt(config, runtime()?);
    ctx.register_udaf(distinct::udaf());
    register(&ctx, path, TableKind::Pulls, &pulls).await?;
    if beside {
        for (beside, kind) in [
            (table::rejected_path(path), TableKind::Rejected),
            (table::periods_path(path), TableKind::Periods),
        ] {
            register_if_present(&ctx, &beside, kind).await?;
        }
    }
    Ok(ctx)
}

/// The variable that caps the memory of a query's sorts and aggregations.
pub const MEMORY_LIMIT_VAR: &str = "PULLSTATS_QUERY_MEMORY";
/// Its default: beyond this, sorts and aggregations spill to temporary files.
pub const DEFAULT_MEMORY_LIMIT: &str = "1GiB";

/// The runtime: a memory pool of `PULLSTATS_QUERY_MEMORY` (default 1 GiB),
/// shared fairly between the operators that can spill (sorts, aggregations),
/// which write what does not fit to temporary files in `$TMPDIR`.
fn runtime() -> Result<Arc<RuntimeEnv>, DataFusionError> {
    let text = std::env::var(MEMORY_LIMIT_VAR).unwrap_or_else(|_| DEFAULT_MEMORY_LIMIT.into());
    let limit = crate::config::parse_bytes(&text)
        .map_err(|e| DataFusionError::Configuration(format!("{MEMORY_LIMIT_VAR}: {e}")))?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
        .build_arc()
}

/// Registers the table of `kind` at `path` when there is one (a derived
/// table only when it has the current schema: [`table::open_current`]), as
/// a [`table::Snapshot`]: no file is listed before a query lists its own.
pub async fn register_if_present(
    ctx: &SessionContext,
    path: &Location,
    kind: TableKind,
) -> Result<bool, QueryError> {
    let Some(table) = table::Snapshot::open_current(path, kind).await? else {
        return Ok(false);
    };
    register(ctx, path, kind, &table).await?;
    Ok(true)
}

async fn register(
    ctx: &SessionContext,
    path: &Location,
    kind: TableKind,
    table: &table::Snapshot,
) -> Result<(), QueryError> {
    table
        .register(ctx, kind.name())
        .await
        .map_err(|source| QueryError::Register {
            path: path.clone(),
            source,
        })
}

/// Plans and starts `sql`; results stream batch by batch.
pub async fn execute(
    ctx: &SessionContext,
    sql: &str,
) -> Result<SendableRecordBatchStream, QueryError> {
    let df = ctx.sql(sql).await?;
    Ok(df.execute_stream().await?)
}

/// Runs `statements` one after the other as one result stream: a statement
/// starts once the previous one is drained into the few
/// batches the reader has not taken yet, so memory is that of about two
/// statements at a time. They must all give the same columns.
pub async fn execute_in_order(
    ctx: &SessionContext,
    statements: Vec<String>,
) -> Result<SendableRecordBatchStream, QueryError> {
    let mut statements = statements.into_iter();
    let Some(first) = statements.next() else {
        return Err(QueryError::Output("no statement to run".into()));
    };
    let mut stream = execute(ctx, &first).await?;
    let schema = stream.schema();
    let ctx = ctx.clone();
    // Computed on the runtime's workers, a few batches ahead of the reader:
    // while the writer encodes a statement's last batches, the next
    // statement's sort runs (memory: about two statements at a time).
    let mut ahead = RecordBatchReceiverStreamBuilder::new(schema, BATCHES_AHEAD);
    let tx = ahead.tx();
    ahead.spawn(async move {
        loop {
            while let Some(batch) = stream.next().await {
                if tx.send(batch).await.is_err() {
                    return Ok(()); // the reader has gone
                }
            }
            let Some(sql) = statements.next() else {
                return Ok(());
            };
            stream = execute(&ctx, &sql)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        }
    });
    Ok(ahead.build())
}

/// Batches [`execute_in_order`] computes before the reader takes them.
const BATCHES_AHEAD: usize = 4;

/// Writes a result stream in `format`; `progress` is called with the rows
/// written so far. CSV, JSON and Parquet stream with bounded memory; the text
/// table needs every row to align columns.
pub async fn write_results(
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    out: &mut (impl Write + Send),
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, QueryError> {
    let io = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    let rows;
    match format {
        OutputFormat::Table => {
            let schema = stream.schema();
            let mut batches: Vec<RecordBatch> = Vec::new();
            rows = drain(&mut stream, &|_| (), |b| {
                batches.push(b.clone());
                Ok(())
            })
            .await?;
            let text = if batches.is_empty() {
                arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(schema)])
            } else {
                arrow::util::pretty::pretty_format_batches(&batches)
            }
            .map_err(|e| io(&e))?;
            writeln!(out, "{text}").map_err(|e| io(&e))?;
        }
        OutputFormat::Csv => {
            let mut w = csv::CsvWriter::new(out);
            rows = drain(&mut stream, progress, |b| {
                w.write(b).map_err(|e| e.to_string())
            })
            .await?;
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(out);
            rows = drain(&mut stream, progress, |b| {
                w.write(b).map_err(|e| e.to_string())
            })
            .await?;
            w.finish().map_err(|e| io(&e))?;
        }
        OutputFormat::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut w = parquet::arrow::ArrowWriter::try_new(out, stream.schema(), Some(props))
                .map_err(|e| io(&e))?;
            rows = drain(&mut stream, progress, |b| {
                w.write(b).map_err(|e| e.to_string())
            })
            .await?;
            w.close().map_err(|e| io(&e))?;
        }
    }
    Ok(rows)
}

/// Hands every batch of `stream` to `write` (whose error is an output
/// error), reporting the running row count
/// to `progress`; returns the rows seen.
async fn drain(
    stream: &mut SendableRecordBatchStream,
    progress: &(dyn Fn(u64) + Sync),
    mut write: impl FnMut(&RecordBatch) -> Result<(), String>,
) -> Result<u64, QueryError> {
    let mut rows = 0u64;
    while let Some(b) = stream.next().await {
        let b = b?;
        rows += b.num_rows() as u64;
        write(&b).map_err(QueryError::Output)?;
        progress(rows);
    }
    Ok(rows)
}
