//! Harbor's shapes of scan reports and CVE allowlists, shared by the project, repository
//! and scan endpoints (a leaf module: it calls no other endpoint module).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AdminState, ApiError, bad_request, time};

pub(crate) use berth_scanner::{REPORT_MIME, scanner_json, status_word};

/// The `scan_overview` of an artifact, Harbor's shape (`None` when it was never scanned).
pub(crate) async fn overview(
    s: &AdminState,
    project: &berth_auth::ProjectRecord,
    digest: &str,
) -> Result<Option<Value>, ApiError> {
    s.scans.harbor_overview(project, digest).await.map_err(|e| ApiError::internal("the scanner", format!("{e:#}")))
}

/// [`overview`] of each artifact listed, by digest, read together.
pub(crate) async fn overviews<'a>(
    s: &AdminState,
    project: &berth_auth::ProjectRecord,
    artifacts: impl Iterator<Item = &'a berth_registry::ArtifactRow>,
) -> Result<std::collections::HashMap<String, Value>, ApiError> {
    let digests: Vec<String> = artifacts.map(|a| a.record.digest.to_string()).collect();
    s.scans.harbor_overviews(project, &digests).await.map_err(|e| ApiError::internal("the scanner", format!("{e:#}")))
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
