//! The publisher API of `serve` against a hand-computed fixture: every
//! endpoint, both groupings and timespans, the 404-equals-404 rule,
//! 401/403, the login and its limiter, badges, signed links (expired and
//! tampered), downloads byte-equal to `pullstats export`, and late data in
//! a closed week.
//!
//! The fixture is dated relative to today: two ISO weeks inside the last
//! complete month, so every period it touches is complete.

use std::path::Path;
use std::time::Duration;

use chrono::{Datelike, Days, Months, NaiveDate};
use serde_json::{json, Value};

use super::{exchange, token, Serve};
use crate::helpers::*;
use crate::kafka::harness::{counter, wait_until};

const BASE: &str = "/api/publisher/analytics/v1";
const DIGEST: &str = "sha256:d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1";

/// The fixture's dates: the last complete month `m`, and the first two
/// Mondays in it (`wa`, `wb`), whose weeks end inside it.
pub(super) struct Dates {
    m: NaiveDate,
    wa: NaiveDate,
    wb: NaiveDate,
}

fn dates() -> Dates {
    let today = chrono::Utc::now().date_naive();
    let this_month = today.with_day(1).expect("day 1");
    let m = this_month - Months::new(1);
    let wa = m + Days::new(u64::from((7 - m.weekday().num_days_from_monday()) % 7));
    Dates {
        m,
        wa,
        wb: wa + Days::new(7),
    }
}

fn event(day: NaiveDate, method: &str, repo: &str, reference: &str, ip: u8) -> String {
    json!({
        "timestamp": format!("{}T10:00:00.000Z", day.format("%Y-%m-%d")),
        "method": method,
        "repository": repo,
        "reference": reference,
        "digest": DIGEST,
        "status": 200,
        "remote_addr": format!("198.51.100.{ip}"),
        "user_agent": "containerd/1.7.22",
    })
    .to_string()
}

/// Week A: acme/web pulled by tag from IPs 1, 2, 3 (Tue, Wed, Thu), a
/// version check from IP 4 (Fri); acme/api pulled by digest from IP 1.
/// Week B: acme/web by tag from IP 2 twice (Mon, Tue), acme/api by tag
/// from IP 5, other/tool by tag from IP 9.
fn fixture(d: &Dates) -> String {
    let a = |n| d.wa + Days::new(n);
    let b = |n| d.wb + Days::new(n);
    [
        event(a(1), "GET", "acme/web", "1.0", 1),
        event(a(2), "GET", "acme/web", "1.0", 2),
        event(a(3), "GET", "acme/web", "1.0", 3),
        event(a(4), "HEAD", "acme/web", "1.0", 4),
        event(a(1), "GET", "acme/api", DIGEST, 1),
        event(b(0), "GET", "acme/web", "1.0", 2),
        event(b(1), "GET", "acme/web", "1.0", 2),
        event(b(2), "GET", "acme/api", "2.0", 5),
        event(b(3), "GET", "other/tool", "1.0", 9),
    ]
    .join("\n")
        + "\n"
}

/// A GET with headers; the status and the body parsed as JSON (Null when
/// it is not JSON).
fn call(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!("{method} {path} HTTP/1.1\r\n{extra}");
    let (status, text) = exchange(port, &head, body.as_bytes()).expect("serve answers");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get_as(port: u16, secret: &str, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {secret}");
    call(port, "GET", path, &[("Authorization", &auth)], "")
}

/// `(start day, repo, pullCount, ipCount, tag, digest, version checks)` of
/// each row.
fn rows(answer: &Value) -> Vec<(String, String, u64, u64, u64, u64, u64)> {
    answer["pulls"]
        .as_array()
        .expect("pulls")
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().expect(k);
            (
                r["start"].as_str().expect("start")[..10].to_owned(),
                r["repo"].as_str().expect("repo").to_owned(),
                n("pullCount"),
                n("ipCount"),
                n("pullByTagCount"),
                n("pullByDigestCount"),
                n("versionCheckCount"),
            )
        })
        .collect()
}

