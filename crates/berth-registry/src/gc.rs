//! Online garbage collection: frees the storage of blobs no manifest references, and (when
//! asked) of untagged manifests, while people push and pull.
//!
//! A run **marks** from a lock-free snapshot of the metadata (what looks like garbage now),
//! then **sweeps** with guarded deletes that lock each row and re-check it (`berth_meta`'s
//! `gc.rs` explains the locking). The snapshot only proposes; the guards decide. So a
//! manifest pushed, a blob mounted or a tag set while a run is under way is never lost: either
//! it committed before the guard looked, and the guard keeps its target, or it commits after,
//! and finds its target gone and fails (`BLOB_UNKNOWN`, `MANIFEST_BLOB_UNKNOWN`; the client
//! uploads again). The time window (Harbor's `time_window`, in hours) is a courtesy to slow
//! clients between uploading a blob and pushing its manifest, not what makes it safe.
//!
//! Order of a sweep: untagged manifests (if asked; indexes and subjects before what they
//! hold, so that children and referrers follow in the same run), blob links no manifest of
//! their repository references, blobs no repository links (bytes and row), manifest bytes and
//! scan records nobody holds, idle upload sessions and stray upload bytes (on S3 their parts).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_blob::BlobStore;
use berth_meta::{GcSnapshot, GcStore, Origin};
use berth_types::{Digest, RepoName};
use futures::StreamExt;
use serde::Serialize;
use tracing::info;

use crate::{Registry, RegistryError, now_ms};

/// What a run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    /// Also delete manifests that no tag points at (and no index lists, and that are not
    /// referrers of a manifest still there), pushed before the window.
    pub delete_untagged: bool,
    /// Only report what would be freed.
    pub dry_run: bool,
    /// Keep blobs linked, and manifests pushed, less than this long ago (Harbor default 2 h).
    pub time_window: Duration,
    /// Blob byte deletions in flight at once.
    pub workers: usize,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { delete_untagged: false, dry_run: false, time_window: Duration::from_secs(2 * 3600), workers: 4 }
    }
}

/// What a run freed (or, dry, would free) in one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepoFreed {
    /// Blobs whose storage is freed because this repository's last reference went.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Untagged manifests deleted.
    pub manifests: u64,
    /// Blob links removed.
    pub links: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Nothing was deleted.
    pub dry_run: bool,
    /// Blobs deleted (bytes and row).
    pub blobs_deleted: u64,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Untagged manifests deleted.
    pub manifests_deleted: u64,
    /// Blob links removed.
    pub links_removed: u64,
    /// Manifest contents (bytes kept by digest) deleted.
    pub manifest_contents_deleted: u64,
    /// Idle upload sessions expired.
    pub uploads_expired: u64,
    /// S3 multipart uploads no session held, aborted (their parts freed).
    pub orphan_parts_aborted: u64,
    /// Per repository (blobs unlinked earlier by a blob or repository deletion are listed
    /// under `""`).
    pub repositories: BTreeMap<String, RepoFreed>,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// Set when the run was stopped before it finished.
    pub stopped: bool,
}

/// Candidates found by the mark phase.
#[derive(Debug, Default)]
struct Marked {
    /// Untagged manifests, in deletion order.
    manifests: Vec<(String, String)>,
    links: Vec<(String, String)>,
    /// Blob digest → size.
    blobs: Vec<(String, i64)>,
    /// Which repositories' links to each candidate blob go in this run.
    blob_repos: HashMap<String, Vec<String>>,
}

