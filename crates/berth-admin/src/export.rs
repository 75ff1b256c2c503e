//! Harbor's CVE export (`/export/cve`): the findings of the projects a user names, as a CSV
//! made by a durable job (`cve-export`) and downloaded by the user who asked. The export sees
//! what its user may read, when it runs.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_auth::rbac::Perm;
use berth_auth::{Auth, Principal, Target};
use berth_policy::{PatternOptions, PatternSet, Syntax};
use berth_registry::Registry;
use berth_scan::report::Report;
use berth_scanner::Scanning;
use http::header;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, not_found, time};

/// The job kind that makes an export.
pub const CVE_EXPORT: &str = "cve-export";

/// Most rows one export holds (then it fails, asking for a narrower one).
pub const MAX_EXPORT_ROWS: usize = 1_000_000;

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/export/cve", post(start))
        .route("/api/v2.0/export/cve/executions", get(list))
        .route("/api/v2.0/export/cve/execution/{id}", get(show))
        .route("/api/v2.0/export/cve/download/{id}", get(download))
}

/// Harbor's `ScanDataExportRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// A name for it.
    #[serde(default)]
    pub job_name: String,
    /// Project ids (at least one).
    #[serde(default)]
    pub projects: Vec<i64>,
    /// Label ids: only artifacts with one of them (empty: any).
    #[serde(default)]
    pub labels: Vec<i64>,
    /// Repository name patterns, comma-separated (empty: all).
    #[serde(default)]
    pub repositories: String,
    /// Vulnerability ids, comma-separated (empty: all).
    #[serde(default, rename = "cveIds")]
    pub cve_ids: String,
    /// Tag patterns, comma-separated (empty: any artifact).
    #[serde(default)]
    pub tags: String,
}

fn patterns(field: &str, text: &str) -> Result<Option<PatternSet>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    PatternSet::comma_separated(text, Syntax::PathGlob, PatternOptions::default())
        .map(Some)
        .map_err(|e| format!("{field}: {e}"))
}

fn user_id(p: &Principal) -> i64 {
    match p {
        Principal::User(u) => u.id,
        Principal::Robot(r) => -r.id,
        _ => 0,
    }
}

fn execution_json(e: &berth_scanner::ExportRecord) -> Value {
    json!({
        "id": e.id, "user_id": e.user_id, "user_name": e.user_name, "status": e.status, "trigger": "MANUAL",
        "start_time": time(e.started_at), "end_time": e.ended_at.map(time), "status_text": e.status_text,
        "file_present": e.file_present,
    })
}

/// `POST /export/cve`: check the request, record it, queue the job; `{"id": …}`.
async fn start(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<ExportRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.authenticated()?;
    let req = crate::json_body(body)?;
    if req.projects.is_empty() {
        return Err(bad_request("projects: name at least one project id to export"));
    }
    patterns("repositories", &req.repositories).map_err(bad_request)?;
    patterns("tags", &req.tags).map_err(bad_request)?;
    let all = s.auth.projects().await?;
    for id in &req.projects {
        let p = all.iter().find(|p| p.id == *id).ok_or_else(|| not_found(format!("project {id} not found")))?;
        if s.auth.decide(&c.p, Target::Project(p), Perm::Read).await.is_err() {
            return Err(not_found(format!("project {id} not found")));
        }
    }
    let text = serde_json::to_string(&req).map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = s.scans.create_export(user_id(&c.p), c.p.name(), &text).await?;
    let job = berth_jobs::NewJob {
        kind: CVE_EXPORT.into(),
        payload: json!({ "id": id }).to_string(),
        dedup_key: Some(format!("{CVE_EXPORT}-{id}")),
        max_attempts: 3,
        run_after: 0,
    };
    s.jobs.enqueue(&job).await?;
    Ok(Json(json!({ "id": id })).into_response())
}

/// The export `id` if the caller asked for it (administrators see every one).
async fn own(s: &AdminState, c: &Caller, id: i64) -> Result<berth_scanner::ExportRecord, ApiError> {
    let e = s.scans.export(id).await?.ok_or_else(|| not_found(format!("CVE export {id} not found")))?;
    let admin = s.auth.decide(&c.p, Target::System, Perm::Administer).await.is_ok();
    if !admin && (e.user_name != c.p.name() || e.user_id != user_id(&c.p)) {
        return Err(not_found(format!("CVE export {id} not found")));
    }
    Ok(e)
}

async fn list(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.authenticated()?;
    let mine: Vec<Value> = s
        .scans
        .exports(Some(user_id(&c.p)))
        .await?
        .iter()
        .filter(|e| e.user_name == c.p.name())
        .map(execution_json)
        .collect();
    Ok(Json(json!({ "items": mine })).into_response())
}

