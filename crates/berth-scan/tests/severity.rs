//! Severities from every source an offline site can bring: NVD CVE JSON 2.0, CVE List V5
//! records and the Debian security tracker's JSON (fixtures in `tests/data/severity`, see its
//! README), imported beside the real Debian advisories of the vendored pack, whose records
//! carry no score of their own.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use berth_scan::formats::{Format, detect, to_osv};
use berth_scan::{Database, Ecosystem, Finding, OsvRecord, Package, Severity, read_jsonl};

fn data(name: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/severity").join(name)).unwrap()
}

fn records(name: &str) -> Vec<OsvRecord> {
    to_osv(&data(name)).unwrap().into_iter().map(|v| serde_json::from_value(v).unwrap()).collect()
}

fn debian_pack(db: &mut Database) {
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vulndb/osv/Debian/debian-12.jsonl.gz");
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(f).unwrap());
    assert_eq!(read_jsonl(std::io::BufReader::new(gz), |r| db.add(&r)).unwrap(), 0);
}

fn finding(db: &Database, source_package: &str, version: &str, cve: &str) -> Finding {
    let p = Package {
        ecosystem: Ecosystem::parse("Debian:12").unwrap(),
        name: source_package.into(),
        version: version.into(),
    };
    let m = db.matches(&p);
    m.findings
        .into_iter()
        .find(|f| f.id == cve)
        .unwrap_or_else(|| panic!("{cve} not found for {source_package} {version}"))
}

#[test]
fn the_importers_read_each_format() {
    assert_eq!(detect(&data("nvdcve-2.0-fixture.json")), Some(Format::Nvd));
    assert_eq!(detect(&data("CVE-2023-5363.json")), Some(Format::Cve5));
    assert_eq!(detect(&data("debian-security-tracker-fixture.json")), Some(Format::DebianTracker));

    let nvd = records("nvdcve-2.0-fixture.json");
    let ids: Vec<&str> = nvd.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["NVD-CVE-2021-3449", "NVD-CVE-2023-5363", "NVD-CVE-2023-99999"]);
    assert_eq!(nvd[0].aliases, ["CVE-2021-3449"]);
    assert_eq!(nvd[0].modified, "2024-11-21T06:21:38.087Z", "NVD's zone-less times are UTC");
    let kinds: Vec<&str> = nvd[0].severity.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["CVSS_V3", "CVSS_V2"]);
    assert_eq!(
        nvd[1].severity[0].score, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
        "NVD's Primary before a Secondary"
    );
    assert!(nvd[2].withdrawn.is_some(), "a rejected CVE is withdrawn");
    assert!(nvd[0].details.as_deref().unwrap().starts_with("An OpenSSL TLS server"), "the English description");

    let cve5 = records("CVE-2023-5363.json");
    assert_eq!((cve5[0].id.as_str(), &cve5[0].aliases[..]), ("CVE5-CVE-2023-5363", &["CVE-2023-5363".to_owned()][..]));
    assert_eq!(cve5[0].database_specific.as_ref().unwrap()["severity_source"], "CVE record (ADP CISA-ADP)");

    let tracker = records("debian-security-tracker-fixture.json");
    let ids: Vec<&str> = tracker.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "DEBIAN-TRACKER-CVE-2021-3449",
            "DEBIAN-TRACKER-CVE-2023-45853",
            "DEBIAN-TRACKER-CVE-2023-5363",
            "DEBIAN-TRACKER-CVE-2024-2398",
            "DEBIAN-TRACKER-CVE-2024-7264"
        ],
        "one record per CVE; TEMP- ids skipped"
    );
    // Not affected in bookworm ("0") and only bullseye left: an entry for Debian:11 only.
    let r = &tracker[0];
    assert_eq!(r.affected.len(), 1);
    assert_eq!(r.affected[0].package.as_ref().unwrap().ecosystem, "Debian:11");
    // sid is not a release with a number: left out.
    assert_eq!(tracker[2].affected.len(), 1);
}

