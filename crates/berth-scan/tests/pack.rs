//! The real advisory pack (`testdata/vulndb`, vendored with its licences): every file loads, and
//! known records match the versions they should — and not the ones they should not.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::time::Instant;

use berth_scan::{Database, Ecosystem, Package, Severity, read_jsonl};

fn pack() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vulndb/osv")
}

fn load() -> Database {
    let mut db = Database::new();
    let started = Instant::now();
    let mut files = 0;
    let mut bad = 0;
    for eco in std::fs::read_dir(pack()).expect("the vulndb pack beside the checkout") {
        for f in std::fs::read_dir(eco.unwrap().path()).unwrap() {
            let f = f.unwrap().path();
            let gz = flate2::read::GzDecoder::new(std::fs::File::open(&f).unwrap());
            bad += read_jsonl(std::io::BufReader::new(gz), |r| db.add(&r)).unwrap();
            files += 1;
        }
    }
    assert_eq!((files, bad), (7, 0));
    eprintln!("loaded {} advisories in {:?}", db.len(), started.elapsed());
    db
}

fn pkg(eco: &str, name: &str, version: &str) -> Package {
    Package { ecosystem: Ecosystem::parse(eco).unwrap(), name: name.into(), version: version.into() }
}

fn ids(db: &Database, p: &Package) -> Vec<String> {
    db.matches(p).findings.iter().flat_map(|f| f.ids.clone()).collect()
}

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap();
    kb / 1024
}

#[test]
fn the_real_pack_loads_and_matches() {
    let before = rss_mib();
    let db = load();
    // The index of the whole pack (39,268 records) is bounded: under 200 MiB of RSS.
    let grown = rss_mib().saturating_sub(before);
    eprintln!("the index of the whole pack takes {grown} MiB of RSS");
    assert!(grown < 200, "{grown} MiB");
    // Counts from the pack's MANIFEST: 39,268 records in all, 40 of them withdrawn.
    assert_eq!(db.records + db.withdrawn, 2661 + 1206 + 4291 + 475 + 2 + 22994 + 7639);
    assert_eq!(db.withdrawn, 40);

    // Debian 12, by source package and dpkg ordering.
    let p = pkg("Debian:12", "openssl", "3.0.11-1~deb12u1");
    assert!(ids(&db, &p).contains(&"DEBIAN-CVE-2023-5363".to_owned()));
    assert!(!ids(&db, &pkg("Debian:12", "openssl", "3.0.11-1~deb12u2")).contains(&"DEBIAN-CVE-2023-5363".to_owned()));
    assert!(!ids(&db, &pkg("Debian:12", "openssl", "3.0.11-1~deb12u1")).contains(&"DEBIAN-CVE-2021-3449".to_owned()));
    let f = db.matches(&p).findings.into_iter().find(|f| f.ids.contains(&"DEBIAN-CVE-2023-5363".to_owned())).unwrap();
    assert_eq!((f.id.as_str(), f.fixed_version.as_deref()), ("CVE-2023-5363", Some("3.0.11-1~deb12u2")));

    // Alpine, by branch.
    let a = |v: &str| ids(&db, &pkg("Alpine:v3.17", "openssl", v));
    assert!(a("3.0.11-r0").contains(&"ALPINE-CVE-2023-5363".to_owned()));
    assert!(!a("3.0.12-r0").contains(&"ALPINE-CVE-2023-5363".to_owned()));

    // PyPI: PEP 503 names, GIT ranges ignored, aliases grouped.
    let m = db.matches(&pkg("PyPI", "Requests", "2.30.0"));
    let f = m.findings.iter().find(|f| f.ids.contains(&"PYSEC-2023-74".to_owned())).unwrap();
    assert_eq!((f.id.as_str(), f.fixed_version.as_deref()), ("CVE-2023-32681", Some("2.31.0")));
    assert!(f.ids.contains(&"GHSA-j8r2-6x86-q33q".to_owned()));
    assert!(!ids(&db, &pkg("PyPI", "requests", "2.31.0")).contains(&"PYSEC-2023-74".to_owned()));
    assert!(!ids(&db, &pkg("PyPI", "requests", "2.2.1")).contains(&"PYSEC-2023-74".to_owned()));

    // crates.io: two introduced/fixed pairs.
    let c = |v: &str| ids(&db, &pkg("crates.io", "smallvec", v));
    assert!(c("0.6.10").contains(&"RUSTSEC-2021-0003".to_owned()));
    assert!(!c("0.6.14").contains(&"RUSTSEC-2021-0003".to_owned()));
    assert!(c("1.6.0").contains(&"RUSTSEC-2021-0003".to_owned()));
    assert!(!c("1.6.1").contains(&"RUSTSEC-2021-0003".to_owned()));
    assert!(!c("0.6.2").contains(&"RUSTSEC-2021-0003".to_owned()));

    // A record with only a CVSS v4 vector still gets a severity.
    let m = db.matches(&pkg("crates.io", "cap-primitives", "3.4.0"));
    let f = m.findings.iter().find(|f| f.ids.contains(&"RUSTSEC-2024-0445".to_owned())).unwrap();
    assert!(f.cvss.as_ref().is_some_and(|(_, v)| v.starts_with("CVSS:4.0/")), "{f:?}");
    assert_ne!(f.severity, Severity::Unknown);

    // Go stdlib: 1.20.0-0 is the lowest pre-release of 1.20.
    let g = |v: &str| ids(&db, &pkg("Go", "stdlib", v));
    assert!(g("1.20.2").contains(&"GO-2023-1704".to_owned()));
    assert!(!g("1.20.3").contains(&"GO-2023-1704".to_owned()));
    assert!(g("1.19.7").contains(&"GO-2023-1704".to_owned()));
    assert!(!g("1.19.8").contains(&"GO-2023-1704".to_owned()));

    // npm: several ranges; severities from GHSA's own rating.
    let n = |name: &str, v: &str| ids(&db, &pkg("npm", name, v));
    assert!(n("axios", "0.27.2").contains(&"GHSA-wf5p-g6vw-rhxx".to_owned()));
    assert!(!n("axios", "0.28.0").contains(&"GHSA-wf5p-g6vw-rhxx".to_owned()));
    assert!(n("axios", "1.5.1").contains(&"GHSA-wf5p-g6vw-rhxx".to_owned()));
    let m = db.matches(&pkg("npm", "minimist", "1.2.0"));
    let f = m.findings.iter().find(|f| f.ids.contains(&"GHSA-xvch-5gv4-984h".to_owned())).unwrap();
    assert_eq!((f.id.as_str(), f.severity), ("CVE-2021-44906", Severity::Critical));
    assert!(n("minimist", "1.2.6").iter().all(|i| i != "GHSA-xvch-5gv4-984h"));
}
