//! Test support: start a real server, push content, build fixture images.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_config::{Config, Overrides};
use rand::RngCore;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The system administrator every test server is started with.
pub const ADMIN: &str = "admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "Berth-Test-Admin-1";

/// How long [`eventually`] keeps asking. CI machines are slow and busy; a condition that holds
/// returns at once, so the deadline only costs time when the test is failing.
pub const EVENTUALLY: Duration = Duration::from_secs(120);

/// Waits until `check` returns `Ok`, asking again every 50 ms growing to 500 ms, for up to
/// [`EVENTUALLY`]; returns its value. `Err` carries what `check` saw instead: the last one is
/// printed in the panic that names `what` (what was awaited) when time is up.
pub async fn eventually<T, E: std::fmt::Display>(what: &str, mut check: impl AsyncFnMut() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + EVENTUALLY;
    let mut pause = Duration::from_millis(50);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("{what}: not within {} s; last seen: {last}", EVENTUALLY.as_secs())
            }
            Err(_) => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(Duration::from_millis(500));
    }
}

/// `Basic` credentials header value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// A client that sends `user:password` as Basic credentials on every request.
pub fn client_as(user: &str, password: &str) -> Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, basic(user, password).parse().unwrap());
    Client::builder().danger_accept_invalid_certs(true).default_headers(h).build().unwrap()
}

/// A containers-auth.json (the `kubernetes.io/dockerconfigjson` format) for `host`.
pub fn auth_json(host: &str, user: &str, password: &str) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    json!({"auths": {host: {"auth": auth}}}).to_string()
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The seed of this run's random test data: `BERTH_TEST_SEED` to replay one, else new.
fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED
        .get_or_init(|| std::env::var("BERTH_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random))
}

thread_local! {
    static RNG: std::cell::RefCell<Option<rand::rngs::StdRng>> = const { std::cell::RefCell::new(None) };
}

/// A random generator for test data, seeded from [`seed`] and the test (thread) it runs in,
/// so a failing test's data can be made again; the seed is printed with the test's output.
pub fn with_rng<T>(f: impl FnOnce(&mut rand::rngs::StdRng) -> T) -> T {
    RNG.with(|cell| {
        let mut slot = cell.borrow_mut();
        let rng = slot.get_or_insert_with(|| {
            use rand::SeedableRng;
            let name = std::thread::current().name().unwrap_or("").to_owned();
            eprintln!("randomized test data: seed {} (BERTH_TEST_SEED={} replays it) in {name:?}", seed(), seed());
            let mix = name.bytes().fold(seed(), |h, b| h.rotate_left(5) ^ u64::from(b).wrapping_mul(0x100_0000_01b3));
            rand::rngs::StdRng::seed_from_u64(mix)
        });
        f(rng)
    })
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    with_rng(|r| r.fill_bytes(&mut v));
    v
}

/// Which storage a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Filesystem blobs + embedded SQLite (the default).
    Embedded,
    /// S3 blobs (SeaweedFS) + PostgreSQL metadata, both real servers.
    S3Postgres,
}

/// A Berth server running inside the test process, with its own data directory.
pub struct TestServer {
    /// `BERTH_…` variables that point the `berth` CLI at this server's metadata database.
    pub meta_env: Vec<(String, String)>,
    pub base: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
    /// The S3 key prefix of its blobs, on the S3 backend.
    pub s3_prefix: Option<String>,
    /// The ECR API's own listener (`[ecr] listen`), when configured.
    pub ecr_base: Option<String>,
    running: Option<berth::Running>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_on(b: Backend) -> TestServer {
        Self::start_on_with(b, |_| {}).await
    }

