//! What a receiver gets: Harbor's event types and payloads (`Default`), the same as a
//! CloudEvents 1.0 event in structured mode (`CloudEvents`, Harbor's `type` names and
//! `source`), and Slack's Block Kit message. Pure: the caller passes what the event alone
//! does not say (the registry's host, the project's id and visibility, a scan's overview).

use berth_meta::{EventKind, NewEvent};
use serde_json::{Value, json};

/// Harbor's event types, in the order its `/webhook/events` lists them.
pub const EVENT_TYPES: [&str; 10] = [
    "PUSH_ARTIFACT",
    "PULL_ARTIFACT",
    "DELETE_ARTIFACT",
    "QUOTA_EXCEED",
    "QUOTA_WARNING",
    "SCANNING_FAILED",
    "SCANNING_STOPPED",
    "SCANNING_COMPLETED",
    "REPLICATION",
    "TAG_RETENTION",
];

/// The notify types (`http`: JSON to any URL; `slack`: a Slack incoming webhook).
pub const NOTIFY_TYPES: [&str; 2] = ["http", "slack"];

/// The payload formats of `http` targets.
pub const PAYLOAD_FORMATS: [&str; 2] = ["Default", "CloudEvents"];

/// The Harbor event type of a logged event, if webhooks carry it.
pub fn event_type(e: &NewEvent) -> Option<&'static str> {
    Some(match e.kind {
        EventKind::ArtifactPushed => "PUSH_ARTIFACT",
        EventKind::ArtifactPulled => "PULL_ARTIFACT",
        EventKind::ArtifactDeleted => "DELETE_ARTIFACT",
        EventKind::ScanCompleted => match e.data["status"].as_str() {
            Some("done") => "SCANNING_COMPLETED",
            Some("stopped") => "SCANNING_STOPPED",
            _ => "SCANNING_FAILED",
        },
        EventKind::QuotaExceeded => "QUOTA_EXCEED",
        EventKind::QuotaWarning => "QUOTA_WARNING",
        EventKind::ReplicationFinished => "REPLICATION",
        EventKind::RetentionFinished => "TAG_RETENTION",
        _ => return None,
    })
}

/// The CloudEvents `type` Harbor gives each event type.
pub fn cloudevents_type(event_type: &str) -> &'static str {
    match event_type {
        "PUSH_ARTIFACT" => "harbor.artifact.pushed",
        "PULL_ARTIFACT" => "harbor.artifact.pulled",
        "DELETE_ARTIFACT" => "harbor.artifact.deleted",
        "QUOTA_EXCEED" => "harbor.quota.exceeded",
        "QUOTA_WARNING" => "harbor.quota.warned",
        "SCANNING_FAILED" => "harbor.scan.failed",
        "SCANNING_STOPPED" => "harbor.scan.stopped",
        "SCANNING_COMPLETED" => "harbor.scan.completed",
        "REPLICATION" => "harbor.replication.status.changed",
        "TAG_RETENTION" => "harbor.tag_retention.finished",
        _ => "berth.test",
    }
}

/// What the payload needs beyond the event.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `host[:port]` clients pull from (`resource_url`s start with it).
    pub registry_host: String,
    /// Whether the project is public (`repo_type`).
    pub public: bool,
    /// The scan's `scan_overview` (Harbor's shape, keyed by report MIME type), for scan events.
    pub scan_overview: Option<Value>,
}

/// Harbor's `Default` payload: `{type, occur_at, operator, event_data}`.
pub fn harbor_payload(e: &NewEvent, event_type: &str, cx: &Context) -> Value {
    let mut data = serde_json::Map::new();
    if let Some(repo) = &e.repo {
        let (namespace, name) = repo.split_once('/').unwrap_or(("", repo));
        data.insert(
            "repository".into(),
            json!({
                "name": name, "namespace": namespace, "repo_full_name": repo,
                "repo_type": if cx.public { "public" } else { "private" },
            }),
        );
        if let Some(digest) = &e.digest {
            // Harbor names an artifact by its first tag, else by its digest.
            let tag = e.tag.clone().or_else(|| {
                e.data["tags"].as_array().and_then(|t| t.first()).and_then(|t| t.as_str()).map(str::to_owned)
            });
            let url = match &tag {
                Some(t) => format!("{}/{repo}:{t}", cx.registry_host),
                None => format!("{}/{repo}@{digest}", cx.registry_host),
            };
            let mut r = json!({"digest": digest, "tag": tag.as_deref().unwrap_or(digest), "resource_url": url});
            if event_type.starts_with("QUOTA_") {
                r = json!({"digest": digest});
            }
            if let Some(o) = &cx.scan_overview {
                r["scan_overview"] = o.clone();
            }
            data.insert("resources".into(), json!([r]));
        }
    }
    match e.kind {
        EventKind::QuotaExceeded | EventKind::QuotaWarning => {
            data.insert("custom_attributes".into(), json!({"Details": e.data["details"]}));
        }
        EventKind::ReplicationFinished => {
            data.insert("replication".into(), e.data.clone());
        }
        EventKind::RetentionFinished => {
            data.insert("retention".into(), e.data.clone());
        }
        _ => {}
    }
    json!({
        "type": event_type,
        "occur_at": e.at / 1000,
        "operator": e.origin.actor,
        "event_data": Value::Object(data),
    })
}

