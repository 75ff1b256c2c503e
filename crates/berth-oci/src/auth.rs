//! Authentication and authorization of `/v2` requests, and the Docker token service
//! (`/service/token`).
//!
//! Every registry route is checked here before its handler runs ([`check`]): the route and
//! method say which permission (and which ECR action, for repository policies) it needs;
//! the caller is anonymous, a Basic-auth user or robot, or the bearer of an access token.
//! Failures become the responses clients expect: `401` with a `WWW-Authenticate: Bearer
//! realm=…,service=…,scope=…` challenge when credentials or a wider token would help, `403
//! DENIED` when an authenticated caller may not, `404 NAME_UNKNOWN` for a missing project or
//! one the caller may not see (the same answer, so private names do not leak),
//! `429 TOOMANYREQUESTS` while a login is locked.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use berth_auth::policy::EcrAction;
use berth_auth::rbac::Perm;
use berth_auth::token::Scope;
use berth_auth::{AuthError, Denied, Principal, Target};
use berth_types::Reference;
use http::{HeaderMap, Method, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::OciError;
use crate::route::Route;

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need {
    /// Any authenticated caller (or any valid token).
    Authenticated,
    /// The catalog (filtered to what the caller may pull).
    Catalog,
    /// A permission on a repository.
    Repo { repo: String, perm: Perm, ecr: EcrAction, scope_actions: &'static str },
}

/// The permission a route needs for a method (`None`: method not allowed, the handler says so).
pub(crate) fn need(route: &Route, method: &Method) -> Option<Need> {
    use Method as M;
    let repo = |r: &berth_types::RepoName, perm, ecr, scope_actions| {
        Some(Need::Repo { repo: r.to_string(), perm, ecr, scope_actions })
    };
    let read = matches!(*method, M::GET | M::HEAD);
    match (route, method) {
        (Route::Base, _) => Some(Need::Authenticated),
        (Route::Catalog, _) if read => Some(Need::Catalog),
        (Route::Tags(r), _) if read => repo(r, Perm::Pull, EcrAction::ListImages, "pull"),
        (Route::Manifest(r, _), _) if read => repo(r, Perm::Pull, EcrAction::BatchGetImage, "pull"),
        (Route::Manifest(r, _), &M::PUT) => repo(r, Perm::Push, EcrAction::PutImage, "pull,push"),
        (Route::Manifest(r, Reference::Tag(_)), &M::DELETE) => {
            repo(r, Perm::DeleteTag, EcrAction::BatchDeleteImage, "delete")
        }
        (Route::Manifest(r, _), &M::DELETE) => repo(r, Perm::DeleteArtifact, EcrAction::BatchDeleteImage, "delete"),
        (Route::Blob(r, _), &M::HEAD) => repo(r, Perm::Pull, EcrAction::BatchCheckLayerAvailability, "pull"),
        (Route::Blob(r, _), &M::GET) => repo(r, Perm::Pull, EcrAction::GetDownloadUrlForLayer, "pull"),
        (Route::Blob(r, _), &M::DELETE) => repo(r, Perm::DeleteArtifact, EcrAction::BatchDeleteImage, "delete"),
        (Route::UploadStart(r), &M::POST) => repo(r, Perm::Push, EcrAction::InitiateLayerUpload, "pull,push"),
        (Route::Upload(r, _), &M::PUT) => repo(r, Perm::Push, EcrAction::CompleteLayerUpload, "pull,push"),
        (Route::Upload(r, _), &M::GET | &M::PATCH | &M::DELETE) => {
            repo(r, Perm::Push, EcrAction::UploadLayerPart, "pull,push")
        }
        (Route::Referrers(r, _), _) if read => repo(r, Perm::Pull, EcrAction::BatchGetImage, "pull"),
        // Not an operation of this endpoint: the handler answers 405.
        _ => None,
    }
}

/// The client's address, as the socket saw it.
pub(crate) fn client_ip(ext: &http::Extensions) -> Option<String> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

/// `Basic` credentials from a header, if well-formed.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The realm URL of challenges: `external_url`, else where this request says clients reach
/// Berth (proxy headers, `Host`, or the HTTP/2 `:authority`).
pub(crate) fn realm(state: &AppState, headers: &HeaderMap, uri: &http::Uri) -> String {
    let base = berth_auth::origin::public_base(state.external_url.as_deref(), headers, uri, state.tls);
    format!("{base}/service/token")
}

fn challenge(
    state: &AppState,
    headers: &HeaderMap,
    uri: &http::Uri,
    scope: Option<String>,
    error: Option<&str>,
) -> String {
    if state.auth.config().basic_challenge {
        return format!("Basic realm=\"{}\"", state.auth.config().service);
    }
    let mut c = format!("Bearer realm=\"{}\",service=\"{}\"", realm(state, headers, uri), state.auth.config().service);
    if let Some(s) = scope {
        c.push_str(&format!(",scope=\"{s}\""));
    }
    if let Some(e) = error {
        c.push_str(&format!(",error=\"{e}\""));
    }
    c
}

/// Who is calling: anonymous, Basic credentials, the operator token or an access token.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<&str>,
) -> Result<Principal, (AuthError, bool)> {
    if let Some((u, p)) = basic_credentials(headers) {
        // `Basic Og==` (empty user and password) is what clients send for "nobody".
        if u.is_empty() && p.is_empty() {
            return Ok(Principal::Anonymous);
        }
        return state.auth.login(&u, &p, ip).await.map_err(|e| (e, false));
    }
    if let Some(t) = bearer(headers) {
        if state.operator_token_matches(t) {
            return Ok(Principal::Operator);
        }
        return state.auth.verify_access_token(t).await.map(Principal::Token).map_err(|e| (e, true));
    }
    Ok(Principal::Anonymous)
}

fn auth_failure(
    state: &AppState,
    headers: &HeaderMap,
    uri: &http::Uri,
    e: AuthError,
    was_token: bool,
    scope: Option<String>,
) -> OciError {
    match e {
        AuthError::Locked { retry_after } | AuthError::Busy { retry_after } => {
            OciError::TooManyRequests { message: e.to_string(), retry_after }
        }
        AuthError::Store(m) => m.into(),
        AuthError::Unavailable(m) => OciError::ProviderUnavailable(m),
        _ => OciError::Unauthorized {
            message: e.to_string(),
            challenge: challenge(state, headers, uri, scope, was_token.then_some("invalid_token")),
        },
    }
}

/// Authenticate and authorize one `/v2` request. Returns the caller.
pub(crate) async fn check(
    state: &AppState,
    route: &Route,
    method: &Method,
    headers: &HeaderMap,
    uri: &http::Uri,
    ip: Option<&str>,
) -> Result<Principal, OciError> {
    let need = need(route, method);
    // A cross-repository mount also reads the `from` repository: the challenge asks for
    // both, so a token client gets one token that lets the mount happen.
    let mount_from = match route {
        Route::UploadStart(repo) if uri.query().is_some_and(|q| q.contains("mount=")) => crate::query(uri)
            .into_iter()
            .find(|(k, _)| k == "from")
            .and_then(|(_, v)| v.parse::<berth_types::RepoName>().ok())
            .filter(|from| from != repo),
        _ => None,
    };
    // The scope a challenge names; only built when the request is refused.
    let scope = || match &need {
        Some(Need::Repo { repo, scope_actions, .. }) => Some(match &mount_from {
            Some(from) => format!("repository:{from}:pull repository:{repo}:{scope_actions}"),
            None => format!("repository:{repo}:{scope_actions}"),
        }),
        Some(Need::Catalog) => Some("registry:catalog:*".to_owned()),
        _ => None,
    };
    let p =
        authenticate(state, headers, ip).await.map_err(|(e, t)| auth_failure(state, headers, uri, e, t, scope()))?;
    let unauthorized = |message: String, error: Option<&str>| OciError::Unauthorized {
        message,
        challenge: challenge(state, headers, uri, scope(), error),
    };
    match &need {
        None => Ok(p),
        Some(Need::Authenticated) => match &p {
            Principal::Anonymous => Err(unauthorized("authentication required".into(), None)),
            _ => Ok(p),
        },
        Some(Need::Catalog) => match &p {
            Principal::Anonymous => Err(unauthorized("authentication required".into(), None)),
            Principal::Token(c) if !c.access.iter().any(|a| a.kind == "registry" && a.name == "catalog") => {
                Err(unauthorized("the token does not grant registry:catalog:*".into(), Some("insufficient_scope")))
            }
            _ => Ok(p),
        },
        Some(Need::Repo { repo, perm, ecr, .. }) => {
            match state.auth.decide(&p, Target::Repository(repo, *ecr), *perm).await {
                // A token without pull on a mount's `from` repository, whose holder could
                // have it: ask for a token with both (as Distribution does), rather than
                // quietly falling back to an upload.
                Ok(()) => match (&p, &mount_from) {
                    (Principal::Token(c), Some(from)) => {
                        let read = EcrAction::GetDownloadUrlForLayer;
                        if state.auth.decide(&p, Target::Repository(from.as_str(), read), Perm::Pull).await.is_err()
                            && holder_may(state, &c.sub, from.as_str(), read, Perm::Pull).await
                        {
                            return Err(unauthorized(
                                format!("the token does not grant pull on {from}, the repository to mount from"),
                                Some("insufficient_scope"),
                            ));
                        }
                        Ok(p)
                    }
                    _ => Ok(p),
                },
                Err(Denied::NeedsAuth) => Err(unauthorized("authentication required".into(), None)),
                // A project the caller may not see answers exactly as a missing one, so
                // nobody learns which private projects exist.
                Err(Denied::NoProject(name)) => Err(OciError::ProjectUnknown(name)),
                Err(Denied::Hidden { project, why }) => match &p {
                    // A token's holder who could get a wider token is told to get one; one
                    // who could not sees the project as missing, like everybody else.
                    Principal::Token(c) if holder_may_see(state, &c.sub, repo, *ecr, *perm).await => Err(unauthorized(
                        format!("requested access to the resource is denied: {why}"),
                        Some("insufficient_scope"),
                    )),
                    _ => Err(OciError::ProjectUnknown(project)),
                },
                Err(Denied::Unavailable(m)) => Err(OciError::Unavailable(m)),
                Err(Denied::Failed(m)) => Err(OciError::Auth(m)),
                Err(Denied::Forbidden(why)) => match &p {
                    // A wider token may help: the client asks the token service again.
                    Principal::Token(_) => Err(unauthorized(
                        format!("requested access to the resource is denied: {why}"),
                        Some("insufficient_scope"),
                    )),
                    _ => Err(OciError::Denied(why)),
                },
            }
        }
    }
}

/// Could the user or robot `name` do `perm` on `repo` (with a token naming it)?
async fn holder_may(state: &AppState, name: &str, repo: &str, ecr: EcrAction, perm: Perm) -> bool {
    let Ok(Some(holder)) = state.auth.principal_by_name(name).await else { return false };
    state.auth.decide(&holder, Target::Repository(repo, ecr), perm).await.is_ok()
}

/// Could the user or robot `name` see `repo`'s project (with a token naming it)?
async fn holder_may_see(state: &AppState, name: &str, repo: &str, ecr: EcrAction, perm: Perm) -> bool {
    let Ok(Some(holder)) = state.auth.principal_by_name(name).await else { return false };
    !matches!(
        state.auth.decide(&holder, Target::Repository(repo, ecr), perm).await,
        Err(Denied::Hidden { .. } | Denied::NoProject(_) | Denied::NeedsAuth)
    )
}

/// Query of `GET /service/token`.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct TokenQuery {
    service: Option<String>,
    offline_token: Option<String>,
    #[allow(dead_code)]
    account: Option<String>,
    #[allow(dead_code)]
    client_id: Option<String>,
}

