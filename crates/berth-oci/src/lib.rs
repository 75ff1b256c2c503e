//! The OCI Distribution HTTP API (`/v2/…`) of Berth, plus `/healthz`, `/readyz` and
//! `/metrics`, as an axum [`Router`].
//!
//! **Boundary:** only this crate knows the OCI wire format (paths, headers, error bodies).
//! Requests are parsed once into a typed [`route::Route`]; handlers call
//! [`berth_registry::Registry`] and errors are mapped to OCI codes in [`error`] alone.
//!
//! Every `/v2` request is authenticated and authorized (module `auth`) before its handler
//! runs; `/service/token` is the Docker token service.
//!
//! ```no_run
//! # async fn f(registry: std::sync::Arc<berth_registry::Registry>, auth: std::sync::Arc<berth_auth::Auth>) {
//! let app = berth_oci::router(berth_oci::AppState::new(registry, auth));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

mod auth;
pub mod error;
mod handlers;
pub mod metrics;
pub mod route;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use berth_registry::Registry;
use http::{HeaderValue, StatusCode};
use tracing::{Instrument, error, info, info_span, warn};

use crate::error::{InternalError, OciError};
use crate::metrics::{Metrics, RequestLabels, RouteLabels};

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct AppState {
    /// The registry service.
    pub registry: Arc<Registry>,
    /// The access service.
    pub auth: Arc<berth_auth::Auth>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The URL clients reach Berth at (for token realms), if configured.
    pub external_url: Option<String>,
    /// Whether this server speaks TLS (for realms derived from `Host`).
    pub tls: bool,
    /// Slowest upload body accepted: bytes per second, judged over each window of the given
    /// length (0 bytes: any rate).
    pub min_upload_rate: (usize, std::time::Duration),
    /// SHA-256 of the operator token, if one is configured.
    operator_token: Option<[u8; 32]>,
    /// Scanner data, for pull blocking (absent: no pull blocking).
    pub scanning: Option<Arc<berth_scanner::Scanning>>,
    /// Signature policies (absent: none enforced).
    pub signatures: Option<Arc<berth_registry::Signatures>>,
    /// Pull-through caches (absent: none).
    pub proxy: Option<Arc<berth_registry::Proxy>>,
}

impl AppState {
    /// State around a registry and an access service, with fresh metrics.
    pub fn new(registry: Arc<Registry>, auth: Arc<berth_auth::Auth>) -> Self {
        AppState {
            registry,
            auth,
            metrics: Arc::new(Metrics::default()),
            external_url: None,
            tls: false,
            min_upload_rate: (1024, std::time::Duration::from_secs(30)),
            operator_token: None,
            scanning: None,
            signatures: None,
            proxy: None,
        }
    }

    /// Accept `token` as a bearer credential of a system administrator (the operator token).
    pub fn with_operator_token(mut self, token: Option<&str>) -> Self {
        use sha2::Digest as _;
        self.operator_token = token.filter(|t| !t.is_empty()).map(|t| sha2::Sha256::digest(t.as_bytes()).into());
        self
    }

    /// Is `token` the operator token? (Constant time.)
    pub fn operator_token_matches(&self, token: &str) -> bool {
        use sha2::Digest as _;
        let Some(expected) = &self.operator_token else { return false };
        let given: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        berth_auth::secret::ct_eq(&given, expected)
    }

    fn metrics_bytes_in(&self, route: &str, n: u64) {
        self.metrics.bytes_in.get_or_create(&RouteLabels { route: route.to_owned() }).inc_by(n);
    }

    fn metrics_bytes_out(&self, route: &str, n: u64) {
        self.metrics.bytes_out.get_or_create(&RouteLabels { route: route.to_owned() }).inc_by(n);
    }
}

/// Percent-encode a query value (tags and names only hold `[A-Za-z0-9._/-]`, but be safe).
pub(crate) fn pct_encode(s: &str) -> String {
    const KEPT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
    percent_encoding::utf8_percent_encode(s, KEPT).to_string()
}

