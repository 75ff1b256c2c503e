//! OSV records (the subset Berth reads) and the evaluation of their `affected` entries.
//!
//! A version is affected by an entry when it is listed in `versions`, or when it falls in one
//! of its `ranges`: events sorted by version (`introduced: "0"` first), walked in order —
//! `introduced ≤ v` makes it affected, `fixed ≤ v` unaffected, `last_affected < v`
//! unaffected; a `limit ≤ v` ends the range. `GIT` ranges cannot be evaluated offline and are
//! ignored.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::cvss::{Rating, Severity};
use crate::version::{Ecosystem, Scheme, Version};

/// An OSV record as stored (unknown fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct OsvRecord {
    /// Its id (`PYSEC-…`, `GHSA-…`, `DEBIAN-CVE-…`).
    pub id: String,
    /// Last change (RFC 3339).
    #[serde(default)]
    pub modified: String,
    /// When withdrawn, if it was.
    #[serde(default)]
    pub withdrawn: Option<String>,
    /// Other ids of the same vulnerability.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Ids this record derives from (the CVE of a distribution's record).
    #[serde(default)]
    pub upstream: Vec<String>,
    /// One line.
    #[serde(default)]
    pub summary: Option<String>,
    /// The description.
    #[serde(default)]
    pub details: Option<String>,
    /// CVSS vectors.
    #[serde(default)]
    pub severity: Vec<OsvSeverity>,
    /// Links.
    #[serde(default)]
    pub references: Vec<OsvReference>,
    /// Affected packages.
    #[serde(default)]
    pub affected: Vec<OsvAffected>,
    /// Free-form (GHSA's `severity`, RustSec's `informational`).
    #[serde(default)]
    pub database_specific: Option<Value>,
}

/// A severity entry.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvSeverity {
    /// `CVSS_V3`, `CVSS_V4`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector.
    pub score: String,
}

/// A reference.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvReference {
    /// Its URL.
    pub url: String,
}

/// An affected package.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvAffected {
    /// The package.
    #[serde(default)]
    pub package: Option<OsvPackage>,
    /// Version ranges.
    #[serde(default)]
    pub ranges: Vec<OsvRange>,
    /// Affected versions, enumerated.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Free-form; Berth reads `status`, the distribution's own word for the state of this
    /// package (`will not fix`, `end of life`), which its importers set.
    #[serde(default)]
    pub database_specific: Option<Value>,
}

/// A package in an ecosystem.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvPackage {
    /// Ecosystem (`PyPI`, `Debian:12`).
    pub ecosystem: String,
    /// Name within it.
    pub name: String,
}

/// A range.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvRange {
    /// `SEMVER`, `ECOSYSTEM` or `GIT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Events, each an object with one of `introduced`, `fixed`, `last_affected`, `limit`.
    #[serde(default)]
    pub events: Vec<std::collections::BTreeMap<String, String>>,
}

/// A version as advisories write it, parsed once.
#[derive(Debug)]
pub struct Parsed {
    version: Version,
    text: Box<str>,
}

/// Parses each distinct version of a scheme once and shares it: advisories repeat the same
/// versions across releases and records (the 168,764 range events of Alpine's secdb name
/// 4,182 versions; PyPA's 140,847 listed versions are 12,956), so an index holds each once.
#[derive(Debug, Default)]
pub struct Interner {
    parsed: HashMap<(Scheme, Box<str>), Option<Arc<Parsed>>>,
}

impl Interner {
    /// `s` parsed under `scheme` (`None` when it does not parse), shared with its equals.
    pub fn parse(&mut self, scheme: Scheme, s: &str) -> Option<Arc<Parsed>> {
        if let Some(p) = self.parsed.get(&(scheme, Box::from(s))) {
            return p.clone();
        }
        let p = scheme.parse(s).map(|version| Arc::new(Parsed { version, text: s.into() }));
        self.parsed.insert((scheme, s.into()), p.clone());
        p
    }
}

/// One event of a range, with its version parsed.
#[derive(Debug, Clone)]
enum Event {
    Introduced(Option<Arc<Parsed>>),
    Fixed(Arc<Parsed>),
    LastAffected(Arc<Parsed>),
    Limit(Arc<Parsed>),
}

