//! Every endpoint of the OCI Distribution API and every error the spec names, over HTTP.

use std::io::{Read, Write};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

async fn base_health_metrics(b: Backend) {
    let s = TestServer::start_on(b).await;
    let r = s.get("/v2/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-distribution-api-version"), Some("registry/2.0"));
    assert!(header(&r, "x-request-id").is_some_and(|v| !v.is_empty()));
    assert_eq!(s.get("/v2").await.status(), 200);
    assert_eq!(s.get("/healthz").await.text().await.unwrap(), "ok");
    assert_eq!(s.get("/readyz").await.status(), 200);
    s.push_image("metrics/app", "v1").await;
    let m = s.get("/metrics").await.text().await.unwrap();
    assert!(
        m.contains(
            "berth_http_requests_total{route=\"/v2/{name}/manifests/{reference}\",method=\"PUT\",status=\"201\"} 1"
        ),
        "{m}"
    );
    assert!(m.contains("berth_http_request_body_bytes_total"), "{m}");
    assert!(m.contains("berth_http_request_duration_seconds_bucket"), "{m}");
    // unknown endpoints and methods get OCI error bodies too
    expect_error(s.get("/v2/a/unknown/thing").await, StatusCode::NOT_FOUND, "UNSUPPORTED").await;
    let r = s.client.post(s.url("/v2/a/tags/list")).send().await.unwrap();
    expect_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    s.stop().await;
}

