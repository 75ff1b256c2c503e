//! An artifact's page: what it is (tags, labels, annotations, the index's platforms, the
//! accessories that refer to it — signatures, SBOMs), what it is made of (layers and the build
//! history from the image config; for a Helm chart its Chart.yaml, values and README), its
//! vulnerability report (severity counts; the findings, filterable by severity and fixability
//! through plain links and sortable by the script, with fix versions, CVSS and advisory links)
//! and its SBOM, listed in the page and downloadable in SPDX or CycloneDX (the API's endpoint,
//! which the session cookie opens). Readable by whoever may pull the repository.
//!
//! Configs and charts are read whole only when small (`MAX_CONFIG`, `MAX_CHART`), and a
//! chart's archive is read through a bound on its unpacked size: no artifact can make the
//! page read without limit.

use std::collections::HashMap;
use std::io::Read;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_auth::Target;
use berth_auth::rbac::Perm;
use berth_registry::ArtifactRow;
use berth_scan::cvss::Severity;
use berth_scan::report::Report;
use berth_scanner::ScanRecord;
use berth_types::{Digest, RepoName};
use maud::{Markup, html};
use serde_json::Value;

use super::project::open;
use super::{human_bytes, sortable};
use crate::AdminState;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/harbor/projects/{id}/repositories/{repo}/artifacts-tab/artifacts/{digest}", get(show))
        .route("/harbor/projects/{id}/repositories/{repo}/artifacts-tab/artifacts/{digest}/{op}", post(act))
}

const LEVELS: [Severity; 6] =
    [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Unknown, Severity::None];

/// Largest image config or chart metadata read for the page.
const MAX_CONFIG: u64 = 4 << 20;
/// Largest chart archive read for its values and README.
const MAX_CHART: u64 = 16 << 20;
/// Most bytes unpacked from a chart archive, and most shown of one file.
const MAX_UNPACKED: u64 = 64 << 20;
const MAX_FILE: u64 = 256 << 10;
/// Most SBOM packages listed in the page (the downloads have them all).
const MAX_PACKAGES: usize = 1000;

const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";

fn rank(l: Severity) -> usize {
    LEVELS.len() - LEVELS.iter().position(|x| *x == l).unwrap_or(LEVELS.len())
}

/// The scan state of an artifact as a badge: not scanned, running, failed, or a bar of its
/// findings by severity (an SVG: its sizes are attributes, which the CSP allows) with counts.
pub(super) fn scan_badge(rec: Option<&ScanRecord>) -> Markup {
    let Some(rec) = rec else { return html! { span.muted { "Not scanned" } } };
    let report: Option<Report> = rec.report.as_deref().and_then(|t| serde_json::from_str(t).ok());
    match (rec.status.as_str(), report) {
        ("failed", _) => html! { span.badge.failed title=[rec.error.as_deref()] { "Scan failed" } },
        (_, Some(rep)) => {
            let counts: Vec<(Severity, usize)> = LEVELS[..5]
                .iter()
                .map(|l| (*l, rep.findings.iter().filter(|f| f.severity == *l).count()))
                .filter(|(_, n)| *n > 0)
                .collect();
            let total: usize = counts.iter().map(|(_, n)| n).sum();
            if let Some(why) = rep.not_applicable.as_deref().filter(|_| total == 0) {
                return html! { span.badge title=(why) { "Not applicable" } };
            }
            if total == 0 {
                return html! { span.badge.public { "No known vulnerabilities" } };
            }
            let words: Vec<String> = counts.iter().map(|(l, n)| format!("{n} {}", l.as_str())).collect();
            let mut x = 0.0;
            let bars: Vec<(String, String, String)> = counts
                .iter()
                .map(|(l, n)| {
                    let w = 80.0 * *n as f64 / total as f64;
                    let bar = (format!("sev-{}", l.as_str().to_lowercase()), format!("{x:.2}"), format!("{w:.2}"));
                    x += w;
                    bar
                })
                .collect();
            html! {
                span.sevbar {
                    svg width="80" height="8" viewBox="0 0 80 8" role="img" aria-label=(words.join(", ")) {
                        @for (class, x, w) in &bars { rect class=(class) x=(x) y="0" width=(w) height="8" {} }
                    }
                    " " span { (words.first().cloned().unwrap_or_default()) @if counts.len() > 1 { ", …" } }
                }
            }
        }
        _ => html! { span.muted { "Scanning…" } },
    }
}

