//! The User-Agent parser. Holds: always a tool name; the product token and
//! version are cut from the input, bounded in length, and parsing is
//! deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pullstats::pipeline::enrich::useragent::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(ua) = std::str::from_utf8(data) else {
        return;
    };
    let info = parse(ua);
    assert!(!info.tool.is_empty());
    assert!(info.tool.len() <= 64 + 8, "{:?}", info.tool);
    for field in [&info.product, &info.version, &info.os, &info.arch]
        .into_iter()
        .flatten()
    {
        assert!(field.len() <= ua.len().max(16), "{field:?} from {ua:?}");
    }
    assert_eq!(parse(ua), info);
});
