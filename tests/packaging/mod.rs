//! What an operator installs beside the binary, each checked by the tool
//! that consumes it: shell completions (bash drives them), man pages
//! (`man -l` renders them without warnings), the systemd units
//! (`systemd-analyze verify`), the alert rules (`promtool check rules` and
//! `promtool test rules`), the nginx front (`nginx -t`, then a real nginx
//! terminating TLS in front of a running serve). The dashboards are checked
//! against a running daemon's and serve's metrics in `kafka/` and `serve/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging")
}

fn output_ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("spawn");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{cmd:?} failed: {stdout}{stderr}");
    (stdout, stderr)
}

/// Each setting `serve.env` names (set or commented out) is one `serve`
/// reads: a misspelt or another command's variable would be ignored.
#[test]
fn serve_env_names_only_settings_serve_reads() {
    let env = std::fs::read_to_string(packaging().join("systemd/serve.env")).expect("serve.env");
    let (help, _) = output_ok(pullstats().args(["serve", "--help"]));
    let names: Vec<&str> = env
        .lines()
        .map(|l| l.trim_start_matches('#'))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .filter(|name| name.starts_with("PULLSTATS_"))
        .collect();
    assert!(names.contains(&"PULLSTATS_AUTO_COMPACT"), "{names:?}");
    for name in names {
        // `[env: NAME=value]`, or `[env: NAME]` for a secret.
        let listed = ["=", "]"]
            .iter()
            .any(|end| help.contains(&format!("[env: {name}{end}")));
        assert!(listed, "serve reads no {name}");
    }
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let bash = tool("bash", "bash");
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("pullstats.bash");
    std::fs::write(&script, run_ok(pullstats().args(["completions", "bash"]))).expect("write");
    // Completes as bash's `complete -F` would call it: words, cursor, then
    // the function clap_complete registered for `pullstats`.
    let complete = |words: &str, cword: usize| {
        let program = format!(
            "set -e; source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}; \
             fn=$(complete -p pullstats | sed -E 's/.*-F ([^ ]+).*/\\1/'); \
             \"$fn\" pullstats \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        output_ok(Command::new(&bash).args(["-c", &program])).0
    };
    let subcommands = complete("pullstats ing", 1);
    assert!(subcommands.lines().any(|l| l == "ingest"), "{subcommands}");
    let flags = complete("pullstats ingest --reload", 2);
    assert!(flags.lines().any(|l| l == "--reload-interval"), "{flags}");
    for shell in ["zsh", "fish"] {
        let script = run_ok(pullstats().args(["completions", shell]));
        assert!(
            script.contains("ingest") && script.len() > 1000,
            "{shell}: {script}"
        );
    }
}

#[test]
fn man_pages_render_without_warnings() {
    let man = tool("man", "man-db");
    let dir = tempfile::tempdir().expect("tempdir");
    let listed = run_ok(pullstats().arg("man").arg("--dir").arg(dir.path()));
    let pages: Vec<&str> = listed.lines().collect();
    for page in [
        "pullstats.1",
        "pullstats-ingest.1",
        "pullstats-export.1",
        "pullstats-man.1",
    ] {
        assert!(
            pages.iter().any(|p| p.ends_with(page)),
            "{page} in {listed}"
        );
    }
    for page in &pages {
        let out = Command::new(&man)
            .args(["--warnings", "-l", page])
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .output()
            .expect("man");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{page}: {stderr}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("pullstats"),
            "{page} renders"
        );
    }
}

#[test]
fn systemd_accepts_the_units() {
    let analyze = tool("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().expect("tempdir");
    // The units name the installed binary and its man pages; here they are
    // the binary under test and pages generated from it.
    let man = dir.path().join("man/man1");
    run_ok(pullstats().arg("man").arg("--dir").arg(&man));
    let units = packaging().join("systemd");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&units).expect("packaging/systemd") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".service") || name.ends_with(".timer") {
            let text = std::fs::read_to_string(&path).expect("read");
            assert!(text.contains("/usr/local/bin/pullstats") || name.ends_with(".timer"));
            std::fs::write(
                dir.path().join(&name),
                text.replace("/usr/local/bin/pullstats", BIN),
            )
            .expect("write");
            names.push(name);
        }
    }
    assert!(names.len() >= 3, "{names:?}");
    for unit in ["pullstats-ingest.service", "pullstats-serve.service"] {
        let text = std::fs::read_to_string(units.join(unit)).expect("unit");
        for setting in [
            "Restart=on-failure",
            "KillSignal=SIGTERM",
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "ProtectHome=yes",
            "RestrictAddressFamilies=",
            "EnvironmentFile=",
        ] {
            assert!(text.contains(setting), "{unit} sets {setting}");
        }
    }
    let (stdout, stderr) = output_ok(
        Command::new(analyze)
            .arg("verify")
            .args(names.iter().map(|n| dir.path().join(n)))
            .env("MANPATH", dir.path().join("man")),
    );
    assert!(
        stdout.trim().is_empty() && stderr.trim().is_empty(),
        "{stdout}{stderr}"
    );
}

#[test]
fn the_alert_rules_check_and_pass_their_tests() {
    let promtool = tool("promtool", "prometheus");
    let rules = packaging().join("prometheus");
    for name in ["pullstats-alerts", "pullstats-serve-alerts"] {
        output_ok(
            Command::new(&promtool)
                .args(["check", "rules", &format!("{name}.yml")])
                .current_dir(&rules),
        );
        let (stdout, _) = output_ok(
            Command::new(&promtool)
                .args(["test", "rules", &format!("{name}.test.yml")])
                .current_dir(&rules),
        );
        assert!(stdout.contains("SUCCESS"), "{name}: {stdout}");
    }
}

