//! Saved queries: the documented SQL files of `queries/`, compiled into the
//! binary so an installed `pullstats` has them, run with parameters.
//!
//! A file starts with `--` comment lines: the first ones describe it, and
//! `-- param: NAME DEFAULT` (or `NAME:int`) declares a parameter used as
//! `{{NAME}}` in the SQL. Text parameters are substituted with single quotes
//! doubled, integers must be digits, so a parameter cannot end a string
//! literal and inject SQL.

use std::collections::BTreeMap;

/// Every saved query: (name, text).
pub const QUERIES: &[(&str, &str)] = &[
    (
        "client-versions",
        include_str!("../../queries/client-versions.sql"),
    ),
    ("cloud-share", include_str!("../../queries/cloud-share.sql")),
    ("daily-pulls", include_str!("../../queries/daily-pulls.sql")),
    (
        "pulls-by-country",
        include_str!("../../queries/pulls-by-country.sql"),
    ),
    ("top-tags", include_str!("../../queries/top-tags.sql")),
    (
        "version-check-ratio",
        include_str!("../../queries/version-check-ratio.sql"),
    ),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SavedQueryError {
    #[error("no saved query `{0}` (see `pullstats query --list`)")]
    Unknown(String),
    #[error("query `{query}` has no parameter `{param}` (it takes: {known})")]
    UnknownParam {
        query: String,
        param: String,
        known: String,
    },
    #[error("parameter `{param}` must be a whole number, not `{value}`")]
    NotInt { param: String, value: String },
    #[error("`{0}` is not key=value")]
    BadParam(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub default: String,
    pub int: bool,
}

#[derive(Debug, Clone)]
pub struct SavedQuery {
    pub name: &'static str,
    pub description: String,
    pub params: Vec<Param>,
    sql: &'static str,
}

impl SavedQuery {
    fn parse(name: &'static str, text: &'static str) -> Self {
        let mut description = Vec::new();
        let mut params = Vec::new();
        for line in text.lines().map_while(|l| l.strip_prefix("--")) {
            let line = line.trim();
            if let Some(p) = line.strip_prefix("param:") {
                let mut parts = p.split_whitespace();
                let decl = parts.next().unwrap_or_default();
                let (pname, int) = match decl.strip_suffix(":int") {
                    Some(n) => (n, true),
                    None => (decl, false),
                };
                params.push(Param {
                    name: pname.to_owned(),
                    default: parts.collect::<Vec<_>>().join(" "),
                    int,
                });
            } else {
                description.push(line.to_owned());
            }
        }
        Self {
            name,
            description: description.join(" "),
            params,
            sql: text,
        }
    }

    /// The SQL with `values` (by name) or the defaults substituted.
    pub fn render(&self, values: &BTreeMap<String, String>) -> Result<String, SavedQueryError> {
        for key in values.keys() {
            if !self.params.iter().any(|p| &p.name == key) {
                return Err(SavedQueryError::UnknownParam {
                    query: self.name.to_owned(),
                    param: key.clone(),
                    known: self
                        .params
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let mut sql = self.sql.to_owned();
        for p in &self.params {
            let value = values.get(&p.name).unwrap_or(&p.default);
            let text = if p.int {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SavedQueryError::NotInt {
                        param: p.name.clone(),
                        value: value.clone(),
                    });
                }
                value.clone()
            } else {
                value.replace('\'', "''")
            };
            sql = sql.replace(&format!("{{{{{}}}}}", p.name), &text);
        }
        Ok(sql)
    }
}

/// Every saved query, parsed.
pub fn all() -> Vec<SavedQuery> {
    QUERIES
        .iter()
        .map(|(n, t)| SavedQuery::parse(n, t))
        .collect()
}

pub fn find(name: &str) -> Result<SavedQuery, SavedQueryError> {
    all()
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| SavedQueryError::Unknown(name.to_owned()))
}

/// `key=value` → (key, value).
pub fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| SavedQueryError::BadParam(s.to_owned()).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_queries_is_listed_documented_and_renders() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("queries/")
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".sql")
                    .map(str::to_owned)
            })
            .collect();
        on_disk.sort();
        let listed: Vec<String> = QUERIES.iter().map(|(n, _)| (*n).to_owned()).collect();
        assert_eq!(on_disk, listed);
        for q in all() {
            assert!(!q.description.is_empty(), "{}", q.name);
            let sql = q.render(&BTreeMap::new()).expect("defaults render");
            assert!(!sql.contains("{{"), "{}: unsubstituted parameter", q.name);
        }
    }

    #[test]
    fn parameters_cannot_inject_sql() {
        let q = find("top-tags").expect("exists");
        let values = BTreeMap::from([("from".to_owned(), "x' OR 1=1 --".to_owned())]);
        assert!(q
            .render(&values)
            .expect("renders")
            .contains("'x'' OR 1=1 --'"));
        let values = BTreeMap::from([("limit".to_owned(), "5; DROP".to_owned())]);
        assert!(matches!(
            q.render(&values),
            Err(SavedQueryError::NotInt { .. })
        ));
        let values = BTreeMap::from([("nope".to_owned(), "1".to_owned())]);
        assert!(matches!(
            q.render(&values),
            Err(SavedQueryError::UnknownParam { .. })
        ));
        assert!(find("missing").is_err());
        assert_eq!(parse_param("a=b=c"), Ok(("a".to_owned(), "b=c".to_owned())));
        assert!(parse_param("novalue").is_err());
    }
}
