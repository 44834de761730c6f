//! The attack pass over `serve` (`attack.py` beside this file, stdlib
//! Python): oversized and slow requests, endless bodies, thousands of idle
//! connections, invalid bytes and traversal in every path segment, forged
//! session tokens, a login brute force. Each gets its limit's answer while a
//! normal request keeps being answered, memory stays bounded, and nothing
//! from outside the table's directory is ever served.

use super::api::start;
use crate::helpers::*;

#[test]
fn hostile_requests_get_their_limits_answer_while_normal_ones_are_served() {
    let python = tool("python3", "python3");
    let dir = tempfile::tempdir().expect("tempdir");
    let (serve, _, _, all, receive, _) = start(
        dir.path(),
        &["--client-timeout", "2s", "--max-body-bytes", "1MiB"],
    );
    // A file beside the table: no answer may ever carry its marker.
    let canary = format!("canary-{}", std::process::id());
    std::fs::write(dir.path().join("canary.txt"), &canary).expect("canary");
    std::fs::write(dir.path().join("canary.svg"), &canary).expect("canary");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/attack.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(serve.port.to_string())
        .arg(&all)
        .arg(&receive)
        .arg(dir.path().join("pulls"))
        .arg(&canary)
        .arg(serve.pid().to_string())
        .output()
        .expect("run attack.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The figures (p50/p99 of the normal request during the attack, RSS).
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(super::get(serve.port, "/healthz").map(|a| a.0), Some(200));
}
