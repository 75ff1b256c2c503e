//! Regressions, named after what broke.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use berth_blob::FsBlobStore;
use berth_meta::SqlMetaStore;
use berth_registry::{Registry, RegistryOptions};

/// CI, 2026-11-22: an upload started while the expiry sweep ran lost its bytes (they were
/// created before the session row, and the sweep deletes bytes without a row).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_started_during_the_expiry_sweep_keep_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(FsBlobStore::open(dir.path().join("blobs")).await.unwrap());
    let meta = Arc::new(SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap());
    let reg = Arc::new(Registry::new(blobs, meta, RegistryOptions::default()));
    let repo: berth_types::RepoName = "race/app".parse().unwrap();
    let sweeper = {
        let reg = reg.clone();
        tokio::spawn(async move {
            loop {
                reg.expire_uploads().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut starts = Vec::new();
    for _ in 0..8 {
        let (reg, repo) = (reg.clone(), repo.clone());
        starts.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..40 {
                ids.push(reg.upload_start(&repo, "tester").await.unwrap());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for s in starts {
        ids.extend(s.await.unwrap());
    }
    sweeper.abort();
    for id in &ids {
        assert_eq!(reg.upload_status(&repo, id).await.unwrap(), 0, "upload {id} still has its (empty) bytes");
    }
}
