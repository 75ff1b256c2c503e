//! An in-memory advisory index: `affected` entries by (ecosystem, package name), and
//! matching of installed packages against them.
//!
//! Withdrawn records are skipped when they are added. OS ecosystems match on the release
//! (`Debian:12` advisories apply to Debian 12 images; an entry without a release applies to
//! all). Findings that share an id or alias for one package are one finding (one CVE is one
//! finding, whichever databases describe it).
//!
//! **Severity** of a finding, first that applies: the highest CVSS score among its own
//! advisories; else a CVSS rating of any of its ids from another record (scores-only records
//! from NVD first, then CVE records, then other advisories that alias it: a `DEBIAN-CVE-…`
//! record takes the CVSS of its CVE); else its advisories' own words (GHSA's rating, Debian's
//! urgency); else `Unknown`. The finding names the source that set it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cvss::{Rating, Severity};
use crate::inventory::Evidence;
use crate::osv::{Advisory, Entry, Interner, OsvRecord};
use crate::version::Ecosystem;

/// An installed package to match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Package {
    /// Its ecosystem; for OS packages with the release (`Debian:12`).
    pub ecosystem: Ecosystem,
    /// The name advisories use: the source package for Debian, the origin for Alpine.
    pub name: String,
    /// Installed version (for Debian the source version, when it differs).
    pub version: String,
}

/// One vulnerability of one package.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// The id a report shows (a CVE when there is one).
    pub id: String,
    /// Every id of the advisories grouped here.
    pub ids: Vec<String>,
    /// Package name as matched.
    pub package: String,
    /// Installed version.
    pub version: String,
    /// The lowest fixed version above the installed one, if any advisory gives one.
    pub fixed_version: Option<String>,
    /// Highest severity among the grouped advisories.
    pub severity: Severity,
    /// The CVSS base score that set the severity, with its vector.
    pub cvss: Option<(f64, String)>,
    /// Who set the severity (`NVD`, an advisory id, `Debian security tracker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity_source: Option<String>,
    /// The distribution's own status of this package for it (`will not fix`, `end of life`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Summary (or the start of the description).
    pub description: String,
    /// Links.
    pub links: Vec<String>,
    /// The installed package's URL (empty in reports stored before it was recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub purl: String,
    /// How the package is known to be there (installed metadata, or a lock file only).
    #[serde(default, skip_serializing_if = "Evidence::is_installed")]
    pub evidence: Evidence,
}

/// What matching one package found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matched {
    /// Findings, by severity (highest first), then id.
    pub findings: Vec<Finding>,
    /// True when the installed version does not parse in its ecosystem (nothing matched).
    pub unparsable: bool,
}

/// An advisory that matched (its index), the fixed version its entry gives, and its entry's
/// distribution status.
type Hit = (usize, Option<String>, Option<String>);

/// The index.
#[derive(Default)]
pub struct Database {
    advisories: Vec<Arc<Advisory>>,
    entries: HashMap<(Ecosystem, String), Vec<(usize, Entry)>>,
    /// Records added (withdrawn ones not counted).
    pub records: usize,
    /// Withdrawn records skipped.
    pub withdrawn: usize,
    /// `affected` entries for ecosystems Berth does not match.
    pub skipped_entries: usize,
    /// Range events and listed versions that did not parse.
    pub unparsable_versions: usize,
    /// CVSS ratings by vulnerability id, with their precedence (NVD 3, CVE record 2, any
    /// other advisory 1), for findings whose advisories carry none.
    ratings: HashMap<String, (u8, Arc<Rating>)>,
    /// Scores-only records (NVD, CVE records: no `affected`) read.
    pub scores: usize,
    /// Parsed versions, shared by every entry that names them.
    interner: Interner,
}

impl Database {
    /// An empty index.
    pub fn new() -> Database {
        Database::default()
    }

    /// Add a record.
    pub fn add(&mut self, r: &OsvRecord) {
        if r.withdrawn.is_some() {
            self.withdrawn += 1;
            return;
        }
        let idx = self.advisories.len();
        let mut used = false;
        for a in &r.affected {
            match Entry::build_with(a, &mut self.interner) {
                Some(e) => {
                    self.unparsable_versions += e.unparsable;
                    let key = (e.ecosystem.family(), e.name.clone());
                    self.entries.entry(key).or_default().push((idx, e));
                    used = true;
                }
                None => self.skipped_entries += 1,
            }
        }
        let advisory = Advisory::from_record(r);
        // A scored record lends its rating to every id it names.
        if let Some(rating) = advisory.rating.as_ref().filter(|x| x.score.is_some()) {
            let precedence = if r.id.starts_with("NVD-") {
                3
            } else if r.id.starts_with("CVE5-") {
                2
            } else {
                1
            };
            let rating = Arc::new(rating.clone());
            for id in std::iter::once(&r.id).chain(&advisory.aliases) {
                let slot = self.ratings.entry(id.clone()).or_insert_with(|| (precedence, rating.clone()));
                if slot.0 < precedence {
                    *slot = (precedence, rating.clone());
                }
            }
        }
        if used {
            self.advisories.push(Arc::new(advisory));
            self.records += 1;
        } else if r.affected.is_empty() {
            self.scores += 1;
        }
    }

