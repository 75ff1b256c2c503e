//! The management API under `/api/v2.0`, in Harbor's paths and JSON shapes where Berth
//! implements the same thing. Today: the job service.
//!
//! - `GET  /api/v2.0/jobservice/queues` — per job kind: `job_type`, `count` (queued),
//!   `latency` (seconds the oldest queued job has waited), `paused` (always false).
//! - `GET  /api/v2.0/jobservice/jobs?kind=&state=&limit=` — jobs, newest first.
//! - `GET  /api/v2.0/jobservice/jobs/{id}` — one job.
//! - `PUT  /api/v2.0/jobservice/jobs/{id}` with `{"action": "stop"}` — cancel it.
//!
//! **Authorization:** until users and roles exist (issue 4), every route requires the
//! operator token (`admin_token`) as `Authorization: Bearer …`, compared in constant time
//! over SHA-256 digests; with no token configured the API answers 401. No route is open.
//!
//! **Boundary:** only this crate knows the Harbor JSON shapes; it reads `berth_meta` types
//! and converts them here.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use berth_meta::{JobQueue, JobRecord, JobState};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// State of the management API.
#[derive(Clone)]
pub struct AdminState {
    /// The job queue.
    pub jobs: Arc<dyn JobQueue>,
    /// SHA-256 of the operator token, if one is configured (the token itself is not kept).
    token_sha256: Option<[u8; 32]>,
}

impl AdminState {
    /// State over a job queue, with an optional operator token.
    pub fn new(jobs: Arc<dyn JobQueue>, admin_token: Option<&str>) -> Self {
        AdminState {
            jobs,
            token_sha256: admin_token.filter(|t| !t.is_empty()).map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }
}

/// An API error in Harbor's envelope.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "errors": [{ "code": self.1, "message": self.2 }] }))).into_response()
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.token_sha256 else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the management API is disabled: set admin_token (BERTH_ADMIN_TOKEN)".into(),
        ));
    };
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| -> [u8; 32] { Sha256::digest(t.trim().as_bytes()).into() });
    match given {
        Some(g) if constant_time_eq(&g, expected) => Ok(()),
        _ => Err(ApiError(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "a valid operator token is required".into())),
    }
}

fn job_json(j: &JobRecord) -> serde_json::Value {
    json!({
        "id": j.id, "job_type": j.kind, "status": j.state.as_str(), "attempts": j.attempts,
        "max_attempts": j.max_attempts, "last_error": j.last_error, "worker": j.lease_owner,
        "dedup_key": j.dedup_key, "creation_time": j.created_at, "update_time": j.updated_at,
        "finish_time": j.finished_at,
    })
}

fn db_error(e: berth_meta::MetaError) -> ApiError {
    tracing::error!(error = %e, "management API: metadata store failed");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "internal error; see the server log".into())
}

#[derive(Deserialize)]
struct ListQuery {
    kind: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_jobs(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(v) => Some(v.parse::<JobState>().map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("unknown state {v:?}: use queued, running, succeeded, failed or cancelled"),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let jobs = s.jobs.jobs(q.kind.as_deref().filter(|k| !k.is_empty()), state, limit).await.map_err(db_error)?;
    let body: Vec<_> = jobs.iter().map(job_json).collect();
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert("x-total-count", http::HeaderValue::from(jobs.len()));
    Ok(resp)
}

async fn get_job(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    match s.jobs.job(&id).await.map_err(db_error)? {
        Some(j) => Ok(Json(job_json(&j)).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, "NOT_FOUND", format!("no job {id:?}"))),
    }
}

#[derive(Deserialize)]
struct JobAction {
    action: String,
}

async fn act_on_job(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<JobAction>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let Json(a) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.body_text()))?;
    if a.action != "stop" {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("unknown action {:?}: use \"stop\"", a.action),
        ));
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    if s.jobs.cancel(&id, now).await.map_err(db_error)? {
        return Ok(StatusCode::OK.into_response());
    }
    match s.jobs.job(&id).await.map_err(db_error)? {
        Some(j) => Err(ApiError(StatusCode::CONFLICT, "CONFLICT", format!("job {id} is already {}", j.state.as_str()))),
        None => Err(ApiError(StatusCode::NOT_FOUND, "NOT_FOUND", format!("no job {id:?}"))),
    }
}

async fn queues(State(s): State<AdminState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let queued = s.jobs.jobs(None, Some(JobState::Queued), 10_000).await.map_err(db_error)?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
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

/// The `/api/v2.0` routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/api/v2.0/jobservice/queues", axum::routing::get(queues))
        .route("/api/v2.0/jobservice/jobs", axum::routing::get(list_jobs))
        .route("/api/v2.0/jobservice/jobs/{id}", axum::routing::get(get_job).put(act_on_job))
        .with_state(state)
}
