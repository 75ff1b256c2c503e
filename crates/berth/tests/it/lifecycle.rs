//! ECR lifecycle policies and Harbor tag retention, end to end: stored and validated through
//! the management API in ECR's and Harbor's shapes, previewed and dry-run without deleting,
//! executed through the registry's own deletes (immutable tags survive), with what they did
//! readable afterwards.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const LC: &str = "/projects/lc/repositories/app/lifecycle_policy";

/// Push `tag` (a distinct image each time), a few ms apart so push times order them.
async fn push(s: &TestServer, repo: &str, tag: &str, size: usize) -> String {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let m = s.upload_image_blobs(repo, size).await;
    let reference = if tag.is_empty() { sha256(&m) } else { tag.to_string() };
    assert_eq!(s.put_manifest(repo, &reference, OCI_MANIFEST, &m).await.status(), 201);
    sha256(&m)
}

async fn exists(s: &TestServer, repo: &str, reference: &str) -> bool {
    let r = s.head(&format!("/v2/{repo}/manifests/{reference}")).await;
    match r.status().as_u16() {
        200 => true,
        404 => false,
        other => panic!("HEAD {repo}:{reference}: {other}"),
    }
}

async fn poll(s: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("{path} to finish"), async || {
        let r = s.api(Method::GET, path, None).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        let v: Value = r.json().await.unwrap();
        if done(&v) { Ok(v) } else { Err(v) }
    })
    .await
}

