//! A project's robot accounts (Harbor's `robot-account` tab): the list, and creation with
//! permissions and expiry through the API's own path (`robots::create_robot`). The secret is
//! shown once, with buttons that download it as a Docker `config.json` or as a Kubernetes
//! `kubernetes.io/dockerconfigjson` Secret for a namespace — made on the server from what the
//! page posts back (nothing is kept), so no script is needed.

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_auth::Target;
use berth_auth::rbac::Perm;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::keys::{KeyForm, KeyNotice};
use super::project::{open, project_page};
use super::{api_err, csrf_ok};
use crate::AdminState;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/harbor/projects/{id}/robot-account", get(list).post(create))
        .route("/harbor/projects/{id}/robot-account/{rid}", get(robot_page))
        .route("/harbor/projects/{id}/robot-account/{rid}/access-keys", post(change_keys))
        .route("/harbor/projects/{id}/robot-account/{rid}/{op}", post(act))
        .route("/harbor/robot-credentials", post(download))
}

enum Outcome {
    None,
    Created { name: String, secret: String, expires_at: i64 },
    Error(String),
}

/// The project of a robot-account page, for who may see its robots; else the page saying why.
async fn open_robots(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    here: &str,
) -> Result<(super::Ctx, berth_auth::ProjectRecord), Response> {
    let (c, p) = open(s, headers, id, here).await?;
    if !c.may(s, Target::Project(&p), Perm::ReadRobots).await {
        let content = html! { p { "You may not see this project's robot accounts." } };
        return Err(project_page(s, &c, &p, "robot-account", content, StatusCode::FORBIDDEN).await);
    }
    Ok((c, p))
}

