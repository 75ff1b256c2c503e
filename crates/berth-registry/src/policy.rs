//! Running lifecycle and retention policies: ECR lifecycle previews and executions per
//! repository, Harbor tag-retention executions (dry run or not) per project. The policy crate
//! decides; this module gathers each repository's images, deletes what was decided through
//! the same checks as every other delete (immutable tags are never deleted: such an image is
//! reported as kept), and records the outcome on the run.
//!
//! An *image* is a manifest that stands on its own: not an untagged child of an index in the
//! same repository, and not a referrer (signature, SBOM) whose subject is in the repository.
//! Deleting an image deletes its referrers first, then the manifest, then those of its child
//! manifests that nothing else holds (no tag, no other index).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use berth_meta::{ArtifactRow, GuardedDelete, LabelRecord, PolicyRunRecord};
use berth_policy::lifecycle::{Image, LifecyclePolicy};
use berth_policy::retention::RetentionPolicy;
use berth_types::{Digest, Reference, RepoName};
use serde_json::{Value, json};

use crate::{Registry, RegistryError, now_ms};

/// Run kinds.
pub const LIFECYCLE_PREVIEW: &str = "lifecycle-preview";
/// An ECR lifecycle execution.
pub const LIFECYCLE: &str = "lifecycle";
/// A Harbor retention execution.
pub const RETENTION: &str = "retention";

/// What happened to one image a policy did not retain.
enum Removal {
    /// Deleted (or, in a dry run, would be).
    Deleted,
    /// Kept, and why: a tag of it is immutable, an index lists it, or it changed since it
    /// was evaluated.
    Kept(String),
    /// Gone already (deleted by someone else meanwhile).
    Gone,
}

