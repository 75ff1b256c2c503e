//! The one place where errors become OCI error codes and HTTP statuses.
//!
//! Every lower error converts into [`OciError`] through `From`; [`OciError::code`] and
//! [`OciError::status`] are exhaustive matches, so a new variant does not compile until it has
//! both. On a 5xx the client gets a short generic message, and the real error rides in a
//! response extension ([`InternalError`]) that the request middleware logs once.

use axum::Json;
use axum::response::{IntoResponse, Response};
use berth_registry::RegistryError;
use berth_types::NameError;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::route::RouteError;

/// An error as the OCI API reports it.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The repository name is malformed.
    #[error("{0}")]
    NameInvalid(String),
    /// A digest is malformed.
    #[error("{0}")]
    DigestInvalid(String),
    /// An algorithm or operation Berth does not support.
    #[error("{0}")]
    Unsupported(String),
    /// A header such as `Content-Range` is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No such endpoint.
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint exists but not for this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// A request body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// A handler panicked.
    #[error("internal panic: {0}")]
    Panic(String),
    /// Credentials are missing or were refused; `challenge` is the `WWW-Authenticate` value.
    #[error("{message}")]
    Unauthorized {
        /// Why.
        message: String,
        /// The challenge telling the client where to get a token.
        challenge: String,
    },
    /// The caller is known but may not do this.
    #[error("{0}")]
    Denied(String),
    /// The repository's project does not exist, or the caller may not see it.
    #[error(
        "project {0:?} does not exist or you may not access it (an administrator creates projects: berth project create {0})"
    )]
    ProjectUnknown(String),
    /// Too many failed logins.
    #[error("{message}")]
    TooManyRequests {
        /// Why.
        message: String,
        /// When to try again.
        retry_after: std::time::Duration,
    },
    /// The access layer failed (database).
    #[error("authorization failed: {0}")]
    Auth(String),
    /// The metadata database cannot be reached: `503` with `Retry-After`, whatever the route.
    #[error("the registry's metadata database is unavailable; try again in a few seconds")]
    Unavailable(String),
    /// An identity provider (LDAP) cannot be reached: `503` with `Retry-After`, saying which.
    #[error("{0}")]
    ProviderUnavailable(String),
}

/// `Retry-After` of a `503` (seconds).
pub const RETRY_AFTER_SECS: u64 = 5;

impl From<berth_registry::MetaError> for OciError {
    fn from(e: berth_registry::MetaError) -> Self {
        match e {
            berth_registry::MetaError::Unavailable(m) => OciError::Unavailable(m),
            e @ berth_registry::MetaError::StorageFull(_) => OciError::Registry(RegistryError::Meta(e)),
            e @ berth_registry::MetaError::QuotaExceeded { .. } => OciError::Registry(e.into()),
            e => OciError::Auth(e.to_string()),
        }
    }
}

/// Extension carrying the real cause of a 5xx to the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

impl From<RouteError> for OciError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotFound => OciError::NotFound,
            RouteError::Name(n) => n.into(),
        }
    }
}

impl From<NameError> for OciError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Repo(_) => OciError::NameInvalid(e.to_string()),
            NameError::Tag(_) => OciError::Registry(RegistryError::TagInvalid(e.to_string())),
            NameError::Digest(berth_types::DigestError::Unsupported(a)) => {
                OciError::Unsupported(format!("unsupported digest algorithm {a:?}: use sha256 or sha512"))
            }
            NameError::Digest(d) => OciError::DigestInvalid(d.to_string()),
        }
    }
}

impl From<berth_types::DigestError> for OciError {
    fn from(e: berth_types::DigestError) -> Self {
        NameError::Digest(e).into()
    }
}

