//! The writer task: Parquet encoding and Delta commits, off the engine
//! thread. The engine sends batches as they fill and one `Commit` per
//! epoch; a write that failed fails the next commit, so an epoch never
//! commits with a batch missing.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::DeltaTable;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::StreamError;
use crate::table::{TableError, TableWriter};

/// Requests queued between the engine and the writer.
const WRITER_QUEUE: usize = 4;

/// Requests to the writer task.
pub(super) enum WriterCmd {
    Pulls(RecordBatch),
    Rejected(RecordBatch),
    Commit {
        pulls_txns: Vec<Transaction>,
        rejected_txns: Vec<Transaction>,
        metadata: HashMap<String, Value>,
        reply: oneshot::Sender<Result<Option<u64>, CommitFailure>>,
    },
    /// Drop uncommitted files and continue from these tables.
    Rebase {
        pulls: Box<DeltaTable>,
        rejected: Box<DeltaTable>,
        reply: oneshot::Sender<Result<(), StreamError>>,
    },
}

#[derive(Debug)]
pub(super) enum CommitFailure {
    /// Another writer committed one of our lanes: we no longer own it.
    Conflict(TableError),
    Other(StreamError),
}

/// Starts the writer task on the current runtime.
pub(super) fn spawn(
    pulls: TableWriter,
    rejected: TableWriter,
) -> (mpsc::Sender<WriterCmd>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(WRITER_QUEUE);
    (tx, tokio::spawn(writer_task(pulls, rejected, rx)))
}

async fn writer_task(
    mut pulls: TableWriter,
    mut rejected: TableWriter,
    mut rx: mpsc::Receiver<WriterCmd>,
) {
    let mut failed: Option<StreamError> = None;
    let write_error = |table| {
        move |source| StreamError::Write {
            table,
            source: Box::new(source),
        }
    };
    while let Some(cmd) = rx.recv().await {
        match cmd {
            WriterCmd::Pulls(batch) if failed.is_none() => {
                failed = pulls.write(batch).await.err().map(write_error("pulls"));
            }
            WriterCmd::Rejected(batch) if failed.is_none() => {
                failed = rejected
                    .write(batch)
                    .await
                    .err()
                    .map(write_error("rejected"));
            }
            WriterCmd::Pulls(_) | WriterCmd::Rejected(_) => {}
            WriterCmd::Commit {
                pulls_txns,
                rejected_txns,
                metadata,
                reply,
            } => {
                let result = match failed.take() {
                    Some(e) => Err(CommitFailure::Other(e)),
                    None => {
                        commit_both(
                            &mut pulls,
                            &mut rejected,
                            pulls_txns,
                            rejected_txns,
                            metadata,
                        )
                        .await
                    }
                };
                if result.is_err() {
                    let _ = pulls.abort().await;
                    let _ = rejected.abort().await;
                }
                let _ = reply.send(result);
            }
            WriterCmd::Rebase {
                pulls: p,
                rejected: r,
                reply,
            } => {
                failed = None;
                let result = async {
                    pulls.rebase(*p).await.map_err(write_error("pulls"))?;
                    rejected.rebase(*r).await.map_err(write_error("rejected"))
                }
                .await;
                let _ = reply.send(result);
            }
        }
    }
}

/// The rejected table first, then the pulls table (whose offsets say where
/// to resume).
async fn commit_both(
    pulls: &mut TableWriter,
    rejected: &mut TableWriter,
    pulls_txns: Vec<Transaction>,
    rejected_txns: Vec<Transaction>,
    metadata: HashMap<String, Value>,
) -> Result<Option<u64>, CommitFailure> {
    let classify = |table: &'static str, read_version: Option<u64>| {
        move |source: TableError| {
            if source.is_conflict() {
                CommitFailure::Conflict(source)
            } else {
                CommitFailure::Other(StreamError::Commit {
                    table,
                    read_version,
                    source: Box::new(source),
                })
            }
        }
    };
    let read = rejected.table().version();
    rejected
        .commit(metadata.clone(), rejected_txns)
        .await
        .map_err(classify("rejected", read))?;
    let read = pulls.table().version();
    pulls
        .commit(metadata, pulls_txns)
        .await
        .map_err(classify("pulls", read))
}
