//! Vulnerability reports: an inventory matched against a [`Database`], summarised, and the
//! pull-blocking decision (severity threshold, allowlisted CVE ids).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cvss::Severity;
use crate::db::{Database, Finding};
use crate::inventory::Inventory;

/// The findings of one image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Findings, highest severity first.
    pub findings: Vec<Finding>,
    /// Packages looked at.
    pub packages: usize,
    /// Installed versions that did not parse (not matched, reported).
    pub unparsable: usize,
    /// Package files that could not be read.
    pub unreadable: usize,
    /// Why vulnerability scanning does not apply (a scratch image with nothing a scanner can
    /// read, a Helm chart): no finding here is not a clean bill of health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
}

/// Counts per severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// All findings.
    pub total: usize,
    /// Findings with a fixed version.
    pub fixable: usize,
    /// By severity name (`Critical`, `High`, …).
    pub by_severity: BTreeMap<String, usize>,
    /// The highest severity, `None` when there is no finding.
    pub highest: Option<Severity>,
}

/// Match an inventory.
pub fn scan(inv: &Inventory, db: &Database) -> Report {
    let mut findings = Vec::new();
    let mut unparsable = 0;
    for (i, p) in inv.to_match() {
        let m = db.matches(&p);
        if m.unparsable {
            unparsable += 1;
        }
        // Report the package as installed (the binary package, not its source).
        let installed = &inv.packages[i];
        let purl = inv.purl(installed);
        findings.extend(m.findings.into_iter().map(|mut f| {
            f.package = installed.name.clone();
            f.version = installed.version.clone();
            f.purl = purl.clone();
            f.evidence = installed.evidence;
            f
        }));
    }
    // One finding per (id, package, version) even when several binaries share a source (or
    // a lock file names what is installed too: the installed one is kept).
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.version.cmp(&b.version))
            .then_with(|| a.evidence.cmp(&b.evidence))
    });
    findings.dedup_by(|a, b| a.id == b.id && a.package == b.package && a.version == b.version);
    let not_applicable = (inv.os.is_none() && inv.packages.is_empty() && inv.unreadable == 0).then(|| {
        "no operating system and no package metadata were found (a scratch or static image): there is nothing \
         to match against advisories"
            .to_owned()
    });
    Report { findings, packages: inv.packages.len(), unparsable, unreadable: inv.unreadable, not_applicable }
}

/// Why an artifact is not scanned for vulnerabilities, from its config media type or artifact
/// type (`None` for container images).
pub fn not_an_image(config_media_type: &str, artifact_type: Option<&str>) -> Option<String> {
    const IMAGE_CONFIGS: &[&str] =
        &["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];
    if IMAGE_CONFIGS.contains(&config_media_type) {
        return None;
    }
    let what = artifact_type.filter(|t| !t.is_empty()).unwrap_or(config_media_type);
    let kind = match what {
        "application/vnd.cncf.helm.config.v1+json" => "a Helm chart".to_owned(),
        _ => format!("an artifact of type {what}"),
    };
    Some(format!("{kind} is not a container image: there is nothing to scan for vulnerabilities"))
}

impl Report {
    /// The summary, leaving out allowlisted ids.
    pub fn summary(&self, allowed: &dyn Fn(&Finding) -> bool) -> Summary {
        let mut s = Summary::default();
        for f in self.findings.iter().filter(|f| !allowed(f)) {
            s.total += 1;
            if f.fixed_version.is_some() {
                s.fixable += 1;
            }
            *s.by_severity.entry(f.severity.as_str().to_owned()).or_default() += 1;
            s.highest = s.highest.max(Some(f.severity));
        }
        s
    }

    /// Findings at or above `threshold` that are not allowlisted: `(count, highest)`.
    pub fn blocking(&self, threshold: Severity, allowed: &dyn Fn(&Finding) -> bool) -> (usize, Option<Severity>) {
        let hits: Vec<&Finding> = self.findings.iter().filter(|f| f.severity >= threshold && !allowed(f)).collect();
        (hits.len(), hits.iter().map(|f| f.severity).max())
    }
}

/// An allowlist check: a finding is exempt when any of its ids is listed.
pub fn allowlisted<'a>(ids: &'a [String]) -> impl Fn(&Finding) -> bool + 'a {
    move |f: &Finding| f.ids.iter().chain(std::iter::once(&f.id)).any(|i| ids.contains(i))
}
