//! Export views (spec §4): raw data and the three summary levels, for one
//! time span, as SQL over `pulls`.
//!
//! A span is a set of whole UTC days `[from, to)`; the predicate is on
//! `action_day`, the partition column, so DataFusion reads only the span's
//! partitions. `unique_ip_count` is the exact count of distinct `ip_hash`
//! ([`super::distinct`], equal to `count(DISTINCT ip_hash)`) over the whole
//! span in one aggregation — never a sum of daily counts, which would count a
//! client active on two days twice.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, NaiveTime};

use deltalake::DeltaTable;

pub use super::span::{parse_last, Granularity, Span, SpanError};

use super::periods::{self, Period};

use crate::table::{self, TableError};

/// The export views of spec §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    /// One row per action.
    Raw,
    /// Per namespace, repository and reference (tag or digest).
    Summary,
    /// Per namespace and repository.
    RepoSummary,
    /// Per namespace.
    NamespaceSummary,
    /// One row per week or month per repository (or namespace): the data
    /// behind a pulls-over-time chart.
    Trend,
}

/// Columns a summary can be broken down by (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Breakdown {
    Country,
    Host,
    Type,
    Domain,
    UserAgentTool,
    UserAgentVersion,
    HttpMethod,
    Os,
    Arch,
}

impl Breakdown {
    fn column(self) -> &'static str {
        match self {
            Breakdown::Country => "country",
            Breakdown::Host => "host",
            Breakdown::Type => "type",
            Breakdown::Domain => "domain",
            Breakdown::UserAgentTool => "user_agent_tool",
            Breakdown::UserAgentVersion => "user_agent_version",
            Breakdown::HttpMethod => "http_method",
            Breakdown::Os => "os",
            Breakdown::Arch => "arch",
        }
    }
}

/// What a trend groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrendGroup {
    Repository,
    Namespace,
}

/// The statements of a trend: one per period, in order. A period's rows
/// all sort after the previous period's, so their concatenation is the
/// trend sorted, and memory is that of one period's unique-IP sets rather
/// than of every period's at once.
fn trend_sql_by_period(
    granularity: Granularity,
    group: TrendGroup,
    span: &Span,
    filters: &Filters,
    stored: &BTreeSet<Period>,
) -> Vec<String> {
    let unit = match granularity {
        Granularity::Week => "week",
        Granularity::Month => "month",
    };
    let (keys, level) = match group {
        TrendGroup::Repository => ("namespace, repository", "repository"),
        TrendGroup::Namespace => ("namespace", "namespace"),
    };
    span.periods(granularity)
        .into_iter()
        .map(|span| {
            let period = Period { granularity, span };
            if stored.contains(&period) && readable(level, filters) {
                return format!(
                    "SELECT CAST(action_day AS DATE) AS period, {keys}, \
                       pull_by_tag + pull_by_digest AS pulls, pull_by_tag, pull_by_digest, \
                       version_check, unique_ip_count \
                     FROM periods WHERE {} AND level = '{level}'{} ORDER BY 1, {keys}",
                    period.predicate(),
                    filters.predicate()
                );
            }
            format!(
                "SELECT CAST(date_trunc('{unit}', timestamp) AS DATE) AS period, {keys}, \
                   count(*) FILTER (WHERE action <> 'version_check') AS pulls, \
                   count(*) FILTER (WHERE action = 'pull_by_tag') AS pull_by_tag, \
                   count(*) FILTER (WHERE action = 'pull_by_digest') AS pull_by_digest, \
                   count(*) FILTER (WHERE action = 'version_check') AS version_check, \
                   exact_distinct_count(ip_hash) AS unique_ip_count \
                 FROM pulls WHERE {}{} GROUP BY 1, {keys} ORDER BY 1, {keys}",
                span.predicate(),
                filters.predicate()
            )
        })
        .collect()
}

