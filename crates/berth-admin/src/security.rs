//! Harbor's scanner registrations (Berth has one scanner, built in: listed as the default,
//! read-only) and the security hub (`/vul/summary`, `/vuls`: findings across every scanned
//! artifact, for system administrators).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use berth_auth::rbac::Perm;
use berth_scan::report::Report;
use http::HeaderMap;
use serde_json::{Value, json};

use crate::shapes::{REPORT_MIME, scanner_json};
use crate::{AdminState, ApiError, ApiResult, Caller, forbidden, not_found, paginate, q_terms, time};

/// The built-in scanner's registration id.
pub(crate) const SCANNER_UUID: &str = "berth-builtin";

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/scanners", get(list).post(read_only))
        .route("/api/v2.0/scanners/{id}", get(show).put(read_only).delete(read_only).patch(read_only))
        .route("/api/v2.0/scanners/{id}/metadata", get(metadata))
        .route("/api/v2.0/projects/{p}/scanner", get(project_scanner).put(read_only))
        .route("/api/v2.0/projects/{p}/scanner/candidates", get(candidates))
        .route("/api/v2.0/vul/summary", get(summary))
        .route("/api/v2.0/vuls", get(vulnerabilities))
}

fn registration() -> Value {
    let at = time(0);
    json!({
        "uuid": SCANNER_UUID, "name": "Berth", "description":
            "Berth's built-in scanner: OS and language packages matched against the offline OSV database",
        "url": "builtin://berth", "disabled": false, "is_default": true, "auth": "", "access_credential": "",
        "skip_certVerify": false, "use_internal_addr": true, "create_time": at, "update_time": at,
        "adapter": "Berth", "vendor": "Berth", "version": env!("CARGO_PKG_VERSION"), "health": "healthy",
        "capabilities": {"support_vulnerability": true, "support_sbom": true},
    })
}

async fn read_only() -> ApiResult {
    Err(forbidden("Berth has one scanner, built in: it cannot be added, changed, removed or replaced"))
}

async fn list(c: Caller) -> ApiResult {
    c.authenticated()?;
    Ok(Json(json!([registration()])).into_response())
}

async fn show(c: Caller, Path(id): Path<String>) -> ApiResult {
    c.authenticated()?;
    if id != SCANNER_UUID {
        return Err(not_found(format!("no scanner {id:?}: Berth's only scanner is {SCANNER_UUID:?}")));
    }
    Ok(Json(registration()).into_response())
}

async fn metadata(State(s): State<AdminState>, c: Caller, Path(id): Path<String>) -> ApiResult {
    c.authenticated()?;
    if id != SCANNER_UUID {
        return Err(not_found(format!("no scanner {id:?}: Berth's only scanner is {SCANNER_UUID:?}")));
    }
    let (sources, generation) = s.scans.vulndb_status().await?;
    let updated = sources.iter().map(|v| v.imported_at).max();
    let consumes =
        ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
    Ok(Json(json!({
        "scanner": scanner_json(),
        "capabilities": [
            {"type": "vulnerability", "consumes_mime_types": consumes, "produces_mime_types": [REPORT_MIME]},
            {"type": "sbom", "consumes_mime_types": consumes,
             "produces_mime_types": ["application/vnd.security.sbom.report+json; version=1.0"]},
        ],
        "properties": {
            "harbor.scanner-adapter/scanner-type": "os-package-vulnerability",
            "harbor.scanner-adapter/vulnerability-database-updated-at": updated.map(time),
            "berth/vulnerability-database-generation": generation.to_string(),
            "berth/vulnerability-database-sources": sources.iter().map(|v| v.name.clone()).collect::<Vec<_>>().join(","),
        },
    }))
    .into_response())
}

async fn project_scanner(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
) -> ApiResult {
    crate::lookup::resolve_with(&s, &c, &headers, &p, Perm::Read).await?;
    Ok(Json(registration()).into_response())
}

async fn candidates(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    crate::lookup::resolve_with(&s, &c, &headers, &p, Perm::UpdateProject).await?;
    paginate(vec![registration()], &q, &format!("/api/v2.0/projects/{p}/scanner/candidates"))
}

/// Every finding of every artifact whose scan is done: (repository, digest, report).
async fn reports(s: &AdminState) -> Result<Vec<(String, String, Report)>, ApiError> {
    let mut out = Vec::new();
    for r in s.scans.records().await? {
        if r.status != "done" {
            continue;
        }
        if let Some(report) = r.report.as_deref().and_then(|t| serde_json::from_str::<Report>(t).ok()) {
            out.push((r.repo, r.digest, report));
        }
    }
    Ok(out)
}

/// Project ids by name.
async fn project_ids(s: &AdminState) -> Result<HashMap<String, i64>, ApiError> {
    Ok(s.auth.projects().await?.into_iter().map(|p| (p.name, p.id)).collect())
}

