//! The conformance suite every [`MetaStore`] backend must pass. Call [`run`] on an empty store.

use berth_types::{Digest, RepoName, Tag};

use crate::{ManifestRecord, MetaStore, Origin, RefKind, RepoSummary, UploadRecord};

fn repo(s: &str) -> RepoName {
    s.parse().expect("valid test repo")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("valid test tag")
}

fn manifest(content: &str, subject: Option<&Digest>, artifact_type: Option<&str>, at: i64) -> ManifestRecord {
    ManifestRecord {
        digest: Digest::sha256_of(content.as_bytes()),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: artifact_type.map(str::to_owned),
        size: content.len() as i64,
        subject: subject.cloned(),
        annotations: None,
        created_at: at,
    }
}

/// Run every check against `store`, which must be empty.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run(store: &dyn MetaStore) {
    let o = Origin::new("tester", Some("127.0.0.1".into()));
    let a = repo("proj/a");
    let b = repo("proj/b");
    let blob = Digest::sha256_of(b"layer");

    // blob links are per repository
    assert!(!store.repo_exists(&a).await.unwrap());
    assert_eq!(store.repo_blob(&a, &blob).await.unwrap(), None);
    assert_eq!(store.any_blob(&blob).await.unwrap(), None);
    link(store, &a, &blob, 5, 1).await;
    link(store, &a, &blob, 5, 2).await;
    assert!(store.repo_exists(&a).await.unwrap());
    assert_eq!(store.repo_blob(&a, &blob).await.unwrap(), Some(5));
    assert_eq!(store.repo_blob(&b, &blob).await.unwrap(), None);
    assert_eq!(store.any_blob(&blob).await.unwrap(), Some(5));

    // manifests, tags, atomic put with refs
    let m1 = manifest("m1", None, None, 10);
    store
        .put_manifest(&a, &m1, b"m1", &[(blob.clone(), RefKind::Blob)], &[tag("v1"), tag("latest")], &o)
        .await
        .unwrap();
    assert_eq!(store.get_manifest(&a, &m1.digest).await.unwrap(), Some(m1.clone()));
    assert_eq!(store.get_tagged_manifest(&a, &tag("v1")).await.unwrap(), Some(m1.clone()));
    assert_eq!(store.get_tagged_manifest(&b, &tag("v1")).await.unwrap(), None);
    assert_eq!(store.manifest_content(&m1.digest).await.unwrap().as_deref(), Some(&b"m1"[..]));
    assert_eq!(store.manifest_content(&blob).await.unwrap(), None);
    let other = Digest::sha256_of(b"absent");
    assert_eq!(
        store.present_manifests(&a, &[m1.digest.clone(), other.clone()]).await.unwrap(),
        vec![m1.digest.clone()]
    );
    assert!(store.present_manifests(&b, std::slice::from_ref(&m1.digest)).await.unwrap().is_empty());
    assert_eq!(store.repo_blob_sizes(&a, &[blob.clone(), other.clone()]).await.unwrap(), vec![(blob.clone(), 5)]);
    assert!(store.repo_blob_sizes(&b, std::slice::from_ref(&blob)).await.unwrap().is_empty());
    assert_eq!(store.get_manifest(&b, &m1.digest).await.unwrap(), None, "manifests are per repository");
    assert_eq!(store.resolve_tag(&a, &tag("v1")).await.unwrap(), Some(m1.digest.clone()));
    // re-putting the same manifest is idempotent and can move tags
    let m2 = manifest("m2", None, None, 11);
    store.put_manifest(&a, &m2, b"m2", &[], &[tag("latest")], &o).await.unwrap();
    store.put_manifest(&a, &m1, b"m1", &[(blob.clone(), RefKind::Blob)], &[], &o).await.unwrap();
    assert_eq!(store.resolve_tag(&a, &tag("latest")).await.unwrap(), Some(m2.digest.clone()));
    assert_eq!(store.list_tags(&a, None, 100).await.unwrap(), vec!["latest", "v1"]);

    // lexical order and pagination
    for t in ["b", "a", "C", "c10", "c2"] {
        store.put_manifest(&b, &m1, b"m1", &[], &[tag(t)], &o).await.unwrap();
    }
    assert_eq!(store.list_tags(&b, None, 100).await.unwrap(), vec!["C", "a", "b", "c10", "c2"]);
    assert_eq!(store.list_tags(&b, None, 2).await.unwrap(), vec!["C", "a"]);
    assert_eq!(store.list_tags(&b, Some("a"), 2).await.unwrap(), vec!["b", "c10"]);
    assert_eq!(store.list_tags(&b, Some("c2"), 2).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.list_repos(None, 10).await.unwrap(), vec!["proj/a", "proj/b"]);
    assert_eq!(store.list_repos(Some("proj/a"), 10).await.unwrap(), vec!["proj/b"]);
    assert_eq!(store.list_repos(None, 1).await.unwrap(), vec!["proj/a"]);

    // referrers, with artifact type filter
    let sig = manifest("sig", Some(&m1.digest), Some("application/vnd.example.sig"), 20);
    let sbom = manifest("sbom", Some(&m1.digest), Some("application/spdx+json"), 21);
    store.put_manifest(&a, &sig, b"sig", &[], &[], &o).await.unwrap();
    store.put_manifest(&a, &sbom, b"sbom", &[], &[], &o).await.unwrap();
    let all = store.referrers(&a, &m1.digest, None).await.unwrap();
    assert_eq!(all.iter().map(|m| m.digest.clone()).collect::<Vec<_>>(), vec![sig.digest.clone(), sbom.digest.clone()]);
    let only = store.referrers(&a, &m1.digest, Some("application/spdx+json")).await.unwrap();
    assert_eq!(only, vec![sbom.clone()]);
    assert!(store.referrers(&b, &m1.digest, None).await.unwrap().is_empty());

    // deletes
    assert!(store.delete_tag(&a, &tag("v1"), &o).await.unwrap());
    assert!(!store.delete_tag(&a, &tag("v1"), &o).await.unwrap());
    assert_eq!(store.resolve_tag(&a, &tag("v1")).await.unwrap(), None);
    assert!(store.get_manifest(&a, &m1.digest).await.unwrap().is_some(), "deleting a tag keeps the manifest");
    assert!(store.delete_manifest(&b, &m1.digest, &o).await.unwrap());
    assert!(store.list_tags(&b, None, 100).await.unwrap().is_empty(), "deleting a manifest removes its tags");
    assert!(!store.delete_manifest(&b, &m1.digest, &o).await.unwrap());
    assert!(store.unlink_blob(&a, &blob, &o).await.unwrap());
    assert!(!store.unlink_blob(&a, &blob, &o).await.unwrap());
    assert_eq!(store.repo_blob(&a, &blob).await.unwrap(), None);

    // uploads
    let up = UploadRecord { id: "u1".into(), repo: a.clone(), owner: "alice".into(), created_at: 100, updated_at: 100 };
    assert_eq!(store.create_upload(&up, 10, 10).await.unwrap(), None);
    assert!(store.create_upload(&up, 10, 10).await.is_err(), "upload ids are unique");
    // Caps: per repository, then per owner.
    let other = |id: &str, repo: &RepoName, owner: &str| UploadRecord {
        id: id.into(),
        repo: repo.clone(),
        owner: owner.into(),
        created_at: 100,
        updated_at: 100,
    };
    let b = repo("capped/b");
    assert_eq!(store.create_upload(&other("u2", &a, "bob"), 2, 10).await.unwrap(), None);
    assert_eq!(store.create_upload(&other("u3", &a, "carol"), 2, 10).await.unwrap(), Some("repository"));
    assert_eq!(store.create_upload(&other("u4", &b, "alice"), 10, 1).await.unwrap(), Some("account"));
    assert_eq!(store.get_upload("u3").await.unwrap(), None, "a refused session is not recorded");
    assert!(store.delete_upload("u2").await.unwrap());
    assert_eq!(store.get_upload("u1").await.unwrap(), Some(up.clone()));
    assert_eq!(store.stale_uploads(101).await.unwrap(), vec!["u1"]);
    store.touch_upload("u1", 200).await.unwrap();
    assert!(store.stale_uploads(101).await.unwrap().is_empty());
    assert!(store.delete_upload("u1").await.unwrap());
    assert_eq!(store.get_upload("u1").await.unwrap(), None);
    // A commit links the blob and ends its session in one transaction.
    store.create_upload(&other("u5", &a, "alice"), 10, 10).await.unwrap();
    let committed = Digest::sha256_of(b"committed by u5");
    store.pin_blob(&committed, 15, 300, 300 + crate::PIN_LEASE_MS).await.unwrap();
    store.link_blob(&a, &committed, 300, 301, Some("u5")).await.unwrap();
    assert_eq!(store.get_upload("u5").await.unwrap(), None, "the session ended with the link");
    assert!(store.repo_blob(&a, &committed).await.unwrap().is_some(), "and the blob is linked");
}

