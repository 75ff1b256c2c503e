//! Identity and access for Berth: who is asking ([`Principal`]), what they may do
//! ([`rbac`], [`policy`]), and the credentials that prove it (passwords, robot and CLI
//! secrets, signed [`token`]s, OIDC logins in [`oidc`]).
//!
//! [`Auth`] is the access domain's service, the only way the HTTP crates, the CLI and jobs
//! read or change users, projects, members, robots and repository policies (`service.rs`;
//! each change logs its event and drops the caches). [`Auth::decide`] is the **one
//! authorization decision** every surface asks: principal × [`Target`] × [`rbac::Perm`] →
//! allowed, or [`Denied`] with a reason. It never speaks HTTP itself: the registry API
//! (`berth-oci`) turns its answers into OCI errors and `WWW-Authenticate` challenges, the
//! management API (`berth-admin`) into Harbor's envelope.
//!
//! **Invariants:** secrets are stored only as hashes ([`secret`]) and never logged; a
//! decision is the union of role or robot permissions and policy `Allow`s, minus any policy
//! `Deny` — a `Deny` always wins; a token grants only what its holder could do when it was
//! issued, narrowed to what was asked for, and only for the repositories it names.
//!
//! ```no_run
//! # async fn f(store: std::sync::Arc<dyn berth_meta::AccessStore>) -> Result<(), berth_auth::AuthError> {
//! use berth_auth::{Auth, AuthConfig, Target, rbac::Perm, policy::EcrAction};
//! let auth = Auth::open(store, AuthConfig::default()).await?;
//! let who = auth.login("alice", "Secret123", None).await?;
//! auth.decide(&who, Target::Repository("proj/app", EcrAction::BatchGetImage), Perm::Pull).await.ok();
//! # Ok(()) }
//! ```

pub mod audit;
pub mod federation;
pub mod ldap;
pub mod oidc;
pub mod origin;
pub mod policy;
pub mod rbac;
pub mod seal;
pub mod secret;
mod service;
pub mod sigv4;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_meta::{AccessStore, EventBuffer, EventKind, NewEvent};
use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

pub use audit::{AuditConsumer, PullConsumer};
pub use berth_meta::{
    AuditPurge, AuditQuery, AuditRecord, MemberEntity, MemberRecord, MetaError, NewUser, Origin, ProjectRecord,
    RobotRecord, UserGroupRecord, UserRecord,
};
pub use berth_types::{ProjectSettings, SettingError, SeverityThreshold, Visibility};
use policy::{EcrAction, RepoPolicy, Verdict};
use rbac::{Perm, PermSet, RobotPermission, Role};
pub use service::PolicyChangeError;
use token::{AccessEntry, Claims, KeyRing, Scope, TokenError, typ};

/// Settings of the access layer.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The service name tokens are bound to (`aud`), also sent in challenges.
    pub service: String,
    /// The issuer name tokens carry (`iss`).
    pub issuer: String,
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
    /// Lifetime of refresh (offline) tokens.
    pub refresh_ttl: Duration,
    /// Lifetime of web sessions.
    pub session_ttl: Duration,
    /// Create a (private) project when an authenticated user pushes into one that does not exist.
    pub create_projects_on_push: bool,
    /// Only system administrators may create projects.
    pub project_creation_admin_only: bool,
    /// Registry 401s challenge `Basic` (credentials on every request) instead of `Bearer`.
    pub basic_challenge: bool,
    /// Failed logins of one account (or from one address, times four) before it is locked.
    pub login_max_failures: u32,
    /// How long a lock lasts.
    pub login_lockout: Duration,
    /// How long a verified password or secret is remembered (saves argon2 on every request).
    pub credential_cache_ttl: Duration,
}

/// The settings an administrator may change at run time (Harbor's `PUT /configurations`,
/// under Harbor's keys), over the file's: stored in the database, logged as
/// `settings.changed`, and applied by every replica that sees the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// `project_creation_restriction`: `adminonly` or `everyone`.
    pub project_creation_admin_only: bool,
    /// `token_expiration`, in minutes.
    pub token_ttl: Duration,
    /// `session_timeout`, in minutes.
    pub session_ttl: Duration,
}

impl RuntimeSettings {
    /// Harbor's keys of the settings that can change at run time.
    pub const KEYS: &'static [&'static str] = &["project_creation_restriction", "session_timeout", "token_expiration"];
    /// Stored settings that are documents read where they are used, not values of these:
    /// ECR's registry scanning and replication configurations.
    pub const DOCUMENTS: &'static [&'static str] = &["registry_scanning", "registry_replication"];

    /// The file's values.
    pub fn of(cfg: &AuthConfig) -> RuntimeSettings {
        RuntimeSettings {
            project_creation_admin_only: cfg.project_creation_admin_only,
            token_ttl: cfg.token_ttl,
            session_ttl: cfg.session_ttl,
        }
    }

    /// Set one, by Harbor's key, checking its value; the message says what is accepted.
    pub fn set(&mut self, key: &str, value: &serde_json::Value) -> Result<(), String> {
        let minutes = |v: &serde_json::Value| -> Result<Duration, String> {
            let m = v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
            match m {
                Some(m) if (1..=525_600).contains(&m) => Ok(Duration::from_secs(m * 60)),
                _ => Err(format!("{key} is a number of minutes from 1 to 525600 (a year), not {v}")),
            }
        };
        match key {
            "project_creation_restriction" => {
                self.project_creation_admin_only = match value.as_str() {
                    Some("adminonly") => true,
                    Some("everyone") => false,
                    _ => return Err(format!("{key} is \"adminonly\" or \"everyone\", not {value}")),
                }
            }
            "token_expiration" => self.token_ttl = minutes(value)?,
            "session_timeout" => self.session_ttl = minutes(value)?,
            _ => return Err(format!("{key} cannot be changed at run time")),
        }
        Ok(())
    }

    /// The file's values with the stored ones applied (a stored value that no longer
    /// validates is left out, with a warning).
    pub fn with_stored(cfg: &AuthConfig, stored: &[(String, serde_json::Value)]) -> RuntimeSettings {
        let mut s = RuntimeSettings::of(cfg);
        for (k, v) in stored.iter().filter(|(k, _)| !Self::DOCUMENTS.contains(&k.as_str())) {
            if let Err(e) = s.set(k, v) {
                warn!(key = %k, error = %e, "ignoring a stored setting");
            }
        }
        s
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            service: "berth".into(),
            issuer: "berth-token-issuer".into(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            session_ttl: Duration::from_secs(8 * 3600),
            create_projects_on_push: false,
            project_creation_admin_only: false,
            basic_challenge: false,
            login_max_failures: 5,
            login_lockout: Duration::from_secs(300),
            credential_cache_ttl: Duration::from_secs(30),
        }
    }
}

/// A user as a principal, with their project roles resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPrincipal {
    /// User id.
    pub id: i64,
    /// Username.
    pub name: String,
    /// System administrator?
    pub sysadmin: bool,
    /// Identity-provider groups.
    pub groups: Vec<String>,
    /// `(project id, role)` of every membership, direct or through a group.
    pub roles: Vec<(i64, Role)>,
    /// When the password or CLI secret last changed (tokens from before are void).
    pub credentials_at: i64,
}

/// A robot account as a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotPrincipal {
    /// Robot id.
    pub id: i64,
    /// Full name (`robot$…`).
    pub name: String,
    /// Project of a project-level robot.
    pub project_id: Option<i64>,
    /// Its permissions.
    pub perms: Vec<RobotPermission>,
    /// When its secret last changed (tokens from before are void).
    pub credentials_at: i64,
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Nobody in particular.
    Anonymous,
    /// A user.
    User(Arc<UserPrincipal>),
    /// A robot account.
    Robot(Arc<RobotPrincipal>),
    /// The holder of the operator token (`admin_token`): a system administrator.
    Operator,
    /// The bearer of a registry access token: exactly what the token grants.
    Token(Arc<Claims>),
}

