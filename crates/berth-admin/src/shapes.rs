//! Harbor's shapes of scan reports and CVE allowlists, shared by the project, repository
//! and scan endpoints (a leaf module: it calls no other endpoint module).

use berth_scan::report::{Report, allowlisted};
use berth_scanner::ScanRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AdminState, ApiError, bad_request, time};

/// The report MIME type Harbor keys reports by.
pub(crate) const REPORT_MIME: &str = "application/vnd.security.vulnerability.report; version=1.1";

pub(crate) fn scanner_json() -> Value {
    json!({"name": "Berth", "vendor": "Berth", "version": env!("CARGO_PKG_VERSION")})
}

pub(crate) fn status_word(rec: &ScanRecord) -> &'static str {
    match rec.status.as_str() {
        "done" => "Success",
        "running" => "Running",
        "failed" => "Error",
        _ => "Pending",
    }
}

/// The `scan_overview` of an artifact, Harbor's shape (`None` when it was never scanned).
pub(crate) async fn overview(
    s: &AdminState,
    project: &berth_auth::ProjectRecord,
    digest: &str,
) -> Result<Option<Value>, ApiError> {
    let Some(rec) = s.scans.record(digest).await? else { return Ok(None) };
    let mut o = json!({
        "report_id": digest, "scan_status": status_word(&rec), "scanner": scanner_json(),
        "start_time": rec.started_at.map(time), "end_time": rec.finished_at.map(time),
        "complete_percent": if rec.status == "done" { 100 } else { 0 },
    });
    if let (Some(start), Some(end)) = (rec.started_at, rec.finished_at) {
        o["duration"] = json!((end - start).max(0) / 1000);
    }
    if let Some(e) = &rec.error {
        o["error"] = json!(e);
    }
    if let Some(text) = &rec.report {
        let report: Report = serde_json::from_str(text).map_err(|e| bad_request(e.to_string()))?;
        let ids =
            s.scans.allowed_ids(project).await.map_err(|e| ApiError::internal("the scanner", format!("{e:#}")))?;
        let sum = report.summary(&allowlisted(&ids));
        o["severity"] = json!(sum.highest.map(|h| h.as_str()).unwrap_or("None"));
        o["summary"] = json!({"total": sum.total, "fixable": sum.fixable, "summary": sum.by_severity});
        if let Some(why) = &report.not_applicable {
            o["not_applicable"] = json!(why);
        }
    }
    Ok(Some(json!({ REPORT_MIME: o })))
}

#[derive(Deserialize)]
pub(crate) struct AllowlistReq {
    #[serde(default)]
    items: Vec<AllowItem>,
    expires_at: Option<i64>,
}

#[derive(Deserialize)]
struct AllowItem {
    cve_id: String,
}

/// Validate an allowlist body: `(cve id, expiry in Unix ms or -1)` pairs.
pub(crate) fn allowlist_items(req: &AllowlistReq) -> Result<Vec<(String, i64)>, ApiError> {
    let exp = match req.expires_at {
        None => -1,
        Some(s) if s > 0 => s * 1000,
        Some(_) => -1,
    };
    let mut out = Vec::new();
    for (i, it) in req.items.iter().enumerate() {
        let id = it.cve_id.trim();
        if id.is_empty() || id.len() > 64 || id.contains(char::is_whitespace) {
            return Err(bad_request(format!("items[{i}].cve_id {:?} is not a vulnerability id", it.cve_id)));
        }
        out.push((id.to_owned(), exp));
    }
    Ok(out)
}

/// The allowlist JSON of a scope, Harbor's `CVEAllowlist` shape.
pub(crate) async fn allowlist_json(
    s: &AdminState,
    scope: &str,
    project_id: i64,
    times: (i64, i64),
) -> Result<Value, ApiError> {
    let items = s.scans.allowlist(scope).await?;
    let exp = items.iter().map(|(_, e)| *e).find(|e| *e >= 0).map(|e| e / 1000);
    Ok(json!({
        "id": 0, "project_id": project_id, "expires_at": exp,
        "creation_time": time(times.0), "update_time": time(times.1),
        "items": items.iter().map(|(id, _)| json!({"cve_id": id})).collect::<Vec<_>>(),
    }))
}
