//! `pullstats export`: one view of spec §4 for one time span, to a file or
//! stdout, streamed batch by batch (bounded memory for raw exports of any
//! size), with a row counter on a terminal.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{ExportArgs, ExportFormat};
use crate::query::export::{day_rows, statements, Filters, Span, View};
use crate::query::{self, OutputFormat};
use crate::table::{self, TableKind};

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let span = span(&args)?;
    let format = match args.format {
        ExportFormat::Csv => OutputFormat::Csv,
        ExportFormat::Json => OutputFormat::Json,
        ExportFormat::Parquet => OutputFormat::Parquet,
    };
    let path = args.output.as_deref().filter(|p| p.as_os_str() != "-");
    if format == OutputFormat::Parquet && (path.is_none() || args.gzip) {
        bail!("parquet needs --output PATH and is compressed already (no --gzip)");
    }
    let filters = Filters {
        namespaces: args.namespaces.clone(),
        repositories: args.repositories.clone(),
    };
    let pulls = table::open(&args.table, TableKind::Pulls).await?;
    let day_rows = if args.view == View::Raw {
        day_rows(&args.table, &pulls)?
    } else {
        Default::default()
    };
    let statements = statements(
        args.view,
        &span,
        &filters,
        &args.by,
        (args.granularity, args.group),
        (&day_rows, args.raw_slice_rows),
    );
    tracing::debug!(?statements, "export");
    let ctx = query::session_over(&args.table, pulls, true).await?;
    let stream = query::execute_in_order(&ctx, statements).await?;

    let sink: Box<dyn Write + Send> = match path {
        Some(p) => {
            Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        None => Box::new(io::stdout()),
    };
    let mut out: Box<dyn Write + Send> = if args.gzip {
        Box::new(flate2::write::GzEncoder::new(
            sink,
            flate2::Compression::default(),
        ))
    } else {
        sink
    };
    let bar = if io::stderr().is_terminal() && path.is_some() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut buffered = BufWriter::with_capacity(1 << 20, &mut out);
    let rows = query::write_results(stream, format, &mut buffered, &|n| {
        bar.set_message(format!("{n} rows"))
    })
    .await?;
    buffered.flush().context("cannot write the export")?;
    drop(buffered);
    out.flush().context("cannot write the export")?;
    drop(out);
    bar.finish_and_clear();
    if let Some(p) = path {
        eprintln!(
            "{rows} rows ({:?}, {} to {}) written to {}",
            args.view,
            span.from,
            span.to,
            p.display()
        );
    }
    Ok(())
}

fn span(args: &ExportArgs) -> anyhow::Result<Span> {
    if args.view == View::Trend {
        let Some(months) = args.last else {
            bail!("--view trend takes --last 3m|6m|12m (and --granularity week|month)");
        };
        let until = match &args.until {
            Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .with_context(|| format!("--until `{d}` is not a YYYY-MM-DD date"))?,
            None => chrono::Utc::now().date_naive(),
        };
        return Ok(Span::trailing(args.granularity, months, until));
    }
    Ok(match (&args.week, &args.month, &args.from, &args.to) {
        (Some(w), _, _, _) => Span::week(w)?,
        (_, Some(m), _, _) => Span::month(m)?,
        (_, _, Some(f), Some(t)) => Span::days(f, t)?,
        _ => bail!("give one of --week, --month or --from/--to (or --view trend --last 3m|6m|12m)"),
    })
}
