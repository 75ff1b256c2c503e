//! Harbor's discovery endpoints: `/search` (projects and repositories by name), project
//! metadata (`/projects/{p}/metadatas`), whether a project can go (`/_deletable`), and
//! permissions (`/permissions`, `/users/current/permissions`) — all through the one
//! authorization decision.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use berth_auth::Target;
use berth_auth::rbac::Perm;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::lookup::resolve_with;
use crate::projects::{apply_settings, project_json};
use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, not_found};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/search", get(search))
        .route("/api/v2.0/projects/{p}/metadatas", get(metadatas).post(add_metadatas))
        .route("/api/v2.0/projects/{p}/metadatas/{name}", get(metadata).put(put_metadata).delete(delete_metadata))
        .route("/api/v2.0/projects/{p}/_deletable", get(deletable))
        .route("/api/v2.0/permissions", get(permissions))
        .route("/api/v2.0/users/current/permissions", get(current_permissions))
}

/// Harbor's `(resource, action)` pairs for project permissions, and the permission each
/// stands for (what `/users/current/permissions` reports and robots may be given).
const PROJECT_ACCESS: &[(&str, &str, Perm)] = &[
    ("project", "read", Perm::Read),
    ("project", "update", Perm::UpdateProject),
    ("project", "delete", Perm::DeleteProject),
    ("metadata", "read", Perm::Read),
    ("metadata", "update", Perm::UpdateProject),
    ("repository", "list", Perm::Read),
    ("repository", "read", Perm::Read),
    ("repository", "pull", Perm::Pull),
    ("repository", "push", Perm::Push),
    ("repository", "delete", Perm::DeleteArtifact),
    ("artifact", "list", Perm::Read),
    ("artifact", "read", Perm::Read),
    ("artifact", "delete", Perm::DeleteArtifact),
    ("tag", "list", Perm::Read),
    ("tag", "create", Perm::CreateTag),
    ("tag", "delete", Perm::DeleteTag),
    ("scan", "create", Perm::Scan),
    ("scan", "read", Perm::Scan),
    ("scan", "stop", Perm::Scan),
    ("member", "list", Perm::ReadMembers),
    ("member", "create", Perm::ManageMembers),
    ("member", "update", Perm::ManageMembers),
    ("member", "delete", Perm::ManageMembers),
    ("robot", "list", Perm::ReadRobots),
    ("robot", "create", Perm::ManageRobots),
    ("robot", "delete", Perm::ManageRobots),
    ("immutable-tag", "list", Perm::Read),
    ("immutable-tag", "create", Perm::ManagePolicy),
    ("tag-retention", "read", Perm::Read),
    ("tag-retention", "update", Perm::ManagePolicy),
    ("log", "list", Perm::ReadLogs),
    ("quota", "read", Perm::Read),
    ("notification-policy", "list", Perm::ReadWebhooks),
    ("notification-policy", "read", Perm::ReadWebhooks),
    ("notification-policy", "create", Perm::ManageWebhooks),
    ("notification-policy", "update", Perm::ManageWebhooks),
    ("notification-policy", "delete", Perm::ManageWebhooks),
];

/// System-level pairs and the permission each needs.
const SYSTEM_ACCESS: &[(&str, &str, Perm)] = &[
    ("project", "create", Perm::CreateProject),
    ("audit-log", "list", Perm::Administer),
    ("user", "list", Perm::Administer),
    ("registry", "list", Perm::Administer),
    ("replication", "list", Perm::Administer),
    ("garbage-collection", "list", Perm::Administer),
    ("scan-all", "create", Perm::Administer),
    ("configuration", "read", Perm::Administer),
];

fn pair(resource: &str, action: &str) -> Value {
    json!({"resource": resource, "action": action})
}

/// `GET /permissions`: what robot accounts may be given (system administrators, and
/// project administrators for their projects).
async fn permissions(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.authenticated()?;
    let admin = s.auth.decide(&c.p, Target::System, Perm::Administer).await.is_ok();
    let mut any_project_admin = admin;
    if !admin {
        for p in s.auth.projects().await? {
            if s.auth.decide(&c.p, Target::Project(&p), Perm::ManageRobots).await.is_ok() {
                any_project_admin = true;
                break;
            }
        }
    }
    if !any_project_admin {
        return Err(crate::forbidden("only administrators of the registry or of a project create robot accounts"));
    }
    let grantable: Vec<Value> = PROJECT_ACCESS
        .iter()
        .filter(|(r, a, _)| berth_auth::rbac::access_perm(r, a).is_some())
        .map(|(r, a, _)| pair(r, a))
        .collect();
    // Berth's system robots hold project permissions (`namespace: "*"` for every project).
    Ok(Json(json!({"system": if admin { grantable.clone() } else { Vec::new() }, "project": grantable}))
        .into_response())
}

