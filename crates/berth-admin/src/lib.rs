//! The management API under `/api/v2.0`, in Harbor's paths and JSON shapes where Berth
//! implements the same thing, plus the web login routes (`/c/oidc/…`).
//!
//! - `system.rs`: `ping`, `health`, `systeminfo`, `audit-logs`, the OpenAPI document, the job service.
//! - `projects.rs`: projects and their members.
//! - `repos.rs`: repositories, artifacts, tags and repository policies.
//! - `users.rs`: users, the current user, passwords, CLI secrets.
//! - `robots.rs`: robot accounts.
//! - `scans.rs`: scans, vulnerability reports and SBOMs (`additions`), scan all, CVE allowlists.
//! - `web.rs`: OIDC login (`/c/oidc/login`, `/c/oidc/callback`) and logout.
//!
//! **Authorization:** every handler takes a [`Caller`] (Basic credentials, the
//! `berth_session` cookie, the operator token, or anonymous) and checks a permission
//! through `berth-auth` before it does anything; there is no open route but `ping`,
//! `health`, `systeminfo` and the OpenAPI document. Cookie-authenticated changes need an
//! `X-Harbor-CSRF-Token` (or `X-Berth-CSRF`) header, which a cross-site form cannot send.
//!
//! **Boundary:** only this crate knows the Harbor JSON shapes; it reads `berth_meta` records
//! and converts them here.

mod projects;
mod repos;
mod robots;
mod scans;
mod system;
mod users;
mod web;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use berth_auth::{Auth, AuthError, Principal};
use berth_meta::{AuditRecord, JobQueue, MetaError};
use berth_registry::{Registry, RegistryError};
use http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use serde_json::json;
use sha2::{Digest, Sha256};

/// State of the management API.
#[derive(Clone)]
pub struct AdminState {
    /// The job queue.
    pub jobs: Arc<dyn JobQueue>,
    /// The registry (repositories, artifacts, tags).
    pub registry: Arc<Registry>,
    /// The access service.
    pub auth: Arc<Auth>,
    /// Scanner data (reports, inventories, allowlists).
    pub scans: Arc<dyn berth_meta::ScanStore>,
    /// The URL clients reach Berth at, if configured.
    pub external_url: Option<String>,
    /// Whether this server speaks TLS.
    pub tls: bool,
    /// SHA-256 of the operator token, if one is configured (the token itself is not kept).
    token_sha256: Option<[u8; 32]>,
}

impl AdminState {
    /// State over the services, with an optional operator token.
    pub fn new(
        jobs: Arc<dyn JobQueue>,
        scans: Arc<dyn berth_meta::ScanStore>,
        registry: Arc<Registry>,
        auth: Arc<Auth>,
        admin_token: Option<&str>,
    ) -> Self {
        AdminState {
            jobs,
            scans,
            registry,
            auth,
            external_url: None,
            tls: false,
            token_sha256: admin_token.filter(|t| !t.is_empty()).map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }
}

/// An API error in Harbor's envelope.
#[derive(Debug)]
pub(crate) struct ApiError(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({ "errors": [{ "code": self.1, "message": self.2 }] }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"berth\""));
        }
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn bad_request(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "BAD_REQUEST", m.into())
}

pub(crate) fn not_found(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "NOT_FOUND", m.into())
}

pub(crate) fn forbidden(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::FORBIDDEN, "FORBIDDEN", m.into())
}

pub(crate) fn unauthorized(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m.into())
}

/// Run argon2 hashing or verification on the blocking pool, so its tens of milliseconds
/// of CPU do not stall the other requests on this async worker.
pub(crate) async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "management API: password hashing failed");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error; see the server log".into())
    })
}

