//! Harbor's LDAP endpoints (system administrators): `POST /ldap/ping` (the configured server:
//! reachable, and the service account binds?), `GET /ldap/users/search?username=`,
//! `GET /ldap/groups/search?groupname=|groupdn=`, `POST /ldap/users/import` (create Berth
//! users for LDAP uids before they first sign in; 404 with the ones not found).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::{AdminState, ApiError, ApiResult, Caller, json_body};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/ldap/ping", post(ping))
        .route("/api/v2.0/ldap/users/search", get(users))
        .route("/api/v2.0/ldap/groups/search", get(groups))
        .route("/api/v2.0/ldap/users/import", post(import))
}

fn ldap(s: &AdminState) -> Result<&berth_auth::ldap::LdapClient, ApiError> {
    s.auth
        .ldap()
        .ok_or_else(|| ApiError::PreconditionFailed("LDAP is not configured: set [ldap] url and base_dn".into()))
}

fn unavailable(e: berth_auth::ldap::LdapError) -> ApiError {
    ApiError::ProviderUnavailable(e.to_string())
}

async fn ping(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.sysadmin(&s).await?;
    let l = ldap(&s)?;
    Ok(Json(match l.ping().await {
        Ok(()) => json!({"success": true}),
        Err(e) => json!({"success": false, "message": e.to_string()}),
    })
    .into_response())
}

async fn users(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let found = ldap(&s)?.search_users(q.get("username").map_or("", String::as_str), 100).await.map_err(unavailable)?;
    let out: Vec<_> = found
        .into_iter()
        .map(|u| json!({"username": u.username, "realname": u.realname, "email": u.email, "dn": u.dn}))
        .collect();
    Ok(Json(out).into_response())
}

async fn groups(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let found = ldap(&s)?
        .search_groups(
            q.get("groupname").map(String::as_str),
            q.get("groupdn").map(String::as_str).filter(|d| !d.is_empty()),
        )
        .await
        .map_err(unavailable)?;
    let out: Vec<_> =
        found.into_iter().map(|g| json!({"group_name": g.name, "ldap_group_dn": g.dn, "group_type": 1})).collect();
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
struct Import {
    ldap_uid_list: Vec<String>,
}

async fn import(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<Import>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    ldap(&s)?;
    let req = json_body(body)?;
    let mut failed = Vec::new();
    for uid in req.ldap_uid_list.iter().take(1000) {
        match s.auth.ldap_import(uid).await {
            Ok(true) => {}
            Ok(false) => failed.push(json!({"uid": uid, "error": "not found in LDAP"})),
            Err(berth_auth::AuthError::Refused(m)) => failed.push(json!({"uid": uid, "error": m})),
            Err(e) => return Err(e.into()),
        }
    }
    if failed.is_empty() {
        Ok(StatusCode::OK.into_response())
    } else {
        Ok((StatusCode::NOT_FOUND, Json(failed)).into_response())
    }
}
