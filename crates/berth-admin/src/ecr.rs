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

const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
const JSON_11: &str = "application/x-amz-json-1.1";
/// Largest request body read.
const MAX_BODY: usize = 1024 * 1024;

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", post(dispatch))
        .route("/api/v2.0/users/current/access-keys", get(list_keys).post(create_key))
        .route("/api/v2.0/users/current/access-keys/{id}", put(update_key).delete(delete_key))
        .route("/api/v2.0/users/current/login-password", post(login_password))
}

/// On the ECR API's own listener: the registry's port (the main listener's).
#[derive(Clone, Copy)]
pub(crate) struct RegistryPort(pub u16);

/// The ECR API alone (`POST /`), for its own listener; anything else is ECR's error.
pub(crate) fn api_only() -> Router<AdminState> {
    Router::new().route("/", post(dispatch)).fallback(|| async {
        EcrError::bad("UnknownOperationException", "this listener serves only the ECR API: POST / with X-Amz-Target")
    })
}

/// The caller's own access keys (users; a robot's own too), without their secrets.
async fn list_keys(State(s): State<AdminState>, c: Caller) -> crate::ApiResult {
    c.authenticated()?;
    keys_of(&s, c.p.name()).await
}

/// An account's access keys, without their secrets.
pub(crate) async fn keys_of(s: &AdminState, account: &str) -> crate::ApiResult {
    let keys = s.auth.access_keys(account).await?;
    let body: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({"access_key_id": k.id, "status": if k.active { "Active" } else { "Inactive" },
                   "creation_time": crate::time(k.created_at)})
        })
        .collect();
    Ok(axum::Json(body).into_response())
}

/// A short-lived registry password for the caller (`berth login-password`, as ECR's
/// `get-login-password`): 12 h, good with the caller's own name, void once the account's
/// credentials change.
async fn login_password(State(s): State<AdminState>, c: Caller) -> crate::ApiResult {
    c.authenticated()?;
    if matches!(c.p, Principal::Operator | Principal::Token(_)) {
        return Err(crate::bad_request("login passwords belong to a user or robot account"));
    }
    let (password, expires) = s.auth.ecr_login_token(&c.p)?;
    let body = json!({"username": c.p.name(), "password": password, "expires_at": crate::time(expires)});
    Ok(axum::Json(body).into_response())
}

/// A new access key for the caller: its secret is in this answer only.
async fn create_key(State(s): State<AdminState>, c: Caller) -> crate::ApiResult {
    c.authenticated()?;
    if matches!(c.p, Principal::Operator | Principal::Token(_)) {
        return Err(crate::bad_request("access keys belong to a user or robot account"));
    }
    create_key_for(&s, c.p.name(), &c.origin()).await
}

/// A new access key of `account`: its secret is in this answer only.
pub(crate) async fn create_key_for(s: &AdminState, account: &str, origin: &berth_auth::Origin) -> crate::ApiResult {
    let (id, secret) = s.auth.create_access_key(account, origin).await?;
    let body = json!({"access_key_id": id, "secret_access_key": secret, "status": "Active"});
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `{"active": bool}`: activate or deactivate a key.
#[derive(serde::Deserialize)]
pub(crate) struct KeyUpdate {
    active: bool,
}

async fn update_key(
    State(s): State<AdminState>,
    c: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Result<axum::Json<KeyUpdate>, axum::extract::rejection::JsonRejection>,
) -> crate::ApiResult {
    c.authenticated()?;
    update_key_of(&s, c.p.name(), &id, body, &c.origin()).await
}

/// Activate or deactivate one of `account`'s keys.
pub(crate) async fn update_key_of(
    s: &AdminState,
    account: &str,
    id: &str,
    body: Result<axum::Json<KeyUpdate>, axum::extract::rejection::JsonRejection>,
    origin: &berth_auth::Origin,
) -> crate::ApiResult {
    let u = crate::json_body(body)?;
    s.auth.set_access_key_active(account, id, u.active, origin).await?;
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
        let body = json!({"__type": self.1, "message": without_position(&self.2)});
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

/// The services' errors, through the management API's mapping to a status, then ECR's type.
macro_rules! through_api_error {
    ($($t:ty),*) => {$(
        impl From<$t> for EcrError {
            fn from(e: $t) -> EcrError {
                crate::ApiError::from(e).into()
            }
        }
    )*};
}

through_api_error!(
    berth_scanner::MetaError,
    AuthError,
    berth_registry::RegistryError,
    berth_registry::UpstreamError,
    berth_registry::ReplicationError,
    Denied
);

type EcrResult = Result<Value, EcrError>;

/// A JSON parser's message without its " at line L column C" (the position in a document the
/// user wrote inside another one: no help).
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at)
            if message[at + 9..].split(" column ").all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            &message[..at]
        }
        _ => message,
    }
}

