//! A client of the OCI Distribution API: the one place Berth talks to other registries (the
//! upstreams of proxy caches, the targets and sources of replication).
//!
//! - **Authentication** as registries ask for it: anonymous first; on a `401` with a `Bearer`
//!   challenge a token from its realm for its service and scope (with Basic credentials when
//!   the endpoint has them, anonymously otherwise), cached per scope until shortly before it
//!   expires; on a `Basic` challenge the credentials themselves.
//! - **Docker Hub naming**: `docker.io` (and `index.docker.io`) means
//!   `registry-1.docker.io`, and a one-part repository name means `library/<name>`.
//! - **Retries** of what can be repeated (every request but a streamed upload), with
//!   exponential back-off honouring `Retry-After` on `429` and `503`, on `502`/`504` and on
//!   connection errors; a bounded number of attempts and a bounded wait.
//! - **Streaming**: blobs are returned as byte streams and uploaded from streams, never held
//!   whole; redirects to blob storage are followed, and the `Authorization` header is not
//!   sent to another host (reqwest drops it on cross-origin redirects).
//! - **TLS** with the system roots plus an endpoint's own CA (PEM), or, when the endpoint says
//!   `insecure`, without verification (as Harbor's `insecure` registries).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use sha2::Digest as _;

/// The manifest types a client accepts when it asks for a manifest.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Docker Hub's registry host.
pub const DOCKER_HUB: &str = "registry-1.docker.io";

/// A stream of a blob's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ClientError>> + Send>>;

/// Where a registry is and how to reach it.
#[derive(Clone, Default)]
pub struct Endpoint {
    /// Its URL (`https://quay.io`, `http://127.0.0.1:5000`, `docker.io`); without a scheme,
    /// `https://`.
    pub url: String,
    /// Username (or access key) and password (or token), if any.
    pub credentials: Option<(String, String)>,
    /// A CA certificate (PEM) to trust besides the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Do not verify its TLS certificate.
    pub insecure: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// What went wrong, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry refused the credentials (or wants some).
    #[error("the registry at {0} refused the credentials: {1}")]
    Unauthorized(String, String),
    /// Not allowed with these credentials.
    #[error("the registry at {0} denied access: {1}")]
    Denied(String, String),
    /// No such repository, manifest or blob.
    #[error("not found at the registry: {0}")]
    NotFound(String),
    /// Too many requests, still after the retries.
    #[error("the registry at {host} is rate-limiting (429) after {attempts} attempts")]
    RateLimited {
        /// The registry.
        host: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Another answer than expected.
    #[error("the registry at {host} answered {status}: {body}")]
    Status {
        /// The registry.
        host: String,
        /// Its status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// The registry could not be reached or the connection broke.
    #[error("the registry at {host} cannot be reached: {cause}")]
    Unreachable {
        /// The registry.
        host: String,
        /// Why.
        cause: String,
    },
    /// What it sent is not what it should be (a digest mismatch, bad JSON).
    #[error("the registry at {0} sent something invalid: {1}")]
    Invalid(String, String),
    /// The endpoint's settings are wrong (a bad URL or CA).
    #[error("the registry endpoint is misconfigured: {0}")]
    Config(String),
}

impl ClientError {
    /// Is the registry at fault or unreachable (rather than the request)? A cache serves what
    /// it has on these (stale-if-error).
    pub fn is_upstream_failure(&self) -> bool {
        matches!(self, ClientError::RateLimited { .. } | ClientError::Unreachable { .. })
            || matches!(self, ClientError::Status { status, .. } if *status >= 500)
    }
}

/// How retries back off.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The first wait; it doubles each time.
    pub base: Duration,
    /// The longest wait, also for a `Retry-After`.
    pub max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 4, base: Duration::from_millis(200), max_wait: Duration::from_secs(30) }
    }
}

/// A manifest as the registry sent it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its bytes.
    pub bytes: Bytes,
    /// Its media type (the response's `Content-Type`, else the document's `mediaType`).
    pub media_type: String,
    /// Its digest (`sha256:…`), computed from the bytes.
    pub digest: String,
}