fn project_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// `GET /vul/summary`: findings by severity across the registry, with the most dangerous
/// CVEs and artifacts when asked for.
async fn summary(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let reports = reports(&s).await?;
    let ids = project_ids(&s).await?;
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    let (mut total, mut fixable) = (0usize, 0usize);
    for (_, _, r) in &reports {
        for f in &r.findings {
            *counts.entry(f.severity.as_str()).or_default() += 1;
            total += 1;
            fixable += usize::from(f.fixed_version.is_some());
        }
    }
    let mut artifacts = 0usize;
    for p in s.auth.projects().await? {
        for r in s.registry.project_repos(&p.name).await? {
            artifacts += r.artifact_count.max(0) as usize;
        }
    }
    let n = |sev: &str| counts.get(sev).copied().unwrap_or(0);
    let mut body = json!({
        "critical_cnt": n("Critical"), "high_cnt": n("High"), "medium_cnt": n("Medium"), "low_cnt": n("Low"),
        "none_cnt": n("None"), "unknown_cnt": n("Unknown"), "total_vuls": total, "fixable_cnt": fixable,
        "scanned_cnt": reports.len(), "total_artifact": artifacts,
    });
    if q.get("with_dangerous_cve").is_some_and(|v| v == "true") {
        let mut all: Vec<&berth_scan::db::Finding> = reports.iter().flat_map(|(_, _, r)| &r.findings).collect();
        all.sort_by(|a, b| {
            b.severity.cmp(&a.severity).then(
                b.cvss
                    .as_ref()
                    .map(|c| c.0)
                    .partial_cmp(&a.cvss.as_ref().map(|c| c.0))
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
        });
        all.dedup_by(|a, b| a.id == b.id);
        body["dangerous_cves"] = json!(
            all.iter()
                .take(5)
                .map(|f| json!({
                    "cve_id": f.id, "severity": f.severity.as_str(), "cvss_score_v3": f.cvss.as_ref().map(|c| c.0),
                    "desc": f.description, "package": f.package, "version": f.version,
                }))
                .collect::<Vec<_>>()
        );
    }
    if q.get("with_dangerous_artifact").is_some_and(|v| v == "true") {
        let count = |r: &Report, sev: &str| r.findings.iter().filter(|f| f.severity.as_str() == sev).count();
        let mut ranked: Vec<&(String, String, Report)> = reports.iter().collect();
        ranked.sort_by_key(|(_, _, r)| std::cmp::Reverse((count(r, "Critical"), count(r, "High"), count(r, "Medium"))));
        body["dangerous_artifacts"] = json!(ranked.iter().take(5).map(|(repo, digest, r)| json!({
            "project_id": ids.get(project_of(repo)).copied().unwrap_or(0), "repository_name": repo, "digest": digest,
            "critical_cnt": count(r, "Critical"), "high_cnt": count(r, "High"), "medium_cnt": count(r, "Medium"),
        })).collect::<Vec<_>>());
    }
    Ok(Json(body).into_response())
}

/// `GET /vuls?q=cve_id=…,severity=…,repository_name=…,package=…,project_id=…,digest=…`:
/// findings across the registry, one item per (artifact, finding), paged.
async fn vulnerabilities(
    State(s): State<AdminState>,
    c: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let filters: Vec<(String, String, bool)> = q_terms(&q);
    let ids = project_ids(&s).await?;
    let mut tags_of: HashMap<String, HashMap<String, Vec<String>>> = HashMap::new();
    let mut out = Vec::new();
    for (repo, digest, report) in reports(&s).await? {
        let project_id = ids.get(project_of(&repo)).copied().unwrap_or(0);
        for f in &report.findings {
            let keep = filters.iter().all(|(k, v, fuzzy)| {
                let text = match k.as_str() {
                    "cve_id" => f.id.clone(),
                    "severity" => f.severity.as_str().to_owned(),
                    "repository_name" => repo.clone(),
                    "package" => f.package.clone(),
                    "digest" => digest.clone(),
                    "project_id" => project_id.to_string(),
                    _ => return true,
                };
                if *fuzzy { text.contains(v.as_str()) } else { text.eq_ignore_ascii_case(v) }
            });
            if !keep {
                continue;
            }
            if !tags_of.contains_key(&repo) {
                let mut by_digest: HashMap<String, Vec<String>> = HashMap::new();
                if let Ok(name) = repo.parse::<berth_types::RepoName>() {
                    for a in s.registry.artifacts(&name).await? {
                        by_digest.insert(a.record.digest.to_string(), a.tags.iter().map(|(t, _)| t.clone()).collect());
                    }
                }
                tags_of.insert(repo.clone(), by_digest);
            }
            let tags = tags_of.get(&repo).and_then(|m| m.get(&digest)).cloned().unwrap_or_default();
            out.push(json!({
                "project_id": project_id, "repository_name": repo, "digest": digest, "tags": tags,
                "cve_id": f.id, "severity": f.severity.as_str(), "status": if f.fixed_version.is_some() { "fixed" } else { "" },
                "cvss_v3_score": f.cvss.as_ref().map(|c| c.0), "package": f.package, "version": f.version,
                "fixed_version": f.fixed_version, "desc": f.description, "links": f.links,
            }));
        }
    }
    paginate(out, &q, "/api/v2.0/vuls")
}
