//! Garbage collection: what a run frees and keeps, Harbor's `/system/gc` API and
//! `berth gc`, and safety while clients push, mount, tag and delete (on both backends, and
//! with a SIGKILL in the middle of a run).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// Start a run through Harbor's API; returns its id.
async fn start_gc(s: &TestServer, params: Value) -> i64 {
    let body = json!({"schedule": {"type": "Manual"}, "parameters": params});
    let r = s.api(Method::POST, "/system/gc/schedule", Some(body)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let loc = location(&r);
    loc.rsplit('/').next().unwrap().parse().unwrap()
}

/// Wait for a run to end; returns its record.
async fn wait_gc(s: &TestServer, id: i64) -> Value {
    eventually(&format!("run {id} to finish"), async || {
        let r: Value = s.api(Method::GET, &format!("/system/gc/{id}"), None).await.json().await.unwrap();
        match r["job_status"].as_str().unwrap() {
            "Pending" | "Running" | "Stopping" => Err(r),
            _ => Ok(r),
        }
    })
    .await
}

/// Run a collection to its end and return what it did (`result`), asserting it succeeded.
async fn gc(s: &TestServer, params: Value) -> Value {
    let id = start_gc(s, params).await;
    let run = wait_gc(s, id).await;
    assert_eq!(run["job_status"], "Success", "{run}");
    run["result"].clone()
}

fn blob_file(s: &TestServer, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    s.data_dir().join("blobs/blobs/sha256").join(&hex[..2]).join(hex)
}

/// The blob digests an image manifest references.
fn blobs_of(manifest: &[u8]) -> Vec<String> {
    let m: Value = serde_json::from_slice(manifest).unwrap();
    std::iter::once(&m["config"])
        .chain(m["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_frees_what_deletes_left_and_keeps_everything_referenced() {
    let s = TestServer::start().await;
    let m1 = s.push_image("gc/app", "v1").await;
    let m2 = s.push_image("gc/app", "v2").await;
    let m3 = s.push_image("gc/app", "keep").await;
    let (d1, d2) = (sha256(&m1), sha256(&m2));
    // Deleted by digest: its blobs are unreferenced now. Untagged: it stays until asked.
    assert_eq!(s.delete(&format!("/v2/gc/app/manifests/{d1}")).await.status(), 202);
    assert_eq!(s.delete("/v2/gc/app/manifests/v2").await.status(), 202);
    let stray = random_bytes(3000);
    let stray_digest = s.push_blob("gc/app", &stray).await;
    let garbage: Vec<String> = blobs_of(&m1).into_iter().chain([stray_digest.clone()]).collect();
    let garbage_bytes: u64 = garbage.iter().map(|d| std::fs::metadata(blob_file(&s, d)).unwrap().len()).sum();

    // Dry run: reports, per repository, and deletes nothing.
    let dry = gc(&s, json!({"dry_run": true, "time_window": 0})).await;
    assert_eq!((dry["dry_run"].as_bool(), dry["blobs_deleted"].as_u64()), (Some(true), Some(3)), "{dry}");
    assert_eq!(dry["bytes_freed"].as_u64(), Some(garbage_bytes));
    assert_eq!(dry["repositories"]["gc/app"]["bytes"].as_u64(), Some(garbage_bytes), "{dry}");
    assert!(garbage.iter().all(|d| blob_file(&s, d).exists()), "a dry run deletes nothing");

    // Harbor's default window (2 h) keeps everything this young.
    let young = gc(&s, json!({})).await;
    assert_eq!(young["blobs_deleted"], 0, "{young}");

    let run = gc(&s, json!({"time_window": 0})).await;
    assert_eq!((run["blobs_deleted"].as_u64(), run["bytes_freed"].as_u64()), (Some(3), Some(garbage_bytes)), "{run}");
    assert_eq!(run["manifests_deleted"], 0, "untagged manifests stay unless asked: {run}");
    for d in &garbage {
        assert!(!blob_file(&s, d).exists(), "{d} freed");
        expect_error(s.get(&format!("/v2/gc/app/blobs/{d}")).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    }
    // What is referenced is intact: the tagged image, and the untagged one by digest.
    for (reference, bytes) in [("keep".to_owned(), &m3), (d2.clone(), &m2)] {
        let r = s.get(&format!("/v2/gc/app/manifests/{reference}")).await;
        assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[..]);
        for d in blobs_of(bytes) {
            let got = s.get(&format!("/v2/gc/app/blobs/{d}")).await.bytes().await.unwrap();
            assert_eq!(sha256(&got), d);
        }
    }

    // delete_untagged: the untagged manifest goes, and its blobs with it.
    let run = gc(&s, json!({"time_window": 0, "delete_untagged": true})).await;
    assert_eq!((run["manifests_deleted"].as_u64(), run["blobs_deleted"].as_u64()), (Some(1), Some(2)), "{run}");
    expect_error(s.get(&format!("/v2/gc/app/manifests/{d2}")).await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    assert!(blobs_of(&m2).iter().all(|d| !blob_file(&s, d).exists()));
    assert_eq!(s.get("/v2/gc/app/manifests/keep").await.bytes().await.unwrap().as_ref(), &m3[..]);
    // A blob freed by GC can be pushed again.
    assert_eq!(s.push_blob("gc/app", &stray).await, stray_digest);
    assert!(blob_file(&s, &stray_digest).exists());

    // History, one run and its log, in Harbor's shapes.
    let r = s.api(Method::GET, "/system/gc?page=1&page_size=2", None).await;
    assert_eq!(header(&r, "x-total-count"), Some("4"));
    assert!(header(&r, "link").unwrap().contains("rel=\"next\""));
    let list: Vec<Value> = r.json().await.unwrap();
    assert_eq!(list.len(), 2);
    let latest = &list[0];
    assert_eq!(
        (latest["job_name"].as_str(), latest["job_kind"].as_str()),
        (Some("GARBAGE_COLLECTION"), Some("MANUAL"))
    );
    let params: Value = serde_json::from_str(latest["job_parameters"].as_str().unwrap()).unwrap();
    assert_eq!((params["delete_untagged"].as_bool(), params["time_window"].as_u64()), (Some(true), Some(0)));
    assert!(latest["creation_time"].as_str().unwrap().ends_with('Z'));
    let id = latest["id"].as_i64().unwrap();
    let r = s.api(Method::GET, &format!("/system/gc/{id}/log"), None).await;
    assert!(header(&r, "content-type").unwrap().starts_with("text/plain"));
    let log = r.text().await.unwrap();
    assert!(log.contains("deleted 1 untagged manifests") && log.contains("garbage collection finished"), "{log}");
    // The audit log records each run (written by its consumer, within a second or so).
    eventually("an audit entry for the run", async || {
        let audit: Vec<Value> = s.api(Method::GET, "/audit-logs?q=operation%3Dgc", None).await.json().await.unwrap();
        if audit.iter().any(|e| e["resource"].as_str().unwrap().contains("2 blobs")) {
            Ok(())
        } else {
            Err(format!("{audit:?}"))
        }
    })
    .await;

    // Refusals in the user's words.
    let bad = s
        .api(
            Method::POST,
            "/system/gc/schedule",
            Some(json!({"schedule": {"type": "Manual"}, "parameters": {"workers": 9}})),
        )
        .await;
    let body = expect_error_api(bad, StatusCode::BAD_REQUEST).await;
    assert!(body.contains("workers must be between 1 and 5"), "{body}");
    let bad = s
        .api(
            Method::POST,
            "/system/gc/schedule",
            Some(json!({"schedule": {"type": "Manual"}, "parameters": {"dryrun": true}})),
        )
        .await;
    assert!(expect_error_api(bad, StatusCode::BAD_REQUEST).await.contains("dryrun"));
    expect_error_api(s.api(Method::GET, "/system/gc/999999", None).await, StatusCode::NOT_FOUND).await;
    s.user("gc-user", "Gc-User-Password-1").await;
    let r = client_as("gc-user", "Gc-User-Password-1").get(s.url("/api/v2.0/system/gc")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .anon()
        .post(s.url("/api/v2.0/system/gc/schedule"))
        .json(&json!({"schedule": {"type": "Manual"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The schedule: Harbor's types and six-field crons, validated.
    let r = s.api(Method::GET, "/system/gc/schedule", None).await;
    assert_eq!(r.json::<Value>().await.unwrap()["schedule"]["type"], "None");
    let set = json!({"schedule": {"type": "Custom", "cron": "0 30 3 * * *"}, "parameters": {"delete_untagged": true}});
    assert_eq!(s.api(Method::PUT, "/system/gc/schedule", Some(set)).await.status(), StatusCode::OK);
    let got: Value = s.api(Method::GET, "/system/gc/schedule", None).await.json().await.unwrap();
    assert_eq!(got["schedule"]["cron"], "0 30 3 * * *");
    assert!(got["schedule"]["next_scheduled_time"].as_str().unwrap().contains("T03:30:00"), "{got}");
    assert!(got["job_parameters"].as_str().unwrap().contains("\"delete_untagged\":true"));
    let bad = json!({"schedule": {"type": "Custom", "cron": "0 30 3 * *"}});
    let msg =
        expect_error_api(s.api(Method::PUT, "/system/gc/schedule", Some(bad)).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("six"), "{msg}");
    let bad = json!({"schedule": {"type": "Monthly"}});
    let msg =
        expect_error_api(s.api(Method::PUT, "/system/gc/schedule", Some(bad)).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("Weekly"), "{msg}");
    let none = json!({"schedule": {"type": "None"}});
    assert_eq!(s.api(Method::PUT, "/system/gc/schedule", Some(none)).await.status(), StatusCode::OK);
    s.stop().await;
}

/// Harbor's error envelope with `status`; returns the message.
async fn expect_error_api(r: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(r.status(), status);
    let v: Value = r.json().await.unwrap();
    v["errors"][0]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_gc_runs_reports_and_schedules_from_the_command_line() {
    let s = TestServer::start().await;
    let m = s.push_image("cli/gc", "v1").await;
    assert_eq!(s.delete(&format!("/v2/cli/gc/manifests/{}", sha256(&m))).await.status(), 202);
    let berth = || {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base).env("BERTH_PASSWORD", ADMIN_PASSWORD);
        c
    };
    let out = run_ok(berth().args(["gc", "run", "--dry-run", "--time-window", "0", "--wait"])).await;
    assert!(out.contains("Success") && out.contains("would free 2 blobs"), "{out}");
    assert!(out.contains("REPOSITORY") && out.contains("cli/gc"), "{out}");
    let out = run_ok(berth().args(["gc", "run", "--time-window", "0", "--wait"])).await;
    assert!(out.contains("freed 2 blobs"), "{out}");
    assert!(blobs_of(&m).iter().all(|d| !blob_file(&s, d).exists()));
    let out = run_ok(berth().args(["gc", "history"])).await;
    assert_eq!(out.lines().filter(|l| l.contains("MANUAL")).count(), 2, "{out}");
    let out = run_ok(berth().args(["gc", "status"])).await;
    assert!(out.contains("freed 2 blobs"), "{out}");
    let id = out.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let out = run_ok(berth().args(["gc", "log", &id])).await;
    assert!(out.contains("garbage collection finished"), "{out}");
    let out = run_ok(berth().args(["gc", "schedule", "--type", "Daily"])).await;
    assert!(out.contains("scheduled Daily; next run at") && out.contains("T00:00:00"), "{out}");
    let out = run_ok(berth().args(["gc", "schedule"])).await;
    assert!(out.starts_with("Daily (0 0 0 * * *)"), "{out}");
    let err = run_fails(berth().args(["gc", "schedule", "--cron", "every night"])).await;
    assert!(err.contains("400") && err.contains("cron"), "{err}");

    // Paused (for a PostgreSQL + S3 backup), a run deletes no bytes and says why; resumed, it does.
    let m2 = s.push_image("cli/gc", "v2").await;
    assert_eq!(s.delete(&format!("/v2/cli/gc/manifests/{}", sha256(&m2))).await.status(), 202);
    let out = run_ok(berth().args(["gc", "pause", "--for", "1h"])).await;
    assert!(out.contains("deletes nothing until"), "{out}");
    let err = run_fails(berth().args(["gc", "run", "--time-window", "0", "--wait"])).await;
    assert!(err.contains("Stopped") && err.contains("pause"), "{err}");
    assert!(blobs_of(&m2).iter().all(|d| blob_file(&s, d).exists()));
    run_ok(berth().args(["gc", "resume"])).await;
    let out = run_ok(berth().args(["gc", "run", "--time-window", "0", "--wait"])).await;
    assert!(out.contains("freed 2 blobs"), "{out}");
    assert!(blobs_of(&m2).iter().all(|d| !blob_file(&s, d).exists()));
    s.stop().await;
}

/// What the stress clients saw acknowledged.
#[derive(Default)]
struct Acked {
    /// (repo, tag) → manifest bytes.
    tags: HashMap<(String, String), Vec<u8>>,
    pushes: usize,
    retries: usize,
    deletes: usize,
    mounts: usize,
}

async fn push_blob_with(client: &Client, base: &str, repo: &str, data: &[u8]) -> bool {
    let d = sha256(data);
    let Ok(r) = client.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await else { return false };
    if r.status() != StatusCode::ACCEPTED {
        return false;
    }
    let loc = location(&r);
    let url = if loc.starts_with("http") { loc } else { format!("{base}{loc}") };
    let sep = if url.contains('?') { '&' } else { '?' };
    matches!(client.put(format!("{url}{sep}digest={d}")).body(data.to_vec()).send().await,
             Ok(r) if r.status() == StatusCode::CREATED)
}

/// One client: pushes images (sharing layers from a pool, mounting them from other
/// repositories, pushing by digest then tagging), deletes tags and manifests, and retries a
/// push that GC raced (`MANIFEST_BLOB_UNKNOWN`) by uploading again, as clients do.
async fn stress_client(base: String, worker: usize, until: Instant, pool: Arc<Vec<Vec<u8>>>, acked: Arc<Mutex<Acked>>) {
    let client = client_as(ADMIN, ADMIN_PASSWORD);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let repo = format!("stress/r{}", with_rng(|r| r.gen_range(0..3)));
        let tag = format!("w{worker}-{n}");
        let shared = pool[with_rng(|r| r.gen_range(0..pool.len()))].clone();
        let own = random_bytes(with_rng(|r| r.gen_range(100..20_000)));
        let config = json!({"architecture": "amd64", "os": "linux", "nonce": format!("{worker}-{n}")}).to_string();
        let manifest = image_manifest(
            &sha256(config.as_bytes()),
            config.len(),
            &[(sha256(&shared), shared.len()), (sha256(&own), own.len())],
            None,
        );
        let mut pushed = false;
        for attempt in 0..5 {
            if attempt > 0 {
                acked.lock().unwrap().retries += 1;
            }
            // Mount the shared layer from another repository when it is there, else upload it.
            let from = format!("stress/r{}", with_rng(|r| r.gen_range(0..3)));
            let mounted = client
                .post(format!("{base}/v2/{repo}/blobs/uploads/?mount={}&from={from}", sha256(&shared)))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::CREATED);
            if mounted {
                acked.lock().unwrap().mounts += 1;
            } else if !push_blob_with(&client, &base, &repo, &shared).await {
                continue;
            }
            if !push_blob_with(&client, &base, &repo, config.as_bytes()).await
                || !push_blob_with(&client, &base, &repo, &own).await
            {
                continue;
            }
            // Every third image: by digest first, then tagged.
            let first = if n % 3 == 0 { sha256(&manifest) } else { tag.clone() };
            let put = |reference: String| {
                client
                    .put(format!("{base}/v2/{repo}/manifests/{reference}"))
                    .header("content-type", OCI_MANIFEST)
                    .body(manifest.clone())
                    .send()
            };
            let r = put(first.clone()).await.unwrap();
            if r.status() == StatusCode::BAD_REQUEST {
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN", "only a GC race may refuse: {v}");
                continue;
            }
            assert_eq!(r.status(), StatusCode::CREATED);
            if first != tag {
                let r = put(tag.clone()).await.unwrap();
                if r.status() != StatusCode::CREATED {
                    continue;
                }
            }
            pushed = true;
            break;
        }
        if !pushed {
            continue;
        }
        {
            let mut a = acked.lock().unwrap();
            a.pushes += 1;
            a.tags.insert((repo.clone(), tag.clone()), manifest.clone());
        }
        // Now and then delete: a tag, or a whole manifest (by digest) with every tag on it.
        if n % 4 == 0 {
            let r = client.delete(format!("{base}/v2/{repo}/manifests/{tag}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            let mut a = acked.lock().unwrap();
            a.tags.remove(&(repo.clone(), tag.clone()));
            a.deletes += 1;
        } else if n % 7 == 0 {
            // Only this client pushed this manifest (its config is unique), so no one else's
            // acknowledged tag points at it.
            let r = client.delete(format!("{base}/v2/{repo}/manifests/{}", sha256(&manifest))).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            let mut a = acked.lock().unwrap();
            a.tags.remove(&(repo.clone(), tag.clone()));
            a.deletes += 1;
        }
    }
}

/// Every acknowledged tag resolves to its manifest, and every blob it references reads back
/// with its digest.
async fn verify_acked(s: &TestServer, acked: &Acked) {
    for ((repo, tag), manifest) in &acked.tags {
        let r = s.get(&format!("/v2/{repo}/manifests/{tag}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{repo}:{tag} lost");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &manifest[..], "{repo}:{tag}");
        for d in blobs_of(manifest) {
            let r = s.get(&format!("/v2/{repo}/blobs/{d}")).await;
            assert_eq!(r.status(), StatusCode::OK, "{repo}@{d} (of {tag}) lost");
            assert_eq!(sha256(&r.bytes().await.unwrap()), d, "{repo}@{d} corrupt");
        }
    }
}

async fn gc_under_load(backend: Backend, seconds: u64) {
    let s = TestServer::start_on(backend).await;
    let pool: Arc<Vec<Vec<u8>>> = Arc::new((0..8).map(|_| random_bytes(50_000)).collect());
    let acked = Arc::new(Mutex::new(Acked::default()));
    let until = Instant::now() + Duration::from_secs(seconds);
    let clients: Vec<_> =
        (0..3).map(|w| tokio::spawn(stress_client(s.base.clone(), w, until, pool.clone(), acked.clone()))).collect();
    // Collect at once (time_window 0), untagged manifests too every other run, in a loop.
    let mut runs = 0;
    let mut freed = 0;
    while Instant::now() < until {
        let r = gc(&s, json!({"time_window": 0, "delete_untagged": runs % 2 == 1})).await;
        freed += r["blobs_deleted"].as_u64().unwrap();
        runs += 1;
    }
    for c in clients {
        c.await.unwrap();
    }
    let a = std::mem::take(&mut *acked.lock().unwrap());
    eprintln!(
        "gc stress ({backend:?}): {runs} runs freed {freed} blobs while {} pushes ({} retried after a GC race, {} mounts) and {} deletes",
        a.pushes, a.retries, a.mounts, a.deletes
    );
    assert!(runs >= 3 && a.pushes >= 20 && freed > 0, "the stress did too little: {runs} runs, {} pushes", a.pushes);
    verify_acked(&s, &a).await;
    // Once more after the load: still nothing lost.
    gc(&s, json!({"time_window": 0, "delete_untagged": true})).await;
    verify_acked(&s, &a).await;
    // Quotas kept through all of it equal a recount, to the byte.
    let checks: Vec<Value> = s.api(Method::POST, "/quotas/verify", None).await.json().await.unwrap();
    assert!(checks.iter().any(|c| c["project"] == "stress" && c["computed"].as_i64() > Some(0)), "{checks:?}");
    for c in &checks {
        assert_eq!(c["consistent"], true, "quota drifted under GC and pushes: {c}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_in_a_loop_never_loses_what_a_push_references_embedded() {
    gc_under_load(Backend::Embedded, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_in_a_loop_never_loses_what_a_push_references_on_s3_and_postgres() {
    gc_under_load(Backend::S3Postgres, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_gc_loses_nothing_and_the_next_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, base) = crate::crash::spawn_berth(&data);
    let s = TestServer::attach(&base, vec![]);
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for i in 0..120 {
        let m = s.push_image("kill/gc", &format!("t{i}")).await;
        if i % 2 == 0 {
            kept.push((format!("t{i}"), m));
        } else {
            assert_eq!(s.delete(&format!("/v2/kill/gc/manifests/{}", sha256(&m))).await.status(), 202);
            dropped.push(m);
        }
    }
    let id = start_gc(&s, json!({"time_window": 0})).await;
    // Kill it while it deletes.
    loop {
        let r: Value = s.api(Method::GET, &format!("/system/gc/{id}"), None).await.json().await.unwrap();
        if r["job_status"] != "Pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, base) = crate::crash::spawn_berth(&data);
    let s = TestServer::attach(&base, vec![]);
    let acked = Acked {
        tags: kept.iter().map(|(t, m)| (("kill/gc".to_owned(), t.clone()), m.clone())).collect(),
        ..Default::default()
    };
    verify_acked(&s, &acked).await;
    // The killed run is marked failed once its lease runs out; then a new run frees the rest.
    let id2 = eventually("a new run once the killed run's lease ran out", async || {
        let body = json!({"schedule": {"type": "Manual"}, "parameters": {"time_window": 0}});
        let r = s.api(Method::POST, "/system/gc/schedule", Some(body)).await;
        if r.status() == StatusCode::CREATED {
            return Ok(location(&r).rsplit('/').next().unwrap().parse::<i64>().unwrap());
        }
        assert_eq!(r.status(), StatusCode::CONFLICT, "busy while the killed run's lease lasts");
        Err(r.status())
    })
    .await;
    let killed: Value = s.api(Method::GET, &format!("/system/gc/{id}"), None).await.json().await.unwrap();
    assert_ne!(killed["job_status"], "Running", "{killed}");
    let run = wait_gc(&s, id2).await;
    assert_eq!(run["job_status"], "Success", "{run}");
    for m in &dropped {
        for d in blobs_of(m) {
            let hex = d.strip_prefix("sha256:").unwrap();
            assert!(!data.join("blobs/blobs/sha256").join(&hex[..2]).join(hex).exists(), "{d} freed");
        }
    }
    verify_acked(&s, &acked).await;
    child.kill().unwrap();
    child.wait().unwrap();
}
