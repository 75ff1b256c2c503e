//! Registry endpoints (Harbor's `/registries`): other registries Berth pulls from (proxy
//! caches) and replicates with. Their passwords are sealed (`berth_auth::seal::Sealer`) under
//! a key outside the database, bound to the endpoint's URL — a password cannot be sent to
//! another URL by editing the database, and changing the URL through Berth re-seals it.
//! Clients are built once per endpoint version and shared (their token caches with them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_auth::seal::Sealer;
use berth_client::{Client, ClientError, Endpoint};
use berth_meta::{CacheRule, EventKind, MetaError, MetaStore, NewEvent, Origin, UpstreamRecord};

use crate::now_ms;

/// The registry types Berth knows (Harbor's adapter names), and what each is.
pub const KINDS: &[(&str, &str)] = &[
    ("docker-hub", "Docker Hub"),
    ("docker-registry", "Docker Registry (CNCF Distribution)"),
    ("harbor", "Harbor"),
    ("quay", "Quay"),
    ("github-ghcr", "GitHub Container Registry"),
    ("oci", "Any OCI Distribution registry"),
];

/// Why an endpoint request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A field is wrong (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// No such endpoint.
    #[error("registry {0} not found")]
    NotFound(i64),
    /// A proxy cache uses it.
    #[error("{0}")]
    InUse(String),
    /// The name is taken.
    #[error("a registry named {0:?} already exists")]
    Conflict(String),
    /// The stored secret cannot be opened (another key, or tampering).
    #[error("the stored credential of registry {0} cannot be opened: {1}")]
    Sealed(String, berth_auth::seal::SealError),
    /// Talking to the registry failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// What a user gives for an endpoint (create or change).
#[derive(Debug, Clone, Default)]
pub struct EndpointSpec {
    /// Name (unique).
    pub name: String,
    /// One of [`KINDS`].
    pub kind: String,
    /// URL.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Skip TLS verification.
    pub insecure: bool,
    /// Username or access key (empty: anonymous).
    pub access_key: String,
    /// The password: `None` keeps the stored one (on a change) or means none.
    pub secret: Option<String>,
    /// A CA certificate (PEM).
    pub ca_pem: Option<String>,
}

/// The endpoint service.
pub struct Upstreams {
    meta: Arc<dyn MetaStore>,
    sealer: Arc<Sealer>,
    clients: Mutex<HashMap<i64, (String, Arc<Client>)>>,
    rules: Mutex<Option<(std::time::Instant, Arc<Vec<CacheRule>>)>>,
}

fn event(op: &str, id: i64, name: &str, origin: &Origin) -> NewEvent {
    NewEvent::new(EventKind::RegistryChanged, now_ms(), origin)
        .data(serde_json::json!({"op": op, "id": id, "name": name}))
}

/// A CA certificate as the client takes it (an empty field is none).
fn ca_bytes(pem: &Option<String>) -> Option<Vec<u8>> {
    pem.as_ref().filter(|p| !p.trim().is_empty()).map(|p| p.as_bytes().to_vec())
}

fn context(url: &str) -> String {
    format!("upstream:{}", url.trim_end_matches('/'))
}

impl Upstreams {
    /// The service over the store, sealing with `sealer`.
    pub fn new(meta: Arc<dyn MetaStore>, sealer: Arc<Sealer>) -> Upstreams {
        Upstreams { meta, sealer, clients: Mutex::new(HashMap::new()), rules: Mutex::new(None) }
    }

