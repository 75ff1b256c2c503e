//! Signed tokens: the Docker registry token specification's JWTs (access tokens with an
//! `access` claim), refresh tokens, web sessions and OIDC login state, all signed with the
//! registry's own Ed25519 keys.
//!
//! Every token carries `typ` (what it is for) and `aud` (the service name), and verification
//! checks both, so a refresh token is never accepted as an access token, nor a token minted
//! for another service. Keys live in the metadata database; the newest signs, older ones keep
//! verifying until they are pruned (see `AccessStore::rotate_signing_key`).

use std::sync::RwLock;

use base64::Engine;
use berth_meta::SigningKeyRecord;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// One `access` entry of a token: a resource and the actions granted on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A repository name, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// A requested scope, `type:name:actions` (e.g. `repository:proj/app:pull,push`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository` (a `repository(plugin)` class suffix is dropped) or `registry`.
    pub kind: String,
    /// The resource name.
    pub name: String,
    /// The actions asked for.
    pub actions: Vec<String>,
}

impl Scope {
    /// Parse one scope; `None` when it is not of the form `type:name:actions`.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let actions = actions.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect();
        Some(Scope { kind: kind.to_owned(), name: name.to_owned(), actions })
    }

    /// Every scope in a list of `scope` values, each of which may hold several separated by spaces.
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
        values.into_iter().flat_map(|v| v.split(' ')).filter(|s| !s.is_empty()).filter_map(Scope::parse).collect()
    }
}

/// What a token is for.
pub mod typ {
    /// A registry access token.
    pub const ACCESS: &str = "access";
    /// A refresh (offline) token.
    pub const REFRESH: &str = "refresh";
    /// A web session.
    pub const SESSION: &str = "session";
    /// The state of an OIDC login in flight.
    pub const OIDC_STATE: &str = "oidc-state";
    /// A verified OIDC identity waiting for its user to choose a username (onboarding).
    pub const OIDC_ONBOARD: &str = "oidc-onboard";
    /// The password ECR's `GetAuthorizationToken` hands out (user `AWS`).
    pub const ECR_LOGIN: &str = "ecr-login";
}

/// The claims of every Berth token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: a username, a robot name, or empty for anonymous.
    pub sub: String,
    /// Audience: the service name.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Unique id.
    pub jti: String,
    /// What the token is for (see [`typ`]).
    pub typ: String,
    /// Principal kind: `user`, `robot`, `anonymous`.
    #[serde(default)]
    pub kind: String,
    /// Granted access (access tokens only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessEntry>,
    /// Free-form data (OIDC state, nonce and PKCE verifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Expired.
    #[error("the token has expired")]
    Expired,
    /// Bad signature, unknown key, wrong audience, issuer or type, or not a JWT at all.
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The signing keys, newest first.
pub struct KeyRing {
    keys: RwLock<Vec<Key>>,
    issuer: String,
}

/// Make a new Ed25519 key record (PKCS#8), with its id derived from the public key.
pub fn new_signing_key(now_ms: i64) -> SigningKeyRecord {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key ring just made parses");
    let kid = hex::encode(&sha2::Sha256::digest(pair.public_key().as_ref())[..12]);
    SigningKeyRecord { kid, private_key: pkcs8.as_ref().to_vec(), created_at: now_ms, retired_at: None }
}

fn load(rec: &SigningKeyRecord) -> Result<Key, TokenError> {
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&rec.private_key)
        .map_err(|e| TokenError::Invalid(format!("stored signing key {} is unreadable: {e}", rec.kid)))?;
    Ok(Key {
        kid: rec.kid.clone(),
        encoding: EncodingKey::from_ed_der(&rec.private_key),
        decoding: DecodingKey::from_ed_der(pair.public_key().as_ref()),
    })
}

impl KeyRing {
    /// A key ring over stored keys (newest first).
    pub fn new(records: &[SigningKeyRecord], issuer: &str) -> Result<KeyRing, TokenError> {
        let keys = records.iter().map(load).collect::<Result<Vec<_>, _>>()?;
        Ok(KeyRing { keys: RwLock::new(keys), issuer: issuer.to_owned() })
    }

