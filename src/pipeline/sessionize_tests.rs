//! Tests of the sessionizer: one case per row of spec §2's table, the
//! scenarios of issue 3, and property tests of its invariants.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rstest::rstest;

use super::*;
use crate::event::{Action, ActionKind, Method, RequestEvent, RequestKind};

const T0: Micros = 1_762_077_600_000_000; // 2025-11-02T10:00:00Z

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

/// A request: `at_ms` after T0, `"HEAD"`/`"GET"`, reference (`tag` or
/// digest number as `"#n"`), and the digest answered (number).
fn req(at_ms: i64, method: &str, reference: &str, answered: u8) -> RequestEvent {
    req_from(
        "192.0.2.1",
        "docker/27.3.1",
        "library",
        "nginx",
        at_ms,
        method,
        reference,
        answered,
    )
}

#[allow(clippy::too_many_arguments)]
fn req_from(
    ip: &str,
    ua: &str,
    ns: &str,
    repo: &str,
    at_ms: i64,
    method: &str,
    reference: &str,
    answered: u8,
) -> RequestEvent {
    let reference = match reference.strip_prefix('#') {
        Some(n) => digest(n.parse().expect("digest number")),
        None => reference.to_owned(),
    };
    RequestEvent {
        timestamp: T0 + at_ms * 1000,
        method: if method == "HEAD" {
            Method::Head
        } else {
            Method::Get
        },
        namespace: Arc::from(ns),
        repository: Arc::from(repo),
        reference: Arc::from(reference.as_str()),
        digest: Arc::from(digest(answered).as_str()),
        status: 200,
        ip: ip.parse::<IpAddr>().expect("ip"),
        user_agent: Arc::from(ua),
        owner: None,
        kind: RequestKind::Manifest,
        id: None,
    }
}

fn run(config: SessionConfig, events: impl IntoIterator<Item = RequestEvent>) -> Vec<Action> {
    let mut s = Sessionizer::new(config);
    let mut out = Vec::new();
    for e in events {
        s.push(e, &mut out);
    }
    s.finish(&mut out);
    out
}

fn actions(events: Vec<RequestEvent>) -> Vec<Action> {
    run(SessionConfig::default(), events)
}

fn kinds(actions: &[Action]) -> Vec<(ActionKind, u32)> {
    actions.iter().map(|a| (a.kind, a.requests)).collect()
}

#[rstest]
// starts with | by | followed by | action  (spec §2, row by row)
#[case::head_tag_alone(vec![req(0, "HEAD", "1.27", 1)], ActionKind::VersionCheck, 1)]
#[case::get_tag_alone(vec![req(0, "GET", "1.27", 1)], ActionKind::PullByTag, 1)]
#[case::get_tag_then_other_digest(
    vec![req(0, "GET", "1.27", 1), req(40, "GET", "#2", 2)], ActionKind::PullByTag, 2)]
#[case::head_tag_then_same_digest(
    vec![req(0, "HEAD", "1.27", 1), req(40, "GET", "#1", 1)], ActionKind::PullByTag, 2)]
#[case::head_tag_same_then_other(
    vec![req(0, "HEAD", "1.27", 1), req(40, "GET", "#1", 1), req(90, "GET", "#2", 2)],
    ActionKind::PullByTag, 3)]
#[case::head_tag_then_other_digest(
    vec![req(0, "HEAD", "1.27", 1), req(40, "GET", "#2", 2)], ActionKind::PullByTag, 2)]
#[case::get_digest_alone(vec![req(0, "GET", "#1", 1)], ActionKind::PullByDigest, 1)]
#[case::head_digest_alone(vec![req(0, "HEAD", "#1", 1)], ActionKind::PullByDigest, 1)]
#[case::get_digest_then_other(
    vec![req(0, "GET", "#1", 1), req(40, "GET", "#2", 2)], ActionKind::PullByDigest, 2)]
#[case::head_digest_then_same(
    vec![req(0, "HEAD", "#1", 1), req(40, "GET", "#1", 1)], ActionKind::PullByDigest, 2)]
#[case::head_digest_same_then_other(
    vec![req(0, "HEAD", "#1", 1), req(40, "GET", "#1", 1), req(90, "GET", "#2", 2)],
    ActionKind::PullByDigest, 3)]
