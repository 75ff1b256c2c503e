//! A metadata database that goes away mid-run: every surface answers `503` with
//! `Retry-After` within two seconds (never `401`/`403`, never a hang), and recovers when the
//! database comes back.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::*;

/// Send, time, and check the answer is a `503` with `Retry-After` and the code `UNAVAILABLE`
/// in the surface's error body; returns how long it took.
async fn unavailable(what: &str, req: reqwest::RequestBuilder) -> Duration {
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(30), req.send()).await.expect("no answer in 30 s").unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}: {:?}", r.text().await);
    assert_eq!(header(&r, "retry-after"), Some("5"), "{what}");
    if what != "readiness" {
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{what}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("metadata database is unavailable"), "{what}: {message}");
    }
    assert!(took < Duration::from_secs(2), "{what}: answered after {took:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_gives_503_with_retry_after_on_every_surface() {
    let pg = berth_test_support::PgServer::start();
    let url = pg.url.clone();
    let s = TestServer::start_with(move |c| {
        c.metadata = berth_config::MetadataConfig::Postgres { url: berth_config::Secret::new(url), pool_size: 4 };
    })
    .await;
    s.project("pub", true).await;
    s.user("dev", "Dev-Passw0rd").await;
    s.member("pub", "dev", 2).await;
    s.push_image("pub/app", "v1").await;
    // Warm the caches (credentials, principals, projects) the way traffic would.
    assert_eq!(s.get("/v2/pub/app/manifests/v1").await.status(), 200);
    assert_eq!(s.anon().get(s.url("/v2/pub/app/manifests/v1")).send().await.unwrap().status(), 200);

    pg.stop();
    let dev = client_as("dev", "Dev-Passw0rd");
    let token_url = s.url("/service/token?service=berth&scope=repository:pub/app:pull");
    let mut worst = Duration::ZERO;
    for (what, req) in [
        ("pull as a cached admin", s.client.get(s.url("/v2/pub/app/manifests/v1"))),
        ("pull as a user not seen yet", dev.get(s.url("/v2/pub/app/manifests/v1"))),
        ("anonymous pull", s.anon().get(s.url("/v2/pub/app/manifests/v1"))),
        ("tag list", s.client.get(s.url("/v2/pub/app/tags/list"))),
        ("catalog", s.client.get(s.url("/v2/_catalog"))),
        ("upload start", s.client.post(s.url("/v2/pub/app/blobs/uploads/"))),
        ("token service", dev.get(&token_url)),
        ("management API as admin", s.client.get(s.url("/api/v2.0/projects"))),
        ("management API as a user", dev.get(s.url("/api/v2.0/users/current"))),
        ("management API change", s.client.delete(s.url("/api/v2.0/projects/pub/repositories/app"))),
        ("readiness", s.anon().get(s.url("/readyz"))),
    ] {
        worst = worst.max(unavailable(what, req).await);
    }
    // The admin CLI speaks the management API: it says what is wrong.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["project", "list", "--url", &s.base, "--password", ADMIN_PASSWORD])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("503") && err.contains("metadata database is unavailable"), "{err}");
    eprintln!("slowest 503 while the database was down: {worst:?}");

    // Back up: the same requests succeed again, with nothing lost.
    pg.resume();
    eventually("berth to recover", async || {
        let st = s.get("/v2/pub/app/manifests/v1").await.status();
        if st == 200 { Ok(()) } else { Err(st) }
    })
    .await;
    assert_eq!(dev.get(s.url("/v2/pub/app/manifests/v1")).send().await.unwrap().status(), 200);
    assert_eq!(s.api(Method::GET, "/projects/pub/repositories", None).await.status(), 200);
    s.stop().await;
}
