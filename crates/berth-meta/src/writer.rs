//! The embedded database's writer thread: the writes of a push (an upload's start, a blob's
//! pin and link, a manifest) run here, inline on one `rusqlite` connection, and every write
//! waiting when a transaction starts commits in it (group commit: one fsync for many
//! pushes). If one write fails (a blob collected under it, an immutable tag, a quota, a full
//! disk), the transaction is rolled back and each write of it runs again in a transaction of
//! its own, so that each gets its own answer and a failing one cannot fail the others.
//!
//! Other writes still go through sqlx's pool; SQLite's write lock (and its busy timeout)
//! orders the two. Checkpoints (copying the write-ahead log into the database file, with an
//! fsync) are left to a thread of their own, whoever committed.

use std::path::Path;

use tokio::sync::{mpsc, oneshot};

use crate::MetaError;
use crate::exec::SyncDb;

/// Writes committed together at most.
const GROUP_MAX: usize = 256;

/// How often the checkpointer looks for commits to copy into the database (and so how long
/// commits gather before they are copied).
const CHECKPOINT_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// A write-ahead log larger than this is emptied (`TRUNCATE`) rather than only copied.
const WAL_LIMIT: u64 = 64 * 1024 * 1024;

/// What every connection of this process that writes runs first (the writer's and sqlx's):
/// durable commits, and checkpoints left to the checkpointer thread up to [`WAL_LIMIT`] of
/// log (in 4 KiB pages). Past it, a connection that commits checkpoints itself: the
/// back-pressure that keeps a writer faster than the checkpointer (`berth admin fill`: a 75 MB
/// log after 16 s, and a first start that replayed it) within it.
pub(crate) fn connection_pragmas() -> String {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = {};",
        WAL_LIMIT / 4096
    )
}

/// A write waiting for the writer thread.
trait Job: Send {
    /// Its statements, inside the writer's transaction.
    fn run(&mut self, db: &mut SyncDb) -> Result<(), MetaError>;
    /// Answer the caller, once its transaction committed (`Ok`) or failed.
    fn finish(self: Box<Self>, r: Result<(), MetaError>);
}

struct Typed<F, T> {
    f: F,
    out: Option<T>,
    done: oneshot::Sender<Result<T, MetaError>>,
}

impl<F, T> Job for Typed<F, T>
where
    F: FnMut(&mut SyncDb) -> Result<T, MetaError> + Send,
    T: Send,
{
    fn run(&mut self, db: &mut SyncDb) -> Result<(), MetaError> {
        self.out = Some((self.f)(db)?);
        Ok(())
    }

    fn finish(self: Box<Self>, r: Result<(), MetaError>) {
        let Typed { out, done, .. } = *self;
        let _ = done.send(r.and_then(|()| out.ok_or_else(|| MetaError::Corrupt("a write left no result".into()))));
    }
}

/// The handle that queues writes for the thread; the thread ends when the last one drops.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Open (creating it if needed) the database at `path` for the writer, before any other
    /// connection: this is where SQLite replays a write-ahead log left by a crash, which
    /// takes as long as it takes (a 4.8 GB log after a killed pull load: 2.4 s here, longer
    /// than a pool connection may wait, `ACQUIRE_TIMEOUT`). Blocking: call it off the runtime.
    pub(crate) fn open_first(path: &Path) -> Result<rusqlite::Connection, MetaError> {
        let conn = open(path, rusqlite::OpenFlags::SQLITE_OPEN_CREATE)?;
        // As sqlx's connections are, with more page cache.
        conn.execute_batch(&format!("{} PRAGMA cache_size = -16384;", connection_pragmas()))?;
        // The first read replays the log (this one without parsing the schema).
        conn.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
        Ok(conn)
    }

    /// Start the thread on `conn` (from [`Writer::open_first`]), and the checkpointer beside it.
    pub(crate) fn start(conn: rusqlite::Connection, path: &Path) -> Result<Writer, MetaError> {
        conn.set_prepared_statement_cache_capacity(64);
        let mut db = SyncDb { conn };
        // Held by the thread only: the checkpointer ends when it does.
        let alive = checkpointer(path)?;
        let (tx, mut rx) = mpsc::channel::<Box<dyn Job>>(1024);
        std::thread::Builder::new()
            .name("berth-sql-write".into())
            .spawn(move || {
                let _alive = alive;
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < GROUP_MAX {
                        match rx.try_recv() {
                            Ok(j) => batch.push(j),
                            Err(_) => break,
                        }
                    }
                    commit_batch(&mut db, batch);
                }
            })
            .map_err(|e| MetaError::Unavailable(format!("cannot start the database writer: {e}")))?;
        Ok(Writer { tx })
    }

    /// Run `f` on the writer thread, in a transaction it may share with other writes; its
    /// value once that transaction committed. `f` may run twice (see the module doc): the
    /// first run's changes are rolled back before the second.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, MetaError>
    where
        F: FnMut(&mut SyncDb) -> Result<T, MetaError> + Send + 'static,
        T: Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        let stopped = || MetaError::Unavailable("the metadata writer stopped".into());
        self.tx.send(Box::new(Typed { f, out: None, done })).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