impl Principal {
    /// The name the audit log and policies use.
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User(u) => &u.name,
            Principal::Robot(r) => &r.name,
            Principal::Operator => "operator",
            Principal::Token(c) if c.sub.is_empty() => "anonymous",
            Principal::Token(c) => &c.sub,
        }
    }

    /// The name a policy `Principal` matches; `None` for anonymous.
    pub fn policy_name(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::Token(c) if c.sub.is_empty() => None,
            p => Some(p.name()),
        }
    }

    /// `user`, `robot`, `anonymous` or `operator`.
    pub fn kind(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User(_) => "user",
            Principal::Robot(_) => "robot",
            Principal::Operator => "operator",
            Principal::Token(c) => &c.kind,
        }
    }

    /// A system administrator (or the operator)?
    pub fn is_sysadmin(&self) -> bool {
        match self {
            Principal::User(u) => u.sysadmin,
            Principal::Operator => true,
            _ => false,
        }
    }

    /// Has it proved who it is?
    pub fn is_authenticated(&self) -> bool {
        match self {
            Principal::Anonymous => false,
            Principal::Token(c) => !c.sub.is_empty(),
            _ => true,
        }
    }

    /// The user behind it, if it is a user.
    pub fn user(&self) -> Option<&UserPrincipal> {
        match self {
            Principal::User(u) => Some(u),
            _ => None,
        }
    }
}

/// Why a credential or token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown user, wrong password or secret.
    #[error("invalid username or password")]
    BadCredentials,
    /// The robot account is disabled.
    #[error("robot account {0} is disabled")]
    RobotDisabled(String),
    /// The robot account has expired.
    #[error("robot account {name} expired at {at}")]
    RobotExpired {
        /// Its name.
        name: String,
        /// When, RFC 3339.
        at: String,
    },
    /// Too many failed logins: try again later.
    #[error("too many failed logins for this account or address; try again in {} s", .retry_after.as_secs().max(1))]
    Locked {
        /// How long until the lock lifts.
        retry_after: Duration,
    },
    /// Too many password checks are waiting: try again shortly.
    #[error("too many logins are being checked right now; try again in {} s", .retry_after.as_secs().max(1))]
    Busy {
        /// When to try again.
        retry_after: Duration,
    },
    /// A token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] MetaError),
    /// OIDC login failed.
    #[error("OIDC login failed: {0}")]
    Oidc(String),
    /// A request about an account that cannot be honoured (no such user, a weak password).
    #[error("{0}")]
    Refused(String),
    /// A request about an account's things that cannot be done as things are (a limit reached).
    #[error("{0}")]
    Conflict(String),
    /// What a request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An identity provider (LDAP) cannot be reached or failed (which, and why).
    #[error("{0}")]
    Unavailable(String),
}

/// Why a request was not authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The project does not exist.
    #[error("project {0:?} does not exist; create it first (berth project create {0})")]
    NoProject(String),
    /// Anonymous and not allowed: credentials are needed.
    #[error("authentication required")]
    NeedsAuth,
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No decision: the metadata database cannot be reached (answered `503`, never a refusal).
    #[error("the metadata database is unavailable: {0}")]
    Unavailable(String),
    /// Authenticated, but may not even see the project: the management API answers as if
    /// it did not exist; `/v2` refuses with `why`.
    #[error("{why}")]
    Hidden {
        /// The project.
        project: String,
        /// The refusal in words.
        why: String,
    },
    /// No decision: the lookup failed (answered `500`).
    #[error("authorization failed: {0}")]
    Failed(String),
}

impl From<MetaError> for Denied {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Unavailable(m) => Denied::Unavailable(m),
            e => Denied::Failed(e.to_string()),
        }
    }
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Seconds it is valid.
    pub expires_in: u64,
    /// Unix seconds when issued.
    pub issued_at: i64,
    /// What it grants.
    pub access: Vec<AccessEntry>,
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 (UTC, second precision).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Can this be a username? 1 to 255 characters, not starting with `robot$` (robot names),
/// no spaces, control characters or any of `, " ~ # % $ : /`.
pub fn valid_username(name: &str) -> bool {
    !(name.is_empty()
        || name.len() > 255
        || name.starts_with("robot$")
        || name.chars().any(|c| c.is_control() || ",\"~#%$:/".contains(c) || c.is_whitespace()))
}

/// The project a repository belongs to: its first path component.
pub fn project_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// Failed-login bookkeeping per account and per client address.
#[derive(Default)]
struct Limiter {
    entries: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Limiter {
    fn locked(&self, key: &str, max: u32, lockout: Duration) -> Option<Duration> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (n, last) = map.get(key)?;
        let since = last.elapsed();
        (*n >= max && since < lockout).then(|| lockout - since)
    }

    /// Count a failure; returns true when this failure locks the key.
    fn fail(&self, key: &str, max: u32, lockout: Duration) -> bool {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, t)| t.elapsed() < lockout);
        }
        let e = map.entry(key.to_owned()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= lockout {
            *e = (0, Instant::now());
        }
        e.0 += 1;
        e.1 = Instant::now();
        e.0 == max
    }

    fn clear(&self, key: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Forget every key starting with `prefix`; returns how many were locked.
    fn clear_prefix(&self, prefix: &str, max: u32, lockout: Duration) -> usize {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut locked = 0;
        map.retain(|k, (n, t)| {
            let hit = k.starts_with(prefix);
            locked += usize::from(hit && *n >= max && t.elapsed() < lockout);
            !hit
        });
        locked
    }

    /// Keys locked now.
    fn locked_count(&self, max: u32, lockout: Duration) -> usize {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|(n, t)| *n >= max && t.elapsed() < lockout).count()
    }
}

/// A small time-bounded cache.
struct TtlCache<K, V> {
    inner: quick_cache::sync::Cache<K, (V, Instant)>,
    ttl: Duration,
}

impl<K: Eq + std::hash::Hash + Clone, V: Clone> TtlCache<K, V> {
    fn new(capacity: usize, ttl: Duration) -> Self {
        TtlCache { inner: quick_cache::sync::Cache::new(capacity), ttl }
    }

    fn get(&self, k: &K) -> Option<V> {
        match self.inner.get(k) {
            Some((v, at)) if at.elapsed() < self.ttl => Some(v),
            Some(_) => {
                self.inner.remove(k);
                None
            }
            None => None,
        }
    }

    fn insert(&self, k: K, v: V) {
        self.inner.insert(k, (v, Instant::now()));
    }

    fn clear(&self) {
        self.inner.clear();
    }
}

/// Password hashing, process-wide: argon2id takes ~19 MiB and tens of milliseconds of CPU
/// per call, so a flood of logins must queue, not multiply them. The work runs on a few
/// dedicated threads (one per CPU): the allocator keeps freed memory per thread, so hashing
/// on the shared blocking pool would leave ~19 MiB behind on every thread it ever touched.
struct HashPool {
    slots: Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    jobs: Mutex<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

/// Hashes that may wait for a slot; beyond this a login is refused with `429` at once.
const HASH_QUEUE: usize = 64;

static HASH_POOL: std::sync::LazyLock<HashPool> = std::sync::LazyLock::new(|| {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..threads {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new().name(format!("berth-hash-{i}")).spawn(move || {
            loop {
                let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
        if let Err(e) = spawned {
            warn!(error = %e, "could not start a password-hashing thread");
        }
    }
    HashPool {
        slots: Arc::new(tokio::sync::Semaphore::new(threads)),
        waiting: Default::default(),
        jobs: Mutex::new(tx),
    }
});

/// Counts a waiter while it waits (also when its request is dropped).
struct Waiting;

impl Drop for Waiting {
    fn drop(&mut self) {
        HASH_POOL.waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Run password hashing or verification on the hashing threads, at most one per CPU at a
/// time with at most [`HASH_QUEUE`] waiting: beyond that [`AuthError::Busy`] (`429` +
/// `Retry-After`). Every argon2 call in Berth goes through here.
pub async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
    let busy = || AuthError::Busy { retry_after: Duration::from_secs(1) };
    let pool = &*HASH_POOL;
    if pool.waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= HASH_QUEUE {
        pool.waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        return Err(busy());
    }
    let waiting = Waiting;
    let slot = pool.slots.clone().acquire_owned().await.map_err(|_| busy())?;
    drop(waiting);
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The slot is held until the work is done, even if the request goes away meanwhile, so
    // abandoned requests cannot queue hashing beyond the slots.
    let job: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = tx.send(work());
        drop(slot);
    });
    pool.jobs.lock().unwrap_or_else(|e| e.into_inner()).send(job).map_err(|_| busy())?;
    rx.await.map_err(|_| busy())
}

/// A credential check through [`hashing`].
async fn off_thread(check: impl FnOnce() -> bool + Send + 'static) -> Result<bool, AuthError> {
    hashing(check).await
}

/// Per-key gates for credential checks in progress: the gate and how many requests hold
/// or wait for it.
#[derive(Default)]
struct InFlight {
    gates: Mutex<HashMap<[u8; 32], (Gate, usize)>>,
}

/// One key's gate.
type Gate = Arc<tokio::sync::Mutex<()>>;

/// A request's place at a key's gate; dropping it (also when the request is cancelled while
/// waiting) opens the gate and forgets it once nobody else holds or waits for it.
struct Flight<'a> {
    owner: &'a InFlight,
    key: [u8; 32],
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl InFlight {
    /// Wait until no other check of `key` runs, then hold the gate.
    async fn enter(&self, key: [u8; 32]) -> Flight<'_> {
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
            let entry = gates.entry(key).or_default();
            entry.1 += 1;
            entry.0.clone()
        };
        let mut flight = Flight { owner: self, key, guard: None };
        flight.guard = Some(gate.lock_owned().await);
        flight
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.guard = None;
        let mut gates = self.owner.gates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = gates.get_mut(&self.key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                gates.remove(&self.key);
            }
        }
    }
}

