//! Robot accounts (`/robots`): project-level (`robot$<project>+<name>`) and system-level
//! (`robot$<name>`). The secret is returned once, at creation and at refresh.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use berth_auth::rbac::{Perm, parse_permissions};
use berth_auth::secret;
use berth_auth::{Denied, RobotRecord, Target};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    AdminState, ApiError, ApiResult, Caller, bad_request, forbidden, hashing, json_body, not_found, paginate, q_terms,
    time,
};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/robots", get(list).post(create))
        .route("/api/v2.0/robots/{id}", get(show).put(update).patch(refresh).delete(remove))
        .route("/api/v2.0/robots/{id}/login_locks", axum::routing::delete(unlock))
        .route("/api/v2.0/robots/{id}/access-keys", get(list_keys).post(create_key))
        .route("/api/v2.0/robots/{id}/federation", get(get_federation).put(put_federation).delete(delete_federation))
        .route("/api/v2.0/robots/{id}/access-keys/{key}", axum::routing::put(update_key).delete(delete_key))
}

const DAY_MS: i64 = 86_400_000;

fn expires_at(created_ms: i64, duration_days: i64) -> i64 {
    if duration_days < 0 { -1 } else { created_ms + duration_days * DAY_MS }
}

fn robot_json(r: &RobotRecord) -> Value {
    let permissions: Value = serde_json::from_str(&r.permissions).unwrap_or_else(|_| json!([]));
    json!({
        "id": r.id, "name": r.name, "description": r.description,
        "level": if r.project_id.is_some() { "project" } else { "system" },
        "duration": r.duration, "editable": true, "disable": r.disabled,
        "expires_at": if r.expires_at < 0 { -1 } else { r.expires_at / 1000 },
        "permissions": permissions, "creation_time": time(r.created_at), "update_time": time(r.updated_at),
    })
}

/// May the caller manage (`write`) or see this robot? A project robot is decided in its
/// project, a system robot on the system.
async fn allowed(s: &AdminState, c: &Caller, r: &RobotRecord, write: bool) -> Result<(), ApiError> {
    c.authenticated()?;
    let need = if write { Perm::ManageRobots } else { Perm::ReadRobots };
    let project = match r.project_id {
        Some(pid) => s.auth.project_by_id(pid).await?,
        None => None,
    };
    let decision = match &project {
        Some(project) => s.auth.decide(&c.p, Target::Project(project), need).await,
        None => s.auth.decide(&c.p, Target::System, Perm::Administer).await,
    };
    match decision {
        Ok(()) => Ok(()),
        Err(Denied::Forbidden(_) | Denied::Hidden { .. }) => Err(forbidden(format!(
            "{} may not {} robot account {}",
            c.p.name(),
            if write { "manage" } else { "see" },
            r.name
        ))),
        Err(other) => Err(other.into()),
    }
}

async fn list(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.authenticated()?;
    let mut level = None;
    let mut project_id = q.get("project_id").and_then(|v| v.parse::<i64>().ok());
    let mut name = None;
    for (k, v, _) in q_terms(&q) {
        match k.as_str() {
            "Level" | "level" => level = Some(v),
            "ProjectID" | "project_id" => project_id = v.parse().ok(),
            "name" => name = Some(v),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for r in s.auth.robots().await? {
        let lvl = if r.project_id.is_some() { "project" } else { "system" };
        if level.as_deref().is_some_and(|l| l != lvl)
            || project_id.is_some_and(|p| r.project_id != Some(p))
            || name.as_deref().is_some_and(|n| !r.name.contains(n))
            || allowed(&s, &c, &r, false).await.is_err()
        {
            continue;
        }
        out.push(robot_json(&r));
    }
    paginate(out, &q, "/api/v2.0/robots")
}

#[derive(Deserialize)]
pub(crate) struct RobotCreate {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    pub(crate) level: String,
    #[serde(default)]
    pub(crate) disable: bool,
    pub(crate) duration: Option<i64>,
    pub(crate) permissions: Value,
    #[allow(dead_code)]
    pub(crate) secret: Option<String>,
}

fn valid_robot_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(bad_request(format!(
            "name {name:?} is invalid: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit"
        )))
    }
}

