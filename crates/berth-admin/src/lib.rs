//! The management API under `/api/v2.0`, in Harbor's paths and JSON shapes where Berth
//! implements the same thing, plus the web login routes (`/c/oidc/…`).
//!
//! - `system.rs`: `ping`, `health`, `systeminfo`, `audit-logs`, the OpenAPI document, the job service.
//! - `projects.rs`: projects and their members.
//! - `repos.rs`: repositories, artifacts, tags and repository policies.
//! - `users.rs`: users, the current user, passwords, CLI secrets.
//! - `robots.rs`: robot accounts.
//! - `scans.rs`: scans, vulnerability reports and SBOMs (`additions`), scan all, CVE allowlists.
//! - `registries.rs`: registry endpoints (upstreams of caches and replication).
//! - `web.rs`: OIDC login (`/c/oidc/login`, `/c/oidc/callback`) and logout.
//! - `lookup.rs` (what a path names, authorized) and `shapes.rs` (report and allowlist JSON):
//!   leaves the endpoint modules share, so no endpoint module calls another.
//!
//! **Authorization:** every handler takes a [`Caller`] (Basic credentials, the
//! `berth_session` cookie, the operator token, or anonymous) and asks `Auth::decide` — the
//! one decision `/v2` asks too — before it does anything; there is no open route but `ping`,
//! `health`, `systeminfo` and the OpenAPI document. Cookie-authenticated changes need an
//! `X-Harbor-CSRF-Token` (or `X-Berth-CSRF`) header, which a cross-site form cannot send.
//!
//! **Boundary:** only this crate knows the Harbor JSON shapes. It calls the domain services
//! (`Auth`, `Registry`, `Scanning`, `Jobs`), never a store, and converts their records here.
//! Errors become Harbor's envelope in one place, `From` impls in this file.

mod configurations;
mod discover;
mod ecr;
pub mod export;
mod gc;
mod immutable;
mod labels;
mod ldap;
mod lifecycle;
mod lookup;
mod portal;
mod projects;
mod quotas;
mod registries;
mod replication;
mod repos;
mod retention;
mod robots;
mod scans;
mod security;
mod shapes;
mod signatures;
mod system;
mod usergroups;
mod users;
mod web;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use berth_auth::rbac::Perm;
use berth_auth::{Auth, AuthError, Denied, MetaError, Principal, Target};
use berth_jobs::Jobs;
use berth_registry::{Registry, RegistryError};
use berth_scanner::Scanning;
use http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use serde_json::json;
use sha2::{Digest, Sha256};

/// State of the management API.
#[derive(Clone)]
pub struct AdminState {
    /// The job service.
    pub jobs: Jobs,
    /// Garbage collection: runs and schedule.
    pub gc: berth_jobs::GcService,
    /// Lifecycle and retention policies.
    pub policies: berth_jobs::PolicyService,
    /// The registry (repositories, artifacts, tags).
    pub registry: Arc<Registry>,
    /// The access service.
    pub auth: Arc<Auth>,
    /// The scanning service (reports, requests, allowlists, SBOMs).
    pub scans: Arc<Scanning>,
    /// Registry endpoints (upstreams of caches, ends of replication).
    pub upstreams: Arc<berth_registry::Upstreams>,
    /// Replication policies and runs (absent: no replication API).
    pub replication: Option<Arc<berth_registry::Replication>>,
    /// Webhook policies and deliveries (absent: no webhook API).
    pub webhooks: Option<Arc<berth_webhook::Webhooks>>,
    /// Signature policies and verdicts (absent: no signature API).
    pub signatures: Option<Arc<berth_registry::Signatures>>,
    /// The pull-through caches (for their counts; absent: none shown).
    pub proxy: Option<Arc<berth_registry::Proxy>>,
    /// The URL clients reach Berth at, if configured.
    pub external_url: Option<String>,
    /// Whether this server speaks TLS.
    pub tls: bool,
    /// How long audit entries are kept (`[audit] retention`).
    pub audit_retention: std::time::Duration,
    /// Most audit entries kept (`[audit] max_entries`).
    pub audit_max_entries: usize,
    /// The ECR API's registry id (`[ecr] registry_id`).
    pub ecr_registry_id: String,
    /// The region in ECR ARNs (`[ecr] region`; `None`: the request's).
    pub ecr_region: Option<String>,
    /// SHA-256 of the operator token, if one is configured (the token itself is not kept).
    token_sha256: Option<[u8; 32]>,
}

