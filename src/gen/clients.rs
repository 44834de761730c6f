//! The clients of generated traffic: real User-Agent strings with how each
//! client talks to a registry, and client IPs (v4 and v6; some in real cloud
//! provider ranges, some in the networks of MaxMind's test databases so that
//! enrichment has something to find).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::rng::{mix_all, Rng};

/// How a client requests a manifest (spec §2, "what real clients send").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// docker, containerd, nerdctl, buildkit: HEAD the tag, then GET the
    /// digest and the platform manifest; stop after the HEAD when up to date.
    HeadFirst,
    /// containers/image (podman, skopeo, cri-o), go-containerregistry,
    /// kaniko: GET by tag, then the platform manifest.
    GetFirst,
    /// Inspection tools and scripts: one GET by tag or digest.
    SingleGet,
    /// Update checkers: HEAD by tag only.
    VersionBot,
}

#[derive(Debug)]
pub struct ClientKind {
    pub user_agent: &'static str,
    pub behaviour: Behaviour,
    pub weight: u32,
}

/// Weighted by how often each shows up at a public registry.
pub const CLIENTS: &[ClientKind] = &[
    ClientKind { user_agent: "docker/27.3.1 go/go1.22.7 git-commit/41ca978 kernel/6.8.0-48-generic os/linux arch/amd64 UpstreamClient(Docker-Client/27.3.1 \\(linux\\))", behaviour: Behaviour::HeadFirst, weight: 20 },
    ClientKind { user_agent: "docker/26.1.4 go/go1.21.11 git-commit/de5c9cf kernel/5.15.0-1064-azure os/linux arch/amd64 UpstreamClient(Docker-Client/26.1.4 \\(linux\\))", behaviour: Behaviour::HeadFirst, weight: 10 },
    ClientKind { user_agent: "docker/27.2.0 go/go1.21.13 git-commit/3ab5c7d kernel/6.10.4-linuxkit os/linux arch/arm64 UpstreamClient(Docker-Client/27.2.0 \\(darwin\\))", behaviour: Behaviour::HeadFirst, weight: 8 },
    ClientKind { user_agent: "docker/27.3.1 go/go1.22.7 git-commit/41ca978 kernel/6.8.0-1016-aws os/linux arch/amd64 UpstreamClient(buildx/v0.17.1)", behaviour: Behaviour::HeadFirst, weight: 4 },
    ClientKind { user_agent: "docker/27.3.1 go/go1.22.7 git-commit/41ca978 kernel/6.8.0-48-generic os/linux arch/amd64 UpstreamClient(compose/v2.29.7)", behaviour: Behaviour::HeadFirst, weight: 3 },
    ClientKind { user_agent: "containerd/1.7.22", behaviour: Behaviour::HeadFirst, weight: 16 },
    ClientKind { user_agent: "containerd/v2.0.0", behaviour: Behaviour::HeadFirst, weight: 5 },
    ClientKind { user_agent: "buildkit/v0.16.0", behaviour: Behaviour::HeadFirst, weight: 5 },
    ClientKind { user_agent: "nerdctl/1.7.7", behaviour: Behaviour::HeadFirst, weight: 1 },
    ClientKind { user_agent: "containers/5.32.2 (github.com/containers/image)", behaviour: Behaviour::GetFirst, weight: 6 },
    ClientKind { user_agent: "cri-o/1.31.1 go/go1.22.5 os/linux arch/amd64", behaviour: Behaviour::GetFirst, weight: 3 },
    ClientKind { user_agent: "skopeo/1.16.1", behaviour: Behaviour::SingleGet, weight: 2 },
    ClientKind { user_agent: "kaniko/v1.23.2", behaviour: Behaviour::GetFirst, weight: 2 },
    ClientKind { user_agent: "crane/v0.20.2 go-containerregistry/v0.20.2", behaviour: Behaviour::GetFirst, weight: 2 },
    ClientKind { user_agent: "go-containerregistry/v0.20.2", behaviour: Behaviour::GetFirst, weight: 1 },
    ClientKind { user_agent: "ko/v0.16.0 go-containerregistry/v0.20.2", behaviour: Behaviour::GetFirst, weight: 1 },
    ClientKind { user_agent: "oras/1.2.0", behaviour: Behaviour::SingleGet, weight: 1 },
    ClientKind { user_agent: "regclient/v0.7.1", behaviour: Behaviour::SingleGet, weight: 1 },
    ClientKind { user_agent: "Helm/3.16.2", behaviour: Behaviour::SingleGet, weight: 1 },
    ClientKind { user_agent: "trivy/0.56.2", behaviour: Behaviour::SingleGet, weight: 2 },
    ClientKind { user_agent: "syft/1.14.0", behaviour: Behaviour::SingleGet, weight: 1 },
    ClientKind { user_agent: "Go-http-client/1.1", behaviour: Behaviour::SingleGet, weight: 3 },
    ClientKind { user_agent: "curl/8.5.0", behaviour: Behaviour::SingleGet, weight: 1 },
    ClientKind { user_agent: "python-requests/2.32.3", behaviour: Behaviour::SingleGet, weight: 1 },
    ClientKind { user_agent: "Renovate/38.142.5 (https://github.com/renovatebot/renovate)", behaviour: Behaviour::VersionBot, weight: 2 },
    ClientKind { user_agent: "diun/4.28.0 go/1.22.7 Linux", behaviour: Behaviour::VersionBot, weight: 1 },
    ClientKind { user_agent: "Watchtower (Docker)", behaviour: Behaviour::VersionBot, weight: 2 },
];

