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

    // a large upload in uneven chunks across multipart boundaries, read back half-way
    // (which an S3 store must seal), then continued and committed
    let id4 = "3b7e8a3c-1d2e-4f50-9a6b-7c8d9e0f1a2b";
    let pattern =
        |n: usize, seed: u32| -> Vec<u8> { (0..n as u32).map(|i| (i.wrapping_mul(seed) >> 7) as u8).collect() };
    let a = pattern(6 * 1024 * 1024 + 3, 2654435761);
    let b = pattern(5 * 1024 * 1024 - 1, 40503);
    let c = pattern(1024 * 1024 + 7, 97);
    let chunks = |v: &[u8]| -> ByteStream {
        let parts: Vec<std::io::Result<Bytes>> = v.chunks(256 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(futures::stream::iter(parts))
    };
    store.upload_start(id4).await.unwrap();
    let n1 = store.upload_write(id4, 0, chunks(&a)).await.unwrap();
    let n2 = store.upload_write(id4, n1, chunks(&b)).await.unwrap();
    assert_eq!(n2, (a.len() + b.len()) as u64);
    let mut back = Vec::new();
    let mut s = store.upload_read(id4).await.unwrap();
    while let Some(x) = s.next().await {
        back.extend_from_slice(&x.unwrap());
    }
    assert!(back == [a.as_slice(), b.as_slice()].concat(), "upload bytes read back in order");
    let n3 = store.upload_write(id4, n2, chunks(&c)).await.unwrap();
    assert_eq!(store.upload_size(id4).await.unwrap(), n3);
    let all = [a.as_slice(), b.as_slice(), c.as_slice()].concat();
    let ld = Digest::sha256_of(&all);
    store.upload_commit(id4, &ld).await.unwrap();
    assert_eq!(store.stat(&ld).await.unwrap(), Some(all.len() as u64));
    assert!(collect(store.open(&ld, None).await.unwrap()).await == all, "large upload round-trips");
    let (s0, e0) = (a.len() as u64 - 10, a.len() as u64 + 10);
    assert_eq!(collect(store.open(&ld, Some((s0, e0))).await.unwrap()).await, all[s0 as usize..=e0 as usize]);

    // delete
    store.delete(&d).await.unwrap();
    store.delete(&d).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), None);

    // empty blob
    let e = Digest::sha256_of(b"");
    store.put(&e, Bytes::new()).await.unwrap();
    assert_eq!(collect(store.open(&e, None).await.unwrap()).await, Vec::<u8>::new());
}
