//! Webhooks (Harbor's webhook policies): a project's policies, and one delivery per (policy,
//! event, target), created by the `webhooks` consumer in the transaction that moves its
//! cursor and sent by the delivery loop (`berth-webhook`).
//!
//! **Order and at-least-once:** a delivery is unique per (policy, event `seq`, target), so a
//! consumer that replays a batch creates nothing twice; only the oldest open delivery of a
//! (policy, target) is ever claimed ([`WebhookStore::claim_webhook_deliveries`]), so a
//! receiver sees a policy's events in order, each until it answers 2xx or the delivery gives
//! up (`Error`, the dead letter; redelivered by hand). A claim is a lease: a process killed
//! mid-send leaves a `Running` delivery whose lease expires and is claimed again.
//!
//! ```text
//! webhook_policies    id | project | name | description | enabled | event_types (JSON) | targets (JSON)
//!                     | secret (sealed) | creator | created_at | updated_at        UNIQUE (project, name)
//! webhook_deliveries  id | policy_id | seq | target | event_type | notify_type | address | payload
//!                     | status | attempts | next_at | holder | lease_until | last_code | log
//!                     | created_at | updated_at | ended_at                  UNIQUE (policy_id, seq, target)
//! ```

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::MetaError;
use crate::events::{NewEvent, insert_events};
use crate::sql::SqlMetaStore;

/// A webhook policy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookPolicyRecord {
    /// Its id.
    pub id: i64,
    /// The project's name.
    pub project: String,
    /// Its name (unique in the project).
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Whether events create deliveries.
    pub enabled: bool,
    /// Harbor's event types it wants (`PUSH_ARTIFACT`, …), as a JSON array.
    pub event_types: String,
    /// Its targets (JSON array; auth headers sealed).
    pub targets: String,
    /// The HMAC key, sealed.
    pub secret: String,
    /// Who created it.
    pub creator: String,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Changed (Unix ms).
    pub updated_at: i64,
}

/// A delivery to create (by the consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhookDelivery {
    /// The policy.
    pub policy_id: i64,
    /// The event's `seq`.
    pub seq: i64,
    /// Which of the policy's targets.
    pub target: i64,
    /// Harbor's event type.
    pub event_type: String,
    /// `http` or `slack`.
    pub notify_type: String,
    /// Where to.
    pub address: String,
    /// The body, as it will be sent.
    pub payload: String,
    /// When (Unix ms).
    pub at: i64,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDeliveryRecord {
    /// Its id.
    pub id: i64,
    /// The policy.
    pub policy_id: i64,
    /// The event's `seq` (0 for none).
    pub seq: i64,
    /// Which of the policy's targets.
    pub target: i64,
    /// Harbor's event type.
    pub event_type: String,
    /// `http` or `slack`.
    pub notify_type: String,
    /// Where to.
    pub address: String,
    /// The body.
    pub payload: String,
    /// `Pending` (first try or retry due at `next_at`), `Running`, `Success`, or `Error` (gave
    /// up: the dead letter).
    pub status: String,
    /// Tries so far.
    pub attempts: i64,
    /// When the next try is due (Unix ms).
    pub next_at: i64,
    /// The last HTTP status the receiver answered.
    pub last_code: Option<i64>,
    /// One line per try.
    pub log: String,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last changed (Unix ms).
    pub updated_at: i64,
    /// Finished (Unix ms), when it succeeded or gave up.
    pub ended_at: Option<i64>,
}

/// How a try ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered {
        /// Its status.
        code: i64,
    },
    /// It did not: try again at `retry_at`, or give up (`retry_at` is `None`).
    Failed {
        /// Its status, if it answered.
        code: Option<i64>,
        /// When to try again; `None`: give up.
        retry_at: Option<i64>,
    },
}