/// `POST /` with `X-Amz-Target`: authenticate, then run the operation.
async fn dispatch(State(s): State<AdminState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let peer = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
    let registry_port = parts.extensions.get::<RegistryPort>().map(|p| p.0);
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
    // With `[ecr] region` set, requests are signed for it (as AWS endpoints are per region).
    if let (Some(want), Ok(c)) = (&s.ecr_region, req.credential())
        && c.region != *want
    {
        let msg =
            format!("Credential should be scoped to a valid region: this registry is in '{want}', not '{}'", c.region);
        return EcrError(StatusCode::FORBIDDEN, "InvalidSignatureException", msg).into_response();
    }
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
    // ARNs name the configured region, else the one the request was signed for.
    let region = match &s.ecr_region {
        Some(r) => r.clone(),
        None => req.credential().map(|c| c.region).unwrap_or_else(|_| "us-east-1".into()),
    };
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return EcrError::bad("SerializationException", "the body is not a JSON object").into_response(),
        }
    };
    let cx = Cx { s: &s, p: &p, region: &region, ip: peer, headers: &headers, registry_port };
    let out = match other_registry(&cx, &input) {
        Some(e) => Err(e),
        None => run(&cx, &op, &input).await,
    };
    // AWS's request id, for the SDKs' ResponseMetadata: the one Berth logs the request under.
    let request_id = headers.get("x-request-id").cloned();
    let mut response = match out {
        Ok(v) => (StatusCode::OK, [(http::header::CONTENT_TYPE, JSON_11)], v.to_string()).into_response(),
        Err(e) => e.into_response(),
    };
    if let Some(id) = request_id {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

/// A `registryId` (or `registryIds`) that is not this registry's, refused whatever the operation.
fn other_registry(cx: &Cx<'_>, input: &Value) -> Option<EcrError> {
    let ids: Vec<&Value> = match (&input["registryId"], &input["registryIds"]) {
        (Value::Null, Value::Array(ids)) => ids.iter().collect(),
        (Value::Null, Value::Null) => Vec::new(),
        (one, _) => vec![one],
    };
    let wrong = ids.into_iter().find(|id| id.as_str() != Some(cx.id()))?;
    Some(EcrError::bad(
        "InvalidParameterException",
        format!("registryId {} is not this registry's ({})", wrong.as_str().unwrap_or(&wrong.to_string()), cx.id()),
    ))
}

/// Run operation `op`.
async fn run(cx: &Cx<'_>, op: &str, input: &Value) -> EcrResult {
    match op {
        "GetAuthorizationToken" => get_authorization_token(cx).await,
        "DescribeRegistry" => describe_registry(cx).await,
        "PutReplicationConfiguration" => put_replication_configuration(cx, input).await,
        "CreatePullThroughCacheRule" => create_pull_through_cache_rule(cx, input).await,
        "DescribePullThroughCacheRules" => describe_pull_through_cache_rules(cx, input).await,
        "DeletePullThroughCacheRule" => delete_pull_through_cache_rule(cx, input).await,
        "DescribeRepositories" => describe_repositories(cx, input).await,
        "ListImages" => list_images(cx, input).await,
        "DescribeImages" => describe_images(cx, input).await,
        "BatchDeleteImage" => batch_delete_image(cx, input).await,
        "CreateRepository" => create_repository(cx, input).await,
        "DeleteRepository" => delete_repository(cx, input).await,
        "GetRepositoryPolicy" => get_repository_policy(cx, input).await,
        "SetRepositoryPolicy" => set_repository_policy(cx, input).await,
        "DeleteRepositoryPolicy" => delete_repository_policy(cx, input).await,
        "GetLifecyclePolicy" => lifecycle(cx, input, Lifecycle::Get).await,
        "PutLifecyclePolicy" => lifecycle(cx, input, Lifecycle::Put).await,
        "DeleteLifecyclePolicy" => lifecycle(cx, input, Lifecycle::Delete).await,
        "BatchGetImage" => batch_get_image(cx, input).await,
        "BatchCheckLayerAvailability" => batch_check_layer_availability(cx, input).await,
        "StartImageScan" => start_image_scan(cx, input).await,
        "DescribeImageScanFindings" => describe_image_scan_findings(cx, input).await,
        "PutImage" => put_image(cx, input).await,
        "PutImageTagMutability" => put_image_tag_mutability(cx, input).await,
        "PutImageScanningConfiguration" => put_image_scanning_configuration(cx, input).await,
        "GetRegistryScanningConfiguration" => get_registry_scanning_configuration(cx).await,
        "PutRegistryScanningConfiguration" => put_registry_scanning_configuration(cx, input).await,
        "TagResource" => tag_resource(cx, input).await,
        "UntagResource" => untag_resource(cx, input).await,
        "ListTagsForResource" => list_tags_for_resource(cx, input).await,
        "StartLifecyclePolicyPreview" => start_lifecycle_policy_preview(cx, input).await,
        "GetLifecyclePolicyPreview" => get_lifecycle_policy_preview(cx, input).await,
        other => Err(EcrError::bad(
            "UnsupportedOperationException",
            format!("{other} is not (yet) offered by Berth's ECR API"),
        )),
    }
}

/// What every operation needs.
struct Cx<'a> {
    s: &'a AdminState,
    p: &'a Principal,
    region: &'a str,
    ip: Option<String>,
    headers: &'a HeaderMap,
    /// Set on the ECR API's own listener: the registry's port, for login and URIs.
    registry_port: Option<u16>,
}

impl Cx<'_> {
    fn origin(&self) -> berth_auth::Origin {
        berth_auth::Origin::new(self.p.name(), self.ip.clone())
    }

    /// The registry id (`[ecr] registry_id`).
    fn id(&self) -> &str {
        &self.s.ecr_registry_id
    }

    fn arn(&self, repo: &str) -> String {
        let registry_id = self.id();
        format!("arn:aws:ecr:{}:{registry_id}:repository/{repo}", self.region)
    }

    /// The registry host clients push to (the request's, or `external_url`'s).
    fn host(&self) -> String {
        match &self.s.external_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let host = self.headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
                let host = match self.registry_port {
                    // Asked on the ECR listener: the registry is the same host on the main port.
                    Some(port) => match host.rsplit_once(':') {
                        Some((name, p)) if p.bytes().all(|b| b.is_ascii_digit()) => format!("{name}:{port}"),
                        _ => format!("{host}:{port}"),
                    },
                    None => host.to_owned(),
                };
                format!("{}://{host}", if self.s.tls { "https" } else { "http" })
            }
        }
    }

    /// Does the repository exist (with or without images)?
    async fn exists(&self, repo: &RepoName) -> Result<bool, EcrError> {
        Ok(self.s.registry.repository_exists(repo).await?)
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
        // (`registryId` was checked for every operation: `other_registry`.)
        let repo = repo_name(input)?;
        let name = repo.as_str();
        match self.s.auth.decide(self.p, Target::Repository(repo.as_str(), ecr), perm).await {
            Ok(()) if !must_exist || self.exists(&repo).await? => Ok(repo),
            Ok(()) => Err(not_found(self.id(), name)),
            // A repository the caller may not see is one that does not exist to them.
            Err(Denied::NoProject(_) | Denied::Hidden { .. }) => Err(not_found(self.id(), name)),
            Err(e) => Err(EcrError::from(crate::ApiError::from(e))),
        }
    }
}

/// The request's `repositoryName`, checked.
fn repo_name(input: &Value) -> Result<RepoName, EcrError> {
    let name = match &input["repositoryName"] {
        Value::String(n) => n,
        Value::Null => return Err(EcrError::bad("InvalidParameterException", "repositoryName is required")),
        other => {
            return Err(EcrError::bad(
                "InvalidParameterException",
                format!("repositoryName must be a string, not {other}"),
            ));
        }
    };
    name.parse().map_err(|e| EcrError::bad("InvalidParameterException", format!("repositoryName: {e}")))
}

/// A repository's description as ECR gives it, with its tag mutability and scan on push.
async fn repository_json(cx: &Cx<'_>, name: &RepoName, created_at: i64) -> Result<Value, EcrError> {
    let registry_id = cx.id();
    let host = cx.host();
    let host = host.split("://").nth(1).unwrap_or(&host).to_owned();
    let mutability = cx.s.registry.tag_mutability(name).await?;
    let mut out = json!({
        "repositoryArn": cx.arn(name.as_str()), "registryId": registry_id, "repositoryName": name.as_str(),
        "repositoryUri": format!("{host}/{name}"), "createdAt": epoch(created_at),
        "imageScanningConfiguration": {"scanOnPush": scan_on_push(cx, name).await?},
        "encryptionConfiguration": {"encryptionType": "AES256"},
    });
    if let Value::Object(m) = serde_json::to_value(&mutability).unwrap_or_default() {
        out.as_object_mut().into_iter().for_each(|o| o.extend(m.clone()));
    }
    Ok(out)
}

/// The repository's own `scanOnPush` (ECR's per-repository setting).
async fn scan_on_push(cx: &Cx<'_>, name: &RepoName) -> Result<bool, EcrError> {
    Ok(cx.s.registry.repo_setting(name, "scanning").await?.is_some_and(|v| v["scanOnPush"] == true))
}

