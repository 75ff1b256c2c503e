//! Replication (Harbor's replication policies): copy artifacts between this registry and a
//! registry endpoint — push-based (here → there) or pull-based (there → here) — filtered by
//! repository name, tag and resource type, run as durable executions of one task per
//! artifact.
//!
//! A run ([`Replication::execute`], the `replication` job) lists the source's repositories
//! and tags, records a task per artifact (unique per run and source, so a run resumed after a
//! crash skips what it finished), and copies each: blobs first — only those the destination
//! lacks (`HEAD` first; mounted when this registry already holds them elsewhere) — then child
//! manifests, then the manifest under its tag. With `override` off, a tag that exists at the
//! destination is left as it is. The run checks between tasks whether it was stopped.

use std::sync::Arc;

use berth_client::Client;
use berth_meta::{EventKind, MetaStore, NewEvent, Origin, ReplicationTaskRecord};
use berth_policy::{PatternOptions, PatternSet, Syntax};
use berth_types::media::ManifestView;
use berth_types::{Digest, Reference, RepoName};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{Registry, RegistryError, Upstreams, now_ms};

/// A registry endpoint named by id (Harbor's `{"id": n}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegistryRef {
    /// The endpoint's id.
    pub id: i64,
}

/// A replication filter (Harbor's `ReplicationFilter`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Filter {
    /// `name` (repository), `tag`, `resource` (`image`, `artifact`) or `label`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The pattern (doublestar globs, comma-separated alternatives) or resource type.
    pub value: serde_json::Value,
    /// `matches` (default) or `excludes`.
    #[serde(default)]
    pub decoration: String,
}

/// When a policy runs (Harbor's `ReplicationTrigger`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Trigger {
    /// `manual`, `scheduled` or `event_based`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `{"cron": "..."}` for `scheduled`.
    #[serde(default)]
    pub trigger_settings: serde_json::Value,
}

/// A replication policy as Berth stores it (Harbor's `ReplicationPolicy` fields).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicySpec {
    /// Its name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Where from (pull-based); `None`: this registry.
    #[serde(default)]
    pub src_registry: Option<RegistryRef>,
    /// Where to (push-based); `None`: this registry.
    #[serde(default)]
    pub dest_registry: Option<RegistryRef>,
    /// Replaces the first component of each repository's name at the destination.
    #[serde(default)]
    pub dest_namespace: String,
    /// Which artifacts.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// When it runs.
    #[serde(default)]
    pub trigger: Trigger,
    /// Whether it runs at all (a disabled policy cannot be started).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Replicate deletions too: with an event-based trigger, a tag or artifact deleted here
    /// is deleted at the destination (push-based policies only).
    #[serde(default)]
    pub deletion: bool,
    /// Overwrite a tag that exists at the destination.
    #[serde(default, rename = "override")]
    pub overwrite: bool,
    /// Bandwidth limit in KiB/s per artifact being copied (0 or -1: none).
    #[serde(default)]
    pub speed: i64,
    /// Berth: artifacts copied at once (1 to 16; default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

fn yes() -> bool {
    true
}

/// What a policy's filters select, compiled.
pub struct Selection {
    names: Vec<(PatternSet, bool)>,
    tags: Vec<(PatternSet, bool)>,
    labels: Vec<(Vec<String>, bool)>,
}

fn compile(f: &Filter) -> Result<(PatternSet, bool), String> {
    let text = f.value.as_str().ok_or_else(|| format!("filter {}: the value must be a string", f.kind))?;
    let set = PatternSet::comma_separated(text, Syntax::PathGlob, PatternOptions::default())
        .map_err(|e| format!("filter {}: {e}", f.kind))?;
    let keep = match f.decoration.as_str() {
        "" | "matches" => true,
        "excludes" => false,
        other => return Err(format!("filter {}: decoration {other:?}: use matches or excludes", f.kind)),
    };
    Ok((set, keep))
}

impl Selection {
    /// Compile a policy's filters; the error says which is wrong.
    pub fn new(filters: &[Filter]) -> Result<Selection, String> {
        let mut s = Selection { names: Vec::new(), tags: Vec::new(), labels: Vec::new() };
        for f in filters {
            match f.kind.as_str() {
                "name" => s.names.push(compile(f)?),
                "tag" => s.tags.push(compile(f)?),
                "resource" => match f.value.as_str() {
                    Some("image" | "artifact" | "") => {}
                    _ => return Err("filter resource: use image or artifact".into()),
                },
                "label" => {
                    // Harbor sends a list of names; a comma-separated string is taken too.
                    let names: Vec<String> = match &f.value {
                        serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).map(str::to_owned).collect(),
                        serde_json::Value::String(t) => t.split(',').map(str::trim).map(str::to_owned).collect(),
                        _ => Vec::new(),
                    };
                    let names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
                    if names.is_empty() {
                        return Err("filter label: give the label names, as a list".into());
                    }
                    let keep = match f.decoration.as_str() {
                        "" | "matches" => true,
                        "excludes" => false,
                        other => return Err(format!("filter label: decoration {other:?}: use matches or excludes")),
                    };
                    s.labels.push((names, keep));
                }
                other => return Err(format!("unknown filter type {other:?}: use name, tag or resource")),
            }
        }
        Ok(s)
    }

    fn pass(list: &[(PatternSet, bool)], text: &str) -> bool {
        list.iter().all(|(set, keep)| set.matches(text) == *keep)
    }

    /// Is repository `name` selected?
    pub fn repository(&self, name: &str) -> bool {
        Self::pass(&self.names, name)
    }

    /// Is tag `tag` selected?
    pub fn tag(&self, tag: &str) -> bool {
        Self::pass(&self.tags, tag)
    }

    /// Does the selection look at labels?
    pub fn by_labels(&self) -> bool {
        !self.labels.is_empty()
    }

    /// Is an artifact with these labels selected? (`matches`: it has every label named;
    /// `excludes`: it has none of them.)
    pub fn labels(&self, has: &[String]) -> bool {
        self.labels.iter().all(|(names, keep)| {
            if *keep { names.iter().all(|n| has.contains(n)) } else { !names.iter().any(|n| has.contains(n)) }
        })
    }
}

