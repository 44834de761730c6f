//! Forward mode: every kept event becomes one Kafka message, keyed by
//! client IP, from an idempotent producer with `acks=all`. An envelope is
//! answered once the brokers confirmed each of its messages.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::oneshot;

use super::receive::Kept;
use crate::pipeline::kafka::KafkaSourceError;

type Delivered = oneshot::Sender<Result<(), String>>;

/// Completes each message's waiter from librdkafka's delivery report.
pub struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Delivered>;

    fn delivery(&self, result: &DeliveryResult<'_>, done: Box<Delivered>) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.to_string()),
        };
        let _ = done.send(outcome);
    }
}

pub struct Forwarder {
    producer: ThreadedProducer<Reports>,
    topic: String,
    timeout: Duration,
}

impl Forwarder {
    /// `timeout` bounds each envelope: past it the brokers are "too slow"
    /// and the registry is asked to retry.
    pub fn new(
        config: &ClientConfig,
        topic: &str,
        timeout: Duration,
    ) -> Result<Self, KafkaSourceError> {
        let mut config = config.clone();
        // A registry waits for each answer before it sends the next
        // envelope: batch for 2 ms at most unless told otherwise (-X).
        if config.get("linger.ms").is_none() {
            config.set("linger.ms", "2");
        }
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout.as_millis().max(1).to_string());
        let producer =
            config
                .create_with_context(Reports)
                .map_err(|source| KafkaSourceError::Client {
                    role: "forwarding producer",
                    source,
                })?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            timeout,
        })
    }

    /// Sends the messages and waits for every confirmation; the error
    /// says why one was not confirmed in time.
    pub async fn send(&self, kept: &[Kept<'_>]) -> Result<(), String> {
        let mut waiting = Vec::with_capacity(kept.len());
        for k in kept {
            let (done, rx) = oneshot::channel();
            // Keyed by client IP: a pull's requests share a partition.
            let key = k.event.ip.to_string();
            let message = k.message();
            let record = BaseRecord::with_opaque_to(&self.topic, Box::new(done))
                .key(key.as_str())
                .payload(message.as_slice());
            match self.producer.send(record) {
                Ok(()) => waiting.push(rx),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    return Err("the producer's local queue is full".into())
                }
                Err((e, _)) => return Err(e.to_string()),
            }
        }
        let all = futures::future::join_all(waiting);
        let results = tokio::time::timeout(self.timeout, all)
            .await
            .map_err(|_| format!("the brokers did not confirm within {:?}", self.timeout))?;
        for r in results {
            r.map_err(|_| "the producer stopped".to_owned())??;
        }
        Ok(())
    }

    /// Whether the brokers answer a metadata request for the topic.
    pub fn reachable(&self, timeout: Duration) -> bool {
        self.producer
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .is_ok_and(|m| m.topics().iter().any(|t| t.error().is_none()))
    }

    /// Waits (bounded) for what is in flight; used at shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!("not every forwarded message was confirmed at shutdown: {e}");
        }
    }
}
