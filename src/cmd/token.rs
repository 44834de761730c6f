//! `pullstats token create`: a new secret for `pullstats serve`.

use anyhow::Context;

use crate::cli::TokenCommand;
use crate::serve::tokens::{self, NewToken};

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create(args) = command;
    let secret = tokens::create(
        &args.tokens,
        &NewToken {
            name: &args.name,
            roles: &args.roles,
            namespaces: &args.namespaces,
        },
    )
    .with_context(|| format!("cannot create token `{}`", args.name))?;
    eprintln!(
        "token `{}` added to {}; its secret (shown only now; only its SHA-256 is stored):",
        args.name,
        args.tokens.display()
    );
    println!("{secret}");
    Ok(())
}