/// Form of `POST /service/token` (OAuth2).
#[derive(Debug, Deserialize, Default)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    service: Option<String>,
    scope: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    access_type: Option<String>,
    #[allow(dead_code)]
    client_id: Option<String>,
}

fn token_error(status: StatusCode, code: &str, message: String, headers: Option<(&'static str, String)>) -> Response {
    let body = json!({
        "errors": [{"code": code, "message": message}],
        "error": if status == StatusCode::UNAUTHORIZED { "invalid_grant" } else { "invalid_request" },
        "error_description": message,
    });
    let mut r = (status, axum::Json(body)).into_response();
    if let Some((k, v)) = headers
        && let Ok(v) = http::HeaderValue::from_str(&v)
    {
        r.headers_mut().insert(k, v);
    }
    r
}

fn login_error(e: AuthError) -> Response {
    match e {
        AuthError::Locked { retry_after } | AuthError::Busy { retry_after } => token_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            e.to_string(),
            Some(("retry-after", retry_after.as_secs().max(1).to_string())),
        ),
        AuthError::Store(berth_registry::MetaError::Unavailable(ref m)) => {
            tracing::warn!(error = %m, "token service: metadata database unavailable");
            token_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the registry's metadata database is unavailable; try again in a few seconds".into(),
                Some(("retry-after", crate::error::RETRY_AFTER_SECS.to_string())),
            )
        }
        AuthError::Unavailable(ref m) => token_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            m.clone(),
            Some(("retry-after", crate::error::RETRY_AFTER_SECS.to_string())),
        ),
        AuthError::Store(ref m) => {
            tracing::error!(error = %m, "token service: metadata store failed");
            token_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error; see the server log".into(), None)
        }
        _ => token_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", e.to_string(), None),
    }
}

