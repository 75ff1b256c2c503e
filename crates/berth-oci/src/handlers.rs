//! Request handlers: extract, call the registry, shape the response. Thin by design.

use std::io;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use berth_registry::Origin;
use berth_registry::{BlobBody, ByteStream};
use berth_registry::{Registry, RegistryError};
use berth_types::{Digest, Reference, RepoName};
use futures::TryStreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;

use crate::error::OciError;
use crate::route::Route;
use crate::{AppState, query};

type Result<T> = std::result::Result<T, OciError>;

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID: &str = "docker-upload-uuid";

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A request body as a byte stream that fails (keeping what arrived: the upload can resume)
/// when fewer than `min_rate` bytes per second arrive over a window of `window`, so a client
/// trickling bytes cannot hold a connection and an upload open for ever.
fn body_stream(body: Body, (min_rate, window): (usize, std::time::Duration)) -> ByteStream {
    let inner = body.into_data_stream().map_err(io::Error::other);
    if min_rate == 0 {
        return Box::pin(inner);
    }
    let need = (min_rate as f64 * window.as_secs_f64()) as u64;
    let start = tokio::time::Instant::now();
    Box::pin(futures::stream::unfold(
        (Box::pin(inner), start + window, 0u64, false),
        move |(mut inner, deadline, got, failed)| async move {
            if failed {
                return None;
            }
            let (mut deadline, mut got) = (deadline, got);
            loop {
                match tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut inner)).await {
                    Ok(Some(Ok(chunk))) => {
                        got += chunk.len() as u64;
                        if tokio::time::Instant::now() >= deadline {
                            if got < need {
                                break;
                            }
                            (deadline, got) = (deadline + window, 0);
                        }
                        return Some((Ok(chunk), (inner, deadline, got, false)));
                    }
                    Ok(other) => return other.map(|r| (r, (inner, deadline, got, false))),
                    Err(_) if got >= need => (deadline, got) = (deadline + window, 0),
                    Err(_) => break,
                }
            }
            let e = io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the upload is slower than the registry's minimum of {min_rate} bytes/s over {} s; what arrived \
                     is kept: resume from the offset in the Range header",
                    window.as_secs_f64()
                ),
            );
            Some((Err(e), (inner, deadline, got, true)))
        },
    ))
}

/// A pull-through cache's part in a request: pushes refused, manifests and blobs fetched
/// from upstream when they are not here (`None`: serve from here as usual).
async fn cached(state: &AppState, route: &Route, method: &Method, origin: &Origin) -> Result<Option<Response>> {
    let Some(proxy) = &state.proxy else { return Ok(None) };
    let repo = match route {
        Route::Manifest(repo, _) | Route::Blob(repo, _) | Route::UploadStart(repo) | Route::Upload(repo, _) => repo,
        _ => return Ok(None),
    };
    let Some(c) = proxy.rule_for(repo).await? else { return Ok(None) };
    match (route, method) {
        (Route::Manifest(_, _), &Method::PUT) | (Route::UploadStart(_) | Route::Upload(_, _), _) => {
            Err(RegistryError::ReadOnly(format!(
                "project {} is a pull-through cache of another registry: it is filled by pulls, not pushes; push to \
                 another project",
                c.rule.prefix
            ))
            .into())
        }
        (Route::Manifest(repo, r), &Method::GET | &Method::HEAD) => {
            let fetched = proxy.manifest(&c, repo, r).await?;
            proxy.served(&c, berth_registry::Served::Manifest, fetched.is_none());
            let Some(m) = fetched else { return Ok(None) };
            let with_body = method == Method::GET;
            if with_body {
                proxy.record_pull(repo, r, &m.digest, origin);
                state.metrics_bytes_out("/v2/{name}/manifests/{reference}", m.bytes.len() as u64);
            }
            let builder = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, &m.media_type)
                .header(DIGEST_HEADER, m.digest.to_string())
                .header(header::ETAG, format!("\"{}\"", m.digest))
                .header(header::CONTENT_LENGTH, m.bytes.len());
            let body = if with_body { Body::from(m.bytes) } else { Body::empty() };
            builder.body(body).map(Some).map_err(|e| OciError::Panic(e.to_string()))
        }
        (Route::Blob(repo, d), &Method::GET) => {
            let fetched = proxy.blob(&c, repo, d).await?;
            proxy.served(&c, berth_registry::Served::Blob, fetched.is_none());
            let Some(s) = fetched else { return Ok(None) };
            let mut builder = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(DIGEST_HEADER, d.to_string());
            if s.size > 0 {
                builder = builder.header(header::CONTENT_LENGTH, s.size);
            }
            state.registry.record_transfer(repo, true, s.size);
            builder.body(Body::from_stream(s.body)).map(Some).map_err(|e| OciError::Panic(e.to_string()))
        }
        _ => Ok(None),
    }
}

