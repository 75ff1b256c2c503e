//! Signature policies: a project's verdict on its images' signatures, and the pull decision
//! it makes (`off`; `warn`: pulls allowed, an unverified image logged as
//! `signature.unverified`; `enforce`: an image without a valid signature is not pulled).
//!
//! A policy trusts cosign public keys and/or Notation trust stores under a Notation trust
//! policy (`berth_signature`). Signatures are found where their tools put them: cosign's
//! `sha256-<hex>.sig` tag and OCI 1.1 referrers (cosign's and Notation's artifact types) of the
//! image, in its repository. Verdicts are cached per (project, policy version, digest) for ten
//! minutes, so a changed policy — on any replica — is applied to the next pull.
//!
//! What is never refused: artifacts that are themselves accessories (they have a `subject`,
//! or are pulled by a cosign `sha256-….sig|.att|.sbom` tag), and an index's child when an
//! index of the repository that lists it verifies (cosign signs the index of a multi-platform
//! image, not each platform).

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_meta::{EventKind, ManifestRecord, MetaStore, NewEvent, Origin};
use berth_signature::{CosignKey, CosignSignature, Envelope, Subject, TrustPolicyDoc, TrustStore, media};
use berth_types::{Digest, Reference, RepoName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Registry, RegistryError, now_ms};

/// What a policy does with a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    /// Nothing is checked.
    #[default]
    Off,
    /// Checked, shown, logged; pulls allowed.
    Warn,
    /// Pulls of images without a valid signature are refused.
    Enforce,
}

/// A trusted cosign key, as the API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpec {
    /// What to call it.
    pub name: String,
    /// PEM `PUBLIC KEY` (cosign.pub).
    pub public_key: String,
}

/// A Notation trust store, as the API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSpec {
    /// Its name (`ca:<name>` in the trust policy).
    pub name: String,
    /// PEM certificates (roots).
    pub certificates: String,
}

/// A project's signature policy (Berth's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SignaturePolicy {
    /// off, warn or enforce.
    #[serde(default)]
    pub mode: SignatureMode,
    /// Trusted cosign keys.
    #[serde(default)]
    pub cosign_keys: Vec<KeySpec>,
    /// Notation trust stores.
    #[serde(default)]
    pub trust_stores: Vec<StoreSpec>,
    /// Notation's trustpolicy.json (version 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_policy: Option<Value>,
}

/// A policy, parsed and checked.
#[derive(Debug)]
struct Compiled {
    version: i64,
    mode: SignatureMode,
    keys: Vec<CosignKey>,
    stores: Vec<TrustStore>,
    trust: Option<TrustPolicyDoc>,
}

fn compile(p: &SignaturePolicy, version: i64) -> Result<Compiled, String> {
    let mut keys = Vec::new();
    for k in &p.cosign_keys {
        if k.name.trim().is_empty() {
            return Err("cosign_keys: every key needs a name".into());
        }
        keys.push(CosignKey::from_pem(&k.name, &k.public_key)?);
    }
    let mut stores = Vec::new();
    for s in &p.trust_stores {
        stores.push(TrustStore::from_pem(&s.name, &s.certificates)?);
    }
    let trust = match &p.trust_policy {
        Some(v) => Some(TrustPolicyDoc::parse(&v.to_string(), &stores)?),
        None => None,
    };
    if p.mode != SignatureMode::Off && keys.is_empty() && trust.is_none() {
        return Err(format!(
            "mode {:?} needs something to trust: cosign_keys, or trust_stores with a trust_policy",
            p.mode
        ));
    }
    if keys.len() > 32 || stores.len() > 32 {
        return Err("at most 32 keys and 32 trust stores".into());
    }
    Ok(Compiled { version, mode: p.mode, keys, stores, trust })
}

/// What a policy concludes of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid signature by this signer.
    Verified(String),
    /// No signature at all.
    Unsigned,
    /// Signatures, but none valid (why).
    Invalid(String),
}

