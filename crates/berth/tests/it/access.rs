//! Identity and access with real clients: public and private projects, roles, robot accounts
//! (pull-only, disabled, expired) through Kubernetes-style pull-secret auth files,
//! repository policies, and the audit trail they leave.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::*;

const DEV_PW: &str = "Developer-Pw-1";
const GUEST_PW: &str = "Guest-Pw-1";
const OUT_PW: &str = "Outsider-Pw-1";

/// skopeo with the credentials in `auth_file` (REGISTRY_AUTH_FILE, as podman and buildah read it).
fn skopeo(auth_file: &Path) -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy").env("REGISTRY_AUTH_FILE", auth_file);
    c
}

async fn push(auth: &Path, layout: &Path, dest: &str) -> Result<(), String> {
    let out = skopeo(auth)
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:single", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .await
        .unwrap();
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

async fn inspect(auth: &Path, image: &str) -> Result<String, String> {
    let out = skopeo(auth)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .await
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Audit entries matching `q` (Harbor's `q` syntax), waiting for the batch writer.
pub async fn audit(s: &TestServer, q: &str, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    eventually(&format!("audit log for {q:?} to match"), async || {
        let r = s.api(Method::GET, &format!("/audit-logs?page_size=100&q={q}"), None).await;
        assert_eq!(r.status(), 200);
        let entries = r.json::<Vec<Value>>().await.unwrap();
        if want(&entries) { Ok(entries) } else { Err(format!("{entries:?}")) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_and_private_projects_roles_and_missing_projects_with_real_clients() {
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    let host = s.host();
    s.project("pub", true).await;
    s.project("priv", false).await;
    s.user("dev", DEV_PW).await;
    s.user("guest", GUEST_PW).await;
    s.user("outsider", OUT_PW).await;
    s.member("priv", "dev", 2).await; // developer
    s.member("priv", "guest", 3).await; // guest
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    let admin = s.auth_file_for(Some((ADMIN, ADMIN_PASSWORD)));
    let anon = s.auth_file_for(None);
    let dev = s.auth_file_for(Some(("dev", DEV_PW)));
    let guest = s.auth_file_for(Some(("guest", GUEST_PW)));
    let outsider = s.auth_file_for(Some(("outsider", OUT_PW)));
    push(&admin, &layout, &format!("{host}/pub/app:v1")).await.unwrap();
    push(&admin, &layout, &format!("{host}/priv/app:v1")).await.unwrap();

    // Anonymous users pull public projects and nothing else.
    let raw = inspect(&anon, &format!("{host}/pub/app:v1")).await.unwrap();
    assert_eq!(sha256(raw.as_bytes()), layout_digest(&layout, "single"));
    let err = inspect(&anon, &format!("{host}/priv/app:v1")).await.unwrap_err();
    assert!(err.contains("unauthorized") || err.contains("authentication required"), "{err}");
    let err = push(&anon, &layout, &format!("{host}/pub/anon:v1")).await.unwrap_err();
    assert!(err.contains("unauthorized") || err.contains("authentication required"), "{err}");

    // A developer pushes; a guest pulls but cannot push; an outsider sees nothing.
    push(&dev, &layout, &format!("{host}/priv/app:dev")).await.unwrap();
    let err = push(&guest, &layout, &format!("{host}/priv/app:guest")).await.unwrap_err();
    assert!(err.contains("denied"), "{err}");
    let env = containers_env(tmp.path(), &guest);
    run_ok(
        Command::new("podman").envs(env).args(["pull", "-q", "--tls-verify=false"]).arg(format!("{host}/priv/app:v1")),
    )
    .await;
    assert!(inspect(&outsider, &format!("{host}/priv/app:v1")).await.is_err());
    // the outsider may still pull the public project
    inspect(&outsider, &format!("{host}/pub/app:v1")).await.unwrap();

    // Pushing into a project that does not exist is refused, naming the project.
    let err = push(&admin, &layout, &format!("{host}/nosuch/app:v1")).await.unwrap_err();
    assert!(err.contains("nosuch"), "{err}");
    let r = s.client.post(s.url("/v2/nosuch/app/blobs/uploads/")).send().await.unwrap();
    let body = expect_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("project \"nosuch\" does not exist or you may not access it"),
        "{body}"
    );
    // A private project looks exactly like a missing one to a non-member, on both surfaces.
    let outsider_c = client_as("outsider", OUT_PW);
    let hidden = outsider_c.post(s.url("/v2/priv/app/blobs/uploads/")).send().await.unwrap();
    let missing = outsider_c.post(s.url("/v2/nosuch2/app/blobs/uploads/")).send().await.unwrap();
    let (hs, ms) = (hidden.status(), missing.status());
    let (hb, mb) = (hidden.text().await.unwrap(), missing.text().await.unwrap());
    assert_eq!((hs, hb.replace("priv", "X")), (ms, mb.replace("nosuch2", "X")));
    assert_eq!(hs, StatusCode::NOT_FOUND);
    // The same through the token flow.
    let mut answers = Vec::new();
    for repo in ["priv/app", "nosuch2/app"] {
        let t: Value = outsider_c
            .get(s.url(&format!("/service/token?service=berth&scope=repository:{repo}:pull")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r = s
            .anon()
            .get(s.url(&format!("/v2/{repo}/manifests/v1")))
            .bearer_auth(t["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let status = r.status();
        answers.push((status, r.text().await.unwrap().replace(repo.split('/').next().unwrap(), "X")));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, StatusCode::NOT_FOUND);
    let hidden = outsider_c.get(s.url("/api/v2.0/projects/priv/repositories")).send().await.unwrap();
    let missing = outsider_c.get(s.url("/api/v2.0/projects/nosuch2/repositories")).send().await.unwrap();
    let (hs, ms) = (hidden.status(), missing.status());
    let (hb, mb) = (hidden.text().await.unwrap(), missing.text().await.unwrap());
    assert_eq!((hs, hb.replace("priv", "X")), (ms, mb.replace("nosuch2", "X")));

    // The challenge tells clients where the token service is.
    let r = s.anon().get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&r, "www-authenticate"),
        Some(format!("Bearer realm=\"http://{host}/service/token\",service=\"berth\"").as_str())
    );
    let r = s.anon().get(s.url("/v2/priv/app/manifests/v1")).send().await.unwrap();
    let challenge = header(&r, "www-authenticate").unwrap().to_owned();
    assert!(challenge.contains("scope=\"repository:priv/app:pull\""), "{challenge}");
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // Basic credentials work on registry requests too; a wrong password is refused.
    assert_eq!(
        client_as("guest", GUEST_PW).get(s.url("/v2/priv/app/manifests/v1")).send().await.unwrap().status(),
        200
    );
    let r = client_as("guest", "wrong-pw").get(s.url("/v2/priv/app/manifests/v1")).send().await.unwrap();
    let body = expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("invalid username or password"), "{body}");

    // A developer cannot delete; the admin can (by digest: every tag on the image goes).
    let del = |auth: &Path, image: &str| {
        let mut c = skopeo(auth);
        c.args(["delete", "--tls-verify=false"]).arg(format!("docker://{image}"));
        c
    };
    let err = run_fails(&mut del(&dev, &format!("{host}/priv/app:dev"))).await;
    assert!(err.contains("denied") || err.contains("unauthorized"), "{err}");
    run_ok(&mut del(&admin, &format!("{host}/priv/app:dev"))).await;

    // The catalog shows each caller what they may pull.
    let cat = |c: reqwest::Client| {
        let url = s.url("/v2/_catalog");
        async move { c.get(url).send().await.unwrap().json::<Value>().await.unwrap()["repositories"].clone() }
    };
    assert_eq!(cat(s.client.clone()).await, json!(["priv/app", "pub/app"]));
    assert_eq!(cat(client_as("outsider", OUT_PW)).await, json!(["pub/app"]));

    // Every push, pull, delete and failed login is in the audit log: who, what, from where.
    let pushes = audit(&s, "operation=push", |v| v.iter().any(|e| e["username"] == "dev")).await;
    let e = pushes.iter().find(|e| e["username"] == "dev").unwrap();
    assert_eq!((e["resource"].as_str(), e["resource_type"].as_str()), (Some("priv/app:dev"), Some("artifact")));
    assert_eq!(e["client_ip"], "127.0.0.1");
    assert!(e["op_time"].as_str().unwrap().ends_with('Z'));
    audit(&s, "operation=pull", |v| v.iter().any(|e| e["username"] == "guest" && e["resource"] == "priv/app:v1")).await;
    audit(&s, "operation=pull", |v| v.iter().any(|e| e["username"] == "anonymous" && e["resource"] == "pub/app:v1"))
        .await;
    audit(&s, "operation=delete", |v| v.iter().any(|e| e["username"] == "admin")).await;
    audit(&s, "operation=login", |v| v.iter().any(|e| e["username"] == "guest" && e["result"] == "failure")).await;
    audit(&s, "operation=create", |v| v.iter().any(|e| e["resource_type"] == "project" && e["resource"] == "priv"))
        .await;
    // Repository pull counts come from the same event log (their own consumer).
    eventually("a pull counted for pub/app", async || {
        let repos: Vec<Value> = s.api(Method::GET, "/projects/pub/repositories", None).await.json().await.unwrap();
        let app = repos.iter().find(|r| r["name"] == "pub/app").unwrap();
        if app["pull_count"].as_i64().unwrap() >= 1 { Ok(()) } else { Err(app.clone()) }
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_a_generated_admin_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let serve = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        c.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
            .arg(dir.path())
            .env_remove("BERTH_ADMIN_PASSWORD")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        c
    };
    let read_start = |child: &mut std::process::Child| {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut before = Vec::new();
        let addr = loop {
            let l = lines.next().unwrap().unwrap();
            if let Ok(v) = serde_json::from_str::<Value>(&l)
                && v["message"] == "berth is serving"
            {
                break v["addr"].as_str().unwrap().to_owned();
            }
            before.push(l);
        };
        std::thread::spawn(move || for _ in lines.by_ref() {});
        (addr, before)
    };
    let mut child = serve().spawn().unwrap();
    let (addr, before) = read_start(&mut child);
    let i =
        before.iter().position(|l| l.contains("created the system administrator `admin` with the password")).unwrap();
    let password = before[i + 2].trim().to_owned();
    assert_eq!(password.len(), 32, "{before:?}");
    // The log lines written before it come before it (they are buffered for a few ms).
    let logged = before
        .iter()
        .position(|l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["message"] == "created the system administrator account `admin`")
        })
        .expect("the account's creation is logged");
    assert!(logged < i, "the log line about the account came after the password: {before:?}");
    let r = client_as(ADMIN, &password).get(format!("http://{addr}/api/v2.0/users/current")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["sysadmin_flag"], true);
    child.kill().unwrap();
    child.wait().unwrap();
    // the second start keeps the account and prints nothing
    let mut child = serve().spawn().unwrap();
    let (addr, before) = read_start(&mut child);
    assert!(!before.iter().any(|l| l.contains("password")), "{before:?}");
    assert_eq!(client_as(ADMIN, &password).get(format!("http://{addr}/v2/")).send().await.unwrap().status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_accounts_pull_only_refresh_disabled_and_expired() {
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    let host = s.host();
    s.project("rb", false).await;
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    push(&s.auth_file(), &layout, &format!("{host}/rb/app:v1")).await.unwrap();
    let (id, name, secret) = s.robot("rb", "puller", &[("repository", "pull")], -1).await;
    assert_eq!(name, "robot$rb+puller");
    let shown: Value = s.api(Method::GET, &format!("/robots/{id}"), None).await.json().await.unwrap();
    assert!(shown.get("secret").is_none(), "the secret is shown once only: {shown}");
    assert_eq!((shown["level"].as_str(), shown["expires_at"].as_i64()), (Some("project"), Some(-1)));

    // The .dockerconfigjson of a kubernetes.io/dockerconfigjson pull secret, used as is.
    let pull_secret = tmp.path().join("pull-secret.json");
    std::fs::write(&pull_secret, auth_json(&host, &name, &secret)).unwrap();
    let secret_obj = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64_std(&std::fs::read(&pull_secret).unwrap())}});
    let decoded = base64_std_decode(secret_obj["data"][".dockerconfigjson"].as_str().unwrap());
    assert_eq!(decoded, std::fs::read(&pull_secret).unwrap());
    let env = containers_env(tmp.path(), &pull_secret);
    run_ok(
        Command::new("podman")
            .envs(env.clone())
            .args(["pull", "-q", "--tls-verify=false"])
            .arg(format!("{host}/rb/app:v1")),
    )
    .await;
    let err = push(&pull_secret, &layout, &format!("{host}/rb/app:robot")).await.unwrap_err();
    assert!(err.contains("denied"), "{err}");
    let err = run_fails(
        skopeo(&pull_secret).args(["delete", "--tls-verify=false"]).arg(format!("docker://{host}/rb/app:v1")),
    )
    .await;
    assert!(err.contains("denied") || err.contains("unauthorized"), "{err}");
    assert_eq!(s.get("/v2/rb/app/manifests/v1").await.status(), 200, "the pull-only robot deleted nothing");

    // Refreshing the secret: the new one works, the old one is refused.
    let r = s.api(Method::PATCH, &format!("/robots/{id}"), None).await;
    assert_eq!(r.status(), 200);
    let fresh = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    assert_ne!(fresh, secret);
    assert!(inspect(&pull_secret, &format!("{host}/rb/app:v1")).await.is_err(), "old secret refused");
    let fresh_file = tmp.path().join("fresh.json");
    std::fs::write(&fresh_file, auth_json(&host, &name, &fresh)).unwrap();
    inspect(&fresh_file, &format!("{host}/rb/app:v1")).await.unwrap();

    // A disabled robot is refused with a clear UNAUTHORIZED message.
    let r = s.api(Method::PUT, &format!("/robots/{id}"), Some(json!({"disable": true}))).await;
    assert_eq!(r.status(), 200);
    let err = inspect(&fresh_file, &format!("{host}/rb/app:v1")).await.unwrap_err();
    assert!(err.contains("disabled"), "{err}");
    let r = s
        .anon()
        .get(s.url("/service/token?service=berth&scope=repository:rb/app:pull"))
        .basic_auth(&name, Some(&fresh))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(body["errors"][0]["message"], format!("robot account {name} is disabled"));

    // An expired robot: made with a 1-day lifetime, then a day passes (in the database).
    let (eid, ename, esecret) = s.robot("rb", "shortlived", &[("repository", "pull")], 1).await;
    let shown: Value = s.api(Method::GET, &format!("/robots/{eid}"), None).await.json().await.unwrap();
    let exp = shown["expires_at"].as_i64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((exp - now - 86_400).abs() < 60, "expires in a day: {shown}");
    {
        use berth_meta::AccessStore;
        let meta = berth_meta::SqlMetaStore::open_sqlite(s.data_dir().join("meta.db")).await.unwrap();
        let mut rec = meta.robot(eid).await.unwrap().unwrap();
        rec.expires_at = (now - 5) * 1000;
        assert!(meta.update_robot(&rec, &berth_meta::Origin::system()).await.unwrap());
    }
    let efile = tmp.path().join("expired.json");
    std::fs::write(&efile, auth_json(&host, &ename, &esecret)).unwrap();
    let err = inspect(&efile, &format!("{host}/rb/app:v1")).await.unwrap_err();
    assert!(err.contains("expired"), "{err}");
    let r =
        s.anon().get(s.url("/service/token?service=berth")).basic_auth(&ename, Some(&esecret)).send().await.unwrap();
    let body = expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert!(
        body["errors"][0]["message"].as_str().unwrap().starts_with(&format!("robot account {ename} expired at 20"))
    );
    audit(&s, "operation=login", |v| v.iter().any(|e| e["username"] == ename.as_str() && e["result"] == "failure"))
        .await;

    // A system robot with access to every project ("*"), used with skopeo --creds.
    let body = json!({"name": "mirror", "level": "system", "duration": -1, "permissions": [
        {"kind": "project", "namespace": "*", "access": [{"resource": "repository", "action": "pull"}]}]});
    let r = s.api(Method::POST, "/robots", Some(body.clone())).await;
    assert_eq!(r.status(), 201);
    let sys: Value = r.json().await.unwrap();
    assert_eq!(sys["name"], "robot$mirror");
    let creds = format!("robot$mirror:{}", sys["secret"].as_str().unwrap());
    let empty = s.auth_file_for(None);
    run_ok(
        skopeo(&empty)
            .args(["inspect", "--raw", "--tls-verify=false", "--creds", &creds])
            .arg(format!("docker://{host}/rb/app:v1")),
    )
    .await;
    // a project admin cannot make system robots
    s.user("padmin", "Padmin-Pw-1").await;
    s.member("rb", "padmin", 1).await;
    let r = client_as("padmin", "Padmin-Pw-1").post(s.url("/api/v2.0/robots")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // ... but can make robots of their project
    let r = client_as("padmin", "Padmin-Pw-1")
        .post(s.url("/api/v2.0/robots"))
        .json(&json!({"name": "mine", "level": "project", "duration": 7, "permissions": [
            {"kind": "project", "namespace": "rb", "access": [{"resource": "repository", "action": "pull"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // A push robot, scoped to its project, with tag creation.
    let (_, pname, psecret) = s.robot("rb", "ci", &[("repository", "pull"), ("repository", "push")], 30).await;
    let pfile = tmp.path().join("ci.json");
    std::fs::write(&pfile, auth_json(&host, &pname, &psecret)).unwrap();
    push(&pfile, &layout, &format!("{host}/rb/app:ci")).await.unwrap();
    s.project("other", false).await;
    let err = push(&pfile, &layout, &format!("{host}/other/app:ci")).await.unwrap_err();
    // Another project looks to the robot exactly like a missing one.
    assert!(err.contains("other") && err.contains("does not exist or you may not access it"), "{err}");
    s.stop().await;
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn base64_std_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_policy_overrides_a_role_and_an_allow_grants_without_one() {
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    let host = s.host();
    s.project("pol", false).await;
    s.user("dev", DEV_PW).await;
    s.user("outsider", OUT_PW).await;
    s.member("pol", "dev", 2).await;
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    let dev = s.auth_file_for(Some(("dev", DEV_PW)));
    let outsider = s.auth_file_for(Some(("outsider", OUT_PW)));
    push(&s.auth_file(), &layout, &format!("{host}/pol/app:v1")).await.unwrap();
    push(&dev, &layout, &format!("{host}/pol/app:v2")).await.unwrap();

    let deny = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "freeze-dev", "Effect": "Deny", "Principal": {"AWS": ["arn:aws:iam::123456789012:user/dev"]},
         "Action": ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"]},
        {"Sid": "outsider-reads", "Effect": "Allow", "Principal": {"AWS": "outsider"},
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]}]});
    let r = s.api(Method::PUT, "/projects/pol/repositories/app/policy", Some(deny.clone())).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let got: Value = s.api(Method::GET, "/projects/pol/repositories/app/policy", None).await.json().await.unwrap();
    assert_eq!(got, deny);

    let err = push(&dev, &layout, &format!("{host}/pol/app:v3")).await.unwrap_err();
    assert!(err.contains("denied"), "{err}");
    inspect(&dev, &format!("{host}/pol/app:v1")).await.unwrap();
    let r = client_as("dev", DEV_PW).post(s.url("/v2/pol/app/blobs/uploads/")).send().await.unwrap();
    let body = expect_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("freeze-dev"), "{body}");
    // the Deny is per repository: dev still pushes elsewhere in the project
    push(&dev, &layout, &format!("{host}/pol/other:v1")).await.unwrap();
    // an Allow lets a non-member pull this repository, and only this one
    inspect(&outsider, &format!("{host}/pol/app:v1")).await.unwrap();
    assert!(inspect(&outsider, &format!("{host}/pol/other:v1")).await.is_err());
    assert!(push(&outsider, &layout, &format!("{host}/pol/app:x")).await.is_err());

    // Invalid documents are refused with the field named; the stored policy is unchanged.
    for (doc, field) in [
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Permit", "Principal": "*", "Action": "ecr:*"}]}),
            "Statement[0].Effect",
        ),
        (json!({"Statement": []}), "Version"),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": ["ecr:PutImage", "s3:GetObject"]}]}),
            "Statement[0].Action[1]",
        ),
        (
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Condition": {}}]}),
            "Statement[0].Condition",
        ),
    ] {
        let r = s.api(Method::PUT, "/projects/pol/repositories/app/policy", Some(doc)).await;
        assert_eq!(r.status(), 400);
        let b: Value = r.json().await.unwrap();
        assert!(b["errors"][0]["message"].as_str().unwrap().contains(field), "{field}: {b}");
    }
    let got: Value = s.api(Method::GET, "/projects/pol/repositories/app/policy", None).await.json().await.unwrap();
    assert_eq!(got, deny);
    // a developer may not change policies
    let r =
        client_as("dev", DEV_PW).delete(s.url("/api/v2.0/projects/pol/repositories/app/policy")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    audit(&s, "resource_type=policy", |v| v.iter().any(|e| e["operation"] == "update" && e["resource"] == "pol/app"))
        .await;

    assert_eq!(s.api(Method::DELETE, "/projects/pol/repositories/app/policy", None).await.status(), 200);
    assert_eq!(s.api(Method::GET, "/projects/pol/repositories/app/policy", None).await.status(), 404);
    push(&dev, &layout, &format!("{host}/pol/app:v3")).await.unwrap();
    s.stop().await;
}

/// The audit log records operations, not noise: a token request is not a login (clients ask
/// for one per pull), and identical pulls within an hour are one entry with a count, also
/// across the event writer's batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_are_not_logins_and_repeated_pulls_are_one_entry() {
    let s = TestServer::start().await;
    s.project("noise", false).await;
    s.user("ci", "Ci-Passw0rd-1").await;
    s.member("noise", "ci", 2).await;
    s.push_image("noise/app", "v1").await;
    let ci = client_as("ci", "Ci-Passw0rd-1");
    for _ in 0..3 {
        let r = ci.get(s.url("/service/token?service=berth&scope=repository:noise/app:pull")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = client_as("ci", "wrong").get(s.url("/service/token?service=berth")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for round in 0..2 {
        for _ in 0..3 {
            assert_eq!(ci.get(s.url("/v2/noise/app/manifests/v1")).send().await.unwrap().status(), StatusCode::OK);
        }
        if round == 0 {
            // Past the writer's one-second batch: the second round is another event.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }
    let pulls = audit(&s, "username=ci", |v| {
        v.iter().filter(|e| e["operation"] == "pull").map(|e| e["repeats"].as_i64().unwrap()).sum::<i64>() == 6
    })
    .await;
    let entries: Vec<&Value> = pulls.iter().filter(|e| e["operation"] == "pull").collect();
    assert_eq!(entries.len(), 1, "six identical pulls are one entry: {entries:?}");
    assert_eq!(entries[0]["resource"], "noise/app:v1");
    let logins: Vec<&Value> = pulls.iter().filter(|e| e["operation"] == "login").collect();
    assert_eq!(logins.len(), 1, "only the failed attempt: {logins:?}");
    assert_eq!(logins[0]["result"], "failure");
}
