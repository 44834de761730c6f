//! The real CNCF registry (`docker-registry` of Debian, distribution 2.8)
//! sends its notifications to `pullstats serve`; skopeo and curl push and
//! pull small images the test makes. The table must hold exactly the
//! actions those requests make (spec §2), named by the client each
//! User-Agent names, also when serve is stopped for 10 s or SIGKILLed in
//! the middle: the registry retries until it is answered 2xx, and what
//! was committed before a kill is recognised by its event ids.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::*;

/// A registry on a free loopback port whose notifications go to
/// `http://127.0.0.1:{serve_port}/notifications` with `secret`; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
}

impl Registry {
    fn start(dir: &Path, serve_port: u16, secret: &str) -> Self {
        let registry = tool("docker-registry", "docker-registry");
        let port = free_port();
        let storage = dir.join("registry-data");
        let config = dir.join("registry.yml");
        // The endpoint config README shows: a timeout above serve's commit
        // time, retries with a short backoff (the registry never gives up).
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n\
                 notifications:\n  endpoints:\n    - name: pullstats\n      \
                 url: http://127.0.0.1:{serve_port}/notifications\n      \
                 headers:\n        Authorization: [\"Bearer {secret}\"]\n      \
                 timeout: 10s\n      threshold: 3\n      backoff: 1s\n",
                storage.display()
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("log");
        let child = Command::new(registry)
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let r = Self {
            child,
            port,
            storage,
        };
        wait_until(
            Duration::from_secs(30),
            "the registry to answer /v2/",
            || get(port, "/v2/").is_some_and(|(s, _)| s == 200),
        );
        r
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The digest a tag points at, from the registry's storage (reading it
    /// over HTTP would itself be a request that makes an action).
    fn tag_digest(&self, repo: &str, tag: &str) -> String {
        let link = self.storage.join(format!(
            "docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/current/link"
        ));
        std::fs::read_to_string(link)
            .expect("tag link")
            .trim()
            .to_owned()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An OCI image layout at `dir` with two references: `single` (one
/// linux/amd64 image) and `multi` (an index of linux/amd64 and arm64).
fn oci_layout(dir: &Path) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout");
    let blob = |data: Vec<u8>| {
        let digest = sha256_hex(&data);
        std::fs::write(blobs.join(&digest), &data).expect("blob");
        serde_json::json!({"digest": format!("sha256:{digest}"), "size": data.len()})
    };
    let with = |mut v: serde_json::Value, media_type: &str| {
        v["mediaType"] = media_type.into();
        v
    };
    // An empty tar archive as the one layer.
    let layer = blob(vec![0; 1024]);
    let image = |arch: &str| {
        let config = blob(
            serde_json::to_vec(&serde_json::json!({
                "architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
            }))
            .expect("json"),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": with(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [with(layer.clone(), "application/vnd.oci.image.layer.v1.tar")],
        });
        let mut d = with(
            blob(serde_json::to_vec(&manifest).expect("json")),
            "application/vnd.oci.image.manifest.v1+json",
        );
        d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
        d
    };
    let mut single = image("amd64");
    single.as_object_mut().expect("object").remove("platform");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [image("amd64"), image("arm64")],
    });
    let mut multi = with(
        blob(serde_json::to_vec(&index).expect("json")),
        "application/vnd.oci.image.index.v1+json",
    );
    single["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "single"});
    multi["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "multi"});
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [single, multi]});
    std::fs::write(dir.join("index.json"), top.to_string()).expect("index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
}

fn push(registry: &Registry, layout: &Path) {
    let skopeo = tool("skopeo", "skopeo");
    for (reference, repo, all) in [
        ("single", "demo/single", false),
        ("multi", "demo/multi", true),
    ] {
        let mut cmd = Command::new(&skopeo);
        cmd.args(["copy", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        cmd.arg(format!("oci:{}:{reference}", layout.display()))
            .arg(format!("docker://{}/{repo}:v1", registry.addr()));
        run_ok(&mut cmd);
    }
}

/// The four kinds of action one round makes: (repository, action, tool).
const ROUND: [(&str, &str, &str); 4] = [
    ("single", "pull_by_tag", "skopeo"),
    ("multi", "pull_by_tag", "skopeo"),
    ("single", "version_check", "curl"),
    ("multi", "pull_by_digest", "curl"),
];

/// One round of pulls; `between` runs after each of its four steps.
fn pull_round(registry: &Registry, out: &Path, index_digest: &str, between: &mut dyn FnMut(usize)) {
    let (skopeo, curl) = (tool("skopeo", "skopeo"), tool("curl", "curl"));
    let r = registry.addr();
    // skopeo inspect: GET by tag (skopeo never HEADs) -> pull_by_tag.
    run_ok(Command::new(&skopeo).args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{r}/demo/single:v1"),
    ]));
    between(0);
    // skopeo copy of the index: GET by tag, GET of the platform manifest
    // by digest -> one pull_by_tag.
    run_ok(Command::new(&skopeo).args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{r}/demo/multi:v1"),
        &format!("oci:{}:v1", out.display()),
    ]));
    between(1);
    // curl HEAD by tag alone -> version_check.
    run_ok(Command::new(&curl).args([
        "-fsS",
        "-I",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &format!("http://{r}/v2/demo/single/manifests/v1"),
    ]));
    between(2);
    // curl GET by digest -> pull_by_digest.
    run_ok(Command::new(&curl).args([
        "-fsS",
        "-H",
        "Accept: application/vnd.oci.image.index.v1+json",
        &format!("http://{r}/v2/demo/multi/manifests/{index_digest}"),
    ]));
    between(3);
}