/// Dispatch a parsed route by method.
pub async fn dispatch(
    state: &AppState,
    who: &berth_auth::Principal,
    origin: &Origin,
    route: Route,
    parts: &http::request::Parts,
    body: Body,
) -> Result<Response> {
    use Method as M;
    let (method, headers) = (&parts.method, &parts.headers);
    let q = query(&parts.uri);
    if let Some(r) = cached(state, &route, method, origin).await? {
        return Ok(r);
    }
    match (route, method) {
        (Route::Base, &M::GET | &M::HEAD) => Ok(axum::Json(json!({})).into_response()),
        (Route::Catalog, &M::GET) => catalog(state, who, &q).await,
        (Route::Tags(repo), &M::GET) => tags(state, &repo, &q).await,
        (Route::Manifest(repo, r), &M::GET) => manifest_get(state, &repo, &r, Some(origin)).await,
        (Route::Manifest(repo, r), &M::HEAD) => manifest_get(state, &repo, &r, None).await,
        (Route::Manifest(repo, r), &M::PUT) => manifest_put(state, &repo, &r, &q, headers, body, origin).await,
        (Route::Manifest(repo, r), &M::DELETE) => {
            state.registry.manifest_delete(&repo, &r, origin).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::Blob(repo, d), &M::GET) => blob_get(state, &repo, &d, headers, true).await,
        (Route::Blob(repo, d), &M::HEAD) => blob_get(state, &repo, &d, headers, false).await,
        (Route::Blob(repo, d), &M::DELETE) => {
            state.registry.blob_delete(&repo, &d, origin).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::UploadStart(repo), &M::POST) => upload_start(state, who, &repo, &q, headers, body).await,
        (Route::Upload(repo, id), &M::GET) => {
            let size = state.registry.upload_status(&repo, &id).await?;
            Ok(upload_accepted(StatusCode::NO_CONTENT, &repo, &id, size))
        }
        (Route::Upload(repo, id), &M::PATCH) => {
            let start = content_range_start(headers)?;
            match state.registry.upload_chunk(&repo, &id, start, body_stream(body, state.min_upload_rate)).await {
                Ok(size) => Ok(upload_accepted(StatusCode::ACCEPTED, &repo, &id, size)),
                Err(e) => Ok(out_of_order_with_location(e, &repo, &id)),
            }
        }
        (Route::Upload(repo, id), &M::PUT) => {
            let digest = required_digest(&q)?;
            let start = content_range_start(headers)?;
            let has_body = content_length(headers).is_none_or(|n| n > 0);
            let body = has_body.then(|| body_stream(body, state.min_upload_rate));
            let done = match state.registry.upload_complete(&repo, &id, start, body, &digest).await {
                Ok(done) => done,
                Err(e) => return Ok(out_of_order_with_location(e, &repo, &id)),
            };
            state.metrics_bytes_in("/v2/{name}/blobs/uploads/{id}", done.size);
            Ok(blob_created(&repo, &done.digest))
        }
        (Route::Upload(repo, id), &M::DELETE) => {
            state.registry.upload_cancel(&repo, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Route::Referrers(repo, d), &M::GET) => referrers(state, &repo, &d, &q).await,
        _ => Err(OciError::MethodNotAllowed),
    }
}

fn required_digest(q: &[(String, String)]) -> Result<Digest> {
    let d = q.iter().find(|(k, _)| k == "digest").map(|(_, v)| v.as_str()).ok_or_else(|| {
        OciError::DigestInvalid("the digest query parameter is required to complete an upload".into())
    })?;
    Ok(d.parse::<Digest>()?)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// `Content-Range: <start>-<end>` (also tolerating a `bytes ` prefix); returns `start`.
fn content_range_start(headers: &HeaderMap) -> Result<Option<u64>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else { return Ok(None) };
    let bad =
        || OciError::Registry(RegistryError::SizeInvalid("malformed Content-Range: expected <start>-<end>".into()));
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s.strip_prefix("bytes ").or_else(|| s.strip_prefix("bytes=")).unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(OciError::Registry(RegistryError::OutOfOrder { requested: start, size: 0 }));
    }
    if let Some(len) = content_length(headers)
        && len != end - start + 1
    {
        return Err(OciError::Registry(RegistryError::SizeInvalid(format!(
            "Content-Range {start}-{end} is {} bytes but Content-Length is {len}",
            end - start + 1
        ))));
    }
    Ok(Some(start))
}