fn ymd(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

pub(super) fn start(dir: &Path, extra: &[&str]) -> (Serve, String, String, String, String, Dates) {
    let d = dates();
    let events = dir.join("fixture.jsonl");
    std::fs::write(&events, fixture(&d)).expect("fixture");
    let table = dir.join("pulls");
    ingest(&events, &table);
    let tokens = dir.join("tokens.toml");
    let acme = token(&tokens, "acme-reader", "read", &["acme"]);
    let partial = token(&tokens, "partial", "read", &["other/tool", "acme/api"]);
    let all = token(&tokens, "everything", "read", &["*"]);
    let receive = token(&tokens, "registry", "receive", &[]);
    let mut text = std::fs::read_to_string(&tokens).expect("tokens");
    text.push_str("\n[badges]\nrepos = [\"acme/web\"]\n");
    std::fs::write(&tokens, text).expect("badges");
    let mut args = vec!["--refresh-interval", "200ms"];
    args.extend_from_slice(extra);
    let serve = Serve::start(&table, &tokens, &args);
    (serve, acme, partial, all, receive, d)
}

#[test]
fn series_and_namespaces_match_the_hand_computed_fixture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (serve, acme, partial, all, receive, d) = start(dir.path(), &[]);
    let port = serve.port;
    let prev = d.m - Months::new(1);
    let r = |s: NaiveDate, repo: &str, n: [u64; 5]| {
        (ymd(s), repo.to_owned(), n[0], n[1], n[2], n[3], n[4])
    };

    let (s, v) = get_as(port, &acme, &format!("{BASE}/"));
    assert_eq!((s, v), (200, json!({"namespaces": ["acme"]})));
    let (_, v) = get_as(port, &all, BASE);
    assert_eq!(v, json!({"namespaces": ["acme", "other"]}));
    let (_, v) = get_as(port, &partial, &format!("{BASE}/namespaces"));
    let extra: Vec<(&str, &Value)> = v
        .as_array()
        .expect("list")
        .iter()
        .map(|m| (m["namespace"].as_str().expect("ns"), &m["extraRepos"]))
        .collect();
    assert_eq!(
        extra,
        [("acme", &json!(["api"])), ("other", &json!(["tool"]))]
    );
    let (_, v) = get_as(port, &acme, &format!("{BASE}/namespaces/acme"));
    assert_eq!(
        v,
        json!({"namespace": "acme", "extraRepos": [], "datasets": [{"name": "pulls",
            "views": ["raw", "summary", "repo-summary", "namespace-summary"],
            "timespans": ["months", "weeks"]}]})
    );

    // Defaults: months, the last 2, per repository.
    let (_, v) = get_as(port, &acme, &format!("{BASE}/namespaces/acme/pulls"));
    assert_eq!(
        rows(&v),
        [
            r(prev, "api", [0; 5]),
            r(prev, "web", [0; 5]),
            r(d.m, "api", [2, 2, 1, 1, 0]),
            r(d.m, "web", [5, 4, 5, 0, 1]),
        ]
    );
    let row = &v["pulls"][2];
    assert_eq!(row["namespace"], "acme");
    assert_eq!(row["country"], "");
    let last = (d.m + Months::new(1)) - Days::new(1);
    assert_eq!(row["end"], format!("{}T00:00:00Z", ymd(last)));

    // The namespace's unique IPs are those of the union, not a sum.
    let (_, v) = get_as(
        port,
        &acme,
        &format!("{BASE}/namespaces/acme/pulls?group=namespace&period=last-3-months"),
    );
    let month = rows(&v).pop().expect("a month");
    assert_eq!(month, r(d.m, "", [7, 5, 6, 1, 1]));
    assert_eq!(rows(&v).len(), 3);

    // Weeks: the two of the fixture among the last 3 months' weeks.
    let weeks = format!("{BASE}/namespaces/acme/pulls?timespan=weeks&period=last-3-months");
    let (_, v) = get_as(port, &acme, &weeks);
    let with_data: Vec<_> = rows(&v).into_iter().filter(|r| r.2 + r.6 > 0).collect();
    assert_eq!(
        with_data,
        [
            r(d.wa, "api", [1, 1, 0, 1, 0]),
            r(d.wa, "web", [3, 4, 3, 0, 1]),
            r(d.wb, "api", [1, 1, 1, 0, 0]),
            r(d.wb, "web", [2, 1, 2, 0, 0]),
        ]
    );
    assert!(rows(&v).iter().all(|r| {
        let day = NaiveDate::parse_from_str(&r.0, "%Y-%m-%d").expect("day");
        day.weekday() == chrono::Weekday::Mon
    }));
    let (_, v) = get_as(port, &acme, &format!("{weeks}&group=namespace"));
    let with_data: Vec<_> = rows(&v).into_iter().filter(|r| r.2 + r.6 > 0).collect();
    assert_eq!(
        with_data,
        [r(d.wa, "", [4, 4, 3, 1, 1]), r(d.wb, "", [3, 2, 3, 0, 0])]
    );

    // One repository; several at once (what cannot be seen is left out).
    let (_, v) = get_as(
        port,
        &acme,
        &format!("{BASE}/namespaces/acme/repos/web/pulls"),
    );
    assert_eq!(rows(&v).last(), Some(&r(d.m, "web", [5, 4, 5, 0, 1])));
    let (s, v) = get_as(
        port,
        &acme,
        &format!("{BASE}/repos/pulls?repos=acme/api&repos=other/tool&repos=acme/none"),
    );
    assert_eq!(s, 200);
    let keys: Vec<&String> = v["repos"].as_object().expect("repos").keys().collect();
    assert_eq!(keys, ["acme/api"]);
    assert_eq!(
        rows(&v["repos"]["acme/api"]).last(),
        Some(&r(d.m, "api", [2, 2, 1, 1, 0]))
    );
    let many: String = (0..51).map(|i| format!("repos=acme/r{i}&")).collect();
    let (s, v) = get_as(port, &acme, &format!("{BASE}/repos/pulls?{many}"));
    assert_eq!((s, v["parameter"].as_str()), (400, Some("repos")));

    // A token granted single repositories: its namespace total is theirs.
    let (_, v) = get_as(
        port,
        &partial,
        &format!("{BASE}/namespaces/acme/pulls?group=namespace"),
    );
    assert_eq!(rows(&v).last(), Some(&r(d.m, "", [2, 2, 1, 1, 0])));
    let (_, v) = get_as(port, &partial, &format!("{BASE}/namespaces/acme/pulls"));
    assert!(rows(&v).iter().all(|r| r.1 == "api"));

    // Bad values name their parameter.
    for (q, name) in [
        ("timespan=days", "timespan"),
        ("period=last-5-months", "period"),
        ("group=tag", "group"),
    ] {
        let (s, v) = get_as(port, &acme, &format!("{BASE}/namespaces/acme/pulls?{q}"));
        assert_eq!((s, v["parameter"].as_str()), (400, Some(name)), "{q}");
    }

    // 404 is 404: another's namespace, a missing one, a missing repository,
    // a repository granted to nobody here, all alike.
    let not_found = get_as(port, &acme, &format!("{BASE}/namespaces/nothing"));
    assert_eq!(not_found.0, 404);
    for path in [
        format!("{BASE}/namespaces/other"),
        format!("{BASE}/namespaces/other/pulls"),
        format!("{BASE}/namespaces/acme/repos/none/pulls"),
        format!("{BASE}/namespaces/other/repos/tool/pulls"),
        format!("{BASE}/namespaces/other/pulls/exports/years"),
    ] {
        assert_eq!(get_as(port, &acme, &path), not_found, "{path}");
    }
    let (s, _) = get_as(
        port,
        &partial,
        &format!("{BASE}/namespaces/acme/repos/web/pulls"),
    );
    assert_eq!(s, 404);

    // 401 without a token or with a bad one; 403 for a token without `read`.
    let (s, _) = call(port, "GET", BASE, &[], "");
    assert_eq!(s, 401);
    assert_eq!(get_as(port, "pst_not-a-token", BASE).0, 401);
    assert_eq!(get_as(port, &receive, BASE).0, 403);

    // The served OpenAPI document is the committed one.
    let (s, served) = call(port, "GET", &format!("{BASE}/openapi.json"), &[], "");
    let committed: Value = serde_json::from_str(include_str!("../../schemas/openapi.json"))
        .expect("schemas/openapi.json");
    assert_eq!((s, served), (200, committed));
}

