//! S3-compatible blob store (AWS S3, SeaweedFS, Garage, MinIO…) through `object_store`.
//!
//! Key layout under the configured prefix:
//! ```text
//! <prefix>/
//!   blobs/sha256/ab/ab12…ef     pointer: {"path": "data/<upload>-<n>", "size": N, "relative": true}
//!   data/<upload-id>-<n>        the bytes of a committed blob (one multipart upload)
//!   uploads/<upload-id>/
//!     state.json                the session: size, multipart id and part ids, tail object
//!     tail-<offset>             bytes not yet a full part (named by the offset it ends at)
//! ```
//! **Why pointers:** the digest is known only when an upload completes, and S3 cannot rename.
//! Copying a 100 GB object needs UploadPartCopy, which `object_store` does not offer; instead
//! the data stays where the multipart upload put it and a small pointer object, written only
//! after the data is complete, makes it visible under its digest (a PUT is atomic).
//!
//! **Resumable across replicas:** every chunk ends by writing `state.json`, which lists only
//! parts that were confirmed; a crash before that leaves the previous state, and the next
//! attempt re-uploads (overwrites) the same part numbers. Part sizes grow with the part number
//! (`part_size × 2^(n / 1000)`, at most 1 GiB), so layers up to about 4 TiB (with the default
//! 8 MiB) stay under S3's 10,000 parts; at most 64 MiB (or one part) is in flight per request.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use berth_types::Digest;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{BlobBody, BlobError, BlobStore, ByteStream, valid_upload_id};

/// Settings of an S3 blob store. `Debug` leaves the secret key out.
#[derive(Clone)]
pub struct S3Options {
    /// Endpoint URL, e.g. `http://127.0.0.1:8333`; `None` for AWS.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` when unsure).
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix (may be empty).
    pub prefix: String,
    /// Access key id; `None` to take `AWS_ACCESS_KEY_ID` etc. from the environment.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), needed by most self-hosted servers.
    pub path_style: bool,
    /// Size of the first 1,000 multipart parts (≥ 5 MiB); doubles every 1,000 parts.
    pub part_size: usize,
}

/// Most part uploads of one upload request running at once…
const PARTS_IN_FLIGHT: usize = 4;
/// …and most bytes they may hold in memory (at least one part's worth).
const IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("path_style", &self.path_style)
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// The S3 minimum part size (except the last part).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
const MAX_PART_SIZE: usize = 1024 * 1024 * 1024;

/// Blob store in an S3 bucket.
#[derive(Clone)]
pub struct S3BlobStore {
    store: Arc<object_store::aws::AmazonS3>,
    prefix: String,
    part_size: usize,
    /// For the requests `object_store` does not make (listing multipart uploads).
    raw: RawS3,
}

/// Where raw S3 requests go.
#[derive(Clone)]
struct RawS3 {
    http: reqwest::Client,
    /// The bucket's base URL, ending in `/`.
    base: String,
    region: String,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore").field("prefix", &self.prefix).field("part_size", &self.part_size).finish()
    }
}

/// A blob's pointer object. `path` is relative to the store's prefix when `relative` is set
/// (every pointer written now), so a copy of the prefix elsewhere — a backup into another
/// bucket or prefix — is self-contained; older pointers hold the full key.
#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    path: String,
    size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    relative: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Multipart {
    path: String,
    id: String,
    parts: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UploadState {
    size: u64,
    /// Completed data objects, in order (more than one only after a seal, see `upload_read`).
    segments: Vec<(String, u64)>,
    multipart: Option<Multipart>,
    tail: Option<String>,
    tail_len: u64,
}

fn os_err(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        e => BlobError::Io(io::Error::other(e)),
    }
}

