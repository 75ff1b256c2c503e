//! Harbor tag retention, in Harbor's JSON shape (`/api/v2.0/retentions`), evaluated over the
//! same [`Image`]s as ECR lifecycle policies.
//!
//! Harbor's semantics: a policy has up to 15 rules combined with `or`. A rule applies to the
//! repositories its `scope_selectors.repository` selects (by name without the project); in
//! each such repository it keeps, of the artifacts its tag selectors select, those its
//! template retains. An artifact is **kept if any applicable rule retains it**; every other
//! artifact of a repository that at least one rule applies to is deleted (repositories no rule
//! applies to are left alone). Tag selectors: `matches` selects an artifact when any of its tags
//! matches, `excludes` when any of its tags does not; an untagged artifact is selected by
//! `matches` unless the selector's `extras` says `{"untagged": false}`, and by `excludes`
//! unless it says `{"untagged": true}` (Harbor's defaults). Label selectors (`kind: label`)
//! take comma-separated label names: `withLabels` selects artifacts carrying all of them,
//! `withoutLabels` those carrying none.
//!
//! ```
//! use berth_policy::lifecycle::Image;
//! use berth_policy::retention::RetentionPolicy;
//! let p = RetentionPolicy::parse(r#"{"algorithm": "or", "rules": [{"action": "retain",
//!     "template": "latestPushedK", "params": {"latestPushedK": 1},
//!     "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
//!     "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}}]}"#).unwrap();
//! let images = [Image { tags: vec!["old".into()], pushed_at: 1, pulled_at: None, labels: vec![] },
//!               Image { tags: vec!["new".into()], pushed_at: 2, pulled_at: None, labels: vec![] }];
//! let kept = p.evaluate("app", &images, 10).unwrap().unwrap();
//! assert_eq!(kept, vec![None, Some(0)]);
//! ```

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::immutable::{Compiled, Selector, compile_selector};
use crate::lifecycle::Image;

/// Most rules a policy may have (Harbor's limit).
pub const MAX_RULES: usize = 15;
/// Most tag (and repository) selectors one rule may have.
pub const MAX_SELECTORS: usize = 10;
/// Most labels one label selector may name.
pub const MAX_LABELS: usize = 100;

const DAY_MS: i64 = 86_400_000;

/// The templates, with what Harbor's metadata endpoint says of them.
pub const TEMPLATES: &[(&str, &str, &str)] = &[
    ("latestPushedK", "retain the most recently pushed # artifacts", "COUNT"),
    ("latestPulledN", "retain the most recently pulled # artifacts", "COUNT"),
    ("nDaysSinceLastPush", "retain the artifacts pushed within the last # days", "DAYS"),
    ("nDaysSinceLastPull", "retain the artifacts pulled within the last # days", "DAYS"),
    ("always", "retain always", ""),
];

/// A retention policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Its id (assigned by the server).
    #[serde(default)]
    pub id: i64,
    /// Always `or`.
    #[serde(default = "or")]
    pub algorithm: String,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<RetentionRule>,
    /// When it runs: `{"kind": "Schedule", "settings": {"cron": "0 0 0 * * *"}}`; an empty cron
    /// runs it only on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// `{"level": "project", "ref": <project id>}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

fn or() -> String {
    "or".into()
}

fn retain() -> String {
    "retain".into()
}

/// A policy's trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// `Schedule`.
    pub kind: String,
    /// `{"cron": "…"}` (six fields, seconds first; empty for none).
    #[serde(default)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Harbor's free-form references (kept).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub references: BTreeMap<String, serde_json::Value>,
}

impl Trigger {
    /// The cron, if one is set.
    pub fn cron(&self) -> Option<&str> {
        self.settings.get("cron").and_then(|c| c.as_str()).map(str::trim).filter(|c| !c.is_empty())
    }
}

