//! Replication (Harbor's replication policies, executions and tasks). A policy is kept as
//! its JSON document (the registry's replication service validates and reads it); an
//! execution is one run of a policy; a task is one artifact copied (or deleted) by a run,
//! unique per (execution, source), so a run resumed after a crash skips what it finished.

use sqlx::Row;

use crate::MetaError;
use crate::events::{NewEvent, insert_events};
use crate::sql::SqlMetaStore;

/// A replication policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationPolicyRecord {
    /// Its id.
    pub id: i64,
    /// Its name (unique).
    pub name: String,
    /// The policy (Harbor's `ReplicationPolicy` JSON, as Berth stores it).
    pub document: String,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Changed (Unix ms).
    pub updated_at: i64,
}

/// One run of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationExecutionRecord {
    /// Its id.
    pub id: i64,
    /// The policy.
    pub policy_id: i64,
    /// `manual`, `scheduled` or `event_based`.
    pub trigger: String,
    /// `InProgress`, `Succeed`, `Failed` or `Stopped` (Harbor's words).
    pub status: String,
    /// Why it ended as it did, when it says.
    pub status_text: String,
    /// Started (Unix ms).
    pub started_at: i64,
    /// Ended (Unix ms).
    pub ended_at: Option<i64>,
}

/// One artifact a run copies (or deletes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationTaskRecord {
    /// Its id.
    pub id: i64,
    /// The run.
    pub execution_id: i64,
    /// `image` or `artifact`.
    pub resource_type: String,
    /// What is copied: `repo:tag` at the source.
    pub src_resource: String,
    /// Where to: `repo:tag` at the destination.
    pub dst_resource: String,
    /// `copy` or `deletion`.
    pub operation: String,
    /// `Pending`, `InProgress`, `Succeed`, `Failed` or `Stopped`.
    pub status: String,
    /// What happened, line by line.
    pub log: String,
    /// Started (Unix ms).
    pub started_at: Option<i64>,
    /// Ended (Unix ms).
    pub ended_at: Option<i64>,
}

/// Where replication is kept.
#[async_trait::async_trait]
pub trait ReplicationStore: Send + Sync {
    /// Every policy, by name.
    async fn replication_policies(&self) -> Result<Vec<ReplicationPolicyRecord>, MetaError>;
    /// One policy.
    async fn replication_policy(&self, id: i64) -> Result<Option<ReplicationPolicyRecord>, MetaError>;
    /// Create a policy, logging `event`; `None` if the name is taken.
    async fn create_replication_policy(
        &self,
        name: &str,
        document: &str,
        now: i64,
        event: &NewEvent,
    ) -> Result<Option<i64>, MetaError>;
    /// Replace a policy's name and document, logging `event`; false if absent,
    /// `Err(Conflict)` if the name is taken.
    async fn update_replication_policy(
        &self,
        id: i64,
        name: &str,
        document: &str,
        now: i64,
        event: &NewEvent,
    ) -> Result<bool, MetaError>;
    /// Delete a policy and its runs, logging `event`; false if absent, `Err(Conflict)` while
    /// a run is in progress.
    async fn delete_replication_policy(&self, id: i64, event: &NewEvent) -> Result<bool, MetaError>;

    /// Start a run of `policy_id` (`text`: its status text while it runs); its id.
    async fn create_replication_execution(
        &self,
        policy_id: i64,
        trigger: &str,
        text: &str,
        now: i64,
    ) -> Result<i64, MetaError>;
    /// One run.
    async fn replication_execution(&self, id: i64) -> Result<Option<ReplicationExecutionRecord>, MetaError>;
    /// Runs (of one policy, or all), newest first, and how many there are.
    async fn replication_executions(
        &self,
        policy_id: Option<i64>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<ReplicationExecutionRecord>, i64), MetaError>;
    /// End a run still in progress with `status` (and why); false if it had ended.
    async fn finish_replication_execution(
        &self,
        id: i64,
        status: &str,
        text: &str,
        now: i64,
    ) -> Result<bool, MetaError>;

    /// Add a task to a run unless it has one for `src_resource`; the task's id either way.
    async fn ensure_replication_task(&self, t: &ReplicationTaskRecord) -> Result<i64, MetaError>;
    /// The tasks of a run, in order.
    async fn replication_tasks(&self, execution_id: i64) -> Result<Vec<ReplicationTaskRecord>, MetaError>;
    /// Record a task's state and append to its log.
    async fn update_replication_task(&self, id: i64, status: &str, log_line: &str, now: i64) -> Result<(), MetaError>;
}

const POLICY: &str = "id, name, document, created_at, updated_at";
const EXECUTION: &str = "id, policy_id, trigger, status, status_text, started_at, ended_at";
const TASK: &str =
    "id, execution_id, resource_type, src_resource, dst_resource, operation, status, log, started_at, ended_at";

fn policy(r: &sqlx::any::AnyRow) -> Result<ReplicationPolicyRecord, MetaError> {
    Ok(ReplicationPolicyRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        document: r.try_get(2)?,
        created_at: r.try_get(3)?,
        updated_at: r.try_get(4)?,
    })
}

fn execution(r: &sqlx::any::AnyRow) -> Result<ReplicationExecutionRecord, MetaError> {
    Ok(ReplicationExecutionRecord {
        id: r.try_get(0)?,
        policy_id: r.try_get(1)?,
        trigger: r.try_get(2)?,
        status: r.try_get(3)?,
        status_text: r.try_get(4)?,
        started_at: r.try_get(5)?,
        ended_at: r.try_get(6)?,
    })
}