/// Whether the periods table's rows of `level` answer an export with
/// `filters`: namespace rows cannot give a namespace's total over some of
/// its repositories only.
fn readable(level: &str, filters: &Filters) -> bool {
    level != "namespace" || filters.repositories.is_empty()
}

/// Raw columns, in the spec's order.
pub const RAW_COLUMNS: &[&str] = &[
    "action",
    "action_day",
    "country",
    "digest",
    "http_method",
    "host",
    "namespace",
    "reference",
    "repository",
    "tag",
    "timestamp",
    "type",
    "user_agent_tool",
    "user_agent_version",
    "domain",
    "owner",
];

/// Optional filters of an export.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub namespaces: Vec<String>,
    /// `repo` or `ns/repo`.
    pub repositories: Vec<String>,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Filters {
    pub fn predicate(&self) -> String {
        let mut parts = Vec::new();
        if !self.namespaces.is_empty() {
            let list: Vec<String> = self.namespaces.iter().map(|n| quote(n)).collect();
            parts.push(format!("namespace IN ({})", list.join(", ")));
        }
        if !self.repositories.is_empty() {
            let alts: Vec<String> = self
                .repositories
                .iter()
                .map(|r| match r.split_once('/') {
                    Some((ns, repo)) => format!(
                        "(namespace = {} AND repository = {})",
                        quote(ns),
                        quote(repo)
                    ),
                    None => format!("repository = {}", quote(r)),
                })
                .collect();
            parts.push(format!("({})", alts.join(" OR ")));
        }
        parts.iter().map(|p| format!(" AND {p}")).collect()
    }
}

/// Rows of a day the raw view sorts at once, about (`--raw-slice-rows`).
pub const RAW_SLICE_ROWS: u64 = 64 * 1024;

/// The raw view as statements over slices of time, in order: each day of
/// the span is cut into `ceil(rows / slice_rows)` even slices (`day_rows`
/// gives a day's rows; a day it lacks is one slice). A slice's actions all
/// sort after the previous slice's (`action_day` is the UTC day of
/// `timestamp`, and slices are cut on `timestamp`), so the concatenation is
/// the span sorted, and sorting a slice at a time keeps memory to about
/// `slice_rows` actions (and the few batches of the last slice not yet
/// written, [`super::execute_in_order`]) whatever the span or the size of
/// its days. Files
/// are kept in time order (ingest writes actions as they close; `compact`
/// sorts by time), so a slice's predicate prunes pages by their statistics
/// and each slice reads little more than its own rows.
fn raw_sql_by_slice(
    span: &Span,
    filters: &Filters,
    day_rows: &BTreeMap<NaiveDate, u64>,
    slice_rows: u64,
) -> Vec<String> {
    const DAY_SECONDS: u64 = 86_400;
    let at = |day: NaiveDate, s: u64| {
        let t = day.and_time(NaiveTime::MIN) + chrono::Duration::seconds(s as i64);
        format!("'{}'", t.format("%Y-%m-%dT%H:%M:%SZ"))
    };
    let mut out = Vec::new();
    for day in span.from.iter_days().take_while(|d| *d < span.to) {
        let rows = day_rows.get(&day).copied().unwrap_or(0);
        let slices = rows.div_ceil(slice_rows.max(1)).clamp(1, DAY_SECONDS);
        for i in 0..slices {
            let mut cut = String::new();
            if i > 0 {
                cut += &format!(" AND timestamp >= {}", at(day, i * DAY_SECONDS / slices));
            }
            if i + 1 < slices {
                cut += &format!(
                    " AND timestamp < {}",
                    at(day, (i + 1) * DAY_SECONDS / slices)
                );
            }
            out.push(format!(
                "SELECT {} FROM pulls WHERE action_day = '{}'{cut}{} ORDER BY {}",
                RAW_COLUMNS.join(", "),
                day.format("%Y-%m-%d"),
                filters.predicate(),
                table::PULLS_ORDER.join(", ")
            ));
        }
    }
    out
}

