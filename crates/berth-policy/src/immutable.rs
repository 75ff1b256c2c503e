//! Tag immutability: Harbor's immutable tag rules (per project) and ECR's image tag mutability
//! (per repository), evaluated together. A tag is immutable when any enabled Harbor rule
//! selects it, or the repository's ECR setting does.
//!
//! Harbor's rules carry one tag selector (`matches` / `excludes` a doublestar pattern) and one
//! repository selector (`repoMatches` / `repoExcludes`, against the repository's name without
//! its project), as in `/api/v2.0/projects/{p}/immutabletagrules`. ECR's setting is
//! `imageTagMutability` (`MUTABLE`, `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION`,
//! `MUTABLE_WITH_EXCLUSION`) with up to five `WILDCARD` exclusion filters.
//!
//! ```
//! use berth_policy::immutable::{ImmutableRule, Immutability, TagMutability};
//! let rule: ImmutableRule = serde_json::from_str(r#"{
//!     "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v*"}],
//!     "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}
//! }"#).unwrap();
//! let ecr = TagMutability::parse(r#"{"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
//!     "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest"}]}"#).unwrap();
//! let rules = Immutability::compile(&[rule], Some(&ecr)).unwrap();
//! assert!(rules.immutable("app", "v1.0").is_some());
//! assert!(rules.immutable("app", "nightly").is_some(), "ECR: every tag but the exclusions");
//! assert!(rules.immutable("app", "latest").is_none());
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Pattern, PatternOptions, Syntax};

/// Most immutable tag rules a project may have (Harbor's limit).
pub const MAX_RULES: usize = 15;

/// One selector of a Harbor rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Always `doublestar`.
    #[serde(default = "doublestar")]
    pub kind: String,
    /// `matches` / `excludes` (tags), `repoMatches` / `repoExcludes` (repositories).
    pub decoration: String,
    /// A doublestar pattern: `*`, `**`, `?`, `[a-z]`, `{a,b}`.
    pub pattern: String,
    /// Harbor's free-form extras (kept, unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<String>,
}

fn doublestar() -> String {
    "doublestar".into()
}

fn immutable() -> String {
    "immutable".into()
}

fn template() -> String {
    "immutable_template".into()
}

/// A Harbor immutable tag rule, in Harbor's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImmutableRule {
    /// Its id (assigned by the server).
    #[serde(default)]
    pub id: i64,
    /// The project's id (assigned by the server).
    #[serde(default)]
    pub project_id: i64,
    /// Harbor's ordering field.
    #[serde(default)]
    pub priority: i64,
    /// A disabled rule selects nothing.
    #[serde(default)]
    pub disabled: bool,
    /// Always `immutable`.
    #[serde(default = "immutable")]
    pub action: String,
    /// Always `immutable_template`.
    #[serde(default = "template")]
    pub template: String,
    /// Harbor's free-form parameters (kept, unused).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Exactly one: which tags.
    pub tag_selectors: Vec<Selector>,
    /// `{"repository": [one selector]}`: which repositories.
    pub scope_selectors: BTreeMap<String, Vec<Selector>>,
}

/// ECR's per-repository setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MutabilityMode {
    /// Tags can be overwritten (the default).
    Mutable,
    /// No tag can be overwritten.
    Immutable,
    /// No tag can be overwritten except those matching an exclusion filter.
    ImmutableWithExclusion,
    /// Tags can be overwritten except those matching an exclusion filter.
    MutableWithExclusion,
}

/// One ECR exclusion filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusionFilter {
    /// Always `WILDCARD`.
    #[serde(rename = "filterType")]
    pub filter_type: String,
    /// Letters, digits, `.`, `_`, `-` and `*` (any run), 1–128 characters.
    pub filter: String,
}

/// ECR's `imageTagMutability` with its exclusion filters, in ECR's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagMutability {
    /// The mode.
    #[serde(rename = "imageTagMutability")]
    pub mode: MutabilityMode,
    /// The filters (only with the `…_WITH_EXCLUSION` modes).
    #[serde(rename = "imageTagMutabilityExclusionFilters", default, skip_serializing_if = "Vec::is_empty")]
    pub exclusion_filters: Vec<ExclusionFilter>,
}

impl TagMutability {
    /// Parse and validate ECR's JSON (messages as ECR words them where it documents them).
    pub fn parse(text: &str) -> Result<TagMutability, String> {
        let m: TagMutability = serde_json::from_str(text).map_err(|e| format!("invalid tag mutability: {e}"))?;
        m.validate()?;
        Ok(m)
    }

