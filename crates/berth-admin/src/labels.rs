//! Harbor's labels (`/api/v2.0/labels`) and their attachment to artifacts
//! (`…/artifacts/{reference}/labels`). Global labels (`scope: g`) are managed by system
//! administrators and seen by every signed-in user; project labels (`scope: p`) by the
//! project's administrators and seen by its members. Tag retention selects by them.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use berth_auth::Target;
use berth_auth::policy::EcrAction;
use berth_auth::rbac::Perm;
use berth_registry::{LabelRecord, LabelStore};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::lookup::{find_artifact, repo_of};
use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, created, json_body, not_found, paginate, time};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/labels", get(list).post(create))
        .route("/api/v2.0/labels/{id}", get(show).put(update).delete(remove))
        .route("/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/labels", post(attach))
        .route("/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/labels/{id}", delete(detach))
}

/// A label in Harbor's shape.
pub(crate) async fn label_json(s: &AdminState, l: &LabelRecord) -> Result<Value, ApiError> {
    let project_id = if l.scope == "p" { s.auth.project(&l.project).await?.map_or(0, |p| p.id) } else { 0 };
    Ok(json!({
        "id": l.id, "name": l.name, "description": l.description, "color": l.color, "scope": l.scope,
        "project_id": project_id, "creation_time": time(l.created_at), "update_time": time(l.updated_at),
        "deleted": false,
    }))
}

fn store(s: &AdminState) -> &dyn LabelStore {
    s.registry.labels()
}

/// May the caller see (`manage` false) or change (`manage` true) label `l`?
async fn allowed(s: &AdminState, c: &Caller, scope: &str, project: &str, manage: bool) -> Result<(), ApiError> {
    match scope {
        "g" if manage => c.sysadmin(s).await,
        "g" => c.authenticated(),
        _ => {
            let p = s.auth.project(project).await?.ok_or_else(|| not_found(format!("project {project} not found")))?;
            c.require(s, Target::Project(&p), if manage { Perm::UpdateProject } else { Perm::Read }).await
        }
    }
}

async fn found(s: &AdminState, c: &Caller, id: &str, manage: bool) -> Result<LabelRecord, ApiError> {
    let id: i64 = id.parse().map_err(|_| bad_request(format!("label id must be a number, not {id:?}")))?;
    let l = store(s).label(id).await?.ok_or_else(|| not_found(format!("label {id} not found")))?;
    allowed(s, c, &l.scope, &l.project, manage).await?;
    Ok(l)
}

async fn list(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let scope = q.get("scope").map(String::as_str).unwrap_or("g");
    let project = match scope {
        "g" => String::new(),
        "p" => {
            let id = q
                .get("project_id")
                .and_then(|i| i.parse::<i64>().ok())
                .ok_or_else(|| bad_request("scope p needs project_id (the project whose labels to list)"))?;
            s.auth.project_by_id(id).await?.ok_or_else(|| not_found(format!("project {id} not found")))?.name
        }
        other => return Err(bad_request(format!("scope {other:?}: use g (global) or p (project)"))),
    };
    allowed(&s, &c, scope, &project, false).await?;
    let name = q.get("name").cloned().unwrap_or_default();
    let mut out = Vec::new();
    for l in store(&s).labels(scope, &project).await?.iter().filter(|l| l.name.contains(name.as_str())) {
        out.push(label_json(&s, l).await?);
    }
    paginate(out, &q, "/api/v2.0/labels")
}

#[derive(Deserialize)]
struct LabelBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    color: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    project_id: Option<i64>,
}

fn check_fields(name: &str, description: &str, color: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(|c| c.is_control() || c == ',') {
        return Err(bad_request(format!(
            "label name {name:?}: 1 to 128 characters, no commas (retention rules list labels with commas)"
        )));
    }
    if description.chars().count() > 1024 {
        return Err(bad_request("a label's description has at most 1,024 characters"));
    }
    if color.chars().count() > 32 {
        return Err(bad_request(format!("color {color:?}: use a CSS colour such as #0065AB")));
    }
    Ok(())
}

