//! Webhooks (`/api/v2.0/projects/{p}/webhook/…`, Harbor's shapes): policies (list, create,
//! show, change, delete), the supported event types, each policy's deliveries as Harbor's
//! executions (one task each, with its log), the last trigger per event type; and, Berth's:
//! a test delivery (`policies/test` with a policy in the body, as Harbor's older API had, or
//! `policies/{id}/test` for a stored one) and redelivery of a finished delivery
//! (`executions/{id}/redeliver`). Reading needs `ReadWebhooks` (project administrators and
//! maintainers), changing `ManageWebhooks` (project administrators).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use berth_auth::rbac::Perm;
use berth_webhook::{Policy, PolicySpec, WebhookError, Webhooks};
use http::StatusCode;
use serde_json::{Value, json};

use crate::lookup::resolve_with;
use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, json_body, not_found, page_of, q_terms, time};

pub(crate) fn routes() -> Router<AdminState> {
    let p = "/api/v2.0/projects/{p}/webhook";
    Router::new()
        .route(&format!("{p}/policies"), get(list).post(create))
        .route(&format!("{p}/policies/test"), post(test_new))
        .route(&format!("{p}/policies/{{id}}"), get(show).put(update).delete(remove))
        .route(&format!("{p}/policies/{{id}}/test"), post(test_stored))
        .route(&format!("{p}/policies/{{id}}/executions"), get(executions))
        .route(&format!("{p}/policies/{{id}}/executions/{{e}}/redeliver"), post(redeliver))
        .route(&format!("{p}/policies/{{id}}/executions/{{e}}/tasks"), get(tasks))
        .route(&format!("{p}/policies/{{id}}/executions/{{e}}/tasks/{{t}}/log"), get(task_log))
        .route(&format!("{p}/events"), get(events))
        .route(&format!("{p}/lasttrigger"), get(last_trigger))
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(m) => bad_request(m),
            WebhookError::NotFound(m) => not_found(m),
            WebhookError::Conflict(m) => ApiError::Conflict(m),
            WebhookError::Sealed(m) => ApiError::internal("a webhook secret", m),
            WebhookError::Meta(m) => m.into(),
        }
    }
}

pub(crate) fn webhooks(s: &AdminState) -> Result<&Webhooks, ApiError> {
    s.webhooks.as_deref().ok_or_else(|| ApiError::PreconditionFailed("webhooks are not available".into()))
}

fn id_of(what: &str, id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| bad_request(format!("{what} must be a number, not {id:?}")))
}

/// Harbor's `WebhookPolicy`.
pub(crate) fn policy_json(project_id: i64, p: &Policy) -> Value {
    let r = &p.record;
    json!({
        "id": r.id, "name": r.name, "description": r.description, "project_id": project_id,
        "targets": p.targets, "event_types": p.event_types, "creator": r.creator,
        "creation_time": time(r.created_at), "update_time": time(r.updated_at), "enabled": r.enabled,
    })
}

fn spec_of(v: Value) -> Result<PolicySpec, ApiError> {
    serde_json::from_value(v).map_err(|e| bad_request(format!("not a webhook policy: {e}")))
}

async fn list(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ReadWebhooks).await?;
    let mut items = Vec::new();
    let terms = q_terms(&q);
    for policy in webhooks(&s)?.policies(&project.name).await? {
        let keep = terms.iter().all(|(k, v, fuzzy)| match k.as_str() {
            "name" if *fuzzy => policy.record.name.contains(v.as_str()),
            "name" => policy.record.name == *v,
            _ => true,
        });
        if keep {
            items.push(policy_json(project.id, &policy));
        }
    }
    crate::paginate(items, &q, &format!("/api/v2.0/projects/{p}/webhook/policies"))
}

async fn create(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManageWebhooks).await?;
    let spec = spec_of(json_body(body)?)?;
    let (id, secret) = webhooks(&s)?.create(&project.name, &spec, &c.origin()).await?;
    // Harbor answers 201 with a Location; Berth adds the signing secret, shown this once.
    let mut r = crate::created(&format!("/api/v2.0/projects/{p}/webhook/policies/{id}"));
    *r.body_mut() = axum::body::Body::from(json!({"id": id, "secret": secret}).to_string());
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(r)
}

async fn show(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ReadWebhooks).await?;
    let policy = webhooks(&s)?.policy(&project.name, id_of("webhook_policy_id", &id)?).await?;
    Ok(Json(policy_json(project.id, &policy)).into_response())
}

