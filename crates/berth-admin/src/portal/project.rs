//! A project's pages (Harbor's paths): the repositories tab with push commands, the members
//! tab, and a repository's artifacts with pull commands for each client. Everything shown
//! passes `Auth::decide`: a project the caller may not read is "not found", and the members
//! tab appears only to those who may list members.

use axum::Router;
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use berth_auth::MemberEntity;
use berth_auth::rbac::Perm;
use berth_auth::{ProjectRecord, Target};
use maud::{Markup, html};

use super::{Ctx, human_bytes, to_sign_in};
use crate::AdminState;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/harbor/projects/{id}",
            get(|Path(id): Path<i64>| async move { Redirect::to(&format!("/harbor/projects/{id}/repositories")) }),
        )
        .route("/harbor/projects/{id}/repositories", get(repositories))
        .route("/harbor/projects/{id}/members", get(members).post(add_member))
        .route("/harbor/projects/{id}/members/{mid}/{op}", axum::routing::post(change_member))
        .route("/harbor/projects/{id}/repositories/{repo}/artifacts-tab", get(artifacts))
}

fn enc(s: &str) -> String {
    crate::enc(s)
}

/// The caller and the project, if they may read it (anyone may read a public project); else
/// the response to send: sign in first, or "not found" (never "forbidden": a private
/// project's existence is not told).
pub(super) async fn open(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    next: &str,
) -> Result<(Ctx, ProjectRecord), Response> {
    let c = Ctx::new(s, headers).await;
    match s.auth.project_by_id(id).await {
        Ok(Some(p)) if c.may(s, Target::Project(&p), Perm::Read).await => Ok((c, p)),
        Ok(_) if c.anonymous() => Err(to_sign_in(next)),
        Ok(_) => {
            let body =
                html! { h1 { "Project not found" } p { "There is no project " (id) ", or you may not see it." } };
            Err(c.page("Not found", "/harbor/projects", body, StatusCode::NOT_FOUND))
        }
        Err(e) => {
            tracing::error!(error = %e, "portal: reading a project");
            let body = html! { p.error role="alert" { "The project cannot be read right now; try again shortly." } };
            Err(c.page("Project", "/harbor/projects", body, StatusCode::SERVICE_UNAVAILABLE))
        }
    }
}

/// A page of a project: its name, the tabs, `content` under them.
pub(super) async fn project_page(
    s: &AdminState,
    c: &Ctx,
    p: &ProjectRecord,
    tab: &str,
    content: Markup,
    status: StatusCode,
) -> Response {
    let body = frame(s, c, p, tab, content).await;
    c.page(&p.name, "/harbor/projects", body, status)
}

/// The project's heading and tabs.
async fn frame(s: &AdminState, c: &Ctx, p: &ProjectRecord, tab: &str, content: Markup) -> Markup {
    let may_members = c.may(s, Target::Project(p), Perm::ReadMembers).await;
    let may_robots = c.may(s, Target::Project(p), Perm::ReadRobots).await;
    let may_logs = c.may(s, Target::Project(p), Perm::ReadLogs).await;
    let may_webhooks = c.may(s, Target::Project(p), Perm::ReadWebhooks).await;
    let signed_in = !c.anonymous();
    // A proxy-cache project names what it caches (the endpoint's name only to administrators).
    let cache = match s.upstreams.cache_rules().await {
        Ok(rules) => rules.iter().find(|r| r.prefix == p.name).map(|r| r.upstream_id),
        Err(_) => None,
    };
    let admin = c.may(s, Target::System, Perm::Administer).await;
    // Its counts, on the repositories tab.
    let stats = match (&s.proxy, cache) {
        (Some(proxy), Some(_)) if tab == "repositories" => Some(proxy.stats(&p.name)),
        _ => None,
    };
    let cache_of = match cache {
        Some(id) if admin => {
            Some(s.upstreams.get(id).await.map(|u| format!("Proxy cache of {}", u.name)).unwrap_or_default())
        }
        Some(_) => Some("Proxy cache".to_owned()),
        None => None,
    };
    let tabs: Vec<(&str, String)> = [
        ("Repositories", "repositories", true),
        ("Members", "members", may_members),
        ("Robot accounts", "robot-account", may_robots),
        ("Policy", "policy", signed_in),
        ("Configuration", "configuration", signed_in),
        ("Webhooks", "webhooks", may_webhooks),
        ("Logs", "logs", may_logs),
    ]
    .into_iter()
    .filter(|(_, _, shown)| *shown)
    .map(|(label, t, _)| (label, t.to_string()))
    .collect();
    html! {
        p.crumbs { a href="/harbor/projects" { "Projects" } " / " }
        div.toolbar {
            h1 { (p.name) " "
                @if p.settings.public() { span.badge.public { "Public" } } @else { span.badge { "Private" } }
                @if let Some(what) = &cache_of { " " span.badge title="Pulls fetch from the upstream registry and keep a copy; pushes are refused" { (what) } }
            }
        }
        @if let Some(st) = &stats { (cache_stats(st, admin)) }
        nav.tabs aria-label="Project" {
            ul {
                @for (label, t) in &tabs {
                    li {
                        @let href = format!("/harbor/projects/{}/{t}", p.id);
                        @if t == tab { a href=(href) aria-current="page" { (label) } } @else { a href=(href) { (label) } }
                    }
                }
            }
        }
        (content)
    }
}

