//! The web portal, served by the binary: server-rendered HTML (`maud`: escaped by default,
//! checked at compile time) and one embedded stylesheet, no script. Paths follow Harbor's
//! portal (`/account/sign-in`, `/harbor/projects`) so bookmarks carry over.
//!
//! **Security:** every response carries a strict Content-Security-Policy (`default-src
//! 'none'`, the stylesheet from this origin, no script at all, `frame-ancestors 'none'`,
//! `form-action 'self'`), `X-Frame-Options: DENY`, `nosniff` and `Referrer-Policy`. Every
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

mod artifact;
mod jobs;
mod profile;
mod project;
mod robots;

const CSS: &str = include_str!("portal.css");
const ICON: &str = include_str!("icon.svg");
const CSRF_COOKIE: &str = "berth_csrf";

/// The stylesheet's versioned path: its content hash, so it can be cached forever.
static CSS_PATH: LazyLock<String> = LazyLock::new(|| {
    let h = hex::encode(sha2::Sha256::digest(CSS.as_bytes()));
    format!("/static/portal-{}.css", &h[..12])
});

/// The icon's versioned path.
static ICON_PATH: LazyLock<String> = LazyLock::new(|| {
    let h = hex::encode(sha2::Sha256::digest(ICON.as_bytes()));
    format!("/static/icon-{}.svg", &h[..12])
});

/// The top navigation: (label, path). Later sections add themselves here.
const NAV: &[(&str, &str)] = &[("Projects", "/harbor/projects")];
/// Sections only system administrators see.
const ADMIN_NAV: &[(&str, &str)] = &[("Jobs", jobs::PATH)];

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/harbor/projects") }))
        .route("/account/sign-in", get(sign_in_page).post(sign_in))
        .route("/account/sign-out", axum::routing::post(sign_out))
        .route("/harbor/projects", get(projects).post(create_project))
        .merge(profile::routes())
        .merge(jobs::routes())
        .merge(artifact::routes())
        .merge(project::routes())
        .merge(robots::routes())
        .route("/static/{file}", get(asset))
        .layer(axum::middleware::map_response(secure_headers))
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
    let (kind, body) = if path == *CSS_PATH {
        ("text/css; charset=utf-8", CSS)
    } else if path == *ICON_PATH {
        ("image/svg+xml", ICON)
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], body)
        .into_response()
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