impl PolicySpec {
    /// Check a policy as a user sent it.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err("name: 1 to 255 characters".into());
        }
        match (&self.src_registry, &self.dest_registry) {
            (Some(_), Some(_)) => {
                return Err("give src_registry (pull-based) or dest_registry (push-based), not both".into());
            }
            (None, None) => {
                return Err(
                    "give src_registry (pull from it) or dest_registry (push to it): one end is this registry".into()
                );
            }
            _ => {}
        }
        if self.concurrency.is_some_and(|c| !(1..=16).contains(&c)) {
            return Err("concurrency: 1 to 16 artifacts at once".into());
        }
        if !self.dest_namespace.is_empty() && self.dest_namespace.parse::<RepoName>().is_err() {
            return Err(format!("dest_namespace {:?} is not a valid repository name", self.dest_namespace));
        }
        match self.trigger.kind.as_str() {
            "event_based" if self.dest_registry.is_none() => {
                return Err(
                    "event_based runs push-based policies (on each push here); a pull-based one is manual".into()
                );
            }
            "" | "manual" | "event_based" => {}
            "scheduled" => {
                let cron = self.cron().ok_or(
                    "a scheduled trigger needs trigger_settings.cron (six fields, seconds first: \"0 0 3 * * *\")",
                )?;
                berth_jobs::next_fire(cron, now_ms()).map_err(|e| format!("trigger_settings.cron: {e}"))?;
            }
            other => return Err(format!("trigger type {other:?}: use manual, scheduled or event_based")),
        }
        if self.deletion && self.src_registry.is_some() {
            return Err("deletion replicates deletions made here to the destination: push-based policies only".into());
        }
        let selection = Selection::new(&self.filters)?;
        if selection.by_labels() && self.src_registry.is_some() {
            return Err("label filters apply to push-based policies (the labels are this registry's)".into());
        }
        Ok(())
    }

    /// The cron of a scheduled trigger.
    pub fn cron(&self) -> Option<&str> {
        if self.trigger.kind != "scheduled" {
            return None;
        }
        self.trigger.trigger_settings.get("cron").and_then(|c| c.as_str()).map(str::trim).filter(|c| !c.is_empty())
    }

    /// Artifacts copied at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(4).clamp(1, 16)
    }

    /// The destination's name for source repository `repo`.
    pub fn destination(&self, repo: &str) -> String {
        if self.dest_namespace.is_empty() {
            return repo.to_owned();
        }
        match repo.split_once('/') {
            Some((_, rest)) => format!("{}/{rest}", self.dest_namespace),
            None => format!("{}/{repo}", self.dest_namespace),
        }
    }
}

/// One end of a replication: this registry, or an endpoint through the client.
enum End {
    Here(Arc<Registry>),
    There(Arc<Client>),
}

/// A manifest read at the source.
struct Got {
    bytes: Bytes,
    media_type: String,
    digest: String,
}

