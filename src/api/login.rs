//! The failed-login limiter of `POST /v2/users/login`: at most
//! [`MAX_FAILURES`] failures per client address in a sliding
//! [`WINDOW`]; beyond, logins from that address are refused (429) until
//! the oldest failure leaves the window. A success does not reset it: a
//! guesser who also holds one valid secret gains nothing.
//!
//! The address is the TCP peer's, unless the peer is one of the reverse
//! proxies `serve --trusted-proxy` names: then the client those proxies
//! forwarded for, from `X-Forwarded-For` ([`client_address`]). Behind an
//! untrusted proxy every client is the proxy, so all share one budget
//! (fail closed).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use ipnetwork::IpNetwork;

/// Failed logins a client may make within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked at most; beyond, the memory is bounded by forgetting
/// the clients whose failures are all older than the window first, then all.
const MAX_CLIENTS: usize = 65_536;

#[derive(Default)]
pub struct Limiter {
    failures: Mutex<HashMap<Option<IpAddr>, VecDeque<Instant>>>,
}

impl Limiter {
    /// How long `client` must wait, if it is over its budget now.
    pub fn refused(&self, client: Option<IpAddr>) -> Option<Duration> {
        self.refused_at(client, Instant::now())
    }

    fn refused_at(&self, client: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let mut map = self.failures.lock().ok()?;
        let times = map.get_mut(&client)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        if times.len() < MAX_FAILURES {
            return None;
        }
        let oldest = *times.front()?;
        Some(WINDOW.saturating_sub(now.duration_since(oldest)))
    }

    /// Counts a failed login of `client`.
    pub fn failed(&self, client: Option<IpAddr>) {
        self.failed_at(client, Instant::now());
    }

    fn failed_at(&self, client: Option<IpAddr>, now: Instant) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= MAX_CLIENTS && !map.contains_key(&client) {
            map.retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if map.len() >= MAX_CLIENTS {
                map.clear();
            }
        }
        let times = map.entry(client).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }
}

/// The address a login's failures count against: the TCP peer's; when
/// the peer is a `trusted` proxy, the right-most `X-Forwarded-For` entry
/// that is not a trusted proxy itself (proxies append the address they
/// received from; entries left of it were written by the client, which
/// can write anything). All entries trusted: the left-most. No header, or
/// an entry that is not an address before an untrusted one is found: the
/// peer's (the proxy's clients then share its budget).
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNetwork],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |a: IpAddr| trusted.iter().any(|n| n.contains(a));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut entries = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(text) => entries.extend(text.split(',').map(str::trim)),
            Err(_) => entries.push(""),
        }
    }
    let mut client = None;
    for entry in entries.iter().rev() {
        let Some(address) = forwarded_address(entry) else {
            break;
        };
        client = Some(address);
        if !is_trusted(address) {
            return client;
        }
    }
    // Every entry read was a trusted proxy's: the left-most is the client,
    // when the whole header was read.
    match client {
        Some(a) if entries.iter().all(|e| forwarded_address(e).is_some()) => Some(a),
        _ => Some(peer),
    }
}

/// An `X-Forwarded-For` entry: an address, or an address and port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let address = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn the_client_is_the_last_address_a_trusted_proxy_did_not_write() {
        let trusted: Vec<IpNetwork> = ["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"]
            .iter()
            .map(|n| n.parse().expect("network"))
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        let proxy = Some(ip("127.0.0.1"));
        let client = |peer: Option<IpAddr>, values: &[&str]| {
            client_address(peer, &forwarded(values), &trusted)
        };
        // An untrusted peer: its header is ignored.
        assert_eq!(
            client(Some(ip("192.0.2.7")), &["203.0.113.1"]),
            Some(ip("192.0.2.7"))
        );
        // The proxy's own entry; what the client wrote left of it is skipped.
        assert_eq!(client(proxy, &["203.0.113.1"]), Some(ip("203.0.113.1")));
        assert_eq!(
            client(proxy, &["198.51.100.9, 203.0.113.1"]),
            Some(ip("203.0.113.1"))
        );
        // Two proxies (the inner one's entry is trusted), headers repeated,
        // ports, IPv6 and IPv4-mapped addresses.
        assert_eq!(
            client(proxy, &["198.51.100.9", "203.0.113.1:4711, 10.1.2.3"]),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(
            client(proxy, &["[2001:db9::5]:443, 2001:db8::1"]),
            Some(ip("2001:db9::5"))
        );
        assert_eq!(
            client(Some(ip("::ffff:127.0.0.1")), &["::ffff:203.0.113.1"]),
            Some(ip("203.0.113.1"))
        );
        // Only trusted entries: the left-most.
        assert_eq!(client(proxy, &["10.9.9.9, 10.1.2.3"]), Some(ip("10.9.9.9")));
        // No header, or garbage before any untrusted entry: the proxy.
        assert_eq!(client(proxy, &[]), proxy);
        assert_eq!(client(proxy, &["203.0.113.1, unknown"]), proxy);
        assert_eq!(client(proxy, &["unknown, 10.1.2.3"]), proxy);
        // Garbage left of the client's entry is the client's own writing.
        assert_eq!(
            client(proxy, &["unknown, 203.0.113.1"]),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(client(None, &["203.0.113.1"]), None);
    }

    #[test]
    fn a_burst_of_failures_is_refused_until_the_window_moves_on() {
        let l = Limiter::default();
        let a = Some(IpAddr::from([127, 0, 0, 1]));
        let b = Some(IpAddr::from([127, 0, 0, 2]));
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(l.refused_at(a, t0), None, "failure {i}");
            l.failed_at(a, t0 + Duration::from_secs(i as u64));
        }
        let wait = l
            .refused_at(a, t0 + Duration::from_secs(10))
            .expect("refused");
        assert_eq!(wait, Duration::from_secs(50));
        // Another client is not affected.
        assert_eq!(l.refused_at(b, t0), None);
        // Once the first failure is a window old, one more try is allowed.
        assert_eq!(l.refused_at(a, t0 + WINDOW), None);
    }
}
