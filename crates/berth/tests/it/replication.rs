//! Replication (Harbor's policies and executions) between Berth and Debian's
//! `docker-registry`: push-based and pull-based, filtered by repository and tag, an index
//! with its platforms, only missing blobs copied, tasks with logs.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// Start an execution of `policy` and wait for its end; the execution.
async fn run(s: &TestServer, policy: i64) -> Value {
    let r = s.api(Method::POST, "/replication/executions", Some(json!({ "policy_id": policy }))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let path = location(&r).trim_start_matches("/api/v2.0").to_owned();
    eventually(&format!("execution {path} to end"), async || {
        let e: Value = s.api(Method::GET, &path, None).await.json().await.unwrap();
        if e["status"] != "InProgress" { Ok(e) } else { Err(e) }
    })
    .await
}

/// A registry endpoint named `b` for `url`; its id.
async fn endpoint(s: &TestServer, url: &str) -> i64 {
    let r = s.api(Method::POST, "/registries", Some(json!({"name": "b", "type": "oci", "url": url}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    location(&r).rsplit('/').next().unwrap().parse().unwrap()
}

/// Create a replication policy; its id.
async fn create_policy(s: &TestServer, policy: Value) -> i64 {
    let r = s.api(Method::POST, "/replication/policies", Some(policy)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    location(&r).rsplit('/').next().unwrap().parse().unwrap()
}

/// A policy refused with a 400 whose message says `why`.
async fn refused(s: &TestServer, policy: Value, why: &str) {
    let e = expect_error(
        s.api(Method::POST, "/replication/policies", Some(policy)).await,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains(why), "{e}");
}

async fn tasks(s: &TestServer, execution: &Value) -> Vec<Value> {
    s.api(Method::GET, &format!("/replication/executions/{}/tasks", execution["id"]), None).await.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_replication_with_filters() {
    let upstream = berth_test_support::Distribution::start(Some(("site-b", "Site-B-Passw0rd")));
    let s = TestServer::start().await;
    let mut digests = std::collections::HashMap::new();
    for (repo, tag) in
        [("team/app", "v1"), ("team/app", "v2"), ("team/app", "v3-rc1"), ("team/web", "v1"), ("other/x", "v1")]
    {
        digests.insert(format!("{repo}:{tag}"), sha256(&s.push_image(repo, tag).await));
    }
    let r = s
        .api(
            Method::POST,
            "/registries",
            Some(json!({"name": "site-b", "type": "docker-registry", "url": upstream.url,
            "credential": {"access_key": "site-b", "access_secret": "Site-B-Passw0rd"}})),
        )
        .await;
    let registry: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();

    // Refusals say what is wrong.
    for (bad, why) in [
        (json!({"name": "x", "src_registry": {"id": registry}, "dest_registry": {"id": registry}}), "not both"),
        (json!({"name": "x"}), "one end is this registry"),
        (
            json!({"name": "x", "dest_registry": {"id": registry}, "filters": [{"type": "size", "value": "1"}]}),
            "unknown filter",
        ),
        (json!({"name": "x", "dest_registry": {"id": 999}}), "registry 999 does not exist"),
    ] {
        refused(&s, bad, why).await;
    }

    // Push-based: team's v* tags, not the release candidate, not other projects.
    let policy = json!({"name": "to-site-b", "dest_registry": {"id": registry}, "override": true,
        "trigger": {"type": "manual"},
        "filters": [{"type": "name", "value": "team/**"}, {"type": "tag", "value": "v*"},
                    {"type": "tag", "value": "*-rc*", "decoration": "excludes"}]});
    let push = create_policy(&s, policy).await;
    let shown: Value = s.api(Method::GET, &format!("/replication/policies/{push}"), None).await.json().await.unwrap();
    assert_eq!(
        (shown["dest_registry"]["name"].as_str(), shown["src_registry"]["name"].as_str()),
        (Some("site-b"), Some("Local"))
    );
    let e = run(&s, push).await;
    assert_eq!(e["status"], "Succeed", "{e}");
    let t = tasks(&s, &e).await;
    let mut copied: Vec<&str> = t.iter().map(|t| t["src_resource"].as_str().unwrap()).collect();
    copied.sort();
    assert_eq!(copied, ["team/app:v1", "team/app:v2", "team/web:v1"], "{t:?}");
    assert_eq!((e["total"].as_i64(), e["succeed"].as_i64()), (Some(3), Some(3)));
    let client = berth_client::Client::new(&berth_client::Endpoint {
        url: upstream.url.clone(),
        credentials: Some(("site-b".into(), "Site-B-Passw0rd".into())),
        ..Default::default()
    })
    .unwrap();
    for name in ["team/app:v1", "team/app:v2", "team/web:v1"] {
        let (repo, tag) = name.split_once(':').unwrap();
        assert_eq!(client.manifest(repo, tag).await.unwrap().digest, digests[name], "{name} arrived as it is");
    }
    assert!(client.manifest("team/app", "v3-rc1").await.is_err() && client.manifest("other/x", "v1").await.is_err());
    let log = s
        .api(Method::GET, &format!("/replication/executions/{}/tasks/{}/log", e["id"], t[0]["id"]), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("copied") && log.contains("blobs"), "{log}");

    // Again: everything is there already; no blob is sent twice.
    let uploads = |log: &str| log.lines().filter(|l| l.contains("method=PUT") && l.contains("/blobs/uploads/")).count();
    let before = uploads(&upstream.log());
    assert!(before >= 4, "the first run sent the blobs: {before}");
    let e = run(&s, push).await;
    assert_eq!(e["status"], "Succeed", "{e}");
    assert_eq!(uploads(&upstream.log()), before, "only missing blobs are copied");
    let t = tasks(&s, &e).await;
    let log = s
        .api(Method::GET, &format!("/replication/executions/{}/tasks/{}/log", e["id"], t[0]["id"]), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("is already"), "{log}");

    // Pull-based, into another namespace; a multi-arch index with its platforms.
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    run_ok(
        tokio::process::Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "-q",
                "--all",
                "--dest-tls-verify=false",
                "--dest-creds",
                "site-b:Site-B-Passw0rd",
            ])
            .arg(format!("oci:{}:multi", layout.display()))
            .arg(format!("docker://{}/library/multi:latest", upstream.host)),
    )
    .await;
    s.project("pulled", false).await;
    let policy = json!({"name": "from-site-b", "src_registry": {"id": registry}, "dest_namespace": "pulled",
        "filters": [{"type": "name", "value": "library/**"}]});
    let pull = create_policy(&s, policy).await;
    let e = run(&s, pull).await;
    assert_eq!(e["status"], "Succeed", "{e}");
    let index = layout_digest(&layout, "multi");
    let r = s.get("/v2/pulled/multi/manifests/latest").await;
    assert_eq!(header(&r, "docker-content-digest"), Some(index.as_str()));
    let arm = tmp.path().join("arm");
    run_ok(
        tokio::process::Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false", "--override-arch", "arm64"])
            .env("REGISTRY_AUTH_FILE", s.auth_file())
            .arg(format!("docker://{}/pulled/multi:latest", s.host()))
            .arg(format!("oci:{}:arm", arm.display())),
    )
    .await;

    // Listings, a finished run cannot be stopped, and the policy can go.
    let list: Vec<Value> =
        s.api(Method::GET, &format!("/replication/executions?policy_id={push}"), None).await.json().await.unwrap();
    assert_eq!(list.len(), 2);
    let e = expect_error(
        s.api(Method::PUT, &format!("/replication/executions/{}", list[0]["id"]), None).await,
        StatusCode::CONFLICT,
        "CONFLICT",
    )
    .await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("has ended"), "{e}");
    let e = expect_error(
        s.api(Method::DELETE, &format!("/registries/{registry}"), None).await,
        StatusCode::PRECONDITION_FAILED,
        "PRECONDITION",
    )
    .await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("replication policy"), "{e}");
    assert_eq!(s.api(Method::DELETE, &format!("/replication/policies/{push}"), None).await.status(), StatusCode::OK);
    assert_eq!(
        s.api(Method::GET, &format!("/replication/policies/{push}"), None).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// A replication interrupted by `kill -9` resumes when Berth comes back (the job's lease
/// expires and it runs again): the tasks done stay done, the rest finish, nothing is copied
/// twice or lost. The policy's bandwidth limit keeps the run slow enough to interrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_killed_mid_run_resumes_and_finishes() {
    let upstream = berth_test_support::Distribution::start(None);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, base) = crate::crash::spawn_berth(&data);
    let s = TestServer::attach(&base, Vec::new());
    let mut digests = Vec::new();
    for i in 0..12 {
        let repo = format!("bulk/app{i:02}");
        let manifest = s.upload_image_blobs(&repo, 256 << 10).await;
        let r = s.put_manifest(&repo, "v1", "application/vnd.oci.image.manifest.v1+json", &manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        digests.push((repo, sha256(&manifest)));
    }
    let registry = endpoint(&s, &upstream.url).await;
    // 512 KiB/s: about half a second per image.
    let policy = json!({"name": "slow", "dest_registry": {"id": registry}, "speed": 512, "concurrency": 1,
        "filters": [{"type": "name", "value": "bulk/**"}]});
    let policy = create_policy(&s, policy).await;
    let r = s.api(Method::POST, "/replication/executions", Some(json!({ "policy_id": policy }))).await;
    let execution = location(&r).trim_start_matches("/api/v2.0").to_owned();
    let done = |t: &[Value]| t.iter().filter(|t| t["status"] == "Succeed").count();
    eventually("three tasks done", async || {
        let t: Vec<Value> =
            s.api(Method::GET, &format!("{execution}/tasks?page_size=100"), None).await.json().await.unwrap();
        if done(&t) >= 3 { Ok(()) } else { Err(format!("{t:?}")) }
    })
    .await;
    child.kill().unwrap(); // SIGKILL, mid-run
    child.wait().unwrap();
    let (mut child, base) = crate::crash::spawn_berth(&data);
    let s = TestServer::attach(&base, Vec::new());
    let t: Vec<Value> =
        s.api(Method::GET, &format!("{execution}/tasks?page_size=100"), None).await.json().await.unwrap();
    let before = done(&t);
    assert!((3..12).contains(&before), "killed mid-run: {before} of 12 done");
    // The job's lease (30 s) runs out, then the run resumes.
    let e = eventually("the resumed run to end", async || {
        let e: Value = s.api(Method::GET, &execution, None).await.json().await.unwrap();
        if e["status"] != "InProgress" { Ok(e) } else { Err(e) }
    })
    .await;
    assert_eq!(e["status"], "Succeed", "{e}");
    let t: Vec<Value> =
        s.api(Method::GET, &format!("{execution}/tasks?page_size=100"), None).await.json().await.unwrap();
    assert_eq!((t.len(), done(&t)), (12, 12), "one task per image, each done once: {t:?}");
    let client =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    for (repo, digest) in &digests {
        assert_eq!(&client.manifest(repo, "v1").await.unwrap().digest, digest, "{repo}");
    }
    let uploads = upstream.log().lines().filter(|l| l.contains("method=PUT") && l.contains("/blobs/uploads/")).count();
    assert!((24..=26).contains(&uploads), "24 blobs, at most the one in flight sent again: {uploads}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// An event-based push policy replicates each push it selects within seconds, through the
/// event log; pushes it does not select start nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_replicates_within_seconds() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    let registry = endpoint(&s, &upstream.url).await;
    let pull_based = json!({"name": "x", "src_registry": {"id": registry}, "trigger": {"type": "event_based"}});
    refused(&s, pull_based, "push-based").await;
    let policy = json!({"name": "live", "dest_registry": {"id": registry}, "trigger": {"type": "event_based"},
        "filters": [{"type": "name", "value": "live/**"}]});
    let policy = create_policy(&s, policy).await;
    let digest = sha256(&s.push_image("live/app", "v1").await);
    s.push_image("other/app", "v1").await;
    let client =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    let started = std::time::Instant::now();
    let arrived = eventually("live/app:v1 replicated", async || client.manifest("live/app", "v1").await).await;
    assert_eq!(arrived.digest, digest, "replicated after {:?}", started.elapsed());
    let runs: Vec<Value> =
        s.api(Method::GET, &format!("/replication/executions?policy_id={policy}"), None).await.json().await.unwrap();
    assert_eq!(runs.len(), 1, "one run, for the one selected push: {runs:?}");
    assert_eq!(runs[0]["trigger"], "event_based");
    assert!(client.manifest("other/app", "v1").await.is_err(), "not selected, not replicated");
}

/// A push policy with `deletion` replicates deletions made here: a tag deleted here goes at
/// the destination (a second Berth, with token auth), then an artifact deleted by digest;
/// the deletion of a tag the filter leaves out replicates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_replicate_when_the_policy_says_so() {
    let peer = TestServer::start().await;
    let s = TestServer::start().await;
    peer.project("live", false).await;
    peer.user("mirror", "Mirror-Passw0rd-1").await;
    peer.member("live", "mirror", 1).await;
    let endpoint = json!({"name": "peer", "type": "harbor", "url": peer.base,
        "credential": {"type": "basic", "access_key": "mirror", "access_secret": "Mirror-Passw0rd-1"}});
    let r = s.api(Method::POST, "/registries", Some(endpoint)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let registry: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let pull_based = json!({"name": "x", "src_registry": {"id": registry}, "deletion": true});
    refused(&s, pull_based, "push-based policies only").await;
    let policy = json!({"name": "mirror", "dest_registry": {"id": registry}, "trigger": {"type": "event_based"},
        "deletion": true, "filters": [{"type": "name", "value": "live/**"}, {"type": "tag", "value": "v*"}]});
    let policy = create_policy(&s, policy).await;
    let mut digests = Vec::new();
    for tag in ["v1", "v2", "keep"] {
        digests.push(sha256(&s.push_image("live/app", tag).await));
    }
    let there = |reference: String| {
        let peer = &peer;
        async move { peer.head(&format!("/v2/live/app/manifests/{reference}")).await.status() == StatusCode::OK }
    };
    let until = |reference: String, want: bool| {
        let there = &there;
        async move {
            let what = format!("live/app {reference} to become {}", if want { "present" } else { "absent" });
            eventually(&what, async || if there(reference.clone()).await == want { Ok(()) } else { Err("not yet") })
                .await;
        }
    };
    until("v1".into(), true).await;
    until("v2".into(), true).await;
    // `keep` is not selected by the tag filter: its deletion replicates nothing (checked
    // below: the events are handled in order, so its job would come before v1's).
    assert_eq!(s.delete("/v2/live/app/manifests/keep").await.status(), StatusCode::ACCEPTED);
    // A tag deleted here.
    assert_eq!(s.delete("/v2/live/app/manifests/v1").await.status(), StatusCode::ACCEPTED);
    until("v1".into(), false).await;
    assert!(there("v2".into()).await, "v2 was not deleted here");
    // An artifact deleted by digest through the management API, with its tag.
    let r = s.api(Method::DELETE, &format!("/projects/live/repositories/app/artifacts/{}", digests[1]), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    until(digests[1].clone(), false).await;
    until("v2".into(), false).await;
    let runs = eventually("the runs to end", async || {
        let path = format!("/replication/executions?policy_id={policy}");
        let runs: Vec<Value> = s.api(Method::GET, &path, None).await.json().await.unwrap();
        if runs.iter().all(|r| r["status"] != "InProgress") { Ok(runs) } else { Err(format!("{runs:?}")) }
    })
    .await;
    let mut deletions = Vec::new();
    for run in &runs {
        for t in tasks(&s, run).await {
            if t["operation"] == "deletion" {
                assert_eq!(t["status"], "Succeed", "{t}");
                deletions.push(t["src_resource"].as_str().unwrap().to_owned());
            }
        }
    }
    deletions.sort();
    assert_eq!(deletions, vec![format!("live/app:v1"), format!("live/app@{}", digests[1])], "{runs:?}");
}

/// `berth replication`: a policy from a file, listed, run with a line per artifact, its
/// history and logs, deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_replication() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    s.push_image("ops/tool", "1.0").await;
    let berth = || {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base).env("BERTH_USERNAME", ADMIN).env("BERTH_PASSWORD", ADMIN_PASSWORD);
        c
    };
    let mut child = berth()
        .args(["registry", "create", "site-b", &upstream.url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(child.wait().await.unwrap().success());
    let registry: Vec<Value> = s.api(Method::GET, "/registries", None).await.json().await.unwrap();
    let file = s.dir.path().join("policy.json");
    std::fs::write(
        &file,
        json!({"name": "to-b", "dest_registry": {"id": registry[0]["id"]}, "filters": [{"type": "name", "value": "ops/**"}]})
            .to_string(),
    )
    .unwrap();
    let out = run_ok(berth().args(["replication", "create"]).arg(&file)).await;
    assert!(out.starts_with("created replication policy to-b (id "), "{out}");
    let out = run_ok(berth().args(["replication", "list"])).await;
    let row = out.lines().nth(1).unwrap();
    assert!(row.contains("to-b") && row.contains("push to site-b") && row.contains("name=ops/**"), "{out}");
    let out = run_ok(berth().args(["replication", "run", "to-b"])).await;
    assert!(out.lines().nth(1).unwrap().starts_with("ops/tool:1.0"), "{out}");
    assert!(out.contains("Succeed (1 artifact replicated)"), "{out}");
    let out = run_ok(berth().args(["replication", "history", "to-b"])).await;
    let id = out.lines().nth(1).and_then(|l| l.split_whitespace().next()).unwrap().to_owned();
    let out = run_ok(berth().args(["replication", "log", &id])).await;
    assert!(out.contains("ops/tool:1.0 (Succeed)") && out.contains("copied ops/tool:1.0"), "{out}");
    let err = run_fails(berth().args(["replication", "run", "nope"])).await;
    assert!(err.contains("no replication policy named \"nope\""), "{err}");
    run_ok(berth().args(["replication", "delete", "to-b"])).await;
    assert!(run_ok(berth().args(["replication", "list"])).await.contains("no replication policies"));
}

/// Two hundred images out to Distribution and back into another namespace, filtered: every
/// one arrives with its digest, the ones the filter leaves out do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_images_both_ways() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    let mut digests = Vec::new();
    for i in 0..200 {
        let repo = format!("fleet/svc{:03}", i % 50);
        let tag = format!("v{}", i / 50);
        digests.push((repo.clone(), tag.clone(), sha256(&s.push_image(&repo, &tag).await)));
    }
    s.push_image("fleet/scratch", "tmp").await;
    let registry = endpoint(&s, &upstream.url).await;
    let out = json!({"name": "out", "dest_registry": {"id": registry}, "filters": [{"type": "tag", "value": "v*"}]});
    let out = create_policy(&s, out).await;
    let e = run(&s, out).await;
    assert_eq!((e["status"].as_str(), e["succeed"].as_i64()), (Some("Succeed"), Some(200)), "{e}");
    s.project("back", false).await;
    let back = json!({"name": "back", "src_registry": {"id": registry}, "dest_namespace": "back",
        "filters": [{"type": "name", "value": "fleet/**"}]});
    let back = create_policy(&s, back).await;
    let e = run(&s, back).await;
    assert_eq!((e["status"].as_str(), e["succeed"].as_i64()), (Some("Succeed"), Some(200)), "{e}");
    for (repo, tag, digest) in &digests {
        let here = repo.replacen("fleet/", "back/", 1);
        let r = s.head(&format!("/v2/{here}/manifests/{tag}")).await;
        assert_eq!(header(&r, "docker-content-digest"), Some(digest.as_str()), "{here}:{tag}");
    }
    assert_eq!(s.head("/v2/back/scratch/manifests/tmp").await.status(), StatusCode::NOT_FOUND, "filtered out");
}

/// A scheduled policy runs by its cron (six fields, seconds first); a bad cron is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_policy_runs_by_its_cron() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    s.push_image("nightly/app", "v1").await;
    let registry = endpoint(&s, &upstream.url).await;
    for (cron, why) in [(json!({}), "needs trigger_settings.cron"), (json!({"cron": "0 3 * * *"}), "six")] {
        let bad = json!({"name": "x", "dest_registry": {"id": registry},
            "trigger": {"type": "scheduled", "trigger_settings": cron}});
        refused(&s, bad, why).await;
    }
    let policy = json!({"name": "every-second", "dest_registry": {"id": registry},
        "trigger": {"type": "scheduled", "trigger_settings": {"cron": "* * * * * *"}}});
    let policy = create_policy(&s, policy).await;
    let runs = eventually("a scheduled run to succeed", async || {
        let runs: Vec<Value> = s
            .api(Method::GET, &format!("/replication/executions?policy_id={policy}"), None)
            .await
            .json()
            .await
            .unwrap();
        if runs.iter().any(|r| r["status"] == "Succeed") { Ok(runs) } else { Err(format!("{runs:?}")) }
    })
    .await;
    let done = runs.iter().find(|r| r["status"] == "Succeed").unwrap_or_else(|| panic!("{runs:?}"));
    assert_eq!(done["trigger"], "scheduled");
    let client =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    assert!(client.manifest("nightly/app", "v1").await.is_ok());
}

/// A run stopped midway ends as Stopped: what it finished stays, the rest is marked stopped
/// and not copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_midway_copies_no_more() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    for i in 0..8 {
        let repo = format!("batch/app{i}");
        let manifest = s.upload_image_blobs(&repo, 256 << 10).await;
        let r = s.put_manifest(&repo, "v1", "application/vnd.oci.image.manifest.v1+json", &manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let registry = endpoint(&s, &upstream.url).await;
    let policy = json!({"name": "slow", "dest_registry": {"id": registry}, "speed": 256, "concurrency": 1});
    let policy = create_policy(&s, policy).await;
    let r = s.api(Method::POST, "/replication/executions", Some(json!({ "policy_id": policy }))).await;
    let execution = location(&r).trim_start_matches("/api/v2.0").to_owned();
    let tasks = || async {
        s.api(Method::GET, &format!("{execution}/tasks?page_size=100"), None).await.json::<Vec<Value>>().await.unwrap()
    };
    eventually("a task done", async || {
        let t = tasks().await;
        if t.iter().any(|t| t["status"] == "Succeed") { Ok(()) } else { Err(format!("{t:?}")) }
    })
    .await;
    assert_eq!(s.api(Method::PUT, &execution, None).await.status(), StatusCode::OK);
    // Time in which a run that did not stop would copy more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let e: Value = s.api(Method::GET, &execution, None).await.json().await.unwrap();
    assert_eq!((e["status"].as_str(), e["status_text"].as_str()), (Some("Stopped"), Some("stopped by a user")));
    // The task in flight ends at its own pace.
    let t = eventually("nothing left running", async || {
        let t = tasks().await;
        if t.iter().all(|t| t["status"] == "Succeed" || t["status"] == "Stopped") {
            Ok(t)
        } else {
            Err(format!("{t:?}"))
        }
    })
    .await;
    let succeeded = t.iter().filter(|t| t["status"] == "Succeed").count();
    assert!((1..8).contains(&succeeded), "{t:?}");
    let client =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    // The artifact in flight when the run stopped may still land (and its task say so).
    let copied = eventually("exactly what the tasks say was copied", async || {
        let mut copied = 0;
        for i in 0..8 {
            if client.manifest(&format!("batch/app{i}"), "v1").await.is_ok() {
                copied += 1;
            }
        }
        let succeeded = tasks().await.iter().filter(|t| t["status"] == "Succeed").count();
        if copied == succeeded { Ok(copied) } else { Err(format!("{copied} copied, {succeeded} tasks succeeded")) }
    })
    .await;
    assert!(copied < 8, "the stop held: {copied} of 8");
}

/// Label filters (Harbor's labels on artifacts here): a push policy copies what carries the
/// label and not what carries an excluded one; a pull policy cannot filter by labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_filters_select_what_push_policies_copy() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    for tag in ["v1", "v2", "v3"] {
        s.push_image("lab/app", tag).await;
    }
    let mut ids = Vec::new();
    for name in ["release", "broken"] {
        let r = s.api(Method::POST, "/labels", Some(json!({"name": name, "scope": "g"}))).await;
        ids.push(location(&r).rsplit('/').next().unwrap().parse::<i64>().unwrap());
    }
    for (tag, label) in [("v1", ids[0]), ("v2", ids[0]), ("v2", ids[1])] {
        let path = format!("/projects/lab/repositories/app/artifacts/{tag}/labels");
        assert_eq!(s.api(Method::POST, &path, Some(json!({"id": label}))).await.status(), StatusCode::OK);
    }
    let registry = endpoint(&s, &upstream.url).await;
    let pull =
        json!({"name": "x", "src_registry": {"id": registry}, "filters": [{"type": "label", "value": ["release"]}]});
    refused(&s, pull, "push-based").await;
    let policy = json!({"name": "releases", "dest_registry": {"id": registry}, "filters": [
        {"type": "label", "value": ["release"]}, {"type": "label", "value": ["broken"], "decoration": "excludes"}]});
    let policy = create_policy(&s, policy).await;
    let e = run(&s, policy).await;
    assert_eq!(e["status"], "Succeed", "{e}");
    let copied: Vec<String> =
        tasks(&s, &e).await.iter().map(|t| t["src_resource"].as_str().unwrap().to_owned()).collect();
    assert_eq!(copied, ["lab/app:v1"], "released and not broken");
}
