//! What the dashboard shows beside the series: a namespace's repositories,
//! breakdowns of a span's pulls (country, cloud provider, origin type,
//! client, OS / arch) and its references (tag or digest). Same auth and
//! span parameters as the series; each answer is one or two scans of the
//! span's partitions for one namespace, kept by the catalog while the
//! span's days keep their rows (`cache`).

use std::sync::Arc;

use arrow::array::Array;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::data::{ints, strings, Answer, Counts, COUNTS_SQL};
use super::params::Params;
use super::series::{asked_repos, today};
use super::{query_pairs, sight, sql_filters, Api, ApiError, NamespaceSight};
use crate::query::export::Span;

/// Rows of one breakdown answered; the rest are summed as "others".
pub const MAX_BREAKDOWN_ROWS: usize = 100;
/// References answered, busiest first.
pub const MAX_REFERENCES: usize = 1000;

/// The breakdowns, in the order the page shows them: name, the grouping
/// set's columns (the first one tells its rows apart), how a value is
/// written.
const DIMENSIONS: &[(&str, &[&str], &str)] = &[
    ("country", &["country"], ""),
    ("host", &["host"], ""),
    ("type", &["type"], ""),
    ("client", &["user_agent_tool", "user_agent_version"], " "),
    ("platform", &["os", "arch"], "/"),
];

/// The repositories of `repos=` (names within the namespace, repeatable
/// or comma-separated) the token sees; all it sees without `repos=`.
/// `None` stands for the whole namespace.
fn selection(
    seen: &NamespaceSight,
    pairs: &[(String, String)],
) -> Result<Option<Vec<String>>, ApiError> {
    let asked = asked_repos(pairs)?;
    if asked.is_empty() {
        return Ok(if seen.whole {
            None
        } else {
            Some(seen.repos.iter().cloned().collect())
        });
    }
    Ok(Some(
        asked
            .into_iter()
            .filter(|r| seen.repos.contains(*r))
            .map(str::to_owned)
            .collect(),
    ))
}

/// The request's namespace, selection and span, or the answer that ends it.
struct Ask {
    namespace: String,
    repos: Option<Vec<String>>,
    span: Span,
}

fn ask(
    api: &Api,
    headers: &HeaderMap,
    namespace: String,
    query: Option<&str>,
) -> Result<Ask, ApiError> {
    let (_, sight) = sight(api, headers)?;
    let seen = sight.namespace(&namespace)?;
    let pairs = query_pairs(query);
    let span = Params::parse(&pairs)?.span(today());
    let repos = selection(seen, &pairs)?;
    Ok(Ask {
        namespace,
        repos,
        span,
    })
}

impl Ask {
    fn nothing(&self) -> bool {
        self.repos.as_ref().is_some_and(Vec::is_empty)
    }

    fn where_clause(&self) -> String {
        format!(
            "{}{}",
            self.span.predicate(),
            sql_filters(&self.namespace, self.repos.as_deref().unwrap_or_default()).predicate()
        )
    }

    /// What tells this answer apart from others of the same kind: the
    /// namespace, the repositories and the span (names in `Debug` form, so
    /// no two selections write the same key).
    fn key(&self) -> String {
        format!(
            "{:?} {:?} {}..{}",
            self.namespace, self.repos, self.span.from, self.span.to
        )
    }

