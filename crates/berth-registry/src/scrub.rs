//! Scrub: re-hash stored blobs at a bounded rate and quarantine any whose bytes no longer
//! match their digest (or are gone). A quarantined blob is never served again: `GET` answers
//! an error naming it, `HEAD` says it is unknown so that a client pushing it uploads it again
//! — and that upload, verified on the way in, replaces the damaged copy and lifts the
//! quarantine. When its last link goes, garbage collection frees it like any other blob.
//!
//! Only a mismatch or missing bytes quarantine; any other storage error (a timeout, a
//! permission) stops the run with that error, so a flaky store never quarantines good data.

use std::time::{Duration, Instant};

use berth_blob::{BlobBody, BlobError};
use berth_types::{Digest, Hasher};
use futures::StreamExt;
use serde::Serialize;
use tracing::{info, warn};

use crate::{Registry, RegistryError, now_ms};

/// How a scrub runs.
#[derive(Debug, Clone)]
pub struct ScrubOptions {
    /// Most bytes read per second (0: as fast as storage allows).
    pub rate: u64,
    /// Re-check blobs last verified longer ago than this (zero: every blob).
    pub recheck_after: Duration,
    /// Stop after this long (the next run continues with what is left).
    pub max_time: Option<Duration>,
}

/// What a scrub found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrubReport {
    /// Blobs verified.
    pub checked: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Blobs quarantined by this run, with the reason.
    pub quarantined: Vec<(String, String)>,
    /// Wall time.
    pub duration_ms: u64,
    /// Stopped at `max_time` with blobs left to check.
    pub unfinished: bool,
}

impl Registry {
    /// Verify stored blobs (see the module doc).
    pub async fn scrub(&self, opts: &ScrubOptions) -> Result<ScrubReport, RegistryError> {
        let started = Instant::now();
        let before = now_ms() - opts.recheck_after.as_millis() as i64;
        let mut report = ScrubReport::default();
        'outer: loop {
            let batch = self.meta.scrub_candidates(before.max(1), 100).await?;
            if batch.is_empty() {
                break;
            }
            for (digest, size, created_at) in batch {
                if opts.max_time.is_some_and(|m| started.elapsed() >= m) {
                    report.unfinished = true;
                    break 'outer;
                }
                let verdict = self.verify(&digest, size).await?;
                report.checked += 1;
                report.bytes += size.max(0) as u64;
                if let Some(reason) = &verdict {
                    warn!(%digest, %reason, "scrub: blob quarantined");
                    report.quarantined.push((digest.to_string(), reason.clone()));
                }
                self.meta
                    .scrub_verdict(&digest, Some(created_at), now_ms().max(before + 1), verdict.as_deref())
                    .await?;
                if opts.rate > 0 {
                    let due = Duration::from_secs_f64(report.bytes as f64 / opts.rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        info!(checked = report.checked, bytes = report.bytes, quarantined = report.quarantined.len(), "scrub finished");
        Ok(report)
    }

    /// `None` if the stored bytes hash to `digest` with `size` bytes; otherwise why not.
    async fn verify(&self, digest: &Digest, size: i64) -> Result<Option<String>, RegistryError> {
        let body = match self.blobs.open(digest, None).await {
            Ok(b) => b,
            Err(BlobError::NotFound) => return Ok(Some("its bytes are missing from storage".into())),
            Err(e) => return Err(e.into()),
        };
        let mut h = Hasher::new(digest.algorithm());
        let mut n = 0u64;
        match body {
            BlobBody::Bytes(b) => {
                h.update(&b);
                n = b.len() as u64;
            }
            BlobBody::Stream(mut s) => {
                while let Some(chunk) = s.next().await {
                    let c = chunk.map_err(|e| RegistryError::Blob(BlobError::Io(e)))?;
                    h.update(&c);
                    n += c.len() as u64;
                }
            }
        }
        let actual = h.finish();
        Ok(if &actual != digest {
            Some(format!("its stored bytes hash to {actual}, not to its digest"))
        } else if n != size as u64 {
            Some(format!("its stored bytes are {n} long, not {size}"))
        } else {
            None
        })
    }
}
