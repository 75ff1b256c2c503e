//! Onboarding of a first-time OIDC user (as Harbor does): after the identity provider
//! vouched for them, they choose their Berth username — proposed from the username claim —
//! and their account is created with the provider's email, name and groups. The verified
//! identity comes from the callback in a signed, short-lived cookie (`web::ONBOARD_COOKIE`),
//! so nothing about it can be changed here but the name.

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use berth_auth::Principal;
use berth_auth::oidc::Identity;
use maud::html;
use serde::Deserialize;

use super::{csrf_ok, layout, with_cookies};
use crate::web::{ONBOARD_COOKIE, ONBOARD_PATH};
use crate::{AdminState, cookie};

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route(ONBOARD_PATH, get(show).post(choose))
}

/// The identity waiting for a username, if the cookie holds a genuine, current one.
async fn identity(s: &AdminState, headers: &HeaderMap) -> Option<Identity> {
    s.auth.verify_onboarding(cookie(headers, ONBOARD_COOKIE)?).await.ok()
}

fn form(
    s: &AdminState,
    headers: &HeaderMap,
    id: Option<&Identity>,
    name: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (token, set) = super::csrf(s, headers);
    let body = html! {
        div.panel.narrow.stack {
            @match id {
                None => {
                    h1 { "Sign in again" }
                    p { "This sign-in took too long or did not come from your identity provider." }
                    p { a.button href="/c/oidc/login" { "Sign in with your organisation (SSO)" } }
                }
                Some(id) => {
                    h1 { "Welcome to Berth" }
                    p { "Your organisation signed you in" @if !id.email.is_empty() { " as " strong { (id.email) } } ". Choose the username you will use with " code { "docker login" } " and in the portal; it cannot be changed later." }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    form method="post" action=(ONBOARD_PATH) {
                        input type="hidden" name="csrf" value=(token);
                        label for="username" { "Username" }
                        input #username type="text" name="username" value=(name) required maxlength="255" autocomplete="username" autofocus;
                        p { button type="submit" { "Create my account" } }
                    }
                }
            }
        }
    };
    let mut cookies: Vec<String> = set.into_iter().collect();
    if id.is_none() {
        cookies.push(crate::web::onboard_cookie(s, None));
    }
    with_cookies(layout("Choose a username", &Principal::Anonymous, "", &token, body), status, &cookies)
}

async fn show(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    let Some(id) = identity(&s, &headers).await else {
        return form(&s, &headers, None, "", None, StatusCode::BAD_REQUEST);
    };
    let why = s.auth.username_problem(&id.username).await.ok().flatten();
    let proposed = if why.is_none() { id.username.clone() } else { String::new() };
    let why = why.map(|w| format!("Your organisation proposed a username Berth cannot use: {w}. Choose another."));
    form(&s, &headers, Some(&id), &proposed, why.as_deref(), StatusCode::OK)
}

#[derive(Deserialize)]
struct Choice {
    csrf: String,
    username: String,
}

async fn choose(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<Choice>) -> Response {
    let Some(id) = identity(&s, &headers).await else {
        return form(&s, &headers, None, "", None, StatusCode::BAD_REQUEST);
    };
    let name = f.username.trim();
    if !csrf_ok(&headers, &f.csrf) {
        let e = "This form expired or came from another site; no account was created. Try again.";
        return form(&s, &headers, Some(&id), name, Some(e), StatusCode::FORBIDDEN);
    }
    match s.auth.oidc_onboard(&id, name).await {
        Ok(p) => crate::web::signed_in(&s, &p, "oidc", Some(crate::web::onboard_cookie(&s, None))),
        Err(berth_auth::AuthError::Oidc(why)) => {
            let mut chars = why.chars();
            let msg: String = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
            form(&s, &headers, Some(&id), name, Some(&format!("{msg}.")), StatusCode::BAD_REQUEST)
        }
        Err(e) => {
            tracing::error!(error = %e, "portal: onboarding an OIDC user");
            let msg = "Creating your account failed; try again in a moment.";
            form(&s, &headers, Some(&id), name, Some(msg), StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}
