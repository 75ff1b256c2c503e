//! `berth admin fill` (the synthetic registry of bench/scale.py), read back by the server and
//! a real client.

use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::Command;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filled_registry_serves_its_synthetic_images_to_real_clients() {
    let s = TestServer::start().await;
    let fill = |links: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.args(["admin", "fill", "--data-dir"]).arg(s.data_dir()).args([
            "--projects",
            "3",
            "--repos",
            "12",
            "--manifests-per-repo",
            "4",
            "--links-per-repo",
            links,
            "--big-repo-tags",
            "150",
            "--referrers",
            "40",
            "--pool",
            "8",
        ]);
        c
    };
    let out = run_ok(&mut fill("6")).await;
    assert!(out.contains("with 15 repositories, 239 manifests, 199 tags and 92 blob links"), "{out}");
    // Only an empty registry is filled.
    let err = run_fails(&mut fill("6")).await;
    assert!(err.contains("fills only an empty registry") && err.contains("proj-000/big"), "{err}");
    let err = run_fails(&mut fill("9")).await;
    assert!(err.contains("--links-per-repo must be between 2 and --pool (8)"), "{err}");
    // A new start reads what was written behind its back.
    let s = s.restart().await;

    let cat: Value = s.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(cat["repositories"].as_array().unwrap().len(), 15, "{cat}");
    let r = s.get("/v2/proj-000/big/tags/list?n=100").await;
    assert!(header(&r, "link").is_some_and(|l| l.contains("last=t000099")));
    let tags: Value = r.json().await.unwrap();
    assert_eq!(tags["tags"].as_array().unwrap().len(), 100);
    let head = s.head("/v2/proj-000/signed/manifests/latest").await;
    assert_eq!(head.status(), StatusCode::OK);
    let subject = header(&head, "docker-content-digest").unwrap().to_owned();
    let refs: Value = s.get(&format!("/v2/proj-000/signed/referrers/{subject}")).await.json().await.unwrap();
    let all = refs["manifests"].as_array().unwrap().clone();
    assert_eq!(all.len(), 40);
    assert_eq!(all[0]["artifactType"], "application/vnd.example.sbom");
    // Paged by Link headers, with the filter kept: the same 40 in the same order.
    let mut next =
        Some(format!("/v2/proj-000/signed/referrers/{subject}?n=15&artifactType=application/vnd.example.sbom"));
    let mut paged = Vec::new();
    while let Some(path) = next.take() {
        let r = s.get(&path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        next = header(&r, "link").map(|l| l.trim_start_matches('<').split('>').next().unwrap().to_owned());
        let page: Value = r.json().await.unwrap();
        assert!(page["manifests"].as_array().unwrap().len() <= 15);
        paged.extend(page["manifests"].as_array().unwrap().clone());
    }
    assert_eq!(paged, all);
    let bad = s.get(&format!("/v2/proj-000/signed/referrers/{subject}?last=yesterday")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let e = bad.text().await.unwrap();
    assert!(e.contains("query parameter last must be the value a Link header"), "{e}");
    let repos: Value = s.api(reqwest::Method::GET, "/projects/proj-002/repositories", None).await.json().await.unwrap();
    assert_eq!(repos.as_array().unwrap().len(), 4, "{repos}");
    assert_eq!(repos[0]["artifact_count"], 4);
    // The artifacts of a plain repository are paged by the database: page 2 of 100.
    let r =
        s.api(reqwest::Method::GET, "/projects/proj-000/repositories/big/artifacts?page=2&page_size=100", None).await;
    assert_eq!(header(&r, "x-total-count"), Some("150"));
    let page: Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 50);
    assert_eq!(page[0]["tags"][0]["name"], "t000049", "newest first");

    // skopeo copies a synthetic image, checking every digest on the way.
    let tmp = tempfile::tempdir().unwrap();
    for image in ["proj-002/repo-000011:v3", "proj-000/signed:latest"] {
        let dest = tmp.path().join(image.replace(['/', ':'], "_"));
        let out = Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", s.auth_file())
            .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{image}", s.host()))
            .arg(format!("dir:{}", dest.display()))
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{image}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::read_dir(&dest).unwrap().count() >= 3);
    }
    // A push into the filled registry works as into any other.
    s.push_image("proj-001/repo-000005", "new").await;
    let tags: Value = s.get("/v2/proj-001/repo-000005/tags/list").await.json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["new", "v0", "v1", "v2", "v3"]));
    s.stop().await;
}
