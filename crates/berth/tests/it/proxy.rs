//! Pull-through caches (Harbor's proxy-cache projects) in front of Debian's `docker-registry`,
//! reached through a fault-injecting proxy: cold pulls by real clients, what gets cached,
//! stale-if-error, one upstream fetch for many concurrent pulls, read-only projects.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

fn skopeo(s: &TestServer) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("skopeo");
    c.arg("--insecure-policy").env("REGISTRY_AUTH_FILE", s.auth_file());
    c
}

/// An endpoint for `url` and a proxy-cache project `name` of it (tags trusted for `ttl` s).
async fn cache_project(s: &TestServer, name: &str, url: &str, ttl: i64) -> i64 {
    let r =
        s.api(Method::POST, "/registries", Some(json!({"name": name, "type": "docker-registry", "url": url}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let body = json!({"project_name": name, "registry_id": id, "proxy_ttl_seconds": ttl});
    assert_eq!(s.api(Method::POST, "/projects", Some(body)).await.status(), StatusCode::CREATED);
    id
}

/// Wait until the artifact `digest` of `repo` (in `project`) is stored here.
async fn cached(s: &TestServer, project: &str, repo: &str, digest: &str) {
    let path = format!("/projects/{project}/repositories/{}/artifacts/{digest}", repo.replace('/', "%252F"));
    eventually(&format!("{repo}@{digest} to be cached"), async || {
        let st = s.api(Method::GET, &path, None).await.status();
        if st == StatusCode::OK { Ok(()) } else { Err(st) }
    })
    .await;
}

/// Push a fresh image (a random layer and config) to `repo:tag` at the registry at `url`;
/// its manifest's digest and its blobs' digests.
pub(crate) async fn seed_upstream(url: &str, repo: &str, tag: &str) -> (String, Vec<String>) {
    let c = berth_client::Client::new(&berth_client::Endpoint { url: url.to_owned(), ..Default::default() }).unwrap();
    let layer = random_bytes(4000);
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "seed": sha256(&layer)})).unwrap();
    let mut blobs = Vec::new();
    for bytes in [&config, &layer] {
        let digest = sha256(bytes);
        let body = futures::stream::iter([Ok::<_, berth_client::ClientError>(Bytes::from(bytes.clone()))]);
        c.push_blob(repo, &digest, bytes.len() as u64, Box::pin(body)).await.unwrap();
        blobs.push(digest);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blobs[0], "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blobs[1], "size": layer.len()}],
    }))
    .unwrap();
    c.push_manifest(repo, tag, OCI_MANIFEST, Bytes::from(manifest.clone())).await.unwrap();
    (sha256(&manifest), blobs)
}