fn upload_location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_accepted(status: StatusCode, repo: &RepoName, id: &str, size: u64) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, hv(&upload_location(repo, id)));
    h.insert(header::RANGE, hv(&range_value(size)));
    h.insert(UPLOAD_UUID, hv(id));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// The error response of an upload request. A 416 for an out-of-order chunk carries the
/// session's `Location` and `Range`, so the client can resume from the right offset.
fn out_of_order_with_location(e: RegistryError, repo: &RepoName, id: &str) -> Response {
    let size = match &e {
        RegistryError::OutOfOrder { size, .. } => Some(*size),
        _ => None,
    };
    let mut r = OciError::Registry(e).into_response();
    if let Some(size) = size {
        let h = r.headers_mut();
        h.insert(header::LOCATION, hv(&upload_location(repo, id)));
        h.insert(header::RANGE, hv(&range_value(size)));
        h.insert(UPLOAD_UUID, hv(id));
    }
    r
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{repo}/blobs/{digest}")));
    h.insert(DIGEST_HEADER, hv(&digest.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

async fn upload_start(
    state: &AppState,
    who: &berth_auth::Principal,
    repo: &RepoName,
    q: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if let Some(mount) = get("mount") {
        let digest: Digest = mount.parse()?;
        let from = match get("from") {
            Some(f) => Some(f.parse::<RepoName>()?),
            None => None,
        };
        // Mounting copies access: only from a repository the caller may pull. Without `from`
        // (automatic content discovery), from the first repository holding the digest that
        // the caller may pull.
        let may_pull = |f: &RepoName| {
            let f = f.clone();
            async move {
                state
                    .auth
                    .decide(
                        who,
                        berth_auth::Target::Repository(
                            f.as_str(),
                            berth_auth::policy::EcrAction::GetDownloadUrlForLayer,
                        ),
                        berth_auth::rbac::Perm::Pull,
                    )
                    .await
                    .is_ok()
            }
        };
        let source = match from {
            Some(f) => may_pull(&f).await.then_some(f),
            None => {
                let mut found = None;
                for f in state.registry.blob_repos(&digest, MOUNT_CANDIDATES).await? {
                    if may_pull(&f).await {
                        found = Some(f);
                        break;
                    }
                }
                found
            }
        };
        if let Some(f) = source
            && state.registry.mount(repo, &digest, Some(&f)).await?.is_some()
        {
            return Ok(blob_created(repo, &digest));
        }
        // Not mountable: fall through to an ordinary upload session (202), as the spec says.
    } else if let Some(d) = get("digest") {
        let digest: Digest = d.parse()?;
        let done = state
            .registry
            .upload_monolithic(repo, who.name(), &digest, body_stream(body, state.min_upload_rate))
            .await?;
        state.metrics_bytes_in("/v2/{name}/blobs/uploads/", done.size);
        return Ok(blob_created(repo, &done.digest));
    }
    let _ = headers;
    let id = state.registry.upload_start(repo, who.name()).await?;
    Ok(upload_accepted(StatusCode::ACCEPTED, repo, &id, 0))
}

/// Parse `Range: bytes=a-b` / `bytes=a-` / `bytes=-n` against a blob of `size` bytes.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::RANGE) else { return Ok(None) };
    let unsat = || OciError::Registry(RegistryError::RangeNotSatisfiable { size });
    let s = v.to_str().map_err(|_| unsat())?.trim();
    let spec = s.strip_prefix("bytes=").ok_or_else(unsat)?;
    if spec.contains(',') {
        // Multipart ranges are not served; the whole blob is (allowed by RFC 9110).
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or_else(unsat)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| unsat())?;
            if n == 0 || size == 0 {
                return Err(unsat());
            }
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().map_err(|_| unsat())?, size.saturating_sub(1)),
        (a, b) => (a.parse().map_err(|_| unsat())?, b.parse().map_err(|_| unsat())?),
    };
    if start > end || start >= size {
        return Err(unsat());
    }
    Ok(Some((start, end.min(size - 1))))
}

