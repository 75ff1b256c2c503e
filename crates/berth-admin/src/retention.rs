//! Harbor tag retention (`/api/v2.0/retentions`): one policy per project, its executions
//! (dry run or not), their per-repository tasks and each task's log, and the metadata the
//! portal builds its rule editor from. Reading needs project read access; changing and
//! executing needs `ManagePolicy`.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};
use berth_auth::ProjectRecord;
use berth_auth::Target;
use berth_auth::rbac::Perm;
use berth_jobs::{PolicyRecord, PolicyRunRecord};
use berth_policy::retention::{RetentionPolicy, Scope, TEMPLATES};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::lifecycle::policy_error;
use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, created, json_body, not_found, page_of, time};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/retentions/metadatas", get(metadatas))
        .route("/api/v2.0/retentions", post(create))
        .route("/api/v2.0/retentions/{id}", get(show).put(update).delete(remove))
        .route("/api/v2.0/retentions/{id}/executions", get(executions).post(execute))
        .route("/api/v2.0/retentions/{id}/executions/{eid}", patch(stop))
        .route("/api/v2.0/retentions/{id}/executions/{eid}/tasks", get(tasks))
        .route("/api/v2.0/retentions/{id}/executions/{eid}/tasks/{tid}", get(task_log))
}

async fn metadatas(c: Caller) -> ApiResult {
    c.authenticated()?;
    let templates: Vec<Value> = TEMPLATES
        .iter()
        .map(|(id, text, unit)| {
            let params =
                if unit.is_empty() { json!([]) } else { json!([{"type": "int", "unit": unit, "required": true}]) };
            json!({"rule_template": id, "display_text": text, "action": "retain", "params": params})
        })
        .collect();
    Ok(Json(json!({
        "templates": templates,
        "scope_selectors": [{"display_text": "Repositories", "kind": "doublestar",
            "decorations": ["repoMatches", "repoExcludes"]}],
        "tag_selectors": [
            {"display_text": "Tags", "kind": "doublestar", "decorations": ["matches", "excludes"]},
            {"display_text": "Labels", "kind": "label", "decorations": ["withLabels", "withoutLabels"]},
        ],
    }))
    .into_response())
}

fn number(id: &str, what: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| bad_request(format!("{what} must be a number, not {id:?}")))
}

/// The policy `id` and its project, if the caller may do `perm` there.
async fn policy_of(
    s: &AdminState,
    c: &Caller,
    id: &str,
    perm: Perm,
) -> Result<(PolicyRecord, ProjectRecord), ApiError> {
    let id = number(id, "retention id")?;
    let missing = || not_found(format!("retention policy {id} not found"));
    let policy = s.policies.retention(id).await?.ok_or_else(missing)?;
    let project = s.auth.project(&policy.scope).await?.ok_or_else(missing)?;
    c.require(s, Target::Project(&project), perm).await?;
    Ok((policy, project))
}

/// The policy as Harbor shows it: its stored rules with ids, priorities and its scope.
fn shown(policy: &PolicyRecord, project: &ProjectRecord) -> Result<Value, ApiError> {
    let mut p: RetentionPolicy =
        serde_json::from_str(&policy.document).map_err(|e| ApiError::internal("reading a retention policy", e))?;
    p.id = policy.id;
    p.scope = Some(Scope { level: "project".into(), reference: project.id });
    serde_json::to_value(&p).map_err(|e| ApiError::internal("retention policy", e))
}

/// Number the rules (Harbor gives each an id and keeps priorities).
fn normalized(mut p: RetentionPolicy) -> RetentionPolicy {
    for (i, r) in p.rules.iter_mut().enumerate() {
        r.id = i as i64 + 1;
        if r.priority == 0 {
            r.priority = i as i64 + 1;
        }
    }
    p
}

async fn target_project(s: &AdminState, c: &Caller, p: &RetentionPolicy) -> Result<ProjectRecord, ApiError> {
    let scope = p
        .scope
        .as_ref()
        .ok_or_else(|| bad_request("scope is required: {\"level\": \"project\", \"ref\": <project id>}"))?;
    let project = s
        .auth
        .project_by_id(scope.reference)
        .await?
        .ok_or_else(|| not_found(format!("project {} not found", scope.reference)))?;
    c.require(s, Target::Project(&project), Perm::ManagePolicy).await?;
    Ok(project)
}

async fn create(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<RetentionPolicy>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let policy = normalized(json_body(body)?);
    let project = target_project(&s, &c, &policy).await?;
    if let Some(existing) = s.policies.project_retention(&project.name).await? {
        return Err(ApiError::Conflict(format!(
            "project {} already has retention policy {}; change it with PUT /api/v2.0/retentions/{}",
            project.name, existing.id, existing.id
        )));
    }
    let stored = s.policies.put_retention(&project.name, &policy, &c.origin()).await.map_err(policy_error)?;
    Ok(created(&format!("/api/v2.0/retentions/{}", stored.id)))
}

async fn show(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    let (policy, project) = policy_of(&s, &c, &id, Perm::Read).await?;
    Ok(Json(shown(&policy, &project)?).into_response())
}