fn as_image(a: &ArtifactRow, labels: &HashMap<String, Vec<LabelRecord>>) -> Image {
    Image {
        tags: a.tags.iter().map(|(t, _)| t.clone()).collect(),
        pushed_at: a.record.created_at,
        pulled_at: a.pull_time,
        labels: labels.get(&a.record.digest.to_string()).into_iter().flatten().map(|l| l.name.clone()).collect(),
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn short_name(repo: &RepoName) -> &str {
    repo.as_str().split_once('/').map_or(repo.as_str(), |(_, r)| r)
}

impl Registry {
    /// The images of `repo` as policies see them, oldest first (the order the policy engine
    /// breaks push-time ties by).
    pub async fn policy_images(&self, repo: &RepoName) -> Result<Vec<ArtifactRow>, RegistryError> {
        let mut rows = self.meta.repo_artifacts(repo).await?;
        rows.reverse();
        let present: HashSet<&Digest> = rows.iter().map(|r| &r.record.digest).collect();
        let children: HashSet<&Digest> = rows.iter().flat_map(|r| r.children.iter()).collect();
        let keep: Vec<bool> = rows
            .iter()
            .map(|r| {
                let child = children.contains(&r.record.digest) && r.tags.is_empty();
                let referrer = r.record.subject.as_ref().is_some_and(|s| present.contains(s));
                !child && !referrer
            })
            .collect();
        Ok(rows.into_iter().zip(keep).filter_map(|(r, k)| k.then_some(r)).collect())
    }

    /// Why an image a policy did not retain must stay anyway, if it must: an index of the
    /// repository lists it (deleting it would break that image), or a tag of it is immutable.
    fn keep_reason(
        im: &berth_policy::immutable::Immutability,
        repo: &RepoName,
        image: &ArtifactRow,
        listed: &HashSet<&Digest>,
    ) -> Option<String> {
        if listed.contains(&image.record.digest) {
            return Some("an index in the repository lists it".into());
        }
        image
            .tags
            .iter()
            .find_map(|(t, _)| im.undeletable(short_name(repo), t).map(|why| format!("tag {t} is immutable ({why})")))
    }

    /// Delete one image — only if it is still as evaluated (same tags, no index listing it) —
    /// then its referrers and the children only it held.
    async fn delete_image(
        &self,
        repo: &RepoName,
        image: &ArtifactRow,
        origin: &berth_meta::Origin,
    ) -> Result<Removal, RegistryError> {
        let digest = &image.record.digest;
        let tags: Vec<String> = image.tags.iter().map(|(t, _)| t.clone()).collect();
        // The rules in force now (they may have changed since the run began).
        let parsed: Vec<berth_types::Tag> = tags.iter().filter_map(|t| t.parse().ok()).collect();
        if let Some((tag, why)) = self.immutable_tags(repo, &parsed, true).await?.into_iter().next() {
            return Ok(Removal::Kept(format!("tag {tag} is immutable ({why})")));
        }
        match self.meta.delete_manifest_guarded(repo, digest, &tags, origin).await? {
            GuardedDelete::Deleted => self.invalidate(repo, &[], Some(digest), true),
            GuardedDelete::Gone => return Ok(Removal::Gone),
            GuardedDelete::Changed(why) => return Ok(Removal::Kept(why)),
        }
        // Its referrers (signatures, SBOMs, and theirs) have no subject any more.
        let mut frontier = vec![digest.clone()];
        let mut seen = 0;
        while let Some(d) = frontier.pop() {
            for r in self.meta.referrers(repo, &d, None).await? {
                seen += 1;
                if seen > 10_000 {
                    break;
                }
                frontier.push(r.digest.clone());
                self.delete_quietly(repo, &r.digest, origin).await?;
            }
        }
        // Children nothing else holds (no tag, no other index): checked in their own delete.
        for c in &image.children {
            if let GuardedDelete::Deleted = self.meta.delete_manifest_guarded(repo, c, &[], origin).await? {
                self.invalidate(repo, &[], Some(c), true);
            }
        }
        Ok(Removal::Deleted)
    }

    async fn delete_quietly(
        &self,
        repo: &RepoName,
        d: &Digest,
        origin: &berth_meta::Origin,
    ) -> Result<(), RegistryError> {
        match self.manifest_delete(repo, &Reference::Digest(d.clone()), origin).await {
            Ok(()) | Err(RegistryError::ManifestUnknown(_)) | Err(RegistryError::TagImmutable { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Mark the run `id` failed (its job was given up: the worker died).
    pub async fn fail_policy_run(&self, id: i64, why: &str) -> Result<(), RegistryError> {
        if let Some(run) = self.meta.policy_run(id).await?
            && matches!(run.status.as_str(), "Pending" | "Running" | "Stopping")
        {
            self.meta.update_policy_run(id, "Error", Some(&json!({ "error": why }).to_string()), now_ms()).await?;
        }
        Ok(())
    }

    /// Run the policy run `id` if it is still pending: evaluate, delete unless it is a preview
    /// or dry run, and store the outcome on the run (`Success`, `Stopped` or `Error`).
    pub async fn execute_policy_run(&self, id: i64) -> Result<(), RegistryError> {
        let Some(run) = self.meta.policy_run(id).await? else { return Ok(()) };
        if run.status != "Pending" {
            return Ok(());
        }
        self.meta.update_policy_run(id, "Running", None, now_ms()).await?;
        let outcome = match run.kind.as_str() {
            LIFECYCLE_PREVIEW | LIFECYCLE => self.run_lifecycle(&run).await,
            RETENTION => self.run_retention(&run).await,
            other => Err(format!("unknown policy run kind {other:?}")),
        };
        let (status, result) = match outcome {
            Ok((status, result)) => (status, result),
            Err(e) => {
                tracing::error!(run = id, error = %e, "policy run failed");
                ("Error", json!({ "error": e }))
            }
        };
        self.meta.update_policy_run(id, status, Some(&result.to_string()), now_ms()).await?;
        if run.kind != LIFECYCLE_PREVIEW && !run.dry_run && status == "Success" {
            self.meta.mark_policy_evaluated(run.policy_id, now_ms()).await?;
        }
        if run.kind == RETENTION {
            // Harbor's `retention` webhook object (TAG_RETENTION).
            let tasks = result["tasks"].as_array().cloned().unwrap_or_default();
            let sum = |k: &str| tasks.iter().filter_map(|t| t[k].as_i64()).sum::<i64>();
            let deleted: Vec<Value> =
                tasks.iter().flat_map(|t| t["deleted"].as_array().cloned().unwrap_or_default()).collect();
            let data = json!({
                "total": sum("total"), "retained": sum("retained"), "project_name": run.scope,
                "retention_policy_id": run.policy_id, "result": status.to_uppercase(), "dry_run": run.dry_run,
                "deleted_artifact": deleted,
            });
            let e = berth_meta::NewEvent::new(
                berth_meta::EventKind::RetentionFinished,
                now_ms(),
                &berth_meta::Origin::new(run.trigger.clone(), None),
            )
            .project(&run.scope)
            .data(data);
            if let Err(err) = self.meta.append_events(&[e]).await {
                tracing::warn!(run = id, error = %err, "the end of a retention run could not be logged as an event");
            }
        }
        Ok(())
    }

    /// What a policy would do now, evaluated in this request and neither stored nor applied:
    /// `kind` [`LIFECYCLE_PREVIEW`] for an ECR lifecycle policy on the repository `scope` (the
    /// result is a preview's), [`RETENTION`] for a Harbor retention policy on the project
    /// `scope` (a dry run's tasks). For the portal's preview before saving.
    pub async fn policy_dry_run(&self, kind: &str, scope: &str, document: &str) -> Result<Value, String> {
        let run = PolicyRunRecord {
            id: 0,
            policy_id: 0,
            kind: kind.to_owned(),
            scope: scope.to_owned(),
            trigger: "MANUAL".into(),
            dry_run: true,
            status: "Running".into(),
            document: document.to_owned(),
            created_at: now_ms(),
            updated_at: now_ms(),
            result: None,
        };
        match kind {
            LIFECYCLE_PREVIEW => self.run_lifecycle(&run).await.map(|r| r.1),
            RETENTION => self.run_retention(&run).await.map(|r| r.1),
            other => Err(format!("unknown policy kind {other:?}")),
        }
    }

    async fn run_lifecycle(&self, run: &PolicyRunRecord) -> Result<(&'static str, Value), String> {
        let policy = LifecyclePolicy::parse(&run.document)?;
        let repo: RepoName = run.scope.parse().map_err(|e| format!("repository {:?}: {e}", run.scope))?;
        let err = |e: RegistryError| e.to_string();
        let images = self.policy_images(&repo).await.map_err(err)?;
        let now = now_ms();
        let views: Vec<Image> = images.iter().map(|a| as_image(a, &HashMap::new())).collect();
        let verdicts = policy.evaluate(&views, now)?;
        let apply = run.kind == LIFECYCLE && !run.dry_run;
        let im = self.immutability(&repo).await.map_err(err)?;
        let origin = berth_meta::Origin::new("lifecycle-policy", None);
        let mut results = Vec::new();
        let mut kept = Vec::new();
        let listed: HashSet<&Digest> = images.iter().flat_map(|a| a.children.iter()).collect();
        for (i, priority) in verdicts {
            let a = &images[i];
            let tags: Vec<&str> = a.tags.iter().map(|(t, _)| t.as_str()).collect();
            let removal = match Self::keep_reason(&im, &repo, a, &listed) {
                Some(why) => Removal::Kept(why),
                None if apply => self.delete_image(&repo, a, &origin).await.map_err(err)?,
                None => Removal::Deleted,
            };
            let entry = json!({
                "imageTags": tags, "imageDigest": a.record.digest.to_string(),
                "imagePushedAt": a.record.created_at as f64 / 1000.0,
                "action": {"type": "EXPIRE"}, "appliedRulePriority": priority,
            });
            match removal {
                Removal::Deleted => results.push(entry),
                Removal::Gone => {}
                Removal::Kept(why) => {
                    let mut e = entry;
                    e["reason"] = why.into();
                    kept.push(e);
                }
            }
        }
        let n = results.len();
        Ok((
            "Success",
            json!({
                "previewResults": results,
                "summary": {"expiringImageTotalCount": n},
                "keptImages": kept,
                "evaluatedImageCount": images.len(),
            }),
        ))
    }

    async fn run_retention(&self, run: &PolicyRunRecord) -> Result<(&'static str, Value), String> {
        let policy = RetentionPolicy::parse(&run.document)?;
        let err = |e: RegistryError| e.to_string();
        let origin = berth_meta::Origin::new("retention-policy", None);
        let mut tasks = Vec::new();
        let mut stopped = false;
        for summary in self.project_repos(&run.scope).await.map_err(err)? {
            if matches!(self.meta.policy_run(run.id).await, Ok(Some(r)) if r.status == "Stopping") {
                stopped = true;
                break;
            }
            let Ok(repo) = summary.name.parse::<RepoName>() else { continue };
            let start = now_ms();
            let images = self.policy_images(&repo).await.map_err(err)?;
            let labels = self.meta.repo_labels(repo.as_str()).await.map_err(|e| e.to_string())?;
            let views: Vec<Image> = images.iter().map(|a| as_image(a, &labels)).collect();
            let Some(kept) = policy.evaluate(short_name(&repo), &views, start)? else { continue };
            let im = self.immutability(&repo).await.map_err(err)?;
            let listed: HashSet<&Digest> = images.iter().flat_map(|a| a.children.iter()).collect();
            let mut log = Vec::new();
            let mut deleted = Vec::new();
            let mut retained = 0;
            let mut status = "Success";
            for (a, k) in images.iter().zip(&kept) {
                let keep = if k.is_none() { Self::keep_reason(&im, &repo, a, &listed) } else { None };
                let verdict = match (k, keep) {
                    (Some(rule), _) => format!("RETAIN (rule {})", rule + 1),
                    (None, Some(why)) => format!("RETAIN ({why})"),
                    (None, None) if run.dry_run => "DEL (dry run)".to_string(),
                    (None, None) => match self.delete_image(&repo, a, &origin).await {
                        Ok(Removal::Deleted) => "DEL".to_string(),
                        Ok(Removal::Gone) => "GONE (deleted meanwhile)".to_string(),
                        Ok(Removal::Kept(why)) => format!("RETAIN ({why})"),
                        Err(e) => {
                            status = "Error";
                            format!("ERROR ({e})")
                        }
                    },
                };
                if verdict.starts_with("RETAIN") {
                    retained += 1;
                }
                let tags: Vec<&str> = a.tags.iter().map(|(t, _)| t.as_str()).collect();
                if verdict.starts_with("DEL") {
                    let name = match tags.first() {
                        Some(t) => format!("{}:{t}", summary.name),
                        None => format!("{}@{}", summary.name, a.record.digest),
                    };
                    deleted.push(json!({"type": "image", "status": "SUCCESS", "name_tag": name}));
                }
                log.push([
                    a.record.digest.to_string(),
                    if tags.is_empty() { "<none>".to_string() } else { tags.join(",") },
                    rfc3339(a.record.created_at),
                    a.pull_time.map(rfc3339).unwrap_or_else(|| "-".into()),
                    verdict,
                ]);
            }
            let mut task = json!({
                "id": tasks.len() + 1, "repository": summary.name, "status": status,
                "total": images.len(), "retained": retained,
                "start_time": start, "end_time": now_ms(), "log": table(&log), "deleted": deleted,
            });
            if run.id == 0 {
                task["images"] = json!(log); // a preview (`policy_dry_run`) shows them as a table
            }
            tasks.push(task);
        }
        Ok((if stopped { "Stopped" } else { "Success" }, json!({ "tasks": tasks })))
    }
}

/// A plain text table, as Harbor's retention task log is.
fn table(rows: &[[String; 5]]) -> String {
    let head = ["Digest", "Tags", "PushedTime", "PulledTime", "Retention"];
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let rule: String = w.iter().map(|n| format!("+{}", "-".repeat(n + 2))).collect::<String>() + "+\n";
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (c, n) in cells.iter().zip(&w) {
            let _ = write!(s, "| {c:<n$} ");
        }
        s + "|\n"
    };
    let mut out = rule.clone() + &line(&head) + &rule;
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out += &line(&cells);
    }
    out + &rule
}
