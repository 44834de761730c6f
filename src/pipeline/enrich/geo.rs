//! Geolocation and network enrichment from MaxMind DB files (`--geoip`).
//!
//! Accepts the GeoIP2 / GeoLite2 schemas (Country, City, Enterprise, ASN,
//! ISP, Domain, Connection-Type) and the flat schema of free
//! redistributions (`country_code`, `autonomous_system_number`). One lookup
//! per database decodes a single [`Record`] holding the union of the fields
//! we read, so a file's schema matters only for what it fills. A file's kind
//! comes from its metadata and is confirmed by decoding its first records at
//! start-up: an unknown or corrupt file fails there, naming the file, not in
//! the middle of an ingest.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maxminddb::Reader;
use serde::Deserialize;

/// Search-tree nodes visited at most while looking for a file's first record
/// (a corrupt tree may loop; the crate's own iterator would not stop).
const MAX_PROBE_NODES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("cannot open MaxMind DB {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("MaxMind DB {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("MaxMind DB {path} ({database_type}) has none of the fields pullstats reads (country, ASN, ISP, domain, user type, connection type)")]
    Unknown {
        path: PathBuf,
        database_type: String,
    },
}

/// What a database provides, from its metadata (and content when the
/// metadata does not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Country,
    Enterprise,
    Asn,
    Isp,
    Domain,
    ConnectionType,
    /// A redistribution's flat schema (`country_code`, ASN fields).
    Flat,
}

#[derive(Deserialize, Default)]
struct IsoCode<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Traits<'a> {
    #[serde(borrow)]
    user_type: Option<&'a str>,
    #[serde(borrow)]
    domain: Option<&'a str>,
    #[serde(borrow)]
    isp: Option<&'a str>,
    #[serde(borrow)]
    organization: Option<&'a str>,
    #[serde(borrow)]
    connection_type: Option<&'a str>,
    autonomous_system_number: Option<u32>,
}

/// The union of the fields read from any supported schema.
#[derive(Deserialize, Default)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(borrow)]
    traits: Option<Traits<'a>>,
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
    #[serde(borrow)]
    isp: Option<&'a str>,
    #[serde(borrow)]
    organization: Option<&'a str>,
    #[serde(borrow)]
    domain: Option<&'a str>,
    #[serde(borrow)]
    connection_type: Option<&'a str>,
}

impl Record<'_> {
    fn has_any_field(&self) -> bool {
        self.country.as_ref().is_some_and(|c| c.iso_code.is_some())
            || self.country_code.is_some()
            || self.traits.is_some()
            || self.autonomous_system_number.is_some()
            || self.isp.is_some()
            || self.domain.is_some()
            || self.connection_type.is_some()
    }
}

/// What the databases know about one IP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoInfo {
    pub country: Option<Arc<str>>,
    pub asn: Option<u32>,
    pub organization: Option<Arc<str>>,
    pub domain: Option<Arc<str>>,
    pub user_type: Option<Arc<str>>,
    pub connection_type: Option<Arc<str>>,
}

pub struct GeoDb {
    path: PathBuf,
    kind: DbKind,
    database_type: String,
    ipv6: bool,
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("database_type", &self.database_type)
            .finish()
    }
}

