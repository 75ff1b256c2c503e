//! Administration: the job queue. Every durable job with its state, attempts and last error,
//! filterable by state, with Cancel for queued or running jobs and Retry for failed or
//! stopped ones — so a "stuck" job is visible and fixable here. System administrators only.

use std::collections::HashMap;

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use berth_jobs::JobState;
use maud::html;

use crate::AdminState;

pub(super) const PATH: &str = "/harbor/jobs";

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route(PATH, get(list)).route("/harbor/jobs/{id}/{op}", post(act))
}

const STATES: [(&str, Option<JobState>); 6] = [
    ("All", None),
    ("Queued", Some(JobState::Queued)),
    ("Running", Some(JobState::Running)),
    ("Failed", Some(JobState::Failed)),
    ("Stopped", Some(JobState::Cancelled)),
    ("Succeeded", Some(JobState::Succeeded)),
];

fn state_label(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "Queued",
        JobState::Running => "Running",
        JobState::Succeeded => "Succeeded",
        JobState::Failed => "Failed",
        JobState::Cancelled => "Stopped",
    }
}

async fn list(State(s): State<AdminState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let c = match super::admin_ctx(&s, &headers, PATH, "Jobs").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let token = &c.csrf;
    let chosen = q.get("state").map(String::as_str).unwrap_or("All");
    let state = STATES.iter().find(|(l, _)| *l == chosen).and_then(|(_, st)| *st);
    let jobs = s.jobs.list(None, state, 200).await.unwrap_or_default();
    let body = html! {
        h1 { "Jobs" }
        nav.tabs aria-label="Job states" {
            ul {
                @for (label, _) in STATES {
                    li {
                        @let href = format!("{PATH}?state={label}");
                        @if label == chosen { a href=(href) aria-current="page" { (label) } } @else { a href=(href) { (label) } }
                    }
                }
            }
        }
        div.panel {
            @if jobs.is_empty() {
                p.muted { "No jobs here." }
            } @else {
                table {
                    thead { tr { th { "Kind" } th { "State" } th { "Attempts" } th.hide-narrow { "Last error" } th.hide-narrow { "Updated" } th { "Actions" } } }
                    tbody {
                        @for j in &jobs {
                            tr {
                                td { code { (j.kind) } }
                                td { span.badge { (state_label(j.state)) } }
                                td { (j.attempts) " of " (j.max_attempts) }
                                td.hide-narrow { @if let Some(e) = &j.last_error { (e) } @else { span.muted { "—" } } }
                                td.hide-narrow { (super::when(j.updated_at)) }
                                td.actions {
                                    @if matches!(j.state, JobState::Queued | JobState::Running) {
                                        form.inline method="post" action=(format!("/harbor/jobs/{}/cancel", j.id)) {
                                            input type="hidden" name="csrf" value=(token);
                                            button.quiet.danger type="submit" { "Cancel" }
                                        }
                                    }
                                    @if matches!(j.state, JobState::Failed | JobState::Cancelled) {
                                        form.inline method="post" action=(format!("/harbor/jobs/{}/retry", j.id)) {
                                            input type="hidden" name="csrf" value=(token);
                                            button.quiet type="submit" { "Retry" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    super::admin::page(&c, "Jobs", PATH, body, StatusCode::OK)
}

async fn act(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, op)): Path<(String, String)>,
    Form(f): Form<super::CsrfForm>,
) -> Response {
    let who = match super::admin_action(&s, &headers, &f.csrf, PATH).await {
        Ok(who) => who,
        Err(r) => return r,
    };
    let origin = berth_auth::Origin::new(who.name(), None);
    let done = match op.as_str() {
        "cancel" => s.jobs.stop(&id, &origin).await.map(|_| ()),
        "retry" => s.jobs.retry(&id).await.map(|_| ()),
        _ => return (StatusCode::NOT_FOUND, "Unknown action.").into_response(),
    };
    if let Err(e) = done {
        tracing::error!(error = %e, job = %id, "portal: changing a job");
        return (StatusCode::SERVICE_UNAVAILABLE, "The job queue cannot be changed right now; try again.")
            .into_response();
    }
    Redirect::to(PATH).into_response()
}
