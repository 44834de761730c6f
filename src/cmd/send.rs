//! `pullstats send-notifications`: sends envelopes, one per line of a file,
//! to a notification endpoint the way a registry does: keep-alive HTTP/1.1
//! connections, each sending its next envelope once the last was answered;
//! an envelope answered 5xx, 408 or 429, or cut off with its connection, is
//! sent again after a pause (its `Retry-After`, else 100 ms doubling to
//! 5 s). A 401 or 403 stops it (the token is not one of that server's
//! `receive` tokens), as does any other 4xx (a wrong URL).
//!
//! It replays saved envelopes into `serve`, and it is the load generator of
//! `serve`'s benchmark (`benches/serve_ingest.py`), so it is made to cost
//! little beside the server it loads: every connection runs on one thread
//! (a runtime of its own), which reads the next line when a connection
//! needs an envelope.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::cli::SendNotificationsArgs;
use crate::cmd::ingest::{open_input, Input};
use crate::pipeline::source::LineReader;

/// The registry's content type for notification envelopes.
const ENVELOPE_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
/// The first pause before an envelope is sent again, and the longest.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);
/// The longest `Retry-After` obeyed.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Where envelopes go: `http://HOST:PORT/PATH`.
#[derive(Debug)]
struct Target {
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a URL: give http://HOST:PORT/PATH"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => bail!(
                "--url {url}: https is not supported; send to the plain-HTTP listener (behind a \
                 TLS front, the address it forwards to)"
            ),
            _ => bail!("--url {url}: give http://HOST:PORT/PATH"),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("--url {url} names no host"))?;
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Self { authority, path })
    }
}

/// What the connections saw.
#[derive(Debug, Default)]
struct Tally {
    envelopes: u64,
    bytes: u64,
    statuses: BTreeMap<u16, u64>,
    sent_again: u64,
    /// Each delivered envelope's answer time (its last attempt), in µs.
    latencies: Vec<u32>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.envelopes += other.envelopes;
        self.bytes += other.bytes;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.sent_again += other.sent_again;
        self.latencies.extend(other.latencies);
    }
}

pub fn run(args: SendNotificationsArgs) -> anyhow::Result<()> {
    let target = Target::parse(&args.url)?;
    let bearer = bearer(&args.token_file)?;
    let (input, _, source) = open_input(&args.from_file)?;
    let feed = RefCell::new(Feed {
        lines: LineReader::new(input, usize::MAX),
        buf: Vec::new(),
        number: 0,
        source,
        stopped: false,
    });
    // A thread of its own: the command runs inside the process's runtime.
    let sending = std::thread::spawn(move || -> anyhow::Result<(Tally, f64)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the sending runtime")?;
        runtime.block_on(async {
            let started = Instant::now();
            let senders =
                (0..args.connections).map(|_| send_all(&feed, &target, &bearer, args.attempts));
            let mut tally = Tally::default();
            let mut failed = None;
            for result in futures::future::join_all(senders).await {
                match result {
                    Ok(t) => tally.add(t),
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e.context(format!(
                    "stopped after {} envelopes were delivered",
                    tally.envelopes
                )));
            }
            Ok((tally, started.elapsed().as_secs_f64().max(1e-9)))
        })
    });
    let (mut tally, secs) = sending
        .join()
        .map_err(|_| anyhow!("the sending thread panicked"))??;
    println!("{}", summary(&args.url, &mut tally, secs, args.json));
    Ok(())
}

/// The envelopes: the input's lines but empty ones, with their numbers.
struct Feed {
    lines: LineReader<Input>,
    buf: Vec<u8>,
    number: u64,
    source: String,
    /// Set when a connection failed for good: no envelope is taken after.
    stopped: bool,
}

impl Feed {
    fn next(&mut self) -> anyhow::Result<Option<(u64, Bytes)>> {
        while !self.stopped {
            let read = self.lines.next_line(&mut self.buf).with_context(|| {
                format!("cannot read {} after line {}", self.source, self.number)
            })?;
            if read.is_none() {
                return Ok(None);
            }
            self.number += 1;
            // Every line but an empty one is an envelope, sent as it is
            // (a blank or bad one too: the server dead-letters it).
            let body = self.buf.strip_suffix(b"\r").unwrap_or(&self.buf);
            if !body.is_empty() {
                return Ok(Some((self.number, Bytes::copy_from_slice(body))));
            }
        }
        Ok(None)
    }
}

