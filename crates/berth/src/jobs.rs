//! The background jobs this binary runs, and how a process with the worker role starts them.

use std::sync::Arc;

use berth_config::Config;
use berth_jobs::{JobHandler, Worker, WorkerOptions};
use berth_meta::{JobQueue, SqlMetaStore};
use berth_registry::Registry;

const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

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

/// Kind of the job that deletes events older than `events.retention` (and finished webhook
/// deliveries as old).
pub const EVENT_PRUNE: &str = "event-prune";

/// Deletes events, and finished webhook deliveries, older than the retention.
struct EventPrune {
    log: Arc<SqlMetaStore>,
    retention: std::time::Duration,
}

#[async_trait::async_trait]
impl JobHandler for EventPrune {
    fn kind(&self) -> &'static str {
        EVENT_PRUNE
    }

    async fn run(&self, _payload: &str) -> anyhow::Result<()> {
        let before = berth_jobs::now_ms() - self.retention.as_millis() as i64;
        let n = berth_meta::EventLog::prune_events(&*self.log, before).await?;
        let d = berth_meta::WebhookStore::prune_webhook_deliveries(&*self.log, before).await?;
        tracing::info!(deleted = n, webhook_deliveries = d, "pruned the event log");
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

/// Kind of the job that re-hashes stored blobs (`Registry::scrub`).
pub const SCRUB: &str = "scrub";
/// Each blob is re-hashed when it was last verified longer ago than this.
pub const SCRUB_RECHECK: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Re-hashes blobs unchecked for [`SCRUB_RECHECK`], at most 64 MiB/s and 50 minutes a run.
struct ScrubJob {
    registry: Arc<Registry>,
}

#[async_trait::async_trait]
impl JobHandler for ScrubJob {
    fn kind(&self) -> &'static str {
        SCRUB
    }

    async fn run(&self, _payload: &str) -> anyhow::Result<()> {
        let opts = berth_registry::ScrubOptions {
            rate: 64 << 20,
            recheck_after: SCRUB_RECHECK,
            max_time: Some(std::time::Duration::from_secs(50 * 60)),
        };
        self.registry.scrub(&opts).await?;
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

/// Makes a CVE export's CSV (`berth_admin::export::CVE_EXPORT`).
struct CveExportJob {
    registry: Arc<Registry>,
    auth: Arc<berth_auth::Auth>,
    scans: berth_scanner::Scanning,
}

#[async_trait::async_trait]
impl JobHandler for CveExportJob {
    fn kind(&self) -> &'static str {
        berth_admin::export::CVE_EXPORT
    }

    async fn run(&self, payload: &str) -> anyhow::Result<()> {
        let v: serde_json::Value = serde_json::from_str(payload)?;
        let id = v["id"].as_i64().ok_or_else(|| anyhow::anyhow!("no id in {payload}"))?;
        let Some(e) = self.scans.export(id).await? else { return Ok(()) };
        if e.status != "Running" {
            return Ok(());
        }
        match berth_admin::export::build(&self.registry, &self.auth, &self.scans, &e).await {
            Ok((rows, csv)) => {
                let text = if rows == 1 { "1 finding".to_owned() } else { format!("{rows} findings") };
                self.scans.finish_export(id, "Success", &text, Some(&csv)).await?;
            }
            Err(why) => self.scans.finish_export(id, "Error", &why, None).await?,
        }
        Ok(())
    }

    async fn given_up(&self, payload: &str, reason: &str) -> anyhow::Result<()> {
        let v: serde_json::Value = serde_json::from_str(payload)?;
        if let Some(id) = v["id"].as_i64() {
            self.scans.finish_export(id, "Error", &format!("the export never finished: {reason}"), None).await?;
        }
        Ok(())
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

/// Runs one garbage collection (`berth_jobs::GC`): the run's record says what to do, and
/// receives the outcome and the log.
struct GcJob {
    collector: berth_registry::Collector,
    store: Arc<dyn berth_meta::GcStore>,
}

#[async_trait::async_trait]
impl JobHandler for GcJob {
    fn kind(&self) -> &'static str {
        berth_jobs::GC
    }

    async fn run(&self, payload: &str) -> anyhow::Result<()> {
        let p: berth_jobs::GcJobPayload = serde_json::from_str(payload)?;
        let Some(run) = self.store.gc_run(p.run).await? else { return Ok(()) };
        if run.status != "Pending" {
            return Ok(());
        }
        let params: berth_jobs::GcParameters = serde_json::from_str(&run.parameters)?;
        let now = berth_jobs::now_ms;
        self.store.update_gc_run(run.id, "Running", None, None, now(), None).await?;
        let opts = berth_registry::GcOptions {
            delete_untagged: params.delete_untagged,
            dry_run: params.dry_run,
            time_window: std::time::Duration::from_secs(params.time_window * 3600),
            workers: params.workers as usize * 4,
        };
        let store = self.store.clone();
        let id = run.id;
        let stop: berth_registry::StopCheck = Box::new(move || {
            let store = store.clone();
            Box::pin(async move { matches!(store.gc_run(id).await, Ok(Some(r)) if r.status == "Stopping") })
        });
        let mut log = String::new();
        match self.collector.run(&opts, &stop, &mut log).await {
            Ok(report) => {
                let result = serde_json::to_value(&report)?;
                let mut data = result.clone();
                data["run"] = id.into();
                let event =
                    berth_meta::NewEvent::new(berth_meta::EventKind::GcCompleted, now(), &berth_meta::Origin::system())
                        .data(data);
                let status = if report.stopped { "Stopped" } else { "Success" };
                self.store
                    .update_gc_run(id, status, Some(&result.to_string()), Some(&log), now(), Some(&event))
                    .await?;
            }
            Err(e) => {
                log.push_str(&format!("garbage collection failed: {e}\n"));
                tracing::error!(error = %e, run = id, "garbage collection failed");
                self.store.update_gc_run(id, "Error", None, Some(&log), now(), None).await?;
            }
        }
        Ok(())
    }

    async fn given_up(&self, payload: &str, reason: &str) -> anyhow::Result<()> {
        let p: berth_jobs::GcJobPayload = serde_json::from_str(payload)?;
        let log = format!("the collection never finished: {reason}\n");
        self.store.update_gc_run(p.run, "Error", None, Some(&log), berth_jobs::now_ms(), None).await?;
        Ok(())
    }
}

/// Executes one lifecycle or retention run (`berth_jobs::POLICY_RUN`).
struct PolicyRunJob {
    registry: Arc<Registry>,
}

#[async_trait::async_trait]
impl JobHandler for PolicyRunJob {
    fn kind(&self) -> &'static str {
        berth_jobs::POLICY_RUN
    }

    async fn run(&self, payload: &str) -> anyhow::Result<()> {
        let p: berth_jobs::GcJobPayload = serde_json::from_str(payload)?;
        self.registry.execute_policy_run(p.run).await?;
        Ok(())
    }

    async fn given_up(&self, payload: &str, reason: &str) -> anyhow::Result<()> {
        let p: berth_jobs::GcJobPayload = serde_json::from_str(payload)?;
        self.registry.fail_policy_run(p.run, &format!("the run never finished: {reason}")).await?;
        Ok(())
    }
}

/// Runs (or resumes) one replication execution (`replication`).
struct ReplicationJob {
    replication: Arc<berth_registry::Replication>,
}

/// The execution a `replication` job runs.
fn execution_of(payload: &str) -> anyhow::Result<i64> {
    let v: serde_json::Value = serde_json::from_str(payload)?;
    v["execution"].as_i64().ok_or_else(|| anyhow::anyhow!("a replication job without an execution: {payload}"))
}

#[async_trait::async_trait]
impl JobHandler for ReplicationJob {
    fn kind(&self) -> &'static str {
        berth_registry::REPLICATION
    }

    fn concurrency(&self) -> usize {
        2
    }

    async fn run(&self, payload: &str) -> anyhow::Result<()> {
        self.replication.execute(execution_of(payload)?).await?;
        Ok(())
    }

    async fn given_up(&self, payload: &str, reason: &str) -> anyhow::Result<()> {
        self.replication.fail(execution_of(payload)?, &format!("the execution never finished: {reason}")).await?;
        Ok(())
    }
}

