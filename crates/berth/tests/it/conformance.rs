//! The official OCI distribution-spec conformance suites against Berth: the `v1.1.1` suite
//! and `main` at spec levels `1.1` and `dev`, each with token auth (Berth's default) and with
//! Basic auth (`[auth] challenge = "basic"`). Zero failures, and no skips but the ones a
//! registry with automatic cross-mounting must have.
//!
//! The suites are prebuilt Go binaries (`../shared/oci-conformance`, or
//! `BERTH_OCI_CONFORMANCE_DIR`): the one thing tests take from outside the repository. Under
//! CI (`BERTH_CI`, which `.ci/run` sets) a missing suite fails the test; elsewhere the test
//! says that it did not run.

use std::path::PathBuf;

use reqwest::StatusCode;

use crate::support::*;

/// Where the suites are, or `None` (said plainly) when they are not here outside CI.
fn suites() -> Option<PathBuf> {
    let dir = std::env::var_os("BERTH_OCI_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/oci-conformance"));
    let have = ["conformance-v111.test", "conformance-head"].iter().all(|b| dir.join(b).is_file());
    if have {
        return Some(dir);
    }
    assert!(
        std::env::var_os("BERTH_CI").is_none(),
        "the OCI conformance suites are not in {} (set BERTH_OCI_CONFORMANCE_DIR); CI must run them",
        dir.display()
    );
    eprintln!(
        "NOT RUN: the OCI conformance suites are not in {} (set BERTH_OCI_CONFORMANCE_DIR to run them)",
        dir.display()
    );
    None
}

/// A server for a suite: the admin pushes into project `conformance`.
async fn server(basic: bool) -> TestServer {
    let s = TestServer::start_with(|c| c.auth.basic_challenge = basic).await;
    s.project("conformance", false).await;
    let r = s.anon().get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let scheme = header(&r, "www-authenticate").unwrap().split(' ').next().unwrap().to_owned();
    assert_eq!(scheme, if basic { "Basic" } else { "Bearer" });
    s
}

/// The skips of the v1.1.1 suite that a registry with automatic cross-mounting has: tests
/// for a registry that takes no pushes, one for a tag named by the environment, and the
/// two that apply only where mounting is not supported.
const V111_EXPECTED_SKIPS: [&str; 4] = [
    "Pull Setup [It] Get tag name from environment",
    "Push Cross-Repository Blob Mount [It] Cross-mounting of nonexistent blob should yield session id",
    "Push Cross-Repository Blob Mount [It] Cross-mounting without from, and automatic content discovery disabled should return a 202",
    "Content Discovery Setup [It] Populate registry with test tags (no push)",
];

async fn run_v111(dir: &std::path::Path, basic: bool) {
    let s = server(basic).await;
    let work = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(dir.join("conformance-v111.test"))
        .args(["-ginkgo.no-color", "-ginkgo.v"])
        .current_dir(work.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs([
            ("OCI_ROOT_URL", s.base.as_str()),
            ("OCI_NAMESPACE", "conformance/repo"),
            ("OCI_CROSSMOUNT_NAMESPACE", "conformance/other"),
            ("OCI_USERNAME", ADMIN),
            ("OCI_PASSWORD", ADMIN_PASSWORD),
            ("OCI_TEST_PULL", "1"),
            ("OCI_TEST_PUSH", "1"),
            ("OCI_TEST_CONTENT_DISCOVERY", "1"),
            ("OCI_TEST_CONTENT_MANAGEMENT", "1"),
            ("OCI_AUTOMATIC_CROSSMOUNT", "1"),
            ("OCI_REPORT_DIR", "none"),
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let auth = if basic { "Basic" } else { "token" };
    assert!(out.status.success(), "v1.1.1 suite with {auth} auth failed:\n{}", tail(&text));
    let summary = text.lines().find(|l| l.contains("Passed |")).unwrap_or_else(|| panic!("{}", tail(&text)));
    assert!(summary.contains("| 0 Failed |") && summary.contains("| 4 Skipped"), "{auth}: {summary}");
    // The skips are exactly the expected ones.
    let mut skipped: Vec<&str> = text
        .lines()
        .zip(text.lines().skip(1))
        .filter(|(l, _)| l.starts_with("S [SKIPPED]"))
        .map(|(_, name)| name.trim().trim_start_matches("OCI Distribution Conformance Tests ").trim())
        .collect();
    skipped.sort_unstable();
    let mut expected = V111_EXPECTED_SKIPS.to_vec();
    expected.sort_unstable();
    assert_eq!(skipped, expected, "{auth}: unexpected skips");
    eprintln!("OCI conformance v1.1.1, {auth} auth: {}", summary.trim());
}

async fn run_head(dir: &std::path::Path, basic: bool, version: &str) {
    let s = server(basic).await;
    let work = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(dir.join("conformance-head"))
        .current_dir(work.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs([
            ("OCI_REGISTRY", s.host().as_str()),
            ("OCI_TLS", "disabled"),
            ("OCI_REPO1", "conformance/repo1"),
            ("OCI_REPO2", "conformance/repo2"),
            ("OCI_VERSION", version),
            ("OCI_USERNAME", ADMIN),
            ("OCI_PASSWORD", ADMIN_PASSWORD),
        ])
        .env("OCI_RESULTS_DIR", work.path())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let auth = if basic { "Basic" } else { "token" };
    let count = |what: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{what}..")))?;
        line.rsplit(':').next()?.trim().parse().ok()
    };
    let result = text.lines().find(|l| l.starts_with("OCI Conformance Result:")).unwrap_or("(no result)");
    assert!(
        out.status.success() && result.ends_with("Pass"),
        "main ({version}), {auth} auth: {result}\n{}",
        tail(&text)
    );
    for what in ["FAIL", "Error", "Skip"] {
        assert_eq!(count(what), Some(0), "main ({version}), {auth} auth: {what}\n{}", tail(&text));
    }
    let passed = count("Pass").unwrap_or(0);
    assert!(passed > 800, "main ({version}), {auth} auth: only {passed} passed");
    eprintln!("OCI conformance main ({version}), {auth} auth: {passed} passed, 0 failed, 0 skipped");
}

/// The last lines of a suite's output (a failure's context).
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(120)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_conformance_v1_1_1_with_token_and_basic_auth() {
    let Some(dir) = suites() else { return };
    run_v111(&dir, false).await;
    run_v111(&dir, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_conformance_main_at_1_1_and_dev_with_token_and_basic_auth() {
    let Some(dir) = suites() else { return };
    for version in ["1.1", "dev"] {
        run_head(&dir, false, version).await;
        run_head(&dir, true, version).await;
    }
}
