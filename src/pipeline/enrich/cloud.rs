//! Cloud provider enrichment (`host`): client IP → provider, from the
//! providers' own published IP-range files, longest prefix first, IPv4 and
//! IPv6.
//!
//! Files are recognised by content, whatever they are named: AWS
//! `ip-ranges.json`, Google `cloud.json` / `goog.json`, Azure Service Tags,
//! Oracle `public_ip_ranges.json` (JSON, told apart by their keys), RFC 8805
//! geofeeds (DigitalOcean, Linode) and plain CIDR lists (Cloudflare). The
//! last two do not name their provider: a file is attributed to the provider
//! whose anchor prefixes (in `cloud_providers.tsv`) its ranges overlap most,
//! or to the one named by a `# provider: NAME` comment line. The same table
//! maps ASNs to providers, the fallback for IPs in no published range.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

const PROVIDERS_TSV: &str = include_str!("cloud_providers.tsv");

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("cannot read cloud ranges from {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a cloud IP-range file pullstats knows ({reason})")]
    Unrecognised { path: PathBuf, reason: String },
    #[error("{path}:{line}: `{text}` is not an IP prefix")]
    BadPrefix {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("no cloud IP-range files in {path}")]
    Empty { path: PathBuf },
}

/// A provider: the `host` value and a domain for `domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub host: Arc<str>,
    pub domain: Arc<str>,
}

/// An IP prefix: network bits in the high bits of a u128 (IPv4 as mapped
/// IPv6), and the prefix length in that 128-bit space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    bits: u128,
    len: u8,
}

