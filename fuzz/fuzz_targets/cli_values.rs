//! The values of flags and config keys: durations, sizes, ratios, ISO
//! weeks, months, day ranges, retention windows, trend spans. Holds: what
//! parses is well-formed (a week is Monday to Sunday, a month starts on its
//! 1st, a range is not empty, periods cover their span without gaps).
#![no_main]

use chrono::{Datelike, NaiveDate, Weekday};
use libfuzzer_sys::fuzz_target;
use pullstats::query::span::{parse_keep, parse_last, Granularity, Span};
use pullstats::units::{parse_bytes, parse_duration, parse_ratio};

fn covers(span: &Span) {
    if span.len_days() > 5000 {
        return;
    }
    for g in [Granularity::Week, Granularity::Month] {
        let periods = span.periods(g);
        assert_eq!(periods.first().map(|p| p.from), Some(span.from));
        assert_eq!(periods.last().map(|p| p.to), Some(span.to));
        for w in periods.windows(2) {
            assert_eq!(w[0].to, w[1].from);
        }
        assert!(periods.iter().all(|p| p.from < p.to && p.len_days() <= 31));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(s) {
        assert!(d.as_secs() <= 30 * 86_400, "{s} → {d:?}");
    }
    if let Ok(n) = parse_bytes(s) {
        assert!(n > 0, "{s}");
    }
    if let Ok(r) = parse_ratio(s) {
        assert!((0.0..=1.0).contains(&r), "{s}");
    }
    if let Ok(w) = Span::week(s) {
        assert_eq!(w.from.weekday(), Weekday::Mon, "{s}");
        assert_eq!(w.len_days(), 7, "{s}");
        covers(&w);
    }
    if let Ok(m) = Span::month(s) {
        assert_eq!(m.from.day(), 1, "{s}");
        assert!((28..=31).contains(&m.len_days()), "{s}");
        covers(&m);
    }
    if let Some((from, to)) = s.split_once(',') {
        if let Ok(d) = Span::days(from, to) {
            assert!(d.from < d.to, "{s}");
            covers(&d);
        }
    }
    let today = NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
    if let Ok(keep) = parse_keep(s) {
        assert!(keep.first_kept_day(today) < today, "{s}");
    }
    if let Ok(months) = parse_last(s) {
        assert!([3, 6, 12].contains(&months));
        for g in [Granularity::Week, Granularity::Month] {
            let span = Span::trailing(g, months, today);
            assert!(span.from < span.to && span.to <= today, "{span:?}");
            covers(&span);
        }
    }
});