fn duration_of(d: Option<i64>) -> Result<i64, ApiError> {
    match d.unwrap_or(-1) {
        -1 => Ok(-1),
        n if n > 0 && n <= 365 * 100 => Ok(n),
        n => Err(bad_request(format!("duration {n}: use -1 (never expires) or a number of days from 1"))),
    }
}

async fn create(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<RobotCreate>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.authenticated()?;
    let req = json_body(body)?;
    let made = create_robot(&s, &c.p, &c.origin(), req).await?;
    let mut r = (
        StatusCode::CREATED,
        Json(json!({
            "id": made.id, "name": made.name, "secret": made.secret, "creation_time": time(made.created_at),
            "expires_at": if made.expires_at < 0 { -1 } else { made.expires_at / 1000 },
        })),
    )
        .into_response();
    if let Ok(v) = http::HeaderValue::from_str(&format!("/api/v2.0/robots/{}", made.id)) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    Ok(r)
}

/// A robot account just created, with its secret (shown this once).
pub(crate) struct CreatedRobot {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) secret: String,
    pub(crate) created_at: i64,
    /// Unix ms, or -1 for never.
    pub(crate) expires_at: i64,
}

/// Create a robot account as `who` may (the API's and the portal's one path).
pub(crate) async fn create_robot(
    s: &AdminState,
    who: &berth_auth::Principal,
    origin: &berth_auth::Origin,
    req: RobotCreate,
) -> Result<CreatedRobot, ApiError> {
    valid_robot_name(&req.name)?;
    let duration = duration_of(req.duration)?;
    let (full_name, project_id, perms) = match req.level.as_str() {
        "project" => {
            // Harbor's rule: exactly one project permission, naming the robot's project.
            let ns = req
                .permissions
                .as_array()
                .filter(|a| a.len() == 1)
                .and_then(|a| a[0]["namespace"].as_str())
                .ok_or_else(|| bad_request("permissions: a project robot has exactly one permission, of its project"))?
                .to_owned();
            let project = s.auth.project(&ns).await?.ok_or_else(|| not_found(format!("project {ns} not found")))?;
            match s.auth.decide(who, Target::Project(&project), Perm::ManageRobots).await {
                Ok(()) => {}
                Err(Denied::Forbidden(_) | Denied::Hidden { .. }) => {
                    return Err(forbidden(format!("{} may not create robot accounts in project {ns}", who.name())));
                }
                Err(other) => return Err(other.into()),
            }
            let perms = parse_permissions(&req.permissions, Some(&ns)).map_err(|e| bad_request(e.to_string()))?;
            (format!("robot${ns}+{}", req.name), Some(project.id), perms)
        }
        "system" => {
            s.auth.decide(who, Target::System, Perm::Administer).await?;
            let perms = parse_permissions(&req.permissions, None).map_err(|e| bad_request(e.to_string()))?;
            (format!("robot${}", req.name), None, perms)
        }
        other => return Err(bad_request(format!("level {other:?}: use \"project\" or \"system\""))),
    };
    let value = secret::new_secret();
    let now = berth_auth::now_ms();
    let rec = RobotRecord {
        id: 0,
        name: full_name.clone(),
        description: req.description,
        project_id,
        secret_hash: secret::hash_secret(&value),
        disabled: req.disable,
        duration,
        expires_at: expires_at(now, duration),
        permissions: serde_json::to_string(&perms).map_err(|e| bad_request(e.to_string()))?,
        creator: who.name().to_owned(),
        credentials_at: 0,
        created_at: now,
        updated_at: now,
    };
    let id = s.auth.create_robot(&rec, origin).await?;
    Ok(CreatedRobot { id, name: full_name, secret: value, created_at: now, expires_at: rec.expires_at })
}

async fn load(s: &AdminState, id: i64) -> Result<RobotRecord, ApiError> {
    s.auth.robot(id).await?.ok_or_else(|| not_found(format!("robot account {id} not found")))
}

async fn show(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, false).await?;
    Ok(Json(robot_json(&r)).into_response())
}

#[derive(Deserialize)]
struct RobotUpdate {
    description: Option<String>,
    disable: Option<bool>,
    duration: Option<i64>,
    permissions: Option<Value>,
    name: Option<String>,
}

