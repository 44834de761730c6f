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
//! ```
//!
//! - [`pipeline`]: the synchronous stages (decode, sessionize, enrich), pure
//!   `&mut self` calls testable without an async runtime.
//! - [`table`]: the Delta table (create, stream Parquet, commit).
//! - [`query`]: DataFusion sessions over the table.
//! - [`gen`]: the deterministic traffic generator behind demos, tests and
//!   benchmarks.
//! - [`cmd`]: one module per subcommand; [`cli`] their flags.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod event;
pub mod gen;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod schema;
pub mod table;
