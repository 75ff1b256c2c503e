//! The conformance suite every [`BlobStore`] backend must pass. Call [`run`] from a test of
//! each backend; it panics with a message naming the broken promise.

use berth_types::Digest;
use bytes::Bytes;
use futures::StreamExt;

use crate::{BlobBody, BlobError, BlobStore, ByteStream};

fn stream_of(chunks: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))))
}

async fn collect(body: BlobBody) -> Vec<u8> {
    match body {
        BlobBody::Bytes(b) => b.to_vec(),
        BlobBody::Stream(mut s) => {
            let mut v = Vec::new();
            while let Some(c) = s.next().await {
                v.extend_from_slice(&c.expect("stream chunk"));
            }
            v
        }
    }
}

/// Run every check against `store`, which must be empty.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run(store: &dyn BlobStore) {
    // put / stat / open / ranges / idempotence
    let data = Bytes::from_static(b"hello, berth");
    let d = Digest::sha256_of(&data);
    assert_eq!(store.stat(&d).await.unwrap(), None, "absent blob has no size");
    assert!(matches!(store.open(&d, None).await, Err(BlobError::NotFound)), "absent blob opens as NotFound");
    store.put(&d, data.clone()).await.unwrap();
    store.put(&d, data.clone()).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(data.len() as u64));
    assert_eq!(collect(store.open(&d, None).await.unwrap()).await, data.to_vec());
    assert_eq!(collect(store.open(&d, Some((7, 11))).await.unwrap()).await, b"berth".to_vec());
    assert_eq!(collect(store.open(&d, Some((7, 1000))).await.unwrap()).await, b"berth".to_vec());
    assert!(matches!(store.open(&d, Some((100, 200))).await, Err(BlobError::RangeNotSatisfiable)));

    // a large blob goes through the same paths
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let bd = Digest::sha256_of(&big);
    store.put(&bd, Bytes::from(big.clone())).await.unwrap();
    assert_eq!(collect(store.open(&bd, None).await.unwrap()).await, big);
    assert_eq!(collect(store.open(&bd, Some((1_000_000, 1_000_009))).await.unwrap()).await, big[1_000_000..1_000_010]);

    // uploads: append at offsets, mismatch refused, read back, commit makes a blob
    let id = "0b7e8a3c-1d2e-4f50-9a6b-7c8d9e0f1a2b";
    store.upload_start(id).await.unwrap();
    assert_eq!(store.upload_size(id).await.unwrap(), 0);
    assert_eq!(store.upload_write(id, 0, stream_of(vec![b"abc", b"def"])).await.unwrap(), 6);
    assert!(
        matches!(
            store.upload_write(id, 3, stream_of(vec![b"x"])).await,
            Err(BlobError::OffsetMismatch { expected: 3, actual: 6 })
        ),
        "write at a wrong offset is refused"
    );
    assert_eq!(store.upload_size(id).await.unwrap(), 6, "a refused write stores nothing");
    // a body that fails half-way keeps what arrived
    let failing: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"gh")),
        Err(std::io::Error::other("client went away")),
    ]));
    assert!(matches!(store.upload_write(id, 6, failing).await, Err(BlobError::Body { written: 2, .. })));
    assert_eq!(store.upload_size(id).await.unwrap(), 8);
    let mut back = Vec::new();
    let mut s = store.upload_read(id).await.unwrap();
    while let Some(c) = s.next().await {
        back.extend_from_slice(&c.unwrap());
    }
    assert_eq!(back, b"abcdefgh");
    assert!(store.upload_list().await.unwrap().contains(&id.to_owned()));
    let ud = Digest::sha256_of(b"abcdefgh");
    assert_eq!(store.stat(&ud).await.unwrap(), None, "upload bytes are not a blob before commit");
    store.upload_commit(id, &ud).await.unwrap();
    assert_eq!(store.stat(&ud).await.unwrap(), Some(8));
    assert!(matches!(store.upload_size(id).await, Err(BlobError::UploadNotFound)), "commit ends the session");
    assert!(!store.upload_list().await.unwrap().contains(&id.to_owned()));

    // committing content that already exists deduplicates
    let id2 = "1b7e8a3c-1d2e-4f50-9a6b-7c8d9e0f1a2b";
    store.upload_start(id2).await.unwrap();
    store.upload_write(id2, 0, stream_of(vec![b"hello, berth"])).await.unwrap();
    store.upload_commit(id2, &d).await.unwrap();
    assert_eq!(collect(store.open(&d, None).await.unwrap()).await, data.to_vec());

    // abort frees; unknown and malformed ids are UploadNotFound
    let id3 = "2b7e8a3c-1d2e-4f50-9a6b-7c8d9e0f1a2b";
    store.upload_start(id3).await.unwrap();
    store.upload_abort(id3).await.unwrap();
    store.upload_abort(id3).await.unwrap();
    assert!(matches!(store.upload_size(id3).await, Err(BlobError::UploadNotFound)));
    assert!(matches!(store.upload_size("../../etc/passwd").await, Err(BlobError::UploadNotFound)));
    assert!(matches!(store.upload_write("nope", 0, stream_of(vec![])).await, Err(BlobError::UploadNotFound)));

    // delete
    store.delete(&d).await.unwrap();
    store.delete(&d).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), None);

    // empty blob
    let e = Digest::sha256_of(b"");
    store.put(&e, Bytes::new()).await.unwrap();
    assert_eq!(collect(store.open(&e, None).await.unwrap()).await, Vec::<u8>::new());
}
