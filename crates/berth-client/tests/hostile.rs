//! A registry that answers with endless bodies: the client reads at most its limits and says
//! so, instead of growing memory.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_client::{Client, ClientError, Endpoint, MAX_MANIFEST};

/// A server answering every request with 200 and a chunked body of zeros that never ends
/// (until the client hangs up); counts the bytes it managed to send.
fn endless() -> (String, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let _ = conn.read(&mut buf);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 << 10];
                for _ in 0..16_384 {
                    let frame =
                        [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat();
                    if conn.write_all(&frame).is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (url, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_bodies_are_cut_off_at_the_limits() {
    let (url, sent) = endless();
    let client = Client::new(&Endpoint { url, ..Default::default() }).unwrap();
    match client.manifest("library/app", "v1").await {
        Err(ClientError::Invalid(_, m)) => assert!(m.contains(&format!("larger than {MAX_MANIFEST} bytes")), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    match client.tags("library/app").await {
        Err(ClientError::Invalid(_, m)) => assert!(m.contains("a page of tags is larger than"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // What the server got out before the client hung up: the limits plus what the kernel
    // buffers, not the gigabyte it offered.
    let n = sent.load(Ordering::Relaxed);
    assert!(n < 64 << 20, "{n} bytes were read");
}
