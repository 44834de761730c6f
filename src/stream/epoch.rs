//! The end of an epoch: seal the batches, confirm the dead letters, save
//! each dirty lane's open sessions, commit both tables with the offsets and
//! state generations as application transactions. Also the wall-clock
//! chores between messages: closing quiet lanes, gauges, lag.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Instant;

use deltalake::kernel::Transaction;
use serde_json::json;

use super::engine::Engine;
use super::writer::{CommitFailure, WriterCmd};
use super::{Source, StreamError};
use crate::pipeline::Lane;
use crate::table::{offset_app_id, state_app_id};

impl<S: Source> Engine<S> {
    /// Ends the epoch; on failure, redoes it from the table.
    pub(super) fn commit_epoch(&mut self) -> Result<(), StreamError> {
        let dirty: Vec<Lane> = self
            .held
            .iter()
            .filter(|(_, h)| h.dirty())
            .map(|(p, _)| *p)
            .collect();
        if dirty.is_empty() {
            self.reset_epoch();
            return Ok(());
        }
        self.pipeline.flush_batches().map_err(StreamError::Seal)?;
        self.send_batches()?;
        if let Err(e) = self.dead.flush() {
            tracing::warn!("{e}; redoing the uncommitted work");
            return self.rewind();
        }
        let topic = self.source.name().to_owned();
        let mut pulls_txns = Vec::new();
        let mut rejected_txns = Vec::new();
        let mut cut = BTreeMap::new();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let txn =
            |id: String, version: i64| Transaction::new_with_last_update(id, version, Some(now_ms));
        for &p in &dirty {
            let held = &self.held[&p];
            let Some(next) = held.next else { continue };
            let state = self.pipeline.snapshot_lane(p).unwrap_or_default();
            let generation = self
                .store
                .save(p, held.generation, &state)
                .map_err(|source| StreamError::SessionState {
                    topic: topic.clone(),
                    partition: p,
                    source,
                })?;
            pulls_txns.push(txn(offset_app_id(&topic, p), next));
            pulls_txns.push(txn(state_app_id(&topic, p), generation));
            // The rejected table's offset never goes back: a commit in the
            // middle of a replay (after a crash between the two tables'
            // commits) must not forget that the rest was counted already.
            rejected_txns.push(txn(offset_app_id(&topic, p), next.max(held.counted_from)));
            cut.insert(p, (next, generation));
        }
        let metadata = HashMap::from([(
            "pullstats".to_owned(),
            json!({ "daemon": format!("pid {}", std::process::id()), "topic": topic, "stats": self.pipeline.stats(),
                    "partitions": cut.iter().map(|(p, (o, g))| (p.to_string(), json!({"next_offset": o, "sessions": g}))).collect::<serde_json::Map<_, _>>() }),
        )]);
        let started = Instant::now();
        let outcome = self.ask(|reply| WriterCmd::Commit {
            pulls_txns,
            rejected_txns,
            metadata,
            reply,
        })?;
        self.metrics.observe_commit(started.elapsed());
        match outcome {
            Ok(version) => {
                self.committed(&cut, version);
                Ok(())
            }
            Err(CommitFailure::Conflict(e)) => {
                self.metrics
                    .commit_conflicts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("another writer committed one of this engine's partitions ({e}); redoing from the table");
                self.rewind()
            }
            Err(CommitFailure::Other(e)) => {
                tracing::error!("commit failed: {e}; redoing from the table");
                self.rewind()
            }
        }
    }

    fn committed(&mut self, cut: &BTreeMap<Lane, (i64, i64)>, version: Option<u64>) {
        for (p, &(next, generation)) in cut {
            if let Some(held) = self.held.get_mut(p) {
                // Keep the previous state too: an engine taking the lane
                // over may have just read it.
                if let Some(previous) = held.generation {
                    self.store.prune(*p, previous);
                }
                held.committed = Some(next);
                held.generation = Some(generation);
                held.counted_from = held.counted_from.max(next);
                held.closed_idle = false;
            }
        }
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        let stats = self.pipeline.stats();
        self.metrics
            .requests
            .store(stats.requests, Ordering::Relaxed);
        self.metrics
            .actions_out
            .store(stats.actions, Ordering::Relaxed);
        self.metrics.bad.store(stats.bad, Ordering::Relaxed);
        self.metrics
            .dead_lettered
            .store(self.dead.count(), Ordering::Relaxed);
        tracing::debug!(version = ?version, partitions = ?cut, "committed");
        self.reset_epoch();
        let next = self.committed_offsets();
        self.source.committed(&next, false);
    }

    pub(super) fn update_lag(&mut self) {
        if self.source.is_down() {
            return;
        }
        let mut lag = BTreeMap::new();
        for (p, held) in &self.held {
            if let Some((low, high)) = self.source.bounds(*p) {
                lag.insert(*p, (high - held.next.unwrap_or(low)).max(0));
            }
        }
        self.metrics.set_lag(lag);
    }

    pub(super) fn update_gauges(&self) {
        self.metrics
            .open_sessions
            .store(self.pipeline.open_sessions() as u64, Ordering::Relaxed);
        self.metrics
            .late
            .store(self.pipeline.stats().late, Ordering::Relaxed);
    }

    /// Closes the sessions of lanes that are caught up and have been silent
    /// for `--idle-close`, so that their last pulls land.
    pub(super) fn close_quiet_lanes(&mut self) -> Result<(), StreamError> {
        if self.source.is_down() {
            return Ok(());
        }
        let quiet: Vec<Lane> = self
            .held
            .iter()
            .filter(|(p, h)| {
                !h.closed_idle
                    && h.last_message.elapsed() >= self.config.idle_close
                    && self.pipeline.lane_has_sessions(**p)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in quiet {
            let Some((_, high)) = self.source.bounds(p) else {
                continue;
            };
            let Some(held) = self.held.get_mut(&p) else {
                continue;
            };
            if held.next.is_some_and(|n| n >= high) {
                tracing::debug!(partition = p, "partition quiet: closing its sessions");
                self.pipeline.close_lane(p).map_err(StreamError::Seal)?;
                held.closed_idle = true;
            }
        }
        self.send_batches()
    }
}