async fn blob_get(
    state: &AppState,
    repo: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    with_body: bool,
) -> Result<Response> {
    if with_body && let Some(url) = state.registry.blob_redirect(repo, digest).await? {
        // The client fetches the bytes from object storage directly (and sends its Range there).
        let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
        r.headers_mut().insert(header::LOCATION, hv(&url));
        r.headers_mut().insert(DIGEST_HEADER, hv(&digest.to_string()));
        // Metered as served (the whole blob: a ranged request goes to the store).
        if let Ok(size) = state.registry.blob_size(repo, digest).await {
            state.registry.record_transfer(repo, true, size);
        }
        return Ok(r);
    }
    let size = if with_body {
        state.registry.blob_size_to_serve(repo, digest).await?
    } else {
        state.registry.blob_size(repo, digest).await?
    };
    let range = parse_range(headers, size)?;
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(DIGEST_HEADER, digest.to_string())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CACHE_CONTROL, "max-age=31536000");
    let (status, len) = match range {
        Some((s, e)) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {s}-{e}/{size}"));
            (StatusCode::PARTIAL_CONTENT, e - s + 1)
        }
        None => (StatusCode::OK, size),
    };
    builder = builder.status(status).header(header::CONTENT_LENGTH, len);
    if !with_body {
        return builder.body(Body::empty()).map_err(|e| OciError::Panic(e.to_string()));
    }
    let (_, body) = state.registry.blob_get(repo, digest, range).await?;
    state.metrics_bytes_out("/v2/{name}/blobs/{digest}", len);
    state.registry.record_transfer(repo, true, len);
    let body = match body {
        BlobBody::Bytes(b) => Body::from(b),
        BlobBody::Stream(s) => Body::from_stream(s),
    };
    builder.body(body).map_err(|e| OciError::Panic(e.to_string()))
}