impl AdminState {
    /// State over the services (no operator token: see [`AdminState::with_operator_token`]).
    pub fn new(
        jobs: Jobs,
        gc: berth_jobs::GcService,
        policies: berth_jobs::PolicyService,
        scans: Arc<Scanning>,
        registry: Arc<Registry>,
        auth: Arc<Auth>,
        upstreams: Arc<berth_registry::Upstreams>,
    ) -> Self {
        AdminState {
            upstreams,
            replication: None,
            webhooks: None,
            signatures: None,
            proxy: None,
            jobs,
            gc,
            policies,
            scans,
            registry,
            auth,
            external_url: None,
            tls: false,
            audit_retention: std::time::Duration::from_secs(180 * 24 * 3600),
            audit_max_entries: 10_000_000,
            ecr_registry_id: "000000000000".into(),
            ecr_region: None,
            token_sha256: None,
        }
    }

    /// The same state, accepting `admin_token` (if set and not empty) as the operator's.
    pub fn with_operator_token(mut self, admin_token: Option<&str>) -> Self {
        self.token_sha256 = admin_token.filter(|t| !t.is_empty()).map(|t| Sha256::digest(t.as_bytes()).into());
        self
    }
}

/// An error of the management API, in Harbor's words. [`ApiError::status`] and
/// [`ApiError::code`] are exhaustive matches and [`IntoResponse`] the one place an error
/// becomes Harbor's envelope `{"errors":[{"code","message"}]}`; lower errors convert through
/// the `From` impls below. A 5xx says only what the user can act on; its cause is logged once,
/// here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// The request is malformed or a value is out of range.
    BadRequest(String),
    /// Credentials are missing or were refused.
    Unauthorized(String),
    /// The caller may not do this.
    Forbidden(String),
    /// The thing does not exist (or the caller may not know it does).
    NotFound(String),
    /// It already exists, or is already in that state.
    Conflict(String),
    /// Something else must happen first (e.g. empty the project).
    PreconditionFailed(String),
    /// The request body is larger than allowed.
    TooLarge(String),
    /// Too many failed logins: try again in `retry_after` seconds.
    TooManyRequests {
        /// Why.
        message: String,
        /// Seconds until the lock lifts.
        retry_after: u64,
    },
    /// The metadata database cannot be reached (the cause, logged).
    Unavailable(String),
    /// An identity provider (LDAP) cannot be reached (which, and why: shown).
    ProviderUnavailable(String),
    /// The disk under the metadata database is full (the cause, logged).
    StorageFull(String),
    /// Berth failed (the cause, logged).
    Internal(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::ProviderUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Harbor's error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BAD_REQUEST",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::PreconditionFailed(_) => "PRECONDITION",
            ApiError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::TooManyRequests { .. } => "TOOMANYREQUESTS",
            ApiError::Unavailable(_) | ApiError::ProviderUnavailable(_) => "UNAVAILABLE",
            ApiError::StorageFull(_) => "INSUFFICIENT_STORAGE",
            ApiError::Internal(_) => "UNKNOWN",
        }
    }

    /// What the user reads.
    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::PreconditionFailed(m)
            | ApiError::TooLarge(m)
            | ApiError::ProviderUnavailable(m)
            | ApiError::TooManyRequests { message: m, .. } => m,
            ApiError::Unavailable(_) => "the registry's metadata database is unavailable; try again in a few seconds",
            ApiError::StorageFull(_) => "the registry's storage is full; nothing was changed",
            ApiError::Internal(_) => "internal error; see the server log",
        }
    }

    /// A 500 whose cause is logged (once, now) with `what` failed.
    pub fn internal(what: &str, cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "management API: {what} failed");
        ApiError::Internal(format!("{what}: {cause}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "errors": [{ "code": self.code(), "message": self.message() }] });
        let mut r = (self.status(), Json(body)).into_response();
        match self {
            ApiError::Unauthorized(_) => {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"berth\""));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            }
            ApiError::Unavailable(_) | ApiError::ProviderUnavailable(_) => {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        r
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn bad_request(m: impl Into<String>) -> ApiError {
    ApiError::BadRequest(m.into())
}

pub(crate) fn not_found(m: impl Into<String>) -> ApiError {
    ApiError::NotFound(m.into())
}

pub(crate) fn forbidden(m: impl Into<String>) -> ApiError {
    ApiError::Forbidden(m.into())
}

pub(crate) fn unauthorized(m: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(m.into())
}

/// Run argon2 hashing or verification through the access service's bounded hashing pool.
pub(crate) async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    Ok(berth_auth::hashing(f).await?)
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Conflict(m) => ApiError::Conflict(m),
            MetaError::Unavailable(m) => {
                tracing::warn!(error = %m, "management API: metadata database unavailable");
                ApiError::Unavailable(m)
            }
            e @ MetaError::QuotaExceeded { .. } => ApiError::Forbidden(e.to_string()),
            MetaError::StorageFull(m) => {
                tracing::error!(error = %m, "management API: the metadata database's disk is full");
                ApiError::StorageFull(m)
            }
            e => ApiError::internal("the metadata store", e),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NameUnknown(n) => not_found(format!("repository {n} not found")),
            RegistryError::ManifestUnknown(r) => not_found(format!("artifact {r} not found")),
            RegistryError::TagInvalid(m) => bad_request(m),
            RegistryError::QuotaExceeded(m) => ApiError::Forbidden(m),
            e @ RegistryError::TagImmutable { .. } => ApiError::PreconditionFailed(e.to_string()),
            RegistryError::PolicyInvalid(m) => bad_request(m),
            RegistryError::Meta(m) => m.into(),
            other => ApiError::internal("the registry", other),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::NeedsAuth => unauthorized("authentication required"),
            Denied::NoProject(p) | Denied::Hidden { project: p, .. } => not_found(format!("project {p} not found")),
            Denied::Forbidden(why) => forbidden(why),
            Denied::Unavailable(m) => MetaError::Unavailable(m).into(),
            Denied::Failed(m) => ApiError::internal("an authorization lookup", m),
        }
    }
}

