//! The ECR API with the real clients: boto3 (which validates every answer against ECR's
//! model) and the `aws` CLI, signing with a user's access key; `aws ecr get-login-password`
//! piped into `skopeo login`, then a push and a pull.

use std::path::Path;
use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::*;

async fn access_key(s: &TestServer, user: &str, pw: &str) -> (String, String) {
    let r = client_as(user, pw).post(s.url("/api/v2.0/users/current/access-keys")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let k: Value = r.json().await.unwrap();
    (k["access_key_id"].as_str().unwrap().to_owned(), k["secret_access_key"].as_str().unwrap().to_owned())
}

/// The `aws` CLI with only these credentials (no profile or config of the machine).
fn aws(dir: &Path, key: &str, secret: &str) -> Command {
    let mut c = Command::new("aws");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", dir.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("aws-credentials"))
        .env("AWS_DEFAULT_REGION", "eu-west-1");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_the_aws_cli_work_with_a_users_access_key() {
    let s = TestServer::start().await;
    s.project("team", false).await;
    s.push_image("team/app", "v1").await;
    s.push_image("team/app", "v2").await;
    s.push_image("team/other", "v1").await;
    // An image with a vulnerable package, and the advisory that says so.
    let m = crate::scan::image_of(
        &s,
        "team/vuln",
        &[("app/node_modules/minimist/package.json", br#"{"name": "minimist", "version": "1.2.0"}"#)],
    )
    .await;
    assert_eq!(s.put_manifest("team/vuln", "v1", OCI_MANIFEST, &m).await.status(), StatusCode::CREATED);
    let advisories = tempfile::tempdir().unwrap();
    crate::scan::import(&s, &crate::scan::minimist_advisory(advisories.path())).await;
    s.user("dev", "Dev-Passw0rd-1").await;
    s.member("team", "dev", 1).await;
    let (key, secret) = access_key(&s, "dev", "Dev-Passw0rd-1").await;
    assert!(key.starts_with("AKIA") && key.len() == 20 && secret.len() == 40, "{key} {secret}");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ecr/boto3_ops.py");
    let out = run_ok(Command::new("python3").arg(script).arg(&s.base).arg(&key).arg(&secret).arg("team/app")).await;
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["registry_id"], "000000000000");
    assert_eq!(v["repositories"], json!(["team/app", "team/other", "team/vuln"]));
    assert_eq!(v["arn"], "arn:aws:ecr:eu-west-1:000000000000:repository/team/app");
    assert_eq!(v["uri"], format!("{}/team/app", s.host()));
    assert_eq!((v["list_pages"].as_i64(), v["tagged_only"].as_i64()), (Some(2), Some(2)), "{v}");
    assert_eq!(v["describe"]["tags"], json!(["v1"]));
    assert!(v["describe"]["size"].as_i64().unwrap() > 0);
    assert_eq!(v["missing_repo"], json!(["RepositoryNotFoundException", 400]));
    assert_eq!(v["missing_repo_in_project"], json!(["RepositoryNotFoundException", 400]));
    assert_eq!(v["missing_image"], json!(["ImageNotFoundException", 400]));
    assert_eq!(v["bad_max"], json!(["InvalidParameterException", 400]));
    assert_eq!(v["token_user"], "AWS");
    assert_eq!(v["proxy_endpoint"], s.base);
    assert_eq!(v["wrong_secret"], json!(["InvalidSignatureException", 403]));
    assert_eq!(v["unknown_key"], json!(["UnrecognizedClientException", 403]));
    assert_eq!(v["unsupported"], json!(["UnsupportedOperationException", 400]));
    assert_eq!((v["deleted"].clone(), v["failures"].clone()), (json!(["v2"]), json!(["ImageNotFound"])));
    assert_eq!(v["created"], "team/new");
    assert_eq!(v["create_again"], json!(["RepositoryAlreadyExistsException", 400]));
    assert_eq!(v["after_create"], json!(["team/app", "team/new", "team/other", "team/vuln"]));
    assert_eq!(v["layers"], json!(["AVAILABLE", "MissingLayerDigest"]));
    assert_eq!(v["no_scan"], json!(["ScanNotFoundException", 400]));
    assert_eq!((v["scan_started"].as_str(), v["scan_status"].as_str()), (Some("IN_PROGRESS"), Some("COMPLETE")));
    assert_eq!(v["severity_counts"], json!({"CRITICAL": 1}));
    assert_eq!((v["scan_started_tag"].as_str(), v["source_updated"].as_bool()), (Some("v1"), Some(true)));
    assert_eq!(v["described_scan"], json!({"status": "COMPLETE", "counts": {"CRITICAL": 1}}));
    assert_eq!(
        (v["finding"]["name"].as_str(), v["finding"]["severity"].as_str()),
        (Some("CVE-2099-0001"), Some("CRITICAL"))
    );
    let attributes = &v["finding"]["attributes"];
    assert_eq!(
        (
            &attributes["package_name"],
            &attributes["package_version"],
            &attributes["CVSS3_SCORE"],
            &attributes["fixed_version"]
        ),
        (&json!("minimist"), &json!("1.2.0"), &json!("9.8"), &json!("1.2.6"))
    );
    assert_eq!(v["not_empty"], json!(["RepositoryNotEmptyException", 400]));
    assert_eq!(v["forced"], "team/other");
    assert_eq!(s.get("/v2/team/other/manifests/v1").await.status(), StatusCode::NOT_FOUND, "force deleted its images");
    assert_eq!(v["policy_sid"], "ro");
    assert_eq!(v["policy_gone"], json!(["RepositoryPolicyNotFoundException", 400]));
    assert_eq!(v["bad_policy"], json!(["InvalidParameterException", 400]));
    assert_eq!(v["lifecycle_rules"], 1);
    assert_eq!(v["lifecycle_gone"], json!(["LifecyclePolicyNotFoundException", 400]));
    assert_eq!((v["manifest_schema"].as_i64(), v["get_failures"].clone()), (Some(2), json!(["ImageNotFound"])));
    assert_eq!(s.get("/v2/team/app/manifests/v2").await.status(), StatusCode::NOT_FOUND, "deleted through ECR");

    // get-login-password | skopeo login, then a push and a pull with that login.
    let tmp = tempfile::tempdir().unwrap();
    let password =
        run_ok(aws(tmp.path(), &key, &secret).args(["ecr", "get-login-password", "--endpoint-url", &s.base])).await;
    let auth = tmp.path().join("auth.json");
    let mut login = Command::new("skopeo")
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["login", "--tls-verify=false", "--username", "AWS", "--password-stdin", &s.host()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login.stdin.take().unwrap().write_all(password.trim().as_bytes()).await.unwrap();
    let out = login.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let layout = make_oci_layout(tmp.path());
    let skopeo = |args: &[String]| {
        let mut c = Command::new("skopeo");
        c.env("REGISTRY_AUTH_FILE", &auth).args(args);
        c
    };
    let dest = format!("docker://{}/team/app:v3", s.host());
    run_ok(&mut skopeo(&[
        "--insecure-policy".into(),
        "copy".into(),
        "-q".into(),
        "--dest-tls-verify=false".into(),
        format!("oci:{}:single", layout.display()),
        dest.clone(),
    ]))
    .await;
    let inspected = run_ok(&mut skopeo(&["inspect".into(), "--tls-verify=false".into(), dest])).await;
    assert!(inspected.contains("\"Digest\""), "{inspected}");
    let listed = run_ok(aws(tmp.path(), &key, &secret).args([
        "ecr",
        "list-images",
        "--repository-name",
        "team/app",
        "--endpoint-url",
        &s.base,
    ]))
    .await;
    assert!(listed.contains("\"imageTag\": \"v3\""), "{listed}");

    // A deactivated key signs nothing; the key's changes are in the audit log.
    let url = s.url(&format!("/api/v2.0/users/current/access-keys/{key}"));
    let r = client_as("dev", "Dev-Passw0rd-1").put(url).json(&json!({"active": false})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let err =
        run_fails(aws(tmp.path(), &key, &secret).args(["ecr", "describe-registry", "--endpoint-url", &s.base])).await;
    assert!(err.contains("UnrecognizedClientException"), "{err}");
    let listed: Value = client_as("dev", "Dev-Passw0rd-1")
        .get(s.url("/api/v2.0/users/current/access-keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["status"], "Inactive");
    assert!(listed[0].get("secret_access_key").is_none(), "the secret is shown once");
    crate::access::audit(&s, "resource_type=access_key", |v| {
        v.iter().any(|e| e["operation"] == "create" && e["username"] == "dev")
            && v.iter().any(|e| e["operation"] == "update" && e["username"] == "dev")
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_a_users_access_keys() {
    let s = TestServer::start().await;
    s.user("ops", "Ops-Passw0rd-1").await;
    let berth = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base)
            .env("BERTH_USERNAME", "ops")
            .env("BERTH_PASSWORD", "Ops-Passw0rd-1")
            .arg("access-key")
            .args(args);
        c
    };
    let k: Value = serde_json::from_str(&run_ok(&mut berth(&["create", "--output", "json"])).await).unwrap();
    let id = k["access_key_id"].as_str().unwrap().to_owned();
    let text = run_ok(&mut berth(&["create"])).await;
    assert!(text.contains("secret access key: ") && text.contains("shown this once"), "{text}");
    let err = run_fails(&mut berth(&["create"])).await;
    assert!(err.contains("409") && err.contains("has 2 access keys already"), "{err}");
    run_ok(&mut berth(&["deactivate", &id])).await;
    let list = run_ok(&mut berth(&["list"])).await;
    let row = list.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("Inactive"), "{list}");
    run_ok(&mut berth(&["delete", &id])).await;
    assert!(!run_ok(&mut berth(&["list"])).await.contains(&id));
    let err = run_fails(&mut berth(&["delete", &id])).await;
    assert!(err.contains("has no access key"), "{err}");
    s.stop().await;
}

/// An image the scanner can read, pushed as `repo:tag`.
async fn scannable(s: &TestServer, repo: &str, tag: &str) {
    let m = crate::scan::image_of(s, repo, &[("etc/motd", tag.as_bytes())]).await;
    assert_eq!(s.put_manifest(repo, tag, OCI_MANIFEST, &m).await.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_settings_tags_put_image_previews_scanning_replication_and_caches() {
    // On the ECR API's own listener, with a configured registry id and region.
    let s = TestServer::start_with(|c| {
        c.ecr_registry_id = "111122223333".into();
        c.ecr_region = Some("ap-south-1".into());
        c.ecr_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let ecr_base = s.ecr_base.clone().expect("the ECR listener");
    assert_ne!(ecr_base, s.base);
    let upstream = berth_test_support::Distribution::start(None);
    let (cached_digest, _) = crate::proxy::seed_upstream(&upstream.url, "lib/alpine", "v1").await;
    let r = s
        .api(
            reqwest::Method::POST,
            "/registries",
            Some(json!({"name": "site", "type": "docker-registry", "url": upstream.url})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let endpoint_id = location(&r).rsplit('/').next().unwrap().to_owned();
    s.project("team", false).await;
    s.push_image("team/app", "v1").await;
    s.push_image("team/app", "v2").await;
    for tag in ["a", "b", "c"] {
        s.push_image("team/multi", tag).await;
    }
    s.project("secret", false).await;
    s.user("dev", "Dev-Passw0rd-1").await;
    s.member("team", "dev", 1).await;
    let (key, secret) = access_key(&s, ADMIN, ADMIN_PASSWORD).await;
    let (member_key, member_secret) = access_key(&s, "dev", "Dev-Passw0rd-1").await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ecr/boto3_admin.py");
    let out = run_ok(Command::new("python3").arg(script).args([
        &ecr_base,
        &key,
        &secret,
        &member_key,
        &member_secret,
        &endpoint_id,
        &upstream.url,
    ]))
    .await;
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let code = |k: &str| v[k][0].as_str().unwrap_or_else(|| panic!("{k}: {v}")).to_owned();
    let message = |k: &str| v[k][1].as_str().unwrap_or_default().to_owned();

    assert_eq!(v["registry_id"], "111122223333");
    assert_eq!(v["arn"], "arn:aws:ecr:ap-south-1:111122223333:repository/team/made");
    assert_eq!(v["proxy_endpoint"], s.base, "logins go to the registry, not to the ECR listener");
    // Signatures as botocore's signer makes them: the configured region only, the service
    // ecr, within 5 minutes of now, no session token.
    assert_eq!(v["signed_ok"], json!([200, "111122223333"]));
    for (k, status, code, says) in [
        ("signed_other_region", 403, "InvalidSignatureException", "this registry is in 'ap-south-1', not 'eu-west-1'"),
        ("signed_for_s3", 403, "InvalidSignatureException", "s3"),
        ("signed_late", 403, "InvalidSignatureException", "Signature expired"),
        ("signed_early", 403, "InvalidSignatureException", "Signature expired"),
        ("signed_with_token", 403, "UnrecognizedClientException", "token"),
    ] {
        assert_eq!((v[k][0].as_i64(), v[k][1].as_str()), (Some(status), Some(code)), "{k}: {}", v[k]);
        assert!(v[k][2].as_str().unwrap().contains(says), "{k}: {}", v[k]);
    }
    assert_eq!(code("wrong_region_client"), "InvalidSignatureException");
    // The ECR listener serves nothing else.
    let r = reqwest::get(format!("{ecr_base}/v2/")).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("serves only the ECR API"));

    // Repository settings and resource tags.
    assert_eq!(v["made"], json!({"mutability": "IMMUTABLE", "scan": true}));
    assert_eq!(v["described"], v["made"]);
    assert_eq!(code("no_project"), "InvalidParameterException");
    assert!(message("no_project").contains("project 'nosuch', which does not exist"), "{v}");
    assert_eq!(v["tags_made"], json!([{"Key": "owner", "Value": "ml"}]));
    assert_eq!(v["tags_added"], json!([{"Key": "env", "Value": "prod"}, {"Key": "owner", "Value": "hpc"}]));
    assert_eq!(v["tags_left"], json!([{"Key": "env", "Value": "prod"}]));
    assert_eq!(code("reserved_tag"), "InvalidTagParameterException");
    assert_eq!(code("too_many_tags"), "TooManyTagsException");
    assert_eq!(code("foreign_arn"), "InvalidParameterException");

    // PutImage.
    assert_eq!(code("put_same"), "ImageAlreadyExistsException");
    assert_eq!(v["put"]["tag"], "stable");
    assert_eq!(v["put"]["same_digest"], true);
    assert_eq!(code("missing_layers"), "LayersNotFoundException");
    assert_eq!(code("digest_mismatch"), "ImageDigestDoesNotMatchException");
    assert_eq!(v["mutability_set"], "IMMUTABLE");
    assert_eq!(code("immutable"), "ImageTagAlreadyExistsException");
    assert_eq!(v["moved"], true, "a mutable tag moves: {v}");
    let r = s.get("/v2/team/app/manifests/stable").await;
    assert_eq!(header(&r, "docker-content-digest"), v["v2_digest"].as_str(), "PutImage moved the tag");

    // Deletes as ECR makes them; messages in the user's words; the registry id checked everywhere.
    assert_eq!(v["listed_child"], json!(["ImageReferencedByManifestList", 0]));
    assert_eq!(v["listed_child_tag"], json!(["a"]), "the tag goes, the listed image stays");
    assert_eq!(v["untagged"], json!([true]));
    assert_eq!(v["tagged"], json!(["b", "c", "multi"]));
    assert_eq!(v["last_tag"], json!(["c"]), "deletes are allowed in an IMMUTABLE repository");
    assert_eq!(code("last_tag_image"), "ImageNotFoundException", "the last tag took its image along");
    assert!(message("media_type_mismatch").contains("imageManifestMediaType"), "{v}");
    assert!(message("sometimes").contains("SOMETIMES") && !message("sometimes").contains("line 1"), "{v}");
    assert_eq!(message("not_json"), "imageManifest is not a JSON document");
    assert!(message("bare_name").contains("name it <project>/app"), "{v}");
    assert_eq!(code("hidden_project"), "InvalidParameterException");
    assert!(message("hidden_project").contains("project 'secret', which does not exist"), "{v}");
    assert_eq!(code("other_registry"), "InvalidParameterException");
    assert_eq!(code("other_registries"), "InvalidParameterException");
    assert_eq!(v["request_id"].as_str().map(str::len), Some(36), "{v}");
    assert_eq!(code("rule_over_project"), "InvalidParameterException");
    assert!(message("rule_over_project").contains("already holds repositories"), "{v}");

    // Scanning settings.
    assert_eq!(v["scan_on_push"], true);
    assert_eq!(v["registry_scanning_default"], json!({"scanType": "BASIC", "rules": []}));
    assert_eq!(v["registry_scanning"]["rules"][0]["repositoryFilters"][0]["filter"], "team/reg*");
    assert_eq!(code("bad_frequency"), "ValidationException");
    assert!(message("bad_frequency").contains("HOURLY"), "{v}");
    assert_eq!(code("member_scanning"), "AccessDeniedException");

    // The lifecycle preview: the older v* image would go.
    assert_eq!(code("no_preview"), "LifecyclePolicyPreviewNotFoundException");
    assert_eq!(code("no_policy"), "LifecyclePolicyNotFoundException");
    assert_eq!(v["preview_started"], "IN_PROGRESS");
    assert_eq!(v["preview"]["status"], "COMPLETE");
    assert_eq!(v["preview"]["expiring"], 1);
    assert_eq!(v["preview"]["results"], json!([[v["v1_digest"], "EXPIRE", 1]]));
    assert_eq!(s.get("/v2/team/app/manifests/v1").await.status(), StatusCode::OK, "a preview deletes nothing");

    // Replication and pull-through cache rules, as configured.
    assert_eq!(v["replication_read_back"], true, "{v}");
    assert_eq!(code("bad_destination"), "InvalidParameterException");
    assert!(message("bad_destination").contains("no registry endpoint 99"), "{v}");
    assert_eq!(v["rule"], json!({"prefix": "hub", "url": upstream.url}));
    assert_eq!(code("rule_again"), "PullThroughCacheRuleAlreadyExistsException");
    assert_eq!(v["rules"], json!(["hub"]));
    assert_eq!(code("rule_missing"), "PullThroughCacheRuleNotFoundException");
    assert_eq!(code("member_rule"), "AccessDeniedException");

    // What they do: pushes are scanned by the repository's and the registry's settings,
    // team/rep… is replicated, hub/… is pulled through from upstream.
    scannable(&s, "team/app", "v5").await;
    crate::scan::scanned(&s, "team", "app", "v5").await;
    scannable(&s, "team/regional", "v1").await;
    crate::scan::scanned(&s, "team", "regional", "v1").await;
    s.push_image("team/rep-a", "v1").await;
    let http = reqwest::Client::new();
    eventually("team/rep-a:v1 to be replicated", async || {
        let url = format!("{}/v2/team/rep-a/manifests/v1", upstream.url);
        let st = http.head(url).header("accept", OCI_MANIFEST).send().await.unwrap().status();
        if st == 200 { Ok(()) } else { Err(st) }
    })
    .await;
    let r = s.get("/v2/hub/lib/alpine/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), Some(cached_digest.as_str()));

    // The aws CLI deletes the rule; what was cached stays.
    let tmp = tempfile::tempdir().unwrap();
    let deleted = run_ok(aws(tmp.path(), &key, &secret).args([
        "ecr",
        "delete-pull-through-cache-rule",
        "--ecr-repository-prefix",
        "hub",
        "--region",
        "ap-south-1",
        "--endpoint-url",
        &s.base,
    ]))
    .await;
    assert!(deleted.contains("\"ecrRepositoryPrefix\": \"hub\""), "{deleted}");
    let listed = run_ok(aws(tmp.path(), &key, &secret).args([
        "ecr",
        "describe-pull-through-cache-rules",
        "--region",
        "ap-south-1",
        "--endpoint-url",
        &s.base,
    ]))
    .await;
    assert!(!listed.contains("\"hub\""), "{listed}");
    let r = s.get(&format!("/v2/hub/lib/alpine/manifests/{cached_digest}")).await;
    assert_eq!(r.status(), StatusCode::OK, "cached content stays");
    s.stop().await;
}

/// The text of the element with this id in a portal page.
fn element(page: &str, id: &str) -> String {
    let start = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {page}"));
    let text = &page[start..];
    text[text.find('>').unwrap() + 1..text.find('<').unwrap()].to_owned()
}

/// The access key id a portal page announces as new.
fn new_key_id(page: &str) -> String {
    let at = page.find("New access key <code>").unwrap_or_else(|| panic!("no new key in {page}"));
    page[at + 21..at + 41].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_of_users_and_robots_in_the_portal_the_api_and_the_cli() {
    let s = TestServer::start().await;
    s.project("team", false).await;
    s.push_image("team/app", "v1").await;
    s.user("dev", "Dev-Passw0rd-1").await;
    s.user("maint", "Maint-Passw0rd-1").await;
    s.member("team", "dev", 2).await;
    s.member("team", "maint", 4).await;
    let tmp = tempfile::tempdir().unwrap();
    let list_images = |key: &str, secret: &str| {
        let mut c = aws(tmp.path(), key, secret);
        c.args(["ecr", "list-images", "--repository-name", "team/app", "--endpoint-url", &s.base]);
        c
    };

    // A user's own keys on the profile page: created (secret shown once), used, deactivated, deleted.
    let web = crate::portal::Web::new(&s, "dev", "Dev-Passw0rd-1").await;
    let (st, page) = web.get("/harbor/profile").await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("No access keys.") && page.contains("Create an access key"), "{page}");
    let (st, page, _) = web.post("/harbor/profile/access-keys", &[("action", "create")]).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let (key, secret) = (new_key_id(&page), element(&page, "access-key-secret"));
    assert!(page.contains("export AWS_ACCESS_KEY_ID=") && page.contains("--endpoint-url"), "{page}");
    let listed = run_ok(&mut list_images(&key, &secret)).await;
    assert!(listed.contains("\"imageTag\": \"v1\""), "{listed}");
    let (_, page) = web.get("/harbor/profile").await;
    assert!(page.contains(&key) && !page.contains(&secret), "listed, the secret not shown again");
    let (st, page, _) = web.post("/harbor/profile/access-keys", &[("action", "deactivate"), ("key", &key)]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("it signs nothing until activated"), "{page}");
    let err = run_fails(&mut list_images(&key, &secret)).await;
    assert!(err.contains("UnrecognizedClientException"), "{err}");
    // A forged form changes nothing.
    let forged = web
        .c
        .post(format!("{}/harbor/profile/access-keys", s.base))
        .header("cookie", &web.cookie)
        .form(&[("csrf", "forged"), ("action", "delete"), ("key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let (st, page, _) = web.post("/harbor/profile/access-keys", &[("action", "delete"), ("key", &key)]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains(&format!("Access key {key} deleted.")) && page.contains("No access keys."), "{page}");
    let (st, page, _) = web.post("/harbor/profile/access-keys", &[("action", "delete"), ("key", &key)]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(page.contains("has no access key"), "{page}");

    // A robot's keys: through the API by who may manage it (not a developer), on its portal
    // page, with the CLI; a pull-only robot's key pulls and deletes nothing.
    let (rid, robot, _) = s.robot("team", "ci", &[("repository", "pull")], -1).await;
    let pid = s.api(reqwest::Method::GET, "/projects/team", None).await.json::<Value>().await.unwrap()["project_id"]
        .as_i64()
        .unwrap();
    let r = client_as("dev", "Dev-Passw0rd-1").post(s.url(&format!("/api/v2.0/robots/{rid}/access-keys"))).send().await;
    assert_eq!(r.unwrap().status(), StatusCode::FORBIDDEN, "a developer does not manage robots");
    let r = s.api(reqwest::Method::POST, &format!("/robots/{rid}/access-keys"), None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let k: Value = r.json().await.unwrap();
    let (rkey, rsecret) = (k["access_key_id"].as_str().unwrap(), k["secret_access_key"].as_str().unwrap());
    let listed = run_ok(&mut list_images(rkey, rsecret)).await;
    assert!(listed.contains("\"imageTag\": \"v1\""), "{listed}");
    let err = run_fails(aws(tmp.path(), rkey, rsecret).args([
        "ecr",
        "batch-delete-image",
        "--repository-name",
        "team/app",
        "--image-ids",
        "imageTag=v1",
        "--endpoint-url",
        &s.base,
    ]))
    .await;
    assert!(err.contains("AccessDeniedException"), "{err}");
    let admin = crate::portal::Web::new(&s, ADMIN, ADMIN_PASSWORD).await;
    let robot_page = format!("/harbor/projects/{pid}/robot-account/{rid}");
    let (st, page) = admin.get(&format!("/harbor/projects/{pid}/robot-account")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains(&format!("href=\"{robot_page}\"")), "the list links each robot's page: {page}");
    let (st, page) = admin.get(&robot_page).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains(rkey) && page.contains("pull repository"), "{page}");
    let (st, page, _) = admin.post(&format!("{robot_page}/access-keys"), &[("action", "create")]).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let second = new_key_id(&page);
    let (st, page, _) = admin.post(&format!("{robot_page}/access-keys"), &[("action", "create")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(page.contains("has 2 access keys already"), "{page}");
    // A maintainer sees the robot's keys but no buttons, and its forms are refused.
    let maint = crate::portal::Web::new(&s, "maint", "Maint-Passw0rd-1").await;
    let (st, page) = maint.get(&robot_page).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains(&second) && !page.contains("Create an access key"), "{page}");
    let (st, _, _) = maint.post(&format!("{robot_page}/access-keys"), &[("action", "delete"), ("key", &second)]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The CLI, as the administrator, on the robot's keys.
    let berth = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base)
            .env("BERTH_USERNAME", ADMIN)
            .env("BERTH_PASSWORD", ADMIN_PASSWORD)
            .args(["access-key", "--robot", &robot])
            .args(args);
        c
    };
    let list = run_ok(&mut berth(&["list"])).await;
    assert!(list.contains(rkey) && list.contains(&second), "{list}");
    run_ok(&mut berth(&["delete", &second])).await;
    assert!(!run_ok(&mut berth(&["list"])).await.contains(&second));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_login_password_gives_a_short_lived_registry_password() {
    let s = TestServer::start().await;
    s.project("team", false).await;
    s.user("dev", "Dev-Passw0rd-1").await;
    s.member("team", "dev", 2).await;
    let berth = |user: &str, pw: &str, args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.env("BERTH_URL", &s.base).env("BERTH_USERNAME", user).env("BERTH_PASSWORD", pw).arg("login-password");
        c.args(args);
        c
    };
    let password = run_ok(&mut berth("dev", "Dev-Passw0rd-1", &[])).await.trim().to_owned();
    assert_eq!(password.matches('.').count(), 2, "one line, the password alone: {password}");
    let v: Value =
        serde_json::from_str(&run_ok(&mut berth("dev", "Dev-Passw0rd-1", &["--output", "json"])).await).unwrap();
    assert_eq!(v["username"], "dev");
    assert!(v["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");

    // Piped into skopeo login, then a push and a pull with that login.
    let tmp = tempfile::tempdir().unwrap();
    let auth = tmp.path().join("auth.json");
    let mut login = Command::new("skopeo")
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["login", "--tls-verify=false", "--username", "dev", "--password-stdin", &s.host()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login.stdin.take().unwrap().write_all(password.as_bytes()).await.unwrap();
    let out = login.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let layout = make_oci_layout(tmp.path());
    let dest = format!("docker://{}/team/app:v1", s.host());
    run_ok(
        Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", &auth)
            .args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:single", layout.display()))
            .arg(&dest),
    )
    .await;
    // It is dev's password only: not another account's, and not once dev's password changed.
    assert_eq!(client_as(ADMIN, &password).get(s.url("/api/v2.0/users/current")).send().await.unwrap().status(), 401);
    let me = client_as("dev", &password).get(s.url("/api/v2.0/users/current")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let id = me.json::<Value>().await.unwrap()["user_id"].as_i64().unwrap();
    let body = json!({"old_password": "Dev-Passw0rd-1", "new_password": "Dev-Passw0rd-2"});
    let r = client_as("dev", "Dev-Passw0rd-1").put(s.url(&format!("/api/v2.0/users/{id}/password"))).json(&body);
    assert_eq!(r.send().await.unwrap().status(), StatusCode::OK);
    let r = client_as("dev", &password).get(s.url("/api/v2.0/users/current")).send().await.unwrap();
    assert_eq!(r.status(), 401, "a password change voids it");
    // Robots get theirs too.
    let (_, robot, robot_secret) = s.robot("team", "ci", &[("repository", "pull")], -1).await;
    let password = run_ok(&mut berth(&robot, &robot_secret, &[])).await.trim().to_owned();
    let r = client_as(&robot, &password).get(s.url("/v2/team/app/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}
