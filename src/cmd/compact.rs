//! `pullstats compact`: rewrite the small files of closed days into sorted
//! files of the target size (see `table::maintenance`), the pulls table
//! and the tables beside it, one commit per day; then bring the periods
//! table up to date (`query::periods`). Safe while the daemon writes.

use anyhow::Context;

use super::Report;
use crate::cli::CompactArgs;
use crate::query::periods;
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
        open_days: false,
    };
    let mut report = Report::default();
    for (path, kind) in maintenance::tables(&args.table).await? {
        let mut print = |r: &CompactReport| report.line(format_args!("{path}: {r}"));
        let reports = maintenance::compact(&path, kind, &options, &mut print)
            .await
            .with_context(|| format!("compaction of {} stopped", path))?;
        if reports.is_empty() {
            report.line(format_args!("{path}: nothing to compact"));
        }
    }
    let at = crate::table::periods_path(&args.table);
    let mut computed =
        |day: chrono::NaiveDate| report.line(format_args!("{at}: periods from {day} computed"));
    let periods = periods::update(&args.table, options.today, None, &mut computed)
        .await
        .with_context(|| format!("updating {at} stopped"))?;
    report.line(format_args!(
        "{at}: {} complete periods, {} first days computed again",
        periods.periods,
        periods.computed_days.len()
    ));
    report.finish()
}