thread_local! {
    /// Set while [`quietly`] runs on this thread.
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err` without the panic hook's report
/// (message and backtrace on stderr) for panics of this thread meanwhile:
/// a malformed file is reported by the caller as one clear error. Other
/// threads' panics are reported as before.
fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET_PANICS.with(std::cell::Cell::get) {
                tracing::debug!("caught: {info}");
            } else {
                report(info);
            }
        }));
    });
    QUIET_PANICS.with(|q| q.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(false));
    result
}

impl GeoDb {
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let bytes = std::fs::read(path).map_err(|e| GeoError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(path, bytes)
    }

    /// A database from its bytes (`path` names it in errors).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, GeoError> {
        // The maxminddb crate has panicked on some malformed files instead
        // of returning an error, e.g. one cut off inside its metadata (a
        // database caught mid-copy): that is a corrupt file, never a crash.
        quietly(|| Self::from_bytes(path, bytes)).unwrap_or_else(|_| {
            Err(GeoError::Corrupt {
                path: path.to_owned(),
                reason: "the MaxMind reader failed on it (truncated or corrupt)".into(),
            })
        })
    }

    fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, GeoError> {
        let open_error = |reason: String| GeoError::Open {
            path: path.to_owned(),
            reason,
        };
        let meta = Reader::from_source(bytes.as_slice())
            .map_err(|e| open_error(e.to_string()))?
            .metadata()
            .clone();
        let first = first_record_ip(&bytes, &meta).map_err(|reason| GeoError::Corrupt {
            path: path.to_owned(),
            reason,
        })?;
        let reader = Reader::from_source(bytes).map_err(|e| open_error(e.to_string()))?;
        let database_type = meta.database_type.clone();
        let ipv6 = meta.ip_version == 6;
        let kind = probe(path, &reader, &database_type, first)?;
        Ok(Self {
            path: path.to_owned(),
            kind,
            database_type,
            ipv6,
            reader,
        })
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn database_type(&self) -> &str {
        &self.database_type
    }

    /// Fills the fields of `info` that are still empty. A lookup error (a
    /// corrupt record deep in the file) leaves them empty rather than
    /// failing the action; so does a record the maxminddb crate panics on
    /// (found by the `mmdb` fuzz target: an out-of-bounds pointer in a
    /// record of a file that opens).
    pub fn fill(&self, ip: IpAddr, info: &mut GeoInfo) {
        if ip.is_ipv6() && !self.ipv6 {
            return;
        }
        let lookup = quietly(|| {
            self.reader
                .lookup(ip)
                .and_then(|found| found.decode::<Record<'_>>())
        });
        let record = match lookup {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::debug!(path = %self.path.display(), "lookup failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(path = %self.path.display(), "lookup failed: corrupt record");
                return;
            }
        };
        let traits = record.traits.unwrap_or_default();
        let set = |slot: &mut Option<Arc<str>>, v: Option<&str>| {
            if slot.is_none() {
                *slot = v.filter(|s| !s.is_empty()).map(Arc::from);
            }
        };
        set(
            &mut info.country,
            record
                .country
                .and_then(|c| c.iso_code)
                .or(record.country_code)
                .or(record.registered_country.and_then(|c| c.iso_code)),
        );
        if info.asn.is_none() {
            info.asn = record
                .autonomous_system_number
                .or(traits.autonomous_system_number);
        }
        set(
            &mut info.organization,
            record
                .organization
                .or(traits.organization)
                .or(record.isp)
                .or(traits.isp)
                .or(record.autonomous_system_organization),
        );
        set(&mut info.domain, record.domain.or(traits.domain));
        set(&mut info.user_type, traits.user_type);
        set(
            &mut info.connection_type,
            record.connection_type.or(traits.connection_type),
        );
    }
}

fn kind_from_type(database_type: &str) -> Option<DbKind> {
    let t = database_type.to_ascii_lowercase();
    [
        ("enterprise", DbKind::Enterprise),
        ("connection-type", DbKind::ConnectionType),
        ("connection_type", DbKind::ConnectionType),
        ("asn", DbKind::Asn),
        ("isp", DbKind::Isp),
        ("domain", DbKind::Domain),
        ("city", DbKind::Country),
        ("country", DbKind::Country),
    ]
    .into_iter()
    .find(|(needle, _)| t.contains(needle))
    .map(|(_, k)| k)
}

/// Finds the file's first record with a bounded walk of the search tree and
/// decodes it: a corrupt tree or record fails here, and a file with none of
/// our fields is rejected.
fn probe(
    path: &Path,
    reader: &Reader<Vec<u8>>,
    database_type: &str,
    first: Option<IpAddr>,
) -> Result<DbKind, GeoError> {
    let corrupt = |reason: String| GeoError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let Some(ip) = first else {
        return Err(GeoError::Unknown {
            path: path.to_owned(),
            database_type: database_type.to_owned(),
        });
    };
    let record = reader
        .lookup(ip)
        .and_then(|found| found.decode::<Record<'_>>())
        .map_err(|e| corrupt(e.to_string()))?
        .unwrap_or_default();
    if !record.has_any_field() {
        return Err(GeoError::Unknown {
            path: path.to_owned(),
            database_type: database_type.to_owned(),
        });
    }
    Ok(
        if record.country_code.is_some() && record.country.is_none() {
            DbKind::Flat
        } else if let Some(kind) = kind_from_type(database_type) {
            kind
        } else if record.autonomous_system_number.is_some() {
            DbKind::Asn
        } else {
            DbKind::Country
        },
    )
}

/// Walks the search tree (depth first, bounded) to the first network that
/// has a record, checking node and pointer ranges on the way.
fn first_record_ip(bytes: &[u8], meta: &maxminddb::Metadata) -> Result<Option<IpAddr>, String> {
    let record_size = meta.record_size;
    if ![24, 28, 32].contains(&record_size) {
        return Err(format!("record size {record_size} is not 24, 28 or 32"));
    }
    let node_bytes = usize::from(record_size) * 2 / 8;
    let nodes = meta.node_count as usize;
    let tree = nodes
        .checked_mul(node_bytes)
        .ok_or("node count overflows")?;
    if tree + 16 > bytes.len() {
        return Err(format!("its {nodes} nodes do not fit in the file"));
    }
    let bits: u32 = if meta.ip_version == 6 { 128 } else { 32 };
    let record = |node: usize, right: bool| -> usize {
        let b = &bytes[node * node_bytes..(node + 1) * node_bytes];
        let be = |s: &[u8]| s.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        match (record_size, right) {
            (24, false) => be(&b[0..3]),
            (24, true) => be(&b[3..6]),
            (28, false) => (usize::from(b[3] & 0xf0) << 20) | be(&b[0..3]),
            (28, true) => (usize::from(b[3] & 0x0f) << 24) | be(&b[4..7]),
            (_, false) => be(&b[0..4]),
            (_, true) => be(&b[4..8]),
        }
    };
    let data_len = bytes.len() - tree - 16;
    let mut stack = vec![(0usize, 0u32, 0u128)];
    let mut visited = 0usize;
    while let Some((node, depth, prefix)) = stack.pop() {
        visited += 1;
        if visited > MAX_PROBE_NODES {
            return Err("the search tree does not end (too many nodes visited)".into());
        }
        for right in [false, true] {
            let value = record(node, right);
            let here = prefix | (u128::from(right) << (127 - depth));
            if value < nodes {
                if depth + 1 >= bits {
                    return Err("the search tree is deeper than an address".into());
                }
                stack.push((value, depth + 1, here));
            } else if value > nodes {
                if value - nodes - 16 >= data_len {
                    return Err("a record pointer points outside the data section".into());
                }
                return Ok(Some(if bits == 32 {
                    IpAddr::V4(std::net::Ipv4Addr::from((here >> 96) as u32))
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::from(here))
                }));
            }
        }
    }
    Ok(None)
}

/// Every configured database, consulted in the order given.
#[derive(Debug, Default)]
pub struct Geo {
    dbs: Vec<GeoDb>,
}

impl Geo {
    pub fn open(paths: &[PathBuf]) -> Result<Self, GeoError> {
        let dbs = paths
            .iter()
            .map(|p| GeoDb::open(p))
            .collect::<Result<_, _>>()?;
        Ok(Self { dbs })
    }

    pub fn databases(&self) -> &[GeoDb] {
        &self.dbs
    }

    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let mut info = GeoInfo::default();
        for db in &self.dbs {
            db.fill(ip, &mut info);
        }
        info
    }
}

/// Origin type (spec §3) from MaxMind's user type, else connection type.
///
/// | MaxMind | type |
/// |---|---|
/// | user_type business, government, military | business |
/// | user_type college, school, library | education |
/// | user_type hosting, content_delivery_network, search_engine_spider, consumer_privacy | hosting |
/// | user_type residential, cellular, dialup, cafe, traveler, router | isp |
/// | connection_type Corporate | business |
/// | connection_type Cable/DSL, Cellular, Satellite, Dialup | isp |
pub fn origin_type(user_type: Option<&str>, connection_type: Option<&str>) -> Option<&'static str> {
    let by_user = user_type.and_then(|u| match u {
        "business" | "government" | "military" => Some("business"),
        "college" | "school" | "library" => Some("education"),
        "hosting" | "content_delivery_network" | "search_engine_spider" | "consumer_privacy" => {
            Some("hosting")
        }
        "residential" | "cellular" | "dialup" | "cafe" | "traveler" | "router" => Some("isp"),
        _ => None,
    });
    by_user.or_else(|| {
        connection_type.and_then(|c| match c {
            "Corporate" => Some("business"),
            "Cable/DSL" | "Cellular" | "Satellite" | "Dialup" => Some("isp"),
            _ => None,
        })
    })
}

#[cfg(test)]
#[path = "geo_tests.rs"]
pub(crate) mod tests;
