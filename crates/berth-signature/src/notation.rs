//! Notation (Notary Project v1) signatures: JWS and COSE envelopes, verified against trust
//! stores under a Notation trust policy (`trustpolicy.json`, version 1.0).
//!
//! Levels as Notation defines them: `strict` enforces integrity, authenticity (a chain to a
//! root of the policy's stores, a trusted identity, every certificate valid now) and expiry;
//! `permissive` enforces integrity and authenticity (the chain valid when it was signed) and
//! only notes expiry; `audit` enforces integrity only; `skip` verifies nothing. Revocation is
//! not checked (Berth works offline); RFC 3161 timestamps are not read.

use base64::Engine;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use webpki::{EndEntityCert, KeyUsage};

/// The code-signing extended key usage (1.3.6.1.5.5.7.3.3), DER contents.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// The payload media type Notation signs.
const PAYLOAD_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

/// The artifact a signature must name.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Its digest.
    pub digest: &'a str,
    /// Its size in bytes.
    pub size: i64,
    /// Its media type.
    pub media_type: &'a str,
}

/// A named trust store of root certificates (Notation's `ca` stores).
#[derive(Debug, Clone)]
pub struct TrustStore {
    /// Its name (`ca:<name>` in a trust policy).
    pub name: String,
    certs: Vec<Vec<u8>>,
}

impl TrustStore {
    /// The certificates of a PEM bundle.
    pub fn from_pem(name: &str, pem: &str) -> Result<TrustStore, String> {
        let mut certs = Vec::new();
        for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
            let block = block.map_err(|e| format!("trust store {name:?}: not PEM ({e})"))?;
            if block.label != "CERTIFICATE" {
                continue;
            }
            block.parse_x509().map_err(|e| format!("trust store {name:?}: a certificate that does not parse ({e})"))?;
            certs.push(block.contents);
        }
        if certs.is_empty() {
            return Err(format!("trust store {name:?}: no certificate (give PEM CERTIFICATE blocks)"));
        }
        Ok(TrustStore { name: name.to_owned(), certs })
    }

    /// How many certificates it holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether it holds none (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// `trustpolicy.json` (version 1.0).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustPolicyDoc {
    /// `1.0`.
    pub version: String,
    /// The policies.
    pub trust_policies: Vec<TrustPolicy>,
}

/// One trust policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustPolicy {
    /// Its name.
    pub name: String,
    /// Repositories (`registry/repo`, or just `repo`) or `*`.
    pub registry_scopes: Vec<String>,
    /// How strictly.
    pub signature_verification: Verification,
    /// `ca:<store>` names.
    #[serde(default)]
    pub trust_stores: Vec<String>,
    /// `x509.subject: C=…, ST=…, O=…, …` or `*`.
    #[serde(default)]
    pub trusted_identities: Vec<String>,
}

/// `signatureVerification`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// `strict`, `permissive`, `audit` or `skip`.
    pub level: String,
}

