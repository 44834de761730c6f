//! The publisher analytics API of `pullstats serve`: the hosted DVP Data
//! API's paths and fields, over our table, for `read` tokens of the tokens
//! file; plus the hosted login (`POST /v2/users/login`) and public pulls
//! badges.
//!
//! ```text
//!  GET /api/publisher/analytics/v1/…  ─▶ viewer (bearer: a tokens-file secret, or a login's JWT)
//!        │ namespaces / series ─▶ Catalog: days with data + pre-aggregated complete periods
//!        │ breakdowns / references ─▶ Catalog: a scan of the span, kept while its days keep their rows
//!        │ exports ─▶ Exports: CSV of `pullstats export`, cached, split, signed links
//!  GET /downloads/{file}?expires&signature ─▶ HMAC check ─▶ the file
//!  POST /v2/users/login ─▶ limiter (failures per client) ─▶ JWT
//!  GET /badge/{ns}/{repo}.json|.svg ─▶ [badges] of the tokens file ─▶ all-time pulls
//! ```
//!
//! What a token may not see answers exactly as what does not exist (404,
//! one body), so a token cannot probe for namespaces. Namespaces and
//! repositories in paths are looked up in the data, never joined into file
//! paths or SQL text (SQL literals are quoted, and only names found in the
//! table reach it).

pub mod badge;
mod cache;
pub mod data;
mod exports;
mod insights;
pub mod keys;
mod login;
pub mod params;
mod series;
mod web;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use self::data::Catalog;
use self::exports::Exports;
use self::keys::Keys;
use self::login::Limiter;
use self::params::{query_pairs, ParamError};
use crate::serve::tokens::{bearer, Refusal, Role, Token, Tokens};

/// The hosted API's base path.
pub const BASE: &str = "/api/publisher/analytics/v1";
/// The OpenAPI document served at `{BASE}/openapi.json`.
pub const OPENAPI: &str = include_str!("../../schemas/openapi.json");

/// Settings of the API (flags of `serve`).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How long a download link stays valid.
    pub link_ttl: Duration,
    /// How long a login's session token stays valid.
    pub session_ttl: Duration,
    /// A download file is cut after the row that takes it past this size.
    pub export_part_bytes: u64,
    /// Prefix of download links (e.g. `https://stats.example.org`); without
    /// one, links are the request's own `Host`.
    pub public_url: Option<String>,
    /// Where generated exports are kept.
    pub export_dir: PathBuf,
    /// Reverse proxies whose `X-Forwarded-For` names the login limiter's
    /// client (`--trusted-proxy`).
    pub trusted_proxies: Vec<ipnetwork::IpNetwork>,
}

/// Everything the API's handlers share.
pub struct Api {
    pub tokens: Arc<Tokens>,
    pub catalog: Arc<Catalog>,
    keys: Keys,
    config: ApiConfig,
    exports: Exports,
    logins: Limiter,
}

impl Api {
    pub fn new(tokens: Arc<Tokens>, catalog: Arc<Catalog>, keys: Keys, config: ApiConfig) -> Self {
        let exports = Exports::new(config.export_dir.clone(), config.export_part_bytes);
        Self {
            tokens,
            catalog,
            keys,
            config,
            exports,
            logins: Limiter::default(),
        }
    }

    /// The `read` token a request's bearer credential names: a tokens-file
    /// secret, or a session token from `POST /v2/users/login` (which names
    /// its entry, so revoking the entry revokes the session).
    fn viewer(&self, headers: &HeaderMap) -> Result<Token, ApiError> {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let credential = bearer(header).ok_or(ApiError::Unauthenticated)?;
        let found = if keys::looks_like_jwt(credential) {
            let name = self
                .keys
                .session_name(credential)
                .ok_or(ApiError::Unauthenticated)?;
            self.tokens.named(&name, Role::Read)
        } else {
            self.tokens.authorize(header, Role::Read)
        };
        found.map_err(|r| match r {
            Refusal::Unauthenticated => ApiError::Unauthenticated,
            Refusal::Forbidden => ApiError::Forbidden,
        })
    }
}

/// What the API answers when it does not answer data. Every body is JSON
/// `{"detail": …}` (as the hosted API's), with `parameter` for a 400.
#[derive(Debug)]
pub enum ApiError {
    BadParameter {
        parameter: &'static str,
        detail: String,
    },
    Unauthenticated,
    Forbidden,
    /// Not there, or not this token's to see: the same answer.
    NotFound,
    TooManyLogins {
        retry_after_s: u64,
    },
    LoginFailed,
    /// Not answered in time (serve's deadline): a retry may find the
    /// answer, whose scan goes on.
    Unavailable {
        retry_after_s: u64,
    },
    Internal(String),
}

