//! Policies in the portal. A project's policy tab: tag immutability rules (add, disable,
//! enable, delete) and Harbor tag retention (rules added one at a time, each first shown as a
//! *preview*: the table of what the policy would keep and delete now, evaluated in the request
//! and neither stored nor applied; a schedule; run now or as a dry run; past executions with
//! their per-repository logs). A repository's policy page: its ECR-style access policy (a JSON
//! editor whose mistakes come back in the validator's words) and its ECR lifecycle policy
//! (JSON, with the same preview before saving).
//!
//! Reading needs read access to the project (repository policies: `GetRepositoryPolicy`,
//! `GetLifecyclePolicy`); every change needs `ManagePolicy` with the ECR action of the change,
//! through `Auth::decide` as in the API. Stored through the same services as the API's, so
//! the two validate alike.

use std::collections::BTreeMap;

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use berth_auth::policy::{EcrAction, RepoPolicy};
use berth_auth::rbac::Perm;
use berth_auth::{ProjectRecord, Target};
use berth_policy::immutable::{ImmutableRule, Selector};
use berth_policy::retention::{RetentionPolicy, RetentionRule, Scope, TEMPLATES, Trigger};
use berth_types::RepoName;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::notice;
use super::project::{open, project_page};
use super::{Ctx, api_err, csrf_ok};
use crate::AdminState;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/harbor/projects/{id}/policy", get(show))
        .route("/harbor/projects/{id}/policy/immutable", post(add_immutable))
        .route("/harbor/projects/{id}/policy/immutable/{rid}/{op}", post(change_immutable))
        .route("/harbor/projects/{id}/policy/retention", post(retention))
        .route("/harbor/projects/{id}/policy/retention/runs/{run}", get(run_log))
        .route("/harbor/projects/{id}/policy/signature", post(signature))
        .route("/harbor/projects/{id}/repositories/{repo}/policies", get(repo_show).post(repo_change))
}

/// Most rows of a preview drawn in the page.
const MAX_PREVIEW_ROWS: usize = 500;

type Failure = (String, StatusCode);

fn selector(decoration: &str, pattern: &str) -> Selector {
    Selector { kind: "doublestar".into(), decoration: decoration.into(), pattern: pattern.trim().into(), extras: None }
}

/// "matching `x`" / "excluding `x`" for a selector list.
fn selectors(list: &[Selector]) -> Markup {
    html! {
        @for (i, s) in list.iter().enumerate() {
            @if i > 0 { ", " }
            @match s.decoration.as_str() {
                "repoExcludes" | "excludes" => { "excluding " }
                "withLabels" => { "with labels " }
                "withoutLabels" => { "without labels " }
                _ => { "matching " }
            }
            code { (if s.pattern.is_empty() { "**" } else { s.pattern.as_str() }) }
        }
        @if list.is_empty() { "all" }
    }
}

fn template_text(r: &RetentionRule) -> String {
    let text = TEMPLATES.iter().find(|(id, _, _)| *id == r.template).map_or(r.template.as_str(), |(_, t, _)| t);
    match r.params.get(&r.template) {
        Some(n) => text.replace('#', &n.to_string()),
        None => text.to_owned(),
    }
}

/// What a page shows after a change or a preview.
#[derive(Default)]
struct Outcome {
    notice: Option<(String, bool)>,
    /// A retention preview: per repository, (digest, tags, pushed, pulled, verdict) rows.
    preview: Option<Vec<(String, Vec<[String; 5]>)>>,
    /// The retention form as the user left it (for the preview, so "Add" sends the same).
    rule: Option<RuleForm>,
    /// The signature policy text as the user left it (after an error).
    signature_doc: Option<String>,
}

#[derive(Deserialize)]
struct SignatureForm {
    csrf: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    document: String,
}

async fn signature(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<SignatureForm>,
) -> Response {
    let r: Result<Outcome, Failure> = async {
        let (p, origin) = managing(&s, &headers, id, &f.csrf).await?;
        let sig = s
            .signatures
            .as_deref()
            .ok_or(("Signature policies are not available.".to_string(), StatusCode::SERVICE_UNAVAILABLE))?;
        let keep = |msg: String| (msg, StatusCode::BAD_REQUEST);
        let mut v: Value = if f.document.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&f.document)
                .map_err(|e| keep(format!("The keys and trust policy are not JSON: {e}.")))?
        };
        if !v.is_object() {
            return Err(keep("The keys and trust policy must be a JSON object.".into()));
        }
        v["mode"] = json!(f.mode);
        let policy: berth_registry::SignaturePolicy =
            serde_json::from_value(v).map_err(|e| keep(format!("Not a signature policy: {e}.")))?;
        let version = sig.set_policy(&p.name, Some(&policy), &origin).await.map_err(|e| match e {
            berth_registry::SignatureError::Invalid(m) => keep(format!("{m}.")),
            other => api_err(crate::ApiError::from(other)),
        })?;
        Ok(Outcome {
            notice: Some((format!("Signature policy saved (version {version})."), true)),
            ..Default::default()
        })
    }
    .await;
    match r {
        Err((msg, status)) => {
            let out =
                Outcome { notice: Some((msg, false)), signature_doc: Some(f.document.clone()), ..Default::default() };
            page(&s, &headers, id, out, status).await
        }
        ok => after(&s, &headers, id, ok).await,
    }
}