impl Verdict {
    /// `verified`, `unsigned` or `invalid`.
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Verified(_) => "verified",
            Verdict::Unsigned => "unsigned",
            Verdict::Invalid(_) => "invalid",
        }
    }
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The policy is wrong (the message says how).
    #[error("{0}")]
    Invalid(String),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Most signature manifests looked at for one image.
const MAX_SIGNATURES: usize = 16;
/// Largest signature blob read (payloads and envelopes are a few KiB).
const MAX_SIGNATURE_BYTES: u64 = 256 * 1024;
/// How long a policy is trusted before it is read again (changes on other replicas).
const POLICY_TTL: Duration = Duration::from_secs(5);
/// How long a verdict is kept.
const VERDICT_TTL: Duration = Duration::from_secs(600);

type PolicyEntry = (Option<Arc<Compiled>>, Instant);

/// The signature service.
pub struct Signatures {
    registry: Arc<Registry>,
    meta: Arc<dyn MetaStore>,
    policies: quick_cache::sync::Cache<String, PolicyEntry>,
    verdicts: quick_cache::sync::Cache<(String, i64, Digest), (Verdict, Instant)>,
}

impl std::fmt::Debug for Signatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signatures(..)")
    }
}

impl Signatures {
    /// The service over the registry and its store.
    pub fn new(registry: Arc<Registry>, meta: Arc<dyn MetaStore>) -> Signatures {
        Signatures {
            registry,
            meta,
            policies: quick_cache::sync::Cache::new(1024),
            verdicts: quick_cache::sync::Cache::new(16_384),
        }
    }

    /// The policy of `project` as stored, with its version (`None`: none).
    pub async fn policy(&self, project: &str) -> Result<Option<(SignaturePolicy, i64)>, RegistryError> {
        match self.meta.signature_policy(project).await? {
            Some(r) if !r.document.is_empty() => {
                let p = serde_json::from_str(&r.document).map_err(|e| {
                    RegistryError::Meta(berth_meta::MetaError::Corrupt(format!("signature policy: {e}")))
                })?;
                Ok(Some((p, r.version)))
            }
            _ => Ok(None),
        }
    }

    /// Set (or with `None` remove) the policy of `project`; returns its new version.
    pub async fn set_policy(
        &self,
        project: &str,
        policy: Option<&SignaturePolicy>,
        origin: &Origin,
    ) -> Result<i64, SignatureError> {
        if let Some(p) = policy {
            compile(p, 0).map_err(SignatureError::Invalid)?;
        }
        let doc = policy.map(|p| serde_json::to_string(p).expect("a policy serializes"));
        let event =
            NewEvent::new(EventKind::PolicyChanged, now_ms(), origin).project(project).data(serde_json::json!({
                "op": if policy.is_some() { "update" } else { "delete" }, "kind": "signature",
            }));
        let v = self
            .meta
            .put_signature_policy(project, doc.as_deref(), now_ms(), &event)
            .await
            .map_err(RegistryError::from)?;
        self.policies.remove(project);
        Ok(v)
    }

    async fn compiled(&self, project: &str) -> Result<Option<Arc<Compiled>>, RegistryError> {
        if let Some((c, at)) = self.policies.get(project)
            && at.elapsed() < POLICY_TTL
        {
            return Ok(c);
        }
        let c = match self.meta.signature_policy(project).await? {
            Some(r) if !r.document.is_empty() => serde_json::from_str::<SignaturePolicy>(&r.document)
                .ok()
                .and_then(|p| compile(&p, r.version).ok())
                .filter(|c| c.mode != SignatureMode::Off)
                .map(Arc::new),
            _ => None,
        };
        self.policies.insert(project.to_owned(), (c.clone(), Instant::now()));
        Ok(c)
    }

    /// The verdict of `project`'s policy on the manifest `record` of `repo` (`None`: no policy,
    /// or it is off), with the policy's mode.
    pub async fn verdict(
        &self,
        project: &str,
        repo: &RepoName,
        record: &ManifestRecord,
    ) -> Result<Option<(Verdict, SignatureMode)>, RegistryError> {
        let Some(policy) = self.compiled(project).await? else { return Ok(None) };
        Ok(Some((self.verdict_under(&policy, project, repo, record).await?, policy.mode)))
    }