async fn update(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<RetentionPolicy>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let (existing, project) = policy_of(&s, &c, &id, Perm::ManagePolicy).await?;
    let mut policy = normalized(json_body(body)?);
    if let Some(scope) = &policy.scope
        && scope.reference != project.id
    {
        return Err(bad_request(format!(
            "retention policy {} belongs to project {}; its scope cannot move to project {}",
            existing.id, project.id, scope.reference
        )));
    }
    policy.scope = Some(Scope { level: "project".into(), reference: project.id });
    s.policies.put_retention(&project.name, &policy, &c.origin()).await.map_err(policy_error)?;
    Ok(StatusCode::OK.into_response())
}

async fn remove(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    let (policy, _) = policy_of(&s, &c, &id, Perm::ManagePolicy).await?;
    s.policies.delete_retention(policy.id, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize, Default)]
struct ExecuteBody {
    #[serde(default)]
    dry_run: bool,
}

async fn execute(State(s): State<AdminState>, c: Caller, Path(id): Path<String>, body: axum::body::Bytes) -> ApiResult {
    let (policy, _) = policy_of(&s, &c, &id, Perm::ManagePolicy).await?;
    let body: ExecuteBody = if body.iter().all(u8::is_ascii_whitespace) {
        ExecuteBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("the request body is not valid JSON: {e}")))?
    };
    let run = s.policies.execute_retention(policy.id, body.dry_run, "MANUAL").await.map_err(policy_error)?;
    Ok(created(&format!("/api/v2.0/retentions/{}/executions/{run}", policy.id)))
}

fn execution_json(r: &PolicyRunRecord) -> Value {
    let done = !matches!(r.status.as_str(), "Pending" | "Running" | "Stopping");
    json!({
        "id": r.id, "policy_id": r.policy_id, "status": r.status, "trigger": r.trigger, "dry_run": r.dry_run,
        "start_time": time(r.created_at), "end_time": if done { time(r.updated_at) } else { String::new() },
    })
}

async fn executions(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (policy, _) = policy_of(&s, &c, &id, Perm::Read).await?;
    let (page, size) = page_of(&q)?;
    let (runs, total) = s.policies.executions(policy.id, ((page - 1) * size) as i64, size as i64).await?;
    let body: Vec<Value> = runs.iter().map(execution_json).collect();
    let path = format!("/api/v2.0/retentions/{}/executions", policy.id);
    Ok(crate::with_page_headers(Json(body).into_response(), total as usize, page, size, &q, &path))
}

async fn run_of(s: &AdminState, policy: &PolicyRecord, eid: &str) -> Result<PolicyRunRecord, ApiError> {
    let eid = number(eid, "execution id")?;
    s.policies
        .run(eid)
        .await?
        .filter(|r| r.policy_id == policy.id && r.kind == berth_registry::RETENTION)
        .ok_or_else(|| not_found(format!("retention policy {} has no execution {eid}", policy.id)))
}

#[derive(Deserialize)]
struct StopBody {
    action: String,
}

async fn stop(
    State(s): State<AdminState>,
    c: Caller,
    Path((id, eid)): Path<(String, String)>,
    body: Result<Json<StopBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let (policy, _) = policy_of(&s, &c, &id, Perm::ManagePolicy).await?;
    let body = json_body(body)?;
    if body.action != "stop" {
        return Err(bad_request(format!("action {:?}: the only action is \"stop\"", body.action)));
    }
    let run = run_of(&s, &policy, &eid).await?;
    s.policies.stop(&run).await.map_err(policy_error)?;
    Ok(StatusCode::OK.into_response())
}

fn task_list(run: &PolicyRunRecord) -> Vec<Value> {
    let result: Value = run.result.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null);
    result["tasks"].as_array().cloned().unwrap_or_default()
}

async fn tasks(
    State(s): State<AdminState>,
    c: Caller,
    Path((id, eid)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (policy, _) = policy_of(&s, &c, &id, Perm::Read).await?;
    let run = run_of(&s, &policy, &eid).await?;
    let items: Vec<Value> = task_list(&run)
        .iter()
        .map(|t| {
            json!({
                "id": t["id"], "execution_id": run.id, "repository": t["repository"], "job_id": "",
                "status": t["status"], "status_code": 0, "status_revision": 0,
                "start_time": time(t["start_time"].as_i64().unwrap_or(0)),
                "end_time": time(t["end_time"].as_i64().unwrap_or(0)),
                "total": t["total"], "retained": t["retained"],
            })
        })
        .collect();
    crate::paginate(items, &q, &format!("/api/v2.0/retentions/{}/executions/{}/tasks", policy.id, run.id))
}

async fn task_log(
    State(s): State<AdminState>,
    c: Caller,
    Path((id, eid, tid)): Path<(String, String, String)>,
) -> ApiResult {
    let (policy, _) = policy_of(&s, &c, &id, Perm::Read).await?;
    let run = run_of(&s, &policy, &eid).await?;
    let tid = number(&tid, "task id")?;
    let task = task_list(&run)
        .into_iter()
        .find(|t| t["id"].as_i64() == Some(tid))
        .ok_or_else(|| not_found(format!("execution {} has no task {tid}", run.id)))?;
    let log = task["log"].as_str().unwrap_or_default().to_string();
    Ok(([(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}
