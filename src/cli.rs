//! The command line: every subcommand and its flags (clap derive). Values
//! are validated here by `value_parser`s, so a bad flag is a usage error
//! (exit 2) that names it; the commands receive checked values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

use crate::config::{parse_bytes, parse_duration, parse_ratio};
use crate::gen::Format;
use crate::pipeline::decode::DEFAULT_MAX_LINE_BYTES;
use crate::pipeline::kafka::parse_setting;
use crate::pipeline::sessionize::DEFAULT_MAX_OPEN_SESSIONS;
use crate::query::export::{Breakdown, Granularity, TrendGroup, View};
use crate::query::OutputFormat;
use crate::table::location::{Location, Unechoed};

#[derive(Debug, Parser)]
#[command(
    name = "pullstats",
    version,
    about = "Pull analytics for container registries: request events → pull actions → Delta Lake → SQL",
    propagate_version = true
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// A storage setting of a table in an object store, KEY=VALUE
    /// (repeatable; deltalake's keys, e.g. AWS_ENDPOINT_URL=http://127.0.0.1:9000,
    /// AWS_ALLOW_HTTP=true). The standard environment (AWS_ACCESS_KEY_ID,
    /// AWS_REGION, AWS_PROFILE, instance roles, GOOGLE_*, AZURE_*) applies
    /// too. Values are never printed.
    #[arg(long = "storage-option", global = true, env = "PULLSTATS_STORAGE_OPTIONS", hide_env_values = true, value_delimiter = ',', value_parser = Unechoed(crate::table::location::parse_storage_option))]
    pub storage_options: Vec<crate::table::location::StorageOption>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate realistic registry request events (JSON lines), deterministically.
    Gen(GenArgs),
    /// Ingest request events into the pulls table: from a file, or as a
    /// daemon consuming a Kafka topic (--brokers, --topic).
    Ingest(IngestArgs),
    /// Run SQL over the pulls table (registered as `pulls`).
    Sql(SqlArgs),
    /// Export raw or summary data for a week, a month or a range of days.
    Export(ExportArgs),
    /// Run a saved query from queries/ (`--list` shows them).
    Query(QueryArgs),
    /// Generate a sample, ingest it into a local table and summarise it.
    Demo(DemoArgs),
    /// Send request events (JSON lines) to a Kafka topic, keyed by client IP.
    Produce(ProduceArgs),
    /// Read a topic from the beginning without processing it: the bare
    /// consumer rate the daemon is measured against.
    ReadTopic(ReadTopicArgs),
    /// Read and JSON-parse every line of a file without processing it: the
    /// raw parse rate the file ingest is measured against.
    ReadFile(ReadFileArgs),
    /// Send notification envelopes (one per line) to an endpoint as a
    /// registry does: replays saved envelopes into `serve`, and loads it in
    /// its benchmark.
    SendNotifications(SendNotificationsArgs),
    /// Rewrite the small files of closed days into sorted files of a target size.
    Compact(CompactArgs),
    /// Delete the actions of days older than a retention window.
    Retain(RetainArgs),
    /// Delete data files that no version within the retention period needs.
    Vacuum(VacuumArgs),
    /// Versions, files, sizes, days, rows and Kafka offsets of the table.
    Info(InfoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Write man pages: pullstats.1 and one per subcommand.
    Man(ManArgs),
    /// The HTTP front door: receive a registry's notifications (into Kafka
    /// with --brokers, else straight into the table).
    Serve(ServeArgs),
    /// Manage the tokens file of `pullstats serve`.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Append a token to the file and print its new secret (once: only its
    /// SHA-256 is stored).
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The tokens file (created, mode 0600, when missing).
    #[arg(long, env = "PULLSTATS_TOKENS")]
    pub tokens: PathBuf,
    /// The token's name (letters, digits, `.`, `_`, `-`): in logs, never the secret.
    #[arg(long)]
    pub name: String,
    /// What the token may do (repeatable): receive (POST /notifications),
    /// read (the analytics API and dashboard).
    #[arg(long = "role", value_enum, required = true)]
    pub roles: Vec<crate::serve::tokens::Role>,
    /// A namespace a read token may see (repeatable), `ns/repo` for one
    /// repository of one, or `*` for all.
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The pulls table directory (direct mode writes it; created if missing).
    #[arg(long, env = "PULLSTATS_TABLE", value_parser = Unechoed(Location::parse))]
    pub table: Location,
    /// Address to listen on. Loopback by default: put TLS and any public
    /// exposure in a reverse proxy.
    #[arg(long, env = "PULLSTATS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The tokens file (TOML; see `pullstats token create`), re-read when it changes.
    #[arg(long, env = "PULLSTATS_TOKENS")]
    pub tokens: PathBuf,
    /// Forward mode: Kafka bootstrap servers; each manifest event becomes a
    /// message of --topic for `pullstats ingest --brokers`.
    #[arg(long, env = "PULLSTATS_BROKERS", requires = "topic")]
    pub brokers: Option<String>,
    /// Forward mode: the topic to produce to.
    #[arg(long, env = "PULLSTATS_TOPIC", requires = "brokers")]
    pub topic: Option<String>,
    /// Forward mode: dead-letter topic; default `<topic>.dlq`.
    #[arg(long, env = "PULLSTATS_DLQ_TOPIC", requires = "brokers")]
    pub dlq_topic: Option<String>,
    /// Forward mode: a librdkafka producer setting, key=value (repeatable).
    #[arg(short = 'X', long = "kafka-setting", env = "PULLSTATS_KAFKA_SETTINGS", value_delimiter = ',', value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// How long an envelope may wait for Kafka's confirmation (forward) or
    /// for its commit (direct) before it is answered 503 (and retried).
    #[arg(long, env = "PULLSTATS_FORWARD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub forward_timeout: Duration,
    /// Longest accepted body; a longer one is dead-lettered (its first
    /// bytes) and answered 202, and read no further.
    #[arg(long, env = "PULLSTATS_MAX_BODY_BYTES", default_value = "8MiB", value_parser = parse_bytes)]
    pub max_body_bytes: u64,
    /// A client must send a request's headers within this, and its body within this after.
    #[arg(long, env = "PULLSTATS_CLIENT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub client_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog. The
    /// open-file limit is raised to fit them (up to its hard limit).
    #[arg(long, env = "PULLSTATS_MAX_CONNECTIONS", default_value_t = 8192)]
    pub max_connections: usize,
    /// Direct mode: dead-letter file; default `<table>.dead-letter.jsonl`,
    /// or for a table in an object store, objects under `<table>.dead-letter/`
    /// in the same store.
    #[arg(long, env = "PULLSTATS_DEAD_LETTER", conflicts_with = "brokers")]
    pub dead_letter: Option<PathBuf>,
    /// Direct mode: answer an envelope once it is synced into a write-ahead
    /// log in this local directory, and commit to the table behind it.
    /// Default for a local table: `<table>/_pullstats/wal`; a table in an
    /// object store has none unless given one.
    #[arg(long, env = "PULLSTATS_WAL", conflicts_with = "brokers")]
    pub wal: Option<PathBuf>,
    /// Direct mode: no write-ahead log; answer an envelope only once the
    /// table's commit covers it (a commit's latency per envelope).
    #[arg(long, env = "PULLSTATS_NO_WAL", conflicts_with_all = ["wal", "brokers"])]
    pub no_wal: bool,
    /// Direct mode: commit at least this often (with --no-wal, sooner when
    /// envelopes wait and nothing more is queued: group commit).
    #[arg(long, env = "PULLSTATS_FLUSH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub flush_interval: Duration,
    /// Direct mode: close the open sessions once no notification came for this long.
    #[arg(long, env = "PULLSTATS_IDLE_CLOSE", default_value = "60s", value_parser = parse_duration)]
    pub idle_close: Duration,
    /// On SIGTERM, give in-flight envelopes and the final commit this long.
    #[arg(long, env = "PULLSTATS_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Direct mode (forward mode: the daemon's own `--auto-compact`).
    #[command(flatten)]
    pub compaction: AutoCompactArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub enrich: EnrichArgs,
    #[command(flatten)]
    pub privacy: PrivacyArgs,
    #[command(flatten)]
    pub reload: ReloadArgs,
}

