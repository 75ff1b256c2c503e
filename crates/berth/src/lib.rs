//! The `berth` binary's library half: wires configuration to concrete backends and runs
//! the HTTP server. Integration tests start servers through [`start`].
//!
//! **Invariant:** only this crate picks concrete backends (config enum -> `Arc<dyn Trait>`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use berth_blob::{BlobStore, FsBlobStore};
use berth_config::{Config, MetadataConfig, StorageConfig};
use berth_meta::{MetaStore, SqlMetaStore};
use berth_registry::{Registry, RegistryOptions};
use tracing::{info, warn};

pub mod backup;
pub mod cli;
mod conn;
pub mod datadir;
mod events;
pub mod fill;

pub use events::{event_json, events_table};
pub mod jobs;
pub mod logsink;

/// A running server.
pub struct Running {
    /// The data directory's lock (embedded metadata), released on drop.
    _lock: Option<datadir::DataDirLock>,
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
    /// The ECR API's own listener's address (`[ecr] listen`), when configured.
    pub ecr_addr: Option<SocketAddr>,
    handle: axum_server::Handle,
    ecr: Option<(axum_server::Handle, tokio::task::JoinHandle<std::io::Result<()>>)>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    sql: Arc<SqlMetaStore>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish (up to `grace`), and wait.
    pub async fn shutdown(self, grace: std::time::Duration) -> anyhow::Result<()> {
        self.handle.graceful_shutdown(Some(grace));
        for t in &self.background {
            t.abort();
        }
        if let Some((handle, task)) = self.ecr {
            handle.graceful_shutdown(Some(grace));
            task.await.context("ECR API task")?.context("ECR API")?;
        }
        self.task.await.context("server task")?.context("server")?;
        Ok(())
    }

    /// Wait until the server stops by itself (it does not, unless it fails).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task")?.context("server")?;
        if let Err(e) = self.sql.checkpoint().await {
            warn!(error = %e, "could not checkpoint the database's write-ahead log at shutdown");
        }
        Ok(())
    }

    /// A handle to request shutdown from elsewhere (e.g. a signal handler).
    pub fn handle(&self) -> axum_server::Handle {
        self.handle.clone()
    }
}

/// Serve `app` on `listener` (TLS when `tls`), with the connection limit and the timeouts
/// for slow or idle clients: headers (and the next request on a kept-alive connection) must
/// arrive within `limits.header_read_timeout`; bodies at `limits.min_upload_rate` (berth-oci).
fn serve_on(
    listener: std::net::TcpListener,
    app: axum::Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    cfg: &Config,
    handle: &axum_server::Handle,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let svc = app.into_make_service_with_connect_info::<SocketAddr>();
    let timeout = cfg.header_read_timeout;
    let http = |b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>| {
        b.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(timeout);
        b.http2().timer(hyper_util::rt::TokioTimer::new()).keep_alive_interval(timeout).keep_alive_timeout(timeout);
    };
    match tls {
        Some(rc) => {
            let mut server = axum_server::from_tcp_rustls(listener, rc)
                .map(|a| a.acceptor(conn::LimitAcceptor::new(cfg.max_connections, false)))
                .handle(handle.clone());
            http(server.http_builder());
            tokio::spawn(async move { server.serve(svc).await })
        }
        None => {
            let mut server = axum_server::from_tcp(listener)
                .acceptor(conn::LimitAcceptor::new(cfg.max_connections, true))
                .handle(handle.clone());
            http(server.http_builder());
            tokio::spawn(async move { server.serve(svc).await })
        }
    }
}

/// Open the configured metadata store (running migrations).
pub async fn open_meta(cfg: &Config) -> anyhow::Result<Arc<SqlMetaStore>> {
    Ok(match &cfg.metadata {
        MetadataConfig::Sqlite { path } => Arc::new(
            SqlMetaStore::open_sqlite(path)
                .await
                .with_context(|| format!("opening metadata database {}", path.display()))?,
        ),
        MetadataConfig::Postgres { url, pool_size } => Arc::new(
            SqlMetaStore::open_postgres(url.expose(), *pool_size)
                .await
                .context("connecting to the PostgreSQL metadata database (metadata.url)")?,
        ),
    })
}

/// Which metadata database the configuration names, in words (no password).
pub fn describe_meta(cfg: &Config) -> String {
    match &cfg.metadata {
        MetadataConfig::Sqlite { path } => format!("the SQLite database {}", path.display()),
        MetadataConfig::Postgres { url, .. } => {
            let u = url.expose();
            let rest = u.split_once("://").map_or(u, |(_, r)| r);
            let place = rest.rsplit_once('@').map_or(rest, |(_, p)| p);
            format!("the PostgreSQL database {}", place.split('?').next().unwrap_or(place))
        }
    }
}

