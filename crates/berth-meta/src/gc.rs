//! Garbage collection's side of the metadata: a read-only snapshot to decide on, and the
//! guarded deletes that carry the decision out; plus the record of collection runs and of
//! schedules.
//!
//! **Safety comes from the guarded deletes, not from the snapshot.** The snapshot may be
//! stale by the time a candidate is deleted: each delete locks the row it removes (PostgreSQL
//! `FOR UPDATE`; SQLite has one writer), then re-checks, in later statements that see every
//! commit made before the lock was granted, that the row is still garbage. The writers that
//! make something live take the matching lock first:
//!
//! | a writer that…                   | locks (`FOR SHARE` / update)       | so a collection…                     |
//! |----------------------------------|------------------------------------|--------------------------------------|
//! | pushes a manifest                | the repository's links to its blobs, its child manifests, its content row, and (re-pushed) its own row | never unlinks a blob or deletes a child it references, nor the manifest it tags; a link already removed makes the push fail with [`MetaError::Gone`] (`BLOB_UNKNOWN`) |
//! | tags a manifest                  | the manifest row                   | never deletes an untagged manifest being tagged |
//! | mounts a blob, links an upload   | the blob row                       | never deletes a blob being linked    |
//! | reserves a blob before its bytes (`pin_blob`) | the blob row (upsert)  | deletes bytes only while holding the row, so bytes written after a pin survive |
//!
//! A blob's bytes are deleted inside the transaction that deletes its row, while the row is
//! locked: a crash in between leaves a row without bytes and without links, which nothing can
//! reach (mounts need a link, uploads write the bytes again) and the next run removes.

use crate::events::{EventKind, NewEvent, insert_events};
use crate::sql::{Backend, SqlMetaStore, placeholders};
use crate::{MetaError, Origin};
use berth_types::{Digest, RepoName};
use futures::future::BoxFuture;
use sqlx::Row;

/// A link of a blob into a repository, as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcLink {
    /// Repository.
    pub repo: String,
    /// Blob digest.
    pub digest: String,
    /// When it was linked (Unix ms).
    pub created_at: i64,
}

/// A manifest, as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcManifest {
    /// Repository.
    pub repo: String,
    /// Digest.
    pub digest: String,
    /// Size of its bytes.
    pub size: i64,
    /// When it was pushed (Unix ms).
    pub created_at: i64,
    /// Its subject, for referrers.
    pub subject: Option<String>,
    /// Does any tag point at it?
    pub tagged: bool,
}

/// A blob, as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcBlob {
    /// Digest.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// When its row was created (Unix ms).
    pub created_at: i64,
    /// Reserved for an upload until then (Unix ms).
    pub pending_until: Option<i64>,
}

/// Everything a collection decides on, read without locks.
#[derive(Debug, Clone, Default)]
pub struct GcSnapshot {
    /// Every blob link.
    pub links: Vec<GcLink>,
    /// Every manifest.
    pub manifests: Vec<GcManifest>,
    /// Every reference `(repo, manifest, child, kind)`; kind is `blob` or `manifest`.
    pub refs: Vec<(String, String, String, String)>,
    /// Every blob row.
    pub blobs: Vec<GcBlob>,
}

/// Deletes a batch of blobs' bytes; called with the blobs' rows locked.
pub type DeleteBytes<'a> = &'a (dyn Fn(Vec<Digest>) -> BoxFuture<'static, Result<(), String>> + Send + Sync);

/// One recorded collection run (Harbor's "GC history").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcRunRecord {
    /// Sequential id.
    pub id: i64,
    /// `Manual` or `Schedule`.
    pub kind: String,
    /// The parameters as JSON (`delete_untagged`, `dry_run`, `time_window`, `workers`).
    pub parameters: String,
    /// `Pending`, `Running`, `Success`, `Error` or `Stopped`.
    pub status: String,
    /// When it was asked for (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
    /// The outcome as JSON, once finished.
    pub result: Option<String>,
    /// The run's log.
    pub log: String,
}