async fn monolithic_and_single_request_push_then_pull_with_ranges(b: Backend) {
    let s = TestServer::start_on(b).await;
    let data = random_bytes(3_000_000);
    let d = s.push_blob("lib/app", &data).await;
    // GET, HEAD
    let r = s.get(&format!("/v2/lib/app/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), Some(d.as_str()));
    assert_eq!(header(&r, "content-length"), Some("3000000"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    let r = s.head(&format!("/v2/lib/app/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), Some("3000000"));
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    // Range
    let r =
        s.client.get(s.url(&format!("/v2/lib/app/blobs/{d}"))).header("range", "bytes=100-199").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), Some("bytes 100-199/3000000"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[100..200]);
    let r =
        s.client.get(s.url(&format!("/v2/lib/app/blobs/{d}"))).header("range", "bytes=2999990-").send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[2_999_990..]);
    let r = s.client.get(s.url(&format!("/v2/lib/app/blobs/{d}"))).header("range", "bytes=-10").send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[2_999_990..]);
    // A large range, from an offset: served from the blob's file (on the filesystem, with
    // sendfile over plain HTTP, which must start at the right place in the file).
    let r = s
        .client
        .get(s.url(&format!("/v2/lib/app/blobs/{d}")))
        .header("range", "bytes=1001-2500999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[1001..2_501_000]);
    // Over HTTP/2 without TLS the bytes go out in DATA frames: whole and ranged, byte-exact.
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(reqwest::header::AUTHORIZATION, basic(ADMIN, ADMIN_PASSWORD).parse().unwrap());
    let h2c = reqwest::Client::builder().http2_prior_knowledge().default_headers(auth).build().unwrap();
    if !s.base.starts_with("https") {
        let r = h2c.get(s.url(&format!("/v2/lib/app/blobs/{d}"))).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
        let r =
            h2c.get(s.url(&format!("/v2/lib/app/blobs/{d}"))).header("range", "bytes=300000-").send().await.unwrap();
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[300_000..]);
    }
    let r =
        s.client.get(s.url(&format!("/v2/lib/app/blobs/{d}"))).header("range", "bytes=5000000-").send().await.unwrap();
    assert_eq!(header(&r, "content-range"), Some("bytes */3000000"));
    expect_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "SIZE_INVALID").await;
    // the same blob is unknown in another repository
    expect_error(s.get(&format!("/v2/lib/other/blobs/{d}")).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;

    // single-request POST with digest
    let small = b"single request upload".to_vec();
    let sd = sha256(&small);
    let r = s
        .client
        .post(s.url(&format!("/v2/lib/app/blobs/uploads/?digest={sd}")))
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(location(&r), format!("/v2/lib/app/blobs/{sd}"));
    assert_eq!(s.get(&format!("/v2/lib/app/blobs/{sd}")).await.bytes().await.unwrap().as_ref(), &small[..]);
    // ... with a wrong digest
    let wrong = sha256(b"something else");
    let r = s
        .client
        .post(s.url(&format!("/v2/lib/app/blobs/uploads/?digest={wrong}")))
        .body(small.clone())
        .send()
        .await
        .unwrap();
    let body = expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(body["errors"][0]["detail"]["actual"], sd);
    expect_error(s.get(&format!("/v2/lib/app/blobs/{wrong}")).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;

    // empty blob
    let ed = s.push_blob("lib/app", b"").await;
    let r = s.get(&format!("/v2/lib/app/blobs/{ed}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    s.stop().await;
}

async fn chunked_upload_status_out_of_order_cancel(b: Backend) {
    let s = TestServer::start_on(b).await;
    let data = random_bytes(5 * 1024 * 1024 + 17);
    let d = sha256(&data);
    let r = s.client.post(s.url("/v2/c/app/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), Some("0-0"));
    assert!(header(&r, "docker-upload-uuid").is_some());
    let mut loc = location(&r);
    let chunk = 2 * 1024 * 1024;
    let mut off = 0;
    for part in data.chunks(chunk).take(2) {
        let r = s
            .client
            .patch(s.url(&loc))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{}-{}", off, off + part.len() - 1))
            .header("content-length", part.len())
            .body(part.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        off += part.len();
        assert_eq!(header(&r, "range"), Some(format!("0-{}", off - 1).as_str()));
        loc = location(&r);
    }
    // status
    let r = s.get(&loc).await;
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), Some(format!("0-{}", off - 1).as_str()));
    // out of order: re-sending the first chunk
    let r = s
        .client
        .patch(s.url(&loc))
        .header("content-range", format!("0-{}", chunk - 1))
        .body(data[..chunk].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "range"), Some(format!("0-{}", off - 1).as_str()), "416 tells where the upload is");
    assert!(header(&r, "location").is_some());
    // Regression (CI, 2026-11-22): answered before its body was read, the connection cannot be
    // reused; saying so keeps a pooling client from failing its next request.
    assert_eq!(header(&r, "connection"), Some("close"));
    expect_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID").await;
    // Content-Range / Content-Length disagreement
    let r = s
        .client
        .patch(s.url(&loc))
        .header("content-range", format!("{off}-{}", off + 9))
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;
    // a chunk without Content-Range (streamed) appends
    let r = s.client.patch(s.url(&loc)).body(data[off..off + 1000].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 202);
    off += 1000;
    // missing digest on completion
    let r = s.client.put(s.url(&loc)).send().await.unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    // wrong digest keeps the session
    let r = s
        .client
        .put(s.url(&format!("{loc}?digest={}", sha256(b"nope"))))
        .body(data[off..].to_vec())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = s.get(&loc).await;
    assert_eq!(header(&r, "range"), Some(format!("0-{}", data.len() - 1).as_str()), "the last chunk was kept");
    // now the right digest, no more body
    let r = s.client.put(s.url(&format!("{loc}?digest={d}"))).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), Some(d.as_str()));
    assert_eq!(s.get(&format!("/v2/c/app/blobs/{d}")).await.bytes().await.unwrap().as_ref(), &data[..]);
    // the session is gone
    expect_error(s.get(&loc).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;

    // cancel
    let r = s.client.post(s.url("/v2/c/app/blobs/uploads/")).send().await.unwrap();
    let loc = location(&r);
    s.client.patch(s.url(&loc)).body(vec![1u8; 10]).send().await.unwrap();
    assert_eq!(s.delete(&loc).await.status(), 204);
    expect_error(s.get(&loc).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    expect_error(s.delete(&loc).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    // unknown, malformed and other-repo session ids
    expect_error(
        s.get("/v2/c/app/blobs/uploads/00000000-0000-0000-0000-000000000000").await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    expect_error(s.get("/v2/c/app/blobs/uploads/..%2F..%2Fetc").await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
        .await;
    let r = s.client.post(s.url("/v2/c/app/blobs/uploads/")).send().await.unwrap();
    let other = location(&r).replace("/v2/c/app/", "/v2/c/other/");
    expect_error(s.get(&other).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    s.stop().await;
}

async fn upload_resumes_after_the_client_disconnects_mid_chunk(b: Backend) {
    let s = TestServer::start_on(b).await;
    let data = random_bytes(200_000);
    let r = s.client.post(s.url("/v2/r/app/blobs/uploads/")).send().await.unwrap();
    let loc = location(&r);
    // Announce 200000 bytes, send 120000, then drop the connection.
    let host = s.host();
    let loc2 = loc.clone();
    let sent = data[..120_000].to_vec();
    tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(&host).unwrap();
        let auth = basic(ADMIN, ADMIN_PASSWORD);
        write!(c, "PATCH {loc2} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nContent-Type: application/octet-stream\r\nContent-Length: 200000\r\n\r\n").unwrap();
        c.write_all(&sent).unwrap();
        c.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(c);
    })
    .await
    .unwrap();
    // The server keeps what arrived; the status tells the client where to resume.
    let size = eventually("the 120000 bytes that arrived kept", async || {
        let r = s.get(&loc).await;
        assert_eq!(r.status(), 204);
        let range = header(&r, "range").unwrap().to_owned();
        let size = range.split('-').nth(1).unwrap().parse::<usize>().unwrap() + 1;
        if size == 120_000 { Ok(size) } else { Err(format!("Range: {range}")) }
    })
    .await;
    let r = s
        .client
        .patch(s.url(&loc))
        .header("content-range", format!("{size}-{}", data.len() - 1))
        .body(data[size..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let d = sha256(&data);
    let r = s.client.put(s.url(&format!("{}?digest={d}", location(&r)))).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s.get(&format!("/v2/r/app/blobs/{d}")).await.bytes().await.unwrap().as_ref(), &data[..]);
    s.stop().await;
}

async fn upload_sessions_expire_and_their_bytes_are_reclaimed(b: Backend) {
    let s = TestServer::start_on_with(b, |c| {
        c.upload_ttl = Duration::from_secs(1);
        c.upload_sweep_interval = Duration::from_millis(300);
    })
    .await;
    let r = s.client.post(s.url("/v2/e/app/blobs/uploads/")).send().await.unwrap();
    let loc = location(&r);
    s.client.patch(s.url(&loc)).body(vec![7u8; 4096]).send().await.unwrap();
    let id = loc.rsplit('/').next().unwrap().to_owned();
    let file = s.data_dir().join("blobs/uploads").join(&id);
    assert!(b == Backend::S3Postgres || file.exists());
    // Expired by the sweep once idle past its TTL (a status request does not touch it).
    eventually("the idle session expired and its bytes deleted", async || {
        let st = s.get(&loc).await.status();
        if st == StatusCode::NOT_FOUND && !file.exists() {
            Ok(())
        } else {
            Err(format!("{st}, bytes: {}", file.exists()))
        }
    })
    .await;
    expect_error(s.get(&loc).await, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    assert!(!file.exists(), "expired upload bytes are deleted");
    s.stop().await;
}

async fn cross_repository_mounts(b: Backend) {
    let s = TestServer::start_on(b).await;
    let data = random_bytes(10_000);
    let d = s.push_blob("m/src", &data).await;
    let r = s.client.post(s.url(&format!("/v2/m/dst/blobs/uploads/?mount={d}&from=m/src"))).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(location(&r), format!("/v2/m/dst/blobs/{d}"));
    assert_eq!(s.get(&format!("/v2/m/dst/blobs/{d}")).await.bytes().await.unwrap().as_ref(), &data[..]);
    // from a repository that does not hold it: a normal upload session instead
    let r = s.client.post(s.url(&format!("/v2/m/dst2/blobs/uploads/?mount={d}&from=m/empty"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert!(location(&r).starts_with("/v2/m/dst2/blobs/uploads/"));
    // without from: any repository's copy
    let r = s.client.post(s.url(&format!("/v2/m/dst3/blobs/uploads/?mount={d}"))).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // unknown digest
    let r = s.client.post(s.url(&format!("/v2/m/dst4/blobs/uploads/?mount={}", sha256(b"x")))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    // malformed mount digest / from name
    let r = s.client.post(s.url("/v2/m/dst4/blobs/uploads/?mount=sha256:xyz")).send().await.unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = s.client.post(s.url(&format!("/v2/m/dst4/blobs/uploads/?mount={d}&from=../m/src"))).send().await.unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    // one copy on disk however many repositories hold it
    if b == Backend::Embedded {
        let blob_files = walk_files(&s.data_dir().join("blobs/blobs"));
        assert_eq!(blob_files.iter().filter(|p| p.ends_with(&d[7..])).count(), 1);
    }
    s.stop().await;
}

fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

async fn manifests_by_tag_and_digest_exact_bytes(b: Backend) {
    let s = TestServer::start_on(b).await;
    let m = s.upload_image_blobs("p/img", 2000).await;
    let md = sha256(&m);
    let r = s.put_manifest("p/img", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), Some(md.as_str()));
    assert_eq!(location(&r), format!("/v2/p/img/manifests/{md}"));
    for reference in ["v1", md.as_str()] {
        let r = s
            .client
            .get(s.url(&format!("/v2/p/img/manifests/{reference}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), Some(OCI_MANIFEST));
        assert_eq!(header(&r, "docker-content-digest"), Some(md.as_str()));
        assert_eq!(r.bytes().await.unwrap().as_ref(), &m[..], "served exactly as pushed");
        let r = s.head(&format!("/v2/p/img/manifests/{reference}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-length"), Some(m.len().to_string().as_str()));
    }
    // push by digest, and ?tag= on PUT
    let m2 = s.upload_image_blobs("p/img", 100).await;
    let d2 = sha256(&m2);
    let r = s
        .client
        .put(s.url(&format!("/v2/p/img/manifests/{d2}?tag=a&tag=b")))
        .header("content-type", OCI_MANIFEST)
        .body(m2.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let applied: Vec<&str> = r.headers().get_all("oci-tag").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(applied, ["a", "b"], "one OCI-Tag header per tag applied");
    for t in ["a", "b"] {
        assert_eq!(
            header(&s.head(&format!("/v2/p/img/manifests/{t}")).await, "docker-content-digest"),
            Some(d2.as_str())
        );
    }
    // a tag moves
    let r = s.put_manifest("p/img", "v1", OCI_MANIFEST, &m2).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&s.head("/v2/p/img/manifests/v1").await, "docker-content-digest"), Some(d2.as_str()));
    // sha512 reference
    let d512 = {
        use sha2::Digest as _;
        format!("sha512:{}", hex::encode(sha2::Sha512::digest(&m)))
    };
    let r = s.put_manifest("p/img", &d512, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 201);
    assert_eq!(s.get(&format!("/v2/p/img/manifests/{d512}")).await.bytes().await.unwrap().as_ref(), &m[..]);
    // unknown
    expect_error(s.get("/v2/p/img/manifests/nope").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    expect_error(
        s.get(&format!("/v2/p/img/manifests/{}", sha256(b"zz"))).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let r = s.head("/v2/p/img/manifests/nope").await;
    assert_eq!(r.status(), 404);
    s.stop().await;
}

async fn manifest_errors(b: Backend) {
    let s = TestServer::start_on_with(b, |c| c.max_manifest_bytes = 64 * 1024).await;
    let m = s.upload_image_blobs("e/img", 10).await;
    // digest mismatch when pushing by digest
    let r = s.put_manifest("e/img", &sha256(b"other"), OCI_MANIFEST, &m).await;
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    // garbage
    let r = s.put_manifest("e/img", "bad", OCI_MANIFEST, b"{not json").await;
    expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let r = s.put_manifest("e/img", "bad", OCI_MANIFEST, br#"{"schemaVersion": 1}"#).await;
    expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let r = s
        .put_manifest(
            "e/img",
            "bad",
            OCI_MANIFEST,
            br#"{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:1", "size": 1}, "layers": []}"#,
        )
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    // media type disagreement, and an unsupported one
    let r = s.put_manifest("e/img", "bad", OCI_INDEX, &m).await;
    expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let r = s.put_manifest("e/img", "bad", "application/vnd.docker.distribution.manifest.v1+prettyjws", &m).await;
    expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    // missing blobs
    let missing = sha256(b"never pushed");
    let mm = image_manifest(&missing, 12, &[(sha256(b"also missing"), 12)], None);
    let body = expect_error(
        s.put_manifest("e/img", "bad", OCI_MANIFEST, &mm).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(body["errors"][0]["detail"]["digests"].as_array().unwrap().len(), 2);
    // a blob pushed to another repository does not count
    let m_other = s.upload_image_blobs("e/other", 10).await;
    expect_error(
        s.put_manifest("e/img", "bad", OCI_MANIFEST, &m_other).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    // size in descriptor disagrees with the blob
    let v: Value = serde_json::from_slice(&m).unwrap();
    let mut wrong = v.clone();
    wrong["layers"][0]["size"] = json!(999);
    let r = s.put_manifest("e/img", "bad", OCI_MANIFEST, &serde_json::to_vec(&wrong).unwrap()).await;
    expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    // too large
    let mut big = v.clone();
    big["annotations"] = json!({"pad": "x".repeat(70 * 1024)});
    let r = s.put_manifest("e/img", "big", OCI_MANIFEST, &serde_json::to_vec(&big).unwrap()).await;
    let body = expect_error(r, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("65536"), "{body}");
    // invalid tag
    let r = s
        .client
        .put(s.url("/v2/e/img/manifests/-bad"))
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    let e = expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("invalid tag \"-bad\""), "{e}");
    let r = s
        .client
        .put(s.url("/v2/e/img/manifests/good?tag=.bad"))
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    // Reading or deleting a tag that could not exist: it is not there (404), as the spec's
    // conformance suite and clients expect.
    for method in [reqwest::Method::GET, reqwest::Method::HEAD, reqwest::Method::DELETE] {
        let r = s.client.request(method.clone(), s.url("/v2/e/img/manifests/-bad")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method}");
        if method == reqwest::Method::GET {
            let e = expect_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
            assert!(e["errors"][0]["message"].as_str().unwrap().contains("no tag can be called that"), "{e}");
        }
    }
    // nothing of the failures became visible
    expect_error(s.get("/v2/e/img/manifests/bad").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    expect_error(s.get("/v2/e/img/manifests/big").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    // Helm 4 style: no top-level mediaType, kind from Content-Type; and from shape alone
    let mut no_mt = v.clone();
    no_mt.as_object_mut().unwrap().remove("mediaType");
    let r = s.put_manifest("e/img", "helm", OCI_MANIFEST, &serde_json::to_vec(&no_mt).unwrap()).await;
    assert_eq!(r.status(), 201);
    let r = s.put_manifest("e/img", "shape", "application/json", &serde_json::to_vec(&no_mt).unwrap()).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&s.head("/v2/e/img/manifests/shape").await, "content-type"), Some(OCI_MANIFEST));
    s.stop().await;
}

async fn indexes_docker_manifests_and_lists(b: Backend) {
    let s = TestServer::start_on(b).await;
    let m1 = s.upload_image_blobs("i/app", 100).await;
    let m2 = s.upload_image_blobs("i/app", 100).await;
    let entry = |m: &[u8], arch: &str, mt: &str| json!({"mediaType": mt, "digest": sha256(m), "size": m.len(), "platform": {"architecture": arch, "os": "linux"}});
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry(&m1, "amd64", OCI_MANIFEST), entry(&m2, "arm64", OCI_MANIFEST)]})).unwrap();
    // children not pushed yet
    let body = expect_error(
        s.put_manifest("i/app", "multi", OCI_INDEX, &index).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(body["errors"][0]["detail"]["digests"].as_array().unwrap().len(), 2);
    assert_eq!(s.put_manifest("i/app", &sha256(&m1), OCI_MANIFEST, &m1).await.status(), 201);
    assert_eq!(s.put_manifest("i/app", &sha256(&m2), OCI_MANIFEST, &m2).await.status(), 201);
    let r = s.put_manifest("i/app", "multi", OCI_INDEX, &index).await;
    assert_eq!(r.status(), 201);
    let r = s.get("/v2/i/app/manifests/multi").await;
    assert_eq!(header(&r, "content-type"), Some(OCI_INDEX));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &index[..]);

    // Docker schema 2 manifest and manifest list
    const DM: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const DL: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = s.push_blob("i/docker", cfg).await;
    let layer = random_bytes(500);
    let ld = s.push_blob("i/docker", &layer).await;
    let dm = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DM,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld, "size": 500},
                   {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": sha256(b"windows base"), "size": 12, "urls": ["https://example.invalid/layer"]}]})).unwrap();
    let r = s.put_manifest("i/docker", "latest", DM, &dm).await;
    assert_eq!(r.status(), 201, "foreign layers need not be present: {:?}", r.text().await);
    let dl = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DL, "manifests": [entry(&dm, "amd64", DM)]}))
        .unwrap();
    assert_eq!(s.put_manifest("i/docker", "list", DL, &dl).await.status(), 201);
    let r = s.get("/v2/i/docker/manifests/list").await;
    assert_eq!(header(&r, "content-type"), Some(DL));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &dl[..]);
    s.stop().await;
}

async fn tags_catalog_pagination(b: Backend) {
    let s = TestServer::start_on(b).await;
    let m = s.upload_image_blobs("t/app", 10).await;
    let mut names: Vec<String> = (0..25).map(|i| format!("v{i:02}")).collect();
    names.push("latest".into());
    for t in &names {
        assert_eq!(s.put_manifest("t/app", t, OCI_MANIFEST, &m).await.status(), 201);
    }
    names.sort();
    let r = s.get("/v2/t/app/tags/list").await;
    assert!(header(&r, "link").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["name"], "t/app");
    assert_eq!(v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect::<Vec<_>>(), names);
    // follow Link headers 10 at a time
    let mut url = "/v2/t/app/tags/list?n=10".to_owned();
    let mut seen = Vec::new();
    loop {
        let r = s.get(&url).await;
        assert_eq!(r.status(), 200);
        let link = header(&r, "link").map(str::to_owned);
        let v: Value = r.json().await.unwrap();
        let page: Vec<String> = v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
        assert!(page.len() <= 10);
        seen.extend(page);
        match link {
            Some(l) => {
                assert!(l.ends_with("; rel=\"next\""), "{l}");
                url = l[1..l.find('>').unwrap()].to_owned();
            }
            None => break,
        }
    }
    assert_eq!(seen, names);
    let v: Value = s.get("/v2/t/app/tags/list?n=2&last=v05").await.json().await.unwrap();
    assert_eq!(v["tags"], json!(["v06", "v07"]));
    let v: Value = s.get("/v2/t/app/tags/list?n=0").await.json().await.unwrap();
    assert_eq!(v["tags"], json!([]));
    expect_error(s.get("/v2/t/app/tags/list?n=abc").await, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    expect_error(s.get("/v2/t/nothing/tags/list").await, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;

    // catalog
    for r in ["t/b", "t/a", "z/z"] {
        s.push_blob(r, b"x").await;
    }
    let v: Value = s.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["t/a", "t/app", "t/b", "z/z"]));
    let r = s.get("/v2/_catalog?n=2").await;
    assert_eq!(header(&r, "link"), Some("</v2/_catalog?n=2&last=t/app>; rel=\"next\""));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["t/a", "t/app"]));
    let v: Value = s.get("/v2/_catalog?n=2&last=t/app").await.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["t/b", "z/z"]));
    s.stop().await;
}

async fn referrers_and_subject(b: Backend) {
    let s = TestServer::start_on(b).await;
    let m = s.push_image("ref/app", "v1").await;
    let md = sha256(&m);
    let empty = s.push_blob("ref/app", b"{}").await;
    let artifact = |artifact_type: &str, subject: &str, payload: &[u8]| -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sha256(payload), "size": payload.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": m.len()},
            "annotations": {"org.example.kind": artifact_type},
        }))
        .unwrap()
    };
    s.push_blob("ref/app", b"sig").await;
    s.push_blob("ref/app", b"sbom").await;
    let sig = artifact("application/vnd.example.signature", &md, b"sig");
    let sbom = artifact("application/spdx+json", &md, b"sbom");
    for a in [&sig, &sbom] {
        let r = s.put_manifest("ref/app", &sha256(a), OCI_MANIFEST, a).await;
        assert_eq!(r.status(), 201);
        assert_eq!(header(&r, "oci-subject"), Some(md.as_str()));
    }
    // a subject that does not exist (yet) is accepted
    let dangling = sha256(b"future image");
    let orphan = artifact("application/vnd.example.signature", &dangling, b"sig");
    assert_eq!(s.put_manifest("ref/app", &sha256(&orphan), OCI_MANIFEST, &orphan).await.status(), 201);

    let r = s.get(&format!("/v2/ref/app/referrers/{md}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), Some(OCI_INDEX));
    assert!(header(&r, "oci-filters-applied").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["digest"], sha256(&sig));
    assert_eq!(list[0]["artifactType"], "application/vnd.example.signature");
    assert_eq!(list[0]["size"], sig.len());
    assert_eq!(list[0]["annotations"]["org.example.kind"], "application/vnd.example.signature");
    let r = s.get(&format!("/v2/ref/app/referrers/{md}?artifactType=application%2Fspdx%2Bjson")).await;
    assert_eq!(header(&r, "oci-filters-applied"), Some("artifactType"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], sha256(&sbom));
    // unknown subject: an empty index, never 404
    let r = s.get(&format!("/v2/ref/app/referrers/{}", sha256(b"nothing"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"], json!([]));
    let v: Value = s.get(&format!("/v2/ref/app/referrers/{dangling}")).await.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    expect_error(s.get("/v2/ref/app/referrers/sha256:nothex").await, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    // deleting a referrer removes it from the list
    assert_eq!(s.delete(&format!("/v2/ref/app/manifests/{}", sha256(&sig))).await.status(), 202);
    let v: Value = s.get(&format!("/v2/ref/app/referrers/{md}")).await.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn deletes(b: Backend) {
    let s = TestServer::start_on(b).await;
    let m = s.push_image("d/app", "v1").await;
    let md = sha256(&m);
    assert_eq!(s.put_manifest("d/app", "v2", OCI_MANIFEST, &m).await.status(), 201);
    // delete a tag: the manifest and other tags stay
    assert_eq!(s.delete("/v2/d/app/manifests/v1").await.status(), 202);
    expect_error(s.get("/v2/d/app/manifests/v1").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    assert_eq!(s.get("/v2/d/app/manifests/v2").await.status(), 200);
    expect_error(s.delete("/v2/d/app/manifests/v1").await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    // delete by digest: every tag on it goes too
    assert_eq!(s.put_manifest("d/app", "v3", OCI_MANIFEST, &m).await.status(), 201);
    assert_eq!(s.delete(&format!("/v2/d/app/manifests/{md}")).await.status(), 202);
    for r in ["v2", "v3", md.as_str()] {
        expect_error(s.get(&format!("/v2/d/app/manifests/{r}")).await, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    }
    let v: Value = s.get("/v2/d/app/tags/list").await.json().await.unwrap();
    assert_eq!(v["tags"], json!([]));
    // blobs
    let b = s.push_blob("d/app", b"some blob").await;
    assert_eq!(s.delete(&format!("/v2/d/app/blobs/{b}")).await.status(), 202);
    expect_error(s.get(&format!("/v2/d/app/blobs/{b}")).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    expect_error(s.delete(&format!("/v2/d/app/blobs/{b}")).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    s.stop().await;
}

async fn names_and_digests_are_validated(b: Backend) {
    let s = TestServer::start_on(b).await;
    let d = sha256(b"x");
    for path in [
        "/v2/UPPER/tags/list".to_owned(),
        "/v2/a/%2e%2e/b/tags/list".to_owned(),
        "/v2/a/../../etc/tags/list".to_owned(),
        format!("/v2/a//b/blobs/{d}"),
        "/v2/-a/manifests/latest".to_owned(),
        format!("/v2/{}/tags/list", "a".repeat(300)),
    ] {
        // reqwest normalises "..": send raw paths over TCP where needed
        let host = s.host();
        let p2 = path.clone();
        let status_and_body = tokio::task::spawn_blocking(move || raw_get(&host, &p2)).await.unwrap();
        assert!(status_and_body.starts_with("HTTP/1.1 400"), "{path}: {status_and_body}");
        assert!(status_and_body.contains("NAME_INVALID"), "{path}: {status_and_body}");
    }
    expect_error(s.get("/v2/a/blobs/sha256:1234").await, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    expect_error(
        s.get("/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e").await,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED",
    )
    .await;
    let r = s.client.post(s.url("/v2/a/blobs/uploads/?digest=sha256:short")).body("x").send().await.unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    // sha512 blobs work end to end
    let data = random_bytes(1000);
    let d512 = {
        use sha2::Digest as _;
        format!("sha512:{}", hex::encode(sha2::Sha512::digest(&data)))
    };
    let r =
        s.client.post(s.url(&format!("/v2/a/blobs/uploads/?digest={d512}"))).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s.get(&format!("/v2/a/blobs/{d512}")).await.bytes().await.unwrap().as_ref(), &data[..]);
    s.stop().await;
}

fn raw_get(host: &str, path: &str) -> String {
    let mut c = std::net::TcpStream::connect(host).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test]
async fn tls_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let s = TestServer::start_with(|c| c.tls = Some(berth_config::TlsConfig { cert, key })).await;
    assert!(s.base.starts_with("https://"));
    let r = s.get("/v2/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN negotiates HTTP/2");
    let data = random_bytes(100_000);
    let d = s.push_blob("tls/app", &data).await;
    assert_eq!(s.get(&format!("/v2/tls/app/blobs/{d}")).await.bytes().await.unwrap().as_ref(), &data[..]);
    // Over HTTP/2 the host comes as `:authority`: the token realm still names it.
    let h2 = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let r = h2.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!((r.status(), r.version()), (StatusCode::UNAUTHORIZED, reqwest::Version::HTTP_2));
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains(&format!("realm=\"https://{}/service/token\"", s.host())), "{challenge}");
    let h1 = reqwest::Client::builder().danger_accept_invalid_certs(true).http1_only().build().unwrap();
    let r = h1.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    s.stop().await;
    // cleartext HTTP/2 (prior knowledge) on the plain listener
    let s = TestServer::start().await;
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let r = h2c.request(Method::GET, s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    // Behind a reverse proxy (no external_url): the realm is where clients reached the proxy.
    let r = s
        .anon()
        .get(s.url("/v2/"))
        .header("x-forwarded-host", "registry.example.org")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("realm=\"https://registry.example.org/service/token\""), "{challenge}");
    s.stop().await;
}

/// Every API test above runs on the embedded default and on PostgreSQL + S3 (SeaweedFS).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::Embedded).await } )*
        }
        mod postgres_s3 {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Backend::S3Postgres).await } )*
        }
    };
}

on_both_backends!(
    base_health_metrics,
    monolithic_and_single_request_push_then_pull_with_ranges,
    chunked_upload_status_out_of_order_cancel,
    upload_resumes_after_the_client_disconnects_mid_chunk,
    upload_sessions_expire_and_their_bytes_are_reclaimed,
    cross_repository_mounts,
    manifests_by_tag_and_digest_exact_bytes,
    manifest_errors,
    indexes_docker_manifests_and_lists,
    tags_catalog_pagination,
    referrers_and_subject,
    deletes,
    names_and_digests_are_validated
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_blob_gets_can_redirect_to_presigned_urls() {
    let s =
        TestServer::start_on_with(Backend::S3Postgres, |c| c.blob_redirect_ttl = Some(Duration::from_secs(60))).await;
    let data = random_bytes(2_000_000);
    let d = s.push_blob("redir/app", &data).await;
    let mut admin = reqwest::header::HeaderMap::new();
    admin.insert(reqwest::header::AUTHORIZATION, basic(ADMIN, ADMIN_PASSWORD).parse().unwrap());
    let no_follow =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).default_headers(admin).build().unwrap();
    let r = no_follow.get(s.url(&format!("/v2/redir/app/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header(&r, "docker-content-digest"), Some(d.as_str()));
    let url = location(&r);
    assert!(url.contains("X-Amz-Signature="), "{url}");
    // the presigned URL serves the bytes, ranges included
    assert_eq!(sha256(&s.anon().get(&url).send().await.unwrap().bytes().await.unwrap()), d);
    let part = s.anon().get(&url).header("range", "bytes=10-19").send().await.unwrap().bytes().await.unwrap();
    assert_eq!(part.as_ref(), &data[10..20]);
    // an ordinary client follows it; HEAD is answered here
    assert_eq!(sha256(&s.get(&format!("/v2/redir/app/blobs/{d}")).await.bytes().await.unwrap()), d);
    let r = no_follow.head(s.url(&format!("/v2/redir/app/blobs/{d}"))).send().await.unwrap();
    assert_eq!((r.status(), header(&r, "content-length")), (StatusCode::OK, Some("2000000")));
    // no URL for a repository that does not hold the blob
    let r = no_follow.get(s.url(&format!("/v2/redir/other/blobs/{d}"))).send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    // a real client pulls through the redirects
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    let host = s.host();
    for (src, dst) in [
        (format!("oci:{}:single", layout.display()), format!("docker://{host}/redir/img:v1")),
        (format!("docker://{host}/redir/img:v1"), format!("oci:{}:back", tmp.path().join("back").display())),
    ] {
        let out = tokio::process::Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", s.auth_file())
            .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", &src, &dst])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    s.stop().await;
}
