//! Lifecycle and retention policies as a service: store them (validated by the policy crate),
//! start their runs as jobs, and fire them on time. The runs themselves execute in the
//! registry (`Registry::execute_policy_run`, job kind [`POLICY_RUN`]).
//!
//! ECR lifecycle policies apply on their own: the hourly [`LIFECYCLE_SWEEP`] job starts a run
//! for every policy changed since it was last applied or last applied a day ago or more (ECR
//! expires images within 24 hours of a policy taking effect). Harbor retention policies run
//! on their trigger's cron (six fields, seconds first, as GC's) or on demand.

use std::sync::Arc;

use berth_meta::{GcStore, JobQueue, MetaError, NewJob, PolicyRecord, PolicyRunRecord, PolicyStore, ScheduleRecord};
use berth_policy::lifecycle::LifecyclePolicy;
use berth_policy::retention::RetentionPolicy;

use crate::{next_fire, now_ms};

/// Job kind that executes one policy run (payload `{"run": id}`).
pub const POLICY_RUN: &str = "policy-run";
/// Hourly job kind that applies due lifecycle policies.
pub const LIFECYCLE_SWEEP: &str = "lifecycle-sweep";

/// Policy kinds (the `policies.kind` column).
pub const LIFECYCLE: &str = "lifecycle";
/// Harbor tag retention.
pub const RETENTION: &str = "retention";

const DAY_MS: i64 = 86_400_000;

/// Why a policy request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The document or request is not valid (the message says why, in the API's words).
    #[error("{0}")]
    Invalid(String),
    /// No such policy or run.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// The service.
#[derive(Clone)]
pub struct PolicyService {
    store: Arc<dyn PolicyStore>,
    schedules: Arc<dyn GcStore>,
    queue: Arc<dyn JobQueue>,
}

fn schedule_name(policy: i64) -> String {
    format!("retention/{policy}")
}

fn event(op: &str, kind: &str, scope: &str, origin: &berth_meta::Origin) -> berth_meta::NewEvent {
    let e = berth_meta::NewEvent::new(berth_meta::EventKind::PolicyChanged, now_ms(), origin)
        .data(serde_json::json!({"op": op, "kind": kind, "scope": scope}));
    if kind == LIFECYCLE { e.repo(scope) } else { e.project(scope) }
}

impl PolicyService {
    /// The service over its stores.
    pub fn new(store: Arc<dyn PolicyStore>, schedules: Arc<dyn GcStore>, queue: Arc<dyn JobQueue>) -> Self {
        PolicyService { store, schedules, queue }
    }

    /// The lifecycle policy of `repo`.
    pub async fn lifecycle(&self, repo: &str) -> Result<Option<PolicyRecord>, MetaError> {
        self.store.policy(LIFECYCLE, repo).await
    }

    /// Set the lifecycle policy of `repo` (validated as ECR validates it).
    pub async fn put_lifecycle(
        &self,
        repo: &str,
        text: &str,
        origin: &berth_meta::Origin,
    ) -> Result<PolicyRecord, PolicyError> {
        LifecyclePolicy::parse(text).map_err(PolicyError::Invalid)?;
        self.store.put_policy(LIFECYCLE, repo, text, now_ms(), &event("put", LIFECYCLE, repo, origin)).await?;
        self.store.policy(LIFECYCLE, repo).await?.ok_or_else(|| PolicyError::NotFound(repo.into()))
    }

    /// Delete the lifecycle policy of `repo`; returns what was deleted.
    pub async fn delete_lifecycle(
        &self,
        repo: &str,
        origin: &berth_meta::Origin,
    ) -> Result<Option<PolicyRecord>, MetaError> {
        self.store.delete_policy(LIFECYCLE, repo, &event("delete", LIFECYCLE, repo, origin)).await
    }

    /// Start a preview of `text` (or, absent, of the stored policy) on `repo`; replaces the
    /// repository's previous preview. Returns the run id and the text evaluated.
    pub async fn start_preview(&self, repo: &str, text: Option<&str>) -> Result<(i64, String), PolicyError> {
        let stored = self.store.policy(LIFECYCLE, repo).await?;
        let text = match (text, &stored) {
            (Some(t), _) => t.to_string(),
            (None, Some(p)) => p.document.clone(),
            (None, None) => {
                return Err(PolicyError::NotFound(format!(
                    "Lifecycle policy does not exist for the repository with name '{repo}'"
                )));
            }
        };
        LifecyclePolicy::parse(&text).map_err(PolicyError::Invalid)?;
        // A preview of a text never stored still needs a row to hang its run on: ECR keeps
        // one preview per repository, policy or not, so keep an empty placeholder.
        let policy = match stored {
            Some(p) => p,
            None => self.placeholder(repo).await?,
        };
        let id = self
            .store
            .create_policy_run(&policy, crate::policy::PREVIEW, "MANUAL", true, &text, true, now_ms())
            .await?;
        self.enqueue(id).await?;
        Ok((id, text))
    }