/// The publisher analytics API of `serve`.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Secret (at least 32 characters) that signs download links and login
    /// sessions; default: one generated into `<table>/_pullstats/signing-key`.
    #[arg(long, env = "PULLSTATS_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// How long a download link stays valid.
    #[arg(long, env = "PULLSTATS_LINK_TTL", default_value = "1h", value_parser = parse_duration)]
    pub link_ttl: Duration,
    /// How long a session token from `POST /v2/users/login` stays valid.
    #[arg(long, env = "PULLSTATS_SESSION_TTL", default_value = "1h", value_parser = parse_duration)]
    pub session_ttl: Duration,
    /// Start of download links (e.g. `https://stats.example.org`, the
    /// address clients reach through a proxy); default `http://` + the
    /// request's Host.
    #[arg(long, env = "PULLSTATS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How often the API reads new commits of the table (and computes the
    /// complete periods they touched).
    #[arg(long, env = "PULLSTATS_REFRESH_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub refresh_interval: Duration,
    /// An export's CSV is cut into download files of about this size (at row ends).
    #[arg(long, env = "PULLSTATS_EXPORT_PART_SIZE", default_value = "256MiB", value_parser = parse_bytes)]
    pub export_part_size: u64,
    /// A reverse proxy in front of serve (an address or a CIDR range;
    /// repeatable, or comma-separated): failed logins from it are counted
    /// per client its `X-Forwarded-For` names, not as the proxy's. Without
    /// it, all clients behind a proxy share one budget.
    #[arg(
        long = "trusted-proxy",
        env = "PULLSTATS_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "ADDR[/PREFIX]"
    )]
    pub trusted_proxies: Vec<ipnetwork::IpNetwork>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell, e.g. `pullstats completions bash > /etc/bash_completion.d/pullstats`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The pulls table directory (its rejected table is compacted too).
    #[arg(long, env = "PULLSTATS_TABLE", value_parser = Unechoed(Location::parse))]
    pub table: Location,
    /// Only this day (even today, when asked for).
    #[arg(long, value_parser = parse_day, conflicts_with = "since")]
    pub day: Option<NaiveDate>,
    /// Only this day and later closed days.
    #[arg(long, value_parser = parse_day)]
    pub since: Option<NaiveDate>,
    /// Size of the files written; files under half of it count as small.
    #[arg(long, env = "PULLSTATS_TARGET_FILE_SIZE", default_value = "128MiB", value_parser = parse_bytes)]
    pub target_file_size: u64,
    /// The day taken as today (UTC); days before it are closed. Default: the clock.
    #[arg(long, value_parser = parse_day)]
    pub today: Option<NaiveDate>,
}

