//! `pullstats export`: one view of spec §4 for one time span, to a file or
//! stdout, streamed batch by batch (bounded memory for raw exports of any
//! size), with a row counter on a terminal.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{ExportArgs, ExportFormat};
use crate::query::export::{ExportRequest, Filters, Span, View};
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
    let pulls = table::Snapshot::open(&args.table, TableKind::Pulls).await?;
    let request = ExportRequest {
        view: args.view,
        span,
        filters,
        by: args.by.clone(),
        trend: (args.granularity, args.group),
        raw_slice_rows: args.raw_slice_rows,
        periods: !args.no_periods,
    };
    let stream = request.run(&args.table, pulls).await?;

    // A file export is written beside its destination and renamed into
    // place once complete: a failed export leaves no partial file behind
    // and does not clobber an earlier one. A destination that exists and is
    // not a regular file (/dev/null, a FIFO) is written to as it is: a
    // rename would replace the device with a file.
    let special = path.is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| !m.is_file()));
    let partial = path.filter(|_| !special).map(Partial::beside);
    let sink: Box<dyn Write + Send> = match (&partial, path) {
        (Some(t), _) => Box::new(
            File::create(&t.0).with_context(|| format!("cannot create {}", t.0.display()))?,
        ),
        (None, Some(p)) => Box::new(
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        (None, None) => Box::new(io::stdout()),
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
        if let Some(t) = partial {
            t.finish(p)?;
        }
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

/// An export file being written; removed when dropped unless finished.
struct Partial(PathBuf);

impl Partial {
    /// `.NAME.partial-PID` in `dest`'s directory (so the rename is atomic).
    fn beside(dest: &Path) -> Self {
        let name = dest
            .file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy());
        let tmp = format!(".{name}.partial-{}", std::process::id());
        Self(dest.with_file_name(tmp))
    }

    /// Moves the file into place (dropping `self` then finds nothing left
    /// to remove).
    fn finish(self, dest: &Path) -> anyhow::Result<()> {
        std::fs::rename(&self.0, dest)
            .with_context(|| format!("cannot move {} to {}", self.0.display(), dest.display()))
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