fn not_found(registry_id: &str, name: &str) -> EcrError {
    EcrError::bad(
        "RepositoryNotFoundException",
        format!("The repository with name '{name}' does not exist in the registry with id '{registry_id}'"),
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
        return Err(not_found(cx.id(), missing));
    }
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    let total = repos.len();
    let mut list = Vec::new();
    for r in repos.into_iter().skip(start).take(max) {
        let Ok(name) = r.name.parse::<RepoName>() else { continue };
        list.push(repository_json(cx, &name, r.created_at).await?);
    }
    let mut out = json!({"repositories": list});
    if start + max < total {
        out["nextToken"] = json!((start + max).to_string());
    }
    Ok(out)
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
    let registry_id = cx.id();
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
        // ECR's filter: {"tagStatus": "TAGGED" | "UNTAGGED" | "ANY"}.
        chosen = match input["filter"]["tagStatus"].as_str().unwrap_or("ANY") {
            "ANY" => rows,
            "TAGGED" => rows.into_iter().filter(|a| !a.tags.is_empty()).collect(),
            "UNTAGGED" => rows.into_iter().filter(|a| a.tags.is_empty()).collect(),
            other => {
                return Err(EcrError::bad(
                    "InvalidParameterException",
                    format!("filter.tagStatus must be TAGGED, UNTAGGED or ANY, not {other:?}"),
                ));
            }
        };
    }
    let name = repo.to_string();
    let total = chosen.len();
    let mut details = Vec::new();
    for a in chosen.into_iter().skip(start).take(max) {
        let digest = a.record.digest.to_string();
        let mut d = json!({
            "registryId": registry_id, "repositoryName": name, "imageDigest": digest,
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
        // The scan's state and, when done, its counts, as ECR's basic scanning shows them.
        if let Some(rec) = cx.s.scans.record(&digest).await? {
            let (status, description) = scan_status(&rec);
            d["imageScanStatus"] = json!({"status": status, "description": description});
            if let Some(report) = finished_report(&rec)? {
                d["imageScanFindingsSummary"] = json!({
                    "imageScanCompletedAt": rec.finished_at.map(epoch),
                    "findingSeverityCounts": severity_counts(&report),
                });
            }
        }
        details.push(d);
    }
    let mut out = json!({"imageDetails": details});
    if start + max < total {
        out["nextToken"] = json!((start + max).to_string());
    }
    Ok(out)
}

/// `BatchDeleteImage`, as ECR: by digest, the image with all its tags; by tag, the tag, and
/// the image with it when that was its last tag. An image an index lists is not deleted
/// (`ImageReferencedByManifestList`); nor is a tag an immutable tag rule of the project keeps.
async fn batch_delete_image(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::DeleteArtifact, EcrAction::BatchDeleteImage).await?;
    let ids = input["imageIds"]
        .as_array()
        .filter(|a| !a.is_empty() && a.len() <= 100)
        .ok_or_else(|| EcrError::bad("InvalidParameterException", "imageIds must name 1 to 100 images"))?;
    let origin = cx.origin();
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    let fail = |id: &Value, code: &str, why: String| json!({"imageId": id, "failureCode": code, "failureReason": why});
    let mut rows: Option<Vec<berth_registry::ArtifactRow>> = None;
    for id in ids {
        let reference = match (id["imageDigest"].as_str(), id["imageTag"].as_str()) {
            (_, Some(t)) => t.parse::<Reference>().map_err(|e| ("InvalidImageTag", e.to_string())),
            (Some(d), None) => d.parse::<Reference>().map_err(|e| ("InvalidImageDigest", e.to_string())),
            (None, None) => Err(("MissingDigestAndTag", "give imageDigest or imageTag".to_owned())),
        };
        let reference = match reference {
            Ok(r) => r,
            Err((code, why)) => {
                failures.push(fail(id, code, why));
                continue;
            }
        };
        // Read once, and again only after a delete changed them.
        if rows.is_none() {
            rows = Some(cx.s.registry.artifacts(&repo).await?);
        }
        let listing = rows.as_deref().unwrap_or_default();
        let found = listing.iter().find(|a| match &reference {
            Reference::Digest(d) => &a.record.digest == d,
            Reference::Tag(t) => a.tags.iter().any(|(x, _)| x == t.as_str()),
        });
        let Some(a) = found else {
            failures.push(fail(id, "ImageNotFound", "Requested image not found".into()));
            continue;
        };
        let digest = a.record.digest.clone();
        if let Some(d) = id["imageDigest"].as_str().filter(|d| *d != digest.to_string())
            && matches!(reference, Reference::Tag(_))
        {
            failures.push(fail(id, "ImageTagDoesNotMatchDigest", format!("the tag names {digest}, not {d}")));
            continue;
        }
        let tags: Vec<String> = a.tags.iter().map(|(t, _)| t.clone()).collect();
        // The whole image goes when asked by digest, or when its last tag is removed.
        let whole = match &reference {
            Reference::Digest(_) => true,
            Reference::Tag(t) => tags.iter().all(|x| x == t.as_str()),
        };
        // An image an index lists stays (its last tag may go).
        let index = listing.iter().find(|r| r.children.contains(&digest));
        if let (Reference::Digest(_), Some(index)) = (&reference, index) {
            let why = format!("the index {} lists this image; delete that first", index.record.digest);
            failures.push(fail(id, "ImageReferencedByManifestList", why));
            continue;
        }
        let target = if whole && index.is_none() { Reference::Digest(digest.clone()) } else { reference.clone() };
        let outcome = cx.s.registry.manifest_delete(&repo, &target, &origin).await;
        if outcome.is_ok() {
            rows = None;
        }
        match outcome {
            Ok(_) => match &reference {
                Reference::Tag(t) => deleted.push(json!({"imageDigest": digest.to_string(), "imageTag": t.as_str()})),
                Reference::Digest(_) if tags.is_empty() => deleted.push(json!({"imageDigest": digest.to_string()})),
                Reference::Digest(_) => {
                    deleted.extend(tags.iter().map(|t| json!({"imageDigest": digest.to_string(), "imageTag": t})))
                }
            },
            Err(e @ berth_registry::RegistryError::TagImmutable { .. }) => {
                failures.push(fail(id, "ImmutableTag", e.to_string()));
            }
            Err(e) => failures.push(fail(id, "ImageNotFound", crate::ApiError::from(e).message().to_owned())),
        }
    }
    Ok(json!({"imageIds": deleted, "failures": failures}))
}