/// The job-queue checks, against an empty queue.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_jobs(q: &dyn crate::JobQueue) {
    use crate::{JobState, NewJob};
    let job = |kind: &str, key: Option<&str>, at: i64| NewJob {
        kind: kind.into(),
        payload: "{\"n\":1}".into(),
        dedup_key: key.map(str::to_owned),
        max_attempts: 3,
        run_after: at,
    };
    // enqueue and de-duplicate while queued
    let a = q.enqueue(&job("scan", Some("scan:x"), 0), 1).await.unwrap().expect("enqueued");
    assert_eq!(q.enqueue(&job("scan", Some("scan:x"), 0), 2).await.unwrap(), None, "deduplicated while queued");
    let b = q.enqueue(&job("scan", None, 0), 3).await.unwrap().expect("no key, no dedup");
    let later = q.enqueue(&job("scan", None, 1_000), 4).await.unwrap().unwrap();
    assert_eq!(q.job(&a).await.unwrap().unwrap().state, JobState::Queued);

    // claim respects kind, due time and the concurrency limit
    assert!(q.claim("gc", "w1", 10, 100, 5).await.unwrap().is_none());
    let c1 = q.claim("scan", "w1", 10, 100, 1).await.unwrap().expect("claimed");
    assert_eq!(c1.id, a, "oldest due first");
    assert_eq!((c1.state, c1.attempts, c1.lease_owner.as_deref()), (JobState::Running, 1, Some("w1")));
    assert!(q.claim("scan", "w2", 11, 100, 1).await.unwrap().is_none(), "limit 1 running");
    let c2 = q.claim("scan", "w2", 11, 100, 2).await.unwrap().expect("second slot");
    assert_eq!(c2.id, b);
    assert!(q.claim("scan", "w3", 12, 100, 5).await.unwrap().is_none(), "the third is not due yet");
    // dedup holds while running, and frees when finished
    assert_eq!(q.enqueue(&job("scan", Some("scan:x"), 0), 13).await.unwrap(), None);

    // heartbeat extends; the wrong owner cannot
    assert!(q.heartbeat(&a, "w1", 200, 50).await.unwrap());
    assert!(!q.heartbeat(&a, "w2", 300, 50).await.unwrap());
    assert!(q.succeed(&a, "w1", 60).await.unwrap());
    let done = q.job(&a).await.unwrap().unwrap();
    assert_eq!((done.state, done.finished_at), (JobState::Succeeded, Some(60)));
    assert!(q.enqueue(&job("scan", Some("scan:x"), 0), 61).await.unwrap().is_some(), "key free after success");

    // an expired lease is claimable by another worker; the old owner has lost it
    let taken = q.claim("scan", "w9", 150, 400, 5).await.unwrap().expect("expired lease reclaimed");
    assert_eq!((taken.id.as_str(), taken.attempts), (b.as_str(), 2));
    assert!(!q.heartbeat(&b, "w2", 500, 151).await.unwrap(), "the dead worker's heartbeat fails");
    assert!(!q.succeed(&b, "w2", 152).await.unwrap(), "and it cannot finish the job");

    // failure with retry, then for good
    assert!(q.fail(&b, "w9", "boom", Some(170), 160).await.unwrap());
    let r = q.job(&b).await.unwrap().unwrap();
    assert_eq!((r.state, r.last_error.as_deref(), r.run_after), (JobState::Queued, Some("boom"), 170));
    assert!(q.claim("scan", "w9", 165, 400, 5).await.unwrap().is_none_or(|j| j.id != b), "not before retry time");
    let again = q.jobs(Some("scan"), Some(JobState::Running), 10).await.unwrap();
    for j in again {
        q.succeed(&j.id, j.lease_owner.as_deref().unwrap(), 166).await.unwrap();
    }
    let r = q.claim("scan", "w9", 171, 400, 5).await.unwrap().unwrap();
    assert_eq!(r.id, b);
    assert!(q.fail(&b, "w9", "still broken", None, 172).await.unwrap());
    let r = q.job(&b).await.unwrap().unwrap();
    assert_eq!((r.state, r.attempts, r.last_error.as_deref()), (JobState::Failed, 3, Some("still broken")));

    // cancel
    assert!(q.cancel(&later, 180, &Origin::new("admin", None)).await.unwrap());
    assert!(!q.cancel(&later, 181, &Origin::new("admin", None)).await.unwrap());
    assert_eq!(q.job(&later).await.unwrap().unwrap().state, JobState::Cancelled);
    assert!(
        q.claim("scan", "w1", 2_000, 3_000, 5).await.unwrap().is_none_or(|j| j.id != later),
        "cancelled never runs"
    );

    // a job whose worker dies on every attempt is given up, not retried for ever
    let mut crashy = job("crashy", None, 0);
    crashy.max_attempts = 2;
    let c = q.enqueue(&crashy, 200).await.unwrap().unwrap();
    assert_eq!(q.claim("crashy", "w1", 201, 210, 5).await.unwrap().unwrap().attempts, 1);
    assert!(q.reap("crashy", 205).await.unwrap().is_empty(), "its lease still runs");
    assert_eq!(q.claim("crashy", "w2", 211, 220, 5).await.unwrap().unwrap().attempts, 2, "retried once");
    assert!(q.claim("crashy", "w3", 221, 230, 5).await.unwrap().is_none(), "not a third time");
    let dead = q.reap("crashy", 222).await.unwrap();
    assert_eq!(dead.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec![c.as_str()]);
    let r = q.job(&c).await.unwrap().unwrap();
    assert_eq!(r.state, JobState::Failed);
    assert!(
        r.last_error.as_deref().unwrap().contains("stopped (crashed or was killed) on each of its 2 attempts"),
        "{r:?}"
    );
    assert!(q.reap("crashy", 223).await.unwrap().is_empty(), "reaped once");

    // a burst of concurrent claims never exceeds the concurrency limit
    for _ in 0..12 {
        q.enqueue(&job("burst", None, 0), 190).await.unwrap().unwrap();
    }
    let owners: Vec<String> = (0..16).map(|i| format!("b{i}")).collect();
    let claims = futures::future::join_all(owners.iter().map(|o| q.claim("burst", o, 200, 10_000, 2))).await;
    let won = claims.into_iter().map(Result::unwrap).filter(Option::is_some).count();
    assert_eq!(won, 2, "16 concurrent claims with a limit of 2");

    // listing
    let failed = q.jobs(Some("scan"), Some(JobState::Failed), 10).await.unwrap();
    assert_eq!(failed.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![b.clone()]);
    assert_eq!(q.jobs(None, Some(JobState::Failed), 10).await.unwrap().len(), 2, "and the crashy one");
    assert!(q.jobs(Some("scan"), None, 100).await.unwrap().len() >= 4);
    assert!(q.job("nope").await.unwrap().is_none());
}