fn digests(results: &Value) -> BTreeSet<String> {
    results.as_array().unwrap().iter().map(|r| r["imageDigest"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_lifecycle_policies_preview_then_expire_images_but_never_immutable_tags() {
    let s = TestServer::start().await;
    s.project("lc", false).await;
    let v1 = push(&s, "lc/app", "v1", 100).await;
    let v2 = push(&s, "lc/app", "v2", 101).await;
    let v3 = push(&s, "lc/app", "v3", 102).await;
    let old_untagged = push(&s, "lc/app", "", 103).await;
    let new_untagged = push(&s, "lc/app", "", 104).await;
    // A multi-arch image: its child is part of it, not an untagged image of its own.
    let child = s.upload_image_blobs("lc/app", 105).await;
    assert_eq!(s.put_manifest("lc/app", &sha256(&child), OCI_MANIFEST, &child).await.status(), 201);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&child), "size": child.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    assert_eq!(s.put_manifest("lc/app", "multi", OCI_INDEX, &index).await.status(), 201);

    // No policy yet: ECR's message.
    let body = expect_error(s.api(Method::GET, LC, None).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.starts_with("Lifecycle policy does not exist for the repository with name 'lc/app'"), "{msg}");

    // Validated as ECR validates, with ECR's words.
    let bad = json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged",
        "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]});
    let r = s.api(Method::PUT, LC, Some(json!({"lifecyclePolicyText": bad.to_string()}))).await;
    let body = expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.starts_with("Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint"), "{msg}");
    assert!(msg.contains("Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED."), "{msg}");

    let policy = json!({"rules": [
        {"rulePriority": 1, "description": "one v-tag", "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"],
         "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}},
        {"rulePriority": 2, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan",
         "countNumber": 1}, "action": {"type": "expire"}},
    ]})
    .to_string();
    let r = s.api(Method::PUT, LC, Some(json!({"lifecyclePolicyText": policy}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let put: Value = r.json().await.unwrap();
    assert_eq!((put["repositoryName"].as_str(), put["lifecyclePolicyText"].as_str()), (Some("lc/app"), Some(&*policy)));
    let got: Value = s.api(Method::GET, LC, None).await.json().await.unwrap();
    assert_eq!(got["lifecyclePolicyText"], policy.as_str());
    assert!(got.get("lastEvaluatedAt").is_none(), "never applied yet: {got}");

    // Preview: v1 and v2 by rule 1, the older untagged image by rule 2; nothing deleted.
    let r = s.api(Method::POST, &format!("{LC}/preview"), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "IN_PROGRESS");
    let preview = poll(&s, &format!("{LC}/preview"), |v| v["status"] != "IN_PROGRESS").await;
    assert_eq!(preview["status"], "COMPLETE", "{preview}");
    assert_eq!(preview["summary"]["expiringImageTotalCount"], 3, "{preview}");
    let expected: BTreeSet<String> = [&v1, &v2, &old_untagged].into_iter().cloned().collect();
    assert_eq!(digests(&preview["previewResults"]), expected);
    for r in preview["previewResults"].as_array().unwrap() {
        let want = if r["imageDigest"] == old_untagged.as_str() { 2 } else { 1 };
        assert_eq!(r["appliedRulePriority"], want, "{r}");
        assert_eq!(r["action"]["type"], "EXPIRE");
        assert!(r["imagePushedAt"].as_f64().unwrap() > 1.7e9, "epoch seconds: {r}");
    }
    let tagged: Value = s.api(Method::GET, &format!("{LC}/preview?tagStatus=TAGGED"), None).await.json().await.unwrap();
    assert_eq!(tagged["previewResults"].as_array().unwrap().len(), 2);
    let page: Value = s.api(Method::GET, &format!("{LC}/preview?maxResults=1"), None).await.json().await.unwrap();
    assert_eq!((page["previewResults"].as_array().unwrap().len(), page["nextToken"].as_str()), (1, Some("1")));
    assert!(exists(&s, "lc/app", "v1").await && exists(&s, "lc/app", &old_untagged).await, "a preview deletes nothing");

    // A preview of a text not stored (ECR allows it) evaluates that text.
    let any = json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any",
        "countType": "imageCountMoreThan", "countNumber": 100}, "action": {"type": "expire"}}]})
    .to_string();
    let r = s.api(Method::POST, &format!("{LC}/preview"), Some(json!({"lifecyclePolicyText": any}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let preview = poll(&s, &format!("{LC}/preview"), |v| v["status"] != "IN_PROGRESS").await;
    assert_eq!(
        (preview["lifecyclePolicyText"].as_str(), &preview["summary"]["expiringImageTotalCount"]),
        (Some(&*any), &json!(0))
    );

    // v1 is immutable: the execution keeps it and says why; the rest goes.
    let rule = json!({"action": "immutable", "template": "immutable_template",
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v1"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}});
    assert_eq!(s.api(Method::POST, "/projects/lc/immutabletagrules", Some(rule)).await.status(), StatusCode::CREATED);
    let r = s.api(Method::POST, &format!("{LC}/executions"), None).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let loc = location(&r);
    let run = poll(&s, loc.trim_start_matches("/api/v2.0"), |v| v["status"] != "IN_PROGRESS").await;
    assert_eq!(run["status"], "COMPLETE", "{run}");
    assert_eq!(digests(&run["expiredImages"]), [&v2, &old_untagged].into_iter().cloned().collect());
    assert_eq!(digests(&run["keptImages"]), [v1.clone()].into_iter().collect());
    assert!(run["keptImages"][0]["reason"].as_str().unwrap().contains("immutable"), "{run}");
    assert!(!exists(&s, "lc/app", "v2").await && !exists(&s, "lc/app", &old_untagged).await);
    for kept in ["v1", "v3", "multi", new_untagged.as_str(), &sha256(&child), &v3] {
        assert!(exists(&s, "lc/app", kept).await, "{kept} must survive");
    }
    let got: Value = s.api(Method::GET, LC, None).await.json().await.unwrap();
    assert!(got["lastEvaluatedAt"].as_f64().unwrap() > 1.7e9, "{got}");

    // Who may: a guest reads the policy but may not change it.
    s.user("gina", "Gina-Passw0rd").await;
    s.member("lc", "gina", 3).await;
    let gina = client_as("gina", "Gina-Passw0rd");
    let r = gina.get(s.url(&format!("/api/v2.0{LC}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = gina.delete(s.url(&format!("/api/v2.0{LC}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Deleted: the text comes back once, then it is gone.
    let r = s.api(Method::DELETE, LC, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["lifecyclePolicyText"], policy.as_str());
    assert_eq!(s.api(Method::GET, LC, None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.api(Method::POST, &format!("{LC}/executions"), None).await.status(), StatusCode::NOT_FOUND);
}

fn retention_rule(template: &str, n: i64, tags: &str, repo: (&str, &str)) -> Value {
    json!({
        "disabled": false, "action": "retain", "template": template, "params": {template: n},
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": tags,
                           "extras": "{\"untagged\":false}"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": repo.0, "pattern": repo.1}]},
    })
}

async fn wait_execution(s: &TestServer, policy: i64, id: i64) -> Value {
    let path = format!("/retentions/{policy}/executions");
    let list = poll(s, &path, |v| {
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id && !matches!(e["status"].as_str(), Some("Pending" | "Running")))
    })
    .await;
    list.as_array().unwrap().iter().find(|e| e["id"] == id).unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_retention_keeps_what_any_rule_retains_with_dry_runs_tasks_and_logs() {
    let s = TestServer::start().await;
    let project = s.project("rt", false).await;
    let mut app = std::collections::HashMap::new();
    for tag in ["release-1", "release-2", "dev-1", "dev-2", "dev-3"] {
        app.insert(tag, push(&s, "rt/app", tag, 200).await);
    }
    let untagged = push(&s, "rt/app", "", 201).await;
    push(&s, "rt/legacy/x", "dev-1", 202).await;
    push(&s, "rt/other", "anything", 203).await;

    let meta: Value = s.api(Method::GET, "/retentions/metadatas", None).await.json().await.unwrap();
    let templates: Vec<&str> =
        meta["templates"].as_array().unwrap().iter().map(|t| t["rule_template"].as_str().unwrap()).collect();
    assert_eq!(templates, ["latestPushedK", "latestPulledN", "nDaysSinceLastPush", "nDaysSinceLastPull", "always"]);

    // release-* always; the two newest dev-* everywhere but legacy/**; other/ is in no rule's scope.
    let policy = json!({
        "algorithm": "or",
        "rules": [
            retention_rule("always", 0, "release-*", ("repoMatches", "{app,legacy/**}")),
            retention_rule("latestPushedK", 2, "dev-*", ("repoExcludes", "{legacy/**,other}")),
        ],
        "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
        "scope": {"level": "project", "ref": project},
    });
    let r = s.api(Method::POST, "/retentions", Some(policy.clone())).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let r = s.api(Method::POST, "/retentions", Some(policy.clone())).await;
    expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    let shown: Value = s.api(Method::GET, &format!("/retentions/{id}"), None).await.json().await.unwrap();
    assert_eq!((shown["id"].as_i64(), shown["scope"]["ref"].as_i64()), (Some(id), Some(project)));
    assert_eq!(
        (shown["rules"][0]["id"].as_i64(), shown["rules"][1]["template"].as_str()),
        (Some(1), Some("latestPushedK"))
    );

    // A dry run says what would go and deletes nothing.
    let r = s.api(Method::POST, &format!("/retentions/{id}/executions"), Some(json!({"dry_run": true}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let dry: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let e = wait_execution(&s, id, dry).await;
    assert_eq!(
        (e["status"].as_str(), e["dry_run"].as_bool(), e["trigger"].as_str()),
        (Some("Success"), Some(true), Some("MANUAL"))
    );
    let tasks: Vec<Value> =
        s.api(Method::GET, &format!("/retentions/{id}/executions/{dry}/tasks"), None).await.json().await.unwrap();
    let by_repo = |repo: &str| tasks.iter().find(|t| t["repository"] == repo).cloned();
    let t = by_repo("rt/app").unwrap();
    assert_eq!((t["total"].as_i64(), t["retained"].as_i64()), (Some(6), Some(4)), "{t}");
    let legacy = by_repo("rt/legacy/x").unwrap();
    assert_eq!((legacy["total"].as_i64(), legacy["retained"].as_i64()), (Some(1), Some(0)));
    assert!(by_repo("rt/other").is_none(), "no rule applies to rt/other: {tasks:?}");
    let log = s
        .api(Method::GET, &format!("/retentions/{id}/executions/{dry}/tasks/{}", t["id"]), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains(&app["dev-1"]) && log.contains("DEL (dry run)") && log.contains("RETAIN (rule 1)"), "{log}");
    assert!(log.contains(&untagged) && log.contains("<none>"), "{log}");
    assert!(exists(&s, "rt/app", "dev-1").await && exists(&s, "rt/app", &untagged).await);

    // dev-1 of rt/app is immutable: kept by the real run, with the reason in the log.
    let imm = json!({"action": "immutable", "template": "immutable_template",
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "dev-1"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "app"}]}});
    assert_eq!(s.api(Method::POST, "/projects/rt/immutabletagrules", Some(imm)).await.status(), StatusCode::CREATED);
    let r = s.api(Method::POST, &format!("/retentions/{id}/executions"), Some(json!({"dry_run": false}))).await;
    let real: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let e = wait_execution(&s, id, real).await;
    assert_eq!(e["status"], "Success", "{e}");
    assert!(!exists(&s, "rt/app", &untagged).await);
    assert!(!exists(&s, "rt/legacy/x", "dev-1").await);
    for kept in ["release-1", "release-2", "dev-1", "dev-2", "dev-3"] {
        assert!(exists(&s, "rt/app", kept).await, "{kept}");
    }
    assert!(exists(&s, "rt/other", "anything").await);
    let tasks: Vec<Value> =
        s.api(Method::GET, &format!("/retentions/{id}/executions/{real}/tasks"), None).await.json().await.unwrap();
    let t = tasks.iter().find(|t| t["repository"] == "rt/app").unwrap();
    let log = s
        .api(Method::GET, &format!("/retentions/{id}/executions/{real}/tasks/{}", t["id"]), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("RETAIN (tag dev-1 is immutable"), "{log}");

    // Executions, newest first, with Harbor's paging headers.
    let r = s.api(Method::GET, &format!("/retentions/{id}/executions?page_size=1"), None).await;
    assert_eq!(header(&r, "x-total-count"), Some("2"));
    let page: Vec<Value> = r.json().await.unwrap();
    assert_eq!(page[0]["id"].as_i64(), Some(real));
    // A finished execution cannot be stopped.
    let r = s.api(Method::PATCH, &format!("/retentions/{id}/executions/{real}"), Some(json!({"action": "stop"}))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Bad policies say what is wrong.
    let mut bad = policy.clone();
    bad["rules"][0]["tag_selectors"][0] = json!({"kind": "label", "decoration": "labelled", "pattern": "x"});
    let r = s.api(Method::PUT, &format!("/retentions/{id}"), Some(bad)).await;
    let body = expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("withLabels or withoutLabels"), "{body}");
    let mut many = policy.clone();
    many["rules"] =
        json!((0..16).map(|i| retention_rule("latestPushedK", i, "**", ("repoMatches", "**"))).collect::<Vec<_>>());
    let r = s.api(Method::PUT, &format!("/retentions/{id}"), Some(many)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let mut cron = policy.clone();
    cron["trigger"]["settings"]["cron"] = "0 0 * * *".into();
    let r = s.api(Method::PUT, &format!("/retentions/{id}"), Some(cron)).await;
    let body = expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("six"), "{body}");

    // Deleted with its executions.
    assert_eq!(s.api(Method::DELETE, &format!("/retentions/{id}"), None).await.status(), StatusCode::OK);
    assert_eq!(s.api(Method::GET, &format!("/retentions/{id}"), None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.api(Method::GET, &format!("/retentions/{id}/executions"), None).await.status(), StatusCode::NOT_FOUND);
}

fn berth(s: &TestServer) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    c.env("BERTH_URL", &s.base).env("BERTH_USERNAME", ADMIN).env("BERTH_PASSWORD", ADMIN_PASSWORD);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_previews_and_applies_lifecycle_policies_and_runs_retention() {
    let s = TestServer::start().await;
    s.project("cl", false).await;
    let v1 = push(&s, "cl/app", "v1", 300).await;
    let v2 = push(&s, "cl/app", "v2", 301).await;
    push(&s, "cl/app", "v3", 302).await;
    let file = s.dir.path().join("policy.json");
    std::fs::write(
        &file,
        r#"{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPatternList": ["v*"],
            "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}"#,
    )
    .unwrap();
    let out = run_ok(berth(&s).args(["lifecycle", "put", "cl/app"]).arg(&file)).await;
    assert!(out.contains("set the lifecycle policy of cl/app"), "{out}");
    let out = run_ok(berth(&s).args(["lifecycle", "get", "cl/app"])).await;
    assert!(out.contains("\"tagPatternList\"") && out.contains("last applied: -"), "{out}");
    let out = run_ok(berth(&s).args(["lifecycle", "preview", "cl/app"])).await;
    assert!(out.starts_with("DIGEST") && out.contains("2 images would expire"), "{out}");
    assert!(out.contains(&v1[..19]) && out.contains(&v2[..19]) && out.contains("rule 1"), "{out}");
    let out = run_ok(berth(&s).args(["lifecycle", "apply", "cl/app"])).await;
    assert!(out.contains("2 images expired"), "{out}");
    assert!(!exists(&s, "cl/app", "v1").await && exists(&s, "cl/app", "v3").await);
    let err = run_fails(berth(&s).args(["lifecycle", "put", "cl/app", "/nonexistent/policy.json"])).await;
    assert!(err.contains("reading /nonexistent/policy.json"), "{err}");

    // Retention: rules from a file, a dry run, its history and log.
    push(&s, "cl/web", "a", 303).await;
    let newest = push(&s, "cl/web", "b", 304).await;
    let rules = s.dir.path().join("retention.json");
    std::fs::write(
        &rules,
        serde_json::to_vec(&json!([retention_rule("latestPushedK", 1, "**", ("repoMatches", "web"))])).unwrap(),
    )
    .unwrap();
    let out = run_ok(berth(&s).args(["retention", "set", "cl"]).arg(&rules)).await;
    assert!(out.contains("set the retention policy of project cl"), "{out}");
    let out = run_ok(berth(&s).args(["retention", "run", "cl", "--dry-run"])).await;
    let row = out.lines().find(|l| l.starts_with("cl/web")).unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols, ["cl/web", "Success", "2", "1", "1"], "{out}");
    assert!(!out.contains("cl/app"), "no rule applies to cl/app: {out}");
    let out = run_ok(berth(&s).args(["retention", "history", "cl"])).await;
    let id = out.lines().nth(1).and_then(|l| l.split_whitespace().next()).unwrap().to_string();
    assert!(out.lines().nth(1).unwrap().contains("yes"), "{out}");
    let out = run_ok(berth(&s).args(["retention", "log", "cl", &id])).await;
    assert!(out.contains("DEL (dry run)") && out.contains(&newest) && out.contains("RETAIN (rule 1)"), "{out}");
    assert!(exists(&s, "cl/web", "a").await, "a dry run deletes nothing");

    // Labels from the command line.
    let out = run_ok(berth(&s).args(["label", "create", "gold", "--project", "cl", "--color", "#FFD700"])).await;
    assert!(out.starts_with("created label gold (id ") && out.contains("in project cl"), "{out}");
    let id = out.split("(id ").nth(1).and_then(|r| r.split(')').next()).unwrap().to_string();
    let out = run_ok(berth(&s).args(["label", "list", "--project", "cl"])).await;
    assert!(out.lines().nth(1).is_some_and(|l| l.contains("gold") && l.contains("#FFD700")), "{out}");
    let out = run_ok(berth(&s).args(["label", "add", "cl/web", "b", &id])).await;
    assert!(out.contains("labelled cl/web:b"), "{out}");
    let a: Value = s.api(Method::GET, "/projects/cl/repositories/web/artifacts/b", None).await.json().await.unwrap();
    assert_eq!(a["labels"][0]["name"], "gold");
    run_ok(berth(&s).args(["label", "remove", "cl/web", "b", &id])).await;
    let err = run_fails(berth(&s).args(["label", "remove", "cl/web", "b", &id])).await;
    assert!(err.contains("404") && err.contains("has no label"), "{err}");
    run_ok(berth(&s).args(["label", "delete", &id])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harbor_labels_mark_artifacts_and_retention_selects_by_them() {
    let s = TestServer::start().await;
    let project = s.project("lb", false).await;
    for tag in ["a", "b", "c"] {
        push(&s, "lb/app", tag, 400).await;
    }
    // Labels: global and per project, unique in their scope, names without commas.
    let r = s.api(Method::POST, "/labels", Some(json!({"name": "keep", "color": "#0065AB", "scope": "g"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let keep: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let r = s.api(Method::POST, "/labels", Some(json!({"name": "team", "scope": "p", "project_id": project}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let team: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let r = s.api(Method::POST, "/labels", Some(json!({"name": "keep", "scope": "g"}))).await;
    expect_error(r, StatusCode::CONFLICT, "CONFLICT").await;
    let r = s.api(Method::POST, "/labels", Some(json!({"name": "a,b", "scope": "g"}))).await;
    expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    let r = s.anon().post(s.url("/api/v2.0/labels")).json(&json!({"name": "x", "scope": "g"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let global: Vec<Value> = s.api(Method::GET, "/labels?scope=g", None).await.json().await.unwrap();
    assert_eq!(
        (global.len(), global[0]["name"].as_str(), global[0]["color"].as_str()),
        (1, Some("keep"), Some("#0065AB"))
    );
    let mine: Vec<Value> =
        s.api(Method::GET, &format!("/labels?scope=p&project_id={project}"), None).await.json().await.unwrap();
    assert_eq!((mine[0]["name"].as_str(), mine[0]["project_id"].as_i64()), (Some("team"), Some(project)));

    // Attached to artifact a, shown on it; twice is a conflict.
    let base = "/projects/lb/repositories/app/artifacts";
    assert_eq!(
        s.api(Method::POST, &format!("{base}/a/labels"), Some(json!({"id": keep}))).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        s.api(Method::POST, &format!("{base}/a/labels"), Some(json!({"id": team}))).await.status(),
        StatusCode::OK
    );
    let again = s.api(Method::POST, &format!("{base}/a/labels"), Some(json!({"id": keep}))).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let a: Value = s.api(Method::GET, &format!("{base}/a"), None).await.json().await.unwrap();
    let names: Vec<&str> = a["labels"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["keep", "team"]);
    assert_eq!(s.api(Method::DELETE, &format!("{base}/a/labels/{team}"), None).await.status(), StatusCode::OK);
    assert_eq!(s.api(Method::DELETE, &format!("{base}/a/labels/{team}"), None).await.status(), StatusCode::NOT_FOUND);

    // Retention: labelled `keep`, or the newest; b goes.
    let mut labelled = retention_rule("always", 0, "**", ("repoMatches", "**"));
    labelled["tag_selectors"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kind": "label", "decoration": "withLabels", "pattern": "keep"}));
    let policy = json!({"algorithm": "or", "rules": [labelled, retention_rule("latestPushedK", 1, "**", ("repoMatches", "**"))],
        "scope": {"level": "project", "ref": project}});
    let r = s.api(Method::POST, "/retentions", Some(policy)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let r = s.api(Method::POST, &format!("/retentions/{id}/executions"), Some(json!({"dry_run": false}))).await;
    let run: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(wait_execution(&s, id, run).await["status"], "Success");
    assert!(exists(&s, "lb/app", "a").await && exists(&s, "lb/app", "c").await);
    assert!(!exists(&s, "lb/app", "b").await);

    // A deleted label is gone from the artifact too.
    assert_eq!(s.api(Method::DELETE, &format!("/labels/{keep}"), None).await.status(), StatusCode::OK);
    assert_eq!(s.api(Method::GET, &format!("/labels/{keep}"), None).await.status(), StatusCode::NOT_FOUND);
    let a: Value = s.api(Method::GET, &format!("{base}/a"), None).await.json().await.unwrap();
    assert_eq!(a["labels"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_never_break_an_index_that_stays() {
    let s = TestServer::start().await;
    let project = s.project("ix", false).await;
    // An older, tagged child and the newer index listing it.
    let child = s.upload_image_blobs("ix/app", 500).await;
    assert_eq!(s.put_manifest("ix/app", "c-amd64", OCI_MANIFEST, &child).await.status(), 201);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&child), "size": child.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    assert_eq!(s.put_manifest("ix/app", "release", OCI_INDEX, &index).await.status(), 201);
    // Keep only the newest: the index stays, so its child must too.
    let policy = json!({"algorithm": "or", "rules": [retention_rule("latestPushedK", 1, "**", ("repoMatches", "**"))],
        "scope": {"level": "project", "ref": project}});
    let r = s.api(Method::POST, "/retentions", Some(policy)).await;
    let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let r = s.api(Method::POST, &format!("/retentions/{id}/executions"), Some(json!({"dry_run": false}))).await;
    let run: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(wait_execution(&s, id, run).await["status"], "Success");
    assert!(exists(&s, "ix/app", "release").await && exists(&s, "ix/app", "c-amd64").await);
    let tasks: Vec<Value> =
        s.api(Method::GET, &format!("/retentions/{id}/executions/{run}/tasks"), None).await.json().await.unwrap();
    let log = s
        .api(Method::GET, &format!("/retentions/{id}/executions/{run}/tasks/{}", tasks[0]["id"]), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("RETAIN (an index in the repository lists it)"), "{log}");
    // An ECR policy expiring everything but the newest says the same in its preview.
    let lc = "/projects/ix/repositories/app/lifecycle_policy";
    let text = json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any",
        "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]})
    .to_string();
    assert_eq!(s.api(Method::PUT, lc, Some(json!({"lifecyclePolicyText": text}))).await.status(), StatusCode::OK);
    assert_eq!(s.api(Method::POST, &format!("{lc}/preview"), None).await.status(), StatusCode::OK);
    let preview = poll(&s, &format!("{lc}/preview"), |v| v["status"] != "IN_PROGRESS").await;
    assert_eq!(preview["summary"]["expiringImageTotalCount"], 0, "{preview}");
}
