//! The binary as a user runs it: `berth config check`, and a full disk.

use std::process::Command;

use reqwest::StatusCode;

use crate::support::*;

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn config_check_validates_every_example_and_names_bad_keys() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for e in std::fs::read_dir(&examples).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "toml") {
            let out = berth().args(["config", "check"]).arg(e.path()).env_remove("BERTH_LISTEN").output().unwrap();
            assert!(out.status.success(), "{:?}: {}", e.path(), String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));
            checked += 1;
        }
    }
    assert!(checked >= 1, "examples/ holds config files");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:5000\"\n[storage]\nbakend = \"filesystem\"\n").unwrap();
    let out = berth().args(["config", "check"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bakend") && err.contains("bad.toml"), "{err}");
    let out = berth()
        .args(["config", "check"])
        .arg(examples.join("berth.toml"))
        .env("BERTH_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));
}

/// Mounts a small tmpfs for the test's data directory and unmounts it on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs needs root (CI and developer machines run as root)");
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_the_push_and_leaves_nothing_half_visible() {
    let disk = SmallDisk::new("6m");
    let s = TestServer::start_with(|c| {
        c.data_dir = disk.dir.path().to_owned();
        c.storage = berth_config::StorageConfig::Filesystem { path: disk.dir.path().join("blobs") };
        c.metadata = berth_config::MetadataConfig::Sqlite { path: disk.dir.path().join("meta.db") };
    })
    .await;
    let before = s.push_image("full/app", "ok").await;
    let big = random_bytes(8 * 1024 * 1024);
    let d = sha256(&big);
    // monolithic
    let r = s
        .client
        .post(s.url(&format!("/v2/full/app/blobs/uploads/?digest={d}")))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let body = expect_error(r, StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("full"), "{body}");
    expect_error(s.get(&format!("/v2/full/app/blobs/{d}")).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    // chunked: the chunk fails, the session stays consistent
    let r = s.client.post(s.url("/v2/full/app/blobs/uploads/")).send().await.unwrap();
    let loc = location(&r);
    let r = s.client.patch(s.url(&loc)).body(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let r = s.client.put(s.url(&format!("{loc}?digest={d}"))).send().await.unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(s.delete(&loc).await.status(), 204, "the partial upload can be cancelled, freeing its bytes");
    // no blob file on disk holds bytes other than its name says
    for shard in std::fs::read_dir(disk.dir.path().join("blobs/blobs/sha256")).unwrap().flatten() {
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            assert_eq!(sha256(&std::fs::read(f.path()).unwrap())[7..], *f.file_name().to_str().unwrap());
        }
    }
    // earlier content is intact, and small pushes work again once space is free
    let r = s.get("/v2/full/app/manifests/ok").await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), &before[..]);
    s.push_image("full/app", "after").await;
    s.stop().await;
}
