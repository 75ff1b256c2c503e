//! Webhooks: Harbor's webhook policies (a project's receivers and the event types they
//! want), fed by the event log and delivered at least once, in order per policy and target.
//!
//! ```text
//! events ──> WebhookConsumer (cursor `webhooks`) ──> webhook_deliveries (same transaction)
//!                                                        │ claim the oldest open delivery
//!                                                        ▼ of each (policy, target)
//!                       Webhooks::run: POST (guarded, signed) ──> 2xx: Success
//!                                                             └─> else: retry with back-off,
//!                                                                 after max_attempts: Error
//! ```
//!
//! A delivery's body is rendered when it is created ([`payload`]: Harbor's `Default` JSON,
//! CloudEvents 1.0 or Slack), so every try sends the same bytes and the history shows exactly
//! what was sent. Each request carries `X-Berth-Signature-256: sha256=<hex>`, the HMAC-SHA256
//! of the body under the policy's secret (GitHub's scheme, so existing verifiers work), and
//! the target's `auth_header` as `Authorization` (Harbor's). Secrets and auth headers are
//! sealed under the key file: Berth must use them, so they cannot be hashed. Addresses pass
//! the SSRF [`guard`] when saved and at every try; redirects are never followed.

pub mod guard;
pub mod payload;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_auth::seal::Sealer;
use berth_meta::{
    DeliveryOutcome, Effect, EventRecord, MetaError, NewEvent, NewWebhookDelivery, Origin, WebhookDeliveryRecord,
    WebhookPolicyRecord, WebhookStore,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::guard::{Guard, GuardedResolver};

/// What the auth header of a target reads as when shown: it is set, and not shown.
pub const MASK: &str = "********";

/// Most targets a policy may have.
pub const MAX_TARGETS: usize = 5;

/// `[webhooks]` settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Addresses allowed despite the SSRF guard (IPs, networks, host names).
    pub allowed_hosts: Vec<String>,
    /// Tries before a delivery gives up (the dead letter).
    pub max_attempts: u32,
    /// The first retry's delay; each later one doubles it (at most an hour).
    pub retry_base: Duration,
    /// How long one try may take.
    pub timeout: Duration,
    /// `host[:port]` of this registry, for `resource_url`s.
    pub registry_host: String,
    /// How often the delivery loop looks for due deliveries.
    pub poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allowed_hosts: Vec::new(),
            max_attempts: 10,
            retry_base: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            registry_host: "localhost".into(),
            poll: Duration::from_millis(250),
        }
    }
}

/// A receiver of a policy, in Harbor's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `http` or `slack`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The URL.
    pub address: String,
    /// Sent as `Authorization` (http only). Stored sealed; shown as [`MASK`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    /// Accept any TLS certificate.
    #[serde(default)]
    pub skip_cert_verify: bool,
    /// `Default` or `CloudEvents` (http only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format: Option<String>,
}

/// A policy as clients send it (Harbor's `WebhookPolicy`; read-only fields ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicySpec {
    /// Its name, unique in the project.
    #[serde(default)]
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Whether events create deliveries (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Harbor's event types.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Its receivers.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// The HMAC key (Berth's; generated when absent).
    #[serde(default)]
    pub secret: Option<String>,
}

/// A policy as read (auth headers masked, the secret not included).
#[derive(Debug, Clone)]
pub struct Policy {
    /// The stored row.
    pub record: WebhookPolicyRecord,
    /// Its event types.
    pub event_types: Vec<String>,
    /// Its targets, auth headers masked.
    pub targets: Vec<Target>,
}

/// Why a webhook request was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The policy is wrong (the message says how).
    #[error("{0}")]
    Invalid(String),
    /// No such policy or delivery in this project.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or the delivery is not finished.
    #[error("{0}")]
    Conflict(String),
    /// A stored secret cannot be opened (another key file?).
    #[error("{0}")]
    Sealed(String),
    /// The store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// Result of the webhook service.
pub type Result<T, E = WebhookError> = std::result::Result<T, E>;

/// Context of a sealed value: the target's address, so a header cannot be moved to another
/// receiver by editing a row.
fn header_context(address: &str) -> String {
    format!("webhook auth header for {address}")
}

const SECRET_CONTEXT: &str = "webhook secret";

