//! Administration (system administrators only): users (create, make or revoke
//! administrator, set a password, delete), groups (as the identity provider names them, with
//! the projects they belong to), garbage collection (run or dry run now, schedule, history
//! with each run's log), the vulnerability database (sources, import of an OSV file, scan
//! all) and system settings (the system CVE allowlist; what the configuration file sets).
//! Registries are in `registries.rs`; proxy caches and replication add theirs here.

use std::collections::{BTreeMap, HashMap};

use axum::Form;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use berth_auth::{MemberEntity, Principal, secret};
use berth_jobs::{GcParameters, Schedule};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Ctx, PAGE_SIZE, admin_action, admin_ctx, api_err, pager};
use crate::AdminState;

pub(super) const USERS: &str = "/harbor/users";
pub(super) const GROUPS: &str = "/harbor/groups";
pub(super) const GC: &str = "/harbor/gc";
pub(super) const VULNERABILITY: &str = "/harbor/vulnerability";
pub(super) const SETTINGS: &str = "/harbor/settings";

/// Largest OSV file the import form takes.
const MAX_IMPORT: usize = 2 << 30;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route(USERS, get(users).post(create_user))
        .route("/harbor/users/{id}/{op}", post(change_user))
        .route(GROUPS, get(groups))
        .route(GC, get(gc).post(gc_change))
        .route("/harbor/gc/{id}", get(gc_log))
        .route(VULNERABILITY, get(vulnerability))
        .route("/harbor/vulnerability/scan-all", post(scan_all))
        .route("/harbor/vulnerability/import", post(import).layer(DefaultBodyLimit::max(MAX_IMPORT)))
        .route(SETTINGS, get(settings).post(save_settings))
}

/// A message after an action: `(text, succeeded)`.
pub(super) type Notice = Option<(String, bool)>;

/// The message after an action, as a status or an alert.
pub(super) fn notice(n: &Notice) -> Markup {
    html! {
        @if let Some((msg, ok)) = n {
            @if *ok { p.notice role="status" { (msg) } } @else { p.error role="alert" { (msg) } }
        }
    }
}

async fn users(State(s): State<AdminState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    users_page(&s, &headers, &q, None, StatusCode::OK).await
}

