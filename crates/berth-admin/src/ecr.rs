//! ECR's API, for `aws ecr` and boto3 pointed at Berth (`--endpoint-url`): AWS's JSON 1.1
//! protocol (`POST /` with `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Operation>`),
//! authenticated by SigV4 with an access key of a user or robot
//! ([`berth_auth::Auth::sigv4_principal`]), every operation decided by the one authorization
//! decision with ECR's action names (so repository policies apply as on `/v2`). Errors in
//! ECR's shape: `{"__type": "RepositoryNotFoundException", "message": …}`, 400 (403 for
//! authentication). Times are epoch seconds; listings page with `nextToken`/`maxResults`.
//!
//! ECR's names map to Berth's: a repository `team/app` is Berth's repository `app` of project
//! `team`; the registry id is [`REGISTRY_ID`], ARNs `arn:aws:ecr:<region>:<id>:repository/<name>`
//! with the region the client signed for.

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use berth_auth::policy::EcrAction;
use berth_auth::rbac::Perm;
use berth_auth::sigv4::SignedRequest;
use berth_auth::{AuthError, Denied, Principal, Target};
use berth_types::{Reference, RepoName};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::{AdminState, Caller};

use crate::lifecycle::REGISTRY_ID;

const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
const JSON_11: &str = "application/x-amz-json-1.1";
/// Largest request body read.
const MAX_BODY: usize = 1024 * 1024;

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", post(dispatch))
        .route("/api/v2.0/users/current/access-keys", get(list_keys).post(create_key))
        .route("/api/v2.0/users/current/access-keys/{id}", put(update_key).delete(delete_key))
}

/// The caller's own access keys (users; a robot's own too), without their secrets.
async fn list_keys(State(s): State<AdminState>, c: Caller) -> crate::ApiResult {
    c.authenticated()?;
    let keys = s.auth.access_keys(c.p.name()).await?;
    let body: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({"access_key_id": k.id, "status": if k.active { "Active" } else { "Inactive" },
                   "creation_time": crate::time(k.created_at)})
        })
        .collect();
    Ok(axum::Json(body).into_response())
}

