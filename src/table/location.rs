//! Where a table lives: a local directory, or a prefix in an object store
//! (`s3://`, `gs://`, `az://`, `abfss://`, … through deltalake's backends).
//!
//! A `--table` value with `://` is a URL and must name a store we can
//! serve; anything else is a path. `s3:/x` typed by mistake is a path, but
//! `ftp://host/x` is an error, never a directory named `ftp:`.
//!
//! Credentials come from the standard environment (`AWS_*`, `GOOGLE_*`,
//! `AZURE_*`, profiles, instance roles) and from `--storage-option`
//! ([`set_storage_options`]); never from the URL, so that a location can
//! be printed and logged as it is.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use deltalake::{DeltaResult, DeltaTableBuilder};
use url::Url;

use super::local_store::LocalStore;

/// The object-store schemes deltalake's `s3`, `gcs` and `azure` backends
/// register (the features this crate builds with).
pub const REMOTE_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss"];

/// A table's location; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    /// Always with a bucket (host) and no credentials, query or fragment
    /// (boxed: errors carry a location, and stay small).
    Remote(Box<Url>),
}

impl Location {
    /// Parses a `--table` value (the clap `value_parser`).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty table location".into());
        }
        let Some((scheme, _)) = text.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(text)));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            let url = Url::parse(text).map_err(|e| format!("not a valid file:// URL: {e}"))?;
            return url
                .to_file_path()
                .map(Location::Local)
                .map_err(|()| "a file:// URL must name an absolute local path".into());
        }
        if !REMOTE_SCHEMES.contains(&scheme.as_str()) {
            // The scheme is the user's own text: print it escaped.
            return Err(format!(
                "unsupported table URL scheme {:?}: use a local path, file://, or one of {}",
                scheme,
                REMOTE_SCHEMES
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut url = Url::parse(text).map_err(|e| format!("not a valid {scheme}:// URL: {e}"))?;
        // abfs(s)://<filesystem>@<account>… puts the filesystem where a
        // user name would be: Azure's own form, not a credential.
        let user_is_filesystem = matches!(scheme.as_str(), "abfs" | "abfss");
        if url.password().is_some() || (!url.username().is_empty() && !user_is_filesystem) {
            // Never echo it: the text holds a secret.
            return Err(
                "credentials do not belong in the table URL: use the environment (AWS_ACCESS_KEY_ID, …) or --storage-option"
                    .into(),
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(
                "the table URL takes no query or fragment (pass settings with --storage-option)"
                    .into(),
            );
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "{scheme}:// needs a bucket: {scheme}://BUCKET/PREFIX"
            ));
        }
        let trimmed = url.path().trim_end_matches('/').to_owned();
        if trimmed.is_empty() {
            // The rejected table and the session state live beside the
            // table, which a bucket's root has no room for.
            return Err(format!(
                "{scheme}:// needs a prefix after the bucket: {scheme}://BUCKET/PREFIX"
            ));
        }
        url.set_path(&trimmed);
        Ok(Location::Remote(Box::new(url)))
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Location::Local(_))
    }

    /// The directory, for a local table.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Remote(_) => None,
        }
    }

    /// The location beside this one with `suffix` added to its last
    /// segment: `<table>.rejected`, `<table>.dead-letter.jsonl`.
    pub fn beside(&self, suffix: &str) -> Location {
        match self {
            Location::Local(path) => {
                let mut name = path
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_else(|| "pulls".into());
                name.push(suffix);
                Location::Local(path.with_file_name(name))
            }
            Location::Remote(url) => {
                let mut url = url.clone();
                let path = format!("{}{suffix}", url.path().trim_end_matches('/'));
                url.set_path(&path);
                Location::Remote(url)
            }
        }
    }

    /// The location as deltalake takes it: a `file://` URL of the
    /// (canonical) directory, created first when `create` is set, or the
    /// object-store URL as it is.
    pub fn url(&self, create: bool) -> Result<Url, String> {
        let path = match self {
            Location::Remote(url) => return Ok((**url).clone()),
            Location::Local(path) => path,
        };
        if create {
            std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        }
        let abs = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
        if !abs.is_dir() {
            return Err("not a directory".into());
        }
        Url::from_directory_path(&abs).map_err(|()| "not an absolute path".into())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Remote(url) => write!(f, "{url}"),
        }
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Location::Local(path.to_owned())
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Self {
        Location::Local(path.clone())
    }
}

impl From<&Location> for Location {
    fn from(location: &Location) -> Self {
        location.clone()
    }
}

