//! A project's configuration tab (Harbor's "Configuration"): who may pull (public or
//! private), scanning on push (with the repositories it applies to) and SBOM generation,
//! deployment security (refuse pulls of images with findings at or above a severity, or not
//! scanned), the CVE allowlist (the system's, or the project's own with one expiry date), the
//! storage limit (system administrators) and deleting the project once it is empty.
//!
//! Changing needs `UpdateProject` (deleting `DeleteProject`, the limit `Administer`); others
//! see the same settings read-only. Every setting goes through `ProjectSettings::set`, the
//! one place the API's Harbor strings become settings too, so both refuse the same values.

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use berth_auth::rbac::Perm;
use berth_auth::{ProjectRecord, Target};
use maud::html;
use serde::Deserialize;

use super::project::{open, project_page};
use super::{api_err, csrf_ok, human_bytes};
use crate::AdminState;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/harbor/projects/{id}/configuration", get(show).post(save))
        .route("/harbor/projects/{id}/delete", post(delete))
}

const SEVERITIES: [(&str, &str); 5] =
    [("critical", "Critical"), ("high", "High"), ("medium", "Medium"), ("low", "Low"), ("none", "None (any finding)")];

/// Most CVE ids an allowlist may hold.
const MAX_ALLOWLIST: usize = 10_000;

async fn page(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    notice: Option<(String, bool)>,
    status: StatusCode,
) -> Response {
    let here = format!("/harbor/projects/{id}/configuration");
    let (c, p) = match open(s, headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if c.anonymous() {
        return super::to_sign_in(&here);
    }
    let may_edit = c.may(s, Target::Project(&p), Perm::UpdateProject).await;
    let may_delete = c.may(s, Target::Project(&p), Perm::DeleteProject).await;
    let may_limit = c.may(s, Target::System, Perm::Administer).await;
    let st = &p.settings;
    let allow = s.scans.allowlist(&p.name).await.unwrap_or_default();
    let expires = allow.iter().map(|(_, e)| *e).find(|e| *e >= 0);
    let expires_day = expires.map(|e| berth_registry::date_of(e / 86_400_000)).unwrap_or_default();
    let ids: Vec<&str> = allow.iter().map(|(i, _)| i.as_str()).collect();
    let quota = s.registry.quota(&p.name).await.ok();
    let dis = !may_edit;
    let content = html! {
        @if let Some((msg, ok)) = &notice {
            @if *ok { p.notice role="status" { (msg) } } @else { p.error role="alert" { (msg) } }
        }
        form.panel.stack method="post" action=(here) {
            input type="hidden" name="csrf" value=(c.csrf);
            fieldset disabled[dis] {
                legend { "Access" }
                label.check { input type="checkbox" name="public" value="on" checked[st.public()]; " Public: anyone may pull, without signing in" }
            }
            fieldset disabled[dis] {
                legend { "Scanning" }
                label.check { input type="checkbox" name="auto_scan" value="on" checked[st.auto_scan]; " Scan images when they are pushed" }
                label.check { input type="checkbox" name="auto_sbom" value="on" checked[st.auto_sbom]; " Generate an SBOM when they are pushed" }
                label for="scan-filters" { "Scan on push only repositories matching (comma-separated patterns, e.g. " code { "apps/*" } "; empty: all)" }
                input #scan-filters type="text" name="scan_filters" value=(st.scan_filters.join(", "));
            }
            fieldset disabled[dis] {
                legend { "Deployment security" }
                label.check { input type="checkbox" name="prevent_vul" value="on" checked[st.prevent_vulnerable]; " Refuse pulls of images with vulnerabilities of severity" }
                label.vh for="severity" { "Severity" }
                select #severity name="severity" {
                    @for (v, label) in SEVERITIES { option value=(v) selected[st.severity.as_str() == v] { (label) } }
                }
                " and above"
                br;
                label.check { input type="checkbox" name="prevent_unscanned" value="on" checked[st.prevent_unscanned]; " Refuse pulls of images not scanned yet" }
            }
            fieldset disabled[dis] {
                legend { "CVE allowlist: findings it names never block a pull" }
                label.check { input type="radio" name="allowlist" value="system" checked[st.reuse_sys_cve_allowlist != Some(false)]; " The system's allowlist" }
                label.check { input type="radio" name="allowlist" value="project" checked[st.reuse_sys_cve_allowlist == Some(false)]; " This project's own:" }
                label for="cves" { "Vulnerability ids, one per line or separated by commas" }
                textarea #cves name="cves" rows="4" placeholder="CVE-2024-3094" { (ids.join("\n")) }
                label for="cve-expiry" { "The project's allowlist expires on (empty: never)" }
                input #cve-expiry type="date" name="expires" value=(expires_day);
            }
            @if may_limit {
                fieldset {
                    legend { "Storage" }
                    label for="limit" { "Limit in GiB (empty: none). Used now: " (human_bytes(quota.as_ref().map_or(0, |q| q.used))) }
                    input #limit type="text" name="limit_gib" inputmode="decimal"
                        value=(quota.as_ref().filter(|q| q.hard > 0).map(|q| format!("{}", q.hard as f64 / (1u64 << 30) as f64)).unwrap_or_default());
                }
            }
            @if may_edit { p { button type="submit" { "Save" } } }
            @else { p.muted { "Only the project's administrators may change these." } }
        }
        @if may_delete {
            h2 { "Delete the project" }
            form.panel method="post" action=(format!("/harbor/projects/{}/delete", p.id)) {
                input type="hidden" name="csrf" value=(c.csrf);
                p { "A project can be deleted once it holds no repositories. Its members, robot accounts and policies go with it." }
                label for="confirm" { "Type the project's name to confirm" }
                input #confirm type="text" name="confirm" required autocomplete="off";
                p { button.danger type="submit" { "Delete " (p.name) } }
            }
        }
    };
    project_page(s, &c, &p, "configuration", content, status).await
}