impl TrustPolicyDoc {
    /// Parse and check a trust policy document against the stores it may name.
    pub fn parse(json: &str, stores: &[TrustStore]) -> Result<TrustPolicyDoc, String> {
        let doc: TrustPolicyDoc = serde_json::from_str(json)
            .map_err(|e| format!("the trust policy is not Notation's trustpolicy.json: {e}"))?;
        if doc.version != "1.0" {
            return Err(format!("trust policy version {:?}: use \"1.0\"", doc.version));
        }
        let mut globals = 0;
        let mut scopes = std::collections::HashSet::new();
        for p in &doc.trust_policies {
            let at = |m: String| format!("trust policy {:?}: {m}", p.name);
            if p.name.is_empty() {
                return Err("a trust policy without a name".into());
            }
            if !["strict", "permissive", "audit", "skip"].contains(&p.signature_verification.level.as_str()) {
                return Err(at(format!(
                    "level {:?}: use strict, permissive, audit or skip",
                    p.signature_verification.level
                )));
            }
            if p.registry_scopes.is_empty() {
                return Err(at("registryScopes: name repositories, or \"*\"".into()));
            }
            for s in &p.registry_scopes {
                if s == "*" {
                    globals += 1;
                    if p.registry_scopes.len() > 1 {
                        return Err(at("\"*\" must be the only scope of its policy".into()));
                    }
                } else if !scopes.insert(s.clone()) {
                    return Err(at(format!("scope {s:?} is in two policies")));
                }
            }
            if p.signature_verification.level == "skip" {
                if !p.trust_stores.is_empty() || !p.trusted_identities.is_empty() {
                    return Err(at("a skip policy has no trustStores or trustedIdentities".into()));
                }
                continue;
            }
            if p.trust_stores.is_empty() || p.trusted_identities.is_empty() {
                return Err(at("name trustStores (\"ca:<name>\") and trustedIdentities (or \"*\")".into()));
            }
            for t in &p.trust_stores {
                let name = t.strip_prefix("ca:").ok_or_else(|| at(format!("trust store {t:?}: use ca:<name>")))?;
                if !stores.iter().any(|s| s.name == name) {
                    return Err(at(format!("trust store {t:?} is not defined")));
                }
            }
            for id in &p.trusted_identities {
                if id != "*" {
                    let dn = id
                        .strip_prefix("x509.subject:")
                        .ok_or_else(|| at(format!("identity {id:?}: use \"x509.subject: C=…, ST=…, O=…\" or \"*\"")))?;
                    let rdns = parse_dn(dn).map_err(at)?;
                    for k in ["C", "ST", "O"] {
                        if !rdns.iter().any(|(key, _)| key == k) {
                            return Err(at(format!("identity {id:?} must name {k}")));
                        }
                    }
                }
            }
        }
        if globals > 1 {
            return Err("only one trust policy may have the scope \"*\"".into());
        }
        Ok(doc)
    }

    /// The policy for `repo` (a repository named exactly, else the `*` one).
    pub fn for_repository(&self, repo: &str) -> Option<&TrustPolicy> {
        let exact = |s: &String| s == repo || s.ends_with(&format!("/{repo}"));
        self.trust_policies
            .iter()
            .find(|p| p.registry_scopes.iter().any(exact))
            .or_else(|| self.trust_policies.iter().find(|p| p.registry_scopes.iter().any(|s| s == "*")))
    }
}

/// `C=US, ST=WA, O=Acme` as (key, value) pairs (`\,` escapes a comma).
fn parse_dn(dn: &str) -> Result<Vec<(String, String)>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            ',' => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("{:?} is not KEY=value", p.trim()))?;
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// A signature envelope, by its layer media type.
#[derive(Debug, Clone, Copy)]
pub enum Envelope<'a> {
    /// `application/jose+json`.
    Jws(&'a [u8]),
    /// `application/cose`.
    Cose(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
}

impl Alg {
    fn from_jws(s: &str) -> Result<Alg, String> {
        Ok(match s {
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            other => {
                return Err(format!("algorithm {other:?} is not one Notation signs with (PS256/384/512, ES256/384)"));
            }
        })
    }

    fn from_cose(n: i128) -> Result<Alg, String> {
        Ok(match n {
            -37 => Alg::Ps256,
            -38 => Alg::Ps384,
            -39 => Alg::Ps512,
            -7 => Alg::Es256,
            -35 => Alg::Es384,
            other => return Err(format!("COSE algorithm {other} is not one Notation signs with")),
        })
    }

    fn webpki(self) -> &'static dyn rustls_pki_types::SignatureVerificationAlgorithm {
        match self {
            Alg::Ps256 => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            Alg::Ps384 => webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
            Alg::Ps512 => webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
            Alg::Es256 => webpki::ring::ECDSA_P256_SHA256,
            Alg::Es384 => webpki::ring::ECDSA_P384_SHA384,
        }
    }

    /// The width of R and S in a raw ECDSA signature.
    fn ec_width(self) -> Option<usize> {
        match self {
            Alg::Es256 => Some(32),
            Alg::Es384 => Some(48),
            _ => None,
        }
    }
}

