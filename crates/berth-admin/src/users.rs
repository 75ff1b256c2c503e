//! Users: `/users`, `/users/current`, passwords, system-admin flag and CLI secrets.
//!
//! CLI secrets are stored hashed, so unlike Harbor the profile never shows one: a secret is
//! shown once, when it is set or generated (`PUT /users/{id}/cli_secret`), and can be
//! revoked (`DELETE`). It stays valid however long or short the user's OIDC session is.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use berth_auth::rbac::Perm;
use berth_auth::secret;
use berth_auth::{NewUser, Target, UserRecord};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    AdminState, ApiError, ApiResult, Caller, bad_request, created, forbidden, hashing, json_body, not_found, paginate,
    q_terms, time,
};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/users", get(list).post(create))
        .route("/api/v2.0/users/current", get(current))
        .route("/api/v2.0/users/search", get(search))
        .route("/api/v2.0/users/{id}", get(show).put(update).delete(remove))
        .route("/api/v2.0/users/{id}/password", put(password))
        .route("/api/v2.0/users/{id}/sysadmin", put(sysadmin))
        .route("/api/v2.0/users/{id}/cli_secret", put(set_cli_secret).delete(revoke_cli_secret))
        .route("/api/v2.0/users/{id}/login_locks", axum::routing::delete(unlock))
}

pub(crate) fn user_json(u: &UserRecord) -> Value {
    let mut v = json!({
        "user_id": u.id, "username": u.username, "email": u.email, "realname": u.realname, "comment": u.comment,
        "sysadmin_flag": u.sysadmin, "admin_role_in_auth": false,
        "creation_time": time(u.created_at), "update_time": time(u.updated_at),
        // Berth's addition: whether a CLI secret is set (never the secret itself).
        "cli_secret_set": u.cli_secret_hash.is_some(),
    });
    if let Some(sub) = &u.oidc_subject {
        v["oidc_user_meta"] = json!({
            "id": u.id, "user_id": u.id, "subiss": sub,
            "creation_time": time(u.created_at), "update_time": time(u.cli_secret_at.unwrap_or(u.updated_at)),
        });
    }
    v
}

/// The user `{id}`, if the caller is that user or a system administrator.
async fn target(s: &AdminState, c: &Caller, id: i64) -> Result<UserRecord, ApiError> {
    c.authenticated()?;
    let own = c.p.user().is_some_and(|u| u.id == id);
    if !own {
        c.require(s, Target::System, Perm::Administer)
            .await
            .map_err(|_| forbidden("only the user themself or a system administrator may do this"))?;
    }
    s.auth.user(id).await?.ok_or_else(|| not_found(format!("user {id} not found")))
}

async fn list(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let mut name = q.get("username").cloned();
    for (k, v, _) in q_terms(&q) {
        if k == "username" {
            name = Some(v);
        }
    }
    let list: Vec<_> = s
        .auth
        .users()
        .await?
        .iter()
        .filter(|u| name.as_deref().is_none_or(|n| u.username.contains(n)))
        .map(user_json)
        .collect();
    paginate(list, &q, "/api/v2.0/users")
}

/// Harbor's user search (to add members): any signed-in user finds ids and names by part of
/// a username.
async fn search(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.authenticated()?;
    let Some(name) = q.get("username").map(|n| n.trim()).filter(|n| !n.is_empty()) else {
        return Err(bad_request("give the part of a username to search for: ?username=…"));
    };
    let list: Vec<_> = s
        .auth
        .users()
        .await?
        .iter()
        .filter(|u| u.username.contains(name))
        .map(|u| json!({"user_id": u.id, "username": u.username}))
        .collect();
    paginate(list, &q, "/api/v2.0/users/search")
}

#[derive(Deserialize)]
struct UserCreationReq {
    username: String,
    password: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    realname: String,
    #[serde(default)]
    comment: String,
}

fn valid_username(name: &str) -> Result<(), ApiError> {
    if !berth_auth::valid_username(name) {
        return Err(bad_request(format!(
            "username {name:?} is invalid: 1 to 255 characters, no spaces and none of , \" ~ # % $ : /"
        )));
    }
    Ok(())
}

async fn create(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<UserCreationReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let req = json_body(body)?;
    let id =
        create_local_user(&s, &c.origin(), req.username, req.email, req.realname, req.comment, &req.password).await?;
    Ok(created(&format!("/api/v2.0/users/{id}")))
}