/// Query pairs, decoded as forms are (`+` is a space: token clients send several scopes
/// as `scope=a+b`), in order (keys may repeat, e.g. `tag`).
pub(crate) fn query(uri: &http::Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn v2(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ip = auth::client_ip(&parts.extensions);
    let has_body = parts.headers.get(http::header::TRANSFER_ENCODING).is_some()
        || parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    let result = match route::parse(parts.uri.path()) {
        Ok(r) => match auth::check(&state, &r, &parts.method, &parts.headers, &parts.uri, ip.as_deref()).await {
            Ok(who) => {
                let origin = berth_registry::Origin::new(who.name(), ip);
                handlers::dispatch(&state, &who, &origin, r, &parts, body).await
            }
            Err(e) => Err(e),
        },
        // A tag that could not exist is not there: 404 for reads and deletes (clients probe
        // with such names); only a push names it as invalid.
        Err(route::RouteError::Name(berth_types::NameError::Tag(e)))
            if parts.method != http::Method::PUT && parts.uri.path().contains("/manifests/") =>
        {
            Err(OciError::Registry(berth_registry::RegistryError::ManifestUnknown(format!(
                "no tag can be called that: {e:?}"
            ))))
        }
        Err(e) => Err(OciError::from(e)),
    };
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    // An error may be answered before the request body was read. HTTP/1 then cannot reuse the
    // connection (hyper closes it), so say so: a client that pooled it would fail its next
    // request with an incomplete message.
    let failed = resp.status().is_client_error() || resp.status().is_server_error();
    if has_body && failed && parts.version <= http::Version::HTTP_11 {
        resp.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.registry.ping().await {
        Ok(_) => "ready".into_response(),
        Err(e) => {
            warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(http::header::RETRY_AFTER, crate::error::RETRY_AFTER_SECS.to_string())],
                "metadata store unavailable",
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let (lockouts, locked) = state.auth.lock_stats();
    state.metrics.set_login_locks(lockouts, locked);
    if let Some(p) = &state.proxy {
        state.metrics.set_proxy(p.stale_served(), p.fetched_bytes());
    }
    (
        [(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// One span per request (method, route template, request id, repository); one event per
/// response (status, duration); metrics; the real cause of any 5xx logged here, once.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    // HTTP/2 carries the host in `:authority` (the URI), not in a `Host` header: give every
    // handler one place to read it (token realms, the portal's pull commands).
    if !req.headers().contains_key(http::header::HOST)
        && let Some(v) = req.uri().authority().and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(http::header::HOST, v);
    }
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let path = req.uri().path();
    let (template, repo) = if path.starts_with("/v2") {
        match route::parse(path) {
            Ok(r) => (r.template(), r.repo().map(|r| r.to_string()).unwrap_or_default()),
            Err(_) => ("/v2/(invalid)", String::new()),
        }
    } else {
        (
            match path {
                "/healthz" | "/readyz" | "/metrics" | "/service/token" => path_static(path),
                p if p.starts_with("/api/v2.0/") => "/api/v2.0",
                _ => "(other)",
            },
            String::new(),
        )
    };
    let method = req.method().clone();
    let span = info_span!("request", method = %method, route = template, request_id = %request_id, repo.name = %repo);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        req.headers_mut().insert("x-request-id", v);
    }
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    let elapsed = started.elapsed();
    let _g = span.enter();
    if let Some(InternalError(cause)) = resp.extensions_mut().remove::<InternalError>() {
        error!(status = status.as_u16(), duration_ms = elapsed.as_millis() as u64, cause = %cause, "request failed");
    } else {
        info!(status = status.as_u16(), duration_ms = elapsed.as_millis() as u64, "response");
    }
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: template.to_owned(),
            method: metrics::method_label(&method).to_owned(),
            status: status.as_u16(),
        })
        .inc();
    state.metrics.duration.get_or_create(&RouteLabels { route: template.to_owned() }).observe(elapsed.as_secs_f64());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    if template.starts_with("/v2") {
        h.insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    }
    resp
}

fn path_static(p: &str) -> &'static str {
    match p {
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/service/token" => "/service/token",
        _ => "/metrics",
    }
}

fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".into());
    OciError::Panic(msg).into_response()
}

/// Only `/healthz`, `/readyz` and `/metrics`: what a worker-only process serves.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics_text))
        .fallback(|| async { OciError::NotFound.into_response() })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The complete HTTP application.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// `app` with what every listener has: request ids, logs and metrics, and panics caught.
pub fn observed(state: AppState, app: Router) -> Router {
    app.layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state, observe))
}

/// The HTTP application plus `extra` routes (e.g. the management API), all behind the same
/// request span, metrics and panic handling.
pub fn router_with(state: AppState, extra: Router) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics_text))
        .route("/v2", axum::routing::any(v2))
        .route("/v2/", axum::routing::any(v2))
        .route("/v2/{*rest}", axum::routing::any(v2))
        .route("/service/token", axum::routing::get(auth::token_get).post(auth::token_post))
        .with_state(state.clone())
        .merge(extra)
        .fallback(|| async { OciError::NotFound.into_response() })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state, observe))
}
