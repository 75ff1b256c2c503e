//! The SQL backend, over sqlx's `Any` driver: embedded SQLite (WAL journal,
//! `synchronous=FULL`: a commit is on disk when it returns) or PostgreSQL.

use std::path::Path;
use std::str::FromStr;

use berth_types::{Digest, RepoName, Tag};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::exec::{Exec, args};

use crate::events::{EventKind, NewEvent, Origin, insert_events};
use crate::{
    ArtifactRow, ManifestRecord, MetaError, MetaStore, RefKind, RepoSummary, UploadRecord, schema::MIGRATIONS,
};

/// Which database is behind the pool (for the few DDL differences).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The database behind a connection (or a transaction: `&**tx`).
    pub(crate) fn of(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name() == "PostgreSQL" { Backend::Postgres } else { Backend::Sqlite }
    }
}

/// The manifests of a repository that list a child manifest (unsorted: see `parents_of`).
pub(crate) const PARENTS_OF: &str =
    "SELECT r.digest FROM manifest_refs r WHERE r.repo = $1 AND r.child = $2 AND r.kind = 'manifest'";
/// The tags of a repository on one manifest (unsorted: see `tags_of`).
pub(crate) const TAGS_OF: &str = "SELECT name FROM tags WHERE repo = $1 AND digest = $2";

/// Add `delta` to `repo`'s stored manifest count (`repositories.manifest_count`), inside the
/// transaction that stores or deletes the manifests.
pub(crate) async fn count_manifests(db: &mut impl Exec, repo: &str, delta: i64) -> Result<(), MetaError> {
    db.exec("UPDATE repositories SET manifest_count = manifest_count + $1 WHERE name = $2", args![delta, repo]).await?;
    Ok(())
}

/// Delete a manifest with its tags, references and labels inside `tx`, adjusting the quota
/// and logging `artifact.deleted`; returns whether it was there.
pub(crate) async fn delete_manifest_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    repo: &RepoName,
    digest: &Digest,
    origin: &Origin,
) -> Result<bool, MetaError> {
    let d = digest.to_string();
    let size: Option<i64> = sqlx::query_scalar("DELETE FROM manifests WHERE repo = $1 AND digest = $2 RETURNING size")
        .bind(repo.as_str())
        .bind(&d)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(size) = size {
        crate::quota::adjust(tx, repo.as_str(), &d, size, -1, crate::now_ms()).await?;
        count_manifests(tx, repo.as_str(), -1).await?;
    }
    // No ORDER BY: SQLite would walk the primary key (every tag of the repository) to
    // avoid a sort, instead of the (repo, digest) index.
    let mut tags: Vec<String> = sqlx::query_scalar(TAGS_OF).bind(repo.as_str()).bind(&d).fetch_all(&mut **tx).await?;
    tags.sort_unstable();
    for q in [
        "DELETE FROM manifest_refs WHERE repo = $1 AND digest = $2",
        "DELETE FROM tags WHERE repo = $1 AND digest = $2",
        "DELETE FROM artifact_labels WHERE repo = $1 AND digest = $2",
    ] {
        sqlx::query(q).bind(repo.as_str()).bind(&d).execute(&mut **tx).await?;
    }
    if size.is_some() {
        let e = NewEvent::new(EventKind::ArtifactDeleted, crate::now_ms(), origin)
            .repo(repo.as_str())
            .digest(&d)
            .data(serde_json::json!({ "tags": tags }));
        insert_events(tx, backend, &[e]).await?;
    }
    Ok(size.is_some())
}

/// Metadata in SQLite (embedded, the default) or PostgreSQL.
///
/// On SQLite, the writes of a push are *group-committed* on a writer thread (`writer.rs`):
/// every write waiting commits in one transaction (one WAL fsync), and only then is each
/// acknowledged. Durability per acknowledged write is unchanged; throughput under
/// concurrency is several times higher. PostgreSQL batches WAL flushes itself.
#[derive(Debug, Clone)]
pub struct SqlMetaStore {
    pool: AnyPool,
    backend: Backend,
    writer: Option<crate::writer::Writer>,
    /// Point reads on the caller's thread (SQLite only).
    fast: Option<std::sync::Arc<crate::fastread::FastReads>>,
    /// The event log's recent reads (`events.rs`).
    events: std::sync::Arc<crate::events::EventCache>,
}

fn parse<T: FromStr>(s: String) -> Result<T, MetaError> {
    s.parse().map_err(|_| MetaError::Corrupt(format!("unparsable stored value {s:?}")))
}

fn opt_digest(s: Option<String>) -> Result<Option<Digest>, MetaError> {
    s.map(parse).transpose()
}

fn manifest_from_row(r: &AnyRow) -> Result<ManifestRecord, MetaError> {
    Ok(ManifestRecord {
        digest: parse(r.try_get("digest")?)?,
        media_type: r.try_get("media_type")?,
        artifact_type: r.try_get("artifact_type")?,
        size: r.try_get("size")?,
        subject: opt_digest(r.try_get("subject")?)?,
        annotations: r.try_get("annotations")?,
        created_at: r.try_get("created_at")?,
    })
}

const MANIFEST_COLS: &str = "m.digest, m.media_type, m.artifact_type, m.size, m.subject, m.annotations, m.created_at";

/// A repository's manifest by digest (`$1` the repository, `$2` the digest), its columns in
/// [`manifest_from_row`]'s order; sqlx and the fast reads (`fastread.rs`) ask the same.
pub(crate) fn manifest_by_digest() -> String {
    format!("SELECT {MANIFEST_COLS} FROM manifests m WHERE m.repo = $1 AND m.digest = $2")
}

/// The manifest a tag points at (`$1` the repository, `$2` the tag), as [`manifest_by_digest`].
pub(crate) fn manifest_by_tag() -> String {
    format!(
        "SELECT {MANIFEST_COLS} FROM tags t JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
         WHERE t.repo = $1 AND t.name = $2"
    )
}

/// A manifest's bytes (`$1` the digest).
pub(crate) const MANIFEST_CONTENT: &str = "SELECT content FROM manifest_content WHERE digest = $1";

/// Most values bound in one multi-row statement. SQLite finds a numbered parameter's name by
/// a linear walk, and sqlx asks for every parameter's name, so binding `$n` placeholders
/// costs time growing with the square of their count (thirty thousand took most of a bulk
/// insert); [`value_rows`] avoids the walk on SQLite, `IN` lists keep `$n` under this bound.
pub(crate) const MAX_BINDS: usize = 1000;

/// `($1, …, $cols), ($cols+1, …)`: the VALUES of a multi-row statement of `rows` rows, on
/// `backend`, for a statement that binds nothing else.
///
/// On SQLite the placeholders are anonymous (`?`): SQLite finds a numbered or named
/// parameter's name by walking a list of all of them, and sqlx asks for the name of each one
/// it binds, so `$n` placeholders cost time quadratic in their number (7 % of the server's
/// samples under a pull load at a million manifests, from the event and audit inserts).
pub(crate) fn value_rows(backend: Backend, rows: usize, cols: usize) -> String {
    value_rows_of(backend, rows, cols, |_, p| p)
}

/// As [`value_rows`], each placeholder passed through `cell(column, placeholder)` (for a cast).
pub(crate) fn value_rows_of(
    backend: Backend,
    rows: usize,
    cols: usize,
    cell: impl Fn(usize, String) -> String,
) -> String {
    let mut out = String::with_capacity(rows * cols * 6);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            let p = match backend {
                Backend::Sqlite => "?".to_owned(),
                Backend::Postgres => format!("${}", r * cols + c + 1),
            };
            out.push_str(&cell(c, p));
        }
        out.push(')');
    }
    out
}