/// The frame of every page.
pub(super) fn layout(title: &str, who: Option<&Principal>, current: &str, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Berth" }
                link rel="stylesheet" href=(*CSS_PATH);
                link rel="icon" type="image/svg+xml" href=(*ICON_PATH);
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Berth" }
                    @if who.is_some() {
                        nav aria-label="Main" {
                            ul {
                                @for (label, path) in NAV.iter().chain(if who.is_some_and(Principal::is_sysadmin) { ADMIN_NAV } else { &[] }) {
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
                    @if let Some(p) = who {
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
        }
    };
    layout("Sign in", None, "", csrf, body)
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
    if let Some(u) = &s.external_url {
        let rest = u.split_once("://").map_or(u.as_str(), |(_, r)| r);
        return rest.trim_end_matches('/').split('/').next().unwrap_or(rest).to_owned();
    }
    headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost:5000").to_owned()
}

/// An error of the services as a message for the page and its status.
pub(super) fn api_err<E: Into<crate::ApiError>>(e: E) -> (String, StatusCode) {
    let e = e.into();
    (e.message().to_owned(), e.status())
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
    projects_page(&s, &headers, &search, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct NewProjectForm {
    csrf: String,
    name: String,
    #[serde(default)]
    public: Option<String>,
    #[serde(default)]
    limit_gib: String,
}

/// Create a project from the form on the projects page, then open it.
async fn create_project(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<NewProjectForm>) -> Response {
    let Some(who) = signed_in(&s, &headers).await else {
        return Redirect::to("/account/sign-in?next=/harbor/projects").into_response();
    };
    if !csrf_ok(&headers, &f.csrf) {
        let e = "This form expired or came from another site; nothing was created. Try again.";
        return projects_page(&s, &headers, "", Some(e.into()), StatusCode::FORBIDDEN).await;
    }
    if s.auth.decide(&who, Target::System, Perm::CreateProject).await.is_err() {
        return projects_page(&s, &headers, "", Some("You may not create projects.".into()), StatusCode::FORBIDDEN)
            .await;
    }
    let name = f.name.trim().to_owned();
    if let Err(e) = crate::projects::valid_project_name(&name) {
        return projects_page(&s, &headers, "", Some(e.message().to_owned()), StatusCode::BAD_REQUEST).await;
    }
    let limit = match f.limit_gib.trim() {
        "" => None,
        g => match g.parse::<f64>() {
            Ok(x) if x > 0.0 && x < 1e9 => Some((x * 1024.0 * 1024.0 * 1024.0) as i64),
            _ => {
                let e = format!("Storage limit {g:?}: a number of GiB greater than 0, or empty for none.");
                return projects_page(&s, &headers, "", Some(e), StatusCode::BAD_REQUEST).await;
            }
        },
    };
    let mut settings = berth_types::ProjectSettings::default();
    if f.public.is_some() {
        let _ = settings.set("public", "true");
    }
    let origin = berth_auth::Origin::new(who.name(), None);
    let id = match s.auth.create_project(&name, &who, &settings, &origin).await {
        Ok(id) => id,
        Err(e) => {
            let e = crate::ApiError::from(e);
            return projects_page(&s, &headers, "", Some(e.message().to_owned()), e.status()).await;
        }
    };
    if let Some(limit) = limit
        && let Err(e) = s.registry.set_quota(&name, limit).await
    {
        tracing::error!(error = %e, "portal: setting a new project's quota");
    }
    Redirect::to(&format!("/harbor/projects/{id}/repositories")).into_response()
}

async fn projects_page(
    s: &AdminState,
    headers: &HeaderMap,
    search: &str,
    notice: Option<String>,
    status: StatusCode,
) -> Response {
    let Some(who) = signed_in(s, headers).await else {
        return Redirect::to("/account/sign-in?next=/harbor/projects").into_response();
    };
    let (token, set) = csrf(s, headers);
    let cookies: Vec<String> = set.into_iter().collect();
    let search = search.to_owned();
    let may_create = s.auth.decide(&who, Target::System, Perm::CreateProject).await.is_ok();
    let all = match s.auth.projects().await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "portal: listing projects");
            let body =
                html! { p.error role="alert" { "The project list cannot be read right now; try again shortly." } };
            return with_cookies(
                layout("Projects", Some(&who), "/harbor/projects", &token, body),
                StatusCode::SERVICE_UNAVAILABLE,
                &cookies,
            );
        }
    };
    let mut rows = Vec::new();
    for p in all {
        if !search.is_empty() && !p.name.contains(search.as_str()) {
            continue;
        }
        if s.auth.decide(&who, Target::Project(&p), Perm::Read).await.is_err() {
            continue;
        }
        let repos = s.registry.project_repos(&p.name).await.map(|r| r.len()).unwrap_or(0);
        let quota = s.registry.quota(&p.name).await.ok();
        rows.push((p, repos, quota));
    }
    let body = html! {
        @if let Some(n) = &notice { p.error role="alert" { (n) } }
        div.toolbar {
            h1 { "Projects" }
            form method="get" action="/harbor/projects" role="search" {
                label.label-narrow for="q" { "Search projects" }
                input #q type="search" name="q" value=(search) placeholder="Name contains…";
            }
        }
        div.panel {
            @if rows.is_empty() {
                p.muted {
                    @if search.is_empty() { "You are not a member of any project yet." }
                    @else { "No project's name contains \u{201c}" (search) "\u{201d}." }
                }
            } @else {
                table {
                    caption.skip { "Projects you can see" }
                    thead { tr { th { "Name" } th { "Access" } th { "Repositories" } th.hide-narrow { "Storage" } } }
                    tbody {
                        @for (p, repos, quota) in &rows {
                            tr {
                                td { a href=(format!("/harbor/projects/{}/repositories", p.id)) { strong { (p.name) } } }
                                td {
                                    @if p.settings.public() { span.badge.public { "Public" } }
                                    @else { span.badge { "Private" } }
                                }
                                td { (repos) }
                                td.hide-narrow {
                                    @if let Some(q) = quota {
                                        @if q.hard > 0 {
                                            meter min="0" max=(q.hard) value=(q.used.min(q.hard))
                                                aria-label=(format!("{} of {} used", human_bytes(q.used), human_bytes(q.hard))) {}
                                            " "
                                            span.muted { (human_bytes(q.used)) " of " (human_bytes(q.hard)) }
                                        } @else {
                                            span.muted { (human_bytes(q.used)) " (no limit)" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if may_create {
            h2 { "New project" }
            div.panel {
                form method="post" action="/harbor/projects" {
                    input type="hidden" name="csrf" value=(token);
                    label for="project-name" { "Name (lower-case letters, digits, . _ -)" }
                    input #project-name type="text" name="name" required maxlength="255";
                    label.check { input type="checkbox" name="public" value="on"; " Public: anyone may pull" }
                    label for="limit" { "Storage limit in GiB (empty: none)" }
                    input #limit type="text" name="limit_gib" inputmode="decimal";
                    p { button type="submit" { "Create project" } }
                }
            }
        }
    };
    with_cookies(layout("Projects", Some(&who), "/harbor/projects", &token, body), status, &cookies)
}
