//! `pullstats serve`: the HTTP front door. A registry POSTs its
//! notifications to `/notifications`; they go on to Kafka (forward mode)
//! or straight into the table through the streaming engine (direct mode).
//!
//! ```text
//!  registry ─POST /notifications─▶ token (receive) ─▶ body ≤ --max-body-bytes ─▶ receive::sort
//!                                                      │ over: dead letter, 202      │ not an envelope: dead letter, 202
//!                                                      ▼                             ▼
//!        forward: one Kafka message per manifest event, keyed by IP ── confirmed ──▶ 200
//!        direct:  stream::wal ── synced ──▶ 200, then stream::queue ─▶ engine (sessionize, enrich, epochs, commits)
//!                 (--no-wal: stream::queue ─▶ engine ── commit ──▶ 200)
//!        brokers / engine unavailable or too slow ─────────────────────────────────▶ 503 (retried)
//! ```
//!
//! Only a missing or wrong token (401/403) and our own unavailability (503)
//! are non-2xx: a registry retries anything else forever, blocking its
//! queue for this endpoint.

pub mod forward;
mod metrics;
pub mod receive;
pub mod tokens;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Router};
use futures::StreamExt;

pub use metrics::{Outcome, ServeMetrics};

use self::forward::Forwarder;
use self::receive::{Bad, Sorted};
use self::tokens::{Refusal, Role, Tokens};
use crate::pipeline::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, Position};
use crate::pipeline::decode::Decoder;
use crate::stream::queue::{Message, QueueHandle, SubmitError};
use crate::stream::wal::WalHandle;

/// Seconds a 503 asks the client to wait (a registry uses its own backoff).
const RETRY_AFTER_S: u64 = 5;
/// The `source` of the receiver's dead letters.
const SOURCE: &str = "POST /notifications";

/// Where kept events go.
pub enum Mode {
    Forward(Arc<Forwarder>),
    Direct {
        queue: QueueHandle,
        /// Answers once synced into the write-ahead log, when there is one.
        wal: Option<WalHandle>,
        /// False once the engine stopped (readiness).
        running: Arc<AtomicBool>,
        table: crate::table::Location,
    },
}

/// One dead-letter sink shared by the handlers (and, in direct mode, the
/// engine).
#[derive(Clone)]
pub struct SharedDeadLetters(pub Arc<Mutex<Box<dyn DeadLetterSink>>>);

impl SharedDeadLetters {
    pub fn new(sink: Box<dyn DeadLetterSink>) -> Self {
        Self(Arc::new(Mutex::new(sink)))
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn DeadLetterSink) -> Result<T, DeadLetterError>,
    ) -> Result<T, DeadLetterError> {
        let mut sink = self.0.lock().map_err(|_| DeadLetterError {
            sink: "dead-letter sink".into(),
            source: std::io::Error::other("a writer panicked"),
        })?;
        f(sink.as_mut())
    }
}

impl DeadLetterSink for SharedDeadLetters {
    fn send(&mut self, letter: DeadLetter<'_>) -> Result<(), DeadLetterError> {
        self.with(|s| s.send(letter))
    }
    fn flush(&mut self) -> Result<(), DeadLetterError> {
        self.with(|s| s.flush())
    }
    fn count(&self) -> u64 {
        self.with(|s| Ok(s.count())).unwrap_or(0)
    }
}

/// Everything the handlers share.
pub struct App {
    pub tokens: Arc<Tokens>,
    pub mode: Mode,
    pub dead_letters: SharedDeadLetters,
    pub metrics: Arc<ServeMetrics>,
    /// The engine's series (direct mode), rendered on the same `/metrics`.
    pub engine_metrics: Option<Arc<crate::metrics::Metrics>>,
    pub max_body_bytes: usize,
    /// `--max-future` (µs): events further ahead of the clock are dead-lettered.
    pub max_future: Option<crate::event::Micros>,
    /// `--client-timeout`: a whole body must arrive within it (tower-http's
    /// body timeout only bounds the wait between two frames, which a body
    /// sent a byte a second never trips).
    pub body_deadline: Duration,
    /// How long an envelope may wait for Kafka's confirmation or the commit.
    pub wait: Duration,
    /// Set at shutdown: new envelopes are answered 503.
    pub draining: Arc<AtomicBool>,
    requests: AtomicU64,
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tokens: Arc<Tokens>,
        mode: Mode,
        dead_letters: SharedDeadLetters,
        engine_metrics: Option<Arc<crate::metrics::Metrics>>,
        max_body_bytes: usize,
        wait: Duration,
        draining: Arc<AtomicBool>,
    ) -> Self {
        Self {
            tokens,
            mode,
            dead_letters,
            metrics: Arc::new(ServeMetrics::default()),
            engine_metrics,
            max_body_bytes,
            max_future: None,
            body_deadline: Duration::from_secs(30),
            wait,
            draining,
            requests: AtomicU64::new(0),
        }
    }
}

