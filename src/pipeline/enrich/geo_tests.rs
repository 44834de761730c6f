//! Tests of MaxMind DB reading on databases built here with a writer crate,
//! in both the GeoIP2 and the flat schema, plus MaxMind's own test files
//! from `../shared/data/mmdb` when they are beside the checkout.

use std::path::{Path, PathBuf};

use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use maxminddb_writer::Database;
use serde::Serialize;

use super::*;

#[derive(Serialize)]
pub(crate) struct Iso {
    pub iso_code: &'static str,
}

#[derive(Serialize)]
pub(crate) struct EnterpriseTraits {
    pub user_type: &'static str,
    pub domain: &'static str,
    pub organization: &'static str,
    pub autonomous_system_number: u32,
}

/// GeoIP2 Enterprise schema.
#[derive(Serialize)]
pub(crate) struct Enterprise {
    pub country: Iso,
    pub traits: EnterpriseTraits,
}

/// The flat schema of ip-location-db style redistributions.
#[derive(Serialize)]
pub(crate) struct FlatCountry {
    pub country_code: &'static str,
}

#[derive(Serialize)]
pub(crate) struct FlatAsn {
    pub autonomous_system_number: u32,
    pub autonomous_system_organization: &'static str,
}

#[derive(Serialize)]
struct Junk {
    colour: &'static str,
}

/// Writes an IPv6 MaxMind DB (IPv4 networks at `::a.b.c.d`, as MaxMind
/// does) with one record per network.
pub(crate) fn write_db<T: Serialize>(path: &Path, database_type: &str, entries: Vec<(&str, T)>) {
    let mut db = Database::default();
    db.metadata.ip_version = IpVersion::V6;
    db.metadata.database_type = database_type.to_owned();
    db.metadata.binary_format_major_version = 2;
    db.metadata.languages = vec!["en".to_owned()];
    for (net, value) in entries {
        let (addr, len) = net.split_once('/').expect("cidr");
        let len: u8 = len.parse().expect("len");
        let (addr, len) = match addr.parse::<IpAddr>().expect("addr") {
            IpAddr::V4(v4) => (IpAddr::V6(v4.to_ipv6_compatible()), len + 96),
            v6 => (v6, len),
        };
        let data = db.insert_value(value).expect("value");
        db.insert_node(IpAddrWithMask::new(addr, len), data);
    }
    let file = std::fs::File::create(path).expect("create");
    db.write_to(std::io::BufWriter::new(file))
        .expect("write db");
}

pub(crate) fn enterprise_db(dir: &Path) -> PathBuf {
    let path = dir.join("enterprise.mmdb");
    write_db(
        &path,
        "GeoIP2-Enterprise",
        vec![
            (
                "198.51.100.0/24",
                Enterprise {
                    country: Iso { iso_code: "DE" },
                    traits: EnterpriseTraits {
                        user_type: "business",
                        domain: "acme.example",
                        organization: "Acme GmbH",
                        autonomous_system_number: 64500,
                    },
                },
            ),
            (
                "2001:db8::/32",
                Enterprise {
                    country: Iso { iso_code: "JP" },
                    traits: EnterpriseTraits {
                        user_type: "residential",
                        domain: "isp.example",
                        organization: "Example ISP",
                        autonomous_system_number: 64501,
                    },
                },
            ),
        ],
    );
    path
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn geoip2_schema_fills_country_type_domain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let geo = Geo::open(&[enterprise_db(dir.path())]).expect("opens");
    assert_eq!(geo.databases()[0].kind(), DbKind::Enterprise);
    let info = geo.lookup(ip("198.51.100.20"));
    assert_eq!(info.country.as_deref(), Some("DE"));
    assert_eq!(info.user_type.as_deref(), Some("business"));
    assert_eq!(info.domain.as_deref(), Some("acme.example"));
    assert_eq!(info.asn, Some(64500));
    let v6 = geo.lookup(ip("2001:db8::42"));
    assert_eq!(v6.country.as_deref(), Some("JP"));
    assert_eq!(geo.lookup(ip("192.0.2.1")), GeoInfo::default());
}

#[test]
fn flat_schema_is_detected_and_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let country = dir.path().join("country.mmdb");
    write_db(
        &country,
        "geo-whois-asn-country",
        vec![("203.0.113.0/24", FlatCountry { country_code: "FR" })],
    );
    let asn = dir.path().join("asn.mmdb");
    write_db(
        &asn,
        "ip-location-db asn",
        vec![(
            "203.0.113.0/24",
            FlatAsn {
                autonomous_system_number: 16509,
                autonomous_system_organization: "AMAZON-02",
            },
        )],
    );
    let geo = Geo::open(&[country, asn]).expect("opens");
    assert_eq!(geo.databases()[0].kind(), DbKind::Flat);
    assert_eq!(geo.databases()[1].kind(), DbKind::Asn);
    let info = geo.lookup(ip("203.0.113.5"));
    assert_eq!(info.country.as_deref(), Some("FR"));
    assert_eq!(info.asn, Some(16509));
    assert_eq!(info.organization.as_deref(), Some("AMAZON-02"));
}

