//! The admin CLI (`berth project|robot|user|token-key`) against a running server.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::*;

fn berth(s: &TestServer) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.env("BERTH_URL", &s.base).env("BERTH_USERNAME", ADMIN).env("BERTH_PASSWORD", ADMIN_PASSWORD);
    c
}

async fn json_out(c: &mut Command) -> Value {
    let out = run_ok(c).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn kid(token: &str) -> String {
    use base64::Engine;
    let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<Value>(&h).unwrap()["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_creates_projects_users_robots_and_secrets() {
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    let p = json_out(berth(&s).args(["project", "create", "cli-proj", "--public", "--output", "json"])).await;
    assert_eq!((p["name"].as_str(), p["metadata"]["public"].as_str()), (Some("cli-proj"), Some("true")));
    let text = run_ok(berth(&s).args(["project", "create", "cli-private"])).await;
    assert!(text.contains("created project cli-private") && text.contains("private"), "{text}");
    let list = json_out(berth(&s).args(["project", "list", "--output", "json"])).await;
    let names: Vec<_> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, vec!["cli-private", "cli-proj"]);
    let table = run_ok(berth(&s).args(["project", "list"])).await;
    assert!(table.lines().next().unwrap().starts_with("ID") && table.contains("cli-proj"), "{table}");

    // Users: a chosen password, and a generated one printed once.
    let u = json_out(berth(&s).args(["user", "create", "carl", "--user-password", "Carl-Pw-123", "--output", "json"]))
        .await;
    assert!(u["user_id"].as_i64().unwrap() > 1);
    let g = json_out(berth(&s).args(["user", "create", "gen", "--admin", "--output", "json"])).await;
    let gpw = g["password"].as_str().unwrap();
    let me: Value =
        client_as("gen", gpw).get(s.url("/api/v2.0/users/current")).send().await.unwrap().json().await.unwrap();
    assert_eq!((me["username"].as_str(), me["sysadmin_flag"].as_bool()), (Some("gen"), Some(true)));
    // `--password` is the caller's own: given with `user create` and no --user-password, the
    // CLI says which flag sets the new user's (and generates one).
    let out = berth(&s)
        .args(["user", "create", "dora", "--password", ADMIN_PASSWORD, "--output", "json"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the new user's is --user-password"), "{out:?}");
    let dora: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(dora["password"].as_str().is_some_and(|p| p != ADMIN_PASSWORD), "{dora}");

    // A robot with permissions and a lifetime; its secret pushes with a real client.
    let r = json_out(berth(&s).args([
        "robot",
        "create",
        "--project",
        "cli-proj",
        "--name",
        "builder",
        "--permission",
        "repository:pull",
        "--permission",
        "repository:push",
        "--duration",
        "30",
        "--output",
        "json",
    ]))
    .await;
    assert_eq!(r["name"], "robot$cli-proj+builder");
    let secret = r["secret"].as_str().unwrap();
    let now = berth_auth::now_ms() / 1000;
    assert!((r["expires_at"].as_i64().unwrap() - now - 30 * 86_400).abs() < 60, "{r}");
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    let auth = s.auth_file_for(Some(("robot$cli-proj+builder", secret)));
    run_ok(
        Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", &auth)
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:single", layout.display()))
            .arg(format!("docker://{}/cli-proj/app:v1", s.host())),
    )
    .await;
    let text = run_ok(berth(&s).args([
        "robot",
        "create",
        "--project",
        "cli-proj",
        "--name",
        "reader",
        "--permission",
        "repository:pull",
    ]))
    .await;
    assert!(text.contains("robot$cli-proj+reader") && text.contains("secret (shown once"), "{text}");
    let robots = run_ok(berth(&s).args(["robot", "list"])).await;
    assert!(robots.contains("robot$cli-proj+builder") && robots.contains("never"), "{robots}");

    // CLI secrets: reset prints a working secret; revoke stops it.
    let c = json_out(berth(&s).args(["user", "cli-secret", "reset", "carl", "--output", "json"])).await;
    let cli = c["secret"].as_str().unwrap().to_owned();
    assert_eq!(client_as("carl", &cli).get(s.url("/v2/")).send().await.unwrap().status(), 200);
    run_ok(berth(&s).args(["user", "cli-secret", "revoke", "carl"])).await;
    // Lock carl out from this address, then lift it.
    for _ in 0..5 {
        let r = client_as("carl", "Wrong-Pw-123").get(s.url("/v2/")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(client_as("carl", "Carl-Pw-123").get(s.url("/v2/")).send().await.unwrap().status(), 429);
    let text = run_ok(berth(&s).args(["user", "unlock", "carl"])).await;
    assert_eq!(text.trim(), "lifted the login locks of carl");
    assert_eq!(client_as("carl", "Carl-Pw-123").get(s.url("/v2/")).send().await.unwrap().status(), 200);
    // The same for a robot account.
    let (_, rname, rsecret) = s.robot("cli-proj", "locky", &[("repository", "pull")], -1).await;
    for _ in 0..5 {
        assert_eq!(client_as(&rname, "wrong").get(s.url("/v2/")).send().await.unwrap().status(), 401);
    }
    assert_eq!(client_as(&rname, &rsecret).get(s.url("/v2/")).send().await.unwrap().status(), 429);
    let text = run_ok(berth(&s).args(["robot", "unlock", &rname])).await;
    assert_eq!(text.trim(), format!("lifted the login locks of {rname}"));
    assert_eq!(client_as(&rname, &rsecret).get(s.url("/v2/")).send().await.unwrap().status(), 200);
    assert_eq!(client_as("carl", &cli).get(s.url("/v2/")).send().await.unwrap().status(), 401);

    // Errors say why.
    let err = run_fails(berth(&s).env("BERTH_PASSWORD", "nope").args(["project", "list"])).await;
    assert!(err.contains("401") && err.contains("invalid username or password"), "{err}");
    let err = run_fails(berth(&s).args(["project", "create", "cli-proj"])).await;
    assert!(err.contains("409") && err.contains("already exists"), "{err}");
    let err =
        run_fails(berth(&s).args(["robot", "create", "--project", "cli-proj", "--name", "x", "--permission", "pull"]))
            .await;
    assert!(err.contains("resource:action"), "{err}");

    // Rotating the signing key: old tokens keep working, new ones carry the new key.
    let tok = |c: reqwest::Client| {
        let url = s.url("/service/token?service=berth&scope=repository:cli-proj/app:pull");
        async move { c.get(url).send().await.unwrap().json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned() }
    };
    let before = tok(client_as(ADMIN, ADMIN_PASSWORD)).await;
    let out =
        run_ok(Command::new(env!("CARGO_BIN_EXE_berth")).args(["token-key", "rotate", "--data-dir"]).arg(s.data_dir()))
            .await;
    assert!(out.contains("new token signing key"), "{out}");
    let after = eventually("the running server signs with the new key", async || {
        let after = tok(client_as(ADMIN, ADMIN_PASSWORD)).await;
        if kid(&after) != kid(&before) { Ok(after) } else { Err(format!("kid {:?}", kid(&after))) }
    })
    .await;
    for t in [&before, &after] {
        let r = s.anon().get(s.url("/v2/cli-proj/app/manifests/v1")).bearer_auth(t).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(s.api(Method::GET, "/projects/cli-proj", None).await.status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_purged_by_age_and_operation() {
    let s = TestServer::start().await;
    s.push_image("aud/app", "v1").await;
    for _ in 0..3 {
        assert_eq!(s.get("/v2/aud/app/manifests/v1").await.status(), 200);
    }
    // Wait for the audit consumer: the push and the pulls (aggregated per client).
    let entries = crate::access::audit(&s, "", |v| {
        v.iter().any(|e| e["operation"] == "push") && v.iter().any(|e| e["operation"] == "pull")
    })
    .await;
    let pulls = entries.iter().filter(|e| e["operation"] == "pull").count();
    let text =
        run_ok(berth(&s).args(["audit", "purge", "--older-than", "0s", "--operation", "pull", "--dry-run"])).await;
    assert_eq!(text.trim(), format!("would purge {pulls} audit entries older than 0s"));
    let v =
        json_out(berth(&s).args(["audit", "purge", "--older-than", "0s", "--operation", "pull", "--output", "json"]))
            .await;
    assert_eq!(v["purged"], pulls as i64);
    let left = crate::access::audit(&s, "", |v| v.iter().any(|e| e["operation"] == "purge")).await;
    assert!(!left.iter().any(|e| e["operation"] == "pull"), "pulls gone: {left:?}");
    assert!(left.iter().any(|e| e["operation"] == "push"), "the push stays");
    let purge = left.iter().find(|e| e["operation"] == "purge").unwrap();
    assert_eq!(
        (purge["username"].as_str(), purge["resource"].as_str()),
        (Some("admin"), Some(format!("{pulls} entries").as_str()))
    );
    // Bad parameters are refused by name; a retention too fine for Harbor's hours too.
    let r = s
        .api(
            reqwest::Method::POST,
            "/system/purgeaudit/schedule",
            Some(json!({"schedule": {"type": "Manual"}, "parameters": {"include_operations": "pull,fly"}})),
        )
        .await;
    let e: Value = r.json().await.unwrap();
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("\"fly\" is not an operation"), "{e}");
    let err = run_fails(berth(&s).args(["audit", "purge", "--older-than", "90m"])).await;
    assert!(err.contains("whole hours"), "{err}");
    let sched: Value = s.api(reqwest::Method::GET, "/system/purgeaudit/schedule", None).await.json().await.unwrap();
    assert_eq!(sched["parameters"]["audit_retention_hour"], 180 * 24);
}

/// Projects and members from the CLI: show, update settings, members added, re-roled and
/// removed, delete; aligned tables, JSON and real YAML; an unknown format is an error; lists
/// past one page are whole; `--ca-file` trusts a private CA for an HTTPS server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_and_members_from_the_cli_in_tables_json_and_yaml() {
    let s = TestServer::start().await;
    s.user("ann", "Ann-Passw0rd-1").await;
    run_ok(berth(&s).args(["project", "create", "web"])).await;
    let out = run_ok(berth(&s).args(["project", "update", "web", "--public", "true", "--set", "auto_scan=true"])).await;
    assert!(out.contains("auto_scan=true") && out.contains("public=true"), "{out}");
    let err = run_fails(berth(&s).args(["project", "update", "web", "--set", "colour=blue"])).await;
    assert!(err.contains("colour"), "{err}");
    run_ok(berth(&s).args(["project", "member", "add", "web", "--user", "ann", "--role", "developer"])).await;
    run_ok(berth(&s).args(["project", "member", "role", "web", "ann", "maintainer"])).await;
    let table = run_ok(berth(&s).args(["project", "member", "list", "web"])).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "TYPE", "ROLE"], "{table}");
    let ann = lines.iter().find(|l| l.starts_with("ann")).unwrap_or_else(|| panic!("{table}"));
    assert_eq!(ann.split_whitespace().collect::<Vec<_>>(), ["ann", "user", "maintainer"]);
    // Columns line up: every row's second column starts where the header's does.
    let col = lines[0].find("TYPE").unwrap();
    assert!(lines.iter().skip(1).all(|l| l[col..].starts_with("user") || l[col..].starts_with("group")), "{table}");
    let yaml = run_ok(berth(&s).args(["project", "member", "list", "web", "--output", "yaml"])).await;
    let parsed: Vec<Value> = serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("not YAML ({e}): {yaml}"));
    assert!(parsed.iter().any(|m| m["entity_name"] == "ann" && m["role_id"] == 4), "{yaml}");
    let shown = json_out(berth(&s).args(["project", "show", "web", "--output", "json"])).await;
    assert_eq!(shown["project"]["metadata"]["auto_scan"], "true");
    assert_eq!(shown["summary"]["maintainer_count"], 1);
    let err = run_fails(berth(&s).args(["project", "list", "--output", "xml"])).await;
    assert!(err.contains("use table, json or yaml"), "{err}");
    run_ok(berth(&s).args(["project", "member", "remove", "web", "ann"])).await;
    // More than one page of projects: all listed.
    for i in 0..105 {
        let r = s.api(Method::POST, "/projects", Some(json!({"project_name": format!("p{i:03}")}))).await;
        assert_eq!(r.status(), 201);
    }
    let all = json_out(berth(&s).args(["project", "list", "--output", "json"])).await;
    assert_eq!(all.as_array().unwrap().len(), 106);
    run_ok(berth(&s).args(["project", "delete", "web"])).await;
    let err = run_fails(berth(&s).args(["project", "show", "web"])).await;
    assert!(err.contains("404"), "{err}");

    // An HTTPS server with a private CA: refused without --ca-file, trusted with it.
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let tls = TestServer::start_with(|c| c.tls = Some(berth_config::TlsConfig { cert: cert.clone(), key })).await;
    let err = run_fails(berth(&tls).args(["project", "list"])).await;
    assert!(err.contains("calling"), "{err}");
    let out = run_ok(berth(&tls).args(["project", "list"]).env("BERTH_CA_FILE", &cert)).await;
    assert!(out.starts_with("ID"), "{out}");
}

/// Robots, repositories, artifacts and scans from the CLI: every command, in tables and JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_repositories_artifacts_and_scans_from_the_cli() {
    let s = TestServer::start().await;
    s.project("ops", false).await;
    // A real (if tiny) image, so its scan reads its layer.
    let m = crate::scan::image_of(&s, "ops/tool", &[("etc/motd", b"hello")]).await;
    assert_eq!(s.put_manifest("ops/tool", "v1", OCI_MANIFEST, &m).await.status(), StatusCode::CREATED);
    let digest = sha256(&m);
    // Robots: created, disabled (its login refused), enabled, a new secret, deleted.
    let r = json_out(berth(&s).args([
        "robot",
        "create",
        "--project",
        "ops",
        "--name",
        "ci",
        "--permission",
        "repository:pull",
        "--output",
        "json",
    ]))
    .await;
    let (name, secret) = (r["name"].as_str().unwrap().to_owned(), r["secret"].as_str().unwrap().to_owned());
    let robot_pulls = |secret: String| {
        let (s, name) = (&s, name.clone());
        async move { client_as(&name, &secret).get(s.url("/v2/ops/tool/manifests/v1")).send().await.unwrap().status() }
    };
    assert_eq!(robot_pulls(secret.clone()).await, StatusCode::OK);
    run_ok(berth(&s).args(["robot", "disable", &name])).await;
    assert_eq!(robot_pulls(secret.clone()).await, StatusCode::UNAUTHORIZED);
    let list = run_ok(berth(&s).args(["robot", "list"])).await;
    assert!(list.lines().any(|l| l.contains(&name) && l.split_whitespace().nth(3) == Some("yes")), "{list}");
    run_ok(berth(&s).args(["robot", "enable", &name])).await;
    let fresh = json_out(berth(&s).args(["robot", "refresh", &name, "--output", "json"])).await;
    let fresh = fresh["secret"].as_str().unwrap().to_owned();
    assert_eq!(robot_pulls(secret).await, StatusCode::UNAUTHORIZED, "the old secret is gone");
    assert_eq!(robot_pulls(fresh).await, StatusCode::OK);
    run_ok(berth(&s).args(["robot", "delete", &name])).await;
    assert!(!run_ok(berth(&s).args(["robot", "list"])).await.contains(&name));
    // Repositories and artifacts.
    let repos = run_ok(berth(&s).args(["repo", "list", "ops"])).await;
    assert!(repos.lines().nth(1).unwrap().starts_with("ops/tool"), "{repos}");
    run_ok(berth(&s).args(["artifact", "tag", "ops/tool", "v1", "stable"])).await;
    let arts = run_ok(berth(&s).args(["artifact", "list", "ops/tool"])).await;
    let row = arts.lines().nth(1).unwrap();
    assert!(row.starts_with(&digest[..19]) && row.contains("stable") && row.contains("v1"), "{arts}");
    let shown = run_ok(berth(&s).args(["artifact", "show", "ops/tool", "stable"])).await;
    assert!(shown.contains(&digest) && shown.contains("not scanned"), "{shown}");
    // Scans: one artifact, waited for; its report. The image is random bytes: no operating
    // system, no packages, so scanning does not apply (rather than a clean "no findings").
    let out = run_ok(berth(&s).args(["scan", "start", "ops/tool", "v1", "--wait"])).await;
    assert_eq!(out.trim(), "ops/tool:v1: not applicable");
    let report = run_ok(berth(&s).args(["scan", "report", "ops/tool", "v1"])).await;
    assert!(
        report.starts_with("VULNERABILITY") && report.contains("Not applicable: no operating system and no package"),
        "{report}"
    );
    let all = run_ok(berth(&s).args(["scan", "all", "--wait"])).await;
    assert!(all.contains("artifacts scanned, 0 failed"), "{all}");
    run_ok(berth(&s).args(["artifact", "untag", "ops/tool", "stable"])).await;
    let tags = json_out(berth(&s).args(["artifact", "show", "ops/tool", "v1", "--output", "json"])).await;
    assert_eq!(tags["tags"].as_array().unwrap().len(), 1);
    run_ok(berth(&s).args(["artifact", "delete", "ops/tool", "v1"])).await;
    assert_eq!(s.get("/v2/ops/tool/manifests/v1").await.status(), StatusCode::NOT_FOUND);
    run_ok(berth(&s).args(["repo", "delete", "ops/tool"])).await;
    let err = run_fails(berth(&s).args(["repo", "delete", "tool"])).await;
    assert!(err.contains("project/repository"), "{err}");
    // Jobs through the API: a finished GC run's job is listed and shown; it cannot be
    // stopped or retried (only failed or stopped jobs are).
    run_ok(berth(&s).args(["gc", "run", "--wait"])).await;
    let jobs = json_out(berth(&s).args(["job", "list", "--kind", "gc", "--output", "json"])).await;
    let id = jobs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(jobs[0]["status"], "succeeded", "{jobs}");
    let shown = run_ok(berth(&s).args(["job", "show", &id])).await;
    assert!(shown.contains("succeeded") && shown.contains("gc"), "{shown}");
    let err = run_fails(berth(&s).args(["job", "retry", &id])).await;
    assert!(err.contains("only failed or stopped jobs are retried"), "{err}");
    let err = run_fails(berth(&s).args(["job", "stop", &id])).await;
    assert!(err.contains("already succeeded"), "{err}");
    // CVE allowlists: the system's, and a project's own.
    let out =
        run_ok(berth(&s).args(["allowlist", "set", "CVE-2099-0001", "CVE-2099-0002", "--expires", "2099-01-31"])).await;
    assert_eq!(out.trim(), "CVE-2099-0001, CVE-2099-0002 (expires: 2099-01-31T00:00:00Z)");
    let out = run_ok(berth(&s).args(["allowlist", "set", "CVE-2099-0003", "--project", "ops"])).await;
    assert_eq!(out.trim(), "CVE-2099-0003 (expires: never)");
    let p = json_out(berth(&s).args(["project", "show", "ops", "--output", "json"])).await;
    assert_eq!(p["project"]["metadata"]["reuse_sys_cve_allowlist"], "false");
    let sys = json_out(berth(&s).args(["allowlist", "show", "--output", "json"])).await;
    assert_eq!(sys["items"].as_array().unwrap().len(), 2);
    let err = run_fails(berth(&s).args(["allowlist", "set", "X", "--expires", "soon"])).await;
    assert!(err.contains("2027-06-30"), "{err}");
    // The audit log from the CLI: the deletes above, by the admin.
    let log = run_ok(berth(&s).args(["audit", "list", "--operation", "delete", "--limit", "10"])).await;
    assert!(log.starts_with("TIME") && log.contains("ops/tool") && log.contains("admin"), "{log}");
    let mine = json_out(berth(&s).args(["audit", "list", "--project", "ops", "--output", "json"])).await;
    assert!(
        !mine.as_array().unwrap().is_empty() && mine.as_array().unwrap().iter().all(|e| e["project"] == "ops"),
        "{mine}"
    );
}
