//! ECR lifecycle policies per repository, with request and response bodies in ECR's shapes
//! (`GetLifecyclePolicy`, `PutLifecyclePolicy`, `DeleteLifecyclePolicy`,
//! `StartLifecyclePolicyPreview`, `GetLifecyclePolicyPreview`), so the ECR API can serve the
//! same bodies over its own protocol:
//!
//! - `GET|PUT|DELETE /api/v2.0/projects/{p}/repositories/{r}/lifecycle_policy`
//! - `POST|GET …/lifecycle_policy/preview` (start, and read the latest preview)
//! - `POST …/lifecycle_policy/executions` (Berth: apply now, instead of within the day) and
//!   `GET …/lifecycle_policy/executions/{id}`
//!
//! Reading needs project read access; everything else `ManagePolicy`. Each call is also
//! asked of the repository policy under its ECR action name (`ecr:PutLifecyclePolicy`, …).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use berth_auth::policy::EcrAction;
use berth_auth::rbac::Perm;
use berth_jobs::PolicyError;
use berth_jobs::PolicyRunRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::lookup::repo_of;
use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, created, not_found};

pub(crate) fn routes() -> Router<AdminState> {
    let base = "/api/v2.0/projects/{p}/repositories/{r}/lifecycle_policy";
    Router::new()
        .route(base, get(get_policy).put(put_policy).delete(delete_policy))
        .route(&format!("{base}/preview"), post(start_preview).get(get_preview))
        .route(&format!("{base}/executions"), post(execute))
        .route(&format!("{base}/executions/{{id}}"), get(execution))
}

pub(crate) fn policy_error(e: PolicyError) -> ApiError {
    match e {
        PolicyError::Invalid(m) => bad_request(m),
        PolicyError::NotFound(m) => not_found(m),
        PolicyError::Meta(m) => m.into(),
    }
}

fn no_policy(s: &AdminState, repo: &str) -> ApiError {
    let registry_id = &s.ecr_registry_id;
    not_found(format!(
        "Lifecycle policy does not exist for the repository with name '{repo}' in the registry with id '{registry_id}'"
    ))
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

async fn get_policy(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Read, EcrAction::GetLifecyclePolicy).await?;
    let policy = s.policies.lifecycle(name.as_str()).await?.ok_or_else(|| no_policy(&s, name.as_str()))?;
    let mut body = json!({
        "registryId": s.ecr_registry_id, "repositoryName": name.as_str(), "lifecyclePolicyText": policy.document,
    });
    if let Some(at) = policy.evaluated_at {
        body["lastEvaluatedAt"] = json!(seconds(at));
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutBody {
    lifecycle_policy_text: String,
}

async fn put_policy(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
    body: Result<Json<PutBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::ManagePolicy, EcrAction::PutLifecyclePolicy).await?;
    let body = crate::json_body(body)?;
    if body.lifecycle_policy_text.len() > 30_720 {
        return Err(bad_request(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Member must have length less than or equal to 30720'",
        ));
    }
    let stored = s
        .policies
        .put_lifecycle(name.as_str(), &body.lifecycle_policy_text, &c.origin())
        .await
        .map_err(policy_error)?;
    Ok(Json(json!({
        "registryId": s.ecr_registry_id, "repositoryName": name.as_str(), "lifecyclePolicyText": stored.document,
    }))
    .into_response())
}

async fn delete_policy(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::ManagePolicy, EcrAction::DeleteLifecyclePolicy).await?;
    let gone =
        s.policies.delete_lifecycle(name.as_str(), &c.origin()).await?.ok_or_else(|| no_policy(&s, name.as_str()))?;
    let mut body = json!({
        "registryId": s.ecr_registry_id, "repositoryName": name.as_str(), "lifecyclePolicyText": gone.document,
    });
    if let Some(at) = gone.evaluated_at {
        body["lastEvaluatedAt"] = json!(seconds(at));
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PreviewBody {
    #[serde(default)]
    lifecycle_policy_text: Option<String>,
}

async fn start_preview(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let (_, name) =
        repo_of(&s, &c, &headers, &p, &r, Perm::ManagePolicy, EcrAction::StartLifecyclePolicyPreview).await?;
    let body: PreviewBody = if body.iter().all(u8::is_ascii_whitespace) {
        PreviewBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("the request body is not valid JSON: {e}")))?
    };
    let text = body.lifecycle_policy_text.filter(|t| !t.trim().is_empty());
    let (_, text) = s.policies.start_preview(name.as_str(), text.as_deref()).await.map_err(policy_error)?;
    Ok(Json(json!({
        "registryId": s.ecr_registry_id, "repositoryName": name.as_str(), "lifecyclePolicyText": text,
        "status": "IN_PROGRESS",
    }))
    .into_response())
}