/// Decide what is garbage in a snapshot (pure).
fn mark(snap: &GcSnapshot, opts: &GcOptions, now: i64) -> Marked {
    let cutoff = now - opts.time_window.as_millis() as i64;
    let mut out = Marked::default();
    // Manifests that stay, by (repo, digest).
    let mut live: HashSet<(&str, &str)> = snap.manifests.iter().map(|m| (m.repo.as_str(), m.digest.as_str())).collect();
    if opts.delete_untagged {
        // (repo, child) → the indexes listing it.
        let mut parents: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
        for (repo, digest, child, kind) in &snap.refs {
            if kind == "manifest" {
                parents.entry((repo.as_str(), child.as_str())).or_default().push(digest.as_str());
            }
        }
        let mut pending: Vec<&berth_meta::GcManifest> =
            snap.manifests.iter().filter(|m| !m.tagged && m.created_at < cutoff).collect();
        // Peel layers: what nothing live holds goes, which may free what it held.
        loop {
            let (gone, keep): (Vec<_>, Vec<_>) = pending.into_iter().partition(|m| {
                let r = m.repo.as_str();
                let listed =
                    parents.get(&(r, m.digest.as_str())).is_some_and(|ps| ps.iter().any(|p| live.contains(&(r, *p))));
                let subject_live = m.subject.as_deref().is_some_and(|s| live.contains(&(r, s)));
                !listed && !subject_live
            });
            if gone.is_empty() {
                break;
            }
            for m in gone {
                live.remove(&(m.repo.as_str(), m.digest.as_str()));
                out.manifests.push((m.repo.clone(), m.digest.clone()));
            }
            pending = keep;
        }
    }
    let referenced: HashSet<(&str, &str)> = snap
        .refs
        .iter()
        .filter(|(repo, digest, _, kind)| kind == "blob" && live.contains(&(repo.as_str(), digest.as_str())))
        .map(|(repo, _, child, _)| (repo.as_str(), child.as_str()))
        .collect();
    let mut remaining: HashMap<&str, usize> = HashMap::new();
    for l in &snap.links {
        if l.created_at < cutoff && !referenced.contains(&(l.repo.as_str(), l.digest.as_str())) {
            out.links.push((l.repo.clone(), l.digest.clone()));
            out.blob_repos.entry(l.digest.clone()).or_default().push(l.repo.clone());
        } else {
            *remaining.entry(l.digest.as_str()).or_default() += 1;
        }
    }
    for b in &snap.blobs {
        let reserved = b.pending_until.is_some_and(|p| p >= now);
        if !remaining.contains_key(b.digest.as_str()) && b.created_at < cutoff && !reserved {
            out.blobs.push((b.digest.clone(), b.size));
        }
    }
    out
}

/// Runs garbage collection over a registry's stores.
pub struct Collector {
    registry: Arc<Registry>,
    store: Arc<dyn GcStore>,
}

/// Asked between batches: should the run stop now?
pub type StopCheck = Box<dyn Fn() -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

impl Collector {
    /// A collector for `registry`, whose metadata is `store`.
    pub fn new(registry: Arc<Registry>, store: Arc<dyn GcStore>) -> Self {
        Collector { registry, store }
    }

