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

pub mod api;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod event;
pub mod gen;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod schema;
pub mod serve;
pub mod stream;
pub mod table;
