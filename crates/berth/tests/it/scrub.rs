//! Scrub: damaged blobs are found, quarantined (never served), repaired by a fresh push, and
//! freed by GC once nothing references them.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

fn blob_path(s: &TestServer, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    s.data_dir().join("blobs/blobs/sha256").join(&hex[..2]).join(hex)
}

fn layers_of(manifest: &[u8]) -> Vec<String> {
    let m: Value = serde_json::from_slice(manifest).unwrap();
    m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_owned()).collect()
}

/// Flip one byte of a stored blob (as bit rot or a bad disk would).
fn damage(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_quarantines_damaged_blobs_and_a_push_repairs_them() {
    let s = TestServer::start().await;
    let a = s.push_image("scrub/app", "a").await;
    let b = s.push_image("scrub/app", "b").await;
    let scrub = |extra: &[&str]| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("scrub").args(extra).arg("--data-dir").arg(s.data_dir());
        c
    };
    let out = run_ok(&mut scrub(&["--all"])).await;
    assert!(out.contains("checked 4 blobs") && out.contains("0 quarantined"), "{out}");

    let (la, lb) = (layers_of(&a)[0].clone(), layers_of(&b)[0].clone());
    let original = s.get(&format!("/v2/scrub/app/blobs/{la}")).await.bytes().await.unwrap();
    damage(&blob_path(&s, &la));
    damage(&blob_path(&s, &lb));
    // Verified 0 s ago: only --all looks again.
    let out = run_ok(&mut scrub(&[])).await;
    assert!(out.contains("checked 0 blobs"), "{out}");
    let out = run_ok(&mut scrub(&["--all", "--rate", "10MiB"])).await;
    assert!(out.contains("checked 4 blobs") && out.contains("2 quarantined"), "{out}");
    assert!(out.contains(&la) && out.contains("scrub/app") && out.contains("hash to"), "{out}");

    // Never served again: GET is an error that says why and what to do; HEAD says unknown,
    // so that a pushing client uploads it again.
    let r = s.get(&format!("/v2/scrub/app/blobs/{la}")).await;
    let body = expect_error(r, StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN").await;
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("damaged") && msg.contains("push it again"), "{msg}");
    assert_eq!(s.head(&format!("/v2/scrub/app/blobs/{la}")).await.status(), StatusCode::NOT_FOUND);
    let r = s
        .client
        .post(s.url(&format!("/v2/scrub/other/blobs/uploads/?mount={la}&from=scrub/app")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "a damaged blob is not mounted elsewhere");

    // A fresh push of the same bytes replaces the damaged copy and lifts the quarantine.
    assert_eq!(s.push_blob("scrub/app", &original).await, la);
    let got = s.get(&format!("/v2/scrub/app/blobs/{la}")).await.bytes().await.unwrap();
    assert_eq!(sha256(&got), la);
    let out = run_ok(&mut scrub(&["--list"])).await;
    assert!(!out.contains(&la) && out.contains(&lb), "{out}");

    // The other one goes with its image: GC frees quarantined blobs like any other.
    assert_eq!(s.delete(&format!("/v2/scrub/app/manifests/{}", sha256(&b))).await.status(), 202);
    let body = serde_json::json!({"schedule": {"type": "Manual"}, "parameters": {"time_window": 0}});
    let r = s.api(reqwest::Method::POST, "/system/gc/schedule", Some(body)).await;
    let id = location(&r).rsplit('/').next().unwrap().to_owned();
    eventually("the GC run to succeed", async || {
        let run: Value = s.api(reqwest::Method::GET, &format!("/system/gc/{id}"), None).await.json().await.unwrap();
        if run["job_status"] == "Success" { Ok(()) } else { Err(run) }
    })
    .await;
    assert!(!blob_path(&s, &lb).exists());
    let out = run_ok(&mut scrub(&["--list"])).await;
    assert!(out.contains("no blob is quarantined"), "{out}");
    s.stop().await;
}
