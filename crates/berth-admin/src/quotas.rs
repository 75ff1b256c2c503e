//! Harbor's quota API (`/api/v2.0/quotas`: a storage quota per project, its id the project's
//! id) and project summaries, plus Berth's `POST /api/v2.0/quotas/verify` (recompute every
//! project's usage from what it holds, and with `?fix=true` correct any difference).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use berth_auth::ProjectRecord;
use berth_auth::rbac::Perm;
use berth_registry::QuotaRecord;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::lookup::resolve_with;
use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, json_body, not_found, time};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/quotas", get(list))
        .route("/api/v2.0/quotas/verify", post(verify))
        .route("/api/v2.0/quotas/{id}", get(show).put(update))
        .route("/api/v2.0/projects/{p}/summary", get(summary))
        .route("/api/v2.0/usage", get(usage))
        .route("/api/v2.0/statistics", get(statistics))
}

/// Berth's metering: `?project=P&from=YYYY-MM-DD&to=YYYY-MM-DD` (UTC days, both included;
/// default the last 30 days). A project's members may read its usage; all projects (no
/// `project`) need a system administrator.
async fn usage(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let project = match q.get("project").filter(|p| !p.is_empty()) {
        Some(p) => Some(resolve_with(&s, &c, &headers, p, Perm::Read).await?.name),
        None => {
            c.sysadmin(&s).await?;
            None
        }
    };
    let today = berth_auth::now_ms().div_euclid(86_400_000);
    let day = |k: &str, default: i64| -> Result<i64, ApiError> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => berth_registry::day_of(v)
                .ok_or_else(|| bad_request(format!("{k} must be a date like 2026-12-05, not {v:?}"))),
        }
    };
    let to = day("to", today)?;
    let from = day("from", to - 29)?;
    if from > to || to - from > 3660 {
        return Err(bad_request("from must be on or before to, at most ten years apart"));
    }
    let rows = s.registry.usage(project.as_deref(), from, to).await?;
    let body: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "project": r.project, "date": berth_registry::date_of(r.day), "stored_bytes": r.stored_bytes,
                "pushed_bytes": r.pushed_bytes, "pulled_bytes": r.pulled_bytes, "pushes": r.pushes, "pulls": r.pulls,
            })
        })
        .collect();
    Ok(Json(body).into_response())
}

/// Harbor's statistics: project and repository counts (those the caller can see) and the
/// storage all projects use.
async fn statistics(State(s): State<AdminState>, c: Caller) -> ApiResult {
    use berth_auth::Target;
    let (mut public, mut private, mut public_repos, mut private_repos) = (0, 0, 0, 0);
    for p in s.auth.projects().await? {
        if s.auth.decide(&c.p, Target::Project(&p), Perm::Read).await.is_err() {
            continue;
        }
        let repos = s.registry.project_repos(&p.name).await?.len();
        if p.settings.public() {
            public += 1;
            public_repos += repos;
        } else {
            private += 1;
            private_repos += repos;
        }
    }
    let mut body = json!({
        "public_project_count": public, "private_project_count": private, "total_project_count": public + private,
        "public_repo_count": public_repos, "private_repo_count": private_repos,
        "total_repo_count": public_repos + private_repos,
    });
    // Storage is a system figure, shown to system administrators as Harbor does.
    if c.sysadmin(&s).await.is_ok() {
        let total: i64 = s.registry.quotas().await?.iter().map(|q| q.used).sum();
        body["total_storage_consumption"] = json!(total);
    }
    Ok(Json(body).into_response())
}

async fn owner_name(s: &AdminState, p: &ProjectRecord) -> String {
    match s.auth.user(p.owner_id).await {
        Ok(Some(u)) => u.username,
        _ => String::new(),
    }
}

async fn quota_json(s: &AdminState, p: &ProjectRecord, q: &QuotaRecord) -> serde_json::Value {
    json!({
        "id": p.id,
        "ref": {"id": p.id, "name": p.name, "owner_name": owner_name(s, p).await},
        "hard": {"storage": q.hard},
        "used": {"storage": q.used},
        "creation_time": time(p.created_at),
        "update_time": time(q.updated_at.max(p.created_at)),
    })
}

