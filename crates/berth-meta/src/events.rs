//! The event log: a durable, ordered record of every state change (a transactional outbox).
//!
//! A change and its events are written in **one transaction** (a manifest push, its tags and
//! `artifact.pushed` commit together or not at all), so a consumer can never see an event
//! for a change that did not happen, nor miss one that did. Events that are not changes of
//! stored state (pulls, logins) are appended in batches by their own writer.
//!
//! Consumers ([`EventLog::advance_consumer`]) read the log after a stored cursor and apply
//! their [`Effect`]s *in the same transaction* as the cursor move, so a consumer killed at any
//! point resumes where it stopped with no effect lost or applied twice. Two processes running
//! the same consumer cannot both apply a batch: the cursor moves only from the value the
//! batch was read after (compare-and-set).
//!
//! **Order:** `seq` grows with commit order. SQLite has one writer at a time; on PostgreSQL a
//! transaction takes a transaction-scoped advisory lock just before it inserts its events,
//! so a transaction holding a lower `seq` has always committed (or rolled back) before a
//! higher one is assigned. A reader that has seen `seq` n has seen everything below n that
//! will ever exist. (Gaps are possible, from rolled-back transactions; they are never filled.)
//!
//! Tables:
//! ```text
//! events         seq (serial) | at | kind | actor | client_ip | project | repo | digest | tag | data (JSON)
//! event_cursors  consumer (PK) | seq (last applied) | updated_at
//! ```

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::MetaError;
use crate::access::{AuditRecord, insert_audit};
use crate::jobs::{NewJob, insert_job};
use crate::sql::{Backend, SqlMetaStore};

/// The advisory lock that orders event inserts on PostgreSQL.
const EVENT_ORDER_LOCK: i64 = 727_275;

/// Who made a change: the name the audit log shows, and where the request came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// User or robot name, `anonymous`, `operator`, or `system` for Berth's own jobs.
    pub actor: String,
    /// The client's address, when the change came over the network.
    pub client_ip: Option<String>,
}

impl Origin {
    /// A change made by Berth itself (jobs, start-up).
    pub fn system() -> Origin {
        Origin { actor: "system".into(), client_ip: None }
    }

    /// A change made by `actor` from `client_ip`.
    pub fn new(actor: impl Into<String>, client_ip: Option<String>) -> Origin {
        Origin { actor: actor.into(), client_ip }
    }
}

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What happened. Stored as its dotted name (`artifact.pushed`); the set only grows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }
        }

        impl std::str::FromStr for EventKind {
            type Err = MetaError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(EventKind::$variant),)*
                    other => Err(MetaError::Corrupt(format!("unknown event kind {other:?}"))),
                }
            }
        }
    };
}

