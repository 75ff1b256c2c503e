//! Advisory data that is not OSV, converted to OSV records when it is imported, so that one
//! index ([`crate::db`]) reads everything:
//!
//! - **NVD CVE JSON 2.0** (the yearly feeds and the CVE API's answers): one scores-only record
//!   per CVE (`NVD-CVE-…`, no `affected`), its CVSS vectors (v4.0, v3.x, v2) as `severity`
//!   and `severity_source` `NVD`; rejected CVEs are withdrawn.
//! - **CVE List V5** records (`CVE_RECORD`, as cvelistV5 stores them): `CVE5-CVE-…`, the CNA's
//!   vectors, else an ADP's (CISA's vulnrichment), with the container named as the source.
//! - **The Debian security tracker's JSON** (`/tracker/data/json`: package → CVE → release):
//!   one `DEBIAN-TRACKER-CVE-…` record per CVE with an `affected` entry per package and
//!   supported release (`fixed` where resolved, open otherwise), the release's status in
//!   words (`will not fix`, `fix postponed`, `end of life`) and its urgency as the rating.
//!
//! Ids get a prefix so that they never collide with another source's record of the same CVE;
//! the CVE id is an alias, which is how findings and ratings find each other.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

/// What a JSON document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An OSV record.
    Osv,
    /// An NVD CVE JSON 2.0 document.
    Nvd,
    /// A CVE List V5 record.
    Cve5,
    /// The Debian security tracker's JSON.
    DebianTracker,
}

/// Recognise a document from its first bytes and shape (`None`: not advisory data).
pub fn detect(text: &str) -> Option<Format> {
    let head: String = text.chars().take(4096).collect();
    if head.contains("\"CVE_RECORD\"") {
        Some(Format::Cve5)
    } else if head.contains("\"NVD_CVE\"") {
        Some(Format::Nvd)
    } else if head.contains("\"id\"") {
        Some(Format::Osv)
    } else if head.contains("\"releases\"") {
        // package → CVE → {releases}: the tracker has no `id` field anywhere
        Some(Format::DebianTracker)
    } else {
        None
    }
}

/// Convert a whole document to OSV records (an OSV record stays itself).
pub fn to_osv(text: &str) -> Result<Vec<Value>, String> {
    match detect(text) {
        Some(Format::Osv) => Ok(vec![serde_json::from_str(text).map_err(|e| e.to_string())?]),
        Some(Format::Nvd) => nvd(text),
        Some(Format::Cve5) => cve5(text).map(|r| vec![r]),
        Some(Format::DebianTracker) => debian_tracker(text),
        None => Err("not an OSV record, NVD CVE JSON 2.0, CVE record or Debian security tracker data".into()),
    }
}

#[derive(Deserialize)]
struct NvdDoc {
    #[serde(default)]
    vulnerabilities: Vec<NvdItem>,
}