    pub async fn start_on_with(b: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        match b {
            Backend::Embedded => Self::start_with(tweak).await,
            Backend::S3Postgres => {
                let url = berth_test_support::postgres_database().await;
                let loc = berth_test_support::s3_location();
                Self::start_with(move |c| {
                    c.metadata =
                        berth_config::MetadataConfig::Postgres { url: berth_config::Secret::new(url), pool_size: 8 };
                    c.storage = berth_config::StorageConfig::S3(berth_config::S3Config {
                        endpoint: Some(loc.endpoint),
                        region: "us-east-1".into(),
                        bucket: loc.bucket,
                        prefix: loc.prefix,
                        access_key_id: Some(loc.access_key_id),
                        secret_access_key: Some(berth_config::Secret::new(loc.secret_access_key)),
                        path_style: true,
                        part_size: 5 * 1024 * 1024,
                    });
                    tweak(c);
                })
                .await
            }
        }
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap(), tweak).await
    }

    /// Stop, and start again on the same data directory with the default settings (on
    /// another port).
    pub async fn restart(mut self) -> TestServer {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(5)).await.unwrap();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Self::start_in(dir, |_| {}).await
    }

    async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let cli = Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().to_owned()),
            ..Default::default()
        };
        let mut cfg = Config::load(None, std::iter::empty(), &cli).unwrap();
        // The registry-core tests push into projects that do not exist yet, as the admin.
        cfg.admin_password = Some(berth_config::Secret::new(ADMIN_PASSWORD));
        cfg.auth.create_projects_on_push = true;
        tweak(&mut cfg);
        let meta_env = match &cfg.metadata {
            berth_config::MetadataConfig::Postgres { url, .. } => vec![
                ("BERTH_METADATA_BACKEND".to_owned(), "postgres".to_owned()),
                ("BERTH_METADATA_URL".to_owned(), url.expose().to_owned()),
            ],
            berth_config::MetadataConfig::Sqlite { path } => {
                vec![("BERTH_METADATA_PATH".to_owned(), path.display().to_string())]
            }
        };
        let running = berth::start(&cfg).await.unwrap();
        let scheme = if running.tls { "https" } else { "http" };
        let base = format!("{scheme}://{}", running.addr);
        let client = client_as(ADMIN, ADMIN_PASSWORD);
        let host = base.split("://").nth(1).unwrap().to_owned();
        std::fs::write(dir.path().join("auth.json"), auth_json(&host, ADMIN, ADMIN_PASSWORD)).unwrap();
        let s3_prefix = match &cfg.storage {
            berth_config::StorageConfig::S3(s3) => Some(s3.prefix.clone()),
            _ => None,
        };
        let ecr_base = running.ecr_addr.map(|a| format!("{scheme}://{a}"));
        TestServer { meta_env, base, client, dir, s3_prefix, ecr_base, running: Some(running) }
    }

    /// The helpers of a test server, for a `berth` already serving at `base` (a child
    /// process), as the admin. `meta_env` points the CLI at its metadata database.
    pub fn attach(base: &str, meta_env: Vec<(String, String)>) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let host = base.split("://").nth(1).unwrap().to_owned();
        std::fs::write(dir.path().join("auth.json"), auth_json(&host, ADMIN, ADMIN_PASSWORD)).unwrap();
        TestServer {
            meta_env,
            base: base.to_owned(),
            client: client_as(ADMIN, ADMIN_PASSWORD),
            dir,
            s3_prefix: None,
            ecr_base: None,
            running: None,
        }
    }

    /// A client without credentials.
    pub fn anon(&self) -> Client {
        Client::builder().danger_accept_invalid_certs(true).build().unwrap()
    }

    /// An auth file holding the admin's credentials for this server (REGISTRY_AUTH_FILE).
    pub fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    /// A management API call as the admin.
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Response {
        let mut r = self.client.request(method, self.url(&format!("/api/v2.0{path}")));
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    /// Create a project; returns its id.
    pub async fn project(&self, name: &str, public: bool) -> i64 {
        let body = json!({"project_name": name, "metadata": {"public": public.to_string()}});
        let r = self.api(reqwest::Method::POST, "/projects", Some(body)).await;
        assert_eq!(r.status(), StatusCode::CREATED, "create project {name}: {:?}", r.text().await);
        location(&r).rsplit('/').next().unwrap().parse().unwrap()
    }

    /// Create a user; returns its id.
    pub async fn user(&self, name: &str, password: &str) -> i64 {
        let body = json!({"username": name, "password": password, "email": format!("{name}@example.test")});
        let r = self.api(reqwest::Method::POST, "/users", Some(body)).await;
        assert_eq!(r.status(), StatusCode::CREATED, "create user {name}: {:?}", r.text().await);
        location(&r).rsplit('/').next().unwrap().parse().unwrap()
    }

    /// Make `user` a member of `project` with Harbor's role id.
    pub async fn member(&self, project: &str, user: &str, role_id: i64) {
        let body = json!({"role_id": role_id, "member_user": {"username": user}});
        let r = self.api(reqwest::Method::POST, &format!("/projects/{project}/members"), Some(body)).await;
        assert_eq!(r.status(), StatusCode::CREATED, "add {user} to {project}: {:?}", r.text().await);
    }

    /// Create a project robot with `(resource, action)` access; returns `(id, name, secret)`.
    pub async fn robot(
        &self,
        project: &str,
        name: &str,
        access: &[(&str, &str)],
        duration: i64,
    ) -> (i64, String, String) {
        let access: Vec<Value> = access.iter().map(|(r, a)| json!({"resource": r, "action": a})).collect();
        let body = json!({"name": name, "level": "project", "duration": duration,
                          "permissions": [{"kind": "project", "namespace": project, "access": access}]});
        let r = self.api(reqwest::Method::POST, "/robots", Some(body)).await;
        assert_eq!(r.status(), StatusCode::CREATED, "create robot {name}: {:?}", r.text().await);
        let v: Value = r.json().await.unwrap();
        (v["id"].as_i64().unwrap(), v["name"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
    }

    /// An auth file (the `.dockerconfigjson` of a Kubernetes pull secret) for `user`, or an
    /// empty one for `None` (anonymous).
    pub fn auth_file_for(&self, creds: Option<(&str, &str)>) -> PathBuf {
        let name = creds.map(|(u, _)| u.replace('$', "_")).unwrap_or_else(|| "anonymous".into());
        let path = self.dir.path().join(format!("auth-{name}-{}.json", hex::encode(random_bytes(4))));
        let text = match creds {
            Some((u, p)) => auth_json(&self.host(), u, p),
            None => "{}".into(),
        };
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn host(&self) -> String {
        self.base.split("://").nth(1).unwrap().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{}", self.base, path) }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn head(&self, path: &str) -> Response {
        self.client.head(self.url(path)).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client.delete(self.url(path)).send().await.unwrap()
    }

    /// POST + PUT monolithic upload; returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self.client.post(self.url(&format!("/v2/{repo}/blobs/uploads/"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "start upload in {repo}");
        let loc = location(&r);
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .client
            .put(self.url(&format!("{loc}{sep}digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "complete upload: {:?}", r.text().await);
        digest
    }

    /// PUT a manifest; returns the response.
    pub async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Response {
        self.client
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Push a small image (config + one layer) and tag it; returns the manifest bytes.
    pub async fn push_image(&self, repo: &str, tag: &str) -> Vec<u8> {
        let manifest = self.upload_image_blobs(repo, 1000).await;
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        manifest
    }

    /// Upload a config and a random layer, and return a manifest referencing them.
    pub async fn upload_image_blobs(&self, repo: &str, layer_size: usize) -> Vec<u8> {
        let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "nonce": hex::encode(random_bytes(8))}).to_string();
        let layer = random_bytes(layer_size);
        let cd = self.push_blob(repo, config.as_bytes()).await;
        let ld = self.push_blob(repo, &layer).await;
        image_manifest(&cd, config.len(), &[(ld, layer.len())], None)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(5)).await.unwrap();
        }
    }
}

/// Environment for podman and buildah: private vfs storage and config under `dir` (never
/// /var/lib/containers), with `auth` as the auth file.
pub fn containers_env(dir: &Path, auth: &Path) -> Vec<(String, PathBuf)> {
    let pm = dir.join(format!("pm-{}", hex::encode(random_bytes(4))));
    std::fs::create_dir_all(pm.join("tmp")).unwrap();
    std::fs::write(
        pm.join("storage.conf"),
        format!("[storage]\ndriver = \"vfs\"\nrunroot = \"{0}/run\"\ngraphroot = \"{0}/root\"\n", pm.display()),
    )
    .unwrap();
    std::fs::write(
        pm.join("containers.conf"),
        format!("[engine]\ntmp_dir = \"{}/tmp\"\nevents_logger = \"none\"\n", pm.display()),
    )
    .unwrap();
    vec![
        ("CONTAINERS_STORAGE_CONF".into(), pm.join("storage.conf")),
        ("CONTAINERS_CONF".into(), pm.join("containers.conf")),
        ("REGISTRY_AUTH_FILE".into(), auth.to_owned()),
    ]
}

/// A real Debian minbase image from debootstrap, cached in /var/cache/berth-test between runs
/// (about a minute to build when the cache is cold).
pub async fn debian_layout() -> PathBuf {
    // Built once per test process, whichever test asks first.
    static BUILT: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    BUILT.get_or_init(build_debian_layout).await.clone()
}

async fn build_debian_layout() -> PathBuf {
    let cache = PathBuf::from("/var/cache/berth-test/debian-minbase");
    if cache.join("index.json").exists() {
        return cache;
    }
    let work = tempfile::Builder::new().prefix("deb").tempdir_in("/var/tmp").unwrap();
    let rootfs = work.path().join("rootfs");
    run_ok(
        tokio::process::Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&rootfs)
            .arg("http://deb.debian.org/debian"),
    )
    .await;
    run_ok(tokio::process::Command::new("sh").arg("-c").arg(format!(
        "rm -rf {r}/var/cache/apt/archives/*.deb {r}/var/lib/apt/lists/* {r}/var/log/* && find {r}/dev -mindepth 1 -delete",
        r = rootfs.display()
    )))
    .await;
    let staging = work.path().join("layout");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mkoci.sh");
    run_ok(tokio::process::Command::new("bash").arg(script).arg(&rootfs).arg(&staging).arg("bookworm")).await;
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&cache);
    std::fs::rename(&staging, &cache).unwrap();
    cache
}