/// The daemon's dashboard and alert rules.
pub const DAEMON_QUERIES: [&str; 2] = [
    "grafana/pullstats-daemon.json",
    "prometheus/pullstats-alerts.yml",
];
/// `serve`'s dashboard and alert rules.
pub const SERVE_QUERIES: [&str; 2] = [
    "grafana/pullstats-serve.json",
    "prometheus/pullstats-serve-alerts.yml",
];

/// Every `pullstats_…` series that `files` (under `packaging/`) query.
pub fn queried_metrics(files: &[&str]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(packaging().join(file)).expect(file);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("pullstats_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            found.push((file.to_string(), name));
        }
    }
    found.sort();
    found.dedup();
    assert!(found.len() >= 2, "{found:?}");
    found
}

/// Every series `files` query is in `metrics` (Prometheus text from a
/// running `who`): as a series, or as a family declared before it has one
/// (the lag appears once measured).
pub fn assert_exported(files: &[&str], metrics: &str, who: &str) {
    let exported: Vec<&str> = metrics
        .lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(declared) => declared.split(' ').next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .collect();
    for (file, name) in queried_metrics(files) {
        assert!(
            exported.contains(&name.as_str()),
            "{file} queries {name}, which {who} does not export: {metrics}"
        );
    }
}

/// nginx, as `packaging/nginx/pullstats-serve.conf` configures it (its
/// ports, upstream and certificate swapped for the test's), fronts a
/// running serve with TLS: health, a notification and the API through it,
/// `/metrics` kept private, plain HTTP redirected.
#[test]
fn nginx_terminates_tls_in_front_of_serve() {
    let nginx = tool("nginx", "nginx");
    let openssl = tool("openssl", "openssl");
    let curl = tool("curl", "curl");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    output_ok(
        Command::new(&openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem")),
    );
    let tokens = d.join("tokens.toml");
    let receive = crate::serve::token(&tokens, "registry", "receive", &[]);
    let serve = crate::serve::Serve::start(&d.join("pulls"), &tokens, &[]);
    let (tls, plain) = (
        crate::kafka::harness::free_port(),
        crate::kafka::harness::free_port(),
    );
    let site = std::fs::read_to_string(packaging().join("nginx/pullstats-serve.conf"))
        .expect("nginx conf")
        .replace(
            "server 127.0.0.1:8080;",
            &format!("server 127.0.0.1:{};", serve.port),
        )
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{tls} ssl;"))
        .replace("listen [::]:443 ssl;", "")
        .replace("listen 80;", &format!("listen 127.0.0.1:{plain};"))
        .replace("listen [::]:80;", "")
        .replace(
            "/etc/letsencrypt/live/stats.example.org/fullchain.pem",
            &d.join("cert.pem").display().to_string(),
        )
        .replace(
            "/etc/letsencrypt/live/stats.example.org/privkey.pem",
            &d.join("key.pem").display().to_string(),
        );
    std::fs::write(d.join("site.conf"), site).expect("site");
    let p = d.display();
    let main = format!(
        "worker_processes 1; daemon off; pid {p}/nginx.pid; error_log {p}/error.log;\n\
         events {{}}\n\
         http {{ access_log off; client_body_temp_path {p}/body; proxy_temp_path {p}/proxy;\n\
           fastcgi_temp_path {p}/fcgi; uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n\
           include {p}/site.conf; }}\n"
    );
    std::fs::write(d.join("nginx.conf"), main).expect("main");
    let nginx_args = |c: &mut Command| {
        c.arg("-p").arg(d).arg("-c").arg(d.join("nginx.conf"));
    };
    let mut check = Command::new(&nginx);
    nginx_args(&mut check);
    let (_, stderr) = output_ok(check.arg("-t"));
    assert!(stderr.contains("test is successful"), "{stderr}");
    let mut start = Command::new(&nginx);
    nginx_args(&mut start);
    // Stopped with `nginx -s stop`, which ends its workers too (a killed
    // master would leave them running).
    struct Stop(std::process::Child, Command);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.1.status();
            let _ = self.0.wait();
        }
    }
    let mut stop = Command::new(&nginx);
    nginx_args(&mut stop);
    stop.args(["-s", "stop"]);
    let started = start
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start nginx");
    let _nginx = Stop(started, stop);
    let https = |path: &str, extra: &[&str]| -> String {
        let out = Command::new(&curl)
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(d.join("cert.pem"))
            .args(extra)
            .arg(format!("https://127.0.0.1:{tls}{path}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    crate::kafka::harness::wait_until(
        std::time::Duration::from_secs(20),
        "nginx to answer",
        || https("/healthz", &[]) == "200",
    );
    let auth = format!("Authorization: Bearer {receive}");
    let ct = "Content-Type: application/vnd.docker.distribution.events.v1+json";
    // serve answers through it: 401 without the token, and with it an
    // envelope without events is dead-lettered (202).
    let envelope = ["-H", ct, "--data", "{\"events\":[]}"];
    assert_eq!(https("/notifications", &envelope), "401");
    assert_eq!(
        https(
            "/notifications",
            &[&["-H", auth.as_str()], &envelope[..]].concat()
        ),
        "202"
    );
    assert_eq!(https("/api/publisher/analytics/v1/", &[]), "401");
    assert_eq!(https("/metrics", &[]), "404");
    let out = Command::new(&curl)
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .arg(format!("http://127.0.0.1:{plain}/healthz"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "301 https://127.0.0.1/healthz"
    );
}