fn origin() -> Origin {
    Origin::new("replication", None)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl End {
    async fn repositories(&self) -> Result<Vec<String>, String> {
        match self {
            End::Here(r) => {
                let mut all = Vec::new();
                let mut last: Option<String> = None;
                loop {
                    let (page, more) = r.catalog(last.as_deref(), Some(1000)).await.map_err(err)?;
                    last = page.last().cloned();
                    all.extend(page);
                    if !more || last.is_none() {
                        return Ok(all);
                    }
                }
            }
            End::There(c) => c.catalog().await.map_err(err),
        }
    }

    async fn tags(&self, repo: &str) -> Result<Vec<String>, String> {
        match self {
            End::Here(r) => {
                let name: RepoName = repo.parse().map_err(err)?;
                let mut all = Vec::new();
                let mut last: Option<String> = None;
                loop {
                    let (page, more) = match r.tags(&name, last.as_deref(), Some(1000)).await {
                        Ok(p) => p,
                        Err(RegistryError::NameUnknown(_)) => return Ok(all),
                        Err(e) => return Err(err(e)),
                    };
                    last = page.last().cloned();
                    all.extend(page);
                    if !more || last.is_none() {
                        return Ok(all);
                    }
                }
            }
            End::There(c) => c.tags(repo).await.map_err(err),
        }
    }

    /// The label names of each tag of `repo` (this registry only; empty elsewhere).
    async fn tag_labels(&self, repo: &str) -> Result<std::collections::HashMap<String, Vec<String>>, String> {
        let mut out = std::collections::HashMap::new();
        if let End::Here(r) = self {
            let name: RepoName = repo.parse().map_err(err)?;
            let labels = r.labels().repo_labels(repo).await.map_err(err)?;
            for a in r.artifacts(&name).await.map_err(err)? {
                let names: Vec<String> = labels
                    .get(&a.record.digest.to_string())
                    .map(|l| l.iter().map(|l| l.name.clone()).collect())
                    .unwrap_or_default();
                for (tag, _) in a.tags {
                    out.insert(tag, names.clone());
                }
            }
        }
        Ok(out)
    }

    async fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Got>, String> {
        match self {
            End::Here(r) => {
                let name: RepoName = repo.parse().map_err(err)?;
                let reference: Reference = reference.parse().map_err(err)?;
                match r.manifest_get(&name, &reference, true).await {
                    Ok(m) => Ok(Some(Got {
                        bytes: m.bytes.unwrap_or_default(),
                        media_type: m.record.media_type,
                        digest: m.record.digest.to_string(),
                    })),
                    Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => Ok(None),
                    Err(e) => Err(err(e)),
                }
            }
            End::There(c) => match c.manifest(repo, reference).await {
                Ok(m) => Ok(Some(Got { bytes: m.bytes, media_type: m.media_type, digest: m.digest })),
                Err(berth_client::ClientError::NotFound(_)) => Ok(None),
                Err(e) => Err(err(e)),
            },
        }
    }

    /// The digest `repo:tag` has here, if any.
    async fn tag_digest(&self, repo: &str, tag: &str) -> Result<Option<String>, String> {
        match self {
            // The record only: the bytes are not needed to compare digests.
            End::Here(r) => {
                let name: RepoName = repo.parse().map_err(err)?;
                let reference: Reference = tag.parse().map_err(err)?;
                match r.manifest_get(&name, &reference, false).await {
                    Ok(m) => Ok(Some(m.record.digest.to_string())),
                    Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => Ok(None),
                    Err(e) => Err(err(e)),
                }
            }
            End::There(c) => match c.manifest_head(repo, tag).await {
                Ok(h) => Ok(h.map(|h| h.digest)),
                Err(e) => Err(err(e)),
            },
        }
    }

    /// Does `repo` have blob `digest` here (after linking a copy held elsewhere here)?
    async fn has_blob(&self, repo: &str, digest: &str) -> Result<bool, String> {
        match self {
            End::Here(r) => {
                let name: RepoName = repo.parse().map_err(err)?;
                let d: Digest = digest.parse().map_err(err)?;
                if r.blob_size(&name, &d).await.is_ok() {
                    return Ok(true);
                }
                Ok(r.mount(&name, &d, None).await.map_err(err)?.is_some())
            }
            End::There(c) => c.blob_exists(repo, digest).await.map_err(err),
        }
    }

    async fn read_blob(&self, repo: &str, digest: &str) -> Result<(u64, berth_client::ByteStream), String> {
        match self {
            End::Here(r) => {
                let name: RepoName = repo.parse().map_err(err)?;
                let d: Digest = digest.parse().map_err(err)?;
                let (size, body) = r.blob_get(&name, &d, None).await.map_err(err)?;
                let stream: berth_client::ByteStream =
                    match body {
                        berth_blob::BlobBody::Bytes(b) => Box::pin(futures::stream::iter([Ok(b)])),
                        berth_blob::BlobBody::Stream(s) => Box::pin(s.map(|c| {
                            c.map_err(|e| berth_client::ClientError::Invalid("storage".into(), e.to_string()))
                        })),
                    };
                Ok((size, stream))
            }
            End::There(c) => c.blob(repo, digest).await.map_err(err),
        }
    }

    async fn write_blob(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        body: berth_client::ByteStream,
    ) -> Result<(), String> {
        match self {
            End::Here(r) => {
                let name: RepoName = repo.parse().map_err(err)?;
                let d: Digest = digest.parse().map_err(err)?;
                let body: berth_blob::ByteStream = Box::pin(body.map(|c| c.map_err(std::io::Error::other)));
                r.upload_monolithic(&name, "replication", &d, body).await.map(|_| ()).map_err(err)
            }
            End::There(c) => c.push_blob(repo, digest, size, body).await.map_err(err),
        }
    }

    async fn write_manifest(&self, repo: &str, reference: &str, m: &Got) -> Result<(), String> {
        match self {
            End::Here(r) => {
                let name: RepoName = repo.parse().map_err(err)?;
                let reference: Reference = reference.parse().map_err(err)?;
                r.manifest_put(&name, &reference, Some(&m.media_type), m.bytes.clone(), &[], &origin())
                    .await
                    .map(|_| ())
                    .map_err(err)
            }
            End::There(c) => {
                c.push_manifest(repo, reference, &m.media_type, m.bytes.clone()).await.map(|_| ()).map_err(err)
            }
        }
    }
}

/// The replication service.
pub struct Replication {
    registry: Arc<Registry>,
    upstreams: Arc<Upstreams>,
    meta: Arc<dyn MetaStore>,
    queue: Arc<dyn berth_meta::JobQueue>,
}

/// The job kind that runs an execution.
pub const REPLICATION: &str = "replication";

/// Why a replication request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The policy is wrong (the message says how).
    #[error("{0}")]
    Invalid(String),
    /// No such policy or execution.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or a run is in progress.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Meta(#[from] berth_meta::MetaError),
}

fn event(op: &str, id: i64, name: &str, origin: &Origin) -> NewEvent {
    NewEvent::new(EventKind::RegistryChanged, now_ms(), origin)
        .data(serde_json::json!({"op": op, "id": id, "name": format!("{name} (replication policy)")}))
}

