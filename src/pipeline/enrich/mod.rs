//! Enrich stage: [`Action`] → [`EnrichedAction`] (spec §3).
//!
//! Replaces the client IP with a keyed hash (the IP never reaches the table,
//! an export or a log line) and adds country, cloud provider (`host`),
//! origin type and domain from data files ([`geo`], [`cloud`]) and the
//! client's tool and version from its User-Agent ([`useragent`]). Without a
//! data file its columns stay empty, never guessed.
//!
//! Lookups are cached per IP and per user agent (bounded: a full cache is
//! cleared). [`EnrichSources`] knows which files the data came from and
//! whether they changed, so a long-running process reloads them without a
//! restart.

pub mod cloud;
pub mod geo;
pub mod useragent;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use cloud::{CloudError, CloudRanges};
use geo::{Geo, GeoError};

use crate::event::{Action, EnrichedAction, Enrichment};

/// Well-known key used only with `--insecure-default-key` (demos, tests).
pub const INSECURE_DEFAULT_KEY: &str = "pullstats-insecure-default-key-do-not-use";
/// User agents kept in the cache; beyond this the cache is cleared (bounded
/// memory against hostile input).
const MAX_CACHED_AGENTS: usize = 100_000;
/// Client IPs kept in the cache (~100 bytes each).
const MAX_CACHED_IPS: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error("the IP hash key is empty")]
    EmptyKey,
    #[error(transparent)]
    Geo(#[from] GeoError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Where enrichment data comes from: MaxMind DBs and a directory of cloud
/// range files. Loads them and tells when they changed on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrichSources {
    pub geoip: Vec<PathBuf>,
    pub cloud_ranges: Option<PathBuf>,
}

/// The loaded data.
#[derive(Debug)]
pub struct EnrichData {
    pub geo: Geo,
    pub cloud: CloudRanges,
}

impl Default for EnrichData {
    fn default() -> Self {
        Self {
            geo: Geo::default(),
            cloud: CloudRanges::builtin(),
        }
    }
}

/// What the files looked like when loaded: path, modification time, size,
/// inode (a file renamed into place is a new inode even with the old time
/// and size).
pub type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64, u64)>;

impl EnrichSources {
    pub fn load(&self) -> Result<EnrichData, EnrichError> {
        let geo = Geo::open(&self.geoip)?;
        for db in geo.databases() {
            tracing::info!(path = %db.path().display(), kind = ?db.kind(), database_type = db.database_type(), "MaxMind DB loaded");
        }
        let cloud = match &self.cloud_ranges {
            Some(dir) => CloudRanges::load_dir(dir)?,
            None => CloudRanges::builtin(),
        };
        for s in cloud.sources() {
            tracing::info!(path = %s.path.display(), format = s.format, host = %s.host, prefixes = s.prefixes, "cloud ranges loaded");
        }
        Ok(EnrichData { geo, cloud })
    }

    /// The files' current state; compare two to see whether to reload.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut files: Vec<PathBuf> = self.geoip.clone();
        if let Some(dir) = &self.cloud_ranges {
            if let Ok(entries) = std::fs::read_dir(dir) {
                files.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        }
        files.sort();
        fingerprint_files(files)
    }
}

/// The current state of `files` (in the order given).
pub fn fingerprint_files(files: Vec<PathBuf>) -> Fingerprint {
    files
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.as_ref().map_or(0, |m| m.len());
            let inode = meta.as_ref().map_or(0, inode);
            (p, modified, len, inode)
        })
        .collect()
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// Keyed hash of client IPs: BLAKE3 keyed mode with a key derived from the
/// configured secret. Without the secret the hash cannot be reversed by
/// enumerating the IPv4 space.
#[derive(Clone)]
pub struct IpHasher {
    key: [u8; 32],
}

impl std::fmt::Debug for IpHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IpHasher { key: <redacted> }")
    }
}

impl IpHasher {
    pub fn new(secret: &str) -> Result<Self, EnrichError> {
        if secret.is_empty() {
            return Err(EnrichError::EmptyKey);
        }
        Ok(Self {
            key: blake3::derive_key("pullstats 2026 ip_hash v1", secret.as_bytes()),
        })
    }

    /// 64 bits: collisions among even a billion distinct IPs change a unique
    /// count by well under one in a million, and an integer column counts
    /// distinct values fastest.
    pub fn hash(&self, ip: IpAddr) -> i64 {
        let bytes = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let h = blake3::keyed_hash(&self.key, &bytes);
        let mut first = [0u8; 8];
        first.copy_from_slice(&h.as_bytes()[..8]);
        i64::from_le_bytes(first)
    }
}

