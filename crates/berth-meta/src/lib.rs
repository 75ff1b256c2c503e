//! Registry metadata for Berth: the [`MetaStore`] trait, its SQL implementation
//! [`SqlMetaStore`] (embedded SQLite, or PostgreSQL), and the [`conformance`] suite every
//! backend must pass.
//!
//! Metadata is what makes content *visible*: a blob is served from a repository only when
//! the repository links it here, a manifest only when its row exists, a tag only when it
//! points at a manifest. Every multi-row change (a manifest with its references and tag) is
//! one transaction, so a crash leaves either all of it or none.
//!
//! Manifest bytes are stored here too (table `manifest_content`), not in the blob store: a
//! manifest push is then one transaction and one fsync, and a pull one query.
//!
//! SQL is kept portable (SQLite and PostgreSQL, through sqlx's `Any` driver): `$n`
//! placeholders, `BIGINT`/`TEXT` columns, `ON CONFLICT`, no backend-specific functions; the
//! few DDL differences are placeholders in `schema.rs`. Times are Unix milliseconds.
//!
//! ```no_run
//! # async fn f() -> Result<(), berth_meta::MetaError> {
//! use berth_meta::{MetaStore, SqlMetaStore};
//! let meta = SqlMetaStore::open_sqlite("/tmp/berth/meta.db").await?;
//! let repo: berth_types::RepoName = "library/app".parse().unwrap();
//! assert!(meta.list_tags(&repo, None, 100).await?.is_empty());
//! # Ok(()) }
//! ```

mod access;
pub mod conformance;
mod events;
mod exec;
mod fastread;
mod gc;
mod jobs;
mod label;
mod policy;
mod quota;
mod replication;
mod scan;
mod schema;
mod signature;
mod sql;
pub mod synthetic;
mod upstream;
mod webhook;
mod writer;

use berth_types::{Digest, RepoName, Tag};

pub use access::{
    AUDIT_MERGE_WINDOW_MS, AccessKeyRecord, AccessStore, AuditPurge, AuditQuery, AuditRecord, MemberEntity,
    MemberRecord, NewUser, ProjectRecord, RobotRecord, SigningKeyRecord, UserGroupRecord, UserRecord,
};
pub use events::{
    Consumer, ConsumerCursor, ConsumerError, EVENT_BUFFER_MAX, Effect, EventBuffer, EventKind, EventLog, EventQuery,
    EventRecord, NewEvent, Origin,
};
pub use gc::{DeleteBytes, GcBlob, GcLink, GcManifest, GcRunRecord, GcSnapshot, GcStore, ScheduleRecord};
pub use jobs::{JobQueue, JobRecord, JobState, NewJob};
pub use label::{LabelRecord, LabelStore};
pub use policy::{GuardedDelete, PolicyRecord, PolicyRunRecord, PolicyStore};
pub use quota::{QuotaCheck, QuotaRecord, QuotaStore, UsageRecord, project_of};
pub use replication::{ReplicationExecutionRecord, ReplicationPolicyRecord, ReplicationStore, ReplicationTaskRecord};
pub use scan::{ExportRecord, ScanRecord, ScanRequest, ScanStore, VulnSource};
pub use signature::{SignaturePolicyRecord, SignatureStore};
pub use sql::SqlMetaStore;
pub use upstream::{CacheRule, UpstreamRecord, UpstreamStore};
pub use webhook::{DeliveryOutcome, NewWebhookDelivery, WebhookDeliveryRecord, WebhookPolicyRecord, WebhookStore};