/// What an envelope says, once parsed.
struct Parsed {
    alg: Alg,
    signed: Vec<u8>,
    signature: Vec<u8>,
    payload: Vec<u8>,
    chain: Vec<Vec<u8>>,
    signing_time: Option<i64>,
    expiry: Option<i64>,
}

const KNOWN_CRIT: [&str; 2] = ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"];

fn check_scheme(scheme: Option<&str>, crit: &[String]) -> Result<(), String> {
    match scheme {
        Some("notary.x509") => {}
        Some("notary.x509.signingAuthority") => {
            return Err(
                "the notary.x509.signingAuthority scheme needs a timestamping authority, which Berth does not check"
                    .into(),
            );
        }
        Some(other) => return Err(format!("signing scheme {other:?} is unknown")),
        None => return Err("no io.cncf.notary.signingScheme".into()),
    }
    if !crit.iter().any(|c| c == "io.cncf.notary.signingScheme") {
        return Err("crit does not name io.cncf.notary.signingScheme".into());
    }
    if let Some(c) = crit.iter().find(|c| !KNOWN_CRIT.contains(&c.as_str())) {
        return Err(format!("a critical header Berth does not understand: {c:?}"));
    }
    Ok(())
}

fn rfc3339(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp()).map_err(|e| format!("time {s:?}: {e}"))
}

