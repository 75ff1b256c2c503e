//! Attacks on the access layer: tokens used on other repositories, tampered, expired,
//! wrong-audience and unsigned tokens, scope escalation, path tricks in names, brute-force
//! logins, and secrets that must never reach a log file or the database in clear.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use berth_auth::token::{AccessEntry, Claims, KeyRing, typ};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const ALICE_PW: &str = "Alice-Pw-123";
const GARY_PW: &str = "Gary-Pw-123";

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn payload(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

async fn token(s: &TestServer, user: &str, pw: &str, query: &str) -> Value {
    let r = s.anon().get(s.url(&format!("/service/token?{query}"))).basic_auth(user, Some(pw)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    r.json().await.unwrap()
}

async fn with_bearer(s: &TestServer, method: Method, path: &str, t: &str) -> reqwest::Response {
    s.anon().request(method, s.url(path)).bearer_auth(t).send().await.unwrap()
}

/// A raw HTTP/1.1 request, so paths reach the server exactly as written (no client
/// normalises `..` away). Returns the status and body.
fn raw(host: &str, method: &str, path: &str, auth: &str) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(host).unwrap();
    write!(c, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_cannot_be_stretched_forged_or_replayed_elsewhere() {
    let s = TestServer::start().await;
    s.project("a", false).await;
    s.project("b", false).await;
    s.user("alice", ALICE_PW).await;
    s.user("gary", GARY_PW).await;
    s.member("a", "alice", 2).await;
    s.member("b", "alice", 2).await;
    s.member("a", "gary", 3).await;
    s.push_image("a/app", "v1").await;
    s.push_image("b/app", "v1").await;

    // A token for repository A does not open repository B, even for a user allowed both.
    let t = token(&s, "alice", ALICE_PW, "service=berth&scope=repository:a/app:pull").await;
    let tok = t["token"].as_str().unwrap().to_owned();
    assert_eq!(t["access_token"], t["token"]);
    assert_eq!(t["expires_in"], 300);
    assert!(t.get("refresh_token").is_none());
    assert_eq!(with_bearer(&s, Method::GET, "/v2/a/app/manifests/v1", &tok).await.status(), 200);
    let r = with_bearer(&s, Method::GET, "/v2/b/app/manifests/v1", &tok).await;
    let challenge = header(&r, "www-authenticate").unwrap().to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("repository:b/app:pull"),
        "{challenge}"
    );
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // nor does a pull token push
    let r = with_bearer(&s, Method::POST, "/v2/a/app/blobs/uploads/", &tok).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // Scope escalation: a guest asking for everything gets pull only.
    let t =
        token(&s, "gary", GARY_PW, "service=berth&scope=repository:a/app:pull,push,delete&scope=repository:b/app:*")
            .await;
    let p = payload(t["token"].as_str().unwrap());
    assert_eq!(p["access"], json!([{"type": "repository", "name": "a/app", "actions": ["pull"]}]), "{p}");
    assert_eq!(p["sub"], "gary");
    assert_eq!(p["aud"], "berth");
    let r = with_bearer(&s, Method::DELETE, "/v2/a/app/manifests/v1", t["token"].as_str().unwrap()).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(s.get("/v2/a/app/manifests/v1").await.status(), 200, "nothing was deleted");

    // Several scopes: repeated parameters, or one space-separated value.
    for q in [
        "service=berth&scope=repository:a/app:pull&scope=repository:b/app:pull",
        "service=berth&scope=repository:a/app:pull%20repository:b/app:pull",
    ] {
        let p = payload(token(&s, "alice", ALICE_PW, q).await["token"].as_str().unwrap());
        let names: Vec<_> = p["access"].as_array().unwrap().iter().map(|a| a["name"].clone()).collect();
        assert_eq!(names, vec![json!("a/app"), json!("b/app")], "{q}");
    }
    // Names with path tricks are never granted.
    for bad in
        ["repository:../etc:pull", "repository:a/../b/app:pull", "repository:/a/app:pull", "repository:A/app:pull"]
    {
        let p = payload(
            token(&s, "alice", ALICE_PW, &format!("service=berth&scope={bad}")).await["token"].as_str().unwrap(),
        );
        assert!(p.get("access").is_none_or(|a| a.as_array().unwrap().is_empty()), "{bad}: {p}");
    }
    // A token for another service is not issued.
    let r = s
        .anon()
        .get(s.url("/service/token?service=elsewhere"))
        .basic_auth("alice", Some(ALICE_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Tampered: the payload changed, the signature kept.
    let parts: Vec<&str> = tok.split('.').collect();
    let mut forged = payload(&tok);
    forged["access"][0]["name"] = json!("b/app");
    let tampered = format!("{}.{}.{}", parts[0], b64url(forged.to_string().as_bytes()), parts[2]);
    let r = with_bearer(&s, Method::GET, "/v2/b/app/manifests/v1", &tampered).await;
    assert!(header(&r, "www-authenticate").unwrap().contains("error=\"invalid_token\""));
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // Unsigned (alg none).
    let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), b64url(forged.to_string().as_bytes()));
    expect_error(
        with_bearer(&s, Method::GET, "/v2/b/app/manifests/v1", &none).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    // Garbage.
    expect_error(
        with_bearer(&s, Method::GET, "/v2/a/app/manifests/v1", "x.y.z").await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;

    // Tokens signed with the server's real key, each wrong in one way: expired, for another
    // audience, from another issuer, of another type. A correct one is the control.
    use berth_meta::AccessStore;
    let meta = berth_meta::SqlMetaStore::open_sqlite(s.data_dir().join("meta.db")).await.unwrap();
    let ring = KeyRing::new(&meta.signing_keys().await.unwrap(), "berth-token-issuer").unwrap();
    let now = berth_auth::now_ms() / 1000;
    let claims = |exp: i64, aud: &str, typ_: &str| Claims {
        iss: "berth-token-issuer".into(),
        sub: "alice".into(),
        aud: aud.into(),
        exp,
        nbf: now - 10,
        iat: now - 10,
        jti: "t".into(),
        typ: typ_.into(),
        kind: "user".into(),
        access: vec![AccessEntry { kind: "repository".into(), name: "a/app".into(), actions: vec!["pull".into()] }],
        data: None,
    };
    let good = ring.sign(&claims(now + 300, "berth", typ::ACCESS)).unwrap();
    assert_eq!(with_bearer(&s, Method::GET, "/v2/a/app/manifests/v1", &good).await.status(), 200, "control");
    let expired = ring.sign(&claims(now - 60, "berth", typ::ACCESS)).unwrap();
    let r = with_bearer(&s, Method::GET, "/v2/a/app/manifests/v1", &expired).await;
    let body = expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("expired"), "{body}");
    let other_aud = ring.sign(&claims(now + 300, "another-registry", typ::ACCESS)).unwrap();
    expect_error(
        with_bearer(&s, Method::GET, "/v2/a/app/manifests/v1", &other_aud).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    let other_iss = KeyRing::new(&meta.signing_keys().await.unwrap(), "someone-else").unwrap();
    let mut c = claims(now + 300, "berth", typ::ACCESS);
    c.iss = "someone-else".into();
    let t = other_iss.sign(&c).unwrap();
    expect_error(
        with_bearer(&s, Method::GET, "/v2/a/app/manifests/v1", &t).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
    let refresh_as_access = ring.sign(&claims(now + 300, "berth", typ::REFRESH)).unwrap();
    expect_error(
        with_bearer(&s, Method::GET, "/v2/a/app/manifests/v1", &refresh_as_access).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;

    // Refresh tokens: offline_token=true on GET; OAuth2 password and refresh grants on POST.
    let t = token(&s, "alice", ALICE_PW, "service=berth&scope=repository:a/app:pull&offline_token=true").await;
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    let r = s
        .anon()
        .post(s.url("/service/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", "berth"),
            ("scope", "repository:b/app:pull"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scope"], "repository:b/app:pull");
    assert_eq!(
        with_bearer(&s, Method::GET, "/v2/b/app/manifests/v1", v["access_token"].as_str().unwrap()).await.status(),
        200
    );
    let r = s
        .anon()
        .post(s.url("/service/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE_PW),
            ("service", "berth"),
            ("scope", "repository:a/app:pull,push"),
            ("client_id", "test"),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["refresh_token"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert_eq!(v["scope"], "repository:a/app:pull,push");
    // an access token is no refresh token
    let r = s
        .anon()
        .post(s.url("/service/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", tok.as_str()), ("service", "berth")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = s.anon().post(s.url("/service/token")).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // A password change voids refresh tokens issued before it.
    let alice: Vec<Value> = s.api(Method::GET, "/users?username=alice", None).await.json().await.unwrap();
    let aid = alice[0]["user_id"].as_i64().unwrap();
    let r = s.api(Method::PUT, &format!("/users/{aid}/password"), Some(json!({"new_password": "Alice-Pw-456"}))).await;
    assert_eq!(r.status(), 200);
    let r = s
        .anon()
        .post(s.url("/service/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("service", "berth")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the refresh token outlived the password");

    // Path tricks in names, as raw requests: refused as invalid names, never resolved.
    let host = s.host();
    let admin = basic(ADMIN, ADMIN_PASSWORD);
    for path in [
        "/v2/a/../b/app/manifests/v1",
        "/v2/a/%2e%2e/b/app/manifests/v1",
        "/v2/%2e%2e/etc/tags/list",
        "/v2//etc/passwd/manifests/v1",
        "/v2/a%2Fapp/tags/list",
        "/v2/a/app/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd",
    ] {
        let (status, body) = raw(&host, "GET", path, &admin);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("NAME_INVALID") || body.contains("DIGEST_INVALID"), "{path}: {body}");
    }
    let (status, _) = raw(&host, "GET", "/api/v2.0/projects/a/repositories/..%252F..%252Fb%252Fapp/artifacts", &admin);
    assert_eq!(status, 400);
    let (status, _) = raw(&host, "GET", "/api/v2.0/projects/a/repositories/%2Fetc/artifacts", &admin);
    assert_eq!(status, 400);
    s.stop().await;
}

/// A cross-repository mount's challenge names the `from` repository's pull scope with the
/// target's, and one token request granting both (as one space-separated `scope`, spaces sent
/// as `+`, or as several `scope` parameters) lets the mount happen; a token for the target
/// alone gets an upload session, never the other repository's blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_challenge_asks_for_both_repositories_and_one_token_grants_them() {
    let s = TestServer::start().await;
    s.project("a", false).await;
    s.user("alice", ALICE_PW).await;
    s.member("a", "alice", 2).await;
    let blob = random_bytes(1000);
    let digest = s.push_blob("a/src", &blob).await;
    let path = format!("/v2/a/dst/blobs/uploads/?mount={digest}&from=a/src");
    let r = s.anon().post(s.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&r, "www-authenticate").unwrap().to_owned();
    let scope = challenge.split("scope=\"").nth(1).and_then(|x| x.split('"').next()).unwrap();
    assert_eq!(scope, "repository:a/src:pull repository:a/dst:pull,push", "{challenge}");
    for query in [
        format!("service=berth&scope={}", scope.replace(' ', "+")),
        "service=berth&scope=repository:a/src:pull&scope=repository:a/dst:pull,push".to_owned(),
    ] {
        let t = token(&s, "alice", ALICE_PW, &query).await;
        let t = t["token"].as_str().unwrap();
        let access = &payload(t)["access"];
        let granted: Vec<String> = access
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}:{}", a["name"].as_str().unwrap(), a["actions"].as_array().unwrap().len()))
            .collect();
        assert_eq!(granted, ["a/src:1", "a/dst:2"], "{query}: {access}");
        let r = with_bearer(&s, Method::POST, &path, t).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{query}");
    }
    // A token for the target alone, whose holder may read `from`: asked to get one with
    // both (as Distribution does), the challenge naming both.
    let t = token(&s, "alice", ALICE_PW, "service=berth&scope=repository:a/other:pull,push").await;
    let path = format!("/v2/a/other/blobs/uploads/?mount={digest}&from=a/src");
    let r = with_bearer(&s, Method::POST, &path, t["token"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&r, "www-authenticate").unwrap();
    assert!(
        challenge.contains("scope=\"repository:a/src:pull repository:a/other:pull,push\"")
            && challenge.contains("insufficient_scope"),
        "{challenge}"
    );
    // …and from a repository the holder cannot read: an ordinary upload session (202).
    s.project("secret", false).await;
    let hidden = s.push_blob("secret/app", &random_bytes(1000)).await;
    let path = format!("/v2/a/other/blobs/uploads/?mount={hidden}&from=secret/app");
    let r = with_bearer(&s, Method::POST, &path, t["token"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(location(&r).starts_with("/v2/a/other/blobs/uploads/"), "{}", location(&r));
    // Without `from` (automatic discovery): from a repository the caller may pull, never
    // from a project it cannot read.
    let t = token(&s, "alice", ALICE_PW, "service=berth&scope=repository:a/auto:pull,push").await;
    let t = t["token"].as_str().unwrap();
    let r = with_bearer(&s, Method::POST, &format!("/v2/a/auto/blobs/uploads/?mount={hidden}"), t).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "alice may not read secret/app");
    let r = with_bearer(&s, Method::POST, &format!("/v2/a/auto/blobs/uploads/?mount={digest}"), t).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "the token does not grant a/src");
    let r = client_as("alice", ALICE_PW).post(s.url(&format!("/v2/a/auto/blobs/uploads/?mount={digest}")));
    assert_eq!(r.send().await.unwrap().status(), StatusCode::CREATED, "alice herself may read a/src");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_logins_are_locked_out_and_audited() {
    let s = TestServer::start_with(|c| c.auth.login_max_failures = 3).await;
    s.user("target", "Target-Pw-1").await;
    for i in 0..3 {
        let r = s
            .anon()
            .get(s.url("/service/token?service=berth"))
            .basic_auth("target", Some(format!("guess{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    // Locked now: even the right password is refused, with Retry-After, on every entry point.
    let r = s
        .anon()
        .get(s.url("/service/token?service=berth"))
        .basic_auth("target", Some("Target-Pw-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&r, "retry-after").is_some_and(|v| v.parse::<u64>().unwrap() > 0));
    let r = client_as("target", "Target-Pw-1").get(s.url("/v2/")).send().await.unwrap();
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    let r = client_as("target", "Target-Pw-1").get(s.url("/api/v2.0/users/current")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // other accounts are unaffected
    assert_eq!(s.get("/v2/").await.status(), 200);
    // The lock holds for this address only: the account's owner elsewhere (another loopback
    // address here) logs in, so a stranger cannot lock anybody out.
    let elsewhere = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap()
        .get(s.url("/v2/"))
        .basic_auth("target", Some("Target-Pw-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 200, "another address is not locked");
    // Empty Basic credentials (`Basic Og==`, which clients send) are anonymous, never a failure.
    for _ in 0..10 {
        let r = s.anon().get(s.url("/v2/")).header("authorization", "Basic Og==").send().await.unwrap();
        let body = expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        assert_eq!(body["errors"][0]["message"], "authentication required");
        let r = s
            .anon()
            .get(s.url("/service/token?service=berth"))
            .header("authorization", "Basic Og==")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "an anonymous token");
    }
    // Locks and their count show in the metrics; a client cannot invent label values.
    let r = s.anon().request(Method::from_bytes(b"BREW").unwrap(), s.url("/v2/")).send().await.unwrap();
    assert!(r.status().is_client_error());
    let metrics = s.anon().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("berth_login_lockouts ") && !l.ends_with(" 0")), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("berth_login_locked ") && !l.ends_with(" 0")), "{metrics}");
    assert!(!metrics.contains("BREW") && metrics.contains("method=\"other\""), "{metrics}");
    // An administrator lifts the lock (on every replica; logged).
    let users: Vec<Value> = s.api(Method::GET, "/users?username=target", None).await.json().await.unwrap();
    let id = users[0]["user_id"].as_i64().unwrap();
    let r = client_as("target", "Target-Pw-1")
        .delete(s.url(&format!("/api/v2.0/users/{id}/login_locks")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "still locked, and not an administrator anyway");
    let r = s.api(Method::DELETE, &format!("/users/{id}/login_locks"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["locks_lifted_here"], 1);
    assert_eq!(client_as("target", "Target-Pw-1").get(s.url("/v2/")).send().await.unwrap().status(), 200);
    crate::access::audit(&s, "operation=update", |v| {
        v.iter().any(|e| e["resource"] == "target (login locks lifted)" && e["username"] == "admin")
    })
    .await;
    // Identical failures from one place are one entry with a count.
    let failures = |v: &[Value]| -> u64 {
        v.iter()
            .filter(|e| e["operation"] == "login" && e["result"] == "failure")
            .map(|e| e["repeats"].as_u64().unwrap())
            .sum()
    };
    let log = crate::access::audit(&s, "username=target", |v| {
        failures(v) >= 4 && v.iter().any(|e| e["detail"].as_str().is_some_and(|d| d.contains("locked")))
    })
    .await;
    assert!(log.iter().all(|e| e["client_ip"] == "127.0.0.1"), "{log:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log_and_are_stored_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("berth.log");
    let admin_pw = "Log-Test-Admin-9";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
        .arg(&data)
        .env("BERTH_ADMIN_PASSWORD", admin_pw)
        .env("BERTH_LOG_LEVEL", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let lp = log_path.clone();
    let copier = std::thread::spawn(move || {
        let mut f = std::fs::File::create(lp).unwrap();
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            writeln!(f, "{line}").unwrap();
            if !sent
                && let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "berth is serving"
            {
                tx.send(v["addr"].as_str().unwrap().to_owned()).unwrap();
                sent = true;
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let base = format!("http://{addr}");
    let admin = client_as(ADMIN, admin_pw);
    let user_pw = "Very-Secret-Pw-42";
    let r = admin
        .post(format!("{base}/api/v2.0/users"))
        .json(&json!({"username": "carol", "password": user_pw}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = admin.post(format!("{base}/api/v2.0/projects")).json(&json!({"project_name": "sec"})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = admin
        .post(format!("{base}/api/v2.0/robots"))
        .json(&json!({"name": "bot", "level": "project", "duration": -1,
                      "permissions": [{"kind": "project", "namespace": "sec", "access": [{"resource": "repository", "action": "pull"}]}]}))
        .send()
        .await
        .unwrap();
    let robot: Value = r.json().await.unwrap();
    let robot_secret = robot["secret"].as_str().unwrap().to_owned();
    let carol: Vec<Value> =
        admin.get(format!("{base}/api/v2.0/users?username=carol")).send().await.unwrap().json().await.unwrap();
    let cid = carol[0]["user_id"].as_i64().unwrap();
    let cli: Value = client_as("carol", user_pw)
        .put(format!("{base}/api/v2.0/users/{cid}/cli_secret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cli_secret = cli["secret"].as_str().unwrap().to_owned();
    // Use every credential: tokens, Basic on registry requests, a wrong password.
    let t: Value = reqwest::Client::new()
        .get(format!("{base}/service/token?service=berth&scope=repository:sec/app:pull&offline_token=true"))
        .basic_auth("robot$sec+bot", Some(&robot_secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = t["token"].as_str().unwrap().to_owned();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    let r =
        reqwest::Client::new().get(format!("{base}/v2/sec/app/tags/list")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 404, "authorized; the repository just does not exist");
    assert_eq!(client_as("carol", &cli_secret).get(format!("{base}/v2/")).send().await.unwrap().status(), 200);
    let wrong = "Wrong-Guess-77";
    assert_eq!(client_as("carol", wrong).get(format!("{base}/v2/")).send().await.unwrap().status(), 401);
    eventually("the failed login in the log", async || {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if log.contains("failed login") { Ok(()) } else { Err(format!("{} lines", log.lines().count())) }
    })
    .await;
    // A moment more for whatever the server logs after it: no secret may be in that either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    copier.join().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("failed login"), "the failed login is logged (without the password)");
    let basic_carol = basic("carol", user_pw);
    for (what, secret) in [
        ("admin password", admin_pw),
        ("user password", user_pw),
        ("robot secret", robot_secret.as_str()),
        ("CLI secret", cli_secret.as_str()),
        ("wrong password", wrong),
        ("access token", access.as_str()),
        ("refresh token", refresh.as_str()),
        ("Basic header", basic_carol.trim_start_matches("Basic ")),
    ] {
        assert!(!log.contains(secret), "the {what} appears in the log");
    }
    // At rest: argon2id for passwords, SHA-256 for generated secrets; no secret in the file.
    use berth_meta::AccessStore;
    let meta = berth_meta::SqlMetaStore::open_sqlite(data.join("meta.db")).await.unwrap();
    let u = meta.user_by_name("carol").await.unwrap().unwrap();
    assert!(u.password_hash.as_deref().unwrap().starts_with("$argon2id$"));
    assert!(u.cli_secret_hash.as_deref().unwrap().starts_with("sha256:"));
    let r = meta.robot_by_name("robot$sec+bot").await.unwrap().unwrap();
    assert!(r.secret_hash.starts_with("sha256:") && !r.secret_hash.contains(&robot_secret));
    drop(meta);
    let mut db = Vec::new();
    for f in ["meta.db", "meta.db-wal"] {
        if let Ok(b) = std::fs::read(data.join(f)) {
            db.extend(b);
        }
    }
    let db = String::from_utf8_lossy(&db);
    for secret in [admin_pw, user_pw, robot_secret.as_str(), cli_secret.as_str()] {
        assert!(!db.contains(secret), "a secret is stored in clear");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_with_repeated_keys_is_refused_everywhere() {
    let s = TestServer::start().await;
    s.push_image("dup/app", "v1").await;
    // A policy two parsers would read differently (Allow to one, Deny to the other).
    let doc = r#"{"Version": "2012-10-17", "Statement": [{"Sid": "x", "Effect": "Deny", "Effect": "Allow",
                 "Principal": "*", "Action": "ecr:BatchGetImage"}]}"#;
    let r = s
        .client
        .put(s.url("/api/v2.0/projects/dup/repositories/app/policy"))
        .header("content-type", "application/json")
        .body(doc)
        .send()
        .await
        .unwrap();
    let body = expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(
        body["errors"][0]["message"].as_str().unwrap().starts_with("duplicate key \"Statement[0].Effect\""),
        "{body}"
    );
    assert_eq!(s.api(Method::GET, "/projects/dup/repositories/app/policy", None).await.status(), 404, "nothing stored");
    // The same for any JSON body, e.g. a project's settings.
    let r = s
        .client
        .post(s.url("/api/v2.0/projects"))
        .header("content-type", "application/json")
        .body(r#"{"project_name": "a", "project_name": "b"}"#)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    // A manifest with a repeated key is not stored.
    let manifest = s.upload_image_blobs("dup/app", 100).await;
    let text = String::from_utf8(manifest).unwrap();
    // (A key the registry does not read: serde would otherwise ignore the repetition.)
    let twice = text.replacen('{', r#"{"io.example": "a", "io.example": "b","#, 1);
    let r = s.put_manifest("dup/app", "v2", OCI_MANIFEST, twice.as_bytes()).await;
    let body = expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("duplicate key \"io.example\""), "{body}");
    assert_eq!(s.get("/v2/dup/app/manifests/v2").await.status(), 404);
}

/// `VmRSS` or `VmHWM` of a process, in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_cannot_exhaust_memory_with_password_hashing() {
    let tmp = tempfile::tempdir().unwrap();
    let env = [("BERTH_AUTH_LOGIN_MAX_FAILURES".to_owned(), "1000000".to_owned())];
    let (mut child, base) = crate::crash::spawn_berth_with(&tmp.path().join("data"), None, &env);
    let pid = child.id();
    let admin = client_as(ADMIN, ADMIN_PASSWORD);
    assert_eq!(admin.get(format!("{base}/v2/")).send().await.unwrap().status(), 200);
    let idle = proc_kib(pid, "VmRSS:");
    // 200 concurrent logins, each with a different wrong password (nothing to cache or share).
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let attempts = (0..200).map(|i| {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let r =
                client.get(format!("{base}/v2/")).basic_auth(ADMIN, Some(format!("wrong-{i}"))).send().await.unwrap();
            (r.status(), r.headers().get("retry-after").is_some())
        })
    });
    let mut refused_busy = 0;
    for a in attempts {
        let (status, retry_after) = a.await.unwrap();
        assert!(status == 401 || status == 429, "{status}");
        if status == 429 {
            assert!(retry_after, "a 429 says when to come back");
            refused_busy += 1;
        }
    }
    let peak = proc_kib(pid, "VmHWM:");
    let grown_mib = peak.saturating_sub(idle) / 1024;
    assert!(grown_mib < 300, "peak RSS grew {grown_mib} MiB above idle ({idle} KiB) under 200 concurrent logins");
    eprintln!("login flood: peak +{grown_mib} MiB, {refused_busy} of 200 refused with 429 while hashing was saturated");
    // The right password still works afterwards.
    assert_eq!(admin.get(format!("{base}/v2/")).send().await.unwrap().status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_and_trickled_uploads_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // This test opens more sockets than the default soft limit of 1024.
    let mut lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    lim.current = lim.maximum;
    rustix::process::setrlimit(rustix::process::Resource::Nofile, lim).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let env = [("BERTH_LIMITS_HEADER_READ_TIMEOUT".to_owned(), "2s".to_owned())];
    let (mut child, base) = crate::crash::spawn_berth_with(&tmp.path().join("data"), None, &env);
    let addr = base.trim_start_matches("http://").to_owned();
    // The server raised its own open-files limit to the hard one.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let files =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().collect::<Vec<_>>();
    assert_eq!(files[3], files[4], "soft = hard: {files:?}");

    // 1,100 clients that send half a request head and then a byte now and then.
    let mut loris = Vec::new();
    for _ in 0..1100 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        loris.push(c);
    }
    let dribble = tokio::spawn(async move {
        let mut closed = 0;
        for _ in 0..8 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            closed = 0;
            for c in &mut loris {
                if c.write_all(b"a").await.is_err() {
                    closed += 1;
                }
            }
        }
        // Whatever is still "open" on our side must read EOF: the server hung up.
        for c in &mut loris {
            let mut b = [0u8; 1];
            if matches!(
                tokio::time::timeout(std::time::Duration::from_millis(50), c.read(&mut b)).await,
                Ok(Ok(0) | Err(_))
            ) {
                closed += 1;
            }
        }
        closed
    });
    // Meanwhile a normal client pushes and pulls.
    let http = client_as(ADMIN, ADMIN_PASSWORD);
    let data = random_bytes(256 * 1024);
    let digest = sha256(&data);
    let r = http
        .post(format!("{base}/v2/loris/app/blobs/uploads/?digest={digest}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "a push during the attack");
    let got = http.get(format!("{base}/v2/loris/app/blobs/{digest}")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256(&got), digest, "a pull during the attack");
    let closed = dribble.await.unwrap();
    assert!(closed >= 1000, "the server closed {closed} of 1,100 slow connections within 4 s");

    // An upload trickling a byte every 300 ms (3 B/s, under the 1 KiB/s minimum) is cut off
    // after one window, keeping what arrived.
    let r = http.post(format!("{base}/v2/loris/app/blobs/uploads/")).send().await.unwrap();
    let loc = location(&r);
    let body = futures::stream::unfold(0, |i| async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        (i < 100).then(|| (Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")), i + 1))
    });
    let r = http
        .patch(format!("{base}{loc}"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let e = expect_error(r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("slower than the registry's minimum"), "{e}");
    let r = http.get(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let kept: u64 = header(&r, "range").unwrap().rsplit('-').next().unwrap().parse::<u64>().unwrap() + 1;
    assert!((3..=10).contains(&kept), "the bytes that arrived are kept: {kept}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_limit_a_client_gets_503_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    // Idle connections are not closed for want of a request head during the test.
    let env = [
        ("BERTH_LIMITS_MAX_CONNECTIONS".to_owned(), "20".to_owned()),
        ("BERTH_LIMITS_HEADER_READ_TIMEOUT".to_owned(), "10m".to_owned()),
    ];
    let (mut child, base) = crate::crash::spawn_berth_with(&tmp.path().join("data"), None, &env);
    let addr = base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // Once the server has taken all twenty, the next client is refused. The server admits
    // connections concurrently, so a probe may win a slot over an idle one, which is then
    // answered 503 and closed: such an idle connection is replaced before the next probe.
    let r = eventually("a 503 once the twenty connections are taken", async || {
        for conn in idle.iter_mut() {
            let mut buf = [0u8; 512];
            // Readable (an answer or end of stream) only if the server refused it.
            if !matches!(conn.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                *conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
            }
        }
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), reqwest::get(format!("{base}/healthz")))
            .await
            .expect("answered, not hung")
            .unwrap();
        if r.status() == 503 { Ok(r) } else { Err(r.status()) }
    })
    .await;
    assert_eq!(header(&r, "retry-after"), Some("1"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    drop(idle);
    eventually("slots come back", async || {
        let st = reqwest::get(format!("{base}/healthz")).await.unwrap().status();
        if st == 200 { Ok(()) } else { Err(st) }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_upload_sessions_are_capped_per_repository_and_per_account() {
    let s = TestServer::start_with(|c| {
        c.max_uploads_per_repository = 3;
        c.max_uploads_per_account = 5;
    })
    .await;
    let start = |c: reqwest::Client, repo: &'static str| {
        let url = s.url(&format!("/v2/{repo}/blobs/uploads/"));
        async move { c.post(url).send().await.unwrap() }
    };
    let mut open = Vec::new();
    for _ in 0..3 {
        let r = start(s.client.clone(), "caps/a").await;
        assert_eq!(r.status(), 202);
        open.push(location(&r));
    }
    let body =
        expect_error(start(s.client.clone(), "caps/a").await, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("this repository has too many open upload sessions (3)"),
        "{body}"
    );
    for _ in 0..2 {
        assert_eq!(start(s.client.clone(), "caps/b").await.status(), 202);
    }
    let body =
        expect_error(start(s.client.clone(), "caps/c").await, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("this account has too many open upload sessions (5)"),
        "{body}"
    );
    // Another account is not held back by this one's sessions.
    s.user("other", "Other-Pw-123").await;
    s.member("caps", "other", 2).await;
    assert_eq!(start(client_as("other", "Other-Pw-123"), "caps/c").await.status(), 202);
    // Finishing or cancelling frees a slot.
    assert_eq!(s.delete(&open.pop().unwrap()).await.status(), 204);
    assert_eq!(start(s.client.clone(), "caps/a").await.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_pages_never_reveal_names_the_caller_cannot_read() {
    let s = TestServer::start().await;
    for p in ["aa-secret", "bb-secret", "cc-mine", "dd-secret"] {
        s.project(p, false).await;
        for r in ["one", "two"] {
            s.push_image(&format!("{p}/{r}"), "v1").await;
        }
    }
    s.user("reader", "Reader-Pw-123").await;
    s.member("cc-mine", "reader", 3).await;
    let c = client_as("reader", "Reader-Pw-123");
    let mut seen = Vec::new();
    let mut next = Some(s.url("/v2/_catalog?n=1"));
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        assert!(pages < 10, "paging ends");
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let link = header(&r, "link").map(str::to_owned);
        assert!(!link.as_deref().unwrap_or("").contains("secret"), "a hidden name in Link: {link:?}");
        let body: Value = r.json().await.unwrap();
        seen.extend(body["repositories"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()));
        next = link.map(|l| s.url(l.trim_start_matches('<').split('>').next().unwrap()));
    }
    assert_eq!(seen, vec!["cc-mine/one", "cc-mine/two"]);
}

/// The scan overview of an artifact once its scan ended (`Success` or `Error`).
async fn scan_ended(s: &TestServer, repo: &str, reference: &str) -> Value {
    let (p, r) = repo.split_once('/').unwrap();
    let path = format!("/projects/{p}/repositories/{}/artifacts/{reference}", r.replace('/', "%252F"));
    eventually("the scan to end", async || {
        let a = s.api(Method::GET, &path, None).await;
        if a.status() != 200 {
            return Err(format!("{}", a.status()));
        }
        let a: Value = a.json().await.unwrap();
        let o = &a["scan_overview"]["application/vnd.security.vulnerability.report; version=1.1"];
        if matches!(o["scan_status"].as_str(), Some("Success" | "Error")) { Ok(o.clone()) } else { Err(a.to_string()) }
    })
    .await
}

/// Push an image of `copies` times one real (tar.gz) layer, which holds `padding` random
/// bytes beside its `/etc/os-release`; returns nothing.
async fn push_tar_image(s: &TestServer, repo: &str, copies: usize, padding: usize) {
    let layer = targz(&[
        ("etc/os-release".to_owned(), b"ID=debian\nVERSION_ID=12\n".to_vec()),
        ("opt/padding".to_owned(), random_bytes(padding)),
    ]);
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (cd, ld) = (s.push_blob(repo, config).await, s.push_blob(repo, &layer).await);
    let layers: Vec<(String, usize)> = (0..copies).map(|_| (ld.clone(), layer.len())).collect();
    let manifest = image_manifest(&cd, config.len(), &layers, None);
    assert_eq!(s.put_manifest(repo, "v1", OCI_MANIFEST, &manifest).await.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_past_its_budget_fails_with_a_reason_and_repeated_layers_are_read_once() {
    // A budget nothing can meet: the scan fails, saying why, and is not left running. (The
    // layer is 8 MiB: a one-file layer, read from the page cache, could be scanned in 1 ms.)
    let s = TestServer::start_with(|c| c.scan_timeout = Duration::from_millis(1)).await;
    let body = json!({"project_name": "slow", "metadata": {"auto_scan": "true"}});
    assert_eq!(s.api(Method::POST, "/projects", Some(body)).await.status(), 201);
    push_tar_image(&s, "slow/app", 1, 8 << 20).await;
    let o = scan_ended(&s, "slow/app", "v1").await;
    assert_eq!(o["scan_status"], "Error", "{o}");
    assert!(o["error"].as_str().unwrap().contains("took longer than its budget of 1ms (scanner.timeout)"), "{o}");
    s.stop().await;

    // An image listing one layer 500 times scans (each distinct layer is read once).
    let s = TestServer::start().await;
    let body = json!({"project_name": "dups", "metadata": {"auto_scan": "true"}});
    assert_eq!(s.api(Method::POST, "/projects", Some(body)).await.status(), 201);
    push_tar_image(&s, "dups/app", 500, 0).await;
    let o = scan_ended(&s, "dups/app", "v1").await;
    assert_eq!(o["scan_status"], "Success", "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanning_a_120_mib_dpkg_status_stays_under_512_mib() {
    use std::fmt::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, base) = crate::crash::spawn_berth(&tmp.path().join("data"));
    let s = TestServer::attach(&base, Vec::new());
    let body = json!({"project_name": "huge", "metadata": {"auto_scan": "true"}});
    assert_eq!(s.api(Method::POST, "/projects", Some(body)).await.status(), 201);
    let mut status = String::with_capacity(125 << 20);
    for i in 0..450_000 {
        let _ = write!(
            status,
            "Package: pkg{i}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.{i}-1\nDescription: {}\n\n",
            "x".repeat(180)
        );
    }
    assert!(status.len() > 120 << 20);
    let layer = targz(&[
        ("etc/os-release".to_owned(), b"ID=debian\nVERSION_ID=12\n".to_vec()),
        ("var/lib/dpkg/status".to_owned(), status.into_bytes()),
    ]);
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (cd, ld) = (s.push_blob("huge/app", config).await, s.push_blob("huge/app", &layer).await);
    let idle = proc_kib(child.id(), "VmRSS:");
    std::fs::write(format!("/proc/{}/clear_refs", child.id()), "5").unwrap();
    let manifest = image_manifest(&cd, config.len(), &[(ld, layer.len())], None);
    assert_eq!(s.put_manifest("huge/app", "v1", OCI_MANIFEST, &manifest).await.status(), 201);
    let o = scan_ended(&s, "huge/app", "v1").await;
    let grown = proc_kib(child.id(), "VmHWM:").saturating_sub(idle) / 1024;
    assert_eq!(o["scan_status"], "Success", "{o}");
    assert!(grown < 512, "scanning grew peak RSS by {grown} MiB");
    eprintln!("120 MiB dpkg status: peak RSS +{grown} MiB");
    child.kill().unwrap();
    child.wait().unwrap();
}