pub(crate) fn db_error(e: MetaError) -> ApiError {
    match e {
        MetaError::Conflict(m) => ApiError(StatusCode::CONFLICT, "CONFLICT", m),
        MetaError::Unavailable(m) => {
            tracing::warn!(error = %m, "management API: metadata database unavailable");
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the registry's metadata database is unavailable; try again in a few seconds".into(),
            )
        }
        e => {
            tracing::error!(error = %e, "management API: metadata store failed");
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error; see the server log".into())
        }
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        db_error(e)
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NameUnknown(n) => not_found(format!("repository {n} not found")),
            RegistryError::ManifestUnknown(r) => not_found(format!("artifact {r} not found")),
            RegistryError::TagInvalid(m) => bad_request(m),
            RegistryError::Meta(m) => db_error(m),
            other => {
                tracing::error!(error = %other, "management API: registry failed");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error; see the server log".into())
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(m) => db_error(m),
            AuthError::Locked { .. } => ApiError(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", e.to_string()),
            other => unauthorized(other.to_string()),
        }
    }
}

/// Who is calling, and from where.
pub(crate) struct Caller {
    pub p: Principal,
    pub ip: Option<String>,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "berth_session";

impl FromRequestParts<AdminState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AdminState) -> Result<Self, Self::Rejection> {
        let ip =
            parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
        let h = &parts.headers;
        let auth_header = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Some(v) = auth_header {
            let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
            if scheme.eq_ignore_ascii_case("basic") {
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| unauthorized("malformed Basic credentials"))?;
                let (u, pw) = decoded.split_once(':').ok_or_else(|| unauthorized("malformed Basic credentials"))?;
                let p = s.auth.login(u, pw, ip.as_deref()).await?;
                return Ok(Caller { p, ip });
            }
            if scheme.eq_ignore_ascii_case("bearer") {
                let given: [u8; 32] = Sha256::digest(rest.trim().as_bytes()).into();
                return match &s.token_sha256 {
                    Some(expected) if berth_auth::secret::ct_eq(&given, expected) => {
                        Ok(Caller { p: Principal::Operator, ip })
                    }
                    Some(_) => Err(unauthorized("a valid operator token is required")),
                    None => Err(unauthorized(
                        "bearer tokens are not accepted here: no operator token (admin_token, BERTH_ADMIN_TOKEN) is \
                         configured; use Basic credentials",
                    )),
                };
            }
            return Err(unauthorized(format!("unsupported authorization scheme {scheme:?}: use Basic")));
        }
        if let Some(c) = cookie(h, SESSION_COOKIE) {
            let p = s.auth.session_principal(c).await.map_err(|e| match e {
                AuthError::Store(m) => db_error(m),
                _ => unauthorized("the session has expired; log in again"),
            })?;
            let safe = matches!(parts.method, http::Method::GET | http::Method::HEAD);
            if !(safe || h.contains_key("x-harbor-csrf-token") || h.contains_key("x-berth-csrf")) {
                return Err(forbidden(
                    "changes made with a session cookie need the X-Harbor-CSRF-Token header (any value)",
                ));
            }
            return Ok(Caller { p, ip });
        }
        Ok(Caller { p: Principal::Anonymous, ip })
    }
}

impl Caller {
    /// Fail unless authenticated.
    pub fn authenticated(&self) -> Result<(), ApiError> {
        if self.p.is_authenticated() { Ok(()) } else { Err(unauthorized("authentication required")) }
    }

    /// Fail unless a system administrator.
    pub fn sysadmin(&self) -> Result<(), ApiError> {
        self.authenticated()?;
        if self.p.is_sysadmin() { Ok(()) } else { Err(forbidden("only system administrators may do this")) }
    }

    /// This caller as the origin of a change (for the event log).
    pub fn origin(&self) -> berth_meta::Origin {
        berth_meta::Origin::new(self.p.name(), self.ip.clone())
    }

