//! Signature policies (Berth's, beside Harbor's content-trust flags): a project's policy
//! (`/projects/{p}/signature-policy`: GET needs read access, PUT and DELETE `ManagePolicy`)
//! and the verdict on one artifact (`…/artifacts/{reference}/signature`): verified (by
//! whom), unsigned or invalid (why), under the policy's mode.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use berth_auth::policy::EcrAction;
use berth_auth::rbac::Perm;
use berth_registry::{SignatureError, SignaturePolicy, Signatures, Verdict};
use serde_json::{Value, json};

use crate::lookup::{find_artifact, repo_of, resolve_with};
use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, json_body};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/projects/{p}/signature-policy", get(show).put(set).delete(remove))
        .route("/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/signature", get(verdict))
}

impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::Invalid(m) => bad_request(m),
            SignatureError::Registry(e) => e.into(),
        }
    }
}

pub(crate) fn signatures(s: &AdminState) -> Result<&Signatures, ApiError> {
    s.signatures.as_deref().ok_or_else(|| ApiError::PreconditionFailed("signature policies are not available".into()))
}

/// A verdict as the API and the portal show it.
pub(crate) fn verdict_json(v: Option<&(Verdict, berth_registry::SignatureMode)>) -> Value {
    match v {
        None => json!({"status": "not_checked", "mode": "off"}),
        Some((v, mode)) => {
            let mut out = json!({"status": v.status(), "mode": mode});
            match v {
                Verdict::Verified(by) => out["signed_by"] = json!(by),
                Verdict::Invalid(why) => out["reason"] = json!(why),
                Verdict::Unsigned => out["reason"] = json!("no signature"),
            }
            out
        }
    }
}

async fn show(State(s): State<AdminState>, c: Caller, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::Read).await?;
    let (policy, version) = signatures(&s)?.policy(&project.name).await?.unwrap_or_default();
    let mut v = serde_json::to_value(&policy).map_err(|e| ApiError::internal("a signature policy", e))?;
    v["version"] = json!(version);
    Ok(Json(v).into_response())
}

async fn set(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManagePolicy).await?;
    let mut v = json_body(body)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("version");
    }
    let policy: SignaturePolicy =
        serde_json::from_value(v).map_err(|e| bad_request(format!("not a signature policy: {e}")))?;
    let version = signatures(&s)?.set_policy(&project.name, Some(&policy), &c.origin()).await?;
    Ok(Json(json!({ "version": version })).into_response())
}

async fn remove(State(s): State<AdminState>, c: Caller, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::ManagePolicy).await?;
    signatures(&s)?.set_policy(&project.name, None, &c.origin()).await?;
    Ok(http::StatusCode::OK.into_response())
}

async fn verdict(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference)): Path<(String, String, String)>,
) -> ApiResult {
    let (project, repo) = repo_of(&s, &c, &headers, &p, &r, Perm::Read, EcrAction::DescribeImages).await?;
    let a = find_artifact(&s, &repo, &reference).await?;
    let v = signatures(&s)?.verdict(&project.name, &repo, &a.record).await?;
    let mut out = verdict_json(v.as_ref());
    out["digest"] = json!(a.record.digest.to_string());
    Ok(Json(out).into_response())
}
