//! Real servers for Berth's tests, started by the tests themselves (never mocks).
//!
//! [`postgres_database`] gives each caller a fresh database on one PostgreSQL server per
//! test process: `initdb` + `pg_ctl` as the `postgres` user, on a private port, in a temp
//! dir. A watchdog shell stops the server and removes its files when the test process
//! exits, however it exits. Set `BERTH_TEST_PG_URL` to use an existing server instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The one PostgreSQL server of this test process: its admin URL (database `postgres`).
static PG_ADMIN_URL: OnceLock<String> = OnceLock::new();

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

fn start_server() -> String {
    if let Ok(url) = std::env::var("BERTH_TEST_PG_URL") {
        return url;
    }
    let dir = tempfile::Builder::new().prefix("berth-pg").tempdir_in("/tmp").expect("temp dir").keep();
    let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().expect("chown");
    assert!(st.success(), "chown the PostgreSQL dir to postgres (tests run as root)");
    let data = dir.join("data");
    let data_s = data.to_string_lossy().into_owned();
    as_postgres(
        &dir,
        "initdb",
        &["-D", &data_s, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"],
    );
    let port = free_port();
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c shared_buffers=32MB",
        dir.display()
    );
    let log = dir.join("log").to_string_lossy().into_owned();
    as_postgres(&dir, "pg_ctl", &["-D", &data_s, "-o", &opts, "-l", &log, "-w", "start"]);
    // Watchdog: stop the server and remove its files when this process is gone.
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; runuser -u postgres -- {pg_ctl} -D {data_s} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        pg_ctl = pg_bin("pg_ctl").display(),
        dir = dir.display()
    );
    // `setsid -f` forks the watchdog into its own session and returns at once.
    let st = Command::new("setsid")
        .args(["-f", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("watchdog");
    assert!(st.success(), "starting the PostgreSQL watchdog");
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// A URL to a new, empty database on this process's PostgreSQL server.
pub async fn postgres_database() -> String {
    let admin = PG_ADMIN_URL.get_or_init(start_server).clone();
    sqlx::any::install_default_drivers();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}
