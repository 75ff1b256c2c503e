//! Image signatures, verified: cosign's simple signing (the `sha256-<hex>.sig` tag and OCI 1.1
//! referrers) against trusted public keys, and Notation's JWS and COSE envelopes against
//! trust stores under a Notation trust policy. Pure: the caller fetches the bytes and passes
//! the time; nothing here touches a network or a clock.
//!
//! What is signed, exactly (and so what is checked):
//! - **cosign**: the payload blob's bytes, SHA-256, ECDSA (DER signature, base64 in the layer
//!   annotation `dev.cosignproject.cosign/signature`); the payload's
//!   `critical.image.docker-manifest-digest` must be the image's digest.
//! - **Notation JWS**: `protected + "." + payload` as received (ES* signatures are raw R‖S,
//!   PS* are RSASSA-PSS with a salt as long as the hash); **COSE**: the `Sig_structure`
//!   `["Signature1", protected, h'', payload]`. The payload's `targetArtifact` must name the
//!   image (digest, size, media type); the certificate chain must lead to a root of one of the
//!   policy's trust stores, the leaf be a code-signing certificate whose subject matches a
//!   trusted identity, and the signature not be expired — as the policy's level requires.

pub mod cosign;
pub mod notation;

pub use cosign::{CosignKey, CosignSignature, verify_cosign};
pub use notation::{Envelope, Subject, TrustPolicyDoc, TrustStore, verify_notation};

/// The media types signatures come as.
pub mod media {
    /// A cosign signature layer (the simple-signing payload).
    pub const COSIGN_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
    /// A cosign signature manifest's artifact type (OCI 1.1 referrers).
    pub const COSIGN_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
    /// The layer annotation holding a cosign signature.
    pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
    /// A Notation signature manifest's artifact type.
    pub const NOTATION_ARTIFACT: &str = "application/vnd.cncf.notary.signature";
    /// A Notation JWS envelope.
    pub const JWS: &str = "application/jose+json";
    /// A Notation COSE envelope.
    pub const COSE: &str = "application/cose";
}