/// `CreateRepository`: an empty repository in an existing project (ECR has no projects: the
/// first path segment names Berth's), for who may push there, with its tag mutability, scan
/// on push and resource tags (all checked before anything is made).
async fn create_repository(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
    let name = repo_name(input)?;
    let Some((project, _)) = name.as_str().split_once('/') else {
        return Err(EcrError::bad(
            "InvalidParameterException",
            format!(
                "Berth keeps repositories in projects: name it <project>/{name} (e.g. team/{name}), in a project \
                 that exists"
            ),
        ));
    };
    // A project the caller may not see reads as one that does not exist.
    let visible = match cx.s.auth.project(project).await? {
        Some(p) => !matches!(
            cx.s.auth.decide(cx.p, Target::Project(&p), Perm::Read).await,
            Err(Denied::NoProject(_) | Denied::Hidden { .. })
        ),
        None => false,
    };
    if !visible {
        return Err(EcrError::bad(
            "InvalidParameterException",
            format!(
                "Berth keeps repositories in projects: the first part of '{name}' names project '{project}', which does \
                 not exist; create it first (berth project create {project}, or Harbor's POST /api/v2.0/projects)"
            ),
        ));
    }
    let repo = cx.repo_checked(input, Perm::Push, EcrAction::PutImage, false).await?;
    let mutability = tag_mutability_of(input)?;
    let tags = match input.get("tags") {
        Some(t) => resource_tags(t)?,
        None => Vec::new(),
    };
    let scan = input["imageScanningConfiguration"]["scanOnPush"].as_bool();
    let origin = cx.origin();
    if !cx.s.registry.repository_create(&repo, &origin).await? {
        return Err(EcrError::bad(
            "RepositoryAlreadyExistsException",
            format!("The repository with name '{repo}' already exists in the registry with id '{registry_id}'"),
        ));
    }
    if let Some(m) = &mutability {
        cx.s.registry.set_tag_mutability(&repo, m, &origin).await?;
    }
    if scan == Some(true) {
        cx.s.registry.set_repo_setting(&repo, "scanning", Some(&json!({"scanOnPush": true})), &origin).await?;
    }
    if !tags.is_empty() {
        cx.s.registry.set_repo_setting(&repo, "tags", Some(&tags_json(&tags)), &origin).await?;
    }
    Ok(json!({"repository": repository_json(cx, &repo, berth_auth::now_ms()).await?}))
}

/// `DeleteRepository`: only an empty one unless `force`.
async fn delete_repository(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
    let repo = cx.repo(input, Perm::DeleteArtifact, EcrAction::DeleteRepository).await?;
    let summary =
        cx.s.registry
            .project_repos(repo.as_str().split('/').next().unwrap_or_default())
            .await?
            .into_iter()
            .find(|r| r.name == repo.as_str())
            .ok_or_else(|| not_found(cx.id(), repo.as_str()))?;
    if summary.artifact_count > 0 && input["force"].as_bool() != Some(true) {
        return Err(EcrError::bad(
            "RepositoryNotEmptyException",
            format!(
                "The repository with name '{repo}' in registry with id '{registry_id}' cannot be deleted because it still \
                 contains images (force deletes them)"
            ),
        ));
    }
    let description = repository_json(cx, &repo, summary.created_at).await?;
    cx.s.registry.repository_delete(&repo, &cx.origin()).await?;
    Ok(json!({"repository": description}))
}

async fn get_repository_policy(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
    let repo = cx.repo(input, Perm::Read, EcrAction::GetRepositoryPolicy).await?;
    match cx.s.auth.repo_policy(repo.as_str()).await? {
        Some(doc) => Ok(json!({"registryId": registry_id, "repositoryName": repo.as_str(), "policyText": doc})),
        None => Err(EcrError::bad(
            "RepositoryPolicyNotFoundException",
            format!(
                "Repository policy does not exist for the repository with name '{repo}' in the registry with id \
                 '{registry_id}'"
            ),
        )),
    }
}

async fn set_repository_policy(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
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
    Ok(json!({"registryId": registry_id, "repositoryName": repo.as_str(), "policyText": v.to_string()}))
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
    let registry_id = cx.id();
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
                 '{registry_id}'"
            ),
        )
    };
    let policy = match what {
        Lifecycle::Get => cx.s.policies.lifecycle(repo.as_str()).await?.ok_or_else(missing)?,
        Lifecycle::Delete => cx.s.policies.delete_lifecycle(repo.as_str(), &cx.origin()).await?.ok_or_else(missing)?,
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
        json!({"registryId": registry_id, "repositoryName": repo.as_str(), "lifecyclePolicyText": policy.document});
    if let (Lifecycle::Get | Lifecycle::Delete, Some(at)) = (what, policy.evaluated_at) {
        out["lastEvaluatedAt"] = json!(epoch(at));
    }
    Ok(out)
}

/// `BatchGetImage`: manifests by digest or tag, as stored (byte for byte).
async fn batch_get_image(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
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
                    "registryId": registry_id, "repositoryName": repo.as_str(), "imageId": image_id,
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
    let registry_id = cx.id();
    let repo = cx.repo(input, Perm::Scan, EcrAction::StartImageScan).await?;
    let digest = image_digest(cx, &repo, &input["imageId"]).await?;
    let req = berth_scanner::ScanRequest { digest: digest.clone(), repo: repo.to_string(), sbom: false };
    cx.s.scans.request(&[req], &cx.origin()).await?;
    Ok(json!({
        "registryId": registry_id, "repositoryName": repo.as_str(), "imageId": image_id(&input["imageId"], &digest),
        "imageScanStatus": {"status": "IN_PROGRESS", "description": "The scan is queued"},
    }))
}

/// The `imageId` of an answer: the digest, and the tag when the request named one.
fn image_id(asked: &Value, digest: &str) -> Value {
    let mut id = json!({"imageDigest": digest});
    if let Some(t) = asked["imageTag"].as_str() {
        id["imageTag"] = json!(t);
    }
    id
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

/// ECR's status of a scan, and its description.
fn scan_status(rec: &berth_scanner::ScanRecord) -> (&'static str, String) {
    match rec.status.as_str() {
        "done" => ("COMPLETE", "The scan was completed successfully.".to_owned()),
        "failed" => ("FAILED", rec.error.clone().unwrap_or_default()),
        _ => ("IN_PROGRESS", "The scan is in progress.".to_owned()),
    }
}

/// The report of a finished scan.
fn finished_report(rec: &berth_scanner::ScanRecord) -> Result<Option<berth_scan::report::Report>, EcrError> {
    let Some(text) = rec.report.as_deref().filter(|_| rec.status == "done") else { return Ok(None) };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| EcrError(StatusCode::INTERNAL_SERVER_ERROR, "ServerException", e.to_string()))
}

