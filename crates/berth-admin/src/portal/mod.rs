//! The web portal, served by the binary: server-rendered HTML (`maud`: escaped by default,
//! checked at compile time), one embedded stylesheet and one small script that only enhances
//! (copy buttons, sortable tables): every page works without it. Paths follow Harbor's
//! portal (`/account/sign-in`, `/harbor/projects`) so bookmarks carry over.
//!
//! **Security:** every response carries a strict Content-Security-Policy (`default-src
//! 'none'`, the stylesheet and one small script from this origin, no inline script or style,
//! `frame-ancestors 'none'`, `form-action 'self'`), `X-Frame-Options: DENY`, `nosniff` and `Referrer-Policy`. Every
//! form that changes something carries a CSRF token that must equal the `berth_csrf`
//! cookie (double submit; the cookie is `SameSite=Strict`, so a cross-site form cannot send
//! it). The session is the same `berth_session` cookie as OIDC sign-in and the API's, so
//! what a page shows passes the one authorization decision (`Auth::decide`).
//!
//! **Structure:** [`layout`] draws every page — a skip link, the top bar with the product,
//! the navigation (sections appear as their pages exist: administration, registries,
//! replication… are added to [`NAV`]) and who is signed in — around the page's own markup.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use berth_auth::rbac::Perm;
use berth_auth::{AuthError, Principal, Target};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use sha2::Digest;

use crate::{AdminState, SESSION_COOKIE, cookie};

mod admin;
mod artifact;
mod config;
mod jobs;
mod keys;
mod logs;
mod onboard;
mod policy;
mod profile;
mod project;
mod registries;
mod replication;
mod robots;
mod webhooks;

const CSRF_COOKIE: &str = "berth_csrf";

/// The portal's files: (name, extension, content type, content). Each is served at a path
/// holding its content hash, so browsers may cache it forever and a new build is never stale.
const ASSETS: [(&str, &str, &str, &str); 3] = [
    ("portal", "css", "text/css; charset=utf-8", include_str!("portal.css")),
    ("portal", "js", "text/javascript; charset=utf-8", include_str!("portal.js")),
    ("icon", "svg", "image/svg+xml", include_str!("icon.svg")),
];

/// Each asset's versioned path, in the order of [`ASSETS`].
static ASSET_PATHS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(name, ext, _, body)| {
            let h = hex::encode(sha2::Sha256::digest(body.as_bytes()));
            format!("/static/{name}-{}.{ext}", &h[..12])
        })
        .collect()
});

/// The top navigation: (label, path). Later sections add themselves here.
const NAV: &[(&str, &str)] = &[("Projects", "/harbor/projects")];
/// Sections only system administrators see.
const ADMIN_NAV: &[(&str, &str)] = &[("Administration", admin::USERS)];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(home))
        .route("/account/sign-in", get(sign_in_page).post(sign_in))
        .route("/account/sign-out", axum::routing::post(sign_out))
        .route("/harbor/projects", get(projects).post(create_project))
        .merge(profile::routes())
        .merge(jobs::routes())
        .merge(artifact::routes())
        .merge(project::routes())
        .merge(robots::routes())
        .merge(config::routes())
        .merge(policy::routes())
        .merge(logs::routes())
        .merge(admin::routes())
        .merge(registries::routes())
        .merge(replication::routes())
        .merge(webhooks::routes())
        .merge(onboard::routes())
        .route("/static/{file}", get(asset))
        .layer(axum::middleware::map_response(secure_headers))
}

/// `/`: the projects of whoever is signed in, else the sign-in page (which also leads to the
/// public projects).
async fn home(State(s): State<AdminState>, headers: HeaderMap) -> Redirect {
    if signed_in(&s, &headers).await.is_some() {
        Redirect::to("/harbor/projects")
    } else {
        Redirect::to("/account/sign-in")
    }
}

async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    r
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let path = format!("/static/{file}");
    match ASSET_PATHS.iter().position(|p| *p == path) {
        Some(i) => {
            let (_, _, kind, body) = ASSETS[i];
            ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], body)
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// The request's CSRF token, and the `Set-Cookie` to send when it is new.
pub(super) fn csrf(s: &AdminState, headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, CSRF_COOKIE).filter(|t| t.len() == 43) {
        Some(t) => (t.to_owned(), None),
        None => {
            let t = berth_auth::token::b64url(&rand::random::<[u8; 32]>());
            let set = format!("{CSRF_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict{}", crate::web::secure(s));
            (t, Some(set))
        }
    }
}

