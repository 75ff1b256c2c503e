//! Upload sessions: start, append chunks, status, complete, cancel, expire.
//!
//! Bytes are hashed (SHA-256) as they stream to storage; the running hash is kept in memory
//! per session, so completing an upload never reads its data again. After a restart, or a
//! write that failed half-way, the hash is rebuilt once from the stored bytes.

use std::io;
use std::sync::Arc;

use berth_blob::{BlobError, ByteStream};
use berth_meta::UploadRecord;

/// How long an upload lease lasts (a chunk taking longer loses it: its bytes were still
/// written by it alone, the lease only keeps a second writer out meanwhile).
const UPLOAD_LEASE_MS: i64 = 15 * 60 * 1000;
/// Tries (100 ms apart) to get a session's lease before a second writer is refused.
const UPLOAD_LEASE_TRIES: usize = 20;
use berth_types::{Algorithm, Digest, Hasher, RepoName};
use futures::StreamExt;
use tracing::{debug, info, warn};

use crate::{Registry, RegistryError, UploadSlot, now_ms};

/// The outcome of a finished upload.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The verified digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

impl Registry {
    fn slot(&self, id: &str) -> UploadSlot {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned()).or_default().clone()
    }

    fn forget_slot(&self, id: &str) {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    async fn session(&self, repo: &RepoName, id: &str) -> Result<UploadRecord, RegistryError> {
        if !berth_blob::valid_upload_id(id) {
            return Err(RegistryError::UploadUnknown);
        }
        match self.meta.get_upload(id).await? {
            Some(up) if &up.repo == repo => Ok(up),
            _ => Err(RegistryError::UploadUnknown),
        }
    }

    /// Start an upload session in `repo`; returns its id.
    pub async fn upload_start(&self, repo: &RepoName, owner: &str) -> Result<String, RegistryError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        // The session row comes first: the expiry sweep deletes upload bytes that have no row,
        // so bytes created before their row could be swept away in between. A row without
        // bytes (a crash here) reads as an unknown upload and is expired with the rest.
        let up = UploadRecord {
            id: id.clone(),
            repo: repo.clone(),
            owner: owner.to_owned(),
            created_at: now,
            updated_at: now,
        };
        let (per_repo, per_owner) = (self.opts.max_uploads_per_repository, self.opts.max_uploads_per_account);
        if let Some(limit) = self.meta.create_upload(&up, per_repo, per_owner).await? {
            let max = if limit == "repository" { per_repo } else { per_owner };
            return Err(RegistryError::TooManyUploads(limit, max));
        }
        self.blobs.upload_start(&id).await?;
        debug!(upload.id = %id, repo.name = %repo, "upload started");
        Ok(id)
    }

    /// Current size of an upload session.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<u64, RegistryError> {
        self.session(repo, id).await?;
        self.blobs.upload_size(id).await.map_err(upload_err)
    }

    /// Append a chunk. `start` is the first byte's offset from `Content-Range` (if sent), which
    /// must equal the current size. Returns the new size.
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let session = self.session(repo, id).await?;
        let slot = self.slot(id);
        let mut state = slot.lock().await;
        let lease = self.lease_upload(id).await?;
        let size = self.append(repo, None, id, &mut state, start, body, false).await;
        self.release_upload(id, lease).await;
        let size = self.quota_event(repo, None, size).await?;
        // The session's last activity keeps it from expiring; recorded now and then rather
        // than on every chunk (each is a durable write to the database).
        let now = now_ms();
        let every = (self.opts.upload_ttl.as_millis() as i64 / 4).min(30_000);
        if now - session.updated_at >= every {
            self.meta.touch_upload(id, now).await?;
        }
        Ok(size)
    }

    /// With replicas (shared metadata), one request at a time writes a session: the
    /// in-process lock serialises this process's requests, this lease in the database the
    /// replicas'. A second writer waits a little, then is refused rather than interleaving
    /// its bytes (the session's state object in S3 would keep only one of the two).
    async fn lease_upload(&self, id: &str) -> Result<Option<String>, RegistryError> {
        if self.opts.cache_records {
            return Ok(None); // the embedded database: this process is the only writer
        }
        let (key, holder) = (format!("upload:{id}"), uuid::Uuid::new_v4().to_string());
        for _ in 0..UPLOAD_LEASE_TRIES {
            let now = now_ms();
            if self.meta.claim_lease(&key, &holder, now + UPLOAD_LEASE_MS, now).await? {
                return Ok(Some(holder));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(RegistryError::UploadInvalid(
            "another request (on another replica) is writing to this upload; send one chunk at a time".into(),
        ))
    }

    async fn release_upload(&self, id: &str, lease: Option<String>) {
        if let Some(holder) = lease
            && let Err(e) = self.meta.release_lease(&format!("upload:{id}"), &holder).await
        {
            tracing::warn!(upload = id, error = %e, "an upload lease was not released; it expires");
        }
    }

    /// Write `body` at the end of the upload, hashing it on the way, with `state` locked.
    /// Append `body` to session `id`, hashing it on the way unless `verified` (its producer
    /// checks the digest and fails the stream on a mismatch: see `upload_monolithic_verified`).
    #[allow(clippy::too_many_arguments)]
    async fn append(
        &self,
        repo: &RepoName,
        digest: Option<&Digest>,
        id: &str,
        state: &mut Option<(u64, Hasher)>,
        start: Option<u64>,
        body: ByteStream,
        verified: bool,
    ) -> Result<u64, RegistryError> {
        let size = self.blobs.upload_size(id).await.map_err(upload_err)?;
        if let Some(s) = start
            && s != size
        {
            return Err(RegistryError::OutOfOrder { requested: s, size });
        }
        // Keep the running hash only if it covers exactly the stored bytes.
        let mut hasher = match state.take() {
            _ if verified => None,
            Some((n, h)) if n == size => Some(h),
            _ if size == 0 => Some(Hasher::new(Algorithm::Sha256)),
            _ => None,
        };
        // The hash runs on its own thread, beside the task that receives and the thread that
        // writes: the received buffers are shared with it (reference-counted, not copied), a
        // batch of about a MiB at a time so that it wakes rarely.
        let pending: Arc<std::sync::Mutex<(Vec<bytes::Bytes>, usize)>> = Arc::default();
        let (stream, hashing): (ByteStream, _) = match hasher.take() {
            Some(mut h) => {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<bytes::Bytes>>(HASH_QUEUE);
                let job = tokio::task::spawn_blocking(move || {
                    while let Some(batch) = rx.blocking_recv() {
                        for c in batch {
                            h.update(&c);
                        }
                    }
                    h
                });
                let (batch, feed) = (pending.clone(), tx.clone());
                let stream = body.then(move |chunk| {
                    let full = match &chunk {
                        Ok(c) => {
                            let mut b = batch.lock().unwrap_or_else(|p| p.into_inner());
                            b.0.push(c.clone());
                            b.1 += c.len();
                            (b.1 >= HASH_BATCH).then(|| {
                                b.1 = 0;
                                std::mem::take(&mut b.0)
                            })
                        }
                        Err(_) => None,
                    };
                    let feed = feed.clone();
                    async move {
                        if let Some(full) = full {
                            // Fails only if the thread is gone, which it is not before `tx` drops.
                            let _ = feed.send(full).await;
                        }
                        chunk
                    }
                });
                (Box::pin(stream) as ByteStream, Some((job, tx)))
            }
            None => (body, None),
        };
        // The project's quota is checked while bytes arrive (and again, exactly, when the
        // blob is linked): past the room left, the body is cut off.
        // Content the project already holds costs nothing (its digest is known when the
        // last chunk comes with it).
        let project = berth_meta::project_of(repo.as_str());
        let room = self.meta.quota(project).await?;
        let held = match digest {
            Some(d) if room.hard >= 0 => self.meta.project_holds(project, &d.to_string()).await?,
            _ => false,
        };
        let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stream: ByteStream = if room.hard >= 0 && !held {
            let left = (room.hard - room.used).max(0) as u64;
            let (over2, mut seen) = (over.clone(), size);
            Box::pin(stream.map(move |chunk| {
                if let Ok(c) = &chunk {
                    seen += c.len() as u64;
                    if seen > left {
                        over2.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Err(io::Error::other("over the project's storage quota"));
                    }
                }
                chunk
            }))
        } else {
            stream
        };
        let result = self.blobs.upload_write(id, size, stream).await;
        let hasher = match hashing {
            Some((job, tx)) => {
                let rest = std::mem::take(&mut pending.lock().unwrap_or_else(|p| p.into_inner()).0);
                if !rest.is_empty() {
                    let _ = tx.send(rest).await;
                }
                drop(tx);
                Some(job.await.map_err(|e| RegistryError::Blob(BlobError::Io(io::Error::other(e))))?)
            }
            None => None,
        };
        if over.load(std::sync::atomic::Ordering::Relaxed) {
            *state = None;
            return Err(RegistryError::QuotaExceeded(format!(
                "this upload would exceed project {}'s storage quota: the limit is {}, {} is used, and the upload \
                 passed the {} left",
                berth_meta::project_of(repo.as_str()),
                berth_types::human_bytes(room.hard as u64),
                berth_types::human_bytes(room.used as u64),
                berth_types::human_bytes((room.hard - room.used).max(0) as u64)
            )));
        }
        match result {
            Ok(new_size) => {
                *state = hasher.map(|h| (new_size, h));
                Ok(new_size)
            }
            // What arrived before the failure is kept: the client can query the status and resume.
            Err(BlobError::Body { source, .. }) => Err(RegistryError::Body(source)),
            Err(e) => Err(upload_err(e)),
        }
    }

    /// Finish an upload: append the optional last chunk, verify `digest`, make the blob durable
    /// and visible in `repo`.
    pub async fn upload_complete(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: Option<ByteStream>,
        digest: &Digest,
    ) -> Result<Committed, RegistryError> {
        self.complete(repo, id, start, body, digest, false).await
    }

    /// `upload_complete`, with `verified` as in [`Registry::upload_monolithic_verified`].
    async fn complete(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: Option<ByteStream>,
        digest: &Digest,
        verified: bool,
    ) -> Result<Committed, RegistryError> {
        self.session(repo, id).await?;
        let slot = self.slot(id);
        let mut state = slot.lock().await;
        let lease = self.lease_upload(id).await?;
        let done = self.complete_locked(repo, id, start, body, digest, &mut state, verified).await;
        self.release_upload(id, lease).await;
        self.quota_event(repo, Some(digest), done).await
    }

    /// A push refused for the project's storage quota is an event (webhooks' QUOTA_EXCEED);
    /// `r` is passed through.
    pub(crate) async fn quota_event<T>(
        &self,
        repo: &RepoName,
        digest: Option<&Digest>,
        r: Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        if let Err(RegistryError::QuotaExceeded(details)) = &r {
            let mut e = berth_meta::NewEvent::new(
                berth_meta::EventKind::QuotaExceeded,
                now_ms(),
                &berth_meta::Origin::system(),
            )
            .repo(repo.as_str())
            .data(serde_json::json!({ "details": details }));
            if let Some(d) = digest {
                e = e.digest(d);
            }
            if let Err(err) = self.meta.append_events(&[e]).await {
                warn!(%repo, error = %err, "the quota refusal could not be logged as an event");
            }
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    async fn complete_locked(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: Option<ByteStream>,
        digest: &Digest,
        state: &mut Option<(u64, Hasher)>,
        verified: bool,
    ) -> Result<Committed, RegistryError> {
        let size = match body {
            Some(b) => self.append(repo, Some(digest), id, state, start, b, verified).await?,
            None => self.blobs.upload_size(id).await.map_err(upload_err)?,
        };
        let actual = match state.take() {
            // The whole body came from a producer that checked it (it ended without error).
            _ if verified && start.is_none() => digest.clone(),
            Some((n, h)) if n == size && h.algorithm() == digest.algorithm() => h.finish(),
            _ => self.rehash(id, digest.algorithm()).await?,
        };
        if &actual != digest {
            // The session stays usable: the client may send the right digest or more bytes.
            return Err(RegistryError::DigestMismatch { expected: digest.clone(), actual });
        }
        // Reserve the blob first, so that a garbage collection cannot delete the bytes this
        // commit writes (see `berth_meta`'s `gc.rs`).
        let pinned_at = now_ms();
        let repair = self.meta.pin_blob(digest, size as i64, pinned_at, pinned_at + berth_meta::PIN_LEASE_MS).await?;
        if repair {
            // The stored copy failed verification: these verified bytes replace it.
            self.blobs.delete(digest).await?;
        }
        self.blobs.upload_commit(id, digest).await.map_err(upload_err)?;
        if repair {
            self.meta.scrub_verdict(digest, None, now_ms(), None).await?;
            info!(%digest, "a quarantined blob was repaired by a fresh upload");
        }
        // Linked, and the session ended, in one transaction.
        match self.meta.link_blob(repo, digest, pinned_at, now_ms(), Some(id)).await {
            Err(berth_meta::MetaError::Gone(_)) => {
                return Err(RegistryError::UploadInvalid(
                    "the blob was garbage-collected while this upload committed it; upload it again".into(),
                ));
            }
            Err(e @ berth_meta::MetaError::QuotaExceeded { .. }) => {
                // The session's bytes are committed (unlinked: GC frees them); it is over.
                self.meta.delete_upload(id).await?;
                self.forget_slot(id);
                return Err(e.into());
            }
            r => r?,
        }
        self.forget_slot(id);
        self.record_transfer(repo, false, size);
        debug!(upload.id = %id, %digest, size_bytes = size, "upload committed");
        Ok(Committed { digest: digest.clone(), size })
    }

    /// Single-request upload (`POST …/uploads/?digest=`): stream, verify, commit.
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        owner: &str,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<Committed, RegistryError> {
        self.monolithic(repo, owner, digest, body, false).await
    }

    async fn monolithic(
        &self,
        repo: &RepoName,
        owner: &str,
        digest: &Digest,
        body: ByteStream,
        verified: bool,
    ) -> Result<Committed, RegistryError> {
        let id = self.upload_start(repo, owner).await?;
        let r = self.complete(repo, &id, None, Some(body), digest, verified).await;
        if r.is_err() {
            let _ = self.upload_cancel(repo, &id).await;
        }
        r
    }

    /// As [`Registry::upload_monolithic`], for a body whose producer verifies it against
    /// `digest` itself and fails the stream (before its end) on a mismatch or a short read —
    /// such as `berth_client`'s blob streams: the bytes are not hashed a second time.
    pub async fn upload_monolithic_verified(
        &self,
        repo: &RepoName,
        owner: &str,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<Committed, RegistryError> {
        self.monolithic(repo, owner, digest, body, true).await
    }

    async fn rehash(&self, id: &str, alg: Algorithm) -> Result<Digest, RegistryError> {
        let mut h = Hasher::new(alg);
        let mut s = self.blobs.upload_read(id).await.map_err(upload_err)?;
        while let Some(c) = s.next().await {
            h.update(&c?);
        }
        Ok(h.finish())
    }

    /// Cancel a session and free its bytes.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<(), RegistryError> {
        self.session(repo, id).await?;
        let slot = self.slot(id);
        let _state = slot.lock().await;
        // Free the bytes first: on a full disk the metadata write may fail until they are gone.
        // A session row left without bytes reads as unknown, and the expiry sweep removes it.
        self.blobs.upload_abort(id).await?;
        self.forget_slot(id);
        self.meta.delete_upload(id).await?;
        Ok(())
    }

    /// Expire sessions idle for longer than the configured TTL and reclaim storage bytes that
    /// belong to no session (left by a crash): session bytes, and on S3 multipart uploads
    /// begun more than an hour ago that no session holds.
    pub async fn expire_uploads(&self) -> Result<UploadSweep, RegistryError> {
        let cutoff = now_ms() - self.opts.upload_ttl.as_millis() as i64;
        let stale = self.meta.stale_uploads(cutoff).await?;
        for id in &stale {
            let slot = self.slot(id);
            let _g = slot.lock().await;
            self.meta.delete_upload(id).await?;
            self.blobs.upload_abort(id).await?;
            self.forget_slot(id);
        }
        for id in self.blobs.upload_list().await? {
            if self.meta.get_upload(&id).await?.is_none() {
                // Only reclaim orphans not being written right now.
                let slot = self.slot(&id);
                if let Ok(_g) = slot.try_lock()
                    && self.meta.get_upload(&id).await?.is_none()
                {
                    self.blobs.upload_abort(&id).await?;
                }
                self.forget_slot(&id);
            }
        }
        if !stale.is_empty() {
            info!(count = stale.len(), "expired idle upload sessions");
        }
        let cutoff = std::time::SystemTime::now() - ORPHAN_PART_AGE;
        let orphan_parts = match self.blobs.reap_orphan_parts(cutoff).await {
            Ok(n) => n,
            Err(e) => {
                // Listing needs credentials the store may not have (S3 permissions): say so, go on.
                warn!(error = %e, "could not list storage-level uploads to reclaim orphaned parts");
                0
            }
        };
        if orphan_parts > 0 {
            info!(count = orphan_parts, "aborted multipart uploads no session holds");
        }
        Ok(UploadSweep { expired: stale.len(), orphan_parts })
    }
}

/// Bytes handed to an upload's hashing thread at a time.
const HASH_BATCH: usize = 1 << 20;
/// Batches queued for the hashing thread (beyond, receiving waits for it).
const HASH_QUEUE: usize = 4;

/// A multipart upload this old that no session holds is an orphan (younger, it may be a
/// session between starting it and saving its state).
const ORPHAN_PART_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What [`Registry::expire_uploads`] reclaimed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadSweep {
    /// Idle sessions expired.
    pub expired: usize,
    /// Storage-level uploads (S3 multipart) aborted because no session held them.
    pub orphan_parts: usize,
}

fn upload_err(e: BlobError) -> RegistryError {
    match e {
        BlobError::UploadNotFound => RegistryError::UploadUnknown,
        BlobError::OffsetMismatch { expected, actual } => {
            RegistryError::OutOfOrder { requested: expected, size: actual }
        }
        BlobError::Body { source, .. } => RegistryError::Body(source),
        e => {
            if let BlobError::Io(io) = &e
                && io.kind() == io::ErrorKind::StorageFull
            {
                warn!("storage full during upload");
            }
            RegistryError::Blob(e)
        }
    }
}
