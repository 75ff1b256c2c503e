//! The management API (`/api/v2.0`) in Harbor's shapes: every implemented endpoint, its
//! status codes, pagination headers, and each response compared field by field with
//! Harbor's swagger definitions (`harbor_shapes.json`, facts read from
//! goharbor/harbor's `api/v2.0/swagger.yaml`).

use std::collections::{BTreeSet, HashMap};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

fn shapes() -> Value {
    serde_json::from_str(include_str!("harbor_shapes.json")).unwrap()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Fields Berth leaves out of a definition on purpose (features it does not have).
fn omitted(def: &str) -> &'static [&'static str] {
    match def {
        "Project" => &["registry_id", "chart_count"],
        "Artifact" => &["icon", "scan_overview"],
        "Robot" => &["secret"],
        "Reference" => &["platform", "annotations", "urls"],
        "UserResp" => &["oidc_user_meta"],
        "GeneralInfo" => &["authproxy_settings"],
        "ComponentHealthStatus" => &["error"],
        "CVEAllowlist" => &["expires_at"],
        // Harbor's chart museum and its registry of proxy caches are not in Berth's search
        // and summary.
        "Search" => &["chart"],
        "ProjectSummary" => &["chart_count", "registry"],
        "ProjectMetadata" => {
            &["enable_content_trust", "prevent_vul", "severity", "auto_scan", "reuse_sys_cve_allowlist", "retention_id"]
        }
        _ => &[],
    }
}