/// Runs the replication a push started (`replication-event`): one artifact, one policy.
struct ReplicationEventJob {
    replication: Arc<berth_registry::Replication>,
}

#[async_trait::async_trait]
impl JobHandler for ReplicationEventJob {
    fn kind(&self) -> &'static str {
        berth_registry::REPLICATION_EVENT
    }

    fn concurrency(&self) -> usize {
        2
    }

    async fn run(&self, payload: &str) -> anyhow::Result<()> {
        let v: serde_json::Value = serde_json::from_str(payload)?;
        let text = |k: &str| v[k].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no {k} in {payload}"));
        let policy = v["policy"].as_i64().ok_or_else(|| anyhow::anyhow!("no policy in {payload}"))?;
        if v["op"] == "delete" {
            let tag = v["tag"].as_str();
            self.replication.execute_deletion(policy, &text("repo")?, tag, &text("digest")?, &text("key")?).await?;
        } else {
            self.replication.execute_event(policy, &text("repo")?, &text("tag")?, &text("key")?).await?;
        }
        Ok(())
    }
}

/// Starts runs of the lifecycle policies that are due (`berth_jobs::LIFECYCLE_SWEEP`).
struct LifecycleSweep {
    service: berth_jobs::PolicyService,
}

#[async_trait::async_trait]
impl JobHandler for LifecycleSweep {
    fn kind(&self) -> &'static str {
        berth_jobs::LIFECYCLE_SWEEP
    }

    async fn run(&self, _payload: &str) -> anyhow::Result<()> {
        let started = self.service.sweep_lifecycle(berth_jobs::now_ms()).await?;
        if !started.is_empty() {
            tracing::info!(runs = ?started, "lifecycle policies applied");
        }
        Ok(())
    }
}