/// Open the metadata database of an existing installation, for offline commands: says on
/// stderr which one, and refuses an embedded database that does not exist (so a command run
/// in the wrong directory does not silently create an empty one; `berth migrate` creates).
pub async fn open_meta_existing(cfg: &Config) -> anyhow::Result<Arc<SqlMetaStore>> {
    require_meta(cfg)?;
    open_meta(cfg).await
}

/// The check of [`open_meta_existing`] (for commands that open more than the database).
pub fn require_meta(cfg: &Config) -> anyhow::Result<()> {
    if let MetadataConfig::Sqlite { path } = &cfg.metadata
        && !path.exists()
    {
        anyhow::bail!(
            "there is no metadata database at {} (data directory {}): give --data-dir or --config of an \
             installation, or create one with `berth migrate`",
            path.display(),
            cfg.data_dir.display()
        );
    }
    eprintln!("berth: using {}", describe_meta(cfg));
    Ok(())
}

/// Open the configured stores and build the registry.
pub async fn open_registry(cfg: &Config) -> anyhow::Result<Arc<Registry>> {
    Ok(Arc::new(open_all(cfg).await?.0))
}

/// The access service's settings from the configuration.
pub fn auth_config(cfg: &Config) -> berth_auth::AuthConfig {
    let a = &cfg.auth;
    berth_auth::AuthConfig {
        service: a.service.clone(),
        issuer: a.issuer.clone(),
        token_ttl: a.token_ttl,
        refresh_ttl: a.refresh_ttl,
        session_ttl: a.session_ttl,
        create_projects_on_push: a.create_projects_on_push,
        project_creation_admin_only: a.project_creation_admin_only,
        basic_challenge: a.basic_challenge,
        login_max_failures: a.login_max_failures,
        login_lockout: a.login_lockout,
        ..Default::default()
    }
}

/// `host[:port]` clients pull this registry from, as webhooks name it: `external_url`'s,
/// else the listener's (`localhost` for an unspecified address).
fn registry_host(cfg: &Config, addr: std::net::SocketAddr) -> String {
    let from_url = cfg.external_url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()).and_then(|u| {
        let host = u.host_str()?.to_owned();
        Some(match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        })
    });
    from_url.unwrap_or_else(|| {
        if addr.ip().is_unspecified() { format!("localhost:{}", addr.port()) } else { addr.to_string() }
    })
}

/// The sealer of stored upstream credentials and access keys' secrets, from
/// `secret_key_file` (created if absent).
pub fn sealer(cfg: &Config) -> anyhow::Result<Arc<berth_auth::seal::Sealer>> {
    let s = berth_auth::seal::Sealer::load_or_create(&cfg.secret_key_file)
        .with_context(|| format!("reading the secret key {}", cfg.secret_key_file.display()))?;
    Ok(Arc::new(s))
}

/// Open the access service over the metadata store, with OIDC when configured.
pub async fn open_auth(cfg: &Config, sql: Arc<SqlMetaStore>) -> anyhow::Result<Arc<berth_auth::Auth>> {
    let mut auth = berth_auth::Auth::open(sql, auth_config(cfg))
        .await
        .context("opening the access service")?
        .with_sealer(sealer(cfg)?);
    if let Some(o) = &cfg.oidc {
        let redirect_url = o
            .redirect_url
            .clone()
            .or_else(|| cfg.external_url.as_ref().map(|u| format!("{u}/c/oidc/callback")))
            .unwrap_or_default();
        auth = auth.with_oidc(berth_auth::oidc::OidcConfig {
            issuer: o.issuer.clone(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.expose().to_owned(),
            redirect_url,
            scope: o.scope.clone(),
            groups_claim: o.groups_claim.clone(),
            username_claim: o.username_claim.clone(),
            admin_group: o.admin_group.clone(),
            auto_onboard: o.auto_onboard,
        });
    }
    if let Some(l) = &cfg.ldap {
        let ca_pem = match &l.ca_file {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading ldap.ca_file {}", path.display()))?)
            }
            None => None,
        };
        let client = berth_auth::ldap::LdapClient::new(berth_auth::ldap::LdapConfig {
            url: l.url.clone(),
            starttls: l.starttls,
            ca_pem,
            bind_dn: l.bind_dn.clone(),
            bind_password: l.bind_password.expose().to_owned(),
            base_dn: l.base_dn.clone(),
            user_filter: l.user_filter.clone(),
            uid_attribute: l.uid_attribute.clone(),
            group_base_dn: l.group_base_dn.clone(),
            group_filter: l.group_filter.clone(),
            group_membership_attribute: l.group_membership_attribute.clone(),
            group_name_attribute: l.group_name_attribute.clone(),
            group_admin_dn: l.group_admin_dn.clone(),
            timeout: l.timeout,
        })
        .map_err(anyhow::Error::msg)?;
        auth = auth.with_ldap(client);
    }
    Ok(Arc::new(auth))
}