    /// Check the combination of mode and filters.
    pub fn validate(&self) -> Result<(), String> {
        let with = matches!(self.mode, MutabilityMode::ImmutableWithExclusion | MutabilityMode::MutableWithExclusion);
        if with && self.exclusion_filters.is_empty() {
            return Err("imageTagMutabilityExclusionFilters must contain at least one filter for the \
                        IMMUTABLE_WITH_EXCLUSION and MUTABLE_WITH_EXCLUSION modes"
                .into());
        }
        if !with && !self.exclusion_filters.is_empty() {
            return Err("imageTagMutabilityExclusionFilters are only allowed with IMMUTABLE_WITH_EXCLUSION or \
                        MUTABLE_WITH_EXCLUSION"
                .into());
        }
        if self.exclusion_filters.len() > 5 {
            return Err("imageTagMutabilityExclusionFilters may hold at most 5 filters".into());
        }
        for f in &self.exclusion_filters {
            if f.filter_type != "WILDCARD" {
                return Err(format!("filterType {:?} is not supported; use WILDCARD", f.filter_type));
            }
            let ok = (1..=128).contains(&f.filter.len())
                && f.filter.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*'));
            if !ok {
                return Err(format!(
                    "filter {:?}: 1 to 128 characters of letters, digits, '.', '_', '-' and '*'",
                    f.filter
                ));
            }
        }
        Ok(())
    }
}

/// A compiled selector: a pattern and whether it selects what matches or what does not.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) pattern: Pattern,
    pub(crate) exclude: bool,
}

impl Compiled {
    pub(crate) fn selects(&self, text: &str) -> bool {
        self.pattern.matches(text) != self.exclude
    }
}

pub(crate) fn compile_selector(s: &Selector, what: &str, matches: &str, excludes: &str) -> Result<Compiled, String> {
    if s.kind != "doublestar" {
        return Err(format!("{what} selector kind {:?} is not supported; use doublestar", s.kind));
    }
    let exclude = match s.decoration.as_str() {
        d if d == matches => false,
        d if d == excludes => true,
        other => return Err(format!("{what} selector decoration {other:?}: use {matches} or {excludes}")),
    };
    let pattern = Pattern::new(&s.pattern, Syntax::PathGlob, PatternOptions::default())
        .map_err(|e| format!("{what} selector pattern: {e}"))?;
    Ok(Compiled { pattern, exclude })
}

impl ImmutableRule {
    /// Check the rule's shape and patterns.
    pub fn validate(&self) -> Result<(), String> {
        self.compile().map(|_| ())
    }

    fn compile(&self) -> Result<(Compiled, Compiled), String> {
        if self.action != "immutable" {
            return Err(format!("action {:?}: an immutable tag rule's action is \"immutable\"", self.action));
        }
        let [tag] = self.tag_selectors.as_slice() else {
            return Err("an immutable tag rule needs exactly one tag selector".into());
        };
        if let Some(other) = self.scope_selectors.keys().find(|k| k.as_str() != "repository") {
            return Err(format!("scope selector {other:?}: only \"repository\" is supported"));
        }
        let Some([repo]) = self.scope_selectors.get("repository").map(Vec::as_slice) else {
            return Err("an immutable tag rule needs exactly one repository scope selector".into());
        };
        Ok((
            compile_selector(tag, "tag", "matches", "excludes")?,
            compile_selector(repo, "repository", "repoMatches", "repoExcludes")?,
        ))
    }
}

/// Every rule that applies to one repository, compiled.
#[derive(Debug, Clone, Default)]
pub struct Immutability {
    rules: Vec<(i64, Compiled, Compiled)>,
    ecr: Option<(MutabilityMode, Vec<Pattern>)>,
}

impl Immutability {
    /// Compile a project's Harbor rules (disabled ones are skipped) and a repository's ECR setting.
    pub fn compile(rules: &[ImmutableRule], ecr: Option<&TagMutability>) -> Result<Immutability, String> {
        let mut out = Immutability::default();
        for r in rules.iter().filter(|r| !r.disabled) {
            let (tag, repo) = r.compile()?;
            out.rules.push((r.id, tag, repo));
        }
        if let Some(m) = ecr {
            let filters = m
                .exclusion_filters
                .iter()
                .map(|f| Pattern::new(&f.filter, Syntax::Wildcard, PatternOptions::default()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("exclusion filter: {e}"))?;
            out.ecr = Some((m.mode, filters));
        }
        Ok(out)
    }

    /// Does nothing make any tag immutable?
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && !matches!(self.ecr, Some((m, _)) if m != MutabilityMode::Mutable)
    }

    /// Why `tag` of `repo` (the repository's name without its project) may not be deleted, if
    /// so: Harbor's immutable tag rules forbid deleting a tag they select; ECR's tag
    /// mutability only forbids overwriting one (ECR deletes and expires images of an
    /// `IMMUTABLE` repository).
    pub fn undeletable(&self, repo: &str, tag: &str) -> Option<String> {
        let (id, _, _) = self.rules.iter().find(|(_, t, r)| r.selects(repo) && t.selects(tag))?;
        Some(format!("immutable tag rule {id} of the project"))
    }

