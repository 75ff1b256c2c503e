//! OIDC login: the authorization code flow with PKCE (S256) against any OpenID provider.
//!
//! The provider is found through its discovery document; the ID token's signature is
//! checked against the provider's JWKS (refetched once when a key id is unknown, so the
//! provider can rotate), and `iss`, `aud`, `exp` and `nonce` are checked. Users are created on
//! first login, keyed by `issuer|sub`; their groups (from the configured claim) are stored at
//! every login and map to project membership through group members.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::RwLock;

use crate::AuthError;

/// OIDC settings.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL (discovery is at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// Client id registered at the provider.
    pub client_id: String,
    /// Client secret (sent with HTTP Basic to the token endpoint).
    pub client_secret: String,
    /// Berth's callback URL as registered at the provider (`…/c/oidc/callback`).
    pub redirect_url: String,
    /// Scopes to ask for.
    pub scope: String,
    /// The ID-token claim holding group names.
    pub groups_claim: String,
    /// The claim used as the username of new users.
    pub username_claim: String,
    /// Members of this group are system administrators.
    pub admin_group: Option<String>,
    /// Create first-time users under the username claim without asking (Harbor's
    /// `oidc_auto_onboard`); otherwise, or when that name is taken or not a valid username,
    /// they choose one on the onboarding page.
    pub auto_onboard: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// What a verified ID token says about the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `issuer|sub`: the stable key of the user.
    pub subject: String,
    /// Proposed username.
    pub username: String,
    /// E-mail, if given.
    pub email: String,
    /// Display name, if given.
    pub name: String,
    /// Groups from the groups claim.
    pub groups: Vec<String>,
}

