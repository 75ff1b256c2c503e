//! The policy service's timing: retention schedules fire once per due time across replicas,
//! and lifecycle policies are applied when changed and then daily, never twice at once.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use berth_jobs::{POLICY_RUN, PolicyService, now_ms};
use berth_meta::{JobQueue, Origin, PolicyStore, SqlMetaStore};
use berth_policy::retention::RetentionPolicy;

fn retention(cron: &str) -> RetentionPolicy {
    RetentionPolicy::parse(
        &serde_json::json!({
            "algorithm": "or",
            "rules": [{"action": "retain", "template": "latestPushedK", "params": {"latestPushedK": 3},
                "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
                "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}}],
            "trigger": {"kind": "Schedule", "settings": {"cron": cron}},
        })
        .to_string(),
    )
    .unwrap()
}

async fn policy_jobs(q: &dyn JobQueue) -> usize {
    q.jobs(Some(POLICY_RUN), None, 100).await.unwrap().len()
}

#[tokio::test]
async fn retention_schedules_fire_once_per_due_time_across_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlMetaStore::open_sqlite(dir.path().join("m.db")).await.unwrap());
    let a = PolicyService::new(store.clone(), store.clone(), store.clone());
    let b = PolicyService::new(store.clone(), store.clone(), store.clone());
    let p = a.put_retention("proj", &retention("0 0 3 * * *"), &Origin::system()).await.unwrap();
    let now = now_ms();
    assert!(a.tick(now).await.unwrap().is_empty(), "not due yet");
    // A day later it is due: one replica wins, the other starts nothing.
    let later = now + 86_400_000 + 1000;
    let (ra, rb) = tokio::join!(a.tick(later), b.tick(later));
    let started: Vec<i64> = ra.unwrap().into_iter().chain(rb.unwrap()).collect();
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(policy_jobs(&*store).await, 1);
    let run = a.run(started[0]).await.unwrap().unwrap();
    assert_eq!((run.trigger.as_str(), run.dry_run, run.policy_id), ("SCHEDULE", false, p.id));
    assert!(a.tick(later).await.unwrap().is_empty(), "fired once");
    // Without a cron (or deleted) it never fires.
    a.put_retention("proj", &retention(""), &Origin::system()).await.unwrap();
    assert!(a.tick(later + 3 * 86_400_000).await.unwrap().is_empty());
    let bad = a.put_retention("proj", &retention("0 0 3 * *"), &Origin::system()).await.unwrap_err();
    assert!(bad.to_string().contains("six"), "{bad}");
}

#[tokio::test]
async fn lifecycle_policies_apply_when_changed_then_daily() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlMetaStore::open_sqlite(dir.path().join("m.db")).await.unwrap());
    let s = PolicyService::new(store.clone(), store.clone(), store.clone());
    let text = r#"{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged",
        "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}"#;
    let bad = s.put_lifecycle("proj/app", r#"{"rules": []}"#, &Origin::system()).await.unwrap_err();
    assert!(bad.to_string().starts_with("Invalid parameter at 'LifecyclePolicyText'"), "{bad}");
    s.put_lifecycle("proj/app", text, &Origin::system()).await.unwrap();
    let now = now_ms();
    let first = s.sweep_lifecycle(now).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(s.sweep_lifecycle(now).await.unwrap().is_empty(), "one run at a time");
    // Once it ran, it is due again only a day later.
    store.update_policy_run(first[0], "Success", Some("{}"), now).await.unwrap();
    let p = s.lifecycle("proj/app").await.unwrap().unwrap();
    store.mark_policy_evaluated(p.id, now).await.unwrap();
    assert!(s.sweep_lifecycle(now + 3_600_000).await.unwrap().is_empty());
    assert_eq!(s.sweep_lifecycle(now + 86_400_000).await.unwrap().len(), 1);
    assert_eq!(policy_jobs(&*store).await, 2);
}

#[tokio::test]
async fn a_stopped_or_failed_job_can_be_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlMetaStore::open_sqlite(dir.path().join("m.db")).await.unwrap());
    let jobs = berth_jobs::Jobs::new(store.clone());
    let job = berth_meta::NewJob {
        kind: "scan".into(),
        payload: r#"{"digest":"sha256:00"}"#.into(),
        dedup_key: Some("scan-00".into()),
        max_attempts: 3,
        run_after: 0,
    };
    let id = store.enqueue(&job, now_ms()).await.unwrap().unwrap();
    assert_eq!(jobs.retry(&id).await.unwrap(), None, "a queued job is not retried");
    assert!(jobs.stop(&id, &Origin::system()).await.unwrap());
    let again = jobs.retry(&id).await.unwrap().expect("a new job");
    assert_ne!(again, id);
    let j = jobs.get(&again).await.unwrap().unwrap();
    assert_eq!((j.kind.as_str(), j.payload.as_str(), j.attempts, j.max_attempts), ("scan", job.payload.as_str(), 0, 3));
    assert_eq!(j.state, berth_jobs::JobState::Queued);
}