/// ECR's preview status of a run.
fn ecr_status(run: &PolicyRunRecord) -> &'static str {
    match run.status.as_str() {
        "Pending" | "Running" => "IN_PROGRESS",
        "Success" => "COMPLETE",
        _ => "FAILED",
    }
}

async fn get_preview(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Read, EcrAction::GetLifecyclePolicyPreview).await?;
    let max = match q.get("maxResults") {
        None => 100,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(bad_request(format!("maxResults must be from 1 to 1000, not {m:?}"))),
        },
    };
    let start = match q.get("nextToken") {
        None => 0,
        Some(t) => t.parse::<usize>().map_err(|_| bad_request(format!("nextToken {t:?} is not one Berth gave")))?,
    };
    Ok(Json(preview_page(&s, &name, q.get("tagStatus").map(String::as_str), start, max).await?).into_response())
}

/// The latest preview of `name` in `GetLifecyclePolicyPreview`'s shape, images filtered by
/// ECR's `tagStatus` and paged from `start`.
pub(crate) async fn preview_page(
    s: &AdminState,
    name: &berth_types::RepoName,
    tag_status: Option<&str>,
    start: usize,
    max: usize,
) -> Result<Value, ApiError> {
    let run = s.policies.preview(name.as_str()).await?.ok_or_else(|| {
        not_found(format!(
            "There is no dry run for the repository with name '{name}' in the registry with id '{}'",
            s.ecr_registry_id
        ))
    })?;
    let result: Value = run.result.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null);
    let mut images: Vec<Value> = result["previewResults"].as_array().cloned().unwrap_or_default();
    // ECR's filter: {"tagStatus": "TAGGED"|"UNTAGGED"|"ANY"} (also as a query parameter here).
    match tag_status.map(|t| t.to_ascii_uppercase()).as_deref() {
        None | Some("ANY") => {}
        Some("TAGGED") => images.retain(|i| i["imageTags"].as_array().is_some_and(|t| !t.is_empty())),
        Some("UNTAGGED") => images.retain(|i| i["imageTags"].as_array().is_none_or(|t| t.is_empty())),
        Some(other) => return Err(bad_request(format!("tagStatus {other:?}: use TAGGED, UNTAGGED or ANY"))),
    }
    let total = images.len();
    let page: Vec<Value> = images.into_iter().skip(start).take(max).collect();
    let mut body = json!({
        "registryId": s.ecr_registry_id, "repositoryName": name.as_str(), "lifecyclePolicyText": run.document,
        "status": ecr_status(&run), "previewResults": page,
    });
    if run.status == "Success" {
        body["summary"] = result["summary"].clone();
    }
    if let Some(e) = result["error"].as_str() {
        body["failureReason"] = e.into();
    }
    if start + max < total {
        body["nextToken"] = (start + max).to_string().into();
    }
    Ok(body)
}

async fn execute(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
) -> ApiResult {
    let (project, name) = repo_of(&s, &c, &headers, &p, &r, Perm::ManagePolicy, EcrAction::PutLifecyclePolicy).await?;
    let id = s.policies.apply_lifecycle(name.as_str(), "MANUAL").await.map_err(policy_error)?;
    let short = name.as_str().split_once('/').map_or(name.as_str(), |(_, r)| r);
    Ok(created(&format!(
        "/api/v2.0/projects/{}/repositories/{}/lifecycle_policy/executions/{id}",
        project.id,
        crate::enc(short)
    )))
}

async fn execution(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, id)): Path<(String, String, String)>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Read, EcrAction::GetLifecyclePolicy).await?;
    let id: i64 = id.parse().map_err(|_| bad_request(format!("execution id must be a number, not {id:?}")))?;
    let run = s
        .policies
        .run(id)
        .await?
        .filter(|run| run.scope == name.as_str() && run.kind == berth_registry::LIFECYCLE)
        .ok_or_else(|| not_found(format!("repository {name} has no lifecycle execution {id}")))?;
    let result: Value = run.result.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null);
    Ok(Json(json!({
        "id": run.id, "repositoryName": name.as_str(), "status": ecr_status(&run), "trigger": run.trigger,
        "startedAt": seconds(run.created_at), "updatedAt": seconds(run.updated_at),
        "expiredImages": result["previewResults"], "keptImages": result["keptImages"],
        "failureReason": result["error"],
    }))
    .into_response())
}