async fn show(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    page(&s, &headers, id, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct ConfigForm {
    csrf: String,
    public: Option<String>,
    auto_scan: Option<String>,
    auto_sbom: Option<String>,
    #[serde(default)]
    scan_filters: String,
    prevent_vul: Option<String>,
    #[serde(default)]
    severity: String,
    prevent_unscanned: Option<String>,
    #[serde(default)]
    allowlist: String,
    #[serde(default)]
    cves: String,
    #[serde(default)]
    expires: String,
    limit_gib: Option<String>,
}

/// The project, if the form is genuine and the caller may do `perm` to it.
pub(super) async fn checked(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    csrf: &str,
    perm: Perm,
) -> Result<(ProjectRecord, berth_auth::Origin), (String, StatusCode)> {
    let who = super::signed_in(s, headers).await.ok_or(("Sign in first.".to_string(), StatusCode::UNAUTHORIZED))?;
    if !csrf_ok(headers, csrf) {
        return Err((
            "This form expired or came from another site; nothing was changed.".into(),
            StatusCode::FORBIDDEN,
        ));
    }
    let p = match s.auth.project_by_id(id).await {
        Ok(Some(p)) if s.auth.decide(&who, Target::Project(&p), Perm::Read).await.is_ok() => p,
        _ => return Err(("No such project.".into(), StatusCode::NOT_FOUND)),
    };
    if s.auth.decide(&who, Target::Project(&p), perm).await.is_err() {
        return Err(("You may not change this project.".into(), StatusCode::FORBIDDEN));
    }
    Ok((p, berth_auth::Origin::new(who.name(), None)))
}

/// The allowlist a form gives (`cves`: ids separated by commas or white space; `expires`: a
/// date or nothing): its ids and their expiry (Unix ms, -1 never).
pub(super) fn allowlist_of(cves: &str, expires: &str) -> Result<Vec<(String, i64)>, String> {
    let expiry = match expires.trim() {
        "" => -1,
        d => match berth_registry::day_of(d) {
            Some(day) => (day + 1) * 86_400_000 - 1,
            None => return Err(format!("Expiry {d:?}: give a date as YYYY-MM-DD, or nothing for never.")),
        },
    };
    let mut ids: Vec<String> = Vec::new();
    for id in cves.split([',', '\n', '\r', ' ', '\t']).map(str::trim).filter(|x| !x.is_empty()) {
        let ok = id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !ok {
            return Err(format!(
                "{:?} is not a vulnerability id (such as CVE-2024-3094 or GHSA-xxxx-xxxx-xxxx).",
                id.chars().take(70).collect::<String>()
            ));
        }
        if !ids.iter().any(|x| x == id) {
            ids.push(id.to_owned());
        }
    }
    if ids.len() > MAX_ALLOWLIST {
        return Err(format!("An allowlist holds at most {MAX_ALLOWLIST} ids; this one has {}.", ids.len()));
    }
    Ok(ids.into_iter().map(|id| (id, expiry)).collect())
}

async fn save(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<ConfigForm>,
) -> Response {
    let result: Result<(), (String, StatusCode)> = async {
        let (p, origin) = checked(&s, &headers, id, &f.csrf, Perm::UpdateProject).await?;
        let bad = |e: String| (e, StatusCode::BAD_REQUEST);
        let mut st = p.settings.clone();
        let flag = |o: &Option<String>| if o.is_some() { "true" } else { "false" };
        for (k, v) in [
            ("public", flag(&f.public)),
            ("auto_scan", flag(&f.auto_scan)),
            ("auto_sbom_generation", flag(&f.auto_sbom)),
            ("prevent_vul", flag(&f.prevent_vul)),
            ("prevent_unscanned", flag(&f.prevent_unscanned)),
            ("severity", f.severity.as_str()),
            ("scan_filters", f.scan_filters.as_str()),
            ("reuse_sys_cve_allowlist", if f.allowlist == "project" { "false" } else { "true" }),
        ] {
            st.set(k, v).map_err(|e| bad(format!("{e}.")))?;
        }
        if !st.scan_filters.is_empty() {
            berth_scanner::check_scan_filters(st.scan_filters.iter().map(String::as_str))
                .map_err(|e| bad(format!("Scan filters: {e}.")))?;
        }
        let items = allowlist_of(&f.cves, &f.expires).map_err(bad)?;
        let limit = match f.limit_gib.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(-1),
            Some(g) => match g.parse::<f64>() {
                Ok(x) if x > 0.0 && x < 1e9 => Some((x * (1u64 << 30) as f64) as i64),
                _ => {
                    return Err(bad(format!(
                        "Storage limit {g:?}: a number of GiB greater than 0, or empty for none."
                    )));
                }
            },
        };
        if limit.is_some() {
            let who =
                super::signed_in(&s, &headers).await.ok_or(("Sign in first.".to_string(), StatusCode::UNAUTHORIZED))?;
            if s.auth.decide(&who, Target::System, Perm::Administer).await.is_err() {
                return Err(("Only system administrators set storage limits.".into(), StatusCode::FORBIDDEN));
            }
        }
        s.scans.put_allowlist(&p.name, &items, &origin).await.map_err(api_err)?;
        s.auth.update_project(p.id, &st, &origin).await.map_err(api_err)?;
        if let Some(limit) = limit {
            s.registry.set_quota(&p.name, limit).await.map_err(api_err)?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => page(&s, &headers, id, Some(("Saved.".into(), true)), StatusCode::OK).await,
        Err((msg, status)) => page(&s, &headers, id, Some((msg, false)), status).await,
    }
}

#[derive(Deserialize)]
struct DeleteForm {
    csrf: String,
    #[serde(default)]
    confirm: String,
}

async fn delete(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<DeleteForm>,
) -> Response {
    let result: Result<(), (String, StatusCode)> = async {
        let (p, origin) = checked(&s, &headers, id, &f.csrf, Perm::DeleteProject).await?;
        if f.confirm.trim() != p.name {
            return Err((format!("Type {:?} to confirm; nothing was deleted.", p.name), StatusCode::BAD_REQUEST));
        }
        let (_, repos) = s.registry.project_repos_page(&p.name, "", 0, 1).await.map_err(api_err)?;
        if repos > 0 {
            return Err((
                format!("The project still holds {repos} repositories; delete them first. Nothing was deleted."),
                StatusCode::PRECONDITION_FAILED,
            ));
        }
        s.auth.delete_project(p.id, &origin).await.map_err(api_err)?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Redirect::to("/harbor/projects").into_response(),
        Err((msg, status)) => page(&s, &headers, id, Some((msg, false)), status).await,
    }
}