impl Replication {
    /// The service.
    pub fn new(
        registry: Arc<Registry>,
        upstreams: Arc<Upstreams>,
        meta: Arc<dyn MetaStore>,
        queue: Arc<dyn berth_meta::JobQueue>,
    ) -> Replication {
        Replication { registry, upstreams, meta, queue }
    }

    /// The scheduled policies that are enabled, with their crons.
    pub async fn scheduled(&self) -> Result<Vec<(i64, String)>, ReplicationError> {
        let mut out = Vec::new();
        for rec in self.meta.replication_policies().await? {
            if let Ok(spec) = serde_json::from_str::<PolicySpec>(&rec.document)
                && spec.enabled
                && let Some(cron) = spec.cron()
            {
                out.push((rec.id, cron.to_owned()));
            }
        }
        Ok(out)
    }

    /// The store, for listings.
    pub fn store(&self) -> &dyn berth_meta::ReplicationStore {
        self.meta.as_ref()
    }

    async fn check(&self, p: &PolicySpec) -> Result<(), ReplicationError> {
        p.validate().map_err(ReplicationError::Invalid)?;
        let id = p.src_registry.as_ref().or(p.dest_registry.as_ref()).map(|r| r.id).unwrap_or_default();
        if self.upstreams.get(id).await.is_err() {
            return Err(ReplicationError::Invalid(format!("registry {id} does not exist")));
        }
        Ok(())
    }

    /// Create a policy; its id.
    pub async fn create(&self, p: &PolicySpec, origin: &Origin) -> Result<i64, ReplicationError> {
        self.check(p).await?;
        let doc = serde_json::to_string(p).map_err(|e| ReplicationError::Invalid(e.to_string()))?;
        let name = p.name.trim();
        self.meta
            .create_replication_policy(name, &doc, now_ms(), &event("create", 0, name, origin))
            .await?
            .ok_or_else(|| ReplicationError::Conflict(format!("a replication policy named {name:?} already exists")))
    }

