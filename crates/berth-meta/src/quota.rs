//! Per-project storage quotas that never drift.
//!
//! A project's usage is the size of every distinct object (blob or manifest, by digest) that
//! any of its repositories holds, each counted once. `quota_objects` keeps, per project and
//! digest, how many links (repository ↔ blob, repository ↔ manifest) hold it; `quotas` keeps
//! the sum and the limit. Both change **in the same transaction** as the link that causes
//! it ([`adjust`], called by every write that adds or removes a link), so usage cannot lag or
//! drift, and the limit is checked there too: a write that would take the project over its
//! limit fails with [`MetaError::QuotaExceeded`] and changes nothing. (An event consumer
//! would lag behind pushes, and a push checked against a lagging figure overshoots.)
//! [`QuotaStore::verify_quotas`] recomputes everything from the links and can rewrite it.

use std::collections::{BTreeMap, HashMap};

use crate::MetaError;
use crate::sql::{Backend, SqlMetaStore};
use sqlx::Row;

/// A project's quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRecord {
    /// Project name.
    pub project: String,
    /// Limit in bytes; `-1` is unlimited.
    pub hard: i64,
    /// Bytes used.
    pub used: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// What `verify_quotas` found for one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCheck {
    /// Project name.
    pub project: String,
    /// Usage as stored.
    pub stored: i64,
    /// Usage recomputed from the links.
    pub computed: i64,
    /// Objects whose stored link count was wrong (or missing, or extra).
    pub objects_off: u64,
}

/// The project a repository belongs to (its first path component).
pub fn project_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// The share of a project's limit at which usage is worth a warning (Harbor's 85 %).
pub const WARN_PERCENT: i64 = 85;

/// Add (`delta` 1) or remove (`delta` -1) one link of `digest` (`size` bytes) in `repo`'s
/// project, inside the caller's transaction. When the first link adds the object's bytes,
/// the project's limit is checked.
pub(crate) async fn adjust(
    db: &mut impl crate::exec::Exec,
    repo: &str,
    digest: &str,
    size: i64,
    delta: i64,
    now: i64,
) -> Result<(), MetaError> {
    use crate::exec::args;
    let project = project_of(repo);
    let refs: i64 = if delta > 0 {
        db.query_one(
            "INSERT INTO quota_objects (project, digest, size, refs) VALUES ($1, $2, $3, 1)
             ON CONFLICT (project, digest) DO UPDATE SET refs = quota_objects.refs + 1 RETURNING refs",
            args![project, digest, size],
        )
        .await?
    } else {
        let left: Option<i64> = db
            .query_opt(
                "UPDATE quota_objects SET refs = refs - 1 WHERE project = $1 AND digest = $2 RETURNING refs",
                args![project, digest],
            )
            .await?;
        match left {
            Some(0) => {
                db.exec("DELETE FROM quota_objects WHERE project = $1 AND digest = $2", args![project, digest]).await?;
                0
            }
            Some(n) => n,
            // Not counted (cannot happen unless the tables were edited by hand): nothing to take.
            None => return Ok(()),
        }
    };
    // Only the first link adds the object's bytes, only the last one removes them.
    let change = match (delta > 0, refs) {
        (true, 1) => size,
        (false, 0) => -size,
        _ => return Ok(()),
    };
    let (hard, used): (i64, i64) = db
        .query_one(
            "INSERT INTO quotas (project, hard, used, updated_at) VALUES ($1, -1, $2, $3)
             ON CONFLICT (project) DO UPDATE SET used = quotas.used + excluded.used, updated_at = excluded.updated_at
             RETURNING hard, used",
            args![project, change, now],
        )
        .await?;
    // Crossing 85 % of the limit is an event (webhooks' QUOTA_WARNING), once per crossing.
    if change > 0
        && hard > 0
        && used <= hard
        && used * 100 >= hard * WARN_PERCENT
        && (used - change) * 100 < hard * WARN_PERCENT
    {
        let details = format!(
            "quota usage reached {WARN_PERCENT}%: project {project} uses {} of {}",
            berth_types::human_bytes(used as u64),
            berth_types::human_bytes(hard as u64)
        );
        let e = crate::NewEvent::new(crate::EventKind::QuotaWarning, now, &crate::Origin::system())
            .repo(repo)
            .digest(digest)
            .data(serde_json::json!({ "details": details }));
        let backend = db.backend();
        crate::events::insert_events(db, backend, &[e]).await?;
    }
    if change > 0 && hard >= 0 && used > hard {
        return Err(MetaError::QuotaExceeded {
            project: project.to_owned(),
            limit: hard,
            used: used - change,
            adding: change,
        });
    }
    Ok(())
}