/// A new access key for the caller: its secret is in this answer only.
async fn create_key(State(s): State<AdminState>, c: Caller) -> crate::ApiResult {
    c.authenticated()?;
    if matches!(c.p, Principal::Operator | Principal::Token(_)) {
        return Err(crate::bad_request("access keys belong to a user or robot account"));
    }
    let (id, secret) = s.auth.create_access_key(c.p.name(), &c.origin()).await?;
    let body = json!({"access_key_id": id, "secret_access_key": secret, "status": "Active"});
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

#[derive(serde::Deserialize)]
struct KeyUpdate {
    active: bool,
}

async fn update_key(
    State(s): State<AdminState>,
    c: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Result<axum::Json<KeyUpdate>, axum::extract::rejection::JsonRejection>,
) -> crate::ApiResult {
    c.authenticated()?;
    let u = crate::json_body(body)?;
    s.auth.set_access_key_active(c.p.name(), &id, u.active, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

async fn delete_key(
    State(s): State<AdminState>,
    c: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> crate::ApiResult {
    c.authenticated()?;
    s.auth.delete_access_key(c.p.name(), &id, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

/// An ECR error: `__type` and message, with its status.
struct EcrError(StatusCode, &'static str, String);

impl EcrError {
    fn bad(kind: &'static str, msg: impl Into<String>) -> EcrError {
        EcrError(StatusCode::BAD_REQUEST, kind, msg.into())
    }
}

impl IntoResponse for EcrError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.1, "message": self.2});
        (self.0, [(http::header::CONTENT_TYPE, JSON_11)], body.to_string()).into_response()
    }
}

impl From<crate::ApiError> for EcrError {
    fn from(e: crate::ApiError) -> EcrError {
        let (status, msg) = (e.status(), e.message().to_owned());
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                EcrError(StatusCode::BAD_REQUEST, "AccessDeniedException", msg)
            }
            StatusCode::NOT_FOUND => EcrError::bad("RepositoryNotFoundException", msg),
            StatusCode::TOO_MANY_REQUESTS => EcrError::bad("LimitExceededException", msg),
            s if s.is_server_error() => EcrError(s, "ServerException", msg),
            _ => EcrError::bad("InvalidParameterException", msg),
        }
    }
}

impl From<berth_scanner::MetaError> for EcrError {
    fn from(e: berth_scanner::MetaError) -> EcrError {
        crate::ApiError::from(e).into()
    }
}

impl From<AuthError> for EcrError {
    fn from(e: AuthError) -> EcrError {
        crate::ApiError::from(e).into()
    }
}

impl From<berth_registry::RegistryError> for EcrError {
    fn from(e: berth_registry::RegistryError) -> EcrError {
        crate::ApiError::from(e).into()
    }
}

type EcrResult = Result<Value, EcrError>;

/// `POST /` with `X-Amz-Target`: authenticate, then run the operation.
async fn dispatch(State(s): State<AdminState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let peer = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return EcrError::bad("InvalidParameterException", "the request body is over 1 MiB").into_response();
    };
    let Some(op) = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .map(str::to_owned)
    else {
        let e = EcrError::bad("UnknownOperationException", "POST / is ECR's API: X-Amz-Target names the operation");
        return e.into_response();
    };
    let hs: Vec<(String, String)> =
        headers.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned()))).collect();
    let req = SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &hs,
        body: &body,
    };
    let now = berth_auth::now_ms() / 1000;
    let p = match s.auth.sigv4_principal(&req, "ecr", now).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            let status = if e.code() == "IncompleteSignatureException" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::FORBIDDEN
            };
            return EcrError(status, e.code(), e.to_string()).into_response();
        }
        Err(e) => return EcrError::from(e).into_response(),
    };
    let region = req.credential().map(|c| c.region).unwrap_or_else(|_| "us-east-1".into());
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return EcrError::bad("SerializationException", "the body is not a JSON object").into_response(),
        }
    };
    let cx = Cx { s: &s, p: &p, region: &region, ip: peer, headers: &headers };
    let out = match op.as_str() {
        "GetAuthorizationToken" => get_authorization_token(&cx).await,
        "DescribeRegistry" => Ok(json!({"registryId": REGISTRY_ID, "replicationConfiguration": {"rules": []}})),
        "DescribeRepositories" => describe_repositories(&cx, &input).await,
        "ListImages" => list_images(&cx, &input).await,
        "DescribeImages" => describe_images(&cx, &input).await,
        "BatchDeleteImage" => batch_delete_image(&cx, &input).await,
        "CreateRepository" => create_repository(&cx, &input).await,
        "DeleteRepository" => delete_repository(&cx, &input).await,
        "GetRepositoryPolicy" => get_repository_policy(&cx, &input).await,
        "SetRepositoryPolicy" => set_repository_policy(&cx, &input).await,
        "DeleteRepositoryPolicy" => delete_repository_policy(&cx, &input).await,
        "GetLifecyclePolicy" => lifecycle(&cx, &input, Lifecycle::Get).await,
        "PutLifecyclePolicy" => lifecycle(&cx, &input, Lifecycle::Put).await,
        "DeleteLifecyclePolicy" => lifecycle(&cx, &input, Lifecycle::Delete).await,
        "BatchGetImage" => batch_get_image(&cx, &input).await,
        "BatchCheckLayerAvailability" => batch_check_layer_availability(&cx, &input).await,
        "StartImageScan" => start_image_scan(&cx, &input).await,
        "DescribeImageScanFindings" => describe_image_scan_findings(&cx, &input).await,
        other => Err(EcrError::bad(
            "UnsupportedOperationException",
            format!("{other} is not (yet) offered by Berth's ECR API"),
        )),
    };
    match out {
        Ok(v) => (StatusCode::OK, [(http::header::CONTENT_TYPE, JSON_11)], v.to_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// What every operation needs.
struct Cx<'a> {
    s: &'a AdminState,
    p: &'a Principal,
    region: &'a str,
    ip: Option<String>,
    headers: &'a HeaderMap,
}

impl Cx<'_> {
    fn origin(&self) -> berth_auth::Origin {
        berth_auth::Origin::new(self.p.name(), self.ip.clone())
    }

    fn arn(&self, repo: &str) -> String {
        format!("arn:aws:ecr:{}:{REGISTRY_ID}:repository/{repo}", self.region)
    }

    /// The registry host clients push to (the request's, or `external_url`'s).
    fn host(&self) -> String {
        match &self.s.external_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let host = self.headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
                format!("{}://{host}", if self.s.tls { "https" } else { "http" })
            }
        }
    }

    /// Does the repository exist (with or without images)?
    async fn exists(&self, repo: &RepoName) -> Result<bool, EcrError> {
        let project = repo.as_str().split('/').next().unwrap_or_default();
        Ok(self.s.registry.project_repos(project).await?.iter().any(|r| r.name == repo.as_str()))
    }

    /// The repository `name` if the caller may do `perm` there (`ecr` for policies) and, when
    /// `must_exist`, it exists: else `RepositoryNotFoundException`, as ECR answers.
    async fn repo(&self, input: &Value, perm: Perm, ecr: EcrAction) -> Result<RepoName, EcrError> {
        self.repo_checked(input, perm, ecr, true).await
    }

    async fn repo_checked(
        &self,
        input: &Value,
        perm: Perm,
        ecr: EcrAction,
        must_exist: bool,
    ) -> Result<RepoName, EcrError> {
        let name = input["repositoryName"]
            .as_str()
            .ok_or_else(|| EcrError::bad("InvalidParameterException", "repositoryName is required"))?;
        let repo: RepoName = name.parse().map_err(|e| {
            EcrError::bad("InvalidParameterException", format!("repositoryName {name:?} is not a valid name: {e}"))
        })?;
        if let Some(id) = input["registryId"].as_str().filter(|id| *id != REGISTRY_ID) {
            return Err(EcrError::bad(
                "InvalidParameterException",
                format!("registryId {id} is not this registry's ({REGISTRY_ID})"),
            ));
        }
        match self.s.auth.decide(self.p, Target::Repository(repo.as_str(), ecr), perm).await {
            Ok(()) if !must_exist || self.exists(&repo).await? => Ok(repo),
            Ok(()) => Err(not_found(name)),
            // A repository the caller may not see is one that does not exist to them.
            Err(Denied::NoProject(_) | Denied::Hidden { .. }) => Err(not_found(name)),
            Err(e) => Err(EcrError::from(crate::ApiError::from(e))),
        }
    }
}

