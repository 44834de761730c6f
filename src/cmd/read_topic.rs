//! `pullstats read-topic`: reads every partition of a topic from its first
//! offset and does nothing with the messages. Its rate is what librdkafka
//! and the broker allow on this machine, the reference the daemon's
//! end-to-end rate is compared with (`benches/kafka_ingest.py`). It uses the
//! daemon's fetch settings, no consumer group and no commits.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::cli::ReadTopicArgs;
use crate::pipeline::kafka;

/// How long the topic's metadata may take to arrive.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(args: ReadTopicArgs) -> anyhow::Result<()> {
    let group = (
        "group.id",
        format!("pullstats-read-topic-{}", std::process::id()),
    );
    let defaults: Vec<_> = std::iter::once(group)
        .chain(kafka::fetch_defaults())
        .collect();
    let consumer: BaseConsumer = kafka::client_config(&args.brokers, &defaults, &args.settings)?
        .create()
        .context("cannot create the Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), METADATA_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of {}", args.topic))?;
    let partitions = match metadata.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().len(),
        _ => bail!("topic {} does not exist on {}", args.topic, args.brokers),
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(&args.topic, p, Offset::Beginning)
            .context("cannot build the assignment")?;
    }
    consumer
        .assign(&tpl)
        .context("cannot assign the partitions")?;

    let started = Instant::now();
    let (mut messages, mut bytes, mut last) = (0u64, 0u64, started);
    let mut errors = 0u64;
    while args.messages.is_none_or(|n| messages < n) && last.elapsed() < args.idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                messages += 1;
                bytes += m.payload_len() as u64;
                last = Instant::now();
            }
            Some(Err(e)) => {
                errors += 1;
                if errors == 1 {
                    tracing::warn!("consumer error (further ones are only counted): {e}");
                }
            }
            None => {}
        }
    }
    let secs = (last - started).as_secs_f64().max(1e-9);
    println!(
        "read {messages} messages ({:.1} MiB) from {} ({partitions} partitions) in {secs:.2} s: {:.0} messages/s, {errors} errors",
        bytes as f64 / (1024.0 * 1024.0),
        args.topic,
        messages as f64 / secs
    );
    if args.messages.is_some_and(|n| messages < n) {
        bail!(
            "only {messages} of the {} messages asked for arrived (nothing for {:?})",
            args.messages.unwrap_or(0),
            args.idle
        );
    }
    Ok(())
}
