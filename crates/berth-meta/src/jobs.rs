//! A durable job queue in the metadata database: leases with heartbeats, retries, per-kind
//! concurrency, de-duplication by key, cancellation, and visible state.
//!
//! A job is `queued` until a worker claims it, `running` while the claimant holds a lease it
//! renews by heartbeat, then `succeeded`, `failed` (with the error) or `cancelled`. A job whose
//! lease expires (its worker died) is claimable again by anyone: nothing can stay stuck.
//! Claiming is one `UPDATE … WHERE id = (SELECT … LIMIT 1)` statement; on PostgreSQL the
//! inner select takes `FOR UPDATE SKIP LOCKED`, so workers never claim the same job, and a
//! per-kind advisory lock makes the concurrency check (`COUNT(*)` of live leases) exact across
//! replicas. SQLite serialises writers anyway.

use crate::MetaError;
use crate::events::{EventKind, NewEvent, Origin, insert_events};
use crate::sql::{Backend, SqlMetaStore};
use sqlx::Row;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a worker (possibly until `run_after`).
    Queued,
    /// Claimed by a worker that holds a lease.
    Running,
    /// Done.
    Succeeded,
    /// Gave up after its attempts, or failed for good.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<JobState, MetaError> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => return Err(MetaError::Corrupt(format!("unknown job state {other:?}"))),
        })
    }
}

impl std::str::FromStr for JobState {
    type Err = MetaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::parse(s)
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The handler that runs it, e.g. `upload-expiry`.
    pub kind: String,
    /// Handler input (JSON text).
    pub payload: String,
    /// While a job with this key is queued or running, enqueueing another is a no-op.
    pub dedup_key: Option<String>,
    /// Attempts before it fails for good.
    pub max_attempts: i64,
    /// Not before this time (Unix ms).
    pub run_after: i64,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Payload.
    pub payload: String,
    /// De-duplication key.
    pub dedup_key: Option<String>,
    /// State.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Not before (Unix ms).
    pub run_after: i64,
    /// The worker holding the lease.
    pub lease_owner: Option<String>,
    /// Lease expiry (Unix ms).
    pub lease_until: Option<i64>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
    /// Finished (Unix ms).
    pub finished_at: Option<i64>,
}

const JOB_COLS: &str = "id, kind, payload, dedup_key, state, attempts, max_attempts, run_after, lease_owner, \
                        lease_until, last_error, created_at, updated_at, finished_at";

