//! One module per subcommand: each exposes `run(args)` and owns the
//! command's user-facing output; the work itself lives in the library
//! modules.

pub mod compact;
pub mod daemon;
pub mod demo;
pub mod export;
pub mod gen;
pub mod info;
pub mod ingest;
pub mod produce;
pub mod query;
pub mod read_file;
pub mod read_topic;
pub mod retain;
pub mod shell;
pub mod sql;
pub mod vacuum;

use std::path::{Path, PathBuf};

use crate::table::{self, TableKind};

/// The tables maintenance commands work on: the pulls table at `path`, and
/// its rejected table when there is one.
pub fn maintenance_tables(path: &Path) -> anyhow::Result<Vec<(PathBuf, TableKind)>> {
    if !path.join("_delta_log").is_dir() {
        anyhow::bail!(
            "no pulls table at {} (run `pullstats ingest` first)",
            path.display()
        );
    }
    let mut tables = vec![(path.to_owned(), TableKind::Pulls)];
    let rejected = table::rejected_path(path);
    if rejected.join("_delta_log").is_dir() {
        tables.push((rejected, TableKind::Rejected));
    }
    Ok(tables)
}
