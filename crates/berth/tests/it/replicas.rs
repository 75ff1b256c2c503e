//! Several `berth serve` processes on one PostgreSQL and one S3 bucket behave as one
//! registry: pushes and pulls through different replicas, an upload continued across
//! replicas, concurrent writes of one tag, and a replica SIGKILLed during pushes.

use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::process::Command;

use crate::crash::spawn_berth_with;
use crate::support::*;

pub(crate) struct Cluster {
    replicas: Vec<(Child, String)>,
    pg_url: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub(crate) async fn start(n: usize) -> Cluster {
        let url = berth_test_support::postgres_database().await;
        let loc = berth_test_support::s3_location();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("berth.toml");
        std::fs::write(
            &config,
            format!(
                "[metadata]\nbackend = \"postgres\"\npool_size = 8\n\n[storage]\nbackend = \"s3\"\nendpoint = \"{}\"\nbucket = \"{}\"\nprefix = \"{}\"\npath_style = true\npart_size = \"5MiB\"\n",
                loc.endpoint, loc.bucket, loc.prefix
            ),
        )
        .unwrap();
        // Secrets through the environment, as an operator would pass them.
        let env = vec![
            ("BERTH_METADATA_URL".to_owned(), url.clone()),
            ("BERTH_STORAGE_ACCESS_KEY_ID".to_owned(), loc.access_key_id),
            ("BERTH_STORAGE_SECRET_ACCESS_KEY".to_owned(), loc.secret_access_key),
            // One key for every replica, as the README says (it seals upstream passwords).
            ("BERTH_SECRET_KEY_FILE".to_owned(), dir.path().join("secret.key").display().to_string()),
        ];
        let replicas =
            (0..n).map(|i| spawn_berth_with(&dir.path().join(format!("r{i}")), Some(&config), &env)).collect();
        Cluster { replicas, pg_url: url, _dir: dir }
    }

    /// An auth file with the admin's credentials for every replica.
    fn auth_file(&self) -> std::path::PathBuf {
        let mut auths = serde_json::Map::new();
        for i in 0..self.replicas.len() {
            let v: serde_json::Value = serde_json::from_str(&auth_json(&self.host(i), ADMIN, ADMIN_PASSWORD)).unwrap();
            auths.extend(v["auths"].as_object().unwrap().clone());
        }
        let path = self._dir.path().join("auth.json");
        std::fs::write(&path, serde_json::json!({ "auths": auths }).to_string()).unwrap();
        path
    }

    pub(crate) fn base(&self, i: usize) -> &str {
        &self.replicas[i].1
    }

    fn host(&self, i: usize) -> String {
        self.replicas[i].1.trim_start_matches("http://").to_owned()
    }