    /// The answer `what` for this request, with its head: kept from a scan
    /// of its span, else `scan` of the table over its filter, else (nothing
    /// selected, or no table yet) `empty`.
    async fn answer<F, Fut>(
        &self,
        api: &Api,
        what: &'static str,
        scan: F,
        empty: impl FnOnce() -> Answer,
    ) -> Result<Response, ApiError>
    where
        F: FnOnce(deltalake::DeltaTable, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Answer, ApiError>> + Send + 'static,
    {
        let scanned = if self.nothing() {
            None
        } else {
            let filter = self.where_clause();
            api.catalog
                .answer(what, self.key(), &self.span, move |t| scan(t, filter))
                .await?
        };
        let mut out = self.head();
        match scanned {
            Some(answer) => out.extend(answer.as_ref().clone()),
            None => out.extend(empty()),
        }
        Ok(Json(out).into_response())
    }

    fn head(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("namespace".into(), json!(self.namespace));
        m.insert("repos".into(), json!(self.repos));
        m.insert("from".into(), json!(self.span.from.to_string()));
        m.insert("to".into(), json!(self.span.to.to_string()));
        m
    }
}

/// `GET …/namespaces/{ns}/repositories`: the repositories the token sees,
/// by all-time pulls (busiest first).
pub(super) async fn repositories(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath(namespace): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (days, sight) = sight(&api, &headers)?;
    let seen = sight.namespace(&namespace)?;
    let mut list: Vec<(u64, &String)> = seen
        .repos
        .iter()
        .map(|r| (days.pulls(&namespace, r), r))
        .collect();
    list.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let list: Vec<serde_json::Value> = list
        .into_iter()
        .map(|(pulls, name)| json!({ "name": name, "pulls": pulls }))
        .collect();
    Ok(Json(json!({ "namespace": namespace, "repositories": list })).into_response())
}

#[derive(Debug, Serialize, PartialEq)]
struct Share {
    value: Option<String>,
    pulls: u64,
    share: f64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Breakdown {
    rows: Vec<Share>,
    other_rows: usize,
    other_pulls: u64,
}

fn share(pulls: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (pulls as f64 / total as f64 * 10_000.0).round() / 10_000.0
    }
}

fn totals_json(c: &Counts) -> serde_json::Value {
    json!({
        "pullCount": c.pulls(),
        "pullByTagCount": c.pull_by_tag,
        "pullByDigestCount": c.pull_by_digest,
        "versionCheckCount": c.version_check,
        "ipCount": c.unique_ips,
    })
}

/// `GET …/namespaces/{ns}/breakdowns`: the span's totals, and its pulls
/// (by tag and by digest) per value of each dimension, busiest first.
pub(super) async fn breakdowns(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath(namespace): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let ask = ask(&api, &headers, namespace, query.as_deref())?;
    ask.answer(
        &api,
        "breakdowns",
        {
            let api = api.clone();
            move |t, filter| scan_breakdowns(api, t, filter)
        },
        || breakdowns_json(Counts::default(), Vec::new()),
    )
    .await
}

/// The totals and breakdowns over `filter`: two scans.
async fn scan_breakdowns(
    api: Arc<Api>,
    t: deltalake::DeltaTable,
    filter: String,
) -> Result<Answer, ApiError> {
    let total = totals(&api, &t, &filter).await?;
    let mut groups: Vec<Vec<(Option<String>, u64)>> = vec![Vec::new(); DIMENSIONS.len()];
    let columns: Vec<&str> = DIMENSIONS
        .iter()
        .flat_map(|d| d.1.iter().copied())
        .collect();
    let grouping: Vec<String> = DIMENSIONS
        .iter()
        .map(|d| format!("CAST(grouping({}) AS BIGINT)", d.1[0]))
        .collect();
    let sets: Vec<String> = DIMENSIONS
        .iter()
        .map(|d| format!("({})", d.1.join(", ")))
        .collect();
    let sql = format!(
        "SELECT {}, {}, CAST(count(*) AS BIGINT) AS pulls FROM pulls \
         WHERE {filter} AND action <> 'version_check' GROUP BY GROUPING SETS ({})",
        columns.join(", "),
        grouping.join(", "),
        sets.join(", ")
    );
    for b in api.catalog.run(&t, &sql).await? {
        let text: Vec<_> = (0..columns.len())
            .map(|i| strings(&b, i))
            .collect::<Result<_, _>>()?;
        let flags: Vec<_> = (0..DIMENSIONS.len())
            .map(|i| ints(&b, columns.len() + i))
            .collect::<Result<_, _>>()?;
        let pulls = ints(&b, columns.len() + DIMENSIONS.len())?;
        for row in 0..b.num_rows() {
            let Some(d) = (0..DIMENSIONS.len()).find(|d| flags[*d].value(row) == 0) else {
                continue;
            };
            let first: usize = DIMENSIONS[..d].iter().map(|d| d.1.len()).sum();
            let parts: Vec<&str> = (first..first + DIMENSIONS[d].1.len())
                .filter(|c| !text[*c].is_null(row))
                .map(|c| text[c].value(row))
                .collect();
            let value = (!parts.is_empty()).then(|| parts.join(DIMENSIONS[d].2));
            groups[d].push((value, u64::try_from(pulls.value(row)).unwrap_or(0)));
        }
    }
    Ok(breakdowns_json(total, groups))
}

/// `total` and `breakdowns` of the answer: each dimension's rows busiest
/// first, past [`MAX_BREAKDOWN_ROWS`] summed as others.
fn breakdowns_json(total: Counts, mut groups: Vec<Vec<(Option<String>, u64)>>) -> Answer {
    groups.resize(DIMENSIONS.len(), Vec::new());
    let mut all = serde_json::Map::new();
    for (d, mut rows) in groups.into_iter().enumerate() {
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let rest = rows.split_off(rows.len().min(MAX_BREAKDOWN_ROWS));
        let breakdown = Breakdown {
            rows: rows
                .into_iter()
                .map(|(value, pulls)| Share {
                    value,
                    pulls,
                    share: share(pulls, total.pulls()),
                })
                .collect(),
            other_rows: rest.len(),
            other_pulls: rest.iter().map(|r| r.1).sum(),
        };
        all.insert(DIMENSIONS[d].0.into(), json!(breakdown));
    }
    let mut out = serde_json::Map::new();
    out.insert("total".into(), totals_json(&total));
    out.insert("breakdowns".into(), all.into());
    out
}

async fn totals(api: &Api, t: &deltalake::DeltaTable, filter: &str) -> Result<Counts, ApiError> {
    let sql = format!("SELECT {COUNTS_SQL} FROM pulls WHERE {filter}");
    let mut c = Counts::default();
    for b in api.catalog.run(t, &sql).await? {
        if b.num_rows() > 0 {
            c = Counts::from_row(&b, 0, 0)?;
        }
    }
    Ok(c)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    repo: String,
    reference: String,
    pull_count: u64,
    pull_by_tag_count: u64,
    pull_by_digest_count: u64,
    version_check_count: u64,
    ip_count: u64,
}

/// `GET …/namespaces/{ns}/references`: per repository and reference (the
/// tag or digest a pull asked for) over the span, busiest first.
pub(super) async fn references(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath(namespace): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let ask = ask(&api, &headers, namespace, query.as_deref())?;
    ask.answer(
        &api,
        "references",
        {
            let api = api.clone();
            move |t, filter| scan_references(api, t, filter)
        },
        || references_json(Vec::new()),
    )
    .await
}

async fn scan_references(
    api: Arc<Api>,
    t: deltalake::DeltaTable,
    filter: String,
) -> Result<Answer, ApiError> {
    let sql = format!(
        "SELECT repository, reference, {COUNTS_SQL} \
         FROM pulls WHERE {filter} GROUP BY repository, reference \
         ORDER BY pull_by_tag + pull_by_digest DESC, version_check DESC, repository, reference \
         LIMIT {}",
        MAX_REFERENCES + 1
    );
    let mut rows = Vec::new();
    for b in api.catalog.run(&t, &sql).await? {
        let (repo, reference) = (strings(&b, 0)?, strings(&b, 1)?);
        for i in 0..b.num_rows() {
            let c = Counts::from_row(&b, 2, i)?;
            rows.push(Reference {
                repo: repo.value(i).to_owned(),
                reference: reference.value(i).to_owned(),
                pull_count: c.pulls(),
                pull_by_tag_count: c.pull_by_tag,
                pull_by_digest_count: c.pull_by_digest,
                version_check_count: c.version_check,
                ip_count: c.unique_ips,
            });
        }
    }
    Ok(references_json(rows))
}

/// `truncated` and `references` of the answer: at most [`MAX_REFERENCES`].
fn references_json(mut rows: Vec<Reference>) -> Answer {
    let truncated = rows.len() > MAX_REFERENCES;
    rows.truncate(MAX_REFERENCES);
    let mut out = serde_json::Map::new();
    out.insert("truncated".into(), json!(truncated));
    out.insert("references".into(), json!(rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_keeps_what_the_token_sees_and_none_means_the_namespace() {
        let seen = NamespaceSight {
            whole: true,
            repos: ["api".to_owned(), "web".to_owned()].into(),
        };
        let pairs = |q: &str| query_pairs(Some(q));
        assert_eq!(selection(&seen, &[]).expect("all"), None);
        assert_eq!(
            selection(&seen, &pairs("repos=web,secret&repos=api")).expect("some"),
            Some(vec!["api".to_owned(), "web".to_owned()])
        );
        assert_eq!(
            selection(&seen, &pairs("repos=secret")).expect("none"),
            Some(vec![])
        );
        let partial = NamespaceSight {
            whole: false,
            repos: ["web".to_owned()].into(),
        };
        assert_eq!(
            selection(&partial, &[]).expect("granted"),
            Some(vec!["web".to_owned()])
        );
        let many: String = (0..=crate::api::series::MAX_REPOS)
            .map(|i| format!("repos=r{i}&"))
            .collect();
        assert!(matches!(
            selection(&seen, &pairs(&many)),
            Err(ApiError::BadParameter {
                parameter: "repos",
                ..
            })
        ));
        let f = sql_filters("acme", &["it's".to_owned()]);
        assert_eq!(
            f.predicate(),
            " AND namespace IN ('acme') AND ((namespace = 'acme' AND repository = 'it''s'))"
        );
    }

    #[test]
    fn shares_round_to_four_places_and_an_empty_total_is_zero() {
        assert_eq!(share(1, 3), 0.3333);
        assert_eq!(share(5, 0), 0.0);
    }
}
