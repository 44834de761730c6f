//! One module per subcommand: each exposes `run(args)` and owns the
//! command's user-facing output; the work itself lives in the library
//! modules.

pub mod compact;
pub mod completions;
pub mod daemon;
pub mod demo;
pub mod export;
pub mod gen;
pub mod info;
pub mod ingest;
pub mod man;
pub mod produce;
pub mod query;
pub mod read_file;
pub mod read_topic;
pub mod retain;
pub mod send;
pub mod serve;
pub mod shell;
pub mod sql;
pub mod token;
pub mod vacuum;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A command's report lines on stdout. A reader that goes away (`| head`)
/// stops the printing, not the work (Rust's `println!` would panic); the
/// first failed write is the command's error once the work is done.
#[derive(Default)]
pub struct Report {
    failed: Option<std::io::Error>,
}

impl Report {
    pub fn line(&mut self, line: std::fmt::Arguments) {
        if self.failed.is_none() {
            self.failed = writeln!(std::io::stdout().lock(), "{line}").err();
        }
    }

    pub fn finish(self) -> anyhow::Result<()> {
        self.failed
            .map_or(Ok(()), Err)
            .context("cannot write to stdout")
    }
}

/// How to run this same binary again, as a user would type it in the
/// current directory: `pullstats` when that name on the PATH is this very
/// file, else the binary's path (relative to the current directory when it
/// is inside it, e.g. `target/release/pullstats` after `cargo run
/// --release`), shell-quoted. Commands pullstats prints for the user to
/// run start with it, so they run as printed.
pub fn self_command() -> String {
    let Ok(exe) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "pullstats".into();
    };
    if on_path("pullstats").is_some_and(|p| p == exe) {
        return "pullstats".into();
    }
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| std::fs::canonicalize(cwd).ok())
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_owned))
        .unwrap_or(exe);
    shell_quote(&shown.to_string_lossy())
}

/// The file `name` resolves to through `$PATH`, canonicalized.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
}

/// `text` as one POSIX shell word.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | ':' | '=' | ',')
        });
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(
            shell_quote("target/release/pullstats"),
            "target/release/pullstats"
        );
        assert_eq!(shell_quote("/tmp/my demo/pulls"), "'/tmp/my demo/pulls'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf ~)"), "'$(rm -rf ~)'");
    }
}