/// Behind a proxy named by `--trusted-proxy`, failed logins count per
/// client its `X-Forwarded-For` names: one client over its budget does not
/// lock out another, and what a client writes into the header itself (left
/// of the proxy's entry) changes nothing. Without the flag, the header is
/// the client's own text and is ignored (the loopback peer's one budget).
#[test]
fn failed_logins_behind_a_trusted_proxy_count_per_forwarded_client() {
    for trusted in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra: &[&str] = if trusted {
            &["--trusted-proxy", "127.0.0.0/8,::1"]
        } else {
            &[]
        };
        let (serve, acme, _, _, _, _) = start(dir.path(), extra);
        let login = |forwarded: &str, secret: &str| {
            let body = json!({"username": "acme-reader", "password": secret}).to_string();
            let headers = [
                ("Content-Type", "application/json"),
                ("X-Forwarded-For", forwarded),
            ];
            call(serve.port, "POST", "/v2/users/login", &headers, &body).0
        };
        for _ in 0..5 {
            assert_eq!(login("203.0.113.1", "wrong"), 401);
        }
        let (other, spoofed) = if trusted { (200, 429) } else { (429, 429) };
        assert_eq!(login("203.0.113.1", &acme), 429, "trusted: {trusted}");
        assert_eq!(
            login("203.0.113.2, 203.0.113.1", &acme),
            spoofed,
            "trusted: {trusted}"
        );
        assert_eq!(login("203.0.113.2", &acme), other, "trusted: {trusted}");
    }
}

#[test]
fn login_sessions_the_limiter_and_badges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (serve, acme, _, _, _, _) = start(dir.path(), &[]);
    let port = serve.port;
    let json_ct = [("Content-Type", "application/json")];
    let login = |name: &str, secret: &str| {
        let body = json!({"username": name, "password": secret}).to_string();
        call(port, "POST", "/v2/users/login", &json_ct, &body)
    };
    let (s, v) = login("acme-reader", &acme);
    assert_eq!(s, 200, "{v}");
    let jwt = v["token"].as_str().expect("token").to_owned();
    assert_eq!(
        get_as(port, &jwt, BASE),
        (200, json!({"namespaces": ["acme"]}))
    );
    // A session is its entry's: a tampered one is refused.
    // (A character inside the signature: the last one may hold only
    // padding bits.)
    let at = jwt.rfind('.').expect("three parts") + 2;
    let mut tampered = jwt.clone();
    let was = tampered.remove(at);
    tampered.insert(at, if was == 'A' { 'B' } else { 'A' });
    assert_eq!(get_as(port, &tampered, BASE).0, 401);
    // The right secret under another name is no login.
    let (s, v) = login("registry", &acme);
    assert_eq!(s, 401);
    assert!(v["detail"].is_string());
    for _ in 0..3 {
        assert_eq!(login("acme-reader", "wrong").0, 401);
    }
    let (s, _) = call(port, "POST", "/v2/users/login", &json_ct, "not json");
    assert_eq!(s, 401);
    // Five failures: the next attempt is refused, even with the right secret.
    assert_eq!(login("acme-reader", &acme).0, 429);

    let (s, v) = call(port, "GET", "/badge/acme/web.json", &[], "");
    assert_eq!(
        (s, v),
        (
            200,
            json!({"schemaVersion": 1, "label": "pulls", "message": "5", "color": "blue"})
        )
    );
    let (s, text) = super::get(port, "/badge/acme/web.svg").expect("svg");
    assert_eq!(s, 200);
    assert!(text.starts_with("<svg") && text.contains(">5<"), "{text}");
    for path in [
        "/badge/acme/api.json",
        "/badge/acme/web.png",
        "/badge/nothing/x.svg",
    ] {
        assert_eq!(super::get(port, path).map(|a| a.0), Some(404), "{path}");
    }
}

