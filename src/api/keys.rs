//! The server's secret, and what it signs: download links (HMAC-SHA256 over
//! path and expiry) and the session tokens `POST /v2/users/login` hands
//! out (HS256 JWTs naming a tokens-file entry). Each use has its own key
//! derived from the secret, so a link signature is never a valid JWT
//! signature and the other way round.
//!
//! The secret is `--signing-key` (env `PULLSTATS_SIGNING_KEY`) or, without
//! one, 32 random bytes generated on first start into the table's
//! `_pullstats/signing-key` (mode 0600), so links and sessions survive a
//! restart.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;
use serde::{Deserialize, Serialize};

/// Where the generated secret is kept, inside the table directory.
pub const KEY_FILE: &str = "_pullstats/signing-key";
const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the signing key file {0} does not hold 64 hex digits")]
    Invalid(PathBuf),
    #[error("--signing-key must be at least 32 characters")]
    Short,
    #[error("cannot draw random bytes for a signing key: {0}")]
    Random(String),
    #[error("a table in an object store needs --signing-key (PULLSTATS_SIGNING_KEY): the key is not written into a shared bucket, and every `serve` of the table must share one")]
    Remote,
}

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    Expired,
    BadSignature,
}

pub struct Keys {
    links: hmac::Key,
    sessions: (jsonwebtoken::EncodingKey, jsonwebtoken::DecodingKey),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The tokens-file entry.
    sub: String,
    iat: u64,
    exp: u64,
    iss: String,
}

const ISSUER: &str = "pullstats";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Keys {
    /// From `--signing-key`, or a local table's key file (created when
    /// missing); `table` is the local table directory, `None` for a table
    /// in an object store.
    pub fn load(given: Option<&str>, table: Option<&Path>) -> Result<Self, KeyError> {
        let secret = match (given, table) {
            (Some(k), _) if k.len() < 32 => return Err(KeyError::Short),
            (Some(k), _) => k.as_bytes().to_vec(),
            (None, Some(dir)) => key_file(&dir.join(KEY_FILE))?,
            (None, None) => return Err(KeyError::Remote),
        };
        Ok(Self::from_secret(&secret))
    }

    pub fn from_secret(secret: &[u8]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derive = |purpose: &str| hmac::sign(&root, purpose.as_bytes());
        let links = hmac::Key::new(
            hmac::HMAC_SHA256,
            derive("pullstats download links").as_ref(),
        );
        let session = derive("pullstats session tokens");
        Self {
            links,
            sessions: (
                jsonwebtoken::EncodingKey::from_secret(session.as_ref()),
                jsonwebtoken::DecodingKey::from_secret(session.as_ref()),
            ),
        }
    }

    fn link_message(path: &str, expires: u64) -> String {
        format!("GET\n{path}\n{expires}")
    }

    /// `?expires=…&signature=…` for `path`, valid for `ttl`.
    pub fn sign_link(&self, path: &str, ttl: Duration) -> String {
        let expires = now_s() + ttl.as_secs().max(1);
        let tag = hmac::sign(&self.links, Self::link_message(path, expires).as_bytes());
        format!("expires={expires}&signature={}", hex(tag.as_ref()))
    }

    /// Checks a link's expiry and signature (compared in constant time).
    pub fn verify_link(
        &self,
        path: &str,
        expires: &str,
        signature: &str,
    ) -> Result<(), LinkRefusal> {
        let expires: u64 = expires.parse().map_err(|_| LinkRefusal::BadSignature)?;
        let tag = unhex(signature).ok_or(LinkRefusal::BadSignature)?;
        hmac::verify(
            &self.links,
            Self::link_message(path, expires).as_bytes(),
            &tag,
        )
        .map_err(|_| LinkRefusal::BadSignature)?;
        if now_s() >= expires {
            return Err(LinkRefusal::Expired);
        }
        Ok(())
    }

    /// A session token for the entry `name`, valid for `ttl`.
    pub fn session(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = now_s();
        let claims = Claims {
            sub: name.to_owned(),
            iat,
            exp: iat + ttl.as_secs().max(1),
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.sessions.0,
        )
    }

    /// The entry a valid, unexpired session token names.
    pub fn session_name(&self, token: &str) -> Option<String> {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.sessions.1, &v)
            .ok()
            .map(|d| d.claims.sub)
    }
}

/// Whether a bearer credential is shaped like a JWT (three base64url parts)
/// rather than a tokens-file secret.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3 && credential.starts_with("eyJ")
}

fn key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return unhex(text.trim())
                .filter(|k| k.len() == SECRET_BYTES)
                .ok_or_else(|| KeyError::Invalid(path.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(hex(&secret).as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            tracing::info!(path = %path.display(), "generated a signing key for download links and sessions");
            Ok(secret.to_vec())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => key_file(path),
        Err(e) => Err(io(e)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire_and_not_once_altered() {
        let keys = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let q = keys.sign_link("/d/a.csv", Duration::from_secs(60));
        let (e, s) = q
            .strip_prefix("expires=")
            .and_then(|r| r.split_once("&signature="))
            .expect("shape");
        assert_eq!(keys.verify_link("/d/a.csv", e, s), Ok(()));
        assert_eq!(
            keys.verify_link("/d/b.csv", e, s),
            Err(LinkRefusal::BadSignature)
        );
        let later = (e.parse::<u64>().expect("n") + 1).to_string();
        assert_eq!(
            keys.verify_link("/d/a.csv", &later, s),
            Err(LinkRefusal::BadSignature)
        );
        let mut flipped = s.to_owned();
        flipped.replace_range(0..1, if s.starts_with('0') { "1" } else { "0" });
        assert_eq!(
            keys.verify_link("/d/a.csv", e, &flipped),
            Err(LinkRefusal::BadSignature)
        );
        // Signed in the past: expired, though the signature is right.
        let past = now_s() - 10;
        let tag = hmac::sign(&keys.links, Keys::link_message("/d/a.csv", past).as_bytes());
        assert_eq!(
            keys.verify_link("/d/a.csv", &past.to_string(), &hex(tag.as_ref())),
            Err(LinkRefusal::Expired)
        );
        let other = Keys::from_secret(b"another secret of 32 characters!");
        assert_eq!(
            other.verify_link("/d/a.csv", e, s),
            Err(LinkRefusal::BadSignature)
        );
    }

    #[test]
    fn sessions_name_their_entry_and_only_ours_verify() {
        let keys = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let jwt = keys.session("dash", Duration::from_secs(60)).expect("jwt");
        assert!(looks_like_jwt(&jwt));
        assert_eq!(keys.session_name(&jwt).as_deref(), Some("dash"));
        let other = Keys::from_secret(b"another secret of 32 characters!");
        assert_eq!(other.session_name(&jwt), None);
        assert_eq!(keys.session_name("eyJ.x.y"), None);
        assert!(!looks_like_jwt("pst_00ff"));
    }

    #[test]
    fn the_key_file_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let a = key_file(&dir.path().join(KEY_FILE)).expect("create");
        let b = key_file(&dir.path().join(KEY_FILE)).expect("read");
        assert_eq!(a, b);
        std::fs::write(dir.path().join(KEY_FILE), "zz").expect("write");
        assert!(matches!(
            key_file(&dir.path().join(KEY_FILE)),
            Err(KeyError::Invalid(_))
        ));
        assert!(matches!(
            Keys::load(Some("short"), Some(dir.path())),
            Err(KeyError::Short)
        ));
    }
}