/// The OIDC relying party.
pub struct OidcClient {
    cfg: OidcConfig,
    http: reqwest::Client,
    discovery: RwLock<Option<Arc<Discovery>>>,
    jwks: RwLock<Option<(Value, Instant)>>,
}

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Form-urlencode one value (RFC 3986 unreserved characters stay as they are).
pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// A fresh PKCE verifier and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    let verifier = crate::token::b64url(&rand::random::<[u8; 32]>());
    let challenge = crate::token::b64url(&Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn fail(m: impl std::fmt::Display) -> AuthError {
    AuthError::Oidc(m.to_string())
}

impl OidcClient {
    /// A client for `cfg`; nothing is fetched until the first login.
    pub fn new(cfg: OidcConfig) -> OidcClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        OidcClient { cfg, http, discovery: RwLock::new(None), jwks: RwLock::new(None) }
    }

    /// The settings.
    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    async fn discovery(&self) -> Result<Arc<Discovery>, AuthError> {
        if let Some(d) = self.discovery.read().await.as_ref() {
            return Ok(d.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.cfg.issuer.trim_end_matches('/'));
        let d: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| fail(format!("fetching {url}: {e}")))?
            .json()
            .await
            .map_err(|e| fail(format!("reading {url}: {e}")))?;
        if d.issuer.trim_end_matches('/') != self.cfg.issuer.trim_end_matches('/') {
            return Err(fail(format!("the provider says its issuer is {:?}, not {:?}", d.issuer, self.cfg.issuer)));
        }
        let d = Arc::new(d);
        *self.discovery.write().await = Some(d.clone());
        Ok(d)
    }

    /// The provider's authorization URL for a login with this state, nonce and PKCE challenge.
    pub async fn authorize_url(&self, state: &str, nonce: &str, challenge: &str) -> Result<String, AuthError> {
        let d = self.discovery().await?;
        let sep = if d.authorization_endpoint.contains('?') { '&' } else { '?' };
        Ok(format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
            d.authorization_endpoint,
            urlencode(&self.cfg.client_id),
            urlencode(&self.cfg.redirect_url),
            urlencode(&self.cfg.scope),
            urlencode(state),
            urlencode(nonce),
            urlencode(challenge),
        ))
    }

    async fn jwks(&self, refresh: bool) -> Result<Value, AuthError> {
        if !refresh && let Some((j, _)) = self.jwks.read().await.as_ref() {
            return Ok(j.clone());
        }
        if refresh
            && let Some((j, at)) = self.jwks.read().await.as_ref()
            && at.elapsed() < Duration::from_secs(10)
        {
            return Ok(j.clone());
        }
        let d = self.discovery().await?;
        let j: Value = self
            .http
            .get(&d.jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| fail(format!("fetching the provider's keys: {e}")))?
            .json()
            .await
            .map_err(|e| fail(format!("reading the provider's keys: {e}")))?;
        *self.jwks.write().await = Some((j.clone(), Instant::now()));
        Ok(j)
    }

    /// Exchange an authorization code (with its PKCE verifier) and verify the ID token.
    pub async fn exchange(&self, code: &str, verifier: &str, nonce: &str) -> Result<Identity, AuthError> {
        let d = self.discovery().await?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            urlencode(&self.cfg.client_id),
            urlencode(&self.cfg.client_secret)
        ));
        let body = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}&client_id={}",
            urlencode(code),
            urlencode(&self.cfg.redirect_url),
            urlencode(verifier),
            urlencode(&self.cfg.client_id)
        );
        let resp = self
            .http
            .post(&d.token_endpoint)
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| fail(format!("calling the token endpoint: {e}")))?;
        let status = resp.status();
        let tokens: Value = resp.json().await.map_err(|e| fail(format!("reading the token response: {e}")))?;
        if !status.is_success() {
            return Err(fail(format!(
                "the provider refused the code: {} {}",
                tokens["error"].as_str().unwrap_or("error"),
                tokens["error_description"].as_str().unwrap_or("")
            )));
        }
        let id_token = tokens["id_token"].as_str().ok_or_else(|| fail("the token response has no id_token"))?;
        let claims = self.verify_id_token(id_token).await?;
        if claims["nonce"].as_str() != Some(nonce) {
            return Err(fail("the ID token's nonce does not match this login"));
        }
        self.identity(&claims)
    }

    async fn verify_id_token(&self, token: &str) -> Result<Value, AuthError> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
        let header = jsonwebtoken::decode_header(token).map_err(|e| fail(format!("malformed ID token: {e}")))?;
        if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(fail("ID tokens signed with a shared secret (HS*) are not accepted"));
        }
        let mut key = None;
        for refresh in [false, true] {
            let set: JwkSet = serde_json::from_value(self.jwks(refresh).await?)
                .map_err(|e| fail(format!("the provider's JWKS is malformed: {e}")))?;
            let found = match &header.kid {
                Some(kid) => set.find(kid).cloned(),
                None => set.keys.first().cloned(),
            };
            if let Some(k) = found {
                key = Some(k);
                break;
            }
        }
        let jwk = key.ok_or_else(|| fail("the ID token is signed with a key the provider does not publish"))?;
        let dk = DecodingKey::from_jwk(&jwk).map_err(|e| fail(format!("unusable provider key: {e}")))?;
        let mut v = Validation::new(header.alg);
        v.set_audience(&[&self.cfg.client_id]);
        v.set_issuer(&[self.cfg.issuer.trim_end_matches('/'), &format!("{}/", self.cfg.issuer.trim_end_matches('/'))]);
        v.leeway = 30;
        let data = jsonwebtoken::decode::<Value>(token, &dk, &v)
            .map_err(|e| fail(format!("the ID token does not verify: {e}")))?;
        Ok(data.claims)
    }

    fn identity(&self, c: &Value) -> Result<Identity, AuthError> {
        let sub = c["sub"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| fail("the ID token has no sub"))?;
        let iss = c["iss"].as_str().unwrap_or(&self.cfg.issuer);
        let email = c["email"].as_str().unwrap_or("").to_owned();
        let username = c[self.cfg.username_claim.as_str()]
            .as_str()
            .or_else(|| c["preferred_username"].as_str())
            .or_else(|| email.split('@').next().filter(|s| !s.is_empty()))
            .unwrap_or(sub)
            .to_owned();
        let groups = match &c[self.cfg.groups_claim.as_str()] {
            Value::Array(a) => a.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            subject: format!("{iss}|{sub}"),
            username,
            email,
            name: c["name"].as_str().unwrap_or("").to_owned(),
            groups,
        })
    }
}