/// Cached images nobody pulls any more go by the project's retention policy (Harbor's
/// "retain the most recently pulled"); GC frees their bytes; a later pull fetches them again.
/// Pull times of cold pulls count (they are recorded once the image is stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_images_not_pulled_lately_are_evicted_by_retention() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    // Two images of one repository (retention counts per repository): `old` pulled first.
    let (a, a_blobs) = seed_upstream(&upstream.url, "library/app", "old").await;
    let (b, _) = seed_upstream(&upstream.url, "library/app", "new").await;
    cache_project(&s, "hub", &upstream.url, 0).await;
    let artifact = |d: &str| format!("/projects/hub/repositories/library%252Fapp/artifacts/{d}");
    for (tag, d) in [("old", &a), ("new", &b)] {
        assert_eq!(s.get(&format!("/v2/hub/library/app/manifests/{tag}")).await.status(), StatusCode::OK);
        cached(&s, "hub", "library/app", d).await;
        // The cold pull's time is recorded.
        eventually("the cold pull's time recorded", async || {
            let pulled: Value = s.api(Method::GET, &artifact(d), None).await.json().await.unwrap();
            if pulled["pull_time"] != "0001-01-01T00:00:00.000Z" { Ok(()) } else { Err(pulled) }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let project: Value = s.api(Method::GET, "/projects/hub", None).await.json().await.unwrap();
    let rule = json!({
        "disabled": false, "action": "retain", "template": "latestPulledN", "params": {"latestPulledN": 1},
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**", "extras": "{\"untagged\":true}"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]},
    });
    let policy = json!({"algorithm": "or", "rules": [rule], "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
        "scope": {"level": "project", "ref": project["project_id"]}});
    let r = s.api(Method::POST, "/retentions", Some(policy)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let r = s.api(Method::POST, &format!("/retentions/{id}/executions"), Some(json!({"dry_run": false}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let status = eventually("the retention run to end", async || {
        let runs: Value = s.api(Method::GET, &format!("/retentions/{id}/executions"), None).await.json().await.unwrap();
        let status = runs[0]["status"].clone();
        if matches!(status.as_str(), Some("Pending" | "Running")) { Err(runs) } else { Ok(status) }
    })
    .await;
    assert_eq!(status, "Success");
    assert_eq!(s.api(Method::GET, &artifact(&a), None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.api(Method::GET, &artifact(&b), None).await.status(), StatusCode::OK);
    // GC frees the evicted image's bytes.
    let body = json!({"schedule": {"type": "Manual"}, "parameters": {"time_window": 0}});
    let r = s.api(Method::POST, "/system/gc/schedule", Some(body)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let gc = location(&r).rsplit('/').next().unwrap().to_owned();
    let run = eventually("the GC run to end", async || {
        let run: Value = s.api(Method::GET, &format!("/system/gc/{gc}"), None).await.json().await.unwrap();
        if matches!(run["job_status"].as_str(), Some("Pending" | "Running")) { Err(run) } else { Ok(run) }
    })
    .await;
    assert_eq!(run["job_status"], "Success", "{run}");
    for d in &a_blobs {
        let hex = d.strip_prefix("sha256:").unwrap();
        assert!(!s.data_dir().join("blobs/blobs/sha256").join(&hex[..2]).join(hex).exists(), "{d} freed");
    }
    // Pulled again: its bytes fetched from upstream a second time, and cached again.
    assert_eq!(s.get("/v2/hub/library/app/manifests/old").await.status(), StatusCode::OK);
    cached(&s, "hub", "library/app", &a).await;
    assert_eq!(blob_gets(&upstream, "library/app", &a_blobs[1]), 2, "{}", upstream.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_cache_pulls_through_caches_and_serves_stale_when_upstream_fails() {
    let upstream = berth_test_support::Distribution::start(None);
    let faults = berth_test_support::FaultProxy::start(&upstream.host);
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    for (tag, to, all) in [("single", "library/app:v1", false), ("multi", "library/multi:latest", true)] {
        let mut c = tokio::process::Command::new("skopeo");
        c.args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]);
        if all {
            c.arg("--all");
        }
        run_ok(c.arg(format!("oci:{}:{tag}", layout.display())).arg(format!("docker://{}/{to}", upstream.host))).await;
    }
    let registry = cache_project(&s, "hub", &format!("http://{}", faults.host), 1).await;
    let p: Value = s.api(Method::GET, "/projects/hub", None).await.json().await.unwrap();
    assert_eq!(p["registry_id"], registry);

    // A cold pull by a real client: the same image, bit for bit.
    let back = tmp.path().join("back");
    run_ok(
        skopeo(&s)
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{}/hub/library/app:v1", s.host()))
            .arg(format!("oci:{}:v1", back.display())),
    )
    .await;
    let digest = layout_digest(&layout, "single");
    assert_eq!(layout_digest(&back, "v1"), digest);
    // It is stored whole (manifest, config, layers) and is an artifact like any other.
    cached(&s, "hub", "library/app", &digest).await;
    let tags: Value = s.get("/v2/hub/library/app/tags/list").await.json().await.unwrap();
    assert_eq!(tags["tags"], json!(["v1"]));

    // A multi-arch index: pulled for one platform, the index is cached at once, the child
    // on demand.
    let arm = tmp.path().join("arm");
    run_ok(
        skopeo(&s)
            .args(["copy", "-q", "--src-tls-verify=false", "--override-arch", "arm64"])
            .arg(format!("docker://{}/hub/library/multi:latest", s.host()))
            .arg(format!("oci:{}:arm", arm.display())),
    )
    .await;
    let index = layout_digest(&layout, "multi");
    cached(&s, "hub", "library/multi", &index).await;

    // Read-only: pushes are refused with Harbor's reason; the endpoint cannot go while used.
    // Ten clients asking at once for a tag not cached yet: one manifest fetch upstream.
    let digest_v2 = sha256(&s.push_image("seed/app", "v2").await);
    let seed =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    let m = s.get(&format!("/v2/seed/app/manifests/{digest_v2}")).await.bytes().await.unwrap();
    let view: Value = serde_json::from_slice(&m).unwrap();
    for d in std::iter::once(&view["config"]).chain(view["layers"].as_array().unwrap()) {
        let digest = d["digest"].as_str().unwrap();
        let bytes = s.get(&format!("/v2/seed/app/blobs/{digest}")).await.bytes().await.unwrap();
        let body = futures::stream::iter([Ok::<_, berth_client::ClientError>(bytes.clone())]);
        seed.push_blob("library/app", digest, bytes.len() as u64, Box::pin(body)).await.unwrap();
    }
    seed.push_manifest("library/app", "v2", "application/vnd.oci.image.manifest.v1+json", m).await.unwrap();
    let pulls = (0..10).map(|_| async { s.get("/v2/hub/library/app/manifests/v2").await.status() });
    for st in futures::future::join_all(pulls).await {
        assert_eq!(st, StatusCode::OK);
    }
    let gets = upstream
        .log()
        .lines()
        .filter(|l| l.contains("method=GET") && l.contains(&format!("uri=\"/v2/library/app/manifests/{digest_v2}\"")))
        .count();
    assert_eq!(gets, 1, "one manifest fetch for ten pulls: {}", upstream.log());

    let e = expect_error(
        s.client.post(s.url("/v2/hub/library/app/blobs/uploads/")).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "DENIED",
    )
    .await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("is a pull-through cache"), "{e}");
    let r = s.put_manifest("hub/library/app", "v2", "application/vnd.oci.image.manifest.v1+json", b"{}").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let e = expect_error(
        s.api(Method::DELETE, &format!("/registries/{registry}"), None).await,
        StatusCode::PRECONDITION_FAILED,
        "PRECONDITION",
    )
    .await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("proxy cache of hub"), "{e}");

    // Upstream down (the registry stopped, new connections refused): the cached tag is served
    // (its TTL has passed), with a warning; the cached index too; what was never cached is a
    // 503 that says why.
    faults.set_down(true);
    drop(upstream);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = s.get("/v2/hub/library/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), Some(digest.as_str()));
    let again = tmp.path().join("again");
    run_ok(
        skopeo(&s)
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{}/hub/library/app:v1", s.host()))
            .arg(format!("oci:{}:v1", again.display())),
    )
    .await;
    assert_eq!(layout_digest(&again, "v1"), digest, "the whole image comes from the cache");
    let r = s.get(&format!("/v2/hub/library/multi/manifests/{index}")).await;
    assert_eq!(r.status(), StatusCode::OK, "the index is served with upstream down");
    let e =
        expect_error(s.get("/v2/hub/library/other/manifests/v1").await, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
            .await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("upstream registry of this cache failed"), "{e}");
    // Counted where operators look.
    let metrics = s.get("/metrics").await.text().await.unwrap();
    let stale =
        metrics.lines().find(|l| l.starts_with("berth_proxy_stale_served ")).unwrap_or_else(|| panic!("{metrics}"));
    assert!(stale.split(' ').nth(1).unwrap().parse::<u64>().unwrap() >= 2, "{stale}");
    // And on the project's page: hits and misses, stale serves, the upstream failing (why,
    // to an administrator).
    let web = crate::portal::Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let (st, page) = web.get(&format!("/harbor/projects/{}/repositories", p["project_id"])).await;
    assert_eq!(st, StatusCode::OK);
    let counts = |what: &str| -> (u64, u64) {
        let dd = page.split(&format!("<dt>{what}")).nth(1).and_then(|r| r.split("<dd>").nth(1)).unwrap_or("");
        let n: Vec<u64> = dd.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse().ok()).take(2).collect();
        (n.first().copied().unwrap_or(0), n.get(1).copied().unwrap_or(0))
    };
    let (hits, misses) = counts("Manifests");
    assert!(hits >= 2 && misses >= 3, "manifests {hits} hits, {misses} misses: {page}");
    let (hits, misses) = counts("Blobs");
    assert!(misses >= 2 && hits >= 1, "blobs {hits} hits, {misses} misses: {page}");
    assert!(counts("Served stale").0 >= 2, "{page}");
    assert!(page.contains("Failing</span> since") && page.contains("connect"), "{page}");
}

/// Fifty clients pulling one uncached 32 MiB blob at once cause one upstream fetch (counted in
/// the upstream's access log); each gets the right bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_pulls_of_one_blob_fetch_it_once() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    let client =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    let blob = Bytes::from(random_bytes(32 << 20));
    let digest = sha256(&blob);
    let body = futures::stream::iter([Ok::<_, berth_client::ClientError>(blob.clone())]);
    client.push_blob("team/big", &digest, blob.len() as u64, Box::pin(body)).await.unwrap();
    drop(blob);
    cache_project(&s, "mirror", &upstream.url, 0).await;
    let path = format!("/v2/mirror/team/big/blobs/{digest}");
    let pulls = (0..50).map(|_| {
        let (s, path) = (&s, path.clone());
        async move {
            use futures::StreamExt;
            use sha2::Digest as _;
            let r = s.get(&path).await;
            assert_eq!(r.status(), StatusCode::OK);
            let mut h = sha2::Sha256::new();
            let mut body = r.bytes_stream();
            while let Some(chunk) = body.next().await {
                h.update(chunk.unwrap());
            }
            format!("sha256:{}", hex::encode(h.finalize()))
        }
    });
    for got in futures::future::join_all(pulls).await {
        assert_eq!(got, digest);
    }
    let fetches = blob_gets(&upstream, "team/big", &digest);
    assert_eq!(fetches, 1, "one upstream fetch: {}", upstream.log());
    // Now it is here: served without asking upstream again.
    assert_eq!(s.get(&path).await.status(), StatusCode::OK);
    assert_eq!(blob_gets(&upstream, "team/big", &digest), 1);
}

/// GETs of blob `digest` the upstream answered (from its access log).
fn blob_gets(upstream: &berth_test_support::Distribution, repo: &str, digest: &str) -> usize {
    let uri = format!("uri=\"/v2/{repo}/blobs/{digest}\"");
    upstream.log().lines().filter(|l| l.contains("method=GET") && l.contains(&uri)).count()
}

/// Two replicas (PostgreSQL + S3), four pulls of one uncached blob on each at once: one
/// upstream fetch in all (the replicas agree through the database), right bytes everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_fetch_a_blob_from_upstream_once() {
    let upstream = berth_test_support::Distribution::start(None);
    let client =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    let blob = Bytes::from(random_bytes(8 << 20));
    let digest = sha256(&blob);
    let body = futures::stream::iter([Ok::<_, berth_client::ClientError>(blob.clone())]);
    client.push_blob("team/big", &digest, blob.len() as u64, Box::pin(body)).await.unwrap();
    let cluster = crate::replicas::Cluster::start(2).await;
    let s = TestServer::attach(cluster.base(0), Vec::new());
    cache_project(&s, "mirror", &upstream.url, 0).await;
    let http = client_as(ADMIN, ADMIN_PASSWORD);
    let pulls = (0..8).map(|i| {
        let url = format!("{}/v2/mirror/team/big/blobs/{digest}", cluster.base(i % 2));
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{url}");
            sha256(&r.bytes().await.unwrap())
        }
    });
    for got in futures::future::join_all(pulls).await {
        assert_eq!(got, digest);
    }
    assert_eq!(blob_gets(&upstream, "team/big", &digest), 1, "one upstream fetch across replicas: {}", upstream.log());
}

/// A cached image is content like any other: scanned on arrival when the project says so,
/// private unless the project is public, and within the project's quota (what does not fit is
/// served, not kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_content_follows_the_projects_settings_and_quota() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    run_ok(
        tokio::process::Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:single", layout.display()))
            .arg(format!("docker://{}/library/app:v1", upstream.host)),
    )
    .await;
    let r = s.api(Method::POST, "/registries", Some(json!({"name": "up", "type": "oci", "url": upstream.url}))).await;
    let registry: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let body = json!({"project_name": "scanned", "registry_id": registry, "metadata": {"auto_scan": "true"}});
    assert_eq!(s.api(Method::POST, "/projects", Some(body)).await.status(), StatusCode::CREATED);
    // Private: strangers are asked to sign in, and nothing is fetched for them.
    let r = s.anon().get(s.url("/v2/scanned/library/app/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let asked = upstream.log().lines().filter(|l| l.contains("useragent=berth/")).count();
    assert_eq!(asked, 0, "{}", upstream.log());
    // Pulled by a member: cached whole, then scanned as a pushed image would be.
    let digest = layout_digest(&layout, "single");
    assert_eq!(s.get("/v2/scanned/library/app/manifests/v1").await.status(), StatusCode::OK);
    cached(&s, "scanned", "library/app", &digest).await;
    let art = crate::scan::scanned(&s, "scanned", "library/app", &digest).await;
    assert_eq!(art["tags"][0]["name"], "v1", "{art}");

    // A quota too small for the image: the pull is served, the cache keeps within the limit.
    let body = json!({"project_name": "small", "registry_id": registry, "storage_limit": 1000, "metadata": {"public": "true"}});
    assert_eq!(s.api(Method::POST, "/projects", Some(body)).await.status(), StatusCode::CREATED);
    let back = tmp.path().join("back");
    run_ok(
        tokio::process::Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false", "--src-no-creds"])
            .arg(format!("docker://{}/small/library/app:v1", s.host()))
            .arg(format!("oci:{}:v1", back.display())),
    )
    .await;
    assert_eq!(layout_digest(&back, "v1"), digest, "public: anyone pulls through it");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let q: Value = s.api(Method::GET, "/projects/small/summary", None).await.json().await.unwrap();
    let used = q["quota"]["used"]["storage"].as_i64().unwrap();
    assert!(used <= 1000, "the quota holds: {q}");
    let r = s.api(Method::GET, &format!("/projects/small/repositories/library%252Fapp/artifacts/{digest}"), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "an image that does not fit is not cached");
    // A blob nobody here has, larger than the room left: the client still gets every byte.
    let client =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    let blob = Bytes::from(random_bytes(3 << 20));
    let d = sha256(&blob);
    let body = futures::stream::iter([Ok::<_, berth_client::ClientError>(blob.clone())]);
    client.push_blob("library/raw", &d, blob.len() as u64, Box::pin(body)).await.unwrap();
    let r = s.anon().get(s.url(&format!("/v2/small/library/raw/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sha256(&r.bytes().await.unwrap()), d);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let q: Value = s.api(Method::GET, "/projects/small/summary", None).await.json().await.unwrap();
    assert!(q["quota"]["used"]["storage"].as_i64().unwrap() <= 1000, "{q}");
}

/// An upstream that sends bytes that are not what their digest says: the client's transfer
/// fails, nothing is cached, and the next pull asks upstream again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_upstream_bytes_are_never_cached() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    let client =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    let blob = Bytes::from(random_bytes(1 << 20));
    let digest = sha256(&blob);
    let body = futures::stream::iter([Ok::<_, berth_client::ClientError>(blob.clone())]);
    client.push_blob("team/big", &digest, blob.len() as u64, Box::pin(body)).await.unwrap();
    let hex = &digest[7..];
    let file = upstream.data_dir().join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4096] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    cache_project(&s, "mirror", &upstream.url, 0).await;
    let path = format!("/v2/mirror/team/big/blobs/{digest}");
    for _ in 0..2 {
        let r = s.get(&path).await;
        assert_eq!(r.status(), StatusCode::OK, "the transfer starts before the digest can be known");
        assert!(r.bytes().await.is_err(), "and breaks off: the client never holds a complete wrong blob");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(s.head(&path).await.status(), StatusCode::NOT_FOUND, "nothing was cached");
    }
    assert_eq!(blob_gets(&upstream, "team/big", &digest), 2, "each pull asked upstream again");
}

/// Caches of upstreams that want credentials — Distribution with htpasswd (Basic) and a
/// second Berth (the token flow, as Harbor's `harbor` type) — pulled cold and warm by podman.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_of_upstreams_that_want_credentials_with_podman() {
    let site = berth_test_support::Distribution::start(Some(("mirror", "Site-Passw0rd")));
    let peer = TestServer::start().await;
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    run_ok(
        tokio::process::Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "-q",
                "--dest-tls-verify=false",
                "--dest-creds",
                "mirror:Site-Passw0rd",
            ])
            .arg(format!("oci:{}:single", layout.display()))
            .arg(format!("docker://{}/library/app:v1", site.host)),
    )
    .await;
    run_ok(
        tokio::process::Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .env("REGISTRY_AUTH_FILE", peer.auth_file())
            .arg(format!("oci:{}:single", layout.display()))
            .arg(format!("docker://{}/shared/app:v1", peer.host())),
    )
    .await;
    peer.user("reader", "Reader-Passw0rd-1").await;
    peer.member("shared", "reader", 3).await;
    for (name, kind, url, user, password) in [
        ("site", "docker-registry", site.url.clone(), "mirror", "Site-Passw0rd"),
        ("peer", "harbor", peer.base.clone(), "reader", "Reader-Passw0rd-1"),
    ] {
        let endpoint = json!({"name": name, "type": kind, "url": url,
            "credential": {"type": "basic", "access_key": user, "access_secret": password}});
        let r = s.api(Method::POST, "/registries", Some(endpoint)).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
        let r = s.api(Method::POST, "/projects", Some(json!({"project_name": name, "registry_id": id}))).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let env = containers_env(tmp.path(), &s.auth_file());
    let podman = || {
        let mut c = tokio::process::Command::new("podman");
        c.envs(env.clone());
        c
    };
    let digest = layout_digest(&layout, "single");
    for image in ["site/library/app:v1", "peer/shared/app:v1"] {
        let reference = format!("{}/{image}", s.host());
        run_ok(podman().args(["pull", "-q", "--tls-verify=false"]).arg(&reference)).await;
        let (project, rest) = image.split_once('/').unwrap();
        let repo = rest.split(':').next().unwrap();
        cached(&s, project, repo, &digest).await;
        run_ok(podman().args(["rmi", "-f"]).arg(&reference)).await;
        run_ok(podman().args(["pull", "-q", "--tls-verify=false"]).arg(&reference)).await;
        let out = run_ok(podman().args(["image", "inspect", "--format", "{{.Digest}}"]).arg(&reference)).await;
        assert_eq!(out.trim(), digest, "{image}");
    }
}

/// An upstream that fails in the ways networks do — 503s, 429 with `Retry-After`, resets,
/// slowness, an answer cut short — before it answers: the cache retries, and the client gets
/// the image, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_upstream_is_retried_and_a_cut_transfer_is_not_kept() {
    use berth_test_support::Fault;
    let upstream = berth_test_support::Distribution::start(None);
    let faults = berth_test_support::FaultProxy::start(&upstream.host);
    let s = TestServer::start().await;
    let client =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    let blob = Bytes::from(random_bytes(4 << 20));
    let digest = sha256(&blob);
    let body = futures::stream::iter([Ok::<_, berth_client::ClientError>(blob.clone())]);
    client.push_blob("team/big", &digest, blob.len() as u64, Box::pin(body)).await.unwrap();
    // The faults meet the cache's first connections (a fresh endpoint has none pooled).
    faults.inject([
        Fault::Status(503, None),
        Fault::Status(429, Some(1)),
        Fault::Reset,
        Fault::Delay(Duration::from_millis(300)),
    ]);
    cache_project(&s, "flaky", &format!("http://{}", faults.host), 0).await;
    let path = format!("/v2/flaky/team/big/blobs/{digest}");
    let r = s.get(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest, "retried through 503, 429, a reset and a delay");
    eventually("and cached", async || {
        let st = s.head(&path).await.status();
        if st == StatusCode::OK { Ok(()) } else { Err(st) }
    })
    .await;

    // A transfer cut short (on a fresh connection) breaks off for the client and is not kept.
    let other = Bytes::from(random_bytes(4 << 20));
    let od = sha256(&other);
    let body = futures::stream::iter([Ok::<_, berth_client::ClientError>(other.clone())]);
    client.push_blob("team/other", &od, other.len() as u64, Box::pin(body)).await.unwrap();
    let fresh = berth_test_support::FaultProxy::start(&upstream.host);
    fresh.inject([Fault::Truncate(1 << 20)]);
    cache_project(&s, "cut", &format!("http://{}", fresh.host), 0).await;
    let path = format!("/v2/cut/team/other/blobs/{od}");
    let r = s.get(&path).await;
    assert!(r.status() != StatusCode::OK || r.bytes().await.is_err(), "a short transfer never looks whole");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.head(&path).await.status(), StatusCode::NOT_FOUND, "nothing half-made is kept");
    // The next pull (no fault left) fetches it whole.
    let r = s.get(&path).await;
    assert_eq!(sha256(&r.bytes().await.unwrap()), od);
}
