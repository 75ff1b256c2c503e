//! Registry endpoints (`/api/v2.0/registries`, Harbor's shapes): the other registries that
//! proxy caches pull from and replication talks to. Create, list (`q=name=~x`), show, change,
//! delete, ping (a stored one, or one being typed in), what each type supports (`/info`,
//! `/replication/adapters`). Credentials are write-only: an access secret is shown as
//! `*****`. System administrators only.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use berth_registry::{EndpointSpec, KINDS, UpstreamError, UpstreamRecord};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    AdminState, ApiError, ApiResult, Caller, bad_request, created, json_body, not_found, paginate, q_terms, time,
};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/registries", get(list).post(create))
        .route("/api/v2.0/registries/ping", post(ping))
        .route("/api/v2.0/registries/{id}", get(show).put(update).delete(remove))
        .route("/api/v2.0/registries/{id}/info", get(info))
        .route("/api/v2.0/replication/adapters", get(adapters))
        .route("/api/v2.0/replication/adapterinfos", get(adapter_infos))
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Invalid(m) => bad_request(m),
            e @ UpstreamError::NotFound(_) => not_found(e.to_string()),
            e @ UpstreamError::Conflict(_) => ApiError::Conflict(e.to_string()),
            UpstreamError::InUse(m) => ApiError::PreconditionFailed(m),
            e @ UpstreamError::Sealed(..) => ApiError::internal("opening a stored credential", e),
            UpstreamError::Client(c) => bad_request(format!("failed to ping the registry: {c}")),
            UpstreamError::Meta(m) => m.into(),
        }
    }
}

/// Harbor's `Registry`, the secret masked; plus Berth's `ca_certificate`.
pub(crate) fn registry_json(r: &UpstreamRecord) -> Value {
    let credential = if r.access_key.is_empty() && r.secret.is_none() {
        json!({"type": "basic", "access_key": "", "access_secret": ""})
    } else {
        json!({"type": "basic", "access_key": r.access_key, "access_secret": "*****"})
    };
    json!({
        "id": r.id, "name": r.name, "description": r.description, "type": r.kind, "url": r.url,
        "insecure": r.insecure, "credential": credential, "status": r.status,
        "creation_time": time(r.created_at), "update_time": time(r.updated_at),
        "ca_certificate": r.ca_pem.clone().unwrap_or_default(),
    })
}

fn id_of(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| bad_request(format!("registry id must be a number, not {id:?}")))
}

async fn list(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let mut name = q.get("name").cloned();
    for (k, v, _) in q_terms(&q) {
        match k.as_str() {
            "name" => name = Some(v),
            other => return Err(bad_request(format!("unknown query key {other:?} in q; use name"))),
        }
    }
    let items = s
        .upstreams
        .list()
        .await?
        .iter()
        .filter(|r| name.as_deref().is_none_or(|n| r.name.contains(n)))
        .map(registry_json)
        .collect();
    paginate(items, &q, "/api/v2.0/registries")
}

#[derive(Deserialize, Default)]
struct Credential {
    #[serde(default, rename = "type")]
    _kind: Option<String>,
    #[serde(default)]
    access_key: Option<String>,
    #[serde(default)]
    access_secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryReq {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    insecure: Option<bool>,
    #[serde(default)]
    credential: Option<Credential>,
    // `RegistryUpdate` and `RegistryPing` spell the credential flat.
    #[serde(default)]
    credential_type: Option<String>,
    #[serde(default)]
    access_key: Option<String>,
    #[serde(default)]
    access_secret: Option<String>,
    /// Berth: a CA certificate (PEM) to trust for this registry.
    #[serde(default)]
    ca_certificate: Option<String>,
    // What Harbor's responses carry, sent back by clients that round-trip a registry.
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    creation_time: Option<Value>,
    #[serde(default)]
    update_time: Option<Value>,
}

impl RegistryReq {
    fn access_key(&self) -> Option<String> {
        self.access_key.clone().or_else(|| self.credential.as_ref().and_then(|c| c.access_key.clone()))
    }

