//! `pullstats query`: run a saved query (`queries/*.sql`) with parameters,
//! or list them.

use std::collections::BTreeMap;

use anyhow::Context;

use crate::cli::QueryArgs;
use crate::query::saved;

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    if args.list {
        for q in saved::all() {
            let params: Vec<String> = q
                .params
                .iter()
                .map(|p| format!("{}={}", p.name, p.default))
                .collect();
            println!("{:<22} {}", q.name, q.description);
            println!("{:<22} params: {}", "", params.join(" "));
        }
        return Ok(());
    }
    let name = args
        .name
        .as_deref()
        .context("give a query name or --list")?;
    let table = args.table.as_ref().context("--table is required")?;
    let values: BTreeMap<String, String> = args.params.iter().cloned().collect();
    let sql = saved::find(name)?.render(&values)?;
    crate::cmd::sql::run_statement(table, None, &sql, args.format).await
}