/// Findings per ECR severity name.
fn severity_counts(report: &berth_scan::report::Report) -> Value {
    let mut counts = serde_json::Map::new();
    for f in &report.findings {
        let n = counts.entry(ecr_severity(f.severity)).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    Value::Object(counts)
}

/// `DescribeImageScanFindings`: the stored report in ECR's basic-scanning shape.
async fn describe_image_scan_findings(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
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
    let (status, description) = scan_status(&rec);
    let mut out = json!({
        "registryId": registry_id, "repositoryName": repo.as_str(), "imageId": image_id(&input["imageId"], &digest),
        "imageScanStatus": {"status": status, "description": description},
    });
    let Some(report) = finished_report(&rec)? else { return Ok(out) };
    let counts = severity_counts(&report);
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
    // When the advisories the report was made against were last imported.
    let (sources, _) = cx.s.scans.vulndb_status().await?;
    let updated = sources.iter().map(|v| v.imported_at).max();
    out["imageScanFindings"] = json!({
        "imageScanCompletedAt": rec.finished_at.map(epoch), "vulnerabilitySourceUpdatedAt": updated.map(epoch),
        "findingSeverityCounts": counts, "findings": findings["findings"],
    });
    if let Some(t) = findings.get("nextToken") {
        out["nextToken"] = t.clone();
    }
    Ok(out)
}

/// ECR's `imageTagMutability` (with `imageTagMutabilityExclusionFilters`) of a request, checked.
fn tag_mutability_of(input: &Value) -> Result<Option<berth_registry::TagMutability>, EcrError> {
    let Some(mode) = input.get("imageTagMutability") else { return Ok(None) };
    let mut doc = json!({"imageTagMutability": mode});
    if let Some(f) = input.get("imageTagMutabilityExclusionFilters") {
        doc["imageTagMutabilityExclusionFilters"] = f.clone();
    }
    let m = berth_registry::TagMutability::parse(&doc.to_string())
        .map_err(|e| EcrError::bad("InvalidParameterException", e))?;
    Ok(Some(m))
}

/// `PutImageTagMutability`: the same setting as `…/tag_mutability` and immutable tags.
async fn put_image_tag_mutability(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
    let repo = cx.repo(input, Perm::ManagePolicy, EcrAction::PutImageTagMutability).await?;
    let m = tag_mutability_of(input)?
        .ok_or_else(|| EcrError::bad("InvalidParameterException", "imageTagMutability is required"))?;
    cx.s.registry.set_tag_mutability(&repo, &m, &cx.origin()).await?;
    let mut out = serde_json::to_value(&m).unwrap_or_default();
    out["registryId"] = json!(registry_id);
    out["repositoryName"] = json!(repo.as_str());
    Ok(out)
}

/// `PutImageScanningConfiguration`: the repository's scan on push (in addition to its
/// project's `auto_scan` and the registry's scanning rules: any of them scans a push).
async fn put_image_scanning_configuration(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
    let repo = cx.repo(input, Perm::ManagePolicy, EcrAction::PutImageScanningConfiguration).await?;
    let on = input["imageScanningConfiguration"]["scanOnPush"].as_bool().ok_or_else(|| {
        EcrError::bad("InvalidParameterException", "imageScanningConfiguration.scanOnPush (true or false) is required")
    })?;
    let value = on.then(|| json!({"scanOnPush": true}));
    cx.s.registry.set_repo_setting(&repo, "scanning", value.as_ref(), &cx.origin()).await?;
    Ok(json!({
        "registryId": registry_id, "repositoryName": repo.as_str(), "imageScanningConfiguration": {"scanOnPush": on},
    }))
}

/// `GetRegistryScanningConfiguration`.
async fn get_registry_scanning_configuration(cx: &Cx<'_>) -> EcrResult {
    let registry_id = cx.id();
    cx.s.auth.decide(cx.p, Target::System, Perm::Read).await?;
    let stored = cx.s.auth.stored_setting(berth_scanner::REGISTRY_SCANNING).await?;
    let config: berth_scanner::RegistryScanning =
        stored.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    Ok(json!({"registryId": registry_id, "scanningConfiguration": config}))
}

/// `PutRegistryScanningConfiguration` (system administrators).
async fn put_registry_scanning_configuration(cx: &Cx<'_>, input: &Value) -> EcrResult {
    cx.s.auth.decide(cx.p, Target::System, Perm::ManagePolicy).await?;
    let mut doc = json!({"scanType": input.get("scanType").cloned().unwrap_or(json!("BASIC"))});
    doc["rules"] = input.get("rules").cloned().unwrap_or(json!([]));
    let config: berth_scanner::RegistryScanning = serde_json::from_value(doc)
        .map_err(|e| EcrError::bad("InvalidParameterException", format!("scanning configuration: {e}")))?;
    config.validate().map_err(|e| EcrError::bad("ValidationException", e))?;
    let value = serde_json::to_value(&config).unwrap_or_default();
    cx.s.auth.put_stored_setting(berth_scanner::REGISTRY_SCANNING, &value, &cx.origin()).await?;
    Ok(json!({"registryScanningConfiguration": value}))
}

/// ECR's resource tags (`[{"Key": …, "Value": …}]`), checked as ECR does.
fn resource_tags(v: &Value) -> Result<Vec<(String, String)>, EcrError> {
    let bad = |m: String| EcrError::bad("InvalidTagParameterException", m);
    let list = v.as_array().ok_or_else(|| bad("tags is a list of {Key, Value}".into()))?;
    let mut out = Vec::new();
    for t in list {
        let key = t["Key"].as_str().ok_or_else(|| bad(format!("a tag needs a Key: {t}")))?;
        let value = t["Value"].as_str().unwrap_or_default();
        if key.is_empty() || key.chars().count() > 128 {
            return Err(bad(format!("tag key {key:?}: 1 to 128 characters")));
        }
        if value.chars().count() > 256 {
            return Err(bad(format!("the value of tag {key:?}: at most 256 characters")));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(bad(format!("tag key {key:?}: the aws: prefix is reserved")));
        }
        out.retain(|(k, _): &(String, String)| k != key);
        out.push((key.to_owned(), value.to_owned()));
    }
    if out.len() > MAX_TAGS {
        return Err(EcrError::bad("TooManyTagsException", format!("at most {MAX_TAGS} tags per resource")));
    }
    Ok(out)
}

/// Tags per resource, as ECR.
const MAX_TAGS: usize = 50;

fn tags_json(tags: &[(String, String)]) -> Value {
    json!(tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>())
}

/// The repository a `resourceArn` names (`arn:aws:ecr:<region>:<registry id>:repository/<name>`).
async fn arn_repo(cx: &Cx<'_>, input: &Value, perm: Perm, action: EcrAction) -> Result<RepoName, EcrError> {
    let registry_id = cx.id();
    let arn = input["resourceArn"]
        .as_str()
        .ok_or_else(|| EcrError::bad("InvalidParameterException", "resourceArn is required"))?;
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let name = match parts.as_slice() {
        ["arn", _, "ecr", _, id, rest] if *id == registry_id => rest.strip_prefix("repository/"),
        _ => None,
    }
    .ok_or_else(|| {
        EcrError::bad(
            "InvalidParameterException",
            format!("resourceArn {arn:?} is not a repository of this registry (arn:aws:ecr:<region>:{registry_id}:repository/<name>)"),
        )
    })?;
    cx.repo(&json!({"repositoryName": name}), perm, action).await
}

async fn repo_tags(cx: &Cx<'_>, repo: &RepoName) -> Result<Vec<(String, String)>, EcrError> {
    Ok(match cx.s.registry.repo_setting(repo, "tags").await? {
        Some(v) => resource_tags(&v)?,
        None => Vec::new(),
    })
}

/// `TagResource`: add or replace resource tags of a repository.
async fn tag_resource(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = arn_repo(cx, input, Perm::ManagePolicy, EcrAction::TagResource).await?;
    let new = resource_tags(&input["tags"])?;
    let mut tags = repo_tags(cx, &repo).await?;
    for (k, v) in new {
        tags.retain(|(x, _)| *x != k);
        tags.push((k, v));
    }
    if tags.len() > MAX_TAGS {
        return Err(EcrError::bad("TooManyTagsException", format!("at most {MAX_TAGS} tags per resource")));
    }
    tags.sort();
    cx.s.registry.set_repo_setting(&repo, "tags", Some(&tags_json(&tags)), &cx.origin()).await?;
    Ok(json!({}))
}

/// `UntagResource`: remove resource tags by key.
async fn untag_resource(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = arn_repo(cx, input, Perm::ManagePolicy, EcrAction::UntagResource).await?;
    let keys: Vec<&str> = input["tagKeys"]
        .as_array()
        .ok_or_else(|| EcrError::bad("InvalidParameterException", "tagKeys is required"))?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut tags = repo_tags(cx, &repo).await?;
    tags.retain(|(k, _)| !keys.contains(&k.as_str()));
    let value = (!tags.is_empty()).then(|| tags_json(&tags));
    cx.s.registry.set_repo_setting(&repo, "tags", value.as_ref(), &cx.origin()).await?;
    Ok(json!({}))
}

/// `ListTagsForResource`.
async fn list_tags_for_resource(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = arn_repo(cx, input, Perm::Read, EcrAction::ListTagsForResource).await?;
    Ok(json!({"tags": tags_json(&repo_tags(cx, &repo).await?)}))
}

/// `PutImage`: store a manifest (its layers pushed before), by tag or digest.
async fn put_image(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
    let repo = cx.repo(input, Perm::Push, EcrAction::PutImage).await?;
    let manifest = input["imageManifest"]
        .as_str()
        .ok_or_else(|| EcrError::bad("InvalidParameterException", "imageManifest is required"))?;
    let bytes = axum::body::Bytes::copy_from_slice(manifest.as_bytes());
    let digest = berth_types::Digest::sha256_of(&bytes);
    if let Some(d) = input["imageDigest"].as_str().filter(|d| *d != digest.to_string()) {
        return Err(EcrError::bad(
            "ImageDigestDoesNotMatchException",
            format!("imageDigest {d} is not the digest of imageManifest ({digest})"),
        ));
    }
    let Ok(document) = serde_json::from_str::<Value>(manifest) else {
        return Err(EcrError::bad("InvalidParameterException", "imageManifest is not a JSON document"));
    };
    let own = document["mediaType"].as_str();
    let given = input["imageManifestMediaType"].as_str();
    if let (Some(g), Some(o)) = (given, own)
        && g != o
    {
        return Err(EcrError::bad(
            "InvalidParameterException",
            format!("imageManifestMediaType {g:?} does not match the manifest's own mediaType {o:?}"),
        ));
    }
    let media_type = given.or(own).map(str::to_owned);
    let tag = input["imageTag"].as_str();
    let reference: Reference = match tag {
        Some(t) => t.parse().map_err(|e| {
            EcrError::bad("InvalidParameterException", format!("imageTag {t:?} is not a valid tag: {e}"))
        })?,
        None => Reference::Digest(digest.clone()),
    };
    // ECR refuses a push that changes nothing.
    if let Ok(a) = crate::lookup::find_artifact(cx.s, &repo, tag.unwrap_or(&digest.to_string())).await
        && a.record.digest == digest
    {
        let what = tag.map(|t| format!(" and tag '{t}'")).unwrap_or_default();
        return Err(EcrError::bad(
            "ImageAlreadyExistsException",
            format!("Image with digest '{digest}'{what} already exists in the repository with name '{repo}'"),
        ));
    }
    let out = cx.s.registry.manifest_put(&repo, &reference, media_type.as_deref(), bytes, &[], &cx.origin()).await;
    match out {
        Ok(_) => {}
        Err(berth_registry::RegistryError::TagImmutable { .. }) => {
            return Err(EcrError::bad(
                "ImageTagAlreadyExistsException",
                format!(
                    "The image tag '{}' already exists in the '{repo}' repository and cannot be overwritten because the \
                     tag is immutable.",
                    tag.unwrap_or_default()
                ),
            ));
        }
        Err(berth_registry::RegistryError::ManifestBlobUnknown(missing)) => {
            let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
            return Err(EcrError::bad(
                "LayersNotFoundException",
                format!("The image manifest references layers this repository does not have: {}", list.join(", ")),
            ));
        }
        Err(e @ berth_registry::RegistryError::ManifestInvalid(_)) => {
            return Err(EcrError::bad("InvalidParameterException", e.to_string()));
        }
        Err(e) => return Err(e.into()),
    }
    let mut image_id = json!({"imageDigest": digest.to_string()});
    if let Some(t) = tag {
        image_id["imageTag"] = json!(t);
    }
    let mut image = json!({
        "registryId": registry_id, "repositoryName": repo.as_str(), "imageId": image_id, "imageManifest": manifest,
    });
    if let Some(m) = media_type {
        image["imageManifestMediaType"] = json!(m);
    }
    Ok(json!({"image": image}))
}

/// `StartLifecyclePolicyPreview`: a dry run of the given or stored lifecycle policy.
async fn start_lifecycle_policy_preview(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
    let repo = cx.repo(input, Perm::ManagePolicy, EcrAction::StartLifecyclePolicyPreview).await?;
    let text = input["lifecyclePolicyText"].as_str().filter(|t| !t.trim().is_empty());
    let (_, text) = cx.s.policies.start_preview(repo.as_str(), text).await.map_err(|e| match e {
        berth_jobs::PolicyError::NotFound(_) => EcrError::bad(
            "LifecyclePolicyNotFoundException",
            format!(
                "Lifecycle policy does not exist for the repository with name '{repo}' in the registry with id \
                 '{registry_id}'"
            ),
        ),
        e => EcrError::from(crate::lifecycle::policy_error(e)),
    })?;
    Ok(json!({
        "registryId": registry_id, "repositoryName": repo.as_str(), "lifecyclePolicyText": text,
        "status": "IN_PROGRESS",
    }))
}

/// `GetLifecyclePolicyPreview`: the latest dry run, filtered and paged.
async fn get_lifecycle_policy_preview(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let repo = cx.repo(input, Perm::Read, EcrAction::GetLifecyclePolicyPreview).await?;
    let (start, max) = page(input, 100)?;
    let tag_status = input["filter"]["tagStatus"].as_str();
    let mut out = crate::lifecycle::preview_page(cx.s, &repo, tag_status, start, max).await.map_err(|e| {
        if e.status() == StatusCode::NOT_FOUND {
            EcrError::bad("LifecyclePolicyPreviewNotFoundException", e.message().to_owned())
        } else {
            EcrError::from(e)
        }
    })?;
    // Only the images asked for, when `imageIds` names some.
    if let Some(ids) = input["imageIds"].as_array().filter(|a| !a.is_empty()) {
        let wanted = |r: &Value| {
            ids.iter().any(|id| {
                id["imageDigest"].as_str().is_some_and(|d| r["imageDigest"] == d)
                    || id["imageTag"]
                        .as_str()
                        .is_some_and(|t| r["imageTags"].as_array().is_some_and(|ts| ts.iter().any(|x| x == t)))
            })
        };
        if let Some(list) = out["previewResults"].as_array_mut() {
            list.retain(wanted);
        }
    }
    Ok(out)
}

/// The settings key of the replication configuration as given.
const REGISTRY_REPLICATION: &str = "registry_replication";
/// What the names of the replication policies made from it start with.
const ECR_REPLICATION: &str = "ecr-replication-";

/// The stored replication configuration (`{"rules": []}` when never set).
async fn replication_configuration(cx: &Cx<'_>) -> Result<Value, EcrError> {
    Ok(cx.s.auth.stored_setting(REGISTRY_REPLICATION).await?.unwrap_or_else(|| json!({"rules": []})))
}

/// `DescribeRegistry`.
async fn describe_registry(cx: &Cx<'_>) -> EcrResult {
    let registry_id = cx.id();
    cx.s.auth.decide(cx.p, Target::System, Perm::Read).await?;
    Ok(json!({"registryId": registry_id, "replicationConfiguration": replication_configuration(cx).await?}))
}

/// `PutReplicationConfiguration` (system administrators): each destination is a registry
/// endpoint (its `registryId` the endpoint's id in 12 digits; the region is kept as given),
/// each rule × destination becomes an event-based, push-based replication policy named
/// `ecr-replication-<rule>-<destination>` replacing those of the previous configuration;
/// `PREFIX_MATCH` filters select repositories by name prefix.
async fn put_replication_configuration(cx: &Cx<'_>, input: &Value) -> EcrResult {
    let registry_id = cx.id();
    cx.s.auth.decide(cx.p, Target::System, Perm::ManagePolicy).await?;
    let replication = crate::replication::replication(cx.s)?;
    let bad = |m: String| EcrError::bad("InvalidParameterException", m);
    let config = input
        .get("replicationConfiguration")
        .filter(|c| c.is_object())
        .ok_or_else(|| bad("replicationConfiguration is required".into()))?;
    let rules = config["rules"].as_array().ok_or_else(|| bad("replicationConfiguration.rules is required".into()))?;
    if rules.len() > 10 {
        return Err(bad(format!("at most 10 rules, not {}", rules.len())));
    }
    // Check everything before changing anything.
    let mut specs = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let dests = rule["destinations"].as_array().filter(|d| !d.is_empty() && d.len() <= 25);
        let dests = dests.ok_or_else(|| bad(format!("rule {} must have 1 to 25 destinations", i + 1)))?;
        let mut prefixes = Vec::new();
        for f in rule["repositoryFilters"].as_array().into_iter().flatten() {
            let (Some(filter), Some("PREFIX_MATCH")) = (f["filter"].as_str(), f["filterType"].as_str()) else {
                return Err(bad(format!(
                    "rule {}: a repository filter is {{filter, filterType: PREFIX_MATCH}}",
                    i + 1
                )));
            };
            let ok = !filter.is_empty()
                && filter.len() <= 256
                && filter.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/._-".contains(&b));
            if !ok {
                return Err(bad(format!(
                    "rule {}: filter {filter:?} must be 1 to 256 of a-z, 0-9, '/', '.', '_', '-'",
                    i + 1
                )));
            }
            prefixes.push(format!("{filter}**"));
        }
        for (j, d) in dests.iter().enumerate() {
            let (Some(region), Some(id)) = (d["region"].as_str(), d["registryId"].as_str()) else {
                return Err(bad(format!("rule {}: a destination is {{region, registryId}}", i + 1)));
            };
            let endpoint = id.parse::<i64>().ok().filter(|_| id.len() == 12 && id != registry_id);
            let endpoint = endpoint.ok_or_else(|| {
                bad(format!(
                    "rule {}: registryId {id:?}: a destination is one of Berth's registry endpoints, its id in 12 \
                     digits (endpoint 3 is 000000000003; berth registry list shows them)",
                    i + 1
                ))
            })?;
            let name =
                cx.s.upstreams
                    .get(endpoint)
                    .await
                    .map_err(|_| {
                        bad(format!("rule {}: registryId {id}: Berth has no registry endpoint {endpoint}", i + 1))
                    })?
                    .name;
            let mut spec = json!({
                "name": format!("{ECR_REPLICATION}{}-{}", i + 1, j + 1),
                "description": format!("ECR replication rule {} to {name} ({region})", i + 1),
                "dest_registry": {"id": endpoint}, "trigger": {"type": "event_based"}, "override": true,
                "enabled": true,
            });
            if !prefixes.is_empty() {
                spec["filters"] = json!([{"type": "name", "value": prefixes.join(",")}]);
            }
            let spec: berth_registry::PolicySpec = serde_json::from_value(spec).map_err(|e| bad(e.to_string()))?;
            spec.validate().map_err(bad)?;
            specs.push(spec);
        }
    }
    let origin = cx.origin();
    for old in replication.store().replication_policies().await? {
        if old.name.starts_with(ECR_REPLICATION) {
            replication.delete(old.id, &origin).await?;
        }
    }
    for spec in &specs {
        replication.create(spec, &origin).await?;
    }
    let stored = json!({"rules": rules});
    cx.s.auth.put_stored_setting(REGISTRY_REPLICATION, &stored, &origin).await?;
    Ok(json!({"replicationConfiguration": stored}))
}