fn spec_table_rows(#[case] events: Vec<RequestEvent>, #[case] kind: ActionKind, #[case] n: u32) {
    let got = actions(events);
    assert_eq!(kinds(&got), vec![(kind, n)]);
}

#[test]
fn action_row_takes_the_starting_request() {
    let got = actions(vec![
        req(0, "HEAD", "1.27", 1),
        req(40, "GET", "#1", 1),
        req(80, "GET", "#2", 2),
    ]);
    let a = &got[0];
    assert_eq!(a.timestamp, T0);
    assert_eq!(a.method, Method::Head);
    assert_eq!(&*a.reference, "1.27");
    assert_eq!(a.tag.as_deref(), Some("1.27"));
    assert_eq!(a.digest.as_ref(), digest(1));

    let by_digest = actions(vec![req(0, "GET", "#3", 3)]);
    assert_eq!(by_digest[0].tag, None);
    assert_eq!(by_digest[0].digest.as_ref(), digest(3));
}

#[test]
fn two_pulls_seconds_apart_are_two_actions() {
    let got = actions(vec![
        req(0, "HEAD", "1.27", 1),
        req(30, "GET", "#1", 1),
        req(2_000, "HEAD", "1.27", 1),
        req(2_030, "GET", "#1", 1),
    ]);
    assert_eq!(kinds(&got), vec![(ActionKind::PullByTag, 2); 2]);
}

#[test]
fn one_client_pulling_two_repositories_concurrently() {
    let a = |at, m, r, d| req_from("192.0.2.1", "docker/27", "library", "nginx", at, m, r, d);
    let b = |at, m, r, d| req_from("192.0.2.1", "docker/27", "library", "redis", at, m, r, d);
    let got = actions(vec![
        a(0, "HEAD", "1.27", 1),
        b(1, "HEAD", "7", 5),
        a(2, "GET", "#1", 1),
        b(3, "GET", "#5", 5),
        a(4, "GET", "#2", 2),
        b(5, "GET", "#6", 6),
    ]);
    assert_eq!(kinds(&got), vec![(ActionKind::PullByTag, 3); 2]);
}

#[test]
fn head_by_tag_then_get_of_cached_index_child_is_one_pull() {
    // Real docker with the index cached: HEAD tag → GET platform manifest.
    let got = actions(vec![req(0, "HEAD", "latest", 1), req(25, "GET", "#9", 9)]);
    assert_eq!(kinds(&got), vec![(ActionKind::PullByTag, 2)]);
}

#[test]
fn repeating_a_fetched_digest_starts_a_new_action() {
    let got = actions(vec![req(0, "GET", "#1", 1), req(40, "GET", "#1", 1)]);
    assert_eq!(kinds(&got), vec![(ActionKind::PullByDigest, 1); 2]);
    let got = actions(vec![
        req(0, "GET", "1.27", 1),
        req(40, "GET", "#2", 2),
        req(60, "GET", "#1", 1),
    ]);
    assert_eq!(
        kinds(&got),
        vec![(ActionKind::PullByTag, 2), (ActionKind::PullByDigest, 1)]
    );
}

#[test]
fn a_follow_up_beyond_the_gap_starts_a_new_action() {
    let config = SessionConfig {
        gap: Duration::from_secs(2),
        ..SessionConfig::default()
    };
    let got = run(
        config,
        vec![req(0, "HEAD", "1.27", 1), req(2_001, "GET", "#1", 1)],
    );
    assert_eq!(
        kinds(&got),
        vec![(ActionKind::VersionCheck, 1), (ActionKind::PullByDigest, 1)]
    );
    let got = run(
        config,
        vec![req(0, "HEAD", "1.27", 1), req(2_000, "GET", "#1", 1)],
    );
    assert_eq!(kinds(&got), vec![(ActionKind::PullByTag, 2)]);
}

#[test]
fn any_head_or_tag_request_starts_a_new_action() {
    let got = actions(vec![
        req(0, "GET", "1.27", 1),
        req(10, "HEAD", "#2", 2),
        req(20, "GET", "latest", 1),
        req(30, "HEAD", "latest", 1),
    ]);
    assert_eq!(got.len(), 4);
}

