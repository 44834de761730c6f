//! `pullstats read-file`: reads every line of a file and parses it as JSON
//! into nothing (serde's `IgnoredAny`), on one thread, with the reader the
//! file ingest uses. Its rate is the raw limit the file ingest's end-to-end
//! rate is compared with (`benches/bench.py`).

use std::time::Instant;

use anyhow::Context;
use serde::de::IgnoredAny;

use crate::cli::ReadFileArgs;
use crate::cmd::ingest::open_input;
use crate::pipeline::decode::DEFAULT_MAX_LINE_BYTES;
use crate::pipeline::source::{Line, LineReader};

pub fn run(args: ReadFileArgs) -> anyhow::Result<()> {
    let (input, _, source) = open_input(&args.file)?;
    let started = Instant::now();
    let mut reader = LineReader::new(input, DEFAULT_MAX_LINE_BYTES);
    let mut buf = Vec::with_capacity(4096);
    let (mut lines, mut not_json) = (0u64, 0u64);
    while let Some(line) = reader
        .next_line(&mut buf)
        .with_context(|| format!("cannot read {source} after line {lines}"))?
    {
        lines += 1;
        let parsed = match line {
            Line::Complete => serde_json::from_slice::<IgnoredAny>(&buf).is_ok(),
            Line::TooLong { .. } => false,
        };
        not_json += u64::from(!parsed);
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "parsed {lines} lines ({:.1} MiB) of {source} in {secs:.2} s: {:.0} lines/s, {not_json} not JSON",
        reader.bytes_read() as f64 / (1024.0 * 1024.0),
        lines as f64 / secs
    );
    Ok(())
}