/// `GET` (a pull, by `origin`) or `HEAD` (`origin` is `None`) of a manifest.
async fn manifest_get(state: &AppState, repo: &RepoName, r: &Reference, origin: Option<&Origin>) -> Result<Response> {
    let with_body = origin.is_some();
    let m = state.registry.manifest_get(repo, r, with_body).await?;
    if with_body && let Some(scans) = &state.scanning {
        // The project's vulnerability policy may refuse the pull (HEAD stays allowed).
        let project = state.auth.project(berth_auth::project_of(repo.as_str())).await?;
        if let Some(p) = project
            && p.settings.prevent_vulnerable
        {
            let why = scans
                .pull_blocked(&p, repo.as_str(), &m.record.digest.to_string(), m.record.artifact_type.as_deref())
                .await
                .map_err(|e| OciError::Auth(format!("{e:#}")))?;
            if let Some(why) = why {
                return Err(OciError::Denied(why));
            }
        }
    }
    if let (Some(origin), Some(signatures)) = (origin, &state.signatures) {
        // The project's signature policy may refuse the pull (HEAD stays allowed).
        if let Some(why) = signatures.check_pull(repo, r, &m.record, origin).await? {
            return Err(OciError::Denied(why));
        }
    }
    if let Some(origin) = origin {
        state.registry.record_pull(repo, r, &m.record.digest, origin);
    }
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &m.record.media_type)
        .header(DIGEST_HEADER, m.record.digest.to_string())
        .header(header::ETAG, format!("\"{}\"", m.record.digest))
        .header(header::CONTENT_LENGTH, m.record.size);
    let body = match m.bytes {
        Some(b) => {
            state.metrics_bytes_out("/v2/{name}/manifests/{reference}", b.len() as u64);
            Body::from(b)
        }
        None => Body::empty(),
    };
    builder.body(body).map_err(|e| OciError::Panic(e.to_string()))
}

/// Repositories holding a digest looked at for a mount without `from` (each costs an
/// authorization decision).
const MOUNT_CANDIDATES: usize = 32;

