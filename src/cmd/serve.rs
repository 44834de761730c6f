//! `pullstats serve`: flags become the tokens, the mode (a Kafka producer,
//! or the streaming engine over a queue), the dead-letter sink and the HTTP
//! server; the receiver itself is [`crate::serve`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::api::data::Catalog;
use crate::api::keys::Keys;
use crate::api::{self, Api, ApiConfig};
use crate::cli::ServeArgs;
use crate::cmd::ingest::default_dead_letter_path;
use crate::config;
use crate::metrics::Metrics;
use crate::pipeline::dead_letter::{DeadLetterSink, FileDeadLetters};
use crate::pipeline::kafka::{self, KafkaDeadLetters};
use crate::serve::forward::Forwarder;
use crate::serve::tokens::Tokens;
use crate::serve::{self, App, Mode, SharedDeadLetters};
use crate::stream::queue::{self, Durable};
use crate::stream::reload::{self, Reloader};
use crate::stream::wal::{self, Wal};
use crate::stream::{self, EngineParts, Signals, StreamConfig, TableResumer, Tables};
use crate::table::dead_letters::StoreDeadLetters;
use crate::table::sessions::SessionStore;
use crate::table::Location;

/// The name of direct mode's stream in the table's application ids and
/// state paths (as a Kafka topic's would be).
pub const DIRECT_STREAM: &str = "notifications";
/// How often the tokens file is checked for changes.
const TOKENS_CHECK: Duration = Duration::from_secs(2);
/// Envelopes waiting for the engine at most (beyond: 503).
const QUEUE_CAPACITY: usize = 4096;
/// Where the API keeps generated exports, inside the table directory.
const EXPORTS_DIR: &str = "_pullstats/exports";
/// Direct mode's write-ahead log, inside a local table's directory.
const WAL_DIR: &str = "_pullstats/wal";

/// Where the API cuts export parts: inside a local table; in the system's
/// temporary directory for a table in an object store (the parts are a
/// cache, rebuilt on demand).
fn export_dir(table: &Location) -> PathBuf {
    match table.local_path() {
        Some(dir) => dir.join(EXPORTS_DIR),
        None => {
            let id = blake3::hash(table.to_string().as_bytes()).to_hex();
            std::env::temp_dir().join(format!("pullstats-exports-{}", &id[..16]))
        }
    }
}

/// Reads the table's new commits every `every` and computes the complete
/// periods of the last year not yet computed (newest first), until the
/// task is dropped.
fn refresh(catalog: Arc<Catalog>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = catalog.refresh().await {
                tracing::warn!("the API cannot read the table's new commits: {e}");
                continue;
            }
            match catalog.warm(chrono::Utc::now().date_naive()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(periods = n, "API periods computed"),
                Err(e) => tracing::warn!("the API cannot compute its periods: {e}"),
            }
        }
    })
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let tokens = Arc::new(Tokens::load(&args.tokens)?);
    // Every setting is checked before anything starts: an error after the
    // engine started would stop it mid-work.
    let keys = Keys::load(args.api.signing_key.as_deref(), args.table.local_path())?;
    let _tokens_watch = tokens.watch(TOKENS_CHECK);
    let max_body = usize::try_from(args.max_body_bytes).context("--max-body-bytes is too large")?;
    let signals = Signals::install();
    let draining = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;

    let (mut app, engine) = match (&args.brokers, &args.topic) {
        (Some(brokers), Some(topic)) => (
            forward_app(&args, brokers, topic, tokens, &draining, max_body)?,
            None,
        ),
        _ => {
            let (app, engine) = direct_app(&args, tokens, &draining, &signals, max_body).await?;
            (app, Some(engine))
        }
    };
    app.max_future = crate::pipeline::future::bound_micros(args.session.max_future);
    app.body_deadline = args.client_timeout;
    let app = Arc::new(app);
    let catalog = Arc::new(Catalog::new(&args.table, app.metrics.clone()));
    // Read before the first request, so that the API never answers from
    // an empty catalog while the table has data.
    if let Err(e) = catalog.refresh().await {
        tracing::warn!("cannot read the table for the API yet: {e}");
    }
    let _refresh = refresh(catalog.clone(), args.api.refresh_interval);
    let api = Arc::new(Api::new(
        app.tokens.clone(),
        catalog,
        keys,
        ApiConfig {
            link_ttl: args.api.link_ttl,
            session_ttl: args.api.session_ttl,
            export_part_bytes: args.api.export_part_size,
            public_url: args.api.public_url.clone(),
            export_dir: export_dir(&args.table),
            trusted_proxies: args.api.trusted_proxies.clone(),
        },
    ));
    let router = serve::router(app.clone(), api::router(api));
    let limits = crate::http::Limits {
        max_connections: args.max_connections,
        header_timeout: args.client_timeout,
        drain_timeout: args.shutdown_timeout,
    };
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, table = %args.table, mode = if engine.is_some() { "direct" } else { "forward" },
        "receiving notifications at http://{local}/notifications");
    let stop = signals.stop.clone();
    let shutdown = {
        let draining = draining.clone();
        async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            draining.store(true, Ordering::SeqCst);
            tracing::info!("shutting down: new envelopes get 503; finishing those in flight");
        }
    };
    crate::http::serve(listener, router, limits, shutdown).await;
    match (engine, &app.mode) {
        (Some(engine), _) => {
            let result = engine.await.context("the engine task failed")?;
            result.context("the table writer failed")?;
        }
        (None, Mode::Forward(f)) => f.flush(args.shutdown_timeout),
        (None, Mode::Direct { .. }) => {}
    }
    tracing::info!("stopped");
    Ok(())
}

