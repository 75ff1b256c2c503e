//! `ping`, `health`, `systeminfo`, `audit-logs`, `openapi.json` and the job service.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_auth::{AuditQuery, AuditRecord};
use berth_jobs::{JobRecord, JobState};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, not_found, page_of, q_terms, time};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/ping", get(|| async { ([(http::header::CONTENT_TYPE, "text/plain")], "Pong") }))
        .route("/api/v2.0/health", get(health))
        .route("/api/v2.0/systeminfo", get(systeminfo))
        .route("/api/v2.0/openapi.json", get(openapi))
        .route("/api/v2.0/audit-logs", get(audit_logs))
        .route("/api/v2.0/system/purgeaudit/schedule", get(purge_schedule).post(purge_now))
        .route("/api/v2.0/jobservice/queues", get(queues))
        .route("/api/v2.0/jobservice/jobs", get(list_jobs))
        .route("/api/v2.0/jobservice/jobs/{id}", get(get_job).put(act_on_job))
}

/// The OpenAPI document of what Berth implements.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn health(State(s): State<AdminState>) -> Response {
    let db = s.auth.ping().await;
    let (status, db_status) = match &db {
        Ok(_) => ("healthy", json!({"name": "database", "status": "healthy"})),
        Err(e) => ("unhealthy", json!({"name": "database", "status": "unhealthy", "error": e.to_string()})),
    };
    Json(json!({"status": status, "components": [{"name": "core", "status": "healthy"}, db_status]})).into_response()
}

async fn systeminfo(State(s): State<AdminState>) -> Response {
    let cfg = s.auth.config();
    Json(json!({
        "with_notary": false,
        "with_chartmuseum": false,
        "auth_mode": if s.auth.oidc().is_some() { "oidc_auth" } else { "db_auth" },
        "primary_auth_mode": false,
        "project_creation_restriction": if cfg.project_creation_admin_only { "adminonly" } else { "everyone" },
        "self_registration": false,
        "has_ca_root": false,
        "harbor_version": concat!("berth-", env!("CARGO_PKG_VERSION")),
        "registry_url": s.external_url.as_deref().map(|u| u.split("://").nth(1).unwrap_or(u)).unwrap_or(""),
        "external_url": s.external_url.clone().unwrap_or_default(),
        "read_only": false,
        "notification_enable": false,
        "registry_storage_provider_name": "berth",
    }))
    .into_response()
}

pub(crate) fn audit_json(a: &AuditRecord) -> serde_json::Value {
    json!({
        "id": a.id, "username": a.username, "resource": a.resource, "resource_type": a.resource_type,
        "operation": a.operation, "op_time": time(a.op_time),
        // Berth's additions.
        "project": a.project, "client_ip": a.client_ip, "result": a.result, "detail": a.detail,
        "repeats": a.repeats.max(1),
    })
}

/// Audit entries matching the query, as a page (shared with `projects/{p}/logs`).
pub(crate) async fn audit_page(
    s: &AdminState,
    q: &HashMap<String, String>,
    project: Option<&str>,
    path: &str,
) -> ApiResult {
    let mut aq = AuditQuery { project: project.map(str::to_owned), ..Default::default() };
    for (k, v, fuzzy) in q_terms(q) {
        match k.as_str() {
            "username" => aq.username = Some(v),
            "operation" => aq.operation = Some(v),
            "resource_type" => aq.resource_type = Some(v),
            "resource" if fuzzy => aq.resource_prefix = Some(v),
            "resource" => aq.resource_prefix = Some(v),
            "op_time" => {
                // [from~to] with RFC 3339 or "YYYY-MM-DD hh:mm:ss" ends is not parsed here; use from/to (ms).
                return Err(bad_request("op_time ranges are not supported; use from and to (Unix ms)"));
            }
            other => return Err(bad_request(format!("unknown query key {other:?} in q"))),
        }
    }
    for (k, slot) in [("username", &mut aq.username), ("operation", &mut aq.operation)] {
        if let Some(v) = q.get(k) {
            *slot = Some(v.clone());
        }
    }
    let ms = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k)
            .map(|v| v.parse::<i64>().map_err(|_| bad_request(format!("{k} must be Unix milliseconds"))))
            .transpose()
    };
    aq.from = ms("from")?;
    aq.to = ms("to")?;
    let (page, size) = page_of(q)?;
    let (rows, total) = s.auth.audit_log(&aq, ((page - 1) * size) as i64, size as i64).await?;
    let body: Vec<_> = rows.iter().map(audit_json).collect();
    Ok(crate::with_page_headers(Json(body).into_response(), total as usize, page, size, q, path))
}

async fn audit_logs(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    audit_page(&s, &q, None, "/api/v2.0/audit-logs").await
}