async fn manifest_put(
    state: &AppState,
    repo: &RepoName,
    r: &Reference,
    q: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
    origin: &Origin,
) -> Result<Response> {
    let limit = state.registry.options().max_manifest_bytes;
    if content_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(RegistryError::TooLarge { what: "manifest", limit }.into());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            OciError::Registry(RegistryError::TooLarge { what: "manifest", limit })
        } else {
            OciError::Registry(RegistryError::Body(io::Error::other(e)))
        }
    })?;
    state.metrics_bytes_in("/v2/{name}/manifests/{reference}", bytes.len() as u64);
    let tags = Registry::parse_tags(q.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v.as_str()))?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let out = state.registry.manifest_put(repo, r, content_type, bytes, &tags, origin).await?;
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{repo}/manifests/{}", out.digest)));
    h.insert(DIGEST_HEADER, hv(&out.digest.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    if let Some(s) = out.subject {
        h.insert("oci-subject", hv(&s.to_string()));
    }
    // Pushed by digest with `?tag=`: one `OCI-Tag` per tag applied (distribution-spec main).
    if matches!(r, Reference::Digest(_)) {
        for t in &tags {
            h.append("oci-tag", hv(t.as_str()));
        }
    }
    Ok(resp)
}

fn pagination(q: &[(String, String)]) -> Result<(Option<String>, Option<usize>)> {
    let mut last = None;
    let mut n = None;
    for (k, v) in q {
        match k.as_str() {
            "last" => last = Some(v.clone()),
            "n" => {
                n = Some(v.parse::<usize>().map_err(|_| {
                    OciError::BadRequest(format!("query parameter n must be a non-negative integer, not {v:?}"))
                })?)
            }
            _ => {}
        }
    }
    Ok((last, n))
}

fn with_next_link(mut resp: Response, path: &str, n: usize, items: &[String], more: bool) -> Response {
    if more && let Some(last) = items.last() {
        let link = format!("<{path}?n={n}&last={}>; rel=\"next\"", crate::pct_encode(last));
        resp.headers_mut().insert(header::LINK, hv(&link));
    }
    resp
}

async fn tags(state: &AppState, repo: &RepoName, q: &[(String, String)]) -> Result<Response> {
    let (last, n) = pagination(q)?;
    let (tags, more) = state.registry.tags(repo, last.as_deref(), n).await?;
    let page = n.unwrap_or(berth_registry::MAX_PAGE).min(berth_registry::MAX_PAGE);
    let resp = axum::Json(json!({ "name": repo.as_str(), "tags": tags })).into_response();
    Ok(with_next_link(resp, &format!("/v2/{repo}/tags/list"), page, &tags, more))
}

async fn catalog(state: &AppState, who: &berth_auth::Principal, q: &[(String, String)]) -> Result<Response> {
    let (last, n) = pagination(q)?;
    let page = n.unwrap_or(berth_registry::MAX_PAGE).min(berth_registry::MAX_PAGE);
    let everything = who.is_sysadmin()
        || matches!(who, berth_auth::Principal::Token(c) if c.access.iter().any(|a| a.kind == "registry" && a.name == "catalog"));
    if everything {
        let (repos, more) = state.registry.catalog(last.as_deref(), n).await?;
        let resp = axum::Json(json!({ "repositories": repos })).into_response();
        return Ok(with_next_link(resp, "/v2/_catalog", page, &repos, more));
    }
    // Only what the caller may pull. Pages are filled from as many stored pages as it takes,
    // so the `Link` cursor is always a name the caller may see (a hidden one would leak).
    let mut visible = Vec::with_capacity(page);
    let mut cursor = last;
    let more = loop {
        let (repos, more) = state.registry.catalog(cursor.as_deref(), Some(page)).await?;
        cursor = repos.last().cloned();
        for r in repos {
            if visible.len() == page {
                break;
            }
            let ok = state
                .auth
                .decide(
                    who,
                    berth_auth::Target::Repository(&r, berth_auth::policy::EcrAction::ListImages),
                    berth_auth::rbac::Perm::Pull,
                )
                .await
                .is_ok();
            if ok {
                visible.push(r);
            }
        }
        if visible.len() == page || !more {
            break more || visible.len() == page;
        }
    };
    let resp = axum::Json(json!({ "repositories": visible })).into_response();
    Ok(with_next_link(resp, "/v2/_catalog", page, &visible, more))
}

async fn referrers(state: &AppState, repo: &RepoName, subject: &Digest, q: &[(String, String)]) -> Result<Response> {
    let artifact_type = q.iter().find(|(k, _)| k == "artifactType").map(|(_, v)| v.as_str());
    // Pages of REFERRERS_PAGE (or `n`, at most that), linked by a `next` Link header whose
    // `last` is the push time and digest of the page's last referrer.
    let (last, n) = pagination(q)?;
    let after = match last.as_deref() {
        None => None,
        Some(l) => Some(
            l.split_once('.')
                .and_then(|(at, d)| Some((at.parse::<i64>().ok()?, d.parse::<Digest>().ok()?)))
                .ok_or_else(|| {
                    OciError::BadRequest(format!(
                        "query parameter last must be the value a Link header of this endpoint gave, not {l:?}"
                    ))
                })?,
        ),
    };
    let n = n.unwrap_or(REFERRERS_PAGE).clamp(1, REFERRERS_PAGE);
    let (list, more) =
        state.registry.referrers_page(repo, subject, artifact_type, after.as_ref().map(|(at, d)| (*at, d)), n).await?;
    let manifests: Vec<_> = list
        .iter()
        .map(|m| {
            let mut d = json!({ "mediaType": m.media_type, "digest": m.digest, "size": m.size });
            if let Some(a) = &m.artifact_type {
                d["artifactType"] = json!(a);
            }
            if let Some(Ok(serde_json::Value::Object(ann))) = m.annotations.as_deref().map(serde_json::from_str) {
                d["annotations"] = serde_json::Value::Object(ann);
            }
            d
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": berth_types::media::OCI_INDEX,
        "manifests": manifests,
    });
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, berth_types::media::OCI_INDEX)
        .body(Body::from(index.to_string()))
        .map_err(|e| OciError::Panic(e.to_string()))?;
    if artifact_type.is_some() {
        resp.headers_mut().insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
    }
    if more && let Some(m) = list.last() {
        let mut next = format!("/v2/{repo}/referrers/{subject}?n={n}&last={}.{}", m.created_at, m.digest);
        if let Some(a) = artifact_type {
            next.push_str(&format!("&artifactType={}", crate::pct_encode(a)));
        }
        resp.headers_mut().insert(header::LINK, hv(&format!("<{next}>; rel=\"next\"")));
    }
    Ok(resp)
}

/// Most referrers in one answer (a `next` Link header leads on).
pub const REFERRERS_PAGE: usize = 1000;
