//! Vulnerability scanning in Harbor's shapes: scan an artifact, its report and SBOM
//! (`additions`), scan all, and the CVE allowlists (system-wide and per project).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use berth_auth::rbac::Perm;
use berth_scan::report::{Report, allowlisted};
use berth_scanner::ScanRequest;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::shapes::{AllowlistReq, REPORT_MIME, allowlist_items, allowlist_json, scanner_json, status_word};
use crate::{AdminState, ApiError, ApiResult, Caller, bad_request, json_body, not_found, time};

pub(crate) fn routes() -> Router<AdminState> {
    let art = "/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}";
    Router::new()
        .route(&format!("{art}/scan"), post(scan))
        .route(&format!("{art}/additions/vulnerabilities"), get(vulnerabilities))
        .route(&format!("{art}/additions/sbom"), get(sbom))
        .route("/api/v2.0/system/scanAll/schedule", post(scan_all).get(scan_all_schedule))
        .route("/api/v2.0/system/scanAll/metrics", get(scan_all_metrics))
        .route("/api/v2.0/system/CVEAllowlist", get(get_allowlist).put(put_allowlist))
}

fn internal(e: anyhow::Error) -> ApiError {
    ApiError::internal("the scanner", format!("{e:#}"))
}

#[expect(clippy::too_many_arguments, reason = "the route's parts, its permission and its policy action")]
async fn artifact_digest(
    s: &AdminState,
    c: &Caller,
    headers: &HeaderMap,
    p: &str,
    r: &str,
    reference: &str,
    perm: Perm,
    ecr: berth_auth::policy::EcrAction,
) -> Result<(berth_auth::ProjectRecord, berth_types::RepoName, String, String), ApiError> {
    let (project, repo) = crate::lookup::repo_of(s, c, headers, p, r, perm, ecr).await?;
    let a = crate::lookup::find_artifact(s, &repo, reference).await?;
    Ok((project, repo, a.record.digest.to_string(), a.record.media_type.clone()))
}

async fn scan(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference)): Path<(String, String, String)>,
    body: String,
) -> ApiResult {
    let (project, repo, digest, _) = artifact_digest(
        &s,
        &c,
        &headers,
        &p,
        &r,
        &reference,
        Perm::Scan,
        berth_auth::policy::EcrAction::StartImageScan,
    )
    .await?;
    // Harbor's body `{"scan_type": "sbom"}` asks for an SBOM (pushed as referrers) too.
    let scan_type = if body.trim().is_empty() {
        "vulnerability".to_owned()
    } else {
        let v: Value =
            serde_json::from_str(&body).map_err(|e| bad_request(format!("expected {{\"scan_type\": …}}: {e}")))?;
        v["scan_type"].as_str().unwrap_or("vulnerability").to_owned()
    };
    let sbom = match scan_type.as_str() {
        "sbom" => true,
        "vulnerability" => project.settings.auto_sbom,
        other => return Err(bad_request(format!("scan_type {other:?}: use vulnerability or sbom"))),
    };
    s.scans.request(&[ScanRequest { digest, repo: repo.to_string(), sbom }], &c.origin()).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn vulnerabilities(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (project, repo, digest, mime) = artifact_digest(
        &s,
        &c,
        &headers,
        &p,
        &r,
        &reference,
        Perm::Pull,
        berth_auth::policy::EcrAction::DescribeImageScanFindings,
    )
    .await?;
    let rec =
        s.scans.record(&digest).await?.ok_or_else(|| not_found(format!("{repo}@{digest} has not been scanned")))?;
    let Some(text) = &rec.report else {
        return Err(not_found(format!("the scan of {repo}@{digest} is {}", status_word(&rec).to_lowercase())));
    };
    let report: Report = serde_json::from_str(text).map_err(|e| bad_request(e.to_string()))?;
    let fixable_only = q.get("fixable").is_some_and(|v| v == "true");
    let ids = s.scans.allowed_ids(&project).await.map_err(internal)?;
    let allowed = allowlisted(&ids);
    let vulns: Vec<Value> = report
        .findings
        .iter()
        .filter(|f| !fixable_only || f.fixed_version.is_some())
        .map(|f| {
            let mut v = json!({
                "id": f.id, "package": f.package, "version": f.version, "fix_version": f.fixed_version.clone().unwrap_or_default(),
                "severity": f.severity.as_str(), "description": f.description, "links": f.links,
                "artifact_digests": [digest], "cwe_ids": [],
                "vendor_attributes": {"ids": f.ids, "allowlisted": allowed(f), "purl": f.purl},
            });
            if !f.evidence.is_installed() {
                v["vendor_attributes"]["evidence"] = json!(f.evidence);
            }
            // Harbor's CVSS object has v3 and v2 fields; every version is in vendor_attributes.
            if let Some((score, vector)) = &f.cvss {
                let version = if vector.starts_with("CVSS:") { &vector[5..6] } else { "2" };
                if version == "3" || version == "2" {
                    v["preferred_cvss"] = json!({format!("score_v{version}"): score, format!("vector_v{version}"): vector});
                }
                v["vendor_attributes"]["cvss"] = json!({"score": score, "vector": vector});
            }
            if let Some(source) = &f.severity_source {
                v["vendor_attributes"]["severity_source"] = json!(source);
            }
            if let Some(status) = &f.status {
                v["vendor_attributes"]["status"] = json!(status);
            }
            v
        })
        .collect();
    let sum = report.summary(&allowed);
    let body = json!({ REPORT_MIME: {
        "generated_at": rec.finished_at.map(time), "artifact": {"repository": repo.as_str(), "digest": digest, "mime_type": mime},
        "scanner": scanner_json(), "severity": sum.highest.map(|h| h.as_str()).unwrap_or("None"),
        "vulnerabilities": vulns,
        "summary": {"total": sum.total, "fixable": sum.fixable, "summary": sum.by_severity},
        "packages": report.packages, "unparsable_versions": report.unparsable, "unreadable_files": report.unreadable,
        "database_generation": rec.generation,
    }});
    let mut body = body;
    if let Some(why) = &report.not_applicable {
        body[REPORT_MIME]["not_applicable"] = json!(why);
    }
    Ok(Json(body).into_response())
}

async fn sbom(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (_, repo, digest, _) = artifact_digest(
        &s,
        &c,
        &headers,
        &p,
        &r,
        &reference,
        Perm::Pull,
        berth_auth::policy::EcrAction::DescribeImages,
    )
    .await?;
    let format = match q.get("format").map(String::as_str).unwrap_or("cyclonedx") {
        f @ ("cyclonedx" | "spdx") => f,
        other => return Err(bad_request(format!("format {other:?}: use cyclonedx or spdx"))),
    };
    let doc = s
        .scans
        .sbom_document(repo.as_str(), &digest, format)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("{repo}@{digest} has no inventory yet: scan it first")))?;
    Ok(([(http::header::CONTENT_TYPE, berth_scanner::sbom_media_type(format))], doc.to_string()).into_response())
}

