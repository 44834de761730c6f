//! The Kafka source: a group consumer whose partitions start where the
//! table says ([`GroupContext`] with a [`TableResumer`]), plus the
//! work-arounds a real broker needs (see README, "tansu quirks").

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{Source, SourceEvent, StreamError, TableResumer};
use crate::cli::{KafkaArgs, StartOffset};
use crate::pipeline::kafka::{self, GroupContext, GroupEvent};
use crate::pipeline::Lane;

/// Bound on broker round trips made by the loop itself (watermarks, seeks).
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How far back a jump past the next offset seeks, try after try.
const SEEK_BACK: [i64; 4] = [0, 1_000, 10_000, 100_000];

pub struct KafkaSource {
    topic: String,
    dlq_topic: String,
    start: Offset,
    consumer: BaseConsumer<GroupContext<TableResumer>>,
    pending: VecDeque<SourceEvent>,
    /// Partitions read to their end, with nothing fetched since.
    at_end: BTreeSet<Lane>,
}

/// librdkafka consumer settings the daemon picks (each can be changed with
/// -X), the fetch settings included.
pub fn consumer_defaults(args: &KafkaArgs) -> Vec<(&'static str, String)> {
    vec![
        ("group.id", args.group.clone()),
        ("client.id", format!("pullstats-{}", std::process::id())),
        ("session.timeout.ms", "10000".into()),
        ("heartbeat.interval.ms", "1000".into()),
        ("reconnect.backoff.ms", "100".into()),
        ("reconnect.backoff.max.ms", "5000".into()),
    ]
    .into_iter()
    // A partition read to its end says so (an epoch that drained a
    // backlog then commits without waiting for the interval).
    .chain(kafka::fetch_defaults().map(|(k, v)| match k {
        "enable.partition.eof" => (k, "true".into()),
        _ => (k, v),
    }))
    .collect()
}

impl KafkaSource {
    /// Joins the group and subscribes to `topic`; assignments resume from
    /// `resumer`'s tables. `dlq_topic` must exist before work starts.
    pub fn subscribe(
        config: &ClientConfig,
        topic: &str,
        dlq_topic: &str,
        start: StartOffset,
        resumer: TableResumer,
    ) -> Result<Self, StreamError> {
        let start = match start {
            StartOffset::Earliest => Offset::Beginning,
            StartOffset::Latest => Offset::End,
        };
        let consumer = kafka::subscribe(config, GroupContext::new(topic, start, resumer), topic)?;
        Ok(Self {
            topic: topic.to_owned(),
            dlq_topic: dlq_topic.to_owned(),
            start,
            consumer,
            pending: VecDeque::new(),
            at_end: BTreeSet::new(),
        })
    }

