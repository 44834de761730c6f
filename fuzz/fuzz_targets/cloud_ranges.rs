//! One cloud providers' IP-range file (JSON of any provider, or one prefix
//! per line). Holds: a file is added or refused with an error naming it;
//! after it, lookups answer for any address, and the built-in ranges stay.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pullstats::pipeline::enrich::cloud::CloudRanges;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut ranges = CloudRanges::builtin();
    let before = ranges.sources().len();
    for name in [
        "ip-ranges.json",
        "ServiceTags_Public.json",
        "cloud.json",
        "ranges.txt",
    ] {
        let path = Path::new(name);
        match ranges.add_file(path, text) {
            Ok(()) => assert!(ranges.sources().len() > before),
            Err(e) => assert!(e.to_string().contains(name), "{e}"),
        }
    }
    let seed = data
        .iter()
        .fold(0u128, |a, &b| a.rotate_left(5) ^ u128::from(b));
    for ip in [
        IpAddr::V4(Ipv4Addr::from(seed as u32)),
        IpAddr::V6(Ipv6Addr::from(seed)),
        IpAddr::V4(Ipv4Addr::new(52, 94, 76, 1)),
    ] {
        let _ = ranges.lookup(ip);
    }
});