/// What signing in with an OIDC identity came to.
#[derive(Debug)]
pub enum OidcLogin {
    /// A known (or automatically onboarded) user.
    User(crate::Principal),
    /// A first-time user who must choose a username; `why` says why it was not automatic.
    Onboard {
        /// The verified identity.
        identity: Identity,
        /// Why the proposed username cannot be used as it is, if that is the reason.
        why: Option<String>,
    },
}

impl crate::Auth {
    /// Sign in the user an OIDC identity names: a known subject signs in (its groups and,
    /// with an admin group configured, its administrator right refreshed); a new one is
    /// onboarded under the username claim when `auto_onboard` is set and the name is valid
    /// and free, else it must choose a username ([`OidcLogin::Onboard`]).
    pub async fn oidc_login(&self, id: &Identity) -> Result<OidcLogin, AuthError> {
        let now = crate::now_ms();
        let admin = self.oidc_admin(id);
        let admin_group_set = self.oidc().is_some_and(|o| o.config().admin_group.is_some());
        if let Some(u) = self.store.user_by_oidc_subject(&id.subject).await? {
            let origin = berth_meta::Origin::new(&u.username, None);
            if u.groups != id.groups {
                self.store.set_user_groups(u.id, &id.groups, now, &origin).await?;
            }
            // With an admin group configured, membership decides at every login.
            if admin_group_set && admin != u.sysadmin {
                self.store.set_sysadmin(u.id, admin, now, &origin).await?;
            }
            self.invalidate();
            let p = self.principal_by_name(&u.username).await?.ok_or_else(|| fail("the user vanished"))?;
            return Ok(OidcLogin::User(p));
        }
        let why = self.username_problem(&id.username).await?;
        if why.is_none() && self.oidc().is_some_and(|o| o.config().auto_onboard) {
            return Ok(OidcLogin::User(self.oidc_onboard(id, &id.username).await?));
        }
        Ok(OidcLogin::Onboard { identity: id.clone(), why })
    }

    fn oidc_admin(&self, id: &Identity) -> bool {
        self.oidc().and_then(|o| o.config().admin_group.as_deref()).is_some_and(|g| id.groups.iter().any(|x| x == g))
    }

    /// Why `name` cannot be a new user's name, if it cannot.
    pub async fn username_problem(&self, name: &str) -> Result<Option<String>, AuthError> {
        if !crate::valid_username(name) {
            return Ok(Some(format!(
                "\u{201c}{name}\u{201d} cannot be a Berth username: 1 to 255 characters, not starting with robot$, none of , \" ~ # % $ : / or spaces"
            )));
        }
        if self.store.user_by_name(name).await?.is_some() {
            return Ok(Some(format!("the username \u{201c}{name}\u{201d} is taken")));
        }
        Ok(None)
    }

    /// Create the user of a verified OIDC identity under the username `name` (which must be
    /// valid and free; a subject onboards once); returns the principal.
    pub async fn oidc_onboard(&self, id: &Identity, name: &str) -> Result<crate::Principal, AuthError> {
        if self.store.user_by_oidc_subject(&id.subject).await?.is_some() {
            return Err(fail("this identity already has a Berth account; sign in again"));
        }
        if let Some(why) = self.username_problem(name).await? {
            return Err(fail(why));
        }
        let nu = berth_meta::NewUser {
            username: name.to_owned(),
            email: id.email.clone(),
            realname: id.name.clone(),
            comment: "onboarded through OIDC".into(),
            password_hash: None,
            sysadmin: self.oidc_admin(id),
            oidc_subject: Some(id.subject.clone()),
            groups: id.groups.clone(),
        };
        self.store.create_user(&nu, crate::now_ms(), &berth_meta::Origin::new(name, None)).await?;
        self.invalidate();
        self.principal_by_name(name).await?.ok_or_else(|| fail("the new user vanished"))
    }
}