/// Milliseconds since the Unix epoch.
/// How long [`MetaStore::pin_blob`] protects a blob whose bytes an upload is committing. A
/// commit takes milliseconds on a filesystem and seconds on S3; one that takes longer fails
/// safely (`Gone`).
pub const PIN_LEASE_MS: i64 = 60 * 60 * 1000;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Errors of a metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database failed.
    #[error("metadata database: {0}")]
    Db(sqlx::Error),
    /// The database cannot be reached (down, restarting, out of connections): nothing was
    /// changed, and the same request may succeed shortly. Every surface answers `503` with
    /// `Retry-After` for it, never an authorization failure.
    #[error("the metadata database is unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read back (corruption or a newer schema).
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// A unique name is already taken.
    #[error("{0}")]
    Conflict(String),
    /// Objects a write refers to are gone (garbage-collected, or deleted) by the time it
    /// committed: nothing was changed; the client uploads them again and retries.
    #[error("referenced content is no longer stored: {}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))]
    Gone(Vec<Digest>),
    /// The write would move an immutable tag: nothing was changed.
    #[error("tag {0} is immutable")]
    TagImmutable(String),
    /// The write would take a project over its storage quota: nothing was changed.
    #[error(
        "this push would exceed project {project}'s storage quota: the limit is {}, {} is used, and this adds {}",
        berth_types::human_bytes(*.limit as u64), berth_types::human_bytes(*.used as u64), berth_types::human_bytes(*.adding as u64)
    )]
    QuotaExceeded {
        /// The project.
        project: String,
        /// Its limit in bytes.
        limit: i64,
        /// Bytes used before this write.
        used: i64,
        /// Bytes this write adds.
        adding: i64,
    },
    /// The disk under the database is full: the transaction was rolled back, nothing
    /// changed, and writes succeed again once there is space (`507` on every surface).
    #[error("the metadata database's disk is full: {0}")]
    StorageFull(String),
}

impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        if is_full(&e) {
            MetaError::StorageFull(e.to_string())
        } else if is_unavailable(&e) {
            MetaError::Unavailable(e.to_string())
        } else {
            MetaError::Db(e)
        }
    }
}

/// Is this the disk being full (SQLite `SQLITE_FULL`, PostgreSQL `disk_full`, `ENOSPC`)?
fn is_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull,
        sqlx::Error::Database(d) => {
            // 4874 is SQLITE_IOERR_SHMSIZE: SQLite grows its `-shm` index by writing to it, and
            // on a full disk (tmpfs above all) that write's ENOSPC surfaces as this, not as
            // SQLITE_FULL.
            d.code().is_some_and(|c| c == "13" || c == "4874" || c == "53100")
                || d.message().contains("database or disk is full")
        }
        _ => false,
    }
}

/// Is this the database being out of reach, rather than a query going wrong?
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::WorkerCrashed => true,
        // PostgreSQL: connection exceptions (08…), shutdown and start-up (57P01–57P03),
        // too many connections (53300).
        sqlx::Error::Database(d) => {
            d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300")
        }
        _ => false,
    }
}

/// How long a request waits for a database connection before it is answered `503`.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1000);

/// A repository with the figures the management API shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSummary {
    /// Full name.
    pub name: String,
    /// First content (Unix ms).
    pub created_at: i64,
    /// Latest manifest push or tag change (Unix ms).
    pub updated_at: i64,
    /// Manifests in it.
    pub artifact_count: i64,
    /// Manifest pulls counted so far.
    pub pull_count: i64,
    /// Latest counted pull (Unix ms), if any.
    pub pull_time: Option<i64>,
}

/// A manifest of a repository with its tags, children and total size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRow {
    /// The manifest.
    pub record: ManifestRecord,
    /// `(tag, updated_at)` pairs pointing at it.
    pub tags: Vec<(String, i64)>,
    /// Child manifests (of an index).
    pub children: Vec<Digest>,
    /// Manifest bytes plus the blobs it references.
    pub total_size: i64,
    /// Latest counted pull (Unix ms), if any.
    pub pull_time: Option<i64>,
    /// Pulls counted (of the manifest, by tag or digest).
    pub pull_count: i64,
    /// Latest counted pull through each of its tags that was pulled (Unix ms).
    pub tag_pull_times: std::collections::BTreeMap<String, i64>,
}

/// What kind of reference a manifest holds to another object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A blob (config or layer).
    Blob,
    /// A child manifest of an index.
    Manifest,
    /// A child manifest of an index that need not be here yet: a pull-through cache stores
    /// an index before the children clients ask for (read back as `Manifest`).
    LaterManifest,
}

impl RefKind {
    fn as_str(self) -> &'static str {
        match self {
            RefKind::Blob => "blob",
            RefKind::Manifest | RefKind::LaterManifest => "manifest",
        }
    }
}