    /// Replace a policy.
    pub async fn update(&self, id: i64, p: &PolicySpec, origin: &Origin) -> Result<(), ReplicationError> {
        self.check(p).await?;
        let doc = serde_json::to_string(p).map_err(|e| ReplicationError::Invalid(e.to_string()))?;
        let name = p.name.trim();
        match self.meta.update_replication_policy(id, name, &doc, now_ms(), &event("update", id, name, origin)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ReplicationError::NotFound(format!("replication policy {id} not found"))),
            Err(berth_meta::MetaError::Conflict(m)) => Err(ReplicationError::Conflict(m)),
            Err(e) => Err(e.into()),
        }
    }

    /// Delete a policy and its history.
    pub async fn delete(&self, id: i64, origin: &Origin) -> Result<(), ReplicationError> {
        let (_, p) = self.policy(id).await?;
        match self.meta.delete_replication_policy(id, &event("delete", id, &p.name, origin)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ReplicationError::NotFound(format!("replication policy {id} not found"))),
            Err(berth_meta::MetaError::Conflict(m)) => Err(ReplicationError::Conflict(m)),
            Err(e) => Err(e.into()),
        }
    }

    /// A policy and its spec.
    pub async fn policy(&self, id: i64) -> Result<(berth_meta::ReplicationPolicyRecord, PolicySpec), ReplicationError> {
        let rec = self
            .meta
            .replication_policy(id)
            .await?
            .ok_or_else(|| ReplicationError::NotFound(format!("replication policy {id} not found")))?;
        let spec: PolicySpec = serde_json::from_str(&rec.document)
            .map_err(|e| ReplicationError::Invalid(format!("stored policy: {e}")))?;
        Ok((rec, spec))
    }

    /// Is a run of policy `id` in progress?
    pub async fn running(&self, id: i64) -> Result<bool, ReplicationError> {
        let (runs, _) = self.meta.replication_executions(Some(id), 0, 1).await?;
        Ok(runs.first().is_some_and(|r| r.status == "InProgress"))
    }

    /// Start a run of policy `id` (`manual` or `scheduled`): the execution, run by a
    /// `replication` job.
    pub async fn start(&self, id: i64, trigger: &str) -> Result<i64, ReplicationError> {
        let (_, spec) = self.policy(id).await?;
        if !spec.enabled {
            return Err(ReplicationError::Invalid(format!("replication policy {:?} is disabled", spec.name)));
        }
        let run = self.meta.create_replication_execution(id, trigger, "", now_ms()).await?;
        let job = berth_meta::NewJob {
            kind: REPLICATION.into(),
            payload: serde_json::json!({ "execution": run }).to_string(),
            dedup_key: Some(format!("{REPLICATION}-{run}")),
            max_attempts: 3,
            run_after: 0,
        };
        self.queue.enqueue(&job, now_ms()).await?;
        Ok(run)
    }

    /// Stop a run: its tasks not done are marked stopped and the job ends at its next task.
    pub async fn stop(&self, execution: i64) -> Result<(), ReplicationError> {
        let e = self
            .meta
            .replication_execution(execution)
            .await?
            .ok_or_else(|| ReplicationError::NotFound(format!("execution {execution} not found")))?;
        if e.status != "InProgress" {
            return Err(ReplicationError::Conflict(format!("execution {execution} has ended ({})", e.status)));
        }
        self.finish(execution, "Stopped", "stopped by a user").await?;
        Ok(())
    }

    async fn end(&self, id: i64) -> Result<End, String> {
        Ok(End::There(self.upstreams.client(id).await.map_err(err)?))
    }

    /// The run an event started, found again by `key` if its job ran before.
    async fn event_execution(&self, policy: i64, key: &str) -> Result<i64, ReplicationError> {
        let (runs, _) = self.meta.replication_executions(Some(policy), 0, 100).await?;
        Ok(match runs.iter().find(|e| e.status == "InProgress" && e.status_text == key) {
            Some(e) => e.id,
            None => self.meta.create_replication_execution(policy, "event_based", key, now_ms()).await?,
        })
    }

    /// Run (or resume) the run a push started: policy `policy` for `repo:tag` only, the run
    /// found again by `key` if this job ran before.
    pub async fn execute_event(&self, policy: i64, repo: &str, tag: &str, key: &str) -> Result<(), ReplicationError> {
        let id = self.event_execution(policy, key).await?;
        self.execute_scoped(id, Some((repo.to_owned(), tag.to_owned()))).await
    }

    /// Run (or resume) the run a deletion here started: delete `repo:tag` (when `tag` is
    /// given) or `repo@digest` at the destination of push policy `policy` — only while the
    /// destination still has what was deleted here (a tag moved there since is left alone).
    pub async fn execute_deletion(
        &self,
        policy: i64,
        repo: &str,
        tag: Option<&str>,
        digest: &str,
        key: &str,
    ) -> Result<(), ReplicationError> {
        let execution = self.event_execution(policy, key).await?;
        let Some(run) = self.meta.replication_execution(execution).await? else { return Ok(()) };
        if run.status != "InProgress" {
            return Ok(());
        }
        let (_, spec) = self.policy(policy).await?;
        let target = spec.destination(repo);
        let (src, dst) = match tag {
            Some(t) => (format!("{repo}:{t}"), format!("{target}:{t}")),
            None => (format!("{repo}@{digest}"), format!("{target}@{digest}")),
        };
        let t = ReplicationTaskRecord {
            id: 0,
            execution_id: execution,
            resource_type: "image".into(),
            src_resource: src,
            dst_resource: dst,
            operation: "deletion".into(),
            status: "Pending".into(),
            log: String::new(),
            started_at: None,
            ended_at: None,
        };
        let task = self.meta.ensure_replication_task(&t).await?;
        let done =
            self.meta.replication_tasks(execution).await?.into_iter().any(|t| t.id == task && t.status == "Succeed");
        if !done {
            self.meta.update_replication_task(task, "InProgress", "", now_ms()).await?;
            let result = match &spec.dest_registry {
                Some(end) => match self.upstreams.client(end.id).await {
                    Ok(c) => delete_at(&c, &target, tag, digest).await,
                    Err(e) => Err(err(e)),
                },
                None => Err("deletions replicate to a destination: this policy has none".into()),
            };
            let (status, line) = match result {
                Ok(line) => ("Succeed", line),
                Err(e) => ("Failed", format!("failed: {e}")),
            };
            self.meta.update_replication_task(task, status, &line, now_ms()).await?;
        }
        let failed = self.meta.replication_tasks(execution).await?.iter().any(|t| t.status == "Failed");
        let (status, text) =
            if failed { ("Failed", "the deletion failed") } else { ("Succeed", "1 deletion replicated") };
        self.finish(execution, status, text).await?;
        Ok(())
    }

    /// Run (or resume) execution `execution` to its end.
    pub async fn execute(&self, execution: i64) -> Result<(), ReplicationError> {
        self.execute_scoped(execution, None).await
    }

    async fn execute_scoped(&self, execution: i64, only: Option<(String, String)>) -> Result<(), ReplicationError> {
        let Some(run) = self.meta.replication_execution(execution).await? else { return Ok(()) };
        if run.status != "InProgress" {
            return Ok(());
        }
        let (_, spec) = self.policy(run.policy_id).await?;
        let here = End::Here(self.registry.clone());
        let ends = match (&spec.src_registry, &spec.dest_registry) {
            (Some(src), None) => self.end(src.id).await.map(|src| (src, here)),
            (None, Some(dst)) => self.end(dst.id).await.map(|dst| (here, dst)),
            _ => Err("the policy names no endpoint".to_owned()),
        };
        let (src, dst) = match ends {
            Ok(e) => e,
            Err(e) => {
                self.finish(execution, "Failed", &e).await?;
                return Ok(());
            }
        };
        let selection = Selection::new(&spec.filters).map_err(ReplicationError::Invalid)?;
        // The work: every selected tag of every selected repository, as tasks.
        let listed = async {
            let mut work = Vec::new();
            for repo in src.repositories().await? {
                if !selection.repository(&repo) {
                    continue;
                }
                let labels = if selection.by_labels() { src.tag_labels(&repo).await? } else { Default::default() };
                for tag in src.tags(&repo).await? {
                    let has = labels.get(&tag).map(Vec::as_slice).unwrap_or_default();
                    if selection.tag(&tag) && (!selection.by_labels() || selection.labels(has)) {
                        work.push((repo.clone(), tag));
                    }
                }
            }
            Ok::<_, String>(work)
        };
        let listed = async {
            match only {
                Some((repo, tag)) if selection.by_labels() => {
                    let labels = src.tag_labels(&repo).await?;
                    let has = labels.get(&tag).map(Vec::as_slice).unwrap_or_default();
                    Ok(if selection.labels(has) { vec![(repo, tag)] } else { Vec::new() })
                }
                Some((repo, tag)) => Ok(vec![(repo, tag)]),
                None => listed.await,
            }
        };
        let work = match listed.await {
            Ok(w) => w,
            Err(e) => {
                let text = format!("listing the source failed: {e}");
                self.finish(execution, "Failed", &text).await?;
                return Ok(());
            }
        };
        let mut tasks = Vec::new();
        for (repo, tag) in &work {
            let t = ReplicationTaskRecord {
                id: 0,
                execution_id: execution,
                resource_type: "image".into(),
                src_resource: format!("{repo}:{tag}"),
                dst_resource: format!("{}:{tag}", spec.destination(repo)),
                operation: "copy".into(),
                status: "Pending".into(),
                log: String::new(),
                started_at: None,
                ended_at: None,
            };
            tasks.push((self.meta.ensure_replication_task(&t).await?, repo.clone(), tag.clone()));
        }
        let done: std::collections::HashMap<i64, String> =
            self.meta.replication_tasks(execution).await?.into_iter().map(|t| (t.id, t.status)).collect();
        // Up to `concurrency` artifacts at once; each checks first whether the run was stopped.
        let pending: Vec<_> = tasks
            .into_iter()
            .filter(|(task, _, _)| !done.get(task).is_some_and(|s| s == "Succeed" || s == "Failed" || s == "Stopped"))
            .collect();
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let results: Vec<Result<(), ReplicationError>> = futures::stream::iter(pending)
            .map(|(task, repo, tag)| {
                let (src, dst, spec, stopped) = (&src, &dst, &spec, &stopped);
                async move {
                    if stopped.load(std::sync::atomic::Ordering::Relaxed)
                        || self.meta.replication_execution(execution).await?.is_none_or(|e| e.status != "InProgress")
                    {
                        stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Ok(());
                    }
                    self.meta.update_replication_task(task, "InProgress", "", now_ms()).await?;
                    let target = spec.destination(&repo);
                    let (status, line) = match copy(src, dst, &repo, &target, &tag, spec).await {
                        Ok(line) => ("Succeed", line),
                        Err(e) => ("Failed", format!("failed: {e}")),
                    };
                    self.meta.update_replication_task(task, status, &line, now_ms()).await?;
                    Ok(())
                }
            })
            .buffer_unordered(spec.concurrency())
            .collect()
            .await;
        for r in results {
            r?;
        }
        if stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let tasks = self.meta.replication_tasks(execution).await?;
        let failed = tasks.iter().filter(|t| t.status == "Failed").count();
        let ok = tasks.iter().filter(|t| t.status == "Succeed").count();
        let artifacts = |n: usize| if n == 1 { "1 artifact".to_owned() } else { format!("{n} artifacts") };
        let (status, text) = if failed > 0 {
            ("Failed", format!("{} replicated, {failed} failed", artifacts(ok)))
        } else {
            ("Succeed", format!("{} replicated", artifacts(ok)))
        };
        self.finish(execution, status, &text).await?;
        Ok(())
    }

    /// End run `execution` with `status`, and announce it (webhooks' REPLICATION) to each
    /// local project it copied from or into.
    async fn finish(&self, execution: i64, status: &str, text: &str) -> Result<(), ReplicationError> {
        self.meta.finish_replication_execution(execution, status, text, now_ms()).await?;
        if let Err(e) = self.announce(execution, status, text).await {
            tracing::warn!(execution, error = %e, "the end of a replication run could not be logged as an event");
        }
        Ok(())
    }

    /// A finished run as Harbor's `replication` webhook object, one event per local project.
    async fn announce(&self, execution: i64, status: &str, text: &str) -> Result<(), ReplicationError> {
        let Some(run) = self.meta.replication_execution(execution).await? else { return Ok(()) };
        let (rec, spec) = self.policy(run.policy_id).await?;
        let tasks = self.meta.replication_tasks(execution).await?;
        let push = spec.src_registry.is_none();
        let projects: std::collections::BTreeSet<String> = tasks
            .iter()
            .map(|t| if push { &t.src_resource } else { &t.dst_resource })
            .map(|r| berth_meta::project_of(r.split(':').next().unwrap_or(r)).to_owned())
            .collect();
        if projects.is_empty() {
            return Ok(());
        }
        let end = async |r: &Option<RegistryRef>, namespace: &str| match r {
            Some(r) => match self.upstreams.get(r.id).await {
                Ok(u) => {
                    serde_json::json!({"registry_name": u.name, "registry_type": u.kind, "endpoint": u.url, "namespace": namespace})
                }
                Err(_) => serde_json::json!({"registry_type": "unknown", "namespace": namespace}),
            },
            None => serde_json::json!({"registry_type": "harbor", "endpoint": "local", "namespace": namespace}),
        };
        let artifacts = |st: &str| -> Vec<serde_json::Value> {
            tasks
                .iter()
                .filter(|t| t.status == st)
                .map(|t| serde_json::json!({"type": t.resource_type, "status": if st == "Succeed" { "Success" } else { st }, "name_tag": t.src_resource}))
                .collect()
        };
        let job_status = match status {
            "Succeed" => "Success",
            other => other,
        };
        let mut events = Vec::new();
        for project in projects {
            let data = serde_json::json!({
                "job_status": job_status, "description": text, "artifact_type": "image",
                "override_mode": spec.overwrite, "trigger_type": run.trigger.to_uppercase(),
                "policy_creator": "", "policy_name": rec.name, "execution_id": execution,
                "execution_timestamp": run.started_at / 1000,
                "src_resource": end(&spec.src_registry, if push { &project } else { "" }).await,
                "dest_resource": end(&spec.dest_registry, if push { &spec.dest_namespace } else { &project }).await,
                "successful_artifact": artifacts("Succeed"), "failed_artifact": artifacts("Failed"),
            });
            events.push(
                NewEvent::new(EventKind::ReplicationFinished, now_ms(), &Origin::new("replication", None))
                    .project(&project)
                    .data(data),
            );
        }
        self.meta.append_events(&events).await?;
        Ok(())
    }

    /// Mark a run failed (its job was given up).
    pub async fn fail(&self, execution: i64, why: &str) -> Result<(), ReplicationError> {
        self.finish(execution, "Failed", why).await?;
        Ok(())
    }
}

