//! Crash safety: a child `berth` is SIGKILLed in the middle of uploads and manifest writes,
//! restarted on the same data directory, and checked for exactly the promised guarantees:
//! everything acknowledged is there and correct; nothing partial or wrong is visible; an
//! interrupted upload is either resumable or cleanly `BLOB_UPLOAD_UNKNOWN`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::Client;
use serde_json::Value;

use crate::support::*;

/// Start `berth serve` on a free port; returns the child and its address (read from its JSON log).
pub fn spawn_berth(data: &Path) -> (Child, String) {
    spawn_berth_with(data, None, &[])
}

/// `spawn_berth` with a config file and extra environment.
pub fn spawn_berth_with(data: &Path, config: Option<&Path>, env: &[(String, String)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"]).arg(data);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    // As the in-process test servers: a known admin password, projects created on push.
    cmd.env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD).env("BERTH_AUTH_CREATE_PROJECTS_ON_PUSH", "true");
    let mut child = cmd.envs(env.iter().cloned()).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("berth exited before serving").unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "berth is serving"
        {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    // keep draining the log so the child never blocks on a full pipe
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, format!("http://{addr}"))
}

#[derive(Default)]
struct Acked {
    blobs: Vec<(String, String)>,             // (repo, digest)
    tags: HashMap<(String, String), String>,  // (repo, tag) -> manifest digest
    partial: Option<(String, String, usize)>, // (repo, upload location, acknowledged size)
}

async fn upload(client: &Client, base: &str, repo: &str, data: &[u8], chunked: bool) -> Option<String> {
    let d = sha256(data);
    let r = client.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.ok()?;
    let mut loc = location(&r);
    if chunked {
        let step = data.len() / 3 + 1;
        let mut off = 0;
        for part in data.chunks(step) {
            let r = client
                .patch(format!("{base}{loc}"))
                .header("content-range", format!("{off}-{}", off + part.len() - 1))
                .body(part.to_vec())
                .send()
                .await
                .ok()?;
            if r.status() != 202 {
                return None;
            }
            loc = location(&r);
            off += part.len();
        }
        let r = client.put(format!("{base}{loc}?digest={d}")).send().await.ok()?;
        (r.status() == 201).then_some(d)
    } else {
        let r = client.put(format!("{base}{loc}?digest={d}")).body(data.to_vec()).send().await.ok()?;
        (r.status() == 201).then_some(d)
    }
}

async fn workload(base: String, worker: usize, acked: Arc<Mutex<Acked>>) {
    let client = client_as(ADMIN, ADMIN_PASSWORD);
    let repo = format!("crash/w{worker}");
    for i in 0.. {
        let (size, chunked) = with_rng(|rng| (rng.gen_range(1_000..3_000_000), rng.gen_bool(0.5)));
        let layer = random_bytes(size);
        let Some(ld) = upload(&client, &base, &repo, &layer, chunked).await else { return };
        acked.lock().unwrap().blobs.push((repo.clone(), ld.clone()));
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":\"{worker}-{i}\"}}");
        let Some(cd) = upload(&client, &base, &repo, config.as_bytes(), false).await else { return };
        acked.lock().unwrap().blobs.push((repo.clone(), cd.clone()));
        let m = image_manifest(&cd, config.len(), &[(ld, layer.len())], None);
        let tag = format!("t{i}");
        let Ok(r) = client
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(m.clone())
            .send()
            .await
        else {
            return;
        };
        if r.status() != 201 {
            return;
        }
        acked.lock().unwrap().tags.insert((repo.clone(), tag), sha256(&m));
        if worker == 0 && i == 0 {
            // leave one upload half-done, acknowledged up to some bytes
            let Ok(r) = client.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await else { return };
            let loc = location(&r);
            let Ok(r) = client.patch(format!("{base}{loc}")).body(vec![42u8; 100_000]).send().await else { return };
            if r.status() == 202 {
                acked.lock().unwrap().partial = Some((repo.clone(), location(&r), 100_000));
            }
        }
    }
}