#[derive(Debug, Args)]
pub struct RetainArgs {
    /// The pulls table directory (its rejected table is cut too).
    #[arg(long, env = "PULLSTATS_TABLE", value_parser = Unechoed(Location::parse))]
    pub table: Location,
    /// How much history to keep: 13m (months), 400d, 52w, 2y.
    #[arg(long, value_parser = crate::table::maintenance::parse_keep)]
    pub keep: crate::table::maintenance::Keep,
    /// The day taken as today (UTC). Default: the clock.
    #[arg(long, value_parser = parse_day)]
    pub today: Option<NaiveDate>,
    /// Only list the days that would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// The pulls table directory (its rejected table is vacuumed too).
    #[arg(long, env = "PULLSTATS_TABLE", value_parser = Unechoed(Location::parse))]
    pub table: Location,
    /// Keep what versions this recent need (default: the table's
    /// delta.deletedFileRetentionDuration, 7 days); e.g. 48h, 7d.
    #[arg(long, value_parser = parse_duration)]
    pub retention: Option<Duration>,
    /// Allow a retention below the table's: older versions become
    /// unreadable, and a writer's uncommitted files younger than a running
    /// commit may be deleted. Only with every writer stopped.
    #[arg(long)]
    pub force: bool,
    /// Only list the files that would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

/// Output of `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InfoFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The pulls table directory.
    #[arg(long, env = "PULLSTATS_TABLE", value_parser = Unechoed(Location::parse))]
    pub table: Location,
    /// Output format (json adds every day's files, bytes and rows).
    #[arg(long, value_enum, default_value_t = InfoFormat::Text)]
    pub format: InfoFormat,
    /// Files under half of this count as small (as for `compact`).
    #[arg(long, env = "PULLSTATS_TARGET_FILE_SIZE", default_value = "128MiB", value_parser = parse_bytes)]
    pub target_file_size: u64,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT…].
    #[arg(long, env = "PULLSTATS_BROKERS")]
    pub brokers: String,
    /// The topic to write to.
    #[arg(long, env = "PULLSTATS_TOPIC")]
    pub topic: String,
    /// Events to send, one per line (`-` for stdin).
    #[arg(long, default_value = "-")]
    pub from_file: PathBuf,
    /// Send every message without a key, so librdkafka's partitioner
    /// spreads them (to measure what an unkeyed topic does to the counts).
    #[arg(long)]
    pub unkeyed: bool,
    /// A librdkafka setting, key=value (repeatable).
    #[arg(short = 'X', long = "kafka-setting", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct ReadTopicArgs {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT…].
    #[arg(long, env = "PULLSTATS_BROKERS")]
    pub brokers: String,
    /// The topic to read (every partition, from its first offset).
    #[arg(long, env = "PULLSTATS_TOPIC")]
    pub topic: String,
    /// Stop after this many messages (default: once no message came for
    /// --idle).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Stop after this long without a message.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub idle: Duration,
    /// A librdkafka setting, key=value (repeatable).
    #[arg(short = 'X', long = "kafka-setting", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct ReadFileArgs {
    /// The file to read (`-` for stdin).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct SendNotificationsArgs {
    /// The endpoint, http://HOST:PORT/PATH (plain HTTP), e.g. serve's
    /// http://127.0.0.1:8080/notifications.
    #[arg(long)]
    pub url: String,
    /// A file whose first line is the bearer token to send (a `receive`
    /// token from `pullstats token create`).
    #[arg(long, env = "PULLSTATS_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// Envelopes to send, one JSON body per line (`-` for stdin): each
    /// line but an empty one is sent as it is, without its line ending.
    #[arg(long, default_value = "-")]
    pub from_file: PathBuf,
    /// Keep-alive connections, each sending its next envelope once the
    /// last was answered (a registry keeps one per endpoint).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: u16,
    /// Attempts per envelope before giving up (answers 5xx, 408 and 429 and
    /// lost connections are tried again).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Number of lines (events) to write.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Seed: the same seed and flags give byte-identical output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First day (UTC) of the generated traffic.
    #[arg(long, default_value = "2026-11-02", value_parser = parse_day)]
    pub start: NaiveDate,
    /// Number of days the traffic spans.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3660))]
    pub days: u32,
    /// Input encoding to produce.
    #[arg(long, value_enum, default_value_t = Format::Flat)]
    pub format: Format,
    /// Fraction of lines that are malformed, of many kinds.
    #[arg(long, default_value = "0", value_parser = parse_ratio)]
    pub bad_ratio: f64,
    /// Output file; stdout when absent or `-`.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Also write what was generated (intended action counts…) as JSON here.
    #[arg(long)]
    pub stats: Option<PathBuf>,
}

