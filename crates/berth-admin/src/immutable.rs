//! Tag immutability: Harbor's immutable tag rules (`/projects/{p}/immutabletagrules`) and,
//! per repository, ECR's image tag mutability in ECR's JSON shape
//! (`/projects/{p}/repositories/{r}/tag_mutability`, a Berth endpoint; the ECR API issue
//! serves the same setting as `PutImageTagMutability`). Reading needs project read access;
//! changing needs `ManagePolicy` (project administrators, system administrators).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use berth_auth::policy::EcrAction;
use berth_auth::rbac::Perm;
use berth_registry::{ImmutableRule, TagMutability};
use http::StatusCode;
use serde_json::json;

use crate::lookup::{repo_of, resolve_with};
use crate::{AdminState, ApiResult, Caller, bad_request, created, json_body, not_found};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/projects/{p}/immutabletagrules", get(list).post(create))
        .route("/api/v2.0/projects/{p}/immutabletagrules/{id}", put(update).delete(remove))
        .route("/api/v2.0/projects/{p}/repositories/{r}/tag_mutability", get(get_mutability).put(put_mutability))
}

async fn list(State(s): State<AdminState>, c: Caller, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::Read).await?;
    let mut rules = s.registry.immutable_rules(&project.name).await?;
    for r in &mut rules {
        r.project_id = project.id;
    }
    let mut resp = Json(&rules).into_response();
    resp.headers_mut().insert("x-total-count", http::HeaderValue::from(rules.len()));
    Ok(resp)
}

async fn create(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Result<Json<ImmutableRule>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManagePolicy).await?;
    let rule = json_body(body)?;
    let id = s
        .registry
        .put_immutable_rule(&project.name, None, &rule, &c.origin())
        .await?
        .ok_or_else(|| bad_request("the rule was not stored"))?;
    Ok(created(&format!("/api/v2.0/projects/{}/immutabletagrules/{id}", project.id)))
}

fn rule_id(id: &str) -> Result<i64, crate::ApiError> {
    id.parse().map_err(|_| bad_request(format!("immutable_rule_id must be a number, not {id:?}")))
}

async fn update(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
    body: Result<Json<ImmutableRule>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManagePolicy).await?;
    let id = rule_id(&id)?;
    let rule = json_body(body)?;
    match s.registry.put_immutable_rule(&project.name, Some(id), &rule, &c.origin()).await? {
        Some(_) => Ok(StatusCode::OK.into_response()),
        None => Err(not_found(format!("project {} has no immutable tag rule {id}", project.name))),
    }
}

async fn remove(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManagePolicy).await?;
    let id = rule_id(&id)?;
    if s.registry.delete_immutable_rule(&project.name, id, &c.origin()).await? {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(not_found(format!("project {} has no immutable tag rule {id}", project.name)))
    }
}

async fn get_mutability(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Read, EcrAction::DescribeRepositories).await?;
    let m = s.registry.tag_mutability(&name).await?;
    let mut body = serde_json::to_value(&m).map_err(|e| crate::ApiError::internal("tag mutability", e))?;
    body["repositoryName"] = json!(name.as_str());
    Ok(Json(body).into_response())
}

async fn put_mutability(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
    body: Result<Json<TagMutability>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::ManagePolicy, EcrAction::SetRepositoryPolicy).await?;
    let m = json_body(body)?;
    s.registry.set_tag_mutability(&name, &m, &c.origin()).await?;
    let mut out = serde_json::to_value(&m).map_err(|e| crate::ApiError::internal("tag mutability", e))?;
    out["repositoryName"] = json!(name.as_str());
    Ok(Json(out).into_response())
}