fn job_from_row(r: &sqlx::any::AnyRow) -> Result<JobRecord, MetaError> {
    let state: String = r.try_get("state")?;
    Ok(JobRecord {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        payload: r.try_get("payload")?,
        dedup_key: r.try_get("dedup_key")?,
        state: JobState::parse(&state)?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        run_after: r.try_get("run_after")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_until: r.try_get("lease_until")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

/// The job queue's storage. Contract (checked by the conformance suite): a job is claimed by
/// at most one live lease at a time; a worker whose lease was lost or whose job was cancelled
/// learns it from `heartbeat` and may not finish it.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Add a job; `None` when a queued or running job has the same `dedup_key`.
    async fn enqueue(&self, job: &NewJob, now: i64) -> Result<Option<String>, MetaError>;
    /// Claim the next due job of `kind` for `owner` until `lease_until`, unless `max_running`
    /// jobs of that kind already hold live leases. Expired leases are claimable again.
    async fn claim(
        &self,
        kind: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        max_running: i64,
    ) -> Result<Option<JobRecord>, MetaError>;
    /// Jobs of `kind` whose worker vanished (lease expired while `running`) on their last
    /// attempt: marked `failed` ("the worker running it stopped …") and returned, so a job
    /// that kills its process is not retried for ever. [`JobQueue::claim`] never takes them.
    async fn reap(&self, kind: &str, now: i64) -> Result<Vec<JobRecord>, MetaError>;
    /// Extend the lease; `false` if `owner` no longer holds it (expired and taken, or cancelled).
    async fn heartbeat(&self, id: &str, owner: &str, lease_until: i64, now: i64) -> Result<bool, MetaError>;
    /// Record success; `false` if `owner` no longer held the lease.
    async fn succeed(&self, id: &str, owner: &str, now: i64) -> Result<bool, MetaError>;
    /// Record a failed attempt: back to `queued` at `retry_at`, or `failed` for good when `None`.
    async fn fail(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<bool, MetaError>;
    /// Cancel a queued or running job; returns whether it was.
    /// (Logs `job.stopped` by `origin` in the same transaction.)
    async fn cancel(&self, id: &str, now: i64, origin: &Origin) -> Result<bool, MetaError>;
    /// One job.
    async fn job(&self, id: &str) -> Result<Option<JobRecord>, MetaError>;
    /// Newest first, optionally of one kind and/or state.
    async fn jobs(&self, kind: Option<&str>, state: Option<JobState>, limit: i64) -> Result<Vec<JobRecord>, MetaError>;
}

/// Enqueue `job` on `conn` (inside a transaction when the caller holds one); `None` when a
/// job with the same de-duplication key is queued or running.
pub(crate) async fn insert_job(
    db: &mut impl crate::exec::Exec,
    job: &NewJob,
    now: i64,
) -> Result<Option<String>, MetaError> {
    let id = uuid::Uuid::new_v4().to_string();
    let n = db
        .exec(
            "INSERT INTO jobs (id, kind, payload, dedup_key, state, attempts, max_attempts, run_after, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $7) ON CONFLICT DO NOTHING",
            crate::exec::args![&id, &job.kind, &job.payload, &job.dedup_key, job.max_attempts.max(1), job.run_after, now],
        )
        .await?;
    Ok((n > 0).then_some(id))
}

#[async_trait::async_trait]
impl JobQueue for SqlMetaStore {
    async fn enqueue(&self, job: &NewJob, now: i64) -> Result<Option<String>, MetaError> {
        let mut conn = self.pool().acquire().await?;
        insert_job(&mut *conn, job, now).await
    }

    async fn claim(
        &self,
        kind: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        max_running: i64,
    ) -> Result<Option<JobRecord>, MetaError> {
        // Workers poll every kind several times a second; most polls find nothing, and need
        // not take the database's write lock to learn it.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM jobs WHERE kind = $1
               AND ((state = 'queued' AND run_after <= $2)
                    OR (state = 'running' AND lease_until < $2 AND attempts < max_attempts))
             LIMIT 1",
        )
        .bind(kind)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        if due.is_none() {
            return Ok(None);
        }
        let lock = if self.backend() == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3
             WHERE id = (SELECT id FROM jobs WHERE kind = $4
                           AND ((state = 'queued' AND run_after <= $3)
                                OR (state = 'running' AND lease_until < $3 AND attempts < max_attempts))
                         ORDER BY run_after, created_at LIMIT 1 {lock})
               AND (SELECT COUNT(*) FROM jobs WHERE kind = $4 AND state = 'running' AND lease_until >= $3) < $5
             RETURNING {JOB_COLS}"
        );
        let mut tx = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // Under READ COMMITTED two claims could both see room under `max_running` and both
            // take a job; claims of one kind therefore take turns (the lock ends with the
            // transaction). SQLite serialises writers anyway.
            sqlx::query("SELECT pg_advisory_xact_lock(727275, hashtext($1))").bind(kind).execute(&mut *tx).await?;
        }
        let row = sqlx::query(&sql)
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(kind)
            .bind(max_running)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn reap(&self, kind: &str, now: i64) -> Result<Vec<JobRecord>, MetaError> {
        let rows = sqlx::query(&format!(
            "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_until = NULL, finished_at = $2, updated_at = $2,
                    last_error = 'the worker running it stopped (crashed or was killed) on each of its ' || attempts || ' attempts'
             WHERE kind = $1 AND state = 'running' AND lease_until < $2 AND attempts >= max_attempts
             RETURNING {JOB_COLS}"
        ))
        .bind(kind)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn heartbeat(&self, id: &str, owner: &str, lease_until: i64, now: i64) -> Result<bool, MetaError> {
        let n = sqlx::query(
            "UPDATE jobs SET lease_until = $3, updated_at = $4 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn succeed(&self, id: &str, owner: &str, now: i64) -> Result<bool, MetaError> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_until = NULL, finished_at = $3, updated_at = $3
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn fail(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<bool, MetaError> {
        let q = match retry_at {
            Some(_) => {
                "UPDATE jobs SET state = 'queued', run_after = $4, last_error = $3, lease_owner = NULL, lease_until = NULL, updated_at = $5
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'"
            }
            None => {
                "UPDATE jobs SET state = 'failed', last_error = $3, lease_owner = NULL, lease_until = NULL, finished_at = $5, updated_at = $5
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running' AND $4 IS NULL"
            }
        };
        let n = sqlx::query(q)
            .bind(id)
            .bind(owner)
            .bind(error)
            .bind(retry_at)
            .bind(now)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn cancel(&self, id: &str, now: i64, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let kind: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_until = NULL, finished_at = $2, updated_at = $2
             WHERE id = $1 AND state IN ('queued', 'running') RETURNING kind",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(kind) = kind else { return Ok(false) };
        let e = NewEvent::new(EventKind::JobStopped, now, origin).data(serde_json::json!({ "id": id, "kind": kind }));
        insert_events(&mut tx, self.backend(), &[e]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn job(&self, id: &str) -> Result<Option<JobRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn jobs(&self, kind: Option<&str>, state: Option<JobState>, limit: i64) -> Result<Vec<JobRecord>, MetaError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE ($1 = '' OR kind = $1) AND ($2 = '' OR state = $2)
             ORDER BY created_at DESC, id LIMIT $3"
        ))
        .bind(kind.unwrap_or(""))
        .bind(state.map(JobState::as_str).unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }
}