event_kinds! {
    /// A manifest was pushed (`digest`; `tag` when pushed by tag; `data.tags`, `data.media_type`).
    ArtifactPushed => "artifact.pushed",
    /// Manifests were pulled (`digest`; `tag` when pulled by tag; `data.count` pulls, last at `at`).
    ArtifactPulled => "artifact.pulled",
    /// A manifest and its tags were deleted (`digest`).
    ArtifactDeleted => "artifact.deleted",
    /// A tag was created (`tag` → `digest`).
    TagCreated => "tag.created",
    /// A tag moved to another manifest (`tag` → `digest`; `data.from` the old digest).
    TagMoved => "tag.moved",
    /// A tag was deleted (`tag`; `digest` it pointed at).
    TagDeleted => "tag.deleted",
    /// A blob was unlinked from a repository (`digest`).
    BlobDeleted => "blob.deleted",
    /// An empty repository was created (ECR's CreateRepository; pushes create theirs silently).
    RepositoryCreated => "repository.created",
    /// A repository was deleted with everything in it.
    RepositoryDeleted => "repository.deleted",
    /// A project was created (`project`; `data.public`, `data.metadata`).
    ProjectCreated => "project.created",
    /// A project's visibility or settings changed (`project`).
    ProjectUpdated => "project.updated",
    /// A project was deleted (`project`).
    ProjectDeleted => "project.deleted",
    /// A project member was added, changed or removed (`project`; `data.op`, `data.member`).
    MemberChanged => "member.changed",
    /// A robot account was created, changed, given a new secret or deleted (`data.op`, `data.name`).
    RobotChanged => "robot.changed",
    /// A user was created, changed or deleted (`data.op`, `data.name`).
    UserChanged => "user.changed",
    /// A repository policy was set or removed (`repo`; `data.op`).
    PolicyChanged => "policy.changed",
    /// A registry endpoint was created, changed or deleted (`data.op`, `data.id`, `data.name`).
    RegistryChanged => "registry.changed",
    /// A vulnerability scan finished (`digest`; `data.status`).
    ScanCompleted => "scan.completed",
    /// Somebody asked for a scan (`digest`; `data.sbom`); the scan consumer queues the job.
    ScanRequested => "scan.requested",
    /// A CVE allowlist was replaced (`project`, none for the system's; `data.count`).
    AllowlistChanged => "allowlist.changed",
    /// An access key was created, activated, deactivated or deleted (`data.op`, `data.id`,
    /// `data.account`).
    AccessKeyChanged => "access_key.changed",
    /// Settings were changed at run time (`data.changed`: the keys and values set;
    /// `data.settings`: every runtime setting after the change).
    SettingsChanged => "settings.changed",
    /// A job was stopped by an administrator (`data.id`, `data.kind`).
    JobStopped => "job.stopped",
    /// Audit entries were purged (`data.count`, `data.before`, `data.operations`).
    AuditPurged => "audit.purged",
    /// Blob bytes were uploaded (`repo`; `data.bytes`, `data.count`: aggregated per second).
    BlobPushed => "blob.pushed",
    /// Blob bytes were served (`repo`; `data.bytes`, `data.count`: aggregated per second).
    BlobPulled => "blob.pulled",
    /// A blob's stored bytes failed verification and it was quarantined (`digest`; `data.reason`).
    BlobQuarantined => "blob.quarantined",
    /// A garbage collection finished (`data`: the run's id, what it freed, whether a dry run).
    GcCompleted => "gc.completed",
    /// A login succeeded (`actor`; `data.how`).
    LoginSucceeded => "login.succeeded",
    /// A login failed (`actor` is the name tried; `data.detail`).
    LoginFailed => "login.failed",
    /// A push was refused for the project's storage quota (`repo`, `digest` when known;
    /// `data.details`).
    QuotaExceeded => "quota.exceeded",
    /// A project's storage usage crossed 85 % of its limit (`repo`, `digest`; `data.details`).
    QuotaWarning => "quota.warning",
    /// A replication run ended (`project`: a local project it copied from or into; `data`:
    /// Harbor's `replication` webhook object).
    ReplicationFinished => "replication.finished",
    /// A tag retention run ended (`project`; `data`: Harbor's `retention` webhook object).
    RetentionFinished => "retention.finished",
    /// An image without a valid signature was pulled under a `warn` signature policy
    /// (`repo`, `digest`; `data.status` unsigned or invalid, `data.reason`).
    SignatureUnverified => "signature.unverified",
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// When (Unix ms).
    pub at: i64,
    /// Who did it.
    pub origin: Origin,
    /// The project concerned.
    pub project: Option<String>,
    /// The repository concerned (full name).
    pub repo: Option<String>,
    /// The manifest or blob digest concerned.
    pub digest: Option<String>,
    /// The tag concerned.
    pub tag: Option<String>,
    /// Details, by kind.
    pub data: serde_json::Value,
}

impl NewEvent {
    /// An event of `kind` at `at` by `origin`, with nothing else filled in.
    pub fn new(kind: EventKind, at: i64, origin: &Origin) -> NewEvent {
        NewEvent {
            kind,
            at,
            origin: origin.clone(),
            project: None,
            repo: None,
            digest: None,
            tag: None,
            data: serde_json::Value::Null,
        }
    }

    /// Concerning repository `repo` (and its project, the first path component).
    pub fn repo(mut self, repo: &str) -> NewEvent {
        self.project = Some(repo.split('/').next().unwrap_or(repo).to_owned());
        self.repo = Some(repo.to_owned());
        self
    }

    /// Concerning project `project`.
    pub fn project(mut self, project: &str) -> NewEvent {
        self.project = Some(project.to_owned());
        self
    }

    /// Concerning `digest`.
    pub fn digest(mut self, digest: impl ToString) -> NewEvent {
        self.digest = Some(digest.to_string());
        self
    }

    /// Concerning `tag`.
    pub fn tag(mut self, tag: impl ToString) -> NewEvent {
        self.tag = Some(tag.to_string());
        self
    }

    /// With details.
    pub fn data(mut self, data: serde_json::Value) -> NewEvent {
        self.data = data;
        self
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Position in the log (grows with commit order; gaps possible).
    pub seq: i64,
    /// The event.
    pub event: NewEvent,
}

/// What `berth events list` asks for.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only these kinds (empty: all).
    pub kinds: Vec<EventKind>,
    /// Only this project.
    pub project: Option<String>,
    /// Only this repository.
    pub repo: Option<String>,
    /// Only by this actor.
    pub actor: Option<String>,
    /// Only events after this `seq`.
    pub after: Option<i64>,
    /// Only events at or after this time (Unix ms).
    pub since: Option<i64>,
    /// At most this many, newest first.
    pub limit: i64,
}

