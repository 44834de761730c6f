//! Source and dead-letter stages for Kafka (librdkafka through `rdkafka`).
//!
//! The consumer joins a group, but partitions start where the *table* says,
//! not where Kafka's committed offsets say: [`GroupContext`] replaces
//! librdkafka's rebalance handler, asks its [`Resumer`] (the daemon, which
//! reads the Delta table) for each assigned partition's next offset, and
//! assigns with those offsets. Rebalances are eager (everything revoked,
//! then everything assigned), so a revocation simply means "drop all
//! uncommitted work"; the cooperative protocol is refused.
//!
//! Dead letters go to a topic with the reason and the source position in
//! headers. Delivery is confirmed before the commit that covers their
//! offsets, so a letter is never lost; after a crash one may be sent twice
//! (the headers identify duplicates).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, Position};

/// Settings the daemon always sets; `-X` may not override them because
/// exactly-once depends on them.
const FIXED_SETTINGS: &[&str] = &[
    "auto.offset.reset",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "partition.assignment.strategy",
];

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("invalid Kafka setting {key}: {reason}")]
    Setting { key: String, reason: String },
    #[error("cannot create the Kafka {role}: {source}")]
    Client {
        role: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("cannot subscribe to topic {topic}: {source}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the {role} topic `{topic}` does not exist on the brokers: create it, or name another with --dlq-topic (without it, bad messages could not be set aside and nothing could be committed)")]
    MissingTopic { role: &'static str, topic: String },
    #[error("the {role} topic `{topic}` cannot be used: {code}")]
    UnusableTopic {
        role: &'static str,
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Whether `topic` exists, asked of the brokers (a consumer's metadata
/// request never creates topics). `Ok(None)`: no answer (brokers
/// unreachable), ask again later.
pub fn topic_exists<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    role: &'static str,
    timeout: Duration,
) -> Result<Option<()>, KafkaSourceError> {
    let metadata = match consumer.fetch_metadata(Some(topic), timeout) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error().map(RDKafkaErrorCode::from) {
        None => Ok(Some(())),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            Err(KafkaSourceError::MissingTopic {
                role,
                topic: topic.to_owned(),
            })
        }
        Some(RDKafkaErrorCode::LeaderNotAvailable) => Ok(None),
        Some(code) => Err(KafkaSourceError::UnusableTopic {
            role,
            topic: topic.to_owned(),
            code,
        }),
    }
}

/// How the daemon and `read-topic` fetch (each can be changed with -X).
/// `fetch.wait.max.ms` is lower than librdkafka's 500 ms because some
/// brokers (tansu among them) hold every fetch that long, which caps
/// throughput at a few fetches per second (see README, "Streaming ingest").
pub fn fetch_defaults() -> [(&'static str, String); 3] {
    [
        ("enable.partition.eof", "false".into()),
        ("fetch.wait.max.ms", "50".into()),
        ("queued.min.messages", "200000".into()),
    ]
}

/// `key=value` of `-X` (validated by clap).
pub fn parse_setting(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not key=value (e.g. -X security.protocol=SSL)"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("`{s}` has an empty key"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// A client configuration: the brokers, the daemon's own settings, then the
/// operator's `-X` settings (which may not touch [`FIXED_SETTINGS`]).
pub fn client_config(
    brokers: &str,
    defaults: &[(&str, String)],
    settings: &[(String, String)],
) -> Result<ClientConfig, KafkaSourceError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        config.set(*k, v);
    }
    for (k, v) in settings {
        if FIXED_SETTINGS.contains(&k.as_str()) {
            return Err(KafkaSourceError::Setting {
                key: k.clone(),
                reason: "pullstats manages it (offsets live in the table, rebalances are eager)"
                    .into(),
            });
        }
        if k == "bootstrap.servers" {
            return Err(KafkaSourceError::Setting {
                key: k.clone(),
                reason: "use --brokers".into(),
            });
        }
        config.set(k, v);
    }
    config.set_log_level(RDKafkaLogLevel::Warning);
    Ok(config)
}

/// Consumer-only librdkafka settings (prefixes), left out of the
/// dead-letter producer's configuration so that librdkafka does not warn.
const CONSUMER_ONLY: &[&str] = &[
    "group.",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "fetch.",
    "queued.",
    "enable.partition.eof",
    "isolation.level",
    "check.crcs",
    "coordinator.query.interval.ms",
    "auto.commit.interval.ms",
];

/// The `-X` settings that apply to a producer.
pub fn producer_settings(settings: &[(String, String)]) -> Vec<(String, String)> {
    settings
        .iter()
        .filter(|(k, _)| !CONSUMER_ONLY.iter().any(|c| k.starts_with(c)))
        .cloned()
        .collect()
}

/// Each partition's next offset (`None`: nothing committed yet), and what
/// else the resumer read.
pub type Resumption<R> = (Vec<Option<i64>>, R);

/// Where the daemon finds each partition's next offset (the table).
pub trait Resumer: Send + Sync + 'static {
    /// What the consumer loop needs besides the offsets (e.g. table handles).
    type Resume: Send + 'static;
    type Error: std::error::Error + Send + Sync + 'static;
    /// Next offsets of `partitions` (`None`: nothing committed yet).
    fn resume(&self, partitions: &[i32]) -> Result<Resumption<Self::Resume>, Self::Error>;
}