/// Session (grouping) settings shared by the ingesting commands.
#[derive(Debug, Args, Clone)]
pub struct SessionArgs {
    /// Longest gap between the requests of one pull (e.g. 500ms, 5s).
    #[arg(long, env = "PULLSTATS_SESSION_GAP", default_value = "5s", value_parser = parse_duration)]
    pub session_gap: Duration,
    /// How far input may be out of event-time order; later events are counted as their own action.
    #[arg(long, env = "PULLSTATS_MAX_LATENESS", default_value = "30s", value_parser = parse_duration)]
    pub max_lateness: Duration,
    /// Cap on open sessions (bounded memory); beyond it the least recently active closes early.
    #[arg(long, env = "PULLSTATS_MAX_OPEN_SESSIONS", default_value_t = DEFAULT_MAX_OPEN_SESSIONS)]
    pub max_open_sessions: usize,
    /// How far ahead an event's time may be: of the clock for Kafka and
    /// received notifications, of the input around it for files. Further
    /// ones are dead-lettered (they would make later events late). 0: no bound.
    #[arg(long, env = "PULLSTATS_MAX_FUTURE", default_value = "1d", value_parser = parse_duration)]
    pub max_future: Duration,
}

/// Privacy settings shared by the ingesting commands.
#[derive(Debug, Args, Clone)]
pub struct PrivacyArgs {
    /// Secret key of the IP hash. Keep it stable: unique-IP counts depend on it.
    #[arg(long, env = "PULLSTATS_IP_HASH_KEY", hide_env_values = true)]
    pub ip_hash_key: Option<String>,
    /// Use a well-known built-in key (demos and tests only: hashes become reversible).
    #[arg(long, env = "PULLSTATS_INSECURE_DEFAULT_KEY")]
    pub insecure_default_key: bool,
}

