//! Berth as an image (`deploy/Containerfile`, built by `scripts/image.sh` with buildah from
//! the binary under test): run by podman under an arbitrary UID of group 0 with a read-only
//! root filesystem, healthy by its HEALTHCHECK, pushed to and pulled from with skopeo; run
//! again by rootless podman (an unprivileged account with subordinate ids); then
//! the image itself pushed into a Berth that scans it and attaches its SBOM.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::*;

/// A command of the containers tools on a private vfs store under `dir`.
fn tool(dir: &Path, name: &str) -> Command {
    let mut c = Command::new(name);
    c.env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf")).env("REGISTRY_AUTH_FILE", dir.join("auth.json"));
    if name != "skopeo" {
        c.args(["--storage-driver", "vfs"]);
    }
    c
}

/// The unprivileged account the rootless run uses (created when missing, with subordinate
/// ids of its own, as a distribution's `useradd` would give it).
const ROOTLESS_USER: &str = "berth-rootless";

async fn rootless(d: &Path, tag: &str) {
    if run_fails_quietly(Command::new("id").arg(ROOTLESS_USER)).await {
        run_ok(Command::new("useradd").args(["-m", "-s", "/bin/sh", ROOTLESS_USER])).await;
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let now = std::fs::read_to_string(file).unwrap_or_default();
        if !now.lines().any(|l| l.starts_with(&format!("{ROOTLESS_USER}:"))) {
            std::fs::write(file, format!("{now}{ROOTLESS_USER}:400000:65536\n")).unwrap();
        }
    }
    // The image as an archive the user can read.
    let share = tempfile::Builder::new().prefix("berth-rootless").tempdir_in("/tmp").unwrap();
    let archive = share.path().join("berth.tar");
    let store = format!("containers-storage:[vfs@{0}/graph+{0}/run]{tag}", d.display());
    run_ok(
        tool(d, "skopeo")
            .args(["--insecure-policy", "copy", "-q"])
            .arg(&store)
            .arg(format!("oci-archive:{}", archive.display())),
    )
    .await;
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(share.path())).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let name = format!("berth-rootless-{port}");
    // Rootless podman: its runtime directory, vfs storage; crun cannot drive this machine's
    // hybrid cgroups, runc can.
    let script = format!(
        "set -e; export XDG_RUNTIME_DIR=/tmp/berth-rootless-run-$(id -u); mkdir -p \"$XDG_RUNTIME_DIR\"; cd ~; \
         p='podman --storage-driver vfs'; $p info --format '{{{{.Host.Security.Rootless}}}}'; \
         id=$($p load -q -i {archive} | sed 's/.*sha256://'); \
         $p run -d --name {name} --runtime runc --network host --read-only --user 12345:0 --cgroup-manager cgroupfs \
           --ulimit nofile=1024:1024 -e BERTH_LISTEN=127.0.0.1:{port} -e BERTH_ADMIN_PASSWORD={ADMIN_PASSWORD} $id >/dev/null",
        archive = archive.display()
    );
    // "Where the machine allows": a machine without user namespaces for unprivileged users
    // cannot run rootless containers at all; that, and only that, is said and not failed.
    let probe = "export XDG_RUNTIME_DIR=/tmp/berth-rootless-run-$(id -u); mkdir -p \"$XDG_RUNTIME_DIR\"; cd ~; \
                 podman --storage-driver vfs info --format '{{.Host.Security.Rootless}}'";
    let info = Command::new("runuser").args(["-u", ROOTLESS_USER, "--", "sh", "-c", probe]).output().await.unwrap();
    if !info.status.success() {
        let why = String::from_utf8_lossy(&info.stderr);
        assert!(why.contains("namespace") || why.contains("newuidmap"), "rootless podman failed otherwise: {why}");
        println!("rootless podman is not possible on this machine (no user namespaces): {why}");
        return;
    }
    let out = run_ok(Command::new("runuser").args(["-u", ROOTLESS_USER, "--", "sh", "-c", &script])).await;
    assert_eq!(out.lines().next(), Some("true"), "podman ran rootless: {out}");
    let base = format!("http://127.0.0.1:{port}");
    let served = eventually("the rootless Berth to serve", async || match reqwest::get(format!("{base}/v2/")).await {
        Ok(r) if r.status() == StatusCode::UNAUTHORIZED => Ok(()),
        Ok(r) => Err(r.status().to_string()),
        Err(e) => Err(e.to_string()),
    });
    tokio::time::timeout(Duration::from_secs(130), served).await.expect("served rootless");
    let r = client_as(ADMIN, ADMIN_PASSWORD)
        .post(format!("{base}/api/v2.0/projects"))
        .json(&json!({"project_name": "rootless"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "it writes its data directory");
    let stop = format!(
        "export XDG_RUNTIME_DIR=/tmp/berth-rootless-run-$(id -u); cd ~; podman --storage-driver vfs rm -f {name} >/dev/null"
    );
    run_ok(Command::new("runuser").args(["-u", ROOTLESS_USER, "--", "sh", "-c", &stop])).await;
}

/// Whether `cmd` fails (its output not shown).
async fn run_fails_quietly(cmd: &mut Command) -> bool {
    !cmd.output().await.map(|o| o.status.success()).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_runs_as_an_image_under_any_uid_and_scans_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("storage.conf"),
        format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n", d.display()),
    )
    .unwrap();
    std::fs::write(d.join("auth.json"), "{}").unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/image.sh");
    let tag = "localhost/berth:test";
    // The binary under test without its line tables, as scripts/dist.sh ships it: a test
    // build's binary is several times larger, and the image is copied about six times below.
    let bin = d.join("berth");
    run_ok(Command::new("strip").arg("--strip-debug").arg("-o").arg(&bin).arg(env!("CARGO_BIN_EXE_berth"))).await;
    let mut build = Command::new("bash");
    build
        .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
        .env("BUILDAH_FLAGS", "--storage-driver vfs")
        .arg(script)
        .arg(&bin)
        .arg(tag);
    run_ok(&mut build).await;
    let inspected = run_ok(tool(d, "buildah").args(["inspect", "--type", "image", tag])).await;
    let v: Value = serde_json::from_str(&inspected).unwrap();
    let config = &v["Docker"]["config"];
    assert_eq!(config["User"], "65532:0");
    assert_eq!(config["Healthcheck"]["Test"], json!(["CMD", "/usr/bin/berth", "healthcheck"]));
    assert_eq!(config["Entrypoint"], json!(["/usr/bin/berth"]));
    assert_eq!(config["Labels"]["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));

    // Run under an arbitrary UID of group 0, root filesystem read-only (as OpenShift does).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let name = format!("berth-image-test-{port}");
    run_ok(tool(d, "podman").args([
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--read-only",
        "--user",
        "12345:0",
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "-e",
        &format!("BERTH_LISTEN=127.0.0.1:{port}"),
        "-e",
        &format!("BERTH_ADMIN_PASSWORD={ADMIN_PASSWORD}"),
        tag,
    ]))
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let served =
        eventually("the containerised Berth to serve", async || match reqwest::get(format!("{base}/v2/")).await {
            Ok(r) if r.status() == StatusCode::UNAUTHORIZED => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        });
    tokio::time::timeout(Duration::from_secs(130), served).await.expect("served");
    run_ok(tool(d, "podman").args(["healthcheck", "run", &name])).await;

    // Push to it and pull back through it.
    let r = client_as(ADMIN, ADMIN_PASSWORD)
        .post(format!("{base}/api/v2.0/projects"))
        .json(&json!({"project_name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let layout = make_oci_layout(d);
    let creds = format!("{ADMIN}:{ADMIN_PASSWORD}");
    let dest = format!("docker://127.0.0.1:{port}/team/app:v1");
    run_ok(
        tool(d, "skopeo")
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false", "--dest-creds", &creds])
            .arg(format!("oci:{}:single", layout.display()))
            .arg(&dest),
    )
    .await;
    let pulled = d.join("pulled");
    run_ok(
        tool(d, "skopeo")
            .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false", "--src-creds", &creds])
            .arg(&dest)
            .arg(format!("oci:{}:v1", pulled.display())),
    )
    .await;
    assert!(pulled.join("index.json").exists());
    let _ = tool(d, "podman").args(["rm", "-f", &name]).output().await;

    // Rootless too: the same image run by an unprivileged user's podman (its own user
    // namespace, subordinate ids), under an arbitrary UID, read-only.
    rootless(d, tag).await;

    // The image, scanned by Berth itself, with its SBOM attached.
    let s = TestServer::start().await;
    s.project("tools", false).await;
    let meta = json!({"metadata": {"auto_scan": "true", "auto_sbom_generation": "true"}});
    assert_eq!(s.api(Method::PUT, "/projects/tools", Some(meta)).await.status(), StatusCode::OK);
    let store = format!("containers-storage:[vfs@{0}/graph+{0}/run]{tag}", d.display());
    run_ok(
        tool(d, "skopeo")
            .env("REGISTRY_AUTH_FILE", s.auth_file())
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .arg(&store)
            .arg(format!("docker://{}/tools/berth:test", s.host())),
    )
    .await;
    let art = crate::scan::scanned(&s, "tools", "berth", "test").await;
    let digest = art["digest"].as_str().unwrap().to_owned();
    let referrers = eventually("the SBOM to be attached", async || {
        let r: Value = s.get(&format!("/v2/tools/berth/referrers/{digest}")).await.json().await.unwrap();
        if r["manifests"].as_array().is_some_and(|m| !m.is_empty()) { Ok(r) } else { Err(r.to_string()) }
    })
    .await;
    assert!(referrers.to_string().contains("spdx") || referrers.to_string().contains("cyclonedx"), "{referrers}");
    s.stop().await;
}
