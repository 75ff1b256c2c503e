//! Repositories, artifacts, tags and repository policies of a project.
//!
//! `{r}` is the repository name without the project, with its slashes percent-encoded
//! (Harbor clients encode them twice, `a%252Fb`; both forms are accepted).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use berth_auth::ProjectRecord;
use berth_auth::policy::{EcrAction, RepoPolicy};
use berth_auth::rbac::Perm;
use berth_registry::ArtifactRow;
use berth_types::{Digest, Reference, RepoName, Tag};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::lookup::{find_artifact, find_in, repo_of, resolve_with};
use crate::{
    AdminState, ApiError, ApiResult, Caller, bad_request, created, json_body, not_found, paginate, stable_id, time,
};

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v2.0/projects/{p}/repositories", get(list))
        .route("/api/v2.0/projects/{p}/repositories/{r}", get(show).delete(remove))
        .route("/api/v2.0/projects/{p}/repositories/{r}/artifacts", get(artifacts))
        .route("/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}", get(artifact).delete(delete_artifact))
        .route("/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/tags", get(tags).post(create_tag))
        .route("/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/accessories", get(accessories))
        .route(
            "/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/tags/{tag}",
            axum::routing::delete(delete_tag),
        )
        .route("/api/v2.0/projects/{p}/repositories/{r}/policy", get(get_policy).put(put_policy).delete(delete_policy))
        .route("/api/v2.0/repository-policies", get(list_policies))
}

const NEVER: &str = "0001-01-01T00:00:00.000Z";

fn repo_json(project: &ProjectRecord, r: &berth_registry::RepoSummary) -> Value {
    json!({
        "id": stable_id(&[&r.name]), "project_id": project.id, "name": r.name, "description": "",
        "artifact_count": r.artifact_count, "pull_count": r.pull_count,
        "creation_time": time(r.created_at), "update_time": time(r.updated_at),
    })
}

async fn list(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path(p): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let project = resolve_with(&s, &c, &headers, &p, Perm::Read).await?;
    let name_filter = q
        .get("name")
        .cloned()
        .or_else(|| crate::q_terms(&q).into_iter().find(|(k, _, _)| k == "name").map(|(_, v, _)| v));
    // One page, read by the database (a project may hold thousands of repositories).
    let (page, size) = crate::page_of(&q)?;
    let (rows, total) = s
        .registry
        .project_repos_page(
            &project.name,
            name_filter.as_deref().unwrap_or(""),
            ((page - 1) * size) as i64,
            size as i64,
        )
        .await?;
    let repos: Vec<Value> = rows.iter().map(|r| repo_json(&project, r)).collect();
    let path = format!("/api/v2.0/projects/{p}/repositories");
    Ok(crate::with_page_headers(Json(repos).into_response(), total.max(0) as usize, page, size, &q, &path))
}

async fn show(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
) -> ApiResult {
    let (project, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Read, EcrAction::DescribeRepositories).await?;
    // The repositories whose names contain this one: itself and a few longer names at most.
    let (rows, _) = s.registry.project_repos_page(&project.name, name.as_str(), 0, 1000).await?;
    let summary = rows.into_iter().find(|x| x.name == name.as_str());
    match summary {
        Some(x) => Ok(Json(repo_json(&project, &x)).into_response()),
        None => Err(not_found(format!("repository {name} not found"))),
    }
}

async fn remove(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::DeleteArtifact, EcrAction::DeleteRepository).await?;
    s.registry.repository_delete(&name, &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

/// Harbor's artifact type: `IMAGE`, `CHART` or `UNKNOWN`.
pub(crate) fn artifact_type(a: &ArtifactRow) -> &'static str {
    let t = a.record.artifact_type.as_deref().unwrap_or("");
    if t == "application/vnd.cncf.helm.config.v1+json" {
        "CHART"
    } else if t.is_empty()
        || t.contains("image.config")
        || t.contains("container.image")
        || a.record.media_type.contains("index")
        || a.record.media_type.contains("manifest.list")
    {
        "IMAGE"
    } else {
        "UNKNOWN"
    }
}

/// The digest `a` names as its subject (Harbor's accessories: signatures, SBOMs, other
/// referrers), if any: its `subject`, or — cosign's tag scheme — the digest its only tags
/// (`sha256-<hex>.sig`, `.att`, `.sbom`) name.
fn subject_named(a: &ArtifactRow) -> Option<Digest> {
    if let Some(s) = &a.record.subject {
        return Some(s.clone());
    }
    let mut named = a.tags.iter().map(|(t, _)| {
        let (stem, ext) = t.rsplit_once('.')?;
        let hex = stem.strip_prefix("sha256-")?;
        (["sig", "att", "sbom"].contains(&ext)).then(|| format!("sha256:{hex}").parse::<Digest>().ok()).flatten()
    });
    let first = named.next()??;
    named.all(|d| d.as_ref() == Some(&first)).then_some(first)
}

