//! Registry semantics over a [`BlobStore`] and a [`MetaStore`]: upload sessions that hash
//! while they stream, verified commits, cross-repository mounts, manifest validation,
//! tags, referrers and upload expiry. No HTTP here: `berth-oci` maps these calls and
//! [`RegistryError`] onto the wire.
//!
//! **Invariant:** content becomes visible only through metadata written *after* its bytes
//! are durable: blob bytes are committed (fsync + rename) before `link_blob`; a manifest's
//! bytes, row, references and tags are one metadata transaction. A crash leaves at most
//! unreferenced blob bytes, never a visible reference to missing or partial bytes.

mod error;
mod gc;
mod manifest;
mod policy;
mod proxy;
mod replication;
mod scrub;
mod signatures;
mod upload;
mod upstream;
mod usage;

pub use gc::{Collector, GcOptions, GcReport, RepoFreed, StopCheck};
pub use policy::{LIFECYCLE, LIFECYCLE_PREVIEW, RETENTION};
pub use proxy::{CacheStats, Cached, Fetched, Proxy, ProxyOptions, Served, Streaming};
pub use replication::{
    Filter, PolicySpec, REPLICATION, REPLICATION_EVENT, RegistryRef, Replication, ReplicationError, ReplicationOnPush,
    Selection, Trigger,
};
pub use scrub::{ScrubOptions, ScrubReport};
pub use signatures::{KeySpec, SignatureError, SignatureMode, SignaturePolicy, Signatures, StoreSpec, Verdict};
pub use upload::{Committed, UploadSweep};
pub use upstream::{EndpointSpec, KINDS, UpstreamError, Upstreams};
pub use usage::{UsageConsumer, date_of, day_of};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_blob::BlobStore;
use berth_meta::{EventBuffer, EventKind, ManifestRecord, MetaStore, NewEvent};
use berth_types::{Digest, Hasher, Reference, RepoName, Tag};
use bytes::Bytes;

pub use berth_blob::{BlobBody, BlobError, ByteStream};
pub use berth_meta::{
    ArtifactRow, CacheRule, LabelRecord, LabelStore, MetaError, Origin, QuotaCheck, QuotaRecord, RepoSummary,
    UpstreamRecord, UsageRecord,
};
pub use berth_meta::{ReplicationExecutionRecord, ReplicationPolicyRecord, ReplicationTaskRecord};
pub use berth_policy::immutable::{Immutability, ImmutableRule, MutabilityMode, TagMutability};
pub use error::RegistryError;
pub use manifest::PutManifestOutcome;

/// Limits and timeouts of the registry core.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// Idle upload sessions older than this are expired and their bytes reclaimed.
    pub upload_ttl: Duration,
    /// Cache manifest records (tag and digest lookups) in memory. Only correct when this
    /// process is the only writer of the metadata, as with the embedded database.
    pub cache_records: bool,
    /// Answer blob GETs with a redirect to a presigned URL valid this long, where the blob
    /// store can presign (S3); `None` serves the bytes through Berth.
    pub blob_redirect_ttl: Option<Duration>,
    /// Open upload sessions a repository may have at once.
    pub max_uploads_per_repository: u64,
    /// Open upload sessions one account may have at once.
    pub max_uploads_per_account: u64,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            max_manifest_bytes: 4 * 1024 * 1024,
            upload_ttl: Duration::from_secs(24 * 3600),
            cache_records: false,
            blob_redirect_ttl: None,
            max_uploads_per_repository: 1000,
            max_uploads_per_account: 1000,
        }
    }
}

/// In-memory state of one upload session on this process: a lock that serialises writes,
/// and the running SHA-256 of the bytes written so far (absent after a restart or a failed
/// write; then it is rebuilt from storage when needed).
type UploadSlot = Arc<tokio::sync::Mutex<Option<(u64, Hasher)>>>;

/// Weighs cached manifests by their size, so the cache is bounded in bytes.
#[derive(Clone)]
struct ByteWeighter;

impl quick_cache::Weighter<Digest, Bytes> for ByteWeighter {
    fn weight(&self, _key: &Digest, val: &Bytes) -> u64 {
        val.len() as u64 + 64
    }
}

