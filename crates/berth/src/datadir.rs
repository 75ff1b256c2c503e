//! The data directory's protection: private permissions, and one server at a time.
//!
//! The embedded metadata database holds the token signing keys and every credential hash, so
//! the directory is `0700` and its files `0600` (the binary also sets its umask to `077`).
//! An installation made before this rule is fixed on start, with a log line saying what
//! changed. Two `berth serve` processes on one embedded directory would each believe they are
//! the single writer (caches, group commit), so the second refuses to start, naming the first.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::{info, warn};

/// Held while this process serves from a data directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Make `dir` private (`0700`) and the files directly in it that hold secrets (`meta.db*`)
/// `0600`, creating the directory if needed. Returns what was changed.
pub fn secure(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    let mut tighten = |path: &Path, mode: u32| -> anyhow::Result<()> {
        let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let old = meta.permissions().mode() & 0o777;
        if old & 0o077 != 0 {
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
                // Run under an arbitrary UID (OpenShift) in a directory made for group 0: it
                // is writable but not ours to change; the platform's volume is what keeps it private.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    warn!(path = %path.display(), mode = format!("{old:o}"), owner = meta.uid(),
                          "cannot make the data directory private: another user owns it (keep it on a volume only Berth's group reads)");
                    return Ok(());
                }
                r => r.with_context(|| format!("restricting the permissions of {}", path.display()))?,
            }
            info!(path = %path.display(), from = format!("{old:o}"), to = format!("{mode:o}"), "made private: it holds keys and credential hashes");
            changed.push(format!("{} {old:o} -> {mode:o}", path.display()));
        }
        Ok(())
    };
    tighten(dir, 0o700)?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("meta.db") || name == "berth.lock" {
            tighten(&entry.path(), 0o600)?;
        }
    }
    Ok(changed)
}

/// Take the data directory's lock, or fail naming the process that holds it.
pub fn lock(dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = dir.join("berth.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_owned() } else { format!("PID {holder}") };
            anyhow::bail!(
                "another berth ({who}) is already serving the data directory {}; stop it first, or give this \
                 one its own --data-dir",
                dir.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(DataDirLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_tightened_and_the_lock_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("meta.db"), b"").unwrap();
        std::fs::set_permissions(dir.join("meta.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(dir.join("other"), b"").unwrap();
        let changed = secure(&dir).unwrap();
        assert_eq!(changed.len(), 2, "{changed:?}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&dir.join("meta.db"))), (0o700, 0o600));
        assert!(secure(&dir).unwrap().is_empty(), "nothing left to fix");

        let held = lock(&dir).unwrap();
        assert_eq!(mode(held.path()), 0o600);
        let err = lock(&dir).unwrap_err().to_string();
        assert!(err.contains(&format!("PID {}", std::process::id())), "{err}");
        drop(held);
        lock(&dir).unwrap();
    }
}