/// A policy's scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    /// `project`.
    pub level: String,
    /// The project id.
    #[serde(rename = "ref")]
    pub reference: i64,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionRule {
    /// Its id within the policy.
    #[serde(default)]
    pub id: i64,
    /// Harbor's ordering field.
    #[serde(default)]
    pub priority: i64,
    /// A disabled rule retains nothing and applies nowhere.
    #[serde(default)]
    pub disabled: bool,
    /// Always `retain`.
    #[serde(default = "retain")]
    pub action: String,
    /// One of [`TEMPLATES`].
    pub template: String,
    /// `{"<template>": N}`.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Which artifacts (all must select).
    #[serde(default)]
    pub tag_selectors: Vec<Selector>,
    /// `{"repository": [selectors]}`: which repositories (all must select).
    #[serde(default)]
    pub scope_selectors: BTreeMap<String, Vec<Selector>>,
}

/// A tag selector, compiled: a doublestar pattern over tags, or a label list.
enum TagSelect {
    Pattern { compiled: Box<Compiled>, untagged: bool },
    Labels { names: Vec<String>, with: bool },
}

impl TagSelect {
    fn selects(&self, image: &Image) -> bool {
        match self {
            // Harbor: `matches` takes untagged artifacts when `untagged`; `excludes` when not.
            TagSelect::Pattern { compiled, untagged } if image.tags.is_empty() => *untagged != compiled.exclude,
            TagSelect::Pattern { compiled, .. } => image.tags.iter().any(|t| compiled.selects(t)),
            TagSelect::Labels { names, with: true } => names.iter().all(|n| image.labels.contains(n)),
            TagSelect::Labels { names, with: false } => !names.iter().any(|n| image.labels.contains(n)),
        }
    }
}

enum Template {
    LatestPushed(usize),
    LatestPulled(usize),
    PushedWithin(i64),
    PulledWithin(i64),
    Always,
}

struct CompiledRule {
    index: usize,
    template: Template,
    tags: Vec<TagSelect>,
    repos: Vec<Compiled>,
}

fn with_default(s: &Selector) -> Selector {
    let mut s = s.clone();
    if s.pattern.is_empty() {
        s.pattern = "**".into(); // Harbor: an empty pattern matches everything
    }
    s
}