impl OciError {
    /// The OCI error code.
    pub fn code(&self) -> &'static str {
        use RegistryError as R;
        match self {
            OciError::Registry(R::Meta(berth_registry::MetaError::Unavailable(_)))
            | OciError::Unavailable(_)
            | OciError::ProviderUnavailable(_) => "UNAVAILABLE",
            OciError::Registry(r) => match r {
                R::BlobUnknown(_) => "BLOB_UNKNOWN",
                R::BlobQuarantined { .. } => "UNKNOWN",
                R::UploadUnknown => "BLOB_UPLOAD_UNKNOWN",
                // The spec's table has no range code: an upload out of order is an invalid upload, a
                // read past the end a size the blob does not have.
                R::OutOfOrder { .. } => "BLOB_UPLOAD_INVALID",
                R::UploadInvalid(_) | R::Body(_) => "BLOB_UPLOAD_INVALID",
                R::DigestMismatch { .. } | R::DigestInvalid(_) => "DIGEST_INVALID",
                R::SizeInvalid(_) | R::TooLarge { .. } => "SIZE_INVALID",
                R::ManifestUnknown(_) => "MANIFEST_UNKNOWN",
                R::ManifestInvalid(_) => "MANIFEST_INVALID",
                R::ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
                R::NameUnknown(_) => "NAME_UNKNOWN",
                // Only a push gets here (reads of such a tag are 404 MANIFEST_UNKNOWN).
                R::TagInvalid(_) => "MANIFEST_INVALID",
                R::TooManyUploads(..) => "TOOMANYREQUESTS",
                R::QuotaExceeded(_) | R::TagImmutable { .. } => "DENIED",
                R::PolicyInvalid(_) => "UNSUPPORTED",
                R::RangeNotSatisfiable { .. } => "SIZE_INVALID",
                R::Upstream(_) => "UNAVAILABLE",
                R::ReadOnly(_) => "DENIED",
                R::Blob(_) | R::Meta(_) => "UNKNOWN",
            },
            OciError::NameInvalid(_) => "NAME_INVALID",
            OciError::DigestInvalid(_) => "DIGEST_INVALID",
            OciError::Unsupported(_) | OciError::MethodNotAllowed | OciError::NotFound => "UNSUPPORTED",
            OciError::BadRequest(_) => "BLOB_UPLOAD_INVALID",
            OciError::TooLarge(_) => "SIZE_INVALID",
            OciError::Panic(_) | OciError::Auth(_) => "UNKNOWN",
            OciError::Unauthorized { .. } => "UNAUTHORIZED",
            OciError::Denied(_) => "DENIED",
            OciError::ProjectUnknown(_) => "NAME_UNKNOWN",
            OciError::TooManyRequests { .. } => "TOOMANYREQUESTS",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use RegistryError as R;
        match self {
            OciError::Registry(R::Meta(berth_registry::MetaError::Unavailable(_)))
            | OciError::Unavailable(_)
            | OciError::ProviderUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OciError::Registry(r) => match r {
                R::BlobUnknown(_) | R::UploadUnknown | R::ManifestUnknown(_) | R::NameUnknown(_) => {
                    StatusCode::NOT_FOUND
                }
                R::OutOfOrder { .. } | R::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
                // A server-side fault the client cannot fix here: mirrors fall back to another.
                R::BlobQuarantined { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                R::UploadInvalid(_)
                | R::Body(_)
                | R::DigestMismatch { .. }
                | R::DigestInvalid(_)
                | R::SizeInvalid(_)
                | R::ManifestInvalid(_)
                | R::ManifestBlobUnknown(_)
                | R::TagInvalid(_) => StatusCode::BAD_REQUEST,
                R::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                R::TooManyUploads(..) => StatusCode::TOO_MANY_REQUESTS,
                R::QuotaExceeded(_) => StatusCode::FORBIDDEN,
                // As Harbor answers a push over an immutable tag.
                R::TagImmutable { .. } => StatusCode::PRECONDITION_FAILED,
                R::PolicyInvalid(_) => StatusCode::BAD_REQUEST,
                // Clients retry or fall back to another mirror.
                R::Upstream(_) => StatusCode::SERVICE_UNAVAILABLE,
                // As Harbor answers a push to a proxy-cache project.
                R::ReadOnly(_) => StatusCode::FORBIDDEN,
                R::Blob(berth_registry::BlobError::Io(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                    StatusCode::INSUFFICIENT_STORAGE
                }
                R::Meta(berth_registry::MetaError::StorageFull(_)) => StatusCode::INSUFFICIENT_STORAGE,
                R::Blob(_) | R::Meta(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            OciError::NameInvalid(_) | OciError::DigestInvalid(_) | OciError::BadRequest(_) => StatusCode::BAD_REQUEST,
            OciError::Unsupported(_) => StatusCode::BAD_REQUEST,
            OciError::NotFound => StatusCode::NOT_FOUND,
            OciError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            OciError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            OciError::Panic(_) | OciError::Auth(_) => StatusCode::INTERNAL_SERVER_ERROR,
            OciError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            OciError::Denied(_) => StatusCode::FORBIDDEN,
            OciError::ProjectUnknown(_) => StatusCode::NOT_FOUND,
            OciError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn detail(&self) -> serde_json::Value {
        use RegistryError as R;
        match self {
            OciError::Registry(R::BlobUnknown(d)) => json!({ "digest": d }),
            OciError::Registry(R::DigestMismatch { expected, actual }) => {
                json!({ "expected": expected, "actual": actual })
            }
            OciError::Registry(R::ManifestBlobUnknown(ds)) => json!({ "digests": ds }),
            OciError::Registry(R::OutOfOrder { size, .. }) => json!({ "size": size }),
            OciError::Registry(R::RangeNotSatisfiable { size }) => json!({ "size": size }),
            _ => serde_json::Value::Null,
        }
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let status = self.status();
        // A quarantined blob's or a failed upstream's message is for the user; other 5xx
        // causes are logged, not shown.
        let speaks =
            matches!(self, OciError::Registry(RegistryError::BlobQuarantined { .. } | RegistryError::Upstream(_)))
                || matches!(self, OciError::ProviderUnavailable(_));
        let message = if status.is_server_error() && !speaks {
            match status {
                StatusCode::INSUFFICIENT_STORAGE => "storage is full; nothing was stored".to_owned(),
                StatusCode::SERVICE_UNAVAILABLE => {
                    "the registry's metadata database is unavailable; try again in a few seconds".to_owned()
                }
                _ => "internal error; see the server log".to_owned(),
            }
        } else {
            match &self {
                // Clients print the code's description before the message ("manifest unknown:
                // …"), so the message names what is missing without repeating it.
                OciError::Registry(RegistryError::ManifestUnknown(r)) if !r.contains(' ') => {
                    format!("{r} was not found in this repository")
                }
                OciError::Registry(RegistryError::ManifestUnknown(r)) => r.clone(),
                _ => self.to_string(),
            }
        };
        let mut err = json!({ "code": self.code(), "message": message });
        let detail = self.detail();
        if !detail.is_null() {
            err["detail"] = detail;
        }
        let mut resp = (status, Json(json!({ "errors": [err] }))).into_response();
        if let OciError::Registry(RegistryError::RangeNotSatisfiable { size }) = &self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        match &self {
            OciError::Unauthorized { challenge, .. } => {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            OciError::TooManyRequests { retry_after, .. } => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        if status.is_server_error() {
            resp.extensions_mut().insert(InternalError(format!("{self:?}")));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::time::Duration;

    use berth_registry::{BlobError, MetaError, RegistryError as R};
    use berth_types::Digest;

    use super::*;

    /// One of each error `/v2` can answer, with the inner errors that change its answer.
    fn examples() -> Vec<(&'static str, OciError)> {
        let d = || Digest::sha256_of(b"layer");
        let io = |k: std::io::ErrorKind| std::io::Error::new(k, "device said no");
        vec![
            ("blob unknown", R::BlobUnknown(d()).into()),
            ("upload unknown", R::UploadUnknown.into()),
            ("chunk out of order", R::OutOfOrder { requested: 10, size: 4 }.into()),
            ("upload invalid", R::UploadInvalid("Content-Range does not match the body".into()).into()),
            ("digest mismatch", R::DigestMismatch { expected: d(), actual: Digest::sha256_of(b"other") }.into()),
            ("digest invalid (registry)", R::DigestInvalid("the digest parameter is required".into()).into()),
            ("size invalid", R::SizeInvalid("layer size 5 does not match the blob's 4 bytes".into()).into()),
            ("too large", R::TooLarge { what: "manifest", limit: 4_194_304 }.into()),
            ("manifest unknown", R::ManifestUnknown("p/app:latest".into()).into()),
            ("manifest invalid", R::ManifestInvalid("schemaVersion must be 2".into()).into()),
            ("manifest blob unknown", R::ManifestBlobUnknown(vec![d()]).into()),
            ("name unknown", R::NameUnknown("p/app".parse().unwrap()).into()),
            ("tag invalid", R::TagInvalid("tag \"-x\" is invalid".into()).into()),
            ("too many uploads", R::TooManyUploads("account", 1000).into()),
            (
                "quarantined blob",
                R::BlobQuarantined {
                    digest: Digest::sha256_of(b"x"),
                    reason: "its stored bytes are 3 long, not 4".into(),
                }
                .into(),
            ),
            (
                "immutable tag",
                R::TagImmutable {
                    repo: "team/app".parse().unwrap(),
                    tag: "v1".into(),
                    why: "immutable tag rule 3 of the project".into(),
                }
                .into(),
            ),
            (
                "over quota",
                R::from(berth_registry::MetaError::QuotaExceeded {
                    project: "team".into(),
                    limit: 10 << 20,
                    used: 9 << 20,
                    adding: 2 << 20,
                })
                .into(),
            ),
            ("range not satisfiable", R::RangeNotSatisfiable { size: 4 }.into()),
            ("request body failed", R::Body(io(std::io::ErrorKind::ConnectionReset)).into()),
            ("disk full", R::Blob(BlobError::Io(io(std::io::ErrorKind::StorageFull))).into()),
            ("blob store failed", R::Blob(BlobError::Io(io(std::io::ErrorKind::PermissionDenied))).into()),
            ("metadata corrupt", R::Meta(MetaError::Corrupt("bad row".into())).into()),
            ("metadata disk full", R::Meta(MetaError::StorageFull("database or disk is full".into())).into()),
            ("metadata unavailable (registry)", R::Meta(MetaError::Unavailable("pool timed out".into())).into()),
            ("metadata unavailable (auth)", MetaError::Unavailable("pool timed out".into()).into()),
            ("name invalid", OciError::NameInvalid("repository name \"A\" is invalid".into())),
            ("digest invalid", OciError::DigestInvalid("\"sha256:xyz\" is not a digest".into())),
            ("unsupported", OciError::Unsupported("unsupported digest algorithm \"md5\": use sha256 or sha512".into())),
            ("bad header", OciError::BadRequest("Content-Range \"x\" is malformed".into())),
            ("no such endpoint", OciError::NotFound),
            ("method not allowed", OciError::MethodNotAllowed),
            ("body too large", OciError::TooLarge("manifest exceeds the limit of 4194304 bytes".into())),
            ("panic", OciError::Panic("index out of bounds".into())),
            (
                "unauthorized",
                OciError::Unauthorized {
                    message: "authentication required".into(),
                    challenge:
                        "Bearer realm=\"http://r/service/token\",service=\"berth\",scope=\"repository:p/app:pull\""
                            .into(),
                },
            ),
            ("denied", OciError::Denied("dev may not push in project \"p\"".into())),
            ("project unknown", OciError::ProjectUnknown("p".into())),
            (
                "too many requests",
                OciError::TooManyRequests {
                    message: "too many failed logins for this account or address; try again in 60 s".into(),
                    retry_after: Duration::from_secs(60),
                },
            ),
            ("authorization failed", OciError::Auth("corrupt metadata: bad row".into())),
            ("unavailable", OciError::Unavailable("pool timed out".into())),
        ]
    }

    /// Fails to compile when a variant is added without an example above.
    #[allow(dead_code)]
    fn every_variant_has_an_example(e: &OciError) {
        match e {
            OciError::Registry(_)
            | OciError::NameInvalid(_)
            | OciError::DigestInvalid(_)
            | OciError::Unsupported(_)
            | OciError::BadRequest(_)
            | OciError::NotFound
            | OciError::MethodNotAllowed
            | OciError::TooLarge(_)
            | OciError::Panic(_)
            | OciError::Unauthorized { .. }
            | OciError::Denied(_)
            | OciError::ProjectUnknown(_)
            | OciError::TooManyRequests { .. }
            | OciError::Auth(_)
            | OciError::Unavailable(_)
            | OciError::ProviderUnavailable(_) => {}
        }
    }

    /// Every client error carries a code of the distribution spec's table; only server
    /// errors (for which the table has none) use Distribution's `UNKNOWN` and `UNAVAILABLE`.
    #[test]
    fn codes_are_the_specs() {
        const SPEC: &[&str] = &[
            "BLOB_UNKNOWN",
            "BLOB_UPLOAD_INVALID",
            "BLOB_UPLOAD_UNKNOWN",
            "DIGEST_INVALID",
            "MANIFEST_BLOB_UNKNOWN",
            "MANIFEST_INVALID",
            "MANIFEST_UNKNOWN",
            "NAME_INVALID",
            "NAME_UNKNOWN",
            "SIZE_INVALID",
            "UNAUTHORIZED",
            "DENIED",
            "UNSUPPORTED",
            "TOOMANYREQUESTS",
        ];
        for (name, e) in examples() {
            let (code, status) = (e.code(), e.status());
            if status.is_server_error() {
                assert!(SPEC.contains(&code) || ["UNKNOWN", "UNAVAILABLE"].contains(&code), "{name}: {code}");
            } else {
                assert!(SPEC.contains(&code), "{name}: {code} is not in the spec's table");
            }
        }
    }

    #[tokio::test]
    async fn every_error_body() {
        let mut out = String::new();
        for (name, e) in examples() {
            let r = e.into_response();
            writeln!(out, "== {name}: {}", r.status()).unwrap();
            for h in [header::WWW_AUTHENTICATE, header::RETRY_AFTER, header::CONTENT_RANGE] {
                if let Some(v) = r.headers().get(&h) {
                    writeln!(out, "{h}: {}", v.to_str().unwrap()).unwrap();
                }
            }
            let internal = r.extensions().get::<InternalError>().is_some();
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            writeln!(out, "{}{}\n", serde_json::to_string(&v).unwrap(), if internal { "  (cause logged)" } else { "" })
                .unwrap();
        }
        insta::assert_snapshot!(out);
    }
}