/// Enrichment data files shared by the ingesting commands.
#[derive(Debug, Args, Clone, Default)]
pub struct EnrichArgs {
    /// A MaxMind DB (GeoIP2/GeoLite2 Country, City, Enterprise, ASN, ISP,
    /// Domain, Connection-Type, or a flat `country_code` build). Repeatable;
    /// consulted in order.
    #[arg(long = "geoip", env = "PULLSTATS_GEOIP", value_delimiter = ',')]
    pub geoip: Vec<PathBuf>,
    /// A directory of cloud providers' published IP-range files, any names.
    #[arg(long, env = "PULLSTATS_CLOUD_RANGES")]
    pub cloud_ranges: Option<PathBuf>,
}

impl EnrichArgs {
    pub fn sources(&self) -> crate::pipeline::enrich::EnrichSources {
        crate::pipeline::enrich::EnrichSources {
            geoip: self.geoip.clone(),
            cloud_ranges: self.cloud_ranges.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Read events from this file (`-` for stdin): flat JSON lines and/or
    /// distribution notification envelopes, detected per line.
    #[arg(
        long,
        env = "PULLSTATS_FROM_FILE",
        required_unless_present = "brokers",
        conflicts_with = "brokers"
    )]
    pub from_file: Option<PathBuf>,
    /// TOML file of settings (keys are the long flag names; see README).
    /// Flags and environment variables take precedence over it.
    #[arg(long, env = "PULLSTATS_CONFIG")]
    pub config: Option<PathBuf>,
    /// The pulls table directory (created if missing).
    #[arg(long, env = "PULLSTATS_TABLE", value_parser = Unechoed(Location::parse))]
    pub table: Location,
    /// Dead-letter file for bad lines (JSON lines); default `<table>.dead-letter.jsonl`.
    #[arg(long, env = "PULLSTATS_DEAD_LETTER", conflicts_with = "brokers")]
    pub dead_letter: Option<PathBuf>,
    /// Longest accepted input line or Kafka message in bytes; longer ones are dead-lettered.
    #[arg(long, visible_alias = "max-message-bytes", env = "PULLSTATS_MAX_LINE_BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Never draw a progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub session: SessionArgs,
    #[command(flatten)]
    pub enrich: EnrichArgs,
    #[command(flatten)]
    pub privacy: PrivacyArgs,
}

/// Where a partition that the table has never seen starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartOffset {
    Earliest,
    Latest,
}

