//! OIDC login against a real OpenID provider (django-oidc-provider, started by the test;
//! see `tests/oidc/README.md`): authorization code flow with PKCE, users created on first
//! login, the groups claim mapped to project membership, and a CLI secret that works for
//! real clients independently of the web session.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use reqwest::{Method, StatusCode, redirect};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::*;

pub(crate) struct Provider {
    child: Child,
    pub(crate) issuer: String,
    _dir: tempfile::TempDir,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) const CLIENT_SECRET: &str = "s3cretS3cretForBerth";

pub(crate) fn start_provider(redirect_uri: &str) -> Provider {
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .args(["--port", "0", "--client-id", "berth", "--client-secret", CLIENT_SECRET, "--data"])
        .arg(dir.path())
        .args(["--redirect-uri", redirect_uri])
        .args([
            "--user",
            "alice:Alice-Idp-1:devs,ops",
            "--user",
            "bob:Bob-Idp-1:",
            "--user",
            "root:Root-Idp-1:berth-admins",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let issuer = line.trim().strip_prefix("READY ").unwrap_or_else(|| panic!("provider said {line:?}")).to_owned();
    Provider { child, issuer, _dir: dir }
}

/// A browser, more or less: cookies per host, no automatic redirects.
struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, HashMap<String, String>>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap(),
            jar: HashMap::new(),
        }
    }

    fn host(url: &str) -> String {
        url.split("://").nth(1).unwrap().split('/').next().unwrap().to_owned()
    }

    async fn send(&mut self, method: Method, url: &str, form: Option<String>) -> reqwest::Response {
        let host = Self::host(url);
        let cookies: Vec<String> =
            self.jar.get(&host).map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect()).unwrap_or_default();
        let mut req = self.http.request(method, url);
        if !cookies.is_empty() {
            req = req.header("cookie", cookies.join("; "));
        }
        if let Some(f) = form {
            req = req.header("content-type", "application/x-www-form-urlencoded").body(f);
        }
        let r = req.send().await.unwrap();
        for v in r.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            let e = self.jar.entry(host.clone()).or_default();
            if val.is_empty() {
                e.remove(k);
            } else {
                e.insert(k.to_owned(), val.to_owned());
            }
        }
        r
    }

    fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.jar.get(&Self::host(url))?.get(name).cloned()
    }
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        return location.to_owned();
    }
    let origin: String = base.split('/').take(3).collect::<Vec<_>>().join("/");
    format!("{origin}{location}")
}

fn find<'a>(html: &'a str, name: &str) -> &'a str {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    &html[start..start + html[start..].find('"').unwrap()]
}

/// Log in through Berth's `/c/oidc/login` as `user`; returns the final callback response.
async fn oidc_login(b: &mut Browser, berth: &str, user: &str, password: &str) -> reqwest::Response {
    let r = b.send(Method::GET, &format!("{berth}/c/oidc/login"), None).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let authorize = location(&r);
    assert!(authorize.contains("code_challenge_method=S256") && authorize.contains("code_challenge="), "{authorize}");
    assert!(authorize.contains("nonce=") && authorize.contains("state="), "{authorize}");
    let r = b.send(Method::GET, &authorize, None).await;
    let login_page = absolute(&authorize, &location(&r));
    let r = b.send(Method::GET, &login_page, None).await;
    let html = r.text().await.unwrap();
    let form = format!(
        "csrfmiddlewaretoken={}&next={}&username={user}&password={password}",
        find(&html, "csrfmiddlewaretoken"),
        berth_auth::oidc::urlencode(find(&html, "next"))
    );
    let r = b.send(Method::POST, &absolute(&authorize, "/login/"), Some(form)).await;
    assert_eq!(r.status(), StatusCode::FOUND, "login at the provider");
    let back = absolute(&authorize, &location(&r));
    let r = b.send(Method::GET, &back, None).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let callback = location(&r);
    assert!(callback.starts_with(&format!("{berth}/c/oidc/callback?code=")), "{callback}");
    b.send(Method::GET, &callback, None).await
}

