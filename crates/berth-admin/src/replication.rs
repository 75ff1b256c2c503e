//! Replication (`/api/v2.0/replication/policies` and `/executions`, Harbor's shapes):
//! policies (create, list, show, change, delete), executions (start one, list, show, stop),
//! their tasks and each task's log. A started execution runs as a durable `replication` job.
//! System administrators only.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use berth_registry::{PolicySpec, ReplicationError, ReplicationExecutionRecord, ReplicationTaskRecord};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, created, json_body, not_found, paginate, time};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/replication/policies", get(list).post(create))
        .route("/api/v2.0/replication/policies/{id}", get(show).put(update).delete(remove))
        .route("/api/v2.0/replication/executions", get(executions).post(start))
        .route("/api/v2.0/replication/executions/{id}", get(execution).put(stop))
        .route("/api/v2.0/replication/executions/{id}/tasks", get(tasks))
        .route("/api/v2.0/replication/executions/{id}/tasks/{task}/log", get(task_log))
}

impl From<ReplicationError> for ApiError {
    fn from(e: ReplicationError) -> Self {
        match e {
            ReplicationError::Invalid(m) => bad_request(m),
            ReplicationError::NotFound(m) => not_found(m),
            ReplicationError::Conflict(m) => ApiError::Conflict(m),
            ReplicationError::Meta(m) => m.into(),
        }
    }
}

fn id_of(what: &str, id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| bad_request(format!("{what} id must be a number, not {id:?}")))
}

pub(crate) fn replication(s: &AdminState) -> Result<&berth_registry::Replication, ApiError> {
    s.replication.as_deref().ok_or_else(|| ApiError::PreconditionFailed("replication is not available".into()))
}

/// Harbor's `ReplicationPolicy`, the endpoints shown as Harbor's `Registry`.
async fn policy_json(s: &AdminState, rec: &berth_registry::ReplicationPolicyRecord, p: &PolicySpec) -> Value {
    let endpoint = |r: &Option<berth_registry::RegistryRef>| {
        let r = r.clone();
        async move {
            match r {
                Some(r) => match s.upstreams.get(r.id).await {
                    Ok(u) => crate::registries::registry_json(&u),
                    Err(_) => json!({"id": r.id}),
                },
                // This registry, as Harbor names itself.
                None => {
                    json!({"id": 0, "name": "Local", "type": "harbor", "url": s.external_url.clone().unwrap_or_default()})
                }
            }
        }
    };
    json!({
        "id": rec.id, "name": rec.name, "description": p.description,
        "src_registry": endpoint(&p.src_registry).await, "dest_registry": endpoint(&p.dest_registry).await,
        "dest_namespace": p.dest_namespace, "filters": p.filters, "trigger": p.trigger,
        "deletion": p.deletion, "override": p.overwrite, "enabled": p.enabled, "speed": p.speed,
        "concurrency": p.concurrency(),
        "creation_time": time(rec.created_at), "update_time": time(rec.updated_at),
    })
}

/// A policy as clients send it: Harbor's shape (`src_registry` with an id of 0 or absent
/// means this registry).
fn spec_of(mut v: Value) -> Result<PolicySpec, ApiError> {
    for end in ["src_registry", "dest_registry"] {
        if v[end].get("id").and_then(Value::as_i64) == Some(0) || v[end].is_null() {
            v[end] = Value::Null;
        } else if let Some(id) = v[end].get("id").cloned() {
            v[end] = json!({ "id": id });
        }
    }
    if let Some(o) = v.as_object_mut() {
        for ignored in ["id", "creation_time", "update_time", "dest_namespace_replace_count", "copy_by_chunk"] {
            o.remove(ignored);
        }
    }
    serde_json::from_value(v).map_err(|e| bad_request(format!("not a replication policy: {e}")))
}

async fn list(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let r = replication(&s)?;
    let name = q.get("name").cloned();
    let mut items = Vec::new();
    for rec in r.store().replication_policies().await? {
        if name.as_deref().is_some_and(|n| !rec.name.contains(n)) {
            continue;
        }
        if let Ok((_, spec)) = r.policy(rec.id).await {
            items.push(policy_json(&s, &rec, &spec).await);
        }
    }
    paginate(items, &q, "/api/v2.0/replication/policies")
}