/// The payload as a CloudEvents 1.0 event (structured mode): Harbor's `type` and `source`,
/// `data` the `event_data`, `operator` an extension attribute.
pub fn cloudevent(payload: &Value, id: &str, project_id: i64, policy_id: i64) -> Value {
    let ty = payload["type"].as_str().unwrap_or_default();
    let at = payload["occur_at"].as_i64().unwrap_or_default();
    json!({
        "specversion": "1.0",
        "id": id,
        "source": format!("/projects/{project_id}/webhook/policies/{policy_id}"),
        "type": cloudevents_type(ty),
        "time": rfc3339_seconds(at),
        "datacontenttype": "application/json",
        "operator": payload["operator"],
        "data": payload["event_data"],
    })
}

/// The payload as a Slack message (Block Kit sections, as Harbor sends them).
pub fn slack(payload: &Value) -> Value {
    let at = payload["occur_at"].as_i64().unwrap_or_default();
    let section = |text: String| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}});
    let data = serde_json::to_string_pretty(&payload["event_data"]).unwrap_or_default();
    json!({
        "text": format!("Berth: {} by {}", payload["type"].as_str().unwrap_or_default(),
                        payload["operator"].as_str().unwrap_or_default()),
        "blocks": [
            section("*Berth webhook events*".into()),
            section(format!("*event_type:* {}", payload["type"].as_str().unwrap_or_default())),
            section(format!("*occur_at:* <!date^{at}^{{date}} at {{time}}|{}>", rfc3339_seconds(at))),
            section(format!("*operator:* {}", payload["operator"].as_str().unwrap_or_default())),
            section("*event_data:*".into()),
            section(format!("```{data}```")),
        ],
    })
}

/// The body and `Content-Type` a target gets.
pub fn body(
    notify_type: &str,
    format: &str,
    payload: &Value,
    id: &str,
    project_id: i64,
    policy_id: i64,
) -> (String, &'static str) {
    match (notify_type, format) {
        ("slack", _) => (slack(payload).to_string(), "application/json"),
        (_, "CloudEvents") => {
            (cloudevent(payload, id, project_id, policy_id).to_string(), "application/cloudevents+json")
        }
        _ => (payload.to_string(), "application/json"),
    }
}

/// `2026-12-07T05:20:33Z` for Unix seconds.
fn rfc3339_seconds(secs: i64) -> String {
    berth_auth::rfc3339(secs.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::Origin;

    fn pushed() -> NewEvent {
        NewEvent::new(EventKind::ArtifactPushed, 1_680_501_893_123, &Origin::new("alice", None))
            .repo("team/app")
            .digest("sha256:954b")
            .tag("v1")
    }

    #[test]
    fn a_push_in_harbors_shape() {
        let cx = Context { registry_host: "berth.example".into(), public: false, scan_overview: None };
        let p = harbor_payload(&pushed(), "PUSH_ARTIFACT", &cx);
        assert_eq!(
            p,
            json!({"type": "PUSH_ARTIFACT", "occur_at": 1_680_501_893, "operator": "alice", "event_data": {
                "resources": [{"digest": "sha256:954b", "tag": "v1", "resource_url": "berth.example/team/app:v1"}],
                "repository": {"name": "app", "namespace": "team", "repo_full_name": "team/app", "repo_type": "private"}}})
        );
        // Untagged: named by digest.
        let mut e = pushed();
        e.tag = None;
        let p = harbor_payload(&e, "PUSH_ARTIFACT", &cx);
        assert_eq!(p["event_data"]["resources"][0]["resource_url"], "berth.example/team/app@sha256:954b");
        assert_eq!(p["event_data"]["resources"][0]["tag"], "sha256:954b");
    }

    #[test]
    fn cloudevents_and_slack_carry_the_same_event() {
        let p = harbor_payload(&pushed(), "PUSH_ARTIFACT", &Context::default());
        let ce = cloudevent(&p, "id-1", 3, 7);
        assert_eq!(ce["type"], "harbor.artifact.pushed");
        assert_eq!(ce["source"], "/projects/3/webhook/policies/7");
        assert_eq!(ce["time"], "2023-04-03T06:04:53Z");
        assert_eq!(ce["data"], p["event_data"]);
        assert_eq!(ce["operator"], "alice");
        let s = slack(&p);
        assert_eq!(s["blocks"].as_array().unwrap().len(), 6);
        assert!(s["blocks"][5]["text"]["text"].as_str().unwrap().contains("team/app"));
        let (_, ct) = body("http", "CloudEvents", &p, "x", 1, 1);
        assert_eq!(ct, "application/cloudevents+json");
    }

    #[test]
    fn scan_results_choose_the_event_type() {
        let scan = |status: &str| {
            NewEvent::new(EventKind::ScanCompleted, 0, &Origin::system()).data(json!({"status": status}))
        };
        assert_eq!(event_type(&scan("done")), Some("SCANNING_COMPLETED"));
        assert_eq!(event_type(&scan("failed")), Some("SCANNING_FAILED"));
        assert_eq!(event_type(&NewEvent::new(EventKind::TagCreated, 0, &Origin::system())), None);
    }
}
