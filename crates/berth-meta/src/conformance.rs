//! The conformance suite every [`MetaStore`] backend must pass. Call [`run`] on an empty store.

use berth_types::{Digest, RepoName, Tag};

use crate::{ManifestRecord, MetaStore, RefKind, UploadRecord};

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
    let a = repo("proj/a");
    let b = repo("proj/b");
    let blob = Digest::sha256_of(b"layer");

    // blob links are per repository
    assert!(!store.repo_exists(&a).await.unwrap());
    assert_eq!(store.repo_blob(&a, &blob).await.unwrap(), None);
    assert_eq!(store.any_blob(&blob).await.unwrap(), None);
    store.link_blob(&a, &blob, 5, 1).await.unwrap();
    store.link_blob(&a, &blob, 5, 2).await.unwrap();
    assert!(store.repo_exists(&a).await.unwrap());
    assert_eq!(store.repo_blob(&a, &blob).await.unwrap(), Some(5));
    assert_eq!(store.repo_blob(&b, &blob).await.unwrap(), None);
    assert_eq!(store.any_blob(&blob).await.unwrap(), Some(5));

    // manifests, tags, atomic put with refs
    let m1 = manifest("m1", None, None, 10);
    store.put_manifest(&a, &m1, b"m1", &[(blob.clone(), RefKind::Blob)], &[tag("v1"), tag("latest")]).await.unwrap();
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
    store.put_manifest(&a, &m2, b"m2", &[], &[tag("latest")]).await.unwrap();
    store.put_manifest(&a, &m1, b"m1", &[(blob.clone(), RefKind::Blob)], &[]).await.unwrap();
    assert_eq!(store.resolve_tag(&a, &tag("latest")).await.unwrap(), Some(m2.digest.clone()));
    assert_eq!(store.list_tags(&a, None, 100).await.unwrap(), vec!["latest", "v1"]);

    // lexical order and pagination
    for t in ["b", "a", "C", "c10", "c2"] {
        store.put_manifest(&b, &m1, b"m1", &[], &[tag(t)]).await.unwrap();
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
    store.put_manifest(&a, &sig, b"sig", &[], &[]).await.unwrap();
    store.put_manifest(&a, &sbom, b"sbom", &[], &[]).await.unwrap();
    let all = store.referrers(&a, &m1.digest, None).await.unwrap();
    assert_eq!(all.iter().map(|m| m.digest.clone()).collect::<Vec<_>>(), vec![sig.digest.clone(), sbom.digest.clone()]);
    let only = store.referrers(&a, &m1.digest, Some("application/spdx+json")).await.unwrap();
    assert_eq!(only, vec![sbom.clone()]);
    assert!(store.referrers(&b, &m1.digest, None).await.unwrap().is_empty());

    // deletes
    assert!(store.delete_tag(&a, &tag("v1")).await.unwrap());
    assert!(!store.delete_tag(&a, &tag("v1")).await.unwrap());
    assert_eq!(store.resolve_tag(&a, &tag("v1")).await.unwrap(), None);
    assert!(store.get_manifest(&a, &m1.digest).await.unwrap().is_some(), "deleting a tag keeps the manifest");
    assert!(store.delete_manifest(&b, &m1.digest).await.unwrap());
    assert!(store.list_tags(&b, None, 100).await.unwrap().is_empty(), "deleting a manifest removes its tags");
    assert!(!store.delete_manifest(&b, &m1.digest).await.unwrap());
    assert!(store.unlink_blob(&a, &blob).await.unwrap());
    assert!(!store.unlink_blob(&a, &blob).await.unwrap());
    assert_eq!(store.repo_blob(&a, &blob).await.unwrap(), None);

    // uploads
    let up = UploadRecord { id: "u1".into(), repo: a.clone(), created_at: 100, updated_at: 100 };
    store.create_upload(&up).await.unwrap();
    assert!(store.create_upload(&up).await.is_err(), "upload ids are unique");
    assert_eq!(store.get_upload("u1").await.unwrap(), Some(up.clone()));
    assert_eq!(store.stale_uploads(101).await.unwrap(), vec!["u1"]);
    store.touch_upload("u1", 200).await.unwrap();
    assert!(store.stale_uploads(101).await.unwrap().is_empty());
    assert!(store.delete_upload("u1").await.unwrap());
    assert_eq!(store.get_upload("u1").await.unwrap(), None);
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
    assert!(q.cancel(&later, 180).await.unwrap());
    assert!(!q.cancel(&later, 181).await.unwrap());
    assert_eq!(q.job(&later).await.unwrap().unwrap().state, JobState::Cancelled);
    assert!(
        q.claim("scan", "w1", 2_000, 3_000, 5).await.unwrap().is_none_or(|j| j.id != later),
        "cancelled never runs"
    );

    // a burst of concurrent claims never exceeds the concurrency limit
    for _ in 0..12 {
        q.enqueue(&job("burst", None, 0), 190).await.unwrap().unwrap();
    }
    let owners: Vec<String> = (0..16).map(|i| format!("b{i}")).collect();
    let claims = futures::future::join_all(owners.iter().map(|o| q.claim("burst", o, 200, 10_000, 2))).await;
    let won = claims.into_iter().map(Result::unwrap).filter(Option::is_some).count();
    assert_eq!(won, 2, "16 concurrent claims with a limit of 2");

    // listing
    let failed = q.jobs(None, Some(JobState::Failed), 10).await.unwrap();
    assert_eq!(failed.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![b.clone()]);
    assert!(q.jobs(Some("scan"), None, 100).await.unwrap().len() >= 4);
    assert!(q.job("nope").await.unwrap().is_none());
}