    fn take_group_events(&mut self) -> Result<(), StreamError> {
        for event in self.consumer.context().take_events() {
            match event {
                GroupEvent::Revoked => self.pending.push_back(SourceEvent::Revoked),
                GroupEvent::Assigned { resume, .. } => {
                    self.pending.push_back(SourceEvent::Assigned(resume));
                }
                GroupEvent::AssignFailed(source) => {
                    return Err(StreamError::Broker {
                        topic: self.topic.clone(),
                        action: "taking the assigned partitions",
                        source,
                    })
                }
                GroupEvent::ResumeFailed(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.topic
    }

    /// Dead letters are confirmed before each commit, so a missing
    /// dead-letter topic would stall every commit: refuse to start instead.
    /// Waits (logging once) while the brokers cannot be reached.
    fn prepare(&mut self, stop: &AtomicBool) -> Result<(), StreamError> {
        let mut wait = Duration::from_millis(200);
        loop {
            let found = kafka::topic_exists(
                &self.consumer,
                &self.dlq_topic,
                "dead-letter",
                BROKER_CALL_TIMEOUT,
            )?;
            if found.is_some() {
                self.consumer.context().connectivity().ok();
                return Ok(());
            }
            if stop.load(Ordering::SeqCst) {
                return Err(StreamError::StoppedBeforeReady);
            }
            self.consumer
                .context()
                .connectivity()
                .unreachable("checking the dead-letter topic");
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Rebalance events first (those raised by the previous poll), then a
    /// message.
    fn poll(&mut self, timeout: Duration) -> Result<Option<SourceEvent>, StreamError> {
        if self.pending.is_empty() {
            self.take_group_events()?;
        }
        if let Some(event) = self.pending.pop_front() {
            self.at_end.clear();
            return Ok(Some(event));
        }
        let Some(result) = self.consumer.poll(timeout) else {
            return Ok(None);
        };
        let message = match result {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(lane)) => {
                self.at_end.insert(lane);
                return Ok(None);
            }
            Err(e) => {
                self.consumer.context().connectivity().failed(&e, "fetch");
                return Ok(None);
            }
        };
        self.consumer.context().connectivity().ok();
        self.at_end.remove(&message.partition());
        Ok(Some(SourceEvent::Message {
            lane: message.partition(),
            offset: message.offset(),
            payload: message.payload().map(<[u8]>::to_vec),
            decoded: None,
        }))
    }

    /// The message may have been fetched for an earlier assignment, or the
    /// broker cannot start a fetch inside a record batch (tansu 0.6 answers
    /// from the next batch): seek back, further each time; the engine skips
    /// what the table already has. Only when that keeps jumping is it a real
    /// gap (retention, compaction, transaction markers), taken with a warning.
    fn jumped(&mut self, lane: Lane, expected: i64, got: i64, jumps: u32) -> bool {
        let Some(&back) = SEEK_BACK.get(jumps.saturating_sub(1) as usize) else {
            tracing::warn!(partition = lane, "offsets {expected}..{got} are not in the topic (retention, compaction or transaction markers)");
            return true;
        };
        let at = Offset::Offset((expected - back).max(0));
        tracing::debug!(
            partition = lane,
            next = expected,
            got,
            "jumped past the next offset; seeking back to {at:?}"
        );
        if let Err(e) = self
            .consumer
            .seek(&self.topic, lane, at, BROKER_CALL_TIMEOUT)
        {
            tracing::debug!(partition = lane, "cannot seek: {e}");
        }
        false
    }

    fn seek(&mut self, positions: &[(Lane, Option<i64>)]) -> Result<(), StreamError> {
        let broker = |action, source| StreamError::Broker {
            topic: self.topic.clone(),
            action,
            source,
        };
        let mut tpl = TopicPartitionList::new();
        for &(lane, offset) in positions {
            self.at_end.remove(&lane);
            let at = kafka::fetch_from(offset, self.start);
            tpl.add_partition_offset(&self.topic, lane, at)
                .map_err(|e| broker("positioning a partition", e))?;
        }
        if tpl.count() > 0 {
            self.consumer
                .seek_partitions(tpl, BROKER_CALL_TIMEOUT)
                .map_err(|e| broker("rewinding the consumer", e))?;
        }
        Ok(())
    }

    fn bounds(&mut self, lane: Lane) -> Option<(i64, i64)> {
        self.consumer
            .fetch_watermarks(&self.topic, lane, BROKER_CALL_TIMEOUT)
            .ok()
    }

    fn at_end(&self, lane: Lane) -> bool {
        self.at_end.contains(&lane)
    }

    fn is_down(&self) -> bool {
        self.consumer.context().connectivity().is_down()
    }

    /// Mirrors the table's offsets into Kafka, for lag monitoring tools.
    fn committed(&mut self, next: &BTreeMap<Lane, i64>, last: bool) {
        let mut tpl = TopicPartitionList::new();
        for (lane, offset) in next {
            let _ = tpl.add_partition_offset(&self.topic, *lane, Offset::Offset(*offset));
        }
        if tpl.count() > 0 {
            let mode = if last {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            if let Err(e) = self.consumer.commit(&tpl, mode) {
                tracing::debug!("cannot commit offsets to Kafka (monitoring only): {e}");
            }
        }
    }
}
