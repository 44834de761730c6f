//! Where lanes resume: each one's next offset, saved session generation and
//! the rejected table's offset, read from the two tables in one go.

use deltalake::DeltaTable;

use super::StreamError;
use crate::pipeline::kafka::{Resumer, Resumption};
use crate::pipeline::Lane;
use crate::table::{self, offset_app_id, state_app_id, Location, TableError, TableKind};

/// What a lane resumes from, read from both tables.
#[derive(Debug, Clone, Copy)]
pub struct PartitionResume {
    pub partition: Lane,
    pub offset: Option<i64>,
    pub generation: Option<i64>,
    pub rejected_offset: Option<i64>,
}

/// The tables as read for an assignment, and what they say per lane.
pub struct ResumeSet {
    pub pulls: DeltaTable,
    pub rejected: DeltaTable,
    pub parts: Vec<PartitionResume>,
}

/// Reads resume points from the tables. Called on a thread outside the
/// async runtime (librdkafka's rebalance callback runs on the engine
/// thread), hence `block_on`.
#[derive(Clone)]
pub struct TableResumer {
    runtime: tokio::runtime::Handle,
    pulls_path: Location,
    topic: String,
}

impl TableResumer {
    pub fn new(runtime: tokio::runtime::Handle, pulls_path: Location, topic: String) -> Self {
        Self {
            runtime,
            pulls_path,
            topic,
        }
    }

    /// Reads both tables for `partitions` (blocking).
    pub fn read(&self, partitions: &[Lane]) -> Result<ResumeSet, StreamError> {
        self.runtime
            .block_on(self.read_async(partitions))
            .map_err(|source| StreamError::Resume {
                topic: self.topic.clone(),
                partitions: partitions.to_vec(),
                source: Box::new(source),
            })
    }

    async fn read_async(&self, partitions: &[Lane]) -> Result<ResumeSet, TableError> {
        let pulls = table::open(&self.pulls_path, TableKind::Pulls).await?;
        let rejected_path = table::rejected_path(&self.pulls_path);
        let rejected = table::open(&rejected_path, TableKind::Rejected).await?;
        let mut parts = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let offset_id = offset_app_id(&self.topic, partition);
            let state_id = state_app_id(&self.topic, partition);
            parts.push(PartitionResume {
                partition,
                offset: txn(&pulls, &self.pulls_path, offset_id.clone()).await?,
                generation: txn(&pulls, &self.pulls_path, state_id).await?,
                rejected_offset: txn(&rejected, &rejected_path, offset_id).await?,
            });
        }
        Ok(ResumeSet {
            pulls,
            rejected,
            parts,
        })
    }
}

/// The version recorded under `id` in the table at `path`.
async fn txn(table: &DeltaTable, path: &Location, id: String) -> Result<Option<i64>, TableError> {
    table::txn_version(table, id)
        .await
        .map_err(|source| TableError::Delta {
            path: path.clone(),
            source,
        })
}

impl Resumer for TableResumer {
    type Resume = ResumeSet;
    type Error = StreamError;

    fn resume(&self, partitions: &[i32]) -> Result<Resumption<ResumeSet>, StreamError> {
        let set = self.read(partitions)?;
        Ok((set.parts.iter().map(|p| p.offset).collect(), set))
    }
}