impl Prefix {
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, len) = match text.trim().split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (text.trim(), None),
        };
        let (bits, len) = match addr.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => {
                let len = len.unwrap_or(32);
                if len > 32 {
                    return None;
                }
                (u128::from(v4.to_ipv6_mapped()), 96 + len)
            }
            IpAddr::V6(v6) => {
                let len = len.unwrap_or(128);
                if len > 128 {
                    return None;
                }
                (u128::from(v6), len)
            }
        };
        Some(Self {
            bits: bits & mask(len),
            len,
        })
    }

    fn of_ip(ip: IpAddr) -> u128 {
        match ip.to_canonical() {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    fn overlaps(&self, other: &Prefix) -> bool {
        let len = self.len.min(other.len);
        self.bits & mask(len) == other.bits & mask(len)
    }
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// One loaded file, for start-up logs and `info`.
#[derive(Debug, Clone)]
pub struct RangeSource {
    pub path: PathBuf,
    pub format: &'static str,
    pub host: Arc<str>,
    pub prefixes: usize,
}

#[derive(Debug, Clone)]
struct KnownProvider {
    provider: Provider,
    anchors: Vec<Prefix>,
}

/// The provider table and the loaded ranges.
#[derive(Debug, Clone)]
pub struct CloudRanges {
    known: Vec<KnownProvider>,
    by_asn: HashMap<u32, usize>,
    /// Per prefix length (descending), network bits → provider index.
    by_len: Vec<(u8, HashMap<u128, usize>)>,
    extra: Vec<Provider>,
    sources: Vec<RangeSource>,
}

impl CloudRanges {
    /// The built-in provider table with no ranges loaded (ASN fallback only).
    pub fn builtin() -> Self {
        let mut known = Vec::new();
        let mut by_asn = HashMap::new();
        for line in PROVIDERS_TSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split('\t').collect();
            let (host, domain) = (cols[0], cols.get(1).copied().unwrap_or(""));
            for asn in cols.get(2).copied().unwrap_or("").split_whitespace() {
                if let Ok(n) = asn.parse::<u32>() {
                    by_asn.entry(n).or_insert(known.len());
                }
            }
            let anchors = cols
                .get(3)
                .copied()
                .unwrap_or("")
                .split_whitespace()
                .filter_map(Prefix::parse)
                .collect();
            known.push(KnownProvider {
                provider: Provider {
                    host: Arc::from(host),
                    domain: Arc::from(domain),
                },
                anchors,
            });
        }
        Self {
            known,
            by_asn,
            by_len: Vec::new(),
            extra: Vec::new(),
            sources: Vec::new(),
        }
    }

    /// Loads every range file in `dir` (hidden files are skipped).
    pub fn load_dir(dir: &Path) -> Result<Self, CloudError> {
        let io = |source| CloudError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(CloudError::Empty {
                path: dir.to_owned(),
            });
        }
        let mut ranges = Self::builtin();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| CloudError::Io {
                path: path.clone(),
                source,
            })?;
            ranges.add_file(&path, &text)?;
        }
        Ok(ranges)
    }

    /// Parses one file's text and adds its prefixes.
    pub fn add_file(&mut self, path: &Path, text: &str) -> Result<(), CloudError> {
        let (format, host, prefixes) = if text.trim_start().starts_with('{') {
            parse_json(path, text)?
        } else {
            let (format, prefixes, named) = parse_lines(path, text)?;
            let host = match named {
                Some(h) => h,
                None => self.recognise(path, &prefixes)?,
            };
            (format, host, prefixes)
        };
        let index = self.provider_index(&host);
        let mut lens: HashMap<u8, HashMap<u128, usize>> = self.by_len.drain(..).collect();
        for p in &prefixes {
            lens.entry(p.len).or_default().insert(p.bits, index);
        }
        self.by_len = lens.into_iter().collect();
        self.by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        self.sources.push(RangeSource {
            path: path.to_owned(),
            format,
            host: self.provider(index).host.clone(),
            prefixes: prefixes.len(),
        });
        Ok(())
    }

    fn recognise(&self, path: &Path, prefixes: &[Prefix]) -> Result<String, CloudError> {
        let best = self
            .known
            .iter()
            .map(|k| {
                let hits = prefixes
                    .iter()
                    .filter(|p| k.anchors.iter().any(|a| a.overlaps(p)))
                    .count();
                (hits, &k.provider.host)
            })
            .max_by_key(|(hits, _)| *hits);
        match best {
            Some((hits, host)) if hits > 0 => Ok(host.to_string()),
            _ => Err(CloudError::Unrecognised {
                path: path.to_owned(),
                reason: "its ranges match no known provider; add a `# provider: NAME` line".into(),
            }),
        }
    }

    fn provider_index(&mut self, host: &str) -> usize {
        if let Some(i) = self.known.iter().position(|k| &*k.provider.host == host) {
            return i;
        }
        if let Some(i) = self.extra.iter().position(|p| &*p.host == host) {
            return self.known.len() + i;
        }
        self.extra.push(Provider {
            host: Arc::from(host),
            domain: Arc::from(""),
        });
        self.known.len() + self.extra.len() - 1
    }

    fn provider(&self, index: usize) -> &Provider {
        match self.known.get(index) {
            Some(k) => &k.provider,
            None => &self.extra[index - self.known.len()],
        }
    }

    /// The provider whose published ranges hold `ip` (longest prefix wins).
    pub fn lookup(&self, ip: IpAddr) -> Option<&Provider> {
        let bits = Prefix::of_ip(ip);
        self.by_len
            .iter()
            .find_map(|(len, nets)| nets.get(&(bits & mask(*len))))
            .map(|&i| self.provider(i))
    }

    /// The provider that operates an autonomous system.
    pub fn by_asn(&self, asn: u32) -> Option<&Provider> {
        self.by_asn.get(&asn).map(|&i| self.provider(i))
    }

    pub fn sources(&self) -> &[RangeSource] {
        &self.sources
    }
}