async fn update(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManageWebhooks).await?;
    let spec = spec_of(json_body(body)?)?;
    webhooks(&s)?.update(&project.name, id_of("webhook_policy_id", &id)?, &spec, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

async fn remove(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManageWebhooks).await?;
    webhooks(&s)?.delete(&project.name, id_of("webhook_policy_id", &id)?, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

/// The answer of a test: 200 with each target's result when every target took it, else
/// 400 naming the first that did not.
fn test_answer(results: Vec<(String, Result<u16, String>)>) -> ApiResult {
    if let Some((address, Err(why))) = results.iter().find(|(_, r)| r.is_err()) {
        return Err(bad_request(format!("the test event did not reach {address}: {why}")));
    }
    let items: Vec<Value> =
        results.into_iter().map(|(address, r)| json!({"address": address, "status_code": r.ok()})).collect();
    Ok(Json(json!({ "results": items })).into_response())
}

async fn test_new(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManageWebhooks).await?;
    let spec = spec_of(json_body(body)?)?;
    test_answer(webhooks(&s)?.test(&project, &spec, None, &c.origin()).await?)
}

async fn test_stored(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManageWebhooks).await?;
    let w = webhooks(&s)?;
    let id = id_of("webhook_policy_id", &id)?;
    let policy = w.policy(&project.name, id).await?;
    let spec = PolicySpec {
        name: policy.record.name.clone(),
        description: policy.record.description.clone(),
        enabled: Some(policy.record.enabled),
        event_types: policy.event_types.clone(),
        targets: policy.targets.clone(),
        secret: None,
    };
    test_answer(w.test(&project, &spec, Some(id), &c.origin()).await?)
}

async fn executions(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ReadWebhooks).await?;
    let (page, size) = page_of(&q)?;
    let status = q_terms(&q).into_iter().find(|(k, _, _)| k == "status").map(|(_, v, _)| v);
    if let Some(st) = &status
        && !["Pending", "Running", "Success", "Error"].contains(&st.as_str())
    {
        return Err(bad_request(format!("status: {st:?}; use Pending, Running, Success or Error")));
    }
    let offset = ((page - 1) * size) as i64;
    let (items, total) = webhooks(&s)?
        .deliveries(&project.name, id_of("webhook_policy_id", &id)?, status.as_deref(), offset, size as i64)
        .await?;
    let body: Vec<Value> = items.iter().map(berth_webhook::execution_json).collect();
    let path = format!("/api/v2.0/projects/{p}/webhook/policies/{id}/executions");
    Ok(crate::with_page_headers(Json(body).into_response(), total as usize, page, size, &q, &path))
}

async fn tasks(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, id, e)): Path<(String, String, String)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ReadWebhooks).await?;
    let d = webhooks(&s)?.delivery(&project.name, id_of("webhook_policy_id", &id)?, id_of("execution_id", &e)?).await?;
    let mut r = Json(json!([berth_webhook::task_json(&d)])).into_response();
    r.headers_mut().insert("x-total-count", http::HeaderValue::from(1));
    Ok(r)
}

async fn task_log(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, id, e, t)): Path<(String, String, String, String)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ReadWebhooks).await?;
    let e = id_of("execution_id", &e)?;
    if id_of("task_id", &t)? != e {
        return Err(not_found(format!("execution {e} has one task, {e}")));
    }
    let d = webhooks(&s)?.delivery(&project.name, id_of("webhook_policy_id", &id)?, e).await?;
    Ok(([(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], d.log).into_response())
}

async fn redeliver(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, id, e)): Path<(String, String, String)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManageWebhooks).await?;
    webhooks(&s)?
        .redeliver(&project.name, id_of("webhook_policy_id", &id)?, id_of("execution_id", &e)?, &c.origin())
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn events(State(s): State<AdminState>, c: Caller, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    resolve_with(&s, &c, &headers, &p, Perm::ReadWebhooks).await?;
    Ok(Json(json!({
        "event_type": berth_webhook::payload::EVENT_TYPES,
        "notify_type": berth_webhook::payload::NOTIFY_TYPES,
        "payload_formats": [{"notify_type": "http", "formats": berth_webhook::payload::PAYLOAD_FORMATS}],
    }))
    .into_response())
}

async fn last_trigger(State(s): State<AdminState>, c: Caller, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ReadWebhooks).await?;
    let w = webhooks(&s)?;
    let policies = w.policies(&project.name).await?;
    let fired = w.last_triggers(&project.name).await?;
    let mut out = Vec::new();
    for policy in &policies {
        for ty in &policy.event_types {
            let mut t = json!({
                "policy_name": policy.record.name, "event_type": ty, "enabled": policy.record.enabled,
                "creation_time": time(policy.record.created_at),
            });
            if let Some((_, _, at)) = fired.iter().find(|(id, e, _)| *id == policy.record.id && e == ty) {
                t["last_trigger_time"] = json!(time(*at));
            }
            out.push(t);
        }
    }
    Ok(Json(out).into_response())
}
