//! Harbor's user groups (`/api/v2.0/usergroups`): LDAP groups (type 1, by DN), HTTP (2) and
//! OIDC (3) groups by name, so projects can take a group as a member by its id. System
//! administrators manage them; anyone signed in may search them. An LDAP group must exist in
//! the directory when LDAP is configured.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use berth_auth::UserGroupRecord;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, created, json_body, not_found, paginate};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/usergroups", get(list).post(create))
        .route("/api/v2.0/usergroups/search", get(search))
        .route("/api/v2.0/usergroups/{id}", get(show).put(rename).delete(remove))
}

fn group_json(g: &UserGroupRecord) -> Value {
    json!({"id": g.id, "group_name": g.name, "group_type": g.group_type, "ldap_group_dn": g.ldap_group_dn})
}

fn id_of(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| bad_request(format!("group_id must be a number, not {id:?}")))
}

async fn list(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let name = q.get("group_name").cloned().unwrap_or_default();
    let items = s.auth.user_groups().await?.iter().filter(|g| g.name.contains(&name)).map(group_json).collect();
    paginate(items, &q, "/api/v2.0/usergroups")
}

async fn search(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    if matches!(c.p, berth_auth::Principal::Anonymous) {
        return Err(ApiError::Unauthorized("sign in to search user groups".into()));
    }
    let name = q.get("groupname").cloned().unwrap_or_default();
    let items = s
        .auth
        .user_groups()
        .await?
        .iter()
        .filter(|g| g.name.contains(&name))
        .map(|g| json!({"id": g.id, "group_name": g.name, "group_type": g.group_type}))
        .collect();
    paginate(items, &q, "/api/v2.0/usergroups/search")
}

#[derive(Deserialize)]
struct NewGroup {
    #[serde(default)]
    group_name: String,
    group_type: i64,
    #[serde(default)]
    ldap_group_dn: String,
}

async fn create(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<NewGroup>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let g = json_body(body)?;
    let id = s.auth.create_user_group(&g.group_name, g.group_type, &g.ldap_group_dn, &c.origin()).await.map_err(
        |e| match e {
            berth_auth::AuthError::Refused(m) => bad_request(m),
            other => other.into(),
        },
    )?;
    Ok(created(&format!("/api/v2.0/usergroups/{id}")))
}

async fn show(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    let g = s.auth.user_group(id_of(&id)?).await?.ok_or_else(|| not_found(format!("user group {id} not found")))?;
    Ok(Json(group_json(&g)).into_response())
}

#[derive(Deserialize)]
struct Rename {
    group_name: String,
}

async fn rename(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<Rename>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let r = json_body(body)?;
    if !s.auth.rename_user_group(id_of(&id)?, &r.group_name, &c.origin()).await? {
        return Err(not_found(format!("user group {id} not found")));
    }
    Ok(StatusCode::OK.into_response())
}

async fn remove(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    if !s.auth.delete_user_group(id_of(&id)?, &c.origin()).await? {
        return Err(not_found(format!("user group {id} not found")));
    }
    Ok(StatusCode::OK.into_response())
}
