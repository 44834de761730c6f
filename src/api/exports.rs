//! The export endpoints: which complete weeks and months of a namespace
//! have data, and download links for a view of one of them.
//!
//! A view's CSV is `pullstats export`'s, byte for byte (the same
//! [`ExportRequest`] and writer), generated on the first request into
//! `<table>/_pullstats/exports/` and reused while the period's days keep
//! their rows: the cache key hashes the view, span, filters and the
//! period's per-day row counts, so late data makes a new export and
//! compaction does not. A large CSV is cut into parts at row ends (each
//! part with the header), every part its own signed link. Old files are
//! removed once no link to them can still be valid.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Datelike, Days, Months, NaiveDate};
use serde_json::json;
use sha2::{Digest, Sha256};
use tower::ServiceExt as _;

use super::data::Days as TableDays;
use super::keys::LinkRefusal;
use super::params::timespan;
use super::{query_pairs, sight, sql_filters, Api, ApiError, NamespaceSight, BASE};
use crate::query::export::{ExportRequest, Granularity, Span, View};
use crate::query::{self, OutputFormat};

/// Kept files are removed this long after their links were last handed
/// out, beyond the links' own lifetime.
const KEEP_AFTER_TTL: Duration = Duration::from_secs(3600);

/// The generated exports.
pub struct Exports {
    dir: PathBuf,
    part_bytes: u64,
    /// One export generated at a time: a burst of requests for the same
    /// period runs one query, and exports never compete with each other.
    generating: tokio::sync::Mutex<()>,
}

impl Exports {
    pub fn new(dir: PathBuf, part_bytes: u64) -> Self {
        Self {
            dir,
            part_bytes: part_bytes.max(1),
            generating: tokio::sync::Mutex::new(()),
        }
    }
}

/// A complete period: its number in its year (ISO week, or month 1–12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Numbered {
    year: i32,
    number: u32,
    span: Span,
}

fn numbered(granularity: Granularity, day: NaiveDate) -> Option<Numbered> {
    match granularity {
        Granularity::Week => {
            let week = day.iso_week();
            let from =
                day.checked_sub_days(Days::new(u64::from(day.weekday().num_days_from_monday())))?;
            Some(Numbered {
                year: week.year(),
                number: week.week(),
                span: Span {
                    from,
                    to: from.checked_add_days(Days::new(7))?,
                },
            })
        }
        Granularity::Month => {
            let from = day.with_day(1)?;
            Some(Numbered {
                year: day.year(),
                number: day.month(),
                span: Span {
                    from,
                    to: from.checked_add_months(Months::new(1))?,
                },
            })
        }
    }
}

/// The complete periods (ending on or before `today`) in which the
/// repositories `seen` of `namespace` have data.
fn complete(
    days: &TableDays,
    namespace: &str,
    seen: &NamespaceSight,
    granularity: Granularity,
    today: NaiveDate,
) -> BTreeSet<Numbered> {
    days.repos
        .iter()
        .filter(|(_, repos)| {
            repos
                .keys()
                .any(|(ns, repo)| ns == namespace && seen.repos.contains(repo))
        })
        .filter_map(|(day, _)| numbered(granularity, *day))
        .filter(|p| p.span.to <= today)
        .collect()
}

fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

fn year(text: &str) -> Result<i32, ApiError> {
    text.parse()
        .ok()
        .filter(|y| (1970..=9999).contains(y))
        .ok_or_else(|| ApiError::bad("year", format!("`{text}` is not a year")))
}

fn unit(granularity: Granularity) -> &'static str {
    match granularity {
        Granularity::Week => "week",
        Granularity::Month => "month",
    }
}

pub(super) async fn years(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath(namespace): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (days, sight) = sight(&api, &headers)?;
    let seen = sight.namespace(&namespace)?;
    let years: BTreeSet<i32> = [Granularity::Week, Granularity::Month]
        .into_iter()
        .flat_map(|g| complete(&days, &namespace, seen, g, today()))
        .map(|p| p.year)
        .collect();
    let list: Vec<_> = years.into_iter().map(|y| json!({ "year": y })).collect();
    Ok(Json(json!({ "years": list })).into_response())
}

/// The periods of one year: `(namespace, year, timespan)` from the path.
fn in_year(
    days: &TableDays,
    namespace: &str,
    seen: &NamespaceSight,
    year_text: &str,
    timespan_text: &str,
) -> Result<(Granularity, Vec<Numbered>), ApiError> {
    let y = year(year_text)?;
    let g = timespan(timespan_text)?;
    let periods = complete(days, namespace, seen, g, today())
        .into_iter()
        .filter(|p| p.year == y)
        .collect();
    Ok((g, periods))
}