/// A cache's counts since this server started, and how its upstream last answered (the
/// error itself only to administrators: it may name hosts and accounts).
fn cache_stats(st: &berth_registry::CacheStats, admin: bool) -> Markup {
    let failing = match (&st.upstream_failed, st.upstream_ok_at) {
        (Some((at, why)), ok) if ok.is_none_or(|ok| ok < *at) => Some((*at, why)),
        _ => None,
    };
    html! {
        section.cache aria-label="Cache" {
            dl.facts {
                dt { "Manifests (since this server started)" }
                dd { (st.manifest_hits) " from the cache, " (st.manifest_misses) " fetched upstream" }
                dt { "Blobs" }
                dd { (st.blob_hits) " from the cache, " (st.blob_misses) " fetched upstream" }
                @if st.stale_served > 0 {
                    dt { "Served stale" }
                    dd { (st.stale_served) " while upstream failed" }
                }
                dt { "Upstream" }
                dd {
                    @match (failing, st.upstream_ok_at) {
                        (Some((at, why)), _) => {
                            span.badge.failed { "Failing" } " since " (super::when(at))
                            @if admin { ": " (why) }
                        }
                        (None, Some(at)) => { span.badge.public { "Answering" } " (last answer " (super::when(at)) ")" }
                        (None, None) => { "not asked yet" }
                    }
                }
            }
        }
    }
}

async fn repositories(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let here = format!("/harbor/projects/{id}/repositories");
    let (c, p) = match open(&s, &headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let search = q.get("q").map(|x| x.trim().to_owned()).unwrap_or_default();
    let page = q.get("page").and_then(|x| x.parse::<usize>().ok()).unwrap_or(1).max(1);
    let offset = ((page - 1) * super::PAGE_SIZE) as i64;
    let (repos, total) =
        s.registry.project_repos_page(&p.name, &search, offset, super::PAGE_SIZE as i64).await.unwrap_or_default();
    let host = super::registry_host(&s, &headers);
    let may_push = c.may(&s, Target::Project(&p), Perm::Push).await;
    let link = |n: usize| {
        let q = if search.is_empty() { String::new() } else { format!("q={}&", enc(&search)) };
        format!("{here}?{q}page={n}")
    };
    let content = html! {
        form.toolbar method="get" action=(here) role="search" {
            label.label-narrow for="q" { "Search repositories" }
            input #q type="search" name="q" value=(search) placeholder="Repository name contains…";
        }
        div.panel {
            @if repos.is_empty() {
                p.muted {
                    @if !search.is_empty() { "No repository's name contains \u{201c}" (search) "\u{201d}." }
                    @else { "No repositories yet." }
                }
            } @else {
                table {
                    thead { tr { th { "Repository" } th { "Artifacts" } th.hide-narrow { "Pulls" } th.hide-narrow { "Updated" } } }
                    tbody {
                        @for r in &repos {
                            @let short = r.name.split_once('/').map_or(r.name.as_str(), |(_, x)| x);
                            tr {
                                td { a href=(format!("/harbor/projects/{}/repositories/{}/artifacts-tab", p.id, enc(short))) { (r.name) } }
                                td { (r.artifact_count) }
                                td.hide-narrow { (r.pull_count) }
                                td.hide-narrow { (super::when(r.updated_at)) }
                            }
                        }
                    }
                }
                (super::pager(page, total as usize, link))
            }
        }
        @if may_push {
            h2 { "Push to this project" }
            div.panel {
                (super::commands(&[
                    ("Docker", format!("docker tag IMAGE {host}/{}/REPOSITORY[:TAG]\ndocker push {host}/{}/REPOSITORY[:TAG]", p.name, p.name)),
                    ("Podman", format!("podman push IMAGE {host}/{}/REPOSITORY[:TAG]", p.name)),
                    ("Helm", format!("helm push CHART.tgz oci://{host}/{}", p.name)),
                    ("ORAS", format!("oras push {host}/{}/REPOSITORY:TAG FILE", p.name)),
                ]))
            }
        }
    };
    project_page(&s, &c, &p, "repositories", content, StatusCode::OK).await
}

pub(super) fn role_name(role: i64) -> &'static str {
    match role {
        1 => "Project administrator",
        2 => "Developer",
        3 => "Guest",
        4 => "Maintainer",
        5 => "Limited guest",
        _ => "Unknown role",
    }
}

