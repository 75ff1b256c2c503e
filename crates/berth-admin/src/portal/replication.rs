//! Administration → Replication: policies (create push- or pull-based with filters, run now,
//! delete), recent runs, and a run's page with each artifact's task and log. The same service
//! as `/api/v2.0/replication` (`berth_registry::Replication`); runs are durable jobs.

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use berth_registry::{Filter, PolicySpec, RegistryRef, Trigger};
use maud::{Markup, html};
use serde::Deserialize;

use super::admin::{Notice, notice};
use super::{CsrfForm, admin_action, admin_ctx, api_err};
use crate::AdminState;

pub(super) const PATH: &str = "/harbor/replications";

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route(PATH, get(list).post(create))
        .route("/harbor/replications/{id}/{op}", post(act))
        .route("/harbor/replications/executions/{id}", get(execution))
}

fn status_badge(status: &str) -> Markup {
    html! {
        @match status {
            "Succeed" => span.badge.public { "Succeeded" },
            "Failed" => span.badge.failed { "Failed" },
            "InProgress" => span.badge { "Running" },
            "Pending" => span.badge { "Pending" },
            other => span.badge { (other) },
        }
    }
}

fn filters_text(filters: &[Filter]) -> String {
    filters
        .iter()
        .map(|f| {
            let not = if f.decoration == "excludes" { "not " } else { "" };
            format!("{} {not}{}", f.kind, f.value.as_str().unwrap_or(""))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn list(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    list_page(&s, &headers, None, StatusCode::OK).await
}

async fn list_page(s: &AdminState, headers: &HeaderMap, note: Notice, status: StatusCode) -> Response {
    let c = match admin_ctx(s, headers, PATH, "Replication").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(r) = s.replication.as_deref() else {
        let body = html! { h1 { "Replication" } p { "Replication is not available on this server." } };
        return super::admin::page(&c, "Replication", PATH, body, StatusCode::OK);
    };
    let endpoints = s.upstreams.list().await.unwrap_or_default();
    let name_of = |id: i64| endpoints.iter().find(|e| e.id == id).map_or(format!("registry {id}"), |e| e.name.clone());
    let mut policies = Vec::new();
    for rec in r.store().replication_policies().await.unwrap_or_default() {
        if let Ok((rec, spec)) = r.policy(rec.id).await {
            policies.push((rec, spec));
        }
    }
    let (runs, _) = r.store().replication_executions(None, 0, 20).await.unwrap_or_default();
    let policy_name =
        |id: i64| policies.iter().find(|(p, _)| p.id == id).map_or(String::new(), |(p, _)| p.name.clone());
    let body = html! {
        h1 { "Replication" }
        p.muted { "Copy images between Berth and another registry: push what is here to it, or pull what it has into a project here. Only missing blobs are sent; a run interrupted by a restart resumes." }
        (notice(&note))
        div.panel {
            @if policies.is_empty() { p { "No replication policies yet." } }
            @else {
                table {
                    thead { tr { th { "Policy" } th { "Direction" } th.hide-narrow { "Filters" } th { "Trigger" } th { span.label-narrow { "Actions" } } } }
                    tbody { @for (p, spec) in &policies {
                        tr {
                            td { strong { (p.name) } @if !spec.description.is_empty() { br; span.muted { (spec.description) } } @if !spec.enabled { " " span.badge { "disabled" } } }
                            td {
                                @match (&spec.src_registry, &spec.dest_registry) {
                                    (Some(src), _) => { "Pull from " (name_of(src.id)) }
                                    (_, Some(dst)) => { "Push to " (name_of(dst.id)) }
                                    _ => { "—" }
                                }
                                @if !spec.dest_namespace.is_empty() { br; span.muted { "into " (spec.dest_namespace) } }
                            }
                            td.hide-narrow.wrap { (filters_text(&spec.filters)) }
                            td {
                                @match (spec.trigger.kind.as_str(), spec.cron()) {
                                    ("event_based", _) => "On push",
                                    (_, Some(cron)) => { "Scheduled " code { (cron) } },
                                    _ => "Manual",
                                }
                            }
                            td.actions {
                                form.inline method="post" action=(format!("{PATH}/{}/run", p.id)) {
                                    input type="hidden" name="csrf" value=(c.csrf);
                                    button.quiet type="submit" aria-label=(format!("Replicate now: {}", p.name)) { "Replicate now" }
                                }
                                form.inline method="post" action=(format!("{PATH}/{}/delete", p.id)) {
                                    input type="hidden" name="csrf" value=(c.csrf);
                                    button.quiet.danger type="submit" aria-label=(format!("Delete {}", p.name)) { "Delete" }
                                }
                            }
                        }
                    } }
                }
            }
        }
        h2 { "Recent runs" }
        div.panel {
            @if runs.is_empty() { p { "Nothing has run yet." } }
            @else {
                table {
                    thead { tr { th { "Run" } th { "Policy" } th { "Status" } th.hide-narrow { "Trigger" } th { "Started" } th.hide-narrow { "Result" } } }
                    tbody { @for e in &runs {
                        tr {
                            td { a href=(format!("{PATH}/executions/{}", e.id)) { (e.id) } }
                            td { (policy_name(e.policy_id)) }
                            td { (status_badge(&e.status)) }
                            td.hide-narrow { (e.trigger) }
                            td { (super::when(e.started_at)) }
                            td.hide-narrow { (e.status_text) }
                        }
                    } }
                }
            }
        }
        h2 { "New policy" }
        @if endpoints.is_empty() {
            div.panel { p { "Add a registry endpoint first (" a href=(super::registries::PATH) { "Registries" } ")." } }
        } @else {
            form.panel method="post" action=(PATH) {
                input type="hidden" name="csrf" value=(c.csrf);
                label for="rp-name" { "Name" }
                input #rp-name type="text" name="name" required maxlength="255";
                label for="rp-direction" { "Direction" }
                select #rp-direction name="direction" {
                    option value="push" { "Push: copy from here to the endpoint" }
                    option value="pull" { "Pull: copy from the endpoint to here" }
                }
                label for="rp-endpoint" { "Registry endpoint" }
                select #rp-endpoint name="endpoint" {
                    @for e in &endpoints { option value=(e.id) { (e.name) " \u{2014} " (e.url) } }
                }
                label for="rp-repos" { "Repositories (globs such as team/** or library/{nginx,redis}; empty: all)" }
                input #rp-repos type="text" name="repositories";
                label for="rp-tags" { "Tags (globs such as v*; empty: all)" }
                input #rp-tags type="text" name="tags";
                label for="rp-ns" { "Destination namespace (replaces each repository's first part; empty: the same names)" }
                input #rp-ns type="text" name="dest_namespace";
                label for="rp-trigger" { "Trigger" }
                select #rp-trigger name="trigger" {
                    option value="manual" { "Manual" }
                    option value="event_based" { "On push (push policies)" }
                    option value="scheduled" { "Scheduled (cron below)" }
                }
                label for="rp-cron" { "Cron for a scheduled trigger (six fields, seconds first: 0 0 3 * * * is 03:00 UTC daily)" }
                input #rp-cron type="text" name="cron";
                label for="rp-speed" { "Bandwidth limit in KiB/s (empty: none)" }
                input #rp-speed type="text" name="speed" inputmode="numeric";
                label.check { input type="checkbox" name="overwrite" value="on"; " Overwrite tags that exist at the destination" }
                p { button type="submit" { "Create policy" } }
            }
        }
    };
    super::admin::page(&c, "Replication", PATH, body, status)
}

