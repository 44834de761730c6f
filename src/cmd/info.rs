//! `pullstats info`: what an operator checks first: versions, checkpoint,
//! files (and how many are small), sizes, days covered, rows, and each
//! Kafka partition's next offset as the table records it.

use crate::cli::{InfoArgs, InfoFormat};
use crate::table::maintenance::{self, mib, TableInfo};

pub async fn run(args: InfoArgs) -> anyhow::Result<()> {
    let mut infos = Vec::new();
    for (path, kind) in maintenance::tables(&args.table).await? {
        infos.push(maintenance::info(&path, kind, args.target_file_size).await?);
    }
    match args.format {
        InfoFormat::Json => println!("{}", serde_json::to_string_pretty(&infos)?),
        InfoFormat::Text => {
            for info in &infos {
                print_text(info);
            }
        }
    }
    Ok(())
}

fn print_text(i: &TableInfo) {
    let when = i
        .last_commit_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or("-".to_owned(), |t| {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        });
    println!("{} ({} table)", i.table, i.kind);
    println!(
        "  version     {} (last commit {when}, {})",
        i.version,
        i.last_operation.as_deref().unwrap_or("-")
    );
    println!(
        "  checkpoint  {}",
        i.last_checkpoint
            .map_or("none".to_owned(), |v| format!("version {v}"))
    );
    println!(
        "  files       {} ({} small, to compact), {}",
        i.files,
        i.small_files,
        mib(i.bytes)
    );
    println!("  rows        {}", i.rows);
    match (i.days.keys().next(), i.days.keys().next_back()) {
        (Some(first), Some(last)) => {
            println!("  days        {first} .. {last} ({} days)", i.days.len())
        }
        _ => println!("  days        none"),
    }
    for p in &i.kafka {
        println!(
            "  kafka       {} partition {}: next offset {}",
            p.topic,
            p.partition,
            p.next_offset.map_or("-".to_owned(), |o| o.to_string())
        );
    }
}
