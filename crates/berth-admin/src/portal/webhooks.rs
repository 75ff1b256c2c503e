//! A project's Webhooks tab: its policies (events, receiver, when each last fired), a form
//! to add one that can send a test event before saving, and per policy its delivery history
//! with the dead letters and a Redeliver button. The same service as the API
//! (`berth_webhook::Webhooks`): seeing needs `ReadWebhooks`, changing `ManageWebhooks`; a
//! new policy's signing secret is shown once, auth headers never.

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use berth_auth::Target;
use berth_auth::rbac::Perm;
use berth_webhook::payload::EVENT_TYPES;
use berth_webhook::{PolicySpec, Target as HookTarget};
use maud::{Markup, html};
use serde::Deserialize;

use super::admin::{Notice, notice};
use super::config::checked;
use super::project::{open, project_page};
use super::{api_err, when};
use crate::AdminState;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/harbor/projects/{id}/webhooks", get(list).post(create))
        .route("/harbor/projects/{id}/webhooks/{policy}", get(history))
        .route("/harbor/projects/{id}/webhooks/{policy}/{op}", post(act))
        .route("/harbor/projects/{id}/webhooks/{policy}/deliveries/{delivery}", post(redeliver))
}

/// Event types in words, for the form and the list.
fn event_label(t: &str) -> &str {
    match t {
        "PUSH_ARTIFACT" => "Artifact pushed",
        "PULL_ARTIFACT" => "Artifact pulled",
        "DELETE_ARTIFACT" => "Artifact deleted",
        "QUOTA_EXCEED" => "Quota exceeded",
        "QUOTA_WARNING" => "Quota near its limit",
        "SCANNING_FAILED" => "Scan failed",
        "SCANNING_STOPPED" => "Scan stopped",
        "SCANNING_COMPLETED" => "Scan completed",
        "REPLICATION" => "Replication finished",
        "TAG_RETENTION" => "Tag retention finished",
        other => other,
    }
}

fn status_badge(status: &str, attempts: i64) -> Markup {
    html! {
        @match status {
            "Success" => span.badge.public { "Delivered" },
            "Error" => span.badge.failed title="Gave up after its tries: send it again with Redeliver" { "Dead letter" },
            "Running" => span.badge { "Sending" },
            _ if attempts > 0 => span.badge title="The receiver did not take it yet; it is tried again with back-off" { "Retrying" },
            _ => span.badge { "Pending" },
        }
    }
}

#[derive(Deserialize, Default)]
struct NewForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    notify_type: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    payload_format: String,
    #[serde(default)]
    auth_header: String,
    #[serde(default)]
    skip_cert_verify: Option<String>,
    #[serde(default)]
    test: Option<String>,
}

impl NewForm {
    /// The policy the form describes (event types come as repeated `event` fields).
    fn spec(&self, events: Vec<String>) -> PolicySpec {
        PolicySpec {
            name: self.name.clone(),
            description: self.description.clone(),
            enabled: Some(true),
            event_types: events,
            targets: vec![HookTarget {
                kind: if self.notify_type == "slack" { "slack".into() } else { "http".into() },
                address: self.address.trim().to_owned(),
                auth_header: Some(self.auth_header.clone()).filter(|h| !h.is_empty()),
                skip_cert_verify: self.skip_cert_verify.is_some(),
                payload_format: Some(self.payload_format.clone()).filter(|f| !f.is_empty()),
            }],
            secret: None,
        }
    }
}

async fn list(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    page(&s, &headers, id, None, None, &[], StatusCode::OK).await
}