/// ECR's name for the kind of upstream of an endpoint, when ECR has one.
fn upstream_registry(kind: &str, url: &str) -> Option<&'static str> {
    Some(match kind {
        "docker-hub" => "docker-hub",
        "github-ghcr" => "github-container-registry",
        "quay" => "quay",
        _ if url.contains("registry.k8s.io") => "k8s",
        _ if url.contains("public.ecr.aws") => "ecr-public",
        _ if url.contains("gitlab") => "gitlab-container-registry",
        _ if url.contains("azurecr.io") => "azure-container-registry",
        _ => return None,
    })
}

/// A pull-through cache rule in ECR's shape.
fn cache_rule_json(
    (registry_id, region): (&str, &str),
    rule: &berth_registry::CacheRule,
    endpoint: &berth_registry::UpstreamRecord,
) -> Value {
    let url = endpoint.url.strip_prefix("https://").unwrap_or(&endpoint.url);
    let mut out = json!({
        "ecrRepositoryPrefix": rule.prefix, "upstreamRegistryUrl": url, "createdAt": epoch(rule.created_at),
        "updatedAt": epoch(rule.created_at), "registryId": registry_id,
    });
    if let Some(kind) = upstream_registry(&endpoint.kind, &endpoint.url) {
        out["upstreamRegistry"] = json!(kind);
    }
    if !rule.upstream_prefix.is_empty() {
        out["upstreamRepositoryPrefix"] = json!(rule.upstream_prefix.trim_end_matches('/'));
    }
    if !endpoint.access_key.is_empty() {
        out["credentialArn"] =
            json!(format!("arn:aws:secretsmanager:{region}:{registry_id}:secret:{SECRET_PREFIX}{}", endpoint.name));
    }
    out
}