    /// Number of advisories that can match something.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// The rating of a group of advisories with these ids (see the module's documentation).
    fn rating_of(&self, advs: &[&Arc<Advisory>], ids: &[String]) -> Option<Rating> {
        let by_score = |x: &&Rating, y: &&Rating| x.score.partial_cmp(&y.score).unwrap_or(std::cmp::Ordering::Equal);
        let own = || advs.iter().filter_map(|a| a.rating.as_ref());
        own()
            .filter(|r| r.score.is_some())
            .max_by(by_score)
            .or_else(|| {
                ids.iter()
                    .filter_map(|i| self.ratings.get(i))
                    .max_by(|x, y| x.0.cmp(&y.0).then_with(|| by_score(&&*x.1, &&*y.1)))
                    .map(|(_, r)| &**r)
            })
            .or_else(|| own().max_by_key(|r| r.severity))
            .cloned()
    }

    /// Match one installed package.
    pub fn matches(&self, p: &Package) -> Matched {
        let name = p.ecosystem.normalize_name(&p.name);
        let Some(entries) = self.entries.get(&(p.ecosystem.family(), name)) else {
            return Matched::default();
        };
        let Some(native) = p.ecosystem.scheme().parse(&p.version) else {
            return Matched { findings: Vec::new(), unparsable: true };
        };
        let semver = crate::version::Scheme::SemVer.parse(&p.version);
        let mut hits: Vec<Hit> = Vec::new();
        for (idx, e) in entries {
            if let (Some(want), Some(have)) = (e.ecosystem.release(), p.ecosystem.release())
                && want != have
            {
                continue;
            }
            if let Some(fixed) = e.affects_parsed(Some(&native), semver.as_ref()) {
                hits.push((*idx, fixed, e.status.clone()));
            }
        }
        Matched { findings: self.group(p, hits), unparsable: false }
    }