/// Which artifacts of a repository are accessories, and of what: built once per listing
/// (a subject counts only if it is in the same repository).
pub(crate) struct Accessories<'a> {
    by_subject: HashMap<Digest, Vec<&'a ArtifactRow>>,
    accessory: std::collections::HashSet<&'a Digest>,
}

impl<'a> Accessories<'a> {
    pub(crate) fn new(rows: &'a [ArtifactRow]) -> Self {
        let here: std::collections::HashSet<&Digest> = rows.iter().map(|r| &r.record.digest).collect();
        let mut by_subject: HashMap<Digest, Vec<&ArtifactRow>> = HashMap::new();
        let mut accessory = std::collections::HashSet::new();
        for a in rows {
            if let Some(s) = subject_named(a).filter(|s| here.contains(s)) {
                accessory.insert(&a.record.digest);
                by_subject.entry(s).or_default().push(a);
            }
        }
        Accessories { by_subject, accessory }
    }

    /// Is `a` an accessory of another artifact here?
    pub(crate) fn is_accessory(&self, a: &ArtifactRow) -> bool {
        self.accessory.contains(&a.record.digest)
    }

    /// The accessories of `subject`.
    pub(crate) fn of(&self, subject: &Digest) -> &[&'a ArtifactRow] {
        self.by_subject.get(subject).map(Vec::as_slice).unwrap_or_default()
    }
}

/// Harbor's accessory type of an accessory.
pub(crate) fn accessory_type(a: &ArtifactRow) -> &'static str {
    let t = a.record.artifact_type.as_deref().unwrap_or("");
    let tag = |ext: &str| a.tags.iter().any(|(n, _)| n.ends_with(ext));
    if t.contains("notary") {
        "signature.notation"
    } else if t.contains("cosign") && t.contains("sig") || tag(".sig") {
        "signature.cosign"
    } else if t.contains("sbom") || t.contains("spdx") || t.contains("cyclonedx") || tag(".sbom") {
        "harbor.sbom"
    } else {
        "subject.accessory"
    }
}

/// The accessories of `subject` in Harbor's shape.
fn accessories_json(repo: &RepoName, subject: &ArtifactRow, acc: &Accessories) -> Vec<Value> {
    let subject_id = stable_id(&[repo.as_str(), &subject.record.digest.to_string()]);
    acc.of(&subject.record.digest)
        .iter()
        .map(|a| {
            json!({
                "id": stable_id(&[repo.as_str(), &a.record.digest.to_string(), "accessory"]),
                "artifact_id": stable_id(&[repo.as_str(), &a.record.digest.to_string()]),
                "subject_artifact_id": subject_id, "subject_artifact_digest": subject.record.digest,
                "subject_artifact_repo": repo.as_str(), "size": a.total_size, "digest": a.record.digest,
                "type": accessory_type(a), "icon": "", "creation_time": time(a.record.created_at),
            })
        })
        .collect()
}

fn artifact_json(project: &ProjectRecord, repo: &RepoName, a: &ArtifactRow, labels: Vec<Value>) -> Value {
    let id = stable_id(&[repo.as_str(), &a.record.digest.to_string()]);
    let repo_id = stable_id(&[repo.as_str()]);
    let tags: Vec<Value> = a
        .tags
        .iter()
        .map(|(t, at)| {
            json!({"id": stable_id(&[repo.as_str(), t]), "repository_id": repo_id, "artifact_id": id, "name": t,
                   "push_time": time(*at),
                   "pull_time": a.tag_pull_times.get(t).map(|p| time(*p)).unwrap_or_else(|| NEVER.to_owned()),
                   "immutable": false, "signed": false})
        })
        .collect();
    let references: Vec<Value> = a
        .children
        .iter()
        .map(|d| json!({"parent_id": id, "child_id": stable_id(&[repo.as_str(), &d.to_string()]), "child_digest": d}))
        .collect();
    let annotations: Value =
        a.record.annotations.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_else(|| json!({}));
    json!({
        "id": id, "type": artifact_type(a), "media_type": a.record.artifact_type.clone().unwrap_or_else(|| a.record.media_type.clone()),
        "manifest_media_type": a.record.media_type, "project_id": project.id, "repository_id": repo_id,
        "repository_name": repo.as_str(),
        "digest": a.record.digest, "size": a.total_size, "push_time": time(a.record.created_at),
        "pull_time": a.pull_time.map(time).unwrap_or_else(|| NEVER.to_owned()), "pull_count": a.pull_count,
        "extra_attrs": {}, "annotations": annotations, "references": references, "tags": tags, "labels": labels,
        "addition_links": {}, "accessories": [],
    })
}

