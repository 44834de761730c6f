//! `pullstats ingest --brokers … --topic …`: the streaming ingest daemon.
//! Flags become a Kafka source, the tables, the dead-letter topic and the
//! side tasks (metrics, enrichment reloads, auto-compaction); the engine
//! itself is [`crate::stream`].

use std::sync::Arc;

use anyhow::{bail, Context};

use crate::cli::IngestArgs;
use crate::config;
use crate::metrics::{self, Metrics};
use crate::pipeline::kafka::{self, KafkaDeadLetters};
use crate::stream::kafka::{consumer_defaults, KafkaSource};
use crate::stream::reload::{self, Reloader};
use crate::stream::{self, EngineParts, Signals, StreamConfig, TableResumer, Tables};
use crate::table::sessions::SessionStore;

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let k = &args.kafka;
    let (Some(brokers), Some(topic)) = (k.brokers.clone(), k.topic.clone()) else {
        bail!("the daemon needs --brokers and --topic");
    };
    let dlq_topic = stream::dead_letter_topic(&topic, k.dlq_topic.as_deref())?;
    let (pipeline, fingerprint) = config::pipeline(&args)?;

    let signals = Signals::install();
    // Both tables exist before any partition is assigned.
    let tables = Tables::open_waiting(&args.table, &signals).await?;

    let metrics = Arc::new(Metrics::default());
    let _server = match k.metrics_addr {
        Some(addr) => Some(
            metrics::serve(addr, metrics.clone())
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?,
        ),
        None => None,
    };

    let consumer_config = kafka::client_config(&brokers, &consumer_defaults(k), &k.settings)?;
    let producer_config = kafka::client_config(
        &brokers,
        &[("client.id", format!("pullstats-dlq-{}", std::process::id()))],
        &kafka::producer_settings(&k.settings),
    )?;
    let resumer = TableResumer::new(
        tokio::runtime::Handle::current(),
        args.table.clone(),
        topic.clone(),
    );
    let source = KafkaSource::subscribe(
        &consumer_config,
        &topic,
        &dlq_topic,
        k.start_offset,
        resumer.clone(),
    )?;
    let dead_letters = KafkaDeadLetters::new(&producer_config, &dlq_topic, k.shutdown_timeout)?;

    let reloader = Reloader::new(args.enrich.sources(), fingerprint, metrics.clone());
    let (reload_task, reloads) = reloader
        .watches_files()
        .then(|| reload::spawn(reloader, k.reload.reload_interval, signals.hangup.clone()))
        .unzip();
    let compactor = stream::compact::spawn(&k.compaction, &args.table, metrics.clone());
    tracing::info!(%brokers, %topic, group = %k.group, dlq = %dlq_topic, table = %args.table, "daemon started");
    let parts = EngineParts {
        source,
        pipeline,
        dead_letters: Box::new(dead_letters),
        resumer,
        store: SessionStore::new(
            tokio::runtime::Handle::current(),
            tables.pulls.table(),
            &topic,
        ),
        metrics,
        config: StreamConfig {
            flush_interval: k.flush_interval,
            flush_rows: k.flush_rows,
            flush_bytes: k.flush_bytes,
            idle_close: k.idle_close,
            max_message_bytes: args.max_line_bytes,
            shutdown_timeout: k.shutdown_timeout,
        },
        reloads,
    };
    let result = stream::run(parts, tables, &signals).await;
    for task in [compactor, reload_task].into_iter().flatten() {
        task.abort();
    }
    Ok(result?)
}
