//! `pullstats sql` without a statement: an interactive SQL shell over the
//! table, with history, multi-line statements (run at `;`) and backslash
//! commands (`\d`, `\dt`, `\q`, `\?`). When stdin is not a terminal the same
//! loop reads statements from it, so scripts can pipe SQL in.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use datafusion::prelude::SessionContext;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::Editor;

use crate::query::{self, OutputFormat};

const HELP: &str = "\
  SQL statements end with `;` and may span lines. Tables: pulls, rejected.
  \\d [TABLE]   describe a table (default: pulls)
  \\dt          list the tables
  \\q           quit (Ctrl-D also)
  \\?           this help";

/// What one input line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Input {
    Statement(String),
    Command(String),
    More,
}

/// Accumulates lines into statements.
#[derive(Debug, Default)]
struct Buffer {
    pending: String,
}

impl Buffer {
    fn push(&mut self, line: &str) -> Input {
        let trimmed = line.trim();
        if self.pending.is_empty() && trimmed.starts_with('\\') {
            return Input::Command(trimmed.to_owned());
        }
        if !trimmed.is_empty() {
            if !self.pending.is_empty() {
                self.pending.push('\n');
            }
            self.pending.push_str(line);
        }
        if trimmed.ends_with(';') {
            let sql = std::mem::take(&mut self.pending);
            return Input::Statement(sql.trim().trim_end_matches(';').to_owned());
        }
        Input::More
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// What is left at the end of input (a last statement without `;`).
    fn finish(&mut self) -> Option<String> {
        let sql = std::mem::take(&mut self.pending);
        let sql = sql.trim().trim_end_matches(';').trim();
        (!sql.is_empty()).then(|| sql.to_owned())
    }
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pullstats_history"))
}

pub async fn run(table: &crate::table::Location) -> anyhow::Result<()> {
    let ctx = query::session(table).await?;
    if !std::io::stdin().is_terminal() {
        return run_piped(&ctx).await;
    }
    let mut editor: Editor<(), DefaultHistory> = Editor::new()?;
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "pullstats SQL shell on {} — \\? for help, \\q to quit",
        table
    );
    let mut buffer = Buffer::default();
    loop {
        let prompt = if buffer.is_empty() {
            "pullstats> "
        } else {
            "        -> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let input = buffer.push(&line);
                match &input {
                    Input::Statement(sql) => {
                        let _ = editor.add_history_entry(format!("{sql};"));
                    }
                    Input::Command(cmd) => {
                        let _ = editor.add_history_entry(cmd.as_str());
                    }
                    Input::More => {}
                }
                if !handle(&ctx, input).await {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {
                buffer = Buffer::default();
                println!("(statement discarded)");
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

async fn run_piped(ctx: &SessionContext) -> anyhow::Result<()> {
    let mut buffer = Buffer::default();
    for line in std::io::stdin().lock().lines() {
        if !handle(ctx, buffer.push(&line?)).await {
            return Ok(());
        }
    }
    if let Some(sql) = buffer.finish() {
        handle(ctx, Input::Statement(sql)).await;
    }
    Ok(())
}

/// Runs one input; false to quit. Errors are printed and the shell goes on.
async fn handle(ctx: &SessionContext, input: Input) -> bool {
    let sql = match input {
        Input::More => return true,
        Input::Statement(sql) => sql,
        Input::Command(cmd) => {
            let mut parts = cmd.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some("\\q"), _) => return false,
                (Some("\\dt"), _) => "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1".to_owned(),
                (Some("\\d"), table) => {
                    let table = table.unwrap_or("pulls").replace('\'', "''");
                    format!(
                        "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                         WHERE table_name = '{table}' ORDER BY ordinal_position"
                    )
                }
                (Some("\\?"), _) | (Some("\\h"), _) => {
                    println!("{HELP}");
                    return true;
                }
                _ => {
                    println!("unknown command {cmd}; \\? for help");
                    return true;
                }
            }
        }
    };
    let result = async {
        let stream = query::execute(ctx, &sql).await?;
        let mut out = std::io::stdout();
        query::write_results(stream, OutputFormat::Table, &mut out, &|_| ()).await?;
        out.flush()
            .map_err(|e| query::QueryError::Output(e.to_string()))
    }
    .await;
    if let Err(e) = result {
        println!(
            "error: {}",
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_at_semicolons_and_span_lines() {
        let mut b = Buffer::default();
        assert_eq!(b.push("SELECT count(*)"), Input::More);
        assert_eq!(
            b.push("  FROM pulls;"),
            Input::Statement("SELECT count(*)\n  FROM pulls".into())
        );
        assert!(b.is_empty());
        assert_eq!(
            b.push("\\d rejected"),
            Input::Command("\\d rejected".into())
        );
        assert_eq!(b.push(""), Input::More);
        assert_eq!(b.push("SELECT 1"), Input::More);
        assert_eq!(b.finish(), Some("SELECT 1".into()));
        assert_eq!(b.finish(), None);
    }
}