    async fn verdict_under(
        &self,
        policy: &Compiled,
        project: &str,
        repo: &RepoName,
        record: &ManifestRecord,
    ) -> Result<Verdict, RegistryError> {
        let key = (project.to_owned(), policy.version, record.digest.clone());
        if let Some((v, at)) = self.verdicts.get(&key)
            && at.elapsed() < VERDICT_TTL
        {
            return Ok(v);
        }
        let v = self.verify(policy, repo, record).await?;
        self.verdicts.insert(key, (v.clone(), Instant::now()));
        Ok(v)
    }

    /// Why a pull of `record` (asked for by `reference`) must be refused, if it must; logs
    /// `signature.unverified` under `warn` (once per verdict kept).
    pub async fn check_pull(
        &self,
        repo: &RepoName,
        reference: &Reference,
        record: &ManifestRecord,
        origin: &Origin,
    ) -> Result<Option<String>, RegistryError> {
        let project = berth_meta::project_of(repo.as_str()).to_owned();
        let Some(policy) = self.compiled(&project).await? else { return Ok(None) };
        if record.subject.is_some() || is_accessory_tag(reference) {
            return Ok(None);
        }
        let fresh = !self.verdicts.contains_key(&(project.clone(), policy.version, record.digest.clone()));
        let mut verdict = self.verdict_under(&policy, &project, repo, record).await?;
        if !matches!(verdict, Verdict::Verified(_)) {
            // A platform of a signed multi-platform image.
            for parent in self.registry.meta.parents_of(repo, &record.digest).await? {
                let Ok(p) = self.registry.manifest_get(repo, &Reference::Digest(parent), false).await else { continue };
                if let Verdict::Verified(by) = self.verdict_under(&policy, &project, repo, &p.record).await? {
                    verdict = Verdict::Verified(format!("{by} (the index {} that lists it)", p.record.digest));
                    break;
                }
            }
        }
        let why = match &verdict {
            Verdict::Verified(_) => return Ok(None),
            Verdict::Unsigned => "it is not signed".to_owned(),
            Verdict::Invalid(why) => why.clone(),
        };
        match policy.mode {
            SignatureMode::Enforce => Ok(Some(format!(
                "project {project}'s signature policy (enforce) refuses {repo}@{}: {why}",
                record.digest
            ))),
            _ => {
                if fresh {
                    let e = NewEvent::new(EventKind::SignatureUnverified, now_ms(), origin)
                        .repo(repo.as_str())
                        .digest(&record.digest)
                        .data(serde_json::json!({ "status": verdict.status(), "reason": why }));
                    if let Err(err) = self.meta.append_events(&[e]).await {
                        tracing::warn!(%repo, error = %err, "an unverified pull could not be logged");
                    }
                }
                Ok(None)
            }
        }
    }