/// The platform of an index entry, as `os/arch[/variant]`.
fn platform(entry: &Value) -> String {
    let p = &entry["platform"];
    let mut s = format!("{}/{}", p["os"].as_str().unwrap_or("?"), p["architecture"].as_str().unwrap_or("?"));
    if let Some(v) = p["variant"].as_str() {
        s = format!("{s}/{v}");
    }
    s
}

/// A chart archive's `values.yaml` and `README.md` (top-level files of the chart directory).
fn chart_files(tgz: &[u8]) -> (Option<String>, Option<String>) {
    let (mut values, mut readme) = (None, None);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz).take(MAX_UNPACKED));
    let Ok(entries) = archive.entries() else { return (None, None) };
    for entry in entries.take(10_000) {
        let Ok(mut e) = entry else { break };
        let Ok(path) = e.path().map(|p| p.into_owned()) else { continue };
        let parts: Vec<String> = path.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        let slot = match parts.as_slice() {
            [_, f] if f == "values.yaml" => &mut values,
            [_, f] if f.eq_ignore_ascii_case("README.md") => &mut readme,
            _ => continue,
        };
        let mut buf = Vec::new();
        if (&mut e).take(MAX_FILE).read_to_end(&mut buf).is_ok() {
            *slot = Some(String::from_utf8_lossy(&buf).into_owned());
        }
        if values.is_some() && readme.is_some() {
            break;
        }
    }
    (values, readme)
}

/// What the page shows of the manifest's content.
#[derive(Default)]
struct Content {
    /// An index's entries: (digest, platform, size).
    platforms: Vec<(String, String, i64)>,
    /// An image's layers: (media type, digest, size).
    layers: Vec<(String, String, i64)>,
    /// The image config, when small enough.
    config: Option<Value>,
    /// A Helm chart's metadata, values and README.
    chart: Option<(Value, Option<String>, Option<String>)>,
}