pub(super) async fn periods(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath((namespace, y, ts)): UrlPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (days, sight) = sight(&api, &headers)?;
    let seen = sight.namespace(&namespace)?;
    let (g, periods) = in_year(&days, &namespace, seen, &y, &ts)?;
    let list: Vec<_> = periods
        .iter()
        .map(|p| json!({ unit(g): p.number }))
        .collect();
    Ok(Json(json!({ format!("{}s", unit(g)): list })).into_response())
}

/// The one complete period a path names, or 404.
fn find(
    days: &TableDays,
    namespace: &str,
    seen: &NamespaceSight,
    (y, ts, n): (&str, &str, &str),
) -> Result<(Granularity, Numbered), ApiError> {
    let (g, periods) = in_year(days, namespace, seen, y, ts)?;
    let number: u32 = n
        .parse()
        .map_err(|_| ApiError::bad("number", format!("`{n}` is not a week or month number")))?;
    periods
        .into_iter()
        .find(|p| p.number == number)
        .map(|p| (g, p))
        .ok_or(ApiError::NotFound)
}

pub(super) async fn period(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath((namespace, y, ts, n)): UrlPath<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let (days, sight) = sight(&api, &headers)?;
    let seen = sight.namespace(&namespace)?;
    let (g, p) = find(&days, &namespace, seen, (&y, &ts, &n))?;
    Ok(Json(json!({ unit(g): p.number })).into_response())
}

fn view(text: &str) -> Result<View, ApiError> {
    match text {
        "raw" => Ok(View::Raw),
        "summary" => Ok(View::Summary),
        "repo-summary" => Ok(View::RepoSummary),
        "namespace-summary" => Ok(View::NamespaceSummary),
        _ => Err(ApiError::bad(
            "view",
            format!("view must be raw, summary, repo-summary or namespace-summary, not `{text}`"),
        )),
    }
}

/// A generated part: its file name (`<key>-<n>.csv`) and size.
type Part = (String, u64);

