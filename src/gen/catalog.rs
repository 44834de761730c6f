//! The images of generated traffic: namespaces and repositories with
//! Zipf-like popularity, tags, and digests (multi-arch images have an index
//! digest plus one per platform). Everything derives from ids and the seed,
//! so the catalogue costs no memory whatever its size.

use super::rng::{mix, mix_all, Rng, Zipf};

const NAMESPACES: usize = 60;
const MAX_REPOS: usize = 12;
const MAX_TAGS: usize = 8;

const NS_WORDS: &[&str] = &[
    "bitnami",
    "grafana",
    "prom",
    "acme",
    "hashicorp",
    "elastic",
    "jetstack",
    "cilium",
    "istio",
    "openpolicyagent",
    "fluent",
    "minio",
    "rancher",
    "confluentinc",
    "jaegertracing",
    "kong",
    "linuxserver",
    "nvidia",
    "envoyproxy",
    "curlimages",
    "apache",
    "mongo-org",
    "portainer",
    "coredns",
    "argoproj",
    "tektoncd",
    "dexidp",
    "vaultwarden",
    "gitea",
    "sonatype",
];
const OFFICIAL: &[&str] = &[
    "nginx", "redis", "postgres", "alpine", "ubuntu", "python", "node", "golang", "busybox",
    "mysql", "httpd", "traefik",
];
const REPO_WORDS: &[&str] = &[
    "server",
    "agent",
    "operator",
    "controller",
    "api",
    "web",
    "worker",
    "proxy",
    "exporter",
    "cli",
    "gateway",
    "scheduler",
    "collector",
    "dashboard",
    "db",
    "cache",
    "sidecar",
    "runner",
];

/// One tag of one repository, with its digests.
#[derive(Debug, Clone)]
pub struct Image {
    pub namespace: String,
    pub repository: String,
    pub owner: Option<String>,
    pub tag: String,
    /// The digest a request by tag resolves to: the index for multi-arch
    /// images, the manifest otherwise.
    pub top_digest: String,
    /// Per-platform manifest digests; empty for single-arch images.
    pub platform_digests: Vec<String>,
    /// A layer blob (for blob requests that must not count as pulls).
    pub blob_digest: String,
}

impl Image {
    /// A repository path `ns/repo`, as the distribution registry writes it.
    pub fn path(&self) -> String {
        format!("{}/{}", self.namespace, self.repository)
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    seed: u64,
    namespaces: Zipf,
    repos: Vec<Zipf>,
    tags: Zipf,
}

impl Catalog {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            namespaces: Zipf::new(NAMESPACES, 1.1),
            repos: (1..=MAX_REPOS).map(|n| Zipf::new(n, 1.0)).collect(),
            tags: Zipf::new(MAX_TAGS, 1.2),
        }
    }

    /// Picks a popular-weighted image.
    pub fn pick(&self, rng: &mut Rng) -> Image {
        let ns = self.namespaces.sample(rng);
        let repo_count = self.repo_count(ns);
        let repo = self.repos[repo_count - 1].sample(rng);
        let tag = self.tags.sample(rng);
        self.image(ns, repo, tag)
    }

    fn repo_count(&self, ns: usize) -> usize {
        if ns == 0 {
            OFFICIAL.len()
        } else {
            1 + (mix_all(&[self.seed, ns as u64, 1]) % MAX_REPOS as u64) as usize
        }
    }

    fn image(&self, ns: usize, repo: usize, tag: usize) -> Image {
        let (namespace, repository) = if ns == 0 {
            (
                "library".to_owned(),
                OFFICIAL[repo % OFFICIAL.len()].to_owned(),
            )
        } else {
            let word = NS_WORDS[(ns - 1) % NS_WORDS.len()];
            let namespace = if ns > NS_WORDS.len() {
                format!("{word}{ns}")
            } else {
                word.to_owned()
            };
            let offset = (mix_all(&[self.seed, ns as u64, 2]) % REPO_WORDS.len() as u64) as usize;
            (
                namespace,
                REPO_WORDS[(offset + repo) % REPO_WORDS.len()].to_owned(),
            )
        };
        let owner = (!mix_all(&[self.seed, ns as u64, 3]).is_multiple_of(3))
            .then(|| format!("{} Org", capitalised(&namespace)));
        let id = [self.seed, ns as u64, repo as u64, tag as u64];
        let repo_hash = mix_all(&[self.seed, ns as u64, repo as u64, 4]);
        let platforms = if repo_hash % 10 < 7 {
            2 + (repo_hash >> 8) % 3
        } else {
            0
        };
        Image {
            tag: tag_name(tag, repo_hash),
            top_digest: digest(&id, 0),
            platform_digests: (1..=platforms).map(|p| digest(&id, p)).collect(),
            blob_digest: digest(&id, 100),
            namespace,
            repository,
            owner,
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn tag_name(k: usize, h: u64) -> String {
    let major = 1 + h % 9;
    let minor = (h >> 4) % 30;
    let patch = (h >> 12) % 12;
    match k {
        0 => "latest".to_owned(),
        1 => format!("{major}"),
        2 => format!("{major}.{minor}"),
        3 => format!("{major}.{minor}.{patch}"),
        4 => format!("{major}.{minor}-alpine"),
        5 => format!("{major}.{}", minor + 1),
        6 => "stable".to_owned(),
        _ => format!("{major}.{minor}.{patch}-rc.{k}"),
    }
}

/// A stable `sha256:` digest for an image id and a part number.
pub fn digest(id: &[u64], part: u64) -> String {
    let base = mix_all(id) ^ mix(part);
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256:");
    for i in 0..4u64 {
        hex.push_str(&format!("{:016x}", mix(base.wrapping_add(i))));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::is_digest;

    #[test]
    fn images_are_deterministic_and_valid() {
        let cat = Catalog::new(9);
        let mut r1 = Rng::new(1);
        let mut r2 = Rng::new(1);
        for _ in 0..200 {
            let a = cat.pick(&mut r1);
            let b = cat.pick(&mut r2);
            assert_eq!(a.top_digest, b.top_digest);
            assert!(is_digest(&a.top_digest));
            assert!(a
                .platform_digests
                .iter()
                .all(|d| is_digest(d) && *d != a.top_digest));
            assert!(!a.namespace.is_empty() && !a.repository.contains('/'));
        }
    }

    #[test]
    fn some_images_are_multi_arch_and_some_are_not() {
        let cat = Catalog::new(5);
        let mut rng = Rng::new(2);
        let images: Vec<_> = (0..500).map(|_| cat.pick(&mut rng)).collect();
        assert!(images.iter().any(|i| i.platform_digests.is_empty()));
        assert!(images.iter().any(|i| i.platform_digests.len() >= 2));
        assert!(images.iter().filter(|i| i.namespace == "library").count() > 50);
    }
}