#[derive(Deserialize)]
struct PolicyForm {
    csrf: String,
    name: String,
    direction: String,
    endpoint: i64,
    #[serde(default)]
    repositories: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    dest_namespace: String,
    #[serde(default)]
    trigger: String,
    #[serde(default)]
    cron: String,
    #[serde(default)]
    speed: String,
    #[serde(default)]
    overwrite: Option<String>,
}

async fn create(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<PolicyForm>) -> Response {
    let who = match admin_action(&s, &headers, &f.csrf, PATH).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(r) = s.replication.as_deref() else {
        return list_page(&s, &headers, Some(("Replication is not available.".into(), false)), StatusCode::NOT_FOUND)
            .await;
    };
    let speed = match f.speed.trim() {
        "" => 0,
        t => match t.parse::<i64>() {
            Ok(n) if n >= 0 => n,
            _ => {
                let m = format!("Bandwidth limit {t:?}: a whole number of KiB/s, or empty for none.");
                return list_page(&s, &headers, Some((m, false)), StatusCode::BAD_REQUEST).await;
            }
        },
    };
    let end = Some(RegistryRef { id: f.endpoint });
    let mut filters = Vec::new();
    for (kind, value) in [("name", f.repositories.trim()), ("tag", f.tags.trim())] {
        if !value.is_empty() {
            filters.push(Filter { kind: kind.into(), value: value.into(), decoration: String::new() });
        }
    }
    let spec = PolicySpec {
        name: f.name.trim().to_owned(),
        description: String::new(),
        src_registry: if f.direction == "pull" { end.clone() } else { None },
        dest_registry: if f.direction == "pull" { None } else { end },
        dest_namespace: f.dest_namespace.trim().to_owned(),
        filters,
        trigger: Trigger {
            kind: f.trigger.clone(),
            trigger_settings: if f.trigger == "scheduled" {
                serde_json::json!({ "cron": f.cron.trim() })
            } else {
                serde_json::Value::Null
            },
        },
        enabled: true,
        deletion: false,
        overwrite: f.overwrite.is_some(),
        speed,
        concurrency: None,
    };
    let origin = berth_auth::Origin::new(who.name(), None);
    match r.create(&spec, &origin).await {
        Ok(_) => {
            let m = format!("Replication policy {} created.", spec.name);
            list_page(&s, &headers, Some((m, true)), StatusCode::OK).await
        }
        Err(e) => {
            let (m, st) = api_err(e);
            list_page(&s, &headers, Some((m, false)), st).await
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
    let Some(r) = s.replication.as_deref() else {
        return list_page(&s, &headers, Some(("Replication is not available.".into(), false)), StatusCode::NOT_FOUND)
            .await;
    };
    let origin = berth_auth::Origin::new(who.name(), None);
    let outcome: Result<String, (String, StatusCode)> = match op.as_str() {
        "run" => match crate::replication::start_run(&s, id).await {
            Ok(run) => Ok(format!("Run {run} started; it appears under Recent runs.")),
            Err(e) => Err(api_err(e)),
        },
        "delete" => r.delete(id, &origin).await.map(|()| "Replication policy deleted.".to_owned()).map_err(api_err),
        _ => Err(("Unknown action.".into(), StatusCode::NOT_FOUND)),
    };
    match outcome {
        Ok(m) => list_page(&s, &headers, Some((m, true)), StatusCode::OK).await,
        Err((m, st)) => list_page(&s, &headers, Some((m, false)), st).await,
    }
}

async fn execution(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let path = format!("{PATH}/executions/{id}");
    let c = match admin_ctx(&s, &headers, &path, "Replication").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let run = match s.replication.as_deref() {
        Some(r) => r.store().replication_execution(id).await.ok().flatten().map(|e| (r, e)),
        None => None,
    };
    let Some((r, e)) = run else {
        let body =
            html! { h1 { "Replication" } p { "There is no run " (id) "." } p { a href=(PATH) { "Replication" } } };
        return super::admin::page(&c, "Replication", PATH, body, StatusCode::NOT_FOUND);
    };
    let tasks = r.store().replication_tasks(id).await.unwrap_or_default();
    let policy = r.policy(e.policy_id).await.map(|(p, _)| p.name).unwrap_or_default();
    let body = html! {
        p { a href=(PATH) { "\u{2190} Replication" } }
        h1 { "Run " (e.id) " of " (policy) " " (status_badge(&e.status)) }
        p.muted { "Started " (super::when(e.started_at)) " (" (e.trigger) ")" @if let Some(end) = e.ended_at { ", ended " (super::when(end)) } ". " (e.status_text) }
        div.panel {
            @if tasks.is_empty() { p { "No artifacts yet." } }
            @else {
                table {
                    thead { tr { th { "Source" } th.hide-narrow { "Destination" } th { "Status" } th { "Log" } } }
                    tbody { @for t in &tasks {
                        tr {
                            td.wrap { (t.src_resource) }
                            td.hide-narrow.wrap { (t.dst_resource) }
                            td { (status_badge(&t.status)) }
                            td { @if t.log.is_empty() { span.muted { "—" } } @else { details { summary { "Log" } pre tabindex="0" { (t.log) } } } }
                        }
                    } }
                }
            }
        }
        @if e.status == "InProgress" { p.muted { "Reload to follow the run." } }
    };
    super::admin::page(&c, &format!("Run {id}"), PATH, body, StatusCode::OK)
}
