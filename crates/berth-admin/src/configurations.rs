//! Harbor's `/configurations`: the settings Berth has, under Harbor's keys, each with
//! `editable`. Those of [`berth_auth::RuntimeSettings`] (`project_creation_restriction`,
//! `token_expiration`, `session_timeout`) change at run time: a `PUT` stores them over
//! `berth.toml`'s values and every replica applies them. The others come from `berth.toml`
//! (or `BERTH_…` variables) and change at the next start, so a `PUT` that would change one is
//! refused naming the key to edit; one that sets the values they already have succeeds
//! (tools that write back what they read keep working). Nothing is changed unless every key
//! of the body is acceptable.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::{AdminState, ApiError, ApiResult, Caller, bad_request};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new().route("/api/v2.0/configurations", get(show).put(update))
}

/// `(Harbor key, value, the berth.toml key that sets it)`.
fn settings(s: &AdminState) -> Vec<(&'static str, Value, &'static str)> {
    let now = s.auth.settings();
    let oidc = s.auth.oidc().map(|o| o.config());
    let minutes = |d: std::time::Duration| json!(d.as_secs() / 60);
    let mut out = vec![
        ("auth_mode", json!(if oidc.is_some() { "oidc_auth" } else { "db_auth" }), "oidc.issuer"),
        (
            "project_creation_restriction",
            json!(if now.project_creation_admin_only { "adminonly" } else { "everyone" }),
            "auth.project_creation",
        ),
        ("self_registration", json!(false), "(not offered)"),
        ("token_expiration", minutes(now.token_ttl), "auth.token_ttl"),
        ("session_timeout", minutes(now.session_ttl), "auth.session_ttl"),
        ("robot_token_duration", json!(30), "(robots choose their own duration)"),
        ("read_only", json!(false), "(not offered)"),
        ("audit_log_forward_endpoint", json!(""), "(not offered)"),
        ("skip_audit_log_database", json!(false), "(not offered)"),
        ("notification_enable", json!(false), "(not offered)"),
    ];
    if let Some(o) = oidc {
        out.extend([
            ("oidc_name", json!("OIDC"), "oidc.issuer"),
            ("oidc_endpoint", json!(o.issuer), "oidc.issuer"),
            ("oidc_client_id", json!(o.client_id), "oidc.client_id"),
            ("oidc_scope", json!(o.scope), "oidc.scope"),
            ("oidc_groups_claim", json!(o.groups_claim), "oidc.groups_claim"),
            ("oidc_user_claim", json!(o.username_claim), "oidc.username_claim"),
            ("oidc_admin_group", json!(o.admin_group.clone().unwrap_or_default()), "oidc.admin_group"),
            ("oidc_auto_onboard", json!(o.auto_onboard), "oidc.auto_onboard"),
            ("oidc_verify_cert", json!(true), "(always)"),
        ]);
    }
    out
}

/// `GET /configurations` (system administrators): `{key: {value, editable}}`.
async fn show(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.sysadmin(&s).await?;
    let editable = |k: &str| berth_auth::RuntimeSettings::KEYS.contains(&k);
    let body: Map<String, Value> = settings(&s)
        .into_iter()
        .map(|(k, v, _)| (k.to_owned(), json!({"value": v, "editable": editable(k)})))
        .collect();
    Ok(Json(body).into_response())
}

/// `PUT /configurations`: runtime settings to any valid value, the others only to the values
/// they already have.
async fn update(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<HashMap<String, Value>>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let wanted = crate::json_body(body)?;
    let have = settings(&s);
    let mut keys: Vec<&String> = wanted.keys().collect();
    keys.sort();
    let mut changes = Vec::new();
    for k in keys {
        let Some((_, value, file_key)) = have.iter().find(|(name, _, _)| name == k) else {
            return Err(bad_request(format!("{k}: Berth has no such setting")));
        };
        if berth_auth::RuntimeSettings::KEYS.contains(&k.as_str()) {
            if &wanted[k] != value {
                changes.push((k.clone(), wanted[k].clone()));
            }
        } else if &wanted[k] != value {
            return Err(ApiError::Forbidden(format!(
                "{k} is set in berth.toml (`{file_key}`) or its BERTH_ variable and takes effect at the next start; \
                 it cannot be changed here"
            )));
        }
    }
    if !changes.is_empty() {
        s.auth.change_settings(&changes, &c.origin()).await?.map_err(bad_request)?;
    }
    Ok(StatusCode::OK.into_response())
}
