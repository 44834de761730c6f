//! pullstats: pull analytics for container registries.
//!
//! # Architecture
//!
//! ```text
//!  file / stdin ──▶ source ──▶ decode ──▶ sessionize ──▶ enrich ──▶ batch ──▶ table (Delta Lake)
//!   (JSON lines)     │           │            │             │                    │
//!                    │           ▼            ▼             ▼                    ▼
//!                    │      dead letters   late/evicted  ip_hash, client    Parquet by action_day,
//!                    │      (reason, pos)  counted       (IP never stored)  one atomic commit
//!                    ▼
//!               progress, summary line                      query (DataFusion SQL over `pulls`)
//!
//!  Kafka ──▶ stream::Source ──▶ stream engine: the same pipeline, one sessionizer lane per partition
//!  (topic)    (KafkaSource)       │   epochs: state files, then one commit per table with each lane's
//!                                 │   offset and state generation (txn) ──▶ table, exactly once
//!                                 ├── dead letters ──▶ <topic>.dlq
//!                                 └── enrichment reloads (interval, SIGHUP), swapped between messages
//! ```
//!
//! - [`pipeline`]: the synchronous stages (decode, sessionize, enrich), pure
//!   `&mut self` calls testable without an async runtime.
//! - [`stream`]: the long-running engine: epochs, commits with offsets and
//!   saved sessions, resume from the table, behind a [`stream::Source`]
//!   (Kafka today); enrichment reloads.
//! - [`table`]: the Delta table (create, stream Parquet, commit).
//! - [`query`]: DataFusion sessions over the table.
//! - [`gen`]: the deterministic traffic generator behind demos, tests and
//!   benchmarks.
//! - [`cmd`]: one module per subcommand; [`cli`] their flags.

//!
//! Without the default feature `engine` only the parsers of untrusted input
//! are built (the modules below that are not marked engine-only, and the
//! listed submodules of the others): what the fuzz targets link.

#[cfg(feature = "engine")]
pub mod api;
#[cfg(feature = "engine")]
pub mod cli;
#[cfg(feature = "engine")]
pub mod cmd;
#[cfg(feature = "engine")]
pub mod config;
pub mod event;
pub mod gen;
#[cfg(feature = "engine")]
pub mod http;
#[cfg(feature = "engine")]
pub mod metrics;
pub mod pipeline;
#[cfg(feature = "engine")]
pub mod query;
pub mod schema;
#[cfg(feature = "engine")]
pub mod serve;
#[cfg(feature = "engine")]
pub mod stream;
#[cfg(feature = "engine")]
pub mod table;
pub mod units;

/// The parsers of the engine-only modules.
#[cfg(not(feature = "engine"))]
pub mod api {
    pub mod params;
}
#[cfg(not(feature = "engine"))]
pub mod query {
    pub mod saved;
    pub mod span;
}
#[cfg(not(feature = "engine"))]
pub mod serve {
    pub mod receive;
    pub mod tokens;
}