/// A repository's description as ECR gives it.
fn repository_json(cx: &Cx<'_>, name: &str, created_at: i64) -> Value {
    let host = cx.host();
    let host = host.split("://").nth(1).unwrap_or(&host).to_owned();
    json!({
        "repositoryArn": cx.arn(name), "registryId": REGISTRY_ID, "repositoryName": name,
        "repositoryUri": format!("{host}/{name}"), "createdAt": epoch(created_at),
        "imageTagMutability": "MUTABLE", "imageScanningConfiguration": {"scanOnPush": false},
        "encryptionConfiguration": {"encryptionType": "AES256"},
    })
}

fn not_found(name: &str) -> EcrError {
    EcrError::bad(
        "RepositoryNotFoundException",
        format!("The repository with name '{name}' does not exist in the registry with id '{REGISTRY_ID}'"),
    )
}

fn epoch(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// `nextToken` is the index to start at; `maxResults` 1 to 1000.
fn page(input: &Value, default: usize) -> Result<(usize, usize), EcrError> {
    let start = match input["nextToken"].as_str() {
        None => 0,
        Some(t) => {
            t.parse().map_err(|_| EcrError::bad("InvalidParameterException", "nextToken is not one Berth gave"))?
        }
    };
    let max = match input["maxResults"].as_u64() {
        None => default,
        Some(n @ 1..=1000) => n as usize,
        Some(n) => {
            return Err(EcrError::bad("InvalidParameterException", format!("maxResults {n} is not from 1 to 1000")));
        }
    };
    Ok((start, max))
}

fn paged<T>(items: Vec<T>, start: usize, max: usize, key: &str, f: impl Fn(T) -> Value) -> Value {
    let total = items.len();
    let list: Vec<Value> = items.into_iter().skip(start).take(max).map(f).collect();
    let mut out = json!({ key: list });
    if start + max < total {
        out["nextToken"] = json!((start + max).to_string());
    }
    out
}

async fn get_authorization_token(cx: &Cx<'_>) -> EcrResult {
    if !cx.p.is_authenticated() {
        return Err(EcrError::bad("AccessDeniedException", "sign in to get a registry password"));
    }
    let (token, expires) = cx.s.auth.ecr_login_token(cx.p)?;
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"));
    Ok(json!({"authorizationData": [{
        "authorizationToken": auth, "expiresAt": epoch(expires), "proxyEndpoint": cx.host(),
    }]}))
}

async fn describe_repositories(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let (start, max) = page(input, 100)?;
    let wanted: Option<Vec<&str>> =
        input["repositoryNames"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect());
    let mut repos = Vec::new();
    for p in cx.s.auth.projects().await? {
        for r in cx.s.registry.project_repos(&p.name).await? {
            if wanted.as_ref().is_some_and(|w| !w.contains(&r.name.as_str())) {
                continue;
            }
            let target = Target::Repository(&r.name, EcrAction::DescribeRepositories);
            if cx.s.auth.decide(cx.p, target, Perm::Pull).await.is_ok() {
                repos.push(r);
            }
        }
    }
    // Named repositories must all exist (to the caller).
    if let Some(w) = &wanted
        && let Some(missing) = w.iter().find(|n| !repos.iter().any(|r| r.name == **n))
    {
        return Err(not_found(missing));
    }
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(paged(repos, start, max, "repositories", |r| repository_json(cx, &r.name, r.created_at)))
}

async fn list_images(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::Pull, EcrAction::ListImages).await?;
    let (start, max) = page(input, 100)?;
    let tagged = input["filter"]["tagStatus"].as_str().unwrap_or("ANY");
    let mut ids = Vec::new();
    for a in cx.s.registry.artifacts(&repo).await? {
        let d = a.record.digest.to_string();
        if a.tags.is_empty() {
            if tagged != "TAGGED" {
                ids.push(json!({"imageDigest": d}));
            }
        } else if tagged != "UNTAGGED" {
            ids.extend(a.tags.iter().map(|(t, _)| json!({"imageDigest": d, "imageTag": t})));
        }
    }
    Ok(paged(ids, start, max, "imageIds", |v| v))
}