/// `$first, $first+1, …` for an IN list of `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl SqlMetaStore {
    /// Open (creating if needed) an embedded SQLite database file and run pending migrations.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<Self, MetaError> {
        sqlx::any::install_default_drivers();
        let path = path.as_ref();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| MetaError::Db(sqlx::Error::Io(e)))?;
        }
        let owned = path.to_owned();
        let first = tokio::task::spawn_blocking(move || crate::writer::Writer::open_first(&owned))
            .await
            .map_err(|e| MetaError::Unavailable(format!("opening the database: {e}")))??;
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(crate::ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(crate::writer::connection_pragmas().as_str()).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let mut store =
            SqlMetaStore { pool, backend: Backend::Sqlite, writer: None, fast: None, events: Default::default() };
        store.migrate().await?;
        store.writer = Some(crate::writer::Writer::start(first, path)?);
        store.fast = Some(std::sync::Arc::new(crate::fastread::FastReads::new(path)));
        Ok(store)
    }

    /// Connect to PostgreSQL (`postgres://…`) with a pool of `pool_size` and run pending migrations.
    pub async fn open_postgres(url: &str, pool_size: u32) -> Result<Self, MetaError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(crate::ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        let store =
            SqlMetaStore { pool, backend: Backend::Postgres, writer: None, fast: None, events: Default::default() };
        store.migrate().await?;
        Ok(store)
    }

    /// The writer thread (SQLite).
    pub(crate) fn writer(&self) -> Option<&crate::writer::Writer> {
        self.writer.as_ref()
    }

    /// The event log's recent reads.
    pub(crate) fn event_cache(&self) -> &crate::events::EventCache {
        &self.events
    }

    /// A transaction that holds SQLite's write lock from its start: one that reads first
    /// and writes later would fail at once (`database is locked`) if another writer
    /// committed in between, busy timeout or not.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, MetaError> {
        begin_write_on(&self.pool, self.backend).await
    }

    /// Write a consistent copy of the embedded database to `dest` (SQLite's `VACUUM INTO`,
    /// safe while other connections read and write). PostgreSQL has its own tools.
    pub async fn snapshot_to(&self, dest: &Path) -> Result<(), MetaError> {
        if self.backend != Backend::Sqlite {
            return Err(MetaError::Corrupt("snapshots are for the embedded database; use pg_dump".into()));
        }
        let dest = dest.to_str().ok_or_else(|| MetaError::Corrupt("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1").bind(dest).execute(&self.pool).await?;
        Ok(())
    }

    /// Move the embedded database's write-ahead log into the database file and empty it
    /// (SQLite's `wal_checkpoint(TRUNCATE)`), at a clean shutdown: the next start then opens
    /// it without replaying a log of up to a few MiB. Nothing to do on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), MetaError> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Every blob some repository links, with its size (what a backup must copy).
    pub async fn blob_digests(&self) -> Result<Vec<(Digest, i64)>, MetaError> {
        // Linked blobs only: an unlinked row may be a collection's leftover without bytes.
        let rows = sqlx::query(
            "SELECT digest, size FROM blobs b WHERE EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest)
             ORDER BY digest",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((parse(r.try_get("digest")?)?, r.try_get("size")?))).collect()
    }

    /// ` FOR SHARE` on PostgreSQL: a row a write depends on cannot be deleted under it
    /// (SQLite serialises writers, so it needs nothing).
    pub(crate) fn lock_share(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        }
    }

    /// Manifests of `repo` (all, or those of `only`), newest first, with tags, children and
    /// sizes.
    async fn artifact_rows(&self, repo: &RepoName, only: Option<&[String]>) -> Result<Vec<ArtifactRow>, MetaError> {
        // `AND <column> IN (…)` for a page's digests ($2 on; $1 is the repository).
        let within =
            |column: &str| only.map_or(String::new(), |d| format!(" AND {column} IN ({})", placeholders(2, d.len())));
        fn bind_all<'q>(
            mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
            repo: &RepoName,
            only: Option<&[String]>,
        ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
            q = q.bind(repo.as_str().to_owned());
            for d in only.unwrap_or_default() {
                q = q.bind(d.clone());
            }
            q
        }
        // A page's rows are found by (repo, digest) and put in order here: asked to order them,
        // SQLite walks the repository's whole index in that order instead.
        let order = |by: &str| if only.is_some() { String::new() } else { format!(" ORDER BY {by}") };
        let sql = format!(
            "SELECT {MANIFEST_COLS}, m.pull_time, m.pull_count FROM manifests m WHERE m.repo = $1{}{}",
            within("m.digest"),
            order("m.created_at DESC, m.digest")
        );
        let rows = bind_all(sqlx::query(&sql), repo, only).fetch_all(&self.pool).await?;
        let mut out: Vec<ArtifactRow> = Vec::with_capacity(rows.len());
        let mut index = std::collections::HashMap::new();
        for r in &rows {
            let record = manifest_from_row(r)?;
            index.insert(record.digest.to_string(), out.len());
            let total_size = record.size;
            let pull_time = r.try_get("pull_time")?;
            out.push(ArtifactRow {
                record,
                tags: Vec::new(),
                children: Vec::new(),
                total_size,
                pull_time,
                pull_count: r.try_get("pull_count")?,
                tag_pull_times: Default::default(),
            });
        }
        let sql = format!(
            "SELECT name, digest, updated_at, pull_time FROM tags WHERE repo = $1{}{}",
            within("digest"),
            order("name")
        );
        for t in &bind_all(sqlx::query(&sql), repo, only).fetch_all(&self.pool).await? {
            let d: String = t.try_get("digest")?;
            if let Some(&i) = index.get(&d) {
                let name: String = t.try_get("name")?;
                if let Some(at) = t.try_get::<Option<i64>, _>("pull_time")? {
                    out[i].tag_pull_times.insert(name.clone(), at);
                }
                out[i].tags.push((name, t.try_get("updated_at")?));
            }
        }
        let sql = format!(
            "SELECT r.digest, r.child, r.kind, b.size FROM manifest_refs r LEFT JOIN blobs b ON b.digest = r.child
             WHERE r.repo = $1{}",
            within("r.digest")
        );
        for r in &bind_all(sqlx::query(&sql), repo, only).fetch_all(&self.pool).await? {
            let d: String = r.try_get("digest")?;
            let Some(&i) = index.get(&d) else { continue };
            let kind: String = r.try_get("kind")?;
            if kind == "manifest" {
                out[i].children.push(parse(r.try_get("child")?)?);
            } else {
                out[i].total_size += r.try_get::<Option<i64>, _>("size")?.unwrap_or(0);
            }
        }
        if only.is_some() {
            for a in &mut out {
                a.tags.sort();
            }
            out.sort_by(|a, b| {
                b.record.created_at.cmp(&a.record.created_at).then_with(|| a.record.digest.cmp(&b.record.digest))
            });
        }
        Ok(out)
    }

    /// The point reads on the caller's thread (SQLite only).
    pub(crate) fn fast_reads(&self) -> Option<&crate::fastread::FastReads> {
        self.fast.as_deref()
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Every row of a read-only query: inline on SQLite (`fastread.rs`), else through sqlx.
    pub(crate) async fn read_all<T: crate::exec::Cols>(
        &self,
        sql: &str,
        args: &[crate::exec::Arg<'_>],
    ) -> Result<Vec<T>, MetaError> {
        if let Some(rows) = self.fast.as_ref().and_then(|f| f.query_all(sql, args)) {
            return Ok(rows);
        }
        let mut conn = self.pool.acquire().await?;
        conn.query_all(sql, args).await
    }

    /// The first row of a read-only query, as [`Self::read_all`].
    pub(crate) async fn read_opt<T: crate::exec::Cols>(
        &self,
        sql: &str,
        args: &[crate::exec::Arg<'_>],
    ) -> Result<Option<T>, MetaError> {
        Ok(self.read_all(sql, args).await?.into_iter().next())
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    fn ddl(&self, stmt: &str) -> String {
        let (bytes, name, serial) = match self.backend {
            Backend::Sqlite => ("BLOB", "TEXT", "INTEGER PRIMARY KEY AUTOINCREMENT"),
            Backend::Postgres => ("BYTEA", "TEXT COLLATE \"C\"", "BIGSERIAL PRIMARY KEY"),
        };
        stmt.replace("{BYTES}", bytes).replace("{NAME}", name).replace("{SERIAL}", serial)
    }

    /// Apply migrations not yet applied. Safe to run from several processes at once on
    /// PostgreSQL (an advisory lock serialises them).
    pub async fn migrate(&self) -> Result<(), MetaError> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock(727274)").execute(&mut *conn).await?;
        }
        let result = self.migrate_on(&mut conn).await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(727274)").execute(&mut *conn).await?;
        }
        drop(conn);
        if result?.contains(&10) {
            // Quotas start from what is already stored.
            crate::QuotaStore::verify_quotas(self, true).await?;
        }
        Ok(())
    }

    async fn migrate_on(&self, conn: &mut sqlx::pool::PoolConnection<sqlx::Any>) -> Result<Vec<i64>, MetaError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS berth_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut **conn)
        .await?;
        // What is applied, in one query; what is not, in one transaction (one commit, one
        // fsync: a first start is not thirty of them).
        let done: std::collections::HashSet<i64> = sqlx::query_scalar("SELECT version FROM berth_migrations")
            .fetch_all(&mut **conn)
            .await?
            .into_iter()
            .collect();
        let pending: Vec<_> = MIGRATIONS.iter().filter(|(v, _)| !done.contains(v)).collect();
        let mut applied = Vec::new();
        if pending.is_empty() {
            return Ok(applied);
        }
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        for (version, stmts) in pending {
            for s in *stmts {
                sqlx::query(&self.ddl(s)).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO berth_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(0i64)
                .execute(&mut *tx)
                .await?;
            applied.push(*version);
        }
        tx.commit().await?;
        Ok(applied)
    }
}

