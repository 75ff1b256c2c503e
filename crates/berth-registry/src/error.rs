//! The registry's errors, in its own words. `berth-oci` maps each to an OCI code and status.

use berth_types::{Digest, RepoName};

/// What went wrong in a registry operation.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The repository links no blob with this digest.
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(Digest),
    /// The stored copy failed verification and is not served (a fresh push repairs it).
    #[error(
        "blob {digest} is damaged in this registry's storage ({reason}) and is not served; pull it from \
             another registry, or push it again to repair it"
    )]
    BlobQuarantined {
        /// The blob.
        digest: Digest,
        /// What the scrub found.
        reason: String,
    },
    /// No such upload session (never started, finished, cancelled or expired).
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    /// A chunk did not start where the upload currently ends.
    #[error("chunk starts at {requested} but the upload is at {size} bytes")]
    OutOfOrder {
        /// First byte the client sent.
        requested: u64,
        /// The upload's current size.
        size: u64,
    },
    /// The upload cannot proceed as asked.
    #[error("blob upload invalid: {0}")]
    UploadInvalid(String),
    /// The content does not match the digest the client gave.
    #[error("provided digest did not match uploaded content: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the client claimed.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// A digest parameter is malformed or missing.
    #[error("digest invalid: {0}")]
    DigestInvalid(String),
    /// A length did not match, or a limit was exceeded.
    #[error("{0}")]
    SizeInvalid(String),
    /// The body is larger than the limit.
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// No manifest with this reference.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// The manifest failed validation.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// The manifest references blobs or manifests that the repository does not hold.
    #[error("manifest references content this repository does not have (push it first): {}", list(.0))]
    ManifestBlobUnknown(Vec<Digest>),
    /// The repository is not known.
    #[error("repository name not known to registry: {0}")]
    NameUnknown(RepoName),
    /// A tag is malformed.
    #[error("{0}")]
    TagInvalid(String),
    /// Too many upload sessions are open (the limit that was reached: `repository`, `account`).
    #[error("this {0} has too many open upload sessions ({1}); finish or cancel some (idle ones expire)")]
    TooManyUploads(&'static str, u64),
    /// An immutable tag would be moved or deleted.
    #[error("tag {repo}:{tag} is immutable ({why}): it cannot be overwritten, moved or deleted")]
    TagImmutable {
        /// The repository.
        repo: RepoName,
        /// The tag.
        tag: String,
        /// Which rule or setting makes it immutable.
        why: String,
    },
    /// A policy document (immutable tag rule, tag mutability) is invalid.
    #[error("{0}")]
    PolicyInvalid(String),
    /// The push would take the project over its storage quota (the message says the quota,
    /// the usage and the size).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The requested byte range lies outside the blob.
    #[error("requested range not satisfiable (blob is {size} bytes)")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
    },
    /// The client stopped sending mid-body.
    #[error("request body failed: {0}")]
    Body(std::io::Error),
    /// A pull-through cache's upstream failed and nothing is cached to serve instead.
    #[error("the upstream registry of this cache failed and nothing is cached: {0}")]
    Upstream(String),
    /// A pull-through cache is filled from its upstream, not by pushes.
    #[error("{0}")]
    ReadOnly(String),
    /// Storage failed.
    #[error(transparent)]
    Blob(#[from] berth_blob::BlobError),
    /// Metadata failed.
    #[error(transparent)]
    Meta(berth_meta::MetaError),
}

impl From<berth_meta::MetaError> for RegistryError {
    fn from(e: berth_meta::MetaError) -> Self {
        match e {
            e @ berth_meta::MetaError::QuotaExceeded { .. } => RegistryError::QuotaExceeded(e.to_string()),
            e => RegistryError::Meta(e),
        }
    }
}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        RegistryError::Blob(berth_blob::BlobError::Io(e))
    }
}

fn list(digests: &[Digest]) -> String {
    digests.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