/// The [`crate::AccessStore`] checks (on an empty store that also implements [`MetaStore`]):
/// unique names, cascades, memberships through groups, policies, the audit log's filters
/// and paging, pull counts, artifacts, repository deletion and signing keys.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_access<S: crate::AccessStore + MetaStore>(store: &S) {
    let o = Origin::system();
    use crate::{AuditQuery, AuditRecord, MemberEntity, MetaError, NewUser, RobotRecord, SigningKeyRecord};

    // users: ids, uniqueness, profile, secrets, groups
    let nu =
        |name: &str| NewUser { username: name.into(), password_hash: Some("$argon2id$x".into()), ..Default::default() };
    let alice = store.create_user(&nu("alice"), 10, &o).await.unwrap();
    let bob = store
        .create_user(&NewUser { oidc_subject: Some("iss|42".into()), groups: vec!["devs".into()], ..nu("bob") }, 11, &o)
        .await
        .unwrap();
    assert!(bob > alice);
    assert!(matches!(store.create_user(&nu("alice"), 12, &o).await, Err(MetaError::Conflict(_))));
    assert_eq!(store.user_by_name("alice").await.unwrap().unwrap().id, alice);
    assert_eq!(store.user_by_oidc_subject("iss|42").await.unwrap().unwrap().groups, vec!["devs".to_owned()]);
    assert!(store.update_user_profile(alice, "a@x", "Alice", "hi", 13, &o).await.unwrap());
    assert!(store.set_cli_secret(alice, Some("sha256:ab"), 14, &o).await.unwrap());
    let a = store.user(alice).await.unwrap().unwrap();
    assert_eq!((a.email.as_str(), a.cli_secret_hash.as_deref(), a.cli_secret_at), ("a@x", Some("sha256:ab"), Some(14)));
    assert!(store.set_cli_secret(alice, None, 15, &o).await.unwrap());
    assert_eq!(store.user(alice).await.unwrap().unwrap().cli_secret_hash, None);
    assert!(store.set_sysadmin(alice, true, 16, &o).await.unwrap());
    assert!(store.user(alice).await.unwrap().unwrap().sysadmin);
    assert!(!store.set_password(9999, "x", 1, &o).await.unwrap());

    // projects, members (direct and by group), cascades
    let mut settings = berth_types::ProjectSettings { auto_scan: true, ..Default::default() };
    settings.severity = berth_types::SeverityThreshold::High;
    settings.scan_filters = vec!["prod-*".into(), "web".into()];
    let p = store.create_project("proj", alice, &settings, 20, &o).await.unwrap();
    assert!(matches!(store.create_project("proj", alice, &settings, 21, &o).await, Err(MetaError::Conflict(_))));
    assert_eq!(store.project_by_name("proj").await.unwrap().unwrap().settings, settings);
    settings.visibility = berth_types::Visibility::Public;
    settings.reuse_sys_cve_allowlist = Some(false);
    assert!(store.update_project(p, &settings, 22, &o).await.unwrap());
    assert_eq!(store.project(p).await.unwrap().unwrap().settings, settings);
    assert!(store.project(p).await.unwrap().unwrap().settings.public());
    let m1 = store.add_member(p, &MemberEntity::User { id: alice, name: String::new() }, 1, 23, &o).await.unwrap();
    store.add_member(p, &MemberEntity::Group("devs".into()), 2, 24, &o).await.unwrap();
    assert!(matches!(
        store.add_member(p, &MemberEntity::User { id: alice, name: String::new() }, 3, 25, &o).await,
        Err(MetaError::Conflict(_))
    ));
    let members = store.members(p).await.unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0].entity, MemberEntity::User { id: alice, name: "alice".into() });
    assert_eq!(store.memberships(bob, &["devs".into()]).await.unwrap(), vec![(p, 2)]);
    assert_eq!(store.memberships(bob, &[]).await.unwrap(), vec![]);
    assert!(store.update_member(p, m1, 4, 26, &o).await.unwrap());
    assert_eq!(store.memberships(alice, &[]).await.unwrap(), vec![(p, 4)]);
    let robot = |name: &str, project| RobotRecord {
        id: 0,
        name: name.into(),
        description: String::new(),
        project_id: project,
        secret_hash: "sha256:00".into(),
        disabled: false,
        duration: -1,
        expires_at: -1,
        permissions: "[]".into(),
        creator: "alice".into(),
        credentials_at: 0,
        created_at: 30,
        updated_at: 30,
    };
    let r1 = store.create_robot(&robot("robot$proj+ci", Some(p)), &o).await.unwrap();
    let r2 = store.create_robot(&robot("robot$sys", None), &o).await.unwrap();
    assert!(matches!(store.create_robot(&robot("robot$sys", None), &o).await, Err(MetaError::Conflict(_))));
    let mut rr = store.robot(r1).await.unwrap().unwrap();
    rr.disabled = true;
    rr.expires_at = 99;
    rr.updated_at = 31;
    assert!(store.update_robot(&rr, &o).await.unwrap());
    assert_eq!(store.robot_by_name("robot$proj+ci").await.unwrap().unwrap(), rr);
    assert!(store.set_robot_secret(r2, "sha256:11", 32, &o).await.unwrap());
    assert_eq!(store.robots().await.unwrap().len(), 2);
    assert!(store.delete_user(bob, &o).await.unwrap());
    assert_eq!(store.members(p).await.unwrap().len(), 2, "group members stay");
    store.put_repo_policy("proj/app", "{}", 33, &o).await.unwrap();
    store.put_repo_policy("projx/app", "{}", 33, &o).await.unwrap();
    let all: Vec<String> = store.repo_policies().await.unwrap().into_iter().map(|(r, _)| r).collect();
    assert_eq!(all, vec!["proj/app", "projx/app"]);
    assert!(store.delete_project(p, &o).await.unwrap());
    assert!(store.members(p).await.unwrap().is_empty());
    assert_eq!(store.repo_policy("proj/app").await.unwrap(), None, "policies go with their project");
    assert!(store.repo_policy("projx/app").await.unwrap().is_some(), "only that project's");
    assert!(store.delete_repo_policy("projx/app", &o).await.unwrap());
    assert_eq!(store.robots().await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), vec![r2]);

    // repository policies
    assert_eq!(store.repo_policy("proj/a").await.unwrap(), None);
    store.put_repo_policy("proj/a", "{\"v\":1}", 40, &o).await.unwrap();
    store.put_repo_policy("proj/a", "{\"v\":2}", 41, &o).await.unwrap();
    assert_eq!(store.repo_policy("proj/a").await.unwrap().as_deref(), Some("{\"v\":2}"));
    assert!(store.delete_repo_policy("proj/a", &o).await.unwrap());
    assert!(!store.delete_repo_policy("proj/a", &o).await.unwrap());

    // the audit log: filters, prefix, newest first, paging, totals
    let e = |t: i64, user: &str, op: &str, res: &str| AuditRecord {
        op_time: t,
        username: user.into(),
        operation: op.into(),
        resource_type: "artifact".into(),
        resource: res.into(),
        project: Some(res.split('/').next().unwrap().into()),
        client_ip: Some("127.0.0.1".into()),
        result: "success".into(),
        ..Default::default()
    };
    store
        .append_audit(&[
            e(50, "alice", "push", "p1/app:v1"),
            e(51, "bob", "pull", "p1/app:v1"),
            e(52, "alice", "pull", "p2/x:1"),
            e(53, "alice", "pull", "p1%/y:1"),
        ])
        .await
        .unwrap();
    let (all, total) = store.audit_log(&AuditQuery::default(), 0, 2).await.unwrap();
    assert_eq!((total, all.iter().map(|a| a.op_time).collect::<Vec<_>>()), (4, vec![53, 52]));
    let (page2, _) = store.audit_log(&AuditQuery::default(), 2, 2).await.unwrap();
    assert_eq!(page2.iter().map(|a| a.op_time).collect::<Vec<_>>(), vec![51, 50]);
    let q = AuditQuery { username: Some("alice".into()), operation: Some("pull".into()), ..Default::default() };
    assert_eq!(store.audit_log(&q, 0, 10).await.unwrap().1, 2);
    let q = AuditQuery { resource_prefix: Some("p1/".into()), from: Some(51), ..Default::default() };
    let (rows, n) = store.audit_log(&q, 0, 10).await.unwrap();
    assert_eq!((n, rows[0].username.as_str()), (1, "bob"), "only p1/… from 51 on (p1%/… is another prefix)");
    let q = AuditQuery { project: Some("p2".into()), to: Some(60), ..Default::default() };
    assert_eq!(store.audit_log(&q, 0, 10).await.unwrap().1, 1);

    // purging: by age and operation (a dry run only counts), then down to a size
    let pulls = crate::AuditPurge { before: 53, operations: Some(vec!["pull".into()]), ..Default::default() };
    let dry = crate::AuditPurge { dry_run: true, ..pulls.clone() };
    assert_eq!(store.purge_audit(&dry, 70, &o).await.unwrap(), 2, "bob's and alice's pulls before 53");
    assert_eq!(store.audit_log(&AuditQuery::default(), 0, 10).await.unwrap().1, 4, "a dry run deletes nothing");
    assert_eq!(store.purge_audit(&pulls, 70, &o).await.unwrap(), 2);
    let left: Vec<i64> =
        store.audit_log(&AuditQuery::default(), 0, 10).await.unwrap().0.iter().map(|a| a.op_time).collect();
    assert_eq!(left, vec![53, 50]);
    let cap = crate::AuditPurge { before: 0, keep_at_most: Some(1), ..Default::default() };
    assert_eq!(store.purge_audit(&cap, 71, &o).await.unwrap(), 1);
    let left: Vec<i64> =
        store.audit_log(&AuditQuery::default(), 0, 10).await.unwrap().0.iter().map(|a| a.op_time).collect();
    assert_eq!(left, vec![53], "the newest entry is kept");
    let q = crate::EventQuery { kinds: vec![crate::EventKind::AuditPurged], limit: 10, ..Default::default() };
    assert_eq!(store.query_events(&q).await.unwrap().len(), 2, "each purge is logged");

    // repositories of a project, artifacts with tags and sizes, pull counts, deletion
    let (r1n, r2n, other) = (repo("team/app"), repo("team/sub/lib"), repo("teamx/app"));
    let blob = Digest::sha256_of(b"team-layer");
    for r in [&r1n, &r2n, &other] {
        link(store, r, &blob, 100, 60).await;
    }
    let m = manifest("team-manifest", None, None, 61);
    store.put_manifest(&r1n, &m, b"team-manifest", &[(blob.clone(), RefKind::Blob)], &[tag("v1")], &o).await.unwrap();
    assert!(store.put_tag(&r1n, &tag("stable"), &m.digest, 62, &o).await.unwrap());
    assert!(!store.put_tag(&r1n, &tag("x"), &Digest::sha256_of(b"nope"), 62, &o).await.unwrap());
    store.add_pulls(&[("team/app".into(), 3)]).await.unwrap();
    let repos = store.project_repos("team").await.unwrap();
    assert_eq!(repos.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), vec!["team/app", "team/sub/lib"]);
    assert_eq!((repos[0].artifact_count, repos[0].pull_count, repos[0].updated_at), (1, 3, 62));
    let names = |p: (Vec<RepoSummary>, i64)| (p.0.into_iter().map(|r| r.name).collect::<Vec<_>>(), p.1);
    assert_eq!(names(store.project_repos_page("team", "", 1, 1).await.unwrap()), (vec!["team/sub/lib".into()], 2));
    assert_eq!(names(store.project_repos_page("team", "sub", 0, 10).await.unwrap()), (vec!["team/sub/lib".into()], 1));
    // LIKE's wildcards in the search are plain characters.
    assert_eq!(names(store.project_repos_page("team", "a_p", 0, 10).await.unwrap()), (vec![], 0));
    assert_eq!(names(store.project_repos_page("team", "%", 0, 10).await.unwrap()), (vec![], 0));
    assert_eq!(store.repo_counts(&["nope".into(), "team".into()]).await.unwrap(), vec![0, 2]);
    let arts = store.repo_artifacts(&r1n).await.unwrap();
    assert_eq!(arts.len(), 1);
    assert_eq!(arts[0].tags.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), vec!["stable", "v1"]);
    assert_eq!(arts[0].total_size, m.size + 100);
    // The stored manifest count follows a push, a push of the same manifest again, and a delete.
    let m2 = manifest("team-manifest-2", None, None, 63);
    for _ in 0..2 {
        store.put_manifest(&r1n, &m2, b"team-manifest-2", &[(blob.clone(), RefKind::Blob)], &[], &o).await.unwrap();
    }
    let count = || async { store.project_repos_page("team", "app", 0, 10).await.unwrap().0[0].artifact_count };
    assert_eq!(count().await, 2);
    assert!(store.delete_manifest(&r1n, &m2.digest, &o).await.unwrap());
    assert!(!store.delete_manifest(&r1n, &m2.digest, &o).await.unwrap());
    assert_eq!(count().await, 1);
    // Per-repository settings (the ECR API's): by kind, cleared, and gone with the repository.
    store.put_repo_setting(&r1n, "tags", Some(r#"[{"Key":"a","Value":"b"}]"#), &o).await.unwrap();
    store.put_repo_setting(&r1n, "scanning", Some(r#"{"scanOnPush":true}"#), &o).await.unwrap();
    store.put_repo_setting(&r1n, "scanning", None, &o).await.unwrap();
    assert_eq!(store.repo_setting(&r1n, "scanning").await.unwrap(), None);
    assert_eq!(store.repo_setting(&r1n, "tags").await.unwrap().as_deref(), Some(r#"[{"Key":"a","Value":"b"}]"#));
    assert!(store.delete_repo(&r1n, &o).await.unwrap());
    assert_eq!(store.repo_setting(&r1n, "tags").await.unwrap(), None, "settings go with the repository");
    assert!(!store.repo_exists(&r1n).await.unwrap());
    assert_eq!(store.get_manifest(&r1n, &m.digest).await.unwrap(), None);
    assert!(!store.delete_repo(&r1n, &o).await.unwrap());

    // signing keys: the first key is created once; rotation retires, then forgets
    let k = |kid: &str, at: i64| SigningKeyRecord {
        kid: kid.into(),
        private_key: vec![1, 2, 3],
        created_at: at,
        retired_at: None,
    };
    assert_eq!(store.ensure_signing_key(&k("k1", 70)).await.unwrap().kid, "k1");
    assert_eq!(store.ensure_signing_key(&k("k2", 71)).await.unwrap().kid, "k1", "only the first start makes a key");
    store.rotate_signing_key(&k("k3", 80), 0).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| (k.kid.as_str(), k.retired_at)).collect::<Vec<_>>(),
        vec![("k3", None), ("k1", Some(80))]
    );
    store.rotate_signing_key(&k("k4", 90), 85).await.unwrap();
    let kids: Vec<_> = store.signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, vec!["k4", "k3"], "k1 was retired before 85 and is forgotten");

    // access keys: by id and account, (de)activated, deleted, each change logged
    let ak = |id: &str, account: &str| crate::AccessKeyRecord {
        id: id.into(),
        account: account.into(),
        sealed_secret: format!("v1:sealed-{id}"),
        active: true,
        created_at: 100,
    };
    store.create_access_key(&ak("AKIA1", "alice"), &o).await.unwrap();
    store.create_access_key(&ak("AKIA2", "alice"), &o).await.unwrap();
    store.create_access_key(&ak("AKIA3", "robot$sys"), &o).await.unwrap();
    assert!(matches!(store.create_access_key(&ak("AKIA1", "bob"), &o).await, Err(MetaError::Conflict(_))));
    assert_eq!(store.access_key("AKIA1").await.unwrap().unwrap().sealed_secret, "v1:sealed-AKIA1");
    let ids = |v: Vec<crate::AccessKeyRecord>| v.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids(store.access_keys("alice").await.unwrap()), ["AKIA1", "AKIA2"]);
    assert!(store.set_access_key_active("AKIA1", false, 101, &o).await.unwrap());
    assert!(!store.access_key("AKIA1").await.unwrap().unwrap().active);
    assert!(!store.set_access_key_active("AKIA9", false, 101, &o).await.unwrap());
    assert!(store.delete_access_key("AKIA2", 102, &o).await.unwrap());
    assert!(!store.delete_access_key("AKIA2", 102, &o).await.unwrap());
    assert_eq!(store.access_key("AKIA2").await.unwrap(), None);
    let q = crate::EventQuery { kinds: vec![crate::EventKind::AccessKeyChanged], limit: 10, ..Default::default() };
    let ops: Vec<String> =
        store.query_events(&q).await.unwrap().iter().map(|e| e.event.data["op"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ops, ["delete", "deactivate", "create", "create", "create"]);
    // A deleted account's keys go with it (a new account of that name must not inherit them).
    assert!(store.delete_user(alice, &o).await.unwrap());
    assert!(store.delete_robot(r2, &o).await.unwrap());
    assert_eq!((store.access_key("AKIA1").await.unwrap(), store.access_key("AKIA3").await.unwrap()), (None, None));

    // runtime settings: set, replaced, all of them in the event
    assert!(store.settings().await.unwrap().is_empty());
    store.put_settings(&[("token_expiration".into(), "30".into())], 110, &o).await.unwrap();
    let all = store
        .put_settings(&[("token_expiration".into(), "45".into()), ("session_timeout".into(), "60".into())], 111, &o)
        .await
        .unwrap();
    assert_eq!(
        all,
        vec![("session_timeout".to_owned(), "60".to_owned()), ("token_expiration".to_owned(), "45".to_owned())]
    );
    assert_eq!(store.settings().await.unwrap(), all);
    let q = crate::EventQuery { kinds: vec![crate::EventKind::SettingsChanged], limit: 10, ..Default::default() };
    let e = store.query_events(&q).await.unwrap();
    assert_eq!(e[0].event.data["settings"], serde_json::json!({"session_timeout": 60, "token_expiration": 45}));
    assert_eq!(e[0].event.data["changed"], serde_json::json!({"session_timeout": 60, "token_expiration": 45}));
}

/// The [`crate::ScanStore`] checks: imports replace a source's records and bump the
/// generation, inventories and reports by digest, scan states keep the last report,
/// allowlists replace per scope.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_scan<S: crate::ScanStore + crate::EventLog>(store: &S) {
    use crate::VulnSource;
    assert_eq!(store.vuln_generation().await.unwrap(), 0);
    let src = |name: &str, n: i64| VulnSource {
        name: name.into(),
        location: "/x".into(),
        imported_at: 5,
        records: n,
        withdrawn: 0,
        newest_modified: "2026".into(),
    };
    let rec = |id: &str| (id.to_owned(), "2026".to_owned(), format!("{{\"id\":\"{id}\"}}"));
    assert_eq!(store.import_vulns(&src("a", 2), &[rec("A-1"), rec("A-2")]).await.unwrap(), 1);
    assert_eq!(store.import_vulns(&src("b", 1), &[rec("B-1")]).await.unwrap(), 2);
    assert_eq!(store.vuln_records_after("", 10).await.unwrap().len(), 3);
    // a re-import replaces its source only
    assert_eq!(store.import_vulns(&src("a", 1), &[rec("A-3")]).await.unwrap(), 3);
    let all = store.vuln_records_after("", 10).await.unwrap();
    assert_eq!(
        all,
        vec![("A-3".to_owned(), "{\"id\":\"A-3\"}".to_owned()), ("B-1".to_owned(), "{\"id\":\"B-1\"}".to_owned())]
    );
    // pages, in id order
    assert_eq!(store.vuln_records_after("", 1).await.unwrap()[0].0, "A-3");
    assert_eq!(store.vuln_records_after("A-3", 1).await.unwrap()[0].0, "B-1");
    assert!(store.vuln_records_after("B-1", 1).await.unwrap().is_empty());
    let sources = store.vuln_sources().await.unwrap();
    assert_eq!(sources.iter().map(|s| (s.name.as_str(), s.records)).collect::<Vec<_>>(), vec![("a", 1), ("b", 1)]);
    assert_eq!(store.vuln_generation().await.unwrap(), 3);

    store.put_inventory("sha256:1", "{\"inventory\":1}", 10).await.unwrap();
    store.put_inventory("sha256:1", "{\"inventory\":2}", 11).await.unwrap();
    assert_eq!(store.inventory("sha256:1").await.unwrap().as_deref(), Some("{\"inventory\":2}"));
    assert_eq!(store.scan("sha256:1").await.unwrap(), None);
    assert!(store.inventories_after("", 10).await.unwrap().is_empty(), "no scan record yet");
    store.set_scan_state("sha256:1", "p/a", "queued", None, 20).await.unwrap();
    store.set_scan_state("sha256:1", "p/a", "running", None, 21).await.unwrap();
    store.complete_scan("sha256:1", "p/a", Ok(("{\"r\":1}", 3)), 22).await.unwrap();
    let s = store.scan("sha256:1").await.unwrap().unwrap();
    assert_eq!(
        (s.status.as_str(), s.report.as_deref(), s.generation, s.started_at, s.finished_at),
        ("done", Some("{\"r\":1}"), 3, Some(21), Some(22))
    );
    // a new scan that fails keeps the previous report, with the reason
    store.complete_scan("sha256:1", "p/a", Err("broken layer"), 30).await.unwrap();
    let s = store.scan("sha256:1").await.unwrap().unwrap();
    assert_eq!(
        (s.status.as_str(), s.error.as_deref(), s.report.as_deref()),
        ("failed", Some("broken layer"), Some("{\"r\":1}"))
    );
    assert_eq!(store.scans().await.unwrap().len(), 1);
    assert_eq!(
        store.inventories_after("", 10).await.unwrap(),
        vec![("sha256:1".to_owned(), "{\"inventory\":2}".to_owned(), "p/a".to_owned())]
    );
    assert!(store.inventories_after("sha256:1", 10).await.unwrap().is_empty());
    // Reports written in one go; one without an inventory (an index) is listed as such.
    let rows = vec![
        ("sha256:1".to_owned(), "p/a".to_owned(), "{\"r\":2}".to_owned()),
        ("sha256:9".to_owned(), "p/a".to_owned(), "{\"r\":9}".to_owned()),
    ];
    store.put_reports(&rows, 4, 31).await.unwrap();
    let s = store.scan("sha256:1").await.unwrap().unwrap();
    assert_eq!((s.status.as_str(), s.report.as_deref(), s.generation, s.error), ("done", Some("{\"r\":2}"), 4, None));
    assert_eq!(store.reports_without_inventory().await.unwrap(), vec![("sha256:9".to_owned(), "p/a".to_owned())]);
    // Both outcomes are logged as `scan.completed`, in the same transactions.
    let q = crate::EventQuery { kinds: vec![crate::EventKind::ScanCompleted], limit: 10, ..Default::default() };
    let done = store.query_events(&q).await.unwrap();
    let statuses: Vec<_> = done.iter().map(|e| e.event.data["status"].as_str().unwrap().to_owned()).collect();
    assert_eq!(statuses, ["failed", "done"]);
    assert_eq!((done[0].event.repo.as_deref(), done[0].event.digest.as_deref()), (Some("p/a"), Some("sha256:1")));
    assert_eq!(done[0].event.data["error"], "broken layer");

    let o = Origin::new("alice", None);
    store.put_allowlist("", &[("CVE-1".into(), -1)], 40, &o).await.unwrap();
    store.put_allowlist("p", &[("CVE-2".into(), 99), ("CVE-3".into(), -1)], 41, &o).await.unwrap();
    store.put_allowlist("p", &[("CVE-3".into(), -1)], 42, &o).await.unwrap();
    assert_eq!(store.allowlist("").await.unwrap(), vec![("CVE-1".to_owned(), -1)]);
    assert_eq!(store.allowlist("p").await.unwrap(), vec![("CVE-3".to_owned(), -1)]);
    let q = crate::EventQuery { kinds: vec![crate::EventKind::AllowlistChanged], limit: 10, ..Default::default() };
    let changed = store.query_events(&q).await.unwrap();
    assert_eq!(changed.len(), 3);
    assert_eq!(
        (changed[0].event.project.as_deref(), &changed[0].event.data["count"]),
        (Some("p"), &serde_json::json!(1))
    );
    assert_eq!(changed[2].event.data["scope"], "system");

    // Asking for scans marks them queued (a running one stays running) and logs each request.
    let req = |d: &str, sbom| crate::ScanRequest { digest: d.into(), repo: "p/a".into(), sbom };
    store.set_scan_state("sha256:2", "p/a", "running", None, 50).await.unwrap();
    store.request_scans(&[req("sha256:1", false), req("sha256:2", true)], 51, &o).await.unwrap();
    assert_eq!(store.scan("sha256:1").await.unwrap().unwrap().status, "queued");
    assert_eq!(store.scan("sha256:2").await.unwrap().unwrap().status, "running");
    let q = crate::EventQuery { kinds: vec![crate::EventKind::ScanRequested], limit: 10, ..Default::default() };
    let asked = store.query_events(&q).await.unwrap();
    assert_eq!(asked.len(), 2);
    assert_eq!(
        (asked[0].event.digest.as_deref(), &asked[0].event.data["sbom"]),
        (Some("sha256:2"), &serde_json::json!(true))
    );
    assert_eq!(asked[0].event.origin.actor, "alice");
}

/// The [`crate::EventLog`] checks, on an empty store: every registry change logs its events
/// in its own transaction, in order; consumers move atomically with their effects and never
/// twice from the same place; concurrent writers never let a reader skip an event; pruning.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_events<S: crate::EventLog + crate::AccessStore + crate::JobQueue + MetaStore + Clone>(store: &S) {
    use crate::{AuditQuery, AuditRecord, Effect, EventKind as K, EventQuery, NewEvent, NewJob};

    let o = Origin::new("alice", Some("10.0.0.7".into()));
    let a = repo("ev/app");
    let blob = Digest::sha256_of(b"ev-layer");
    assert_eq!(store.last_event_seq().await.unwrap(), 0);
    link(store, &a, &blob, 7, 1).await;
    let m1 = manifest("ev-m1", None, None, 10);
    let m2 = manifest("ev-m2", None, None, 11);
    store
        .put_manifest(&a, &m1, b"ev-m1", &[(blob.clone(), RefKind::Blob)], &[tag("v1"), tag("latest")], &o)
        .await
        .unwrap();
    store.put_manifest(&a, &m2, b"ev-m2", &[], &[tag("latest")], &o).await.unwrap();
    // Re-pushing the same manifest with the same tag changes nothing but logs the push.
    store.put_manifest(&a, &m2, b"ev-m2", &[], &[tag("latest")], &o).await.unwrap();
    assert!(store.put_tag(&a, &tag("stable"), &m1.digest, 12, &o).await.unwrap());
    assert!(!store.put_tag(&a, &tag("nope"), &Digest::sha256_of(b"missing"), 12, &o).await.unwrap());
    assert!(store.delete_tag(&a, &tag("v1"), &o).await.unwrap());
    assert!(!store.delete_tag(&a, &tag("v1"), &o).await.unwrap());
    assert!(store.delete_manifest(&a, &m1.digest, &o).await.unwrap());
    assert!(store.unlink_blob(&a, &blob, &o).await.unwrap());
    assert!(store.delete_repo(&a, &o).await.unwrap());

    let all = store.events_after(0, 1000).await.unwrap();
    let kinds: Vec<(K, Option<&str>)> = all.iter().map(|e| (e.event.kind, e.event.tag.as_deref())).collect();
    assert_eq!(
        kinds,
        vec![
            (K::ArtifactPushed, Some("v1")),
            (K::TagCreated, Some("v1")),
            (K::TagCreated, Some("latest")),
            (K::ArtifactPushed, Some("latest")),
            (K::TagMoved, Some("latest")),
            (K::ArtifactPushed, Some("latest")),
            (K::TagCreated, Some("stable")),
            (K::TagDeleted, Some("v1")),
            (K::ArtifactDeleted, None),
            (K::BlobDeleted, None),
            (K::RepositoryDeleted, None),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "seq grows");
    let moved = &all[4].event;
    assert_eq!(moved.data["from"], m1.digest.to_string());
    assert_eq!(moved.digest.as_deref(), Some(m2.digest.to_string().as_str()));
    assert_eq!((moved.origin.actor.as_str(), moved.origin.client_ip.as_deref()), ("alice", Some("10.0.0.7")));
    assert_eq!((moved.project.as_deref(), moved.repo.as_deref()), (Some("ev"), Some("ev/app")));
    assert_eq!(all[0].event.data["tags"], serde_json::json!(["v1", "latest"]));
    assert_eq!(all[8].event.data["tags"], serde_json::json!(["stable"]), "tags removed with the manifest");
    assert_eq!(all[7].event.digest.as_deref(), Some(m1.digest.to_string().as_str()));
    let last = store.last_event_seq().await.unwrap();
    assert_eq!(last, all[10].seq);
    assert_eq!(store.events_after(all[8].seq, 1000).await.unwrap().len(), 2);
    assert_eq!(store.events_after(0, 3).await.unwrap().len(), 3);

    // Queries for operators: newest first, by kind, repository, actor, position.
    let q = |kinds: Vec<K>| EventQuery { kinds, limit: 100, ..Default::default() };
    let tags = store.query_events(&q(vec![K::TagCreated, K::TagDeleted])).await.unwrap();
    assert_eq!(tags.iter().map(|e| e.event.tag.clone().unwrap()).collect::<Vec<_>>(), ["v1", "stable", "latest", "v1"]);
    let by_repo = EventQuery { repo: Some("ev/app".into()), limit: 2, ..Default::default() };
    assert_eq!(store.query_events(&by_repo).await.unwrap()[0].seq, last);
    let by_actor = EventQuery { actor: Some("bob".into()), limit: 100, ..Default::default() };
    assert!(store.query_events(&by_actor).await.unwrap().is_empty());
    let after = EventQuery { after: Some(all[9].seq), limit: 100, ..Default::default() };
    assert_eq!(store.query_events(&after).await.unwrap().len(), 1);

    // Consumers: effects and cursor move together, once.
    let p = repo("ev/pulled");
    link(store, &p, &blob, 7, 20).await;
    store.put_manifest(&p, &m1, b"ev-m1", &[], &[tag("v1")], &o).await.unwrap();
    assert_eq!(store.consumer_cursor("audit").await.unwrap(), 0);
    let audit = |what: &str| AuditRecord {
        op_time: 30,
        username: "alice".into(),
        operation: what.into(),
        resource_type: "artifact".into(),
        resource: "ev/pulled".into(),
        result: "success".into(),
        ..Default::default()
    };
    let job = NewJob {
        kind: "ev-test".into(),
        payload: "{}".into(),
        dedup_key: Some("ev-test:1".into()),
        max_attempts: 1,
        run_after: 0,
    };
    let pulls = |count, at| Effect::Pulls {
        repo: p.to_string(),
        digest: Some(m1.digest.to_string()),
        tag: Some("v1".to_owned()),
        count,
        at,
    };
    let effects = [Effect::Audit(audit("pull")), pulls(2, 40), Effect::Job(job.clone())];
    assert!(store.advance_consumer("audit", 0, last, &effects, 50).await.unwrap());
    assert_eq!(store.consumer_cursor("audit").await.unwrap(), last);
    // The same batch again (another replica, or a retry after a crash) applies nothing.
    assert!(!store.advance_consumer("audit", 0, last, &effects, 51).await.unwrap());
    let (entries, total) =
        store.audit_log(&AuditQuery { operation: Some("pull".into()), ..Default::default() }, 0, 10).await.unwrap();
    assert_eq!((total, entries[0].username.as_str()), (1, "alice"));
    assert_eq!(store.jobs(Some("ev-test"), None, 10).await.unwrap().len(), 1);
    // Pull times only move forward; counts add up.
    assert!(store.advance_consumer("audit", last, last + 1, &[pulls(1, 35)], 52).await.unwrap());
    let repos = store.project_repos("ev").await.unwrap();
    let pulled = repos.iter().find(|r| r.name == "ev/pulled").unwrap();
    assert_eq!((pulled.pull_count, pulled.pull_time), (3, Some(40)));
    let art = store.repo_artifacts(&p).await.unwrap().remove(0);
    assert_eq!((art.pull_time, art.pull_count), (Some(40), 3), "the artifact's pull time and count");
    assert_eq!(art.tag_pull_times.get("v1"), Some(&40), "the tag it was pulled by, too");
    // A batch of many pulls is written together: the same manifest twice (counts add, the
    // latest time wins), by digest only, and of a repository that is gone (nothing to count).
    let by_digest =
        Effect::Pulls { repo: p.to_string(), digest: Some(m1.digest.to_string()), tag: None, count: 4, at: 45 };
    let gone = Effect::Pulls { repo: "ev/gone".into(), digest: None, tag: Some("x".into()), count: 9, at: 99 };
    let batch = [pulls(1, 44), by_digest, gone, Effect::Audit(audit("pull")), pulls(2, 41)];
    assert!(store.advance_consumer("audit", last + 1, last + 2, &batch, 53).await.unwrap());
    let art = store.repo_artifacts(&p).await.unwrap().remove(0);
    assert_eq!((art.pull_time, art.pull_count), (Some(45), 10));
    assert_eq!(art.tag_pull_times.get("v1"), Some(&44));
    let repos = store.project_repos("ev").await.unwrap();
    let pulled = repos.iter().find(|r| r.name == "ev/pulled").unwrap();
    assert_eq!((pulled.pull_count, pulled.pull_time), (10, Some(45)));
    assert!(!repos.iter().any(|r| r.name == "ev/gone"));
    let cursors = store.consumer_cursors().await.unwrap();
    assert_eq!((cursors.len(), cursors[0].consumer.as_str(), cursors[0].seq), (1, "audit", last + 2));
    // Aggregated entries add to the latest identical one within the window; another
    // address, or an entry older than the window, is an entry of its own.
    let agg = |at: i64, ip: &str, n: i64| {
        Effect::Audit(AuditRecord {
            op_time: at,
            username: "ci".into(),
            operation: "pull".into(),
            resource_type: "artifact".into(),
            resource: "ev/pulled:v1".into(),
            client_ip: Some(ip.into()),
            result: "success".into(),
            repeats: n,
            aggregate: true,
            ..Default::default()
        })
    };
    let late = 10 * crate::AUDIT_MERGE_WINDOW_MS;
    let batch = [agg(late, "10.0.0.1", 2), agg(late + 5, "10.0.0.1", 3), agg(late + 6, "10.0.0.2", 1)];
    assert!(store.advance_consumer("audit", last + 2, last + 3, &batch, 53).await.unwrap());
    let after = late + crate::AUDIT_MERGE_WINDOW_MS + 10;
    assert!(store.advance_consumer("audit", last + 3, last + 4, &[agg(after, "10.0.0.1", 1)], 54).await.unwrap());
    // A later batch adds to the stored entry still within the window (twice), and not to one
    // that has left it.
    let batch = [agg(after + 7, "10.0.0.1", 4), agg(after + 8, "10.0.0.2", 2), agg(after + 9, "10.0.0.1", 1)];
    assert!(store.advance_consumer("audit", last + 4, last + 5, &batch, 55).await.unwrap());
    let q = AuditQuery { username: Some("ci".into()), ..Default::default() };
    let (ci, _) = store.audit_log(&q, 0, 10).await.unwrap();
    let mut seen: Vec<(i64, Option<String>, i64)> =
        ci.iter().map(|e| (e.op_time, e.client_ip.clone(), e.repeats)).collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (late + 5, Some("10.0.0.1".into()), 5),
            (late + 6, Some("10.0.0.2".into()), 1),
            (after + 8, Some("10.0.0.2".into()), 2),
            (after + 9, Some("10.0.0.1".into()), 6)
        ]
    );

    // Appended events (pulls, logins) and concurrent writers: a reader that follows the log
    // while eight writers append sees every event exactly once, in order.
    let start = store.last_event_seq().await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let s = store.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let e = NewEvent::new(K::LoginFailed, 100 + i, &Origin::new(format!("w{w}"), None))
                        .data(serde_json::json!({ "i": i }));
                    s.append_events(&[e.clone(), e]).await.unwrap();
                }
            })
        })
        .collect();
    let (mut cursor, mut seen) = (start, 0usize);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen < 400 {
        assert!(std::time::Instant::now() < deadline, "reader saw only {seen} of 400 events");
        let batch = store.events_after(cursor, 64).await.unwrap();
        for e in &batch {
            assert!(e.seq > cursor);
            cursor = e.seq;
            seen += 1;
        }
        if batch.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(store.events_after(cursor, 10).await.unwrap().len(), 0, "nothing appeared behind the reader");
    assert_eq!(seen, 400);

    // Retention: events before a time go, the rest stay.
    let before = store.events_after(0, 10_000).await.unwrap().len();
    let pruned = store.prune_events(100).await.unwrap() as usize;
    assert!(pruned > 0);
    assert_eq!(store.events_after(0, 10_000).await.unwrap().len(), before - pruned);
    assert!(store.events_after(0, 10_000).await.unwrap().iter().all(|e| e.event.at >= 100));
}