/// Actions per day of `table` (at `path`), from its files' statistics.
pub fn day_rows(
    path: &crate::table::Location,
    table: &DeltaTable,
) -> Result<BTreeMap<NaiveDate, u64>, TableError> {
    Ok(rows_per_day(&table::maintenance::data_files(path, table)?))
}

/// Rows per day of `files`, from their statistics.
pub fn rows_per_day(files: &[table::maintenance::DataFile]) -> BTreeMap<NaiveDate, u64> {
    let mut rows = BTreeMap::new();
    for f in files {
        if let (Ok(day), Some(n)) = (NaiveDate::parse_from_str(&f.day, "%Y-%m-%d"), f.rows) {
            *rows.entry(day).or_default() += n;
        }
    }
    rows
}

/// The statements of an export of `view` over `span`, run in order as one
/// result: one per slice of time for the raw view ([`raw_sql_by_slice`]
/// with `raw`: actions per day and rows per slice), one per period for the
/// trend, one otherwise. `by` breaks summaries down; `trend` is the trend's
/// granularity and grouping. A summary of a complete period, or a trend's
/// complete period, that is in `stored` (the periods table holds it
/// current) reads the periods table's rows: the same columns and rows as
/// the scan of the pulls table it replaces.
pub fn statements(
    view: View,
    span: &Span,
    filters: &Filters,
    by: &[Breakdown],
    trend: (Granularity, TrendGroup),
    raw: (&BTreeMap<NaiveDate, u64>, u64),
    stored: &BTreeSet<Period>,
) -> Vec<String> {
    let (base, level): (&[&str], &str) = match view {
        View::Raw => return raw_sql_by_slice(span, filters, raw.0, raw.1),
        View::Trend => return trend_sql_by_period(trend.0, trend.1, span, filters, stored),
        View::Summary => (&["namespace", "repository", "reference"], "reference"),
        View::RepoSummary => (&["namespace", "repository"], "repository"),
        View::NamespaceSummary => (&["namespace"], "namespace"),
    };
    let period = Period::of_span(span).filter(|p| stored.contains(p));
    if let Some(period) = period.filter(|_| by.is_empty() && readable(level, filters)) {
        let keys = base.join(", ");
        return vec![format!(
            "SELECT {keys}, unique_ip_count, pull_by_tag, pull_by_digest, version_check, owner \
             FROM periods WHERE {} AND level = '{level}'{} ORDER BY {keys}",
            period.predicate(),
            filters.predicate()
        )];
    }
    let filter = format!("{}{}", span.predicate(), filters.predicate());
    let mut keys: Vec<&str> = base.to_vec();
    keys.extend(by.iter().map(|b| b.column()).filter(|c| !base.contains(c)));
    let keys = keys.join(", ");
    vec![format!(
        "SELECT {keys}, \
           exact_distinct_count(ip_hash) AS unique_ip_count, \
           count(*) FILTER (WHERE action = 'pull_by_tag') AS pull_by_tag, \
           count(*) FILTER (WHERE action = 'pull_by_digest') AS pull_by_digest, \
           count(*) FILTER (WHERE action = 'version_check') AS version_check, \
           max(owner) AS owner \
         FROM pulls WHERE {filter} GROUP BY {keys} ORDER BY {keys}"
    )]
}

/// One export: a view over a span, as `pullstats export` and the API's
/// download links run it.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub view: View,
    pub span: Span,
    pub filters: Filters,
    pub by: Vec<Breakdown>,
    pub trend: (Granularity, TrendGroup),
    pub raw_slice_rows: u64,
    /// Whether complete periods may be read from the periods table.
    pub periods: bool,
}

impl ExportRequest {
    /// The plain view (no breakdown) with the default slicing.
    pub fn view(view: View, span: Span, filters: Filters) -> Self {
        Self {
            view,
            span,
            filters,
            by: Vec::new(),
            trend: (Granularity::Week, TrendGroup::Repository),
            raw_slice_rows: RAW_SLICE_ROWS,
            periods: true,
        }
    }

