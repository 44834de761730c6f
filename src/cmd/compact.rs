//! `pullstats compact`: rewrite the small files of closed days into sorted
//! files of the target size (see `table::maintenance`), the pulls table
//! and its rejected table, one commit per day. Safe while the daemon writes.

use anyhow::Context;

use crate::cli::CompactArgs;
use crate::cmd::maintenance_tables;
use crate::table::maintenance::{self, CompactOptions, CompactReport, DaySelection};

pub async fn run(args: CompactArgs) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let options = CompactOptions {
        days: match (args.day, args.since) {
            (Some(d), _) => DaySelection::Day(d),
            (None, Some(d)) => DaySelection::Since(d),
            (None, None) => DaySelection::Closed,
        },
        target_bytes: args.target_file_size,
        today: args.today.unwrap_or_else(|| now.date_naive()),
        quiet_for: None,
        now_ms: now.timestamp_millis(),
    };
    for (path, kind) in maintenance_tables(&args.table)? {
        let mut print = |r: &CompactReport| println!("{}: {}", path.display(), describe(r));
        let reports = maintenance::compact(&path, kind, &options, &mut print)
            .await
            .with_context(|| format!("compaction of {} stopped", path.display()))?;
        if reports.is_empty() {
            println!("{}: nothing to compact", path.display());
        }
    }
    Ok(())
}

/// One line per compacted day.
pub fn describe(r: &CompactReport) -> String {
    format!(
        "{} {} files ({}) -> {} files ({}), {} rows, version {}{}",
        r.day,
        r.files_before,
        mib(r.bytes_before),
        r.files_after,
        mib(r.bytes_after),
        r.rows,
        r.version.map_or("-".to_owned(), |v| v.to_string()),
        if r.attempts > 1 {
            format!(" ({} attempts)", r.attempts)
        } else {
            String::new()
        }
    )
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