/// The routes (the receiver's, and `more`: the API's), with the
/// request-level layers: a deadline for a request's body and for its whole
/// handling, compression of answers, metrics (of every answer, those past
/// the deadline too), and request tracing.
pub fn router(app: Arc<App>, more: Router) -> Router {
    let body_timeout = app.body_deadline;
    let handling = app.wait + body_timeout + Duration::from_secs(5);
    let routes = Router::new()
        .route("/notifications", post(notifications))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(app.clone())
        .merge(more)
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ));
    // Every 5xx is logged where it is made, with its reason (readiness
    // probes' 503 excepted): tower-http's own line for it is debug only.
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG));
    with_deadline(routes, handling)
        .layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .layer(trace)
}

/// `routes`, each request answered by [`past_deadline`] once `handling`
/// has passed.
fn with_deadline(routes: Router, handling: Duration) -> Router {
    routes.layer(
        tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(past_deadline))
            .layer(tower::timeout::TimeoutLayer::new(handling)),
    )
}

/// The answer to a request that was not answered within serve's deadline:
/// 503 with `Retry-After`, as any other unavailability of ours (a registry
/// retries it; work the request started, such as an API scan, goes on and
/// the retry finds its result). The API's routes answer in JSON, as every
/// other of their errors.
async fn past_deadline(uri: Uri, error: BoxError) -> Response {
    let why = if error.is::<tower::timeout::error::Elapsed>() {
        "not answered within serve's deadline".to_owned()
    } else {
        format!("the request failed: {error}")
    };
    match uri.path() {
        "/notifications" | "/healthz" | "/readyz" | "/metrics" => unavailable(&why),
        path => {
            tracing::warn!("answering 503 to {path}: {why}");
            crate::api::ApiError::Unavailable {
                retry_after_s: RETRY_AFTER_S,
            }
            .into_response()
        }
    }
}

/// Counts every answer by matched route and status, with its duration.
async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = match request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
    {
        Some("/notifications") => "/notifications",
        Some("/healthz") => "/healthz",
        Some("/readyz") => "/readyz",
        Some("/metrics") => "/metrics",
        Some(p)
            if p.starts_with(
                "/api/publisher/analytics/v1/namespaces/{namespace}/pulls/exports",
            ) =>
        {
            "/api/exports"
        }
        Some(p) if p.starts_with("/api/publisher/analytics/v1/downloads") => "/api/downloads",
        Some(p)
            if p.ends_with("/breakdowns")
                || p.ends_with("/references")
                || p.ends_with("/repositories") =>
        {
            "/api/insights"
        }
        Some(p) if p.starts_with("/api/publisher/analytics/v1") => "/api/series",
        Some("/v2/users/login") => "/v2/users/login",
        Some(p) if p.starts_with("/badge/") => "/badge",
        Some(p) if p == "/" || p.starts_with("/assets/") => "/dashboard",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    app.metrics
        .request(route, response.status().as_u16(), started.elapsed());
    response
}

async fn render_metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut text = app
        .engine_metrics
        .as_ref()
        .map(|m| m.render())
        .unwrap_or_default();
    if let Mode::Direct { wal: Some(wal), .. } = &app.mode {
        wal.stats.render(&mut text);
    }
    app.metrics.render(&mut text);
    crate::metrics::prometheus_text(text)
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let problem = match &app.mode {
        Mode::Forward(f) => {
            let f = f.clone();
            let up = tokio::task::spawn_blocking(move || f.reachable(Duration::from_secs(2)))
                .await
                .unwrap_or(false);
            (!up).then_some("the Kafka brokers do not answer for the topic")
        }
        Mode::Direct { running, table, .. } => {
            if !running.load(Ordering::SeqCst) {
                Some("the table writer has stopped")
            } else if !matches!(crate::table::exists(table).await, Ok(true)) {
                Some("the table cannot be read")
            } else {
                None
            }
        }
    };
    match problem {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(p) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {p}\n")).into_response(),
    }
}