/// Bytes of manifest content kept in memory (content is immutable per digest, so the cache
/// can never be stale, whichever replica wrote it).
const MANIFEST_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The registry service. Cheap to share behind an `Arc`.
pub struct Registry {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    opts: RegistryOptions,
    uploads: Mutex<HashMap<String, UploadSlot>>,
    manifest_cache: quick_cache::sync::Cache<Digest, Bytes, ByteWeighter>,
    records: Option<RecordCache>,
    /// Where pulls are logged (absent: pulls are not counted).
    events: Option<EventBuffer>,
}

/// Manifest records by tag and by digest, for a single-writer deployment.
///
/// **Invariant:** entries are removed *after* the write that changes them commits, and the
/// generation is bumped then; a reader stores what it read only if the generation did not
/// move while it read, so an entry is never older than the last committed write.
struct RecordCache {
    by_tag: quick_cache::sync::Cache<(RepoName, Tag), ManifestRecord>,
    by_digest: quick_cache::sync::Cache<(RepoName, Digest), ManifestRecord>,
    generation: std::sync::atomic::AtomicU64,
}

impl RecordCache {
    fn new() -> Self {
        RecordCache {
            by_tag: quick_cache::sync::Cache::new(100_000),
            by_digest: quick_cache::sync::Cache::new(100_000),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A manifest read back for a GET or HEAD.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Its metadata (digest, media type, size).
    pub record: ManifestRecord,
    /// The exact bytes pushed (absent for HEAD).
    pub bytes: Option<Bytes>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Registry {
    /// A registry over the given stores.
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetaStore>, opts: RegistryOptions) -> Self {
        let opts_cache = opts.cache_records;
        Registry {
            blobs,
            meta,
            opts,
            uploads: Mutex::new(HashMap::new()),
            manifest_cache: quick_cache::sync::Cache::with_weighter(4096, MANIFEST_CACHE_BYTES, ByteWeighter),
            records: opts_cache.then(RecordCache::new),
            events: None,
        }
    }

    /// Log pulls (`artifact.pulled`) through `events`.
    pub fn with_events(mut self, events: EventBuffer) -> Self {
        self.events = Some(events);
        self
    }

    /// Count a pull of `digest` (asked for as `reference`) by `origin`: batched, never a
    /// synchronous write.
    pub fn record_pull(&self, repo: &RepoName, reference: &Reference, digest: &Digest, origin: &Origin) {
        if let Some(events) = &self.events {
            let mut e = NewEvent::new(EventKind::ArtifactPulled, now_ms(), origin).repo(repo.as_str()).digest(digest);
            if let Reference::Tag(t) = reference {
                e.tag = Some(t.to_string());
            }
            events.push(e);
        }
    }

    /// Count blob bytes moved for metering (`blob.pushed` / `blob.pulled`, batched).
    pub fn record_transfer(&self, repo: &RepoName, pulled: bool, bytes: u64) {
        if let Some(events) = &self.events {
            let kind = if pulled { EventKind::BlobPulled } else { EventKind::BlobPushed };
            events.push(
                NewEvent::new(kind, now_ms(), &Origin::system())
                    .repo(repo.as_str())
                    .data(serde_json::json!({ "bytes": bytes })),
            );
        }
    }

    /// Usage rows of a project (all when `None`) for UTC days `from..=to`.
    pub async fn usage(&self, project: Option<&str>, from: i64, to: i64) -> Result<Vec<UsageRecord>, RegistryError> {
        Ok(self.meta.usage(project, from, to).await?)
    }

    /// The options in force.
    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// Size of a blob that `repo` links.
    /// (A quarantined blob is unknown here, so that a client pushing it uploads it again and
    /// the upload repairs it.)
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64, RegistryError> {
        match self.meta.repo_blob_checked(repo, digest).await? {
            Some((size, None)) => Ok(size as u64),
            _ => Err(RegistryError::BlobUnknown(digest.clone())),
        }
    }

    /// Size of a blob that `repo` links, about to be served: a quarantined blob is an error
    /// that says so (see [`Registry::blob_size`] for `HEAD`).
    pub async fn blob_size_to_serve(&self, repo: &RepoName, digest: &Digest) -> Result<u64, RegistryError> {
        match self.meta.repo_blob_checked(repo, digest).await? {
            Some((size, None)) => Ok(size as u64),
            Some((_, Some(reason))) => Err(RegistryError::BlobQuarantined { digest: digest.clone(), reason }),
            None => Err(RegistryError::BlobUnknown(digest.clone())),
        }
    }

    /// Quarantined blobs (digest, reason, repositories linking them), for the operator.
    pub async fn quarantined(&self) -> Result<Vec<(Digest, String, Vec<String>)>, RegistryError> {
        Ok(self.meta.quarantined().await?)
    }

    /// Bytes of a blob that `repo` links, whole or an inclusive range. Returns `(total size, body)`.
    pub async fn blob_get(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<(u64, u64)>,
    ) -> Result<(u64, BlobBody), RegistryError> {
        let size = self.blob_size_to_serve(repo, digest).await?;
        let body = self.blobs.open(digest, range).await.map_err(|e| match e {
            berth_blob::BlobError::RangeNotSatisfiable => RegistryError::RangeNotSatisfiable { size },
            berth_blob::BlobError::NotFound => RegistryError::BlobUnknown(digest.clone()),
            e => e.into(),
        })?;
        Ok((size, body))
    }

    /// The bytes of a stored blob whatever links it (a pull-through cache serving what it
    /// holds elsewhere to a project whose quota cannot take the link); `None` if absent.
    pub(crate) async fn blob_unlinked(&self, digest: &Digest) -> Result<Option<(u64, BlobBody)>, RegistryError> {
        let Some(size) = self.blobs.stat(digest).await? else { return Ok(None) };
        match self.blobs.open(digest, None).await {
            Ok(body) => Ok(Some((size, body))),
            Err(berth_blob::BlobError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A small blob that `repo` links, read whole (an image config, a chart): `None` when it
    /// is larger than `max` bytes, so a page never reads a big layer into memory.
    pub async fn blob_bytes(&self, repo: &RepoName, digest: &Digest, max: u64) -> Result<Option<Bytes>, RegistryError> {
        let size = self.blob_size_to_serve(repo, digest).await?;
        if size > max {
            return Ok(None);
        }
        match self.blob_get(repo, digest, None).await?.1 {
            BlobBody::Bytes(b) => Ok(Some(b)),
            BlobBody::Stream(mut s) => {
                use futures::StreamExt;
                let mut out = Vec::with_capacity(size as usize);
                while let Some(chunk) = s.next().await {
                    out.extend_from_slice(&chunk.map_err(berth_blob::BlobError::from)?);
                    if out.len() as u64 > max {
                        return Ok(None);
                    }
                }
                Ok(Some(Bytes::from(out)))
            }
        }
    }

    /// A presigned URL for a blob that `repo` links, when redirects are on and the store can
    /// presign. The repository check happens here, before any URL is made.
    pub async fn blob_redirect(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>, RegistryError> {
        let Some(ttl) = self.opts.blob_redirect_ttl else { return Ok(None) };
        self.blob_size_to_serve(repo, digest).await?;
        Ok(self.blobs.presigned_get(digest, ttl).await?)
    }

    /// Unlink a blob from `repo`. Its bytes stay until garbage collection finds them unused.
    pub async fn blob_delete(&self, repo: &RepoName, digest: &Digest, origin: &Origin) -> Result<(), RegistryError> {
        if self.meta.unlink_blob(repo, digest, origin).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.clone()))
        }
    }

    /// Cross-repository mount: link an existing blob into `repo`. With `from`, only a blob
    /// that `from` links is mounted; without it, any repository's copy will do. Returns the
    /// size when mounted, `None` when the caller should fall back to a normal upload.
    pub async fn mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<Option<u64>, RegistryError> {
        // The bytes must really be there (a link vouches for them; check anyway).
        if self.blobs.stat(digest).await?.is_none() {
            return Ok(None);
        }
        Ok(self.meta.mount_blob(repo, digest, from, now_ms()).await?.map(|s| s as u64))
    }

    /// Up to `limit` repositories that hold blob `digest` (candidates of a mount without
    /// `from`; the caller checks access to each).
    pub async fn blob_repos(&self, digest: &Digest, limit: usize) -> Result<Vec<RepoName>, RegistryError> {
        Ok(self.meta.blob_repos(digest, limit).await?)
    }

    /// Resolve a reference to a manifest of `repo`; `with_body` reads its bytes too.
    pub async fn manifest_get(
        &self,
        repo: &RepoName,
        reference: &Reference,
        with_body: bool,
    ) -> Result<FetchedManifest, RegistryError> {
        let record = self
            .lookup_record(repo, reference)
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))?;
        let bytes = if with_body { Some(self.manifest_bytes(&record.digest).await?) } else { None };
        Ok(FetchedManifest { record, bytes })
    }

    async fn lookup_record(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, RegistryError> {
        let fetch = async {
            Ok::<_, RegistryError>(match reference {
                Reference::Digest(d) => self.meta.get_manifest(repo, d).await?,
                Reference::Tag(t) => self.meta.get_tagged_manifest(repo, t).await?,
            })
        };
        let Some(cache) = &self.records else { return fetch.await };
        let generation = cache.generation();
        let hit = match reference {
            Reference::Digest(d) => cache.by_digest.get(&(repo.clone(), d.clone())),
            Reference::Tag(t) => cache.by_tag.get(&(repo.clone(), t.clone())),
        };
        if hit.is_some() {
            return Ok(hit);
        }
        let found = fetch.await?;
        // Store only if no write committed while we read (see `RecordCache`).
        if let Some(rec) = &found
            && cache.generation() == generation
        {
            match reference {
                Reference::Digest(d) => cache.by_digest.insert((repo.clone(), d.clone()), rec.clone()),
                Reference::Tag(t) => cache.by_tag.insert((repo.clone(), t.clone()), rec.clone()),
            }
        }
        Ok(found)
    }

    /// After a committed change to tags or manifests of `repo`: drop affected cache entries.
    fn invalidate(&self, repo: &RepoName, tags: &[Tag], digest: Option<&Digest>, all_tags: bool) {
        if let Some(cache) = &self.records {
            cache.bump();
            for t in tags {
                cache.by_tag.remove(&(repo.clone(), t.clone()));
            }
            if let Some(d) = digest {
                cache.by_digest.remove(&(repo.clone(), d.clone()));
            }
            if all_tags {
                cache.by_tag.clear();
            }
        }
    }

    /// Manifest bytes by digest, from the in-memory cache or the metadata store.
    async fn manifest_bytes(&self, digest: &Digest) -> Result<Bytes, RegistryError> {
        if let Some(b) = self.manifest_cache.get(digest) {
            return Ok(b);
        }
        let content = self
            .meta
            .manifest_content(digest)
            .await?
            .ok_or_else(|| berth_meta::MetaError::Corrupt(format!("manifest {digest} has a row but no content")))?;
        let b = Bytes::from(content);
        self.manifest_cache.insert(digest.clone(), b.clone());
        Ok(b)
    }

    /// The tag immutability that applies to `repo`: its project's Harbor rules and its own
    /// ECR setting, compiled.
    pub async fn immutability(&self, repo: &RepoName) -> Result<Immutability, RegistryError> {
        let project = berth_meta::project_of(repo.as_str());
        let corrupt =
            |what: &str, e: String| RegistryError::Meta(berth_meta::MetaError::Corrupt(format!("{what}: {e}")));
        let mut rules = Vec::new();
        for (id, text) in self.meta.immutable_rules(project).await? {
            let mut r: ImmutableRule =
                serde_json::from_str(&text).map_err(|e| corrupt("immutable tag rule", e.to_string()))?;
            r.id = id;
            rules.push(r);
        }
        let ecr = match self.meta.tag_mutability(repo).await? {
            Some(text) => Some(TagMutability::parse(&text).map_err(|e| corrupt("tag mutability", e))?),
            None => None,
        };
        Immutability::compile(&rules, ecr.as_ref()).map_err(|e| corrupt("immutability", e))
    }

    /// Those of `tags` that are immutable in `repo` (may not be overwritten, or with
    /// `delete` may not be deleted: see `Immutability::undeletable`), with the reason.
    async fn immutable_tags(
        &self,
        repo: &RepoName,
        tags: &[Tag],
        delete: bool,
    ) -> Result<Vec<(Tag, String)>, RegistryError> {
        let im = self.immutability(repo).await?;
        if im.is_empty() {
            return Ok(Vec::new());
        }
        let short = repo.as_str().split_once('/').map_or(repo.as_str(), |(_, r)| r);
        let why = |t: &Tag| if delete { im.undeletable(short, t.as_str()) } else { im.immutable(short, t.as_str()) };
        Ok(tags.iter().filter_map(|t| why(t).map(|why| (t.clone(), why))).collect())
    }

    /// Refuse if any of `tags` of `repo` may not be deleted.
    async fn check_deletable(&self, repo: &RepoName, tags: &[Tag]) -> Result<(), RegistryError> {
        match self.immutable_tags(repo, tags, true).await?.into_iter().next() {
            Some((tag, why)) => Err(RegistryError::TagImmutable { repo: repo.clone(), tag: tag.to_string(), why }),
            None => Ok(()),
        }
    }

    /// Every tag of `repo`.
    async fn all_tags(&self, repo: &RepoName, digest: Option<&Digest>) -> Result<Vec<Tag>, RegistryError> {
        let names = match digest {
            Some(d) => self.meta.tags_of(repo, d).await?,
            None => self.meta.list_tags(repo, None, i64::MAX).await?,
        };
        Ok(names.iter().filter_map(|t| t.parse().ok()).collect())
    }

    /// Delete by digest (the manifest and every tag on it) or by tag (only the tag). An
    /// immutable tag is neither deleted nor deleted with its manifest.
    pub async fn manifest_delete(
        &self,
        repo: &RepoName,
        reference: &Reference,
        origin: &Origin,
    ) -> Result<(), RegistryError> {
        match reference {
            Reference::Digest(d) => {
                // Its own tags, and those of the indexes that list it (deleting a child would
                // break an image whose tag may not change).
                let mut tags = self.all_tags(repo, Some(d)).await?;
                for parent in self.meta.parents_of(repo, d).await? {
                    tags.extend(self.all_tags(repo, Some(&parent)).await?);
                }
                self.check_deletable(repo, &tags).await?
            }
            Reference::Tag(t) => self.check_deletable(repo, std::slice::from_ref(t)).await?,
        }
        let found = match reference {
            Reference::Digest(d) => {
                let found = self.meta.delete_manifest(repo, d, origin).await?;
                self.invalidate(repo, &[], Some(d), true);
                found
            }
            Reference::Tag(t) => {
                let found = self.meta.delete_tag(repo, t, origin).await?;
                self.invalidate(repo, std::slice::from_ref(t), None, false);
                found
            }
        };
        if found { Ok(()) } else { Err(RegistryError::ManifestUnknown(reference.to_string())) }
    }

    /// Point `tag` at the existing manifest `digest`.
    pub async fn tag_create(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        origin: &Origin,
    ) -> Result<(), RegistryError> {
        let immutable = self.immutable_tags(repo, std::slice::from_ref(tag), false).await?.into_iter().next();
        let written = self.meta.put_tag_guarded(repo, tag, digest, immutable.is_some(), now_ms(), origin).await;
        self.invalidate(repo, std::slice::from_ref(tag), None, false);
        let found = match (written, immutable) {
            (Err(berth_meta::MetaError::TagImmutable(_)), Some((tag, why))) => {
                return Err(RegistryError::TagImmutable { repo: repo.clone(), tag: tag.to_string(), why });
            }
            (r, _) => r?,
        };
        if found { Ok(()) } else { Err(RegistryError::ManifestUnknown(digest.to_string())) }
    }

    /// Every manifest of `repo` with its tags, children and total size, newest first.
    pub async fn artifacts(&self, repo: &RepoName) -> Result<Vec<berth_meta::ArtifactRow>, RegistryError> {
        Ok(self.meta.repo_artifacts(repo).await?)
    }

    /// One page of [`Registry::artifacts`] and the total, when no artifact of `repo` is grouped
    /// under another (see [`MetaStore::repo_artifacts_page`]); `None` otherwise.
    pub async fn artifacts_page(
        &self,
        repo: &RepoName,
        offset: usize,
        limit: usize,
    ) -> Result<Option<(Vec<berth_meta::ArtifactRow>, usize)>, RegistryError> {
        let page = self.meta.repo_artifacts_page(repo, offset as i64, limit as i64).await?;
        Ok(page.map(|(rows, total)| (rows, total.max(0) as usize)))
    }

    /// The repositories of a project, with their counts and times, by name.
    pub async fn project_repos(&self, project: &str) -> Result<Vec<RepoSummary>, RegistryError> {
        Ok(self.meta.project_repos(project).await?)
    }

    /// One page of a project's repositories (name containing `contains`), and how many match.
    pub async fn project_repos_page(
        &self,
        project: &str,
        contains: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RepoSummary>, i64), RegistryError> {
        Ok(self.meta.project_repos_page(project, contains, offset, limit).await?)
    }

    /// How many repositories each project has, in order (one query; at most 200 projects).
    pub async fn repo_counts(&self, projects: &[String]) -> Result<Vec<i64>, RegistryError> {
        let mut out = Vec::with_capacity(projects.len());
        for chunk in projects.chunks(200) {
            out.extend(self.meta.repo_counts(chunk).await?);
        }
        Ok(out)
    }

    /// Harbor's labels and their attachments.
    pub fn labels(&self) -> &dyn berth_meta::LabelStore {
        &*self.meta
    }

    /// Is the metadata database reachable? (A cheap read.)
    pub async fn ping(&self) -> Result<(), RegistryError> {
        self.meta.list_repos(None, 1).await?;
        Ok(())
    }

    /// Does the repository exist (with or without content)?
    pub async fn repository_exists(&self, repo: &RepoName) -> Result<bool, RegistryError> {
        Ok(self.meta.repo_exists(repo).await?)
    }

    /// Create an empty repository; false when it exists already.
    pub async fn repository_create(&self, repo: &RepoName, origin: &Origin) -> Result<bool, RegistryError> {
        Ok(self.meta.create_repo(repo, origin).await?)
    }

    /// Delete a whole repository (manifests, tags, blob links). Blob bytes stay until GC.
    pub async fn repository_delete(&self, repo: &RepoName, origin: &Origin) -> Result<(), RegistryError> {
        self.check_deletable(repo, &self.all_tags(repo, None).await?).await?;
        let found = self.meta.delete_repo(repo, origin).await?;
        if let Some(cache) = &self.records {
            cache.bump();
            cache.by_tag.clear();
            cache.by_digest.clear();
        }
        if found { Ok(()) } else { Err(RegistryError::NameUnknown(repo.clone())) }
    }

    /// A project's storage quota and usage (no limit and nothing used if never set).
    pub async fn quota(&self, project: &str) -> Result<QuotaRecord, RegistryError> {
        Ok(self.meta.quota(project).await?)
    }

    /// Every stored quota, by project.
    pub async fn quotas(&self) -> Result<Vec<QuotaRecord>, RegistryError> {
        Ok(self.meta.quotas().await?)
    }

    /// Set a project's storage limit in bytes (`-1`: unlimited).
    pub async fn set_quota(&self, project: &str, hard: i64) -> Result<(), RegistryError> {
        Ok(self.meta.set_quota_limit(project, hard, now_ms()).await?)
    }

    /// Recompute every project's usage from what it holds; with `fix`, correct what differs.
    pub async fn verify_quotas(&self, fix: bool) -> Result<Vec<QuotaCheck>, RegistryError> {
        Ok(self.meta.verify_quotas(fix).await?)
    }

    /// The immutable tag rules of a project, by id.
    pub async fn immutable_rules(&self, project: &str) -> Result<Vec<ImmutableRule>, RegistryError> {
        let mut out = Vec::new();
        for (id, text) in self.meta.immutable_rules(project).await? {
            let mut r: ImmutableRule = serde_json::from_str(&text)
                .map_err(|e| berth_meta::MetaError::Corrupt(format!("immutable tag rule {id}: {e}")))?;
            r.id = id;
            out.push(r);
        }
        Ok(out)
    }

    /// Create (`id` none) or replace an immutable tag rule of `project` (validated first);
    /// returns its id, or `None` if there is no rule `id`.
    pub async fn put_immutable_rule(
        &self,
        project: &str,
        id: Option<i64>,
        rule: &ImmutableRule,
        origin: &Origin,
    ) -> Result<Option<i64>, RegistryError> {
        rule.validate().map_err(RegistryError::PolicyInvalid)?;
        let mut stored = rule.clone();
        stored.id = 0;
        let text = serde_json::to_string(&stored).map_err(|e| RegistryError::PolicyInvalid(e.to_string()))?;
        Ok(self.meta.put_immutable_rule(project, id, &text, berth_policy::immutable::MAX_RULES, origin).await?)
    }

    /// Delete an immutable tag rule; returns whether it existed.
    pub async fn delete_immutable_rule(&self, project: &str, id: i64, origin: &Origin) -> Result<bool, RegistryError> {
        Ok(self.meta.delete_immutable_rule(project, id, origin).await?)
    }

    /// A repository's ECR tag mutability (`MUTABLE` when never set).
    pub async fn tag_mutability(&self, repo: &RepoName) -> Result<TagMutability, RegistryError> {
        Ok(match self.meta.tag_mutability(repo).await? {
            Some(text) => TagMutability::parse(&text)
                .map_err(|e| berth_meta::MetaError::Corrupt(format!("tag mutability of {repo}: {e}")))?,
            None => TagMutability { mode: MutabilityMode::Mutable, exclusion_filters: Vec::new() },
        })
    }

    /// Set a repository's ECR tag mutability (validated first).
    pub async fn set_tag_mutability(
        &self,
        repo: &RepoName,
        m: &TagMutability,
        origin: &Origin,
    ) -> Result<(), RegistryError> {
        m.validate().map_err(RegistryError::PolicyInvalid)?;
        let text = serde_json::to_string(m).map_err(|e| RegistryError::PolicyInvalid(e.to_string()))?;
        let config = (m.mode != MutabilityMode::Mutable).then_some(text);
        Ok(self.meta.put_tag_mutability(repo, config.as_deref(), origin).await?)
    }

    /// A repository's per-repository setting of `kind` (the ECR API's `scanning` and `tags`),
    /// as JSON, if set.
    pub async fn repo_setting(&self, repo: &RepoName, kind: &str) -> Result<Option<serde_json::Value>, RegistryError> {
        match self.meta.repo_setting(repo, kind).await? {
            Some(text) => Ok(Some(
                serde_json::from_str(&text)
                    .map_err(|e| berth_meta::MetaError::Corrupt(format!("{kind} setting of {repo}: {e}")))?,
            )),
            None => Ok(None),
        }
    }

    /// Set (or with `None` clear) a repository's setting of `kind`.
    pub async fn set_repo_setting(
        &self,
        repo: &RepoName,
        kind: &str,
        value: Option<&serde_json::Value>,
        origin: &Origin,
    ) -> Result<(), RegistryError> {
        let text = value.map(serde_json::Value::to_string);
        Ok(self.meta.put_repo_setting(repo, kind, text.as_deref(), origin).await?)
    }

    /// Drop every cached manifest record (after deletions this process did not make
    /// through `Registry`, e.g. garbage collection).
    pub fn forget_cached_records(&self) {
        if let Some(cache) = &self.records {
            cache.bump();
            cache.by_tag.clear();
            cache.by_digest.clear();
        }
    }

    /// Up to `n` tags after `last`; the bool says whether more may follow.
    pub async fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: Option<usize>,
    ) -> Result<(Vec<String>, bool), RegistryError> {
        if !self.meta.repo_exists(repo).await? {
            return Err(RegistryError::NameUnknown(repo.clone()));
        }
        page(n, |limit| self.meta.list_tags(repo, last, limit)).await
    }

    /// Up to `n` repository names after `last`; the bool says whether more may follow.
    pub async fn catalog(&self, last: Option<&str>, n: Option<usize>) -> Result<(Vec<String>, bool), RegistryError> {
        page(n, |limit| self.meta.list_repos(last, limit)).await
    }

    /// Manifests in `repo` whose subject is `subject`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, RegistryError> {
        Ok(self.meta.referrers(repo, subject, artifact_type).await?)
    }