/// A manifest as recorded in metadata (its bytes are in `manifest_content` under `digest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// Digest of the manifest bytes.
    pub digest: Digest,
    /// Media type it was pushed with.
    pub media_type: String,
    /// Effective artifact type (artifactType, else config media type), for referrers.
    pub artifact_type: Option<String>,
    /// Size of the manifest bytes.
    pub size: i64,
    /// The `subject` manifest digest, if any.
    pub subject: Option<Digest>,
    /// Annotations as a JSON object text, for the referrers response.
    pub annotations: Option<String>,
    /// Time it was pushed (Unix ms).
    pub created_at: i64,
}

/// An upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// The session id (also names its bytes in the blob store).
    pub id: String,
    /// The repository it uploads into.
    pub repo: RepoName,
    /// Who started it (user or robot name; `anonymous`, `operator`).
    pub owner: String,
    /// Start time (Unix ms).
    pub created_at: i64,
    /// Last activity (Unix ms).
    pub updated_at: i64,
}

/// Registry metadata: repositories, blob links, manifests, tags, upload sessions.
///
/// Contract (checked by [`conformance::run`]): listing is in byte-wise lexical order; all
/// writes are durable when they return; `put_manifest` is atomic.
#[async_trait::async_trait]
pub trait MetaStore:
    QuotaStore
    + PolicyStore
    + LabelStore
    + UpstreamStore
    + ReplicationStore
    + WebhookStore
    + SignatureStore
    + EventLog
    + Send
    + Sync
    + 'static
{
    /// Reserve a blob before its bytes are committed to the blob store: create its row (or
    /// keep the existing one) and protect it from garbage collection until `until`. Waits for
    /// a collection of the same blob that is deleting its bytes right now, so bytes written
    /// after this returns are never deleted by a collection that started before.
    /// Returns whether the blob is quarantined (its stored bytes are bad: the upload replaces them).
    async fn pin_blob(&self, digest: &Digest, size: i64, now: i64, until: i64) -> Result<bool, MetaError>;
    /// Link a blob reserved by [`MetaStore::pin_blob`] at `pinned_at` (and since committed to
    /// the blob store) into `repo`, creating the repository, and lift its pin. Fails with
    /// [`MetaError::Gone`] when the blob was collected after all (its pin ran out first).
    /// With `ending`, the upload session of that id ends in the same transaction (one durable
    /// write for the two).
    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        pinned_at: i64,
        now: i64,
        ending: Option<&str>,
    ) -> Result<(), MetaError>;
    /// Cross-repository mount: link the blob into `repo` if `from` links it (or, without
    /// `from`, any repository does), atomically with respect to garbage collection. Returns
    /// its size, or `None` when there is nothing to mount.
    async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        now: i64,
    ) -> Result<Option<i64>, MetaError>;
    /// Size of the blob if `repo` links it.
    async fn repo_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<i64>, MetaError> {
        Ok(self.repo_blob_checked(repo, digest).await?.map(|(size, _)| size))
    }
    /// Size of the blob if `repo` links it, and why it is quarantined if it is.
    async fn repo_blob_checked(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<(i64, Option<String>)>, MetaError>;
    /// Up to `limit` linked, unquarantined blobs last verified before `before` (never verified
    /// first), for the scrubber.
    /// Each as `(digest, size, created_at)`.
    async fn scrub_candidates(&self, before: i64, limit: i64) -> Result<Vec<(Digest, i64, i64)>, MetaError>;
    /// Record a scrub's verdict on a blob: verified at `at`, or quarantined for `reason`
    /// (logged as `blob.quarantined`) — only if its row is still the one created at
    /// `created_at` (when given): a blob collected and uploaded again meanwhile is not judged
    /// by the old bytes.
    async fn scrub_verdict(
        &self,
        digest: &Digest,
        created_at: Option<i64>,
        at: i64,
        quarantine: Option<&str>,
    ) -> Result<(), MetaError>;
    /// Quarantined blobs: digest, reason, the repositories linking it.
    async fn quarantined(&self) -> Result<Vec<(Digest, String, Vec<String>)>, MetaError>;
    /// Size of the blob if any repository links it (for mounts without `from`).
    async fn any_blob(&self, digest: &Digest) -> Result<Option<i64>, MetaError>;
    /// Up to `limit` repositories that link blob `digest`, by name (for mounts without
    /// `from`: the first the caller may pull).
    async fn blob_repos(&self, digest: &Digest, limit: usize) -> Result<Vec<RepoName>, MetaError>;
    /// Remove the link from `repo` (event `blob.deleted`); returns whether it existed.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest, origin: &Origin) -> Result<bool, MetaError>;

    /// Sizes of those of `digests` that `repo` links (one query for a whole manifest).
    async fn repo_blob_sizes(&self, repo: &RepoName, digests: &[Digest]) -> Result<Vec<(Digest, i64)>, MetaError>;

    /// Atomically record a manifest with its bytes and references, point `tags` at it, and
    /// log `artifact.pushed` plus `tag.created`/`tag.moved` for each tag that changed.
    async fn put_manifest(
        &self,
        repo: &RepoName,
        m: &ManifestRecord,
        content: &[u8],
        refs: &[(Digest, RefKind)],
        tags: &[Tag],
        origin: &Origin,
    ) -> Result<(), MetaError> {
        self.put_manifest_guarded(repo, m, content, refs, tags, &[], origin).await
    }
    /// [`MetaStore::put_manifest`], refusing ([`MetaError::TagImmutable`], nothing changed)
    /// to move any of `immutable` that already points at another manifest.
    #[allow(clippy::too_many_arguments)]
    async fn put_manifest_guarded(
        &self,
        repo: &RepoName,
        m: &ManifestRecord,
        content: &[u8],
        refs: &[(Digest, RefKind)],
        tags: &[Tag],
        immutable: &[Tag],
        origin: &Origin,
    ) -> Result<(), MetaError>;
    /// The manifest with this digest in `repo`.
    async fn get_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>, MetaError>;
    /// The manifest a tag points at (one query).
    async fn get_tagged_manifest(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>, MetaError>;
    /// Those of `digests` that are manifests of `repo`.
    async fn present_manifests(&self, repo: &RepoName, digests: &[Digest]) -> Result<Vec<Digest>, MetaError>;
    /// The bytes of a manifest, by digest (manifest bytes are immutable, so any repository's row will do).
    async fn manifest_content(&self, digest: &Digest) -> Result<Option<Vec<u8>>, MetaError>;
    /// The digest a tag points at.
    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>, MetaError>;
    /// Delete a manifest and every tag pointing at it (event `artifact.deleted`); returns
    /// whether it existed.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest, origin: &Origin) -> Result<bool, MetaError>;
    /// Point `tag` at the manifest `digest` of `repo` (event `tag.created` or `tag.moved`);
    /// returns false if there is no such manifest.
    async fn put_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        now: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError> {
        self.put_tag_guarded(repo, tag, digest, false, now, origin).await
    }
    /// [`MetaStore::put_tag`]; with `immutable`, refuses ([`MetaError::TagImmutable`]) to
    /// move the tag if it points at another manifest.
    async fn put_tag_guarded(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        immutable: bool,
        now: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError>;

    /// Harbor's immutable tag rules of `project`: `(id, rule JSON)`, by id.
    async fn immutable_rules(&self, project: &str) -> Result<Vec<(i64, String)>, MetaError>;
    /// Create (`id` none; refused with `Conflict` beyond `max` rules) or replace a rule;
    /// returns its id, or `None` when there is no rule `id`. Logs `policy.changed`.
    async fn put_immutable_rule(
        &self,
        project: &str,
        id: Option<i64>,
        rule: &str,
        max: usize,
        origin: &Origin,
    ) -> Result<Option<i64>, MetaError>;
    /// Delete a rule; returns whether it existed. Logs `policy.changed`.
    async fn delete_immutable_rule(&self, project: &str, id: i64, origin: &Origin) -> Result<bool, MetaError>;
    /// ECR's tag mutability setting of a repository (its JSON), if set.
    async fn tag_mutability(&self, repo: &RepoName) -> Result<Option<String>, MetaError>;
    /// Set (or with `None` clear) a repository's tag mutability. Logs `policy.changed`.
    async fn put_tag_mutability(&self, repo: &RepoName, config: Option<&str>, origin: &Origin)
    -> Result<(), MetaError>;
    /// A repository's setting of `kind` (its JSON), if set (see [`RegistryStore::put_repo_setting`]).
    async fn repo_setting(&self, repo: &RepoName, kind: &str) -> Result<Option<String>, MetaError>;
    /// Set (or with `None` clear) a repository's setting of `kind` (`scanning`, `tags`: the
    /// ECR API's per-repository settings); deleted with the repository. Logs `policy.changed`.
    async fn put_repo_setting(
        &self,
        repo: &RepoName,
        kind: &str,
        config: Option<&str>,
        origin: &Origin,
    ) -> Result<(), MetaError>;
    /// Delete one tag (event `tag.deleted`); returns whether it existed.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, origin: &Origin) -> Result<bool, MetaError>;
    /// The indexes of `repo` that list the manifest `digest`.
    async fn parents_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>, MetaError>;
    /// The tags pointing at `digest` in `repo`, by name.
    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>, MetaError>;
    /// Up to `n` tags after `last`, in lexical order.
    async fn list_tags(&self, repo: &RepoName, last: Option<&str>, n: i64) -> Result<Vec<String>, MetaError>;
    /// Manifests whose subject is `subject`, optionally only of one artifact type.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, MetaError>;
    /// Up to `limit` of [`MetaStore::referrers`] (oldest first) after the one pushed at
    /// `after.0` with digest `after.1`, read by an index: the pages of a subject with
    /// thousands of referrers.
    async fn referrers_page(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<(i64, &Digest)>,
        limit: i64,
    ) -> Result<Vec<ManifestRecord>, MetaError>;
    /// Does `repo` exist (has it ever received content that is still there)?
    async fn repo_exists(&self, repo: &RepoName) -> Result<bool, MetaError>;
    /// Up to `n` repository names after `last`, in lexical order.
    async fn list_repos(&self, last: Option<&str>, n: i64) -> Result<Vec<String>, MetaError>;
    /// Repositories of a project (named `project` or `project/…`), by name, with their figures.
    async fn project_repos(&self, project: &str) -> Result<Vec<RepoSummary>, MetaError>;
    /// One page of a project's repositories whose name contains `contains` (empty: all), by
    /// name, and how many there are in all.
    async fn project_repos_page(
        &self,
        project: &str,
        contains: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RepoSummary>, i64), MetaError>;
    /// How many repositories each of `projects` has, in the same order (one query).
    async fn repo_counts(&self, projects: &[String]) -> Result<Vec<i64>, MetaError>;
    /// Every manifest of `repo`, newest first, with tags, children and sizes.
    async fn repo_artifacts(&self, repo: &RepoName) -> Result<Vec<ArtifactRow>, MetaError>;
    /// One page of [`MetaStore::repo_artifacts`] and how many there are, read by an index, when
    /// every artifact of `repo` is listed on its own: no accessories (a subject here, or a
    /// cosign-style `sha256-….sig|att|sbom` tag) and no index children. `None` otherwise: the
    /// caller groups them from the whole list.
    async fn repo_artifacts_page(
        &self,
        repo: &RepoName,
        offset: i64,
        limit: i64,
    ) -> Result<Option<(Vec<ArtifactRow>, i64)>, MetaError>;
    /// Create an empty repository (ECR's CreateRepository; pushes create theirs) and log
    /// `repository.created`; false when it exists.
    async fn create_repo(&self, repo: &RepoName, origin: &Origin) -> Result<bool, MetaError>;
    /// Delete a repository: its manifests, tags, blob links and record (event
    /// `repository.deleted`); returns whether it existed.
    async fn delete_repo(&self, repo: &RepoName, origin: &Origin) -> Result<bool, MetaError>;

    /// Record a new upload session.
    /// Record a new session unless its repository already has `max_per_repo` open sessions
    /// or its owner `max_per_owner`; returns which limit refused it (`"repository"`,
    /// `"account"`), or `None` when it was recorded.
    async fn create_upload(
        &self,
        up: &UploadRecord,
        max_per_repo: u64,
        max_per_owner: u64,
    ) -> Result<Option<&'static str>, MetaError>;
    /// The upload session with this id.
    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, MetaError>;
    /// Mark activity on a session.
    async fn touch_upload(&self, id: &str, now: i64) -> Result<(), MetaError>;
    /// Forget a session; returns whether it existed.
    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError>;
    /// Sessions idle since before `before`.
    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>, MetaError>;
}