async fn describe_images(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::Pull, EcrAction::DescribeImages).await?;
    let (start, max) = page(input, 100)?;
    let rows = cx.s.registry.artifacts(&repo).await?;
    let mut chosen = Vec::new();
    if let Some(ids) = input["imageIds"].as_array() {
        for id in ids {
            let found = rows.iter().find(|a| {
                id["imageDigest"].as_str().is_some_and(|d| a.record.digest.to_string() == d)
                    || id["imageTag"].as_str().is_some_and(|t| a.tags.iter().any(|(x, _)| x == t))
            });
            match found {
                Some(a) => chosen.push(a.clone()),
                None => {
                    return Err(EcrError::bad(
                        "ImageNotFoundException",
                        format!("The image with imageId {id} does not exist within the repository with name '{repo}'"),
                    ));
                }
            }
        }
    } else {
        chosen = rows;
    }
    let name = repo.to_string();
    Ok(paged(chosen, start, max, "imageDetails", |a| {
        let mut d = json!({
            "registryId": REGISTRY_ID, "repositoryName": name, "imageDigest": a.record.digest.to_string(),
            "imageSizeInBytes": a.total_size, "imagePushedAt": epoch(a.record.created_at),
            "imageManifestMediaType": a.record.media_type,
        });
        if !a.tags.is_empty() {
            d["imageTags"] = json!(a.tags.iter().map(|(t, _)| t).collect::<Vec<_>>());
        }
        if let Some(t) = &a.record.artifact_type {
            d["artifactMediaType"] = json!(t);
        }
        if let Some(t) = a.pull_time {
            d["lastRecordedPullTime"] = json!(epoch(t));
        }
        d
    }))
}

