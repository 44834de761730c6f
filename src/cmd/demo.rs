//! `pullstats demo`: the first command a newcomer runs. Generates last
//! week's traffic, ingests it into a local table and prints what the table
//! says, with the next commands to try and the `serve` command (with a read
//! token) that shows it in the dashboard.

use std::path::Path;

use anyhow::{bail, Context};
use chrono::Datelike;

use crate::cli::{DemoArgs, EnrichArgs, IngestArgs, KafkaArgs, PrivacyArgs, SessionArgs};
use crate::gen::{generate, Format, GenConfig};
use crate::pipeline::decode::DEFAULT_MAX_LINE_BYTES;
use crate::pipeline::sessionize::SessionConfig;
use crate::query::{self, OutputFormat};
use crate::serve::tokens::{self, NewToken, Role};

/// Marks a directory as a demo's, so a re-run may replace it.
const MARKER: &str = ".pullstats-demo";

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    prepare_dir(&args.dir)?;
    let events = args.dir.join("events.jsonl");
    let table = args.dir.join("pulls");
    // The last complete ISO week: what the dashboard's default view shows.
    let today = chrono::Utc::now().date_naive();
    let start = today - chrono::Days::new(7 + u64::from(today.weekday().num_days_from_monday()));
    let week = start.format("%G-W%V");
    let cfg = GenConfig {
        events: args.events,
        seed: 1,
        start,
        days: 7,
        format: Format::Flat,
        bad_ratio: 0.01,
    };
    let file = std::fs::File::create(&events)
        .with_context(|| format!("cannot create {}", events.display()))?;
    let generated =
        generate(cfg, &mut std::io::BufWriter::new(file)).context("generating events")?;
    println!(
        "generated {} events ({} intended actions, {} bad lines) into {}",
        generated.lines,
        generated.actions(),
        generated.bad_lines,
        events.display()
    );
    println!("(1% of the lines are malformed on purpose: the warnings below show how bad input is reported)");

    let defaults = SessionConfig::default();
    let ingest_args = IngestArgs {
        from_file: Some(events.clone()),
        config: None,
        kafka: KafkaArgs::unused(),
        table: crate::table::Location::Local(table.clone()),
        dead_letter: None,
        max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        no_progress: false,
        session: SessionArgs {
            session_gap: defaults.gap,
            max_lateness: defaults.max_lateness,
            max_open_sessions: defaults.max_open_sessions,
            max_future: crate::pipeline::future::DEFAULT_MAX_FUTURE,
        },
        enrich: EnrichArgs {
            geoip: args.geoip.clone(),
            cloud_ranges: args.cloud_ranges.clone().or_else(|| {
                let bundled = Path::new("testdata/cloud-ranges");
                bundled.is_dir().then(|| bundled.to_owned())
            }),
        },
        privacy: PrivacyArgs {
            ip_hash_key: None,
            insecure_default_key: true,
        },
    };
    let report = crate::cmd::ingest::run(ingest_args).await?;
    if report.stats.actions != generated.actions() {
        bail!(
            "ingest found {} actions where the generator intended {}",
            report.stats.actions,
            generated.actions()
        );
    }

    let ctx = query::session(&crate::table::Location::Local(table.clone())).await?;
    for (title, sql) in SUMMARY_QUERIES {
        println!("\n{title}");
        let stream = query::execute(&ctx, sql).await?;
        query::write_results(stream, OutputFormat::Table, &mut std::io::stdout(), &|_| ()).await?;
    }
    let (bin, t) = (
        crate::cmd::self_command(),
        crate::cmd::shell_quote(&table.to_string_lossy()),
    );
    println!(
        "\nThe table is at {} (a Delta Lake table). Try:",
        table.display()
    );
    println!("  {bin} sql --table {t} \"SELECT user_agent_tool, count(*) AS pulls FROM pulls GROUP BY 1 ORDER BY 2 DESC\"");
    println!("  {bin} sql --table {t} --format csv \"SELECT * FROM pulls LIMIT 10\"");
    println!("  {bin} export --table {t} --view repo-summary --week {week}");

    // A read token for the dashboard, in a tokens file beside the table.
    let tokens = args.dir.join("tokens.toml");
    let secret = tokens::create(
        &tokens,
        &NewToken {
            name: "demo",
            roles: &[Role::Read],
            namespaces: &["*".to_owned()],
        },
    )
    .context("creating the demo's read token")?;
    println!("\nSee it in the dashboard: start the server, open http://127.0.0.1:8080/ and sign in with the token below.");
    println!(
        "  {bin} serve --table {t} --tokens {} --listen 127.0.0.1:8080 --insecure-default-key",
        crate::cmd::shell_quote(&tokens.to_string_lossy())
    );
    println!("  demo read token: {secret}");
    if bin != "pullstats" {
        println!("(`cargo install --path .` in the source tree puts `pullstats` on your PATH.)");
    }
    Ok(())
}

const SUMMARY_QUERIES: &[(&str, &str)] = &[
    (
        "Actions by kind:",
        "SELECT action, count(*) AS actions, count(DISTINCT ip_hash) AS unique_ips \
         FROM pulls GROUP BY action ORDER BY actions DESC",
    ),
    (
        "Top repositories:",
        "SELECT namespace, repository, \
           sum(CASE WHEN action = 'pull_by_tag' THEN 1 ELSE 0 END) AS pull_by_tag, \
           sum(CASE WHEN action = 'pull_by_digest' THEN 1 ELSE 0 END) AS pull_by_digest, \
           sum(CASE WHEN action = 'version_check' THEN 1 ELSE 0 END) AS version_check \
         FROM pulls GROUP BY namespace, repository ORDER BY count(*) DESC LIMIT 5",
    ),
    (
        "Cloud providers:",
        "SELECT coalesce(host, '(none)') AS host, count(*) AS actions FROM pulls \
         GROUP BY host ORDER BY actions DESC LIMIT 8",
    ),
    (
        "Clients:",
        "SELECT user_agent_tool, count(*) AS actions FROM pulls \
         GROUP BY user_agent_tool ORDER BY actions DESC LIMIT 8",
    ),
];

/// Creates the demo directory, replacing an earlier demo's but never
/// anything else.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        if dir.join(MARKER).exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot replace {}", dir.display()))?;
        } else if std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
        {
            bail!(
                "{} exists and is not a pullstats demo directory; pass --dir elsewhere",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "created by `pullstats demo`; safe to delete\n",
    )
    .with_context(|| format!("cannot write in {}", dir.display()))?;
    Ok(())
}
