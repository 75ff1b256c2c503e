//! Webhooks: Harbor's webhook policies API, payloads in Harbor's Default shape, CloudEvents
//! 1.0 (validated by the CloudEvents Python SDK in the receiver) and Slack's; HMAC signatures
//! (checked by the receiver with Python's hmac); at-least-once delivery in order per policy
//! through a receiver that is killed and restarted; dead letters redelivered from the API and
//! the CLI; the SSRF guard; who may see and change policies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::*;

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/receiver.py");

/// The test receiver (`tests/webhooks/receiver.py`) on a fixed port, so it can be killed and
/// started again at the same address.
struct Receiver {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Receiver {
    async fn start(dir: &Path) -> Receiver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = Receiver { port, dir: dir.to_owned(), child: None };
        r.resume().await;
        r
    }

    async fn resume(&mut self) {
        let mut child = Command::new("python3")
            .arg(RECEIVER)
            .arg(self.port.to_string())
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 tests/webhooks/receiver.py");
        let url = format!("http://127.0.0.1:{}/", self.port);
        eventually("the receiver to listen", async || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("the receiver exited: {st}");
            }
            reqwest::get(&url).await.map(drop)
        })
        .await;
        self.child = Some(child);
    }

    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hooks/{name}", self.port)
    }

    fn set(&self, file: &str, key: &str, value: Value) {
        let path = self.dir.join(file);
        let mut v: Value = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(json!({}));
        v[key] = value;
        std::fs::write(path, v.to_string()).unwrap();
    }

    /// Everything received at `/hooks/{name}`, in arrival order.
    fn received(&self, name: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("received.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["path"] == format!("/hooks/{name}"))
            .collect()
    }

    /// Wait until `/hooks/{name}` has received `n` requests; returns them.
    async fn wait_for(&self, name: &str, n: usize) -> Vec<Value> {
        eventually(&format!("{n} deliveries to {name}"), async || {
            let got = self.received(name);
            if got.len() >= n { Ok(got) } else { Err(format!("{} so far: {got:?}", got.len())) }
        })
        .await
    }
}

fn body(rec: &Value) -> Value {
    serde_json::from_str(rec["body"].as_str().unwrap()).unwrap()
}

