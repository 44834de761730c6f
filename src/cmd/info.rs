//! `pullstats info`: what an operator checks first: versions, checkpoint,
//! files (and how many are small), sizes, days covered, rows, and each
//! Kafka partition's next offset as the table records it.

use super::Report;
use crate::cli::{InfoArgs, InfoFormat};
use crate::table::maintenance::{self, mib, TableInfo};

pub async fn run(args: InfoArgs) -> anyhow::Result<()> {
    let mut infos = Vec::new();
    for (path, kind) in maintenance::tables(&args.table).await? {
        infos.push(maintenance::info(&path, kind, args.target_file_size).await?);
    }
    let mut report = Report::default();
    match args.format {
        InfoFormat::Json => {
            let json = serde_json::to_string_pretty(&infos)?;
            report.line(format_args!("{json}"));
        }
        InfoFormat::Text => infos.iter().for_each(|info| write_text(&mut report, info)),
    }
    report.finish()
}

fn write_text(out: &mut Report, i: &TableInfo) {
    let when = i
        .last_commit_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or("-".to_owned(), |t| {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        });
    out.line(format_args!("{} ({} table)", i.table, i.kind));
    out.line(format_args!(
        "  version     {} (last commit {when}, {})",
        i.version,
        i.last_operation.as_deref().unwrap_or("-")
    ));
    out.line(format_args!(
        "  checkpoint  {}",
        i.last_checkpoint
            .map_or("none".to_owned(), |v| format!("version {v}"))
    ));
    out.line(format_args!(
        "  log         {}",
        log_retention(i.log_retention_hours, i.log_retention_set)
    ));
    out.line(format_args!(
        "  files       {} ({} small, to compact), {}",
        i.files,
        i.small_files,
        mib(i.bytes)
    ));
    out.line(format_args!("  rows        {}", i.rows));
    match (i.days.keys().next(), i.days.keys().next_back()) {
        (Some(first), Some(last)) => out.line(format_args!(
            "  days        {first} .. {last} ({} days)",
            i.days.len()
        )),
        _ => out.line(format_args!("  days        none")),
    }
    for p in &i.kafka {
        out.line(format_args!(
            "  kafka       {} partition {}: next offset {}",
            p.topic,
            p.partition,
            p.next_offset.map_or("-".to_owned(), |o| o.to_string())
        ));
    }
}

/// `versions kept 7 days`, and where the retention comes from when the
/// table does not set it.
fn log_retention(hours: u64, set: bool) -> String {
    let kept = if hours.is_multiple_of(24) {
        format!("{} days", hours / 24)
    } else {
        format!("{hours} hours")
    };
    let default = if set {
        ""
    } else {
        " (Delta's default; README: Table maintenance)"
    };
    format!("versions kept {kept}{default}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_retention_says_when_it_is_the_default() {
        assert_eq!(log_retention(168, true), "versions kept 7 days");
        assert_eq!(
            log_retention(720, false),
            "versions kept 30 days (Delta's default; README: Table maintenance)"
        );
        assert_eq!(log_retention(36, true), "versions kept 36 hours");
    }
}