async fn members(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    members_page(&s, &headers, id, None, StatusCode::OK).await
}

const ROLES: [(i64, &str); 5] =
    [(1, "Project administrator"), (4, "Maintainer"), (2, "Developer"), (3, "Guest"), (5, "Limited guest")];

async fn members_page(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    notice: Option<String>,
    status: StatusCode,
) -> Response {
    let here = format!("/harbor/projects/{id}/members");
    let (c, p) = match open(s, headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !c.may(s, Target::Project(&p), Perm::ReadMembers).await {
        let content = html! { p { "You may not see this project's members." } };
        return project_page(s, &c, &p, "members", content, StatusCode::FORBIDDEN).await;
    }
    let token = &c.csrf;
    let may_manage = c.may(s, Target::Project(&p), Perm::ManageMembers).await;
    let list = s.auth.members(p.id).await.unwrap_or_default();
    let content = html! {
        @if let Some(n) = &notice { p.error role="alert" { (n) } }
        div.panel {
            table {
                thead { tr { th { "Member" } th.hide-narrow { "Type" } th { "Role" } @if may_manage { th { span.label-narrow { "Remove" } } } } }
                tbody {
                    @for m in &list {
                        tr {
                            @match &m.entity {
                                MemberEntity::User { name, .. } => { td { (name) } td.hide-narrow { "User" } }
                                MemberEntity::Group(g) => { td { (g) } td.hide-narrow { "Group" } }
                            }
                            td {
                                @if may_manage {
                                    form.inline method="post" action=(format!("{here}/{}/role", m.id)) {
                                        input type="hidden" name="csrf" value=(token);
                                        label.label-narrow for=(format!("role-{}", m.id)) { "Role" }
                                        select id=(format!("role-{}", m.id)) name="role_id" {
                                            @for (rid, label) in ROLES {
                                                option value=(rid) selected[rid == m.role_id] { (label) }
                                            }
                                        }
                                        " "
                                        button.quiet type="submit" { "Change" }
                                    }
                                } @else {
                                    (role_name(m.role_id))
                                }
                            }
                            @if may_manage {
                                td {
                                    form.inline method="post" action=(format!("{here}/{}/remove", m.id)) {
                                        input type="hidden" name="csrf" value=(token);
                                        button.quiet.danger type="submit" { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if may_manage {
            h2 { "Add a member" }
            div.panel {
                form method="post" action=(here) {
                    input type="hidden" name="csrf" value=(token);
                    label for="member-name" { "User name, or group name" }
                    input #member-name type="text" name="name" required maxlength="255";
                    fieldset {
                        legend { "It is a" }
                        label.check { input type="radio" name="kind" value="user" checked; " user" }
                        label.check { input type="radio" name="kind" value="group"; " group (of your identity provider)" }
                    }
                    label for="member-role" { "Role" }
                    select #member-role name="role_id" {
                        @for (rid, label) in ROLES { option value=(rid) selected[rid == 2] { (label) } }
                    }
                    p { button type="submit" { "Add" } }
                }
            }
        }
    };
    project_page(s, &c, &p, "members", content, status).await
}

#[derive(serde::Deserialize)]
struct MemberForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    role_id: i64,
}

/// Check the form and the caller's right to manage members; the project and who acts.
async fn managing(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    csrf: &str,
) -> Result<(ProjectRecord, berth_auth::Origin), (String, StatusCode)> {
    let who = super::signed_in(s, headers).await.ok_or(("Sign in first.".to_string(), StatusCode::UNAUTHORIZED))?;
    if !super::csrf_ok(headers, csrf) {
        return Err((
            "This form expired or came from another site; nothing was changed.".into(),
            StatusCode::FORBIDDEN,
        ));
    }
    let p = match s.auth.project_by_id(id).await {
        Ok(Some(p)) => p,
        _ => return Err(("No such project.".into(), StatusCode::NOT_FOUND)),
    };
    if s.auth.decide(&who, Target::Project(&p), Perm::ManageMembers).await.is_err() {
        return Err(("You may not change this project's members.".into(), StatusCode::FORBIDDEN));
    }
    Ok((p, berth_auth::Origin::new(who.name(), None)))
}

fn role_of(id: i64) -> Result<berth_auth::rbac::Role, (String, StatusCode)> {
    berth_auth::rbac::Role::from_id(id).ok_or((format!("Unknown role {id}."), StatusCode::BAD_REQUEST))
}

async fn add_member(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<MemberForm>,
) -> Response {
    let result: Result<(), (String, StatusCode)> = async {
        let (p, origin) = managing(&s, &headers, id, &f.csrf).await?;
        let role = role_of(f.role_id)?;
        let name = f.name.trim();
        let entity = match f.kind.as_str() {
            "group" if !name.is_empty() => MemberEntity::Group(name.to_owned()),
            "user" => match s.auth.user_by_name(name).await {
                Ok(Some(u)) => MemberEntity::User { id: u.id, name: String::new() },
                _ => return Err((format!("There is no user named \u{201c}{name}\u{201d}."), StatusCode::NOT_FOUND)),
            },
            _ => return Err(("Give a user or group name.".into(), StatusCode::BAD_REQUEST)),
        };
        s.auth.add_member(p.id, &entity, role, &origin).await.map(|_| ()).map_err(super::api_err)
    }
    .await;
    members_after(&s, &headers, id, result).await
}

/// Back to the members tab after a change, or the tab with what went wrong.
async fn members_after(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    result: Result<(), (String, StatusCode)>,
) -> Response {
    match result {
        Ok(()) => Redirect::to(&format!("/harbor/projects/{id}/members")).into_response(),
        Err((msg, status)) => members_page(s, headers, id, Some(msg), status).await,
    }
}

async fn change_member(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, mid, op)): Path<(i64, i64, String)>,
    axum::Form(f): axum::Form<MemberForm>,
) -> Response {
    let result: Result<(), (String, StatusCode)> = async {
        let (p, origin) = managing(&s, &headers, id, &f.csrf).await?;
        let known = s.auth.members(p.id).await.unwrap_or_default().iter().any(|m| m.id == mid);
        if !known {
            return Err((format!("Member {mid} is not in this project."), StatusCode::NOT_FOUND));
        }
        let done = match op.as_str() {
            "role" => s.auth.update_member(p.id, mid, role_of(f.role_id)?, &origin).await,
            "remove" => s.auth.delete_member(p.id, mid, &origin).await,
            _ => return Err(("Unknown change.".into(), StatusCode::NOT_FOUND)),
        };
        done.map(|_| ()).map_err(super::api_err)
    }
    .await;
    members_after(&s, &headers, id, result).await
}

async fn artifacts(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, repo)): Path<(i64, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let here = format!("/harbor/projects/{id}/repositories/{}/artifacts-tab", enc(&repo));
    let (c, p) = match open(&s, &headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let full = format!("{}/{}", p.name, repo);
    let name: Option<berth_types::RepoName> = full.parse().ok();
    let rows = match &name {
        Some(n)
            if c.may(&s, Target::Repository(n.as_str(), berth_auth::policy::EcrAction::DescribeImages), Perm::Pull)
                .await =>
        {
            s.registry.artifacts(n).await.unwrap_or_default()
        }
        _ => Vec::new(),
    };
    if rows.is_empty() {
        let body =
            html! { h1 { "Repository not found" } p { "There is no repository " (full) ", or you may not see it." } };
        return c.page("Not found", "/harbor/projects", body, StatusCode::NOT_FOUND);
    }
    let children: std::collections::HashSet<&berth_types::Digest> =
        rows.iter().flat_map(|a| a.children.iter()).collect();
    // Children of an index and accessories (signatures, SBOMs: manifests with a subject) are
    // shown on their parent's page, unless tagged themselves.
    let acc = crate::repos::Accessories::new(&rows);
    let top: Vec<&berth_registry::ArtifactRow> = rows
        .iter()
        .filter(|a| (!children.contains(&a.record.digest) || !a.tags.is_empty()) && !acc.is_accessory(a))
        .collect();
    let page = q.get("page").and_then(|x| x.parse::<usize>().ok()).unwrap_or(1).max(1);
    let shown: Vec<&&berth_registry::ArtifactRow> =
        top.iter().skip((page - 1) * super::PAGE_SIZE).take(super::PAGE_SIZE).collect();
    let accessories = |d: &berth_types::Digest| acc.of(d).len();
    let digests: Vec<String> = shown.iter().map(|a| a.record.digest.to_string()).collect();
    let mut scans = Vec::new();
    for d in &digests {
        if let Ok(Some(r)) = s.scans.record(d).await {
            scans.push(r);
        }
    }
    let labels = s.registry.labels().repo_labels(&full).await.unwrap_or_default();
    let host = super::registry_host(&s, &headers);
    let body = html! {
        p.crumbs {
            a href="/harbor/projects" { "Projects" } " / "
            a href=(format!("/harbor/projects/{}/repositories", p.id)) { (p.name) } " / "
        }
        div.toolbar {
            h1 { (repo) }
            a.button.quiet href=(format!("/harbor/projects/{}/repositories/{}/policies", p.id, enc(&repo))) { "Policies" }
        }
        div.panel {
            table {
                thead { tr {
                    th { (super::sortable("Artifact")) } th { "Tags" } th { (super::sortable("Size")) }
                    th.hide-narrow { "Vulnerabilities" } th.hide-narrow { (super::sortable("Pushed")) } th.hide-narrow { (super::sortable("Pulled")) }
                } }
                tbody {
                    @for a in &shown {
                        @let digest = a.record.digest.to_string();
                        tr {
                            td {
                                a href=(format!("{here}/artifacts/{digest}")) { code title=(digest) { (digest.get(..19).unwrap_or(&digest)) } }
                                @if !a.children.is_empty() { " " span.badge title="An index of images for several platforms" { (a.children.len()) " platforms" } }
                                @let n = accessories(&a.record.digest);
                                @if n > 0 { " " span.badge title="Signatures, SBOMs and other artifacts that refer to this one" { (n) " accessories" } }
                            }
                            td {
                                @for (t, _) in &a.tags { span.badge { (t) } " " }
                                @if a.tags.is_empty() { span.muted { "untagged" } }
                                @for l in labels.get(&digest).into_iter().flatten() { span.badge.label { (l.name) } " " }
                            }
                            td data-key=(a.total_size) { (human_bytes(a.total_size)) }
                            td.hide-narrow { (super::artifact::scan_badge(scans.iter().find(|r| r.digest == digest))) }
                            td.hide-narrow data-key=(a.record.created_at) { (super::when(a.record.created_at)) }
                            td.hide-narrow data-key=(a.pull_time.unwrap_or(0)) { @if let Some(t) = a.pull_time { (super::when(t)) } @else { span.muted { "never" } } }
                        }
                    }
                }
            }
            (super::pager(page, top.len(), |n| format!("{here}?page={n}")))
        }
        @let first_tag = top.iter().find_map(|a| a.tags.first().map(|(t, _)| t.clone()));
        @let reference = first_tag.clone().unwrap_or_else(|| "TAG".into());
        h2 { "Pull" }
        div.panel {
            (super::commands(&[
                ("Docker", format!("docker pull {host}/{full}:{reference}")),
                ("Podman", format!("podman pull {host}/{full}:{reference}")),
                ("Helm", format!("helm pull oci://{host}/{full} --version {reference}")),
                ("ORAS", format!("oras pull {host}/{full}:{reference}")),
            ]))
        }
    };
    c.page(&repo, "/harbor/projects", body, StatusCode::OK)
}