    /// The secret given; `*****` (what a GET shows) means "keep the stored one".
    fn secret(&self) -> Option<String> {
        self.access_secret
            .clone()
            .or_else(|| self.credential.as_ref().and_then(|c| c.access_secret.clone()))
            .filter(|s| s != "*****")
    }

    /// The endpoint it describes, on top of `base` (what is stored, for a change).
    fn spec(&self, base: Option<&UpstreamRecord>) -> EndpointSpec {
        let _ = (&self.credential_type, &self.status, &self.creation_time, &self.update_time);
        EndpointSpec {
            name: self.name.clone().or_else(|| base.map(|b| b.name.clone())).unwrap_or_default(),
            kind: self
                .kind
                .clone()
                .or_else(|| base.map(|b| b.kind.clone()))
                .unwrap_or_else(|| "docker-registry".into()),
            url: self.url.clone().or_else(|| base.map(|b| b.url.clone())).unwrap_or_default(),
            description: self.description.clone().or_else(|| base.map(|b| b.description.clone())).unwrap_or_default(),
            insecure: self.insecure.or(base.map(|b| b.insecure)).unwrap_or(false),
            access_key: self.access_key().or_else(|| base.map(|b| b.access_key.clone())).unwrap_or_default(),
            secret: self.secret(),
            ca_pem: self.ca_certificate.clone().or_else(|| base.and_then(|b| b.ca_pem.clone())),
        }
    }
}

async fn create(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<RegistryReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let req = json_body(body)?;
    if req.url.as_deref().is_none_or(str::is_empty) {
        return Err(bad_request("url is required"));
    }
    let id = s.upstreams.create(&req.spec(None), &c.origin()).await?;
    Ok(created(&format!("/api/v2.0/registries/{id}")))
}

async fn show(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    Ok(Json(registry_json(&s.upstreams.get(id_of(&id)?).await?)).into_response())
}

async fn update(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<RegistryReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let id = id_of(&id)?;
    let req = json_body(body)?;
    let old = s.upstreams.get(id).await?;
    s.upstreams.update(id, &req.spec(Some(&old)), &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

async fn remove(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    let id = id_of(&id)?;
    if !s.upstreams.delete(id, &c.origin()).await? {
        return Err(not_found(format!("registry {id} not found")));
    }
    Ok(StatusCode::OK.into_response())
}

/// Harbor's ping: `{"id": n}` checks a stored registry (and records its status); a full
/// description checks one before it is saved (with `id`, its stored secret fills a masked one).
async fn ping(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<RegistryReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let req = json_body(body)?;
    match (req.id, req.url.as_deref()) {
        (Some(id), None) => s.upstreams.ping(id).await?,
        (id, Some(_)) => {
            let base = match id {
                Some(id) => Some(s.upstreams.get(id).await?),
                None => None,
            };
            s.upstreams.ping_spec(&req.spec(base.as_ref()), id).await?
        }
        (None, None) => return Err(bad_request("give the id of a registry, or its url (and credential)")),
    }
    Ok(StatusCode::OK.into_response())
}

fn adapter_info(kind: &str) -> Value {
    json!({
        "type": kind,
        "description": KINDS.iter().find(|(k, _)| *k == kind).map(|(_, d)| *d).unwrap_or(""),
        "supported_resource_filters": [
            {"type": "name", "style": "input"},
            {"type": "tag", "style": "input"},
            {"type": "label", "style": "input"},
            {"type": "resource", "style": "radio", "values": ["image", "artifact"]},
        ],
        "supported_triggers": ["manual", "scheduled", "event_based"],
        "supported_copy_by_chunk": false,
    })
}

async fn info(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    let r = s.upstreams.get(id_of(&id)?).await?;
    Ok(Json(adapter_info(&r.kind)).into_response())
}

async fn adapters(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.sysadmin(&s).await?;
    Ok(Json(KINDS.iter().map(|(k, _)| *k).collect::<Vec<_>>()).into_response())
}

async fn adapter_infos(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.sysadmin(&s).await?;
    let map: serde_json::Map<String, Value> = KINDS
        .iter()
        .map(|(k, d)| (k.to_string(), json!({"name": k, "description": d, "endpoint_pattern": null})))
        .collect();
    Ok(Json(Value::Object(map)).into_response())
}
