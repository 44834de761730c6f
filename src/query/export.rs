//! Export views (spec §4): raw data and the three summary levels, for one
//! time span, as SQL over `pulls`.
//!
//! A span is a set of whole UTC days `[from, to)`; the predicate is on
//! `action_day`, the partition column, so DataFusion reads only the span's
//! partitions. `unique_ip_count` is the exact count of distinct `ip_hash`
//! ([`super::distinct`], equal to `count(DISTINCT ip_hash)`) over the whole
//! span in one aggregation — never a sum of daily counts, which would count a
//! client active on two days twice.

use chrono::{Datelike, Days, Months, NaiveDate, Weekday};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpanError {
    #[error("`{0}` is not an ISO week like 2026-W45")]
    BadWeek(String),
    #[error("week {week} does not exist in ISO year {year}")]
    NoSuchWeek { year: i32, week: u32 },
    #[error("`{0}` is not a month like 2026-10")]
    BadMonth(String),
    #[error("`{0}` is not a YYYY-MM-DD date")]
    BadDay(String),
    #[error("the span is empty: --from {from} is not before --to {to}")]
    Empty { from: NaiveDate, to: NaiveDate },
}

/// Whole UTC days `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Span {
    /// `2026-W45`: Monday to Sunday of ISO week 45 of ISO year 2026.
    pub fn week(text: &str) -> Result<Self, SpanError> {
        let bad = || SpanError::BadWeek(text.to_owned());
        let (year, week) = text.split_once("-W").ok_or_else(bad)?;
        let year: i32 = year.parse().map_err(|_| bad())?;
        let week: u32 = week.parse().map_err(|_| bad())?;
        let from = NaiveDate::from_isoywd_opt(year, week, Weekday::Mon)
            .ok_or(SpanError::NoSuchWeek { year, week })?;
        let to = from.checked_add_days(Days::new(7)).ok_or_else(bad)?;
        Ok(Self { from, to })
    }

    /// `2026-10`: the calendar month.
    pub fn month(text: &str) -> Result<Self, SpanError> {
        let bad = || SpanError::BadMonth(text.to_owned());
        let from =
            NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").map_err(|_| bad())?;
        let to = from.checked_add_months(Months::new(1)).ok_or_else(bad)?;
        Ok(Self { from, to })
    }

    /// `[from, to)`, both `YYYY-MM-DD`.
    pub fn days(from: &str, to: &str) -> Result<Self, SpanError> {
        let day = |s: &str| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| SpanError::BadDay(s.to_owned()))
        };
        let (from, to) = (day(from)?, day(to)?);
        if from >= to {
            return Err(SpanError::Empty { from, to });
        }
        Ok(Self { from, to })
    }

    /// The SQL predicate selecting the span's partitions.
    pub fn predicate(&self) -> String {
        format!(
            "action_day >= '{}' AND action_day < '{}'",
            self.from.format("%Y-%m-%d"),
            self.to.format("%Y-%m-%d")
        )
    }

    /// Days in the span.
    pub fn len_days(&self) -> i64 {
        (self.to - self.from).num_days()
    }
}

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

/// Trend points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Granularity {
    Week,
    Month,
}

/// What a trend groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrendGroup {
    Repository,
    Namespace,
}

impl Span {
    /// The complete weeks or months of the last `months` months before the
    /// period that holds `until` (a partial current period is left out).
    pub fn trailing(granularity: Granularity, months: u32, until: NaiveDate) -> Self {
        let to = match granularity {
            Granularity::Week => {
                until - Days::new(u64::from(until.weekday().num_days_from_monday()))
            }
            Granularity::Month => until.with_day(1).unwrap_or(until),
        };
        let back = to.checked_sub_months(Months::new(months)).unwrap_or(to);
        let from = match granularity {
            // The first Monday on or after the cut: whole weeks only.
            Granularity::Week => {
                back + Days::new(u64::from((7 - back.weekday().num_days_from_monday()) % 7))
            }
            Granularity::Month => back,
        };
        Self { from, to }
    }
}

/// `3m`, `6m` or `12m`.
pub fn parse_last(s: &str) -> Result<u32, String> {
    match s {
        "3m" => Ok(3),
        "6m" => Ok(6),
        "12m" => Ok(12),
        _ => Err(format!("`{s}` is not one of 3m, 6m, 12m")),
    }
}

/// The SQL of a trend.
fn trend_sql(
    granularity: Granularity,
    group: TrendGroup,
    span: &Span,
    filters: &Filters,
) -> String {
    let unit = match granularity {
        Granularity::Week => "week",
        Granularity::Month => "month",
    };
    let keys = match group {
        TrendGroup::Repository => "namespace, repository",
        TrendGroup::Namespace => "namespace",
    };
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
    fn predicate(&self) -> String {
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

/// The raw view as one statement per day of the span, in order. A day's
/// actions all sort after the previous day's (`action_day` is the UTC day
/// of `timestamp`), so their concatenation is the span sorted, and sorting
/// a day at a time keeps memory to one day's actions whatever the span.
fn raw_sql_by_day(span: &Span, filters: &Filters) -> Vec<String> {
    span.from
        .iter_days()
        .take_while(|d| *d < span.to)
        .map(|day| {
            format!(
                "SELECT {} FROM pulls WHERE action_day = '{}'{} ORDER BY timestamp, namespace, repository",
                RAW_COLUMNS.join(", "),
                day.format("%Y-%m-%d"),
                filters.predicate()
            )
        })
        .collect()
}

/// The statements of an export of `view` over `span`, run in order as one
/// result: one per day for the raw view (sorted a day at a time, so memory
/// stays that of one day), one otherwise. `by` breaks summaries down;
/// `trend` is the trend's granularity and grouping.
pub fn statements(
    view: View,
    span: &Span,
    filters: &Filters,
    by: &[Breakdown],
    trend: (Granularity, TrendGroup),
) -> Vec<String> {
    let base: &[&str] = match view {
        View::Raw => return raw_sql_by_day(span, filters),
        View::Trend => return vec![trend_sql(trend.0, trend.1, span, filters)],
        View::Summary => &["namespace", "repository", "reference"],
        View::RepoSummary => &["namespace", "repository"],
        View::NamespaceSummary => &["namespace"],
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_by_day_has_one_statement_per_day_in_order() {
        let span = Span::week("2026-W53").expect("week");
        let sqls = raw_sql_by_day(&span, &Filters::default());
        assert_eq!(sqls.len(), 7);
        assert!(sqls[0].contains("action_day = '2026-12-28'"), "{}", sqls[0]);
        assert!(sqls[6].contains("action_day = '2027-01-03'"), "{}", sqls[6]);
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