impl ApiError {
    fn bad(parameter: &'static str, detail: impl Into<String>) -> Self {
        Self::BadParameter {
            parameter,
            detail: detail.into(),
        }
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        Self::BadParameter {
            parameter: e.parameter,
            detail: e.detail,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadParameter { parameter, detail } => (
                StatusCode::BAD_REQUEST,
                Json(json!({"detail": detail, "parameter": parameter})),
            )
                .into_response(),
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"detail": "a valid bearer token is needed"})),
            )
                .into_response(),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                Json(json!({"detail": "this token may not read analytics"})),
            )
                .into_response(),
            ApiError::NotFound => {
                (StatusCode::NOT_FOUND, Json(json!({"detail": "not found"}))).into_response()
            }
            ApiError::TooManyLogins { retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)))],
                Json(json!({"detail": "too many failed logins; try again later"})),
            )
                .into_response(),
            ApiError::LoginFailed => (
                StatusCode::UNAUTHORIZED,
                Json(json!({"detail": "incorrect username or password"})),
            )
                .into_response(),
            ApiError::Unavailable { retry_after_s } => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)))],
                Json(json!({"detail": "not answered in time; try again shortly"})),
            )
                .into_response(),
            ApiError::Internal(e) => {
                tracing::error!("API request failed: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"detail": "internal error; see the server's log"})),
                )
                    .into_response()
            }
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("the scan's task failed: {e}"))
    }
}