/// A consumer's effect on the metadata database, applied atomically with its cursor move.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Append an audit log entry.
    Audit(AuditRecord),
    /// Count `count` pulls of `repo` (and of manifest `digest`), the last at `at`.
    Pulls {
        /// Repository.
        repo: String,
        /// Manifest pulled, if known.
        digest: Option<String>,
        /// The tag it was pulled by, if any.
        tag: Option<String>,
        /// How many pulls.
        count: i64,
        /// When the last one happened (Unix ms).
        at: i64,
    },
    /// Enqueue a job (de-duplicated by its key as usual).
    Job(NewJob),
    /// Create a webhook delivery (skipped if this policy, event and target already have one).
    Webhook(crate::webhook::NewWebhookDelivery),
    /// Add to a project's usage of one day (UTC days since the epoch), and record the
    /// project's storage usage then.
    Usage {
        /// Project.
        project: String,
        /// Day.
        day: i64,
        /// Bytes uploaded (blobs and manifests).
        pushed_bytes: i64,
        /// Bytes served (blobs).
        pulled_bytes: i64,
        /// Manifests pushed.
        pushes: i64,
        /// Manifests pulled.
        pulls: i64,
        /// Is `day` today? Only then is the stored figure (today's usage) recorded: a consumer
        /// catching up on older events must not write today's figure into past days.
        today: bool,
    },
}

/// A consumer's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerCursor {
    /// Consumer name.
    pub consumer: String,
    /// Last `seq` applied.
    pub seq: i64,
    /// When it last moved (Unix ms).
    pub updated_at: i64,
}

/// The event log. Contract checked by [`crate::conformance::run_events`].
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Append events that are not part of another change (pulls, logins), in one transaction.
    async fn append_events(&self, events: &[NewEvent]) -> Result<(), MetaError>;
    /// Up to `limit` events with `seq > after`, in `seq` order.
    async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<EventRecord>, MetaError>;
    /// The highest `seq` committed so far (0 when the log is empty).
    async fn last_event_seq(&self) -> Result<i64, MetaError>;
    /// Events matching `q`, newest first.
    async fn query_events(&self, q: &EventQuery) -> Result<Vec<EventRecord>, MetaError>;
    /// Where `consumer` stands (0 when it never ran).
    async fn consumer_cursor(&self, consumer: &str) -> Result<i64, MetaError>;
    /// Every consumer's position.
    async fn consumer_cursors(&self) -> Result<Vec<ConsumerCursor>, MetaError>;
    /// Apply `effects` and move `consumer` from `from` to `to`, in one transaction. Returns
    /// `false` (and applies nothing) if the cursor was not at `from`: another process took
    /// this batch.
    async fn advance_consumer(
        &self,
        consumer: &str,
        from: i64,
        to: i64,
        effects: &[Effect],
        now: i64,
    ) -> Result<bool, MetaError>;
    /// Delete events older than `before` (Unix ms); returns how many.
    async fn prune_events(&self, before: i64) -> Result<u64, MetaError>;
}

/// Insert `events` inside the caller's transaction (the only way events are written).
pub(crate) async fn insert_events(
    db: &mut impl crate::exec::Exec,
    backend: Backend,
    events: &[NewEvent],
) -> Result<(), MetaError> {
    if events.is_empty() {
        return Ok(());
    }
    if backend == Backend::Postgres {
        // Held until commit: sequence numbers are handed out in commit order (module doc).
        db.exec("SELECT pg_advisory_xact_lock($1)", crate::exec::args![EVENT_ORDER_LOCK]).await?;
    }
    for chunk in events.chunks(100) {
        let rows = crate::sql::value_rows(backend, chunk.len(), 9);
        let sql = format!(
            "INSERT INTO events (at, kind, actor, client_ip, project, repo, digest, tag, data) VALUES {}",
            rows
        );
        let data: Vec<String> = chunk.iter().map(|e| e.data.to_string()).collect();
        let mut binds = Vec::with_capacity(chunk.len() * 9);
        for (e, data) in chunk.iter().zip(&data) {
            binds.extend(crate::exec::args![
                e.at,
                e.kind.as_str(),
                &e.origin.actor,
                &e.origin.client_ip,
                &e.project,
                &e.repo,
                &e.digest,
                &e.tag,
                data,
            ]);
        }
        db.exec(&sql, &binds).await?;
    }
    Ok(())
}

const EVENT_COLS: &str = "seq, at, kind, actor, client_ip, project, repo, digest, tag, data";