async fn create_policy(s: &TestServer, project: &str, policy: Value) -> (i64, String) {
    let r = s.api(Method::POST, &format!("/projects/{project}/webhook/policies"), Some(policy)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let v: Value = r.json().await.unwrap();
    (id, v["secret"].as_str().unwrap().to_owned())
}

fn quick(c: &mut berth_config::Config) {
    c.webhooks.allowed_hosts = vec!["127.0.0.1".into()];
    c.webhooks.retry_base = Duration::from_millis(100);
    c.webhooks.max_attempts = 6;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_deliver_harbor_payloads_cloudevents_and_slack_signed() {
    let s = TestServer::start_with(quick).await;
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start(tmp.path()).await;
    s.project("hooks", false).await;

    let events = s.api(Method::GET, "/projects/hooks/webhook/events", None).await.json::<Value>().await.unwrap();
    assert!(events["event_type"].as_array().unwrap().contains(&json!("TAG_RETENTION")), "{events}");
    assert_eq!(events["payload_formats"][0], json!({"notify_type": "http", "formats": ["Default", "CloudEvents"]}));

    let (ci, ci_secret) = create_policy(
        &s,
        "hooks",
        json!({"name": "ci", "description": "builds", "enabled": true,
               "event_types": ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "SCANNING_COMPLETED"],
               "targets": [{"type": "http", "address": rx.url("ci"), "auth_header": "Bearer s3cret", "skip_cert_verify": false}]}),
    )
    .await;
    rx.set("secrets.json", "ci", json!(ci_secret));
    let (_, ce_secret) = create_policy(
        &s,
        "hooks",
        json!({"name": "ce", "event_types": ["PUSH_ARTIFACT"],
               "targets": [{"type": "http", "address": rx.url("ce"), "payload_format": "CloudEvents"}],
               "secret": "a-secret-of-my-own-choosing"}),
    )
    .await;
    assert_eq!(ce_secret, "a-secret-of-my-own-choosing");
    rx.set("secrets.json", "ce", json!(ce_secret));
    create_policy(
        &s,
        "hooks",
        json!({"name": "chat", "event_types": ["PUSH_ARTIFACT"], "targets": [{"type": "slack", "address": rx.url("chat")}]}),
    )
    .await;

    // Shown in Harbor's shape; the auth header masked, the secret never shown again.
    let listed: Value = s.api(Method::GET, "/projects/hooks/webhook/policies", None).await.json().await.unwrap();
    let ci_json = listed.as_array().unwrap().iter().find(|p| p["name"] == "ci").unwrap().clone();
    assert_eq!(ci_json["targets"][0]["auth_header"], "********");
    assert_eq!(ci_json["targets"][0]["payload_format"], "Default");
    assert_eq!(ci_json["creator"], ADMIN);
    assert!(!listed.to_string().contains(&ci_secret) && !listed.to_string().contains("s3cret"));

    // Push (an image with a real filesystem layer, so its scan succeeds), pull, scan and
    // delete: each reaches the receiver once, in that order.
    let layer = targz(&[("etc/os-release".into(), b"ID=debian\nVERSION_ID=12\n".to_vec())]);
    let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256(&gunzip(&layer))]}}).to_string();
    let (cd, ld) = (s.push_blob("hooks/app", config.as_bytes()).await, s.push_blob("hooks/app", &layer).await);
    let manifest = image_manifest(&cd, config.len(), &[(ld, layer.len())], None);
    assert_eq!(s.put_manifest("hooks/app", "v1", OCI_MANIFEST, &manifest).await.status(), StatusCode::CREATED);
    let digest = sha256(&manifest);
    assert_eq!(s.get("/v2/hooks/app/manifests/v1").await.status(), StatusCode::OK);
    rx.wait_for("ci", 2).await;
    let r = s.api(Method::POST, "/projects/hooks/repositories/app/artifacts/v1/scan", None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    crate::scan::scanned(&s, "hooks", "app", "v1").await;
    rx.wait_for("ci", 3).await;
    assert_eq!(s.delete(&format!("/v2/hooks/app/manifests/{digest}")).await.status(), StatusCode::ACCEPTED);
    let all = rx.wait_for("ci", 4).await;
    let types: Vec<String> = all.iter().map(|r| body(r)["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(types, ["PUSH_ARTIFACT", "PULL_ARTIFACT", "SCANNING_COMPLETED", "DELETE_ARTIFACT"]);
    let push = body(&all[0]);
    assert_eq!(push["operator"], ADMIN);
    assert_eq!(
        push["event_data"],
        json!({"resources": [{"digest": digest, "tag": "v1", "resource_url": format!("{}/hooks/app:v1", s.host())}],
               "repository": {"name": "app", "namespace": "hooks", "repo_full_name": "hooks/app", "repo_type": "private"}})
    );
    let scan = body(&all[2]);
    let overview = &scan["event_data"]["resources"][0]["scan_overview"]["application/vnd.security.vulnerability.report; version=1.1"];
    assert_eq!(overview["scan_status"], "Success", "{scan}");
    for rec in &all {
        assert_eq!(rec["hmac_ok"], true, "{rec}");
        assert_eq!(rec["headers"]["authorization"], "Bearer s3cret");
        assert_eq!(rec["headers"]["content-type"], "application/json");
        assert!(rec["headers"]["x-berth-delivery"].as_str().is_some());
    }

    // CloudEvents: parsed and validated by the SDK.
    let ce = rx.wait_for("ce", 1).await;
    assert_eq!(ce[0]["hmac_ok"], true);
    let attrs = &ce[0]["cloudevent"]["attributes"];
    assert_eq!(attrs["type"], "harbor.artifact.pushed", "{}", ce[0]);
    assert_eq!(attrs["specversion"], "1.0");
    assert_eq!(attrs["operator"], ADMIN);
    assert!(attrs["source"].as_str().unwrap().starts_with("/projects/"));
    assert_eq!(ce[0]["cloudevent"]["data"], push["event_data"]);
    assert_eq!(ce[0]["headers"]["content-type"], "application/cloudevents+json");

    // Slack: Block Kit sections, the event data in the last one.
    let chat = body(&rx.wait_for("chat", 1).await[0]);
    let blocks = chat["blocks"].as_array().unwrap();
    assert_eq!(blocks[1]["text"]["text"], "*event_type:* PUSH_ARTIFACT");
    assert!(blocks[5]["text"]["text"].as_str().unwrap().contains("hooks/app"));

    // The history: executions, their task and its log.
    let execs: Value = s
        .api(Method::GET, &format!("/projects/hooks/webhook/policies/{ci}/executions"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(execs.as_array().unwrap().len(), 4);
    assert!(execs.as_array().unwrap().iter().all(|e| e["status"] == "Success" && e["trigger"] == "EVENT"), "{execs}");
    let eid = execs[0]["id"].as_i64().unwrap();
    let tasks: Value = s
        .api(Method::GET, &format!("/projects/hooks/webhook/policies/{ci}/executions/{eid}/tasks"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tasks[0]["run_count"], 1);
    let log = s
        .api(Method::GET, &format!("/projects/hooks/webhook/policies/{ci}/executions/{eid}/tasks/{eid}/log"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("delivered to") && log.contains("HTTP 200"), "{log}");
    let last: Value = s.api(Method::GET, "/projects/hooks/webhook/lasttrigger", None).await.json().await.unwrap();
    assert!(last.as_array().unwrap().iter().any(|t| t["policy_name"] == "ci" && t["event_type"] == "DELETE_ARTIFACT"));

    // The SSRF guard: metadata, link-local and (not allow-listed) loopback names refused.
    for (address, says) in [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fe80::1]:8080/", "link-local"),
        ("http://localhost:8080/", "loopback"),
        ("http://127.0.0.2:8080/", "loopback"),
        ("file:///etc/passwd", "http and https"),
    ] {
        let r = s
            .api(
                Method::POST,
                "/projects/hooks/webhook/policies",
                Some(json!({"name": "x", "event_types": ["PUSH_ARTIFACT"], "targets": [{"type": "http", "address": address}]})),
            )
            .await;
        let e = expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
        assert!(e.to_string().contains(says), "{address}: {e}");
    }
    // Bad policies name what is wrong.
    for (policy, says) in [
        (json!({"name": "x", "event_types": ["PUSH"], "targets": [{"type": "http", "address": rx.url("x")}]}), "PUSH"),
        (json!({"name": "x", "event_types": ["PUSH_ARTIFACT"], "targets": []}), "targets"),
        (
            json!({"name": "x", "event_types": ["PUSH_ARTIFACT"], "targets": [{"type": "slack", "address": rx.url("x"), "payload_format": "CloudEvents"}]}),
            "Slack",
        ),
        (
            json!({"name": "ci", "event_types": ["PUSH_ARTIFACT"], "targets": [{"type": "http", "address": rx.url("x")}]}),
            "already",
        ),
    ] {
        let r = s.api(Method::POST, "/projects/hooks/webhook/policies", Some(policy)).await;
        assert!(r.status().is_client_error());
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{text}");
    }

    // A test delivery, before saving: reached, or why not.
    let r = s
        .api(
            Method::POST,
            "/projects/hooks/webhook/policies/test",
            Some(json!({"name": "t", "targets": [{"type": "http", "address": rx.url("probe")}]})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    assert_eq!(body(&rx.wait_for("probe", 1).await[0])["type"], "TEST");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let r = s
        .api(
            Method::POST,
            "/projects/hooks/webhook/policies/test",
            Some(json!({"targets": [{"type": "http", "address": format!("http://127.0.0.1:{closed}/")}]})),
        )
        .await;
    let e = expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(e.to_string().contains("could not connect"), "{e}");

    // Who may: maintainers read, only project administrators change; developers see nothing.
    s.user("maint", "Maint-pass-1").await;
    s.member("hooks", "maint", 4).await;
    s.user("dev", "Dev-pass-1").await;
    s.member("hooks", "dev", 2).await;
    let maint = client_as("maint", "Maint-pass-1");
    let url = s.url("/api/v2.0/projects/hooks/webhook/policies");
    assert_eq!(maint.get(&url).send().await.unwrap().status(), StatusCode::OK);
    let new =
        json!({"name": "m", "event_types": ["PUSH_ARTIFACT"], "targets": [{"type": "http", "address": rx.url("m")}]});
    assert_eq!(maint.post(&url).json(&new).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(client_as("dev", "Dev-pass-1").get(&url).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // Changing a policy keeps its masked auth header; deleting it stops deliveries.
    let mut changed = ci_json.clone();
    changed["event_types"] = json!(["PUSH_ARTIFACT"]);
    let r = s.api(Method::PUT, &format!("/projects/hooks/webhook/policies/{ci}"), Some(changed)).await;
    assert_eq!(r.status(), StatusCode::OK);
    s.push_image("hooks/app", "v2").await;
    let after = rx.wait_for("ci", 5).await;
    assert_eq!(after[4]["headers"]["authorization"], "Bearer s3cret");
    assert_eq!(body(&after[4])["type"], "PUSH_ARTIFACT");
    assert_eq!(
        s.api(Method::DELETE, &format!("/projects/hooks/webhook/policies/{ci}"), None).await.status(),
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_and_restarted_loses_nothing_and_dead_letters_are_redelivered() {
    let s = TestServer::start_with(quick).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(tmp.path()).await;
    s.project("relay", false).await;
    let (id, secret) = create_policy(
        &s,
        "relay",
        json!({"name": "relay", "event_types": ["PUSH_ARTIFACT"], "targets": [{"type": "http", "address": rx.url("relay")}]}),
    )
    .await;
    rx.set("secrets.json", "relay", json!(secret));

    // The receiver is down while five images are pushed; it comes back within the retries.
    rx.kill().await;
    for i in 1..=5 {
        s.push_image("relay/app", &format!("t{i}")).await;
    }
    let retried = eventually("a failed try to be recorded", async || {
        let v: Value = s
            .api(Method::GET, &format!("/projects/relay/webhook/policies/{id}/executions"), None)
            .await
            .json()
            .await
            .unwrap();
        let tried = v.as_array().unwrap().iter().any(|e| e["extra_attrs"]["attempts"].as_i64() > Some(0));
        if tried { Ok(v) } else { Err(v.to_string()) }
    })
    .await;
    assert!(retried.to_string().contains("could not connect"), "{retried}");
    rx.resume().await;
    let got = rx.wait_for("relay", 5).await;
    let tags: Vec<String> =
        got.iter().map(|r| body(r)["event_data"]["resources"][0]["tag"].as_str().unwrap().to_owned()).collect();
    assert_eq!(tags, ["t1", "t2", "t3", "t4", "t5"], "in order, each once");
    assert!(got.iter().all(|r| r["hmac_ok"] == true));

    // A receiver that keeps failing: the delivery gives up (the dead letter), visible in the
    // API and the CLI, and is sent again by hand once the receiver is fixed.
    rx.set("status.json", "relay", json!(503));
    s.push_image("relay/app", "t6").await;
    let dead = eventually("the delivery to give up", async || {
        let v: Value = s
            .api(Method::GET, &format!("/projects/relay/webhook/policies/{id}/executions?q=status%3DError"), None)
            .await
            .json()
            .await
            .unwrap();
        match v.as_array().unwrap().first() {
            Some(e) => Ok(e.clone()),
            None => Err(v.to_string()),
        }
    })
    .await;
    assert_eq!(dead["extra_attrs"]["attempts"], 6);
    assert_eq!(dead["extra_attrs"]["last_status_code"], 503);
    assert!(dead["status_message"].as_str().unwrap().contains("gave up after 6 tries"), "{dead}");
    let berth = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base).env("BERTH_USERNAME", ADMIN).env("BERTH_PASSWORD", ADMIN_PASSWORD);
        c
    };
    let table = run_ok(berth().args(["webhook", "deliveries", "relay", &id.to_string(), "--status", "Error"])).await;
    assert!(table.contains("Error") && table.contains("503") && table.contains("PUSH_ARTIFACT"), "{table}");
    let listed = run_ok(berth().args(["webhook", "list", "relay"])).await;
    assert!(listed.contains("relay") && listed.contains("PUSH_ARTIFACT"), "{listed}");
    rx.set("status.json", "relay", json!(200));
    let eid = dead["id"].as_i64().unwrap();
    run_ok(berth().args(["webhook", "redeliver", "relay", &id.to_string(), &eid.to_string()])).await;
    let got = rx.wait_for("relay", 12).await;
    let last = body(got.last().unwrap());
    assert_eq!(last["event_data"]["resources"][0]["tag"], "t6");

    // The portal's history shows it; Redeliver there sends it once more.
    let web = crate::portal::Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let project: Value = s.api(Method::GET, "/projects/relay", None).await.json().await.unwrap();
    let page = format!("/harbor/projects/{}/webhooks/{id}", project["project_id"]);
    let (st, html) = web.get(&format!("/harbor/projects/{}/webhooks", project["project_id"])).await;
    assert!(st == StatusCode::OK && html.contains("relay") && html.contains("Artifact pushed"), "{html}");
    let (st, html) = web.get(&page).await;
    assert!(st == StatusCode::OK && html.contains("Delivered") && html.contains("Redeliver delivery 6"), "{html}");
    let (st, html, _) = web.post(&format!("{page}/deliveries/{eid}"), &[]).await;
    assert!(st == StatusCode::OK && html.contains(&format!("Delivery {eid} will be sent again.")), "{html}");
    rx.wait_for("relay", 13).await;
    // A delivery in progress or pending cannot be "redelivered"; a finished one can again.
    let again = run_fails(berth().args(["webhook", "redeliver", "relay", &id.to_string(), "999999"])).await;
    assert!(again.contains("no delivery 999999"), "{again}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_retention_and_replication_outcomes_reach_webhooks() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start_with(quick).await;
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start(tmp.path()).await;
    const KIB: i64 = 1024;
    let new = json!({"project_name": "ops", "metadata": {"public": "true"}, "storage_limit": 100 * KIB});
    assert_eq!(s.api(Method::POST, "/projects", Some(new)).await.status(), StatusCode::CREATED);
    let project: Value = s.api(Method::GET, "/projects/ops", None).await.json().await.unwrap();
    let events = ["QUOTA_WARNING", "QUOTA_EXCEED", "TAG_RETENTION", "REPLICATION"];
    create_policy(
        &s,
        "ops",
        json!({"name": "ops", "event_types": events, "targets": [{"type": "http", "address": rx.url("ops")}]}),
    )
    .await;

    // 90 KiB of 100: past 85 %, a warning; 20 KiB more: refused, an exceeded notice.
    let big = random_bytes(90 * KIB as usize);
    let big_digest = s.push_blob("ops/app", &big).await;
    let warned = body(&rx.wait_for("ops", 1).await[0]);
    assert_eq!(warned["type"], "QUOTA_WARNING");
    assert_eq!(warned["event_data"]["resources"][0]["digest"], big_digest);
    assert_eq!(warned["event_data"]["repository"]["repo_type"], "public");
    assert!(warned["event_data"]["custom_attributes"]["Details"].as_str().unwrap().contains("85%"), "{warned}");
    let r = s
        .client
        .post(s.url(&format!("/v2/ops/app/blobs/uploads/?digest={}", sha256(&random_bytes(1)))))
        .body(random_bytes(20 * KIB as usize))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let exceeded = body(&rx.wait_for("ops", 2).await[1]);
    assert_eq!(exceeded["type"], "QUOTA_EXCEED");
    assert!(exceeded["event_data"]["custom_attributes"]["Details"].as_str().unwrap().contains("quota"), "{exceeded}");

    // A retention run that deletes one tag of two.
    let r =
        s.api(Method::PUT, &format!("/quotas/{}", project["project_id"]), Some(json!({"hard": {"storage": -1}}))).await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
    s.push_image("ops/app", "keep-1").await;
    s.push_image("ops/app", "old-1").await;
    let rule = json!({
        "disabled": false, "action": "retain", "template": "always", "params": {},
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "keep-*", "extras": "{\"untagged\":false}"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]},
    });
    let policy = json!({"algorithm": "or", "rules": [rule], "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
                        "scope": {"level": "project", "ref": project["project_id"]}});
    let r = s.api(Method::POST, "/retentions", Some(policy)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let id = location(&r).rsplit('/').next().unwrap().to_owned();
    let r = s.api(Method::POST, &format!("/retentions/{id}/executions"), Some(json!({"dry_run": false}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = rx.wait_for("ops", 3).await;
    let retention = body(&got[2]);
    assert_eq!(retention["type"], "TAG_RETENTION", "{retention}");
    let data = &retention["event_data"]["retention"];
    assert_eq!((data["total"].as_i64(), data["retained"].as_i64()), (Some(2), Some(1)), "{data}");
    assert_eq!(data["deleted_artifact"][0]["name_tag"], "ops/app:old-1");
    assert_eq!(data["project_name"], "ops");

    // A push replication of the project to Distribution.
    let r = s
        .api(Method::POST, "/registries", Some(json!({"name": "dist", "type": "docker-registry", "url": upstream.url})))
        .await;
    let registry: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let r = s
        .api(
            Method::POST,
            "/replication/policies",
            Some(json!({"name": "out", "dest_registry": {"id": registry}, "trigger": {"type": "manual"},
                        "filters": [{"type": "name", "value": "ops/**"}]})),
        )
        .await;
    let policy: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let r = s.api(Method::POST, "/replication/executions", Some(json!({ "policy_id": policy }))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = rx.wait_for("ops", 4).await;
    let replication = body(&got[3]);
    assert_eq!(replication["type"], "REPLICATION", "{replication}");
    let data = &replication["event_data"]["replication"];
    assert_eq!(data["job_status"], "Success", "{data}");
    assert_eq!(data["dest_resource"]["registry_name"], "dist");
    assert_eq!(data["successful_artifact"][0]["name_tag"], "ops/app:keep-1");
    s.stop().await;
}
