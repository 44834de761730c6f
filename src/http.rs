//! Serving an axum router on a listener with the connection-level limits
//! hyper provides: a bound on open connections, a deadline for a request's
//! headers, keep-alive, and graceful shutdown (stop accepting, let the
//! requests in flight finish within a bound). Request-level limits (body
//! size, handler timeouts) are tower layers on the router itself.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A client must send a request's headers within this.
    pub header_timeout: Duration,
    /// After the shutdown signal, requests in flight get this long.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Files the process keeps open besides its connections (the table's
/// files, the listener, the dead-letter file, Kafka's sockets).
const OTHER_FILES: u64 = 1024;

/// Raises the soft limit on open files so that `connections` fit beside
/// the process's other files, up to the hard limit (many systems start
/// processes at a soft limit of 1024: the connections beyond it would fail
/// to be accepted). Returns the connections that fit.
pub fn fit_open_files(connections: usize) -> usize {
    let wanted = connections as u64 + OTHER_FILES;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return connections;
    }
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = raised.rlim_cur;
        }
    }
    let fit = usize::try_from(limit.rlim_cur.saturating_sub(OTHER_FILES)).unwrap_or(connections);
    if fit < connections {
        tracing::warn!(
            "--max-connections {connections} does not fit the open-file limit ({}); \
             serving at most {fit} connections (raise LimitNOFILE / ulimit -n)",
            limit.rlim_cur
        );
        return fit.max(1);
    }
    connections
}

/// Serves `router` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(
        fit_open_files(limits.max_connections).max(1),
    ));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Some(limits.header_timeout))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The peer's address, for handlers that limit per client.
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut r: axum::extract::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                r
            },
        ));
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {:?}; closing their connections",
            limits.drain_timeout
        );
    }
}
