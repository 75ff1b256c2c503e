//! Signature policies: cosign signatures (the `.sig` tag and OCI 1.1 referrers) and Notation
//! signatures (JWS and COSE referrers) made by `tests/signatures/sign.py` from the published
//! formats with Python's `cryptography`, verified by Berth against a project's trusted keys
//! and trust policy; `enforce` refuses the pull of anything else with a DENIED naming the
//! policy (skopeo sees it), `warn` lets it through and logs it; a platform of a signed index
//! is pulled; bad policies are refused with the reason.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::*;

const SIGN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/signatures/sign.py");

async fn sign(args: &[&str]) {
    run_ok(Command::new("python3").arg(SIGN).args(args)).await;
}

/// Push a manifest by digest and return its digest.
async fn put_by_digest(s: &TestServer, repo: &str, manifest: &Value) -> String {
    let bytes = serde_json::to_vec(manifest).unwrap();
    let d = sha256(&bytes);
    let r = s.put_manifest(repo, &d, OCI_MANIFEST, &bytes).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    d
}

/// cosign's signature manifest for `digest`, signed with `key`: at the `.sig` tag, or as an
/// OCI 1.1 referrer.
async fn cosign(s: &TestServer, dir: &Path, repo: &str, image: &(String, usize), key: &str, referrer: bool) {
    let (payload, sig) = (dir.join("payload.json"), dir.join("payload.sig"));
    let reference = format!("{}/{repo}", s.host());
    sign(&["cosign", key, &image.0, &reference, payload.to_str().unwrap(), sig.to_str().unwrap()]).await;
    let payload = std::fs::read(&payload).unwrap();
    let sig = std::fs::read_to_string(&sig).unwrap();
    let config = br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = s.push_blob(repo, config).await;
    let pd = s.push_blob(repo, &payload).await;
    let mut m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": pd, "size": payload.len(),
                    "annotations": {"dev.cosignproject.cosign/signature": sig}}],
    });
    if referrer {
        m["config"]["mediaType"] = json!("application/vnd.dev.cosign.artifact.sig.v1+json");
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": image.0, "size": image.1});
        put_by_digest(s, repo, &m).await;
    } else {
        let tag = format!("{}.sig", image.0.replace(':', "-"));
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(s.put_manifest(repo, &tag, OCI_MANIFEST, &bytes).await.status(), StatusCode::CREATED);
    }
}

/// A Notation signature (`jws` or `cose`) of `image` by `leaf` (chain `leaf,root`), as a referrer.
async fn notation(
    s: &TestServer,
    dir: &Path,
    repo: &str,
    image: &(String, usize),
    format: &str,
    leaf: &str,
    root: &str,
) {
    let env = dir.join(format!("sig.{format}"));
    let chain = format!("{},{}", dir.join(format!("{leaf}.pem")).display(), dir.join(format!("{root}.pem")).display());
    let key = dir.join(format!("{leaf}.key"));
    let size = image.1.to_string();
    sign(&["notation", format, key.to_str().unwrap(), &chain, &image.0, &size, OCI_MANIFEST, env.to_str().unwrap()])
        .await;
    let envelope = std::fs::read(&env).unwrap();
    let cd = s.push_blob(repo, b"{}").await;
    let ed = s.push_blob(repo, &envelope).await;
    let media = if format == "jws" { "application/jose+json" } else { "application/cose" };
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.cncf.notary.signature", "digest": cd, "size": 2},
        "layers": [{"mediaType": media, "digest": ed, "size": envelope.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image.0, "size": image.1},
    });
    put_by_digest(s, repo, &m).await;
}

async fn image(s: &TestServer, repo: &str, tag: &str) -> (String, usize) {
    let m = s.push_image(repo, tag).await;
    (sha256(&m), m.len())
}