    /// The complete periods whose stored rows could answer this export
    /// (see [`statements`]).
    fn complete_periods(&self) -> Vec<Period> {
        match self.view {
            _ if !self.periods || self.view == View::Raw => Vec::new(),
            View::Trend => self
                .span
                .periods(self.trend.0)
                .into_iter()
                .map(|span| Period {
                    granularity: self.trend.0,
                    span,
                })
                .filter(Period::is_complete)
                .collect(),
            _ if !self.by.is_empty() => Vec::new(),
            _ => Period::of_span(&self.span).into_iter().collect(),
        }
    }

    /// Starts the export over `pulls` (the table at `path`): its rows, in
    /// order, batch by batch. Only the files of the span's days are
    /// listed, when `pulls` was opened as a [`table::Snapshot`].
    pub async fn run(
        &self,
        path: &crate::table::Location,
        pulls: table::Snapshot,
    ) -> Result<datafusion::execution::SendableRecordBatchStream, super::QueryError> {
        let complete = self.complete_periods();
        let day_rows = if self.view == View::Raw || !complete.is_empty() {
            pulls.day_rows(path, self.span.from, self.span.to).await?
        } else {
            Default::default()
        };
        // Only the tables this export reads: each registered is a Delta
        // log to load.
        let ctx = super::session_over(path, pulls, false).await?;
        if !complete.is_empty() {
            let at = table::periods_path(path);
            super::register_if_present(&ctx, &at, super::TableKind::Periods).await?;
        }
        let stored = periods::current(&ctx, &complete, &day_rows).await?;
        let statements = statements(
            self.view,
            &self.span,
            &self.filters,
            &self.by,
            self.trend,
            (&day_rows, self.raw_slice_rows),
            &stored,
        );
        tracing::debug!(?statements, "export");
        super::execute_in_order(&ctx, statements).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Weekday};