    /// Look for the image's signatures and check them.
    async fn verify(
        &self,
        policy: &Compiled,
        repo: &RepoName,
        record: &ManifestRecord,
    ) -> Result<Verdict, RegistryError> {
        let mut found = 0;
        let mut why: Vec<String> = Vec::new();
        // cosign: the `.sig` tag, and referrers of cosign's artifact type.
        let mut cosign_manifests = Vec::new();
        if let Ok(tag) = format!("{}.sig", record.digest.to_string().replace(':', "-")).parse()
            && let Ok(m) = self.registry.manifest_get(repo, &Reference::Tag(tag), true).await
        {
            cosign_manifests.extend(m.bytes);
        }
        let referrers = self.registry.referrers(repo, &record.digest, None).await?;
        let mut notation = Vec::new();
        for r in referrers.iter().take(MAX_SIGNATURES) {
            match r.artifact_type.as_deref() {
                Some(media::COSIGN_ARTIFACT) | Some(media::NOTATION_ARTIFACT) => {}
                _ => continue,
            }
            let m = self.registry.manifest_get(repo, &Reference::Digest(r.digest.clone()), true).await?;
            if r.artifact_type.as_deref() == Some(media::COSIGN_ARTIFACT) {
                cosign_manifests.extend(m.bytes);
            } else {
                notation.extend(m.bytes);
            }
        }
        if !policy.keys.is_empty() {
            let mut payloads = Vec::new();
            for m in &cosign_manifests {
                let v: Value = serde_json::from_slice(m).unwrap_or_default();
                for l in v["layers"].as_array().into_iter().flatten().take(MAX_SIGNATURES) {
                    let (Some(d), Some(sig)) = (
                        l["digest"].as_str().and_then(|d| d.parse::<Digest>().ok()),
                        l["annotations"][media::COSIGN_SIGNATURE_ANNOTATION].as_str(),
                    ) else {
                        continue;
                    };
                    if l["mediaType"] != media::COSIGN_LAYER {
                        continue;
                    }
                    if let Some(bytes) = self.registry.blob_bytes(repo, &d, MAX_SIGNATURE_BYTES).await? {
                        payloads.push((bytes, sig.to_owned()));
                    }
                }
            }
            found += payloads.len();
            if !payloads.is_empty() {
                let sigs: Vec<CosignSignature<'_>> =
                    payloads.iter().map(|(p, s)| CosignSignature { payload: p, signature_b64: s }).collect();
                match berth_signature::verify_cosign(&sigs, &record.digest.to_string(), &policy.keys) {
                    Ok(key) => return Ok(Verdict::Verified(format!("cosign key {key}"))),
                    Err(e) => why.push(e),
                }
            }
        }
        if let Some(doc) = &policy.trust {
            let subject =
                Subject { digest: &record.digest.to_string(), size: record.size, media_type: &record.media_type };
            for m in &notation {
                let v: Value = serde_json::from_slice(m).unwrap_or_default();
                let Some(layer) = v["layers"].as_array().and_then(|l| l.first()) else { continue };
                let Some(d) = layer["digest"].as_str().and_then(|d| d.parse::<Digest>().ok()) else { continue };
                let Some(bytes) = self.registry.blob_bytes(repo, &d, MAX_SIGNATURE_BYTES).await? else { continue };
                let envelope = match layer["mediaType"].as_str() {
                    Some(media::JWS) => Envelope::Jws(&bytes),
                    Some(media::COSE) => Envelope::Cose(&bytes),
                    _ => continue,
                };
                found += 1;
                match berth_signature::verify_notation(
                    envelope,
                    &subject,
                    repo.as_str(),
                    doc,
                    &policy.stores,
                    now_ms() / 1000,
                ) {
                    Ok(who) => return Ok(Verdict::Verified(who)),
                    Err(e) => why.push(e),
                }
            }
        }
        if found == 0 {
            return Ok(Verdict::Unsigned);
        }
        why.dedup();
        Ok(Verdict::Invalid(why.join("; ")))
    }
}

/// `sha256-<hex>.sig`, `.att` or `.sbom`: cosign's tags for a digest's accessories.
fn is_accessory_tag(r: &Reference) -> bool {
    match r {
        Reference::Tag(t) => {
            let t = t.as_str();
            t.starts_with("sha256-") && (t.ends_with(".sig") || t.ends_with(".att") || t.ends_with(".sbom"))
        }
        Reference::Digest(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_needs_something_to_trust_and_keys_that_parse() {
        let p = SignaturePolicy { mode: SignatureMode::Enforce, ..Default::default() };
        assert!(compile(&p, 1).unwrap_err().contains("needs something to trust"));
        let p = SignaturePolicy {
            mode: SignatureMode::Warn,
            cosign_keys: vec![KeySpec { name: "ci".into(), public_key: "nope".into() }],
            ..Default::default()
        };
        assert!(compile(&p, 1).unwrap_err().contains("not a PEM"));
        assert!(compile(&SignaturePolicy::default(), 1).is_ok(), "off needs nothing");
        let tag = |s: &str| Reference::Tag(s.parse().unwrap());
        assert!(is_accessory_tag(&tag(&format!("sha256-{}.sig", "a".repeat(64)))));
        assert!(!is_accessory_tag(&tag("v1.sig")));
    }
}
