//! Point reads of the embedded database on the caller's thread, for the requests a registry
//! answers most: a manifest by tag or digest, its bytes, and the repository's policy that the
//! authorization decision reads.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every statement over a
//! channel, so one read costs two thread wake-ups. On a registry too large for the record
//! caches (a GET load spread over a million manifests), those wake-ups were most of the
//! server's time: 36 % of its samples in futex calls and 27 % in context switches against
//! 17 % in SQLite itself. A point read of SQLite's B-trees takes microseconds when its pages
//! are in the page cache, so these run inline, on a small pool of `rusqlite` connections to
//! the same file (WAL: every statement sees the last committed write). Whatever goes wrong
//! here (no free connection, a busy or failed read) returns `None`, and the caller asks sqlx
//! as before; writes never come here.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_types::{Digest, RepoName, Tag};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::ManifestRecord;

/// Connections kept at most (tokio's workers and a few blocking threads read at once).
const MAX_CONNECTIONS: usize = 8;

#[derive(Debug)]
pub(crate) struct FastReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    opened: AtomicUsize,
}

impl FastReads {
    pub(crate) fn new(path: &Path) -> FastReads {
        FastReads { path: path.to_owned(), idle: Mutex::new(Vec::new()), opened: AtomicUsize::new(0) }
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        // Never writes; waits briefly behind a checkpoint rather than failing.
        c.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 1000;")?;
        c.set_prepared_statement_cache_capacity(64);
        Ok(c)
    }

    /// Run `f` on an idle connection (opening one if fewer than the limit are open).
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                if self.opened.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    self.opened.fetch_sub(1, Ordering::AcqRel);
                    return None;
                }
                match self.connect() {
                    Ok(c) => c,
                    Err(e) => {
                        self.opened.fetch_sub(1, Ordering::AcqRel);
                        tracing::debug!(error = %e, "fast read connection");
                        return None;
                    }
                }
            }
        };
        let r = f(&conn);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        r.map_err(|e| {
            // A statement SQLite rejects is a bug here, not a busy database: tests catch it.
            debug_assert!(
                !matches!(&e, rusqlite::Error::InvalidParameterCount(..))
                    && !matches!(&e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::Unknown),
                "fast read failed: {e}"
            );
            tracing::debug!(error = %e, "fast read failed; asking sqlx")
        })
        .ok()
    }

    fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<ManifestRecord>> {
        let digest: String = r.get(0)?;
        let subject: Option<String> = r.get(4)?;
        let (Ok(digest), Ok(subject)) = (digest.parse::<Digest>(), subject.map(|s| s.parse::<Digest>()).transpose())
        else {
            return Ok(None);
        };
        Ok(Some(ManifestRecord {
            digest,
            media_type: r.get(1)?,
            artifact_type: r.get(2)?,
            size: r.get(3)?,
            subject,
            annotations: r.get(5)?,
            created_at: r.get(6)?,
        }))
    }

    /// The manifest `tag` points at (`Some(None)`: none).
    pub(crate) fn tagged(&self, repo: &RepoName, tag: &Tag) -> Option<Option<ManifestRecord>> {
        self.with(|c| {
            let mut st = c.prepare_cached(&crate::sql::manifest_by_tag())?;
            st.query_row((repo.as_str(), tag.as_str()), Self::record).optional()
        })
        .and_then(parsed)
    }

    /// The manifest `digest` of `repo` (`Some(None)`: none).
    pub(crate) fn manifest(&self, repo: &RepoName, digest: &Digest) -> Option<Option<ManifestRecord>> {
        self.with(|c| {
            let mut st = c.prepare_cached(&crate::sql::manifest_by_digest())?;
            st.query_row((repo.as_str(), digest.to_string()), Self::record).optional()
        })
        .and_then(parsed)
    }

    /// The policy document of `repo` (`Some(None)`: none), asked by the authorization decision
    /// of every request to a repository.
    pub(crate) fn repo_policy(&self, repo: &str) -> Option<Option<String>> {
        self.with(|c| {
            let mut st = c.prepare_cached(crate::access::REPO_POLICY)?;
            st.query_row([repo], |r| r.get::<_, String>(0)).optional()
        })
    }

    /// The bytes of manifest `digest` (`Some(None)`: none).
    pub(crate) fn content(&self, digest: &Digest) -> Option<Option<Vec<u8>>> {
        self.with(|c| {
            let mut st = c.prepare_cached(crate::sql::MANIFEST_CONTENT)?;
            st.query_row([digest.to_string()], |r| r.get::<_, Vec<u8>>(0)).optional()
        })
    }

    /// Every row of a read-only query (`None`: ask sqlx).
    pub(crate) fn query_all<T: crate::exec::Cols>(&self, sql: &str, args: &[crate::exec::Arg<'_>]) -> Option<Vec<T>> {
        self.with(|c| {
            let mut st = c.prepare_cached(sql)?;
            crate::exec::bind_lite(&mut st, args)?;
            crate::exec::rows_lite(&mut st)
        })
    }
}

/// A row whose stored values do not parse is left to the sqlx path, which reports it.
fn parsed(row: Option<Option<ManifestRecord>>) -> Option<Option<ManifestRecord>> {
    match row {
        None => Some(None),
        Some(parsed) => parsed.map(Some),
    }
}
