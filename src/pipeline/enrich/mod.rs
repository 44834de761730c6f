//! Enrich stage: [`Action`] → [`EnrichedAction`] (spec §3).
//!
//! Replaces the client IP with a keyed hash (the IP never reaches the table,
//! an export or a log line) and adds the client's tool and version. Lookups
//! are cached per user agent: a registry sees few distinct user agents and
//! very many requests.
//!
//! Geolocation, cloud provider and origin type need data files (MaxMind DBs,
//! provider range files); they are not implemented yet and those columns
//! stay empty (see README, "Not finished").

pub mod useragent;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::event::{Action, EnrichedAction, Enrichment};

/// Well-known key used only with `--insecure-default-key` (demos, tests).
pub const INSECURE_DEFAULT_KEY: &str = "pullstats-insecure-default-key-do-not-use";
/// User agents kept in the cache; beyond this the cache is cleared (bounded
/// memory against hostile input).
const MAX_CACHED_AGENTS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error("the IP hash key is empty")]
    EmptyKey,
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
}

/// Applies every enrichment to an action.
#[derive(Debug)]
pub struct ActionEnricher {
    hasher: IpHasher,
    agents: HashMap<Arc<str>, CachedClient>,
}

impl ActionEnricher {
    pub fn new(hasher: IpHasher) -> Self {
        Self {
            hasher,
            agents: HashMap::new(),
        }
    }

    pub fn enrich(&mut self, action: Action) -> EnrichedAction {
        let client = self.client(&action.user_agent);
        EnrichedAction {
            ip_hash: self.hasher.hash(action.ip),
            enrichment: Enrichment {
                user_agent_tool: Some(client.tool),
                user_agent_version: client.version,
                os: client.os,
                arch: client.arch,
                ..Enrichment::default()
            },
            action,
        }
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
}
