//! The event log end to end: a push, pulls and a scan-on-push survive `kill -9` between
//! the write and its consumers, with no effect lost or applied twice; a change made through
//! one replica is honoured by another within a second; `berth events list` shows the log.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::crash::spawn_berth_with;
use crate::support::*;

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

/// `berth events list` on a data directory, as JSON.
async fn events(data: &Path, args: &[&str]) -> Vec<Value> {
    let out = run_ok(berth().args(["events", "list", "--output", "json", "--data-dir"]).arg(data).args(args)).await;
    serde_json::from_str(&out).unwrap()
}

/// Audit entries matching Harbor's `q`.
async fn audit(s: &TestServer, q: &str) -> Vec<Value> {
    let r = s.api(Method::GET, &format!("/audit-logs?page_size=100&q={q}"), None).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn artifact(s: &TestServer, repo: &str, tag: &str) -> Value {
    let (p, r) = repo.split_once('/').unwrap();
    let r = s.api(Method::GET, &format!("/projects/{p}/repositories/{r}/artifacts/{tag}"), None).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn scan_jobs(data: &Path) -> usize {
    let out =
        run_ok(berth().args(["jobs", "list", "--kind", "scan", "--output", "json", "--data-dir"]).arg(data)).await;
    serde_json::from_str::<Vec<Value>>(&out).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_resume_after_kill_9_with_nothing_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An API-only process writes events but runs no consumer: nothing downstream happens yet.
    let api_only = [("BERTH_ROLE".to_owned(), "api".to_owned())];
    let (mut child, base) = spawn_berth_with(&data, None, &api_only);
    let s = TestServer::attach(&base, vec![]);
    let body = json!({"project_name": "ev", "metadata": {"public": "false", "auto_scan": "true"}});
    assert_eq!(s.api(Method::POST, "/projects", Some(body)).await.status(), 201);
    let manifest = s.push_image("ev/app", "v1").await;
    let digest = sha256(&manifest);
    for _ in 0..2 {
        assert_eq!(s.get("/v2/ev/app/manifests/v1").await.status(), 200);
    }
    // Pulls are batched (about a second), then in the log; the push was logged with it.
    let pulled = eventually("pull events in the log", async || {
        let e = events(&data, &["--kind", "artifact.pulled"]).await;
        if e.is_empty() { Err("none yet") } else { Ok(e) }
    })
    .await;
    assert_eq!((pulled[0]["repository"].as_str(), pulled[0]["tag"].as_str()), (Some("ev/app"), Some("v1")));
    assert_eq!((pulled[0]["actor"].as_str(), pulled[0]["data"]["count"].as_i64()), (Some("admin"), Some(2)));
    let pushed = events(&data, &["--kind", "artifact.pushed", "--repo", "ev/app"]).await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0]["digest"], digest.as_str());
    assert!(audit(&s, "operation=push").await.is_empty(), "no consumer ran, so no audit entry yet");
    assert_eq!(artifact(&s, "ev/app", "v1").await["pull_time"], "0001-01-01T00:00:00.000Z");
    assert_eq!(scan_jobs(&data).await, 0);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Restarted with consumers: every effect appears, once.
    let (mut child, base) = spawn_berth_with(&data, None, &[]);
    let s = TestServer::attach(&base, vec![]);
    let a = eventually("pull time from the log", async || {
        let a = artifact(&s, "ev/app", "v1").await;
        if a["pull_time"] != "0001-01-01T00:00:00.000Z" { Ok(a) } else { Err(a) }
    })
    .await;
    assert!(a["pull_time"].as_str().unwrap() >= a["push_time"].as_str().unwrap(), "{a}");
    let v1 = a["tags"].as_array().unwrap().iter().find(|t| t["name"] == "v1").unwrap();
    assert_eq!(v1["pull_time"], a["pull_time"], "the tag it was pulled by shows the pull: {a}");
    eventually("audit entries, the scan job and the usage", async || {
        let (pushes, pulls) = (audit(&s, "operation=push").await.len(), audit(&s, "operation=pull").await.len());
        let scans = scan_jobs(&data).await;
        let usage: Vec<Value> = s.api(Method::GET, "/usage?project=ev", None).await.json().await.unwrap();
        let used = usage.first().map(|u| (u["pushes"].as_i64(), u["pulls"].as_i64()));
        if (pushes, pulls, scans, used) == (1, 1, 1, Some((Some(1), Some(2)))) {
            Ok(())
        } else {
            Err(format!("audit pushes {pushes}, pulls {pulls}; scan jobs {scans}; usage {usage:?}"))
        }
    })
    .await;
    let pull = &audit(&s, "operation=pull").await[0];
    assert_eq!((pull["resource"].as_str(), pull["username"].as_str()), (Some("ev/app:v1"), Some("admin")));
    assert_eq!(pull["client_ip"], "127.0.0.1");
    let repos: Vec<Value> = s.api(Method::GET, "/projects/ev/repositories", None).await.json().await.unwrap();
    assert_eq!(repos[0]["pull_count"], 2);
    // Killed again once the consumers caught up, and restarted: nothing is applied twice.
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, base) = spawn_berth_with(&data, None, &[]);
    let s = TestServer::attach(&base, vec![]);
    let consumers = run_ok(berth().args(["events", "consumers", "--output", "json", "--data-dir"]).arg(&data)).await;
    let consumers: Value = serde_json::from_str(&consumers).unwrap();
    let names: Vec<&str> =
        consumers["consumers"].as_array().unwrap().iter().map(|c| c["consumer"].as_str().unwrap()).collect();
    assert_eq!(names, ["audit", "pulls", "replication", "scan-on-push", "usage", "webhooks"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(audit(&s, "operation=push").await.len(), 1);
    let usage: Vec<Value> = s.api(Method::GET, "/usage?project=ev", None).await.json().await.unwrap();
    assert_eq!(
        (usage.len(), usage[0]["pushes"].as_i64(), usage[0]["pulls"].as_i64()),
        (1, Some(1), Some(2)),
        "{usage:?}"
    );
    assert_eq!(audit(&s, "operation=pull").await.len(), 1);
    assert_eq!(scan_jobs(&data).await, 1);
    let repos: Vec<Value> = s.api(Method::GET, "/projects/ev/repositories", None).await.json().await.unwrap();
    assert_eq!(repos[0]["pull_count"], 2);

    // The text listing an operator reads, and a clear error for a kind that does not exist.
    let text = run_ok(berth().args(["events", "list", "--repo", "ev/app", "--data-dir"]).arg(&data)).await;
    let header = text.lines().next().unwrap();
    assert!(header.contains("SEQ") && header.contains("KIND") && header.contains("SUBJECT"), "{text}");
    assert!(text.contains("artifact.pushed") && text.contains("ev/app:v1 ×2"), "{text}");
    let err = run_fails(berth().args(["events", "list", "--kind", "artifact.push", "--data-dir"]).arg(&data)).await;
    assert!(err.contains("unknown event kind \"artifact.push\"") && err.contains("artifact.pushed"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_and_access_changes_are_logged_with_who_and_what() {
    let s = TestServer::start().await;
    s.project("team", false).await;
    s.user("dev", "Dev-Passw0rd").await;
    s.member("team", "dev", 2).await;
    let manifest = s.push_image("team/app", "v1").await;
    let digest = sha256(&manifest);
    let body = json!({"name": "stable"});
    let r = s.api(Method::POST, &format!("/projects/team/repositories/app/artifacts/{digest}/tags"), Some(body)).await;
    assert_eq!(r.status(), 201);
    assert_eq!(s.delete("/v2/team/app/manifests/stable").await.status(), 202);
    let (_, robot, _) = s.robot("team", "ci", &[("repository", "pull")], -1).await;
    let data = s.data_dir();
    let kinds = |v: &[Value]| v.iter().rev().map(|e| e["kind"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let all = events(&data, &["--limit", "100"]).await;
    assert_eq!(
        kinds(&all),
        [
            "user.changed", // admin, at first start
            "project.created",
            "member.changed", // admin as the project's creator
            "user.changed",
            "member.changed",
            "artifact.pushed",
            "tag.created",
            "tag.created",
            "tag.deleted",
            "robot.changed",
        ]
    );
    let member = &all[5];
    assert_eq!((member["project"].as_str(), member["data"]["member"].as_str()), (Some("team"), Some("dev")));
    assert_eq!((member["data"]["op"].as_str(), member["data"]["role_id"].as_i64()), (Some("create"), Some(2)));
    let robot_ev = &all[0];
    assert_eq!((robot_ev["data"]["name"].as_str(), robot_ev["project"].as_str()), (Some(robot.as_str()), Some("team")));
    // Filters: by actor and by kind.
    let by_dev = events(&data, &["--actor", "dev"]).await;
    assert!(by_dev.is_empty(), "{by_dev:?}");
    let deleted = events(&data, &["--kind", "tag.deleted"]).await;
    assert_eq!((deleted[0]["tag"].as_str(), deleted[0]["digest"].as_str()), (Some("stable"), Some(digest.as_str())));
    // The audit log is written from these events: the tag made through the API, its deletion,
    // the member and the robot.
    for (q, resource) in [
        ("operation=create,resource_type=tag", "team/app:stable"),
        ("operation=delete,resource_type=tag", "team/app:stable"),
        ("operation=create,resource_type=member", "dev as developer"),
        ("operation=create,resource_type=robot", robot.as_str()),
    ] {
        eventually(q, async || {
            let entries = audit(&s, q).await;
            if entries.iter().any(|e| e["resource"] == resource) { Ok(()) } else { Err(format!("{entries:?}")) }
        })
        .await;
    }
    // A tag set by the push is part of the push's entry, not an entry of its own.
    assert_eq!(audit(&s, "operation=create,resource_type=tag").await.len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_one_replica_is_honoured_by_another_within_a_second() {
    let c = crate::replicas::Cluster::start(2).await;
    let (a, b) = (TestServer::attach(c.base(0), vec![]), TestServer::attach(c.base(1), vec![]));
    a.project("pub", true).await;
    a.push_image("pub/app", "v1").await;
    let anon_pull = |s: &TestServer| {
        let url = s.url("/v2/pub/app/manifests/v1");
        let client = s.anon();
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    let mut worst = Duration::ZERO;
    // Each change is made on A after B has cached what it decides by; B must follow at once,
    // not when its caches expire (projects and policies 5 s, credentials 30 s).
    let mut measure =
        async |what: &str,
               want: u16,
               probe: &dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>>| {
            let started = Instant::now();
            loop {
                if probe().await == want {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(10), "{what}: replica B never followed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let took = started.elapsed();
            worst = worst.max(took);
            assert!(took < Duration::from_secs(1), "{what}: replica B followed only after {took:?}");
        };

    // 1. Visibility: public → private.
    assert_eq!(anon_pull(&b).await, 200);
    let r = a.api(Method::PUT, "/projects/pub", Some(json!({"metadata": {"public": "false"}}))).await;
    assert_eq!(r.status(), 200);
    let bb = TestServer::attach(c.base(1), vec![]);
    measure("project made private", 401, &|| Box::pin(anon_pull(&bb))).await;

    // 2. A robot deleted on A stops working on B (B had verified its secret).
    let (id, name, secret) = a.robot("pub", "ci", &[("repository", "pull")], -1).await;
    let robot_pull = {
        let url = b.url("/v2/pub/app/manifests/v1");
        let client = client_as(&name, &secret);
        move || -> std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>> {
            let (client, url) = (client.clone(), url.clone());
            Box::pin(async move { client.get(url).send().await.unwrap().status().as_u16() })
        }
    };
    assert_eq!(robot_pull().await, 200);
    assert_eq!(a.api(Method::DELETE, &format!("/robots/{id}"), None).await.status(), 200);
    measure("robot deleted", 401, &robot_pull).await;

    // 3. A repository policy Deny set on A applies on B.
    let admin_pull = {
        let url = b.url("/v2/pub/app/manifests/v1");
        let client = b.client.clone();
        move || -> std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>> {
            let (client, url) = (client.clone(), url.clone());
            Box::pin(async move { client.get(url).send().await.unwrap().status().as_u16() })
        }
    };
    a.user("dev", "Dev-Passw0rd").await;
    a.member("pub", "dev", 2).await;
    let dev_pull = {
        let url = b.url("/v2/pub/app/manifests/v1");
        let client = client_as("dev", "Dev-Passw0rd");
        move || -> std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>> {
            let (client, url) = (client.clone(), url.clone());
            Box::pin(async move { client.get(url).send().await.unwrap().status().as_u16() })
        }
    };
    assert_eq!(admin_pull().await, 200);
    measure("member added", 200, &dev_pull).await;
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Sid": "nodev", "Effect": "Deny",
        "Principal": {"AWS": ["dev"]}, "Action": ["ecr:BatchGetImage"]}]});
    assert_eq!(a.api(Method::PUT, "/projects/pub/repositories/app/policy", Some(policy)).await.status(), 200);
    measure("deny policy set", 403, &dev_pull).await;

    // 4. Login locks lifted on A are lifted on B (where they are kept, per process).
    let dev_id = {
        let users: Vec<serde_json::Value> = a.api(Method::GET, "/users?username=dev", None).await.json().await.unwrap();
        users[0]["user_id"].as_i64().unwrap()
    };
    for _ in 0..5 {
        let r = client_as("dev", "wrong-guess").get(b.url("/v2/")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    let dev_on_b = {
        let url = b.url("/v2/");
        let client = client_as("dev", "Dev-Passw0rd");
        move || -> std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>> {
            let (client, url) = (client.clone(), url.clone());
            Box::pin(async move { client.get(url).send().await.unwrap().status().as_u16() })
        }
    };
    assert_eq!(dev_on_b().await, 429, "locked on B");
    assert_eq!(a.api(Method::DELETE, &format!("/users/{dev_id}/login_locks"), None).await.status(), 200);
    measure("login lock lifted", 200, &dev_on_b).await;

    // 5. Project creation restricted to administrators on A (a runtime setting, PUT
    // /configurations): B refuses dev's project at once. Each probe asks for a new name.
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let dev_creates = {
        let url = b.url("/api/v2.0/projects");
        let client = client_as("dev", "Dev-Passw0rd");
        move || -> std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>> {
            let (client, url) = (client.clone(), url.clone());
            let name = format!("dev{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
            Box::pin(async move {
                let body = json!({"project_name": name, "metadata": {"public": "false"}});
                client.post(url).json(&body).send().await.unwrap().status().as_u16()
            })
        }
    };
    assert_eq!(dev_creates().await, 201);
    let r = a.api(Method::PUT, "/configurations", Some(json!({"project_creation_restriction": "adminonly"}))).await;
    assert_eq!(r.status(), 200);
    measure("project creation restricted", 403, &dev_creates).await;
    let c: serde_json::Value = b.api(Method::GET, "/configurations", None).await.json().await.unwrap();
    assert_eq!(c["project_creation_restriction"], json!({"value": "adminonly", "editable": true}));
    eprintln!("slowest replica follow-up: {worst:?}");
}
