//! Berth's version orderings against each ecosystem's own implementation: tables produced
//! by `dpkg --compare-versions`, Python `packaging`, node-semver and rpm's `rpm.vercmp`
//! over real versions from the advisory pack (each file's first line says how).

#![allow(clippy::unwrap_used, missing_docs)]

use std::cmp::Ordering;

use berth_scan::Scheme;

fn check(file: &str, scheme: Scheme) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut n = 0;
    let mut wrong = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let want = match f[2] {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            ">" => Ordering::Greater,
            other => panic!("{file}: bad result {other:?}"),
        };
        n += 1;
        match scheme.compare(f[0], f[1]) {
            Some(got) if got == want => {}
            got => wrong.push(format!("{} vs {}: reference {:?}, Berth {got:?}", f[0], f[1], want)),
        }
    }
    assert!(n > 300, "{file}: only {n} cases");
    assert!(wrong.is_empty(), "{file}: {} of {n} differ:\n{}", wrong.len(), wrong[..wrong.len().min(30)].join("\n"));
}

#[test]
fn dpkg_matches_dpkg() {
    check("dpkg.tsv", Scheme::Dpkg);
}

#[test]
fn pep440_matches_packaging() {
    check("pep440.tsv", Scheme::Pep440);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pep440_invalid.txt");
    let refused: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect();
    let accepted: Vec<&String> = refused.iter().filter(|v| Scheme::Pep440.parse(v).is_some()).collect();
    assert!(accepted.is_empty(), "packaging refuses these, Berth parses them: {accepted:?}");
}

#[test]
fn semver_matches_node_semver() {
    check("semver.tsv", Scheme::SemVer);
}

#[test]
fn rpm_matches_rpm() {
    check("rpm.tsv", Scheme::Rpm);
}