async fn batch_delete_image(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::DeleteArtifact, EcrAction::BatchDeleteImage).await?;
    let ids = input["imageIds"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| EcrError::bad("InvalidParameterException", "imageIds is required"))?;
    let origin = cx.origin();
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    for id in ids {
        let reference = match (id["imageDigest"].as_str(), id["imageTag"].as_str()) {
            (_, Some(t)) => t.parse::<Reference>(),
            (Some(d), None) => d.parse::<Reference>(),
            (None, None) => {
                failures.push(json!({"imageId": id, "failureCode": "MissingDigestAndTag", "failureReason": "give imageDigest or imageTag"}));
                continue;
            }
        };
        let Ok(reference) = reference else {
            failures.push(
                json!({"imageId": id, "failureCode": "InvalidImageDigest", "failureReason": "not a digest or tag"}),
            );
            continue;
        };
        let digest = cx.s.registry.artifacts(&repo).await?.into_iter().find(|a| match &reference {
            Reference::Digest(d) => &a.record.digest == d,
            Reference::Tag(t) => a.tags.iter().any(|(x, _)| x == t.as_str()),
        });
        let Some(a) = digest else {
            failures.push(
                json!({"imageId": id, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"}),
            );
            continue;
        };
        match cx.s.registry.manifest_delete(&repo, &reference, &origin).await {
            Ok(_) => {
                let mut done = json!({"imageDigest": a.record.digest.to_string()});
                if let Reference::Tag(t) = &reference {
                    done["imageTag"] = json!(t.as_str());
                }
                deleted.push(done);
            }
            Err(e) => {
                let msg = crate::ApiError::from(e).message().to_owned();
                failures
                    .push(json!({"imageId": id, "failureCode": "ImageReferencedByManifestList", "failureReason": msg}));
            }
        }
    }
    Ok(json!({"imageIds": deleted, "failures": failures}))
}

/// `CreateRepository`: an empty repository in an existing project (ECR has no projects: the
/// first path segment names Berth's), for who may push there.
async fn create_repository(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo_checked(input, Perm::Push, EcrAction::PutImage, false).await?;
    if !cx.s.registry.repository_create(&repo, &cx.origin()).await? {
        return Err(EcrError::bad(
            "RepositoryAlreadyExistsException",
            format!("The repository with name '{repo}' already exists in the registry with id '{REGISTRY_ID}'"),
        ));
    }
    Ok(json!({"repository": repository_json(cx, repo.as_str(), berth_auth::now_ms())}))
}

/// `DeleteRepository`: only an empty one unless `force`.
async fn delete_repository(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::DeleteArtifact, EcrAction::DeleteRepository).await?;
    let summary =
        cx.s.registry
            .project_repos(repo.as_str().split('/').next().unwrap_or_default())
            .await?
            .into_iter()
            .find(|r| r.name == repo.as_str())
            .ok_or_else(|| not_found(repo.as_str()))?;
    if summary.artifact_count > 0 && input["force"].as_bool() != Some(true) {
        return Err(EcrError::bad(
            "RepositoryNotEmptyException",
            format!(
                "The repository with name '{repo}' in registry with id '{REGISTRY_ID}' cannot be deleted because it still \
                 contains images (force deletes them)"
            ),
        ));
    }
    cx.s.registry.repository_delete(&repo, &cx.origin()).await?;
    Ok(json!({"repository": repository_json(cx, repo.as_str(), summary.created_at)}))
}