/// Store a blob's record and link it into `repo`, as an upload does (pin, then link).
async fn link<S: MetaStore + ?Sized>(store: &S, repo: &RepoName, digest: &Digest, size: i64, now: i64) {
    store.pin_blob(digest, size, now, now + crate::PIN_LEASE_MS).await.expect("pin a blob");
    store.link_blob(repo, digest, now, now, None).await.expect("link a blob");
}

/// Garbage collection's guarded deletes, runs and schedules. Call on an empty store.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_gc<S: MetaStore + crate::GcStore>(store: &S) {
    use std::sync::{Arc, Mutex};
    let o = Origin::new("tester", None);
    let a = repo("gc/a");
    let (x, y, z) = (Digest::sha256_of(b"x"), Digest::sha256_of(b"y"), Digest::sha256_of(b"z"));
    for d in [&x, &y, &z] {
        link(store, &a, d, 10, 100).await;
    }
    let kept = manifest("kept", None, None, 100);
    store.put_manifest(&a, &kept, b"kept", &[(x.clone(), RefKind::Blob)], &[tag("v1")], &o).await.unwrap();
    let untagged = manifest("untagged", None, None, 100);
    store.put_manifest(&a, &untagged, b"untagged", &[(y.clone(), RefKind::Blob)], &[], &o).await.unwrap();
    let referrer = manifest("sig", Some(&kept.digest), Some("sig"), 100);
    store.put_manifest(&a, &referrer, b"sig", &[], &[], &o).await.unwrap();

    let snap = store.gc_snapshot().await.unwrap();
    let ours = |d: &str| [&x, &y, &z].iter().any(|o| o.to_string() == d);
    assert_eq!(snap.links.iter().filter(|l| l.repo == "gc/a").count(), 3);
    let blobs: Vec<_> = snap.blobs.iter().filter(|b| ours(&b.digest)).collect();
    assert_eq!(blobs.len(), 3);
    assert!(blobs.iter().all(|b| b.pending_until.is_none()), "linking lifts the pin");
    assert_eq!(snap.manifests.iter().filter(|m| m.repo == "gc/a" && m.tagged).count(), 1);
    assert_eq!(snap.refs.iter().filter(|r| r.0 == "gc/a").count(), 2);

    // Only unreferenced links older than the cutoff go.
    let all = [(a.clone(), x.clone()), (a.clone(), y.clone()), (a.clone(), z.clone())];
    assert!(store.gc_unlink(&all, 100).await.unwrap().is_empty(), "linked at the cutoff: kept");
    assert_eq!(store.gc_unlink(&all, 1_000).await.unwrap(), vec![(a.clone(), z.clone())]);

    // Untagged manifests: tagged, young or referrers of a live subject stay.
    assert!(!store.gc_delete_manifest(&a, &kept.digest, 1_000, &o).await.unwrap());
    assert!(!store.gc_delete_manifest(&a, &untagged.digest, 100, &o).await.unwrap());
    assert!(!store.gc_delete_manifest(&a, &referrer.digest, 1_000, &o).await.unwrap());
    assert!(store.gc_delete_manifest(&a, &untagged.digest, 1_000, &o).await.unwrap());
    assert_eq!(store.get_manifest(&a, &untagged.digest).await.unwrap(), None);
    let page = store.project_repos_page("gc", "", 0, 10).await.unwrap().0;
    assert_eq!(
        (page[0].name.as_str(), page[0].artifact_count),
        ("gc/a", 2),
        "only the collected manifest left the count"
    );
    assert_eq!(store.gc_unlink(&all, 1_000).await.unwrap(), vec![(a.clone(), y.clone())]);

    // Blobs: only unlinked, old and unreserved ones; bytes are deleted under the row lock.
    let deleted: Arc<Mutex<Vec<Digest>>> = Arc::default();
    let seen = deleted.clone();
    let bytes = move |ds: Vec<Digest>| -> futures::future::BoxFuture<'static, Result<(), String>> {
        seen.lock().unwrap().extend(ds);
        Box::pin(async { Ok(()) })
    };
    let digests = [x.clone(), y.clone(), z.clone()];
    assert!(store.gc_delete_blobs(&digests, 100, 2_000, &bytes).await.unwrap().is_empty(), "young blobs stay");
    store.pin_blob(&z, 10, 150, 5_000).await.unwrap();
    // A backup's fence keeps every blob.
    assert!(store.hold_fence("gc", "backup-1", 10_000, 2_000).await.unwrap());
    assert!(!store.hold_fence("gc", "backup-2", 10_000, 2_000).await.unwrap(), "held by another");
    let fenced = store.gc_delete_blobs(&digests, 1_000, 2_000, &bytes).await;
    assert!(matches!(&fenced, Err(crate::MetaError::Conflict(m)) if m.contains("backup-1")), "{fenced:?}");
    store.release_fence("gc", "backup-1").await.unwrap();
    assert!(store.hold_fence("gc", "crashed", 1_500, 1_000).await.unwrap());
    assert!(store.hold_fence("gc", "backup-2", 10_000, 2_000).await.unwrap(), "an expired fence is taken over");
    store.release_fence("gc", "backup-2").await.unwrap();
    let mut freed = store.gc_delete_blobs(&digests, 1_000, 2_000, &bytes).await.unwrap();
    freed.sort();
    assert_eq!(freed, vec![(y.clone(), 10)], "x is linked, z is reserved by an upload");
    assert_eq!(*deleted.lock().unwrap(), vec![y.clone()]);
    let failing = |_: Vec<Digest>| -> futures::future::BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Err("disk on fire".to_owned()) })
    };
    assert!(store.gc_delete_blobs(&digests, 1_000, 6_000, &failing).await.is_err());
    let left = store.gc_snapshot().await.unwrap().blobs.iter().filter(|b| ours(&b.digest)).count();
    assert_eq!(left, 2, "a failed byte delete keeps the rows");
    assert_eq!(store.gc_delete_blobs(&digests, 1_000, 6_000, &bytes).await.unwrap(), vec![(z.clone(), 10)]);

    // A push that references a collected blob, or a child that is gone, fails and changes nothing.
    let late = manifest("late", None, None, 2_000);
    match store.put_manifest(&a, &late, b"late", &[(y.clone(), RefKind::Blob)], &[tag("late")], &o).await {
        Err(crate::MetaError::Gone(d)) => assert_eq!(d, vec![y.clone()]),
        other => panic!("expected Gone, got {other:?}"),
    }
    let index = manifest("index", None, None, 2_000);
    let r = store.put_manifest(&a, &index, b"index", &[(untagged.digest.clone(), RefKind::Manifest)], &[], &o).await;
    assert!(matches!(r, Err(crate::MetaError::Gone(_))), "{r:?}");
    assert_eq!(store.resolve_tag(&a, &tag("late")).await.unwrap(), None);
    // A link whose blob was collected after its pin ran out is refused.
    store.pin_blob(&y, 10, 3_000, 4_000).await.unwrap();
    assert!(matches!(store.link_blob(&a, &y, 2_500, 3_100, None).await, Err(crate::MetaError::Gone(_))));
    store.link_blob(&a, &y, 3_000, 3_100, None).await.unwrap();
    // Mounts need a link to mount from.
    let b = repo("gc/b");
    assert_eq!(store.mount_blob(&b, &z, None, 3_000).await.unwrap(), None);
    assert_eq!(store.mount_blob(&b, &x, Some(&b), 3_000).await.unwrap(), None);
    assert_eq!(store.mount_blob(&b, &x, Some(&a), 3_000).await.unwrap(), Some(10));
    assert_eq!(store.repo_blob(&b, &x).await.unwrap(), Some(10));

    // Manifest bytes nobody holds any more.
    assert!(store.gc_orphan_content().await.unwrap() >= 1);
    assert_eq!(store.manifest_content(&untagged.digest).await.unwrap(), None);
    assert!(store.manifest_content(&kept.digest).await.unwrap().is_some());

    // Runs and schedules.
    let id = store.create_gc_run("Manual", r#"{"dry_run":true}"#, 10).await.unwrap();
    let id2 = store.create_gc_run("Schedule", "{}", 11).await.unwrap();
    assert!(id2 > id);
    store.update_gc_run(id, "Success", Some(r#"{"blobs":1}"#), Some("done\n"), 12, None).await.unwrap();
    let run = store.gc_run(id).await.unwrap().unwrap();
    assert_eq!(
        (run.status.as_str(), run.result.as_deref(), run.log.as_str()),
        ("Success", Some(r#"{"blobs":1}"#), "done\n")
    );
    let (page, total) = store.gc_runs(0, 1).await.unwrap();
    assert_eq!((page.len(), page[0].id, total), (1, id2, 2));
    assert_eq!(store.schedule("gc").await.unwrap(), None);
    let s = crate::ScheduleRecord {
        name: "gc".into(),
        kind: "Custom".into(),
        cron: Some("0 0 * * * *".into()),
        parameters: "{}".into(),
        next_at: Some(500),
        created_at: 1,
        updated_at: 1,
    };
    store.put_schedule(&s).await.unwrap();
    assert!(!store.claim_schedule("gc", 500, Some(900), 400).await.unwrap(), "not due yet");
    assert!(store.claim_schedule("gc", 500, Some(900), 600).await.unwrap());
    assert!(!store.claim_schedule("gc", 500, Some(900), 600).await.unwrap(), "claimed once");
    assert_eq!(store.schedule("gc").await.unwrap().unwrap().next_at, Some(900));
}

/// Quotas: each object once per project, limits enforced in the write, exact recomputation.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_quota(store: &dyn MetaStore) {
    let o = Origin::new("tester", None);
    let (qa, qb, other) = (repo("quota/a"), repo("quota/b"), repo("elsewhere/c"));
    let (x, y) = (Digest::sha256_of(b"quota-x"), Digest::sha256_of(b"quota-y"));
    let used = |p: &'static str| async move { store.quota(p).await.unwrap().used };
    assert_eq!(store.quota("quota").await.unwrap().hard, -1, "no limit until one is set");
    link(store, &qa, &x, 10, 100).await;
    link(store, &qb, &x, 10, 101).await;
    link(store, &other, &x, 10, 102).await;
    assert_eq!(used("quota").await, 10, "one blob in two repositories of a project counts once");
    assert_eq!(used("elsewhere").await, 10);
    let m = manifest("quota-manifest", None, None, 103);
    store.put_manifest(&qa, &m, b"quota-manifest", &[(x.clone(), RefKind::Blob)], &[tag("v1")], &o).await.unwrap();
    assert_eq!(used("quota").await, 10 + m.size);

    store.set_quota_limit("quota", 30, 104).await.unwrap();
    store.pin_blob(&y, 25, 105, 100_000).await.unwrap();
    match store.link_blob(&qa, &y, 105, 105, None).await {
        Err(crate::MetaError::QuotaExceeded { project, limit, used, adding }) => {
            assert_eq!((project.as_str(), limit, used, adding), ("quota", 30, 10 + m.size, 25));
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(store.repo_blob(&qa, &y).await.unwrap(), None, "a refused link changes nothing");
    assert_eq!(used("quota").await, 10 + m.size);
    // Linking what the project already holds costs nothing, at the limit or not.
    store.set_quota_limit("quota", 1, 106).await.unwrap();
    assert_eq!(store.mount_blob(&repo("quota/c"), &x, Some(&qa), 107).await.unwrap(), Some(10));

    assert!(store.unlink_blob(&qb, &x, &o).await.unwrap());
    assert_eq!(used("quota").await, 10 + m.size, "still held by quota/a and quota/c");
    assert!(store.delete_manifest(&qa, &m.digest, &o).await.unwrap());
    assert_eq!(used("quota").await, 10);
    assert!(store.delete_repo(&qa, &o).await.unwrap());
    assert!(store.delete_repo(&repo("quota/c"), &o).await.unwrap());
    assert_eq!(used("quota").await, 0);
    assert_eq!(used("elsewhere").await, 10);
    // An immutable tag never moves, also when two pushes race to create it.
    let (im, other_m) = (manifest("imm-1", None, None, 200), manifest("imm-2", None, None, 201));
    let t = [tag("release")];
    store.put_manifest_guarded(&other, &im, b"imm-1", &[], &t, &t, &o).await.unwrap();
    let moved = store.put_manifest_guarded(&other, &other_m, b"imm-2", &[], &t, &t, &o).await;
    assert!(matches!(moved, Err(crate::MetaError::TagImmutable(ref n)) if n == "release"), "{moved:?}");
    store.put_manifest_guarded(&other, &im, b"imm-1", &[], &t, &t, &o).await.unwrap();
    assert_eq!(store.resolve_tag(&other, &t[0]).await.unwrap(), Some(im.digest.clone()));
    assert!(matches!(
        store.put_tag_guarded(&other, &t[0], &other_m.digest, true, 202, &o).await,
        Err(crate::MetaError::TagImmutable(_)) | Ok(false)
    ));
    let checks = store.verify_quotas(false).await.unwrap();
    for c in &checks {
        assert_eq!((c.stored, c.objects_off), (c.computed, 0), "{c:?}");
    }
    assert!(checks.iter().any(|c| c.project == "elsewhere" && c.computed == 10 + im.size), "{checks:?}");
}

/// Lifecycle and retention policies and their runs: one per kind and scope, ids kept when
/// replaced, runs newest first, a preview replacing the last, and deletes that cascade.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_policies(store: &dyn MetaStore) {
    let o = Origin::new("tester", None);
    let e = || crate::NewEvent::new(crate::EventKind::PolicyChanged, 1, &o).repo("pol/app");
    assert_eq!(store.policy("lifecycle", "pol/app").await.unwrap(), None);
    let id = store.put_policy("lifecycle", "pol/app", "{\"rules\":[]}", 10, &e()).await.unwrap();
    let again = store.put_policy("lifecycle", "pol/app", "{\"rules\":[1]}", 20, &e()).await.unwrap();
    assert_eq!(id, again, "replacing keeps the id");
    let other = store.put_policy("retention", "pol", "{}", 20, &e()).await.unwrap();
    assert_ne!(other, id);
    let p = store.policy("lifecycle", "pol/app").await.unwrap().unwrap();
    assert_eq!((p.document.as_str(), p.created_at, p.updated_at, p.evaluated_at), ("{\"rules\":[1]}", 10, 20, None));
    assert_eq!(store.policy_by_id(other).await.unwrap().unwrap().scope, "pol");
    assert_eq!(store.policies("lifecycle").await.unwrap().len(), 1);
    store.mark_policy_evaluated(id, 30).await.unwrap();
    assert_eq!(store.policy_by_id(id).await.unwrap().unwrap().evaluated_at, Some(30));

    let r1 = store.create_policy_run(&p, "lifecycle-preview", "MANUAL", true, "doc1", true, 40).await.unwrap();
    let r2 = store.create_policy_run(&p, "lifecycle-preview", "MANUAL", true, "doc2", true, 41).await.unwrap();
    assert_eq!(store.policy_run(r1).await.unwrap(), None, "a new preview replaces the last");
    let x1 = store.create_policy_run(&p, "lifecycle", "SCHEDULE", false, "doc", false, 42).await.unwrap();
    let x2 = store.create_policy_run(&p, "lifecycle", "MANUAL", false, "doc", false, 43).await.unwrap();
    store.update_policy_run(x1, "Success", Some("{\"n\":1}"), 44).await.unwrap();
    store.update_policy_run(x1, "Success", None, 45).await.unwrap();
    let run = store.policy_run(x1).await.unwrap().unwrap();
    assert_eq!(
        (run.status.as_str(), run.result.as_deref(), run.scope.as_str(), run.trigger.as_str(), run.dry_run),
        ("Success", Some("{\"n\":1}"), "pol/app", "SCHEDULE", false)
    );
    let (page, total) = store.policy_runs(id, "lifecycle", 0, 1).await.unwrap();
    assert_eq!((page.len(), page[0].id, total), (1, x2, 2));
    let (previews, _) = store.policy_runs(id, "lifecycle-preview", 0, 10).await.unwrap();
    assert_eq!(
        (previews.len(), previews[0].id, previews[0].document.as_str(), previews[0].dry_run),
        (1, r2, "doc2", true)
    );

    // Guarded deletes: only what is still as evaluated.
    let r = repo("pol/app");
    let child = manifest("guarded-child", None, None, 50);
    store.put_manifest(&r, &child, b"guarded-child", &[], &[tag("c1")], &o).await.unwrap();
    let index = manifest("guarded-index", None, None, 51);
    let refs = [(child.digest.clone(), RefKind::Manifest)];
    store.put_manifest(&r, &index, b"guarded-index", &refs, &[tag("i1")], &o).await.unwrap();
    let g = |d: &Digest, tags: &[&str]| {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let d = d.clone();
        let r = r.clone();
        let o = o.clone();
        async move { store.delete_manifest_guarded(&r, &d, &tags, &o).await.unwrap() }
    };
    assert!(
        matches!(g(&index.digest, &[]).await, crate::GuardedDelete::Changed(w) if w.contains("i1")),
        "tags changed"
    );
    assert!(matches!(g(&child.digest, &["c1"]).await, crate::GuardedDelete::Changed(w) if w.contains("index")));
    assert_eq!(g(&index.digest, &["i1"]).await, crate::GuardedDelete::Deleted);
    assert_eq!(g(&child.digest, &["c1"]).await, crate::GuardedDelete::Deleted, "no index lists it now");
    assert_eq!(g(&child.digest, &["c1"]).await, crate::GuardedDelete::Gone);

    let gone = store.delete_policy("lifecycle", "pol/app", &e()).await.unwrap().unwrap();
    assert_eq!(gone.id, id);
    assert_eq!(store.policy_run(x2).await.unwrap(), None, "runs go with their policy");
    assert_eq!(store.delete_policy("lifecycle", "pol/app", &e()).await.unwrap(), None);
    assert!(store.policy_by_id(other).await.unwrap().is_some());
}

/// Labels: unique per scope, attached to present artifacts only, detached with their artifact
/// or their deletion.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_labels(store: &dyn MetaStore) {
    let o = Origin::new("tester", None);
    let l = |name: &str, scope: &str, project: &str| crate::LabelRecord {
        id: 0,
        name: name.into(),
        description: "d".into(),
        color: "#000".into(),
        scope: scope.into(),
        project: project.into(),
        created_at: 1,
        updated_at: 1,
    };
    let g = store.create_label(&l("keep", "g", "")).await.unwrap().unwrap();
    assert_eq!(store.create_label(&l("keep", "g", "")).await.unwrap(), None, "unique per scope");
    let p = store.create_label(&l("keep", "p", "lab")).await.unwrap().unwrap();
    assert_ne!(g, p, "the same name in another scope is another label");
    assert_eq!(store.labels("p", "lab").await.unwrap().len(), 1);
    let mut renamed = store.label(p).await.unwrap().unwrap();
    renamed.name = "team".into();
    assert!(store.update_label(&renamed).await.unwrap());
    let taken = store.create_label(&l("other", "p", "lab")).await.unwrap().unwrap();
    let mut clash = store.label(taken).await.unwrap().unwrap();
    clash.name = "team".into();
    assert!(matches!(store.update_label(&clash).await, Err(crate::MetaError::Conflict(_))));

    let repo = repo("lab/app");
    let m = manifest("labelled", None, None, 5);
    store.put_manifest(&repo, &m, b"labelled", &[], &[tag("v1")], &o).await.unwrap();
    let d = m.digest.to_string();
    assert!(store.attach_label("lab/app", &d, g, 6).await.unwrap());
    assert!(store.attach_label("lab/app", &d, g, 6).await.unwrap(), "idempotent");
    assert!(store.attach_label("lab/app", &d, p, 6).await.unwrap());
    assert!(!store.attach_label("lab/app", "sha256:00", g, 6).await.unwrap(), "no such artifact");
    let names: Vec<String> = store.repo_labels("lab/app").await.unwrap()[&d].iter().map(|l| l.name.clone()).collect();
    assert_eq!(names, ["keep", "team"]);
    assert!(store.detach_label("lab/app", &d, p).await.unwrap());
    assert!(!store.detach_label("lab/app", &d, p).await.unwrap());
    assert!(store.delete_label(taken).await.unwrap());
    store.delete_manifest(&repo, &m.digest, &o).await.unwrap();
    assert!(store.repo_labels("lab/app").await.unwrap().is_empty(), "gone with the artifact");
    assert!(store.delete_label(g).await.unwrap());
    assert_eq!(store.label(g).await.unwrap(), None);
}

/// Registry endpoints: created (names unique), listed, changed, checked, deleted.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_upstreams<S: MetaStore + crate::EventLog>(store: &S) {
    let o = Origin::new("tester", None);
    let e =
        |op: &str| crate::NewEvent::new(crate::EventKind::RegistryChanged, 1, &o).data(serde_json::json!({"op": op}));
    let u = crate::UpstreamRecord {
        id: 0,
        name: "hub".into(),
        kind: "docker-hub".into(),
        url: "https://registry-1.docker.io".into(),
        description: "Docker Hub".into(),
        insecure: false,
        access_key: "me".into(),
        secret: Some("v1:sealed".into()),
        ca_pem: None,
        status: "unknown".into(),
        checked_at: None,
        created_at: 10,
        updated_at: 10,
    };
    let id = store.create_upstream(&u, &e("create")).await.unwrap().unwrap();
    assert_eq!(store.create_upstream(&u, &e("create")).await.unwrap(), None, "names are unique");
    let other = store
        .create_upstream(
            &crate::UpstreamRecord { name: "quay".into(), insecure: true, secret: None, ..u.clone() },
            &e("create"),
        )
        .await
        .unwrap()
        .unwrap();
    let all = store.upstreams().await.unwrap();
    assert_eq!(all.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), ["hub", "quay"]);
    assert_eq!(all[0], crate::UpstreamRecord { id, ..u.clone() });
    assert!(all[1].insecure && all[1].secret.is_none());
    let renamed = crate::UpstreamRecord { id: other, name: "hub".into(), ..u.clone() };
    assert!(matches!(store.update_upstream(&renamed, &e("update")).await, Err(crate::MetaError::Conflict(_))));
    let changed = crate::UpstreamRecord { id, url: "https://mirror.example".into(), updated_at: 20, ..u.clone() };
    assert!(store.update_upstream(&changed, &e("update")).await.unwrap());
    store.set_upstream_status(id, "healthy", 30).await.unwrap();
    let got = store.upstream(id).await.unwrap().unwrap();
    assert_eq!(
        (got.url.as_str(), got.status.as_str(), got.checked_at, got.created_at, got.updated_at),
        ("https://mirror.example", "healthy", Some(30), 10, 20)
    );
    assert!(store.delete_upstream(id, &e("delete")).await.unwrap());
    assert!(!store.delete_upstream(id, &e("delete")).await.unwrap());
    assert_eq!(store.upstream(id).await.unwrap(), None);
    // Each change that happened is logged (newest first), in its transaction; refused ones are not.
    let q = crate::EventQuery { kinds: vec![crate::EventKind::RegistryChanged], limit: 10, ..Default::default() };
    let ops: Vec<(String, Option<i64>)> = store
        .query_events(&q)
        .await
        .unwrap()
        .iter()
        .map(|ev| (ev.event.data["op"].as_str().unwrap_or("").to_owned(), ev.event.data["id"].as_i64()))
        .collect();
    let op = |o: &str, id: Option<i64>| (o.to_owned(), id);
    assert_eq!(
        ops,
        [op("delete", None), op("update", None), op("create", Some(other)), op("create", Some(id))],
        "{ops:?}"
    );

    // Cache rules: one per prefix, only for an endpoint that exists, which then stays.
    let rule = crate::CacheRule {
        prefix: "quay-cache".into(),
        upstream_id: other,
        upstream_prefix: String::new(),
        ttl_ms: 60_000,
        created_at: 40,
    };
    assert!(store.create_cache_rule(&rule, &e("create")).await.unwrap());
    assert!(!store.create_cache_rule(&rule, &e("create")).await.unwrap(), "one rule per prefix");
    let dangling = crate::CacheRule { prefix: "gone".into(), upstream_id: id, ..rule.clone() };
    assert!(matches!(store.create_cache_rule(&dangling, &e("create")).await, Err(crate::MetaError::Conflict(_))));
    assert_eq!(store.cache_rules().await.unwrap(), std::slice::from_ref(&rule));
    match store.delete_upstream(other, &e("delete")).await {
        Err(crate::MetaError::Conflict(m)) => assert!(m.contains("quay-cache"), "{m}"),
        r => panic!("an endpoint in use must stay: {r:?}"),
    }
    assert!(store.delete_cache_rule("quay-cache", &e("delete")).await.unwrap());
    assert!(!store.delete_cache_rule("quay-cache", &e("delete")).await.unwrap());
    assert!(store.delete_upstream(other, &e("delete")).await.unwrap());
    // One fetch at a time per key, across replicas; a lapsed claim can be taken over.
    assert!(store.claim_lease("fetch:x", "a", 100, 50).await.unwrap());
    assert!(!store.claim_lease("fetch:x", "b", 100, 60).await.unwrap());
    assert!(store.claim_lease("fetch:x", "b", 200, 100).await.unwrap(), "a's claim lapsed");
    store.release_lease("fetch:x", "b").await.unwrap();
    assert!(store.claim_lease("fetch:x", "a", 300, 110).await.unwrap());
}

/// Replication: policies (names unique), runs newest first, tasks unique per run and source
/// (a resumed run finds its tasks), a stop that ends the tasks not done, deletes refused
/// while a run is in progress.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_replication(store: &dyn MetaStore) {
    let o = Origin::new("tester", None);
    let e = || crate::NewEvent::new(crate::EventKind::RegistryChanged, 1, &o).data(serde_json::json!({"op": "x"}));
    let id = store.create_replication_policy("site-b", "{}", 10, &e()).await.unwrap().unwrap();
    assert_eq!(store.create_replication_policy("site-b", "{}", 10, &e()).await.unwrap(), None);
    let other = store.create_replication_policy("other", "{\"a\":1}", 10, &e()).await.unwrap().unwrap();
    assert!(matches!(
        store.update_replication_policy(other, "site-b", "{}", 20, &e()).await,
        Err(crate::MetaError::Conflict(_))
    ));
    assert!(store.update_replication_policy(other, "other", "{\"a\":2}", 20, &e()).await.unwrap());
    let names: Vec<String> = store.replication_policies().await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["other", "site-b"]);
    assert_eq!(store.replication_policy(other).await.unwrap().unwrap().document, "{\"a\":2}");

    let run = store.create_replication_execution(id, "manual", "", 30).await.unwrap();
    let task = |src: &str| crate::ReplicationTaskRecord {
        id: 0,
        execution_id: run,
        resource_type: "image".into(),
        src_resource: src.into(),
        dst_resource: src.into(),
        operation: "copy".into(),
        status: "Pending".into(),
        log: String::new(),
        started_at: None,
        ended_at: None,
    };
    let a = store.ensure_replication_task(&task("a:v1")).await.unwrap();
    let b = store.ensure_replication_task(&task("b:v1")).await.unwrap();
    assert_eq!(store.ensure_replication_task(&task("a:v1")).await.unwrap(), a, "one task per source");
    store.update_replication_task(a, "InProgress", "", 31).await.unwrap();
    store.update_replication_task(a, "Succeed", "copied", 32).await.unwrap();
    store.update_replication_task(a, "Succeed", "again", 33).await.unwrap();
    assert!(matches!(store.delete_replication_policy(id, &e()).await, Err(crate::MetaError::Conflict(_))));
    assert!(store.finish_replication_execution(run, "Stopped", "by a user", 40).await.unwrap());
    assert!(!store.finish_replication_execution(run, "Succeed", "", 41).await.unwrap(), "ended once");
    let tasks = store.replication_tasks(run).await.unwrap();
    assert_eq!((tasks[0].id, tasks[0].status.as_str(), tasks[0].log.as_str()), (a, "Succeed", "copied\nagain\n"));
    assert_eq!((tasks[0].started_at, tasks[0].ended_at), (Some(31), Some(33)));
    assert_eq!((tasks[1].id, tasks[1].status.as_str(), tasks[1].ended_at), (b, "Stopped", Some(40)));
    let r = store.replication_execution(run).await.unwrap().unwrap();
    assert_eq!((r.status.as_str(), r.status_text.as_str(), r.ended_at), ("Stopped", "by a user", Some(40)));
    let later = store.create_replication_execution(id, "manual", "", 50).await.unwrap();
    store.create_replication_execution(other, "manual", "", 50).await.unwrap();
    let (runs, total) = store.replication_executions(Some(id), 0, 10).await.unwrap();
    assert_eq!((runs.iter().map(|r| r.id).collect::<Vec<_>>(), total), (vec![later, run], 2));
    assert_eq!(store.replication_executions(None, 0, 10).await.unwrap().1, 3);
    store.finish_replication_execution(later, "Succeed", "", 60).await.unwrap();
    assert!(store.delete_replication_policy(id, &e()).await.unwrap());
    assert!(store.replication_tasks(run).await.unwrap().is_empty(), "its runs and tasks go with it");
    assert_eq!(store.replication_executions(None, 0, 10).await.unwrap().1, 1);
}