pub(super) fn csrf_ok(headers: &HeaderMap, sent: &str) -> bool {
    cookie(headers, CSRF_COOKIE).is_some_and(|c| berth_auth::secret::ct_eq(c.as_bytes(), sent.as_bytes()))
}

/// Who the session cookie names, if anyone (an expired session is nobody).
pub(super) async fn signed_in(s: &AdminState, headers: &HeaderMap) -> Option<Principal> {
    let token = cookie(headers, SESSION_COOKIE)?;
    s.auth.session_principal(token).await.ok().filter(|p| !matches!(p, Principal::Anonymous))
}

pub(super) fn with_cookies(markup: Markup, status: StatusCode, cookies: &[String]) -> Response {
    let mut r = (status, axum::response::Html(markup.into_string())).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// What a page handler starts from: who asks (`Principal::Anonymous` when nobody is signed
/// in — public projects are readable without an account), the CSRF token its forms carry,
/// and the cookie to set when that token is new.
pub(super) struct Ctx {
    pub(super) who: Principal,
    pub(super) csrf: String,
    cookies: Vec<String>,
}

impl Ctx {
    /// The context of any request, signed in or not.
    pub(super) async fn new(s: &AdminState, headers: &HeaderMap) -> Ctx {
        let who = signed_in(s, headers).await.unwrap_or(Principal::Anonymous);
        let (csrf, set) = csrf(s, headers);
        Ctx { who, csrf, cookies: set.into_iter().collect() }
    }

    /// The context of a page only signed-in users see; else the redirect to sign in.
    pub(super) async fn user(s: &AdminState, headers: &HeaderMap, next: &str) -> Result<Ctx, Response> {
        let c = Ctx::new(s, headers).await;
        if c.anonymous() { Err(to_sign_in(next)) } else { Ok(c) }
    }

    pub(super) fn anonymous(&self) -> bool {
        matches!(self.who, Principal::Anonymous)
    }

    /// Does the one authorization decision allow the caller `perm` on `target`?
    pub(super) async fn may(&self, s: &AdminState, target: Target<'_>, perm: Perm) -> bool {
        s.auth.decide(&self.who, target, perm).await.is_ok()
    }

    /// The page `body` in the frame, `current` marking its navigation entry.
    pub(super) fn page(&self, title: &str, current: &str, body: Markup, status: StatusCode) -> Response {
        with_cookies(layout(title, &self.who, current, &self.csrf, body), status, &self.cookies)
    }
}

/// The context of an administration page (`path`, titled `title`): system administrators
/// only; anyone else is told so.
pub(super) async fn admin_ctx(s: &AdminState, headers: &HeaderMap, path: &str, title: &str) -> Result<Ctx, Response> {
    let c = Ctx::user(s, headers, path).await?;
    if c.may(s, Target::System, Perm::Administer).await {
        return Ok(c);
    }
    let body = html! { h1 { (title) } p { "Only system administrators see this page." } };
    Err(c.page(title, "", body, StatusCode::FORBIDDEN))
}

/// Check an administration form (CSRF token, a system administrator); who acts.
pub(super) async fn admin_action(
    s: &AdminState,
    headers: &HeaderMap,
    csrf: &str,
    back: &str,
) -> Result<Principal, Response> {
    let Some(who) = signed_in(s, headers).await else { return Err(to_sign_in(back)) };
    if !csrf_ok(headers, csrf) || s.auth.decide(&who, Target::System, Perm::Administer).await.is_err() {
        let msg =
            "Only system administrators may do this, from the administration pages (reload the page and try again).";
        return Err((StatusCode::FORBIDDEN, msg).into_response());
    }
    Ok(who)
}

/// The redirect to the sign-in page, coming back to `next` after.
pub(super) fn to_sign_in(next: &str) -> Response {
    Redirect::to(&format!("/account/sign-in?next={}", crate::enc(next))).into_response()
}

/// The frame of every page.
pub(super) fn layout(title: &str, who: &Principal, current: &str, csrf: &str, body: Markup) -> Markup {
    let signed_in = !matches!(who, Principal::Anonymous);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Berth" }
                link rel="stylesheet" href=(ASSET_PATHS[0]);
                link rel="icon" type="image/svg+xml" href=(ASSET_PATHS[2]);
                script src=(ASSET_PATHS[1]) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Berth" }
                    @if signed_in || !current.is_empty() {
                        nav aria-label="Main" {
                            ul {
                                @for (label, path) in NAV.iter().chain(if who.is_sysadmin() { ADMIN_NAV } else { &[] }) {
                                    li {
                                        @if *path == current {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if !signed_in && !current.is_empty() {
                        div.who { a.button.quiet href="/account/sign-in" { "Sign in" } }
                    }
                    @if signed_in {
                        @let p = who;
                        div.who {
                            @if p.user().is_some() {
                                a href="/harbor/profile" aria-current=[(current == "/harbor/profile").then_some("page")] {
                                    "Signed in as " strong { (p.name()) }
                                }
                            } @else {
                                span { "Signed in as " strong { (p.name()) } }
                            }
                            form method="post" action="/account/sign-out" {
                                input type="hidden" name="csrf" value=(csrf);
                                button.quiet type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

#[derive(Deserialize, Default)]
struct SignInQuery {
    #[serde(default)]
    next: Option<String>,
}

/// A local path to go back to after signing in (never another site).
fn local_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/harbor/projects",
    }
}

fn sign_in_markup(s: &AdminState, csrf: &str, next: &str, error: Option<&str>, username: &str) -> Markup {
    let body = html! {
        div.panel.narrow.stack {
            h1 { "Sign in to Berth" }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form method="post" action="/account/sign-in" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="username" { "Username" }
                input #username type="text" name="username" value=(username) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                p { button type="submit" { "Sign in" } }
            }
            @if s.auth.oidc().is_some() {
                div.sso {
                    a.button.quiet href="/c/oidc/login" { "Sign in with your organisation (SSO)" }
                }
            }
            p.muted { a href="/harbor/projects" { "Browse public projects" } " without signing in." }
        }
    };
    layout("Sign in", &Principal::Anonymous, "", csrf, body)
}

async fn sign_in_page(State(s): State<AdminState>, headers: HeaderMap, Query(q): Query<SignInQuery>) -> Response {
    if signed_in(&s, &headers).await.is_some() {
        return Redirect::to(local_next(q.next.as_deref())).into_response();
    }
    let (token, set) = csrf(&s, &headers);
    let page = sign_in_markup(&s, &token, local_next(q.next.as_deref()), None, "");
    with_cookies(page, StatusCode::OK, &set.into_iter().collect::<Vec<_>>())
}

#[derive(Deserialize)]
struct SignInForm {
    csrf: String,
    #[serde(default)]
    next: Option<String>,
    username: String,
    password: String,
}

async fn sign_in(
    State(s): State<AdminState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    Form(f): Form<SignInForm>,
) -> Response {
    let next = local_next(f.next.as_deref()).to_owned();
    let (token, set) = csrf(&s, &headers);
    let cookies: Vec<String> = set.into_iter().collect();
    if !csrf_ok(&headers, &f.csrf) {
        let page = sign_in_markup(
            &s,
            &token,
            &next,
            Some("This sign-in form expired or came from another site. Please sign in again."),
            &f.username,
        );
        return with_cookies(page, StatusCode::FORBIDDEN, &cookies);
    }
    match s.auth.login(&f.username, &f.password, ip.as_deref()).await {
        Ok(p) => {
            s.auth.audit_login_success(&p, ip.as_deref(), "portal");
            let Ok(session) = s.auth.session_token(&p) else {
                let page = sign_in_markup(&s, &token, &next, Some("Signing in failed; see the server log."), "");
                return with_cookies(page, StatusCode::INTERNAL_SERVER_ERROR, &cookies);
            };
            let mut r = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&crate::web::session_cookie(&s, Some(&session))) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            let (status, msg) = match &e {
                AuthError::BadCredentials => (StatusCode::UNAUTHORIZED, "Wrong username or password.".to_string()),
                AuthError::Locked { .. } | AuthError::Busy { .. } => (StatusCode::TOO_MANY_REQUESTS, format!("{e}.")),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "Signing in failed; see the server log.".to_string()),
            };
            with_cookies(sign_in_markup(&s, &token, &next, Some(&msg), &f.username), status, &cookies)
        }
    }
}

/// The client's address, as the server's connection info gives it (absent in some tests).
pub(crate) struct ClientIp(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(ClientIp(addr.map(|c| c.0.ip().to_string())))
    }
}

/// A form whose only field is its CSRF token (a button that changes something).
#[derive(Deserialize)]
pub(super) struct CsrfForm {
    pub(super) csrf: String,
}

async fn sign_out(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if !csrf_ok(&headers, &f.csrf) {
        return (StatusCode::FORBIDDEN, "This sign-out form expired; reload the page and try again.").into_response();
    }
    let mut r = Redirect::to("/account/sign-in").into_response();
    if let Ok(v) = HeaderValue::from_str(&crate::web::session_cookie(&s, None)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// The registry's host as clients name it in `docker login`/`pull`: the configured URL's,
/// else the one the browser used.
pub(super) fn registry_host(s: &AdminState, headers: &HeaderMap) -> String {
    // Portal pages are HTTP/1.1 or carry `Host`/proxy headers; the URI is not needed.
    berth_auth::origin::public_host(s.external_url.as_deref(), headers, &http::Uri::from_static("/"), s.tls)
}

/// An error of the services as a message for the page and its status.
pub(super) fn api_err<E: Into<crate::ApiError>>(e: E) -> (String, StatusCode) {
    let e = e.into();
    (e.message().to_owned(), e.status())
}

/// Commands to copy, each under its client's name, with a Copy button (shown by the script).
pub(super) fn commands(list: &[(&str, String)]) -> Markup {
    html! {
        div.commands {
            @for (label, command) in list {
                div.command {
                    span.client { (label) }
                    pre tabindex="0" { code { (command) } }
                    button.quiet.copy type="button" data-copy hidden aria-live="polite" { "Copy" }
                }
            }
        }
    }
}

/// A table header the script can sort by (`key` on a cell overrides its text as sort key).
pub(super) fn sortable(label: &str) -> Markup {
    html! { button type="button" data-sort hidden { (label) } span { (label) } }
}

/// A time as people read it: `2026-12-06 05:33 UTC`, the exact instant in its title.
pub(super) fn when(ms: i64) -> Markup {
    let exact = crate::time(ms);
    let short = format!("{} {} UTC", exact.get(..10).unwrap_or(""), exact.get(11..16).unwrap_or(""));
    html! { time datetime=(exact) title=(exact) { (short) } }
}

/// What an artifact is, in a word: image, index, Helm chart, SBOM, signature, or its type.
pub(super) fn kind_of(a: &berth_registry::ArtifactRow) -> String {
    let t = a.record.artifact_type.as_deref().unwrap_or("");
    let m = a.record.media_type.as_str();
    if m.contains("index") || m.contains("manifest.list") {
        "Image index".into()
    } else if crate::repos::artifact_type(a) == "CHART" {
        "Helm chart".into()
    } else if t.contains("spdx") || t.contains("cyclonedx") || t.contains("sbom") {
        "SBOM".into()
    } else if t.contains("signature") || t.contains("cosign") || t.contains("notary") {
        "Signature".into()
    } else if crate::repos::artifact_type(a) == "IMAGE" {
        "Image".into()
    } else {
        t.to_owned()
    }
}

pub(super) fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n.max(0) as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

async fn projects(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let search = q.get("q").map(|x| x.trim().to_owned()).unwrap_or_default();
    let page = q.get("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).max(1);
    projects_page(&s, &headers, &search, page, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct NewProjectForm {
    csrf: String,
    name: String,
    #[serde(default)]
    public: Option<String>,
    #[serde(default)]
    limit_gib: String,
    /// A proxy-cache project of this registry endpoint (empty: a regular project).
    #[serde(default)]
    registry: String,
}

/// Create a project from the form on the projects page, then open it.
async fn create_project(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<NewProjectForm>) -> Response {
    let Some(who) = signed_in(&s, &headers).await else {
        return to_sign_in("/harbor/projects");
    };
    let refuse = |e: String, status| projects_page(&s, &headers, "", 1, Some(e), status);
    if !csrf_ok(&headers, &f.csrf) {
        let e = "This form expired or came from another site; nothing was created. Try again.";
        return refuse(e.into(), StatusCode::FORBIDDEN).await;
    }
    if s.auth.decide(&who, Target::System, Perm::CreateProject).await.is_err() {
        return refuse("You may not create projects.".into(), StatusCode::FORBIDDEN).await;
    }
    let name = f.name.trim().to_owned();
    if let Err(e) = crate::projects::valid_project_name(&name) {
        return refuse(e.message().to_owned(), StatusCode::BAD_REQUEST).await;
    }
    let limit = match f.limit_gib.trim() {
        "" => None,
        g => match g.parse::<f64>() {
            Ok(x) if x > 0.0 && x < 1e9 => Some((x * 1024.0 * 1024.0 * 1024.0) as i64),
            _ => {
                let e = format!("Storage limit {g:?}: a number of GiB greater than 0, or empty for none.");
                return refuse(e, StatusCode::BAD_REQUEST).await;
            }
        },
    };
    let registry = match f.registry.trim() {
        "" => None,
        r => match r.parse::<i64>() {
            Ok(id) if s.auth.decide(&who, Target::System, Perm::Administer).await.is_ok() => Some(id),
            Ok(_) => {
                let e = "Only system administrators create proxy caches.";
                return refuse(e.into(), StatusCode::FORBIDDEN).await;
            }
            Err(_) => return refuse("Choose a registry endpoint from the list.".into(), StatusCode::BAD_REQUEST).await,
        },
    };
    let mut settings = berth_types::ProjectSettings::default();
    if f.public.is_some() {
        let _ = settings.set("public", "true");
    }
    let origin = berth_auth::Origin::new(who.name(), None);
    if let Some(r) = registry
        && s.upstreams.get(r).await.is_err()
    {
        return refuse(format!("There is no registry endpoint {r}."), StatusCode::BAD_REQUEST).await;
    }
    let id = match s.auth.create_project(&name, &who, &settings, &origin).await {
        Ok(id) => id,
        Err(e) => {
            let (msg, status) = api_err(e);
            return refuse(msg, status).await;
        }
    };
    if let Some(r) = registry
        && let Err(e) = s.upstreams.create_cache_rule(&name, r, "", 0, &origin).await
    {
        let _ = s.auth.delete_project(id, &origin).await;
        let (msg, status) = api_err(e);
        return refuse(msg, status).await;
    }
    if let Some(limit) = limit
        && let Err(e) = s.registry.set_quota(&name, limit).await
    {
        tracing::error!(error = %e, "portal: setting a new project's quota");
    }
    Redirect::to(&format!("/harbor/projects/{id}/repositories")).into_response()
}

/// Rows per page in the portal's long lists.
pub(super) const PAGE_SIZE: usize = 50;

/// "Page 2 of 7" with previous and next links; `link(n)` is page n's address.
pub(super) fn pager(page: usize, total: usize, link: impl Fn(usize) -> String) -> Markup {
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    html! {
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page > 1 { a href=(link(page - 1)) rel="prev" { "\u{2190} Previous" } }
                span.muted { "Page " (page) " of " (pages) " \u{b7} " (total) " in all" }
                @if page < pages { a href=(link(page + 1)) rel="next" { "Next \u{2192}" } }
            }
        }
    }
}

async fn projects_page(
    s: &AdminState,
    headers: &HeaderMap,
    search: &str,
    page: usize,
    notice: Option<String>,
    status: StatusCode,
) -> Response {
    let c = Ctx::new(s, headers).await;
    let search = search.to_owned();
    let may_create = !c.anonymous() && c.may(s, Target::System, Perm::CreateProject).await;
    let endpoints = if may_create && c.may(s, Target::System, Perm::Administer).await {
        s.upstreams.list().await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let caches: std::collections::HashSet<String> =
        s.upstreams.cache_rules().await.map(|r| r.iter().map(|r| r.prefix.clone()).collect()).unwrap_or_default();
    let all = match s.auth.projects().await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "portal: listing projects");
            let body =
                html! { p.error role="alert" { "The project list cannot be read right now; try again shortly." } };
            return c.page("Projects", "/harbor/projects", body, StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let mut visible = Vec::new();
    for p in all {
        if (search.is_empty() || p.name.contains(search.as_str())) && c.may(s, Target::Project(&p), Perm::Read).await {
            visible.push(p);
        }
    }
    let total = visible.len();
    let shown: Vec<_> = visible.into_iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE).collect();
    let names: Vec<String> = shown.iter().map(|p| p.name.clone()).collect();
    let counts = s.registry.repo_counts(&names).await.unwrap_or_default();
    let quotas: HashMap<String, berth_registry::QuotaRecord> = s
        .registry
        .quotas()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|q| names.contains(&q.project))
        .map(|q| (q.project.clone(), q))
        .collect();
    let link = |n: usize| {
        if search.is_empty() {
            format!("/harbor/projects?page={n}")
        } else {
            format!("/harbor/projects?q={}&page={n}", crate::enc(&search))
        }
    };
    let body = html! {
        @if let Some(n) = &notice { p.error role="alert" { (n) } }
        div.toolbar {
            h1 { "Projects" }
            form method="get" action="/harbor/projects" role="search" {
                label.label-narrow for="q" { "Search projects" }
                input #q type="search" name="q" value=(search) placeholder="Name contains…";
            }
        }
        @if c.anonymous() {
            p.muted { "Public projects, which anyone may pull from. " a href="/account/sign-in" { "Sign in" } " to see your own." }
        }
        div.panel {
            @if shown.is_empty() {
                p.muted {
                    @if !search.is_empty() { "No project's name contains \u{201c}" (search) "\u{201d}." }
                    @else if c.anonymous() { "There are no public projects." }
                    @else { "You are not a member of any project yet." }
                }
            } @else {
                table {
                    caption.skip { "Projects you can see" }
                    thead { tr { th { "Name" } th { "Access" } th { "Repositories" } th.hide-narrow { "Storage" } } }
                    tbody {
                        @for (i, p) in shown.iter().enumerate() {
                            tr {
                                td { a href=(format!("/harbor/projects/{}/repositories", p.id)) { strong { (p.name) } } }
                                td {
                                    @if p.settings.public() { span.badge.public { "Public" } }
                                    @else { span.badge { "Private" } }
                                    @if caches.contains(&p.name) { " " span.badge title="A pull-through cache of another registry" { "Proxy cache" } }
                                }
                                td { (counts.get(i).copied().unwrap_or(0)) }
                                td.hide-narrow {
                                    @let q = quotas.get(&p.name);
                                    @let used = q.map_or(0, |q| q.used);
                                    @match q.map(|q| q.hard).filter(|h| *h > 0) {
                                        Some(hard) => {
                                            meter min="0" max=(hard) value=(used.min(hard))
                                                aria-label=(format!("{} of {} used", human_bytes(used), human_bytes(hard))) {}
                                            " "
                                            span.muted { (human_bytes(used)) " of " (human_bytes(hard)) }
                                        }
                                        None => { span.muted { (human_bytes(used)) " (no limit)" } }
                                    }
                                }
                            }
                        }
                    }
                }
                (pager(page, total, link))
            }
        }
        @if may_create {
            h2 { "New project" }
            div.panel {
                form method="post" action="/harbor/projects" {
                    input type="hidden" name="csrf" value=(c.csrf);
                    label for="project-name" { "Name (lower-case letters, digits, . _ -)" }
                    input #project-name type="text" name="name" required maxlength="255";
                    label.check { input type="checkbox" name="public" value="on"; " Public: anyone may pull" }
                    label for="limit" { "Storage limit in GiB (empty: none)" }
                    input #limit type="text" name="limit_gib" inputmode="decimal";
                    @if !endpoints.is_empty() {
                        label for="registry" { "Proxy cache: fill this project from another registry as it is pulled (pushes are refused)" }
                        select #registry name="registry" {
                            option value="" { "No, a regular project" }
                            @for e in &endpoints { option value=(e.id) { (e.name) " \u{2014} " (e.url) } }
                        }
                    }
                    p { button type="submit" { "Create project" } }
                }
            }
        }
    };
    c.page("Projects", "/harbor/projects", body, status)
}
