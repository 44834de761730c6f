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
use arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};

use crate::table::{self, Location, TableError, TableKind};

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

/// Timestamps in CSV: RFC 3339, UTC, microseconds.
const CSV_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// `batch` with its UTC microsecond timestamps as text in
/// [`CSV_TIMESTAMP_FORMAT`], written digit by digit: arrow's CSV writer
/// parses the format string again for every value, which was an eighth of
/// a raw export's time. Other columns, and timestamps of another unit or
/// zone, are left to the writer.
fn csv_timestamps(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    use arrow::array::{ArrayRef, AsArray, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};

    let is_utc = |f: &Field| {
        matches!(f.data_type(), DataType::Timestamp(TimeUnit::Microsecond, Some(tz))
            if matches!(tz.as_ref(), "UTC" | "+00:00" | "Z"))
    };
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| is_utc(f)) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    for (f, column) in schema.fields().iter().zip(batch.columns()) {
        if !is_utc(f) {
            fields.push(Arc::clone(f));
            columns.push(Arc::clone(column));
            continue;
        }
        let ts = column.as_primitive::<TimestampMicrosecondType>();
        let mut text = StringBuilder::with_capacity(ts.len(), ts.len() * 27);
        for v in ts.iter() {
            match v {
                Some(micros) if !append_rfc3339_micros(micros, &mut text) => {
                    return Err(ArrowError::CastError(format!(
                        "{}: {micros} µs since 1970 is not a date that can be written",
                        f.name()
                    )));
                }
                Some(_) => {}
                None => text.append_null(),
            }
        }
        fields.push(Arc::new(Field::new(
            f.name(),
            DataType::Utf8,
            f.is_nullable(),
        )));
        columns.push(Arc::new(text.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Appends `micros` (since the epoch, UTC) to `out` as
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as chrono formats [`CSV_TIMESTAMP_FORMAT`]
/// (which it falls back to outside years 0–9999); false, appending nothing,
/// beyond chrono's range.
fn append_rfc3339_micros(micros: i64, out: &mut arrow::array::StringBuilder) -> bool {
    use chrono::{Datelike, Timelike};
    let Some(t) = chrono::DateTime::from_timestamp_micros(micros) else {
        return false;
    };
    let Ok(year @ 0..=9999) = u32::try_from(t.year()) else {
        out.append_value(t.format(CSV_TIMESTAMP_FORMAT).to_string());
        return true;
    };
    let mut s = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            s[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 6, t.timestamp_subsec_micros());
    // ASCII digits and punctuation only.
    out.append_value(std::str::from_utf8(&s).unwrap_or_default());
    true
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
    session_over(path, pulls, version.is_none()).await
}

/// [`session`] over the pulls table already opened (`pulls`, the table at
/// `path`); `beside` registers the tables beside it too (`rejected` and
/// `periods`), when there are.
pub async fn session_over(
    path: &Location,
    pulls: deltalake::DeltaTable,
    beside: bool,
) -> Result<SessionContext, QueryError> {
    // DATAFUSION_* environment variables tune the engine, e.g.
    // DATAFUSION_EXECUTION_TARGET_PARTITIONS=8 (see README, `sql`).
    let config = SessionConfig::from_env()?.with_information_schema(true);
    let ctx = SessionContext::new_with_config_rt(config, runtime()?);
    ctx.register_udaf(distinct::udaf());
    register(&ctx, path, TableKind::Pulls, pulls).await?;
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
/// table only when it has the current schema: [`table::open_current`]).
pub async fn register_if_present(
    ctx: &SessionContext,
    path: &Location,
    kind: TableKind,
) -> Result<bool, QueryError> {
    let Some(table) = table::open_current(path, kind).await? else {
        return Ok(false);
    };
    register(ctx, path, kind, table).await?;
    Ok(true)
}

async fn register(
    ctx: &SessionContext,
    path: &Location,
    kind: TableKind,
    table: deltalake::DeltaTable,
) -> Result<(), QueryError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| QueryError::Register {
        path: path.clone(),
        source: e,
    };
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| failed(Box::new(e)))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| failed(Box::new(e)))?;
    ctx.register_table(kind.name(), provider)
        .map_err(|e| failed(Box::new(e)))?;
    Ok(())
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
/// starts only once the previous one is drained, so memory is that of one
/// statement at a time. They must all give the same columns.
pub async fn execute_in_order(
    ctx: &SessionContext,
    statements: Vec<String>,
) -> Result<SendableRecordBatchStream, QueryError> {
    let mut statements = statements.into_iter();
    let Some(first) = statements.next() else {
        return Err(QueryError::Output("no statement to run".into()));
    };
    let first = execute(ctx, &first).await?;
    let schema = first.schema();
    let ctx = ctx.clone();
    let rest = futures::stream::iter(statements)
        .then(move |sql| {
            let ctx = ctx.clone();
            async move {
                execute(&ctx, &sql)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            }
        })
        .try_flatten();
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        schema,
        first.chain(rest),
    )))
}

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
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .with_timestamp_tz_format(CSV_TIMESTAMP_FORMAT.to_owned())
                .build(out);
            rows = drain(&mut stream, progress, |b| {
                csv_timestamps(b)
                    .and_then(|b| w.write(&b))
                    .map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, StringBuilder, TimestampMicrosecondArray};
    use proptest::prelude::*;

    fn fast(micros: i64) -> Option<String> {
        let mut b = StringBuilder::new();
        append_rfc3339_micros(micros, &mut b).then(|| b.finish().value(0).to_owned())
    }

    fn chrono(micros: i64) -> Option<String> {
        chrono::DateTime::from_timestamp_micros(micros)
            .map(|t| t.format(CSV_TIMESTAMP_FORMAT).to_string())
    }

    proptest! {
        /// Digit by digit, the same text as chrono's formatting, before
        /// 1970, in years 0–9999 and beyond.
        #[test]
        fn timestamps_are_written_as_chrono_formats_them(
            micros in prop_oneof![
                -62_167_219_200_000_000i64..253_402_300_800_000_000,
                any::<i64>(),
            ]
        ) {
            prop_assert_eq!(fast(micros), chrono(micros));
        }
    }

    #[rstest::rstest]
    #[case(0, "1970-01-01T00:00:00.000000Z")]
    #[case(-1, "1969-12-31T23:59:59.999999Z")]
    #[case(1_792_972_799_999_000, "2026-10-25T23:59:59.999000Z")]
    fn timestamps_known(#[case] micros: i64, #[case] text: &str) {
        assert_eq!(fast(micros).as_deref(), Some(text));
    }

    #[test]
    fn only_utc_microsecond_columns_become_text() {
        let utc = TimestampMicrosecondArray::from(vec![Some(0), None]).with_timezone("UTC");
        let paris =
            TimestampMicrosecondArray::from(vec![Some(0), None]).with_timezone("Europe/Paris");
        let batch = RecordBatch::try_from_iter([
            ("utc", Arc::new(utc) as arrow::array::ArrayRef),
            ("paris", Arc::new(paris) as arrow::array::ArrayRef),
        ])
        .expect("batch");
        let out = csv_timestamps(&batch).expect("convert");
        let text = out.column(0).as_string::<i32>();
        assert_eq!(text.value(0), "1970-01-01T00:00:00.000000Z");
        assert!(text.is_null(1));
        assert_eq!(out.column(1).data_type(), batch.column(1).data_type());
        let beyond = TimestampMicrosecondArray::from(vec![i64::MAX]).with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([("t", Arc::new(beyond) as arrow::array::ArrayRef)])
            .expect("batch");
        assert!(csv_timestamps(&batch).is_err());
    }
}