impl S3BlobStore {
    /// Connect (no request is made until first use).
    pub fn new(o: &S3Options) -> Result<Self, BlobError> {
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_region(&o.region)
            .with_bucket_name(&o.bucket)
            .with_virtual_hosted_style_request(!o.path_style);
        if let Some(ep) = &o.endpoint {
            b = b.with_endpoint(ep).with_allow_http(ep.starts_with("http://"));
        }
        if let (Some(k), Some(s)) = (&o.access_key_id, &o.secret_access_key) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
        }
        let store = b.build().map_err(|e| BlobError::Io(io::Error::other(e)))?;
        let base = match (&o.endpoint, o.path_style) {
            (Some(ep), true) => format!("{}/{}/", ep.trim_end_matches('/'), o.bucket),
            (Some(ep), false) => match ep.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{}.{}/", o.bucket, host.trim_end_matches('/')),
                None => format!("https://{}.{}/", o.bucket, ep.trim_end_matches('/')),
            },
            (None, true) => format!("https://s3.{}.amazonaws.com/{}/", o.region, o.bucket),
            (None, false) => format!("https://{}.s3.{}.amazonaws.com/", o.bucket, o.region),
        };
        Ok(S3BlobStore {
            store: Arc::new(store),
            prefix: o.prefix.trim_matches('/').to_owned(),
            part_size: o.part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
            raw: RawS3 { http: reqwest::Client::new(), base, region: o.region.clone() },
        })
    }

    fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() { Path::from(rest) } else { Path::from(format!("{}/{rest}", self.prefix)) }
    }

    /// The pointer for the data at the full key `full`, written relative to the prefix.
    fn pointer_to(&self, full: &str, size: u64) -> Pointer {
        let rel = if self.prefix.is_empty() { Some(full) } else { full.strip_prefix(&format!("{}/", self.prefix)) };
        match rel {
            Some(r) => Pointer { path: r.to_owned(), size, relative: true },
            None => Pointer { path: full.to_owned(), size, relative: false },
        }
    }

    /// The full key of the data a pointer names.
    fn data_key(&self, p: &Pointer) -> Path {
        if p.relative { self.key(&p.path) } else { Path::from(p.path.as_str()) }
    }

    fn pointer_key(&self, d: &Digest) -> Path {
        self.key(&format!("blobs/{}/{}/{}", d.algorithm().as_str(), &d.hex()[..2], d.hex()))
    }

    fn state_key(&self, id: &str) -> Result<Path, BlobError> {
        if !valid_upload_id(id) {
            return Err(BlobError::UploadNotFound);
        }
        Ok(self.key(&format!("uploads/{id}/state.json")))
    }

    fn part_size_for(&self, idx: usize) -> usize {
        (self.part_size << (idx / 1000).min(8)).min(MAX_PART_SIZE)
    }

    async fn pointer(&self, d: &Digest) -> Result<Option<Pointer>, BlobError> {
        match self.store.get(&self.pointer_key(d)).await {
            Ok(r) => {
                let b = r.bytes().await.map_err(os_err)?;
                Ok(Some(serde_json::from_slice(&b).map_err(|e| BlobError::Io(io::Error::other(e)))?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(os_err(e)),
        }
    }

    async fn write_pointer(&self, d: &Digest, p: &Pointer) -> Result<(), BlobError> {
        let body = serde_json::to_vec(p).map_err(|e| BlobError::Io(io::Error::other(e)))?;
        self.store.put(&self.pointer_key(d), PutPayload::from(body)).await.map_err(os_err)?;
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<UploadState, BlobError> {
        let key = self.state_key(id)?;
        let r = self.store.get(&key).await.map_err(|e| match os_err(e) {
            BlobError::NotFound => BlobError::UploadNotFound,
            e => e,
        })?;
        let b = r.bytes().await.map_err(os_err)?;
        serde_json::from_slice(&b).map_err(|e| BlobError::Io(io::Error::other(e)))
    }

    async fn save(&self, id: &str, st: &UploadState) -> Result<(), BlobError> {
        let body = serde_json::to_vec(st).map_err(|e| BlobError::Io(io::Error::other(e)))?;
        self.store.put(&self.state_key(id)?, PutPayload::from(body)).await.map_err(os_err)?;
        Ok(())
    }

    async fn get_range(&self, path: &Path, range: Option<Range<u64>>) -> Result<ByteStream, BlobError> {
        let opts = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
        let r = self.store.get_opts(path, opts).await.map_err(os_err)?;
        Ok(Box::pin(r.into_stream().map_err(io::Error::other)))
    }

    async fn read_all(&self, path: &Path, len: u64) -> Result<Bytes, BlobError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let r = self.store.get_opts(path, GetOptions { range: Some(GetRange::Bounded(0..len)), ..Default::default() });
        r.await.map_err(os_err)?.bytes().await.map_err(os_err)
    }

    /// The open multipart upload's path and id, starting one if none is open.
    async fn ensure_multipart(&self, id: &str, st: &mut UploadState) -> Result<(Path, String), BlobError> {
        if st.multipart.is_none() {
            let path = self.key(&format!("data/{id}-{}", st.segments.len()));
            let mid = self.store.create_multipart(&path).await.map_err(os_err)?;
            st.multipart = Some(Multipart { path: path.to_string(), id: mid, parts: Vec::new() });
        }
        let mp = st.multipart.as_ref().expect("just ensured");
        Ok((Path::from(mp.path.as_str()), mp.id.clone()))
    }

    /// Complete the open multipart upload (with `last` as its final part) into a segment.
    async fn close_multipart(&self, st: &mut UploadState, last: Option<Bytes>, last_len: u64) -> Result<(), BlobError> {
        let Some(mut mp) = st.multipart.take() else { return Ok(()) };
        let path = Path::from(mp.path.as_str());
        if let Some(b) = last {
            let part = self.store.put_part(&path, &mp.id, mp.parts.len(), PutPayload::from(b)).await.map_err(os_err)?;
            mp.parts.push(part.content_id);
        }
        let parts = mp.parts.iter().map(|c| PartId { content_id: c.clone() }).collect();
        self.store.complete_multipart(&path, &mp.id, parts).await.map_err(os_err)?;
        let before: u64 = st.segments.iter().map(|(_, n)| n).sum();
        let seg_len = st.size - before - st.tail_len + last_len;
        st.segments.push((mp.path, seg_len));
        Ok(())
    }

    /// Turn everything written so far into completed segments (the tail stays a tail).
    async fn seal(&self, id: &str, st: &mut UploadState) -> Result<(), BlobError> {
        if st.multipart.is_some() {
            self.close_multipart(st, None, 0).await?;
            self.save(id, st).await?;
        }
        Ok(())
    }

    async fn delete_quiet(&self, path: &Path) {
        let _ = self.store.delete(path).await;
    }

    /// The key prefix of upload data, with its trailing `/`.
    fn data_prefix(&self) -> String {
        if self.prefix.is_empty() { "data/".into() } else { format!("{}/data/", self.prefix) }
    }

    /// Multipart uploads in progress under the data prefix: S3's ListMultipartUploads, signed
    /// here (SigV4) since `object_store` cannot list them. Returns (key, upload id, started).
    pub async fn multipart_uploads(&self) -> Result<Vec<(String, String, std::time::SystemTime)>, BlobError> {
        let cred = self.store.credentials().get_credential().await.map_err(os_err)?;
        let url = reqwest::Url::parse(&self.raw.base).map_err(|e| BlobError::Io(io::Error::other(e)))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(BlobError::Io(io::Error::other(format!("no host in {}", self.raw.base)))),
        };
        let prefix = self.data_prefix();
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        loop {
            let mut query = vec![("uploads", ""), ("prefix", prefix.as_str())];
            if !key_marker.is_empty() {
                query.push(("key-marker", key_marker.as_str()));
                query.push(("upload-id-marker", id_marker.as_str()));
            }
            let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
            let mut headers = vec![
                ("host", host.as_str()),
                ("x-amz-content-sha256", berth_types::sigv4::EMPTY_SHA256),
                ("x-amz-date", amz_date.as_str()),
            ];
            if let Some(t) = &cred.token {
                headers.push(("x-amz-security-token", t.as_str()));
            }
            let request = berth_types::sigv4::Request {
                method: "GET",
                path: url.path(),
                query: &query,
                headers: &headers,
                payload_sha256: berth_types::sigv4::EMPTY_SHA256,
            };
            let scope = berth_types::sigv4::Scope {
                key_id: &cred.key_id,
                secret: &cred.secret_key,
                region: &self.raw.region,
                service: "s3",
                amz_date: &amz_date,
            };
            let auth = berth_types::sigv4::authorization(&request, &scope);
            let target = format!("{}?{}", self.raw.base, berth_types::sigv4::canonical_query(&query));
            let mut req = self.raw.http.get(&target).header("authorization", auth);
            for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
                req = req.header(*k, *v);
            }
            let resp = req.send().await.map_err(|e| BlobError::Io(io::Error::other(e)))?;
            let status = resp.status();
            let body = resp.text().await.map_err(|e| BlobError::Io(io::Error::other(e)))?;
            if !status.is_success() {
                let msg =
                    format!("ListMultipartUploads answered {status}: {}", body.chars().take(300).collect::<String>());
                return Err(BlobError::Io(io::Error::other(msg)));
            }
            let page: ListUploads = quick_xml::de::from_str(&body)
                .map_err(|e| BlobError::Io(io::Error::other(format!("ListMultipartUploads: {e}"))))?;
            for u in page.upload {
                let started = chrono::DateTime::parse_from_rfc3339(&u.initiated)
                    .map(std::time::SystemTime::from)
                    .unwrap_or(std::time::UNIX_EPOCH);
                out.push((u.key, u.upload_id, started));
            }
            match (page.is_truncated, page.next_key_marker) {
                (true, Some(k)) if !k.is_empty() && k != key_marker => {
                    key_marker = k;
                    id_marker = page.next_upload_id_marker.unwrap_or_default();
                }
                _ => break,
            }
        }
        Ok(out)
    }
}

