//! One authorization decision: the same matrix of callers and operations, asked through
//! `/v2` and through `/api/v2.0`, gets the same answers — and the answers the roles,
//! robot permissions and repository policy say.

use reqwest::{Client, Method, StatusCode};
use serde_json::json;

use crate::support::*;

const PW: &str = "Matrix-Pw-1";

/// What the caller is.
enum Who {
    Anonymous,
    User(&'static str),
    Robot(String, String),
}

impl Who {
    fn client(&self) -> Client {
        match self {
            Who::Anonymous => Client::new(),
            Who::User(u) => client_as(u, PW),
            Who::Robot(n, s) => client_as(n, s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `GET /v2/…/tags/list` | `GET …/artifacts/{digest}/tags`: pull, ecr:ListImages.
    ListTags,
    /// `DELETE /v2/…/manifests/{tag}` | `DELETE …/artifacts/{digest}/tags/{tag}`: delete tag, ecr:BatchDeleteImage.
    DeleteTag,
    /// `DELETE /v2/…/manifests/{digest}` | `DELETE …/artifacts/{digest}`: delete artifact, ecr:BatchDeleteImage.
    DeleteArtifact,
}

const OPS: [Op; 3] = [Op::ListTags, Op::DeleteTag, Op::DeleteArtifact];

/// Allowed (`true`) or refused; panics on anything that is neither (a 5xx, a missing target).
fn decision(surface: &str, who: &str, op: Op, status: StatusCode) -> bool {
    match status.as_u16() {
        200..=299 => true,
        // 404: the management API hides projects a caller may not see.
        401 | 403 => false,
        404 if surface == "api" => false,
        other => panic!("{who} {op:?} through {surface}: unexpected status {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_surfaces_make_the_same_decisions() {
    let s = TestServer::start_with(|c| c.auth.create_projects_on_push = false).await;
    s.project("mx", false).await;
    for (name, role) in [("padmin", 1), ("developer", 2), ("guest", 3), ("maintainer", 4), ("lguest", 5), ("frozen", 4)]
    {
        s.user(name, PW).await;
        s.member("mx", name, role).await;
    }
    s.user("outsider", PW).await;
    let root = s.user("root2", PW).await;
    let r = s.api(Method::PUT, &format!("/users/{root}/sysadmin"), Some(json!({"sysadmin_flag": true}))).await;
    assert_eq!(r.status(), 200);
    let full_access = [("repository", "pull"), ("repository", "delete"), ("tag", "delete"), ("artifact", "delete")];
    let (_, full, full_secret) = s.robot("mx", "full", &full_access, -1).await;
    let (_, reader, reader_secret) = s.robot("mx", "reader", &[("repository", "pull")], -1).await;
    let (expired_id, expired, expired_secret) = s.robot("mx", "expired", &[("repository", "pull")], -1).await;
    {
        use berth_meta::AccessStore;
        let meta = berth_meta::SqlMetaStore::open_sqlite(s.data_dir().join("meta.db")).await.unwrap();
        let mut rec = meta.robot(expired_id).await.unwrap().unwrap();
        rec.expires_at = 1_000;
        assert!(meta.update_robot(&rec, &berth_meta::Origin::system()).await.unwrap());
    }

    let manifest = s.push_image("mx/app", "t").await;
    let digest = sha256(&manifest);
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "outsider-curates", "Effect": "Allow", "Principal": {"AWS": "outsider"},
         "Action": ["ecr:ListImages", "ecr:BatchDeleteImage"]},
        {"Sid": "freeze", "Effect": "Deny", "Principal": {"AWS": "frozen"}, "Action": "ecr:*"}]});
    let r = s.api(Method::PUT, "/projects/mx/repositories/app/policy", Some(policy)).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // (caller, expected decisions for ListTags, DeleteTag, DeleteArtifact)
    let matrix: Vec<(&str, Who, [bool; 3])> = vec![
        ("anonymous", Who::Anonymous, [false, false, false]),
        ("projectAdmin", Who::User("padmin"), [true, true, true]),
        ("maintainer", Who::User("maintainer"), [true, true, true]),
        ("developer", Who::User("developer"), [true, false, false]),
        ("guest", Who::User("guest"), [true, false, false]),
        ("limitedGuest", Who::User("lguest"), [true, false, false]),
        ("robot with the permissions", Who::Robot(full, full_secret), [true, true, true]),
        ("robot with pull only", Who::Robot(reader, reader_secret), [true, false, false]),
        ("expired robot", Who::Robot(expired, expired_secret), [false, false, false]),
        ("sysadmin", Who::User("root2"), [true, true, true]),
        ("non-member allowed by the repository policy", Who::User("outsider"), [true, true, true]),
        ("maintainer denied by the repository policy", Who::User("frozen"), [false, false, false]),
    ];

    let api = |p: &str| s.url(&format!("/api/v2.0/projects/mx/repositories/app{p}"));
    let mut mismatches = Vec::new();
    for (who_name, who, expected) in &matrix {
        let c = who.client();
        for (op, want) in OPS.iter().zip(expected) {
            let mut got = Vec::new();
            for surface in ["v2", "api"] {
                // Put back what an allowed delete removed, so every attempt meets the same state.
                let r = s.put_manifest("mx/app", "t", OCI_MANIFEST, &manifest).await;
                assert_eq!(r.status(), 201);
                let r = s.put_manifest("mx/app", "t2", OCI_MANIFEST, &manifest).await;
                assert_eq!(r.status(), 201);
                let req = match (surface, op) {
                    ("v2", Op::ListTags) => c.get(s.url("/v2/mx/app/tags/list")),
                    ("v2", Op::DeleteTag) => c.delete(s.url("/v2/mx/app/manifests/t2")),
                    ("v2", Op::DeleteArtifact) => c.delete(s.url(&format!("/v2/mx/app/manifests/{digest}"))),
                    (_, Op::ListTags) => c.get(api(&format!("/artifacts/{digest}/tags"))),
                    (_, Op::DeleteTag) => c.delete(api(&format!("/artifacts/{digest}/tags/t2"))),
                    (_, Op::DeleteArtifact) => c.request(Method::DELETE, api(&format!("/artifacts/{digest}"))),
                };
                let status = req.send().await.unwrap().status();
                got.push(decision(surface, who_name, *op, status));
            }
            if got[0] != got[1] || got[0] != *want {
                mismatches.push(format!("{who_name} {op:?}: /v2 {} /api/v2.0 {} expected {want}", got[0], got[1]));
            }
        }
    }
    assert!(mismatches.is_empty(), "decisions differ:\n{}", mismatches.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sysadmin_can_always_remove_a_policy_that_denies_everything() {
    let s = TestServer::start().await;
    s.push_image("lock/app", "v1").await;
    let deny_all = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "nobody", "Effect": "Deny", "Principal": "*", "Action": "ecr:*"}]});
    let r = s.api(Method::PUT, "/projects/lock/repositories/app/policy", Some(deny_all.clone())).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // It binds the administrator too, for everything but managing the policy itself.
    assert_eq!(s.get("/v2/lock/app/manifests/v1").await.status(), 403);
    let r = s.api(Method::PUT, "/projects/lock/repositories/app/policy", Some(deny_all.clone())).await;
    assert_eq!(r.status(), 200, "a sysadmin may replace it");
    let got = s.api(Method::GET, "/projects/lock/repositories/app/policy", None).await;
    assert_eq!(got.json::<serde_json::Value>().await.unwrap(), deny_all);
    // …and find every policy there is.
    let all: serde_json::Value = s.api(Method::GET, "/repository-policies", None).await.json().await.unwrap();
    assert_eq!(all[0]["repository"], "lock/app");
    assert_eq!(all[0]["policy"], deny_all);
    assert_eq!(s.anon().get(s.url("/api/v2.0/repository-policies")).send().await.unwrap().status(), 401);
    assert_eq!(s.api(Method::DELETE, "/projects/lock/repositories/app/policy", None).await.status(), 200);
    assert_eq!(s.get("/v2/lock/app/manifests/v1").await.status(), 200, "the repository is usable again");
}