    /// Why `tag` of `repo` (the repository's name without its project) may not be overwritten
    /// or moved, if so.
    pub fn immutable(&self, repo: &str, tag: &str) -> Option<String> {
        if let Some(why) = self.undeletable(repo, tag) {
            return Some(why);
        }
        let (mode, filters) = self.ecr.as_ref()?;
        let excluded = || filters.iter().any(|f| f.matches(tag));
        let immutable = match mode {
            MutabilityMode::Mutable => false,
            MutabilityMode::Immutable => true,
            MutabilityMode::ImmutableWithExclusion => !excluded(),
            MutabilityMode::MutableWithExclusion => excluded(),
        };
        immutable.then(|| "the repository's image tag mutability setting".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: i64, tag: (&str, &str), repo: (&str, &str)) -> ImmutableRule {
        ImmutableRule {
            id,
            project_id: 1,
            priority: 0,
            disabled: false,
            action: "immutable".into(),
            template: "immutable_template".into(),
            params: BTreeMap::new(),
            tag_selectors: vec![Selector {
                kind: "doublestar".into(),
                decoration: tag.0.into(),
                pattern: tag.1.into(),
                extras: None,
            }],
            scope_selectors: [(
                "repository".to_owned(),
                vec![Selector {
                    kind: "doublestar".into(),
                    decoration: repo.0.into(),
                    pattern: repo.1.into(),
                    extras: None,
                }],
            )]
            .into(),
        }
    }

    #[test]
    fn harbor_rules_select_by_repository_and_tag_with_exclusions() {
        let rules = [
            rule(1, ("matches", "v{1,2}.*"), ("repoMatches", "prod/**")),
            rule(2, ("excludes", "{latest,dev-*}"), ("repoExcludes", "sandbox*")),
        ];
        let im = Immutability::compile(&rules[..1], None).unwrap();
        assert!(im.immutable("prod/api", "v1.2").is_some());
        assert!(im.immutable("prod/api", "v3.0").is_none());
        assert!(im.immutable("dev/api", "v1.2").is_none());
        let im = Immutability::compile(&rules[1..], None).unwrap();
        assert!(im.immutable("web", "1.0").unwrap().contains("rule 2"));
        assert!(im.immutable("web", "latest").is_none() && im.immutable("web", "dev-7").is_none());
        assert!(im.immutable("sandbox-a", "1.0").is_none());
        assert_eq!(im.undeletable("web", "1.0"), im.immutable("web", "1.0"), "Harbor's rules also forbid deletes");
        let mut off = rules[1].clone();
        off.disabled = true;
        assert!(Immutability::compile(&[off], None).unwrap().is_empty());
    }

    #[test]
    fn ecr_modes_and_filters() {
        let m = |t: &str| Immutability::compile(&[], Some(&TagMutability::parse(t).unwrap())).unwrap();
        assert!(m(r#"{"imageTagMutability": "MUTABLE"}"#).is_empty());
        assert!(m(r#"{"imageTagMutability": "IMMUTABLE"}"#).immutable("r", "latest").is_some());
        let ex = m(r#"{"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
                      "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "dev-*"}]}"#);
        assert!(ex.immutable("r", "dev-1").is_none() && ex.immutable("r", "1.0").is_some());
        let mx = m(r#"{"imageTagMutability": "MUTABLE_WITH_EXCLUSION",
                      "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "release-*"}]}"#);
        assert!(mx.immutable("r", "release-1").is_some() && mx.immutable("r", "latest").is_none());
    }

    #[test]
    fn bad_documents_say_what_is_wrong() {
        let err = |t: &str| TagMutability::parse(t).unwrap_err();
        assert!(err(r#"{"imageTagMutability": "SOMETIMES"}"#).contains("SOMETIMES"));
        assert!(err(r#"{"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION"}"#).contains("at least one filter"));
        assert!(err(r#"{"imageTagMutability": "IMMUTABLE", "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "a"}]}"#).contains("only allowed"));
        assert!(err(r#"{"imageTagMutability": "MUTABLE_WITH_EXCLUSION", "imageTagMutabilityExclusionFilters": [{"filterType": "REGEX", "filter": "a"}]}"#).contains("WILDCARD"));
        assert!(err(r#"{"imageTagMutability": "MUTABLE_WITH_EXCLUSION", "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "a/b"}]}"#).contains("128"));
        let mut r = rule(1, ("matches", "v*"), ("repoMatches", "**"));
        r.tag_selectors[0].decoration = "equals".into();
        assert!(r.validate().unwrap_err().contains("matches or excludes"));
        let mut r = rule(1, ("matches", "v*"), ("repoMatches", "**"));
        r.scope_selectors.clear();
        assert!(r.validate().unwrap_err().contains("repository scope selector"));
        let r = rule(1, ("matches", "{unclosed"), ("repoMatches", "**"));
        assert!(r.validate().unwrap_err().contains("tag selector pattern"));
    }
}