pub(super) async fn links(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    UrlPath((namespace, y, ts, n, v)): UrlPath<(String, String, String, String, String)>,
) -> Result<Response, ApiError> {
    let (days, sight) = sight(&api, &headers)?;
    let seen = sight.namespace(&namespace)?;
    let (_, p) = find(&days, &namespace, seen, (&y, &ts, &n))?;
    let view = view(&v)?;
    let filters = sql_filters(&namespace, &seen.extra_repos());
    let request = ExportRequest::view(view, p.span, filters);
    let key = cache_key(&request, &days.fingerprint(&p.span));
    // Generated in a task of its own: a client that gives up does not
    // stop it, and its next request finds the files ready.
    let parts = {
        let api = api.clone();
        tokio::spawn(async move { generate(&api, &key, &request).await })
            .await
            .map_err(|e| ApiError::Internal(format!("the export task failed: {e}")))??
    };
    let base = match &api.config.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    let data: Vec<_> = parts
        .iter()
        .map(|(file, size)| {
            let path = download_path(file);
            let signed = api.keys.sign_link(&path, api.config.link_ttl);
            json!({ "url": format!("{base}{path}?{signed}"), "size": size })
        })
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

fn download_path(file: &str) -> String {
    format!("{BASE}/downloads/{file}")
}

fn cache_key(request: &ExportRequest, fingerprint: &[u64]) -> String {
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}|{fingerprint:?}",
        request.view, request.span, request.filters.namespaces, request.filters.repositories
    );
    let digest = Sha256::digest(text.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn marker(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.done"))
}

/// The parts a finished export's marker lists.
fn finished(dir: &Path, key: &str) -> Option<Vec<Part>> {
    let text = std::fs::read_to_string(marker(dir, key)).ok()?;
    text.lines()
        .map(|l| {
            let (name, size) = l.split_once(' ')?;
            Some((name.to_owned(), size.parse().ok()?))
        })
        .collect()
}

/// The export's parts, generated unless a finished one is there.
async fn generate(api: &Api, key: &str, request: &ExportRequest) -> Result<Vec<Part>, ApiError> {
    let ex = &api.exports;
    let internal =
        |what: &str, e: &dyn std::fmt::Display| ApiError::Internal(format!("{what}: {e}"));
    let _one = ex.generating.lock().await;
    if let Some(parts) = finished(&ex.dir, key) {
        // Links are handed out again: keep the files as long again.
        if let Ok(f) = std::fs::File::options()
            .append(true)
            .open(marker(&ex.dir, key))
        {
            let _ = f.set_modified(SystemTime::now());
        }
        return Ok(parts);
    }
    std::fs::create_dir_all(&ex.dir)
        .map_err(|e| internal("cannot create the exports folder", &e))?;
    remove_old(&ex.dir, api.config.link_ttl + KEEP_AFTER_TTL);
    let table = api
        .catalog
        .table()
        .await
        .ok_or_else(|| ApiError::Internal("the table is not loaded".into()))?;
    let stream = request
        .run(api.catalog.path(), table.into())
        .await
        .map_err(|e| internal("the export failed", &e))?;
    let mut parts = PartWriter::new(&ex.dir, key, ex.part_bytes);
    let rows = query::write_results(stream, OutputFormat::Csv, &mut parts, &|_| ())
        .await
        .map_err(|e| internal("the export failed", &e))?;
    let written = parts
        .finish()
        .map_err(|e| internal("cannot write the export", &e))?;
    let list: String = written.iter().map(|(n, s)| format!("{n} {s}\n")).collect();
    let done = marker(&ex.dir, key);
    let tmp = done.with_extension("done.tmp");
    std::fs::write(&tmp, list)
        .and_then(|()| std::fs::rename(&tmp, &done))
        .map_err(|e| internal("cannot write the export", &e))?;
    tracing::info!(key, rows, parts = written.len(), view = ?request.view, from = %request.span.from, to = %request.span.to, "export generated");
    Ok(written)
}

/// Removes exports whose marker was last touched more than `age` ago, and
/// parts without a marker (an interrupted export) as old.
fn remove_old(dir: &Path, age: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let old = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > age)
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let key = name.split(['-', '.']).next().unwrap_or_default();
        if name.ends_with(".done") {
            if old(&path) {
                for (part, _) in finished(dir, key).unwrap_or_default() {
                    let _ = std::fs::remove_file(dir.join(part));
                }
                let _ = std::fs::remove_file(&path);
            }
        } else if !marker(dir, key).exists() && old(&path) {
            // A part of an export that never finished.
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Writes a CSV into parts of about `limit` bytes, cut only where a row
/// ends (a newline outside quotes) and each starting with the header, so
/// that every part is a CSV of its own and the parts without their
/// repeated headers are the whole.
struct PartWriter {
    dir: PathBuf,
    key: String,
    limit: u64,
    header: Vec<u8>,
    header_done: bool,
    in_quotes: bool,
    current: Option<(std::io::BufWriter<std::fs::File>, u64)>,
    parts: Vec<Part>,
}

impl PartWriter {
    fn new(dir: &Path, key: &str, limit: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            key: key.to_owned(),
            limit,
            header: Vec::new(),
            header_done: false,
            in_quotes: false,
            current: None,
            parts: Vec::new(),
        }
    }

    fn name(&self, n: usize) -> String {
        format!("{}-{n}.csv", self.key)
    }

    fn temp(&self, n: usize) -> PathBuf {
        self.dir.join(format!("{}.tmp", self.name(n)))
    }

    /// Opens the next part (with the header, after the first).
    fn open(&mut self) -> std::io::Result<()> {
        let n = self.parts.len() + usize::from(self.current.is_some()) + 1;
        self.close()?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(self.temp(n))?);
        let mut size = 0;
        if n > 1 {
            f.write_all(&self.header)?;
            size = self.header.len() as u64;
        }
        self.current = Some((f, size));
        Ok(())
    }

    fn close(&mut self) -> std::io::Result<()> {
        if let Some((f, size)) = self.current.take() {
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            let n = self.parts.len() + 1;
            self.parts.push((self.name(n), size));
        }
        Ok(())
    }

    /// Closes the last part and renames every part into place.
    fn finish(mut self) -> std::io::Result<Vec<Part>> {
        if self.current.is_none() && self.parts.is_empty() {
            self.open()?;
        }
        self.close()?;
        for (i, (name, _)) in self.parts.iter().enumerate() {
            std::fs::rename(self.temp(i + 1), self.dir.join(name))?;
        }
        Ok(self.parts)
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut start = 0;
        for (i, b) in buf.iter().enumerate() {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => {
                    self.put(&buf[start..=i])?;
                    start = i + 1;
                    self.row_ended()?;
                }
                _ => {}
            }
        }
        self.put(&buf[start..])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.current {
            Some((f, _)) => f.flush(),
            None => Ok(()),
        }
    }
}