/// What happened in a rebalance, for the consumer loop to act on after poll.
pub enum GroupEvent<R: Resumer> {
    /// Every earlier partition was taken away: drop uncommitted work.
    Revoked,
    /// These partitions now belong to this daemon, starting at these offsets.
    Assigned {
        partitions: Vec<(i32, Option<i64>)>,
        resume: R::Resume,
    },
    /// librdkafka refused the assignment: fatal.
    AssignFailed(KafkaError),
    /// The table could not be read while assigning: fatal.
    ResumeFailed(R::Error),
}

/// How many messages before the table's next offset a partition is
/// fetched from when it is assigned or rewound; the engine skips what the
/// table already has. tansu 0.6 cannot start a fetch inside a record batch
/// (README, quirk 2): from the table's offset it delivers nothing of that
/// batch, and nothing at all when the batch is the partition's last, while
/// the end it reports lies before the offset (quirk 1), so the partition
/// would look read to its end and the batch's rest would wait for the next
/// message. A librdkafka producer puts at most 10,000 messages in a batch
/// (`batch.num.messages`), so this starts before the batch. Against Kafka
/// it costs re-reading up to this many messages per partition and
/// assignment.
pub const RESUME_OVERLAP: i64 = 10_000;

/// Where to fetch a partition whose next offset per the table is `next`
/// (`start` when the table has none): [`RESUME_OVERLAP`] before it. An
/// offset no longer in the topic restarts at the oldest one kept
/// (`auto.offset.reset=earliest`, set by [`subscribe`]).
pub fn fetch_from(next: Option<i64>, start: Offset) -> Offset {
    next.map_or(start, |n| {
        Offset::Offset(n.saturating_sub(RESUME_OVERLAP).max(0))
    })
}

/// The consumer's context: rebalances (see the module docs) and logs.
pub struct GroupContext<R: Resumer> {
    topic: String,
    /// Where a partition with no committed offset starts.
    start: Offset,
    resumer: R,
    events: Mutex<VecDeque<GroupEvent<R>>>,
    connectivity: Connectivity,
}

impl<R: Resumer> GroupContext<R> {
    pub fn new(topic: &str, start: Offset, resumer: R) -> Self {
        Self {
            topic: topic.to_owned(),
            start,
            resumer,
            events: Mutex::new(VecDeque::new()),
            connectivity: Connectivity::default(),
        }
    }

    /// Rebalance events since the last call, oldest first.
    pub fn take_events(&self) -> Vec<GroupEvent<R>> {
        match self.events.lock() {
            Ok(mut q) => q.drain(..).collect(),
            Err(poisoned) => poisoned.into_inner().drain(..).collect(),
        }
    }

    pub fn connectivity(&self) -> &Connectivity {
        &self.connectivity
    }