fn unavailable(why: &str) -> Response {
    tracing::warn!("answering 503: {why}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S))],
        format!("unavailable: {why}\n"),
    )
        .into_response()
}

/// A body read to at most `limit` bytes.
enum ReadBody {
    Whole(Vec<u8>),
    /// Longer than the limit: its first `limit` bytes.
    TooLarge(Vec<u8>),
}

/// Reads at most `limit` bytes and stops there. (tower-http's body limit
/// answers 413, which a registry would retry forever; an oversized body
/// must be dead-lettered and answered 2xx instead.)
async fn read_body(body: Body, limit: usize) -> Result<ReadBody, axum::Error> {
    // Room for what the sender announced (Content-Length), up to the limit.
    let announced =
        usize::try_from(axum::body::HttpBody::size_hint(&body).lower()).unwrap_or(limit);
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(announced.min(limit));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            let room = limit - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            return Ok(ReadBody::TooLarge(buf));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(ReadBody::Whole(buf))
}

async fn notifications(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match app.tokens.authorize(auth, Role::Receive) {
        Ok(_) => {}
        Err(Refusal::Unauthenticated) => {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a valid bearer token is needed\n",
            )
                .into_response()
        }
        Err(Refusal::Forbidden) => {
            return (
                StatusCode::FORBIDDEN,
                "this token may not send notifications\n",
            )
                .into_response()
        }
    }
    if app.draining.load(Ordering::SeqCst) {
        return unavailable("shutting down");
    }
    let request = app.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let read = tokio::time::timeout(app.body_deadline, read_body(body, app.max_body_bytes));
    let Ok(read) = read.await else {
        app.metrics.count(Outcome::TooSlow, 1);
        return (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            format!(
                "the body did not arrive within --client-timeout ({}s)\n",
                app.body_deadline.as_secs_f64()
            ),
        )
            .into_response();
    };
    let bytes = match read {
        Ok(ReadBody::Whole(b)) => b,
        Ok(ReadBody::TooLarge(prefix)) => {
            let reason = format!(
                "body is longer than --max-body-bytes {} (its first bytes are kept)",
                app.max_body_bytes
            );
            let bad = vec![Bad {
                reason,
                payload: prefix,
            }];
            return finish_bad(&app, request, bad, Outcome::TooLarge).await;
        }
        // The client went away or was too slow: nobody reads an answer.
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}\n"),
            )
                .into_response()
        }
    };
    let sorted = match sort(&app, &bytes) {
        Ok(s) => s,
        Err(reason) => {
            let bad = vec![Bad {
                reason,
                payload: bytes,
            }];
            return finish_bad(&app, request, bad, Outcome::Invalid).await;
        }
    };
    deliver(&app, request, sorted).await
}

thread_local! {
    /// Each worker thread's decoder (with the settings it was made for): its
    /// interned names and clients outlive a request.
    static DECODER: RefCell<Option<(DecoderSettings, Decoder)>> = const { RefCell::new(None) };
}

type DecoderSettings = (usize, Option<crate::event::Micros>);

/// [`receive::sort`] with this thread's decoder.
fn sort<'a>(app: &App, body: &'a [u8]) -> Result<Sorted<'a>, String> {
    let settings = (app.max_body_bytes, app.max_future);
    DECODER.with_borrow_mut(|slot| {
        let decoder = match slot {
            Some((made_for, decoder)) if *made_for == settings => decoder,
            _ => {
                let decoder = Decoder::new(settings.0).with_clock_bound(settings.1);
                &mut slot.insert((settings, decoder)).1
            }
        };
        receive::sort(body, decoder)
    })
}

/// Dead-letters a whole body and answers 202 (or 503 when the letter
/// cannot be written: nothing is dropped silently).
async fn finish_bad(app: &Arc<App>, request: u64, bad: Vec<Bad>, outcome: Outcome) -> Response {
    if let Err(e) = dead_letter(app, request, bad).await {
        return unavailable(&e.to_string());
    }
    app.metrics.count(outcome, 1);
    (StatusCode::ACCEPTED, "dead-lettered\n").into_response()
}