fn event_from_row(r: &AnyRow) -> Result<EventRecord, MetaError> {
    let kind: String = r.try_get("kind")?;
    let data: String = r.try_get("data")?;
    Ok(EventRecord {
        seq: r.try_get("seq")?,
        event: NewEvent {
            kind: kind.parse()?,
            at: r.try_get("at")?,
            origin: Origin { actor: r.try_get("actor")?, client_ip: r.try_get("client_ip")? },
            project: r.try_get("project")?,
            repo: r.try_get("repo")?,
            digest: r.try_get("digest")?,
            tag: r.try_get("tag")?,
            data: serde_json::from_str(&data).map_err(|e| MetaError::Corrupt(format!("event data: {e}")))?,
        },
    })
}

/// Most events [`EventCache`] keeps.
const EVENT_CACHE_MAX: usize = 10_000;

/// The log's recent reads, shared by this process's readers: half a dozen consumers and the
/// change follower read every event, and under a pull load over many images each of them
/// decoded every row through sqlx (`perf`: row decoding and its allocations were the largest
/// part of that work after the writes). A read is kept as a *run*: what a read after `from`
/// returned, every event after `from` up to its last as the database had them then. The log
/// only grows at its end, in commit order (SQLite's one writer; PostgreSQL's event lock), so
/// nothing can appear later inside a run: a read after any `seq` inside one takes the run's
/// events, and only what follows its end from the database. Pruning empties it.
#[derive(Debug, Default)]
pub(crate) struct EventCache {
    runs: std::sync::Mutex<std::collections::VecDeque<(i64, std::sync::Arc<[EventRecord]>)>>,
}

