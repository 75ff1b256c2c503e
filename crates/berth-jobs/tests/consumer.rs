//! An event consumer over a real log (SQLite): every event is seen, in order; progress over
//! events without effects is held in memory and stored once the log goes quiet, not once per
//! batch; and a cursor moved by another process is followed.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_jobs::{ConsumerOptions, run_consumer};
use berth_meta::{Consumer, ConsumerError, Effect, EventKind, EventLog, EventRecord, NewEvent, Origin, SqlMetaStore};

/// Records what it saw, and the stored cursor at each batch; has no effects.
struct Watcher {
    store: Arc<SqlMetaStore>,
    seen: Mutex<Vec<i64>>,
    stored: Mutex<Vec<i64>>,
}

#[async_trait::async_trait]
impl Consumer for Watcher {
    fn name(&self) -> &str {
        "watcher"
    }
    async fn effects(&self, events: &[EventRecord]) -> Result<Vec<Effect>, ConsumerError> {
        self.seen.lock().unwrap().extend(events.iter().map(|e| e.seq));
        let stored = self.store.consumer_cursor("watcher").await?;
        self.stored.lock().unwrap().push(stored);
        Ok(Vec::new())
    }
}

async fn append(log: &SqlMetaStore, n: usize) {
    let events: Vec<NewEvent> = (0..n)
        .map(|i| {
            NewEvent::new(EventKind::ArtifactPushed, berth_jobs::now_ms(), &Origin::system()).repo(&format!("p/r{i}"))
        })
        .collect();
    log.append_events(&events).await.unwrap();
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_without_effects_is_stored_when_the_log_goes_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap());
    let watcher = Arc::new(Watcher { store: store.clone(), seen: Mutex::default(), stored: Mutex::default() });
    let opts = ConsumerOptions { poll: Duration::from_millis(400), batch: 10, ..Default::default() };
    let task = run_consumer(store.clone(), watcher.clone(), opts);

    append(&store, 35).await;
    let last = store.last_event_seq().await.unwrap();
    // Four batches of at most ten, read one after the other: all seen, in order…
    eventually("every event seen", async || watcher.seen.lock().unwrap().last() == Some(&last)).await;
    let seen = watcher.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 35);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    // …and the batches without effects did not each store the cursor (at most once in
    // the burst, should it outlast a second on a slow machine); it is stored when the log
    // has nothing new, at the last event.
    let mut stored = watcher.stored.lock().unwrap().clone();
    stored.dedup();
    assert!(stored.len() <= 2, "the cursor was stored batch by batch: {stored:?}");
    eventually("the cursor stored", async || store.consumer_cursor("watcher").await.unwrap() == last).await;

    // Another process moves the stored cursor ahead (it consumed those events): this one
    // follows it rather than its own memory, and sees only what comes after.
    append(&store, 5).await;
    let ahead = store.last_event_seq().await.unwrap();
    loop {
        let stored = store.consumer_cursor("watcher").await.unwrap();
        if store.advance_consumer("watcher", stored, ahead, &[], berth_jobs::now_ms()).await.unwrap() {
            break;
        }
    }
    append(&store, 3).await;
    let end = store.last_event_seq().await.unwrap();
    eventually("the new events seen", async || watcher.seen.lock().unwrap().last() == Some(&end)).await;
    let seen = watcher.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|&&s| s > ahead).count(), 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "nothing seen twice: {seen:?}");
    task.abort();
}
