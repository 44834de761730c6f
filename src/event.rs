//! Domain types shared by every stage: the decoded input ([`RequestEvent`]) and
//! the classified, enriched output row ([`Action`]).
//!
//! Input: registry request events (spec §1) after decoding. Output: one
//! [`Action`] per pull / version check (spec §2), enriched per spec §3.
//! Strings that repeat on every row (namespace, repository, user agent) are
//! `Arc<str>` so a session and the action it emits share them without copies.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Event time in microseconds since the Unix epoch, UTC. Delta's `timestamp`
/// type has microsecond precision, so finer input (the distribution registry
/// sends nanoseconds) is truncated once, at decode time.
pub type Micros = i64;

/// HTTP method of a request. Only HEAD and GET can be pulls; `Other` (PUT,
/// DELETE, …) is decoded so that it can be counted, then skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Method {
    // Declaration order is the tie-break for equal timestamps: a HEAD that
    // resolves a tag precedes the GETs it causes.
    Head,
    Get,
    Other,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Head => "HEAD",
            Method::Get => "GET",
            Method::Other => "OTHER",
        }
    }
}

/// Whether a request (and the row it becomes) is a manifest request that can
/// form an action, or something that is only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RequestKind {
    /// A manifest request (index or image manifest).
    Manifest,
    /// A layer or config blob; never a pull (spec §1).
    Blob,
    /// A notification for something other than a pull (push, mount, delete).
    NotPull,
}

/// One request a registry served, as decoded from either input encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEvent {
    pub timestamp: Micros,
    pub method: Method,
    pub namespace: Arc<str>,
    pub repository: Arc<str>,
    /// What the client asked for: a tag or `sha256:<hex>`.
    pub reference: Arc<str>,
    /// The digest the registry answered with; filled from `reference` for
    /// requests by digest. Empty only for non-2xx requests.
    pub digest: Arc<str>,
    pub status: u16,
    /// The client IP, port stripped (spec §2: group by IP, never IP:port).
    pub ip: IpAddr,
    pub user_agent: Arc<str>,
    pub owner: Option<Arc<str>>,
    pub kind: RequestKind,
    /// The event's id, when the input carries one (registry notifications
    /// do): a repeated id is a resent event (see [`crate::pipeline::dedup`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Box<str>>,
}

impl RequestEvent {
    /// True when the request names a digest rather than a tag.
    pub fn by_digest(&self) -> bool {
        is_digest(&self.reference)
    }

    /// The event as one flat JSON line of spec §1 (the dead-letter payload of
    /// an event refused after decoding). It decodes back to the same event,
    /// except a method other than GET / HEAD (written `OTHER`) and a non-pull
    /// notification, which have no flat spelling.
    pub fn to_flat_json(&self) -> String {
        #[derive(Serialize)]
        struct Flat<'a> {
            timestamp: String,
            method: &'a str,
            namespace: &'a str,
            repository: &'a str,
            reference: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            digest: &'a str,
            status: u16,
            remote_addr: String,
            user_agent: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            owner: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            media_type: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
        }
        let flat = Flat {
            timestamp: crate::pipeline::future::format_micros(self.timestamp),
            method: self.method.as_str(),
            namespace: &self.namespace,
            repository: &self.repository,
            reference: &self.reference,
            digest: &self.digest,
            status: self.status,
            remote_addr: self.ip.to_string(),
            user_agent: &self.user_agent,
            owner: self.owner.as_deref(),
            media_type: (self.kind == RequestKind::Blob)
                .then_some("application/vnd.oci.image.layer.v1.tar+gzip"),
            id: self.id.as_deref(),
        };
        serde_json::to_string(&flat).unwrap_or_default()
    }

    /// True when this request can take part in an action (spec §2: only 2xx
    /// manifest requests).
    pub fn forms_action(&self) -> bool {
        self.kind == RequestKind::Manifest
            && self.method != Method::Other
            && (200..300).contains(&self.status)
    }
}

/// `algorithm:hex` as in the OCI image spec; we accept any registered
/// algorithm name followed by a lowercase hex encoded value.
pub fn is_digest(reference: &str) -> bool {
    match reference.split_once(':') {
        Some((alg, hex)) => {
            !alg.is_empty()
                && alg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                && hex.len() >= 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        None => false,
    }
}

/// What a session of requests amounts to (spec §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ActionKind {
    PullByTag,
    PullByDigest,
    VersionCheck,
}

impl ActionKind {
    pub const ALL: [ActionKind; 3] = [
        ActionKind::PullByTag,
        ActionKind::PullByDigest,
        ActionKind::VersionCheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::PullByTag => "pull_by_tag",
            ActionKind::PullByDigest => "pull_by_digest",
            ActionKind::VersionCheck => "version_check",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Enrichment of one action (spec §3). Every field is optional: without the
/// data files a field stays empty rather than wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enrichment {
    pub country: Option<Arc<str>>,
    pub host: Option<Arc<str>>,
    pub origin_type: Option<Arc<str>>,
    pub domain: Option<Arc<str>>,
    pub user_agent_tool: Option<Arc<str>>,
    pub user_agent_version: Option<Arc<str>>,
    pub os: Option<Arc<str>>,
    pub arch: Option<Arc<str>>,
    pub user_agent_product: Option<Arc<str>>,
}

/// One pull action: the row the table stores. Carries the IP only until
/// enrichment replaces it with `ip_hash`; the writer never sees the IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    /// Timestamp, method and reference of the request that started the action.
    pub timestamp: Micros,
    pub method: Method,
    pub namespace: Arc<str>,
    pub repository: Arc<str>,
    pub reference: Arc<str>,
    /// Only for actions that started by tag.
    pub tag: Option<Arc<str>>,
    /// The digest the starting request resolved to.
    pub digest: Arc<str>,
    pub owner: Option<Arc<str>>,
    pub ip: IpAddr,
    pub user_agent: Arc<str>,
    /// How many requests the action grouped.
    pub requests: u32,
    /// True when the starting request arrived after the lateness bound and was
    /// counted on its own.
    pub late: bool,
}

/// An action ready for the table: the IP is gone, its keyed hash stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichedAction {
    pub action: Action,
    pub ip_hash: i64,
    pub enrichment: Enrichment,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_recognised() {
        let hex = "a".repeat(64);
        assert!(is_digest(&format!("sha256:{hex}")));
        assert!(is_digest(&format!("sha512:{}", "0".repeat(128))));
        assert!(!is_digest("latest"));
        assert!(!is_digest("1.27"));
        assert!(!is_digest("sha256:XYZ"));
        assert!(!is_digest(&format!("SHA256:{hex}")));
        assert!(!is_digest(&format!(":{hex}")));
    }
}