/// Webhook policies and deliveries: names unique per project; deliveries created once per
/// (policy, event, target) even when a consumer replays its batch; only the oldest open
/// delivery of a (policy, target) is claimed, and a claim is exclusive until its lease ends;
/// retries, dead letters, redelivery; a lost claim cannot record; pruning keeps open ones.
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_webhooks(store: &dyn MetaStore) {
    use crate::{DeliveryOutcome, NewWebhookDelivery, WebhookPolicyRecord};
    let o = Origin::new("tester", None);
    let e = || crate::NewEvent::new(crate::EventKind::PolicyChanged, 1, &o).project("hooks");
    let policy = |name: &str| WebhookPolicyRecord {
        id: 0,
        project: "hooks".into(),
        name: name.into(),
        description: String::new(),
        enabled: true,
        event_types: "[\"PUSH_ARTIFACT\"]".into(),
        targets: "[]".into(),
        secret: "sealed".into(),
        creator: "tester".into(),
        created_at: 10,
        updated_at: 10,
    };
    let a = store.create_webhook_policy(&policy("a"), &e()).await.unwrap();
    assert!(matches!(store.create_webhook_policy(&policy("a"), &e()).await, Err(crate::MetaError::Conflict(_))));
    let b = store.create_webhook_policy(&policy("b"), &e()).await.unwrap();
    let mut off = store.webhook_policy(b).await.unwrap().unwrap();
    off.enabled = false;
    assert!(store.update_webhook_policy(&off, &e()).await.unwrap());
    let enabled = store.enabled_webhook_policies(&["hooks".into(), "other".into()]).await.unwrap();
    assert_eq!(enabled.iter().map(|p| p.id).collect::<Vec<_>>(), [a]);

    // Three events for policy a, one for b; a replayed batch adds nothing.
    let d = |policy_id: i64, seq: i64| NewWebhookDelivery {
        policy_id,
        seq,
        target: 0,
        event_type: "PUSH_ARTIFACT".into(),
        notify_type: "http".into(),
        address: "http://r/".into(),
        payload: format!("{{\"seq\":{seq}}}"),
        at: 100 + seq,
    };
    let batch: Vec<crate::Effect> =
        [d(a, 1), d(a, 2), d(b, 3), d(a, 4)].into_iter().map(crate::Effect::Webhook).collect();
    assert!(store.advance_consumer("webhooks", 0, 4, &batch, 100).await.unwrap());
    store.advance_consumer("webhooks", 4, 4, &batch, 100).await.unwrap();
    assert_eq!(store.webhook_deliveries(a, None, 0, 10).await.unwrap().1, 3);

    // One head per (policy, target): a's seq 1 and b's seq 3; a second claimer gets nothing.
    let claimed = store.claim_webhook_deliveries("p1", 200, 1_000, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 3]);
    assert!(store.claim_webhook_deliveries("p2", 200, 1_000, 10).await.unwrap().is_empty());
    let head = &claimed[0];
    // A failure with a retry keeps it the head (seq 2 waits), due at its retry time.
    let retry = DeliveryOutcome::Failed { code: Some(503), retry_at: Some(300) };
    assert!(store.finish_webhook_delivery(head.id, "p1", &retry, "try 1: 503", 210).await.unwrap());
    assert!(!store.finish_webhook_delivery(head.id, "p1", &retry, "twice", 211).await.unwrap(), "not claimed now");
    assert!(store.claim_webhook_deliveries("p2", 250, 1_000, 10).await.unwrap().is_empty(), "not due yet");
    let again = store.claim_webhook_deliveries("p2", 300, 1_000, 10).await.unwrap();
    assert_eq!(again.iter().map(|d| (d.seq, d.attempts)).collect::<Vec<_>>(), [(1, 1)]);
    // p2's claim lapses (a killed process): another claims it after the lease.
    assert!(store.claim_webhook_deliveries("p3", 999, 2_000, 10).await.unwrap().is_empty());
    let taken = store.claim_webhook_deliveries("p3", 1_001, 2_000, 10).await.unwrap();
    assert_eq!(taken.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 3], "p1's claim of b's lapsed too");
    assert!(!store.finish_webhook_delivery(head.id, "p2", &retry, "late", 1_002).await.unwrap(), "the lapsed claim");
    // It gives up: the dead letter; then seq 2 is the head.
    let dead = DeliveryOutcome::Failed { code: None, retry_at: None };
    assert!(store.finish_webhook_delivery(head.id, "p3", &dead, "try 2: gave up", 1_010).await.unwrap());
    let next = store.claim_webhook_deliveries("p3", 1_020, 3_000, 10).await.unwrap();
    assert_eq!(next.iter().map(|d| d.seq).collect::<Vec<_>>(), [2]);
    assert!(
        store
            .finish_webhook_delivery(next[0].id, "p3", &DeliveryOutcome::Delivered { code: 200 }, "ok", 1_030)
            .await
            .unwrap()
    );
    let (errors, n) = store.webhook_deliveries(a, Some("Error"), 0, 10).await.unwrap();
    assert_eq!((n, errors[0].attempts, errors[0].log.as_str()), (1, 2, "try 1: 503\ntry 2: gave up\n"));
    // Redelivered by hand: open again, and the head of a once more (before seq 4).
    assert!(!store.redeliver_webhook(claimed[1].id, "asked", 1_040).await.unwrap(), "b's is still running");
    assert!(store.redeliver_webhook(head.id, "asked", 1_040).await.unwrap());
    let heads = store.claim_webhook_deliveries("p4", 5_000, 6_000, 10).await.unwrap();
    assert_eq!(heads.iter().map(|d| (d.policy_id, d.seq, d.attempts)).collect::<Vec<_>>(), [(a, 1, 0), (b, 3, 0)]);
    let last = store.webhook_last_triggers("hooks").await.unwrap();
    assert_eq!(last, vec![(a, "PUSH_ARTIFACT".to_owned(), 104), (b, "PUSH_ARTIFACT".to_owned(), 103)]);
    // Pruning removes finished ones only; deleting a policy removes its deliveries.
    assert_eq!(store.prune_webhook_deliveries(10_000).await.unwrap(), 1, "seq 2, delivered");
    assert!(store.delete_webhook_policy(a, &e()).await.unwrap());
    assert!(store.webhook_deliveries(a, None, 0, 10).await.unwrap().0.is_empty());
    assert_eq!(store.webhook_policies("hooks").await.unwrap().len(), 1);
}

/// Signature policies: set, read, versions that only grow (also across a removal).
#[expect(clippy::unwrap_used, reason = "test suite")]
pub async fn run_signature_policies(store: &dyn MetaStore) {
    let o = Origin::new("tester", None);
    let e = || crate::NewEvent::new(crate::EventKind::PolicyChanged, 1, &o).project("sig");
    assert!(store.signature_policy("sig").await.unwrap().is_none());
    assert_eq!(store.put_signature_policy("sig", Some("{\"mode\":\"warn\"}"), 10, &e()).await.unwrap(), 1);
    assert_eq!(store.put_signature_policy("sig", Some("{\"mode\":\"enforce\"}"), 20, &e()).await.unwrap(), 2);
    let r = store.signature_policy("sig").await.unwrap().unwrap();
    assert_eq!((r.document.as_str(), r.version, r.updated_at), ("{\"mode\":\"enforce\"}", 2, 20));
    assert_eq!(store.put_signature_policy("sig", None, 30, &e()).await.unwrap(), 3);
    assert_eq!(store.signature_policy("sig").await.unwrap().unwrap().document, "", "removed: empty");
    assert_eq!(store.put_signature_policy("sig", Some("{}"), 40, &e()).await.unwrap(), 4, "never reused");
}
