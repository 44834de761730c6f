//! Prometheus metrics of the ingest daemon, served as text on
//! `--metrics-addr` (`GET /metrics`).
//!
//! Plain atomics written by the consumer thread and read by a tiny HTTP
//! responder: no metrics framework, because a dozen series do not need one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

/// Upper bounds (seconds) of the commit latency histogram.
const COMMIT_BUCKETS_S: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
pub struct Metrics {
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub requests: AtomicU64,
    pub actions_out: AtomicU64,
    pub bad: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub commits: AtomicU64,
    pub commit_conflicts: AtomicU64,
    pub aborted_epochs: AtomicU64,
    pub rebalances: AtomicU64,
    pub compacted_days: AtomicU64,
    pub enrichment_reloads: AtomicU64,
    pub enrichment_reload_failures: AtomicU64,
    /// Gauges.
    pub late: AtomicU64,
    pub open_sessions: AtomicU64,
    pub assigned_partitions: AtomicU64,
    commit_latency: Mutex<Histogram>,
    lag: Mutex<BTreeMap<i32, i64>>,
}

/// A Prometheus histogram over fixed bucket bounds (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, took: Duration) {
        let s = took.as_secs_f64();
        for (n, bound) in self.counts.iter_mut().zip(self.bounds) {
            if s <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += s;
    }

    /// The series of `name` (whose HELP and TYPE lines the caller wrote),
    /// with `labels` (`key="value",…` or empty) on every line.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}\n{name}_sum{braces} {}\n{name}_count{braces} {}",
            self.count, self.sum, self.count
        );
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(&COMMIT_BUCKETS_S)
    }
}

impl Metrics {
    pub fn observe_commit(&self, took: Duration) {
        if let Ok(mut h) = self.commit_latency.lock() {
            h.observe(took);
        }
    }

    /// Replaces the per-partition lag (messages behind the high watermark).
    pub fn set_lag(&self, lag: BTreeMap<i32, i64>) {
        if let Ok(mut l) = self.lag.lock() {
            *l = lag;
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 13] = [
            (
                "pullstats_messages_total",
                "Kafka messages consumed",
                &self.messages_in,
            ),
            (
                "pullstats_bytes_total",
                "Bytes of Kafka message values consumed",
                &self.bytes_in,
            ),
            (
                "pullstats_requests_total",
                "Registry requests decoded",
                &self.requests,
            ),
            (
                "pullstats_actions_total",
                "Pull actions built",
                &self.actions_out,
            ),
            (
                "pullstats_bad_messages_total",
                "Messages that could not be decoded",
                &self.bad,
            ),
            (
                "pullstats_dead_letters_total",
                "Messages sent to the dead-letter topic",
                &self.dead_lettered,
            ),
            (
                "pullstats_commits_total",
                "Delta commits of the pulls table",
                &self.commits,
            ),
            (
                "pullstats_commit_conflicts_total",
                "Commits refused because another writer took a partition",
                &self.commit_conflicts,
            ),
            (
                "pullstats_aborted_epochs_total",
                "Uncommitted work dropped and redone from the table",
                &self.aborted_epochs,
            ),
            (
                "pullstats_rebalances_total",
                "Consumer group rebalances seen",
                &self.rebalances,
            ),
            (
                "pullstats_compacted_days_total",
                "Days compacted by --auto-compact",
                &self.compacted_days,
            ),
            (
                "pullstats_enrichment_reloads_total",
                "Enrichment data sets (MaxMind DBs, cloud ranges) reloaded after their files changed",
                &self.enrichment_reloads,
            ),
            (
                "pullstats_enrichment_reload_failures_total",
                "Changed enrichment files that failed to load (the data in use was kept)",
                &self.enrichment_reload_failures,
            ),
        ];
        let gauges: [(&str, &str, &AtomicU64); 3] = [
            (
                "pullstats_late_requests",
                "Requests counted as late, over the partitions held (since each partition began)",
                &self.late,
            ),
            (
                "pullstats_open_sessions",
                "Sessions open in the sessionizers",
                &self.open_sessions,
            ),
            (
                "pullstats_assigned_partitions",
                "Partitions this daemon holds",
                &self.assigned_partitions,
            ),
        ];
        let series = counters
            .iter()
            .map(|c| (c, "counter"))
            .chain(gauges.iter().map(|g| (g, "gauge")));
        for ((name, help, v), kind) in series {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        if let Ok(h) = self.commit_latency.lock() {
            let name = "pullstats_commit_seconds";
            family(
                &mut out,
                name,
                "histogram",
                "Latency of a Delta commit (both tables)",
            );
            h.render(&mut out, name, "");
        }
        if let Ok(lag) = self.lag.lock() {
            let name = "pullstats_consumer_lag";
            family(
                &mut out,
                name,
                "gauge",
                "Messages behind the partition's high watermark",
            );
            for (p, l) in lag.iter() {
                let _ = writeln!(out, "{name}{{partition=\"{p}\"}} {l}");
            }
        }
        out
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Serves `GET /metrics` (anything else: 404) until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "metrics at http://{local}/metrics");
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { prometheus_text(metrics.render()) }
        }),
    );
    Ok(tokio::spawn(async move {
        crate::http::serve(
            listener,
            router,
            crate::http::Limits::default(),
            std::future::pending(),
        )
        .await;
    }))
}

/// A `/metrics` answer: the text exposition format's content type.
pub fn prometheus_text(body: String) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.messages_in.fetch_add(3, Ordering::Relaxed);
        m.observe_commit(Duration::from_millis(30));
        m.set_lag(BTreeMap::from([(0, 5), (1, 0)]));
        let text = m.render();
        assert!(text.contains("pullstats_messages_total 3"), "{text}");
        assert!(
            text.contains("pullstats_commit_seconds_bucket{le=\"0.025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("pullstats_commit_seconds_bucket{le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(text.contains("pullstats_commit_seconds_count 1"), "{text}");
        assert!(
            text.contains("pullstats_consumer_lag{partition=\"0\"} 5"),
            "{text}"
        );
    }
}