/// Link blob `digest` (of `size` bytes) into `repo`, creating the repository; a new link is
/// counted in the project's quota (and refused past its limit).
async fn link_into(db: &mut impl Exec, repo: &RepoName, digest: &str, size: i64, now: i64) -> Result<(), MetaError> {
    db.exec(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        args![repo.as_str(), now],
    )
    .await?;
    let linked = db
        .exec(
            "INSERT INTO repo_blobs (repo, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            args![repo.as_str(), digest, now],
        )
        .await?;
    if linked > 0 {
        crate::quota::adjust(db, repo.as_str(), digest, size, 1, now).await?;
    }
    Ok(())
}

/// A link of `digest` in `repo` was removed: take it out of the project's quota.
pub(crate) async fn unlinked(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repo: &str,
    digest: &str,
) -> Result<(), MetaError> {
    let size: Option<i64> =
        sqlx::query_scalar("SELECT size FROM blobs WHERE digest = $1").bind(digest).fetch_optional(&mut **tx).await?;
    crate::quota::adjust(tx, repo, digest, size.unwrap_or(0), -1, crate::now_ms()).await
}

/// See [`SqlMetaStore::begin_write`].
async fn begin_write_on(pool: &AnyPool, backend: Backend) -> Result<sqlx::Transaction<'static, sqlx::Any>, MetaError> {
    let mut tx = pool.begin().await?;
    if backend == Backend::Sqlite {
        sqlx::query("UPDATE event_cursors SET seq = seq WHERE 1 = 0").execute(&mut *tx).await?;
    }
    Ok(tx)
}