impl PartWriter {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.current.is_none() {
            self.open()?;
        }
        if !self.header_done {
            self.header.extend_from_slice(bytes);
        }
        if let Some((f, size)) = &mut self.current {
            f.write_all(bytes)?;
            *size += bytes.len() as u64;
        }
        Ok(())
    }

    /// After a row's newline: the header is complete after the first; a
    /// part past its limit is closed (the next bytes open the next).
    fn row_ended(&mut self) -> std::io::Result<()> {
        self.header_done = true;
        if self.current.as_ref().is_some_and(|(_, s)| *s >= self.limit) {
            self.close()?;
        }
        Ok(())
    }
}

/// A part file name as we make them: `<32 hex>-<n>.csv`. Nothing else is
/// ever opened from the downloads path.
fn valid_file(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".csv") else {
        return false;
    };
    let Some((key, n)) = stem.split_once('-') else {
        return false;
    };
    key.len() == 32
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && (1..=6).contains(&n.len())
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// `GET {BASE}/downloads/{file}?expires=…&signature=…`: no token, the
/// signature is the grant; expired or altered is 403.
pub(super) async fn download(
    State(api): State<Arc<Api>>,
    UrlPath(file): UrlPath<String>,
    RawQuery(q): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    if !valid_file(&file) {
        return Err(ApiError::NotFound);
    }
    let pairs = query_pairs(q.as_deref());
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    if let Err(refusal) =
        api.keys
            .verify_link(&download_path(&file), get("expires"), get("signature"))
    {
        let detail = match refusal {
            LinkRefusal::Expired => "this download link has expired; ask the API for a new one",
            LinkRefusal::BadSignature => "this download link is not valid",
        };
        return Ok((StatusCode::FORBIDDEN, Json(json!({ "detail": detail }))).into_response());
    }
    let path = api.exports.dir.join(&file);
    if !path.is_file() {
        return Err(ApiError::NotFound);
    }
    let served = tower_http::services::ServeFile::new(&path)
        .oneshot(request)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot read {}: {e}", path.display())))?;
    let mut response = served.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = format!("attachment; filename=\"{file}\"").parse() {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cut_at_row_ends_outside_quotes_and_repeat_the_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = PartWriter::new(dir.path(), "k", 10);
        let csv = b"a,b\n1,\"x\ny\"\n2,zzzzzzzzzzzz\n3,3\n";
        // Written in odd pieces, as a CSV writer's buffer might.
        for chunk in csv.chunks(3) {
            w.write_all(chunk).expect("write");
        }
        let parts = w.finish().expect("finish");
        let texts: Vec<String> = parts
            .iter()
            .map(|(n, _)| std::fs::read_to_string(dir.path().join(n)).expect("part"))
            .collect();
        assert_eq!(
            texts,
            ["a,b\n1,\"x\ny\"\n", "a,b\n2,zzzzzzzzzzzz\n", "a,b\n3,3\n"]
        );
        let sizes: Vec<u64> = parts.iter().map(|p| p.1).collect();
        assert_eq!(sizes, [12, 19, 8]);
    }

    #[test]
    fn an_empty_export_is_one_empty_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parts = PartWriter::new(dir.path(), "k", 10)
            .finish()
            .expect("finish");
        assert_eq!(parts, [("k-1.csv".to_owned(), 0)]);
    }

    #[test]
    fn only_our_own_file_names_are_served() {
        let key = "0123456789abcdef0123456789abcdef";
        assert!(valid_file(&format!("{key}-1.csv")));
        for bad in [
            format!("{key}-1.csv/../x"),
            format!("{key}.done"),
            "../../etc/passwd".to_owned(),
            format!("{}-1.csv", key.to_uppercase()),
            format!("{key}--1.csv"),
            format!("{key}-1234567.csv"),
        ] {
            assert!(!valid_file(&bad), "{bad}");
        }
    }

    #[test]
    fn iso_weeks_and_months_are_numbered_in_their_own_year() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        // Friday 2027-01-01 is in ISO week 53 of 2026.
        let w = numbered(Granularity::Week, d("2027-01-01")).expect("week");
        assert_eq!(
            (w.year, w.number, w.span.from, w.span.to),
            (2026, 53, d("2026-12-28"), d("2027-01-04"))
        );
        let m = numbered(Granularity::Month, d("2026-02-14")).expect("month");
        assert_eq!(
            (m.year, m.number, m.span.from, m.span.to),
            (2026, 2, d("2026-02-01"), d("2026-03-01"))
        );
    }
}