    pub fn resumer(&self) -> &R {
        &self.resumer
    }

    fn push(&self, event: GroupEvent<R>) {
        match self.events.lock() {
            Ok(mut q) => q.push_back(event),
            Err(poisoned) => poisoned.into_inner().push_back(event),
        }
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        match self.resumer.resume(&partitions) {
            Ok((offsets, resume)) => {
                for (&p, offset) in partitions.iter().zip(&offsets) {
                    let at = fetch_from(*offset, self.start);
                    if let Err(e) = tpl.set_partition_offset(&self.topic, p, at) {
                        tracing::error!(partition = p, "cannot set the start offset: {e}");
                    }
                }
                if let Err(e) = consumer.assign(tpl) {
                    self.push(GroupEvent::AssignFailed(e));
                    return;
                }
                tracing::info!(partitions = ?partitions, offsets = ?offsets, "partitions assigned; resuming from the table");
                self.push(GroupEvent::Assigned {
                    partitions: partitions.into_iter().zip(offsets).collect(),
                    resume,
                });
            }
            Err(e) => {
                let _ = consumer.unassign();
                self.push(GroupEvent::ResumeFailed(e));
            }
        }
    }
}

impl<R: Resumer> ClientContext for GroupContext<R> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.connectivity.failed(&error, reason);
    }
}

impl<R: Resumer> ConsumerContext for GroupContext<R> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            other => {
                if other != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    let code: RDKafkaErrorCode = other.into();
                    tracing::warn!("rebalance error: {code}; dropping the assignment");
                } else {
                    tracing::info!("partitions revoked; uncommitted work is dropped");
                }
                let _ = consumer.unassign();
                self.push(GroupEvent::Revoked);
            }
        }
    }
}

/// Whether the brokers are reachable, logged once per change of state.
#[derive(Debug)]
pub struct Connectivity {
    down: AtomicBool,
}

impl Default for Connectivity {
    fn default() -> Self {
        Self {
            down: AtomicBool::new(false),
        }
    }
}

impl Connectivity {
    /// An error from librdkafka: transport failures mark the brokers down.
    pub fn failed(&self, error: &KafkaError, reason: &str) {
        let transport = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::Resolve
            )
        );
        if transport {
            self.unreachable(reason);
        } else {
            tracing::warn!("Kafka error: {error}: {reason}");
        }
    }

    /// No answer from the brokers (no error value to classify).
    pub fn unreachable(&self, reason: &str) {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!("Kafka unreachable ({reason}); retrying with backoff");
        }
    }

    /// Something came back from the brokers.
    pub fn ok(&self) {
        // Read first: called at every delivery, it writes only on a change.
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("Kafka reachable again; resuming");
        }
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

pub fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", "{fac}: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac}: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", "{fac}: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac}: {message}"),
    }
}

/// Creates the group consumer and subscribes it to `topic`.
pub fn subscribe<R: Resumer>(
    config: &ClientConfig,
    context: GroupContext<R>,
    topic: &str,
) -> Result<BaseConsumer<GroupContext<R>>, KafkaSourceError> {
    let mut config = config.clone();
    config
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("partition.assignment.strategy", "range,roundrobin");
    let consumer: BaseConsumer<GroupContext<R>> =
        config
            .create_with_context(context)
            .map_err(|source| KafkaSourceError::Client {
                role: "consumer",
                source,
            })?;
    consumer
        .subscribe(&[topic])
        .map_err(|source| KafkaSourceError::Subscribe {
            topic: topic.to_owned(),
            source,
        })?;
    Ok(consumer)
}

/// Producer context of the dead-letter topic: counts failed deliveries.
pub struct DeliveryContext {
    failed: Arc<AtomicU64>,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("dead-letter producer: {error}: {reason}");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(e.to_string());
            }
        }
    }
}

/// Dead letters to a Kafka topic; headers carry the reason and position.
pub struct KafkaDeadLetters {
    producer: ThreadedProducer<DeliveryContext>,
    topic: String,
    failed: Arc<AtomicU64>,
    failed_seen: u64,
    count: u64,
    flush_timeout: Duration,
}