/// A read-write connection to `path` (with `more` flags), used by this thread only.
fn open(path: &Path, more: rusqlite::OpenFlags) -> Result<rusqlite::Connection, MetaError> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
        | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    Ok(rusqlite::Connection::open_with_flags(path, flags | more)?)
}

/// The thread that copies what was committed from the write-ahead log into the database
/// file: every [`CHECKPOINT_AFTER`], if any connection committed since it last looked
/// (`PRAGMA data_version`), a `PASSIVE` checkpoint, which waits for no reader or writer. The
/// connections of this process checkpoint themselves only past [`WAL_LIMIT`] (SQLite's
/// default is 1,000 pages): run inside commits, checkpoints were 12 % of the writer's time in
/// a tag-push load, and 8 % of the event consumers' in a pull load. It ends when the returned
/// sender is dropped.
///
/// SQLite starts the log over from its beginning only when a writer finds every reader on the
/// latest snapshot; under a steady read load (a million-manifest GET benchmark) that rarely
/// happens, and the log grew by 53 KB per counted pull, to gigabytes, which a crash then
/// leaves to replay at the next start. Past [`WAL_LIMIT`], the checkpoint is a `TRUNCATE`:
/// it waits (up to a second) for readers to move to the latest snapshot and empties the log.
fn checkpointer(path: &Path) -> Result<std::sync::mpsc::SyncSender<()>, MetaError> {
    let conn = open(path, rusqlite::OpenFlags::empty())?;
    conn.execute_batch("PRAGMA busy_timeout = 1000;")?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("berth-sql-ckpt".into())
        .spawn(move || {
            let mut seen = None;
            loop {
                if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) = rx.recv_timeout(CHECKPOINT_AFTER) {
                    return;
                }
                let version = conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)).ok();
                let large = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_LIMIT);
                if version.is_some() && version == seen && !large {
                    continue;
                }
                seen = version;
                let sql = if large { "PRAGMA wal_checkpoint(TRUNCATE)" } else { "PRAGMA wal_checkpoint(PASSIVE)" };
                if let Err(e) = conn.query_row(sql, [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpoint of the metadata database failed");
                }
            }
        })
        .map_err(|e| MetaError::Unavailable(format!("cannot start the database checkpointer: {e}")))?;
    Ok(tx)
}