#[derive(Debug, Clone)]
struct CachedClient {
    tool: Arc<str>,
    version: Option<Arc<str>>,
    os: Option<Arc<str>>,
    arch: Option<Arc<str>>,
    product: Option<Arc<str>>,
}

/// What an IP resolves to; `ip_hash` is cached with it.
#[derive(Debug, Clone)]
struct CachedIp {
    ip_hash: i64,
    country: Option<Arc<str>>,
    host: Option<Arc<str>>,
    origin_type: Option<Arc<str>>,
    domain: Option<Arc<str>>,
}

/// Applies every enrichment to an action.
#[derive(Debug)]
pub struct ActionEnricher {
    hasher: IpHasher,
    data: EnrichData,
    agents: foldhash::HashMap<Arc<str>, CachedClient>,
    ips: foldhash::HashMap<IpAddr, CachedIp>,
    /// Interned origin types (few distinct values).
    types: foldhash::HashMap<&'static str, Arc<str>>,
}

impl ActionEnricher {
    pub fn new(hasher: IpHasher, data: EnrichData) -> Self {
        Self {
            hasher,
            data,
            agents: foldhash::HashMap::default(),
            ips: foldhash::HashMap::default(),
            types: foldhash::HashMap::default(),
        }
    }

    /// Swaps in reloaded data; cached IP lookups are dropped.
    pub fn replace_data(&mut self, data: EnrichData) {
        self.data = data;
        self.ips.clear();
    }

    pub fn enrich(&mut self, action: Action) -> EnrichedAction {
        let client = self.client(&action.user_agent);
        let ip = self.ip(action.ip);
        EnrichedAction {
            ip_hash: ip.ip_hash,
            enrichment: Enrichment {
                country: ip.country,
                host: ip.host,
                origin_type: ip.origin_type,
                domain: ip.domain,
                user_agent_tool: Some(client.tool),
                user_agent_version: client.version,
                os: client.os,
                arch: client.arch,
                user_agent_product: client.product,
            },
            action,
        }
    }

    fn ip(&mut self, ip: IpAddr) -> CachedIp {
        if let Some(c) = self.ips.get(&ip) {
            return c.clone();
        }
        let g = self.data.geo.lookup(ip);
        let provider = self
            .data
            .cloud
            .lookup(ip)
            .or_else(|| g.asn.and_then(|asn| self.data.cloud.by_asn(asn)))
            .cloned();
        let origin = geo::origin_type(g.user_type.as_deref(), g.connection_type.as_deref())
            .or(provider.as_ref().map(|_| "hosting"))
            .map(|t| self.types.entry(t).or_insert_with(|| Arc::from(t)).clone());
        let c = CachedIp {
            ip_hash: self.hasher.hash(ip),
            country: g.country,
            domain: g.domain.or_else(|| {
                provider
                    .as_ref()
                    .map(|p| p.domain.clone())
                    .filter(|d| !d.is_empty())
            }),
            host: provider.map(|p| p.host),
            origin_type: origin,
        };
        if self.ips.len() >= MAX_CACHED_IPS {
            self.ips.clear();
        }
        self.ips.insert(ip, c.clone());
        c
    }

    fn client(&mut self, ua: &Arc<str>) -> CachedClient {
        if let Some(c) = self.agents.get(ua) {
            return c.clone();
        }
        let info = useragent::parse(ua);
        let c = CachedClient {
            tool: Arc::from(info.tool),
            version: info.version.map(Arc::from),
            os: info.os.map(Arc::from),
            arch: info.arch.map(Arc::from),
            product: info.product.map(Arc::from),
        };
        if self.agents.len() >= MAX_CACHED_AGENTS {
            self.agents.clear();
        }
        self.agents.insert(ua.clone(), c.clone());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_hash_is_keyed_and_stable() {
        let a = IpHasher::new("k1").expect("key");
        let b = IpHasher::new("k2").expect("key");
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(a.hash(ip), a.hash(ip));
        assert_ne!(a.hash(ip), b.hash(ip));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(a.hash(ip), a.hash(mapped));
        assert!(IpHasher::new("").is_err());
        assert!(!format!("{a:?}").contains("k1"));
    }

    fn action(ip: &str, ua: &str) -> Action {
        Action {
            kind: crate::event::ActionKind::PullByTag,
            timestamp: 0,
            method: crate::event::Method::Get,
            namespace: Arc::from("library"),
            repository: Arc::from("nginx"),
            reference: Arc::from("1"),
            tag: Some(Arc::from("1")),
            digest: Arc::from("sha256:00"),
            owner: None,
            ip: ip.parse().expect("ip"),
            user_agent: Arc::from(ua),
            requests: 1,
            late: false,
        }
    }

    fn testdata_ranges() -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cloud-ranges")
    }

