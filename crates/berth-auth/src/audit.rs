//! The audit writer: entries (and pull counts) go through a channel to one task that
//! writes them in batches, so a pull does not wait for an audit insert and a burst of
//! pulls costs one transaction, not one each.
//!
//! Entries are written within about 100 ms; entries still queued when the process is
//! killed are lost (the registry operation itself is not affected).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_meta::{AccessStore, AuditRecord};
use tokio::sync::mpsc;
use tracing::warn;

enum Msg {
    Entry(AuditRecord),
    Pull(String),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Where audit entries are sent.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::UnboundedSender<Msg>,
}

const BATCH: usize = 512;

impl AuditSink {
    /// Start the writer task over `store`.
    pub fn start(store: Arc<dyn AccessStore>) -> AuditSink {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut buf, BATCH).await > 0 {
                // Let a burst gather for a moment.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while buf.len() < BATCH * 4 {
                    match rx.try_recv() {
                        Ok(m) => buf.push(m),
                        Err(_) => break,
                    }
                }
                let mut entries = Vec::new();
                let mut pulls: HashMap<String, i64> = HashMap::new();
                let mut flushed = Vec::new();
                for m in buf.drain(..) {
                    match m {
                        Msg::Entry(e) => entries.push(e),
                        Msg::Pull(r) => *pulls.entry(r).or_default() += 1,
                        Msg::Flush(done) => flushed.push(done),
                    }
                }
                if let Err(e) = store.append_audit(&entries).await {
                    warn!(error = %e, lost = entries.len(), "failed to write audit entries");
                }
                if !pulls.is_empty() {
                    let counts: Vec<_> = pulls.into_iter().collect();
                    if let Err(e) = store.add_pulls(&counts).await {
                        warn!(error = %e, "failed to update pull counts");
                    }
                }
                for d in flushed {
                    let _ = d.send(());
                }
            }
        });
        AuditSink { tx }
    }

    /// Queue an entry.
    pub fn record(&self, e: AuditRecord) {
        let _ = self.tx.send(Msg::Entry(e));
    }

    /// Count one manifest pull of `repo`.
    pub fn pulled(&self, repo: &str) {
        let _ = self.tx.send(Msg::Pull(repo.to_owned()));
    }

    /// Wait until everything queued before this call is written.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
