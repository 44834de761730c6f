//! The pulls badge: shields.io's endpoint schema
//! (`{"schemaVersion": 1, "label", "message", "color"}`) and an SVG of the
//! same text, numbers written as shields writes them.

use serde::Serialize;

pub const LABEL: &str = "pulls";
pub const COLOR: &str = "blue";
/// `blue` as shields draws it.
const COLOR_HEX: &str = "#007ec6";

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub schema_version: u8,
    pub label: &'static str,
    pub message: String,
    pub color: &'static str,
}

pub fn endpoint(pulls: u64) -> Endpoint {
    Endpoint {
        schema_version: 1,
        label: LABEL,
        message: metric(pulls),
        color: COLOR,
    }
}

const PREFIXES: [&str; 8] = ["k", "M", "G", "T", "P", "E", "Z", "Y"];

/// A count as shields' `metric` formatter writes it: below 1000 as is;
/// else scaled to the largest prefix it reaches, with one decimal below 10
/// unless that decimal is 0 (1234 → `1.2k`, 1000 → `1k`), rounded, halves
/// up (1250 → `1.3k`, 35000 → `35k`, 999_500 → `1M`).
pub fn metric(n: u64) -> String {
    let n = u128::from(n);
    for (i, prefix) in PREFIXES.iter().enumerate().rev() {
        let limit = 1000u128.pow(i as u32 + 1);
        if n < limit {
            continue;
        }
        if n < 10 * limit {
            let tenths = (n * 10 + limit / 2) / limit;
            if !tenths.is_multiple_of(10) {
                return format!("{}.{}{prefix}", tenths / 10, tenths % 10);
            }
        }
        let rounded = (n + limit / 2) / limit;
        return match (rounded < 1000, PREFIXES.get(i + 1)) {
            (true, _) => format!("{rounded}{prefix}"),
            (false, Some(next)) => format!("1{next}"),
            (false, None) => format!("{rounded}{prefix}"),
        };
    }
    n.to_string()
}

/// Width of `text` in Verdana 11px, about (shields measures glyphs; this
/// is close enough for digits, letters and `.`).
fn text_width(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '.' | ',' => 4,
            'i' | 'l' | 'I' | '1' => 5,
            'm' | 'M' | 'W' | 'w' => 10,
            _ => 7,
        })
        .sum()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A flat badge with `label` on grey and `message` on blue.
pub fn svg(message: &str) -> String {
    let (label, message) = (escape(LABEL), escape(message));
    let lw = text_width(LABEL) + 10;
    let mw = text_width(&message) + 10;
    let w = lw + mw;
    format!(
        concat!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {message}">"##,
            r##"<title>{label}: {message}</title>"##,
            r##"<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>"##,
            r##"<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>"##,
            r##"<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g>"##,
            r##"<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">"##,
            r##"<text x="{lx}" y="14">{label}</text><text x="{mx}" y="14">{message}</text></g></svg>"##,
        ),
        w = w,
        lw = lw,
        mw = mw,
        lx = lw / 2,
        mx = lw + mw / 2,
        label = label,
        message = message,
        color = COLOR_HEX,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case(0, "0")]
    #[case(999, "999")]
    #[case(1000, "1k")]
    #[case(1234, "1.2k")]
    #[case(1250, "1.3k")]
    #[case(1249, "1.2k")]
    #[case(9950, "10k")]
    #[case(35_000, "35k")]
    #[case(35_500, "36k")]
    #[case(999_499, "999k")]
    #[case(999_500, "1M")]
    #[case(1_234_567, "1.2M")]
    #[case(12_345_678_901, "12G")]
    #[case(u64::MAX, "18E")]
    fn numbers_as_shields_writes_them(#[case] n: u64, #[case] text: &str) {
        assert_eq!(metric(n), text);
    }

    #[test]
    fn the_endpoint_has_exactly_shields_keys() {
        let v = serde_json::to_value(endpoint(1_234_567)).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"schemaVersion": 1, "label": "pulls", "message": "1.2M", "color": "blue"})
        );
        let s = svg("1.2M");
        assert!(s.starts_with("<svg") && s.contains(">1.2M</text>") && s.contains(">pulls</text>"));
    }
}