/// The daemon: consume a Kafka topic (see README, "Streaming ingest").
#[derive(Debug, Args, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT…]: run as a daemon
    /// consuming --topic until SIGTERM / Ctrl-C.
    #[arg(long, env = "PULLSTATS_BROKERS", requires = "topic")]
    pub brokers: Option<String>,
    /// Topic of registry request events. Key its messages by client IP so
    /// that the requests of one pull share a partition.
    #[arg(long, env = "PULLSTATS_TOPIC", requires = "brokers")]
    pub topic: Option<String>,
    /// Consumer group: daemons with the same group share the partitions.
    #[arg(long, env = "PULLSTATS_GROUP", default_value = "pullstats")]
    pub group: String,
    /// Dead-letter topic; default `<topic>.dlq`.
    #[arg(long, env = "PULLSTATS_DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
    /// A librdkafka setting, key=value (repeatable), e.g. -X security.protocol=SASL_SSL.
    #[arg(short = 'X', long = "kafka-setting", env = "PULLSTATS_KAFKA_SETTINGS", value_delimiter = ',', value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// Where a partition that the table has never seen starts.
    #[arg(long, env = "PULLSTATS_START_OFFSET", value_enum, default_value_t = StartOffset::Earliest)]
    pub start_offset: StartOffset,
    /// Commit at least this often: a quiet topic still lands within it.
    #[arg(long, env = "PULLSTATS_FLUSH_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub flush_interval: Duration,
    /// Commit once this many actions are waiting.
    #[arg(long, env = "PULLSTATS_FLUSH_ROWS", default_value_t = 1_000_000)]
    pub flush_rows: u64,
    /// Commit once this many bytes of messages were consumed since the last commit.
    #[arg(long, env = "PULLSTATS_FLUSH_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub flush_bytes: u64,
    /// Close the open sessions of a partition that is caught up and has
    /// been silent this long (wall clock), so its last pulls land.
    #[arg(long, env = "PULLSTATS_IDLE_CLOSE", default_value = "60s", value_parser = parse_duration)]
    pub idle_close: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "PULLSTATS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// On SIGTERM / Ctrl-C, give the final commit this long; past it the
    /// daemon exits 1 and the uncommitted work is redone on restart.
    #[arg(long, env = "PULLSTATS_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    #[command(flatten)]
    pub compaction: AutoCompactArgs,
    #[command(flatten)]
    pub reload: ReloadArgs,
}

/// Compaction beside a long-running writer (the daemon, `serve`'s direct mode).
#[derive(Debug, Args, Clone)]
pub struct AutoCompactArgs {
    /// Every --auto-compact-interval, compact the closed days no file has
    /// reached for that long and the small files of the day being written
    /// (as `pullstats compact` does), then bring the periods table up to
    /// date. `serve`: direct mode only.
    #[arg(long, env = "PULLSTATS_AUTO_COMPACT")]
    pub auto_compact: bool,
    /// How often to look for days to compact.
    #[arg(long, env = "PULLSTATS_AUTO_COMPACT_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub auto_compact_interval: Duration,
    /// Size of the files compaction writes.
    #[arg(long, env = "PULLSTATS_TARGET_FILE_SIZE", default_value = "128MiB", value_parser = parse_bytes)]
    pub target_file_size: u64,
}

/// Enrichment reloads of the long-running commands.
#[derive(Debug, Args, Clone)]
pub struct ReloadArgs {
    /// How often to check the --geoip files and the --cloud-ranges
    /// directory and reload them when they changed; 0: only on SIGHUP.
    #[arg(long, env = "PULLSTATS_RELOAD_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub reload_interval: Duration,
}