#[test]
fn debian_findings_take_the_score_of_their_cve_and_say_who_gave_it() {
    let mut db = Database::new();
    debian_pack(&mut db);
    let before = finding(&db, "openssl", "3.0.11-1~deb12u1", "CVE-2023-5363");
    assert_eq!(
        (before.severity, before.severity_source.as_deref()),
        (Severity::Unknown, None),
        "the pack has no score"
    );

    // A CVE record alone: its ADP's CVSS.
    for r in records("CVE-2023-5363.json") {
        db.add(&r);
    }
    let f = finding(&db, "openssl", "3.0.11-1~deb12u1", "CVE-2023-5363");
    assert_eq!(
        (f.severity, f.cvss.as_ref().map(|c| c.0), f.severity_source.as_deref()),
        (Severity::Medium, Some(5.3), Some("CVE record (ADP CISA-ADP)"))
    );
    // NVD takes precedence over a CVE record's score.
    for r in records("nvdcve-2.0-fixture.json") {
        db.add(&r);
    }
    assert_eq!((db.scores, db.withdrawn), (2 + 1, 1), "two NVD and one CVE record scored; the rejected one withdrawn");
    let f = finding(&db, "openssl", "3.0.11-1~deb12u1", "CVE-2023-5363");
    assert_eq!(
        (f.severity, f.cvss.clone(), f.severity_source.as_deref()),
        (Severity::High, Some((7.5, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N".to_owned())), Some("NVD"))
    );
    assert!(f.ids.contains(&"DEBIAN-CVE-2023-5363".to_owned()));
    assert_eq!(f.fixed_version.as_deref(), Some("3.0.11-1~deb12u2"));

    // The tracker: its statuses, and its urgency where nothing scores the CVE.
    for r in records("debian-security-tracker-fixture.json") {
        db.add(&r);
    }
    let f = finding(&db, "openssl", "3.0.11-1~deb12u1", "CVE-2023-5363");
    assert_eq!((f.severity, f.severity_source.as_deref(), f.status.as_deref()), (Severity::High, Some("NVD"), None));
    assert!(f.ids.contains(&"DEBIAN-TRACKER-CVE-2023-5363".to_owned()), "one finding for both Debian sources");
    let zlib = finding(&db, "zlib", "1:1.2.13.dfsg-1", "CVE-2023-45853");
    assert_eq!(
        (zlib.severity, zlib.severity_source.as_deref(), zlib.status.as_deref(), zlib.fixed_version.as_deref()),
        (Severity::Low, Some("Debian security tracker (urgency unimportant)"), Some("will not fix"), None)
    );
    let curl = finding(&db, "curl", "7.88.1-10+deb12u5", "CVE-2024-7264");
    assert_eq!((curl.severity, curl.status.as_deref()), (Severity::Low, Some("fix postponed")));
    let curl = finding(&db, "curl", "7.88.1-10+deb12u5", "CVE-2024-2398");
    assert_eq!((curl.severity, curl.fixed_version.as_deref()), (Severity::Medium, Some("7.88.1-10+deb12u6")));
    // CVE-2021-3449 never affected bookworm's OpenSSL 3.
    let m = db.matches(&Package {
        ecosystem: Ecosystem::parse("Debian:12").unwrap(),
        name: "openssl".into(),
        version: "3.0.11-1~deb12u1".into(),
    });
    assert!(m.findings.iter().all(|f| f.id != "CVE-2021-3449"));
}

#[test]
fn the_cve_record_fixture_is_valid_against_the_official_schema() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let script = "import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
errors = list(jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).iter_errors(doc))
print('\\n'.join(e.message for e in errors))
sys.exit(1 if errors else 0)";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("schemas/CVE_JSON_bundled_5.1.1.json"))
        .arg(dir.join("data/severity/CVE-2023-5363.json"))
        .output()
        .expect("python3 with jsonschema (bash .ci/install.sh installs it)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
