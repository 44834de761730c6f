//! The `pullstats` binary: parse the command line, set up logging, run the
//! command, print the error chain and set the exit code (1 for failures;
//! clap exits 2 for usage errors).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use pullstats::cli::{Cli, Command};
use pullstats::cmd;

fn main() -> ExitCode {
    // RUST_BACKTRACE=1 is for panics. Left alone it also has libraries (the
    // Delta kernel, anyhow) capture a backtrace into every error they make,
    // which then fills the one-line error and the logs. RUST_LIB_BACKTRACE=1
    // still asks for them. No other thread runs yet.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(e) = pullstats::config::apply_config_file(&args) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse_from(args);
    init_tracing(cli.verbose, cli.quiet);
    pullstats::table::location::set_storage_options(&cli.storage_options);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Gen(args) => cmd::gen::run(args),
            Command::Ingest(args) if args.kafka.brokers.is_some() => cmd::daemon::run(args).await,
            Command::Ingest(args) => cmd::ingest::run(args).await.map(|_| ()),
            Command::Sql(args) => cmd::sql::run(args).await,
            Command::Export(args) => cmd::export::run(args).await,
            Command::Query(args) => cmd::query::run(args).await,
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Produce(args) => cmd::produce::run(args),
            Command::ReadTopic(args) => cmd::read_topic::run(args),
            Command::ReadFile(args) => cmd::read_file::run(args),
            Command::SendNotifications(args) => cmd::send::run(args),
            Command::Compact(args) => cmd::compact::run(args).await,
            Command::Retain(args) => cmd::retain::run(args).await,
            Command::Vacuum(args) => cmd::vacuum::run(args).await,
            Command::Info(args) => cmd::info::run(args).await,
            Command::Completions(args) => cmd::completions::run(args),
            Command::Man(args) => cmd::man::run(args),
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::Token(cmd) => cmd::token::run(cmd),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, like anyhow's `{:#}`, leaving out a
/// cause whose text the previous one already includes (several library
/// errors repeat their source in their own message).
fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in e.chain() {
        // One line, even when a cause quotes a multi-line answer (an object
        // store's XML error body).
        let text = cause
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !previous.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        previous = text;
    }
    line
}

fn init_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,pullstats={default}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .compact()
        .init();
}