    /// Run once. `log` receives the run's log lines; `stop` is asked between batches.
    pub async fn run(&self, opts: &GcOptions, stop: &StopCheck, log: &mut String) -> Result<GcReport, RegistryError> {
        let started = Instant::now();
        let now = now_ms();
        let cutoff = now - opts.time_window.as_millis() as i64;
        let mut report = GcReport { dry_run: opts.dry_run, ..Default::default() };
        log_line(
            log,
            format!(
                "garbage collection started: delete_untagged={} dry_run={} time_window={}h",
                opts.delete_untagged,
                opts.dry_run,
                opts.time_window.as_secs_f64() / 3600.0
            ),
        );
        let snap = self.store.gc_snapshot().await?;
        log_line(
            log,
            format!(
                "snapshot: {} manifests, {} blob links, {} blobs",
                snap.manifests.len(),
                snap.links.len(),
                snap.blobs.len()
            ),
        );
        let marked = mark(&snap, opts, now);
        drop(snap);
        log_line(
            log,
            format!(
                "marked: {} untagged manifests, {} unreferenced links, {} blobs ({} bytes)",
                marked.manifests.len(),
                marked.links.len(),
                marked.blobs.len(),
                marked.blobs.iter().map(|b| b.1 as u64).sum::<u64>()
            ),
        );
        if opts.dry_run {
            for (repo, _) in &marked.manifests {
                report.repositories.entry(repo.clone()).or_default().manifests += 1;
            }
            for (repo, _) in &marked.links {
                report.repositories.entry(repo.clone()).or_default().links += 1;
            }
            for (digest, size) in &marked.blobs {
                self.credit(&mut report, &marked.blob_repos, digest, *size as u64);
            }
            report.manifests_deleted = marked.manifests.len() as u64;
            report.links_removed = marked.links.len() as u64;
            report.blobs_deleted = marked.blobs.len() as u64;
            report.bytes_freed = marked.blobs.iter().map(|b| b.1 as u64).sum();
            report.duration_ms = started.elapsed().as_millis() as u64;
            log_line(log, format!("dry run: would free {} blobs, {} bytes", report.blobs_deleted, report.bytes_freed));
            return Ok(report);
        }

        let origin = Origin::new("gc", None);
        for (repo, digest) in &marked.manifests {
            let (Ok(r), Ok(d)) = (repo.parse::<RepoName>(), digest.parse::<Digest>()) else { continue };
            if self.store.gc_delete_manifest(&r, &d, cutoff, &origin).await? {
                report.manifests_deleted += 1;
                report.repositories.entry(repo.clone()).or_default().manifests += 1;
            }
        }
        if report.manifests_deleted > 0 {
            self.registry.forget_cached_records();
            log_line(log, format!("deleted {} untagged manifests", report.manifests_deleted));
            // Their blobs are garbage now too: look again.
            let snap = self.store.gc_snapshot().await?;
            let again = mark(&snap, &GcOptions { delete_untagged: false, ..opts.clone() }, now);
            return self.sweep(again, report, cutoff, now, opts, stop, log, started).await;
        }
        self.sweep(marked, report, cutoff, now, opts, stop, log, started).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn sweep(
        &self,
        marked: Marked,
        mut report: GcReport,
        cutoff: i64,
        now: i64,
        opts: &GcOptions,
        stop: &StopCheck,
        log: &mut String,
        started: Instant,
    ) -> Result<GcReport, RegistryError> {
        for batch in marked.links.chunks(200) {
            if stop().await {
                report.stopped = true;
                break;
            }
            let links: Vec<(RepoName, Digest)> =
                batch.iter().filter_map(|(r, d)| Some((r.parse().ok()?, d.parse().ok()?))).collect();
            for (repo, _) in self.store.gc_unlink(&links, cutoff).await? {
                report.links_removed += 1;
                report.repositories.entry(repo.to_string()).or_default().links += 1;
            }
        }
        log_line(log, format!("removed {} unreferenced blob links", report.links_removed));
        let blobs = self.registry.blobs.clone();
        let workers = opts.workers.max(1);
        let delete_bytes = move |ds: Vec<Digest>| -> futures::future::BoxFuture<'static, Result<(), String>> {
            let blobs: Arc<dyn BlobStore> = blobs.clone();
            Box::pin(async move {
                let results: Vec<Result<(), String>> = futures::stream::iter(ds)
                    .map(|d| {
                        let blobs = blobs.clone();
                        async move { blobs.delete(&d).await.map_err(|e| format!("deleting blob {d}: {e}")) }
                    })
                    .buffer_unordered(workers)
                    .collect()
                    .await;
                results.into_iter().collect()
            })
        };
        if !report.stopped {
            let digests: Vec<Digest> = marked.blobs.iter().filter_map(|(d, _)| d.parse().ok()).collect();
            for batch in digests.chunks(100) {
                if stop().await {
                    report.stopped = true;
                    break;
                }
                let deleted = match self.store.gc_delete_blobs(batch, cutoff, now, &delete_bytes).await {
                    Err(berth_meta::MetaError::Conflict(why)) => {
                        log_line(log, format!("blob deletion stopped: {why}; the next run frees them"));
                        report.stopped = true;
                        break;
                    }
                    r => r?,
                };
                for (d, size) in deleted {
                    report.blobs_deleted += 1;
                    report.bytes_freed += size as u64;
                    self.credit(&mut report, &marked.blob_repos, &d.to_string(), size as u64);
                }
            }
            log_line(log, format!("deleted {} blobs, {} bytes", report.blobs_deleted, report.bytes_freed));
        }
        if !report.stopped {
            report.manifest_contents_deleted = self.store.gc_orphan_content().await? as u64;
            let sweep = self.registry.expire_uploads().await?;
            report.uploads_expired = sweep.expired as u64;
            report.orphan_parts_aborted = sweep.orphan_parts as u64;
            log_line(
                log,
                format!(
                    "deleted {} unreferenced manifest contents; expired {} idle upload sessions; aborted {} \
                     orphaned multipart uploads",
                    report.manifest_contents_deleted, report.uploads_expired, report.orphan_parts_aborted
                ),
            );
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        log_line(
            log,
            format!(
                "garbage collection {} in {} ms: {} blobs, {} bytes freed",
                if report.stopped { "stopped" } else { "finished" },
                report.duration_ms,
                report.blobs_deleted,
                report.bytes_freed
            ),
        );
        Ok(report)
    }

    fn credit(&self, report: &mut GcReport, blob_repos: &HashMap<String, Vec<String>>, digest: &str, size: u64) {
        let repos = blob_repos.get(digest).cloned().unwrap_or_else(|| vec![String::new()]);
        for r in repos {
            let e = report.repositories.entry(r).or_default();
            e.blobs += 1;
            e.bytes += size;
        }
    }
}

/// Append a line to a run's log (and the process log), with its time.
fn log_line(log: &mut String, line: String) {
    info!(target: "berth::gc", "{line}");
    let _ = writeln!(log, "{} {line}", chrono_like(now_ms()));
}

/// `2026-12-05T20:46:28.123Z` for log lines.
fn chrono_like(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::{GcBlob, GcLink, GcManifest};

    fn link(repo: &str, d: &str, at: i64) -> GcLink {
        GcLink { repo: repo.into(), digest: d.into(), created_at: at }
    }

    fn manifest(repo: &str, d: &str, tagged: bool, subject: Option<&str>) -> GcManifest {
        GcManifest {
            repo: repo.into(),
            digest: d.into(),
            size: 1,
            created_at: 0,
            subject: subject.map(Into::into),
            tagged,
        }
    }

    fn blob(d: &str) -> GcBlob {
        GcBlob { digest: d.into(), size: 10, created_at: 0, pending_until: None }
    }

    fn r(repo: &str, m: &str, child: &str, kind: &str) -> (String, String, String, String) {
        (repo.into(), m.into(), child.into(), kind.into())
    }

    #[test]
    fn marks_what_nothing_live_holds() {
        let snap = GcSnapshot {
            links: vec![
                link("a", "L1", 0),
                link("a", "L2", 0),
                link("a", "L3", 0),
                link("b", "L3", 0),
                link("a", "L4", 950),
            ],
            manifests: vec![
                manifest("a", "tagged", true, None),
                manifest("a", "index", false, None),
                manifest("a", "child", false, None),
                manifest("a", "sig", false, Some("tagged")),
                manifest("a", "orphan-sig", false, Some("gone")),
            ],
            refs: vec![
                r("a", "tagged", "L1", "blob"),
                r("a", "index", "child", "manifest"),
                r("a", "child", "L2", "blob"),
            ],
            blobs: vec![blob("L1"), blob("L2"), blob("L3"), blob("L4"), blob("unlinked")],
        };
        let opts = GcOptions { time_window: Duration::from_millis(100), ..Default::default() };
        let m = mark(&snap, &opts, 1_000);
        assert!(m.manifests.is_empty(), "untagged manifests stay unless asked");
        assert_eq!(m.links, vec![("a".to_owned(), "L3".to_owned()), ("b".to_owned(), "L3".to_owned())]);
        let blobs: Vec<&str> = m.blobs.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(blobs, vec!["L3", "unlinked"], "L4 is younger than the window");

        let m = mark(&snap, &GcOptions { delete_untagged: true, ..opts }, 1_000);
        let gone: Vec<&str> = m.manifests.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(gone, vec!["index", "orphan-sig", "child"], "an index goes before its child");
        let blobs: Vec<&str> = m.blobs.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(blobs, vec!["L2", "L3", "unlinked"]);
    }

    #[test]
    fn reserved_blobs_are_kept() {
        let mut b = blob("x");
        b.pending_until = Some(2_000);
        let snap = GcSnapshot { blobs: vec![b], ..Default::default() };
        let opts = GcOptions { time_window: Duration::ZERO, ..Default::default() };
        assert!(mark(&snap, &opts, 1_000).blobs.is_empty());
        assert_eq!(mark(&snap, &opts, 3_000).blobs.len(), 1);
    }

    #[test]
    fn log_times_are_utc() {
        assert_eq!(chrono_like(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(chrono_like(1_796_589_988_123), "2026-12-06T20:46:28.123Z");
    }
}