async fn content(s: &AdminState, repo: &RepoName, digest: &Digest) -> Content {
    let mut out = Content::default();
    let reference = berth_types::Reference::Digest(digest.clone());
    let Ok(m) = s.registry.manifest_get(repo, &reference, true).await else { return out };
    let Some(doc) = m.bytes.as_deref().and_then(|b| serde_json::from_slice::<Value>(b).ok()) else { return out };
    if let Some(list) = doc["manifests"].as_array() {
        out.platforms = list
            .iter()
            .map(|e| (e["digest"].as_str().unwrap_or("").to_owned(), platform(e), e["size"].as_i64().unwrap_or(0)))
            .collect();
        return out;
    }
    let blob = |d: &Value| d["digest"].as_str().and_then(|x| x.parse::<Digest>().ok());
    out.layers = doc["layers"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| {
                    (
                        e["mediaType"].as_str().unwrap_or("").to_owned(),
                        e["digest"].as_str().unwrap_or("").to_owned(),
                        e["size"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let config = match blob(&doc["config"]) {
        Some(d) => s.registry.blob_bytes(repo, &d, MAX_CONFIG).await.ok().flatten(),
        None => None,
    };
    let config: Option<Value> = config.and_then(|b| serde_json::from_slice(&b).ok());
    if doc["config"]["mediaType"].as_str() == Some(HELM_CONFIG) {
        let chart_layer = doc["layers"].as_array().and_then(|l| {
            l.iter().find(|e| e["mediaType"].as_str().is_some_and(|t| t.contains("helm.chart.content"))).and_then(blob)
        });
        let tgz = match chart_layer {
            Some(d) => s.registry.blob_bytes(repo, &d, MAX_CHART).await.ok().flatten(),
            None => None,
        };
        let (values, readme) = match tgz {
            Some(b) => tokio::task::spawn_blocking(move || chart_files(&b)).await.unwrap_or_default(),
            None => (None, None),
        };
        out.chart = Some((config.unwrap_or(Value::Null), values, readme));
    } else {
        out.config = config;
    }
    out
}

/// A JSON value as one line of text (strings without quotes).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn short(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

async fn show(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, repo, digest)): Path<(i64, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    page(&s, &headers, (id, &repo, &digest), &q, None, StatusCode::OK).await
}

#[derive(serde::Deserialize)]
struct ActForm {
    csrf: String,
    #[serde(default)]
    tag: String,
    /// A label's id (add-label, remove-label).
    #[serde(default)]
    label: Option<i64>,
}

/// Scan now, add or remove a tag, or delete the artifact — each through the one decision,
/// with the permission and ECR action the API asks for the same change.
async fn act(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, repo, digest, op)): Path<(i64, String, String, String)>,
    axum::Form(f): axum::Form<ActForm>,
) -> Response {
    use berth_auth::policy::EcrAction;
    let here = format!("/harbor/projects/{id}/repositories/{}/artifacts-tab/artifacts/{digest}", crate::enc(&repo));
    let r: Result<&'static str, (String, StatusCode)> = async {
        let who =
            super::signed_in(&s, &headers).await.ok_or(("Sign in first.".to_string(), StatusCode::UNAUTHORIZED))?;
        if !super::csrf_ok(&headers, &f.csrf) {
            return Err((
                "This form expired or came from another site; nothing was changed.".into(),
                StatusCode::FORBIDDEN,
            ));
        }
        let missing = || (format!("There is no artifact {digest} here."), StatusCode::NOT_FOUND);
        let p = match s.auth.project_by_id(id).await {
            Ok(Some(p)) => p,
            _ => return Err(missing()),
        };
        let name: RepoName = format!("{}/{repo}", p.name).parse().map_err(|_| missing())?;
        let d: Digest = digest.parse().map_err(|_| missing())?;
        let (perm, action) = match op.as_str() {
            "scan" => (Perm::Scan, EcrAction::StartImageScan),
            "add-tag" => (Perm::CreateTag, EcrAction::PutImage),
            "remove-tag" => (Perm::DeleteTag, EcrAction::BatchDeleteImage),
            // As the labels API: labelling an artifact is a push-level change.
            "add-label" | "remove-label" => (Perm::Push, EcrAction::PutImage),
            "delete" => (Perm::DeleteArtifact, EcrAction::BatchDeleteImage),
            _ => return Err(("Unknown action.".into(), StatusCode::NOT_FOUND)),
        };
        if s.auth.decide(&who, Target::Repository(name.as_str(), action), perm).await.is_err() {
            return Err(("You may not do this here.".into(), StatusCode::FORBIDDEN));
        }
        let origin = berth_auth::Origin::new(who.name(), None);
        let tag = || -> Result<berth_types::Tag, (String, StatusCode)> {
            f.tag.trim().parse().map_err(|e| (format!("Tag {:?}: {e}.", f.tag.trim()), StatusCode::BAD_REQUEST))
        };
        match op.as_str() {
            "scan" => {
                let req = berth_scanner::ScanRequest {
                    digest: digest.clone(),
                    repo: name.to_string(),
                    sbom: p.settings.auto_sbom,
                };
                s.scans.request(&[req], &origin).await.map_err(super::api_err)?;
                Ok("Scan requested; its result appears here when it is done.")
            }
            "add-tag" => {
                s.registry.tag_create(&name, &tag()?, &d, &origin).await.map_err(super::api_err)?;
                Ok("Tag added.")
            }
            "remove-tag" => {
                s.registry
                    .manifest_delete(&name, &berth_types::Reference::Tag(tag()?), &origin)
                    .await
                    .map_err(super::api_err)?;
                Ok("Tag removed.")
            }
            "add-label" | "remove-label" => {
                let id = f.label.ok_or(("Choose a label.".to_string(), StatusCode::BAD_REQUEST))?;
                let store = s.registry.labels();
                let l = store
                    .label(id)
                    .await
                    .map_err(super::api_err)?
                    .filter(|l| l.scope == "g" || l.project == p.name)
                    .ok_or(("There is no such label for this project.".to_string(), StatusCode::NOT_FOUND))?;
                if op == "add-label" {
                    store
                        .attach_label(name.as_str(), &digest, l.id, berth_registry::now_ms())
                        .await
                        .map_err(super::api_err)?;
                    Ok("Label added.")
                } else {
                    store.detach_label(name.as_str(), &digest, l.id).await.map_err(super::api_err)?;
                    Ok("Label removed.")
                }
            }
            _ => {
                s.registry
                    .manifest_delete(&name, &berth_types::Reference::Digest(d), &origin)
                    .await
                    .map_err(super::api_err)?;
                Ok("deleted")
            }
        }
    }
    .await;
    match r {
        Ok("deleted") => axum::response::Redirect::to(&format!(
            "/harbor/projects/{id}/repositories/{}/artifacts-tab",
            crate::enc(&repo)
        ))
        .into_response(),
        Ok(m) => {
            page(&s, &headers, (id, &repo, &digest), &HashMap::new(), Some((m.to_owned(), true)), StatusCode::OK).await
        }
        Err((m, st)) => {
            tracing::debug!(page = %here, error = %m, "portal: an artifact action was refused");
            page(&s, &headers, (id, &repo, &digest), &HashMap::new(), Some((m, false)), st).await
        }
    }
}