async fn update(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<i64>,
    body: Result<Json<RobotUpdate>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let mut r = load(&s, id).await?;
    allowed(&s, &c, &r, true).await?;
    let req = json_body(body)?;
    if req
        .name
        .as_deref()
        .is_some_and(|n| n != r.name && !r.name.ends_with(&format!("+{n}")) && r.name != format!("robot${n}"))
    {
        return Err(bad_request("robot accounts cannot be renamed"));
    }
    if let Some(d) = req.description {
        r.description = d;
    }
    if let Some(d) = req.disable {
        r.disabled = d;
    }
    if let Some(d) = req.duration {
        r.duration = duration_of(Some(d))?;
        r.expires_at = expires_at(r.created_at, r.duration);
    }
    if let Some(p) = req.permissions {
        let project = match r.project_id {
            Some(pid) => s.auth.project_by_id(pid).await?.map(|p| p.name),
            None => None,
        };
        let perms = parse_permissions(&p, project.as_deref()).map_err(|e| bad_request(e.to_string()))?;
        r.permissions = serde_json::to_string(&perms).map_err(|e| bad_request(e.to_string()))?;
    }
    r.updated_at = berth_auth::now_ms();
    s.auth.update_robot(&r, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize, Default)]
struct RobotSec {
    secret: Option<String>,
}

async fn refresh(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>, body: String) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, true).await?;
    let req: RobotSec = if body.trim().is_empty() {
        RobotSec::default()
    } else {
        serde_json::from_str(&body)
            .map_err(|e| bad_request(format!("expected {{\"secret\": \"…\"}} or nothing: {e}")))?
    };
    let (value, generated) = match req.secret.filter(|x| !x.is_empty()) {
        Some(v) => {
            secret::check_password_strength(&v).map_err(|m| bad_request(m.replace("password", "secret")))?;
            (v, false)
        }
        None => (secret::new_secret(), true),
    };
    let v = value.clone();
    let stored = hashing(move || secret::hash_chosen_or_generated(&v, generated)).await?;
    s.auth.set_robot_secret(id, &stored, &c.origin()).await?;
    Ok(Json(json!({"secret": value})).into_response())
}

async fn remove(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, true).await?;
    s.auth.delete_robot(id, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

/// Lift a robot's login locks (every client address, every replica).
async fn unlock(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, true).await?;
    let lifted = s.auth.unlock(&r.name, &c.origin()).await?;
    Ok(Json(json!({"name": r.name, "locks_lifted_here": lifted})).into_response())
}

/// A robot's access keys (for the ECR API), for who may see the robot.
async fn list_keys(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, false).await?;
    crate::ecr::keys_of(&s, &r.name).await
}

/// A new access key of a robot, for who may manage it: the secret is in this answer only.
async fn create_key(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, true).await?;
    crate::ecr::create_key_for(&s, &r.name, &c.origin()).await
}

async fn update_key(
    State(s): State<AdminState>,
    c: Caller,
    Path((id, key)): Path<(i64, String)>,
    body: Result<Json<crate::ecr::KeyUpdate>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, true).await?;
    crate::ecr::update_key_of(&s, &r.name, &key, body, &c.origin()).await
}

async fn delete_key(State(s): State<AdminState>, c: Caller, Path((id, key)): Path<(i64, String)>) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, true).await?;
    s.auth.delete_access_key(&r.name, &key, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

/// The identity tokens a robot accepts instead of its secret (workload identity federation).
async fn get_federation(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, false).await?;
    let fed = s.auth.robot_federation(r.id).await?.unwrap_or_default();
    Ok(Json(fed).into_response())
}

/// Replace a robot's trust rules, for who may manage it.
async fn put_federation(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<i64>,
    body: Result<Json<berth_auth::federation::Federation>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, true).await?;
    let fed = crate::json_body(body)?;
    fed.validate().map_err(bad_request)?;
    s.auth.set_robot_federation(r.id, Some(&fed), &c.origin()).await?;
    Ok(Json(fed).into_response())
}

async fn delete_federation(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    let r = load(&s, id).await?;
    allowed(&s, &c, &r, true).await?;
    s.auth.set_robot_federation(r.id, None, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}
