//! Packages recorded inside real ELF executables: `cargo auditable`'s `.dep-v0` section,
//! added to a copy of a real binary with binutils' objcopy, in the format cargo-auditable
//! writes (zlib-compressed JSON). Go build info is checked on real Go binaries by the
//! scanner's integration tests (crates/berth/tests/it/scan.rs).

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;

use berth_scan::inventory::{Kind, LayerStack};

fn layer(path: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, path, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn cargo_auditable_data_is_read_from_an_elf_section() {
    let dir = tempfile::tempdir().unwrap();
    let json = br#"{"packages":[{"name":"myapp","version":"0.1.0","source":"local","kind":"runtime","root":true,"dependencies":[1]},{"name":"smallvec","version":"0.6.9","source":"crates.io","kind":"runtime"},{"name":"cc","version":"1.0.0","source":"crates.io","kind":"build"}]}"#;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json).unwrap();
    std::fs::write(dir.path().join("dep.z"), z.finish().unwrap()).unwrap();
    let bin = dir.path().join("app");
    std::fs::copy("/usr/bin/true", &bin).unwrap();
    let out = std::process::Command::new("objcopy")
        .arg("--add-section")
        .arg(format!(".dep-v0={}", dir.path().join("dep.z").display()))
        .arg(&bin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut s = LayerStack::new();
    s.apply(0, &layer("usr/local/bin/app", &std::fs::read(&bin).unwrap())[..]).unwrap();
    let got: Vec<(Kind, String, String)> =
        s.inventory().packages.into_iter().map(|p| (p.kind, p.name, p.version)).collect();
    assert_eq!(
        got,
        vec![(Kind::Cargo, "smallvec".into(), "0.6.9".into())],
        "runtime registry crates only: the local root is the application itself, and cc ran at build time"
    );
}