/// A stored schedule: when a periodic task (e.g. `gc`) runs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// Which task (`gc`).
    pub name: String,
    /// Harbor's schedule type: `None`, `Hourly`, `Daily`, `Weekly`, `Custom`.
    pub kind: String,
    /// Six-field cron (seconds first), when scheduled.
    pub cron: Option<String>,
    /// The task's parameters as JSON.
    pub parameters: String,
    /// Next due time (Unix ms), when scheduled.
    pub next_at: Option<i64>,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last changed (Unix ms).
    pub updated_at: i64,
}

/// Garbage collection's store.
#[async_trait::async_trait]
pub trait GcStore: Send + Sync + 'static {
    /// Read every link, manifest, reference and blob row (no locks; may be stale at once).
    async fn gc_snapshot(&self) -> Result<GcSnapshot, MetaError>;
    /// Delete the untagged manifest `digest` of `repo` if it still is garbage: pushed before
    /// `cutoff`, no tag, no index of the repository lists it, and not a referrer of a
    /// manifest still there. Logs `artifact.deleted`. Returns whether it was deleted.
    async fn gc_delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        cutoff: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError>;
    /// Remove those links, linked before `cutoff`, that no manifest of their repository
    /// references; returns the ones removed.
    async fn gc_unlink(&self, links: &[(RepoName, Digest)], cutoff: i64) -> Result<Vec<(RepoName, Digest)>, MetaError>;
    /// Delete those blobs that are still garbage (no link, created before `cutoff`, not
    /// reserved at `now`): `delete_bytes` is called with them while their rows are locked,
    /// then the rows go. Returns the blobs deleted with their sizes.
    async fn gc_delete_blobs(
        &self,
        digests: &[Digest],
        cutoff: i64,
        now: i64,
        delete_bytes: DeleteBytes<'_>,
    ) -> Result<Vec<(Digest, i64)>, MetaError>;
    /// Delete manifest bytes, scan reports and inventories of digests no repository holds as
    /// a manifest any more; returns how many manifest contents were deleted.
    async fn gc_orphan_content(&self) -> Result<usize, MetaError>;

    /// Hold the fence `name` until `until` (Unix ms), replacing an expired holder. While the
    /// `gc` fence is held, [`GcStore::gc_delete_blobs`] deletes nothing (a backup copying the
    /// blobs of its snapshot holds it). Returns false if someone else holds it.
    async fn hold_fence(&self, name: &str, holder: &str, until: i64, now: i64) -> Result<bool, MetaError>;
    /// Release a fence held by `holder`.
    async fn release_fence(&self, name: &str, holder: &str) -> Result<(), MetaError>;

    /// Record a new run; returns its id.
    async fn create_gc_run(&self, kind: &str, parameters: &str, now: i64) -> Result<i64, MetaError>;
    /// Update a run's status (and, when given, result and log), logging `event` with it.
    async fn update_gc_run(
        &self,
        id: i64,
        status: &str,
        result: Option<&str>,
        log: Option<&str>,
        now: i64,
        event: Option<&NewEvent>,
    ) -> Result<(), MetaError>;
    /// One run.
    async fn gc_run(&self, id: i64) -> Result<Option<GcRunRecord>, MetaError>;
    /// Runs, newest first, and how many there are.
    async fn gc_runs(&self, offset: i64, limit: i64) -> Result<(Vec<GcRunRecord>, i64), MetaError>;

    /// A schedule by name.
    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, MetaError>;
    /// Create or replace a schedule.
    async fn put_schedule(&self, s: &ScheduleRecord) -> Result<(), MetaError>;
    /// Claim the due firing of a schedule: moves `next_at` from `due` to `next` if it still is
    /// `due` and `due <= now`. Exactly one replica wins each firing.
    async fn claim_schedule(&self, name: &str, due: i64, next: Option<i64>, now: i64) -> Result<bool, MetaError>;
}

impl SqlMetaStore {
    pub(crate) fn lock_rows(&self) -> &'static str {
        match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}

fn run_from_row(r: &sqlx::any::AnyRow) -> Result<GcRunRecord, MetaError> {
    Ok(GcRunRecord {
        id: r.try_get("id")?,
        kind: r.try_get("run_kind")?,
        parameters: r.try_get("parameters")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        result: r.try_get("result")?,
        log: r.try_get("log")?,
    })
}

