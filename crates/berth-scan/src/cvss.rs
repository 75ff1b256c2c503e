//! Severity: CVSS base scores computed from v2, v3.x and v4.0 vectors, the qualitative
//! ratings Harbor and Trivy show, and [`Rating`]: a severity with the source that set it.

use std::fmt;

/// A qualitative severity, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Severity {
    /// 0.0 (CVSS "None").
    None,
    /// No rating could be had (above None, as Harbor orders them: a `none` threshold blocks it).
    Unknown,
    /// 0.1 – 3.9.
    Low,
    /// 4.0 – 6.9.
    Medium,
    /// 7.0 – 8.9.
    High,
    /// 9.0 – 10.0.
    Critical,
}

impl Severity {
    /// The rating of a CVSS base score.
    pub fn of_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::None,
        }
    }

    /// Parse a rating word as advisories write it (`HIGH`, `moderate`, `Critical`…).
    pub fn parse(word: &str) -> Option<Severity> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" => Severity::Low,
            "none" | "negligible" => Severity::None,
            "unknown" => Severity::Unknown,
            _ => return None,
        })
    }

    /// Harbor's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::None => "None",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The base score of a CVSS v3.0, v3.1 or v4.0 vector (`CVSS:3.1/AV:N/…`, `CVSS:4.0/AV:N/…`),
/// computed by RustSec's `cvss` crate (the v3.1 formulas; v4.0's macro-vector lookup and
/// interpolation); `None` when the vector is malformed.
pub fn base_score(vector: &str) -> Option<f64> {
    let vector = vector.trim();
    // Every base metric must be there (the crate scores incomplete vectors as 0).
    let base: &[&str] = match vector.split('/').next()? {
        "CVSS:3.0" | "CVSS:3.1" => &["AV", "AC", "PR", "UI", "S", "C", "I", "A"],
        "CVSS:4.0" => &["AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA"],
        _ => return None,
    };
    let keys: Vec<&str> = vector.split('/').skip(1).filter_map(|m| m.split(':').next()).collect();
    if !base.iter().all(|k| keys.contains(k)) {
        return None;
    }
    let v: cvss::Cvss = vector.parse().ok()?;
    Some(v.score())
}

/// The base score of a CVSS v2 vector (`AV:N/AC:L/Au:N/C:P/I:P/A:P`, as NVD and OSV write
/// it, also in parentheses or after `CVSS:2.0/`), by the v2 specification's equations;
/// `None` when a base metric is missing or unknown.
pub fn base_score_v2(vector: &str) -> Option<f64> {
    let v = vector.trim().trim_start_matches('(').trim_end_matches(')');
    let v = v.strip_prefix("CVSS:2.0/").unwrap_or(v);
    let mut m = std::collections::HashMap::new();
    for part in v.split('/') {
        let (k, x) = part.split_once(':')?;
        if m.insert(k, x).is_some() {
            return None;
        }
    }
    let get = |k: &str, table: &[(&str, f64)]| table.iter().find(|(n, _)| Some(n) == m.get(k)).map(|(_, w)| *w);
    let av = get("AV", &[("L", 0.395), ("A", 0.646), ("N", 1.0)])?;
    let ac = get("AC", &[("H", 0.35), ("M", 0.61), ("L", 0.71)])?;
    let au = get("Au", &[("M", 0.45), ("S", 0.56), ("N", 0.704)])?;
    let cia = [("N", 0.0), ("P", 0.275), ("C", 0.660)];
    let (c, i, a) = (get("C", &cia)?, get("I", &cia)?, get("A", &cia)?);
    let impact = 10.41 * (1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a));
    let exploitability = 20.0 * av * ac * au;
    let f = if impact == 0.0 { 0.0 } else { 1.176 };
    let score = ((0.6 * impact) + (0.4 * exploitability) - 1.5) * f;
    Some((score * 10.0).round() / 10.0)
}

/// A severity and where it came from: the CVSS score and vector when it was computed from
/// one, and the source that set it (`NVD`, an advisory's id, `Debian security tracker`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rating {
    /// The rating.
    pub severity: Severity,
    /// The CVSS base score, when a vector set it.
    pub score: Option<f64>,
    /// The vector.
    pub vector: Option<String>,
    /// Who rated it.
    pub source: String,
}

impl Rating {
    /// A rating from a CVSS vector of any version (v2 as NVD rates v2 scores: there is no
    /// Critical); `None` when it does not parse.
    pub fn of_vector(vector: &str, source: &str) -> Option<Rating> {
        let (score, severity) = if vector.trim().starts_with("CVSS:3") || vector.trim().starts_with("CVSS:4") {
            let s = base_score(vector)?;
            (s, Severity::of_score(s))
        } else {
            let s = base_score_v2(vector)?;
            (s, if s >= 7.0 { Severity::High } else { Severity::of_score(s) })
        };
        Some(Rating { severity, score: Some(score), vector: Some(vector.trim().to_owned()), source: source.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_scores_match_the_specification_examples() {
        // Scores as NVD and the FIRST calculators give them.
        for (v, want) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
            ("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H", 10.0),
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N", 0.0),
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3),
            ("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N", 6.8),
        ] {
            assert_eq!(base_score(v), Some(want), "{v}");
        }
        for bad in ["", "CVSS:2.0/AV:N", "CVSS:3.1/AV:N/AC:L", "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"] {
            assert_eq!(base_score(bad), None, "{bad}");
        }
        // v2, as NVD scored them.
        for (v, want) in [
            ("AV:N/AC:L/Au:N/C:P/I:P/A:P", 7.5),
            ("AV:N/AC:L/Au:N/C:C/I:C/A:C", 10.0),
            ("AV:N/AC:M/Au:N/C:N/I:P/A:N", 4.3),
            ("AV:L/AC:L/Au:N/C:C/I:C/A:C", 7.2),
            ("(AV:N/AC:L/Au:N/C:N/I:N/A:P)", 5.0),
            ("AV:N/AC:M/Au:N/C:P/I:P/A:P", 6.8),
            ("AV:N/AC:L/Au:N/C:N/I:N/A:N", 0.0),
        ] {
            assert_eq!(base_score_v2(v), Some(want), "{v}");
        }
        for bad in ["AV:N/AC:L/Au:N/C:P/I:P", "AV:X/AC:L/Au:N/C:P/I:P/A:P", "AV:N/AV:N/AC:L/Au:N/C:P/I:P/A:P"] {
            assert_eq!(base_score_v2(bad), None, "{bad}");
        }
        let r = Rating::of_vector("AV:N/AC:L/Au:N/C:C/I:C/A:C", "NVD").unwrap();
        assert_eq!((r.severity, r.score), (Severity::High, Some(10.0)), "v2 has no Critical");
        assert_eq!(
            Rating::of_vector("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "x").unwrap().severity,
            Severity::Critical
        );
        assert_eq!(Severity::of_score(9.8), Severity::Critical);
        assert_eq!(Severity::of_score(6.9), Severity::Medium);
        assert_eq!(Severity::of_score(0.0), Severity::None);
        assert_eq!(Severity::parse("MODERATE"), Some(Severity::Medium));
        assert!(Severity::High > Severity::Medium && Severity::Unknown < Severity::Low);
        assert!(Severity::None < Severity::Unknown);
    }
}