    fn check(spec: &EndpointSpec, named: bool) -> Result<(), UpstreamError> {
        let name = spec.name.trim();
        if named && (name.is_empty() || name.len() > 255 || name.chars().any(char::is_control)) {
            return Err(UpstreamError::Invalid("name: 1 to 255 characters".into()));
        }
        if !KINDS.iter().any(|(k, _)| *k == spec.kind) {
            let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
            return Err(UpstreamError::Invalid(format!("type {:?}: use one of {}", spec.kind, known.join(", "))));
        }
        if spec.url.len() > 2048 || spec.description.len() > 4096 || spec.access_key.len() > 1024 {
            return Err(UpstreamError::Invalid("url, description or access key too long".into()));
        }
        if spec.secret.as_ref().is_some_and(|s| s.len() > 8192) {
            return Err(UpstreamError::Invalid("access secret too long".into()));
        }
        // The client checks the URL and the CA the same way it will use them.
        Client::new(&Endpoint {
            url: spec.url.clone(),
            credentials: None,
            ca_pem: ca_bytes(&spec.ca_pem),
            insecure: spec.insecure,
        })
        .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// Every endpoint, by name.
    pub async fn list(&self) -> Result<Vec<UpstreamRecord>, UpstreamError> {
        Ok(self.meta.upstreams().await?)
    }

    /// One endpoint.
    pub async fn get(&self, id: i64) -> Result<UpstreamRecord, UpstreamError> {
        self.meta.upstream(id).await?.ok_or(UpstreamError::NotFound(id))
    }

    /// Create an endpoint; its id.
    pub async fn create(&self, spec: &EndpointSpec, origin: &Origin) -> Result<i64, UpstreamError> {
        Self::check(spec, true)?;
        let now = now_ms();
        let url = spec.url.trim().trim_end_matches('/').to_owned();
        let rec = UpstreamRecord {
            id: 0,
            name: spec.name.trim().to_owned(),
            kind: spec.kind.clone(),
            url: url.clone(),
            description: spec.description.clone(),
            insecure: spec.insecure,
            access_key: spec.access_key.clone(),
            secret: spec.secret.as_deref().filter(|s| !s.is_empty()).map(|s| self.sealer.seal(s, &context(&url))),
            ca_pem: spec.ca_pem.clone().filter(|p| !p.trim().is_empty()),
            status: "unknown".into(),
            checked_at: None,
            created_at: now,
            updated_at: now,
        };
        let e = event("create", 0, &rec.name, origin);
        self.meta.create_upstream(&rec, &e).await?.ok_or_else(|| UpstreamError::Conflict(rec.name.clone()))
    }

    /// Change an endpoint (a `None` secret keeps the stored one, re-sealed for a new URL).
    pub async fn update(&self, id: i64, spec: &EndpointSpec, origin: &Origin) -> Result<(), UpstreamError> {
        Self::check(spec, true)?;
        let old = self.get(id).await?;
        let url = spec.url.trim().trim_end_matches('/').to_owned();
        let secret = match &spec.secret {
            Some(s) if s.is_empty() => None,
            Some(s) => Some(self.sealer.seal(s, &context(&url))),
            None => match &old.secret {
                Some(sealed) => {
                    let plain = self
                        .sealer
                        .open(sealed, &context(&old.url))
                        .map_err(|e| UpstreamError::Sealed(old.name.clone(), e))?;
                    Some(self.sealer.seal(&plain, &context(&url)))
                }
                None => None,
            },
        };
        let rec = UpstreamRecord {
            name: spec.name.trim().to_owned(),
            kind: spec.kind.clone(),
            url,
            description: spec.description.clone(),
            insecure: spec.insecure,
            access_key: spec.access_key.clone(),
            secret,
            ca_pem: spec.ca_pem.clone().filter(|p| !p.trim().is_empty()),
            status: "unknown".into(),
            checked_at: None,
            updated_at: now_ms().max(old.updated_at + 1),
            ..old
        };
        match self.meta.update_upstream(&rec, &event("update", id, &rec.name, origin)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(UpstreamError::NotFound(id)),
            Err(MetaError::Conflict(_)) => Err(UpstreamError::Conflict(rec.name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Delete an endpoint; false if it was not there.
    pub async fn delete(&self, id: i64, origin: &Origin) -> Result<bool, UpstreamError> {
        let Some(rec) = self.meta.upstream(id).await? else {
            return Ok(false);
        };
        for p in self.meta.replication_policies().await? {
            let Ok(spec) = serde_json::from_str::<crate::PolicySpec>(&p.document) else { continue };
            let ends = [spec.src_registry.map(|r| r.id), spec.dest_registry.map(|r| r.id)];
            if ends.contains(&Some(id)) {
                return Err(UpstreamError::InUse(format!(
                    "the registry is used by replication policy {}; delete that first",
                    p.name
                )));
            }
        }
        if let Ok(mut c) = self.clients.lock() {
            c.remove(&id);
        }
        match self.meta.delete_upstream(id, &event("delete", id, &rec.name, origin)).await {
            Err(MetaError::Conflict(m)) => Err(UpstreamError::InUse(m)),
            r => Ok(r?),
        }
    }

    /// The pull-through cache rules (read again every 5 s, and at once after a change here).
    pub async fn cache_rules(&self) -> Result<Arc<Vec<CacheRule>>, UpstreamError> {
        if let Ok(r) = self.rules.lock()
            && let Some((at, rules)) = r.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(5)
        {
            return Ok(rules.clone());
        }
        let rules = Arc::new(self.meta.cache_rules().await?);
        if let Ok(mut r) = self.rules.lock() {
            *r = Some((std::time::Instant::now(), rules.clone()));
        }
        Ok(rules)
    }

    fn rules_changed(&self) {
        if let Ok(mut r) = self.rules.lock() {
            *r = None;
        }
    }

    /// Cache the repositories under `prefix` from endpoint `upstream_id` (as the upstream's
    /// `<upstream_prefix><rest>`); false if `prefix` has a rule already.
    pub async fn create_cache_rule(
        &self,
        prefix: &str,
        upstream_id: i64,
        upstream_prefix: &str,
        ttl_ms: i64,
        origin: &Origin,
    ) -> Result<bool, UpstreamError> {
        let endpoint = self.get(upstream_id).await?;
        let rule = CacheRule {
            prefix: prefix.to_owned(),
            upstream_id,
            upstream_prefix: upstream_prefix.to_owned(),
            ttl_ms,
            created_at: now_ms(),
        };
        let what = format!("{prefix} (proxy cache of {})", endpoint.name);
        let made = match self.meta.create_cache_rule(&rule, &event("create", upstream_id, &what, origin)).await {
            Err(MetaError::Conflict(_)) => return Err(UpstreamError::NotFound(upstream_id)),
            r => r?,
        };
        self.rules_changed();
        Ok(made)
    }

    /// Stop caching under `prefix`; false if it had no rule.
    pub async fn delete_cache_rule(&self, prefix: &str, origin: &Origin) -> Result<bool, UpstreamError> {
        let Some(rule) = self.cache_rules().await?.iter().find(|r| r.prefix == prefix).cloned() else {
            return Ok(false);
        };
        let what = format!("{prefix} (proxy cache)");
        let gone = self.meta.delete_cache_rule(prefix, &event("delete", rule.upstream_id, &what, origin)).await?;
        self.rules_changed();
        Ok(gone)
    }

    /// The endpoint as a client sees it (the secret opened).
    fn endpoint_of(&self, rec: &UpstreamRecord) -> Result<Endpoint, UpstreamError> {
        let password = match &rec.secret {
            Some(sealed) => {
                self.sealer.open(sealed, &context(&rec.url)).map_err(|e| UpstreamError::Sealed(rec.name.clone(), e))?
            }
            None => String::new(),
        };
        let credentials =
            (!rec.access_key.is_empty() || !password.is_empty()).then(|| (rec.access_key.clone(), password));
        Ok(Endpoint { url: rec.url.clone(), credentials, ca_pem: ca_bytes(&rec.ca_pem), insecure: rec.insecure })
    }

    /// The (shared) client of an endpoint.
    pub async fn client(&self, id: i64) -> Result<Arc<Client>, UpstreamError> {
        let rec = self.get(id).await?;
        if let Ok(c) = self.clients.lock()
            && let Some((version, client)) = c.get(&id)
            && *version == fingerprint(&rec)
        {
            return Ok(client.clone());
        }
        let client = Arc::new(Client::new(&self.endpoint_of(&rec)?)?);
        if let Ok(mut c) = self.clients.lock() {
            c.insert(id, (fingerprint(&rec), client.clone()));
        }
        Ok(client)
    }

    /// Check an endpoint (reachable, credentials accepted) and record what was found.
    pub async fn ping(&self, id: i64) -> Result<(), UpstreamError> {
        let client = self.client(id).await?;
        let result = client.ping().await;
        let status = if result.is_ok() { "healthy" } else { "unhealthy" };
        self.meta.set_upstream_status(id, status, now_ms()).await?;
        Ok(result?)
    }

    /// Check an endpoint that is not stored (Harbor's ping of a registry being created); a
    /// `None` secret with an `id` uses that endpoint's stored one.
    pub async fn ping_spec(&self, spec: &EndpointSpec, id: Option<i64>) -> Result<(), UpstreamError> {
        Self::check(spec, false)?;
        let mut password = spec.secret.clone();
        if password.is_none()
            && let Some(id) = id
        {
            let rec = self.get(id).await?;
            // The stored password goes only where it was given for.
            if spec.url.trim().trim_end_matches('/') != rec.url {
                return Err(UpstreamError::Invalid(format!(
                    "the stored password of registry {:?} is only sent to {}; give the password to check another URL",
                    rec.name, rec.url
                )));
            }
            password = self.endpoint_of(&rec)?.credentials.map(|c| c.1);
        }
        let password = password.unwrap_or_default();
        let credentials =
            (!spec.access_key.is_empty() || !password.is_empty()).then(|| (spec.access_key.clone(), password));
        let client = Client::new(&Endpoint {
            url: spec.url.clone(),
            credentials,
            ca_pem: ca_bytes(&spec.ca_pem),
            insecure: spec.insecure,
        })?;
        Ok(client.ping().await?)
    }
}

/// What a cached client was built from: any change (also one made behind the server's back)
/// builds a new one, so a stored secret is never sent with a URL it was not sealed for.
fn fingerprint(rec: &UpstreamRecord) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{:?}\n{:?}",
        rec.updated_at, rec.kind, rec.url, rec.insecure, rec.access_key, rec.secret, rec.ca_pem
    )
}
