//! The effective configuration, setting by setting, with where each value came from (for
//! `berth config check`): the command line, a `BERTH_…` variable, the file, or the default.
//! Secrets are shown as `<redacted>` when set.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use toml::Value;

use crate::{Config, ConfigError, KEYS, LogFormat, MetadataConfig, Overrides, Role, StorageConfig};

/// One setting, as `berth config check` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// Its `[section]`, if any.
    pub section: Option<&'static str>,
    /// Its key.
    pub key: &'static str,
    /// Its variable.
    pub env: &'static str,
    /// The effective value; `None`: not set (and no default).
    pub value: Option<Value>,
    /// `default`, `file <path>`, `env BERTH_…` or `--flag`.
    pub source: String,
}

/// Shown instead of a secret that is set.
pub const REDACTED: &str = "<redacted>";

impl Config {
    /// [`Config::load`], and every setting with its effective value and source.
    pub fn explain(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        cli: &Overrides,
    ) -> Result<(Config, Vec<Setting>), ConfigError> {
        let env: Vec<(String, String)> = env.collect();
        let cfg = Config::load(file, env.iter().cloned(), cli)?;
        let in_file: toml::Table = match file {
            Some(p) => std::fs::read_to_string(p).ok().and_then(|t| t.parse::<toml::Table>().ok()).unwrap_or_default(),
            None => toml::Table::new(),
        };
        let flag = |section: Option<&str>, key: &str| -> Option<&'static str> {
            match (section, key) {
                (None, "listen") => cli.listen.as_ref().map(|_| "--listen"),
                (None, "data_dir") => cli.data_dir.as_ref().map(|_| "--data-dir"),
                (None, "log_format") => cli.log_format.as_ref().map(|_| "--log-format"),
                (None, "role") => cli.role.as_ref().map(|_| "--role"),
                (Some("tls"), "cert") => cli.tls_cert.as_ref().map(|_| "--tls-cert"),
                (Some("tls"), "key") => cli.tls_key.as_ref().map(|_| "--tls-key"),
                _ => None,
            }
        };
        let settings = KEYS
            .iter()
            .map(|&(var, section, key)| {
                let in_table = match section {
                    None => in_file.get(key),
                    Some(s) => in_file.get(s).and_then(|t| t.get(key)),
                };
                let source = if let Some(f) = flag(section, key) {
                    f.to_owned()
                } else if env.iter().any(|(n, _)| n == var) {
                    format!("env {var}")
                } else if let (Some(_), Some(p)) = (in_table, file) {
                    format!("file {}", p.display())
                } else {
                    "default".to_owned()
                };
                Setting { section, key, env: var, value: cfg.value_of(section, key), source }
            })
            .collect();
        Ok((cfg, settings))
    }

    /// The effective value of one setting (secrets redacted).
    fn value_of(&self, section: Option<&str>, key: &str) -> Option<Value> {
        let s = |v: &str| Some(Value::String(v.to_owned()));
        let p = |v: &Path| Some(Value::String(v.display().to_string()));
        let d = |v: Duration| Some(Value::String(short_duration(v)));
        let n = |v: u64| Some(Value::Integer(i64::try_from(v).unwrap_or(i64::MAX)));
        let b = |v: bool| Some(Value::Boolean(v));
        let secret = |set: bool| if set { s(REDACTED) } else { None };
        let a = &self.auth;
        let s3 = match &self.storage {
            StorageConfig::S3(c) => Some(c),
            StorageConfig::Filesystem { .. } => None,
        };
        match (section, key) {
            (None, "listen") => s(&self.listen.to_string()),
            (None, "data_dir") => p(&self.data_dir),
            (None, "log_format") => s(match self.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }),
            (None, "log_level") => s(&self.log_level),
            (None, "role") => s(match self.role {
                Role::Api => "api",
                Role::Worker => "worker",
                Role::All => "all",
            }),
            (None, "admin_token") => secret(self.admin_token.is_some()),
            (None, "admin_password") => secret(self.admin_password.is_some()),
            (None, "secret_key_file") => p(&self.secret_key_file),
            (None, "external_url") => self.external_url.as_deref().and_then(s),
            (Some("auth"), "service") => s(&a.service),
            (Some("auth"), "issuer") => s(&a.issuer),
            (Some("auth"), "token_ttl") => d(a.token_ttl),
            (Some("auth"), "refresh_ttl") => d(a.refresh_ttl),
            (Some("auth"), "session_ttl") => d(a.session_ttl),
            (Some("auth"), "create_projects_on_push") => b(a.create_projects_on_push),
            (Some("auth"), "project_creation") => {
                s(if a.project_creation_admin_only { "adminonly" } else { "everyone" })
            }
            (Some("auth"), "challenge") => s(if a.basic_challenge { "basic" } else { "bearer" }),
            (Some("auth"), "login_max_failures") => n(a.login_max_failures.into()),
            (Some("auth"), "login_lockout") => d(a.login_lockout),
            (Some("oidc"), k) => {
                let o = self.oidc.as_ref()?;
                match k {
                    "issuer" => s(&o.issuer),
                    "client_id" => s(&o.client_id),
                    "client_secret" => secret(true),
                    "redirect_url" => o.redirect_url.as_deref().and_then(s),
                    "scope" => s(&o.scope),
                    "groups_claim" => s(&o.groups_claim),
                    "username_claim" => s(&o.username_claim),
                    "admin_group" => o.admin_group.as_deref().and_then(s),
                    "auto_onboard" => b(o.auto_onboard),
                    _ => None,
                }
            }
            (Some("tls"), "cert") => self.tls.as_ref().and_then(|t| p(&t.cert)),
            (Some("tls"), "key") => self.tls.as_ref().and_then(|t| p(&t.key)),
            (Some("limits"), "max_manifest_bytes") => n(self.max_manifest_bytes as u64),
            (Some("limits"), "header_read_timeout") => d(self.header_read_timeout),
            (Some("limits"), "min_upload_rate") => n(self.min_upload_rate as u64),
            (Some("limits"), "max_connections") => n(self.max_connections as u64),
            (Some("uploads"), "ttl") => d(self.upload_ttl),
            (Some("uploads"), "sweep_interval") => d(self.upload_sweep_interval),
            (Some("uploads"), "max_per_repository") => n(self.max_uploads_per_repository),
            (Some("uploads"), "max_per_account") => n(self.max_uploads_per_account),
            (Some("events"), "retention") => d(self.event_retention),
            (Some("audit"), "retention") => d(self.audit_retention),
            (Some("audit"), "max_entries") => n(self.audit_max_entries as u64),
            (Some("cache"), "tag_ttl") => d(self.cache_tag_ttl),
            (Some("cache"), "upstream_timeout") => d(self.cache_upstream_timeout),
            (Some("scanner"), "timeout") => d(self.scan_timeout),
            (Some("ecr"), "registry_id") => s(&self.ecr_registry_id),
            (Some("ecr"), "region") => self.ecr_region.as_deref().and_then(s),
            (Some("ecr"), "listen") => self.ecr_listen.map(|a| a.to_string()).as_deref().and_then(s),
            (Some("ldap"), key) => {
                let l = self.ldap.as_ref()?;
                match key {
                    "url" => s(&l.url),
                    "starttls" => b(l.starttls),
                    "ca_file" => l.ca_file.as_deref().and_then(p),
                    "bind_dn" => s(&l.bind_dn),
                    "bind_password" => secret(!l.bind_password.expose().is_empty()),
                    "base_dn" => s(&l.base_dn),
                    "user_filter" => s(&l.user_filter),
                    "uid_attribute" => s(&l.uid_attribute),
                    "group_base_dn" => l.group_base_dn.as_deref().and_then(s),
                    "group_filter" => s(&l.group_filter),
                    "group_membership_attribute" => s(&l.group_membership_attribute),
                    "group_name_attribute" => s(&l.group_name_attribute),
                    "group_admin_dn" => l.group_admin_dn.as_deref().and_then(s),
                    "timeout" => d(l.timeout),
                    _ => None,
                }
            }
            (Some("webhooks"), "allowed_hosts") => s(&self.webhooks.allowed_hosts.join(",")),
            (Some("webhooks"), "max_attempts") => n(u64::from(self.webhooks.max_attempts)),
            (Some("webhooks"), "retry_base") => d(self.webhooks.retry_base),
            (Some("webhooks"), "timeout") => d(self.webhooks.timeout),
            (Some("storage"), "backend") => s(if s3.is_some() { "s3" } else { "filesystem" }),
            (Some("storage"), "path") => match &self.storage {
                StorageConfig::Filesystem { path } => p(path),
                StorageConfig::S3(_) => None,
            },
            (Some("storage"), "endpoint") => s3.and_then(|c| c.endpoint.as_deref()).and_then(s),
            (Some("storage"), "region") => s3.and_then(|c| s(&c.region)),
            (Some("storage"), "bucket") => s3.and_then(|c| s(&c.bucket)),
            (Some("storage"), "prefix") => s3.and_then(|c| s(&c.prefix)),
            (Some("storage"), "access_key_id") => s3.and_then(|c| c.access_key_id.as_deref()).and_then(s),
            (Some("storage"), "secret_access_key") => s3.and_then(|c| secret(c.secret_access_key.is_some())),
            (Some("storage"), "path_style") => s3.and_then(|c| b(c.path_style)),
            (Some("storage"), "part_size") => s3.and_then(|c| n(c.part_size as u64)),
            (Some("storage"), "redirect") => b(self.blob_redirect_ttl.is_some()),
            (Some("storage"), "redirect_ttl") => self.blob_redirect_ttl.and_then(d),
            (Some("metadata"), "backend") => s(match self.metadata {
                MetadataConfig::Sqlite { .. } => "sqlite",
                MetadataConfig::Postgres { .. } => "postgres",
            }),
            (Some("metadata"), "path") => match &self.metadata {
                MetadataConfig::Sqlite { path } => p(path),
                MetadataConfig::Postgres { .. } => None,
            },
            (Some("metadata"), "url") => match &self.metadata {
                MetadataConfig::Postgres { .. } => secret(true),
                MetadataConfig::Sqlite { .. } => None,
            },
            (Some("metadata"), "pool_size") => match &self.metadata {
                MetadataConfig::Postgres { pool_size, .. } => n((*pool_size).into()),
                MetadataConfig::Sqlite { .. } => None,
            },
            _ => None,
        }
    }
}

/// Settings as TOML a file could hold, each with its source in a comment; unset ones
/// commented out.
pub fn to_toml(settings: &[Setting]) -> String {
    let mut out = String::new();
    let mut section: Option<&str> = None;
    let mut first = true;
    let mut sorted: Vec<&Setting> = settings.iter().collect();
    // Top-level keys first (a key after a [section] header would belong to it).
    sorted.sort_by_key(|s| s.section.is_some());
    for s in sorted {
        if s.section != section || first {
            if let Some(name) = s.section {
                out.push_str(&format!("\n[{name}]\n"));
            }
            section = s.section;
            first = false;
        }
        match &s.value {
            Some(v) => out.push_str(&format!("{} = {v}  # {}\n", s.key, s.source)),
            None => out.push_str(&format!("# {} is not set  ({})\n", s.key, s.env)),
        }
    }
    out
}

/// A duration as people write it in the file: `180d`, `5m`, `90s` (the largest whole unit).
fn short_duration(d: Duration) -> String {
    let (secs, ms) = (d.as_secs(), d.subsec_millis());
    if ms != 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= n && secs % n == 0 {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}