impl From<berth_auth::PolicyChangeError> for ApiError {
    fn from(e: berth_auth::PolicyChangeError) -> Self {
        match e {
            berth_auth::PolicyChangeError::Invalid(e) => bad_request(format!("invalid repository policy: {e}")),
            berth_auth::PolicyChangeError::Store(m) => m.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(m) => m.into(),
            AuthError::Unavailable(m) => ApiError::ProviderUnavailable(m),
            AuthError::Locked { retry_after } | AuthError::Busy { retry_after } => {
                ApiError::TooManyRequests { message: e.to_string(), retry_after: retry_after.as_secs() }
            }
            AuthError::Conflict(m) => ApiError::Conflict(m),
            AuthError::NotFound(m) => not_found(m),
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
                if u.is_empty() && pw.is_empty() {
                    // `Basic Og==`: what clients send for "nobody".
                    return Ok(Caller { p: Principal::Anonymous, ip });
                }
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
                AuthError::Store(m) => ApiError::from(m),
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

    /// Fail unless the one authorization decision allows `perm` on `target`.
    pub async fn require(&self, s: &AdminState, target: Target<'_>, perm: Perm) -> Result<(), ApiError> {
        Ok(s.auth.decide(&self.p, target, perm).await?)
    }

    /// Fail unless a system administrator.
    pub async fn sysadmin(&self, s: &AdminState) -> Result<(), ApiError> {
        self.require(s, Target::System, Perm::Administer).await
    }

    /// This caller as the origin of a change (for the event log).
    pub fn origin(&self) -> berth_auth::Origin {
        berth_auth::Origin::new(self.p.name(), self.ip.clone())
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
    body.map(|Json(v)| v).map_err(|e| bad_request(plain_words(&e.body_text())))
}

/// The `/api/v2.0` routes and the web login routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(gc::routes())
        .merge(quotas::routes())
        .merge(immutable::routes())
        .merge(lifecycle::routes())
        .merge(labels::routes())
        .merge(registries::routes())
        .merge(replication::routes())
        .merge(webhooks::routes())
        .merge(signatures::routes())
        .merge(ldap::routes())
        .merge(usergroups::routes())
        .merge(portal::routes())
        .merge(retention::routes())
        .merge(projects::routes())
        .merge(repos::routes())
        .merge(users::routes())
        .merge(robots::routes())
        .merge(scans::routes())
        .merge(web::routes())
        .merge(discover::routes())
        .merge(configurations::routes())
        .merge(ecr::routes())
        .merge(export::routes())
        .merge(security::routes())
        // Any other path under the API is Harbor's JSON 404, not the registry's.
        .route("/api/v2.0", axum::routing::any(no_such_endpoint))
        .route("/api/v2.0/{*rest}", axum::routing::any(no_such_endpoint))
        .layer(axum::middleware::from_fn(strict_json))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state)
}

/// Only the ECR API (`POST /`), for `[ecr] listen`; `registry_port` is the main listener's
/// (where `GetAuthorizationToken` sends clients to log in, unless `external_url` says).
pub fn ecr_router(state: AdminState, registry_port: u16) -> Router {
    ecr::api_only().layer(axum::Extension(ecr::RegistryPort(registry_port))).with_state(state)
}

/// The framework's rejection texts, in users' words.
fn plain_words(text: &str) -> String {
    if let Some(rest) = text.strip_prefix("Invalid URL: Cannot parse `")
        && let Some((value, kind)) = rest.split_once("` to a `")
        && (kind.starts_with('i') || kind.starts_with('u'))
    {
        return format!("{value:?} is not a number: this part of the path is an id");
    }
    for (theirs, ours) in [
        ("Failed to parse the request body as JSON: ", "the request body is not valid JSON: "),
        ("Failed to deserialize the JSON body into the target type: ", "the request body does not fit: "),
        (
            "Expected request with `Content-Type: application/json`",
            "send the body as JSON (Content-Type: application/json)",
        ),
        ("Failed to deserialize query string: ", "the query string does not fit: "),
    ] {
        if let Some(rest) = text.strip_prefix(theirs) {
            return format!("{ours}{rest}");
        }
    }
    text.to_owned()
}

async fn no_such_endpoint(method: http::Method, uri: http::Uri) -> Response {
    ApiError::NotFound(format!("no such endpoint: {method} {}", uri.path())).into_response()
}

/// Every error under `/api/` is Harbor's JSON envelope, also the ones the framework answers
/// itself (a path parameter that does not parse, a method a route does not have, a body that
/// is not JSON): their text becomes the message.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let method = req.method().clone();
    let r = next.run(req).await;
    let status = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned());
    let text = plain_words(&text.unwrap_or_default());
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", format!("this endpoint does not take {method}")),
        StatusCode::NOT_FOUND => ("NOT_FOUND", if text.is_empty() { "not found".into() } else { text }),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("UNSUPPORTED_MEDIA_TYPE", text),
        StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", text),
        s if s.is_client_error() => ("BAD_REQUEST", text),
        _ => ("UNKNOWN", "internal error; see the server log".into()),
    };
    let mut out = (status, Json(json!({"errors": [{"code": code, "message": message}]}))).into_response();
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().append(k.clone(), v.clone());
        }
    }
    out
}