fn job_json(j: &JobRecord) -> serde_json::Value {
    json!({
        "id": j.id, "job_type": j.kind, "status": j.state.as_str(), "attempts": j.attempts,
        "max_attempts": j.max_attempts, "last_error": j.last_error, "worker": j.lease_owner,
        "dedup_key": j.dedup_key, "creation_time": j.created_at, "update_time": j.updated_at,
        "finish_time": j.finished_at,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    kind: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_jobs(State(s): State<AdminState>, c: Caller, Query(q): Query<ListQuery>) -> ApiResult {
    c.sysadmin(&s).await?;
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(v) => Some(v.parse::<JobState>().map_err(|_| {
            bad_request(format!("unknown state {v:?}: use queued, running, succeeded, failed or cancelled"))
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let jobs = s.jobs.list(q.kind.as_deref().filter(|k| !k.is_empty()), state, limit).await?;
    let body: Vec<_> = jobs.iter().map(job_json).collect();
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert("x-total-count", http::HeaderValue::from(jobs.len()));
    Ok(resp)
}

async fn get_job(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    match s.jobs.get(&id).await? {
        Some(j) => Ok(Json(job_json(&j)).into_response()),
        None => Err(not_found(format!("no job {id:?}"))),
    }
}

#[derive(Deserialize)]
struct JobAction {
    action: String,
}

async fn act_on_job(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<JobAction>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let a = crate::json_body(body)?;
    if a.action == "retry" {
        // Berth: a failed or stopped job again, as a new job (its id in the answer).
        return match s.jobs.retry(&id).await? {
            Some(new) => Ok(Json(json!({ "id": new })).into_response()),
            None => match s.jobs.get(&id).await? {
                Some(j) => Err(ApiError::Conflict(format!(
                    "job {id} is {}: only failed or stopped jobs are retried",
                    j.state.as_str()
                ))),
                None => Err(not_found(format!("no job {id:?}"))),
            },
        };
    }
    if a.action != "stop" {
        return Err(bad_request(format!("unknown action {:?}: use \"stop\" or \"retry\"", a.action)));
    }
    if s.jobs.stop(&id, &c.origin()).await? {
        return Ok(StatusCode::OK.into_response());
    }
    match s.jobs.get(&id).await? {
        Some(j) => Err(ApiError::Conflict(format!("job {id} is already {}", j.state.as_str()))),
        None => Err(not_found(format!("no job {id:?}"))),
    }
}

async fn queues(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.sysadmin(&s).await?;
    let queued = s.jobs.list(None, Some(JobState::Queued), 10_000).await?;
    let now = berth_auth::now_ms();
    let mut by_kind: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
    for j in &queued {
        let e = by_kind.entry(j.kind.as_str()).or_insert((0, now));
        e.0 += 1;
        e.1 = e.1.min(j.created_at);
    }
    let body: Vec<_> = by_kind
        .iter()
        .map(|(k, (count, oldest))| json!({ "job_type": k, "count": count, "latency": (now - oldest).max(0) / 1000, "paused": false }))
        .collect();
    Ok(Json(body).into_response())
}

/// The operations audit entries record, as `include_operations` names them.
const AUDIT_OPERATIONS: &[&str] = &["push", "pull", "create", "update", "delete", "login", "scan", "stop", "purge"];

#[derive(Deserialize)]
struct PurgeReq {
    schedule: Option<serde_json::Value>,
    #[serde(default)]
    parameters: PurgeParams,
}

#[derive(Deserialize, Default)]
struct PurgeParams {
    audit_retention_hour: Option<i64>,
    include_operations: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// Harbor's purge of the audit log, run at once (`"schedule": {"type": "Manual"}`):
/// entries older than `audit_retention_hour` hours, of `include_operations` (all when
/// omitted). Automatic purging follows `[audit]` in the configuration.
async fn purge_now(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<PurgeReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let req = crate::json_body(body)?;
    let kind = req.schedule.as_ref().and_then(|v| v["type"].as_str()).unwrap_or("Manual");
    if kind != "Manual" {
        return Err(bad_request(format!(
            "schedule type {kind:?}: Berth purges on demand (\"Manual\"); automatic purging follows [audit] retention \
             and max_entries in its configuration"
        )));
    }
    let hours = req.parameters.audit_retention_hour.unwrap_or(0);
    if hours < 0 {
        return Err(bad_request("parameters.audit_retention_hour must be 0 or more"));
    }
    let operations = match req.parameters.include_operations.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
        None => None,
        Some(list) => {
            let ops: Vec<String> = list.split(',').map(|o| o.trim().to_ascii_lowercase()).collect();
            if let Some(bad) = ops.iter().find(|o| !AUDIT_OPERATIONS.contains(&o.as_str())) {
                return Err(bad_request(format!(
                    "parameters.include_operations: {bad:?} is not an operation; use {}",
                    AUDIT_OPERATIONS.join(", ")
                )));
            }
            Some(ops)
        }
    };
    let purge = berth_auth::AuditPurge {
        before: berth_auth::now_ms() - hours.saturating_mul(3_600_000),
        operations,
        keep_at_most: None,
        dry_run: req.parameters.dry_run,
    };
    let n = s.auth.purge_audit(&purge, &c.origin()).await?;
    let mut r = (StatusCode::CREATED, Json(json!({"purged": n, "dry_run": purge.dry_run}))).into_response();
    r.headers_mut()
        .insert(http::header::LOCATION, http::HeaderValue::from_static("/api/v2.0/system/purgeaudit/schedule"));
    Ok(r)
}

async fn purge_schedule(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.sysadmin(&s).await?;
    Ok(Json(json!({
        "schedule": {"type": "Hourly"},
        "parameters": {"audit_retention_hour": s.audit_retention.as_secs() / 3600, "max_entries": s.audit_max_entries,
                       "include_operations": AUDIT_OPERATIONS.join(",")},
    }))
    .into_response())
}