/// Run a command; panic with its output unless it succeeds. Returns stdout.
pub async fn run_ok(cmd: &mut tokio::process::Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output()).await.expect("command timed out").unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command that must fail; returns its stderr.
pub async fn run_fails(cmd: &mut tokio::process::Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output()).await.expect("command timed out").unwrap();
    assert!(!out.status.success(), "{cmd:?} should have failed; stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn location(r: &Response) -> String {
    r.headers().get("location").expect("Location header").to_str().unwrap().to_owned()
}

pub fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn image_manifest(
    config: &str,
    config_size: usize,
    layers: &[(String, usize)],
    subject: Option<(&str, usize)>,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_size},
        "layers": layers.iter().map(|(d, s)| json!({"mediaType": OCI_LAYER, "digest": d, "size": s})).collect::<Vec<_>>(),
    });
    if let Some((d, s)) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": d, "size": s});
    }
    serde_json::to_vec_pretty(&m).unwrap()
}

/// Assert an OCI error body with `code` and the HTTP `status`; returns the body.
pub async fn expect_error(r: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status, "status for expected {code}");
    let ct = header(&r, "content-type").unwrap_or("").to_owned();
    let body: Value = r.json().await.unwrap();
    assert!(ct.starts_with("application/json"), "error content type {ct}");
    assert_eq!(body["errors"][0]["code"], code, "body: {body}");
    assert!(body["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "message present: {body}");
    body
}

/// Make an OCI image layout directory with one single-platform image (`single`) and a
/// two-platform index (`multi`), from layers generated here. Returns the directory.
pub fn make_oci_layout(dir: &Path) -> PathBuf {
    let root = dir.join("layout");
    let blobs = root.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write = |data: &[u8]| -> (String, usize) {
        let d = sha256(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        (d, data.len())
    };
    let mut manifests = Vec::new();
    let mut platform_manifests = Vec::new();
    for (arch, name) in [("amd64", "single"), ("amd64", "m1"), ("arm64", "m2")] {
        let layer = targz(&[
            (format!("etc/{name}-release"), format!("berth test {arch} {name}\n").into_bytes()),
            ("bin/data".into(), random_bytes(50_000)),
        ]);
        let diff_id = sha256(&gunzip(&layer));
        let (ld, ls) = write(&layer);
        let config = json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "config": {"Cmd": ["/bin/sh"]}}).to_string();
        let (cd, cs) = write(config.as_bytes());
        let m = image_manifest(&cd, cs, &[(ld, ls)], None);
        let (md, ms) = write(&m);
        if name == "single" {
            manifests.push(json!({"mediaType": OCI_MANIFEST, "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "single"}}));
        } else {
            platform_manifests.push(json!({"mediaType": OCI_MANIFEST, "digest": md, "size": ms, "platform": {"architecture": arch, "os": "linux"}}));
        }
    }
    let index =
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": platform_manifests}))
            .unwrap();
    let (id, is) = write(&index);
    manifests.push(json!({"mediaType": OCI_INDEX, "digest": id, "size": is, "annotations": {"org.opencontainers.image.ref.name": "multi"}}));
    std::fs::write(root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        root.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    )
    .unwrap();
    root
}

/// The digest of the image named `name` in an OCI layout's `index.json`.
pub fn layout_digest(layout: &Path, name: &str) -> String {
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name);
    m.unwrap_or_else(|| panic!("no image {name:?} in {}", layout.display()))["digest"].as_str().unwrap().to_owned()
}

pub fn targz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(enc);
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        t.append_data(&mut h, path, &data[..]).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}
