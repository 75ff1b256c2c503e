//! Administration → Registries: the endpoints Berth pulls from and replicates with (list with
//! their last check, check one now, delete; a form that tests a connection before saving it;
//! an endpoint's page to change it). The same service as `/api/v2.0/registries`
//! (`berth_registry::Upstreams`): passwords are sealed when stored and never shown again.

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use berth_registry::{EndpointSpec, KINDS, UpstreamRecord};
use maud::{Markup, html};
use serde::Deserialize;

use super::admin::{Notice, notice};
use super::{CsrfForm, admin_action, admin_ctx, api_err};
use crate::AdminState;

pub(super) const PATH: &str = "/harbor/registries";

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route(PATH, get(list).post(create))
        .route("/harbor/registries/{id}", get(show).post(change))
        .route("/harbor/registries/{id}/{op}", post(act))
}

fn kind_name(kind: &str) -> &str {
    KINDS.iter().find(|(k, _)| *k == kind).map_or(kind, |(_, n)| n)
}

fn status_badge(r: &UpstreamRecord) -> Markup {
    let title = match r.checked_at {
        Some(_) => "As the last check found it",
        None => "Not checked yet",
    };
    html! {
        @match r.status.as_str() {
            "healthy" => span.badge.public title=(title) { "Healthy" },
            "unhealthy" => span.badge.failed title=(title) { "Unhealthy" },
            _ => span.badge title=(title) { "Not checked" },
        }
    }
}

/// The fields of an endpoint, filled from `r` (editing) or `f` (a form sent back with an error).
fn fields(id: &str, r: Option<&UpstreamRecord>, f: Option<&EndpointForm>) -> Markup {
    let val = |from_form: Option<&String>, from_rec: Option<&str>| -> String {
        from_form.cloned().or_else(|| from_rec.map(str::to_owned)).unwrap_or_default()
    };
    let name = val(f.map(|f| &f.name), r.map(|r| r.name.as_str()));
    let kind = val(f.map(|f| &f.kind), r.map(|r| r.kind.as_str()));
    let url = val(f.map(|f| &f.url), r.map(|r| r.url.as_str()));
    let user = val(f.map(|f| &f.access_key), r.map(|r| r.access_key.as_str()));
    let description = val(f.map(|f| &f.description), r.map(|r| r.description.as_str()));
    let ca = val(f.map(|f| &f.ca_certificate), r.and_then(|r| r.ca_pem.as_deref()));
    let insecure = f.map_or(r.is_some_and(|r| r.insecure), |f| f.insecure.is_some());
    let has_secret = r.is_some_and(|r| r.secret.is_some());
    html! {
        label for={(id) "-name"} { "Name" }
        input id={(id) "-name"} type="text" name="name" value=(name) required maxlength="255" autocomplete="off";
        label for={(id) "-kind"} { "Provider" }
        select id={(id) "-kind"} name="kind" {
            @for (k, n) in KINDS { option value=(k) selected[*k == kind] { (n) } }
        }
        label for={(id) "-url"} { "Endpoint URL" }
        input id={(id) "-url"} type="url" name="url" value=(url) required placeholder="https://registry-1.docker.io";
        label for={(id) "-user"} { "Username or access key (empty for anonymous access)" }
        input id={(id) "-user"} type="text" name="access_key" value=(user) autocomplete="off";
        label for={(id) "-secret"} {
            @if has_secret { "Password or token (leave empty to keep the stored one)" } @else { "Password or token" }
        }
        input id={(id) "-secret"} type="password" name="access_secret" autocomplete="new-password";
        label for={(id) "-desc"} { "Description" }
        input id={(id) "-desc"} type="text" name="description" value=(description);
        label for={(id) "-ca"} { "CA certificate to trust (PEM, optional)" }
        textarea id={(id) "-ca"} name="ca_certificate" rows="3" placeholder="-----BEGIN CERTIFICATE-----" { (ca) }
        label.check { input type="checkbox" name="insecure" value="on" checked[insecure]; " Do not verify the TLS certificate" }
    }
}

