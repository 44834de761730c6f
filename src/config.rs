//! Validation shared by the commands: durations, the IP hash key, sizes.
//!
//! clap parses flags and `PULLSTATS_*` environment variables; the functions
//! here turn raw values into validated ones and are used as clap
//! `value_parser`s, so bad values are usage errors (exit 2) that name the flag.
//!
//! The daemon also reads an optional TOML file (`--config`). Its keys are
//! the long flag names; each value is handed to clap as the flag's
//! environment variable when that variable is not set, so precedence is
//! flag > environment > file > default and every value goes through the
//! same validation.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{EnrichArgs, IngestArgs, PrivacyArgs, SessionArgs};
use crate::pipeline::enrich::{
    ActionEnricher, EnrichError, Fingerprint, IpHasher, INSECURE_DEFAULT_KEY,
};
use crate::pipeline::future;
use crate::pipeline::sessionize::SessionConfig;
use crate::pipeline::Pipeline;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no IP hash key: set PULLSTATS_IP_HASH_KEY (a long random secret; keep it stable, \
         unique-IP counts depend on it) or pass --insecure-default-key for a demo"
    )]
    NoIpHashKey,
    #[error("invalid IP hash key: {0}")]
    BadIpHashKey(String),
    #[error("cannot read the config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(transparent)]
    Enrich(#[from] EnrichError),
}

/// The TOML config file of `pullstats ingest` (every key optional; unknown
/// keys are errors). See README, "Configuration".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IngestConfigFile {
    /// The pulls table directory.
    pub table: Option<String>,
    /// Kafka bootstrap servers, `host:port[,host:port…]`.
    pub brokers: Option<String>,
    /// Topic of registry request events.
    pub topic: Option<String>,
    /// Consumer group.
    pub group: Option<String>,
    /// Dead-letter topic (default `<topic>.dlq`).
    pub dlq_topic: Option<String>,
    /// `earliest` or `latest`: where a partition the table has never seen starts.
    pub start_offset: Option<String>,
    /// Commit at least this often, e.g. `30s`.
    pub flush_interval: Option<String>,
    /// Commit once this many actions are buffered.
    pub flush_rows: Option<u64>,
    /// Commit once this many message bytes were consumed, e.g. `256MiB`.
    pub flush_bytes: Option<toml::Value>,
    /// Close the sessions of a caught-up partition silent this long.
    pub idle_close: Option<String>,
    /// Serve Prometheus metrics here, e.g. `127.0.0.1:9464`.
    pub metrics_addr: Option<String>,
    /// Bound on the final commit at shutdown.
    pub shutdown_timeout: Option<String>,
    /// Compact closed days that have gone quiet.
    pub auto_compact: Option<bool>,
    /// How often to look for quiet days to compact, e.g. `1h`.
    pub auto_compact_interval: Option<String>,
    /// Size of the files compaction writes, e.g. `128MiB`.
    pub target_file_size: Option<toml::Value>,
    /// How often to check the enrichment files for changes, e.g. `60s`; `0`: only on SIGHUP.
    pub reload_interval: Option<String>,
    /// Longest accepted message (or line) in bytes.
    pub max_line_bytes: Option<u64>,
    /// Session gap, e.g. `5s`.
    pub session_gap: Option<String>,
    /// Bound on out-of-order input, e.g. `30s`.
    pub max_lateness: Option<String>,
    /// Cap on open sessions.
    pub max_open_sessions: Option<u64>,
    /// How far ahead of the clock (files: of the input around it) an event may be, e.g. `1d`; `0`: no bound.
    pub max_future: Option<String>,
    /// MaxMind DBs, consulted in order.
    pub geoip: Option<Vec<String>>,
    /// Directory of cloud providers' IP-range files.
    pub cloud_ranges: Option<String>,
    /// Secret key of the IP hash (prefer the environment for secrets).
    pub ip_hash_key: Option<String>,
    /// librdkafka settings, e.g. `{ "security.protocol" = "SASL_SSL" }`.
    pub kafka: Option<BTreeMap<String, String>>,
    /// Storage settings of a table in an object store (`--storage-option`),
    /// e.g. `{ AWS_ENDPOINT_URL = "http://127.0.0.1:9000" }`; credentials
    /// belong in the environment.
    pub storage: Option<BTreeMap<String, String>>,
}

