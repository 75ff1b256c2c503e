//! Workload identity federation: a robot account that trusts an OIDC issuer (GitHub Actions,
//! GitLab CI, a Kubernetes cluster's service-account issuer) accepts that issuer's ID tokens
//! as its password, so a CI job logs in with the token its platform gives it and keeps no
//! stored secret. A token is accepted when one of the robot's trust rules matches it: the
//! same issuer, the rule's audience among the token's, a subject and other claims matching
//! the rule's `*` patterns, a signature by a key the issuer publishes (OIDC discovery, or the
//! rule's `jwks_url`), not expired, and issued at most [`MAX_AGE`] ago (a token copied out of
//! an old job's log does not open the registry for the rest of its life).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use berth_policy::{PatternOptions, PatternSet, Syntax};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::RwLock;

/// Oldest token accepted, by its `iat`.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// How long an issuer's keys are used before they are fetched again.
const KEYS_TTL: Duration = Duration::from_secs(300);

/// A robot's trust rules (any one may match).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// The rules.
    pub rules: Vec<TrustRule>,
}

/// Which tokens of one issuer a robot accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRule {
    /// The `iss` (an `https://` URL; `http://` only for loopback addresses).
    pub issuer: String,
    /// A value the token's `aud` must hold.
    pub audience: String,
    /// The `sub`, a `*` pattern (e.g. `repo:org/app:ref:refs/heads/main`).
    pub subject: String,
    /// Other claims, each a `*` pattern its string value must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// Where the issuer's keys are, when it does not publish OIDC discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
}

fn is_loopback(url: &str) -> bool {
    let authority = url.split("://").nth(1).unwrap_or("").split('/').next().unwrap_or("");
    authority.starts_with("[::1]")
        || matches!(authority.rsplit_once(':').map_or(authority, |(h, _)| h), "localhost")
        || authority.starts_with("127.")
}

fn check_url(what: &str, url: &str) -> Result<(), String> {
    if url.starts_with("https://") || (url.starts_with("http://") && is_loopback(url)) {
        Ok(())
    } else {
        Err(format!("{what} {url:?} must be an https:// URL (http:// only on this machine's loopback)"))
    }
}

impl Federation {
    /// Check the rules; the message names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.len() > 20 {
            return Err(format!("at most 20 trust rules, not {}", self.rules.len()));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let n = i + 1;
            check_url(&format!("rule {n}: issuer"), &r.issuer)?;
            if let Some(u) = &r.jwks_url {
                check_url(&format!("rule {n}: jwks_url"), u)?;
            }
            if r.audience.trim().is_empty() {
                return Err(format!("rule {n}: audience must not be empty"));
            }
            if r.subject.trim().is_empty() || r.subject.trim() == "*" {
                return Err(format!(
                    "rule {n}: subject must name the workloads (e.g. repo:org/app:ref:refs/heads/main), not everything"
                ));
            }
            for p in std::iter::once(&r.subject).chain(r.claims.values()) {
                PatternSet::new([p.as_str()], Syntax::Wildcard, PatternOptions::default())
                    .map_err(|e| format!("rule {n}: pattern {p:?}: {e}"))?;
            }
        }
        Ok(())
    }
}

fn matches(pattern: &str, value: &str) -> bool {
    PatternSet::new([pattern], Syntax::Wildcard, PatternOptions::default()).is_ok_and(|p| p.matches(value))
}

/// Verifies identity tokens, caching issuers' keys.
pub struct Verifier {
    /// Made on first use (building it loads the system's CA certificates).
    http: std::sync::LazyLock<reqwest::Client, fn() -> reqwest::Client>,
    keys: RwLock<HashMap<String, (JwkSet, Instant)>>,
}

impl Default for Verifier {
    fn default() -> Self {
        fn http() -> reqwest::Client {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        }
        Verifier { http: std::sync::LazyLock::new(http), keys: RwLock::new(HashMap::new()) }
    }
}