/// Fire retention schedules when due (every worker replica ticks; one wins each firing).
fn retention_schedule(service: berth_jobs::PolicyService) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(15));
        loop {
            tick.tick().await;
            match service.tick(berth_jobs::now_ms()).await {
                Ok(started) if !started.is_empty() => tracing::info!(runs = ?started, "scheduled retention started"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention schedule"),
            }
        }
    })
}

/// Fire scheduled replication policies when due (every worker replica ticks; one wins each
/// firing through the `schedules` table, as retention and GC do).
fn replication_schedule(
    replication: Arc<berth_registry::Replication>,
    schedules: Arc<dyn berth_meta::GcStore>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Err(e) = fire_replications(&replication, schedules.as_ref(), berth_jobs::now_ms()).await {
                tracing::warn!(error = %format!("{e:#}"), "replication schedule");
            }
        }
    })
}

async fn fire_replications(
    replication: &berth_registry::Replication,
    schedules: &dyn berth_meta::GcStore,
    now: i64,
) -> anyhow::Result<()> {
    for (id, cron) in replication.scheduled().await? {
        let name = format!("replication-{id}");
        match schedules.schedule(&name).await? {
            Some(s) if s.cron.as_deref() == Some(cron.as_str()) => {
                let Some(due) = s.next_at.filter(|due| *due <= now) else { continue };
                let next = berth_jobs::next_fire(&cron, now).ok();
                if schedules.claim_schedule(&name, due, next, now).await? {
                    // A firing while the last run is still going is skipped, not stacked.
                    if replication.running(id).await? {
                        tracing::info!(policy = id, "scheduled replication skipped: the last run is still going");
                        continue;
                    }
                    let run = replication.start(id, "scheduled").await?;
                    tracing::info!(policy = id, run, "scheduled replication started");
                }
            }
            // New, or its cron changed: it fires next from now.
            _ => {
                let next = berth_jobs::next_fire(&cron, now).map_err(anyhow::Error::msg)?;
                schedules
                    .put_schedule(&berth_meta::ScheduleRecord {
                        name,
                        kind: "Custom".into(),
                        cron: Some(cron),
                        parameters: "{}".into(),
                        next_at: Some(next),
                        created_at: now,
                        updated_at: now,
                    })
                    .await?;
            }
        }
    }
    Ok(())
}

/// Fire the garbage-collection schedule when due (every worker replica ticks; one wins).
fn gc_schedule(service: berth_jobs::GcService) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(15));
        loop {
            tick.tick().await;
            match service.tick(berth_jobs::now_ms()).await {
                Ok(Some(id)) => tracing::info!(run = id, "scheduled garbage collection started"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "garbage collection schedule"),
            }
        }
    })
}

/// Start the worker loop and the schedulers of periodic jobs.
pub fn start_worker(
    cfg: &Config,
    registry: Arc<Registry>,
    sql: Arc<SqlMetaStore>,
    auth: Arc<berth_auth::Auth>,
    replication: Arc<berth_registry::Replication>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let scanner = Arc::new(berth_scanner::Scanner::new(registry.clone(), sql.clone()).with_budget(cfg.scan_timeout));
    let log = sql.clone();
    let gc_store: Arc<dyn berth_meta::GcStore> = sql.clone();
    let gc_store_for_schedules = gc_store.clone();
    let gc_service = berth_jobs::GcService::new(gc_store.clone(), sql.clone());
    let policies = berth_jobs::PolicyService::new(sql.clone(), sql.clone(), sql.clone());
    let scans = berth_scanner::Scanning::new(sql.clone());
    let queue: Arc<dyn JobQueue> = sql;
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let mut opts = WorkerOptions::named(owner);
    opts.poll = cfg.upload_sweep_interval.min(opts.poll);
    let collector = berth_registry::Collector::new(registry.clone(), gc_store.clone());
    let handlers: Vec<Arc<dyn JobHandler>> = vec![
        Arc::new(GcJob { collector, store: gc_store }),
        Arc::new(ScrubJob { registry: registry.clone() }),
        Arc::new(ReplicationJob { replication: replication.clone() }),
        Arc::new(ReplicationEventJob { replication: replication.clone() }),
        Arc::new(CveExportJob { registry: registry.clone(), auth: auth.clone(), scans }),
        Arc::new(PolicyRunJob { registry: registry.clone() }),
        Arc::new(LifecycleSweep { service: policies.clone() }),
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
        berth_jobs::schedule_every(queue.clone(), AUDIT_PURGE, std::time::Duration::from_secs(3600)),
        berth_jobs::schedule_every(queue.clone(), SCRUB, std::time::Duration::from_secs(3600)),
        // Not at start: a policy saved a moment after start is applied by the next hourly
        // sweep (ECR promises within 24 hours), not raced by the start-up one.
        berth_jobs::schedule_every_from(queue, berth_jobs::LIFECYCLE_SWEEP, HOUR, HOUR),
        gc_schedule(gc_service),
        replication_schedule(replication, gc_store_for_schedules),
        retention_schedule(policies),
    ]
}
