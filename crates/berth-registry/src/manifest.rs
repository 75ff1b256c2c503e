//! Manifest push: parse, validate, verify digest, store bytes, then record atomically.
//!
//! Rules (see ARCHITECTURE.md, "Manifest acceptance"):
//! - accepted kinds: OCI image manifest and index, Docker schema 2 manifest and list; the
//!   kind comes from `Content-Type`, else the manifest's `mediaType`, else its shape (Helm 4
//!   omits `mediaType`). When both name a kind they must agree.
//! - an image manifest's config and layers must be blobs of this repository
//!   (`MANIFEST_BLOB_UNKNOWN` otherwise), except non-distributable layers and layers with `urls`;
//! - an index's child manifests must already be manifests of this repository (the spec lets a
//!   registry refuse; clients push children first, and garbage collection can then trust refs);
//! - `subject` may name a manifest that does not exist (the spec requires accepting it).

use std::collections::{HashMap, HashSet};

use berth_meta::{ManifestRecord, Origin, RefKind};
use berth_types::media::{self, ManifestView};
use berth_types::{Digest, Hasher, Reference, RepoName, Tag};
use bytes::Bytes;

use crate::{Registry, RegistryError, now_ms};

/// The result of a manifest PUT.
#[derive(Debug, Clone)]
pub struct PutManifestOutcome {
    /// Digest of the stored bytes.
    pub digest: Digest,
    /// The subject, when the manifest has one (for the `OCI-Subject` header).
    pub subject: Option<Digest>,
}

fn is_nondistributable(d: &berth_types::media::Descriptor) -> bool {
    d.media_type.contains("nondistributable") || d.media_type.contains(".foreign.")
}

