//! Berth configuration: a TOML file, `BERTH_…` environment variables and command-line flags,
//! merged in that order of increasing precedence, then validated into a typed [`Config`].
//!
//! Two stages: the raw form ([`RawConfig`]) mirrors the file and rejects unknown keys by
//! name; [`Config`] holds parsed addresses, sizes, durations and backend choices.
//!
//! **Environment rule:** every key has a variable named `BERTH_` + the key path in upper case
//! joined by `_`: `listen` → `BERTH_LISTEN`, `[tls] cert` → `BERTH_TLS_CERT`,
//! `[limits] max_manifest_bytes` → `BERTH_LIMITS_MAX_MANIFEST_BYTES`. `BERTH_CONFIG` names the
//! file itself. An unknown `BERTH_` variable is an error, like an unknown key.
//!
//! ```
//! let cfg = berth_config::Config::load(None, std::iter::empty(), &Default::default()).unwrap();
//! assert_eq!(cfg.listen.to_string(), "0.0.0.0:5000");
//! ```

mod explain;

pub use explain::{REDACTED, Setting, to_toml};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration problem, with the offending key or variable named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("invalid configuration{}: {message}", .path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Parse {
        /// The file, when the problem is in one.
        path: Option<PathBuf>,
        /// The parser's message (names the key).
        message: String,
    },
    /// A `BERTH_…` variable that names no setting (with the closest that does, if any is close).
    #[error("unknown environment variable {0}: no such setting{hint}", hint = .1.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    UnknownEnv(String, Option<String>),
    /// A value that parsed but makes no sense.
    #[error("invalid value for `{key}`: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A number or a string (so environment variables, always strings, fit numeric settings).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumOrString {
    /// An integer.
    Num(u64),
    /// A string such as `"4MiB"` or `"24h"`.
    Str(String),
}

/// The file's shape. Unknown keys are rejected with their name.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on, `host:port`.
    pub listen: Option<String>,
    /// Directory for all local state.
    pub data_dir: Option<PathBuf>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// A tracing filter such as `info` or `berth=debug`.
    pub log_level: Option<String>,
    /// `api`, `worker` or `all` (the default).
    pub role: Option<String>,
    /// Operator token: a bearer token that acts as a system administrator (optional).
    pub admin_token: Option<String>,
    /// Password of the `admin` account created on first start (else one is generated and printed).
    pub admin_password: Option<String>,
    /// The URL clients reach Berth at (for the token realm and OIDC); default: from the request.
    pub external_url: Option<String>,
    /// The key that seals stored upstream credentials (default `<data_dir>/secret.key`).
    pub secret_key_file: Option<PathBuf>,
    /// Access control.
    pub auth: Option<RawAuth>,
    /// OIDC login.
    pub oidc: Option<RawOidc>,
    /// TLS.
    pub tls: Option<RawTls>,
    /// Request limits.
    pub limits: Option<RawLimits>,
    /// Upload sessions.
    pub uploads: Option<RawUploads>,
    /// The event log.
    pub events: Option<RawEvents>,
    /// The audit log.
    pub audit: Option<RawAudit>,
    /// Pull-through caches.
    pub cache: Option<RawCache>,
    /// The ECR-compatible API.
    pub ecr: Option<RawEcr>,
    /// Webhook delivery.
    pub webhooks: Option<RawWebhooks>,
    /// LDAP sign-in.
    pub ldap: Option<RawLdap>,
    /// The vulnerability scanner.
    pub scanner: Option<RawScanner>,
    /// Blob storage.
    pub storage: Option<RawStorage>,
    /// Metadata storage.
    pub metadata: Option<RawMetadata>,
}

/// `[tls]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// `[auth]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Service name tokens are bound to (default `berth`).
    pub service: Option<String>,
    /// Issuer name tokens carry (default `berth-token-issuer`).
    pub issuer: Option<String>,
    /// Access token lifetime (default 5m).
    pub token_ttl: Option<NumOrString>,
    /// Refresh token lifetime (default 30 days).
    pub refresh_ttl: Option<NumOrString>,
    /// Web session lifetime (default 8h).
    pub session_ttl: Option<NumOrString>,
    /// Create a private project when an authenticated user pushes into a missing one (default false).
    pub create_projects_on_push: Option<BoolOrString>,
    /// Who may create projects: `everyone` (default) or `adminonly`.
    pub project_creation: Option<String>,
    /// The challenge of `/v2` 401s: `bearer` (the token flow, default) or `basic`.
    pub challenge: Option<String>,
    /// Failed logins before an account is locked (default 5).
    pub login_max_failures: Option<NumOrString>,
    /// How long a lock lasts (default 5m).
    pub login_lockout: Option<NumOrString>,
}

/// `[oidc]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    /// Issuer URL; setting it enables OIDC login.
    pub issuer: Option<String>,
    /// Client id.
    pub client_id: Option<String>,
    /// Client secret.
    pub client_secret: Option<String>,
    /// Callback URL registered at the provider (default `<external_url>/c/oidc/callback`).
    pub redirect_url: Option<String>,
    /// Scopes (default `openid profile email`).
    pub scope: Option<String>,
    /// Claim with the user's groups (default `groups`).
    pub groups_claim: Option<String>,
    /// Claim used as the username (default `preferred_username`).
    pub username_claim: Option<String>,
    /// Members of this group become system administrators.
    pub admin_group: Option<String>,
    /// Create first-time users under the username claim without asking (default false: they
    /// choose a username, as in Harbor).
    pub auto_onboard: Option<bool>,
}

/// `[limits]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest manifest accepted: bytes, or a size such as `"4MiB"`.
    pub max_manifest_bytes: Option<NumOrString>,
    /// Time a client has to send a request's headers, also the idle keep-alive time.
    pub header_read_timeout: Option<NumOrString>,
    /// Slowest upload accepted, bytes per second, judged over each `header_read_timeout` (`0`: no minimum).
    pub min_upload_rate: Option<NumOrString>,
    /// Open connections at most; beyond, a new connection gets `503` and is closed.
    pub max_connections: Option<NumOrString>,
}

/// `[uploads]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUploads {
    /// Idle sessions older than this expire: seconds, or a duration such as `"24h"`.
    pub ttl: Option<NumOrString>,
    /// How often expiry runs.
    pub sweep_interval: Option<NumOrString>,
    /// Open sessions one repository may have at once.
    pub max_per_repository: Option<NumOrString>,
    /// Open sessions one account may have at once.
    pub max_per_account: Option<NumOrString>,
}

/// `[events]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// Events older than this are deleted: seconds, or a duration such as `"7d"`.
    pub retention: Option<NumOrString>,
}

/// `[scanner]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScanner {
    /// Longest one scan may take before it fails with a reason: seconds or a duration.
    pub timeout: Option<NumOrString>,
}

/// `[cache]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// How long a cached tag is served before it is checked upstream again (a project's own
    /// `proxy_ttl_seconds` wins): seconds or a duration.
    pub tag_ttl: Option<NumOrString>,
    /// How long an upstream may take to answer a manifest request before the cached copy is
    /// served: seconds or a duration.
    pub upstream_timeout: Option<NumOrString>,
}

/// `[ecr]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEcr {
    /// The registry id in answers and ARNs (12 digits, as an AWS account id).
    pub registry_id: Option<String>,
    /// The region in ARNs (default: the region each request was signed for).
    pub region: Option<String>,
    /// An extra address serving only the ECR API (it is always on the main listener too).
    pub listen: Option<String>,
}

/// One string (comma-separated, as environment variables give it) or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StrOrList {
    /// `"127.0.0.1, hooks.internal"`
    Str(String),
    /// `["127.0.0.1", "hooks.internal"]`
    List(Vec<String>),
}