impl RetentionRule {
    fn compile(&self, index: usize) -> Result<CompiledRule, String> {
        let n = index + 1;
        if self.action != "retain" {
            return Err(format!("rule {n}: action {:?}: a retention rule's action is \"retain\"", self.action));
        }
        let param = || -> Result<i64, String> {
            let v = self.params.get(&self.template).ok_or_else(|| {
                format!("rule {n}: template {} needs params {{\"{}\": <number>}}", self.template, self.template)
            })?;
            let n = v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
            match n {
                Some(x) if (0..=i32::MAX as i64).contains(&x) => Ok(x),
                _ => Err(format!(
                    "rule {}: params.{} must be a whole number from 0 to 2147483647, not {v}",
                    index + 1,
                    self.template
                )),
            }
        };
        let template = match self.template.as_str() {
            "latestPushedK" => Template::LatestPushed(param()? as usize),
            "latestPulledN" => Template::LatestPulled(param()? as usize),
            "nDaysSinceLastPush" => Template::PushedWithin(param()?),
            "nDaysSinceLastPull" => Template::PulledWithin(param()?),
            "always" => Template::Always,
            other => {
                let known: Vec<&str> = TEMPLATES.iter().map(|t| t.0).collect();
                return Err(format!("rule {n}: template {other:?} is not one of {}", known.join(", ")));
            }
        };
        let repo_selectors: usize = self.scope_selectors.values().map(Vec::len).sum();
        if self.tag_selectors.len() > MAX_SELECTORS || repo_selectors > MAX_SELECTORS {
            return Err(format!(
                "rule {n}: at most {MAX_SELECTORS} tag selectors and {MAX_SELECTORS} repository selectors"
            ));
        }
        let mut tags = Vec::new();
        for s in &self.tag_selectors {
            if s.kind == "label" {
                let with = match s.decoration.as_str() {
                    "withLabels" => true,
                    "withoutLabels" => false,
                    other => {
                        return Err(format!(
                            "rule {n}: label selector decoration {other:?}: use withLabels or withoutLabels"
                        ));
                    }
                };
                let names: Vec<String> =
                    s.pattern.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
                if s.pattern.len() > 4096 || names.len() > MAX_LABELS {
                    return Err(format!("rule {n}: a label selector names at most {MAX_LABELS} labels (4 KiB)"));
                }
                tags.push(TagSelect::Labels { names, with });
                continue;
            }
            let default_untagged = s.decoration != "excludes";
            let untagged = match s.extras.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
                None => default_untagged,
                Some(e) => match serde_json::from_str::<serde_json::Value>(e) {
                    Ok(v) => v.get("untagged").and_then(|u| u.as_bool()).unwrap_or(default_untagged),
                    Err(_) => {
                        return Err(format!(
                            "rule {n}: tag selector extras must be JSON such as {{\"untagged\":true}}, not {e:?}"
                        ));
                    }
                },
            };
            let compiled = compile_selector(&with_default(s), "tag", "matches", "excludes")
                .map_err(|e| format!("rule {n}: {e}"))?;
            tags.push(TagSelect::Pattern { compiled: Box::new(compiled), untagged });
        }
        if let Some(other) = self.scope_selectors.keys().find(|k| k.as_str() != "repository") {
            return Err(format!("rule {n}: scope selector {other:?}: only \"repository\" is supported"));
        }
        let repos = self
            .scope_selectors
            .get("repository")
            .into_iter()
            .flatten()
            .map(|s| {
                compile_selector(&with_default(s), "repository", "repoMatches", "repoExcludes")
                    .map_err(|e| format!("rule {n}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompiledRule { index, template, tags, repos })
    }
}

impl CompiledRule {
    fn applies_to(&self, repo: &str) -> bool {
        self.repos.iter().all(|r| r.selects(repo))
    }

    /// Indexes of the images this rule retains.
    fn retained(&self, images: &[Image], now: i64) -> Vec<usize> {
        let mut selected: Vec<usize> =
            (0..images.len()).filter(|&i| self.tags.iter().all(|t| t.selects(&images[i]))).collect();
        match self.template {
            Template::Always => selected,
            Template::LatestPushed(k) => {
                selected.sort_by(|&a, &b| images[b].pushed_at.cmp(&images[a].pushed_at).then(b.cmp(&a)));
                selected.truncate(k);
                selected
            }
            Template::LatestPulled(k) => {
                let pulled = |i: usize| images[i].pulled_at.unwrap_or(0);
                selected.sort_by(|&a, &b| pulled(b).cmp(&pulled(a)).then(b.cmp(&a)));
                selected.truncate(k);
                selected
            }
            Template::PushedWithin(days) => {
                selected.retain(|&i| images[i].pushed_at >= now - days * DAY_MS);
                selected
            }
            Template::PulledWithin(days) => {
                selected.retain(|&i| images[i].pulled_at.is_some_and(|p| p >= now - days * DAY_MS));
                selected
            }
        }
    }
}

impl RetentionPolicy {
    /// Parse and validate a policy document.
    pub fn parse(text: &str) -> Result<RetentionPolicy, String> {
        let p: RetentionPolicy = serde_json::from_str(text)
            .map_err(|e| format!("the retention policy is not valid JSON of Harbor's shape: {e}"))?;
        p.validate()?;
        Ok(p)
    }

    /// Check the policy against Harbor's constraints.
    pub fn validate(&self) -> Result<(), String> {
        if self.algorithm != "or" {
            return Err(format!(
                "algorithm {:?}: Berth (like Harbor) combines retention rules with \"or\"",
                self.algorithm
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err(format!("a retention policy has at most {MAX_RULES} rules, not {}", self.rules.len()));
        }
        if let Some(s) = &self.scope
            && s.level != "project"
        {
            return Err(format!("scope level {:?}: retention policies apply to a project (\"project\")", s.level));
        }
        if let Some(t) = &self.trigger
            && t.kind != "Schedule"
        {
            return Err(format!("trigger kind {:?}: use \"Schedule\" (with an empty cron to run on demand)", t.kind));
        }
        let mut seen = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            r.compile(i)?;
            let key = serde_json::json!([r.template, r.params, r.tag_selectors, r.scope_selectors]).to_string();
            if !seen.insert(key) {
                return Err(format!("rule {} is the same as an earlier rule (Harbor: rule conflicts)", i + 1));
            }
        }
        Ok(())
    }

    /// Evaluate over the images of repository `repo` (its name without the project). `None`
    /// when no enabled rule applies to the repository (nothing there is touched); otherwise,
    /// per image, the index of the first rule that retains it, `None` for deleted.
    pub fn evaluate(&self, repo: &str, images: &[Image], now: i64) -> Result<Option<Vec<Option<usize>>>, String> {
        let rules: Vec<CompiledRule> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.disabled)
            .map(|(i, r)| r.compile(i))
            .collect::<Result<_, _>>()?;
        let applicable: Vec<&CompiledRule> = rules.iter().filter(|r| r.applies_to(repo)).collect();
        if applicable.is_empty() {
            return Ok(None);
        }
        let mut kept: Vec<Option<usize>> = vec![None; images.len()];
        for r in applicable {
            for i in r.retained(images, now) {
                if kept[i].is_none_or(|k| r.index < k) {
                    kept[i] = Some(r.index);
                }
            }
        }
        Ok(Some(kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn img(tags: &[&str], days_ago: i64, pulled_days_ago: Option<i64>) -> Image {
        Image {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at: NOW - days_ago * DAY_MS,
            pulled_at: pulled_days_ago.map(|d| NOW - d * DAY_MS),
            labels: Vec::new(),
        }
    }

    fn rule(template: &str, n: i64, tag: (&str, &str), extras: Option<&str>, repo: (&str, &str)) -> serde_json::Value {
        let mut sel = serde_json::json!({"kind": "doublestar", "decoration": tag.0, "pattern": tag.1});
        if let Some(e) = extras {
            sel["extras"] = e.into();
        }
        serde_json::json!({
            "action": "retain", "template": template, "params": {template: n},
            "tag_selectors": [sel],
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": repo.0, "pattern": repo.1}]},
        })
    }

    fn kept(rules: Vec<serde_json::Value>, repo: &str, images: &[Image]) -> Option<Vec<usize>> {
        let p = RetentionPolicy::parse(&serde_json::json!({"algorithm": "or", "rules": rules}).to_string()).unwrap();
        p.evaluate(repo, images, NOW)
            .unwrap()
            .map(|k| k.iter().enumerate().filter(|(_, r)| r.is_some()).map(|(i, _)| i).collect())
    }

    #[test]
    fn each_template_retains_what_harbor_says() {
        let images = [
            img(&["v1"], 30, Some(1)),
            img(&["v2"], 20, None),
            img(&["v3"], 10, Some(25)),
            img(&["v4"], 2, Some(3)),
            img(&[], 1, None),
        ];
        let all = ("matches", "**");
        let any_repo = ("repoMatches", "**");
        let untagged_too = Some(r#"{"untagged":true}"#);
        let no_untagged = Some(r#"{"untagged":false}"#);
        assert_eq!(kept(vec![rule("latestPushedK", 2, all, no_untagged, any_repo)], "app", &images), Some(vec![2, 3]));
        assert_eq!(kept(vec![rule("latestPushedK", 2, all, untagged_too, any_repo)], "app", &images), Some(vec![3, 4]));
        assert_eq!(kept(vec![rule("latestPulledN", 2, all, no_untagged, any_repo)], "app", &images), Some(vec![0, 3]));
        assert_eq!(
            kept(vec![rule("nDaysSinceLastPush", 15, all, no_untagged, any_repo)], "app", &images),
            Some(vec![2, 3])
        );
        assert_eq!(
            kept(vec![rule("nDaysSinceLastPull", 5, all, untagged_too, any_repo)], "app", &images),
            Some(vec![0, 3])
        );
        assert_eq!(
            kept(vec![rule("always", 0, all, untagged_too, any_repo)], "app", &images),
            Some(vec![0, 1, 2, 3, 4])
        );
        // Harbor's default for `matches` without extras keeps untagged artifacts selectable.
        assert_eq!(kept(vec![rule("always", 0, all, None, any_repo)], "app", &images), Some(vec![0, 1, 2, 3, 4]));
    }

    #[test]
    fn rules_are_ored_and_scoped_by_repository() {
        let images = [img(&["release-1"], 30, None), img(&["dev-1"], 20, None), img(&["dev-2"], 1, None)];
        let rules = vec![
            rule("always", 0, ("matches", "release-*"), None, ("repoMatches", "**")),
            rule("latestPushedK", 1, ("matches", "dev-*"), None, ("repoExcludes", "legacy/**")),
        ];
        assert_eq!(kept(rules.clone(), "app", &images), Some(vec![0, 2]));
        // In legacy/x only the first rule applies: dev tags are not retained by it.
        assert_eq!(kept(rules.clone(), "legacy/x", &images), Some(vec![0]));
        // A repository no rule applies to is not touched.
        let narrow = vec![rule("always", 0, ("matches", "**"), None, ("repoMatches", "web"))];
        assert_eq!(kept(narrow, "app", &images), None);
        // `excludes` selects an artifact with any tag outside the pattern.
        let ex = vec![rule("always", 0, ("excludes", "dev-*"), None, ("repoMatches", "**"))];
        assert_eq!(kept(ex, "app", &images), Some(vec![0]));
    }

    #[test]
    fn label_selectors_take_all_or_none_of_their_labels() {
        let mut images = [img(&["a"], 3, None), img(&["b"], 2, None), img(&["c"], 1, None)];
        images[0].labels = vec!["prod".into(), "eu".into()];
        images[1].labels = vec!["prod".into()];
        let labels = |decoration: &str, names: &str| {
            let mut r = rule("always", 0, ("matches", "**"), None, ("repoMatches", "**"));
            r["tag_selectors"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"kind": "label", "decoration": decoration, "pattern": names}));
            kept(vec![r], "app", &images)
        };
        assert_eq!(labels("withLabels", "prod"), Some(vec![0, 1]));
        assert_eq!(labels("withLabels", "prod,eu"), Some(vec![0]), "all of them");
        assert_eq!(labels("withoutLabels", "eu,dev"), Some(vec![1, 2]), "none of them");
    }

    #[test]
    fn invalid_policies_are_explained() {
        let bad = |rules: serde_json::Value| {
            RetentionPolicy::parse(&serde_json::json!({"algorithm": "or", "rules": rules}).to_string()).unwrap_err()
        };
        let r = rule("latestPushedK", 1, ("matches", "**"), None, ("repoMatches", "**"));
        let mut t = r.clone();
        t["template"] = "newest".into();
        assert!(bad(serde_json::json!([t])).contains("template \"newest\" is not one of latestPushedK"));
        let mut p = r.clone();
        p["params"] = serde_json::json!({"latestPushedK": -1});
        assert!(bad(serde_json::json!([p])).contains("whole number"));
        let mut l = r.clone();
        l["tag_selectors"][0] = serde_json::json!({"kind": "label", "decoration": "with", "pattern": "prod"});
        assert!(bad(serde_json::json!([l])).contains("use withLabels or withoutLabels"));
        assert!(bad(serde_json::json!([r, r])).contains("same as an earlier rule"));
        let many: Vec<_> =
            (0..16).map(|i| rule("latestPushedK", i, ("matches", "**"), None, ("repoMatches", "**"))).collect();
        assert!(bad(serde_json::json!(many)).contains("at most 15"));
        let algo = RetentionPolicy::parse(r#"{"algorithm": "and", "rules": []}"#).unwrap_err();
        assert!(algo.contains("\"or\""));
    }
}
