//! Pull-through caches: repositories under a cache rule's prefix (Harbor's proxy-cache
//! projects) are filled from an upstream registry as clients pull.
//!
//! - **Manifests.** By digest: served from here when present, else fetched (digest checked)
//!   and served. By tag: served from here while the tag was checked upstream within the TTL;
//!   after it, a `HEAD` upstream says whether the tag moved. Upstream errors, timeouts and
//!   `429` serve the cached copy (stale-if-error: a warning and `stale_served`); with nothing
//!   cached they are `RegistryError::Upstream` (`503`). A fetched index is stored at once
//!   (its children are fetched when asked for: `RefKind::LaterManifest`); an image manifest
//!   once its blobs are here — a background task fetches those it lacks, so a cached image is
//!   whole (and scanned on push) even when the client only asked for the manifest.
//! - **Blobs.** One fetch per digest, across replicas: in this process concurrent requests
//!   wait for the one fetch, and across replicas a claim in the database (`claim_lease`)
//!   makes the others wait for the blob to appear. The fetching request streams the bytes to
//!   its client while they are written (`upload_monolithic`: hashed, verified against the
//!   digest, only then visible); if the client goes away, the fetch finishes anyway.
//! - Cached content is ordinary content of its repository: quotas, retention, GC and
//!   scanning apply to it. Pushes to a cached repository are refused by the HTTP layer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_client::ClientError;
use berth_meta::{CacheRule, MetaStore, Origin};
use berth_types::media::ManifestView;
use berth_types::{Digest, Reference, RepoName, Tag};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

use crate::{Registry, RegistryError, Upstreams, now_ms};

/// How a cache behaves.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// How long a cached tag is served before it is checked upstream again (a rule's own TTL
    /// wins when set).
    pub tag_ttl: Duration,
    /// How long an upstream manifest request may take before the cached copy is served.
    pub timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions { tag_ttl: Duration::from_secs(300), timeout: Duration::from_secs(10) }
    }
}

/// A repository under a cache rule.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The rule.
    pub rule: CacheRule,
    /// The repository's name upstream.
    pub upstream_repo: String,
}

/// A manifest fetched from upstream, to serve as it is.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its bytes (digest checked).
    pub bytes: Bytes,
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
}

/// A blob being fetched from upstream for this request: its size (0 if upstream did not
/// say) and its bytes as they arrive.
pub struct Streaming {
    /// Size in bytes, if known (0 otherwise).
    pub size: u64,
    /// The bytes.
    pub body: berth_blob::ByteStream,
}

/// What one cache served since this process started (each replica counts its own; the
/// portal shows the replica that serves the page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Manifest requests served from here.
    pub manifest_hits: u64,
    /// Manifest requests fetched from upstream.
    pub manifest_misses: u64,
    /// Blob requests served from here.
    pub blob_hits: u64,
    /// Blob requests fetched from upstream.
    pub blob_misses: u64,
    /// Requests served from here because upstream failed (stale-if-error).
    pub stale_served: u64,
    /// When upstream last answered (Unix ms).
    pub upstream_ok_at: Option<i64>,
    /// When upstream last failed (Unix ms), and how.
    pub upstream_failed: Option<(i64, String)>,
}

/// A pull recorded once its image is stored: repository, reference, digest, who.
type WaitingPull = (RepoName, Reference, Digest, Origin);

/// Which kind of request a cache served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A manifest.
    Manifest,
    /// A blob.
    Blob,
}

/// Most tags whose last check is remembered (then the memory starts over: a few extra HEADs).
const MAX_CHECKED: usize = 100_000;
/// Most bytes of fetched manifests kept in memory while their images are completed (then
/// the memory starts over: a few extra upstream requests).
const MAX_RECENT_BYTES: usize = 32 << 20;
/// Most pulls of one image remembered while it is completed (more are not counted).
const MAX_WAITING_PULLS: usize = 10_000;
/// Most images completed in the background at once.
const COMPLETIONS: usize = 4;
/// How long a fetch claim lasts without renewal.
const CLAIM_MS: i64 = 60_000;

