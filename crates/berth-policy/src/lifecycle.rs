//! ECR lifecycle policies: parse and validate ECR's JSON, and evaluate it over a repository's
//! images (pure: the caller passes the images and the time). Not wired to the registry yet;
//! the preview API, execution and Harbor's tag retention build on this.
//!
//! Evaluation, as ECR documents it: every rule is evaluated at once, then applied by priority
//! (lowest `rulePriority` first). An image is expired by at most one rule, and only by the
//! highest-priority rule whose tag selection matches it; lower-priority rules still *count*
//! it (an `imageCountMoreThan` rule keeps the newest N of everything it selects, claimed by
//! others or not). `tagPatternList` and `tagPrefixList` select an image when *every* entry
//! matches one of its tags. Beyond ECR, `sinceImagePulled` may expire (ECR only archives
//! with it): an image never pulled counts from its push.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::{Pattern, PatternOptions, Syntax};

/// The prefix of every validation message, as ECR words it.
pub const MESSAGE_PREFIX: &str =
    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: ";

/// A lifecycle policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecyclePolicy {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// Lower first; unique.
    pub rule_priority: i64,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which images, and how many or how old.
    pub selection: Selection,
    /// Always `{"type": "expire"}`.
    pub action: Action,
}

/// A rule's selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selection {
    /// `tagged`, `untagged` or `any`.
    pub tag_status: TagStatus,
    /// Wildcard patterns (`*`, at most four), all of which must match a tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_pattern_list: Option<Vec<String>>,
    /// Prefixes, all of which must begin a tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_prefix_list: Option<Vec<String>>,
    /// How `count_number` is read.
    pub count_type: CountType,
    /// `days`, with the `since…` count types only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_unit: Option<String>,
    /// At least 1.
    pub count_number: i64,
}

/// Which images a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagStatus {
    /// Images with at least one tag (and the lists).
    Tagged,
    /// Images without tags.
    Untagged,
    /// Every image.
    Any,
}

/// How a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CountType {
    /// Keep the newest `countNumber` (by push time).
    ImageCountMoreThan,
    /// Images pushed more than `countNumber` days ago.
    SinceImagePushed,
    /// Images last pulled (or, never pulled, pushed) more than `countNumber` days ago.
    SinceImagePulled,
}

/// A rule's action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// `expire`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// An image as the evaluation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Its tags (empty: untagged).
    pub tags: Vec<String>,
    /// When it was pushed (Unix ms).
    pub pushed_at: i64,
    /// When it was last pulled (Unix ms), if ever.
    pub pulled_at: Option<i64>,
    /// Names of its labels (Harbor's; retention may select by them).
    pub labels: Vec<String>,
}

const DAY_MS: i64 = 86_400_000;

fn invalid(what: impl std::fmt::Display) -> String {
    format!("{MESSAGE_PREFIX}{what}'")
}

/// A rule's compiled tag selection.
struct Selects {
    status: TagStatus,
    patterns: Vec<Pattern>,
    prefixes: Vec<String>,
}

impl Selects {
    fn matches(&self, image: &Image) -> bool {
        match self.status {
            TagStatus::Any => true,
            TagStatus::Untagged => image.tags.is_empty(),
            TagStatus::Tagged => {
                !image.tags.is_empty()
                    && self.patterns.iter().all(|p| image.tags.iter().any(|t| p.matches(t)))
                    && self.prefixes.iter().all(|p| image.tags.iter().any(|t| t.starts_with(p.as_str())))
            }
        }
    }
}

impl LifecyclePolicy {
    /// Parse and validate a policy text; errors are ECR's validation messages.
    pub fn parse(text: &str) -> Result<LifecyclePolicy, String> {
        let p: LifecyclePolicy = serde_json::from_str(text)
            .map_err(|e| invalid(format!("Could not map policyString into LifecyclePolicy ({e})")))?;
        p.validate()?;
        Ok(p)
    }