/// The download links of one export, fetched: each part's body.
fn download_parts(port: u16, secret: &str, path: &str) -> Vec<(String, String)> {
    let (s, v) = get_as(port, secret, path);
    assert_eq!(s, 200, "{path}: {v}");
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|link| {
            let url = link["url"].as_str().expect("url");
            let path = url
                .split_once("127.0.0.1")
                .map(|(_, p)| p)
                .expect("our host");
            let path = path.trim_start_matches(|c: char| c == ':' || c.is_ascii_digit());
            let (s, body) = super::get(port, path).expect("download");
            assert_eq!(s, 200, "{path}");
            assert_eq!(link["size"].as_u64(), Some(body.len() as u64));
            (path.to_owned(), body)
        })
        .collect()
}

/// The parts as one CSV: each part's header dropped but the first's.
fn joined(parts: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (_, body)) in parts.iter().enumerate() {
        let header_end = body.find('\n').map_or(0, |n| n + 1);
        out.push_str(if i == 0 { body } else { &body[header_end..] });
    }
    out
}

#[test]
fn exports_list_complete_periods_and_links_give_the_export_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (serve, acme, partial, _, _, d) = start(
        dir.path(),
        &["--export-part-size", "300", "--link-ttl", "3s"],
    );
    let port = serve.port;
    let table = dir.path().join("pulls");
    let years = format!("{BASE}/namespaces/acme/pulls/exports/years");
    let (year, week_a, week_b) = (d.m.year(), d.wa.iso_week().week(), d.wb.iso_week().week());
    assert_eq!(
        get_as(port, &acme, &years).1,
        json!({"years": [{"year": year}]})
    );
    assert_eq!(
        get_as(port, &acme, &format!("{years}/{year}/weeks")).1,
        json!({"weeks": [{"week": week_a}, {"week": week_b}]})
    );
    assert_eq!(
        get_as(port, &acme, &format!("{years}/{year}/months")).1,
        json!({"months": [{"month": d.m.month()}]})
    );
    assert_eq!(
        get_as(
            port,
            &acme,
            &format!("{years}/{year}/months/{}", d.m.month())
        )
        .1,
        json!({"month": d.m.month()})
    );
    // A period outside the data, a year without data, the current
    // (incomplete) month: the same 404.
    let not_found = get_as(port, &acme, &format!("{BASE}/namespaces/nothing"));
    let this_month = chrono::Utc::now().date_naive();
    for path in [
        format!(
            "{years}/{year}/weeks/{}",
            if week_a > 1 { week_a - 1 } else { 40 }
        ),
        format!("{years}/1999/months/1"),
        format!(
            "{years}/{}/months/{}",
            this_month.year(),
            this_month.month()
        ),
        format!("{BASE}/namespaces/other/pulls/exports/years/{year}/weeks/{week_b}/summary"),
    ] {
        assert_eq!(get_as(port, &acme, &path), not_found, "{path}");
    }
    let (s, v) = get_as(port, &acme, &format!("{years}/{year}/days"));
    assert_eq!((s, v["parameter"].as_str()), (400, Some("timespan")));
    let (s, v) = get_as(port, &acme, &format!("{years}/{year}/weeks/{week_a}/pivot"));
    assert_eq!((s, v["parameter"].as_str()), (400, Some("view")));

    // Each view's parts, headers dropped after the first, are the export.
    let iso = format!("{}-W{week_a:02}", d.wa.iso_week().year());
    for view in ["raw", "summary", "repo-summary", "namespace-summary"] {
        let parts = download_parts(
            port,
            &acme,
            &format!("{years}/{year}/weeks/{week_a}/{view}"),
        );
        let want = export(
            &table,
            &["--week", &iso, "--view", view, "--namespace", "acme"],
        );
        assert_eq!(joined(&parts), want, "{view}");
        if view == "raw" {
            assert!(parts.len() > 1, "300-byte parts: the raw week is cut");
        }
    }
    // A token granted one repository gets that repository's rows only.
    let month = d.m.month();
    let parts = download_parts(
        port,
        &partial,
        &format!("{years}/{year}/months/{month}/summary"),
    );
    let want = export(
        &table,
        &[
            "--month",
            &d.m.format("%Y-%m").to_string(),
            "--view",
            "summary",
            "--repository",
            "acme/api",
        ],
    );
    assert_eq!(joined(&parts), want);

    // Altered links are refused; after --link-ttl, so is the link itself.
    let (s, v) = get_as(
        port,
        &acme,
        &format!("{years}/{year}/weeks/{week_a}/summary"),
    );
    assert_eq!(s, 200);
    let url = v["data"][0]["url"].as_str().expect("url");
    let path = &url[url.find(BASE).expect("base")..];
    let tampered_sig = {
        let mut p = path.to_owned();
        let last = p.pop().expect("signature");
        p.push(if last == '0' { '1' } else { '0' });
        p
    };
    let later = path.replace("expires=", "expires=9");
    let (file_part, query) = path.split_once('?').expect("query");
    let other_file = format!("{}?{query}", file_part.replace("-1.csv", "-2.csv"));
    for p in [tampered_sig.as_str(), later.as_str(), other_file.as_str()] {
        assert_eq!(super::get(port, p).map(|a| a.0), Some(403), "{p}");
    }
    assert_eq!(super::get(port, path).map(|a| a.0), Some(200));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(super::get(port, path).map(|a| a.0), Some(403));
    let (s, _) = call(
        port,
        "GET",
        &format!("{BASE}/downloads/..%2Fsigning-key?expires=1&signature=00"),
        &[],
        "",
    );
    assert_eq!(s, 404);
}

