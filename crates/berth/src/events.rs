//! The event log's consumers in this binary, and the follower that keeps this process's
//! caches honest when another replica changes something.

use std::sync::Arc;
use std::time::Duration;

use berth_jobs::{ConsumerOptions, run_consumer};
use berth_meta::{Consumer, EventKind, EventLog, SqlMetaStore};

/// How often a process looks for changes made elsewhere (a change is honoured everywhere
/// within this plus one query).
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Does this event change what an authorization decision may see?
fn changes_access(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ProjectCreated
            | EventKind::ProjectUpdated
            | EventKind::ProjectDeleted
            | EventKind::MemberChanged
            | EventKind::RobotChanged
            | EventKind::UserChanged
            | EventKind::PolicyChanged
            | EventKind::RepositoryDeleted
    )
}

/// Follow the log from its end and drop the access caches when projects, members, robots,
/// users or policies change (on any replica).
pub async fn follow_changes(
    sql: Arc<SqlMetaStore>,
    auth: Arc<berth_auth::Auth>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let log: Arc<dyn EventLog> = sql;
    Ok(berth_jobs::tail(log, FOLLOW_INTERVAL, move |events| {
        if events.iter().any(|e| changes_access(e.event.kind)) {
            auth.invalidate();
        }
        // Settings changed at run time on any replica: every process applies the whole set.
        if let Some(e) = events.iter().rev().map(|e| &e.event).find(|e| e.kind == EventKind::SettingsChanged) {
            let stored: Vec<(String, serde_json::Value)> =
                e.data["settings"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
            auth.apply_settings(&stored);
        }
        for e in events.iter().map(|e| &e.event).filter(|e| e.kind == EventKind::UserChanged) {
            if e.data["op"] == "unlock"
                && let Some(name) = e.data["name"].as_str()
            {
                auth.unlock_local(name);
            }
        }
    })
    .await?)
}

/// Run the durable consumers: the audit log, pull counts and times, usage, scans on push,
/// replication on push, webhook deliveries.
pub fn start_consumers(
    sql: Arc<SqlMetaStore>,
    auth: Arc<berth_auth::Auth>,
    webhooks: Arc<berth_webhook::Webhooks>,
    scanning: Arc<berth_scanner::Scanning>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let log: Arc<dyn EventLog> = sql.clone();
    let consumers: Vec<Arc<dyn Consumer>> = vec![
        Arc::new(berth_auth::AuditConsumer),
        Arc::new(berth_auth::PullConsumer),
        Arc::new(berth_registry::UsageConsumer),
        Arc::new(berth_scanner::ScanOnPush::new(auth.clone(), sql.clone())),
        Arc::new(berth_registry::ReplicationOnPush::new(sql.clone())),
        Arc::new(berth_webhook::WebhookConsumer::new(webhooks, auth, scanning)),
    ];
    consumers.into_iter().map(|c| run_consumer(log.clone(), c, ConsumerOptions::default())).collect()
}

/// What an event concerns, in one line: `repo:tag`, `repo@digest`, a project or a name.
fn subject(e: &berth_meta::NewEvent) -> String {
    let data = |k: &str| e.data.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    match (&e.repo, &e.tag, &e.digest) {
        (Some(r), Some(t), _) => format!("{r}:{t}"),
        (Some(r), None, Some(d)) => format!("{r}@{d}"),
        (Some(r), None, None) => r.clone(),
        _ => data("name")
            .or_else(|| data("member"))
            .or_else(|| e.project.clone())
            .or_else(|| data("scope"))
            .or_else(|| data("id").map(|id| format!("job {id}")))
            .or_else(|| data("detail"))
            .or_else(|| data("how"))
            .or_else(|| e.data.get("count").and_then(|c| c.as_u64()).map(|n| format!("{n} entries")))
            .unwrap_or_default(),
    }
}

/// An event as `berth events list --output json` prints it.
pub fn event_json(r: &berth_meta::EventRecord) -> serde_json::Value {
    let e = &r.event;
    serde_json::json!({
        "seq": r.seq, "time": berth_auth::rfc3339(e.at), "kind": e.kind.as_str(), "actor": e.origin.actor,
        "client_ip": e.origin.client_ip, "project": e.project, "repository": e.repo, "digest": e.digest,
        "tag": e.tag, "data": e.data,
    })
}

/// Events as the text table of `berth events list`.
pub fn events_table(events: &[berth_meta::EventRecord]) -> String {
    let rows = events.iter().map(|r| {
        let e = &r.event;
        let mut what = subject(e);
        if let Some(op) = e.data.get("op").and_then(|v| v.as_str()) {
            what = format!("{what} ({op})");
        }
        if let Some(n) = e.data.get("count").and_then(|v| v.as_i64()).filter(|n| *n > 1) {
            what = format!("{what} ×{n}");
        }
        vec![r.seq.to_string(), berth_auth::rfc3339(e.at), e.kind.as_str().to_owned(), e.origin.actor.clone(), what]
    });
    let mut out = crate::cli::table(&["SEQ", "TIME", "KIND", "ACTOR", "SUBJECT"], rows);
    out.push('\n');
    if events.is_empty() {
        out.push_str("(no events match)\n");
    }
    out
}