/// One project's usage on one day (UTC), for charge-back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Project.
    pub project: String,
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Storage used at the day's last recorded activity (each object once per project).
    pub stored_bytes: i64,
    /// Bytes uploaded (blobs and manifests).
    pub pushed_bytes: i64,
    /// Blob bytes served.
    pub pulled_bytes: i64,
    /// Manifests pushed.
    pub pushes: i64,
    /// Manifests pulled.
    pub pulls: i64,
}

/// Quotas (and the usage rows metering keeps beside them).
#[async_trait::async_trait]
pub trait QuotaStore: Send + Sync + 'static {
    /// Usage rows of `project` (every project when `None`) for days `from..=to`, by project
    /// and day.
    async fn usage(&self, project: Option<&str>, from: i64, to: i64) -> Result<Vec<UsageRecord>, MetaError>;
    /// One project's quota (usage 0 and no limit if nothing was ever stored).
    async fn quota(&self, project: &str) -> Result<QuotaRecord, MetaError>;
    /// Every stored quota, by project name.
    async fn quotas(&self) -> Result<Vec<QuotaRecord>, MetaError>;
    /// Does the project already hold (and count) this object?
    async fn project_holds(&self, project: &str, digest: &str) -> Result<bool, MetaError>;
    /// Set a project's limit (`-1`: unlimited). A limit below current usage is allowed (as
    /// in Harbor): nothing is deleted, further pushes that add bytes are refused.
    async fn set_quota_limit(&self, project: &str, hard: i64, now: i64) -> Result<(), MetaError>;
    /// Recompute every project's usage from its links and compare with what is stored; with
    /// `fix`, rewrite what differs (atomically with respect to pushes).
    async fn verify_quotas(&self, fix: bool) -> Result<Vec<QuotaCheck>, MetaError>;
}