#[test]
fn different_user_agents_or_ips_are_different_clients() {
    let got = actions(vec![
        req_from(
            "192.0.2.1",
            "docker/27",
            "library",
            "nginx",
            0,
            "HEAD",
            "1",
            1,
        ),
        req_from(
            "192.0.2.2",
            "docker/27",
            "library",
            "nginx",
            10,
            "GET",
            "#1",
            1,
        ),
        req_from(
            "192.0.2.1",
            "containerd/1.7",
            "library",
            "nginx",
            20,
            "GET",
            "#1",
            1,
        ),
    ]);
    assert_eq!(got.len(), 3);
}

#[test]
fn shuffled_within_lateness_gives_the_same_actions_as_sorted() {
    let sorted = vec![
        req(0, "HEAD", "1.27", 1),
        req(20, "GET", "#1", 1),
        req(40, "GET", "#2", 2),
        req(9_000, "GET", "#1", 1),
        req(9_010, "GET", "#3", 3),
    ];
    let mut shuffled = sorted.clone();
    shuffled.reverse();
    assert_eq!(normalized(actions(shuffled)), normalized(actions(sorted)));
}

#[test]
fn events_past_the_lateness_bound_are_counted_as_their_own_action() {
    let config = SessionConfig {
        max_lateness: Duration::from_secs(1),
        ..SessionConfig::default()
    };
    let mut s = Sessionizer::new(config);
    let mut out = Vec::new();
    s.push(req(0, "HEAD", "1.27", 1), &mut out);
    s.push(req(60_000, "GET", "1.28", 4), &mut out);
    // 59 s behind the newest event: late, but counted.
    s.push(req(1_000, "GET", "#1", 1), &mut out);
    s.finish(&mut out);
    assert_eq!(s.stats().late, 1);
    assert_eq!(s.stats().requests, 3);
    assert_eq!(out.len(), 3);
    assert!(out
        .iter()
        .any(|a| a.late && a.kind == ActionKind::PullByDigest));
}

#[test]
fn idle_sessions_close_once_the_watermark_passes() {
    let mut s = Sessionizer::new(SessionConfig::default());
    let mut out = Vec::new();
    s.push(req(0, "HEAD", "1.27", 1), &mut out);
    assert_eq!(s.open_sessions() + s.pending_events(), 1);
    s.push(
        req_from("192.0.2.9", "x", "a", "b", 120_000, "GET", "t", 3),
        &mut out,
    );
    assert_eq!(out.len(), 1, "the version check is final");
    assert_eq!(s.open_sessions(), 0);
}

#[test]
fn open_sessions_are_capped_oldest_first() {
    let config = SessionConfig {
        max_open_sessions: 2,
        max_lateness: Duration::ZERO,
        ..SessionConfig::default()
    };
    let mut s = Sessionizer::new(config);
    let mut out = Vec::new();
    for i in 0..5u8 {
        let ip = format!("192.0.2.{i}");
        s.push(
            req_from(&ip, "d", "n", "r", i64::from(i), "HEAD", "1", 1),
            &mut out,
        );
    }
    assert!(s.open_sessions() <= 2);
    assert!(s.stats().evicted >= 2);
    s.finish(&mut out);
    assert_eq!(out.len(), 5);
}

#[test]
fn requests_that_cannot_form_actions_are_ignored() {
    let mut blob = req(0, "GET", "#1", 1);
    blob.kind = RequestKind::Blob;
    let mut not_found = req(1, "GET", "1.27", 1);
    not_found.status = 404;
    assert!(actions(vec![blob, not_found]).is_empty());
}

/// Actions in a canonical order, for comparing runs.
fn normalized(mut actions: Vec<Action>) -> Vec<Action> {
    actions.sort_by(|a, b| {
        (
            a.timestamp,
            a.ip,
            &a.user_agent,
            &a.namespace,
            &a.repository,
            a.method,
            &a.reference,
            a.requests,
        )
            .cmp(&(
                b.timestamp,
                b.ip,
                &b.user_agent,
                &b.namespace,
                &b.repository,
                b.method,
                &b.reference,
                b.requests,
            ))
    });
    actions
}