fn parse_jws(bytes: &[u8]) -> Result<Parsed, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Jws {
        payload: String,
        protected: String,
        header: Header,
        signature: String,
    }
    #[derive(Deserialize)]
    struct Header {
        #[serde(default)]
        x5c: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Protected {
        alg: String,
        cty: String,
        #[serde(default)]
        crit: Vec<String>,
        #[serde(rename = "io.cncf.notary.signingScheme")]
        scheme: Option<String>,
        #[serde(rename = "io.cncf.notary.signingTime")]
        signing_time: Option<String>,
        #[serde(rename = "io.cncf.notary.expiry")]
        expiry: Option<String>,
    }
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jws: Jws = serde_json::from_slice(bytes).map_err(|e| format!("not a JWS envelope: {e}"))?;
    let protected: Protected = serde_json::from_slice(
        &b64url.decode(&jws.protected).map_err(|_| "the protected header is not base64url".to_owned())?,
    )
    .map_err(|e| format!("the protected header: {e}"))?;
    if protected.cty != PAYLOAD_TYPE {
        return Err(format!("content type {:?}: Notation signs {PAYLOAD_TYPE}", protected.cty));
    }
    check_scheme(protected.scheme.as_deref(), &protected.crit)?;
    let alg = Alg::from_jws(&protected.alg)?;
    let mut signature = b64url.decode(&jws.signature).map_err(|_| "the signature is not base64url".to_owned())?;
    if let Some(w) = alg.ec_width() {
        signature = raw_to_der(&signature, w)?;
    }
    let chain = jws
        .header
        .x5c
        .iter()
        .map(|c| {
            base64::engine::general_purpose::STANDARD
                .decode(c)
                .map_err(|_| "an x5c certificate is not base64".to_owned())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Parsed {
        alg,
        signed: format!("{}.{}", jws.protected, jws.payload).into_bytes(),
        signature,
        payload: b64url.decode(&jws.payload).map_err(|_| "the payload is not base64url".to_owned())?,
        chain,
        signing_time: protected.signing_time.as_deref().map(rfc3339).transpose()?,
        expiry: protected.expiry.as_deref().map(rfc3339).transpose()?,
    })
}

fn parse_cose(bytes: &[u8]) -> Result<Parsed, String> {
    use ciborium::Value;
    let bad = |m: &str| format!("not a COSE_Sign1 envelope: {m}");
    let v: Value = ciborium::de::from_reader(bytes).map_err(|e| bad(&e.to_string()))?;
    let Value::Tag(18, inner) = v else { return Err(bad("no COSE_Sign1 tag (18)")) };
    let Value::Array(items) = *inner else { return Err(bad("not an array")) };
    let [Value::Bytes(protected_raw), Value::Map(unprotected), Value::Bytes(payload), Value::Bytes(sig)] = &items[..]
    else {
        return Err(bad("expected [protected, unprotected, payload, signature] with an attached payload"));
    };
    let protected: Value = ciborium::de::from_reader(&protected_raw[..]).map_err(|e| bad(&e.to_string()))?;
    let Value::Map(protected) = protected else { return Err(bad("the protected header is not a map")) };
    let label = |m: &[(Value, Value)], want: &Value| m.iter().find(|(k, _)| k == want).map(|(_, v)| v.clone());
    let text = |s: &str| Value::Text(s.to_owned());
    let int = |n: i64| Value::Integer(n.into());
    let time = |v: Option<Value>| -> Result<Option<i64>, String> {
        match v {
            None => Ok(None),
            Some(Value::Tag(1, t)) => match *t {
                Value::Integer(i) => Ok(Some(i64::try_from(i128::from(i)).map_err(|_| bad("a time out of range"))?)),
                _ => Err(bad("a time that is not epoch seconds")),
            },
            Some(Value::Integer(i)) => Ok(Some(i64::try_from(i128::from(i)).map_err(|_| bad("a time out of range"))?)),
            Some(_) => Err(bad("a time that is not epoch seconds")),
        }
    };
    let alg = match label(&protected, &int(1)) {
        Some(Value::Integer(n)) => Alg::from_cose(i128::from(n))?,
        _ => return Err(bad("no algorithm (label 1)")),
    };
    match label(&protected, &int(3)) {
        Some(Value::Text(t)) if t == PAYLOAD_TYPE => {}
        other => return Err(format!("content type {other:?}: Notation signs {PAYLOAD_TYPE}")),
    }
    let crit: Vec<String> = match label(&protected, &int(2)) {
        Some(Value::Array(a)) => a.into_iter().filter_map(|v| v.into_text().ok()).collect(),
        _ => Vec::new(),
    };
    let scheme = label(&protected, &text("io.cncf.notary.signingScheme")).and_then(|v| v.into_text().ok());
    check_scheme(scheme.as_deref(), &crit)?;
    let chain = match label(unprotected, &int(33)) {
        Some(Value::Array(a)) => a.into_iter().filter_map(|v| v.into_bytes().ok()).collect(),
        Some(Value::Bytes(b)) => vec![b],
        _ => Vec::new(),
    };
    let mut signature = sig.clone();
    if let Some(w) = alg.ec_width() {
        signature = raw_to_der(&signature, w)?;
    }
    let mut signed = Vec::new();
    let structure = Value::Array(vec![
        text("Signature1"),
        Value::Bytes(protected_raw.clone()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.clone()),
    ]);
    ciborium::ser::into_writer(&structure, &mut signed).map_err(|e| bad(&e.to_string()))?;
    Ok(Parsed {
        alg,
        signed,
        signature,
        payload: payload.clone(),
        chain,
        signing_time: time(label(&protected, &text("io.cncf.notary.signingTime")))?,
        expiry: time(label(&protected, &text("io.cncf.notary.expiry")))?,
    })
}

/// A raw ECDSA signature (R‖S, `w` bytes each) as DER, the form webpki verifies.
fn raw_to_der(raw: &[u8], w: usize) -> Result<Vec<u8>, String> {
    if raw.len() != 2 * w {
        return Err(format!("an ECDSA signature of {} bytes, not {}", raw.len(), 2 * w));
    }
    let int = |x: &[u8]| {
        let x = &x[x.iter().position(|b| *b != 0).unwrap_or(x.len() - 1)..];
        let mut out = vec![0x02];
        let pad = x[0] & 0x80 != 0;
        out.push((x.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(x);
        out
    };
    let (r, s) = (int(&raw[..w]), int(&raw[w..]));
    let mut der = vec![0x30, (r.len() + s.len()) as u8];
    der.extend(r);
    der.extend(s);
    Ok(der)
}

/// Does the key of the leaf certificate fit the algorithm (Notation requires RSA 2048 →
/// PS256, 3072 → PS384, 4096 → PS512, P-256 → ES256, P-384 → ES384)?
fn key_fits(leaf: &x509_parser::certificate::X509Certificate<'_>, alg: Alg) -> Result<(), String> {
    use x509_parser::public_key::PublicKey;
    let want = match leaf.public_key().parsed() {
        Ok(PublicKey::RSA(k)) => match k.key_size() {
            2048 => Alg::Ps256,
            3072 => Alg::Ps384,
            4096 => Alg::Ps512,
            n => return Err(format!("an RSA key of {n} bits (Notation takes 2048, 3072 or 4096)")),
        },
        Ok(PublicKey::EC(p)) => match p.key_size() {
            256 => Alg::Es256,
            384 => Alg::Es384,
            n => return Err(format!("an EC key of {n} bits (Notation takes P-256 or P-384)")),
        },
        _ => return Err("a key that is neither RSA nor EC".into()),
    };
    if want != alg {
        return Err(format!("the envelope says {alg:?} but the certificate's key signs with {want:?}"));
    }
    Ok(())
}

/// The leaf's subject as (key, value) pairs with the short names trust policies use.
fn subject_of(leaf: &x509_parser::certificate::X509Certificate<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rdn in leaf.subject().iter() {
        for a in rdn.iter() {
            let key = match a.attr_type().to_id_string().as_str() {
                "2.5.4.6" => "C",
                "2.5.4.8" => "ST",
                "2.5.4.7" => "L",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.3" => "CN",
                _ => continue,
            };
            if let Ok(v) = a.as_str() {
                out.push((key.to_owned(), v.to_owned()));
            }
        }
    }
    out
}

/// Verify a Notation signature of `subject` in repository `repo`. On success, who signed
/// (the certificate's subject) and what was only noted, not enforced, by the policy's level.
pub fn verify_notation(
    envelope: Envelope<'_>,
    subject: &Subject<'_>,
    repo: &str,
    doc: &TrustPolicyDoc,
    stores: &[TrustStore],
    now: i64,
) -> Result<String, String> {
    let policy = doc.for_repository(repo).ok_or_else(|| format!("no trust policy applies to repository {repo}"))?;
    let level = policy.signature_verification.level.as_str();
    if level == "skip" {
        return Ok(format!("not verified: trust policy {:?} skips verification", policy.name));
    }
    let p = match envelope {
        Envelope::Jws(b) => parse_jws(b)?,
        Envelope::Cose(b) => parse_cose(b)?,
    };
    // Integrity: the leaf's key made this signature over these bytes.
    let leaf_der = p.chain.first().ok_or("the envelope carries no certificate chain")?;
    let (_, leaf) =
        x509_parser::parse_x509_certificate(leaf_der).map_err(|e| format!("the signing certificate: {e}"))?;
    key_fits(&leaf, p.alg)?;
    let leaf_cert = CertificateDer::from(leaf_der.as_slice());
    let ee = EndEntityCert::try_from(&leaf_cert).map_err(|e| format!("the signing certificate: {e:?}"))?;
    ee.verify_signature(p.alg.webpki(), &p.signed, &p.signature).map_err(|_| {
        "the signature does not verify: the envelope was changed or not made by its certificate".to_owned()
    })?;
    // The payload names this artifact.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        target_artifact: Target,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Target {
        media_type: String,
        digest: String,
        size: i64,
    }
    let payload: Payload =
        serde_json::from_slice(&p.payload).map_err(|e| format!("the payload is not Notation's: {e}"))?;
    let t = &payload.target_artifact;
    if t.digest != subject.digest || t.size != subject.size || t.media_type != subject.media_type {
        return Err(format!("the signature is of another artifact ({} of {} bytes)", t.digest, t.size));
    }
    if let (Some(s), Some(e)) = (p.signing_time, p.expiry)
        && e <= s
    {
        return Err("the signature expires before it was made".into());
    }
    let mut noted = Vec::new();
    // Authenticity: a chain to one of the policy's roots, and a trusted identity.
    let authenticity = || -> Result<(), String> {
        let roots: Vec<CertificateDer<'static>> = stores
            .iter()
            .filter(|s| policy.trust_stores.iter().any(|t| t.strip_prefix("ca:") == Some(s.name.as_str())))
            .flat_map(|s| s.certs.iter().map(|c| CertificateDer::from(c.clone())))
            .collect();
        let anchors: Vec<_> = roots.iter().filter_map(|c| webpki::anchor_from_trusted_cert(c).ok()).collect();
        let intermediates: Vec<CertificateDer<'_>> =
            p.chain[1..].iter().map(|c| CertificateDer::from(c.as_slice())).collect();
        // strict: valid now; permissive: valid when it was signed.
        let at = if level == "strict" { now } else { p.signing_time.unwrap_or(now) };
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(u64::try_from(at).unwrap_or(0)));
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            KeyUsage::required_if_present(CODE_SIGNING),
            None,
            None,
        )
        .map_err(|e| {
            format!("the certificate chain does not lead to a trusted root of {:?} ({e:?})", policy.trust_stores)
        })?;
        if !policy.trusted_identities.iter().any(|i| i == "*") {
            let have = subject_of(&leaf);
            let trusted = policy.trusted_identities.iter().any(|id| {
                let want = parse_dn(id.trim_start_matches("x509.subject:")).unwrap_or_default();
                want.iter().all(|w| have.contains(w))
            });
            if !trusted {
                return Err(format!(
                    "the signer ({}) is not a trusted identity of policy {:?}",
                    leaf.subject(),
                    policy.name
                ));
            }
        }
        Ok(())
    };
    match (level, authenticity()) {
        (_, Ok(())) => {}
        ("audit", Err(e)) => noted.push(e),
        (_, Err(e)) => return Err(e),
    }
    // Expiry.
    if let Some(e) = p.expiry
        && e <= now
    {
        let msg = format!("the signature expired at {}", berth_time(e));
        if level == "strict" {
            return Err(msg);
        }
        noted.push(msg);
    }
    let who =
        subject_of(&leaf).into_iter().find(|(k, _)| k == "CN").map_or_else(|| leaf.subject().to_string(), |(_, v)| v);
    let mut out = format!("{who} (Notation, trust policy {:?}, {level})", policy.name);
    if !noted.is_empty() {
        out.push_str(&format!("; noted: {}", noted.join("; ")));
    }
    Ok(out)
}

