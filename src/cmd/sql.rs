//! `pullstats sql`: one statement over the table, results on stdout.

use crate::table::Location;
use std::io::Write;

use crate::cli::SqlArgs;
use crate::query::{self, OutputFormat};

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    match &args.statement {
        Some(statement) => {
            run_statement(&args.table, args.as_of_version, statement, args.format).await
        }
        None if args.as_of_version.is_some() => {
            anyhow::bail!("--as-of-version needs a statement (the shell reads the latest version)")
        }
        None => crate::cmd::shell::run(&args.table).await,
    }
}

/// Runs one statement over the table at `table`, results on stdout.
pub async fn run_statement(
    table: &Location,
    version: Option<u64>,
    statement: &str,
    format: OutputFormat,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if format == OutputFormat::Parquet && std::io::stdout().is_terminal() {
        anyhow::bail!("parquet output is binary: redirect stdout to a file");
    }
    let result = async {
        let ctx = query::session_at(table, version).await?;
        let stream = query::execute(&ctx, statement).await?;
        let mut out = std::io::BufWriter::new(std::io::stdout());
        query::write_results(stream, format, &mut out, &|_| ()).await?;
        out.flush()
            .map_err(|e| query::QueryError::Output(e.to_string()))?;
        Ok::<_, query::QueryError>(())
    }
    .await;
    // One clear line: DataFusion's messages can span lines.
    result.map_err(|e| {
        anyhow::anyhow!(e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "))
    })
}