async fn get_repository_policy(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::Read, EcrAction::GetRepositoryPolicy).await?;
    match cx.s.auth.repo_policy(repo.as_str()).await? {
        Some(doc) => Ok(json!({"registryId": REGISTRY_ID, "repositoryName": repo.as_str(), "policyText": doc})),
        None => Err(EcrError::bad(
            "RepositoryPolicyNotFoundException",
            format!(
                "Repository policy does not exist for the repository with name '{repo}' in the registry with id \
                 '{REGISTRY_ID}'"
            ),
        )),
    }
}

async fn set_repository_policy(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::ManagePolicy, EcrAction::SetRepositoryPolicy).await?;
    let text = input["policyText"]
        .as_str()
        .ok_or_else(|| EcrError::bad("InvalidParameterException", "policyText is required"))?;
    berth_auth::policy::RepoPolicy::parse(text)
        .map_err(|e| EcrError::bad("InvalidParameterException", format!("Invalid repository policy provided: {e}")))?;
    let v: Value = serde_json::from_str(text).map_err(|e| EcrError::bad("InvalidParameterException", e.to_string()))?;
    cx.s.auth
        .put_repo_policy(repo.as_str(), &v.to_string(), &cx.origin())
        .await
        .map_err(|e| EcrError::bad("InvalidParameterException", format!("Invalid repository policy provided: {e}")))?;
    Ok(json!({"registryId": REGISTRY_ID, "repositoryName": repo.as_str(), "policyText": v.to_string()}))
}

async fn delete_repository_policy(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::ManagePolicy, EcrAction::DeleteRepositoryPolicy).await?;
    let out = get_repository_policy(cx, input).await?;
    cx.s.auth.delete_repo_policy(repo.as_str(), &cx.origin()).await?;
    Ok(out)
}

#[derive(Clone, Copy)]
enum Lifecycle {
    Get,
    Put,
    Delete,
}

/// Lifecycle policies: the same store and documents as `/api/v2.0/…/lifecycle_policy`.
async fn lifecycle(cx: &Cx<'_>, input: &Value, what: Lifecycle) -> EcrResult {
    let (perm, action) = match what {
        Lifecycle::Get => (Perm::Read, EcrAction::GetLifecyclePolicy),
        Lifecycle::Put => (Perm::ManagePolicy, EcrAction::PutLifecyclePolicy),
        Lifecycle::Delete => (Perm::ManagePolicy, EcrAction::DeleteLifecyclePolicy),
    };
    let repo = cx.repo(input, perm, action).await?;
    let missing = || {
        EcrError::bad(
            "LifecyclePolicyNotFoundException",
            format!(
                "Lifecycle policy does not exist for the repository with name '{repo}' in the registry with id \
                 '{REGISTRY_ID}'"
            ),
        )
    };
    let policy = match what {
        Lifecycle::Get => cx.s.policies.lifecycle(repo.as_str()).await?.ok_or_else(missing)?,
        Lifecycle::Delete => {
            cx.s.policies
                .delete_lifecycle(repo.as_str(), &cx.origin())
                .await
                .map_err(crate::ApiError::from)?
                .ok_or_else(missing)?
        }
        Lifecycle::Put => {
            let text = input["lifecyclePolicyText"]
                .as_str()
                .ok_or_else(|| EcrError::bad("InvalidParameterException", "lifecyclePolicyText is required"))?;
            cx.s.policies
                .put_lifecycle(repo.as_str(), text, &cx.origin())
                .await
                .map_err(|e| EcrError::from(crate::lifecycle::policy_error(e)))?
        }
    };
    let mut out =
        json!({"registryId": REGISTRY_ID, "repositoryName": repo.as_str(), "lifecyclePolicyText": policy.document});
    if let (Lifecycle::Get | Lifecycle::Delete, Some(at)) = (what, policy.evaluated_at) {
        out["lastEvaluatedAt"] = json!(epoch(at));
    }
    Ok(out)
}

