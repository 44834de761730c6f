//! `pullstats ingest --from-file`: a file (or stdin) into the pulls table.
//!
//! Three threads share the work: one reads and decodes lines, one
//! sessionizes, enriches and builds Arrow batches, and the async side encodes
//! them to Parquet and commits. Bounded channels between them keep memory
//! flat. Nothing is committed unless the whole input was processed, so a
//! failed run can be repeated without duplicates. Decoding starts while the
//! tables are opened, and at the end both tables' open files are sealed at
//! once: a short run is mostly these fixed costs.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal};
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use anyhow::{anyhow, Context};
use arrow::array::RecordBatch;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc;

use crate::cli::IngestArgs;
use crate::config;
use crate::event::{Micros, RequestEvent};
use crate::pipeline::dead_letter::{DeadLetterSink, FileDeadLetters, Position};
use crate::pipeline::decode::Decoder;
use crate::pipeline::future::{self, DataBound};
use crate::pipeline::source::{Line, LineReader};
use crate::pipeline::{IngestStats, Pipeline};
use crate::table::{self, Location, TableKind, TableWriter};

/// Batches in flight between the pipeline thread and the writer.
const CHANNEL_BATCHES: usize = 4;

/// What the pipeline thread hands the writers.
enum Output {
    Pulls(RecordBatch),
    Rejected(RecordBatch),
}

/// What an ingest did.
#[derive(Debug, Clone)]
pub struct IngestReport {
    pub stats: IngestStats,
    /// The table version committed; `None` when there was nothing to write.
    pub version: Option<u64>,
    pub dead_letters: u64,
    /// Where they are: a local path, or the object's URL.
    pub dead_letters_at: String,
}

/// `<table>.dead-letter.jsonl`, beside a local table directory; `None` for
/// a table in an object store (see [`ingest`]).
pub fn default_dead_letter_path(table: &Location) -> Option<PathBuf> {
    table
        .beside(".dead-letter.jsonl")
        .local_path()
        .map(Path::to_owned)
}

/// `pullstats ingest --from-file`: ingests and prints the summary.
pub async fn run(args: IngestArgs) -> anyhow::Result<IngestReport> {
    let report = ingest(&args).await?;
    println!("{}", report.stats.summary_line());
    if report.dead_letters > 0 {
        println!(
            "{} bad line(s) written to {}",
            report.dead_letters, report.dead_letters_at
        );
    }
    Ok(report)
}