    async fn placeholder(&self, repo: &str) -> Result<PolicyRecord, MetaError> {
        let kind = PREVIEW_ONLY;
        if let Some(p) = self.store.policy(kind, repo).await? {
            return Ok(p);
        }
        let e = event("preview", LIFECYCLE, repo, &berth_meta::Origin::system());
        self.store.put_policy(kind, repo, "", now_ms(), &e).await?;
        self.store.policy(kind, repo).await?.ok_or_else(|| MetaError::Corrupt("placeholder policy vanished".into()))
    }

    /// The latest preview of `repo`, with its result.
    pub async fn preview(&self, repo: &str) -> Result<Option<PolicyRunRecord>, MetaError> {
        for kind in [LIFECYCLE, PREVIEW_ONLY] {
            if let Some(p) = self.store.policy(kind, repo).await? {
                let (runs, _) = self.store.policy_runs(p.id, PREVIEW, 0, 1).await?;
                if let Some(r) = runs.into_iter().next() {
                    return self.store.policy_run(r.id).await;
                }
            }
        }
        Ok(None)
    }

    /// Start an execution of the lifecycle policy of `repo` now.
    pub async fn apply_lifecycle(&self, repo: &str, trigger: &str) -> Result<i64, PolicyError> {
        let p = self.store.policy(LIFECYCLE, repo).await?.ok_or_else(|| {
            PolicyError::NotFound(format!("Lifecycle policy does not exist for the repository with name '{repo}'"))
        })?;
        let id = self.store.create_policy_run(&p, LIFECYCLE, trigger, false, &p.document, false, now_ms()).await?;
        self.enqueue(id).await?;
        Ok(id)
    }

    /// Start runs of every lifecycle policy due (changed since last applied, or applied a
    /// day ago or more). Returns the runs started.
    pub async fn sweep_lifecycle(&self, now: i64) -> Result<Vec<i64>, PolicyError> {
        let mut started = Vec::new();
        for p in self.store.policies(LIFECYCLE).await? {
            let due = match p.evaluated_at {
                None => true,
                Some(at) => at < p.updated_at || at <= now - DAY_MS,
            };
            if due {
                // One run per policy at a time.
                let (runs, _) = self.store.policy_runs(p.id, LIFECYCLE, 0, 1).await?;
                if runs.first().is_some_and(|r| busy(r, now)) {
                    continue;
                }
                started.push(self.apply_lifecycle(&p.scope, "SCHEDULE").await?);
            }
        }
        Ok(started)
    }

    /// The retention policy by id.
    pub async fn retention(&self, id: i64) -> Result<Option<PolicyRecord>, MetaError> {
        Ok(self.store.policy_by_id(id).await?.filter(|p| p.kind == RETENTION))
    }

    /// The retention policy of `project`.
    pub async fn project_retention(&self, project: &str) -> Result<Option<PolicyRecord>, MetaError> {
        self.store.policy(RETENTION, project).await
    }

    /// Create or replace the retention policy of `project`, and its schedule.
    pub async fn put_retention(
        &self,
        project: &str,
        policy: &RetentionPolicy,
        origin: &berth_meta::Origin,
    ) -> Result<PolicyRecord, PolicyError> {
        policy.validate().map_err(PolicyError::Invalid)?;
        let cron = policy.trigger.as_ref().and_then(|t| t.cron()).map(str::to_string);
        let now = now_ms();
        let next_at = match &cron {
            Some(c) => Some(next_fire(c, now).map_err(PolicyError::Invalid)?),
            None => None,
        };
        let text = serde_json::to_string(policy).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        let id =
            self.store.put_policy(RETENTION, project, &text, now, &event("put", RETENTION, project, origin)).await?;
        self.set_schedule(id, cron, next_at, now).await?;
        self.store.policy_by_id(id).await?.ok_or_else(|| PolicyError::NotFound(format!("retention policy {id}")))
    }

    /// Set (or, without a cron, clear) the schedule of retention policy `id`.
    async fn set_schedule(
        &self,
        id: i64,
        cron: Option<String>,
        next_at: Option<i64>,
        now: i64,
    ) -> Result<(), MetaError> {
        let kind = if cron.is_some() { "Custom" } else { "None" };
        let record = ScheduleRecord {
            name: schedule_name(id),
            kind: kind.into(),
            cron,
            parameters: "{}".into(),
            next_at,
            created_at: now,
            updated_at: now,
        };
        self.schedules.put_schedule(&record).await
    }