fn now_ms() -> i64 {
    berth_auth::now_ms()
}

/// The webhook service: policies, deliveries, tests and the delivery loop.
pub struct Webhooks {
    store: Arc<dyn WebhookStore>,
    sealer: Arc<Sealer>,
    guard: Arc<Guard>,
    settings: Settings,
    /// HTTP clients (certificates verified, and not), made on first use: building one loads
    /// the system's CA certificates, which a start need not wait for.
    verifying: std::sync::OnceLock<reqwest::Client>,
    insecure: std::sync::OnceLock<reqwest::Client>,
    holder: String,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn client(guard: &Arc<Guard>, s: &Settings, insecure: bool) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(s.timeout)
        .connect_timeout(s.timeout)
        .user_agent(concat!("berth-webhook/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(insecure)
        .build()
        .map_err(|e| format!("webhook HTTP client: {e}"))
}

/// The HMAC-SHA256 of `body` under `secret`, as the signature header carries it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(ring::hmac::sign(&key, body).as_ref()))
}

impl Webhooks {
    /// The service over `store`, sealing with `sealer`.
    pub fn new(store: Arc<dyn WebhookStore>, sealer: Arc<Sealer>, settings: Settings) -> Result<Webhooks, String> {
        let guard = Arc::new(Guard::new(&settings.allowed_hosts)?);
        Ok(Webhooks {
            verifying: std::sync::OnceLock::new(),
            insecure: std::sync::OnceLock::new(),
            store,
            sealer,
            guard,
            settings,
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn read(&self, record: WebhookPolicyRecord) -> Policy {
        let event_types = serde_json::from_str(&record.event_types).unwrap_or_default();
        let mut targets: Vec<Target> = serde_json::from_str(&record.targets).unwrap_or_default();
        for t in &mut targets {
            if t.auth_header.is_some() {
                t.auth_header = Some(MASK.into());
            }
        }
        Policy { record, event_types, targets }
    }

    /// A project's policies, by name.
    pub async fn policies(&self, project: &str) -> Result<Vec<Policy>> {
        Ok(self.store.webhook_policies(project).await?.into_iter().map(|r| self.read(r)).collect())
    }

    async fn record(&self, project: &str, id: i64) -> Result<WebhookPolicyRecord> {
        match self.store.webhook_policy(id).await? {
            Some(r) if r.project == project => Ok(r),
            _ => Err(WebhookError::NotFound(format!("project {project} has no webhook policy {id}"))),
        }
    }

    /// One policy of `project`.
    pub async fn policy(&self, project: &str, id: i64) -> Result<Policy> {
        Ok(self.read(self.record(project, id).await?))
    }

    /// Check `spec` and seal its auth headers (keeping the stored ones `old` has for the
    /// same address where the spec says [`MASK`] or nothing).
    fn checked_targets(&self, spec: &PolicySpec, old: Option<&WebhookPolicyRecord>) -> Result<String> {
        let invalid = |m: String| WebhookError::Invalid(m);
        if spec.name.trim().is_empty() || spec.name.len() > 255 {
            return Err(invalid("name: give the policy a name of 1 to 255 characters".into()));
        }
        if spec.description.len() > 1024 {
            return Err(invalid("description: at most 1,024 characters".into()));
        }
        if spec.event_types.is_empty() {
            return Err(invalid(format!("event_types: choose at least one of {}", payload::EVENT_TYPES.join(", "))));
        }
        for t in &spec.event_types {
            if !payload::EVENT_TYPES.contains(&t.as_str()) {
                return Err(invalid(format!(
                    "event_types: {t:?} is not an event type; use {}",
                    payload::EVENT_TYPES.join(", ")
                )));
            }
        }
        if spec.targets.is_empty() || spec.targets.len() > MAX_TARGETS {
            return Err(invalid(format!("targets: give 1 to {MAX_TARGETS} targets")));
        }
        if let Some(s) = &spec.secret
            && (s.len() < 16 || s.len() > 256)
        {
            return Err(invalid("secret: use 16 to 256 characters (or leave it out and Berth makes one)".into()));
        }
        let old_targets: Vec<Target> =
            old.map(|o| serde_json::from_str(&o.targets).unwrap_or_default()).unwrap_or_default();
        let mut out = Vec::new();
        for (i, t) in spec.targets.iter().enumerate() {
            let field = |f: &str| format!("targets[{i}].{f}");
            if !payload::NOTIFY_TYPES.contains(&t.kind.as_str()) {
                return Err(invalid(format!(
                    "{}: {:?} is not a notify type; use http or slack",
                    field("type"),
                    t.kind
                )));
            }
            let format = match (t.kind.as_str(), t.payload_format.as_deref()) {
                ("http", None | Some("")) => Some("Default".to_owned()),
                ("http", Some(f)) if payload::PAYLOAD_FORMATS.contains(&f) => Some(f.to_owned()),
                ("http", Some(f)) => {
                    return Err(invalid(format!("{}: {f:?}; use Default or CloudEvents", field("payload_format"))));
                }
                (_, None | Some("") | Some("Default")) => None,
                (_, Some(f)) => {
                    return Err(invalid(format!(
                        "{}: {f:?}: Slack targets take Slack's format only",
                        field("payload_format")
                    )));
                }
            };
            if t.address.len() > 2048 {
                return Err(invalid(format!("{}: at most 2,048 characters", field("address"))));
            }
            self.guard.check_url(&t.address).map_err(|e| invalid(format!("{}: {e}", field("address"))))?;
            let header = match t.auth_header.as_deref() {
                Some(h) if h.chars().any(|c| c.is_control()) || h.len() > 4096 => {
                    return Err(invalid(format!("{}: one line of at most 4,096 characters", field("auth_header"))));
                }
                Some(h) if h == MASK || (h.is_empty() && t.auth_header.is_none()) => {
                    // Keep what the stored target of this address (else this position) had.
                    let prev = old_targets
                        .iter()
                        .find(|o| o.address == t.address)
                        .or_else(|| old_targets.get(i))
                        .and_then(|o| o.auth_header.clone().map(|h| (o.address.clone(), h)));
                    match prev {
                        Some((addr, sealed)) if addr == t.address => Some(sealed),
                        Some((addr, sealed)) => {
                            let plain = self
                                .sealer
                                .open(&sealed, &header_context(&addr))
                                .map_err(|e| WebhookError::Sealed(e.to_string()))?;
                            Some(self.sealer.seal(&plain, &header_context(&t.address)))
                        }
                        None => None,
                    }
                }
                Some("") => None,
                Some(h) if t.kind == "http" => Some(self.sealer.seal(h, &header_context(&t.address))),
                Some(_) => None,
                None => old_targets.iter().find(|o| o.address == t.address).and_then(|o| o.auth_header.clone()),
            };
            out.push(Target {
                kind: t.kind.clone(),
                address: t.address.clone(),
                auth_header: header,
                skip_cert_verify: t.skip_cert_verify,
                payload_format: format,
            });
        }
        Ok(serde_json::to_string(&out).expect("targets serialize"))
    }

    fn event(&self, project: &str, op: &str, id: i64, name: &str, origin: &Origin) -> NewEvent {
        NewEvent::new(berth_meta::EventKind::PolicyChanged, now_ms(), origin)
            .project(project)
            .data(json!({"op": op, "kind": "webhook", "id": id, "name": name}))
    }

    /// Create a policy in `project`; returns its id and its HMAC secret (shown once).
    pub async fn create(&self, project: &str, spec: &PolicySpec, origin: &Origin) -> Result<(i64, String)> {
        let targets = self.checked_targets(spec, None)?;
        let secret = spec.secret.clone().unwrap_or_else(|| hex::encode(rand::random::<[u8; 24]>()));
        let now = now_ms();
        let rec = WebhookPolicyRecord {
            id: 0,
            project: project.to_owned(),
            name: spec.name.trim().to_owned(),
            description: spec.description.clone(),
            enabled: spec.enabled.unwrap_or(true),
            event_types: serde_json::to_string(&dedup(&spec.event_types)).expect("strings serialize"),
            targets,
            secret: self.sealer.seal(&secret, SECRET_CONTEXT),
            creator: origin.actor.clone(),
            created_at: now,
            updated_at: now,
        };
        let id = self
            .store
            .create_webhook_policy(&rec, &self.event(project, "create", 0, &rec.name, origin))
            .await
            .map_err(conflict)?;
        Ok((id, secret))
    }

    /// Replace a policy's settings (its secret only if `spec.secret` is given).
    pub async fn update(&self, project: &str, id: i64, spec: &PolicySpec, origin: &Origin) -> Result<()> {
        let old = self.record(project, id).await?;
        let targets = self.checked_targets(spec, Some(&old))?;
        let rec = WebhookPolicyRecord {
            name: spec.name.trim().to_owned(),
            description: spec.description.clone(),
            enabled: spec.enabled.unwrap_or(true),
            event_types: serde_json::to_string(&dedup(&spec.event_types)).expect("strings serialize"),
            targets,
            secret: match &spec.secret {
                Some(s) => self.sealer.seal(s, SECRET_CONTEXT),
                None => old.secret.clone(),
            },
            updated_at: now_ms(),
            ..old
        };
        let event = self.event(project, "update", id, &rec.name, origin);
        if !self.store.update_webhook_policy(&rec, &event).await.map_err(conflict)? {
            return Err(WebhookError::NotFound(format!("project {project} has no webhook policy {id}")));
        }
        Ok(())
    }

    /// Delete a policy and its deliveries.
    pub async fn delete(&self, project: &str, id: i64, origin: &Origin) -> Result<()> {
        let old = self.record(project, id).await?;
        self.store.delete_webhook_policy(id, &self.event(project, "delete", id, &old.name, origin)).await?;
        Ok(())
    }

    /// A policy's deliveries, newest first (`status` only, if given), and how many there are.
    pub async fn deliveries(
        &self,
        project: &str,
        policy: i64,
        status: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<WebhookDeliveryRecord>, i64)> {
        self.record(project, policy).await?;
        Ok(self.store.webhook_deliveries(policy, status, offset, limit.clamp(1, 100)).await?)
    }

    /// One delivery of a policy of `project`.
    pub async fn delivery(&self, project: &str, policy: i64, id: i64) -> Result<WebhookDeliveryRecord> {
        self.record(project, policy).await?;
        match self.store.webhook_delivery(id).await? {
            Some(d) if d.policy_id == policy => Ok(d),
            _ => Err(WebhookError::NotFound(format!("webhook policy {policy} has no delivery {id}"))),
        }
    }

    /// Send a finished delivery again (a dead letter, or one a receiver lost).
    pub async fn redeliver(&self, project: &str, policy: i64, id: i64, origin: &Origin) -> Result<()> {
        let d = self.delivery(project, policy, id).await?;
        let line = format!("{} redelivery asked by {}", berth_auth::rfc3339(now_ms()), origin.actor);
        if !self.store.redeliver_webhook(d.id, &line, now_ms()).await? {
            return Err(WebhookError::Conflict(format!(
                "delivery {id} is {}: only a finished delivery (Success or Error) can be sent again",
                d.status
            )));
        }
        Ok(())
    }

    /// When each (policy, event type) of `project` last fired.
    pub async fn last_triggers(&self, project: &str) -> Result<Vec<(i64, String, i64)>> {
        Ok(self.store.webhook_last_triggers(project).await?)
    }

    /// Send a test event to every target of `spec` now (nothing stored); per target, the
    /// receiver's status or why it failed.
    pub async fn test(
        &self,
        project: &berth_auth::ProjectRecord,
        spec: &PolicySpec,
        stored: Option<i64>,
        origin: &Origin,
    ) -> Result<Vec<(String, std::result::Result<u16, String>)>> {
        let old = match stored {
            Some(id) => Some(self.record(&project.name, id).await?),
            None => None,
        };
        let mut spec = spec.clone();
        if spec.event_types.is_empty() {
            spec.event_types = vec!["PUSH_ARTIFACT".into()];
        }
        if spec.name.is_empty() {
            spec.name = "test".into();
        }
        let targets: Vec<Target> =
            serde_json::from_str(&self.checked_targets(&spec, old.as_ref())?).unwrap_or_default();
        let secret = match (&spec.secret, &old) {
            (Some(s), _) => s.clone(),
            (None, Some(o)) => self.open_secret(o)?,
            (None, None) => String::new(),
        };
        let test = json!({
            "type": "TEST", "occur_at": now_ms() / 1000, "operator": origin.actor,
            "event_data": {"message": format!("A test of webhook policy {:?} of project {} from Berth", spec.name, project.name)},
        });
        let mut out = Vec::new();
        for t in &targets {
            let (body, _) = payload::body(
                &t.kind,
                t.payload_format.as_deref().unwrap_or("Default"),
                &test,
                &uuid::Uuid::new_v4().to_string(),
                project.id,
                stored.unwrap_or(0),
            );
            let r = self.send(t, &secret, "TEST", 0, &body).await.map_err(|(_, why)| why);
            out.push((t.address.clone(), r));
        }
        Ok(out)
    }

    fn open_secret(&self, p: &WebhookPolicyRecord) -> Result<String> {
        self.sealer
            .open(&p.secret, SECRET_CONTEXT)
            .map_err(|e| WebhookError::Sealed(format!("webhook policy {}: {e}", p.id)))
    }

    /// One POST; `Ok(status)` on 2xx, else the status (if any) and what went wrong.
    async fn send(
        &self,
        t: &Target,
        secret: &str,
        event_type: &str,
        delivery: i64,
        body: &str,
    ) -> std::result::Result<u16, (Option<u16>, String)> {
        self.guard.check_url(&t.address).map_err(|e| (None, e))?;
        let cloudevents = body.starts_with("{\"") && body.contains("\"specversion\":\"1.0\"");
        let cell = if t.skip_cert_verify { &self.insecure } else { &self.verifying };
        let client = match cell.get() {
            Some(c) => c,
            None => {
                let c = client(&self.guard, &self.settings, t.skip_cert_verify).map_err(|e| (None, e))?;
                cell.get_or_init(|| c)
            }
        };
        let mut req = client
            .post(&t.address)
            .header(
                http::header::CONTENT_TYPE,
                if cloudevents { "application/cloudevents+json" } else { "application/json" },
            )
            .header("x-berth-event", event_type)
            .header("x-berth-delivery", delivery.to_string())
            .body(body.to_owned());
        if !secret.is_empty() {
            req = req.header("x-berth-signature-256", signature(secret, body.as_bytes()));
        }
        if t.kind == "http"
            && let Some(sealed) = &t.auth_header
        {
            let h = self.sealer.open(sealed, &header_context(&t.address)).map_err(|e| (None, e.to_string()))?;
            req = req.header(http::header::AUTHORIZATION, h);
        }
        let resp = req.send().await.map_err(|e| (None, describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        // A little of what the receiver said, never more.
        let mut said = String::new();
        let mut stream = resp;
        while said.len() < 512 {
            match stream.chunk().await {
                Ok(Some(c)) => said.push_str(&String::from_utf8_lossy(&c[..c.len().min(512 - said.len())])),
                _ => break,
            }
        }
        let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
        let what = if status.is_redirection() { " (redirects are not followed)" } else { "" };
        Err((
            Some(status.as_u16()),
            format!(
                "the receiver answered {status}{what}{}",
                if said.is_empty() { String::new() } else { format!(": {said}") }
            ),
        ))
    }

    /// The delay before try `attempt + 1` (1-based `attempt` tries made): doubling from
    /// `retry_base`, at most an hour, with ±20 % jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.settings.retry_base.as_millis() as u64;
        let d = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(20)).min(3_600_000);
        let jitter = rand::random::<f64>() * 0.4 + 0.8;
        Duration::from_millis((d as f64 * jitter) as u64)
    }

    /// Try one claimed delivery and record how it went.
    async fn attempt(&self, d: WebhookDeliveryRecord) {
        let started = Instant::now();
        let policy = match self.store.webhook_policy(d.policy_id).await {
            Ok(Some(p)) => p,
            Ok(None) => return, // deleted with its deliveries
            Err(e) => {
                tracing::warn!(delivery = d.id, error = %e, "webhook: cannot read the policy; the lease will expire");
                return;
            }
        };
        let targets: Vec<Target> = serde_json::from_str(&policy.targets).unwrap_or_default();
        // The target as it is now (an address fixed after failures applies to what waits).
        let target = targets.get(d.target as usize).cloned().unwrap_or(Target {
            kind: d.notify_type.clone(),
            address: d.address.clone(),
            auth_header: None,
            skip_cert_verify: false,
            payload_format: None,
        });
        let result = match self.open_secret(&policy) {
            Ok(secret) => self.send(&target, &secret, &d.event_type, d.id, &d.payload).await,
            Err(e) => Err((None, e.to_string())),
        };
        let tries = u32::try_from(d.attempts).unwrap_or(u32::MAX).saturating_add(1);
        let now = now_ms();
        let took = started.elapsed().as_millis();
        let at = berth_auth::rfc3339(now);
        let (outcome, line) = match result {
            Ok(code) => (
                DeliveryOutcome::Delivered { code: i64::from(code) },
                format!("{at} try {tries}: delivered to {} (HTTP {code}) in {took} ms", target.address),
            ),
            Err((code, why)) if tries >= self.settings.max_attempts => {
                tracing::warn!(delivery = d.id, policy = d.policy_id, %why, "webhook: gave up after {tries} tries");
                (
                    DeliveryOutcome::Failed { code: code.map(i64::from), retry_at: None },
                    format!("{at} try {tries}: {why} ({took} ms); gave up after {tries} tries (redeliver by hand)"),
                )
            }
            Err((code, why)) => {
                let wait = self.backoff(tries);
                (
                    DeliveryOutcome::Failed {
                        code: code.map(i64::from),
                        retry_at: Some(now + wait.as_millis() as i64),
                    },
                    format!(
                        "{at} try {tries}: {why} ({took} ms); next try in {}",
                        humantime::format_duration(round(wait))
                    ),
                )
            }
        };
        if let Err(e) = self.store.finish_webhook_delivery(d.id, &self.holder, &outcome, &line, now).await {
            tracing::warn!(delivery = d.id, error = %e, "webhook: cannot record the try; it will be tried again");
        }
    }

    /// The delivery loop (processes with the worker role): claim due deliveries, send them
    /// (different policies at once, each policy's in order), record, repeat.
    pub fn run(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let now = now_ms();
                let lease = now + (self.settings.timeout.as_millis() as i64) * 2 + 30_000;
                match self.store.claim_webhook_deliveries(&self.holder, now, lease, 16).await {
                    Ok(claimed) if !claimed.is_empty() => {
                        futures::future::join_all(claimed.into_iter().map(|d| self.attempt(d))).await;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "webhook: cannot claim deliveries"),
                }
                tokio::time::sleep(self.settings.poll).await;
            }
        })
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(1))
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    v.iter().filter(|s| seen.insert(s.as_str())).cloned().collect()
}

fn conflict(e: MetaError) -> WebhookError {
    match e {
        MetaError::Conflict(m) => WebhookError::Conflict(m),
        other => WebhookError::Meta(other),
    }
}

/// A transport error in the user's words (reqwest's own chain, innermost cause last).
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut src = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = src {
        last = Some(s.to_string());
        src = s.source();
    }
    if let Some(l) = last {
        out.push_str(": ");
        out.push_str(&l);
    }
    out
}