async fn list(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    list_page(&s, &headers, None, None, StatusCode::OK).await
}

async fn list_page(
    s: &AdminState,
    headers: &HeaderMap,
    form: Option<&EndpointForm>,
    note: Notice,
    status: StatusCode,
) -> Response {
    let c = match admin_ctx(s, headers, PATH, "Registries").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let all = s.upstreams.list().await.unwrap_or_default();
    let body = html! {
        h1 { "Registries" }
        p.muted { "Other registries Berth pulls from (proxy caches) and replicates with. Passwords are stored sealed and never shown again." }
        (notice(&note))
        div.panel {
            @if all.is_empty() { p { "No registry endpoints yet: add one below." } }
            @else {
                table {
                    thead { tr { th { "Name" } th { "Provider" } th.hide-narrow { "URL" } th { "Status" } th.hide-narrow { "Credential" } th { span.label-narrow { "Actions" } } } }
                    tbody { @for r in &all {
                        tr {
                            td { a href=(format!("{PATH}/{}", r.id)) { strong { (r.name) } } @if !r.description.is_empty() { br; span.muted { (r.description) } } }
                            td { (kind_name(&r.kind)) }
                            td.hide-narrow.wrap { code { (r.url) } @if r.insecure { " " span.badge title="TLS certificate not verified" { "insecure" } } }
                            td { (status_badge(r)) @if let Some(at) = r.checked_at { br; span.muted { (super::when(at)) } } }
                            td.hide-narrow { @if r.access_key.is_empty() && r.secret.is_none() { span.nowrap { "anonymous" } } @else { (r.access_key) } }
                            td.actions {
                                form.inline method="post" action=(format!("{PATH}/{}/ping", r.id)) {
                                    input type="hidden" name="csrf" value=(c.csrf);
                                    button.quiet type="submit" aria-label=(format!("Check {}", r.name)) { "Check" }
                                }
                                form.inline method="post" action=(format!("{PATH}/{}/delete", r.id)) {
                                    input type="hidden" name="csrf" value=(c.csrf);
                                    button.quiet.danger type="submit" aria-label=(format!("Delete {}", r.name)) { "Delete" }
                                }
                            }
                        }
                    } }
                }
            }
        }
        h2 { "New registry endpoint" }
        form.panel method="post" action=(PATH) {
            input type="hidden" name="csrf" value=(c.csrf);
            (fields("new", None, form))
            p {
                button type="submit" name="save" value="1" { "Create" }
                " "
                button.quiet type="submit" name="test" value="1" { "Test connection" }
            }
        }
    };
    super::admin::page(&c, "Registries", PATH, body, status)
}

#[derive(Deserialize)]
struct EndpointForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    access_key: String,
    #[serde(default)]
    access_secret: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    ca_certificate: String,
    #[serde(default)]
    insecure: Option<String>,
    #[serde(default)]
    test: Option<String>,
}

impl EndpointForm {
    /// The endpoint described (an empty password keeps the stored one when `editing`).
    fn spec(&self, editing: bool) -> EndpointSpec {
        EndpointSpec {
            name: self.name.clone(),
            kind: self.kind.clone(),
            url: self.url.trim().to_owned(),
            description: self.description.clone(),
            insecure: self.insecure.is_some(),
            access_key: self.access_key.trim().to_owned(),
            secret: if editing && self.access_secret.is_empty() { None } else { Some(self.access_secret.clone()) },
            ca_pem: Some(self.ca_certificate.clone()),
        }
    }
}