#[derive(Deserialize)]
struct NvdItem {
    cve: NvdCve,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NvdCve {
    id: String,
    #[serde(default)]
    last_modified: String,
    #[serde(default)]
    vuln_status: String,
    #[serde(default)]
    descriptions: Vec<LangText>,
    #[serde(default)]
    metrics: BTreeMap<String, Vec<NvdMetric>>,
    #[serde(default)]
    references: Vec<Url>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NvdMetric {
    #[serde(default)]
    source: String,
    #[serde(default, rename = "type")]
    kind: String,
    cvss_data: CvssData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CvssData {
    vector_string: String,
}

#[derive(Deserialize)]
struct LangText {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct Url {
    url: String,
}

fn english(d: &[LangText]) -> Option<&str> {
    d.iter().find(|t| t.lang.starts_with("en")).or(d.first()).map(|t| t.value.as_str())
}

/// NVD's times have no zone (they are UTC): `2024-06-21T19:15:19.710` → `…Z`.
fn utc(t: &str) -> String {
    if t.is_empty() || t.ends_with('Z') || t.contains('+') { t.to_owned() } else { format!("{t}Z") }
}

fn nvd(text: &str) -> Result<Vec<Value>, String> {
    let doc: NvdDoc = serde_json::from_str(text).map_err(|e| format!("NVD CVE JSON 2.0: {e}"))?;
    let mut out = Vec::new();
    for NvdItem { cve } in doc.vulnerabilities {
        // One vector per CVSS version: NVD's own (Primary) before a CNA's (Secondary).
        let mut severity = Vec::new();
        let mut sources = Vec::new();
        for (keys, kind) in [
            (&["cvssMetricV40"][..], "CVSS_V4"),
            (&["cvssMetricV31", "cvssMetricV30"], "CVSS_V3"),
            (&["cvssMetricV2"], "CVSS_V2"),
        ] {
            let mut metrics: Vec<&NvdMetric> =
                keys.iter().flat_map(|k| cve.metrics.get(*k).into_iter().flatten()).collect();
            metrics.sort_by_key(|m| m.kind != "Primary");
            if let Some(m) = metrics.first() {
                severity.push(json!({"type": kind, "score": m.cvss_data.vector_string}));
                sources.push(if m.kind == "Primary" || m.source == "nvd@nist.gov" {
                    "NVD".to_owned()
                } else {
                    format!("NVD (from {})", m.source)
                });
            }
        }
        // Ratings are read v3, v4, v2 (Advisory::from_record): name the source of that one.
        let source = ["CVSS_V3", "CVSS_V4", "CVSS_V2"]
            .iter()
            .find_map(|k| severity.iter().position(|s| s["type"] == *k))
            .map(|i| sources[i].clone())
            .unwrap_or_else(|| "NVD".to_owned());
        let mut r = json!({
            "id": format!("NVD-{}", cve.id),
            "modified": utc(&cve.last_modified),
            "aliases": [cve.id],
            "details": english(&cve.descriptions).unwrap_or_default(),
            "severity": severity,
            "references": cve.references.iter().map(|u| json!({"type": "WEB", "url": u.url})).collect::<Vec<_>>(),
            "database_specific": {"severity_source": source, "nvd_status": cve.vuln_status},
        });
        if cve.vuln_status == "Rejected" {
            r["withdrawn"] = json!(utc(&cve.last_modified));
        }
        out.push(r);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cve5 {
    cve_metadata: Cve5Meta,
    containers: Cve5Containers,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cve5Meta {
    cve_id: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    date_updated: String,
}

#[derive(Deserialize)]
struct Cve5Containers {
    cna: Option<Cve5Container>,
    #[serde(default)]
    adp: Vec<Cve5Container>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cve5Container {
    #[serde(default)]
    provider_metadata: Option<Provider>,
    #[serde(default)]
    descriptions: Vec<LangText>,
    #[serde(default)]
    metrics: Vec<BTreeMap<String, Value>>,
    #[serde(default)]
    references: Vec<Url>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Provider {
    #[serde(default)]
    short_name: String,
}

impl Cve5Container {
    fn name(&self) -> &str {
        self.provider_metadata.as_ref().map_or("", |p| p.short_name.as_str())
    }

    /// `(OSV severity type, vector)` per CVSS version the container scores.
    fn vectors(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        for (key, kind) in
            [("cvssV4_0", "CVSS_V4"), ("cvssV3_1", "CVSS_V3"), ("cvssV3_0", "CVSS_V3"), ("cvssV2_0", "CVSS_V2")]
        {
            let found = self.metrics.iter().find_map(|m| m.get(key)?["vectorString"].as_str().map(str::to_owned));
            if let Some(v) = found
                && !out.iter().any(|(k, _)| *k == kind)
            {
                out.push((kind, v));
            }
        }
        out
    }
}

fn cve5(text: &str) -> Result<Value, String> {
    let r: Cve5 = serde_json::from_str(text).map_err(|e| format!("CVE record: {e}"))?;
    let id = r.cve_metadata.cve_id;
    let cna = r.containers.cna;
    // The CNA's scores when it gives any, else the first ADP's that does.
    let (vectors, source) = match cna.as_ref().map(|c| (c.vectors(), c.name())) {
        Some((v, name)) if !v.is_empty() => (v, format!("CVE record (CNA {name})")),
        _ => r
            .containers
            .adp
            .iter()
            .map(|a| (a.vectors(), a.name()))
            .find(|(v, _)| !v.is_empty())
            .map(|(v, name)| (v, format!("CVE record (ADP {name})")))
            .unwrap_or_default(),
    };
    let details = cna.as_ref().and_then(|c| english(&c.descriptions)).unwrap_or_default();
    let references: Vec<Value> =
        cna.iter().flat_map(|c| &c.references).map(|u| json!({"type": "WEB", "url": u.url})).collect();
    let mut out = json!({
        "id": format!("CVE5-{id}"),
        "modified": r.cve_metadata.date_updated,
        "aliases": [id],
        "details": details,
        "severity": vectors.iter().map(|(k, v)| json!({"type": k, "score": v})).collect::<Vec<_>>(),
        "references": references,
        "database_specific": {"severity_source": source},
    });
    if r.cve_metadata.state == "REJECTED" {
        out["withdrawn"] = json!(r.cve_metadata.date_updated);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct TrackerCve {
    #[serde(default)]
    description: String,
    #[serde(default)]
    releases: BTreeMap<String, TrackerRelease>,
}

#[derive(Deserialize)]
struct TrackerRelease {
    #[serde(default)]
    status: String,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    urgency: String,
    #[serde(default)]
    nodsa_reason: Option<String>,
}

/// Debian's release numbers by codename (the OSV ecosystem `Debian:<n>`).
const DEBIAN_RELEASES: &[(&str, &str)] =
    &[("buster", "10"), ("bullseye", "11"), ("bookworm", "12"), ("trixie", "13"), ("forky", "14")];

/// The tracker's urgency as a rating (`unimportant` is Low; unassigned ones are no rating).
fn urgency(u: &str) -> Option<&'static str> {
    match u.trim_end_matches('*') {
        "unimportant" | "low" => Some("LOW"),
        "medium" => Some("MEDIUM"),
        "high" => Some("HIGH"),
        _ => None,
    }
}

fn debian_tracker(text: &str) -> Result<Vec<Value>, String> {
    let doc: BTreeMap<String, BTreeMap<String, TrackerCve>> =
        serde_json::from_str(text).map_err(|e| format!("Debian security tracker JSON: {e}"))?;
    // CVE → (description, affected entries, (rating, urgency) of each).
    type Rated<'a> = (&'static str, &'a str);
    let mut by_cve: BTreeMap<String, (String, Vec<Value>, Vec<Rated<'_>>)> = BTreeMap::new();
    for (package, cves) in &doc {
        for (cve, c) in cves {
            if !cve.starts_with("CVE-") {
                continue; // TEMP- ids name nothing another source can score
            }
            for (codename, rel) in &c.releases {
                let Some((_, n)) = DEBIAN_RELEASES.iter().find(|(name, _)| name == codename) else { continue };
                let fixed = rel.fixed_version.as_deref().filter(|v| !v.is_empty());
                let (events, status) = match (rel.status.as_str(), fixed) {
                    ("resolved", Some("0")) => continue, // never affected in this release
                    ("resolved", Some(v)) => (json!([{"introduced": "0"}, {"fixed": v}]), None),
                    ("resolved", None) => continue,
                    ("undetermined", _) => (json!([{"introduced": "0"}]), Some("undetermined")),
                    _ => {
                        let status = match (rel.nodsa_reason.as_deref(), rel.urgency.as_str()) {
                            (_, "end-of-life") => "end of life",
                            (Some("ignored"), _) | (_, "unimportant") => "will not fix",
                            (Some("postponed"), _) => "fix postponed",
                            _ => "fix not yet available",
                        };
                        (json!([{"introduced": "0"}]), Some(status))
                    }
                };
                let mut specific = json!({"source": "debian-security-tracker", "urgency": rel.urgency});
                if let Some(s) = status {
                    specific["status"] = json!(s);
                }
                let e = by_cve.entry(cve.clone()).or_insert_with(|| (c.description.clone(), Vec::new(), Vec::new()));
                e.1.push(json!({
                    "package": {"ecosystem": format!("Debian:{n}"), "name": package},
                    "ranges": [{"type": "ECOSYSTEM", "events": events}],
                    "database_specific": specific,
                }));
                e.2.extend(urgency(&rel.urgency).map(|w| (w, rel.urgency.as_str())));
            }
        }
    }
    let rank = |w: &&Rated<'_>| ["LOW", "MEDIUM", "HIGH"].iter().position(|x| *x == w.0);
    Ok(by_cve
        .into_iter()
        .map(|(cve, (description, affected, ratings))| {
            let mut specific = json!({"source": "debian-security-tracker"});
            if let Some((word, urgency)) = ratings.iter().max_by_key(rank) {
                specific["severity"] = json!(word);
                specific["severity_source"] = json!(format!("Debian security tracker (urgency {urgency})"));
            }
            json!({
                "id": format!("DEBIAN-TRACKER-{cve}"),
                "modified": "",
                "upstream": [cve],
                "details": description,
                "affected": affected,
                "references": [{"type": "ADVISORY", "url": format!("https://security-tracker.debian.org/tracker/{cve}")}],
                "database_specific": specific,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised() {
        assert_eq!(
            detect(
                r#"{"resultsPerPage": 1, "format": "NVD_CVE", "version": "2.0", "vulnerabilities": [{"cve": {"id": "CVE-1"}}]}"#
            ),
            Some(Format::Nvd)
        );
        assert_eq!(detect(r#"{"dataType": "CVE_RECORD", "dataVersion": "5.1"}"#), Some(Format::Cve5));
        assert_eq!(
            detect(r#"{"zlib": {"CVE-2022-37434": {"releases": {"bookworm": {"status": "resolved"}}}}}"#),
            Some(Format::DebianTracker)
        );
        assert_eq!(
            detect(r#"{"id": "GHSA-x", "affected": [{"package": {"name": "a"}, "versions": []}]}"#),
            Some(Format::Osv)
        );
        assert_eq!(detect("[1, 2]"), None);
        assert!(to_osv("[1, 2]").unwrap_err().contains("not an OSV record"));
    }
}
