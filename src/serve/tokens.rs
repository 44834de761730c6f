//! The tokens file: who may call `pullstats serve`, as what, and (for
//! readers) which namespaces they see. Only each secret's SHA-256 is kept;
//! a presented token is hashed and compared with every entry in constant
//! time. The file is re-read when it changes, so revoking a token is an
//! edit, not a restart.
//!
//! ```toml
//! [[token]]
//! name = "registry-eu"
//! sha256 = "<hex sha256 of the secret>"
//! roles = ["receive"]
//!
//! [[token]]
//! name = "acme-dashboard"
//! sha256 = "<hex sha256 of the secret>"
//! roles = ["read"]
//! namespaces = ["acme", "other/tool"]   # a namespace, or one repository of one
//!
//! [badges]
//! repos = ["acme/web"]                   # public pull-count badges
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::pipeline::enrich::{fingerprint_files, Fingerprint};

/// Secrets are this many random bytes (256 bits), written as hex.
const SECRET_BYTES: usize = 32;
/// Prefix of every secret, so that one found in a log or a paste is
/// recognisable (and greppable by secret scanners).
pub const SECRET_PREFIX: &str = "pst_";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the tokens file {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write the tokens file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a token named `{0}` exists already")]
    Exists(String),
    #[error("`{0}` is not a valid {1} (letters, digits, `.`, `_`, `-`, at most 64; a namespace may also be `*` or `ns/repo`)")]
    Name(String, &'static str),
    #[error("a read token needs --namespace NS (repeatable) or --namespace '*' for all")]
    NoNamespace,
    #[error("cannot draw random bytes for a secret: {0}")]
    Random(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `POST /notifications`.
    Receive,
    /// The analytics API and the dashboard.
    Read,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Receive => "receive",
            Role::Read => "read",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    sha256: String,
    roles: Vec<Role>,
    #[serde(default)]
    namespaces: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Badges {
    #[serde(default)]
    repos: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
    #[serde(default)]
    badges: Badges,
}

/// One token as loaded.
#[derive(Debug, Clone)]
pub struct Token {
    pub name: String,
    hash: [u8; 32],
    pub roles: Vec<Role>,
    pub namespaces: Vec<String>,
}

impl Token {
    /// Whether the token may see all of `namespace`.
    pub fn sees(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }

    /// The single repositories of `namespace` the token was granted
    /// (`namespaces = ["ns/repo"]`), sorted; none when it sees it all.
    pub fn extra_repos(&self, namespace: &str) -> Vec<String> {
        if self.sees(namespace) {
            return Vec::new();
        }
        let mut repos: Vec<String> = self
            .namespaces
            .iter()
            .filter_map(|n| n.split_once('/'))
            .filter(|(ns, _)| *ns == namespace)
            .map(|(_, repo)| repo.to_owned())
            .collect();
        repos.sort();
        repos.dedup();
        repos
    }

    /// Whether the token may see `namespace/repository`.
    pub fn sees_repo(&self, namespace: &str, repository: &str) -> bool {
        self.sees(namespace)
            || self
                .namespaces
                .iter()
                .filter_map(|n| n.split_once('/'))
                .any(|(ns, repo)| ns == namespace && repo == repository)
    }
}

/// What a tokens file holds.
#[derive(Debug, Default)]
struct Loaded {
    tokens: Vec<Token>,
    /// `(namespace, repository)` with a public badge.
    badges: Vec<(String, String)>,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one no entry matches: 401.
    Unauthenticated,
    /// A valid token without the role: 403.
    Forbidden,
}

/// `ns/repo` (a repository path may hold further `/`): each part a plain name.
fn valid_repo_path(s: &str) -> bool {
    s.len() <= 256
        && s.split_once('/').is_some_and(|(ns, repo)| {
            valid_name(ns, false) && repo.split('/').all(|p| valid_name(p, false))
        })
}

/// A read token's grant: `*`, a namespace, or `ns/repo`.
fn valid_scope(s: &str) -> bool {
    valid_name(s, true) || valid_repo_path(s)
}

fn valid_name(s: &str, star: bool) -> bool {
    (star && s == "*")
        || (!s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Parses a tokens file's text (`path` names it in errors).
fn parse(path: &Path, text: &str) -> Result<Loaded, TokenError> {
    let invalid = |reason: String| TokenError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut tokens: Vec<Token> = Vec::with_capacity(file.token.len());
    for e in file.token {
        if !valid_name(&e.name, false) {
            return Err(invalid(format!("token name `{}` is not valid", e.name)));
        }
        if tokens.iter().any(|t| t.name == e.name) {
            return Err(invalid(format!("token name `{}` appears twice", e.name)));
        }
        let hash = parse_hex32(&e.sha256.to_ascii_lowercase()).ok_or_else(|| {
            invalid(format!(
                "token `{}`: sha256 must be 64 hex digits (the SHA-256 of the secret)",
                e.name
            ))
        })?;
        if e.roles.is_empty() {
            return Err(invalid(format!("token `{}` has no roles", e.name)));
        }
        if let Some(ns) = e.namespaces.iter().find(|n| !valid_scope(n)) {
            return Err(invalid(format!(
                "token `{}`: namespace `{ns}` is not valid",
                e.name
            )));
        }
        tokens.push(Token {
            name: e.name,
            hash,
            roles: e.roles,
            namespaces: e.namespaces,
        });
    }
    let mut badges = Vec::with_capacity(file.badges.repos.len());
    for r in file.badges.repos {
        if !valid_repo_path(&r) {
            return Err(invalid(format!(
                "[badges] repos: `{r}` is not a namespace/repository"
            )));
        }
        let (ns, repo) = r.split_once('/').unwrap_or_default();
        badges.push((ns.to_owned(), repo.to_owned()));
    }
    Ok(Loaded { tokens, badges })
}

fn read(path: &Path) -> Result<Loaded, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Finds the entry whose hash equals the secret's. Every entry is compared,
/// each in constant time, so the answer's timing says nothing about which
/// entry (or how much of a hash) matched.
fn find<'a>(tokens: &'a [Token], secret: &str) -> Option<&'a Token> {
    let presented = sha256(secret);
    let mut found = None;
    for t in tokens {
        if bool::from(t.hash.ct_eq(&presented)) {
            found = Some(t);
        }
    }
    found
}

/// The tokens in force, re-read when the file changes.
pub struct Tokens {
    path: PathBuf,
    current: RwLock<(Fingerprint, Arc<Loaded>)>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let fingerprint = fingerprint_files(vec![path.to_owned()]);
        let tokens = read(path)?;
        if tokens.tokens.is_empty() {
            tracing::warn!(path = %path.display(), "the tokens file holds no token: every request will be refused");
        }
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new((fingerprint, Arc::new(tokens))),
        })
    }

    /// Tokens from a file's text (`path` names it in errors), never re-read.
    pub fn from_text(path: &Path, text: &str) -> Result<Self, TokenError> {
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new((Fingerprint::new(), Arc::new(parse(path, text)?))),
        })
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current.read().map(|c| c.1.clone()).unwrap_or_default()
    }

    /// The token a request's `Authorization: Bearer …` header names, if it
    /// holds `role`.
    pub fn authorize(&self, header: Option<&str>, role: Role) -> Result<Token, Refusal> {
        let secret = bearer(header).ok_or(Refusal::Unauthenticated)?;
        let loaded = self.loaded();
        let token = find(&loaded.tokens, secret).ok_or(Refusal::Unauthenticated)?;
        with_role(token, role)
    }

    /// The entry named `name` whose secret is `secret` (a login), if it
    /// holds `role`. The secret is matched as in [`Self::authorize`], then
    /// the name.
    pub fn login(&self, name: &str, secret: &str, role: Role) -> Result<Token, Refusal> {
        let loaded = self.loaded();
        let token = find(&loaded.tokens, secret)
            .filter(|t| bool::from(t.name.as_bytes().ct_eq(name.as_bytes())))
            .ok_or(Refusal::Unauthenticated)?;
        with_role(token, role)
    }

    /// The entry named `name` as the file holds it now (a signed session
    /// token names its entry: revoking the entry revokes the session).
    pub fn named(&self, name: &str, role: Role) -> Result<Token, Refusal> {
        let loaded = self.loaded();
        let token = loaded
            .tokens
            .iter()
            .find(|t| t.name == name)
            .ok_or(Refusal::Unauthenticated)?;
        with_role(token, role)
    }

    /// Repositories with a public badge, as `(namespace, repository)`.
    pub fn badges(&self) -> Vec<(String, String)> {
        self.loaded().badges.clone()
    }

    /// Re-reads the file if it changed; a file that no longer parses keeps
    /// the tokens in force (and is reported once per change).
    pub fn refresh(&self) {
        let now = fingerprint_files(vec![self.path.clone()]);
        let same = self.current.read().map(|c| c.0 == now).unwrap_or(false);
        if same {
            return;
        }
        match read(&self.path) {
            Ok(tokens) => {
                tracing::info!(path = %self.path.display(), tokens = tokens.tokens.len(), badges = tokens.badges.len(), "tokens file re-read");
                if let Ok(mut c) = self.current.write() {
                    *c = (now, Arc::new(tokens));
                }
            }
            Err(e) => {
                tracing::error!("{e}; the tokens read before stay in force");
                if let Ok(mut c) = self.current.write() {
                    c.0 = now;
                }
            }
        }
    }

    /// Checks the file every `interval` until the task is dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let tokens = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let t = tokens.clone();
                let _ = tokio::task::spawn_blocking(move || t.refresh()).await;
            }
        })
    }
}

