//! `pullstats vacuum`: delete the data files that no version within the
//! retention period needs, and files no commit ever referenced (epochs cut
//! short by a crash), from the pulls table and its rejected table.

use std::io::Write;

use anyhow::Context;

use crate::cli::VacuumArgs;
use crate::table::maintenance;

pub async fn run(args: VacuumArgs) -> anyhow::Result<()> {
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
        // Written, not printed: a reader that stops early (`| head`) is an
        // error of one line, not a panic.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}: {verb} {} files", path, r.files.len())
            .and_then(|()| {
                r.files
                    .iter()
                    .filter(|_| r.dry_run)
                    .try_for_each(|f| writeln!(out, "  {f}"))
            })
            .context("cannot write to stdout")?;
    }
    Ok(())
}