/// ECR keeps upstream credentials in Secrets Manager under this prefix; in Berth a
/// `credentialArn` names a registry endpoint (with its credentials) after it.
const SECRET_PREFIX: &str = "ecr-pullthroughcache/";

/// `CreatePullThroughCacheRule` (system administrators): repositories under
/// `ecrRepositoryPrefix` are pulled through from the upstream (Berth's proxy cache). The
/// prefix's first part is a project, made (private) when missing. The upstream is the
/// registry endpoint the `credentialArn` names (`…:secret:ecr-pullthroughcache/<endpoint>`),
/// else an anonymous endpoint of that URL, made when missing.
async fn create_pull_through_cache_rule(cx: &Cx<'_>, input: &Value) -> EcrResult {
    cx.s.auth.decide(cx.p, Target::System, Perm::ManagePolicy).await?;
    let bad = |m: String| EcrError::bad("InvalidParameterException", m);
    let prefix = input["ecrRepositoryPrefix"].as_str().unwrap_or_default();
    if !(2..=30).contains(&prefix.len()) || prefix.parse::<RepoName>().is_err() {
        return Err(bad(format!("ecrRepositoryPrefix {prefix:?}: 2 to 30 characters of a valid repository name")));
    }
    let url = input["upstreamRegistryUrl"].as_str().filter(|u| !u.is_empty());
    let url = url.ok_or_else(|| bad("upstreamRegistryUrl is required".into()))?;
    let full_url = if url.contains("://") { url.to_owned() } else { format!("https://{url}") };
    let upstream_prefix = match input["upstreamRepositoryPrefix"].as_str().filter(|p| !p.is_empty() && *p != "ROOT") {
        Some(p) => format!("{}/", p.trim_end_matches('/')),
        None => String::new(),
    };
    let rules = cx.s.upstreams.cache_rules().await?;
    if rules.iter().any(|r| r.prefix == prefix) {
        return Err(EcrError::bad(
            "PullThroughCacheRuleAlreadyExistsException",
            format!("A pull through cache rule with the prefix '{prefix}' already exists"),
        ));
    }
    // Repositories pushed here are never taken over by a cache.
    let project = prefix.split('/').next().unwrap_or(prefix);
    let inside = format!("{prefix}/");
    if let Some(r) = cx.s.registry.project_repos(project).await?.iter().find(|r| r.name.starts_with(&inside)) {
        return Err(bad(format!(
            "ecrRepositoryPrefix {prefix:?} already holds repositories (such as {}): a cache rule needs a prefix of its \
             own",
            r.name
        )));
    }
    let endpoints = cx.s.upstreams.list().await?;
    let origin = cx.origin();
    let endpoint = match input["credentialArn"].as_str() {
        Some(arn) => {
            let name = arn.split_once(&format!(":secret:{SECRET_PREFIX}")).map(|(_, n)| n).unwrap_or_default();
            // Secrets Manager appends "-" and six characters to a secret's name in its ARN.
            let trimmed = name.rsplit_once('-').filter(|(_, s)| s.len() == 6).map(|(n, _)| n);
            endpoints
                .iter()
                .find(|e| e.name == name || Some(e.name.as_str()) == trimmed)
                .ok_or_else(|| {
                    EcrError::bad(
                        "SecretNotFoundException",
                        format!(
                            "credentialArn {arn:?} names no registry endpoint: in Berth it is \
                             arn:aws:secretsmanager:<region>:<id>:secret:{SECRET_PREFIX}<endpoint name>, the endpoint \
                             holding the credentials (berth registry create)"
                        ),
                    )
                })?
                .id
        }
        // An endpoint of that URL (of that host, when the URL names no scheme: plain HTTP too).
        None => match endpoints.iter().find(|e| {
            let theirs = e.url.trim_end_matches('/');
            let same =
                theirs == full_url || (!url.contains("://") && theirs.split_once("://").map(|(_, h)| h) == Some(url));
            same && e.access_key.is_empty()
        }) {
            Some(e) => e.id,
            None => {
                let kind = match input["upstreamRegistry"].as_str() {
                    Some("docker-hub") => "docker-hub",
                    Some("github-container-registry") => "github-ghcr",
                    Some("quay") => "quay",
                    _ if url.contains("docker.io") => "docker-hub",
                    _ if url.contains("ghcr.io") => "github-ghcr",
                    _ if url.contains("quay.io") => "quay",
                    _ => "docker-registry",
                };
                let spec = berth_registry::EndpointSpec {
                    name: format!("ecr-cache-{}", prefix.replace('/', "-")),
                    kind: kind.into(),
                    url: full_url.clone(),
                    description: made_for(prefix),
                    ..Default::default()
                };
                cx.s.upstreams.create(&spec, &origin).await?
            }
        },
    };
    let project = prefix.split('/').next().unwrap_or(prefix);
    if cx.s.auth.project(project).await?.is_none() {
        let settings = berth_auth::ProjectSettings::default();
        cx.s.auth.create_project(project, cx.p, &settings, &origin).await?;
    }
    let made = cx.s.upstreams.create_cache_rule(prefix, endpoint, &upstream_prefix, 0, &origin).await?;
    if !made {
        return Err(EcrError::bad(
            "PullThroughCacheRuleAlreadyExistsException",
            format!("A pull through cache rule with the prefix '{prefix}' already exists"),
        ));
    }
    let rule = cx.s.upstreams.cache_rules().await?;
    let rule = rule.iter().find(|r| r.prefix == prefix).cloned();
    let rule = rule.ok_or_else(|| EcrError::bad("ServerException", "the rule vanished"))?;
    let endpoint = cx.s.upstreams.get(endpoint).await?;
    Ok(cache_rule_json((cx.id(), cx.region), &rule, &endpoint))
}