/// The `Authorization` value from the token file's first line.
fn bearer(path: &Path) -> anyhow::Result<HeaderValue> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim();
    if secret.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {secret}"))
        .map_err(|_| anyhow!("the token in {} is not a header value", path.display()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// One connection's loop: the next envelope until there is none.
async fn send_all(
    feed: &RefCell<Feed>,
    target: &Target,
    bearer: &HeaderValue,
    attempts: u32,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut conn = None;
    loop {
        // The borrow ends before the await: the connections share one thread.
        let next = feed.borrow_mut().next();
        let Some(envelope) = next? else {
            return Ok(tally);
        };
        if let Err(e) = deliver(&mut conn, target, bearer, envelope, attempts, &mut tally).await {
            feed.borrow_mut().stopped = true;
            return Err(e);
        }
    }
}

/// Sends one envelope until it is answered 2xx or 3xx, or it fails for good.
async fn deliver(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    target: &Target,
    bearer: &HeaderValue,
    (line, body): (u64, Bytes),
    attempts: u32,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let mut pause = FIRST_PAUSE;
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        if attempt > 1 {
            tally.sent_again += 1;
        }
        let started = Instant::now();
        match exchange(conn, target, bearer, body.clone()).await {
            Ok((status, _)) if status.is_success() || status.is_redirection() => {
                tally.envelopes += 1;
                tally.bytes += body.len() as u64;
                *tally.statuses.entry(status.as_u16()).or_default() += 1;
                let micros = started.elapsed().as_micros();
                tally
                    .latencies
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
                return Ok(());
            }
            Ok((status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), _)) => bail!(
                "the envelope of line {line} was answered {status}: the token is not a \
                 `receive` token of that server"
            ),
            Ok((status, retry_after))
                if status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT =>
            {
                last = format!("answered {status}");
                tokio::time::sleep(retry_after.unwrap_or(pause)).await;
            }
            Ok((status, _)) => bail!(
                "the envelope of line {line} was answered {status} (is {}{} the endpoint?)",
                target.authority,
                target.path
            ),
            Err(e) => {
                *conn = None;
                last = format!("{e:#}");
                tokio::time::sleep(pause).await;
            }
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
    bail!("the envelope of line {line} was not delivered in {attempts} attempts; the last: {last}")
}

/// One request on the connection (opened first when there is none): the
/// answer's status and `Retry-After`, its body read to the end.
async fn exchange(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    target: &Target,
    bearer: &HeaderValue,
    body: Bytes,
) -> anyhow::Result<(StatusCode, Option<Duration>)> {
    let sender = match conn {
        Some(sender) => sender,
        None => conn.insert(connect(target).await?),
    };
    sender.ready().await.context("the connection closed")?;
    let request = Request::post(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .header(AUTHORIZATION, bearer.clone())
        .header(CONTENT_TYPE, ENVELOPE_TYPE)
        .body(Full::new(body))
        .context("cannot build the request")?;
    let answer = sender.send_request(request).await.context("no answer")?;
    let status = answer.status();
    let retry_after = answer
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(LONGEST_RETRY_AFTER));
    answer
        .into_body()
        .collect()
        .await
        .context("the answer was cut off")?;
    Ok((status, retry_after))
}

async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(&target.authority)
        .await
        .with_context(|| format!("cannot connect to {}", target.authority))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    // The connection's I/O runs beside its sender; it ends with the sender.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection closed: {e}");
        }
    });
    Ok(sender)
}

/// The run in one line, or as JSON.
fn summary(url: &str, tally: &mut Tally, secs: f64, json: bool) -> String {
    tally.latencies.sort_unstable();
    let ms = |q: f64| {
        let l = &tally.latencies;
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    let (p50, p99, max) = (ms(0.5), ms(0.99), ms(1.0));
    let rate = tally.envelopes as f64 / secs;
    if json {
        return serde_json::json!({
            "url": url,
            "envelopes": tally.envelopes,
            "bytes": tally.bytes,
            "seconds": secs,
            "envelopes_per_second": rate,
            "statuses": tally.statuses,
            "sent_again": tally.sent_again,
            "latency_ms": {"p50": p50, "p99": p99, "max": max},
        })
        .to_string();
    }
    let mut statuses = String::new();
    for (i, (status, n)) in tally.statuses.iter().enumerate() {
        let sep = if i > 0 { ", " } else { "" };
        let _ = write!(statuses, "{sep}{status}: {n}");
    }
    format!(
        "sent {} envelopes ({:.1} MiB) to {url} in {secs:.2} s: {rate:.0} envelopes/s; answers \
         {{{statuses}}}, {} sent again; latency p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        tally.envelopes,
        tally.bytes as f64 / (1024.0 * 1024.0),
        tally.sent_again
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case(
        "http://127.0.0.1:8080/notifications",
        "127.0.0.1:8080",
        "/notifications"
    )]
    #[case(
        "http://localhost/notifications?x=1",
        "localhost:80",
        "/notifications?x=1"
    )]
    #[case("http://[::1]:9/", "[::1]:9", "/")]
    #[case("http://127.0.0.1:8080", "127.0.0.1:8080", "/")]
    fn urls_name_a_plain_http_endpoint(
        #[case] url: &str,
        #[case] authority: &str,
        #[case] path: &str,
    ) {
        let t = Target::parse(url).expect("parses");
        assert_eq!((t.authority.as_str(), t.path.as_str()), (authority, path));
    }

    #[rstest::rstest]
    #[case("https://127.0.0.1:8443/notifications", "https is not supported")]
    #[case("ftp://127.0.0.1/x", "give http://")]
    #[case("127.0.0.1:8080/notifications", "give http://")]
    #[case("http://", "is not a URL: give http://")]
    #[case("127.0.0.1 8080", "is not a URL: give http://")]
    fn other_urls_are_refused_with_the_reason(#[case] url: &str, #[case] reason: &str) {
        let e = format!("{:#}", Target::parse(url).expect_err("refused"));
        assert!(e.contains(reason), "{e}");
    }

    #[test]
    fn the_summary_counts_statuses_and_latencies() {
        let mut tally = Tally::default();
        for (status, us) in [(200, 3000), (202, 1000), (200, 2000)] {
            let mut t = Tally {
                envelopes: 1,
                bytes: 10,
                latencies: vec![us],
                ..Tally::default()
            };
            t.statuses.insert(status, 1);
            tally.add(t);
        }
        tally.sent_again = 1;
        let line = summary("http://h:1/n", &mut tally, 2.0, false);
        assert!(
            line.starts_with("sent 3 envelopes (0.0 MiB) to http://h:1/n in 2.00 s: 2 envelopes/s"),
            "{line}"
        );
        assert!(
            line.contains("answers {200: 2, 202: 1}, 1 sent again"),
            "{line}"
        );
        assert!(
            line.contains("p50 2.0 ms, p99 3.0 ms, max 3.0 ms"),
            "{line}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&summary("u", &mut tally, 2.0, true)).expect("json");
        assert_eq!(json["statuses"]["202"], 1);
        assert_eq!(json["latency_ms"]["p50"], 2.0);
    }
}
