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
use super::params::{query_pairs, Group, Params};
use super::{sight, Api, ApiError, NamespaceSight};

/// At most this many repositories in one `/repos/pulls`.
pub const MAX_REPOS: usize = 50;

impl Params {
    /// The periods the series covers, oldest first.
    fn periods(&self, today: NaiveDate) -> Vec<Period> {
        let granularity = self.granularity();
        self.span(today)
            .periods(granularity)
            .into_iter()
            .map(|span| Period { granularity, span })
            .collect()
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
    let pulls = series(&api, &data, &namespace, seen, None, p.group()).await?;
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
        p.group(),
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
        let pulls = series(&api, periods, ns, seen, Some(&[repo.to_owned()]), p.group()).await?;
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
