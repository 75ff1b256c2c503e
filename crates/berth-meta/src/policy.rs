//! Stored lifecycle and retention policies and their runs.
//!
//! One table holds every policy document by kind and scope: an ECR lifecycle policy
//! (`lifecycle`, per repository) or a Harbor tag-retention policy (`retention`, per project).
//! Another holds their runs: lifecycle previews and executions, retention executions (dry
//! run or not), each with its outcome as JSON. The documents are opaque here; the policy
//! crate parses them.

use sqlx::Row;

use crate::MetaError;
use crate::events::{NewEvent, insert_events};
use crate::sql::SqlMetaStore;

/// A stored policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    /// Its id (Harbor's retention id).
    pub id: i64,
    /// `lifecycle` or `retention`.
    pub kind: String,
    /// The repository (lifecycle) or project (retention) it governs.
    pub scope: String,
    /// The document as the user gave it.
    pub document: String,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last changed (Unix ms).
    pub updated_at: i64,
    /// Last applied by an execution (Unix ms), if ever.
    pub evaluated_at: Option<i64>,
}

/// A run of a policy: a preview, a dry run or an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRunRecord {
    /// Its id.
    pub id: i64,
    /// The policy's id.
    pub policy_id: i64,
    /// `lifecycle-preview`, `lifecycle` or `retention`.
    pub kind: String,
    /// The repository or project.
    pub scope: String,
    /// `MANUAL`, `SCHEDULE`, `EVENT`.
    pub trigger: String,
    /// Nothing is deleted.
    pub dry_run: bool,
    /// `Pending`, `Running`, `Success`, `Error`, `Stopped`.
    pub status: String,
    /// The policy document the run evaluates (a preview may evaluate a text not stored).
    pub document: String,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last changed (Unix ms).
    pub updated_at: i64,
    /// The outcome, JSON, once finished.
    pub result: Option<String>,
}

/// What a guarded delete of an image found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardedDelete {
    /// Deleted.
    Deleted,
    /// Not there any more.
    Gone,
    /// Kept: it changed since it was evaluated (the reason says how).
    Changed(String),
}

/// Where policies and their runs are kept.
#[async_trait::async_trait]
pub trait PolicyStore: Send + Sync {
    /// The policy of `kind` for `scope`.
    async fn policy(&self, kind: &str, scope: &str) -> Result<Option<PolicyRecord>, MetaError>;
    /// A policy by id.
    async fn policy_by_id(&self, id: i64) -> Result<Option<PolicyRecord>, MetaError>;
    /// Every policy of `kind`, by scope.
    async fn policies(&self, kind: &str) -> Result<Vec<PolicyRecord>, MetaError>;
    /// Create or replace the policy of `kind` for `scope`, logging `event`; returns its id
    /// (kept when replaced).
    async fn put_policy(
        &self,
        kind: &str,
        scope: &str,
        document: &str,
        now: i64,
        event: &NewEvent,
    ) -> Result<i64, MetaError>;
    /// Delete the policy of `kind` for `scope` (and its runs), logging `event`; returns what
    /// was deleted.
    async fn delete_policy(&self, kind: &str, scope: &str, event: &NewEvent)
    -> Result<Option<PolicyRecord>, MetaError>;
    /// Record that the policy `id` was applied at `now`.
    async fn mark_policy_evaluated(&self, id: i64, now: i64) -> Result<(), MetaError>;

