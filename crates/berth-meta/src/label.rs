//! Harbor's labels: named, coloured tags for artifacts, global (`g`, managed by system
//! administrators) or per project (`p`), attached to artifacts by (repository, digest).
//! Retention rules select artifacts by them.

use std::collections::HashMap;

use sqlx::Row;

use crate::MetaError;
use crate::sql::SqlMetaStore;

/// A label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRecord {
    /// Its id.
    pub id: i64,
    /// Its name (unique in its scope).
    pub name: String,
    /// Free text.
    pub description: String,
    /// A colour, as the portal shows it (`#0065AB`).
    pub color: String,
    /// `g` (global) or `p` (project).
    pub scope: String,
    /// The project of a project label; empty for a global one.
    pub project: String,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Changed (Unix ms).
    pub updated_at: i64,
}

/// Where labels and their attachments are kept.
#[async_trait::async_trait]
pub trait LabelStore: Send + Sync {
    /// Labels of a scope (`g`, or `p` with its project), by name.
    async fn labels(&self, scope: &str, project: &str) -> Result<Vec<LabelRecord>, MetaError>;
    /// One label.
    async fn label(&self, id: i64) -> Result<Option<LabelRecord>, MetaError>;
    /// Create a label; `None` if its scope already has one of that name.
    async fn create_label(&self, l: &LabelRecord) -> Result<Option<i64>, MetaError>;
    /// Change a label's name, description and colour; false if absent, `Err(Conflict)` if the name is taken.
    async fn update_label(&self, l: &LabelRecord) -> Result<bool, MetaError>;
    /// Delete a label and detach it everywhere.
    async fn delete_label(&self, id: i64) -> Result<bool, MetaError>;
    /// Attach a label to an artifact (idempotent); false if the artifact is not there.
    async fn attach_label(&self, repo: &str, digest: &str, label: i64, now: i64) -> Result<bool, MetaError>;
    /// Detach a label; false if it was not attached.
    async fn detach_label(&self, repo: &str, digest: &str, label: i64) -> Result<bool, MetaError>;
    /// The labels of every artifact of a repository, by digest.
    async fn repo_labels(&self, repo: &str) -> Result<HashMap<String, Vec<LabelRecord>>, MetaError>;
}

const COLUMNS: &str = "l.id, l.name, l.description, l.color, l.scope, l.project, l.created_at, l.updated_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<LabelRecord, MetaError> {
    Ok(LabelRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        color: r.try_get(3)?,
        scope: r.try_get(4)?,
        project: r.try_get(5)?,
        created_at: r.try_get(6)?,
        updated_at: r.try_get(7)?,
    })
}

#[async_trait::async_trait]
impl LabelStore for SqlMetaStore {
    async fn labels(&self, scope: &str, project: &str) -> Result<Vec<LabelRecord>, MetaError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM labels l WHERE l.scope = $1 AND l.project = $2 ORDER BY l.name"
        ))
        .bind(scope)
        .bind(project)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    async fn label(&self, id: i64) -> Result<Option<LabelRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM labels l WHERE l.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    async fn create_label(&self, l: &LabelRecord) -> Result<Option<i64>, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO labels (name, description, color, scope, project, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (scope, project, name) DO NOTHING RETURNING id",
        )
        .bind(&l.name)
        .bind(&l.description)
        .bind(&l.color)
        .bind(&l.scope)
        .bind(&l.project)
        .bind(l.created_at)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn update_label(&self, l: &LabelRecord) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT id FROM labels WHERE scope = $1 AND project = $2 AND name = $3 AND id <> $4")
                .bind(&l.scope)
                .bind(&l.project)
                .bind(&l.name)
                .bind(l.id)
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(MetaError::Conflict(format!("a label named {:?} already exists here", l.name)));
        }
        let n = sqlx::query("UPDATE labels SET name = $2, description = $3, color = $4, updated_at = $5 WHERE id = $1")
            .bind(l.id)
            .bind(&l.name)
            .bind(&l.description)
            .bind(&l.color)
            .bind(l.updated_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn delete_label(&self, id: i64) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM artifact_labels WHERE label_id = $1").bind(id).execute(&mut *tx).await?;
        let n = sqlx::query("DELETE FROM labels WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn attach_label(&self, repo: &str, digest: &str, label: i64, now: i64) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let present: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2{}",
            self.lock_share()
        ))
        .bind(repo)
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
        if present.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO artifact_labels (repo, digest, label_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(repo)
        .bind(digest)
        .bind(label)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn detach_label(&self, repo: &str, digest: &str, label: i64) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM artifact_labels WHERE repo = $1 AND digest = $2 AND label_id = $3")
            .bind(repo)
            .bind(digest)
            .bind(label)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn repo_labels(&self, repo: &str) -> Result<HashMap<String, Vec<LabelRecord>>, MetaError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, a.digest FROM artifact_labels a JOIN labels l ON l.id = a.label_id
             WHERE a.repo = $1 ORDER BY l.name"
        ))
        .bind(repo)
        .fetch_all(self.pool())
        .await?;
        let mut out: HashMap<String, Vec<LabelRecord>> = HashMap::new();
        for r in &rows {
            out.entry(r.try_get(8)?).or_default().push(from_row(r)?);
        }
        Ok(out)
    }
}