fn forward_app(
    args: &ServeArgs,
    brokers: &str,
    topic: &str,
    tokens: Arc<Tokens>,
    draining: &Arc<AtomicBool>,
    max_body: usize,
) -> anyhow::Result<App> {
    if args.compaction.auto_compact {
        bail!("--auto-compact is for direct mode; in forward mode the daemon writes the table: give it to `pullstats ingest --brokers …`");
    }
    let dlq_topic = stream::dead_letter_topic(topic, args.dlq_topic.as_deref())?;
    let config = kafka::client_config(
        brokers,
        &[(
            "client.id",
            format!("pullstats-serve-{}", std::process::id()),
        )],
        &kafka::producer_settings(&args.settings),
    )?;
    let forwarder = Forwarder::new(&config, topic, args.forward_timeout)?;
    let dead = KafkaDeadLetters::new(&config, &dlq_topic, args.forward_timeout)?;
    Ok(App::new(
        tokens,
        Mode::Forward(Arc::new(forwarder)),
        SharedDeadLetters::new(Box::new(dead)),
        None,
        max_body,
        args.forward_timeout,
        draining.clone(),
    ))
}

type EngineTask = tokio::task::JoinHandle<Result<(), stream::StreamError>>;

async fn direct_app(
    args: &ServeArgs,
    tokens: Arc<Tokens>,
    draining: &Arc<AtomicBool>,
    signals: &Signals,
    max_body: usize,
) -> anyhow::Result<(App, EngineTask)> {
    if args.topic.is_some() || args.brokers.is_some() {
        bail!("forward mode needs both --brokers and --topic");
    }
    let (pipeline, fingerprint) =
        config::pipeline_from(&args.session, &args.enrich, &args.privacy, max_body + 64)?;
    let run_id = format!("serve-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    // A local table's dead letters go to the file beside it; a table in an
    // object store's, to objects beside it in the same store (named for
    // this run, with a random part: several `serve`s may share the store).
    let sink: Box<dyn DeadLetterSink> = match (
        args.dead_letter.clone(),
        default_dead_letter_path(&args.table),
    ) {
        (Some(path), _) | (None, Some(path)) => Box::new(FileDeadLetters::new(&path, run_id)),
        (None, None) => {
            let mut random = [0u8; 4];
            getrandom::fill(&mut random).context("no randomness for the run's name")?;
            let run = format!("{run_id}-{}", u32::from_be_bytes(random));
            Box::new(StoreDeadLetters::new(
                tokio::runtime::Handle::current(),
                &args.table.beside(".dead-letter"),
                run,
            )?)
        }
    };
    let tables = Tables::open_waiting(&args.table, signals).await?;
    let dead = SharedDeadLetters::new(sink);
    let resumer = TableResumer::new(
        tokio::runtime::Handle::current(),
        args.table.clone(),
        DIRECT_STREAM.to_owned(),
    );
    let (durable, wal) = open_wal(args, &resumer).await?;
    let (source, queue) = queue::queue(DIRECT_STREAM, resumer.clone(), QUEUE_CAPACITY, durable);
    let wal = match wal {
        Some((wal, committed)) => Some(
            wal::spawn(
                wal,
                queue.clone(),
                committed,
                signals.stop.clone(),
                (QUEUE_CAPACITY, wal::MAX_AHEAD),
            )
            .context("cannot start the write-ahead log's thread")?,
        ),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let reloader = Reloader::new(args.enrich.sources(), fingerprint, metrics.clone());
    // (Dropping the reload task's handle detaches it: it lives as long as
    // the process.)
    let reloads = reloader.watches_files().then(|| {
        reload::spawn(
            reloader,
            args.reload.reload_interval,
            signals.hangup.clone(),
        )
        .1
    });
    let parts = EngineParts {
        source,
        pipeline,
        dead_letters: Box::new(dead.clone()),
        resumer,
        store: SessionStore::new(
            tokio::runtime::Handle::current(),
            tables.pulls.table(),
            DIRECT_STREAM,
        ),
        metrics: metrics.clone(),
        config: StreamConfig {
            flush_interval: args.flush_interval,
            flush_rows: 1_000_000,
            flush_bytes: 256 << 20,
            idle_close: args.idle_close,
            max_message_bytes: max_body + 64,
            shutdown_timeout: args.shutdown_timeout,
        },
        reloads,
    };
    let running = Arc::new(AtomicBool::new(true));
    let compactor = stream::compact::spawn(&args.compaction, &args.table, metrics.clone());
    let engine = {
        let signals = signals.clone();
        let running = running.clone();
        tokio::spawn(async move {
            let result = stream::run(parts, tables, &signals).await;
            if let Some(compactor) = compactor {
                compactor.abort();
            }
            running.store(false, Ordering::SeqCst);
            if let Err(e) = &result {
                tracing::error!("the table writer stopped: {e}; shutting down");
            }
            // Whatever ended the engine ends the server too.
            signals.stop.store(true, Ordering::SeqCst);
            result
        })
    };
    let app = App::new(
        tokens,
        Mode::Direct {
            queue,
            wal,
            running,
            table: args.table.clone(),
        },
        dead,
        Some(metrics),
        max_body,
        args.forward_timeout,
        draining.clone(),
    );
    Ok((app, engine))
}

/// The write-ahead log direct mode answers from (`--wal`, or the local
/// table's own), opened at the table's offset, with what the table lacks
/// for the queue; `None` with `--no-wal` or for a table in an object store
/// without `--wal`.
async fn open_wal(
    args: &ServeArgs,
    resumer: &TableResumer,
) -> anyhow::Result<(Option<Durable>, Option<(Wal, Arc<AtomicI64>)>)> {
    let own = args.table.local_path().map(|t| t.join(WAL_DIR));
    let dir = match (&args.wal, args.no_wal, own) {
        (Some(dir), _, _) => dir.clone(),
        (None, false, Some(own)) => own,
        (None, true, Some(own)) if own.exists() => {
            // A log left by an earlier run must be committed first.
            let (_, pending) = read_and_open(resumer, &own).await?;
            if !pending.messages.is_empty() {
                bail!(
                    "--no-wal: the write-ahead log {} holds {} messages the table does not; \
                     start once without --no-wal to commit them",
                    own.display(),
                    pending.messages.len()
                );
            }
            return Ok((None, None));
        }
        _ => {
            tracing::info!("no write-ahead log: envelopes are answered once committed");
            return Ok((None, None));
        }
    };
    let (wal, pending) = read_and_open(resumer, &dir).await?;
    let committed = Arc::new(AtomicI64::new(pending.first));
    tracing::info!(dir = %dir.display(), "envelopes are answered once synced into the write-ahead log");
    let durable = Durable {
        pending,
        committed: committed.clone(),
    };
    Ok((Some(durable), Some((wal, committed))))
}

/// Reads the table's offset of the direct stream and opens the log at it.
async fn read_and_open(
    resumer: &TableResumer,
    dir: &std::path::Path,
) -> anyhow::Result<(Wal, wal::Pending)> {
    let (resumer, dir) = (resumer.clone(), dir.to_owned());
    tokio::task::spawn_blocking(move || {
        let set = resumer.read(&[0])?;
        let next = set.parts.first().and_then(|p| p.offset).unwrap_or(0);
        Ok(Wal::open(&dir, next)?)
    })
    .await
    .context("the write-ahead log's opening panicked")?
}