impl StrOrList {
    fn items(&self) -> Vec<String> {
        let all: Vec<String> = match self {
            StrOrList::Str(s) => s.split(',').map(str::to_owned).collect(),
            StrOrList::List(l) => l.clone(),
        };
        all.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
    }
}

/// `[ldap]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLdap {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: Option<String>,
    /// Upgrade `ldap://` with StartTLS.
    pub starttls: Option<BoolOrString>,
    /// PEM CA certificates to trust for the server.
    pub ca_file: Option<PathBuf>,
    /// The service account that searches.
    pub bind_dn: Option<String>,
    /// Its password.
    pub bind_password: Option<String>,
    /// Where users are.
    pub base_dn: Option<String>,
    /// Which entries are users.
    pub user_filter: Option<String>,
    /// The username attribute.
    pub uid_attribute: Option<String>,
    /// Where groups are.
    pub group_base_dn: Option<String>,
    /// Which entries are groups.
    pub group_filter: Option<String>,
    /// The group attribute naming members.
    pub group_membership_attribute: Option<String>,
    /// The group attribute with its name.
    pub group_name_attribute: Option<String>,
    /// Members of this group are system administrators.
    pub group_admin_dn: Option<String>,
    /// Longest a connection or an operation may take.
    pub timeout: Option<NumOrString>,
}

/// LDAP sign-in (`[ldap]`; absent: none).
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `ldap://` or `ldaps://` URL.
    pub url: String,
    /// StartTLS on `ldap://`.
    pub starttls: bool,
    /// CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// The service account.
    pub bind_dn: String,
    /// Its password.
    pub bind_password: Secret,
    /// Where users are.
    pub base_dn: String,
    /// Which entries are users.
    pub user_filter: String,
    /// The username attribute.
    pub uid_attribute: String,
    /// Where groups are.
    pub group_base_dn: Option<String>,
    /// Which entries are groups.
    pub group_filter: String,
    /// The group attribute naming members by DN.
    pub group_membership_attribute: String,
    /// The group attribute with its name.
    pub group_name_attribute: String,
    /// Members of this group DN are system administrators.
    pub group_admin_dn: Option<String>,
    /// Longest a connection or an operation may take.
    pub timeout: Duration,
}

/// `[webhooks]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    /// Receivers allowed despite the SSRF guard (loopback, link-local and cloud metadata
    /// addresses are refused otherwise): IP addresses, networks or host names.
    pub allowed_hosts: Option<StrOrList>,
    /// Tries before a delivery gives up (then it waits as a dead letter).
    pub max_attempts: Option<NumOrString>,
    /// Delay before the first retry; each later one doubles it (at most an hour).
    pub retry_base: Option<NumOrString>,
    /// Longest a receiver may take to answer.
    pub timeout: Option<NumOrString>,
}

/// Webhook delivery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Receivers allowed despite the SSRF guard.
    pub allowed_hosts: Vec<String>,
    /// Tries before a delivery gives up.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub retry_base: Duration,
    /// Longest a receiver may take.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allowed_hosts: Vec::new(),
            max_attempts: 10,
            retry_base: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// `[audit]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Entries older than this are purged (hourly): seconds, or a duration such as `"180d"`.
    pub retention: Option<NumOrString>,
    /// Beyond this many entries the oldest are purged too.
    pub max_entries: Option<NumOrString>,
}

/// A boolean or a string (`"true"`/`"false"`), so environment variables fit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum BoolOrString {
    /// A boolean.
    Bool(bool),
    /// `"true"`, `"false"`, `"1"`, `"0"`, `"yes"`, `"no"`.
    Str(String),
}

/// `[storage]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// `filesystem` (the default) or `s3`.
    pub backend: Option<String>,
    /// Root directory for the filesystem backend (default `<data_dir>/blobs`).
    pub path: Option<PathBuf>,
    /// S3 endpoint URL (omit for AWS).
    pub endpoint: Option<String>,
    /// S3 region (default `us-east-1`).
    pub region: Option<String>,
    /// S3 bucket.
    pub bucket: Option<String>,
    /// Key prefix inside the bucket.
    pub prefix: Option<String>,
    /// Access key id (else the usual `AWS_…` environment variables).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Path-style requests (default true: what self-hosted servers need).
    pub path_style: Option<BoolOrString>,
    /// First multipart part size (default 8 MiB, at least 5 MiB).
    pub part_size: Option<NumOrString>,
    /// Answer blob GETs with a redirect to a presigned URL (s3 only; default false).
    pub redirect: Option<BoolOrString>,
    /// How long a presigned URL is valid (default 15m).
    pub redirect_ttl: Option<NumOrString>,
}

/// `[metadata]`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetadata {
    /// `sqlite` (the default, embedded) or `postgres`.
    pub backend: Option<String>,
    /// Database file for SQLite (default `<data_dir>/meta.db`).
    pub path: Option<PathBuf>,
    /// PostgreSQL connection URL, `postgres://user:password@host:port/db`.
    pub url: Option<String>,
    /// PostgreSQL connection pool size (default 16).
    pub pool_size: Option<NumOrString>,
}

