//! Berth's registry client (`berth-client`) against a Berth with token auth: the token flow
//! with credentials and anonymously, scopes that grant what the account may, TLS with the
//! server's own CA.

use berth_client::{Client, ClientError, Endpoint};
use bytes::Bytes;
use futures::StreamExt;

use crate::support::*;

fn endpoint(s: &TestServer, creds: Option<(&str, &str)>) -> Endpoint {
    Endpoint {
        url: s.base.clone(),
        credentials: creds.map(|(u, p)| (u.to_owned(), p.to_owned())),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_speaks_berths_token_flow() {
    let s = TestServer::start().await;
    s.project("pub", true).await;
    s.project("priv", false).await;
    let admin = Client::new(&endpoint(&s, Some((ADMIN, ADMIN_PASSWORD)))).unwrap();
    admin.ping().await.unwrap();
    // Push through the token flow (pull,push scope), then read it back.
    let layer = random_bytes(100_000);
    let ld = sha256(&layer);
    let chunks: Vec<Result<Bytes, ClientError>> = layer.chunks(8192).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    admin.push_blob("pub/app", &ld, layer.len() as u64, Box::pin(futures::stream::iter(chunks))).await.unwrap();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = sha256(config);
    let chunks: Vec<Result<Bytes, ClientError>> = vec![Ok(Bytes::from_static(config))];
    admin.push_blob("pub/app", &cd, config.len() as u64, Box::pin(futures::stream::iter(chunks))).await.unwrap();
    let m = image_manifest(&cd, config.len(), &[(ld.clone(), layer.len())], None);
    admin
        .push_manifest("pub/app", "v1", "application/vnd.oci.image.manifest.v1+json", Bytes::from(m.clone()))
        .await
        .unwrap();
    assert_eq!(admin.manifest("pub/app", "v1").await.unwrap().digest, sha256(&m));
    assert!(admin.mount_blob("priv/copy", &ld, "pub/app").await.unwrap(), "mounted with a token for both scopes");
    // Anonymous: pulls a public project's image; is refused a private one and any push.
    let anon = Client::new(&endpoint(&s, None)).unwrap();
    let (size, mut body) = anon.blob("pub/app", &ld).await.unwrap();
    assert_eq!(size, layer.len() as u64);
    let mut got = Vec::new();
    while let Some(c) = body.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, layer);
    let e = anon.manifest("priv/copy", "latest").await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(..) | ClientError::Denied(..) | ClientError::NotFound(_)), "{e}");
    let e = anon
        .push_manifest("pub/app", "v2", "application/vnd.oci.image.manifest.v1+json", Bytes::from(m.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(..) | ClientError::Denied(..)), "{e}");
    // Wrong credentials are named as such.
    let e = Client::new(&endpoint(&s, Some((ADMIN, "wrong")))).unwrap().ping().await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(..)), "{e}");
    let mut tags = admin.tags("pub/app").await.unwrap();
    tags.sort();
    assert_eq!(tags, ["v1"]);
}

/// TLS: a registry with a certificate of its own is refused until its CA is given (or the
/// endpoint is marked insecure, as Harbor's `insecure` registries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_endpoints_own_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let s = TestServer::start_with(|c| c.tls = Some(berth_config::TlsConfig { cert, key })).await;
    let creds = Some((ADMIN, ADMIN_PASSWORD));
    let e = Client::new(&endpoint(&s, creds)).unwrap().ping().await.unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }) && e.to_string().contains("certificate"), "{e}");
    let with_ca = Endpoint { ca_pem: Some(ck.cert.pem().into_bytes()), ..endpoint(&s, creds) };
    Client::new(&with_ca).unwrap().ping().await.unwrap();
    let insecure = Endpoint { insecure: true, ..endpoint(&s, creds) };
    Client::new(&insecure).unwrap().ping().await.unwrap();
    s.stop().await;
}
