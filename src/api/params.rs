//! The query parameters of the API's series: parsed from user text, with
//! the hosted API's defaults and a 400 naming the parameter that is wrong.
//! No I/O (a fuzz target).

use chrono::NaiveDate;

use crate::query::span::{Granularity, Span};

/// A query parameter with a bad value: the API answers 400 naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub parameter: &'static str,
    pub detail: String,
}

impl ParamError {
    fn bad(parameter: &'static str, detail: impl Into<String>) -> Self {
        Self {
            parameter,
            detail: detail.into(),
        }
    }
}

/// The query string as `(key, value)` pairs, decoded; repeated keys kept
/// (`repos=a&repos=b`).
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// `group`: one row per period and repository, or per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Repo,
    Namespace,
}

/// The longest custom range (`from`/`to`), in days.
pub const MAX_DAYS: i64 = 400;

/// The query parameters of a series, with the hosted API's defaults:
/// `timespan=months`, `period=last-2-months`, `group=repo`; `from` and
/// `to` (days, `to` excluded) replace `period` by a custom range whose
/// first and last periods may be partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    granularity: Granularity,
    months: u32,
    group: Group,
    custom: Option<Span>,
}

impl Params {
    /// Unknown parameters are ignored (as the hosted API does); a known one
    /// with a bad value is a 400 naming it.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ParamError> {
        let mut p = Params {
            granularity: Granularity::Month,
            months: 2,
            group: Group::Repo,
            custom: None,
        };
        let (mut from, mut to) = (None, None);
        for (k, v) in pairs {
            match k.as_str() {
                "from" => from = Some(v.as_str()),
                "to" => to = Some(v.as_str()),
                "timespan" => p.granularity = timespan(v)?,
                "period" => {
                    p.months = match v.as_str() {
                        "last-2-months" => 2,
                        "last-3-months" => 3,
                        "last-6-months" => 6,
                        "last-12-months" => 12,
                        _ => {
                            return Err(ParamError::bad(
                                "period",
                                format!("period must be one of last-2-months, last-3-months, last-6-months, last-12-months, not `{v}`"),
                            ))
                        }
                    }
                }
                "group" => {
                    p.group = match v.as_str() {
                        "repo" => Group::Repo,
                        "namespace" => Group::Namespace,
                        _ => {
                            return Err(ParamError::bad(
                                "group",
                                format!("group must be repo or namespace, not `{v}`"),
                            ))
                        }
                    }
                }
                _ => {}
            }
        }
        p.custom = match (from, to) {
            (None, None) => None,
            (Some(from), Some(to)) => Some(custom(from, to)?),
            (None, Some(_)) => return Err(ParamError::bad("from", "from is required with to")),
            (Some(_), None) => return Err(ParamError::bad("to", "to is required with from")),
        };
        Ok(p)
    }

    /// The days covered: the custom range, or the complete periods of the
    /// last `period` months.
    pub fn span(&self, today: NaiveDate) -> Span {
        self.custom
            .unwrap_or_else(|| Span::trailing(self.granularity, self.months, today))
    }

    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    pub fn group(&self) -> Group {
        self.group
    }
}

/// A custom range: `from` and `to` are days, `to` excluded, at most
/// [`MAX_DAYS`] apart.
fn custom(from: &str, to: &str) -> Result<Span, ParamError> {
    // Exactly YYYY-MM-DD (chrono alone also takes `2026-1-2`).
    for (parameter, text) in [("from", from), ("to", to)] {
        let exact = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .is_ok_and(|d| d.format("%Y-%m-%d").to_string() == text);
        if !exact {
            return Err(ParamError::bad(
                parameter,
                format!("{parameter} must be a day like 2026-11-30, not `{text}`"),
            ));
        }
    }
    let span = Span::days(from, to).map_err(|e| ParamError::bad("to", e.to_string()))?;
    if span.len_days() > MAX_DAYS {
        return Err(ParamError::bad(
            "to",
            format!(
                "a range is at most {MAX_DAYS} days, not {}",
                span.len_days()
            ),
        ));
    }
    Ok(span)
}

/// `weeks` or `months` (a query parameter or a path segment).
pub fn timespan(v: &str) -> Result<Granularity, ParamError> {
    match v {
        "weeks" => Ok(Granularity::Week),
        "months" => Ok(Granularity::Month),
        _ => Err(ParamError::bad(
            "timespan",
            format!("timespan must be weeks or months, not `{v}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        query_pairs(Some(q))
    }

    #[test]
    fn parameters_default_as_the_hosted_api_and_name_a_bad_one() {
        let p = Params::parse(&[]).expect("defaults");
        assert_eq!(
            p,
            Params {
                granularity: Granularity::Month,
                months: 2,
                group: Group::Repo,
                custom: None,
            }
        );
        let p = Params::parse(&pairs(
            "timespan=weeks&period=last-12-months&group=namespace&x=1",
        ))
        .expect("all set");
        assert_eq!(
            p,
            Params {
                granularity: Granularity::Week,
                months: 12,
                group: Group::Namespace,
                custom: None,
            }
        );
        for (q, name) in [
            ("timespan=days", "timespan"),
            ("period=last-5-months", "period"),
            ("group=tag", "group"),
            ("from=2026-01-01", "to"),
            ("to=2026-01-01", "from"),
            ("from=2026-13-01&to=2026-12-01", "from"),
            ("from=2026-01-01&to=2026-1-2", "to"),
            ("from=2026-02-01&to=2026-01-01", "to"),
            ("from=2025-01-01&to=2026-03-01", "to"),
        ] {
            match Params::parse(&pairs(q)) {
                Err(ParamError { parameter, .. }) => assert_eq!(parameter, name),
                other => panic!("{q}: {other:?}"),
            }
        }
    }
}