/// The pull-through cache service.
pub struct Proxy {
    registry: Arc<Registry>,
    upstreams: Arc<Upstreams>,
    meta: Arc<dyn MetaStore>,
    opts: ProxyOptions,
    checked: Mutex<HashMap<(String, String), Instant>>,
    flights: Mutex<HashMap<String, watch::Receiver<bool>>>,
    completing: Mutex<HashSet<String>>,
    /// Manifests fetched lately (by digest, up to `MAX_RECENT_BYTES`), so that pulls while
    /// their images are completed — or that asked upstream just before the store — do not
    /// fetch them again (upstream pulls count against rate limits).
    recent: Mutex<(usize, HashMap<Digest, Fetched>)>,
    /// One fetch per manifest reference at a time in this process (the others then find it
    /// in `recent`).
    manifest_flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    completions: Arc<Semaphore>,
    holder: String,
    stale: AtomicU64,
    fetched_bytes: AtomicU64,
    /// Per cache (rule prefix).
    stats: Mutex<HashMap<String, CacheStats>>,
    /// Pulls of images being completed (by `repo@digest`), recorded once the manifest is
    /// stored: a pull time recorded before the manifest exists would be lost, and a cached
    /// image would look never pulled to retention rules.
    pulls_waiting: Mutex<HashMap<String, Vec<WaitingPull>>>,
}

fn origin() -> Origin {
    Origin::new("proxy-cache", None)
}

impl Proxy {
    /// The service over the registry and the endpoints.
    pub fn new(
        registry: Arc<Registry>,
        upstreams: Arc<Upstreams>,
        meta: Arc<dyn MetaStore>,
        opts: ProxyOptions,
    ) -> Arc<Proxy> {
        Arc::new(Proxy {
            registry,
            upstreams,
            meta,
            opts,
            checked: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            completing: Mutex::new(HashSet::new()),
            recent: Mutex::new((0, HashMap::new())),
            manifest_flights: Mutex::new(HashMap::new()),
            completions: Arc::new(Semaphore::new(COMPLETIONS)),
            holder: format!("proxy-{}", uuid::Uuid::new_v4()),
            stale: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            stats: Mutex::new(HashMap::new()),
            pulls_waiting: Mutex::new(HashMap::new()),
        })
    }

    /// Record a pull of `repo@digest` served from upstream: now if the manifest is stored
    /// (or will not be), else once its image is complete.
    pub fn record_pull(&self, repo: &RepoName, reference: &Reference, digest: &Digest, origin: &Origin) {
        if let Ok(mut w) = self.pulls_waiting.lock()
            && let Some(list) = w.get_mut(&format!("{repo}@{digest}"))
        {
            if list.len() < MAX_WAITING_PULLS {
                list.push((repo.clone(), reference.clone(), digest.clone(), origin.clone()));
            }
            return;
        }
        self.registry.record_pull(repo, reference, digest, origin);
    }

    fn release_pulls(&self, key: &str) {
        let waiting = self.pulls_waiting.lock().ok().and_then(|mut w| w.remove(key)).unwrap_or_default();
        for (repo, reference, digest, origin) in waiting {
            self.registry.record_pull(&repo, &reference, &digest, &origin);
        }
    }

    /// What the cache of prefix `prefix` served since this process started.
    pub fn stats(&self, prefix: &str) -> CacheStats {
        self.stats.lock().ok().and_then(|m| m.get(prefix).cloned()).unwrap_or_default()
    }

    fn note(&self, c: &Cached, f: impl FnOnce(&mut CacheStats)) {
        if let Ok(mut m) = self.stats.lock() {
            // Every request of a cache comes here: no allocation once its entry exists.
            match m.get_mut(&c.rule.prefix) {
                Some(st) => f(st),
                None => f(m.entry(c.rule.prefix.clone()).or_default()),
            }
        }
    }

    /// Count a request cache `c` answered: from here (`hit`) or from upstream.
    pub fn served(&self, c: &Cached, kind: Served, hit: bool) {
        self.note(c, |s| match (kind, hit) {
            (Served::Manifest, true) => s.manifest_hits += 1,
            (Served::Manifest, false) => s.manifest_misses += 1,
            (Served::Blob, true) => s.blob_hits += 1,
            (Served::Blob, false) => s.blob_misses += 1,
        });
    }