    #[test]
    fn every_column_is_filled_from_the_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sources = EnrichSources {
            geoip: vec![geo::tests::enterprise_db(dir.path())],
            cloud_ranges: Some(testdata_ranges()),
        };
        let mut e = ActionEnricher::new(
            IpHasher::new("k").expect("key"),
            sources.load().expect("load"),
        );
        let business = e
            .enrich(action("198.51.100.7", "containerd/1.7.22"))
            .enrichment;
        assert_eq!(business.country.as_deref(), Some("DE"));
        assert_eq!(business.origin_type.as_deref(), Some("business"));
        assert_eq!(business.domain.as_deref(), Some("acme.example"));
        assert_eq!(business.host, None);
        assert_eq!(business.user_agent_tool.as_deref(), Some("containerd"));
        assert_eq!(business.user_agent_version.as_deref(), Some("1.7.22"));
        let cloud = e.enrich(action("3.5.140.9", "docker/27.3.1")).enrichment;
        assert_eq!(cloud.host.as_deref(), Some("aws"));
        assert_eq!(cloud.origin_type.as_deref(), Some("hosting"));
        assert_eq!(cloud.domain.as_deref(), Some("amazonaws.com"));
        assert_eq!(cloud.country, None, "no geo data for it: empty, not wrong");
        let nothing = e.enrich(action("192.0.2.1", "")).enrichment;
        assert_eq!(
            (
                nothing.country,
                nothing.host,
                nothing.origin_type,
                nothing.domain
            ),
            (None, None, None, None)
        );
        assert_eq!(nothing.user_agent_tool.as_deref(), Some("unknown"));
    }

    #[test]
    fn asn_fallback_names_the_provider() {
        let dir = tempfile::tempdir().expect("tempdir");
        let asn_db = dir.path().join("asn.mmdb");
        geo::tests::write_db(
            &asn_db,
            "GeoLite2-ASN",
            vec![(
                "192.0.2.0/24",
                geo::tests::FlatAsn {
                    autonomous_system_number: 14061,
                    autonomous_system_organization: "DIGITALOCEAN-ASN",
                },
            )],
        );
        let sources = EnrichSources {
            geoip: vec![asn_db],
            cloud_ranges: None,
        };
        let mut e = ActionEnricher::new(
            IpHasher::new("k").expect("key"),
            sources.load().expect("load"),
        );
        let got = e.enrich(action("192.0.2.44", "x")).enrichment;
        assert_eq!(got.host.as_deref(), Some("digitalocean"));
    }

    #[test]
    fn without_files_the_columns_stay_empty() {
        let mut e = ActionEnricher::new(IpHasher::new("k").expect("key"), EnrichData::default());
        let got = e.enrich(action("3.5.140.9", "docker/27.3.1")).enrichment;
        assert_eq!(
            (got.country, got.host, got.origin_type, got.domain),
            (None, None, None, None)
        );
    }

    #[test]
    fn changed_files_are_noticed_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ranges = dir.path().join("ranges");
        std::fs::create_dir(&ranges).expect("mkdir");
        std::fs::write(ranges.join("a.txt"), "# provider: acme\n203.0.113.0/24\n").expect("write");
        let sources = EnrichSources {
            geoip: vec![],
            cloud_ranges: Some(ranges.clone()),
        };
        let before = sources.fingerprint();
        let mut e = ActionEnricher::new(
            IpHasher::new("k").expect("key"),
            sources.load().expect("load"),
        );
        assert_eq!(e.enrich(action("198.51.100.1", "x")).enrichment.host, None);
        std::fs::write(ranges.join("b.txt"), "# provider: other\n198.51.100.0/24\n")
            .expect("write");
        let after = sources.fingerprint();
        assert_ne!(before, after);
        e.replace_data(sources.load().expect("reload"));
        assert_eq!(
            e.enrich(action("198.51.100.1", "x"))
                .enrichment
                .host
                .as_deref(),
            Some("other")
        );
    }
}