impl Registry {
    /// Validate and store a manifest under `reference`, plus any extra `tags`.
    pub async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        extra_tags: &[Tag],
        origin: &Origin,
    ) -> Result<PutManifestOutcome, RegistryError> {
        self.put_manifest_checked(repo, reference, content_type, body, extra_tags, origin, false).await
    }

    /// Store a manifest a pull-through cache fetched: as a push, but an index may name
    /// children that are not here yet (they come when asked for).
    pub async fn manifest_put_cached(
        &self,
        repo: &RepoName,
        reference: &Reference,
        media_type: &str,
        body: Bytes,
        origin: &Origin,
    ) -> Result<PutManifestOutcome, RegistryError> {
        self.put_manifest_checked(repo, reference, Some(media_type), body, &[], origin, true).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_manifest_checked(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        extra_tags: &[Tag],
        origin: &Origin,
        later_children: bool,
    ) -> Result<PutManifestOutcome, RegistryError> {
        let kept = body.clone();
        let r =
            self.put_manifest_unlogged(repo, reference, content_type, body, extra_tags, origin, later_children).await;
        if matches!(r, Err(RegistryError::QuotaExceeded(_))) {
            return self.quota_event(repo, Some(&Digest::sha256_of(&kept)), r).await;
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_manifest_unlogged(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        extra_tags: &[Tag],
        origin: &Origin,
        later_children: bool,
    ) -> Result<PutManifestOutcome, RegistryError> {
        if body.len() > self.opts.max_manifest_bytes {
            return Err(RegistryError::TooLarge { what: "manifest", limit: self.opts.max_manifest_bytes });
        }
        let view: ManifestView = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::ManifestInvalid(format!("not a valid manifest document: {e}")))?;
        // Clients and scanners with other JSON parsers must read the same document we checked.
        berth_types::json::reject_duplicate_keys(&body).map_err(RegistryError::ManifestInvalid)?;
        if view.schema_version != Some(2) {
            return Err(RegistryError::ManifestInvalid("schemaVersion must be 2".into()));
        }
        let media_type = decide_media_type(content_type, &view)?;
        let is_index = media_type == media::OCI_INDEX || media_type == media::DOCKER_MANIFEST_LIST;

        // Digest: the reference's algorithm when pushing by digest, else SHA-256.
        let digest = match reference {
            Reference::Digest(d) => {
                let actual = d.same_algorithm_of(&body);
                if &actual != d {
                    return Err(RegistryError::DigestMismatch { expected: d.clone(), actual });
                }
                actual
            }
            Reference::Tag(_) => {
                let mut h = Hasher::new(berth_types::Algorithm::Sha256);
                h.update(&body);
                h.finish()
            }
        };

        let mut refs = Vec::new();
        let mut missing = Vec::new();
        if is_index {
            let children = view
                .manifests
                .as_ref()
                .ok_or_else(|| RegistryError::ManifestInvalid("an index needs a \"manifests\" array".into()))?;
            let wanted: Vec<Digest> = children.iter().map(|c| c.digest.clone()).collect();
            let present: HashSet<Digest> = self.meta.present_manifests(repo, &wanted).await?.into_iter().collect();
            for d in wanted {
                if present.contains(&d) {
                    refs.push((d, RefKind::Manifest));
                } else if later_children {
                    refs.push((d, RefKind::LaterManifest));
                } else {
                    missing.push(d);
                }
            }
        } else {
            let config = view.config.as_ref().ok_or_else(|| {
                RegistryError::ManifestInvalid("an image manifest needs a \"config\" descriptor".into())
            })?;
            let Some(layers) = view.layers.as_deref() else {
                return Err(RegistryError::ManifestInvalid("an image manifest needs a \"layers\" array".into()));
            };
            let mut wanted = Vec::new();
            for d in std::iter::once(config).chain(layers) {
                if d.size < 0 {
                    return Err(RegistryError::ManifestInvalid(format!("negative size for {}", d.digest)));
                }
                if !is_nondistributable(d) {
                    wanted.push(d);
                }
            }
            let digests: Vec<Digest> = wanted.iter().map(|d| d.digest.clone()).collect();
            let sizes: HashMap<Digest, i64> = self.meta.repo_blob_sizes(repo, &digests).await?.into_iter().collect();
            for d in wanted {
                match sizes.get(&d.digest) {
                    Some(&size) if size != d.size => {
                        return Err(RegistryError::ManifestInvalid(format!(
                            "descriptor of {} says {} bytes, the blob has {}",
                            d.digest, d.size, size
                        )));
                    }
                    Some(_) => refs.push((d.digest.clone(), RefKind::Blob)),
                    None => missing.push(d.digest.clone()),
                }
            }
        }
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            return Err(RegistryError::ManifestBlobUnknown(missing));
        }

        let subject = view.subject.as_ref().map(|s| s.digest.clone());
        let annotations = view.annotations.as_ref().map(|a| serde_json::Value::Object(a.clone()).to_string());
        let record = ManifestRecord {
            digest: digest.clone(),
            media_type: media_type.to_owned(),
            artifact_type: view.effective_artifact_type(),
            size: body.len() as i64,
            subject: subject.clone(),
            annotations,
            created_at: now_ms(),
        };
        // The reference's tag first: the `artifact.pushed` event names it.
        let mut tags: Vec<Tag> = Vec::with_capacity(extra_tags.len() + 1);
        if let Reference::Tag(t) = reference {
            tags.push(t.clone());
        }
        tags.extend(extra_tags.iter().filter(|t| !tags.contains(t)).cloned().collect::<Vec<_>>());
        // Bytes, row, references, tags and their events: one transaction.
        // Tags that may not move (the check is in the write's transaction, so racing pushes
        // cannot both win); pushing the same manifest again is fine.
        let immutable = if tags.is_empty() { Vec::new() } else { self.immutable_tags(repo, &tags, false).await? };
        let guard: Vec<Tag> = immutable.iter().map(|(t, _)| t.clone()).collect();
        let written = self.meta.put_manifest_guarded(repo, &record, &body, &refs, &tags, &guard, origin).await;
        if let Err(berth_meta::MetaError::TagImmutable(t)) = &written
            && let Some((tag, why)) = immutable.iter().find(|(x, _)| x.as_str() == t)
        {
            return Err(RegistryError::TagImmutable { repo: repo.clone(), tag: tag.to_string(), why: why.clone() });
        }
        // Even a failed write may have committed (e.g. the connection died after COMMIT).
        self.invalidate(repo, &tags, Some(&digest), false);
        match written {
            // Collected between our check and the commit: the client uploads them again.
            Err(berth_meta::MetaError::Gone(missing)) => return Err(RegistryError::ManifestBlobUnknown(missing)),
            r => r?,
        }
        self.manifest_cache.insert(digest.clone(), body);
        Ok(PutManifestOutcome { digest, subject })
    }
}

fn decide_media_type(content_type: Option<&str>, view: &ManifestView) -> Result<&'static str, RegistryError> {
    let known = |s: &str| media::ACCEPTED_MANIFESTS.iter().copied().find(|k| *k == s);
    let header = content_type.map(|c| c.split(';').next().unwrap_or("").trim()).filter(|c| !c.is_empty());
    let from_header = match header {
        Some(h) => match known(h) {
            Some(k) => Some(k),
            None if h == "application/json" || h == "application/octet-stream" => None,
            None => return Err(RegistryError::ManifestInvalid(format!("unsupported manifest media type {h:?}"))),
        },
        None => None,
    };
    let from_body = match view.media_type.as_deref() {
        Some(m) => Some(
            known(m).ok_or_else(|| RegistryError::ManifestInvalid(format!("unsupported manifest mediaType {m:?}")))?,
        ),
        None => None,
    };
    match (from_header, from_body) {
        (Some(h), Some(b)) if h != b => Err(RegistryError::ManifestInvalid(format!(
            "Content-Type {h:?} does not match the manifest's mediaType {b:?}"
        ))),
        (Some(h), _) => Ok(h),
        (None, Some(b)) => Ok(b),
        (None, None) if view.is_index() => Ok(media::OCI_INDEX),
        (None, None) if view.config.is_some() => Ok(media::OCI_MANIFEST),
        (None, None) => Err(RegistryError::ManifestInvalid("cannot tell the manifest's media type".into())),
    }
}
