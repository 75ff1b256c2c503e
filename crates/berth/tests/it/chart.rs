//! Berth's Helm chart (`deploy/helm/berth`): `helm lint`, `helm template` of the embedded and
//! the scaled shapes validated against Kubernetes' schemas offline (`kubernetes-validate
//! --strict`), wrong values refused with a message, and the chart pushed to Berth as an OCI
//! artifact and pulled back byte for byte.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::support::*;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/berth")
}

/// `helm` with its own config, cache and data under `t`.
fn helm(t: &Path) -> Command {
    let mut c = Command::new("helm");
    c.env("HELM_CONFIG_HOME", t.join("helm/config"))
        .env("HELM_CACHE_HOME", t.join("helm/cache"))
        .env("HELM_DATA_HOME", t.join("helm/data"));
    c
}

/// Render with `values`, validate every document against Kubernetes' schemas; the kinds.
async fn rendered(t: &Path, name: &str, values: &[&str]) -> Vec<String> {
    let mut c = helm(t);
    c.args(["template", "demo"]).arg(chart());
    for v in values {
        c.args(["--set", v]);
    }
    let yaml = run_ok(&mut c).await;
    let file = t.join(format!("{name}.yaml"));
    std::fs::write(&file, &yaml).unwrap();
    let out =
        run_ok(Command::new("kubernetes-validate").args(["--strict", "--kubernetes-version", "1.33.0"]).arg(&file))
            .await;
    assert!(!out.contains("ERROR") && !out.contains("WARN"), "{name}: {out}");
    yaml.lines().filter_map(|l| l.strip_prefix("kind: ")).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helm_chart_lints_renders_valid_manifests_and_travels_through_berth() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let lint = run_ok(helm(t).args(["lint", "--strict"]).arg(chart())).await;
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    // Embedded: one replica, a volume for SQLite and blobs, recreated (not rolled) on upgrade.
    let kinds = rendered(t, "embedded", &[]).await;
    assert_eq!(kinds, ["NetworkPolicy", "Secret", "PersistentVolumeClaim", "Service", "Deployment"]);
    let yaml = std::fs::read_to_string(t.join("embedded.yaml")).unwrap();
    for needle in ["type: Recreate", "readOnlyRootFilesystem: true", "runAsNonRoot: true", "path: /readyz"] {
        assert!(yaml.contains(needle), "{needle}");
    }
    // Scaled: PostgreSQL and S3, a disruption budget, an Ingress; no volume.
    let kinds = rendered(
        t,
        "scaled",
        &[
            "replicaCount=3",
            "metadata.url=postgres://berth:pw@db/berth",
            "storage.backend=s3",
            "storage.s3.bucket=blobs",
            "ingress.enabled=true",
            "externalUrl=https://berth.example",
        ],
    )
    .await;
    assert_eq!(kinds, ["NetworkPolicy", "PodDisruptionBudget", "Secret", "Secret", "Service", "Deployment", "Ingress"]);
    let yaml = std::fs::read_to_string(t.join("scaled.yaml")).unwrap();
    assert!(yaml.contains("type: RollingUpdate") && yaml.contains("BERTH_METADATA_BACKEND"), "{yaml}");

    // Values that cannot work are refused with a message.
    for (values, says) in [
        (vec!["replicaCount=2"], "replicaCount > 1 needs PostgreSQL"),
        (vec!["replicaCount=2", "metadata.url=postgres://db/b"], "needs shared blob storage"),
        (vec!["storage.backend=s3"], "needs storage.s3.bucket"),
        (vec!["env.LIMITS=1"], "does not match pattern"),
        (vec!["service.port=0"], "minimum"),
    ] {
        let mut c = helm(t);
        c.args(["template", "demo"]).arg(chart());
        for v in &values {
            c.args(["--set", v]);
        }
        let err = run_fails(&mut c).await;
        assert!(err.contains(says), "{values:?}: {err}");
    }

    // Packaged, pushed to Berth, pulled back unchanged.
    let s = TestServer::start().await;
    let host = s.host();
    run_ok(helm(t).args([
        "registry",
        "login",
        &host,
        "--username",
        ADMIN,
        "--password",
        ADMIN_PASSWORD,
        "--plain-http",
    ]))
    .await;
    run_ok(helm(t).arg("package").arg(chart()).arg("-d").arg(t)).await;
    let package = t.join("berth-0.1.0.tgz");
    run_ok(helm(t).arg("push").arg(&package).arg(format!("oci://{host}/charts")).arg("--plain-http")).await;
    let out = t.join("pulled");
    std::fs::create_dir_all(&out).unwrap();
    run_ok(
        helm(t)
            .arg("pull")
            .arg(format!("oci://{host}/charts/berth"))
            .args(["--version", "0.1.0", "--plain-http", "-d"])
            .arg(&out),
    )
    .await;
    assert_eq!(std::fs::read(out.join("berth-0.1.0.tgz")).unwrap(), std::fs::read(&package).unwrap());
    s.stop().await;
}