    fn kill(&mut self, i: usize) {
        self.replicas[i].0.kill().unwrap(); // SIGKILL
        self.replicas[i].0.wait().unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (c, _) in &mut self.replicas {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn skopeo(c: &Cluster, args: &[String]) -> String {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .env("REGISTRY_AUTH_FILE", c.auth_file())
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_postgres_and_s3_act_as_one_registry() {
    let mut c = Cluster::start(3).await;
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    let http = client_as(ADMIN, ADMIN_PASSWORD);

    // skopeo: push through replica 0, read through 1, index through 2, pull back through 0
    skopeo(
        &c,
        &[
            "copy".into(),
            "-q".into(),
            "--dest-tls-verify=false".into(),
            format!("oci:{}:single", layout.display()),
            format!("docker://{}/rep/app:v1", c.host(0)),
        ],
    )
    .await;
    let raw = skopeo(
        &c,
        &["inspect".into(), "--raw".into(), "--tls-verify=false".into(), format!("docker://{}/rep/app:v1", c.host(1))],
    )
    .await;
    assert_eq!(sha256(raw.as_bytes()), layout_digest(&layout, "single"));
    skopeo(
        &c,
        &[
            "copy".into(),
            "-q".into(),
            "--all".into(),
            "--dest-tls-verify=false".into(),
            format!("oci:{}:multi", layout.display()),
            format!("docker://{}/rep/multi:latest", c.host(2)),
        ],
    )
    .await;
    let back = tmp.path().join("back");
    skopeo(
        &c,
        &[
            "copy".into(),
            "-q".into(),
            "--all".into(),
            "--src-tls-verify=false".into(),
            format!("docker://{}/rep/multi:latest", c.host(0)),
            format!("oci:{}:m", back.display()),
        ],
    )
    .await;
    assert_eq!(layout_digest(&back, "m"), layout_digest(&layout, "multi"));

    // one upload: started on 0, continued on 1, finished on 2
    let data = random_bytes(12 * 1024 * 1024 + 5);
    let d = sha256(&data);
    let r = http.post(format!("{}/v2/rep/up/blobs/uploads/", c.base(0))).send().await.unwrap();
    let loc = location(&r);
    let half = data.len() / 2;
    let r = http
        .patch(format!("{}{loc}", c.base(0)))
        .header("content-range", format!("0-{}", half - 1))
        .body(data[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http.get(format!("{}{loc}", c.base(1))).send().await.unwrap();
    assert_eq!(header(&r, "range"), Some(format!("0-{}", half - 1).as_str()), "another replica sees the session");
    let r = http
        .patch(format!("{}{loc}", c.base(1)))
        .header("content-range", format!("{half}-{}", data.len() - 1))
        .body(data[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http.put(format!("{}{loc}?digest={d}", c.base(2))).send().await.unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let got = http.get(format!("{}/v2/rep/up/blobs/{d}", c.base(0))).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256(&got), d);

    // the same tag written concurrently through two replicas: one wins, all agree
    let base0 = c.base(0).to_owned();
    let s0 = ServerRef { base: base0.clone(), client: http.clone() };
    let m1 = s0.manifest_with_blobs("rep/race").await;
    let m2 = s0.manifest_with_blobs("rep/race").await;
    let (r1, r2) = tokio::join!(
        http.put(format!("{}/v2/rep/race/manifests/latest", c.base(1)))
            .header("content-type", OCI_MANIFEST)
            .body(m1.clone())
            .send(),
        http.put(format!("{}/v2/rep/race/manifests/latest", c.base(2)))
            .header("content-type", OCI_MANIFEST)
            .body(m2.clone())
            .send(),
    );
    assert_eq!(r1.unwrap().status(), 201);
    assert_eq!(r2.unwrap().status(), 201);
    let mut seen = Vec::new();
    for i in 0..3 {
        let r = http.head(format!("{}/v2/rep/race/manifests/latest", c.base(i))).send().await.unwrap();
        seen.push(header(&r, "docker-content-digest").unwrap().to_owned());
    }
    assert!(seen.iter().all(|d| d == &seen[0]), "replicas agree on the tag: {seen:?}");
    assert!(seen[0] == sha256(&m1) || seen[0] == sha256(&m2));

    // pushes round-robin over the replicas; replica 1 is killed half-way
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let bases: Vec<String> = (0..3).map(|i| c.base(i).to_owned()).collect();
    let mut tasks = Vec::new();
    for w in 0..3 {
        let (acked, bases, http) = (acked.clone(), bases.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..12 {
                let base = &bases[(w + i) % 3];
                let s = ServerRef { base: base.clone(), client: http.clone() };
                let Some(m) = s.try_manifest_with_blobs("rep/load").await else { continue };
                let tag = format!("w{w}-{i}");
                let Ok(r) = http
                    .put(format!("{base}/v2/rep/load/manifests/{tag}"))
                    .header("content-type", OCI_MANIFEST)
                    .body(m.clone())
                    .send()
                    .await
                else {
                    continue;
                };
                if r.status() == 201 {
                    acked.lock().unwrap().push((tag, sha256(&m)));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    c.kill(1);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 12, "most pushes were acknowledged: {}", acked.len());

    // A job held by a replica that died (its lease is never renewed) is finished by a survivor.
    {
        use berth_meta::{JobQueue, JobState, NewJob};
        let q = berth_meta::SqlMetaStore::open_postgres(&c.pg_url, 2).await.unwrap();
        let now = berth_jobs::now_ms();
        let not_yet = now + 500; // not due for the live workers before the dead one holds it
        let job = NewJob {
            kind: "upload-expiry".into(),
            payload: "{}".into(),
            dedup_key: None,
            max_attempts: 3,
            run_after: not_yet,
        };
        let id = q.enqueue(&job, now).await.unwrap().unwrap();
        // (The replicas' own scheduled expiry jobs may be claimed first; they get taken over too.)
        let mut held = false;
        for _ in 0..10 {
            match q.claim("upload-expiry", "dead-replica", not_yet, not_yet + 1_500, 100).await.unwrap() {
                Some(j) if j.id == id => {
                    held = true;
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        assert!(held, "the dead replica holds the job");
        let j = eventually("a surviving replica to finish the dead replica's job", async || {
            let j = q.job(&id).await.unwrap().unwrap();
            if j.state == JobState::Succeeded { Ok(j) } else { Err(format!("{j:?}")) }
        })
        .await;
        assert_eq!(j.attempts, 2, "taken over after the lease expired");
    }
    for survivor in [0, 2] {
        for (tag, d) in &acked {
            let r = http.get(format!("{}/v2/rep/load/manifests/{tag}", c.base(survivor))).send().await.unwrap();
            assert_eq!(r.status(), 200, "acknowledged {tag} is pullable from replica {survivor}");
            let bytes = r.bytes().await.unwrap();
            assert_eq!(&sha256(&bytes), d);
            let m: Value = serde_json::from_slice(&bytes).unwrap();
            for l in m["layers"].as_array().unwrap() {
                let ld = l["digest"].as_str().unwrap();
                let b = http
                    .get(format!("{}/v2/rep/load/blobs/{ld}", c.base(survivor)))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                assert_eq!(sha256(&b), ld, "layer bytes intact");
            }
        }
    }
}

/// A minimal client for a replica that is a child process.
struct ServerRef {
    base: String,
    client: Client,
}

impl ServerRef {
    async fn try_push_blob(&self, repo: &str, data: &[u8]) -> Option<String> {
        let d = sha256(data);
        let r = self
            .client
            .post(format!("{}/v2/{repo}/blobs/uploads/?digest={d}", self.base))
            .body(data.to_vec())
            .send()
            .await
            .ok()?;
        (r.status() == 201).then_some(d)
    }

    async fn try_manifest_with_blobs(&self, repo: &str) -> Option<Vec<u8>> {
        let config =
            format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":\"{}\"}}", hex::encode(random_bytes(8)));
        let layer = random_bytes(300_000);
        let cd = self.try_push_blob(repo, config.as_bytes()).await?;
        let ld = self.try_push_blob(repo, &layer).await?;
        Some(image_manifest(&cd, config.len(), &[(ld, layer.len())], None))
    }

    async fn manifest_with_blobs(&self, repo: &str) -> Vec<u8> {
        self.try_manifest_with_blobs(repo).await.expect("blobs pushed")
    }
}

/// Two replicas writing one upload session at once (on PostgreSQL + SeaweedFS): the second
/// is refused while the first writes, so the session's state object in S3 never mixes their
/// bytes; the session then holds exactly the first chunk and completes on either replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_chunks_of_one_upload_on_two_replicas_never_interleave() {
    let c = Cluster::start(2).await;
    let http = client_as(ADMIN, ADMIN_PASSWORD);
    let r = http.post(format!("{}/v2/race/app/blobs/uploads/", c.base(0))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let loc = location(&r);
    let data = random_bytes(24 * 4096);
    let pieces: Vec<bytes::Bytes> = data.chunks(4096).map(bytes::Bytes::copy_from_slice).collect();
    let slow = futures::stream::iter(pieces).then(|p| async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok::<_, std::io::Error>(p)
    });
    let first = {
        let (http, url) = (http.clone(), format!("{}{loc}", c.base(0)));
        tokio::spawn(async move {
            http.patch(url)
                .header("content-type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(slow))
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = http
        .patch(format!("{}{loc}", c.base(1)))
        .header("content-type", "application/octet-stream")
        .body(random_bytes(4096))
        .send()
        .await
        .unwrap();
    let e = expect_error(r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("another request"), "{e}");
    let r = first.await.unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let r = http.get(format!("{}{loc}", c.base(1))).send().await.unwrap();
    assert_eq!(header(&r, "range"), Some(format!("0-{}", data.len() - 1).as_str()));
    let d = sha256(&data);
    let r = http.put(format!("{}{loc}?digest={d}", c.base(1))).send().await.unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let back = http.get(format!("{}/v2/race/app/blobs/{d}", c.base(0))).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(back.as_ref(), &data[..]);
}
