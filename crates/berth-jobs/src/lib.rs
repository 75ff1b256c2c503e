//! Background jobs: handlers, and the worker loop that runs them from the durable queue in
//! the metadata store ([`berth_meta::JobQueue`]).
//!
//! A worker claims due jobs of each kind it has a handler for (never more than the handler's
//! concurrency, counted across every replica), renews each lease by heartbeat while the
//! handler runs, and records success, or failure with a retry after an exponential backoff
//! until the attempts run out. If a heartbeat finds the lease lost (it expired and another
//! worker took the job, or an operator cancelled it) the handler is dropped at once. A worker
//! that dies simply stops renewing: its jobs become claimable when their leases expire.
//!
//! ```no_run
//! # async fn f(queue: std::sync::Arc<dyn berth_meta::JobQueue>, h: std::sync::Arc<dyn berth_jobs::JobHandler>) {
//! let worker = berth_jobs::Worker::new(queue, vec![h], berth_jobs::WorkerOptions::named("replica-1"));
//! let task = worker.spawn();
//! # }
//! ```

mod events;
mod gc;
mod policy;

pub use berth_meta::{
    GcRunRecord, JobRecord, JobState, MetaError, Origin, PolicyRecord, PolicyRunRecord, ScheduleRecord,
};
pub use events::{ConsumerOptions, run_consumer, tail};
pub use gc::{GC, GcJobPayload, GcParameters, GcRequestError, GcService, Schedule, next_fire};
pub use policy::{LIFECYCLE_SWEEP, POLICY_RUN, PolicyError, PolicyService};

/// The job service as the management API sees it: list, inspect and stop jobs.
#[derive(Clone)]
pub struct Jobs {
    queue: Arc<dyn JobQueue>,
}

impl Jobs {
    /// The service over `queue`.
    pub fn new(queue: Arc<dyn JobQueue>) -> Self {
        Jobs { queue }
    }

    /// Queue a job; returns its id, or `None` when one with its key is queued already.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Option<String>, MetaError> {
        self.queue.enqueue(job, now_ms()).await
    }

    /// Jobs, newest first, optionally of one kind and state.
    pub async fn list(
        &self,
        kind: Option<&str>,
        state: Option<JobState>,
        limit: i64,
    ) -> Result<Vec<JobRecord>, MetaError> {
        self.queue.jobs(kind, state, limit).await
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, MetaError> {
        self.queue.job(id).await
    }

    /// Stop a queued or running job (logged as `job.stopped`); `false` if it was neither.
    pub async fn stop(&self, id: &str, origin: &Origin) -> Result<bool, MetaError> {
        self.queue.cancel(id, now_ms(), origin).await
    }

    /// Run a failed or stopped job again: a new job of the same kind and payload, with a
    /// fresh set of attempts. Returns its id, or `None` if the job is not failed or stopped.
    pub async fn retry(&self, id: &str) -> Result<Option<String>, MetaError> {
        let Some(j) = self.queue.job(id).await? else { return Ok(None) };
        if !matches!(j.state, JobState::Failed | JobState::Cancelled) {
            return Ok(None);
        }
        let job = NewJob {
            kind: j.kind,
            payload: j.payload,
            dedup_key: None,
            max_attempts: j.max_attempts.max(1),
            run_after: 0,
        };
        self.queue.enqueue(&job, now_ms()).await
    }
}

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_meta::JobQueue;
pub use berth_meta::NewJob;
use tracing::{Instrument, debug, info_span, warn};

/// Runs jobs of one kind. Handlers must be idempotent: a job may run again after a crash.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The kind it runs, e.g. `upload-expiry`.
    fn kind(&self) -> &'static str;
    /// Most jobs of this kind running at once, across all replicas.
    fn concurrency(&self) -> usize {
        1
    }
    /// Run one job.
    async fn run(&self, payload: &str) -> anyhow::Result<()>;
    /// A job given up for good without [`JobHandler::run`] returning (its worker died on
    /// every attempt): record the failure where users see it. The default does nothing.
    async fn given_up(&self, _payload: &str, _reason: &str) -> anyhow::Result<()> {
        Ok(())
    }
}

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// This worker's name in leases (unique per process).
    pub owner: String,
    /// Lease length; heartbeats renew it every third of it.
    pub lease: Duration,
    /// How often to look for due jobs.
    pub poll: Duration,
    /// First retry delay; doubles with each attempt.
    pub backoff: Duration,
}

