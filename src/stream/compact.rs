//! `--auto-compact`: compaction beside the engine, in the same process.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::query::periods;
use crate::table::maintenance::{self, CompactOptions, CompactReport, DaySelection};

/// Every `interval`, compacts the closed days that no file reached for
/// `interval` (the pulls table and those beside it), then brings the
/// periods table up to date (`query::periods`). Compaction commits change
/// no data, so they never conflict with the epochs' appends. Runs until
/// aborted; a compaction cut short commits nothing (its files are orphans
/// that `pullstats vacuum` deletes).
pub async fn auto_compact(
    table: crate::table::Location,
    interval: Duration,
    target_bytes: u64,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let now = chrono::Utc::now();
        let options = CompactOptions {
            days: DaySelection::Closed,
            target_bytes,
            today: now.date_naive(),
            quiet_for: Some(interval),
            now_ms: now.timestamp_millis(),
        };
        let tables = match maintenance::tables(&table).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("auto-compaction skipped: {e}");
                continue;
            }
        };
        for (path, kind) in tables {
            let mut done = |r: &CompactReport| {
                metrics.compacted_days.fetch_add(1, Ordering::Relaxed);
                tracing::info!(table = %path, "compacted {r}");
            };
            if let Err(e) = maintenance::compact(&path, kind, &options, &mut done).await {
                tracing::warn!(table = %path, "auto-compaction failed: {e}; trying again in {interval:?}");
            }
        }
        let mut computed = |day| tracing::debug!(table = %table, "periods from {day} computed");
        let quiet_since = options.now_ms - i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        match periods::update(&table, options.today, Some(quiet_since), &mut computed).await {
            Ok(r) if !r.computed_days.is_empty() => {
                tracing::info!(table = %table, "periods computed for {} first days", r.computed_days.len());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(table = %table, "periods update failed: {e}; trying again in {interval:?}")
            }
        }
    }
}