async fn open_all(cfg: &Config) -> anyhow::Result<(Registry, Arc<SqlMetaStore>)> {
    // The blob store and the database open side by side.
    let (blobs, sql) = tokio::try_join!(open_blobs(cfg), open_meta(cfg))?;
    let meta: Arc<dyn MetaStore> = sql.clone();
    let opts = RegistryOptions {
        max_manifest_bytes: cfg.max_manifest_bytes,
        upload_ttl: cfg.upload_ttl,
        // The embedded database has exactly one writer, this process: its records can be cached.
        cache_records: matches!(cfg.metadata, MetadataConfig::Sqlite { .. }),
        blob_redirect_ttl: cfg.blob_redirect_ttl,
        max_uploads_per_repository: cfg.max_uploads_per_repository,
        max_uploads_per_account: cfg.max_uploads_per_account,
    };
    Ok((Registry::new(blobs, meta, opts), sql))
}

/// Open the configured blob store.
async fn open_blobs(cfg: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match &cfg.storage {
        StorageConfig::Filesystem { path } => Arc::new(
            FsBlobStore::open(path).await.with_context(|| format!("opening blob storage at {}", path.display()))?,
        ),
        StorageConfig::S3(s3) => Arc::new(
            berth_blob::S3BlobStore::new(&berth_blob::S3Options {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: s3.secret_access_key.as_ref().map(|s| s.expose().to_owned()),
                path_style: s3.path_style,
                part_size: s3.part_size,
            })
            .context("configuring S3 blob storage")?,
        ),
    })
}

