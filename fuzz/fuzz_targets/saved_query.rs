//! Saved-query parameters (`pullstats query NAME --param k=v`). Holds: the
//! SQL is always the template with the values as quoted literals (or
//! digits): outside string literals and comments, every rendering has the
//! same text as the defaults' rendering, up to the digits of numbers.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use pullstats::query::saved::{all, parse_param};

/// The SQL outside string literals and `--` comments, digits as `0`.
fn skeleton(sql: &str) -> String {
    let mut out = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                // A literal: `''` inside is a quote.
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                        }
                        Some('\'') | None => break,
                        Some(_) => {}
                    }
                }
                out.push_str("''");
            }
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                out.push('\n');
            }
            c if c.is_ascii_digit() => {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                out.push('0');
            }
            c => out.push(c),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let queries = all();
    let mut chars = text.chars();
    let Some(pick) = chars.next() else {
        return;
    };
    let query = &queries[pick as usize % queries.len()];
    let rest = chars.as_str();
    let mut values = BTreeMap::new();
    for line in rest.split('\n') {
        if let Ok((k, v)) = parse_param(line) {
            values.insert(k, v);
        }
    }
    let Ok(sql) = query.render(&values) else {
        return; // an unknown parameter or a non-integer: a clear error
    };
    let defaults = query.render(&BTreeMap::new()).expect("the defaults render");
    assert_eq!(skeleton(&sql), skeleton(&defaults), "{values:?}\n{sql}");
});