async fn list(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    if let Some(r) = q.get("reference").filter(|r| !r.is_empty() && r.as_str() != "project") {
        return Err(bad_request(format!("reference {r:?}: quotas are per project (reference=project)")));
    }
    let wanted: Option<i64> = match q.get("reference_id").filter(|v| !v.is_empty()) {
        Some(v) => Some(v.parse().map_err(|_| bad_request(format!("reference_id must be a number, not {v:?}")))?),
        None => None,
    };
    let stored: HashMap<String, QuotaRecord> =
        s.registry.quotas().await?.into_iter().map(|q| (q.project.clone(), q)).collect();
    let mut items = Vec::new();
    for p in s.auth.projects().await? {
        if wanted.is_some_and(|id| id != p.id) {
            continue;
        }
        let q = stored.get(&p.name).cloned().unwrap_or_else(|| QuotaRecord {
            project: p.name.clone(),
            hard: -1,
            used: 0,
            updated_at: p.created_at,
        });
        items.push(quota_json(&s, &p, &q).await);
    }
    // Harbor sorts by `sort=used.storage` / `-used.storage` / `hard.storage`; name otherwise.
    if let Some(key) = q.get("sort").filter(|k| !k.is_empty()) {
        let (desc, key) = match key.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, key.as_str()),
        };
        let field = match key {
            "used.storage" => "used",
            "hard.storage" => "hard",
            other => return Err(bad_request(format!("sort {other:?}: use used.storage or hard.storage"))),
        };
        items.sort_by_key(|v| v[field]["storage"].as_i64().unwrap_or(0));
        if desc {
            items.reverse();
        }
    }
    crate::paginate(items, &q, "/api/v2.0/quotas")
}

async fn project_of_quota(s: &AdminState, id: &str) -> Result<ProjectRecord, ApiError> {
    let id: i64 = id.parse().map_err(|_| bad_request(format!("quota id must be a number, not {id:?}")))?;
    s.auth.project_by_id(id).await?.ok_or_else(|| not_found(format!("no quota {id}")))
}

async fn show(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.sysadmin(&s).await?;
    let p = project_of_quota(&s, &id).await?;
    let q = s.registry.quota(&p.name).await?;
    Ok(Json(quota_json(&s, &p, &q).await).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaUpdate {
    hard: HashMap<String, i64>,
}

/// The storage limit a client asked for: bytes, `-1` for unlimited.
pub(crate) fn storage_limit(v: i64) -> Result<i64, ApiError> {
    if v < -1 || v == 0 {
        return Err(bad_request(format!(
            "the storage limit must be a positive number of bytes, or -1 for unlimited, not {v}"
        )));
    }
    Ok(v)
}

async fn update(
    State(s): State<AdminState>,
    c: Caller,
    Path(id): Path<String>,
    body: Result<Json<QuotaUpdate>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let p = project_of_quota(&s, &id).await?;
    let req = json_body(body)?;
    if let Some(k) = req.hard.keys().find(|k| k.as_str() != "storage") {
        return Err(bad_request(format!("hard.{k}: Berth's quotas limit storage only (hard.storage)")));
    }
    let hard = req.hard.get("storage").ok_or_else(|| bad_request("hard.storage is required"))?;
    s.registry.set_quota(&p.name, storage_limit(*hard)?).await?;
    Ok(StatusCode::OK.into_response())
}

async fn summary(State(s): State<AdminState>, c: Caller, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::Read).await?;
    let q = s.registry.quota(&project.name).await?;
    let repos = s.registry.project_repos(&project.name).await?;
    let members = s.auth.members(project.id).await?;
    let count = |role: i64| members.iter().filter(|m| m.role_id == role).count();
    Ok(Json(json!({
        "repo_count": repos.len(),
        "project_admin_count": count(1),
        "maintainer_count": count(4),
        "developer_count": count(2),
        "guest_count": count(3),
        "limited_guest_count": count(5),
        "quota": {"hard": {"storage": q.hard}, "used": {"storage": q.used}},
    }))
    .into_response())
}

async fn verify(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let fix = match q.get("fix").map(String::as_str) {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(v) => return Err(bad_request(format!("fix must be true or false, not {v:?}"))),
    };
    let checks = s.registry.verify_quotas(fix).await?;
    let body: Vec<_> = checks
        .iter()
        .map(|c| {
            json!({
                "project": c.project,
                "stored": c.stored,
                "computed": c.computed,
                "objects_off": c.objects_off,
                "consistent": c.stored == c.computed && c.objects_off == 0,
                "fixed": fix && (c.stored != c.computed || c.objects_off > 0),
            })
        })
        .collect();
    Ok(Json(body).into_response())
}