/// Command-line values, which win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--tls-cert`
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`
    pub tls_key: Option<PathBuf>,
    /// `--log-format`
    pub log_format: Option<String>,
    /// `--role`
    pub role: Option<String>,
}

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serve the registry API only.
    Api,
    /// Run background jobs only (and serve health and metrics).
    Worker,
    /// Both.
    All,
}

impl Role {
    /// Does it serve the registry API?
    pub fn serves_api(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }

    /// Does it run background jobs?
    pub fn runs_jobs(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }
}

/// A value that must never be logged or printed (a password, a URL holding one).
/// `Debug` shows only that it is redacted; [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// S3 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL, `None` for AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix.
    pub prefix: String,
    /// Access key id (`None`: from the environment).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Path-style requests.
    pub path_style: bool,
    /// First multipart part size.
    pub part_size: usize,
}

/// Where blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A local directory.
    Filesystem {
        /// Its root.
        path: PathBuf,
    },
    /// An S3-compatible bucket.
    S3(S3Config),
}

/// Where metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataConfig {
    /// Embedded SQLite.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// PostgreSQL, shared by any number of replicas.
    Postgres {
        /// Connection URL (may hold a password: redacted in `Debug`).
        url: Secret,
        /// Connections per replica.
        pool_size: u32,
    },
}

/// Access control settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// Service name (token audience).
    pub service: String,
    /// Token issuer name.
    pub issuer: String,
    /// Access token lifetime.
    pub token_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
    /// Web session lifetime.
    pub session_ttl: Duration,
    /// Create projects on push.
    pub create_projects_on_push: bool,
    /// Only administrators create projects.
    pub project_creation_admin_only: bool,
    /// `/v2` answers 401 with a `Basic` challenge instead of `Bearer`.
    pub basic_challenge: bool,
    /// Failed logins before a lock.
    pub login_max_failures: u32,
    /// Lock duration.
    pub login_lockout: Duration,
}

/// OIDC settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// Issuer URL.
    pub issuer: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// Callback URL; `None`: derived from `external_url`.
    pub redirect_url: Option<String>,
    /// Scopes.
    pub scope: String,
    /// Groups claim.
    pub groups_claim: String,
    /// Username claim.
    pub username_claim: String,
    /// Administrators' group.
    pub admin_group: Option<String>,
    /// Onboard first-time users without asking for a username.
    pub auto_onboard: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// State directory.
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Tracing filter.
    pub log_level: String,
    /// What this process does.
    pub role: Role,
    /// Operator token (acts as a system administrator); `None` disables it.
    pub admin_token: Option<Secret>,
    /// Password for the `admin` account created on first start.
    pub admin_password: Option<Secret>,
    /// The URL clients reach Berth at, without a trailing `/`.
    pub external_url: Option<String>,
    /// The key file that seals upstream credentials; the same on every replica.
    pub secret_key_file: PathBuf,
    /// Access control.
    pub auth: AuthSettings,
    /// OIDC login, when configured.
    pub oidc: Option<OidcSettings>,
    /// Redirect blob GETs to presigned URLs valid this long (S3 only).
    pub blob_redirect_ttl: Option<Duration>,
    /// TLS, when both files are given.
    pub tls: Option<TlsConfig>,
    /// Largest manifest accepted.
    pub max_manifest_bytes: usize,
    /// Time to send a request's headers; also how long an idle connection is kept.
    pub header_read_timeout: Duration,
    /// Slowest upload accepted (bytes per second, judged over each `header_read_timeout`); 0 for none.
    pub min_upload_rate: usize,
    /// Most open connections.
    pub max_connections: usize,
    /// Idle upload expiry.
    pub upload_ttl: Duration,
    /// How often expiry runs.
    pub upload_sweep_interval: Duration,
    /// Open upload sessions per repository.
    pub max_uploads_per_repository: u64,
    /// Open upload sessions per account.
    pub max_uploads_per_account: u64,
    /// How long events are kept in the event log.
    pub event_retention: Duration,
    /// Longest one scan may take.
    pub scan_timeout: Duration,
    /// How long a cached tag is served before it is checked upstream again (`[cache] tag_ttl`).
    pub cache_tag_ttl: Duration,
    /// How long an upstream may take on a manifest request (`[cache] upstream_timeout`).
    pub cache_upstream_timeout: Duration,
    /// The ECR API's registry id (12 digits).
    pub ecr_registry_id: String,
    /// The region in ECR ARNs; `None`: the request's.
    pub ecr_region: Option<String>,
    /// An extra listener for the ECR API alone.
    pub ecr_listen: Option<SocketAddr>,
    /// Webhook delivery.
    pub webhooks: WebhookConfig,
    /// LDAP sign-in.
    pub ldap: Option<LdapSettings>,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// Most audit entries kept.
    pub audit_max_entries: usize,
    /// Blob storage.
    pub storage: StorageConfig,
    /// Metadata storage.
    pub metadata: MetadataConfig,
}

/// Every key path, for mapping `BERTH_…` variables onto the file's structure.
const KEYS: &[(&str, Option<&str>, &str)] = &[
    ("BERTH_LISTEN", None, "listen"),
    ("BERTH_DATA_DIR", None, "data_dir"),
    ("BERTH_LOG_FORMAT", None, "log_format"),
    ("BERTH_LOG_LEVEL", None, "log_level"),
    ("BERTH_ROLE", None, "role"),
    ("BERTH_ADMIN_TOKEN", None, "admin_token"),
    ("BERTH_ADMIN_PASSWORD", None, "admin_password"),
    ("BERTH_SECRET_KEY_FILE", None, "secret_key_file"),
    ("BERTH_EXTERNAL_URL", None, "external_url"),
    ("BERTH_AUTH_SERVICE", Some("auth"), "service"),
    ("BERTH_AUTH_ISSUER", Some("auth"), "issuer"),
    ("BERTH_AUTH_TOKEN_TTL", Some("auth"), "token_ttl"),
    ("BERTH_AUTH_REFRESH_TTL", Some("auth"), "refresh_ttl"),
    ("BERTH_AUTH_SESSION_TTL", Some("auth"), "session_ttl"),
    ("BERTH_AUTH_CREATE_PROJECTS_ON_PUSH", Some("auth"), "create_projects_on_push"),
    ("BERTH_AUTH_PROJECT_CREATION", Some("auth"), "project_creation"),
    ("BERTH_AUTH_CHALLENGE", Some("auth"), "challenge"),
    ("BERTH_AUTH_LOGIN_MAX_FAILURES", Some("auth"), "login_max_failures"),
    ("BERTH_AUTH_LOGIN_LOCKOUT", Some("auth"), "login_lockout"),
    ("BERTH_OIDC_ISSUER", Some("oidc"), "issuer"),
    ("BERTH_OIDC_CLIENT_ID", Some("oidc"), "client_id"),
    ("BERTH_OIDC_CLIENT_SECRET", Some("oidc"), "client_secret"),
    ("BERTH_OIDC_REDIRECT_URL", Some("oidc"), "redirect_url"),
    ("BERTH_OIDC_SCOPE", Some("oidc"), "scope"),
    ("BERTH_OIDC_GROUPS_CLAIM", Some("oidc"), "groups_claim"),
    ("BERTH_OIDC_USERNAME_CLAIM", Some("oidc"), "username_claim"),
    ("BERTH_OIDC_ADMIN_GROUP", Some("oidc"), "admin_group"),
    ("BERTH_OIDC_AUTO_ONBOARD", Some("oidc"), "auto_onboard"),
    ("BERTH_TLS_CERT", Some("tls"), "cert"),
    ("BERTH_TLS_KEY", Some("tls"), "key"),
    ("BERTH_LIMITS_MAX_MANIFEST_BYTES", Some("limits"), "max_manifest_bytes"),
    ("BERTH_LIMITS_HEADER_READ_TIMEOUT", Some("limits"), "header_read_timeout"),
    ("BERTH_LIMITS_MIN_UPLOAD_RATE", Some("limits"), "min_upload_rate"),
    ("BERTH_LIMITS_MAX_CONNECTIONS", Some("limits"), "max_connections"),
    ("BERTH_UPLOADS_TTL", Some("uploads"), "ttl"),
    ("BERTH_UPLOADS_SWEEP_INTERVAL", Some("uploads"), "sweep_interval"),
    ("BERTH_UPLOADS_MAX_PER_REPOSITORY", Some("uploads"), "max_per_repository"),
    ("BERTH_UPLOADS_MAX_PER_ACCOUNT", Some("uploads"), "max_per_account"),
    ("BERTH_EVENTS_RETENTION", Some("events"), "retention"),
    ("BERTH_AUDIT_RETENTION", Some("audit"), "retention"),
    ("BERTH_AUDIT_MAX_ENTRIES", Some("audit"), "max_entries"),
    ("BERTH_CACHE_TAG_TTL", Some("cache"), "tag_ttl"),
    ("BERTH_CACHE_UPSTREAM_TIMEOUT", Some("cache"), "upstream_timeout"),
    ("BERTH_SCANNER_TIMEOUT", Some("scanner"), "timeout"),
    ("BERTH_ECR_REGISTRY_ID", Some("ecr"), "registry_id"),
    ("BERTH_ECR_REGION", Some("ecr"), "region"),
    ("BERTH_ECR_LISTEN", Some("ecr"), "listen"),
    ("BERTH_LDAP_URL", Some("ldap"), "url"),
    ("BERTH_LDAP_STARTTLS", Some("ldap"), "starttls"),
    ("BERTH_LDAP_CA_FILE", Some("ldap"), "ca_file"),
    ("BERTH_LDAP_BIND_DN", Some("ldap"), "bind_dn"),
    ("BERTH_LDAP_BIND_PASSWORD", Some("ldap"), "bind_password"),
    ("BERTH_LDAP_BASE_DN", Some("ldap"), "base_dn"),
    ("BERTH_LDAP_USER_FILTER", Some("ldap"), "user_filter"),
    ("BERTH_LDAP_UID_ATTRIBUTE", Some("ldap"), "uid_attribute"),
    ("BERTH_LDAP_GROUP_BASE_DN", Some("ldap"), "group_base_dn"),
    ("BERTH_LDAP_GROUP_FILTER", Some("ldap"), "group_filter"),
    ("BERTH_LDAP_GROUP_MEMBERSHIP_ATTRIBUTE", Some("ldap"), "group_membership_attribute"),
    ("BERTH_LDAP_GROUP_NAME_ATTRIBUTE", Some("ldap"), "group_name_attribute"),
    ("BERTH_LDAP_GROUP_ADMIN_DN", Some("ldap"), "group_admin_dn"),
    ("BERTH_LDAP_TIMEOUT", Some("ldap"), "timeout"),
    ("BERTH_WEBHOOKS_ALLOWED_HOSTS", Some("webhooks"), "allowed_hosts"),
    ("BERTH_WEBHOOKS_MAX_ATTEMPTS", Some("webhooks"), "max_attempts"),
    ("BERTH_WEBHOOKS_RETRY_BASE", Some("webhooks"), "retry_base"),
    ("BERTH_WEBHOOKS_TIMEOUT", Some("webhooks"), "timeout"),
    ("BERTH_STORAGE_BACKEND", Some("storage"), "backend"),
    ("BERTH_STORAGE_PATH", Some("storage"), "path"),
    ("BERTH_STORAGE_ENDPOINT", Some("storage"), "endpoint"),
    ("BERTH_STORAGE_REGION", Some("storage"), "region"),
    ("BERTH_STORAGE_BUCKET", Some("storage"), "bucket"),
    ("BERTH_STORAGE_PREFIX", Some("storage"), "prefix"),
    ("BERTH_STORAGE_ACCESS_KEY_ID", Some("storage"), "access_key_id"),
    ("BERTH_STORAGE_SECRET_ACCESS_KEY", Some("storage"), "secret_access_key"),
    ("BERTH_STORAGE_PATH_STYLE", Some("storage"), "path_style"),
    ("BERTH_STORAGE_PART_SIZE", Some("storage"), "part_size"),
    ("BERTH_STORAGE_REDIRECT", Some("storage"), "redirect"),
    ("BERTH_STORAGE_REDIRECT_TTL", Some("storage"), "redirect_ttl"),
    ("BERTH_METADATA_BACKEND", Some("metadata"), "backend"),
    ("BERTH_METADATA_PATH", Some("metadata"), "path"),
    ("BERTH_METADATA_URL", Some("metadata"), "url"),
    ("BERTH_METADATA_POOL_SIZE", Some("metadata"), "pool_size"),
];

/// Variables that are not settings but are read elsewhere.
/// `BERTH_…` variables that are not server settings, so `berth serve` ignores them: the
/// configuration file's path, the CLI's client variables (the README tells users to export
/// them, often in the shell that starts the server too), and the test tier's.
const NON_SETTING_ENV: &[&str] = &[
    "BERTH_CONFIG",
    "BERTH_URL",
    "BERTH_USERNAME",
    "BERTH_PASSWORD",
    "BERTH_CA_FILE",
    "BERTH_CI",
    "BERTH_OCI_CONFORMANCE_DIR",
    "BERTH_TEST_SEED",
    "BERTH_TEST_PG_URL",
    "BERTH_TEST_S3_ENDPOINT",
];

/// The setting variable closest to an unknown one, when it is close enough to be a typo.
fn closest_env(name: &str) -> Option<String> {
    KEYS.iter()
        .map(|(n, _, _)| (strsim::damerau_levenshtein(name, n), *n))
        .filter(|(d, n)| *d <= 3 && *d < n.len() / 3)
        .min()
        .map(|(_, n)| n.to_owned())
}

/// A tracing filter: comma-separated `level`, `target` or `target=level` directives (span
/// filters in brackets are left to the filter itself).
fn check_log_level(v: String) -> Result<String, ConfigError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let bad = |d: &str, why: &str| ConfigError::Invalid {
        key: "log_level",
        message: format!("{d:?} in {v:?}: {why} (e.g. \"info\" or \"info,berth_oci=debug\")"),
    };
    for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if d.contains('[') {
            continue;
        }
        let (target, level) = match d.split_once('=') {
            Some((t, l)) => (Some(t), Some(l)),
            None if LEVELS.contains(&d.to_ascii_lowercase().as_str()) => (None, Some(d)),
            None => (Some(d), None),
        };
        if let Some(l) = level
            && !LEVELS.contains(&l.to_ascii_lowercase().as_str())
        {
            return Err(bad(d, "the level is one of trace, debug, info, warn, error, off"));
        }
        if let Some(t) = target
            && (t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || "_:-.".contains(c)))
        {
            return Err(bad(d, "a target is a module path such as berth_oci"));
        }
        // A lone word that is no level is almost always a misspelt level ("verbose").
        if level.is_none() && !d.contains('_') && !d.contains("::") {
            return Err(bad(d, "not a level (trace, debug, info, warn, error, off) nor a module path"));
        }
    }
    Ok(v)
}

fn parse_size(key: &'static str, v: &NumOrString) -> Result<usize, ConfigError> {
    let invalid = |m: String| ConfigError::Invalid { key, message: m };
    match v {
        NumOrString::Num(n) => Ok(*n as usize),
        NumOrString::Str(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 =
                num.parse().map_err(|_| invalid(format!("{s:?} is not a size such as 4194304 or \"4MiB\"")))?;
            let mul = match unit.trim() {
                "" | "B" => 1,
                "KiB" | "K" | "k" | "KB" => 1024,
                "MiB" | "M" | "MB" => 1024 * 1024,
                "GiB" | "G" | "GB" => 1024 * 1024 * 1024,
                u => return Err(invalid(format!("unknown size unit {u:?} (use B, KiB, MiB or GiB)"))),
            };
            n.checked_mul(mul)
                .and_then(|b| usize::try_from(b).ok())
                .ok_or_else(|| invalid(format!("{s:?} is too large: at most 16 EiB")))
        }
    }
}

fn parse_duration(key: &'static str, v: &NumOrString) -> Result<Duration, ConfigError> {
    match v {
        NumOrString::Num(n) => Ok(Duration::from_secs(*n)),
        NumOrString::Str(s) => match s.trim().parse::<u64>() {
            Ok(n) => Ok(Duration::from_secs(n)),
            Err(_) => humantime::parse_duration(s.trim()).map_err(|e| ConfigError::Invalid {
                key,
                message: format!("{s:?} is not a duration such as \"24h\": {e}"),
            }),
        },
    }
}

fn parse_bool(key: &'static str, v: &BoolOrString) -> Result<bool, ConfigError> {
    match v {
        BoolOrString::Bool(b) => Ok(*b),
        BoolOrString::Str(s) => match s.as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            other => Err(ConfigError::Invalid { key, message: format!("{other:?} is not true or false") }),
        },
    }
}

fn s3_config(raw: &RawStorage) -> Result<StorageConfig, ConfigError> {
    let bucket = raw
        .bucket
        .clone()
        .ok_or(ConfigError::Invalid { key: "storage.bucket", message: "the s3 backend needs a bucket".into() })?;
    let path_style = match &raw.path_style {
        Some(v) => parse_bool("storage.path_style", v)?,
        None => true,
    };
    let part_size = match &raw.part_size {
        Some(v) => parse_size("storage.part_size", v)?,
        None => 8 * 1024 * 1024,
    };
    if part_size < 5 * 1024 * 1024 {
        return Err(ConfigError::Invalid {
            key: "storage.part_size",
            message: "S3 parts must be at least 5 MiB".into(),
        });
    }
    if raw.access_key_id.is_some() != raw.secret_access_key.is_some() {
        return Err(ConfigError::Invalid {
            key: "storage.access_key_id",
            message: "give both access_key_id and secret_access_key, or neither (then AWS_* variables are used)".into(),
        });
    }
    Ok(StorageConfig::S3(S3Config {
        endpoint: raw.endpoint.clone(),
        region: raw.region.clone().unwrap_or_else(|| "us-east-1".into()),
        bucket,
        prefix: raw.prefix.clone().unwrap_or_default(),
        access_key_id: raw.access_key_id.clone(),
        secret_access_key: raw.secret_access_key.clone().map(Secret::new),
        path_style,
        part_size,
    }))
}

fn auth_settings(a: RawAuth) -> Result<AuthSettings, ConfigError> {
    let dur = |key: &'static str, v: &Option<NumOrString>, default: u64| match v {
        Some(v) => parse_duration(key, v),
        None => Ok(Duration::from_secs(default)),
    };
    let token_ttl = dur("auth.token_ttl", &a.token_ttl, 300)?;
    if token_ttl.is_zero() {
        return Err(ConfigError::Invalid { key: "auth.token_ttl", message: "must be positive".into() });
    }
    let project_creation_admin_only = match a.project_creation.as_deref().unwrap_or("everyone") {
        "everyone" => false,
        "adminonly" => true,
        other => {
            return Err(ConfigError::Invalid {
                key: "auth.project_creation",
                message: format!("{other:?}: use \"everyone\" or \"adminonly\""),
            });
        }
    };
    let basic_challenge = match a.challenge.as_deref().unwrap_or("bearer") {
        "bearer" => false,
        "basic" => true,
        other => {
            return Err(ConfigError::Invalid {
                key: "auth.challenge",
                message: format!("{other:?}: use \"bearer\" (the token flow) or \"basic\""),
            });
        }
    };
    Ok(AuthSettings {
        basic_challenge,
        service: a.service.unwrap_or_else(|| "berth".into()),
        issuer: a.issuer.unwrap_or_else(|| "berth-token-issuer".into()),
        token_ttl,
        refresh_ttl: dur("auth.refresh_ttl", &a.refresh_ttl, 30 * 24 * 3600)?,
        session_ttl: dur("auth.session_ttl", &a.session_ttl, 8 * 3600)?,
        create_projects_on_push: match &a.create_projects_on_push {
            Some(v) => parse_bool("auth.create_projects_on_push", v)?,
            None => false,
        },
        project_creation_admin_only,
        login_max_failures: match &a.login_max_failures {
            Some(v) => parse_size("auth.login_max_failures", v)?.max(1) as u32,
            None => 5,
        },
        login_lockout: dur("auth.login_lockout", &a.login_lockout, 300)?,
    })
}

fn oidc_settings(o: RawOidc, external_url: Option<&str>) -> Result<Option<OidcSettings>, ConfigError> {
    let Some(issuer) = o.issuer.filter(|i| !i.is_empty()) else {
        if o.client_id.is_some() || o.client_secret.is_some() {
            return Err(ConfigError::Invalid { key: "oidc.issuer", message: "OIDC needs an issuer URL".into() });
        }
        return Ok(None);
    };
    let need = |key: &'static str, v: Option<String>| {
        v.filter(|s| !s.is_empty())
            .ok_or(ConfigError::Invalid { key, message: "is required when oidc.issuer is set".into() })
    };
    let client_id = need("oidc.client_id", o.client_id)?;
    let client_secret = Secret::new(need("oidc.client_secret", o.client_secret)?);
    if o.redirect_url.is_none() && external_url.is_none() {
        return Err(ConfigError::Invalid {
            key: "oidc.redirect_url",
            message: "set oidc.redirect_url or external_url, so the provider can send users back".into(),
        });
    }
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        client_secret,
        redirect_url: o.redirect_url,
        scope: o.scope.unwrap_or_else(|| "openid profile email".into()),
        groups_claim: o.groups_claim.unwrap_or_else(|| "groups".into()),
        username_claim: o.username_claim.unwrap_or_else(|| "preferred_username".into()),
        admin_group: o.admin_group.filter(|g| !g.is_empty()),
        auto_onboard: o.auto_onboard.unwrap_or(false),
    }))
}

impl Config {
    /// Read `file` (if any), apply `env` (`BERTH_…` pairs) and `cli`, and validate.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        cli: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| ConfigError::Read { path: p.to_owned(), source: e })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse { path: Some(p.to_owned()), message: e.to_string() })?
            }
            None => toml::Table::new(),
        };
        // Check the file alone first, so its errors name the file.
        if file.is_some() {
            RawConfig::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| ConfigError::Parse { path: file.map(Path::to_owned), message: e.to_string() })?;
        }
        for (name, value) in env {
            if !name.starts_with("BERTH_") || NON_SETTING_ENV.contains(&name.as_str()) {
                continue;
            }
            let (_, section, key) = KEYS
                .iter()
                .find(|(n, _, _)| *n == name)
                .ok_or_else(|| ConfigError::UnknownEnv(name.clone(), closest_env(&name)))?;
            let target = match section {
                None => &mut table,
                Some(s) => table
                    .entry(s.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .ok_or_else(|| ConfigError::Parse { path: None, message: format!("`{s}` must be a table") })?,
            };
            target.insert(key.to_string(), toml::Value::String(value));
        }
        let raw = RawConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Parse { path: None, message: e.to_string() })?;
        Self::validate(raw, cli)
    }

    /// Turn a raw configuration plus command-line overrides into a validated one.
    pub fn validate(raw: RawConfig, cli: &Overrides) -> Result<Config, ConfigError> {
        let listen_s = cli.listen.clone().or(raw.listen).unwrap_or_else(|| "0.0.0.0:5000".into());
        let listen = listen_s.parse().map_err(|_| ConfigError::Invalid {
            key: "listen",
            message: format!("{listen_s:?} is not an address such as 0.0.0.0:5000"),
        })?;
        let data_dir = cli.data_dir.clone().or(raw.data_dir).unwrap_or_else(|| PathBuf::from("berth-data"));
        let log_format = match cli.log_format.clone().or(raw.log_format).as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    key: "log_format",
                    message: format!("{other:?}: use \"text\" or \"json\""),
                });
            }
        };
        let role = match cli.role.clone().or(raw.role).as_deref().unwrap_or("all") {
            "api" => Role::Api,
            "worker" => Role::Worker,
            "all" => Role::All,
            other => {
                return Err(ConfigError::Invalid {
                    key: "role",
                    message: format!("{other:?}: use api, worker or all"),
                });
            }
        };
        let tls_raw = raw.tls.unwrap_or_default();
        let tls = match (cli.tls_cert.clone().or(tls_raw.cert), cli.tls_key.clone().or(tls_raw.key)) {
            (Some(cert), Some(key)) => Some(TlsConfig { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "tls",
                    message: "both a certificate and a key are needed for TLS".into(),
                });
            }
        };
        let limits = raw.limits.unwrap_or_default();
        let max_manifest_bytes = match &limits.max_manifest_bytes {
            Some(v) => parse_size("limits.max_manifest_bytes", v)?,
            None => 4 * 1024 * 1024,
        };
        if max_manifest_bytes == 0 {
            return Err(ConfigError::Invalid { key: "limits.max_manifest_bytes", message: "must be positive".into() });
        }
        let header_read_timeout = match &limits.header_read_timeout {
            Some(v) => parse_duration("limits.header_read_timeout", v)?,
            None => Duration::from_secs(30),
        };
        if header_read_timeout.is_zero() {
            return Err(ConfigError::Invalid { key: "limits.header_read_timeout", message: "must be positive".into() });
        }
        let min_upload_rate = match &limits.min_upload_rate {
            Some(v) => parse_size("limits.min_upload_rate", v)?,
            None => 1024,
        };
        let max_connections = match &limits.max_connections {
            Some(v) => parse_size("limits.max_connections", v)?,
            None => 10_000,
        };
        if max_connections == 0 {
            return Err(ConfigError::Invalid { key: "limits.max_connections", message: "must be positive".into() });
        }
        let uploads = raw.uploads.unwrap_or_default();
        let upload_ttl = match &uploads.ttl {
            Some(v) => parse_duration("uploads.ttl", v)?,
            None => Duration::from_secs(24 * 3600),
        };
        let upload_sweep_interval = match &uploads.sweep_interval {
            Some(v) => parse_duration("uploads.sweep_interval", v)?,
            None => Duration::from_secs(600),
        };
        if upload_sweep_interval.is_zero() {
            return Err(ConfigError::Invalid { key: "uploads.sweep_interval", message: "must be positive".into() });
        }
        let max_uploads_per_repository = match &uploads.max_per_repository {
            Some(v) => parse_size("uploads.max_per_repository", v)? as u64,
            None => 1000,
        };
        let max_uploads_per_account = match &uploads.max_per_account {
            Some(v) => parse_size("uploads.max_per_account", v)? as u64,
            None => 1000,
        };
        if max_uploads_per_repository == 0 || max_uploads_per_account == 0 {
            return Err(ConfigError::Invalid {
                key: "uploads.max_per_repository",
                message: "upload session limits must be positive".into(),
            });
        }
        let event_retention = match &raw.events.unwrap_or_default().retention {
            Some(v) => parse_duration("events.retention", v)?,
            None => Duration::from_secs(7 * 24 * 3600),
        };
        if event_retention < Duration::from_secs(60) {
            return Err(ConfigError::Invalid {
                key: "events.retention",
                message: "must be at least a minute (consumers need time to read the log)".into(),
            });
        }
        let scan_timeout = match &raw.scanner.unwrap_or_default().timeout {
            Some(v) => parse_duration("scanner.timeout", v)?,
            None => Duration::from_secs(15 * 60),
        };
        if scan_timeout.is_zero() {
            return Err(ConfigError::Invalid { key: "scanner.timeout", message: "must be positive".into() });
        }
        let cache = raw.cache.unwrap_or_default();
        let cache_tag_ttl = match &cache.tag_ttl {
            Some(v) => parse_duration("cache.tag_ttl", v)?,
            None => Duration::from_secs(300),
        };
        let cache_upstream_timeout = match &cache.upstream_timeout {
            Some(v) => parse_duration("cache.upstream_timeout", v)?,
            None => Duration::from_secs(10),
        };
        if cache_upstream_timeout.is_zero() {
            return Err(ConfigError::Invalid { key: "cache.upstream_timeout", message: "must be positive".into() });
        }
        let ecr = raw.ecr.unwrap_or_default();
        let ecr_registry_id = ecr.registry_id.unwrap_or_else(|| "000000000000".into());
        if ecr_registry_id.len() != 12 || !ecr_registry_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::Invalid {
                key: "ecr.registry_id",
                message: format!("{ecr_registry_id:?} is not 12 digits (as an AWS account id)"),
            });
        }
        let ecr_region = ecr.region.filter(|r| !r.is_empty());
        if let Some(r) = &ecr_region
            && (r.len() > 25 || !r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        {
            return Err(ConfigError::Invalid {
                key: "ecr.region",
                message: format!("{r:?} is not a region name such as eu-west-1"),
            });
        }
        let ecr_listen = match ecr.listen.as_deref().filter(|l| !l.is_empty()) {
            Some(l) => Some(l.parse::<SocketAddr>().map_err(|e| ConfigError::Invalid {
                key: "ecr.listen",
                message: format!("{l:?} is not host:port ({e})"),
            })?),
            None => None,
        };
        let hooks = raw.webhooks.unwrap_or_default();
        let mut webhooks = WebhookConfig::default();
        if let Some(h) = &hooks.allowed_hosts {
            webhooks.allowed_hosts = h.items();
            if let Some(bad) = webhooks.allowed_hosts.iter().find(|h| h.contains(char::is_whitespace)) {
                return Err(ConfigError::Invalid {
                    key: "webhooks.allowed_hosts",
                    message: format!("{bad:?}: give IP addresses, networks (10.0.0.0/8) or host names"),
                });
            }
        }
        if let Some(v) = &hooks.max_attempts {
            let n = parse_size("webhooks.max_attempts", v)?;
            if !(1..=100).contains(&n) {
                return Err(ConfigError::Invalid { key: "webhooks.max_attempts", message: "must be 1 to 100".into() });
            }
            webhooks.max_attempts = n as u32;
        }
        if let Some(v) = &hooks.retry_base {
            webhooks.retry_base = parse_duration("webhooks.retry_base", v)?;
            if webhooks.retry_base < Duration::from_millis(10) || webhooks.retry_base > Duration::from_secs(3600) {
                return Err(ConfigError::Invalid { key: "webhooks.retry_base", message: "must be 10ms to 1h".into() });
            }
        }
        if let Some(v) = &hooks.timeout {
            webhooks.timeout = parse_duration("webhooks.timeout", v)?;
            if webhooks.timeout < Duration::from_millis(100) || webhooks.timeout > Duration::from_secs(300) {
                return Err(ConfigError::Invalid { key: "webhooks.timeout", message: "must be 100ms to 5min".into() });
            }
        }
        let ldap = match raw.ldap {
            Some(l) if l.url.as_deref().is_some_and(|u| !u.is_empty()) => {
                let url = l.url.clone().unwrap_or_default();
                if !url.starts_with("ldap://") && !url.starts_with("ldaps://") {
                    return Err(ConfigError::Invalid {
                        key: "ldap.url",
                        message: format!("{url:?}: use ldap://host:389 or ldaps://host:636"),
                    });
                }
                let base_dn = l.base_dn.clone().filter(|b| !b.is_empty()).ok_or(ConfigError::Invalid {
                    key: "ldap.base_dn",
                    message: "where users are searched, e.g. \"ou=people,dc=example,dc=org\"".into(),
                })?;
                let starttls = match &l.starttls {
                    Some(v) => parse_bool("ldap.starttls", v)?,
                    None => false,
                };
                if starttls && url.starts_with("ldaps://") {
                    return Err(ConfigError::Invalid {
                        key: "ldap.starttls",
                        message: "ldaps:// is TLS already; StartTLS is for ldap:// URLs".into(),
                    });
                }
                let timeout = match &l.timeout {
                    Some(v) => parse_duration("ldap.timeout", v)?,
                    None => Duration::from_secs(5),
                };
                let filter = |v: &Option<String>, default: &str| {
                    v.clone().filter(|f| !f.is_empty()).unwrap_or_else(|| default.to_owned())
                };
                let user_filter = filter(&l.user_filter, "(objectClass=person)");
                let group_filter = filter(&l.group_filter, "(objectClass=groupOfNames)");
                for (key, f) in [("ldap.user_filter", &user_filter), ("ldap.group_filter", &group_filter)] {
                    if !f.starts_with('(') || !f.ends_with(')') {
                        return Err(ConfigError::Invalid {
                            key,
                            message: format!("{f:?} is not an LDAP filter such as (objectClass=person)"),
                        });
                    }
                }
                Some(LdapSettings {
                    url,
                    starttls,
                    ca_file: l.ca_file.clone(),
                    bind_dn: l.bind_dn.clone().unwrap_or_default(),
                    bind_password: Secret::new(l.bind_password.clone().unwrap_or_default()),
                    base_dn,
                    user_filter,
                    uid_attribute: filter(&l.uid_attribute, "uid"),
                    group_base_dn: l.group_base_dn.clone().filter(|g| !g.is_empty()),
                    group_filter,
                    group_membership_attribute: filter(&l.group_membership_attribute, "member"),
                    group_name_attribute: filter(&l.group_name_attribute, "cn"),
                    group_admin_dn: l.group_admin_dn.clone().filter(|g| !g.is_empty()),
                    timeout,
                })
            }
            _ => None,
        };
        let audit = raw.audit.unwrap_or_default();
        let audit_retention = match &audit.retention {
            Some(v) => parse_duration("audit.retention", v)?,
            None => Duration::from_secs(180 * 24 * 3600),
        };
        if audit_retention < Duration::from_secs(3600) {
            return Err(ConfigError::Invalid { key: "audit.retention", message: "must be at least an hour".into() });
        }
        let audit_max_entries = match &audit.max_entries {
            Some(v) => parse_size("audit.max_entries", v)?,
            None => 10_000_000,
        };
        if audit_max_entries == 0 {
            return Err(ConfigError::Invalid { key: "audit.max_entries", message: "must be positive".into() });
        }
        let storage_raw = raw.storage.unwrap_or_default();
        let redirect = match &storage_raw.redirect {
            Some(v) => parse_bool("storage.redirect", v)?,
            None => false,
        };
        let blob_redirect_ttl = match (redirect, &storage_raw.redirect_ttl) {
            (false, _) => None,
            (true, Some(v)) => Some(parse_duration("storage.redirect_ttl", v)?),
            (true, None) => Some(Duration::from_secs(15 * 60)),
        };
        if redirect && storage_raw.backend.as_deref() != Some("s3") {
            return Err(ConfigError::Invalid {
                key: "storage.redirect",
                message: "redirects to presigned URLs need the s3 backend".into(),
            });
        }
        let storage = match storage_raw.backend.as_deref().unwrap_or("filesystem") {
            "filesystem" => {
                StorageConfig::Filesystem { path: storage_raw.path.clone().unwrap_or_else(|| data_dir.join("blobs")) }
            }
            "s3" => s3_config(&storage_raw)?,
            other => {
                return Err(ConfigError::Invalid {
                    key: "storage.backend",
                    message: format!("{other:?}: use \"filesystem\" or \"s3\""),
                });
            }
        };
        let meta_raw = raw.metadata.unwrap_or_default();
        let metadata = match meta_raw.backend.as_deref().unwrap_or("sqlite") {
            "sqlite" => MetadataConfig::Sqlite { path: meta_raw.path.unwrap_or_else(|| data_dir.join("meta.db")) },
            "postgres" => {
                let url = meta_raw.url.ok_or(ConfigError::Invalid {
                    key: "metadata.url",
                    message: "the postgres backend needs a connection URL (postgres://user:password@host:port/db)"
                        .into(),
                })?;
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError::Invalid {
                        key: "metadata.url",
                        message: "must start with postgres:// or postgresql://".into(),
                    });
                }
                let pool_size = match &meta_raw.pool_size {
                    Some(v) => parse_size("metadata.pool_size", v)? as u32,
                    None => 16,
                };
                if pool_size == 0 {
                    return Err(ConfigError::Invalid { key: "metadata.pool_size", message: "must be positive".into() });
                }
                MetadataConfig::Postgres { url: Secret::new(url), pool_size }
            }
            other => {
                return Err(ConfigError::Invalid {
                    key: "metadata.backend",
                    message: format!("{other:?}: use \"sqlite\" or \"postgres\""),
                });
            }
        };
        let external_url = match raw.external_url.filter(|u| !u.is_empty()) {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(u.trim_end_matches('/').to_owned())
            }
            Some(u) => {
                return Err(ConfigError::Invalid {
                    key: "external_url",
                    message: format!("{u:?} must start with http:// or https://"),
                });
            }
            None => None,
        };
        let auth = auth_settings(raw.auth.unwrap_or_default())?;
        let oidc = oidc_settings(raw.oidc.unwrap_or_default(), external_url.as_deref())?;
        Ok(Config {
            admin_password: raw.admin_password.filter(|p| !p.is_empty()).map(Secret::new),
            secret_key_file: raw
                .secret_key_file
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| data_dir.join("secret.key")),
            external_url,
            auth,
            oidc,
            listen,
            data_dir,
            log_format,
            log_level: check_log_level(raw.log_level.unwrap_or_else(|| "info".into()))?,
            role,
            admin_token: raw.admin_token.filter(|t| !t.is_empty()).map(Secret::new),
            blob_redirect_ttl,
            tls,
            max_manifest_bytes,
            header_read_timeout,
            min_upload_rate,
            max_connections,
            upload_ttl,
            upload_sweep_interval,
            max_uploads_per_repository,
            max_uploads_per_account,
            event_retention,
            scan_timeout,
            audit_retention,
            audit_max_entries,
            cache_tag_ttl,
            ecr_registry_id,
            ecr_region,
            ecr_listen,
            webhooks,
            ldap,
            cache_upstream_timeout,
            storage,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>().into_iter()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.listen, "0.0.0.0:5000".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("berth-data"));
        assert_eq!(c.max_manifest_bytes, 4 << 20);
        assert_eq!(c.upload_ttl, Duration::from_secs(86400));
        assert_eq!(c.storage, StorageConfig::Filesystem { path: "berth-data/blobs".into() });
        assert!(c.tls.is_none());
    }

    #[test]
    fn precedence_file_env_cli() {
        let f = file(
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/d\"\n[limits]\nmax_manifest_bytes = \"1MiB\"\n[uploads]\nttl = \"2h\"\n",
        );
        let c = Config::load(Some(f.path()), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.max_manifest_bytes, 1 << 20);
        assert_eq!(c.upload_ttl, Duration::from_secs(7200));
        let c = Config::load(
            Some(f.path()),
            env(&[("BERTH_LISTEN", "127.0.0.1:2"), ("BERTH_LIMITS_MAX_MANIFEST_BYTES", "1000"), ("BERTH_CONFIG", "x")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.max_manifest_bytes, 1000);
        let cli = Overrides { listen: Some("127.0.0.1:3".into()), ..Default::default() };
        let c = Config::load(Some(f.path()), env(&[("BERTH_LISTEN", "127.0.0.1:2")]), &cli).unwrap();
        assert_eq!(c.listen.port(), 3);
        assert_eq!(c.data_dir, PathBuf::from("/d"));
    }

    #[test]
    fn the_ecr_section_is_checked() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!((c.ecr_registry_id.as_str(), c.ecr_region.as_deref(), c.ecr_listen), ("000000000000", None, None));
        let f = file("[ecr]\nregistry_id = \"111122223333\"\nregion = \"eu-west-1\"\nlisten = \"127.0.0.1:5001\"\n");
        let c = Config::load(Some(f.path()), env(&[]), &Overrides::default()).unwrap();
        assert_eq!((c.ecr_registry_id.as_str(), c.ecr_region.as_deref()), ("111122223333", Some("eu-west-1")));
        assert_eq!(c.ecr_listen.map(|a| a.port()), Some(5001));
        for (var, value, says) in [
            ("BERTH_ECR_REGISTRY_ID", "1234", "`ecr.registry_id`: \"1234\" is not 12 digits"),
            ("BERTH_ECR_REGION", "EU West", "`ecr.region`: \"EU West\" is not a region name"),
            ("BERTH_ECR_LISTEN", "5001", "`ecr.listen`: \"5001\" is not host:port"),
        ] {
            let e = Config::load(None, env(&[(var, value)]), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let f = file("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n");
        let e = Config::load(Some(f.path()), env(&[]), &Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("listen_addr"), "{e}");
        let f = file("[storage]\nbukket = \"x\"\n");
        let e = Config::load(Some(f.path()), env(&[]), &Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("bukket"), "{e}");
        let e = Config::load(None, env(&[("BERTH_LISTN", "x")]), &Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("BERTH_LISTN") && e.ends_with("(did you mean BERTH_LISTEN?)"), "{e}");
        let e = Config::load(None, env(&[("BERTH_AUTH_CHALENGE", "basic")]), &Overrides::default());
        assert_eq!(
            e.unwrap_err().to_string(),
            "unknown environment variable BERTH_AUTH_CHALENGE: no such setting (did you mean BERTH_AUTH_CHALLENGE?)"
        );
        // Nothing close: no guess.
        let e = Config::load(None, env(&[("BERTH_FROBNICATE", "1")]), &Overrides::default()).unwrap_err().to_string();
        assert_eq!(e, "unknown environment variable BERTH_FROBNICATE: no such setting");
    }

    #[test]
    fn every_value_is_checked_sizes_levels() {
        let bad =
            |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &Overrides::default()).unwrap_err().to_string();
        // 17179869185 GiB is 2^64 + 1 GiB: an error, not a silent 1 GiB.
        let e = bad(&[("BERTH_LIMITS_MAX_MANIFEST_BYTES", "17179869185GiB")]);
        assert!(e.contains("limits.max_manifest_bytes") && e.contains("too large"), "{e}");
        let e = bad(&[("BERTH_LOG_LEVEL", "verbose")]);
        assert!(e.contains("log_level") && e.contains("\"verbose\""), "{e}");
        let e = bad(&[("BERTH_LOG_LEVEL", "info,berth_oci=loud")]);
        assert!(e.contains("berth_oci=loud"), "{e}");
        for ok in ["debug", "info,berth_oci=debug", "warn,tower_http::trace=off", "berth_registry"] {
            let c = Config::load(None, env(&[("BERTH_LOG_LEVEL", ok)]), &Overrides::default()).unwrap();
            assert_eq!(c.log_level, ok);
        }
    }

    #[test]
    fn the_effective_settings_say_where_each_came_from() {
        let f = file(
            "listen = \"127.0.0.1:5001\"\nadmin_password = \"hunter2\"\n[auth]\nservice = \"reg\"\n[audit]\nretention = \"180d\"\n",
        );
        let cli = Overrides { data_dir: Some("/srv/berth".into()), ..Default::default() };
        let (_, settings) = Config::explain(Some(f.path()), env(&[("BERTH_AUTH_TOKEN_TTL", "10m")]), &cli).unwrap();
        let get = |section: Option<&str>, key: &str| {
            let s = settings.iter().find(|s| s.section == section && s.key == key).unwrap();
            (s.value.as_ref().map(|v| v.to_string()), s.source.clone())
        };
        let from_file = format!("file {}", f.path().display());
        assert_eq!(get(None, "listen"), (Some("\"127.0.0.1:5001\"".into()), from_file.clone()));
        assert_eq!(get(None, "data_dir"), (Some("\"/srv/berth\"".into()), "--data-dir".into()));
        assert_eq!(get(Some("auth"), "token_ttl"), (Some("\"10m\"".into()), "env BERTH_AUTH_TOKEN_TTL".into()));
        assert_eq!(get(Some("auth"), "issuer"), (Some("\"berth-token-issuer\"".into()), "default".into()));
        assert_eq!(get(Some("audit"), "retention"), (Some("\"180d\"".into()), from_file));
        assert_eq!(get(None, "admin_password").0.as_deref(), Some("\"<redacted>\""));
        assert_eq!(get(None, "external_url").0, None);
        // The TOML is TOML (each section once), and it never holds a secret.
        let text = to_toml(&settings);
        assert!(!text.contains("hunter2"), "{text}");
        let back: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back["auth"]["service"].as_str(), Some("reg"));
    }

    #[test]
    fn the_clis_client_variables_do_not_stop_a_server() {
        let client = [
            ("BERTH_URL", "http://127.0.0.1:5000"),
            ("BERTH_USERNAME", "admin"),
            ("BERTH_PASSWORD", "x"),
            ("BERTH_CA_FILE", "/etc/ca.pem"),
        ];
        let c = Config::load(None, env(&client), &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:5000");
    }

    #[test]
    fn postgres_settings_and_redaction() {
        let e = env(&[
            ("BERTH_METADATA_BACKEND", "postgres"),
            ("BERTH_METADATA_URL", "postgres://berth:hunter2@db:5432/berth"),
            ("BERTH_METADATA_POOL_SIZE", "32"),
        ]);
        let c = Config::load(None, e, &Overrides::default()).unwrap();
        match &c.metadata {
            MetadataConfig::Postgres { url, pool_size } => {
                assert_eq!(url.expose(), "postgres://berth:hunter2@db:5432/berth");
                assert_eq!(*pool_size, 32);
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("hunter2"), "the password never shows in Debug output");
        assert!(Config::load(None, env(&[("BERTH_METADATA_BACKEND", "postgres")]), &Overrides::default()).is_err());
        let e = env(&[("BERTH_METADATA_BACKEND", "postgres"), ("BERTH_METADATA_URL", "mysql://x")]);
        assert!(Config::load(None, e, &Overrides::default()).is_err());
    }

    #[test]
    fn s3_settings() {
        let e = env(&[
            ("BERTH_STORAGE_BACKEND", "s3"),
            ("BERTH_STORAGE_ENDPOINT", "http://127.0.0.1:8333"),
            ("BERTH_STORAGE_BUCKET", "images"),
            ("BERTH_STORAGE_PATH_STYLE", "false"),
            ("BERTH_STORAGE_PART_SIZE", "16MiB"),
            ("BERTH_STORAGE_ACCESS_KEY_ID", "AKIA"),
            ("BERTH_STORAGE_SECRET_ACCESS_KEY", "s3cr3t-value"),
        ]);
        let c = Config::load(None, e, &Overrides::default()).unwrap();
        let StorageConfig::S3(s3) = &c.storage else { panic!("{:?}", c.storage) };
        assert_eq!(s3.bucket, "images");
        assert!(!s3.path_style);
        assert_eq!(s3.part_size, 16 << 20);
        assert_eq!(s3.region, "us-east-1");
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        assert_eq!(c.blob_redirect_ttl, None, "redirects are off by default");
        let e =
            env(&[("BERTH_STORAGE_BACKEND", "s3"), ("BERTH_STORAGE_BUCKET", "b"), ("BERTH_STORAGE_REDIRECT", "true")]);
        assert_eq!(
            Config::load(None, e, &Overrides::default()).unwrap().blob_redirect_ttl,
            Some(Duration::from_secs(900))
        );
        let e = env(&[("BERTH_STORAGE_REDIRECT", "true")]);
        let err = Config::load(None, e, &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("storage.redirect"), "redirects need s3: {err}");
        for bad in [
            vec![("BERTH_STORAGE_BACKEND", "s3")],
            vec![("BERTH_STORAGE_BACKEND", "s3"), ("BERTH_STORAGE_BUCKET", "b"), ("BERTH_STORAGE_PART_SIZE", "1MiB")],
            vec![("BERTH_STORAGE_BACKEND", "s3"), ("BERTH_STORAGE_BUCKET", "b"), ("BERTH_STORAGE_PATH_STYLE", "maybe")],
            vec![("BERTH_STORAGE_BACKEND", "s3"), ("BERTH_STORAGE_BUCKET", "b"), ("BERTH_STORAGE_ACCESS_KEY_ID", "k")],
        ] {
            assert!(Config::load(None, env(&bad), &Overrides::default()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values() {
        for (k, v) in [
            ("BERTH_LISTEN", "nowhere"),
            ("BERTH_LOG_FORMAT", "xml"),
            ("BERTH_LIMITS_MAX_MANIFEST_BYTES", "4 parsecs"),
            ("BERTH_UPLOADS_TTL", "soon"),
            ("BERTH_STORAGE_BACKEND", "tape"),
            ("BERTH_TLS_CERT", "/only/cert.pem"),
        ] {
            assert!(Config::load(None, env(&[(k, v)]), &Overrides::default()).is_err(), "{k}={v}");
        }
    }
}
