//! An artifact's page: what it is, its vulnerability report (severity counts; the findings,
//! filterable by severity and fixability through plain links, with fix versions, CVSS and
//! advisory links) and its SBOM in SPDX or CycloneDX (the API's endpoint, which the session
//! cookie opens). Readable by whoever may pull the repository.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_auth::Target;
use berth_auth::rbac::Perm;
use berth_scan::cvss::Severity;
use berth_scan::report::Report;
use maud::html;

use super::project::open;
use super::{human_bytes, layout, with_cookies};
use crate::AdminState;

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route("/harbor/projects/{id}/repositories/{repo}/artifacts-tab/artifacts/{digest}", get(show))
}

const LEVELS: [Severity; 6] =
    [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Unknown, Severity::None];

async fn show(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, repo, digest)): Path<(i64, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let here = format!("/harbor/projects/{id}/repositories/{}/artifacts-tab/artifacts/{digest}", crate::enc(&repo));
    let (who, p, token, cookies) = match open(&s, &headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let full = format!("{}/{repo}", p.name);
    let not_found = || {
        let body = html! { h1 { "Artifact not found" } p { "There is no artifact " (digest) " in " (full) ", or you may not see it." } };
        with_cookies(layout("Not found", Some(&who), "/harbor/projects", &token, body), StatusCode::NOT_FOUND, &cookies)
    };
    let Ok(name) = full.parse::<berth_types::RepoName>() else { return not_found() };
    let ecr = berth_auth::policy::EcrAction::DescribeImageScanFindings;
    if s.auth.decide(&who, Target::Repository(name.as_str(), ecr), Perm::Pull).await.is_err() {
        return not_found();
    }
    let rows = s.registry.artifacts(&name).await.unwrap_or_default();
    let Some(a) = rows.into_iter().find(|a| a.record.digest.to_string() == digest) else { return not_found() };
    let record = s.scans.record(&digest).await.ok().flatten();
    let report: Option<Report> =
        record.as_ref().and_then(|r| r.report.as_deref()).and_then(|t| serde_json::from_str(t).ok());
    let severity = q.get("severity").and_then(|v| LEVELS.iter().find(|l| l.as_str().eq_ignore_ascii_case(v)).copied());
    let fixable = q.get("fixable").is_some_and(|v| v == "1");
    let api = format!("/api/v2.0/projects/{}/repositories/{}/artifacts/{digest}", p.name, crate::enc(&repo));
    let link = |sev: Option<Severity>, fix: bool| {
        let mut parts = Vec::new();
        if let Some(s) = sev {
            parts.push(format!("severity={}", s.as_str()));
        }
        if fix {
            parts.push("fixable=1".to_string());
        }
        if parts.is_empty() { here.clone() } else { format!("{here}?{}", parts.join("&")) }
    };
    let body = html! {
        p.crumbs {
            a href="/harbor/projects" { "Projects" } " / "
            a href=(format!("/harbor/projects/{}/repositories", p.id)) { (p.name) } " / "
            a href=(format!("/harbor/projects/{}/repositories/{}/artifacts-tab", p.id, crate::enc(&repo))) { (repo) } " / "
        }
        h1 { code { (digest.get(..19).unwrap_or(&digest)) } }
        div.panel {
            dl.facts {
                dt { "Digest" } dd { code { (digest) } }
                dt { "Tags" } dd { @for (t, _) in &a.tags { span.badge { (t) } " " } @if a.tags.is_empty() { span.muted { "untagged" } } }
                dt { "Type" } dd { (a.record.artifact_type.clone().unwrap_or_else(|| a.record.media_type.clone())) }
                dt { "Size" } dd { (human_bytes(a.total_size)) }
                dt { "Pushed" } dd { (crate::time(a.record.created_at)) }
                @if !a.children.is_empty() { dt { "Platforms" } dd { (a.children.len()) " manifests" } }
            }
        }
        h2 { "Vulnerabilities" }
        div.panel.stack {
            @match (&record, &report) {
                (None, _) => { p.muted { "Not scanned yet." } }
                (Some(r), None) => { p.muted { "Scan " (crate::shapes::status_word(r).to_lowercase()) "." } }
                (Some(_), Some(rep)) => {
                    @let count = |l: Severity| rep.findings.iter().filter(|f| f.severity == l).count();
                    p.counts {
                        @for l in LEVELS {
                            @let n = count(l);
                            @if n > 0 { span class=(format!("badge sev-{}", l.as_str().to_lowercase())) { (n) " " (l.as_str()) } " " }
                        }
                        @if rep.findings.is_empty() { span.badge.public { "No known vulnerabilities" } }
                        " " span.muted { (rep.packages) " packages examined" }
                    }
                    nav.filters aria-label="Filter findings" {
                        a href=(link(None, fixable)) aria-current=[severity.is_none().then_some("true")] { "All" }
                        @for l in LEVELS[..4].iter().copied() {
                            " " a href=(link(Some(l), fixable)) aria-current=[(severity == Some(l)).then_some("true")] { (l.as_str()) }
                        }
                        " · "
                        @if fixable { a href=(link(severity, false)) { "Show all" } } @else { a href=(link(severity, true)) { "Only fixable" } }
                    }
                    table {
                        thead { tr { th { "Vulnerability" } th { "Severity" } th { "Package" } th { "Version" } th { "Fixed in" } th.hide-narrow { "CVSS" } } }
                        tbody {
                            @for f in rep.findings.iter().filter(|f| severity.is_none_or(|s| f.severity == s) && (!fixable || f.fixed_version.is_some())) {
                                tr {
                                    td { @if let Some(u) = f.links.first().filter(|u| u.starts_with("https://")) { a href=(u) rel="noreferrer" { (f.id) } } @else { (f.id) } }
                                    td { span class=(format!("badge sev-{}", f.severity.as_str().to_lowercase())) { (f.severity.as_str()) } }
                                    td { (f.package) }
                                    td { (f.version) }
                                    td { @if let Some(v) = &f.fixed_version { (v) } @else { span.muted { "no fix" } } }
                                    td.hide-narrow { @if let Some((score, _)) = &f.cvss { (format!("{score:.1}")) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Software bill of materials" }
        div.panel {
            p {
                a.button.quiet href=(format!("{api}/additions/sbom?format=spdx")) { "SPDX 2.3 (JSON)" } " "
                a.button.quiet href=(format!("{api}/additions/sbom?format=cyclonedx")) { "CycloneDX 1.6 (JSON)" }
            }
        }
    };
    with_cookies(layout(&repo, Some(&who), "/harbor/projects", &token, body), StatusCode::OK, &cookies).into_response()
}
