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

/// Start the worker loop and the schedulers of periodic jobs.
pub fn start_worker(cfg: &Config, registry: Arc<Registry>, sql: Arc<SqlMetaStore>) -> Vec<tokio::task::JoinHandle<()>> {
    let queue: Arc<dyn JobQueue> = sql;
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let mut opts = WorkerOptions::named(owner);
    opts.poll = cfg.upload_sweep_interval.min(opts.poll);
    let handlers: Vec<Arc<dyn JobHandler>> = vec![Arc::new(UploadExpiry { registry })];
    vec![
        Worker::new(queue.clone(), handlers, opts).spawn(),
        berth_jobs::schedule_every(queue, UPLOAD_EXPIRY, cfg.upload_sweep_interval),
    ]
}