    /// Group hits that share an id or alias into one finding each.
    fn group(&self, p: &Package, hits: Vec<Hit>) -> Vec<Finding> {
        let scheme = p.ecosystem.scheme();
        let mut groups: Vec<(Vec<String>, Vec<Hit>)> = Vec::new();
        for (idx, fixed, status) in hits {
            let a = &self.advisories[idx];
            let ids: Vec<String> = std::iter::once(a.id.clone()).chain(a.aliases.iter().cloned()).collect();
            let overlapping: Vec<usize> =
                (0..groups.len()).filter(|&g| groups[g].0.iter().any(|x| ids.contains(x))).collect();
            let mut merged = (ids, vec![(idx, fixed, status)]);
            for &g in overlapping.iter().rev() {
                let (gids, gh) = groups.swap_remove(g);
                merged.0.extend(gids);
                merged.1.extend(gh);
            }
            merged.0.sort();
            merged.0.dedup();
            groups.push(merged);
        }
        let mut out: Vec<Finding> = groups
            .into_iter()
            .map(|(ids, members)| {
                let advs: Vec<&Arc<Advisory>> = members.iter().map(|(i, _, _)| &self.advisories[*i]).collect();
                // The id people search for: a CVE, else a GitHub advisory, else the source's.
                let id = ["CVE-", "GHSA-"]
                    .iter()
                    .find_map(|prefix| ids.iter().find(|x| x.starts_with(prefix)))
                    .cloned()
                    .unwrap_or_else(|| advs.iter().map(|a| a.display_id().to_owned()).min().unwrap_or_default());
                let rating = self.rating_of(&advs, &ids);
                let severity = rating.as_ref().map_or(Severity::Unknown, |r| r.severity);
                let cvss = rating.as_ref().and_then(|r| Some((r.score?, r.vector.clone()?)));
                let status = members.iter().find_map(|(_, _, s)| s.clone());
                let fixed_version = members
                    .iter()
                    .filter_map(|(_, f, _)| f.clone())
                    .min_by(|x, y| scheme.compare(x, y).unwrap_or(std::cmp::Ordering::Equal));
                let description = advs
                    .iter()
                    .map(|a| if a.summary.is_empty() { a.description.clone() } else { a.summary.clone() })
                    .find(|d| !d.is_empty())
                    .unwrap_or_default();
                let mut links: Vec<String> = advs.iter().flat_map(|a| a.links.iter().cloned()).collect();
                links.sort();
                links.dedup();
                Finding {
                    id,
                    ids,
                    package: p.name.clone(),
                    version: p.version.clone(),
                    fixed_version,
                    severity,
                    cvss,
                    severity_source: rating.map(|r| r.source),
                    status,
                    description,
                    links,
                    purl: String::new(),
                    evidence: Evidence::Installed,
                }
            })
            .collect();
        out.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> OsvRecord {
        serde_json::from_str(json).unwrap()
    }

    fn pkg(eco: &str, name: &str, version: &str) -> Package {
        Package { ecosystem: Ecosystem::parse(eco).unwrap(), name: name.into(), version: version.into() }
    }

    #[test]
    fn matching_groups_aliases_honours_releases_and_skips_withdrawn() {
        let mut db = Database::new();
        db.add(&record(
            r#"{"id": "PYSEC-1", "aliases": ["CVE-2020-1", "GHSA-a"], "summary": "from pypa",
                "affected": [{"package": {"ecosystem": "PyPI", "name": "PyYAML"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}]}"#,
        ));
        db.add(&record(
            r#"{"id": "GHSA-a", "aliases": ["CVE-2020-1"], "database_specific": {"severity": "CRITICAL"},
                "affected": [{"package": {"ecosystem": "PyPI", "name": "pyyaml"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.3.1"}]}]}]}"#,
        ));
        db.add(&record(
            r#"{"id": "PYSEC-2", "withdrawn": "2021-01-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": "PyPI", "name": "pyyaml"}, "versions": ["5.1"]}]}"#,
        ));
        db.add(&record(
            r#"{"id": "DEBIAN-CVE-2023-1", "upstream": ["CVE-2023-1"],
                "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u1"}]}]},
                             {"package": {"ecosystem": "Debian:11", "name": "openssl"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1.1w-0+deb11u1"}]}]}]}"#,
        ));
        assert_eq!((db.records, db.withdrawn, db.len()), (3, 1, 3));

        let m = db.matches(&pkg("PyPI", "PyYAML", "5.1"));
        assert_eq!(m.findings.len(), 1, "one CVE, one finding: {m:?}");
        let f = &m.findings[0];
        assert_eq!(f.id, "CVE-2020-1");
        assert_eq!(f.ids, vec!["CVE-2020-1", "GHSA-a", "PYSEC-1"]);
        assert_eq!(f.fixed_version.as_deref(), Some("5.3.1"), "the lowest fix");
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.description, "from pypa");
        // 5.3.1 is fixed for GHSA-a but not for PYSEC-1: still one finding, fixed in 5.4
        let m = db.matches(&pkg("PyPI", "pyyaml", "5.3.1"));
        assert_eq!((m.findings.len(), m.findings[0].fixed_version.as_deref()), (1, Some("5.4")));
        assert!(db.matches(&pkg("PyPI", "pyyaml", "5.4")).findings.is_empty());
        assert!(db.matches(&pkg("PyPI", "pyyaml", "not-a-version")).unparsable);
        // releases
        let m = db.matches(&pkg("Debian:12", "openssl", "3.0.9-1"));
        assert_eq!(m.findings.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), vec!["CVE-2023-1"]);
        assert_eq!(m.findings[0].fixed_version.as_deref(), Some("3.0.11-1~deb12u1"));
        assert!(db.matches(&pkg("Debian:12", "openssl", "3.0.11-1~deb12u1")).findings.is_empty());
        assert!(db.matches(&pkg("Debian:13", "openssl", "3.0.9-1")).findings.is_empty());
        assert!(db.matches(&pkg("npm", "openssl", "1.0.0")).findings.is_empty());
        // Without a CVE, the GitHub advisory's id is the one shown (not the source's own).
        db.add(&record(
            r#"{"id": "PYSEC-9", "aliases": ["GHSA-zzzz"],
                "affected": [{"package": {"ecosystem": "PyPI", "name": "jinja2"}, "versions": ["2.10"]}]}"#,
        ));
        let m = db.matches(&pkg("PyPI", "Jinja2", "2.10"));
        assert_eq!(
            (m.findings[0].id.as_str(), &m.findings[0].ids[..]),
            ("GHSA-zzzz", &["GHSA-zzzz".to_owned(), "PYSEC-9".to_owned()][..])
        );
    }
}
