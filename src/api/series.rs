//! The series endpoints: pulls per complete week or month of one
//! namespace, one repository, or a list of repositories, from the
//! catalog's pre-aggregated periods (no scan once a period is computed).

use std::sync::Arc;

use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Days, NaiveDate};
use serde::Serialize;
use serde_json::json;

use super::data::{Counts, Period, PeriodData};
use super::{query_pairs, sight, Api, ApiError, NamespaceSight};
use crate::query::export::{Granularity, Span};

/// At most this many repositories in one `/repos/pulls`.
pub const MAX_REPOS: usize = 50;

/// `group`: one row per period and repository, or per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
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
pub(super) struct Params {
    granularity: Granularity,
    months: u32,
    group: Group,
    custom: Option<Span>,
}

impl Params {
    /// Unknown parameters are ignored (as the hosted API does); a known one
    /// with a bad value is a 400 naming it.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
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
                            return Err(ApiError::bad(
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
                            return Err(ApiError::bad(
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
            (None, Some(_)) => return Err(ApiError::bad("from", "from is required with to")),
            (Some(_), None) => return Err(ApiError::bad("to", "to is required with from")),
        };
        Ok(p)
    }

    /// The days covered: the custom range, or the complete periods of the
    /// last `period` months.
    pub fn span(&self, today: NaiveDate) -> Span {
        self.custom
            .unwrap_or_else(|| Span::trailing(self.granularity, self.months, today))
    }

    /// The periods the series covers, oldest first.
    fn periods(&self, today: NaiveDate) -> Vec<Period> {
        self.span(today)
            .periods(self.granularity)
            .into_iter()
            .map(|span| Period {
                granularity: self.granularity,
                span,
            })
            .collect()
    }
}

/// A custom range: `from` and `to` are days, `to` excluded, at most
/// [`MAX_DAYS`] apart.
fn custom(from: &str, to: &str) -> Result<Span, ApiError> {
    // Exactly YYYY-MM-DD (chrono alone also takes `2026-1-2`).
    for (parameter, text) in [("from", from), ("to", to)] {
        let exact = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .is_ok_and(|d| d.format("%Y-%m-%d").to_string() == text);
        if !exact {
            return Err(ApiError::bad(
                parameter,
                format!("{parameter} must be a day like 2026-11-30, not `{text}`"),
            ));
        }
    }
    let span = Span::days(from, to).map_err(|e| ApiError::bad("to", e.to_string()))?;
    if span.len_days() > MAX_DAYS {
        return Err(ApiError::bad(
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
pub(super) fn timespan(v: &str) -> Result<Granularity, ApiError> {
    match v {
        "weeks" => Ok(Granularity::Week),
        "months" => Ok(Granularity::Month),
        _ => Err(ApiError::bad(
            "timespan",
            format!("timespan must be weeks or months, not `{v}`"),
        )),
    }
}

/// One row of a series (the hosted API's `PullModel`, plus the three
/// counts it is the sum of).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PullModel {
    pub start: String,
    pub end: String,
    pub repo: String,
    pub namespace: String,
    pub pull_count: u64,
    pub ip_count: u64,
    pub country: String,
    pub pull_by_tag_count: u64,
    pub pull_by_digest_count: u64,
    pub version_check_count: u64,
}

fn rfc3339(d: NaiveDate) -> String {
    format!("{}T00:00:00Z", d.format("%Y-%m-%d"))
}

fn row(period: &Period, namespace: &str, repo: &str, c: Counts) -> PullModel {
    let last = period
        .span
        .to
        .checked_sub_days(Days::new(1))
        .unwrap_or(period.span.to);
    PullModel {
        start: rfc3339(period.span.from),
        end: rfc3339(last),
        repo: repo.to_owned(),
        namespace: namespace.to_owned(),
        pull_count: c.pulls(),
        ip_count: c.unique_ips,
        country: String::new(),
        pull_by_tag_count: c.pull_by_tag,
        pull_by_digest_count: c.pull_by_digest,
        version_check_count: c.version_check,
    }
}

pub(super) fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// The aggregates of each period of `p`, oldest first: fetched once per
/// request (a custom range's cut ends are a scan each).
async fn periods_data(api: &Api, p: Params) -> Result<Vec<(Period, Arc<PeriodData>)>, ApiError> {
    let mut out = Vec::new();
    for period in p.periods(today()) {
        out.push((period, api.catalog.period(period).await?));
    }
    Ok(out)
}

/// The rows of `namespace` (as `seen`), for `repos` (all it sees when
/// `None`), over the periods of `data`.
async fn series(
    api: &Api,
    data: &[(Period, Arc<PeriodData>)],
    namespace: &str,
    seen: &NamespaceSight,
    repos: Option<&[String]>,
    group: Group,
) -> Result<Vec<PullModel>, ApiError> {
    let mut out = Vec::new();
    for (period, data) in data {
        let ns = data.namespaces.get(namespace);
        let repo_counts = |r: &str| ns.and_then(|n| n.repos.get(r)).copied().unwrap_or_default();
        match (repos, group) {
            (None, Group::Namespace) => {
                let total = if seen.whole {
                    ns.map(|n| n.total).unwrap_or_default()
                } else {
                    let only: Vec<String> = seen.repos.iter().cloned().collect();
                    api.catalog.partial_total(*period, namespace, &only).await?
                };
                out.push(row(period, namespace, "", total));
            }
            (None, Group::Repo) => {
                for r in &seen.repos {
                    out.push(row(period, namespace, r, repo_counts(r)));
                }
            }
            (Some(list), _) => {
                for r in list {
                    out.push(row(period, namespace, r, repo_counts(r)));
                }
            }
        }
    }
    Ok(out)
}

pub(super) async fn namespace_pulls(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath(namespace): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (_, sight) = sight(&api, &headers)?;
    let seen = sight.namespace(&namespace)?;
    let p = Params::parse(&query_pairs(query.as_deref()))?;
    let data = periods_data(&api, p).await?;
    let pulls = series(&api, &data, &namespace, seen, None, p.group).await?;
    Ok(Json(json!({ "pulls": pulls })).into_response())
}

/// `/namespaces/{ns}/repos/{repo}/pulls` (a repository's name may hold `/`).
pub(super) async fn repo_pulls(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath((namespace, rest)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (_, sight) = sight(&api, &headers)?;
    let repo = rest.strip_suffix("/pulls").ok_or(ApiError::NotFound)?;
    let seen = sight.namespace(&namespace)?;
    if !seen.repos.contains(repo) {
        return Err(ApiError::NotFound);
    }
    let p = Params::parse(&query_pairs(query.as_deref()))?;
    let data = periods_data(&api, p).await?;
    let pulls = series(
        &api,
        &data,
        &namespace,
        seen,
        Some(&[repo.to_owned()]),
        p.group,
    )
    .await?;
    Ok(Json(json!({ "pulls": pulls })).into_response())
}

/// The values of `repos=` (repeatable, or comma-separated), sorted and
/// deduplicated; more than [`MAX_REPOS`] is a 400.
pub(super) fn asked_repos(pairs: &[(String, String)]) -> Result<Vec<&str>, ApiError> {
    let mut asked: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "repos")
        .flat_map(|(_, v)| v.split(','))
        .filter(|v| !v.is_empty())
        .collect();
    asked.sort_unstable();
    asked.dedup();
    if asked.len() > MAX_REPOS {
        return Err(ApiError::bad(
            "repos",
            format!("at most {MAX_REPOS} repositories, not {}", asked.len()),
        ));
    }
    Ok(asked)
}

/// `/repos/pulls?repos=ns/a&repos=ns/b`: repositories the token cannot see
/// (or that have no data) are left out.
pub(super) async fn repos_pulls(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (_, sight) = sight(&api, &headers)?;
    let pairs = query_pairs(query.as_deref());
    let p = Params::parse(&pairs)?;
    let asked = asked_repos(&pairs)?;
    if asked.is_empty() {
        return Err(ApiError::bad(
            "repos",
            "repos is required: repos=namespace/repository (repeatable)",
        ));
    }
    let mut out = serde_json::Map::new();
    let mut data = None;
    for full in asked {
        let Some((ns, repo)) = full.split_once('/') else {
            continue;
        };
        let Ok(seen) = sight.namespace(ns) else {
            continue;
        };
        if !seen.repos.contains(repo) {
            continue;
        }
        if data.is_none() {
            data = Some(periods_data(&api, p).await?);
        }
        let periods = data.as_deref().unwrap_or_default();
        let pulls = series(&api, periods, ns, seen, Some(&[repo.to_owned()]), p.group).await?;
        out.insert(full.to_owned(), json!({ "pulls": pulls }));
    }
    Ok(Json(json!({ "repos": out })).into_response())
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
                Err(ApiError::BadParameter { parameter, .. }) => assert_eq!(parameter, name),
                other => panic!("{q}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_custom_range_is_cut_into_periods_partial_at_its_ends() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
        let p = Params::parse(&pairs("from=2026-10-15&to=2026-12-02")).expect("custom");
        let spans: Vec<String> = p
            .periods(today)
            .iter()
            .map(|p| format!("{}..{}", p.span.from, p.span.to))
            .collect();
        assert_eq!(
            spans,
            [
                "2026-10-15..2026-11-01",
                "2026-11-01..2026-12-01",
                "2026-12-01..2026-12-02"
            ]
        );
    }

    #[test]
    fn periods_are_complete_and_rows_give_first_and_last_day() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
        let months = Params::parse(&[]).expect("defaults").periods(today);
        let spans: Vec<String> = months
            .iter()
            .map(|p| format!("{}..{}", p.span.from, p.span.to))
            .collect();
        assert_eq!(spans, ["2026-10-01..2026-11-01", "2026-11-01..2026-12-01"]);
        let weeks = Params::parse(&pairs("timespan=weeks"))
            .expect("weeks")
            .periods(today);
        // Monday 2026-11-30's week is not complete on Thursday 2026-12-03.
        assert_eq!(
            weeks.last().map(|p| p.span.to.to_string()).as_deref(),
            Some("2026-11-30")
        );
        let r = row(&months[1], "acme", "web", Counts::default());
        assert_eq!(
            (r.start.as_str(), r.end.as_str()),
            ("2026-11-01T00:00:00Z", "2026-11-30T00:00:00Z")
        );
    }
}
