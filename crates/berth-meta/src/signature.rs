//! A project's signature policy (verified cosign and Notation signatures): one JSON document
//! per project with a version that grows with every change, so verdicts cached by version
//! never outlive the policy they were made under.
//!
//! ```text
//! signature_policies  project (PK) | document | version | updated_at
//! ```

use sqlx::Row;

use crate::MetaError;
use crate::events::{NewEvent, insert_events};
use crate::sql::SqlMetaStore;

/// A stored signature policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignaturePolicyRecord {
    /// The project.
    pub project: String,
    /// The policy (Berth's JSON; the registry's signature service reads it).
    pub document: String,
    /// Grows with every change.
    pub version: i64,
    /// Changed (Unix ms).
    pub updated_at: i64,
}

/// Where signature policies are kept.
#[async_trait::async_trait]
pub trait SignatureStore: Send + Sync {
    /// The policy of `project`, if it has one.
    async fn signature_policy(&self, project: &str) -> Result<Option<SignaturePolicyRecord>, MetaError>;
    /// Set (`Some`) or remove (`None`) the policy of `project`, logging `event`; returns the
    /// new version.
    async fn put_signature_policy(
        &self,
        project: &str,
        document: Option<&str>,
        now: i64,
        event: &NewEvent,
    ) -> Result<i64, MetaError>;
}

#[async_trait::async_trait]
impl SignatureStore for SqlMetaStore {
    async fn signature_policy(&self, project: &str) -> Result<Option<SignaturePolicyRecord>, MetaError> {
        let row =
            sqlx::query("SELECT project, document, version, updated_at FROM signature_policies WHERE project = $1")
                .bind(project)
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| {
            Ok(SignaturePolicyRecord {
                project: r.try_get("project")?,
                document: r.try_get("document")?,
                version: r.try_get("version")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    async fn put_signature_policy(
        &self,
        project: &str,
        document: Option<&str>,
        now: i64,
        event: &NewEvent,
    ) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        // Versions never repeat, even across a removal: the old version's verdicts stay stale.
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO signature_policies (project, document, version, updated_at) VALUES ($1, $2, 1, $3)
             ON CONFLICT (project) DO UPDATE SET document = excluded.document,
             version = signature_policies.version + 1, updated_at = excluded.updated_at RETURNING version",
        )
        .bind(project)
        .bind(document.unwrap_or(""))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        tx.commit().await?;
        Ok(version)
    }
}