    /// Record a new run (`Pending`); returns its id. With `replace`, earlier runs of the same
    /// kind for the policy are deleted first (ECR keeps one preview per repository).
    #[allow(clippy::too_many_arguments)]
    async fn create_policy_run(
        &self,
        policy: &PolicyRecord,
        kind: &str,
        trigger: &str,
        dry_run: bool,
        document: &str,
        replace: bool,
        now: i64,
    ) -> Result<i64, MetaError>;
    /// Update a run's status (and result, when given).
    async fn update_policy_run(&self, id: i64, status: &str, result: Option<&str>, now: i64) -> Result<(), MetaError>;
    /// One run.
    async fn policy_run(&self, id: i64) -> Result<Option<PolicyRunRecord>, MetaError>;
    /// Delete the manifest `digest` of `repo` only if it is exactly as a policy evaluated it:
    /// its tags are `expected_tags` (any order) and no index of the repository lists it. The
    /// check and the delete are one transaction that locks the manifest row, so a tag or an
    /// index pushed meanwhile either lands first (and the image is kept) or after (and fails
    /// as a push of a reference to a deleted manifest does).
    async fn delete_manifest_guarded(
        &self,
        repo: &berth_types::RepoName,
        digest: &berth_types::Digest,
        expected_tags: &[String],
        origin: &crate::Origin,
    ) -> Result<GuardedDelete, MetaError>;

    /// Runs of a policy of `kind`, newest first, and how many there are (without their
    /// results, which can be large: read one run for that).
    async fn policy_runs(
        &self,
        policy_id: i64,
        kind: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<PolicyRunRecord>, i64), MetaError>;
}

const POLICY_COLUMNS: &str = "id, kind, scope, document, created_at, updated_at, evaluated_at";
const RUN_COLUMNS: &str = "r.id, r.policy_id, r.kind, p.scope, r.trigger_kind, r.dry_run, r.status, r.document, r.created_at, r.updated_at, r.result";
/// The same without the result.
const RUN_LIST_COLUMNS: &str = "r.id, r.policy_id, r.kind, p.scope, r.trigger_kind, r.dry_run, r.status, r.document, \
     r.created_at, r.updated_at, CAST(NULL AS TEXT)";

fn policy_from_row(r: &sqlx::any::AnyRow) -> Result<PolicyRecord, MetaError> {
    Ok(PolicyRecord {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        scope: r.try_get(2)?,
        document: r.try_get(3)?,
        created_at: r.try_get(4)?,
        updated_at: r.try_get(5)?,
        evaluated_at: r.try_get(6)?,
    })
}

fn run_from_row(r: &sqlx::any::AnyRow) -> Result<PolicyRunRecord, MetaError> {
    Ok(PolicyRunRecord {
        id: r.try_get(0)?,
        policy_id: r.try_get(1)?,
        kind: r.try_get(2)?,
        scope: r.try_get(3)?,
        trigger: r.try_get(4)?,
        dry_run: r.try_get::<i64, _>(5)? != 0,
        status: r.try_get(6)?,
        document: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
        result: r.try_get(10)?,
    })
}

#[async_trait::async_trait]
impl PolicyStore for SqlMetaStore {
    async fn policy(&self, kind: &str, scope: &str) -> Result<Option<PolicyRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {POLICY_COLUMNS} FROM policies WHERE kind = $1 AND scope = $2"))
            .bind(kind)
            .bind(scope)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    async fn policy_by_id(&self, id: i64) -> Result<Option<PolicyRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {POLICY_COLUMNS} FROM policies WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    async fn policies(&self, kind: &str) -> Result<Vec<PolicyRecord>, MetaError> {
        let rows = sqlx::query(&format!("SELECT {POLICY_COLUMNS} FROM policies WHERE kind = $1 ORDER BY scope"))
            .bind(kind)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(policy_from_row).collect()
    }

