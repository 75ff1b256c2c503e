//! The audit log.
//!
//! [`AuditConsumer`] writes it from the event log: every push, pull, delete, tag change and
//! login becomes an entry, committed together with the consumer's cursor, so an entry is
//! written exactly once even if Berth is killed between a change and its entry.
//!
//! Nothing else writes it: every change that deserves an entry logs an event.

use berth_meta::{AuditRecord, Consumer, ConsumerError, Effect, EventKind, EventRecord};

/// Writes the audit log from the event log (consumer `audit`).
pub struct AuditConsumer;

/// The audit entry an event stands for, if any.
pub fn audit_entry(e: &EventRecord) -> Option<AuditRecord> {
    let ev = &e.event;
    let repo = ev.repo.as_deref().unwrap_or("");
    let at_ref = || match (&ev.tag, &ev.digest) {
        (Some(t), _) => format!("{repo}:{t}"),
        (None, Some(d)) => format!("{repo}@{d}"),
        (None, None) => repo.to_owned(),
    };
    let at_digest = || format!("{repo}@{}", ev.digest.as_deref().unwrap_or(""));
    let at_tag = || format!("{repo}:{}", ev.tag.as_deref().unwrap_or(""));
    let detail = |k: &str| ev.data.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let name = || detail("name").unwrap_or_default();
    let op = detail("op").unwrap_or_default();
    let (operation, resource_type, resource, result, detail) = match ev.kind {
        EventKind::ArtifactPushed => ("push", "artifact", at_ref(), "success", None),
        EventKind::ArtifactPulled => ("pull", "artifact", at_ref(), "success", None),
        EventKind::ArtifactDeleted => ("delete", "artifact", at_digest(), "success", None),
        EventKind::TagDeleted => ("delete", "tag", at_tag(), "success", None),
        // Tags set by a push are part of the push's entry.
        EventKind::TagCreated | EventKind::TagMoved if ev.data.get("push").is_some() => return None,
        EventKind::TagCreated => ("create", "tag", at_tag(), "success", None),
        EventKind::TagMoved => {
            ("create", "tag", at_tag(), "success", detail("from").map(|f| format!("moved from {f}")))
        }
        EventKind::BlobDeleted => ("delete", "blob", at_digest(), "success", None),
        EventKind::BlobQuarantined => {
            ("quarantine", "blob", ev.digest.clone().unwrap_or_default(), "success", detail("reason"))
        }
        EventKind::RepositoryCreated => ("create", "repository", repo.to_owned(), "success", None),
        EventKind::RepositoryDeleted => ("delete", "repository", repo.to_owned(), "success", None),
        EventKind::LoginSucceeded => ("login", "user", ev.origin.actor.clone(), "success", detail("how")),
        EventKind::LoginFailed => ("login", "user", ev.origin.actor.clone(), "failure", detail("detail")),
        EventKind::ProjectCreated => ("create", "project", name(), "success", None),
        EventKind::ProjectUpdated => ("update", "project", name(), "success", None),
        EventKind::ProjectDeleted => ("delete", "project", name(), "success", None),
        EventKind::MemberChanged => {
            let member = detail("member").unwrap_or_default();
            let role = ev.data.get("role_id").and_then(|r| r.as_i64()).and_then(crate::rbac::Role::from_id);
            let as_role = |m: String| match role {
                Some(r) => format!("{m} as {}", r.name()),
                None => m,
            };
            match op.as_str() {
                "create" => ("create", "member", as_role(member), "success", None),
                "update" => ("update", "member", as_role(member), "success", None),
                _ => ("delete", "member", member, "success", None),
            }
        }
        EventKind::RobotChanged => match op.as_str() {
            "create" => ("create", "robot", name(), "success", None),
            "secret" => ("update", "robot", format!("{} (secret refreshed)", name()), "success", None),
            "delete" => ("delete", "robot", name(), "success", None),
            _ => ("update", "robot", name(), "success", None),
        },
        EventKind::UserChanged => match op.as_str() {
            "create" => ("create", "user", name(), "success", None),
            "delete" => ("delete", "user", name(), "success", None),
            "password" => ("update", "user", format!("{} (password)", name()), "success", None),
            "sysadmin" => ("update", "user", format!("{} (sysadmin=true)", name()), "success", None),
            "no-sysadmin" => ("update", "user", format!("{} (sysadmin=false)", name()), "success", None),
            "unlock" => ("update", "user", format!("{} (login locks lifted)", name()), "success", None),
            "cli-secret" => ("update", "user", format!("{} (cli secret)", name()), "success", None),
            "cli-secret-revoked" => ("delete", "user", format!("{} (cli secret)", name()), "success", None),
            // Groups follow the identity provider at each login: not an administrator's act.
            "groups" => return None,
            _ => ("update", "user", name(), "success", None),
        },
        EventKind::PolicyChanged => {
            let what = match (detail("kind").as_deref(), ev.data.get("id").and_then(|v| v.as_i64())) {
                (Some("immutable_tag_rule"), Some(id)) => {
                    format!("{} (immutable tag rule {id})", ev.project.as_deref().unwrap_or(""))
                }
                (Some("tag_mutability"), _) => format!("{repo} (tag mutability)"),
                (Some("scanning"), _) => format!("{repo} (scan on push)"),
                (Some("tags"), _) => format!("{repo} (resource tags)"),
                _ => repo.to_owned(),
            };
            (if op == "delete" { "delete" } else { "update" }, "policy", what, "success", None)
        }
        EventKind::RegistryChanged => {
            let what = detail("name").unwrap_or_default();
            (if op == "delete" || op == "create" { op.as_str() } else { "update" }, "registry", what, "success", None)
        }
        // Outcomes, not acts (webhooks carry them).
        EventKind::ScanCompleted
        | EventKind::BlobPushed
        | EventKind::BlobPulled
        | EventKind::QuotaExceeded
        | EventKind::QuotaWarning
        | EventKind::ReplicationFinished
        | EventKind::RetentionFinished => return None,
        EventKind::ScanRequested => ("scan", "artifact", at_digest(), "success", None),
        EventKind::SignatureUnverified => ("pull", "artifact", at_digest(), "unverified signature", detail("reason")),
        EventKind::AllowlistChanged => {
            ("update", "allowlist", detail("scope").unwrap_or_else(|| "system".into()), "success", None)
        }
        EventKind::AuditPurged => {
            let n = ev.data.get("count").and_then(|v| v.as_u64()).unwrap_or(0);
            ("purge", "audit_log", format!("{n} entries"), "success", None)
        }
        EventKind::GcCompleted => {
            let blobs = ev.data.get("blobs_deleted").and_then(|v| v.as_u64()).unwrap_or(0);
            let bytes = ev.data.get("bytes_freed").and_then(|v| v.as_u64()).unwrap_or(0);
            let dry = ev.data.get("dry_run").and_then(|v| v.as_bool()).unwrap_or(false);
            let what = format!("{blobs} blobs, {bytes} bytes{}", if dry { " (dry run)" } else { "" });
            ("gc", "storage", what, "success", None)
        }
        EventKind::JobStopped => ("stop", "job", detail("id").unwrap_or_default(), "success", detail("kind")),
        EventKind::AccessKeyChanged => {
            let what = format!("{} of {}", detail("id").unwrap_or_default(), detail("account").unwrap_or_default());
            let operation = match op.as_str() {
                "create" | "delete" => op.as_str(),
                _ => "update",
            };
            (operation, "access_key", what, "success", None)
        }
        EventKind::SettingsChanged => {
            let changed = ev.data.get("changed").and_then(|c| c.as_object());
            let what: Vec<String> = changed.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
            ("update", "configuration", what.join(", "), "success", None)
        }
    };
    // Pulls and failed logins repeat (a CI job, a misconfigured client): counted, and added
    // to the latest identical entry of the last hour.
    let repeatable = matches!(ev.kind, EventKind::ArtifactPulled | EventKind::LoginFailed);
    Some(AuditRecord {
        repeats: if repeatable { ev.data.get("count").and_then(|v| v.as_i64()).unwrap_or(1).max(1) } else { 1 },
        aggregate: repeatable,
        op_time: ev.at,
        username: ev.origin.actor.clone(),
        operation: operation.into(),
        resource_type: resource_type.into(),
        resource,
        project: ev.project.clone(),
        client_ip: ev.origin.client_ip.clone(),
        result: result.into(),
        detail,
        ..Default::default()
    })
}

#[async_trait::async_trait]
impl Consumer for AuditConsumer {
    fn name(&self) -> &str {
        "audit"
    }

    async fn effects(&self, events: &[EventRecord]) -> Result<Vec<Effect>, ConsumerError> {
        Ok(events.iter().filter_map(audit_entry).map(Effect::Audit).collect())
    }
}

/// Counts pulls and keeps pull times from `artifact.pulled` events (consumer `pulls`).
pub struct PullConsumer;

#[async_trait::async_trait]
impl Consumer for PullConsumer {
    fn name(&self) -> &str {
        "pulls"
    }

    async fn effects(&self, events: &[EventRecord]) -> Result<Vec<Effect>, ConsumerError> {
        Ok(events
            .iter()
            .filter(|e| e.event.kind == EventKind::ArtifactPulled)
            .filter_map(|e| {
                Some(Effect::Pulls {
                    repo: e.event.repo.clone()?,
                    digest: e.event.digest.clone(),
                    tag: e.event.tag.clone(),
                    count: e.event.data.get("count").and_then(|v| v.as_i64()).unwrap_or(1),
                    at: e.event.at,
                })
            })
            .collect())
    }
}
