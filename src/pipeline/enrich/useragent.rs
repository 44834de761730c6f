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
    ("renovatebot", "renovate"),
    ("diun", "diun"),
    ("watchtower", "watchtower"),
    ("dependabot", "dependabot"),
    ("dependabot-core", "dependabot"),
    ("artifactory", "artifactory"),
    ("jfrog-artifactory", "artifactory"),
    ("nexus", "nexus"),
    ("harbor", "harbor"),
    ("harbor-registry-client", "harbor"),
    ("flux", "flux"),
    ("argocd", "argocd"),
    ("argo-cd", "argocd"),
    ("docker-credential-ecr-login", "ecr-credential-helper"),
    ("aws-sdk-go", "aws-sdk"),
    ("aws-sdk-go-v2", "aws-sdk"),
    ("okhttp", "okhttp"),
    ("jib", "jib"),
    ("google-cloud-tools-java", "jib"),
    ("pack", "pack"),
    ("apko", "apko"),
    ("cosign", "cosign"),
    ("notation", "notation"),
    ("zot", "zot"),
];

/// First-token length kept for unknown clients.
const MAX_PRODUCT_CHARS: usize = 64;

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
    /// The first product token (`name/version`), kept whatever the tool, so
    /// unknown clients can still be told apart.
    pub product: Option<String>,
    pub version: Option<String>,
    pub os: Option<String>,
    pub arch: Option<String>,
}

/// Parses a User-Agent. Never fails: an unknown or empty UA is `unknown`.
pub fn parse(ua: &str) -> ClientInfo {
    let first = ua.split_whitespace().next().unwrap_or("");
    let (product, version) = split_token(first);
    let tool = RULES
        .iter()
        .find(|(name, _)| product.eq_ignore_ascii_case(name))
        .map(|(_, tool)| *tool);
    let version = match version {
        // `regclient/regctl (v0.7.1)`: the version is the parenthesised part.
        Some(v) if !v.starts_with(|c: char| c.is_ascii_digit() || c == 'v') => {
            parenthesised_version(ua)
        }
        Some(v) => Some(v.to_owned()),
        None => parenthesised_version(ua),
    };
    let mut info = ClientInfo {
        tool: tool.unwrap_or("unknown").to_owned(),
        product: (!first.is_empty()).then(|| first.chars().take(MAX_PRODUCT_CHARS).collect()),
        version: tool.and(version).map(|v| normalise_version(&v)),
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

/// `(v0.7.1)` or `(0.7.1)` anywhere in the UA.
fn parenthesised_version(ua: &str) -> Option<String> {
    ua.split('(')
        .skip(1)
        .filter_map(|p| p.split(')').next())
        .map(str::trim)
        .find(|p| {
            let v = p.strip_prefix('v').unwrap_or(p);
            v.starts_with(|c: char| c.is_ascii_digit()) && v.contains('.') && !v.contains(' ')
        })
        .map(str::to_owned)
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
/// drove the engine: buildx and compose replace the tool (with their
/// version). Docker Desktop is recognised by its VM kernel (`linuxkit`) or
/// a CLI running on macOS or Windows; the engine version stays.
fn refine_docker(ua: &str, info: &mut ClientInfo) {
    let desktop = ua.contains("-linuxkit")
        || ua.contains("\\(darwin\\)")
        || ua.contains("\\(windows\\)")
        || ua.contains("Docker-Desktop");
    if desktop {
        info.tool = "docker-desktop".to_owned();
    }
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
            info.version = version.map(|v| normalise_version(v.trim_end_matches(')')));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `testdata/user-agents.tsv`: real User-Agent strings with the tool and
    /// version each must give.
    #[test]
    fn corpus_of_real_user_agents() {
        let corpus = include_str!("../../../testdata/user-agents.tsv");
        let mut checked = 0;
        for (n, line) in corpus.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 3, "line {}: ua, tool, version", n + 1);
            let got = parse(cols[0]);
            let want_version = (!cols[2].is_empty()).then_some(cols[2]);
            assert_eq!(
                (got.tool.as_str(), got.version.as_deref()),
                (cols[1], want_version),
                "line {}: {}",
                n + 1,
                cols[0]
            );
            checked += 1;
        }
        assert!(
            checked >= 60,
            "the corpus has {checked} user agents; keep at least 60"
        );
    }

    #[test]
    fn os_and_arch_come_from_docker_style_tokens() {
        let got = parse("docker/27.2.0 go/go1.21.13 kernel/6.10.4-linuxkit os/linux arch/arm64 UpstreamClient(Docker-Client/27.2.0 \\(darwin\\))");
        assert_eq!(got.os.as_deref(), Some("linux"));
        assert_eq!(got.arch.as_deref(), Some("arm64"));
        assert_eq!(got.tool, "docker-desktop");
    }

    #[test]
    fn unknown_clients_keep_their_first_product_token() {
        let got = parse("Mozilla/5.0 (X11; Linux x86_64)");
        assert_eq!((got.tool.as_str(), got.version), ("unknown", None));
        assert_eq!(got.product.as_deref(), Some("Mozilla/5.0"));
        assert_eq!(parse("").product, None);
        assert_eq!(
            parse(&"x".repeat(500)).product.map(|p| p.len()),
            Some(MAX_PRODUCT_CHARS)
        );
    }
}