/// A clap value parser over `parse` whose errors do not repeat the value
/// (clap's own do: `invalid value 's3://KEY:SECRET@…'`), for values that
/// may hold a secret: table URLs and storage options.
#[derive(Clone, Copy)]
pub struct Unechoed<T>(pub fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Unechoed<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg.map_or_else(|| "the value".to_owned(), |a| format!("'{a}'"));
        let fail = |reason: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for {name}: {reason}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| fail("not UTF-8".into()))?;
        (self.0)(text).map_err(fail)
    }
}

static STORAGE_OPTIONS: OnceLock<HashMap<String, String>> = OnceLock::new();

/// Sets the `--storage-option`s every table of this process opens with
/// (once, at start; later calls are ignored).
pub fn set_storage_options(options: &[StorageOption]) {
    let map = options
        .iter()
        .map(|o| (o.key.clone(), o.value.clone()))
        .collect();
    let _ = STORAGE_OPTIONS.set(map);
}

/// A deltalake builder for the table at `url` with the storage options;
/// a local table's store lists its log faster ([`LocalStore`]).
pub fn builder(url: Url) -> DeltaResult<DeltaTableBuilder> {
    let mut builder = DeltaTableBuilder::from_url(url.clone())?;
    if url.scheme() == "file" {
        builder = builder.with_storage_backend(Arc::new(LocalStore::new()), url);
    }
    Ok(match STORAGE_OPTIONS.get() {
        Some(options) if !options.is_empty() => builder.with_storage_options(options.clone()),
        _ => builder,
    })
}

/// One `--storage-option KEY=VALUE`; its value may be a secret, so its
/// `Debug` shows the key only.
#[derive(Clone)]
pub struct StorageOption {
    pub key: String,
    pub value: String,
}

impl fmt::Debug for StorageOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=…", self.key)
    }
}

/// Parses one `--storage-option KEY=VALUE`.
pub fn parse_storage_option(text: &str) -> Result<StorageOption, String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok(StorageOption {
            key: key.trim().to_owned(),
            value: value.to_owned(),
        }),
        _ => Err("expected KEY=VALUE".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("pulls", "pulls")]
    #[case("./data/pulls", "./data/pulls")]
    #[case("s3:/lake", "s3:/lake")]
    fn paths_stay_paths(#[case] text: &str, #[case] path: &str) {
        assert_eq!(
            Location::parse(text),
            Ok(Location::Local(PathBuf::from(path)))
        );
    }

    #[rstest]
    #[case("s3://lake/pulls", "s3://lake/pulls")]
    #[case("S3://lake/pulls/", "s3://lake/pulls")]
    #[case("gs://lake/a/b", "gs://lake/a/b")]
    #[case(
        "abfss://fs@account.dfs.core.windows.net/pulls",
        "abfss://fs@account.dfs.core.windows.net/pulls"
    )]
    fn urls_of_known_stores(#[case] text: &str, #[case] url: &str) {
        match Location::parse(text) {
            Ok(Location::Remote(u)) => assert_eq!(u.as_str(), url),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[rstest]
    #[case("ftp://host/pulls", "unsupported table URL scheme")]
    #[case("http://host/pulls", "unsupported table URL scheme")]
    #[case("s3://key:secret@lake/pulls", "credentials do not belong")]
    #[case("s3://lake/pulls?x=1", "no query")]
    #[case("s3:///pulls", "needs a bucket")]
    #[case("s3://lake", "needs a prefix")]
    #[case("s3://lake/", "needs a prefix")]
    #[case("", "empty")]
    fn bad_locations_are_errors(#[case] text: &str, #[case] message: &str) {
        let err = Location::parse(text).expect_err(text);
        assert!(err.contains(message), "{text}: {err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn storage_option_values_are_not_shown() {
        let o = parse_storage_option("AWS_SECRET_ACCESS_KEY=hunter2=x").expect("parse");
        assert_eq!(o.value, "hunter2=x");
        assert_eq!(format!("{o:?}"), "AWS_SECRET_ACCESS_KEY=…");
        assert!(parse_storage_option("=x").is_err());
        assert!(parse_storage_option("novalue").is_err());
    }

    #[test]
    fn abfss_user_is_the_filesystem_not_a_credential() {
        // abfss://<filesystem>@<account>… is Azure's own form.
        assert!(Location::parse("abfss://fs@account.dfs.core.windows.net/p").is_ok());
    }

    #[test]
    fn file_urls_are_local() {
        assert_eq!(
            Location::parse("file:///tmp/pulls"),
            Ok(Location::Local(PathBuf::from("/tmp/pulls")))
        );
    }

    #[test]
    fn beside_adds_to_the_last_segment() {
        let remote = Location::parse("s3://lake/stats/pulls").unwrap();
        assert_eq!(
            remote.beside(".rejected").to_string(),
            "s3://lake/stats/pulls.rejected"
        );
        let local = Location::parse("data/pulls").unwrap();
        assert_eq!(local.beside(".rejected").to_string(), "data/pulls.rejected");
    }
}
