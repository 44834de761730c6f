//! `pullstats completions SHELL`: the shell completion script, generated
//! from the same clap definitions as the parser, so it never drifts.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "pullstats",
        &mut std::io::stdout(),
    );
    Ok(())
}