impl Event {
    fn version(&self) -> Option<&Version> {
        match self {
            Event::Introduced(v) => v.as_ref().map(|p| &p.version),
            Event::Fixed(p) | Event::LastAffected(p) | Event::Limit(p) => Some(&p.version),
        }
    }
}

/// An evaluable range, with the ordering its events were parsed in (a `SEMVER` range is
/// SemVer whatever the ecosystem).
#[derive(Debug, Clone)]
pub struct Range {
    scheme: Scheme,
    events: Vec<Event>,
}

/// Why an entry could not be evaluated for a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unparsable;

impl Range {
    fn build(r: &OsvRange, scheme: Scheme, interner: &mut Interner) -> Option<Range> {
        if r.kind == "GIT" {
            return None;
        }
        let mut events = Vec::new();
        for e in &r.events {
            let (k, v) = e.iter().next()?;
            let mut parsed = |v: &str| interner.parse(scheme, v);
            events.push(match k.as_str() {
                "introduced" if v == "0" => Event::Introduced(None),
                "introduced" => Event::Introduced(Some(parsed(v)?)),
                "fixed" => Event::Fixed(parsed(v)?),
                "last_affected" => Event::LastAffected(parsed(v)?),
                "limit" if v == "*" => continue,
                "limit" => Event::Limit(parsed(v)?),
                _ => continue,
            });
        }
        // Sort by version; `introduced: 0` first. On ties the OSV order is kept.
        events.sort_by(|a, b| match (a.version(), b.version()) {
            (None, None) => Ordering::Equal,
            (None, _) => Ordering::Less,
            (_, None) => Ordering::Greater,
            (Some(x), Some(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        });
        Some(Range { scheme, events })
    }

    /// Is `v` in the range? With the fixed version that ends its affected span, if any.
    fn contains(&self, v: &Version) -> (bool, Option<&str>) {
        let mut affected = false;
        for e in &self.events {
            let ord = e.version().map(|ev| v.partial_cmp(ev).unwrap_or(Ordering::Less));
            match e {
                Event::Introduced(_) => {
                    if ord.is_none_or(|o| o != Ordering::Less) {
                        affected = true;
                    } else {
                        break;
                    }
                }
                Event::Fixed(p) => {
                    if ord != Some(Ordering::Less) {
                        affected = false;
                    } else {
                        return (affected, affected.then_some(&*p.text));
                    }
                }
                Event::LastAffected(_) => {
                    if ord == Some(Ordering::Greater) {
                        affected = false;
                    } else {
                        break;
                    }
                }
                Event::Limit(_) => {
                    if ord != Some(Ordering::Less) {
                        return (false, None);
                    }
                }
            }
        }
        (affected, None)
    }
}

/// An `affected` entry made evaluable.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Ecosystem, with its release.
    pub ecosystem: Ecosystem,
    /// Package name, normalised for the ecosystem.
    pub name: String,
    ranges: Vec<Range>,
    versions: Vec<Arc<Parsed>>,
    /// Range events or listed versions that did not parse (the entry is still used).
    pub unparsable: usize,
    /// The distribution's status of the package (`will not fix`), when its data says.
    pub status: Option<String>,
}

impl Entry {
    /// Build from an OSV entry; `None` for ecosystems Berth does not match.
    pub fn build(a: &OsvAffected) -> Option<Entry> {
        Entry::build_with(a, &mut Interner::default())
    }

    /// [`Entry::build`], sharing parsed versions through `interner`.
    pub fn build_with(a: &OsvAffected, interner: &mut Interner) -> Option<Entry> {
        let pkg = a.package.as_ref()?;
        let ecosystem = Ecosystem::parse(&pkg.ecosystem)?;
        let scheme = ecosystem.scheme();
        let mut unparsable = 0;
        let mut ranges = Vec::new();
        for r in &a.ranges {
            let scheme = if r.kind == "SEMVER" { Scheme::SemVer } else { scheme };
            match Range::build(r, scheme, interner) {
                Some(r) => ranges.push(r),
                None if r.kind == "GIT" => {}
                None => unparsable += 1,
            }
        }
        let mut versions = Vec::new();
        for v in &a.versions {
            match interner.parse(scheme, v) {
                Some(p) => versions.push(p),
                None => unparsable += 1,
            }
        }
        let status = a.database_specific.as_ref().and_then(|d| d["status"].as_str()).map(str::to_owned);
        Some(Entry { name: ecosystem.normalize_name(&pkg.name), ecosystem, ranges, versions, unparsable, status })
    }