/// How often the signing keys are re-read from the store.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// What [`Auth::bootstrap_admin`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// `admin` was created; with the generated password when none was configured.
    Created {
        /// The password to print once, if Berth made it up.
        generated: Option<String>,
    },
    /// `admin` already existed (or another replica created it just now).
    Exists,
}

/// The access service. Cheap to share behind an `Arc`.
pub struct Auth {
    store: Arc<dyn AccessStore>,
    cfg: AuthConfig,
    keys: Arc<KeyRing>,
    /// Verified `(name, secret)` pairs by SHA-256, so argon2 runs once per TTL, not per request.
    credentials: TtlCache<[u8; 32], ()>,
    /// Refused `(name, secret)` pairs, same key: repeating a wrong secret costs no hash.
    refused: TtlCache<[u8; 32], ()>,
    principals: TtlCache<String, Principal>,
    projects: TtlCache<String, Option<ProjectRecord>>,
    policies: TtlCache<String, Option<Arc<RepoPolicy>>>,
    tokens: TtlCache<[u8; 32], Arc<Claims>>,
    /// Credential checks in progress, by the same key as `credentials`: concurrent requests
    /// with the same credentials wait for one check instead of each running argon2.
    in_flight: InFlight,
    limiter: Limiter,
    /// Locks reached since start (for metrics).
    lockouts: std::sync::atomic::AtomicU64,
    last_key_reload: Mutex<Option<Instant>>,
    events: EventBuffer,
    oidc: Option<oidc::OidcClient>,
    ldap: Option<ldap::LdapClient>,
    /// The file's settings with those changed at run time applied.
    runtime: std::sync::RwLock<RuntimeSettings>,
    /// Seals access keys' secrets (SigV4 needs them back); without it there are none.
    sealer: Option<Arc<seal::Sealer>>,
    /// Checks robots' federated identity tokens (and caches issuers' keys).
    federation: federation::Verifier,
    /// Held (written) while `BERTH_ADMIN_PASSWORD` is being applied at start: sign-ins as
    /// `admin` wait for it (see [`Auth::reapply_admin_password`]).
    admin_pending: Arc<tokio::sync::RwLock<()>>,
}