    #[test]
    fn raw_days_are_cut_into_slices_of_time_in_order() {
        let span = Span::week("2026-W53").expect("week");
        let mut rows = BTreeMap::new();
        rows.insert(d("2026-12-29"), 250);
        rows.insert(d("2026-12-30"), 100);
        let sqls = raw_sql_by_slice(&span, &Filters::default(), &rows, 100);
        // 1 + 3 + 1 + 1 + 1 + 1 + 1: the 250-row day in three slices.
        assert_eq!(sqls.len(), 9);
        assert!(
            sqls[0].contains("action_day = '2026-12-28' ORDER BY"),
            "{}",
            sqls[0]
        );
        assert!(
            sqls[1].contains(
                "action_day = '2026-12-29' AND timestamp < '2026-12-29T08:00:00Z' ORDER BY"
            ),
            "{}",
            sqls[1]
        );
        assert!(sqls[2].contains(
            "action_day = '2026-12-29' AND timestamp >= '2026-12-29T08:00:00Z' AND timestamp < '2026-12-29T16:00:00Z'"
        ), "{}", sqls[2]);
        assert!(
            sqls[3].contains(
                "action_day = '2026-12-29' AND timestamp >= '2026-12-29T16:00:00Z' ORDER BY"
            ),
            "{}",
            sqls[3]
        );
        assert!(
            sqls[4].contains("action_day = '2026-12-30' ORDER BY"),
            "{}",
            sqls[4]
        );
        assert!(sqls[8].contains("action_day = '2027-01-03'"), "{}", sqls[8]);
        // Slices that do not divide the day evenly still cover it.
        rows.insert(d("2026-12-29"), 7);
        let sqls = raw_sql_by_slice(&span, &Filters::default(), &rows, 1);
        assert!(
            sqls[7].contains("timestamp >= '2026-12-29T20:34:17Z' ORDER BY"),
            "{}",
            sqls[7]
        );
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn iso_weeks_run_monday_to_sunday_across_year_ends() {
        assert_eq!(
            Span::week("2026-W45"),
            Ok(Span {
                from: d("2026-11-02"),
                to: d("2026-11-09")
            })
        );
        // ISO week 1 of 2026 starts on Monday 2025-12-29.
        assert_eq!(
            Span::week("2026-W01"),
            Ok(Span {
                from: d("2025-12-29"),
                to: d("2026-01-05")
            })
        );
        // 2026 has 53 ISO weeks (it starts on a Thursday); 2025 does not.
        assert_eq!(
            Span::week("2026-W53"),
            Ok(Span {
                from: d("2026-12-28"),
                to: d("2027-01-04")
            })
        );
        assert_eq!(
            Span::week("2025-W53"),
            Err(SpanError::NoSuchWeek {
                year: 2025,
                week: 53
            })
        );
        assert!(Span::week("2026-45").is_err());
        assert!(Span::week("2026-W0").is_err());
    }

    #[test]
    fn months_including_leap_february_and_december() {
        assert_eq!(
            Span::month("2028-02"),
            Ok(Span {
                from: d("2028-02-01"),
                to: d("2028-03-01")
            })
        );
        assert_eq!(Span::month("2028-02").map(|s| s.len_days()), Ok(29));
        assert_eq!(Span::month("2027-02").map(|s| s.len_days()), Ok(28));
        assert_eq!(
            Span::month("2026-12"),
            Ok(Span {
                from: d("2026-12-01"),
                to: d("2027-01-01")
            })
        );
        assert!(Span::month("2026-13").is_err());
    }

    #[test]
    fn day_ranges_are_half_open_and_not_empty() {
        let s = Span::days("2026-11-01", "2026-11-03").expect("span");
        assert_eq!(
            s.predicate(),
            "action_day >= '2026-11-01' AND action_day < '2026-11-03'"
        );
        assert!(matches!(
            Span::days("2026-11-03", "2026-11-03"),
            Err(SpanError::Empty { .. })
        ));
        assert!(Span::days("yesterday", "2026-11-03").is_err());
    }

    #[test]
    fn trailing_spans_hold_whole_periods() {
        // Wednesday 2026-11-25: the last 3 months of complete weeks end on
        // Monday 2026-11-23 and start on the first Monday after 2026-08-23.
        let w = Span::trailing(Granularity::Week, 3, d("2026-11-25"));
        assert_eq!(
            w,
            Span {
                from: d("2026-08-24"),
                to: d("2026-11-23")
            }
        );
        assert_eq!(w.from.weekday(), Weekday::Mon);
        let m = Span::trailing(Granularity::Month, 12, d("2026-11-25"));
        assert_eq!(
            m,
            Span {
                from: d("2025-11-01"),
                to: d("2026-11-01")
            }
        );
        assert_eq!(parse_last("6m"), Ok(6));
        assert!(parse_last("5m").is_err());
    }

    #[test]
    fn trends_run_one_statement_per_period_in_order() {
        let weeks = Span::trailing(Granularity::Week, 3, d("2026-11-25"));
        let sqls = trend_sql_by_period(
            Granularity::Week,
            TrendGroup::Repository,
            &weeks,
            &Filters::default(),
            &BTreeSet::new(),
        );
        assert_eq!(sqls.len(), 13);
        assert!(
            sqls[0].contains("action_day >= '2026-08-24' AND action_day < '2026-08-31'"),
            "{}",
            sqls[0]
        );
        assert!(sqls[12].contains("action_day >= '2026-11-16' AND action_day < '2026-11-23'"));
        let months = Span::trailing(Granularity::Month, 3, d("2027-02-10"));
        let sqls = trend_sql_by_period(
            Granularity::Month,
            TrendGroup::Namespace,
            &months,
            &Filters::default(),
            &BTreeSet::new(),
        );
        assert_eq!(sqls.len(), 3);
        assert!(sqls[1].contains("action_day >= '2026-12-01' AND action_day < '2027-01-01'"));
        // A span cut mid-period keeps its cuts.
        let odd = Span::days("2026-11-04", "2026-11-18").expect("span");
        let cuts: Vec<(NaiveDate, NaiveDate)> = odd
            .periods(Granularity::Week)
            .iter()
            .map(|p| (p.from, p.to))
            .collect();
        assert_eq!(
            cuts,
            [
                (d("2026-11-04"), d("2026-11-09")),
                (d("2026-11-09"), d("2026-11-16")),
                (d("2026-11-16"), d("2026-11-18"))
            ]
        );
    }

    #[test]
    fn stored_complete_periods_are_read_from_the_periods_table() {
        let month = Span::month("2026-10").expect("m");
        let stored = BTreeSet::from([Period::of_span(&month).expect("a whole month")]);
        let trend = (Granularity::Month, TrendGroup::Repository);
        let sql = |view, span: &Span, filters: &Filters, by: &[Breakdown], trend| {
            let raw = (&BTreeMap::new(), RAW_SLICE_ROWS);
            statements(view, span, filters, by, trend, raw, &stored)
        };
        let none = Filters::default();
        let one = sql(View::Summary, &month, &none, &[], trend).remove(0);
        assert!(one.contains("FROM periods WHERE action_day = '2026-10-01' AND granularity = 'month' AND level = 'reference'"), "{one}");
        // A breakdown, a span that is not the stored period, and a namespace
        // total over some repositories only: scans.
        let by = sql(View::Summary, &month, &none, &[Breakdown::Country], trend).remove(0);
        assert!(by.contains("FROM pulls"), "{by}");
        let part = Span::days("2026-10-01", "2026-10-31").expect("span");
        assert!(sql(View::Summary, &part, &none, &[], trend)[0].contains("FROM pulls"));
        let repos = Filters {
            namespaces: vec![],
            repositories: vec!["library/nginx".into()],
        };
        let ns = sql(View::NamespaceSummary, &month, &repos, &[], trend).remove(0);
        assert!(ns.contains("FROM pulls"), "{ns}");
        let repo = sql(View::RepoSummary, &month, &repos, &[], trend).remove(0);
        assert!(
            repo.contains("FROM periods") && repo.contains("level = 'repository'"),
            "{repo}"
        );
        // A trend reads the stored months and scans the others.
        let three = Span::days("2026-09-01", "2026-12-01").expect("span");
        let sqls = sql(View::Trend, &three, &none, &[], trend);
        let from: Vec<bool> = sqls.iter().map(|s| s.contains("FROM periods")).collect();
        assert_eq!(from, [false, true, false], "{sqls:?}");
        let by_ns = (Granularity::Month, TrendGroup::Namespace);
        assert!(sql(View::Trend, &three, &none, &[], by_ns)[1].contains("level = 'namespace'"));
        assert!(sql(View::Trend, &three, &repos, &[], by_ns)[1].contains("FROM pulls"));
    }

    #[test]
    fn filters_quote_their_values() {
        let f = Filters {
            namespaces: vec!["o'brien".into()],
            repositories: vec!["library/nginx".into(), "api".into()],
        };
        let sql = statements(
            View::RepoSummary,
            &Span::month("2026-10").expect("m"),
            &f,
            &[Breakdown::Country],
            (Granularity::Week, TrendGroup::Repository),
            (&BTreeMap::new(), RAW_SLICE_ROWS),
            &BTreeSet::new(),
        )
        .remove(0);
        assert!(
            sql.contains("GROUP BY namespace, repository, country"),
            "{sql}"
        );
        assert!(sql.contains("namespace IN ('o''brien')"), "{sql}");
        assert!(
            sql.contains("(namespace = 'library' AND repository = 'nginx') OR repository = 'api'"),
            "{sql}"
        );
    }
}
