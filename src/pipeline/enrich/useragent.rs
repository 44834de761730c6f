//! Client enrichment: User-Agent → `user_agent_tool`, `user_agent_version`,
//! `os`, `arch` (spec §3).
//!
//! Registry clients send `product/version` tokens (RFC 9110), the first one
//! naming the client. [`RULES`] maps that product to a tool name in one
//! readable table. Docker's engine UA also carries `os/… arch/…` and an
//! `UpstreamClient(…)` part naming the program that asked the engine
//! (the CLI, buildx, compose), which refines the tool.

/// First product token (case-insensitive) → tool name.
pub const RULES: &[(&str, &str)] = &[
    ("docker", "docker"),
    ("containerd", "containerd"),
    ("nerdctl", "nerdctl"),
    ("buildkit", "buildkit"),
    ("containers", "containers-image"),
    ("cri-o", "cri-o"),
    ("podman", "podman"),
    ("buildah", "buildah"),
    ("skopeo", "skopeo"),
    ("kaniko", "kaniko"),
    ("crane", "crane"),
    ("go-containerregistry", "go-containerregistry"),
    ("ko", "ko"),
    ("oras", "oras"),
    ("regclient", "regclient"),
    ("regctl", "regclient"),
    ("helm", "helm"),
    ("trivy", "trivy"),
    ("syft", "syft"),
    ("grype", "grype"),
    ("go-http-client", "go-http-client"),
    ("curl", "curl"),
    ("wget", "wget"),
    ("python-requests", "python-requests"),
    ("python-urllib", "python-urllib"),
    ("renovate", "renovate"),
    ("diun", "diun"),
    ("watchtower", "watchtower"),
    ("dependabot", "dependabot"),
];

/// Upstream clients of the Docker engine, named in `UpstreamClient(…)`.
const DOCKER_UPSTREAM: &[(&str, &str)] = &[
    ("docker-client", "docker"),
    ("buildx", "buildx"),
    ("compose", "compose"),
    ("docker-compose", "compose"),
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub tool: String,
    pub version: Option<String>,
    pub os: Option<String>,
    pub arch: Option<String>,
}

/// Parses a User-Agent. Never fails: an unknown or empty UA is `unknown`.
pub fn parse(ua: &str) -> ClientInfo {
    let mut tokens = ua.split_whitespace();
    let first = tokens.next().unwrap_or("");
    let (product, version) = split_token(first);
    let tool = RULES
        .iter()
        .find(|(name, _)| product.eq_ignore_ascii_case(name))
        .map(|(_, tool)| *tool);
    let mut info = ClientInfo {
        tool: tool.unwrap_or("unknown").to_owned(),
        version: tool.and(version).map(normalise_version),
        os: None,
        arch: None,
    };
    for t in ua.split_whitespace().skip(1) {
        match split_token(t) {
            ("os", Some(v)) => info.os = Some(v.to_ascii_lowercase()),
            ("arch", Some(v)) => info.arch = Some(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    if info.tool == "docker" {
        refine_docker(ua, &mut info);
    }
    info
}

/// `name/version` → (`name`, `version`).
fn split_token(t: &str) -> (&str, Option<&str>) {
    match t.split_once('/') {
        Some((name, version)) if !version.is_empty() => (name, Some(version)),
        _ => (t, None),
    }
}

fn normalise_version(v: &str) -> String {
    let v = v.trim_end_matches([',', ';', ')']);
    v.strip_prefix('v')
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(v)
        .to_owned()
}

/// `UpstreamClient(Docker-Client/27.3.1 \(linux\))` names the program that
/// drove the engine; the engine version stays the version when the upstream
/// is the plain CLI.
fn refine_docker(ua: &str, info: &mut ClientInfo) {
    let Some(start) = ua.find("UpstreamClient(") else {
        return;
    };
    let inner = &ua[start + "UpstreamClient(".len()..];
    let (product, version) = split_token(inner.split_whitespace().next().unwrap_or(""));
    let product = product.trim_end_matches(')');
    if let Some((_, tool)) = DOCKER_UPSTREAM
        .iter()
        .find(|(n, _)| product.eq_ignore_ascii_case(n))
    {
        if *tool != "docker" {
            info.tool = (*tool).to_owned();
            info.version = version.map(normalise_version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ua: &str, tool: &str, version: Option<&str>) {
        let got = parse(ua);
        assert_eq!(
            (got.tool.as_str(), got.version.as_deref()),
            (tool, version),
            "{ua}"
        );
    }

    #[test]
    fn known_clients() {
        check("docker/27.3.1 go/go1.22.7 git-commit/41ca978 kernel/6.8.0-48-generic os/linux arch/amd64 UpstreamClient(Docker-Client/27.3.1 \\(linux\\))", "docker", Some("27.3.1"));
        check("docker/27.3.1 go/go1.22.7 git-commit/41ca978 kernel/6.8.0 os/linux arch/amd64 UpstreamClient(buildx/v0.17.1)", "buildx", Some("0.17.1"));
        check(
            "docker/27.3.1 go/go1.22.7 os/linux arch/amd64 UpstreamClient(compose/v2.29.7)",
            "compose",
            Some("2.29.7"),
        );
        check("containerd/1.7.22", "containerd", Some("1.7.22"));
        check("containerd/v2.0.0", "containerd", Some("2.0.0"));
        check(
            "containers/5.32.2 (github.com/containers/image)",
            "containers-image",
            Some("5.32.2"),
        );
        check("Go-http-client/1.1", "go-http-client", Some("1.1"));
        check("Helm/3.16.2", "helm", Some("3.16.2"));
        check(
            "Renovate/38.142.5 (https://github.com/renovatebot/renovate)",
            "renovate",
            Some("38.142.5"),
        );
        check("Watchtower (Docker)", "watchtower", None);
    }

    #[test]
    fn os_and_arch_come_from_docker_style_tokens() {
        let got = parse("docker/27.2.0 go/go1.21.13 kernel/6.10.4-linuxkit os/linux arch/arm64 UpstreamClient(Docker-Client/27.2.0 \\(darwin\\))");
        assert_eq!(got.os.as_deref(), Some("linux"));
        assert_eq!(got.arch.as_deref(), Some("arm64"));
    }

    #[test]
    fn unknown_and_empty_are_unknown() {
        check("", "unknown", None);
        check("Mozilla/5.0 (X11; Linux x86_64)", "unknown", None);
    }
}
