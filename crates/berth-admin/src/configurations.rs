//! Harbor's `/configurations`: the settings Berth has, under Harbor's keys, each with
//! `editable`. They come from `berth.toml` (or `BERTH_…` variables) and change at the next
//! start, so a `PUT` that would change one is refused naming the key to edit; one that sets
//! the values they already have succeeds (tools that write back what they read keep working).

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
    let cfg = s.auth.config();
    let oidc = s.auth.oidc().map(|o| o.config());
    let minutes = |d: std::time::Duration| json!(d.as_secs() / 60);
    let mut out = vec![
        ("auth_mode", json!(if oidc.is_some() { "oidc_auth" } else { "db_auth" }), "oidc.issuer"),
        (
            "project_creation_restriction",
            json!(if cfg.project_creation_admin_only { "adminonly" } else { "everyone" }),
            "auth.project_creation",
        ),
        ("self_registration", json!(false), "(not offered)"),
        ("token_expiration", minutes(cfg.token_ttl), "auth.token_ttl"),
        ("session_timeout", minutes(cfg.session_ttl), "auth.session_ttl"),
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
    let body: Map<String, Value> =
        settings(&s).into_iter().map(|(k, v, _)| (k.to_owned(), json!({"value": v, "editable": false}))).collect();
    Ok(Json(body).into_response())
}

/// `PUT /configurations`: only values the settings already have.
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
    for k in keys {
        let Some((_, value, file_key)) = have.iter().find(|(name, _, _)| name == k) else {
            return Err(bad_request(format!("{k}: Berth has no such setting")));
        };
        if &wanted[k] != value {
            return Err(ApiError::Forbidden(format!(
                "{k} is set in berth.toml (`{file_key}`) or its BERTH_ variable and takes effect at the next start; \
                 it cannot be changed here"
            )));
        }
    }
    Ok(StatusCode::OK.into_response())
}
