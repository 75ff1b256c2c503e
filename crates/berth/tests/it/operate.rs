//! Operating the binary: the first start and its admin password, `BERTH_ADMIN_PASSWORD` until
//! the admin first signs in, `berth admin reset-password`, offline commands that refuse to
//! invent an empty database, and client variables that do not stop a server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;

use crate::support::*;

/// `berth` with only the environment given (and PATH).
fn berth(env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).envs(env.iter().copied());
    c
}

/// Start `berth serve` on `data`; the child, its URL and what it wrote to stderr before
/// serving — or `Err(stderr)` when it exited instead.
fn serve(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<(Child, String, String), String> {
    let mut child = berth(env)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
        .arg(data)
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.wait();
            return Err(seen);
        };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["message"] == "berth is serving"
        {
            let addr = v["addr"].as_str().unwrap().to_owned();
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return Ok((child, format!("http://{addr}"), seen));
        }
        seen.push_str(&line);
        seen.push('\n');
    }
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// The generated password a first start printed.
fn printed_password(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines().skip_while(|l| !l.contains("created the system administrator `admin`"));
    lines.next()?;
    lines.map(str::trim).find(|l| !l.is_empty()).map(str::to_owned)
}

async fn signs_in(base: &str, password: &str) -> bool {
    let r = client_as(ADMIN, password).get(format!("{base}/api/v2.0/users/current")).send().await.unwrap();
    r.status() == StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_prints_the_admin_password_only_once_it_can_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A certificate that does not load: the start fails, and no password was printed (nor
    // an admin created with it).
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let tls = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let failed = serve(&data, &tls, &[]).expect_err("a start with a broken certificate fails");
    assert!(printed_password(&failed).is_none(), "{failed}");
    assert!(failed.contains("TLS"), "it says why: {failed}");
    // The client variables the README tells users to export do not stop a server.
    let client_env = [("BERTH_URL", "http://127.0.0.1:5000"), ("BERTH_USERNAME", "admin"), ("BERTH_PASSWORD", "x")];
    let (child, base, stderr) = serve(&data, &[], &client_env).unwrap();
    let generated = printed_password(&stderr).unwrap_or_else(|| panic!("{stderr}"));
    assert!(signs_in(&base, &generated).await);
    assert!(stderr.contains("external_url is not set"), "the start warns: {stderr}");
    stop(child);
    // Started again with BERTH_ADMIN_PASSWORD: the admin never signed in… but did just now,
    // so the variable no longer applies, and nothing is printed again.
    let (child, base, stderr) = serve(&data, &[], &[("BERTH_ADMIN_PASSWORD", "Chosen-Passw0rd-1")]).unwrap();
    assert!(printed_password(&stderr).is_none(), "{stderr}");
    assert!(signs_in(&base, &generated).await);
    assert!(!signs_in(&base, "Chosen-Passw0rd-1").await);
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_admin_password_applies_until_the_admin_first_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, _, stderr) = serve(&data, &[], &[]).unwrap();
    let lost = printed_password(&stderr).unwrap();
    stop(child);
    // The terminal with the password is gone; nobody signed in: the variable sets it.
    let (child, base, _) = serve(&data, &[], &[("BERTH_ADMIN_PASSWORD", "Chosen-Passw0rd-1")]).unwrap();
    assert!(!signs_in(&base, &lost).await);
    assert!(signs_in(&base, "Chosen-Passw0rd-1").await);
    stop(child);
    // Signed in once: another value changes nothing.
    let (child, base, _) = serve(&data, &[], &[("BERTH_ADMIN_PASSWORD", "Other-Passw0rd-2")]).unwrap();
    assert!(signs_in(&base, "Chosen-Passw0rd-1").await);
    assert!(!signs_in(&base, "Other-Passw0rd-2").await);
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_password_is_reset_offline_and_offline_commands_never_invent_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Nothing there yet: refused, with the place named, and nothing created.
    for args in
        [vec!["jobs", "list"], vec!["events", "list"], vec!["admin", "reset-password"], vec!["token-key", "rotate"]]
    {
        let out = berth(&[]).args(&args).arg("--data-dir").arg(&data).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains("there is no metadata database at") && err.contains("berth migrate"), "{args:?}: {err}");
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    let out = berth(&[]).args(["migrate", "--data-dir"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("created the SQLite database"));
    let out = berth(&[]).args(["migrate", "--data-dir"]).arg(&data).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("is up to date"));
    // Offline listings speak text, JSON and YAML; another format is an error.
    let out = berth(&[]).args(["events", "consumers", "--output", "yaml", "--data-dir"]).arg(&data).output().unwrap();
    let yaml: serde_json::Value = serde_norway::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert!(yaml["last_seq"].is_i64(), "{yaml}");
    let out = berth(&[]).args(["jobs", "list", "--output", "xml", "--data-dir"]).arg(&data).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use text, json or yaml"));

    let (child, base, _) = serve(&data, &[], &[("BERTH_ADMIN_PASSWORD", "First-Passw0rd-1")]).unwrap();
    assert!(signs_in(&base, "First-Passw0rd-1").await);
    // Reset while it runs: generated and printed; the server takes it.
    let out = berth(&[]).args(["admin", "reset-password", "--data-dir"]).arg(&data).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("berth: using the SQLite database"), "it says which database: {stderr}");
    let fresh = stdout.lines().next().and_then(|l| l.strip_prefix("new password of admin: ")).unwrap().to_owned();
    // The running server sees the change through the event log within moments: the new
    // password is taken, the old one (remembered for up to a few seconds) no longer.
    eventually("the running server takes the new password and refuses the old one", async || {
        if !signs_in(&base, &fresh).await {
            Err("the new password is refused")
        } else if signs_in(&base, "First-Passw0rd-1").await {
            Err("the old password is still taken")
        } else {
            Ok(())
        }
    })
    .await;
    // From stdin, checked like any password; an unknown user is named.
    let mut c = berth(&[]);
    c.args(["admin", "reset-password", "--password-stdin", "--data-dir"]).arg(&data);
    let weak = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = feed(weak, "short\n");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("password"));
    let out = berth(&[]).args(["admin", "reset-password", "--username", "nobody", "--data-dir"]).arg(&data).output();
    let err = String::from_utf8_lossy(&out.unwrap().stderr).into_owned();
    assert!(err.contains("there is no user named \"nobody\""), "{err}");
    stop(child);
}