fn exec(db: &SyncDb, sql: &str) -> Result<(), MetaError> {
    db.conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Commit `batch` together; if any write fails (or the commit does), roll it all back and
/// commit each alone, so that one failing write cannot fail the others. (A savepoint per write
/// would avoid the second round, but SQLite then copies every page a write touches into its
/// statement journal: 13 % of the writer's time in a tag-push load.)
fn commit_batch(db: &mut SyncDb, mut batch: Vec<Box<dyn Job>>) {
    let together = (|| -> Result<(), MetaError> {
        exec(db, "BEGIN IMMEDIATE")?;
        for job in batch.iter_mut() {
            job.run(db)?;
        }
        exec(db, "COMMIT")
    })();
    if together.is_ok() {
        for job in batch {
            job.finish(Ok(()));
        }
        return;
    }
    if !db.conn.is_autocommit() {
        let _ = exec(db, "ROLLBACK");
    }
    if batch.len() == 1 {
        if let Some(job) = batch.pop() {
            job.finish(together);
        }
        return;
    }
    for mut job in batch {
        let alone = (|| {
            exec(db, "BEGIN IMMEDIATE")?;
            job.run(db)?;
            exec(db, "COMMIT")
        })();
        if alone.is_err() && !db.conn.is_autocommit() {
            let _ = exec(db, "ROLLBACK");
        }
        job.finish(alone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{Exec, args, ready};

    fn table(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("w.db");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (a INTEGER PRIMARY KEY)").unwrap();
        path
    }

    fn writer(path: &Path) -> Writer {
        Writer::start(Writer::open_first(path).unwrap(), path).unwrap()
    }

    /// Wait (up to 10 s) until `done`.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn count(path: &Path) -> i64 {
        rusqlite::Connection::open(path).unwrap().query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_failing_write_fails_alone_and_the_others_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let w = writer(&path);
        let mut all = Vec::new();
        for i in 0..200i64 {
            let w = w.clone();
            all.push(tokio::spawn(async move {
                w.run(move |db| {
                    // Every tenth inserts a row and then fails: its row must not stay.
                    ready(db.exec("INSERT INTO t (a) VALUES ($1)", args![i]))?;
                    if i % 10 == 0 {
                        return Err(MetaError::Conflict(format!("{i} refused")));
                    }
                    Ok(i * 2)
                })
                .await
            }));
        }
        for (i, h) in all.into_iter().enumerate() {
            match h.await.unwrap() {
                Ok(v) => assert_eq!(v, i as i64 * 2),
                Err(MetaError::Conflict(m)) => assert_eq!((i % 10, m), (0, format!("{i} refused"))),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(count(&path), 180);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_another_connection_commits_is_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let _w = writer(&path);
        // A connection that leaves checkpoints to others, as the pool's do (below their limit).
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("PRAGMA wal_autocheckpoint = 0; CREATE TABLE big (b BLOB);").unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        other.execute("INSERT INTO big (b) VALUES (?1)", [vec![7u8; 1024 * 1024]]).unwrap();
        // Only a checkpoint can grow the database file by the row.
        eventually("the commit was not checkpointed", || {
            std::fs::metadata(&path).unwrap().len() >= before + 1024 * 1024
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_past_its_limit_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let w = writer(&path);
        let wal = dir.path().join("w.db-wal");
        // A reader stays on an old snapshot meanwhile, so a passive checkpoint cannot finish.
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN; SELECT COUNT(*) FROM t;").unwrap();
        w.run(|db| {
            ready(db.exec("CREATE TABLE big (b BLOB)", args![]))?;
            let mib = vec![7u8; 1024 * 1024];
            for _ in 0..(WAL_LIMIT / (1024 * 1024) + 8) {
                ready(db.exec("INSERT INTO big (b) VALUES ($1)", args![&mib[..]]))?;
            }
            Ok(())
        })
        .await
        .unwrap();
        assert!(std::fs::metadata(&wal).unwrap().len() > WAL_LIMIT);
        reader.execute_batch("COMMIT").unwrap();
        // The checkpointer's next look empties it.
        w.run(|db| ready(db.exec("INSERT INTO t (a) VALUES (1)", args![]))).await.unwrap();
        eventually("the log was not emptied", || std::fs::metadata(&wal).unwrap().len() <= WAL_LIMIT).await;
        assert_eq!(count(&path), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_error_rolls_back_only_its_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(dir.path());
        let w = writer(&path);
        w.run(|db| ready(db.exec("INSERT INTO t (a) VALUES (1)", args![]))).await.unwrap();
        // A duplicate key after a good insert in the same write: neither row stays.
        let err = w
            .run(|db| {
                ready(db.exec("INSERT INTO t (a) VALUES (2)", args![]))?;
                ready(db.exec("INSERT INTO t (a) VALUES (1)", args![]))
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        assert_eq!(count(&path), 1);
    }
}