impl Auth {
    /// Open the service: load (or, on first start, create) the signing keys and start the
    /// audit writer.
    pub async fn open(store: Arc<dyn AccessStore>, cfg: AuthConfig) -> Result<Auth, AuthError> {
        let newest = store.ensure_signing_key(&token::new_signing_key(now_ms())).await?;
        let mut records = store.signing_keys().await?;
        if records.is_empty() {
            records.push(newest);
        }
        let keys = Arc::new(KeyRing::new(&records, &cfg.issuer)?);
        // Learn rotations made elsewhere (`berth token-key rotate`, another replica) within seconds.
        let (weak, reload_store) = (Arc::downgrade(&keys), store.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEY_RELOAD_INTERVAL).await;
                let Some(keys) = weak.upgrade() else { return };
                match reload_store.signing_keys().await {
                    Ok(r) if !r.is_empty() => {
                        if let Err(e) = keys.reload(&r) {
                            warn!(error = %e, "failed to reload token signing keys");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "failed to read token signing keys"),
                }
            }
        });
        let ttl = cfg.credential_cache_ttl;
        let log: Arc<dyn berth_meta::EventLog> = store.clone();
        let stored: Vec<(String, serde_json::Value)> = store
            .settings()
            .await?
            .into_iter()
            .map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(serde_json::Value::Null)))
            .collect();
        let runtime = std::sync::RwLock::new(RuntimeSettings::with_stored(&cfg, &stored));
        Ok(Auth {
            runtime,
            sealer: None,
            federation: federation::Verifier::default(),
            admin_pending: Arc::default(),
            events: EventBuffer::start(log, Duration::from_secs(1)),
            store,
            keys,
            credentials: TtlCache::new(10_000, ttl),
            refused: TtlCache::new(10_000, ttl),
            principals: TtlCache::new(10_000, ttl.min(Duration::from_secs(10))),
            projects: TtlCache::new(10_000, Duration::from_secs(5)),
            policies: TtlCache::new(10_000, Duration::from_secs(5)),
            tokens: TtlCache::new(50_000, Duration::from_secs(60)),
            in_flight: InFlight::default(),
            limiter: Limiter::default(),
            lockouts: Default::default(),
            last_key_reload: Mutex::new(None),
            oidc: None,
            ldap: None,
            cfg,
        })
    }

    /// Enable access keys (AWS SigV4 for the ECR API), their secrets sealed by `sealer`.
    pub fn with_sealer(mut self, sealer: Arc<seal::Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    fn sealer(&self) -> Result<&seal::Sealer, AuthError> {
        self.sealer.as_deref().ok_or_else(|| AuthError::Refused("access keys are not enabled on this server".into()))
    }

    /// A new access key for `account` (a user or robot name): `(id, secret)`; the secret is
    /// shown once and kept sealed.
    pub async fn create_access_key(&self, account: &str, origin: &Origin) -> Result<(String, String), AuthError> {
        const MAX_KEYS: usize = 2; // as AWS: two, so that one can be rotated at a time
        if self.store.access_keys(account).await?.len() >= MAX_KEYS {
            return Err(AuthError::Conflict(format!(
                "{account} has {MAX_KEYS} access keys already: delete one first (keep two at most, to rotate them)"
            )));
        }
        let (id, secret) = secret::new_access_key();
        let k = berth_meta::AccessKeyRecord {
            sealed_secret: self.sealer()?.seal(&secret, &format!("access-key:{id}")),
            id: id.clone(),
            account: account.to_owned(),
            active: true,
            created_at: now_ms(),
        };
        self.store.create_access_key(&k, origin).await?;
        Ok((id, secret))
    }

    /// The access keys of `account`, oldest first.
    pub async fn access_keys(&self, account: &str) -> Result<Vec<berth_meta::AccessKeyRecord>, AuthError> {
        Ok(self.store.access_keys(account).await?)
    }

    /// A robot's workload identity federation, if it has one.
    pub async fn robot_federation(&self, robot_id: i64) -> Result<Option<federation::Federation>, AuthError> {
        match self.store.robot_federation(robot_id).await? {
            Some(text) => Ok(Some(serde_json::from_str(&text).map_err(|e| {
                AuthError::Store(berth_meta::MetaError::Corrupt(format!("federation of robot {robot_id}: {e}")))
            })?)),
            None => Ok(None),
        }
    }

    /// Set (checked first) or with `None` remove a robot's trust rules.
    pub async fn set_robot_federation(
        &self,
        robot_id: i64,
        fed: Option<&federation::Federation>,
        origin: &Origin,
    ) -> Result<(), AuthError> {
        let text = match fed.filter(|f| !f.rules.is_empty()) {
            Some(f) => {
                f.validate().map_err(AuthError::Refused)?;
                Some(serde_json::to_string(f).map_err(|e| AuthError::Refused(e.to_string()))?)
            }
            None => None,
        };
        self.store.put_robot_federation(robot_id, text.as_deref(), now_ms(), origin).await?;
        self.invalidate();
        Ok(())
    }

    /// (De)activate one of `account`'s access keys.
    pub async fn set_access_key_active(
        &self,
        account: &str,
        id: &str,
        active: bool,
        origin: &Origin,
    ) -> Result<(), AuthError> {
        self.own_key(account, id).await?;
        self.store.set_access_key_active(id, active, now_ms(), origin).await?;
        Ok(())
    }

    /// Delete one of `account`'s access keys.
    pub async fn delete_access_key(&self, account: &str, id: &str, origin: &Origin) -> Result<(), AuthError> {
        self.own_key(account, id).await?;
        self.store.delete_access_key(id, now_ms(), origin).await?;
        Ok(())
    }

    async fn own_key(&self, account: &str, id: &str) -> Result<(), AuthError> {
        match self.store.access_key(id).await? {
            Some(k) if k.account == account => Ok(()),
            _ => Err(AuthError::NotFound(format!("{account} has no access key {id}"))),
        }
    }

    /// Who signed a SigV4 request for `service`, at `now` (Unix seconds): its access key
    /// must exist, be active, open with the key file, verify, and belong to an account that
    /// may still sign in. `Ok(Err(_))` is a refusal in AWS's words.
    pub async fn sigv4_principal(
        &self,
        req: &sigv4::SignedRequest<'_>,
        service: &str,
        now: i64,
    ) -> Result<Result<Principal, sigv4::SigError>, AuthError> {
        let c = match req.credential() {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let unknown = || {
            sigv4::SigError::Token(
                "The security token included in the request is invalid: no such access key, or it is inactive".into(),
            )
        };
        let Some(k) = self.store.access_key(&c.access_key).await?.filter(|k| k.active) else {
            return Ok(Err(unknown()));
        };
        let secret = match self.sealer()?.open(&k.sealed_secret, &format!("access-key:{}", k.id)) {
            Ok(s) => s,
            Err(e) => {
                warn!(key = %k.id, error = %e, "an access key's secret does not open");
                return Ok(Err(unknown()));
            }
        };
        if let Err(e) = req.verify(&c, &secret, service, now) {
            return Ok(Err(e));
        }
        match self.principal_by_name(&k.account).await? {
            Some(p) => Ok(Ok(p)),
            None => Ok(Err(unknown())),
        }
    }

    /// Enable OIDC login.
    pub fn with_oidc(mut self, cfg: oidc::OidcConfig) -> Self {
        self.oidc = Some(oidc::OidcClient::new(cfg));
        self
    }

    /// The OIDC client, when OIDC login is configured.
    pub fn oidc(&self) -> Option<&oidc::OidcClient> {
        self.oidc.as_ref()
    }

    /// Enable LDAP sign-in.
    pub fn with_ldap(mut self, client: ldap::LdapClient) -> Self {
        self.ldap = Some(client);
        self
    }

    /// The LDAP client, when LDAP sign-in is configured.
    pub fn ldap(&self) -> Option<&ldap::LdapClient> {
        self.ldap.as_ref()
    }

    /// Create or refresh the Berth user of a directory entry (its groups, and its
    /// administrator right when an admin group is configured).
    async fn ldap_user(&self, lu: &ldap::LdapUser) -> Result<UserRecord, AuthError> {
        let l = self.ldap.as_ref().ok_or_else(|| AuthError::Refused("LDAP is not configured".into()))?;
        let subject = format!("ldap:{}", lu.dn);
        let admin = l.is_admin(lu);
        let now = now_ms();
        let origin = Origin::new(&lu.username, None);
        if let Some(u) = self.store.user_by_oidc_subject(&subject).await? {
            let mut changed = false;
            if u.groups != lu.groups {
                changed |= self.store.set_user_groups(u.id, &lu.groups, now, &origin).await?;
            }
            if l.config().group_admin_dn.is_some() && admin != u.sysadmin {
                changed |= self.store.set_sysadmin(u.id, admin, now, &origin).await?;
            }
            if changed {
                self.invalidate();
            }
            return self
                .store
                .user_by_name(&u.username)
                .await?
                .ok_or_else(|| AuthError::Refused("the user vanished".into()));
        }
        if let Some(other) = self.store.user_by_name(&lu.username).await? {
            return Err(AuthError::Refused(format!(
                "the username {:?} belongs to a {} account in Berth, not to LDAP's {}",
                other.username,
                if other.oidc_subject.is_some() { "single sign-on" } else { "local" },
                lu.dn
            )));
        }
        let nu = berth_meta::NewUser {
            username: lu.username.clone(),
            email: lu.email.clone(),
            realname: lu.realname.clone(),
            comment: "signed in through LDAP".into(),
            password_hash: None,
            sysadmin: admin,
            oidc_subject: Some(subject),
            groups: lu.groups.clone(),
        };
        self.store.create_user(&nu, now, &origin).await?;
        self.invalidate();
        self.store.user_by_name(&lu.username).await?.ok_or_else(|| AuthError::Refused("the new user vanished".into()))
    }

    /// Create the Berth user of LDAP uid `uid` before it first signs in (Harbor's
    /// `/ldap/users/import`); `false` if LDAP has no such user.
    pub async fn ldap_import(&self, uid: &str) -> Result<bool, AuthError> {
        let l = self.ldap.as_ref().ok_or_else(|| AuthError::Refused("LDAP is not configured".into()))?;
        let found = l.user(uid).await.map_err(|e| AuthError::Unavailable(e.to_string()))?;
        match found {
            Some(lu) => self.ldap_user(&lu).await.map(|_| true),
            None => Ok(false),
        }
    }

    /// The settings of the file (see [`Auth::settings`] for those that change at run time).
    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    /// The settings that can change at run time, as they are now.
    pub fn settings(&self) -> RuntimeSettings {
        *self.runtime.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Change runtime settings (`(Harbor key, value)`, each checked first: nothing is stored
    /// unless all are valid); stored and logged in one transaction, applied here at once and
    /// by other replicas when they see the event ([`Auth::apply_settings`]).
    pub async fn change_settings(
        &self,
        changes: &[(String, serde_json::Value)],
        origin: &Origin,
    ) -> Result<Result<RuntimeSettings, String>, AuthError> {
        let mut check = self.settings();
        for (k, v) in changes {
            if let Err(e) = check.set(k, v) {
                return Ok(Err(e));
            }
        }
        let rows: Vec<(String, String)> = changes.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        let all = self.store.put_settings(&rows, now_ms(), origin).await?;
        let all: Vec<(String, serde_json::Value)> =
            all.into_iter().map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(serde_json::Value::Null))).collect();
        Ok(Ok(self.apply_settings(&all)))
    }

    /// A stored setting that is not one of [`RuntimeSettings::KEYS`] but a document of its own
    /// ([`RuntimeSettings::DOCUMENTS`], e.g. ECR's registry scanning configuration).
    pub async fn stored_setting(&self, key: &str) -> Result<Option<serde_json::Value>, AuthError> {
        Ok(self
            .store
            .settings()
            .await?
            .into_iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| serde_json::from_str(&v).ok()))
    }

    /// Store such a document (checked by its owner), logged as `settings.changed`.
    pub async fn put_stored_setting(
        &self,
        key: &'static str,
        value: &serde_json::Value,
        origin: &Origin,
    ) -> Result<(), AuthError> {
        debug_assert!(RuntimeSettings::DOCUMENTS.contains(&key));
        self.store.put_settings(&[(key.to_owned(), value.to_string())], now_ms(), origin).await?;
        Ok(())
    }

    /// Apply every runtime setting as stored (`settings.changed`'s `data.settings`) over the
    /// file's.
    pub fn apply_settings(&self, stored: &[(String, serde_json::Value)]) -> RuntimeSettings {
        let s = RuntimeSettings::with_stored(&self.cfg, stored);
        *self.runtime.write().unwrap_or_else(|e| e.into_inner()) = s;
        s
    }

    /// The event log behind the service (for the event-log consumers and operators' queries).
    pub fn event_log(&self) -> Arc<dyn berth_meta::EventLog> {
        self.store.clone()
    }

    /// The batching writer of events that are not part of a stored change (pulls, logins).
    pub fn events(&self) -> &EventBuffer {
        &self.events
    }

    /// Forget cached principals, projects and policies (after a change through the API).
    pub fn invalidate(&self) {
        self.credentials.clear();
        self.refused.clear();
        self.principals.clear();
        self.projects.clear();
        self.policies.clear();
    }

    /// On first start: create the system administrator `admin` with `password`, or with a
    /// generated password that is returned (to print once). See also
    /// [`Auth::reapply_admin_password`].
    pub async fn bootstrap_admin(&self, password: Option<&str>) -> Result<AdminBootstrap, AuthError> {
        if self.store.user_by_name("admin").await?.is_some() {
            return Ok(AdminBootstrap::Exists);
        }
        let (pw, generated) = match password {
            Some(p) if !p.is_empty() => (p.to_owned(), false),
            _ => (secret::new_secret(), true),
        };
        let u = berth_meta::NewUser {
            username: "admin".into(),
            realname: "System administrator".into(),
            password_hash: Some(secret::hash_password(&pw)),
            sysadmin: true,
            ..Default::default()
        };
        match self.store.create_user(&u, now_ms(), &Origin::system()).await {
            Ok(_) => {}
            // Another replica created it at the same moment.
            Err(MetaError::Conflict(_)) => return Ok(AdminBootstrap::Exists),
            Err(e) => return Err(e.into()),
        }
        info!("created the system administrator account `admin`");
        Ok(AdminBootstrap::Created { generated: generated.then_some(pw) })
    }

    /// An `admin` who never signed in takes the configured password (the generated one may
    /// have been lost with the terminal that showed it). Checking costs a password hash, so
    /// it runs beside serving rather than before it; sign-ins as `admin` wait until it is done.
    pub async fn reapply_admin_password(self: &Arc<Self>, password: &str) {
        let pending = self.admin_pending.clone().write_owned().await;
        let (auth, password) = (self.clone(), password.to_owned());
        tokio::spawn(async move {
            if let Err(e) = auth.apply_admin_password(&password).await {
                warn!(error = %e, "could not apply BERTH_ADMIN_PASSWORD to `admin`");
            }
            drop(pending);
        });
    }

    async fn apply_admin_password(&self, password: &str) -> Result<(), AuthError> {
        let Some(admin) = self.store.user_by_name("admin").await? else { return Ok(()) };
        if password.is_empty() || admin.first_login_at.is_some() {
            return Ok(());
        }
        let (given, hash) = (password.to_owned(), admin.password_hash.clone());
        let same = off_thread(move || hash.as_deref().is_some_and(|h| secret::verify_password(&given, h))).await?;
        if !same {
            let pw = password.to_owned();
            let hash = hashing(move || secret::hash_password(&pw)).await?;
            self.store.set_password(admin.id, &hash, now_ms(), &Origin::system()).await?;
            self.invalidate();
            info!("set the password of `admin` (who has never signed in) from BERTH_ADMIN_PASSWORD");
        }
        Ok(())
    }

    fn cred_key(kind: &str, name: &str, secret: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [kind, name, secret] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    /// Check a username (or robot name) and password (or CLI secret, or robot secret).
    /// Failures are counted per account and per address, and audited; too many lock both.
    pub async fn login(&self, username: &str, password: &str, client_ip: Option<&str>) -> Result<Principal, AuthError> {
        let (max, lockout) = (self.cfg.login_max_failures.max(1), self.cfg.login_lockout);
        // Failures count per (account, address): a stranger elsewhere cannot lock out an
        // account, its owner or the CI robot using it; and per address across accounts, so
        // one address cannot try many accounts.
        let account_key = account_lock_key(username, client_ip);
        let ip_key = client_ip.map(|ip| format!("ip:{ip}"));
        let key = Self::cred_key("login", username, password);
        if let Some(retry_after) = self
            .limiter
            .locked(&account_key, max, lockout)
            .or_else(|| ip_key.as_deref().and_then(|k| self.limiter.locked(k, max * 4, lockout)))
        {
            self.audit_login(username, client_ip, "failure", Some("refused: locked after too many failures"));
            return Err(AuthError::Locked { retry_after });
        }
        if self.credentials.get(&key).is_some()
            && let Some(p) = self.principal_by_name(username).await?
        {
            return Ok(p);
        }
        if username == "admin" {
            // Not before BERTH_ADMIN_PASSWORD is applied (a moment after start).
            drop(self.admin_pending.read().await);
        }
        // When a cached check expires under load, every concurrent request with those
        // credentials misses at once; let one of them check and the others wait for it.
        let _flight = self.in_flight.enter(key).await;
        if self.credentials.get(&key).is_some()
            && let Some(p) = self.principal_by_name(username).await?
        {
            return Ok(p);
        }
        let checked = if self.refused.get(&key).is_some() {
            Err(AuthError::BadCredentials)
        } else {
            self.check_credentials(username, password).await
        };
        match checked {
            Ok(p) => {
                self.limiter.clear(&account_key);
                self.credentials.insert(key, ());
                Ok(p)
            }
            Err(AuthError::BadCredentials) => {
                self.refused.insert(key, ());
                let locked = self.limiter.fail(&account_key, max, lockout)
                    | ip_key.as_deref().is_some_and(|k| self.limiter.fail(k, max * 4, lockout));
                if locked {
                    self.lockouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                warn!(user = %username, client.ip = client_ip.unwrap_or(""), locked, "failed login");
                let detail = if locked {
                    "invalid credentials; locked for this address".to_owned()
                } else {
                    "invalid credentials".to_owned()
                };
                self.audit_login(username, client_ip, "failure", Some(&detail));
                Err(AuthError::BadCredentials)
            }
            Err(e) => {
                if matches!(e, AuthError::RobotDisabled(_) | AuthError::RobotExpired { .. }) {
                    self.audit_login(username, client_ip, "failure", Some(&e.to_string()));
                }
                Err(e)
            }
        }
    }

    /// Set `username`'s password offline (`berth admin reset-password`): a given one, or a
    /// generated one that is returned. The user must exist and be a local account.
    pub async fn reset_password(&self, username: &str, password: Option<&str>) -> Result<Option<String>, AuthError> {
        let Some(u) = self.store.user_by_name(username).await? else {
            return Err(AuthError::Refused(format!("there is no user named {username:?}")));
        };
        let (pw, generated) = match password {
            Some(p) => {
                secret::check_password_strength(p).map_err(AuthError::Refused)?;
                (p.to_owned(), false)
            }
            None => (secret::new_secret(), true),
        };
        let origin = Origin::new("berth admin reset-password", None);
        self.store.set_password(u.id, &secret::hash_password(&pw), now_ms(), &origin).await?;
        Ok(generated.then_some(pw))
    }

    /// Lift every login lock of `username` on this process; returns how many there were.
    /// [`Auth::unlock`] does it on every replica.
    pub fn unlock_local(&self, username: &str) -> usize {
        let (max, lockout) = (self.cfg.login_max_failures.max(1), self.cfg.login_lockout);
        self.limiter.clear_prefix(&account_lock_prefix(username), max, lockout)
    }

    /// Lift the login locks of `username` everywhere: here at once, on other replicas when
    /// their follower sees the `user.changed` (`op` `unlock`) event this logs.
    pub async fn unlock(&self, username: &str, origin: &Origin) -> Result<usize, MetaError> {
        let n = self.unlock_local(username);
        let e = NewEvent::new(EventKind::UserChanged, now_ms(), origin)
            .data(serde_json::json!({ "op": "unlock", "name": username }));
        self.store.append_events(&[e]).await?;
        Ok(n)
    }

    /// Logins refused so far because a lock was reached, and the keys locked now.
    pub fn lock_stats(&self) -> (u64, usize) {
        let (max, lockout) = (self.cfg.login_max_failures.max(1), self.cfg.login_lockout);
        (self.lockouts.load(std::sync::atomic::Ordering::Relaxed), self.limiter.locked_count(max, lockout))
    }

    fn audit_login(&self, username: &str, client_ip: Option<&str>, result: &str, detail: Option<&str>) {
        let (kind, key) =
            if result == "success" { (EventKind::LoginSucceeded, "how") } else { (EventKind::LoginFailed, "detail") };
        let origin = Origin::new(username, client_ip.map(str::to_owned));
        let data = detail.map(|d| serde_json::json!({ key: d })).unwrap_or_default();
        self.events.push(NewEvent::new(kind, now_ms(), &origin).data(data));
    }

    /// Record a successful login (token endpoint, OIDC) in the audit log.
    pub fn audit_login_success(&self, p: &Principal, client_ip: Option<&str>, how: &str) {
        self.audit_login(p.name(), client_ip, "success", Some(how));
    }

    async fn check_credentials(&self, username: &str, password: &str) -> Result<Principal, AuthError> {
        if username == "AWS" {
            // The password of ECR's GetAuthorizationToken: a token bound to its account.
            let c = self.verify(password, typ::ECR_LOGIN).await.map_err(|_| AuthError::BadCredentials)?;
            return self.holder(&c, false).await;
        }
        // A login password (`berth login-password`, `POST …/login-password`): a short-lived
        // token bound to its account, good as that account's password.
        if password.bytes().filter(|b| *b == b'.').count() == 2
            && let Ok(c) = self.verify(password, typ::ECR_LOGIN).await
        {
            // Void once the account's password or secret changed (unlike ECR's, whose access keys
            // are not the account's credentials).
            let p = self.holder(&c, true).await?;
            return if p.name() == username { Ok(p) } else { Err(AuthError::BadCredentials) };
        }
        if username.starts_with("robot$") {
            let Some(r) = self.store.robot_by_name(username).await? else {
                return Err(AuthError::BadCredentials);
            };
            // An identity token of an issuer the robot trusts (workload identity federation).
            if password.bytes().filter(|b| *b == b'.').count() == 2
                && let Some(fed) = self.robot_federation(r.id).await?
            {
                return match self.federation.verify(&fed, password, now_ms() / 1000).await {
                    Ok(claims) => {
                        info!(robot = %username, iss = %claims["iss"], sub = %claims["sub"], "federated identity accepted");
                        self.robot_principal(r)
                    }
                    Err(why) => {
                        Err(AuthError::Refused(format!("{username} does not accept this identity token: {why}")))
                    }
                };
            }
            let (pw, hash) = (password.to_owned(), r.secret_hash.clone());
            if !off_thread(move || secret::verify_stored(&pw, &hash)).await? {
                return Err(AuthError::BadCredentials);
            }
            return self.robot_principal(r);
        }
        let pw = password.to_owned();
        let found = self.store.user_by_name(username).await?;
        // With LDAP, users Berth does not hold locally are LDAP's (a CLI secret of an LDAP user
        // is checked first, without asking the directory).
        if let Some(l) = &self.ldap
            && found.as_ref().is_none_or(|u| u.oidc_subject.as_deref().is_some_and(|s| s.starts_with("ldap:")))
        {
            if let Some(u) = &found
                && let Some(h) = u.cli_secret_hash.clone()
            {
                let (p2, h2) = (pw.clone(), h);
                if off_thread(move || secret::verify_stored(&p2, &h2)).await? {
                    return self.user_principal(u.clone()).await;
                }
            }
            let lu = match l.authenticate(username, password).await {
                Ok(Some(lu)) => lu,
                Ok(None) => return Err(AuthError::BadCredentials),
                Err(e) => return Err(AuthError::Unavailable(e.to_string())),
            };
            let u = self.ldap_user(&lu).await?;
            if u.first_login_at.is_none() {
                self.store.mark_first_login(u.id, now_ms()).await?;
            }
            return self.user_principal(u).await;
        }
        let Some(u) = found else {
            // Same work as for a real user, so timing does not tell which names exist.
            off_thread(move || secret::verify_password(&pw, secret::dummy_password_hash())).await?;
            return Err(AuthError::BadCredentials);
        };
        let (secret_hash, password_hash) = (u.cli_secret_hash.clone(), u.password_hash.clone());
        let ok = off_thread(move || {
            secret_hash.as_deref().is_some_and(|h| secret::verify_stored(&pw, h))
                || password_hash.as_deref().is_some_and(|h| secret::verify_password(&pw, h))
        })
        .await?;
        if !ok {
            return Err(AuthError::BadCredentials);
        }
        if u.first_login_at.is_none() {
            self.store.mark_first_login(u.id, now_ms()).await?;
        }
        self.user_principal(u).await
    }

    fn robot_principal(&self, r: RobotRecord) -> Result<Principal, AuthError> {
        if r.disabled {
            return Err(AuthError::RobotDisabled(r.name));
        }
        if r.expires_at >= 0 && r.expires_at <= now_ms() {
            return Err(AuthError::RobotExpired { name: r.name, at: rfc3339(r.expires_at) });
        }
        let perms: Vec<RobotPermission> = serde_json::from_str(&r.permissions)
            .map_err(|e| MetaError::Corrupt(format!("permissions of robot {}: {e}", r.name)))?;
        Ok(Principal::Robot(Arc::new(RobotPrincipal {
            id: r.id,
            name: r.name,
            project_id: r.project_id,
            perms,
            credentials_at: r.credentials_at,
        })))
    }

    async fn user_principal(&self, u: UserRecord) -> Result<Principal, AuthError> {
        let roles = self
            .store
            .memberships(u.id, &u.groups)
            .await?
            .into_iter()
            .filter_map(|(p, r)| Role::from_id(r).map(|r| (p, r)))
            .collect();
        Ok(Principal::User(Arc::new(UserPrincipal {
            id: u.id,
            name: u.username,
            sysadmin: u.sysadmin,
            groups: u.groups,
            roles,
            credentials_at: u.credentials_at,
        })))
    }

    /// The current principal for a user or robot name (for sessions and refresh tokens):
    /// `None` if it no longer exists; an error if the robot is disabled or expired.
    pub async fn principal_by_name(&self, name: &str) -> Result<Option<Principal>, AuthError> {
        if let Some(p) = self.principals.get(&name.to_owned()) {
            return Ok(Some(p));
        }
        let p = if name.starts_with("robot$") {
            match self.store.robot_by_name(name).await? {
                Some(r) => self.robot_principal(r)?,
                None => return Ok(None),
            }
        } else {
            match self.store.user_by_name(name).await? {
                Some(u) => self.user_principal(u).await?,
                None => return Ok(None),
            }
        };
        self.principals.insert(name.to_owned(), p.clone());
        Ok(Some(p))
    }

    /// A project by name (cached for a few seconds).
    pub async fn project(&self, name: &str) -> Result<Option<ProjectRecord>, MetaError> {
        if let Some(p) = self.projects.get(&name.to_owned()) {
            return Ok(p);
        }
        let p = self.store.project_by_name(name).await?;
        self.projects.insert(name.to_owned(), p.clone());
        Ok(p)
    }

    async fn policy(&self, repo: &str) -> Result<Option<Arc<RepoPolicy>>, MetaError> {
        if let Some(p) = self.policies.get(&repo.to_owned()) {
            return Ok(p);
        }
        let p = match self.store.repo_policy(repo).await? {
            // Stored documents were validated when they were put.
            Some(doc) => RepoPolicy::parse(&doc).ok().map(Arc::new),
            None => None,
        };
        self.policies.insert(repo.to_owned(), p.clone());
        Ok(p)
    }

    /// What `p` may do in `project` by its roles, robot permissions or the project's visibility.
    fn perms_in(&self, p: &Principal, project: &ProjectRecord) -> PermSet {
        let base = if project.settings.public() { rbac::public_perms() } else { PermSet::NONE };
        match p {
            Principal::Operator => PermSet::all(),
            Principal::User(u) if u.sysadmin => PermSet::all(),
            Principal::User(u) => {
                u.roles.iter().filter(|(pid, _)| *pid == project.id).fold(base, |acc, (_, r)| acc.union(r.perms()))
            }
            Principal::Robot(r) => base.union(rbac::robot_perms(&r.perms, &project.name)),
            Principal::Anonymous | Principal::Token(_) => base,
        }
    }

    /// The one authorization decision: may `p` do `need` on `target`? Every surface — `/v2`,
    /// the management API, the CLI through it — asks this and only this.
    ///
    /// - [`Target::System`]: [`Perm::Administer`] needs a system administrator;
    ///   [`Perm::CreateProject`] a user allowed to create projects; [`Perm::Read`] anybody
    ///   authenticated.
    /// - [`Target::Project`]: the caller's roles or robot permissions there, plus what the
    ///   project's visibility gives everybody.
    /// - [`Target::Repository`]: the same in its project, then the repository policy for the
    ///   ECR action: a `Deny` wins over everything, an `Allow` grants. A missing project is
    ///   created on push when the server does that and `p` may create projects; otherwise it
    ///   is [`Denied::NoProject`] for authenticated callers (anonymous ones learn nothing
    ///   about which projects exist).
    ///
    /// A refusal says why: [`Denied::NeedsAuth`] (anonymous), [`Denied::Hidden`] (may not
    /// even see the project), [`Denied::Forbidden`]; [`Denied::Unavailable`] and
    /// [`Denied::Failed`] are no decision at all (the data could not be read).
    pub async fn decide(&self, p: &Principal, target: Target<'_>, need: Perm) -> Result<(), Denied> {
        match target {
            Target::System => {
                let ok = match need {
                    Perm::CreateProject => self.may_create_projects(p),
                    Perm::Read => p.is_authenticated(),
                    _ => p.is_sysadmin(),
                };
                if ok {
                    Ok(())
                } else if !p.is_authenticated() {
                    Err(Denied::NeedsAuth)
                } else if need == Perm::CreateProject {
                    Err(Denied::Forbidden("only system administrators may create projects here".into()))
                } else {
                    Err(Denied::Forbidden("only system administrators may do this".into()))
                }
            }
            Target::Project(project) => {
                let perms = self.perms_in(p, project);
                if perms.has(need) { Ok(()) } else { Err(refusal(p, perms, &project.name, need)) }
            }
            Target::Repository(repo, ecr) => self.decide_repo(p, repo, need, ecr).await,
        }
    }

    /// May a user create projects?
    fn may_create_projects(&self, p: &Principal) -> bool {
        match p {
            Principal::Operator => true,
            Principal::User(u) => u.sysadmin || !self.settings().project_creation_admin_only,
            _ => false,
        }
    }

    /// [`Auth::decide`] for a repository.
    async fn decide_repo(&self, p: &Principal, repo: &str, need: Perm, ecr: EcrAction) -> Result<(), Denied> {
        let project_name = project_of(repo);
        let internal = |e: MetaError| {
            warn!(error = %e, "authorization lookup failed");
            Denied::from(e)
        };
        let project = match self.project(project_name).await.map_err(internal)? {
            Some(pr) => pr,
            None if !p.is_authenticated() => return Err(Denied::NeedsAuth),
            // A token holder may create it by asking the token service for push (401 → new token).
            None if matches!(p, Principal::Token(_)) && need == Perm::Push && self.cfg.create_projects_on_push => {
                return Err(Denied::Forbidden(format!("the token does not grant push on {repo}")));
            }
            None if need == Perm::Push && self.cfg.create_projects_on_push && self.may_create_projects(p) => {
                let origin = Origin::new(p.name(), None);
                match self.create_project(project_name, p, &ProjectSettings::default(), &origin).await {
                    Ok(_) | Err(MetaError::Conflict(_)) => {}
                    Err(e) => return Err(internal(e)),
                }
                // Re-resolve: the creator is now a member.
                let fresh = match p {
                    Principal::User(u) => self.principal_by_name(&u.name).await.ok().flatten(),
                    _ => None,
                };
                return Box::pin(self.decide_repo(fresh.as_ref().unwrap_or(p), repo, need, ecr)).await;
            }
            None => return Err(Denied::NoProject(project_name.to_owned())),
        };
        // A system administrator can always read, replace and delete a policy, so no policy
        // (not even a Deny of everything to everybody) can lock the registry's owners out.
        let managing_policy = matches!(
            ecr,
            EcrAction::GetRepositoryPolicy | EcrAction::SetRepositoryPolicy | EcrAction::DeleteRepositoryPolicy
        );
        if managing_policy && p.is_sysadmin() {
            return Ok(());
        }
        let verdict = match self.policy(repo).await.map_err(internal)? {
            Some(pol) => pol.evaluate(p.policy_name(), ecr),
            None => Verdict::NoOpinion,
        };
        if let Verdict::Deny(sid) = verdict {
            let why = sid.map(|s| format!(" (statement {s:?})")).unwrap_or_default();
            return Err(Denied::Forbidden(format!(
                "{} is denied {} on {repo} by the repository policy{why}",
                p.name(),
                ecr.name()
            )));
        }
        let perms = self.perms_in(p, &project);
        let granted = match p {
            // A token grants what it names, and whatever anybody may do (public projects).
            Principal::Token(c) => token_grants(c, repo, need) || perms.has(need),
            _ => perms.has(need),
        };
        if granted || verdict == Verdict::Allow {
            return Ok(());
        }
        Err(refusal(p, perms, project_name, need))
    }

    /// Issue an access token for the granted subset of `scopes`.
    pub async fn issue_token(&self, p: &Principal, scopes: &[Scope]) -> Result<IssuedToken, AuthError> {
        let mut access: Vec<AccessEntry> = Vec::new();
        for s in scopes {
            let granted: Vec<String> = match s.kind.as_str() {
                "repository" if s.name.parse::<berth_types::RepoName>().is_ok() => {
                    let mut want: Vec<&str> = Vec::new();
                    for a in &s.actions {
                        match a.as_str() {
                            "*" => want.extend(["pull", "push", "delete"]),
                            "pull" | "push" | "delete" => want.push(a),
                            _ => {}
                        }
                    }
                    want.sort_unstable();
                    want.dedup();
                    let mut ok = Vec::new();
                    for a in want {
                        let (perm, ecr) = action_perm(a);
                        match self.decide(p, Target::Repository(&s.name, ecr), perm).await {
                            Ok(()) => ok.push(a.to_owned()),
                            // No token rather than a narrower one while no decision can be made.
                            Err(Denied::Unavailable(m)) => return Err(AuthError::Store(MetaError::Unavailable(m))),
                            Err(_) => {}
                        }
                    }
                    ok
                }
                "registry" if s.name == "catalog" && p.is_sysadmin() => vec!["*".to_owned()],
                _ => Vec::new(),
            };
            if granted.is_empty() {
                continue;
            }
            match access.iter_mut().find(|e| e.kind == s.kind && e.name == s.name) {
                Some(e) => {
                    for g in granted {
                        if !e.actions.contains(&g) {
                            e.actions.push(g);
                        }
                    }
                }
                None => access.push(AccessEntry { kind: s.kind.clone(), name: s.name.clone(), actions: granted }),
            }
        }
        let now = now_ms() / 1000;
        let ttl = self.settings().token_ttl.as_secs().max(1);
        let claims = Claims {
            iss: self.keys.issuer().to_owned(),
            sub: if p.is_authenticated() { p.name().to_owned() } else { String::new() },
            aud: self.cfg.service.clone(),
            exp: now + ttl as i64,
            nbf: now - 1,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            typ: typ::ACCESS.into(),
            kind: p.kind().to_owned(),
            access: access.clone(),
            data: None,
        };
        Ok(IssuedToken { token: self.keys.sign(&claims)?, expires_in: ttl, issued_at: now, access })
    }

    fn signed(
        &self,
        p: &Principal,
        kind: &str,
        ttl: Duration,
        data: Option<serde_json::Value>,
    ) -> Result<String, AuthError> {
        let now = now_ms() / 1000;
        let claims = Claims {
            iss: self.keys.issuer().to_owned(),
            sub: p.name().to_owned(),
            aud: self.cfg.service.clone(),
            exp: now + ttl.as_secs() as i64,
            nbf: now - 1,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            typ: kind.to_owned(),
            kind: p.kind().to_owned(),
            access: Vec::new(),
            data,
        };
        Ok(self.keys.sign(&claims)?)
    }

    /// `(id, credentials stamp)` of a user or robot, which refresh tokens and sessions carry.
    fn identity(p: &Principal) -> Option<(i64, i64)> {
        match p {
            Principal::User(u) => Some((u.id, u.credentials_at)),
            Principal::Robot(r) => Some((r.id, r.credentials_at)),
            _ => None,
        }
    }

    /// The principal a refresh token or session names, if it is still the same account (a
    /// re-created name does not inherit it) and, with `check_stamp`, its password or secret
    /// has not changed since.
    async fn holder(&self, c: &Claims, check_stamp: bool) -> Result<Principal, AuthError> {
        let p = self.principal_by_name(&c.sub).await?.ok_or(AuthError::BadCredentials)?;
        let want = c.data.as_ref().map(|d| (d["id"].as_i64(), d["stamp"].as_i64()));
        match (Self::identity(&p), want) {
            (Some((id, stamp)), Some((Some(wid), Some(wstamp)))) if id == wid && (!check_stamp || stamp == wstamp) => {
                Ok(p)
            }
            _ => Err(AuthError::Token(TokenError::Invalid("the account's credentials changed; log in again".into()))),
        }
    }

    /// A refresh (offline) token for `p`.
    pub fn refresh_token(&self, p: &Principal) -> Result<String, AuthError> {
        self.account_token(p, typ::REFRESH, self.cfg.refresh_ttl)
    }

    /// Whom a refresh token stands for, re-checked now (deleted, disabled or expired
    /// accounts are refused).
    pub async fn redeem_refresh_token(&self, token: &str) -> Result<Principal, AuthError> {
        let c = self.verify(token, typ::REFRESH).await?;
        self.holder(&c, true).await
    }

    /// A web session cookie value for a user.
    pub fn session_token(&self, p: &Principal) -> Result<String, AuthError> {
        self.account_token(p, typ::SESSION, self.settings().session_ttl)
    }

    /// A token of type `kind` bound to `p`'s account id and credentials stamp.
    fn account_token(&self, p: &Principal, kind: &str, ttl: Duration) -> Result<String, AuthError> {
        let (id, stamp) = Self::identity(p).ok_or(AuthError::BadCredentials)?;
        self.signed(p, kind, ttl, Some(serde_json::json!({"id": id, "stamp": stamp})))
    }

    /// How long the password of ECR's `GetAuthorizationToken` is good for (as ECR's: 12 h).
    pub const ECR_LOGIN_TTL: Duration = Duration::from_secs(12 * 3600);

    /// The password ECR's `GetAuthorizationToken` returns for `p` (the registry accepts it
    /// with the username `AWS`): `(password, expires at Unix ms)`.
    pub fn ecr_login_token(&self, p: &Principal) -> Result<(String, i64), AuthError> {
        let t = self.account_token(p, typ::ECR_LOGIN, Self::ECR_LOGIN_TTL)?;
        Ok((t, now_ms() + Self::ECR_LOGIN_TTL.as_millis() as i64))
    }

    /// The principal of a web session.
    pub async fn session_principal(&self, token: &str) -> Result<Principal, AuthError> {
        // A web session is not ended by a new CLI secret made in it; deleting the account ends it.
        let c = self.verify(token, typ::SESSION).await?;
        self.holder(&c, false).await
    }

    /// Sign short-lived state (OIDC login in flight).
    pub fn sign_state(&self, data: serde_json::Value, ttl: Duration) -> Result<String, AuthError> {
        self.signed(&Principal::Anonymous, typ::OIDC_STATE, ttl, Some(data))
    }

    /// A first-time OIDC user's verified identity, signed for the onboarding form (good for
    /// `ttl`): the browser carries it, so any replica can finish the onboarding.
    pub fn sign_onboarding(&self, id: &oidc::Identity, ttl: Duration) -> Result<String, AuthError> {
        let data = serde_json::json!({
            "subject": id.subject, "username": id.username, "email": id.email, "name": id.name, "groups": id.groups,
        });
        self.signed(&Principal::Anonymous, typ::OIDC_ONBOARD, ttl, Some(data))
    }

    /// The identity signed by [`Auth::sign_onboarding`], if the token is genuine and current.
    pub async fn verify_onboarding(&self, token: &str) -> Result<oidc::Identity, AuthError> {
        let d = self.verify(token, typ::OIDC_ONBOARD).await?.data.unwrap_or_default();
        let text = |k: &str| d[k].as_str().unwrap_or("").to_owned();
        let subject = text("subject");
        if subject.is_empty() {
            return Err(AuthError::Oidc("the onboarding token names no identity".into()));
        }
        let groups = d["groups"].as_array().map(|g| g.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect());
        Ok(oidc::Identity {
            subject,
            username: text("username"),
            email: text("email"),
            name: text("name"),
            groups: groups.unwrap_or_default(),
        })
    }

    /// Verify state signed by [`Auth::sign_state`].
    pub async fn verify_state(&self, token: &str) -> Result<serde_json::Value, AuthError> {
        Ok(self.verify(token, typ::OIDC_STATE).await?.data.unwrap_or_default())
    }

    async fn verify(&self, token: &str, want: &str) -> Result<Claims, AuthError> {
        self.maybe_reload_keys(token).await;
        Ok(self.keys.verify(token, &self.cfg.service, want)?)
    }

    /// A key id this replica does not know may be a key another replica made or rotated
    /// in: reload the ring, at most once every few seconds.
    async fn maybe_reload_keys(&self, token: &str) {
        let Some(kid) = KeyRing::kid_of(token) else { return };
        if self.keys.knows(&kid) {
            return;
        }
        {
            let mut last = self.last_key_reload.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                return;
            }
            *last = Some(Instant::now());
        }
        match self.store.signing_keys().await {
            Ok(records) => {
                if let Err(e) = self.keys.reload(&records) {
                    warn!(error = %e, "failed to reload token signing keys");
                }
            }
            Err(e) => warn!(error = %e, "failed to read token signing keys"),
        }
    }

    /// Verify a registry access token (cached by its hash until it would expire anyway).
    pub async fn verify_access_token(&self, token: &str) -> Result<Arc<Claims>, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(c) = self.tokens.get(&key)
            && c.exp > now_ms() / 1000
        {
            return Ok(c);
        }
        let c = Arc::new(self.verify(token, typ::ACCESS).await?);
        self.tokens.insert(key, c.clone());
        Ok(c)
    }

    /// Rotate the signing key: a new key signs from now on; tokens signed by the old one keep
    /// verifying until they expire (old keys are pruned after the refresh-token lifetime).
    pub async fn rotate_signing_key(&self) -> Result<String, AuthError> {
        let key = token::new_signing_key(now_ms());
        let forget_before = now_ms() - self.cfg.refresh_ttl.as_millis() as i64;
        self.store.rotate_signing_key(&key, forget_before).await?;
        self.keys.reload(&self.store.signing_keys().await?)?;
        Ok(key.kid)
    }
}