async fn page(
    s: &AdminState,
    headers: &HeaderMap,
    (id, repo, digest): (i64, &str, &str),
    q: &HashMap<String, String>,
    notice: Option<(String, bool)>,
    status: StatusCode,
) -> Response {
    let (s, repo, digest) = (s.clone(), repo.to_owned(), digest.to_owned());
    let base = format!("/harbor/projects/{id}/repositories/{}/artifacts-tab", crate::enc(&repo));
    let here = format!("{base}/artifacts/{digest}");
    let (c, p) = match open(&s, headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let full = format!("{}/{repo}", p.name);
    let not_found = || {
        let body = html! { h1 { "Artifact not found" } p { "There is no artifact " (digest) " in " (full) ", or you may not see it." } };
        c.page("Not found", "/harbor/projects", body, StatusCode::NOT_FOUND)
    };
    let Ok(name) = full.parse::<RepoName>() else { return not_found() };
    let ecr = berth_auth::policy::EcrAction::DescribeImageScanFindings;
    if !c.may(&s, Target::Repository(name.as_str(), ecr), Perm::Pull).await {
        return not_found();
    }
    let rows = s.registry.artifacts(&name).await.unwrap_or_default();
    let Some(a) = rows.iter().find(|a| a.record.digest.to_string() == digest) else { return not_found() };
    let accessories: Vec<&ArtifactRow> = crate::repos::Accessories::new(&rows).of(&a.record.digest).to_vec();
    let labels = s.registry.labels().repo_labels(&full).await.unwrap_or_default().remove(&digest).unwrap_or_default();
    let annotations: Vec<(String, String)> = a
        .record
        .annotations
        .as_deref()
        .and_then(|t| serde_json::from_str::<serde_json::Map<String, Value>>(t).ok())
        .map(|m| m.into_iter().map(|(k, v)| (k, text(&v))).collect())
        .unwrap_or_default();
    let content = content(&s, &name, &a.record.digest).await;
    let record = s.scans.record(&digest).await.ok().flatten();
    // The project's signature policy's verdict, when it has one (accessories are not signed).
    let signature = match (&s.signatures, a.record.subject.is_none()) {
        (Some(sig), true) => sig.verdict(&p.name, &name, &a.record).await.ok().flatten(),
        _ => None,
    };
    let report: Option<Report> =
        record.as_ref().and_then(|r| r.report.as_deref()).and_then(|t| serde_json::from_str(t).ok());
    let sbom = s.scans.sbom_document(&full, &digest, "cyclonedx").await.ok().flatten();
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
        let query = if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) };
        format!("{here}{query}#vulnerabilities")
    };
    let page_of = |d: &str| format!("{base}/artifacts/{d}");
    let known: std::collections::HashSet<String> = rows.iter().map(|r| r.record.digest.to_string()).collect();
    let history: Vec<&Value> =
        content.config.as_ref().and_then(|c| c["history"].as_array()).map(|h| h.iter().collect()).unwrap_or_default();
    let cfg = content.config.as_ref().map(|c| &c["config"]);
    use berth_auth::policy::EcrAction as Ecr;
    let may = |perm: Perm, action: Ecr| c.may(&s, Target::Repository(name.as_str(), action), perm);
    let may_label = !c.anonymous() && may(Perm::Push, Ecr::PutImage).await;
    // Labels that could be added: the global ones and the project's, less those it has.
    let addable: Vec<berth_registry::LabelRecord> = if may_label {
        let store = s.registry.labels();
        let mut all = store.labels("g", "").await.unwrap_or_default();
        all.extend(store.labels("p", &p.name).await.unwrap_or_default());
        all.into_iter().filter(|l| !labels.iter().any(|x| x.id == l.id)).collect()
    } else {
        Vec::new()
    };
    let (may_scan, may_tag, may_untag, may_delete) = (
        !c.anonymous() && may(Perm::Scan, Ecr::StartImageScan).await,
        !c.anonymous() && may(Perm::CreateTag, Ecr::PutImage).await,
        !c.anonymous() && may(Perm::DeleteTag, Ecr::BatchDeleteImage).await,
        !c.anonymous() && may(Perm::DeleteArtifact, Ecr::BatchDeleteImage).await,
    );
    let action = |op: &str| format!("{here}/{op}");
    let mut sections: Vec<(&str, &str)> = Vec::new();
    if !content.platforms.is_empty() {
        sections.push(("platforms", "Platforms"));
    }
    if content.chart.is_some() {
        sections.push(("chart", "Chart"));
    }
    if !content.layers.is_empty() && content.chart.is_none() {
        sections.push(("layers", "Layers"));
    }
    if !history.is_empty() {
        sections.push(("history", "Build history"));
    }
    if !accessories.is_empty() {
        sections.push(("accessories", "Accessories"));
    }
    // An accessory (a signature, an SBOM) has no packages of its own to report on.
    let examined = a.record.subject.is_none();
    if examined {
        sections.push(("vulnerabilities", "Vulnerabilities"));
        sections.push(("sbom", "Software bill of materials"));
    }
    let body = html! {
        p.crumbs {
            a href="/harbor/projects" { "Projects" } " / "
            a href=(format!("/harbor/projects/{}/repositories", p.id)) { (p.name) } " / "
            a href=(base) { (repo) } " / "
        }
        div.toolbar {
            h1 { code { (short(&digest)) } }
            div.actions {
                @if may_scan && a.record.subject.is_none() {
                    form.inline method="post" action=(action("scan")) {
                        input type="hidden" name="csrf" value=(c.csrf);
                        button.quiet type="submit" { "Scan now" }
                    }
                }
                @if may_delete {
                    form.inline method="post" action=(action("delete")) {
                        input type="hidden" name="csrf" value=(c.csrf);
                        button.danger type="submit" { "Delete artifact" }
                    }
                }
            }
        }
        @if let Some((msg, ok)) = &notice {
            @if *ok { p.notice role="status" { (msg) } } @else { p.error role="alert" { (msg) } }
        }
        nav.tabs aria-label="Sections" {
            ul { @for (anchor, label) in &sections { li { a href=(format!("#{anchor}")) { (label) } } } }
        }
        div.panel {
            dl.facts {
                dt { "Digest" } dd { code.wrap { (digest) } }
                dt { "Tags" } dd {
                    @for (t, _) in &a.tags {
                        span.badge { (t)
                            @if may_untag {
                                form.inline method="post" action=(action("remove-tag")) {
                                    input type="hidden" name="csrf" value=(c.csrf);
                                    input type="hidden" name="tag" value=(t);
                                    button.x type="submit" aria-label=(format!("Remove tag {t}")) title="Remove this tag" { "\u{d7}" }
                                }
                            }
                        }
                        " "
                    }
                    @if a.tags.is_empty() { span.muted { "untagged" } }
                    @if may_tag {
                        form.inline.add-tag method="post" action=(action("add-tag")) {
                            input type="hidden" name="csrf" value=(c.csrf);
                            label.vh for="new-tag" { "New tag" }
                            input #new-tag type="text" name="tag" placeholder="new tag" required maxlength="128";
                            button.quiet type="submit" { "Add tag" }
                        }
                    }
                }
                @if !labels.is_empty() || !addable.is_empty() {
                    dt { "Labels" } dd {
                        @for l in &labels {
                            span.badge.label title=(l.description) { (l.name)
                                @if may_label {
                                    form.inline method="post" action=(action("remove-label")) {
                                        input type="hidden" name="csrf" value=(c.csrf);
                                        input type="hidden" name="label" value=(l.id);
                                        button.x type="submit" aria-label=(format!("Remove label {}", l.name)) title="Remove this label" { "\u{d7}" }
                                    }
                                }
                            }
                            " "
                        }
                        @if !addable.is_empty() {
                            form.inline.add-tag method="post" action=(action("add-label")) {
                                input type="hidden" name="csrf" value=(c.csrf);
                                label.vh for="new-label" { "Label to add" }
                                select #new-label name="label" {
                                    @for l in &addable {
                                        option value=(l.id) { (l.name) @if l.scope == "g" { " (global)" } }
                                    }
                                }
                                button.quiet type="submit" { "Add label" }
                            }
                        }
                    }
                }
                dt { "Type" } dd { (super::kind_of(a)) " " span.muted.wrap { "(" (a.record.artifact_type.clone().unwrap_or_else(|| a.record.media_type.clone())) ")" } }
                dt { "Size" } dd { (human_bytes(a.total_size)) }
                dt { "Pushed" } dd { (super::when(a.record.created_at)) }
                dt { "Pulled" } dd {
                    @if let Some(t) = a.pull_time {
                        (super::when(t)) " (" (a.pull_count) @if a.pull_count == 1 { " pull)" } @else { " pulls)" }
                    } @else { span.muted { "never" } }
                }
                @if examined { dt { "Vulnerabilities" } dd { (scan_badge(record.as_ref())) } }
                @if let Some((v, mode)) = &signature {
                    dt { "Signature" } dd {
                        @match v {
                            berth_registry::Verdict::Verified(by) => { span.badge.public { "Signed" } " " span.muted { "by " (by) } }
                            berth_registry::Verdict::Unsigned => { span.badge.failed { "Unsigned" } }
                            berth_registry::Verdict::Invalid(why) => { span.badge.failed { "Signature not valid" } " " span.muted { (why) } }
                        }
                        @if !matches!(v, berth_registry::Verdict::Verified(_)) {
                            " " span.muted { @if *mode == berth_registry::SignatureMode::Enforce { "(pulls are refused)" } @else { "(pulls are allowed and logged)" } }
                        }
                    }
                }
                @if let Some(sub) = &a.record.subject {
                    dt { "Refers to" } dd { a href=(page_of(&sub.to_string())) { code { (short(&sub.to_string())) } } }
                }
                @if let Some(c) = &content.config {
                    @if let Some(os) = c["os"].as_str() { dt { "Platform" } dd { (os) "/" (c["architecture"].as_str().unwrap_or("?")) } }
                    @if let Some(t) = c["created"].as_str() { dt { "Built" } dd { (t) } }
                }
                @if let Some(cfg) = cfg {
                    @if let Some(e) = cfg["Entrypoint"].as_array() { dt { "Entrypoint" } dd { code { (text(&Value::Array(e.clone()))) } } }
                    @if let Some(e) = cfg["Cmd"].as_array() { dt { "Command" } dd { code { (text(&Value::Array(e.clone()))) } } }
                    @if let Some(u) = cfg["User"].as_str().filter(|u| !u.is_empty()) { dt { "User" } dd { code { (u) } } }
                    @if let Some(w) = cfg["WorkingDir"].as_str().filter(|u| !u.is_empty()) { dt { "Working directory" } dd { code { (w) } } }
                    @if let Some(ports) = cfg["ExposedPorts"].as_object() { dt { "Ports" } dd { @for port in ports.keys() { code { (port) } " " } } }
                    @if let Some(env) = cfg["Env"].as_array() { dt { "Environment" } dd { @for e in env { code.wrap { (text(e)) } br; } } }
                }
            }
            @if !annotations.is_empty() {
                details {
                    summary { "Annotations (" (annotations.len()) ")" }
                    table { tbody { @for (k, v) in &annotations { tr { th scope="row" { code { (k) } } td.wrap { (v) } } } } }
                }
            }
            @if let Some(l) = cfg.and_then(|c| c["Labels"].as_object()).filter(|l| !l.is_empty()) {
                details {
                    summary { "Image labels (" (l.len()) ")" }
                    table { tbody { @for (k, v) in l { tr { th scope="row" { code { (k) } } td.wrap { (text(v)) } } } } }
                }
            }
        }
        @if !content.platforms.is_empty() {
            h2 #platforms { "Platforms" }
            div.panel {
                table {
                    thead { tr { th { "Platform" } th { "Manifest" } th { "Size" } } }
                    tbody { @for (d, plat, size) in &content.platforms {
                        tr {
                            td { (plat) }
                            td { @if known.contains(d) { a href=(page_of(d)) { code { (short(d)) } } } @else { code { (short(d)) } " " span.muted { "(not stored)" } } }
                            td { (human_bytes(*size)) }
                        }
                    } }
                }
            }
        }
        @if let Some((meta, values, readme)) = &content.chart {
            h2 #chart { "Chart" }
            div.panel.stack {
                dl.facts {
                    @for (label, key) in [("Name", "name"), ("Version", "version"), ("App version", "appVersion"), ("Description", "description"), ("Type", "type"), ("Home", "home"), ("API version", "apiVersion")] {
                        @if let Some(v) = meta[key].as_str() { dt { (label) } dd { (v) } }
                    }
                    @if let Some(src) = meta["sources"].as_array() { dt { "Sources" } dd { @for u in src { (text(u)) br; } } }
                    @if let Some(m) = meta["maintainers"].as_array() { dt { "Maintainers" } dd { @for x in m { (text(&x["name"])) @if let Some(e) = x["email"].as_str() { " <" (e) ">" } br; } } }
                    @if let Some(d) = meta["dependencies"].as_array() { dt { "Dependencies" } dd { @for x in d { (text(&x["name"])) " " (text(&x["version"])) br; } } }
                }
                @if let Some(v) = values { details { summary { "values.yaml" } pre tabindex="0" { code { (v) } } } }
                @if let Some(r) = readme { details { summary { "README.md" } pre.readme { (r) } } }
            }
        }
        @if !content.layers.is_empty() && content.chart.is_none() {
            h2 #layers { "Layers" }
            div.panel {
                table {
                    thead { tr { th { "#" } th { "Digest" } th.hide-narrow { "Type" } th { "Size" } } }
                    tbody { @for (i, (t, d, size)) in content.layers.iter().enumerate() {
                        tr { td { (i + 1) } td { code title=(d) { (short(d)) } } td.hide-narrow { (t) } td { (human_bytes(*size)) } }
                    } }
                }
            }
        }
        @if !history.is_empty() {
            h2 #history { "Build history" }
            div.panel {
                table {
                    thead { tr { th { "Step" } th.hide-narrow { "Created" } } }
                    tbody { @for h in &history {
                        tr {
                            td { code.wrap { (text(&h["created_by"])) } @if h["empty_layer"].as_bool() == Some(true) { " " span.muted { "(no layer)" } } }
                            td.hide-narrow { (text(&h["created"])) }
                        }
                    } }
                }
            }
        }
        @if !accessories.is_empty() {
            h2 #accessories { "Accessories" }
            div.panel {
                table {
                    thead { tr { th { "Type" } th { "Artifact" } th { "Size" } th.hide-narrow { "Pushed" } } }
                    tbody { @for x in &accessories {
                        @let d = x.record.digest.to_string();
                        tr {
                            td { (x.record.artifact_type.clone().unwrap_or_else(|| x.record.media_type.clone())) }
                            td { a href=(page_of(&d)) { code { (short(&d)) } } }
                            td { (human_bytes(x.total_size)) }
                            td.hide-narrow { (super::when(x.record.created_at)) }
                        }
                    } }
                }
            }
        }
        @if examined {
        h2 #vulnerabilities { "Vulnerabilities" }
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
                        @if let Some(why) = rep.not_applicable.as_deref().filter(|_| rep.findings.is_empty()) {
                            span.badge { "Not applicable" } " " span.muted { (why) }
                        } @else if rep.findings.is_empty() { span.badge.public { "No known vulnerabilities" } }
                        @let fixable_count = rep.findings.iter().filter(|f| f.fixed_version.is_some()).count();
                        @if fixable_count > 0 { " " span { (fixable_count) " fixable" } }
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
                        thead { tr { th { (sortable("Vulnerability")) } th { (sortable("Severity")) } th { (sortable("Package")) } th { "Version" } th { "Fixed in" } th.hide-narrow { (sortable("CVSS")) } th.hide-narrow { "Rated by" } } }
                        tbody {
                            @for f in rep.findings.iter().filter(|f| severity.is_none_or(|s| f.severity == s) && (!fixable || f.fixed_version.is_some())) {
                                tr {
                                    td { @if let Some(u) = f.links.first().filter(|u| u.starts_with("https://")) { a href=(u) rel="noreferrer" { (f.id) } } @else { (f.id) } }
                                    td data-key=(rank(f.severity)) { span class=(format!("badge sev-{}", f.severity.as_str().to_lowercase())) { (f.severity.as_str()) } }
                                    td { (f.package) @if !f.evidence.is_installed() { " " span.muted title="Only a package-lock.json names it: no installed package metadata was found" { "(lock file)" } } }
                                    td { (f.version) }
                                    td { @if let Some(v) = &f.fixed_version { (v) } @else { span.muted { (f.status.as_deref().unwrap_or("no fix")) } } }
                                    td.hide-narrow data-key=(f.cvss.as_ref().map_or(-1.0, |c| c.0)) { @if let Some((score, vector)) = &f.cvss { span title=(vector) { (format!("{score:.1}")) } } }
                                    td.hide-narrow { @if let Some(s) = &f.severity_source { span.muted { (s) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 #sbom { "Software bill of materials" }
        div.panel.stack {
            p {
                a.button.quiet href=(format!("{api}/additions/sbom?format=spdx")) download { "Download SPDX 2.3 (JSON)" } " "
                a.button.quiet href=(format!("{api}/additions/sbom?format=cyclonedx")) download { "Download CycloneDX 1.6 (JSON)" }
            }
            @match sbom.as_ref().and_then(|d| d["components"].as_array()) {
                None => { p.muted { "No inventory yet: it is made when the artifact is scanned." } }
                Some(list) => {
                    details {
                    summary { (list.len()) " packages" @if list.len() > MAX_PACKAGES { " (the first " (MAX_PACKAGES) " listed here)" } }
                    table {
                        thead { tr { th { (sortable("Package")) } th { "Version" } th { (sortable("Type")) } th.hide-narrow { "Package URL" } } }
                        tbody { @for comp in list.iter().take(MAX_PACKAGES) {
                            tr {
                                td { (text(&comp["name"])) }
                                td { (text(&comp["version"])) }
                                td { (comp["purl"].as_str().and_then(|p| p.strip_prefix("pkg:")).and_then(|p| p.split('/').next()).unwrap_or("")) }
                                td.hide-narrow { code.wrap { (text(&comp["purl"])) } }
                            }
                        } }
                    }
                    }
                }
            }
        }
        }
    };
    c.page(&repo, "/harbor/projects", body, status)
}
