//! Projects (`/projects`) and their members (`/projects/{p}/members`), project logs.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use berth_auth::rbac::{Perm, Role};
use berth_auth::{
    MemberEntity, MemberRecord, Principal, ProjectRecord, ProjectSettings, SettingError, Target, project_of,
};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::lookup::resolve_with;
use crate::{
    AdminState, ApiError, ApiResult, Caller, bad_request, created, json_body, not_found, paginate, q_terms, time,
};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/projects", get(list).post(create).head(exists))
        .route("/api/v2.0/projects/{p}", get(show).put(update).delete(remove))
        .route("/api/v2.0/projects/{p}/members", get(members).post(add_member))
        .route("/api/v2.0/projects/{p}/members/{mid}", get(member).put(update_member).delete(remove_member))
        .route("/api/v2.0/projects/{p}/logs", get(logs))
}

fn role_ids(c: &Caller, project: &ProjectRecord) -> Vec<i64> {
    match &c.p {
        Principal::User(u) => u.roles.iter().filter(|(pid, _)| *pid == project.id).map(|(_, r)| r.id()).collect(),
        _ => Vec::new(),
    }
}

pub(crate) async fn project_json(s: &AdminState, c: &Caller, p: &ProjectRecord) -> Result<Value, ApiError> {
    let mut metadata: BTreeMap<String, String> = p.settings.to_map();
    // Harbor names the project's retention policy in its metadata.
    if let Some(r) = s.policies.project_retention(&p.name).await? {
        metadata.insert("retention_id".into(), r.id.to_string());
    }
    let owner = s.auth.user(p.owner_id).await?.map(|u| u.username).unwrap_or_default();
    let repo_count = s.registry.repo_counts(std::slice::from_ref(&p.name)).await?.first().copied().unwrap_or(0);
    let roles = role_ids(c, p);
    let registry_id = s.upstreams.cache_rules().await?.iter().find(|r| r.prefix == p.name).map(|r| r.upstream_id);
    Ok(json!({
        "registry_id": registry_id,
        "project_id": p.id, "owner_id": p.owner_id, "name": p.name, "owner_name": owner,
        "creation_time": time(p.created_at), "update_time": time(p.updated_at), "deleted": false,
        "togglable": true, "current_user_role_id": roles.iter().min().copied().unwrap_or(0),
        "current_user_role_ids": roles, "repo_count": repo_count, "metadata": metadata,
        "cve_allowlist": crate::shapes::allowlist_json(s, &p.name, p.id, (p.created_at, p.updated_at)).await?,
    }))
}

async fn list(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let mut name_exact = None;
    let mut name_fuzzy = q.get("name").cloned();
    let mut public = q.get("public").cloned();
    for (k, v, fuzzy) in q_terms(&q) {
        match k.as_str() {
            "name" if fuzzy => name_fuzzy = Some(v),
            "name" => name_exact = Some(v),
            "public" => public = Some(v),
            _ => {}
        }
    }
    let public = match public.as_deref() {
        None | Some("") => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(o) => return Err(bad_request(format!("public must be true or false, not {o:?}"))),
    };
    let owner = q.get("owner").cloned();
    let mut out = Vec::new();
    for p in s.auth.projects().await? {
        if s.auth.decide(&c.p, Target::Project(&p), Perm::Read).await.is_err() {
            continue;
        }
        if name_exact.as_deref().is_some_and(|n| n != p.name)
            || name_fuzzy.as_deref().is_some_and(|n| !p.name.contains(n))
            || public.is_some_and(|b| b != p.settings.public())
        {
            continue;
        }
        let j = project_json(&s, &c, &p).await?;
        if owner.as_deref().is_some_and(|o| j["owner_name"] != o) {
            continue;
        }
        out.push(j);
    }
    paginate(out, &q, "/api/v2.0/projects")
}