/// Real prefixes from the providers' published range files (July 2025).
const CLOUD_V4: &[([u8; 4], u8)] = &[
    ([3, 5, 140, 0], 22),    // aws
    ([15, 190, 244, 0], 22), // aws
    ([34, 35, 0, 0], 16),    // google
    ([34, 1, 208, 0], 20),   // google
    ([4, 145, 74, 52], 30),  // azure
    ([129, 80, 0, 0], 16),   // oracle
    ([5, 101, 96, 0], 21),   // digitalocean
    ([24, 144, 64, 0], 22),  // digitalocean
    ([173, 245, 48, 0], 20), // cloudflare
];
const CLOUD_V6: &[([u16; 3], u8)] = &[
    ([0x2600, 0x1f69, 0x7400], 40), // aws
    ([0x2600, 0x3c00, 0], 32),      // linode
    ([0x2606, 0x4700, 0], 32),      // cloudflare
];
/// Networks present in MaxMind's test databases (GeoIP2/GeoLite2 *-Test).
const GEO_TEST_V4: &[([u8; 4], u8)] = &[
    ([81, 2, 69, 142], 31),
    ([89, 160, 20, 112], 28),
    ([216, 160, 83, 56], 29),
    ([175, 16, 199, 0], 24),
    ([2, 125, 160, 216], 29),
    ([1, 128, 0, 0], 11),
    ([149, 101, 100, 0], 28),
];
const GEO_TEST_V6: &[([u16; 3], u8)] = &[([0x2001, 0x218, 0], 32), ([0x2001, 0x480, 0], 32)];
/// First octets of typical ISP allocations for everyone else.
const ISP_V4_FIRST: &[u8] = &[
    24, 31, 46, 62, 71, 77, 81, 86, 92, 98, 109, 151, 176, 185, 188, 212, 217,
];

/// A client: one address and one user agent, derived from its id.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub ip: IpAddr,
    pub kind: &'static ClientKind,
}

/// Derives clients from ids without storing them, so a pool of any size
/// costs no memory.
#[derive(Debug, Clone)]
pub struct ClientPool {
    seed: u64,
    total_weight: u32,
}

impl ClientPool {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            total_weight: CLIENTS.iter().map(|c| c.weight).sum(),
        }
    }

    pub fn client(&self, id: u64) -> Client {
        let mut rng = Rng::new(mix_all(&[self.seed, 0x00c1_1e47, id]));
        let mut w = rng.below(u64::from(self.total_weight)) as u32;
        let kind = CLIENTS
            .iter()
            .find(|c| {
                if w < c.weight {
                    true
                } else {
                    w -= c.weight;
                    false
                }
            })
            .unwrap_or(&CLIENTS[0]);
        Client {
            ip: address(&mut rng),
            kind,
        }
    }
}

fn address(rng: &mut Rng) -> IpAddr {
    let roll = rng.unit();
    let v6 = rng.chance(0.25);
    if roll < 0.3 {
        return if v6 {
            let net = *rng.pick(CLOUD_V6);
            in_v6(rng, net)
        } else {
            let net = *rng.pick(CLOUD_V4);
            in_v4(rng, net)
        };
    }
    if roll < 0.55 {
        return if v6 {
            let net = *rng.pick(GEO_TEST_V6);
            in_v6(rng, net)
        } else {
            let net = *rng.pick(GEO_TEST_V4);
            in_v4(rng, net)
        };
    }
    if v6 {
        return in_v6(rng, ([0x2a01, 0x0e0a, 0], 32));
    }
    let first = *rng.pick(ISP_V4_FIRST);
    let rest = rng.next_u64();
    IpAddr::V4(Ipv4Addr::new(
        first,
        (rest >> 8) as u8,
        (rest >> 16) as u8,
        (rest >> 24) as u8 | 1,
    ))
}

fn in_v4(rng: &mut Rng, (base, len): ([u8; 4], u8)) -> IpAddr {
    let host_bits = 32 - u32::from(len);
    let mask = if host_bits == 32 {
        u32::MAX
    } else {
        (1u32 << host_bits) - 1
    };
    let host = (rng.next_u64() as u32) & mask;
    IpAddr::V4(Ipv4Addr::from(u32::from_be_bytes(base) | host))
}

fn in_v6(rng: &mut Rng, (base, len): ([u16; 3], u8)) -> IpAddr {
    let prefix =
        (u128::from(base[0]) << 112) | (u128::from(base[1]) << 96) | (u128::from(base[2]) << 80);
    let host_bits = 128 - u32::from(len);
    let host = ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()))
        & ((1u128 << host_bits) - 1);
    IpAddr::V6(Ipv6Addr::from(prefix | host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_stable_and_varied() {
        let pool = ClientPool::new(42);
        let a = pool.client(7);
        let b = pool.client(7);
        assert_eq!(a.ip, b.ip);
        assert_eq!(a.kind.user_agent, b.kind.user_agent);
        let ips: std::collections::HashSet<_> = (0..500).map(|i| pool.client(i).ip).collect();
        assert!(ips.len() > 450);
        assert!(ips.iter().any(IpAddr::is_ipv6) && ips.iter().any(IpAddr::is_ipv4));
        for ip in ips {
            assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
        }
    }
}