    /// Replace the keys (after a rotation, or to learn a key another replica made).
    pub fn reload(&self, records: &[SigningKeyRecord]) -> Result<(), TokenError> {
        let keys = records.iter().map(load).collect::<Result<Vec<_>, _>>()?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// Does the ring hold a key with this id?
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).iter().any(|k| k.kid == kid)
    }

    /// The issuer name tokens carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Sign claims with the newest key.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys.first().ok_or_else(|| TokenError::Invalid("no signing key".into()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// The key id a token names, without verifying anything.
    pub fn kid_of(token: &str) -> Option<String> {
        jsonwebtoken::decode_header(token).ok()?.kid
    }

    /// Verify signature, expiry, issuer, audience and type; return the claims.
    pub fn verify(&self, token: &str, audience: &str, want_typ: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| TokenError::Invalid("no key id".into()))?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key =
            keys.iter().find(|k| k.kid == kid).ok_or_else(|| TokenError::Invalid("unknown signing key".into()))?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[audience]);
        v.set_issuer(&[&self.issuer]);
        v.leeway = 5;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            other => TokenError::Invalid(format!("{other:?}")),
        })?;
        if data.claims.typ != want_typ {
            return Err(TokenError::Invalid(format!("a {} token cannot be used here", data.claims.typ)));
        }
        Ok(data.claims)
    }
}

/// URL-safe base64 without padding (PKCE, state values).
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(typ_: &str, exp: i64) -> Claims {
        Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: "svc".into(),
            exp,
            nbf: 0,
            iat: 0,
            jti: "1".into(),
            typ: typ_.into(),
            kind: "user".into(),
            access: vec![AccessEntry { kind: "repository".into(), name: "p/a".into(), actions: vec!["pull".into()] }],
            data: None,
        }
    }

    #[test]
    fn scopes_parse_like_docker_sends_them() {
        let s = Scope::parse("repository:proj/app:pull,push").unwrap();
        assert_eq!((s.kind.as_str(), s.name.as_str()), ("repository", "proj/app"));
        assert_eq!(s.actions, vec!["pull", "push"]);
        assert_eq!(Scope::parse("repository(plugin):x:pull").unwrap().kind, "repository");
        assert_eq!(Scope::parse("registry:catalog:*").unwrap().actions, vec!["*"]);
        assert!(Scope::parse("nonsense").is_none());
        let all = Scope::parse_all(["repository:a/b:pull repository:c/d:push", "repository:e:pull"]);
        assert_eq!(all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["a/b", "c/d", "e"]);
    }

    #[test]
    fn sign_verify_and_refuse() {
        let k = new_signing_key(0);
        let ring = KeyRing::new(std::slice::from_ref(&k), "berth").unwrap();
        let far = 4_000_000_000;
        let t = ring.sign(&claims(typ::ACCESS, far)).unwrap();
        assert_eq!(ring.verify(&t, "svc", typ::ACCESS).unwrap().sub, "alice");
        assert!(matches!(ring.verify(&t, "other", typ::ACCESS), Err(TokenError::Invalid(_))));
        assert!(matches!(ring.verify(&t, "svc", typ::REFRESH), Err(TokenError::Invalid(_))));
        let expired = ring.sign(&claims(typ::ACCESS, 1000)).unwrap();
        assert_eq!(ring.verify(&expired, "svc", typ::ACCESS), Err(TokenError::Expired));
        // Tampered payload: same header and signature, another body.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut c = claims(typ::ACCESS, far);
        c.access[0].name = "p/other".into();
        parts[1] = b64url(serde_json::to_string(&c).unwrap().as_bytes());
        assert!(ring.verify(&parts.join("."), "svc", typ::ACCESS).is_err());
        // Another key ring (another registry) cannot vouch.
        let other = KeyRing::new(&[new_signing_key(0)], "berth").unwrap();
        assert!(other.verify(&t, "svc", typ::ACCESS).is_err());
        // alg=none is refused.
        let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert!(ring.verify(&none, "svc", typ::ACCESS).is_err());
    }
}
