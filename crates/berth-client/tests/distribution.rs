//! The client against a real CNCF Distribution registry (Debian's `docker-registry`), open and
//! with htpasswd, directly and through the fault-injecting proxy.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use berth_client::{Client, ClientError, Endpoint, Retry};
use berth_test_support::{Distribution, Fault, FaultProxy};
use bytes::Bytes;
use futures::StreamExt;
use sha2::Digest as _;

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

fn stream_of(b: Vec<u8>) -> berth_client::ByteStream {
    Box::pin(futures::stream::iter(b.chunks(7000).map(|c| Ok(Bytes::copy_from_slice(c))).collect::<Vec<_>>()))
}

async fn collect(mut s: berth_client::ByteStream) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

/// Push a one-layer image (config, layer, manifest under `tag`); returns the manifest bytes.
async fn push_image(c: &Client, repo: &str, tag: &str, layer: &[u8]) -> Vec<u8> {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    for b in [&config, &layer.to_vec()] {
        c.push_blob(repo, &digest(b), b.len() as u64, stream_of(b.clone())).await.unwrap();
    }
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": layer.len()}]});
    let bytes = serde_json::to_vec(&m).unwrap();
    let d = c
        .push_manifest(repo, tag, "application/vnd.oci.image.manifest.v1+json", Bytes::from(bytes.clone()))
        .await
        .unwrap();
    assert_eq!(d, digest(&bytes));
    bytes
}

#[tokio::test]
async fn pushes_pulls_lists_mounts_and_deletes_on_an_open_registry() {
    let reg = Distribution::start(None);
    let c = Client::new(&Endpoint { url: reg.url.clone(), ..Default::default() }).unwrap();
    c.ping().await.unwrap();
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let manifest = push_image(&c, "team/app", "v1", &layer).await;
    // By tag and by digest; HEAD; the blob streamed back and verified.
    let m = c.manifest("team/app", "v1").await.unwrap();
    assert_eq!((m.bytes.to_vec(), m.digest.as_str()), (manifest.clone(), digest(&manifest).as_str()));
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(c.manifest("team/app", &digest(&manifest)).await.unwrap().bytes.len(), manifest.len());
    let head = c.manifest_head("team/app", "v1").await.unwrap().unwrap();
    assert_eq!((head.digest, head.size), (digest(&manifest), manifest.len() as u64));
    assert_eq!(c.manifest_head("team/app", "nope").await.unwrap(), None);
    let (size, body) = c.blob("team/app", &digest(&layer)).await.unwrap();
    assert_eq!(size, layer.len() as u64);
    assert_eq!(collect(body).await.unwrap(), layer);
    assert!(c.blob_exists("team/app", &digest(&layer)).await.unwrap());
    assert!(!c.blob_exists("team/app", &digest(b"absent")).await.unwrap());
    assert!(matches!(c.manifest("team/app", "nope").await, Err(ClientError::NotFound(_))));
    // Tags, catalog, a cross-repository mount, a delete.
    push_image(&c, "team/app", "v2", &layer).await;
    let mut tags = c.tags("team/app").await.unwrap();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);
    assert!(c.mount_blob("team/copy", &digest(&layer), "team/app").await.unwrap());
    assert!(c.blob_exists("team/copy", &digest(&layer)).await.unwrap());
    assert_eq!(c.catalog().await.unwrap(), ["team/app", "team/copy"]);
    c.delete_manifest("team/app", &digest(&manifest)).await.unwrap();
    assert_eq!(c.manifest_head("team/app", "v1").await.unwrap(), None);
}

#[tokio::test]
async fn basic_auth_is_used_when_asked_and_bad_credentials_are_named() {
    let reg = Distribution::start(Some(("mirror", "Mirror-Passw0rd")));
    let anonymous = Client::new(&Endpoint { url: reg.url.clone(), ..Default::default() }).unwrap();
    let e = anonymous.ping().await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(..)), "{e}");
    let wrong =
        Endpoint { url: reg.url.clone(), credentials: Some(("mirror".into(), "nope".into())), ..Default::default() };
    let e = Client::new(&wrong).unwrap().ping().await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(..)) && e.to_string().contains("refused the credentials"), "{e}");
    let right = Endpoint {
        url: reg.url.clone(),
        credentials: Some(("mirror".into(), "Mirror-Passw0rd".into())),
        ..Default::default()
    };
    let c = Client::new(&right).unwrap();
    c.ping().await.unwrap();
    push_image(&c, "x/y", "1", b"layer bytes").await;
    assert_eq!(c.tags("x/y").await.unwrap(), ["1"]);
}

#[tokio::test]
async fn retries_honour_retry_after_and_give_up_clearly() {
    let reg = Distribution::start(None);
    let proxy = FaultProxy::start(&reg.host);
    let retry = Retry { attempts: 4, base: Duration::from_millis(50), max_wait: Duration::from_secs(2) };
    // (The proxy's faults meet new connections: each phase uses a new client, a new pool.)
    let endpoint = Endpoint { url: format!("http://{}", proxy.host), ..Default::default() };
    let client = || Client::with_retry(&endpoint, retry).unwrap();
    let c = client();
    // 429 with Retry-After, a 503, a reset: retried, then it works.
    proxy.inject([Fault::Status(429, Some(1)), Fault::Status(503, None), Fault::Reset]);
    let t0 = std::time::Instant::now();
    c.ping().await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    // Still 429 after every attempt: a clear error; an upstream failure (stale-if-error).
    proxy.inject([
        Fault::Status(429, Some(0)),
        Fault::Status(429, Some(0)),
        Fault::Status(429, Some(0)),
        Fault::Status(429, Some(0)),
    ]);
    let e = client().ping().await.unwrap_err();
    assert!(matches!(e, ClientError::RateLimited { attempts: 4, .. }) && e.is_upstream_failure(), "{e}");
    // Down: unreachable, after the attempts.
    proxy.set_down(true);
    let e = client().manifest("a/b", "latest").await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }) && e.is_upstream_failure(), "{e}");
    proxy.set_down(false);
    // A 404 is not retried and not an upstream failure.
    let c = client();
    let before = proxy.forwarded();
    let e = c.manifest("a/b", "latest").await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound(_)) && !e.is_upstream_failure(), "{e}");
    assert!(proxy.forwarded() - before <= 1, "one connection, no retries");
}
