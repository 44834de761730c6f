//! `pullstats produce`: replays request events (a file or stdin, one per
//! line) into a Kafka topic, keyed by client IP as the daemon expects.
//!
//! For demos, tests, benchmarks and backfills: `pullstats gen | pullstats
//! produce --brokers … --topic …`. Lines that do not decode are sent as they
//! are, without a key, so the daemon's dead-letter path sees them too.
//! `--unkeyed` sends every line without a key, as a producer that ignores
//! the keying advice would.

use std::io::{self, BufRead, BufReader};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::cli::ProduceArgs;
use crate::pipeline::decode::Decoder;
use crate::pipeline::kafka;
use crate::pipeline::source::{Line, LineReader};

/// How long the final flush may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let defaults = [
        ("linger.ms", "20".to_owned()),
        ("batch.num.messages", "10000".to_owned()),
        ("queue.buffering.max.messages", "500000".to_owned()),
        ("compression.type", "none".to_owned()),
        ("message.max.bytes", "10000000".to_owned()),
    ];
    let config = kafka::client_config(&args.brokers, &defaults, &args.settings)?;
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .create()
        .context("cannot create the Kafka producer")?;
    let input: Box<dyn BufRead> = if args.from_file.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 20, io::stdin()))
    } else {
        let f = std::fs::File::open(&args.from_file)
            .with_context(|| format!("cannot open {}", args.from_file.display()))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    let mut reader = LineReader::new(input, usize::MAX);
    let mut decoder = Decoder::new(usize::MAX);
    let mut events = Vec::new();
    let (mut buf, mut sent, mut unkeyed) = (Vec::new(), 0u64, 0u64);
    let started = Instant::now();
    while let Some(line) = reader.next_line(&mut buf).context("reading the input")? {
        debug_assert_eq!(line, Line::Complete);
        events.clear();
        let key = if args.unkeyed {
            None
        } else {
            let key = decoder
                .decode(&buf, &mut events)
                .ok()
                .and_then(|()| events.first().map(|e| e.ip.to_string()));
            unkeyed += u64::from(key.is_none());
            key
        };
        let mut record = BaseRecord::<str, [u8]>::to(&args.topic).payload(&buf);
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        send(&producer, record)?;
        sent += 1;
    }
    producer
        .flush(FLUSH_TIMEOUT)
        .context("not every message was acknowledged by the brokers")?;
    let secs = started.elapsed().as_secs_f64();
    let rate = sent as f64 / secs.max(1e-9);
    if args.unkeyed {
        println!(
            "produced {sent} messages to {} without keys in {secs:.2} s ({rate:.0}/s)",
            args.topic
        );
    } else {
        println!(
            "produced {sent} messages to {} ({unkeyed} without a key: they did not decode) in {secs:.2} s ({rate:.0}/s)",
            args.topic
        );
    }
    Ok(())
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, str, [u8]>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(anyhow!("cannot produce: {e}")),
        }
    }
}