async fn create(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<LabelBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let b = json_body(body)?;
    let scope = b.scope.unwrap_or_else(|| "g".into());
    let project = match (scope.as_str(), b.project_id) {
        ("g", _) => String::new(),
        ("p", Some(id)) => {
            s.auth.project_by_id(id).await?.ok_or_else(|| not_found(format!("project {id} not found")))?.name
        }
        ("p", None) => return Err(bad_request("a project label (scope p) needs project_id")),
        (other, _) => return Err(bad_request(format!("scope {other:?}: use g (global) or p (project)"))),
    };
    allowed(&s, &c, &scope, &project, true).await?;
    let name = b.name.unwrap_or_default();
    let (description, color) = (b.description.unwrap_or_default(), b.color.unwrap_or_default());
    check_fields(&name, &description, &color)?;
    let now = berth_registry::now_ms();
    let l = LabelRecord { id: 0, name, description, color, scope, project, created_at: now, updated_at: now };
    let id = store(&s)
        .create_label(&l)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("a label named {:?} already exists here", l.name)))?;
    Ok(created(&format!("/api/v2.0/labels/{id}")))
}

async fn show(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    let l = found(&s, &c, &id, false).await?;
    Ok(Json(label_json(&s, &l).await?).into_response())
}

async fn update(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<LabelBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let mut l = found(&s, &c, &id, true).await?;
    let b = json_body(body)?;
    if b.scope.as_deref().is_some_and(|x| x != l.scope) {
        return Err(bad_request("a label's scope cannot change; create a new label"));
    }
    if let Some(n) = b.name {
        l.name = n;
    }
    if let Some(d) = b.description {
        l.description = d;
    }
    if let Some(col) = b.color {
        l.color = col;
    }
    check_fields(&l.name, &l.description, &l.color)?;
    l.updated_at = berth_registry::now_ms();
    store(&s).update_label(&l).await?;
    Ok(StatusCode::OK.into_response())
}

async fn remove(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    let l = found(&s, &c, &id, true).await?;
    store(&s).delete_label(l.id).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
struct AttachBody {
    id: i64,
}

async fn attach(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference)): Path<(String, String, String)>,
    body: Result<Json<AttachBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let (project, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Push, EcrAction::PutImage).await?;
    let b = json_body(body)?;
    let l = store(&s).label(b.id).await?.ok_or_else(|| not_found(format!("label {} not found", b.id)))?;
    if l.scope == "p" && l.project != project.name {
        return Err(bad_request(format!(
            "label {} is neither a global label nor one of project {}'s",
            l.id, project.name
        )));
    }
    let a = find_artifact(&s, &name, &reference).await?;
    let digest = a.record.digest.to_string();
    let existing = store(&s).repo_labels(name.as_str()).await?;
    if existing.get(&digest).is_some_and(|ls| ls.iter().any(|x| x.id == l.id)) {
        return Err(ApiError::Conflict(format!("artifact {name}@{digest} already has label {}", l.name)));
    }
    if !store(&s).attach_label(name.as_str(), &digest, l.id, berth_registry::now_ms()).await? {
        return Err(not_found(format!("artifact {name}:{reference} not found")));
    }
    Ok(StatusCode::OK.into_response())
}

async fn detach(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference, id)): Path<(String, String, String, String)>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Push, EcrAction::PutImage).await?;
    let id: i64 = id.parse().map_err(|_| bad_request(format!("label id must be a number, not {id:?}")))?;
    let a = find_artifact(&s, &name, &reference).await?;
    if store(&s).detach_label(name.as_str(), &a.record.digest.to_string(), id).await? {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(not_found(format!("artifact {name}:{reference} has no label {id}")))
    }
}
