//! A project's pages (Harbor's paths): the repositories tab with push commands, the members
//! tab, and a repository's artifacts with pull commands for each client. Everything shown
//! passes `Auth::decide`: a project the caller may not read is "not found", and the members
//! tab appears only to those who may list members.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use berth_auth::MemberEntity;
use berth_auth::rbac::Perm;
use berth_auth::{Principal, ProjectRecord, Target};
use maud::{Markup, html};

use super::{csrf, human_bytes, layout, signed_in, with_cookies};
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

/// The signed-in caller and the project, if they may read it; else the response to send.
pub(super) async fn open(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    next: &str,
) -> Result<(Principal, ProjectRecord, String, Vec<String>), Response> {
    let Some(who) = signed_in(s, headers).await else {
        return Err(Redirect::to(&format!("/account/sign-in?next={}", enc(next))).into_response());
    };
    let (token, set) = csrf(s, headers);
    let cookies: Vec<String> = set.into_iter().collect();
    let project = match s.auth.project_by_id(id).await {
        Ok(Some(p)) if s.auth.decide(&who, Target::Project(&p), Perm::Read).await.is_ok() => p,
        Ok(_) => {
            let body =
                html! { h1 { "Project not found" } p { "There is no project " (id) ", or you may not see it." } };
            return Err(with_cookies(
                layout("Not found", Some(&who), "", &token, body),
                StatusCode::NOT_FOUND,
                &cookies,
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "portal: reading a project");
            let body = html! { p.error role="alert" { "The project cannot be read right now; try again shortly." } };
            return Err(with_cookies(
                layout("Project", Some(&who), "", &token, body),
                StatusCode::SERVICE_UNAVAILABLE,
                &cookies,
            ));
        }
    };
    Ok((who, project, token, cookies))
}

/// The project's heading and tabs.
pub(super) async fn frame(s: &AdminState, who: &Principal, p: &ProjectRecord, tab: &str, content: Markup) -> Markup {
    let may_members = s.auth.decide(who, Target::Project(p), Perm::ReadMembers).await.is_ok();
    let may_robots = s.auth.decide(who, Target::Project(p), Perm::ReadRobots).await.is_ok();
    let tabs: Vec<(&str, String)> = [
        ("Repositories", "repositories", true),
        ("Members", "members", may_members),
        ("Robot accounts", "robot-account", may_robots),
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
            }
        }
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

async fn repositories(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let here = format!("/harbor/projects/{id}/repositories");
    let (who, p, token, cookies) = match open(&s, &headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let repos = s.registry.project_repos(&p.name).await.unwrap_or_default();
    let host = super::registry_host(&s, &headers);
    let content = html! {
        div.panel {
            @if repos.is_empty() {
                p.muted { "No repositories yet. Push one:" }
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
                                td.hide-narrow { (crate::time(r.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Push to this project" }
        div.panel {
            pre { code {
                "docker tag IMAGE " (host) "/" (p.name) "/REPOSITORY[:TAG]\n"
                "docker push " (host) "/" (p.name) "/REPOSITORY[:TAG]\n"
                "podman push IMAGE " (host) "/" (p.name) "/REPOSITORY[:TAG]\n"
                "helm push CHART.tgz oci://" (host) "/" (p.name) "\n"
                "oras push " (host) "/" (p.name) "/REPOSITORY:TAG FILE"
            } }
        }
    };
    let body = frame(&s, &who, &p, "repositories", content).await;
    with_cookies(layout(&p.name, Some(&who), "/harbor/projects", &token, body), StatusCode::OK, &cookies)
}

fn role_name(role: i64) -> &'static str {
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
    let (who, p, token, cookies) = match open(s, headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if s.auth.decide(&who, Target::Project(&p), Perm::ReadMembers).await.is_err() {
        let body = html! { h1 { "Members" } p { "You may not see this project's members." } };
        return with_cookies(
            layout(&p.name, Some(&who), "/harbor/projects", &token, body),
            StatusCode::FORBIDDEN,
            &cookies,
        );
    }
    let may_manage = s.auth.decide(&who, Target::Project(&p), Perm::ManageMembers).await.is_ok();
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
    let body = frame(s, &who, &p, "members", content).await;
    with_cookies(layout(&p.name, Some(&who), "/harbor/projects", &token, body), status, &cookies)
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
    let who = signed_in(s, headers).await.ok_or(("Sign in first.".to_string(), StatusCode::UNAUTHORIZED))?;
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

async fn artifacts(State(s): State<AdminState>, headers: HeaderMap, Path((id, repo)): Path<(i64, String)>) -> Response {
    let here = format!("/harbor/projects/{id}/repositories/{}/artifacts-tab", enc(&repo));
    let (who, p, token, cookies) = match open(&s, &headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let full = format!("{}/{}", p.name, repo);
    let name: Option<berth_types::RepoName> = full.parse().ok();
    let rows = match &name {
        Some(n)
            if s.auth
                .decide(&who, Target::Repository(n.as_str(), berth_auth::policy::EcrAction::DescribeImages), Perm::Pull)
                .await
                .is_ok() =>
        {
            s.registry.artifacts(n).await.unwrap_or_default()
        }
        _ => Vec::new(),
    };
    if rows.is_empty() {
        let body =
            html! { h1 { "Repository not found" } p { "There is no repository " (full) ", or you may not see it." } };
        return with_cookies(
            layout("Not found", Some(&who), "/harbor/projects", &token, body),
            StatusCode::NOT_FOUND,
            &cookies,
        );
    }
    let children: std::collections::HashSet<&berth_types::Digest> =
        rows.iter().flat_map(|a| a.children.iter()).collect();
    let host = super::registry_host(&s, &headers);
    let body = html! {
        p.crumbs {
            a href="/harbor/projects" { "Projects" } " / "
            a href=(format!("/harbor/projects/{}/repositories", p.id)) { (p.name) } " / "
        }
        h1 { (repo) }
        div.panel {
            table {
                thead { tr { th { "Artifact" } th { "Tags" } th { "Size" } th.hide-narrow { "Pushed" } th.hide-narrow { "Pulled" } } }
                tbody {
                    @for a in rows.iter().filter(|a| !children.contains(&a.record.digest) || !a.tags.is_empty()) {
                        @let digest = a.record.digest.to_string();
                        tr {
                            td { a href=(format!("/harbor/projects/{}/repositories/{}/artifacts-tab/artifacts/{digest}", p.id, enc(&repo))) { code title=(digest) { (digest.get(..19).unwrap_or(&digest)) } } }
                            td {
                                @for (t, _) in &a.tags { span.badge { (t) } " " }
                                @if a.tags.is_empty() { span.muted { "untagged" } }
                            }
                            td { (human_bytes(a.total_size)) }
                            td.hide-narrow { (crate::time(a.record.created_at)) }
                            td.hide-narrow { @if let Some(t) = a.pull_time { (crate::time(t)) } @else { span.muted { "never" } } }
                        }
                    }
                }
            }
        }
        @let first_tag = rows.iter().find_map(|a| a.tags.first().map(|(t, _)| t.clone()));
        @let reference = first_tag.clone().unwrap_or_else(|| "TAG".into());
        h2 { "Pull" }
        div.panel {
            pre { code {
                "docker pull " (host) "/" (full) ":" (reference) "\n"
                "podman pull " (host) "/" (full) ":" (reference) "\n"
                "oras pull " (host) "/" (full) ":" (reference) "\n"
                "helm pull oci://" (host) "/" (full) " --version " (reference)
            } }
        }
    };
    with_cookies(layout(&repo, Some(&who), "/harbor/projects", &token, body), StatusCode::OK, &cookies)
}