/// The part of S3's ListMultipartUploadsResult Berth reads.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploads {
    #[serde(default)]
    upload: Vec<ListedUpload>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
    initiated: String,
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        Ok(self.pointer(digest).await?.map(|p| p.size))
    }

    async fn open(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<BlobBody, BlobError> {
        let p = self.pointer(digest).await?.ok_or(BlobError::NotFound)?;
        let r = match range {
            None => None,
            Some((s, e)) if s <= e && s < p.size => Some(s..(e.min(p.size - 1) + 1)),
            Some(_) if p.size == 0 => None,
            Some(_) => return Err(BlobError::RangeNotSatisfiable),
        };
        if p.size == 0 {
            return Ok(BlobBody::Bytes(Bytes::new()));
        }
        Ok(BlobBody::Stream(self.get_range(&self.data_key(&p), r).await?))
    }

    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), BlobError> {
        if self.pointer(digest).await?.is_some() {
            return Ok(());
        }
        let path = self.key(&format!("data/{}", uuid::Uuid::new_v4()));
        let size = data.len() as u64;
        self.store.put(&path, PutPayload::from(data)).await.map_err(os_err)?;
        self.write_pointer(digest, &self.pointer_to(path.as_ref(), size)).await
    }

    async fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        if let Some(p) = self.pointer(digest).await? {
            self.store.delete(&self.pointer_key(digest)).await.map_err(os_err)?;
            self.delete_quiet(&self.data_key(&p)).await;
        }
        Ok(())
    }

    async fn upload_start(&self, id: &str) -> Result<(), BlobError> {
        self.save(id, &UploadState::default()).await
    }

    async fn upload_write(&self, id: &str, offset: u64, mut data: ByteStream) -> Result<u64, BlobError> {
        let mut st = self.load(id).await?;
        if st.size != offset {
            return Err(BlobError::OffsetMismatch { expected: offset, actual: st.size });
        }
        let old_tail = st.tail.take();
        let mut buf = BytesMut::new();
        if let Some(t) = &old_tail {
            buf.extend_from_slice(&self.read_all(&Path::from(t.as_str()), st.tail_len).await?);
        }
        let mut written = 0u64;
        let mut body_err = None;
        // Up to PARTS_IN_FLIGHT part uploads run at once; part numbers are fixed when a part is
        // cut, and confirmed ids are appended in order as the uploads finish.
        let mut inflight = futures::stream::FuturesOrdered::new();
        while let Some(item) = data.next().await {
            match item {
                Ok(chunk) => {
                    written += chunk.len() as u64;
                    buf.extend_from_slice(&chunk);
                    loop {
                        let idx = st.multipart.as_ref().map_or(0, |m| m.parts.len()) + inflight.len();
                        let want = self.part_size_for(idx);
                        if buf.len() < want {
                            break;
                        }
                        let part = buf.split_to(want).freeze();
                        let (path, mid) = self.ensure_multipart(id, &mut st).await?;
                        let store = self.store.clone();
                        inflight
                            .push_back(async move { store.put_part(&path, &mid, idx, PutPayload::from(part)).await });
                        if inflight.len() >= (IN_FLIGHT_BYTES / want).clamp(1, PARTS_IN_FLIGHT)
                            && let Some(done) = inflight.next().await
                        {
                            // On failure nothing of this call is recorded: the client resumes from `offset`.
                            let part: PartId = done.map_err(os_err)?;
                            st.multipart.as_mut().expect("open").parts.push(part.content_id);
                        }
                    }
                }
                Err(e) => {
                    body_err = Some(e);
                    break;
                }
            }
        }
        while let Some(done) = inflight.next().await {
            let part: PartId = done.map_err(os_err)?;
            st.multipart.as_mut().expect("open").parts.push(part.content_id);
        }
        st.size = offset + written;
        st.tail_len = buf.len() as u64;
        if !buf.is_empty() {
            let t = self.key(&format!("uploads/{id}/tail-{}", st.size));
            self.store.put(&t, PutPayload::from(buf.freeze())).await.map_err(os_err)?;
            st.tail = Some(t.to_string());
        }
        self.save(id, &st).await?;
        if let Some(t) = old_tail
            && st.tail.as_deref() != Some(t.as_str())
        {
            self.delete_quiet(&Path::from(t.as_str())).await;
        }
        match body_err {
            Some(source) => Err(BlobError::Body { written, source }),
            None => Ok(st.size),
        }
    }

    async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        Ok(self.load(id).await?.size)
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream, BlobError> {
        let mut st = self.load(id).await?;
        self.seal(id, &mut st).await?;
        let mut streams = Vec::new();
        for (path, len) in &st.segments {
            if *len > 0 {
                streams.push(self.get_range(&Path::from(path.as_str()), None).await?);
            }
        }
        if let Some(t) = &st.tail
            && st.tail_len > 0
        {
            streams.push(self.get_range(&Path::from(t.as_str()), Some(0..st.tail_len)).await?);
        }
        Ok(Box::pin(futures::stream::iter(streams).flatten()))
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<(), BlobError> {
        let mut st = self.load(id).await?;
        if self.pointer(digest).await?.is_some() {
            // Deduplicated: the same content is already stored.
            return self.upload_abort(id).await;
        }
        let tail = match &st.tail {
            Some(t) if st.tail_len > 0 => Some(self.read_all(&Path::from(t.as_str()), st.tail_len).await?),
            _ => None,
        };
        let tail_len = st.tail_len;
        if st.multipart.is_some() {
            self.close_multipart(&mut st, tail, tail_len).await?;
        } else if let Some(t) = tail {
            let path = self.key(&format!("data/{id}-{}", st.segments.len()));
            self.store.put(&path, PutPayload::from(t)).await.map_err(os_err)?;
            st.segments.push((path.to_string(), tail_len));
        }
        st.tail_len = 0;
        let (path, size) = match st.segments.len() {
            0 => {
                let path = self.key(&format!("data/{id}-0"));
                self.store.put(&path, PutPayload::from(Bytes::new())).await.map_err(os_err)?;
                (path.to_string(), 0)
            }
            1 => st.segments[0].clone(),
            _ => {
                // Several segments (writes after a seal): concatenate through a new multipart
                // upload. Rare: only after a restart-and-rehash followed by more chunks.
                let path = self.key(&format!("data/{id}-joined"));
                let mid = self.store.create_multipart(&path).await.map_err(os_err)?;
                let mut parts = Vec::new();
                let mut buf = BytesMut::new();
                let mut total = 0u64;
                for (seg, _) in &st.segments {
                    let mut s = self.get_range(&Path::from(seg.as_str()), None).await?;
                    while let Some(c) = s.next().await {
                        let c = c?;
                        total += c.len() as u64;
                        buf.extend_from_slice(&c);
                        while buf.len() >= self.part_size_for(parts.len()) {
                            let want = self.part_size_for(parts.len());
                            let p = buf.split_to(want).freeze();
                            parts.push(self.store.put_part(&path, &mid, parts.len(), p.into()).await.map_err(os_err)?);
                        }
                    }
                }
                if !buf.is_empty() || parts.is_empty() {
                    let p = buf.freeze();
                    parts.push(self.store.put_part(&path, &mid, parts.len(), p.into()).await.map_err(os_err)?);
                }
                self.store.complete_multipart(&path, &mid, parts).await.map_err(os_err)?;
                for (seg, _) in &st.segments {
                    self.delete_quiet(&Path::from(seg.as_str())).await;
                }
                (path.to_string(), total)
            }
        };
        self.write_pointer(digest, &self.pointer_to(&path, size)).await?;
        if let Some(t) = &st.tail {
            self.delete_quiet(&Path::from(t.as_str())).await;
        }
        self.store.delete(&self.state_key(id)?).await.map_err(os_err)?;
        Ok(())
    }

    async fn upload_abort(&self, id: &str) -> Result<(), BlobError> {
        let st = match self.load(id).await {
            Ok(st) => st,
            Err(BlobError::UploadNotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(mp) = &st.multipart {
            let _ = self.store.abort_multipart(&Path::from(mp.path.as_str()), &mp.id).await;
        }
        for (seg, _) in &st.segments {
            self.delete_quiet(&Path::from(seg.as_str())).await;
        }
        if let Some(t) = &st.tail {
            self.delete_quiet(&Path::from(t.as_str())).await;
        }
        self.store.delete(&self.state_key(id)?).await.map_err(os_err)?;
        Ok(())
    }

    async fn presigned_get(&self, digest: &Digest, ttl: std::time::Duration) -> Result<Option<String>, BlobError> {
        use object_store::signer::Signer;
        let Some(p) = self.pointer(digest).await? else { return Ok(None) };
        let url = self.store.signed_url(http::Method::GET, &self.data_key(&p), ttl).await.map_err(os_err)?;
        Ok(Some(url.to_string()))
    }

    async fn reap_orphan_parts(&self, older_than: std::time::SystemTime) -> Result<usize, BlobError> {
        let prefix = self.data_prefix();
        let mut aborted = 0;
        for (key, upload_id, started) in self.multipart_uploads().await? {
            if started >= older_than {
                continue; // possibly a session between starting the upload and saving its state
            }
            // `data/<session>-<n>` (or `-joined`): live while that session exists. A session
            // saves the upload it writes only when a request ends (an hour-long PATCH is
            // normal), and one left over by a crash inside a live session goes once the
            // session ends (committed, aborted or expired).
            let session = key.strip_prefix(&prefix).and_then(|r| r.rsplit_once('-')).map(|(s, _)| s);
            let live = match session.filter(|s| valid_upload_id(s)) {
                Some(s) => match self.load(s).await {
                    Ok(_) => true,
                    Err(BlobError::UploadNotFound) => false,
                    Err(e) => return Err(e),
                },
                None => false,
            };
            if !live {
                self.store.abort_multipart(&Path::from(key.as_str()), &upload_id).await.map_err(os_err)?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }

    async fn upload_list(&self) -> Result<Vec<String>, BlobError> {
        let prefix = self.key("uploads");
        let mut out = Vec::new();
        let mut list = self.store.list(Some(&prefix));
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(os_err)?;
            let parts: Vec<_> = meta.location.parts().collect();
            if let [.., id, file] = parts.as_slice()
                && file.as_ref() == "state.json"
            {
                out.push(id.as_ref().to_owned());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options for a fresh prefix on the test process's SeaweedFS.
    fn options() -> S3Options {
        let loc = berth_test_support::s3_location();
        S3Options {
            endpoint: Some(loc.endpoint),
            region: "us-east-1".into(),
            bucket: loc.bucket,
            prefix: loc.prefix,
            access_key_id: Some(loc.access_key_id),
            secret_access_key: Some(loc.secret_access_key),
            path_style: true,
            part_size: MIN_PART_SIZE,
        }
    }

    fn store() -> S3BlobStore {
        S3BlobStore::new(&options()).unwrap()
    }

    /// Parts needed for a blob of `size` bytes with the growing part-size schedule.
    fn parts_for(store: &S3BlobStore, size: u64) -> usize {
        let (mut n, mut left) = (0usize, size);
        while left > 0 {
            left = left.saturating_sub(store.part_size_for(n) as u64);
            n += 1;
        }
        n
    }

    #[test]
    fn part_sizes_grow_so_huge_layers_fit_in_10000_parts() {
        let s = S3BlobStore::new(&S3Options { part_size: 8 << 20, ..options_offline() }).unwrap();
        assert_eq!(s.part_size_for(0), 8 << 20);
        assert_eq!(s.part_size_for(999), 8 << 20);
        assert_eq!(s.part_size_for(1000), 16 << 20);
        assert_eq!(s.part_size_for(5000), 256 << 20);
        assert_eq!(s.part_size_for(9999), MAX_PART_SIZE, "capped at 1 GiB");
        // Distribution's fixed parts break at 10,000 parts; these do not, far beyond 100 GB:
        // with the default 8 MiB first parts a blob may reach about 4 TiB.
        assert!(parts_for(&s, 100 << 30) < 5_000, "100 GiB: {}", parts_for(&s, 100 << 30));
        assert!(parts_for(&s, 3_900 << 30) <= 10_000, "3.9 TiB: {}", parts_for(&s, 3_900 << 30));
        // the configured size never goes below S3's minimum
        let tiny = S3BlobStore::new(&S3Options { part_size: 1, ..options_offline() }).unwrap();
        assert_eq!(tiny.part_size_for(0), MIN_PART_SIZE);
    }

    fn options_offline() -> S3Options {
        S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            bucket: "b".into(),
            prefix: String::new(),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            path_style: true,
            part_size: MIN_PART_SIZE,
        }
    }

    #[tokio::test]
    async fn s3_presigned_get_serves_the_blob_to_a_plain_http_client() {
        let store = store();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 249) as u8).collect();
        let d = Digest::sha256_of(&data);
        assert_eq!(store.presigned_get(&d, std::time::Duration::from_secs(60)).await.unwrap(), None, "absent blob");
        store.put(&d, Bytes::from(data.clone())).await.unwrap();
        let url = store.presigned_get(&d, std::time::Duration::from_secs(60)).await.unwrap().expect("a URL");
        let out = tokio::process::Command::new("curl").args(["-sf", &url]).output().await.unwrap();
        assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == data, "the presigned URL serves the blob's bytes");
        // the filesystem store has no such URLs
        let dir = tempfile::tempdir().unwrap();
        let fs = crate::FsBlobStore::open(dir.path()).await.unwrap();
        fs.put(&d, Bytes::from(data)).await.unwrap();
        assert_eq!(fs.presigned_get(&d, std::time::Duration::from_secs(60)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn s3_backend_passes_conformance_on_seaweedfs() {
        crate::conformance::run(&store()).await;
    }

    #[tokio::test]
    async fn s3_upload_continues_on_another_store_instance() {
        // Two instances over the same bucket and prefix behave like two replicas.
        let opts = options();
        let (r1, r2) = (S3BlobStore::new(&opts).unwrap(), S3BlobStore::new(&opts).unwrap());
        let data: Vec<u8> = (0..7_000_000u32).map(|i| (i % 253) as u8).collect();
        let id = "4b7e8a3c-1d2e-4f50-9a6b-7c8d9e0f1a2b";
        r1.upload_start(id).await.unwrap();
        let first: ByteStream = Box::pin(futures::stream::iter(vec![Ok(Bytes::copy_from_slice(&data[..6_000_000]))]));
        let n = r1.upload_write(id, 0, first).await.unwrap();
        assert_eq!(r2.upload_size(id).await.unwrap(), n);
        let rest: ByteStream = Box::pin(futures::stream::iter(vec![Ok(Bytes::copy_from_slice(&data[6_000_000..]))]));
        r2.upload_write(id, n, rest).await.unwrap();
        let d = Digest::sha256_of(&data);
        r1.upload_commit(id, &d).await.unwrap();
        let BlobBody::Stream(mut s) = r2.open(&d, None).await.unwrap() else { panic!("S3 bodies stream") };
        let mut back = Vec::new();
        while let Some(c) = s.next().await {
            back.extend_from_slice(&c.unwrap());
        }
        assert!(back == data);
        assert!(r2.upload_list().await.unwrap().is_empty(), "a committed upload leaves no session behind");
    }
    /// A crash between starting a multipart upload and saving the session's state leaves an
    /// upload S3 keeps (and bills) but never lists as an object: listed through a SigV4-signed
    /// request (which SeaweedFS verifies), it is aborted; a live session's upload is not.
    #[tokio::test]
    async fn s3_orphaned_multipart_uploads_are_found_and_aborted() {
        let s = store();
        let live = "0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70";
        s.upload_start(live).await.unwrap();
        let six: ByteStream = Box::pin(futures::stream::iter(vec![Ok(Bytes::from(vec![7u8; 6_000_000]))]));
        let n = s.upload_write(live, 0, six).await.unwrap();
        // The orphan: a session that never saved its state, with a part stored.
        let orphan = s.key("data/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee-0");
        let mid = s.store.create_multipart(&orphan).await.unwrap();
        s.store.put_part(&orphan, &mid, 0, PutPayload::from(vec![1u8; MIN_PART_SIZE])).await.unwrap();
        let listed = s.multipart_uploads().await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|(_, id, _)| id.as_str()).collect();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(ids.contains(&mid.as_str()));
        let started = listed.iter().find(|(_, id, _)| *id == mid).unwrap().2;
        let age = std::time::SystemTime::now().duration_since(started).unwrap_or_default();
        assert!(age < std::time::Duration::from_secs(300), "initiated just now: {age:?}");
        // Younger than the cut-off: left alone (it may be a session about to save its state).
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(s.reap_orphan_parts(an_hour_ago).await.unwrap(), 0);
        // Older: the orphan goes; the live session's upload stays, even one it has not saved
        // yet (a request still streaming), since the session exists.
        let unsaved = s.key(&format!("data/{live}-7"));
        let unsaved_id = s.store.create_multipart(&unsaved).await.unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(s.reap_orphan_parts(later).await.unwrap(), 1);
        s.store.abort_multipart(&unsaved, &unsaved_id).await.unwrap();
        let left = s.multipart_uploads().await.unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].0.contains(live), "{left:?}");
        // The live session goes on and commits.
        let rest: ByteStream = Box::pin(futures::stream::iter(vec![Ok(Bytes::from(vec![7u8; 1000]))]));
        s.upload_write(live, n, rest).await.unwrap();
        let mut data = vec![7u8; 6_000_000];
        data.extend_from_slice(&[7u8; 1000]);
        s.upload_commit(live, &Digest::sha256_of(&data)).await.unwrap();
        assert_eq!(s.stat(&Digest::sha256_of(&data)).await.unwrap(), Some(data.len() as u64));
        assert!(s.multipart_uploads().await.unwrap().is_empty());
    }
}