/// `BatchGetImage`: manifests by digest or tag, as stored (byte for byte).
async fn batch_get_image(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::Pull, EcrAction::BatchGetImage).await?;
    let ids = input["imageIds"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| EcrError::bad("InvalidParameterException", "imageIds is required"))?;
    let (mut images, mut failures) = (Vec::new(), Vec::new());
    for id in ids {
        let reference =
            id["imageTag"].as_str().or(id["imageDigest"].as_str()).and_then(|r| r.parse::<Reference>().ok());
        let Some(reference) = reference else {
            failures.push(json!({"imageId": id, "failureCode": "InvalidImageDigest", "failureReason": "give imageDigest or imageTag"}));
            continue;
        };
        match cx.s.registry.manifest_get(&repo, &reference, true).await {
            Ok(m) => {
                let bytes = m.bytes.unwrap_or_default();
                let mut image_id = json!({"imageDigest": m.record.digest.to_string()});
                if let Reference::Tag(t) = &reference {
                    image_id["imageTag"] = json!(t.as_str());
                }
                images.push(json!({
                    "registryId": REGISTRY_ID, "repositoryName": repo.as_str(), "imageId": image_id,
                    "imageManifest": String::from_utf8_lossy(&bytes), "imageManifestMediaType": m.record.media_type,
                }));
            }
            Err(_) => failures.push(
                json!({"imageId": id, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"}),
            ),
        }
    }
    Ok(json!({"images": images, "failures": failures}))
}

/// `BatchCheckLayerAvailability`: which blobs the repository has.
async fn batch_check_layer_availability(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::Pull, EcrAction::BatchCheckLayerAvailability).await?;
    let digests = input["layerDigests"]
        .as_array()
        .filter(|a| !a.is_empty() && a.len() <= 100)
        .ok_or_else(|| EcrError::bad("InvalidParameterException", "layerDigests: 1 to 100 digests"))?;
    let (mut layers, mut failures) = (Vec::new(), Vec::new());
    for d in digests {
        let text = d.as_str().unwrap_or_default();
        let Ok(digest) = text.parse::<berth_types::Digest>() else {
            failures.push(
                json!({"layerDigest": text, "failureCode": "InvalidLayerDigest", "failureReason": "not a digest"}),
            );
            continue;
        };
        match cx.s.registry.blob_size(&repo, &digest).await {
            Ok(size) => layers.push(json!({"layerDigest": text, "layerAvailability": "AVAILABLE", "layerSize": size})),
            Err(_) => failures.push(json!({"layerDigest": text, "failureCode": "MissingLayerDigest", "failureReason": "the repository has no such layer"})),
        }
    }
    Ok(json!({"layers": layers, "failures": failures}))
}

/// The digest an `imageId` (`imageDigest` or `imageTag`) names in `repo`.
async fn image_digest(cx: &Cx<'_>, repo: &RepoName, id: &Value) -> Result<String, EcrError> {
    let reference = id["imageDigest"].as_str().or(id["imageTag"].as_str()).unwrap_or_default();
    match crate::lookup::find_artifact(cx.s, repo, reference).await {
        Ok(a) => Ok(a.record.digest.to_string()),
        Err(_) => Err(EcrError::bad(
            "ImageNotFoundException",
            format!("The image with imageId {id} does not exist within the repository with name '{repo}'"),
        )),
    }
}