    /// Does the entry affect version `v` (parsed here per range: a `SEMVER` range of a PyPI
    /// package compares as SemVer)? `Some(fixed)` carries the fixed version where one is known.
    pub fn affects(&self, v: &str) -> Option<Option<String>> {
        self.affects_parsed(self.ecosystem.scheme().parse(v).as_ref(), Scheme::SemVer.parse(v).as_ref())
    }

    /// [`Entry::affects`] with the version already parsed in the ecosystem's scheme and as SemVer.
    pub fn affects_parsed(&self, native: Option<&Version>, semver: Option<&Version>) -> Option<Option<String>> {
        let mut hit = native.is_some_and(|n| self.versions.iter().any(|x| x.version == *n));
        let mut fixed = None;
        for r in &self.ranges {
            let parsed = if r.scheme == self.ecosystem.scheme() { native } else { semver };
            let Some(pv) = parsed else { continue };
            let (yes, f) = r.contains(pv);
            if yes {
                hit = true;
                if fixed.is_none() {
                    fixed = f.map(str::to_owned);
                }
            }
        }
        hit.then_some(fixed)
    }
}

/// An advisory reduced to what a report shows.
#[derive(Debug, Clone)]
pub struct Advisory {
    /// The record's id.
    pub id: String,
    /// Aliases and upstream ids.
    pub aliases: Vec<String>,
    /// One line.
    pub summary: String,
    /// The description.
    pub description: String,
    /// The record's own rating: from its CVSS vector (v3 preferred, else v4, else v2), else
    /// its word (`database_specific.severity`: GHSA's, a distribution's urgency).
    pub rating: Option<Rating>,
    /// Links.
    pub links: Vec<String>,
    /// Last change.
    pub modified: String,
    /// RustSec's informational kind (`unmaintained`, `unsound`, `notice`), if any.
    pub informational: Option<String>,
}

impl Advisory {
    /// From a record (the caller skips withdrawn ones).
    pub fn from_record(r: &OsvRecord) -> Advisory {
        let db = r.database_specific.as_ref();
        // Who rated it: an importer names the source (`NVD`); else the record itself.
        let source = db.and_then(|d| d["severity_source"].as_str()).unwrap_or(&r.id);
        // CVSS v3 when there is one (what NVD and Harbor show), else v4, else v2.
        let rating = ["CVSS_V3", "CVSS_V4", "CVSS_V2"]
            .iter()
            .find_map(|kind| {
                r.severity.iter().filter(|s| s.kind == *kind).find_map(|s| Rating::of_vector(&s.score, source))
            })
            .or_else(|| {
                let severity = db.and_then(|d| d["severity"].as_str()).and_then(Severity::parse)?;
                Some(Rating { severity, score: None, vector: None, source: source.to_owned() })
            });
        let mut aliases: Vec<String> = r.aliases.iter().chain(&r.upstream).filter(|a| **a != r.id).cloned().collect();
        aliases.sort();
        aliases.dedup();
        Advisory {
            id: r.id.clone(),
            aliases,
            summary: r.summary.clone().unwrap_or_default(),
            description: r.details.clone().unwrap_or_default(),
            rating,
            links: r.references.iter().map(|x| x.url.clone()).collect(),
            modified: r.modified.clone(),
            informational: db.and_then(|d| d["informational"].as_str()).map(str::to_owned),
        }
    }