#[test]
fn unknown_and_corrupt_files_fail_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.mmdb");
    write_db(
        &junk,
        "Colours",
        vec![("198.51.100.0/24", Junk { colour: "blue" })],
    );
    let err = Geo::open(&[junk]).expect_err("unknown");
    assert!(matches!(err, GeoError::Unknown { .. }));
    assert!(err.to_string().contains("junk.mmdb"));

    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"this is not a database").expect("write");
    let err = Geo::open(&[garbage]).expect_err("garbage");
    assert!(err.to_string().contains("garbage.mmdb"), "{err}");

    let missing = dir.path().join("missing.mmdb");
    assert!(Geo::open(&[missing])
        .expect_err("missing")
        .to_string()
        .contains("missing.mmdb"));
}

fn shared_mmdb(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/mmdb")
        .join(name);
    p.is_file().then_some(p)
}

#[test]
fn maxminds_own_test_databases() {
    let (Some(city), Some(asn), Some(domain)) = (
        shared_mmdb("GeoIP2-City-Test.mmdb"),
        shared_mmdb("GeoLite2-ASN-Test.mmdb"),
        shared_mmdb("GeoIP2-Domain-Test.mmdb"),
    ) else {
        return; // shared/ sits beside the checkout in CI and development
    };
    let geo = Geo::open(&[city, asn, domain]).expect("MaxMind test DBs open");
    let kinds: Vec<_> = geo.databases().iter().map(GeoDb::kind).collect();
    assert_eq!(kinds, [DbKind::Country, DbKind::Asn, DbKind::Domain]);
    assert_eq!(geo.lookup(ip("81.2.69.142")).country.as_deref(), Some("GB"));
    assert_eq!(
        geo.lookup(ip("89.160.20.112")).country.as_deref(),
        Some("SE")
    );
    assert_eq!(geo.lookup(ip("2001:218::1")).country.as_deref(), Some("JP"));
    assert_eq!(geo.lookup(ip("1.128.0.0")).asn, Some(1221));
    assert_eq!(
        geo.lookup(ip("1.2.0.0")).domain.as_deref(),
        Some("maxmind.com")
    );
}

#[test]
fn maxminds_broken_test_databases_are_rejected() {
    for name in [
        "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
        "MaxMind-DB-test-broken-pointers-24.mmdb",
    ] {
        let Some(path) = shared_mmdb(name) else {
            continue;
        };
        let err = Geo::open(&[path]).expect_err(name);
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn origin_types_follow_the_documented_table() {
    assert_eq!(origin_type(Some("business"), None), Some("business"));
    assert_eq!(origin_type(Some("school"), None), Some("education"));
    assert_eq!(
        origin_type(Some("hosting"), Some("Cable/DSL")),
        Some("hosting")
    );
    assert_eq!(origin_type(Some("cellular"), None), Some("isp"));
    assert_eq!(origin_type(None, Some("Corporate")), Some("business"));
    assert_eq!(origin_type(None, Some("Cable/DSL")), Some("isp"));
    assert_eq!(origin_type(None, None), None);
    assert_eq!(origin_type(Some("something_new"), None), None);
}

/// A database cut off anywhere (as one caught mid-copy by a reload) is an
/// error naming the file, never a panic: the maxminddb crate panics on
/// some of these cuts, so opening catches that.
#[test]
fn a_database_cut_off_anywhere_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = enterprise_db(dir.path());
    let bytes = std::fs::read(&whole).expect("read");
    let cut = dir.path().join("cut.mmdb");
    for len in 0..bytes.len() {
        std::fs::write(&cut, &bytes[..len]).expect("write");
        match Geo::open(std::slice::from_ref(&cut)) {
            Err(e) => assert!(e.to_string().contains("cut.mmdb"), "{len}: {e}"),
            // A cut that keeps a whole tree and metadata is a valid file.
            Ok(geo) => assert!(!geo.is_empty(), "{len} bytes opened as nothing"),
        }
    }
    assert!(Geo::open(&[whole]).is_ok());
}

/// Found by the `mmdb` fuzz target (inputs kept in `testdata/fuzz/`): a
/// database that opens, one of whose records points out of the file (the
/// maxminddb crate 0.26 panicked looking it up), and one whose pointers form
/// a cycle (0.26 followed it until the stack overflowed: an abort, not a
/// panic). Each opens, or is refused, and its lookups come back empty.
#[test]
fn corrupt_records_are_empty_lookups_not_crashes() {
    for name in ["mmdb-record-out-of-bounds.mmdb", "mmdb-pointer-cycle.mmdb"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/fuzz")
            .join(name);
        let bytes = std::fs::read(&path).expect("testdata");
        // The addresses the fuzz target looks up.
        let seed = bytes
            .iter()
            .fold(0u128, |a, &b| a.rotate_left(7) ^ u128::from(b));
        let Ok(db) = GeoDb::parse(&path, bytes) else {
            continue;
        };
        for ip in [
            IpAddr::V4(std::net::Ipv4Addr::from(seed as u32)),
            ip("81.2.69.160"),
            IpAddr::V6(std::net::Ipv6Addr::from(seed)),
            ip("2001:218::1"),
        ] {
            let mut info = GeoInfo::default();
            db.fill(ip, &mut info);
        }
    }
}