/// Header names of a dead letter.
pub const HEADER_REASON: &str = "pullstats.reason";
pub const HEADER_SOURCE_TOPIC: &str = "pullstats.source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "pullstats.source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "pullstats.source.offset";

impl KafkaDeadLetters {
    pub fn new(
        config: &ClientConfig,
        topic: &str,
        flush_timeout: Duration,
    ) -> Result<Self, KafkaSourceError> {
        let failed = Arc::new(AtomicU64::new(0));
        let context = DeliveryContext {
            failed: failed.clone(),
            last_error: Mutex::new(None),
        };
        let mut config = config.clone();
        config.set("acks", "all");
        let producer =
            config
                .create_with_context(context)
                .map_err(|source| KafkaSourceError::Client {
                    role: "dead-letter producer",
                    source,
                })?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            failed,
            failed_seen: 0,
            count: 0,
            flush_timeout,
        })
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn err(&self, source: std::io::Error) -> DeadLetterError {
        DeadLetterError {
            sink: format!("Kafka topic {}", self.topic),
            source,
        }
    }
}

impl DeadLetterSink for KafkaDeadLetters {
    fn send(&mut self, letter: DeadLetter<'_>) -> Result<(), DeadLetterError> {
        let (partition, offset) = match letter.position {
            Position::Kafka { partition, offset } => (partition.to_string(), offset.to_string()),
            Position::Line { line } => (String::new(), line.to_string()),
            Position::Http { request } => (String::new(), request.to_string()),
        };
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_REASON,
                value: Some(letter.reason),
            })
            .insert(Header {
                key: HEADER_SOURCE_TOPIC,
                value: Some(letter.source),
            })
            .insert(Header {
                key: HEADER_SOURCE_PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: HEADER_SOURCE_OFFSET,
                value: Some(&offset),
            });
        let mut record = BaseRecord::<(), [u8]>::to(&self.topic)
            .payload(letter.payload)
            .headers(headers);
        // A full local queue drains as the background thread delivers.
        let mut waited = Duration::ZERO;
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if waited < self.flush_timeout =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                    waited += Duration::from_millis(10);
                }
                Err((e, _)) => return Err(self.err(std::io::Error::other(e))),
            }
        }
        self.count += 1;
        Ok(())
    }

    /// Waits until every letter is acknowledged; an error if any failed
    /// since the last flush (the caller must not commit past them).
    fn flush(&mut self) -> Result<(), DeadLetterError> {
        self.producer
            .flush(self.flush_timeout)
            .map_err(|e| self.err(std::io::Error::other(e)))?;
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > self.failed_seen {
            let n = failed - self.failed_seen;
            self.failed_seen = failed;
            let last = self
                .producer
                .context()
                .last_error
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_default();
            return Err(self.err(std::io::Error::other(format!(
                "{n} dead letter(s) were not delivered: {last}"
            ))));
        }
        Ok(())
    }

    fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_fetched_from_before_the_tables_offset_never_below_zero() {
        assert_eq!(
            fetch_from(Some(25_000), Offset::End),
            Offset::Offset(15_000)
        );
        assert_eq!(fetch_from(Some(200), Offset::End), Offset::Offset(0));
        assert_eq!(fetch_from(None, Offset::Beginning), Offset::Beginning);
    }

    #[test]
    fn settings_exactly_once_depends_on_are_refused_from_the_command_line() {
        for key in [
            "auto.offset.reset",
            "enable.auto.commit",
            "enable.auto.offset.store",
            "partition.assignment.strategy",
            "bootstrap.servers",
        ] {
            let given = [(key.to_owned(), "x".to_owned())];
            assert!(
                matches!(
                    client_config("127.0.0.1:9092", &[], &given),
                    Err(KafkaSourceError::Setting { .. })
                ),
                "{key}"
            );
        }
        assert!(client_config("127.0.0.1:9092", &[], &[("linger.ms".into(), "5".into())]).is_ok());
    }
}