fn policy(dir: &Path, mode: &str) -> Value {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    json!({
        "mode": mode,
        "cosign_keys": [{"name": "ci", "public_key": read("cosign.pub")}],
        "trust_stores": [{"name": "builders", "certificates": read("ca.pem")}],
        "trust_policy": {"version": "1.0", "trustPolicies": [{
            "name": "images", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:builders"], "trustedIdentities": ["x509.subject: C=US, ST=WA, O=Berth Test"]}]},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_policies_verify_cosign_and_notation_and_refuse_what_is_not_signed() {
    let s = TestServer::start().await;
    s.project("signed", false).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sign(&["keys", dir.to_str().unwrap()]).await;
    let key = dir.join("cosign.key");
    let other = dir.join("other.key");

    let legacy = image(&s, "signed/app", "legacy").await;
    cosign(&s, dir, "signed/app", &legacy, key.to_str().unwrap(), false).await;
    let referred = image(&s, "signed/app", "referrer").await;
    cosign(&s, dir, "signed/app", &referred, key.to_str().unwrap(), true).await;
    let jws = image(&s, "signed/app", "jws").await;
    notation(&s, dir, "signed/app", &jws, "jws", "ca-leaf-ec", "ca").await;
    let cose = image(&s, "signed/app", "cose").await;
    notation(&s, dir, "signed/app", &cose, "cose", "ca-leaf-rsa", "ca").await;
    image(&s, "signed/app", "unsigned").await;
    let wrong_key = image(&s, "signed/app", "wrong-key").await;
    cosign(&s, dir, "signed/app", &wrong_key, other.to_str().unwrap(), false).await;
    let rogue = image(&s, "signed/app", "rogue").await;
    notation(&s, dir, "signed/app", &rogue, "jws", "rogue-leaf-ec", "rogue").await;

    // No policy: everything is pulled.
    assert_eq!(s.get("/v2/signed/app/manifests/unsigned").await.status(), StatusCode::OK);
    let v: Value = s
        .api(Method::GET, "/projects/signed/repositories/app/artifacts/unsigned/signature", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "not_checked");

    // Bad policies say what is wrong.
    for (bad, says) in [
        (json!({"mode": "enforce"}), "needs something to trust"),
        (json!({"mode": "enforce", "cosign_keys": [{"name": "ci", "public_key": "nope"}]}), "not a PEM"),
        (json!({"mode": "strict"}), "unknown variant"),
        (
            json!({"mode": "warn", "trust_stores": [], "trust_policy": {"version": "1.0", "trustPolicies": [{"name": "x",
            "registryScopes": ["*"], "signatureVerification": {"level": "strict"}, "trustStores": ["ca:none"],
            "trustedIdentities": ["*"]}]}}),
            "not defined",
        ),
    ] {
        let r = s.api(Method::PUT, "/projects/signed/signature-policy", Some(bad)).await;
        let e = expect_error(r, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
        assert!(e.to_string().contains(says), "{says}: {e}");
    }

    // enforce: what a trusted key or trusted builder signed is pulled; nothing else.
    let r = s.api(Method::PUT, "/projects/signed/signature-policy", Some(policy(dir, "enforce"))).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    for tag in ["legacy", "referrer", "jws", "cose"] {
        let r = s.get(&format!("/v2/signed/app/manifests/{tag}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{tag}: {:?}", r.text().await);
    }
    for (tag, says) in [("unsigned", "it is not signed"), ("wrong-key", "no trusted key"), ("rogue", "trusted root")] {
        let r = s.get(&format!("/v2/signed/app/manifests/{tag}")).await;
        let e = expect_error(r, StatusCode::FORBIDDEN, "DENIED").await;
        let msg = e["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains("signature policy (enforce)") && msg.contains(says), "{tag}: {msg}");
    }
    // HEAD stays allowed, and so do the signatures themselves.
    assert_eq!(s.head("/v2/signed/app/manifests/unsigned").await.status(), StatusCode::OK);
    let sig_tag = format!("{}.sig", legacy.0.replace(':', "-"));
    assert_eq!(s.get(&format!("/v2/signed/app/manifests/{sig_tag}")).await.status(), StatusCode::OK);
    // The verdicts, by whom.
    let verdict = |tag: &'static str| {
        let s = &s;
        async move {
            let p = format!("/projects/signed/repositories/app/artifacts/{tag}/signature");
            s.api(Method::GET, &p, None).await.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(verdict("legacy").await["signed_by"], "cosign key ci");
    assert_eq!(verdict("referrer").await["status"], "verified");
    assert!(verdict("jws").await["signed_by"].as_str().unwrap().starts_with("builder (Notation"));
    assert!(verdict("cose").await["signed_by"].as_str().unwrap().contains("strict"));
    assert_eq!(verdict("unsigned").await["status"], "unsigned");
    assert_eq!(verdict("rogue").await["status"], "invalid");

    // A real client sees the refusal in words.
    let dest = tempfile::tempdir().unwrap();
    let out = run_fails(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--src-tls-verify=false",
                "--src-creds",
                &format!("{ADMIN}:{ADMIN_PASSWORD}"),
            ])
            .arg(format!("docker://{}/signed/app:unsigned", s.host()))
            .arg(format!("oci:{}:x", dest.path().display())),
    )
    .await;
    assert!(out.contains("signature policy (enforce)"), "{out}");

    // A multi-platform image: the index is signed, its platforms are not; they are pulled.
    let child = image(&s, "signed/multi", "amd64").await;
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child.0, "size": child.1,
                       "platform": {"architecture": "amd64", "os": "linux"}}]});
    let bytes = serde_json::to_vec(&index).unwrap();
    let r = s.put_manifest("signed/multi", "v1", "application/vnd.oci.image.index.v1+json", &bytes).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let idx = (sha256(&bytes), bytes.len());
    cosign(&s, dir, "signed/multi", &idx, key.to_str().unwrap(), false).await;
    assert_eq!(s.get("/v2/signed/multi/manifests/v1").await.status(), StatusCode::OK);
    assert_eq!(s.get(&format!("/v2/signed/multi/manifests/{}", child.0)).await.status(), StatusCode::OK);
    let lone = image(&s, "signed/multi", "lone").await;
    let r = s.get(&format!("/v2/signed/multi/manifests/{}", lone.0)).await;
    expect_error(r, StatusCode::FORBIDDEN, "DENIED").await;

    // The portal: each artifact's verdict; the policy changed to warn on the Policy tab.
    let web = crate::portal::Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let project: Value = s.api(Method::GET, "/projects/signed", None).await.json().await.unwrap();
    let id = project["project_id"].as_i64().unwrap();
    let page = |d: &str| format!("/harbor/projects/{id}/repositories/app/artifacts-tab/artifacts/{d}");
    let (_, html) = web.get(&page(&legacy.0)).await;
    assert!(html.contains(">Signed<") && html.contains("by cosign key ci"), "{html}");
    let unsigned: Value =
        s.api(Method::GET, "/projects/signed/repositories/app/artifacts/unsigned", None).await.json().await.unwrap();
    let (_, html) = web.get(&page(unsigned["digest"].as_str().unwrap())).await;
    assert!(html.contains(">Unsigned<") && html.contains("(pulls are refused)"), "{html}");
    let (_, html) = web.get(&format!("/harbor/projects/{id}/policy")).await;
    assert!(html.contains("Signature policy") && html.contains("<strong>enforce</strong>"), "{html}");
    let mut doc = policy(dir, "warn");
    doc.as_object_mut().unwrap().remove("mode");
    let form = format!("/harbor/projects/{id}/policy/signature");
    let (st, html, _) = web.post(&form, &[("mode", "warn"), ("document", "{not json")]).await;
    assert!(st == StatusCode::BAD_REQUEST && html.contains("not JSON"), "{html}");
    let (st, html, _) = web.post(&form, &[("mode", "warn"), ("document", &doc.to_string())]).await;
    assert!(st == StatusCode::OK && html.contains("Signature policy saved"), "{html}");

    // warn: pulled, and logged.
    assert_eq!(s.get("/v2/signed/app/manifests/unsigned").await.status(), StatusCode::OK);
    let logged = eventually("the unverified pull in the audit log", async || {
        let v: Value = s.api(Method::GET, "/projects/signed/logs?q=operation%3Dpull", None).await.json().await.unwrap();
        let hit = v.as_array().unwrap().iter().find(|e| e["result"] == "unverified signature").cloned();
        hit.ok_or_else(|| v.to_string())
    })
    .await;
    assert!(logged["resource"].as_str().unwrap().starts_with("signed/app@sha256:"), "{logged}");

    // The CLI shows and checks it.
    let berth = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base).env("BERTH_USERNAME", ADMIN).env("BERTH_PASSWORD", ADMIN_PASSWORD);
        c
    };
    let shown = run_ok(berth().args(["signature", "show", "signed"])).await;
    assert!(shown.contains("warn") && shown.contains("ci") && shown.contains("builders"), "{shown}");
    let checked = run_ok(berth().args(["signature", "verify", "signed", "app", "jws"])).await;
    assert!(checked.contains("verified") && checked.contains("builder"), "{checked}");
    let failed = run_fails(berth().args(["signature", "verify", "signed", "app", "rogue"])).await;
    assert!(failed.contains("invalid") && failed.contains("trusted root"), "{failed}");
    let file = dir.join("policy.json");
    std::fs::write(&file, serde_json::to_vec(&policy(dir, "off")).unwrap()).unwrap();
    run_ok(berth().args(["signature", "set", "signed"]).arg(&file)).await;
    let v: Value = s.api(Method::GET, "/projects/signed/signature-policy", None).await.json().await.unwrap();
    assert_eq!(v["mode"], "off");
    s.stop().await;
}