const RUN_COLUMNS: &str = "id, run_kind, parameters, status, created_at, updated_at, result, log";

#[async_trait::async_trait]
impl GcStore for SqlMetaStore {
    async fn gc_snapshot(&self) -> Result<GcSnapshot, MetaError> {
        let pool = self.pool();
        let mut snap = GcSnapshot::default();
        for r in sqlx::query("SELECT repo, digest, created_at FROM repo_blobs").fetch_all(pool).await? {
            snap.links.push(GcLink {
                repo: r.try_get("repo")?,
                digest: r.try_get("digest")?,
                created_at: r.try_get("created_at")?,
            });
        }
        for r in sqlx::query(
            "SELECT m.repo, m.digest, m.size, m.created_at, m.subject,
             EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest) AS tagged
             FROM manifests m",
        )
        .fetch_all(pool)
        .await?
        {
            snap.manifests.push(GcManifest {
                repo: r.try_get("repo")?,
                digest: r.try_get("digest")?,
                size: r.try_get("size")?,
                created_at: r.try_get("created_at")?,
                subject: r.try_get("subject")?,
                tagged: match self.backend() {
                    Backend::Postgres => r.try_get::<bool, _>("tagged")?,
                    Backend::Sqlite => r.try_get::<i64, _>("tagged")? != 0,
                },
            });
        }
        for r in sqlx::query("SELECT repo, digest, child, kind FROM manifest_refs").fetch_all(pool).await? {
            snap.refs.push((r.try_get("repo")?, r.try_get("digest")?, r.try_get("child")?, r.try_get("kind")?));
        }
        for r in sqlx::query("SELECT digest, size, created_at, pending_until FROM blobs").fetch_all(pool).await? {
            snap.blobs.push(GcBlob {
                digest: r.try_get("digest")?,
                size: r.try_get("size")?,
                created_at: r.try_get("created_at")?,
                pending_until: r.try_get("pending_until")?,
            });
        }
        Ok(snap)
    }

    async fn gc_delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        cutoff: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let d = digest.to_string();
        let row = sqlx::query(&format!(
            "SELECT created_at, subject, size FROM manifests WHERE repo = $1 AND digest = $2{}",
            self.lock_rows()
        ))
        .bind(repo.as_str())
        .bind(&d)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let created_at: i64 = row.try_get("created_at")?;
        let subject: Option<String> = row.try_get("subject")?;
        if created_at >= cutoff {
            return Ok(false);
        }
        // Later statements: they see whatever committed before the lock was granted.
        let tagged: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tags WHERE repo = $1 AND digest = $2 LIMIT 1")
            .bind(repo.as_str())
            .bind(&d)
            .fetch_optional(&mut *tx)
            .await?;
        let listed: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM manifest_refs r JOIN manifests m ON m.repo = r.repo AND m.digest = r.digest
             WHERE r.repo = $1 AND r.child = $2 AND r.kind = 'manifest' LIMIT 1",
        )
        .bind(repo.as_str())
        .bind(&d)
        .fetch_optional(&mut *tx)
        .await?;
        let subject_there: Option<i64> = match &subject {
            Some(s) => {
                sqlx::query_scalar("SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2")
                    .bind(repo.as_str())
                    .bind(s)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        if tagged.is_some() || listed.is_some() || subject_there.is_some() {
            return Ok(false);
        }
        for q in [
            "DELETE FROM manifest_refs WHERE repo = $1 AND digest = $2",
            "DELETE FROM manifests WHERE repo = $1 AND digest = $2",
            "DELETE FROM artifact_labels WHERE repo = $1 AND digest = $2",
        ] {
            sqlx::query(q).bind(repo.as_str()).bind(&d).execute(&mut *tx).await?;
        }
        let size: i64 = row.try_get("size")?;
        crate::quota::adjust(&mut tx, repo.as_str(), &d, size, -1, crate::now_ms()).await?;
        crate::sql::count_manifests(&mut tx, repo.as_str(), -1).await?;
        let e = NewEvent::new(EventKind::ArtifactDeleted, crate::now_ms(), origin)
            .repo(repo.as_str())
            .digest(&d)
            .data(serde_json::json!({ "tags": [], "untagged": true }));
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn gc_unlink(&self, links: &[(RepoName, Digest)], cutoff: i64) -> Result<Vec<(RepoName, Digest)>, MetaError> {
        let mut sorted: Vec<&(RepoName, Digest)> = links.iter().collect();
        sorted.sort_by(|a, b| (a.0.as_str(), a.1.to_string()).cmp(&(b.0.as_str(), b.1.to_string())));
        let mut removed = Vec::new();
        let mut tx = self.begin_write().await?;
        let mut locked = Vec::new();
        for (repo, digest) in sorted {
            let at: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT created_at FROM repo_blobs WHERE repo = $1 AND digest = $2{}",
                self.lock_rows()
            ))
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if matches!(at, Some(t) if t < cutoff) {
                locked.push((repo, digest));
            }
        }
        for (repo, digest) in locked {
            let used: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM manifest_refs WHERE repo = $1 AND child = $2 LIMIT 1")
                    .bind(repo.as_str())
                    .bind(digest.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            if used.is_some() {
                continue;
            }
            sqlx::query("DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2")
                .bind(repo.as_str())
                .bind(digest.to_string())
                .execute(&mut *tx)
                .await?;
            crate::sql::unlinked(&mut tx, repo.as_str(), &digest.to_string()).await?;
            removed.push((repo.clone(), digest.clone()));
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn gc_delete_blobs(
        &self,
        digests: &[Digest],
        cutoff: i64,
        now: i64,
        delete_bytes: DeleteBytes<'_>,
    ) -> Result<Vec<(Digest, i64)>, MetaError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let fenced: Option<String> = sqlx::query_scalar(&format!(
            "SELECT holder FROM fences WHERE name = 'gc' AND until_at > $1{}",
            self.lock_rows()
        ))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(holder) = fenced {
            return Err(MetaError::Conflict(format!("{holder} holds the garbage-collection fence: blobs are kept")));
        }
        let sql = format!(
            "SELECT digest, size, created_at, pending_until FROM blobs WHERE digest IN ({}) ORDER BY digest{}",
            placeholders(1, digests.len()),
            self.lock_rows()
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d.to_string());
        }
        let mut garbage: Vec<(String, i64)> = Vec::new();
        for r in q.fetch_all(&mut *tx).await? {
            let created_at: i64 = r.try_get("created_at")?;
            let pending: Option<i64> = r.try_get("pending_until")?;
            if created_at < cutoff && pending.is_none_or(|p| p < now) {
                garbage.push((r.try_get("digest")?, r.try_get("size")?));
            }
        }
        if garbage.is_empty() {
            return Ok(Vec::new());
        }
        let sql =
            format!("SELECT DISTINCT digest FROM repo_blobs WHERE digest IN ({})", placeholders(1, garbage.len()));
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for (d, _) in &garbage {
            q = q.bind(d);
        }
        let linked: std::collections::HashSet<String> = q.fetch_all(&mut *tx).await?.into_iter().collect();
        garbage.retain(|(d, _)| !linked.contains(d));
        let mut out = Vec::with_capacity(garbage.len());
        for (d, size) in &garbage {
            out.push((d.parse::<Digest>().map_err(|e| MetaError::Corrupt(format!("blob digest {d:?}: {e}")))?, *size));
        }
        if out.is_empty() {
            return Ok(out);
        }
        delete_bytes(out.iter().map(|(d, _)| d.clone()).collect()).await.map_err(MetaError::Corrupt)?;
        let sql = format!("DELETE FROM blobs WHERE digest IN ({})", placeholders(1, garbage.len()));
        let mut q = sqlx::query(&sql);
        for (d, _) in &garbage {
            q = q.bind(d);
        }
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn gc_orphan_content(&self) -> Result<usize, MetaError> {
        let mut total = 0;
        loop {
            let candidates: Vec<String> = sqlx::query_scalar(
                "SELECT c.digest FROM manifest_content c
                 WHERE NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = c.digest) LIMIT 500",
            )
            .fetch_all(self.pool())
            .await?;
            if candidates.is_empty() {
                return Ok(total);
            }
            let mut tx = self.begin_write().await?;
            let list = placeholders(1, candidates.len());
            let lock = format!(
                "SELECT digest FROM manifest_content WHERE digest IN ({list}) ORDER BY digest{}",
                self.lock_rows()
            );
            let deletes: Vec<String> = ["manifest_content", "scan_reports", "inventories"]
                .iter()
                .map(|table| {
                    format!(
                        "DELETE FROM {table} WHERE digest IN ({list})
                         AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = {table}.digest)"
                    )
                })
                .collect();
            let mut q = sqlx::query(&lock);
            for d in &candidates {
                q = q.bind(d);
            }
            q.fetch_all(&mut *tx).await?;
            let mut gone = 0;
            for (i, sql) in deletes.iter().enumerate() {
                let mut q = sqlx::query(sql);
                for d in &candidates {
                    q = q.bind(d);
                }
                let n = q.execute(&mut *tx).await?.rows_affected() as usize;
                if i == 0 {
                    gone = n;
                }
            }
            tx.commit().await?;
            total += gone;
            if gone == 0 {
                // Everything left is being written right now; the next run takes it.
                return Ok(total);
            }
        }
    }

    async fn hold_fence(&self, name: &str, holder: &str, until: i64, now: i64) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM fences WHERE name = $1 AND (until_at <= $2 OR holder = $3)")
            .bind(name)
            .bind(now)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("INSERT INTO fences (name, holder, until_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(holder)
            .bind(until)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn release_fence(&self, name: &str, holder: &str) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM fences WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn create_gc_run(&self, kind: &str, parameters: &str, now: i64) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO gc_runs (run_kind, parameters, status, created_at, updated_at, log)
             VALUES ($1, $2, 'Pending', $3, $3, '') RETURNING id",
        )
        .bind(kind)
        .bind(parameters)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn update_gc_run(
        &self,
        id: i64,
        status: &str,
        result: Option<&str>,
        log: Option<&str>,
        now: i64,
        event: Option<&NewEvent>,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE gc_runs SET status = $2, result = COALESCE($3, result), log = COALESCE($4, log), updated_at = $5
             WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(result)
        .bind(log)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(e) = event {
            insert_events(&mut tx, self.backend(), std::slice::from_ref(e)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn gc_run(&self, id: i64) -> Result<Option<GcRunRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM gc_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn gc_runs(&self, offset: i64, limit: i64) -> Result<(Vec<GcRunRecord>, i64), MetaError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gc_runs").fetch_one(self.pool()).await?;
        let rows = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM gc_runs ORDER BY id DESC LIMIT $1 OFFSET $2"))
            .bind(limit)
            .bind(offset)
            .fetch_all(self.pool())
            .await?;
        Ok((rows.iter().map(run_from_row).collect::<Result<_, _>>()?, total))
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, MetaError> {
        let row = sqlx::query(
            "SELECT name, kind, cron, parameters, next_at, created_at, updated_at FROM schedules WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(ScheduleRecord {
                name: r.try_get("name")?,
                kind: r.try_get("kind")?,
                cron: r.try_get("cron")?,
                parameters: r.try_get("parameters")?,
                next_at: r.try_get("next_at")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    async fn put_schedule(&self, s: &ScheduleRecord) -> Result<(), MetaError> {
        sqlx::query(
            "INSERT INTO schedules (name, kind, cron, parameters, next_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, cron = excluded.cron,
             parameters = excluded.parameters, next_at = excluded.next_at, updated_at = excluded.updated_at",
        )
        .bind(&s.name)
        .bind(&s.kind)
        .bind(&s.cron)
        .bind(&s.parameters)
        .bind(s.next_at)
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn claim_schedule(&self, name: &str, due: i64, next: Option<i64>, now: i64) -> Result<bool, MetaError> {
        if due > now {
            return Ok(false);
        }
        let n = sqlx::query("UPDATE schedules SET next_at = $3 WHERE name = $1 AND next_at = $2")
            .bind(name)
            .bind(due)
            .bind(next)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n == 1)
    }
}