async fn page(s: &AdminState, headers: &HeaderMap, id: i64, out: Outcome, status: StatusCode) -> Response {
    let here = format!("/harbor/projects/{id}/policy");
    let (c, p) = match open(s, headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if c.anonymous() {
        return super::to_sign_in(&here);
    }
    let may = c.may(s, Target::Project(&p), Perm::ManagePolicy).await;
    let rules = s.registry.immutable_rules(&p.name).await.unwrap_or_default();
    let stored = s.policies.project_retention(&p.name).await.ok().flatten();
    let retention: Option<RetentionPolicy> = stored.as_ref().and_then(|r| serde_json::from_str(&r.document).ok());
    let runs = match &stored {
        Some(r) => s.policies.executions(r.id, 0, 10).await.map(|x| x.0).unwrap_or_default(),
        None => Vec::new(),
    };
    let signature = match &s.signatures {
        Some(sig) => sig.policy(&p.name).await.ok().flatten(),
        None => None,
    };
    let sig_doc = out.signature_doc.clone().unwrap_or_else(|| {
        let mut v =
            serde_json::to_value(signature.as_ref().map(|(p, _)| p.clone()).unwrap_or_default()).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("mode");
        }
        serde_json::to_string_pretty(&v).unwrap_or_default()
    });
    let sig_mode = signature.as_ref().map(|(p, _)| p.mode).unwrap_or_default();
    let mut form = out.rule.clone().unwrap_or_default();
    for pattern in [&mut form.repo_pattern, &mut form.tag_pattern] {
        if pattern.is_empty() {
            *pattern = all();
        }
    }
    let token = &c.csrf;
    let content = html! {
        (notice(&out.notice))
        h2 { "Tag immutability" }
        div.panel.stack {
            p.muted { "A tag an immutability rule selects cannot be pushed over or deleted, by anyone, until the rule is removed." }
            @if rules.is_empty() { p.muted { "No rules: every tag may be changed." } }
            @else {
                table {
                    thead { tr { th { "Repositories" } th { "Tags" } th { "State" } @if may { th { span.label-narrow { "Actions" } } } } }
                    tbody { @for r in &rules {
                        tr {
                            td { (selectors(r.scope_selectors.get("repository").map_or(&[][..], |v| v))) }
                            td { (selectors(&r.tag_selectors)) }
                            td { @if r.disabled { span.muted { "disabled" } } @else { "enabled" } }
                            @if may {
                                td.actions {
                                    form.inline method="post" action=(format!("{here}/immutable/{}/{}", r.id, if r.disabled { "enable" } else { "disable" })) {
                                        input type="hidden" name="csrf" value=(token);
                                        button.quiet type="submit" { @if r.disabled { "Enable" } @else { "Disable" } }
                                    }
                                    form.inline method="post" action=(format!("{here}/immutable/{}/delete", r.id)) {
                                        input type="hidden" name="csrf" value=(token);
                                        button.quiet.danger type="submit" { "Delete" }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
            @if may {
                details open[rules.is_empty()] {
                    summary { "Add an immutability rule" }
                    form method="post" action=(format!("{here}/immutable")) {
                        input type="hidden" name="csrf" value=(token);
                        (pattern_fields("im", "Repositories", "repoMatches", "repoExcludes", "**", "repoMatches"))
                        (pattern_fields("im", "Tags", "matches", "excludes", "v*", "matches"))
                        p { button type="submit" { "Add rule" } }
                    }
                }
            }
        }
        h2 #retention { "Tag retention" }
        div.panel.stack {
            p.muted {
                "Artifacts that no rule retains are deleted when the policy runs; untagged artifacts count as their own. "
                "Immutable tags and images an index lists are always kept."
            }
            @match &retention {
                Some(pol) if !pol.rules.is_empty() => {
                    table {
                        thead { tr { th { "Rule" } th { "Repositories" } th { "Artifacts" } @if may { th { span.label-narrow { "Remove" } } } } }
                        tbody { @for (i, r) in pol.rules.iter().enumerate() {
                            tr {
                                td { (template_text(r)) @if r.disabled { " " span.muted { "(disabled)" } } }
                                td { (selectors(r.scope_selectors.get("repository").map_or(&[][..], |v| v))) }
                                td { (selectors(&r.tag_selectors)) }
                                @if may {
                                    td {
                                        form.inline method="post" action=(format!("{here}/retention")) {
                                            input type="hidden" name="csrf" value=(token);
                                            input type="hidden" name="op" value="remove";
                                            input type="hidden" name="rule" value=(i);
                                            button.quiet.danger type="submit" { "Remove" }
                                        }
                                    }
                                }
                            }
                        } }
                    }
                }
                _ => { p.muted { "No retention rules: nothing is deleted by retention." } }
            }
            @if let Some(rows) = &out.preview {
                (preview_table(rows))
            }
            @if may {
                details open[out.rule.is_some() || retention.is_none()] {
                    summary { "Add a retention rule" }
                    form method="post" action=(format!("{here}/retention")) {
                        input type="hidden" name="csrf" value=(token);
                        label for="rt-template" { "For the repositories and artifacts below," }
                        select #rt-template name="template" {
                            @for (id, text, _) in TEMPLATES { option value=(id) selected[form.template == *id] { (text) } }
                        }
                        label for="rt-count" { "# (a count or a number of days; not used by \u{201c}retain always\u{201d})" }
                        input #rt-count type="text" name="count" inputmode="numeric" value=(form.count);
                        (pattern_fields("rt", "Repositories", "repoMatches", "repoExcludes", &form.repo_pattern, &form.repo_decoration))
                        (pattern_fields("rt-tag", "Tags", "matches", "excludes", &form.tag_pattern, &form.tag_decoration))
                        p {
                            button.quiet type="submit" name="op" value="preview" { "Preview" } " "
                            button type="submit" name="op" value="add" { "Add rule" }
                        }
                    }
                }
            }
            @if let Some(pol) = &retention {
                @if may {
                    form method="post" action=(format!("{here}/retention")) {
                        input type="hidden" name="csrf" value=(token);
                        label for="rt-cron" { "Schedule (cron with seconds, e.g. " code { "0 0 2 * * *" } " for 02:00 daily; empty: only when run by hand)" }
                        div.downloads {
                            input #rt-cron type="text" name="cron" value=(pol.trigger.as_ref().and_then(|t| t.cron()).unwrap_or(""));
                            button.quiet type="submit" name="op" value="schedule" { "Save schedule" }
                        }
                        p {
                            button.quiet type="submit" name="op" value="dry-run" { "Dry run" } " "
                            button.danger type="submit" name="op" value="run" { "Run now" }
                        }
                    }
                }
                @if !runs.is_empty() {
                    h3 { "Executions" }
                    table {
                        thead { tr { th { "Execution" } th { "Status" } th { "Trigger" } th { "Dry run" } th.hide-narrow { "Started" } } }
                        tbody { @for r in &runs {
                            tr {
                                td { a href=(format!("{here}/retention/runs/{}", r.id)) { (r.id) } }
                                td { (r.status) } td { (r.trigger) } td { @if r.dry_run { "yes" } @else { "no" } }
                                td.hide-narrow { (super::when(r.created_at)) }
                            }
                        } }
                    }
                }
            }
        }
        h2 #signatures { "Signature policy" }
        div.panel.stack {
            p.muted {
                "Which signatures this project trusts: cosign public keys, and Notation trust stores under a Notation trust policy. "
                em { "Enforce" } " refuses pulls of images without a valid signature; " em { "warn" }
                " lets them through and logs them in the audit log. Each artifact's page shows its verdict."
            }
            @match &signature {
                Some((pol, version)) => {
                    p {
                        "Mode: " strong { (format!("{:?}", pol.mode).to_lowercase()) } " · "
                        (pol.cosign_keys.len()) " cosign key(s)"
                        @for k in &pol.cosign_keys { " " span.badge { (k.name) } }
                        " · " (pol.trust_stores.len()) " trust store(s)"
                        @for t in &pol.trust_stores { " " span.badge { (t.name) } }
                        " · version " (version)
                    }
                }
                None => { p.muted { "No signature policy: signatures are stored and shown, not checked." } }
            }
            @if may {
                details open[out.signature_doc.is_some()] {
                    summary { "Change the signature policy" }
                    form method="post" action=(format!("{here}/signature")) {
                        input type="hidden" name="csrf" value=(token);
                        label for="sig-mode" { "Mode" }
                        select #sig-mode name="mode" {
                            @for (m, text) in [("off", "Off: not checked"), ("warn", "Warn: checked, shown and logged"), ("enforce", "Enforce: unsigned images are not pulled")] {
                                option value=(m) selected[format!("{sig_mode:?}").to_lowercase() == m] { (text) }
                            }
                        }
                        label for="sig-doc" { "Trusted keys and trust policy (JSON: cosign_keys [{name, public_key}], trust_stores [{name, certificates}], trust_policy: Notation's trustpolicy.json)" }
                        textarea #sig-doc name="document" rows="12" spellcheck="false" { (sig_doc) }
                        p { button type="submit" { "Save signature policy" } }
                    }
                }
            }
        }
        h2 { "Repository policies" }
        div.panel { p.muted { "Access and lifecycle policies are set per repository: open a repository and choose " em { "Policies" } "." } }
    };
    project_page(s, &c, &p, "policy", content, status).await
}

/// A preview's table: what would be deleted first, then what is kept.
fn preview_table(rows: &[(String, Vec<[String; 5]>)]) -> Markup {
    let mut all: Vec<(&str, &[String; 5])> =
        rows.iter().flat_map(|(repo, list)| list.iter().map(move |r| (repo.as_str(), r))).collect();
    all.sort_by_key(|(_, r)| !r[4].starts_with("DEL"));
    let deleted = all.iter().filter(|(_, r)| r[4].starts_with("DEL")).count();
    html! {
        section.preview aria-label="Preview" {
            h3 { "Preview: " (deleted) " of " (all.len()) " artifacts would be deleted" }
            p.muted { "Evaluated now, not saved: nothing was deleted." }
            @if !all.is_empty() {
                table {
                    thead { tr { th { "Repository" } th { "Artifact" } th { "Tags" } th.hide-narrow { "Pushed" } th.hide-narrow { "Pulled" } th { "Result" } } }
                    tbody { @for (repo, r) in all.iter().take(MAX_PREVIEW_ROWS) {
                        tr {
                            td { (repo) } td { code title=(r[0]) { (r[0].get(..19).unwrap_or(&r[0])) } } td { (r[1]) }
                            td.hide-narrow { (readable(&r[2])) } td.hide-narrow { (readable(&r[3])) }
                            td { @if r[4].starts_with("DEL") { strong.failed { "Delete" } } @else { (r[4].replace("RETAIN", "Keep")) } }
                        }
                    } }
                }
                @if all.len() > MAX_PREVIEW_ROWS { p.muted { "The first " (MAX_PREVIEW_ROWS) " rows, deletions first." } }
            }
        }
    }
}

/// An RFC 3339 time from a run's log as the portal shows times (`-` stays).
fn readable(t: &str) -> String {
    match (t.get(..10), t.get(11..16)) {
        (Some(day), Some(hm)) if t.len() >= 16 => format!("{day} {hm} UTC"),
        _ => t.to_owned(),
    }
}

/// A pattern with its matching/excluding choice (`prefix` keeps the ids unique in a page).
fn pattern_fields(prefix: &str, what: &str, matches: &str, excludes: &str, pattern: &str, chosen: &str) -> Markup {
    let id = format!("{prefix}-{}", what.to_lowercase());
    let field = if matches == "repoMatches" { "repo" } else { "tag" };
    html! {
        fieldset {
            legend { (what) }
            label.check { input type="radio" name=(format!("{field}_decoration")) value=(matches) checked[chosen != excludes]; " matching" }
            label.check { input type="radio" name=(format!("{field}_decoration")) value=(excludes) checked[chosen == excludes]; " excluding" }
            label for=(id) { "Pattern (" code { "**" } " all, " code { "*" } " within a path segment, " code { "{a,b}" } " either)" }
            input id=(id) type="text" name=(format!("{field}_pattern")) value=(pattern) required;
        }
    }
}

async fn show(State(s): State<AdminState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    page(&s, &headers, id, Outcome::default(), StatusCode::OK).await
}

/// The project, if the form is genuine and the caller may manage its policies.
async fn managing(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    csrf: &str,
) -> Result<(ProjectRecord, berth_auth::Origin), Failure> {
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
    if s.auth.decide(&who, Target::Project(&p), Perm::ManagePolicy).await.is_err() {
        return Err(("You may not change this project's policies.".into(), StatusCode::FORBIDDEN));
    }
    Ok((p, berth_auth::Origin::new(who.name(), None)))
}

async fn after(s: &AdminState, headers: &HeaderMap, id: i64, r: Result<Outcome, Failure>) -> Response {
    match r {
        Ok(o) if o.notice.is_none() && o.preview.is_none() => {
            Redirect::to(&format!("/harbor/projects/{id}/policy")).into_response()
        }
        Ok(o) => page(s, headers, id, o, StatusCode::OK).await,
        Err((msg, status)) => {
            page(s, headers, id, Outcome { notice: Some((msg, false)), ..Default::default() }, status).await
        }
    }
}

#[derive(Deserialize, Default, Clone)]
struct ImmutableForm {
    csrf: String,
    #[serde(default)]
    repo_decoration: String,
    #[serde(default)]
    repo_pattern: String,
    #[serde(default)]
    tag_decoration: String,
    #[serde(default)]
    tag_pattern: String,
}

async fn add_immutable(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<ImmutableForm>,
) -> Response {
    let r = async {
        let (p, origin) = managing(&s, &headers, id, &f.csrf).await?;
        let rule = ImmutableRule {
            id: 0,
            project_id: p.id,
            priority: 0,
            disabled: false,
            action: "immutable".into(),
            template: "immutable_template".into(),
            params: BTreeMap::new(),
            tag_selectors: vec![selector(&f.tag_decoration, &f.tag_pattern)],
            scope_selectors: BTreeMap::from([(
                "repository".to_string(),
                vec![selector(&f.repo_decoration, &f.repo_pattern)],
            )]),
        };
        s.registry.put_immutable_rule(&p.name, None, &rule, &origin).await.map_err(api_err)?;
        Ok(Outcome::default())
    }
    .await;
    after(&s, &headers, id, r).await
}

async fn change_immutable(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, rid, op)): Path<(i64, i64, String)>,
    Form(f): Form<super::CsrfForm>,
) -> Response {
    let r = async {
        let (p, origin) = managing(&s, &headers, id, &f.csrf).await?;
        let Some(mut rule) =
            s.registry.immutable_rules(&p.name).await.map_err(api_err)?.into_iter().find(|r| r.id == rid)
        else {
            return Err((format!("Rule {rid} is not in this project."), StatusCode::NOT_FOUND));
        };
        match op.as_str() {
            "enable" | "disable" => {
                rule.disabled = op == "disable";
                s.registry.put_immutable_rule(&p.name, Some(rid), &rule, &origin).await.map_err(api_err)?;
            }
            "delete" => {
                s.registry.delete_immutable_rule(&p.name, rid, &origin).await.map_err(api_err)?;
            }
            _ => return Err(("Unknown action.".into(), StatusCode::NOT_FOUND)),
        }
        Ok(Outcome::default())
    }
    .await;
    after(&s, &headers, id, r).await
}

#[derive(Deserialize, Default, Clone)]
struct RuleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    count: String,
    #[serde(default)]
    repo_decoration: String,
    #[serde(default = "all")]
    repo_pattern: String,
    #[serde(default)]
    tag_decoration: String,
    #[serde(default = "all")]
    tag_pattern: String,
    #[serde(default)]
    rule: Option<usize>,
    #[serde(default)]
    cron: String,
}

fn all() -> String {
    "**".into()
}

/// The rule the form describes.
fn rule_of(f: &RuleForm) -> Result<RetentionRule, Failure> {
    let bad = |m: String| (m, StatusCode::BAD_REQUEST);
    let (_, _, unit) = TEMPLATES
        .iter()
        .find(|(id, _, _)| *id == f.template)
        .ok_or_else(|| bad(format!("Unknown rule {:?}.", f.template)))?;
    let mut params = BTreeMap::new();
    if !unit.is_empty() {
        let n: i64 = f.count.trim().parse().ok().filter(|n| (1..=100_000).contains(n)).ok_or_else(|| {
            bad(format!("# must be a whole number from 1 to 100000 ({} here), not {:?}.", unit.to_lowercase(), f.count))
        })?;
        params.insert(f.template.clone(), json!(n));
    }
    Ok(RetentionRule {
        id: 0,
        priority: 0,
        disabled: false,
        action: "retain".into(),
        template: f.template.clone(),
        params,
        tag_selectors: vec![selector(&f.tag_decoration, &f.tag_pattern)],
        scope_selectors: BTreeMap::from([(
            "repository".to_string(),
            vec![selector(&f.repo_decoration, &f.repo_pattern)],
        )]),
    })
}

async fn retention(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<RuleForm>,
) -> Response {
    let r = async {
        let (p, origin) = managing(&s, &headers, id, &f.csrf).await?;
        let stored = s.policies.project_retention(&p.name).await.map_err(api_err)?;
        let mut policy: RetentionPolicy = match &stored {
            Some(r) => serde_json::from_str(&r.document)
                .map_err(|e| api_err(crate::ApiError::internal("a retention policy", e)))?,
            None => RetentionPolicy { id: 0, algorithm: "or".into(), rules: Vec::new(), trigger: None, scope: None },
        };
        policy.scope = Some(Scope { level: "project".into(), reference: p.id });
        let invalid = |e: berth_jobs::PolicyError| api_err(crate::lifecycle::policy_error(e));
        match f.op.as_str() {
            "preview" | "add" => {
                policy.rules.push(rule_of(&f)?);
                for (i, r) in policy.rules.iter_mut().enumerate() {
                    r.id = i as i64 + 1;
                    r.priority = i as i64 + 1;
                }
                policy.validate().map_err(|e| (format!("{e}."), StatusCode::BAD_REQUEST))?;
                if f.op == "add" {
                    s.policies.put_retention(&p.name, &policy, &origin).await.map_err(invalid)?;
                    return Ok(Outcome { notice: Some(("Rule added.".into(), true)), ..Default::default() });
                }
                let doc = serde_json::to_string(&policy).unwrap_or_default();
                let result = s
                    .registry
                    .policy_dry_run(berth_registry::RETENTION, &p.name, &doc)
                    .await
                    .map_err(|e| (format!("The preview failed: {e}."), StatusCode::BAD_REQUEST))?;
                let rows = preview_rows(&result);
                Ok(Outcome { preview: Some(rows), rule: Some(f.clone()), ..Default::default() })
            }
            "remove" => {
                let i = f
                    .rule
                    .filter(|i| *i < policy.rules.len())
                    .ok_or(("No such rule.".to_string(), StatusCode::NOT_FOUND))?;
                policy.rules.remove(i);
                s.policies.put_retention(&p.name, &policy, &origin).await.map_err(invalid)?;
                Ok(Outcome::default())
            }
            "schedule" => {
                let cron = f.cron.trim();
                policy.trigger = Some(Trigger {
                    kind: "Schedule".into(),
                    settings: BTreeMap::from([("cron".to_string(), json!(cron))]),
                    references: BTreeMap::new(),
                });
                s.policies.put_retention(&p.name, &policy, &origin).await.map_err(invalid)?;
                let msg = if cron.is_empty() {
                    "The policy now runs only when run by hand.".to_string()
                } else {
                    format!("The policy runs on schedule {cron}.")
                };
                Ok(Outcome { notice: Some((msg, true)), ..Default::default() })
            }
            "run" | "dry-run" => {
                let rec = stored.ok_or(("There is no retention policy to run.".to_string(), StatusCode::NOT_FOUND))?;
                let run = s.policies.execute_retention(rec.id, f.op == "dry-run", "MANUAL").await.map_err(invalid)?;
                let what = if f.op == "dry-run" { "Dry run" } else { "Execution" };
                Ok(Outcome {
                    notice: Some((format!("{what} {run} started; its result appears under Executions."), true)),
                    ..Default::default()
                })
            }
            _ => Err(("Unknown action.".to_string(), StatusCode::BAD_REQUEST)),
        }
    }
    .await;
    after(&s, &headers, id, r).await
}

/// A dry run's tasks as (repository, rows).
fn preview_rows(result: &Value) -> Vec<(String, Vec<[String; 5]>)> {
    let cell = |v: &Value| v.as_str().unwrap_or("").to_owned();
    result["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .map(|t| {
                    let rows = t["images"]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|r| [cell(&r[0]), cell(&r[1]), cell(&r[2]), cell(&r[3]), cell(&r[4])])
                                .collect()
                        })
                        .unwrap_or_default();
                    (cell(&t["repository"]), rows)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One execution's tasks and their logs.
async fn run_log(State(s): State<AdminState>, headers: HeaderMap, Path((id, run)): Path<(i64, i64)>) -> Response {
    let here = format!("/harbor/projects/{id}/policy/retention/runs/{run}");
    let (c, p) = match open(&s, &headers, id, &here).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let stored = s.policies.project_retention(&p.name).await.ok().flatten();
    let found = match (&stored, s.policies.run(run).await.ok().flatten()) {
        (Some(pol), Some(r)) if r.policy_id == pol.id => Some(r),
        _ => None,
    };
    let Some(r) = found else {
        let content = html! { p { "There is no execution " (run) " of this project's retention policy." } };
        return project_page(&s, &c, &p, "policy", content, StatusCode::NOT_FOUND).await;
    };
    let result: Value = r.result.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null);
    let content = html! {
        p { a href=(format!("/harbor/projects/{id}/policy#retention")) { "\u{2190} Tag retention" } }
        h2 { "Execution " (r.id) }
        div.panel.stack {
            dl.facts {
                dt { "Status" } dd { (r.status) }
                dt { "Dry run" } dd { @if r.dry_run { "yes: nothing was deleted" } @else { "no" } }
                dt { "Trigger" } dd { (r.trigger) }
                dt { "Started" } dd { (super::when(r.created_at)) }
                @if let Some(e) = result["error"].as_str() { dt { "Error" } dd.failed { (e) } }
            }
            @for t in result["tasks"].as_array().into_iter().flatten() {
                h3 { (t["repository"].as_str().unwrap_or("")) " " span.muted { "(" (t["retained"]) " of " (t["total"]) " kept)" } }
                pre tabindex="0" { code { (t["log"].as_str().unwrap_or("")) } }
            }
        }
    };
    project_page(&s, &c, &p, "policy", content, StatusCode::OK).await
}

/// The repository `repo` of project `id` (its full name), if the caller may read it.
async fn repo_open(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    repo: &str,
) -> Result<(Ctx, ProjectRecord, RepoName), Response> {
    let here = format!("/harbor/projects/{id}/repositories/{}/policies", crate::enc(repo));
    let (c, p) = open(s, headers, id, &here).await?;
    if c.anonymous() {
        return Err(super::to_sign_in(&here));
    }
    match format!("{}/{repo}", p.name).parse::<RepoName>() {
        Ok(n) if c.may(s, Target::Repository(n.as_str(), EcrAction::GetRepositoryPolicy), Perm::Read).await => {
            Ok((c, p, n))
        }
        _ => {
            let body = html! { h1 { "Repository not found" } p { "There is no repository " (repo) " here, or you may not see it." } };
            Err(c.page("Not found", "/harbor/projects", body, StatusCode::NOT_FOUND))
        }
    }
}

#[derive(Default)]
struct RepoOutcome {
    notice: Option<(String, bool)>,
    access_text: Option<String>,
    lifecycle_text: Option<String>,
    preview: Option<Value>,
}

async fn repo_page(
    s: &AdminState,
    headers: &HeaderMap,
    id: i64,
    repo: &str,
    out: RepoOutcome,
    status: StatusCode,
) -> Response {
    let (c, p, name) = match repo_open(s, headers, id, repo).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let here = format!("/harbor/projects/{id}/repositories/{}/policies", crate::enc(repo));
    let may_access =
        c.may(s, Target::Repository(name.as_str(), EcrAction::SetRepositoryPolicy), Perm::ManagePolicy).await;
    let may_lifecycle =
        c.may(s, Target::Repository(name.as_str(), EcrAction::PutLifecyclePolicy), Perm::ManagePolicy).await;
    let access = s.auth.repo_policy(name.as_str()).await.ok().flatten();
    let lifecycle = s.policies.lifecycle(name.as_str()).await.ok().flatten();
    let pretty = |t: &str| {
        serde_json::from_str::<Value>(t)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| t.to_owned())
    };
    let access_text = out.access_text.clone().or_else(|| access.as_deref().map(pretty)).unwrap_or_default();
    let lifecycle_text =
        out.lifecycle_text.clone().or_else(|| lifecycle.as_ref().map(|l| pretty(&l.document))).unwrap_or_default();
    let body = html! {
        p.crumbs {
            a href="/harbor/projects" { "Projects" } " / "
            a href=(format!("/harbor/projects/{}/repositories", p.id)) { (p.name) } " / "
            a href=(format!("/harbor/projects/{}/repositories/{}/artifacts-tab", p.id, crate::enc(repo))) { (repo) } " / "
        }
        h1 { "Policies of " (repo) }
        (notice(&out.notice))
        h2 { "Access policy" }
        form.panel.stack method="post" action=(here) {
            input type="hidden" name="csrf" value=(c.csrf);
            p.muted { "An ECR-style repository policy: statements that allow or deny principals actions such as " code { "ecr:BatchGetImage" } " on this repository. It is checked with every other permission, for the registry API and the management API alike." }
            label for="access" { "Policy (JSON)" @if access.is_none() { " — none set" } }
            textarea #access name="text" rows="12" spellcheck="false" readonly[!may_access] { (access_text) }
            @if may_access {
                p {
                    button type="submit" name="op" value="save-access" { "Save" } " "
                    @if access.is_some() { button.quiet.danger type="submit" name="op" value="delete-access" formnovalidate { "Delete" } }
                }
            }
        }
        h2 { "Lifecycle policy" }
        form.panel.stack method="post" action=(here) {
            input type="hidden" name="csrf" value=(c.csrf);
            p.muted { "An ECR lifecycle policy: rules that expire images by count or age. It is applied hourly; preview what it would expire first." }
            label for="lifecycle" { "Policy (JSON)" @if lifecycle.is_none() { " — none set" } }
            textarea #lifecycle name="lifecycle" rows="12" spellcheck="false" readonly[!may_lifecycle] placeholder=r#"{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14}, "action": {"type": "expire"}}]}"# { (lifecycle_text) }
            @if may_lifecycle {
                p {
                    button.quiet type="submit" name="op" value="preview-lifecycle" { "Preview" } " "
                    button type="submit" name="op" value="save-lifecycle" { "Save" } " "
                    @if lifecycle.is_some() { button.quiet.danger type="submit" name="op" value="delete-lifecycle" { "Delete" } }
                }
            }
            @if let Some(v) = &out.preview {
                @let expiring = v["previewResults"].as_array().cloned().unwrap_or_default();
                @let kept = v["keptImages"].as_array().cloned().unwrap_or_default();
                section.preview aria-label="Preview" {
                    h3 { "Preview: " (expiring.len()) " of " (v["evaluatedImageCount"]) " images would expire" }
                    p.muted { "Evaluated now, not saved: nothing was deleted." }
                    @if !expiring.is_empty() || !kept.is_empty() {
                        table {
                            thead { tr { th { "Image" } th { "Tags" } th { "Rule" } th { "Result" } } }
                            tbody {
                                @for (e, expire) in expiring.iter().map(|e| (e, true)).chain(kept.iter().map(|e| (e, false))).take(MAX_PREVIEW_ROWS) {
                                    @let d = e["imageDigest"].as_str().unwrap_or("");
                                    tr {
                                        td { code title=(d) { (d.get(..19).unwrap_or(d)) } }
                                        td { (e["imageTags"].as_array().map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                                        td { (e["appliedRulePriority"]) }
                                        td { @if expire { strong.failed { "Expire" } } @else { "Keep (" (e["reason"].as_str().unwrap_or("")) ")" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    c.page(&format!("Policies of {repo}"), "/harbor/projects", body, status)
}

async fn repo_show(State(s): State<AdminState>, headers: HeaderMap, Path((id, repo)): Path<(i64, String)>) -> Response {
    repo_page(&s, &headers, id, &repo, RepoOutcome::default(), StatusCode::OK).await
}

#[derive(Deserialize)]
struct RepoForm {
    csrf: String,
    op: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    lifecycle: Option<String>,
}

/// Most bytes of a policy text (ECR's limit for lifecycle policies; repository policies too).
const MAX_POLICY: usize = 30_720;

async fn repo_change(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((id, repo)): Path<(i64, String)>,
    Form(f): Form<RepoForm>,
) -> Response {
    let keep = RepoOutcome { access_text: f.text.clone(), lifecycle_text: f.lifecycle.clone(), ..Default::default() };
    let r: Result<RepoOutcome, Failure> = async {
        let who =
            super::signed_in(&s, &headers).await.ok_or(("Sign in first.".to_string(), StatusCode::UNAUTHORIZED))?;
        if !csrf_ok(&headers, &f.csrf) {
            return Err((
                "This form expired or came from another site; nothing was changed.".into(),
                StatusCode::FORBIDDEN,
            ));
        }
        let p = match s.auth.project_by_id(id).await {
            Ok(Some(p)) => p,
            _ => return Err(("No such project.".into(), StatusCode::NOT_FOUND)),
        };
        let name: RepoName = format!("{}/{repo}", p.name)
            .parse()
            .map_err(|_| ("No such repository.".to_string(), StatusCode::NOT_FOUND))?;
        let action = match f.op.as_str() {
            "save-access" => EcrAction::SetRepositoryPolicy,
            "delete-access" => EcrAction::DeleteRepositoryPolicy,
            "save-lifecycle" => EcrAction::PutLifecyclePolicy,
            "delete-lifecycle" => EcrAction::DeleteLifecyclePolicy,
            "preview-lifecycle" => EcrAction::StartLifecyclePolicyPreview,
            _ => return Err(("Unknown action.".into(), StatusCode::BAD_REQUEST)),
        };
        if s.auth.decide(&who, Target::Repository(name.as_str(), action), Perm::ManagePolicy).await.is_err() {
            return Err(("You may not change this repository's policies.".into(), StatusCode::FORBIDDEN));
        }
        let origin = berth_auth::Origin::new(who.name(), None);
        let text = |t: &Option<String>| -> Result<String, Failure> {
            let t = t.as_deref().unwrap_or("").trim().to_owned();
            if t.len() > MAX_POLICY {
                return Err((
                    format!("A policy is at most {MAX_POLICY} bytes; this one has {}.", t.len()),
                    StatusCode::BAD_REQUEST,
                ));
            }
            Ok(t)
        };
        let done = |m: &str| Ok(RepoOutcome { notice: Some((m.to_owned(), true)), ..Default::default() });
        match f.op.as_str() {
            "save-access" => {
                let t = text(&f.text)?;
                RepoPolicy::parse(&t)
                    .map_err(|e| (format!("The policy is not valid: {e}."), StatusCode::BAD_REQUEST))?;
                let v: Value = serde_json::from_str(&t)
                    .map_err(|e| (format!("The policy is not valid JSON: {e}."), StatusCode::BAD_REQUEST))?;
                s.auth.put_repo_policy(name.as_str(), &v.to_string(), &origin).await.map_err(api_err)?;
                done("Access policy saved.")
            }
            "delete-access" => {
                s.auth.delete_repo_policy(name.as_str(), &origin).await.map_err(api_err)?;
                done("Access policy deleted.")
            }
            "save-lifecycle" => {
                let t = text(&f.lifecycle)?;
                s.policies
                    .put_lifecycle(name.as_str(), &t, &origin)
                    .await
                    .map_err(|e| (format!("{e}"), StatusCode::BAD_REQUEST))?;
                done("Lifecycle policy saved; it applies within the hour.")
            }
            "delete-lifecycle" => {
                s.policies.delete_lifecycle(name.as_str(), &origin).await.map_err(api_err)?;
                done("Lifecycle policy deleted.")
            }
            _ => {
                let t = text(&f.lifecycle)?;
                berth_policy::lifecycle::LifecyclePolicy::parse(&t).map_err(|e| (e, StatusCode::BAD_REQUEST))?;
                let v = s
                    .registry
                    .policy_dry_run(berth_registry::LIFECYCLE_PREVIEW, name.as_str(), &t)
                    .await
                    .map_err(|e| (format!("The preview failed: {e}."), StatusCode::BAD_REQUEST))?;
                Ok(RepoOutcome {
                    preview: Some(v),
                    lifecycle_text: f.lifecycle.clone(),
                    access_text: f.text.clone(),
                    ..Default::default()
                })
            }
        }
    }
    .await;
    match r {
        Ok(o) => repo_page(&s, &headers, id, &repo, o, StatusCode::OK).await,
        Err((msg, status)) => {
            repo_page(&s, &headers, id, &repo, RepoOutcome { notice: Some((msg, false)), ..keep }, status).await
        }
    }
}