/// `GET /users/current/permissions?scope=/project/{id}&relative=true`: what the caller may do
/// in a project (or, with `scope=/`, in the system).
async fn current_permissions(
    State(s): State<AdminState>,
    c: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let scope = q.get("scope").map(String::as_str).unwrap_or("/");
    let relative = q.get("relative").is_some_and(|r| r == "true");
    let mut out = Vec::new();
    if let Some(id) = scope.strip_prefix("/project/") {
        let id: i64 = id.parse().map_err(|_| bad_request(format!("scope {scope:?}: use /project/{{id}} or /")))?;
        let project = s
            .auth
            .projects()
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| not_found(format!("project {id} not found")))?;
        if s.auth.decide(&c.p, Target::Project(&project), Perm::Read).await.is_err() {
            return Err(not_found(format!("project {id} not found")));
        }
        for (r, a, perm) in PROJECT_ACCESS {
            if s.auth.decide(&c.p, Target::Project(&project), *perm).await.is_ok() {
                let resource = if relative { (*r).to_owned() } else { format!("/project/{id}/{r}") };
                out.push(json!({"resource": resource, "action": a}));
            }
        }
    } else if scope == "/" {
        for (r, a, perm) in SYSTEM_ACCESS {
            if s.auth.decide(&c.p, Target::System, *perm).await.is_ok() {
                let resource = if relative { (*r).to_owned() } else { format!("/system/{r}") };
                out.push(json!({"resource": resource, "action": a}));
            }
        }
    } else {
        return Err(bad_request(format!("scope {scope:?}: use /project/{{id}} or /")));
    }
    Ok(Json(out).into_response())
}

/// `GET /search?q=`: projects and repositories the caller may see whose names hold `q`.
async fn search(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let term = q.get("q").map(|t| t.trim().to_owned()).unwrap_or_default();
    if term.is_empty() {
        return Err(bad_request("give something to search for: ?q=…"));
    }
    let mut projects = Vec::new();
    let mut repositories = Vec::new();
    for p in s.auth.projects().await? {
        if s.auth.decide(&c.p, Target::Project(&p), Perm::Read).await.is_err() {
            continue;
        }
        if p.name.contains(&term) {
            projects.push(project_json(&s, &c, &p).await?);
        }
        for r in s.registry.project_repos(&p.name).await? {
            if r.name.contains(&term) {
                repositories.push(json!({
                    "project_id": p.id, "project_name": p.name, "project_public": p.settings.public(),
                    "repository_name": r.name, "pull_count": r.pull_count, "artifact_count": r.artifact_count,
                }));
            }
        }
    }
    Ok(Json(json!({"project": projects, "repository": repositories})).into_response())
}

async fn metadata_map(s: &AdminState, p: &berth_auth::ProjectRecord) -> Result<BTreeMap<String, String>, ApiError> {
    let mut m = p.settings.to_map();
    if let Some(r) = s.policies.project_retention(&p.name).await? {
        m.insert("retention_id".into(), r.id.to_string());
    }
    Ok(m)
}

async fn metadatas(State(s): State<AdminState>, c: Caller, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::Read).await?;
    Ok(Json(metadata_map(&s, &project).await?).into_response())
}

async fn metadata(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, name)): Path<(String, String)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::Read).await?;
    let m = metadata_map(&s, &project).await?;
    let v = m.get(&name).ok_or_else(|| not_found(format!("project {} has no metadata {name:?}", project.name)))?;
    Ok(Json(json!({ name: v })).into_response())
}

/// `POST /projects/{p}/metadatas`: set several settings (Harbor's keys, string values).
async fn add_metadatas(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Result<Json<HashMap<String, Value>>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::UpdateProject).await?;
    let m = crate::json_body(body)?;
    let mut settings = project.settings.clone();
    apply_settings(&mut settings, None, &m)?;
    s.auth.update_project(project.id, &settings, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

/// `PUT /projects/{p}/metadatas/{name}`: `{name: value}`.
async fn put_metadata(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, name)): Path<(String, String)>,
    body: Result<Json<HashMap<String, Value>>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::UpdateProject).await?;
    let m = crate::json_body(body)?;
    if m.len() != 1 || !m.contains_key(&name) {
        return Err(bad_request(format!("the body must be {{\"{name}\": value}}, for the metadata in the path")));
    }
    let mut settings = project.settings.clone();
    apply_settings(&mut settings, None, &m)?;
    s.auth.update_project(project.id, &settings, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /projects/{p}/metadatas/{name}`: back to the default.
async fn delete_metadata(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, name)): Path<(String, String)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::UpdateProject).await?;
    if !berth_types::ProjectSettings::KEYS.contains(&name.as_str()) {
        return Err(not_found(format!("project {} has no metadata {name:?}", project.name)));
    }
    let mut settings = project.settings.clone();
    let default = berth_types::ProjectSettings::default();
    match default.to_map().get(&name) {
        Some(v) => settings.set(&name, v).map_err(|e| bad_request(e.to_string()))?,
        None => settings.reuse_sys_cve_allowlist = None,
    }
    s.auth.update_project(project.id, &settings, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /projects/{p}/_deletable`: whether the project can be deleted now, and why not.
async fn deletable(State(s): State<AdminState>, c: Caller, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::DeleteProject).await?;
    let repos = s.registry.project_repos(&project.name).await?;
    let body = if repos.is_empty() {
        json!({"deletable": true, "message": ""})
    } else {
        json!({"deletable": false, "message": format!(
            "the project holds {} repositories; delete them first", repos.len())})
    };
    Ok(Json(body).into_response())
}