async fn show(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> ApiResult {
    c.authenticated()?;
    Ok(Json(execution_json(&own(&s, &c, id).await?)).into_response())
}

async fn download(State(s): State<AdminState>, c: Caller, Path(id): Path<i64>) -> Result<Response, ApiError> {
    c.authenticated()?;
    let e = own(&s, &c, id).await?;
    let Some(csv) = e.csv else {
        return Err(ApiError::Conflict(match e.status.as_str() {
            "Running" => format!("CVE export {id} is still running"),
            _ => format!("CVE export {id} has no file: {}", e.status_text),
        }));
    };
    let name = format!("attachment; filename=\"cve-export-{id}.csv\"");
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, name)], csv)
        .into_response())
}

fn cell(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_owned() }
}

/// Make the CSV of export `e` as its user may see it now: the row count and the text.
pub async fn build(
    registry: &Registry,
    auth: &Auth,
    scans: &Scanning,
    e: &berth_scanner::ExportRecord,
) -> Result<(usize, String), String> {
    let req: ExportRequest = serde_json::from_str(&e.request).map_err(|x| format!("stored request: {x}"))?;
    let who = auth
        .principal_by_name(&e.user_name)
        .await
        .map_err(|x| x.to_string())?
        .ok_or_else(|| format!("{} no longer exists", e.user_name))?;
    let repos = patterns("repositories", &req.repositories)?;
    let tags = patterns("tags", &req.tags)?;
    let cves: Vec<&str> = req.cve_ids.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
    let mut out = String::from(
        "Project,Repository,Digest,Tags,Vulnerability,Severity,CVSS3 Score,Package,Version,Fixed Version,Description,Links\n",
    );
    let mut rows = 0usize;
    for p in auth.projects().await.map_err(|x| x.to_string())? {
        if !req.projects.contains(&p.id) || auth.decide(&who, Target::Project(&p), Perm::Read).await.is_err() {
            continue;
        }
        for r in registry.project_repos(&p.name).await.map_err(|x| x.to_string())? {
            let short = r.name.strip_prefix(&format!("{}/", p.name)).unwrap_or(&r.name);
            if repos.as_ref().is_some_and(|set| !set.matches(short) && !set.matches(&r.name)) {
                continue;
            }
            let Ok(name) = r.name.parse::<berth_types::RepoName>() else { continue };
            let labels: HashMap<String, Vec<i64>> = if req.labels.is_empty() {
                HashMap::new()
            } else {
                let all = registry.labels().repo_labels(&r.name).await.map_err(|x| x.to_string())?;
                all.into_iter().map(|(d, ls)| (d, ls.iter().map(|l| l.id).collect())).collect()
            };
            for a in registry.artifacts(&name).await.map_err(|x| x.to_string())? {
                let digest = a.record.digest.to_string();
                let names: Vec<&str> = a.tags.iter().map(|(t, _)| t.as_str()).collect();
                if tags.as_ref().is_some_and(|set| !names.iter().any(|t| set.matches(t))) {
                    continue;
                }
                if !req.labels.is_empty()
                    && !labels.get(&digest).is_some_and(|ls| ls.iter().any(|l| req.labels.contains(l)))
                {
                    continue;
                }
                let Some(rec) = scans.record(&digest).await.map_err(|x| x.to_string())? else { continue };
                let Some(report) = rec.report.as_deref().and_then(|t| serde_json::from_str::<Report>(t).ok()) else {
                    continue;
                };
                for f in &report.findings {
                    if !cves.is_empty() && !cves.iter().any(|c| f.id == *c || f.ids.iter().any(|i| i == c)) {
                        continue;
                    }
                    rows += 1;
                    if rows > MAX_EXPORT_ROWS {
                        return Err(format!("more than {MAX_EXPORT_ROWS} rows: narrow the export"));
                    }
                    let score = f.cvss.as_ref().map(|c| format!("{:.1}", c.0)).unwrap_or_default();
                    let line = [
                        p.name.as_str(),
                        r.name.as_str(),
                        digest.as_str(),
                        &names.join(" "),
                        f.id.as_str(),
                        f.severity.as_str(),
                        &score,
                        f.package.as_str(),
                        f.version.as_str(),
                        f.fixed_version.as_deref().unwrap_or(""),
                        f.description.as_str(),
                        &f.links.join(" "),
                    ]
                    .map(cell)
                    .join(",");
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        }
    }
    Ok((rows, out))
}
