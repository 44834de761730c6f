//! The failed-login limiter of `POST /v2/users/login`: at most
//! [`MAX_FAILURES`] failures per client address in a sliding
//! [`WINDOW`]; beyond, logins from that address are refused (429) until
//! the oldest failure leaves the window. A success does not reset it: a
//! guesser who also holds one valid secret gains nothing.
//!
//! The address is the TCP peer's. Behind a reverse proxy every client is
//! the proxy, so all share one budget (fail closed); trusting a forwarded
//! header is not built (README, Not finished).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

#[cfg(test)]
mod tests {
    use super::*;

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
