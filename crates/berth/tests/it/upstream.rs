//! Berth's registry client (`berth-client`) against a Berth with token auth: the token flow
//! with credentials and anonymously, scopes that grant what the account may, TLS with the
//! server's own CA.

use berth_client::{Client, ClientError, Endpoint};
use bytes::Bytes;
use futures::StreamExt;

use crate::support::*;

fn endpoint(s: &TestServer, creds: Option<(&str, &str)>) -> Endpoint {
    Endpoint {
        url: s.base.clone(),
        credentials: creds.map(|(u, p)| (u.to_owned(), p.to_owned())),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_speaks_berths_token_flow() {
    let s = TestServer::start().await;
    s.project("pub", true).await;
    s.project("priv", false).await;
    let admin = Client::new(&endpoint(&s, Some((ADMIN, ADMIN_PASSWORD)))).unwrap();
    admin.ping().await.unwrap();
    // Push through the token flow (pull,push scope), then read it back.
    let layer = random_bytes(100_000);
    let ld = sha256(&layer);
    let chunks: Vec<Result<Bytes, ClientError>> = layer.chunks(8192).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    admin.push_blob("pub/app", &ld, layer.len() as u64, Box::pin(futures::stream::iter(chunks))).await.unwrap();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = sha256(config);
    let chunks: Vec<Result<Bytes, ClientError>> = vec![Ok(Bytes::from_static(config))];
    admin.push_blob("pub/app", &cd, config.len() as u64, Box::pin(futures::stream::iter(chunks))).await.unwrap();
    let m = image_manifest(&cd, config.len(), &[(ld.clone(), layer.len())], None);
    admin
        .push_manifest("pub/app", "v1", "application/vnd.oci.image.manifest.v1+json", Bytes::from(m.clone()))
        .await
        .unwrap();
    assert_eq!(admin.manifest("pub/app", "v1").await.unwrap().digest, sha256(&m));
    assert!(admin.mount_blob("priv/copy", &ld, "pub/app").await.unwrap(), "mounted with a token for both scopes");
    // Anonymous: pulls a public project's image; is refused a private one and any push.
    let anon = Client::new(&endpoint(&s, None)).unwrap();
    let (size, mut body) = anon.blob("pub/app", &ld).await.unwrap();
    assert_eq!(size, layer.len() as u64);
    let mut got = Vec::new();
    while let Some(c) = body.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, layer);
    let e = anon.manifest("priv/copy", "latest").await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(..) | ClientError::Denied(..) | ClientError::NotFound(_)), "{e}");
    let e = anon
        .push_manifest("pub/app", "v2", "application/vnd.oci.image.manifest.v1+json", Bytes::from(m.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(..) | ClientError::Denied(..)), "{e}");
    // Wrong credentials are named as such.
    let e = Client::new(&endpoint(&s, Some((ADMIN, "wrong")))).unwrap().ping().await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(..)), "{e}");
    let mut tags = admin.tags("pub/app").await.unwrap();
    tags.sort();
    assert_eq!(tags, ["v1"]);
}

/// TLS: a registry with a certificate of its own is refused until its CA is given (or the
/// endpoint is marked insecure, as Harbor's `insecure` registries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_endpoints_own_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let s = TestServer::start_with(|c| c.tls = Some(berth_config::TlsConfig { cert, key })).await;
    let creds = Some((ADMIN, ADMIN_PASSWORD));
    let e = Client::new(&endpoint(&s, creds)).unwrap().ping().await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }) && e.to_string().contains("certificate"), "{e}");
    let with_ca = Endpoint { ca_pem: Some(ck.cert.pem().into_bytes()), ..endpoint(&s, creds) };
    Client::new(&with_ca).unwrap().ping().await.unwrap();
    let insecure = Endpoint { insecure: true, ..endpoint(&s, creds) };
    Client::new(&insecure).unwrap().ping().await.unwrap();
    s.stop().await;
}