/// A late pull by a new IP (7) on week A's Saturday, committed by another
/// writer than `serve`.
fn late_pull(dir: &Path, d: &Dates) {
    let late = dir.join("late.jsonl");
    std::fs::write(
        &late,
        event(d.wa + Days::new(5), "GET", "acme/web", "1.0", 7) + "\n",
    )
    .expect("late event");
    ingest(&late, &dir.join("pulls"));
}

#[test]
fn late_data_in_a_closed_week_is_counted_once_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (serve, acme, _, _, _, d) = start(dir.path(), &[]);
    let port = serve.port;
    let weeks =
        format!("{BASE}/namespaces/acme/pulls?timespan=weeks&period=last-3-months&group=namespace");
    let week_a = |v: &Value| {
        rows(v)
            .into_iter()
            .find(|r| r.0 == ymd(d.wa))
            .map(|r| (r.2, r.3))
    };
    assert_eq!(week_a(&get_as(port, &acme, &weeks).1), Some((4, 4)));
    late_pull(dir.path(), &d);
    wait_until(
        Duration::from_secs(30),
        "the API to count the late pull",
        || week_a(&get_as(port, &acme, &weeks).1) == Some((5, 5)),
    );
    // The month moved too, and an all-time badge count would as well.
    let (_, v) = get_as(
        port,
        &acme,
        &format!("{BASE}/namespaces/acme/pulls?group=namespace"),
    );
    assert_eq!(rows(&v).last().map(|r| (r.2, r.3)), Some((8, 6)));
    // The periods table beside the pulls table was brought up to date too:
    // week A's row counts the late pull, and its fingerprint is current.
    let stored = sql_rows(
        &dir.path().join("pulls"),
        &format!(
            "SELECT pull_by_tag + pull_by_digest, unique_ip_count FROM periods \
             WHERE granularity = 'week' AND action_day = '{}' \
               AND level = 'namespace' AND namespace = 'acme'",
            ymd(d.wa)
        ),
    );
    assert_eq!(stored[1..], [vec!["5".to_owned(), "5".to_owned()]]);
}

