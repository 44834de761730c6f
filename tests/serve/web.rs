//! The dashboard in a real browser (issue 20): `tests/web/dashboard.mjs`
//! drives Debian's Chromium through playwright-core against `serve` over
//! a generated year of traffic: sign-in, the chart against the API (weeks,
//! months, 12 months, unique IPs), tooltips, the legend, a share link, a
//! download, a phone's width, and another namespace's token; no console
//! error and no failed request. Screenshots are kept in
//! `target/tmp/dashboard/` (the test's artefacts).

use std::path::{Path, PathBuf};

use chrono::Days;
use serde_json::{json, Value};

use super::{token, Serve};
use crate::helpers::*;

/// `src/web/node_modules`, where `npm ci` in `src/web` puts playwright-core.
fn playwright() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/node_modules/playwright-core");
    if !dir.is_dir() {
        missing_tool(
            "this test needs playwright-core: `npm ci --prefix src/web` (`bash .ci/test` runs it)",
        );
    }
    dir
}

#[test]
fn the_dashboard_draws_the_api_in_a_real_browser() {
    let node = tool("node", "nodejs");
    tool("chromium", "chromium");
    playwright();
    let dir = tempfile::tempdir().expect("tempdir");
    let today = chrono::Utc::now().date_naive();
    let start = (today - Days::new(380)).format("%Y-%m-%d").to_string();
    let (events, _) = generate(
        dir.path(),
        "e.jsonl",
        &[
            "--events", "30000", "--seed", "7", "--start", &start, "--days", "380",
        ],
    );
    let table = dir.path().join("pulls");
    ingest(&events, &table);
    // The busiest namespace, and the next one.
    let busiest = sql_rows(
        &table,
        "SELECT namespace FROM pulls GROUP BY namespace ORDER BY count(*) DESC, namespace LIMIT 2",
    );
    let (a, b) = (busiest[1][0].clone(), busiest[2][0].clone());
    let repos_of = |ns: &str| -> Vec<String> {
        sql_rows(
            &table,
            &format!("SELECT DISTINCT repository FROM pulls WHERE namespace = '{ns}' ORDER BY 1"),
        )
        .into_iter()
        .skip(1)
        .map(|r| r[0].clone())
        .collect()
    };
    let b_repos = repos_of(&b);
    let hidden: Vec<String> = repos_of(&a)
        .into_iter()
        .filter(|r| !b_repos.contains(r))
        .collect();
    let tokens = dir.path().join("tokens.toml");
    let token_a = token(&tokens, "a-reader", "read", &[&a]);
    let token_b = token(&tokens, "b-reader", "read", &[&b]);
    let serve = Serve::start(&table, &tokens, &["--refresh-interval", "1s"]);
    // The year's weeks and months, computed before the browser asks (a
    // debug build scans slowly; the page would otherwise wait on them).
    for timespan in ["weeks", "months"] {
        let auth = format!("Authorization: Bearer {token_a}\r\n");
        let path = format!(
            "/api/publisher/analytics/v1/namespaces/{a}/pulls?timespan={timespan}&period=last-12-months"
        );
        let answer = super::exchange(serve.port, &format!("GET {path} HTTP/1.1\r\n{auth}"), b"");
        assert_eq!(answer.map(|a| a.0), Some(200), "{path}");
    }

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let _ = std::fs::remove_dir_all(&out);
    let ran = std::process::Command::new(node)
        .arg("tests/web/dashboard.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PULLSTATS_URL", format!("http://127.0.0.1:{}", serve.port))
        .env("TOKEN_A", &token_a)
        .env("TOKEN_B", &token_b)
        .env(
            "HIDDEN",
            json!({"namespace": a, "repos": hidden}).to_string(),
        )
        .env("OUT", &out)
        .output()
        .expect("node runs");
    assert!(
        ran.status.success(),
        "the browser checks failed:\n{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );

    // The page's download is `pullstats export` of the same view and week.
    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("result.json")).expect("result.json"),
    )
    .expect("result json");
    let iso = format!(
        "{}-W{:02}",
        result["year"].as_u64().expect("year"),
        result["week"].as_u64().expect("week")
    );
    let got = std::fs::read_to_string(out.join("download.csv")).expect("downloaded");
    let want = export(
        &table,
        &["--view", "summary", "--week", &iso, "--namespace", &a],
    );
    assert_eq!(result["namespace"], a);
    assert!(want.lines().count() > 1, "{iso} has rows");
    assert_eq!(got, want, "the page's download of {iso}");
}

/// A newcomer's path: `demo`, then the `serve` command it prints (on a
/// free port instead of 8080), answers the page and, with the printed
/// token, the demo's week.
#[test]
fn the_demo_prints_a_serve_command_that_shows_its_week() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_ok(
        pullstats()
            .current_dir(dir.path())
            .args(["demo", "--events", "3000", "--dir", "demo"]),
    );
    let (_, tail) = out
        .split_once("See it in the dashboard")
        .expect("the demo prints the dashboard's command");
    let command = tail
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(BIN)
                .map(|rest| format!("{BIN}{rest}"))
        })
        .unwrap_or_else(|| panic!("a serve command in: {tail}"));
    let secret = tail
        .lines()
        .find_map(|l| l.trim().strip_prefix("demo read token: "))
        .expect("a read token");
    let port = crate::kafka::harness::free_port();
    let command = command.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    assert!(command.contains(" serve --table "), "{command}");
    let mut child = std::process::Command::new("sh")
        .args(["-c", &format!("exec {command}")])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut child);
    crate::kafka::harness::wait_until(
        std::time::Duration::from_secs(60),
        "the demo's serve to answer",
        || super::get(port, "/healthz").is_some_and(|(s, _)| s == 200),
    );
    let (status, page) = super::get(port, "/").expect("the page");
    assert_eq!(status, 200);
    assert!(page.contains("<title>Insights &amp; Analytics"), "{page}");
    let auth = format!("Authorization: Bearer {secret}\r\n");
    let base = "/api/publisher/analytics/v1";
    let (status, body) = super::exchange(
        port,
        &format!("GET {base}/namespaces HTTP/1.1\r\n{auth}"),
        b"",
    )
    .expect("namespaces");
    assert_eq!(status, 200, "{body}");
    let namespaces: Value = serde_json::from_str(&body).expect("json");
    let first = namespaces[0]["namespace"]
        .as_str()
        .expect("a namespace with data");
    let (_, body) = super::exchange(
        port,
        &format!("GET {base}/namespaces/{first}/breakdowns?timespan=weeks&period=last-3-months HTTP/1.1\r\n{auth}"),
        b"",
    )
    .expect("breakdowns");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert!(v["total"]["pullCount"].as_u64() > Some(0), "{v}");
}
