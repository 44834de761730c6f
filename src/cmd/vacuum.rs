//! `pullstats vacuum`: delete the data files that no version within the
//! retention period needs, and files no commit ever referenced (epochs cut
//! short by a crash), from the pulls table and its rejected table.

use anyhow::Context;

use super::Report;
use crate::cli::VacuumArgs;
use crate::table::maintenance;

pub async fn run(args: VacuumArgs) -> anyhow::Result<()> {
    let mut report = Report::default();
    for (path, kind) in maintenance::tables(&args.table).await? {
        let r = maintenance::vacuum(&path, kind, args.retention, args.force, args.dry_run)
            .await
            .with_context(|| {
                format!(
                    "vacuum of {} failed (a retention below the table's needs --force)",
                    path
                )
            })?;
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        report.line(format_args!("{path}: {verb} {} files", r.files.len()));
        for f in r.files.iter().filter(|_| r.dry_run) {
            report.line(format_args!("  {f}"));
        }
    }
    report.finish()
}
