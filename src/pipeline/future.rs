//! How far ahead in time an event may be.
//!
//! The sessionizer's watermark follows the newest event time it has seen, so
//! one event dated years ahead (a client or relay with a broken clock) would
//! make every later event "late", each its own action. Events further than
//! `--max-future` ahead of the newest plausible time are refused before they
//! reach it, and dead-lettered with the reason:
//!
//! - live input (Kafka, notifications received by `serve`): ahead of the
//!   wall clock, checked by the [`Decoder`](super::decode::Decoder);
//! - files, which may be replays of any period: ahead of the input around the
//!   event ([`DataBound`]).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat};

use crate::event::{Micros, RequestEvent};

/// Default `--max-future`.
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(86_400);

/// Events after an event that a file's bound looks at.
pub const LOOKAHEAD: usize = 64;

/// `--max-future` as microseconds; `None` when the bound is off (`0`).
pub fn bound_micros(max_future: Duration) -> Option<Micros> {
    let us = i64::try_from(max_future.as_micros()).unwrap_or(i64::MAX);
    (us > 0).then_some(us)
}

/// RFC 3339 text of an event time (for reasons; never fails).
pub fn format_micros(ts: Micros) -> String {
    DateTime::from_timestamp_micros(ts)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_else(|| format!("{ts} µs since the epoch"))
}

/// A bound as the flag would write it (`1d`, `6h`, `90s`).
pub fn format_bound(us: Micros) -> String {
    let s = us / 1_000_000;
    match s {
        _ if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        _ if us % 1_000_000 == 0 => format!("{s}s"),
        _ => format!("{}ms", us / 1_000),
    }
}

/// The reason given for an event beyond the wall-clock bound.
pub fn clock_reason(ts: Micros, now: Micros, bound: Micros) -> String {
    format!(
        "{} is more than {} ahead of the clock ({})",
        format_micros(ts),
        format_bound(bound),
        format_micros(now)
    )
}

/// The bound of a file. An event is refused when it is more than the bound
/// ahead of the newest plausible event before it (none, at the start) *and*
/// more than half of the (up to [`LOOKAHEAD`]) events after it are more than
/// the bound behind it: accepted, it would make those late. So a lone stray,
/// or a client's few requests with a broken clock, is refused; input that
/// is sparse, or resumes after a quiet spell, or ends with a jump, is kept
/// (nothing after it would be late); and so is the end of one log followed
/// by the start of another (each event is near the newest before it).
///
/// Cost: one comparison per event; the events after one are looked at only
/// when it is ahead of the newest.
#[derive(Debug, Clone)]
pub struct DataBound {
    bound: Micros,
    newest: Option<Micros>,
}

impl DataBound {
    pub fn new(bound: Micros) -> Self {
        Self {
            bound,
            newest: None,
        }
    }