/// `Some(error response)` when the request names another service.
fn wrong_service(state: &AppState, service: Option<&str>) -> Option<Response> {
    match service {
        Some(s) if !s.is_empty() && s != state.auth.config().service => Some(token_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            format!("this token service issues tokens for {:?}, not {s:?}", state.auth.config().service),
            None,
        )),
        _ => None,
    }
}

async fn issue(state: &AppState, p: &Principal, scopes: &[Scope], offline: bool, oauth: bool) -> Response {
    let issued = match state.auth.issue_token(p, scopes).await {
        Ok(t) => t,
        Err(e) => return login_error(e),
    };
    let mut body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": berth_auth::rfc3339(issued.issued_at * 1000),
    });
    if oauth {
        let granted: Vec<String> =
            issued.access.iter().map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(","))).collect();
        body["scope"] = json!(granted.join(" "));
        body["token_type"] = json!("Bearer");
    }
    if offline && p.is_authenticated() {
        match state.auth.refresh_token(p) {
            Ok(r) => body["refresh_token"] = json!(r),
            Err(e) => return login_error(e),
        }
    }
    let mut r = axum::Json(body).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

/// `GET /service/token`: Basic credentials (or none, for anonymous pulls) and `scope`s.
pub(crate) async fn token_get(
    State(state): State<AppState>,
    uri: http::Uri,
    headers: HeaderMap,
    ext: http::Extensions,
    Query(q): Query<TokenQuery>,
) -> Response {
    if let Some(r) = wrong_service(&state, q.service.as_deref()) {
        return r;
    }
    let pairs = crate::query(&uri);
    let scopes = Scope::parse_all(pairs.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.as_str()));
    let ip = client_ip(&ext);
    let p = match basic_credentials(&headers) {
        Some((u, pw)) if u.is_empty() && pw.is_empty() => Principal::Anonymous,
        // Issuing a token is not a login (clients ask for one per pull or push): failures are
        // audited by `login`, successes are not.
        Some((u, pw)) => match state.auth.login(&u, &pw, ip.as_deref()).await {
            Ok(p) => p,
            Err(e) => return login_error(e),
        },
        None if headers.contains_key(header::AUTHORIZATION) => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "the token service takes Basic credentials, or none for anonymous access".into(),
                None,
            );
        }
        None => Principal::Anonymous,
    };
    let offline = q.offline_token.as_deref() == Some("true");
    issue(&state, &p, &scopes, offline, false).await
}

