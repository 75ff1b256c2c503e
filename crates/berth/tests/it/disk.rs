//! The binary as a user runs it: `berth config check`, and a full disk.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

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

    // The metadata database's disk full: a manifest (its bytes live in the database) is
    // refused with 507, nothing of it is visible, and writes resume once there is space.
    let blobs = s.upload_image_blobs("full/app", 1000).await;
    let mut doc: Value = serde_json::from_slice(&blobs).unwrap();
    doc["annotations"] = serde_json::json!({"pad": "x".repeat(1 << 20)});
    let manifest = serde_json::to_vec(&doc).unwrap();
    let filler = disk.dir.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let r = s.put_manifest("full/app", "meta-full", OCI_MANIFEST, &manifest).await;
    let body = expect_error(r, StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("full"), "{body}");
    // The management API too. A small write may still fit in the write-ahead log's file (its
    // space is reused once the log starts over) and is then stored like any other; writes go on
    // until one needs space the disk does not have.
    let mut stored = Vec::new();
    let refused = loop {
        let name = format!("while-full-{}", stored.len());
        let r = s.api(reqwest::Method::POST, "/projects", Some(serde_json::json!({"project_name": name}))).await;
        match r.status() {
            StatusCode::CREATED if stored.len() < 2000 => stored.push(name),
            _ => break r,
        }
    };
    assert_eq!(
        refused.status(),
        StatusCode::INSUFFICIENT_STORAGE,
        "the management API too: {:?}",
        refused.text().await
    );
    std::fs::remove_file(&filler).unwrap();
    for name in &stored {
        assert_eq!(
            s.api(reqwest::Method::GET, &format!("/projects/{name}"), None).await.status(),
            200,
            "{name} was stored"
        );
    }
    assert_eq!(s.get("/v2/full/app/manifests/meta-full").await.status(), 404, "nothing half-visible");
    assert_eq!(s.put_manifest("full/app", "meta-full", OCI_MANIFEST, &manifest).await.status(), 201);
    assert_eq!(s.get("/v2/full/app/manifests/ok").await.bytes().await.unwrap().as_ref(), &before[..]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_role_expires_uploads_through_jobs_and_jobs_list_shows_them() {
    // Split roles share a PostgreSQL database (an embedded data directory is served by one
    // process only); blobs stay on the filesystem.
    let url = berth_test_support::postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let meta_env = [("BERTH_METADATA_BACKEND", "postgres".to_owned()), ("BERTH_METADATA_URL", url.clone())];
    let env = |role: &str| {
        let mut e = vec![
            ("BERTH_ROLE".to_owned(), role.to_owned()),
            ("BERTH_UPLOADS_TTL".to_owned(), "1".to_owned()),
            ("BERTH_UPLOADS_SWEEP_INTERVAL".to_owned(), "1".to_owned()),
        ];
        e.extend(meta_env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        e
    };
    let (mut api, base) = crate::crash::spawn_berth_with(&data, None, &env("api"));
    let http = client_as(ADMIN, ADMIN_PASSWORD);
    let r = http.post(format!("{base}/v2/jobs/app/blobs/uploads/")).send().await.unwrap();
    let loc = location(&r);
    // the api role runs no jobs: the session outlives its TTL
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(http.get(format!("{base}{loc}")).send().await.unwrap().status(), 204);
    // a worker on the same data: serves health and metrics, not the registry API, and expires it
    let (mut worker, wbase) = crate::crash::spawn_berth_with(&data, None, &env("worker"));
    assert_eq!(http.get(format!("{wbase}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{wbase}/v2/")).send().await.unwrap().status(), 404);
    eventually("the worker's upload-expiry job removed the idle session", async || {
        let st = http.get(format!("{base}{loc}")).send().await.unwrap().status();
        if st == 404 { Ok(()) } else { Err(st) }
    })
    .await;
    let jobs = eventually("a succeeded job in the list", async || {
        let out = berth()
            .args(["jobs", "list", "--kind", "upload-expiry", "--output", "json", "--data-dir"])
            .arg(&data)
            .envs(meta_env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if jobs.as_array().unwrap().iter().any(|j| j["state"] == "succeeded") { Ok(jobs) } else { Err(jobs) }
    })
    .await;
    assert!(
        jobs.as_array().unwrap().iter().any(|j| j["state"] == "succeeded" && j["kind"] == "upload-expiry"),
        "{jobs}"
    );
    api.kill().unwrap();
    worker.kill().unwrap();
    api.wait().unwrap();
    worker.wait().unwrap();
    let text = berth()
        .args(["jobs", "list", "--data-dir"])
        .arg(&data)
        .envs(meta_env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("upload-expiry"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobservice_api_needs_a_system_administrator_and_shows_and_stops_jobs() {
    use berth_meta::{JobQueue, NewJob};
    // anonymous callers are refused; a system administrator (here by Basic credentials) is let in
    let s = TestServer::start().await;
    let r = s.anon().get(s.url("/api/v2.0/jobservice/jobs")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("authentication required"), "{body}");
    // without an operator token configured, bearer tokens are refused with a reason
    let r = s.anon().get(s.url("/api/v2.0/jobservice/jobs")).bearer_auth("anything").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("admin_token"), "{body}");
    assert_eq!(s.get("/api/v2.0/jobservice/jobs").await.status(), StatusCode::OK);
    s.stop().await;

    // the operator token acts as a system administrator
    let s = TestServer::start_with(|c| c.admin_token = Some(berth_config::Secret::new("op-secret-123"))).await;
    let anon = s.anon();
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth("op-secret-123");
    for bad in [None, Some("wrong"), Some("op-secret-1234")] {
        let mut req = anon.get(s.url("/api/v2.0/jobservice/jobs"));
        if let Some(t) = bad {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    // a job that is not due yet, to look at and stop
    let meta = berth_meta::SqlMetaStore::open_sqlite(s.data_dir().join("meta.db")).await.unwrap();
    let now = berth_jobs::now_ms();
    let job = NewJob {
        kind: "upload-expiry".into(),
        payload: "{}".into(),
        dedup_key: None,
        max_attempts: 3,
        run_after: now + 3_600_000,
    };
    let id = meta.enqueue(&job, now).await.unwrap().unwrap();
    let r = auth(anon.get(s.url("/api/v2.0/jobservice/jobs?state=queued"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let list: serde_json::Value = r.json().await.unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id && j["job_type"] == "upload-expiry" && j["status"] == "queued"),
        "{list}"
    );
    let q: serde_json::Value =
        auth(anon.get(s.url("/api/v2.0/jobservice/queues"))).send().await.unwrap().json().await.unwrap();
    assert!(
        q.as_array().unwrap().iter().any(|e| e["job_type"] == "upload-expiry" && e["count"].as_i64().unwrap() >= 1),
        "{q}"
    );
    let r = auth(anon.put(s.url(&format!("/api/v2.0/jobservice/jobs/{id}"))))
        .json(&serde_json::json!({"action": "stop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j: serde_json::Value =
        auth(anon.get(s.url(&format!("/api/v2.0/jobservice/jobs/{id}")))).send().await.unwrap().json().await.unwrap();
    assert_eq!(j["status"], "cancelled");
    let r = auth(anon.put(s.url(&format!("/api/v2.0/jobservice/jobs/{id}"))))
        .json(&serde_json::json!({"action": "stop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = auth(anon.put(s.url(&format!("/api/v2.0/jobservice/jobs/{id}"))))
        .json(&serde_json::json!({"action": "dance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(auth(anon.get(s.url("/api/v2.0/jobservice/jobs/nope"))).send().await.unwrap().status(), 404);
    let r = auth(anon.get(s.url("/api/v2.0/jobservice/jobs?state=bogus"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private_and_served_by_one_process() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // An installation from before the rule: a world-readable directory and database.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = berth().args(["migrate", "--data-dir"]).arg(&data).env_remove("BERTH_LISTEN").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::set_permissions(data.join("meta.db"), std::fs::Permissions::from_mode(0o644)).unwrap();

    let (mut first, base) = crate::crash::spawn_berth(&data);
    assert_eq!((mode(&data), mode(&data.join("meta.db"))), (0o700, 0o600), "fixed on start");
    // What it creates is private too: a pushed blob, the lock file.
    let client = client_as(ADMIN, ADMIN_PASSWORD);
    let digest = sha256(b"private bytes");
    let r = client
        .post(format!("{base}/v2/p/app/blobs/uploads/?digest={digest}"))
        .body(&b"private bytes"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let hex = digest.trim_start_matches("sha256:");
    let blob = walk(&data).into_iter().find(|p| p.ends_with(hex)).expect("the blob file");
    assert_eq!(mode(&blob), 0o600, "{}", blob.display());
    assert_eq!(mode(&data.join("berth.lock")), 0o600);

    // A second server on the same directory refuses to start, naming the first.
    let out = berth()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("BERTH_LISTEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("another berth (PID {}) is already serving the data directory", first.id())),
        "{err}"
    );
    // Once the first is gone (even killed), the directory can be served again.
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut again, _) = crate::crash::spawn_berth(&data);
    again.kill().unwrap();
    again.wait().unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_running_and_restore_into_a_fresh_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut child, base) = crate::crash::spawn_berth(&data);
    let s = TestServer::attach(&base, Vec::new());
    let mut images = Vec::new();
    for (repo, tag) in [("bk/one", "v1"), ("bk/two", "v1"), ("bk/two", "v2"), ("other/app", "latest")] {
        images.push((repo, tag, s.push_image(repo, tag).await));
    }
    // A push racing the backup must not break it.
    let racing = {
        let s2 = TestServer::attach(&base, Vec::new());
        tokio::spawn(async move {
            for i in 0..5 {
                s2.push_image("bk/racing", &format!("r{i}")).await;
            }
        })
    };
    let backup = tmp.path().join("backup");
    let out = berth().args(["backup", "--to"]).arg(&backup).arg("--data-dir").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("backed up ") && said.contains("blobs"), "{said}");
    racing.await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // A backup goes only into an empty directory; a restore only into a new data directory.
    let err = berth().args(["backup", "--to"]).arg(&backup).arg("--data-dir").arg(&data).output().unwrap();
    assert!(String::from_utf8_lossy(&err.stderr).contains("is not empty"));
    let err = berth().args(["restore", "--from"]).arg(&backup).arg("--data-dir").arg(&data).output().unwrap();
    assert!(String::from_utf8_lossy(&err.stderr).contains("restore into a new data directory"));

    // The key sealing upstream passwords goes with the backup, readable by its owner only.
    let key = std::fs::read(data.join("secret.key")).unwrap();
    assert_eq!(std::fs::read(backup.join("secret.key")).unwrap(), key);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(backup.join("secret.key")).unwrap().permissions().mode() & 0o777, 0o600);

    let fresh = tmp.path().join("fresh");
    let out = berth().args(["restore", "--from"]).arg(&backup).arg("--data-dir").arg(&fresh).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(fresh.join("secret.key")).unwrap(), key, "the restored server can unseal");
    let (mut child, base) = crate::crash::spawn_berth(&fresh);
    let s = TestServer::attach(&base, Vec::new());
    for (repo, tag, manifest) in &images {
        let r = s.get(&format!("/v2/{repo}/manifests/{tag}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{repo}:{tag}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &manifest[..]);
        let m: Value = serde_json::from_slice(manifest).unwrap();
        for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
            let digest = d["digest"].as_str().unwrap();
            let bytes = s.get(&format!("/v2/{repo}/blobs/{digest}")).await.bytes().await.unwrap();
            assert_eq!(sha256(&bytes), digest, "{repo} blob reads back with its digest");
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The documented PostgreSQL + S3 backup: pause GC, `pg_dump`, copy the bucket prefix,
/// resume; restored into a new database and a new prefix, every image pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_s3_backup_by_the_documented_procedure_restores_every_image() {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let s = TestServer::start_on(Backend::S3Postgres).await;
    let mut images = Vec::new();
    for (repo, tag) in [("pgbk/one", "v1"), ("pgbk/two", "v1"), ("pgbk/two", "v2")] {
        images.push((repo, tag, s.push_image(repo, tag).await));
    }
    let url = s.meta_env.iter().find(|(k, _)| k == "BERTH_METADATA_URL").unwrap().1.clone();
    let berth = || {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base).env("BERTH_PASSWORD", ADMIN_PASSWORD);
        c
    };
    run_ok(berth().args(["gc", "pause", "--for", "1h"])).await;
    let keep = tempfile::tempdir().unwrap();
    let dump = keep.path().join("berth.dump");
    run_ok(tokio::process::Command::new("pg_dump").args(["-Fc", "-f"]).arg(&dump).arg(&url)).await;
    // A copy of the prefix under another one (as `aws s3 sync` would do).
    let loc = berth_test_support::s3_location();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&loc.endpoint)
        .with_bucket_name(&loc.bucket)
        .with_region("us-east-1")
        .with_access_key_id(&loc.access_key_id)
        .with_secret_access_key(&loc.secret_access_key)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    let from = s.s3_prefix.clone().unwrap();
    let listed: Vec<object_store::ObjectMeta> =
        store.list(Some(&object_store::path::Path::from(from.as_str()))).try_collect().await.unwrap();
    assert!(!listed.is_empty());
    for o in &listed {
        let rest = o.location.as_ref().strip_prefix(&format!("{from}/")).unwrap().to_owned();
        let to = object_store::path::Path::from(format!("{}/{rest}", loc.prefix));
        store.copy(&o.location, &to).await.unwrap();
    }
    run_ok(berth().args(["gc", "resume"])).await;
    s.stop().await;
    // The original is lost: the copy must stand on its own.
    for o in &listed {
        store.delete(&o.location).await.unwrap();
    }

    // Restore: a new database from the dump, the copied prefix, a new server.
    let restored = berth_test_support::postgres_database().await;
    run_ok(tokio::process::Command::new("pg_restore").args(["--no-owner", "-d"]).arg(&restored).arg(&dump)).await;
    let r = TestServer::start_with(move |c| {
        c.metadata = berth_config::MetadataConfig::Postgres { url: berth_config::Secret::new(restored), pool_size: 4 };
        c.storage = berth_config::StorageConfig::S3(berth_config::S3Config {
            endpoint: Some(loc.endpoint),
            region: "us-east-1".into(),
            bucket: loc.bucket,
            prefix: loc.prefix,
            access_key_id: Some(loc.access_key_id),
            secret_access_key: Some(berth_config::Secret::new(loc.secret_access_key)),
            path_style: true,
            part_size: 5 * 1024 * 1024,
        });
    })
    .await;
    for (repo, tag, manifest) in &images {
        let got = r.get(&format!("/v2/{repo}/manifests/{tag}")).await.bytes().await.unwrap();
        assert_eq!(got.as_ref(), &manifest[..], "{repo}:{tag}");
        let m: Value = serde_json::from_slice(manifest).unwrap();
        for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
            let d = d["digest"].as_str().unwrap();
            let body = r.get(&format!("/v2/{repo}/blobs/{d}")).await.bytes().await.unwrap();
            assert_eq!(sha256(&body), d, "{repo}@{d} restored from the copied prefix");
        }
    }
    r.stop().await;
}
