//! A MaxMind database file (any kind, truncated or corrupt). Holds: it opens
//! or is refused with an error, never a crash (a database caught mid-copy);
//! an opened one answers lookups of any address.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pullstats::pipeline::enrich::geo::{GeoDb, GeoInfo};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.mmdb");
    let db = match GeoDb::parse(path, data.to_vec()) {
        Ok(db) => db,
        Err(e) => {
            assert!(e.to_string().contains("fuzz.mmdb"), "{e}");
            return;
        }
    };
    let seed = data
        .iter()
        .fold(0u128, |a, &b| a.rotate_left(7) ^ u128::from(b));
    for ip in [
        IpAddr::V4(Ipv4Addr::from(seed as u32)),
        IpAddr::V4(Ipv4Addr::new(81, 2, 69, 160)),
        IpAddr::V6(Ipv6Addr::from(seed)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0x218, 0, 0, 0, 0, 0, 1)),
    ] {
        let mut info = GeoInfo::default();
        db.fill(ip, &mut info);
    }
});
