//! Media types Berth treats specially, and a minimal typed view of manifests.
//!
//! Manifest bytes are always stored and served exactly as pushed; these types only
//! read what the registry needs (referenced blobs and manifests, subject, artifact type).

use serde::Deserialize;

use crate::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Empty JSON config descriptor used by artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The manifest kinds Berth accepts.
pub const ACCEPTED_MANIFESTS: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];

/// A content descriptor (only the fields the registry reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: i64,
    /// Artifact type, on index entries and referrer descriptors.
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Annotations, kept for the referrers response.
    #[serde(default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The fields of an image manifest or index the registry needs. Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestView {
    /// Must be 2 for all accepted kinds.
    pub schema_version: Option<i64>,
    /// Top-level media type (may be absent: Helm 4 omits it).
    #[serde(default)]
    pub media_type: Option<String>,
    /// Artifact type (OCI 1.1).
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Config descriptor (image manifests).
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// Layers (image manifests).
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    /// Child manifests (indexes).
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    /// The manifest this one refers to (OCI 1.1 referrers).
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ManifestView {
    /// The effective artifact type for the referrers API: `artifactType`, else the config media type.
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type.clone().or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }

    /// Is this an index / manifest list (it lists manifests, not layers)?
    pub fn is_index(&self) -> bool {
        self.manifests.is_some() && self.config.is_none()
    }
}