/// The dashboard's answers from a scan (breakdowns, references, a custom
/// range's cut ends) are scanned once while their span's days keep their
/// rows: asked again they come from the cache; late data in the span is
/// scanned again and counted; a span the late data missed stays cached.
#[test]
fn dashboard_answers_are_scanned_once_until_their_span_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (serve, acme, partial, _, _, d) = start(dir.path(), &[]);
    let port = serve.port;
    let ns = format!("{BASE}/namespaces/acme");
    let answers = |what: &str, source: &str| {
        counter(
            &serve.metrics(),
            &format!("pullstats_api_answers_total{{answer=\"{what}\",source=\"{source}\"}}"),
        )
        .unwrap_or(0)
    };
    let week = |start: NaiveDate| format!("from={}&to={}", ymd(start), ymd(start + Days::new(7)));
    let total = |q: &str| {
        let (s, v) = get_as(port, &acme, &format!("{ns}/breakdowns?{q}"));
        assert_eq!(s, 200, "{v}");
        (
            v["total"]["pullCount"].as_u64().expect("pulls"),
            v["total"]["ipCount"].as_u64().expect("IPs"),
        )
    };
    let refs = |q: &str| {
        let (s, v) = get_as(port, &acme, &format!("{ns}/references?{q}"));
        assert_eq!(s, 200, "{v}");
        v["references"].clone()
    };
    let cut = |q: &str| {
        let (s, v) = get_as(
            port,
            &acme,
            &format!("{ns}/pulls?timespan=weeks&group=namespace&{q}"),
        );
        assert_eq!(s, 200, "{v}");
        rows(&v)
    };
    let (a, b) = (week(d.wa), week(d.wb));
    // Week A cut at both ends: two open spans.
    let range = format!(
        "from={}&to={}",
        ymd(d.wa + Days::new(1)),
        ymd(d.wb + Days::new(2))
    );

    let first = (total(&a), total(&b), refs(&a), cut(&range));
    assert_eq!((first.0, first.1), ((4, 4), (3, 2)));
    assert_eq!(
        (
            answers("breakdowns", "scan"),
            answers("references", "scan"),
            answers("open_span", "scan")
        ),
        (2, 1, 2)
    );
    assert_eq!((total(&a), total(&b), refs(&a), cut(&range)), first);
    assert_eq!(
        (
            answers("breakdowns", "scan"),
            answers("references", "scan"),
            answers("open_span", "scan")
        ),
        (2, 1, 2)
    );
    assert_eq!(
        (
            answers("breakdowns", "cache"),
            answers("references", "cache"),
            answers("open_span", "cache")
        ),
        (2, 1, 2)
    );

    late_pull(dir.path(), &d);
    wait_until(
        Duration::from_secs(30),
        "the breakdowns to count the late pull",
        || total(&a) == (5, 5),
    );
    let web = |v: &Value| {
        v.as_array()
            .expect("references")
            .iter()
            .find(|r| r["repo"] == "web")
            .map(|r| (r["pullCount"].as_u64(), r["ipCount"].as_u64()))
    };
    assert_eq!(web(&first.2), Some((Some(3), Some(4))));
    assert_eq!(web(&refs(&a)), Some((Some(4), Some(5))));
    let after = cut(&range);
    assert_eq!(after[0].2, first.3[0].2 + 1, "{after:?}");
    assert_eq!(after[1..], first.3[1..]);
    // A token granted acme/api alone: its namespace total over the cut
    // range is api's (the late pull was web's), asked twice.
    for _ in 0..2 {
        let (s, v) = get_as(
            port,
            &partial,
            &format!("{ns}/pulls?timespan=weeks&group=namespace&{range}"),
        );
        assert_eq!(s, 200, "{v}");
        let totals: Vec<_> = rows(&v).into_iter().map(|r| (r.2, r.3)).collect();
        assert_eq!(totals, [(1, 1), (0, 0)]);
    }
    assert_eq!(
        (
            answers("partial_total", "scan"),
            answers("partial_total", "cache")
        ),
        (2, 2)
    );
    // Week B's rows did not change: its answer is still the cached one.
    let scans = answers("breakdowns", "scan");
    assert_eq!(total(&b), (3, 2));
    assert_eq!(answers("breakdowns", "scan"), scans);
}

/// The periods a `serve` computed are kept in the periods table: another
/// `serve` started on the table answers the same series from it, and
/// computes (and commits) nothing.
#[test]
fn a_restarted_serve_reads_the_stored_periods_instead_of_scanning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut serve, acme, partial, _, _, d) = start(dir.path(), &[]);
    let periods = dir.path().join("pulls.periods");
    // Both of acme's repositories granted one by one: the namespace total
    // is the union of their stored IP sets (IP 1 pulled both in week A: 4
    // IPs, not 5), the same as the whole namespace's.
    let both = token(
        &dir.path().join("tokens.toml"),
        "both",
        "read",
        &["acme/web", "acme/api"],
    );
    wait_until(
        Duration::from_secs(30),
        "serve to read the new token",
        || get_as(serve.port, &both, BASE).0 == 200,
    );
    let weeks = format!("{BASE}/namespaces/acme/pulls?timespan=weeks&group=namespace");
    let whole = rows(&get_as(serve.port, &acme, &weeks).1);
    assert_eq!(rows(&get_as(serve.port, &both, &weeks).1), whole);
    let week_a = whole.iter().find(|r| r.0 == ymd(d.wa)).map(|r| (r.2, r.3));
    assert_eq!(week_a, Some((4, 4)));
    let series = |port: u16| {
        let mut out = Vec::new();
        for (secret, path) in [
            (&acme, "namespaces/acme/pulls?timespan=weeks&group=repo"),
            (
                &acme,
                "namespaces/acme/pulls?timespan=months&group=namespace",
            ),
            (
                &partial,
                "namespaces/acme/pulls?timespan=weeks&group=namespace",
            ),
            (
                &partial,
                "namespaces/other/pulls?timespan=months&group=namespace",
            ),
        ] {
            let (status, v) = get_as(port, secret, &format!("{BASE}/{path}"));
            assert_eq!(status, 200, "{path}");
            out.push(rows(&v));
        }
        out
    };
    let first = series(serve.port);
    // The fixture's two weeks and their month, one first day each.
    let stored = sql_rows(
        &dir.path().join("pulls"),
        "SELECT DISTINCT granularity, action_day FROM periods ORDER BY 1, 2",
    );
    assert_eq!(stored.len() - 1, 3, "{stored:?}");
    let log_before = delta_log_entries(&periods);
    serve.kill();
    serve.restart();
    assert_eq!(
        series(serve.port),
        first,
        "the same answers after a restart"
    );
    assert_eq!(
        delta_log_entries(&periods),
        log_before,
        "nothing recomputed: no commit to the periods table"
    );
}

