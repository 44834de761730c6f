//! The receiver's own series, beside the engine's (direct mode).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::metrics::{family, Histogram};

/// Upper bounds (seconds) of the request duration histogram.
const DURATION_BUCKETS_S: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// What became of notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// A manifest event handed on (Kafka confirmed it, or the table holds it).
    Accepted,
    /// A blob event: dropped here, as the pipeline would skip it.
    Blob,
    /// A push, mount or delete: dropped here and counted.
    NotPull,
    /// An event that does not decode: dead-lettered.
    Bad,
    /// A body that is not an envelope: dead-lettered whole.
    Invalid,
    /// A body over --max-body-bytes: its first bytes dead-lettered.
    TooLarge,
    /// Kept events that could not be handed on (503: the registry retries).
    Unavailable,
    /// A body that did not arrive within --client-timeout (408, whole bodies).
    TooSlow,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Blob => "blob",
            Outcome::NotPull => "not_pull",
            Outcome::Bad => "bad",
            Outcome::Invalid => "invalid",
            Outcome::TooLarge => "too_large",
            Outcome::Unavailable => "unavailable",
            Outcome::TooSlow => "too_slow",
        }
    }
}

#[derive(Default)]
pub struct ServeMetrics {
    notifications: Mutex<BTreeMap<Outcome, u64>>,
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    /// The API's answers that come from a scan of a span, by what they are
    /// and whether this one scanned (or came from the cache).
    answers: Mutex<BTreeMap<(&'static str, bool), u64>>,
}

impl ServeMetrics {
    pub fn count(&self, outcome: Outcome, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut m) = self.notifications.lock() {
            *m.entry(outcome).or_default() += n;
        }
    }

    /// One answered request: `route` is the matched route (never the
    /// path a client sent, which would make unbounded label values).
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route, status)).or_default() += 1;
        }
        if let Ok(mut m) = self.durations.lock() {
            m.entry(route)
                .or_insert_with(|| Histogram::new(&DURATION_BUCKETS_S))
                .observe(took);
        }
    }

    /// One API answer that a scan makes: `scanned`, or kept from one.
    pub fn answer(&self, what: &'static str, scanned: bool) {
        if let Ok(mut m) = self.answers.lock() {
            *m.entry((what, scanned)).or_default() += 1;
        }
    }

    pub fn render(&self, out: &mut String) {
        let name = "pullstats_notifications_total";
        family(
            out,
            name,
            "counter",
            "Notification events by outcome (invalid, too_large and too_slow: whole bodies)",
        );
        if let Ok(m) = self.notifications.lock() {
            for (outcome, n) in m.iter() {
                let _ = writeln!(out, "{name}{{outcome=\"{}\"}} {n}", outcome.label());
            }
        }
        let name = "pullstats_http_requests_total";
        family(
            out,
            name,
            "counter",
            "HTTP requests answered, by route and status",
        );
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(out, "{name}{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
        let name = "pullstats_http_request_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "Time to answer an HTTP request, by route",
        );
        if let Ok(m) = self.durations.lock() {
            for (route, h) in m.iter() {
                h.render(out, name, &format!("route=\"{route}\""));
            }
        }
        let name = "pullstats_api_answers_total";
        family(
            out,
            name,
            "counter",
            "API answers computed from a scan of a span, by answer and source (scan, or kept from one: cache)",
        );
        if let Ok(m) = self.answers.lock() {
            for ((what, scanned), n) in m.iter() {
                let source = if *scanned { "scan" } else { "cache" };
                let _ = writeln!(out, "{name}{{answer=\"{what}\",source=\"{source}\"}} {n}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_outcomes_routes_and_durations() {
        let m = ServeMetrics::default();
        m.count(Outcome::Accepted, 3);
        m.count(Outcome::Blob, 0);
        m.request("/notifications", 200, Duration::from_millis(3));
        let mut text = String::new();
        m.render(&mut text);
        assert!(
            text.contains("pullstats_notifications_total{outcome=\"accepted\"} 3"),
            "{text}"
        );
        assert!(!text.contains("outcome=\"blob\""), "{text}");
        assert!(text
            .contains("pullstats_http_requests_total{route=\"/notifications\",status=\"200\"} 1"));
        assert!(text.contains(
            "pullstats_http_request_duration_seconds_bucket{route=\"/notifications\",le=\"0.0025\"} 0"
        ));
        assert!(text
            .contains("pullstats_http_request_duration_seconds_count{route=\"/notifications\"} 1"));
    }
}