async fn as_session(b: &Browser, berth: &str, method: Method, path: &str, csrf: bool) -> reqwest::Response {
    let session = b.cookie(berth, "berth_session").expect("a session cookie");
    let mut r = reqwest::Client::new()
        .request(method, format!("{berth}{path}"))
        .header("cookie", format!("berth_session={session}"));
    if csrf {
        r = r.header("x-harbor-csrf-token", "1");
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_login_onboards_users_maps_groups_and_issues_cli_secrets() {
    // Berth's port first: the provider must know the redirect URI when it starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let berth = format!("http://127.0.0.1:{port}");
    let redirect_uri = format!("{berth}/c/oidc/callback");
    let idp = start_provider(&redirect_uri);
    let issuer = idp.issuer.clone();
    let s = TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.auth.create_projects_on_push = false;
        c.oidc = Some(berth_config::OidcSettings {
            issuer,
            client_id: "berth".into(),
            client_secret: berth_config::Secret::new(CLIENT_SECRET),
            redirect_url: Some(redirect_uri.clone()),
            scope: "openid profile email".into(),
            groups_claim: "groups".into(),
            username_claim: "preferred_username".into(),
            admin_group: Some("berth-admins".into()),
            auto_onboard: true,
        });
    })
    .await;
    assert_eq!(s.base, berth);
    let info: Value = s.anon().get(s.url("/api/v2.0/systeminfo")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["auth_mode"], "oidc_auth");
    s.project("team", false).await;
    let r = s
        .api(
            Method::POST,
            "/projects/team/members",
            Some(json!({"role_id": 2, "member_group": {"group_name": "devs"}})),
        )
        .await;
    assert_eq!(r.status(), 201);

    // alice logs in: created on first login, with her groups.
    let mut alice = Browser::new();
    let r = oidc_login(&mut alice, &berth, "alice", "Alice-Idp-1").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/harbor/projects", "on to the portal");
    let page = alice.send(Method::GET, &format!("{berth}/harbor/projects"), None).await.text().await.unwrap();
    assert!(page.contains("Signed in as <strong>alice</strong>") && page.contains(">team<"), "{page}");
    assert!(alice.cookie(&berth, "berth_oidc").is_none(), "the login state cookie is cleared");
    let me: Value =
        as_session(&alice, &berth, Method::GET, "/api/v2.0/users/current", false).await.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["email"], "alice@example.test");
    assert_eq!(me["sysadmin_flag"], false);
    assert!(me["oidc_user_meta"]["subiss"].as_str().unwrap().starts_with(&idp.issuer), "{me}");
    let id = me["user_id"].as_i64().unwrap();
    // the group membership shows in the project she can now see
    let p: Value =
        as_session(&alice, &berth, Method::GET, "/api/v2.0/projects/team", false).await.json().await.unwrap();
    assert_eq!(p["name"], "team");

    // A CLI secret, made from the web session (changes need the CSRF header).
    let r = as_session(&alice, &berth, Method::PUT, &format!("/api/v2.0/users/{id}/cli_secret"), false).await;
    assert_eq!(r.status(), 403);
    let r = as_session(&alice, &berth, Method::PUT, &format!("/api/v2.0/users/{id}/cli_secret"), true).await;
    assert_eq!(r.status(), 200);
    let secret = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();

    // ... which real clients use, independently of the session: log out first.
    let r = alice.send(Method::GET, &format!("{berth}/c/log_out"), None).await;
    assert_eq!(r.status(), 200);
    assert!(alice.cookie(&berth, "berth_session").is_none());
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    let auth = s.auth_file_for(Some(("alice", &secret)));
    run_ok(
        Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", &auth)
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:single", layout.display()))
            .arg(format!("docker://{}/team/app:v1", s.host())),
    )
    .await;
    // podman login with the CLI secret, as a user would type it
    let empty = s.auth_file_for(None);
    run_ok(Command::new("podman").envs(containers_env(tmp.path(), &empty)).args([
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        &secret,
        &s.host(),
    ]))
    .await;
    let saved = std::fs::read_to_string(&empty).unwrap();
    assert!(saved.contains(&s.host()), "podman stored the login: {saved}");

    // bob (no groups) gets an account but no access to the project.
    let mut bob = Browser::new();
    assert_eq!(oidc_login(&mut bob, &berth, "bob", "Bob-Idp-1").await.status(), StatusCode::SEE_OTHER);
    let r = as_session(&bob, &berth, Method::GET, "/api/v2.0/projects/team", false).await;
    assert_eq!(r.status(), 404);
    // a member of the admin group becomes a system administrator
    let mut root = Browser::new();
    assert_eq!(oidc_login(&mut root, &berth, "root", "Root-Idp-1").await.status(), StatusCode::SEE_OTHER);
    let me: Value =
        as_session(&root, &berth, Method::GET, "/api/v2.0/users/current", false).await.json().await.unwrap();
    assert_eq!(me["sysadmin_flag"], true);

    // A forged callback: a state that is not this login's, or no login cookie at all.
    let mut eve = Browser::new();
    let r = eve.send(Method::GET, &format!("{berth}/c/oidc/login"), None).await;
    assert_eq!(r.status(), 302);
    let r = eve.send(Method::GET, &format!("{berth}/c/oidc/callback?code=abc&state=not-mine"), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(eve.cookie(&berth, "berth_session").is_none());
    let r = Browser::new().send(Method::GET, &format!("{berth}/c/oidc/callback?code=abc&state=x"), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no login cookie");

    // The logins are audited.
    crate::access::audit(&s, "operation=login", |v| {
        ["alice", "bob", "root"].iter().all(|u| v.iter().any(|e| e["username"] == *u && e["detail"] == "oidc"))
    })
    .await;
    s.stop().await;
}

/// Berth listening on a port the provider knows, with OIDC configured (no automatic
/// onboarding: first-time users choose a username, as in Harbor).
pub(crate) async fn with_provider() -> (TestServer, Provider) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let berth = format!("http://127.0.0.1:{port}");
    let redirect_uri = format!("{berth}/c/oidc/callback");
    let idp = start_provider(&redirect_uri);
    let issuer = idp.issuer.clone();
    let s = TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.oidc = Some(berth_config::OidcSettings {
            issuer,
            client_id: "berth".into(),
            client_secret: berth_config::Secret::new(CLIENT_SECRET),
            redirect_url: Some(redirect_uri.clone()),
            scope: "openid profile email".into(),
            groups_claim: "groups".into(),
            username_claim: "preferred_username".into(),
            admin_group: None,
            auto_onboard: false,
        });
    })
    .await;
    (s, idp)
}

