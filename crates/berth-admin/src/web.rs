//! Web login: OIDC (`/c/oidc/login` → provider → `/c/oidc/callback` → the portal) and logout
//! (`/c/log_out`), at Harbor's paths. The login state (state, nonce, PKCE verifier) rides in
//! a short-lived signed cookie, so any replica can finish a login another one started; so
//! does a first-time user's verified identity on its way to the portal's onboarding page
//! (`/account/onboard`), where they choose a username.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use crate::{AdminState, SESSION_COOKIE, cookie};

const STATE_COOKIE: &str = "berth_oidc";

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/c/oidc/login", get(login))
        .route("/c/oidc/callback", get(callback))
        .route("/c/log_out", get(log_out))
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} · Berth</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{t}</h1><p>{x}</p></body></html>",
        t = esc(title),
        x = esc(text)
    );
    (status, Html(body)).into_response()
}

fn set_cookie(r: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `; Secure` when the browser reaches Berth over TLS.
pub(crate) fn secure(s: &AdminState) -> &'static str {
    if s.tls || s.external_url.as_deref().is_some_and(|u| u.starts_with("https://")) { "; Secure" } else { "" }
}

/// The `Set-Cookie` value of a new session (`token`), or of its end (`None`).
pub(crate) fn session_cookie(s: &AdminState, token: Option<&str>) -> String {
    let max_age = if token.is_some() { s.auth.config().session_ttl.as_secs() } else { 0 };
    format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}", token.unwrap_or(""), secure(s))
}

async fn login(State(s): State<AdminState>) -> Response {
    let Some(oidc) = s.auth.oidc() else {
        return page(
            StatusCode::NOT_FOUND,
            "OIDC login is not configured",
            "Set [oidc] issuer, client_id and client_secret.",
        );
    };
    let (verifier, challenge) = berth_auth::oidc::pkce_pair();
    let state = berth_auth::token::b64url(&rand::random::<[u8; 16]>());
    let nonce = berth_auth::token::b64url(&rand::random::<[u8; 16]>());
    let url = match oidc.authorize_url(&state, &nonce, &challenge).await {
        Ok(u) => u,
        Err(e) => return page(StatusCode::BAD_GATEWAY, "The identity provider cannot be reached", &e.to_string()),
    };
    let signed = match s
        .auth
        .sign_state(json!({"state": state, "nonce": nonce, "verifier": verifier}), Duration::from_secs(600))
    {
        Ok(t) => t,
        Err(e) => return page(StatusCode::INTERNAL_SERVER_ERROR, "Login failed", &e.to_string()),
    };
    let mut r = (StatusCode::FOUND, [(header::LOCATION, url)]).into_response();
    set_cookie(
        &mut r,
        &format!("{STATE_COOKIE}={signed}; Path=/c/oidc; HttpOnly; SameSite=Lax; Max-Age=600{}", secure(&s)),
    );
    r
}

async fn callback(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(oidc) = s.auth.oidc() else {
        return page(StatusCode::NOT_FOUND, "OIDC login is not configured", "");
    };
    if let Some(err) = q.get("error") {
        let d = q.get("error_description").map(String::as_str).unwrap_or("");
        return page(StatusCode::UNAUTHORIZED, "The identity provider refused the login", &format!("{err}: {d}"));
    }
    let (Some(code), Some(state)) = (q.get("code"), q.get("state")) else {
        return page(StatusCode::BAD_REQUEST, "Login failed", "The callback needs code and state.");
    };
    let Some(saved) = cookie(&headers, STATE_COOKIE) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Login failed",
            "The login cookie is missing: start again at /c/oidc/login.",
        );
    };
    let saved = match s.auth.verify_state(saved).await {
        Ok(v) => v,
        Err(_) => return page(StatusCode::BAD_REQUEST, "Login failed", "The login took too long: start again."),
    };
    if saved["state"].as_str() != Some(state.as_str()) {
        return page(StatusCode::BAD_REQUEST, "Login failed", "The state does not match this login: start again.");
    }
    let identity = match oidc
        .exchange(code, saved["verifier"].as_str().unwrap_or(""), saved["nonce"].as_str().unwrap_or(""))
        .await
    {
        Ok(i) => i,
        Err(e) => return page(StatusCode::UNAUTHORIZED, "Login failed", &e.to_string()),
    };
    let p = match s.auth.oidc_login(&identity).await {
        Ok(berth_auth::oidc::OidcLogin::User(p)) => p,
        Ok(berth_auth::oidc::OidcLogin::Onboard { identity, .. }) => {
            // A first-time user chooses a username on the portal's onboarding page; the
            // verified identity rides there in a signed, short-lived cookie.
            let token = match s.auth.sign_onboarding(&identity, Duration::from_secs(ONBOARD_TTL)) {
                Ok(t) => t,
                Err(e) => return page(StatusCode::INTERNAL_SERVER_ERROR, "Login failed", &e.to_string()),
            };
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, ONBOARD_PATH)]).into_response();
            set_cookie(&mut r, &onboard_cookie(&s, Some(&token)));
            set_cookie(&mut r, &format!("{STATE_COOKIE}=; Path=/c/oidc; HttpOnly; SameSite=Lax; Max-Age=0"));
            return r;
        }
        Err(e) => return page(StatusCode::FORBIDDEN, "Login failed", &e.to_string()),
    };
    signed_in(&s, &p, "oidc", None)
}

/// Where a first-time OIDC user chooses a username (the portal's page).
pub(crate) const ONBOARD_PATH: &str = "/account/onboard";
/// The cookie carrying the verified identity to that page.
pub(crate) const ONBOARD_COOKIE: &str = "berth_onboard";
/// How long the onboarding page may take (seconds).
const ONBOARD_TTL: u64 = 900;

/// The `Set-Cookie` of the onboarding identity (`None`: its end).
pub(crate) fn onboard_cookie(s: &AdminState, token: Option<&str>) -> String {
    let age = if token.is_some() { ONBOARD_TTL } else { 0 };
    format!(
        "{ONBOARD_COOKIE}={}; Path={ONBOARD_PATH}; HttpOnly; SameSite=Lax; Max-Age={age}{}",
        token.unwrap_or(""),
        secure(s)
    )
}

/// Signed in through `how` (`oidc`, `onboarding`): audit it, start the session, and go to
/// the portal (`extra`: one more cookie to set, e.g. the end of the onboarding one).
pub(crate) fn signed_in(s: &AdminState, p: &berth_auth::Principal, how: &str, extra: Option<String>) -> Response {
    s.auth.audit_login_success(p, None, how);
    let session = match s.auth.session_token(p) {
        Ok(t) => t,
        Err(e) => return page(StatusCode::INTERNAL_SERVER_ERROR, "Login failed", &e.to_string()),
    };
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/harbor/projects")]).into_response();
    set_cookie(&mut r, &session_cookie(s, Some(&session)));
    set_cookie(&mut r, &format!("{STATE_COOKIE}=; Path=/c/oidc; HttpOnly; SameSite=Lax; Max-Age=0"));
    if let Some(c) = extra {
        set_cookie(&mut r, &c);
    }
    r
}

async fn log_out() -> Response {
    let mut r = page(StatusCode::OK, "Signed out", "");
    set_cookie(&mut r, &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"));
    r
}
