//! Client enrichment: User-Agent → `user_agent_tool`, `user_agent_version`,
//! `os`, `arch` (spec §3).
//!
//! Registry clients send `product/version` tokens (RFC 9110) and
//! parenthesised comments. Wrappers put their own product in front of the
//! client's (`mirror-script/1.0 skopeo/1.16.1`), tools put the library they
//! are built on after theirs (`crane/v0.20.2 go-containerregistry/v0.20.2`),
//! and some send their executable's path instead of a name
//! (`/usr/local/bin/grype go-containerregistry/v0.19.0`). So every product
//! token is looked up in one table, [`RULES`], and the most specific known
//! one names the client: an application anywhere in the string, else a
//! library, but only as the first product (`Go-http-client/1.1` is a Go
//! program we cannot name; `my-tool/1 go-containerregistry/v0.19.0` is an
//! unknown tool, never go-containerregistry). Docker's engine UA also
//! carries `os/… arch/…` and an `UpstreamClient(…)` part naming the program
//! that asked the engine (the CLI, buildx, compose), which refines the tool.
//!
//! Versions are kept as the client wrote them (`unset`, `dev`, `(devel)`,
//! a commit hash, `1.2.0+Homebrew`), less a leading `v` before a digit and
//! anything a wrapper appended after a comma (kaniko under skaffold sends
//! `kaniko/v1.9.1,skaffold-v2.10.0`).

/// Whether a product names the client itself or what it is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A program: wins wherever it stands in the string.
    App,
    /// A library or a generic HTTP client: names the client only as the
    /// first product.
    Library,
}

use Kind::{App, Library};

/// Product name (case-insensitive; an executable's base name counts, and a
/// name with a `/` matches a URL sent as the product) → tool name, kind.
pub const RULES: &[(&str, &str, Kind)] = &[
    ("docker", "docker", App),
    ("docker-client", "docker", App),
    ("containerd", "containerd", App),
    ("ctr", "containerd", App),
    ("nerdctl", "nerdctl", App),
    ("buildkit", "buildkit", App),
    ("cri-o", "cri-o", App),
    ("podman", "podman", App),
    ("libpod", "podman", App),
    ("buildah", "buildah", App),
    ("skopeo", "skopeo", App),
    ("kaniko", "kaniko", App),
    ("crane", "crane", App),
    ("gcrane", "gcrane", App),
    ("ko", "ko", App),
    ("oras", "oras", App),
    ("regclient", "regclient", App),
    ("regctl", "regclient", App),
    ("regsync", "regclient", App),
    ("regbot", "regclient", App),
    ("helm", "helm", App),
    ("trivy", "trivy", App),
    ("syft", "syft", App),
    ("grype", "grype", App),
    ("cosign", "cosign", App),
    ("notation", "notation", App),
    ("pack", "pack", App),
    ("apko", "apko", App),
    ("jib", "jib", App),
    ("google-cloud-tools-java", "jib", App),
    ("renovate", "renovate", App),
    ("renovatebot", "renovate", App),
    ("github.com/renovatebot/renovate", "renovate", App),
    ("dependabot", "dependabot", App),
    ("dependabot-core", "dependabot", App),
    ("diun", "diun", App),
    ("watchtower", "watchtower", App),
    ("flux", "flux", App),
    ("argocd", "argocd", App),
    ("argo-cd", "argocd", App),
    ("argocd-repo-server", "argocd", App),
    ("artifactory", "artifactory", App),
    ("jfrog-artifactory", "artifactory", App),
    ("nexus", "nexus", App),
    ("harbor", "harbor", App),
    ("harbor-registry-client", "harbor", App),
    ("zot", "zot", App),
    ("docker-credential-ecr-login", "ecr-credential-helper", App),
    ("go-containerregistry", "go-containerregistry", Library),
    ("containers", "containers-image", Library),
    ("oras-go", "oras-go", Library),
    ("go-http-client", "go-http-client", Library),
    ("curl", "curl", Library),
    ("wget", "wget", Library),
    ("python-requests", "python-requests", Library),
    ("python-urllib", "python-urllib", Library),
    ("okhttp", "okhttp", Library),
    ("rest-client", "rest-client", Library),
    ("aws-sdk-go", "aws-sdk", Library),
    ("aws-sdk-go-v2", "aws-sdk", Library),
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

/// One product token: its name (an executable's base name for a path, the
/// host and path for a URL), the version after its `/`, and the comment
/// right after it.
#[derive(Debug, Clone, Copy)]
struct Product<'a> {
    name: &'a str,
    version: Option<&'a str>,
    comment: Option<&'a str>,
}