/// The TLS server configuration from the certificate and key files: both readable, PEM,
/// and the key the certificate's (`berth config check` runs this too).
pub fn tls_config(cfg: &berth_config::TlsConfig) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .with_context(|| format!("reading TLS certificate {}", cfg.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cfg.cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no PEM certificate in the TLS certificate file {}", cfg.cert.display());
    let key =
        PrivateKeyDer::from_pem_file(&cfg.key).with_context(|| format!("reading TLS key {}", cfg.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(sc)
}

/// Bind, start serving, and start the upload-expiry sweeper. Returns once listening.
pub async fn start(cfg: &Config) -> anyhow::Result<Running> {
    // An embedded data directory: private, and served by one process at a time.
    let embedded = matches!(cfg.metadata, MetadataConfig::Sqlite { .. });
    let lock = if embedded || matches!(cfg.storage, StorageConfig::Filesystem { .. }) {
        datadir::secure(&cfg.data_dir)?;
        if embedded { Some(datadir::lock(&cfg.data_dir)?) } else { None }
    } else {
        None
    };
    let (registry, sql) = open_all(cfg).await?;
    let auth = open_auth(cfg, sql.clone()).await?;
    // Pulls and logins share one batching writer of events.
    let registry = Arc::new(registry.with_events(auth.events().clone()));
    let operator = cfg.admin_token.as_ref().map(berth_config::Secret::expose);
    let mut state = berth_oci::AppState::new(registry.clone(), auth.clone()).with_operator_token(operator);
    state.external_url = cfg.external_url.clone();
    state.tls = cfg.tls.is_some();
    state.min_upload_rate = (cfg.min_upload_rate, cfg.header_read_timeout);
    let scanning = Arc::new(berth_scanner::Scanning::new(sql.clone()));
    state.scanning = Some(scanning.clone());
    state.signatures = Some(Arc::new(berth_registry::Signatures::new(registry.clone(), sql.clone())));
    // Bound before the services are made: webhooks name this registry's address.
    let listener = std::net::TcpListener::bind(cfg.listen).with_context(|| format!("binding {}", cfg.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let webhooks = Arc::new(
        berth_webhook::Webhooks::new(
            sql.clone(),
            sealer(cfg)?,
            berth_webhook::Settings {
                allowed_hosts: cfg.webhooks.allowed_hosts.clone(),
                max_attempts: cfg.webhooks.max_attempts,
                retry_base: cfg.webhooks.retry_base,
                timeout: cfg.webhooks.timeout,
                registry_host: registry_host(cfg, addr),
                poll: std::time::Duration::from_millis(250),
            },
        )
        .map_err(anyhow::Error::msg)?,
    );
    let upstreams = Arc::new(berth_registry::Upstreams::new(sql.clone(), sealer(cfg)?));
    let replication =
        Arc::new(berth_registry::Replication::new(registry.clone(), upstreams.clone(), sql.clone(), sql.clone()));
    state.proxy = Some(berth_registry::Proxy::new(
        registry.clone(),
        upstreams.clone(),
        sql.clone(),
        berth_registry::ProxyOptions { tag_ttl: cfg.cache_tag_ttl, timeout: cfg.cache_upstream_timeout },
    ));
    let mut admin_state = berth_admin::AdminState::new(
        berth_jobs::Jobs::new(sql.clone()),
        berth_jobs::GcService::new(sql.clone(), sql.clone()),
        berth_jobs::PolicyService::new(sql.clone(), sql.clone(), sql.clone()),
        scanning.clone(),
        registry.clone(),
        auth.clone(),
        upstreams,
    )
    .with_operator_token(operator);
    admin_state.replication = Some(replication.clone());
    admin_state.webhooks = Some(webhooks.clone());
    admin_state.signatures = state.signatures.clone();
    admin_state.proxy = state.proxy.clone();
    admin_state.external_url = cfg.external_url.clone();
    admin_state.tls = cfg.tls.is_some();
    admin_state.audit_retention = cfg.audit_retention;
    admin_state.audit_max_entries = cfg.audit_max_entries;
    admin_state.ecr_registry_id = cfg.ecr_registry_id.clone();
    admin_state.ecr_region = cfg.ecr_region.clone();
    let ecr_state = admin_state.clone();
    let admin = berth_admin::router(admin_state);
    let oci_state = state.clone();
    let app = if cfg.role.serves_api() { berth_oci::router_with(state, admin) } else { berth_oci::ops_router(state) };
    let ecr_app = berth_oci::observed(oci_state, berth_admin::ecr_router(ecr_state, addr.port()));
    let handle = axum_server::Handle::new();
    conn::raise_nofile_limit();
    // TLS loads before the admin is created: a start that fails on its certificate must not
    // print (and lose) a generated password.
    let tls = match &cfg.tls {
        Some(t) => Some(axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls_config(t)?))),
        None => None,
    };
    let admin_password = cfg.admin_password.as_ref().map(berth_config::Secret::expose);
    let bootstrap = if cfg.role.serves_api() { Some(auth.bootstrap_admin(admin_password).await?) } else { None };
    if let Some(berth_auth::AdminBootstrap::Exists) = bootstrap
        && let Some(pw) = admin_password
    {
        // An admin who never signed in takes BERTH_ADMIN_PASSWORD (beside serving: checking
        // costs a password hash, which need not delay the first answer).
        auth.reapply_admin_password(pw).await;
    }
    if let Some(berth_auth::AdminBootstrap::Created { generated: Some(generated) }) = bootstrap {
        // Printed once, to the terminal only (never to the log): only its hash is stored.
        // After the log lines so far, which may still be buffered.
        crate::logsink::flush();
        eprintln!(
            "\nberth: created the system administrator `admin` with the password\n\n    {generated}\n\n\
             (set BERTH_ADMIN_PASSWORD to choose it: it applies until `admin` first signs in; a lost\n\
             password is reset with `berth admin reset-password`)\n"
        );
    }
    if cfg.external_url.is_none() && cfg.role.serves_api() {
        warn!(
            "external_url is not set: token realms and pull commands name the host each request came to \
             (Host, X-Forwarded-Host or HTTP/2 :authority); set it when clients reach Berth by another name"
        );
    }
    // The ECR API on its own address too, with the same TLS and limits.
    let ecr = match cfg.ecr_listen.filter(|_| cfg.role.serves_api()) {
        Some(at) => {
            let l = std::net::TcpListener::bind(at).with_context(|| format!("binding {at} ([ecr] listen)"))?;
            l.set_nonblocking(true)?;
            let ecr_addr = l.local_addr()?;
            let handle = axum_server::Handle::new();
            let task = serve_on(l, ecr_app, tls.clone(), cfg, &handle);
            Some((ecr_addr, handle, task))
        }
        None => None,
    };
    let task = serve_on(listener, app, tls, cfg, &handle);
    let mut background = Vec::new();
    let sql_handle = sql.clone();
    // Changes made through any replica reach this one's caches through the event log.
    background.push(events::follow_changes(sql.clone(), auth.clone()).await?);
    if cfg.role.runs_jobs() {
        background.extend(jobs::start_worker(cfg, registry.clone(), sql.clone(), auth.clone(), replication));
        background.extend(events::start_consumers(sql, auth.clone(), webhooks.clone(), scanning));
        background.push(webhooks.run());
    }
    let ecr_addr = ecr.as_ref().map(|(a, _, _)| *a);
    info!(%addr, ecr_addr = ?ecr_addr, tls = cfg.tls.is_some(), role = ?cfg.role, data_dir = %cfg.data_dir.display(), "berth is serving");
    let ecr = ecr.map(|(_, h, t)| (h, t));
    Ok(Running { _lock: lock, addr, tls: cfg.tls.is_some(), ecr_addr, handle, ecr, task, background, sql: sql_handle })
}