    /// The id a report shows: a CVE id among the id and aliases when there is one, else the id.
    pub fn display_id(&self) -> &str {
        if self.id.starts_with("CVE-") {
            return &self.id;
        }
        self.aliases.iter().find(|a| a.starts_with("CVE-")).map(String::as_str).unwrap_or(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Entry {
        let a: OsvAffected = serde_json::from_str(json).unwrap();
        Entry::build(&a).unwrap()
    }

    fn check(e: &Entry, cases: &[(&str, Option<Option<&str>>)]) {
        for (v, want) in cases {
            assert_eq!(e.affects(v), want.map(|f| f.map(str::to_owned)), "{v}");
        }
    }

    #[test]
    fn ranges_follow_the_osv_evaluation() {
        let e = entry(
            r#"{"package": {"ecosystem": "PyPI", "name": "Foo_Bar"}, "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"fixed": "2.0.5"}]},
                {"type": "GIT", "events": [{"introduced": "abc"}]}],
                "versions": ["3.0"]}"#,
        );
        assert_eq!(e.name, "foo-bar");
        check(
            &e,
            &[
                ("0.1", Some(Some("1.2"))),
                ("1.1.9", Some(Some("1.2"))),
                ("1.2", None),
                ("1.5", None),
                ("2.0", Some(Some("2.0.5"))),
                ("2.0.4", Some(Some("2.0.5"))),
                ("2.0.5", None),
                ("3.0", Some(None)),
                ("3.0.0", Some(None)),
                ("3.1", None),
            ],
        );
        // last_affected: that version is still affected; limit ends the range.
        let e = entry(
            r#"{"package": {"ecosystem": "npm", "name": "x"}, "ranges": [
                {"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"last_affected": "1.4.2"}]},
                {"type": "SEMVER", "events": [{"introduced": "0"}, {"limit": "0.5.0"}]}]}"#,
        );
        check(
            &e,
            &[("0.9.0", None), ("1.0.0", Some(None)), ("1.4.2", Some(None)), ("1.4.3", None), ("0.4.9", Some(None))],
        );
        // never fixed
        let e = entry(
            r#"{"package": {"ecosystem": "crates.io", "name": "y"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0.3.0"}]}]}"#,
        );
        check(&e, &[("0.2.9", None), ("0.3.0", Some(None)), ("9.9.9", Some(None))]);
        // Debian: dpkg ordering, a stable update below the unstable version
        let e = entry(
            r#"{"package": {"ecosystem": "Debian:12", "name": "openssl"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]}"#,
        );
        check(
            &e,
            &[("3.0.11-1~deb12u1", Some(Some("3.0.11-1~deb12u2"))), ("3.0.11-1~deb12u2", None), ("3.0.11-1", None)],
        );
        assert_eq!(e.ecosystem.release(), Some("12"));
        // unparsable events are counted, the rest still works
        let e = entry(
            r#"{"package": {"ecosystem": "PyPI", "name": "z"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "not a version!"}]}],
                "versions": ["1.0", "2019-09-12x"]}"#,
        );
        assert_eq!(e.unparsable, 2);
        check(&e, &[("1.0", Some(None)), ("1.1", None)]);
        assert!(
            Entry::build(&serde_json::from_str(r#"{"package": {"ecosystem": "Hackage", "name": "a"}}"#).unwrap())
                .is_none()
        );
    }

    #[test]
    fn advisories_take_severity_and_cve_ids() {
        let r: OsvRecord = serde_json::from_str(
            r#"{"id": "PYSEC-1", "aliases": ["GHSA-x", "CVE-2020-1"], "summary": "s",
                "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "references": [{"type": "WEB", "url": "https://example.test/a"}]}"#,
        )
        .unwrap();
        let a = Advisory::from_record(&r);
        let rating = a.rating.as_ref().unwrap();
        assert_eq!(
            (rating.severity, a.display_id(), rating.score, rating.source.as_str()),
            (Severity::Critical, "CVE-2020-1", Some(9.8), "PYSEC-1")
        );
        let r: OsvRecord = serde_json::from_str(
            r#"{"id": "DEBIAN-CVE-2021-3449", "upstream": ["CVE-2021-3449"], "database_specific": {"severity": "MODERATE"}}"#,
        )
        .unwrap();
        let a = Advisory::from_record(&r);
        assert_eq!((a.rating.as_ref().unwrap().severity, a.display_id()), (Severity::Medium, "CVE-2021-3449"));
        let r: OsvRecord = serde_json::from_str(r#"{"id": "GO-2023-1"}"#).unwrap();
        assert_eq!(Advisory::from_record(&r).rating, None);
        // A v2 vector only, rated by an importer's source.
        let r: OsvRecord = serde_json::from_str(
            r#"{"id": "NVD-CVE-2014-0160", "aliases": ["CVE-2014-0160"], "database_specific": {"severity_source": "NVD"},
                "severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:N/A:N"}]}"#,
        )
        .unwrap();
        let r = Advisory::from_record(&r).rating.unwrap();
        assert_eq!((r.severity, r.score, r.source.as_str()), (Severity::Medium, Some(5.0), "NVD"));
    }
}