/// The job kind of a run started by a push.
pub const REPLICATION_EVENT: &str = "replication-event";

/// Starts event-based push replication: each artifact pushed with a tag (not by replication
/// itself, so two sites replicating to each other do not loop) becomes a
/// `replication-event` job per enabled event-based push policy that selects it.
pub struct ReplicationOnPush {
    meta: Arc<dyn MetaStore>,
}

impl ReplicationOnPush {
    /// The consumer over the store.
    pub fn new(meta: Arc<dyn MetaStore>) -> ReplicationOnPush {
        ReplicationOnPush { meta }
    }
}

#[async_trait::async_trait]
impl berth_meta::Consumer for ReplicationOnPush {
    fn name(&self) -> &str {
        "replication"
    }

    async fn effects(
        &self,
        events: &[berth_meta::EventRecord],
    ) -> Result<Vec<berth_meta::Effect>, berth_meta::ConsumerError> {
        let by_user = |e: &NewEvent| e.origin.actor != "replication";
        let pushed = |e: &NewEvent| e.kind == EventKind::ArtifactPushed && by_user(e);
        // Deletions people made (GC's sweep of untagged manifests is housekeeping, not theirs).
        let deleted = |e: &NewEvent| {
            by_user(e)
                && (e.kind == EventKind::TagDeleted
                    || e.kind == EventKind::ArtifactDeleted && e.data.get("untagged").is_none_or(|u| u != true))
        };
        if !events.iter().any(|e| pushed(&e.event) || deleted(&e.event)) {
            return Ok(Vec::new());
        }
        let mut policies = Vec::new();
        for rec in self.meta.replication_policies().await? {
            let Ok(spec) = serde_json::from_str::<PolicySpec>(&rec.document) else { continue };
            if spec.enabled
                && spec.trigger.kind == "event_based"
                && spec.dest_registry.is_some()
                && let Ok(selection) = Selection::new(&spec.filters)
            {
                policies.push((rec.id, selection, spec.deletion));
            }
        }
        let mut out = Vec::new();
        for r in events {
            let e = &r.event;
            if deleted(e)
                && let (Some(repo), Some(digest)) = (e.repo.as_deref(), e.digest.as_deref())
            {
                // A tag deleted, or an artifact with the tags it had.
                let tags: Vec<&str> = match e.tag.as_deref() {
                    Some(t) => vec![t],
                    None => e.data["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).collect(),
                };
                for (id, selection, deletion) in &policies {
                    let chosen =
                        if tags.is_empty() { selection.tag("") } else { tags.iter().any(|t| selection.tag(t)) };
                    if *deletion && selection.repository(repo) && chosen {
                        let key = format!("event {}: delete {repo}:{}", r.seq, e.tag.as_deref().unwrap_or(digest));
                        out.push(berth_meta::Effect::Job(berth_meta::NewJob {
                            kind: REPLICATION_EVENT.into(),
                            payload: serde_json::json!({
                                "policy": id, "repo": repo, "tag": e.tag, "digest": digest, "key": key, "op": "delete"
                            })
                            .to_string(),
                            dedup_key: Some(format!("{REPLICATION_EVENT}-{id}-{}", r.seq)),
                            max_attempts: 3,
                            run_after: 0,
                        }));
                    }
                }
                continue;
            }
            let (true, Some(repo), Some(tag)) = (pushed(e), e.repo.as_deref(), e.tag.as_deref()) else { continue };
            for (id, selection, _) in &policies {
                if selection.repository(repo) && selection.tag(tag) {
                    let key = format!("event {}: {repo}:{tag}", r.seq);
                    out.push(berth_meta::Effect::Job(berth_meta::NewJob {
                        kind: REPLICATION_EVENT.into(),
                        payload: serde_json::json!({"policy": id, "repo": repo, "tag": tag, "key": key}).to_string(),
                        dedup_key: Some(format!("{REPLICATION_EVENT}-{id}-{}", r.seq)),
                        max_attempts: 3,
                        run_after: 0,
                    }));
                }
            }
        }
        Ok(out)
    }
}

/// Delete `target:tag` (or `target@digest`) at a destination if it is still `digest`; what
/// was done, in a line.
async fn delete_at(c: &Client, target: &str, tag: Option<&str>, digest: &str) -> Result<String, String> {
    let what = match tag {
        Some(t) => format!("{target}:{t}"),
        None => format!("{target}@{digest}"),
    };
    match c.manifest_head(target, tag.unwrap_or(digest)).await.map_err(err)? {
        None => Ok(format!("{what} is not at the destination; nothing to delete")),
        Some(h) if h.digest != digest => Ok(format!("{what} is {} there, not {digest}; left as it is", h.digest)),
        Some(_) => {
            c.delete_manifest(target, tag.unwrap_or(digest)).await.map_err(err)?;
            Ok(format!("deleted {what}"))
        }
    }
}

/// Copy `repo:tag` from `src` to `target:tag` at `dst`; what was done, in a line.
async fn copy(src: &End, dst: &End, repo: &str, target: &str, tag: &str, spec: &PolicySpec) -> Result<String, String> {
    let Some(m) = src.manifest(repo, tag).await? else {
        return Ok(format!("{repo}:{tag} is gone at the source; nothing to copy"));
    };
    if let Some(there) = dst.tag_digest(target, tag).await? {
        if there == m.digest {
            return Ok(format!("{target}:{tag} is already {}", m.digest));
        }
        if !spec.overwrite {
            return Ok(format!("{target}:{tag} exists ({there}) and override is off; left as it is"));
        }
    }
    let mut copied = (0usize, 0u64);
    copy_manifest(src, dst, repo, target, &m, spec.speed, &mut copied).await?;
    dst.write_manifest(target, tag, &m).await?;
    Ok(format!("copied {repo}:{tag} ({}) to {target}:{tag}: {} blobs, {} bytes sent", m.digest, copied.0, copied.1))
}

/// Copy what manifest `m` references (children of an index, blobs of an image).
async fn copy_manifest(
    src: &End,
    dst: &End,
    repo: &str,
    target: &str,
    m: &Got,
    speed: i64,
    copied: &mut (usize, u64),
) -> Result<(), String> {
    let view: ManifestView = serde_json::from_slice(&m.bytes).map_err(|e| format!("manifest {}: {e}", m.digest))?;
    if view.is_index() {
        for child in view.manifests.iter().flatten() {
            let d = child.digest.to_string();
            let c = src.manifest(repo, &d).await?.ok_or_else(|| format!("child {d} is missing at the source"))?;
            Box::pin(copy_manifest(src, dst, repo, target, &c, speed, copied)).await?;
            dst.write_manifest(target, &d, &c).await?;
        }
        return Ok(());
    }
    for desc in view.config.iter().chain(view.layers.iter().flatten()) {
        if desc.media_type.contains("nondistributable") || desc.media_type.contains(".foreign.") {
            continue;
        }
        let d = desc.digest.to_string();
        if dst.has_blob(target, &d).await? {
            continue;
        }
        let (size, body) = src.read_blob(repo, &d).await?;
        dst.write_blob(target, &d, size, throttle(body, speed)).await?;
        copied.0 += 1;
        copied.1 += size;
    }
    Ok(())
}

/// `body` at no more than `kib_per_s` KiB/s (0 or less: as fast as it comes). Chunks are
/// split to 64 KiB so the pace is even.
fn throttle(body: berth_client::ByteStream, kib_per_s: i64) -> berth_client::ByteStream {
    if kib_per_s <= 0 {
        return body;
    }
    let rate = kib_per_s as f64 * 1024.0;
    let start = tokio::time::Instant::now();
    let pieces = body.flat_map(|chunk| {
        let parts: Vec<Result<Bytes, berth_client::ClientError>> = match chunk {
            Ok(b) => (0..b.len()).step_by(64 << 10).map(|i| Ok(b.slice(i..(i + (64 << 10)).min(b.len())))).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(parts)
    });
    let mut sent = 0u64;
    Box::pin(pieces.then(move |chunk| {
        if let Ok(b) = &chunk {
            sent += b.len() as u64;
        }
        let due = start + std::time::Duration::from_secs_f64(sent as f64 / rate);
        async move {
            tokio::time::sleep_until(due).await;
            chunk
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(kind: &str, value: &str, decoration: &str) -> Filter {
        Filter { kind: kind.into(), value: value.into(), decoration: decoration.into() }
    }

    #[test]
    fn filters_and_destinations() {
        let s = Selection::new(&[
            filter("name", "library/**", ""),
            filter("tag", "v*", ""),
            filter("tag", "*-rc*", "excludes"),
        ])
        .unwrap();
        assert!(s.repository("library/app") && s.repository("library/a/b") && !s.repository("other/app"));
        assert!(s.tag("v1") && !s.tag("v2-rc1") && !s.tag("latest"));
        assert!(Selection::new(&[filter("tag", "[", "")]).is_err());
        assert!(Selection::new(&[filter("label", "", "")]).is_err());
        let gold = Selection::new(&[filter("label", "gold", ""), filter("label", "broken", "excludes")]).unwrap();
        let has = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            gold.labels(&has(&["gold", "x"])) && !gold.labels(&has(&["x"])) && !gold.labels(&has(&["gold", "broken"]))
        );
        let mut p: PolicySpec =
            serde_json::from_value(serde_json::json!({"name": "p", "dest_registry": {"id": 1}})).unwrap();
        assert!(p.enabled && !p.overwrite);
        assert_eq!(p.destination("team/app"), "team/app");
        p.dest_namespace = "mirror".into();
        assert_eq!(p.destination("team/sub/app"), "mirror/sub/app");
        assert!(p.validate().is_ok());
        p.src_registry = Some(RegistryRef { id: 2 });
        assert!(p.validate().unwrap_err().contains("not both"));
    }
}