/// Largest request body the management API reads (policies, robot permission lists…).
const MAX_BODY: usize = 1 << 20;

/// Every JSON request body is checked for repeated keys before a handler sees it: a policy
/// with `"Effect": "Allow", "Effect": "Deny"` is a 400, not whichever a parser keeps.
async fn strict_json(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if matches!(*req.method(), http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::OPTIONS) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::TooLarge(format!("request bodies are limited to {MAX_BODY} bytes")).into_response();
        }
    };
    let starts_json = bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'{' || *b == b'[');
    if starts_json
        && let Err(e) = berth_types::json::reject_duplicate_keys(&bytes)
        && e.starts_with("duplicate key")
    {
        return bad_request(e).into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::time::Duration;

    use berth_auth::token::TokenError;
    use berth_registry::{BlobError, RegistryError as R};

    use super::*;

    /// Every error the management API can answer: each variant, and every lower error that
    /// converts into one.
    fn examples() -> Vec<(&'static str, ApiError)> {
        let unavailable = || MetaError::Unavailable("pool timed out".into());
        let invalid_policy = berth_auth::policy::RepoPolicy::parse("{\"Statement\": []}").unwrap_err();
        vec![
            ("bad request", bad_request("page_size must be between 1 and 100")),
            ("unauthorized", unauthorized("authentication required")),
            ("forbidden", forbidden("only system administrators may do this")),
            ("not found", not_found("user 7 not found")),
            ("conflict", ApiError::Conflict("job 1 is already succeeded".into())),
            ("precondition", ApiError::PreconditionFailed("project \"p\" still holds 2 repositories".into())),
            ("too large", ApiError::TooLarge("request bodies are limited to 1048576 bytes".into())),
            ("duplicate key", bad_request(berth_types::json::reject_duplicate_keys(b"{\"a\":1,\"a\":2}").unwrap_err())),
            ("internal", ApiError::internal("password hashing", "the task panicked")),
            ("store conflict", MetaError::Conflict("a project named \"p\" already exists".into()).into()),
            ("store unavailable", unavailable().into()),
            ("store corrupt", MetaError::Corrupt("bad row".into()).into()),
            ("store disk full", MetaError::StorageFull("database or disk is full".into()).into()),
            ("repository unknown", R::NameUnknown("p/app".parse().unwrap()).into()),
            ("artifact unknown", R::ManifestUnknown("p/app:v1".into()).into()),
            ("tag invalid", R::TagInvalid("tag \"-x\" is invalid".into()).into()),
            ("registry store unavailable", R::Meta(unavailable()).into()),
            ("registry failed", R::Blob(BlobError::NotFound).into()),
            ("needs authentication", Denied::NeedsAuth.into()),
            ("project missing", Denied::NoProject("p".into()).into()),
            ("project hidden", Denied::Hidden { project: "p".into(), why: "x may not read".into() }.into()),
            ("refused", Denied::Forbidden("dev may not delete artifacts in project \"p\"".into()).into()),
            ("no decision: unavailable", Denied::Unavailable("pool timed out".into()).into()),
            ("no decision: failed", Denied::Failed("bad row".into()).into()),
            ("invalid policy", berth_auth::PolicyChangeError::Invalid(invalid_policy).into()),
            ("policy store unavailable", berth_auth::PolicyChangeError::Store(unavailable()).into()),
            ("bad credentials", AuthError::BadCredentials.into()),
            ("robot disabled", AuthError::RobotDisabled("robot$p+ci".into()).into()),
            (
                "robot expired",
                AuthError::RobotExpired { name: "robot$p+ci".into(), at: "2026-01-01T00:00:00Z".into() }.into(),
            ),
            ("locked", AuthError::Locked { retry_after: Duration::from_secs(60) }.into()),
            ("hashing busy", AuthError::Busy { retry_after: Duration::from_secs(1) }.into()),
            ("token expired", AuthError::Token(TokenError::Expired).into()),
            ("token invalid", AuthError::Token(TokenError::Invalid("bad signature".into())).into()),
            ("auth store unavailable", AuthError::Store(unavailable()).into()),
            ("oidc", AuthError::Oidc("the state is missing".into()).into()),
        ]
    }

    #[tokio::test]
    async fn every_error_body() {
        let mut out = String::new();
        for (name, e) in examples() {
            let r = e.into_response();
            writeln!(out, "== {name}: {}", r.status()).unwrap();
            for h in [header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
                if let Some(v) = r.headers().get(&h) {
                    writeln!(out, "{h}: {}", v.to_str().unwrap()).unwrap();
                }
            }
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            writeln!(out, "{}\n", serde_json::to_string(&v).unwrap()).unwrap();
        }
        insta::assert_snapshot!(out);
    }
}