    /// An audit entry by this caller.
    pub fn audit(&self, s: &AdminState, operation: &str, resource_type: &str, resource: &str, project: Option<&str>) {
        s.auth.audit().record(AuditRecord {
            op_time: berth_auth::now_ms(),
            username: self.p.name().to_owned(),
            operation: operation.into(),
            resource_type: resource_type.into(),
            resource: resource.into(),
            project: project.map(str::to_owned),
            client_ip: self.ip.clone(),
            result: "success".into(),
            detail: None,
            ..Default::default()
        });
    }
}

/// Unix ms as Harbor's time strings.
pub(crate) fn time(ms: i64) -> String {
    berth_auth::rfc3339(ms)
}

/// A stable numeric id for things Berth keys by name (repositories, artifacts, tags).
pub(crate) fn stable_id(parts: &[&str]) -> i64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    (u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) >> 12) as i64
}

/// `page` and `page_size` (default 10, at most 100) from a query.
pub(crate) fn page_of(q: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let num = |k: &str, default: usize| -> Result<usize, ApiError> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => {
                v.parse::<usize>().map_err(|_| bad_request(format!("{k} must be a positive integer, not {v:?}")))
            }
        }
    };
    let page = num("page", 1)?.max(1);
    let size = num("page_size", 10)?;
    if size == 0 || size > 100 {
        return Err(bad_request("page_size must be between 1 and 100"));
    }
    Ok((page, size))
}

/// One page of `items` with `X-Total-Count` and a `Link` header (`prev`/`next`), as Harbor sends them.
pub(crate) fn paginate(
    items: Vec<serde_json::Value>,
    q: &HashMap<String, String>,
    path: &str,
) -> Result<Response, ApiError> {
    let (page, size) = page_of(q)?;
    let total = items.len();
    let body: Vec<_> = items.into_iter().skip((page - 1) * size).take(size).collect();
    Ok(with_page_headers(Json(body).into_response(), total, page, size, q, path))
}

/// Add `X-Total-Count` and `Link` for a page of a list of `total` entries.
pub(crate) fn with_page_headers(
    mut r: Response,
    total: usize,
    page: usize,
    size: usize,
    q: &HashMap<String, String>,
    path: &str,
) -> Response {
    let mut rest: Vec<(String, String)> =
        q.iter().filter(|(k, _)| *k != "page" && *k != "page_size").map(|(k, v)| (k.clone(), v.clone())).collect();
    rest.sort();
    let extra: String = rest.iter().map(|(k, v)| format!("&{}={}", enc(k), enc(v))).collect();
    let link = |p: usize, rel: &str| format!("<{path}?page={p}&page_size={size}{extra}>; rel=\"{rel}\"");
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page * size < total {
        links.push(link(page + 1, "next"));
    }
    let h = r.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    if !links.is_empty()
        && let Ok(v) = HeaderValue::from_str(&links.join(" , "))
    {
        h.insert(header::LINK, v);
    }
    r
}

pub(crate) fn enc(s: &str) -> String {
    berth_auth::oidc::urlencode(s)
}

/// Harbor's `q` query: `k=v,k2=~fuzzy` pairs. Returns `(key, value, fuzzy)`.
pub(crate) fn q_terms(q: &HashMap<String, String>) -> Vec<(String, String, bool)> {
    q.get("q")
        .map(|v| {
            v.split(',')
                .filter_map(|t| {
                    let (k, v) = t.split_once('=')?;
                    let (v, fuzzy) = match v.strip_prefix('~') {
                        Some(f) => (f, true),
                        None => (v, false),
                    };
                    Some((k.trim().to_owned(), v.trim().to_owned(), fuzzy))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `201 Created` with a `Location`.
pub(crate) fn created(location: &str) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A JSON body, or a 400 that says what is wrong with it.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|e| bad_request(e.body_text()))
}

/// The `/api/v2.0` routes and the web login routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(projects::routes())
        .merge(repos::routes())
        .merge(users::routes())
        .merge(robots::routes())
        .merge(scans::routes())
        .merge(web::routes())
        .with_state(state)
}