    /// Remember how upstream last answered for cache `c`.
    fn upstream(&self, c: &Cached, outcome: Result<(), &str>) {
        let now = now_ms();
        self.note(c, |s| match outcome {
            Ok(()) => s.upstream_ok_at = Some(now),
            Err(e) => s.upstream_failed = Some((now, e.to_owned())),
        });
    }

    /// Times a cached copy was served because upstream failed.
    pub fn stale_served(&self) -> u64 {
        self.stale.load(Ordering::Relaxed)
    }

    /// Bytes fetched from upstreams.
    pub fn fetched_bytes(&self) -> u64 {
        self.fetched_bytes.load(Ordering::Relaxed)
    }

    /// The rule `repo` is cached under, if any (the longest prefix).
    pub async fn rule_for(&self, repo: &RepoName) -> Result<Option<Cached>, RegistryError> {
        let rules = self.upstreams.cache_rules().await.map_err(|e| match e {
            crate::UpstreamError::Meta(m) => RegistryError::Meta(m),
            other => RegistryError::Upstream(other.to_string()),
        })?;
        let name = repo.as_str();
        Ok(rules
            .iter()
            .filter(|r| {
                name.len() > r.prefix.len() && name.starts_with(&r.prefix) && name[r.prefix.len()..].starts_with('/')
            })
            .max_by_key(|r| r.prefix.len())
            .map(|r| Cached {
                rule: r.clone(),
                upstream_repo: format!("{}{}", r.upstream_prefix, &name[r.prefix.len() + 1..]),
            }))
    }

    fn ttl(&self, c: &Cached) -> Duration {
        if c.rule.ttl_ms > 0 { Duration::from_millis(c.rule.ttl_ms as u64) } else { self.opts.tag_ttl }
    }

    fn fresh(&self, repo: &RepoName, tag: &Tag, ttl: Duration) -> bool {
        self.checked
            .lock()
            .ok()
            .and_then(|m| m.get(&(repo.to_string(), tag.to_string())).map(|at| at.elapsed() < ttl))
            .unwrap_or(false)
    }

    fn mark_checked(&self, repo: &RepoName, tag: &Tag) {
        if let Ok(mut m) = self.checked.lock() {
            if m.len() >= MAX_CHECKED {
                m.clear();
            }
            m.insert((repo.to_string(), tag.to_string()), Instant::now());
        }
    }

    fn serve_stale(&self, c: &Cached, repo: &RepoName, reference: &str, why: &str) {
        self.stale.fetch_add(1, Ordering::Relaxed);
        self.note(c, |s| s.stale_served += 1);
        warn!(repo.name = %repo, reference, error = why, "upstream failed: serving the cached copy");
    }

    async fn client(&self, c: &Cached) -> Result<Arc<berth_client::Client>, RegistryError> {
        self.upstreams.client(c.rule.upstream_id).await.map_err(|e| RegistryError::Upstream(e.to_string()))
    }

