//! One module per subcommand: each exposes `run(args)` and owns the
//! command's user-facing output; the work itself lives in the library
//! modules.

pub mod daemon;
pub mod demo;
pub mod export;
pub mod gen;
pub mod ingest;
pub mod produce;
pub mod query;
pub mod shell;
pub mod sql;
