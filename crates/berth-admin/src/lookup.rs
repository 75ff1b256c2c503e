//! Finding what a management-API path names — a project by id or name, a repository, an
//! artifact — and asking the one authorization decision about it. A leaf module.

use berth_auth::policy::EcrAction;
use berth_auth::rbac::Perm;
use berth_auth::{ProjectRecord, Target};
use berth_registry::ArtifactRow;
use berth_types::{Reference, RepoName};
use http::HeaderMap;

use crate::{AdminState, ApiError, Caller, bad_request, not_found};

/// Resolve `{project_name_or_id}` as Harbor does: an integer is an id unless
/// `X-Is-Resource-Name: true` says it is a name.
pub(crate) async fn resolve(s: &AdminState, headers: &HeaderMap, p: &str) -> Result<ProjectRecord, ApiError> {
    let by_name = headers.get("x-is-resource-name").and_then(|v| v.to_str().ok()) == Some("true");
    let found = match p.parse::<i64>() {
        Ok(id) if !by_name => s.auth.project_by_id(id).await?,
        _ => s.auth.project(p).await?,
    };
    found.ok_or_else(|| not_found(format!("project {p} not found")))
}

/// Like [`resolve`], then require `perm`; a project the caller may not even read is reported
/// as missing to callers who are not members (so private names do not leak), else 403.
pub(crate) async fn resolve_with(
    s: &AdminState,
    c: &Caller,
    headers: &HeaderMap,
    p: &str,
    perm: Perm,
) -> Result<ProjectRecord, ApiError> {
    let project = resolve(s, headers, p).await?;
    c.require(s, Target::Project(&project), perm).await?;
    Ok(project)
}

fn decode(s: &str) -> String {
    // Undo one more level of percent-encoding (%2F and %252F both become '/').
    let mut out = s.to_owned();
    for _ in 0..2 {
        out = out.replace("%25", "%").replace("%2F", "/").replace("%2f", "/");
    }
    out
}

/// The full repository name for `{p}/{r}`, validated.
fn repo_name(project: &ProjectRecord, r: &str) -> Result<RepoName, ApiError> {
    let full = format!("{}/{}", project.name, decode(r));
    full.parse::<RepoName>().map_err(|e| bad_request(format!("repository name {full:?} is invalid: {e}")))
}

/// The project and repository of `{p}/{r}`, if the caller may do `perm` there — the
/// decision `/v2` makes too, repository policy (`ecr`) included.
pub(crate) async fn repo_of(
    s: &AdminState,
    c: &Caller,
    headers: &HeaderMap,
    p: &str,
    r: &str,
    perm: Perm,
    ecr: EcrAction,
) -> Result<(ProjectRecord, RepoName), ApiError> {
    let project = resolve(s, headers, p).await?;
    let name = repo_name(&project, r)?;
    c.require(s, Target::Repository(name.as_str(), ecr), perm).await?;
    Ok((project, name))
}

pub(crate) async fn find_artifact(s: &AdminState, repo: &RepoName, reference: &str) -> Result<ArtifactRow, ApiError> {
    let rows = s.registry.artifacts(repo).await?;
    find_in(&rows, repo, reference).cloned()
}

/// The artifact `reference` (a tag or digest) names among `rows`, the artifacts of `repo`.
pub(crate) fn find_in<'a>(
    rows: &'a [ArtifactRow],
    repo: &RepoName,
    reference: &str,
) -> Result<&'a ArtifactRow, ApiError> {
    let r: Reference = reference.parse().map_err(|e| bad_request(format!("reference {reference:?}: {e}")))?;
    let found = match &r {
        Reference::Digest(d) => rows.iter().find(|a| &a.record.digest == d),
        Reference::Tag(t) => rows.iter().find(|a| a.tags.iter().any(|(n, _)| n == t.as_str())),
    };
    found.ok_or_else(|| not_found(format!("artifact {repo}:{reference} not found")))
}
