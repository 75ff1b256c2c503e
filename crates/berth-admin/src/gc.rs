//! Harbor's garbage-collection API (`/api/v2.0/system/gc`): start a run (`POST
//! …/schedule` with type `Manual`), set the schedule, list runs, read one and its log, stop
//! one. System administrators only.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use berth_jobs::GcRunRecord;
use berth_jobs::{GcParameters, GcRequestError, Schedule};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, not_found, page_of, time};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/system/gc", get(list_runs))
        .route("/api/v2.0/system/gc/schedule", get(get_schedule).post(post_schedule).put(put_schedule))
        .route("/api/v2.0/system/gc/{id}", get(get_run).put(stop_run))
        .route("/api/v2.0/system/gc/{id}/log", get(run_log))
        .route("/api/v2.0/system/gc/pause", axum::routing::post(pause).delete(resume))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    /// How long, in seconds (at most a week).
    seconds: u64,
}

/// Berth: hold off blob deletion (for a PostgreSQL + S3 backup: dump, then copy the bucket).
async fn pause(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<PauseBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let req = crate::json_body(body)?;
    if req.seconds == 0 || req.seconds > 7 * 24 * 3600 {
        return Err(bad_request("seconds must be between 1 and 604800 (a week)"));
    }
    let until = berth_auth::now_ms() + (req.seconds as i64) * 1000;
    if !s.gc.pause(until).await? {
        return Err(ApiError::Conflict("a running berth backup holds off garbage collection already".into()));
    }
    Ok(Json(json!({"paused_until": time(until)})).into_response())
}

async fn resume(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.sysadmin(&s).await?;
    s.gc.resume().await?;
    Ok(StatusCode::OK.into_response())
}

impl From<GcRequestError> for ApiError {
    fn from(e: GcRequestError) -> Self {
        match e {
            GcRequestError::Invalid(m) => ApiError::BadRequest(m),
            e @ GcRequestError::Busy(_) => ApiError::Conflict(e.to_string()),
            e @ GcRequestError::NotFound(_) => ApiError::NotFound(e.to_string()),
            GcRequestError::Meta(m) => m.into(),
        }
    }
}

/// A run in Harbor's `GCHistory` shape, plus Berth's `result` (what was freed).
fn run_json(r: &GcRunRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "job_name": "GARBAGE_COLLECTION",
        "job_kind": r.kind.to_ascii_uppercase(),
        "job_parameters": r.parameters,
        "job_status": r.status,
        "schedule": {"type": r.kind},
        "deleted": false,
        "creation_time": time(r.created_at),
        "update_time": time(r.updated_at),
        "result": r.result.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
    })
}

fn run_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().map_err(|_| bad_request(format!("gc_id must be a number, not {id:?}")))
}

async fn list_runs(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let (page, size) = page_of(&q)?;
    let (runs, total) = s.gc.runs(((page - 1) * size) as i64, size as i64).await?;
    let body: Vec<_> = runs.iter().map(run_json).collect();
    Ok(crate::with_page_headers(Json(body).into_response(), total as usize, page, size, &q, "/api/v2.0/system/gc"))
}

async fn get_run(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    let id = run_id(&id)?;
    match s.gc.run(id).await? {
        Some(r) => Ok(Json(run_json(&r)).into_response()),
        None => Err(not_found(format!("no garbage collection run {id}"))),
    }
}

async fn run_log(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    let id = run_id(&id)?;
    match s.gc.run(id).await? {
        Some(r) => Ok(([(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], r.log).into_response()),
        None => Err(not_found(format!("no garbage collection run {id}"))),
    }
}

async fn stop_run(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    s.gc.stop(run_id(&id)?).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    schedule: Option<ScheduleObj>,
    #[serde(default)]
    parameters: Option<GcParameters>,
}

#[derive(Deserialize)]
struct ScheduleObj {
    #[serde(rename = "type")]
    kind: Option<String>,
    cron: Option<String>,
    // Harbor's responses carry it; clients may send it back.
    #[serde(default, rename = "next_scheduled_time")]
    _next: Option<serde_json::Value>,
}

async fn get_schedule(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.sysadmin(&s).await?;
    let body = match s.gc.schedule().await? {
        Some(r) => json!({
            "id": 0,
            "job_name": "GARBAGE_COLLECTION",
            "job_kind": "SCHEDULE",
            "job_parameters": r.parameters,
            "schedule": {
                "type": r.kind,
                "cron": r.cron.unwrap_or_default(),
                "next_scheduled_time": r.next_at.map(time),
            },
            "creation_time": time(r.created_at),
            "update_time": time(r.updated_at),
        }),
        None => json!({
            "job_name": "GARBAGE_COLLECTION",
            "job_parameters": serde_json::to_string(&GcParameters::default()).unwrap_or_default(),
            "schedule": {"type": "None", "cron": ""},
        }),
    };
    Ok(Json(body).into_response())
}

/// `Manual` starts a run now (`201` + `Location` of the run); any other type sets the schedule.
async fn post_schedule(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<ScheduleBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let (kind, cron, params) = schedule_request(body, "Manual")?;
    if kind == "Manual" {
        let id = s.gc.start("Manual", &params).await?;
        let mut r = (StatusCode::CREATED, Json(json!({"id": id}))).into_response();
        let loc = http::HeaderValue::from_str(&format!("/api/v2.0/system/gc/{id}"))
            .map_err(|e| ApiError::internal("the location header", e))?;
        r.headers_mut().insert(http::header::LOCATION, loc);
        return Ok(r);
    }
    set_schedule(&s, &kind, cron.as_deref(), &params).await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn put_schedule(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<ScheduleBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let (kind, cron, params) = schedule_request(body, "Daily")?;
    if kind == "Manual" {
        return Err(bad_request("a Manual run is started with POST /api/v2.0/system/gc/schedule"));
    }
    set_schedule(&s, &kind, cron.as_deref(), &params).await?;
    Ok(StatusCode::OK.into_response())
}

/// A schedule request's type, cron and parameters (`example`: a type for the error message).
fn schedule_request(
    body: Result<Json<ScheduleBody>, axum::extract::rejection::JsonRejection>,
    example: &str,
) -> Result<(String, Option<String>, GcParameters), ApiError> {
    let req = crate::json_body(body)?;
    let sched = req
        .schedule
        .ok_or_else(|| bad_request(format!("schedule is required: {{\"schedule\": {{\"type\": \"{example}\"}}}}")))?;
    Ok((sched.kind.unwrap_or_default(), sched.cron, req.parameters.unwrap_or_default()))
}

async fn set_schedule(s: &AdminState, kind: &str, cron: Option<&str>, params: &GcParameters) -> Result<(), ApiError> {
    let schedule = Schedule::parse(kind, cron).map_err(ApiError::BadRequest)?;
    s.gc.set_schedule(&schedule, params).await?;
    Ok(())
}