/// Parses a User-Agent. Never fails: an unknown or empty UA is `unknown`.
pub fn parse(ua: &str) -> ClientInfo {
    let ua = ua.trim();
    let tokens = tokens(ua);
    let first = tokens.first().map_or("", |(t, _)| *t);
    let products: Vec<Product<'_>> = tokens.iter().map(|&(t, c)| product(t, c)).collect();
    let known = |p: &Product<'_>| {
        RULES
            .iter()
            .find(|(name, _, _)| p.name.eq_ignore_ascii_case(name))
            .map(|&(_, tool, kind)| (tool, kind))
    };
    let app = products
        .iter()
        .find_map(|p| known(p).filter(|(_, k)| *k == App).map(|(t, _)| (t, p)));
    let found = app.or_else(|| {
        let p = products.first()?;
        known(p).map(|(t, _)| (t, p))
    });
    let mut info = ClientInfo {
        tool: found.map_or("unknown", |(t, _)| t).to_owned(),
        product: (!first.is_empty()).then(|| first.chars().take(MAX_PRODUCT_CHARS).collect()),
        version: found.and_then(|(_, p)| version(p)),
        os: None,
        arch: None,
    };
    for p in &products {
        match (p.name, p.version) {
            ("os", Some(v)) => info.os = Some(v.to_ascii_lowercase()),
            ("arch", Some(v)) => info.arch = Some(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    if found.is_some_and(|(_, p)| p.name.eq_ignore_ascii_case("docker")) {
        refine_docker(ua, &mut info);
    }
    info
}

/// The whitespace-separated tokens outside comments, each with the comment
/// (its text inside the parentheses) that follows it, if any. Escaped
/// parentheses (`\(`, as in docker's `UpstreamClient(…)`) count as text; an
/// unclosed comment runs to the end.
fn tokens(ua: &str) -> Vec<(&str, Option<&str>)> {
    let mut out: Vec<(&str, Option<&str>)> = Vec::new();
    let bytes = ua.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b if b.is_ascii_whitespace() => i += 1,
            b'(' => {
                let (inner, next) = comment(ua, i);
                if let Some(last) = out.last_mut().filter(|l| l.1.is_none()) {
                    last.1 = Some(inner);
                }
                i = next;
            }
            _ => {
                let start = i;
                let mut depth = 0usize;
                while i < bytes.len() && (depth > 0 || !bytes[i].is_ascii_whitespace()) {
                    match bytes[i] {
                        b'\\' if escapes_paren(bytes, i) => i += 1,
                        b'(' => depth += 1,
                        b')' => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    i += 1;
                }
                out.push((&ua[start..i.min(bytes.len())], None));
            }
        }
    }
    out
}

/// Whether the backslash at `i` escapes a parenthesis (`\(`, `\)`).
fn escapes_paren(bytes: &[u8], i: usize) -> bool {
    matches!(bytes.get(i + 1), Some(b'(' | b')'))
}

/// The comment opening at `open`: its inner text and the index after it.
fn comment(ua: &str, open: usize) -> (&str, usize) {
    let bytes = ua.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes_paren(bytes, i) => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return (&ua[open + 1..i], i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    (&ua[(open + 1).min(ua.len())..], ua.len())
}

/// A token as a product: `name/version`, an executable's path, or a URL.
fn product<'a>(token: &'a str, comment: Option<&'a str>) -> Product<'a> {
    if let Some((_, rest)) = token.split_once("://") {
        return Product {
            name: rest.trim_end_matches('/'),
            version: None,
            comment,
        };
    }
    let is_path = token.starts_with(['/', '.', '~'])
        || token.contains('\\')
        || token.as_bytes().get(1) == Some(&b':');
    if is_path {
        let base = token.rsplit(['/', '\\']).next().unwrap_or(token);
        let base = base
            .len()
            .checked_sub(4)
            .filter(|&cut| base.is_char_boundary(cut) && base[cut..].eq_ignore_ascii_case(".exe"))
            .map_or(base, |cut| &base[..cut]);
        return Product {
            name: base,
            version: None,
            comment,
        };
    }
    match token.split_once('/') {
        Some((name, version)) if !version.is_empty() => Product {
            name,
            version: Some(version),
            comment,
        },
        _ => Product {
            name: token.trim_end_matches('/'),
            version: None,
            comment,
        },
    }
}

/// The client's version as it wrote it. `regclient/regctl (v0.7.1)`: when
/// the part after the `/` names a sub-tool (no digit in it) and the comment
/// is a version or a commit, the comment is the version.
fn version(p: &Product<'_>) -> Option<String> {
    let written = match (p.version, p.comment) {
        (Some(v), Some(c)) if !v.contains(|c: char| c.is_ascii_digit()) && is_version(c) => c,
        (Some(v), _) => v,
        (None, _) => return None,
    };
    let v = written.split(',').next().unwrap_or(written).trim();
    let v = v.trim_end_matches(';');
    let v = trim_unbalanced_parens(v);
    let v = v
        .strip_prefix(['v', 'V'])
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(v);
    (!v.is_empty()).then(|| v.to_owned())
}

/// `v0.7.1`, `0.7.1` or a commit hash: one word starting with a digit (after
/// an optional `v`), or at least 7 hex digits.
fn is_version(text: &str) -> bool {
    let t = text.trim();
    let numbered = t
        .strip_prefix('v')
        .unwrap_or(t)
        .starts_with(|c: char| c.is_ascii_digit());
    let commit = t.len() >= 7 && t.chars().all(|c| c.is_ascii_hexdigit());
    !t.contains(char::is_whitespace) && (numbered || commit)
}

/// Drops closing parentheses that close nothing (`1.2.3)` from a cut
/// comment), keeping balanced ones (`(devel)`).
fn trim_unbalanced_parens(mut v: &str) -> &str {
    while v.ends_with(')') && v.matches(')').count() > v.matches('(').count() {
        v = &v[..v.len() - 1];
    }
    v
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
    let token = inner.split_whitespace().next().unwrap_or("");
    let upstream = product(token.trim_end_matches(')'), None);
    if let Some((_, tool)) = DOCKER_UPSTREAM
        .iter()
        .find(|(n, _)| upstream.name.eq_ignore_ascii_case(n))
    {
        if *tool != "docker" {
            info.tool = (*tool).to_owned();
            info.version = version(&upstream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of a corpus file: (line number, ua, tool, version).
    fn corpus(text: &str) -> Vec<(usize, &str, &str, Option<&str>)> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
            .map(|(n, line)| {
                let cols: Vec<&str> = line.split('\t').collect();
                assert_eq!(cols.len(), 4, "line {}: ua, tool, version, source", n + 1);
                assert!(
                    !cols[3].trim().is_empty(),
                    "line {}: every row names its source",
                    n + 1
                );
                (
                    n + 1,
                    cols[0],
                    cols[1],
                    (!cols[2].is_empty()).then_some(cols[2]),
                )
            })
            .collect()
    }

    fn check(text: &str, min_rows: usize) {
        let rows = corpus(text);
        for &(n, ua, tool, version) in &rows {
            let got = parse(ua);
            assert_eq!(
                (got.tool.as_str(), got.version.as_deref()),
                (tool, version),
                "line {n}: {ua}"
            );
        }
        assert!(
            rows.len() >= min_rows,
            "{} rows; keep at least {min_rows}",
            rows.len()
        );
    }

    /// `testdata/user-agents.tsv`: real User-Agent strings, each with the
    /// source that builds it, and the tool and version each must give.
    #[test]
    fn corpus_of_real_user_agents() {
        check(include_str!("../../../testdata/user-agents.tsv"), 100);
    }

    /// `testdata/user-agents-malformed.tsv`: real strings cut, padded or
    /// broken; the tool still comes out when its token is intact.
    #[test]
    fn malformed_user_agents_still_name_their_tool() {
        check(
            include_str!("../../../testdata/user-agents-malformed.tsv"),
            20,
        );
    }

    proptest::proptest! {
        /// Any string parses; a known tool is named by a product of the
        /// string (or is one of docker's refinements), never guessed.
        #[test]
        fn any_string_parses_to_a_tool_it_names(ua in "\\PC{0,80}|[a-z/().,\\\\ ]{0,40}") {
            let got = parse(&ua);
            let named = got.tool == "unknown"
                || ["docker-desktop", "buildx", "compose"].contains(&got.tool.as_str())
                || RULES.iter().any(|(name, tool, _)| {
                    *tool == got.tool && ua.to_ascii_lowercase().contains(&name.to_ascii_lowercase())
                });
            proptest::prop_assert!(named, "{ua:?} gave {}", got.tool);
        }
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