/// Registry endpoints in Harbor's shapes: created with a credential that is sealed at rest
/// (never in the database in clear, bound to its URL), masked when shown, pinged (stored or
/// not), changed (the secret kept and re-sealed for a new URL), deleted; for system
/// administrators only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_endpoints_keep_their_credentials_sealed() {
    use reqwest::{Method, StatusCode};
    use serde_json::{Value, json};
    let upstream = berth_test_support::Distribution::start(Some(("mirror", "Upstream-Secret-42")));
    let s = TestServer::start().await;
    let body = json!({"name": "site-b", "type": "docker-registry", "url": upstream.url, "description": "the other site",
        "insecure": false, "credential": {"type": "basic", "access_key": "mirror", "access_secret": "Upstream-Secret-42"}});
    let r = s.api(Method::POST, "/registries", Some(body.clone())).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    let shown: Value = s.api(Method::GET, &format!("/registries/{id}"), None).await.json().await.unwrap();
    assert_eq!(shown["credential"], json!({"type": "basic", "access_key": "mirror", "access_secret": "*****"}));
    assert_eq!((shown["type"].as_str(), shown["status"].as_str()), (Some("docker-registry"), Some("unknown")));
    // The password is nowhere in the database in clear; the key file is the server's alone.
    let db = std::fs::read(s.data_dir().join("meta.db")).unwrap();
    assert!(!db.windows(18).any(|w| w == b"Upstream-Secret-42"), "the secret is sealed");
    let key = s.data_dir().join("secret.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // Ping: the stored one (its status recorded), and one being typed in with wrong credentials.
    assert_eq!(s.api(Method::POST, "/registries/ping", Some(json!({"id": id}))).await.status(), StatusCode::OK);
    let shown: Value = s.api(Method::GET, &format!("/registries/{id}"), None).await.json().await.unwrap();
    assert_eq!(shown["status"], "healthy");
    let wrong =
        json!({"type": "docker-registry", "url": upstream.url, "access_key": "mirror", "access_secret": "nope"});
    let e = expect_error(
        s.api(Method::POST, "/registries/ping", Some(wrong)).await,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("refused the credentials"), "{e}");
    // Names are unique; types and URLs are checked.
    expect_error(s.api(Method::POST, "/registries", Some(body.clone())).await, StatusCode::CONFLICT, "CONFLICT").await;
    let mut bad = body.clone();
    bad["name"] = json!("x");
    bad["type"] = json!("ftp");
    expect_error(s.api(Method::POST, "/registries", Some(bad.clone())).await, StatusCode::BAD_REQUEST, "BAD_REQUEST")
        .await;
    bad["type"] = json!("oci");
    bad["url"] = json!("ftp://nowhere");
    expect_error(s.api(Method::POST, "/registries", Some(bad)).await, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    // A new URL (the same registry through a proxy) keeps the secret: re-sealed, still works.
    let proxy = berth_test_support::FaultProxy::start(&upstream.host);
    let change = json!({"url": format!("http://{}", proxy.host), "credential": {"access_secret": "*****"}});
    assert_eq!(s.api(Method::PUT, &format!("/registries/{id}"), Some(change)).await.status(), StatusCode::OK);
    assert_eq!(s.api(Method::POST, "/registries/ping", Some(json!({"id": id}))).await.status(), StatusCode::OK);
    // A check of another URL does not borrow the stored password.
    let elsewhere = json!({"id": id, "url": "http://127.0.0.1:9", "credential": {"access_secret": "*****"}});
    let e = expect_error(
        s.api(Method::POST, "/registries/ping", Some(elsewhere)).await,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("is only sent to"), "{e}");
    // Changing the URL in the database does not send the password elsewhere: it no longer opens.
    let other = berth_test_support::Distribution::start(None);
    run_ok(tokio::process::Command::new("python3").arg("-c").arg(format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute(\"UPDATE upstreams SET url = '{}' WHERE id = {id}\"); c.commit()",
        s.data_dir().join("meta.db").display().to_string(),
        other.url
    )))
    .await;
    let r = s.api(Method::POST, "/registries/ping", Some(json!({"id": id}))).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!other.log().contains("GET /v2/"), "nothing was sent to the other registry: {}", other.log());
    // Only system administrators; listing and deleting.
    s.user("una", "Una-Passw0rd-1").await;
    let una = reqwest::Client::new()
        .get(s.url("/api/v2.0/registries"))
        .basic_auth("una", Some("Una-Passw0rd-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(una.status(), StatusCode::FORBIDDEN);
    let list: Value = s.api(Method::GET, "/registries?q=name%3D~site", None).await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let types: Value = s.api(Method::GET, "/replication/adapters", None).await.json().await.unwrap();
    assert!(types.as_array().unwrap().iter().any(|t| t == "docker-hub"), "{types}");
    assert_eq!(s.api(Method::DELETE, &format!("/registries/{id}"), None).await.status(), StatusCode::OK);
    assert_eq!(s.api(Method::GET, &format!("/registries/{id}"), None).await.status(), StatusCode::NOT_FOUND);
    // Every change is in the audit log, by whom.
    let log = crate::access::audit(&s, "resource_type%3Dregistry", |l| l.len() >= 3).await;
    let ops: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e["operation"].as_str().unwrap(), e["resource"].as_str().unwrap(), e["username"].as_str().unwrap()))
        .collect();
    assert_eq!(ops, [("delete", "site-b", "admin"), ("update", "site-b", "admin"), ("create", "site-b", "admin")]);
}

/// `berth registry`: create (password from standard input), list, ping, delete, by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_registry_endpoints() {
    use tokio::io::AsyncWriteExt;
    let upstream = berth_test_support::Distribution::start(Some(("mirror", "Upstream-Secret-42")));
    let s = TestServer::start().await;
    let berth = || {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base).env("BERTH_USERNAME", ADMIN).env("BERTH_PASSWORD", ADMIN_PASSWORD);
        c
    };
    let out = run_ok(berth().args(["registry", "list"])).await;
    assert!(out.contains("no registry endpoints"), "{out}");
    let mut child = berth()
        .args(["registry", "create", "site-b", &upstream.url, "--access-key", "mirror", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"Upstream-Secret-42\n").await.unwrap();
    let done = child.wait_with_output().await.unwrap();
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success() && out.starts_with("created registry endpoint site-b (id "), "{out}");
    let out = run_ok(berth().args(["registry", "ping", "site-b"])).await;
    assert!(out.contains("site-b answered and accepted the credentials"), "{out}");
    let out = run_ok(berth().args(["registry", "list"])).await;
    let row = out.lines().nth(1).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..], ["site-b", "docker-registry", upstream.url.as_str(), "healthy", "mirror"], "{out}");
    let err = run_fails(berth().args(["registry", "create", "x", "ftp://nowhere"])).await;
    assert!(err.contains("400"), "{err}");
    let err = run_fails(berth().args(["registry", "ping", "nope"])).await;
    assert!(err.contains("no registry endpoint named \"nope\""), "{err}");
    run_ok(berth().args(["registry", "delete", "site-b"])).await;
    assert!(run_ok(berth().args(["registry", "list"])).await.contains("no registry endpoints"));
}