/// Random requests from a few clients on a few repositories, in time order,
/// with gaps around the session gap so that every rule is exercised.
fn arb_requests() -> impl Strategy<Value = Vec<RequestEvent>> {
    let one = (
        0u8..2,
        0u8..2,
        0u8..2,
        0i64..4_000,
        prop::bool::ANY,
        0u8..3,
        1u8..5,
    );
    prop::collection::vec(one, 1..120).prop_map(|items| {
        let mut at = 0i64;
        items
            .into_iter()
            .map(|(ip, ua, repo, step, head, refkind, d)| {
                at += step;
                let reference = match refkind {
                    0 => "1.0".to_owned(),
                    1 => "latest".to_owned(),
                    _ => format!("#{d}"),
                };
                let mut e = req_from(
                    &format!("198.51.100.{ip}"),
                    if ua == 0 { "docker/27" } else { "containerd/2" },
                    "ns",
                    if repo == 0 { "a" } else { "b" },
                    at,
                    if head { "HEAD" } else { "GET" },
                    &reference,
                    d,
                );
                if refkind == 2 {
                    e.digest = e.reference.clone();
                }
                e
            })
            .collect()
    })
}

fn prop_config() -> SessionConfig {
    SessionConfig {
        gap: Duration::from_secs(2),
        max_lateness: Duration::from_secs(5),
        max_open_sessions: usize::MAX,
    }
}

proptest! {
    #[test]
    fn every_request_belongs_to_exactly_one_action(events in arb_requests()) {
        let n = events.len() as u64;
        let mut s = Sessionizer::new(prop_config());
        let mut out = Vec::new();
        for e in events {
            s.push(e, &mut out);
        }
        s.finish(&mut out);
        prop_assert_eq!(out.iter().map(|a| u64::from(a.requests)).sum::<u64>(), n);
        prop_assert!(out.iter().all(|a| a.requests >= 1));
        prop_assert_eq!(s.stats().requests, n);
        prop_assert_eq!(s.stats().actions, out.len() as u64);
        prop_assert_eq!(s.stats().late, 0);
    }

    #[test]
    fn order_within_the_lateness_bound_does_not_matter(
        events in arb_requests(),
        jitter in prop::collection::vec(0i64..=5_000_000, 120),
    ) {
        let sorted = run(prop_config(), events.clone());
        // Arrival order by time + jitter ≤ lateness: no event arrives after
        // one more than the lateness bound newer than itself.
        let mut arrivals: Vec<_> = events
            .into_iter()
            .zip(jitter)
            .map(|(e, j)| (e.timestamp + j, e))
            .collect();
        arrivals.sort_by_key(|(at, _)| *at);
        let shuffled = run(prop_config(), arrivals.into_iter().map(|(_, e)| e));
        prop_assert_eq!(normalized(shuffled), normalized(sorted));
    }

    #[test]
    fn splitting_the_input_at_any_point_gives_the_same_actions(
        events in arb_requests(),
        cut in any::<prop::sample::Index>(),
    ) {
        let whole = run(prop_config(), events.clone());
        let cut = cut.index(events.len() + 1);
        let mut out = Vec::new();
        let mut first = Sessionizer::new(prop_config());
        for e in events[..cut].iter().cloned() {
            first.push(e, &mut out);
        }
        // The state crosses a process boundary as JSON, as it does in a commit.
        let json = serde_json::to_string(&first.snapshot()).expect("serialize");
        let state = serde_json::from_str(&json).expect("deserialize");
        let mut second = Sessionizer::restore(prop_config(), state);
        for e in events[cut..].iter().cloned() {
            second.push(e, &mut out);
        }
        second.finish(&mut out);
        prop_assert_eq!(normalized(out), normalized(whole));
    }
}

#[test]
fn a_resent_event_id_is_recognised_after_a_restart_within_the_window() {
    let config = SessionConfig::default();
    let mut s = Sessionizer::new(config);
    let mut e = req(0, "HEAD", "latest", 1);
    e.id = Some("ev-1".into());
    assert!(s.first_time(&e));
    assert!(!s.first_time(&e));
    let mut s = Sessionizer::restore(config, s.snapshot());
    assert!(!s.first_time(&e), "the saved state remembers the id");
    // Far past the window the id is forgotten (only memory is bounded).
    let mut later = req(120_000, "HEAD", "latest", 1);
    later.id = Some("ev-2".into());
    let mut out = Vec::new();
    s.push(later.clone(), &mut out);
    assert!(s.first_time(&later));
    assert!(s.first_time(&e));
}