/// (repository, action, tool) -> actions, from the table.
fn actions(table: &Path) -> BTreeMap<(String, String, String), u64> {
    if !table.join("_delta_log").is_dir() {
        return BTreeMap::new();
    }
    sql_rows(
        table,
        "SELECT namespace, repository, action, user_agent_tool, count(*) FROM pulls \
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
    .into_iter()
    .skip(1)
    .map(|row| {
        assert_eq!(row[0], "demo", "{row:?}");
        (
            (row[1].clone(), row[2].clone(), row[3].clone()),
            row[4].parse().expect("count"),
        )
    })
    .collect()
}

fn expected(rounds: u64) -> BTreeMap<(String, String, String), u64> {
    ROUND
        .iter()
        .map(|(repo, action, tool)| {
            (
                (repo.to_string(), action.to_string(), tool.to_string()),
                rounds,
            )
        })
        .collect()
}

/// Waits until the table holds `rounds` rounds of actions, then a little
/// longer: a late retry must not add any.
fn assert_exact(table: &Path, rounds: u64) {
    let want = expected(rounds);
    let mut got = BTreeMap::new();
    let reached = (0..120).any(|_| {
        got = actions(table);
        std::thread::sleep(Duration::from_millis(500));
        got == want
    });
    assert!(reached, "the table holds {got:?}, want {want:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(actions(table), want, "no action counted twice");
}

/// Five rounds of pulls: serve stopped (SIGTERM) for 10 s during the
/// second, SIGKILLed and restarted in the middle of the fourth.
fn pulls_through_a_stop_and_a_kill(dir: &Path, serve: &mut Serve, table: &Path, secret: &str) {
    let registry = Registry::start(dir, serve.port, secret);
    let layout = dir.join("layout");
    oci_layout(&layout);
    push(&registry, &layout);
    let index_digest = registry.tag_digest("demo/multi", "v1");
    assert!(index_digest.starts_with("sha256:"), "{index_digest}");
    let out = dir.join("pulled");

    pull_round(&registry, &out, &index_digest, &mut |_| {});
    serve.terminate_cleanly();
    let down = std::time::Instant::now();
    pull_round(&registry, &out, &index_digest, &mut |_| {});
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    serve.restart();
    pull_round(&registry, &out, &index_digest, &mut |_| {});
    pull_round(&registry, &out, &index_digest, &mut |step| {
        if step == 1 {
            serve.kill_and_restart();
        }
    });
    pull_round(&registry, &out, &index_digest, &mut |_| {});
    assert_exact(table, 5);
}

#[test]
fn registry_notifications_direct_mode() {
    let dir = test_dir();
    let tokens = dir.path().join("tokens.toml");
    let secret = token(&tokens, "registry", "receive", &[]);
    let table = dir.path().join("pulls");
    let mut serve = Serve::start(&table, &tokens, &[]);
    pulls_through_a_stop_and_a_kill(dir.path(), &mut serve, &table, &secret);
    let metrics = serve.metrics();
    for outcome in ["accepted", "blob"] {
        let series = format!("pullstats_notifications_total{{outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
    serve.terminate_cleanly();
}

#[test]
fn registry_notifications_forward_mode() {
    let dir = test_dir();
    let broker = Broker::memory(dir.path());
    broker.create_topic_with_dlq("registry-events", 2);
    let tokens = dir.path().join("tokens.toml");
    let secret = token(&tokens, "registry", "receive", &[]);
    let mut serve = Serve::start(
        &dir.path().join("unused"),
        &tokens,
        &["--brokers", &broker.addr(), "--topic", "registry-events"],
    );
    let table = dir.path().join("pulls");
    let mut d = daemon(&broker, "registry-events", "g-registry", &table, &[]);
    pulls_through_a_stop_and_a_kill(dir.path(), &mut serve, &table, &secret);
    serve.terminate_cleanly();
    d.terminate_cleanly();
}