/// `StartImageScan`: the built-in scanner, as `POST …/scan` does.
async fn start_image_scan(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::Scan, EcrAction::StartImageScan).await?;
    let digest = image_digest(cx, &repo, &input["imageId"]).await?;
    let req = berth_scanner::ScanRequest { digest: digest.clone(), repo: repo.to_string(), sbom: false };
    cx.s.scans.request(&[req], &cx.origin()).await?;
    Ok(json!({
        "registryId": REGISTRY_ID, "repositoryName": repo.as_str(), "imageId": {"imageDigest": digest},
        "imageScanStatus": {"status": "IN_PROGRESS", "description": "The scan is queued"},
    }))
}

/// ECR's severity names.
fn ecr_severity(s: berth_scan::Severity) -> &'static str {
    use berth_scan::Severity::*;
    match s {
        Critical => "CRITICAL",
        High => "HIGH",
        Medium => "MEDIUM",
        Low => "LOW",
        None => "INFORMATIONAL",
        Unknown => "UNDEFINED",
    }
}

/// `DescribeImageScanFindings`: the stored report in ECR's basic-scanning shape.
async fn describe_image_scan_findings(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::Pull, EcrAction::DescribeImageScanFindings).await?;
    let digest = image_digest(cx, &repo, &input["imageId"]).await?;
    let (start, max) = page(input, 100)?;
    let no_scan = || {
        EcrError::bad(
            "ScanNotFoundException",
            format!("Image scan does not exist for the image with '{digest}' in the repository with name '{repo}'"),
        )
    };
    let rec = cx.s.scans.record(&digest).await?.ok_or_else(no_scan)?;
    let (status, description) = match rec.status.as_str() {
        "done" => ("COMPLETE", "The scan was completed successfully.".to_owned()),
        "failed" => ("FAILED", rec.error.clone().unwrap_or_default()),
        _ => ("IN_PROGRESS", "The scan is in progress.".to_owned()),
    };
    let mut out = json!({
        "registryId": REGISTRY_ID, "repositoryName": repo.as_str(), "imageId": {"imageDigest": digest},
        "imageScanStatus": {"status": status, "description": description},
    });
    let Some(text) = rec.report.as_deref().filter(|_| status == "COMPLETE") else { return Ok(out) };
    let report: berth_scan::report::Report = serde_json::from_str(text)
        .map_err(|e| EcrError(StatusCode::INTERNAL_SERVER_ERROR, "ServerException", e.to_string()))?;
    let mut counts = serde_json::Map::new();
    for f in &report.findings {
        let n = counts.entry(ecr_severity(f.severity)).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    let findings = paged(report.findings, start, max, "findings", |f| {
        let mut attributes = vec![
            json!({"key": "package_name", "value": f.package}),
            json!({"key": "package_version", "value": f.version}),
        ];
        if let Some((score, vector)) = &f.cvss {
            let v = if vector.starts_with("CVSS:3") {
                "3"
            } else if vector.starts_with("CVSS:4") {
                "4"
            } else {
                "2"
            };
            attributes.push(json!({"key": format!("CVSS{v}_SCORE"), "value": format!("{score:.1}")}));
            attributes.push(json!({"key": format!("CVSS{v}_VECTOR"), "value": vector}));
        }
        if let Some(fixed) = &f.fixed_version {
            attributes.push(json!({"key": "fixed_version", "value": fixed}));
        }
        let mut finding = json!({
            "name": f.id, "description": f.description, "severity": ecr_severity(f.severity), "attributes": attributes,
        });
        if let Some(u) = f.links.first() {
            finding["uri"] = json!(u);
        }
        finding
    });
    out["imageScanFindings"] = json!({
        "imageScanCompletedAt": rec.finished_at.map(epoch), "findingSeverityCounts": counts,
        "findings": findings["findings"],
    });
    if let Some(t) = findings.get("nextToken") {
        out["nextToken"] = t.clone();
    }
    Ok(out)
}