impl IngestConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError::File {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// `(environment variable, value)` for every key set in the file.
    pub fn env_values(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut put = |name: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.push((name, v));
            }
        };
        put("PULLSTATS_TABLE", self.table.clone());
        put("PULLSTATS_BROKERS", self.brokers.clone());
        put("PULLSTATS_TOPIC", self.topic.clone());
        put("PULLSTATS_GROUP", self.group.clone());
        put("PULLSTATS_DLQ_TOPIC", self.dlq_topic.clone());
        put("PULLSTATS_START_OFFSET", self.start_offset.clone());
        put("PULLSTATS_FLUSH_INTERVAL", self.flush_interval.clone());
        put(
            "PULLSTATS_FLUSH_ROWS",
            self.flush_rows.map(|v| v.to_string()),
        );
        put(
            "PULLSTATS_FLUSH_BYTES",
            self.flush_bytes.as_ref().map(toml_size),
        );
        put("PULLSTATS_IDLE_CLOSE", self.idle_close.clone());
        put("PULLSTATS_METRICS_ADDR", self.metrics_addr.clone());
        put("PULLSTATS_SHUTDOWN_TIMEOUT", self.shutdown_timeout.clone());
        put(
            "PULLSTATS_AUTO_COMPACT",
            self.auto_compact.map(|v| v.to_string()),
        );
        put(
            "PULLSTATS_AUTO_COMPACT_INTERVAL",
            self.auto_compact_interval.clone(),
        );
        put(
            "PULLSTATS_TARGET_FILE_SIZE",
            self.target_file_size.as_ref().map(toml_size),
        );
        put("PULLSTATS_RELOAD_INTERVAL", self.reload_interval.clone());
        put(
            "PULLSTATS_MAX_LINE_BYTES",
            self.max_line_bytes.map(|v| v.to_string()),
        );
        put("PULLSTATS_SESSION_GAP", self.session_gap.clone());
        put("PULLSTATS_MAX_LATENESS", self.max_lateness.clone());
        put("PULLSTATS_MAX_FUTURE", self.max_future.clone());
        put(
            "PULLSTATS_MAX_OPEN_SESSIONS",
            self.max_open_sessions.map(|v| v.to_string()),
        );
        put("PULLSTATS_GEOIP", self.geoip.as_ref().map(|g| g.join(",")));
        put("PULLSTATS_CLOUD_RANGES", self.cloud_ranges.clone());
        put("PULLSTATS_IP_HASH_KEY", self.ip_hash_key.clone());
        let pairs = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        put("PULLSTATS_KAFKA_SETTINGS", self.kafka.as_ref().map(pairs));
        put(
            "PULLSTATS_STORAGE_OPTIONS",
            self.storage.as_ref().map(pairs),
        );
        out
    }
}

/// A size given in TOML as `"256MiB"` or as a number of bytes.
fn toml_size(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// The `--config` path among raw arguments, else `PULLSTATS_CONFIG`.
pub fn config_file_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("PULLSTATS_CONFIG").map(PathBuf::from)
}