    /// Check the rules against ECR's documented constraints.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.is_empty() {
            return Err(invalid("array is too short: must have at least 1 elements but instance has 0 elements"));
        }
        let mut priorities = HashSet::new();
        let mut prefix_sets = HashSet::new();
        let mut untagged = 0;
        let highest = self.rules.iter().map(|r| r.rule_priority).max().unwrap_or(0);
        for r in &self.rules {
            let s = &r.selection;
            if r.rule_priority < 1 {
                return Err(invalid(format!(
                    "numeric instance is lower than the required minimum (minimum: 1, found: {})",
                    r.rule_priority
                )));
            }
            if !priorities.insert(r.rule_priority) {
                return Err(invalid(format!("rulePriority {} is used by more than one rule", r.rule_priority)));
            }
            if r.action.kind != "expire" {
                return Err(invalid(format!(
                    "instance value (\"{}\") not found in enum (possible values: [\"expire\"])",
                    r.action.kind
                )));
            }
            if s.count_number < 1 {
                return Err(invalid(format!(
                    "numeric instance is lower than the required minimum (minimum: 1, found: {})",
                    s.count_number
                )));
            }
            match (s.count_type, s.count_unit.as_deref()) {
                (CountType::ImageCountMoreThan, None) => {}
                (CountType::ImageCountMoreThan, Some(_)) => {
                    return Err(invalid(
                        "countUnit may only be used with countType sinceImagePushed or sinceImagePulled",
                    ));
                }
                (_, Some("days")) => {}
                (_, Some(u)) => {
                    return Err(invalid(format!(
                        "instance value (\"{u}\") not found in enum (possible values: [\"days\"])"
                    )));
                }
                (_, None) => {
                    return Err(invalid("countUnit is required with countType sinceImagePushed or sinceImagePulled"));
                }
            }
            let lists = (s.tag_pattern_list.as_ref(), s.tag_prefix_list.as_ref());
            match (s.tag_status, lists) {
                (TagStatus::Tagged, (None, None)) => {
                    return Err(invalid("Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED."));
                }
                (TagStatus::Tagged, (Some(_), Some(_))) => {
                    return Err(invalid("a rule may specify tagPatternList or tagPrefixList, not both"));
                }
                (TagStatus::Tagged, (Some(l), None) | (None, Some(l))) => {
                    if l.is_empty() || l.iter().any(|e| e.is_empty()) {
                        return Err(invalid("tagPatternList and tagPrefixList entries must not be empty"));
                    }
                    let mut set: Vec<&str> = l.iter().map(String::as_str).collect();
                    set.sort_unstable();
                    if !prefix_sets.insert(set.join("\u{0}")) {
                        return Err(invalid("The set of rules must contain a unique set of tag prefixes and patterns"));
                    }
                }
                (_, (None, None)) => {}
                (_, _) => {
                    return Err(invalid("tagPatternList and tagPrefixList may only be used with tagStatus=TAGGED"));
                }
            }
            if let Some(p) = s.tag_pattern_list.iter().flatten().find(|p| p.matches('*').count() > 4) {
                return Err(invalid(format!("tag pattern {p:?} has more than 4 wildcards (*)")));
            }
            if s.tag_status == TagStatus::Untagged {
                untagged += 1;
                if untagged > 1 {
                    return Err(invalid("Only one rule can select Untagged images."));
                }
            }
            if s.tag_status == TagStatus::Any && r.rule_priority != highest {
                return Err(invalid("Rule for tagStatus=ANY must have the lowest priority (the highest rulePriority)"));
            }
        }
        Ok(())
    }

    fn compiled(&self) -> Result<Vec<(&Rule, Selects)>, String> {
        let mut rules: Vec<&Rule> = self.rules.iter().collect();
        rules.sort_by_key(|r| r.rule_priority);
        rules
            .into_iter()
            .map(|r| {
                let s = &r.selection;
                let patterns = s
                    .tag_pattern_list
                    .iter()
                    .flatten()
                    .map(|p| Pattern::new(p, Syntax::Wildcard, PatternOptions::default()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid(format!("tag pattern: {e}")))?;
                let prefixes = s.tag_prefix_list.clone().unwrap_or_default();
                Ok((r, Selects { status: s.tag_status, patterns, prefixes }))
            })
            .collect()
    }

    /// Which images expire now (`now`, Unix ms), each with the priority of the rule that
    /// expires it, in image order.
    pub fn evaluate(&self, images: &[Image], now: i64) -> Result<Vec<(usize, i64)>, String> {
        let rules = self.compiled()?;
        // The highest-priority rule whose selection matches each image: only it may expire it.
        let owner: Vec<Option<usize>> =
            images.iter().map(|img| rules.iter().position(|(_, sel)| sel.matches(img))).collect();
        let mut expired: Vec<Option<i64>> = vec![None; images.len()];
        for (ri, (rule, sel)) in rules.iter().enumerate() {
            let s = &rule.selection;
            let mut selected: Vec<usize> = (0..images.len()).filter(|&i| sel.matches(&images[i])).collect();
            let candidates: Vec<usize> = match s.count_type {
                CountType::ImageCountMoreThan => {
                    // Newest first; ties keep their order (the later image in the list is newer).
                    selected.sort_by(|&a, &b| images[b].pushed_at.cmp(&images[a].pushed_at).then(b.cmp(&a)));
                    selected.into_iter().skip(s.count_number as usize).collect()
                }
                CountType::SinceImagePushed => {
                    let cutoff = now - s.count_number * DAY_MS;
                    selected.into_iter().filter(|&i| images[i].pushed_at < cutoff).collect()
                }
                CountType::SinceImagePulled => {
                    let cutoff = now - s.count_number * DAY_MS;
                    selected
                        .into_iter()
                        .filter(|&i| images[i].pulled_at.unwrap_or(images[i].pushed_at) < cutoff)
                        .collect()
                }
            };
            for i in candidates {
                if expired[i].is_none() && owner[i] == Some(ri) {
                    expired[i] = Some(rule.rule_priority);
                }
            }
        }
        Ok(expired.into_iter().enumerate().filter_map(|(i, p)| p.map(|p| (i, p))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn img(tags: &[&str], hours_ago: i64) -> Image {
        Image {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at: NOW - hours_ago * 3_600_000,
            pulled_at: None,
            labels: Vec::new(),
        }
    }

    fn rule(priority: i64, status: &str, list: Option<(&str, &[&str])>, count: &str) -> serde_json::Value {
        let mut sel = serde_json::json!({"tagStatus": status});
        if let Some((key, l)) = list {
            sel[key] = serde_json::json!(l);
        }
        match count.split_once(' ') {
            Some(("more", n)) => {
                sel["countType"] = "imageCountMoreThan".into();
                sel["countNumber"] = n.parse::<i64>().unwrap().into();
            }
            Some(("pushed", n)) => {
                sel["countType"] = "sinceImagePushed".into();
                sel["countUnit"] = "days".into();
                sel["countNumber"] = n.parse::<i64>().unwrap().into();
            }
            _ => unreachable!(),
        }
        serde_json::json!({"rulePriority": priority, "selection": sel, "action": {"type": "expire"}})
    }

    fn expired(rules: Vec<serde_json::Value>, images: &[Image]) -> Vec<usize> {
        let text = serde_json::json!({ "rules": rules }).to_string();
        let p = LifecyclePolicy::parse(&text).unwrap();
        p.evaluate(images, NOW).unwrap().into_iter().map(|(i, _)| i).collect()
    }

    /// The worked examples of ECR's documentation ("Examples of lifecycle policies").
    #[test]
    fn ecr_documented_examples() {
        let days = |d: i64| d * 24;
        let repo =
            [img(&["beta-1", "prod-1"], days(10)), img(&["beta-2", "prod-2"], days(9)), img(&["beta-3"], days(8))];
        // Multiple rules, example A: B matches rule 1's tags, so rule 2 cannot expire it.
        let a = expired(
            vec![
                rule(1, "tagged", Some(("tagPatternList", &["prod*"])), "more 1"),
                rule(2, "tagged", Some(("tagPatternList", &["beta*"])), "more 1"),
            ],
            &repo,
        );
        assert_eq!(a, vec![0]);
        // Example B: rule 1 (beta) sees everything first.
        let b = expired(
            vec![
                rule(1, "tagged", Some(("tagPrefixList", &["beta"])), "more 1"),
                rule(2, "tagged", Some(("tagPrefixList", &["prod"])), "more 1"),
            ],
            &repo,
        );
        assert_eq!(b, vec![0, 1]);
        // Multiple tags in one rule, example A: only images with both tags, older than 5 days.
        let tags = [
            img(&["alpha-1"], days(12)),
            img(&["beta-1"], days(11)),
            img(&["alpha-2", "beta-2"], days(10)),
            img(&["alpha-3"], days(4)),
            img(&["beta-3"], days(3)),
            img(&["alpha-4", "beta-4"], days(2)),
        ];
        assert_eq!(
            expired(vec![rule(1, "tagged", Some(("tagPrefixList", &["alpha", "beta"])), "pushed 5")], &tags),
            vec![2]
        );
        // Example B: tags are not exclusive.
        let tags_b = [
            img(&["alpha-1", "beta-1", "gamma-1"], days(10)),
            img(&["alpha-2", "beta-2"], days(9)),
            img(&["alpha-3", "beta-3", "gamma-2"], days(8)),
        ];
        assert_eq!(
            expired(vec![rule(1, "tagged", Some(("tagPatternList", &["alpha*", "beta*"])), "more 1")], &tags_b),
            vec![0, 1]
        );
        // All images, example A.
        let all =
            [img(&["alpha-1"], days(4)), img(&["beta-1"], days(3)), img(&[], days(2)), img(&["alpha-2"], days(1))];
        assert_eq!(expired(vec![rule(1, "any", None, "more 1")], &all), vec![0, 1, 2]);
        // All images, example B: the `any` rule counts every image but marks only its own.
        let mixed = [
            img(&["alpha-1", "beta-1"], days(4)),
            img(&[], days(3)),
            img(&["alpha-2"], days(2)),
            img(&["git hash"], 25),
            img(&[], 23),
        ];
        let r = expired(
            vec![
                rule(1, "tagged", Some(("tagPrefixList", &["alpha"])), "more 1"),
                rule(2, "untagged", None, "pushed 1"),
                rule(3, "any", None, "more 1"),
            ],
            &mixed,
        );
        assert_eq!(r, vec![0, 1, 3]);
    }

    #[test]
    fn since_image_pulled_counts_from_the_push_when_never_pulled() {
        let mut pulled = img(&["a"], 24 * 40);
        pulled.pulled_at = Some(NOW - 3_600_000);
        let never = img(&["b"], 24 * 40);
        let text = r#"{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "sinceImagePulled",
            "countUnit": "days", "countNumber": 30}, "action": {"type": "expire"}}]}"#;
        let p = LifecyclePolicy::parse(text).unwrap();
        assert_eq!(p.evaluate(&[pulled, never], NOW).unwrap(), vec![(1, 1)]);
    }

    #[test]
    fn invalid_policies_get_ecr_messages() {
        let err = |rules: Vec<serde_json::Value>| {
            LifecyclePolicy::parse(&serde_json::json!({ "rules": rules }).to_string()).unwrap_err()
        };
        let e = err(vec![rule(1, "tagged", None, "more 1")]);
        assert!(
            e.starts_with(MESSAGE_PREFIX)
                && e.ends_with("Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.'"),
            "{e}"
        );
        assert!(
            err(vec![rule(1, "untagged", None, "more 1"), rule(2, "untagged", None, "pushed 3")])
                .contains("Only one rule can select Untagged images.")
        );
        assert!(
            err(vec![rule(1, "any", None, "more 1"), rule(2, "untagged", None, "more 3")]).contains("tagStatus=ANY")
        );
        assert!(
            err(vec![
                rule(1, "untagged", None, "more 1"),
                rule(1, "tagged", Some(("tagPrefixList", &["a"])), "more 1")
            ])
            .contains("rulePriority 1")
        );
        assert!(
            err(vec![rule(1, "tagged", Some(("tagPatternList", &["a*b*c*d*e*f"])), "more 1")]).contains("4 wildcards")
        );
        assert!(
            err(vec![rule(1, "untagged", Some(("tagPrefixList", &["a"])), "more 1")])
                .contains("only be used with tagStatus=TAGGED")
        );
        let mut r = rule(1, "any", None, "more 1");
        r["selection"]["countUnit"] = "days".into();
        assert!(err(vec![r]).contains("countUnit"));
        let mut r = rule(1, "any", None, "more 0");
        r["selection"]["countNumber"] = 0.into();
        assert!(err(vec![r]).contains("minimum: 1, found: 0"));
        assert!(LifecyclePolicy::parse(r#"{"rules": [], "extra": 1}"#).unwrap_err().contains("Could not map"));
        assert!(err(vec![]).contains("at least 1"));
    }
}