/// `POST /service/token`: an OAuth2 password or refresh-token grant.
pub(crate) async fn token_post(
    State(state): State<AppState>,
    ext: http::Extensions,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "expected an application/x-www-form-urlencoded OAuth2 token request".into(),
            None,
        );
    };
    if let Some(r) = wrong_service(&state, f.service.as_deref()) {
        return r;
    }
    let scopes = Scope::parse_all(f.scope.as_deref());
    let ip = client_ip(&ext);
    let p = match f.grant_type.as_deref() {
        Some("password") => {
            let (Some(u), Some(pw)) = (f.username.as_deref(), f.password.as_deref()) else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "UNSUPPORTED",
                    "grant_type=password needs username and password".into(),
                    None,
                );
            };
            match state.auth.login(u, pw, ip.as_deref()).await {
                Ok(p) => p,
                Err(e) => return login_error(e),
            }
        }
        Some("refresh_token") => {
            let Some(t) = f.refresh_token.as_deref() else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "UNSUPPORTED",
                    "grant_type=refresh_token needs refresh_token".into(),
                    None,
                );
            };
            match state.auth.redeem_refresh_token(t).await {
                Ok(p) => p,
                Err(e) => return login_error(e),
            }
        }
        other => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                format!("unsupported grant_type {:?}: use password or refresh_token", other.unwrap_or("")),
                None,
            );
        }
    };
    // Password grants return a refresh token (as Distribution does); refresh grants keep theirs.
    let offline = f.grant_type.as_deref() == Some("password") || f.access_type.as_deref() == Some("offline");
    issue(&state, &p, &scopes, offline, true).await
}