fn feed(mut child: Child, input: &str) -> std::process::Output {
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `berth config check`: every setting with its source, secrets redacted, as TOML or JSON;
/// TLS files that do not belong together, sizes that overflow and unknown formats are errors.
#[test]
fn config_check_shows_the_effective_settings_and_checks_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:5001\"\nadmin_token = \"s3cret-token\"\n").unwrap();
    let out = berth(&[("BERTH_AUTH_SERVICE", "reg")]).args(["config", "check"]).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("listen = \"127.0.0.1:5001\"  # file {}", file.display())), "{text}");
    assert!(text.contains("service = \"reg\"  # env BERTH_AUTH_SERVICE"), "{text}");
    assert!(text.contains("admin_token = \"<redacted>\"") && !text.contains("s3cret-token"), "{text}");
    let out = berth(&[]).args(["config", "check", "--output", "json"]).arg(&file).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listen = v["settings"].as_array().unwrap().iter().find(|s| s["key"] == "listen").unwrap().clone();
    assert_eq!((listen["value"].as_str(), listen["env"].as_str()), (Some("127.0.0.1:5001"), Some("BERTH_LISTEN")));
    let out = berth(&[]).args(["config", "check", "--output", "yaml"]).arg(&file).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("use toml or json"));
    // A certificate with another certificate's key.
    let (a, b) = (
        rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap(),
        rcgen::generate_simple_self_signed(vec!["b.example".into()]).unwrap(),
    );
    let (cert, key) = (dir.path().join("a.pem"), dir.path().join("b.key"));
    std::fs::write(&cert, a.cert.pem()).unwrap();
    std::fs::write(&key, b.key_pair.serialize_pem()).unwrap();
    let out =
        berth(&[]).args(["config", "check", "--tls-cert"]).arg(&cert).arg("--tls-key").arg(&key).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("TLS certificate and key do not match"), "{err}");
    std::fs::write(&key, a.key_pair.serialize_pem()).unwrap();
    let out =
        berth(&[]).args(["config", "check", "--tls-cert"]).arg(&cert).arg("--tls-key").arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        berth(&[("BERTH_LIMITS_MAX_MANIFEST_BYTES", "17179869185GiB")]).args(["config", "check"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("too large"), "{err}");
}

/// One version everywhere: the binary, the management API, the client's User-Agent (as an
/// upstream registry logs it), and the SBOMs Berth writes — all Cargo's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_version_everywhere() {
    let v = env!("CARGO_PKG_VERSION");
    let out = berth(&[]).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("berth {v}"));
    let s = TestServer::start().await;
    let info: serde_json::Value = s.api(reqwest::Method::GET, "/systeminfo", None).await.json().await.unwrap();
    assert_eq!(info["harbor_version"], format!("berth-{v}"));
    let upstream = berth_test_support::Distribution::start(None);
    let c =
        berth_client::Client::new(&berth_client::Endpoint { url: upstream.url.clone(), ..Default::default() }).unwrap();
    c.ping().await.unwrap();
    assert!(upstream.log().contains(&format!("useragent=berth/{v}")), "{}", upstream.log());
}

/// Shell completions and a man page come from the command definitions; exit codes are 0
/// (done), 1 (the command failed; the reason on stderr) and 2 (a usage error).
#[test]
fn completions_man_page_and_exit_codes() {
    let out = berth(&[]).args(["completions", "bash"]).output().unwrap();
    let bash = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && bash.contains("_berth()") && bash.contains("reset-password"), "{bash}");
    let out = berth(&[]).args(["completions", "zsh"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("#compdef berth"));
    let out = berth(&[]).arg("man").output().unwrap();
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(man.contains(".TH berth 1") && man.contains("serve"), "{man}");
    assert_eq!(out.status.code(), Some(0));
    let usage = berth(&[]).args(["project", "frobnicate"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2), "a usage error");
    let failed = berth(&[]).args(["config", "check", "/nonexistent/berth.toml"]).output().unwrap();
    assert_eq!(failed.status.code(), Some(1), "a command that failed");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.starts_with("Error: ") && err.lines().count() == 1, "one line, the reason: {err}");
}