    /// A page of [`Registry::referrers`]: up to `n` after `after` (push time and digest of
    /// the last one of the previous page); the bool says whether more follow.
    pub async fn referrers_page(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<(i64, &Digest)>,
        n: usize,
    ) -> Result<(Vec<ManifestRecord>, bool), RegistryError> {
        let mut list = self.meta.referrers_page(repo, subject, artifact_type, after, n as i64 + 1).await?;
        let more = list.len() > n;
        list.truncate(n);
        Ok((list, more))
    }

    /// Tags are validated by the caller; this helper parses `?tag=` values.
    pub fn parse_tags<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<Tag>, RegistryError> {
        values
            .into_iter()
            .map(|t| t.parse().map_err(|e: berth_types::NameError| RegistryError::TagInvalid(e.to_string())))
            .collect()
    }
}

/// Most entries returned by one page when the client asks for `n` (a larger `n` is capped,
/// and a `Link` header leads on). Without `n` every entry is returned in one response, as
/// Distribution and zot do and as scripts expect.
pub const MAX_PAGE: usize = 10_000;

async fn page<F, Fut>(n: Option<usize>, fetch: F) -> Result<(Vec<String>, bool), RegistryError>
where
    F: FnOnce(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, berth_meta::MetaError>>,
{
    let want = match n {
        Some(n) => n.min(MAX_PAGE),
        None => i64::MAX as usize - 1,
    };
    if want == 0 {
        return Ok((Vec::new(), false));
    }
    let mut items = fetch(want as i64 + 1).await?;
    let more = items.len() > want;
    items.truncate(want);
    Ok((items, more))
}
