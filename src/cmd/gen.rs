//! `pullstats gen`: writes generated request events to a file or stdout and
//! reports what it generated on stderr (and optionally as JSON).

use std::fs::File;
use std::io::{self, BufWriter, Write};

use anyhow::Context;

use crate::cli::GenArgs;
use crate::gen::{generate, GenConfig};

pub fn run(args: GenArgs) -> anyhow::Result<()> {
    let cfg = GenConfig {
        events: args.events,
        seed: args.seed,
        start: args.start,
        days: args.days,
        format: args.format,
        bad_ratio: args.bad_ratio,
    };
    let stats = match args.output.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let stats = generate(cfg, &mut out)
                .with_context(|| format!("cannot write {}", path.display()))?;
            out.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
            stats
        }
        None => {
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
            generate(cfg, &mut out).context("cannot write to stdout")?
        }
    };
    if let Some(path) = &args.stats {
        let json = serde_json::to_string_pretty(&stats)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(
        lines = stats.lines,
        bad = stats.bad_lines,
        manifest_2xx = stats.manifest_requests,
        blob = stats.blob_requests,
        non_2xx = stats.rejected_requests,
        not_pull = stats.not_pull_requests,
        intended_actions = stats.actions(),
        pull_by_tag = stats.pull_by_tag,
        pull_by_digest = stats.pull_by_digest,
        version_check = stats.version_check,
        "generated"
    );
    Ok(())
}