async fn page(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    form: Option<&NewForm>,
    note: Notice,
    events: &[String],
    status: StatusCode,
) -> Response {
    let here = format!("/harbor/projects/{id}/webhooks");
    let (c, p) = match open(s, headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if c.anonymous() {
        return super::to_sign_in(&here);
    }
    if !c.may(s, Target::Project(&p), Perm::ReadWebhooks).await {
        let body =
            html! { p.error role="alert" { "Only the project's administrators and maintainers see its webhooks." } };
        return project_page(s, &c, &p, "webhooks", body, StatusCode::FORBIDDEN).await;
    }
    let may_edit = c.may(s, Target::Project(&p), Perm::ManageWebhooks).await;
    let Some(w) = s.webhooks.as_deref() else {
        let body = html! { p.error role="alert" { "Webhooks are not available on this server." } };
        return project_page(s, &c, &p, "webhooks", body, StatusCode::SERVICE_UNAVAILABLE).await;
    };
    let policies = w.policies(&p.name).await.unwrap_or_default();
    let fired = w.last_triggers(&p.name).await.unwrap_or_default();
    let mut dead = Vec::new();
    for pol in &policies {
        if let Ok((_, n)) = w.deliveries(&p.name, pol.record.id, Some("Error"), 0, 1).await {
            dead.push((pol.record.id, n));
        }
    }
    let f = form.map(|f| {
        (f.name.as_str(), f.address.as_str(), f.description.as_str(), f.notify_type.as_str(), f.payload_format.as_str())
    });
    let (name, address, description, notify, format) = f.unwrap_or(("", "", "", "http", "Default"));
    let checked_event = |t: &str| if form.is_some() { events.iter().any(|e| e == t) } else { t == "PUSH_ARTIFACT" };
    let body = html! {
        p.muted { "Receivers Berth notifies of this project's events: Harbor's JSON, CloudEvents or a Slack message, signed with the policy's secret (header X-Berth-Signature-256), sent again with back-off until the receiver answers 2xx." }
        (notice(&note))
        div.panel {
            @if policies.is_empty() { p { "No webhooks yet." @if may_edit { " Add one below." } } }
            @else {
                table {
                    thead { tr { th { "Name" } th.hide-narrow { "Events" } th.hide-narrow { "Receiver" } th.hide-narrow { "Last fired" } @if may_edit { th { span.label-narrow { "Actions" } } } } }
                    tbody { @for pol in &policies {
                        @let r = &pol.record;
                        @let last = fired.iter().filter(|(pid, _, _)| *pid == r.id).map(|(_, _, at)| *at).max();
                        tr {
                            td {
                                a.nowrap href=(format!("{here}/{}", r.id)) { strong { (r.name) } }
                                @if !r.enabled { " " span.badge { "Off" } }
                                @if let Some(n) = dead.iter().find(|(id, _)| *id == r.id).map(|(_, n)| *n).filter(|n| *n > 0) {
                                    " " a.badge.failed href=(format!("{here}/{}?status=Error", r.id)) title="Deliveries that gave up: open them to send them again" {
                                        (n) @if n == 1 { " dead letter" } @else { " dead letters" }
                                    }
                                }
                                @if !r.description.is_empty() { br; span.muted { (r.description) } }
                            }
                            td.hide-narrow { @for (i, t) in pol.event_types.iter().enumerate() { @if i > 0 { ", " } (event_label(t)) } }
                            td.hide-narrow.wrap { @for t in &pol.targets {
                                code { (t.address) }
                                " " span.badge { @if t.kind == "slack" { "Slack" } @else { (t.payload_format.as_deref().unwrap_or("Default")) } }
                            } }
                            td.hide-narrow { @if let Some(at) = last { (when(at)) } @else { span.muted { "never" } } }
                            @if may_edit {
                                td.actions {
                                    @for (op, label) in [("test", "Test"), (if r.enabled { "disable" } else { "enable" }, if r.enabled { "Turn off" } else { "Turn on" }), ("delete", "Delete")] {
                                        form.inline method="post" action=(format!("{here}/{}/{op}", r.id)) {
                                            input type="hidden" name="csrf" value=(c.csrf);
                                            @if op == "delete" {
                                                button.quiet.danger type="submit" aria-label=(format!("Delete {}", r.name)) { (label) }
                                            } @else {
                                                button.quiet type="submit" aria-label=(format!("{label} {}", r.name)) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        }
        @if may_edit {
            h2 { "New webhook" }
            form.panel method="post" action=(here) {
                input type="hidden" name="csrf" value=(c.csrf);
                label for="wh-name" { "Name" }
                input id="wh-name" type="text" name="name" value=(name) required maxlength="255" autocomplete="off";
                label for="wh-desc" { "Description" }
                input id="wh-desc" type="text" name="description" value=(description);
                label for="wh-type" { "Notify type" }
                select id="wh-type" name="notify_type" {
                    option value="http" selected[notify != "slack"] { "HTTP (JSON)" }
                    option value="slack" selected[notify == "slack"] { "Slack" }
                }
                label for="wh-format" { "Payload format (HTTP)" }
                select id="wh-format" name="payload_format" {
                    option value="Default" selected[format != "CloudEvents"] { "Default (Harbor's JSON)" }
                    option value="CloudEvents" selected[format == "CloudEvents"] { "CloudEvents 1.0" }
                }
                label for="wh-address" { "Endpoint URL" }
                input id="wh-address" type="url" name="address" value=(address) required placeholder="https://ci.example.com/hooks/berth";
                label for="wh-auth" { "Auth header (sent as Authorization; optional)" }
                input id="wh-auth" type="password" name="auth_header" autocomplete="off";
                label.check { input type="checkbox" name="skip_cert_verify" value="on" checked[form.is_some_and(|f| f.skip_cert_verify.is_some())]; " Do not verify the receiver's TLS certificate" }
                fieldset {
                    legend { "Events" }
                    @for t in EVENT_TYPES {
                        label.check { input type="checkbox" name="event" value=(t) checked[checked_event(t)]; " " (event_label(t)) }
                    }
                }
                p {
                    button type="submit" name="save" value="1" { "Create" }
                    " "
                    button.quiet type="submit" name="test" value="1" { "Send a test event" }
                }
            }
        }
    };
    project_page(s, &c, &p, "webhooks", body, status).await
}

/// The event types of a form: its repeated `event` fields (serde's form decoding keeps only
/// one value per name, so they are read from the raw body).
fn events_of(raw: &str) -> Vec<String> {
    form_urlencoded::parse(raw.as_bytes()).filter(|(k, _)| k == "event").map(|(_, v)| v.into_owned()).collect()
}

async fn create(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<i64>, raw: String) -> Response {
    let form: NewForm = serde_urlencoded_lite(&raw);
    let events = events_of(&raw);
    let result: Result<Notice, (String, StatusCode)> = async {
        let (p, origin) = checked(&s, &headers, id, &form.csrf, Perm::ManageWebhooks).await?;
        let w = s.webhooks.as_deref().ok_or(("Webhooks are not available.".to_string(), StatusCode::SERVICE_UNAVAILABLE))?;
        let spec = form.spec(events.clone());
        if form.test.is_some() {
            let results = w.test(&p, &spec, None, &origin).await.map_err(api_err)?;
            return match results.into_iter().next() {
                Some((addr, Ok(code))) => Ok(Some((format!("The test event reached {addr} (HTTP {code}). Nothing was saved yet."), true))),
                Some((addr, Err(why))) => Err((format!("The test event did not reach {addr}: {why}"), StatusCode::BAD_REQUEST)),
                None => Err(("Give an endpoint URL.".into(), StatusCode::BAD_REQUEST)),
            };
        }
        let (_, secret) = w.create(&p.name, &spec, &origin).await.map_err(api_err)?;
        Ok(Some((
            format!("Created {}. Its signing secret, shown this once (receivers check X-Berth-Signature-256 with it): {secret}", spec.name),
            true,
        )))
    }
    .await;
    match result {
        Ok(note) if form.test.is_some() => page(&s, &headers, id, Some(&form), note, &events, StatusCode::OK).await,
        Ok(note) => page(&s, &headers, id, None, note, &[], StatusCode::OK).await,
        Err((msg, status)) => page(&s, &headers, id, Some(&form), Some((msg, false)), &events, status).await,
    }
}

/// A form body as [`NewForm`] (missing fields empty).
fn serde_urlencoded_lite(raw: &str) -> NewForm {
    let mut f = NewForm::default();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "csrf" => f.csrf = v,
            "name" => f.name = v,
            "description" => f.description = v,
            "notify_type" => f.notify_type = v,
            "address" => f.address = v,
            "payload_format" => f.payload_format = v,
            "auth_header" => f.auth_header = v,
            "skip_cert_verify" => f.skip_cert_verify = Some(v),
            "test" => f.test = Some(v),
            _ => {}
        }
    }
    f
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn act(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, policy, op)): Path<(i64, i64, String)>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let result: Result<Notice, (String, StatusCode)> = async {
        let (p, origin) = checked(&s, &headers, id, &f.csrf, Perm::ManageWebhooks).await?;
        let w = s
            .webhooks
            .as_deref()
            .ok_or(("Webhooks are not available.".to_string(), StatusCode::SERVICE_UNAVAILABLE))?;
        let pol = w.policy(&p.name, policy).await.map_err(api_err)?;
        let mut spec = PolicySpec {
            name: pol.record.name.clone(),
            description: pol.record.description.clone(),
            enabled: Some(pol.record.enabled),
            event_types: pol.event_types.clone(),
            targets: pol.targets.clone(),
            secret: None,
        };
        match op.as_str() {
            "test" => {
                let results = w.test(&p, &spec, Some(policy), &origin).await.map_err(api_err)?;
                let lines: Vec<String> = results
                    .into_iter()
                    .map(|(a, r)| match r {
                        Ok(code) => format!("{a}: delivered (HTTP {code})"),
                        Err(why) => format!("{a}: {why}"),
                    })
                    .collect();
                let ok = !lines.iter().any(|l| !l.contains("delivered (HTTP"));
                Ok(Some((format!("Test event of {}: {}", pol.record.name, lines.join("; ")), ok)))
            }
            "enable" | "disable" => {
                spec.enabled = Some(op == "enable");
                w.update(&p.name, policy, &spec, &origin).await.map_err(api_err)?;
                Ok(Some((format!("{} is {}.", pol.record.name, if op == "enable" { "on" } else { "off" }), true)))
            }
            "delete" => {
                w.delete(&p.name, policy, &origin).await.map_err(api_err)?;
                Ok(Some((format!("Deleted {} and its delivery history.", pol.record.name), true)))
            }
            other => Err((format!("Unknown action {other:?}."), StatusCode::NOT_FOUND)),
        }
    }
    .await;
    match result {
        Ok(note) => page(&s, &headers, id, None, note, &[], StatusCode::OK).await,
        Err((msg, status)) => page(&s, &headers, id, None, Some((msg, false)), &[], status).await,
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    status: Option<String>,
}

async fn history(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, policy)): Path<(i64, i64)>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    history_page(&s, &headers, id, policy, q.status.as_deref(), None, StatusCode::OK).await
}

async fn history_page(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    policy: i64,
    status_filter: Option<&str>,
    note: Notice,
    status: StatusCode,
) -> Response {
    let here = format!("/harbor/projects/{id}/webhooks/{policy}");
    let (c, p) = match open(s, headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if c.anonymous() {
        return super::to_sign_in(&here);
    }
    let Some(w) = s.webhooks.as_deref() else { return super::to_sign_in(&here) };
    if !c.may(s, Target::Project(&p), Perm::ReadWebhooks).await {
        let body =
            html! { p.error role="alert" { "Only the project's administrators and maintainers see its webhooks." } };
        return project_page(s, &c, &p, "webhooks", body, StatusCode::FORBIDDEN).await;
    }
    let may_edit = c.may(s, Target::Project(&p), Perm::ManageWebhooks).await;
    let filter = status_filter.filter(|f| ["Pending", "Running", "Success", "Error"].contains(f));
    let (pol, deliveries, total) = match w.policy(&p.name, policy).await {
        Ok(pol) => match w.deliveries(&p.name, policy, filter, 0, 100).await {
            Ok((d, n)) => (pol, d, n),
            Err(e) => {
                return project_page(
                    s,
                    &c,
                    &p,
                    "webhooks",
                    html! { p.error role="alert" { (api_err(e).0) } },
                    StatusCode::SERVICE_UNAVAILABLE,
                )
                .await;
            }
        },
        Err(e) => {
            let (msg, st) = api_err(e);
            return project_page(s, &c, &p, "webhooks", html! { p.error role="alert" { (msg) } }, st).await;
        }
    };
    let back = format!("/harbor/projects/{id}/webhooks");
    let body = html! {
        p.crumbs { a href=(back) { "Webhooks" } " / " }
        h2 { (pol.record.name) " " @if !pol.record.enabled { span.badge { "Off" } } }
        p.muted {
            @for (i, t) in pol.event_types.iter().enumerate() { @if i > 0 { ", " } (event_label(t)) }
            " → "
            @for t in &pol.targets { code.wrap { (t.address) } " " }
        }
        (notice(&note))
        p {
            @if filter == Some("Error") { a href=(here) { "All deliveries" } " · " strong { "Dead letters only" } }
            @else { strong { "All deliveries" } " · " a href=(format!("{here}?status=Error")) { "Dead letters only" } }
            " (" (total) ")"
        }
        div.panel {
            @if deliveries.is_empty() { p { "No deliveries" @if filter.is_some() { " of this kind" } "." } }
            @else {
                table {
                    thead { tr { th { "#" } th { "Event" } th { "Status" } th { "Tries" } th.hide-narrow { "Created" } th { "Last try" } @if may_edit { th { span.label-narrow { "Actions" } } } } }
                    tbody { @for d in &deliveries {
                        tr {
                            td { (d.id) }
                            td { (event_label(&d.event_type)) }
                            td { (status_badge(&d.status, d.attempts)) }
                            td { (d.attempts) @if let Some(code) = d.last_code { br; span.muted { "HTTP " (code) } } }
                            td.hide-narrow { (when(d.created_at)) }
                            td { span.muted { (last_try(&d.log)) } }
                            @if may_edit {
                                td.actions { @if d.status == "Success" || d.status == "Error" {
                                    form.inline method="post" action=(format!("{here}/deliveries/{}", d.id)) {
                                        input type="hidden" name="csrf" value=(c.csrf);
                                        button.quiet type="submit" aria-label=(format!("Redeliver delivery {}", d.id)) { "Redeliver" }
                                    }
                                } }
                            }
                        }
                    } }
                }
            }
        }
    };
    project_page(s, &c, &p, "webhooks", body, status).await
}

/// A delivery's last try as the history shows it (its time is in its own column).
fn last_try(log: &str) -> &str {
    match log.lines().last() {
        Some(line) => line.split_once(' ').filter(|(t, _)| t.ends_with('Z')).map_or(line, |(_, rest)| rest),
        None => "not tried yet",
    }
}

async fn redeliver(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, policy, delivery)): Path<(i64, i64, i64)>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let result: Result<(), (String, StatusCode)> = async {
        let (p, origin) = checked(&s, &headers, id, &f.csrf, Perm::ManageWebhooks).await?;
        let w = s
            .webhooks
            .as_deref()
            .ok_or(("Webhooks are not available.".to_string(), StatusCode::SERVICE_UNAVAILABLE))?;
        w.redeliver(&p.name, policy, delivery, &origin).await.map_err(api_err)
    }
    .await;
    match result {
        Ok(()) => {
            let note = Some((format!("Delivery {delivery} will be sent again."), true));
            history_page(&s, &headers, id, policy, None, note, StatusCode::OK).await
        }
        Err((msg, st)) => history_page(&s, &headers, id, policy, None, Some((msg, false)), st).await,
    }
}