#[derive(Deserialize)]
struct Schedule {
    schedule: Option<Value>,
}

async fn scan_all(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<Schedule>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let req = json_body(body)?;
    let kind = req.schedule.as_ref().and_then(|v| v["type"].as_str()).unwrap_or("Manual");
    if kind != "Manual" {
        return Err(bad_request(format!("schedule type {kind:?}: Berth runs scan-all on demand (\"Manual\")")));
    }
    scan_everything(&s, &c.origin()).await?;
    Ok(StatusCode::CREATED.into_response())
}

/// Ask for a scan of every artifact (SBOM artifacts excepted); returns how many.
pub(crate) async fn scan_everything(s: &AdminState, origin: &berth_auth::Origin) -> Result<usize, ApiError> {
    let mut requests = Vec::new();
    for p in s.auth.projects().await? {
        for r in s.registry.project_repos(&p.name).await? {
            let Ok(repo) = r.name.parse::<berth_types::RepoName>() else { continue };
            for a in s.registry.artifacts(&repo).await? {
                if a.record
                    .artifact_type
                    .as_deref()
                    .is_some_and(|t| t.contains("sbom") || t.contains("spdx") || t.contains("cyclonedx"))
                {
                    continue;
                }
                requests.push(ScanRequest { digest: a.record.digest.to_string(), repo: repo.to_string(), sbom: false });
            }
        }
    }
    for chunk in requests.chunks(1000) {
        s.scans.request(chunk, origin).await?;
    }
    Ok(requests.len())
}

async fn scan_all_schedule(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.sysadmin(&s).await?;
    Ok(Json(json!({"schedule": {"type": "Manual"}})).into_response())
}

async fn scan_all_metrics(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.sysadmin(&s).await?;
    let scans = s.scans.records().await?;
    let mut metrics: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &scans {
        *metrics.entry(status_word(r)).or_default() += 1;
    }
    let completed = metrics.get("Success").copied().unwrap_or(0) + metrics.get("Error").copied().unwrap_or(0);
    let ongoing = metrics.get("Pending").copied().unwrap_or(0) + metrics.get("Running").copied().unwrap_or(0) > 0;
    Ok(Json(json!({"total": scans.len(), "completed": completed, "metrics": metrics, "ongoing": ongoing, "trigger": "Manual"}))
        .into_response())
}

async fn get_allowlist(State(s): State<AdminState>, c: Caller) -> ApiResult {
    c.authenticated()?;
    Ok(Json(allowlist_json(&s, "", 0, (0, 0)).await?).into_response())
}

async fn put_allowlist(
    State(s): State<AdminState>,
    c: Caller,
    body: Result<Json<AllowlistReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    c.sysadmin(&s).await?;
    let items = allowlist_items(&json_body(body)?)?;
    s.scans.put_allowlist("", &items, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}
