//! Workload identity federation: a robot trusts an OIDC issuer (here a stand-in serving
//! discovery and a JWKS, `tests/federation/issuer.py`), and a CI job logs in with the ID token
//! its platform gave it — skopeo pushes with it; expired, wrong-audience, wrong-issuer, too old
//! (replayed), wrongly signed and wrong-subject tokens are each refused, saying why.

use std::process::Stdio;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::support::*;

/// The stand-in issuer: its process and base URL.
async fn issuer() -> (tokio::process::Child, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/federation/issuer.py");
    let mut child =
        Command::new("python3").arg(script).stdout(Stdio::piped()).kill_on_drop(true).spawn().expect("python3");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let base = lines.next_line().await.unwrap().expect("the issuer prints its URL");
    (child, base)
}

async fn mint(base: &str, claims: Value) -> String {
    let r = reqwest::Client::new().post(format!("{base}/mint")).json(&claims).send().await.unwrap();
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_accepts_id_tokens_of_the_issuer_it_trusts() {
    let s = TestServer::start().await;
    s.project("team", false).await;
    let (_issuer, base) = issuer().await;
    let (rid, robot, robot_secret) = s.robot("team", "ci", &[("repository", "pull"), ("repository", "push")], -1).await;
    let path = format!("/robots/{rid}/federation");
    let rule = json!({"issuer": base, "audience": "berth", "subject": "repo:org/app:*",
                      "claims": {"repository_owner": "org"}});
    // Rules are checked: no trust in everything, https issuers (http only on loopback).
    for (bad, says) in [
        (json!({"rules": [{"issuer": base, "audience": "berth", "subject": "*"}]}), "not everything"),
        (json!({"rules": [{"issuer": "http://example.org", "audience": "berth", "subject": "x"}]}), "https://"),
        (json!({"rules": [{"issuer": base, "audience": "berth", "subject": "x", "extra": 1}]}), "extra"),
    ] {
        let r = s.api(Method::PUT, &path, Some(bad)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{text}");
    }
    // The rule, from the command line.
    let berth = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base).env("BERTH_PASSWORD", ADMIN_PASSWORD).args(["robot", "trust", &robot]).args(args);
        c
    };
    let table = run_ok(&mut berth(&[
        "--issuer",
        &base,
        "--audience",
        "berth",
        "--subject",
        "repo:org/app:*",
        "--claim",
        "repository_owner=org",
    ]))
    .await;
    assert!(table.contains(&base) && table.contains("repository_owner=org"), "{table}");
    let got: Value = s.api(Method::GET, &path, None).await.json().await.unwrap();
    assert_eq!(got, json!({"rules": [rule]}));
    // The robot's page shows them.
    let pid = s.api(Method::GET, "/projects/team", None).await.json::<Value>().await.unwrap()["project_id"].clone();
    let web = crate::portal::Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let (st, page) = web.get(&format!("/harbor/projects/{pid}/robot-account/{rid}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("Identity tokens it accepts") && page.contains("repository_owner=org"), "{page}");

    // A CI job's token: skopeo logs in with it and pushes.
    let good = json!({"aud": "berth", "sub": "repo:org/app:ref:refs/heads/main", "repository_owner": "org"});
    let token = mint(&base, good.clone()).await;
    let tmp = tempfile::tempdir().unwrap();
    let auth = tmp.path().join("auth.json");
    let mut login = Command::new("skopeo")
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["login", "--tls-verify=false", "--username", &robot, "--password-stdin", &s.host()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login.stdin.take().unwrap().write_all(token.as_bytes()).await.unwrap();
    let out = login.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let layout = make_oci_layout(tmp.path());
    run_ok(
        Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", &auth)
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:single", layout.display()))
            .arg(format!("docker://{}/team/app:ci", s.host())),
    )
    .await;

    // `berth login-password` for the federated identity: a 12-hour password from the job's token.
    let password = run_ok(
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .env("BERTH_URL", &s.base)
            .env("BERTH_USERNAME", &robot)
            .env("BERTH_PASSWORD", &token)
            .arg("login-password"),
    )
    .await;
    let r = client_as(&robot, password.trim()).get(s.url("/v2/team/app/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);

    // Each wrong token is refused at the token endpoint, saying why.
    let exchange = |password: String| {
        let (s, robot) = (&s, robot.clone());
        async move {
            let url = s.url("/service/token?service=berth&scope=repository:team/app:pull");
            let r = reqwest::Client::new().get(url).basic_auth(&robot, Some(password)).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (st, body) = exchange(token.clone()).await;
    assert_eq!(st, StatusCode::OK, "the same token again, within its life: {body}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let with = |extra: Value| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        c
    };
    for (claims, says) in [
        (with(json!({"exp": now - 600, "iat": now - 900})), "the token has expired"),
        (with(json!({"aud": "someone-else"})), "not for audience"),
        (with(json!({"iss": "http://127.0.0.1:9/other"})), "is not trusted by this robot"),
        (with(json!({"iat": now - 7200})), "tokens older than 60 minutes are refused"),
        (with(json!({"sub": "repo:org/other:ref:refs/heads/main"})), "does not match"),
        (with(json!({"repository_owner": "mallory"})), "claim repository_owner"),
        (with(json!({"_kid": "k2"})), "a key its issuer does not publish"),
        (with(json!({"_kid": "k1"})), "signature does not verify"),
        (with(json!({"_hs256": true})), "shared secret"),
    ] {
        let (st, body) = exchange(mint(&base, claims.clone()).await).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{claims}: {body}");
        assert!(body.contains(says) && body.contains("does not accept this identity token"), "{claims}: {body}");
    }
    // The robot's own secret still works; without the rules, tokens do not.
    assert_eq!(exchange(robot_secret.clone()).await.0, StatusCode::OK);
    run_ok(&mut berth(&["--clear"])).await;
    let (st, body) = exchange(mint(&base, good).await).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    crate::access::audit(&s, "resource_type=robot", |v| v.iter().any(|e| e["operation"] == "update")).await;
    s.stop().await;
}
