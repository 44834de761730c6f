//! Validation shared by the commands: durations, the IP hash key, sizes.
//!
//! clap parses flags and `PULLSTATS_*` environment variables; the functions
//! here turn raw values into validated ones and are used as clap
//! `value_parser`s, so bad values are usage errors (exit 2) that name the flag.

use std::time::Duration;

use crate::pipeline::enrich::{IpHasher, INSECURE_DEFAULT_KEY};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no IP hash key: set PULLSTATS_IP_HASH_KEY (a long random secret; keep it stable, \
         unique-IP counts depend on it) or pass --insecure-default-key for a demo"
    )]
    NoIpHashKey,
    #[error("invalid IP hash key: {0}")]
    BadIpHashKey(String),
}

/// `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 5s, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=30.0 * 86_400.0).contains(&secs) {
        return Err(format!("`{s}` is out of range (0 to 30 days)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A ratio in `[0, 1]`.
pub fn parse_ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is not between 0 and 1"))
    }
}

/// The IP hasher from the configured key; refuses to run without one unless
/// the insecure default was asked for (and then says so loudly).
pub fn ip_hasher(key: Option<&str>, insecure_default: bool) -> Result<IpHasher, ConfigError> {
    match key.filter(|k| !k.is_empty()) {
        Some(k) => IpHasher::new(k).map_err(|e| ConfigError::BadIpHashKey(e.to_string())),
        None if insecure_default => {
            tracing::warn!(
                "using the INSECURE default IP hash key: ip_hash values can be reversed by \
                 anyone who knows this build; set PULLSTATS_IP_HASH_KEY for real data"
            );
            IpHasher::new(INSECURE_DEFAULT_KEY)
                .map_err(|e| ConfigError::BadIpHashKey(e.to_string()))
        }
        None => Err(ConfigError::NoIpHashKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999h").is_err());
    }

    #[test]
    fn ratios() {
        assert_eq!(parse_ratio("0.05"), Ok(0.05));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("x").is_err());
    }

    #[test]
    fn key_is_required_unless_insecure_default() {
        assert!(matches!(
            ip_hasher(None, false),
            Err(ConfigError::NoIpHashKey)
        ));
        assert!(matches!(
            ip_hasher(Some(""), false),
            Err(ConfigError::NoIpHashKey)
        ));
        assert!(ip_hasher(None, true).is_ok());
        assert!(ip_hasher(Some("secret"), false).is_ok());
    }
}