async fn verify(base: &str, data: &Path, acked: &Acked) {
    let client = client_as(ADMIN, ADMIN_PASSWORD);
    for (repo, d) in &acked.blobs {
        let r = client.get(format!("{base}/v2/{repo}/blobs/{d}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged blob {d} in {repo} is served");
        assert_eq!(&sha256(&r.bytes().await.unwrap()), d, "acknowledged blob {d} has the right bytes");
    }
    for ((repo, tag), d) in &acked.tags {
        let r = client.get(format!("{base}/v2/{repo}/manifests/{tag}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged tag {repo}:{tag}");
        let bytes = r.bytes().await.unwrap();
        let body = sha256(&bytes);
        // A later push may have moved nothing: tags are unique per push in this workload.
        assert_eq!(&body, d, "acknowledged tag {repo}:{tag} points at its manifest");
    }
    // Everything visible is whole: every tag's manifest and every blob it references.
    let cat: Value = client.get(format!("{base}/v2/_catalog")).send().await.unwrap().json().await.unwrap();
    for repo in cat["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let r = client.get(format!("{base}/v2/{repo}/tags/list")).send().await.unwrap();
        if r.status() == 404 {
            continue;
        }
        let tags: Value = r.json().await.unwrap();
        for tag in tags["tags"].as_array().unwrap() {
            let r = client.get(format!("{base}/v2/{repo}/manifests/{}", tag.as_str().unwrap())).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let digest = header(&r, "docker-content-digest").unwrap().to_owned();
            let bytes = r.bytes().await.unwrap();
            assert_eq!(sha256(&bytes), digest, "visible manifest bytes match their digest");
            let m: Value = serde_json::from_slice(&bytes).unwrap();
            let mut refs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
            refs.extend(m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_owned()));
            for d in refs {
                let r = client.get(format!("{base}/v2/{repo}/blobs/{d}")).send().await.unwrap();
                assert_eq!(r.status(), 200, "blob {d} referenced by a visible manifest");
                assert_eq!(sha256(&r.bytes().await.unwrap()), d);
            }
        }
    }
    // No stored blob file holds bytes other than its name says.
    let root = data.join("blobs/blobs/sha256");
    for shard in std::fs::read_dir(&root).unwrap().flatten() {
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let bytes = std::fs::read(f.path()).unwrap();
            assert_eq!(sha256(&bytes)[7..], *f.file_name().to_str().unwrap(), "blob file {:?} is whole", f.path());
        }
    }
    // The interrupted upload resumes, or is cleanly unknown.
    if let Some((repo, loc, size)) = &acked.partial {
        let r = client.get(format!("{base}{loc}")).send().await.unwrap();
        if r.status() == 204 {
            let range = header(&r, "range").unwrap().to_owned();
            let have: usize = range.split('-').nth(1).unwrap().parse::<usize>().unwrap() + 1;
            assert!(have >= *size, "acknowledged upload bytes survive: {have} < {size}");
            let mut data = vec![42u8; have];
            data.extend_from_slice(b"tail");
            let d = sha256(&data);
            let r = client.put(format!("{base}{loc}?digest={d}")).body(b"tail".to_vec()).send().await.unwrap();
            assert_eq!(r.status(), 201, "resumed upload completes");
            let r = client.get(format!("{base}/v2/{repo}/blobs/{d}")).send().await.unwrap();
            assert_eq!(sha256(&r.bytes().await.unwrap()), d);
        } else {
            let body = r.text().await.unwrap();
            assert!(body.contains("BLOB_UPLOAD_UNKNOWN"), "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_pushes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut all = Acked::default();
    for round in 0..3 {
        let (mut child, base) = spawn_berth(&data);
        let acked = Arc::new(Mutex::new(Acked::default()));
        let workers: Vec<_> =
            (0..4).map(|w| tokio::spawn(workload(base.clone(), w + round * 10, acked.clone()))).collect();
        let wait = with_rng(|r| r.gen_range(400..1500));
        tokio::time::sleep(Duration::from_millis(wait)).await;
        // On a slow machine the pause may end before anything was acknowledged: the kill
        // still comes in the middle of the workload, but not before it made progress.
        eventually("the workload to tag an image", async || {
            let tags = acked.lock().unwrap().tags.len();
            if tags > 0 { Ok(()) } else { Err(format!("{tags} tags acknowledged")) }
        })
        .await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
        }
        let round_acked = std::mem::take(&mut *acked.lock().unwrap());
        all.blobs.extend(round_acked.blobs);
        all.tags.extend(round_acked.tags);
        all.partial = round_acked.partial.or(all.partial.take());
        assert!(!all.tags.is_empty() || round < 2, "the workload made progress before the kill");
        let (mut child, base) = spawn_berth(&data);
        verify(&base, &data, &all).await;
        all.partial = None;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(all.blobs.len() > 4, "enough work was acknowledged to mean something: {}", all.blobs.len());
}