/// A first-time OIDC user chooses a username (proposed from the claim); a taken or invalid
/// one is explained; the account gets the provider's email and groups; the next login goes
/// straight in; the onboarding cookie cannot be forged or replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_time_oidc_users_choose_their_username() {
    let (s, _idp) = with_provider().await;
    let berth = s.base.clone();
    s.user("alice", "Local-Alice-1").await; // a local account holds the claimed name
    let mut b = Browser::new();
    let r = oidc_login(&mut b, &berth, "alice", "Alice-Idp-1").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/account/onboard");
    assert!(b.cookie(&berth, "berth_session").is_none(), "no session before the account exists");
    let page = b.send(Method::GET, &format!("{berth}/account/onboard"), None).await.text().await.unwrap();
    assert!(
        page.contains("the username \u{201c}alice\u{201d} is taken") && page.contains("alice@example.test"),
        "{page}"
    );
    let csrf = find(&page, "csrf").to_owned();
    let choose = |name: &str| format!("csrf={csrf}&username={}", berth_auth::oidc::urlencode(name));
    let r = b.send(Method::POST, &format!("{berth}/account/onboard"), Some(choose("bad name"))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("cannot be a Berth username"));
    let r = b.send(Method::POST, &format!("{berth}/account/onboard"), Some(choose("alice"))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let spent = b.cookie(&berth, "berth_onboard").unwrap();
    let r = b.send(Method::POST, &format!("{berth}/account/onboard"), Some(choose("alice.w"))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/harbor/projects");
    assert!(b.cookie(&berth, "berth_onboard").is_none(), "the onboarding cookie is spent");
    let me: Value = as_session(&b, &berth, Method::GET, "/api/v2.0/users/current", false).await.json().await.unwrap();
    assert_eq!((me["username"].as_str(), me["email"].as_str()), (Some("alice.w"), Some("alice@example.test")), "{me}");
    // A replayed onboarding cookie does not make a second account.
    let mut replay = Browser::new();
    replay.jar.entry(Browser::host(&berth)).or_default().insert("berth_onboard".into(), spent);
    let page = replay.send(Method::GET, &format!("{berth}/account/onboard"), None).await.text().await.unwrap();
    let csrf2 = find(&page, "csrf").to_owned();
    let r = replay
        .send(Method::POST, &format!("{berth}/account/onboard"), Some(format!("csrf={csrf2}&username=alice.x")))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("already has a Berth account"));
    let users: Value = s.api(Method::GET, "/users?q=username%3Dalice.x", None).await.json().await.unwrap();
    assert_eq!(users.as_array().unwrap().len(), 0, "{users}");
    // Known now: the next login goes straight in.
    let mut again = Browser::new();
    let r = oidc_login(&mut again, &berth, "alice", "Alice-Idp-1").await;
    assert_eq!(location(&r), "/harbor/projects");
    // bob's name is free: it is proposed, and a forged cookie is refused.
    let mut bob = Browser::new();
    assert_eq!(location(&oidc_login(&mut bob, &berth, "bob", "Bob-Idp-1").await), "/account/onboard");
    let page = bob.send(Method::GET, &format!("{berth}/account/onboard"), None).await.text().await.unwrap();
    assert!(page.contains("name=\"username\" value=\"bob\""), "{page}");
    let token = bob.cookie(&berth, "berth_onboard").unwrap();
    let mut forged = Browser::new();
    forged.jar.entry(Browser::host(&berth)).or_default().insert("berth_onboard".into(), format!("{token}x"));
    let r = forged.send(Method::GET, &format!("{berth}/account/onboard"), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Sign in again"));
    s.stop().await;
}

/// The SSO journey in Debian's Chromium: the sign-in page's SSO button, the provider's form,
/// choosing a username, then a CLI secret from the profile that logs skopeo in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_sign_in_and_onboarding_in_chromium() {
    let (s, _idp) = with_provider().await;
    let shots = s.dir.path().join("shots");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/portal/browser.py");
    let out = run_ok(
        Command::new("python3")
            .arg(script)
            .args(["--base", &s.base, "--oidc-user", "alice", "--oidc-password", "Alice-Idp-1", "--choose", "alice"])
            .arg("--shots")
            .arg(&shots),
    )
    .await;
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
    let secret = out.lines().find_map(|l| l.strip_prefix("secret ")).expect("a secret");
    let auth = s.dir.path().join("auth.json");
    run_ok(Command::new("skopeo").args(["login", "--tls-verify=false", "--authfile"]).arg(&auth).args([
        "-u",
        "alice",
        "-p",
        secret,
        &s.host(),
    ]))
    .await;
    s.stop().await;
}