/// Reads the config file named by the arguments (if any) and exports its
/// values as the environment variables clap reads, without replacing any
/// that are already set. Call before parsing the command line, while the
/// process has one thread.
pub fn apply_config_file(args: &[OsString]) -> Result<(), ConfigError> {
    let Some(path) = config_file_path(args) else {
        return Ok(());
    };
    let file = IngestConfigFile::load(&path)?;
    for (name, value) in file.env_values() {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    Ok(())
}

pub use crate::units::{parse_bytes, parse_duration, parse_ratio};

/// The IP hasher from the configured key; refuses to run without one unless
/// the insecure default was asked for (and then says so loudly).
pub fn ip_hasher(key: Option<&str>, insecure_default: bool) -> Result<IpHasher, ConfigError> {
    match key.filter(|k| !k.is_empty()) {
        Some(k) => IpHasher::new(k).map_err(|e| ConfigError::BadIpHashKey(e.to_string())),
        None if insecure_default => {
            tracing::warn!(
                "using the INSECURE default IP hash key: ip_hash values can be reversed by \
                 anyone who knows this build; set PULLSTATS_IP_HASH_KEY for real data"
            );
            IpHasher::new(INSECURE_DEFAULT_KEY)
                .map_err(|e| ConfigError::BadIpHashKey(e.to_string()))
        }
        None => Err(ConfigError::NoIpHashKey),
    }
}

/// The decode → sessionize → enrich pipeline the ingest flags describe
/// (the file ingest and the engine), and the fingerprint of the enrichment
/// files as they were just before they were loaded (for reloads).
pub fn pipeline(args: &IngestArgs) -> Result<(Pipeline, Fingerprint), ConfigError> {
    pipeline_from(
        &args.session,
        &args.enrich,
        &args.privacy,
        args.max_line_bytes,
    )
}

/// The pipeline of any ingesting command, from its shared flags. Its decoder
/// refuses events beyond `--max-future` of the clock: the engine's (live
/// input). The file ingest decodes on a decoder of its own and bounds event
/// time by the input around it instead.
pub fn pipeline_from(
    session: &SessionArgs,
    enrich: &EnrichArgs,
    privacy: &PrivacyArgs,
    max_line_bytes: usize,
) -> Result<(Pipeline, Fingerprint), ConfigError> {
    let hasher = ip_hasher(privacy.ip_hash_key.as_deref(), privacy.insecure_default_key)?;
    let sources = enrich.sources();
    let fingerprint = sources.fingerprint();
    let data = sources.load()?;
    let session_config = SessionConfig {
        gap: session.session_gap,
        max_lateness: session.max_lateness,
        max_open_sessions: session.max_open_sessions,
    };
    let enricher = ActionEnricher::new(hasher, data);
    let pipeline = Pipeline::new(max_line_bytes, session_config, enricher)
        .with_clock_bound(future::bound_micros(session.max_future));
    Ok((pipeline, fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
    }

    #[test]
    fn config_file_keys_become_environment_values() {
        let file: IngestConfigFile = toml::from_str(
            r#"
            brokers = "127.0.0.1:9092"
            topic = "registry"
            flush-bytes = "64MiB"
            flush-rows = 5000
            geoip = ["a.mmdb", "b.mmdb"]
            kafka = { "security.protocol" = "SSL", "fetch.wait.max.ms" = "50" }
            storage = { AWS_ENDPOINT_URL = "http://127.0.0.1:9000", AWS_ALLOW_HTTP = "true" }
            "#,
        )
        .expect("parse");
        let env: BTreeMap<_, _> = file.env_values().into_iter().collect();
        assert_eq!(env["PULLSTATS_BROKERS"], "127.0.0.1:9092");
        assert_eq!(env["PULLSTATS_FLUSH_BYTES"], "64MiB");
        assert_eq!(env["PULLSTATS_FLUSH_ROWS"], "5000");
        assert_eq!(env["PULLSTATS_GEOIP"], "a.mmdb,b.mmdb");
        assert_eq!(
            env["PULLSTATS_KAFKA_SETTINGS"],
            "fetch.wait.max.ms=50,security.protocol=SSL"
        );
        assert_eq!(
            env["PULLSTATS_STORAGE_OPTIONS"],
            "AWS_ALLOW_HTTP=true,AWS_ENDPOINT_URL=http://127.0.0.1:9000"
        );
        let unknown = toml::from_str::<IngestConfigFile>("brokerz = 1");
        assert!(unknown.is_err(), "unknown keys are refused");
    }

    #[test]
    fn config_flag_is_found_among_arguments() {
        let args: Vec<OsString> = ["pullstats", "ingest", "--config", "/etc/p.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(config_file_path(&args), Some(PathBuf::from("/etc/p.toml")));
        let args: Vec<OsString> = ["pullstats", "--config=x.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(config_file_path(&args), Some(PathBuf::from("x.toml")));
    }

    #[test]
    fn ratios() {
        assert_eq!(parse_ratio("0.05"), Ok(0.05));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("x").is_err());
    }

    #[test]
    fn key_is_required_unless_insecure_default() {
        assert!(matches!(
            ip_hasher(None, false),
            Err(ConfigError::NoIpHashKey)
        ));
        assert!(matches!(
            ip_hasher(Some(""), false),
            Err(ConfigError::NoIpHashKey)
        ));
        assert!(ip_hasher(None, true).is_ok());
        assert!(ip_hasher(Some("secret"), false).is_ok());
    }
}