type Parsed = (&'static str, String, Vec<Prefix>);

fn parse_json(path: &Path, text: &str) -> Result<Parsed, CloudError> {
    let unrecognised = |reason: &str| CloudError::Unrecognised {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let doc: Value =
        serde_json::from_str(text).map_err(|e| unrecognised(&format!("invalid JSON: {e}")))?;
    let strings = |items: Option<&Value>, key: &str| -> Vec<String> {
        items
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.get(key)?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (format, host, texts): (&'static str, &str, Vec<String>) =
        if doc.get("ipv6_prefixes").is_some()
            || doc["prefixes"]
                .get(0)
                .is_some_and(|p| p.get("ip_prefix").is_some())
        {
            let mut t = strings(doc.get("prefixes"), "ip_prefix");
            t.extend(strings(doc.get("ipv6_prefixes"), "ipv6_prefix"));
            ("aws-ip-ranges", "aws", t)
        } else if doc["prefixes"]
            .get(0)
            .is_some_and(|p| p.get("ipv4Prefix").is_some() || p.get("ipv6Prefix").is_some())
        {
            let cloud = doc["prefixes"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p.get("service").is_some()));
            let mut t = strings(doc.get("prefixes"), "ipv4Prefix");
            t.extend(strings(doc.get("prefixes"), "ipv6Prefix"));
            if cloud {
                ("google-cloud-json", "gcp", t)
            } else {
                ("google-goog-json", "google", t)
            }
        } else if doc.get("values").and_then(Value::as_array).is_some()
            && doc.get("changeNumber").is_some()
        {
            let t = doc["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.pointer("/properties/addressPrefixes")?.as_array())
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect();
            ("azure-service-tags", "azure", t)
        } else if doc.get("regions").and_then(Value::as_array).is_some() {
            let t = doc["regions"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| strings(r.get("cidrs"), "cidr"))
                .collect();
            ("oracle-public-ip-ranges", "oracle", t)
        } else {
            return Err(unrecognised(
                "JSON without the keys of AWS, Google, Azure or Oracle range files",
            ));
        };
    let mut prefixes = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        prefixes.push(Prefix::parse(t).ok_or_else(|| CloudError::BadPrefix {
            path: path.to_owned(),
            line: i + 1,
            text: t.clone(),
        })?);
    }
    if prefixes.is_empty() {
        return Err(unrecognised("no prefixes in it"));
    }
    Ok((format, host.to_owned(), prefixes))
}

/// Geofeed CSV or one prefix per line. Returns the format, the prefixes and
/// the provider named by a `# provider: NAME` comment, if any.
fn parse_lines(
    path: &Path,
    text: &str,
) -> Result<(&'static str, Vec<Prefix>, Option<String>), CloudError> {
    let mut prefixes = Vec::new();
    let mut named = None;
    let mut csv = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(name) = comment.trim().strip_prefix("provider:") {
                named = Some(name.trim().to_ascii_lowercase());
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let first = match line.split_once(',') {
            Some((f, _)) => {
                csv = true;
                f
            }
            None => line,
        };
        prefixes.push(Prefix::parse(first).ok_or_else(|| CloudError::BadPrefix {
            path: path.to_owned(),
            line: i + 1,
            text: first.chars().take(60).collect(),
        })?);
    }
    if prefixes.is_empty() {
        return Err(CloudError::Unrecognised {
            path: path.to_owned(),
            reason: "no prefixes in it".into(),
        });
    }
    Ok((
        if csv { "geofeed-csv" } else { "cidr-list" },
        prefixes,
        named,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn testdata() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cloud-ranges")
    }

    #[test]
    fn prefixes_parse_and_match() {
        let p = Prefix::parse("10.1.0.0/16").expect("v4");
        assert!(p.overlaps(&Prefix::parse("10.1.2.0/24").expect("v4")));
        assert!(!p.overlaps(&Prefix::parse("10.2.0.0/16").expect("v4")));
        assert!(Prefix::parse("10.0.0.0/33").is_none());
        assert!(Prefix::parse("2001:db8::/129").is_none());
        assert!(Prefix::parse("nonsense").is_none());
        assert_eq!(
            Prefix::parse("10.1.2.3/16"),
            Some(p),
            "host bits are masked"
        );
    }

    #[test]
    fn every_published_format_is_recognised_by_content() {
        let ranges = CloudRanges::load_dir(&testdata()).expect("testdata loads");
        let mut seen: Vec<(String, &str)> = ranges
            .sources()
            .iter()
            .map(|s| (s.host.to_string(), s.format))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                ("aws".into(), "aws-ip-ranges"),
                ("azure".into(), "azure-service-tags"),
                ("cloudflare".into(), "cidr-list"),
                ("cloudflare".into(), "cidr-list"),
                ("digitalocean".into(), "geofeed-csv"),
                ("gcp".into(), "google-cloud-json"),
                ("linode".into(), "geofeed-csv"),
                ("oracle".into(), "oracle-public-ip-ranges"),
            ]
        );
    }

    #[test]
    fn lookups_use_the_longest_prefix_v4_and_v6() {
        let ranges = CloudRanges::load_dir(&testdata()).expect("testdata loads");
        let host = |s| ranges.lookup(ip(s)).map(|p| p.host.to_string());
        assert_eq!(host("3.5.140.7").as_deref(), Some("aws"));
        assert_eq!(host("2600:1f69:7400::1").as_deref(), Some("aws"));
        assert_eq!(host("34.35.1.2").as_deref(), Some("gcp"));
        assert_eq!(host("4.145.74.53").as_deref(), Some("azure"));
        assert_eq!(host("129.80.5.5").as_deref(), Some("oracle"));
        assert_eq!(host("5.101.100.1").as_deref(), Some("digitalocean"));
        assert_eq!(host("2600:3c00::99").as_deref(), Some("linode"));
        assert_eq!(host("173.245.49.1").as_deref(), Some("cloudflare"));
        assert_eq!(host("2606:4700::1").as_deref(), Some("cloudflare"));
        assert_eq!(host("::ffff:3.5.140.7").as_deref(), Some("aws"));
        assert_eq!(host("192.0.2.1"), None);
        assert_eq!(host("2001:db8::1"), None);
    }

    #[test]
    fn the_real_published_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/cloud-ranges");
        if !dir.is_dir() {
            return; // shared/ sits beside the checkout in CI and development
        }
        let ranges = CloudRanges::load_dir(&dir).expect("real files load");
        assert_eq!(ranges.sources().len(), 8);
        assert!(ranges.sources().iter().all(|s| s.prefixes > 0));
        assert_eq!(
            ranges.lookup(ip("104.16.1.1")).map(|p| &*p.host),
            Some("cloudflare")
        );
    }

    #[test]
    fn unknown_files_are_clear_errors() {
        let mut r = CloudRanges::builtin();
        let err = r
            .add_file(Path::new("x.json"), r#"{"hello": 1}"#)
            .expect_err("unknown json");
        assert!(err.to_string().contains("x.json"));
        let err = r
            .add_file(Path::new("y.txt"), "192.0.2.0/24\n")
            .expect_err("no provider");
        assert!(err.to_string().contains("provider"));
        r.add_file(Path::new("z.txt"), "# provider: acme-cloud\n192.0.2.0/24\n")
            .expect("named");
        assert_eq!(
            r.lookup(ip("192.0.2.9")).map(|p| &*p.host),
            Some("acme-cloud")
        );
        let err = r
            .add_file(Path::new("w.txt"), "# provider: x\nnot-a-prefix\n")
            .expect_err("bad line");
        assert!(err.to_string().contains("w.txt:2"));
    }

    #[test]
    fn asns_map_to_providers() {
        let r = CloudRanges::builtin();
        assert_eq!(r.by_asn(16509).map(|p| &*p.host), Some("aws"));
        assert_eq!(r.by_asn(14061).map(|p| &*p.host), Some("digitalocean"));
        assert_eq!(r.by_asn(3320), None);
    }
}
