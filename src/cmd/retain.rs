//! `pullstats retain --keep 13m`: remove the days before the retention
//! window from the pulls table and its rejected table (whole partitions,
//! one commit each). Their files stay on disk, for time travel, until
//! `pullstats vacuum` deletes them after the Delta retention period.

use anyhow::Context;

use super::Report;
use crate::cli::RetainArgs;
use crate::table::maintenance;

pub async fn run(args: RetainArgs) -> anyhow::Result<()> {
    let today = args
        .today
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let first_kept = args.keep.first_kept_day(today);
    let mut report = Report::default();
    for (path, kind) in maintenance::tables(&args.table).await? {
        let r = maintenance::retain(&path, kind, first_kept, args.dry_run)
            .await
            .with_context(|| format!("retention of {} failed", path))?;
        let days = match (r.days.first(), r.days.last()) {
            (Some(a), Some(b)) if a == b => a.clone(),
            (Some(a), Some(b)) => format!("{a} .. {b}"),
            _ => "no day".to_owned(),
        };
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        report.line(format_args!(
            "{}: keeping {} and later; {verb} {} ({} days, {} files, {} rows){}",
            path,
            r.first_kept_day,
            days,
            r.days.len(),
            r.files,
            r.rows,
            r.version
                .map_or(String::new(), |v| format!(", version {v}"))
        ));
    }
    report.finish()
}
