//! Forward mode: every kept event becomes one Kafka message, keyed by
//! client IP, from an idempotent producer with `acks=all`. An envelope is
//! answered once the brokers confirmed each of its messages.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::oneshot;

use super::receive::{self, Kept};
use crate::pipeline::kafka::{log_librdkafka, Connectivity, KafkaSourceError};

/// An envelope's messages waiting for their delivery reports: the last
/// report (or the first failure) completes the envelope's one waiter.
pub struct Waiting {
    /// Reports still to come (the messages handed to librdkafka).
    left: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<Result<(), String>>>>,
}

impl Waiting {
    fn new(done: oneshot::Sender<Result<(), String>>) -> Self {
        Self {
            left: AtomicUsize::new(0),
            done: Mutex::new(Some(done)),
        }
    }

    fn complete(&self, outcome: Result<(), String>) {
        if let Some(done) = self.done.lock().ok().and_then(|mut d| d.take()) {
            let _ = done.send(outcome);
        }
    }

    /// One more message handed out; its report is to come.
    fn sent(&self) {
        self.left.fetch_add(1, Ordering::AcqRel);
    }

    /// A message's report. Called after [`Waiting::sent`] for that message.
    fn report(&self, outcome: Result<(), String>) {
        let last = self.left.fetch_sub(1, Ordering::AcqRel) == 1;
        if outcome.is_err() || last {
            self.complete(outcome);
        }
    }
}

/// Completes each envelope's waiter from librdkafka's delivery reports,
/// and says when the brokers go away and come back (once each: while they
/// are down librdkafka reports errors a few times a second, dozens while
/// `/readyz` asks for metadata, and each envelope is answered 503 with its
/// reason anyway).
#[derive(Default)]
pub struct Reports {
    connectivity: Connectivity,
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.connectivity.failed(&error, reason);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Arc<Waiting>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiting: Arc<Waiting>) {
        waiting.report(match result {
            Ok(_) => {
                self.connectivity.ok();
                Ok(())
            }
            Err((e, _)) => Err(e.to_string()),
        });
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
        let producer = config
            .create_with_context(Reports::default())
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
        let (done, confirmed) = oneshot::channel();
        let waiting = Arc::new(Waiting::new(done));
        // Counted as sent before the first report can arrive, so that no
        // report is the last before every message was handed out.
        waiting.sent();
        let (mut key, mut message) = (String::new(), Vec::new());
        for k in kept {
            // Keyed by client IP: a pull's requests share a partition.
            key.clear();
            let _ = write!(key, "{}", k.event.ip);
            message.clear();
            receive::envelope_into(std::slice::from_ref(k), &mut message);
            waiting.sent();
            let record = BaseRecord::with_opaque_to(&self.topic, waiting.clone())
                .key(key.as_str())
                .payload(message.as_slice());
            // On an error nothing waits for the messages already handed
            // out: the envelope is answered 503 and sent again.
            if let Err((e, _)) = self.producer.send(record) {
                return Err(match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                        "the producer's local queue is full".into()
                    }
                    e => e.to_string(),
                });
            }
        }
        waiting.report(Ok(()));
        tokio::time::timeout(self.timeout, confirmed)
            .await
            .map_err(|_| format!("the brokers did not confirm within {:?}", self.timeout))?
            .map_err(|_| "the producer stopped".to_owned())?
    }

    /// Whether the brokers answer a metadata request for the topic.
    pub fn reachable(&self, timeout: Duration) -> bool {
        let up = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .is_ok_and(|m| m.topics().iter().any(|t| t.error().is_none()));
        if up {
            self.producer.context().connectivity.ok();
        }
        up
    }

    /// Waits (bounded) for what is in flight; used at shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!("not every forwarded message was confirmed at shutdown: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_confirmed_by_its_last_report_or_its_first_failure() {
        // Three messages; the guard (the sender's own count) is released
        // after the last was handed out.
        let (done, mut confirmed) = oneshot::channel();
        let w = Waiting::new(done);
        w.sent();
        for _ in 0..3 {
            w.sent();
        }
        w.report(Ok(()));
        w.report(Ok(()));
        w.report(Ok(()));
        assert!(
            confirmed.try_recv().is_err(),
            "not before every message was handed out"
        );
        w.report(Ok(()));
        assert_eq!(confirmed.try_recv(), Ok(Ok(())));

        let (done, mut confirmed) = oneshot::channel();
        let w = Waiting::new(done);
        w.sent();
        w.sent();
        w.sent();
        w.report(Err("broker down".into()));
        assert_eq!(confirmed.try_recv(), Ok(Err("broker down".into())));
        // Later reports change nothing.
        w.report(Ok(()));
        w.report(Ok(()));
    }
}