    /// Make a manifest of a cached repository available: `None` when it is here to serve (or
    /// cached and upstream failing), the fetched bytes otherwise.
    pub async fn manifest(
        self: &Arc<Self>,
        c: &Cached,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Fetched>, RegistryError> {
        match reference {
            Reference::Digest(d) => {
                if self.meta.get_manifest(repo, d).await?.is_some() {
                    return Ok(None);
                }
                let m = self.fetch_manifest(c, &d.to_string()).await.map_err(upstream_err)?;
                self.keep(c, repo, None, &m).await;
                Ok(Some(m))
            }
            Reference::Tag(t) => {
                let local = self.meta.get_tagged_manifest(repo, t).await?;
                if local.is_some() && self.fresh(repo, t, self.ttl(c)) {
                    return Ok(None);
                }
                let head = async {
                    let client = self.client(c).await.map_err(|e| e.to_string())?;
                    match tokio::time::timeout(self.opts.timeout, client.manifest_head(&c.upstream_repo, t.as_str()))
                        .await
                    {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no answer within {:?}", self.opts.timeout)),
                    }
                };
                let head = head.await;
                self.upstream(c, head.as_ref().map(|_| ()).map_err(String::as_str));
                let head = match (head, &local) {
                    (Ok(h), _) => h,
                    (Err(e), Some(_)) => {
                        self.serve_stale(c, repo, t.as_str(), &e);
                        return Ok(None);
                    }
                    (Err(e), None) => return Err(RegistryError::Upstream(e)),
                };
                let Some(head) = head else {
                    return Err(RegistryError::ManifestUnknown(format!(
                        "{}:{} does not exist upstream ({})",
                        c.upstream_repo, t, c.rule.prefix
                    )));
                };
                if local.as_ref().is_some_and(|l| l.digest.to_string() == head.digest) {
                    self.mark_checked(repo, t);
                    return Ok(None);
                }
                let m = match self.fetch_manifest(c, &head.digest).await {
                    Ok(m) => m,
                    Err(e) if local.is_some() => {
                        self.serve_stale(c, repo, t.as_str(), &e.to_string());
                        return Ok(None);
                    }
                    Err(e) => return Err(upstream_err(e)),
                };
                self.keep(c, repo, Some(t.clone()), &m).await;
                Ok(Some(m))
            }
        }
    }

    /// Fetch a manifest from upstream (shared with concurrent requests), remembering how
    /// upstream answered.
    async fn fetch_manifest(&self, c: &Cached, reference: &str) -> Result<Fetched, ClientError> {
        let r = self.fetch_manifest_shared(c, reference).await;
        match &r {
            Err(ClientError::NotFound(_)) | Ok(_) => self.upstream(c, Ok(())),
            Err(e) => self.upstream(c, Err(&e.to_string())),
        }
        r
    }

    /// One fetch of a manifest reference at a time in this process; the others find it in
    /// `recent`.
    async fn fetch_manifest_shared(&self, c: &Cached, reference: &str) -> Result<Fetched, ClientError> {
        let key = format!("{}@{reference}", c.upstream_repo);
        let flight = match self.manifest_flights.lock() {
            Ok(mut f) => f.entry(key.clone()).or_default().clone(),
            Err(_) => Arc::default(),
        };
        let result = {
            let _turn = flight.lock().await;
            self.fetch_manifest_once(c, reference).await
        };
        if let Ok(mut f) = self.manifest_flights.lock()
            && f.get(&key).is_some_and(|a| Arc::strong_count(a) <= 2)
        {
            f.remove(&key);
        }
        result
    }

    async fn fetch_manifest_once(&self, c: &Cached, reference: &str) -> Result<Fetched, ClientError> {
        if let Ok(d) = reference.parse::<Digest>()
            && let Ok(r) = self.recent.lock()
            && let Some(m) = r.1.get(&d)
        {
            return Ok(m.clone());
        }
        let client = self.client(c).await.map_err(|e| ClientError::Config(e.to_string()))?;
        let m = tokio::time::timeout(self.opts.timeout, client.manifest(&c.upstream_repo, reference)).await.map_err(
            |_| ClientError::Unreachable {
                host: c.upstream_repo.clone(),
                cause: format!("no answer within {:?}", self.opts.timeout),
            },
        )??;
        let digest: Digest = m.digest.parse().map_err(|_| ClientError::Invalid(m.digest.clone(), "digest".into()))?;
        self.fetched_bytes.fetch_add(m.bytes.len() as u64, Ordering::Relaxed);
        let fetched = Fetched { bytes: m.bytes, media_type: m.media_type, digest };
        if let Ok(mut r) = self.recent.lock() {
            if r.0 + fetched.bytes.len() > MAX_RECENT_BYTES {
                *r = (0, HashMap::new());
            }
            r.0 += fetched.bytes.len();
            r.1.insert(fetched.digest.clone(), fetched.clone());
        }
        Ok(fetched)
    }

    /// Store a fetched manifest: an index now, an image once its blobs are here.
    async fn keep(self: &Arc<Self>, c: &Cached, repo: &RepoName, tag: Option<Tag>, m: &Fetched) {
        let Ok(view) = serde_json::from_slice::<ManifestView>(&m.bytes) else {
            warn!(repo.name = %repo, digest = %m.digest, "upstream manifest not understood; served, not cached");
            return;
        };
        if view.is_index() || view.config.is_none() {
            self.store(repo, tag.as_ref(), m).await;
            return;
        }
        let key = format!("{repo}@{}", m.digest);
        if let Ok(mut busy) = self.completing.lock()
            && !busy.insert(key.clone())
        {
            return;
        }
        if let Ok(mut w) = self.pulls_waiting.lock() {
            w.entry(key.clone()).or_default();
        }
        let (this, c, repo, m) = (self.clone(), c.clone(), repo.clone(), m.clone());
        let blobs: Vec<Digest> = view
            .config
            .iter()
            .chain(view.layers.iter().flatten())
            .filter(|d| !d.media_type.contains("nondistributable") && !d.media_type.contains(".foreign."))
            .map(|d| d.digest.clone())
            .collect();
        tokio::spawn(async move {
            let _permit = this.completions.acquire().await;
            let mut whole = true;
            for d in &blobs {
                match this.ensure_blob(&c, &repo, d).await {
                    Ok(()) => {}
                    Err(e) => {
                        warn!(repo.name = %repo, digest = %d, error = %e, "a blob of a cached image could not be fetched");
                        whole = false;
                        break;
                    }
                }
            }
            if whole {
                this.store(&repo, tag.as_ref(), &m).await;
            }
            this.release_pulls(&key);
            if let Ok(mut busy) = this.completing.lock() {
                busy.remove(&key);
            }
        });
    }

    async fn store(&self, repo: &RepoName, tag: Option<&Tag>, m: &Fetched) {
        let reference = match tag {
            Some(t) => Reference::Tag(t.clone()),
            None => Reference::Digest(m.digest.clone()),
        };
        match self.registry.manifest_put_cached(repo, &reference, &m.media_type, m.bytes.clone(), &origin()).await {
            Ok(_) => {
                if let Some(t) = tag {
                    self.mark_checked(repo, t);
                }
                // Stays in `recent` (bounded; it starts over when full): a pull that asked
                // upstream before this store finished finds it there instead of fetching again.
                info!(repo.name = %repo, digest = %m.digest, "cached from upstream");
            }
            Err(e) => warn!(repo.name = %repo, digest = %m.digest, error = %e, "a fetched manifest was not cached"),
        }
    }

    /// Make blob `digest` a blob of `repo`, fetching it if nobody has it (waiting for a fetch
    /// in flight here or on another replica).
    async fn ensure_blob(self: &Arc<Self>, c: &Cached, repo: &RepoName, digest: &Digest) -> Result<(), RegistryError> {
        if let Some(s) = self.blob(c, repo, digest).await? {
            // Nobody reads it: drain it, so the fetch completes.
            let mut body = s.body;
            while let Some(chunk) = body.next().await {
                chunk.map_err(RegistryError::Body)?;
            }
            // The write finishes right after the last byte; wait for it.
            self.wait_local(repo, digest).await?;
        }
        Ok(())
    }

    async fn wait_local(&self, repo: &RepoName, digest: &Digest) -> Result<(), RegistryError> {
        for _ in 0..600 {
            if self.meta.repo_blob(repo, digest).await?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(RegistryError::Upstream(format!("blob {digest} did not arrive")))
    }

    /// A blob of a cached repository: `None` when it is here to serve (linked now if another
    /// repository had it), or the bytes streaming from upstream (stored as they pass).
    pub async fn blob(
        self: &Arc<Self>,
        c: &Cached,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Streaming>, RegistryError> {
        loop {
            if self.meta.repo_blob(repo, digest).await?.is_some() {
                return Ok(None);
            }
            match self.registry.mount(repo, digest, None).await {
                Ok(Some(_)) => return Ok(None),
                Ok(None) => {}
                // Here, but the project's quota cannot take it: serve it without keeping it.
                Err(RegistryError::QuotaExceeded(_)) => {
                    if let Some((size, body)) = self.registry.blob_unlinked(digest).await? {
                        let body: berth_blob::ByteStream = match body {
                            berth_blob::BlobBody::Bytes(b) => Box::pin(futures::stream::iter([Ok(b)])),
                            berth_blob::BlobBody::Stream(s) => s,
                        };
                        return Ok(Some(Streaming { size, body }));
                    }
                }
                Err(e) => return Err(e),
            }
            // One fetch per digest in this process…
            let key = format!("fetch:{digest}");
            let (waiting, lead) = {
                let mut f = self.flights.lock().map_err(|_| RegistryError::Upstream("a fetch panicked".into()))?;
                match f.get(&key) {
                    Some(rx) => (Some(rx.clone()), None),
                    None => {
                        let (tx, rx) = watch::channel(false);
                        f.insert(key.clone(), rx);
                        (None, Some(tx))
                    }
                }
            };
            if let Some(tx) = lead {
                match self.lead(c, repo, digest, key, tx).await? {
                    Some(s) => return Ok(Some(s)),
                    None => continue,
                }
            }
            if let Some(mut rx) = waiting {
                let _ = tokio::time::timeout(Duration::from_secs(600), rx.wait_for(|done| *done)).await;
                if self.meta.repo_blob(repo, digest).await?.is_some() || self.meta.any_blob(digest).await?.is_some() {
                    continue;
                }
                return Err(RegistryError::Upstream(format!("the fetch of {digest} from upstream failed")));
            }
        }
    }

    fn land(&self, key: &str, tx: &watch::Sender<bool>) {
        if let Ok(mut f) = self.flights.lock() {
            f.remove(key);
        }
        let _ = tx.send(true);
    }

    /// This request fetches: claim it across replicas (or wait for the replica that has),
    /// then stream from upstream into storage and to the caller.
    /// `None` when another replica fetched it meanwhile (it is here now).
    async fn lead(
        self: &Arc<Self>,
        c: &Cached,
        repo: &RepoName,
        digest: &Digest,
        key: String,
        tx: watch::Sender<bool>,
    ) -> Result<Option<Streaming>, RegistryError> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let now = now_ms();
            if self.meta.claim_lease(&key, &self.holder, now + CLAIM_MS, now).await? {
                break;
            }
            // Another replica fetches it: wait for the bytes to land, then mount them.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.meta.any_blob(digest).await?.is_some() {
                self.land(&key, &tx);
                return Ok(None);
            }
            if Instant::now() > deadline {
                self.land(&key, &tx);
                return Err(RegistryError::Upstream(format!("waited too long for another replica to fetch {digest}")));
            }
        }
        let client = match self.client(c).await {
            Ok(cl) => cl,
            Err(e) => {
                let _ = self.meta.release_lease(&key, &self.holder).await;
                self.land(&key, &tx);
                return Err(e);
            }
        };
        let fetched = client.blob(&c.upstream_repo, &digest.to_string()).await;
        match &fetched {
            Ok(_) | Err(ClientError::NotFound(_)) => self.upstream(c, Ok(())),
            Err(e) => self.upstream(c, Err(&e.to_string())),
        }
        let (size, upstream) = match fetched {
            Ok(b) => b,
            Err(e) => {
                let _ = self.meta.release_lease(&key, &self.holder).await;
                self.land(&key, &tx);
                return Err(match e {
                    ClientError::NotFound(_) => RegistryError::BlobUnknown(digest.clone()),
                    other => RegistryError::Upstream(other.to_string()),
                });
            }
        };
        // One pump, two bounded copies: the caller's and storage's. A slow reader slows the
        // fetch rather than filling memory; when one side goes away (the client hangs up, or
        // storage refuses — a quota, a full disk), the other still gets every byte.
        let (to_client, from_fetch) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let (to_store, from_pump) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        // Set once the upstream stream ended cleanly: the client checked every byte against
        // the digest (sha256). Storage trusts that check instead of hashing again, so a pump
        // that stops any other way must not look like a complete body: see `tee` below.
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finished_pump = finished.clone();
        // The client's last byte is held back until the whole blob checked out against its
        // digest: a damaged transfer ends short, so no client ever holds a complete wrong blob.
        tokio::spawn(async move {
            // What arrived together travels together (HTTP bodies come in ~16 KiB reads; a
            // chunk per channel hop would cost more than the copy that joins them).
            let mut upstream = upstream.ready_chunks(64).map(|group| {
                if group.len() == 1 {
                    return group.into_iter().next().unwrap_or(Ok(Bytes::new()));
                }
                let mut joined = bytes::BytesMut::new();
                for part in group {
                    joined.extend_from_slice(&part?);
                }
                Ok(joined.freeze())
            });
            let mut held: Option<Bytes> = None;
            let (mut client, mut store) = (true, true);
            while let Some(chunk) = upstream.next().await {
                let chunk = chunk.map_err(|e| e.to_string());
                if store {
                    let copy = chunk.clone().map_err(std::io::Error::other);
                    store = !to_store.is_closed() && to_store.send(copy).await.is_ok();
                }
                match chunk {
                    // Only the last byte so far is held back: the rest goes out at once (a
                    // whole small blob in one chunk still starts the answer).
                    Ok(b) if client && !b.is_empty() => {
                        let keep = b.slice(b.len() - 1..);
                        let now = b.slice(..b.len() - 1);
                        for part in held.replace(keep).into_iter().chain((!now.is_empty()).then_some(now)) {
                            client = !to_client.is_closed() && to_client.send(Ok(part)).await.is_ok();
                            if !client {
                                break;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = to_client.send(Err(std::io::Error::other(e))).await;
                        return;
                    }
                }
                if !client && !store {
                    return;
                }
            }
            finished_pump.store(true, Ordering::Release);
            if client && let Some(last) = held {
                let _ = to_client.send(Ok(last)).await;
            }
        });
        let tee = futures::stream::unfold((from_pump, finished), |(mut rx, finished)| async move {
            match rx.recv().await {
                Some(c) => Some((c, (rx, finished))),
                None if finished.load(Ordering::Acquire) => None,
                // The pump went away before the end: not a whole, verified body.
                None => {
                    finished.store(true, Ordering::Release);
                    Some((Err(std::io::Error::other("the transfer from upstream did not finish")), (rx, finished)))
                }
            }
        });
        let this = self.clone();
        let (repo, digest) = (repo.clone(), digest.clone());
        self.fetched_bytes.fetch_add(size, Ordering::Relaxed);
        tokio::spawn(async move {
            // One hash: the client's stream checks sha256 digests (others are hashed here).
            let upload = if digest.algorithm() == berth_types::Algorithm::Sha256 {
                futures::FutureExt::boxed(this.registry.upload_monolithic_verified(
                    &repo,
                    "proxy-cache",
                    &digest,
                    Box::pin(tee),
                ))
            } else {
                futures::FutureExt::boxed(this.registry.upload_monolithic(&repo, "proxy-cache", &digest, Box::pin(tee)))
            };
            tokio::pin!(upload);
            let mut renew = tokio::time::interval(Duration::from_millis(CLAIM_MS as u64 / 3));
            renew.tick().await;
            let result = loop {
                tokio::select! {
                    r = &mut upload => break r,
                    _ = renew.tick() => {
                        let now = now_ms();
                        let _ = this.meta.claim_lease(&key, &this.holder, now + CLAIM_MS, now).await;
                    }
                }
            };
            match result {
                Ok(_) => info!(repo.name = %repo, %digest, "blob cached from upstream"),
                Err(e) => warn!(repo.name = %repo, %digest, error = %e, "a blob fetched from upstream was not cached"),
            }
            let _ = this.meta.release_lease(&key, &this.holder).await;
            this.land(&key, &tx);
        });
        let body = futures::stream::unfold(from_fetch, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        Ok(Some(Streaming { size, body: Box::pin(body) }))
    }
}

fn upstream_err(e: ClientError) -> RegistryError {
    match e {
        ClientError::NotFound(m) => RegistryError::ManifestUnknown(format!("not found upstream: {m}")),
        other => RegistryError::Upstream(other.to_string()),
    }
}