/// An artifact's labels in Harbor's shape.
async fn labels_of(
    s: &AdminState,
    labels: &HashMap<String, Vec<berth_registry::LabelRecord>>,
    a: &ArtifactRow,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for l in labels.get(&a.record.digest.to_string()).into_iter().flatten() {
        out.push(crate::labels::label_json(s, l).await?);
    }
    Ok(out)
}

async fn artifacts(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (project, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Pull, EcrAction::DescribeImages).await?;
    let path = format!("/api/v2.0/projects/{p}/repositories/{r}/artifacts");
    let (page, size) = crate::page_of(&q)?;
    let labels = s.registry.labels().repo_labels(name.as_str()).await?;
    // A repository of plain artifacts (no accessories, no indexes) is paged by the database.
    if !crate::q_terms(&q).iter().any(|(k, _, _)| k == "labels")
        && let Some((rows, total)) = s.registry.artifacts_page(&name, (page - 1) * size, size).await?
    {
        let overviews = crate::shapes::overviews(&s, &project, rows.iter()).await?;
        let mut list = Vec::with_capacity(rows.len());
        for a in &rows {
            let mut j = artifact_json(&project, &name, a, labels_of(&s, &labels, a).await?);
            j["accessories"] = json!([]);
            if let Some(o) = overviews.get(&a.record.digest.to_string()) {
                j["scan_overview"] = o.clone();
            }
            list.push(j);
        }
        return Ok(crate::with_page_headers(Json(list).into_response(), total, page, size, &q, &path));
    }
    let rows = s.registry.artifacts(&name).await?;
    // As Harbor: children of an index are listed inside it, not on their own, unless tagged;
    // accessories (signatures, SBOMs) inside their subject.
    let children: std::collections::HashSet<Digest> = rows.iter().flat_map(|a| a.children.iter().cloned()).collect();
    let mut list = Vec::new();
    // Harbor's `q=labels=(1 2)`: artifacts with every label named (by id).
    let mut wanted: Vec<i64> = Vec::new();
    for (k, v, _) in crate::q_terms(&q) {
        if k == "labels" {
            for id in v.trim_matches(['(', ')']).split_whitespace() {
                wanted.push(id.parse().map_err(|_| bad_request(format!("q labels: {id:?} is not a label id")))?);
            }
        }
    }
    let has_labels = |a: &ArtifactRow| {
        let on = labels.get(&a.record.digest.to_string());
        wanted.iter().all(|w| on.is_some_and(|ls| ls.iter().any(|l| l.id == *w)))
    };
    let acc = Accessories::new(&rows);
    let top: Vec<&ArtifactRow> = rows
        .iter()
        .filter(|a| {
            (!children.contains(&a.record.digest) || !a.tags.is_empty()) && !acc.is_accessory(a) && has_labels(a)
        })
        .collect();
    // Only the page asked for is rendered (each artifact's scan overview is a lookup).
    let shown: Vec<&ArtifactRow> = top.iter().skip((page - 1) * size).take(size).copied().collect();
    let overviews = crate::shapes::overviews(&s, &project, shown.iter().copied()).await?;
    for a in shown {
        let mut j = artifact_json(&project, &name, a, labels_of(&s, &labels, a).await?);
        j["accessories"] = json!(accessories_json(&name, a, &acc));
        if let Some(o) = overviews.get(&a.record.digest.to_string()) {
            j["scan_overview"] = o.clone();
        }
        list.push(j);
    }
    Ok(crate::with_page_headers(Json(list).into_response(), top.len(), page, size, &q, &path))
}

async fn artifact(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference)): Path<(String, String, String)>,
) -> ApiResult {
    let (project, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Pull, EcrAction::DescribeImages).await?;
    let rows = s.registry.artifacts(&name).await?;
    let a = find_in(&rows, &name, &reference)?;
    let labels = s.registry.labels().repo_labels(name.as_str()).await?;
    let mut j = artifact_json(&project, &name, a, labels_of(&s, &labels, a).await?);
    j["accessories"] = json!(accessories_json(&name, a, &Accessories::new(&rows)));
    if let Some(o) = crate::shapes::overview(&s, &project, &a.record.digest.to_string()).await? {
        j["scan_overview"] = o;
    }
    Ok(Json(j).into_response())
}

