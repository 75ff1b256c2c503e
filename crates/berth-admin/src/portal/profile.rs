//! The user profile: who you are, and your CLI secret — the password for `docker login`,
//! `podman login` and `helm registry login`, which an SSO user has no other way to get. The
//! secret is stored hashed, so it is shown once, when generated; it can be regenerated, set to
//! one's own choice (the password rules apply) or revoked.

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use berth_auth::secret;
use maud::{Markup, html};
use serde::Deserialize;

use super::keys::{KeyForm, KeyNotice};
use super::{Ctx, csrf_ok, signed_in};
use crate::AdminState;

const PATH: &str = "/harbor/profile";
const KEYS: &str = "/harbor/profile/access-keys";

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route(PATH, get(show))
        .route("/harbor/profile/cli-secret", post(change))
        .route(KEYS, post(change_keys))
}

enum Notice {
    None,
    Secret(String),
    Done(&'static str),
    Error(String),
}

async fn page(s: &AdminState, headers: &HeaderMap, notice: Notice, status: StatusCode) -> Response {
    keyed_page(s, headers, notice, KeyNotice::None, status).await
}

async fn keyed_page(
    s: &AdminState,
    headers: &HeaderMap,
    notice: Notice,
    keys: KeyNotice,
    status: StatusCode,
) -> Response {
    let c = match Ctx::user(s, headers, PATH).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let token = &c.csrf;
    let Some(me) = c.who.user() else {
        let body = html! { h1 { "Profile" } p { "Only user accounts have a profile." } };
        return c.page("Profile", PATH, body, StatusCode::OK);
    };
    let record = match s.auth.user(me.id).await {
        Ok(Some(u)) => u,
        _ => {
            let body = html! { p.error role="alert" { "Your account cannot be read right now; try again shortly." } };
            return c.page("Profile", PATH, body, StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let host = super::registry_host(s, headers);
    let endpoint = super::keys::endpoint(s, headers);
    let key_panel = super::keys::panel(s, &record.username, KEYS, token, true, &keys, &endpoint).await;
    let body: Markup = html! {
        h1 { "Your profile" }
        div.panel.stack {
            dl.facts {
                dt { "Username" } dd { (record.username) }
                dt { "Email" } dd { @if record.email.is_empty() { span.muted { "none" } } @else { (record.email) } }
                dt { "Signs in with" } dd { @if record.oidc_subject.is_some() { "your organisation (SSO)" } @else { "a password" } }
                @if record.sysadmin { dt { "Role" } dd { "System administrator" } }
            }
        }
        h2 { "CLI secret" }
        div.panel.stack {
            p {
                "Command-line tools sign in with your username and this secret instead of your password: "
                code { "docker login" } ", " code { "podman login" } ", " code { "helm registry login" } "."
            }
            @match &notice {
                Notice::Secret(secret) => {
                    div.notice role="status" {
                        p { strong { "Your new CLI secret — copy it now; it is not shown again:" } }
                        p { code.secret #cli-secret { (secret) } }
                        p { "Sign in with it:" }
                        pre tabindex="0" { code { "docker login " (host) " -u " (record.username) "\n" "podman login " (host) " -u " (record.username) } }
                    }
                }
                Notice::Done(msg) => { p.ok role="status" { (msg) } }
                Notice::Error(e) => { p.error role="alert" { (e) } }
                Notice::None => {}
            }
            p {
                @if let Some(at) = record.cli_secret_at.filter(|_| record.cli_secret_hash.is_some()) {
                    "A CLI secret is set (since " (super::when(at)) ")."
                } @else {
                    "You have no CLI secret yet."
                }
            }
            form method="post" action="/harbor/profile/cli-secret" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="action" value="generate";
                button type="submit" { @if record.cli_secret_hash.is_some() { "Generate a new secret" } @else { "Generate a secret" } }
            }
            details {
                summary { "Choose your own secret" }
                form method="post" action="/harbor/profile/cli-secret" {
                    input type="hidden" name="csrf" value=(token);
                    input type="hidden" name="action" value="set";
                    label for="secret" { "New secret (8–128 characters with upper and lower case letters and a digit)" }
                    input #secret type="password" name="secret" autocomplete="new-password" required;
                    p { button.quiet type="submit" { "Set this secret" } }
                }
            }
            @if record.cli_secret_hash.is_some() {
                form method="post" action="/harbor/profile/cli-secret" {
                    input type="hidden" name="csrf" value=(token);
                    input type="hidden" name="action" value="revoke";
                    button.quiet.danger type="submit" { "Revoke the secret" }
                }
            }
        }
        h2 { "Access keys" }
        (key_panel)
    };
    c.page("Profile", PATH, body, status)
}

async fn show(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    page(&s, &headers, Notice::None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct ChangeForm {
    csrf: String,
    action: String,
    #[serde(default)]
    secret: Option<String>,
}

async fn change(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<ChangeForm>) -> Response {
    let Some(who) = signed_in(&s, &headers).await else {
        return super::to_sign_in(PATH);
    };
    if !csrf_ok(&headers, &f.csrf) {
        let e = "This form expired or came from another site; nothing was changed. Try again.";
        return page(&s, &headers, Notice::Error(e.into()), StatusCode::FORBIDDEN).await;
    }
    let Some(me) = who.user() else {
        return page(
            &s,
            &headers,
            Notice::Error("Only user accounts have a CLI secret.".into()),
            StatusCode::FORBIDDEN,
        )
        .await;
    };
    let origin = berth_auth::Origin::new(me.name.clone(), None);
    let (value, generated) = match f.action.as_str() {
        "revoke" => {
            return match s.auth.set_cli_secret(me.id, None, &origin).await {
                Ok(_) => page(&s, &headers, Notice::Done("Your CLI secret was revoked."), StatusCode::OK).await,
                Err(e) => {
                    tracing::error!(error = %e, "portal: revoking a CLI secret");
                    page(
                        &s,
                        &headers,
                        Notice::Error("Revoking failed; try again.".into()),
                        StatusCode::SERVICE_UNAVAILABLE,
                    )
                    .await
                }
            };
        }
        "generate" => (secret::new_secret(), true),
        "set" => {
            let given = f.secret.unwrap_or_default();
            if let Err(m) = secret::check_password_strength(&given) {
                let msg = m.replace("password", "CLI secret");
                return page(&s, &headers, Notice::Error(msg), StatusCode::BAD_REQUEST).await;
            }
            (given, false)
        }
        other => {
            return page(&s, &headers, Notice::Error(format!("Unknown action {other:?}.")), StatusCode::BAD_REQUEST)
                .await;
        }
    };
    let v = value.clone();
    let stored = match berth_auth::hashing(move || secret::hash_chosen_or_generated(&v, generated)).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "portal: hashing a CLI secret");
            return page(
                &s,
                &headers,
                Notice::Error("The server is busy; try again.".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .await;
        }
    };
    if let Err(e) = s.auth.set_cli_secret(me.id, Some(&stored), &origin).await {
        tracing::error!(error = %e, "portal: storing a CLI secret");
        return page(&s, &headers, Notice::Error("Saving failed; try again.".into()), StatusCode::SERVICE_UNAVAILABLE)
            .await;
    }
    let notice = if generated { Notice::Secret(value) } else { Notice::Done("Your CLI secret was changed.") };
    page(&s, &headers, notice, StatusCode::OK).await
}

/// Create, (de)activate or delete one of the user's access keys.
async fn change_keys(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<KeyForm>) -> Response {
    let Some(who) = signed_in(&s, &headers).await else {
        return super::to_sign_in(PATH);
    };
    if !csrf_ok(&headers, &f.csrf) {
        let e = "This form expired or came from another site; nothing was changed. Try again.";
        return keyed_page(&s, &headers, Notice::None, KeyNotice::Error(e.into()), StatusCode::FORBIDDEN).await;
    }
    let Some(me) = who.user() else {
        let e = KeyNotice::Error("Only user accounts have a profile.".into());
        return keyed_page(&s, &headers, Notice::None, e, StatusCode::FORBIDDEN).await;
    };
    let origin = berth_auth::Origin::new(me.name.clone(), None);
    let notice = super::keys::apply(&s, &me.name, &f, &origin).await;
    let status = if matches!(notice, KeyNotice::Error(_)) { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    keyed_page(&s, &headers, Notice::None, notice, status).await
}