/// The event-log consumer that turns events into deliveries (cursor `webhooks`).
pub struct WebhookConsumer {
    webhooks: Arc<Webhooks>,
    auth: Arc<berth_auth::Auth>,
    scans: Arc<berth_scanner::Scanning>,
}

impl WebhookConsumer {
    /// The consumer over the services.
    pub fn new(
        webhooks: Arc<Webhooks>,
        auth: Arc<berth_auth::Auth>,
        scans: Arc<berth_scanner::Scanning>,
    ) -> WebhookConsumer {
        WebhookConsumer { webhooks, auth, scans }
    }
}

#[async_trait::async_trait]
impl berth_meta::Consumer for WebhookConsumer {
    fn name(&self) -> &str {
        "webhooks"
    }

    async fn effects(&self, events: &[EventRecord]) -> std::result::Result<Vec<Effect>, berth_meta::ConsumerError> {
        let wanted: Vec<(&EventRecord, &'static str)> = events
            .iter()
            .filter(|r| r.event.project.is_some())
            .filter_map(|r| payload::event_type(&r.event).map(|t| (r, t)))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let projects: Vec<String> =
            wanted.iter().filter_map(|(r, _)| r.event.project.clone()).collect::<HashSet<_>>().into_iter().collect();
        let mut by_project: HashMap<String, Vec<Policy>> = HashMap::new();
        for p in self.webhooks.store.enabled_webhook_policies(&projects).await? {
            let p = self.webhooks.read(p);
            by_project.entry(p.record.project.clone()).or_default().push(p);
        }
        if by_project.is_empty() {
            return Ok(Vec::new());
        }
        let mut records: HashMap<String, Option<berth_auth::ProjectRecord>> = HashMap::new();
        let mut out = Vec::new();
        for (r, ty) in wanted {
            let e = &r.event;
            let project = e.project.as_deref().unwrap_or_default();
            let Some(policies) = by_project.get(project) else { continue };
            let policies: Vec<&Policy> = policies.iter().filter(|p| p.event_types.iter().any(|t| t == ty)).collect();
            if policies.is_empty() {
                continue;
            }
            if !records.contains_key(project) {
                records.insert(project.to_owned(), self.auth.project(project).await?);
            }
            let Some(rec) = records.get(project).cloned().flatten() else { continue };
            let scan_overview = match (ty.starts_with("SCANNING_"), &e.digest) {
                (true, Some(d)) => self.scans.harbor_overview(&rec, d).await.ok().flatten(),
                _ => None,
            };
            let cx = payload::Context {
                registry_host: self.webhooks.settings.registry_host.clone(),
                public: rec.settings.public(),
                scan_overview,
            };
            let harbor = payload::harbor_payload(e, ty, &cx);
            for p in policies {
                for (i, t) in p.targets.iter().enumerate() {
                    let (body, _) = payload::body(
                        &t.kind,
                        t.payload_format.as_deref().unwrap_or("Default"),
                        &harbor,
                        &uuid::Uuid::new_v4().to_string(),
                        rec.id,
                        p.record.id,
                    );
                    out.push(Effect::Webhook(NewWebhookDelivery {
                        policy_id: p.record.id,
                        seq: r.seq,
                        target: i as i64,
                        event_type: ty.to_owned(),
                        notify_type: t.kind.clone(),
                        address: t.address.clone(),
                        payload: body,
                        at: now_ms(),
                    }));
                }
            }
        }
        Ok(out)
    }
}

/// A delivery as Harbor's `Execution`, and its one try-series as the `Task`.
pub fn execution_json(d: &WebhookDeliveryRecord) -> Value {
    let time = |ms: i64| berth_auth::rfc3339(ms);
    let running = matches!(d.status.as_str(), "Pending" | "Running");
    json!({
        "id": d.id, "vendor_type": if d.notify_type == "slack" { "SLACK" } else { "WEBHOOK" },
        "vendor_id": d.policy_id, "status": if d.status == "Pending" && d.attempts == 0 { "Pending" } else if running { "Running" } else { d.status.as_str() },
        "status_message": d.log.lines().last().unwrap_or_default(),
        "metrics": {
            "task_count": 1,
            "success_task_count": i64::from(d.status == "Success"),
            "error_task_count": i64::from(d.status == "Error"),
            "pending_task_count": i64::from(d.status == "Pending"),
            "running_task_count": i64::from(d.status == "Running"),
            "scheduled_task_count": 0, "stopped_task_count": 0,
        },
        "trigger": "EVENT",
        "extra_attrs": {"event_type": d.event_type, "payload": d.payload, "address": d.address,
                         "attempts": d.attempts, "next_attempt_time": (d.status == "Pending").then(|| time(d.next_at)),
                         "last_status_code": d.last_code},
        "start_time": time(d.created_at),
        "end_time": d.ended_at.map(time),
    })
}

/// The delivery's task (Harbor's `Task`): one per execution, with the same id.
pub fn task_json(d: &WebhookDeliveryRecord) -> Value {
    let time = |ms: i64| berth_auth::rfc3339(ms);
    json!({
        "id": d.id, "execution_id": d.id, "status": d.status,
        "status_message": d.log.lines().last().unwrap_or_default(), "run_count": d.attempts,
        "extra_attrs": {"event_type": d.event_type, "address": d.address, "notify_type": d.notify_type},
        "creation_time": time(d.created_at), "update_time": time(d.updated_at), "start_time": time(d.created_at),
        "end_time": d.ended_at.map(time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_githubs_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