async fn create(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let spec = spec_of(json_body(body)?)?;
    let id = replication(&s)?.create(&spec, &c.origin()).await?;
    Ok(created(&format!("/api/v2.0/replication/policies/{id}")))
}

async fn show(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    let (rec, spec) = replication(&s)?.policy(id_of("policy", &id)?).await?;
    Ok(Json(policy_json(&s, &rec, &spec).await).into_response())
}

async fn update(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let spec = spec_of(json_body(body)?)?;
    replication(&s)?.update(id_of("policy", &id)?, &spec, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

async fn remove(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    replication(&s)?.delete(id_of("policy", &id)?, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

async fn execution_json(s: &AdminState, e: &ReplicationExecutionRecord) -> Result<Value, ApiError> {
    let tasks = replication(s)?.store().replication_tasks(e.id).await?;
    let count = |st: &str| tasks.iter().filter(|t| t.status == st).count();
    Ok(json!({
        "id": e.id, "policy_id": e.policy_id, "status": e.status, "status_text": e.status_text,
        "trigger": e.trigger, "start_time": time(e.started_at), "end_time": e.ended_at.map(time),
        "total": tasks.len(), "succeed": count("Succeed"), "failed": count("Failed"),
        "in_progress": count("InProgress") + count("Pending"), "stopped": count("Stopped"),
    }))
}

#[derive(Deserialize)]
struct StartReq {
    policy_id: i64,
}

async fn start(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<StartReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let req = json_body(body)?;
    let id = start_run(&s, req.policy_id).await?;
    Ok(created(&format!("/api/v2.0/replication/executions/{id}")))
}

/// Start a manual run of policy `policy`: the execution (its job is queued).
pub(crate) async fn start_run(s: &AdminState, policy: i64) -> Result<i64, ApiError> {
    Ok(replication(s)?.start(policy, "manual").await?)
}

async fn executions(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let policy = match q.get("policy_id") {
        Some(p) => Some(id_of("policy", p)?),
        None => None,
    };
    let (list, _) = replication(&s)?.store().replication_executions(policy, 0, 10_000).await?;
    let mut items = Vec::with_capacity(list.len());
    for e in &list {
        items.push(execution_json(&s, e).await?);
    }
    paginate(items, &q, "/api/v2.0/replication/executions")
}

async fn execution(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    let id = id_of("execution", &id)?;
    let e = replication(&s)?
        .store()
        .replication_execution(id)
        .await?
        .ok_or_else(|| not_found(format!("execution {id} not found")))?;
    Ok(Json(execution_json(&s, &e).await?).into_response())
}

/// Harbor stops an execution with a PUT on it.
async fn stop(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    replication(&s)?.stop(id_of("execution", &id)?).await?;
    Ok(StatusCode::OK.into_response())
}

fn task_json(t: &ReplicationTaskRecord) -> Value {
    json!({
        "id": t.id, "execution_id": t.execution_id, "resource_type": t.resource_type,
        "src_resource": t.src_resource, "dst_resource": t.dst_resource, "operation": t.operation,
        "status": t.status, "start_time": t.started_at.map(time), "end_time": t.ended_at.map(time),
    })
}

async fn tasks(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let id = id_of("execution", &id)?;
    let r = replication(&s)?;
    if r.store().replication_execution(id).await?.is_none() {
        return Err(not_found(format!("execution {id} not found")));
    }
    let items = r.store().replication_tasks(id).await?.iter().map(task_json).collect();
    paginate(items, &q, &format!("/api/v2.0/replication/executions/{id}/tasks"))
}

async fn task_log(State(s): State<AdminState>, c: Caller, Path((id, task)): Path<(String, String)>) -> ApiResult {
    c.sysadmin(&s).await?;
    let (id, task) = (id_of("execution", &id)?, id_of("task", &task)?);
    let t = replication(&s)?
        .store()
        .replication_tasks(id)
        .await?
        .into_iter()
        .find(|t| t.id == task)
        .ok_or_else(|| not_found(format!("task {task} of execution {id} not found")))?;
    Ok(([(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], t.log).into_response())
}