async fn users_page(
    s: &AdminState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    note: Notice,
    status: StatusCode,
) -> Response {
    let c = match admin_ctx(s, headers, USERS, "Users").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let search = q.get("q").map(|x| x.trim().to_owned()).unwrap_or_default();
    let page = q.get("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).max(1);
    let all: Vec<_> = s
        .auth
        .users()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|u| search.is_empty() || u.username.contains(&search) || u.email.contains(&search))
        .collect();
    let total = all.len();
    let me = c.who.user().map(|u| u.id);
    let token = &c.csrf;
    let body = html! {
        div.toolbar {
            h1 { "Users" }
            form method="get" action=(USERS) role="search" {
                label.label-narrow for="q" { "Search users" }
                input #q type="search" name="q" value=(search) placeholder="Name or email contains…";
            }
        }
        (notice(&note))
        div.panel {
            table {
                thead { tr { th { "User" } th.hide-narrow { "Email" } th { "Signs in with" } th { "Administrator" } th.hide-narrow { "Created" } th { span.label-narrow { "Actions" } } } }
                tbody { @for u in all.iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE) {
                    tr {
                        td { strong { (u.username) } @if !u.realname.is_empty() { br; span.muted { (u.realname) } } }
                        td.hide-narrow { (u.email) }
                        td { @if u.oidc_subject.is_some() { "SSO" } @else { "password" } }
                        td { @if u.sysadmin { span.badge.public { "Administrator" } } @else { span.muted { "no" } } }
                        td.hide-narrow { (super::when(u.created_at)) }
                        td.actions {
                            @if Some(u.id) != me {
                                form.inline method="post" action=(format!("/harbor/users/{}/{}", u.id, if u.sysadmin { "revoke-admin" } else { "make-admin" })) {
                                    input type="hidden" name="csrf" value=(token);
                                    button.quiet type="submit" { @if u.sysadmin { "Revoke administrator" } @else { "Make administrator" } }
                                }
                                form.inline method="post" action=(format!("/harbor/users/{}/delete", u.id)) {
                                    input type="hidden" name="csrf" value=(token);
                                    button.quiet.danger type="submit" { "Delete" }
                                }
                            } @else { span.muted { "you" } }
                            @if u.oidc_subject.is_none() {
                                details {
                                    summary { "Set password" }
                                    form.inline method="post" action=(format!("/harbor/users/{}/password", u.id)) {
                                        input type="hidden" name="csrf" value=(token);
                                        label.label-narrow for=(format!("pw-{}", u.id)) { "New password for " (u.username) }
                                        input id=(format!("pw-{}", u.id)) type="password" name="password" autocomplete="new-password" required;
                                        button.quiet type="submit" { "Set" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            (pager(page, total, |n| format!("{USERS}?q={}&page={n}", crate::enc(&search))))
        }
        h2 { "New user" }
        form.panel method="post" action=(USERS) {
            input type="hidden" name="csrf" value=(token);
            label for="nu-name" { "Username" }
            input #nu-name type="text" name="username" required maxlength="255" autocomplete="off";
            label for="nu-email" { "Email" }
            input #nu-email type="text" name="email" inputmode="email";
            label for="nu-real" { "Full name" }
            input #nu-real type="text" name="realname";
            label for="nu-pw" { "Password (8–128 characters with upper and lower case letters and a digit)" }
            input #nu-pw type="password" name="password" required autocomplete="new-password";
            p { button type="submit" { "Create user" } }
        }
    };
    self::page(&c, "Users", USERS, body, status)
}

#[derive(Deserialize)]
struct NewUserForm {
    csrf: String,
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    realname: String,
    password: String,
}

async fn create_user(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<NewUserForm>) -> Response {
    let who = match admin_action(&s, &headers, &f.csrf, USERS).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let origin = berth_auth::Origin::new(who.name(), None);
    let name = f.username.trim().to_owned();
    let made =
        crate::users::create_local_user(&s, &origin, name.clone(), f.email, f.realname, String::new(), &f.password)
            .await;
    match made {
        Ok(_) => {
            users_page(&s, &headers, &HashMap::new(), Some((format!("User {name} created."), true)), StatusCode::OK)
                .await
        }
        Err(e) => {
            let (msg, status) = api_err(e);
            users_page(&s, &headers, &HashMap::new(), Some((format!("{msg}."), false)), status).await
        }
    }
}

#[derive(Deserialize)]
struct UserForm {
    csrf: String,
    #[serde(default)]
    password: String,
}

async fn change_user(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, op)): Path<(i64, String)>,
    Form(f): Form<UserForm>,
) -> Response {
    let who = match admin_action(&s, &headers, &f.csrf, USERS).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let origin = berth_auth::Origin::new(who.name(), None);
    let r: Result<String, (String, StatusCode)> = async {
        let u = match s.auth.user(id).await {
            Ok(Some(u)) => u,
            _ => return Err((format!("There is no user {id}."), StatusCode::NOT_FOUND)),
        };
        let own = who.user().is_some_and(|me| me.id == id);
        match op.as_str() {
            "make-admin" | "revoke-admin" if !own => {
                s.auth.set_sysadmin(id, op == "make-admin", &origin).await.map_err(api_err)?;
                Ok(if op == "make-admin" {
                    format!("{} is now an administrator.", u.username)
                } else {
                    format!("{} is no longer an administrator.", u.username)
                })
            }
            "delete" if !own => {
                s.auth.delete_user(id, &origin).await.map_err(api_err)?;
                Ok(format!("User {} deleted.", u.username))
            }
            "password" if u.oidc_subject.is_none() => {
                secret::check_password_strength(&f.password).map_err(|m| (format!("{m}."), StatusCode::BAD_REQUEST))?;
                let pw = f.password.clone();
                let hash = berth_auth::hashing(move || secret::hash_password(&pw)).await.map_err(api_err)?;
                s.auth.set_password(id, &hash, &origin).await.map_err(api_err)?;
                Ok(format!("The password of {} was changed.", u.username))
            }
            "password" => Err((
                "An SSO user has no password here; they sign in with the identity provider.".into(),
                StatusCode::BAD_REQUEST,
            )),
            _ if own => Err((
                "You cannot change your own administrator rights or delete yourself.".into(),
                StatusCode::FORBIDDEN,
            )),
            _ => Err(("Unknown action.".into(), StatusCode::NOT_FOUND)),
        }
    }
    .await;
    let (note, status) = match r {
        Ok(m) => ((m, true), StatusCode::OK),
        Err((m, st)) => ((m, false), st),
    };
    users_page(&s, &headers, &HashMap::new(), Some(note), status).await
}

/// A group: the users seen in it at sign-in, and the projects it is a member of as
/// (name, id, role).
type Group = (Vec<String>, Vec<(String, i64, i64)>);

async fn groups(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    let c = match admin_ctx(&s, &headers, GROUPS, "Groups").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for u in s.auth.users().await.unwrap_or_default() {
        for g in &u.groups {
            groups.entry(g.clone()).or_default().0.push(u.username.clone());
        }
    }
    for p in s.auth.projects().await.unwrap_or_default() {
        for m in s.auth.members(p.id).await.unwrap_or_default() {
            if let MemberEntity::Group(g) = &m.entity {
                groups.entry(g.clone()).or_default().1.push((p.name.clone(), p.id, m.role_id));
            }
        }
    }
    let admin_group = s.auth.oidc().and_then(|o| o.config().admin_group.clone());
    let body = html! {
        h1 { "Groups" }
        p.muted { "Groups come from the identity provider (the groups claim at each sign-in); add one to a project from the project's members tab." }
        div.panel {
            @if groups.is_empty() { p.muted { "No groups yet: none was named at sign-in or added to a project." } }
            @else {
                table {
                    thead { tr { th { "Group" } th { "Users seen in it" } th { "Member of" } } }
                    tbody { @for (g, (users, projects)) in &groups {
                        tr {
                            td { strong { (g) } @if admin_group.as_deref() == Some(g.as_str()) { " " span.badge.public { "Administrators" } } }
                            td { @if users.is_empty() { span.muted { "none yet" } } @else { (users.join(", ")) } }
                            td { @for (i, (name, id, role)) in projects.iter().enumerate() {
                                @if i > 0 { ", " }
                                a.u href=(format!("/harbor/projects/{id}/members")) { (name) } " (" (super::project::role_name(*role)) ")"
                            } }
                        }
                    } }
                }
            }
        }
    };
    page(&c, "Groups", GROUPS, body, StatusCode::OK)
}

async fn gc(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    gc_page(&s, &headers, None, StatusCode::OK).await
}

async fn gc_page(s: &AdminState, headers: &HeaderMap, note: Notice, status: StatusCode) -> Response {
    let c = match admin_ctx(s, headers, GC, "Garbage collection").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let schedule = s.gc.schedule().await.ok().flatten();
    let params: GcParameters =
        schedule.as_ref().and_then(|r| serde_json::from_str(&r.parameters).ok()).unwrap_or_default();
    let kind = schedule.as_ref().map_or("None", |r| r.kind.as_str());
    let (runs, _) = s.gc.runs(0, 20).await.unwrap_or_default();
    let body = html! {
        h1 { "Garbage collection" }
        (notice(&note))
        p.muted { "Deleting artifacts frees no space by itself: garbage collection removes the layers nothing refers to any more. It runs while the registry serves pushes and pulls." }
        form.panel.stack method="post" action=(GC) {
            input type="hidden" name="csrf" value=(c.csrf);
            label.check { input type="checkbox" name="delete_untagged" value="on" checked[params.delete_untagged]; " Also delete untagged artifacts" }
            label for="window" { "Keep what is younger than (hours)" }
            input #window type="text" name="time_window" inputmode="numeric" value=(params.time_window);
            p {
                button.quiet type="submit" name="op" value="dry-run" { "Dry run" } " "
                button type="submit" name="op" value="run" { "Collect now" }
            }
            fieldset {
                legend { "Schedule" }
                @for k in ["None", "Hourly", "Daily", "Weekly", "Custom"] {
                    label.check { input type="radio" name="kind" value=(k) checked[kind == k]; " " (k) }
                }
                label for="cron" { "Custom cron (six fields, seconds first, e.g. " code { "0 0 3 * * *" } ")" }
                input #cron type="text" name="cron" value=(schedule.as_ref().and_then(|r| r.cron.clone()).unwrap_or_default());
                @if let Some(next) = schedule.as_ref().and_then(|r| r.next_at) { p.muted { "Next run: " (super::when(next)) } }
                p { button.quiet type="submit" name="op" value="schedule" { "Save schedule" } }
            }
        }
        h2 { "History" }
        div.panel {
            @if runs.is_empty() { p.muted { "No collection has run yet." } }
            @else {
                table {
                    thead { tr { th { "Run" } th { "Trigger" } th { "Status" } th.hide-narrow { "Started" } th { "Freed" } } }
                    tbody { @for r in &runs {
                        @let result: serde_json::Value = r.result.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
                        tr {
                            td { a href=(format!("/harbor/gc/{}", r.id)) { (r.id) } }
                            td { (r.kind) @if r.parameters.contains("\"dry_run\":true") { " (dry run)" } }
                            td { (r.status) }
                            td.hide-narrow { (super::when(r.created_at)) }
                            td { @if let Some(b) = result["freed_bytes"].as_i64() { (super::human_bytes(b)) } }
                        }
                    } }
                }
            }
        }
    };
    page(&c, "Garbage collection", GC, body, status)
}

#[derive(Deserialize)]
struct GcForm {
    csrf: String,
    op: String,
    delete_untagged: Option<String>,
    #[serde(default)]
    time_window: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    cron: String,
}

async fn gc_change(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<GcForm>) -> Response {
    if let Err(r) = admin_action(&s, &headers, &f.csrf, GC).await {
        return r;
    }
    let r: Result<String, (String, StatusCode)> = async {
        let bad = |m: String| (m, StatusCode::BAD_REQUEST);
        let window: u64 = f
            .time_window
            .trim()
            .parse()
            .map_err(|_| bad(format!("Hours must be a whole number, not {:?}.", f.time_window)))?;
        let mut params = GcParameters {
            delete_untagged: f.delete_untagged.is_some(),
            dry_run: false,
            time_window: window,
            workers: 1,
        };
        params.validate().map_err(|e| bad(format!("{e}.")))?;
        match f.op.as_str() {
            "run" | "dry-run" => {
                params.dry_run = f.op == "dry-run";
                let id = s.gc.start("Manual", &params).await.map_err(api_err)?;
                Ok(format!("Run {id} started; it appears in the history below."))
            }
            "schedule" => {
                let cron = Some(f.cron.as_str()).filter(|c| !c.trim().is_empty());
                let schedule = Schedule::parse(&f.kind, cron).map_err(|e| bad(format!("{e}.")))?;
                s.gc.set_schedule(&schedule, &params).await.map_err(api_err)?;
                Ok(format!("Schedule saved: {}.", schedule.kind))
            }
            _ => Err(bad("Unknown action.".into())),
        }
    }
    .await;
    match r {
        Ok(m) => gc_page(&s, &headers, Some((m, true)), StatusCode::OK).await,
        Err((m, st)) => gc_page(&s, &headers, Some((m, false)), st).await,
    }
}

async fn gc_log(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let c = match admin_ctx(&s, &headers, GC, "Garbage collection").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(r) = s.gc.run(id).await.ok().flatten() else {
        let body = html! { h1 { "Not found" } p { "There is no garbage collection run " (id) "." } };
        return page(&c, "Not found", GC, body, StatusCode::NOT_FOUND);
    };
    let body = html! {
        p.crumbs { a href=(GC) { "Garbage collection" } " / " }
        h1 { "Run " (r.id) }
        div.panel.stack {
            dl.facts {
                dt { "Status" } dd { (r.status) }
                dt { "Trigger" } dd { (r.kind) }
                dt { "Parameters" } dd { code { (r.parameters) } }
                dt { "Started" } dd { (super::when(r.created_at)) }
                dt { "Updated" } dd { (super::when(r.updated_at)) }
            }
            pre tabindex="0" { code { (r.log) } }
        }
    };
    page(&c, &format!("Garbage collection run {id}"), GC, body, StatusCode::OK)
}

async fn vulnerability(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    vulnerability_page(&s, &headers, None, StatusCode::OK).await
}

async fn vulnerability_page(s: &AdminState, headers: &HeaderMap, note: Notice, status: StatusCode) -> Response {
    let c = match admin_ctx(s, headers, VULNERABILITY, "Vulnerability database").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (sources, generation) = s.scans.vulndb_status().await.unwrap_or_default();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let records = s.scans.records().await.unwrap_or_default();
    for r in &records {
        *counts.entry(crate::shapes::status_word(r)).or_default() += 1;
    }
    let body = html! {
        h1 { "Vulnerability database" }
        (notice(&note))
        div.panel.stack {
            p { "Advisories are matched offline, from imported OSV data. Generation " strong { (generation) } "." }
            @if sources.is_empty() { p.error role="alert" { "No advisories imported: scans find nothing until you import OSV data below." } }
            @else {
                table {
                    thead { tr { th { "Source" } th { "Advisories" } th.hide-narrow { "Withdrawn" } th.hide-narrow { "Newest change" } th { "Imported" } } }
                    tbody { @for v in &sources {
                        tr {
                            td { strong { (v.name) } br; span.muted.wrap { (v.location) } }
                            td { (v.records) } td.hide-narrow { (v.withdrawn) } td.hide-narrow { (v.newest_modified) }
                            td { (super::when(v.imported_at)) }
                        }
                    } }
                }
            }
        }
        h2 { "Import" }
        form.panel method="post" action="/harbor/vulnerability/import" enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(c.csrf);
            label for="osv" { "OSV data: a .zip as osv.dev publishes per ecosystem, .json, .jsonl or .jsonl.gz" }
            input #osv type="file" name="file" accept=".zip,.json,.jsonl,.gz" required;
            p { button type="submit" { "Import" } }
        }
        h2 { "Scan all" }
        form.panel.stack method="post" action="/harbor/vulnerability/scan-all" {
            input type="hidden" name="csrf" value=(c.csrf);
            p {
                (records.len()) " artifacts have a scan record"
                @for (k, n) in &counts { " \u{b7} " (n) " " (k.to_lowercase()) }
            }
            p { button type="submit" { "Scan every artifact now" } }
        }
    };
    page(&c, "Vulnerability database", VULNERABILITY, body, status)
}

async fn scan_all(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<super::CsrfForm>) -> Response {
    let who = match admin_action(&s, &headers, &f.csrf, VULNERABILITY).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let origin = berth_auth::Origin::new(who.name(), None);
    match crate::scans::scan_everything(&s, &origin).await {
        Ok(n) => vulnerability_page(&s, &headers, Some((format!("{n} scans requested."), true)), StatusCode::OK).await,
        Err(e) => {
            let (m, st) = api_err(e);
            vulnerability_page(&s, &headers, Some((m, false)), st).await
        }
    }
}

/// The uploaded OSV file, written to a temporary file (named by the upload's kind, which the
/// importer reads by extension); the CSRF token, which must come first.
async fn receive(
    mut form: Multipart,
    headers: &HeaderMap,
    dir: &std::path::Path,
) -> Result<std::path::PathBuf, (String, StatusCode)> {
    let bad = |m: String| (m, StatusCode::BAD_REQUEST);
    let mut csrf = String::new();
    while let Some(mut field) = form.next_field().await.map_err(|e| bad(format!("The upload failed: {e}.")))? {
        match field.name() {
            Some("csrf") => csrf = field.text().await.map_err(|e| bad(format!("The upload failed: {e}.")))?,
            Some("file") => {
                // Nothing is written before the form has shown it is this site's.
                if !super::csrf_ok(headers, &csrf) {
                    let m = "This form expired or came from another site; nothing was imported. Reload the page and try again.";
                    return Err((m.into(), StatusCode::FORBIDDEN));
                }
                let name = field.file_name().unwrap_or("").to_ascii_lowercase();
                let ext = [".jsonl.gz", ".jsonl", ".json", ".zip"].into_iter().find(|e| name.ends_with(e)).ok_or_else(
                    || bad(format!("{name:?}: give a .zip, .json, .jsonl or .jsonl.gz file of OSV records.")),
                )?;
                // The source is named after the file (as by `berth vulndb import`): keep a
                // safe form of its name, never a path.
                let stem: String = name[..name.len() - ext.len()]
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
                    .take(100)
                    .collect();
                let stem = stem.trim_matches('.');
                let path = dir.join(format!("{}{ext}", if stem.is_empty() { "upload" } else { stem }));
                let full =
                    |e: std::io::Error| (format!("Saving the upload failed: {e}."), StatusCode::INSUFFICIENT_STORAGE);
                let mut out = tokio::fs::File::create(&path).await.map_err(full)?;
                use tokio::io::AsyncWriteExt;
                while let Some(chunk) = field.chunk().await.map_err(|e| bad(format!("The upload failed: {e}.")))? {
                    out.write_all(&chunk).await.map_err(full)?;
                }
                out.flush().await.map_err(full)?;
                return Ok(path);
            }
            _ => {}
        }
    }
    Err(bad("Choose a file to import.".into()))
}

async fn import(State(s): State<AdminState>, headers: HeaderMap, form: Multipart) -> Response {
    // Only an administrator's upload is read (the CSRF token is checked before the file).
    let c = match admin_ctx(&s, &headers, VULNERABILITY, "Vulnerability database").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let who = c.who.name().to_owned();
    let dir = std::env::temp_dir().join(format!("berth-osv-{}", hex::encode(rand::random::<[u8; 8]>())));
    let r: Result<String, (String, StatusCode)> = async {
        tokio::fs::create_dir_all(&dir).await.map_err(|e| (format!("Saving the upload failed: {e}."), StatusCode::INSUFFICIENT_STORAGE))?;
        let path = receive(form, &headers, &dir).await?;
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let hide = dir.display().to_string();
        let stats = s
            .scans
            .import(&path, &format!("{file}, uploaded by {who}"))
            .await
            .map_err(|e| (format!("The import failed: {}.", format!("{e:#}").replace(&hide, "")), StatusCode::BAD_REQUEST))?;
        if let Err(e) = s.jobs.enqueue(&berth_scanner::reevaluate_job()).await {
            tracing::error!(error = %e, "portal: queueing the re-evaluation after an import");
        }
        Ok(format!(
            "Imported {} advisories ({} withdrawn, {} unreadable) from {}; generation {}. Stored scans are being re-evaluated.",
            stats.records, stats.withdrawn, stats.invalid, stats.sources.join(", "), stats.generation
        ))
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    match r {
        Ok(m) => vulnerability_page(&s, &headers, Some((m, true)), StatusCode::OK).await,
        Err((m, st)) => vulnerability_page(&s, &headers, Some((m, false)), st).await,
    }
}

async fn settings(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    settings_page(&s, &headers, None, StatusCode::OK).await
}

async fn settings_page(s: &AdminState, headers: &HeaderMap, note: Notice, status: StatusCode) -> Response {
    let c: Ctx = match admin_ctx(s, headers, SETTINGS, "Settings").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let allow = s.scans.allowlist("").await.unwrap_or_default();
    let expires = allow.iter().map(|(_, e)| *e).find(|e| *e >= 0);
    let cfg = s.auth.config();
    let body = html! {
        h1 { "Settings" }
        (notice(&note))
        form.panel.stack method="post" action=(SETTINGS) {
            input type="hidden" name="csrf" value=(c.csrf);
            fieldset {
                legend { "System CVE allowlist: applies to every project that uses it" }
                label for="cves" { "Vulnerability ids, one per line or separated by commas" }
                textarea #cves name="cves" rows="5" { (allow.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>().join("\n")) }
                label for="expires" { "Expires on (empty: never)" }
                input #expires type="date" name="expires" value=(expires.map(|e| berth_registry::date_of(e / 86_400_000)).unwrap_or_default());
            }
            p { button type="submit" { "Save" } }
        }
        h2 { "From the configuration file" }
        div.panel {
            p.muted { "These are set in berth.toml (or BERTH_* variables) and take effect at the next start." }
            dl.facts {
                dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
                dt { "Address clients use" } dd { (s.external_url.clone().unwrap_or_else(|| "not set: taken from each request".into())) }
                dt { "Sign-in" } dd { @if s.auth.oidc().is_some() { "local accounts and OIDC (SSO)" } @else { "local accounts" } }
                dt { "Sessions last" } dd { (cfg.session_ttl.as_secs() / 3600) " hours" }
                dt { "Anonymous pulls of public projects" } dd { "allowed" }
                dt { "Audit entries kept" } dd { (s.audit_retention.as_secs() / 86_400) " days, at most " (s.audit_max_entries) }
            }
        }
    };
    page(&c, "Settings", SETTINGS, body, status)
}

#[derive(Deserialize)]
struct SettingsForm {
    csrf: String,
    #[serde(default)]
    cves: String,
    #[serde(default)]
    expires: String,
}

async fn save_settings(State(s): State<AdminState>, headers: HeaderMap, Form(f): Form<SettingsForm>) -> Response {
    let who: Principal = match admin_action(&s, &headers, &f.csrf, SETTINGS).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let origin = berth_auth::Origin::new(who.name(), None);
    let r = match super::config::allowlist_of(&f.cves, &f.expires) {
        Ok(items) => s.scans.put_allowlist("", &items, &origin).await.map(|_| items.len()).map_err(|e| api_err(e).0),
        Err(m) => Err(m),
    };
    match r {
        Ok(n) => {
            settings_page(
                &s,
                &headers,
                Some((format!("Saved: the system allowlist names {n} vulnerabilities."), true)),
                StatusCode::OK,
            )
            .await
        }
        Err(m) => settings_page(&s, &headers, Some((m, false)), StatusCode::BAD_REQUEST).await,
    }
}

/// The administration sections, as tabs over each of their pages.
const SECTIONS: &[(&str, &str)] = &[
    ("Users", USERS),
    ("Groups", GROUPS),
    ("Registries", super::registries::PATH),
    ("Replication", super::replication::PATH),
    ("Jobs", super::jobs::PATH),
    ("Garbage collection", GC),
    ("Vulnerabilities", VULNERABILITY),
    ("Audit log", super::logs::PATH),
    ("Settings", SETTINGS),
];

/// An administration page: the sections' tabs (`path` marked), then `body`; the top
/// navigation marks "Administration".
pub(super) fn page(c: &Ctx, title: &str, path: &str, body: Markup, status: StatusCode) -> Response {
    let framed = html! {
        nav.tabs aria-label="Administration" {
            ul { @for (label, p) in SECTIONS {
                li { @if *p == path { a href=(p) aria-current="page" { (label) } } @else { a href=(p) { (label) } } }
            } }
        }
        (body)
    };
    c.page(title, USERS, framed, status)
}
