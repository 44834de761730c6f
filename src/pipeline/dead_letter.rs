//! Dead letters: input that could not be decoded, kept with its reason and
//! position so nothing bad disappears silently and it can be replayed.
//!
//! The file sink writes JSON Lines beside the table. A payload that is valid
//! UTF-8 is kept as `raw`, anything else as `raw_hex`, byte for byte. Dead
//! letters hold raw input (client IPs included): protect the file as you
//! protect the input.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where a bad input came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Position {
    Line {
        line: u64,
    },
    Kafka {
        partition: i32,
        offset: i64,
    },
    /// The n-th request `pullstats serve` received since it started.
    Http {
        request: u64,
    },
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Line { line } => write!(f, "line {line}"),
            Position::Kafka { partition, offset } => {
                write!(f, "partition {partition} offset {offset}")
            }
            Position::Http { request } => write!(f, "request {request}"),
        }
    }
}

/// One rejected input.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    pub source: &'a str,
    pub position: Position,
    pub reason: &'a str,
    pub payload: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write dead letters to {sink}: {source}")]
pub struct DeadLetterError {
    /// The file or topic.
    pub sink: String,
    #[source]
    pub source: std::io::Error,
}

/// Receives dead letters (a file here; a Kafka topic for the daemon).
pub trait DeadLetterSink: Send {
    fn send(&mut self, letter: DeadLetter<'_>) -> Result<(), DeadLetterError>;
    fn flush(&mut self) -> Result<(), DeadLetterError>;
    /// Letters accepted so far.
    fn count(&self) -> u64;
}

#[derive(Serialize)]
struct Record<'a> {
    run: &'a str,
    source: &'a str,
    #[serde(flatten)]
    position: Position,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_hex: Option<String>,
}

/// Appends dead letters to a JSON Lines file, created on the first letter.
pub struct FileDeadLetters {
    path: PathBuf,
    run: String,
    out: Option<BufWriter<File>>,
    count: u64,
}

impl FileDeadLetters {
    /// `run` tags every record so letters of different runs can be told apart.
    pub fn new(path: &Path, run: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            run: run.into(),
            out: None,
            count: 0,
        }
    }

    fn err(&self, source: std::io::Error) -> DeadLetterError {
        DeadLetterError {
            sink: self.path.display().to_string(),
            source,
        }
    }
}

impl DeadLetterSink for FileDeadLetters {
    fn send(&mut self, letter: DeadLetter<'_>) -> Result<(), DeadLetterError> {
        if self.out.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| self.err(e))?;
            self.out = Some(BufWriter::new(file));
        }
        let line = json_line(&self.run, &letter).map_err(|e| self.err(e.into()))?;
        let result = match self.out.as_mut() {
            Some(out) => out.write_all(&line),
            None => Ok(()),
        };
        result.map_err(|e| self.err(e))?;
        self.count += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeadLetterError> {
        let result = match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        };
        result.map_err(|e| self.err(e))
    }

    fn count(&self) -> u64 {
        self.count
    }
}

/// One letter as a JSON Lines record (newline included), tagged with `run`:
/// what every sink that writes files or objects stores.
pub fn json_line(run: &str, letter: &DeadLetter<'_>) -> Result<Vec<u8>, serde_json::Error> {
    let text = std::str::from_utf8(letter.payload).ok();
    let record = Record {
        run,
        source: letter.source,
        position: letter.position,
        reason: letter.reason,
        raw: text,
        raw_hex: text.is_none().then(|| hex(letter.payload)),
    };
    let mut line = serde_json::to_vec(&record)?;
    line.push(b'\n');
    Ok(line)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_keep_reason_position_and_exact_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dlq.jsonl");
        let mut sink = FileDeadLetters::new(&path, "run-1");
        assert!(!path.exists(), "no file until there is a letter");
        sink.send(DeadLetter {
            source: "in.jsonl",
            position: Position::Line { line: 7 },
            reason: "invalid JSON",
            payload: b"{oops",
        })
        .expect("send");
        sink.send(DeadLetter {
            source: "in.jsonl",
            position: Position::Line { line: 9 },
            reason: "line is not valid UTF-8",
            payload: &[0xff, 0x00],
        })
        .expect("send");
        sink.flush().expect("flush");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines[0]["line"], 7);
        assert_eq!(lines[0]["raw"], "{oops");
        assert_eq!(lines[0]["reason"], "invalid JSON");
        assert_eq!(lines[1]["raw_hex"], "ff00");
        assert_eq!(sink.count(), 2);
    }
}
