//! The background jobs this binary runs, and how a process with the worker role starts them.

use std::sync::Arc;

use berth_config::Config;
use berth_jobs::{JobHandler, Worker, WorkerOptions};
use berth_meta::{JobQueue, SqlMetaStore};
use berth_registry::Registry;

/// Kind of the job that expires idle upload sessions and reclaims orphaned upload bytes.
pub const UPLOAD_EXPIRY: &str = "upload-expiry";

/// Expires upload sessions idle for longer than `uploads.ttl`.
struct UploadExpiry {
    registry: Arc<Registry>,
}

#[async_trait::async_trait]
impl JobHandler for UploadExpiry {
    fn kind(&self) -> &'static str {
        UPLOAD_EXPIRY
    }

    async fn run(&self, _payload: &str) -> anyhow::Result<()> {
        self.registry.expire_uploads().await?;
        Ok(())
    }
}

/// Kind of the job that deletes events older than `events.retention`.
pub const EVENT_PRUNE: &str = "event-prune";

/// Deletes events older than the retention.
struct EventPrune {
    log: Arc<dyn berth_meta::EventLog>,
    retention: std::time::Duration,
}

#[async_trait::async_trait]
impl JobHandler for EventPrune {
    fn kind(&self) -> &'static str {
        EVENT_PRUNE
    }

    async fn run(&self, _payload: &str) -> anyhow::Result<()> {
        let before = berth_jobs::now_ms() - self.retention.as_millis() as i64;
        let n = self.log.prune_events(before).await?;
        tracing::info!(deleted = n, "pruned the event log");
        Ok(())
    }
}

/// Kind of the job that purges audit entries beyond `audit.retention` and `audit.max_entries`.
pub const AUDIT_PURGE: &str = "audit-purge";

/// Purges the audit log down to its retention.
struct AuditPurge {
    auth: Arc<berth_auth::Auth>,
    retention: std::time::Duration,
    max_entries: usize,
}

#[async_trait::async_trait]
impl JobHandler for AuditPurge {
    fn kind(&self) -> &'static str {
        AUDIT_PURGE
    }

    async fn run(&self, _payload: &str) -> anyhow::Result<()> {
        let purge = berth_auth::AuditPurge {
            before: berth_jobs::now_ms() - self.retention.as_millis() as i64,
            keep_at_most: Some(self.max_entries as i64),
            ..Default::default()
        };
        let n = self.auth.purge_audit(&purge, &berth_auth::Origin::system()).await?;
        tracing::info!(deleted = n, "purged the audit log to its retention");
        Ok(())
    }
}

/// Scans one manifest (`berth_scanner::SCAN`).
struct ScanJob {
    scanner: Arc<berth_scanner::Scanner>,
}

#[async_trait::async_trait]
impl JobHandler for ScanJob {
    fn kind(&self) -> &'static str {
        berth_scanner::SCAN
    }

    fn concurrency(&self) -> usize {
        2
    }

    async fn run(&self, payload: &str) -> anyhow::Result<()> {
        let p: berth_scanner::ScanPayload = serde_json::from_str(payload)?;
        self.scanner.scan(&p).await
    }

    async fn given_up(&self, payload: &str, reason: &str) -> anyhow::Result<()> {
        let p: berth_scanner::ScanPayload = serde_json::from_str(payload)?;
        self.scanner.give_up(&p, &format!("the scan never finished: {reason}")).await
    }
}

/// Re-matches stored inventories after an advisory import (`berth_scanner::REEVALUATE`).
struct Reevaluate {
    scanner: Arc<berth_scanner::Scanner>,
}

#[async_trait::async_trait]
impl JobHandler for Reevaluate {
    fn kind(&self) -> &'static str {
        berth_scanner::REEVALUATE
    }

    async fn run(&self, _payload: &str) -> anyhow::Result<()> {
        self.scanner.reevaluate().await?;
        Ok(())
    }
}

/// Start the worker loop and the schedulers of periodic jobs.
pub fn start_worker(
    cfg: &Config,
    registry: Arc<Registry>,
    sql: Arc<SqlMetaStore>,
    auth: Arc<berth_auth::Auth>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let scanner = Arc::new(berth_scanner::Scanner::new(registry.clone(), sql.clone()).with_budget(cfg.scan_timeout));
    let log: Arc<dyn berth_meta::EventLog> = sql.clone();
    let queue: Arc<dyn JobQueue> = sql;
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let mut opts = WorkerOptions::named(owner);
    opts.poll = cfg.upload_sweep_interval.min(opts.poll);
    let handlers: Vec<Arc<dyn JobHandler>> = vec![
        Arc::new(UploadExpiry { registry }),
        Arc::new(ScanJob { scanner: scanner.clone() }),
        Arc::new(Reevaluate { scanner }),
        Arc::new(EventPrune { log, retention: cfg.event_retention }),
        Arc::new(AuditPurge { auth, retention: cfg.audit_retention, max_entries: cfg.audit_max_entries }),
    ];
    vec![
        Worker::new(queue.clone(), handlers, opts).spawn(),
        berth_jobs::schedule_every(queue.clone(), UPLOAD_EXPIRY, cfg.upload_sweep_interval),
        berth_jobs::schedule_every(queue.clone(), EVENT_PRUNE, std::time::Duration::from_secs(3600)),
        berth_jobs::schedule_every(queue, AUDIT_PURGE, std::time::Duration::from_secs(3600)),
    ]
}