/// Harbor's accessories of an artifact (signatures, SBOMs, other referrers), paged.
async fn accessories(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Pull, EcrAction::DescribeImages).await?;
    let rows = s.registry.artifacts(&name).await?;
    let a = find_in(&rows, &name, &reference)?;
    let list = accessories_json(&name, a, &Accessories::new(&rows));
    paginate(list, &q, &format!("/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/accessories"))
}

async fn delete_artifact(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference)): Path<(String, String, String)>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::DeleteArtifact, EcrAction::BatchDeleteImage).await?;
    let a = find_artifact(&s, &name, &reference).await?;
    s.registry.manifest_delete(&name, &Reference::Digest(a.record.digest.clone()), &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

async fn tags(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let (project, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Pull, EcrAction::ListImages).await?;
    let a = find_artifact(&s, &name, &reference).await?;
    let j = artifact_json(&project, &name, &a, Vec::new());
    let list = j["tags"].as_array().cloned().unwrap_or_default();
    paginate(list, &q, &format!("/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/tags"))
}

#[derive(Deserialize)]
struct TagReq {
    name: String,
}

async fn create_tag(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference)): Path<(String, String, String)>,
    body: Result<Json<TagReq>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::CreateTag, EcrAction::PutImage).await?;
    let req = json_body(body)?;
    let tag: Tag = req.name.parse().map_err(|e| bad_request(format!("tag {:?}: {e}", req.name)))?;
    let a = find_artifact(&s, &name, &reference).await?;
    if a.tags.iter().any(|(t, _)| t == tag.as_str()) {
        return Err(ApiError::Conflict(format!("tag {tag} already points at this artifact")));
    }
    s.registry.tag_create(&name, &tag, &a.record.digest, &c.origin()).await?;
    Ok(created(&format!("/api/v2.0/projects/{p}/repositories/{r}/artifacts/{reference}/tags/{tag}")))
}

async fn delete_tag(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r, reference, tag)): Path<(String, String, String, String)>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::DeleteTag, EcrAction::BatchDeleteImage).await?;
    let a = find_artifact(&s, &name, &reference).await?;
    if !a.tags.iter().any(|(t, _)| *t == tag) {
        return Err(not_found(format!("tag {tag} is not on artifact {reference}")));
    }
    let t: Tag = tag.parse().map_err(|e| bad_request(format!("tag {tag:?}: {e}")))?;
    s.registry.manifest_delete(&name, &Reference::Tag(t), &c.origin()).await?;
    Ok(StatusCode::OK.into_response())
}

async fn get_policy(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::Read, EcrAction::GetRepositoryPolicy).await?;
    match s.auth.repo_policy(name.as_str()).await? {
        Some(doc) => {
            let v: Value = serde_json::from_str(&doc).unwrap_or(Value::Null);
            Ok(Json(v).into_response())
        }
        None => Err(not_found(format!("repository {name} has no policy"))),
    }
}

async fn put_policy(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
    body: String,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::ManagePolicy, EcrAction::SetRepositoryPolicy).await?;
    let policy = RepoPolicy::parse(&body).map_err(|e| bad_request(format!("invalid repository policy: {e}")))?;
    // Store the document normalised (as JSON text), keeping what the user wrote.
    let v: Value = serde_json::from_str(&body).map_err(|e| bad_request(e.to_string()))?;
    s.auth.put_repo_policy(name.as_str(), &v.to_string(), &c.origin()).await?;
    Ok(Json(json!({"repository": name.as_str(), "statements": policy.statements.len()})).into_response())
}

async fn delete_policy(
    State(s): State<AdminState>,
    c: Caller,
    headers: HeaderMap,
    Path((p, r)): Path<(String, String)>,
) -> ApiResult {
    let (_, name) = repo_of(&s, &c, &headers, &p, &r, Perm::ManagePolicy, EcrAction::DeleteRepositoryPolicy).await?;
    if !s.auth.delete_repo_policy(name.as_str(), &c.origin()).await? {
        return Err(not_found(format!("repository {name} has no policy")));
    }
    Ok(StatusCode::OK.into_response())
}

/// Every repository policy (system administrators): so a policy that locks everybody else
/// out can always be found and removed.
async fn list_policies(State(s): State<AdminState>, c: Caller, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    c.sysadmin(&s).await?;
    let list: Vec<Value> = s
        .auth
        .repo_policies()
        .await?
        .into_iter()
        .map(|(repo, doc)| {
            let document: Value = serde_json::from_str(&doc).unwrap_or(Value::Null);
            let (project, name) = repo.split_once('/').unwrap_or((repo.as_str(), ""));
            json!({"repository": repo, "project_name": project, "repository_name": name, "policy": document})
        })
        .collect();
    paginate(list, &q, "/api/v2.0/repository-policies")
}
