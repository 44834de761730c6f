//! The query string of the API's series (`timespan`, `period`, `group`,
//! `from`, `to`). Holds: a bad value is refused naming a parameter; what
//! parses gives a non-empty span of at most 400 days, ending no later than
//! a custom `to`, cut into contiguous periods.
#![no_main]

use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;
use pullstats::api::params::{query_pairs, Params, MAX_DAYS};

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let pairs = query_pairs(Some(query));
    let params = match Params::parse(&pairs) {
        Ok(p) => p,
        Err(e) => {
            assert!(["timespan", "period", "group", "from", "to"].contains(&e.parameter));
            assert!(!e.detail.is_empty());
            return;
        }
    };
    let today = NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
    let span = params.span(today);
    assert!(span.from < span.to, "{span:?}");
    assert!(span.len_days() <= MAX_DAYS, "{span:?}");
    let periods = span.periods(params.granularity());
    assert_eq!(periods.first().map(|p| p.from), Some(span.from));
    assert_eq!(periods.last().map(|p| p.to), Some(span.to));
    for w in periods.windows(2) {
        assert_eq!(w[0].to, w[1].from);
    }
});