/// The lock key of failed logins of `username` from `client_ip`.
fn account_lock_key(username: &str, client_ip: Option<&str>) -> String {
    format!("{}{}", account_lock_prefix(username), client_ip.unwrap_or("-"))
}

fn account_lock_prefix(username: &str) -> String {
    format!("u:{}|", username.to_lowercase())
}

/// What an authorization decision is about.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The registry as a whole: users, system robots, the system audit log, jobs, scan-all.
    System,
    /// A project: its settings, members, robot accounts, logs and list of repositories.
    Project(&'a ProjectRecord),
    /// A repository (full name), with the ECR action its repository policy is asked about.
    Repository(&'a str, EcrAction),
}

/// Why `p`, holding `perms` in `project`, may not do `need` there.
fn refusal(p: &Principal, perms: PermSet, project: &str, need: Perm) -> Denied {
    if !p.is_authenticated() {
        return Denied::NeedsAuth;
    }
    let why = format!("{} may not {} in project {project:?}", p.name(), perm_words(need));
    // Anything at all in the project (even only pull) means the caller knows it exists.
    if perms.is_empty() { Denied::Hidden { project: project.to_owned(), why } } else { Denied::Forbidden(why) }
}

/// The permission and ECR action a token action (`pull`, `push`, `delete`) stands for.
pub fn action_perm(action: &str) -> (Perm, EcrAction) {
    match action {
        "push" => (Perm::Push, EcrAction::PutImage),
        "delete" => (Perm::DeleteArtifact, EcrAction::BatchDeleteImage),
        _ => (Perm::Pull, EcrAction::BatchGetImage),
    }
}

fn token_action(need: Perm) -> &'static str {
    match need {
        Perm::Push | Perm::CreateTag => "push",
        Perm::DeleteArtifact | Perm::DeleteTag => "delete",
        _ => "pull",
    }
}