impl From<data::DataError> for ApiError {
    fn from(e: data::DataError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// The SQL filter of one namespace, or of some of its repositories (all
/// when `repos` is empty). Names reach it only once found in the table's
/// data (a sight), and as quoted literals.
fn sql_filters(namespace: &str, repos: &[String]) -> crate::query::export::Filters {
    crate::query::export::Filters {
        namespaces: vec![namespace.to_owned()],
        repositories: repos.iter().map(|r| format!("{namespace}/{r}")).collect(),
    }
}

/// What a token sees of the data: namespace → the repositories with data
/// it may see, and whether it sees the whole namespace.
#[derive(Debug, Default)]
pub(crate) struct Sight {
    pub namespaces: std::collections::BTreeMap<String, NamespaceSight>,
}

#[derive(Debug, Default)]
pub(crate) struct NamespaceSight {
    /// Granted whole (`acme` or `*`), not only single repositories.
    pub whole: bool,
    pub repos: BTreeSet<String>,
}

impl NamespaceSight {
    /// The single repositories it sees (empty when it sees the whole).
    pub fn extra_repos(&self) -> Vec<String> {
        if self.whole {
            Vec::new()
        } else {
            self.repos.iter().cloned().collect()
        }
    }
}

impl Sight {
    fn of(token: &Token, days: &data::Days) -> Self {
        let mut sight = Sight::default();
        for (ns, repos) in &days.namespaces {
            let whole = token.sees(ns);
            let seen: BTreeSet<String> = if whole {
                repos.clone()
            } else {
                repos
                    .iter()
                    .filter(|r| token.sees_repo(ns, r))
                    .cloned()
                    .collect()
            };
            if !seen.is_empty() {
                sight
                    .namespaces
                    .insert(ns.to_owned(), NamespaceSight { whole, repos: seen });
            }
        }
        sight
    }

    /// A namespace it sees, or the 404 of one that does not exist.
    fn namespace(&self, ns: &str) -> Result<&NamespaceSight, ApiError> {
        self.namespaces.get(ns).ok_or(ApiError::NotFound)
    }
}

/// The viewer and what it sees, as of the last refresh.
fn sight(api: &Api, headers: &HeaderMap) -> Result<(Arc<data::Days>, Sight), ApiError> {
    let token = api.viewer(headers)?;
    let days = api.catalog.days();
    let sight = Sight::of(&token, &days);
    Ok((days, sight))
}

/// The API's routes (state applied: merge them into the server's router).
pub fn router<S: Clone + Send + Sync + 'static>(api: Arc<Api>) -> Router<S> {
    let exports = format!("{BASE}/namespaces/{{namespace}}/pulls/exports/years");
    Router::new()
        .route(BASE, get(root))
        .route(&format!("{BASE}/"), get(root))
        .route(&format!("{BASE}/openapi.json"), get(openapi))
        .route(&format!("{BASE}/namespaces"), get(namespaces))
        .route(&format!("{BASE}/namespaces/{{namespace}}"), get(namespace))
        .route(
            &format!("{BASE}/namespaces/{{namespace}}/pulls"),
            get(series::namespace_pulls),
        )
        .route(
            &format!("{BASE}/namespaces/{{namespace}}/repos/{{*rest}}"),
            get(series::repo_pulls),
        )
        .route(&format!("{BASE}/repos/pulls"), get(series::repos_pulls))
        .route(
            &format!("{BASE}/namespaces/{{namespace}}/repositories"),
            get(insights::repositories),
        )
        .route(
            &format!("{BASE}/namespaces/{{namespace}}/breakdowns"),
            get(insights::breakdowns),
        )
        .route(
            &format!("{BASE}/namespaces/{{namespace}}/references"),
            get(insights::references),
        )
        .route(&exports, get(exports::years))
        .route(
            &format!("{exports}/{{year}}/{{timespan}}"),
            get(exports::periods),
        )
        .route(
            &format!("{exports}/{{year}}/{{timespan}}/{{number}}"),
            get(exports::period),
        )
        .route(
            &format!("{exports}/{{year}}/{{timespan}}/{{number}}/{{view}}"),
            get(exports::links),
        )
        .route(
            &format!("{BASE}/downloads/{{file}}"),
            get(exports::download),
        )
        .route("/v2/users/login", post(login))
        .route("/badge/{namespace}/{*file}", get(badge))
        .merge(web::routes())
        .with_state(api)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn root(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (_, sight) = sight(&api, &headers)?;
    let names: Vec<&String> = sight.namespaces.keys().collect();
    Ok(Json(json!({ "namespaces": names })).into_response())
}

fn metadata(ns: &str, seen: &NamespaceSight) -> serde_json::Value {
    json!({
        "namespace": ns,
        "extraRepos": seen.extra_repos(),
        "datasets": [{
            "name": "pulls",
            "views": ["raw", "summary", "repo-summary", "namespace-summary"],
            "timespans": ["months", "weeks"],
        }],
    })
}

async fn namespaces(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (_, sight) = sight(&api, &headers)?;
    let list: Vec<serde_json::Value> = sight
        .namespaces
        .iter()
        .map(|(ns, seen)| metadata(ns, seen))
        .collect();
    Ok(Json(list).into_response())
}

async fn namespace(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath(ns): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (_, sight) = sight(&api, &headers)?;
    let seen = sight.namespace(&ns)?;
    Ok(Json(metadata(&ns, seen)).into_response())
}

#[derive(serde::Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// The hosted login: a tokens-file entry's name and secret for a session
/// token. Failures are counted per client address and refused beyond a
/// burst.
async fn login(
    State(api): State<Arc<Api>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let peer = peer.map(|axum::Extension(ConnectInfo(a))| a.ip());
    let client = login::client_address(peer, &headers, &api.config.trusted_proxies);
    if let Some(wait) = api.logins.refused(client) {
        return Err(ApiError::TooManyLogins {
            retry_after_s: wait.as_secs() + 1,
        });
    }
    let given: Option<Login> = serde_json::from_slice(&body).ok();
    let token = given.and_then(|l| api.tokens.login(&l.username, &l.password, Role::Read).ok());
    let Some(token) = token else {
        api.logins.failed(client);
        return Err(ApiError::LoginFailed);
    };
    let jwt = api
        .keys
        .session(&token.name, api.config.session_ttl)
        .map_err(|e| ApiError::Internal(format!("cannot sign a session token: {e}")))?;
    tracing::info!(token = %token.name, "login");
    Ok(Json(json!({ "token": jwt })).into_response())
}

/// `/badge/{ns}/{repo}.json` (shields.io's endpoint schema) or `.svg`.
async fn badge(
    State(api): State<Arc<Api>>,
    UrlPath((ns, file)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (repo, svg) = match (file.strip_suffix(".json"), file.strip_suffix(".svg")) {
        (Some(r), _) => (r, false),
        (_, Some(r)) => (r, true),
        _ => return Err(ApiError::NotFound),
    };
    let listed = api
        .tokens
        .badges()
        .iter()
        .any(|(n, r)| *n == ns && r == repo);
    if !listed {
        return Err(ApiError::NotFound);
    }
    let pulls = api.catalog.days().pulls(&ns, repo);
    let cache = (header::CACHE_CONTROL, "max-age=300");
    Ok(if svg {
        let message = badge::metric(pulls);
        (
            [(header::CONTENT_TYPE, "image/svg+xml"), cache],
            badge::svg(&message),
        )
            .into_response()
    } else {
        ([cache], Json(badge::endpoint(pulls))).into_response()
    })
}
