//! cosign's simple signing: ECDSA over the payload blob, which names the image's digest.

use base64::Engine;
use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
use serde::Deserialize;

/// A trusted cosign public key (ECDSA P-256 or P-384, PEM `PUBLIC KEY`).
#[derive(Debug, Clone)]
pub struct CosignKey {
    /// What the policy calls it.
    pub name: String,
    point: Vec<u8>,
    p384: bool,
}

/// OIDs of the key types cosign keys come in.
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";

impl CosignKey {
    /// Parse a PEM public key (a SubjectPublicKeyInfo, as `cosign generate-key-pair` writes).
    pub fn from_pem(name: &str, pem: &str) -> Result<CosignKey, String> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.trim().as_bytes())
            .map_err(|e| format!("key {name:?}: not a PEM public key ({e})"))?;
        if block.label != "PUBLIC KEY" {
            return Err(format!(
                "key {name:?}: a PEM block labelled {:?}; give the PUBLIC KEY (cosign.pub)",
                block.label
            ));
        }
        use x509_parser::prelude::FromDer;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&block.contents)
            .map_err(|e| format!("key {name:?}: not a public key ({e})"))?;
        if spki.algorithm.algorithm.to_id_string() != EC_PUBLIC_KEY {
            return Err(format!("key {name:?}: only ECDSA keys (P-256, P-384) are supported"));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string())
            .unwrap_or_default();
        let p384 = match curve.as_str() {
            P256 => false,
            P384 => true,
            _ => return Err(format!("key {name:?}: only the P-256 and P-384 curves are supported")),
        };
        Ok(CosignKey { name: name.to_owned(), point: spki.subject_public_key.data.to_vec(), p384 })
    }

    fn verifies(&self, msg: &[u8], sig: &[u8]) -> bool {
        let alg = if self.p384 { &ECDSA_P384_SHA384_ASN1 } else { &ECDSA_P256_SHA256_ASN1 };
        UnparsedPublicKey::new(alg, &self.point).verify(msg, sig).is_ok()
    }
}

/// One signature: the payload blob and its annotation's value.
#[derive(Debug, Clone, Copy)]
pub struct CosignSignature<'a> {
    /// The layer's bytes (the simple-signing JSON).
    pub payload: &'a [u8],
    /// `dev.cosignproject.cosign/signature`: base64 of the DER signature.
    pub signature_b64: &'a str,
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// The name of the key that verifies a signature of `subject` (a manifest digest) among
/// `sigs`, or why none does.
pub fn verify_cosign(sigs: &[CosignSignature<'_>], subject: &str, keys: &[CosignKey]) -> Result<String, String> {
    if sigs.is_empty() {
        return Err("no cosign signature".into());
    }
    let mut why = Vec::new();
    for s in sigs {
        let compact: String = s.signature_b64.chars().filter(|c| !c.is_whitespace()).collect();
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(compact) else {
            why.push("a signature annotation that is not base64".to_owned());
            continue;
        };
        let Some(key) = keys.iter().find(|k| k.verifies(s.payload, &sig)) else {
            why.push("a signature no trusted key made".to_owned());
            continue;
        };
        match serde_json::from_slice::<Payload>(s.payload) {
            Ok(p) if p.critical.kind != "cosign container image signature" => {
                why.push(format!("a payload of type {:?}", p.critical.kind));
            }
            Ok(p) if p.critical.image.digest != subject => {
                why.push(format!("a signature by key {} of another image ({})", key.name, p.critical.image.digest));
            }
            Ok(_) => return Ok(key.name.clone()),
            Err(e) => why.push(format!("a payload that is not cosign's simple signing ({e})")),
        }
    }
    why.dedup();
    Err(format!("no valid cosign signature: found {}", why.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A P-256 key and a signature made with Python's `cryptography` (ECDSA, SHA-256, DER),
    // over the payload below, byte for byte as cosign writes it.
    const PUB: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFXSsw7WE5y7cY/b4CpJ9EnsecMTY\n4FOK+S9hght3DymW0ERye7qvXYg/022DLbvwJip24KiESNM2FPRQalQkrA==\n-----END PUBLIC KEY-----\n";
    const PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"berth.example/team/app"},"image":{"docker-manifest-digest":"sha256:abababababababababababababababababababababababababababababababab"},"type":"cosign container image signature"},"optional":null}"#;
    const SIG: &str =
        "MEYCIQDhKnxLamX4zqa+rG1GNHR/tNjZpK4Yv2rCFZ/J6IJ04AIhAJT42ETG7JyrgPXhSiSd4lp31T8Om7J/CEX36G0rJthg";
    const DIGEST: &str = "sha256:abababababababababababababababababababababababababababababababab";

    #[test]
    fn a_signature_by_a_trusted_key_of_this_image_verifies() {
        let key = CosignKey::from_pem("ci", PUB).unwrap();
        let sig = CosignSignature { payload: PAYLOAD.as_bytes(), signature_b64: SIG };
        assert_eq!(verify_cosign(&[sig], DIGEST, std::slice::from_ref(&key)).unwrap(), "ci");
        // Line breaks in the annotation are tolerated (seen in real captures).
        let wrapped = format!("{}\n{}", &SIG[..40], &SIG[40..]);
        let sig = CosignSignature { payload: PAYLOAD.as_bytes(), signature_b64: &wrapped };
        assert!(verify_cosign(&[sig], DIGEST, std::slice::from_ref(&key)).is_ok());
        // The same signature does not sign another image, nor another payload.
        let sig = CosignSignature { payload: PAYLOAD.as_bytes(), signature_b64: SIG };
        let e = verify_cosign(&[sig], "sha256:0000", std::slice::from_ref(&key)).unwrap_err();
        assert!(e.contains("of another image"), "{e}");
        let changed = PAYLOAD.replace("team/app", "team/ap2");
        let sig = CosignSignature { payload: changed.as_bytes(), signature_b64: SIG };
        assert!(verify_cosign(&[sig], DIGEST, &[key]).unwrap_err().contains("no trusted key"));
    }

    #[test]
    fn keys_are_read_as_cosign_writes_them() {
        assert!(CosignKey::from_pem("ci", PUB).is_ok());
        assert!(CosignKey::from_pem("x", "not pem").unwrap_err().contains("not a PEM"));
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(CosignKey::from_pem("x", cert).unwrap_err().contains("PUBLIC KEY"));
    }

    #[test]
    fn nothing_verifies_without_a_signature_or_a_key() {
        let key = CosignKey::from_pem("ci", PUB).unwrap();
        assert_eq!(verify_cosign(&[], "sha256:x", std::slice::from_ref(&key)).unwrap_err(), "no cosign signature");
        let sig = CosignSignature { payload: b"{}", signature_b64: "MEUCIQ==" };
        let e = verify_cosign(&[sig], "sha256:x", &[key]).unwrap_err();
        assert!(e.contains("no trusted key"), "{e}");
    }
}
