//! `pullstats man [--dir DIR]`: man pages generated from the clap
//! definitions (`pullstats.1`, then `pullstats-<command>.1` for each
//! subcommand), so they document exactly the flags the binary takes.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};

pub fn run(args: ManArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let top = Cli::command();
    write_page(&args.dir, "pullstats", top.clone())?;
    for sub in top.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("pullstats-{}", sub.get_name());
        write_page(&args.dir, &name, sub.clone().name(name.clone()))?;
    }
    Ok(())
}

/// Renders `command` to `DIR/NAME.1`.
fn write_page(dir: &Path, name: &str, command: clap::Command) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .with_context(|| format!("cannot render {name}.1"))?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}