fn berth_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map(|t| t.to_rfc3339()).unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real signature made by `notation` (Notary Project's notation-go test data,
    /// Apache-2.0: `testdata/notation/LICENSE`): PS256, a self-signed code-signing certificate
    /// (CN=alpine, O=Notary, L=Seattle, ST=WA, C=US), over the 481-byte manifest beside it.
    const ENVELOPE: &[u8] = include_bytes!("../testdata/notation/jws_signature.sig");
    const MANIFEST: &[u8] = include_bytes!("../testdata/notation/manifest.json");

    fn fixture() -> (TrustStore, Subject<'static>) {
        let env: serde_json::Value = serde_json::from_slice(ENVELOPE).unwrap();
        let leaf = env["header"]["x5c"][0].as_str().unwrap();
        let pem = format!("-----BEGIN CERTIFICATE-----\n{leaf}\n-----END CERTIFICATE-----\n");
        let store = TrustStore::from_pem("notary", &pem).unwrap();
        let subject = Subject {
            digest: "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0",
            size: MANIFEST.len() as i64,
            media_type: "application/vnd.oci.image.manifest.v1+json",
        };
        (store, subject)
    }

    fn policy(level: &str, identity: &str) -> String {
        format!(
            r#"{{"version": "1.0", "trustPolicies": [{{"name": "images", "registryScopes": ["*"],
                "signatureVerification": {{"level": "{level}"}}, "trustStores": ["ca:notary"],
                "trustedIdentities": ["{identity}"]}}]}}"#
        )
    }

    const NOW: i64 = 1_796_000_000; // December 2026

    #[test]
    fn a_real_notation_signature_verifies_under_strict() {
        let (store, subject) = fixture();
        assert_eq!(berth_types_digest(MANIFEST), subject.digest);
        let doc = TrustPolicyDoc::parse(
            &policy("strict", "x509.subject: C=US, ST=WA, O=Notary"),
            std::slice::from_ref(&store),
        )
        .unwrap();
        let who = verify_notation(Envelope::Jws(ENVELOPE), &subject, "team/app", &doc, &[store], NOW).unwrap();
        assert!(who.starts_with("alpine (Notation"), "{who}");
    }

    #[test]
    fn another_identity_another_artifact_or_a_changed_envelope_fail() {
        let (store, subject) = fixture();
        let stores = std::slice::from_ref(&store);
        let doc = TrustPolicyDoc::parse(&policy("strict", "x509.subject: C=US, ST=WA, O=Acme"), stores).unwrap();
        let e = verify_notation(Envelope::Jws(ENVELOPE), &subject, "team/app", &doc, stores, NOW).unwrap_err();
        assert!(e.contains("not a trusted identity"), "{e}");
        // audit: the identity is only noted.
        let doc = TrustPolicyDoc::parse(&policy("audit", "x509.subject: C=US, ST=WA, O=Acme"), stores).unwrap();
        let ok = verify_notation(Envelope::Jws(ENVELOPE), &subject, "team/app", &doc, stores, NOW).unwrap();
        assert!(ok.contains("noted: the signer"), "{ok}");
        let doc = TrustPolicyDoc::parse(&policy("strict", "*"), stores).unwrap();
        let other = Subject { size: 482, ..subject };
        let e = verify_notation(Envelope::Jws(ENVELOPE), &other, "team/app", &doc, stores, NOW).unwrap_err();
        assert!(e.contains("another artifact"), "{e}");
        let mut v: serde_json::Value = serde_json::from_slice(ENVELOPE).unwrap();
        let sig = v["signature"].as_str().unwrap().to_owned();
        v["signature"] = serde_json::Value::String(format!("A{}", &sig[1..]));
        let changed = serde_json::to_vec(&v).unwrap();
        let e = verify_notation(Envelope::Jws(&changed), &subject, "team/app", &doc, stores, NOW).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        // A root the policy does not trust.
        let other_store = TrustStore { name: "notary".into(), certs: vec![] };
        let e = verify_notation(Envelope::Jws(ENVELOPE), &subject, "team/app", &doc, &[other_store], NOW).unwrap_err();
        assert!(e.contains("trusted root"), "{e}");
    }

    #[test]
    fn trust_policies_are_checked_as_notation_checks_them() {
        let (store, _) = fixture();
        let stores = std::slice::from_ref(&store);
        for (doc, says) in [
            (r#"{"version": "2.0", "trustPolicies": []}"#.to_owned(), "version"),
            (policy("lenient", "*"), "level"),
            (policy("strict", "x509.subject: CN=alpine"), "must name C"),
            (policy("strict", "*").replace("ca:notary", "ca:nope"), "not defined"),
            (policy("strict", "*").replace("ca:notary", "notary"), "ca:<name>"),
        ] {
            let e = TrustPolicyDoc::parse(&doc, stores).unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        }
        let two = r#"{"version": "1.0", "trustPolicies": [
            {"name": "a", "registryScopes": ["team/app"], "signatureVerification": {"level": "skip"}},
            {"name": "b", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
             "trustStores": ["ca:notary"], "trustedIdentities": ["*"]}]}"#;
        let doc = TrustPolicyDoc::parse(two, stores).unwrap();
        assert_eq!(doc.for_repository("team/app").unwrap().name, "a");
        assert_eq!(doc.for_repository("berth.example/team/app").map(|p| p.name.as_str()), Some("b"));
        assert_eq!(doc.for_repository("team/other").unwrap().name, "b");
    }

    #[test]
    fn raw_ecdsa_signatures_become_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80;
        raw[63] = 1;
        let der = raw_to_der(&raw, 32).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert!(raw_to_der(&raw[..63], 32).is_err());
    }

    fn berth_types_digest(b: &[u8]) -> String {
        use ring::digest::{SHA256, digest};
        format!("sha256:{}", hex::encode(digest(&SHA256, b)))
    }
}
