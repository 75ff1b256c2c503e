//! Storage quotas: Harbor's quota API and project field, enforcement while bytes arrive and
//! at commit, each blob counted once per project, exact recomputation (`berth quota verify`).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const MIB: i64 = 1024 * 1024;

async fn used(s: &TestServer, id: i64) -> i64 {
    let q: Value = s.api(Method::GET, &format!("/quotas/{id}"), None).await.json().await.unwrap();
    q["used"]["storage"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_quota_refuses_what_would_exceed_it_and_counts_each_blob_once() {
    let s = TestServer::start().await;
    let body = json!({"project_name": "quota", "metadata": {"public": "false"}, "storage_limit": MIB});
    let r = s.api(Method::POST, "/projects", Some(body)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let list: Vec<Value> =
        s.api(Method::GET, &format!("/quotas?reference=project&reference_id={id}"), None).await.json().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0]["ref"]["name"].as_str(), list[0]["hard"]["storage"].as_i64()), (Some("quota"), Some(MIB)));
    assert_eq!((list[0]["used"]["storage"].as_i64(), list[0]["ref"]["owner_name"].as_str()), (Some(0), Some("admin")));

    let first = random_bytes(600 * 1024);
    let d1 = s.push_blob("quota/app", &first).await;
    assert_eq!(used(&s, id).await, 600 * 1024);

    // Monolithic: refused while the bytes arrive, with the quota, usage and room in the message.
    let second = random_bytes(600 * 1024);
    let d2 = sha256(&second);
    let r = s
        .client
        .post(s.url(&format!("/v2/quota/app/blobs/uploads/?digest={d2}")))
        .body(second.clone())
        .send()
        .await
        .unwrap();
    let body = expect_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("quota") && msg.contains("1.0 MiB") && msg.contains("600.0 KiB"), "{msg}");
    assert_eq!(s.head(&format!("/v2/quota/app/blobs/{d2}")).await.status(), StatusCode::NOT_FOUND);
    // Chunked: the PATCH that crosses the limit is refused.
    let r = s.client.post(s.url("/v2/quota/app/blobs/uploads/")).send().await.unwrap();
    let loc = location(&r);
    let r = s.client.patch(s.url(&loc)).body(second[..200 * 1024].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "within the room left");
    let r = s.client.patch(s.url(&loc)).body(second[200 * 1024..].to_vec()).send().await.unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert_eq!(s.delete(&loc).await.status(), 204);
    assert_eq!(used(&s, id).await, 600 * 1024, "refused bytes are not counted");

    // The same blob again, in another repository of the project: mounted or re-uploaded, free.
    let r = s
        .client
        .post(s.url(&format!("/v2/quota/other/blobs/uploads/?mount={d1}&from=quota/app")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(s.push_blob("quota/third", &first).await, d1);
    assert_eq!(used(&s, id).await, 600 * 1024);
    // A manifest counts its own bytes.
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec();
    let dc = s.push_blob("quota/app", &config).await;
    let manifest = image_manifest(&dc, config.len(), &[(d1.clone(), first.len())], None);
    assert_eq!(s.put_manifest("quota/app", "v1", OCI_MANIFEST, &manifest).await.status(), 201);
    let expect = (600 * 1024 + config.len() + manifest.len()) as i64;
    assert_eq!(used(&s, id).await, expect);
    let summary: Value = s.api(Method::GET, "/projects/quota/summary", None).await.json().await.unwrap();
    assert_eq!(summary["quota"]["used"]["storage"].as_i64(), Some(expect), "{summary}");
    assert_eq!(summary["quota"]["hard"]["storage"].as_i64(), Some(MIB));
    assert_eq!(summary["repo_count"], 3);

    // Raising the limit (or lifting it) lets the push through.
    let r = s.api(Method::PUT, &format!("/quotas/{id}"), Some(json!({"hard": {"storage": -1}}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    s.push_blob("quota/app", &second).await;
    assert_eq!(used(&s, id).await, expect + 600 * 1024);

    // Deleting frees usage at once; GC then frees the disk.
    assert_eq!(s.delete("/v2/quota/app/manifests/v1").await.status(), 202);
    assert_eq!(s.delete(&format!("/v2/quota/app/blobs/{d2}")).await.status(), 202);
    for repo in ["quota/other", "quota/third"] {
        assert_eq!(
            s.api(Method::DELETE, &format!("/projects/quota/repositories/{}", &repo[6..]), None).await.status(),
            200
        );
    }
    assert_eq!(
        used(&s, id).await,
        (600 * 1024 + config.len() + manifest.len()) as i64,
        "the untagged manifest still holds its blobs"
    );
    let r = s.delete(&format!("/v2/quota/app/manifests/{}", sha256(&manifest))).await;
    assert_eq!(r.status(), 202);
    assert_eq!(used(&s, id).await, (600 * 1024 + config.len()) as i64, "links stay until GC or a blob delete");

    // Refusals in the user's words.
    for (hard, what) in [(json!({"storage": 0}), "positive"), (json!({"count": 5}), "storage only")] {
        let r = s.api(Method::PUT, &format!("/quotas/{id}"), Some(json!({"hard": hard}))).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let v: Value = r.json().await.unwrap();
        assert!(v["errors"][0]["message"].as_str().unwrap().contains(what), "{v}");
    }
    let r = s.api(Method::POST, "/projects", Some(json!({"project_name": "neg", "storage_limit": -5}))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    s.user("q-user", "Quota-User-Password-1").await;
    let r = client_as("q-user", "Quota-User-Password-1").get(s.url("/api/v2.0/quotas")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The command line.
    let berth = || {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base).env("BERTH_PASSWORD", ADMIN_PASSWORD);
        c
    };
    let out = run_ok(berth().args(["quota", "set", "quota", "2MiB"])).await;
    assert!(out.contains("storage limit 2.0 MiB"), "{out}");
    let out = run_ok(berth().args(["quota", "list"])).await;
    let line = out.lines().find(|l| l.starts_with("quota ")).unwrap();
    assert!(line.contains("2.0 MiB") && line.contains("KiB") && line.contains('%'), "{out}");
    let out = run_ok(berth().args(["quota", "verify"])).await;
    assert!(out.contains("every stored usage equals what the projects hold, to the byte"), "{out}");
    let err = run_fails(berth().args(["quota", "set", "quota", "10 parsecs"])).await;
    assert!(err.contains("unknown unit"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_metered_per_project_and_day_and_statistics_agree() {
    let s = TestServer::start().await;
    let id = s.project("meter", false).await;
    let m = s.push_image("meter/app", "v1").await;
    let blobs: Vec<String> = {
        let v: Value = serde_json::from_slice(&m).unwrap();
        std::iter::once(&v["config"])
            .chain(v["layers"].as_array().unwrap())
            .map(|d| d["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut blob_bytes = 0;
    for d in &blobs {
        let got = s.get(&format!("/v2/meter/app/blobs/{d}")).await.bytes().await.unwrap();
        blob_bytes += got.len() as i64;
    }
    for _ in 0..3 {
        assert_eq!(s.get("/v2/meter/app/manifests/v1").await.status(), 200);
    }
    s.push_image("other/app", "v1").await;
    // Events are batched (about a second) and applied by the `usage` consumer.
    let want_stored = used(&s, id).await;
    let row = eventually("the usage to arrive", async || {
        let rows: Vec<Value> = s.api(Method::GET, "/usage?project=meter", None).await.json().await.unwrap();
        match rows.first() {
            Some(r) if r["pulls"] == 3 && r["pulled_bytes"] == blob_bytes => Ok(r.clone()),
            _ => Err(format!("{rows:?}")),
        }
    })
    .await;
    assert_eq!(row["project"], "meter", "{row}");
    assert_eq!(row["pushes"], 1);
    assert_eq!(row["pushed_bytes"].as_i64(), Some(blob_bytes + m.len() as i64), "blobs and the manifest");
    assert_eq!(row["stored_bytes"].as_i64(), Some(want_stored), "the project's storage, as its quota counts it");
    let today = row["date"].as_str().unwrap().to_owned();
    // Every project, for a system administrator; a bad date is a 400 saying what is wanted.
    let all: Vec<Value> =
        s.api(Method::GET, &format!("/usage?from={today}&to={today}"), None).await.json().await.unwrap();
    assert!(all.iter().any(|r| r["project"] == "other"), "{all:?}");
    let r = s.api(Method::GET, "/usage?from=last-week", None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("2026-12-05"));
    s.user("meter-user", "Meter-User-Password-1").await;
    let r = client_as("meter-user", "Meter-User-Password-1")
        .get(s.url("/api/v2.0/usage?project=meter"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "a private project's usage is its members' business");
    // Harbor's statistics: the storage all projects use is the sum of their quotas' usage.
    let stats: Value = s.api(Method::GET, "/statistics", None).await.json().await.unwrap();
    let quotas: Vec<Value> = s.api(Method::GET, "/quotas", None).await.json().await.unwrap();
    let total: i64 = quotas.iter().map(|q| q["used"]["storage"].as_i64().unwrap()).sum();
    assert_eq!(stats["total_storage_consumption"].as_i64(), Some(total));
    assert_eq!(stats["private_project_count"], 2);
    // The command line, as CSV for a spreadsheet.
    let out = run_ok(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["usage", "--project", "meter", "--from", &today, "--to", &today, "--output", "csv"])
            .env("BERTH_URL", &s.base)
            .env("BERTH_PASSWORD", ADMIN_PASSWORD),
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "project,date,stored_bytes,pushed_bytes,pulled_bytes,pushes,pulls");
    assert_eq!(lines[1], format!("meter,{today},{want_stored},{},{blob_bytes},1,3", blob_bytes + m.len() as i64));
    s.stop().await;
}