fn task(r: &sqlx::any::AnyRow) -> Result<ReplicationTaskRecord, MetaError> {
    Ok(ReplicationTaskRecord {
        id: r.try_get(0)?,
        execution_id: r.try_get(1)?,
        resource_type: r.try_get(2)?,
        src_resource: r.try_get(3)?,
        dst_resource: r.try_get(4)?,
        operation: r.try_get(5)?,
        status: r.try_get(6)?,
        log: r.try_get(7)?,
        started_at: r.try_get(8)?,
        ended_at: r.try_get(9)?,
    })
}

#[async_trait::async_trait]
impl ReplicationStore for SqlMetaStore {
    async fn replication_policies(&self) -> Result<Vec<ReplicationPolicyRecord>, MetaError> {
        let rows = sqlx::query(&format!("SELECT {POLICY} FROM replication_policies ORDER BY name"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(policy).collect()
    }

    async fn replication_policy(&self, id: i64) -> Result<Option<ReplicationPolicyRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {POLICY} FROM replication_policies WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(policy).transpose()
    }

    async fn create_replication_policy(
        &self,
        name: &str,
        document: &str,
        now: i64,
        event: &NewEvent,
    ) -> Result<Option<i64>, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO replication_policies (name, document, created_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(document)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = id {
            let mut event = event.clone();
            event.data["id"] = id.into();
            insert_events(&mut tx, self.backend(), std::slice::from_ref(&event)).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    async fn update_replication_policy(
        &self,
        id: i64,
        name: &str,
        document: &str,
        now: i64,
        event: &NewEvent,
    ) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM replication_policies WHERE name = $1 AND id <> $2")
            .bind(name)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(MetaError::Conflict(format!("a replication policy named {name:?} already exists")));
        }
        let n = sqlx::query("UPDATE replication_policies SET name = $2, document = $3, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(name)
            .bind(document)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn delete_replication_policy(&self, id: i64, event: &NewEvent) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM replication_executions WHERE policy_id = $1 AND status = 'InProgress' LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(run) = running {
            return Err(MetaError::Conflict(format!("execution {run} of this policy is in progress; stop it first")));
        }
        sqlx::query(
            "DELETE FROM replication_tasks WHERE execution_id IN (SELECT id FROM replication_executions WHERE policy_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM replication_executions WHERE policy_id = $1").bind(id).execute(&mut *tx).await?;
        let n = sqlx::query("DELETE FROM replication_policies WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn create_replication_execution(
        &self,
        policy_id: i64,
        trigger: &str,
        text: &str,
        now: i64,
    ) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO replication_executions (policy_id, trigger, status, status_text, started_at)
             VALUES ($1, $2, 'InProgress', $3, $4) RETURNING id",
        )
        .bind(policy_id)
        .bind(trigger)
        .bind(text)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn replication_execution(&self, id: i64) -> Result<Option<ReplicationExecutionRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {EXECUTION} FROM replication_executions WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(execution).transpose()
    }

    async fn replication_executions(
        &self,
        policy_id: Option<i64>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<ReplicationExecutionRecord>, i64), MetaError> {
        let filter = "WHERE ($1 = 0 OR policy_id = $1)";
        let rows = sqlx::query(&format!(
            "SELECT {EXECUTION} FROM replication_executions {filter} ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(policy_id.unwrap_or(0))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM replication_executions {filter}"))
            .bind(policy_id.unwrap_or(0))
            .fetch_one(self.pool())
            .await?;
        Ok((rows.iter().map(execution).collect::<Result<_, _>>()?, total))
    }

    async fn finish_replication_execution(
        &self,
        id: i64,
        status: &str,
        text: &str,
        now: i64,
    ) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE replication_executions SET status = $2, status_text = $3, ended_at = $4
             WHERE id = $1 AND status = 'InProgress'",
        )
        .bind(id)
        .bind(status)
        .bind(text)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 && status == "Stopped" {
            sqlx::query(
                "UPDATE replication_tasks SET status = 'Stopped', ended_at = $2
                 WHERE execution_id = $1 AND status IN ('Pending', 'InProgress')",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn ensure_replication_task(&self, t: &ReplicationTaskRecord) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO replication_tasks (execution_id, resource_type, src_resource, dst_resource, operation,
             status, log, started_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(t.execution_id)
        .bind(&t.resource_type)
        .bind(&t.src_resource)
        .bind(&t.dst_resource)
        .bind(&t.operation)
        .bind(&t.status)
        .bind(&t.log)
        .bind(t.started_at)
        .bind(t.ended_at)
        .execute(&mut *tx)
        .await?;
        let id: i64 =
            sqlx::query_scalar("SELECT id FROM replication_tasks WHERE execution_id = $1 AND src_resource = $2")
                .bind(t.execution_id)
                .bind(&t.src_resource)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn replication_tasks(&self, execution_id: i64) -> Result<Vec<ReplicationTaskRecord>, MetaError> {
        let rows = sqlx::query(&format!("SELECT {TASK} FROM replication_tasks WHERE execution_id = $1 ORDER BY id"))
            .bind(execution_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(task).collect()
    }

    async fn update_replication_task(&self, id: i64, status: &str, log_line: &str, now: i64) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        let done = matches!(status, "Succeed" | "Failed" | "Stopped");
        sqlx::query(
            "UPDATE replication_tasks SET status = $2, log = log || $3,
             started_at = COALESCE(started_at, $4), ended_at = CASE WHEN $5 = 1 THEN $4 ELSE ended_at END
             WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(if log_line.is_empty() { String::new() } else { format!("{log_line}\n") })
        .bind(now)
        .bind(i64::from(done))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
