//! Backup and restore of the embedded default (SQLite + filesystem blobs), while Berth runs.
//!
//! `backup` first writes a consistent snapshot of the metadata database (`VACUUM INTO`), then
//! copies every blob that snapshot knows. Blob files are content-addressed and never change
//! once written, and content is made durable before it becomes visible, so every blob the
//! snapshot references already exists in full when it is copied; pushes that land after the
//! snapshot are simply not in the backup. `restore` puts a backup into an empty data
//! directory. The secret key (`secret_key_file`, which seals upstream passwords) goes with
//! both. (PostgreSQL + S3: `pg_dump` of the database, then a copy of the bucket prefix,
//! in that order, for the same reason; see the README.)

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use berth_blob::blob_file;
use berth_config::{Config, MetadataConfig, StorageConfig};

/// What a backup holds.
#[derive(Debug, Clone, Copy)]
pub struct BackupStats {
    /// Blob files copied.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
}

fn embedded(cfg: &Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    match (&cfg.metadata, &cfg.storage) {
        (MetadataConfig::Sqlite { path }, StorageConfig::Filesystem { path: blobs }) => {
            Ok((path.clone(), blobs.clone()))
        }
        _ => bail!(
            "berth backup handles the embedded default (SQLite + filesystem); for PostgreSQL + S3 use pg_dump, then \
             copy the bucket prefix (see the README)"
        ),
    }
}

fn empty_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{what} {} is not empty; give a new or empty directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(())
}

fn copy_synced(from: &Path, to: &Path) -> anyhow::Result<u64> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let n = std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::File::open(to)?.sync_all()?;
    Ok(n)
}

/// Back up the embedded data of `cfg` into `dest` (new or empty), safe while Berth runs.
pub async fn backup(cfg: &Config, dest: &Path) -> anyhow::Result<BackupStats> {
    let (meta_path, blob_root) = embedded(cfg)?;
    empty_dir(dest, "the backup directory")?;
    let meta = berth_meta::SqlMetaStore::open_sqlite(&meta_path)
        .await
        .with_context(|| format!("opening {}", meta_path.display()))?;
    // Garbage collection deletes no blob bytes while we copy what the snapshot references.
    use berth_meta::GcStore;
    let holder = format!("berth backup (pid {})", std::process::id());
    let now = berth_registry::now_ms();
    if !meta.hold_fence("gc", &holder, now + 24 * 3600 * 1000, now).await? {
        bail!("another backup is running (it holds the garbage-collection fence); try again when it is done");
    }
    let copied = copy_snapshot(&meta, dest, &blob_root).await;
    meta.release_fence("gc", &holder).await?;
    let stats = copied?;
    // The key that seals stored upstream passwords: without it they cannot be read back.
    if cfg.secret_key_file.is_file() {
        copy_secret(&cfg.secret_key_file, &dest.join(SECRET_KEY))?;
    }
    Ok(stats)
}

/// The name of the secret key's copy in a backup.
const SECRET_KEY: &str = "secret.key";

/// Copy a key file, readable by its owner only.
fn copy_secret(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let key = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(to).with_context(|| format!("creating {}", to.display()))?;
    f.write_all(&key)?;
    f.sync_all()?;
    Ok(())
}

async fn copy_snapshot(meta: &berth_meta::SqlMetaStore, dest: &Path, blob_root: &Path) -> anyhow::Result<BackupStats> {
    let snapshot_path = dest.join("meta.db");
    meta.snapshot_to(&snapshot_path).await.context("writing the database snapshot")?;
    let snapshot = berth_meta::SqlMetaStore::open_sqlite(&snapshot_path).await?;
    let mut stats = BackupStats { blobs: 0, bytes: 0 };
    for (digest, size) in snapshot.blob_digests().await? {
        let from = blob_file(blob_root, &digest);
        let n = copy_synced(&from, &blob_file(&dest.join("blobs"), &digest))?;
        if n != size as u64 {
            bail!("blob {digest} is {n} bytes on disk but {size} in the metadata; the data directory needs checking");
        }
        stats.blobs += 1;
        stats.bytes += n;
    }
    Ok(stats)
}

/// Restore a backup made by [`backup`] into the (new or empty) data locations of `cfg`.
pub async fn restore(cfg: &Config, from: &Path) -> anyhow::Result<BackupStats> {
    let (meta_path, blob_root) = embedded(cfg)?;
    let snapshot = from.join("meta.db");
    if !snapshot.is_file() {
        bail!("{} holds no meta.db: not a Berth backup", from.display());
    }
    if meta_path.exists() {
        bail!("{} exists; restore into a new data directory", meta_path.display());
    }
    let key = from.join(SECRET_KEY);
    if key.is_file() && cfg.secret_key_file.exists() {
        if std::fs::read(&key)? != std::fs::read(&cfg.secret_key_file)? {
            bail!(
                "{} exists and is not the backup's key; the stored upstream passwords need the backup's — move it \
                 away or point secret_key_file elsewhere",
                cfg.secret_key_file.display()
            );
        }
    } else if key.is_file() {
        copy_secret(&key, &cfg.secret_key_file)?;
    }
    empty_dir(&blob_root, "the blob directory")?;
    if let Some(dir) = meta_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    copy_synced(&snapshot, &meta_path)?;
    let restored = berth_meta::SqlMetaStore::open_sqlite(&meta_path).await?;
    let mut stats = BackupStats { blobs: 0, bytes: 0 };
    for (digest, _) in restored.blob_digests().await? {
        stats.bytes += copy_synced(&blob_file(&from.join("blobs"), &digest), &blob_file(&blob_root, &digest))?;
        stats.blobs += 1;
    }
    Ok(stats)
}