/// `DescribePullThroughCacheRules`: every rule (Harbor's proxy-cache projects included).
async fn describe_pull_through_cache_rules(cx: &Cx<'_>, input: &Value) -> EcrResult {
    cx.s.auth.decide(cx.p, Target::System, Perm::Read).await?;
    let (start, max) = page(input, 100)?;
    let rules = cx.s.upstreams.cache_rules().await?;
    let wanted: Option<Vec<&str>> =
        input["ecrRepositoryPrefixes"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect());
    if let Some(missing) = wanted.iter().flatten().find(|w| !rules.iter().any(|r| r.prefix == **w)) {
        return Err(no_cache_rule(missing));
    }
    let mut list = Vec::new();
    for r in rules.iter().filter(|r| wanted.as_ref().is_none_or(|w| w.contains(&r.prefix.as_str()))) {
        let endpoint = cx.s.upstreams.get(r.upstream_id).await?;
        list.push(cache_rule_json((cx.id(), cx.region), r, &endpoint));
    }
    Ok(paged(list, start, max, "pullThroughCacheRules", |v| v))
}

/// The description of an endpoint made for the cache rule of `prefix`.
fn made_for(prefix: &str) -> String {
    format!("Upstream of the pull-through cache rule {prefix}")
}

fn no_cache_rule(prefix: &str) -> EcrError {
    EcrError::bad(
        "PullThroughCacheRuleNotFoundException",
        format!("The pull through cache rule with the prefix '{prefix}' does not exist"),
    )
}

/// `DeletePullThroughCacheRule`: nothing is pulled through under the prefix any more; what
/// was cached stays (as in ECR), and so does the registry endpoint.
async fn delete_pull_through_cache_rule(cx: &Cx<'_>, input: &Value) -> EcrResult {
    cx.s.auth.decide(cx.p, Target::System, Perm::ManagePolicy).await?;
    let prefix = input["ecrRepositoryPrefix"].as_str().unwrap_or_default();
    let rules = cx.s.upstreams.cache_rules().await?;
    let rule = rules.iter().find(|r| r.prefix == prefix).cloned().ok_or_else(|| no_cache_rule(prefix))?;
    let endpoint = cx.s.upstreams.get(rule.upstream_id).await?;
    cx.s.upstreams.delete_cache_rule(prefix, &cx.origin()).await?;
    // The endpoint made for this rule goes with it, unless something else uses it now.
    if endpoint.description == made_for(prefix) {
        let _ = cx.s.upstreams.delete(endpoint.id, &cx.origin()).await;
    }
    Ok(cache_rule_json((cx.id(), cx.region), &rule, &endpoint))
}
