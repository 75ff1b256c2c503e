//! The worker over a real queue (SQLite and PostgreSQL): retries, lease takeover after a
//! worker dies, cancellation of a running job, and the concurrency limit.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_jobs::{JobHandler, Worker, WorkerOptions, now_ms};
use berth_meta::{JobQueue, JobState, NewJob, SqlMetaStore};

struct Flaky {
    given_up: std::sync::Mutex<Vec<String>>,
    calls: AtomicUsize,
    running: AtomicUsize,
    max_seen: AtomicUsize,
    sleep: Duration,
    fail_first: bool,
}

#[async_trait::async_trait]
impl JobHandler for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn concurrency(&self) -> usize {
        2
    }
    async fn run(&self, _payload: &str) -> anyhow::Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_seen.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.sleep).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.fail_first && n == 0 { anyhow::bail!("transient failure") } else { Ok(()) }
    }
    async fn given_up(&self, _payload: &str, reason: &str) -> anyhow::Result<()> {
        self.given_up.lock().unwrap().push(reason.to_owned());
        Ok(())
    }
}

fn handler(sleep_ms: u64, fail_first: bool) -> Arc<Flaky> {
    Arc::new(Flaky {
        given_up: Default::default(),
        calls: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        max_seen: AtomicUsize::new(0),
        sleep: Duration::from_millis(sleep_ms),
        fail_first,
    })
}

fn fast(owner: &str) -> WorkerOptions {
    WorkerOptions {
        owner: owner.into(),
        lease: Duration::from_millis(600),
        poll: Duration::from_millis(30),
        backoff: Duration::from_millis(100),
    }
}

fn new_job() -> NewJob {
    NewJob { kind: "flaky".into(), payload: "{}".into(), dedup_key: None, max_attempts: 3, run_after: 0 }
}

async fn wait_for(q: &dyn JobQueue, id: &str, state: JobState) -> berth_meta::JobRecord {
    for _ in 0..300 {
        let j = q.job(id).await.unwrap().unwrap();
        if j.state == state {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never reached {state:?}: {:?}", q.job(id).await.unwrap());
}

async fn scenarios(q: Arc<dyn JobQueue>) {
    // a failure is retried after a backoff, then succeeds
    let h = handler(10, true);
    let w = Worker::new(q.clone(), vec![h.clone()], fast("w1")).spawn();
    let id = q.enqueue(&new_job(), now_ms()).await.unwrap().unwrap();
    let j = wait_for(&*q, &id, JobState::Succeeded).await;
    assert_eq!(j.attempts, 2);
    assert_eq!(j.last_error.as_deref(), Some("transient failure"));
    w.abort();

    // a worker dies holding a job: another takes it over when the lease expires
    let id = q.enqueue(&new_job(), now_ms()).await.unwrap().unwrap();
    let now = now_ms();
    let dead = q.claim("flaky", "dead-worker", now, now + 400, 2).await.unwrap().unwrap();
    assert_eq!(dead.id, id);
    let h = handler(10, false);
    let w = Worker::new(q.clone(), vec![h.clone()], fast("survivor")).spawn();
    let j = wait_for(&*q, &id, JobState::Succeeded).await;
    assert_eq!(j.attempts, 2, "the survivor's attempt is the second");
    assert!(!q.heartbeat(&id, "dead-worker", now_ms() + 1000, now_ms()).await.unwrap());

    // a job whose worker died on its last attempt is given up, and its handler told why
    // (the survivor is paused while the doomed worker claims it, so it cannot win the claim)
    w.abort();
    let mut once = new_job();
    once.max_attempts = 1;
    let id = q.enqueue(&once, now_ms()).await.unwrap().unwrap();
    let now = now_ms();
    assert_eq!(q.claim("flaky", "doomed-worker", now, now + 300, 2).await.unwrap().unwrap().id, id);
    let w = Worker::new(q.clone(), vec![h.clone()], fast("survivor")).spawn();
    let j = wait_for(&*q, &id, JobState::Failed).await;
    assert!(j.last_error.as_deref().unwrap().contains("stopped (crashed or was killed)"), "{j:?}");
    assert_eq!(h.given_up.lock().unwrap().len(), 1, "the survivor's handler recorded it");
    assert_eq!(h.calls.load(Ordering::SeqCst), 1, "and never ran it again");

    // cancelling a running job stops it; it stays cancelled
    let slow = handler(5_000, false);
    let w2 = Worker::new(q.clone(), vec![slow.clone()], fast("w2")).spawn();
    w.abort();
    let id = q.enqueue(&new_job(), now_ms()).await.unwrap().unwrap();
    wait_for(&*q, &id, JobState::Running).await;
    assert!(q.cancel(&id, now_ms(), &berth_meta::Origin::system()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(q.job(&id).await.unwrap().unwrap().state, JobState::Cancelled);
    w2.abort();

    // never more than the handler's concurrency at once, across two workers
    let h = handler(150, false);
    let wa = Worker::new(q.clone(), vec![h.clone()], fast("wa")).spawn();
    let wb = Worker::new(q.clone(), vec![h.clone()], fast("wb")).spawn();
    let ids: Vec<String> = futures_ids(&*q, 6).await;
    for id in &ids {
        wait_for(&*q, id, JobState::Succeeded).await;
    }
    assert_eq!(h.max_seen.load(Ordering::SeqCst), 2, "concurrency 2 across both workers");
    wa.abort();
    wb.abort();
}

async fn futures_ids(q: &dyn JobQueue, n: usize) -> Vec<String> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(q.enqueue(&new_job(), now_ms()).await.unwrap().unwrap());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let q: Arc<dyn JobQueue> = Arc::new(SqlMetaStore::open_sqlite(dir.path().join("m.db")).await.unwrap());
    scenarios(q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_on_postgres() {
    let url = berth_test_support::postgres_database().await;
    let q: Arc<dyn JobQueue> = Arc::new(SqlMetaStore::open_postgres(&url, 8).await.unwrap());
    scenarios(q).await;
}

/// Holds SQLite's write lock (inside a garbage-collection transaction) for longer than a
/// heartbeat interval.
struct HoldsWriteLock {
    store: Arc<SqlMetaStore>,
}

#[async_trait::async_trait]
impl JobHandler for HoldsWriteLock {
    fn kind(&self) -> &'static str {
        "holds-lock"
    }
    async fn run(&self, _payload: &str) -> anyhow::Result<()> {
        use berth_meta::{GcStore, MetaStore};
        let d = berth_types::Digest::sha256_of(b"held");
        self.store.pin_blob(&d, 1, 0, 1).await?;
        let slow = |_: Vec<berth_types::Digest>| -> futures::future::BoxFuture<'static, Result<(), String>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok(())
            })
        };
        self.store.gc_delete_blobs(&[d], i64::MAX, i64::MAX - 1, &slow).await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_holding_the_write_lock_is_not_starved_by_its_own_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlMetaStore::open_sqlite(dir.path().join("m.db")).await.unwrap());
    let q: Arc<dyn JobQueue> = store.clone();
    let w = Worker::new(q.clone(), vec![Arc::new(HoldsWriteLock { store })], fast("w")).spawn();
    let mut job = new_job();
    job.kind = "holds-lock".into();
    let id = q.enqueue(&job, now_ms()).await.unwrap().unwrap();
    // Heartbeats every 200 ms queue behind the handler's transaction; the handler must keep
    // running (before the fix it waited for the heartbeat, which waited for it: 30 s).
    let j = wait_for(&*q, &id, JobState::Succeeded).await;
    assert_eq!(j.attempts, 1, "its lease was renewed throughout: never taken over");
    w.abort();
}