/// What a HEAD of a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`.
    pub digest: String,
    /// `Content-Type`.
    pub media_type: String,
    /// `Content-Length`.
    pub size: u64,
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm=…,service=…,scope=…`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service to ask a token for.
        service: Option<String>,
        /// The scope the registry wants, if it said.
        scope: Option<String>,
    },
    /// `Basic realm=…`.
    Basic,
}

/// Parse a `WWW-Authenticate` header (`Bearer` or `Basic`; parameters may be quoted and hold
/// commas).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    let mut params: HashMap<String, String> = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => v.extend(chars.next()),
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_owned()
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        "basic" => Some(Challenge::Basic),
        _ => None,
    }
}

/// The base URL and whether it is Docker Hub, from what a user typed.
fn base_url(url: &str) -> Result<(String, bool), ClientError> {
    let url = url.trim().trim_end_matches('/');
    let with_scheme = if url.contains("://") { url.to_owned() } else { format!("https://{url}") };
    let parsed = reqwest::Url::parse(&with_scheme).map_err(|e| ClientError::Config(format!("URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ClientError::Config(format!("URL {url:?}: give http:// or https:// and a host")));
    }
    let host = parsed.host_str().unwrap_or_default();
    let hub = matches!(host, "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com");
    if hub {
        return Ok((format!("https://{DOCKER_HUB}"), true));
    }
    Ok((with_scheme.trim_end_matches('/').to_owned(), false))
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// How a request authenticates, once the registry has said.
#[derive(Debug, Clone)]
enum Auth {
    /// Nothing yet (or nothing needed).
    Unknown,
    /// Basic credentials.
    Basic,
    /// Tokens from this realm and service.
    Bearer { realm: String, service: Option<String> },
}

/// A client of one registry. Cheap to share (`Arc`); it caches tokens per scope.
pub struct Client {
    http: reqwest::Client,
    base: String,
    host: String,
    hub: bool,
    credentials: Option<(String, String)>,
    retry: Retry,
    auth: Mutex<Auth>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

/// Most bytes read of a manifest (as Distribution's limit), a token response, a page of tags
/// or repositories, and an error body.
pub const MAX_MANIFEST: usize = 4 << 20;
const MAX_TOKEN: usize = 1 << 20;
const MAX_PAGE: usize = 16 << 20;
const MAX_ERROR_BODY: usize = 8 << 10;

/// A body read whole, but never more than `limit` bytes: what another registry sends cannot
/// grow memory without bound. `None` when it is larger.
async fn limited(r: Response, limit: usize) -> Result<Option<Bytes>, reqwest::Error> {
    if r.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut out = bytes::BytesMut::new();
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out.freeze()))
}

/// The start of a body, for error messages.
async fn body_start(r: Response) -> String {
    let bytes = match limited(r, MAX_ERROR_BODY).await {
        Ok(Some(b)) => b,
        _ => return "(a body too large to show)".into(),
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut s: String = text.chars().take(300).collect();
    if text.len() > s.len() {
        s.push('…');
    }
    s.trim().to_owned()
}

fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Client {
    /// A client of `endpoint`, with the default retries.
    pub fn new(endpoint: &Endpoint) -> Result<Client, ClientError> {
        Client::with_retry(endpoint, Retry::default())
    }

    /// A client of `endpoint` with these retries.
    pub fn with_retry(endpoint: &Endpoint, retry: Retry) -> Result<Client, ClientError> {
        let (base, hub) = base_url(&endpoint.url)?;
        let host = reqwest::Url::parse(&base).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(pem) = &endpoint.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Config(format!("the CA certificate is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Config("the CA certificate holds no PEM certificate".into()));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if endpoint.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Client {
            http,
            base,
            host,
            hub,
            credentials: endpoint.credentials.clone().filter(|(u, p)| !u.is_empty() || !p.is_empty()),
            retry: Retry { attempts: retry.attempts.max(1), ..retry },
            auth: Mutex::new(Auth::Unknown),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Is it Docker Hub?
    pub fn is_docker_hub(&self) -> bool {
        self.hub
    }

    /// A repository name as this registry knows it (Docker Hub's `library/` for one part).
    pub fn repository(&self, name: &str) -> String {
        if self.hub && !name.contains('/') { format!("library/{name}") } else { name.to_owned() }
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        ClientError::Unreachable { host: self.host.clone(), cause }
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        tokens.get(scope).filter(|(_, until)| *until > Instant::now()).map(|(t, _)| t.clone())
    }

    /// A token for `scope` from `realm` (cached until shortly before it expires).
    async fn token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String, ClientError> {
        if let Some(t) = self.cached_token(scope) {
            return Ok(t);
        }
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| ClientError::Invalid(self.host.clone(), format!("token realm {realm:?}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for part in scope.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", part);
            }
        }
        let mut req = self.http.get(url);
        if let Some((u, p)) = &self.credentials {
            req = req.basic_auth(u, Some(p));
        }
        let r = self.retrying(|| req.try_clone().expect("a GET clones")).await?;
        match r.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(ClientError::Unauthorized(self.host.clone(), body_start(r).await));
            }
            s => {
                return Err(ClientError::Status {
                    host: self.host.clone(),
                    status: s.as_u16(),
                    body: body_start(r).await,
                });
            }
        }
        let body = self.read_limited(r, MAX_TOKEN, "the token response").await?;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Invalid(self.host.clone(), format!("the token response: {e}")))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ClientError::Invalid(self.host.clone(), "the token response holds no token".into()))?;
        // Docker's default is 60 s; keep a margin for clock skew and the request in flight.
        let life = Duration::from_secs(t.expires_in.unwrap_or(60).max(10)).saturating_sub(Duration::from_secs(5));
        if let Ok(mut tokens) = self.tokens.lock() {
            if tokens.len() > 1000 {
                tokens.retain(|_, (_, until)| *until > Instant::now());
            }
            tokens.insert(scope.to_owned(), (token.clone(), Instant::now() + life));
        }
        Ok(token)
    }

    /// Send what `build` makes, retrying what can be retried: connection errors, 429, 502,
    /// 503 and 504 (waiting as `Retry-After` says, when it says, within bounds).
    async fn retrying(&self, build: impl Fn() -> RequestBuilder) -> Result<Response, ClientError> {
        let mut wait = self.retry.base;
        for attempt in 1..=self.retry.attempts {
            let last = attempt == self.retry.attempts;
            match build().send().await {
                Ok(r) if matches!(r.status().as_u16(), 429 | 502 | 503 | 504) && !last => {
                    let after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let pause = after.unwrap_or(wait).min(self.retry.max_wait);
                    tracing::info!(host = %self.host, status = r.status().as_u16(), wait_ms = pause.as_millis() as u64, "upstream asks to retry");
                    tokio::time::sleep(pause).await;
                }
                Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => {
                    return Err(ClientError::RateLimited { host: self.host.clone(), attempts: attempt });
                }
                Ok(r) => return Ok(r),
                Err(e) if last || e.is_builder() => return Err(self.unreachable(&e)),
                Err(e) => {
                    tracing::info!(host = %self.host, error = %e, "upstream unreachable; retrying");
                    tokio::time::sleep(wait.min(self.retry.max_wait)).await;
                }
            }
            wait = wait.saturating_mul(2);
        }
        Err(ClientError::Unreachable { host: self.host.clone(), cause: "no attempt was made".into() })
    }

    /// Attach what the registry asked for (`scope`: what a token must grant).
    async fn authorize(&self, req: RequestBuilder, scope: &str) -> Result<RequestBuilder, ClientError> {
        let auth = self.auth.lock().map(|a| a.clone()).unwrap_or(Auth::Unknown);
        Ok(match auth {
            Auth::Unknown => req,
            Auth::Basic => match &self.credentials {
                Some((u, p)) => req.basic_auth(u, Some(p)),
                None => req,
            },
            Auth::Bearer { realm, service } => {
                let t = self.token(&realm, service.as_deref(), scope).await?;
                req.bearer_auth(t)
            }
        })
    }

    /// Send a request the registry may challenge: authorized as it last asked; on a `401`,
    /// learn its challenge and send once more.
    async fn send(&self, scope: &str, build: impl Fn() -> RequestBuilder) -> Result<Response, ClientError> {
        let first = self.authorize(build(), scope).await?;
        let r = self.retrying(|| first.try_clone().expect("a replayable request")).await?;
        if r.status() != StatusCode::UNAUTHORIZED {
            return self.checked(r).await;
        }
        let challenge = r.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
        let learned = match challenge {
            Some(Challenge::Bearer { realm, service, .. }) => Auth::Bearer { realm, service },
            Some(Challenge::Basic) if self.credentials.is_some() => Auth::Basic,
            _ => return Err(ClientError::Unauthorized(self.host.clone(), body_start(r).await)),
        };
        if let Ok(mut a) = self.auth.lock() {
            *a = learned;
        }
        if let Ok(mut t) = self.tokens.lock() {
            t.remove(scope); // a cached token it refused is no good
        }
        let second = self.authorize(build(), scope).await?;
        let r = self.retrying(|| second.try_clone().expect("a replayable request")).await?;
        if r.status() == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized(self.host.clone(), body_start(r).await));
        }
        self.checked(r).await
    }

    /// Errors for what is not a success (404 and 403 by name).
    async fn checked(&self, r: Response) -> Result<Response, ClientError> {
        match r.status() {
            s if s.is_success() || s.is_redirection() => Ok(r),
            StatusCode::NOT_FOUND => {
                let path = r.url().path().to_owned();
                Err(ClientError::NotFound(format!("{path} {}", body_start(r).await)))
            }
            StatusCode::FORBIDDEN => Err(ClientError::Denied(self.host.clone(), body_start(r).await)),
            s => Err(ClientError::Status { host: self.host.clone(), status: s.as_u16(), body: body_start(r).await }),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pull_scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }

    /// `GET /v2/`: reachable, and the credentials (if any) accepted.
    pub async fn ping(&self) -> Result<(), ClientError> {
        // A token for an empty scope proves the credentials where the registry uses tokens.
        self.send("", || self.http.get(self.url("/v2/"))).await.map(|_| ())
    }

    /// `r`'s body, at most `limit` bytes (else `Invalid`, naming `what`).
    async fn read_limited(&self, r: Response, limit: usize, what: &str) -> Result<Bytes, ClientError> {
        match limited(r, limit).await {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(ClientError::Invalid(self.host.clone(), format!("{what} is larger than {limit} bytes"))),
            Err(e) => Err(self.unreachable(&e)),
        }
    }

    /// The manifest `reference` (a tag or a digest) of `repo`, checked against its digest.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<Manifest, ClientError> {
        let repo = self.repository(repo);
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let r = self
            .send(&Self::pull_scope(&repo), || self.http.get(&url).header(ACCEPT, MANIFEST_TYPES.join(", ")))
            .await?;
        let header_type = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned());
        let bytes = self.read_limited(r, MAX_MANIFEST, "the manifest").await?;
        let digest = sha256_of(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(ClientError::Invalid(self.host.clone(), format!("manifest {reference} has digest {digest}")));
        }
        let media_type = match header_type.filter(|t| t.contains("manifest") || t.contains("index")) {
            Some(t) => t,
            None => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into()),
        };
        Ok(Manifest { bytes, media_type, digest })
    }

    /// HEAD of a manifest: its digest, type and size (`None` if there is none).
    pub async fn manifest_head(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>, ClientError> {
        let repo = self.repository(repo);
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let r = match self
            .send(&Self::pull_scope(&repo), || self.http.head(&url).header(ACCEPT, MANIFEST_TYPES.join(", ")))
            .await
        {
            Ok(r) => r,
            Err(ClientError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let h = r.headers();
        let text =
            |name| h.get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).unwrap_or("").to_owned();
        let digest = text("docker-content-digest");
        if digest.is_empty() {
            return Err(ClientError::Invalid(
                self.host.clone(),
                "a manifest HEAD without Docker-Content-Digest".into(),
            ));
        }
        let size = text(CONTENT_LENGTH.as_str()).parse().unwrap_or(0);
        let media_type = text(CONTENT_TYPE.as_str());
        Ok(Some(ManifestHead { digest, media_type, size }))
    }

    /// The bytes of blob `digest` of `repo` as a stream, and its size. The stream fails if the
    /// bytes do not hash to `digest` (checked as they pass, nothing buffered).
    pub async fn blob(&self, repo: &str, digest: &str) -> Result<(u64, ByteStream), ClientError> {
        let repo = self.repository(repo);
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let r = self.send(&Self::pull_scope(&repo), || self.http.get(&url)).await?;
        let size = r.content_length().unwrap_or(0);
        let host = self.host.clone();
        let inner = r
            .bytes_stream()
            .map(move |c| c.map_err(|e| ClientError::Unreachable { host: host.clone(), cause: e.to_string() }));
        Ok((size, Box::pin(VerifiedStream::new(Box::pin(inner), digest.to_owned(), self.host.clone()))))
    }

    /// Does `repo` have blob `digest`?
    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool, ClientError> {
        let repo = self.repository(repo);
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        match self.send(&format!("repository:{repo}:pull,push"), || self.http.head(&url)).await {
            Ok(_) => Ok(true),
            Err(ClientError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Mount blob `digest` into `repo` from `from` on the same registry; `false` when the
    /// registry wants an upload instead.
    pub async fn mount_blob(&self, repo: &str, digest: &str, from: &str) -> Result<bool, ClientError> {
        let repo = self.repository(repo);
        let from = self.repository(from);
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/?mount={}&from={}", enc(digest), enc(&from)));
        let scope = format!("repository:{repo}:pull,push repository:{from}:pull");
        let r = self.send(&scope, || self.http.post(&url)).await?;
        Ok(r.status() == StatusCode::CREATED)
    }

    /// Upload blob `digest` (`size` bytes from `body`) into `repo`: a session, then one PUT
    /// that streams the body.
    pub async fn push_blob(&self, repo: &str, digest: &str, size: u64, body: ByteStream) -> Result<(), ClientError> {
        let repo = self.repository(repo);
        let scope = format!("repository:{repo}:pull,push");
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let r = self.send(&scope, || self.http.post(&start)).await?;
        let location = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Invalid(self.host.clone(), "an upload session without Location".into()))?
            .to_owned();
        let mut put = reqwest::Url::parse(&self.base)
            .and_then(|b| b.join(&location))
            .map_err(|e| ClientError::Invalid(self.host.clone(), format!("upload location {location:?}: {e}")))?;
        put.query_pairs_mut().append_pair("digest", digest);
        let stream = body.map(|r| r.map_err(std::io::Error::other));
        let req = self
            .authorize(self.http.put(put), &scope)
            .await?
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream));
        // A streamed body cannot be sent twice: one attempt.
        let r = req.send().await.map_err(|e| self.unreachable(&e))?;
        self.checked(r).await.map(|_| ())
    }

    /// Store a manifest under `reference` (a tag or its digest); returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String, ClientError> {
        let repo = self.repository(repo);
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let scope = format!("repository:{repo}:pull,push");
        self.send(&scope, || self.http.put(&url).header(CONTENT_TYPE, media_type).body(bytes.clone())).await?;
        Ok(sha256_of(&bytes))
    }

    /// Delete a manifest by digest.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<(), ClientError> {
        let repo = self.repository(repo);
        let url = self.url(&format!("/v2/{repo}/manifests/{digest}"));
        self.send(&format!("repository:{repo}:delete"), || self.http.delete(&url)).await.map(|_| ())
    }

    /// Every tag of `repo` (following `Link` pagination).
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, ClientError> {
        let repo = self.repository(repo);
        let mut next = Some(format!("/v2/{repo}/tags/list?n=1000"));
        let mut out = Vec::new();
        while let Some(path) = next.take() {
            let url = self.url(&path);
            let r = self.send(&Self::pull_scope(&repo), || self.http.get(&url)).await?;
            next = link_next(r.headers());
            let body = self.read_limited(r, MAX_PAGE, "a page of tags").await?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ClientError::Invalid(self.host.clone(), format!("tags/list: {e}")))?;
            out.extend(v["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)));
            if out.len() > 1_000_000 {
                return Err(ClientError::Invalid(self.host.clone(), "more than a million tags".into()));
            }
        }
        Ok(out)
    }

    /// Every repository the registry lists (`/v2/_catalog`, following `Link`).
    pub async fn catalog(&self) -> Result<Vec<String>, ClientError> {
        let mut next = Some("/v2/_catalog?n=1000".to_owned());
        let mut out = Vec::new();
        while let Some(path) = next.take() {
            let url = self.url(&path);
            let r = self.send("registry:catalog:*", || self.http.get(&url)).await?;
            next = link_next(r.headers());
            let body = self.read_limited(r, MAX_PAGE, "a page of the catalog").await?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ClientError::Invalid(self.host.clone(), format!("_catalog: {e}")))?;
            out.extend(
                v["repositories"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)),
            );
            if out.len() > 10_000_000 {
                return Err(ClientError::Invalid(self.host.clone(), "more than ten million repositories".into()));
            }
        }
        Ok(out)
    }

    /// A raw request with this client's authentication (for what the methods do not cover).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: HeaderMap,
    ) -> Result<Response, ClientError> {
        let url = self.url(path);
        self.send(scope, || {
            let mut h = headers.clone();
            h.remove(AUTHORIZATION);
            self.http.request(method.clone(), &url).headers(h)
        })
        .await
    }
}

/// The path of a `Link: <…>; rel="next"` header.
fn link_next(h: &HeaderMap) -> Option<String> {
    let link = h.get("link")?.to_str().ok()?;
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    if !link[end..].contains("next") {
        return None;
    }
    let target = &link[start..end];
    match reqwest::Url::parse(target) {
        Ok(u) => Some(format!("{}{}", u.path(), u.query().map(|q| format!("?{q}")).unwrap_or_default())),
        Err(_) => Some(target.to_owned()),
    }
}

/// A stream that hashes what passes and fails at its end unless the bytes match the digest.
struct VerifiedStream {
    inner: ByteStream,
    want: String,
    host: String,
    hasher: Option<sha2::Sha256>,
}

impl VerifiedStream {
    fn new(inner: ByteStream, want: String, host: String) -> Self {
        VerifiedStream { inner, want, host, hasher: Some(sha2::Sha256::new()) }
    }
}

impl Stream for VerifiedStream {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&b);
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.hasher = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => match self.hasher.take() {
                Some(h) => {
                    let got = format!("sha256:{}", hex::encode(h.finalize()));
                    if self.want.starts_with("sha256:") && got != self.want {
                        Poll::Ready(Some(Err(ClientError::Invalid(
                            self.host.clone(),
                            format!("blob {} arrived with digest {got}", self.want),
                        ))))
                    } else {
                        Poll::Ready(None)
                    }
                }
                None => Poll::Ready(None),
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn challenges_parse_with_quotes_and_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge("bearer realm=http://x/token, service=x"),
            Some(Challenge::Bearer { realm: "http://x/token".into(), service: Some("x".into()), scope: None })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None, "no realm");
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn docker_hub_names() {
        for url in ["docker.io", "https://index.docker.io/", "https://registry-1.docker.io"] {
            let c = Client::new(&Endpoint { url: url.into(), ..Default::default() }).unwrap();
            assert!(c.is_docker_hub(), "{url}");
            assert_eq!(c.base(), "https://registry-1.docker.io");
            assert_eq!(c.repository("alpine"), "library/alpine");
            assert_eq!(c.repository("bitnami/redis"), "bitnami/redis");
        }
        let q = Client::new(&Endpoint { url: "quay.io".into(), ..Default::default() }).unwrap();
        assert_eq!((q.base(), q.repository("alpine")), ("https://quay.io", "alpine".to_string()));
        assert!(matches!(
            Client::new(&Endpoint { url: "ftp://x".into(), ..Default::default() }),
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            Client::new(&Endpoint { url: "https://x".into(), ca_pem: Some(b"not pem".to_vec()), ..Default::default() }),
            Err(ClientError::Config(_))
        ));
    }

    #[tokio::test]
    async fn a_blob_is_checked_against_its_digest_as_it_streams() {
        let run = |want: &str| {
            let chunks: Vec<Result<Bytes, ClientError>> =
                vec![Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))];
            let s = VerifiedStream::new(Box::pin(futures::stream::iter(chunks)), want.to_owned(), "r.example".into());
            async move { s.collect::<Vec<_>>().await }
        };
        let good = run(&sha256_of(b"hello world")).await;
        assert_eq!(good.len(), 2);
        assert!(good.iter().all(Result::is_ok));
        let bad = run(&sha256_of(b"something else")).await;
        assert_eq!(bad.len(), 3, "the two chunks, then the error");
        assert!(matches!(&bad[2], Err(ClientError::Invalid(_, m)) if m.contains("arrived with digest")));
    }

    #[test]
    fn link_headers_give_the_next_page() {
        let mut h = HeaderMap::new();
        h.insert("link", r#"</v2/_catalog?last=b&n=2>; rel="next""#.parse().unwrap());
        assert_eq!(link_next(&h).as_deref(), Some("/v2/_catalog?last=b&n=2"));
        h.insert("link", r#"<https://r.example/v2/x/tags/list?last=t&n=9>; rel="next""#.parse().unwrap());
        assert_eq!(link_next(&h).as_deref(), Some("/v2/x/tags/list?last=t&n=9"));
        assert_eq!(link_next(&HeaderMap::new()), None);
    }
}