async fn create(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<EndpointForm>) -> Response {
    let who = match admin_action(&s, &headers, &f.csrf, PATH).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let spec = f.spec(false);
    if f.test.is_some() {
        let (note, status) = match s.upstreams.ping_spec(&spec, None).await {
            Ok(()) => ((format!("{} answered and accepted the credentials.", spec.url), true), StatusCode::OK),
            Err(e) => {
                let (m, st) = api_err(e);
                ((m, false), st)
            }
        };
        return list_page(&s, &headers, Some(&f), Some(note), status).await;
    }
    let origin = berth_auth::Origin::new(who.name(), None);
    match s.upstreams.create(&spec, &origin).await {
        Ok(_) => {
            let note = format!("Registry {} created. Check it to see whether it answers.", spec.name.trim());
            list_page(&s, &headers, None, Some((note, true)), StatusCode::OK).await
        }
        Err(e) => {
            let (m, st) = api_err(e);
            list_page(&s, &headers, Some(&f), Some((m, false)), st).await
        }
    }
}

async fn act(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, op)): Path<(i64, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let who = match admin_action(&s, &headers, &f.csrf, PATH).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let origin = berth_auth::Origin::new(who.name(), None);
    let name = match s.upstreams.get(id).await {
        Ok(r) => r.name,
        Err(e) => {
            let (m, st) = api_err(e);
            return list_page(&s, &headers, None, Some((m, false)), st).await;
        }
    };
    let r = match op.as_str() {
        "ping" => s.upstreams.ping(id).await.map(|()| format!("{name} answered and accepted the credentials.")),
        "delete" => s.upstreams.delete(id, &origin).await.map(|_| format!("Registry {name} deleted.")),
        _ => {
            return list_page(&s, &headers, None, Some(("Unknown action.".into(), false)), StatusCode::NOT_FOUND).await;
        }
    };
    match r {
        Ok(m) => list_page(&s, &headers, None, Some((m, true)), StatusCode::OK).await,
        Err(e) => {
            let (m, st) = api_err(e);
            list_page(&s, &headers, None, Some((m, false)), st).await
        }
    }
}

async fn show(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    show_page(&s, &headers, id, None, None, StatusCode::OK).await
}

async fn show_page(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    form: Option<&EndpointForm>,
    note: Notice,
    status: StatusCode,
) -> Response {
    let path = format!("{PATH}/{id}");
    let c = match admin_ctx(s, headers, &path, "Registries").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(r) = s.upstreams.get(id).await else {
        let body = html! { h1 { "Registries" } p { "There is no registry endpoint " (id) "." } p { a href=(PATH) { "All registries" } } };
        return super::admin::page(&c, "Registries", PATH, body, StatusCode::NOT_FOUND);
    };
    let body = html! {
        p { a href=(PATH) { "\u{2190} All registries" } }
        h1 { (r.name) " " (status_badge(&r)) }
        (notice(&note))
        form.panel method="post" action=(path) {
            input type="hidden" name="csrf" value=(c.csrf);
            (fields("edit", Some(&r), form))
            p {
                button type="submit" name="save" value="1" { "Save" }
                " "
                button.quiet type="submit" name="test" value="1" { "Test connection" }
            }
        }
        p.muted { "Created " (super::when(r.created_at)) ", changed " (super::when(r.updated_at)) "." }
    };
    super::admin::page(&c, &r.name, PATH, body, status)
}

async fn change(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<EndpointForm>,
) -> Response {
    let back = format!("{PATH}/{id}");
    let who = match admin_action(&s, &headers, &f.csrf, &back).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let spec = f.spec(true);
    let r = if f.test.is_some() {
        s.upstreams
            .ping_spec(&spec, Some(id))
            .await
            .map(|()| format!("{} answered and accepted the credentials.", spec.url))
    } else {
        let origin = berth_auth::Origin::new(who.name(), None);
        s.upstreams.update(id, &spec, &origin).await.map(|()| "Saved.".to_owned())
    };
    match r {
        Ok(m) => {
            let keep = f.test.is_some().then_some(&f);
            show_page(&s, &headers, id, keep, Some((m, true)), StatusCode::OK).await
        }
        Err(e) => {
            let (m, st) = api_err(e);
            show_page(&s, &headers, id, Some(&f), Some((m, false)), st).await
        }
    }
}