/// Does the ingest without printing the summary (used by `demo` and tests).
pub async fn ingest(args: &IngestArgs) -> anyhow::Result<IngestReport> {
    let (pipeline, _) = config::pipeline(args)?;
    let from_file = args
        .from_file
        .as_deref()
        .context("nothing to ingest: give --from-file or --brokers and --topic")?;
    let (input, size, source) = open_input(from_file)?;
    let run_id = format!("ingest-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    // Beside a table in an object store, bad lines are collected in a local
    // temporary file and uploaded as `<table>.dead-letter/<run>.jsonl`.
    let (dead_letter_path, upload_to) =
        match (&args.dead_letter, default_dead_letter_path(&args.table)) {
            (Some(path), _) => (path.clone(), None),
            (None, Some(path)) => (path, None),
            (None, None) => (
                std::env::temp_dir().join(format!(
                    "pullstats-{run_id}-{}.dead-letter.jsonl",
                    std::process::id()
                )),
                Some(args.table.beside(".dead-letter")),
            ),
        };
    let dead = FileDeadLetters::new(&dead_letter_path, run_id.clone());
    let progress = progress_bar(size, !args.no_progress);
    let started = Instant::now();

    let (tx, mut rx) = mpsc::channel::<Output>(CHANNEL_BATCHES);
    let limits = Limits {
        max_line: args.max_line_bytes,
        max_future: future::bound_micros(args.session.max_future),
    };
    let bar = progress.clone();
    // Lines are read and decoded while the tables are opened (creating them
    // is two commits); the pipeline thread takes no line until they are
    // open, so a table that cannot be opened leaves no dead letters.
    let (tables_open, tables_opened) = std::sync::mpsc::sync_channel::<()>(1);
    let worker = std::thread::Builder::new()
        .name("pullstats-pipeline".into())
        .spawn(move || {
            let go = tables_opened.recv();
            go.map_err(|_| anyhow!("the tables were not opened"))?;
            process(input, &source, limits, pipeline, dead, tx, &bar)
        })
        .context("cannot start the pipeline thread")?;
    let writers = async {
        let table = table::open_or_create(&args.table, TableKind::Pulls).await?;
        let writer = TableWriter::new(&args.table, table)?;
        let rejected_path = table::rejected_path(&args.table);
        let rejected = table::open_or_create(&rejected_path, TableKind::Rejected).await?;
        Ok::<_, table::TableError>((writer, TableWriter::new(&rejected_path, rejected)?))
    };
    let (mut writer, rejected_writer) = match writers.await {
        Ok(writers) => writers,
        Err(e) => {
            drop(tables_open);
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
            return Err(e.into());
        }
    };
    // The pipeline thread is waiting for this; it cannot have gone.
    let _ = tables_open.send(());
    // The rejected counts are written by a task of their own, so that at the
    // end their files are sealed while the actions' are.
    let (rejected_tx, rejected_rx) = mpsc::channel::<RecordBatch>(CHANNEL_BATCHES);
    let rejected_task = tokio::spawn(write_rejected(rejected_writer, rejected_rx));

    let (mut write_error, mut rejected_stopped) = (None, false);
    while let Some(out) = rx.recv().await {
        let written = match out {
            Output::Pulls(batch) => writer.write(batch).await,
            Output::Rejected(batch) => {
                // Fails only when the task stopped on an error (below).
                rejected_stopped = rejected_tx.send(batch).await.is_err();
                Ok(())
            }
        };
        if let Err(e) = written {
            write_error = Some(e);
        }
        if write_error.is_some() || rejected_stopped {
            break;
        }
    }
    drop(rx);
    drop(rejected_tx);
    let processed = tokio::task::spawn_blocking(move || worker.join())
        .await
        .context("pipeline thread lost")?
        .map_err(|_| anyhow!("the pipeline thread panicked"))?;
    progress.finish_and_clear();
    let failed = |e: table::TableError| {
        anyhow::Error::from(e).context("writing the table failed; nothing was committed")
    };
    let rejected = |task: tokio::task::JoinHandle<_>| async {
        let written: Result<TableWriter, _> =
            task.await.context("the rejected counts' writer was lost")?;
        written.map_err(failed)
    };
    if let Some(e) = write_error {
        rejected_task.abort();
        return Err(failed(e));
    }
    if rejected_stopped {
        return Err(match rejected(rejected_task).await {
            Err(e) => e,
            Ok(_) => anyhow!("the rejected counts' writer stopped"),
        });
    }
    let (stats, dead_letters) = match processed {
        Ok(processed) => processed,
        Err(e) => {
            rejected_task.abort();
            return Err(e.context("reading the input failed; nothing was committed"));
        }
    };
    // The actions' open files are sealed while the rejected task seals its
    // own; nothing is committed unless both were written.
    let sealed = writer.seal_all().await;
    let mut rejected_writer = rejected(rejected_task).await?;
    sealed.map_err(failed)?;

    let metadata = HashMap::from([(
        "pullstats".to_owned(),
        json!({ "run": run_id, "source": from_file.display().to_string(), "stats": stats }),
    )]);
    let version = writer
        .commit(metadata.clone(), Vec::new())
        .await
        .context("committing to the table failed; nothing was committed")?;
    rejected_writer
        .commit(metadata, Vec::new())
        .await
        .with_context(|| {
            format!(
            "the actions were committed (version {version:?}) but the rejected counts were not; \
             they are in the summary line above"
        )
        })?;
    tracing::info!(
        elapsed_s = format!("{:.2}", started.elapsed().as_secs_f64()),
        lines_per_s = format!("{:.0}", stats.lines as f64 / started.elapsed().as_secs_f64().max(1e-9)),
        version = ?version,
        "ingest committed"
    );
    let mut dead_letters_at = dead_letter_path.display().to_string();
    if let (Some(dir), true) = (upload_to, dead_letters > 0) {
        match table::upload(&dir, &format!("{run_id}.jsonl"), &dead_letter_path).await {
            Ok(url) => {
                let _ = std::fs::remove_file(&dead_letter_path);
                dead_letters_at = url;
            }
            Err(e) => tracing::error!("{e}; the bad lines stay in {dead_letters_at}"),
        }
    }
    Ok(IngestReport {
        stats,
        version,
        dead_letters,
        dead_letters_at,
    })
}

/// Writes the rejected counts as they come, then seals their files.
async fn write_rejected(
    mut writer: TableWriter,
    mut batches: mpsc::Receiver<RecordBatch>,
) -> Result<TableWriter, table::TableError> {
    while let Some(batch) = batches.recv().await {
        writer.write(batch).await?;
    }
    writer.seal_all().await?;
    Ok(writer)
}

pub(crate) type Input = Box<dyn BufRead + Send>;

/// The file (or stdin for `-`), its size when known, and its name for messages.
pub(crate) fn open_input(path: &Path) -> anyhow::Result<(Input, Option<u64>, String)> {
    if path.as_os_str() == "-" {
        return Ok((
            Box::new(BufReader::with_capacity(1 << 20, io::stdin())),
            None,
            "stdin".into(),
        ));
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().ok().map(|m| m.len());
    Ok((
        Box::new(BufReader::with_capacity(1 << 20, file)),
        size,
        path.display().to_string(),
    ))
}

fn progress_bar(size: Option<u64>, wanted: bool) -> ProgressBar {
    if !wanted || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match size {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if size.is_some() {
        "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}"
    } else {
        "{spinner} {bytes} {bytes_per_sec} {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// Lines per chunk handed from the decode thread to the pipeline thread.
const CHUNK_LINES: u64 = 4096;
/// Chunks in flight between the two.
const CHANNEL_CHUNKS: usize = 4;

/// What the decode thread refuses.
#[derive(Clone, Copy)]
struct Limits {
    max_line: usize,
    /// `--max-future` (µs), bounding event time by the input around it.
    max_future: Option<Micros>,
}

/// Consecutive input lines, decoded.
#[derive(Default)]
struct Decoded {
    lines: u64,
    events: Vec<RequestEvent>,
    /// The input line of each event.
    event_lines: Vec<u64>,
    bad: Vec<BadLine>,
}

impl Decoded {
    /// Room for `lines` flat lines' events (an envelope holds more).
    fn with_capacity(lines: u64) -> Self {
        let lines = lines as usize;
        Self {
            events: Vec::with_capacity(lines),
            event_lines: Vec::with_capacity(lines),
            ..Self::default()
        }
    }

    /// Moves the events `bound` refuses to the bad lines, re-encoded (the
    /// line may have held other, good events).
    fn refuse_future(&mut self, bound: &mut DataBound, next: &[RequestEvent]) {
        let refused = bound.refuse(&self.events, next);
        if refused.is_empty() {
            return;
        }
        let mut refused = refused.into_iter().peekable();
        let mut kept = Vec::with_capacity(self.events.len());
        let mut kept_lines = Vec::with_capacity(self.events.len());
        let events = mem::take(&mut self.events).into_iter();
        for (i, (event, line)) in events.zip(mem::take(&mut self.event_lines)).enumerate() {
            match refused.next_if(|(at, _)| *at == i) {
                Some((_, reason)) => self.bad.push(BadLine {
                    line,
                    reason: format!("invalid `timestamp`: {reason}"),
                    payload: event.to_flat_json().into_bytes(),
                }),
                None => {
                    kept.push(event);
                    kept_lines.push(line);
                }
            }
        }
        self.events = kept;
        self.event_lines = kept_lines;
        self.bad.sort_by_key(|b| b.line);
    }
}

/// A line the decoder refused, kept for the dead-letter sink.
struct BadLine {
    line: u64,
    reason: String,
    payload: Vec<u8>,
}

/// The pipeline: one thread reads and decodes lines, this one sessionizes,
/// enriches and builds batches, dead letters aside.
fn process(
    input: Input,
    source: &str,
    limits: Limits,
    mut pipeline: Pipeline,
    mut dead: FileDeadLetters,
    tx: mpsc::Sender<Output>,
    bar: &ProgressBar,
) -> anyhow::Result<(IngestStats, u64)> {
    let (chunks_tx, chunks) = std::sync::mpsc::sync_channel(CHANNEL_CHUNKS);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("pullstats-decode".into())
            .spawn_scoped(scope, || {
                decode_lines(input, source, limits, chunks_tx, bar)
            })
            .context("cannot start the decode thread")?;
        // Returning early drops `chunks`, which stops the decode thread.
        for chunk in chunks {
            let chunk = chunk?;
            for bad in &chunk.bad {
                let position = Position::Line { line: bad.line };
                pipeline.reject(&bad.reason, &bad.payload, source, position, &mut dead)?;
            }
            pipeline.push_decoded(0, chunk.lines, chunk.events)?;
            send_batches(&mut pipeline, &tx)?;
        }
        pipeline.finish()?;
        send_batches(&mut pipeline, &tx)?;
        dead.flush()?;
        Ok((pipeline.stats(), dead.count()))
    })
}

fn send_batches(pipeline: &mut Pipeline, tx: &mpsc::Sender<Output>) -> anyhow::Result<()> {
    let pulls = pipeline.take_ready().into_iter().map(Output::Pulls);
    let rejected = pipeline.take_rejected().into_iter().map(Output::Rejected);
    for out in pulls.chain(rejected) {
        tx.blocking_send(out)
            .map_err(|_| anyhow!("the table writer stopped"))?;
    }
    Ok(())
}

/// The decode thread: lines in, [`Decoded`] chunks out, in input order. A
/// read error ends the stream as its last item. With `--max-future`, a chunk
/// is held until the next one is decoded, the window its events are judged
/// in.
fn decode_lines(
    input: Input,
    source: &str,
    limits: Limits,
    out: SyncSender<anyhow::Result<Decoded>>,
    bar: &ProgressBar,
) {
    let max_line = limits.max_line;
    let mut reader = LineReader::new(input, max_line);
    let mut decoder = Decoder::new(max_line);
    let mut bound = limits.max_future.map(DataBound::new);
    let mut held: Option<Decoded> = None;
    // Sends the held chunk, judged with `next` as its lookahead; false when
    // the pipeline thread stopped (it reports why).
    let mut release = |held: &mut Option<Decoded>, next: &[RequestEvent]| -> bool {
        let Some(mut chunk) = held.take() else {
            return true;
        };
        if let Some(bound) = bound.as_mut() {
            chunk.refuse_future(bound, next);
        }
        out.send(Ok(chunk)).is_ok()
    };
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = Decoded::with_capacity(CHUNK_LINES);
    let mut line_no = 0u64;
    loop {
        let line = match reader.next_line(&mut buf) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                let e = anyhow!(e).context(format!("cannot read {source} after line {line_no}"));
                let _ = out.send(Err(e));
                return;
            }
        };
        line_no += 1;
        chunk.lines += 1;
        let refused = match line {
            Line::Complete => {
                let result = decoder.decode(&buf, &mut chunk.events);
                chunk.event_lines.resize(chunk.events.len(), line_no);
                result.err().map(|e| e.to_string())
            }
            Line::TooLong { len } => Some(format!(
                "line is longer than {max_line} bytes ({len} bytes; the first {max_line} are kept)"
            )),
        };
        if let Some(reason) = refused {
            chunk.bad.push(BadLine {
                line: line_no,
                reason,
                payload: buf.clone(),
            });
        }
        if chunk.lines == CHUNK_LINES {
            bar.set_position(reader.bytes_read());
            bar.set_message(format!("{line_no} lines"));
            if !release(&mut held, &chunk.events) {
                return;
            }
            held = Some(mem::replace(
                &mut chunk,
                Decoded::with_capacity(CHUNK_LINES),
            ));
        }
    }
    bar.set_position(reader.bytes_read());
    if release(&mut held, &chunk.events) {
        release(&mut Some(chunk), &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_go_beside_the_table() {
        let local = |p: &str| Location::Local(PathBuf::from(p));
        assert_eq!(
            default_dead_letter_path(&local("/data/pulls")),
            Some(PathBuf::from("/data/pulls.dead-letter.jsonl"))
        );
        assert_eq!(
            default_dead_letter_path(&local("pulls/")),
            Some(PathBuf::from("pulls.dead-letter.jsonl"))
        );
        let remote = Location::parse("s3://lake/pulls").expect("url");
        assert_eq!(default_dead_letter_path(&remote), None);
    }
}
