//! Tag immutability: Harbor's immutable tag rules and ECR's tag mutability, on every surface
//! (`/v2` pushes and deletes, Harbor's tag, artifact and repository deletes, tag creation),
//! race-free, and with a real client.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::*;

fn rule(tag: (&str, &str), repo: (&str, &str)) -> Value {
    json!({
        "disabled": false, "action": "immutable", "template": "immutable_template",
        "tag_selectors": [{"kind": "doublestar", "decoration": tag.0, "pattern": tag.1}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": repo.0, "pattern": repo.1}]},
    })
}

async fn refused(r: reqwest::Response) -> String {
    let body = expect_error(r, StatusCode::PRECONDITION_FAILED, "DENIED").await;
    let msg = body["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("immutable"), "{msg}");
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_tags_cannot_be_overwritten_or_deleted_anywhere() {
    let s = TestServer::start().await;
    s.project("imm", false).await;
    let v1 = s.push_image("imm/app", "v1").await;
    let latest = s.push_image("imm/app", "latest").await;
    let r = s
        .api(Method::POST, "/projects/imm/immutabletagrules", Some(rule(("matches", "v*"), ("repoMatches", "**"))))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let loc = location(&r);
    let id: i64 = loc.rsplit('/').next().unwrap().parse().unwrap();
    let r = s.api(Method::GET, "/projects/imm/immutabletagrules", None).await;
    assert_eq!(header(&r, "x-total-count"), Some("1"));
    let rules: Vec<Value> = r.json().await.unwrap();
    assert_eq!((rules[0]["id"].as_i64(), rules[0]["tag_selectors"][0]["pattern"].as_str()), (Some(id), Some("v*")));
    assert!(rules[0]["project_id"].as_i64().unwrap() > 0);

    // /v2: a different manifest over v1 is refused; the same one again is fine; others move.
    let other = s.upload_image_blobs("imm/app", 500).await;
    let msg = refused(s.put_manifest("imm/app", "v1", OCI_MANIFEST, &other).await).await;
    assert!(msg.contains("imm/app:v1") && msg.contains(&format!("rule {id}")), "{msg}");
    assert_eq!(s.put_manifest("imm/app", "v1", OCI_MANIFEST, &v1).await.status(), 201);
    assert_eq!(s.put_manifest("imm/app", "latest", OCI_MANIFEST, &other).await.status(), 201);
    assert_eq!(s.get("/v2/imm/app/manifests/v1").await.bytes().await.unwrap().as_ref(), &v1[..]);
    // Deleting the tag, its manifest, or the repository holding it.
    refused(s.delete("/v2/imm/app/manifests/v1").await).await;
    refused(s.delete(&format!("/v2/imm/app/manifests/{}", sha256(&v1))).await).await;
    let base = "/projects/imm/repositories/app";
    let r = s.api(Method::DELETE, &format!("{base}/artifacts/v1/tags/v1"), None).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = s.api(Method::DELETE, &format!("{base}/artifacts/{}", sha256(&v1)), None).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = s.api(Method::DELETE, base, None).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    // Harbor's tag creation: moving v1 onto another artifact is refused, a new tag is not.
    let on_latest = format!("{base}/artifacts/{}/tags", sha256(&other));
    let r = s.api(Method::POST, &on_latest, Some(json!({"name": "v1"}))).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED, "{:?}", r.text().await);
    assert_eq!(s.api(Method::POST, &on_latest, Some(json!({"name": "v2"}))).await.status(), StatusCode::CREATED);
    // Untouched: the old `latest` manifest can go.
    assert_eq!(s.delete(&format!("/v2/imm/app/manifests/{}", sha256(&latest))).await.status(), 202);

    // A manifest listed by an index whose tag is immutable cannot be deleted either.
    let child = s.upload_image_blobs("imm/app", 200).await;
    assert_eq!(s.put_manifest("imm/app", &sha256(&child), OCI_MANIFEST, &child).await.status(), 201);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&child), "size": child.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    assert_eq!(s.put_manifest("imm/app", "v5", OCI_INDEX, &index).await.status(), 201);
    let msg = refused(s.delete(&format!("/v2/imm/app/manifests/{}", sha256(&child))).await).await;
    assert!(msg.contains("imm/app:v5"), "{msg}");

    // Two pushes racing for a new immutable tag: exactly one wins.
    let (a, b) = (s.upload_image_blobs("imm/app", 300).await, s.upload_image_blobs("imm/app", 301).await);
    let (ra, rb) = tokio::join!(
        s.put_manifest("imm/app", "v9", OCI_MANIFEST, &a),
        s.put_manifest("imm/app", "v9", OCI_MANIFEST, &b)
    );
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 412]);

    // A real client sees the refusal.
    let layout = make_oci_layout(s.dir.path());
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy").env("REGISTRY_AUTH_FILE", s.auth_file());
    cmd.args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:single", layout.display()))
        .arg(format!("docker://{}/imm/app:v1", s.host()));
    let err = run_fails(&mut cmd).await;
    assert!(err.contains("immutable"), "{err}");

    // Disabled, the rule selects nothing; deleted, it is gone.
    let mut off = rule(("matches", "v*"), ("repoMatches", "**"));
    off["disabled"] = json!(true);
    assert_eq!(s.api(Method::PUT, &format!("/projects/imm/immutabletagrules/{id}"), Some(off)).await.status(), 200);
    assert_eq!(s.put_manifest("imm/app", "v1", OCI_MANIFEST, &other).await.status(), 201);
    assert_eq!(s.api(Method::DELETE, &format!("/projects/imm/immutabletagrules/{id}"), None).await.status(), 200);
    assert_eq!(s.api(Method::DELETE, &format!("/projects/imm/immutabletagrules/{id}"), None).await.status(), 404);

    // Bad rules say what is wrong; at most 15 per project.
    let r = s
        .api(Method::POST, "/projects/imm/immutabletagrules", Some(rule(("equals", "v*"), ("repoMatches", "**"))))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("matches or excludes"));
    let r = s
        .api(Method::POST, "/projects/imm/immutabletagrules", Some(rule(("matches", "{v1"), ("repoMatches", "**"))))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    for i in 0..15 {
        let r = s
            .api(
                Method::POST,
                "/projects/imm/immutabletagrules",
                Some(rule(("matches", &format!("r{i}")), ("repoMatches", "x"))),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = s
        .api(Method::POST, "/projects/imm/immutabletagrules", Some(rule(("matches", "r99"), ("repoMatches", "x"))))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Only project administrators change rules; members read them.
    s.user("imm-dev", "Imm-Dev-Password-1").await;
    s.member("imm", "imm-dev", 2).await;
    let dev = client_as("imm-dev", "Imm-Dev-Password-1");
    let r = dev
        .post(s.url("/api/v2.0/projects/imm/immutabletagrules"))
        .json(&rule(("matches", "z"), ("repoMatches", "**")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(dev.get(s.url("/api/v2.0/projects/imm/immutabletagrules")).send().await.unwrap().status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_tag_mutability_per_repository_with_exclusions() {
    let s = TestServer::start().await;
    s.project("ecr", false).await;
    s.push_image("ecr/svc", "1.0").await;
    s.push_image("ecr/svc", "latest").await;
    let path = "/projects/ecr/repositories/svc/tag_mutability";
    let got: Value = s.api(Method::GET, path, None).await.json().await.unwrap();
    assert_eq!(
        (got["imageTagMutability"].as_str(), got["repositoryName"].as_str()),
        (Some("MUTABLE"), Some("ecr/svc"))
    );
    let set = json!({"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
                     "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest"}]});
    let r = s.api(Method::PUT, path, Some(set.clone())).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got: Value = s.api(Method::GET, path, None).await.json().await.unwrap();
    assert_eq!(got["imageTagMutabilityExclusionFilters"], set["imageTagMutabilityExclusionFilters"]);
    let next = s.upload_image_blobs("ecr/svc", 400).await;
    let msg = refused(s.put_manifest("ecr/svc", "1.0", OCI_MANIFEST, &next).await).await;
    assert!(msg.contains("tag mutability"), "{msg}");
    assert_eq!(s.put_manifest("ecr/svc", "latest", OCI_MANIFEST, &next).await.status(), 201, "excluded");
    // Another repository of the project is not affected.
    s.push_image("ecr/other", "1.0").await;
    s.push_image("ecr/other", "1.0").await;
    let bad = json!({"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION"});
    let r = s.api(Method::PUT, path, Some(bad)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("at least one filter"));
    let r = s.api(Method::PUT, path, Some(json!({"imageTagMutability": "MUTABLE"}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.put_manifest("ecr/svc", "1.0", OCI_MANIFEST, &next).await.status(), 201);

    // The command line.
    let berth = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base).env("BERTH_PASSWORD", ADMIN_PASSWORD);
        c
    };
    let out =
        run_ok(berth().args(["immutable", "mutability", "ecr/svc", "immutable_with_exclusion", "--exclude", "latest"]))
            .await;
    assert_eq!(out.trim(), "ecr/svc: IMMUTABLE_WITH_EXCLUSION (except latest)");
    refused(s.put_manifest("ecr/svc", "1.0", OCI_MANIFEST, &s.upload_image_blobs("ecr/svc", 9).await).await).await;
    run_ok(berth().args(["immutable", "add", "ecr", "--tags", "rel-*", "--repos", "other"])).await;
    let out = run_ok(berth().args(["immutable", "list", "ecr"])).await;
    assert!(
        out.lines().nth(1).is_some_and(|l| l.contains("yes") && l.contains("other") && l.contains("rel-*")),
        "{out}"
    );
    s.push_image("ecr/other", "rel-1").await;
    refused(s.put_manifest("ecr/other", "rel-1", OCI_MANIFEST, &s.upload_image_blobs("ecr/other", 9).await).await)
        .await;
    let id = out.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    run_ok(berth().args(["immutable", "delete", "ecr", &id])).await;
    let err = run_fails(berth().args(["immutable", "mutability", "ecr/svc", "SOMETIMES"])).await;
    assert!(err.contains("400"), "{err}");
    s.stop().await;
}