async fn exists(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.authenticated()?;
    let name = q.get("project_name").ok_or_else(|| bad_request("project_name is required"))?;
    Ok(match s.auth.project(name).await? {
        Some(_) => StatusCode::OK.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectReq {
    project_name: Option<String>,
    public: Option<bool>,
    metadata: Option<HashMap<String, Value>>,
    storage_limit: Option<i64>,
    cve_allowlist: Option<crate::shapes::AllowlistReq>,
    /// A proxy-cache project: the registry endpoint it caches.
    registry_id: Option<i64>,
    /// Berth: how long a cached tag is served before it is checked upstream again.
    proxy_ttl_seconds: Option<i64>,
}

/// Apply Harbor's `public` and `metadata` (values JSON strings or booleans) to `settings`:
/// the one place Harbor's strings become typed settings; a bad key or value is a 400 naming it.
pub(crate) fn apply_settings(
    settings: &mut ProjectSettings,
    public: Option<bool>,
    m: &HashMap<String, Value>,
) -> Result<(), ApiError> {
    if let Some(public) = public {
        settings.set("public", if public { "true" } else { "false" }).map_err(|e| bad_request(e.to_string()))?;
    }
    // Sorted, so the first bad entry reported does not depend on hashing.
    let mut entries: Vec<_> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in entries {
        if k == "retention_id" {
            continue; // shown by GET, set through /retentions: a client sending it back changes nothing
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            other => return Err(bad_request(format!("metadata.{k}: expected a string, not {other}"))),
        };
        settings.set(k, &text).map_err(|e| match e {
            SettingError::UnknownKey { key } => bad_request(format!(
                "metadata.{key}: unknown setting; Berth knows {}",
                ProjectSettings::KEYS.join(", ")
            )),
            bad_value => bad_request(format!("metadata.{bad_value}")),
        })?;
    }
    if !settings.scan_filters.is_empty() {
        let filters = settings.scan_filters.iter().map(String::as_str);
        berth_scanner::check_scan_filters(filters).map_err(|e| bad_request(format!("metadata.scan_filters: {e}")))?;
    }
    Ok(())
}

pub(crate) fn valid_project_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.contains('/')
        && name.parse::<berth_types::RepoName>().is_ok_and(|r| project_of(r.as_str()) == name);
    if ok {
        Ok(())
    } else {
        Err(bad_request(format!(
            "project_name {name:?} is invalid: use lower-case letters and digits, separated by '.', '_' or '-'"
        )))
    }
}

async fn create(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<ProjectReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.require(&s, Target::System, Perm::CreateProject).await?;
    let req = json_body(body)?;
    let name = req.project_name.ok_or_else(|| bad_request("project_name is required"))?;
    valid_project_name(&name)?;
    let mut settings = ProjectSettings::default();
    apply_settings(&mut settings, req.public, &req.metadata.unwrap_or_default())?;
    let allowlist = req.cve_allowlist.as_ref().map(crate::shapes::allowlist_items).transpose()?;
    let limit = req.storage_limit.map(crate::quotas::storage_limit).transpose()?;
    let ttl_ms = match req.proxy_ttl_seconds {
        Some(t) if !(0..=30 * 86_400).contains(&t) => {
            return Err(bad_request("proxy_ttl_seconds: 0 (the server's default) to 2592000 (30 days)"));
        }
        Some(t) => t * 1000,
        None => 0,
    };
    if let Some(registry) = req.registry_id {
        // As Harbor: only system administrators make proxy caches, of an endpoint that exists.
        c.sysadmin(&s).await?;
        s.upstreams.get(registry).await.map_err(|_| bad_request(format!("registry {registry} does not exist")))?;
    }
    let id = s.auth.create_project(&name, &c.p, &settings, &c.origin()).await?;
    if let Some(registry) = req.registry_id
        && let Err(e) = s.upstreams.create_cache_rule(&name, registry, "", ttl_ms, &c.origin()).await
    {
        // The endpoint went away meanwhile: no half-made proxy project.
        let _ = s.auth.delete_project(id, &c.origin()).await;
        return Err(e.into());
    }
    if let Some(limit) = limit {
        s.registry.set_quota(&name, limit).await?;
    }
    if let Some(items) = allowlist {
        s.scans.put_allowlist(&name, &items, &c.origin()).await?;
    }
    Ok(created(&format!("/api/v2.0/projects/{id}")))
}

async fn show(State(s): State<AdminState>, c: Caller, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::Read).await?;
    Ok(Json(project_json(&s, &c, &project).await?).into_response())
}

async fn update(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Result<Json<ProjectReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::UpdateProject).await?;
    let req = json_body(body)?;
    if req.project_name.as_deref().is_some_and(|n| n != project.name) {
        return Err(bad_request("projects cannot be renamed"));
    }
    let mut settings = project.settings.clone();
    apply_settings(&mut settings, req.public, &req.metadata.unwrap_or_default())?;
    if let Some(a) = &req.cve_allowlist {
        s.scans.put_allowlist(&project.name, &crate::shapes::allowlist_items(a)?, &c.origin()).await?;
    }
    s.auth.update_project(project.id, &settings, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

async fn remove(State(s): State<AdminState>, c: Caller, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::DeleteProject).await?;
    let held = s.registry.repo_counts(std::slice::from_ref(&project.name)).await?.first().copied().unwrap_or(0);
    if held > 0 {
        return Err(ApiError::PreconditionFailed(format!(
            "project {:?} still holds {held} repositories; delete them first",
            project.name
        )));
    }
    s.upstreams.delete_cache_rule(&project.name, &c.origin()).await?;
    s.auth.delete_project(project.id, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

fn member_json(m: &MemberRecord) -> Value {
    let (entity_id, entity_name, entity_type) = match &m.entity {
        MemberEntity::User { id, name } => (*id, name.clone(), "u"),
        MemberEntity::Group(g) => (0, g.clone(), "g"),
    };
    json!({
        "id": m.id, "project_id": m.project_id, "entity_name": entity_name, "entity_id": entity_id,
        "entity_type": entity_type, "role_id": m.role_id,
        "role_name": Role::from_id(m.role_id).map(Role::name).unwrap_or("unknown"),
    })
}

async fn members(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ReadMembers).await?;
    let filter = q.get("entityname").cloned();
    let list: Vec<_> = s
        .auth
        .members(project.id)
        .await?
        .iter()
        .map(member_json)
        .filter(|m| filter.as_deref().is_none_or(|f| m["entity_name"].as_str().is_some_and(|n| n.contains(f))))
        .collect();
    paginate(list, &q, &format!("/api/v2.0/projects/{p}/members"))
}

#[derive(Deserialize)]
struct UserRef {
    user_id: Option<i64>,
    username: Option<String>,
}

#[derive(Deserialize)]
struct GroupRef {
    group_name: Option<String>,
    /// An LDAP group (`group_type` 1) is named by its DN.
    ldap_group_dn: Option<String>,
    #[allow(dead_code)]
    group_type: Option<i64>,
    /// A user group (`/usergroups`) by its id.
    id: Option<i64>,
}

#[derive(Deserialize)]
struct MemberReq {
    role_id: i64,
    member_user: Option<UserRef>,
    member_group: Option<GroupRef>,
}

fn role(id: i64) -> Result<Role, ApiError> {
    Role::from_id(id).ok_or_else(|| {
        bad_request(format!(
            "role_id {id} is unknown: use 1 (projectAdmin), 2 (developer), 3 (guest), 4 (maintainer), 5 (limitedGuest)"
        ))
    })
}

async fn add_member(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Result<Json<MemberReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManageMembers).await?;
    let req = json_body(body)?;
    let r = role(req.role_id)?;
    let entity = match (req.member_user, req.member_group) {
        (Some(u), None) => {
            let user = match (u.user_id, u.username) {
                (Some(id), _) => s.auth.user(id).await?,
                (None, Some(name)) => s.auth.user_by_name(&name).await?,
                (None, None) => return Err(bad_request("member_user needs user_id or username")),
            }
            .ok_or_else(|| not_found("no such user"))?;
            MemberEntity::User { id: user.id, name: String::new() }
        }
        (None, Some(GroupRef { id: Some(id), .. })) => {
            let g = s.auth.user_group(id).await?.ok_or_else(|| not_found(format!("user group {id} not found")))?;
            MemberEntity::Group(g.member_key)
        }
        (None, Some(g)) => {
            // An LDAP group is its DN (what sign-in finds); others are named.
            let name = g
                .ldap_group_dn
                .map(|dn| dn.trim().to_lowercase())
                .filter(|n| !n.is_empty())
                .or(g.group_name.filter(|n| !n.is_empty()))
                .ok_or_else(|| bad_request("member_group needs group_name (or ldap_group_dn for an LDAP group)"))?;
            MemberEntity::Group(name)
        }
        _ => return Err(bad_request("give exactly one of member_user and member_group")),
    };
    let id = s.auth.add_member(project.id, &entity, r, &c.origin()).await?;
    Ok(created(&format!("/api/v2.0/projects/{}/members/{id}", project.id)))
}

async fn find_member(s: &AdminState, project: &ProjectRecord, mid: i64) -> Result<MemberRecord, ApiError> {
    s.auth
        .members(project.id)
        .await?
        .into_iter()
        .find(|m| m.id == mid)
        .ok_or_else(|| not_found(format!("member {mid} not found in project {}", project.name)))
}

async fn member(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, mid)): Path<(String, i64)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ReadMembers).await?;
    Ok(Json(member_json(&find_member(&s, &project, mid).await?)).into_response())
}

#[derive(Deserialize)]
struct RoleReq {
    role_id: i64,
}

async fn update_member(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, mid)): Path<(String, i64)>,
    body: Result<Json<RoleReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManageMembers).await?;
    let r = role(json_body(body)?.role_id)?;
    let m = find_member(&s, &project, mid).await?;
    s.auth.update_member(project.id, m.id, r, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

async fn remove_member(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, mid)): Path<(String, i64)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManageMembers).await?;
    let m = find_member(&s, &project, mid).await?;
    s.auth.delete_member(project.id, m.id, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

async fn logs(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ReadLogs).await?;
    crate::system::audit_page(&s, &q, Some(&project.name), &format!("/api/v2.0/projects/{p}/logs")).await
}
