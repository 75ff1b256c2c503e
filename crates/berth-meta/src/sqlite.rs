//! The embedded SQLite backend (WAL journal, `synchronous=FULL`: a commit is on disk when
//! it returns).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use berth_types::{Digest, RepoName, Tag};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::{ManifestRecord, MetaError, MetaStore, RefKind, UploadRecord, schema::MIGRATIONS};

/// Metadata in an embedded SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteMetaStore {
    pool: SqlitePool,
}

fn parse<T: FromStr>(s: String) -> Result<T, MetaError> {
    s.parse().map_err(|_| MetaError::Corrupt(format!("unparsable stored value {s:?}")))
}

fn opt_digest(s: Option<String>) -> Result<Option<Digest>, MetaError> {
    s.map(parse).transpose()
}

fn manifest_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ManifestRecord, MetaError> {
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

const MANIFEST_COLS: &str = "digest, media_type, artifact_type, size, subject, annotations, created_at";

impl SqliteMetaStore {
    /// Open (creating if needed) the database file and run pending migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, MetaError> {
        if let Some(dir) = path.as_ref().parent() {
            std::fs::create_dir_all(dir).map_err(|e| MetaError::Db(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(opts).await?;
        let store = SqliteMetaStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Apply migrations not yet applied.
    pub async fn migrate(&self) -> Result<(), MetaError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS berth_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for (version, stmts) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM berth_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_some() {
                continue;
            }
            for s in *stmts {
                sqlx::query(s).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO berth_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(0i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl MetaStore for SqliteMetaStore {
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: i64, now: i64) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        let d = digest.to_string();
        sqlx::query("INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(repo.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(&d)
            .bind(size)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO repo_blobs (repo, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(repo.as_str())
            .bind(&d)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn repo_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<i64>, MetaError> {
        Ok(sqlx::query_scalar(
            "SELECT b.size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest WHERE r.repo = $1 AND r.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn any_blob(&self, digest: &Digest) -> Result<Option<i64>, MetaError> {
        Ok(sqlx::query_scalar(
            "SELECT b.size FROM blobs b WHERE b.digest = $1 AND EXISTS (SELECT 1 FROM repo_blobs r WHERE r.digest = b.digest)",
        )
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaError> {
        let r = sqlx::query("DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.to_string())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        m: &ManifestRecord,
        refs: &[(Digest, RefKind)],
        tags: &[Tag],
    ) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        let d = m.digest.to_string();
        sqlx::query("INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(repo.as_str())
            .bind(m.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(&d)
            .bind(m.size)
            .bind(m.created_at)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO manifests (repo, digest, media_type, artifact_type, size, subject, annotations, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(repo.as_str())
        .bind(&d)
        .bind(&m.media_type)
        .bind(&m.artifact_type)
        .bind(m.size)
        .bind(m.subject.as_ref().map(|s| s.to_string()))
        .bind(&m.annotations)
        .bind(m.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted > 0 {
            for (child, kind) in refs {
                sqlx::query(
                    "INSERT INTO manifest_refs (repo, digest, child, kind) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(repo.as_str())
                .bind(&d)
                .bind(child.to_string())
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        for tag in tags {
            sqlx::query(
                "INSERT INTO tags (repo, name, digest, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo.as_str())
            .bind(tag.as_str())
            .bind(&d)
            .bind(m.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>, MetaError> {
        let row = sqlx::query(&format!("SELECT {MANIFEST_COLS} FROM manifests WHERE repo = $1 AND digest = $2"))
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>, MetaError> {
        let d: Option<String> = sqlx::query_scalar("SELECT digest FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_optional(&self.pool)
            .await?;
        opt_digest(d)
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await?;
        let d = digest.to_string();
        let n = sqlx::query("DELETE FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(&d)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for q in [
            "DELETE FROM manifest_refs WHERE repo = $1 AND digest = $2",
            "DELETE FROM tags WHERE repo = $1 AND digest = $2",
        ] {
            sqlx::query(q).bind(repo.as_str()).bind(&d).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, MetaError> {
        let r = sqlx::query("DELETE FROM tags WHERE repo = $1 AND name = $2")
            .bind(repo.as_str())
            .bind(tag.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_tags(&self, repo: &RepoName, last: Option<&str>, n: i64) -> Result<Vec<String>, MetaError> {
        Ok(sqlx::query_scalar("SELECT name FROM tags WHERE repo = $1 AND name > $2 ORDER BY name LIMIT $3")
            .bind(repo.as_str())
            .bind(last.unwrap_or(""))
            .bind(n)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, MetaError> {
        let rows = sqlx::query(&format!(
            "SELECT {MANIFEST_COLS} FROM manifests WHERE repo = $1 AND subject = $2
             AND ($3 IS NULL OR artifact_type = $3) ORDER BY created_at, digest"
        ))
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
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
        Ok(sqlx::query_scalar("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
            .bind(last.unwrap_or(""))
            .bind(n)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn create_upload(&self, up: &UploadRecord) -> Result<(), MetaError> {
        sqlx::query("INSERT INTO uploads (id, repo, created_at, updated_at) VALUES ($1, $2, $3, $4)")
            .bind(&up.id)
            .bind(up.repo.as_str())
            .bind(up.created_at)
            .bind(up.updated_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, MetaError> {
        let row = sqlx::query("SELECT id, repo, created_at, updated_at FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(UploadRecord {
                id: r.try_get("id")?,
                repo: parse(r.try_get("repo")?)?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
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
    #[tokio::test]
    async fn sqlite_backend_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
        crate::conformance::run(&store).await;
        // Migrations are idempotent on reopen.
        drop(store);
        super::SqliteMetaStore::open(dir.path().join("meta.db")).await.unwrap();
    }
}