impl Verifier {
    /// The claims of `token` if one of `fed`'s rules accepts it at `now` (Unix s); else why not.
    pub async fn verify(&self, fed: &Federation, token: &str, now: i64) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err("tokens signed with a shared secret (HS*) are not accepted".into());
        }
        // The issuer, read before verifying, only chooses the rules and keys to verify with.
        let unverified: Value = {
            use base64::Engine;
            let payload = token.split('.').nth(1).unwrap_or("");
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload.trim_end_matches('='))
                .map_err(|e| format!("unreadable claims: {e}"))?;
            serde_json::from_slice(&bytes).map_err(|e| format!("unreadable claims: {e}"))?
        };
        let iss = unverified["iss"].as_str().unwrap_or("").trim_end_matches('/');
        let rules: Vec<&TrustRule> = fed.rules.iter().filter(|r| r.issuer.trim_end_matches('/') == iss).collect();
        if rules.is_empty() {
            return Err(format!("issuer {iss:?} is not trusted by this robot"));
        }
        let mut why = String::new();
        for rule in rules {
            match self.verify_with(rule, &header, token, now).await {
                Ok(claims) => return Ok(claims),
                Err(e) => why = e,
            }
        }
        Err(why)
    }

    async fn verify_with(
        &self,
        rule: &TrustRule,
        header: &jsonwebtoken::Header,
        token: &str,
        now: i64,
    ) -> Result<Value, String> {
        let mut key = None;
        for refresh in [false, true] {
            let set = self.keys_of(rule, refresh).await?;
            let found = match &header.kid {
                Some(kid) => set.find(kid).cloned(),
                None => set.keys.first().cloned(),
            };
            if found.is_some() {
                key = found;
                break;
            }
        }
        let jwk = key.ok_or("the token is signed with a key its issuer does not publish")?;
        let dk = DecodingKey::from_jwk(&jwk).map_err(|e| format!("the issuer's key is unusable: {e}"))?;
        let mut v = Validation::new(header.alg);
        v.set_audience(&[&rule.audience]);
        let iss = rule.issuer.trim_end_matches('/');
        v.set_issuer(&[iss, &format!("{iss}/")]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        let claims = jsonwebtoken::decode::<Value>(token, &dk, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    format!("the token is not for audience {:?}", rule.audience)
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
                _ => format!("the token does not verify: {e}"),
            })?
            .claims;
        match claims["iat"].as_i64() {
            Some(iat) if now - iat > MAX_AGE.as_secs() as i64 => {
                return Err(format!(
                    "the token was issued {} minutes ago; tokens older than {} minutes are refused",
                    (now - iat) / 60,
                    MAX_AGE.as_secs() / 60
                ));
            }
            Some(_) => {}
            None => return Err("the token has no iat (issued-at) claim".into()),
        }
        let sub = claims["sub"].as_str().unwrap_or("");
        if !matches(&rule.subject, sub) {
            return Err(format!("subject {sub:?} does not match {:?}", rule.subject));
        }
        for (k, pattern) in &rule.claims {
            let value = match &claims[k.as_str()] {
                Value::String(s) => s.clone(),
                Value::Null => return Err(format!("the token has no {k:?} claim")),
                other => other.to_string(),
            };
            if !matches(pattern, &value) {
                return Err(format!("claim {k} {value:?} does not match {pattern:?}"));
            }
        }
        Ok(claims)
    }

    /// The issuer's keys (cached for [`KEYS_TTL`]; `refresh` fetches them again unless that
    /// happened in the last 10 s: an unknown `kid` after a key rotation).
    async fn keys_of(&self, rule: &TrustRule, refresh: bool) -> Result<JwkSet, String> {
        let cache_key = rule.jwks_url.clone().unwrap_or_else(|| rule.issuer.clone());
        if let Some((set, at)) = self.keys.read().await.get(&cache_key) {
            let fresh = at.elapsed() < if refresh { Duration::from_secs(10) } else { KEYS_TTL };
            if fresh {
                return Ok(set.clone());
            }
        }
        let url = match &rule.jwks_url {
            Some(u) => u.clone(),
            None => {
                let d = format!("{}/.well-known/openid-configuration", rule.issuer.trim_end_matches('/'));
                let doc: Value = self.get_json(&d).await?;
                let u = doc["jwks_uri"].as_str().ok_or_else(|| format!("{d} names no jwks_uri"))?;
                check_url("jwks_uri", u)?;
                u.to_owned()
            }
        };
        let set: JwkSet =
            serde_json::from_value(self.get_json(&url).await?).map_err(|e| format!("{url} is not a JWKS: {e}"))?;
        let mut keys = self.keys.write().await;
        if keys.len() > 256 {
            keys.clear();
        }
        keys.insert(cache_key, (set.clone(), Instant::now()));
        Ok(set)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let r = self.http.get(url).send().await.map_err(|e| format!("fetching {url}: {e}"))?;
        let r = r.error_for_status().map_err(|e| format!("fetching {url}: {e}"))?;
        let bytes = r.bytes().await.map_err(|e| format!("reading {url}: {e}"))?;
        if bytes.len() > 1 << 20 {
            return Err(format!("{url} is over 1 MiB"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{url} is not JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> TrustRule {
        TrustRule {
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: "berth".into(),
            subject: "repo:org/app:*".into(),
            claims: BTreeMap::from([("repository_owner".into(), "org".into())]),
            jwks_url: None,
        }
    }

    #[test]
    fn rules_are_checked() {
        assert_eq!(Federation { rules: vec![rule()] }.validate(), Ok(()));
        let mut r = rule();
        r.issuer = "http://example.org".into();
        assert!(Federation { rules: vec![r] }.validate().unwrap_err().contains("https://"));
        let mut r = rule();
        r.issuer = "http://127.0.0.1:8080".into();
        assert_eq!(Federation { rules: vec![r] }.validate(), Ok(()));
        let mut r = rule();
        r.subject = "*".into();
        assert!(Federation { rules: vec![r] }.validate().unwrap_err().contains("not everything"));
        let mut r = rule();
        r.audience = " ".into();
        assert!(Federation { rules: vec![r] }.validate().unwrap_err().contains("audience"));
        assert!(matches("repo:org/app:*", "repo:org/app:ref:refs/heads/main"));
        assert!(!matches("repo:org/app:*", "repo:org/other:ref:refs/heads/main"));
    }
}