    /// Delete the retention policy `id` (and stop its schedule).
    pub async fn delete_retention(&self, id: i64, origin: &berth_meta::Origin) -> Result<bool, MetaError> {
        let Some(p) = self.retention(id).await? else { return Ok(false) };
        self.store.delete_policy(RETENTION, &p.scope, &event("delete", RETENTION, &p.scope, origin)).await?;
        self.set_schedule(id, None, None, now_ms()).await?;
        Ok(true)
    }

    /// Start an execution of retention policy `id` (`trigger`: `MANUAL` or `SCHEDULE`).
    pub async fn execute_retention(&self, id: i64, dry_run: bool, trigger: &str) -> Result<i64, PolicyError> {
        let p = self
            .retention(id)
            .await?
            .ok_or_else(|| PolicyError::NotFound(format!("retention policy {id} not found")))?;
        let (runs, _) = self.store.policy_runs(p.id, RETENTION, 0, 1).await?;
        if let Some(r) = runs.first() {
            if busy(r, now_ms()) {
                return Err(PolicyError::Invalid(format!("execution {} of this policy is still running", r.id)));
            }
            if matches!(r.status.as_str(), "Pending" | "Running") {
                let gone = r#"{"error": "the job carrying this run never started"}"#;
                self.store.update_policy_run(r.id, "Error", Some(gone), now_ms()).await?;
            }
        }
        let run = self.store.create_policy_run(&p, RETENTION, trigger, dry_run, &p.document, false, now_ms()).await?;
        self.enqueue(run).await?;
        Ok(run)
    }

    /// Executions of retention policy `id`, newest first, and how many there are.
    pub async fn executions(&self, id: i64, offset: i64, limit: i64) -> Result<(Vec<PolicyRunRecord>, i64), MetaError> {
        self.store.policy_runs(id, RETENTION, offset, limit).await
    }

    /// One run.
    pub async fn run(&self, id: i64) -> Result<Option<PolicyRunRecord>, MetaError> {
        self.store.policy_run(id).await
    }

    /// Ask a pending or running execution to stop.
    pub async fn stop(&self, run: &PolicyRunRecord) -> Result<(), PolicyError> {
        match run.status.as_str() {
            "Pending" => {
                Ok(self.store.update_policy_run(run.id, "Stopped", Some(r#"{"tasks": []}"#), now_ms()).await?)
            }
            "Running" => Ok(self.store.update_policy_run(run.id, "Stopping", None, now_ms()).await?),
            other => Err(PolicyError::Invalid(format!("execution {} is {other}, not running", run.id))),
        }
    }

    /// Fire every retention schedule that is due (each worker ticks; one wins each firing).
    pub async fn tick(&self, now: i64) -> Result<Vec<i64>, PolicyError> {
        let mut started = Vec::new();
        for p in self.store.policies(RETENTION).await? {
            let Some(s) = self.schedules.schedule(&schedule_name(p.id)).await? else { continue };
            let (Some(due), Some(cron)) = (s.next_at, s.cron.as_deref()) else { continue };
            if due > now {
                continue;
            }
            let next = next_fire(cron, now).ok();
            if !self.schedules.claim_schedule(&s.name, due, next, now).await? {
                continue;
            }
            match self.execute_retention(p.id, false, "SCHEDULE").await {
                Ok(id) => started.push(id),
                Err(PolicyError::Invalid(e)) => {
                    tracing::warn!(policy = p.id, error = %e, "scheduled retention skipped")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(started)
    }

    async fn enqueue(&self, run: i64) -> Result<(), MetaError> {
        let job = NewJob {
            kind: POLICY_RUN.into(),
            payload: serde_json::json!({ "run": run }).to_string(),
            dedup_key: Some(format!("{POLICY_RUN}-{run}")),
            max_attempts: 1,
            run_after: 0,
        };
        self.queue.enqueue(&job, now_ms()).await?;
        Ok(())
    }
}

/// Whether a run still holds its policy: running (a worker that dies gives its job up, and
/// the job's `given_up` marks the run failed), or pending for less than an hour (a queued
/// job starts within seconds; one pending longer lost its job).
fn busy(r: &PolicyRunRecord, now: i64) -> bool {
    match r.status.as_str() {
        "Running" | "Stopping" => true,
        "Pending" => r.updated_at > now - 3_600_000,
        _ => false,
    }
}

/// Run kind of a lifecycle preview.
pub const PREVIEW: &str = "lifecycle-preview";
/// Policy kind of the placeholder a preview of an unstored text hangs on.
const PREVIEW_ONLY: &str = "lifecycle-preview-only";
