//! A table as one reader sees it, for queries.
//!
//! Opening a table with [`super::open`] lists every live file of it, with
//! statistics: the cost of a one-off reader grows with the history even
//! when it reads a week. [`Snapshot::open`] reads the log's newest
//! checkpoint and the commits after it and lists no file; each query then
//! lists the files it reads (deltalake replays the log with the query's
//! partition predicate), and [`Snapshot::day_rows`] those of its days.
//! A long-lived reader (`serve`) keeps a loaded [`DeltaTable`], updated as
//! commits land, and queries it through [`Snapshot::from`] with its file
//! list already in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use delta_kernel::expressions::{Expression, Predicate};
use deltalake::delta_datafusion::TableProviderBuilder;
use deltalake::kernel::{LogicalFileView, Snapshot as LogSnapshot};
use deltalake::DeltaTable;
use futures::TryStreamExt;

use super::{check_schema, delta, if_current, location, maintenance, must_exist, table_url};
use super::{Location, PARTITION_COLUMN};
use super::{TableError, TableKind};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Loaded (its files in memory), or built only (for its log store)
    /// when `lazy` holds the snapshot.
    table: DeltaTable,
    lazy: Option<Arc<LogSnapshot>>,
}

impl From<DeltaTable> for Snapshot {
    fn from(table: DeltaTable) -> Self {
        Self { table, lazy: None }
    }
}

impl Snapshot {
    /// The table of `kind` at `path`, newest version, schema checked, no
    /// file listed; an error when there is none.
    pub async fn open(path: &Location, kind: TableKind) -> Result<Self, TableError> {
        must_exist(path, kind).await?;
        Self::load(path, kind).await
    }

    /// [`Snapshot::open`] for reading a table that may be missing: `None`
    /// then, or when a derived table (the periods) has an older schema, as
    /// [`super::open_current`].
    pub async fn open_current(
        path: &Location,
        kind: TableKind,
    ) -> Result<Option<Self>, TableError> {
        if_current(path, kind, Self::load(path, kind)).await
    }

    async fn load(path: &Location, kind: TableKind) -> Result<Self, TableError> {
        let table = location::builder(table_url(path, false)?)
            .and_then(|b| b.build())
            .map_err(delta(path))?;
        let snapshot = LogSnapshot::try_new(table.log_store().as_ref(), None)
            .await
            .map_err(delta(path))?;
        check_schema(path, kind, &snapshot.schema())?;
        Ok(Self {
            table,
            lazy: Some(Arc::new(snapshot)),
        })
    }

    /// The version read.
    pub fn version(&self) -> Option<u64> {
        match &self.lazy {
            Some(s) => Some(s.version()),
            None => self.table.version(),
        }
    }

    /// Rows per day of the days from `from` to `to` (excluded), from the
    /// files' statistics; days with no rows are left out.
    pub async fn day_rows(
        &self,
        path: &Location,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, u64>, TableError> {
        // Each file's day and rows.
        let files: Vec<(Option<String>, Option<u64>)> = match &self.lazy {
            None => maintenance::data_files(path, &self.table)?
                .into_iter()
                .map(|f| (Some(f.day), f.rows))
                .collect(),
            Some(snapshot) => {
                let text = |d: NaiveDate| Expression::literal(d.format("%Y-%m-%d").to_string());
                let day = || Expression::column([PARTITION_COLUMN]);
                let predicate = Predicate::and(day().ge(text(from)), day().lt(text(to)));
                let log_store = self.table.log_store();
                let views: Vec<LogicalFileView> = snapshot
                    .file_views(log_store.as_ref(), Some(Arc::new(predicate)))
                    .try_collect()
                    .await
                    .map_err(delta(path))?;
                views
                    .into_iter()
                    .map(|f| {
                        let day = f.partition_values_map().remove(PARTITION_COLUMN);
                        (day.flatten(), f.num_records().map(|n| n as u64))
                    })
                    .collect()
            }
        };
        // Pruning by the partition is best effort: each file's day is
        // checked here.
        let mut rows = BTreeMap::new();
        for (day, n) in files {
            let day = day.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
            if let (Some(day), Some(n)) = (day.filter(|d| (from..to).contains(d)), n) {
                *rows.entry(day).or_default() += n;
            }
        }
        Ok(rows)
    }

    /// Registers the table in `ctx` as `name`.
    pub async fn register(
        &self,
        ctx: &SessionContext,
        name: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.table.update_datafusion_session(&ctx.state())?;
        let provider: Arc<dyn TableProvider> = match &self.lazy {
            Some(snapshot) => Arc::new(
                TableProviderBuilder::default()
                    .with_log_store(self.table.log_store())
                    .with_snapshot(snapshot.clone())
                    .build()
                    .await?,
            ),
            None => self.table.table_provider().await?,
        };
        ctx.register_table(name, provider)?;
        Ok(())
    }
}