/// Where webhooks are kept.
#[async_trait::async_trait]
pub trait WebhookStore: Send + Sync {
    /// A project's policies, by name.
    async fn webhook_policies(&self, project: &str) -> Result<Vec<WebhookPolicyRecord>, MetaError>;
    /// Every enabled policy of these projects.
    async fn enabled_webhook_policies(&self, projects: &[String]) -> Result<Vec<WebhookPolicyRecord>, MetaError>;
    /// One policy.
    async fn webhook_policy(&self, id: i64) -> Result<Option<WebhookPolicyRecord>, MetaError>;
    /// Create a policy, logging `event` (its `data.id` set); `Conflict` if the name is taken.
    async fn create_webhook_policy(&self, p: &WebhookPolicyRecord, event: &NewEvent) -> Result<i64, MetaError>;
    /// Replace a policy's fields (not its project or creator); `false` if it is gone.
    async fn update_webhook_policy(&self, p: &WebhookPolicyRecord, event: &NewEvent) -> Result<bool, MetaError>;
    /// Delete a policy and its deliveries; `false` if it was gone.
    async fn delete_webhook_policy(&self, id: i64, event: &NewEvent) -> Result<bool, MetaError>;
    /// A policy's deliveries, newest first, `status` only if given; with the total.
    async fn webhook_deliveries(
        &self,
        policy_id: i64,
        status: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<WebhookDeliveryRecord>, i64), MetaError>;
    /// One delivery.
    async fn webhook_delivery(&self, id: i64) -> Result<Option<WebhookDeliveryRecord>, MetaError>;
    /// Claim up to `limit` due deliveries, each the oldest open one of its (policy, target),
    /// for `holder` until `lease_until`.
    async fn claim_webhook_deliveries(
        &self,
        holder: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<WebhookDeliveryRecord>, MetaError>;
    /// Record how a claimed try ended (with `log_line`); `false` if the claim was lost.
    async fn finish_webhook_delivery(
        &self,
        id: i64,
        holder: &str,
        outcome: &DeliveryOutcome,
        log_line: &str,
        now: i64,
    ) -> Result<bool, MetaError>;
    /// Send a finished delivery again from the start (`log_line` says who asked); `false` if
    /// it is not finished (or gone).
    async fn redeliver_webhook(&self, id: i64, log_line: &str, now: i64) -> Result<bool, MetaError>;
    /// When each (policy, event type) of a project last created a delivery.
    async fn webhook_last_triggers(&self, project: &str) -> Result<Vec<(i64, String, i64)>, MetaError>;
    /// Delete finished deliveries that ended before `before`; returns how many.
    async fn prune_webhook_deliveries(&self, before: i64) -> Result<u64, MetaError>;
}

const POLICY: &str =
    "id, project, name, description, enabled, event_types, targets, secret, creator, created_at, updated_at";

fn policy(r: &AnyRow) -> Result<WebhookPolicyRecord, MetaError> {
    Ok(WebhookPolicyRecord {
        id: r.try_get("id")?,
        project: r.try_get("project")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        event_types: r.try_get("event_types")?,
        targets: r.try_get("targets")?,
        secret: r.try_get("secret")?,
        creator: r.try_get("creator")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const DELIVERY: &str = "id, policy_id, seq, target, event_type, notify_type, address, payload, status, attempts, \
                        next_at, last_code, log, created_at, updated_at, ended_at";

fn delivery(r: &AnyRow) -> Result<WebhookDeliveryRecord, MetaError> {
    Ok(WebhookDeliveryRecord {
        id: r.try_get("id")?,
        policy_id: r.try_get("policy_id")?,
        seq: r.try_get("seq")?,
        target: r.try_get("target")?,
        event_type: r.try_get("event_type")?,
        notify_type: r.try_get("notify_type")?,
        address: r.try_get("address")?,
        payload: r.try_get("payload")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_at: r.try_get("next_at")?,
        last_code: r.try_get("last_code")?,
        log: r.try_get("log")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        ended_at: r.try_get("ended_at")?,
    })
}

/// Insert a delivery inside the consumer's transaction (a replayed one is skipped).
pub(crate) async fn insert_delivery(db: &mut impl crate::exec::Exec, d: &NewWebhookDelivery) -> Result<(), MetaError> {
    db.exec(
        "INSERT INTO webhook_deliveries (policy_id, seq, target, event_type, notify_type, address, payload, status,
         attempts, next_at, log, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'Pending', 0, $8, '', $8, $8)
         ON CONFLICT (policy_id, seq, target) DO NOTHING",
        crate::exec::args![d.policy_id, d.seq, d.target, &d.event_type, &d.notify_type, &d.address, &d.payload, d.at],
    )
    .await?;
    Ok(())
}

/// Delete a project's policies and their deliveries (inside the project's delete).
pub(crate) async fn delete_project_webhooks(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project: &str,
) -> Result<(), MetaError> {
    sqlx::query(
        "DELETE FROM webhook_deliveries WHERE policy_id IN (SELECT id FROM webhook_policies WHERE project = $1)",
    )
    .bind(project)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM webhook_policies WHERE project = $1").bind(project).execute(&mut **tx).await?;
    Ok(())
}

/// The open deliveries (`Pending` or `Running`).
const OPEN: &str = "status IN ('Pending', 'Running')";

#[async_trait::async_trait]
impl WebhookStore for SqlMetaStore {
    async fn webhook_policies(&self, project: &str) -> Result<Vec<WebhookPolicyRecord>, MetaError> {
        let rows = sqlx::query(&format!("SELECT {POLICY} FROM webhook_policies WHERE project = $1 ORDER BY name"))
            .bind(project)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(policy).collect()
    }

    async fn enabled_webhook_policies(&self, projects: &[String]) -> Result<Vec<WebhookPolicyRecord>, MetaError> {
        let mut out = Vec::new();
        for chunk in projects.chunks(100) {
            let ps: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {POLICY} FROM webhook_policies WHERE enabled = 1 AND project IN ({}) ORDER BY id",
                ps.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for p in chunk {
                q = q.bind(p);
            }
            for r in q.fetch_all(self.pool()).await? {
                out.push(policy(&r)?);
            }
        }
        Ok(out)
    }

    async fn webhook_policy(&self, id: i64) -> Result<Option<WebhookPolicyRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {POLICY} FROM webhook_policies WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(policy).transpose()
    }

    async fn create_webhook_policy(&self, p: &WebhookPolicyRecord, event: &NewEvent) -> Result<i64, MetaError> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO webhook_policies (project, name, description, enabled, event_types, targets, secret, creator,
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (project, name) DO NOTHING RETURNING id",
        )
        .bind(&p.project)
        .bind(&p.name)
        .bind(&p.description)
        .bind(i64::from(p.enabled))
        .bind(&p.event_types)
        .bind(&p.targets)
        .bind(&p.secret)
        .bind(&p.creator)
        .bind(p.created_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Err(MetaError::Conflict(format!(
                "project {} already has a webhook policy named {:?}",
                p.project, p.name
            )));
        };
        let mut event = event.clone();
        event.data["id"] = id.into();
        insert_events(&mut tx, self.backend(), std::slice::from_ref(&event)).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn update_webhook_policy(&self, p: &WebhookPolicyRecord, event: &NewEvent) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT id FROM webhook_policies WHERE project = $1 AND name = $2 AND id <> $3")
                .bind(&p.project)
                .bind(&p.name)
                .bind(p.id)
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(MetaError::Conflict(format!(
                "project {} already has a webhook policy named {:?}",
                p.project, p.name
            )));
        }
        let n = sqlx::query(
            "UPDATE webhook_policies SET name = $2, description = $3, enabled = $4, event_types = $5, targets = $6,
             secret = $7, updated_at = $8 WHERE id = $1",
        )
        .bind(p.id)
        .bind(&p.name)
        .bind(&p.description)
        .bind(i64::from(p.enabled))
        .bind(&p.event_types)
        .bind(&p.targets)
        .bind(&p.secret)
        .bind(p.updated_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn delete_webhook_policy(&self, id: i64, event: &NewEvent) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE policy_id = $1").bind(id).execute(&mut *tx).await?;
        let n =
            sqlx::query("DELETE FROM webhook_policies WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        if n > 0 {
            insert_events(&mut tx, self.backend(), std::slice::from_ref(event)).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn webhook_deliveries(
        &self,
        policy_id: i64,
        status: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<WebhookDeliveryRecord>, i64), MetaError> {
        let filter = if status.is_some() { " AND status = $2" } else { "" };
        let (l, o) = if status.is_some() { ("$3", "$4") } else { ("$2", "$3") };
        let sql = format!(
            "SELECT {DELIVERY} FROM webhook_deliveries WHERE policy_id = $1{filter} ORDER BY id DESC LIMIT {l} OFFSET {o}"
        );
        let mut q = sqlx::query(&sql).bind(policy_id);
        let count_sql = format!("SELECT COUNT(*) FROM webhook_deliveries WHERE policy_id = $1{filter}");
        let mut c = sqlx::query_scalar::<_, i64>(&count_sql).bind(policy_id);
        if let Some(s) = status {
            q = q.bind(s);
            c = c.bind(s);
        }
        let rows = q.bind(limit.max(1)).bind(offset.max(0)).fetch_all(self.pool()).await?;
        let total = c.fetch_one(self.pool()).await?;
        Ok((rows.iter().map(delivery).collect::<Result<_, _>>()?, total))
    }

    async fn webhook_delivery(&self, id: i64) -> Result<Option<WebhookDeliveryRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {DELIVERY} FROM webhook_deliveries WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(delivery).transpose()
    }

    async fn claim_webhook_deliveries(
        &self,
        holder: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<WebhookDeliveryRecord>, MetaError> {
        // The head of each (policy, target): its oldest open delivery, if due and not leased.
        let heads = sqlx::query(&format!(
            "SELECT d.id, d.status, COALESCE(d.lease_until, 0) AS lease FROM webhook_deliveries d
             WHERE d.{OPEN} AND d.next_at <= $1 AND (d.status = 'Pending' OR d.lease_until < $1)
               AND d.id = (SELECT MIN(e.id) FROM webhook_deliveries e
                           WHERE e.policy_id = d.policy_id AND e.target = d.target AND e.{OPEN})
             ORDER BY d.id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for h in heads {
            let id: i64 = h.try_get("id")?;
            let status: String = h.try_get("status")?;
            let lease: i64 = h.try_get("lease")?;
            // Compare-and-set: another process may have claimed it meanwhile.
            let row = sqlx::query(&format!(
                "UPDATE webhook_deliveries SET status = 'Running', holder = $2, lease_until = $3, updated_at = $4
                 WHERE id = $1 AND status = $5 AND COALESCE(lease_until, 0) = $6 RETURNING {DELIVERY}"
            ))
            .bind(id)
            .bind(holder)
            .bind(lease_until)
            .bind(now)
            .bind(&status)
            .bind(lease)
            .fetch_optional(self.pool())
            .await?;
            if let Some(r) = row {
                out.push(delivery(&r)?);
            }
        }
        Ok(out)
    }

    async fn finish_webhook_delivery(
        &self,
        id: i64,
        holder: &str,
        outcome: &DeliveryOutcome,
        log_line: &str,
        now: i64,
    ) -> Result<bool, MetaError> {
        let (status, code, next_at, ended) = match outcome {
            DeliveryOutcome::Delivered { code } => ("Success", Some(*code), now, Some(now)),
            DeliveryOutcome::Failed { code, retry_at: Some(at) } => ("Pending", *code, *at, None),
            DeliveryOutcome::Failed { code, retry_at: None } => ("Error", *code, now, Some(now)),
        };
        let n = sqlx::query(
            "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, last_code = $4, next_at = $5,
             ended_at = $6, log = log || $7, holder = NULL, lease_until = NULL, updated_at = $8
             WHERE id = $1 AND status = 'Running' AND holder = $2",
        )
        .bind(id)
        .bind(holder)
        .bind(status)
        .bind(code)
        .bind(next_at)
        .bind(ended)
        .bind(format!("{log_line}\n"))
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn redeliver_webhook(&self, id: i64, log_line: &str, now: i64) -> Result<bool, MetaError> {
        let n = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'Pending', attempts = 0, next_at = $2, ended_at = NULL,
             log = log || $3, updated_at = $2 WHERE id = $1 AND status IN ('Success', 'Error')",
        )
        .bind(id)
        .bind(now)
        .bind(format!("{log_line}\n"))
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn webhook_last_triggers(&self, project: &str) -> Result<Vec<(i64, String, i64)>, MetaError> {
        let rows = sqlx::query(
            "SELECT d.policy_id, d.event_type, MAX(d.created_at) AS at FROM webhook_deliveries d
             JOIN webhook_policies p ON p.id = d.policy_id WHERE p.project = $1
             GROUP BY d.policy_id, d.event_type ORDER BY d.policy_id, d.event_type",
        )
        .bind(project)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((r.try_get("policy_id")?, r.try_get("event_type")?, r.try_get("at")?))).collect()
    }

    async fn prune_webhook_deliveries(&self, before: i64) -> Result<u64, MetaError> {
        Ok(sqlx::query("DELETE FROM webhook_deliveries WHERE status IN ('Success', 'Error') AND ended_at < $1")
            .bind(before)
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}
