//! The web portal: sign-in and sign-out with CSRF protection, session cookies with the right
//! flags and expiry, security headers, what each role and anonymous visitors see, every tab
//! and administration page changing what the API then reads, and — in Debian's Chromium
//! (`tests/portal/browser.py`) — the main journeys, copy buttons, sorting, escaping of
//! everything users type, and axe-core on every page in both themes and at a phone's width.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use crate::support::*;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// `name=value` of the Set-Cookie for `name`, and the whole header.
fn set_cookie(h: &HeaderMap, name: &str) -> Option<(String, String)> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_string(), v.to_string()))
}

fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Sign in through the form; returns the cookies to send afterwards.
pub async fn sign_in(s: &TestServer, user: &str, password: &str) -> String {
    let c = client();
    let r = c.get(s.url("/account/sign-in")).send().await.unwrap();
    let (csrf_cookie, _) = set_cookie(r.headers(), "berth_csrf").unwrap();
    let token = hidden(&r.text().await.unwrap(), "csrf");
    let r = c
        .post(s.url("/account/sign-in"))
        .header("cookie", &csrf_cookie)
        .form(&[("csrf", token.as_str()), ("next", "/harbor/projects"), ("username", user), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
    let (session, _) = set_cookie(r.headers(), "berth_session").unwrap();
    format!("{csrf_cookie}; {session}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_projects_and_sign_out_with_csrf_and_strict_headers() {
    let s = TestServer::start().await;
    s.project("alpha", true).await;
    s.project("beta", false).await;
    s.user("una", "Una-Passw0rd-1").await;
    let c = client();

    // Nobody signed in: `/` is the sign-in page; the projects page lists only public projects.
    let r = c.get(s.url("/")).send().await.unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()[LOCATION], "/account/sign-in");
    let r = c.get(s.url("/harbor/projects")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(">alpha<") && !page.contains(">beta<") && page.contains("href=\"/account/sign-in\""),
        "{page}"
    );
    assert!(!page.contains("New project"), "anonymous people create nothing");
    // A private page sends them to sign in, and back afterwards.
    let r = c.get(s.url("/harbor/profile")).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/account/sign-in?next=%2Fharbor%2Fprofile");

    // The sign-in page: strict headers, a CSRF cookie, a versioned stylesheet.
    let r = c.get(s.url("/account/sign-in")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let (csrf_cookie, whole) = set_cookie(r.headers(), "berth_csrf").unwrap();
    assert!(whole.contains("HttpOnly") && whole.contains("SameSite=Strict"), "{whole}");
    let html = r.text().await.unwrap();
    // One script, from this origin, and no inline script (the CSP would refuse it anyway).
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(html.contains("<script src=\"/static/portal-") && html.contains(".js\" defer></script>"), "{html}");
    let assets: Vec<&str> =
        html.split('"').filter(|x| x.starts_with("/static/") && (x.ends_with(".css") || x.ends_with(".js"))).collect();
    assert_eq!(assets.len(), 2, "{assets:?}");
    let mut size = html.len();
    for asset in assets {
        let r = c.get(s.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable");
        size += r.bytes().await.unwrap().len();
    }
    assert!(size < 300 * 1024, "first page load is {size} bytes");
    assert_eq!(c.get(s.url("/static/portal-0000.css")).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // A form without the matching CSRF cookie (another site's) is refused; a wrong password says so.
    let token = hidden(&html, "csrf");
    let form = |u: &'static str, p: &'static str| {
        vec![("csrf", token.clone()), ("username", u.into()), ("password", p.into())]
    };
    let r = c.post(s.url("/account/sign-in")).form(&form("admin", ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(r.headers(), "berth_session").is_none());
    let r = c
        .post(s.url("/account/sign-in"))
        .header("cookie", &csrf_cookie)
        .form(&form("una", "wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("Wrong username or password."));

    // Signed in: the session cookie's flags; the projects the user may see.
    let r = c
        .post(s.url("/account/sign-in"))
        .header("cookie", &csrf_cookie)
        .form(&[
            ("csrf", token.as_str()),
            ("next", "https://evil.example/"),
            ("username", "una"),
            ("password", "Una-Passw0rd-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/harbor/projects", "never back to another site");
    let (_, whole) = set_cookie(r.headers(), "berth_session").unwrap();
    assert!(whole.contains("HttpOnly") && whole.contains("SameSite=Lax") && whole.contains("Max-Age="), "{whole}");
    let una = sign_in(&s, "una", "Una-Passw0rd-1").await;
    let page = c.get(s.url("/harbor/projects")).header("cookie", &una).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(">alpha<") && page.contains("Public"), "{page}");
    assert!(!page.contains(">beta<"), "a private project of others is not shown");
    let admin = sign_in(&s, "admin", ADMIN_PASSWORD).await;
    let page = c.get(s.url("/harbor/projects")).header("cookie", &admin).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(">alpha<") && page.contains(">beta<") && page.contains("Private"), "{page}");
    assert!(page.contains("Signed in as <strong>admin</strong>"));
    // A project's pages: readable as the project is, private ones "not found" to strangers.
    let alpha = s.api(reqwest::Method::GET, "/projects/alpha", None).await.json::<serde_json::Value>().await.unwrap();
    let beta = s.api(reqwest::Method::GET, "/projects/beta", None).await.json::<serde_json::Value>().await.unwrap();
    let (alpha, beta) = (alpha["project_id"].as_i64().unwrap(), beta["project_id"].as_i64().unwrap());
    let get = |path: String, cookie: String| {
        let c = c.clone();
        let url = s.url(&path);
        async move { c.get(url).header("cookie", cookie).send().await.unwrap() }
    };
    let r = get(format!("/harbor/projects/{alpha}/repositories"), una.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("No repositories yet.") && !page.contains("/members\""),
        "no members tab for a stranger: {page}"
    );
    assert!(!page.contains("docker push"), "no push commands for who may not push: {page}");
    assert_eq!(get(format!("/harbor/projects/{beta}/repositories"), una.clone()).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(format!("/harbor/projects/{beta}/members"), una.clone()).await.status(), StatusCode::NOT_FOUND);
    let page = get(format!("/harbor/projects/{beta}/members"), admin.clone()).await.text().await.unwrap();
    assert!(page.contains("Project administrator"), "{page}");
    // Members from the members tab: add, change the role, remove — and what the member sees follows.
    let members = format!("/harbor/projects/{beta}/members");
    let page = get(members.clone(), admin.clone()).await.text().await.unwrap();
    let token = hidden(&page, "csrf");
    let post_to = |path: String, form: Vec<(&'static str, String)>| {
        let (c, url, cookie) = (c.clone(), s.url(&path), admin.clone());
        async move { c.post(url).header("cookie", cookie).form(&form).send().await.unwrap() }
    };
    let add = vec![("csrf", token.clone()), ("name", "una".into()), ("kind", "user".into()), ("role_id", "3".into())];
    assert_eq!(post_to(members.clone(), add).await.status(), StatusCode::SEE_OTHER);
    let page = c.get(s.url("/harbor/projects")).header("cookie", &una).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(">beta<"), "a guest now sees the project: {page}");
    let ghost =
        vec![("csrf", token.clone()), ("name", "nobody".into()), ("kind", "user".into()), ("role_id", "3".into())];
    let r = post_to(members.clone(), ghost).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("There is no user named"));
    let list =
        s.api(reqwest::Method::GET, "/projects/beta/members", None).await.json::<serde_json::Value>().await.unwrap();
    let mid = list.as_array().unwrap().iter().find(|m| m["entity_name"] == "una").unwrap()["id"].as_i64().unwrap();
    let r = post_to(format!("{members}/{mid}/role"), vec![("csrf", token.clone()), ("role_id", "2".into())]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = get(members.clone(), admin.clone()).await.text().await.unwrap();
    assert!(page.contains("<option value=\"2\" selected>Developer</option>"), "{page}");
    let forged = post_to(format!("{members}/{mid}/remove"), vec![("csrf", "forged".into())]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        post_to(format!("{members}/{mid}/remove"), vec![("csrf", token.clone())]).await.status(),
        StatusCode::SEE_OTHER
    );
    let page = c.get(s.url("/harbor/projects")).header("cookie", &una).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains(">beta<"), "removed, the project is private again to una");
    // Creating a project from the projects page; a bad name is explained.
    let page = get("/harbor/projects".into(), admin.clone()).await.text().await.unwrap();
    let token = hidden(&page, "csrf");
    let post = |form: Vec<(&'static str, String)>| {
        let (c, url, cookie) = (c.clone(), s.url("/harbor/projects"), admin.clone());
        async move { c.post(url).header("cookie", cookie).form(&form).send().await.unwrap() }
    };
    let r = post(vec![
        ("csrf", token.clone()),
        ("name", "gamma".into()),
        ("public", "on".into()),
        ("limit_gib", "2".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let gamma = s.api(reqwest::Method::GET, "/projects/gamma", None).await.json::<serde_json::Value>().await.unwrap();
    assert_eq!(gamma["metadata"]["public"], "true");
    assert_eq!(
        r.headers()[LOCATION].to_str().unwrap(),
        format!("/harbor/projects/{}/repositories", gamma["project_id"])
    );
    let r = post(vec![("csrf", token.clone()), ("name", "Bad Name".into())]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("role=\"alert\""));
    let r = post(vec![("csrf", "forged".into()), ("name", "delta".into())]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // What users type is escaped where it is shown (a robot's description).
    let robot = serde_json::json!({"name": "x", "description": "<img src=x onerror=alert(1)>", "level": "project",
        "duration": -1, "permissions": [{"kind": "project", "namespace": "gamma",
        "access": [{"resource": "repository", "action": "pull"}]}]});
    assert_eq!(s.api(reqwest::Method::POST, "/robots", Some(robot)).await.status(), StatusCode::CREATED);
    let page = get(format!("/harbor/projects/{}/robot-account", gamma["project_id"]), admin.clone())
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<img") && page.contains("&lt;img src=x onerror=alert(1)&gt;"), "{page}");
    // A robot's new secret, disabling and deleting it, from its row.
    let robots_page = format!("/harbor/projects/{}/robot-account", gamma["project_id"]);
    let rid = s
        .api(reqwest::Method::GET, "/robots", None)
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "robot$gamma+x")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let token = hidden(&get(robots_page.clone(), admin.clone()).await.text().await.unwrap(), "csrf");
    let act = |op: &'static str, csrf: String| {
        let (c, url, cookie) = (c.clone(), s.url(&format!("{robots_page}/{rid}/{op}")), admin.clone());
        async move { c.post(url).header("cookie", cookie).form(&[("csrf", csrf)]).send().await.unwrap() }
    };
    let page = act("refresh", token.clone()).await.text().await.unwrap();
    let secret = &page[page.find("id=\"robot-secret\">").unwrap() + 18..];
    let secret = secret[..secret.find('<').unwrap()].to_string();
    let v2 = |creds: (&str, &str)| {
        let url = s.url("/v2/gamma/none/tags/list");
        let (u, p) = (creds.0.to_string(), creds.1.to_string());
        async move { reqwest::Client::new().get(url).basic_auth(u, Some(p)).send().await.unwrap().status() }
    };
    assert_ne!(v2(("robot$gamma+x", &secret)).await, StatusCode::UNAUTHORIZED, "the new secret works");
    assert_eq!(act("disable", token.clone()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(v2(("robot$gamma+x", &secret)).await, StatusCode::UNAUTHORIZED, "disabled");
    assert!(get(robots_page.clone(), admin.clone()).await.text().await.unwrap().contains("Disabled"));
    assert_eq!(act("delete", "forged".into()).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(act("delete", token.clone()).await.status(), StatusCode::SEE_OTHER);
    assert!(get(robots_page.clone(), admin.clone()).await.text().await.unwrap().contains("No robot accounts yet."));
    // The job queue: for system administrators only, linked from their navigation.
    // (The periodic jobs are queued at start; which have finished by now depends on the machine.)
    let page = get("/harbor/jobs?state=All".into(), admin.clone()).await.text().await.unwrap();
    assert!(page.contains("href=\"/harbor/jobs\"") && page.contains("<td><code>event-prune</code>"), "{page}");
    assert!(
        !c.get(s.url("/harbor/projects"))
            .header("cookie", &una)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("/harbor/jobs")
    );
    assert_eq!(get("/harbor/jobs".into(), una.clone()).await.status(), StatusCode::FORBIDDEN);
    // Search, escaped as it is echoed.
    let r = c
        .get(s.url("/harbor/projects?q=%3Cscript%3Ealert(1)%3C/script%3E"))
        .header("cookie", &admin)
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(!page.contains("<script>") && page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    let page =
        c.get(s.url("/harbor/projects?q=alp")).header("cookie", &admin).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(">alpha<") && !page.contains(">beta<"));

    // Sign-out needs the token too, and ends the session cookie.
    let r =
        c.post(s.url("/account/sign-out")).header("cookie", &admin).form(&[("csrf", "forged")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = c.get(s.url("/harbor/projects")).header("cookie", &admin).send().await.unwrap().text().await.unwrap();
    let token = hidden(&page, "csrf");
    let r = c
        .post(s.url("/account/sign-out"))
        .header("cookie", &admin)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/account/sign-in");
    let (cleared, whole) = set_cookie(r.headers(), "berth_session").unwrap();
    assert!(cleared == "berth_session=" && whole.contains("Max-Age=0"), "{whole}");
}

/// The portal in Debian's Chromium (headless, through Selenium): sign in, the projects page,
/// a CLI secret from the profile page that then logs skopeo in, no CSP violation or script error, keyboard first stop, dark theme, a phone's width, sign
/// out (`tests/portal/browser.py`). Screenshots land in a temporary directory;
/// `scripts/screenshots.sh` refreshes `docs/screenshots/` the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_works_in_chromium() {
    let s = TestServer::start().await;
    s.project("library", true).await;
    s.project("research-genomics", false).await;
    s.push_image("library/app", "v1").await;
    // A real Debian image pushed by skopeo, scanned on push against the real advisories.
    crate::scan::import(&s, &crate::scan::pack_dir()).await;
    let r = s
        .api(
            reqwest::Method::PUT,
            "/projects/library",
            Some(serde_json::json!({"metadata": {"auto_scan": "true", "auto_sbom_generation": "true"}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let layout = debian_layout().await;
    run_ok(
        tokio::process::Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", s.auth_file())
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:bookworm", layout.display()))
            .arg(format!("docker://{}/library/debian:bookworm", s.host())),
    )
    .await;
    let debian = crate::scan::scanned(&s, "library", "debian", "bookworm").await;
    let library =
        s.api(reqwest::Method::GET, "/projects/library", None).await.json::<serde_json::Value>().await.unwrap();
    let scanned = format!(
        "/harbor/projects/{}/repositories/debian/artifacts-tab/artifacts/{}",
        library["project_id"],
        debian["digest"].as_str().unwrap()
    );
    let shots = s.dir.path().join("shots");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/portal/browser.py");
    let out = run_ok(
        tokio::process::Command::new("python3")
            .arg(script)
            .args(["--base", &s.base, "--user", ADMIN, "--password", ADMIN_PASSWORD, "--scanned", &scanned, "--shots"])
            .arg(&shots),
    )
    .await;
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
    // The CLI secret generated in the browser logs a real client in.
    let secret = out.lines().find_map(|l| l.strip_prefix("secret ")).expect("a secret");
    assert_ne!(secret, ADMIN_PASSWORD);
    let auth = s.dir.path().join("auth.json");
    run_ok(
        tokio::process::Command::new("skopeo").args(["login", "--tls-verify=false", "--authfile"]).arg(&auth).args([
            "-u",
            ADMIN,
            "-p",
            secret,
            &s.host(),
        ]),
    )
    .await;
    // The robot's Kubernetes Secret, downloaded in the browser, pulls the image.
    let path = out.lines().find_map(|l| l.strip_prefix("k8s ")).expect("a Kubernetes Secret");
    let yaml = std::fs::read_to_string(path).unwrap();
    assert!(yaml.contains("type: kubernetes.io/dockerconfigjson") && yaml.contains("namespace: ci-jobs"), "{yaml}");
    let b64 = yaml.lines().find_map(|l| l.trim().strip_prefix(".dockerconfigjson: ")).unwrap();
    use base64::Engine;
    let config: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
    let auth = config["auths"][s.host().as_str()]["auth"].as_str().unwrap_or_else(|| panic!("{config}"));
    let creds = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(auth).unwrap()).unwrap();
    assert!(creds.starts_with("robot$library+ci-puller:"), "{creds}");
    run_ok(
        tokio::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", "--creds", &creds])
            .arg(format!("docker://{}/library/app:v1", s.host())),
    )
    .await;
    // The artifact page: readable to who may pull, "not found" otherwise.
    let digest = sha256(&s.push_image("research-genomics/bwa", "0.7.17").await);
    let rg = s
        .api(reqwest::Method::GET, "/projects/research-genomics", None)
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let admin = sign_in(&s, ADMIN, ADMIN_PASSWORD).await;
    let page = format!("/harbor/projects/{}/repositories/bwa/artifacts-tab/artifacts/{digest}", rg["project_id"]);
    let r = client().get(s.url(&page)).header("cookie", &admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("0.7.17") && html.contains("additions/sbom?format=spdx") && html.contains("Not scanned yet."),
        "{html}"
    );
    let missing = page.replace(&digest[7..15], "00000000");
    assert_eq!(
        client().get(s.url(&missing)).header("cookie", &admin).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    s.user("vic", "Vic-Passw0rd-1").await;
    let vic = sign_in(&s, "vic", "Vic-Passw0rd-1").await;
    assert_eq!(client().get(s.url(&page)).header("cookie", &vic).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    for shot in [
        "sign-in.png",
        "projects.png",
        "project.png",
        "repository.png",
        "artifact.png",
        "robot.png",
        "profile.png",
        "projects-dark.png",
    ] {
        let png = std::fs::read(shots.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{shot}: {} bytes", png.len());
    }
}

/// A signed-in browser without a browser: cookies, and the CSRF token forms carry.
pub(crate) struct Web {
    pub(crate) c: reqwest::Client,
    base: String,
    pub(crate) cookie: String,
    csrf: String,
}

impl Web {
    pub(crate) async fn new(s: &TestServer, user: &str, password: &str) -> Web {
        let cookie = sign_in(s, user, password).await;
        let csrf = cookie.split("berth_csrf=").nth(1).unwrap().split(';').next().unwrap().to_owned();
        Web { c: client(), base: s.base.clone(), cookie, csrf }
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self.c.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// GET `path` until it shows `needle` (audit entries are written in batches); the page.
    async fn get_until(&self, path: &str, needle: &str) -> String {
        eventually(&format!("{path} to show {needle:?}"), async || {
            let (st, page) = self.get(path).await;
            assert_eq!(st, StatusCode::OK, "{path}");
            if page.contains(needle) { Ok(page) } else { Err(page) }
        })
        .await
    }

    /// POST a form (the CSRF token added); the status, the page, and where it redirects.
    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
        let mut f: Vec<(&str, &str)> = vec![("csrf", self.csrf.as_str())];
        f.extend_from_slice(form);
        let r =
            self.c.post(format!("{}{path}", self.base)).header("cookie", &self.cookie).form(&f).send().await.unwrap();
        let to = r.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status(), r.text().await.unwrap(), to)
    }
}

fn id_of(v: &serde_json::Value) -> i64 {
    v["project_id"].as_i64().unwrap()
}

/// A project's configuration, policy and logs tabs and a repository's policies, as an
/// administrator changes them and as a guest sees them; every change lands where the API
/// reads it, and every refusal is explained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_configuration_policies_and_logs_in_the_portal() {
    let s = TestServer::start().await;
    s.project("lab", false).await;
    s.user("gus", "Gus-Passw0rd-1").await;
    s.member("lab", "gus", 3).await;
    for tag in ["v1", "v2", "v3"] {
        s.push_image("lab/app", tag).await;
    }
    let lab = id_of(&s.api(reqwest::Method::GET, "/projects/lab", None).await.json().await.unwrap());
    let admin = Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let gus = Web::new(&s, "gus", "Gus-Passw0rd-1").await;
    let config = format!("/harbor/projects/{lab}/configuration");

    // Configuration: scanning, deployment security and the project's own allowlist.
    let (st, page, _) = admin
        .post(
            &config,
            &[
                ("auto_scan", "on"),
                ("prevent_vul", "on"),
                ("severity", "high"),
                ("allowlist", "project"),
                ("cves", "CVE-2024-3094\nGHSA-aaaa-bbbb-cccc, CVE-2024-3094"),
                ("expires", "2031-01-31"),
                ("scan_filters", "app*"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Saved."), "{page}");
    let p: serde_json::Value = s.api(reqwest::Method::GET, "/projects/lab", None).await.json().await.unwrap();
    let m = &p["metadata"];
    assert_eq!(
        (m["auto_scan"].as_str(), m["prevent_vul"].as_str(), m["severity"].as_str()),
        (Some("true"), Some("true"), Some("high")),
        "{p}"
    );
    assert_eq!((m["reuse_sys_cve_allowlist"].as_str(), m["public"].as_str()), (Some("false"), Some("false")), "{p}");
    let ids: Vec<&str> =
        p["cve_allowlist"]["items"].as_array().unwrap().iter().map(|i| i["cve_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["CVE-2024-3094", "GHSA-aaaa-bbbb-cccc"], "duplicates dropped: {p}");
    assert_eq!(p["cve_allowlist"]["expires_at"], 1_927_670_399, "the end of 2031-01-31: {p}");
    // Bad input is explained, escaped, and changes nothing.
    let (st, page, _) = admin.post(&config, &[("severity", "high"), ("cves", "<script>x</script>")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(page.contains("is not a vulnerability id") && !page.contains("<script>x"), "{page}");
    let (st, page, _) = admin.post(&config, &[("severity", "extreme")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(page.contains("one of none, low, medium, high, critical"), "{page}");
    let (st, page, _) = admin.post(&config, &[("severity", "high"), ("expires", "31/01/2031")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(page.contains("give a date as YYYY-MM-DD"), "{page}");
    let p: serde_json::Value = s.api(reqwest::Method::GET, "/projects/lab", None).await.json().await.unwrap();
    assert_eq!(p["metadata"]["auto_scan"], "true", "nothing changed");
    // A guest reads the settings and may change none of them.
    let (st, page) = gus.get(&config).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        page.contains("<fieldset disabled>") && !page.contains(">Save<") && !page.contains("Delete the project"),
        "{page}"
    );
    let (st, _, _) = gus.post(&config, &[("public", "on"), ("severity", "low")]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Deleting a project that holds repositories is refused; a typo in the name too.
    let (st, page, _) = admin.post(&format!("/harbor/projects/{lab}/delete"), &[("confirm", "lab")]).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED);
    assert!(page.contains("still holds 1 repositories"), "{page}");

    // Policy: an immutability rule, added, disabled, deleted.
    let policy = format!("/harbor/projects/{lab}/policy");
    let (st, _, to) = admin
        .post(
            &format!("{policy}/immutable"),
            &[
                ("repo_decoration", "repoMatches"),
                ("repo_pattern", "**"),
                ("tag_decoration", "matches"),
                ("tag_pattern", "v1"),
            ],
        )
        .await;
    assert_eq!((st, to.as_str()), (StatusCode::SEE_OTHER, policy.as_str()));
    let rules: serde_json::Value =
        s.api(reqwest::Method::GET, "/projects/lab/immutabletagrules", None).await.json().await.unwrap();
    assert_eq!(rules[0]["tag_selectors"][0]["pattern"], "v1", "{rules}");
    assert_eq!(
        s.delete("/v2/lab/app/manifests/v1").await.status(),
        StatusCode::PRECONDITION_FAILED,
        "v1 is immutable now"
    );
    let rid = rules[0]["id"].as_i64().unwrap();
    assert_eq!(gus.post(&format!("{policy}/immutable/{rid}/disable"), &[]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(admin.post(&format!("{policy}/immutable/{rid}/disable"), &[]).await.0, StatusCode::SEE_OTHER);
    let rules: serde_json::Value =
        s.api(reqwest::Method::GET, "/projects/lab/immutabletagrules", None).await.json().await.unwrap();
    assert_eq!(rules[0]["disabled"], true);
    let (st, page, _) = admin
        .post(
            &format!("{policy}/immutable"),
            &[
                ("repo_decoration", "repoMatches"),
                ("repo_pattern", "{"),
                ("tag_decoration", "matches"),
                ("tag_pattern", "x"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("role=\"alert\""), "{page}");

    // Retention: a rule previewed (nothing deleted), then added, then dry-run.
    let rule = [
        ("template", "latestPushedK"),
        ("count", "1"),
        ("repo_decoration", "repoMatches"),
        ("repo_pattern", "**"),
        ("tag_decoration", "matches"),
        ("tag_pattern", "**"),
    ];
    let mut preview = vec![("op", "preview")];
    preview.extend_from_slice(&rule);
    let (st, page, _) = admin.post(&format!("{policy}/retention"), &preview).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Preview: 2 of 3 artifacts would be deleted"), "{page}");
    assert!(page.contains("Delete</strong>") && page.contains("Keep (rule 1)"), "{page}");
    assert!(page.contains("value=\"1\""), "the form keeps what was typed: {page}");
    let arts: serde_json::Value =
        s.api(reqwest::Method::GET, "/projects/lab/repositories/app/artifacts", None).await.json().await.unwrap();
    assert_eq!(arts.as_array().unwrap().len(), 3, "a preview deletes nothing");
    let mut bad = preview.clone();
    bad[2] = ("count", "many");
    let (st, page, _) = admin.post(&format!("{policy}/retention"), &bad).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(page.contains("# must be a whole number"), "{page}");
    let mut add = vec![("op", "add")];
    add.extend_from_slice(&rule);
    let (st, page, _) = admin.post(&format!("{policy}/retention"), &add).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("Rule added.") && page.contains("retain the most recently pushed 1 artifacts"), "{page}");
    let p: serde_json::Value = s.api(reqwest::Method::GET, "/projects/lab", None).await.json().await.unwrap();
    let rid = p["metadata"]["retention_id"].as_str().unwrap().to_owned();
    let ret: serde_json::Value =
        s.api(reqwest::Method::GET, &format!("/retentions/{rid}"), None).await.json().await.unwrap();
    assert_eq!(ret["rules"][0]["params"]["latestPushedK"], 1, "{ret}");
    let (st, page, _) =
        admin.post(&format!("{policy}/retention"), &[("op", "schedule"), ("cron", "0 0 2 * * *")]).await;
    assert!(st == StatusCode::OK && page.contains("runs on schedule 0 0 2 * * *"), "{page}");
    let (st, page, _) = admin.post(&format!("{policy}/retention"), &[("op", "schedule"), ("cron", "every day")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{page}");
    let (st, page, _) = admin.post(&format!("{policy}/retention"), &[("op", "dry-run")]).await;
    assert!(st == StatusCode::OK && page.contains("Dry run"), "{page}");
    let runs: serde_json::Value =
        s.api(reqwest::Method::GET, &format!("/retentions/{rid}/executions"), None).await.json().await.unwrap();
    let run = runs[0]["id"].as_i64().unwrap();
    assert_eq!(runs[0]["dry_run"], true);
    let page = eventually("the dry run to succeed", async || {
        let (_, page) = admin.get(&format!("{policy}/retention/runs/{run}")).await;
        if page.contains("<dd>Success</dd>") { Ok(page) } else { Err(page) }
    })
    .await;
    assert!(page.contains("lab/app") && page.contains("DEL (dry run)"), "{page}");
    let (_, page) = gus.get(&policy).await;
    assert!(
        page.contains("retain the most recently pushed 1 artifacts") && !page.contains("Add rule"),
        "a guest reads: {page}"
    );
    assert_eq!(gus.post(&format!("{policy}/retention"), &[("op", "run")]).await.0, StatusCode::FORBIDDEN);

    // A repository's access policy: the validator's words for a bad one; a good one stored.
    let repo_policies = format!("/harbor/projects/{lab}/repositories/app/policies");
    let (st, page, _) = admin.post(&repo_policies, &[("op", "save-access"), ("text", "{\"Statement\": 3}")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("The policy is not valid") && page.contains("{&quot;Statement&quot;: 3}"),
        "kept, escaped: {page}"
    );
    let good = r#"{"Version":"2012-10-17","Statement":[{"Sid":"gus-pulls","Effect":"Allow","Principal":{"AWS":["gus"]},"Action":["ecr:BatchGetImage"]}]}"#;
    let (st, page, _) = admin.post(&repo_policies, &[("op", "save-access"), ("text", good)]).await;
    assert!(st == StatusCode::OK && page.contains("Access policy saved."), "{page}");
    let stored: serde_json::Value =
        s.api(reqwest::Method::GET, "/projects/lab/repositories/app/policy", None).await.json().await.unwrap();
    assert_eq!(stored["Statement"][0]["Sid"], "gus-pulls");
    // Its lifecycle policy, previewed then saved.
    let lc = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    let (st, page, _) = admin.post(&repo_policies, &[("op", "preview-lifecycle"), ("lifecycle", lc)]).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Preview: 2 of 3 images would expire"), "{page}");
    let (st, page, _) =
        admin.post(&repo_policies, &[("op", "preview-lifecycle"), ("lifecycle", "{\"rules\": []}")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{page}");
    let (st, page, _) = admin.post(&repo_policies, &[("op", "save-lifecycle"), ("lifecycle", lc)]).await;
    assert!(st == StatusCode::OK && page.contains("Lifecycle policy saved"), "{page}");
    let r = s.api(reqwest::Method::GET, "/projects/lab/repositories/app/lifecycle_policy", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(gus.post(&repo_policies, &[("op", "delete-lifecycle")]).await.0, StatusCode::FORBIDDEN);

    // Logs: the project's audit entries, filtered.
    let logs = format!("/harbor/projects/{lab}/logs");
    let page = admin.get_until(&format!("{logs}?operation=push"), "lab/app").await;
    assert!(page.contains("lab/app") && page.contains("<td>push</td>") && !page.contains("<td>create</td>"), "{page}");
    let (_, page) = admin.get(&format!("{logs}?username=nobody-at-all")).await;
    assert!(page.contains("No entries match."), "{page}");
    assert_eq!(gus.get(&logs).await.0, StatusCode::OK, "guests read the project's logs, as in Harbor");
    let r = client().get(s.url(&logs)).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], format!("/account/sign-in?next=%2Fharbor%2Fprojects%2F{lab}%2Flogs"));
}

/// Administration in the portal: users, groups, garbage collection, the vulnerability
/// database (an OSV file uploaded through the form) and the system allowlist; none of it for
/// anyone but a system administrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administration_in_the_portal() {
    let s = TestServer::start().await;
    s.project("ops-tools", false).await;
    s.user("una", "Una-Passw0rd-1").await;
    s.push_image("ops-tools/kubectl", "1.31").await;
    let admin = Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let una = Web::new(&s, "una", "Una-Passw0rd-1").await;
    for page in [
        "/harbor/users",
        "/harbor/groups",
        "/harbor/registries",
        "/harbor/gc",
        "/harbor/vulnerability",
        "/harbor/settings",
        "/harbor/logs",
    ] {
        let (st, body) = una.get(page).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
        assert!(body.contains("Only system administrators see this page."), "{body}");
    }
    let (_, body) = una.get("/harbor/projects").await;
    assert!(!body.contains("Administration"), "no administration entry for others: {body}");
    assert_eq!(
        una.post("/harbor/users", &[("username", "x"), ("password", "Xx-Passw0rd-1")]).await.0,
        StatusCode::FORBIDDEN
    );

    // Users: created (the password rules explained), made administrator, password set, deleted.
    let (st, page, _) = admin.post("/harbor/users", &[("username", "vera"), ("password", "short")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(page.contains("password"), "{page}");
    let (st, page, _) = admin
        .post("/harbor/users", &[("username", "vera"), ("email", "vera@example.org"), ("password", "Vera-Passw0rd-1")])
        .await;
    assert!(st == StatusCode::OK && page.contains("User vera created."), "{page}");
    let users: serde_json::Value =
        s.api(reqwest::Method::GET, "/users?q=username%3Dvera", None).await.json().await.unwrap();
    let vera = users[0]["user_id"].as_i64().unwrap();
    let (st, page, _) = admin.post(&format!("/harbor/users/{vera}/make-admin"), &[]).await;
    assert!(st == StatusCode::OK && page.contains("vera is now an administrator."), "{page}");
    let (st, page, _) = admin.post(&format!("/harbor/users/{vera}/password"), &[("password", "Vera-Passw0rd-2")]).await;
    assert!(st == StatusCode::OK && page.contains("The password of vera was changed."), "{page}");
    let vera_web = Web::new(&s, "vera", "Vera-Passw0rd-2").await;
    assert_eq!(vera_web.get("/harbor/users").await.0, StatusCode::OK, "an administrator now");
    let me = admin.get("/harbor/users").await.1;
    assert!(me.contains("<span class=\"muted\">you</span>"), "no buttons against oneself: {me}");
    let (st, page, _) = admin.post(&format!("/harbor/users/{vera}/delete"), &[]).await;
    assert!(st == StatusCode::OK && page.contains("User vera deleted."), "{page}");

    // Groups: one the identity provider would name, member of a project.
    let ops = s.api(reqwest::Method::GET, "/projects/ops-tools", None).await.json::<serde_json::Value>().await.unwrap();
    let members = format!("/harbor/projects/{}/members", id_of(&ops));
    let (st, _, _) = admin.post(&members, &[("name", "sre-team"), ("kind", "group"), ("role_id", "2")]).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, page) = admin.get("/harbor/groups").await;
    assert!(page.contains("<strong>sre-team</strong>") && page.contains("ops-tools</a> (Developer)"), "{page}");

    // Garbage collection: a dry run, its log; a schedule; a bad cron explained.
    let (st, page, _) = admin.post("/harbor/gc", &[("op", "dry-run"), ("time_window", "0")]).await;
    assert!(st == StatusCode::OK && page.contains("started"), "{page}");
    let runs: serde_json::Value = s.api(reqwest::Method::GET, "/system/gc", None).await.json().await.unwrap();
    let run = runs[0]["id"].as_i64().unwrap();
    assert!(runs[0]["job_parameters"].as_str().unwrap().contains("\"dry_run\":true"), "{runs}");
    let (st, page) = admin.get(&format!("/harbor/gc/{run}")).await;
    assert!(st == StatusCode::OK && page.contains("Run ") && page.contains("dry_run"), "{page}");
    let (st, page, _) = admin.post("/harbor/gc", &[("op", "schedule"), ("kind", "Daily"), ("time_window", "2")]).await;
    assert!(st == StatusCode::OK && page.contains("Schedule saved: Daily."), "{page}");
    let sched: serde_json::Value = s.api(reqwest::Method::GET, "/system/gc/schedule", None).await.json().await.unwrap();
    assert_eq!(sched["schedule"]["type"], "Daily");
    let (st, page, _) = admin
        .post("/harbor/gc", &[("op", "schedule"), ("kind", "Custom"), ("cron", "at noon"), ("time_window", "2")])
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("role=\"alert\""), "{page}");

    // The vulnerability database: an OSV file uploaded through the form, then scan all.
    let (_, page) = admin.get("/harbor/vulnerability").await;
    assert!(page.contains("No advisories imported"), "{page}");
    let osv = serde_json::json!({"id": "BERTH-TEST-1", "modified": "2026-01-01T00:00:00Z", "summary": "test",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"}, "ranges": [{"type": "ECOSYSTEM",
        "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}]});
    let boundary = "berthboundary42";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"test-advisories.json\"\r\nContent-Type: application/json\r\n\r\n{osv}\r\n--{boundary}--\r\n",
        admin.csrf
    );
    let upload = |body: String| {
        client()
            .post(s.url("/harbor/vulnerability/import"))
            .header("cookie", &admin.cookie)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
    };
    let r = upload(body.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Imported 1 advisories") && page.contains("test-advisories.json, uploaded by admin"),
        "{page}"
    );
    let r = upload(body.replace("test-advisories.json", "notes.txt")).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("give a .zip, .json, .jsonl or .jsonl.gz file"));
    let r = upload(body.replace(&admin.csrf, "forged")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (st, page, _) = admin.post("/harbor/vulnerability/scan-all", &[]).await;
    assert!(st == StatusCode::OK && page.contains("1 scans requested."), "{page}");

    // Settings: the system allowlist.
    let (st, page, _) =
        admin.post("/harbor/settings", &[("cves", "CVE-2023-44487 CVE-2024-6387"), ("expires", "")]).await;
    assert!(st == StatusCode::OK && page.contains("names 2 vulnerabilities"), "{page}");
    let list: serde_json::Value = s.api(reqwest::Method::GET, "/system/CVEAllowlist", None).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    // The system audit log, filtered by user.
    let page = admin.get_until("/harbor/logs?username=admin&operation=create", "ops-tools").await;
    assert!(page.contains("ops-tools") && !page.contains("<td>una</td>"), "{page}");
}

/// Public projects without an account: listed, their repositories and artifacts readable,
/// nothing to change; a private project's pages send to sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_projects_are_browsable_without_an_account() {
    let s = TestServer::start().await;
    s.project("pub", true).await;
    s.project("priv", false).await;
    let digest = sha256(&s.push_image("pub/tool", "2.0").await);
    s.push_image("priv/secret", "1").await;
    let id = |name: &str| {
        let s = &s;
        let name = name.to_owned();
        async move { id_of(&s.api(reqwest::Method::GET, &format!("/projects/{name}"), None).await.json().await.unwrap()) }
    };
    let (pubid, privid) = (id("pub").await, id("priv").await);
    let c = client();
    let get = |path: String| {
        let c = c.clone();
        let url = s.url(&path);
        async move {
            let r = c.get(url).send().await.unwrap();
            let to = r.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
            (r.status(), r.text().await.unwrap(), to)
        }
    };
    let (st, page, _) = get(format!("/harbor/projects/{pubid}/repositories")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("pub/tool") && !page.contains(">Members<") && !page.contains(">Configuration<"), "{page}");
    let (st, page, _) = get(format!("/harbor/projects/{pubid}/repositories/tool/artifacts-tab")).await;
    assert!(st == StatusCode::OK && page.contains("docker pull") && page.contains(":2.0"), "{page}");
    let (st, page, _) =
        get(format!("/harbor/projects/{pubid}/repositories/tool/artifacts-tab/artifacts/{digest}")).await;
    assert!(st == StatusCode::OK && page.contains("Layers"), "{page}");
    for path in [
        format!("/harbor/projects/{privid}/repositories"),
        format!("/harbor/projects/{pubid}/configuration"),
        format!("/harbor/projects/{pubid}/members"),
        format!("/harbor/projects/{pubid}/repositories/tool/policies"),
    ] {
        let (st, _, to) = get(path.clone()).await;
        if st == StatusCode::SEE_OTHER {
            assert!(to.starts_with("/account/sign-in?next="), "{path}: {to}");
        } else {
            assert_eq!(st, StatusCode::FORBIDDEN, "{path}");
        }
    }
}

/// What each project role sees of a private project in the portal — tabs, commands and
/// controls follow the one authorization decision, and no control is shown that would be
/// refused. Strangers get "not found", anonymous visitors the sign-in page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_sees_what_it_may_do() {
    let s = TestServer::start().await;
    s.project("vault", false).await;
    s.push_image("vault/app", "v1").await;
    let id = id_of(&s.api(reqwest::Method::GET, "/projects/vault", None).await.json().await.unwrap());
    // (user, role id): project admin, maintainer, developer, guest, limited guest, none.
    let roles = [("pa", 1), ("ma", 4), ("de", 2), ("gu", 3), ("lg", 5), ("st", 0)];
    for (user, role) in roles {
        s.user(user, "Role-Passw0rd-1").await;
        if role > 0 {
            s.member("vault", user, role).await;
        }
    }
    let base = format!("/harbor/projects/{id}");
    // Expected per role: members tab, robots tab, logs tab, push commands, the add-member
    // form, the robot form, configuration's Save, policy editing.
    let expect: [(&str, [bool; 8]); 5] = [
        ("pa", [true, true, true, true, true, true, true, true]),
        ("ma", [true, true, true, true, false, false, false, false]),
        ("de", [true, false, true, true, false, false, false, false]),
        ("gu", [true, false, true, false, false, false, false, false]),
        ("lg", [false, false, false, false, false, false, false, false]),
    ];
    for (user, want) in expect {
        let w = Web::new(&s, user, "Role-Passw0rd-1").await;
        let (st, repos) = w.get(&format!("{base}/repositories")).await;
        assert_eq!(st, StatusCode::OK, "{user}");
        let (_, members) = w.get(&format!("{base}/members")).await;
        let (_, robots) = w.get(&format!("{base}/robot-account")).await;
        let (_, config) = w.get(&format!("{base}/configuration")).await;
        let (_, policy) = w.get(&format!("{base}/policy")).await;
        let got = [
            repos.contains(&format!("href=\"{base}/members\"")),
            repos.contains(&format!("href=\"{base}/robot-account\"")),
            repos.contains(&format!("href=\"{base}/logs\"")),
            repos.contains("docker push"),
            members.contains("Add a member"),
            robots.contains("id=\"robot-name\""),
            config.contains(">Save</button>"),
            policy.contains("Add an immutability rule"),
        ];
        assert_eq!(got, want, "{user}: members, robots, logs tabs; push; add member; robot form; save; policy");
        // What a page does not show, its address refuses too.
        if !want[0] {
            assert_eq!(w.get(&format!("{base}/members")).await.0, StatusCode::FORBIDDEN, "{user}");
        }
        if !want[2] {
            assert_eq!(w.get(&format!("{base}/logs")).await.0, StatusCode::FORBIDDEN, "{user}");
        }
        assert!(!repos.contains("/harbor/users"), "{user}: no administration");
        assert_eq!(w.get("/harbor/users").await.0, StatusCode::FORBIDDEN, "{user}");
    }
    let stranger = Web::new(&s, "st", "Role-Passw0rd-1").await;
    for tab in ["repositories", "members", "robot-account", "policy", "configuration", "logs"] {
        assert_eq!(stranger.get(&format!("{base}/{tab}")).await.0, StatusCode::NOT_FOUND, "a stranger: {tab}");
    }
    let (st, page) = stranger.get(&format!("{base}/repositories/app/artifacts-tab")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{page}");
    let r = client().get(s.url(&format!("{base}/repositories"))).send().await.unwrap();
    assert!(r.headers()[LOCATION].to_str().unwrap().starts_with("/account/sign-in?next="));
    // A system administrator sees administration.
    let admin = Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    assert!(admin.get("/harbor/projects").await.1.contains("href=\"/harbor/users\""));
}

/// Markup in everything users can type — label names and descriptions, manifest
/// annotations, image config labels, environment and command, user names, group names,
/// robot descriptions, repository policies — is shown as text on every page of the portal,
/// in Chromium: nothing of it becomes an element, a handler or a running script. axe-core
/// checks each page on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_input_never_becomes_live_markup() {
    use reqwest::Method;
    let s = TestServer::start().await;
    let x = r#"<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>"#;
    s.project("xss", false).await;
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "created": x,
        "config": {"Labels": {"evil": x}, "Env": [format!("X={x}")], "Cmd": ["sh", "-c", x], "User": x},
        "history": [{"created_by": x}]});
    let config = serde_json::to_vec(&config).unwrap();
    let cd = s.push_blob("xss/app", &config).await;
    let layer = random_bytes(1000);
    let ld = s.push_blob("xss/app", &layer).await;
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
        "annotations": {"org.opencontainers.image.description": x, x: "key"}});
    let body = serde_json::to_vec(&manifest).unwrap();
    let r = s.put_manifest("xss/app", "v1", "application/vnd.oci.image.manifest.v1+json", &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let digest = sha256(&body);
    let r = s.api(Method::POST, "/labels", Some(serde_json::json!({"name": x, "description": x, "scope": "g"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let label = location(&r).rsplit('/').next().unwrap().parse::<i64>().unwrap();
    let r = s
        .api(Method::POST, "/projects/xss/repositories/app/artifacts/v1/labels", Some(serde_json::json!({"id": label})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .api(Method::POST, "/users", Some(serde_json::json!({"username": "mallory", "realname": x, "email": "m@example.org", "password": "Mallory-Passw0rd-1"})))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .api(
            Method::POST,
            "/projects/xss/members",
            Some(serde_json::json!({"role_id": 3, "member_group": {"group_name": x}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let robot = serde_json::json!({"name": "bot", "description": x, "level": "project", "duration": -1,
        "permissions": [{"kind": "project", "namespace": "xss", "access": [{"resource": "repository", "action": "pull"}]}]});
    assert_eq!(s.api(Method::POST, "/robots", Some(robot)).await.status(), StatusCode::CREATED);
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Sid": "x", "Effect": "Deny",
        "Principal": {"AWS": [x]}, "Action": ["ecr:BatchGetImage"]}]});
    assert_eq!(
        s.api(Method::PUT, "/projects/xss/repositories/app/policy", Some(policy)).await.status(),
        StatusCode::OK
    );
    let endpoint = serde_json::json!({"name": x, "description": x, "type": "oci", "url": "http://127.0.0.1:9",
        "credential": {"access_key": x, "access_secret": "s"}});
    let r = s.api(Method::POST, "/registries", Some(endpoint)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let registry = location(&r).rsplit('/').next().unwrap().to_owned();
    let policy = serde_json::json!({"name": x, "description": x, "dest_registry": {"id": registry.parse::<i64>().unwrap()},
        "filters": [{"type": "name", "value": "xss/**"}]});
    assert_eq!(s.api(Method::POST, "/replication/policies", Some(policy)).await.status(), StatusCode::CREATED);
    let policy = s.api(Method::GET, "/replication/policies", None).await.json::<serde_json::Value>().await.unwrap()[0]
        ["id"]
        .as_i64()
        .unwrap();
    let r = s.api(Method::POST, "/replication/executions", Some(serde_json::json!({"policy_id": policy}))).await;
    let run = location(&r).rsplit('/').next().unwrap().to_owned();
    let id = id_of(&s.api(Method::GET, "/projects/xss", None).await.json().await.unwrap());
    let p = format!("/harbor/projects/{id}");
    let artifact = format!("{p}/repositories/app/artifacts-tab/artifacts/{digest}");
    let pages = [
        "/harbor/projects".to_string(),
        format!("{p}/repositories"),
        format!("{p}/members"),
        format!("{p}/robot-account"),
        format!("{p}/policy"),
        format!("{p}/configuration"),
        format!("{p}/logs"),
        format!("{p}/repositories/app/artifacts-tab"),
        artifact.clone(),
        format!("{p}/repositories/app/policies"),
        "/harbor/users".into(),
        "/harbor/groups".into(),
        "/harbor/registries".into(),
        format!("/harbor/registries/{registry}"),
        "/harbor/replications".into(),
        format!("/harbor/replications/executions/{run}"),
        "/harbor/jobs".into(),
        "/harbor/gc".into(),
        "/harbor/vulnerability".into(),
        "/harbor/logs".into(),
        "/harbor/settings".into(),
        "/harbor/profile".into(),
    ];
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/portal/browser.py");
    let shows = [
        format!("{p}/members"),
        artifact,
        "/harbor/users".into(),
        "/harbor/groups".into(),
        "/harbor/registries".into(),
        format!("/harbor/registries/{registry}"),
        "/harbor/replications".into(),
        format!("/harbor/replications/executions/{run}"),
    ];
    let out = run_ok(
        tokio::process::Command::new("python3")
            .arg(script)
            .args(["--base", &s.base, "--user", ADMIN, "--password", ADMIN_PASSWORD, "--shots"])
            .arg(s.dir.path().join("shots"))
            .arg("--visit")
            .args(&pages)
            .arg("--shows")
            .args(&shows)
            .args(["--expect-text", "onerror=\"window.__xss=1\""]),
    )
    .await;
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
}

/// An index shows its platforms (each linked to its image), an image the accessories that
/// refer to it; the repository page lists the index once, with badges, not its children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_show_platforms_and_images_their_accessories() {
    let s = TestServer::start().await;
    s.project("multi", false).await;
    let amd = s.push_image("multi/app", "amd64-only").await;
    let arm = s.push_image("multi/app", "arm64-only").await;
    let entry = |m: &[u8], arch: &str, variant: Option<&str>| {
        let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(m),
            "size": m.len(), "platform": platform})
    };
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&amd, "amd64", None), entry(&arm, "arm64", Some("v8"))]});
    let index = serde_json::to_vec(&index).unwrap();
    let r = s.put_manifest("multi/app", "1.0", "application/vnd.oci.image.index.v1+json", &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // An SBOM that refers to the amd64 image.
    let empty = s.push_blob("multi/app", b"{}").await;
    let spdx = b"{\"spdxVersion\":\"SPDX-2.3\"}";
    let doc = s.push_blob("multi/app", spdx).await;
    let sbom = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": doc, "size": spdx.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&amd), "size": amd.len()}});
    let sbom = serde_json::to_vec(&sbom).unwrap();
    let r = s.put_manifest("multi/app", &sha256(&sbom), "application/vnd.oci.image.manifest.v1+json", &sbom).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let admin = Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let id = id_of(&s.api(reqwest::Method::GET, "/projects/multi", None).await.json().await.unwrap());
    let repo = format!("/harbor/projects/{id}/repositories/app/artifacts-tab");
    let (_, page) = admin.get(&repo).await;
    assert!(page.contains("2 platforms</span>") && page.contains("1 accessories</span>"), "{page}");
    assert!(!page.contains(&sha256(&sbom)[..19]), "the SBOM is shown under its image, not as a row: {page}");
    let (st, page) = admin.get(&format!("{repo}/artifacts/{}", sha256(&index))).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        page.contains("Image index")
            && page.contains("<td>linux/amd64</td>")
            && page.contains("<td>linux/arm64/v8</td>"),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"{repo}/artifacts/{}\"", sha256(&arm))), "{page}");
    let (_, page) = admin.get(&format!("{repo}/artifacts/{}", sha256(&amd))).await;
    assert!(page.contains("id=\"accessories\"") && page.contains("<td>application/spdx+json</td>"), "{page}");
    let (_, page) = admin.get(&format!("{repo}/artifacts/{}", sha256(&sbom))).await;
    assert!(page.contains("SBOM") && page.contains("Refers to") && !page.contains("id=\"vulnerabilities\""), "{page}");
}

/// A portal session ends when its time is up (`auth.session_ttl`, here a second, plus the
/// tokens' five seconds of leeway for clock skew): the next page asks to sign in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_sessions_expire() {
    let s = TestServer::start_with(|c| c.auth.session_ttl = std::time::Duration::from_secs(1)).await;
    let w = Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(w.get("/harbor/profile").await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(7_000)).await;
    let r = w.c.get(s.url("/harbor/profile")).header("cookie", &w.cookie).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/account/sign-in?next=%2Fharbor%2Fprofile");
}

/// Every journey of the portal once, in Chromium, as a user clicks through it
/// (`browser.py --journeys`); then what it changed is checked where clients see it — the
/// project made public in the browser is pulled anonymously by skopeo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_journeys_in_chromium() {
    let s = TestServer::start().await;
    s.project("research-genomics", false).await;
    s.user("una", "Una-Passw0rd-1").await;
    for tag in ["v1", "v2"] {
        s.push_image("research-genomics/bwa", tag).await;
    }
    let anonymous_pull = || {
        tokio::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", "--no-creds"])
            .arg(format!("docker://{}/research-genomics/bwa:v2", s.host()))
            .output()
    };
    assert!(!anonymous_pull().await.unwrap().status.success(), "private at first");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/portal/browser.py");
    let out = run_ok(
        tokio::process::Command::new("python3")
            .arg(script)
            .args(["--base", &s.base, "--user", ADMIN, "--password", ADMIN_PASSWORD, "--journeys", "--shots"])
            .arg(s.dir.path().join("shots")),
    )
    .await;
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
    let get = |path: &'static str| {
        let s = &s;
        async move { s.api(reqwest::Method::GET, path, None).await.json::<serde_json::Value>().await.unwrap() }
    };
    assert_eq!(get("/projects/climate-models").await["name"], "climate-models");
    let members = get("/projects/research-genomics/members").await;
    let una = members.as_array().unwrap().iter().find(|m| m["entity_name"] == "una").expect("una is a member");
    assert_eq!(una["role_id"], 3, "{members}");
    let rules = get("/projects/research-genomics/immutabletagrules").await;
    assert_eq!(rules[0]["tag_selectors"][0]["pattern"], "v1", "{rules}");
    let p = get("/projects/research-genomics").await;
    assert_eq!(p["metadata"]["public"], "true");
    assert!(p["metadata"]["retention_id"].as_str().is_some(), "{p}");
    assert!(anonymous_pull().await.unwrap().status.success(), "public now: anyone pulls");
    let hooks = get("/projects/research-genomics/webhook/policies").await;
    assert_eq!(hooks[0]["name"], "ci-builds", "{hooks}");
    assert_eq!(hooks[0]["event_types"], serde_json::json!(["PUSH_ARTIFACT", "DELETE_ARTIFACT"]));
    assert_eq!(hooks[0]["targets"][0]["payload_format"], "CloudEvents");
    let users = get("/users?q=username%3Dvera").await;
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
    assert_eq!(get("/system/CVEAllowlist").await["items"][0]["cve_id"], "CVE-2024-3094");
    let runs = get("/system/gc").await;
    assert!(runs[0]["job_parameters"].as_str().unwrap().contains("\"dry_run\":true"), "{runs}");
}

/// From an artifact's page: a tag added and removed, a scan requested, the artifact deleted —
/// by who may; a guest sees none of the buttons and its forms are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_scans_and_deletes_from_the_artifact_page() {
    let s = TestServer::start().await;
    s.project("ops", false).await;
    s.user("gus", "Gus-Passw0rd-1").await;
    s.member("ops", "gus", 3).await;
    let digest = sha256(&s.push_image("ops/tool", "1.0").await);
    s.push_image("ops/tool", "2.0").await;
    let id = id_of(&s.api(reqwest::Method::GET, "/projects/ops", None).await.json().await.unwrap());
    let page = format!("/harbor/projects/{id}/repositories/tool/artifacts-tab/artifacts/{digest}");
    let admin = Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let gus = Web::new(&s, "gus", "Gus-Passw0rd-1").await;
    let (_, html) = gus.get(&page).await;
    assert!(!html.contains("Delete artifact") && !html.contains("Add tag") && !html.contains("Scan now"), "{html}");
    assert_eq!(gus.post(&format!("{page}/add-tag"), &[("tag", "mine")]).await.0, StatusCode::FORBIDDEN);
    let (st, html, _) = admin.post(&format!("{page}/add-tag"), &[("tag", "stable")]).await;
    assert!(st == StatusCode::OK && html.contains("Tag added."), "{html}");
    let r = s.get("/v2/ops/tool/manifests/stable").await;
    assert_eq!(header(&r, "docker-content-digest"), Some(digest.as_str()));
    let (st, html, _) = admin.post(&format!("{page}/add-tag"), &[("tag", "no spaces")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(html.contains("Tag &quot;no spaces&quot;"), "{html}");
    let (st, html, _) = admin.post(&format!("{page}/remove-tag"), &[("tag", "1.0")]).await;
    assert!(st == StatusCode::OK && html.contains("Tag removed."), "{html}");
    assert_eq!(s.get("/v2/ops/tool/manifests/1.0").await.status(), StatusCode::NOT_FOUND);
    let (st, html, _) = admin.post(&format!("{page}/scan"), &[]).await;
    assert!(st == StatusCode::OK && html.contains("Scan requested"), "{html}");
    let (st, _, to) = admin.post(&format!("{page}/delete"), &[]).await;
    assert_eq!((st, to), (StatusCode::SEE_OTHER, format!("/harbor/projects/{id}/repositories/tool/artifacts-tab")));
    assert_eq!(s.get(&format!("/v2/ops/tool/manifests/{digest}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.get("/v2/ops/tool/manifests/2.0").await.status(), StatusCode::OK, "the other artifact stays");
}

/// Administration → Registries: a connection tested before it is saved (the form keeps what
/// was typed), an endpoint created, checked, changed without retyping its password, deleted;
/// only by system administrators, only with the CSRF token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_endpoints_in_the_portal() {
    use reqwest::Method;
    let upstream = berth_test_support::Distribution::start(Some(("mirror", "Upstream-Secret-42")));
    let s = TestServer::start().await;
    s.user("una", "Una-Passw0rd-1").await;
    let admin = Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let una = Web::new(&s, "una", "Una-Passw0rd-1").await;
    let (st, page) = admin.get("/harbor/registries").await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("No registry endpoints yet"), "{page}");
    let form = |secret: &'static str, action: &'static str| {
        vec![
            ("name", "site-b".to_owned()),
            ("kind", "docker-registry".to_owned()),
            ("url", upstream.url.clone()),
            ("access_key", "mirror".to_owned()),
            ("access_secret", secret.to_owned()),
            ("description", "the other site".to_owned()),
            (action, "1".to_owned()),
        ]
    };
    let post = |path: String, f: Vec<(&'static str, String)>| {
        let admin = &admin;
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            admin.post(&path, &f).await
        }
    };
    // Test first: wrong credentials are explained, what was typed stays (but the password).
    let (st, page, _) = post("/harbor/registries".into(), form("wrong", "test")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("refused the credentials"), "{page}");
    assert!(page.contains("value=\"site-b\"") && !page.contains("wrong"), "{page}");
    assert!(s.api(Method::GET, "/registries", None).await.json::<Vec<serde_json::Value>>().await.unwrap().is_empty());
    let (st, page, _) = post("/harbor/registries".into(), form("Upstream-Secret-42", "test")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("answered and accepted the credentials"), "{page}");
    let (st, page, _) = post("/harbor/registries".into(), form("Upstream-Secret-42", "save")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("Registry site-b created") && page.contains("Not checked"), "{page}");
    let list: Vec<serde_json::Value> = s.api(Method::GET, "/registries", None).await.json().await.unwrap();
    let id = list[0]["id"].as_i64().unwrap();
    assert_eq!(list[0]["description"], "the other site");
    let (st, page, _) = admin.post(&format!("/harbor/registries/{id}/ping"), &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("site-b answered") && page.contains("Healthy"), "{page}");
    // Its page: the password is never shown; an empty one keeps it.
    let (st, page) = admin.get(&format!("/harbor/registries/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("leave empty to keep the stored one") && !page.contains("Upstream-Secret-42"), "{page}");
    let mut change = form("", "save");
    change[5].1 = "site B, Zürich".into();
    let (st, page, _) = post(format!("/harbor/registries/{id}"), change).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Saved."), "{page}");
    let got: serde_json::Value = s.api(Method::GET, &format!("/registries/{id}"), None).await.json().await.unwrap();
    assert_eq!(got["description"], "site B, Zürich");
    let r = s.api(Method::POST, "/registries/ping", Some(serde_json::json!({"id": id}))).await;
    assert_eq!(r.status(), StatusCode::OK, "the stored password was kept");
    // Others may not, nor without the token.
    let (st, _) = una.get(&format!("/harbor/registries/{id}")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(una.post(&format!("/harbor/registries/{id}/delete"), &[]).await.0, StatusCode::FORBIDDEN);
    let r = client()
        .post(format!("{}/harbor/registries/{id}/delete", s.base))
        .header("cookie", &admin.cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A proxy-cache project of it, from the projects page; it keeps the endpoint in use.
    let (_, page) = admin.get("/harbor/projects").await;
    assert!(page.contains("No, a regular project") && page.contains("site-b"), "{page}");
    let (_, page) = una.get("/harbor/projects").await;
    assert!(!page.contains("No, a regular project"), "only administrators make caches: {page}");
    let (st, _, to) = admin.post("/harbor/projects", &[("name", "hub"), ("registry", &id.to_string())]).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, page) = admin.get(&to).await;
    assert!(page.contains("Proxy cache of site-b"), "{page}");
    let p: serde_json::Value = s.api(Method::GET, "/projects/hub", None).await.json().await.unwrap();
    assert_eq!(p["registry_id"], id);
    let (_, page) = admin.get("/harbor/projects").await;
    assert!(page.contains(">Proxy cache<"), "{page}");
    let (st, page, _) = admin.post(&format!("/harbor/registries/{id}/delete"), &[]).await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED);
    assert!(page.contains("used by the proxy cache of hub"), "{page}");
    assert_eq!(s.api(Method::DELETE, "/projects/hub", None).await.status(), StatusCode::OK);
    let (st, page, _) = admin.post(&format!("/harbor/registries/{id}/delete"), &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("Registry site-b deleted") && page.contains("No registry endpoints yet"), "{page}");
}

/// Administration → Replication: a push policy made from the form, run from its button, its
/// run's page with the artifact's task and log; refusals explained; administrators only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_in_the_portal() {
    let upstream = berth_test_support::Distribution::start(None);
    let s = TestServer::start().await;
    s.push_image("site/app", "v1").await;
    s.user("una", "Una-Passw0rd-1").await;
    let admin = Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let una = Web::new(&s, "una", "Una-Passw0rd-1").await;
    let (_, page) = admin.get("/harbor/replications").await;
    assert!(page.contains("Add a registry endpoint first"), "{page}");
    let r = s
        .api(
            reqwest::Method::POST,
            "/registries",
            Some(serde_json::json!({"name": "dr", "type": "oci", "url": upstream.url})),
        )
        .await;
    let endpoint = location(&r).rsplit('/').next().unwrap().to_owned();
    let form = |name: &'static str, repos: &'static str| {
        vec![
            ("name", name.to_owned()),
            ("direction", "push".to_owned()),
            ("endpoint", endpoint.clone()),
            ("repositories", repos.to_owned()),
            ("tags", "v*".to_owned()),
            ("trigger", "manual".to_owned()),
            ("speed", String::new()),
        ]
    };
    let post = |path: String, f: Vec<(&'static str, String)>| {
        let admin = &admin;
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            admin.post(&path, &f).await
        }
    };
    let (st, page, _) = post("/harbor/replications".into(), form("bad", "site/[")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(page.contains("filter name"), "{page}");
    let (st, page, _) = post("/harbor/replications".into(), form("to-dr", "site/**")).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Replication policy to-dr created") && page.contains("Push to dr"), "{page}");
    let id =
        s.api(reqwest::Method::GET, "/replication/policies", None).await.json::<serde_json::Value>().await.unwrap()[0]
            ["id"]
            .as_i64()
            .unwrap();
    let (st, page, _) = admin.post(&format!("/harbor/replications/{id}/run"), &[]).await;
    assert_eq!(st, StatusCode::OK);
    let run = page.split("Run ").nth(1).and_then(|r| r.split(' ').next()).unwrap().to_owned();
    let page = admin.get_until(&format!("/harbor/replications/executions/{run}"), "Succeeded").await;
    assert!(page.contains("site/app:v1") && page.contains("copied site/app:v1"), "{page}");
    // Administrators only.
    let (st, _) = una.get("/harbor/replications").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(una.post(&format!("/harbor/replications/{id}/delete"), &[]).await.0, StatusCode::FORBIDDEN);
    let (st, page, _) = admin.post(&format!("/harbor/replications/{id}/delete"), &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("No replication policies yet"), "{page}");
}

/// Labels on an artifact's page: a developer adds a global or project label from a list and
/// removes it (as the labels API sees it); a guest sees them and cannot change them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_added_and_removed_on_the_artifact_page() {
    let s = TestServer::start().await;
    let pid = s.project("lab", false).await;
    let digest = sha256(&s.push_image("lab/app", "v1").await);
    let r = s.api(reqwest::Method::POST, "/labels", Some(serde_json::json!({"name": "release", "scope": "g"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let label: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
    s.user("dev", "Dev-Passw0rd-1").await;
    s.member("lab", "dev", 2).await;
    s.user("gus", "Gus-Passw0rd-1").await;
    s.member("lab", "gus", 3).await;
    let page = format!("/harbor/projects/{pid}/repositories/app/artifacts-tab/artifacts/{digest}");
    let dev = Web::new(&s, "dev", "Dev-Passw0rd-1").await;
    let (_, html) = dev.get(&page).await;
    assert!(html.contains("Add label") && html.contains(">release (global)<"), "{html}");
    let (st, html, _) = dev.post(&format!("{page}/add-label"), &[("label", &label.to_string())]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("Label added.") && html.contains("Remove label release"), "{html}");
    let api_path = format!("/projects/lab/repositories/app/artifacts/{digest}");
    let a: serde_json::Value = s.api(reqwest::Method::GET, &api_path, None).await.json().await.unwrap();
    assert_eq!(a["labels"][0]["name"], "release", "{a}");
    // The listing filters by label (Harbor's `q=labels=(id …)`).
    s.push_image("lab/app", "v2").await;
    let list = |q: String| {
        let s = &s;
        async move {
            let path = format!("/projects/lab/repositories/app/artifacts?q={q}");
            let v: serde_json::Value = s.api(reqwest::Method::GET, &path, None).await.json().await.unwrap();
            v.as_array().unwrap().iter().map(|a| a["digest"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(format!("labels%3D%28{label}%29")).await, vec![digest.clone()]);
    assert_eq!(list(String::new()).await.len(), 2);
    // A guest sees the label, without the controls, and cannot post them.
    let gus = Web::new(&s, "gus", "Gus-Passw0rd-1").await;
    let (_, html) = gus.get(&page).await;
    assert!(html.contains("release") && !html.contains("Remove label") && !html.contains("Add label"), "{html}");
    let (st, _, _) = gus.post(&format!("{page}/remove-label"), &[("label", &label.to_string())]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, html, _) = dev.post(&format!("{page}/remove-label"), &[("label", &label.to_string())]).await;
    assert!(st == StatusCode::OK && html.contains("Label removed."), "{html}");
    let a: serde_json::Value = s.api(reqwest::Method::GET, &api_path, None).await.json().await.unwrap();
    assert_eq!(a["labels"], serde_json::json!([]));
}