    async fn put_policy(
        &self,
        kind: &str,
        scope: &str,
        document: &str,
        now: i64,
        event: &NewEvent,
    ) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO policies (kind, scope, document, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (kind, scope) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(kind)
        .bind(scope)
        .bind(document)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn delete_policy(
        &self,
        kind: &str,
        scope: &str,
        event: &NewEvent,
    ) -> Result<Option<PolicyRecord>, MetaError> {
        let mut tx = self.begin_write().await?;
        let row =
            sqlx::query(&format!("DELETE FROM policies WHERE kind = $1 AND scope = $2 RETURNING {POLICY_COLUMNS}"))
                .bind(kind)
                .bind(scope)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(p) = row.as_ref().map(policy_from_row).transpose()? else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM policy_runs WHERE policy_id = $1").bind(p.id).execute(&mut *tx).await?;
        insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(Some(p))
    }

    async fn mark_policy_evaluated(&self, id: i64, now: i64) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE policies SET evaluated_at = $2 WHERE id = $1").bind(id).bind(now).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_policy_run(
        &self,
        policy: &PolicyRecord,
        kind: &str,
        trigger: &str,
        dry_run: bool,
        document: &str,
        replace: bool,
        now: i64,
    ) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        if replace {
            sqlx::query("DELETE FROM policy_runs WHERE policy_id = $1 AND kind = $2")
                .bind(policy.id)
                .bind(kind)
                .execute(&mut *tx)
                .await?;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO policy_runs (policy_id, kind, trigger_kind, dry_run, status, document, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'Pending', $5, $6, $6) RETURNING id",
        )
        .bind(policy.id)
        .bind(kind)
        .bind(trigger)
        .bind(dry_run as i64)
        .bind(document)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn update_policy_run(&self, id: i64, status: &str, result: Option<&str>, now: i64) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE policy_runs SET status = $2, result = COALESCE($3, result), updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(result)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn policy_run(&self, id: i64) -> Result<Option<PolicyRunRecord>, MetaError> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM policy_runs r JOIN policies p ON p.id = r.policy_id WHERE r.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn delete_manifest_guarded(
        &self,
        repo: &berth_types::RepoName,
        digest: &berth_types::Digest,
        expected_tags: &[String],
        origin: &crate::Origin,
    ) -> Result<GuardedDelete, MetaError> {
        let mut tx = self.begin_write().await?;
        let d = digest.to_string();
        let lock = match self.backend() {
            crate::sql::Backend::Postgres => " FOR UPDATE",
            crate::sql::Backend::Sqlite => "",
        };
        let present: Option<i64> =
            sqlx::query_scalar(&format!("SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2{lock}"))
                .bind(repo.as_str())
                .bind(&d)
                .fetch_optional(&mut *tx)
                .await?;
        if present.is_none() {
            return Ok(GuardedDelete::Gone);
        }
        let mut tags: Vec<String> =
            sqlx::query_scalar(crate::sql::TAGS_OF).bind(repo.as_str()).bind(&d).fetch_all(&mut *tx).await?;
        tags.sort_unstable();
        let mut expected = expected_tags.to_vec();
        expected.sort_unstable();
        if tags != expected {
            return Ok(GuardedDelete::Changed(format!(
                "its tags changed to [{}] since it was evaluated",
                tags.join(", ")
            )));
        }
        let parents: Vec<String> =
            sqlx::query_scalar(crate::sql::PARENTS_OF).bind(repo.as_str()).bind(&d).fetch_all(&mut *tx).await?;
        if let Some(p) = parents.first() {
            return Ok(GuardedDelete::Changed(format!("the index {p} lists it")));
        }
        crate::sql::delete_manifest_in(&mut tx, self.backend(), repo, digest, origin).await?;
        tx.commit().await?;
        Ok(GuardedDelete::Deleted)
    }

    async fn policy_runs(
        &self,
        policy_id: i64,
        kind: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<PolicyRunRecord>, i64), MetaError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM policy_runs WHERE policy_id = $1 AND kind = $2")
            .bind(policy_id)
            .bind(kind)
            .fetch_one(self.pool())
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {RUN_LIST_COLUMNS} FROM policy_runs r JOIN policies p ON p.id = r.policy_id
             WHERE r.policy_id = $1 AND r.kind = $2 ORDER BY r.id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(policy_id)
        .bind(kind)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        Ok((rows.iter().map(run_from_row).collect::<Result<_, _>>()?, total))
    }
}