async fn dead_letter(app: &Arc<App>, request: u64, bad: Vec<Bad>) -> Result<(), DeadLetterError> {
    if bad.is_empty() {
        return Ok(());
    }
    let sink = app.dead_letters.clone();
    let written = tokio::task::spawn_blocking(move || {
        sink.with(|s| {
            for b in &bad {
                s.send(DeadLetter {
                    source: SOURCE,
                    position: Position::Http { request },
                    reason: &b.reason,
                    payload: &b.payload,
                })?;
            }
            s.flush()
        })
    })
    .await;
    written.unwrap_or_else(|e| {
        Err(DeadLetterError {
            sink: "dead-letter sink".into(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

async fn deliver(app: &Arc<App>, request: u64, sorted: Sorted<'_>) -> Response {
    let Sorted {
        kept,
        blob,
        not_pull,
        bad,
    } = sorted;
    let n_bad = bad.len() as u64;
    if let Err(e) = dead_letter(app, request, bad).await {
        return unavailable(&e.to_string());
    }
    let n_kept = kept.len() as u64;
    if !kept.is_empty() {
        let handed_on = match &app.mode {
            Mode::Forward(f) => f.send(&kept).await,
            Mode::Direct { queue, wal, .. } => {
                let messages = vec![Message {
                    bytes: receive::envelope(&kept),
                    decoded: Some(kept.into_iter().map(|k| k.event).collect()),
                }];
                match wal {
                    Some(wal) => wait_for_sync(wal, messages, app.wait).await,
                    None => wait_for_commit(queue, messages, app.wait).await,
                }
            }
        };
        if let Err(why) = handed_on {
            app.metrics.count(Outcome::Unavailable, n_kept);
            return unavailable(&why);
        }
    }
    app.metrics.count(Outcome::Accepted, n_kept);
    app.metrics.count(Outcome::Blob, blob);
    app.metrics.count(Outcome::NotPull, not_pull);
    app.metrics.count(Outcome::Bad, n_bad);
    if n_bad == 0 {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::ACCEPTED,
            format!("{n_bad} event(s) did not decode and were dead-lettered\n"),
        )
            .into_response()
    }
}

async fn wait_for_sync(
    wal: &WalHandle,
    messages: Vec<Message>,
    wait: Duration,
) -> Result<(), String> {
    let synced = wal.submit(messages).map_err(|e| match e {
        SubmitError::Full => "too many envelopes wait for the write-ahead log".to_owned(),
        SubmitError::Stopped => "the write-ahead log has stopped".to_owned(),
    })?;
    match tokio::time::timeout(wait, synced).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err("the write-ahead log stopped before the sync".into()),
        Err(_) => Err(format!("no sync within {wait:?}")),
    }
}

async fn wait_for_commit(
    queue: &QueueHandle,
    messages: Vec<Message>,
    wait: Duration,
) -> Result<(), String> {
    let committed = queue.submit(messages).map_err(|e| match e {
        SubmitError::Full => "too many envelopes wait for the table".to_owned(),
        SubmitError::Stopped => "the table writer has stopped".to_owned(),
    })?;
    match tokio::time::timeout(wait, committed).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("the table writer stopped before the commit".into()),
        Err(_) => Err(format!("no commit within {wait:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    async fn answer(routes: &Router, request: Request) -> (StatusCode, HeaderMap, String) {
        let response = routes.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_request_past_the_deadline_is_answered_503_with_retry_after() {
        async fn slow() -> &'static str {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "late"
        }
        let routes = with_deadline(
            Router::new()
                .route("/notifications", post(slow))
                .route("/api/publisher/analytics/v1/slow", get(slow))
                .route("/fast", get(|| async { "fast" })),
            Duration::from_secs(1),
        );

        let post = Request::post("/notifications").body(Body::empty()).unwrap();
        let (status, headers, body) = answer(&routes, post).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "5");
        assert_eq!(body, "unavailable: not answered within serve's deadline\n");

        let get = Request::get("/api/publisher/analytics/v1/slow")
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = answer(&routes, get).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "5");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("not answered in time"));

        let fast = Request::get("/fast").body(Body::empty()).unwrap();
        let (status, _, body) = answer(&routes, fast).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "fast"));
    }
}