/// The statements of one manifest write and its events, inside the caller's transaction.
#[allow(clippy::too_many_arguments)]
async fn write_manifest(
    db: &mut impl Exec,
    repo: &RepoName,
    m: &ManifestRecord,
    content: &[u8],
    refs: &[(Digest, RefKind)],
    tags: &[Tag],
    immutable: &[Tag],
    origin: &Origin,
) -> Result<(), MetaError> {
    let backend = db.backend();
    let d = m.digest.to_string();
    // What it references must still be there, and stay while we commit (see `gc.rs`).
    let share = match backend {
        Backend::Postgres => " FOR SHARE",
        Backend::Sqlite => "",
    };
    let mut missing = Vec::new();
    for (kind, sql) in [
        (RefKind::Blob, "SELECT digest FROM repo_blobs WHERE repo = $1 AND digest IN"),
        (RefKind::Manifest, "SELECT digest FROM manifests WHERE repo = $1 AND digest IN"),
    ] {
        let wanted: Vec<String> = refs.iter().filter(|(_, k)| *k == kind).map(|(c, _)| c.to_string()).collect();
        for chunk in wanted.chunks(500) {
            let sql = format!("{sql} ({}) ORDER BY digest{share}", placeholders(2, chunk.len()));
            let binds: Vec<crate::exec::Arg<'_>> =
                std::iter::once(repo.as_str().into()).chain(chunk.iter().map(Into::into)).collect();
            let found: std::collections::HashSet<String> = db.query_all(&sql, &binds).await?.into_iter().collect();
            missing.extend(chunk.iter().filter(|c| !found.contains(*c)).filter_map(|c| c.parse::<Digest>().ok()));
        }
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(MetaError::Gone(missing));
    }
    db.exec(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        args![repo.as_str(), m.created_at],
    )
    .await?;
    // On PostgreSQL the no-op update locks an existing row, so a collection cannot delete the
    // content under this manifest.
    db.exec(
        match backend {
            Backend::Postgres => {
                "INSERT INTO manifest_content (digest, content) VALUES ($1, $2)
                 ON CONFLICT (digest) DO UPDATE SET digest = excluded.digest"
            }
            Backend::Sqlite => "INSERT INTO manifest_content (digest, content) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        },
        args![&d, content],
    )
    .await?;
    let subject = m.subject.as_ref().map(|s| s.to_string());
    let inserted = db
        .exec(
            "INSERT INTO manifests (repo, digest, media_type, artifact_type, size, subject, annotations, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            args![repo.as_str(), &d, &m.media_type, &m.artifact_type, m.size, &subject, &m.annotations, m.created_at],
        )
        .await?;
    if inserted == 0 && backend == Backend::Postgres {
        // Already there: hold it, so that a collection deleting untagged manifests cannot
        // delete it under the tags this push sets (it re-checks for tags after its lock).
        let held: Option<i64> = db
            .query_opt("SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2 FOR SHARE", args![repo.as_str(), &d])
            .await?;
        if held.is_none() {
            return Err(MetaError::Gone(vec![m.digest.clone()]));
        }
    }
    if inserted > 0 {
        crate::quota::adjust(db, repo.as_str(), &d, m.size, 1, m.created_at).await?;
        count_manifests(db, repo.as_str(), 1).await?;
        for (child, kind) in refs {
            db.exec(
                "INSERT INTO manifest_refs (repo, digest, child, kind) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                args![repo.as_str(), &d, &child.to_string(), kind.as_str()],
            )
            .await?;
        }
    }
    let mut events =
        vec![NewEvent::new(EventKind::ArtifactPushed, m.created_at, origin).repo(repo.as_str()).digest(&d).data(
            serde_json::json!({
                "media_type": m.media_type,
                "artifact_type": m.artifact_type,
                "size": m.size,
                "tags": tags.iter().map(Tag::as_str).collect::<Vec<_>>(),
            }),
        )];
    if let Some(first) = tags.first() {
        events[0].tag = Some(first.to_string());
    }
    for tag in tags {
        if let Some(mut e) = upsert_tag(db, repo, tag, &d, immutable.contains(tag), m.created_at, origin).await? {
            // Part of the push (the audit log shows the push, not each tag).
            match e.data.as_object_mut() {
                Some(o) => {
                    o.insert("push".into(), true.into());
                }
                None => e.data = serde_json::json!({ "push": true }),
            }
            events.push(e);
        }
    }
    insert_events(db, backend, &events).await
}

/// Point `tag` at `digest` inside a transaction; the event to record, if the tag changed.
async fn upsert_tag(
    db: &mut impl Exec,
    repo: &RepoName,
    tag: &Tag,
    digest: &str,
    immutable: bool,
    now: i64,
    origin: &Origin,
) -> Result<Option<NewEvent>, MetaError> {
    let before: Option<String> = db
        .query_opt("SELECT digest FROM tags WHERE repo = $1 AND name = $2", args![repo.as_str(), tag.as_str()])
        .await?;
    if immutable && before.as_deref().is_some_and(|b| b != digest) {
        return Err(MetaError::TagImmutable(tag.to_string()));
    }
    // An immutable tag only ever "moves" to the digest it has: a racing push that created it
    // meanwhile (PostgreSQL; `before` was read without a lock) makes this write a no-op.
    let guard = if immutable { " WHERE tags.digest = excluded.digest" } else { "" };
    let n = db
        .exec(
            &format!(
                "INSERT INTO tags (repo, name, digest, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at{guard}"
            ),
            args![repo.as_str(), tag.as_str(), digest, now],
        )
        .await?;
    if immutable && n == 0 {
        return Err(MetaError::TagImmutable(tag.to_string()));
    }
    let event = |kind| NewEvent::new(kind, now, origin).repo(repo.as_str()).digest(digest).tag(tag);
    Ok(match before {
        None => Some(event(EventKind::TagCreated)),
        Some(old) if old != digest => Some(event(EventKind::TagMoved).data(serde_json::json!({ "from": old }))),
        Some(_) => None,
    })
}

/// Pin blob `digest` against collection until `until`; is it quarantined?
async fn pin_in(db: &mut impl Exec, digest: &str, size: i64, now: i64, until: i64) -> Result<bool, MetaError> {
    // An upsert takes the row lock, so it waits for a collection deleting this blob's bytes.
    db.exec(
        "INSERT INTO blobs (digest, size, created_at, pending_until) VALUES ($1, $2, $3, $4)
         ON CONFLICT (digest) DO UPDATE SET pending_until = CASE
           WHEN blobs.pending_until IS NULL OR blobs.pending_until < excluded.pending_until
           THEN excluded.pending_until ELSE blobs.pending_until END",
        args![digest, size, now, until],
    )
    .await?;
    let quarantined: Option<String> =
        db.query_one("SELECT quarantined FROM blobs WHERE digest = $1", args![digest]).await?;
    Ok(quarantined.is_some())
}

/// Link a pinned blob into `repo`, lift the pin, and end the upload `ending`.
async fn link_in(
    db: &mut impl Exec,
    repo: &RepoName,
    digest: &Digest,
    pinned_at: i64,
    now: i64,
    ending: Option<&str>,
) -> Result<(), MetaError> {
    let d = digest.to_string();
    // `FOR UPDATE`, not `FOR SHARE`: two links of one digest would each wait on the
    // other's share lock at the `UPDATE` below.
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let row: Option<(i64, i64)> =
        db.query_opt(&format!("SELECT created_at, size FROM blobs WHERE digest = $1{lock}"), args![&d]).await?;
    // A row made after our pin is another upload's: ours was collected in between.
    let size = match row {
        Some((created_at, size)) if created_at <= pinned_at => size,
        _ => return Err(MetaError::Gone(vec![digest.clone()])),
    };
    link_into(db, repo, &d, size, now).await?;
    // The link protects it now (and the row lock taken above keeps collections out). A new
    // blob's bytes were hashed on the way in: the scrubber need not read them for a while.
    // Lift our pin only: another upload of the same digest may still be committing.
    db.exec(
        "UPDATE blobs SET checked_at = COALESCE(checked_at, $2),
         pending_until = CASE WHEN pending_until <= $3 THEN NULL ELSE pending_until END
         WHERE digest = $1",
        args![&d, now, pinned_at + crate::PIN_LEASE_MS],
    )
    .await?;
    if let Some(id) = ending {
        db.exec("DELETE FROM uploads WHERE id = $1", args![id]).await?;
    }
    Ok(())
}

/// Record a new upload session, unless its repository or owner has too many open: then
/// which of the two (and nothing is written).
async fn create_upload_in(
    db: &mut impl Exec,
    up: &UploadRecord,
    max_per_repo: u64,
    max_per_owner: u64,
) -> Result<Option<&'static str>, MetaError> {
    let in_repo: i64 = db.query_one("SELECT COUNT(*) FROM uploads WHERE repo = $1", args![up.repo.as_str()]).await?;
    if in_repo as u64 >= max_per_repo {
        return Ok(Some("repository"));
    }
    let of_owner: i64 = db.query_one("SELECT COUNT(*) FROM uploads WHERE owner = $1", args![&up.owner]).await?;
    if of_owner as u64 >= max_per_owner {
        return Ok(Some("account"));
    }
    db.exec(
        "INSERT INTO uploads (id, repo, owner, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
        args![&up.id, up.repo.as_str(), &up.owner, up.created_at, up.updated_at],
    )
    .await?;
    Ok(None)
}

