//! `--auto-compact`: compaction beside the engine, in the same process.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::AutoCompactArgs;
use crate::metrics::Metrics;
use crate::query::periods;
use crate::table::maintenance::{self, CompactOptions, CompactReport, DaySelection};

/// The `--auto-compact` task beside a writer of `table`, when asked for;
/// it runs until aborted.
pub fn spawn(
    args: &AutoCompactArgs,
    table: &crate::table::Location,
    metrics: Arc<Metrics>,
) -> Option<tokio::task::JoinHandle<()>> {
    args.auto_compact.then(|| {
        tokio::spawn(auto_compact(
            table.clone(),
            args.auto_compact_interval,
            args.target_file_size,
            metrics,
        ))
    })
}

/// Every `interval`, compacts the closed days that no file reached for
/// `interval` and the small files of the open days (today, and later days
/// a skewed clock wrote to), in the pulls table and those beside it; then
/// brings the periods table up to date (`query::periods`). The open day
/// gets a file per commit, and a commit costs more the more files are
/// live, so it is merged at every pass rather than once it is over; it
/// stays small until its merged file passes half the target size, so each
/// pass rewrites at most that much. Compaction commits change no data, so
/// they never conflict with the epochs' appends. Runs until aborted; a
/// compaction cut short commits nothing (its files are orphans that
/// `pullstats vacuum` deletes).
async fn auto_compact(
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
            open_days: true,
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