    /// The positions in `events` (ascending) that are not plausible, each
    /// with its reason; `next` is the input that follows `events` (empty at
    /// the end). Call once per chunk, in input order.
    pub fn refuse(
        &mut self,
        events: &[RequestEvent],
        next: &[RequestEvent],
    ) -> Vec<(usize, String)> {
        let mut refused = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let ts = e.timestamp;
            let near_newest = self
                .newest
                .is_some_and(|n| ts <= n.saturating_add(self.bound));
            if !near_newest {
                let floor = ts.saturating_sub(self.bound);
                let (after, behind) = events[i + 1..]
                    .iter()
                    .chain(next)
                    .take(LOOKAHEAD)
                    .fold((0, 0), |(n, b), a| {
                        (n + 1, b + usize::from(a.timestamp < floor))
                    });
                if 2 * behind > after {
                    refused.push((i, self.reason(ts, behind, after)));
                    continue;
                }
            }
            self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
        }
        refused
    }

    fn reason(&self, ts: Micros, behind: usize, after: usize) -> String {
        let newest = match self.newest {
            Some(n) => format!(
                "the newest plausible event before it ({})",
                format_micros(n)
            ),
            None => "the start of the input".to_owned(),
        };
        format!(
            "{} is more than {} ahead of {newest} and of {behind} of the {after} events \
             after it (--max-future)",
            format_micros(ts),
            format_bound(self.bound),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use crate::event::{Method, RequestKind};

    const HOUR: Micros = 3_600_000_000;
    const DAY: Micros = 24 * HOUR;
    /// 2026-11-02T00:00:00Z.
    const T0: Micros = 1_793_577_600_000_000;

    fn event(ts: Micros) -> RequestEvent {
        RequestEvent {
            timestamp: ts,
            method: Method::Get,
            namespace: Arc::from("library"),
            repository: Arc::from("nginx"),
            reference: Arc::from("1.27"),
            digest: Arc::from("sha256:00"),
            status: 200,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            user_agent: Arc::from("docker/27.0"),
            owner: None,
            kind: RequestKind::Manifest,
            id: None,
        }
    }

    fn events(times: impl IntoIterator<Item = Micros>) -> Vec<RequestEvent> {
        times.into_iter().map(event).collect()
    }

    fn refused(bound: &mut DataBound, chunk: &[RequestEvent], next: &[RequestEvent]) -> Vec<usize> {
        bound
            .refuse(chunk, next)
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn a_lone_far_future_event_is_refused_wherever_it_sits() {
        for at in [0, 1, 500, 998] {
            let mut times: Vec<Micros> = (0..1000).map(|i| T0 + i * 60_000_000).collect();
            times[at] = T0 + 5 * 365 * DAY;
            let mut bound = DataBound::new(DAY);
            let all = events(times);
            assert_eq!(refused(&mut bound, &all, &[]), vec![at], "at {at}");
        }
    }

    #[test]
    fn a_client_with_a_broken_clock_sending_a_few_requests_is_refused() {
        let mut times: Vec<Micros> = (0..2000).map(|i| T0 + i * 1_000_000).collect();
        for t in &mut times[700..705] {
            *t += 400 * DAY;
        }
        let all = events(times);
        let got = refused(&mut DataBound::new(DAY), &all, &[]);
        assert_eq!(got, (700..705).collect::<Vec<_>>());
    }

    #[test]
    fn sparse_and_resuming_input_is_kept() {
        // One event every 20 hours for a month, then three quiet days, then
        // more: nothing after an event would be late.
        let mut times: Vec<Micros> = (0..36).map(|i| T0 + i * 20 * HOUR).collect();
        let resume = times[35] + 3 * DAY;
        times.extend((0..100).map(|i| resume + i * HOUR));
        let all = events(times);
        let mut bound = DataBound::new(DAY);
        // Split into chunks with the resumption at a chunk's end: the
        // lookahead goes on into the next chunk.
        let (a, b) = all.split_at(37);
        assert_eq!(refused(&mut bound, a, b), Vec::<usize>::new());
        assert_eq!(refused(&mut bound, b, &[]), Vec::<usize>::new());
    }

    #[test]
    fn what_nothing_follows_or_one_log_after_another_is_kept() {
        // The last event, however far ahead: nothing after it would be late.
        let mut times: Vec<Micros> = (0..100).map(|i| T0 + i * 60_000_000).collect();
        times.push(T0 + 5 * 365 * DAY);
        let all = events(times);
        assert!(refused(&mut DataBound::new(DAY), &all, &[]).is_empty());
        // Two registries' logs of the same month, one after the other.
        let month: Vec<Micros> = (0..300).map(|i| T0 + i * 2 * HOUR).collect();
        let all = events(month.iter().chain(&month).copied());
        assert!(refused(&mut DataBound::new(DAY), &all, &[]).is_empty());
    }

    #[test]
    fn out_of_order_input_within_the_bound_is_kept() {
        let times = (0..500).map(|i| T0 + ((i * 7919) % 500) * 60_000_000);
        let all = events(times);
        assert!(refused(&mut DataBound::new(DAY), &all, &[]).is_empty());
    }

    #[test]
    fn tiny_inputs() {
        let cases: [(&[Micros], &[usize]); 4] = [
            (&[T0], &[]),
            (&[T0, T0 + 90 * DAY], &[]),
            (&[T0 + 90 * DAY, T0], &[0]),
            (&[T0, T0 + 90 * DAY, T0 + 1], &[1]),
        ];
        for (times, want) in cases {
            let got = refused(
                &mut DataBound::new(DAY),
                &events(times.iter().copied()),
                &[],
            );
            assert_eq!(got, want, "{times:?}");
        }
    }

    #[test]
    fn reasons_name_the_time_and_the_bound() {
        let mut bound = DataBound::new(DAY);
        let all = events([T0, T0 + 1, T0 + 2, T0 + 3 * 365 * DAY, T0 + 3]);
        let got = bound.refuse(&all, &[]);
        assert_eq!(got.len(), 1);
        let reason = &got[0].1;
        assert!(
            reason.starts_with("2029-11-01T00:00:00.000000Z is more than 1d ahead of"),
            "{reason}"
        );
        assert!(reason.contains("(2026-11-02T00:00:00.000002Z)"), "{reason}");
        assert!(
            reason.contains("and of 1 of the 1 events after it"),
            "{reason}"
        );
        assert_eq!(
            clock_reason(T0 + 2 * DAY, T0, DAY),
            "2026-11-04T00:00:00.000000Z is more than 1d ahead of the clock (2026-11-02T00:00:00.000000Z)"
        );
        assert_eq!(format_bound(6 * HOUR), "6h");
        assert_eq!(format_bound(1_500_000), "1500ms");
        assert_eq!(bound_micros(Duration::ZERO), None);
    }
}