#[async_trait::async_trait]
impl MetaStore for SqlMetaStore {
    async fn pin_blob(&self, digest: &Digest, size: i64, now: i64, until: i64) -> Result<bool, MetaError> {
        if let Some(w) = &self.writer {
            let d = digest.to_string();
            return w.run(move |db| crate::exec::ready(pin_in(db, &d, size, now, until))).await;
        }
        let mut tx = self.begin_write().await?;
        let quarantined = pin_in(&mut tx, &digest.to_string(), size, now, until).await?;
        tx.commit().await?;
        Ok(quarantined)
    }

    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        pinned_at: i64,
        now: i64,
        ending: Option<&str>,
    ) -> Result<(), MetaError> {
        if let Some(w) = &self.writer {
            let (repo, digest, ending) = (repo.clone(), digest.clone(), ending.map(str::to_owned));
            return w
                .run(move |db| crate::exec::ready(link_in(db, &repo, &digest, pinned_at, now, ending.as_deref())))
                .await;
        }
        let mut tx = self.begin_write().await?;
        link_in(&mut tx, repo, digest, pinned_at, now, ending).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        now: i64,
    ) -> Result<Option<i64>, MetaError> {
        let mut tx = self.begin_write().await?;
        let d = digest.to_string();
        let size: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT size FROM blobs WHERE digest = $1 AND quarantined IS NULL{}",
            self.lock_share()
        ))
        .bind(&d)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(size) = size else { return Ok(None) };
        let linked: Option<i64> = match from {
            Some(src) => {
                sqlx::query_scalar("SELECT 1 FROM repo_blobs WHERE repo = $1 AND digest = $2")
                    .bind(src.as_str())
                    .bind(&d)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query_scalar("SELECT 1 FROM repo_blobs WHERE digest = $1 LIMIT 1")
                    .bind(&d)
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        // Only a linked blob is sure to have its bytes (a collection removes links first).
        if linked.is_none() {
            return Ok(None);
        }
        link_into(&mut tx, repo, &d, size, now).await?;
        tx.commit().await?;
        Ok(Some(size))
    }

    async fn repo_blob_checked(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<(i64, Option<String>)>, MetaError> {
        self.read_opt(
            "SELECT b.size, b.quarantined FROM repo_blobs r JOIN blobs b ON b.digest = r.digest
             WHERE r.repo = $1 AND r.digest = $2",
            args![repo.as_str(), &digest.to_string()],
        )
        .await
    }

    async fn scrub_candidates(&self, before: i64, limit: i64) -> Result<Vec<(Digest, i64, i64)>, MetaError> {
        let rows = sqlx::query(
            "SELECT digest, size, created_at FROM blobs b
             WHERE quarantined IS NULL AND COALESCE(checked_at, 0) < $1
             AND EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest)
             ORDER BY COALESCE(checked_at, 0), digest LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((parse(r.try_get("digest")?)?, r.try_get("size")?, r.try_get("created_at")?))).collect()
    }

    async fn scrub_verdict(
        &self,
        digest: &Digest,
        created_at: Option<i64>,
        at: i64,
        quarantine: Option<&str>,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE blobs SET checked_at = $2, quarantined = $3 WHERE digest = $1 AND ($4 < 0 OR created_at = $4)",
        )
        .bind(digest.to_string())
        .bind(at)
        .bind(quarantine)
        .bind(created_at.unwrap_or(-1))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0
            && let Some(reason) = quarantine
        {
            let e = NewEvent::new(EventKind::BlobQuarantined, at, &Origin::system())
                .digest(digest)
                .data(serde_json::json!({ "reason": reason }));
            insert_events(&mut tx, self.backend, &[e]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn quarantined(&self) -> Result<Vec<(Digest, String, Vec<String>)>, MetaError> {
        let rows = sqlx::query(
            "SELECT b.digest, b.quarantined, l.repo FROM blobs b LEFT JOIN repo_blobs l ON l.digest = b.digest
             WHERE b.quarantined IS NOT NULL ORDER BY b.digest, l.repo",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(Digest, String, Vec<String>)> = Vec::new();
        for r in rows {
            let d: Digest = parse(r.try_get("digest")?)?;
            let repo: Option<String> = r.try_get("repo")?;
            match out.last_mut() {
                Some(last) if last.0 == d => last.2.extend(repo),
                _ => out.push((d, r.try_get("quarantined")?, repo.into_iter().collect())),
            }
        }
        Ok(out)
    }

    async fn any_blob(&self, digest: &Digest) -> Result<Option<i64>, MetaError> {
        Ok(sqlx::query_scalar(
            "SELECT b.size FROM blobs b WHERE b.digest = $1 AND EXISTS (SELECT 1 FROM repo_blobs r WHERE r.digest = b.digest)",
        )
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn blob_repos(&self, digest: &Digest, limit: usize) -> Result<Vec<RepoName>, MetaError> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT repo FROM repo_blobs WHERE digest = $1 ORDER BY repo LIMIT $2")
                .bind(digest.to_string())
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
        names.into_iter().map(|n| n.parse().map_err(|e| MetaError::Corrupt(format!("repository {n:?}: {e}")))).collect()
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            unlinked(&mut tx, repo.as_str(), &digest.to_string()).await?;
            let e = NewEvent::new(EventKind::BlobDeleted, crate::now_ms(), origin).repo(repo.as_str()).digest(digest);
            insert_events(&mut tx, self.backend, &[e]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn repo_blob_sizes(&self, repo: &RepoName, digests: &[Digest]) -> Result<Vec<(Digest, i64)>, MetaError> {
        let mut out = Vec::new();
        for chunk in digests.chunks(500) {
            let sql = format!(
                "SELECT b.digest, b.size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest
                 WHERE r.repo = $1 AND r.digest IN ({})",
                placeholders(2, chunk.len())
            );
            let digests: Vec<String> = chunk.iter().map(Digest::to_string).collect();
            let binds: Vec<crate::exec::Arg<'_>> =
                std::iter::once(repo.as_str().into()).chain(digests.iter().map(Into::into)).collect();
            for (d, size) in self.read_all::<(String, i64)>(&sql, &binds).await? {
                out.push((parse(d)?, size));
            }
        }
        Ok(out)
    }

    async fn put_manifest_guarded(
        &self,
        repo: &RepoName,
        m: &ManifestRecord,
        content: &[u8],
        refs: &[(Digest, RefKind)],
        tags: &[Tag],
        immutable: &[Tag],
        origin: &Origin,
    ) -> Result<(), MetaError> {
        if let Some(w) = &self.writer {
            let (repo, m, content) = (repo.clone(), m.clone(), content.to_vec());
            let (refs, tags, immutable, origin) = (refs.to_vec(), tags.to_vec(), immutable.to_vec(), origin.clone());
            return w
                .run(move |db| {
                    crate::exec::ready(write_manifest(db, &repo, &m, &content, &refs, &tags, &immutable, &origin))
                })
                .await;
        }
        let mut tx = self.begin_write().await?;
        write_manifest(&mut tx, repo, m, content, refs, tags, immutable, origin).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>, MetaError> {
        if let Some(found) = self.fast.as_ref().and_then(|f| f.manifest(repo, digest)) {
            return Ok(found);
        }
        let row = sqlx::query(&manifest_by_digest())
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn get_tagged_manifest(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>, MetaError> {
        if let Some(found) = self.fast.as_ref().and_then(|f| f.tagged(repo, tag)) {
            return Ok(found);
        }
        let row =
            sqlx::query(&manifest_by_tag()).bind(repo.as_str()).bind(tag.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn present_manifests(&self, repo: &RepoName, digests: &[Digest]) -> Result<Vec<Digest>, MetaError> {
        let mut out = Vec::new();
        for chunk in digests.chunks(500) {
            let sql = format!(
                "SELECT digest FROM manifests WHERE repo = $1 AND digest IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql).bind(repo.as_str());
            for d in chunk {
                q = q.bind(d.to_string());
            }
            for d in q.fetch_all(&self.pool).await? {
                out.push(parse(d)?);
            }
        }
        Ok(out)
    }

    async fn manifest_content(&self, digest: &Digest) -> Result<Option<Vec<u8>>, MetaError> {
        if let Some(found) = self.fast.as_ref().and_then(|f| f.content(digest)) {
            return Ok(found);
        }
        Ok(sqlx::query_scalar(MANIFEST_CONTENT).bind(digest.to_string()).fetch_optional(&self.pool).await?)
    }

    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>, MetaError> {
        let d: Option<String> = sqlx::query_scalar("SELECT digest FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_optional(&self.pool)
            .await?;
        opt_digest(d)
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let found = delete_manifest_in(&mut tx, self.backend, repo, digest, origin).await?;
        tx.commit().await?;
        Ok(found)
    }

    async fn put_tag_guarded(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        immutable: bool,
        now: i64,
        origin: &Origin,
    ) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let d = digest.to_string();
        let exists: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2{}",
            self.lock_share()
        ))
        .bind(repo.as_str())
        .bind(&d)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Ok(false);
        }
        if let Some(e) = upsert_tag(&mut tx, repo, tag, &d, immutable, now, origin).await? {
            insert_events(&mut tx, self.backend, &[e]).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let was: Option<String> = sqlx::query_scalar("SELECT digest FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(was) = was else { return Ok(false) };
        sqlx::query("DELETE FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo.as_str())
            .bind(tag.as_str())
            .execute(&mut *tx)
            .await?;
        let e = NewEvent::new(EventKind::TagDeleted, crate::now_ms(), origin).repo(repo.as_str()).digest(was).tag(tag);
        insert_events(&mut tx, self.backend, &[e]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn parents_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>, MetaError> {
        // Sorted here, not by SQL: an ORDER BY lets SQLite prefer the primary key's
        // (repo, digest) order over the (repo, child) index, scanning the whole repository.
        let mut rows: Vec<String> =
            sqlx::query_scalar(PARENTS_OF).bind(repo.as_str()).bind(digest.to_string()).fetch_all(&self.pool).await?;
        rows.sort_unstable();
        rows.into_iter().map(parse).collect()
    }

    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>, MetaError> {
        // Sorted here: with ORDER BY, SQLite walks every tag of the repository by name.
        let mut tags: Vec<String> =
            sqlx::query_scalar(TAGS_OF).bind(repo.as_str()).bind(digest.to_string()).fetch_all(&self.pool).await?;
        tags.sort_unstable();
        Ok(tags)
    }

    async fn list_tags(&self, repo: &RepoName, last: Option<&str>, n: i64) -> Result<Vec<String>, MetaError> {
        self.read_all(
            "SELECT name FROM tags WHERE repo = $1 AND name > $2 ORDER BY name LIMIT $3",
            args![repo.as_str(), last.unwrap_or(""), n],
        )
        .await
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, MetaError> {
        let base = format!("SELECT {MANIFEST_COLS} FROM manifests m WHERE m.repo = $1 AND m.subject = $2");
        let rows = match artifact_type {
            Some(a) => {
                sqlx::query(&format!("{base} AND m.artifact_type = $3 ORDER BY m.created_at, m.digest"))
                    .bind(repo.as_str())
                    .bind(subject.to_string())
                    .bind(a)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("{base} ORDER BY m.created_at, m.digest"))
                    .bind(repo.as_str())
                    .bind(subject.to_string())
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(manifest_from_row).collect()
    }

    async fn referrers_page(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<(i64, &Digest)>,
        limit: i64,
    ) -> Result<Vec<ManifestRecord>, MetaError> {
        let (at, digest) = after.map_or((i64::MIN, String::new()), |(at, d)| (at, d.to_string()));
        let rows = sqlx::query(&format!(
            "SELECT {MANIFEST_COLS} FROM manifests m WHERE m.repo = $1 AND m.subject = $2
             AND ($3 = '' OR m.artifact_type = $3) AND (m.created_at > $4 OR (m.created_at = $4 AND m.digest > $5))
             ORDER BY m.created_at, m.digest LIMIT $6"
        ))
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(artifact_type.unwrap_or(""))
        .bind(at)
        .bind(digest)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(manifest_from_row).collect()
    }

    async fn repo_exists(&self, repo: &RepoName) -> Result<bool, MetaError> {
        let r: Option<i64> = sqlx::query_scalar("SELECT 1 FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.is_some())
    }

    async fn list_repos(&self, last: Option<&str>, n: i64) -> Result<Vec<String>, MetaError> {
        self.read_all(
            "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
            args![last.unwrap_or(""), n],
        )
        .await
    }

    async fn project_repos(&self, project: &str) -> Result<Vec<RepoSummary>, MetaError> {
        Ok(self.project_repos_page(project, "", 0, i64::MAX).await?.0)
    }

    async fn project_repos_page(
        &self,
        project: &str,
        contains: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RepoSummary>, i64), MetaError> {
        // `project` itself, and names in the byte range [project/, project0) (`0` follows `/`).
        const IN_PROJECT: &str =
            "(r.name = $1 OR (r.name >= $2 AND r.name < $3)) AND ($4 = '' OR r.name LIKE $5 ESCAPE '\\')";
        let pattern = format!("%{}%", contains.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let total: i64 = if offset == 0 && limit == i64::MAX {
            -1
        } else {
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM repositories r WHERE {IN_PROJECT}"))
                .bind(project)
                .bind(format!("{project}/"))
                .bind(format!("{project}0"))
                .bind(contains)
                .bind(&pattern)
                .fetch_one(&self.pool)
                .await?
        };
        // The page's names first (by index), then the counts and times of those alone: one
        // statement with both computed them for every repository of the project.
        let names: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT r.name FROM repositories r WHERE {IN_PROJECT} ORDER BY r.name LIMIT $6 OFFSET $7"
        ))
        .bind(project)
        .bind(format!("{project}/"))
        .bind(format!("{project}0"))
        .bind(contains)
        .bind(&pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        // Names bound as parameters, not joined from `repositories.name`: on PostgreSQL that
        // column is `COLLATE "C"`, and a comparison in that collation cannot use the indexes
        // on `manifests.repo` and `tags.repo` (a whole-table scan per repository).
        let mut list = Vec::with_capacity(names.len());
        // 200 names a statement: the times below are one SELECT per name, glued with UNION
        // ALL, and SQLite allows 500 in a compound statement.
        for chunk in names.chunks(200) {
            let ps = placeholders(1, chunk.len());
            let fetch = |sql: String| async move {
                let mut q = sqlx::query(&sql);
                for n in chunk {
                    q = q.bind(n.clone());
                }
                q.fetch_all(&self.pool).await
            };
            let repos = fetch(format!(
                "SELECT name, created_at, pull_count, pull_time, manifest_count FROM repositories WHERE name IN ({ps})
                 ORDER BY name"
            ))
            .await?;
            // The last push and tag change of each, from the newest index entry of each (a
            // GROUP BY would read every entry: 100,000 for a large repository).
            let times: Vec<String> = (1..=chunk.len())
                .map(|i| {
                    format!(
                        "SELECT CAST(${i} AS TEXT) AS repo, (SELECT MAX(created_at) FROM manifests WHERE repo = ${i}) AS pushed,
                         (SELECT MAX(updated_at) FROM tags WHERE repo = ${i}) AS tagged"
                    )
                })
                .collect();
            let mut last = std::collections::HashMap::new();
            for r in fetch(times.join(" UNION ALL ")).await? {
                last.insert(
                    r.try_get::<String, _>("repo")?,
                    (r.try_get::<Option<i64>, _>("pushed")?, r.try_get::<Option<i64>, _>("tagged")?),
                );
            }
            for r in &repos {
                let name: String = r.try_get("name")?;
                let created: i64 = r.try_get("created_at")?;
                let (pushed, tagged) = last.get(&name).copied().unwrap_or((None, None));
                list.push(RepoSummary {
                    created_at: created,
                    updated_at: created.max(pushed.unwrap_or(0)).max(tagged.unwrap_or(0)),
                    artifact_count: r.try_get("manifest_count")?,
                    pull_count: r.try_get("pull_count")?,
                    pull_time: r.try_get("pull_time")?,
                    name,
                });
            }
        }
        let total = if total < 0 { list.len() as i64 } else { total };
        Ok((list, total))
    }

    async fn repo_counts(&self, projects: &[String]) -> Result<Vec<i64>, MetaError> {
        if projects.is_empty() {
            return Ok(Vec::new());
        }
        // One statement: a range count per project, glued with UNION ALL and put back in order.
        let parts: Vec<String> = (0..projects.len())
            .map(|i| {
                let b = i * 3;
                format!(
                    "SELECT CAST({i} AS BIGINT) AS i, COUNT(*) AS n FROM repositories WHERE name = ${} OR (name >= ${} AND name < ${})",
                    b + 1,
                    b + 2,
                    b + 3
                )
            })
            .collect();
        let sql = parts.join(" UNION ALL ");
        let mut q = sqlx::query(&sql);
        for p in projects {
            q = q.bind(p.clone()).bind(format!("{p}/")).bind(format!("{p}0"));
        }
        let mut counts = vec![0; projects.len()];
        for r in q.fetch_all(&self.pool).await? {
            let i: i64 = r.try_get("i")?;
            if let Some(c) = counts.get_mut(i as usize) {
                *c = r.try_get("n")?;
            }
        }
        Ok(counts)
    }

    async fn repo_artifacts(&self, repo: &RepoName) -> Result<Vec<ArtifactRow>, MetaError> {
        self.artifact_rows(repo, None).await
    }

    async fn repo_artifacts_page(
        &self,
        repo: &RepoName,
        offset: i64,
        limit: i64,
    ) -> Result<Option<(Vec<ArtifactRow>, i64)>, MetaError> {
        // Anything grouped under another artifact? (Each an index range, empty for plain images.)
        let grouped: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM manifests WHERE repo = $1 AND subject IS NOT NULL
             UNION ALL SELECT 1 FROM manifest_refs WHERE repo = $1 AND kind = 'manifest'
             UNION ALL SELECT 1 FROM tags WHERE repo = $1 AND name >= 'sha256-' AND name < 'sha256.'
             LIMIT 1",
        )
        .bind(repo.as_str())
        .fetch_optional(&self.pool)
        .await?;
        if grouped.is_some() {
            return Ok(None);
        }
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM manifests WHERE repo = $1")
            .bind(repo.as_str())
            .fetch_one(&self.pool)
            .await?;
        let digests: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM manifests WHERE repo = $1 ORDER BY created_at DESC, digest LIMIT $2 OFFSET $3",
        )
        .bind(repo.as_str())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let mut rows = Vec::new();
        for chunk in digests.chunks(MAX_BINDS / 2) {
            rows.extend(self.artifact_rows(repo, Some(chunk)).await?);
        }
        Ok(Some((rows, total)))
    }

    async fn create_repo(&self, repo: &RepoName, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let now = crate::now_ms();
        let n = sqlx::query("INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(repo.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            let e = NewEvent::new(EventKind::RepositoryCreated, now, origin).repo(repo.as_str());
            insert_events(&mut tx, self.backend, &[e]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn delete_repo(&self, repo: &RepoName, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        // Everything it holds leaves its project's quota: what this transaction deleted.
        let now = crate::now_ms();
        let manifests = sqlx::query("DELETE FROM manifests WHERE repo = $1 RETURNING digest, size")
            .bind(repo.as_str())
            .fetch_all(&mut *tx)
            .await?;
        for r in &manifests {
            let (d, size): (String, i64) = (r.try_get("digest")?, r.try_get("size")?);
            crate::quota::adjust(&mut tx, repo.as_str(), &d, size, -1, now).await?;
        }
        let links: Vec<String> = sqlx::query_scalar("DELETE FROM repo_blobs WHERE repo = $1 RETURNING digest")
            .bind(repo.as_str())
            .fetch_all(&mut *tx)
            .await?;
        for d in &links {
            unlinked(&mut tx, repo.as_str(), d).await?;
        }
        for q in [
            "DELETE FROM tags WHERE repo = $1",
            "DELETE FROM manifest_refs WHERE repo = $1",
            "DELETE FROM repo_policies WHERE repo = $1",
            "DELETE FROM tag_mutability WHERE repo = $1",
            "DELETE FROM repo_settings WHERE repo = $1",
            "DELETE FROM artifact_labels WHERE repo = $1",
            "DELETE FROM policy_runs WHERE policy_id IN (SELECT id FROM policies WHERE kind IN ('lifecycle', 'lifecycle-preview-only') AND scope = $1)",
            "DELETE FROM policies WHERE kind IN ('lifecycle', 'lifecycle-preview-only') AND scope = $1",
        ] {
            sqlx::query(q).bind(repo.as_str()).execute(&mut *tx).await?;
        }
        let n = sqlx::query("DELETE FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            let e = NewEvent::new(EventKind::RepositoryDeleted, crate::now_ms(), origin).repo(repo.as_str());
            insert_events(&mut tx, self.backend, &[e]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn immutable_rules(&self, project: &str) -> Result<Vec<(i64, String)>, MetaError> {
        self.read_all("SELECT id, rule FROM immutable_rules WHERE project = $1 ORDER BY id", args![project]).await
    }

    async fn put_immutable_rule(
        &self,
        project: &str,
        id: Option<i64>,
        rule: &str,
        max: usize,
        origin: &Origin,
    ) -> Result<Option<i64>, MetaError> {
        let mut tx = self.begin_write().await?;
        let now = crate::now_ms();
        let id = match id {
            Some(id) => {
                let n =
                    sqlx::query("UPDATE immutable_rules SET rule = $3, updated_at = $4 WHERE project = $1 AND id = $2")
                        .bind(project)
                        .bind(id)
                        .bind(rule)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if n == 0 {
                    return Ok(None);
                }
                id
            }
            None => {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM immutable_rules WHERE project = $1")
                    .bind(project)
                    .fetch_one(&mut *tx)
                    .await?;
                if count as usize >= max {
                    return Err(MetaError::Conflict(format!(
                        "project {project} already has {count} immutable tag rules, the most it may have"
                    )));
                }
                sqlx::query_scalar(
                    "INSERT INTO immutable_rules (project, rule, created_at, updated_at) VALUES ($1, $2, $3, $3)
                     RETURNING id",
                )
                .bind(project)
                .bind(rule)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let e = NewEvent::new(EventKind::PolicyChanged, now, origin)
            .project(project)
            .data(serde_json::json!({ "op": "update", "kind": "immutable_tag_rule", "id": id }));
        insert_events(&mut tx, self.backend, &[e]).await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    async fn delete_immutable_rule(&self, project: &str, id: i64, origin: &Origin) -> Result<bool, MetaError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM immutable_rules WHERE project = $1 AND id = $2")
            .bind(project)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            let e = NewEvent::new(EventKind::PolicyChanged, crate::now_ms(), origin)
                .project(project)
                .data(serde_json::json!({ "op": "delete", "kind": "immutable_tag_rule", "id": id }));
            insert_events(&mut tx, self.backend, &[e]).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn tag_mutability(&self, repo: &RepoName) -> Result<Option<String>, MetaError> {
        self.read_opt("SELECT config FROM tag_mutability WHERE repo = $1", args![repo.as_str()]).await
    }

    async fn put_tag_mutability(
        &self,
        repo: &RepoName,
        config: Option<&str>,
        origin: &Origin,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        let now = crate::now_ms();
        match config {
            Some(c) => {
                sqlx::query(
                    "INSERT INTO tag_mutability (repo, config, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (repo) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                )
                .bind(repo.as_str())
                .bind(c)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM tag_mutability WHERE repo = $1").bind(repo.as_str()).execute(&mut *tx).await?;
            }
        }
        let e = NewEvent::new(EventKind::PolicyChanged, now, origin).repo(repo.as_str()).data(
            serde_json::json!({ "op": if config.is_some() { "update" } else { "delete" }, "kind": "tag_mutability" }),
        );
        insert_events(&mut tx, self.backend, &[e]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn repo_setting(&self, repo: &RepoName, kind: &str) -> Result<Option<String>, MetaError> {
        self.read_opt("SELECT config FROM repo_settings WHERE repo = $1 AND kind = $2", args![repo.as_str(), kind])
            .await
    }

    async fn put_repo_setting(
        &self,
        repo: &RepoName,
        kind: &str,
        config: Option<&str>,
        origin: &Origin,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        let now = crate::now_ms();
        match config {
            Some(c) => {
                sqlx::query(
                    "INSERT INTO repo_settings (repo, kind, config, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (repo, kind) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                )
                .bind(repo.as_str())
                .bind(kind)
                .bind(c)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM repo_settings WHERE repo = $1 AND kind = $2")
                    .bind(repo.as_str())
                    .bind(kind)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let e = NewEvent::new(EventKind::PolicyChanged, now, origin)
            .repo(repo.as_str())
            .data(serde_json::json!({ "op": if config.is_some() { "update" } else { "delete" }, "kind": kind }));
        insert_events(&mut tx, self.backend, &[e]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_upload(
        &self,
        up: &UploadRecord,
        max_per_repo: u64,
        max_per_owner: u64,
    ) -> Result<Option<&'static str>, MetaError> {
        if let Some(w) = &self.writer {
            let up = up.clone();
            return w.run(move |db| crate::exec::ready(create_upload_in(db, &up, max_per_repo, max_per_owner))).await;
        }
        let mut tx = self.begin_write().await?;
        let refused = create_upload_in(&mut tx, up, max_per_repo, max_per_owner).await?;
        if refused.is_none() {
            tx.commit().await?;
        }
        Ok(refused)
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, MetaError> {
        let row: Option<(String, String, String, i64, i64)> = self
            .read_opt("SELECT id, repo, owner, created_at, updated_at FROM uploads WHERE id = $1", args![id])
            .await?;
        row.map(|(id, repo, owner, created_at, updated_at)| {
            Ok(UploadRecord { id, repo: parse(repo)?, owner, created_at, updated_at })
        })
        .transpose()
    }

    async fn touch_upload(&self, id: &str, now: i64) -> Result<(), MetaError> {
        sqlx::query("UPDATE uploads SET updated_at = $2 WHERE id = $1").bind(id).bind(now).execute(&self.pool).await?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        let r = sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(r.rows_affected() > 0)
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>, MetaError> {
        Ok(sqlx::query_scalar("SELECT id FROM uploads WHERE updated_at < $1 ORDER BY id")
            .bind(before)
            .fetch_all(&self.pool)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    /// Deleting one manifest of a large repository must cost the same as in a small one: the
    /// per-manifest lookups go through indexes on (repository, digest or child), never a walk
    /// of the repository (a 100,000-tag repository deleted 5 manifests a second before).
    #[tokio::test]
    async fn per_manifest_lookups_use_indexes_not_repository_scans() {
        use sqlx::Row;
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap();
        let gc_checks = [
            "SELECT 1 FROM manifest_refs WHERE repo = $1 AND child = $2 LIMIT 1",
            "SELECT 1 FROM manifest_refs r JOIN manifests m ON m.repo = r.repo AND m.digest = r.digest
             WHERE r.repo = $1 AND r.child = $2 AND r.kind = 'manifest' LIMIT 1",
        ];
        for (q, index) in [(super::PARENTS_OF, "manifest_refs_repo_child"), (super::TAGS_OF, "tags_digest")]
            .into_iter()
            .chain(gc_checks.map(|q| (q, "manifest_refs_repo_child")))
        {
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {q}"))
                .bind("p/r")
                .bind("sha256:00")
                .fetch_all(store.pool())
                .await
                .unwrap();
            let plan: Vec<String> = rows.iter().map(|r| r.try_get::<String, _>(3).unwrap()).collect();
            assert!(plan[0].contains(index) && plan[0].contains("=? AND "), "{q}: {plan:?}");
        }
    }

    /// The point reads on the caller's thread answer themselves (not by falling back to sqlx)
    /// and see each committed write at once.
    #[tokio::test]
    async fn fast_reads_answer_and_see_every_committed_write() {
        use crate::MetaStore;
        use berth_types::{Digest, RepoName, Tag};
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap();
        let fast = store.fast.clone().unwrap();
        let repo: RepoName = "p/r".parse().unwrap();
        let v1: Tag = "v1".parse().unwrap();
        assert_eq!(fast.tagged(&repo, &v1), Some(None));
        let o = crate::Origin::system();
        for (i, body) in [&b"first"[..], &b"second"[..]].into_iter().enumerate() {
            let m = crate::ManifestRecord {
                digest: Digest::sha256_of(body),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                artifact_type: None,
                size: body.len() as i64,
                subject: Some(Digest::sha256_of(b"subject")),
                annotations: Some(format!("{{\"n\":\"{i}\"}}")),
                created_at: 100 + i as i64,
            };
            store.put_manifest(&repo, &m, body, &[], std::slice::from_ref(&v1), &o).await.unwrap();
            assert_eq!(fast.tagged(&repo, &v1), Some(Some(m.clone())), "the tag moved to write {i}");
            assert_eq!(fast.manifest(&repo, &m.digest), Some(Some(m.clone())));
            assert_eq!(fast.content(&m.digest), Some(Some(body.to_vec())));
        }
        assert_eq!(fast.manifest(&repo, &Digest::sha256_of(b"absent")), Some(None));
        use crate::AccessStore;
        assert_eq!(fast.repo_policy("p/r"), Some(None));
        store.put_repo_policy("p/r", "{\"Version\":\"2012-10-17\"}", 1, &o).await.unwrap();
        assert_eq!(fast.repo_policy("p/r"), Some(Some("{\"Version\":\"2012-10-17\"}".to_owned())));
        assert_eq!(fast.content(&Digest::sha256_of(b"absent")), Some(None));
    }

    #[tokio::test]
    async fn sqlite_backend_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap();
        crate::conformance::run(&store).await;
        crate::conformance::run_jobs(&store).await;
        crate::conformance::run_access(&store).await;
        crate::conformance::run_scan(&store).await;
        crate::conformance::run_gc(&store).await;
        crate::conformance::run_quota(&store).await;
        crate::conformance::run_policies(&store).await;
        crate::conformance::run_labels(&store).await;
        crate::conformance::run_upstreams(&store).await;
        crate::conformance::run_replication(&store).await;
        crate::conformance::run_webhooks(&store).await;
        crate::conformance::run_signature_policies(&store).await;
        // Migrations are idempotent on reopen.
        drop(store);
        super::SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_event_log_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap();
        crate::conformance::run_events(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_failed_logins_is_one_event_per_source() {
        use crate::{EventBuffer, EventKind, EventLog, EventQuery, NewEvent, Origin};
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(super::SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap());
        let buffer = EventBuffer::start(store.clone(), std::time::Duration::from_secs(60));
        let fail = |who: &str, ip: &str| {
            NewEvent::new(EventKind::LoginFailed, 1, &Origin::new(who, Some(ip.into())))
                .data(serde_json::json!({"detail": "invalid credentials"}))
        };
        for _ in 0..10_000 {
            buffer.push(fail("admin", "10.0.0.1"));
        }
        for _ in 0..10 {
            buffer.push(fail("admin", "10.0.0.2"));
        }
        buffer.flush().await;
        let q = EventQuery { kinds: vec![EventKind::LoginFailed], limit: 100, ..Default::default() };
        let mut counts: Vec<(String, i64)> = store
            .query_events(&q)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.event.origin.client_ip.clone().unwrap(), e.event.data["count"].as_i64().unwrap()))
            .collect();
        counts.sort();
        assert_eq!(counts, vec![("10.0.0.1".to_owned(), 10_000), ("10.0.0.2".to_owned(), 10)]);
    }

    #[tokio::test]
    async fn quota_verify_finds_and_fixes_drift_to_the_byte() {
        use crate::{MetaStore, QuotaStore};
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqlMetaStore::open_sqlite(dir.path().join("meta.db")).await.unwrap();
        let repo: berth_types::RepoName = "team/app".parse().unwrap();
        let d = berth_types::Digest::sha256_of(b"blob");
        store.pin_blob(&d, 1234, 1, 100_000).await.unwrap();
        store.link_blob(&repo, &d, 1, 2, None).await.unwrap();
        let clean = store.verify_quotas(false).await.unwrap();
        assert_eq!((clean[0].stored, clean[0].computed, clean[0].objects_off), (1234, 1234, 0));
        // Drift by hand (as a bug or a manual edit would).
        sqlx::query("UPDATE quotas SET used = 99").execute(store.pool()).await.unwrap();
        sqlx::query("DELETE FROM quota_objects").execute(store.pool()).await.unwrap();
        let found = store.verify_quotas(true).await.unwrap();
        assert_eq!((found[0].stored, found[0].computed, found[0].objects_off), (99, 1234, 1));
        let after = store.verify_quotas(false).await.unwrap();
        assert_eq!((after[0].stored, after[0].computed, after[0].objects_off), (1234, 1234, 0));
        assert_eq!(store.quota("team").await.unwrap().used, 1234);
        // Usage keeps counting correctly from the fixed figures.
        assert!(store.unlink_blob(&repo, &d, &crate::Origin::system()).await.unwrap());
        assert_eq!(store.quota("team").await.unwrap().used, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_event_log_passes_conformance() {
        let url = berth_test_support::postgres_database().await;
        let store = super::SqlMetaStore::open_postgres(&url, 8).await.unwrap();
        crate::conformance::run_events(&store).await;
    }

    #[tokio::test]
    async fn postgres_backend_passes_conformance() {
        let url = berth_test_support::postgres_database().await;
        let store = super::SqlMetaStore::open_postgres(&url, 4).await.unwrap();
        crate::conformance::run(&store).await;
        crate::conformance::run_jobs(&store).await;
        crate::conformance::run_access(&store).await;
        crate::conformance::run_scan(&store).await;
        crate::conformance::run_gc(&store).await;
        crate::conformance::run_quota(&store).await;
        crate::conformance::run_policies(&store).await;
        crate::conformance::run_labels(&store).await;
        crate::conformance::run_upstreams(&store).await;
        crate::conformance::run_replication(&store).await;
        crate::conformance::run_webhooks(&store).await;
        crate::conformance::run_signature_policies(&store).await;
        // Migrations are idempotent, and safe when several replicas start at once.
        let (a, b) =
            tokio::join!(super::SqlMetaStore::open_postgres(&url, 2), super::SqlMetaStore::open_postgres(&url, 2));
        a.unwrap();
        b.unwrap();
    }
}