/// The credential of an `Authorization: Bearer …` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, rest) = header?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn with_role(token: &Token, role: Role) -> Result<Token, Refusal> {
    if token.roles.contains(&role) {
        Ok(token.clone())
    } else {
        Err(Refusal::Forbidden)
    }
}

/// A new token for `create`.
pub struct NewToken<'a> {
    pub name: &'a str,
    pub roles: &'a [Role],
    pub namespaces: &'a [String],
}

/// Appends a token to the file at `path` (created, mode 0600, when missing)
/// and returns its secret, which is stored nowhere.
pub fn create(path: &Path, new: &NewToken<'_>) -> Result<String, TokenError> {
    if !valid_name(new.name, false) {
        return Err(TokenError::Name(new.name.to_owned(), "token name"));
    }
    if let Some(ns) = new.namespaces.iter().find(|n| !valid_scope(n)) {
        return Err(TokenError::Name(ns.clone(), "namespace"));
    }
    if new.roles.contains(&Role::Read) && new.namespaces.is_empty() {
        return Err(TokenError::NoNamespace);
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(TokenError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    if parse(path, &existing)?
        .tokens
        .iter()
        .any(|t| t.name == new.name)
    {
        return Err(TokenError::Exists(new.name.to_owned()));
    }
    let mut random = [0u8; SECRET_BYTES];
    getrandom::fill(&mut random).map_err(|e| TokenError::Random(e.to_string()))?;
    let secret = format!("{SECRET_PREFIX}{}", hex(&random));
    let quoted = |items: Vec<&str>| {
        items
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Names and namespaces were checked to be plain ([A-Za-z0-9._-/] or *):
    // nothing in them needs escaping.
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&format!(
        "[[token]]\nname = \"{}\"\nsha256 = \"{}\"\nroles = [{}]\nnamespaces = [{}]\n",
        new.name,
        hex(&sha256(&secret)),
        quoted(new.roles.iter().map(|r| r.as_str()).collect()),
        quoted(new.namespaces.iter().map(String::as_str).collect()),
    ));
    parse(path, &text)?;
    write_private(path, &text).map_err(|source| TokenError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(secret)
}

/// Replaces `path` with `text` through a temporary file in the same
/// directory (readers never see half a file), readable by the owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(text.as_bytes())?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let path = dir.join(format!(".pullstats-tokens.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&path);
    Ok((path.clone(), options.open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(dir: &Path, roles: &[Role], namespaces: &[&str]) -> (PathBuf, String) {
        let path = dir.join("tokens.toml");
        let ns: Vec<String> = namespaces.iter().map(|s| (*s).to_owned()).collect();
        let secret = create(
            &path,
            &NewToken {
                name: "t1",
                roles,
                namespaces: &ns,
            },
        )
        .expect("create");
        (path, secret)
    }

    #[test]
    fn created_secrets_authorize_their_role_only() {
        let dir = tempfile::tempdir().expect("dir");
        let (path, secret) = file_with(dir.path(), &[Role::Receive], &[]);
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == 4 + 64);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains(&secret), "the secret is not stored");
        let tokens = Tokens::load(&path).expect("load");
        let bearer = format!("Bearer {secret}");
        assert_eq!(
            tokens
                .authorize(Some(&bearer), Role::Receive)
                .map(|t| t.name),
            Ok("t1".to_owned())
        );
        assert_eq!(
            tokens.authorize(Some(&bearer), Role::Read).err(),
            Some(Refusal::Forbidden)
        );
        for wrong in [
            None,
            Some("Bearer pst_00"),
            Some(secret.as_str()),
            Some("Basic x"),
        ] {
            assert_eq!(
                tokens.authorize(wrong, Role::Receive).err(),
                Some(Refusal::Unauthenticated),
                "{wrong:?}"
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn names_are_unique_and_plain_and_readers_name_namespaces() {
        let dir = tempfile::tempdir().expect("dir");
        let (path, _) = file_with(dir.path(), &[Role::Read], &["acme"]);
        let again = create(
            &path,
            &NewToken {
                name: "t1",
                roles: &[Role::Receive],
                namespaces: &[],
            },
        );
        assert!(matches!(again, Err(TokenError::Exists(_))));
        for (name, ns) in [
            ("../x", "acme"),
            ("ok", "a\"b"),
            ("ok", "a/"),
            ("ok", "/b"),
            ("ok", "a//b"),
        ] {
            let r = create(
                &path,
                &NewToken {
                    name,
                    roles: &[Role::Read],
                    namespaces: &[ns.to_owned()],
                },
            );
            assert!(matches!(r, Err(TokenError::Name(..))), "{name} {ns}");
        }
        let r = create(
            &path,
            &NewToken {
                name: "r2",
                roles: &[Role::Read],
                namespaces: &[],
            },
        );
        assert!(matches!(r, Err(TokenError::NoNamespace)));
        let tokens = read(&path).expect("read").tokens;
        assert!(tokens[0].sees("acme") && !tokens[0].sees("other"));
        let r = create(
            &path,
            &NewToken {
                name: "r3",
                roles: &[Role::Read],
                namespaces: &["other/tool".to_owned(), "other/a/b".to_owned()],
            },
        );
        assert!(r.is_ok(), "{r:?}");
        let tokens = read(&path).expect("read").tokens;
        let t = &tokens[1];
        assert!(!t.sees("other") && t.sees_repo("other", "tool") && t.sees_repo("other", "a/b"));
        assert!(!t.sees_repo("other", "web") && !t.sees_repo("acme", "tool"));
        assert_eq!(t.extra_repos("other"), ["a/b", "tool"]);
        assert!(tokens[0].extra_repos("acme").is_empty());
    }

    #[test]
    fn an_edited_file_applies_and_a_broken_one_keeps_the_old_tokens() {
        let dir = tempfile::tempdir().expect("dir");
        let (path, secret) = file_with(dir.path(), &[Role::Receive], &[]);
        let tokens = Tokens::load(&path).expect("load");
        let bearer = format!("Bearer {secret}");
        std::fs::write(&path, "[[token]]\nname = broken").expect("write");
        tokens.refresh();
        assert!(tokens.authorize(Some(&bearer), Role::Receive).is_ok());
        std::fs::write(&path, "").expect("revoke all");
        tokens.refresh();
        assert_eq!(
            tokens.authorize(Some(&bearer), Role::Receive).err(),
            Some(Refusal::Unauthenticated)
        );
    }

    #[test]
    fn bad_files_name_the_problem() {
        let p = Path::new("t.toml");
        for (text, needle) in [
            (
                "[[token]]\nname=\"a\"\nsha256=\"xy\"\nroles=[\"receive\"]",
                "64 hex",
            ),
            (
                "[[token]]\nname=\"a\"\nsha256=\"00\"\nroles=[\"admin\"]",
                "admin",
            ),
            (
                "[[token]]\nname=\"a\"\nsha256=\"00\"\nroles=[\"read\"]\nextra=1",
                "extra",
            ),
        ] {
            let e = parse(p, text).expect_err(text).to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