/// Create a local user with a password (the API's and the portal's one path): the username
/// and password rules apply. The caller checked that a system administrator asks.
pub(crate) async fn create_local_user(
    s: &AdminState,
    origin: &berth_auth::Origin,
    username: String,
    email: String,
    realname: String,
    comment: String,
    password: &str,
) -> Result<i64, ApiError> {
    valid_username(&username)?;
    secret::check_password_strength(password).map_err(bad_request)?;
    let pw = password.to_owned();
    let password_hash = hashing(move || secret::hash_password(&pw)).await?;
    let nu = NewUser { username, email, realname, comment, password_hash: Some(password_hash), ..Default::default() };
    Ok(s.auth.create_user(&nu, origin).await?)
}

async fn current(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.authenticated()?;
    let Some(u) = c.p.user() else {
        return Err(not_found(format!("{} is not a user account", c.p.name())));
    };
    let rec = s.auth.user(u.id).await?.ok_or_else(|| not_found("the user no longer exists"))?;
    Ok(Json(user_json(&rec)).into_response())
}

async fn show(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    Ok(Json(user_json(&target(&s, &c, id).await?)).into_response())
}

#[derive(Deserialize)]
struct UserProfile {
    email: Option<String>,
    realname: Option<String>,
    comment: Option<String>,
}

async fn update(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<i64>,
    body: Result<Json<UserProfile>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let u = target(&s, &c, id).await?;
    let p = json_body(body)?;
    s.auth
        .update_user_profile(
            id,
            p.email.as_deref().unwrap_or(&u.email),
            p.realname.as_deref().unwrap_or(&u.realname),
            p.comment.as_deref().unwrap_or(&u.comment),
            &c.origin(),
        )
        .await?;
    Ok(StatusCode::OK.into_response())
}

async fn remove(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    c.sysadmin(&s).await?;
    if c.p.user().is_some_and(|u| u.id == id) {
        return Err(forbidden("you cannot delete your own account"));
    }
    s.auth.user(id).await?.ok_or_else(|| not_found(format!("user {id} not found")))?;
    s.auth.delete_user(id, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
struct PasswordReq {
    #[serde(default)]
    old_password: String,
    new_password: String,
}

async fn password(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<i64>,
    body: Result<Json<PasswordReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let u = target(&s, &c, id).await?;
    let req = json_body(body)?;
    let own = c.p.user().is_some_and(|x| x.id == id);
    if own && (!c.p.is_sysadmin() || u.password_hash.is_some()) {
        let (old, hash) = (req.old_password.clone(), u.password_hash.clone());
        let ok = hashing(move || hash.as_deref().is_some_and(|h| secret::verify_password(&old, h))).await?;
        if !ok {
            return Err(forbidden("old_password is wrong"));
        }
    }
    secret::check_password_strength(&req.new_password).map_err(bad_request)?;
    let new = req.new_password.clone();
    let hash = hashing(move || secret::hash_password(&new)).await?;
    s.auth.set_password(id, &hash, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
struct SysAdminFlag {
    sysadmin_flag: bool,
}

async fn sysadmin(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<i64>,
    body: Result<Json<SysAdminFlag>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let f = json_body(body)?;
    s.auth.user(id).await?.ok_or_else(|| not_found(format!("user {id} not found")))?;
    s.auth.set_sysadmin(id, f.sysadmin_flag, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize, Default)]
struct CliSecretReq {
    secret: Option<String>,
}

async fn set_cli_secret(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>, body: String) -> ApiResult {
    target(&s, &c, id).await?;
    let req: CliSecretReq = if body.trim().is_empty() {
        CliSecretReq::default()
    } else {
        serde_json::from_str(&body).map_err(|e| bad_request(format!("expected {{\"secret\": \"…\"}}: {e}")))?
    };
    let (value, generated) = match req.secret.filter(|x| !x.is_empty()) {
        Some(given) => {
            secret::check_password_strength(&given).map_err(|m| bad_request(m.replace("password", "CLI secret")))?;
            (given, false)
        }
        None => (secret::new_secret(), true),
    };
    let v = value.clone();
    let stored = hashing(move || secret::hash_chosen_or_generated(&v, generated)).await?;
    s.auth.set_cli_secret(id, Some(&stored), &c.origin()).await?;
    if generated {
        // Shown this once: only its hash is stored.
        return Ok(Json(json!({"secret": value})).into_response());
    }
    Ok(StatusCode::OK.into_response())
}

async fn revoke_cli_secret(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    target(&s, &c, id).await?;
    s.auth.set_cli_secret(id, None, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

/// Lift a user's login locks (every client address, every replica).
async fn unlock(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    c.sysadmin(&s).await?;
    let u = s.auth.user(id).await?.ok_or_else(|| not_found(format!("user {id} not found")))?;
    let lifted = s.auth.unlock(&u.username, &c.origin()).await?;
    Ok(Json(json!({"username": u.username, "locks_lifted_here": lifted})).into_response())
}
