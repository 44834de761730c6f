//! What `pullstats info` prints about a table: versions, files and sizes
//! per day, the newest checkpoint, and the Kafka offsets and session-state
//! generations the daemon recorded.

use std::collections::BTreeMap;

use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, DeltaTableError, ObjectStore};
use futures::StreamExt;
use object_store::ObjectStoreExt as _;
use serde::Serialize;

use super::maintenance::{data_files, is_small, MaintenanceError, MIN_SMALL_FILES};
use super::sessions::SessionStore;
use super::{delta, offset_app_id, state_app_id, txn_version, Location, TableKind};

/// One Kafka partition's progress as the table records it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionProgress {
    pub topic: String,
    pub partition: i32,
    pub next_offset: Option<i64>,
    pub sessions_generation: Option<i64>,
}

/// One day's share of the table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DayInfo {
    pub files: usize,
    pub small_files: usize,
    pub bytes: u64,
    pub rows: u64,
}

/// What `pullstats info` reports about one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    /// The location as given (a path or a URL; never credentials).
    pub table: String,
    pub kind: &'static str,
    pub version: u64,
    pub last_commit_ms: Option<i64>,
    pub last_operation: Option<String>,
    pub last_checkpoint: Option<u64>,
    /// How long log entries are kept (`delta.logRetentionDuration`), and
    /// whether the table sets it (Delta's default, 30 days, otherwise).
    pub log_retention_hours: u64,
    pub log_retention_set: bool,
    pub files: usize,
    pub small_files: usize,
    pub bytes: u64,
    pub rows: u64,
    pub days: BTreeMap<String, DayInfo>,
    pub kafka: Vec<PartitionProgress>,
}

/// Reads what [`TableInfo`] holds; small files are those compaction would
/// rewrite at `target_bytes` (once their day is closed).
pub async fn info(
    path: &Location,
    kind: TableKind,
    target_bytes: u64,
) -> Result<TableInfo, MaintenanceError> {
    let table = super::open(path, kind).await?;
    let files = data_files(path, &table)?;
    let mut days: BTreeMap<String, DayInfo> = BTreeMap::new();
    for f in &files {
        let d = days.entry(f.day.clone()).or_default();
        d.files += 1;
        d.small_files += usize::from(is_small(f.bytes, target_bytes));
        d.bytes += f.bytes;
        d.rows += f.rows.unwrap_or(0);
    }
    // Only the small files compaction would rewrite count.
    for d in days.values_mut() {
        if d.small_files < MIN_SMALL_FILES {
            d.small_files = 0;
        }
    }
    let last = table
        .history(Some(1))
        .next()
        .await
        .transpose()
        .ok()
        .flatten();
    let store = table.log_store().object_store(None);
    let config = table.snapshot().map_err(delta(path))?.table_config();
    Ok(TableInfo {
        table: path.to_string(),
        kind: kind.name(),
        version: table.version().unwrap_or(0),
        last_commit_ms: last.as_ref().and_then(|c| c.timestamp),
        last_operation: last.and_then(|c| c.operation),
        last_checkpoint: last_checkpoint(&*store).await,
        log_retention_hours: TablePropertiesExt::log_retention_duration(config).as_secs() / 3600,
        log_retention_set: config.log_retention_duration.is_some(),
        files: files.len(),
        small_files: days.values().map(|d| d.small_files).sum(),
        bytes: days.values().map(|d| d.bytes).sum(),
        rows: days.values().map(|d| d.rows).sum(),
        days,
        kafka: kafka_progress(path, &table, &*store).await?,
    })
}

/// The version of the newest checkpoint (`_delta_log/_last_checkpoint`);
/// `None` when there is none or it cannot be read.
pub(super) async fn last_checkpoint(store: &dyn ObjectStore) -> Option<u64> {
    let file = deltalake::Path::from("_delta_log/_last_checkpoint");
    let bytes = store.get(&file).await.ok()?.bytes().await.ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("version")?
        .as_u64()
}

/// The Kafka partitions the daemon ever wrote into the table: those with a
/// session-state directory, with what the table's offsets say.
async fn kafka_progress(
    path: &Location,
    table: &DeltaTable,
    store: &dyn ObjectStore,
) -> Result<Vec<PartitionProgress>, MaintenanceError> {
    let mut out = Vec::new();
    let pairs = SessionStore::partitions(store)
        .await
        .map_err(|e| delta(path)(DeltaTableError::from(e)))?;
    for (topic, partition) in pairs {
        let txn = |id| txn_version(table, id);
        out.push(PartitionProgress {
            next_offset: txn(offset_app_id(&topic, partition))
                .await
                .map_err(delta(path))?,
            sessions_generation: txn(state_app_id(&topic, partition))
                .await
                .map_err(delta(path))?,
            topic,
            partition,
        });
    }
    Ok(out)
}
