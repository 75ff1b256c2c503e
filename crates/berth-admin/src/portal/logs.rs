//! Audit logs: a project's (its `logs` tab, for whoever may read the project's logs) and the
//! whole system's (administration). One table and one filter form (user, operation, resource
//! type, resource prefix, from and to dates), paginated in the database.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use berth_auth::Target;
use berth_auth::rbac::Perm;
use maud::{Markup, html};

use super::project::{open, project_page};
use super::{PAGE_SIZE, pager};
use crate::AdminState;

pub(super) const PATH: &str = "/harbor/logs";

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route(PATH, get(system)).route("/harbor/projects/{id}/logs", get(project))
}

const OPERATIONS: [&str; 8] = ["pull", "push", "delete", "create", "update", "login", "login_failed", "scan"];

/// The query of the filter form, and its links' query string.
struct Filter {
    q: berth_auth::AuditQuery,
    page: usize,
    fields: Vec<(&'static str, String)>,
}

fn filter(q: &HashMap<String, String>) -> Filter {
    let get = |k: &str| q.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let day = |k: &str| get(k).and_then(|d| berth_registry::day_of(&d));
    let mut aq = berth_auth::AuditQuery {
        username: get("username"),
        operation: get("operation"),
        resource_type: get("resource_type"),
        resource_prefix: get("resource"),
        from: day("from").map(|d| d * 86_400_000),
        to: day("to").map(|d| (d + 1) * 86_400_000 - 1),
        ..Default::default()
    };
    aq.project = None;
    let fields = ["username", "operation", "resource_type", "resource", "from", "to"]
        .into_iter()
        .filter_map(|k| get(k).map(|v| (k, v)))
        .collect();
    Filter { q: aq, page: q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1), fields }
}

/// The filter form and one page of entries.
async fn table(s: &AdminState, here: &str, mut f: Filter, project: Option<&str>) -> Markup {
    f.q.project = project.map(str::to_owned);
    let offset = ((f.page - 1) * PAGE_SIZE) as i64;
    let found = s.auth.audit_log(&f.q, offset, PAGE_SIZE as i64).await;
    let value = |k: &str| f.fields.iter().find(|(x, _)| *x == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let query: String = f.fields.iter().map(|(k, v)| format!("{k}={}&", crate::enc(v))).collect();
    if let Err(e) = &found {
        tracing::error!(error = %e, "portal: reading the audit log");
    }
    html! {
        form.filters.panel method="get" action=(here) {
            div.fields {
                div { label for="f-user" { "User" } input #f-user type="text" name="username" value=(value("username")); }
                div {
                    label for="f-op" { "Operation" }
                    select #f-op name="operation" {
                        option value="" { "Any" }
                        @for op in OPERATIONS { option value=(op) selected[value("operation") == op] { (op) } }
                    }
                }
                div { label for="f-type" { "Resource type" } input #f-type type="text" name="resource_type" value=(value("resource_type")) placeholder="artifact, project, robot…"; }
                div { label for="f-res" { "Resource starts with" } input #f-res type="text" name="resource" value=(value("resource")); }
                div { label for="f-from" { "From" } input #f-from type="date" name="from" value=(value("from")); }
                div { label for="f-to" { "To" } input #f-to type="date" name="to" value=(value("to")); }
            }
            p { button type="submit" { "Filter" } " " a href=(here) { "Clear" } }
        }
        div.panel {
            @match found {
                Err(_) => { p.error role="alert" { "The audit log cannot be read right now; try again shortly." } }
                Ok((rows, _)) if rows.is_empty() => { p.muted { "No entries match." } }
                Ok((rows, total)) => {
                    table {
                        thead { tr { th { "Time" } th { "User" } th { "Operation" } th { "Resource" } th.hide-narrow { "Type" } th.hide-narrow { "Result" } th.hide-narrow { "Client" } } }
                        tbody {
                            @for a in &rows {
                                tr {
                                    td { (super::when(a.op_time)) }
                                    td { (a.username) }
                                    td { (a.operation) }
                                    td.wrap {
                                        (a.resource)
                                        @if a.repeats > 1 { " " span.badge title="Identical entries within an hour, counted as one" { "×" (a.repeats) } }
                                        @if let Some(d) = &a.detail { br; span.muted { (d) } }
                                    }
                                    td.hide-narrow { (a.resource_type) }
                                    td.hide-narrow { @if a.result == "success" { (a.result) } @else { span.failed { (a.result) } } }
                                    td.hide-narrow { (a.client_ip.clone().unwrap_or_default()) }
                                }
                            }
                        }
                    }
                    (pager(f.page, total as usize, |n| format!("{here}?{query}page={n}")))
                }
            }
        }
    }
}

async fn project(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let here = format!("/harbor/projects/{id}/logs");
    let (c, p) = match open(&s, &headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !c.may(&s, Target::Project(&p), Perm::ReadLogs).await {
        let content = html! { p { "You may not see this project's logs." } };
        return project_page(&s, &c, &p, "logs", content, StatusCode::FORBIDDEN).await;
    }
    let content = table(&s, &here, filter(&q), Some(&p.name)).await;
    project_page(&s, &c, &p, "logs", content, StatusCode::OK).await
}

async fn system(State(s): State<AdminState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let c = match super::admin_ctx(&s, &headers, PATH, "Audit log").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = html! {
        h1 { "Audit log" }
        (table(&s, PATH, filter(&q), None).await)
    };
    super::admin::page(&c, "Audit log", PATH, body, StatusCode::OK)
}
