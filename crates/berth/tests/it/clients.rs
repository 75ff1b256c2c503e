//! Real clients against the real server: skopeo, podman, buildah, oras (Python), containerd's
//! `ctr`, Helm 4, and a Debian image made with debootstrap. `.ci/install.sh` installs them.
//! Exact invocations and their traps are in `docs/clients.md`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::support::*;

/// Run a command; panic with its output when it fails. Returns stdout.
async fn run(cmd: &mut Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output()).await.expect("client timed out").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// skopeo with the admin's credentials for `s` (through REGISTRY_AUTH_FILE).
fn skopeo(s: &TestServer) -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy").env("REGISTRY_AUTH_FILE", s.auth_file());
    c
}

fn raw_digest(raw: &str) -> String {
    sha256(raw.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_images_and_indexes_both_ways() {
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let layout = make_oci_layout(tmp.path());
    let host = s.host();
    // single image in, inspect, back out: same digest
    run(skopeo(&s)
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:single", layout.display()))
        .arg(format!("docker://{host}/sk/app:v1")))
    .await;
    let raw =
        run(skopeo(&s).args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{host}/sk/app:v1")))
            .await;
    assert_eq!(raw_digest(&raw), layout_digest(&layout, "single"), "manifest bytes identical after push");
    let info: Value = serde_json::from_str(
        &run(skopeo(&s).args(["inspect", "--tls-verify=false"]).arg(format!("docker://{host}/sk/app:v1"))).await,
    )
    .unwrap();
    assert_eq!(info["Architecture"], "amd64");
    let back = tmp.path().join("back");
    run(skopeo(&s)
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/sk/app:v1"))
        .arg(format!("oci:{}:v1", back.display())))
    .await;
    assert_eq!(layout_digest(&back, "v1"), layout_digest(&layout, "single"));
    // multi-arch index with --all, both ways
    run(skopeo(&s)
        .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{host}/sk/multi:latest")))
    .await;
    let raw = run(skopeo(&s)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/sk/multi:latest")))
    .await;
    assert_eq!(raw_digest(&raw), layout_digest(&layout, "multi"), "index digest preserved");
    let arm: Value = serde_json::from_str(
        &run(skopeo(&s)
            .args(["inspect", "--tls-verify=false", "--override-arch", "arm64"])
            .arg(format!("docker://{host}/sk/multi:latest")))
        .await,
    )
    .unwrap();
    assert_eq!(arm["Architecture"], "arm64");
    let mback = tmp.path().join("mback");
    run(skopeo(&s)
        .args(["copy", "-q", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/sk/multi:latest"))
        .arg(format!("oci:{}:m", mback.display())))
    .await;
    assert_eq!(layout_digest(&mback, "m"), layout_digest(&layout, "multi"));
    // tags and delete
    run(skopeo(&s)
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:single", layout.display()))
        .arg(format!("docker://{host}/sk/app:v2")))
    .await;
    let tags: Value = serde_json::from_str(
        &run(skopeo(&s).args(["list-tags", "--tls-verify=false"]).arg(format!("docker://{host}/sk/app"))).await,
    )
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1", "v2"]));
    run(skopeo(&s).args(["delete", "--tls-verify=false"]).arg(format!("docker://{host}/sk/app:v1"))).await;
    assert_eq!(s.get("/v2/sk/app/manifests/v2").await.status(), 404, "delete by digest removes every tag on it");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_and_buildah_push_and_pull() {
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let env = containers_env(tmp.path(), &s.auth_file());
    let host = s.host();
    let layout = make_oci_layout(tmp.path());
    run(skopeo(&s)
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:single", layout.display()))
        .arg(format!("docker://{host}/pm/base:1")))
    .await;
    let podman = || {
        let mut c = Command::new("podman");
        c.envs(env.clone());
        c
    };
    run(podman().args(["pull", "-q", "--tls-verify=false"]).arg(format!("{host}/pm/base:1"))).await;
    run(podman().arg("tag").arg(format!("{host}/pm/base:1")).arg(format!("{host}/pm/copy:2"))).await;
    run(podman().args(["push", "-q", "--tls-verify=false"]).arg(format!("{host}/pm/copy:2"))).await;
    let r = s
        .client
        .get(s.url("/v2/pm/copy/manifests/2"))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/v2/pm/copy/blobs/{layer}")).await.status(),
        200,
        "podman's layer is in the new repository"
    );

    // buildah: a fresh image from scratch
    let payload = tmp.path().join("payload.txt");
    let text = format!("built by buildah {}\n", hex::encode(random_bytes(8)));
    std::fs::write(&payload, &text).unwrap();
    let buildah = || {
        let mut c = Command::new("buildah");
        c.envs(env.clone());
        c
    };
    run(buildah().args(["from", "--name", "bx", "scratch"])).await;
    run(buildah().args(["add", "bx"]).arg(&payload).arg("/payload.txt")).await;
    run(buildah().args(["config", "--arch", "amd64", "--os", "linux", "--cmd", "[\"/payload.txt\"]", "bx"])).await;
    run(buildah().args(["commit", "-q", "bx", "localhost/bx:1"])).await;
    run(buildah()
        .args(["push", "-q", "--tls-verify=false", "localhost/bx:1"])
        .arg(format!("docker://{host}/pm/buildah:1")))
    .await;
    run(buildah().args(["rm", "bx"])).await;
    let r = s
        .client
        .get(s.url("/v2/pm/buildah/manifests/1"))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let blob = s.get(&format!("/v2/pm/buildah/blobs/{layer}")).await.bytes().await.unwrap();
    let mut tar_bytes = blob.to_vec();
    if blob.starts_with(&[0x1f, 0x8b]) {
        tar_bytes = gunzip(&blob);
    }
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let found = archive.entries().unwrap().flatten().any(|mut e| {
        use std::io::Read;
        let mut s = String::new();
        e.path().unwrap().to_string_lossy().ends_with("payload.txt") && e.read_to_string(&mut s).is_ok() && s == text
    });
    assert!(found, "the pushed layer holds the file buildah added");
    // and podman pulls what buildah pushed
    run(podman().args(["pull", "-q", "--tls-verify=false"]).arg(format!("{host}/pm/buildah:1"))).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oras_pushes_artifacts_and_referrers() {
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let host = s.host();
    let payload = random_bytes(300_000);
    std::fs::write(tmp.path().join("data.bin"), &payload).unwrap();
    let script = format!(
        r#"
import hashlib, json, requests, oras.client, oras.oci
R = "{host}"
AUTH = ("{ADMIN}", "{ADMIN_PASSWORD}")
# oras-py's token backend keeps a pull token after a 401 asking for push: use Basic.
c = oras.client.OrasClient(hostname=R, insecure=True, auth_backend="basic")
c.login(username=AUTH[0], password=AUTH[1], hostname=R, tls_verify=False)
r = c.push(target=f"{{R}}/art/thing:v1", files=["data.bin:application/vnd.berth.test.layer.v1"])
assert r.status_code == 201, r.status_code
r = c.push(target=f"{{R}}/art/thing:chunked", files=["data.bin:application/vnd.berth.test.layer.v1"], do_chunked=True, chunk_size=65536)
assert r.status_code == 201, r.status_code
files = c.pull(target=f"{{R}}/art/thing:v1", outdir="out")
assert open(files[0], "rb").read() == open("data.bin", "rb").read()
assert "v1" in c.get_tags(f"{{R}}/art/thing")
resp = requests.get(f"http://{{R}}/v2/art/thing/manifests/v1", auth=AUTH, headers={{"Accept": "application/vnd.oci.image.manifest.v1+json"}})
subj = {{"mediaType": resp.headers["Content-Type"], "digest": resp.headers["Docker-Content-Digest"], "size": len(resp.content)}}
container = c.get_container(f"{{R}}/art/thing:sig")
open("empty.json", "wb").write(b"{{}}")
empty = {{"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:" + hashlib.sha256(b"{{}}").hexdigest(), "size": 2}}
c.upload_blob("empty.json", container, empty)
layer = oras.oci.NewLayer("data.bin", media_type="application/vnd.berth.sig.v1")
c.upload_blob("data.bin", container, layer)
m = {{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": "application/vnd.berth.sig.v1", "config": empty, "layers": [layer], "subject": subj}}
body = json.dumps(m).encode()
r = requests.put(f"http://{{R}}/v2/art/thing/manifests/sha256:" + hashlib.sha256(body).hexdigest(), auth=AUTH, data=body, headers={{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}})
assert r.status_code == 201, (r.status_code, r.text)
assert r.headers["OCI-Subject"] == subj["digest"]
ref = requests.get(f"http://{{R}}/v2/art/thing/referrers/" + subj["digest"] + "?artifactType=application/vnd.berth.sig.v1", auth=AUTH)
idx = ref.json()
assert ref.headers["OCI-Filters-Applied"] == "artifactType"
assert [d["artifactType"] for d in idx["manifests"]] == ["application/vnd.berth.sig.v1"], idx
assert c.delete_tag(f"{{R}}/art/thing", "chunked")
print("ORAS-OK", subj["digest"])
"#
    );
    let out = run(Command::new("python3").arg("-c").arg(&script).current_dir(tmp.path())).await;
    assert!(out.contains("ORAS-OK"), "{out}");
    let v: Value = s.get("/v2/art/thing/tags/list").await.json().await.unwrap();
    assert!(!v["tags"].as_array().unwrap().iter().any(|t| t == "chunked"));
    s.stop().await;
}

struct Containerd {
    child: tokio::process::Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    async fn start() -> Containerd {
        // short path: unix socket paths must stay under 108 bytes
        let dir = tempfile::Builder::new().prefix("ctd").tempdir_in("/tmp").unwrap();
        let d = dir.path().display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let sock = dir.path().join("c.sock");
        eventually("containerd to start", async || {
            match Command::new("ctr").arg("--address").arg(&sock).arg("version").output().await {
                Ok(o) if o.status.success() => Ok(()),
                Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        Containerd { child, sock, _dir: dir }
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.sock);
        c
    }

    /// `ctr images <verb>` with the admin's credentials.
    fn images(&self, verb: &str) -> Command {
        let mut c = self.ctr();
        c.args(["images", verb, "--user", &format!("{ADMIN}:{ADMIN_PASSWORD}")]);
        c
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_ctr_pulls_and_pushes() {
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let host = s.host();
    let layout = make_oci_layout(tmp.path());
    run(skopeo(&s)
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:single", layout.display()))
        .arg(format!("docker://{host}/ctr/app:v1")))
    .await;
    run(skopeo(&s)
        .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{host}/ctr/multi:latest")))
    .await;
    let c = Containerd::start().await;
    run(c.images("pull").args(["--plain-http", "--snapshotter", "native"]).arg(format!("{host}/ctr/app:v1"))).await;
    run(c.ctr().args(["images", "tag"]).arg(format!("{host}/ctr/app:v1")).arg(format!("{host}/ctr/pushed:v1"))).await;
    run(c.images("push").args(["--plain-http"]).arg(format!("{host}/ctr/pushed:v1"))).await;
    let r = s.head("/v2/ctr/pushed/manifests/v1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(layout_digest(&layout, "single").as_str()),
        "ctr pushes the same bytes"
    );
    run(c
        .images("pull")
        .args(["--plain-http", "--all-platforms", "--snapshotter", "native"])
        .arg(format!("{host}/ctr/multi:latest")))
    .await;
    c.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_pushes_pulls_and_shows_charts() {
    let s = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let host = s.host();
    let helm = || {
        let mut c = Command::new("helm");
        c.env("HELM_CONFIG_HOME", t.join("helm/config"))
            .env("HELM_CACHE_HOME", t.join("helm/cache"))
            .env("HELM_DATA_HOME", t.join("helm/data"));
        c
    };
    run(helm().args(["registry", "login", &host, "--username", ADMIN, "--password", ADMIN_PASSWORD, "--plain-http"]))
        .await;
    run(helm().arg("create").arg(t.join("berthchart"))).await;
    let chart_yaml = t.join("berthchart/Chart.yaml");
    let y = std::fs::read_to_string(&chart_yaml).unwrap();
    let y: String = y
        .lines()
        .map(|l| if l.starts_with("version:") { "version: 0.1.0+build.7".to_owned() } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&chart_yaml, y).unwrap();
    run(helm().arg("package").arg(t.join("berthchart")).arg("-d").arg(t)).await;
    run(helm()
        .arg("push")
        .arg(t.join("berthchart-0.1.0+build.7.tgz"))
        .arg(format!("oci://{host}/charts"))
        .arg("--plain-http"))
    .await;
    // '+' becomes '_' in the tag
    let r = s
        .client
        .get(s.url("/v2/charts/berthchart/manifests/0.1.0_build.7"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["config"]["mediaType"], "application/vnd.cncf.helm.config.v1+json");
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.cncf.helm.chart.content.v1.tar+gzip");
    let out = t.join("out");
    std::fs::create_dir_all(&out).unwrap();
    run(helm()
        .arg("pull")
        .arg(format!("oci://{host}/charts/berthchart"))
        .args(["--version", "0.1.0+build.7", "--plain-http", "-d"])
        .arg(&out))
    .await;
    let pulled = std::fs::read(out.join("berthchart-0.1.0+build.7.tgz")).unwrap();
    assert_eq!(pulled, std::fs::read(t.join("berthchart-0.1.0+build.7.tgz")).unwrap(), "chart bytes round-trip");
    let shown = run(helm().args(["show", "chart"]).arg(format!("oci://{host}/charts/berthchart")).args([
        "--version",
        "0.1.0+build.7",
        "--plain-http",
    ]))
    .await;
    assert!(shown.contains("name: berthchart"), "{shown}");
    // The portal's artifact page shows the chart: Chart.yaml's fields, values.yaml.
    let cookie = crate::portal::sign_in(&s, ADMIN, ADMIN_PASSWORD).await;
    let p: Value = s.api(reqwest::Method::GET, "/projects/charts", None).await.json().await.unwrap();
    let digest = crate::support::sha256(&run_bytes(&s, "charts/berthchart", "0.1.0_build.7").await);
    let page = crate::portal::client()
        .get(s.url(&format!(
            "/harbor/projects/{}/repositories/berthchart/artifacts-tab/artifacts/{digest}",
            p["project_id"]
        )))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Helm chart") && page.contains("<dd>0.1.0+build.7</dd>") && page.contains("<dd>berthchart</dd>"),
        "{page}"
    );
    assert!(page.contains("values.yaml") && page.contains("replicaCount"), "{page}");
    let page = crate::portal::client()
        .get(s.url(&format!("/harbor/projects/{}/repositories/berthchart/artifacts-tab", p["project_id"])))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("helm pull oci://{host}/charts/berthchart --version 0.1.0_build.7")), "{page}");
    s.stop().await;
}

/// The manifest bytes of `repo:tag`, as stored.
async fn run_bytes(s: &TestServer, repo: &str, tag: &str) -> Vec<u8> {
    s.client
        .get(s.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_minbase_image_round_trips_through_skopeo_and_containerd() {
    let layout = debian_layout().await;
    let s = TestServer::start().await;
    let host = s.host();
    run(skopeo(&s)
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bookworm", layout.display()))
        .arg(format!("docker://{host}/debian/minbase:bookworm")))
    .await;
    let raw = run(skopeo(&s)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/debian/minbase:bookworm")))
    .await;
    assert_eq!(raw_digest(&raw), layout_digest(&layout, "bookworm"));
    let c = Containerd::start().await;
    run(c
        .images("pull")
        .args(["--plain-http", "--snapshotter", "native"])
        .arg(format!("{host}/debian/minbase:bookworm")))
    .await;
    let list = run(c.ctr().args(["images", "ls", "-q"])).await;
    assert!(list.contains("debian/minbase:bookworm"), "{list}");
    c.stop().await;
    s.stop().await;
}
