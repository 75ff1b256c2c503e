//! Blob storage for Berth: the [`BlobStore`] trait, the filesystem backend [`FsBlobStore`],
//! the S3 backend [`S3BlobStore`], and the [`conformance`] suite every backend must pass.
//!
//! A blob store knows nothing of HTTP, OCI error codes or repositories: it keeps immutable,
//! content-addressed byte strings, and upload sessions whose bytes become a blob on commit.
//! The caller (the registry layer) verifies digests while it streams; a store only promises
//! that [`BlobStore::upload_commit`] and [`BlobStore::put`] are atomic and durable: after they
//! return, the blob survives a crash, and before they return, it is not visible under its digest.
//!
//! ```no_run
//! # async fn f() -> Result<(), berth_blob::BlobError> {
//! use berth_blob::{BlobStore, FsBlobStore};
//! let store = FsBlobStore::open("/tmp/berth-blobs").await?;
//! let d = berth_types::Digest::sha256_of(b"hi");
//! store.put(&d, bytes::Bytes::from_static(b"hi")).await?;
//! assert_eq!(store.stat(&d).await?, Some(2));
//! # Ok(()) }
//! ```

pub mod conformance;
mod direct;
mod fs;
mod mapped;
mod s3;

use std::io;
use std::pin::Pin;

use berth_types::Digest;
use bytes::Bytes;
use futures::Stream;

pub use fs::{FsBlobStore, blob_file};
pub use mapped::file_range;
pub use s3::{MIN_PART_SIZE, S3BlobStore, S3Options};

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Errors of a blob store, in the store's own words.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob with that digest.
    #[error("blob not found")]
    NotFound,
    /// No upload session with that id.
    #[error("upload not found")]
    UploadNotFound,
    /// A write started at an offset other than the upload's current size.
    #[error("upload is at offset {actual}, not {expected}")]
    OffsetMismatch {
        /// The offset the caller asked to write at.
        expected: u64,
        /// The upload's real size.
        actual: u64,
    },
    /// The body stream failed (client went away) after `written` bytes were stored.
    #[error("body stream failed after {written} bytes: {source}")]
    Body {
        /// Bytes of this call that were stored before the failure.
        written: u64,
        /// The stream's error.
        source: io::Error,
    },
    /// The requested byte range is outside the blob.
    #[error("range not satisfiable")]
    RangeNotSatisfiable,
    /// Storage I/O failed.
    #[error("storage i/o: {0}")]
    Io(#[from] io::Error),
}

/// The bytes of a stored blob (or a range of it).
pub enum BlobBody {
    /// An immutable in-memory view (for the filesystem backend, a read-only memory map of
    /// the blob file, which a plain-HTTP connection sends with `sendfile`: see [`file_range`]).
    Bytes(Bytes),
    /// A stream, for backends that cannot hand out the bytes directly.
    Stream(ByteStream),
}

/// Content-addressed blob storage with resumable uploads.
///
/// Contract for every backend (checked by [`conformance::run`]):
/// - blobs are immutable; `put`/`upload_commit` of a digest that exists is a no-op success;
/// - a blob is visible (`stat`, `open`) only after `put`/`upload_commit` returned, and then durably;
/// - `upload_write` appends at exactly `offset` (the upload's current size) or fails with
///   [`BlobError::OffsetMismatch`], writing nothing;
/// - an upload's bytes stay readable and appendable until commit or abort, across restarts.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of the blob, or `None` when absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError>;
    /// Bytes of the blob, whole or the inclusive range `start..=end`.
    async fn open(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<BlobBody, BlobError>;
    /// Store a small blob whose digest the caller has verified.
    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), BlobError>;
    /// Remove a blob; absent is not an error.
    async fn delete(&self, digest: &Digest) -> Result<(), BlobError>;

    /// Create an empty upload session.
    async fn upload_start(&self, id: &str) -> Result<(), BlobError>;
    /// Append `data` at `offset`; returns the upload's new size.
    async fn upload_write(&self, id: &str, offset: u64, data: ByteStream) -> Result<u64, BlobError>;
    /// Current size of the upload.
    async fn upload_size(&self, id: &str) -> Result<u64, BlobError>;
    /// All bytes written so far (to rebuild a digest state after a restart).
    async fn upload_read(&self, id: &str) -> Result<ByteStream, BlobError>;
    /// Durably turn the upload's bytes into the blob `digest` (already verified by the caller)
    /// and end the session.
    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<(), BlobError>;
    /// End the session and free its bytes; absent is not an error.
    async fn upload_abort(&self, id: &str) -> Result<(), BlobError>;
    /// Ids of all upload sessions present in storage (to reclaim orphans).
    async fn upload_list(&self) -> Result<Vec<String>, BlobError>;

    /// Abort storage-level uploads begun before `older_than` that no session holds (S3
    /// multipart uploads a crash left behind, whose parts are stored and billed but never
    /// listed as objects); returns how many. Nothing to do on a filesystem.
    async fn reap_orphan_parts(&self, _older_than: std::time::SystemTime) -> Result<usize, BlobError> {
        Ok(0)
    }

    /// A URL from which a client may GET the blob directly for `ttl`, if the backend can
    /// presign one (S3); `None` otherwise, or when the blob is absent.
    async fn presigned_get(&self, _digest: &Digest, _ttl: std::time::Duration) -> Result<Option<String>, BlobError> {
        Ok(None)
    }
}

/// Check an upload id before it names anything in storage: uuid-like, `[0-9a-f-]{1,64}`.
pub fn valid_upload_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
}
