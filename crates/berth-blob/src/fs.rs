//! Filesystem blob store.
//!
//! Layout under the root directory:
//! ```text
//! <root>/
//!   blobs/
//!     sha256/ab/ab12…ef      one file per blob, named by its digest, never modified
//!     sha512/cd/cd34…01
//!   uploads/
//!     <upload-id>            bytes of an upload in progress (appended in place)
//!   tmp/
//!     <uuid>                 staging for `put`, renamed into blobs/ once fsynced
//! ```
//! A blob file appears under `blobs/` only through `rename` of a fully written and fsynced
//! file, followed by an fsync of its directory, so a crash never leaves a partial blob there.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use berth_types::Digest;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::direct::{self, Block, DiskWriter};
use crate::mapped::MappedFile;
use crate::{BlobBody, BlobError, BlobStore, ByteStream, valid_upload_id};

/// Blobs at or above this size are memory-mapped when served; smaller ones are read.
const MMAP_THRESHOLD: u64 = 256 * 1024;
/// Buffer size for reading an upload's bytes back.
const READ_BUF: usize = 1024 * 1024;

/// Blob store on a local filesystem directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

/// Where the blob `d` lives under a filesystem store rooted at `root` (backups copy it).
pub fn blob_file(root: &Path, d: &Digest) -> PathBuf {
    // Safe to join: `Digest` only holds a known algorithm and lowercase hex.
    root.join("blobs").join(d.algorithm().as_str()).join(&d.hex()[..2]).join(d.hex())
}

impl FsBlobStore {
    /// Open (creating if needed) a store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        for d in ["blobs/sha256", "blobs/sha512", "uploads", "tmp"] {
            tokio::fs::create_dir_all(root.join(d)).await?;
        }
        // Upload buffers kept between writes are freed once unused for a while.
        static TRIMMER: std::sync::Once = std::sync::Once::new();
        TRIMMER.call_once(|| {
            tokio::spawn(async {
                loop {
                    tokio::time::sleep(direct::SPARE_TTL).await;
                    direct::trim_spare();
                }
            });
        });
        // Staging files left by a crash are garbage by definition.
        let tmp = root.join("tmp");
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            for e in std::fs::read_dir(&tmp)? {
                let _ = std::fs::remove_file(e?.path());
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)??;
        Ok(FsBlobStore { root })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        blob_file(&self.root, d)
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf, BlobError> {
        if !valid_upload_id(id) {
            return Err(BlobError::UploadNotFound);
        }
        Ok(self.root.join("uploads").join(id))
    }
}

fn not_found_as<E>(e: io::Error, err: E) -> BlobError
where
    E: Into<BlobError>,
{
    if e.kind() == io::ErrorKind::NotFound { err.into() } else { BlobError::Io(e) }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| BlobError::Io(io::Error::other(e)))?
}

