//! Time spans of exports and the API: whole UTC days, ISO weeks, calendar
//! months, and their cuts into periods. Parsers of user text (flags and
//! query parameters); no I/O.

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// Trend points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Granularity {
    Week,
    Month,
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

impl Span {
    /// The span cut into its weeks (from Monday) or calendar months, in
    /// order; a cut that is not at a period's start stays where it is.
    pub fn periods(&self, granularity: Granularity) -> Vec<Span> {
        let next = |d: NaiveDate| match granularity {
            Granularity::Week => {
                d.checked_add_days(Days::new(7 - u64::from(d.weekday().num_days_from_monday())))
            }
            Granularity::Month => d
                .with_day(1)
                .and_then(|m| m.checked_add_months(Months::new(1))),
        };
        let mut out = Vec::new();
        let mut from = self.from;
        while from < self.to {
            let to = next(from).map_or(self.to, |n| n.min(self.to));
            out.push(Span { from, to });
            from = to;
        }
        out
    }
}

/// A retention window: `13m` (months), `90d`, `52w`, `2y`.
pub fn parse_keep(s: &str) -> Result<Keep, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u32 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a retention window (e.g. 13m, 400d, 52w, 2y)"))?;
    if n == 0 {
        return Err("the retention window must be at least one day".into());
    }
    match unit {
        "d" => Ok(Keep::Days(n)),
        "w" => Ok(Keep::Days(n.saturating_mul(7))),
        "m" | "mo" => Ok(Keep::Months(n)),
        "y" => Ok(Keep::Months(n.saturating_mul(12))),
        other => Err(format!(
            "unknown unit `{other}` in `{s}` (d = days, w = weeks, m = months, y = years)"
        )),
    }
}

/// How much history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Days(u32),
    Months(u32),
}

impl Keep {
    /// The first day kept when today is `today`: with `13m` on 2026-11-24,
    /// 2025-10-24.
    pub fn first_kept_day(self, today: NaiveDate) -> NaiveDate {
        match self {
            Keep::Days(n) => today
                .checked_sub_days(Days::new(u64::from(n)))
                .unwrap_or(NaiveDate::MIN),
            Keep::Months(n) => today
                .checked_sub_months(Months::new(n))
                .unwrap_or(NaiveDate::MIN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `cli_values` fuzz target: `--keep 222202202d` went
    /// before the first representable day and panicked.
    #[test]
    fn a_huge_retention_window_keeps_everything() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
        for keep in [
            "222202202d",
            "4294967295d",
            "4294967295w",
            "4294967295m",
            "4294967295y",
        ] {
            let keep = parse_keep(keep).expect(keep);
            assert_eq!(keep.first_kept_day(today), NaiveDate::MIN);
        }
    }
}