impl KafkaArgs {
    /// The defaults, for commands that ingest a file (no daemon).
    pub fn unused() -> Self {
        use clap::FromArgMatches;
        let command = Self::augment_args(clap::Command::new("pullstats").ignore_errors(true));
        let matches = command.get_matches_from(["pullstats"]);
        let mut args =
            Self::from_arg_matches(&matches).unwrap_or_else(|_| unreachable!("defaults parse"));
        args.brokers = None;
        args.topic = None;
        args
    }
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The pulls table directory.
    #[arg(long, env = "PULLSTATS_TABLE", value_parser = Unechoed(Location::parse))]
    pub table: Location,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Read the table as of this version (time travel, Delta's `VERSION AS
    /// OF`; `pullstats info` shows the latest).
    #[arg(long)]
    pub as_of_version: Option<u64>,
    /// The SQL statement; the table is `pulls`. Without one, an interactive
    /// shell opens (or statements are read from piped stdin).
    pub statement: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("span").args(["week", "month", "from", "last"])))]
pub struct ExportArgs {
    /// The pulls table directory.
    #[arg(long, env = "PULLSTATS_TABLE", value_parser = Unechoed(Location::parse))]
    pub table: Location,
    /// What to export (spec §4).
    #[arg(long, value_enum, default_value_t = View::Summary)]
    pub view: View,
    /// An ISO week, Monday to Sunday: 2026-W45.
    #[arg(long)]
    pub week: Option<String>,
    /// A calendar month: 2026-10.
    #[arg(long)]
    pub month: Option<String>,
    /// First day of a range (inclusive), with --to.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Day after the range (exclusive).
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Trend: the last 3m, 6m or 12m of complete periods (with --view trend).
    #[arg(long, value_parser = crate::query::export::parse_last)]
    pub last: Option<u32>,
    /// Trend points: week or month.
    #[arg(long, value_enum, default_value_t = Granularity::Week)]
    pub granularity: Granularity,
    /// Trend rows per repository or per namespace.
    #[arg(long, value_enum, default_value_t = TrendGroup::Repository)]
    pub group: TrendGroup,
    /// Trend: the day whose period ends the trend (default: today, UTC).
    #[arg(long)]
    pub until: Option<String>,
    /// Break summaries down by these columns too (repeatable).
    #[arg(long, value_enum)]
    pub by: Vec<Breakdown>,
    /// Only these namespaces (repeatable).
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
    /// Only these repositories, `repo` or `ns/repo` (repeatable).
    #[arg(long = "repository")]
    pub repositories: Vec<String>,
    /// File format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Output file; stdout for csv and json when absent or `-`.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Compress csv or json output with gzip.
    #[arg(long)]
    pub gzip: bool,
    /// Raw view: rows sorted at once, about. A day with more actions (from
    /// the table's statistics) is sorted in that many even slices of time,
    /// so memory stays the same however large the days grow.
    #[arg(long, default_value_t = crate::query::export::RAW_SLICE_ROWS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub raw_slice_rows: u64,
    /// Scan the pulls table even for complete weeks and months the periods
    /// table holds current (the same rows, slower; to check one against
    /// the other).
    #[arg(long)]
    pub no_periods: bool,
}

/// Formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
    Parquet,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The saved query to run.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// List the saved queries with their parameters.
    #[arg(long)]
    pub list: bool,
    /// The pulls table directory.
    #[arg(long, env = "PULLSTATS_TABLE", required_unless_present = "list", value_parser = Unechoed(Location::parse))]
    pub table: Option<Location>,
    /// A parameter, key=value (repeatable).
    #[arg(long = "param", value_parser = crate::query::saved::parse_param)]
    pub params: Vec<(String, String)>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to put the demo table (replaced if it is an earlier demo's).
    #[arg(long, default_value = "pullstats-demo")]
    pub dir: PathBuf,
    /// Number of events to generate.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// MaxMind DBs for country / origin type / domain (repeatable).
    #[arg(long = "geoip", value_delimiter = ',')]
    pub geoip: Vec<PathBuf>,
    /// Cloud range files; default `testdata/cloud-ranges` when run from the repository.
    #[arg(long)]
    pub cloud_ranges: Option<PathBuf>,
}

fn parse_day(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("`{s}` is not a YYYY-MM-DD date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