/// Does an access token grant `need` on `repo`?
pub fn token_grants(c: &Claims, repo: &str, need: Perm) -> bool {
    let want = token_action(need);
    c.access.iter().any(|e| e.kind == "repository" && e.name == repo && e.actions.iter().any(|a| a == want || a == "*"))
}

fn perm_words(p: Perm) -> &'static str {
    match p {
        Perm::Pull => "pull",
        Perm::Push => "push",
        Perm::DeleteArtifact => "delete artifacts",
        Perm::CreateTag => "create tags",
        Perm::DeleteTag => "delete tags",
        Perm::Scan => "scan",
        Perm::Read => "read",
        Perm::UpdateProject => "change the project",
        Perm::DeleteProject => "delete the project",
        Perm::ReadMembers => "list members",
        Perm::ManageMembers => "manage members",
        Perm::ReadRobots => "list robot accounts",
        Perm::ManageRobots => "manage robot accounts",
        Perm::ManagePolicy => "manage policies",
        Perm::ReadLogs => "read the audit log",
        Perm::ReadWebhooks => "see webhooks",
        Perm::ManageWebhooks => "manage webhooks",
        Perm::CreateProject => "create projects",
        Perm::Administer => "administer the registry",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_083_200_000), "2026-12-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn limiter_locks_after_max_and_clears() {
        let l = Limiter::default();
        let lock = Duration::from_secs(60);
        assert!(!l.fail("k", 3, lock));
        assert!(!l.fail("k", 3, lock));
        assert!(l.locked("k", 3, lock).is_none());
        assert!(l.fail("k", 3, lock));
        assert!(l.locked("k", 3, lock).is_some());
        l.clear("k");
        assert!(l.locked("k", 3, lock).is_none());
    }

    #[tokio::test]
    async fn in_flight_admits_one_check_per_key_and_forgets_finished_keys() {
        let gates = Arc::new(InFlight::default());
        let first = gates.enter([1; 32]).await;
        // Another key is not held up.
        drop(gates.enter([2; 32]).await);
        // The same key waits for the first holder.
        let g = gates.clone();
        let second = tokio::spawn(async move {
            let _f = g.enter([1; 32]).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "a second check of the same key ran while the first held the gate");
        // A waiter cancelled while waiting leaves nothing behind.
        let g = gates.clone();
        let cancelled = tokio::spawn(async move {
            let _f = g.enter([1; 32]).await;
            unreachable!("the gate is held");
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());
        assert_eq!(gates.gates.lock().unwrap()[&[1; 32]].1, 2, "holder and the one live waiter");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second).await.expect("the waiter got the gate").unwrap();
        assert!(gates.gates.lock().unwrap().is_empty(), "finished keys are forgotten");
    }
}