/// The commits in a local Delta table's log.
fn delta_log_entries(table: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(table.join("_delta_log"))
        .expect("a Delta log")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// `(namespace, repository or "")` → `[pulls, unique IPs, tag, digest,
/// version checks]`, from an export CSV (repo-summary or
/// namespace-summary).
fn export_counts(
    csv: &str,
    per_repo: bool,
) -> std::collections::BTreeMap<(String, String), [u64; 5]> {
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let (key, at) = if per_repo {
                ((f[0].to_owned(), f[1].to_owned()), 2)
            } else {
                ((f[0].to_owned(), String::new()), 1)
            };
            let n = |i: usize| f[at + i].parse::<u64>().expect("count");
            (key, [n(1) + n(2), n(0), n(1), n(2), n(3)])
        })
        .collect()
}

/// The series equal a scan: over generated tables (two seeds), every
/// complete week with data, per repository and per namespace, is what
/// `pullstats export` computes from the table for that week.
#[test]
fn series_equal_a_scan_of_generated_tables() {
    for seed in ["3", "11"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dates();
        let (events, _) = generate(
            dir.path(),
            "e.jsonl",
            &[
                "--events",
                "4000",
                "--seed",
                seed,
                "--start",
                &ymd(d.m),
                "--days",
                "27",
            ],
        );
        let table = dir.path().join("pulls");
        ingest(&events, &table);
        let tokens = dir.path().join("tokens.toml");
        let all = token(&tokens, "everything", "read", &["*"]);
        let serve = Serve::start(&table, &tokens, &["--refresh-interval", "200ms"]);
        let (_, v) = get_as(serve.port, &all, BASE);
        let namespaces: Vec<String> = v["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .map(|n| n.as_str().expect("name").to_owned())
            .collect();
        assert!(namespaces.len() > 1, "generated traffic spans namespaces");
        let today = chrono::Utc::now().date_naive();
        let days = sql_rows(&table, "SELECT DISTINCT action_day FROM pulls");
        let mut weeks: Vec<NaiveDate> = days
            .iter()
            .skip(1)
            .map(|r| NaiveDate::parse_from_str(&r[0], "%Y-%m-%d").expect("day"))
            .map(|d| d - Days::new(u64::from(d.weekday().num_days_from_monday())))
            .filter(|monday| *monday + Days::new(7) <= today)
            .collect();
        weeks.sort();
        weeks.dedup();
        assert!(weeks.len() >= 3, "{weeks:?}");
        for (group, per_repo, view) in [
            ("repo", true, "repo-summary"),
            ("namespace", false, "namespace-summary"),
        ] {
            let mut api: std::collections::BTreeMap<
                String,
                std::collections::BTreeMap<(String, String), [u64; 5]>,
            > = Default::default();
            for ns in &namespaces {
                let path = format!(
                    "{BASE}/namespaces/{ns}/pulls?timespan=weeks&period=last-3-months&group={group}"
                );
                let (s, v) = get_as(serve.port, &all, &path);
                assert_eq!(s, 200, "{path}");
                for r in rows(&v).into_iter().filter(|r| r.2 + r.6 > 0) {
                    api.entry(r.0.clone())
                        .or_default()
                        .insert((ns.clone(), r.1.clone()), [r.2, r.3, r.4, r.5, r.6]);
                }
            }
            for monday in &weeks {
                let iso = format!(
                    "{}-W{:02}",
                    monday.iso_week().year(),
                    monday.iso_week().week()
                );
                let want =
                    export_counts(&export(&table, &["--week", &iso, "--view", view]), per_repo);
                let got = api.remove(&ymd(*monday)).unwrap_or_default();
                assert_eq!(got, want, "seed {seed}, {group}, week {iso}");
            }
            assert!(
                api.is_empty(),
                "no week with data beyond the table's: {api:?}"
            );
        }
    }
}

/// schemathesis (from the venv `.ci/test` makes) against the served
/// OpenAPI document, with a token that sees the fixture: no 5xx, and every
/// status, content type, header and body as the document says. Bounded:
/// a fixed seed, few examples per operation, a time budget.
#[test]
fn schemathesis_finds_every_answer_as_documented() {
    let python = venv_python();
    let schemathesis = python.with_file_name("schemathesis");
    if !schemathesis.is_file() {
        missing_tool("this test needs schemathesis in the venv; `bash .ci/test` installs it");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (serve, _, _, all, _, _) = start(dir.path(), &[]);
    let out = run(std::process::Command::new(&schemathesis)
        .args(["run", &format!("http://127.0.0.1:{}{BASE}/openapi.json", serve.port)])
        .args(["-H", &format!("Authorization: Bearer {all}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "15",
            "--max-time",
            "60",
            "--workers",
            "2",
            "--seed",
            "1",
            // Every phase, with negative data (invalid parameters) as well
            // as positive: the attack pass's conformance half.
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--mode",
            "all",
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir.path()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("passed"), "{text}");
}

/// `(value, pulls, share)` of one breakdown.
fn shares(answer: &Value, dimension: &str) -> Vec<(Value, u64, f64)> {
    answer["breakdowns"][dimension]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{dimension}: {answer}"))
        .iter()
        .map(|r| {
            (
                r["value"].clone(),
                r["pulls"].as_u64().expect("pulls"),
                r["share"].as_f64().expect("share"),
            )
        })
        .collect()
}

#[test]
fn breakdowns_references_and_custom_ranges_match_the_fixture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (serve, acme, partial, _, _, d) = start(dir.path(), &[]);
    let port = serve.port;
    let ns = format!("{BASE}/namespaces/acme");

    let (s, v) = get_as(port, &acme, &format!("{ns}/repositories"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["repositories"],
        json!([{"name": "web", "pulls": 5}, {"name": "api", "pulls": 2}])
    );
    let (_, v) = get_as(port, &partial, &format!("{ns}/repositories"));
    assert_eq!(v["repositories"], json!([{"name": "api", "pulls": 2}]));

    // The last 3 months hold the whole fixture: acme's 7 pulls from 5 IPs.
    let q = "timespan=months&period=last-3-months";
    let (s, v) = get_as(port, &acme, &format!("{ns}/breakdowns?{q}"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["total"],
        json!({"pullCount": 7, "pullByTagCount": 6, "pullByDigestCount": 1,
               "versionCheckCount": 1, "ipCount": 5})
    );
    assert_eq!(v["repos"], Value::Null);
    // No geolocation or cloud data in this test: one null row each.
    for dim in ["country", "host", "type", "platform"] {
        assert_eq!(shares(&v, dim), [(Value::Null, 7, 1.0)], "{dim}");
    }
    assert_eq!(shares(&v, "client"), [(json!("containerd 1.7.22"), 7, 1.0)]);
    assert_eq!(v["breakdowns"]["client"]["otherRows"], 0);

    let (_, v) = get_as(port, &acme, &format!("{ns}/breakdowns?{q}&repos=web"));
    assert_eq!(v["repos"], json!(["web"]));
    assert_eq!(v["total"]["pullCount"], 5);
    assert_eq!(v["total"]["ipCount"], 4);
    // A token granted acme/api sees api's numbers only, and nothing of web.
    let (_, v) = get_as(port, &partial, &format!("{ns}/breakdowns?{q}"));
    assert_eq!(
        (
            v["total"]["pullCount"].as_u64(),
            v["total"]["ipCount"].as_u64()
        ),
        (Some(2), Some(2))
    );
    let (_, v) = get_as(port, &partial, &format!("{ns}/breakdowns?{q}&repos=web"));
    assert_eq!(
        (v["repos"].clone(), v["total"]["pullCount"].as_u64()),
        (json!([]), Some(0))
    );

    let (s, v) = get_as(port, &acme, &format!("{ns}/references?{q}"));
    assert_eq!(s, 200, "{v}");
    let refs: Vec<(String, String, u64, u64, u64, u64)> = v["references"]
        .as_array()
        .expect("references")
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().expect(k);
            (
                r["repo"].as_str().expect("repo").to_owned(),
                r["reference"].as_str().expect("reference").to_owned(),
                n("pullByTagCount"),
                n("pullByDigestCount"),
                n("versionCheckCount"),
                n("ipCount"),
            )
        })
        .collect();
    assert_eq!(
        refs,
        [
            (s_("web"), s_("1.0"), 5, 0, 1, 4),
            (s_("api"), s_("2.0"), 1, 0, 0, 1),
            (s_("api"), s_(DIGEST), 0, 1, 0, 1),
        ]
    );
    assert_eq!(v["truncated"], false);

    // A custom range: week B alone, then a range cutting both weeks.
    let (from, to) = (ymd(d.wb), ymd(d.wb + Days::new(7)));
    let (_, v) = get_as(port, &acme, &format!("{ns}/breakdowns?from={from}&to={to}"));
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some(from.as_str()), Some(to.as_str()))
    );
    assert_eq!(
        (
            v["total"]["pullCount"].as_u64(),
            v["total"]["ipCount"].as_u64()
        ),
        (Some(3), Some(2))
    );
    let (from, to) = (ymd(d.wa + Days::new(1)), ymd(d.wb + Days::new(2)));
    let (s, v) = get_as(
        port,
        &acme,
        &format!("{BASE}/repos/pulls?repos=acme/web&timespan=weeks&from={from}&to={to}"),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        rows(&v["repos"]["acme/web"]),
        [
            (from.clone(), s_("web"), 3, 4, 3, 0, 1),
            (ymd(d.wb), s_("web"), 2, 1, 2, 0, 0),
        ]
    );
    let last = &v["repos"]["acme/web"]["pulls"][1];
    assert_eq!(
        last["end"],
        format!("{}T00:00:00Z", ymd(d.wb + Days::new(1)))
    );
    for (query, parameter) in [
        ("from=2026-01-01", "to"),
        (&*format!("from={to}&to={from}"), "to"),
        ("from=2020-01-01&to=2026-01-01", "to"),
        ("from=soon&to=2026-01-01", "from"),
    ] {
        let (s, v) = get_as(port, &acme, &format!("{ns}/references?{query}"));
        assert_eq!(
            (s, v["parameter"].as_str()),
            (400, Some(parameter)),
            "{query}"
        );
    }
}

fn s_(x: &str) -> String {
    x.to_owned()
}