async fn page(s: &AdminState, headers: &HeaderMap, id: i64, outcome: Outcome, status: StatusCode) -> Response {
    let here = format!("/harbor/projects/{id}/robot-account");
    let (c, p) = match open_robots(s, headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let token = &c.csrf;
    let may_manage = c.may(s, Target::Project(&p), Perm::ManageRobots).await;
    let robots: Vec<_> =
        s.auth.robots().await.unwrap_or_default().into_iter().filter(|r| r.project_id == Some(p.id)).collect();
    let registry = super::registry_host(s, headers);
    let content: Markup = html! {
        @match &outcome {
            Outcome::Created { name, secret, expires_at } => {
                div.panel.notice.stack role="status" {
                    p { strong { "Robot account " code { (name) } " created. Its secret — copy or download it now; it is not shown again:" } }
                    p { code.secret #robot-secret { (secret) } }
                    p.muted { @if *expires_at < 0 { "It never expires." } @else { "It expires " (super::when(*expires_at)) "." } }
                    div.downloads {
                        @for kind in ["docker", "kubernetes"] {
                        form method="post" action="/harbor/robot-credentials" {
                            input type="hidden" name="csrf" value=(token);
                            input type="hidden" name="name" value=(name);
                            input type="hidden" name="secret" value=(secret);
                            input type="hidden" name="registry" value=(registry);
                            input type="hidden" name="kind" value=(kind);
                            @if kind == "docker" {
                            button type="submit" { "Download config.json" }
                            } @else {
                            label for="namespace" { "Kubernetes namespace" }
                            input #namespace type="text" name="namespace" value="default" pattern="[a-z0-9]([a-z0-9\\-]*[a-z0-9])?" required;
                            button type="submit" { "Download Kubernetes Secret" }
                            }
                        }
                        }
                    }
                }
            }
            Outcome::Error(e) => { p.error role="alert" { (e) } }
            Outcome::None => {}
        }
        div.panel {
            @if robots.is_empty() {
                p.muted { "No robot accounts yet." }
            } @else {
                table {
                    thead { tr { th { "Name" } th { "Status" } th.hide-narrow { "Expires" } th.hide-narrow { "Description" } @if may_manage { th { "Actions" } } } }
                    tbody {
                        @for r in &robots {
                            tr {
                                td { a href=(format!("{here}/{}", r.id)) { code { (r.name) } } }
                                td { @if r.disabled { span.badge { "Disabled" } } @else { span.badge.public { "Enabled" } } }
                                td.hide-narrow { @if r.expires_at < 0 { "never" } @else { (super::when(r.expires_at)) } }
                                td.hide-narrow { (r.description) }
                                @if may_manage {
                                    td.actions {
                                        @for (op, label) in [("refresh", "New secret"), (if r.disabled { "enable" } else { "disable" }, if r.disabled { "Enable" } else { "Disable" }), ("delete", "Delete")] {
                                            form.inline method="post" action=(format!("{here}/{}/{op}", r.id)) {
                                                input type="hidden" name="csrf" value=(token);
                                                @if op == "delete" { button.quiet.danger type="submit" { (label) } } @else { button.quiet type="submit" { (label) } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if may_manage {
            h2 { "New robot account" }
            div.panel {
                form method="post" action=(here) {
                    input type="hidden" name="csrf" value=(token);
                    label for="robot-name" { "Name (lower-case letters, digits, . _ -)" }
                    input #robot-name type="text" name="name" required pattern="[a-z0-9][a-z0-9._\\-]*" maxlength="128";
                    label for="robot-description" { "Description" }
                    input #robot-description type="text" name="description" maxlength="1024";
                    label for="robot-days" { "Expires after (days; -1: never)" }
                    input #robot-days type="text" name="days" value="30" inputmode="numeric" required;
                    fieldset {
                        legend { "It may" }
                        label.check { input type="checkbox" name="pull" value="on" checked; " pull" }
                        label.check { input type="checkbox" name="push" value="on"; " push" }
                    }
                    p { button type="submit" { "Create" } }
                }
            }
        }
    };
    project_page(s, &c, &p, "robot-account", content, status).await
}

async fn list(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    page(&s, &headers, id, Outcome::None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct CreateForm {
    csrf: String,
    name: String,
    #[serde(default)]
    description: String,
    days: String,
    #[serde(default)]
    pull: Option<String>,
    #[serde(default)]
    push: Option<String>,
}

async fn create(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CreateForm>,
) -> Response {
    if !csrf_ok(&headers, &f.csrf) {
        let e = "This form expired or came from another site; nothing was created. Try again.";
        return page(&s, &headers, id, Outcome::Error(e.into()), StatusCode::FORBIDDEN).await;
    }
    let here = format!("/harbor/projects/{id}/robot-account");
    let (c, p) = match open(&s, &headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let who = c.who;
    let Ok(days) = f.days.trim().parse::<i64>() else {
        let e = format!("Expires after {:?}: give a number of days, or -1 for never.", f.days);
        return page(&s, &headers, id, Outcome::Error(e), StatusCode::BAD_REQUEST).await;
    };
    let mut access = Vec::new();
    if f.pull.is_some() {
        access.push(json!({"resource": "repository", "action": "pull"}));
    }
    if f.push.is_some() {
        access.push(json!({"resource": "repository", "action": "push"}));
    }
    if access.is_empty() {
        let e = "Give the robot at least one permission (pull or push).".to_string();
        return page(&s, &headers, id, Outcome::Error(e), StatusCode::BAD_REQUEST).await;
    }
    let req = crate::robots::RobotCreate {
        name: f.name.trim().to_owned(),
        description: f.description,
        level: "project".into(),
        disable: false,
        duration: Some(days),
        permissions: json!([{"kind": "project", "namespace": p.name, "access": access}]),
        secret: None,
    };
    let origin = berth_auth::Origin::new(who.name(), None);
    match crate::robots::create_robot(&s, &who, &origin, req).await {
        Ok(made) => {
            let outcome = Outcome::Created { name: made.name, secret: made.secret, expires_at: made.expires_at };
            page(&s, &headers, id, outcome, StatusCode::OK).await
        }
        Err(e) => {
            let status = e.status();
            page(&s, &headers, id, Outcome::Error(e.message().to_owned()), status).await
        }
    }
}

/// A new secret, disable/enable, or delete, for a robot of this project.
async fn act(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, rid, op)): Path<(i64, i64, String)>,
    Form(f): Form<super::CsrfForm>,
) -> Response {
    let fail = |msg: String, status: StatusCode| (msg, status);
    let result: Result<Outcome, (String, StatusCode)> = async {
        let who =
            super::signed_in(&s, &headers).await.ok_or(fail("Sign in first.".into(), StatusCode::UNAUTHORIZED))?;
        if !csrf_ok(&headers, &f.csrf) {
            return Err(fail(
                "This form expired or came from another site; nothing was changed.".into(),
                StatusCode::FORBIDDEN,
            ));
        }
        let p = match s.auth.project_by_id(id).await {
            Ok(Some(p)) => p,
            _ => return Err(fail("No such project.".into(), StatusCode::NOT_FOUND)),
        };
        if s.auth.decide(&who, Target::Project(&p), Perm::ManageRobots).await.is_err() {
            return Err(fail("You may not manage this project's robot accounts.".into(), StatusCode::FORBIDDEN));
        }
        let mut r = match s.auth.robot(rid).await {
            Ok(Some(r)) if r.project_id == Some(p.id) => r,
            _ => return Err(fail(format!("Robot account {rid} is not in this project."), StatusCode::NOT_FOUND)),
        };
        let origin = berth_auth::Origin::new(who.name(), None);
        match op.as_str() {
            "refresh" => {
                let value = berth_auth::secret::new_secret();
                let v = value.clone();
                let stored = berth_auth::hashing(move || berth_auth::secret::hash_chosen_or_generated(&v, true))
                    .await
                    .map_err(api_err)?;
                s.auth.set_robot_secret(rid, &stored, &origin).await.map_err(api_err)?;
                Ok(Outcome::Created { name: r.name, secret: value, expires_at: r.expires_at })
            }
            "disable" | "enable" => {
                r.disabled = op == "disable";
                r.updated_at = berth_auth::now_ms();
                s.auth.update_robot(&r, &origin).await.map_err(api_err)?;
                Ok(Outcome::None)
            }
            "delete" => {
                s.auth.delete_robot(rid, &origin).await.map_err(api_err)?;
                Ok(Outcome::None)
            }
            _ => Err(fail("Unknown action.".into(), StatusCode::NOT_FOUND)),
        }
    }
    .await;
    match result {
        Ok(Outcome::None) => {
            axum::response::Redirect::to(&format!("/harbor/projects/{id}/robot-account")).into_response()
        }
        Ok(outcome) => page(&s, &headers, id, outcome, StatusCode::OK).await,
        Err((msg, status)) => page(&s, &headers, id, Outcome::Error(msg), status).await,
    }
}

#[derive(Deserialize)]
struct DownloadForm {
    csrf: String,
    name: String,
    secret: String,
    registry: String,
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// A robot's credentials as a file: Docker's `config.json`, or a Kubernetes Secret.
async fn download(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<DownloadForm>) -> Response {
    if super::signed_in(&s, &headers).await.is_none() || !csrf_ok(&headers, &f.csrf) {
        return (StatusCode::FORBIDDEN, "This download form expired; create the credentials again.").into_response();
    }
    use base64::Engine;
    let b64 = |x: &[u8]| base64::engine::general_purpose::STANDARD.encode(x);
    let auth = b64(format!("{}:{}", f.name, f.secret).as_bytes());
    let config = json!({"auths": {f.registry.as_str(): {"auth": auth}}});
    let safe =
        |x: &str| x.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect::<String>();
    let (body, file, kind) = match f.kind.as_str() {
        "docker" => (
            serde_json::to_string_pretty(&config).unwrap_or_default() + "\n",
            "config.json".to_string(),
            "application/json",
        ),
        "kubernetes" => {
            let ns = f.namespace.unwrap_or_default();
            let ok = !ns.is_empty()
                && ns.len() <= 63
                && ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !ns.starts_with('-')
                && !ns.ends_with('-');
            if !ok {
                return (
                    StatusCode::BAD_REQUEST,
                    "The namespace must be a Kubernetes name: lower-case letters, digits and '-'.",
                )
                    .into_response();
            }
            let name = safe(&f.name.to_ascii_lowercase());
            let yaml = format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
                b64(config.to_string().as_bytes())
            );
            (yaml, format!("{name}-secret.yaml"), "application/yaml")
        }
        other => return (StatusCode::BAD_REQUEST, format!("Unknown credentials format {other:?}.")).into_response(),
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// One robot account of the project: what it is and its access keys.
async fn robot_page(State(s): State<AdminState>, headers: HeaderMap, Path((id, rid)): Path<(i64, i64)>) -> Response {
    one_robot(&s, &headers, id, rid, KeyNotice::None, StatusCode::OK).await
}

async fn one_robot(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    rid: i64,
    notice: KeyNotice,
    status: StatusCode,
) -> Response {
    let here = format!("/harbor/projects/{id}/robot-account/{rid}");
    let (c, p) = match open_robots(s, headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = match s.auth.robot(rid).await {
        Ok(Some(r)) if r.project_id == Some(p.id) => r,
        _ => {
            let content = html! { p.error role="alert" { "Robot account " (rid) " is not in this project." } };
            return project_page(s, &c, &p, "robot-account", content, StatusCode::NOT_FOUND).await;
        }
    };
    let may_manage = c.may(s, Target::Project(&p), Perm::ManageRobots).await;
    let permissions: serde_json::Value = serde_json::from_str(&r.permissions).unwrap_or_default();
    let mut actions: Vec<String> = permissions
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["access"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| Some(format!("{} {}", a["action"].as_str()?, a["resource"].as_str().unwrap_or(""))))
        .map(|t| t.trim().to_owned())
        .collect();
    actions.dedup();
    let trust = s.auth.robot_federation(r.id).await.ok().flatten().unwrap_or_default();
    let endpoint = super::keys::endpoint(s, headers);
    let keys =
        super::keys::panel(s, &r.name, &format!("{here}/access-keys"), &c.csrf, may_manage, &notice, &endpoint).await;
    let content: Markup = html! {
        p { a href=(format!("/harbor/projects/{id}/robot-account")) { "← All robot accounts" } }
        h2 { "Robot account " code { (r.name) } }
        div.panel {
            dl.facts {
                dt { "Status" } dd { @if r.disabled { "Disabled" } @else { "Enabled" } }
                dt { "Expires" } dd { @if r.expires_at < 0 { "never" } @else { (super::when(r.expires_at)) } }
                dt { "May" } dd { @if actions.is_empty() { span.muted { "nothing" } } @else { (actions.join(", ")) } }
                @if !r.description.is_empty() { dt { "Description" } dd { (r.description) } }
            }
        }
        h2 { "Access keys" }
        (keys)
        h2 { "Identity tokens it accepts" }
        div.panel.stack #federation {
            @if trust.rules.is_empty() {
                p.muted { "None: it signs in with its secret only. " code { "berth robot trust" } " adds an issuer whose ID tokens (GitHub Actions, GitLab CI, Kubernetes) it accepts instead." }
            } @else {
                p { "CI jobs sign in as this robot with an ID token that one of these rules accepts (issued within the hour, not expired, signed by the issuer's published keys)." }
                table {
                    thead { tr { th { "Issuer" } th { "Audience" } th { "Subject" } th.hide-narrow { "Other claims" } } }
                    tbody {
                        @for rule in &trust.rules {
                            tr {
                                td { code { (rule.issuer) } }
                                td { code { (rule.audience) } }
                                td { code { (rule.subject) } }
                                td.hide-narrow {
                                    @for (k, v) in &rule.claims { code { (k) "=" (v) } " " }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    project_page(s, &c, &p, "robot-account", content, status).await
}

/// Create, (de)activate or delete an access key of a robot of this project.
async fn change_keys(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, rid)): Path<(i64, i64)>,
    Form(f): Form<KeyForm>,
) -> Response {
    let Some(who) = super::signed_in(&s, &headers).await else {
        return super::to_sign_in(&format!("/harbor/projects/{id}/robot-account/{rid}"));
    };
    let fail = |m: &str| KeyNotice::Error(m.to_owned());
    if !csrf_ok(&headers, &f.csrf) {
        let e = fail("This form expired or came from another site; nothing was changed. Try again.");
        return one_robot(&s, &headers, id, rid, e, StatusCode::FORBIDDEN).await;
    }
    let (p, r) = match (s.auth.project_by_id(id).await, s.auth.robot(rid).await) {
        (Ok(Some(p)), Ok(Some(r))) if r.project_id == Some(p.id) => (p, r),
        _ => return one_robot(&s, &headers, id, rid, KeyNotice::None, StatusCode::NOT_FOUND).await,
    };
    if s.auth.decide(&who, Target::Project(&p), Perm::ManageRobots).await.is_err() {
        let e = fail("You may not manage this project's robot accounts.");
        return one_robot(&s, &headers, id, rid, e, StatusCode::FORBIDDEN).await;
    }
    let origin = berth_auth::Origin::new(who.name(), None);
    let notice = super::keys::apply(&s, &r.name, &f, &origin).await;
    let status = if matches!(notice, KeyNotice::Error(_)) { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    one_robot(&s, &headers, id, rid, notice, status).await
}