fn record(r: &sqlx::any::AnyRow) -> Result<QuotaRecord, MetaError> {
    Ok(QuotaRecord {
        project: r.try_get("project")?,
        hard: r.try_get("hard")?,
        used: r.try_get("used")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[async_trait::async_trait]
impl QuotaStore for SqlMetaStore {
    async fn quota(&self, project: &str) -> Result<QuotaRecord, MetaError> {
        let row: Option<(String, i64, i64, i64)> = self
            .read_opt(
                "SELECT project, hard, used, updated_at FROM quotas WHERE project = $1",
                crate::exec::args![project],
            )
            .await?;
        Ok(match row {
            Some((project, hard, used, updated_at)) => QuotaRecord { project, hard, used, updated_at },
            None => QuotaRecord { project: project.to_owned(), hard: -1, used: 0, updated_at: 0 },
        })
    }

    async fn quotas(&self) -> Result<Vec<QuotaRecord>, MetaError> {
        let rows = sqlx::query("SELECT project, hard, used, updated_at FROM quotas ORDER BY project")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(record).collect()
    }

    async fn usage(&self, project: Option<&str>, from: i64, to: i64) -> Result<Vec<UsageRecord>, MetaError> {
        let rows = sqlx::query(
            "SELECT project, day, stored_bytes, pushed_bytes, pulled_bytes, pushes, pulls FROM usage_daily
             WHERE ($1 = '' OR project = $1) AND day >= $2 AND day <= $3 ORDER BY project, day",
        )
        .bind(project.unwrap_or(""))
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRecord {
                    project: r.try_get("project")?,
                    day: r.try_get("day")?,
                    stored_bytes: r.try_get("stored_bytes")?,
                    pushed_bytes: r.try_get("pushed_bytes")?,
                    pulled_bytes: r.try_get("pulled_bytes")?,
                    pushes: r.try_get("pushes")?,
                    pulls: r.try_get("pulls")?,
                })
            })
            .collect()
    }

    async fn project_holds(&self, project: &str, digest: &str) -> Result<bool, MetaError> {
        let found: Option<i64> = self
            .read_opt(
                "SELECT 1 FROM quota_objects WHERE project = $1 AND digest = $2",
                crate::exec::args![project, digest],
            )
            .await?;
        Ok(found.is_some())
    }

    async fn set_quota_limit(&self, project: &str, hard: i64, now: i64) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO quotas (project, hard, used, updated_at) VALUES ($1, $2, 0, $3)
             ON CONFLICT (project) DO UPDATE SET hard = excluded.hard, updated_at = excluded.updated_at",
        )
        .bind(project)
        .bind(hard.max(-1))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn verify_quotas(&self, fix: bool) -> Result<Vec<QuotaCheck>, MetaError> {
        let mut tx = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // Freeze links, manifests and the figures kept from them while we count (every
            // writer of these tables waits; an administrator's occasional check).
            sqlx::query("LOCK TABLE repo_blobs, manifests, quota_objects, quotas IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        // (project, digest) → (size, links), from the links themselves.
        let mut truth: HashMap<(String, String), (i64, i64)> = HashMap::new();
        for sql in [
            "SELECT l.repo AS repo, l.digest AS digest, b.size AS size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest",
            "SELECT repo, digest, size FROM manifests",
        ] {
            for r in sqlx::query(sql).fetch_all(&mut *tx).await? {
                let repo: String = r.try_get("repo")?;
                let e = truth
                    .entry((project_of(&repo).to_owned(), r.try_get("digest")?))
                    .or_insert((r.try_get("size")?, 0));
                e.1 += 1;
            }
        }
        let mut stored: HashMap<(String, String), (i64, i64)> = HashMap::new();
        for r in sqlx::query("SELECT project, digest, size, refs FROM quota_objects").fetch_all(&mut *tx).await? {
            stored.insert((r.try_get("project")?, r.try_get("digest")?), (r.try_get("size")?, r.try_get("refs")?));
        }
        let mut usage: BTreeMap<String, QuotaCheck> = BTreeMap::new();
        let entry = |usage: &mut BTreeMap<String, QuotaCheck>, p: &str| {
            usage.entry(p.to_owned()).or_insert_with(|| QuotaCheck {
                project: p.to_owned(),
                stored: 0,
                computed: 0,
                objects_off: 0,
            });
        };
        for r in sqlx::query("SELECT project, used FROM quotas").fetch_all(&mut *tx).await? {
            let p: String = r.try_get("project")?;
            entry(&mut usage, &p);
            if let Some(c) = usage.get_mut(&p) {
                c.stored = r.try_get("used")?;
            }
        }
        for ((p, d), (size, links)) in &truth {
            entry(&mut usage, p);
            if let Some(c) = usage.get_mut(p) {
                c.computed += size;
                if stored.get(&(p.clone(), d.clone())) != Some(&(*size, *links)) {
                    c.objects_off += 1;
                }
            }
        }
        for (p, d) in stored.keys() {
            if !truth.contains_key(&(p.clone(), d.clone())) {
                entry(&mut usage, p);
                if let Some(c) = usage.get_mut(p) {
                    c.objects_off += 1;
                }
            }
        }
        if fix {
            let now = crate::now_ms();
            for c in usage.values().filter(|c| c.stored != c.computed || c.objects_off > 0) {
                sqlx::query("DELETE FROM quota_objects WHERE project = $1").bind(&c.project).execute(&mut *tx).await?;
                for ((p, d), (size, links)) in truth.iter().filter(|((p, _), _)| p == &c.project) {
                    sqlx::query("INSERT INTO quota_objects (project, digest, size, refs) VALUES ($1, $2, $3, $4)")
                        .bind(p)
                        .bind(d)
                        .bind(size)
                        .bind(links)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "INSERT INTO quotas (project, hard, used, updated_at) VALUES ($1, -1, $2, $3)
                     ON CONFLICT (project) DO UPDATE SET used = excluded.used, updated_at = excluded.updated_at",
                )
                .bind(&c.project)
                .bind(c.computed)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(usage.into_values().collect())
    }
}
