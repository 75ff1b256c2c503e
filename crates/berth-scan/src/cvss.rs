//! Severity: CVSS base scores computed from v3.x and v4.0 vectors, and the qualitative
//! ratings Harbor and Trivy show.

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
        assert_eq!(Severity::of_score(9.8), Severity::Critical);
        assert_eq!(Severity::of_score(6.9), Severity::Medium);
        assert_eq!(Severity::of_score(0.0), Severity::None);
        assert_eq!(Severity::parse("MODERATE"), Some(Severity::Medium));
        assert!(Severity::High > Severity::Medium && Severity::Unknown < Severity::Low);
        assert!(Severity::None < Severity::Unknown);
    }
}