impl WorkerOptions {
    /// Defaults (30 s leases, 1 s polling, 5 s first backoff) for a worker called `owner`.
    pub fn named(owner: impl Into<String>) -> Self {
        WorkerOptions {
            owner: owner.into(),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            backoff: Duration::from_secs(5),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The worker loop.
pub struct Worker {
    queue: Arc<dyn JobQueue>,
    handlers: Vec<Arc<dyn JobHandler>>,
    opts: WorkerOptions,
}

impl Worker {
    /// A worker over `queue` with these handlers.
    pub fn new(queue: Arc<dyn JobQueue>, handlers: Vec<Arc<dyn JobHandler>>, opts: WorkerOptions) -> Self {
        Worker { queue, handlers, opts }
    }

    /// Run until the returned task is aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let running: HashMap<&'static str, Arc<AtomicUsize>> =
            self.handlers.iter().map(|h| (h.kind(), Arc::new(AtomicUsize::new(0)))).collect();
        loop {
            let mut claimed_any = false;
            for h in &self.handlers {
                let count = &running[h.kind()];
                if count.load(Ordering::Acquire) >= h.concurrency() {
                    continue;
                }
                let now = now_ms();
                match self.queue.reap(h.kind(), now).await {
                    Ok(dead) => {
                        for job in dead {
                            let reason = job.last_error.clone().unwrap_or_default();
                            warn!(job.id = %job.id, job.kind = %job.kind, %reason, "job given up");
                            if let Err(e) = h.given_up(&job.payload, &reason).await {
                                warn!(job.id = %job.id, error = %format!("{e:#}"), "recording a given-up job failed");
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "reaping dead jobs failed"),
                }
                let lease_until = now + self.opts.lease.as_millis() as i64;
                match self.queue.claim(h.kind(), &self.opts.owner, now, lease_until, h.concurrency() as i64).await {
                    Ok(Some(job)) => {
                        claimed_any = true;
                        count.fetch_add(1, Ordering::AcqRel);
                        let span =
                            info_span!("job", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempts);
                        let (queue, handler, opts, count) =
                            (self.queue.clone(), h.clone(), self.opts.clone(), count.clone());
                        tokio::spawn(
                            async move {
                                execute(queue, handler, job, opts).await;
                                count.fetch_sub(1, Ordering::AcqRel);
                            }
                            .instrument(span),
                        );
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, kind = h.kind(), "failed to claim a job"),
                }
            }
            if !claimed_any {
                tokio::time::sleep(self.opts.poll).await;
            }
        }
    }
}

async fn execute(queue: Arc<dyn JobQueue>, handler: Arc<dyn JobHandler>, job: JobRecord, opts: WorkerOptions) {
    let owner = opts.owner.as_str();
    if job.attempts > job.max_attempts {
        // Its previous workers died holding it too often.
        let _ = queue.fail(&job.id, owner, "gave up: lease expired on every attempt", None, now_ms()).await;
        return;
    }
    let run = handler.run(&job.payload);
    tokio::pin!(run);
    // Heartbeats run beside the handler, never instead of it: a heartbeat waiting for the
    // database must not stop the handler from finishing what the database waits for (a
    // handler holding SQLite's write lock while the heartbeat queues behind it).
    let heartbeat = {
        let (queue, id, owner, lease) = (queue.clone(), job.id.clone(), opts.owner.clone(), opts.lease);
        async move {
            let mut beat = tokio::time::interval((lease / 3).max(Duration::from_millis(50)));
            beat.tick().await;
            loop {
                beat.tick().await;
                let now = now_ms();
                match queue.heartbeat(&id, &owner, now + lease.as_millis() as i64, now).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => warn!(error = %e, "failed to renew a job lease"),
                }
            }
        }
    };
    let heartbeat = tokio::spawn(heartbeat.in_current_span());
    tokio::pin!(heartbeat);
    let result = tokio::select! {
        r = &mut run => Some(r),
        _ = &mut heartbeat => None,
    };
    heartbeat.abort();
    let now = now_ms();
    match result {
        None => warn!("job lease lost or job cancelled; stopped it"),
        Some(Ok(())) => {
            if let Err(e) = queue.succeed(&job.id, owner, now).await {
                warn!(error = %e, "failed to record job success");
            }
            debug!("job succeeded");
        }
        Some(Err(err)) => {
            let retry_at = (job.attempts < job.max_attempts).then(|| {
                let factor = 1u32 << (job.attempts.clamp(1, 16) - 1);
                now + (opts.backoff * factor).as_millis() as i64
            });
            warn!(error = %format!("{err:#}"), retry = retry_at.is_some(), "job failed");
            if let Err(e) = queue.fail(&job.id, owner, &format!("{err:#}"), retry_at, now).await {
                warn!(error = %e, "failed to record job failure");
            }
        }
    }
}

/// Enqueue a job of `kind` every `interval`, de-duplicated by `kind` so that however many
/// replicas schedule it, at most one is queued or running at a time.
pub fn schedule_every(queue: Arc<dyn JobQueue>, kind: &'static str, interval: Duration) -> tokio::task::JoinHandle<()> {
    schedule_every_from(queue, kind, Duration::ZERO, interval)
}

/// Like [`schedule_every`], with the first job `first` after now rather than at once.
pub fn schedule_every_from(
    queue: Arc<dyn JobQueue>,
    kind: &'static str,
    first: Duration,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, interval);
        loop {
            tick.tick().await;
            let job = NewJob {
                kind: kind.into(),
                payload: "{}".into(),
                dedup_key: Some(kind.into()),
                max_attempts: 3,
                run_after: 0,
            };
            if let Err(e) = queue.enqueue(&job, now_ms()).await {
                warn!(error = %e, kind, "failed to schedule a job");
            }
        }
    })
}