/// Every field Harbor declares for `def` is present (but for [`omitted`] ones) with Harbor's
/// JSON type; fields Berth adds are allowed. Nested definitions are checked too.
fn conforms(v: &Value, def: &str) {
    let shapes = shapes();
    let fields = shapes[def].as_object().unwrap_or_else(|| panic!("no Harbor definition {def}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("{def}: not an object: {v}"));
    for (name, ty) in fields {
        match obj.get(name) {
            None | Some(Value::Null) => {
                assert!(omitted(def).contains(&name.as_str()), "{def}.{name} missing in {v}");
            }
            Some(x) => {
                let t = json_type(x);
                let ok = t == ty || (ty == "number" && t == "integer");
                assert!(ok, "{def}.{name}: Harbor says {ty}, Berth sends {t} ({x})");
            }
        }
    }
    let nested: &[(&str, &str)] = match def {
        "Project" => &[("metadata", "ProjectMetadata"), ("cve_allowlist", "CVEAllowlist")],
        "Artifact" => &[("tags", "Tag"), ("references", "Reference"), ("labels", "Label")],
        "Robot" => &[("permissions", "RobotPermission")],
        "RobotPermission" => &[("access", "Access")],
        "OverallHealthStatus" => &[("components", "ComponentHealthStatus")],
        "Errors" => &[("errors", "Error")],
        "Search" => &[("repository", "SearchRepository"), ("project", "Project")],
        "ScannerAdapterMetadata" => &[("capabilities", "ScannerCapability")],
        "ProjectSummary" => &[("quota", "ProjectSummaryQuota")],
        _ => &[],
    };
    for (field, inner) in nested {
        match &obj[*field] {
            Value::Array(items) => items.iter().for_each(|i| conforms(i, inner)),
            o @ Value::Object(_) => conforms(o, inner),
            _ => {}
        }
    }
}

fn conforms_all(v: &Value, def: &str) {
    let items = v.as_array().unwrap_or_else(|| panic!("{def} list: not an array: {v}"));
    assert!(!items.is_empty(), "{def} list is empty; nothing was compared");
    items.iter().for_each(|i| conforms(i, def));
}

async fn ok_json(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_api_speaks_harbors_shapes_embedded() {
    management_api_speaks_harbors_shapes(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_api_speaks_harbors_shapes_on_postgres_and_s3() {
    management_api_speaks_harbors_shapes(Backend::S3Postgres).await;
}

async fn management_api_speaks_harbors_shapes(b: Backend) {
    let s = TestServer::start_on(b).await;
    let get = |p: &str| {
        let p = p.to_owned();
        let s = &s;
        async move { s.api(Method::GET, &p, None).await }
    };

    // System.
    let r = s.anon().get(s.url("/api/v2.0/ping")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "Pong");
    conforms(&ok_json(s.anon().get(s.url("/api/v2.0/health")).send().await.unwrap()).await, "OverallHealthStatus");
    let info = ok_json(s.anon().get(s.url("/api/v2.0/systeminfo")).send().await.unwrap()).await;
    conforms(&info, "GeneralInfo");
    assert_eq!(info["auth_mode"], "db_auth");

    // Projects: create (201 + Location), HEAD, conflicts, invalid input, list, get, update.
    let pid = s.project("shapes", false).await;
    assert_eq!(s.api(Method::HEAD, "/projects?project_name=shapes", None).await.status(), 200);
    assert_eq!(s.api(Method::HEAD, "/projects?project_name=nope", None).await.status(), 404);
    let r = s.api(Method::POST, "/projects", Some(json!({"project_name": "shapes"}))).await;
    conforms(&ok_or(r, StatusCode::CONFLICT).await, "Errors");
    let r = s.api(Method::POST, "/projects", Some(json!({"project_name": "Bad Name"}))).await;
    conforms(&ok_or(r, StatusCode::BAD_REQUEST).await, "Errors");
    let r = s.api(Method::POST, "/projects", Some(json!({"project_name": "x", "metadata": {"colour": "red"}}))).await;
    let e = ok_or(r, StatusCode::BAD_REQUEST).await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("metadata.colour"), "{e}");
    let p = ok_json(get(&format!("/projects/{pid}")).await).await;
    conforms(&p, "Project");
    assert_eq!((p["name"].as_str(), p["metadata"]["public"].as_str()), (Some("shapes"), Some("false")));
    assert_eq!(p["owner_name"], "admin");
    let byname = ok_json(s.client.get(s.url("/api/v2.0/projects/shapes")).send().await.unwrap()).await;
    assert_eq!(byname["project_id"], pid);
    let r = s
        .api(
            Method::PUT,
            "/projects/shapes",
            Some(json!({"metadata": {"public": "true", "auto_scan": "true", "severity": "high"}})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let p = ok_json(get("/projects/shapes").await).await;
    // Every setting is shown with its value in force (typed underneath, Harbor's strings here).
    assert_eq!(
        p["metadata"],
        json!({"public": "true", "auto_scan": "true", "severity": "high", "auto_sbom_generation": "false",
               "enable_content_trust": "false", "enable_content_trust_cosign": "false", "prevent_unscanned": "false",
               "prevent_vul": "false", "scan_filters": ""})
    );
    // A bad value is refused by name, and changes nothing.
    for (body, says) in [
        (json!({"metadata": {"severity": "urgent"}}), "metadata.severity: \"urgent\" is not one of none, low"),
        (json!({"metadata": {"prevent_vul": "yes"}}), "metadata.prevent_vul: \"yes\" is not true or false"),
        (json!({"metadata": {"auto_scan": 1}}), "metadata.auto_scan: expected a string, not 1"),
    ] {
        let e = ok_or(s.api(Method::PUT, "/projects/shapes", Some(body)).await, StatusCode::BAD_REQUEST).await;
        assert!(e["errors"][0]["message"].as_str().unwrap().starts_with(says), "{e}");
    }
    assert_eq!(ok_json(get("/projects/shapes").await).await["metadata"]["severity"], "high");
    conforms_all(&ok_json(get("/projects").await).await, "Project");

    // Pagination: X-Total-Count and Link, as Harbor sends them.
    for i in 0..4 {
        s.project(&format!("page{i}"), false).await;
    }
    let r = get("/projects?page=2&page_size=2&name=page").await;
    assert_eq!(header(&r, "x-total-count"), Some("4"));
    let link = header(&r, "link").unwrap().to_owned();
    assert!(link.contains("rel=\"prev\"") && !link.contains("rel=\"next\""), "{link}");
    assert!(link.contains("/api/v2.0/projects?page=1&page_size=2&name=page"), "{link}");
    let names: Vec<Value> = ok_json(r).await.as_array().unwrap().iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, vec![json!("page2"), json!("page3")]);
    let r = get("/projects?page=1&page_size=2&q=name%3D~page").await;
    assert!(header(&r, "link").unwrap().contains("rel=\"next\""));
    assert_eq!(get("/projects?page_size=1000").await.status(), 400);

    // Repositories, artifacts, tags (names with slashes, encoded twice as Harbor clients do).
    let manifest = s.push_image("shapes/team/app", "v1").await;
    let digest = sha256(&manifest);
    let repos = ok_json(get("/projects/shapes/repositories").await).await;
    conforms_all(&repos, "Repository");
    assert_eq!(repos[0]["name"], "shapes/team/app");
    assert_eq!(repos[0]["artifact_count"], 1);
    conforms(&ok_json(get("/projects/shapes/repositories/team%252Fapp").await).await, "Repository");
    let arts = ok_json(get("/projects/shapes/repositories/team%252Fapp/artifacts").await).await;
    conforms_all(&arts, "Artifact");
    assert_eq!((arts[0]["digest"].as_str(), arts[0]["type"].as_str()), (Some(digest.as_str()), Some("IMAGE")));
    assert!(arts[0]["size"].as_i64().unwrap() > manifest.len() as i64, "size counts the blobs");
    let art = ok_json(get(&format!("/projects/shapes/repositories/team%2Fapp/artifacts/{digest}")).await).await;
    conforms(&art, "Artifact");
    assert_eq!(
        ok_json(get("/projects/shapes/repositories/team%252Fapp/artifacts/v1").await).await["digest"],
        digest.as_str()
    );
    let r = s
        .api(
            Method::POST,
            "/projects/shapes/repositories/team%252Fapp/artifacts/v1/tags",
            Some(json!({"name": "stable"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(s.get("/v2/shapes/team/app/manifests/stable").await.status(), 200, "the new tag is served");
    let r = s
        .api(
            Method::POST,
            "/projects/shapes/repositories/team%252Fapp/artifacts/v1/tags",
            Some(json!({"name": "stable"})),
        )
        .await;
    assert_eq!(r.status(), 409);
    let tags = ok_json(get("/projects/shapes/repositories/team%252Fapp/artifacts/v1/tags").await).await;
    conforms_all(&tags, "Tag");
    assert_eq!(tags.as_array().unwrap().len(), 2);
    let r = s.api(Method::DELETE, "/projects/shapes/repositories/team%252Fapp/artifacts/v1/tags/stable", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.get("/v2/shapes/team/app/manifests/stable").await.status(), 404);
    // an index lists its children as references
    let child = s.push_image("shapes/multi", "amd").await;
    let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(&child), "size": child.len(), "platform": {"architecture": "amd64", "os": "linux"}}]}))
    .unwrap();
    assert_eq!(s.put_manifest("shapes/multi", "latest", OCI_INDEX, &idx).await.status(), 201);
    let arts = ok_json(get("/projects/shapes/repositories/multi/artifacts").await).await;
    let index = arts.as_array().unwrap().iter().find(|a| a["digest"] == sha256(&idx).as_str()).unwrap();
    assert_eq!(index["references"][0]["child_digest"], sha256(&child).as_str());
    conforms(index, "Artifact");
    // project delete is refused while it holds repositories
    let r = s.api(Method::DELETE, "/projects/shapes", None).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r =
        s.api(Method::DELETE, &format!("/projects/shapes/repositories/team%252Fapp/artifacts/{digest}"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.get(&format!("/v2/shapes/team/app/manifests/{digest}")).await.status(), 404);
    for r in ["team%252Fapp", "multi"] {
        assert_eq!(s.api(Method::DELETE, &format!("/projects/shapes/repositories/{r}"), None).await.status(), 200);
    }
    assert_eq!(get("/projects/shapes/repositories/multi").await.status(), 404);

    // Members.
    let uid = s.user("mia", "Mia-Pw-1234").await;
    let u = ok_json(get(&format!("/users/{uid}")).await).await;
    conforms(&u, "UserResp");
    assert_eq!((u["username"].as_str(), u["sysadmin_flag"].as_bool()), (Some("mia"), Some(false)));
    let r = s.api(Method::POST, "/users", Some(json!({"username": "weak", "password": "short"}))).await;
    assert_eq!(r.status(), 400);
    let r = s.api(Method::POST, "/users", Some(json!({"username": "mia", "password": "Mia-Pw-1234"}))).await;
    assert_eq!(r.status(), 409);
    s.member("page0", "mia", 2).await;
    let r = s
        .api(
            Method::POST,
            "/projects/page0/members",
            Some(json!({"role_id": 3, "member_group": {"group_name": "ops", "group_type": 3}})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = s
        .api(Method::POST, "/projects/page0/members", Some(json!({"role_id": 9, "member_user": {"username": "mia"}})))
        .await;
    assert_eq!(r.status(), 400);
    let members = ok_json(get("/projects/page0/members").await).await;
    conforms_all(&members, "ProjectMemberEntity");
    let mia = members.as_array().unwrap().iter().find(|m| m["entity_name"] == "mia").unwrap().clone();
    assert_eq!((mia["role_name"].as_str(), mia["entity_type"].as_str()), (Some("developer"), Some("u")));
    let mid = mia["id"].as_i64().unwrap();
    assert_eq!(
        s.api(Method::PUT, &format!("/projects/page0/members/{mid}"), Some(json!({"role_id": 4}))).await.status(),
        200
    );
    let m = ok_json(get(&format!("/projects/page0/members/{mid}")).await).await;
    assert_eq!(m["role_name"], "maintainer");
    let as_mia: Value = client_as("mia", "Mia-Pw-1234")
        .get(s.url("/api/v2.0/projects/page0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(as_mia["current_user_role_id"], 4);
    // a maintainer may not manage members; the member list is visible to them
    let r = client_as("mia", "Mia-Pw-1234")
        .delete(s.url(&format!("/api/v2.0/projects/page0/members/{mid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // projects mia cannot see look missing to her
    let r = client_as("mia", "Mia-Pw-1234").get(s.url("/api/v2.0/projects/page1")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(s.api(Method::DELETE, &format!("/projects/page0/members/{mid}"), None).await.status(), 200);

    // Users: list, current, profile, password, sysadmin, CLI secret.
    conforms_all(&ok_json(get("/users").await).await, "UserResp");
    let me = ok_json(client_as("mia", "Mia-Pw-1234").get(s.url("/api/v2.0/users/current")).send().await.unwrap()).await;
    conforms(&me, "UserResp");
    let mia_c = client_as("mia", "Mia-Pw-1234");
    assert_eq!(mia_c.get(s.url("/api/v2.0/users")).send().await.unwrap().status(), 403);
    let r =
        mia_c.put(s.url(&format!("/api/v2.0/users/{uid}"))).json(&json!({"realname": "Mia M"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ok_json(get(&format!("/users/{uid}")).await).await["realname"], "Mia M");
    let r = mia_c
        .put(s.url(&format!("/api/v2.0/users/{uid}/password")))
        .json(&json!({"old_password": "wrong", "new_password": "Mia-Pw-5678"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = mia_c
        .put(s.url(&format!("/api/v2.0/users/{uid}/password")))
        .json(&json!({"old_password": "Mia-Pw-1234", "new_password": "Mia-Pw-5678"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(client_as("mia", "Mia-Pw-1234").get(s.url("/v2/")).send().await.unwrap().status(), 401, "old password");
    let mia_c = client_as("mia", "Mia-Pw-5678");
    let sec: Value =
        ok_json(mia_c.put(s.url(&format!("/api/v2.0/users/{uid}/cli_secret"))).send().await.unwrap()).await;
    let cli = sec["secret"].as_str().unwrap().to_owned();
    assert_eq!(client_as("mia", &cli).get(s.url("/v2/")).send().await.unwrap().status(), 200, "CLI secret logs in");
    let shown = ok_json(get(&format!("/users/{uid}")).await).await;
    assert!(!shown.to_string().contains(&cli), "the profile never shows the secret");
    assert_eq!(shown["cli_secret_set"], true);
    let r = mia_c
        .put(s.url(&format!("/api/v2.0/users/{uid}/cli_secret")))
        .json(&json!({"secret": "Chosen-Secret-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(client_as("mia", &cli).get(s.url("/v2/")).send().await.unwrap().status(), 401, "the old secret stops");
    assert_eq!(client_as("mia", "Chosen-Secret-1").get(s.url("/v2/")).send().await.unwrap().status(), 200);
    assert_eq!(mia_c.delete(s.url(&format!("/api/v2.0/users/{uid}/cli_secret"))).send().await.unwrap().status(), 200);
    assert_eq!(client_as("mia", "Chosen-Secret-1").get(s.url("/v2/")).send().await.unwrap().status(), 401, "revoked");
    assert_eq!(
        s.api(Method::PUT, &format!("/users/{uid}/sysadmin"), Some(json!({"sysadmin_flag": true}))).await.status(),
        200
    );
    assert_eq!(mia_c.get(s.url("/api/v2.0/users")).send().await.unwrap().status(), 200, "now an administrator");

    // Robots.
    let (rid, _, _) = s.robot("page1", "ci", &[("repository", "pull"), ("repository", "push")], 10).await;
    let robot = ok_json(get(&format!("/robots/{rid}")).await).await;
    conforms(&robot, "Robot");
    conforms_all(&ok_json(get("/robots?q=Level%3Dproject").await).await, "Robot");
    let r = s
        .api(Method::POST, "/robots", Some(json!({"name": "sys", "level": "system", "duration": -1,
            "permissions": [{"kind": "project", "namespace": "*", "access": [{"resource": "repository", "action": "pull"}]}]})))
        .await;
    let created = ok_or(r, StatusCode::CREATED).await;
    conforms(&created, "RobotCreated");
    assert_eq!(created["name"], "robot$sys");
    let r = s
        .api(Method::POST, "/robots", Some(json!({"name": "bad", "level": "project", "duration": -1,
            "permissions": [{"kind": "project", "namespace": "page1", "access": [{"resource": "repository", "action": "fly"}]}]})))
        .await;
    let e = ok_or(r, StatusCode::BAD_REQUEST).await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("permissions[0].access[0]"), "{e}");
    let r = s.api(Method::PATCH, &format!("/robots/{rid}"), None).await;
    conforms(&ok_json(r).await, "RobotSec");
    assert_eq!(s.api(Method::DELETE, &format!("/robots/{rid}"), None).await.status(), 200);
    assert_eq!(get(&format!("/robots/{rid}")).await.status(), 404);

    // Audit log.
    let logs = ok_json(get("/audit-logs?page_size=100").await).await;
    conforms_all(&logs, "AuditLog");
    let ops: BTreeSet<String> =
        logs.as_array().unwrap().iter().map(|e| e["operation"].as_str().unwrap().to_owned()).collect();
    for op in ["create", "update", "delete", "push"] {
        assert!(ops.contains(op), "{op} in {ops:?}");
    }
    conforms_all(&ok_json(get("/projects/page1/logs").await).await, "AuditLog");
    assert_eq!(s.anon().get(s.url("/api/v2.0/audit-logs")).send().await.unwrap().status(), 401);

    // Users can be deleted (not oneself).
    assert_eq!(s.api(Method::DELETE, &format!("/users/{uid}"), None).await.status(), 200);
    assert_eq!(get(&format!("/users/{uid}")).await.status(), 404);
    s.stop().await;
}

async fn ok_or(r: reqwest::Response, want: StatusCode) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, want, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_exactly_what_is_served() {
    let s = TestServer::start().await;
    let doc: Value = s.anon().get(s.url("/api/v2.0/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let shapes = shapes();
    let endpoints = shapes["_endpoints"].as_object().unwrap();
    let paths = doc["paths"].as_object().unwrap();
    // Every Harbor endpoint in the comparison table is in the document, with Harbor's success status.
    let mut checked = 0;
    for (ep, facts) in endpoints {
        let (method, path) = ep.split_once(' ').unwrap();
        let op = &paths.get(path).unwrap_or_else(|| panic!("{path} not in openapi.json"))[method.to_lowercase()];
        if op.is_null() {
            continue; // Harbor has it; Berth does not implement this method (checked below)
        }
        let status = facts["success"].to_string();
        assert!(op["responses"].get(&status).is_some(), "{ep}: no {status} response documented");
        checked += 1;
    }
    assert!(checked >= 35, "{checked}");
    // Every documented operation answers something other than 404/405 "no such route".
    let mut seen = HashMap::new();
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete", "patch", "head"] {
            if item.get(method).is_none() {
                continue;
            }
            let url = path
                .replace("{project_name_or_id}", "1")
                .replace("{project_name}", "library")
                .replace("{repository_name}", "app")
                .replace("{reference}", "latest")
                .replace("{tag_name}", "latest")
                .replace("{mid}", "1")
                .replace("{robot_id}", "999")
                .replace("{user_id}", "999")
                .replace("{id}", "1");
            let full = if url.starts_with("/service/") { url.clone() } else { format!("/api/v2.0{url}") };
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = s.anon().request(m, s.url(&full)).send().await.unwrap();
            assert_ne!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {full} is documented but not routed");
            if r.status() == StatusCode::NOT_FOUND {
                // a 404 must be Harbor's error envelope about the thing, not the router's
                let body = r.text().await.unwrap();
                assert!(body.contains("\"NOT_FOUND\""), "{method} {full}: {body}");
            }
            seen.insert(format!("{method} {full}"), ());
        }
    }
    assert!(seen.len() >= 40, "{}", seen.len());
    s.stop().await;
}

/// Labels and tag retention answer in Harbor's shapes (harbor-cli reads them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_and_retention_have_harbors_shapes() {
    let s = TestServer::start().await;
    let project = s.project("shp", false).await;
    s.push_image("shp/app", "v1").await;
    let r = s.api(Method::POST, "/labels", Some(json!({"name": "prod", "color": "#61717D", "scope": "g"}))).await;
    let label: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    conforms(&ok_json(s.api(Method::GET, &format!("/labels/{label}"), None).await).await, "Label");
    let path = "/projects/shp/repositories/app/artifacts/v1";
    assert_eq!(s.api(Method::POST, &format!("{path}/labels"), Some(json!({"id": label}))).await.status(), 200);
    conforms(&ok_json(s.api(Method::GET, path, None).await).await, "Artifact");
    let rule = json!({"action": "retain", "template": "latestPushedK", "params": {"latestPushedK": 5},
        "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
        "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}});
    let body = json!({"algorithm": "or", "rules": [rule], "scope": {"level": "project", "ref": project},
        "trigger": {"kind": "Schedule", "settings": {"cron": ""}}});
    let r = s.api(Method::POST, "/retentions", Some(body)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let p = ok_json(s.api(Method::GET, "/projects/shp", None).await).await;
    assert_eq!(p["metadata"]["retention_id"], json!(id.to_string()), "Harbor names the policy in the metadata");
    let r = s.api(Method::POST, &format!("/retentions/{id}/executions"), Some(json!({"dry_run": true}))).await;
    let eid: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let execution = eventually("the dry run to end", async || {
        let list = ok_json(s.api(Method::GET, &format!("/retentions/{id}/executions"), None).await).await;
        let e = list.as_array().unwrap().iter().find(|e| e["id"] == eid).cloned().unwrap();
        if e["status"] != "Pending" && e["status"] != "Running" { Ok(e) } else { Err(e) }
    })
    .await;
    conforms(&execution, "RetentionExecution");
    let tasks = ok_json(s.api(Method::GET, &format!("/retentions/{id}/executions/{eid}/tasks"), None).await).await;
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    tasks.as_array().unwrap().iter().for_each(|t| conforms(t, "RetentionExecutionTask"));
    s.stop().await;
}

/// Signatures and SBOMs are accessories of their subject (Harbor's `accessories`), not
/// artifacts of their own in the listing: referrers by `subject`, and cosign's tag scheme
/// (`sha256-<hex>.sig`). Artifacts count their pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_are_accessories_of_their_subject_and_pulls_are_counted() {
    let s = TestServer::start().await;
    let m = s.push_image("acc/app", "v1").await;
    let md = sha256(&m);
    let other = sha256(&s.push_image("acc/app", "v2").await);
    let empty = s.push_blob("acc/app", b"{}").await;
    let referrer = |artifact_type: &str, payload: &[u8], subject: bool| -> Vec<u8> {
        let mut v = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sha256(payload), "size": payload.len()}],
        });
        if subject {
            v["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()});
        }
        serde_json::to_vec(&v).unwrap()
    };
    s.push_blob("acc/app", b"sbom").await;
    s.push_blob("acc/app", b"sig").await;
    let sbom = referrer("application/spdx+json", b"sbom", true);
    assert_eq!(s.put_manifest("acc/app", &sha256(&sbom), OCI_MANIFEST, &sbom).await.status(), StatusCode::CREATED);
    // cosign's tag scheme: no subject, a tag naming the signed digest.
    let sig = referrer("application/vnd.dev.cosign.artifact.sig.v1+json", b"sig", false);
    let sig_tag = format!("{}.sig", md.replace(':', "-"));
    assert_eq!(s.put_manifest("acc/app", &sig_tag, OCI_MANIFEST, &sig).await.status(), StatusCode::CREATED);
    for _ in 0..3 {
        assert_eq!(s.get("/v2/acc/app/manifests/v1").await.status(), StatusCode::OK);
    }

    let list: Value = s.api(Method::GET, "/projects/acc/repositories/app/artifacts", None).await.json().await.unwrap();
    let digests: BTreeSet<&str> = list.as_array().unwrap().iter().map(|a| a["digest"].as_str().unwrap()).collect();
    assert_eq!(digests, BTreeSet::from([md.as_str(), other.as_str()]), "accessories are not listed on their own");
    let image = list.as_array().unwrap().iter().find(|a| a["digest"] == md).unwrap();
    let mut kinds: Vec<(&str, &str)> = image["accessories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["type"].as_str().unwrap(), x["digest"].as_str().unwrap()))
        .collect();
    kinds.sort_unstable();
    let (sbom_d, sig_d) = (sha256(&sbom), sha256(&sig));
    assert_eq!(kinds, [("harbor.sbom", sbom_d.as_str()), ("signature.cosign", sig_d.as_str())], "{image}");
    assert_eq!(image["accessories"][0]["subject_artifact_digest"], md);
    let path = format!("/projects/acc/repositories/app/artifacts/{md}/accessories");
    let listed: Value = s.api(Method::GET, &path, None).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    conforms_all(&listed, "Accessory");
    conforms_all(&image["accessories"], "Accessory");
    // Pulls are counted per artifact (through the event log, in batches).
    eventually("three pulls counted", async || {
        let a: Value = s
            .api(Method::GET, &format!("/projects/acc/repositories/app/artifacts/{md}"), None)
            .await
            .json()
            .await
            .unwrap();
        if a["pull_count"] == 3 { Ok(()) } else { Err(a) }
    })
    .await;
}

/// Every answer under `/api/v2.0` is JSON in Harbor's envelope, also for paths that do not
/// exist, parameters that do not parse, methods a route does not take and bodies that are not
/// JSON; user search finds ids by part of a name for any signed-in user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_answer_is_json_and_users_can_be_searched() {
    let s = TestServer::start().await;
    s.user("searchme", "Search-Passw0rd-1").await;
    type Case<'a> = (Method, &'a str, Option<&'a str>, StatusCode, &'a str, &'a str);
    let cases: [Case; 6] = [
        (
            Method::GET,
            "/api/v2.0/nope",
            None,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such endpoint: GET /api/v2.0/nope",
        ),
        (Method::GET, "/api/v2.0", None, StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint"),
        (Method::GET, "/api/v2.0/users/abc", None, StatusCode::BAD_REQUEST, "BAD_REQUEST", "\"abc\" is not a number"),
        (Method::PATCH, "/api/v2.0/users/current", None, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "PATCH"),
        (
            Method::POST,
            "/api/v2.0/projects",
            Some("not json"),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "not valid JSON",
        ),
        (Method::GET, "/api/v2.0/users/search", None, StatusCode::BAD_REQUEST, "BAD_REQUEST", "?username="),
    ];
    for (method, path, body, status, code, words) in cases {
        let mut r = s.client.request(method.clone(), s.url(path)).header("content-type", "application/json");
        if let Some(b) = body {
            r = r.body(b);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("application/json"), "{method} {path}: {ct}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["errors"][0]["code"], code, "{method} {path}: {e}");
        assert!(e["errors"][0]["message"].as_str().unwrap().contains(words), "{method} {path}: {e}");
    }
    let found: Value = client_as("searchme", "Search-Passw0rd-1")
        .get(s.url("/api/v2.0/users/search?username=arch"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    conforms_all(&found, "UserSearchRespItem");
    assert_eq!(found[0]["username"], "searchme");
    assert!(found[0]["user_id"].as_i64().is_some());
    let r = s.anon().get(s.url("/api/v2.0/users/search?username=a")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Harbor's discovery endpoints: project metadata, whether a project can go, search, and
/// permissions — each answering only what the caller may see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_deletable_search_and_permissions() {
    let s = TestServer::start().await;
    let pid = s.project("disc", false).await;
    s.project("hidden", false).await;
    s.push_image("hidden/secret-app", "v1").await;
    s.user("dev", "Dev-Passw0rd-1").await;
    s.member("disc", "dev", 2).await;
    let dev = client_as("dev", "Dev-Passw0rd-1");
    let api = |c: &reqwest::Client, m: Method, p: &str, b: Option<Value>| {
        let mut r = c.request(m, s.url(&format!("/api/v2.0{p}")));
        if let Some(b) = b {
            r = r.json(&b);
        }
        r.send()
    };
    // Metadata: read, add, one at a time, reset.
    let m: Value = s.api(Method::GET, "/projects/disc/metadatas", None).await.json().await.unwrap();
    assert_eq!((m["public"].as_str(), m["auto_scan"].as_str()), (Some("false"), Some("false")), "{m}");
    let r =
        s.api(Method::POST, "/projects/disc/metadatas", Some(json!({"auto_scan": "true", "severity": "high"}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let one: Value = s.api(Method::GET, "/projects/disc/metadatas/severity", None).await.json().await.unwrap();
    assert_eq!(one, json!({"severity": "high"}));
    let r = s.api(Method::PUT, "/projects/disc/metadatas/public", Some(json!({"public": "true"}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.api(Method::PUT, "/projects/disc/metadatas/public", Some(json!({"auto_scan": "true"}))).await;
    expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    let r = s.api(Method::POST, "/projects/disc/metadatas", Some(json!({"colour": "blue"}))).await;
    let e = expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("colour"), "{e}");
    assert_eq!(s.api(Method::DELETE, "/projects/disc/metadatas/auto_scan", None).await.status(), StatusCode::OK);
    let p: Value = s.api(Method::GET, "/projects/disc", None).await.json().await.unwrap();
    assert_eq!((p["metadata"]["public"].as_str(), p["metadata"]["auto_scan"].as_str()), (Some("true"), Some("false")));
    let r = api(&dev, Method::POST, "/projects/disc/metadatas", Some(json!({"auto_scan": "true"}))).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a developer does not change the project");
    // Deletable: an empty project yes; one with repositories no, and says why.
    let d: Value = s.api(Method::GET, "/projects/disc/_deletable", None).await.json().await.unwrap();
    assert_eq!(d, json!({"deletable": true, "message": ""}));
    conforms(&d, "ProjectDeletable");
    let d: Value = s.api(Method::GET, "/projects/hidden/_deletable", None).await.json().await.unwrap();
    assert_eq!(d["deletable"], false);
    assert!(d["message"].as_str().unwrap().contains("1 repositories"), "{d}");
    // Search: the admin finds the hidden repository; the developer does not.
    let found: Value = s.api(Method::GET, "/search?q=secret", None).await.json().await.unwrap();
    conforms(&found, "Search");
    assert_eq!(found["repository"][0]["repository_name"], "hidden/secret-app", "{found}");
    assert_eq!(found["repository"][0]["artifact_count"], 1);
    let mine: Value = api(&dev, Method::GET, "/search?q=i", None).await.unwrap().json().await.unwrap();
    let names: Vec<&str> = mine["project"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["disc"], "{mine}");
    assert_eq!(mine["repository"], json!([]));
    // Permissions: a developer pushes and pulls in disc, does not manage members.
    let scope = format!("/users/current/permissions?scope=/project/{pid}&relative=true");
    let perms: Value = api(&dev, Method::GET, &scope, None).await.unwrap().json().await.unwrap();
    conforms_all(&perms, "Permission");
    let has = |r: &str, a: &str| perms.as_array().unwrap().iter().any(|p| p["resource"] == r && p["action"] == a);
    assert!(has("repository", "push") && has("repository", "pull") && !has("member", "create"), "{perms}");
    let sys: Value =
        api(&dev, Method::GET, "/users/current/permissions?scope=/", None).await.unwrap().json().await.unwrap();
    assert!(sys.as_array().unwrap().iter().all(|p| p["resource"] != "/system/audit-log"), "{sys}");
    let all: Value = s.api(Method::GET, "/permissions", None).await.json().await.unwrap();
    assert!(all["project"].as_array().unwrap().iter().any(|p| p["resource"] == "repository" && p["action"] == "push"));
    assert_eq!(api(&dev, Method::GET, "/permissions", None).await.unwrap().status(), StatusCode::FORBIDDEN);
}

/// `/configurations`: Berth's settings under Harbor's keys. Project creation, token and
/// session lifetimes change at run time (stored, audited, applied at once); the others come
/// from berth.toml: writing back what was read succeeds, a change is refused naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurations_change_what_can_change_and_name_the_file_key_for_the_rest() {
    let s = TestServer::start().await;
    let c: Value = s.api(Method::GET, "/configurations", None).await.json().await.unwrap();
    // Every key Harbor also has is its item type (Bool/String/IntegerConfigItem).
    let harbor = shapes()["ConfigurationsResponse"].clone();
    let mut compared = 0;
    for (k, item) in c.as_object().unwrap() {
        if let Some(kind) = harbor[k].as_str().filter(|k| k.ends_with("ConfigItem")) {
            conforms(item, kind);
            compared += 1;
        }
    }
    assert!(compared >= 5, "{c}");
    assert_eq!(c["auth_mode"], json!({"value": "db_auth", "editable": false}));
    assert_eq!(c["project_creation_restriction"], json!({"value": "everyone", "editable": true}));
    assert_eq!(c["token_expiration"], json!({"value": 5, "editable": true}));
    let same = json!({"project_creation_restriction": "everyone", "token_expiration": 5, "auth_mode": "db_auth"});
    assert_eq!(s.api(Method::PUT, "/configurations", Some(same)).await.status(), StatusCode::OK);

    // A file setting changed in the same body: refused, and nothing else changes either.
    let mixed = json!({"project_creation_restriction": "adminonly", "auth_mode": "oidc_auth"});
    let e = expect_error(s.api(Method::PUT, "/configurations", Some(mixed)).await, StatusCode::FORBIDDEN, "FORBIDDEN")
        .await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("oidc.issuer"), "{e}");
    for (body, says) in [
        (json!({"token_expiration": 0}), "token_expiration is a number of minutes from 1 to 525600"),
        (json!({"project_creation_restriction": "nobody"}), "\"adminonly\" or \"everyone\""),
        (json!({"colour": 1}), "colour: Berth has no such setting"),
    ] {
        let e = expect_error(
            s.api(Method::PUT, "/configurations", Some(body)).await,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        )
        .await;
        assert!(e["errors"][0]["message"].as_str().unwrap().contains(says), "{e}");
    }
    s.user("dev", "Dev-Passw0rd-1").await;
    let dev = client_as("dev", "Dev-Passw0rd-1");
    let create = |name: &str| {
        let (dev, url, body) = (dev.clone(), s.url("/api/v2.0/projects"), json!({"project_name": name}));
        async move { dev.post(url).json(&body).send().await.unwrap().status() }
    };
    assert_eq!(create("mine").await, StatusCode::CREATED, "everyone may create projects still");

    // Runtime settings: applied at once, kept in the database, audited.
    let change = json!({"project_creation_restriction": "adminonly", "token_expiration": 30, "session_timeout": "90"});
    assert_eq!(s.api(Method::PUT, "/configurations", Some(change)).await.status(), StatusCode::OK);
    let c: Value = s.api(Method::GET, "/configurations", None).await.json().await.unwrap();
    assert_eq!(
        (&c["project_creation_restriction"]["value"], &c["token_expiration"]["value"], &c["session_timeout"]["value"]),
        (&json!("adminonly"), &json!(30), &json!(90))
    );
    expect_error(
        dev.post(s.url("/api/v2.0/projects")).json(&json!({"project_name": "another"})).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    let t: Value = client_as(ADMIN, ADMIN_PASSWORD)
        .get(s.url("/service/token?service=berth&scope=repository:mine/app:pull"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["expires_in"], 1800, "{t}");
    crate::access::audit(&s, "resource_type=configuration", |v| {
        v.iter().any(|e| {
            e["operation"] == "update"
                && e["resource"].as_str().is_some_and(|r| r.contains("project_creation_restriction=\"adminonly\""))
        })
    })
    .await;
    let r = dev.get(s.url("/api/v2.0/configurations")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Kept across a restart (the file still says everyone).
    let s = s.restart().await;
    let c: Value = s.api(Method::GET, "/configurations", None).await.json().await.unwrap();
    assert_eq!(c["project_creation_restriction"]["value"], "adminonly");
    s.stop().await;
}

/// The scanner registration, statistics and project summary in Harbor's shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanners_statistics_and_summary_have_harbors_shapes() {
    let s = TestServer::start().await;
    s.project("sum", false).await;
    s.push_image("sum/app", "v1").await;
    conforms_all(&ok_json(s.api(Method::GET, "/scanners", None).await).await, "ScannerRegistration");
    conforms(&ok_json(s.api(Method::GET, "/scanners/berth-builtin", None).await).await, "ScannerRegistration");
    conforms(&ok_json(s.api(Method::GET, "/projects/sum/scanner", None).await).await, "ScannerRegistration");
    let meta = ok_json(s.api(Method::GET, "/scanners/berth-builtin/metadata", None).await).await;
    conforms(&meta, "ScannerAdapterMetadata");
    conforms(&ok_json(s.api(Method::GET, "/statistics", None).await).await, "Statistic");
    let summary = ok_json(s.api(Method::GET, "/projects/sum/summary", None).await).await;
    conforms(&summary, "ProjectSummary");
    assert_eq!(summary["repo_count"], 1);
}