/// fsync a file then move it to `dest` and fsync `dest`'s directory.
fn durable_rename(file: &std::fs::File, from: &Path, dest: &Path) -> io::Result<()> {
    file.sync_all()?;
    let dir = dest.parent().expect("blob paths have a parent");
    std::fs::create_dir_all(dir)?;
    std::fs::rename(from, dest)?;
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait::async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn open(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<BlobBody, BlobError> {
        let path = self.blob_path(digest);
        blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| not_found_as(e, BlobError::NotFound))?;
            let len = file.metadata()?.len();
            let (start, end) = match range {
                None => (0, len),
                Some((s, e)) if s <= e && s < len => (s, e.min(len - 1) + 1),
                Some(_) if len == 0 => (0, 0),
                Some(_) => return Err(BlobError::RangeNotSatisfiable),
            };
            if end - start >= MMAP_THRESHOLD {
                // Read ahead in large steps: it is read from start to end.
                let len = std::num::NonZeroU64::new(end - start);
                let _ = rustix::fs::fadvise(&file, start, len, rustix::fs::Advice::Sequential);
                let bytes = Bytes::from_owner(MappedFile::new(file)?);
                return Ok(BlobBody::Bytes(bytes.slice(start as usize..end as usize)));
            }
            use std::io::{Read, Seek};
            let mut f = file;
            f.seek(io::SeekFrom::Start(start))?;
            let mut buf = vec![0u8; (end - start) as usize];
            f.read_exact(&mut buf)?;
            Ok(BlobBody::Bytes(Bytes::from(buf)))
        })
        .await
    }

    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), BlobError> {
        let dest = self.blob_path(digest);
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
        blocking(move || {
            if dest.exists() {
                return Ok(());
            }
            let mut f = std::fs::File::create(&tmp)?;
            let r = f.write_all(&data).and_then(|_| durable_rename(&f, &tmp, &dest));
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            Ok(r?)
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn upload_start(&self, id: &str) -> Result<(), BlobError> {
        let path = self.upload_path(id)?;
        tokio::fs::OpenOptions::new().write(true).create_new(true).open(path).await?;
        Ok(())
    }

    async fn upload_write(&self, id: &str, offset: u64, mut data: ByteStream) -> Result<u64, BlobError> {
        let path = self.upload_path(id)?;
        let disk = blocking(move || {
            let actual = std::fs::metadata(&path).map_err(|e| not_found_as(e, BlobError::UploadNotFound))?.len();
            if actual != offset {
                return Err(BlobError::OffsetMismatch { expected: offset, actual });
            }
            Ok(DiskWriter::open(&path, offset)?)
        })
        .await?;
        // This task copies the body into aligned buffers; a disk thread writes each full one
        // (directly where the filesystem allows) while the next fills. See `direct`.
        let (tx, rx) = mpsc::channel::<Block>(direct::BUFFERS);
        let (spare_tx, mut spare_rx) = mpsc::channel::<Block>(direct::BUFFERS);
        let writer = tokio::task::spawn_blocking(move || disk.run(rx, spare_tx));
        let mut block = Block::take(offset as usize % direct::ALIGN);
        let mut made = 1;
        let mut body_err = None;
        'body: while let Some(item) = data.next().await {
            let chunk = match item {
                Ok(c) => c,
                Err(e) => {
                    body_err = Some(e);
                    break;
                }
            };
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                // A full buffer goes once more bytes come: the last one is written differently.
                if block.is_full() {
                    let next = if made < direct::BUFFERS {
                        made += 1;
                        Some(Block::take(0))
                    } else {
                        spare_rx.recv().await
                    };
                    // No spare coming back, or no writer to take this one: the writer
                    // failed, and says why below.
                    let Some(next) = next else { break 'body };
                    if tx.send(std::mem::replace(&mut block, next)).await.is_err() {
                        break 'body;
                    }
                }
                rest = &rest[block.fill(rest)..];
            }
        }
        if !block.is_empty() {
            if let Err(unsent) = tx.send(block).await {
                unsent.0.give_back();
            }
        } else {
            block.give_back();
        }
        drop(tx);
        let written = writer.await.map_err(io::Error::other);
        while let Ok(b) = spare_rx.try_recv() {
            b.give_back();
        }
        let written = written??;
        match body_err {
            Some(source) => Err(BlobError::Body { written, source }),
            None => Ok(offset + written),
        }
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        let path = self.upload_path(id)?;
        let m = tokio::fs::metadata(path).await.map_err(|e| not_found_as(e, BlobError::UploadNotFound))?;
        Ok(m.len())
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream, BlobError> {
        let path = self.upload_path(id)?;
        let f = tokio::fs::File::open(path).await.map_err(|e| not_found_as(e, BlobError::UploadNotFound))?;
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(f, READ_BUF)))
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<(), BlobError> {
        let path = self.upload_path(id)?;
        let dest = self.blob_path(digest);
        blocking(move || {
            let f = std::fs::File::open(&path).map_err(|e| not_found_as(e, BlobError::UploadNotFound))?;
            if dest.exists() {
                // Deduplicated: the same content is already stored.
                std::fs::remove_file(&path)?;
                return Ok(());
            }
            Ok(durable_rename(&f, &path, &dest)?)
        })
        .await
    }

    async fn upload_abort(&self, id: &str) -> Result<(), BlobError> {
        let path = self.upload_path(id)?;
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn upload_list(&self) -> Result<Vec<String>, BlobError> {
        let mut out = Vec::new();
        let mut rd = tokio::fs::read_dir(self.root.join("uploads")).await?;
        while let Some(e) = rd.next_entry().await? {
            if let Some(name) = e.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn fs_backend_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::FsBlobStore::open(dir.path()).await.unwrap();
        crate::conformance::run(&store).await;
    }
}