impl EventCache {
    /// Up to `limit` events after `after`, if a run holds the next one (never empty).
    pub(crate) fn get(&self, after: i64, limit: i64) -> Option<Vec<EventRecord>> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let (_, run) =
            runs.iter().rev().find(|(from, run)| *from <= after && run.last().is_some_and(|l| l.seq > after))?;
        let start = run.partition_point(|e| e.seq <= after);
        Some(run[start..].iter().take(usize::try_from(limit).unwrap_or(0)).cloned().collect())
    }

    /// Keep what a read after `from` returned (nothing when it is empty), dropping the oldest
    /// runs past [`EVENT_CACHE_MAX`] events.
    pub(crate) fn put(&self, from: i64, events: &[EventRecord]) {
        if events.is_empty() || events.len() > EVENT_CACHE_MAX {
            return;
        }
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.push_back((from, events.into()));
        let mut held: usize = runs.iter().map(|(_, r)| r.len()).sum();
        while held > EVENT_CACHE_MAX {
            let Some((_, old)) = runs.pop_front() else { break };
            held -= old.len();
        }
    }

    /// Forget every run (the log was pruned).
    pub(crate) fn clear(&self) {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Move `consumer`'s cursor from `from` to `to` (compare-and-set) and apply its effects; nothing
/// is applied (and the caller rolls back) if the cursor was not at `from`.
async fn advance_in(
    db: &mut impl crate::exec::Exec,
    consumer: &str,
    from: i64,
    to: i64,
    effects: &[Effect],
    now: i64,
) -> Result<bool, MetaError> {
    use crate::exec::args;
    db.exec(
        "INSERT INTO event_cursors (consumer, seq, updated_at) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING",
        args![consumer, now],
    )
    .await?;
    let moved = db
        .exec(
            "UPDATE event_cursors SET seq = $3, updated_at = $4 WHERE consumer = $1 AND seq = $2",
            args![consumer, from, to, now],
        )
        .await?;
    if moved == 0 {
        return Ok(false);
    }
    apply_effects(db, effects, now).await?;
    Ok(true)
}

/// Apply a batch's effects in order; runs of audit entries and of pull counts are written
/// together (a few statements for a batch of thousands of pulls, not three per pull).
async fn apply_effects(db: &mut impl crate::exec::Exec, effects: &[Effect], now: i64) -> Result<(), MetaError> {
    let mut i = 0;
    while i < effects.len() {
        let run = effects[i..].iter().take_while(|e| std::mem::discriminant(*e) == std::mem::discriminant(&effects[i]));
        let n = run.count();
        match &effects[i] {
            Effect::Audit(_) => {
                let entries: Vec<AuditRecord> = effects[i..i + n]
                    .iter()
                    .filter_map(|e| match e {
                        Effect::Audit(a) => Some(a.clone()),
                        _ => None,
                    })
                    .collect();
                insert_audit(db, &entries).await?;
            }
            Effect::Pulls { .. } => apply_pulls(db, &effects[i..i + n]).await?,
            _ => {
                for e in &effects[i..i + n] {
                    apply_effect(db, e, now).await?;
                }
            }
        }
        i += n;
    }
    Ok(())
}

/// Add pull counts and times: per repository, manifest and tag, summed over the batch, in
/// multi-row `UPDATE … FROM (VALUES …)` statements.
async fn apply_pulls(db: &mut impl crate::exec::Exec, pulls: &[Effect]) -> Result<(), MetaError> {
    use std::collections::BTreeMap;
    let mut repos: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut manifests: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    let mut tags: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    let add = |e: &mut (i64, i64), count: i64, at: i64| {
        e.0 += count;
        e.1 = e.1.max(at);
    };
    for p in pulls {
        if let Effect::Pulls { repo, digest, tag, count, at } = p {
            add(repos.entry(repo).or_default(), *count, *at);
            if let Some(d) = digest {
                add(manifests.entry((repo, d)).or_default(), *count, *at);
            }
            if let Some(t) = tag {
                add(tags.entry((repo, t)).or_default(), *count, *at);
            }
        }
    }
    // The most recent pull wins: `pull_time` only moves forward. Sorted keys: concurrent writers (PostgreSQL) take row locks in one order.
    let later = |t: &str| {
        format!("CASE WHEN {t}.pull_time IS NULL OR {t}.pull_time < v.column4 THEN v.column4 ELSE {t}.pull_time END")
    };
    let repo_rows: Vec<(&str, &str, i64, i64)> = repos.iter().map(|(r, (n, at))| (*r, "", *n, *at)).collect();
    let sql = format!(
        "UPDATE repositories SET pull_count = repositories.pull_count + v.column3, pull_time = {} FROM (VALUES {{}}) \
         AS v WHERE repositories.name = v.column1",
        later("repositories")
    );
    update_from_values(db, &sql, &repo_rows).await?;
    let rows: Vec<(&str, &str, i64, i64)> = manifests.iter().map(|((r, d), (n, at))| (*r, *d, *n, *at)).collect();
    let sql = format!(
        "UPDATE manifests SET pull_count = manifests.pull_count + v.column3, pull_time = {} FROM (VALUES {{}}) \
         AS v WHERE manifests.repo = v.column1 AND manifests.digest = v.column2",
        later("manifests")
    );
    update_from_values(db, &sql, &rows).await?;
    let rows: Vec<(&str, &str, i64, i64)> = tags.iter().map(|((r, t), (n, at))| (*r, *t, *n, *at)).collect();
    let sql = format!(
        "UPDATE tags SET pull_time = {} FROM (VALUES {{}}) AS v WHERE tags.repo = v.column1 AND tags.name = v.column2",
        later("tags")
    );
    update_from_values(db, &sql, &rows).await
}

/// Run `sql` (with `{}` where the `VALUES` rows go) over `rows` of (text, text, bigint,
/// bigint), as many rows a statement as [`crate::sql::MAX_BINDS`] allows.
async fn update_from_values(
    db: &mut impl crate::exec::Exec,
    sql: &str,
    rows: &[(&str, &str, i64, i64)],
) -> Result<(), MetaError> {
    let backend = db.backend();
    for chunk in rows.chunks(crate::sql::MAX_BINDS / 4) {
        let values = crate::sql::value_rows_of(backend, chunk.len(), 4, |col, p| {
            if col < 2 { p } else { format!("CAST({p} AS BIGINT)") }
        });
        let sql = sql.replace("{}", &values);
        let mut binds = Vec::with_capacity(chunk.len() * 4);
        for (k1, k2, n, at) in chunk {
            binds.extend(crate::exec::args![*k1, *k2, *n, *at]);
        }
        db.exec(&sql, &binds).await?;
    }
    Ok(())
}

async fn apply_effect(db: &mut impl crate::exec::Exec, effect: &Effect, now: i64) -> Result<(), MetaError> {
    match effect {
        Effect::Audit(a) => insert_audit(db, std::slice::from_ref(a)).await,
        Effect::Pulls { .. } => apply_pulls(db, std::slice::from_ref(effect)).await,
        Effect::Job(job) => insert_job(db, job, now).await.map(drop),
        Effect::Webhook(d) => crate::webhook::insert_delivery(db, d).await,
        Effect::Usage { project, day, pushed_bytes, pulled_bytes, pushes, pulls, today } => {
            db.exec(
                "INSERT INTO usage_daily (project, day, stored_bytes, pushed_bytes, pulled_bytes, pushes, pulls)
                 VALUES ($1, $2, COALESCE((SELECT used FROM quotas WHERE project = $1), 0), $3, $4, $5, $6)
                 ON CONFLICT (project, day) DO UPDATE SET
                   stored_bytes = CASE WHEN $7 = 1 THEN excluded.stored_bytes ELSE usage_daily.stored_bytes END,
                   pushed_bytes = usage_daily.pushed_bytes + excluded.pushed_bytes,
                   pulled_bytes = usage_daily.pulled_bytes + excluded.pulled_bytes,
                   pushes = usage_daily.pushes + excluded.pushes,
                   pulls = usage_daily.pulls + excluded.pulls",
                crate::exec::args![project, *day, *pushed_bytes, *pulled_bytes, *pushes, *pulls, i64::from(*today)],
            )
            .await?;
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl EventLog for SqlMetaStore {
    async fn append_events(&self, events: &[NewEvent]) -> Result<(), MetaError> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(w) = self.writer() {
            let events = events.to_vec();
            return w.run(move |db| crate::exec::ready(insert_events(db, Backend::Sqlite, &events))).await;
        }
        let mut tx = self.begin_write().await?;
        insert_events(&mut tx, self.backend(), events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<EventRecord>, MetaError> {
        // What the cache holds, then the rest from the database (kept for the other readers).
        let (mut out, mut after) = (Vec::new(), after);
        while (out.len() as i64) < limit {
            let Some(part) = self.event_cache().get(after, limit - out.len() as i64) else { break };
            after = part.last().map_or(after, |e| e.seq);
            out.extend(part);
        }
        if out.len() as i64 >= limit {
            return Ok(out);
        }
        let rows = sqlx::query(&format!("SELECT {EVENT_COLS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"))
            .bind(after)
            .bind(limit - out.len() as i64)
            .fetch_all(self.pool())
            .await?;
        let rest = rows.iter().map(event_from_row).collect::<Result<Vec<_>, _>>()?;
        self.event_cache().put(after, &rest);
        out.extend(rest);
        Ok(out)
    }

    async fn last_event_seq(&self) -> Result<i64, MetaError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events").fetch_one(self.pool()).await?;
        Ok(n.unwrap_or(0))
    }

    async fn query_events(&self, q: &EventQuery) -> Result<Vec<EventRecord>, MetaError> {
        let mut clauses = Vec::new();
        let mut strs: Vec<String> = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if !q.kinds.is_empty() {
            let ps: Vec<String> = q.kinds.iter().map(|_| format!("${}", next())).collect();
            clauses.push(format!("kind IN ({})", ps.join(", ")));
            strs.extend(q.kinds.iter().map(|k| k.as_str().to_owned()));
        }
        for (col, v) in [("project", &q.project), ("repo", &q.repo), ("actor", &q.actor)] {
            if let Some(v) = v {
                clauses.push(format!("{col} = ${}", next()));
                strs.push(v.clone());
            }
        }
        let mut ints = Vec::new();
        if let Some(a) = q.after {
            clauses.push(format!("seq > ${}", next()));
            ints.push(a);
        }
        if let Some(s) = q.since {
            clauses.push(format!("at >= ${}", next()));
            ints.push(s);
        }
        let filter = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
        let sql = format!("SELECT {EVENT_COLS} FROM events{filter} ORDER BY seq DESC LIMIT ${}", next());
        let mut query = sqlx::query(&sql);
        for s in &strs {
            query = query.bind(s);
        }
        for i in &ints {
            query = query.bind(i);
        }
        let rows = query.bind(q.limit.max(1)).fetch_all(self.pool()).await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn consumer_cursor(&self, consumer: &str) -> Result<i64, MetaError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT seq FROM event_cursors WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(self.pool())
            .await?;
        Ok(n.unwrap_or(0))
    }

    async fn consumer_cursors(&self) -> Result<Vec<ConsumerCursor>, MetaError> {
        let rows = sqlx::query("SELECT consumer, seq, updated_at FROM event_cursors ORDER BY consumer")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ConsumerCursor {
                    consumer: r.try_get("consumer")?,
                    seq: r.try_get("seq")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn advance_consumer(
        &self,
        consumer: &str,
        from: i64,
        to: i64,
        effects: &[Effect],
        now: i64,
    ) -> Result<bool, MetaError> {
        if let Some(w) = self.writer() {
            // A cursor that was not at `from` moved nothing and applied nothing.
            let (consumer, effects) = (consumer.to_owned(), effects.to_vec());
            return w.run(move |db| crate::exec::ready(advance_in(db, &consumer, from, to, &effects, now))).await;
        }
        let mut tx = self.begin_write().await?;
        let moved = advance_in(&mut tx, consumer, from, to, effects, now).await?;
        if moved {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(moved)
    }

    async fn prune_events(&self, before: i64) -> Result<u64, MetaError> {
        let pruned =
            sqlx::query("DELETE FROM events WHERE at < $1").bind(before).execute(self.pool()).await?.rows_affected();
        self.event_cache().clear();
        Ok(pruned)
    }
}

/// Why a consumer could not compute its effects (the batch is retried later).
pub type ConsumerError = Box<dyn std::error::Error + Send + Sync>;

/// A reader of the event log with a durable cursor (run by `berth_jobs::run_consumer`).
///
/// `effects` may be called more than once for the same events (after a crash, or on two
/// replicas at once); only one call's effects are ever applied, atomically with the cursor.
#[async_trait::async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// The name its cursor is stored under.
    fn name(&self) -> &str;
    /// The effects of `events` (in `seq` order).
    async fn effects(&self, events: &[EventRecord]) -> Result<Vec<Effect>, ConsumerError>;
}

/// Most distinct pending entries an [`EventBuffer`] holds; past it, new ones are dropped
/// (and counted) until a flush succeeds, so a database outage cannot grow memory.
pub const EVENT_BUFFER_MAX: usize = 50_000;

/// What pulls are aggregated by: (repository, digest, tag, actor, client address).
type PullKey = (String, String, Option<String>, String, Option<String>);

/// A failed login's key: who was tried, from where, and why it failed.
type FailureKey = (String, Option<String>, String);

/// Pending appended events: pulls aggregated by [`PullKey`] and failed logins by
/// [`FailureKey`] into (count, latest time), everything else in order.
#[derive(Default)]
struct Pending {
    pulls: std::collections::HashMap<PullKey, (i64, i64)>,
    /// (kind, repository) → (bytes, count, latest time).
    transfers: std::collections::HashMap<(EventKind, String), (i64, i64, i64)>,
    failures: std::collections::HashMap<FailureKey, (i64, i64)>,
    other: Vec<NewEvent>,
    dropped: u64,
}

impl Pending {
    fn len(&self) -> usize {
        self.pulls.len() + self.failures.len() + self.transfers.len() + self.other.len()
    }

    fn take(&mut self) -> Vec<NewEvent> {
        let mut out = std::mem::take(&mut self.other);
        for ((kind, repo), (bytes, count, at)) in self.transfers.drain() {
            out.push(
                NewEvent::new(kind, at, &Origin::system())
                    .repo(&repo)
                    .data(serde_json::json!({ "bytes": bytes, "count": count })),
            );
        }
        for ((actor, ip, detail), (count, at)) in self.failures.drain() {
            out.push(
                NewEvent::new(EventKind::LoginFailed, at, &Origin { actor, client_ip: ip })
                    .data(serde_json::json!({ "detail": detail, "count": count })),
            );
        }
        for ((repo, digest, tag, actor, ip), (count, at)) in self.pulls.drain() {
            let mut e = NewEvent::new(EventKind::ArtifactPulled, at, &Origin { actor, client_ip: ip })
                .repo(&repo)
                .digest(digest)
                .data(serde_json::json!({ "count": count }));
            e.tag = tag;
            out.push(e);
        }
        out.sort_by_key(|e| e.at);
        out
    }
}

/// A batching writer for events that are not part of a stored change (pulls, logins): a
/// pull must not cost a synchronous write. Entries are appended about once a second (or
/// sooner when many are waiting), in one transaction; repeated pulls of one artifact by one
/// client in that time are one `artifact.pulled` event with a count, and repeated failed logins
/// of one name from one address for one reason one `login.failed` with a count; at most
/// 50,000 distinct entries wait (more are counted as dropped), so a flood cannot grow memory
/// or the database faster than that per second. Entries still pending
/// when the process is killed are lost; what was appended is not.
#[derive(Clone)]
pub struct EventBuffer {
    pending: std::sync::Arc<std::sync::Mutex<Pending>>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    flushed: std::sync::Arc<tokio::sync::Notify>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl EventBuffer {
    /// Start the writer task over `log`, flushing every `interval`.
    pub fn start(log: std::sync::Arc<dyn EventLog>, interval: std::time::Duration) -> EventBuffer {
        let buffer = EventBuffer {
            pending: Default::default(),
            wake: Default::default(),
            flushed: Default::default(),
            generation: Default::default(),
        };
        let b = buffer.clone();
        // The task holds only weak references, so it ends with the last `EventBuffer`.
        let (pending, wake) = (std::sync::Arc::downgrade(&b.pending), b.wake.clone());
        let (flushed, generation) = (b.flushed.clone(), b.generation.clone());
        drop(b);
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(interval, wake.notified()).await;
                let Some(pending) = pending.upgrade() else { return };
                let (events, dropped) = {
                    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                    (p.take(), std::mem::take(&mut p.dropped))
                };
                drop(pending);
                if dropped > 0 {
                    tracing::warn!(dropped, "event buffer was full: pull and login events were dropped");
                }
                if let Err(e) = log.append_events(&events).await {
                    tracing::warn!(error = %e, lost = events.len(), "failed to append pull and login events");
                }
                generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                flushed.notify_waiters();
            }
        });
        buffer
    }

    /// Queue an event; pulls are aggregated.
    pub fn push(&self, e: NewEvent) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let full = p.len() >= EVENT_BUFFER_MAX;
        if e.kind == EventKind::ArtifactPulled {
            let key = (
                e.repo.clone().unwrap_or_default(),
                e.digest.clone().unwrap_or_default(),
                e.tag.clone(),
                e.origin.actor.clone(),
                e.origin.client_ip.clone(),
            );
            let n = e.data.get("count").and_then(serde_json::Value::as_i64).unwrap_or(1);
            match p.pulls.get_mut(&key) {
                Some((count, at)) => {
                    *count += n;
                    *at = (*at).max(e.at);
                }
                None if full => p.dropped += 1,
                None => {
                    p.pulls.insert(key, (n, e.at));
                }
            }
        } else if matches!(e.kind, EventKind::BlobPushed | EventKind::BlobPulled) {
            // Byte counts for metering: one event per repository and second.
            let bytes = e.data.get("bytes").and_then(serde_json::Value::as_i64).unwrap_or(0);
            match p.transfers.get_mut(&(e.kind, e.repo.clone().unwrap_or_default())) {
                Some((b, count, at)) => {
                    *b += bytes;
                    *count += 1;
                    *at = (*at).max(e.at);
                }
                None if full => p.dropped += 1,
                None => {
                    p.transfers.insert((e.kind, e.repo.clone().unwrap_or_default()), (bytes, 1, e.at));
                }
            }
        } else if e.kind == EventKind::LoginFailed {
            // A flood of failures from one place is one event per second with a count.
            let detail = e.data.get("detail").and_then(|d| d.as_str()).unwrap_or("").to_owned();
            let key = (e.origin.actor.clone(), e.origin.client_ip.clone(), detail);
            match p.failures.get_mut(&key) {
                Some((count, at)) => {
                    *count += 1;
                    *at = (*at).max(e.at);
                }
                None if full => p.dropped += 1,
                None => {
                    p.failures.insert(key, (1, e.at));
                }
            }
        } else if full {
            p.dropped += 1;
        } else {
            p.other.push(e);
        }
        if p.len() >= EVENT_BUFFER_MAX / 2 {
            self.wake.notify_one();
        }
    }

    /// Entries waiting to be written (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Write what is pending now and wait for it.
    pub async fn flush(&self) {
        let start = self.generation.load(std::sync::atomic::Ordering::Acquire);
        loop {
            let done = self.flushed.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            // Two rounds: the one running now may have started before this call.
            if self.generation.load(std::sync::atomic::Ordering::Acquire) >= start + 2 {
                return;
            }
            self.wake.notify_one();
            done.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: std::ops::RangeInclusive<i64>) -> Vec<EventRecord> {
        seqs.map(|seq| EventRecord { seq, event: NewEvent::new(EventKind::LoginFailed, seq, &Origin::system()) })
            .collect()
    }

    fn seqs(events: Option<Vec<EventRecord>>) -> Option<Vec<i64>> {
        events.map(|e| e.iter().map(|e| e.seq).collect())
    }

    #[test]
    fn the_event_cache_answers_only_inside_what_was_read() {
        let cache = EventCache::default();
        cache.put(10, &run(11..=15));
        // Inside the run: its events after the cursor, up to the limit.
        assert_eq!(seqs(cache.get(10, 100)), Some(vec![11, 12, 13, 14, 15]));
        assert_eq!(seqs(cache.get(12, 2)), Some(vec![13, 14]));
        // Before the run (it says nothing of 10 and earlier) and at its end: the database's.
        assert_eq!(seqs(cache.get(9, 100)), None);
        assert_eq!(seqs(cache.get(15, 100)), None);
        // Gaps in the numbering inside a run are the database's gaps.
        cache.put(15, &[run(16..=16), run(20..=21)].concat());
        assert_eq!(seqs(cache.get(16, 100)), Some(vec![20, 21]));
        // Pruning forgets everything.
        cache.clear();
        assert_eq!(seqs(cache.get(12, 100)), None);
    }

    #[test]
    fn the_event_cache_holds_a_bounded_number_of_events() {
        let cache = EventCache::default();
        let size = EVENT_CACHE_MAX as i64 / 4;
        for k in 0..10 {
            cache.put(k * size, &run(k * size + 1..=(k + 1) * size));
        }
        let held: usize = cache.runs.lock().unwrap().iter().map(|(_, r)| r.len()).sum();
        assert_eq!(held, EVENT_CACHE_MAX);
        // The oldest runs went, the newest stayed.
        assert_eq!(seqs(cache.get(0, 1)), None);
        assert_eq!(seqs(cache.get(9 * size, 1)), Some(vec![9 * size + 1]));
        // A read larger than the whole cache is not kept.
        cache.put(0, &run(1..=EVENT_CACHE_MAX as i64 + 1));
        assert_eq!(seqs(cache.get(0, 1)), None);
    }
}
